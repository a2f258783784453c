//! The switch: frames and a clock in, emissions out.
//!
//! [`Switch::process`] takes one received frame (where its bytes are, the port it came in on, the tunnel
//! sender, the 802.1Q tag the kernel took off, its offload header) and appends what is to be sent to an
//! [`Outputs`]: each [`Emission`] names the port, the bytes (a reference into the caller's buffers or into the
//! scratch area, never a copy of a frame that is forwarded as it is), the VLAN tag to put back, the remote
//! VTEP and VNI for a tunnel, and the offload header. It owns what switching needs: the pipeline (ports by
//! kind, bridges, flow tables), the MAC tables, the ARP/ND bindings, counters and flow statistics. It never
//! makes a system call and never reads a clock, so every decision can be tested with frames in and emissions
//! out (see `tests.rs`); weftd receives into buffers, calls it, and performs the emissions.
//!
//! `weft trace` runs the same code on a copy of the switch with an [`Observer`] that records each step: what
//! trace predicts is what the switch does, ARP/ND suppression included.

mod action_set;
pub mod bundle;
mod ct;
pub mod demux;
pub mod egress;
pub mod group;
mod interface;
mod key;
mod learn;
pub mod meter;
mod output;
mod packet_out;
mod patch;
pub mod pipeline;
mod rewrite;
mod state;
#[cfg(test)]
mod tests;
mod write;

use crate::bridge::{normal, Forward};
use crate::classifier::{slot, FlowCache, FlowKey, Slot};
use crate::counters::{DropReason, PortCounters};
use crate::fdb::{Fdb, FdbChanges, FdbEntry, Learned, Origin};
use crate::headers::Headers;
use crate::offload::{self, VnetHdr};
use crate::tunnel::Encap;
use crate::vlan::Egress;
use crate::{mtu, neigh, Nanos, PortIdx, SECOND};
pub use interface::*;
pub use key::flow_key;
use key::put_l3;
use pipeline::{port_config, ActRt, PortDesc, PortKind};
pub use pipeline::{Pipeline, OFPORT_LOCAL};
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use weft_wire::ethernet::{EtherType, HEADER_LEN as ETH_LEN};
use weft_wire::EthernetAddress;

/// A full MAC table is logged at most this often per bridge.
const FULL_LOG_INTERVAL: Nanos = 10 * SECOND;
/// MAC table entries [`Switch::tick`] ages every 100 ms at most (see `Fdb::expire_some`).
const FDB_EXPIRY_SLICE: usize = 4096;
/// Connection-table entries each worker's [`Switch::tick`] looks at every 100 ms at most.
const CT_EXPIRY_SLICE: usize = 16_384;
/// Most ICMP "too big" errors sent per second.
const ICMP_PER_SECOND: u32 = 1000;
/// Most nested resubmits and goto_tables.
const MAX_RESUBMIT: u8 = 32;

/// The switch: the pipeline it runs (shared, read-only) and its tables (what it learned and counted).
#[derive(Clone)]
pub struct Switch {
    pipe: Arc<Pipeline>,
    t: Tables,
}

/// What the switch learns and counts. The packet path borrows the pipeline beside it, never a copy of its
/// `Arc` (no atomic operation per frame on a counter every thread shares).
#[derive(Clone)]
pub(crate) struct Tables {
    fdbs: Vec<Fdb>,
    /// IP-to-MAC bindings per bridge, for ARP/ND suppression.
    neighs: Vec<neigh::NeighTable>,
    counters: Vec<PortCounters>,
    /// Per bridge and table: the exact-match cache, and each rule's counters.
    flow_caches: Vec<Vec<FlowCache>>,
    flow_stats: Vec<Vec<Vec<FlowStat>>>,
    /// Per bridge: the default NORMAL flow's counters while it is the bridge's only flow.
    default_stats: Vec<FlowStat>,
    /// Per bridge and table: (lookups, matches), for OpenFlow's table statistics.
    table_stats: Vec<Vec<(u64, u64)>>,
    /// Ports whose link is down, by name and by index in the current pipeline.
    link_down: HashSet<String>,
    link_down_rt: Vec<bool>,
    /// Flood lists of `remote_ip=flow` ports from the control plane, by port name and by port index.
    cp_flood: HashMap<String, Arc<[IpAddr]>>,
    cp_flood_rt: Vec<Option<Arc<[IpAddr]>>>,
    /// When each bridge last reported a full MAC table.
    full_logged: Vec<Nanos>,
    /// ICMP errors that may still be sent this second (path-MTU signalling is rate-limited).
    icmp_tokens: u32,
    icmp_second: Nanos,
    /// When the MAC tables and the ARP/ND bindings were last aged.
    last_fdb_expiry: Nanos,
    last_neigh_expiry: Nanos,
    /// Other workers run their own copy of the switch: what learning changed is noted in `learnt` for them.
    share: bool,
    learnt: Vec<Learnt>,
    /// Frames crossing patch ports, taken from [`Outputs`] a round at a time (kept for its capacity).
    patch_work: Vec<Emission>,
    /// Per bridge and group (the pipeline's order): what the group and each bucket took.
    group_stats: Vec<Vec<group::GroupStat>>,
    /// A copy for `weft trace`: the shared connection tracker is asked, never changed.
    ct_dry: bool,
}

