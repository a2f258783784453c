//! A frame's headers, parsed once when it enters the switch: the fields classification, the flow hash and the
//! MTU check read. Frames inside the switch are untagged (the tag is taken off first), so the network header
//! starts right after the Ethernet header. One parse serves a frame's whole way through the tables: actions
//! that rewrite a field keep these fields up to date as they write (`switch/rewrite.rs`), and only pushing or
//! popping an MPLS entry, which changes what the frame is, parses it again.

use weft_wire::ethernet::{EtherType, HEADER_LEN as ETH_LEN};
use weft_wire::ipv4::Protocol;
use weft_wire::EthernetAddress;

/// What the switch reads of a frame's headers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Headers {
    pub ethertype: u16,
    /// IPv4 (in the low 32 bits) or IPv6 addresses; for ARP, the sender and target protocol addresses.
    pub nw_src: u128,
    pub nw_dst: u128,
    /// The IP protocol (IPv6: after the extension headers), or the low byte of the ARP opcode.
    pub nw_proto: Option<u8>,
    /// DSCP (ECN bits cleared).
    pub nw_tos: u8,
    /// The two ECN bits.
    pub nw_ecn: u8,
    /// IPv4's TTL or IPv6's hop limit.
    pub nw_ttl: u8,
    /// IPv6's flow label.
    pub ipv6_label: u32,
    /// Fragmentation, as OVS's `nw_frag`: bit 0 a fragment, bit 1 a fragment other than the first.
    pub nw_frag: u8,
    /// ARP's sender and target hardware addresses; for an IPv6 neighbor solicitation its source link-layer
    /// address option (in `arp_sha`), for an advertisement its target link-layer address option (`arp_tha`).
    pub arp_sha: u64,
    pub arp_tha: u64,
    /// The target of an IPv6 neighbor solicitation or advertisement.
    pub nd_target: u128,
    /// Where the transport header starts in the frame (0: no IP header, or a later fragment).
    pub l4_at: u16,
    /// An MPLS frame's top label stack entry (label, traffic class, bottom of stack, TTL).
    pub mpls: Option<u32>,
    /// TCP, UDP or SCTP ports, or ICMP type and code; only in a first fragment.
    pub tp: Option<(u16, u16)>,
    /// A well-formed IPv4 or IPv6 header is there.
    pub ip: bool,
    pub v6: bool,
    /// IPv4's don't-fragment bit.
    pub df: bool,
    /// A TCP header's length (its data offset), for measuring the segments of an offloaded frame.
    pub tcp_hlen: Option<u8>,
    /// TCP's twelve flag bits (FIN 0x001 … NS 0x100, and the three reserved), zero for anything else.
    pub tcp_flags: u16,
    /// The flow hash: MACs, EtherType, addresses, protocol and TCP/UDP ports (picks a tunnel's source port).
    pub hash: u32,
}

const SEED: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

