//! Offloads the kernel leaves to us: the virtio-net header (include/uapi/linux/virtio_net.h) that TAP and
//! AF_PACKET put in front of a frame, checksum completion for frames marked NEEDS_CSUM, and software
//! segmentation of TCP frames larger than the wire allows (TSO/GSO).
//!
//! A veth or TAP peer with offloads on hands a switch frames whose TCP/UDP checksum holds only the
//! pseudo-header sum, and TCP frames of up to 64 KiB. Forwarded as they are, ping works and TCP never
//! connects; so weft completes or segments them before they leave.

use weft_wire::checksum;
use weft_wire::ethernet::{EtherType, HEADER_LEN as ETH_LEN};
use weft_wire::ipv4::{Ipv4Packet, Protocol};
use weft_wire::tcp::{TcpPacket, FLAG_FIN, FLAG_PSH};

/// Length of the legacy `struct virtio_net_hdr`.
pub const VNET_HDR_LEN: usize = 10;
pub const F_NEEDS_CSUM: u8 = 1;
pub const F_DATA_VALID: u8 = 2;
pub const GSO_NONE: u8 = 0;
pub const GSO_TCPV4: u8 = 1;
pub const GSO_UDP: u8 = 3;
pub const GSO_TCPV6: u8 = 4;
pub const GSO_UDP_L4: u8 = 5;
pub const GSO_ECN: u8 = 0x80;
const TCP_FLAG_CWR: u8 = 0x80;

/// Why an offloaded frame could not be completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    /// The header points outside the frame, or the headers it describes are not there.
    #[error("offload metadata does not match the frame: {0}")]
    Malformed(&'static str),
    /// A GSO type weft does not segment (UDP fragmentation offload, UDP L4 segmentation).
    #[error("unsupported segmentation offload type {0}")]
    Unsupported(u8),
    /// The output area cannot hold every segment.
    #[error("segmentation output needs {0} bytes")]
    NoRoom(usize),
}

/// The virtio-net header, in the host's byte order as TAP and AF_PACKET use it on little-endian machines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VnetHdr {
    pub flags: u8,
    pub gso_type: u8,
    pub hdr_len: u16,
    pub gso_size: u16,
    pub csum_start: u16,
    pub csum_offset: u16,
}

impl VnetHdr {
    /// Reads the header from the first [`VNET_HDR_LEN`] bytes, or `None` when `b` is shorter.
    pub fn parse(b: &[u8]) -> Option<VnetHdr> {
        let b = b.get(..VNET_HDR_LEN)?;
        let u = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        Some(VnetHdr {
            flags: b[0],
            gso_type: b[1],
            hdr_len: u(2),
            gso_size: u(4),
            csum_start: u(6),
            csum_offset: u(8),
        })
    }

    /// An all-zero header: "nothing offloaded", what weft writes in front of every frame it sends.
    pub const NONE: [u8; VNET_HDR_LEN] = [0; VNET_HDR_LEN];

    /// The header as TAP and AF_PACKET read it.
    pub fn to_bytes(&self) -> [u8; VNET_HDR_LEN] {
        let mut b = [0u8; VNET_HDR_LEN];
        b[0] = self.flags;
        b[1] = self.gso_type;
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        b
    }

    /// The same header for the frame with `by` bytes (an 802.1Q tag) inserted before its IP header.
    pub fn shifted(&self, by: u16) -> VnetHdr {
        VnetHdr { hdr_len: self.hdr_len + by, csum_start: self.csum_start + by, ..*self }
    }

    /// The same header for the frame after its 802.1Q tag (4 bytes before the IP header) was taken out.
    pub fn untagged(&self) -> VnetHdr {
        VnetHdr { hdr_len: self.hdr_len.saturating_sub(4), csum_start: self.csum_start.saturating_sub(4), ..*self }
    }

    /// Whether the header describes a frame weft can pass on unsegmented: a GSO type weft could also cut
    /// itself, a segment size, and a checksum position inside a frame of `frame_len` bytes.
    pub fn passable(&self, frame_len: usize) -> bool {
        matches!(self.gso_type & !GSO_ECN, GSO_TCPV4 | GSO_TCPV6 | GSO_UDP_L4)
            && self.flags & F_NEEDS_CSUM != 0
            && self.gso_size > 0
            && usize::from(self.csum_start) + usize::from(self.csum_offset) + 2 <= frame_len
            && usize::from(self.hdr_len) <= frame_len
    }

    pub fn is_gso(&self) -> bool {
        self.gso_type & !GSO_ECN != GSO_NONE
    }
}

