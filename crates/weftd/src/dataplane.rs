//! The datapath thread: waits on every port, moves batches of frames through the learning switch, and sends
//! them out in batches.
//!
//! Memory is allocated when the thread starts; per packet nothing is. A batch is received into fixed
//! buffers, every output is queued as a reference into those buffers (flooding to ten ports queues ten
//! references to one frame, not ten copies), and all queues are flushed before the next batch is received.

use crate::capture::Tap;
use crate::pipeline::{ActRt, Pipeline, PortIo, RxSocket};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;
use weft_api::{Encap, Inherit, TunnelSpec};
use weft_datapath::bridge::{normal, Forward};
use weft_datapath::classifier::{slot, FlowCache, FlowKey};
use weft_datapath::counters::{DropReason, PortCounters};
use weft_datapath::fdb::{Fdb, FdbEntry, Origin};
use weft_datapath::flowhash::flow_hash;
use weft_datapath::gro::{self, MergeRun};
use weft_datapath::offload::{self, VnetHdr, VNET_HDR_LEN};
use weft_datapath::tunnel::{decap, Decap, Tunnel};
use weft_datapath::vlan::Egress;
use weft_datapath::{mtu, neigh};
use weft_datapath::{Nanos, PortIdx};
use weft_sys::batch::{IpMeta, MmsgStorage, RecvBatch};
use weft_sys::epoll::{Epoll, EventFd};
use weft_wire::ethernet::{EtherType, EthernetFrame, HEADER_LEN as ETH_LEN};
use weft_wire::geneve::GenevePacket;
use weft_wire::gre::GreRepr;
use weft_wire::EthernetAddress;

/// Frames per receive batch.
pub const BATCH: usize = 64;
/// Room per buffer: a 64 KiB GSO frame plus its virtio-net header.
const STRIDE: usize = 65_536 + 256;
const HEADROOM: usize = 64;
/// Scratch for segmenting offloaded frames: a batch's worth of 64 KiB frames cut into segments, each with
/// its tunnel header.
const SEGMENT_ARENA: usize = 4 << 20;
/// Most segments one offloaded frame is cut into here (a 64 KiB frame with a 64-byte segment size).
const MAX_SEGMENTS: usize = 1024;
/// Most datagrams and bytes in one UDP_SEGMENT send (older kernels' UDP_MAX_SEGMENTS; the IP length limit
/// less headers).
const UDP_GSO_SEGMENTS: usize = 64;
const UDP_GSO_BYTES: usize = 65_000;
/// Most outputs queued between flushes (a flood of a full batch to 64 ports).
const TX_QUEUE: usize = BATCH * 64;

/// Longest header built per packet and prepended to a queued frame: a GRE header with every field (the
/// virtio-net header is 10 bytes; VXLAN and Geneve headers are the port's, not built per packet).
const PREFIX_MAX: usize = weft_wire::gre::HEADER_MAX;

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
    SetPacketIn(String, Option<std::sync::mpsc::SyncSender<crate::ofconn::PacketIn>>),
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
    Esp(crate::esp::EspOp),
    /// The SAs' counters and the ESP drops.
    EspStats(Sender<(crate::esp::SaCounters, crate::esp::EspCounters)>),
    /// Where IKE messages received on UDP port 4500 go.
    IkeSink(std::sync::mpsc::SyncSender<crate::ipsec::IpsecMsg>),
    /// Remote VTEPs and MACs from a bridge's control plane.
    Cp(String, CpUpdate),
}

/// What a control plane changes in a bridge: flood lists of `remote_ip=flow` ports and FDB entries.
#[derive(Debug, Default)]
pub struct CpUpdate {
    pub origin: Option<Origin>,
    /// Drop every entry and flood list this control plane installed before applying the rest.
    pub reset: bool,
    /// New flood lists by port name.
    pub flood: Vec<(String, Arc<[IpAddr]>)>,
    /// (VLAN, MAC, port name, remote VTEP).
    pub install: Vec<(u16, EthernetAddress, String, IpAddr)>,
    pub remove: Vec<(u16, EthernetAddress)>,
}

/// A flow's counters as the control side sees them: (flow id, packets, bytes, seconds since last used).
pub type FlowCounters = (u64, u64, u64, u64);

/// `fdb stats`: how full the MAC table is and what learning could not do.
pub struct FdbStats {
    pub entries: usize,
    pub max_entries: usize,
    pub learn_misses: u64,
    pub moves: u64,
    pub aged: u64,
}

/// One row of `fdb show`.
pub struct FdbRow {
    pub port: String,
    pub ofport: u32,
    pub vlan: u16,
    pub mac: EthernetAddress,
    pub age: u64,
    pub remote: Option<IpAddr>,
    pub origin: Origin,
}

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

/// Where a queued frame's bytes are.
#[derive(Clone, Copy)]
enum Bytes {
    Rx { slot: u16, start: u32, len: u32 },
    Seg { start: u32, len: u32 },
}

/// Which kernel object a queued frame leaves through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sink {
    Packet(PortIdx),
    Udp {
        pool: u16,
        socket: u16,
    },
    /// ESP towards the entry's destination: in UDP port 4500 or as IP protocol 50, over IPv4 or IPv6.
    Esp {
        v6: bool,
        udp: bool,
    },
}

#[derive(Clone, Copy)]
struct TxEntry {
    sink: Sink,
    port: PortIdx,
    bytes: Bytes,
    dest: Option<SocketAddr>,
    prefix: [u8; PREFIX_MAX],
    prefix_len: u8,
    /// The frame goes after the port's own tunnel header (VXLAN, Geneve) instead of `prefix`.
    port_header: bool,
    /// Outer TOS and TTL for this packet, when the port sets them.
    meta: IpMeta,
    /// An 802.1Q tag to insert after the MAC addresses.
    tag: Option<[u8; 4]>,
    /// A UDP_SEGMENT train: the bytes are whole datagrams of this size (the last may be shorter), headers
    /// included; 0 for one datagram or frame.
    segment: u16,
    /// Packets this entry stands for (the datagrams of a train).
    packets: u16,
    /// In a train: the tunnel header bytes in front of each datagram (not counted as frame bytes).
    train_head: u8,
    /// ESP: the UDP source port of the tunnel packet inside.
    sport: u16,
}

/// A frame's bytes, and the scratch area from `base` on to write into (a frame in the scratch area lies below
/// `base`).
fn frame_and_room<'a>(rx: &'a RecvBatch, seg: &'a mut [u8], base: usize, b: Bytes) -> (&'a [u8], &'a mut [u8]) {
    let (before, after) = seg.split_at_mut(base);
    (resolve(rx, before, b), after)
}

/// The bytes a queued frame refers to.
fn resolve<'a>(rx: &'a RecvBatch, seg: &'a [u8], b: Bytes) -> &'a [u8] {
    match b {
        Bytes::Rx { slot, start, len } => &rx.slot(usize::from(slot))[start as usize..(start + len) as usize],
        Bytes::Seg { start, len } => &seg[start as usize..(start + len) as usize],
    }
}

pub struct Dataplane {
    pipeline: Arc<Pipeline>,
    fdbs: Vec<Fdb>,
    counters: Vec<PortCounters>,
    rx: RecvBatch,
    seg: Vec<u8>,
    seg_used: usize,
    txq: Vec<TxEntry>,
    /// The queue's second buffer, for rewriting it without allocating.
    txq_scratch: Vec<TxEntry>,
    sinks: Vec<Sink>,
    mmsg: MmsgStorage,
    msgs: Receiver<DpMsg>,
    wake: Arc<EventFd>,
    clock: Instant,
    /// ICMP errors weft may still send this second (path-MTU signalling is rate-limited).
    icmp_tokens: u32,
    icmp_second: Nanos,
    /// When each bridge last logged a full MAC table.
    full_logged: Vec<Nanos>,
    /// IP-to-MAC bindings per bridge, for ARP/ND suppression.
    neighs: Vec<weft_datapath::neigh::NeighTable>,
    /// Next GRE sequence number per port (`options:seq=true`).
    gre_seq: Vec<u32>,
    /// Running captures, and per port whether any watches it (the one test the fast path makes).
    taps: Vec<Tap>,
    tapped: Vec<bool>,
    /// Per bridge and table: the exact-match cache, and each rule's counters.
    flow_caches: Vec<Vec<FlowCache>>,
    flow_stats: Vec<Vec<Vec<FlowStat>>>,
    /// Ports whose link is down, by name and by index in the current pipeline.
    link_down: std::collections::HashSet<String>,
    link_down_rt: Vec<bool>,
    /// Per bridge: the default NORMAL flow's counters while it is the bridge's only flow.
    default_stats: Vec<FlowStat>,
    /// Per bridge and table: (lookups, matches), for OpenFlow's table statistics.
    table_stats: Vec<Vec<(u64, u64)>>,
    /// Packet-in channels by bridge name, and by bridge index in the running pipeline.
    packet_in: std::collections::HashMap<String, std::sync::mpsc::SyncSender<crate::ofconn::PacketIn>>,
    packet_in_rt: Vec<Option<std::sync::mpsc::SyncSender<crate::ofconn::PacketIn>>>,
    /// While `weft trace` runs a frame through: the steps it took. Nothing is learned, counted or sent then.
    trace: Option<Vec<TraceStep>>,
    /// Receive errors are logged at most once a second.
    rx_log: crate::log::RateLimit,
    /// The frame being switched is an offloaded one (a TSO/USO frame from a port, or TCP segments merged on
    /// receive): what its virtio-net header says. Outputs that can take it whole get it whole; the others get
    /// it cut into segments.
    cur_gso: Option<VnetHdr>,
    /// Offloads allowed (`WEFT_OFFLOADS`), and sending UDP_SEGMENT trains (off after the kernel refuses one).
    offloads: bool,
    udp_gso: bool,
    /// Where the segments of the frame being cut are in `seg`.
    seg_list: Vec<(u32, u32)>,
    /// IPsec: child SAs, the buffer ESP packets are sealed in, and where IKE messages from port 4500 go.
    esp: crate::esp::EspTable,
    esp_buf: Vec<u8>,
    ike_tx: Option<std::sync::mpsc::SyncSender<crate::ipsec::IpsecMsg>>,
    /// Flood lists of `remote_ip=flow` ports from the control plane, by port name and by port index.
    cp_flood: std::collections::HashMap<String, Arc<[IpAddr]>>,
    cp_flood_rt: Vec<Option<Arc<[IpAddr]>>>,
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

/// A full MAC table is logged at most this often per bridge.
const FULL_LOG_INTERVAL: Nanos = 10 * weft_datapath::SECOND;
/// MAC table entries the timer ages every 100 ms at most (see `Fdb::expire_some`).
const FDB_EXPIRY_SLICE: usize = 4096;

/// Most ICMP "too big" errors sent per second.
const ICMP_PER_SECOND: u32 = 1000;

const TOKEN_CONTROL: u64 = u64::MAX;
const TOKEN_UDP: u64 = 1 << 32;
const TOKEN_ESP: u64 = 1 << 33;
/// Room per sealed ESP packet (a jumbo-frame underlay's packet and ESP's overhead).
const ESP_STRIDE: usize = 9216 + 256;

impl Dataplane {
    pub fn new(pipeline: Arc<Pipeline>, msgs: Receiver<DpMsg>, wake: Arc<EventFd>) -> Self {
        let mut dp = Dataplane {
            pipeline: Arc::new(Pipeline::empty()),
            fdbs: Vec::new(),
            counters: Vec::new(),
            rx: RecvBatch::new(BATCH, STRIDE, HEADROOM),
            seg: vec![0u8; SEGMENT_ARENA],
            seg_used: 0,
            txq: Vec::with_capacity(TX_QUEUE),
            txq_scratch: Vec::with_capacity(TX_QUEUE),
            sinks: Vec::with_capacity(64),
            mmsg: MmsgStorage::new(BATCH),
            msgs,
            wake,
            clock: Instant::now(),
            icmp_tokens: ICMP_PER_SECOND,
            icmp_second: 0,
            full_logged: Vec::new(),
            neighs: Vec::new(),
            gre_seq: Vec::new(),
            taps: Vec::new(),
            tapped: Vec::new(),
            flow_caches: Vec::new(),
            flow_stats: Vec::new(),
            default_stats: Vec::new(),
            table_stats: Vec::new(),
            link_down: Default::default(),
            link_down_rt: Vec::new(),
            packet_in: Default::default(),
            packet_in_rt: Vec::new(),
            trace: None,
            rx_log: Default::default(),
            cur_gso: None,
            offloads: weft_sys::offloads_enabled(),
            udp_gso: weft_sys::offloads_enabled() && udp_gso_supported(),
            seg_list: Vec::with_capacity(MAX_SEGMENTS),
            esp: Default::default(),
            esp_buf: vec![0u8; BATCH * ESP_STRIDE],
            ike_tx: None,
            cp_flood: Default::default(),
            cp_flood_rt: Vec::new(),
        };
        dp.install(pipeline);
        dp
    }

