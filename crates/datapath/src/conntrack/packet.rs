//! What the tracker reads of a packet: its connection tuple and, for TCP, what window tracking needs; for
//! an ICMP error, the tuple of the packet it quotes. Read from the frame once, with every length checked
//! (a short or lying header makes the packet untrackable, never a panic).

use crate::headers::Headers;
use weft_wire::ethernet::HEADER_LEN as ETH_LEN;

pub const TCP: u8 = 6;
pub const UDP: u8 = 17;
pub const SCTP: u8 = 132;
pub const UDPLITE: u8 = 136;
pub const ICMP: u8 = 1;
pub const ICMPV6: u8 = 58;

/// One end of a connection: an address (IPv4 in the low 32 bits) and a port (ICMP: the echo identifier).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Endpoint {
    pub addr: u128,
    pub port: u16,
}

/// A packet's connection tuple as it travels: from `src` to `dst`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Tuple {
    pub src: Endpoint,
    pub dst: Endpoint,
    pub proto: u8,
    pub v6: bool,
}

impl Tuple {
    pub fn reversed(self) -> Tuple {
        Tuple { src: self.dst, dst: self.src, ..self }
    }
}

/// What window tracking reads of a TCP segment (a whole offloaded frame counts as one segment: its payload
/// is everything the frame carries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpSeg {
    pub seq: u32,
    pub ack: u32,
    pub flags: u8,
    pub win: u16,
    /// The window scale option (SYN only), if present.
    pub wscale: Option<u8>,
    pub payload: u32,
}

/// What kind of packet it is, as the tracker sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Tcp(TcpSeg),
    /// UDP, SCTP, UDP-Lite and any other protocol with ports (tracked as OVS's "other").
    Other,
    /// An ICMP echo (or timestamp/information) request (`request`) or reply; the identifier is the port.
    Echo {
        request: bool,
        icmp_type: u8,
        code: u8,
    },
    /// An ICMP error quoting a packet of `inner` (its tuple as that packet travelled).
    Error {
        inner: Tuple,
        icmp_type: u8,
        code: u8,
    },
}

/// A packet the tracker can follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtPacket {
    pub tuple: Tuple,
    pub kind: Kind,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// The end of the IP packet in the frame (Ethernet padding excluded; a length of zero, as some offloaded
/// frames carry, or one past the frame: the frame's end).
fn ip_end(frame: &[u8], h: &Headers) -> usize {
    let l3 = &frame[ETH_LEN.min(frame.len())..];
    let len = if h.v6 { be16(l3, 4).map(|p| usize::from(p) + 40) } else { be16(l3, 2).map(usize::from) };
    match len {
        Some(n) if n != 0 && n != 40 && ETH_LEN + n <= frame.len() => ETH_LEN + n,
        _ => frame.len(),
    }
}

impl CtPacket {
    /// The tuple and transport details of an IP packet whose headers `h` were parsed from `frame`; `None`
    /// for what the tracker cannot follow (not IP, a fragment, a truncated transport header, an ICMP message
    /// that is neither an echo nor an error quoting enough of its packet).
    pub fn parse(frame: &[u8], h: &Headers) -> Option<CtPacket> {
        if !h.ip || h.nw_frag != 0 || h.l4_at == 0 {
            return None;
        }
        let proto = h.nw_proto?;
        let at = usize::from(h.l4_at);
        let end = ip_end(frame, h);
        let l4 = frame.get(at..end)?;
        let ep = |addr, port| Endpoint { addr, port };
        let mut tuple = Tuple { src: ep(h.nw_src, 0), dst: ep(h.nw_dst, 0), proto, v6: h.v6 };
        let kind = match proto {
            TCP => {
                let hlen = usize::from(*l4.get(12)? >> 4) * 4;
                if hlen < 20 || l4.len() < hlen {
                    return None;
                }
                tuple.src.port = be16(l4, 0)?;
                tuple.dst.port = be16(l4, 2)?;
                let flags = l4[13];
                let wscale = if flags & weft_wire::tcp::FLAG_SYN != 0 { window_scale(&l4[20..hlen]) } else { None };
                Kind::Tcp(TcpSeg {
                    seq: be32(l4, 4)?,
                    ack: be32(l4, 8)?,
                    flags,
                    win: be16(l4, 14)?,
                    wscale,
                    payload: (l4.len() - hlen) as u32,
                })
            }
            UDP | SCTP | UDPLITE => {
                tuple.src.port = be16(l4, 0)?;
                tuple.dst.port = be16(l4, 2)?;
                Kind::Other
            }
            ICMP | ICMPV6 => return icmp(tuple, l4, proto == ICMPV6),
            _ => Kind::Other,
        };
        Some(CtPacket { tuple, kind })
    }
}

