//! IEEE 802.1Q VLAN tags (and the 802.1ad S-tag, which has the same layout).
//!
//! A tag sits where the EtherType would be: TPID (0x8100 or 0x88a8), then the TCI (PCP 3 bits, DEI 1 bit,
//! VID 12 bits), then the inner EtherType.

use crate::{be16, need, put16, Result};

mod field {
    pub const TCI: usize = 0;
    pub const ETHERTYPE: usize = 2;
    pub const PAYLOAD: usize = 4;
}

/// Length of one tag following the TPID.
pub const HEADER_LEN: usize = field::PAYLOAD;
/// Largest valid VLAN ID; 0 means "priority tag only" and 4095 is reserved.
pub const VID_MAX: u16 = 4094;

/// A view of the four bytes that follow a TPID: TCI and the encapsulated EtherType.
#[derive(Debug, Clone)]
pub struct VlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VlanPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        VlanPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        need("vlan", HEADER_LEN, buffer.as_ref().len())?;
        Ok(VlanPacket { buffer })
    }

    pub fn tci(&self) -> u16 {
        be16(self.buffer.as_ref(), field::TCI)
    }
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }
    pub fn ethertype(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ETHERTYPE)
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VlanPacket<T> {
    pub fn set_tci(&mut self, tci: u16) {
        put16(self.buffer.as_mut(), field::TCI, tci);
    }
    pub fn set_ethertype(&mut self, t: u16) {
        put16(self.buffer.as_mut(), field::ETHERTYPE, t);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tci() {
        // PCP 5, DEI 1, VID 100, then IPv4.
        let b = [0xb0, 0x64, 0x08, 0x00];
        let v = VlanPacket::new_checked(&b[..]).unwrap();
        assert_eq!(v.vid(), 100);
        assert_eq!(v.pcp(), 5);
        assert!(v.dei());
        assert_eq!(v.ethertype(), 0x0800);
        assert!(VlanPacket::new_checked(&b[..3]).is_err());
    }

    #[test]
    fn set_round_trips() {
        let mut b = [0u8; 4];
        let mut v = VlanPacket::new_unchecked(&mut b[..]);
        v.set_tci(42);
        v.set_ethertype(0x86dd);
        assert_eq!(b, [0x00, 0x2a, 0x86, 0xdd]);
    }
}