    fn now(&self) -> Nanos {
        self.clock.elapsed().as_nanos() as Nanos
    }

    /// Switches to a new pipeline, carrying FDB entries and counters over by bridge and port name.
    fn install(&mut self, new: Arc<Pipeline>) {
        debug_assert!(new.generation > self.pipeline.generation || new.generation == 0, "pipeline went backwards");
        let old = std::mem::replace(&mut self.pipeline, new);
        let p = &self.pipeline;
        let mut fdbs: Vec<Fdb> = Vec::with_capacity(p.bridges.len());
        for b in &p.bridges {
            let mut fdb = match old.bridges.iter().position(|ob| ob.name == b.name) {
                Some(oi) => std::mem::take(&mut self.fdbs[oi]),
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
        self.fdbs = fdbs;
        let mut old_neighs = std::mem::take(&mut self.neighs);
        self.neighs = p
            .bridges
            .iter()
            .map(|b| match old.bridges.iter().position(|ob| ob.name == b.name) {
                Some(i) if i < old_neighs.len() => std::mem::take(&mut old_neighs[i]),
                _ => Default::default(),
            })
            .collect();
        self.full_logged = p
            .bridges
            .iter()
            .map(|b| {
                let old_index = old.bridges.iter().position(|ob| ob.name == b.name);
                old_index.and_then(|i| self.full_logged.get(i).copied()).unwrap_or(0)
            })
            .collect();
        let old_index = |name: &str| old.ports.iter().position(|op| op.name == name);
        self.counters = p
            .ports
            .iter()
            .map(|np| old_index(&np.name).and_then(|i| self.counters.get(i).cloned()).unwrap_or_default())
            .collect();
        self.gre_seq = p
            .ports
            .iter()
            .map(|np| old_index(&np.name).and_then(|i| self.gre_seq.get(i).copied()).unwrap_or(0))
            .collect();
        self.cp_flood_rt = p.ports.iter().map(|np| self.cp_flood.get(&np.name).cloned()).collect();
        self.link_down_rt = p.ports.iter().map(|np| self.link_down.contains(&np.name)).collect();
        // Flow tables were rebuilt: fresh caches; counters follow their rule by id.
        let mut old_stats: std::collections::HashMap<u64, FlowStat> = std::collections::HashMap::new();
        for (bi, b) in old.bridges.iter().enumerate() {
            for (ti, t) in b.tables.iter().enumerate() {
                for (ri, r) in t.rules.iter().enumerate() {
                    if let Some(s) = self.flow_stats.get(bi).and_then(|x| x.get(ti)).and_then(|x| x.get(ri)) {
                        old_stats.insert(r.id, *s);
                    }
                }
            }
        }
        let now = self.now();
        // The default flow's counters stay with it (by id) while it stays the bridge's only flow; table
        // counters stay with their bridge (by name).
        for (bi, b) in old.bridges.iter().enumerate() {
            if let (Some(id), Some(s)) = (b.default_flow, self.default_stats.get(bi)) {
                old_stats.insert(id, *s);
            }
        }
        let old_tables: std::collections::HashMap<&str, Vec<(u64, u64)>> = old
            .bridges
            .iter()
            .enumerate()
            .filter_map(|(bi, b)| Some((b.name.as_str(), self.table_stats.get(bi)?.clone())))
            .collect();
        self.default_stats = p
            .bridges
            .iter()
            .map(|b| {
                b.default_flow
                    .and_then(|id| old_stats.get(&id).copied())
                    .unwrap_or(FlowStat { last_used: now, ..Default::default() })
            })
            .collect();
        self.table_stats = p
            .bridges
            .iter()
            .map(|b| {
                let mut t = old_tables.get(b.name.as_str()).cloned().unwrap_or_default();
                t.resize(b.tables.len().max(1), (0, 0));
                t
            })
            .collect();
        self.flow_caches = p.bridges.iter().map(|b| b.tables.iter().map(|_| FlowCache::default()).collect()).collect();
        self.flow_stats = p
            .bridges
            .iter()
            .map(|b| {
                b.tables
                    .iter()
                    .map(|t| {
                        t.rules
                            .iter()
                            .map(|r| {
                                old_stats
                                    .get(&r.id)
                                    .copied()
                                    .unwrap_or(FlowStat { last_used: now, ..Default::default() })
                            })
                            .collect()
                    })
                    .collect()
            })
            .collect();
        self.packet_in_rt = p.bridges.iter().map(|b| self.packet_in.get(&b.name).cloned()).collect();
        self.retap();
    }

    /// Points every capture at its port in the current pipeline (a capture whose port is gone ends) and
    /// recomputes which ports are watched.
    fn retap(&mut self) {
        let p = &self.pipeline;
        for t in &mut self.taps {
            t.port = p.ports.iter().position(|np| np.name == t.port_name).map(|i| PortIdx(i as u16));
        }
        self.taps.retain(|t| {
            if t.missed > 0 && (t.closed || t.port.is_none()) {
                tracing::warn!("capture on {}: {} frames left out (the client did not keep up)", t.port_name, t.missed);
            }
            t.port.is_some() && !t.closed
        });
        self.tapped = vec![false; p.ports.len()];
        for t in &self.taps {
            if let Some(port) = t.port {
                self.tapped[usize::from(port.0)] = true;
            }
        }
    }

    /// Feeds the frame entering or leaving `port` (untagged, with its 802.1Q tag if any) to the captures that
    /// watch the port's frames (not the outer packets of a tunnel).
    fn tap_frame(&mut self, port: PortIdx, bytes: Bytes, tag: Option<[u8; 4]>) {
        let frame = resolve(&self.rx, &self.seg, bytes);
        let mut closed = false;
        for t in self.taps.iter_mut().filter(|t| t.port == Some(port) && !t.outer) {
            match &tag {
                Some(tag) if frame.len() >= 12 => t.offer(&[&frame[..12], tag, &frame[12..]]),
                _ => t.offer(&[frame]),
            }
            closed |= t.closed;
        }
        if closed {
            self.retap();
        }
    }

    /// Feeds received tunnel packet `whole` of `port`, which came from `src` to a socket bound to `bound`, to the
    /// captures that want outer headers. Raw IPv4 GRE sockets hand over the IP header too: such packets are
    /// captured exactly as they came; for the others the outer headers are rebuilt.
    fn tap_received(&mut self, port: PortIdx, encap: Encap, bound: SocketAddr, src: SocketAddr, whole: Bytes) {
        match (encap, bound.is_ipv4()) {
            (Encap::Gre, true) => {
                let pkt = resolve(&self.rx, &self.seg, whole);
                let mut closed = false;
                for t in self.taps.iter_mut().filter(|t| t.port == Some(port) && t.outer) {
                    t.offer(&[pkt]);
                    closed |= t.closed;
                }
                if closed {
                    self.retap();
                }
            }
            (Encap::Gre, false) => {
                let src = SocketAddr::new(src.ip(), 0);
                self.tap_outer(port, src, bound, weft_wire::gre::IP_PROTOCOL, IpMeta::default(), &[], Some(whole), None)
            }
            _ => self.tap_outer(
                port,
                src,
                bound,
                weft_wire::ipv4::Protocol::UDP,
                IpMeta::default(),
                &[],
                Some(whole),
                None,
            ),
        }
    }

    /// Feeds a tunnel packet of `port` to the captures that want outer headers: `src` to `dst`, the encap
    /// header `head`, then the frame (with `tag` inserted).
    #[allow(clippy::too_many_arguments)]
    fn tap_outer(
        &mut self,
        port: PortIdx,
        src: SocketAddr,
        dst: SocketAddr,
        proto: u8,
        meta: IpMeta,
        head: &[u8],
        bytes: Option<Bytes>,
        tag: Option<[u8; 4]>,
    ) {
        let frame = bytes.map_or(&[][..], |b| resolve(&self.rx, &self.seg, b));
        let mut closed = false;
        for t in self.taps.iter_mut().filter(|t| t.port == Some(port) && t.outer) {
            let fix = |a: SocketAddr| match (a.ip().is_unspecified(), t.local) {
                (true, Some(l)) => SocketAddr::new(l, a.port()),
                _ => a,
            };
            let (src, dst) = (fix(src), fix(dst));
            let (ttl, tos) = (meta.ttl.unwrap_or(64), meta.tos.unwrap_or(0));
            match &tag {
                Some(tag) if frame.len() >= 12 => {
                    t.offer_outer(src, dst, proto, ttl, tos, &[head, &frame[..12], tag, &frame[12..]])
                }
                _ => t.offer_outer(src, dst, proto, ttl, tos, &[head, frame]),
            }
            closed |= t.closed;
        }
        if closed {
            self.retap();
        }
    }

    fn register(&self, epoll: &Epoll) -> std::io::Result<()> {
        epoll.add(self.wake.raw(), TOKEN_CONTROL)?;
        for (i, port) in self.pipeline.ports.iter().enumerate() {
            match &port.io {
                PortIo::Tap(t) => epoll.add(t.as_raw_fd(), i as u64)?,
                PortIo::Packet(s) => epoll.add(s.as_raw_fd(), i as u64)?,
                _ => {}
            }
        }
        for (i, s) in self.pipeline.rx_sockets.iter().enumerate() {
            epoll.add(s.socket.as_raw_fd(), TOKEN_UDP + i as u64)?;
        }
        for (i, s) in self.pipeline.esp.iter().enumerate() {
            epoll.add(s.fd.as_raw_fd(), TOKEN_ESP + i as u64)?;
        }
        Ok(())
    }

    /// Runs until the control side hangs up.
    pub fn run(mut self) {
        let mut epoll = match Epoll::new(256) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("datapath cannot create epoll: {e}");
                return;
            }
        };
        if let Err(e) = self.register(&epoll) {
            tracing::warn!("datapath cannot watch ports: {e}");
        }
        let mut last_expiry = self.now();
        let mut last_fdb_expiry = last_expiry;
        let mut ready: Vec<u64> = Vec::with_capacity(256);
        loop {
            ready.clear();
            match epoll.wait(100) {
                Ok(it) => ready.extend(it),
                Err(e) => {
                    tracing::error!("epoll_wait: {e}");
                    return;
                }
            }
            for &token in &ready {
                if token == TOKEN_CONTROL {
                    continue;
                } else if token >= TOKEN_ESP {
                    self.poll_esp((token - TOKEN_ESP) as usize);
                } else if token >= TOKEN_UDP {
                    self.poll_udp((token - TOKEN_UDP) as usize);
                } else {
                    self.poll_port(PortIdx(token as u16));
                }
            }
            if ready.contains(&TOKEN_CONTROL) || ready.is_empty() {
                self.wake.drain();
                loop {
                    match self.msgs.try_recv() {
                        Ok(DpMsg::Swap(p, ack)) => {
                            self.install(p);
                            match Epoll::new(256) {
                                Ok(e) => {
                                    epoll = e;
                                    if let Err(e) = self.register(&epoll) {
                                        tracing::warn!("datapath cannot watch ports: {e}");
                                    }
                                }
                                Err(e) => tracing::warn!("datapath cannot create epoll: {e}"),
                            }
                            let _ = ack.send(());
                        }
                        Ok(DpMsg::Cp(bridge, u)) => self.control_plane(&bridge, u),
                        Ok(DpMsg::Fdb(bridge, reply)) => {
                            let _ = reply.send(self.fdb_rows(&bridge));
                        }
                        Ok(DpMsg::FdbFlush(bridge, reply)) => {
                            let i = self.pipeline.bridges.iter().position(|b| b.name == bridge);
                            if let Some(i) = i {
                                self.fdbs[i].flush_learned();
                            }
                            let _ = reply.send(i.is_some());
                        }
                        Ok(DpMsg::FdbStats(bridge, reply)) => {
                            let stats = self.pipeline.bridges.iter().position(|b| b.name == bridge).map(|i| {
                                let f = &self.fdbs[i];
                                FdbStats {
                                    entries: f.len(),
                                    max_entries: f.max_entries(),
                                    learn_misses: f.learn_misses,
                                    moves: f.moves,
                                    aged: f.aged,
                                }
                            });
                            let _ = reply.send(stats);
                        }
                        Ok(DpMsg::Counters(bridge, reply)) => {
                            let _ = reply.send(self.port_counters(&bridge));
                        }
                        Ok(DpMsg::FlowStats(bridge, reply)) => {
                            let now = self.now();
                            let r = self.pipeline.bridges.iter().position(|b| b.name == bridge).map(|bi| {
                                let mut out = Vec::new();
                                if let Some(id) = self.pipeline.bridges[bi].default_flow {
                                    let s = self.default_stats[bi];
                                    let idle = now.saturating_sub(s.last_used) / weft_datapath::SECOND;
                                    out.push((id, s.packets, s.bytes, idle));
                                }
                                for (ti, t) in self.pipeline.bridges[bi].tables.iter().enumerate() {
                                    for (ri, r) in t.rules.iter().enumerate() {
                                        let s = self.flow_stats[bi][ti][ri];
                                        let idle = now.saturating_sub(s.last_used) / weft_datapath::SECOND;
                                        out.push((r.id, s.packets, s.bytes, idle));
                                    }
                                }
                                out
                            });
                            let _ = reply.send(r);
                        }
                        Ok(DpMsg::LinkDown(names)) => {
                            self.link_down = names;
                            let p = self.pipeline.clone();
                            self.link_down_rt = p.ports.iter().map(|np| self.link_down.contains(&np.name)).collect();
                        }
                        Ok(DpMsg::TableStats(bridge, reply)) => {
                            let i = self.pipeline.bridges.iter().position(|b| b.name == bridge);
                            let _ = reply.send(i.map(|i| self.table_stats[i].clone()));
                        }
                        Ok(DpMsg::SetPacketIn(bridge, tx)) => {
                            match tx {
                                Some(tx) => self.packet_in.insert(bridge, tx),
                                None => self.packet_in.remove(&bridge),
                            };
                            let p = self.pipeline.clone();
                            self.packet_in_rt =
                                p.bridges.iter().map(|b| self.packet_in.get(&b.name).cloned()).collect();
                        }
                        Ok(DpMsg::Trace { bridge, in_port, frame, reply }) => {
                            let _ = reply.send(self.run_trace(&bridge, &in_port, &frame));
                        }
                        Ok(DpMsg::Capture(tap, reply)) => {
                            let known = self.pipeline.ports.iter().any(|p| p.name == tap.port_name);
                            if known {
                                self.taps.push(*tap);
                                self.retap();
                            }
                            let _ = reply.send(known);
                        }
                        Ok(DpMsg::Esp(op)) => self.esp.apply(op),
                        Ok(DpMsg::EspStats(reply)) => {
                            let _ = reply.send((self.esp.sa_counters(), self.esp.counters));
                        }
                        Ok(DpMsg::IkeSink(tx)) => self.ike_tx = Some(tx),
                        Err(std::sync::mpsc::TryRecvError::Empty) => break,
                        Err(std::sync::mpsc::TryRecvError::Disconnected) => return,
                    }
                }
            }
            let now = self.now();
            // MAC tables age in slices (never a scan of a whole table in one go): 4 096 entries every 100 ms
            // at most, 40 960 a second.
            if now - last_fdb_expiry >= weft_datapath::SECOND / 10 {
                for f in &mut self.fdbs {
                    f.expire_some(now, FDB_EXPIRY_SLICE);
                }
                last_fdb_expiry = now;
            }
            if now - last_expiry >= weft_datapath::SECOND {
                for (n, b) in self.neighs.iter_mut().zip(&self.pipeline.bridges) {
                    n.expire(now, b.aging_secs);
                }
                last_expiry = now;
            }
        }
    }

