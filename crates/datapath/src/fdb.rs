//! The forwarding database: which port (and, behind a tunnel, which remote VTEP) each MAC was last seen on,
//! per VLAN, with ageing and a size limit.

use crate::{Nanos, PortIdx, SECOND};
use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use weft_wire::EthernetAddress;

/// Default ageing time, as Open vSwitch and the Linux bridge use.
pub const DEFAULT_AGING_SECS: u32 = 300;
/// Default size limit (Open vSwitch's `mac-table-size` default).
pub const DEFAULT_MAX_ENTRIES: usize = 8192;

/// A multiply-xorshift hasher for the 64-bit FDB key: one multiplication per lookup instead of SipHash.
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^ (h >> 29)
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8 | u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
}

type KeyMap<V> = HashMap<u64, V, BuildHasherDefault<KeyHasher>>;

/// Entries of the ageing queue a full table looks at to make room for a new source.
const RECLAIM_BUDGET: usize = 8;

fn key(vlan: u16, mac: EthernetAddress) -> u64 {
    (u64::from(vlan) << 48) | mac.as_u64()
}

fn unkey(k: u64) -> (u16, EthernetAddress) {
    let b = k.to_be_bytes();
    ((k >> 48) as u16, EthernetAddress([b[2], b[3], b[4], b[5], b[6], b[7]]))
}

/// Where an FDB entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Origin {
    /// Learned from a frame's source address; ages out.
    Learned,
    /// Configured (`weft fdb add`).
    Static,
    /// Installed by the etcd control plane.
    Etcd,
    /// Installed by the BGP EVPN control plane.
    Evpn,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Learned => "learned",
            Origin::Static => "static",
            Origin::Etcd => "etcd",
            Origin::Evpn => "evpn",
        }
    }

    /// Installed by a control plane (etcd or EVPN).
    pub fn is_control_plane(self) -> bool {
        matches!(self, Origin::Etcd | Origin::Evpn)
    }
}

/// One FDB entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdbEntry {
    pub port: PortIdx,
    /// The remote VTEP the MAC sits behind, for entries learned from (or configured on) a tunnel port.
    pub remote: Option<IpAddr>,
    pub last_seen: Nanos,
    pub origin: Origin,
}

impl FdbEntry {
    /// Never ages and is never evicted (configured or installed by a control plane).
    #[inline]
    pub fn is_static(&self) -> bool {
        self.origin != Origin::Learned
    }
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learned {
    New,
    Refreshed,
    /// Refreshed, and the first time in this second of the clock: what other workers' copies of the table
    /// are told (at most once a second per address), so that their copy does not age out.
    Renewed,
    /// The MAC moved to another port or another remote VTEP.
    Moved,
    /// A static entry covers the MAC; nothing changed.
    Static,
    /// The table is full; the MAC was not learned.
    Full,
}

/// The MAC table of one bridge.
#[derive(Debug, Clone)]
pub struct Fdb {
    entries: KeyMap<FdbEntry>,
    /// Learned entries in the order they were learned (key, time to check it against): ageing walks it from
    /// the front a bounded number of entries at a time, so neither the timer nor a full table ever scans the
    /// whole table. A key whose entry was refreshed since goes to the back; one that was removed or became
    /// static is dropped when met.
    aging_queue: VecDeque<(u64, Nanos)>,
    aging: Nanos,
    max_entries: usize,
    pub moves: u64,
    pub learn_misses: u64,
    /// Learned entries removed because they aged out.
    pub aged: u64,
    /// While someone watches the table ([`Fdb::watch`]): the keys changed since the last
    /// [`Fdb::take_changes`], at most [`CHANGE_LOG_MAX`]; past that, or after a change to many entries at
    /// once, only that the watcher must read the whole table again.
    log: Option<ChangeLog>,
}

/// Changed keys a watched table remembers between two reads; more make the next read a whole table.
pub const CHANGE_LOG_MAX: usize = 16_384;

#[derive(Debug, Clone, Default)]
struct ChangeLog {
    keys: Vec<u64>,
    whole: bool,
}

/// What changed in a watched table since it was last asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FdbChanges {
    /// Too much to list: every live entry, as [`Fdb::snapshot`] gives them.
    Whole(Vec<(u16, EthernetAddress, FdbEntry, u64)>),
    /// Each changed address with its entry now (`None`: gone).
    Some(Vec<(u16, EthernetAddress, Option<FdbEntry>)>),
}

