//! IPv6 headers (RFC 8200) and the walk over extension headers to the upper layer.

use crate::ipv4::Protocol;
use crate::{be16, be32, need, put16, Error, Result};
use std::net::Ipv6Addr;

mod field {
    use core::ops::Range;
    pub const VER_TC_FLOW: usize = 0;
    pub const LENGTH: usize = 4;
    pub const NXT_HDR: usize = 6;
    pub const HOP_LIMIT: usize = 7;
    pub const SRC_ADDR: Range<usize> = 8..24;
    pub const DST_ADDR: Range<usize> = 24..40;
}

pub const HEADER_LEN: usize = 40;

/// A view of an IPv6 packet. `new_checked` verifies the version and that the payload length fits.
#[derive(Debug, Clone)]
pub struct Ipv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv6Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv6Packet { buffer }
    }

    /// Checks only the fixed header (for captures cut short by their snap length).
    pub fn new_header_checked(buffer: T) -> Result<Self> {
        let p = Ipv6Packet { buffer };
        need("ipv6", HEADER_LEN, p.buffer.as_ref().len())?;
        if p.version() != 6 {
            return Err(Error::Malformed { layer: "ipv6", what: "version is not 6" });
        }
        Ok(p)
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Ipv6Packet { buffer };
        let have = p.buffer.as_ref().len();
        need("ipv6", HEADER_LEN, have)?;
        if p.version() != 6 {
            return Err(Error::Malformed { layer: "ipv6", what: "version is not 6" });
        }
        need("ipv6", HEADER_LEN + usize::from(p.payload_len()), have)?;
        Ok(p)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_TC_FLOW] >> 4
    }
    pub fn traffic_class(&self) -> u8 {
        ((be16(self.buffer.as_ref(), field::VER_TC_FLOW) >> 4) & 0xff) as u8
    }
    pub fn flow_label(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VER_TC_FLOW) & 0x000f_ffff
    }
    pub fn payload_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }
    pub fn next_header(&self) -> u8 {
        self.buffer.as_ref()[field::NXT_HDR]
    }
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::HOP_LIMIT]
    }
    pub fn src_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::SRC_ADDR.start)
    }
    pub fn dst_addr(&self) -> Ipv6Addr {
        addr_at(self.buffer.as_ref(), field::DST_ADDR.start)
    }
    /// Everything after the fixed header, up to the payload length.
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..HEADER_LEN + usize::from(self.payload_len())]
    }

    /// Follows hop-by-hop, routing, fragment and destination-options headers to the upper-layer protocol.
    /// Returns that protocol and its offset within [`payload`](Self::payload).
    pub fn upper_layer(&self) -> Result<(u8, usize)> {
        walk_extension_headers(self.next_header(), self.payload())
    }
}

/// Walks extension headers starting at `payload` whose first header is `next`.
pub fn walk_extension_headers(next: u8, payload: &[u8]) -> Result<(u8, usize)> {
    walk_extension_headers_frag(next, payload).map(|(p, at, _)| (p, at))
}

/// A fragment header's offset (in 8-byte units) and more-fragments bit.
pub type Fragment = (u16, bool);

/// As [`walk_extension_headers`], and the fragment header's [`Fragment`] when there is one.
pub fn walk_extension_headers_frag(mut next: u8, payload: &[u8]) -> Result<(u8, usize, Option<Fragment>)> {
    let mut at = 0usize;
    let mut frag = None;
    for _ in 0..16 {
        match next {
            Protocol::HOPOPTS | Protocol::IPV6_ROUTE | Protocol::IPV6_OPTS => {
                need("ipv6 extension header", at + 2, payload.len())?;
                let len = (usize::from(payload[at + 1]) + 1) * 8;
                need("ipv6 extension header", at + len, payload.len())?;
                next = payload[at];
                at += len;
            }
            Protocol::IPV6_FRAG => {
                need("ipv6 fragment header", at + 8, payload.len())?;
                next = payload[at];
                let word = u16::from_be_bytes([payload[at + 2], payload[at + 3]]);
                frag = Some((word >> 3, word & 1 != 0));
                at += 8;
            }
            _ => return Ok((next, at, frag)),
        }
    }
    Err(Error::Malformed { layer: "ipv6", what: "more than 16 extension headers" })
}

fn addr_at(b: &[u8], at: usize) -> Ipv6Addr {
    let mut a = [0u8; 16];
    a.copy_from_slice(&b[at..at + 16]);
    Ipv6Addr::from(a)
}

/// The fields of an IPv6 header without extension headers, as weft emits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv6Repr {
    pub src_addr: Ipv6Addr,
    pub dst_addr: Ipv6Addr,
    pub next_header: u8,
    pub payload_len: usize,
    pub hop_limit: u8,
    pub traffic_class: u8,
    pub flow_label: u32,
}

impl Ipv6Repr {
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv6Packet<T>) -> Self {
        Ipv6Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            next_header: p.next_header(),
            payload_len: usize::from(p.payload_len()),
            hop_limit: p.hop_limit(),
            traffic_class: p.traffic_class(),
            flow_label: p.flow_label(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the 40-byte header into `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`] or the payload is longer than 65535 bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let first = (6u32 << 28) | (u32::from(self.traffic_class) << 20) | (self.flow_label & 0x000f_ffff);
        buf[0..4].copy_from_slice(&first.to_be_bytes());
        put16(buf, field::LENGTH, u16::try_from(self.payload_len).expect("IPv6 payload over 65535 bytes"));
        buf[field::NXT_HDR] = self.next_header;
        buf[field::HOP_LIMIT] = self.hop_limit;
        buf[field::SRC_ADDR].copy_from_slice(&self.src_addr.octets());
        buf[field::DST_ADDR].copy_from_slice(&self.dst_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let r = Ipv6Repr {
            src_addr: "2001:db8::1".parse().unwrap(),
            dst_addr: "2001:db8::2".parse().unwrap(),
            next_header: Protocol::IPV6_OPTS,
            payload_len: 16,
            hop_limit: 64,
            traffic_class: 0xb8,
            flow_label: 0x12345,
        };
        let mut b = vec![0u8; 56];
        r.emit(&mut b);
        // A destination-options header of 8 bytes leading to UDP, then 8 bytes of UDP header.
        b[40] = Protocol::UDP;
        b[41] = 0;
        b
    }

    #[test]
    fn round_trip_and_extension_walk() {
        let b = sample();
        let p = Ipv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.traffic_class(), 0xb8);
        assert_eq!(p.flow_label(), 0x12345);
        assert_eq!(p.src_addr(), "2001:db8::1".parse::<Ipv6Addr>().unwrap());
        assert_eq!(p.upper_layer().unwrap(), (Protocol::UDP, 8));
        assert_eq!(Ipv6Repr::parse(&p).payload_len, 16);
    }

    #[test]
    fn rejects_truncation_and_loops() {
        let b = sample();
        assert!(Ipv6Packet::new_checked(&b[..55]).is_err());
        let mut bad = b.clone();
        bad[41] = 200; // extension header longer than the packet
        assert!(Ipv6Packet::new_checked(&bad[..]).unwrap().upper_layer().is_err());
        let mut v4 = b;
        v4[0] = 0x45;
        assert!(Ipv6Packet::new_checked(&v4[..]).is_err());
    }
}
