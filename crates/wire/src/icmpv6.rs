//! ICMPv6 (RFC 4443) and the neighbour-discovery messages weft looks at (RFC 4861).

use crate::{be16, be32, checksum, need, put16, put32, Result};
use std::net::Ipv6Addr;

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const MTU: usize = 4;
    pub const ND_TARGET: usize = 8;
}

pub const HEADER_LEN: usize = 8;
pub const TYPE_DEST_UNREACHABLE: u8 = 1;
pub const TYPE_PACKET_TOO_BIG: u8 = 2;
pub const TYPE_ECHO_REQUEST: u8 = 128;
pub const TYPE_ECHO_REPLY: u8 = 129;
pub const TYPE_ROUTER_SOLICIT: u8 = 133;
pub const TYPE_ROUTER_ADVERT: u8 = 134;
pub const TYPE_NEIGHBOR_SOLICIT: u8 = 135;
pub const TYPE_NEIGHBOR_ADVERT: u8 = 136;
/// Neighbour solicitations and advertisements: 8-byte header, then the 16-byte target address.
pub const ND_LEN: usize = 24;

/// A view of an ICMPv6 message.
#[derive(Debug, Clone)]
pub struct Icmpv6Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv6Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv6Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need("icmpv6", HEADER_LEN, b.len())?;
        if matches!(b[field::TYPE], TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT) {
            need("icmpv6 nd", ND_LEN, b.len())?;
        }
        Ok(Icmpv6Packet { buffer })
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    /// The MTU of a "packet too big" message.
    pub fn mtu(&self) -> u32 {
        be32(self.buffer.as_ref(), field::MTU)
    }
    /// The target address of a neighbour solicitation or advertisement.
    pub fn nd_target(&self) -> Option<Ipv6Addr> {
        if !matches!(self.msg_type(), TYPE_NEIGHBOR_SOLICIT | TYPE_NEIGHBOR_ADVERT) {
            return None;
        }
        let mut a = [0u8; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::ND_TARGET..field::ND_TARGET + 16]);
        Some(Ipv6Addr::from(a))
    }
    pub fn verify_checksum(&self, src: Ipv6Addr, dst: Ipv6Addr) -> bool {
        let b = self.buffer.as_ref();
        let ps = checksum::pseudo_v6(src, dst, crate::ipv4::Protocol::ICMPV6, b.len() as u32);
        checksum::finish(checksum::combine(ps, checksum::sum(b))) == 0
    }
}

/// Writes a "packet too big" message quoting `original` into `buf` and fills its checksum; returns its length.
///
/// # Panics
/// If `buf` is shorter than `HEADER_LEN + min(original.len(), quote_max)`.
pub fn emit_packet_too_big(
    buf: &mut [u8],
    mtu: u32,
    original: &[u8],
    quote_max: usize,
    src: Ipv6Addr,
    dst: Ipv6Addr,
) -> usize {
    let quote = original.len().min(quote_max);
    buf[field::TYPE] = TYPE_PACKET_TOO_BIG;
    buf[field::CODE] = 0;
    put16(buf, field::CHECKSUM, 0);
    put32(buf, field::MTU, mtu);
    buf[HEADER_LEN..HEADER_LEN + quote].copy_from_slice(&original[..quote]);
    let len = HEADER_LEN + quote;
    let ps = checksum::pseudo_v6(src, dst, crate::ipv4::Protocol::ICMPV6, len as u32);
    let c = checksum::finish(checksum::combine(ps, checksum::sum(&buf[..len])));
    put16(buf, field::CHECKSUM, c);
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neighbor_solicit_target() {
        let mut b = [0u8; 32];
        b[0] = TYPE_NEIGHBOR_SOLICIT;
        let target: Ipv6Addr = "2001:db8::7".parse().unwrap();
        b[8..24].copy_from_slice(&target.octets());
        let p = Icmpv6Packet::new_checked(&b[..]).unwrap();
        assert_eq!(p.nd_target(), Some(target));
        assert!(Icmpv6Packet::new_checked(&b[..20]).is_err());
    }

    #[test]
    fn packet_too_big_checksum() {
        let (s, d): (Ipv6Addr, Ipv6Addr) = ("2001:db8::1".parse().unwrap(), "2001:db8::2".parse().unwrap());
        let mut buf = [0u8; 128];
        let n = emit_packet_too_big(&mut buf, 1430, &[0x60; 100], 64, s, d);
        let p = Icmpv6Packet::new_checked(&buf[..n]).unwrap();
        assert_eq!((p.msg_type(), p.mtu()), (TYPE_PACKET_TOO_BIG, 1430));
        assert!(p.verify_checksum(s, d));
        assert!(!p.verify_checksum(d, "2001:db8::3".parse().unwrap()));
    }
}
