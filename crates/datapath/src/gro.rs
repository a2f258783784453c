//! Receive-side coalescing: consecutive TCP segments (or same-sized UDP datagrams) of one flow that arrived
//! together from a tunnel are merged, in place, back into one large frame that goes to a TAP or AF_PACKET port
//! with a virtio-net header saying "segment me" (GSO, or USO for UDP) and "the checksum is yours to finish"
//! (NEEDS_CSUM). UDP is merged as the kernel's UDP GRO forwarding does: the receiving stack cuts the frame
//! into the same datagrams again, at a fraction of the per-packet cost on the way there.
//!
//! The rules are those of the kernel's own TCP GRO (net/ipv4/tcp_offload.c) and of wireguard-go's tcpGRO,
//! kept conservative: a segment joins a run only when it is the very next byte of the same flow and every
//! header field except lengths, IPv4 ID, checksums and PSH is identical — so that cutting the merged frame
//! again gives back exactly the segments that were sent. Each segment's TCP checksum is verified before it
//! joins: the merged frame leaves with a partial checksum, which the receiver trusts.
//!
//! Merging moves payloads towards the front of the same buffer: a segment's payload lands where the run ends,
//! which is never past where it already was, so nothing that is still to be read is overwritten. Or, where
//! the frame will be written out by a gathering write and read no further than its headers before, the
//! payloads stay where they arrived and the run lists them (`MergeRun::leave_in_place`, `Gathered`).

use crate::offload::{VnetHdr, F_NEEDS_CSUM, GSO_TCPV4, GSO_TCPV6, GSO_UDP_L4};
use std::ops::Range;
use weft_wire::checksum;
use weft_wire::ethernet::{EtherType, HEADER_LEN as ETH_LEN};
use weft_wire::ipv4::Protocol;
use weft_wire::tcp::{CHECKSUM_OFFSET, FLAG_ACK, FLAG_PSH};

/// Where the checksum is in a UDP header.
const UDP_CHECKSUM_OFFSET: usize = 6;

/// Most segments merged into one frame (the kernel's UDP_MAX_SEGMENTS on older kernels, and what a GSO frame
/// written to a TAP may hold).
pub const MAX_SEGMENTS: u16 = 64;
/// Largest merged IP packet.
const MAX_IP_LEN: usize = 65_535;

/// A run of TCP segments (or UDP datagrams) of one flow being merged into the buffer of the first.
#[derive(Debug, Clone)]
pub struct MergeRun {
    /// The merged frame must end before this offset of the buffer.
    limit: usize,
    /// The merged frame is `buf[start..start + len]`.
    start: usize,
    len: usize,
    l3: usize,
    l4: usize,
    /// Ethernet, IP and TCP headers (with options).
    headers: usize,
    v6: bool,
    /// UDP datagrams rather than TCP segments.
    udp: bool,
    /// Payload of the first segment: every segment but the last carries exactly this much.
    mss: usize,
    next_seq: u32,
    /// IPv4 without DF: the ID the next segment must carry (cutting the merged frame again numbers the pieces
    /// from the first one's ID). With DF the ID means nothing (RFC 6864) and is not looked at.
    next_id: Option<u16>,
    count: u16,
    psh: bool,
    /// No segment may follow (a short one or one with PSH arrived).
    closed: bool,
    /// Payloads stay where they arrived and are listed in `pieces` (see [`MergeRun::leave_in_place`]).
    in_place: bool,
    /// The first segment's length, and where each later segment's payload lies (`count - 1` of them).
    first: u32,
    pieces: [(u32, u32); MAX_SEGMENTS as usize - 1],
}

/// A merged frame whose segments' payloads were left where they arrived: its first segment (headers fixed
/// for the whole frame, and its own payload) at `start`, then each later payload where it lies.
#[derive(Debug, Clone, Copy)]
pub struct Gathered {
    /// Where the frame starts in the buffer.
    pub start: u32,
    /// Its first segment's length, headers and payload.
    pub first: u32,
    pieces: [(u32, u32); MAX_SEGMENTS as usize - 1],
    count: u8,
}

impl Gathered {
    /// The first segment's bytes and then each later payload, in order, as ranges of the buffer.
    pub fn parts(&self) -> impl Iterator<Item = Range<usize>> + '_ {
        let head = self.start as usize..(self.start + self.first) as usize;
        std::iter::once(head).chain(self.pieces[..usize::from(self.count)].iter().map(|&(a, b)| a as usize..b as usize))
    }

    /// How many parts [`Gathered::parts`] gives.
    pub fn part_count(&self) -> usize {
        1 + usize::from(self.count)
    }

    /// Moves the payloads behind the first segment, as merging does when it does not leave them in place:
    /// afterwards the frame is contiguous at `start`. Each payload lands where the frame ends so far, never
    /// past where it lay, so nothing still to be moved is overwritten.
    pub fn close_gaps(&self, buf: &mut [u8]) {
        let mut to = (self.start + self.first) as usize;
        for &(a, b) in &self.pieces[..usize::from(self.count)] {
            buf.copy_within(a as usize..b as usize, to);
            to += (b - a) as usize;
        }
    }
}

