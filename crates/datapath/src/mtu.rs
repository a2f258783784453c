//! Path-MTU signalling for frames too big for a tunnel.
//!
//! A bridge is a layer-2 device and may not fragment, and a silently dropped oversized frame stalls TCP. So
//! when an IPv4 frame with DF set, or any IPv6 frame, does not fit a tunnel, weft answers the sender as the
//! far host would: ICMP "fragmentation needed" with the tunnel's MTU (RFC 792, RFC 1191) or ICMPv6 "packet too
//! big" (RFC 4443 §3.2, RFC 8201), addressed from the original destination so the sender's kernel matches it
//! to the flow and lowers its path MTU.

use weft_wire::ethernet::{EtherType, EthernetFrame, HEADER_LEN as ETH_LEN};
use weft_wire::icmpv4::emit_frag_needed;
use weft_wire::icmpv6::{emit_packet_too_big, Icmpv6Packet};
use weft_wire::ipv4::{Ipv4Packet, Ipv4Repr, Protocol};
use weft_wire::ipv6::{Ipv6Packet, Ipv6Repr, HEADER_LEN as IPV6_LEN};

/// RFC 1812 §4.3.2.3: an ICMPv4 error quotes as much of the original as fits in 576 bytes.
const V4_ERROR_MAX: usize = 576;
/// RFC 4443 §2.4(c): an ICMPv6 error fits in the minimum IPv6 MTU.
const V6_ERROR_MAX: usize = 1280;
/// Room a caller must give [`too_big_reply`].
pub const REPLY_MAX: usize = ETH_LEN + V6_ERROR_MAX;

/// What to do with a frame bound for a tunnel whose inner MTU is `mtu`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fit {
    /// It fits, or it is IPv4 without DF (the underlay may fragment the outer packet).
    Send,
    /// Too big: drop it and tell the sender.
    TooBig,
}

/// Checks the IP packet inside `frame` (after any 802.1Q tags) against `mtu`.
pub fn check(frame: &[u8], mtu: usize) -> Fit {
    let Some((l3, ethertype)) = l3_offset(frame) else { return Fit::Send };
    let ip_len = frame.len() - l3;
    if ip_len <= mtu {
        return Fit::Send;
    }
    match ethertype {
        EtherType::IPV4 => match Ipv4Packet::new_checked(&frame[l3..]) {
            Ok(p) if p.dont_frag() => Fit::TooBig,
            _ => Fit::Send,
        },
        EtherType::IPV6 => Fit::TooBig,
        _ => Fit::Send,
    }
}

/// Where the network header of `frame` starts (after any 802.1Q/802.1ad tags), and its EtherType.
pub fn l3_offset(frame: &[u8]) -> Option<(usize, u16)> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    let (mut at, mut t) = (ETH_LEN, eth.ethertype());
    while t == EtherType::VLAN || t == EtherType::QINQ {
        let b = frame.get(at + 2..at + 4)?;
        t = u16::from_be_bytes([b[0], b[1]]);
        at += 4;
    }
    Some((at, t))
}

/// Whether `frame` may enter a tunnel whose inner packets may be `mtu` bytes, when `push` bytes of VLAN tag
/// will be added on the way and, with `df`, the outer IPv4 header forbids fragmenting. `Err(Some(mtu))`: too big,
/// and the sender should hear of the MTU it has (`mtu - push`); `Err(None)`: too big, with nobody to tell (an
/// IPv4 packet without DF under an outer DF).
pub fn tunnel_fit(frame: &[u8], mtu: usize, push: usize, df: bool) -> Result<(), Option<u16>> {
    tunnel_fit_headers(&crate::headers::Headers::parse(frame), frame.len(), mtu, push, df)
}

