//! GRE (RFC 2784, with the key and sequence number of RFC 2890), directly over IP protocol 47.
//!
//! ```text
//!  0                   1                   2                   3
//! |C| |K|S| Reserved0       | Ver |         Protocol Type         |
//! |      Checksum (optional)      |       Reserved1 (Optional)    |
//! |                         Key (optional)                        |
//! |                 Sequence Number (optional)                    |
//! ```
//! Each optional word is present when its flag is set, in this order. Ethernet frames ("gretap") use
//! protocol type 0x6558 (Transparent Ethernet Bridging). The checksum, when present, is the Internet
//! checksum of the GRE header and payload.

use crate::checksum;
use crate::{be16, be32, need, put16, put32, Error, Result};

pub const FLAG_CSUM: u16 = 0x8000;
/// RFC 1701's routing-present bit, and its strict-source-route bit: a receiver of RFC 2784 GRE must drop
/// packets that set either.
pub const FLAG_ROUTING: u16 = 0x4000;
pub const FLAG_KEY: u16 = 0x2000;
pub const FLAG_SEQ: u16 = 0x1000;
pub const FLAG_STRICT_ROUTE: u16 = 0x0800;
const VERSION_MASK: u16 = 0x0007;
/// The IP protocol number.
pub const IP_PROTOCOL: u8 = crate::ipv4::Protocol::GRE;
/// The fixed part of the header.
pub const BASE_LEN: usize = 4;
/// The longest header weft reads or writes: checksum, key and sequence number.
pub const HEADER_MAX: usize = 16;

/// A view of a GRE header and its payload.
#[derive(Debug, Clone)]
pub struct GrePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GrePacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        GrePacket { buffer }
    }

    /// Checks version 0, no RFC 1701 routing, and that the optional fields the flags announce are present.
    pub fn new_checked(buffer: T) -> Result<Self> {
        need("gre", BASE_LEN, buffer.as_ref().len())?;
        let p = GrePacket { buffer };
        if p.version() != 0 {
            return Err(Error::Malformed { layer: "gre", what: "version is not 0" });
        }
        if p.flags() & (FLAG_ROUTING | FLAG_STRICT_ROUTE) != 0 {
            return Err(Error::Malformed { layer: "gre", what: "RFC 1701 routing bits set" });
        }
        need("gre", p.header_len(), p.buffer.as_ref().len())?;
        Ok(p)
    }

    pub fn flags(&self) -> u16 {
        be16(self.buffer.as_ref(), 0)
    }
    pub fn version(&self) -> u16 {
        self.flags() & VERSION_MASK
    }
    pub fn protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), 2)
    }
    pub fn has_checksum(&self) -> bool {
        self.flags() & FLAG_CSUM != 0
    }
    pub fn header_len(&self) -> usize {
        let f = self.flags();
        BASE_LEN
            + if f & FLAG_CSUM != 0 { 4 } else { 0 }
            + if f & FLAG_KEY != 0 { 4 } else { 0 }
            + if f & FLAG_SEQ != 0 { 4 } else { 0 }
    }
    pub fn checksum(&self) -> Option<u16> {
        self.has_checksum().then(|| be16(self.buffer.as_ref(), 4))
    }
    pub fn key(&self) -> Option<u32> {
        let at = BASE_LEN + if self.has_checksum() { 4 } else { 0 };
        (self.flags() & FLAG_KEY != 0).then(|| be32(self.buffer.as_ref(), at))
    }
    pub fn sequence(&self) -> Option<u32> {
        let f = self.flags();
        let at = BASE_LEN + if f & FLAG_CSUM != 0 { 4 } else { 0 } + if f & FLAG_KEY != 0 { 4 } else { 0 };
        (f & FLAG_SEQ != 0).then(|| be32(self.buffer.as_ref(), at))
    }
    /// True when there is no checksum or it is right.
    pub fn verify_checksum(&self) -> bool {
        !self.has_checksum() || checksum::checksum(self.buffer.as_ref()) == 0
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// The fields of a GRE header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct GreRepr {
    pub protocol: u16,
    /// Whether a checksum is sent; [`GreRepr::emit`] leaves it zero, [`fill_checksum`] computes it.
    pub checksum: bool,
    pub key: Option<u32>,
    pub sequence: Option<u32>,
}

