//! OpenFlow meters in the core: one token bucket per band, shared by every worker that runs the pipeline (a
//! meter limits the bridge's traffic, not each worker's share of it), kept with atomics — no lock on the
//! packet path.
//!
//! Tokens are counted so that a rate of R (kilobits or packets a second) adds R tokens a nanosecond: a
//! token is a millionth of a bit, or a billionth of a packet. A packet takes its size in tokens from every
//! band's bucket that holds enough; the bands whose buckets do not are exceeded, and the exceeded band with
//! the highest rate applies to it (OpenFlow 1.3 §5.7). A bucket holds at most its band's burst (or one
//! second at its rate) and starts full.

use super::pipeline::{BandRt, MeterRt};
use super::*;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Tokens in a kilobit, or in a packet.
pub const UNIT: u64 = 1_000_000_000;
/// Tokens in a byte (kilobit meters).
const BYTE: u64 = 8 * UNIT / 1000;

/// A band's bucket size in tokens: its burst size when the meter has one (OpenFlow's `burst` flag);
/// otherwise a tenth of a second at its rate — OpenFlow asks for no burst, but a bucket smaller than a frame
/// would pass nothing — and never less than one 64 KiB offloaded frame (64 packets for a packet meter:
/// such a frame is at most that many segments), so that TCP with segmentation offload still flows.
pub fn depth(rate: u32, burst: Option<u32>, pktps: bool) -> u64 {
    match burst {
        Some(b) => u64::from(b) * UNIT,
        None => {
            let floor = if pktps { 64 * UNIT } else { 65_535 * BYTE };
            (u64::from(rate) * UNIT / 10).max(floor)
        }
    }
}

/// What a meter's buckets hold and what it counted; lives across pipelines while the meter is unchanged.
#[derive(Debug)]
pub struct MeterState {
    /// When the buckets were last filled.
    last: AtomicU64,
    buckets: Box<[AtomicU64]>,
    packets: AtomicU64,
    bytes: AtomicU64,
    band_packets: Box<[AtomicU64]>,
    band_bytes: Box<[AtomicU64]>,
}

/// What a meter counted: packets and bytes in, and per band the packets and bytes it applied to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterCounts {
    pub packets: u64,
    pub bytes: u64,
    pub bands: Vec<(u64, u64)>,
}

impl MeterState {
    /// Full buckets of these depths (in tokens).
    pub fn new(depths: &[u64]) -> MeterState {
        let zeros = || depths.iter().map(|_| AtomicU64::new(0)).collect::<Box<[_]>>();
        MeterState {
            last: AtomicU64::new(0),
            buckets: depths.iter().map(|&d| AtomicU64::new(d)).collect(),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            band_packets: zeros(),
            band_bytes: zeros(),
        }
    }

    pub fn counts(&self) -> MeterCounts {
        MeterCounts {
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            bands: self
                .band_packets
                .iter()
                .zip(&*self.band_bytes)
                .map(|(p, b)| (p.load(Relaxed), b.load(Relaxed)))
                .collect(),
        }
    }
}

impl MeterRt {
    /// Meters one packet of `bytes` bytes that is `segments` packets on the wire (an offloaded frame is
    /// several), at `now`: the band it exceeds, if any.
    pub fn meter(&self, now: Nanos, bytes: u64, segments: u64) -> Option<&BandRt> {
        let s = &*self.state;
        // Whoever moves the clock on fills the buckets for the time that passed (once, whichever worker).
        let mut prev = s.last.load(Relaxed);
        let elapsed = loop {
            if prev >= now {
                break 0;
            }
            match s.last.compare_exchange_weak(prev, now, Relaxed, Relaxed) {
                Ok(_) => break now - prev,
                Err(seen) => prev = seen,
            }
        };
        if elapsed > 0 {
            for (b, bucket) in self.bands.iter().zip(&*s.buckets) {
                let add = elapsed.saturating_mul(b.rate);
                let _ = bucket.fetch_update(Relaxed, Relaxed, |v| Some(v.saturating_add(add).min(b.depth)));
            }
        }
        s.packets.fetch_add(segments, Relaxed);
        s.bytes.fetch_add(bytes, Relaxed);
        let cost = if self.pktps { segments.saturating_mul(UNIT) } else { bytes.saturating_mul(BYTE) };
        let mut hit: Option<usize> = None;
        for (i, (b, bucket)) in self.bands.iter().zip(&*s.buckets).enumerate() {
            if bucket.fetch_update(Relaxed, Relaxed, |v| v.checked_sub(cost)).is_err()
                && hit.is_none_or(|h| b.rate > self.bands[h].rate)
            {
                hit = Some(i);
            }
        }
        let i = hit?;
        s.band_packets[i].fetch_add(segments, Relaxed);
        s.band_bytes[i].fetch_add(bytes, Relaxed);
        Some(&self.bands[i])
    }
}

/// A DSCP with its drop precedence raised by `levels` (RFC 2597's assured-forwarding code points, whose
/// precedence is 1 to 3; any other code point has no drop precedence to raise and stays as it is).
pub fn remark_dscp(dscp: u8, levels: u8) -> u8 {
    let class = dscp >> 3;
    let precedence = (dscp >> 1) & 3;
    if !(1..=4).contains(&class) || dscp & 1 != 0 || precedence == 0 {
        return dscp;
    }
    (dscp & !6) | (precedence.saturating_add(levels).min(3) << 1)
}

