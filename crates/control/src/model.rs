//! The EVPN-shaped routing table every control-plane backend feeds.
//!
//! Remote state comes in as routes: "VTEP V serves VNI N" (like an EVPN type-3 inclusive multicast route) and
//! "MAC M in VNI N sits behind VTEP V, move sequence S" (like a type-2 MAC/IP route with the MAC mobility
//! community). Local state comes in as the set of MACs the datapath learned on local ports. Out come
//! [`Change`]s for the datapath (flood lists, FDB entries) and [`LocalChange`]s for the backend to publish.
//!
//! Choosing between routes for one MAC follows RFC 7432 section 15: the highest sequence number wins; on a tie
//! the lowest VTEP address. A MAC that shows up locally while a remote route for it exists is announced with
//! that route's sequence number plus one, so every host moves it here.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::net::IpAddr;
use weft_wire::EthernetAddress;

/// A VXLAN network identifier (24 bits).
pub type Vni = u32;

/// A MAC address within a VNI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MacKey {
    pub vni: Vni,
    pub mac: EthernetAddress,
}

/// One remote announcement of a MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MacRoute {
    pub vtep: IpAddr,
    pub seq: u32,
    /// An IP address bound to the MAC, when the announcement carries one.
    pub ip: Option<IpAddr>,
}

/// One remote route as a backend reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Record {
    /// A VTEP serves a VNI (type 3).
    Vtep { vni: Vni, vtep: IpAddr },
    /// A MAC sits behind a VTEP (type 2).
    Mac { key: MacKey, route: MacRoute },
}

/// What a record is about, whatever its sequence number or bound IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum RecordId {
    Vtep(Vni, IpAddr),
    Mac(MacKey, IpAddr),
}

/// The highest move sequence number taken from a peer. A route claiming more is refused: with the 32-bit
/// space nearly used, nobody could announce a later move (sequence + 1 would not fit) and one host could
/// pin a MAC to itself for good.
pub const MAX_SEQ: u32 = 1 << 31;

/// Why `vtep` cannot be a remote VTEP, if it cannot: it must be a unicast address other than ours.
pub fn vtep_problem(vtep: IpAddr, me: Option<IpAddr>) -> Option<String> {
    let bad = match vtep {
        IpAddr::V4(a) => a.is_unspecified() || a.is_loopback() || a.is_multicast() || a.is_broadcast(),
        IpAddr::V6(a) => a.is_unspecified() || a.is_loopback() || a.is_multicast(),
    };
    if bad {
        Some(format!("VTEP {vtep} is not a unicast address"))
    } else if me == Some(vtep) {
        Some(format!("VTEP {vtep} is our own address"))
    } else {
        None
    }
}

impl Record {
    /// Why a record read from a peer (etcd, a route reflector) is refused, if it is: its VTEP is not a
    /// unicast address of another host, its VNI is out of range or its sequence number past [`MAX_SEQ`].
    pub fn problem(&self, me: Option<IpAddr>) -> Option<String> {
        let (vni, vtep, seq) = match *self {
            Record::Vtep { vni, vtep } => (vni, vtep, 0),
            Record::Mac { key, route } => (key.vni, route.vtep, route.seq),
        };
        if vni > 0xff_ffff {
            return Some(format!("VNI {vni} is out of range"));
        }
        if seq > MAX_SEQ {
            return Some(format!("sequence number {seq} is past {MAX_SEQ}"));
        }
        vtep_problem(vtep, me)
    }

    fn id(&self) -> RecordId {
        match *self {
            Record::Vtep { vni, vtep } => RecordId::Vtep(vni, vtep),
            Record::Mac { key, route } => RecordId::Mac(key, route.vtep),
        }
    }
}

/// The routes each backend source announced (by the source's own route id: an etcd key, a BGP NLRI), feeding
/// a [`Rib`]. A record stays in the Rib while any source announces it: two route reflectors reflect the same
/// route, and a MAC-only and a MAC+IP route name the same MAC.
#[derive(Debug, Default)]
pub struct Adj {
    routes: HashMap<(u32, Vec<u8>), Record>,
    refs: HashMap<RecordId, u32>,
}