impl GreRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &GrePacket<T>) -> Self {
        GreRepr { protocol: p.protocol(), checksum: p.has_checksum(), key: p.key(), sequence: p.sequence() }
    }

    pub fn buffer_len(&self) -> usize {
        BASE_LEN
            + 4 * (usize::from(self.checksum) + usize::from(self.key.is_some()) + usize::from(self.sequence.is_some()))
    }

    /// Writes the header into the start of `buf`, with a zero checksum field.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len).
    pub fn emit(&self, buf: &mut [u8]) {
        let mut flags = 0;
        let mut at = BASE_LEN;
        if self.checksum {
            flags |= FLAG_CSUM;
            put32(buf, at, 0);
            at += 4;
        }
        if let Some(k) = self.key {
            flags |= FLAG_KEY;
            put32(buf, at, k);
            at += 4;
        }
        if let Some(s) = self.sequence {
            flags |= FLAG_SEQ;
            put32(buf, at, s);
        }
        put16(buf, 0, flags);
        put16(buf, 2, self.protocol);
    }
}

/// Computes the checksum of a header emitted with `checksum: true` (`header`, its field still zero) followed
/// by `payload` given in parts, and stores it in the header.
pub fn fill_checksum(header: &mut [u8], payload: &[&[u8]]) {
    let mut acc = checksum::sum(header);
    let mut odd = header.len() % 2 == 1;
    for part in payload {
        let mut s = checksum::sum(part);
        if odd {
            // A part that starts at an odd offset has its bytes in the other halves of the 16-bit words.
            s = u32::from(!checksum::finish(s)).swap_bytes() >> 16;
        }
        acc = checksum::combine(acc, s);
        odd ^= part.len() % 2 == 1;
    }
    put16(header, 4, checksum::finish(acc));
}

#[cfg(test)]
mod tests {
    use super::*;

    // GRE header of frame 1 in gre-ovs.pcap: key present (42), TEB.
    const HDR: [u8; 8] = [0x20, 0x00, 0x65, 0x58, 0x00, 0x00, 0x00, 0x2a];

    #[test]
    fn parses_capture_and_emits_the_same() {
        let p = GrePacket::new_checked(&HDR[..]).unwrap();
        assert_eq!(
            (p.protocol(), p.key(), p.checksum(), p.sequence(), p.header_len()),
            (0x6558, Some(42), None, None, 8)
        );
        let repr = GreRepr::parse(&p);
        let mut out = [0u8; 8];
        repr.emit(&mut out);
        assert_eq!(out, HDR);
    }

    #[test]
    fn every_field_and_the_checksum() {
        let repr = GreRepr { protocol: 0x6558, checksum: true, key: Some(0xdead_beef), sequence: Some(7) };
        assert_eq!(repr.buffer_len(), 16);
        let payload = [1u8, 2, 3, 4, 5];
        let mut hdr = [0u8; 16];
        repr.emit(&mut hdr);
        // The payload in two parts, the first of odd length, must sum like the whole.
        fill_checksum(&mut hdr, &[&payload[..3], &payload[3..]]);
        let mut pkt = hdr.to_vec();
        pkt.extend_from_slice(&payload);
        let p = GrePacket::new_checked(&pkt[..]).unwrap();
        assert_eq!(GreRepr::parse(&p), repr);
        assert!(p.verify_checksum());
        assert_eq!(p.payload(), &payload);
        pkt[17] ^= 1;
        assert!(!GrePacket::new_checked(&pkt[..]).unwrap().verify_checksum());
    }

    #[test]
    fn rejects_routing_versions_and_truncation() {
        assert!(GrePacket::new_checked(&[0x40, 0, 0x65, 0x58][..]).is_err());
        assert!(GrePacket::new_checked(&[0x00, 1, 0x65, 0x58][..]).is_err());
        assert!(matches!(GrePacket::new_checked(&HDR[..6]), Err(Error::Truncated { .. })));
    }
}