impl Default for Switch {
    fn default() -> Self {
        Switch::new()
    }
}

/// What a frame carries through a flow's actions.
#[derive(Clone)]
struct ActState {
    /// The packet's key as the actions so far left it: later tables look it up (registers, metadata and
    /// rewritten fields included).
    key: FlowKey,
    data: Data,
    tci: u16,
    hdr: Headers,
    gso: Option<VnetHdr>,
    /// Tunnel ID and destination set by the actions.
    vni: Option<u32>,
    tun_dst: Option<IpAddr>,
    /// The frame was copied to the scratch area to be rewritten.
    copied: bool,
    /// A tunnel it was sent to was too small.
    too_big: Option<u16>,
    /// `exit` ran: nothing more runs, in this table or in those that resubmitted to it.
    exit: bool,
    /// The `push`/`pop` stack: its values, and how many it holds.
    stack: [u128; STACK_DEPTH],
    depth: u8,
    /// The flow whose actions run now ([`action_set::here`]), for `write_actions` to name them.
    cur: u64,
    /// The action set: the `write_actions` instructions met so far, in order ([`action_set::entry`]).
    set: [u64; action_set::SET_MAX],
    set_len: u8,
}

/// Values the `push`/`pop` stack holds for one packet (OVS's has no fixed bound; the flows that use it —
/// swapping two fields — need two or three).
pub const STACK_DEPTH: usize = 8;

impl ActState {
    fn new(key: FlowKey, data: Data, tci: u16, hdr: Headers, gso: Option<VnetHdr>) -> ActState {
        let (vni, tun_dst, too_big, stack) = (None, None, None, [0; STACK_DEPTH]);
        let (cur, set) = (action_set::NOWHERE, [0; action_set::SET_MAX]);
        ActState {
            key,
            data,
            tci,
            hdr,
            gso,
            vni,
            tun_dst,
            copied: false,
            too_big,
            exit: false,
            stack,
            depth: 0,
            cur,
            set,
            set_len: 0,
        }
    }

    /// Sets the frame's VLAN (TCI, 0 for none) and the key's `vlan_tci` with it.
    fn set_tci(&mut self, tci: u16) {
        self.tci = tci;
        self.key.put(slot::VLAN_TCI, vlan_key(tci));
    }
}

/// The key's `vlan_tci` for a frame's TCI: with the CFI bit standing for "tagged", 0 when untagged.
fn vlan_key(tci: u16) -> u128 {
    if tci & 0x0fff != 0 {
        u128::from(tci | 0x1000)
    } else {
        0
    }
}

impl Switch {
    /// A switch with nothing in it.
    pub fn new() -> Switch {
        Switch { pipe: Arc::new(Pipeline::default()), t: Tables::new() }
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipe
    }
}

impl Tables {
    /// Port `port`'s counters.
    pub(crate) fn counter(&mut self, port: PortIdx) -> &mut PortCounters {
        &mut self.counters[usize::from(port.0)]
    }

    fn new() -> Tables {
        Tables {
            fdbs: Vec::new(),
            neighs: Vec::new(),
            counters: Vec::new(),
            flow_caches: Vec::new(),
            flow_stats: Vec::new(),
            default_stats: Vec::new(),
            table_stats: Vec::new(),
            link_down: HashSet::new(),
            link_down_rt: Vec::new(),
            cp_flood: HashMap::new(),
            cp_flood_rt: Vec::new(),
            full_logged: Vec::new(),
            icmp_tokens: ICMP_PER_SECOND,
            icmp_second: 0,
            last_fdb_expiry: 0,
            last_neigh_expiry: 0,
            share: false,
            learnt: Vec::new(),
            patch_work: Vec::new(),
            group_stats: Vec::new(),
            ct_dry: false,
        }
    }
}

impl Switch {
    /// Whether other workers run copies of this switch: then what it learns is kept for
    /// [`Switch::take_learnt`] (new addresses, moves, and each address's first frame in a second).
    pub fn share_learning(&mut self, on: bool) {
        self.t.share = on;
        self.t.learnt.clear();
    }

    /// Moves what this switch learned since the last call to the end of `into`.
    pub fn take_learnt(&mut self, into: &mut Vec<Learnt>) {
        into.append(&mut self.t.learnt);
    }

    /// Makes what other workers learned: each address goes where it was seen last (a change learned in
    /// another pipeline than the running one is left out).
    pub fn apply_learnt(&mut self, changes: &[Learnt]) {
        let generation = self.pipe.generation;
        for l in changes {
            match *l {
                Learnt::Mac { generation: g, bridge, vlan, mac, port, remote, at } if g == generation => {
                    if let Some(fdb) = self.t.fdbs.get_mut(usize::from(bridge)) {
                        fdb.learn_from_peer(vlan, mac, port, remote, at);
                    }
                }
                Learnt::Neigh { generation: g, bridge, vlan, ip, mac, from_tunnel, at } if g == generation => {
                    let (Some(b), Some(t)) =
                        (self.pipe.bridges.get(usize::from(bridge)), self.t.neighs.get_mut(usize::from(bridge)))
                    else {
                        continue;
                    };
                    let seen = neigh::Seen { vlan, now: at, max: b.table_size, aging_secs: b.aging_secs, from_tunnel };
                    t.learn_from_peer(ip, mac, &seen);
                }
                _ => {}
            }
        }
    }

