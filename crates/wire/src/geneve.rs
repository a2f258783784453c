//! Geneve (RFC 8926 §3): an 8-byte header after UDP, variable-length options, then the payload.
//!
//! ```text
//!  0                   1                   2                   3
//! |Ver|  Opt Len  |O|C|    Rsvd.  |          Protocol Type        |
//! |        Virtual Network Identifier (VNI)       |    Reserved   |
//! |                    Variable-Length Options                    |
//! ```
//! Each option is a 4-byte header (class, type whose top bit marks it critical, 5-bit length in 4-byte
//! words) followed by its data. `Opt Len` counts the options in 4-byte words, so they take at most 252 bytes.

use crate::{be16, be32, need, put16, put32, Error, Result};

mod field {
    pub const VER_OPTLEN: usize = 0;
    pub const FLAGS: usize = 1;
    pub const PROTOCOL: usize = 2;
    pub const VNI: usize = 4;
}

/// The fixed part of the header.
pub const HEADER_LEN: usize = 8;
/// IANA-assigned UDP port (RFC 8926 §3.3).
pub const PORT: u16 = 6081;
/// The O bit: the payload is a control message, not for forwarding.
pub const FLAG_OAM: u8 = 0x80;
/// The C bit: at least one option is critical.
pub const FLAG_CRITICAL: u8 = 0x40;
/// The top bit of an option's type: a receiver that does not know the option must drop the packet.
pub const TYPE_CRITICAL: u8 = 0x80;
/// Longest options area (6-bit length in 4-byte words).
pub const OPTIONS_MAX: usize = 63 * 4;
/// Longest data of one option (5-bit length in 4-byte words).
pub const OPTION_DATA_MAX: usize = 31 * 4;
pub const VNI_MAX: u32 = 0x00ff_ffff;

/// A view of a Geneve header, its options and the payload.
#[derive(Debug, Clone)]
pub struct GenevePacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> GenevePacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        GenevePacket { buffer }
    }

    /// Checks the version (0) and that the options the header declares lie inside the buffer.
    pub fn new_checked(buffer: T) -> Result<Self> {
        need("geneve", HEADER_LEN, buffer.as_ref().len())?;
        let p = GenevePacket { buffer };
        if p.version() != 0 {
            return Err(Error::Malformed { layer: "geneve", what: "version is not 0" });
        }
        need("geneve", p.header_len(), p.buffer.as_ref().len())?;
        Ok(p)
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VER_OPTLEN] >> 6
    }
    /// Length of the options in bytes.
    pub fn options_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::VER_OPTLEN] & 0x3f) * 4
    }
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options_len()
    }
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS]
    }
    pub fn is_oam(&self) -> bool {
        self.flags() & FLAG_OAM != 0
    }
    pub fn is_critical(&self) -> bool {
        self.flags() & FLAG_CRITICAL != 0
    }
    pub fn protocol(&self) -> u16 {
        be16(self.buffer.as_ref(), field::PROTOCOL)
    }
    pub fn vni(&self) -> u32 {
        be32(self.buffer.as_ref(), field::VNI) >> 8
    }
    /// The options area (the caller has checked the packet).
    pub fn options_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }
    /// Iterates over the options; a malformed one (running past the options area) ends with an error.
    pub fn options(&self) -> Options<'_> {
        Options { rest: self.options_bytes() }
    }
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..]
    }
}

/// One Geneve option, borrowed from the packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveOption<'a> {
    pub class: u16,
    /// The type byte, critical bit included.
    pub kind: u8,
    pub data: &'a [u8],
}

impl GeneveOption<'_> {
    pub fn is_critical(&self) -> bool {
        self.kind & TYPE_CRITICAL != 0
    }
    /// Bytes this option takes on the wire.
    pub fn wire_len(&self) -> usize {
        4 + self.data.len()
    }
}

/// Iterator over the options of a [`GenevePacket`].
#[derive(Debug, Clone)]
pub struct Options<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Options<'a> {
    type Item = Result<GeneveOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        if self.rest.len() < 4 {
            self.rest = &[];
            return Some(Err(Error::Truncated { layer: "geneve option", needed: 4, have: self.rest.len() }));
        }
        let len = 4 + usize::from(self.rest[3] & 0x1f) * 4;
        if self.rest.len() < len {
            let have = self.rest.len();
            self.rest = &[];
            return Some(Err(Error::Truncated { layer: "geneve option", needed: len, have }));
        }
        let opt = GeneveOption { class: be16(self.rest, 0), kind: self.rest[2], data: &self.rest[4..len] };
        self.rest = &self.rest[len..];
        Some(Ok(opt))
    }
}

