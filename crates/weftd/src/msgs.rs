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
    /// Run this pipeline from now on; answer when the old one is dropped.
    Swap(Arc<Pipeline>, Sender<()>),
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
    /// Where a bridge's packet-ins go (None: no controller).
    SetPacketIn(String, Option<SyncSender<PacketIn>>),
    /// Runs a frame through a bridge from a port without learning, counting or sending anything.
    Trace {
        bridge: String,
        in_port: String,
        frame: Vec<u8>,
        reply: Sender<Result<Vec<TraceStep>, String>>,
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

/// The handle the control thread keeps.
#[derive(Clone)]
pub struct DpHandle {
    pub tx: Sender<DpMsg>,
    pub wake: Arc<EventFd>,
}

impl DpHandle {
    pub fn send(&self, m: DpMsg) {
        let _ = self.tx.send(m);
        self.wake.wake();
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