    /// Runs `new` from now on, carrying MAC tables, bindings, counters and flow statistics over by bridge,
    /// port and flow (ports are matched by name, flows by id).
    pub fn install(&mut self, new: Arc<Pipeline>, now: Nanos) {
        debug_assert!(new.generation > self.pipe.generation || new.generation == 0, "pipeline went backwards");
        let old = std::mem::replace(&mut self.pipe, new);
        let p = self.pipe.clone();
        let old_bridge = |name: &str| old.bridges.iter().position(|ob| ob.name == name);
        let old_port = |name: &str| old.ports.iter().position(|op| op.name == name);
        let mut fdbs: Vec<Fdb> = Vec::with_capacity(p.bridges.len());
        for b in &p.bridges {
            let mut fdb = match old_bridge(&b.name) {
                Some(oi) => std::mem::take(&mut self.t.fdbs[oi]),
                None => Fdb::default(),
            };
            fdb.set_limits(b.aging_secs, b.table_size);
            fdb.remap_ports(|op| {
                let name = &old.ports.get(usize::from(op.0))?.name;
                p.ports.iter().position(|np| &np.name == name).map(|i| PortIdx(i as u16))
            });
            // After the remap: static entries already carry the new pipeline's port indices.
            fdb.replace_static(b.statics.iter().copied());
            fdbs.push(fdb);
        }
        self.t.fdbs = fdbs;
        let mut old_neighs = std::mem::take(&mut self.t.neighs);
        self.t.neighs = p
            .bridges
            .iter()
            .map(|b| match old_bridge(&b.name) {
                Some(i) if i < old_neighs.len() => std::mem::take(&mut old_neighs[i]),
                _ => Default::default(),
            })
            .collect();
        self.t.full_logged = p
            .bridges
            .iter()
            .map(|b| old_bridge(&b.name).and_then(|i| self.t.full_logged.get(i).copied()).unwrap_or(0))
            .collect();
        self.t.counters = p
            .ports
            .iter()
            .map(|np| old_port(&np.name).and_then(|i| self.t.counters.get(i).cloned()).unwrap_or_default())
            .collect();
        // GRE sequence numbers follow their port by name.
        // (Every worker carries them over; the largest number wins.)
        for (np, seq) in p.ports.iter().zip(&p.gre_seq) {
            if let Some(old_seq) = old_port(&np.name).and_then(|i| old.gre_seq.get(i)) {
                seq.fetch_max(old_seq.load(Ordering::Relaxed), Ordering::Relaxed);
            }
        }
        self.t.cp_flood_rt = p.ports.iter().map(|np| self.t.cp_flood.get(&np.name).cloned()).collect();
        self.t.link_down_rt = p.ports.iter().map(|np| self.t.link_down.contains(&np.name)).collect();
        // Flow tables were rebuilt: fresh caches; counters follow their rule by id.
        let mut old_stats: HashMap<u64, FlowStat> = HashMap::new();
        for (bi, b) in old.bridges.iter().enumerate() {
            for (ti, t) in b.tables.iter().enumerate() {
                for (ri, r) in t.rules.iter().enumerate() {
                    if let Some(s) = self.t.flow_stats.get(bi).and_then(|x| x.get(ti)).and_then(|x| x.get(ri)) {
                        old_stats.insert(r.id, *s);
                    }
                }
            }
            // The default flow's counters stay with it (by id) while it stays the bridge's only flow.
            if let (Some(id), Some(s)) = (b.default_flow, self.t.default_stats.get(bi)) {
                old_stats.insert(id, *s);
            }
        }
        let fresh = FlowStat { last_used: now, ..Default::default() };
        let stat = |id: u64| old_stats.get(&id).copied().unwrap_or(fresh);
        // Table counters stay with their bridge (by name).
        self.t.table_stats = p
            .bridges
            .iter()
            .map(|b| {
                let mut t = old_bridge(&b.name).and_then(|i| self.t.table_stats.get(i).cloned()).unwrap_or_default();
                t.resize(b.tables.len().max(1), (0, 0));
                t
            })
            .collect();
        self.t.default_stats = p.bridges.iter().map(|b| b.default_flow.map_or(fresh, stat)).collect();
        self.t.flow_caches =
            p.bridges.iter().map(|b| b.tables.iter().map(|_| FlowCache::default()).collect()).collect();
        self.t.flow_stats = p
            .bridges
            .iter()
            .map(|b| b.tables.iter().map(|t| t.rules.iter().map(|r| stat(r.id)).collect()).collect())
            .collect();
        self.t.group_stats = group::carry_stats(&old, &p, std::mem::take(&mut self.t.group_stats));
    }

