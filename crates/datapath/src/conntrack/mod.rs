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

pub mod packet;
pub mod tcp;
#[cfg(test)]
mod tests;

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
}

/// The tracker's verdict on one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct ConnKey {
    zone: u16,
    proto: u8,
    v6: bool,
    lo: Endpoint,
    hi: Endpoint,
}

/// The key of a packet's connection, and whether the packet goes from the key's lower end.
fn canon(zone: u16, t: &Tuple) -> (ConnKey, bool) {
    let from_lo = t.src <= t.dst;
    let (lo, hi) = if from_lo { (t.src, t.dst) } else { (t.dst, t.src) };
    (ConnKey { zone, proto: t.proto, v6: t.v6, lo, hi }, from_lo)
}

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
    expires: Nanos,
    mark: u32,
    label: u128,
    proto: Proto,
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

struct Shard {
    map: HashMap<ConnKey, u32, Seeded>,
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
            .map(|_| {
                Mutex::new(Shard { map: HashMap::with_hasher(seed), conns: Vec::new(), free: Vec::new(), cursor: 0 })
            })
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

    fn shard(&self, key: &ConnKey) -> &Mutex<Shard> {
        let h = self.seed.hash_one(key);
        &self.shards[(h >> 58) as usize & (SHARDS - 1)]
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
            c.invalid.fetch_add(1, Ordering::Relaxed);
            Verdict::Tracked(CtMeta { state: state::TRK | state::INV, ..base })
        };
        let Some(p) = pkt else { return invalid(&self.counters) };
        if let Kind::Error { inner, .. } = p.kind {
            return self.related(p, &inner, args, now).unwrap_or_else(|| invalid(&self.counters));
        }
        let (key, from_lo) = canon(args.zone, &p.tuple);
        let mut shard = lock(self.shard(&key));
        if let Some(&i) = shard.map.get(&key) {
            let c = &mut shard.conns[i as usize];
            let reply = from_lo != c.orig_lo;
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
                    if st & state::INV != 0 {
                        self.counters.invalid.fetch_add(1, Ordering::Relaxed);
                    }
                    let meta = CtMeta { state: st, mark: c.mark, label: c.label, orig: Some(c.orig()), ..base };
                    return Verdict::Tracked(meta);
                }
            }
            let expired = c.expires <= now;
            self.remove(&mut shard, i);
            if expired {
                self.counters.expired.fetch_add(1, Ordering::Relaxed);
            }
        }
        // No connection: this packet may start one.
        let (proto, timeout) = match p.kind {
            Kind::Tcp(s) if tcp::valid_new(&s) => (Proto::Tcp(tcp::new_conn(&s)), self.timeouts.tcp_syn_sent),
            Kind::Echo { request: true, icmp_type, code } => {
                (Proto::Icmp { replied: false, icmp_type, code }, self.timeouts.icmp_first)
            }
            Kind::Other => (Proto::Other(Other::First), self.timeouts.udp_first),
            _ => {
                drop(shard);
                return invalid(&self.counters);
            }
        };
        let mut meta = CtMeta { state: state::TRK | state::NEW, orig: Some(p.tuple), ..base };
        if !args.commit {
            return Verdict::Tracked(meta);
        }
        if !self.reserve(args.zone) {
            self.counters.full.fetch_add(1, Ordering::Relaxed);
            return Verdict::Full;
        }
        let (mut mark, mut label) = (0, 0);
        if let Some((v, m)) = args.mark {
            mark = v & m;
        }
        if let Some((v, m)) = args.label {
            label = v & m;
        }
        let conn =
            Conn { key, orig_lo: from_lo, live: true, expires: now + u64::from(timeout) * SECOND, mark, label, proto };
        let i = match shard.free.pop() {
            Some(i) => {
                shard.conns[i as usize] = conn;
                i
            }
            None => {
                shard.conns.push(conn);
                (shard.conns.len() - 1) as u32
            }
        };
        shard.map.insert(key, i);
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
        let (key, from_lo) = canon(args.zone, inner);
        let shard = lock(self.shard(&key));
        let c = &shard.conns[*shard.map.get(&key)? as usize];
        if c.expires <= now {
            return None;
        }
        // The quoted packet went in the original direction: the error goes in the reply direction.
        let reply = from_lo == c.orig_lo;
        let st = state::TRK | state::REL | if reply { state::RPL } else { 0 };
        let meta = CtMeta { state: st, zone: args.zone, mark: c.mark, label: c.label, orig: Some(c.orig()) };
        Some(Verdict::Tracked(meta))
    }

    /// Counts a new connection in, if the table and its zone have room.
    fn reserve(&self, zone: u16) -> bool {
        if self.count.fetch_add(1, Ordering::Relaxed) >= self.limit() {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        let limit = self.zone_limits.read().unwrap_or_else(|e| e.into_inner()).get(&zone).copied();
        let mut counts = lock(&self.zone_counts);
        let n = counts.entry(zone).or_insert(0);
        if limit.is_some_and(|l| *n >= l) {
            self.count.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        *n += 1;
        true
    }

    fn remove(&self, shard: &mut Shard, i: u32) {
        let c = &mut shard.conns[i as usize];
        if !c.live {
            return;
        }
        c.live = false;
        let key = c.key;
        shard.map.remove(&key);
        shard.free.push(i);
        self.count.fetch_sub(1, Ordering::Relaxed);
        let mut counts = lock(&self.zone_counts);
        if let Some(n) = counts.get_mut(&key.zone) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&key.zone);
            }
        }
    }

    /// Removes expired connections, looking at `budget` entries at most (spread over the shards, each
    /// shard's walk going on where the last one stopped); returns how many it removed.
    pub fn sweep(&self, now: Nanos, budget: usize) -> usize {
        let per = (budget / SHARDS).max(1);
        let mut removed = 0;
        let start = self.sweep_at.fetch_add(1, Ordering::Relaxed);
        for k in 0..SHARDS {
            let mut shard = lock(&self.shards[(start + k) % SHARDS]);
            let n = shard.conns.len();
            if n == 0 {
                continue;
            }
            for _ in 0..per.min(n) {
                let i = shard.cursor % n;
                shard.cursor = i + 1;
                let c = &shard.conns[i];
                if c.live && c.expires <= now {
                    self.remove(&mut shard, i as u32);
                    removed += 1;
                }
            }
        }
        self.counters.expired.fetch_add(removed as u64, Ordering::Relaxed);
        removed
    }

    /// Every live connection (of `zone`, if given).
    pub fn dump(&self, zone: Option<u16>, now: Nanos) -> Vec<CtEntry> {
        let mut out = Vec::new();
        for s in self.shards.iter() {
            let shard = lock(s);
            for c in shard.conns.iter().filter(|c| c.live && c.expires > now) {
                if zone.is_some_and(|z| z != c.key.zone) {
                    continue;
                }
                let (tcp, icmp) = match c.proto {
                    Proto::Tcp(p) => (Some((p[0].state, p[1].state)), None),
                    Proto::Icmp { icmp_type, code, .. } => (None, Some((icmp_type, code))),
                    Proto::Other(_) => (None, None),
                };
                out.push(CtEntry {
                    zone: c.key.zone,
                    orig: c.orig(),
                    mark: c.mark,
                    label: c.label,
                    tcp,
                    icmp,
                    expires_in: (c.expires - now).div_ceil(SECOND),
                });
            }
        }
        out
    }

    /// Forgets every connection (of `zone`, if given); returns how many.
    pub fn flush(&self, zone: Option<u16>) -> usize {
        let mut n = 0;
        for s in self.shards.iter() {
            let mut shard = lock(s);
            for i in 0..shard.conns.len() {
                let c = &shard.conns[i];
                if c.live && zone.is_none_or(|z| z == c.key.zone) {
                    self.remove(&mut shard, i as u32);
                    n += 1;
                }
            }
        }
        n
    }
}
