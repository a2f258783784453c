//! ESP (RFC 4303 §2): what can be read without the keys — the SPI and the sequence number.

use crate::{be32, need, Result};

pub const HEADER_LEN: usize = 8;
/// UDP port of ESP-in-UDP (RFC 3948) and IKE with NAT traversal.
pub const NAT_T_PORT: u16 = 4500;

/// A view of an ESP header; the rest is ciphertext.
#[derive(Debug, Clone)]
pub struct EspPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> EspPacket<T> {
    pub fn new_checked(buffer: T) -> Result<Self> {
        need("esp", HEADER_LEN, buffer.as_ref().len())?;
        Ok(EspPacket { buffer })
    }
    pub fn spi(&self) -> u32 {
        be32(self.buffer.as_ref(), 0)
    }
    pub fn sequence(&self) -> u32 {
        be32(self.buffer.as_ref(), 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spi_and_sequence() {
        let p = EspPacket::new_checked(&[0xc0, 0, 0, 1, 0, 0, 0, 9, 0xaa][..]).unwrap();
        assert_eq!((p.spi(), p.sequence()), (0xc000_0001, 9));
        assert!(EspPacket::new_checked(&[0u8; 7][..]).is_err());
    }
}