/// [`tunnel_fit`] from headers parsed once ([`crate::headers::Headers`]) of an untagged frame `wire_len` bytes
/// long (the segments of an offloaded frame: its headers and less payload).
pub fn tunnel_fit_headers(
    h: &crate::headers::Headers,
    wire_len: usize,
    mtu: usize,
    push: usize,
    df: bool,
) -> Result<(), Option<u16>> {
    let room = mtu.saturating_sub(push);
    let ip_len = wire_len.saturating_sub(ETH_LEN);
    if ip_len <= room {
        return Ok(());
    }
    if h.ip && (h.v6 || h.df) {
        return Err(Some(room as u16));
    }
    if df {
        return Err(None);
    }
    Ok(())
}

/// Writes into `out` the frame that tells the sender of `frame` to use `mtu`, and returns its length;
/// `None` when no error may be sent (not IP, an ICMP error itself, a multicast source, a fragment tail).
/// VLAN tags of the original are kept, so the answer reaches the sender's VLAN.
pub fn too_big_reply(frame: &[u8], mtu: u16, out: &mut [u8; REPLY_MAX]) -> Option<usize> {
    let (l3, ethertype) = l3_offset(frame)?;
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if !eth.src_addr().is_unicast() {
        return None;
    }
    // Ethernet header (and tags) with the addresses swapped.
    out[..l3].copy_from_slice(&frame[..l3]);
    out[0..6].copy_from_slice(&eth.src_addr().0);
    out[6..12].copy_from_slice(&eth.dst_addr().0);
    let original = &frame[l3..];
    match ethertype {
        EtherType::IPV4 => {
            let ip = Ipv4Packet::new_checked(original).ok()?;
            if ip.frag_offset() != 0 || ip.src_addr().is_multicast() || ip.src_addr().is_broadcast() {
                return None;
            }
            if ip.protocol() == Protocol::ICMP && ip.payload().first().is_some_and(|t| !matches!(t, 0 | 8 | 13 | 14)) {
                return None; // never answer an ICMP error with an ICMP error (RFC 1122 §3.2.2)
            }
            let quote_max = V4_ERROR_MAX - 20 - 8;
            let icmp_len = emit_frag_needed(&mut out[l3 + 20..], mtu, original, quote_max);
            Ipv4Repr {
                src_addr: ip.dst_addr(),
                dst_addr: ip.src_addr(),
                protocol: Protocol::ICMP,
                payload_len: icmp_len,
                hop_limit: 64,
                dscp_ecn: 0,
                ident: 0,
                dont_frag: false,
            }
            .emit(&mut out[l3..]);
            Some(l3 + 20 + icmp_len)
        }
        EtherType::IPV6 => {
            let ip = Ipv6Packet::new_checked(original).ok()?;
            if ip.src_addr().is_multicast() || ip.src_addr().is_unspecified() {
                return None;
            }
            if let Ok((Protocol::ICMPV6, at)) = ip.upper_layer() {
                if Icmpv6Packet::new_checked(&ip.payload()[at..]).is_ok_and(|i| i.msg_type() < 128) {
                    return None;
                }
            }
            let quote_max = V6_ERROR_MAX - IPV6_LEN - 8;
            let icmp_len = emit_packet_too_big(
                &mut out[l3 + IPV6_LEN..],
                u32::from(mtu),
                original,
                quote_max,
                ip.dst_addr(),
                ip.src_addr(),
            );
            Ipv6Repr {
                src_addr: ip.dst_addr(),
                dst_addr: ip.src_addr(),
                next_header: Protocol::ICMPV6,
                payload_len: icmp_len,
                hop_limit: 64,
                traffic_class: 0,
                flow_label: 0,
            }
            .emit(&mut out[l3..]);
            Some(l3 + IPV6_LEN + icmp_len)
        }
        _ => None,
    }
}

#[cfg(test)]
mod fit_tests {
    use super::*;

