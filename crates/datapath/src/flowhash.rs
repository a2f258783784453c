//! A hash of an inner frame's flow, for the outer UDP source port (entropy for ECMP and RSS in the underlay,
//! RFC 7348 §5). Frames of one flow always hash alike, so they stay on one path and in order.

use weft_wire::ethernet::{EtherType, EthernetFrame, HEADER_LEN};
use weft_wire::ipv4::Protocol;

const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

fn mix(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

/// Hashes MAC addresses and EtherType, and for IPv4/IPv6 the addresses, protocol and TCP/UDP ports.
/// Never panics: short or odd frames simply hash fewer fields.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let Ok(eth) = EthernetFrame::new_checked(frame) else {
        return mix(SEED, frame) as u32;
    };
    let mut h = mix(SEED, &frame[..HEADER_LEN]);
    let p = eth.payload();
    let (l4, proto) = match eth.ethertype() {
        EtherType::IPV4 if p.len() >= 20 => {
            h = mix(h, &p[12..20]);
            let ihl = usize::from(p[0] & 0x0f) * 4;
            (p.get(ihl..), p[9])
        }
        EtherType::IPV6 if p.len() >= 40 => {
            h = mix(h, &p[8..40]);
            (p.get(40..), p[6])
        }
        _ => (None, 0),
    };
    if let (Some(l4), Protocol::TCP | Protocol::UDP) = (l4, proto) {
        if l4.len() >= 4 {
            h = mix(h, &[proto]);
            h = mix(h, &l4[..4]);
        }
    }
    (h ^ (h >> 32)) as u32
}

/// Linux's range for tunnel source ports (the default `ip_local_port_range`).
pub const SRC_PORT_MIN: u16 = 32768;
pub const SRC_PORT_MAX: u16 = 60999;

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_frame(sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12..14].copy_from_slice(&EtherType::IPV4.to_be_bytes());
        f[14] = 0x45;
        f[14 + 9] = Protocol::TCP;
        f[14 + 12..14 + 20].copy_from_slice(&[198, 51, 100, 1, 198, 51, 100, 2]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f
    }

    #[test]
    fn same_flow_same_hash_other_flow_other_hash() {
        assert_eq!(flow_hash(&tcp_frame(1000)), flow_hash(&tcp_frame(1000)));
        let distinct: std::collections::HashSet<u32> = (1000..1100).map(|p| flow_hash(&tcp_frame(p))).collect();
        assert!(distinct.len() > 95);
    }

    #[test]
    fn short_frames_do_not_panic() {
        for n in 0..=54 {
            flow_hash(&tcp_frame(1)[..n]);
        }
    }
}
