//! OpenFlow meters (OpenFlow 1.3 §5.7): a flow's `meter:N` instruction measures the rate of the packets that
//! reach it and, past a band's rate, applies the band — `drop` discards the packet, `dscp_remark` raises the
//! drop precedence of its IP DSCP. Rates are in kilobits (1000 bits) or packets a second; with the `burst`
//! flag a band's burst size is how far above the rate a burst may go (without it, or with 0, the datapath
//! allows a tenth of a second at the rate, and at least one 64 KiB frame: see the core's `meter::depth`).
//! Meters belong to a bridge's configuration (they survive restarts with the flows and groups); METER_MOD
//! changes them, one configuration transaction each.

use crate::ofp::OfError;
use serde::{Deserialize, Serialize};
use weft_wire::openflow::error;

/// OFPM_MAX: the largest meter id a flow may use; OFPM_ALL names every meter (in a delete or a request).
pub const MAX: u32 = 0xffff_0000;
pub const ALL: u32 = 0xffff_ffff;
/// Meters one bridge may hold, bands one meter may have.
pub const MAX_METERS: usize = 65_536;
pub const MAX_BANDS: usize = 8;

/// METER_MOD flags.
pub mod flags {
    pub const KBPS: u16 = 1;
    pub const PKTPS: u16 = 2;
    pub const BURST: u16 = 4;
    pub const STATS: u16 = 8;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum BandType {
    Drop,
    /// Raises the drop precedence of the packet's DSCP by this many levels.
    DscpRemark(u8),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Band {
    pub kind: BandType,
    /// Kilobits or packets a second (by the meter's flags).
    pub rate: u32,
    /// Kilobits or packets, when the meter has the `burst` flag.
    pub burst: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
    pub id: u32,
    /// As the controller gave them (kbps or pktps, burst, stats).
    pub flags: u16,
    pub bands: Vec<Band>,
}

impl Meter {
    /// Rates in packets a second (else kilobits a second).
    pub fn pktps(&self) -> bool {
        self.flags & flags::PKTPS != 0
    }

    /// A band's burst size, if the meter has one: the `burst` flag and a size other than 0.
    pub fn burst(&self, b: &Band) -> Option<u32> {
        (self.flags & flags::BURST != 0 && b.burst != 0).then_some(b.burst)
    }
}

/// METER_MOD's commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Add,
    Modify,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterMod {
    pub command: Command,
    pub meter: Meter,
}

const FAILED: u16 = error::METER_MOD_FAILED;

/// Decodes an OpenFlow 1.3 METER_MOD body (after the header) and checks it as OpenFlow and Open vSwitch do.
pub fn parse_meter_mod(body: &[u8]) -> Result<MeterMod, OfError> {
    use error::meter as code;
    if body.len() < 8 {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let command = match u16::from_be_bytes([body[0], body[1]]) {
        0 => Command::Add,
        1 => Command::Modify,
        2 => Command::Delete,
        _ => return Err((FAILED, code::BAD_COMMAND)),
    };
    let id = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    if command == Command::Delete {
        return Ok(MeterMod { command, meter: Meter { id, flags: 0, bands: Vec::new() } });
    }
    let fl = u16::from_be_bytes([body[2], body[3]]);
    if fl & !0xf != 0 || (fl & flags::KBPS != 0 && fl & flags::PKTPS != 0) {
        return Err((FAILED, code::BAD_FLAGS));
    }
    // The special meters (slow path, controller) are not kept: weft has no slow path and does not meter
    // packet-ins.
    if id == 0 || id > MAX {
        return Err((FAILED, code::INVALID_METER));
    }
    let mut bands = Vec::new();
    let mut rest = &body[8..];
    while !rest.is_empty() {
        if rest.len() < 16 || u16::from_be_bytes([rest[2], rest[3]]) != 16 {
            return Err((error::BAD_REQUEST, error::BAD_LEN));
        }
        let kind = match u16::from_be_bytes([rest[0], rest[1]]) {
            1 => BandType::Drop,
            2 => BandType::DscpRemark(rest[12]),
            _ => return Err((FAILED, code::BAD_BAND)),
        };
        let rate = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if rate == 0 {
            return Err((FAILED, code::BAD_RATE));
        }
        bands.push(Band { kind, rate, burst: u32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]) });
        rest = &rest[16..];
    }
    if bands.len() > MAX_BANDS {
        return Err((FAILED, code::OUT_OF_BANDS));
    }
    Ok(MeterMod { command, meter: Meter { id, flags: fl, bands } })
}

/// A meter's bands as METER_MOD and METER_CONFIG carry them.
fn put_bands(out: &mut Vec<u8>, m: &Meter) {
    for b in &m.bands {
        let (kind, prec) = match b.kind {
            BandType::Drop => (1u16, 0),
            BandType::DscpRemark(p) => (2, p),
        };
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&16u16.to_be_bytes());
        out.extend_from_slice(&b.rate.to_be_bytes());
        out.extend_from_slice(&b.burst.to_be_bytes());
        out.extend_from_slice(&[prec, 0, 0, 0]);
    }
}

