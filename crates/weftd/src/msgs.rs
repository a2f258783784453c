//! The messages weftd's threads send each other, in one leaf module: the control, datapath, IKE, OpenFlow and
//! control-plane threads all speak through these types, so none of their modules needs another's.

use crate::capture::Tap;
use crate::esp::{EspCounters, EspOp, SaCounters};
use crate::pipeline::Pipeline;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::sync::mpsc::{Sender, SyncSender};
use std::sync::Arc;
use weft_datapath::counters::PortCounters;
use weft_datapath::switch::{CpUpdate, FdbDelta, FdbRow, FdbStats};
use weft_ipsec::ike::PeerConfig;
use weft_sys::epoll::EventFd;

/// Messages from the control thread.
pub enum DpMsg {
    /// Run this pipeline from now on; answer when the old one is dropped. Every worker waits at the barrier
    /// twice, so that none runs the new pipeline while another still runs the old one.
    Swap(Arc<Pipeline>, Sender<()>, Arc<std::sync::Barrier>),
    Fdb(String, Sender<Option<Vec<FdbRow>>>),
    FdbFlush(String, Sender<bool>),
    Counters(String, Sender<Option<Vec<(String, u32, PortCounters)>>>),
    FdbStats(String, Sender<Option<FdbStats>>),
    /// Each flow's counters (id, packets, bytes, seconds since last used), or None for an unknown bridge.
    FlowStats(String, Sender<Option<Vec<FlowCounters>>>),
    /// The ports (by name) whose link is down: frames to them are counted, not sent.
    LinkDown(std::collections::HashSet<String>),
    /// Each table's (lookups, matches), table 0 first, or None for an unknown bridge.
    TableStats(String, Sender<Option<Vec<(u64, u64)>>>),
    /// Each group's statistics, by id.
    GroupStats(String, Sender<Option<Vec<(u32, weft_datapath::switch::group::GroupStat)>>>),
    /// Where a bridge's packet-ins go (None: no controller).
    SetPacketIn(String, Option<SyncSender<PacketIn>>),
    /// Runs a frame through a bridge from a port without learning, counting or sending anything.
    Trace {
        bridge: String,
        in_port: String,
        frame: Vec<u8>,
        reply: Sender<Result<Vec<TraceStep>, String>>,
    },
    /// A controller's PACKET_OUT on a bridge: the frame, from OpenFlow port `in_port` (OFPP_CONTROLLER or
    /// OFPP_ANY: from no port), with these actions.
    PacketOut {
        bridge: String,
        in_port: u32,
        actions: Vec<weft_api::flow::Action>,
        frame: Vec<u8>,
    },
    /// Start feeding a capture; answered with false when the port does not exist.
    Capture(Box<Tap>, Sender<bool>),
    /// Install, activate or remove a child SA.
    Esp(EspOp),
    /// The SAs' counters and the ESP drops.
    EspStats(Sender<(SaCounters, EspCounters)>),
    /// Where IKE messages received on UDP port 4500 go.
    IkeSink(SyncSender<IpsecMsg>),
    /// Remote VTEPs and MACs from a bridge's control plane.
    Cp(String, CpUpdate),
    /// Push the changes of a bridge's MAC table to this sink (the whole table first), at most every 100 ms
    /// and only when something changed; `None` stops it. A sink that returns false is dropped.
    WatchFdb(String, Option<FdbSink>),
}

/// Where a watched bridge's MAC table changes go: (bridge, what changed); false when nobody listens any more.
pub type FdbSink = Box<dyn FnMut(&str, FdbDelta) -> bool + Send>;

/// A flow's counters as the control side sees them: (flow id, packets, bytes, seconds since last used).
pub type FlowCounters = (u64, u64, u64, u64);

/// The handle the control side keeps: one channel and wake-up per datapath worker.
#[derive(Clone)]
pub struct DpHandle {
    workers: Arc<[(Sender<DpMsg>, Arc<EventFd>)]>,
}

