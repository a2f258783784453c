//! Connection tracking: the `ct` action's tracker, one for the whole switch, shared by every datapath
//! worker (a connection is the same connection whichever worker sees which of its directions).
//!
//! A connection is kept under one key for both directions: its zone, protocol and two ends in canonical
//! order (the lower end first), so a packet finds it with one hash and one probe whichever way it travels,
//! and remembers which end opened it. The table is cut into [`SHARDS`] shards, each a hash map under its own
//! mutex (held for one lookup and update; workers meet on a shard only when they carry the same
//! connections). The hash is keyed with a seed the daemon draws at start, so a stranger cannot aim packets
//! at one bucket. Entries expire by their own deadline: a lookup that finds an expired entry takes it away,
//! and [`Conntrack::sweep`] walks a bounded slice of each shard per call (never a scan per packet). The table
//! is bounded as a whole and per zone; when full, new connections are refused (their packets dropped and
//! counted) while the existing ones go on.
//!
//! What a packet gets (`ct_state` and the connection's fields) follows Open vSwitch's userspace
//! conntrack, so that flows written for it behave the same: see `docs/conntrack.md`.

mod nat;
pub mod packet;
mod table;
pub mod tcp;
#[cfg(test)]
mod tests;

pub use nat::{NatArgs, NatKind};

use crate::{Nanos, SECOND};
use packet::{CtPacket, Endpoint, Kind, Tuple};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

/// `ct_state` bits (OVS's `CS_*`).
pub mod state {
    pub const NEW: u8 = 0x01;
    pub const EST: u8 = 0x02;
    pub const REL: u8 = 0x04;
    pub const RPL: u8 = 0x08;
    pub const INV: u8 = 0x10;
    pub const TRK: u8 = 0x20;
    pub const SNAT: u8 = 0x40;
    pub const DNAT: u8 = 0x80;
}

/// Shards of the table (a power of two).
pub const SHARDS: usize = 64;
/// Connections tracked at most, unless configured otherwise.
pub const DEFAULT_LIMIT: usize = 1_000_000;

/// How long a connection lives without traffic, by what it last did (seconds; OVS's userspace defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    pub tcp_established: u32,
    pub tcp_fin_wait: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    pub udp_first: u32,
    pub udp_single: u32,
    pub udp_multiple: u32,
    pub icmp_first: u32,
    pub icmp_reply: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            tcp_syn_sent: 30,
            tcp_syn_recv: 30,
            tcp_established: 24 * 3600,
            tcp_fin_wait: 15 * 60,
            tcp_time_wait: 45,
            tcp_close: 30,
            udp_first: 60,
            udp_single: 60,
            udp_multiple: 30,
            icmp_first: 60,
            icmp_reply: 30,
        }
    }
}

/// What a `ct` action asks of the tracker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtArgs {
    pub zone: u16,
    /// Keep the connection (only committed connections are remembered).
    pub commit: bool,
    /// A committed connection found in the other direction is ended and this packet starts a new one.
    pub force: bool,
    /// `exec(set_field:V/M->ct_mark)`, `…->ct_label`: value and mask, set on the committed connection.
    pub mark: Option<(u32, u32)>,
    pub label: Option<(u128, u128)>,
    /// `nat(...)`: translate (a committed connection's translation, or a new one from the range).
    pub nat: Option<NatArgs>,
    /// Say what would happen and change nothing (`weft trace`).
    pub dry: bool,
}

/// What NAT rewrites in a packet: its source and destination ends (address and port), where changed.
///
/// For an ICMP error (`+rel`) the error's own addresses take the rewrite (no ports), and the packet it
/// quotes — which travelled the other way — takes it on the other end: an answer's destination going back
/// from the translated address to the host means the quoted packet's source does too (OVS does the same).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rewrite {
    pub src: Option<Endpoint>,
    pub dst: Option<Endpoint>,
}

impl Rewrite {
    /// The rewrite of the packet an ICMP error quotes: the same ends, on the other side.
    pub fn quoted(&self) -> Rewrite {
        Rewrite { src: self.dst, dst: self.src }
    }
}