/// The parts of a TCP segment or UDP datagram that could be merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Seg {
    /// Where the IP header starts: after the Ethernet header and at most one 802.1Q tag.
    l3: usize,
    l4: usize,
    /// Ethernet (and tag), IP and TCP/UDP headers.
    headers: usize,
    payload: usize,
    v6: bool,
    udp: bool,
}

/// Checks that `frame` is a plain TCP segment or UDP datagram (IPv4 without options or fragmentation, or IPv6
/// without extension headers; untagged or with one 802.1Q tag) that could be merged.
fn parse(frame: &[u8]) -> Option<Seg> {
    if frame.len() < ETH_LEN + 4 + 40 {
        return None;
    }
    let mut l3 = ETH_LEN;
    let mut ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    if ethertype == EtherType::VLAN {
        ethertype = u16::from_be_bytes([frame[16], frame[17]]);
        l3 += 4;
    }
    let (v6, l4, l3_len) = match ethertype {
        EtherType::IPV4 => {
            let ip = &frame[l3..];
            // No options, not a fragment, TCP or UDP.
            if ip[0] != 0x45
                || !matches!(ip[9], Protocol::TCP | Protocol::UDP)
                || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0
            {
                return None;
            }
            (false, l3 + 20, usize::from(u16::from_be_bytes([ip[2], ip[3]])))
        }
        EtherType::IPV6 => {
            let ip = &frame[l3..];
            if ip[0] >> 4 != 6 || !matches!(ip[6], Protocol::TCP | Protocol::UDP) {
                return None;
            }
            (true, l3 + 40, 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]])))
        }
        _ => return None,
    };
    // The frame must end where the IP packet ends (no Ethernet padding).
    if l3 + l3_len != frame.len() {
        return None;
    }
    let proto = if v6 { frame[l3 + 6] } else { frame[l3 + 9] };
    if proto == Protocol::UDP {
        let udp = frame.get(l4..l4 + 8)?;
        if usize::from(u16::from_be_bytes([udp[4], udp[5]])) != frame.len() - l4 {
            return None;
        }
        let payload = frame.len() - l4 - 8;
        return (payload > 0).then_some(Seg { l3, l4, headers: l4 + 8, payload, v6, udp: true });
    }
    let tcp = frame.get(l4..l4 + 20)?;
    let thl = usize::from(tcp[12] >> 4) * 4;
    if thl < 20 || l4 + thl > frame.len() {
        return None;
    }
    // ACK, optionally PSH; nothing else (SYN, FIN, RST, URG, ECE, CWR end or prevent merging).
    if tcp[13] & !FLAG_PSH != FLAG_ACK {
        return None;
    }
    let payload = frame.len() - l4 - thl;
    (payload > 0).then_some(Seg { l3, l4, headers: l4 + thl, payload, v6, udp: false })
}

/// The pseudo-header sum of the TCP (or, with `udp`, UDP) packet in `frame` whose IP header starts at `l3`
/// and whose L4 part is `l4_len` long.
fn pseudo_for(frame: &[u8], l3: usize, v6: bool, udp: bool, l4_len: usize) -> u32 {
    let proto = if udp { Protocol::UDP } else { Protocol::TCP };
    if v6 {
        let s: [u8; 16] = frame[l3 + 8..l3 + 24].try_into().unwrap_or([0; 16]);
        let d: [u8; 16] = frame[l3 + 24..l3 + 40].try_into().unwrap_or([0; 16]);
        checksum::pseudo_v6(s.into(), d.into(), proto, l4_len as u32)
    } else {
        let s: [u8; 4] = frame[l3 + 12..l3 + 16].try_into().unwrap_or([0; 4]);
        let d: [u8; 4] = frame[l3 + 16..l3 + 20].try_into().unwrap_or([0; 4]);
        checksum::pseudo_v4(s.into(), d.into(), proto, l4_len as u16)
    }
}

#[cfg(test)]
fn pseudo(frame: &[u8], l3: usize, v6: bool, tcp_len: usize) -> u32 {
    pseudo_for(frame, l3, v6, false, tcp_len)
}

/// Whether the segment's checksum is right, or was left partial by its sender (the merged frame leaves with a
/// partial checksum anyway, for the receiver to fill in). An IPv4 UDP datagram without a checksum (zero) has
/// nothing to check; merged, it gets one.
fn checksum_ok(frame: &[u8], seg: &Seg) -> bool {
    let l4 = &frame[seg.l4..];
    if seg.udp && !seg.v6 && l4[6..8] == [0, 0] {
        return true;
    }
    let p = pseudo_for(frame, seg.l3, seg.v6, seg.udp, l4.len());
    let at = if seg.udp { UDP_CHECKSUM_OFFSET } else { CHECKSUM_OFFSET };
    if is_partial(p, &l4[at..at + 2]) {
        return true;
    }
    checksum::finish(checksum::combine(p, checksum::sum(l4))) == 0
}

