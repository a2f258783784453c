//! UDP headers (RFC 768).

use crate::checksum;
use crate::{be16, need, put16, Error, Result};
use std::net::IpAddr;

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const LENGTH: usize = 4;
    pub const CHECKSUM: usize = 6;
}

pub const HEADER_LEN: usize = 8;

/// A view of a UDP datagram. `new_checked` verifies that the length field is sane and fits the buffer.
#[derive(Debug, Clone)]
pub struct UdpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> UdpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        UdpPacket { buffer }
    }

    /// Checks only that the 8-byte header is present (for captures cut short by their snap length).
    pub fn new_header_checked(buffer: T) -> Result<Self> {
        need("udp", HEADER_LEN, buffer.as_ref().len())?;
        Ok(UdpPacket { buffer })
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let have = buffer.as_ref().len();
        need("udp", HEADER_LEN, have)?;
        let p = UdpPacket { buffer };
        let len = usize::from(p.len());
        if len < HEADER_LEN {
            return Err(Error::Malformed { layer: "udp", what: "length below 8 bytes" });
        }
        need("udp", len, have)?;
        Ok(p)
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::LENGTH)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..usize::from(self.len())]
    }

    /// Verifies the checksum against the pseudo-header. An IPv4 checksum of zero means "none" and passes.
    pub fn verify_checksum(&self, src: IpAddr, dst: IpAddr) -> bool {
        if matches!(src, IpAddr::V4(_)) && self.checksum() == 0 {
            return true;
        }
        let data = &self.buffer.as_ref()[..usize::from(self.len())];
        checksum::finish(checksum::combine(pseudo(src, dst, self.len()), checksum::sum(data))) == 0
    }

    /// True when the checksum field holds only the folded pseudo-header sum: a sender with checksum offload
    /// (CHECKSUM_PARTIAL, as over veth) left it for hardware that never ran. Such datagrams are not corrupt.
    pub fn checksum_is_partial(&self, src: IpAddr, dst: IpAddr) -> bool {
        let partial = pseudo(src, dst, self.len());
        let mut folded = partial;
        while folded > 0xffff {
            folded = (folded & 0xffff) + (folded >> 16);
        }
        self.checksum() == folded as u16
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> UdpPacket<T> {
    pub fn set_src_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::SRC_PORT, v);
    }
    pub fn set_dst_port(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::DST_PORT, v);
    }
    pub fn set_len(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::LENGTH, v);
    }
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
    /// Computes the checksum over header, payload and pseudo-header; 0 is sent as 0xffff (RFC 768).
    pub fn fill_checksum(&mut self, src: IpAddr, dst: IpAddr) {
        self.set_checksum(0);
        let len = self.len();
        let data = &self.buffer.as_ref()[..usize::from(len)];
        let c = checksum::finish(checksum::combine(pseudo(src, dst, len), checksum::sum(data)));
        self.set_checksum(if c == 0 { 0xffff } else { c });
    }
}

fn pseudo(src: IpAddr, dst: IpAddr, len: u16) -> u32 {
    match (src, dst) {
        (IpAddr::V4(s), IpAddr::V4(d)) => checksum::pseudo_v4(s, d, crate::ipv4::Protocol::UDP, len),
        (IpAddr::V6(s), IpAddr::V6(d)) => checksum::pseudo_v6(s, d, crate::ipv4::Protocol::UDP, u32::from(len)),
        _ => 0,
    }
}

/// The fields of a UDP header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpRepr {
    pub src_port: u16,
    pub dst_port: u16,
}

impl UdpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &UdpPacket<T>) -> Self {
        UdpRepr { src_port: p.src_port(), dst_port: p.dst_port() }
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header with a zero checksum; call [`UdpPacket::fill_checksum`] afterwards to fill it.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`] or `payload_len + 8` exceeds 65535.
    pub fn emit(&self, buf: &mut [u8], payload_len: usize) {
        put16(buf, field::SRC_PORT, self.src_port);
        put16(buf, field::DST_PORT, self.dst_port);
        put16(buf, field::LENGTH, u16::try_from(HEADER_LEN + payload_len).expect("UDP datagram over 65535 bytes"));
        put16(buf, field::CHECKSUM, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    // Outer UDP header + VXLAN header + 42-byte ARP frame: frame 1 of vxlan-linux.pcap.
    fn datagram() -> Vec<u8> {
        let mut v = vec![0xb8, 0xa1, 0x12, 0xb5, 0x00, 0x3a, 0x84, 0x4f, 0x08, 0, 0, 0, 0, 0, 0x2a, 0];
        v.extend_from_slice(&[0xff; 6]);
        v.extend_from_slice(&[0xda, 0x59, 0xbf, 0x8d, 0xe7, 0xc4, 0x08, 0x06]);
        v.extend_from_slice(&[0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0xda, 0x59, 0xbf, 0x8d, 0xe7, 0xc4]);
        v.extend_from_slice(&[0xc6, 0x33, 0x64, 0x01, 0, 0, 0, 0, 0, 0, 0xc6, 0x33, 0x64, 0x02]);
        v
    }

    #[test]
    fn parses_capture_and_verifies_checksum() {
        let d = datagram();
        let p = UdpPacket::new_checked(&d[..]).unwrap();
        assert_eq!(p.src_port(), 47265);
        assert_eq!(p.dst_port(), 4789);
        assert_eq!(p.len(), 58);
        let (s, t) = (IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)));
        // Linux sent this over veth with checksum offload: the field holds the pseudo-header sum only.
        assert!(!p.verify_checksum(s, t));
        assert!(p.checksum_is_partial(s, t));
        let mut copy = d.clone();
        let mut q = UdpPacket::new_unchecked(&mut copy[..]);
        q.fill_checksum(s, t);
        assert_ne!(q.checksum(), 0x844f);
        assert!(q.verify_checksum(s, t));
        assert!(!q.checksum_is_partial(s, t));
    }

    #[test]
    fn rejects_bad_length() {
        let mut d = datagram();
        assert!(UdpPacket::new_checked(&d[..57]).is_err());
        d[5] = 4;
        assert!(UdpPacket::new_checked(&d[..]).is_err());
    }
}