/// What tracking tells the pipeline about a packet: the `ct_*` fields later tables match.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CtMeta {
    pub state: u8,
    pub zone: u16,
    pub mark: u32,
    pub label: u128,
    /// The connection's tuple in its original direction (`ct_nw_src`, `ct_tp_dst`, …).
    pub orig: Option<Tuple>,
    /// NAT's rewrite of this packet (only with `nat` in the action).
    pub rewrite: Rewrite,
}

/// The tracker's verdict on one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
// Returned by value on the packet path: boxing the large variant would allocate per packet.
#[allow(clippy::large_enum_variant)]
pub enum Verdict {
    Tracked(CtMeta),
    /// A new connection to be committed, refused: the table (or its zone's share) is full.
    Full,
}

/// Counters, for `dpctl/ct-stats-show` and metrics.
#[derive(Debug, Default)]
pub struct CtCounters {
    pub created: AtomicU64,
    pub expired: AtomicU64,
    pub invalid: AtomicU64,
    pub full: AtomicU64,
    /// New connections to translate for which the NAT range had no free address and port.
    pub nat_exhausted: AtomicU64,
}

/// A connection as `dpctl/dump-conntrack` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CtEntry {
    pub zone: u16,
    pub orig: Tuple,
    pub mark: u32,
    pub label: u128,
    /// TCP: each end's state (originator first).
    pub tcp: Option<(tcp::PeerState, tcp::PeerState)>,
    /// ICMP: the request's type and code (the reply's type follows from it).
    pub icmp: Option<(u8, u8)>,
    /// Seconds until it expires.
    pub expires_in: u64,
    /// With NAT: the reply direction's tuple (what answers look like on the wire).
    pub reply: Option<Tuple>,
}

/// A connection's key: its zone, protocol and two ends, the lower first; with its keyed hash, computed once
/// when the key is made (the shard and the shard's map both use it: one hash per packet).
#[derive(Debug, Clone, Copy, Eq)]
struct ConnKey {
    h: u64,
    zone: u16,
    proto: u8,
    v6: bool,
    lo: Endpoint,
    hi: Endpoint,
}

impl PartialEq for ConnKey {
    fn eq(&self, o: &Self) -> bool {
        self.h == o.h
            && self.lo == o.lo
            && self.hi == o.hi
            && (self.zone, self.proto, self.v6) == (o.zone, o.proto, o.v6)
    }
}

impl Hash for ConnKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.h);
    }
}

/// The map's hasher: a key's hash is already in it.
#[derive(Default, Clone, Copy)]
struct KeyHash(u64);

impl Hasher for KeyHash {
    fn write(&mut self, bytes: &[u8]) {
        // Only `ConnKey::hash` feeds it, with one word; anything else still spreads.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(MUL);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap = HashMap<ConnKey, Entry, std::hash::BuildHasherDefault<KeyHash>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Other {
    First,
    Multiple,
    Bidir,
}

#[derive(Debug, Clone, Copy)]
enum Proto {
    Tcp([tcp::Peer; 2]),
    Other(Other),
    Icmp { replied: bool, icmp_type: u8, code: u8 },
}

#[derive(Debug, Clone, Copy)]
struct Conn {
    key: ConnKey,
    /// The originator is the key's lower end.
    orig_lo: bool,
    live: bool,
    /// Grows each time the slot is used again (an alias names the connection it was made for).
    gen: u32,
    expires: Nanos,
    mark: u32,
    label: u128,
    proto: Proto,
    nat: Option<nat::NatConn>,
}

impl Conn {
    fn orig(&self) -> Tuple {
        let (src, dst) = if self.orig_lo { (self.key.lo, self.key.hi) } else { (self.key.hi, self.key.lo) };
        Tuple { src, dst, proto: self.key.proto, v6: self.key.v6 }
    }
}

/// A keyed multiply-fold hasher: fast on the few words of a key, and its seed is the daemon's secret.
#[derive(Clone, Copy)]
struct Seeded(u64);

struct SeededHasher(u64);

const MUL: u64 = 0x9e37_79b9_7f4a_7c15;

fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

impl Hasher for SeededHasher {
    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(w));
        }
    }
    fn write_u8(&mut self, v: u8) {
        self.write_u64(u64::from(v));
    }
    fn write_u16(&mut self, v: u16) {
        self.write_u64(u64::from(v));
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = fold(self.0 ^ v, MUL);
    }
    fn write_u128(&mut self, v: u128) {
        self.write_u64(v as u64);
        self.write_u64((v >> 64) as u64);
    }
    fn finish(&self) -> u64 {
        fold(self.0, MUL ^ 0x5bd1_e995)
    }
}

