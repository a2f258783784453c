//! Writing the packet fields that `set_field`, `load`, `move` and `mod_nw_*`/`mod_tp_*` change, with every
//! checksum that covers them fixed incrementally (RFC 1624), so a rewrite costs a few additions whatever the
//! frame's size: the IPv4 header checksum, and the TCP, UDP and ICMPv6 checksums over the pseudo-header, the
//! ICMP checksums over the message. A frame whose transport checksum is left to the device (`NEEDS_CSUM`:
//! the field holds the pseudo-header's sum, not yet inverted) gets that sum moved when an address changes,
//! and nothing when a port does (the device sums the header as it then is); an offloaded (GSO) frame is such
//! a frame, so a 64 KiB TCP frame is rewritten once, before it is cut. SCTP's CRC32c cannot be patched: it
//! is computed again over the packet.

use crate::classifier::{slot, Slot};
use crate::headers::Headers;
use weft_wire::ethernet::{EtherType, HEADER_LEN as ETH_LEN};

/// How a checksum field is kept.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sum {
    /// The inverted one's-complement sum (as on the wire).
    Full,
    /// UDP over IPv4: as `Full`, but 0 means "no checksum" and stays 0, and a computed 0 is sent as 0xffff.
    Udp4,
    /// The pseudo-header's sum, not inverted (the device completes it).
    Partial,
}

