//! IPv4 headers (RFC 791), with the header checksum of RFC 1071.

use crate::{be16, checksum, need, put16, Error, Result};
use std::net::Ipv4Addr;

mod field {
    use core::ops::Range;
    pub const VER_IHL: usize = 0;
    pub const DSCP_ECN: usize = 1;
    pub const LENGTH: usize = 2;
    pub const IDENT: usize = 4;
    pub const FLG_OFF: usize = 6;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: usize = 10;
    pub const SRC_ADDR: Range<usize> = 12..16;
    pub const DST_ADDR: Range<usize> = 16..20;
}

/// Length of a header without options.
pub const HEADER_LEN: usize = 20;

/// IP protocol numbers weft looks at (shared with IPv6 next-header values).
pub struct Protocol;
impl Protocol {
    pub const ICMP: u8 = 1;
    pub const TCP: u8 = 6;
    pub const UDP: u8 = 17;
    pub const IPV6_ROUTE: u8 = 43;
    pub const IPV6_FRAG: u8 = 44;
    pub const GRE: u8 = 47;
    pub const ESP: u8 = 50;
    pub const ICMPV6: u8 = 58;
    pub const IPV6_NONXT: u8 = 59;
    pub const IPV6_OPTS: u8 = 60;
    pub const HOPOPTS: u8 = 0;
}

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;

/// A view of an IPv4 packet. `new_checked` verifies version, header length, and that the total length fits.
#[derive(Debug, Clone)]
pub struct Ipv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Ipv4Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Ipv4Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let p = Ipv4Packet { buffer };
        p.check_len()?;
        Ok(p)
    }

    /// Checks only the header (version 4, a header length of at least 20 bytes, all of it present): for
    /// captures cut short by their snap length, where the payload may be missing.
    pub fn new_header_checked(buffer: T) -> Result<Self> {
        let p = Ipv4Packet { buffer };
        let have = p.buffer.as_ref().len();
        need("ipv4", HEADER_LEN, have)?;
        if p.version() != 4 {
            return Err(Error::Malformed { layer: "ipv4", what: "version is not 4" });
        }
        if p.header_len() < HEADER_LEN {
            return Err(Error::Malformed { layer: "ipv4", what: "header length below 20 bytes" });
        }
        need("ipv4", p.header_len(), have)?;
        Ok(p)
    }

    /// Checks version 4, a header length of at least 20 bytes, and `header_len <= total_len <= buffer`.
    pub fn check_len(&self) -> Result<()> {
        let have = self.buffer.as_ref().len();
        need("ipv4", HEADER_LEN, have)?;
        if self.version() != 4 {
            return Err(Error::Malformed { layer: "ipv4", what: "version is not 4" });
        }
        let hl = self.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed { layer: "ipv4", what: "header length below 20 bytes" });
        }
        need("ipv4", hl, have)?;
        let total = usize::from(self.total_len());
        if total < hl {
            return Err(Error::Malformed { layer: "ipv4", what: "total length shorter than header" });
        }
        need("ipv4", total, have)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_IHL] >> 4
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_IHL] & 0x0f) * 4
    }
    pub fn dscp_ecn(&self) -> u8 {
        self.buffer.as_ref()[field::DSCP_ECN]
    }
    pub fn total_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }
    pub fn ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::IDENT)
    }
    pub fn dont_frag(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_DF != 0
    }
    pub fn more_frags(&self) -> bool {
        be16(self.buffer.as_ref(), field::FLG_OFF) & FLAG_MF != 0
    }
    /// Fragment offset in bytes.
    pub fn frag_offset(&self) -> u16 {
        (be16(self.buffer.as_ref(), field::FLG_OFF) & 0x1fff) * 8
    }
    pub fn hop_limit(&self) -> u8 {
        self.buffer.as_ref()[field::TTL]
    }
    pub fn protocol(&self) -> u8 {
        self.buffer.as_ref()[field::PROTOCOL]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn src_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::SRC_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    pub fn dst_addr(&self) -> Ipv4Addr {
        let b = &self.buffer.as_ref()[field::DST_ADDR];
        Ipv4Addr::new(b[0], b[1], b[2], b[3])
    }
    /// True when the header checksum is right.
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(&self.buffer.as_ref()[..self.header_len()]) == 0
    }
    /// The payload up to the total length (the buffer may carry Ethernet padding after it).
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Ipv4Packet<T> {
    pub fn set_total_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v);
    }
    pub fn set_ident(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::IDENT, v);
    }
    pub fn set_hop_limit(&mut self, v: u8) {
        self.buffer.as_mut()[field::TTL] = v;
    }
    /// Recomputes the header checksum.
    ///
    /// # Panics
    /// If the buffer is shorter than the header length field says (a packet from `new_checked` never is).
    pub fn fill_checksum(&mut self) {
        let hl = self.header_len();
        let b = self.buffer.as_mut();
        put16(b, field::CHECKSUM, 0);
        let c = checksum::checksum(&b[..hl]);
        put16(b, field::CHECKSUM, c);
    }
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let (hl, tl) = (self.header_len(), usize::from(self.total_len()));
        &mut self.buffer.as_mut()[hl..tl]
    }
}

