//! TCP headers (RFC 9293 §3.1). weft reads ports and flags for flow keys and rewrites sequence numbers,
//! flags and checksums when it segments large frames.

use crate::{be16, be32, need, put16, put32, Error, Result};

mod field {
    pub const SRC_PORT: usize = 0;
    pub const DST_PORT: usize = 2;
    pub const SEQ_NUM: usize = 4;
    pub const ACK_NUM: usize = 8;
    pub const DATA_OFF: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: usize = 14;
    pub const CHECKSUM: usize = 16;
}

pub const HEADER_LEN: usize = 20;
/// Offset of the checksum field, as the virtio-net header's `csum_offset` names it.
pub const CHECKSUM_OFFSET: usize = field::CHECKSUM;

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_SYN: u8 = 0x02;
pub const FLAG_RST: u8 = 0x04;
pub const FLAG_PSH: u8 = 0x08;
pub const FLAG_ACK: u8 = 0x10;

/// A view of a TCP segment. `new_checked` verifies the data offset.
#[derive(Debug, Clone)]
pub struct TcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> TcpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        TcpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        let have = buffer.as_ref().len();
        need("tcp", HEADER_LEN, have)?;
        let p = TcpPacket { buffer };
        let hl = p.header_len();
        if hl < HEADER_LEN {
            return Err(Error::Malformed { layer: "tcp", what: "data offset below 5 words" });
        }
        need("tcp", hl, have)?;
        Ok(p)
    }

    pub fn src_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::SRC_PORT)
    }
    pub fn dst_port(&self) -> u16 {
        be16(self.buffer.as_ref(), field::DST_PORT)
    }
    pub fn seq_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::SEQ_NUM)
    }
    pub fn ack_number(&self) -> u32 {
        be32(self.buffer.as_ref(), field::ACK_NUM)
    }
    pub fn header_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DATA_OFF] >> 4) * 4
    }
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    pub fn window_len(&self) -> u16 {
        be16(self.buffer.as_ref(), field::WINDOW)
    }
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM)
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> TcpPacket<T> {
    pub fn set_seq_number(&mut self, v: u32) {
        put32(self.buffer.as_mut(), field::SEQ_NUM, v);
    }
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS] = v;
    }
    pub fn set_checksum(&mut self, v: u16) {
        put16(self.buffer.as_mut(), field::CHECKSUM, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_syn() {
        let mut b = [0u8; 24];
        b[0..2].copy_from_slice(&443u16.to_be_bytes());
        b[2..4].copy_from_slice(&50000u16.to_be_bytes());
        b[4..8].copy_from_slice(&7u32.to_be_bytes());
        b[12] = 6 << 4;
        b[13] = FLAG_SYN;
        let p = TcpPacket::new_checked(&b[..]).unwrap();
        assert_eq!((p.src_port(), p.dst_port(), p.seq_number()), (443, 50000, 7));
        assert_eq!(p.header_len(), 24);
        assert_eq!(p.flags(), FLAG_SYN);
        assert!(p.payload().is_empty());
        assert!(TcpPacket::new_checked(&b[..23]).is_err());
        b[12] = 4 << 4;
        assert!(TcpPacket::new_checked(&b[..]).is_err());
    }
}