/// Whether a checksum field holds only the pseudo-header sum `p` (folded, not complemented): what a Linux
/// sender leaves for an offload (CHECKSUM_PARTIAL).
fn is_partial(p: u32, field: &[u8]) -> bool {
    !checksum::finish(p) == u16::from_be_bytes([field[0], field[1]])
}

/// The virtio-net header that makes a TCP frame with a partial checksum and an IP packet longer than `mtu`
/// a GSO frame cut at `mtu`, if `frame` is one. A Linux VXLAN peer on a veth underlay hands such frames over
/// whole: its TSO frame crosses the veth as one UDP-tunnel GSO packet and the receiving UDP socket delivers
/// it as one datagram, the segment size lost on the way; the segments are cut to the tunnel's MTU instead.
pub fn oversized_partial_tcp(frame: &[u8], mtu: usize) -> Option<VnetHdr> {
    let (l4, at, end) = partial_checksum(frame)?;
    if at != CHECKSUM_OFFSET {
        return None;
    }
    let l3 = if u16::from_be_bytes([frame[12], frame[13]]) == EtherType::VLAN { ETH_LEN + 4 } else { ETH_LEN };
    let v6 = frame[l3] >> 4 == 6;
    let thl = usize::from(frame[l4 + 12] >> 4) * 4;
    if end - l3 <= mtu || thl < 20 || l4 + thl > end || mtu <= (l4 - l3) + thl {
        return None;
    }
    Some(VnetHdr {
        flags: F_NEEDS_CSUM,
        gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
        hdr_len: (l4 + thl) as u16,
        gso_size: (mtu - (l4 - l3) - thl) as u16,
        csum_start: l4 as u16,
        csum_offset: CHECKSUM_OFFSET as u16,
    })
}

/// Where the TCP or UDP checksum of `frame` starts and lies (`csum_start`, `csum_offset`, as a virtio-net
/// header gives them) and where the IP packet ends (Ethernet padding excluded), when its sender left the
/// checksum partial: the field holds the pseudo-header sum and nothing more.
///
/// A Linux VXLAN peer on a veth underlay sends inner segments so (the skb stays CHECKSUM_PARTIAL through the
/// veth and the UDP socket hands the payload over as it is); forwarded unfinished, the endpoint drops every
/// segment. Only the headers are read: a frame whose checksum is already right costs no pass over its payload.
/// (A right checksum that happens to equal the pseudo-header sum, one frame in 65 536, is taken for partial;
/// completing it again gives the same frame a wrong checksum, which TCP recovers from.)
pub fn partial_checksum(frame: &[u8]) -> Option<(usize, usize, usize)> {
    let mut l3 = ETH_LEN;
    let mut ethertype = u16::from_be_bytes(frame.get(12..14)?.try_into().ok()?);
    if ethertype == EtherType::VLAN {
        ethertype = u16::from_be_bytes(frame.get(16..18)?.try_into().ok()?);
        l3 += 4;
    }
    let ip = frame.get(l3..)?;
    let (v6, l4, proto, l3_len) = match ethertype {
        EtherType::IPV4 if ip.len() >= 20 && ip[0] >> 4 == 4 => {
            let ihl = usize::from(ip[0] & 0x0f) * 4;
            // Not a fragment: the checksum covers the whole datagram.
            if ihl < 20 || u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                return None;
            }
            (false, l3 + ihl, ip[9], usize::from(u16::from_be_bytes([ip[2], ip[3]])))
        }
        EtherType::IPV6 if ip.len() >= 40 && ip[0] >> 4 == 6 => {
            (true, l3 + 40, ip[6], 40 + usize::from(u16::from_be_bytes([ip[4], ip[5]])))
        }
        _ => return None,
    };
    let at = match proto {
        Protocol::TCP => CHECKSUM_OFFSET,
        Protocol::UDP => UDP_CHECKSUM_OFFSET,
        _ => return None,
    };
    let end = l3.checked_add(l3_len)?;
    if end > frame.len() || l4 + at + 2 > end || (proto == Protocol::TCP && l4 + 20 > end) {
        return None;
    }
    let field = &frame[l4 + at..l4 + at + 2];
    if proto == Protocol::UDP && !v6 && field == [0, 0] {
        return None;
    }
    let p = pseudo_for(frame, l3, v6, proto == Protocol::UDP, end - l4);
    is_partial(p, field).then_some((l4, at, end))
}