/// The fields of an option-less IPv4 header that weft emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Repr {
    pub src_addr: Ipv4Addr,
    pub dst_addr: Ipv4Addr,
    pub protocol: u8,
    pub payload_len: usize,
    pub hop_limit: u8,
    pub dscp_ecn: u8,
    pub ident: u16,
    pub dont_frag: bool,
}

impl Ipv4Repr {
    /// Reads a header; options are skipped, fragments are reported as they are.
    pub fn parse<T: AsRef<[u8]>>(p: &Ipv4Packet<T>) -> Result<Self> {
        if !p.verify_checksum() {
            return Err(Error::Malformed { layer: "ipv4", what: "bad header checksum" });
        }
        Ok(Ipv4Repr {
            src_addr: p.src_addr(),
            dst_addr: p.dst_addr(),
            protocol: p.protocol(),
            payload_len: usize::from(p.total_len()) - p.header_len(),
            hop_limit: p.hop_limit(),
            dscp_ecn: p.dscp_ecn(),
            ident: p.ident(),
            dont_frag: p.dont_frag(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes a 20-byte header with its checksum into `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`] or the payload makes the packet longer than 65535 bytes.
    pub fn emit(&self, buf: &mut [u8]) {
        let total = u16::try_from(HEADER_LEN + self.payload_len).expect("IPv4 packet over 65535 bytes");
        buf[field::VER_IHL] = 0x45;
        buf[field::DSCP_ECN] = self.dscp_ecn;
        put16(buf, field::LENGTH, total);
        put16(buf, field::IDENT, self.ident);
        put16(buf, field::FLG_OFF, if self.dont_frag { FLAG_DF } else { 0 });
        buf[field::TTL] = self.hop_limit;
        buf[field::PROTOCOL] = self.protocol;
        put16(buf, field::CHECKSUM, 0);
        buf[field::SRC_ADDR].copy_from_slice(&self.src_addr.octets());
        buf[field::DST_ADDR].copy_from_slice(&self.dst_addr.octets());
        let c = checksum::checksum(&buf[..HEADER_LEN]);
        put16(buf, field::CHECKSUM, c);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Outer IPv4 header of frame 1 of vxlan-linux.pcap.
    const OUTER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x4e, 0x6c, 0xd8, 0x00, 0x00, 0x40, 0x11, 0x89, 0xc3, 0xc0, 0x00, 0x02, 0x01, 0xc0, 0x00,
        0x02, 0x02,
    ];

    fn with_payload() -> Vec<u8> {
        let mut v = OUTER.to_vec();
        v.resize(0x4e, 0);
        v
    }

    #[test]
    fn parses_capture_header() {
        let buf = with_payload();
        let p = Ipv4Packet::new_checked(&buf[..]).unwrap();
        assert!(p.verify_checksum());
        let r = Ipv4Repr::parse(&p).unwrap();
        assert_eq!(r.src_addr, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(r.dst_addr, Ipv4Addr::new(192, 0, 2, 2));
        assert_eq!(r.protocol, Protocol::UDP);
        assert_eq!(r.payload_len, 0x4e - 20);
        assert_eq!(r.ident, 0x6cd8);
        assert!(!r.dont_frag);
    }

    #[test]
    fn emit_reproduces_capture() {
        let r = Ipv4Repr::parse(&Ipv4Packet::new_checked(&with_payload()[..]).unwrap()).unwrap();
        let mut out = [0u8; 20];
        r.emit(&mut out);
        assert_eq!(out, OUTER);
    }

    #[test]
    fn rejects_bad_lengths() {
        let buf = with_payload();
        assert!(Ipv4Packet::new_checked(&buf[..0x4d]).is_err());
        let mut b = buf.clone();
        b[0] = 0x44;
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
        let mut b = buf.clone();
        b[0] = 0x65;
        assert!(Ipv4Packet::new_checked(&b[..]).is_err());
        let mut b = buf;
        b[11] ^= 1;
        assert!(Ipv4Repr::parse(&Ipv4Packet::new_checked(&b[..]).unwrap()).is_err());
    }
}
