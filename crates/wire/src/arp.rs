//! ARP for IPv4 over Ethernet (RFC 826).

use crate::{be16, need, put16, Error, EthernetAddress, Result};
use std::net::Ipv4Addr;

mod field {
    use core::ops::Range;
    pub const HTYPE: usize = 0;
    pub const PTYPE: usize = 2;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: usize = 6;
    pub const SHA: Range<usize> = 8..14;
    pub const SPA: Range<usize> = 14..18;
    pub const THA: Range<usize> = 18..24;
    pub const TPA: Range<usize> = 24..28;
}

/// Length of an Ethernet/IPv4 ARP packet.
pub const PACKET_LEN: usize = 28;
pub const HTYPE_ETHERNET: u16 = 1;
pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;

/// A view of an ARP packet. `new_checked` accepts only Ethernet/IPv4 ARP, the only kind weft handles.
#[derive(Debug, Clone)]
pub struct ArpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> ArpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        ArpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let b = buffer.as_ref();
        need("arp", PACKET_LEN, b.len())?;
        if be16(b, field::HTYPE) != HTYPE_ETHERNET || b[field::HLEN] != 6 {
            return Err(Error::Malformed { layer: "arp", what: "hardware type is not Ethernet" });
        }
        if be16(b, field::PTYPE) != crate::EtherType::IPV4 || b[field::PLEN] != 4 {
            return Err(Error::Malformed { layer: "arp", what: "protocol type is not IPv4" });
        }
        Ok(ArpPacket { buffer })
    }

    pub fn operation(&self) -> u16 {
        be16(self.buffer.as_ref(), field::OPER)
    }
    pub fn sender_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::SHA])
    }
    pub fn sender_protocol_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::SPA.start)
    }
    pub fn target_hardware_addr(&self) -> EthernetAddress {
        EthernetAddress::from_bytes(&self.buffer.as_ref()[field::THA])
    }
    pub fn target_protocol_addr(&self) -> Ipv4Addr {
        ipv4_at(self.buffer.as_ref(), field::TPA.start)
    }
}

fn ipv4_at(b: &[u8], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
}

/// The fields of an Ethernet/IPv4 ARP packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpRepr {
    pub operation: u16,
    pub sender_hardware_addr: EthernetAddress,
    pub sender_protocol_addr: Ipv4Addr,
    pub target_hardware_addr: EthernetAddress,
    pub target_protocol_addr: Ipv4Addr,
}

impl ArpRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &ArpPacket<T>) -> Self {
        ArpRepr {
            operation: p.operation(),
            sender_hardware_addr: p.sender_hardware_addr(),
            sender_protocol_addr: p.sender_protocol_addr(),
            target_hardware_addr: p.target_hardware_addr(),
            target_protocol_addr: p.target_protocol_addr(),
        }
    }

    pub const fn buffer_len(&self) -> usize {
        PACKET_LEN
    }

    /// Writes the packet into the first [`PACKET_LEN`] bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`PACKET_LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        put16(buf, field::HTYPE, HTYPE_ETHERNET);
        put16(buf, field::PTYPE, crate::EtherType::IPV4);
        buf[field::HLEN] = 6;
        buf[field::PLEN] = 4;
        put16(buf, field::OPER, self.operation);
        buf[field::SHA].copy_from_slice(&self.sender_hardware_addr.0);
        buf[field::SPA].copy_from_slice(&self.sender_protocol_addr.octets());
        buf[field::THA].copy_from_slice(&self.target_hardware_addr.0);
        buf[field::TPA].copy_from_slice(&self.target_protocol_addr.octets());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Frame 1 of vxlan-linux.pcap, inner ARP payload: who has 198.51.100.2? tell 198.51.100.1.
    const REQUEST: [u8; 28] = [
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, 0xda, 0x59, 0xbf, 0x8d, 0xe7, 0xc4, 0xc6, 0x33, 0x64, 0x01,
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x33, 0x64, 0x02,
    ];

    #[test]
    fn parses_request() {
        let p = ArpPacket::new_checked(&REQUEST[..]).unwrap();
        let r = ArpRepr::parse(&p);
        assert_eq!(r.operation, OP_REQUEST);
        assert_eq!(r.sender_protocol_addr, Ipv4Addr::new(198, 51, 100, 1));
        assert_eq!(r.target_protocol_addr, Ipv4Addr::new(198, 51, 100, 2));
        assert_eq!(r.sender_hardware_addr.to_string(), "da:59:bf:8d:e7:c4");
        let mut out = [0u8; 28];
        r.emit(&mut out);
        assert_eq!(out, REQUEST);
    }

    #[test]
    fn rejects_other_hardware() {
        let mut b = REQUEST;
        b[1] = 6;
        assert!(ArpPacket::new_checked(&b[..]).is_err());
        assert!(ArpPacket::new_checked(&REQUEST[..27]).is_err());
    }
}