    /// `weft trace`: the frame goes through the same code as real traffic, with `self.trace` set so that the
    /// places that would change state or send record what they would do instead.
    fn run_trace(&mut self, bridge: &str, in_port: &str, frame: &[u8]) -> Result<Vec<TraceStep>, String> {
        let pipeline = self.pipeline.clone();
        let port = pipeline
            .ports
            .iter()
            .position(|p| p.name == in_port && pipeline.bridges[p.bridge].name == bridge)
            .ok_or_else(|| format!("bridge {bridge:?} has no running port {in_port:?}"))?;
        if frame.len() > self.seg.len() {
            return Err("frame too long".into());
        }
        self.seg[..frame.len()].copy_from_slice(frame);
        self.seg_used = frame.len();
        let bytes = Bytes::Seg { start: 0, len: frame.len() as u32 };
        let remote = match &pipeline.ports[port].io {
            PortIo::Tunnel { spec, .. } => Some(spec.remote),
            _ => None,
        };
        self.trace = Some(Vec::new());
        let now = self.now();
        self.switch(&pipeline, PortIdx(port as u16), remote, bytes, None, now);
        self.seg_used = 0;
        Ok(self.trace.take().unwrap_or_default())
    }

    fn note(&mut self, text: impl FnOnce() -> String) {
        if let Some(t) = &mut self.trace {
            t.push(TraceStep::Note(text()));
        }
    }

    /// Applies a control plane's changes to a bridge.
    fn control_plane(&mut self, bridge: &str, u: CpUpdate) {
        let Some(bi) = self.pipeline.bridges.iter().position(|b| b.name == bridge) else { return };
        let p = self.pipeline.clone();
        let b = &p.bridges[bi];
        let port_of = |name: &str| b.ports.iter().copied().find(|i| p.ports[usize::from(i.0)].name == name);
        let origin = u.origin.unwrap_or(Origin::Etcd);
        if u.reset {
            self.fdbs[bi].remove_origin(origin);
            for i in &b.ports {
                self.cp_flood.remove(&p.ports[usize::from(i.0)].name);
                self.cp_flood_rt[usize::from(i.0)] = None;
            }
        }
        for (port, vteps) in u.flood {
            if let Some(i) = port_of(&port) {
                self.cp_flood_rt[usize::from(i.0)] = Some(vteps.clone());
            }
            self.cp_flood.insert(port, vteps);
        }
        for (vlan, mac) in u.remove {
            self.fdbs[bi].uninstall(vlan, mac, origin);
        }
        for (vlan, mac, port, vtep) in u.install {
            if let Some(i) = port_of(&port) {
                self.fdbs[bi].install(vlan, mac, i, Some(vtep), origin);
            }
        }
    }

    fn fdb_rows(&self, bridge: &str) -> Option<Vec<FdbRow>> {
        let bi = self.pipeline.bridges.iter().position(|b| b.name == bridge)?;
        let now = self.now();
        Some(
            self.fdbs[bi]
                .snapshot(now)
                .into_iter()
                .map(|(vlan, mac, e, age): (u16, EthernetAddress, FdbEntry, u64)| {
                    let port = &self.pipeline.ports[usize::from(e.port.0)];
                    FdbRow {
                        port: port.name.clone(),
                        ofport: port.ofport,
                        vlan,
                        mac,
                        age,
                        remote: e.remote,
                        origin: e.origin,
                    }
                })
                .collect(),
        )
    }

    fn port_counters(&self, bridge: &str) -> Option<Vec<(String, u32, PortCounters)>> {
        let b = self.pipeline.bridges.iter().find(|b| b.name == bridge)?;
        Some(
            b.ports
                .iter()
                .map(|p| {
                    let port = &self.pipeline.ports[usize::from(p.0)];
                    (port.name.clone(), port.ofport, self.counters[usize::from(p.0)].clone())
                })
                .collect(),
        )
    }

    /// Receives a batch from a TAP or AF_PACKET port and switches it.
    fn poll_port(&mut self, port: PortIdx) {
        let pipeline = self.pipeline.clone();
        let Some(p) = pipeline.ports.get(usize::from(port.0)) else { return };
        let got = match &p.io {
            PortIo::Tap(t) => self.rx.fill_with(|buf| t.read(buf)),
            PortIo::Packet(s) => self.rx.recv_mmsg(s.as_raw_fd()),
            _ => return,
        };
        let n = match got {
            Ok(n) => n,
            Err(e) => {
                if self.rx_log.allow(self.now(), weft_datapath::SECOND) {
                    let held = std::mem::take(&mut self.rx_log.suppressed);
                    tracing::warn!(port = %p.name, suppressed = held, "receive failed: {e}");
                }
                return;
            }
        };
        let vnet = match &p.io {
            PortIo::Packet(_) => true,
            PortIo::Tap(t) => t.offloads().vnet_hdr,
            _ => false,
        };
        let now = self.now();
        for i in 0..n {
            let (start, len, gso) = if vnet {
                match self.take_offloaded(port, i) {
                    Some(r) => r,
                    None => continue,
                }
            } else {
                let r = self.rx.slot_mut(i).1;
                (r.start, r.len(), None)
            };
            self.counters[usize::from(port.0)].rx(len);
            let tag = self.stripped_tag(i);
            let bytes = Bytes::Rx { slot: i as u16, start: start as u32, len: len as u32 };
            self.cur_gso = gso;
            self.switch(&pipeline, port, None, bytes, tag, now);
            self.cur_gso = None;
        }
        self.flush();
    }

    /// The 802.1Q tag control the kernel took off received packet `i` (AF_PACKET ports). Other tag types are
    /// not put back: the frame then crosses untagged.
    fn stripped_tag(&self, i: usize) -> Option<u16> {
        self.rx.stripped_tag(i).filter(|(tpid, _)| *tpid == EtherType::VLAN).map(|(_, tci)| tci)
    }

    /// Strips the virtio-net header of packet `i`. A frame to be segmented is passed on whole with its header
    /// when offloads are on, and otherwise segmented here (each segment is then switched here); a frame with
    /// only its checksum left to do gets it done. Returns the frame's range within the slot, and its header
    /// when it goes on as an offloaded frame.
    fn take_offloaded(&mut self, port: PortIdx, i: usize) -> Option<(usize, usize, Option<VnetHdr>)> {
        let (slot, range) = self.rx.slot_mut(i);
        let pkt = &mut slot[range.clone()];
        let Some(hdr) = VnetHdr::parse(pkt) else {
            self.counters[usize::from(port.0)].drop(DropReason::Malformed);
            return None;
        };
        let frame_start = range.start + VNET_HDR_LEN;
        let frame_len = range.len() - VNET_HDR_LEN;
        if hdr.is_gso() {
            if self.offloads && hdr.passable(frame_len) {
                return Some((frame_start, frame_len, Some(hdr)));
            }
            let whole = Bytes::Rx { slot: i as u16, start: frame_start as u32, len: frame_len as u32 };
            if self.cut(whole, &hdr, port) {
                let pipeline = self.pipeline.clone();
                let now = self.now();
                self.counters[usize::from(port.0)].rx(frame_len);
                let tag = self.stripped_tag(i);
                let segs = std::mem::take(&mut self.seg_list);
                for &(start, len) in &segs {
                    self.switch(&pipeline, port, None, Bytes::Seg { start, len }, tag, now);
                }
                self.seg_list = segs;
            }
            return None;
        }
        if hdr.flags & offload::F_NEEDS_CSUM != 0 {
            let frame = &mut slot[frame_start..frame_start + frame_len];
            if offload::complete_checksum(frame, usize::from(hdr.csum_start), usize::from(hdr.csum_offset)).is_err() {
                self.counters[usize::from(port.0)].drop(DropReason::Malformed);
                return None;
            }
        }
        Some((frame_start, frame_len, None))
    }

    /// Receives a batch of tunnel packets, checks sender and VNI, and switches the inner frames. A buffer the
    /// kernel filled with a train of datagrams (UDP_GRO) is cut apart here; consecutive TCP segments of one
    /// flow in it are merged back into one frame (see `weft_datapath::gro`) and switched once.
    fn poll_udp(&mut self, si: usize) {
        let pipeline = self.pipeline.clone();
        let Some(rs) = pipeline.rx_sockets.get(si) else { return };
        let n = match self.rx.recv_mmsg(rs.socket.as_raw_fd()) {
            Ok(n) => n,
            Err(e) => {
                if self.rx_log.allow(self.now(), weft_datapath::SECOND) {
                    let held = std::mem::take(&mut self.rx_log.suppressed);
                    tracing::warn!(socket = %rs.bound, suppressed = held, "tunnel receive failed: {e}");
                }
                return;
            }
        };
        self.receive_datagrams(&pipeline, n, |dp, i, src, datagram| {
            dp.accept_datagram(&pipeline, rs, i, src, datagram, false)
        });
    }

    /// Goes through the `n` buffers just received: cuts UDP_GRO buffers into their datagrams, has `accept`
    /// check each (it returns the tunnel port and the inner frame's range, or drops it), switches the frames
    /// or merges consecutive TCP segments of one flow first, and sends what they produced.
    ///
    /// A run may go on into the next buffers (a 64 KiB TCP frame leaves the sender as two trains); it stays
    /// inside the buffer it began in, where there is room for a whole 64 KiB frame.
    fn receive_datagrams(
        &mut self,
        pipeline: &Pipeline,
        n: usize,
        mut accept: impl FnMut(
            &mut Self,
            usize,
            SocketAddr,
            std::ops::Range<usize>,
        ) -> Option<(PortIdx, std::ops::Range<usize>)>,
    ) {
        let now = self.now();
        let mut run: Option<(PortIdx, IpAddr, usize, MergeRun)> = None;
        for i in 0..n {
            let Some(src) = self.rx.source(i) else { continue };
            let range = self.rx.slot_mut(i).1;
            let size = usize::from(self.rx.segment_size(i));
            let step = if size == 0 || size >= range.len() { range.len() } else { size };
            let mut at = range.start;
            while at < range.end {
                let datagram = at..(at + step).min(range.end);
                at = datagram.end;
                if let Some((port, frame)) = accept(self, i, src, datagram) {
                    self.take_frame(pipeline, &mut run, i, port, src.ip(), frame, now);
                }
            }
        }
        if let Some((rp, rsrc, rslot, r)) = run.take() {
            self.switch_run(pipeline, rslot, rp, rsrc, r, now);
        }
        self.flush();
    }