    /// Ages MAC tables and ARP/ND bindings; call it every 100 ms or so. MAC tables age in slices (never a
    /// scan of a whole table in one go): 4 096 entries every 100 ms at most, 40 960 a second.
    pub fn tick(&mut self, now: Nanos) {
        if now.saturating_sub(self.t.last_fdb_expiry) >= SECOND / 10 {
            for f in &mut self.t.fdbs {
                f.expire_some(now, FDB_EXPIRY_SLICE);
            }
            // The connection tracker is shared: each worker sweeps a slice of it.
            if !self.pipe.conntrack.is_empty() {
                self.pipe.conntrack.sweep(now, CT_EXPIRY_SLICE);
            }
            self.t.last_fdb_expiry = now;
        }
        if now.saturating_sub(self.t.last_neigh_expiry) >= SECOND {
            for (n, b) in self.t.neighs.iter_mut().zip(&self.pipe.bridges) {
                n.expire(now, b.aging_secs);
            }
            self.t.last_neigh_expiry = now;
        }
    }

    /// Runs a controller's packet-out: `actions` (OFPP_TABLE being a resubmit to table 0) on the frame, as
    /// if it came in on `input.in_port`, or, with `from_controller`, from the controller itself (then
    /// `input.in_port` is the bridge's internal port, standing in; flows see in_port=CONTROLLER).
    #[allow(clippy::too_many_arguments)]
    pub fn packet_out(
        &mut self,
        bufs: &mut Buffers,
        input: Input,
        from_controller: bool,
        (actions, cts): (&[ActRt], &[pipeline::CtRt]),
        now: Nanos,
        out: &mut Outputs,
        obs: &mut impl Observer,
    ) {
        let Switch { pipe, t } = self;
        t.packet_out(pipe, bufs, input, from_controller, (actions, cts), now, out, obs);
    }

    /// Switches one received frame: VLAN ingress, then the bridge's flow tables or (with only the default
    /// flow) straight to the learning switch. Inside the switch every frame is untagged and belongs to one
    /// VLAN; a tag still in the frame is taken off here, in place.
    pub fn process(
        &mut self,
        bufs: &mut Buffers,
        input: Input,
        now: Nanos,
        out: &mut Outputs,
        obs: &mut impl Observer,
    ) {
        let Switch { pipe, t } = self;
        t.process(pipe, bufs, input, now, out, obs);
    }
}

impl Tables {
    /// Switches one received frame: VLAN ingress, then the bridge's flow tables or (with only the default
    /// flow) straight to the learning switch. Inside the switch every frame is untagged and belongs to one
    /// VLAN; a tag still in the frame is taken off here, in place.
    fn process(
        &mut self,
        pipe: &Pipeline,
        bufs: &mut Buffers,
        input: Input,
        now: Nanos,
        out: &mut Outputs,
        obs: &mut impl Observer,
    ) {
        let Input { data, in_port, remote, stripped, mut gso, tun_md } = input;
        let (data, tci) = match stripped {
            Some(t) => (data, Some(t)),
            None => match pop_tag(bufs.get_mut(data)) {
                Some(t) => {
                    // The offload header counts from the frame's start: the tag's 4 bytes are gone.
                    gso = gso.map(|g| g.untagged());
                    (data.skip(4), Some(t))
                }
                None => (data, None),
            },
        };
        self.enter(
            pipe,
            bufs,
            Frame { data, in_port, remote, tci: 0, gso, hdr: Headers::default() },
            tci,
            tun_md,
            now,
            out,
            obs,
        );
        self.run_patched(pipe, bufs, now, out, obs);
    }

    /// A frame entering a bridge by `frame.in_port` (its tag already off; `tci`: the tag it came with):
    /// VLAN ingress, then the flow tables or the learning switch. `frame`'s VLAN and headers are filled in
    /// here.
    #[allow(clippy::too_many_arguments)]
    fn enter(
        &mut self,
        pipe: &Pipeline,
        bufs: &mut Buffers,
        frame: Frame,
        tci: Option<u16>,
        tun_md: TunMd,
        now: Nanos,
        out: &mut Outputs,
        obs: &mut impl Observer,
    ) {
        let Frame { data, in_port, remote, gso, .. } = frame;
        let port = pipe.port(in_port);
        if port.of_config & (port_config::PORT_DOWN | port_config::NO_RECV) != 0 {
            obs.on(|| note(format!("dropped: port {} is configured down or not to receive", port.name)));
            self.counters[usize::from(in_port.0)].drop(DropReason::PortConfig);
            return;
        }
        let Some(tci) = port.vlan.ingress(tci) else {
            obs.on(|| {
                note(format!("dropped at the input port: it does not carry VLAN {}", tci.map_or(0, |t| t & 0xfff)))
            });
            self.counters[usize::from(in_port.0)].drop(DropReason::Vlan);
            return;
        };
        obs.on(|| note(format!("input port {}, VLAN {}", port.name, tci & 0xfff)));
        if data.len() < ETH_LEN {
            self.counters[usize::from(in_port.0)].drop(DropReason::Malformed);
            return;
        }
        // The headers, parsed once: classification, the flow hash and the MTU check all read them.
        let hdr = Headers::parse(bufs.get(data));
        let frame = Frame { data, in_port, remote, tci, gso, hdr };
        let bridge = port.bridge;
        let b = &pipe.bridges[bridge];
        if b.fail_open.load(Ordering::Relaxed) && !b.tables.is_empty() {
            obs.on(|| note("fail-open: no controller connected, the learning switch instead of the flows".into()));
            self.normal_switch(pipe, bufs, frame, now, out, obs);
        } else if b.tables.is_empty() {
            // The default flow's counters, and table 0's: every frame is looked up and matched.
            let s = &mut self.default_stats[bridge];
            s.packets += 1;
            s.bytes += data.len() as u64;
            s.last_used = now;
            let t = &mut self.table_stats[bridge][0];
            t.0 += 1;
            t.1 += 1;
            self.normal_switch(pipe, bufs, frame, now, out, obs);
        } else {
            let mut key = flow_key(port, remote, bufs.get(data), tci, &hdr);
            tun_md.put(&mut key);
            let mut st = ActState::new(key, data, tci, hdr, gso);
            let mut run = Run {
                pipe,
                bufs: &mut *bufs,
                out: &mut *out,
                obs: &mut *obs,
                now,
                bridge,
                in_port,
                remote,
                from_controller: false,
                extra_cts: &[],
            };
            self.run_table(&mut run, 0, &mut st, 0);
            self.run_action_set(&mut run, &mut st);
            if let Some(mtu) = st.too_big {
                self.signal_too_big(pipe, bufs, in_port, st.data, mtu, tci, now, out, obs);
            }
        }
    }