/// One METER_CONFIG reply entry: the meter as it was given.
pub fn put_meter_config(out: &mut Vec<u8>, m: &Meter) {
    let len = 8 + 16 * m.bands.len();
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&m.flags.to_be_bytes());
    out.extend_from_slice(&m.id.to_be_bytes());
    put_bands(out, m);
}

/// A METER_MOD body (for tests and tools that speak to weft).
pub fn put_meter_mod(out: &mut Vec<u8>, command: Command, m: &Meter) {
    let c: u16 = match command {
        Command::Add => 0,
        Command::Modify => 1,
        Command::Delete => 2,
    };
    out.extend_from_slice(&c.to_be_bytes());
    out.extend_from_slice(&m.flags.to_be_bytes());
    out.extend_from_slice(&m.id.to_be_bytes());
    put_bands(out, m);
}

/// What a meter counted (METER stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeterStats {
    pub id: u32,
    /// Flows that use it.
    pub flows: u32,
    pub packets: u64,
    pub bytes: u64,
    /// Since it was added (or last changed).
    pub duration: std::time::Duration,
    /// Per band: (packets, bytes) it applied to.
    pub bands: Vec<(u64, u64)>,
}

/// One METER stats reply entry.
pub fn put_meter_stats(out: &mut Vec<u8>, s: &MeterStats) {
    out.extend_from_slice(&s.id.to_be_bytes());
    out.extend_from_slice(&((40 + 16 * s.bands.len()) as u16).to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    out.extend_from_slice(&s.flows.to_be_bytes());
    out.extend_from_slice(&s.packets.to_be_bytes());
    out.extend_from_slice(&s.bytes.to_be_bytes());
    out.extend_from_slice(&(s.duration.as_secs() as u32).to_be_bytes());
    out.extend_from_slice(&s.duration.subsec_nanos().to_be_bytes());
    for (p, b) in &s.bands {
        out.extend_from_slice(&p.to_be_bytes());
        out.extend_from_slice(&b.to_be_bytes());
    }
}

/// METER_FEATURES: both band types, every flag, [`MAX_BANDS`] bands, no colours.
pub fn put_meter_features(out: &mut Vec<u8>) {
    out.extend_from_slice(&(MAX_METERS as u32).to_be_bytes());
    out.extend_from_slice(&((1u32 << 1) | (1 << 2)).to_be_bytes()); // drop, dscp_remark
    out.extend_from_slice(&0xfu32.to_be_bytes()); // kbps, pktps, burst, stats
    out.extend_from_slice(&[MAX_BANDS as u8, 0, 0, 0]);
}

impl std::fmt::Display for Meter {
    /// As `ovs-ofctl -O OpenFlow13 dump-meters` prints a meter (bands on lines of their own).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "meter={} ", self.id)?;
        for (bit, name) in
            [(flags::KBPS, "kbps"), (flags::PKTPS, "pktps"), (flags::BURST, "burst"), (flags::STATS, "stats")]
        {
            if self.flags & bit != 0 {
                write!(f, "{name} ")?;
            }
        }
        f.write_str("bands=")?;
        for b in &self.bands {
            let name = match b.kind {
                BandType::Drop => "drop",
                BandType::DscpRemark(_) => "dscp_remark",
            };
            write!(f, "\ntype={name} rate={}", b.rate)?;
            if self.flags & flags::BURST != 0 {
                write!(f, " burst_size={}", b.burst)?;
            }
            if let BandType::DscpRemark(p) = b.kind {
                write!(f, " prec_level={p}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn band(kind: u16, rate: u32, burst: u32, prec: u8) -> Vec<u8> {
        let mut b = kind.to_be_bytes().to_vec();
        b.extend_from_slice(&16u16.to_be_bytes());
        b.extend_from_slice(&rate.to_be_bytes());
        b.extend_from_slice(&burst.to_be_bytes());
        b.extend_from_slice(&[prec, 0, 0, 0]);
        b
    }

    fn meter_mod(cmd: u16, fl: u16, id: u32, bands: &[Vec<u8>]) -> Vec<u8> {
        let mut m = cmd.to_be_bytes().to_vec();
        m.extend_from_slice(&fl.to_be_bytes());
        m.extend_from_slice(&id.to_be_bytes());
        for b in bands {
            m.extend_from_slice(b);
        }
        m
    }

    #[test]
    fn meter_mods_are_read_checked_and_described_back_as_sent() {
        let body = meter_mod(0, flags::PKTPS | flags::BURST | flags::STATS, 1, &[band(1, 1, 1, 0)]);
        let mm = parse_meter_mod(&body).unwrap();
        assert_eq!(mm.command, Command::Add);
        assert!(mm.meter.pktps());
        // Printed as ovs-ofctl prints it (Open vSwitch's ofproto.at).
        assert_eq!(mm.meter.to_string(), "meter=1 pktps burst stats bands=\ntype=drop rate=1 burst_size=1");
        let mut config = Vec::new();
        put_meter_config(&mut config, &mm.meter);
        assert_eq!(u16::from_be_bytes([config[0], config[1]]) as usize, config.len());
        assert_eq!(&config[2..], &body[2..], "flags, id and bands read back byte for byte");
        let mut again = Vec::new();
        put_meter_mod(&mut again, Command::Add, &mm.meter);
        assert_eq!(again, body);

        let remark = parse_meter_mod(&meter_mod(0, flags::KBPS, 2, &[band(2, 1000, 0, 1), band(1, 2000, 0, 0)]));
        let m = remark.unwrap().meter;
        assert_eq!(m.bands[0], Band { kind: BandType::DscpRemark(1), rate: 1000, burst: 0 });
        assert_eq!(m.burst(&m.bands[0]), None, "no burst flag");
        assert_eq!(mm_burst(), Some(1));
        assert_eq!(m.to_string(), "meter=2 kbps bands=\ntype=dscp_remark rate=1000 prec_level=1\ntype=drop rate=2000");

        // What OpenFlow forbids.
        let bad = |b: Vec<u8>| parse_meter_mod(&b).unwrap_err();
        use error::meter as code;
        assert_eq!(bad(meter_mod(0, 3, 1, &[band(1, 1, 0, 0)])), (FAILED, code::BAD_FLAGS));
        assert_eq!(bad(meter_mod(0, 0x11, 1, &[])), (FAILED, code::BAD_FLAGS));
        assert_eq!(bad(meter_mod(0, 1, 0, &[])), (FAILED, code::INVALID_METER));
        assert_eq!(bad(meter_mod(0, 1, ALL, &[])), (FAILED, code::INVALID_METER));
        assert_eq!(bad(meter_mod(0, 1, 1, &[band(3, 1, 0, 0)])), (FAILED, code::BAD_BAND));
        assert_eq!(bad(meter_mod(0, 1, 1, &[band(1, 0, 0, 0)])), (FAILED, code::BAD_RATE));
        assert_eq!(bad(meter_mod(9, 1, 1, &[])), (FAILED, code::BAD_COMMAND));
        assert_eq!(bad(meter_mod(0, 1, 1, &vec![band(1, 1, 0, 0); 9])), (FAILED, code::OUT_OF_BANDS));
        let mut short = meter_mod(0, 1, 1, &[band(1, 1, 0, 0)]);
        short.truncate(short.len() - 4);
        assert_eq!(bad(short), (error::BAD_REQUEST, error::BAD_LEN));
        // Deleting every meter needs nothing else.
        let del = parse_meter_mod(&meter_mod(2, 0, ALL, &[])).unwrap();
        assert_eq!((del.command, del.meter.id), (Command::Delete, ALL));
    }

    fn mm_burst() -> Option<u32> {
        let m = parse_meter_mod(&meter_mod(0, flags::PKTPS | flags::BURST, 1, &[band(1, 1, 1, 0)])).unwrap().meter;
        m.burst(&m.bands[0])
    }

    #[test]
    fn meter_stats_and_features_have_openflow_lengths() {
        let s = MeterStats { id: 3, flows: 2, packets: 10, bytes: 1000, bands: vec![(4, 400)], ..Default::default() };
        let mut e = Vec::new();
        put_meter_stats(&mut e, &s);
        assert_eq!(e.len(), 56);
        assert_eq!(u16::from_be_bytes([e[4], e[5]]), 56);
        assert_eq!(u64::from_be_bytes(e[40..48].try_into().unwrap()), 4);
        let mut f = Vec::new();
        put_meter_features(&mut f);
        assert_eq!(f.len(), 16);
    }
}