    /// Switches a received tunnel frame (its range in slot `i`), or merges it into the run of segments of one
    /// flow being collected (GRO), switching the run when this frame does not join it.
    #[allow(clippy::too_many_arguments)]
    fn take_frame(
        &mut self,
        pipeline: &Pipeline,
        run: &mut Option<(PortIdx, IpAddr, usize, MergeRun)>,
        i: usize,
        port: PortIdx,
        src: IpAddr,
        frame: std::ops::Range<usize>,
        now: Nanos,
    ) {
        // A whole TSO frame of a Linux peer (see `gro::oversized_partial_tcp`): switched as the GSO frame it is.
        let mtu = match pipeline.ports[usize::from(port.0)].io {
            PortIo::Tunnel { mtu, .. } => usize::from(mtu),
            _ => usize::MAX,
        };
        if let Some(gso) = gro::oversized_partial_tcp(&self.rx.slot(i)[frame.clone()], mtu) {
            if let Some((rp, rsrc, rslot, r)) = run.take() {
                self.switch_run(pipeline, rslot, rp, rsrc, r, now);
            }
            let bytes = Bytes::Rx { slot: i as u16, start: frame.start as u32, len: frame.len() as u32 };
            if self.offloads {
                self.cur_gso = Some(gso);
                self.switch(pipeline, port, Some(src), bytes, None, now);
                self.cur_gso = None;
            } else if self.cut(bytes, &gso, port) {
                let segs = std::mem::take(&mut self.seg_list);
                for &(start, len) in &segs {
                    self.switch(pipeline, port, Some(src), Bytes::Seg { start, len }, None, now);
                }
                self.seg_list = segs;
            }
            return;
        }
        if !self.offloads {
            self.finish_partial(i, frame.clone());
            let bytes = Bytes::Rx { slot: i as u16, start: frame.start as u32, len: frame.len() as u32 };
            self.switch(pipeline, port, Some(src), bytes, None, now);
            return;
        }
        let base = self.rx.slot_base(i);
        let global = base + frame.start..base + frame.end;
        if let Some((rp, rsrc, _, r)) = run {
            if *rp == port && *rsrc == src && r.append(self.rx.storage_mut(), global.clone()) {
                return;
            }
        }
        if let Some((rp, rsrc, rslot, r)) = run.take() {
            self.switch_run(pipeline, rslot, rp, rsrc, r, now);
        }
        let limit = base + self.rx.slot(i).len();
        match MergeRun::start(self.rx.storage_mut(), global, limit) {
            Some(r) => *run = Some((port, src, i, r)),
            None => {
                self.finish_partial(i, frame.clone());
                let bytes = Bytes::Rx { slot: i as u16, start: frame.start as u32, len: frame.len() as u32 };
                self.switch(pipeline, port, Some(src), bytes, None, now);
            }
        }
    }

    /// Fills in the TCP or UDP checksum of a frame from a tunnel (its range in slot `i`) that its sender left
    /// partial (a Linux VXLAN peer on a veth underlay): a frame going on alone must carry a whole checksum.
    /// Merged runs need not: they leave marked NEEDS_CSUM. Frames with a right checksum cost only a look at
    /// their headers.
    fn finish_partial(&mut self, i: usize, frame: std::ops::Range<usize>) {
        let f = &mut self.rx.slot_mut(i).0[frame];
        if let Some((start, offset, end)) = gro::partial_checksum(f) {
            let _ = offload::complete_checksum(&mut f[..end], start, offset);
        }
    }

    /// Receives a batch on an ESP socket: IKE messages (port 4500, non-ESP marker) go to the IKE thread; ESP
    /// packets are checked against their SA's replay window, opened in place, and the tunnel packet inside
    /// goes on as if received on the tunnel's own socket.
    fn poll_esp(&mut self, ei: usize) {
        let pipeline = self.pipeline.clone();
        let Some(es) = pipeline.esp.get(ei) else { return };
        let n = match self.rx.recv_mmsg(es.fd.as_raw_fd()) {
            Ok(n) => n,
            Err(e) => {
                if self.rx_log.allow(self.now(), weft_datapath::SECOND) {
                    tracing::warn!("ESP receive failed: {e}");
                }
                return;
            }
        };
        let (udp, v6) = (es.udp, es.v6);
        self.receive_datagrams(&pipeline, n, |dp, i, src, mut datagram| {
            if !udp && !v6 {
                // Raw IPv4 sockets hand over the IP header.
                let ihl = usize::from(dp.rx.slot(i)[datagram.start] & 0x0f) * 4;
                if ihl < 20 || datagram.len() < ihl {
                    dp.esp.counters.truncated += 1;
                    return None;
                }
                datagram.start += ihl;
            }
            dp.open_esp(&pipeline, udp, i, src, datagram)
        });
    }

    /// One datagram from an ESP socket (`datagram`: its range in slot `i`, from the ESP header or the non-ESP
    /// marker on). Returns the tunnel port and inner frame range of a good ESP packet.
    fn open_esp(
        &mut self,
        pipeline: &Pipeline,
        udp: bool,
        i: usize,
        src: SocketAddr,
        datagram: std::ops::Range<usize>,
    ) -> Option<(PortIdx, std::ops::Range<usize>)> {
        let pkt = &mut self.rx.slot_mut(i).0[datagram.clone()];
        if udp && pkt.len() == 1 && pkt[0] == 0xff {
            return None; // NAT keepalive (RFC 3948 §2.3)
        }
        if udp && pkt.len() >= 4 && pkt[..4] == [0, 0, 0, 0] {
            let m = crate::ipsec::IpsecMsg::Ike {
                local_port: weft_wire::esp::NAT_T_PORT,
                from: src,
                data: pkt[4..].to_vec(),
            };
            if self.ike_tx.as_ref().is_none_or(|t| t.try_send(m).is_err()) {
                self.esp.counters.ike_dropped += 1;
            }
            return None;
        }
        if pkt.len() < 8 {
            self.esp.counters.truncated += 1;
            return None;
        }
        let spi = u32::from_be_bytes([pkt[0], pkt[1], pkt[2], pkt[3]]);
        let Some(sa) = self.esp.inb.get_mut(&spi) else {
            self.esp.counters.unknown_spi += 1;
            return None;
        };
        if sa.remote != src.ip() {
            self.esp.counters.wrong_source += 1;
            return None;
        }
        let (nh, payload) = match sa.esp.open(pkt) {
            Ok(x) => x,
            Err(e) => {
                let c = &mut self.esp.counters;
                match e {
                    weft_ipsec::esp::EspError::Replay => c.replayed += 1,
                    weft_ipsec::esp::EspError::Tampered => c.tampered += 1,
                    weft_ipsec::esp::EspError::Truncated | weft_ipsec::esp::EspError::BadTrailer => c.truncated += 1,
                }
                return None;
            }
        };
        let (remotes, tunnel) = ([sa.remote, sa.inner_remote], sa.tunnel);
        let inner = &pkt[payload.clone()];
        let Some((proto, at, dport)) = crate::esp::inner(remotes, tunnel, nh, inner) else {
            self.esp.counters.bad_inner += 1;
            return None;
        };
        let v4 = src.is_ipv4();
        let rs = pipeline.rx_sockets.iter().find(|r| {
            r.bound.is_ipv4() == v4
                && if proto == weft_wire::ipv4::Protocol::GRE {
                    r.encap == Encap::Gre
                } else {
                    r.encap != Encap::Gre && r.bound.port() == dport
                }
        });
        let Some(rs) = rs else {
            self.esp.counters.bad_inner += 1;
            return None;
        };
        let start = datagram.start + payload.start + at;
        let end = datagram.start + payload.end;
        self.accept_datagram(pipeline, rs, i, src, start..end, true)
    }

    /// Switches the frame a run of merged segments in slot `slot` became.
    fn switch_run(&mut self, pipeline: &Pipeline, slot: usize, port: PortIdx, src: IpAddr, run: MergeRun, now: Nanos) {
        let merged = run.count();
        let (frame, gso) = run.finish(self.rx.storage_mut());
        let base = self.rx.slot_base(slot);
        if merged > 1 {
            self.counters[usize::from(port.0)].gro_rx += u64::from(merged);
        } else {
            self.finish_partial(slot, frame.start - base..frame.end - base);
        }
        let bytes = Bytes::Rx { slot: slot as u16, start: (frame.start - base) as u32, len: frame.len() as u32 };
        self.cur_gso = gso;
        self.switch(pipeline, port, Some(src), bytes, None, now);
        self.cur_gso = None;
    }

    /// Checks one received tunnel datagram (`datagram`: its range in slot `i`) from `src`: decapsulates it,
    /// finds its port by sender and VNI, applies Geneve option rules, feeds outer captures and counts it.
    /// Returns its port and the inner frame's range in the slot, or `None` when it was dropped.
    fn accept_datagram(
        &mut self,
        pipeline: &Pipeline,
        rs: &RxSocket,
        i: usize,
        src: SocketAddr,
        datagram: std::ops::Range<usize>,
        protected: bool,
    ) -> Option<(PortIdx, std::ops::Range<usize>)> {
        let pkt = &self.rx.slot(i)[datagram.clone()];
        // Raw IPv4 GRE sockets hand over the outer IP header; a GRE packet out of ESP has none.
        let Decap { vni, inner_at, error } = decap(tunnel_kind(rs.encap), rs.bound.is_ipv4() && !protected, pkt);
        let port = match rs.classify(src.ip(), vni) {
            Ok(p) => p,
            Err((charged, why)) => {
                self.counters[usize::from(charged.0)].drop(error.unwrap_or(why));
                return None;
            }
        };
        if let Some(why) = error {
            self.counters[usize::from(port.0)].drop(why);
            return None;
        }
        if let PortIo::Tunnel { spec, .. } = &pipeline.ports[usize::from(port.0)].io {
            if spec.ipsec.is_some() != protected {
                self.counters[usize::from(port.0)].drop(DropReason::Cleartext);
                return None;
            }
        }
        if rs.encap == Encap::Geneve {
            let PortIo::Tunnel { known_options, .. } = &pipeline.ports[usize::from(port.0)].io else { return None };
            let g = GenevePacket::new_unchecked(pkt);
            let mut seen = 0;
            let mut unknown_critical = false;
            for o in g.options().flatten() {
                seen += 1;
                unknown_critical |= o.is_critical() && !known_options.contains(&(o.class, o.kind));
            }
            let c = &mut self.counters[usize::from(port.0)];
            c.geneve_options_rx += seen;
            if unknown_critical {
                c.drop(DropReason::CriticalOption);
                return None;
            }
        }
        if self.tapped[usize::from(port.0)] {
            let whole = Bytes::Rx { slot: i as u16, start: datagram.start as u32, len: datagram.len() as u32 };
            self.tap_received(port, rs.encap, rs.bound, src, whole);
        }
        let len = datagram.len() - inner_at;
        self.counters[usize::from(port.0)].rx(len);
        Some((port, datagram.start + inner_at..datagram.end))
    }

    fn bytes(&self, b: Bytes) -> &[u8] {
        resolve(&self.rx, &self.seg, b)
    }

    /// The bytes of a queued frame, writable.
    fn bytes_mut(&mut self, b: Bytes) -> &mut [u8] {
        match b {
            Bytes::Rx { slot, start, len } => {
                &mut self.rx.slot_mut(usize::from(slot)).0[start as usize..(start + len) as usize]
            }
            Bytes::Seg { start, len } => &mut self.seg[start as usize..(start + len) as usize],
        }
    }

    /// Takes an inline 802.1Q tag off a frame, in place (the MAC addresses move 4 bytes on), and returns the
    /// untagged frame and the tag's TCI.
    fn pop_tag(&mut self, bytes: Bytes) -> (Bytes, Option<u16>) {
        let frame = self.bytes_mut(bytes);
        if frame.len() < ETH_LEN + 4 || u16::from_be_bytes([frame[12], frame[13]]) != EtherType::VLAN {
            return (bytes, None);
        }
        let tci = u16::from_be_bytes([frame[14], frame[15]]);
        frame.copy_within(0..12, 4);
        let popped = match bytes {
            Bytes::Rx { slot, start, len } => Bytes::Rx { slot, start: start + 4, len: len - 4 },
            Bytes::Seg { start, len } => Bytes::Seg { start: start + 4, len: len - 4 },
        };
        (popped, Some(tci))
    }