impl Tables {
    /// Runs `meter:ID` on the packet: false when a band dropped it (nothing more runs for it).
    pub(super) fn run_meter<O: Observer>(&mut self, r: &mut Run<'_, '_, O>, st: &mut ActState, id: u32) -> bool {
        let b = &r.pipe.bridges[r.bridge];
        let Ok(i) = b.meters.binary_search_by_key(&id, |m| m.id) else { return true };
        let m = &b.meters[i];
        // The frame's size on the wire (with its 802.1Q tag), and how many frames an offloaded one becomes.
        let bytes = st.data.len() as u64 + if st.tci != 0 { 4 } else { 0 };
        let segments = match st.gso {
            Some(g) if g.gso_size > 0 => {
                (bytes.saturating_sub(u64::from(g.hdr_len))).div_ceil(u64::from(g.gso_size)).max(1)
            }
            _ => 1,
        };
        let Some(band) = m.meter(r.now, bytes, segments) else { return true };
        match band.remark {
            None => {
                r.obs.on(|| note(format!("meter {id}: over {} {}, dropped", band.rate, m.unit())));
                self.counters[usize::from(r.in_port.0)].drop(DropReason::Meter);
                st.exit = true;
                false
            }
            Some(levels) if st.hdr.ip => {
                let tos = st.key.get(slot::NW_TOS) as u8;
                let dscp = remark_dscp(tos >> 2, levels);
                r.obs.on(|| note(format!("meter {id}: over {} {}, DSCP {} -> {dscp}", band.rate, m.unit(), tos >> 2)));
                if dscp == tos >> 2 {
                    return true;
                }
                st.key.put(slot::NW_TOS, u128::from(dscp << 2));
                self.sync_field(r, st, slot::NW_TOS)
            }
            Some(_) => true,
        }
    }
}

impl MeterRt {
    fn unit(&self) -> &'static str {
        if self.pktps {
            "pktps"
        } else {
            "kbps"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meter(pktps: bool, bands: &[(u64, u64, Option<u8>)]) -> MeterRt {
        let bands: Vec<BandRt> =
            bands.iter().map(|&(rate, burst, remark)| BandRt { rate, depth: burst * UNIT, remark }).collect();
        let depths: Vec<u64> = bands.iter().map(|b| b.depth).collect();
        MeterRt { id: 1, pktps, bands, state: Arc::new(MeterState::new(&depths)) }
    }

    #[test]
    fn a_packet_meter_passes_its_rate_and_burst() {
        // 100 packets a second, a burst of 10: of 1000 packets offered at 1000 a second, the first 10 pass on
        // the full bucket, then one in ten.
        let m = meter(true, &[(100, 10, None)]);
        let passed = (0..1000u64).filter(|i| m.meter(1 + i * 1_000_000, 100, 1).is_none()).count();
        assert!((108..=111).contains(&passed), "{passed} passed");
        let c = m.state.counts();
        assert_eq!((c.packets, c.bands[0].0), (1000, 1000 - passed as u64));
    }

    #[test]
    fn a_kilobit_meter_counts_bytes_and_the_highest_exceeded_band_applies() {
        // 1000 kbit/s = 125 000 bytes a second; 1500-byte frames at 250 a second (3 Mbit/s) for ten seconds.
        let m = meter(false, &[(1000, 1000, Some(1)), (2000, 2000, None)]);
        let (mut pass, mut remark, mut drop) = (0i64, 0i64, 0i64);
        for i in 0..2500u64 {
            match m.meter(1 + i * 4_000_000, 1500, 1).map(|b| b.remark) {
                None => pass += 1,
                Some(Some(_)) => remark += 1,
                Some(None) => drop += 1,
            }
        }
        // A packet takes tokens from every bucket that has them: what fits the 1000 kbit band (1 Mbit/s and
        // its first second's burst: 11 Mbit) passes clean, what fits only the 2000 kbit one (22 Mbit in
        // all) is remarked, the rest dropped.
        assert!((pass - 11_000_000 / 12_000i64).abs() <= 5, "{pass} passed");
        assert!((pass + remark - 22_000_000 / 12_000i64).abs() <= 5, "{remark} remarked");
        assert_eq!(pass + remark + drop, 2500);
        // An offloaded frame of 10 segments takes 10 packets' tokens from a packet meter.
        let m = meter(true, &[(1_000_000, 5, None)]);
        assert!(m.meter(1, 15_000, 10).is_some(), "10 packets do not fit a burst of 5");
        assert!(m.meter(1, 4_500, 3).is_none());
    }

    #[test]
    fn a_band_without_a_burst_holds_a_tenth_of_a_second_and_at_least_a_big_frame() {
        assert_eq!(depth(1000, Some(30), false), 30 * UNIT, "the burst size, when given");
        assert_eq!(depth(100_000, None, false), 10_000 * UNIT, "100 Mbit/s: 10 Mbit");
        assert_eq!(depth(1000, None, false), 65_535 * BYTE, "1 Mbit/s: one 64 KiB frame, not 100 kbit");
        assert_eq!(depth(10_000, None, true), 1000 * UNIT);
        assert_eq!(depth(100, None, true), 64 * UNIT);
        // What a bucket of that size lets through: the biggest offloaded frame.
        let m = MeterRt {
            id: 1,
            pktps: false,
            bands: vec![BandRt { rate: 1000, depth: depth(1000, None, false), remark: None }],
            state: Arc::new(MeterState::new(&[depth(1000, None, false)])),
        };
        assert!(m.meter(1, 65_535, 45).is_none());
    }

    #[test]
    fn dscp_remarking_raises_assured_forwarding_drop_precedence() {
        assert_eq!(remark_dscp(18, 1), 20); // AF21 -> AF22
        assert_eq!(remark_dscp(10, 2), 14); // AF11 -> AF13
        assert_eq!(remark_dscp(38, 1), 38); // AF43 stays: the highest precedence
        assert_eq!(remark_dscp(46, 1), 46); // EF has none
        assert_eq!(remark_dscp(0, 1), 0);
        assert_eq!(remark_dscp(8, 1), 8); // CS1
    }
}