impl Adj {
    /// Source `source` announces `rec` under its route id `id` (replacing what it said under that id).
    pub fn add(&mut self, rib: &mut Rib, source: u32, id: Vec<u8>, rec: Record) {
        match self.routes.insert((source, id), rec) {
            Some(old) if old == rec => return,
            Some(old) if old.id() == rec.id() => {}
            Some(old) => {
                self.unref(rib, old);
                *self.refs.entry(rec.id()).or_insert(0) += 1;
            }
            None => *self.refs.entry(rec.id()).or_insert(0) += 1,
        }
        match rec {
            Record::Vtep { vni, vtep } => rib.add_vtep(vni, vtep),
            Record::Mac { key, route } => rib.add_mac(key, route),
        }
    }

    /// Source `source` withdraws its route `id`.
    pub fn remove(&mut self, rib: &mut Rib, source: u32, id: &[u8]) {
        if let Some(old) = self.routes.remove(&(source, id.to_vec())) {
            self.unref(rib, old);
        }
    }

    /// Replaces everything `source` announced with `all` (a full read after a reconnect; empty: it is gone).
    pub fn replace(&mut self, rib: &mut Rib, source: u32, all: Vec<(Vec<u8>, Record)>) {
        let keep: HashSet<&Vec<u8>> = all.iter().map(|(id, _)| id).collect();
        let stale: Vec<Vec<u8>> =
            self.routes.keys().filter(|(s, id)| *s == source && !keep.contains(id)).map(|(_, id)| id.clone()).collect();
        for id in stale {
            self.remove(rib, source, &id);
        }
        for (id, rec) in all {
            self.add(rib, source, id, rec);
        }
    }

    fn unref(&mut self, rib: &mut Rib, old: Record) {
        let id = old.id();
        let Some(n) = self.refs.get_mut(&id) else { return };
        *n -= 1;
        if *n > 0 {
            return;
        }
        self.refs.remove(&id);
        match old {
            Record::Vtep { vni, vtep } => rib.remove_vni_vtep(vni, vtep),
            Record::Mac { key, route } => rib.remove_mac(key, route.vtep),
        }
    }

    /// Routes held, over all sources.
    pub fn len(&self) -> usize {
        self.routes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
}

/// What the datapath must change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The remote VTEPs that flooded frames of `vni` go to now (sorted).
    Flood { vni: Vni, vteps: Vec<IpAddr> },
    /// Frames to `key.mac` in `key.vni` go to `vtep`.
    Install { key: MacKey, vtep: IpAddr },
    /// No remote VTEP holds `key` any more.
    Remove { key: MacKey },
}

/// What the backend must publish for this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalChange {
    /// This host serves `vni` (announce our VTEP in its flood list), or stops serving it.
    Vni { vni: Vni, serve: bool },
    /// Announce `key` behind our VTEP with move sequence `seq`.
    Announce { key: MacKey, seq: u32 },
    /// Withdraw our announcement of `key`.
    Withdraw { key: MacKey },
}

/// Routes of one MAC from one or (during a move, or with a duplicate) several VTEPs.
#[derive(Debug, Clone)]
enum Routes {
    One(MacRoute),
    Many(Vec<MacRoute>),
}

impl Routes {
    fn as_slice(&self) -> &[MacRoute] {
        match self {
            Routes::One(r) => std::slice::from_ref(r),
            Routes::Many(v) => v,
        }
    }

    /// Adds or replaces the route of `r.vtep`; true if something changed.
    fn upsert(&mut self, r: MacRoute) -> bool {
        match self {
            Routes::One(old) if old.vtep == r.vtep => {
                let changed = *old != r;
                *old = r;
                changed
            }
            Routes::One(old) => {
                *self = Routes::Many(vec![*old, r]);
                true
            }
            Routes::Many(v) => match v.iter_mut().find(|o| o.vtep == r.vtep) {
                Some(o) => {
                    let changed = *o != r;
                    *o = r;
                    changed
                }
                None => {
                    v.push(r);
                    true
                }
            },
        }
    }

