//! Reading capture files as a stream: classic pcap (either byte order, micro- or nanosecond) and pcapng
//! (section header, interface description, enhanced and simple packet blocks; other blocks are skipped).
//!
//! The reader pulls from any `std::io::Read` into one reusable buffer, so memory does not grow with the file.

use crate::pcap::{PcapHeader, GLOBAL_HEADER_LEN, MAX_RECORD, RECORD_HEADER_LEN};
use crate::Error;
use std::io::Read;

const PCAPNG_SHB: u32 = 0x0a0d_0d0a;
const PCAPNG_IDB: u32 = 1;
const PCAPNG_OPB: u32 = 2;
const PCAPNG_SPB: u32 = 3;
const PCAPNG_EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Longest pcapng block accepted.
const MAX_BLOCK: usize = MAX_RECORD + 4096;

/// One packet of a capture file, borrowed from the reader's buffer until the next call.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    pub linktype: u32,
    /// Nanoseconds since the epoch.
    pub ts_nanos: u64,
    pub orig_len: usize,
    pub data: &'a [u8],
}

#[derive(Debug, Clone, Copy)]
struct Iface {
    linktype: u32,
    /// Timestamp units per second.
    units_per_sec: u64,
}

enum Format {
    Pcap(PcapHeader),
    Pcapng { big_endian: bool, ifaces: Vec<Iface> },
}

/// A capture file being read.
pub struct CaptureReader<R: Read> {
    src: R,
    format: Format,
    buf: Vec<u8>,
    done: bool,
}

/// Why reading stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Format(#[from] Error),
}

fn u16_at(b: &[u8], at: usize, be: bool) -> u16 {
    let a = [b[at], b[at + 1]];
    if be {
        u16::from_be_bytes(a)
    } else {
        u16::from_le_bytes(a)
    }
}

fn u32_at(b: &[u8], at: usize, be: bool) -> u32 {
    let a = [b[at], b[at + 1], b[at + 2], b[at + 3]];
    if be {
        u32::from_be_bytes(a)
    } else {
        u32::from_le_bytes(a)
    }
}

/// Replaces `buf`'s contents with up to `n` bytes from `src` and returns how many came. The buffer grows with
/// what actually arrives, so a length field announcing more than the file holds allocates nothing extra.
fn read_up_to<R: Read>(src: &mut R, buf: &mut Vec<u8>, n: usize) -> std::io::Result<usize> {
    buf.clear();
    Read::take(&mut *src, n as u64).read_to_end(buf)
}