    /// Looks the frame up in `table` and runs the matching rule's actions; a miss drops it (OpenFlow 1.3).
    fn run_table<O: Observer>(&mut self, r: &mut Run<'_, '_, O>, table: usize, st: &mut ActState, depth: u8) {
        let pipe = r.pipe;
        let bridge = r.bridge;
        let b = &pipe.bridges[bridge];
        let Some(t) = b.tables.get(table) else { return };
        if depth > MAX_RESUBMIT {
            return;
        }
        let hit = self.flow_caches[bridge][table].lookup(&t.classifier, &st.key);
        r.obs.on(|| Step::Flow { table: table as u8, rule: hit.map(|ri| t.rules[ri as usize].id) });
        let ts = &mut self.table_stats[bridge][table];
        ts.0 += 1;
        ts.1 += u64::from(hit.is_some());
        let in_port = r.in_port;
        let Some(ri) = hit else {
            self.counters[usize::from(in_port.0)].drop(DropReason::NoFlow);
            return;
        };
        let stat = &mut self.flow_stats[bridge][table][ri as usize];
        stat.packets += 1;
        stat.bytes += st.data.len() as u64;
        stat.last_used = r.now;
        let rule = &t.rules[ri as usize];
        if rule.actions.is_empty() {
            self.counters[usize::from(in_port.0)].drop(DropReason::FlowDrop);
        }
        let caller = st.cur;
        st.cur = action_set::here(table, ri);
        self.apply_actions(r, table, (rule.cookie, rule.table_miss), &rule.actions, st, depth);
        st.cur = caller;
    }