    /// An Ethernet frame carrying an IPv4 packet of `len` bytes, with or without DF.
    fn v4(len: usize, df: bool) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
        f.extend_from_slice(&(len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0, if df { 0x40 } else { 0 }, 0, 64, 17, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
        f.resize(14 + len, 0);
        f
    }

    #[test]
    fn a_pushed_tag_takes_four_bytes() {
        assert_eq!(tunnel_fit(&v4(1450, true), 1450, 0, false), Ok(()));
        assert_eq!(tunnel_fit(&v4(1450, true), 1450, 4, false), Err(Some(1446)));
        assert_eq!(tunnel_fit(&v4(1446, true), 1450, 4, false), Ok(()));
        // Without DF inside: the underlay may fragment, unless the outer header says DF.
        assert_eq!(tunnel_fit(&v4(1500, false), 1450, 0, false), Ok(()));
        assert_eq!(tunnel_fit(&v4(1500, false), 1450, 0, true), Err(None));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_wire::icmpv4::Icmpv4Packet;

    fn v4_frame(len: usize, df: bool) -> Vec<u8> {
        let mut f = vec![0u8; len];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&EtherType::IPV4.to_be_bytes());
        Ipv4Repr {
            src_addr: [198, 51, 100, 1].into(),
            dst_addr: [198, 51, 100, 2].into(),
            protocol: Protocol::ICMP,
            payload_len: len - 34,
            hop_limit: 64,
            dscp_ecn: 0,
            ident: 1,
            dont_frag: df,
        }
        .emit(&mut f[14..]);
        f[34] = 8; // echo request
        f
    }

    #[test]
    fn fits_or_not() {
        assert_eq!(check(&v4_frame(1464, true), 1450), Fit::Send);
        assert_eq!(check(&v4_frame(1514, true), 1450), Fit::TooBig);
        assert_eq!(check(&v4_frame(1514, false), 1450), Fit::Send, "no DF: the underlay may fragment");
        assert_eq!(check(&[0u8; 5], 1450), Fit::Send);
    }

    #[test]
    fn frag_needed_reply() {
        let f = v4_frame(1514, true);
        let mut out = [0u8; REPLY_MAX];
        let n = too_big_reply(&f, 1450, &mut out).unwrap();
        let eth = EthernetFrame::new_checked(&out[..n]).unwrap();
        assert_eq!(eth.dst_addr().0, [2, 0, 0, 0, 0, 1]);
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        assert_eq!((ip.src_addr(), ip.dst_addr()), ([198, 51, 100, 2].into(), [198, 51, 100, 1].into()));
        assert_eq!(n, V4_ERROR_MAX + 14, "quotes as much as fits in 576 bytes");
        let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((icmp.msg_type(), icmp.msg_code(), icmp.next_hop_mtu()), (3, 4, 1450));
        assert!(icmp.verify_checksum());
        assert_eq!(&icmp.data()[..20], &f[14..34], "quotes the original header");
    }

    #[test]
    fn no_error_about_an_error_or_a_multicast_source() {
        let mut f = v4_frame(1514, true);
        f[34] = 3; // the original is itself an ICMP error
        let mut out = [0u8; REPLY_MAX];
        assert!(too_big_reply(&f, 1450, &mut out).is_none());
        let mut g = v4_frame(1514, true);
        g[6] = 1;
        assert!(too_big_reply(&g, 1450, &mut out).is_none());
    }

    #[test]
    fn packet_too_big_reply() {
        let mut f = vec![0u8; 1514];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&EtherType::IPV6.to_be_bytes());
        let (s, d) = ("2001:db8:1::1".parse().unwrap(), "2001:db8:1::2".parse().unwrap());
        Ipv6Repr {
            src_addr: s,
            dst_addr: d,
            next_header: Protocol::TCP,
            payload_len: 1460,
            hop_limit: 64,
            traffic_class: 0,
            flow_label: 0,
        }
        .emit(&mut f[14..]);
        assert_eq!(check(&f, 1450), Fit::TooBig);
        let mut out = [0u8; REPLY_MAX];
        let n = too_big_reply(&f, 1430, &mut out).unwrap();
        assert_eq!(n, 14 + 1280);
        let ip = Ipv6Packet::new_checked(&out[14..n]).unwrap();
        assert_eq!((ip.src_addr(), ip.dst_addr()), (d, s));
        let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
        assert_eq!((icmp.msg_type(), icmp.mtu()), (2, 1430));
        assert!(icmp.verify_checksum(d, s));
    }
}
