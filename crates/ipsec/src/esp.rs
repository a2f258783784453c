//! ESP (RFC 4303) with AES-GCM-16 (RFC 4106): sealing and opening packets in place in the datapath's
//! buffers, sequence numbers and the anti-replay window. Nothing here allocates per packet.

use crate::crypto::{Gcm, ICV_LEN, IV_LEN};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// SPI and sequence number.
pub const HEADER_LEN: usize = 8;
/// Bytes in front of the payload: ESP header and IV.
pub const HEAD: usize = HEADER_LEN + IV_LEN;
/// Most bytes behind the payload: up to 3 bytes of padding, pad length, next header, ICV.
pub const TAIL_MAX: usize = 3 + 2 + ICV_LEN;
/// Sequence numbers in the anti-replay window (RFC 4303 §3.4.3 asks for at least 32, 64 recommended).
pub const REPLAY_WINDOW: u32 = 128;

/// Next-header values weft carries.
pub mod next {
    pub const IPV4: u8 = 4;
    pub const IPV6: u8 = 41;
    pub const UDP: u8 = 17;
    pub const GRE: u8 = 47;
}

/// Why a received ESP packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EspError {
    /// Too short to hold a header, IV, trailer and ICV.
    Truncated,
    /// A sequence number already seen, or left of the window.
    Replay,
    /// The ICV did not verify.
    Tampered,
    /// Decrypted, but the trailer makes no sense.
    BadTrailer,
}

/// Bytes the ESP packet for a `payload`-byte payload takes.
pub fn sealed_len(payload: usize) -> usize {
    let padded = (payload + 2).next_multiple_of(4);
    HEAD + padded + ICV_LEN
}

/// The sending half of a child SA.
#[derive(Debug)]
pub struct Outbound {
    pub spi: u32,
    gcm: Gcm,
    /// The last sequence number used (the first packet carries 1), shared by every worker that seals with
    /// this SA: a number, and so a GCM nonce, is never used twice.
    seq: Arc<AtomicU64>,
    pub packets: u64,
    pub bytes: u64,
}

impl Outbound {
    pub fn new(spi: u32, gcm: Gcm) -> Self {
        Self::sharing(spi, gcm, Default::default())
    }

    /// The sending half of an SA that other workers seal with too, all taking numbers from `seq`.
    pub fn sharing(spi: u32, gcm: Gcm, seq: Arc<AtomicU64>) -> Self {
        Outbound { spi, gcm, seq, packets: 0, bytes: 0 }
    }

    pub fn sequence(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Seals the packet in `buf`: its payload is at `buf[HEAD..HEAD + payload]`, and `buf` has room for
    /// `sealed_len(payload)` bytes. Writes the ESP header, IV, padding and trailer, encrypts in place and
    /// returns the packet's length; `None` when the 32-bit sequence number space is used up (the SA must be
    /// replaced; RFC 4303 §3.3.3 forbids cycling).
    pub fn seal(&mut self, buf: &mut [u8], payload: usize, next_header: u8) -> Option<usize> {
        let total = sealed_len(payload);
        if buf.len() < total {
            return None;
        }
        let n = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        if n > u64::from(u32::MAX) {
            return None;
        }
        let seq = n as u32;
        buf[..4].copy_from_slice(&self.spi.to_be_bytes());
        buf[4..8].copy_from_slice(&seq.to_be_bytes());
        // The IV is the 64-bit counter: unique per key, as GCM requires (RFC 4106 §3.1).
        let iv = n.to_be_bytes();
        buf[HEADER_LEN..HEAD].copy_from_slice(&iv);
        let end = total - ICV_LEN;
        let pad = end - 2 - (HEAD + payload);
        for (i, b) in buf[HEAD + payload..HEAD + payload + pad].iter_mut().enumerate() {
            *b = i as u8 + 1;
        }
        buf[end - 2] = pad as u8;
        buf[end - 1] = next_header;
        let (head, rest) = buf.split_at_mut(HEAD);
        let icv = self.gcm.seal(iv, &head[..HEADER_LEN], &mut rest[..end - HEAD]);
        buf[end..total].copy_from_slice(&icv);
        self.packets += 1;
        self.bytes += payload as u64;
        Some(total)
    }
}

/// The anti-replay window: the highest sequence number accepted and a bitmap of the ones below it.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReplayWindow {
    top: u32,
    bits: u128,
}

impl ReplayWindow {
    /// Whether `seq` may be new (checked before the ICV, so forged packets cost no decryption when old).
    pub fn check(&self, seq: u32) -> bool {
        if seq == 0 {
            return false;
        }
        if seq > self.top {
            return true;
        }
        let back = self.top - seq;
        back < REPLAY_WINDOW && self.bits & (1u128 << back) == 0
    }

    /// Marks `seq` seen (after its ICV verified).
    pub fn accept(&mut self, seq: u32) {
        if seq > self.top {
            let shift = seq - self.top;
            self.bits = if shift >= REPLAY_WINDOW { 0 } else { self.bits << shift };
            self.bits |= 1;
            self.top = seq;
        } else {
            self.bits |= 1u128 << (self.top - seq);
        }
    }
}