impl Default for Fdb {
    fn default() -> Self {
        Fdb::new(DEFAULT_AGING_SECS, DEFAULT_MAX_ENTRIES)
    }
}

impl Fdb {
    pub fn new(aging_secs: u32, max_entries: usize) -> Self {
        Fdb {
            entries: KeyMap::default(),
            aging_queue: VecDeque::new(),
            aging: Nanos::from(aging_secs) * SECOND,
            max_entries,
            moves: 0,
            learn_misses: 0,
            aged: 0,
            log: None,
        }
    }

    /// Starts (or stops) remembering what changes, for a watcher that is pushed the changes instead of
    /// reading the whole table again and again. The first [`Fdb::take_changes`] gives the whole table.
    pub fn watch(&mut self, on: bool) {
        self.log = on.then(|| ChangeLog { keys: Vec::new(), whole: true });
    }

    pub fn watched(&self) -> bool {
        self.log.is_some()
    }

    fn changed(&mut self, k: u64) {
        if let Some(log) = &mut self.log {
            if log.keys.len() < CHANGE_LOG_MAX {
                log.keys.push(k);
            } else {
                log.whole = true;
            }
        }
    }

    fn changed_all(&mut self) {
        if let Some(log) = &mut self.log {
            log.whole = true;
        }
    }

    /// What changed since the last call (`None`: nothing, or the table is not watched).
    pub fn take_changes(&mut self, now: Nanos) -> Option<FdbChanges> {
        let log = self.log.as_mut()?;
        if log.whole {
            log.whole = false;
            log.keys.clear();
            return Some(FdbChanges::Whole(self.snapshot(now)));
        }
        if log.keys.is_empty() {
            return None;
        }
        let mut keys = std::mem::take(&mut log.keys);
        keys.sort_unstable();
        keys.dedup();
        let out = keys
            .iter()
            .map(|k| {
                let (vlan, mac) = unkey(*k);
                (vlan, mac, self.entries.get(k).filter(|e| !self.expired(e, now)).copied())
            })
            .collect();
        keys.clear();
        if let Some(log) = &mut self.log {
            log.keys = keys;
        }
        Some(FdbChanges::Some(out))
    }

    pub fn set_limits(&mut self, aging_secs: u32, max_entries: usize) {
        self.aging = Nanos::from(aging_secs) * SECOND;
        self.max_entries = max_entries;
    }