/// Fills in a checksum left to offload: the field at `csum_start + csum_offset` holds the pseudo-header sum,
/// and the checksum covers everything from `csum_start` to the end of the frame.
pub fn complete_checksum(frame: &mut [u8], csum_start: usize, csum_offset: usize) -> Result<(), OffloadError> {
    let at = csum_start + csum_offset;
    if at + 2 > frame.len() {
        return Err(OffloadError::Malformed("checksum field outside the frame"));
    }
    let c = checksum::finish(checksum::sum(&frame[csum_start..]));
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    Ok(())
}

/// How long each segment of an offloaded `frame` is on the wire (its headers and `gso_size` bytes of payload),
/// or `None` when the header points outside the frame.
pub fn segment_wire_len(frame: &[u8], hdr: &VnetHdr) -> Option<usize> {
    let l4 = usize::from(hdr.csum_start);
    let l4_len = if hdr.gso_type & !GSO_ECN == GSO_UDP_L4 { 8 } else { usize::from(frame.get(l4 + 12)? >> 4) * 4 };
    Some(l4 + l4_len + usize::from(hdr.gso_size))
}

/// [`segment_wire_len`] for an untagged frame whose headers were parsed once.
pub fn segment_wire_len_of(hdr: &VnetHdr, h: &crate::headers::Headers) -> Option<usize> {
    let l4 = usize::from(hdr.csum_start);
    let l4_len = if hdr.gso_type & !GSO_ECN == GSO_UDP_L4 { 8 } else { usize::from(h.tcp_hlen?) };
    Some(l4 + l4_len + usize::from(hdr.gso_size))
}

/// Offset of the IP header: after the Ethernet header and any 802.1Q/802.1ad tags.
fn l3_offset(frame: &[u8]) -> Result<(usize, u16), OffloadError> {
    let mut at = ETH_LEN - 2;
    loop {
        let t = frame.get(at..at + 2).ok_or(OffloadError::Malformed("frame ends inside the Ethernet header"))?;
        let t = u16::from_be_bytes([t[0], t[1]]);
        if t == EtherType::VLAN || t == EtherType::QINQ {
            at += 4;
        } else {
            return Ok((at + 2, t));
        }
    }
}

/// Where segments go in the output: `head` (a tunnel header) in front of each, and an 802.1Q `tag` inserted
/// after each one's MAC addresses. The default is neither: bare frames.
#[derive(Debug, Clone, Copy, Default)]
pub struct SegmentLayout<'a> {
    pub head: &'a [u8],
    pub tag: Option<[u8; 4]>,
}

/// Cuts a TCP frame marked for segmentation into frames carrying at most `gso_size` bytes of payload each,
/// written one after another into `out` (see [`segment`]).
pub fn segment_tcp(
    frame: &[u8],
    hdr: &VnetHdr,
    out: &mut [u8],
    on_segment: impl FnMut(std::ops::Range<usize>),
) -> Result<usize, OffloadError> {
    segment(frame, hdr, SegmentLayout::default(), out, on_segment)
}