    /// Runs the learning switch on one frame and queues its outputs. `stripped` is the 802.1Q tag the kernel
    /// already took off the frame, if any; a tag still in the frame is taken off here. Inside the switch every
    /// frame is untagged and belongs to one VLAN; output ports put a tag back where they carry it tagged.
    fn switch(
        &mut self,
        pipeline: &Pipeline,
        in_port: PortIdx,
        remote: Option<IpAddr>,
        bytes: Bytes,
        stripped: Option<u16>,
        now: Nanos,
    ) {
        if self.tapped[usize::from(in_port.0)] && self.trace.is_none() {
            self.tap_frame(in_port, bytes, stripped.map(vlan_tag));
        }
        let (bytes, tci) = match stripped {
            Some(t) => (bytes, Some(t)),
            None => {
                let (b, t) = self.pop_tag(bytes);
                if t.is_some() {
                    // The offload header counts from the frame's start: the tag's 4 bytes are gone.
                    self.cur_gso = self.cur_gso.map(|g| g.untagged());
                }
                (b, t)
            }
        };
        let Some(tci) = pipeline.ports[usize::from(in_port.0)].vlan.ingress(tci) else {
            if self.trace.is_some() {
                self.note(|| {
                    format!("dropped at the input port: it does not carry VLAN {}", tci.map_or(0, |t| t & 0xfff))
                });
                return;
            }
            self.counters[usize::from(in_port.0)].drop(DropReason::Vlan);
            return;
        };
        self.note(|| format!("input port {}, VLAN {}", pipeline.ports[usize::from(in_port.0)].name, tci & 0xfff));
        if self.bytes(bytes).len() < ETH_LEN {
            self.counters[usize::from(in_port.0)].drop(DropReason::Malformed);
            return;
        }
        let bridge = pipeline.ports[usize::from(in_port.0)].bridge;
        if pipeline.bridges[bridge].tables.is_empty() {
            if self.trace.is_none() {
                // The default flow's counters, and table 0's: every frame is looked up and matched.
                let len = self.bytes(bytes).len() as u64;
                let s = &mut self.default_stats[bridge];
                s.packets += 1;
                s.bytes += len;
                s.last_used = now;
                let t = &mut self.table_stats[bridge][0];
                t.0 += 1;
                t.1 += 1;
            }
            self.normal_switch(pipeline, in_port, remote, bytes, tci, now);
        } else {
            self.flow_switch(pipeline, bridge, in_port, remote, bytes, tci, now);
        }
    }

    /// Runs a frame through the bridge's flow tables, from table 0.
    #[allow(clippy::too_many_arguments)]
    fn flow_switch(
        &mut self,
        pipeline: &Pipeline,
        bridge: usize,
        in_port: PortIdx,
        remote: Option<IpAddr>,
        bytes: Bytes,
        tci: u16,
        now: Nanos,
    ) {
        let key = self.flow_key(pipeline, in_port, remote, bytes, tci);
        let hash = flow_hash(self.bytes(bytes));
        let mut st = ActState { bytes, tci, hash, vni: None, tun_dst: None, copied: false, too_big: None };
        self.run_table(pipeline, bridge, 0, in_port, remote, &key, &mut st, now, 0);
        if let Some(mtu) = st.too_big {
            self.signal_too_big(pipeline, in_port, st.bytes, mtu, tci, now);
        }
    }

    /// Summarises a frame into the classifier's key.
    fn flow_key(
        &self,
        pipeline: &Pipeline,
        in_port: PortIdx,
        remote: Option<IpAddr>,
        bytes: Bytes,
        tci: u16,
    ) -> FlowKey {
        let frame = self.bytes(bytes);
        let port = &pipeline.ports[usize::from(in_port.0)];
        let mut k = FlowKey::default();
        k.put(slot::IN_PORT, u128::from(port.ofport));
        if tci & 0x0fff != 0 {
            k.put(slot::VLAN_TCI, u128::from(tci | 0x1000));
        }
        k.put(slot::DL_DST, u128::from(EthernetAddress::from_bytes(&frame[0..6]).as_u64()));
        k.put(slot::DL_SRC, u128::from(EthernetAddress::from_bytes(&frame[6..12]).as_u64()));
        let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
        k.put(slot::DL_TYPE, u128::from(ethertype));
        if let (PortIo::Tunnel { spec, .. }, Some(r)) = (&port.io, remote) {
            k.put(slot::TUN_ID, u128::from(spec.vni));
            if let IpAddr::V4(a) = r {
                k.put(slot::TUN_SRC, u128::from(u32::from(a)));
            }
        }
        let l3 = &frame[ETH_LEN..];
        let (proto, l4) = match ethertype {
            EtherType::IPV4 => match weft_wire::ipv4::Ipv4Packet::new_header_checked(l3) {
                Ok(ip) => {
                    k.put(slot::NW_SRC, u128::from(u32::from(ip.src_addr())));
                    k.put(slot::NW_DST, u128::from(u32::from(ip.dst_addr())));
                    k.put(slot::NW_PROTO, u128::from(ip.protocol()));
                    k.put(slot::NW_TOS, u128::from(ip.dscp_ecn() & 0xfc));
                    let first = ip.frag_offset() == 0;
                    (first.then_some(ip.protocol()), l3.get(ip.header_len()..).unwrap_or_default())
                }
                Err(_) => (None, &[][..]),
            },
            EtherType::IPV6 => match weft_wire::ipv6::Ipv6Packet::new_header_checked(l3) {
                Ok(ip) => {
                    k.put(slot::NW_SRC, u128::from(ip.src_addr()));
                    k.put(slot::NW_DST, u128::from(ip.dst_addr()));
                    k.put(slot::NW_TOS, u128::from(ip.traffic_class() & 0xfc));
                    let payload = &l3[weft_wire::ipv6::HEADER_LEN..];
                    match weft_wire::ipv6::walk_extension_headers(ip.next_header(), payload) {
                        Ok((p, at)) => {
                            k.put(slot::NW_PROTO, u128::from(p));
                            (Some(p), &payload[at..])
                        }
                        Err(_) => (None, &[][..]),
                    }
                }
                Err(_) => (None, &[][..]),
            },
            EtherType::ARP => {
                if let Ok(a) = weft_wire::arp::ArpPacket::new_checked(l3) {
                    k.put(slot::NW_PROTO, u128::from(a.operation() & 0xff));
                    k.put(slot::NW_SRC, u128::from(u32::from(a.sender_protocol_addr())));
                    k.put(slot::NW_DST, u128::from(u32::from(a.target_protocol_addr())));
                }
                (None, &[][..])
            }
            _ => (None, &[][..]),
        };
        match proto {
            Some(6 | 17 | 132) if l4.len() >= 4 => {
                k.put(slot::TP_SRC, u128::from(u16::from_be_bytes([l4[0], l4[1]])));
                k.put(slot::TP_DST, u128::from(u16::from_be_bytes([l4[2], l4[3]])));
            }
            Some(1 | 58) if l4.len() >= 2 => {
                k.put(slot::TP_SRC, u128::from(l4[0]));
                k.put(slot::TP_DST, u128::from(l4[1]));
            }
            _ => {}
        }
        k
    }

    /// Looks the frame up in `table` and runs the matching rule's actions; a miss drops it (OpenFlow 1.3).
    #[allow(clippy::too_many_arguments)]
    fn run_table(
        &mut self,
        pipeline: &Pipeline,
        bridge: usize,
        table: usize,
        in_port: PortIdx,
        remote: Option<IpAddr>,
        key: &FlowKey,
        st: &mut ActState,
        now: Nanos,
        depth: u8,
    ) {
        let b = &pipeline.bridges[bridge];
        let Some(t) = b.tables.get(table) else { return };
        if depth > MAX_RESUBMIT {
            return;
        }
        if let Some(tr) = &mut self.trace {
            let hit = t.classifier.classify(key);
            tr.push(TraceStep::Flow { table: table as u8, id: hit.map(|ri| t.rules[ri as usize].id) });
        }
        let hit = self.flow_caches[bridge][table].lookup(&t.classifier, key);
        if self.trace.is_none() {
            let ts = &mut self.table_stats[bridge][table];
            ts.0 += 1;
            ts.1 += u64::from(hit.is_some());
        }
        let Some(ri) = hit else {
            if self.trace.is_none() {
                self.counters[usize::from(in_port.0)].drop(DropReason::NoFlow);
            }
            return;
        };
        if self.trace.is_none() {
            let len = self.bytes(st.bytes).len() as u64;
            let stat = &mut self.flow_stats[bridge][table][ri as usize];
            stat.packets += 1;
            stat.bytes += len;
            stat.last_used = now;
        }
        let rule = &t.rules[ri as usize];
        if rule.actions.is_empty() && self.trace.is_none() {
            self.counters[usize::from(in_port.0)].drop(DropReason::FlowDrop);
        }
        let out = |dp: &mut Self, st: &mut ActState, port: PortIdx| {
            let r = dp.output(pipeline, port, st.tun_dst, st.bytes, st.hash, st.tci, st.vni);
            st.too_big = st.too_big.or(r);
        };
        for act in &rule.actions {
            match *act {
                ActRt::Output(p) if p != in_port => out(self, st, p),
                ActRt::Output(_) => {}
                ActRt::InPort => out(self, st, in_port),
                ActRt::Flood | ActRt::All => {
                    for &p in &b.ports {
                        if p != in_port {
                            out(self, st, p);
                        }
                    }
                }
                ActRt::Normal => self.normal_switch(pipeline, in_port, remote, st.bytes, st.tci, now),
                ActRt::Controller(_) if self.trace.is_some() => self.note(|| "controller: a PACKET_IN".to_string()),
                ActRt::Controller(max_len) => {
                    let sent = self.packet_in_rt[bridge].as_ref().is_some_and(|tx| {
                        let frame = resolve(&self.rx, &self.seg, st.bytes);
                        let mut data = Vec::with_capacity(frame.len() + 4);
                        data.extend_from_slice(&frame[..12]);
                        if st.tci & 0x0fff != 0 {
                            data.extend_from_slice(&vlan_tag(st.tci));
                        }
                        data.extend_from_slice(&frame[12..]);
                        data.truncate(usize::from(max_len));
                        let ofport = pipeline.ports[usize::from(in_port.0)].ofport;
                        let p =
                            crate::ofconn::PacketIn { in_port: ofport, table: table as u8, cookie: rule.cookie, data };
                        tx.try_send(p).is_ok()
                    });
                    if !sent {
                        self.counters[usize::from(in_port.0)].drop(DropReason::NoController);
                    }
                }
                ActRt::ModVlanVid(v) => st.tci = (st.tci & 0xf000) | (v & 0x0fff),
                ActRt::StripVlan => st.tci = 0,
                ActRt::PushVlan => st.tci &= 0xf000,
                ActRt::SetEthSrc(m) | ActRt::SetEthDst(m) => {
                    if !st.copied {
                        match self.copy_to_seg(st.bytes) {
                            Some(b) => {
                                st.bytes = b;
                                st.copied = true;
                            }
                            None => {
                                self.counters[usize::from(in_port.0)].drop(DropReason::TxError);
                                return;
                            }
                        }
                    }
                    let at = if matches!(act, ActRt::SetEthDst(_)) { 0 } else { 6 };
                    self.bytes_mut(st.bytes)[at..at + 6].copy_from_slice(&m.0);
                }
                ActRt::SetTunId(v) => st.vni = Some(v as u32),
                ActRt::SetTunDst(a) => st.tun_dst = Some(a),
                ActRt::Resubmit { port, table: t2 } => {
                    let mut k2 = *key;
                    let from = port.unwrap_or(in_port);
                    if port.is_some() {
                        k2.put(slot::IN_PORT, u128::from(pipeline.ports[usize::from(from.0)].ofport));
                    }
                    let t2 = t2.map_or(table, usize::from);
                    self.run_table(pipeline, bridge, t2, from, remote, &k2, st, now, depth + 1);
                }
                ActRt::GotoTable(t2) => {
                    self.run_table(pipeline, bridge, usize::from(t2), in_port, remote, key, st, now, depth + 1)
                }
            }
        }
    }

    /// Copies a frame into the scratch area (before a flow rewrites it, so earlier outputs keep the original).
    fn copy_to_seg(&mut self, bytes: Bytes) -> Option<Bytes> {
        let len = match bytes {
            Bytes::Rx { len, .. } | Bytes::Seg { len, .. } => len as usize,
        };
        let start = self.seg_used;
        if self.seg.len() - start < len {
            return None;
        }
        let (a, b) = (start, start + len);
        match bytes {
            Bytes::Rx { slot, start: s, len } => {
                let src = &self.rx.slot(usize::from(slot))[s as usize..(s + len) as usize];
                self.seg[a..b].copy_from_slice(src);
            }
            Bytes::Seg { start: s, len } => self.seg.copy_within(s as usize..(s + len) as usize, a),
        }
        self.seg_used = b;
        Some(Bytes::Seg { start: a as u32, len: len as u32 })
    }