impl DpHandle {
    pub fn new(workers: Vec<(Sender<DpMsg>, Arc<EventFd>)>) -> Self {
        DpHandle { workers: workers.into() }
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Sends `m` to the workers it concerns: what changes state to every one, a MAC-table watch to worker 0
    /// (every worker's table holds what the others learn, so one watcher sees it all).
    pub fn send(&self, m: DpMsg) {
        for (w, m) in m.copies(self.workers.len()).into_iter().enumerate() {
            let (tx, wake) = &self.workers[w];
            let _ = tx.send(m);
            wake.wake();
        }
    }

    /// Asks every worker (or, for a trace, worker 0) and merges their answers; `None` when one did not
    /// answer within `timeout`.
    pub fn ask<T: Merge>(&self, question: impl Fn(Sender<T>) -> DpMsg, timeout: std::time::Duration) -> Option<T> {
        let (tx, rx) = std::sync::mpsc::channel();
        let asked = if T::ONE { 1 } else { self.workers.len() };
        for (wtx, wake) in &self.workers[..asked] {
            let _ = wtx.send(question(tx.clone()));
            wake.wake();
        }
        drop(tx);
        let deadline = std::time::Instant::now() + timeout;
        let mut answers = Vec::with_capacity(asked);
        while answers.len() < asked {
            answers.push(rx.recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())).ok()?);
        }
        Some(T::merge(answers))
    }
}

impl DpMsg {
    /// This message for each of `n` workers (fewer: the first workers only).
    fn copies(self, n: usize) -> Vec<DpMsg> {
        let all = |m: &dyn Fn() -> DpMsg| (0..n).map(|_| m()).collect();
        match self {
            DpMsg::LinkDown(s) => all(&|| DpMsg::LinkDown(s.clone())),
            DpMsg::SetPacketIn(b, tx) => all(&|| DpMsg::SetPacketIn(b.clone(), tx.clone())),
            DpMsg::Esp(op) => all(&|| DpMsg::Esp(op.clone())),
            DpMsg::IkeSink(tx) => all(&|| DpMsg::IkeSink(tx.clone())),
            DpMsg::Cp(b, u) => all(&|| DpMsg::Cp(b.clone(), u.clone())),
            // Questions go through `DpHandle::ask`; a MAC-table watch and anything else to worker 0.
            m => vec![m],
        }
    }
}

/// Answers of several workers made one: counters summed, MAC tables joined (each address where it was seen
/// last).
pub trait Merge: Sized {
    /// Only worker 0 is asked (a trace runs on one copy of the switch).
    const ONE: bool = false;
    fn merge(answers: Vec<Self>) -> Self;
}

/// Merges per-worker answers that each may be `None` (an unknown bridge: the same for all).
fn each<T>(answers: Vec<Option<T>>, mut add: impl FnMut(&mut T, T)) -> Option<T> {
    let mut it = answers.into_iter();
    let mut acc = it.next()??;
    for a in it.flatten() {
        add(&mut acc, a);
    }
    Some(acc)
}

impl Merge for () {
    fn merge(_: Vec<()>) {}
}

impl Merge for bool {
    fn merge(answers: Vec<bool>) -> bool {
        answers.into_iter().any(|b| b)
    }
}

impl Merge for Result<Vec<TraceStep>, String> {
    const ONE: bool = true;
    fn merge(answers: Vec<Self>) -> Self {
        answers.into_iter().next().unwrap_or_else(|| Err("the datapath did not answer".into()))
    }
}

impl Merge for Option<Vec<FdbRow>> {
    /// Worker 0's table (it holds what every worker learned, within its size), each entry with its place
    /// and age from the worker that saw the address last.
    fn merge(answers: Vec<Self>) -> Self {
        each(answers, |acc, rows| {
            let at: std::collections::HashMap<(u16, weft_wire::EthernetAddress), usize> =
                acc.iter().enumerate().map(|(i, r)| ((r.vlan, r.mac), i)).collect();
            for r in rows {
                if let Some(&i) = at.get(&(r.vlan, r.mac)) {
                    if r.age < acc[i].age {
                        acc[i] = r;
                    }
                }
            }
        })
    }
}

impl Merge for Option<FdbStats> {
    fn merge(answers: Vec<Self>) -> Self {
        // Every worker holds every entry and ages its own copy: entries and aged are the largest; misses
        // and moves happen on one worker each.
        each(answers, |acc, s| {
            acc.entries = acc.entries.max(s.entries);
            acc.aged = acc.aged.max(s.aged);
            acc.learn_misses += s.learn_misses;
            acc.moves += s.moves;
        })
    }
}