    /// Removes the route of `vtep`; returns whether one was removed and whether none is left.
    fn remove(&mut self, vtep: IpAddr) -> (bool, bool) {
        match self {
            Routes::One(old) if old.vtep == vtep => (true, true),
            Routes::One(_) => (false, false),
            Routes::Many(v) => {
                let before = v.len();
                v.retain(|o| o.vtep != vtep);
                let removed = v.len() != before;
                let empty = v.is_empty();
                if v.len() == 1 {
                    let only = v[0];
                    *self = Routes::One(only);
                }
                (removed, empty)
            }
        }
    }

    /// The winning route: highest sequence number, then lowest VTEP address.
    fn best(&self) -> MacRoute {
        let s = self.as_slice();
        let mut best = s[0];
        for r in &s[1..] {
            if r.seq > best.seq || (r.seq == best.seq && r.vtep < best.vtep) {
                best = *r;
            }
        }
        best
    }
}

/// The control-plane table of one host (one bridge's overlay).
#[derive(Debug, Default)]
pub struct Rib {
    /// Our VTEP address (routes naming it are our own, reflected back, and are ignored).
    me: Option<IpAddr>,
    /// Remote VTEPs by the VNIs they serve.
    flood: HashMap<Vni, BTreeSet<IpAddr>>,
    /// Remote MAC routes.
    macs: HashMap<MacKey, Routes>,
    /// Our own announcements and their sequence numbers.
    local: HashMap<MacKey, u32>,
    /// VNIs we serve.
    local_vnis: BTreeSet<Vni>,
    /// What the datapath holds now: MAC → remote VTEP.
    installed: HashMap<MacKey, IpAddr>,
    dirty_macs: HashSet<MacKey>,
    dirty_vnis: BTreeSet<Vni>,
}

impl Rib {
    pub fn new(me: Option<IpAddr>) -> Rib {
        Rib { me, ..Default::default() }
    }

    pub fn me(&self) -> Option<IpAddr> {
        self.me
    }

    /// Sets our VTEP address (once known, e.g. from the control connection's local address).
    pub fn set_me(&mut self, me: IpAddr) {
        self.me = Some(me);
        // Routes naming us would have been taken for remote ones.
        self.remove_vtep(me);
    }

    fn is_me(&self, vtep: IpAddr) -> bool {
        self.me == Some(vtep)
    }

    /// A remote VTEP serves `vni` (a type-3 route).
    pub fn add_vtep(&mut self, vni: Vni, vtep: IpAddr) {
        if !self.is_me(vtep) && self.flood.entry(vni).or_default().insert(vtep) {
            self.dirty_vnis.insert(vni);
        }
    }

    /// A remote VTEP stopped serving `vni`.
    pub fn remove_vni_vtep(&mut self, vni: Vni, vtep: IpAddr) {
        if let Some(set) = self.flood.get_mut(&vni) {
            if set.remove(&vtep) {
                self.dirty_vnis.insert(vni);
                if set.is_empty() {
                    self.flood.remove(&vni);
                }
            }
        }
    }

    /// A remote MAC route (a type-2 route); replaces that VTEP's earlier route for the MAC.
    pub fn add_mac(&mut self, key: MacKey, route: MacRoute) {
        if self.is_me(route.vtep) {
            return;
        }
        let changed = match self.macs.get_mut(&key) {
            Some(r) => r.upsert(route),
            None => {
                self.macs.insert(key, Routes::One(route));
                true
            }
        };
        if changed {
            self.dirty_macs.insert(key);
        }
    }

    /// A remote VTEP withdrew its route for `key`.
    pub fn remove_mac(&mut self, key: MacKey, vtep: IpAddr) {
        let Some(r) = self.macs.get_mut(&key) else { return };
        let (removed, empty) = r.remove(vtep);
        if empty {
            self.macs.remove(&key);
        }
        if removed {
            self.dirty_macs.insert(key);
        }
    }