impl BuildHasher for Seeded {
    type Hasher = SeededHasher;
    fn build_hasher(&self) -> SeededHasher {
        SeededHasher(self.0)
    }
}

/// What a key leads to: a connection of this shard, or (NAT's reply direction) one in another shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    Conn(u32),
    /// `slot` u32::MAX: being made.
    Alias {
        shard: u16,
        slot: u32,
        gen: u32,
    },
}

struct Shard {
    map: KeyMap,
    conns: Vec<Conn>,
    free: Vec<u32>,
    /// Where the next sweep of this shard starts.
    cursor: usize,
}

/// The tracker.
pub struct Conntrack {
    seed: Seeded,
    shards: Box<[Mutex<Shard>]>,
    count: AtomicUsize,
    limit: AtomicUsize,
    /// Per-zone limits (a zone not here: only the table's), and how many each zone holds.
    zone_limits: RwLock<HashMap<u16, usize>>,
    zone_counts: Mutex<HashMap<u16, usize>>,
    pub timeouts: Timeouts,
    pub counters: CtCounters,
    /// The shard the next sweep starts with.
    sweep_at: AtomicUsize,
}

impl std::fmt::Debug for Conntrack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Conntrack({} connections)", self.count.load(Ordering::Relaxed))
    }
}

impl Default for Conntrack {
    fn default() -> Self {
        Conntrack::new(0x2545_f491_4f6c_dd1d)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A worker that panicked while holding a shard left it consistent enough to go on with (every update
    // is a few field writes).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Conntrack {
    /// An empty tracker whose hash is keyed with `seed`.
    pub fn new(seed: u64) -> Conntrack {
        let seed = Seeded(seed | 1);
        let shards = (0..SHARDS)
            .map(|_| Mutex::new(Shard { map: KeyMap::default(), conns: Vec::new(), free: Vec::new(), cursor: 0 }))
            .collect();
        Conntrack {
            seed,
            shards,
            count: AtomicUsize::new(0),
            limit: AtomicUsize::new(DEFAULT_LIMIT),
            zone_limits: RwLock::new(HashMap::new()),
            zone_counts: Mutex::new(HashMap::new()),
            timeouts: Timeouts::default(),
            counters: CtCounters::default(),
            sweep_at: AtomicUsize::new(0),
        }
    }

    /// The shard of a key: middle bits of its hash (the map inside uses the low bits for the bucket and the
    /// top seven as tags).
    fn shard_of(&self, key: &ConnKey) -> usize {
        (key.h >> 40) as usize & (SHARDS - 1)
    }

    /// The key of a packet's connection, and whether the packet goes from the key's lower end.
    fn canon(&self, zone: u16, t: &Tuple) -> (ConnKey, bool) {
        let from_lo = t.src <= t.dst;
        let (lo, hi) = if from_lo { (t.src, t.dst) } else { (t.dst, t.src) };
        let w0 = u64::from(zone)
            | u64::from(t.proto) << 16
            | u64::from(t.v6) << 24
            | u64::from(lo.port) << 32
            | u64::from(hi.port) << 48;
        // Two lanes, so that the multiplications overlap.
        let a = fold(fold(self.seed.0 ^ w0, MUL) ^ lo.addr as u64, MUL) ^ (hi.addr as u64);
        let b = fold(fold(self.seed.0.rotate_left(32) ^ (lo.addr >> 64) as u64, MUL) ^ (hi.addr >> 64) as u64, MUL);
        let h = fold(a ^ b.rotate_left(17), MUL ^ 0x5bd1_e995);
        (ConnKey { h, zone, proto: t.proto, v6: t.v6, lo, hi }, from_lo)
    }

    /// Connections tracked now.
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    /// At most `n` connections in all (those already over it stay until they end).
    pub fn set_limit(&self, n: usize) {
        self.limit.store(n, Ordering::Relaxed);
    }

    /// Zone limits: at most `n` connections in zone `zone` (`None`: only the table's limit).
    pub fn set_zone_limit(&self, zone: u16, n: Option<usize>) {
        let mut l = self.zone_limits.write().unwrap_or_else(|e| e.into_inner());
        match n {
            Some(n) => l.insert(zone, n),
            None => l.remove(&zone),
        };
    }

    /// Sets every zone limit at once (zones not in `limits` become unlimited but for the table's).
    pub fn replace_zone_limits(&self, limits: impl IntoIterator<Item = (u16, usize)>) {
        let mut l = self.zone_limits.write().unwrap_or_else(|e| e.into_inner());
        l.clear();
        l.extend(limits);
    }

    /// Keys in the table: one per connection, two for a translated one (for checks that nothing is left).
    pub fn keys(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.len()).sum()
    }

    /// Connections by IP protocol.
    pub fn by_protocol(&self) -> Vec<(u8, usize)> {
        let mut n = [0usize; 256];
        for s in self.shards.iter() {
            for c in lock(s).conns.iter().filter(|c| c.live) {
                n[usize::from(c.key.proto)] += 1;
            }
        }
        (0..=255u8).filter(|p| n[usize::from(*p)] != 0).map(|p| (p, n[usize::from(p)])).collect()
    }

    /// Each limited zone with its limit and how many connections it holds.
    pub fn zone_limits(&self) -> Vec<(u16, usize, usize)> {
        let counts = lock(&self.zone_counts);
        let l = self.zone_limits.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<_> = l.iter().map(|(z, n)| (*z, *n, counts.get(z).copied().unwrap_or(0))).collect();
        v.sort_unstable();
        v
    }

    /// Tracks one packet (`None`: one the tracker cannot follow, which is invalid) in `args.zone`.
    pub fn execute(&self, pkt: Option<&CtPacket>, args: &CtArgs, now: Nanos) -> Verdict {
        let base = CtMeta { state: state::TRK, zone: args.zone, ..CtMeta::default() };
        let invalid = |c: &CtCounters| {
            if !args.dry {
                c.invalid.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Tracked(CtMeta { state: state::TRK | state::INV, ..base })
        };
        let Some(p) = pkt else { return invalid(&self.counters) };
        if let Kind::Error { inner, .. } = p.kind {
            return self.related(p, &inner, args, now).unwrap_or_else(|| invalid(&self.counters));
        }
        let (key, from_lo) = self.canon(args.zone, &p.tuple);
        if let Some((si, mut shard, i, via_alias)) = self.find(&key) {
            // A dry run works on a copy of the connection.
            let mut copy;
            let c = if args.dry {
                copy = shard.conns[i as usize];
                &mut copy
            } else {
                &mut shard.conns[i as usize]
            };
            let reply = match (&c.nat, via_alias) {
                (None, _) => from_lo != c.orig_lo,
                // A translated connection: by its own key only the original direction, by its alias only
                // the reply direction as translated.
                (Some(_), false) if from_lo == c.orig_lo => false,
                (Some(n), true) if n.reply.src == p.tuple.src && n.reply.dst == p.tuple.dst => true,
                _ => return invalid(&self.counters),
            };
            let ended = c.expires <= now || (args.force && args.commit && reply);
            if !ended {
                // `None`: a SYN after both ends closed; the old connection is over.
                let (st, renew) = self.update(c, p, reply).unwrap_or_default();
                if st != 0 {
                    if let Some(t) = renew {
                        c.expires = now + u64::from(t) * SECOND;
                    }
                    if args.commit && st & state::INV == 0 {
                        if let Some((v, m)) = args.mark {
                            c.mark = (c.mark & !m) | (v & m);
                        }
                        if let Some((v, m)) = args.label {
                            c.label = (c.label & !m) | (v & m);
                        }
                    }
                    if st & state::INV != 0 && !args.dry {
                        self.counters.invalid.fetch_add(1, Ordering::Relaxed);
                    }
                    let mut meta = CtMeta { state: st, mark: c.mark, label: c.label, orig: Some(c.orig()), ..base };
                    if let (Some(n), Some(_), false) = (&c.nat, args.nat, st & state::INV != 0) {
                        (meta.rewrite, meta.state) = n.translate(&c.orig(), reply, meta.state);
                    }
                    return Verdict::Tracked(meta);
                }
            }
            let expired = c.expires <= now;
            if args.dry {
                drop(shard);
                return self.execute_new(p, args, key, from_lo, now);
            }
            let unlink = self.remove(&mut shard, i);
            drop(shard);
            self.unlink(unlink, si, i);
            if expired {
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.execute_new(p, args, key, from_lo, now)
    }

    /// A packet that belongs to no connection: it may start one.
    fn execute_new(&self, p: &CtPacket, args: &CtArgs, key: ConnKey, from_lo: bool, now: Nanos) -> Verdict {
        let base = CtMeta { state: state::TRK, zone: args.zone, ..CtMeta::default() };
        let invalid = || {
            if !args.dry {
                self.counters.invalid.fetch_add(1, Ordering::Relaxed);
            }
            Verdict::Tracked(CtMeta { state: state::TRK | state::INV, ..base })
        };
        let (proto, timeout) = match p.kind {
            Kind::Tcp(s) if tcp::valid_new(&s) => (Proto::Tcp(tcp::new_conn(&s)), self.timeouts.tcp_syn_sent),
            Kind::Echo { request: true, icmp_type, code } => {
                (Proto::Icmp { replied: false, icmp_type, code }, self.timeouts.icmp_first)
            }
            Kind::Other => (Proto::Other(Other::First), self.timeouts.udp_first),
            _ => return invalid(),
        };
        let mut meta = CtMeta { state: state::TRK | state::NEW, orig: Some(p.tuple), ..base };
        if !args.commit {
            return Verdict::Tracked(meta);
        }
        if args.dry {
            // What it would be committed with (a translation is picked only when it is).
            meta.mark = args.mark.map_or(0, |(v, m)| v & m);
            meta.label = args.label.map_or(0, |(v, m)| v & m);
            return Verdict::Tracked(meta);
        }
        if !self.reserve(args.zone) {
            self.counters.full.fetch_add(1, Ordering::Relaxed);
            return Verdict::Full;
        }
        let si = self.shard_of(&key);
        // A translation from the range: its reply key reserved (as an alias being made) before the
        // connection goes in.
        let nat = match args.nat {
            Some(n) if n.kind != NatKind::Reverse && n.addrs.is_some() => {
                match self.nat_alloc(&key, &p.tuple, &n, si) {
                    Some(x) => x,
                    None => {
                        self.unreserve(args.zone);
                        self.counters.nat_exhausted.fetch_add(1, Ordering::Relaxed);
                        return Verdict::Full;
                    }
                }
            }
            _ => None,
        };
        let (mut mark, mut label) = (0, 0);
        if let Some((v, m)) = args.mark {
            mark = v & m;
        }
        if let Some((v, m)) = args.label {
            label = v & m;
        }
        let expires = now + u64::from(timeout) * SECOND;
        let conn = Conn { key, orig_lo: from_lo, live: true, gen: 0, expires, mark, label, proto, nat };
        let Some((i, gen)) = self.insert(si, conn) else {
            // Another worker made it first (both directions of a new connection at once): this packet
            // stays new and uncommitted.
            self.unreserve(args.zone);
            if let Some(n) = nat {
                self.unlink(Some((n.alias, n.alias_shard)), si, u32::MAX);
            }
            return Verdict::Tracked(meta);
        };
        if let Some(n) = nat {
            let mut a = lock(&self.shards[usize::from(n.alias_shard)]);
            a.map.insert(n.alias, Entry::Alias { shard: si as u16, slot: i, gen });
            drop(a);
            (meta.rewrite, meta.state) = n.translate(&p.tuple, false, meta.state);
        }
        self.counters.created.fetch_add(1, Ordering::Relaxed);
        (meta.mark, meta.label) = (mark, label);
        Verdict::Tracked(meta)
    }

    /// A packet on a tracked connection: its `ct_state` and the timeout to renew the connection with
    /// (`None`: not renewed); `None` when the packet ends the connection and starts another.
    fn update(&self, c: &mut Conn, p: &CtPacket, reply: bool) -> Option<(u8, Option<u32>)> {
        let t = &self.timeouts;
        let est = state::TRK | state::EST | if reply { state::RPL } else { 0 };
        Some(match (&mut c.proto, p.kind) {
            (Proto::Tcp(peers), Kind::Tcp(s)) => match tcp::update(peers, usize::from(reply), &s) {
                tcp::Update::Valid => {
                    let secs = match tcp::phase(peers) {
                        tcp::Phase::FirstPacket => t.tcp_syn_sent,
                        tcp::Phase::Opening => t.tcp_syn_recv,
                        tcp::Phase::Established => t.tcp_established,
                        tcp::Phase::Closing => t.tcp_fin_wait,
                        tcp::Phase::FinWait => t.tcp_time_wait,
                        tcp::Phase::Closed => t.tcp_close,
                    };
                    (est, Some(secs))
                }
                tcp::Update::Loose => (est, None),
                tcp::Update::ValidNew => (state::TRK | state::NEW, Some(t.tcp_syn_sent)),
                tcp::Update::Invalid => (state::TRK | state::INV, None),
                tcp::Update::Reopen => return None,
            },
            (Proto::Other(o), Kind::Other) => {
                if reply {
                    *o = Other::Bidir;
                } else if *o == Other::First {
                    *o = Other::Multiple;
                }
                (est, Some(if *o == Other::Bidir { t.udp_multiple } else { t.udp_single }))
            }
            (Proto::Icmp { replied, .. }, Kind::Echo { request, .. }) => {
                if request == reply {
                    // A request from the answering end, or a reply from the asking one.
                    (state::TRK | state::INV, None)
                } else {
                    *replied |= reply;
                    (est, Some(if *replied { t.icmp_reply } else { t.icmp_first }))
                }
            }
            _ => (state::TRK | state::INV, None),
        })
    }

    /// An ICMP error quoting a packet of a tracked connection: related to it.
    fn related(&self, p: &CtPacket, inner: &Tuple, args: &CtArgs, now: Nanos) -> Option<Verdict> {
        // The error goes back to whoever sent the quoted packet.
        if p.tuple.dst.addr != inner.src.addr || p.tuple.v6 != inner.v6 {
            return None;
        }
        let (key, from_lo) = self.canon(args.zone, inner);
        let (_, shard, i, via_alias) = self.find(&key)?;
        let c = &shard.conns[i as usize];
        if c.expires <= now {
            return None;
        }
        // The quoted packet went in the original direction: the error goes in the reply direction.
        let reply = match &c.nat {
            // Through NAT by the reply key, the quoted packet is as translated: an original one is the reply
            // reversed.
            Some(n) if via_alias => n.reply.dst == inner.src,
            _ => from_lo == c.orig_lo,
        };
        let st = state::TRK | state::REL | if reply { state::RPL } else { 0 };
        let mut meta = CtMeta {
            state: st,
            zone: args.zone,
            mark: c.mark,
            label: c.label,
            orig: Some(c.orig()),
            ..CtMeta::default()
        };
        // Through NAT, the error is translated as the packets of its direction are (its outer addresses),
        // and the packet it quotes as those of the other direction (see `Rewrite::quoted`).
        if let (Some(n), Some(_)) = (&c.nat, args.nat) {
            (meta.rewrite, meta.state) = n.translate(&c.orig(), reply, meta.state);
        }
        Some(Verdict::Tracked(meta))
    }
}
