//! VXLAN (RFC 7348 §5): an 8-byte header after UDP, then the inner Ethernet frame.
//!
//! ```text
//!  0                   1                   2                   3
//! |R|R|R|R|I|R|R|R|            Reserved                           |
//! |                VXLAN Network Identifier (VNI) |   Reserved    |
//! ```
//! The I flag must be set for a valid VNI; other reserved bits are ignored on receipt (§5, "VXLAN Header").

use crate::{be32, need, put32, Error, Result};

mod field {
    pub const FLAGS: usize = 0;
    pub const VNI: usize = 4;
}

pub const HEADER_LEN: usize = 8;
/// IANA-assigned UDP port (RFC 7348 §5).
pub const PORT: u16 = 4789;
/// The I flag: "the VNI is valid".
pub const FLAG_VNI: u8 = 0x08;
pub const VNI_MAX: u32 = 0x00ff_ffff;

/// A view of a VXLAN header and the frame it carries.
#[derive(Debug, Clone)]
pub struct VxlanPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        VxlanPacket { buffer }
    }

    /// Checks the length and that the I flag is set.
    pub fn new_checked(buffer: T) -> Result<Self> {
        need("vxlan", HEADER_LEN, buffer.as_ref().len())?;
        let p = VxlanPacket { buffer };
        if p.flags() & FLAG_VNI == 0 {
            return Err(Error::Malformed { layer: "vxlan", what: "I flag (valid VNI) not set" });
        }
        Ok(p)
    }

    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    /// The 16 flag bits as Wireshark shows them (`vxlan.flags`).
    pub fn flags16(&self) -> u16 {
        u16::from_be_bytes([self.buffer.as_ref()[0], self.buffer.as_ref()[1]])
    }
    /// The group policy ID of the GBP extension (bytes 2–3); zero for plain VXLAN.
    pub fn group_policy_id(&self) -> u16 {
        u16::from_be_bytes([self.buffer.as_ref()[2], self.buffer.as_ref()[3]])
    }
    pub fn vni(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VNI) >> 8
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// The fields of a VXLAN header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VxlanRepr {
    pub vni: u32,
}

impl VxlanRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &VxlanPacket<T>) -> Self {
        VxlanRepr { vni: p.vni() }
    }

    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN
    }

    /// Writes the header into the first 8 bytes of `buf`.
    ///
    /// # Panics
    /// If `buf` is shorter than [`HEADER_LEN`].
    pub fn emit(&self, buf: &mut [u8]) {
        put32(buf, field::FLAGS, u32::from(FLAG_VNI) << 24);
        put32(buf, field::VNI, (self.vni & VNI_MAX) << 8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // VXLAN header of frame 1 in vxlan-linux.pcap: flags 0x0800, VNI 42.
    const HDR: [u8; 8] = [0x08, 0x00, 0x00, 0x00, 0x00, 0x00, 0x2a, 0x00];

    #[test]
    fn parses_capture() {
        let p = VxlanPacket::new_checked(&HDR[..]).unwrap();
        assert_eq!(p.vni(), 42);
        assert_eq!(p.flags16(), 0x0800);
        let mut out = [0u8; 8];
        VxlanRepr { vni: 42 }.emit(&mut out);
        assert_eq!(out, HDR);
    }

    #[test]
    fn rejects_missing_i_flag_and_short() {
        let mut h = HDR;
        h[0] = 0;
        assert!(VxlanPacket::new_checked(&h[..]).is_err());
        assert!(VxlanPacket::new_checked(&HDR[..7]).is_err());
    }

    #[test]
    fn largest_vni() {
        let mut out = [0u8; 8];
        VxlanRepr { vni: VNI_MAX }.emit(&mut out);
        assert_eq!(VxlanPacket::new_checked(&out[..]).unwrap().vni(), VNI_MAX);
    }
}
