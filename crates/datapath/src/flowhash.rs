//! A hash of an inner frame's flow, for the outer UDP source port (entropy for ECMP and RSS in the underlay,
//! RFC 7348 §5). Frames of one flow always hash alike, so they stay on one path and in order.

/// Hashes MAC addresses and EtherType, and for IPv4/IPv6 the addresses, protocol and TCP/UDP ports.
/// Never panics: short or odd frames simply hash fewer fields. The switch computes the same hash once per
/// frame as part of [`crate::headers::Headers`]; this is for a frame on its own.
pub fn flow_hash(frame: &[u8]) -> u32 {
    crate::headers::Headers::parse(frame).hash
}

/// Linux's range for tunnel source ports (the default `ip_local_port_range`).
pub const SRC_PORT_MIN: u16 = 32768;
pub const SRC_PORT_MAX: u16 = 60999;

#[cfg(test)]
mod tests {
    use super::*;
    use weft_wire::ethernet::EtherType;
    use weft_wire::ipv4::Protocol;

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