fn read16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The sum with 16-bit words `old` taken out and `new` put in (both even-length, aligned alike).
fn moved(sum: u16, old: &[u8], new: &[u8]) -> u16 {
    let mut s = u32::from(sum);
    for w in old.chunks_exact(2) {
        s += u32::from(!u16::from_be_bytes([w[0], w[1]]));
    }
    for w in new.chunks_exact(2) {
        s += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    fold(s)
}

/// Writes `new` at `at` and fixes each checksum in `sums` (its place and how it is kept). Every region a
/// checksum covers starts at an even offset of the frame (the Ethernet header is 14 bytes, IP headers and
/// extension headers are multiples of 4 and 8), so the change is widened to whole 16-bit words there.
fn patch(frame: &mut [u8], at: usize, new: &[u8], sums: &[(usize, Sum)]) -> bool {
    let (lo, hi) = (at & !1, (at + new.len() + 1) & !1);
    if hi > frame.len() || hi - lo > 20 || sums.iter().any(|&(c, _)| c + 2 > frame.len()) {
        return false;
    }
    let mut old = [0u8; 20];
    old[..hi - lo].copy_from_slice(&frame[lo..hi]);
    frame[at..at + new.len()].copy_from_slice(new);
    let mut now = [0u8; 20];
    now[..hi - lo].copy_from_slice(&frame[lo..hi]);
    let (old, now) = (&old[..hi - lo], &now[..hi - lo]);
    for &(c, kind) in sums {
        let v = read16(frame, c);
        let fixed = match kind {
            Sum::Partial => moved(v, old, now),
            Sum::Udp4 if v == 0 => 0,
            Sum::Udp4 => match !moved(!v, old, now) {
                0 => 0xffff,
                x => x,
            },
            Sum::Full => !moved(!v, old, now),
        };
        frame[c..c + 2].copy_from_slice(&fixed.to_be_bytes());
    }
    true
}

/// Where a frame's transport checksum is and how it is kept, for changes to the pseudo-header (`pseudo`) or
/// to the transport header itself; `None` when nothing covers such a change.
fn l4_sum(h: &Headers, partial: bool, pseudo: bool) -> Option<(usize, Sum)> {
    let l4 = usize::from(h.l4_at);
    if l4 == 0 {
        return None;
    }
    let (at, udp4) = match h.nw_proto? {
        6 => (l4 + 16, false),
        17 => (l4 + 6, !h.v6),
        58 if h.v6 => (l4 + 2, false),
        1 if !pseudo && !h.v6 => (l4 + 2, false),
        _ => return None,
    };
    Some(match (partial, udp4) {
        // A device-completed checksum covers the transport header by itself: only the pseudo-header's sum is
        // in the field.
        (true, _) if !pseudo => return None,
        (true, _) => (at, Sum::Partial),
        (false, true) => (at, Sum::Udp4),
        (false, false) => (at, Sum::Full),
    })
}

/// CRC32c (Castagnoli), reflected, as SCTP uses it.
const CRC32C: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82f6_3b78 } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// An SCTP packet's correct checksum (over `sctp`, the common header and its chunks, the checksum field
/// counted as zero), as stored: little-endian (RFC 4960, appendix B).
fn sctp_crc(sctp: &[u8]) -> u32 {
    let mut c = !0u32;
    for (i, &b) in sctp.iter().enumerate() {
        let b = if (8..12).contains(&i) { 0 } else { b };
        c = CRC32C[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Writes key field `s` (whose new value is `v`) into the frame, fixing checksums; `partial` says the
/// transport checksum is the device's to complete. Fields the frame does not have (a TCP port of an ARP
/// frame) are left alone, as are those only the key holds. False when the frame is too short for the field
/// its headers say it has (nothing is then written).
pub(super) fn write_field(frame: &mut [u8], h: &mut Headers, partial: bool, s: Slot, v: u128) -> bool {
    let ip4 = h.ip && !h.v6 && h.ethertype == EtherType::IPV4;
    let ip6 = h.ip && h.v6;
    let arp = h.ethertype == EtherType::ARP;
    let l3 = ETH_LEN;
    let l4 = usize::from(h.l4_at);
    let ip_sum = [(l3 + 10, Sum::Full)];
    let mut sums: [(usize, Sum); 2] = [(0, Sum::Full); 2];
    let with = |first: &[(usize, Sum)], extra: Option<(usize, Sum)>, out: &mut [(usize, Sum); 2]| -> usize {
        let mut n = 0;
        for &x in first.iter().chain(extra.iter()) {
            out[n] = x;
            n += 1;
        }
        n
    };
    match s {
        slot::NW_SRC | slot::NW_DST => {
            let src = s == slot::NW_SRC;
            if ip4 {
                let n = with(&ip_sum, l4_sum(h, partial, true), &mut sums);
                let at = l3 + if src { 12 } else { 16 };
                if !patch(frame, at, &(v as u32).to_be_bytes(), &sums[..n]) {
                    return false;
                }
            } else if ip6 {
                let n = with(&[], l4_sum(h, partial, true), &mut sums);
                let at = l3 + if src { 8 } else { 24 };
                // Two halves: `patch` widens at most 20 bytes.
                let b = v.to_be_bytes();
                if !patch(frame, at, &b[..8], &sums[..n]) || !patch(frame, at + 8, &b[8..], &sums[..n]) {
                    return false;
                }
            } else if arp {
                let at = l3 + if src { 14 } else { 24 };
                if !patch(frame, at, &(v as u32).to_be_bytes(), &[]) {
                    return false;
                }
            } else {
                return true;
            }
            if src {
                h.nw_src = v;
            } else {
                h.nw_dst = v;
            }
        }
        slot::NW_TOS | slot::NW_ECN => {
            let (keep, new) = if s == slot::NW_TOS { (3u8, (v as u8) & 0xfc) } else { (0xfc, (v as u8) & 3) };
            if ip4 && frame.len() > l3 + 1 {
                let b = (frame[l3 + 1] & keep) | new;
                return patch(frame, l3 + 1, &[b], &ip_sum);
            }
            if ip6 && frame.len() > l3 + 1 {
                // The traffic class straddles the first two bytes (after the version, before the label).
                let tc = (((frame[l3] & 0x0f) << 4) | (frame[l3 + 1] >> 4)) & keep | new;
                frame[l3] = (frame[l3] & 0xf0) | (tc >> 4);
                frame[l3 + 1] = (frame[l3 + 1] & 0x0f) | (tc << 4);
            }
        }
        slot::NW_TTL => {
            if ip4 && frame.len() > l3 + 8 {
                return patch(frame, l3 + 8, &[v as u8], &ip_sum);
            }
            if ip6 && frame.len() > l3 + 7 {
                frame[l3 + 7] = v as u8;
            }
        }
        // The slot is MPLS's label too; the traffic class next to it.
        slot::IPV6_LABEL | slot::MPLS_TC if h.mpls.is_some() && frame.len() >= l3 + 4 => {
            let lse = u32::from_be_bytes([frame[l3], frame[l3 + 1], frame[l3 + 2], frame[l3 + 3]]);
            let lse = if s == slot::MPLS_TC {
                (lse & !0xe00) | ((v as u32 & 7) << 9)
            } else {
                (lse & 0xfff) | ((v as u32 & 0xf_ffff) << 12)
            };
            frame[l3..l3 + 4].copy_from_slice(&lse.to_be_bytes());
            h.mpls = Some(lse);
        }
        slot::IPV6_LABEL if ip6 && frame.len() >= l3 + 4 => {
            let label = (v as u32) & 0xf_ffff;
            frame[l3 + 1] = (frame[l3 + 1] & 0xf0) | (label >> 16) as u8;
            frame[l3 + 2..l3 + 4].copy_from_slice(&(label as u16).to_be_bytes());
        }
        slot::TP_SRC | slot::TP_DST if l4 != 0 && h.tp.is_some() => {
            let second = s == slot::TP_DST;
            match h.nw_proto {
                Some(6 | 17) => {
                    let n = with(&[], l4_sum(h, partial, false), &mut sums);
                    if !patch(frame, l4 + if second { 2 } else { 0 }, &(v as u16).to_be_bytes(), &sums[..n]) {
                        return false;
                    }
                }
                Some(132) => {
                    if frame.len() < l4 + 12 {
                        return false;
                    }
                    // Over the IP payload only, not the Ethernet padding behind it.
                    let end = if ip6 {
                        l3 + 40 + usize::from(u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]))
                    } else {
                        l3 + usize::from(u16::from_be_bytes([frame[l3 + 2], frame[l3 + 3]]))
                    };
                    let end = end.clamp(l4 + 12, frame.len());
                    // The checksum moves by what the port changes: a correct one stays correct, a wrong one
                    // stays wrong by as much (as OVS does: a switch does not hide corruption).
                    let stored = u32::from_le_bytes([frame[l4 + 8], frame[l4 + 9], frame[l4 + 10], frame[l4 + 11]]);
                    let before = sctp_crc(&frame[l4..end]);
                    frame[l4 + if second { 2 } else { 0 }..][..2].copy_from_slice(&(v as u16).to_be_bytes());
                    let after = sctp_crc(&frame[l4..end]);
                    frame[l4 + 8..l4 + 12].copy_from_slice(&(stored ^ before ^ after).to_le_bytes());
                }
                // ICMP type and code: one byte each, in the word the ICMP checksum covers.
                Some(1 | 58) => {
                    let n = with(&[], l4_sum(h, false, false), &mut sums);
                    if !patch(frame, l4 + usize::from(second), &[v as u8], &sums[..n]) {
                        return false;
                    }
                }
                _ => return true,
            }
            if let Some(tp) = h.tp.as_mut() {
                if second {
                    tp.1 = v as u16;
                } else {
                    tp.0 = v as u16;
                }
            }
        }
        // The ARP opcode (its low byte is what the key holds).
        slot::NW_PROTO if arp => return patch(frame, l3 + 6, &(v as u16 & 0xff).to_be_bytes(), &[]),
        slot::ARP_SHA | slot::ARP_THA => {
            let mac = &(v as u64).to_be_bytes()[2..];
            if arp {
                return patch(frame, l3 + if s == slot::ARP_SHA { 8 } else { 18 }, mac, &[]);
            }
            if let Some(opt) = nd_option(frame, h, if s == slot::ARP_SHA { 1 } else { 2 }) {
                let n = with(&[], l4_sum(h, partial, false), &mut sums);
                return patch(frame, opt + 2, mac, &sums[..n]);
            }
        }
        slot::ND_TARGET if l4 != 0 && h.nd_target_valid() => {
            let n = with(&[], l4_sum(h, partial, false), &mut sums);
            let b = v.to_be_bytes();
            if !patch(frame, l4 + 8, &b[..8], &sums[..n]) || !patch(frame, l4 + 16, &b[8..], &sums[..n]) {
                return false;
            }
            h.nd_target = v;
        }
        _ => {}
    }
    true
}

/// Where a neighbor-discovery message's link-layer address option of type `kind` starts (1: source, in a
/// solicitation; 2: target, in an advertisement).
fn nd_option(frame: &[u8], h: &Headers, kind: u8) -> Option<usize> {
    let want_type = if kind == 1 { 135 } else { 136 };
    if !h.nd_target_valid() || h.tp?.0 != want_type {
        return None;
    }
    let mut at = usize::from(h.l4_at) + 24;
    while at + 8 <= frame.len() {
        let len = usize::from(frame[at + 1]) * 8;
        if len == 0 || at + len > frame.len() {
            return None;
        }
        if frame[at] == kind && len == 8 {
            return Some(at);
        }
        at += len;
    }
    None
}

/// The incremental fixes, checked against checksums computed from scratch.
#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u32 {
        b.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum()
    }

    /// The TCP/UDP checksum of an IPv4 frame, from scratch.
    fn l4_check(f: &[u8], proto: u8) -> u16 {
        let l4 = &f[34..];
        let mut s = sum(&f[26..34]) + u32::from(proto) + l4.len() as u32;
        s += sum(l4);
        fold(s)
    }

    fn tcp4() -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 8, 0];
        f.extend_from_slice(&[0x45, 0x21, 0, 44, 0, 1, 0x40, 0, 64, 6, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
        f.extend_from_slice(&[0x13, 0x89, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
        f.extend_from_slice(b"abcd");
        let ip = !fold(sum(&f[14..34]));
        f[24..26].copy_from_slice(&ip.to_be_bytes());
        let c = !l4_check(&f, 6);
        f[50..52].copy_from_slice(&c.to_be_bytes());
        f
    }

    #[test]
    fn ipv4_rewrites_keep_both_checksums_right() {
        for (s, v) in [
            (slot::NW_SRC, 0xc633_6401u128),
            (slot::NW_DST, 0x0a00_0001),
            (slot::TP_SRC, 443),
            (slot::TP_DST, 8080),
            (slot::NW_TTL, 3),
            (slot::NW_TOS, 0xb8),
            (slot::NW_ECN, 2),
        ] {
            let mut f = tcp4();
            let mut h = Headers::parse(&f);
            assert!(write_field(&mut f, &mut h, false, s, v));
            assert_eq!(fold(sum(&f[14..34])), 0xffff, "IP checksum after {s:?}");
            assert_eq!(l4_check(&f, 6), 0xffff, "TCP checksum after {s:?}");
            let again = Headers::parse(&f);
            assert_eq!((again.nw_src, again.nw_dst, again.tp), (h.nw_src, h.nw_dst, h.tp));
        }
        let mut f = tcp4();
        let mut h = Headers::parse(&f);
        write_field(&mut f, &mut h, false, slot::NW_TOS, 0xb8);
        assert_eq!(f[15], 0xb9, "the DSCP changes, the ECN bits stay");
    }

    #[test]
    fn a_device_completed_checksum_moves_with_the_addresses_only() {
        let mut f = tcp4();
        // What a sender leaves for the device: the pseudo-header's sum.
        let pseudo = fold(sum(&f[26..34]) + 6 + 30);
        f[50..52].copy_from_slice(&pseudo.to_be_bytes());
        let mut h = Headers::parse(&f);
        write_field(&mut f, &mut h, true, slot::NW_DST, 0x0a00_0001);
        write_field(&mut f, &mut h, true, slot::TP_DST, 22);
        assert_eq!(read16(&f, 50), fold(sum(&f[26..34]) + 6 + 30));
    }

    #[test]
    fn udp_without_a_checksum_keeps_none_and_sctp_is_summed_again() {
        let mut f = tcp4();
        f[23] = 17;
        f[50..52].fill(0);
        f[40..42].fill(0); // UDP's checksum field (offset 6)
        let mut h = Headers::parse(&f);
        write_field(&mut f, &mut h, false, slot::NW_SRC, 1);
        assert_eq!(read16(&f, 40), 0);
        // SCTP: a correct checksum stays correct; a wrong one stays wrong by as much.
        let mut s = tcp4();
        s[23] = 132;
        let good = sctp_crc(&s[34..]);
        s[42..46].copy_from_slice(&good.to_le_bytes());
        let mut h = Headers::parse(&s);
        write_field(&mut s, &mut h, false, slot::TP_SRC, 7);
        let stored = u32::from_le_bytes([s[42], s[43], s[44], s[45]]);
        assert_eq!(stored, sctp_crc(&s[34..]));
        s[42] ^= 0x55;
        write_field(&mut s, &mut h, false, slot::TP_DST, 9);
        assert_eq!(u32::from_le_bytes([s[42], s[43], s[44], s[45]]), sctp_crc(&s[34..]) ^ 0x55);
        // RFC 3720's CRC32c check value of 32 zero bytes.
        let mut c = !0u32;
        for b in [0u8; 32] {
            c = CRC32C[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
        }
        assert_eq!(!c, 0x8a91_36aa);
    }

    #[test]
    fn short_frames_are_left_alone() {
        let full = tcp4();
        for n in 0..full.len() {
            let mut f = full[..n].to_vec();
            let mut h = Headers::parse(&full);
            for s in [slot::NW_SRC, slot::TP_DST, slot::NW_TTL, slot::NW_TOS, slot::ND_TARGET, slot::ARP_SHA] {
                let _ = write_field(&mut f, &mut h, false, s, 1);
            }
        }
    }
}