/// The window scale option's shift (at most 14) among a SYN's options.
fn window_scale(mut opts: &[u8]) -> Option<u8> {
    while let Some(&kind) = opts.first() {
        match kind {
            0 => return None,
            1 => opts = &opts[1..],
            _ => {
                let len = usize::from(*opts.get(1)?).max(2);
                if kind == 3 && len == 3 {
                    return Some((*opts.get(2)?).min(14));
                }
                opts = opts.get(len..)?;
            }
        }
    }
    None
}

fn icmp(mut tuple: Tuple, l4: &[u8], v6: bool) -> Option<CtPacket> {
    let (icmp_type, code) = (*l4.first()?, *l4.get(1)?);
    // Requests and replies that carry an identifier: echo (v4 8/0, v6 128/129), timestamp (13/14) and
    // information (15/16).
    let echo = if v6 {
        match icmp_type {
            128 => Some(true),
            129 => Some(false),
            _ => None,
        }
    } else {
        match icmp_type {
            8 | 13 | 15 => Some(true),
            0 | 14 | 16 => Some(false),
            _ => None,
        }
    };
    if let Some(request) = echo {
        let id = be16(l4, 4)?;
        tuple.src.port = id;
        tuple.dst.port = id;
        return Some(CtPacket { tuple, kind: Kind::Echo { request, icmp_type, code } });
    }
    // Errors: destination unreachable, time exceeded, parameter problem (v4 3, 11, 12; v6 1, 3, 4) and
    // IPv6's packet too big (2). They quote the IP header and at least 8 bytes of what followed.
    let error = if v6 { matches!(icmp_type, 1..=4) } else { matches!(icmp_type, 3 | 11 | 12) };
    if !error {
        return None;
    }
    let inner = quoted(l4.get(8..)?, v6)?;
    Some(CtPacket { tuple, kind: Kind::Error { inner, icmp_type, code } })
}

/// The tuple of the packet an ICMP error quotes (its IP header and the first bytes of its transport).
fn quoted(ip: &[u8], v6: bool) -> Option<Tuple> {
    let (src, dst, proto, l4) = if v6 {
        if ip.len() < 40 || ip[0] >> 4 != 6 {
            return None;
        }
        let (proto, at) = match weft_wire::ipv6::walk_extension_headers_frag(ip[6], &ip[40..]) {
            Ok((p, at, None)) => (p, at),
            _ => return None,
        };
        let a = |at: usize| u128::from_be_bytes(ip[at..at + 16].try_into().unwrap_or([0; 16]));
        (a(8), a(24), proto, ip.get(40 + at..)?)
    } else {
        let ihl = usize::from(*ip.first()? & 0xf) * 4;
        if ip[0] >> 4 != 4 || ihl < 20 || ip.len() < ihl || be16(ip, 6)? & 0x1fff != 0 {
            return None;
        }
        (u128::from(be32(ip, 12)?), u128::from(be32(ip, 16)?), ip[9], &ip[ihl..])
    };
    let mut t = Tuple { src: Endpoint { addr: src, port: 0 }, dst: Endpoint { addr: dst, port: 0 }, proto, v6 };
    match proto {
        TCP | UDP | SCTP | UDPLITE => {
            t.src.port = be16(l4, 0)?;
            t.dst.port = be16(l4, 2)?;
        }
        ICMP | ICMPV6 => {
            // An error about an echo: the quoted echo's identifier.
            let id = be16(l4, 4)?;
            (t.src.port, t.dst.port) = (id, id);
        }
        _ => {}
    }
    Some(t)
}
