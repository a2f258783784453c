//! The control-plane thread: for each bridge with `other_config:control-plane=etcd|evpn`, it publishes the
//! MACs the datapath learned on local ports and turns what other hosts announce into flood lists and FDB
//! entries of the bridge's `remote_ip=flow` tunnels.
//!
//! Backends run their own threads (an etcd writer and watcher, or one BGP session per route reflector) and
//! report to this thread over one channel; the model ([`weft_control::Rib`]) lives here alone.

mod bgp;
mod etcd;

use crate::msgs::{DpHandle, DpMsg};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_api::config::{CpSpec, Valid};
use weft_api::{EtcdSpec, EvpnSpec};
use weft_control::etcd::Record;
use weft_control::model::MacRoute;
use weft_control::{Adj, Change, LocalChange, MacKey, Rib, Vni};
use weft_datapath::fdb::Origin;
use weft_datapath::switch::{CpUpdate, FdbDelta, FdbRow};

/// Messages to the control-plane thread.
pub enum CpMsg {
    Config(Arc<Valid>),
    /// From a backend of `bridge`, started as generation `gen` (messages of stopped backends are ignored).
    Remote {
        bridge: String,
        gen: u64,
        source: u32,
        op: RemoteOp,
    },
    /// What changed in a bridge's MAC table (pushed by the datapath).
    Fdb {
        bridge: String,
        delta: FdbDelta,
    },
}

/// What a backend learned.
pub enum RemoteOp {
    /// Our VTEP address (the source address towards the control plane, unless `local_ip` says).
    Me(IpAddr),
    /// Every route of this source, replacing what it said before (after a (re)connect).
    Snapshot(Vec<(Vec<u8>, Record)>),
    Add(Vec<u8>, Record),
    Remove(Vec<u8>),
    /// The source is gone (session down): forget its routes.
    Clear,
    Status(String),
}

/// What `weft show` tells about a bridge's control plane.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CpStatus {
    pub kind: &'static str,
    pub vtep: Option<IpAddr>,
    /// Per backend source (etcd, or each BGP peer): its state in words.
    pub sources: BTreeMap<u32, String>,
    /// Flood lists by port name.
    pub flood: BTreeMap<String, Vec<IpAddr>>,
    pub remote_macs: usize,
    pub local_macs: usize,
    /// Routes refused because they named a bad VTEP, VNI or sequence number.
    pub refused: u64,
}

pub type Shared = Arc<Mutex<BTreeMap<String, CpStatus>>>;

/// Local changes a backend must publish, and the full set it needs after a reconnect.
pub enum Publish {
    Changes { changes: Vec<LocalChange> },
}

/// A `remote_ip=flow` tunnel port as the control plane sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FlowPort {
    name: String,
    vni: Vni,
    /// The VLAN its frames are in on the bridge (its access tag, 0 untagged).
    vlan: u16,
    local: Option<IpAddr>,
}

struct Running {
    kind: CpSpec,
    gen: u64,
    ports: Vec<FlowPort>,
    rib: Rib,
    /// Routes by backend source.
    adj: Adj,
    /// Where local changes go (the backend's threads).
    publish: Vec<Sender<Publish>>,
    stop: Arc<AtomicBool>,
    status: CpStatus,
    /// The bridge's MAC table as the datapath's pushed changes make it.
    fdb: std::collections::HashMap<(u16, weft_wire::EthernetAddress), FdbRow>,
}