    pub fn max_entries(&self) -> usize {
        self.max_entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn expired(&self, e: &FdbEntry, now: Nanos) -> bool {
        !e.is_static() && now.saturating_sub(e.last_seen) >= self.aging
    }

    /// Records that `mac` was seen on `port` (behind `remote`, for a tunnel).
    pub fn learn(
        &mut self,
        vlan: u16,
        mac: EthernetAddress,
        port: PortIdx,
        remote: Option<IpAddr>,
        now: Nanos,
    ) -> Learned {
        let k = key(vlan, mac);
        let aging = self.aging;
        let full = self.entries.len() >= self.max_entries;
        match self.entries.get_mut(&k) {
            // A control-plane entry gives way to the MAC showing up on a local port (a move the control plane
            // then announces), never to a tunnel: what remote VTEPs say comes from the control plane.
            Some(e) if e.origin.is_control_plane() && remote.is_none() => {
                *e = FdbEntry { port, remote, last_seen: now, origin: Origin::Learned };
                self.moves += 1;
                self.aging_queue.push_back((k, now));
                self.changed(k);
                Learned::Moved
            }
            Some(e) if e.is_static() => Learned::Static,
            Some(e) => {
                let stale = now.saturating_sub(e.last_seen) >= aging;
                let moved = e.port != port || e.remote != remote;
                let renewed = e.last_seen / SECOND != now / SECOND;
                e.port = port;
                e.remote = remote;
                e.last_seen = now;
                if moved && !stale {
                    self.moves += 1;
                    self.changed(k);
                    Learned::Moved
                } else if stale {
                    self.changed(k);
                    Learned::New
                } else if renewed {
                    Learned::Renewed
                } else {
                    Learned::Refreshed
                }
            }
            None => {
                if full {
                    // Reclaim an aged entry from the front of the ageing queue, looking at a few at most: a
                    // flood of new sources into a full table costs O(1) per frame.
                    self.expire_some(now, RECLAIM_BUDGET);
                    if self.entries.len() >= self.max_entries {
                        self.learn_misses += 1;
                        return Learned::Full;
                    }
                }
                self.entries.insert(k, FdbEntry { port, remote, last_seen: now, origin: Origin::Learned });
                self.aging_queue.push_back((k, now));
                self.compact_queue();
                self.changed(k);
                Learned::New
            }
        }
    }

    /// What another worker learned at `at` (its clock and ours are the same clock): taken unless this
    /// table saw the address more recently, so that every copy ends with the latest place it was seen. The
    /// move and miss counters stay the other worker's.
    pub fn learn_from_peer(
        &mut self,
        vlan: u16,
        mac: EthernetAddress,
        port: PortIdx,
        remote: Option<IpAddr>,
        at: Nanos,
    ) {
        if self.entries.get(&key(vlan, mac)).is_some_and(|e| !e.is_static() && e.last_seen > at) {
            return;
        }
        let (moves, misses) = (self.moves, self.learn_misses);
        self.learn(vlan, mac, port, remote, at);
        (self.moves, self.learn_misses) = (moves, misses);
    }

    /// The live entry for `mac` in `vlan`.
    #[inline]
    pub fn lookup(&self, vlan: u16, mac: EthernetAddress, now: Nanos) -> Option<&FdbEntry> {
        self.entries.get(&key(vlan, mac)).filter(|e| !self.expired(e, now))
    }

    /// Adds or replaces a static entry, which never ages and is never evicted.
    pub fn add_static(&mut self, vlan: u16, mac: EthernetAddress, port: PortIdx, remote: Option<IpAddr>) {
        self.entries.insert(key(vlan, mac), FdbEntry { port, remote, last_seen: 0, origin: Origin::Static });
        self.changed(key(vlan, mac));
    }

    /// Installs an entry from a control plane (`origin` etcd or EVPN). It replaces a learned or an older
    /// control-plane entry but never a configured static one; false if a static entry kept the address or
    /// the table is full (`mac-table-size` bounds what a control plane installs too; counted as a miss).
    pub fn install(
        &mut self,
        vlan: u16,
        mac: EthernetAddress,
        port: PortIdx,
        remote: Option<IpAddr>,
        origin: Origin,
    ) -> bool {
        let e = FdbEntry { port, remote, last_seen: 0, origin };
        let full = self.entries.len() >= self.max_entries;
        let done = match self.entries.get_mut(&key(vlan, mac)) {
            Some(old) if old.origin == Origin::Static => false,
            Some(old) => {
                *old = e;
                true
            }
            None if full => {
                self.learn_misses += 1;
                false
            }
            None => {
                self.entries.insert(key(vlan, mac), e);
                true
            }
        };
        if done {
            self.changed(key(vlan, mac));
        }
        done
    }

    /// Removes a control-plane entry of `origin` for `mac` (a learned or static entry stays).
    pub fn uninstall(&mut self, vlan: u16, mac: EthernetAddress, origin: Origin) -> bool {
        let k = key(vlan, mac);
        if self.entries.get(&k).is_some_and(|e| e.origin == origin) {
            self.entries.remove(&k);
            self.changed(k);
            return true;
        }
        false
    }

    /// Removes every entry of `origin`.
    pub fn remove_origin(&mut self, origin: Origin) {
        self.entries.retain(|_, e| e.origin != origin);
        self.changed_all();
    }

    /// Replaces every configured static entry with `entries` (vlan, mac, port, remote); learned and
    /// control-plane entries for those addresses give way to the static ones.
    pub fn replace_static(
        &mut self,
        entries: impl IntoIterator<Item = (u16, EthernetAddress, PortIdx, Option<IpAddr>)>,
    ) {
        self.entries.retain(|_, e| e.origin != Origin::Static);
        for (vlan, mac, port, remote) in entries {
            self.add_static(vlan, mac, port, remote);
        }
        self.changed_all();
    }

    /// Removes the entry for `mac` in `vlan`; true if there was one.
    pub fn remove(&mut self, vlan: u16, mac: EthernetAddress) -> bool {
        self.changed(key(vlan, mac));
        self.entries.remove(&key(vlan, mac)).is_some()
    }

    /// Removes every learned entry; static and control-plane ones stay.
    pub fn flush_learned(&mut self) {
        self.entries.retain(|_, e| e.is_static());
        self.changed_all();
    }

    /// Removes aged entries, the whole table at once; returns how many. The datapath uses
    /// [`Fdb::expire_some`], which never scans the whole table.
    pub fn expire(&mut self, now: Nanos) -> usize {
        let before = self.entries.len();
        let aging = self.aging;
        self.entries.retain(|_, e| e.is_static() || now.saturating_sub(e.last_seen) < aging);
        let gone = before - self.entries.len();
        if gone > 0 {
            self.changed_all();
        }
        self.aged += gone as u64;
        gone
    }

    /// Walks at most `budget` entries from the front of the ageing queue, removing those that aged out;
    /// stops early at the first one that is not due yet. Returns how many were removed.
    pub fn expire_some(&mut self, now: Nanos, budget: usize) -> usize {
        let mut gone = 0;
        for _ in 0..budget {
            let Some(&(k, due_from)) = self.aging_queue.front() else { break };
            if now.saturating_sub(due_from) < self.aging {
                break;
            }
            self.aging_queue.pop_front();
            match self.entries.get(&k) {
                Some(e) if e.is_static() => {}
                Some(e) if now.saturating_sub(e.last_seen) >= self.aging => {
                    self.entries.remove(&k);
                    self.changed(k);
                    gone += 1;
                }
                // Seen again since: check it again one ageing time after it was last seen.
                Some(e) => self.aging_queue.push_back((k, e.last_seen)),
                None => {}
            }
        }
        self.aged += gone as u64;
        gone
    }

    /// How many entries the ageing queue holds (learned entries, and keys removed since that it has not met yet).
    pub fn aging_queue_len(&self) -> usize {
        self.aging_queue.len()
    }

    /// Keeps the ageing queue from growing with churn (keys removed and learned again): when it holds far more
    /// than the table, it is rebuilt from the learned entries (rare, and linear only then).
    fn compact_queue(&mut self) {
        if self.aging_queue.len() > 2 * self.entries.len() + 1024 {
            let mut learned: Vec<(u64, Nanos)> =
                self.entries.iter().filter(|(_, e)| !e.is_static()).map(|(k, e)| (*k, e.last_seen)).collect();
            learned.sort_unstable_by_key(|(_, t)| *t);
            self.aging_queue = learned.into();
        }
    }

    /// Rewrites port indices after the pipeline changed; entries whose port is gone are removed.
    pub fn remap_ports(&mut self, map: impl Fn(PortIdx) -> Option<PortIdx>) {
        self.entries.retain(|_, e| match map(e.port) {
            Some(p) => {
                e.port = p;
                true
            }
            None => false,
        });
        // Indices changed: a watcher reads the whole table again (it names ports, so it may not need to).
        self.changed_all();
    }

    /// Every live entry as (vlan, mac, entry, age in seconds), sorted by port, VLAN and MAC.
    pub fn snapshot(&self, now: Nanos) -> Vec<(u16, EthernetAddress, FdbEntry, u64)> {
        let mut v: Vec<_> = self
            .entries
            .iter()
            .filter(|(_, e)| !self.expired(e, now))
            .map(|(k, e)| {
                let (vlan, mac) = unkey(*k);
                let age = if e.is_static() { 0 } else { now.saturating_sub(e.last_seen) / SECOND };
                (vlan, mac, *e, age)
            })
            .collect();
        v.sort_by_key(|(vlan, mac, e, _)| (e.port, *vlan, *mac));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> EthernetAddress {
        EthernetAddress([2, 0, 0, 0, 0, last])
    }

    #[test]
    fn a_full_table_refuses_new_sources_without_scanning_and_ages_in_slices() {
        let m = |i: u32| EthernetAddress([2, 0, (i >> 16) as u8, (i >> 8) as u8, i as u8, 1]);
        let mut f = Fdb::new(300, 65536);
        for i in 0..65536 {
            assert_eq!(f.learn(0, m(i), PortIdx(1), None, SECOND), Learned::New);
        }
        // A flood of new sources into the full table: each is refused after looking at the front of the
        // queue only (nothing there is due), and the table is untouched.
        for i in 65536..115536 {
            assert_eq!(f.learn(0, m(i), PortIdx(2), None, 2 * SECOND), Learned::Full);
        }
        assert_eq!((f.len(), f.learn_misses, f.aging_queue_len()), (65536, 50000, 65536));
        // Half the entries are seen again later; after the ageing time the others go, a slice at a time.
        for i in 0..32768 {
            f.learn(0, m(i), PortIdx(1), None, 200 * SECOND);
        }
        let now = 301 * SECOND;
        assert_eq!(f.expire_some(now, 1000), 0, "the first 1000 were refreshed: requeued, none removed");
        let mut removed = 0;
        for _ in 0..200 {
            removed += f.expire_some(now, 1000);
        }
        assert_eq!(removed, 32768);
        assert_eq!(f.len(), 32768);
        // A full table reclaims an aged entry from the front for a new source.
        let mut g = Fdb::new(300, 2);
        g.learn(0, m(1), PortIdx(1), None, 0);
        g.learn(0, m(2), PortIdx(1), None, 10 * SECOND);
        assert_eq!(g.learn(0, m(3), PortIdx(1), None, 301 * SECOND), Learned::New);
        assert!(g.lookup(0, m(1), 301 * SECOND).is_none() && g.lookup(0, m(2), 301 * SECOND).is_some());
        // Churn does not grow the queue without bound.
        for round in 0..10u32 {
            for i in 0..5000 {
                g.remove(0, m(10 + i));
            }
            for i in 0..5000 {
                let _ = g.learn(0, m(10 + i + round), PortIdx(1), None, 400 * SECOND);
            }
        }
        assert!(g.aging_queue_len() <= 2 * g.len() + 1024 + 1);
    }

    #[test]
    fn control_plane_entries_obey_the_table_size() {
        let mut f = Fdb::new(300, 3);
        let m = |i: u8| EthernetAddress([2, 0, 0, 0, 0, i]);
        let vtep = Some("192.0.2.9".parse().unwrap());
        for i in 0..3 {
            assert!(f.install(0, m(i), PortIdx(1), vtep, Origin::Etcd));
        }
        assert!(!f.install(0, m(3), PortIdx(1), vtep, Origin::Evpn), "full");
        assert_eq!((f.len(), f.learn_misses), (3, 1));
        assert!(f.install(0, m(1), PortIdx(2), vtep, Origin::Evpn), "replacing an entry needs no room");
    }

    #[test]
    fn learns_refreshes_and_ages() {
        let mut f = Fdb::new(300, 10);
        assert_eq!(f.learn(0, mac(1), PortIdx(1), None, 0), Learned::New);
        assert_eq!(f.learn(0, mac(1), PortIdx(1), None, 10 * SECOND), Learned::Renewed);
        assert!(f.lookup(0, mac(1), 309 * SECOND).is_some());
        assert!(f.lookup(0, mac(1), 310 * SECOND).is_none(), "aged out 300 s after last seen");
        assert_eq!(f.expire(310 * SECOND), 1);
        assert!(f.is_empty());
    }

    #[test]
    fn per_vlan_and_moves() {
        let mut f = Fdb::default();
        f.learn(10, mac(1), PortIdx(1), None, 0);
        f.learn(20, mac(1), PortIdx(2), None, 0);
        assert_eq!(f.lookup(10, mac(1), 0).unwrap().port, PortIdx(1));
        assert_eq!(f.lookup(20, mac(1), 0).unwrap().port, PortIdx(2));
        let vtep: IpAddr = "192.0.2.9".parse().unwrap();
        assert_eq!(f.learn(10, mac(1), PortIdx(3), Some(vtep), SECOND), Learned::Moved);
        assert_eq!(f.lookup(10, mac(1), SECOND).unwrap().remote, Some(vtep));
        assert_eq!(f.moves, 1);
    }

    #[test]
    fn limit_counts_misses_and_spares_static() {
        let mut f = Fdb::new(300, 2);
        f.add_static(0, mac(9), PortIdx(1), None);
        assert_eq!(f.learn(0, mac(1), PortIdx(1), None, 0), Learned::New);
        assert_eq!(f.learn(0, mac(2), PortIdx(1), None, 0), Learned::Full);
        assert_eq!(f.learn_misses, 1);
        assert_eq!(f.learn(0, mac(9), PortIdx(2), None, 0), Learned::Static);
        assert_eq!(f.lookup(0, mac(9), 10_000 * SECOND).unwrap().port, PortIdx(1), "static never ages");
        // Once the learned entry ages out, there is room again.
        assert_eq!(f.learn(0, mac(2), PortIdx(1), None, 400 * SECOND), Learned::New);
        f.flush_learned();
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn replace_static_keeps_learned() {
        let mut f = Fdb::default();
        f.add_static(0, mac(1), PortIdx(1), None);
        f.learn(0, mac(2), PortIdx(1), None, 0);
        f.learn(0, mac(3), PortIdx(1), None, 0);
        f.replace_static([(0, mac(3), PortIdx(2), None)]);
        assert!(f.lookup(0, mac(1), 0).is_none(), "old static entry gone");
        assert!(!f.lookup(0, mac(2), 0).unwrap().is_static());
        assert!(f.lookup(0, mac(3), 0).unwrap().is_static(), "static wins over learned");
    }

    #[test]
    fn control_plane_entries() {
        let mut f = Fdb::new(300, 10);
        let vtep: IpAddr = "192.0.2.9".parse().unwrap();
        assert!(f.install(0, mac(1), PortIdx(3), Some(vtep), Origin::Etcd));
        assert_eq!(f.learn(0, mac(1), PortIdx(3), Some("192.0.2.10".parse().unwrap()), 0), Learned::Static);
        assert_eq!(f.lookup(0, mac(1), 1000 * SECOND).unwrap().remote, Some(vtep), "never ages, tunnels can't move it");
        // The MAC appears on a local port: it moved here, the entry becomes learned.
        assert_eq!(f.learn(0, mac(1), PortIdx(1), None, SECOND), Learned::Moved);
        assert_eq!(f.lookup(0, mac(1), SECOND).unwrap().origin, Origin::Learned);
        assert!(!f.uninstall(0, mac(1), Origin::Etcd), "a learned entry is not the control plane's to remove");
        f.add_static(0, mac(2), PortIdx(1), None);
        assert!(!f.install(0, mac(2), PortIdx(3), Some(vtep), Origin::Evpn), "static wins");
        f.install(0, mac(3), PortIdx(3), Some(vtep), Origin::Evpn);
        f.replace_static([]);
        assert_eq!(f.lookup(0, mac(3), 0).unwrap().origin, Origin::Evpn, "config changes keep control-plane entries");
        f.flush_learned();
        assert!(f.uninstall(0, mac(3), Origin::Evpn));
        assert!(f.lookup(0, mac(3), 0).is_none());
    }

    #[test]
    fn remap_drops_removed_ports() {
        let mut f = Fdb::default();
        f.learn(0, mac(1), PortIdx(1), None, 0);
        f.learn(0, mac(2), PortIdx(2), None, 0);
        f.remap_ports(|p| if p == PortIdx(1) { None } else { Some(PortIdx(0)) });
        assert!(f.lookup(0, mac(1), 0).is_none());
        assert_eq!(f.lookup(0, mac(2), 0).unwrap().port, PortIdx(0));
        let snap = f.snapshot(5 * SECOND);
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].3, 5);
    }
}