    /// Everything a VTEP announced is gone (the host left).
    pub fn remove_vtep(&mut self, vtep: IpAddr) {
        let vnis: Vec<Vni> = self.flood.iter().filter(|(_, s)| s.contains(&vtep)).map(|(v, _)| *v).collect();
        for vni in vnis {
            self.remove_vni_vtep(vni, vtep);
        }
        let keys: Vec<MacKey> =
            self.macs.iter().filter(|(_, r)| r.as_slice().iter().any(|x| x.vtep == vtep)).map(|(k, _)| *k).collect();
        for k in keys {
            self.remove_mac(k, vtep);
        }
    }

    /// Forgets every remote route (the backend lost its session and will resynchronise).
    pub fn clear_remote(&mut self) {
        for vni in self.flood.keys() {
            self.dirty_vnis.insert(*vni);
        }
        self.flood.clear();
        for k in self.macs.keys() {
            self.dirty_macs.insert(*k);
        }
        self.macs.clear();
    }

    /// The remote routes known for `key`.
    pub fn routes(&self, key: &MacKey) -> &[MacRoute] {
        self.macs.get(key).map_or(&[], |r| r.as_slice())
    }

    /// The remote VTEPs serving `vni`.
    pub fn vteps(&self, vni: Vni) -> impl Iterator<Item = IpAddr> + '_ {
        self.flood.get(&vni).into_iter().flatten().copied()
    }

    /// Number of remote MAC routes and of (VNI, VTEP) flood entries.
    pub fn sizes(&self) -> (usize, usize) {
        let routes = self.macs.values().map(|r| r.as_slice().len()).sum();
        (routes, self.flood.values().map(BTreeSet::len).sum())
    }

    /// Our announcements now: (key, sequence).
    pub fn local(&self) -> impl Iterator<Item = (MacKey, u32)> + '_ {
        self.local.iter().map(|(k, s)| (*k, *s))
    }

    pub fn local_vnis(&self) -> impl Iterator<Item = Vni> + '_ {
        self.local_vnis.iter().copied()
    }

    /// Sets the VNIs this host serves and the MACs the datapath learned on local ports (per VNI); returns what
    /// to announce and withdraw.
    pub fn set_local(&mut self, vnis: &BTreeSet<Vni>, macs: &HashSet<MacKey>) -> Vec<LocalChange> {
        let mut out = Vec::new();
        for vni in vnis.difference(&self.local_vnis) {
            out.push(LocalChange::Vni { vni: *vni, serve: true });
        }
        for vni in self.local_vnis.difference(vnis) {
            out.push(LocalChange::Vni { vni: *vni, serve: false });
        }
        self.local_vnis = vnis.clone();
        let gone: Vec<MacKey> = self.local.keys().filter(|k| !macs.contains(k)).copied().collect();
        for k in gone {
            self.local.remove(&k);
            self.dirty_macs.insert(k);
            out.push(LocalChange::Withdraw { key: k });
        }
        for k in macs {
            if self.local.contains_key(k) || !vnis.contains(&k.vni) {
                continue;
            }
            // Moved here from a remote VTEP: outbid every route for it.
            let seq = self.routes(k).iter().map(|r| r.seq.saturating_add(1)).max().unwrap_or(0);
            self.local.insert(*k, seq);
            self.dirty_macs.insert(*k);
            out.push(LocalChange::Announce { key: *k, seq });
        }
        out
    }

    /// Whether the remote route `r` beats our own announcement `seq` of the same MAC.
    fn beats_local(&self, r: &MacRoute, seq: u32) -> bool {
        r.seq > seq || (r.seq == seq && self.me.is_some_and(|me| r.vtep < me))
    }

    /// The datapath changes since the last call.
    pub fn take_changes(&mut self) -> Vec<Change> {
        let mut out = Vec::with_capacity(self.dirty_vnis.len() + self.dirty_macs.len());
        for vni in std::mem::take(&mut self.dirty_vnis) {
            out.push(Change::Flood { vni, vteps: self.vteps(vni).collect() });
        }
        let mut dirty: Vec<MacKey> = std::mem::take(&mut self.dirty_macs).into_iter().collect();
        dirty.sort_unstable();
        for key in dirty {
            let want = self.macs.get(&key).map(Routes::best).filter(|r| match self.local.get(&key) {
                Some(seq) => self.beats_local(r, *seq),
                None => true,
            });
            let have = self.installed.get(&key).copied();
            match (want, have) {
                (Some(r), Some(v)) if r.vtep == v => {}
                (Some(r), _) => {
                    self.installed.insert(key, r.vtep);
                    out.push(Change::Install { key, vtep: r.vtep });
                }
                (None, Some(_)) => {
                    self.installed.remove(&key);
                    out.push(Change::Remove { key });
                }
                (None, None) => {}
            }
        }
        out
    }

    /// Every entry the datapath should hold now (after a datapath restart or a configuration change).
    pub fn full_state(&self) -> Vec<Change> {
        let mut out: Vec<Change> =
            self.flood.iter().map(|(vni, s)| Change::Flood { vni: *vni, vteps: s.iter().copied().collect() }).collect();
        out.extend(self.installed.iter().map(|(key, vtep)| Change::Install { key: *key, vtep: *vtep }));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn key(last: u8) -> MacKey {
        MacKey { vni: 100, mac: EthernetAddress([2, 0, 0, 0, 0, last]) }
    }

    fn route(vtep: &str, seq: u32) -> MacRoute {
        MacRoute { vtep: ip(vtep), seq, ip: None }
    }

    #[test]
    fn records_from_peers_are_checked() {
        let me = Some(ip("10.0.0.1"));
        let key = MacKey { vni: 7, mac: EthernetAddress([2, 0, 0, 0, 0, 1]) };
        let mac = |vtep: &str, seq: u32| Record::Mac { key, route: MacRoute { vtep: ip(vtep), seq, ip: None } };
        assert_eq!(mac("10.0.0.2", 5).problem(me), None);
        assert!(mac("10.0.0.2", u32::MAX).problem(me).unwrap().contains("sequence"));
        assert!(mac("10.0.0.1", 0).problem(me).unwrap().contains("our own"));
        for bad in ["0.0.0.0", "127.0.0.5", "224.0.0.1", "255.255.255.255", "::1", "ff02::1"] {
            assert!(Record::Vtep { vni: 7, vtep: ip(bad) }.problem(me).is_some(), "{bad}");
        }
        assert!(Record::Vtep { vni: 1 << 24, vtep: ip("10.0.0.2") }.problem(me).is_some());
    }

    #[test]
    fn flood_lists_and_macs() {
        let mut rib = Rib::new(Some(ip("10.0.0.1")));
        rib.add_vtep(100, ip("10.0.0.2"));
        rib.add_vtep(100, ip("10.0.0.3"));
        rib.add_vtep(100, ip("10.0.0.1")); // our own, reflected
        rib.add_mac(key(1), route("10.0.0.2", 0));
        rib.add_mac(key(9), route("10.0.0.1", 0)); // ours
        let c = rib.take_changes();
        assert_eq!(
            c,
            vec![
                Change::Flood { vni: 100, vteps: vec![ip("10.0.0.2"), ip("10.0.0.3")] },
                Change::Install { key: key(1), vtep: ip("10.0.0.2") },
            ]
        );
        assert!(rib.take_changes().is_empty(), "nothing new");
        rib.add_mac(key(1), route("10.0.0.2", 0));
        assert!(rib.take_changes().is_empty(), "a repeated route changes nothing");
        rib.remove_vtep(ip("10.0.0.2"));
        assert_eq!(
            rib.take_changes(),
            vec![Change::Flood { vni: 100, vteps: vec![ip("10.0.0.3")] }, Change::Remove { key: key(1) }]
        );
    }

    #[test]
    fn higher_sequence_wins_then_lowest_vtep() {
        let mut rib = Rib::new(Some(ip("10.0.0.1")));
        rib.add_mac(key(1), route("10.0.0.3", 0));
        rib.add_mac(key(1), route("10.0.0.2", 0));
        assert_eq!(rib.take_changes(), vec![Change::Install { key: key(1), vtep: ip("10.0.0.2") }]);
        rib.add_mac(key(1), route("10.0.0.3", 1));
        assert_eq!(rib.take_changes(), vec![Change::Install { key: key(1), vtep: ip("10.0.0.3") }]);
        rib.remove_mac(key(1), ip("10.0.0.3"));
        assert_eq!(rib.take_changes(), vec![Change::Install { key: key(1), vtep: ip("10.0.0.2") }]);
    }

    #[test]
    fn local_moves_outbid_remote_routes() {
        let mut rib = Rib::new(Some(ip("10.0.0.5")));
        let vnis: BTreeSet<Vni> = [100].into();
        assert_eq!(rib.set_local(&vnis, &HashSet::new()), vec![LocalChange::Vni { vni: 100, serve: true }]);
        rib.add_mac(key(1), route("10.0.0.2", 3));
        assert_eq!(rib.take_changes(), vec![Change::Install { key: key(1), vtep: ip("10.0.0.2") }]);
        // The MAC appears here: announced with sequence 4, and the remote entry leaves the datapath.
        let local: HashSet<MacKey> = [key(1)].into();
        assert_eq!(rib.set_local(&vnis, &local), vec![LocalChange::Announce { key: key(1), seq: 4 }]);
        assert_eq!(rib.take_changes(), vec![Change::Remove { key: key(1) }]);
        // It moves on to 10.0.0.3 with sequence 5: the remote route wins again; we stop announcing once the
        // datapath no longer has it locally.
        rib.add_mac(key(1), route("10.0.0.3", 5));
        assert_eq!(rib.take_changes(), vec![Change::Install { key: key(1), vtep: ip("10.0.0.3") }]);
        assert_eq!(rib.set_local(&vnis, &HashSet::new()), vec![LocalChange::Withdraw { key: key(1) }]);
        assert!(rib.take_changes().is_empty());
        assert_eq!(rib.set_local(&BTreeSet::new(), &HashSet::new()), vec![LocalChange::Vni { vni: 100, serve: false }]);
    }

    #[test]
    fn macs_of_vnis_we_do_not_serve_are_not_announced() {
        let mut rib = Rib::new(None);
        let local: HashSet<MacKey> = [key(1)].into();
        assert!(rib.set_local(&BTreeSet::new(), &local).is_empty());
    }

    #[test]
    fn sources_count_references() {
        let mut rib = Rib::new(None);
        let mut adj = Adj::default();
        let rec = Record::Mac { key: key(1), route: route("10.0.0.2", 0) };
        // Two reflectors reflect the same route; one goes away: the MAC stays.
        adj.add(&mut rib, 0, b"a".to_vec(), rec);
        adj.add(&mut rib, 1, b"a".to_vec(), rec);
        assert_eq!(rib.take_changes(), vec![Change::Install { key: key(1), vtep: ip("10.0.0.2") }]);
        adj.replace(&mut rib, 0, vec![]);
        assert!(rib.take_changes().is_empty());
        // A new sequence number under the same id replaces the route.
        adj.add(&mut rib, 1, b"a".to_vec(), Record::Mac { key: key(1), route: route("10.0.0.2", 4) });
        assert_eq!(rib.routes(&key(1))[0].seq, 4);
        adj.remove(&mut rib, 1, b"a");
        assert_eq!(rib.take_changes(), vec![Change::Remove { key: key(1) }]);
        assert!(adj.is_empty());
    }

    #[test]
    fn clear_and_full_state() {
        let mut rib = Rib::new(None);
        rib.add_vtep(7, ip("192.0.2.2"));
        rib.add_mac(MacKey { vni: 7, ..key(1) }, route("192.0.2.2", 0));
        rib.take_changes();
        assert_eq!(rib.full_state().len(), 2);
        rib.clear_remote();
        let c = rib.take_changes();
        assert!(c.contains(&Change::Flood { vni: 7, vteps: vec![] }));
        assert!(c.contains(&Change::Remove { key: MacKey { vni: 7, ..key(1) } }));
        assert_eq!(rib.sizes(), (0, 0));
    }
}