/// The receiving half of a child SA.
#[derive(Debug)]
pub struct Inbound {
    pub spi: u32,
    gcm: Gcm,
    window: ReplayWindow,
    pub packets: u64,
    pub bytes: u64,
    pub replayed: u64,
    pub tampered: u64,
}

impl Inbound {
    pub fn new(spi: u32, gcm: Gcm) -> Self {
        Inbound { spi, gcm, window: ReplayWindow::default(), packets: 0, bytes: 0, replayed: 0, tampered: 0 }
    }

    /// Opens the ESP packet `pkt` (from its SPI on) in place. Returns the next header and where the payload
    /// is in `pkt`.
    pub fn open(&mut self, pkt: &mut [u8]) -> Result<(u8, std::ops::Range<usize>), EspError> {
        if pkt.len() < HEAD + 2 + ICV_LEN {
            return Err(EspError::Truncated);
        }
        let seq = u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]);
        if !self.window.check(seq) {
            self.replayed += 1;
            return Err(EspError::Replay);
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&pkt[HEADER_LEN..HEAD]);
        let (head, rest) = pkt.split_at_mut(HEAD);
        let plain = match self.gcm.open(iv, &head[..HEADER_LEN], rest) {
            Ok(n) => n,
            Err(_) => {
                self.tampered += 1;
                return Err(EspError::Tampered);
            }
        };
        self.window.accept(seq);
        let end = HEAD + plain;
        let (pad, nh) = (usize::from(pkt[end - 2]), pkt[end - 1]);
        if pad + 2 > plain {
            return Err(EspError::BadTrailer);
        }
        let payload = HEAD..end - 2 - pad;
        self.packets += 1;
        self.bytes += payload.len() as u64;
        Ok((nh, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Outbound, Inbound) {
        let k = [3u8; 20];
        (Outbound::new(0x1234, Gcm::new(&k).unwrap()), Inbound::new(0x1234, Gcm::new(&k).unwrap()))
    }

    #[test]
    fn sealing_and_opening_allocate_nothing() {
        let (mut out, mut inb) = pair();
        let mut buf = vec![0u8; 2000];
        let (n, peak) = weft_sys::alloc_probe::peak_during(|| out.seal(&mut buf, 1400, next::UDP));
        assert_eq!(peak, 0);
        let n = n.unwrap();
        let (r, peak) = weft_sys::alloc_probe::peak_during(|| inb.open(&mut buf[..n]));
        assert!(r.is_ok());
        assert_eq!(peak, 0, "opening an ESP packet works in place");
    }

    #[test]
    fn seal_then_open() {
        let (mut o, mut i) = pair();
        for payload in [0usize, 1, 2, 3, 4, 100, 1450] {
            let mut buf = vec![0u8; 2000];
            for (k, b) in buf[HEAD..HEAD + payload].iter_mut().enumerate() {
                *b = k as u8;
            }
            let n = o.seal(&mut buf, payload, next::UDP).unwrap();
            assert_eq!(n, sealed_len(payload));
            assert_eq!((n - HEAD - ICV_LEN) % 4, 0);
            let (nh, r) = i.open(&mut buf[..n]).unwrap();
            assert_eq!(nh, next::UDP);
            assert_eq!(r.len(), payload);
            assert!(buf[r].iter().enumerate().all(|(k, b)| *b == k as u8));
        }
        assert_eq!(i.packets, 7);
    }

    #[test]
    fn replay_tamper_truncation() {
        let (mut o, mut i) = pair();
        let mut buf = vec![0u8; 200];
        let n = o.seal(&mut buf, 50, next::UDP).unwrap();
        let copy = buf.clone();
        assert!(i.open(&mut buf[..n]).is_ok());
        let mut again = copy.clone();
        assert_eq!(i.open(&mut again[..n]), Err(EspError::Replay));
        let mut b2 = vec![0u8; 200];
        let n2 = o.seal(&mut b2, 50, next::UDP).unwrap();
        let mut bad = b2.clone();
        bad[30] ^= 0x40;
        assert_eq!(i.open(&mut bad[..n2]), Err(EspError::Tampered));
        // The forged packet did not advance the window: the genuine one still opens.
        assert!(i.open(&mut b2[..n2]).is_ok());
        assert_eq!(i.open(&mut [0u8; 20][..]), Err(EspError::Truncated));
        assert_eq!((i.replayed, i.tampered), (1, 1));
    }

    #[test]
    fn window_accepts_reordering_inside_and_rejects_outside() {
        let mut w = ReplayWindow::default();
        assert!(!w.check(0));
        for s in [5u32, 3, 4, 1, 200] {
            assert!(w.check(s), "{s}");
            w.accept(s);
            assert!(!w.check(s));
        }
        assert!(w.check(199));
        assert!(w.check(73));
        assert!(!w.check(72), "left of a 128-packet window");
        assert!(!w.check(5));
    }
}