impl Merge for Option<Vec<(String, u32, PortCounters)>> {
    fn merge(answers: Vec<Self>) -> Self {
        each(answers, |acc, v| {
            for (a, b) in acc.iter_mut().zip(&v) {
                a.2.add(&b.2);
            }
        })
    }
}

impl Merge for Option<Vec<FlowCounters>> {
    fn merge(answers: Vec<Self>) -> Self {
        each(answers, |acc, v| {
            for (a, b) in acc.iter_mut().zip(&v) {
                a.1 += b.1;
                a.2 += b.2;
                a.3 = a.3.min(b.3);
            }
        })
    }
}

impl Merge for Option<Vec<(u64, u64)>> {
    fn merge(answers: Vec<Self>) -> Self {
        each(answers, |acc, v| {
            for (a, b) in acc.iter_mut().zip(&v) {
                a.0 += b.0;
                a.1 += b.1;
            }
        })
    }
}

impl Merge for Option<Vec<(u32, weft_datapath::switch::group::GroupStat)>> {
    fn merge(answers: Vec<Self>) -> Self {
        // Every worker runs the same pipeline: the groups come in the same order.
        each(answers, |acc, v| {
            for ((_, a), (_, b)) in acc.iter_mut().zip(&v) {
                a.packets += b.packets;
                a.bytes += b.bytes;
                for (x, y) in a.buckets.iter_mut().zip(&b.buckets) {
                    x.0 += y.0;
                    x.1 += y.1;
                }
            }
        })
    }
}

impl Merge for (SaCounters, EspCounters) {
    fn merge(answers: Vec<Self>) -> Self {
        let mut it = answers.into_iter();
        let (mut sas, mut drops) = it.next().unwrap_or_default();
        for (s, d) in it {
            drops.add(&d);
            for (spi, out, packets, bytes) in s {
                match sas.iter_mut().find(|x| x.0 == spi && x.1 == out) {
                    Some(x) => {
                        x.2 += packets;
                        x.3 += bytes;
                    }
                    None => sas.push((spi, out, packets, bytes)),
                }
            }
        }
        (sas, drops)
    }
}

/// One step of a traced frame.
#[derive(Debug, Clone)]
pub enum TraceStep {
    /// Free text (VLAN handling, the NORMAL decision, a drop).
    Note(String),
    /// A flow matched: table, the flow's id (None: no flow matched, the frame is dropped).
    Flow { table: u8, id: Option<u64> },
    /// The frame would leave by this port.
    Output {
        port: String,
        vlan: Option<u16>,
        /// Where the tunnel packet goes: the unicast remote, or every VTEP a flood is replicated to (configured
        /// remotes, or those the control plane named: none yet is an empty list).
        remote: Option<Vec<IpAddr>>,
        vni: Option<u32>,
        /// The outer UDP source port (the flow's socket in the send pool).
        src_port: Option<u16>,
        too_big: Option<u16>,
    },
}

/// A packet for the controller.
pub struct PacketIn {
    pub in_port: u32,
    pub table: u8,
    pub cookie: u64,
    /// OFPR_NO_MATCH (0), OFPR_ACTION (1), or what the flow's controller(reason=…) said.
    pub reason: u8,
    /// Only connections with this controller ID (NXT_SET_CONTROLLER_ID; 0 unless set) get it.
    pub controller_id: u16,
    /// The frame's whole length; `data` may be cut shorter (max_len).
    pub total_len: u16,
    pub data: Vec<u8>,
}

/// Messages for the IKE thread.
pub enum IpsecMsg {
    /// The peers to protect, and the port-4500 sockets (IPv4, IPv6) to send IKE on.
    Config {
        peers: Vec<PeerConfig>,
        nat_t: Vec<Arc<OwnedFd>>,
    },
    /// An IKE message (non-ESP marker removed) that arrived on local port `local_port`.
    Ike {
        local_port: u16,
        from: SocketAddr,
        data: Vec<u8>,
    },
    Show {
        keys: bool,
        reply: Sender<weft_api::reply::IpsecShow>,
    },
    /// Rekey the child SAs (or the IKE SA) with one remote, or all.
    Rekey {
        remote: Option<IpAddr>,
        ike: bool,
        reply: Sender<usize>,
    },
}