    /// Runs `actions` (a flow's, found in `table`, with its cookie and whether it is the table-miss flow; or
    /// a packet-out's) on the frame.
    fn apply_actions<O: Observer>(
        &mut self,
        r: &mut Run<'_, '_, O>,
        table: usize,
        (cookie, table_miss): (u64, bool),
        actions: &[ActRt],
        st: &mut ActState,
        depth: u8,
    ) {
        let pipe = r.pipe;
        let bridge = r.bridge;
        let b = &pipe.bridges[bridge];
        let in_port = r.in_port;
        // The frame as it is now, for the controller.
        let packet_in = |st: &ActState, max_len: u16, reason: u8, controller_id: u16| ToController {
            bridge,
            in_port,
            table: table as u8,
            cookie,
            table_miss,
            max_len,
            reason,
            controller_id,
            data: st.data,
            tci: st.tci,
        };
        let mut next = 0;
        while let Some(act) = actions.get(next) {
            next += 1;
            if st.exit {
                return;
            }
            let out = |sw: &mut Self, r: &mut Run<'_, '_, O>, st: &mut ActState, port: PortIdx| {
                // Tunnel metadata the packet has (received or written) leaves with it by a Geneve port.
                let geneve = |p: PortIdx| pipe.port(p).tunnel().is_some_and(|t| t.spec.encap == Encap::Geneve);
                let md = if st.key.get(slot::TUN_MD_PRESENT) != 0 && geneve(port) {
                    r.out.tun_mds.push(TunMd::of(&st.key));
                    r.out.tun_mds.len() as u32
                } else {
                    0
                };
                let e = Emission {
                    port,
                    data: st.data,
                    tci: st.tci,
                    tagged: false,
                    remote: st.tun_dst,
                    vni: st.vni,
                    hash: st.hdr.hash,
                    gso: st.gso,
                    md,
                };
                let too_big = sw.output(pipe, e, &st.hdr, r.out, r.obs);
                st.too_big = st.too_big.or(too_big);
                // What was sent refers to these bytes: a later rewrite works on a copy of its own.
                st.copied = false;
            };
            match *act {
                ActRt::Output(p) if p != in_port || r.from_controller => out(self, r, st, p),
                ActRt::Output(_) => {}
                ActRt::OutputReg(src) => {
                    let mut n = st.key.get_bits(src) as u32;
                    if src.nbits <= 16 && n >= 0xff00 {
                        n |= 0xffff_0000;
                    }
                    match pipe.port_by_ofport(bridge, n) {
                        Some(p) if p != in_port || r.from_controller => out(self, r, st, p),
                        _ => {}
                    }
                }
                ActRt::InPort => out(self, r, st, in_port),
                ActRt::OutputTrunc(p, max_len) => {
                    // The first bytes only (a cut frame is no longer the offloaded whole its header says).
                    let (data, gso) = (st.data, st.gso);
                    if data.len > max_len {
                        (st.data.len, st.gso) = (max_len, None);
                    }
                    out(self, r, st, p.unwrap_or(in_port));
                    (st.data, st.gso) = (data, gso);
                }
                ActRt::Flood | ActRt::All => {
                    let flood = matches!(act, ActRt::Flood);
                    for &p in &b.ports {
                        if p != in_port && !(flood && pipe.port(p).of_config & port_config::NO_FLOOD != 0) {
                            out(self, r, st, p);
                        }
                    }
                }
                ActRt::Normal => {
                    let frame =
                        Frame { data: st.data, in_port, remote: r.remote, tci: st.tci, gso: st.gso, hdr: st.hdr };
                    self.normal_switch(pipe, r.bufs, frame, r.now, r.out, r.obs);
                }
                ActRt::Controller { .. } if pipe.port(in_port).of_config & port_config::NO_PACKET_IN != 0 => {
                    r.obs.on(|| note("controller: none (the input port is configured no-packet-in)".to_string()));
                }
                ActRt::Controller { max_len, reason, id } => {
                    r.obs.on(|| note("controller: a PACKET_IN".to_string()));
                    r.out.to_controller.push(packet_in(st, max_len, reason, id));
                    st.copied = false;
                }
                ActRt::ModVlanVid(v) => st.set_tci((st.tci & 0xf000) | (v & 0x0fff)),
                ActRt::StripVlan => st.set_tci(0),
                ActRt::PushVlan => st.set_tci(st.tci & 0xf000),
                ActRt::SetEthSrc(m) | ActRt::SetEthDst(m) => {
                    let (at, s) =
                        if matches!(act, ActRt::SetEthDst(_)) { (0, slot::DL_DST) } else { (6, slot::DL_SRC) };
                    st.key.put(s, u128::from(m.as_u64()));
                    if !self.rewrite(r, st, at, &m.0) {
                        return;
                    }
                }
                ActRt::SetTunId(v) => {
                    st.key.put(slot::TUN_ID, u128::from(v));
                    st.vni = Some(v as u32);
                }
                ActRt::SetTunDst(a) => {
                    if let IpAddr::V4(v4) = a {
                        st.key.put(slot::TUN_DST, u128::from(u32::from(v4)));
                    }
                    st.tun_dst = Some(a);
                }
                ActRt::SetBits { slot: s, value, mask } => {
                    st.key.set_masked(s, value, mask);
                    if !self.sync_field(r, st, s) {
                        return;
                    }
                }
                ActRt::Move { src, dst } => {
                    let v = st.key.get_bits(src);
                    st.key.set_masked(dst.slot, v << dst.ofs, Slot::bits_mask(dst.ofs, dst.nbits));
                    if !self.sync_field(r, st, dst.slot) {
                        return;
                    }
                }
                ActRt::Resubmit { port: None, table: Some(0) } if b.tables.is_empty() => {
                    // Table 0 is the lone default flow (priority=0 actions=NORMAL): a packet-out to OFPP_TABLE.
                    let frame =
                        Frame { data: st.data, in_port, remote: r.remote, tci: st.tci, gso: st.gso, hdr: st.hdr };
                    self.normal_switch(pipe, r.bufs, frame, r.now, r.out, r.obs);
                }
                ActRt::Resubmit { port, table: t2 } => {
                    // As OVS: the lookup (and the actions it runs) sees PORT as the input port; the input
                    // port comes back afterwards, while whatever else those actions changed stays.
                    let from = port.unwrap_or(in_port);
                    let saved_key = st.key.get(slot::IN_PORT);
                    if port.is_some() {
                        st.key.put(slot::IN_PORT, u128::from(pipe.port(from).ofport));
                    }
                    let t2 = t2.map_or(table, usize::from);
                    let saved = r.in_port;
                    r.in_port = from;
                    self.run_table(r, t2, st, depth + 1);
                    r.in_port = saved;
                    st.key.put(slot::IN_PORT, saved_key);
                }
                ActRt::GotoTable(t2) => self.run_table(r, usize::from(t2), st, depth + 1),
                ActRt::Exit => st.exit = true,
                ActRt::DecTtl if st.hdr.ip => {
                    let ttl = st.key.get(slot::NW_TTL) as u8;
                    if ttl <= 1 {
                        self.counters[usize::from(r.in_port.0)].drop(DropReason::TtlExpired);
                        // As OVS: the whole packet to controller 0 as an invalid-TTL packet-in (which only
                        // connections that asked for those take), and no further.
                        if pipe.port(in_port).of_config & port_config::NO_PACKET_IN == 0 {
                            r.out.to_controller.push(packet_in(st, u16::MAX, pipeline::REASON_INVALID_TTL, 0));
                            st.copied = false;
                        }
                        st.exit = true;
                        return;
                    }
                    st.key.put(slot::NW_TTL, u128::from(ttl - 1));
                    if !self.sync_field(r, st, slot::NW_TTL) {
                        return;
                    }
                }
                ActRt::DecTtl => {}
                ActRt::Group(id) => self.run_group(r, table, (cookie, table_miss), id, st, depth),
                ActRt::Meter(id) => {
                    if !self.run_meter(r, st, id) {
                        return;
                    }
                }
                ActRt::Bundle(bd) => match self.bundle_member(pipe, &bd, &st.key) {
                    Some(p) if bd.dst.is_none() && p != in_port => out(self, r, st, p),
                    m => {
                        if !self.bundle_load(r, st, &bd, m) {
                            return;
                        }
                    }
                },
                ActRt::Multipath { .. } => {
                    if !self.multipath(r, st, *act) {
                        return;
                    }
                }
                ActRt::StackPush(_) | ActRt::StackPop(_) => {
                    if !self.stack_op(r, st, *act) {
                        return;
                    }
                }
                ActRt::Ct(i) => {
                    if !self.run_ct(r, i, st, depth) {
                        return;
                    }
                }
                ActRt::CtClear => ct::clear(&mut st.key),
                ActRt::Learn { .. } => next += learn::learn(r, *act, &actions[next..], st),
                ActRt::LearnSrc(_) => {}
                ActRt::FinTimeout { .. } => learn::fin_timeout(r, *act, st),
                ActRt::PushMpls(t) => {
                    if !self.push_mpls(r, st, t) {
                        return;
                    }
                }
                ActRt::PopMpls(t) => {
                    if !self.pop_mpls(r, st, t) {
                        return;
                    }
                }
                ActRt::SetMplsTtl(_) | ActRt::DecMplsTtl => {
                    if !self.mpls_ttl(r, st, *act) {
                        return;
                    }
                }
                ActRt::WriteActions(n) => {
                    action_set::write(st, next, n);
                    next += usize::from(n);
                }
                ActRt::ClearActions => st.set_len = 0,
                ActRt::Clone(n) => {
                    let end = (next + usize::from(n)).min(actions.len());
                    let mut fork = st.clone();
                    // The copy's rewrites go to a copy of the frame; its action set is its own.
                    fork.copied = false;
                    fork.set_len = 0;
                    self.apply_actions(r, table, (cookie, table_miss), &actions[next..end], &mut fork, depth + 1);
                    st.too_big = st.too_big.or(fork.too_big);
                    // What the copy sent refers to these bytes: a later rewrite works on a copy of its own.
                    st.copied = false;
                    next = end;
                }
            }
        }
    }