/// The fields of a Geneve header; the options are emitted from already-encoded bytes (see
/// [`encode_option`]), since a tunnel sends the same ones with every packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneveRepr<'a> {
    pub vni: u32,
    pub protocol: u16,
    pub oam: bool,
    /// Encoded options: a multiple of 4 bytes, at most [`OPTIONS_MAX`].
    pub options: &'a [u8],
}

impl GeneveRepr<'_> {
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.options.len()
    }

    /// Writes the header and options into the start of `buf`; the C bit is set when an option is critical.
    ///
    /// # Panics
    /// If `buf` is shorter than [`buffer_len`](Self::buffer_len) or the options are not a whole number of
    /// 4-byte words up to [`OPTIONS_MAX`].
    pub fn emit(&self, buf: &mut [u8]) {
        assert!(self.options.len().is_multiple_of(4) && self.options.len() <= OPTIONS_MAX, "bad Geneve options length");
        let critical = Options { rest: self.options }.flatten().any(|o| o.is_critical());
        buf[field::VER_OPTLEN] = (self.options.len() / 4) as u8;
        buf[field::FLAGS] = if self.oam { FLAG_OAM } else { 0 } | if critical { FLAG_CRITICAL } else { 0 };
        put16(buf, field::PROTOCOL, self.protocol);
        put32(buf, field::VNI, (self.vni & VNI_MAX) << 8);
        buf[HEADER_LEN..self.buffer_len()].copy_from_slice(self.options);
    }
}

/// Appends one option (class, type, data) to `out`.
///
/// # Errors
/// If the data is not a multiple of 4 bytes or longer than [`OPTION_DATA_MAX`].
pub fn encode_option(class: u16, kind: u8, data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    if !data.len().is_multiple_of(4) {
        return Err(Error::Malformed { layer: "geneve option", what: "data length is not a multiple of 4" });
    }
    if data.len() > OPTION_DATA_MAX {
        return Err(Error::Malformed { layer: "geneve option", what: "data longer than 124 bytes" });
    }
    out.extend_from_slice(&class.to_be_bytes());
    out.push(kind);
    out.push((data.len() / 4) as u8);
    out.extend_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Geneve header of frame 1 in geneve-ovs.pcap: no options, TEB, VNI 42.
    const HDR: [u8; 8] = [0x00, 0x00, 0x65, 0x58, 0x00, 0x00, 0x2a, 0x00];

    #[test]
    fn parses_capture_and_emits_the_same() {
        let p = GenevePacket::new_checked(&HDR[..]).unwrap();
        assert_eq!((p.version(), p.options_len(), p.protocol(), p.vni()), (0, 0, 0x6558, 42));
        assert!(!p.is_oam() && !p.is_critical());
        assert_eq!(p.options().count(), 0);
        let mut out = [0u8; 8];
        GeneveRepr { vni: 42, protocol: 0x6558, oam: false, options: &[] }.emit(&mut out);
        assert_eq!(out, HDR);
    }

    #[test]
    fn options_round_trip_and_critical_bit() {
        let mut opts = Vec::new();
        encode_option(0x0102, 0x03, &[1, 2, 3, 4], &mut opts).unwrap();
        encode_option(0xffff, 0x80 | 0x11, &[], &mut opts).unwrap();
        assert_eq!(opts.len(), 12);
        let repr = GeneveRepr { vni: 5000, protocol: 0x6558, oam: false, options: &opts };
        let mut buf = vec![0u8; repr.buffer_len() + 3];
        repr.emit(&mut buf);
        let p = GenevePacket::new_checked(&buf[..]).unwrap();
        assert_eq!(p.vni(), 5000);
        assert_eq!(p.options_len(), 12);
        assert!(p.is_critical(), "C bit set for a critical option");
        let got: Vec<_> = p.options().map(|o| o.unwrap()).collect();
        assert_eq!(got[0], GeneveOption { class: 0x0102, kind: 3, data: &[1, 2, 3, 4] });
        assert!(got[1].is_critical() && got[1].data.is_empty());
        assert_eq!(p.payload().len(), 3);
    }

    #[test]
    fn rejects_truncated_options_and_bad_version() {
        let mut h = HDR;
        h[0] = 0x01; // 4 bytes of options, none present
        assert!(matches!(GenevePacket::new_checked(&h[..]), Err(Error::Truncated { .. })));
        h[0] = 0x40; // version 1
        assert!(matches!(GenevePacket::new_checked(&h[..]), Err(Error::Malformed { .. })));
        // An option claiming 8 bytes of data in a 4-byte options area.
        let buf = [0x01, 0, 0x65, 0x58, 0, 0, 1, 0, 0, 1, 2, 2];
        let p = GenevePacket::new_checked(&buf[..]).unwrap();
        assert!(p.options().next().unwrap().is_err());
        assert!(encode_option(1, 1, &[1, 2, 3], &mut Vec::new()).is_err());
        assert!(encode_option(1, 1, &[0; 128], &mut Vec::new()).is_err());
    }
}