fn mix(h: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(h, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

fn be16(b: &[u8]) -> u16 {
    u16::from_be_bytes([b[0], b[1]])
}

impl Headers {
    /// Parses an untagged frame at least an Ethernet header long (shorter ones get only a hash).
    pub fn parse(frame: &[u8]) -> Headers {
        let mut h = Headers::default();
        if frame.len() < ETH_LEN {
            h.hash = mix(SEED, frame) as u32;
            return h;
        }
        h.ethertype = be16(&frame[12..14]);
        let mut hash = mix(SEED, &frame[..ETH_LEN]);
        let l3 = &frame[ETH_LEN..];
        let mut l4: &[u8] = &[];
        let mut first = true;
        match h.ethertype {
            EtherType::IPV4 => {
                if let Ok(ip) = weft_wire::ipv4::Ipv4Packet::new_header_checked(l3) {
                    h.ip = true;
                    h.nw_src = u128::from(u32::from(ip.src_addr()));
                    h.nw_dst = u128::from(u32::from(ip.dst_addr()));
                    h.nw_proto = Some(ip.protocol());
                    h.nw_tos = ip.dscp_ecn() & 0xfc;
                    h.nw_ecn = ip.dscp_ecn() & 3;
                    h.nw_ttl = ip.hop_limit();
                    h.df = ip.dont_frag();
                    first = ip.frag_offset() == 0;
                    h.nw_frag = u8::from(ip.more_frags() || !first) | (u8::from(!first) << 1);
                    l4 = l3.get(ip.header_len()..).unwrap_or_default();
                    if first {
                        h.l4_at = (ETH_LEN + ip.header_len()) as u16;
                    }
                    hash = mix(hash, &l3[12..20]);
                }
            }
            EtherType::IPV6 => {
                if let Ok(ip) = weft_wire::ipv6::Ipv6Packet::new_header_checked(l3) {
                    h.ip = true;
                    h.v6 = true;
                    h.nw_src = u128::from(ip.src_addr());
                    h.nw_dst = u128::from(ip.dst_addr());
                    h.nw_tos = ip.traffic_class() & 0xfc;
                    h.nw_ecn = ip.traffic_class() & 3;
                    h.nw_ttl = ip.hop_limit();
                    h.ipv6_label = ip.flow_label();
                    hash = mix(hash, &l3[8..40]);
                    let payload = &l3[weft_wire::ipv6::HEADER_LEN..];
                    match weft_wire::ipv6::walk_extension_headers_frag(ip.next_header(), payload) {
                        // A fragment other than the first carries no transport header.
                        Ok((p, _, Some((offset, _)))) if offset != 0 => {
                            h.nw_proto = Some(p);
                            h.nw_frag = 3;
                            first = false;
                        }
                        Ok((p, at, frag)) => {
                            h.nw_proto = Some(p);
                            h.nw_frag = u8::from(frag.is_some());
                            l4 = &payload[at..];
                            h.l4_at = (ETH_LEN + weft_wire::ipv6::HEADER_LEN + at) as u16;
                        }
                        Err(_) => first = false,
                    }
                }
            }
            EtherType::MPLS | EtherType::MPLS_MULTICAST if l3.len() >= 4 => {
                h.mpls = Some(u32::from_be_bytes([l3[0], l3[1], l3[2], l3[3]]));
            }
            EtherType::ARP => {
                if let Ok(a) = weft_wire::arp::ArpPacket::new_checked(l3) {
                    h.nw_proto = Some((a.operation() & 0xff) as u8);
                    h.nw_src = u128::from(u32::from(a.sender_protocol_addr()));
                    h.nw_dst = u128::from(u32::from(a.target_protocol_addr()));
                    h.arp_sha = a.sender_hardware_addr().as_u64();
                    h.arp_tha = a.target_hardware_addr().as_u64();
                    // The protocol addresses too, so that a select group spreads ARP by them.
                    if l3.len() >= 28 {
                        hash = mix(hash, &l3[14..18]);
                        hash = mix(hash, &l3[24..28]);
                    }
                }
            }
            _ => {}
        }
        if h.ip && first {
            match h.nw_proto {
                Some(6 | 17 | 132) if l4.len() >= 4 => h.tp = Some((be16(&l4[0..2]), be16(&l4[2..4]))),
                Some(1 | 58) if l4.len() >= 2 => h.tp = Some((u16::from(l4[0]), u16::from(l4[1]))),
                _ => {}
            }
            if h.v6 && h.tp.is_some_and(|(t, c)| matches!(t, 135 | 136) && c == 0) {
                h.neighbor_discovery(l4);
            }
        }
        if h.ip && h.nw_proto == Some(Protocol::TCP) && l4.len() >= 13 {
            h.tcp_hlen = Some((l4[12] >> 4) * 4);
            if l4.len() >= 14 && first {
                h.tcp_flags = u16::from_be_bytes([l4[12], l4[13]]) & 0x0fff;
            }
        }
        if let (Some(p @ (Protocol::TCP | Protocol::UDP)), true) = (h.nw_proto, h.ip && l4.len() >= 4) {
            hash = mix(hash, &[p]);
            hash = mix(hash, &l4[..4]);
        }
        h.hash = (hash ^ (hash >> 32)) as u32;
        h
    }

    /// The frame is an IPv6 neighbor solicitation or advertisement (its target and options were read).
    pub fn nd_target_valid(&self) -> bool {
        self.v6
            && self.nw_proto == Some(58)
            && self.l4_at != 0
            && self.tp.is_some_and(|(t, c)| matches!(t, 135 | 136) && c == 0)
    }

    /// An IPv6 neighbor solicitation (135) or advertisement (136): its target, and the link-layer address
    /// option the message type carries (the first one; a malformed option list leaves the address zero).
    fn neighbor_discovery(&mut self, icmp: &[u8]) {
        let Some(target) = icmp.get(8..24) else { return };
        let mut t = [0u8; 16];
        t.copy_from_slice(target);
        self.nd_target = u128::from_be_bytes(t);
        let want = if self.tp.is_some_and(|(ty, _)| ty == 135) { 1 } else { 2 };
        let mut opts = &icmp[24..];
        while opts.len() >= 8 {
            let len = usize::from(opts[1]) * 8;
            if len == 0 || len > opts.len() {
                return;
            }
            if opts[0] == want && len == 8 {
                let mac = EthernetAddress::from_bytes(&opts[2..8]).as_u64();
                if want == 1 {
                    self.arp_sha = mac;
                } else {
                    self.arp_tha = mac;
                }
                return;
            }
            opts = &opts[len..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ethertype: u16, l3: &[u8]) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(l3);
        f
    }

    fn ipv4(proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
        let mut ip = vec![0x45, 0x20, 0, 0, 0, 1, 0, 0, 64, proto, 0, 0, 198, 51, 100, 1, 198, 51, 100, 2];
        let len = (20 + l4.len()) as u16;
        ip[2..4].copy_from_slice(&len.to_be_bytes());
        ip[6..8].copy_from_slice(&(0x4000 | frag).to_be_bytes());
        ip.extend_from_slice(l4);
        ip
    }

    #[test]
    fn reads_what_classification_needs_and_hashes_the_flow() {
        let f = frame(0x0800, &ipv4(6, 0, &[0x13, 0x89, 0x9c, 0x40, 0, 0, 0, 0]));
        let h = Headers::parse(&f);
        assert!(h.ip && h.df && !h.v6);
        assert_eq!((h.nw_src, h.nw_dst, h.nw_proto, h.nw_tos), (0xc633_6401, 0xc633_6402, Some(6), 0x20));
        assert_eq!(h.tp, Some((5001, 40000)));
        // The hash follows the flow, not the payload; another port is another flow.
        let same = frame(0x0800, &ipv4(6, 0, &[0x13, 0x89, 0x9c, 0x40, 9, 9, 9, 9]));
        let other = frame(0x0800, &ipv4(6, 0, &[0x13, 0x8a, 0x9c, 0x40, 0, 0, 0, 0]));
        assert_eq!(h.hash, Headers::parse(&same).hash);
        assert_ne!(h.hash, Headers::parse(&other).hash);
        // A later fragment has no ports.
        let g = frame(0x0800, &ipv4(17, 100, &[0; 8]));
        assert_eq!(Headers::parse(&g).tp, None);
        // Short and odd frames never panic.
        for n in 0..f.len() {
            let _ = Headers::parse(&f[..n]);
        }
        let arp =
            frame(0x0806, &[0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 2]);
        let h = Headers::parse(&arp);
        assert_eq!((h.nw_proto, h.nw_src, h.nw_dst, h.ip), (Some(1), 0x0a00_0001, 0x0a00_0002, false));
    }

    #[test]
    fn fragments_are_told_apart_as_ovs_nw_frag_does() {
        // IPv4: whole, first fragment (more-fragments bit, offset 0), later fragment.
        let whole = |frag: u16| Headers::parse(&frame(0x0800, &ipv4(17, frag, &[0, 53, 0, 54, 0, 8, 0, 0]))).nw_frag;
        assert_eq!((whole(0), whole(0x2000), whole(100)), (0, 1, 3));
        // IPv6 with a fragment header: the first has its ports, a later one none.
        let v6 = |offset: u16, more: bool| {
            let mut ip = vec![0x60, 0, 0, 0, 0, 16, 44, 64];
            ip.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            ip.extend_from_slice(&[0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
            ip.extend_from_slice(&[17, 0]);
            ip.extend_from_slice(&((offset << 3) | u16::from(more)).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0, 7, 0, 53, 0, 54, 0, 8, 0, 0]);
            Headers::parse(&frame(0x86dd, &ip))
        };
        let first = v6(0, true);
        assert_eq!((first.nw_frag, first.nw_proto, first.tp), (1, Some(17), Some((53, 54))));
        let later = v6(10, false);
        assert_eq!((later.nw_frag, later.nw_proto, later.tp), (3, Some(17), None));
    }
}