    /// The NORMAL action: the learning switch (with ARP/ND suppression) on one frame.
    fn normal_switch(
        &mut self,
        pipe: &Pipeline,
        bufs: &mut Buffers,
        f: Frame,
        now: Nanos,
        out: &mut Outputs,
        obs: &mut impl Observer,
    ) {
        let Frame { data, in_port, remote, tci, gso, hdr } = f;
        let vlan = tci & 0x0fff;
        let frame = bufs.get(data);
        let (dst, src) = (EthernetAddress::from_bytes(&frame[0..6]), EthernetAddress::from_bytes(&frame[6..12]));
        let (hash, ethertype) = (hdr.hash, hdr.ethertype);
        let bridge = pipe.port(in_port).bridge;
        let b = &pipe.bridges[bridge];
        let d = normal(&mut self.fdbs[bridge], in_port, remote, vlan, src, dst, now);
        obs.on(|| {
            note(match d.forward {
                Forward::Output { port, remote } => format!(
                    "NORMAL: {dst} was learned on port {}{} (VLAN {vlan})",
                    pipe.port(port).name,
                    remote.map(|r| format!(" behind VTEP {r}")).unwrap_or_default()
                ),
                Forward::Flood => {
                    format!("NORMAL: {dst} is not in the MAC table (or is multicast): flood to VLAN {vlan}")
                }
                Forward::Filter => format!("NORMAL: {dst} sits behind the input port: nothing to do"),
            })
        });
        if self.share && matches!(d.learned, Some(Learned::New | Learned::Moved | Learned::Renewed)) {
            let (generation, bridge) = (pipe.generation, bridge as u16);
            self.learnt.push(Learnt::Mac { generation, bridge, vlan, mac: src, port: in_port, remote, at: now });
        }
        if d.learned == Some(Learned::Full) {
            self.counters[usize::from(in_port.0)].drop(DropReason::FdbFull);
            if now.saturating_sub(self.full_logged[bridge]) >= FULL_LOG_INTERVAL || self.full_logged[bridge] == 0 {
                self.full_logged[bridge] = now.max(1);
                let f = &self.fdbs[bridge];
                out.events.push(Event::MacTableFull { bridge, src, entries: f.len(), misses: f.learn_misses });
            }
        }
        // ARP and ND: learn who owns which address; answer requests for known ones instead of flooding them
        // through proxy tunnels. Bindings matter only where a proxy port can use them.
        let mut answered = false;
        if b.has_proxy && matches!(ethertype, EtherType::ARP | EtherType::IPV6) {
            let from_tunnel = matches!(pipe.port(in_port).kind, PortKind::Tunnel(_));
            let seen = neigh::Seen { vlan, now, max: b.table_size, aging_secs: b.aging_secs, from_tunnel };
            let query = self.neighs[bridge].observe(bufs.get(data), ETH_LEN, ethertype, &seen);
            if let Some((ip, mac)) = self.neighs[bridge].take_noted().filter(|_| self.share) {
                let (generation, bridge) = (pipe.generation, bridge as u16);
                self.learnt.push(Learnt::Neigh { generation, bridge, vlan, ip, mac, from_tunnel, at: now });
            }
            if let (Some(q), Forward::Flood) = (query, d.forward) {
                if let Some(mac) = self.neighs[bridge].lookup(vlan, q.target, now, b.aging_secs) {
                    let mut reply = [0u8; neigh::REPLY_MAX];
                    if let Some(len) = neigh::reply(bufs.get(data), mac, &mut reply) {
                        obs.on(|| note(format!("answered for {} ({mac}) instead of flooding it", q.target)));
                        answered = self.emit_local(pipe, bufs, in_port, &reply[..len], tci, out, obs);
                    }
                }
                for &p in &b.ports {
                    if p != in_port && is_proxy(pipe.port(p)) {
                        let c = &mut self.counters[usize::from(p.0)];
                        if answered {
                            c.nd_answered += 1;
                        } else {
                            c.nd_flooded += 1;
                        }
                    }
                }
            }
        }
        let emission = |port: PortIdx, remote: Option<IpAddr>| Emission {
            port,
            data,
            tci,
            tagged: false,
            remote,
            vni: None,
            hash,
            gso,
            md: 0,
        };
        let mut too_big = None;
        match d.forward {
            Forward::Output { port, remote } => too_big = self.output(pipe, emission(port, remote), &hdr, out, obs),
            Forward::Flood => {
                for &p in &b.ports {
                    let suppressed = answered && is_proxy(pipe.port(p));
                    let no_flood = pipe.port(p).of_config & port_config::NO_FLOOD != 0;
                    if p != in_port && !suppressed && !no_flood {
                        too_big = too_big.or(self.output(pipe, emission(p, None), &hdr, out, obs));
                    }
                }
            }
            Forward::Filter => {}
        }
        if let Some(mtu) = too_big {
            self.signal_too_big(pipe, bufs, in_port, data, mtu, tci, now, out, obs);
        }
    }