    /// The NORMAL action: the learning switch (with ARP/ND suppression) on one frame of VLAN `tci`.
    fn normal_switch(
        &mut self,
        pipeline: &Pipeline,
        in_port: PortIdx,
        remote: Option<IpAddr>,
        bytes: Bytes,
        tci: u16,
        now: Nanos,
    ) {
        let vlan = tci & 0x0fff;
        let frame = self.bytes(bytes);
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.counters[usize::from(in_port.0)].drop(DropReason::Malformed);
            return;
        };
        let (src, dst) = (eth.src_addr(), eth.dst_addr());
        let hash = flow_hash(frame);
        let bridge = pipeline.ports[usize::from(in_port.0)].bridge;
        if self.trace.is_some() {
            let forward = weft_datapath::bridge::decide(&self.fdbs[bridge], in_port, vlan, dst, now);
            let what = match forward {
                Forward::Output { port, remote } => format!(
                    "NORMAL: {dst} was learned on port {}{} (VLAN {vlan})",
                    pipeline.ports[usize::from(port.0)].name,
                    remote.map(|r| format!(" behind VTEP {r}")).unwrap_or_default()
                ),
                Forward::Flood => {
                    format!("NORMAL: {dst} is not in the MAC table (or is multicast): flood to VLAN {vlan}")
                }
                Forward::Filter => format!("NORMAL: {dst} sits behind the input port: nothing to do"),
            };
            self.note(|| what);
            match forward {
                Forward::Output { port, remote } => {
                    self.output(pipeline, port, remote, bytes, hash, tci, None);
                }
                Forward::Flood => {
                    for &p in &pipeline.bridges[bridge].ports {
                        if p != in_port {
                            self.output(pipeline, p, None, bytes, hash, tci, None);
                        }
                    }
                }
                Forward::Filter => {}
            }
            return;
        }
        let d = normal(&mut self.fdbs[bridge], in_port, remote, vlan, src, dst, now);
        if d.learned == Some(weft_datapath::fdb::Learned::Full) {
            self.counters[usize::from(in_port.0)].drop(DropReason::FdbFull);
            if now.saturating_sub(self.full_logged[bridge]) >= FULL_LOG_INTERVAL || self.full_logged[bridge] == 0 {
                self.full_logged[bridge] = now.max(1);
                tracing::warn!(
                    "bridge {}: MAC table full ({} entries, other_config:mac-table-size); {src} not learned \
                     ({} misses so far)",
                    pipeline.bridges[bridge].name,
                    self.fdbs[bridge].len(),
                    self.fdbs[bridge].learn_misses
                );
            }
        }
        // ARP and ND: learn who owns which address; answer requests for known ones instead of flooding them
        // through proxy tunnels.
        let mut answered = false;
        let ethertype = resolve(&self.rx, &self.seg, bytes).get(12..14).map(|t| u16::from_be_bytes([t[0], t[1]]));
        // Bindings matter only where a proxy port can use them; other bridges skip this work.
        let proxy = pipeline.bridges[pipeline.ports[usize::from(in_port.0)].bridge].has_proxy;
        if let (true, Some(ethertype @ (EtherType::ARP | EtherType::IPV6))) = (proxy, ethertype) {
            let table = pipeline.bridges[bridge].table_size;
            let frame = resolve(&self.rx, &self.seg, bytes);
            let aging = pipeline.bridges[bridge].aging_secs;
            let from_tunnel = matches!(pipeline.ports[usize::from(in_port.0)].io, PortIo::Tunnel { .. });
            let seen = neigh::Seen { vlan, now, max: table, aging_secs: aging, from_tunnel };
            let query = self.neighs[bridge].observe(frame, 14, ethertype, &seen);
            if let (Some(q), Forward::Flood) = (query, d.forward) {
                if let Some(mac) = self.neighs[bridge].lookup(vlan, q.target, now, aging) {
                    let mut reply = [0u8; neigh::REPLY_MAX];
                    if let Some(len) = neigh::reply(frame, mac, &mut reply) {
                        answered = self.emit_local(pipeline, in_port, &reply[..len], tci);
                    }
                }
                for &p in &pipeline.bridges[bridge].ports {
                    if p != in_port && matches!(pipeline.ports[usize::from(p.0)].io, PortIo::Tunnel { proxy: true, .. })
                    {
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
        let mut too_big = None;
        match d.forward {
            Forward::Output { port, remote } => too_big = self.output(pipeline, port, remote, bytes, hash, tci, None),
            Forward::Flood => {
                for &p in &pipeline.bridges[bridge].ports {
                    let suppressed =
                        answered && matches!(pipeline.ports[usize::from(p.0)].io, PortIo::Tunnel { proxy: true, .. });
                    if p != in_port && !suppressed {
                        too_big = too_big.or(self.output(pipeline, p, None, bytes, hash, tci, None));
                    }
                }
            }
            Forward::Filter => {}
        }
        if let Some(mtu) = too_big {
            self.signal_too_big(pipeline, in_port, bytes, mtu, tci, now);
        }
    }

    /// Answers the sender of a frame too big for a tunnel with ICMP "fragmentation needed" or ICMPv6
    /// "packet too big" carrying `mtu`, sent back out of the port the frame came in on.
    fn signal_too_big(&mut self, pipeline: &Pipeline, in_port: PortIdx, bytes: Bytes, mtu: u16, tci: u16, now: Nanos) {
        if now / weft_datapath::SECOND != self.icmp_second {
            self.icmp_second = now / weft_datapath::SECOND;
            self.icmp_tokens = ICMP_PER_SECOND;
        }
        if self.icmp_tokens == 0 || self.seg.len() - self.seg_used < mtu::REPLY_MAX {
            return;
        }
        let mut reply = [0u8; mtu::REPLY_MAX];
        let Some(len) = mtu::too_big_reply(self.bytes(bytes), mtu, &mut reply) else { return };
        if self.emit_local(pipeline, in_port, &reply[..len], tci) {
            self.icmp_tokens -= 1;
        }
    }

    /// Sends a frame weft made itself (an ICMP error, an ARP or ND answer) out of `port`; false if the
    /// scratch area has no room for it this batch.
    fn emit_local(&mut self, pipeline: &Pipeline, port: PortIdx, frame: &[u8], tci: u16) -> bool {
        let start = self.seg_used;
        if self.seg.len() - start < frame.len() {
            return false;
        }
        self.seg[start..start + frame.len()].copy_from_slice(frame);
        self.seg_used += frame.len();
        let hash = flow_hash(frame);
        let gso = self.cur_gso.take();
        self.output(pipeline, port, None, Bytes::Seg { start: start as u32, len: frame.len() as u32 }, hash, tci, None);
        self.cur_gso = gso;
        true
    }

    /// Sends an (untagged) frame of VLAN `tci` out of one port (`vni`: a tunnel ID set by a flow), tagged if the port carries that VLAN tagged;
    /// ports that do not carry it are skipped. TAPs are written at once, the rest is queued for a batched
    /// send. `remote` (from the FDB) picks the VTEP behind a tunnel port; without it the port's remote_ip is
    /// used. Returns the tunnel's MTU when the frame is too big for it (and was dropped), so the sender can be
    /// told.
    #[allow(clippy::too_many_arguments)]
    fn output(
        &mut self,
        pipeline: &Pipeline,
        port: PortIdx,
        remote: Option<IpAddr>,
        bytes: Bytes,
        hash: u32,
        tci: u16,
        vni: Option<u32>,
    ) -> Option<u16> {
        let p = &pipeline.ports[usize::from(port.0)];
        let tag = match p.vlan.egress(tci) {
            Egress::Drop => return None,
            Egress::Untagged => None,
            Egress::Tagged => Some(vlan_tag(tci)),
        };
        let tag_len = if tag.is_some() { 4 } else { 0 };
        if self.link_down_rt.get(usize::from(port.0)).copied().unwrap_or(false) {
            if self.trace.is_some() {
                self.note(|| format!("{}: its link is down; not sent", p.name));
            } else {
                self.counters[usize::from(port.0)].drop(DropReason::LinkDown);
            }
            return None;
        }
        if let Some(tr) = &mut self.trace {
            let frame = resolve(&self.rx, &self.seg, bytes);
            let (remote, vni, src_port, too_big) = match &p.io {
                PortIo::Tunnel { spec, mtu, pool, remotes, .. } => {
                    let df = spec.df && spec.remote.is_ipv4();
                    let targets: Vec<IpAddr> = match remote {
                        Some(r) => vec![r],
                        None => match &self.cp_flood_rt[usize::from(port.0)] {
                            Some(cp) => cp.to_vec(),
                            None => remotes.iter().copied().filter(|r| !r.is_unspecified()).collect(),
                        },
                    };
                    let fit = mtu::tunnel_fit(frame, usize::from(*mtu), tag_len, df);
                    let ports = &pipeline.pool_ports[*pool];
                    let src =
                        (spec.encap != Encap::Gre && !ports.is_empty()).then(|| ports[hash as usize % ports.len()]);
                    (
                        Some(targets),
                        Some(vni.unwrap_or(spec.vni)),
                        src,
                        fit.err().map(|m| m.unwrap_or(*mtu - tag_len as u16)),
                    )
                }
                _ => (None, None, None, None),
            };
            let vlan = tag.map(|_| tci & 0x0fff);
            tr.push(TraceStep::Output { port: p.name.clone(), vlan, remote, vni, src_port, too_big });
            return None;
        }
        let tapped = self.tapped[usize::from(port.0)];
        let len = match bytes {
            Bytes::Rx { len, .. } | Bytes::Seg { len, .. } => len as usize + tag_len,
        };
        // An offloaded frame goes whole where the kernel takes it whole: to TAP and AF_PACKET ports with a
        // virtio-net header, and to UDP tunnels as one UDP_SEGMENT train (unless a capture wants each
        // packet). Elsewhere it is cut into segments first.
        let gso = self.cur_gso.map(|g| g.shifted(tag_len as u16));
        if let Some(g) = self.cur_gso {
            let whole = match &p.io {
                PortIo::Tap(t) => t.offloads().vnet_hdr,
                PortIo::Packet(_) => true,
                PortIo::Tunnel { spec, mtu, .. } => {
                    self.udp_gso
                        && spec.encap != Encap::Gre
                        && spec.ipsec.is_none()
                        && !tapped
                        && offload::segment_wire_len(self.bytes(bytes), &g)
                            .is_some_and(|l| l - ETH_LEN + tag_len <= usize::from(*mtu))
                }
                PortIo::Down(_) => true,
            };
            if !whole {
                return self.output_segmented(pipeline, port, remote, bytes, hash, tci, vni);
            }
        }
        let vnet = gso.map_or(VnetHdr::NONE, |g| g.to_bytes());
        let (sink, dest, prefix, prefix_len) = match &p.io {
            PortIo::Tap(t) => {
                if tapped {
                    self.tap_frame(port, bytes, tag);
                }
                let frame = self.bytes(bytes);
                let head: &[u8] = if t.offloads().vnet_hdr { &vnet } else { &[] };
                let r = match &tag {
                    None => t.write(&[std::io::IoSlice::new(head), std::io::IoSlice::new(frame)]),
                    Some(tag) => t.write(&[
                        std::io::IoSlice::new(head),
                        std::io::IoSlice::new(&frame[..12]),
                        std::io::IoSlice::new(tag),
                        std::io::IoSlice::new(&frame[12..]),
                    ]),
                };
                let c = &mut self.counters[usize::from(port.0)];
                match r {
                    Ok(_) => {
                        c.tx(len);
                        c.gso_tx += u64::from(gso.is_some());
                    }
                    Err(_) => c.drop(DropReason::TxError),
                }
                return None;
            }
            PortIo::Packet(_) => {
                if tapped {
                    self.tap_frame(port, bytes, tag);
                }
                let mut prefix = [0u8; PREFIX_MAX];
                prefix[..VNET_HDR_LEN].copy_from_slice(&vnet);
                (Sink::Packet(port), None, prefix, VNET_HDR_LEN as u8)
            }
            PortIo::Tunnel { spec, pool, dest, mtu, remotes, .. } => {
                let frame = self.bytes(bytes);
                // A pushed tag takes 4 of the inner packet's bytes; with DF outside even a frame the underlay
                // could fragment cannot go. (An offloaded frame's segments were measured above.)
                if gso.is_none() {
                    let df = spec.df && spec.remote.is_ipv4();
                    if let Err(tell) = mtu::tunnel_fit(frame, usize::from(*mtu), tag_len, df) {
                        self.counters[usize::from(port.0)].drop(DropReason::TooBig);
                        return tell;
                    }
                }
                let meta = outer_meta(spec, frame);
                let mut prefix = [0u8; PREFIX_MAX];
                let mut prefix_len = 0;
                // A flow's tunnel ID replaces the port's key (Geneve: only on ports without options).
                let vni = vni.filter(|_| spec.encap != Encap::Geneve || spec.options_len == 0);
                let spec = &TunnelSpec { vni: vni.unwrap_or(spec.vni), keyed: spec.keyed || vni.is_some(), ..*spec };
                match (spec.encap, vni) {
                    (Encap::Vxlan, Some(v)) => {
                        weft_wire::vxlan::VxlanRepr { vni: v }.emit(&mut prefix);
                        prefix_len = weft_wire::vxlan::HEADER_LEN;
                    }
                    (Encap::Geneve, Some(v)) => {
                        let repr = weft_wire::geneve::GeneveRepr {
                            vni: v,
                            protocol: EtherType::TEB,
                            oam: false,
                            options: &[],
                        };
                        repr.emit(&mut prefix);
                        prefix_len = repr.buffer_len();
                    }
                    _ => {}
                }
                if spec.encap == Encap::Gre {
                    let seq = spec.seq.then(|| {
                        let s = &mut self.gre_seq[usize::from(port.0)];
                        *s = s.wrapping_add(1);
                        *s - 1
                    });
                    let repr = GreRepr {
                        protocol: EtherType::TEB,
                        checksum: spec.csum,
                        key: spec.keyed.then_some(spec.vni),
                        sequence: seq,
                    };
                    prefix_len = repr.buffer_len();
                    repr.emit(&mut prefix);
                    if spec.csum {
                        weft_wire::gre::fill_checksum(
                            &mut prefix[..prefix_len],
                            &[resolve(&self.rx, &self.seg, bytes)],
                        );
                    }
                }
                let socket = hash as usize % pipeline.pools[*pool].len();
                let mut sink = Sink::Udp { pool: *pool as u16, socket: socket as u16 };
                // A known VTEP gets the one copy; otherwise every remote of the port gets one (for
                // remote_ip=flow, every VTEP the control plane lists).
                let one = [remote.unwrap_or(dest.ip())];
                let flood =
                    if remote.is_none() && spec.flow { self.cp_flood_rt[usize::from(port.0)].clone() } else { None };
                let targets: &[IpAddr] = match (&flood, remote) {
                    (_, Some(_)) => &one,
                    (Some(f), None) => f,
                    (None, None) => remotes,
                };
                if spec.ipsec.is_some() {
                    // Fail closed: without an SA nothing leaves, and nothing leaves in clear text.
                    match self.esp.out.get(&dest.ip()) {
                        Some(sa) => sink = Sink::Esp { v6: dest.is_ipv6(), udp: sa.udp },
                        None => {
                            self.counters[usize::from(port.0)].drop(DropReason::NoSa);
                            return None;
                        }
                    }
                }
                if tapped {
                    self.tap_frame(port, bytes, tag);
                    let PortIo::Tunnel { header, .. } = &p.io else { return None };
                    let head =
                        if prefix_len > 0 || spec.encap == Encap::Gre { &prefix[..prefix_len] } else { &header[..] };
                    let local = spec.local.unwrap_or(if spec.remote.is_ipv4() {
                        std::net::Ipv4Addr::UNSPECIFIED.into()
                    } else {
                        std::net::Ipv6Addr::UNSPECIFIED.into()
                    });
                    let src = SocketAddr::new(local, pipeline.pool_ports[*pool].get(socket).copied().unwrap_or(0));
                    for ip in targets {
                        let dst = SocketAddr::new(*ip, dest.port());
                        self.tap_outer(port, src, dst, spec.ip_protocol(), meta, head, Some(bytes), tag);
                    }
                }
                if let Some(g) = self.cur_gso {
                    let PortIo::Tunnel { header, .. } = &p.io else { return None };
                    let head = if prefix_len > 0 { &prefix[..prefix_len] } else { &header[..] };
                    self.output_train(port, sink, bytes, &g, head, tag, meta, targets, dest.port());
                    return None;
                }
                for ip in targets {
                    let dest = Some(SocketAddr::new(*ip, dest.port()));
                    self.enqueue(TxEntry {
                        sink,
                        port,
                        bytes,
                        dest,
                        prefix,
                        prefix_len: prefix_len as u8,
                        port_header: spec.encap != Encap::Gre && prefix_len == 0,
                        meta,
                        tag,
                        segment: 0,
                        packets: 1,
                        train_head: 0,
                        // Source ports spread flows as the tunnel's own socket pool would.
                        sport: 49152 + (hash % 16384) as u16,
                    });
                }
                return None;
            }
            PortIo::Down(_) => {
                self.counters[usize::from(port.0)].drop(DropReason::TxError);
                return None;
            }
        };
        self.enqueue(TxEntry {
            sink,
            port,
            bytes,
            dest,
            prefix,
            prefix_len,
            port_header: false,
            meta: IpMeta::default(),
            tag,
            segment: 0,
            packets: 1,
            train_head: 0,
            sport: 0,
        });
        if gso.is_some() {
            self.counters[usize::from(port.0)].gso_tx += 1;
        }
        None
    }

    /// Turns runs of queued tunnel datagrams that go out of one socket to one destination with the same size
    /// (small UDP packets of one flow, TCP acknowledgements) into UDP_SEGMENT trains: their bytes are copied
    /// one after another into the scratch area and the kernel sends the run as one buffer, so the stack and
    /// the underlay handle one packet per run instead of one per datagram. Only neighbours in the queue
    /// join, which keeps every socket's order; a run of one is left as it was.
    fn batch_trains(&mut self, pipeline: &Pipeline) {
        let mut out = std::mem::take(&mut self.txq_scratch);
        out.clear();
        // The open train: its index in `out`, datagram size, count, bytes, and where its bytes are.
        let mut open: Option<(usize, usize, u16, usize, usize)> = None;
        let queue = std::mem::take(&mut self.txq);
        for e in &queue {
            let joinable = matches!(e.sink, Sink::Udp { .. })
                && e.segment == 0
                && e.dest.is_some()
                && matches!(&pipeline.ports[usize::from(e.port.0)].io,
                    PortIo::Tunnel { spec, .. } if spec.encap != Encap::Gre);
            let len = self.wire_len(pipeline, e);
            if let (true, Some((at, size, count, total, start))) = (joinable, open) {
                let t = &out[at];
                let fits = t.sink == e.sink
                    && t.port == e.port
                    && t.dest == e.dest
                    && t.meta == e.meta
                    && len <= size
                    && usize::from(count) < UDP_GSO_SEGMENTS
                    && total + len <= UDP_GSO_BYTES
                    && (count == 1 || out[at].segment as usize == size);
                if fits {
                    // A train's bytes start when its second datagram arrives: the first is copied then.
                    let start = if count == 1 {
                        let first = out[at];
                        match self.copy_wire(pipeline, &first) {
                            Some(s) => s,
                            None => {
                                open = None;
                                out.push(*e);
                                continue;
                            }
                        }
                    } else {
                        start
                    };
                    if self.copy_wire(pipeline, e).is_none() {
                        open = None;
                        out.push(*e);
                        continue;
                    }
                    let head = len - self.frame_len(e);
                    let t = &mut out[at];
                    let total = total + len;
                    *t = TxEntry {
                        train_head: head as u8,
                        bytes: Bytes::Seg { start: start as u32, len: total as u32 },
                        prefix_len: 0,
                        port_header: false,
                        tag: None,
                        segment: size as u16,
                        packets: count + 1,
                        ..*t
                    };
                    // A shorter datagram ends the train (only the last may be short).
                    open = (len == size).then_some((at, size, count + 1, total, start));
                    continue;
                }
            }
            open = joinable.then_some((out.len(), len, 1, len, 0));
            out.push(*e);
        }
        self.txq = out;
        self.txq_scratch = queue;
    }

    /// The length of a queued frame, with its tag.
    fn frame_len(&self, e: &TxEntry) -> usize {
        let data = match e.bytes {
            Bytes::Rx { len, .. } | Bytes::Seg { len, .. } => len as usize,
        };
        data + if e.tag.is_some() { 4 } else { 0 }
    }

    /// The length of a queued datagram as it goes on the wire (tunnel header, tag and frame).
    fn wire_len(&self, pipeline: &Pipeline, e: &TxEntry) -> usize {
        let head = match &pipeline.ports[usize::from(e.port.0)].io {
            PortIo::Tunnel { header, .. } if e.port_header => header.len(),
            _ => usize::from(e.prefix_len),
        };
        let data = match e.bytes {
            Bytes::Rx { len, .. } | Bytes::Seg { len, .. } => len as usize,
        };
        head + data + if e.tag.is_some() { 4 } else { 0 }
    }

    /// Appends a queued datagram's wire bytes to the scratch area; returns where they start, or `None` when
    /// there is no room.
    fn copy_wire(&mut self, pipeline: &Pipeline, e: &TxEntry) -> Option<usize> {
        let len = self.wire_len(pipeline, e);
        let at = self.seg_used;
        if self.seg.len() - at < len {
            return None;
        }
        let (before, after) = self.seg.split_at_mut(at);
        let data = resolve(&self.rx, before, e.bytes);
        let head: &[u8] = match &pipeline.ports[usize::from(e.port.0)].io {
            PortIo::Tunnel { header, .. } if e.port_header => header,
            _ => &e.prefix[..usize::from(e.prefix_len)],
        };
        let dst = &mut after[..len];
        dst[..head.len()].copy_from_slice(head);
        let rest = &mut dst[head.len()..];
        match &e.tag {
            Some(tag) if data.len() >= 12 => {
                rest[..12].copy_from_slice(&data[..12]);
                rest[12..16].copy_from_slice(tag);
                rest[16..].copy_from_slice(&data[12..]);
            }
            _ => {
                let n = rest.len().min(data.len());
                rest[..n].copy_from_slice(&data[..n]);
            }
        }
        self.seg_used += len;
        Some(at)
    }

    /// Cuts the offloaded frame being switched into segments and sends each out of `port` as an ordinary
    /// frame. Returns the tunnel MTU when a segment was too big.
    #[allow(clippy::too_many_arguments)]
    fn output_segmented(
        &mut self,
        pipeline: &Pipeline,
        port: PortIdx,
        remote: Option<IpAddr>,
        bytes: Bytes,
        hash: u32,
        tci: u16,
        vni: Option<u32>,
    ) -> Option<u16> {
        let gso = self.cur_gso?;
        if !self.cut(bytes, &gso, port) {
            return None;
        }
        self.cur_gso = None;
        let mut tell = None;
        // Taken out while the segments go (nothing below cuts again, and if it did it would find no room
        // rather than overwrite this list).
        let segs = std::mem::take(&mut self.seg_list);
        for &(start, len) in &segs {
            tell = tell.or(self.output(pipeline, port, remote, Bytes::Seg { start, len }, hash, tci, vni));
        }
        self.seg_list = segs;
        self.cur_gso = Some(gso);
        tell
    }

    /// Segments `bytes` (an offloaded frame described by `gso`) into the scratch area; `seg_list` then holds
    /// each segment. False (and the drop counted on `port`) when it cannot be done. Used for offloaded frames
    /// from a port when offloads are off, and for outputs that cannot take them whole.
    fn cut(&mut self, bytes: Bytes, gso: &VnetHdr, port: PortIdx) -> bool {
        let mut list = std::mem::take(&mut self.seg_list);
        list.clear();
        let mut overflow = false;
        let done = self.segment_to_scratch(bytes, gso, Default::default(), port, |r| {
            if list.len() < list.capacity() {
                list.push((r.start as u32, r.len() as u32));
            } else {
                overflow = true;
            }
        });
        self.seg_list = list;
        if done && overflow {
            self.counters[usize::from(port.0)].drop(DropReason::UnsupportedOffload);
        }
        done && !overflow
    }

    /// Segments `bytes` (an offloaded frame described by `gso`) into the scratch area as `layout` says;
    /// `on_segment` gets each segment's range in the scratch area. Room is made once by sending what is
    /// queued, unless the frame itself lives in the scratch area. False, with the drop counted on `port`,
    /// when it cannot be done.
    fn segment_to_scratch(
        &mut self,
        bytes: Bytes,
        gso: &VnetHdr,
        layout: offload::SegmentLayout<'_>,
        port: PortIdx,
        mut on_segment: impl FnMut(std::ops::Range<usize>),
    ) -> bool {
        for attempt in 0..2 {
            let base = self.seg_used;
            let (frame, out) = frame_and_room(&self.rx, &mut self.seg, base, bytes);
            let why = match offload::segment(frame, gso, layout, out, |r| on_segment(base + r.start..base + r.end)) {
                Ok(used) => {
                    self.seg_used += used;
                    return true;
                }
                Err(offload::OffloadError::NoRoom(_)) if attempt == 0 && matches!(bytes, Bytes::Rx { .. }) => {
                    self.flush();
                    continue;
                }
                Err(offload::OffloadError::NoRoom(_)) => DropReason::TxError,
                Err(offload::OffloadError::Unsupported(_)) => DropReason::UnsupportedOffload,
                Err(offload::OffloadError::Malformed(_)) => DropReason::Malformed,
            };
            self.counters[usize::from(port.0)].drop(why);
            return false;
        }
        false
    }

    /// Sends the offloaded frame being switched out of a UDP tunnel as UDP_SEGMENT trains: segmented once,
    /// each segment behind `head` (and with `tag` in), into the scratch area, then queued as whole trains to
    /// each of `targets`.
    #[allow(clippy::too_many_arguments)]
    fn output_train(
        &mut self,
        port: PortIdx,
        sink: Sink,
        bytes: Bytes,
        gso: &VnetHdr,
        head: &[u8],
        tag: Option<[u8; 4]>,
        meta: IpMeta,
        targets: &[IpAddr],
        dport: u16,
    ) {
        let (mut base, mut first, mut count) = (None, 0usize, 0usize);
        let layout = offload::SegmentLayout { head, tag };
        let done = self.segment_to_scratch(bytes, gso, layout, port, |r| {
            if count == 0 {
                base = Some(r.start);
                first = r.len();
            }
            count += 1;
        });
        let (true, Some(base)) = (done, base) else { return };
        let (total, size) = (self.seg_used - base, first);
        // Trains of at most UDP_GSO_SEGMENTS datagrams and UDP_GSO_BYTES bytes; every datagram but the last
        // of the whole frame is `size` long.
        let per_train = UDP_GSO_SEGMENTS.min(UDP_GSO_BYTES / size.max(1)).max(1);
        for ip in targets {
            let dest = Some(SocketAddr::new(*ip, dport));
            let mut left = count;
            let mut at = base;
            while left > 0 {
                let k = left.min(per_train);
                let len = if k == left { base + total - at } else { k * size };
                self.enqueue(TxEntry {
                    sink,
                    port,
                    bytes: Bytes::Seg { start: at as u32, len: len as u32 },
                    dest,
                    prefix: [0; PREFIX_MAX],
                    prefix_len: 0,
                    port_header: false,
                    meta,
                    tag: None,
                    segment: if k > 1 { size as u16 } else { 0 },
                    packets: k as u16,
                    train_head: head.len() as u8,
                    sport: 0,
                });
                at += len;
                left -= k;
            }
        }
    }

    fn enqueue(&mut self, entry: TxEntry) {
        if self.txq.len() == TX_QUEUE {
            self.flush_queue();
        }
        if !self.sinks.contains(&entry.sink) {
            self.sinks.push(entry.sink);
        }
        self.txq.push(entry);
    }

    /// Sends everything queued and forgets the segment scratch.
    fn flush(&mut self) {
        self.flush_queue();
        self.seg_used = 0;
    }

    fn flush_queue(&mut self) {
        if self.txq.is_empty() {
            return;
        }
        let pipeline = self.pipeline.clone();
        if self.udp_gso {
            self.batch_trains(&pipeline);
        }
        let sinks = std::mem::take(&mut self.sinks);
        for &sink in &sinks {
            if let Sink::Esp { v6, udp } = sink {
                self.flush_esp(&pipeline, sink, v6, udp);
                continue;
            }
            let fd = match sink {
                Sink::Packet(p) => match &pipeline.ports[usize::from(p.0)].io {
                    PortIo::Packet(s) => s.as_raw_fd(),
                    _ => continue,
                },
                Sink::Udp { pool, socket } => pipeline.pools[usize::from(pool)][usize::from(socket)].as_raw_fd(),
                Sink::Esp { .. } => continue,
            };
            let mut owners: [(PortIdx, usize, u16, bool); BATCH] = [(PortIdx(0), 0, 0, false); BATCH];
            let counters = &mut self.counters;
            let mut train_failed = false;
            let mut account = |owners: &[(PortIdx, usize, u16, bool); BATCH], k: usize, ok: bool| {
                let (port, len, packets, train) = owners[k];
                let c = &mut counters[usize::from(port.0)];
                match (ok, train) {
                    (true, _) => {
                        c.tx_many(packets, len);
                        c.gso_tx += u64::from(train);
                    }
                    (false, true) => {
                        train_failed = true;
                        for _ in 0..packets {
                            c.drop(DropReason::TxError);
                        }
                    }
                    (false, false) => c.drop(DropReason::TxError),
                }
            };
            let mut batch = self.mmsg.start();
            for e in self.txq.iter().filter(|e| e.sink == sink) {
                let data = resolve(&self.rx, &self.seg, e.bytes);
                let head: &[u8] = match &pipeline.ports[usize::from(e.port.0)].io {
                    PortIo::Tunnel { header, .. } if e.port_header => header,
                    _ => &e.prefix[..usize::from(e.prefix_len)],
                };
                match &e.tag {
                    None => {
                        let frames = data.len() - usize::from(e.packets) * usize::from(e.train_head);
                        owners[batch.len()] = (e.port, frames, e.packets, e.segment > 0);
                        batch.push_segmented(&[head, data], e.dest.as_ref(), e.meta, e.segment);
                    }
                    Some(tag) => {
                        owners[batch.len()] = (e.port, data.len() + tag.len(), 1, false);
                        batch.push_with(&[head, &data[..12], tag, &data[12..]], e.dest.as_ref(), e.meta);
                    }
                }
                if batch.is_full() {
                    batch.send_with(fd, |k, ok| account(&owners, k, ok));
                }
            }
            if !batch.is_empty() {
                batch.send_with(fd, |k, ok| account(&owners, k, ok));
            }
            if train_failed && self.udp_gso {
                // The kernel would not send a train (an underlay device without checksum offload, a route
                // MTU below the datagrams): from now on every datagram goes on its own.
                self.udp_gso = false;
                tracing::warn!("the kernel refused a UDP_SEGMENT send; tunnel datagrams now go one by one");
            }
        }
        self.sinks = sinks;
        self.sinks.clear();
        self.txq.clear();
    }
}

impl Dataplane {
    /// Seals the queued tunnel packets of one ESP sink into the ESP buffer and sends them. ESP in UDP packets
    /// of one port to one peer that come out the same length (the segments of a TCP frame, cut to the MSS)
    /// lie side by side and leave as one UDP_SEGMENT train, as clear-text tunnel packets do.
    fn flush_esp(&mut self, pipeline: &Pipeline, sink: Sink, v6: bool, udp: bool) {
        let Some(fd) = pipeline.esp.iter().find(|e| e.v6 == v6 && e.udp == udp).map(|e| e.fd.as_raw_fd()) else {
            for e in self.txq.iter().filter(|e| e.sink == sink) {
                self.counters[usize::from(e.port.0)].drop(DropReason::TxError);
            }
            return;
        };
        let trains_ok = udp && self.udp_gso;
        let mut trains: [EspTrain; BATCH] = [EspTrain::default(); BATCH];
        let mut count = 0;
        let mut cursor = 0;
        let total = self.txq.len();
        for k in 0..total {
            let e = self.txq[k];
            if e.sink != sink {
                continue;
            }
            if count == BATCH || cursor + ESP_STRIDE > self.esp_buf.len() {
                self.send_esp_trains(fd, &trains[..count]);
                count = 0;
                cursor = 0;
            }
            let data = resolve(&self.rx, &self.seg, e.bytes);
            let io = &pipeline.ports[usize::from(e.port.0)].io;
            let head: &[u8] = match io {
                PortIo::Tunnel { header, .. } if e.port_header => header,
                _ => &e.prefix[..usize::from(e.prefix_len)],
            };
            let (proto, dport) = match io {
                PortIo::Tunnel { spec, .. } => (spec.ip_protocol(), spec.dst_port),
                _ => (0, 0),
            };
            let tag = e.tag.unwrap_or([0; 4]);
            let parts: [&[u8]; 4] = match &e.tag {
                Some(_) if data.len() >= 12 => [head, &data[..12], &tag, &data[12..]],
                _ => [head, data, &[], &[]],
            };
            let frame_len = data.len() + if e.tag.is_some() { 4 } else { 0 };
            let dest = e.dest.map_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), |d| d.ip());
            let Some(sa) = self.esp.out.get_mut(&dest) else {
                self.counters[usize::from(e.port.0)].drop(DropReason::NoSa);
                continue;
            };
            let room = &mut self.esp_buf[cursor..cursor + ESP_STRIDE];
            let Some(n) = crate::esp::seal(sa, room, proto, e.sport, dport, &parts, e.meta) else {
                self.counters[usize::from(e.port.0)].drop(DropReason::TooBig);
                continue;
            };
            let to = SocketAddr::new(dest, if udp { sa.peer_port } else { 0 });
            let joins = count > 0 && trains_ok && {
                let t = &trains[count - 1];
                t.to == to
                    && t.port == e.port
                    && t.meta == e.meta
                    && t.start + t.len == cursor
                    && t.len == t.seg * usize::from(t.count)
                    && n <= t.seg
                    && usize::from(t.count) < UDP_GSO_SEGMENTS
                    && t.len + n <= UDP_GSO_BYTES
            };
            if joins {
                let t = &mut trains[count - 1];
                t.len += n;
                t.count += 1;
                t.frames += frame_len;
            } else {
                trains[count] = EspTrain {
                    start: cursor,
                    len: n,
                    seg: n,
                    count: 1,
                    to,
                    meta: e.meta,
                    port: e.port,
                    frames: frame_len,
                };
                count += 1;
            }
            cursor += n;
        }
        if count > 0 {
            self.send_esp_trains(fd, &trains[..count]);
        }
    }

    fn send_esp_trains(&mut self, fd: std::os::fd::RawFd, trains: &[EspTrain]) {
        let counters = &mut self.counters;
        let mut refused = false;
        let mut batch = self.mmsg.start();
        for t in trains {
            let segment = if t.count > 1 { t.seg as u16 } else { 0 };
            batch.push_segmented(&[&self.esp_buf[t.start..t.start + t.len]], Some(&t.to), t.meta, segment);
        }
        batch.send_with(fd, |j, ok| {
            let t = &trains[j];
            let c = &mut counters[usize::from(t.port.0)];
            if ok {
                c.tx_many(t.count, t.frames);
                c.gso_tx += u64::from(t.count > 1);
            } else {
                refused |= t.count > 1;
                for _ in 0..t.count {
                    c.drop(DropReason::TxError);
                }
            }
        });
        if refused && self.udp_gso {
            self.udp_gso = false;
            tracing::warn!("the kernel refused a UDP_SEGMENT send; ESP datagrams now go one by one");
        }
    }
}

/// ESP packets sealed side by side in the ESP buffer that leave in one send: one datagram, or a UDP_SEGMENT
/// train of `count` datagrams of `seg` bytes (the last may be shorter).
#[derive(Clone, Copy)]
struct EspTrain {
    start: usize,
    len: usize,
    seg: usize,
    count: u16,
    to: SocketAddr,
    meta: IpMeta,
    port: PortIdx,
    /// The tunnel frames' bytes, for the port's counters.
    frames: usize,
}

impl Default for EspTrain {
    fn default() -> Self {
        EspTrain {
            start: 0,
            len: 0,
            seg: 0,
            count: 0,
            to: SocketAddr::from(([0, 0, 0, 0], 0)),
            meta: IpMeta::default(),
            port: PortIdx(0),
            frames: 0,
        }
    }
}

/// The tunnel header reader for a socket's encapsulation.
fn tunnel_kind(encap: Encap) -> Tunnel {
    match encap {
        Encap::Vxlan => Tunnel::Vxlan,
        Encap::Geneve => Tunnel::Geneve,
        Encap::Gre => Tunnel::Gre,
    }
}

/// The outer TOS and TTL a tunnel port sets for `frame`: fixed values, or copied from the inner IPv4 or IPv6
/// header (`inherit`; the whole TOS / traffic class byte, so DSCP and ECN both carry over as RFC 6040's
/// normal mode says). Non-IP frames get the socket's defaults.
fn outer_meta(spec: &TunnelSpec, frame: &[u8]) -> IpMeta {
    if spec.tos == Inherit::Default && spec.ttl == Inherit::Default {
        return IpMeta::default();
    }
    let inner = match mtu::l3_offset(frame) {
        Some((l3, EtherType::IPV4)) => frame.get(l3..l3 + 9).map(|h| (h[1], h[8])),
        Some((l3, EtherType::IPV6)) => frame.get(l3..l3 + 8).map(|h| (((h[0] & 0x0f) << 4) | (h[1] >> 4), h[7])),
        _ => None,
    };
    let pick = |how: Inherit, inner: Option<u8>| match how {
        Inherit::Default => None,
        Inherit::Value(v) => Some(v),
        Inherit::Inherit => inner,
    };
    IpMeta { tos: pick(spec.tos, inner.map(|i| i.0)), ttl: pick(spec.ttl, inner.map(|i| i.1)) }
}

/// What a frame carries through a flow's actions.
struct ActState {
    bytes: Bytes,
    tci: u16,
    /// The flow hash of the frame as it arrived (picks a tunnel's source port).
    hash: u32,
    /// Tunnel ID and destination set by the actions.
    vni: Option<u32>,
    tun_dst: Option<IpAddr>,
    /// The frame was copied to the scratch area to be rewritten.
    copied: bool,
    /// A tunnel it was sent to was too small.
    too_big: Option<u16>,
}

/// Most nested resubmits and goto_tables.
const MAX_RESUBMIT: u8 = 32;

/// A flow's counters.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlowStat {
    pub packets: u64,
    pub bytes: u64,
    pub last_used: Nanos,
}

/// The 4 bytes of an 802.1Q tag with control field `tci`.
fn vlan_tag(tci: u16) -> [u8; 4] {
    let [t0, t1] = EtherType::VLAN.to_be_bytes();
    let [c0, c1] = tci.to_be_bytes();
    [t0, t1, c0, c1]
}

/// Whether this kernel takes UDP_SEGMENT sends (probed once on a throwaway socket).
fn udp_gso_supported() -> bool {
    match weft_sys::udp::bind(SocketAddr::from(([127, 0, 0, 1], 0))) {
        Ok(s) => weft_sys::udp::can_segment(&s),
        Err(_) => false,
    }
}
