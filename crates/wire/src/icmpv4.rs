//! ICMP for IPv4 (RFC 792), including "fragmentation needed" with its next-hop MTU (RFC 1191).

use crate::{be16, checksum, need, put16, Result};

mod field {
    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: usize = 2;
    pub const ECHO_IDENT: usize = 4;
    pub const ECHO_SEQNO: usize = 6;
    pub const NEXT_HOP_MTU: usize = 6;
}

pub const HEADER_LEN: usize = 8;
pub const TYPE_ECHO_REPLY: u8 = 0;
pub const TYPE_DEST_UNREACHABLE: u8 = 3;
pub const TYPE_ECHO_REQUEST: u8 = 8;
pub const TYPE_TIME_EXCEEDED: u8 = 11;
/// Code of "destination unreachable" meaning "fragmentation needed and DF set".
pub const CODE_FRAG_NEEDED: u8 = 4;

/// A view of an ICMPv4 message.
#[derive(Debug, Clone)]
pub struct Icmpv4Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Icmpv4Packet<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        Icmpv4Packet { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self> {
        need("icmp", HEADER_LEN, buffer.as_ref().len())?;
        Ok(Icmpv4Packet { buffer })
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
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT)
    }
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO)
    }
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), field::NEXT_HOP_MTU)
    }
    pub fn verify_checksum(&self) -> bool {
        checksum::checksum(self.buffer.as_ref()) == 0
    }
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..]
    }
}

/// Writes a "fragmentation needed" message quoting `original` (its IP header and first bytes) into `buf`,
/// returning the message length. At most `HEADER_LEN + quote_max` bytes are written.
///
/// # Panics
/// If `buf` is shorter than `HEADER_LEN + min(original.len(), quote_max)`.
pub fn emit_frag_needed(buf: &mut [u8], mtu: u16, original: &[u8], quote_max: usize) -> usize {
    let quote = original.len().min(quote_max);
    buf[field::TYPE] = TYPE_DEST_UNREACHABLE;
    buf[field::CODE] = CODE_FRAG_NEEDED;
    put16(buf, field::CHECKSUM, 0);
    put16(buf, 4, 0);
    put16(buf, field::NEXT_HOP_MTU, mtu);
    buf[HEADER_LEN..HEADER_LEN + quote].copy_from_slice(&original[..quote]);
    let len = HEADER_LEN + quote;
    let c = checksum::checksum(&buf[..len]);
    put16(buf, field::CHECKSUM, c);
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    // ICMP part of an echo request of vxlan-linux.pcap frame 3: id 0x7169, seq 1.
    #[test]
    fn parses_echo() {
        let mut b = [0u8; 16];
        b[0] = TYPE_ECHO_REQUEST;
        b[4..6].copy_from_slice(&0x7169u16.to_be_bytes());
        b[6..8].copy_from_slice(&1u16.to_be_bytes());
        let c = checksum::checksum(&b);
        b[2..4].copy_from_slice(&c.to_be_bytes());
        let p = Icmpv4Packet::new_checked(&b[..]).unwrap();
        assert_eq!((p.msg_type(), p.echo_ident(), p.echo_seq_no()), (8, 0x7169, 1));
        assert!(p.verify_checksum());
        assert!(Icmpv4Packet::new_checked(&b[..7]).is_err());
    }

    #[test]
    fn frag_needed_quotes_and_checksums() {
        let original = [0x45u8; 40];
        let mut buf = [0u8; 64];
        let n = emit_frag_needed(&mut buf, 1450, &original, 28);
        assert_eq!(n, 36);
        let p = Icmpv4Packet::new_checked(&buf[..n]).unwrap();
        assert_eq!((p.msg_type(), p.msg_code(), p.next_hop_mtu()), (3, 4, 1450));
        assert!(p.verify_checksum());
    }
}