impl Running {
    fn origin(&self) -> Origin {
        match self.kind {
            CpSpec::Etcd(_) => Origin::Etcd,
            CpSpec::Evpn(_) => Origin::Evpn,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Starts the thread.
pub fn spawn(dp: DpHandle) -> anyhow::Result<(Sender<CpMsg>, Shared)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let shared: Shared = Default::default();
    let mut t = Thread { dp, rx, tx: tx.clone(), shared: shared.clone(), bridges: BTreeMap::new(), gen: 0 };
    std::thread::Builder::new().name("control-plane".into()).spawn(move || t.run())?;
    Ok((tx, shared))
}

struct Thread {
    dp: DpHandle,
    rx: Receiver<CpMsg>,
    tx: Sender<CpMsg>,
    shared: Shared,
    bridges: BTreeMap<String, Running>,
    gen: u64,
}

fn flow_ports(b: &weft_api::BridgeConfig, spec: &weft_api::config::BridgeSpec) -> Vec<FlowPort> {
    b.ports
        .iter()
        .zip(&spec.ports)
        .filter_map(|(p, s)| {
            let t = s.tunnel?;
            t.flow.then(|| FlowPort { name: p.name.clone(), vni: t.vni, vlan: p.vlan.tag.unwrap_or(0), local: t.local })
        })
        .collect()
}

impl Thread {
    fn run(&mut self) {
        // `show` sees remote changes within 100 ms (not after every one of a burst of thousands).
        let mut status_due: Option<Instant> = None;
        loop {
            let wait = status_due.map_or(Duration::from_secs(3600), |d| d.saturating_duration_since(Instant::now()));
            match self.rx.recv_timeout(wait) {
                Ok(CpMsg::Config(cfg)) => {
                    self.configure(&cfg);
                    status_due.get_or_insert_with(Instant::now);
                }
                Ok(CpMsg::Remote { bridge, gen, source, op }) => {
                    self.remote(&bridge, gen, source, op);
                    status_due.get_or_insert_with(|| Instant::now() + Duration::from_millis(100));
                }
                Ok(CpMsg::Fdb { bridge, delta }) => {
                    self.fdb_changed(&bridge, delta);
                    status_due.get_or_insert_with(|| Instant::now() + Duration::from_millis(100));
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
            }
            if status_due.is_some_and(|d| Instant::now() >= d) {
                status_due = None;
                self.publish_status();
            }
        }
    }

    /// Starts, restarts or stops backends to match the configuration.
    fn configure(&mut self, cfg: &Valid) {
        let mut want: BTreeMap<String, (CpSpec, Vec<FlowPort>)> = BTreeMap::new();
        for (b, spec) in cfg.bridges() {
            if let Some(k) = &spec.control_plane {
                want.insert(b.name.clone(), (k.clone(), flow_ports(b, spec)));
            }
        }
        let gone: Vec<String> = self
            .bridges
            .iter()
            .filter(|(name, r)| match want.get(*name) {
                None => true,
                // A new backend, or a new local VTEP address: start over.
                Some((k, p)) => *k != r.kind || p.iter().find_map(|x| x.local) != r.ports.iter().find_map(|x| x.local),
            })
            .map(|(n, _)| n.clone())
            .collect();
        for name in gone {
            if let Some(r) = self.bridges.remove(&name) {
                tracing::info!(bridge = %name, "control plane stopped");
                self.dp.send(DpMsg::WatchFdb(name.clone(), None));
                self.dp.send(DpMsg::Cp(
                    name.clone(),
                    CpUpdate { origin: Some(r.origin()), reset: true, ..Default::default() },
                ));
            }
        }
        for (name, (kind, ports)) in want {
            match self.bridges.get_mut(&name) {
                Some(r) if r.ports != ports => {
                    // Tunnel ports changed: the datapath gets everything again on the new ports, and the
                    // local MACs are those of the new ports' VLANs.
                    r.ports = ports;
                    self.resend(&name);
                    self.local_changed(&name);
                }
                Some(_) => self.resend(&name),
                None => self.start(name, kind, ports),
            }
        }
    }

    fn start(&mut self, name: String, kind: CpSpec, ports: Vec<FlowPort>) {
        self.gen += 1;
        let stop = Arc::new(AtomicBool::new(false));
        let me = ports.iter().find_map(|p| p.local);
        let ctx = BackendCtx { bridge: name.clone(), gen: self.gen, tx: self.tx.clone(), stop: stop.clone(), me };
        let (publish, kind_name) = match &kind {
            CpSpec::Etcd(spec) => (spec.clone().start(ctx), EtcdSpec::NAME),
            CpSpec::Evpn(spec) => (spec.clone().start(ctx), EvpnSpec::NAME),
        };
        tracing::info!(bridge = %name, "control plane {kind_name} started");
        let r = Running {
            kind,
            gen: self.gen,
            ports,
            rib: Rib::new(me),
            adj: Adj::default(),
            publish,
            stop,
            status: CpStatus { kind: kind_name, vtep: me, ..Default::default() },
            fdb: Default::default(),
        };
        self.dp.send(DpMsg::Cp(name.clone(), CpUpdate { origin: Some(r.origin()), reset: true, ..Default::default() }));
        // The datapath pushes the bridge's MAC table (whole first, then what changes) instead of being asked.
        let tx = self.tx.clone();
        let sink: crate::msgs::FdbSink =
            Box::new(move |bridge, delta| tx.send(CpMsg::Fdb { bridge: bridge.to_string(), delta }).is_ok());
        self.dp.send(DpMsg::WatchFdb(name.clone(), Some(sink)));
        self.bridges.insert(name, r);
    }

    /// Sends the datapath the whole remote state of a bridge again.
    fn resend(&mut self, bridge: &str) {
        let Some(r) = self.bridges.get(bridge) else { return };
        let changes = r.rib.full_state();
        let mut u = self.to_update(bridge, &changes);
        u.reset = true;
        // Ports without any flood list yet get an empty one.
        for p in &r.ports {
            if !u.flood.iter().any(|(n, _)| *n == p.name) {
                u.flood.push((p.name.clone(), Arc::from(&[][..])));
            }
        }
        self.dp.send(DpMsg::Cp(bridge.to_string(), u));
    }

    fn to_update(&self, bridge: &str, changes: &[Change]) -> CpUpdate {
        let Some(r) = self.bridges.get(bridge) else { return CpUpdate::default() };
        let port = |vni: Vni| r.ports.iter().find(|p| p.vni == vni);
        let mut u = CpUpdate { origin: Some(r.origin()), ..Default::default() };
        for c in changes {
            match c {
                Change::Flood { vni, vteps } => {
                    if let Some(p) = port(*vni) {
                        u.flood.push((p.name.clone(), Arc::from(&vteps[..])));
                    }
                }
                Change::Install { key, vtep } => {
                    if let Some(p) = port(key.vni) {
                        u.install.push((p.vlan, key.mac, p.name.clone(), *vtep));
                    }
                }
                Change::Remove { key } => {
                    if let Some(p) = port(key.vni) {
                        u.remove.push((p.vlan, key.mac));
                    }
                }
            }
        }
        u
    }

    fn remote(&mut self, bridge: &str, gen: u64, source: u32, op: RemoteOp) {
        let Some(r) = self.bridges.get_mut(bridge) else { return };
        if r.gen != gen {
            return;
        }
        match op {
            RemoteOp::Me(ip) => {
                if r.rib.me() != Some(ip) {
                    tracing::info!(bridge, "control plane: this host's VTEP address is {ip}");
                    r.rib.set_me(ip);
                    r.status.vtep = Some(ip);
                }
            }
            RemoteOp::Status(s) => {
                r.status.sources.insert(source, s);
            }
            RemoteOp::Add(id, rec) => match rec.problem(r.rib.me()) {
                Some(why) => {
                    r.status.refused += 1;
                    tracing::debug!(bridge, "control plane: route refused: {why}");
                }
                None => r.adj.add(&mut r.rib, source, id, rec),
            },
            RemoteOp::Remove(id) => r.adj.remove(&mut r.rib, source, &id),
            RemoteOp::Clear => r.adj.replace(&mut r.rib, source, Vec::new()),
            RemoteOp::Snapshot(mut all) => {
                let me = r.rib.me();
                let before = all.len();
                all.retain(|(_, rec)| rec.problem(me).is_none());
                r.status.refused += (before - all.len()) as u64;
                r.adj.replace(&mut r.rib, source, all)
            }
        }
        let changes = r.rib.take_changes();
        if !changes.is_empty() {
            let u = self.to_update(bridge, &changes);
            self.dp.send(DpMsg::Cp(bridge.to_string(), u));
        }
    }

    /// Applies what the datapath says changed in a bridge's MAC table.
    fn fdb_changed(&mut self, bridge: &str, delta: FdbDelta) {
        let Some(r) = self.bridges.get_mut(bridge) else { return };
        match delta {
            FdbDelta::Whole(rows) => r.fdb = rows.into_iter().map(|e| ((e.vlan, e.mac), e)).collect(),
            FdbDelta::Changed(list) => {
                for (vlan, mac, row) in list {
                    match row {
                        Some(e) => r.fdb.insert((vlan, mac), e),
                        None => r.fdb.remove(&(vlan, mac)),
                    };
                }
            }
        }
        self.local_changed(bridge);
    }

    /// Publishes what changed on the bridge's local ports.
    fn local_changed(&mut self, bridge: &str) {
        let Some(r) = self.bridges.get_mut(bridge) else { return };
        let vnis: BTreeSet<Vni> = r.ports.iter().map(|p| p.vni).collect();
        let macs = local_macs(r.fdb.values(), &r.ports);
        let changes = r.rib.set_local(&vnis, &macs);
        r.status.local_macs = macs.len();
        if !changes.is_empty() {
            r.publish.retain(|p| p.send(Publish::Changes { changes: changes.clone() }).is_ok());
        }
        let dp = r.rib.take_changes();
        if !dp.is_empty() {
            let u = self.to_update(bridge, &dp);
            self.dp.send(DpMsg::Cp(bridge.to_string(), u));
        }
    }

    fn publish_status(&mut self) {
        let mut all = BTreeMap::new();
        for (name, r) in &mut self.bridges {
            let mut s = r.status.clone();
            s.remote_macs = r.rib.sizes().0;
            for p in &r.ports {
                s.flood.insert(p.name.clone(), r.rib.vteps(p.vni).collect());
            }
            all.insert(name.clone(), s);
        }
        *self.shared.lock().unwrap_or_else(|e| e.into_inner()) = all;
    }
}

/// The MACs on local ports (not behind a tunnel, not installed by a control plane), per VNI.
fn local_macs<'a>(rows: impl Iterator<Item = &'a FdbRow>, ports: &[FlowPort]) -> HashSet<MacKey> {
    rows.filter(|e| e.remote.is_none() && !e.origin.is_control_plane() && e.mac.is_unicast())
        .filter_map(|e| {
            let p = ports.iter().find(|p| p.vlan == e.vlan)?;
            Some(MacKey { vni: p.vni, mac: e.mac })
        })
        .collect()
}

/// A control-plane backend, started for one bridge: it reports what other hosts announce through the
/// [`BackendCtx`] and returns the channels on which it takes this host's own routes to publish. Its
/// configuration (the spec) is what starts it.
pub trait Backend {
    /// What `show` calls it.
    const NAME: &'static str;
    fn start(self, ctx: BackendCtx) -> Vec<Sender<Publish>>;
}

/// What a backend's threads need.
#[derive(Clone)]
pub struct BackendCtx {
    pub bridge: String,
    pub gen: u64,
    pub tx: Sender<CpMsg>,
    pub stop: Arc<AtomicBool>,
    /// `local_ip` of the bridge's flow ports, if set.
    pub me: Option<IpAddr>,
}

impl BackendCtx {
    pub fn send(&self, source: u32, op: RemoteOp) -> bool {
        self.tx.send(CpMsg::Remote { bridge: self.bridge.clone(), gen: self.gen, source, op }).is_ok()
    }

    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Sleeps up to `d`, waking early when stopped; false if stopped.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        while Instant::now() < until {
            if self.stopped() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100).min(until.saturating_duration_since(Instant::now())));
        }
        !self.stopped()
    }
}

/// The local routes a backend holds to (re)publish: VNIs served and MACs with their sequence numbers.
#[derive(Debug, Default, Clone)]
pub struct LocalSet {
    pub vnis: BTreeSet<Vni>,
    pub macs: BTreeMap<MacKey, u32>,
}

impl LocalSet {
    pub fn apply(&mut self, changes: &[LocalChange]) {
        for c in changes {
            match *c {
                LocalChange::Vni { vni, serve: true } => {
                    self.vnis.insert(vni);
                }
                LocalChange::Vni { vni, serve: false } => {
                    self.vnis.remove(&vni);
                }
                LocalChange::Announce { key, seq } => {
                    self.macs.insert(key, seq);
                }
                LocalChange::Withdraw { key } => {
                    self.macs.remove(&key);
                }
            }
        }
    }
}

/// A MAC route record as a backend reports it.
pub fn mac_record(key: MacKey, vtep: IpAddr, seq: u32, ip: Option<IpAddr>) -> Record {
    Record::Mac { key, route: MacRoute { vtep, seq, ip } }
}