/// Cuts a TCP or UDP frame marked for segmentation (GSO types TCPV4, TCPV6, UDP_L4) into frames carrying at
/// most `gso_size` bytes of payload each, written one after another into `out`, each as `layout` says. TCP
/// segments get their own IP length (and IPv4 ID), sequence number, flags (FIN and PSH only on the last, CWR
/// only on the first) and complete checksums; UDP datagrams their own lengths and checksums.
/// `on_segment` receives the range of each segment within `out` (the head included). Returns the bytes of
/// `out` used.
///
/// All segments but the last have the same length, so the output can go to the kernel as one UDP_SEGMENT
/// train when `head` is a UDP tunnel header.
pub fn segment(
    frame: &[u8],
    hdr: &VnetHdr,
    layout: SegmentLayout<'_>,
    out: &mut [u8],
    mut on_segment: impl FnMut(std::ops::Range<usize>),
) -> Result<usize, OffloadError> {
    let (v6, udp) = match hdr.gso_type & !GSO_ECN {
        GSO_TCPV4 => (false, false),
        GSO_TCPV6 => (true, false),
        GSO_UDP_L4 => (false, true), // the family is the frame's
        other => return Err(OffloadError::Unsupported(other)),
    };
    let (l3, ethertype) = l3_offset(frame)?;
    let v6 = if udp { ethertype == EtherType::IPV6 } else { v6 };
    if ethertype != if v6 { EtherType::IPV6 } else { EtherType::IPV4 } {
        return Err(OffloadError::Malformed("GSO type does not match the EtherType"));
    }
    let l4 = usize::from(hdr.csum_start);
    let l4_min = if udp { 8 } else { 20 };
    if l4 < l3 + if v6 { 40 } else { 20 } || l4 + l4_min > frame.len() {
        return Err(OffloadError::Malformed("csum_start does not point at a TCP or UDP header"));
    }
    // The IP header must be whole and end where the L4 header begins (csum_start): its length fields are
    // rewritten below, and a header length reaching past csum_start would overlap the L4 header.
    if v6 {
        if frame[l3] >> 4 != 6 {
            return Err(OffloadError::Malformed("IPv6 GSO frame without an IPv6 header"));
        }
    } else {
        let ihl = usize::from(frame[l3] & 0x0f) * 4;
        if frame[l3] >> 4 != 4 || ihl < 20 || l3 + ihl > l4 {
            return Err(OffloadError::Malformed("IPv4 header length does not fit before csum_start"));
        }
    }
    let l4_len = if udp {
        8
    } else {
        TcpPacket::new_checked(&frame[l4..]).map_err(|_| OffloadError::Malformed("bad TCP header"))?.header_len()
    };
    let headers = l4 + l4_len;
    let mss = usize::from(hdr.gso_size);
    if mss == 0 || headers > frame.len() {
        return Err(OffloadError::Malformed("zero segment size or headers past the frame"));
    }
    let payload = &frame[headers..];
    let count = payload.len().div_ceil(mss).max(1);
    let (head, tag_len) = (layout.head, if layout.tag.is_some() { 4 } else { 0 });
    let per_segment = head.len() + tag_len + headers;
    let needed = count * per_segment + payload.len();
    if needed > out.len() {
        return Err(OffloadError::NoRoom(needed));
    }
    let (seq0, flags0) = if udp {
        (0, 0)
    } else {
        let t = TcpPacket::new_unchecked(&frame[l4..]);
        (t.seq_number(), t.flags())
    };
    let ident0 = if v6 { 0 } else { Ipv4Packet::new_unchecked(&frame[l3..]).ident() };
    // Offsets within one segment, after its head and with the tag in.
    let (l3s, l4s) = (l3 + tag_len, l4 + tag_len);
    let mut at = 0;
    for i in 0..count {
        let chunk = &payload[(i * mss).min(payload.len())..((i + 1) * mss).min(payload.len())];
        let whole = &mut out[at..at + per_segment + chunk.len()];
        whole[..head.len()].copy_from_slice(head);
        let seg = &mut whole[head.len()..];
        let seg_len = seg.len();
        match &layout.tag {
            Some(tag) => {
                seg[..12].copy_from_slice(&frame[..12]);
                seg[12..16].copy_from_slice(tag);
                seg[16..16 + headers - 12].copy_from_slice(&frame[12..headers]);
            }
            None => seg[..headers].copy_from_slice(&frame[..headers]),
        }
        seg[tag_len + headers..].copy_from_slice(chunk);
        let l3_len = seg_len - l3s;
        if v6 {
            seg[l3s + 4..l3s + 6].copy_from_slice(&((l3_len - 40) as u16).to_be_bytes());
        } else {
            let mut ip = Ipv4Packet::new_unchecked(&mut seg[l3s..]);
            ip.set_total_len(l3_len as u16);
            ip.set_ident(ident0.wrapping_add(i as u16));
            ip.fill_checksum();
        }
        let l4_total = seg_len - l4s;
        let proto = if udp { Protocol::UDP } else { Protocol::TCP };
        let pseudo = if v6 {
            let s: [u8; 16] = seg[l3s + 8..l3s + 24].try_into().unwrap_or([0; 16]);
            let d: [u8; 16] = seg[l3s + 24..l3s + 40].try_into().unwrap_or([0; 16]);
            checksum::pseudo_v6(s.into(), d.into(), proto, l4_total as u32)
        } else {
            let s: [u8; 4] = seg[l3s + 12..l3s + 16].try_into().unwrap_or([0; 4]);
            let d: [u8; 4] = seg[l3s + 16..l3s + 20].try_into().unwrap_or([0; 4]);
            checksum::pseudo_v4(s.into(), d.into(), proto, l4_total as u16)
        };
        let csum_at = if udp {
            seg[l4s + 4..l4s + 6].copy_from_slice(&(l4_total as u16).to_be_bytes());
            l4s + 6
        } else {
            let mut flags = flags0;
            if i + 1 < count {
                flags &= !(FLAG_FIN | FLAG_PSH);
            }
            if i > 0 {
                flags &= !TCP_FLAG_CWR;
            }
            let mut t = TcpPacket::new_unchecked(&mut seg[l4s..]);
            t.set_seq_number(seq0.wrapping_add((i * mss) as u32));
            t.set_flags(flags);
            l4s + weft_wire::tcp::CHECKSUM_OFFSET
        };
        seg[csum_at..csum_at + 2].copy_from_slice(&[0, 0]);
        let mut c = checksum::finish(checksum::combine(pseudo, checksum::sum(&seg[l4s..])));
        if udp && c == 0 {
            c = 0xffff; // a computed UDP checksum of zero goes as all ones (RFC 768)
        }
        seg[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
        let len = per_segment + chunk.len();
        on_segment(at..at + len);
        at += len;
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use weft_wire::ipv4::Ipv4Repr;

    /// An Ethernet + IPv4 + TCP frame with `payload` bytes, its TCP checksum left partial as a kernel with
    /// offloads leaves it.
    fn tso_frame(payload: usize) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20 + payload];
        f[12..14].copy_from_slice(&EtherType::IPV4.to_be_bytes());
        let (s, d) = (Ipv4Addr::new(198, 51, 100, 1), Ipv4Addr::new(198, 51, 100, 2));
        Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            protocol: Protocol::TCP,
            payload_len: 20 + payload,
            hop_limit: 64,
            dscp_ecn: 0,
            ident: 100,
            dont_frag: true,
        }
        .emit(&mut f[14..]);
        let t = &mut f[34..];
        t[0..2].copy_from_slice(&5001u16.to_be_bytes());
        t[2..4].copy_from_slice(&40000u16.to_be_bytes());
        t[4..8].copy_from_slice(&1000u32.to_be_bytes());
        t[12] = 5 << 4;
        t[13] = FLAG_PSH | 0x10;
        for (i, b) in t[20..].iter_mut().enumerate() {
            *b = i as u8;
        }
        let partial = checksum::pseudo_v4(s, d, Protocol::TCP, (20 + payload) as u16);
        let mut p = partial;
        while p > 0xffff {
            p = (p & 0xffff) + (p >> 16);
        }
        f[34 + 16..34 + 18].copy_from_slice(&(p as u16).to_be_bytes());
        f
    }

    fn tcp_checksum_ok(seg: &[u8]) -> bool {
        let ip = Ipv4Packet::new_checked(&seg[14..]).unwrap();
        let ps = checksum::pseudo_v4(ip.src_addr(), ip.dst_addr(), Protocol::TCP, ip.payload().len() as u16);
        ip.verify_checksum() && checksum::finish(checksum::combine(ps, checksum::sum(ip.payload()))) == 0
    }

    #[test]
    fn parses_header() {
        let b = [1u8, 1, 66, 0, 0xaa, 0x05, 34, 0, 16, 0];
        let h = VnetHdr::parse(&b).unwrap();
        assert_eq!((h.flags, h.gso_type, h.hdr_len, h.gso_size, h.csum_start, h.csum_offset), (1, 1, 66, 1450, 34, 16));
        assert!(h.is_gso());
        assert!(VnetHdr::parse(&b[..9]).is_none());
    }

    #[test]
    fn completes_partial_checksum() {
        let mut f = tso_frame(100);
        assert!(!tcp_checksum_ok(&f));
        complete_checksum(&mut f, 34, 16).unwrap();
        assert!(tcp_checksum_ok(&f));
        assert!(complete_checksum(&mut f, 200, 16).is_err());
    }

    #[test]
    fn segments_tso_frame() {
        let f = tso_frame(3000);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_TCPV4,
            hdr_len: 54,
            gso_size: 1400,
            csum_start: 34,
            csum_offset: 16,
        };
        let mut out = vec![0u8; 8000];
        let mut segs = Vec::new();
        let used = segment_tcp(&f, &hdr, &mut out, |r| segs.push(r)).unwrap();
        assert_eq!(segs.len(), 3);
        assert_eq!(used, 3 * 54 + 3000);
        let mut expect_seq = 1000u32;
        let mut payload = Vec::new();
        for (i, r) in segs.iter().enumerate() {
            let s = &out[r.clone()];
            assert!(tcp_checksum_ok(s), "segment {i} checksums");
            let ip = Ipv4Packet::new_checked(&s[14..]).unwrap();
            assert_eq!(ip.ident(), 100 + i as u16);
            let t = TcpPacket::new_checked(ip.payload()).unwrap();
            assert_eq!(t.seq_number(), expect_seq);
            assert_eq!(t.flags() & FLAG_PSH != 0, i == 2, "PSH only on the last segment");
            expect_seq += t.payload().len() as u32;
            payload.extend_from_slice(t.payload());
        }
        assert_eq!(payload, f[54..].to_vec());
    }

    #[test]
    fn segments_udp_with_tunnel_head_and_tag() {
        let payload = 2500;
        let mut f = vec![0u8; 14 + 20 + 8 + payload];
        f[12..14].copy_from_slice(&EtherType::IPV4.to_be_bytes());
        let (s, d) = (Ipv4Addr::new(198, 51, 100, 1), Ipv4Addr::new(198, 51, 100, 2));
        let repr = Ipv4Repr {
            src_addr: s,
            dst_addr: d,
            protocol: Protocol::UDP,
            payload_len: 8 + payload,
            hop_limit: 64,
            dscp_ecn: 0,
            ident: 9,
            dont_frag: false,
        };
        repr.emit(&mut f[14..]);
        f[34..36].copy_from_slice(&4000u16.to_be_bytes());
        f[36..38].copy_from_slice(&5000u16.to_be_bytes());
        for (i, b) in f[42..].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: 42,
            gso_size: 1000,
            csum_start: 34,
            csum_offset: 6,
        };
        let head = [0xabu8; 8];
        let tag = [0x81, 0x00, 0x00, 0x0a];
        let mut out = vec![0u8; 8000];
        let mut segs = Vec::new();
        segment(&f, &hdr, SegmentLayout { head: &head, tag: Some(tag) }, &mut out, |r| segs.push(r)).unwrap();
        assert_eq!(segs.iter().map(|r| r.len()).collect::<Vec<_>>(), vec![8 + 46 + 1000, 8 + 46 + 1000, 8 + 46 + 500]);
        let mut got = Vec::new();
        for (i, r) in segs.iter().enumerate() {
            let seg = &out[r.clone()];
            assert_eq!(seg[..8], head);
            let frame = &seg[8..];
            assert_eq!(frame[12..16], tag, "tag after the MAC addresses");
            let ip = Ipv4Packet::new_checked(&frame[18..]).unwrap();
            assert!(ip.verify_checksum());
            assert_eq!(ip.ident(), 9 + i as u16);
            let udp = ip.payload();
            assert_eq!(usize::from(u16::from_be_bytes([udp[4], udp[5]])), udp.len());
            let ps = checksum::pseudo_v4(s, d, Protocol::UDP, udp.len() as u16);
            assert_eq!(checksum::finish(checksum::combine(ps, checksum::sum(udp))), 0, "datagram {i} checksum");
            got.extend_from_slice(&udp[8..]);
        }
        assert_eq!(got, f[42..].to_vec());
    }

    #[test]
    fn refuses_bad_metadata() {
        let f = tso_frame(100);
        let mut out = vec![0u8; 1000];
        let bad = VnetHdr { gso_type: GSO_TCPV4, gso_size: 50, csum_start: 500, ..Default::default() };
        assert!(segment_tcp(&f, &bad, &mut out, |_| {}).is_err());
        let ufo = VnetHdr { gso_type: GSO_UDP, gso_size: 50, csum_start: 34, ..Default::default() };
        assert_eq!(segment_tcp(&f, &ufo, &mut out, |_| {}), Err(OffloadError::Unsupported(GSO_UDP)));
        let v6 = VnetHdr { gso_type: GSO_TCPV6, gso_size: 50, csum_start: 34, ..Default::default() };
        assert!(segment_tcp(&f, &v6, &mut out, |_| {}).is_err());
        // Found by the offload fuzz target: an IHL of 60 bytes with csum_start at 34.
        let mut long_ihl = f.clone();
        long_ihl[14] = 0x4f;
        let hdr = VnetHdr { gso_type: GSO_TCPV4, gso_size: 50, csum_start: 34, ..Default::default() };
        assert!(matches!(segment_tcp(&long_ihl, &hdr, &mut out, |_| {}), Err(OffloadError::Malformed(_))));
        let small = VnetHdr { gso_type: GSO_TCPV4, gso_size: 10, csum_start: 34, ..Default::default() };
        assert!(matches!(segment_tcp(&f, &small, &mut out[..100], |_| {}), Err(OffloadError::NoRoom(_))));
    }
}