impl MergeRun {
    /// Starts a run with the frame at `buf[frame]` when it is a TCP segment or UDP datagram that others may
    /// follow; `None` otherwise (the frame then goes on as it is). Its checksum is checked only when a second
    /// segment comes: a run of one is never changed. The merged frame will not grow past `buf[limit]`.
    pub fn start(buf: &[u8], frame: Range<usize>, limit: usize) -> Option<MergeRun> {
        let f = buf.get(frame.clone())?;
        let seg = parse(f)?;
        let Seg { l3, l4, headers, payload, v6, udp } = seg;
        let seq = if udp { 0 } else { u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]) };
        let next_id =
            (!v6 && f[l3 + 6] & 0x40 == 0).then(|| u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]).wrapping_add(1));
        let psh = !udp && f[l4 + 13] & FLAG_PSH != 0;
        Some(MergeRun {
            limit,
            start: frame.start,
            len: f.len(),
            l3,
            l4,
            headers,
            v6,
            udp,
            mss: payload,
            next_seq: seq.wrapping_add(payload as u32),
            next_id,
            count: 1,
            psh,
            closed: psh,
            in_place: false,
            first: f.len() as u32,
            pieces: [(0, 0); MAX_SEGMENTS as usize - 1],
        })
    }

    /// Segments merged so far.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Has the segments that join leave their payloads where they lie instead of moving them behind the
    /// first (one copy of every byte saved where the frame is written out by a gathering write);
    /// [`MergeRun::gathered`] lists them. Only for a run none of whose frame but the first `readable` bytes
    /// is read before it is written or its gaps closed: the first segment must hold them, and it must carry
    /// no 802.1Q tag (taking a tag off moves a frame's start). Before any segment joined; false, changing
    /// nothing, when the run does not qualify.
    pub fn leave_in_place(&mut self, readable: usize) -> bool {
        if self.count != 1 || self.l3 != ETH_LEN || (self.first as usize) < readable {
            return false;
        }
        self.in_place = true;
        true
    }

    /// Where the merged frame's parts lie, when their payloads were left in place and more than one segment
    /// was merged.
    pub fn gathered(&self) -> Option<Gathered> {
        (self.in_place && self.count > 1).then(|| Gathered {
            start: self.start as u32,
            first: self.first,
            pieces: self.pieces,
            count: (self.count - 1) as u8,
        })
    }

    /// Merges the frame at `buf[frame]` (which lies after the run's end) into the run when it is the run's
    /// next segment: its payload moves to the run's end. Returns false, changing nothing, when it is not.
    pub fn append(&mut self, buf: &mut [u8], frame: Range<usize>) -> bool {
        if self.closed || self.count >= MAX_SEGMENTS || frame.start < self.start + self.len {
            return false;
        }
        let Some(f) = buf.get(frame.clone()) else { return false };
        let Some(seg) = parse(f) else { return false };
        let Seg { l3, l4, headers, payload, v6, udp } = seg;
        if l3 != self.l3
            || l4 != self.l4
            || headers != self.headers
            || v6 != self.v6
            || udp != self.udp
            || payload > self.mss
        {
            return false;
        }
        let merged_ip_len = self.len + payload - l3;
        if merged_ip_len > MAX_IP_LEN + if v6 { 40 } else { 0 } || self.start + self.len + payload > self.limit {
            return false;
        }
        let run = &buf[self.start..self.start + self.headers];
        // Everything but lengths, ID and checksums must match: Ethernet header, addresses, TOS/TTL (flow label,
        // hop limit), ports, acknowledgement, window, options.
        let same = |r: Range<usize>| run[r.clone()] == f[r];
        let l3_same = if v6 {
            same(l3..l3 + 4) && same(l3 + 6..l3 + 40)
        } else {
            same(l3..l3 + 2) && same(l3 + 6..l3 + 10) && same(l3 + 12..l3 + 20)
        };
        // UDP: the ports (length and checksum differ); TCP: ports, acknowledgement, flags but PSH, window,
        // options.
        let l4_same = if udp {
            same(0..l3) && same(l4..l4 + 4)
        } else {
            same(0..l3) && same(l4..l4 + 4) && same(l4 + 8..l4 + 13) && same(l4 + 14..l4 + 16) && same(l4 + 18..headers)
        };
        if !l3_same || !l4_same {
            return false;
        }
        let seq = if udp { 0 } else { u32::from_be_bytes([f[l4 + 4], f[l4 + 5], f[l4 + 6], f[l4 + 7]]) };
        if !udp && seq != self.next_seq {
            return false;
        }
        if let Some(id) = self.next_id {
            if u16::from_be_bytes([f[l3 + 4], f[l3 + 5]]) != id {
                return false;
            }
        }
        if self.count == 1 {
            let first = &buf[self.start..self.start + self.len];
            let s0 = Seg { l3, l4, headers, payload: self.mss, v6, udp };
            if !checksum_ok(first, &s0) {
                // The first segment goes on alone, as it came.
                self.closed = true;
                return false;
            }
        }
        let f = &buf[frame.clone()];
        if !checksum_ok(f, &seg) {
            return false;
        }
        let psh = !udp && f[l4 + 13] & FLAG_PSH != 0;
        if self.in_place {
            self.pieces[usize::from(self.count) - 1] = ((frame.start + headers) as u32, frame.end as u32);
        } else {
            buf.copy_within(frame.start + headers..frame.end, self.start + self.len);
        }
        self.len += payload;
        self.count += 1;
        self.next_seq = seq.wrapping_add(payload as u32);
        self.next_id = self.next_id.map(|i| i.wrapping_add(1));
        self.psh |= psh;
        self.closed = psh || payload < self.mss;
        true
    }

    /// Ends the run: returns the frame's range in `buf` and, when more than one segment was merged, the
    /// virtio-net header that describes it (lengths fixed, the TCP checksum left holding the pseudo-header
    /// sum as a GSO frame must). A run of one segment is left exactly as it arrived.
    pub fn finish(self, buf: &mut [u8]) -> (Range<usize>, Option<VnetHdr>) {
        let range = self.start..self.start + self.len;
        if self.count == 1 {
            return (range, None);
        }
        let f = &mut buf[range.clone()];
        let l3 = self.l3;
        let l3_len = self.len - l3;
        if self.v6 {
            f[l3 + 4..l3 + 6].copy_from_slice(&((l3_len - 40) as u16).to_be_bytes());
        } else {
            f[l3 + 2..l3 + 4].copy_from_slice(&(l3_len as u16).to_be_bytes());
            f[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let c = checksum::checksum(&f[l3..l3 + 20]);
            f[l3 + 10..l3 + 12].copy_from_slice(&c.to_be_bytes());
        }
        if self.psh {
            f[self.l4 + 13] |= FLAG_PSH;
        }
        let l4_len = self.len - self.l4;
        if self.udp {
            f[self.l4 + 4..self.l4 + 6].copy_from_slice(&(l4_len as u16).to_be_bytes());
        }
        let mut p = pseudo_for(f, l3, self.v6, self.udp, l4_len);
        while p > 0xffff {
            p = (p & 0xffff) + (p >> 16);
        }
        let csum_offset = if self.udp { UDP_CHECKSUM_OFFSET } else { CHECKSUM_OFFSET };
        let at = self.l4 + csum_offset;
        f[at..at + 2].copy_from_slice(&(p as u16).to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: match (self.udp, self.v6) {
                (true, _) => GSO_UDP_L4,
                (false, true) => GSO_TCPV6,
                (false, false) => GSO_TCPV4,
            },
            hdr_len: self.headers as u16,
            gso_size: self.mss as u16,
            csum_start: self.l4 as u16,
            csum_offset: csum_offset as u16,
        };
        (range, Some(hdr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::offload::{segment, SegmentLayout};

    /// A TSO frame of `payload` bytes with a partial checksum, as a kernel hands it over, for `v6` or not.
    fn tso(v6: bool, payload: usize, flags: u8) -> (Vec<u8>, VnetHdr) {
        let l3 = if v6 { 40 } else { 20 };
        let mut f = vec![0u8; 14 + l3 + 32 + payload];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        let l3_len = l3 + 32 + payload;
        if v6 {
            f[12..14].copy_from_slice(&EtherType::IPV6.to_be_bytes());
            let ip = &mut f[14..];
            ip[0] = 0x60;
            ip[4..6].copy_from_slice(&((32 + payload) as u16).to_be_bytes());
            ip[6] = Protocol::TCP;
            ip[7] = 64;
            ip[8..24].copy_from_slice(&"2001:db8::1".parse::<std::net::Ipv6Addr>().unwrap().octets());
            ip[24..40].copy_from_slice(&"2001:db8::2".parse::<std::net::Ipv6Addr>().unwrap().octets());
        } else {
            f[12..14].copy_from_slice(&EtherType::IPV4.to_be_bytes());
            let ip = &mut f[14..];
            ip[0] = 0x45;
            ip[2..4].copy_from_slice(&(l3_len as u16).to_be_bytes());
            ip[4..6].copy_from_slice(&7u16.to_be_bytes());
            ip[6] = 0x40;
            ip[8] = 64;
            ip[9] = Protocol::TCP;
            ip[12..16].copy_from_slice(&[198, 51, 100, 1]);
            ip[16..20].copy_from_slice(&[198, 51, 100, 2]);
            let c = checksum::checksum(&ip[..20]);
            ip[10..12].copy_from_slice(&c.to_be_bytes());
        }
        let l4 = 14 + l3;
        let t = &mut f[l4..];
        t[0..2].copy_from_slice(&40000u16.to_be_bytes());
        t[2..4].copy_from_slice(&5201u16.to_be_bytes());
        t[4..8].copy_from_slice(&1_000_000u32.to_be_bytes());
        t[8..12].copy_from_slice(&77u32.to_be_bytes());
        t[12] = 8 << 4;
        t[13] = flags;
        t[14..16].copy_from_slice(&500u16.to_be_bytes());
        t[20..32].copy_from_slice(&[1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 3]);
        for (i, b) in t[32..].iter_mut().enumerate() {
            *b = (i * 7) as u8;
        }
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: if v6 { GSO_TCPV6 } else { GSO_TCPV4 },
            hdr_len: (l4 + 32) as u16,
            gso_size: 1000,
            csum_start: l4 as u16,
            csum_offset: 16,
        };
        (f, hdr)
    }

    /// Segments `frame` (each segment behind an 8-byte stand-in for a tunnel header, as UDP_GRO hands them
    /// over) and returns the buffer and each segment's inner frame range.
    fn wire(frame: &[u8], hdr: &VnetHdr) -> (Vec<u8>, Vec<Range<usize>>) {
        wire_tagged(frame, hdr, None)
    }

    fn wire_tagged(frame: &[u8], hdr: &VnetHdr, tag: Option<[u8; 4]>) -> (Vec<u8>, Vec<Range<usize>>) {
        let mut out = vec![0u8; frame.len() * 2 + 4096];
        let mut ranges = Vec::new();
        let layout = SegmentLayout { head: &[0xee; 8], tag };
        let used = segment(frame, hdr, layout, &mut out, |r| ranges.push(r.start + 8..r.end)).unwrap();
        out.truncate(used);
        (out, ranges)
    }

    /// Merges every segment in `ranges` into runs, returning each run's frame and header.
    fn merge(buf: &mut [u8], ranges: &[Range<usize>]) -> Vec<(Vec<u8>, Option<VnetHdr>)> {
        let mut out = Vec::new();
        let mut run: Option<MergeRun> = None;
        for r in ranges {
            if let Some(cur) = &mut run {
                if cur.append(buf, r.clone()) {
                    continue;
                }
                let (fr, h) = run.take().unwrap().finish(buf);
                out.push((buf[fr].to_vec(), h));
            }
            match MergeRun::start(buf, r.clone(), buf.len()) {
                Some(new) => run = Some(new),
                None => out.push((buf[r.clone()].to_vec(), None)),
            }
        }
        if let Some(cur) = run {
            let (fr, h) = cur.finish(buf);
            out.push((buf[fr].to_vec(), h));
        }
        out
    }

    /// Segmenting a merged frame gives back the segments that were merged, byte for byte.
    fn round_trip(v6: bool) {
        let (frame, hdr) = tso(v6, 10_500, FLAG_ACK | FLAG_PSH);
        let (mut buf, ranges) = wire(&frame, &hdr);
        assert_eq!(ranges.len(), 11);
        let sent: Vec<Vec<u8>> = ranges.iter().map(|r| buf[r.clone()].to_vec()).collect();
        let merged = merge(&mut buf, &ranges);
        assert_eq!(merged.len(), 1, "one run");
        let (m, h) = &merged[0];
        let h = h.expect("a GSO header");
        assert_eq!((h.gso_size, h.hdr_len, h.csum_start), (1000, hdr.hdr_len, hdr.csum_start));
        assert_eq!(m.len(), frame.len());
        assert_eq!(m[usize::from(h.hdr_len)..], frame[usize::from(hdr.hdr_len)..], "payload in order");
        let (out, re) = wire(m, &h);
        let resent: Vec<Vec<u8>> = re.iter().map(|r| out[r.clone()].to_vec()).collect();
        assert_eq!(resent, sent);
    }

    #[test]
    fn merges_and_resegments_ipv4() {
        round_trip(false);
    }

    #[test]
    fn merges_and_resegments_ipv6() {
        round_trip(true);
    }

    #[test]
    fn merges_tagged_segments() {
        let (frame, hdr) = tso(false, 5000, FLAG_ACK);
        let tag = [0x81, 0x00, 0x00, 0x0a];
        let (mut buf, ranges) = wire_tagged(&frame, &hdr, Some(tag));
        let sent: Vec<Vec<u8>> = ranges.iter().map(|r| buf[r.clone()].to_vec()).collect();
        let merged = merge(&mut buf, &ranges);
        assert_eq!(merged.len(), 1);
        let (m, h) = &merged[0];
        let h = h.expect("a GSO header");
        assert_eq!(m[12..16], tag, "the tag stays");
        assert_eq!((h.csum_start, h.hdr_len), (hdr.csum_start + 4, hdr.hdr_len + 4));
        let (out, re) = wire_tagged(m, &h, None);
        let resent: Vec<Vec<u8>> = re.iter().map(|r| out[r.clone()].to_vec()).collect();
        assert_eq!(resent, sent);
        // Without its tag (as the switch pops it) the header must move with the frame.
        let mut untagged = m[..12].to_vec();
        untagged.extend_from_slice(&m[16..]);
        let (out, re) = wire(&untagged, &h.untagged());
        assert_eq!(re.len(), sent.len());
        assert_eq!(out[re[0].clone()][12..], sent[0][16..]);
    }

    /// A UDP frame of `payload` bytes to be cut into 700-byte datagrams (USO), IPv4 with ID 40.
    fn uso(payload: usize) -> (Vec<u8>, VnetHdr) {
        let mut f = vec![0u8; 14 + 20 + 8 + payload];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12..14].copy_from_slice(&EtherType::IPV4.to_be_bytes());
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&((28 + payload) as u16).to_be_bytes());
        ip[4..6].copy_from_slice(&40u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = Protocol::UDP;
        ip[12..16].copy_from_slice(&[198, 51, 100, 1]);
        ip[16..20].copy_from_slice(&[198, 51, 100, 2]);
        f[34..36].copy_from_slice(&5000u16.to_be_bytes());
        f[36..38].copy_from_slice(&6000u16.to_be_bytes());
        for (i, b) in f[42..].iter_mut().enumerate() {
            *b = (i * 3) as u8;
        }
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso_type: GSO_UDP_L4,
            hdr_len: 42,
            gso_size: 700,
            csum_start: 34,
            csum_offset: 6,
        };
        (f, hdr)
    }

    #[test]
    fn merges_and_resegments_udp() {
        let (frame, hdr) = uso(700 * 9 + 100);
        let (mut buf, ranges) = wire(&frame, &hdr);
        assert_eq!(ranges.len(), 10);
        let sent: Vec<Vec<u8>> = ranges.iter().map(|r| buf[r.clone()].to_vec()).collect();
        let merged = merge(&mut buf, &ranges);
        assert_eq!(merged.len(), 1, "one run");
        let (m, h) = &merged[0];
        let h = h.expect("a GSO header");
        assert_eq!((h.gso_type, h.gso_size, h.csum_offset), (GSO_UDP_L4, 700, 6));
        let (out, re) = wire(m, &h);
        let resent: Vec<Vec<u8>> = re.iter().map(|r| out[r.clone()].to_vec()).collect();
        assert_eq!(resent, sent, "cut again, the same datagrams");
        // A gap in the IPv4 IDs (a datagram lost) ends the run.
        let (mut buf, ranges) = wire(&frame, &hdr);
        let picked = [ranges[0].clone(), ranges[1].clone(), ranges[3].clone(), ranges[4].clone()];
        assert_eq!(merge(&mut buf, &picked).len(), 2);
    }

    #[test]
    fn keeps_apart_what_does_not_follow() {
        let (frame, hdr) = tso(false, 4000, FLAG_ACK);
        let (mut buf, ranges) = wire(&frame, &hdr);
        // A gap in sequence: segments 0-1 merge, 3 starts again (2 is missing).
        let picked = [ranges[0].clone(), ranges[1].clone(), ranges[3].clone()];
        let m = merge(&mut buf, &picked);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0].1.map(|h| h.gso_size), Some(1000));
        assert!(m[1].1.is_none(), "a lone segment stays as it came");
    }

    #[test]
    fn partial_checksums_are_recognised_from_the_headers() {
        for v6 in [false, true] {
            // A segment with a right checksum: not partial.
            let (f, hdr) = tso(v6, 900, FLAG_ACK);
            let mut segs = Vec::new();
            let mut out = vec![0u8; 8192];
            crate::offload::segment(&f, &hdr, Default::default(), &mut out, |r| segs.push(r)).unwrap();
            let mut seg = out[segs[0].clone()].to_vec();
            assert_eq!(partial_checksum(&seg), None, "v6={v6}: a finished checksum");
            // The same segment as a Linux sender leaves it: the field holds the pseudo-header sum.
            let l4 = if v6 { 54 } else { 34 };
            let p = pseudo(&seg, 14, v6, seg.len() - l4);
            seg[l4 + 16..l4 + 18].copy_from_slice(&(!checksum::finish(p)).to_be_bytes());
            assert_eq!(partial_checksum(&seg), Some((l4, 16, seg.len())), "v6={v6}");
            // Finishing it gives a checksum that verifies.
            crate::offload::complete_checksum(&mut seg, l4, 16).unwrap();
            let p = pseudo(&seg, 14, v6, seg.len() - l4);
            assert_eq!(checksum::finish(checksum::combine(p, checksum::sum(&seg[l4..]))), 0);
            assert_eq!(partial_checksum(&seg), None);
            // Cut frames and other protocols are not.
            for n in 0..seg.len() - 1 {
                let _ = partial_checksum(&seg[..n]);
            }
        }
    }

    #[test]
    fn whole_tso_frames_with_partial_checksums_become_gso_frames() {
        for v6 in [false, true] {
            let (mut f, hdr) = tso(v6, 6000, FLAG_ACK);
            let l4 = usize::from(hdr.csum_start);
            let p = pseudo(&f, 14, v6, f.len() - l4);
            f[l4 + 16..l4 + 18].copy_from_slice(&(!checksum::finish(p)).to_be_bytes());
            let g = oversized_partial_tcp(&f, 1450).expect("a 6 KB frame over a 1450-byte tunnel");
            let ip = if v6 { 40 } else { 20 };
            assert_eq!((g.gso_size, g.hdr_len, g.csum_start), ((1450 - ip - 32) as u16, (l4 + 32) as u16, l4 as u16));
            // Cut as the header says, every segment fits the MTU and carries a right checksum once finished.
            let mut out = vec![0u8; 16384];
            let mut segs = Vec::new();
            crate::offload::segment(&f, &g, Default::default(), &mut out, |r| segs.push(r)).unwrap();
            assert!(segs.len() >= 5 && segs.iter().all(|r| r.len() - 14 <= 1450), "v6={v6}: {segs:?}");
            // A frame that fits is not one.
            let (mut small, _) = tso(v6, 1000, FLAG_ACK);
            let p = pseudo(&small, 14, v6, small.len() - l4);
            small[l4 + 16..l4 + 18].copy_from_slice(&(!checksum::finish(p)).to_be_bytes());
            assert!(oversized_partial_tcp(&small, 1450).is_none());
        }
    }

    #[test]
    fn payloads_left_in_place_make_the_same_frame() {
        for v6 in [false, true] {
            let (frame, hdr) = tso(v6, 20_000, FLAG_ACK);
            let (buf, ranges) = wire(&frame, &hdr);
            let moved = merge(&mut buf.clone(), &ranges);
            assert_eq!(moved.len(), 1, "v6={v6}: one run");
            let mut buf = buf;
            let limit = buf.len();
            let mut run = MergeRun::start(&buf, ranges[0].clone(), limit).unwrap();
            // Not when the first segment is shorter than what will be read of the frame.
            assert!(!run.leave_in_place(ranges[0].len() + 1));
            assert!(run.leave_in_place(ranges[0].len()));
            for r in &ranges[1..] {
                assert!(run.append(&mut buf, r.clone()));
            }
            let g = run.gathered().expect("in place");
            let (fr, h) = run.finish(&mut buf);
            assert_eq!(h, moved[0].1, "v6={v6}");
            assert_eq!(g.part_count(), ranges.len());
            // The parts, one after another, are the frame merging by moves gives ...
            let parts: Vec<u8> = g.parts().flat_map(|r| buf[r].to_vec()).collect();
            assert_eq!(parts, moved[0].0, "v6={v6}");
            // ... and so is the buffer once the gaps are closed.
            g.close_gaps(&mut buf);
            assert_eq!(buf[fr], moved[0].0[..], "v6={v6}");
        }
        // A tagged frame's start moves when the switch takes the tag off: never in place.
        let (frame, hdr) = tso(false, 5000, FLAG_ACK);
        let (buf, ranges) = wire_tagged(&frame, &hdr, Some([0x81, 0, 0, 10]));
        let mut run = MergeRun::start(&buf, ranges[0].clone(), buf.len()).unwrap();
        assert!(!run.leave_in_place(0));
        // A run of one has nothing gathered.
        let (buf, ranges) = wire(&frame, &hdr);
        let mut run = MergeRun::start(&buf, ranges[0].clone(), buf.len()).unwrap();
        assert!(run.leave_in_place(0));
        assert!(run.gathered().is_none());
    }

    #[test]
    fn partial_segments_merge() {
        let (f, hdr) = tso(false, 3000, FLAG_ACK);
        let mut segs = Vec::new();
        let mut out = vec![0u8; 16384];
        crate::offload::segment(&f, &hdr, Default::default(), &mut out, |r| segs.push(r)).unwrap();
        // Every segment's checksum partial, as from a kernel VXLAN peer.
        for r in &segs {
            let seg = &mut out[r.clone()];
            let p = pseudo(seg, 14, false, seg.len() - 34);
            seg[50..52].copy_from_slice(&(!checksum::finish(p)).to_be_bytes());
        }
        let limit = out.len();
        let mut run = MergeRun::start(&out, segs[0].clone(), limit).unwrap();
        for r in &segs[1..] {
            assert!(run.append(&mut out, r.clone()), "a partial segment joins");
        }
        let (_, h) = run.finish(&mut out);
        assert_eq!(h.map(|h| h.flags & F_NEEDS_CSUM), Some(F_NEEDS_CSUM));
    }

    #[test]
    fn refuses_bad_checksum_and_other_flags() {
        let (frame, hdr) = tso(false, 3000, FLAG_ACK);
        let (mut buf, ranges) = wire(&frame, &hdr);
        let last = ranges[1].end - 1;
        buf[last] ^= 0xff; // corrupt segment 1's payload
        let m = merge(&mut buf, &ranges);
        assert_eq!(m.len(), 3, "the corrupt segment is neither merged nor does it start a run");
        assert!(m.iter().all(|(_, h)| h.is_none()));
        // A bad first segment: it goes on alone and unchanged, the others merge behind it.
        let (mut buf, ranges) = wire(&frame, &hdr);
        let last = ranges[0].end - 1;
        buf[last] ^= 0xff;
        let bad = buf[ranges[0].clone()].to_vec();
        let m = merge(&mut buf, &ranges);
        assert_eq!(m.len(), 2);
        assert_eq!((m[0].0.clone(), m[0].1), (bad, None));
        assert!(m[1].1.is_some());
        let (syn, _) = tso(false, 100, FLAG_ACK | 0x02);
        assert!(MergeRun::start(&syn, 0..syn.len(), syn.len()).is_none());
    }

    #[test]
    fn differing_headers_do_not_merge() {
        let (frame, hdr) = tso(false, 2000, FLAG_ACK);
        let (mut buf, ranges) = wire(&frame, &hdr);
        // Change segment 1's window and fix its checksum: a different header, so no merge.
        let r = ranges[1].clone();
        let l4 = r.start + 34;
        buf[l4 + 15] ^= 1;
        buf[l4 + 16..l4 + 18].copy_from_slice(&[0, 0]);
        let seg = &buf[r.clone()];
        let c = checksum::finish(checksum::combine(pseudo(seg, 14, false, seg.len() - 34), checksum::sum(&seg[34..])));
        buf[l4 + 16..l4 + 18].copy_from_slice(&c.to_be_bytes());
        let m = merge(&mut buf, &ranges);
        assert_eq!(m.len(), 2);
    }
}