    /// Answers the sender of a frame too big for a tunnel with ICMP "fragmentation needed" or ICMPv6
    /// "packet too big" carrying `mtu`, sent back out of the port the frame came in on (at most
    /// [`ICMP_PER_SECOND`] a second).
    #[allow(clippy::too_many_arguments)]
    fn signal_too_big(
        &mut self,
        pipe: &Pipeline,
        bufs: &mut Buffers,
        in_port: PortIdx,
        data: Data,
        mtu: u16,
        tci: u16,
        now: Nanos,
        out: &mut Outputs,
        obs: &mut impl Observer,
    ) {
        if now / SECOND != self.icmp_second {
            self.icmp_second = now / SECOND;
            self.icmp_tokens = ICMP_PER_SECOND;
        }
        if self.icmp_tokens == 0 {
            return;
        }
        let mut reply = [0u8; mtu::REPLY_MAX];
        let Some(len) = mtu::too_big_reply(bufs.get(data), mtu, &mut reply) else { return };
        obs.on(|| note(format!("too big for the tunnel: the sender is told to use an MTU of {mtu}")));
        if self.emit_local(pipe, bufs, in_port, &reply[..len], tci, out, obs) {
            self.icmp_tokens -= 1;
        }
    }
}

/// A frame inside the switch: untagged, in its VLAN.
#[derive(Clone, Copy)]
struct Frame {
    data: Data,
    in_port: PortIdx,
    remote: Option<IpAddr>,
    tci: u16,
    gso: Option<VnetHdr>,
    hdr: Headers,
}

/// What running a frame through flow tables needs besides the switch.
struct Run<'p, 'b, O> {
    pipe: &'p Pipeline,
    bufs: &'p mut Buffers<'b>,
    out: &'p mut Outputs,
    obs: &'p mut O,
    now: Nanos,
    bridge: usize,
    in_port: PortIdx,
    remote: Option<IpAddr>,
    /// A packet-out from a controller: no port of the bridge is its input port (`in_port` is its internal
    /// port, standing in), so output to any port goes.
    from_controller: bool,
    /// A packet-out's own `ct` actions, numbered after the bridge's.
    extra_cts: &'p [pipeline::CtRt],
}

fn note(text: String) -> Step {
    Step::Note(text)
}

fn is_proxy(p: &PortDesc) -> bool {
    matches!(&p.kind, PortKind::Tunnel(t) if t.proxy)
}

/// Takes an inline 802.1Q tag off a frame, in place (the MAC addresses move 4 bytes on), and returns its TCI;
/// the frame then starts 4 bytes later.
fn pop_tag(frame: &mut [u8]) -> Option<u16> {
    if frame.len() < ETH_LEN + 4 || u16::from_be_bytes([frame[12], frame[13]]) != EtherType::VLAN {
        return None;
    }
    let tci = u16::from_be_bytes([frame[14], frame[15]]);
    frame.copy_within(0..12, 4);
    Some(tci)
}
