//! The classic libpcap file format (microsecond and nanosecond variants, either byte order), streamed.

use crate::{need, Error, Result};

const MAGIC_US: u32 = 0xa1b2_c3d4;
const MAGIC_NS: u32 = 0xa1b2_3c4d;
pub const GLOBAL_HEADER_LEN: usize = 24;
pub const RECORD_HEADER_LEN: usize = 16;
pub const LINKTYPE_ETHERNET: u32 = 1;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;
/// Largest record accepted; longer ones are malformed (libpcap's own limit is 256 KiB).
pub const MAX_RECORD: usize = 262_144;

/// What the global header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PcapHeader {
    pub big_endian: bool,
    pub nanosecond: bool,
    pub snaplen: u32,
    pub linktype: u32,
}

impl PcapHeader {
    pub fn parse(b: &[u8]) -> Result<Self> {
        need("pcap", GLOBAL_HEADER_LEN, b.len())?;
        let le = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let (big_endian, nanosecond) = match le {
            MAGIC_US => (false, false),
            MAGIC_NS => (false, true),
            _ => match u32::from_be_bytes([b[0], b[1], b[2], b[3]]) {
                MAGIC_US => (true, false),
                MAGIC_NS => (true, true),
                _ => return Err(Error::Malformed { layer: "pcap", what: "unknown magic number" }),
            },
        };
        let h = PcapHeader { big_endian, nanosecond, snaplen: 0, linktype: 0 };
        Ok(PcapHeader { snaplen: h.u32_at(b, 16), linktype: h.u32_at(b, 20) & 0x0fff_ffff, ..h })
    }

    fn u32_at(&self, b: &[u8], at: usize) -> u32 {
        let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
        if self.big_endian {
            u32::from_be_bytes(a)
        } else {
            u32::from_le_bytes(a)
        }
    }

    /// Reads a record header: (seconds, sub-second nanoseconds, captured length, original length).
    pub fn parse_record(&self, b: &[u8]) -> Result<RecordHeader> {
        need("pcap record", RECORD_HEADER_LEN, b.len())?;
        let caplen = self.u32_at(b, 8) as usize;
        if caplen > MAX_RECORD {
            return Err(Error::Malformed { layer: "pcap record", what: "captured length over 256 KiB" });
        }
        let frac = self.u32_at(b, 4);
        Ok(RecordHeader {
            ts_sec: self.u32_at(b, 0),
            ts_nsec: if self.nanosecond { frac } else { frac.saturating_mul(1000) },
            caplen,
            origlen: self.u32_at(b, 12) as usize,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub ts_sec: u32,
    pub ts_nsec: u32,
    pub caplen: usize,
    pub origlen: usize,
}

/// Writes a little-endian microsecond global header for `linktype`.
pub fn write_global_header(out: &mut [u8; GLOBAL_HEADER_LEN], linktype: u32, snaplen: u32) {
    out[0..4].copy_from_slice(&MAGIC_US.to_le_bytes());
    out[4..6].copy_from_slice(&2u16.to_le_bytes());
    out[6..8].copy_from_slice(&4u16.to_le_bytes());
    out[8..16].fill(0);
    out[16..20].copy_from_slice(&snaplen.to_le_bytes());
    out[20..24].copy_from_slice(&linktype.to_le_bytes());
}

/// Writes a little-endian record header.
pub fn write_record_header(out: &mut [u8; RECORD_HEADER_LEN], ts_sec: u32, ts_usec: u32, caplen: u32, origlen: u32) {
    out[0..4].copy_from_slice(&ts_sec.to_le_bytes());
    out[4..8].copy_from_slice(&ts_usec.to_le_bytes());
    out[8..12].copy_from_slice(&caplen.to_le_bytes());
    out[12..16].copy_from_slice(&origlen.to_le_bytes());
}

/// Iterates over the records of a whole pcap file held in memory.
pub struct PcapRecords<'a> {
    header: PcapHeader,
    rest: &'a [u8],
}

impl<'a> PcapRecords<'a> {
    pub fn new(file: &'a [u8]) -> Result<Self> {
        let header = PcapHeader::parse(file)?;
        Ok(PcapRecords { header, rest: &file[GLOBAL_HEADER_LEN..] })
    }
    pub fn header(&self) -> PcapHeader {
        self.header
    }
}

impl<'a> Iterator for PcapRecords<'a> {
    type Item = Result<(RecordHeader, &'a [u8])>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let r = self.header.parse_record(self.rest).and_then(|h| {
            need("pcap record", RECORD_HEADER_LEN + h.caplen, self.rest.len())?;
            Ok(h)
        });
        match r {
            Ok(h) => {
                let data = &self.rest[RECORD_HEADER_LEN..RECORD_HEADER_LEN + h.caplen];
                self.rest = &self.rest[RECORD_HEADER_LEN + h.caplen..];
                Some(Ok((h, data)))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back() {
        let mut file = vec![0u8; GLOBAL_HEADER_LEN];
        write_global_header((&mut file[..]).try_into().unwrap(), LINKTYPE_ETHERNET, 65535);
        for i in 0..3u8 {
            let mut h = [0u8; RECORD_HEADER_LEN];
            write_record_header(&mut h, 100 + u32::from(i), 5, 3, 60);
            file.extend_from_slice(&h);
            file.extend_from_slice(&[i; 3]);
        }
        let recs = PcapRecords::new(&file).unwrap();
        assert_eq!(recs.header().linktype, LINKTYPE_ETHERNET);
        let all: Vec<_> = recs.map(|r| r.unwrap()).collect();
        assert_eq!(all.len(), 3);
        assert_eq!(all[2].0.ts_sec, 102);
        assert_eq!(all[2].0.ts_nsec, 5000);
        assert_eq!(all[2].1, &[2, 2, 2]);
    }

    #[test]
    fn truncated_record_is_an_error_not_a_panic() {
        let mut file = vec![0u8; GLOBAL_HEADER_LEN];
        write_global_header((&mut file[..]).try_into().unwrap(), LINKTYPE_ETHERNET, 65535);
        let mut h = [0u8; RECORD_HEADER_LEN];
        write_record_header(&mut h, 1, 0, 100, 100);
        file.extend_from_slice(&h);
        file.extend_from_slice(&[0; 10]);
        let mut recs = PcapRecords::new(&file).unwrap();
        assert!(recs.next().unwrap().is_err());
        assert!(recs.next().is_none());
        assert!(PcapRecords::new(&file[..10]).is_err());
    }
}