/// Reads exactly `buf.len()` bytes; `Ok(false)` on a clean end of file before the first byte.
fn fill<R: Read>(src: &mut R, buf: &mut [u8]) -> std::result::Result<bool, ReadError> {
    let mut got = 0;
    while got < buf.len() {
        match src.read(&mut buf[got..]) {
            Ok(0) if got == 0 => return Ok(false),
            Ok(0) => {
                return Err(Error::Truncated { layer: "capture file", needed: buf.len(), have: got }.into());
            }
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

impl<R: Read> CaptureReader<R> {
    /// Reads the file header (pcap) or first section header (pcapng).
    pub fn new(mut src: R) -> std::result::Result<Self, ReadError> {
        let mut head = [0u8; GLOBAL_HEADER_LEN];
        if !fill(&mut src, &mut head[..4])? {
            return Err(Error::Truncated { layer: "capture file", needed: 4, have: 0 }.into());
        }
        let magic = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if magic == PCAPNG_SHB {
            let mut r = CaptureReader {
                src,
                format: Format::Pcapng { big_endian: false, ifaces: Vec::new() },
                buf: Vec::new(),
                done: false,
            };
            r.read_shb_rest()?;
            return Ok(r);
        }
        if !fill(&mut src, &mut head[4..])? {
            return Err(Error::Truncated { layer: "pcap", needed: GLOBAL_HEADER_LEN, have: 4 }.into());
        }
        let header = PcapHeader::parse(&head)?;
        Ok(CaptureReader { src, format: Format::Pcap(header), buf: Vec::new(), done: false })
    }

    /// The link type of a classic pcap file, or of the first interface of a pcapng one (once seen).
    pub fn linktype(&self) -> Option<u32> {
        match &self.format {
            Format::Pcap(h) => Some(h.linktype),
            Format::Pcapng { ifaces, .. } => ifaces.first().map(|i| i.linktype),
        }
    }

    /// Reads the rest of a section header block whose 4-byte type was just read.
    fn read_shb_rest(&mut self) -> std::result::Result<(), ReadError> {
        let mut h = [0u8; 8];
        if !fill(&mut self.src, &mut h)? {
            return Err(Error::Truncated { layer: "pcapng", needed: 8, have: 0 }.into());
        }
        let big_endian = match u32::from_le_bytes([h[4], h[5], h[6], h[7]]) {
            BYTE_ORDER_MAGIC => false,
            m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
            _ => return Err(Error::Malformed { layer: "pcapng", what: "bad byte-order magic" }.into()),
        };
        let total = u32_at(&h, 0, big_endian) as usize;
        if !(28..=MAX_BLOCK).contains(&total) || !total.is_multiple_of(4) {
            return Err(Error::Malformed { layer: "pcapng", what: "bad section header length" }.into());
        }
        self.buf.resize(total - 12, 0);
        if !fill(&mut self.src, &mut self.buf)? {
            return Err(Error::Truncated { layer: "pcapng", needed: total, have: 12 }.into());
        }
        self.format = Format::Pcapng { big_endian, ifaces: Vec::new() };
        Ok(())
    }

    /// The next packet, `None` at the end of the file. After an error the reader stops.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<std::result::Result<Record<'_>, ReadError>> {
        if self.done {
            return None;
        }
        let r = match self.format {
            Format::Pcap(_) => self.next_pcap(),
            Format::Pcapng { .. } => self.next_pcapng(),
        };
        match r {
            Ok(Some((linktype, ts_nanos, orig_len, start, len))) => {
                Some(Ok(Record { linktype, ts_nanos, orig_len, data: &self.buf[start..start + len] }))
            }
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }

    #[allow(clippy::type_complexity)]
    fn next_pcap(&mut self) -> std::result::Result<Option<(u32, u64, usize, usize, usize)>, ReadError> {
        let Format::Pcap(header) = self.format else { unreachable!("pcap reader on pcapng") };
        let mut h = [0u8; RECORD_HEADER_LEN];
        if !fill(&mut self.src, &mut h)? {
            return Ok(None);
        }
        let rec = header.parse_record(&h)?;
        let got = read_up_to(&mut self.src, &mut self.buf, rec.caplen)?;
        if got < rec.caplen {
            return Err(Error::Truncated { layer: "pcap record", needed: rec.caplen, have: got }.into());
        }
        let ts = u64::from(rec.ts_sec) * 1_000_000_000 + u64::from(rec.ts_nsec);
        Ok(Some((header.linktype, ts, rec.origlen, 0, rec.caplen)))
    }

    #[allow(clippy::type_complexity)]
    fn next_pcapng(&mut self) -> std::result::Result<Option<(u32, u64, usize, usize, usize)>, ReadError> {
        loop {
            let Format::Pcapng { big_endian: be, .. } = self.format else { unreachable!("pcapng reader on pcap") };
            let mut h = [0u8; 8];
            if !fill(&mut self.src, &mut h[..4])? {
                return Ok(None);
            }
            if u32::from_le_bytes([h[0], h[1], h[2], h[3]]) == PCAPNG_SHB {
                self.read_shb_rest()?;
                continue;
            }
            if !fill(&mut self.src, &mut h[4..])? {
                return Err(Error::Truncated { layer: "pcapng block", needed: 8, have: 4 }.into());
            }
            let kind = u32_at(&h, 0, be);
            let total = u32_at(&h, 4, be) as usize;
            if !(12..=MAX_BLOCK).contains(&total) || !total.is_multiple_of(4) {
                return Err(Error::Malformed { layer: "pcapng block", what: "bad block length" }.into());
            }
            // Body and trailing length.
            let got = read_up_to(&mut self.src, &mut self.buf, total - 8)?;
            if got < total - 8 {
                return Err(Error::Truncated { layer: "pcapng block", needed: total, have: 8 + got }.into());
            }
            let body_len = total - 12;
            let Format::Pcapng { ifaces, .. } = &mut self.format else { unreachable!() };
            match kind {
                PCAPNG_IDB => {
                    if body_len < 8 {
                        return Err(Error::Malformed { layer: "pcapng interface", what: "too short" }.into());
                    }
                    let linktype = u32::from(u16_at(&self.buf, 0, be));
                    ifaces.push(Iface { linktype, units_per_sec: tsresol(&self.buf[8..body_len], be) });
                }
                PCAPNG_EPB | PCAPNG_OPB => {
                    if body_len < 20 {
                        return Err(Error::Malformed { layer: "pcapng packet", what: "too short" }.into());
                    }
                    let iface = if kind == PCAPNG_EPB {
                        u32_at(&self.buf, 0, be) as usize
                    } else {
                        usize::from(u16_at(&self.buf, 0, be))
                    };
                    let Some(i) = ifaces.get(iface).copied() else {
                        return Err(Error::Malformed { layer: "pcapng packet", what: "unknown interface" }.into());
                    };
                    let ts = (u64::from(u32_at(&self.buf, 4, be)) << 32) | u64::from(u32_at(&self.buf, 8, be));
                    let caplen = u32_at(&self.buf, 12, be) as usize;
                    let orig = u32_at(&self.buf, 16, be) as usize;
                    if 20 + caplen > body_len {
                        return Err(Error::Malformed { layer: "pcapng packet", what: "data past the block" }.into());
                    }
                    let nanos = if i.units_per_sec == 1_000_000_000 {
                        ts
                    } else {
                        ((u128::from(ts) * 1_000_000_000) / u128::from(i.units_per_sec)) as u64
                    };
                    return Ok(Some((i.linktype, nanos, orig, 20, caplen)));
                }
                PCAPNG_SPB => {
                    let Some(i) = ifaces.first().copied() else {
                        return Err(Error::Malformed { layer: "pcapng packet", what: "no interface" }.into());
                    };
                    if body_len < 4 {
                        return Err(Error::Malformed { layer: "pcapng packet", what: "too short" }.into());
                    }
                    let orig = u32_at(&self.buf, 0, be) as usize;
                    let caplen = orig.min(body_len - 4);
                    return Ok(Some((i.linktype, 0, orig, 4, caplen)));
                }
                _ => {}
            }
        }
    }
}

/// Timestamp units per second from an interface's options (`if_tsresol`, code 9; default microseconds).
fn tsresol(mut opts: &[u8], be: bool) -> u64 {
    while opts.len() >= 4 {
        let code = u16_at(opts, 0, be);
        let len = usize::from(u16_at(opts, 2, be));
        if code == 0 || 4 + len > opts.len() {
            break;
        }
        if code == 9 && len >= 1 {
            let v = opts[4];
            let exp = u32::from(v & 0x7f).min(63);
            return if v & 0x80 == 0 { 10u64.checked_pow(exp).unwrap_or(u64::MAX) } else { 1u64 << exp };
        }
        opts = &opts[(4 + len + 3) & !3..];
    }
    1_000_000
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(kind: u32, body: &[u8]) -> Vec<u8> {
        let total = (12 + body.len()) as u32;
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&total.to_le_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(&total.to_le_bytes());
        b
    }

    #[test]
    fn pcapng_with_nanosecond_interface() {
        let mut shb = BYTE_ORDER_MAGIC.to_le_bytes().to_vec();
        shb.extend_from_slice(&[1, 0, 0, 0]);
        shb.extend_from_slice(&(-1i64).to_le_bytes());
        let mut file = block(PCAPNG_SHB, &shb);
        // IDB: linktype 1, snaplen, if_tsresol=9 (ns), end of options.
        let mut idb = vec![1, 0, 0, 0, 0, 0, 4, 0];
        idb.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0]);
        file.extend(block(PCAPNG_IDB, &idb));
        file.extend(block(99, &[0; 8])); // an unknown block is skipped
        let ts: u64 = 1_700_000_000_123_456_789;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&3u32.to_le_bytes());
        epb.extend_from_slice(&60u32.to_le_bytes());
        epb.extend_from_slice(&[7, 8, 9, 0]);
        file.extend(block(PCAPNG_EPB, &epb));
        let mut r = CaptureReader::new(&file[..]).unwrap();
        let rec = r.next().unwrap().unwrap();
        assert_eq!((rec.linktype, rec.ts_nanos, rec.orig_len, rec.data), (1, ts, 60, &[7u8, 8, 9][..]));
        assert!(r.next().is_none());
        // Every truncation is an error or a clean end, never a panic.
        for n in 0..file.len() {
            if let Ok(mut r) = CaptureReader::new(&file[..n]) {
                while let Some(Ok(_)) = r.next() {}
            }
        }
    }

    #[test]
    fn classic_pcap_streams() {
        let mut file = vec![0u8; GLOBAL_HEADER_LEN];
        crate::pcap::write_global_header((&mut file[..]).try_into().unwrap(), 1, 65535);
        for i in 0..3u8 {
            let mut h = [0u8; RECORD_HEADER_LEN];
            crate::pcap::write_record_header(&mut h, 10, 5, 2, 2);
            file.extend_from_slice(&h);
            file.extend_from_slice(&[i, i]);
        }
        let mut r = CaptureReader::new(&file[..]).unwrap();
        let mut seen = 0;
        while let Some(rec) = r.next() {
            let rec = rec.unwrap();
            assert_eq!((rec.ts_nanos, rec.data), (10_000_005_000, &[seen as u8, seen as u8][..]));
            seen += 1;
        }
        assert_eq!(seen, 3);
        let mut short = CaptureReader::new(&file[..file.len() - 1]).unwrap();
        assert!(short.next().unwrap().is_ok() && short.next().unwrap().is_ok());
        assert!(short.next().unwrap().is_err());
    }

    #[test]
    fn length_fields_allocate_only_what_the_file_holds() {
        // A pcap record and a pcapng block each announcing the largest size allowed, followed by 10 bytes.
        let mut pcap = vec![0u8; GLOBAL_HEADER_LEN];
        crate::pcap::write_global_header((&mut pcap[..]).try_into().unwrap(), 1, 65535);
        let mut rec = [0u8; RECORD_HEADER_LEN];
        crate::pcap::write_record_header(&mut rec, 0, 0, MAX_RECORD as u32, MAX_RECORD as u32);
        pcap.extend_from_slice(&rec);
        pcap.extend_from_slice(&[0; 10]);
        let mut ng =
            block(PCAPNG_SHB, &[0x4d, 0x3c, 0x2b, 0x1a, 1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
        ng.extend_from_slice(&PCAPNG_EPB.to_le_bytes());
        ng.extend_from_slice(&(MAX_BLOCK as u32 & !3).to_le_bytes());
        ng.extend_from_slice(&[0; 10]);
        for file in [pcap, ng] {
            let (r, peak) = weft_sys::alloc_probe::peak_during(|| {
                let mut reader = CaptureReader::new(&file[..]).unwrap();
                reader.next().map(|r| r.is_err())
            });
            assert_eq!(r, Some(true), "a cut record is an error");
            assert!(peak < 16 * 1024, "{peak} bytes allocated for a {}-byte file", file.len());
        }
    }
}
