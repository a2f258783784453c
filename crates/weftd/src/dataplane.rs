//! The datapath thread: waits on every port, moves batches of frames through the learning switch, and sends
//! them out in batches.
//!
//! Memory is allocated when the thread starts; per packet nothing is. A batch is received into fixed
//! buffers, every output is queued as a reference into those buffers (flooding to ten ports queues ten
//! references to one frame, not ten copies), and all queues are flushed before the next batch is received.

use crate::capture::Tap;
use crate::pipeline::{Pipeline, PortIo, PortKind, RxSocket, TunnelPort};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::Instant;
use weft_api::{Encap, Inherit, TunnelSpec};
use weft_datapath::counters::{DropReason, PortCounters};
use weft_datapath::gro::{self, MergeRun};
use weft_datapath::mtu;
use weft_datapath::offload::{self, VnetHdr, VNET_HDR_LEN};
use weft_datapath::switch::{
    Area, Buffers, Data, Emission, Event, Input, Outputs, Quiet, Scratch, Step, Switch, ToController,
};
pub use weft_datapath::switch::{CpUpdate, FdbRow, FdbStats};
use weft_datapath::tunnel::{decap, Decap};
use weft_datapath::{Nanos, PortIdx};
use weft_sys::batch::{IpMeta, MmsgStorage, RecvBatch};
use weft_sys::epoll::{Epoll, EventFd};
use weft_wire::ethernet::{EtherType, HEADER_LEN as ETH_LEN};
use weft_wire::geneve::GenevePacket;
use weft_wire::gre::GreRepr;

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

/// Where a frame's bytes are: the receive buffers (offsets into the whole of them), the segment scratch
/// area, or the switch's scratch area.
type Bytes = Data;

/// The bytes of received packet `i` from `start` to `end` (offsets within its slot).
fn rx_bytes(rx: &RecvBatch, i: usize, range: std::ops::Range<usize>) -> Bytes {
    Data::new(Area::Rx, rx.slot_base(i) + range.start, range.len())
}

fn seg_bytes(start: u32, len: u32) -> Bytes {
    Data { area: Area::Seg, start, len }
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
fn frame_and_room<'a>(
    rx: &'a RecvBatch,
    seg: &'a mut [u8],
    scratch: &'a Scratch,
    base: usize,
    b: Bytes,
) -> (&'a [u8], &'a mut [u8]) {
    let (before, after) = seg.split_at_mut(base);
    (resolve(rx, before, scratch, b), after)
}

/// The bytes a queued frame refers to.
fn resolve<'a>(rx: &'a RecvBatch, seg: &'a [u8], scratch: &'a Scratch, b: Bytes) -> &'a [u8] {
    match b.area {
        Area::Rx => &rx.storage()[b.range()],
        Area::Seg => &seg[b.range()],
        Area::Scratch => &scratch.bytes()[b.range()],
    }
}

pub struct Dataplane {
    pipeline: Arc<Pipeline>,
    /// The switch itself: everything here but it is I/O.
    switch: Switch,
    /// What it produced for the frame being switched, and its scratch area (emptied after each batch).
    outs: Outputs,
    scratch: Scratch,
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
    /// Next GRE sequence number per port (`options:seq=true`).
    gre_seq: Vec<u32>,
    /// Running captures, and per port whether any watches it (the one test the fast path makes).
    taps: Vec<Tap>,
    tapped: Vec<bool>,
    /// Packet-in channels by bridge name, and by bridge index in the running pipeline.
    packet_in: std::collections::HashMap<String, std::sync::mpsc::SyncSender<crate::ofconn::PacketIn>>,
    packet_in_rt: Vec<Option<std::sync::mpsc::SyncSender<crate::ofconn::PacketIn>>>,
    /// Receive errors are logged at most once a second.
    rx_log: crate::log::RateLimit,
    /// Offloads allowed (`WEFT_OFFLOADS`), and sending UDP_SEGMENT trains (off after the kernel refuses one).
    offloads: bool,
    udp_gso: bool,
    /// Where the segments of the frame being cut are in `seg`.
    seg_list: Vec<(u32, u32)>,
    /// IPsec: child SAs, the buffer ESP packets are sealed in, and where IKE messages from port 4500 go.
    esp: crate::esp::EspTable,
    esp_buf: Vec<u8>,
    ike_tx: Option<std::sync::mpsc::SyncSender<crate::ipsec::IpsecMsg>>,
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

const TOKEN_CONTROL: u64 = u64::MAX;
const TOKEN_UDP: u64 = 1 << 32;
const TOKEN_ESP: u64 = 1 << 33;
/// Room per sealed ESP packet (a jumbo-frame underlay's packet and ESP's overhead).
const ESP_STRIDE: usize = 9216 + 256;

impl Dataplane {
    pub fn new(pipeline: Arc<Pipeline>, msgs: Receiver<DpMsg>, wake: Arc<EventFd>) -> Self {
        let mut dp = Dataplane {
            pipeline: Arc::new(Pipeline::empty()),
            switch: Switch::new(),
            outs: Outputs::with_capacity(TX_QUEUE),
            scratch: Scratch::new(SEGMENT_ARENA),
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
            gre_seq: Vec::new(),
            taps: Vec::new(),
            tapped: Vec::new(),
            packet_in: Default::default(),
            packet_in_rt: Vec::new(),
            rx_log: Default::default(),
            offloads: weft_sys::offloads_enabled(),
            udp_gso: weft_sys::offloads_enabled() && udp_gso_supported(),
            seg_list: Vec::with_capacity(MAX_SEGMENTS),
            esp: Default::default(),
            esp_buf: vec![0u8; BATCH * ESP_STRIDE],
            ike_tx: None,
        };
        dp.install(pipeline);
        dp
    }

    fn now(&self) -> Nanos {
        self.clock.elapsed().as_nanos() as Nanos
    }

    /// Switches to a new pipeline: the switch carries its state over by bridge, port and flow; GRE sequence
    /// numbers follow their port by name.
    fn install(&mut self, new: Arc<Pipeline>) {
        let old = std::mem::replace(&mut self.pipeline, new);
        let now = self.now();
        self.switch.install(self.pipeline.core.clone(), now);
        let p = &self.pipeline.core;
        let old_index = |name: &str| old.core.ports.iter().position(|op| op.name == name);
        self.gre_seq = p
            .ports
            .iter()
            .map(|np| old_index(&np.name).and_then(|i| self.gre_seq.get(i).copied()).unwrap_or(0))
            .collect();
        self.packet_in_rt = p.bridges.iter().map(|b| self.packet_in.get(&b.name).cloned()).collect();
        self.retap();
    }

    /// Points every capture at its port in the current pipeline (a capture whose port is gone ends) and
    /// recomputes which ports are watched.
    fn retap(&mut self) {
        let p = &self.pipeline.core;
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
        let frame = resolve(&self.rx, &self.seg, &self.scratch, bytes);
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
                let pkt = resolve(&self.rx, &self.seg, &self.scratch, whole);
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
        let frame = bytes.map_or(&[][..], |b| resolve(&self.rx, &self.seg, &self.scratch, b));
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
                        Ok(DpMsg::Cp(bridge, u)) => {
                            self.switch.control_plane(&bridge, u);
                        }
                        Ok(DpMsg::Fdb(bridge, reply)) => {
                            let _ = reply.send(self.switch.fdb_rows(&bridge, self.now()));
                        }
                        Ok(DpMsg::FdbFlush(bridge, reply)) => {
                            let _ = reply.send(self.switch.fdb_flush(&bridge));
                        }
                        Ok(DpMsg::FdbStats(bridge, reply)) => {
                            let _ = reply.send(self.switch.fdb_stats(&bridge));
                        }
                        Ok(DpMsg::Counters(bridge, reply)) => {
                            let _ = reply.send(self.switch.port_counters(&bridge));
                        }
                        Ok(DpMsg::FlowStats(bridge, reply)) => {
                            let _ = reply.send(self.switch.flow_stats(&bridge, self.now()));
                        }
                        Ok(DpMsg::LinkDown(names)) => self.switch.set_link_down(names),
                        Ok(DpMsg::TableStats(bridge, reply)) => {
                            let _ = reply.send(self.switch.table_stats(&bridge));
                        }
                        Ok(DpMsg::SetPacketIn(bridge, tx)) => {
                            match tx {
                                Some(tx) => self.packet_in.insert(bridge, tx),
                                None => self.packet_in.remove(&bridge),
                            };
                            let p = self.pipeline.core.clone();
                            self.packet_in_rt =
                                p.bridges.iter().map(|b| self.packet_in.get(&b.name).cloned()).collect();
                        }
                        Ok(DpMsg::Trace { bridge, in_port, frame, reply }) => {
                            let _ = reply.send(self.run_trace(&bridge, &in_port, &frame));
                        }
                        Ok(DpMsg::Capture(tap, reply)) => {
                            let known = self.pipeline.core.ports.iter().any(|p| p.name == tap.port_name);
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
            self.switch.tick(now);
        }
    }

    /// `weft trace`: the frame goes through the same code as real traffic, on a copy of the switch (what it
    /// learns and counts is thrown away) with an observer that records each step; nothing is sent.
    fn run_trace(&mut self, bridge: &str, in_port: &str, frame: &[u8]) -> Result<Vec<TraceStep>, String> {
        let pipeline = self.pipeline.clone();
        let port = pipeline
            .core
            .port_named(bridge, in_port)
            .ok_or_else(|| format!("bridge {bridge:?} has no running port {in_port:?}"))?;
        if frame.len() > self.seg.len() {
            return Err("frame too long".into());
        }
        self.seg[..frame.len()].copy_from_slice(frame);
        let remote = pipeline.core.port(port).tunnel().map(|t| t.spec.remote);
        let mut shadow = self.switch.clone();
        let mut scratch = Scratch::new(SEGMENT_ARENA);
        let mut outs = Outputs::default();
        let mut steps: Vec<Step> = Vec::new();
        let now = self.now();
        let mut bufs = Buffers { rx: &mut [], seg: &mut self.seg, scratch: &mut scratch };
        let input = Input { data: seg_bytes(0, frame.len() as u32), in_port: port, remote, stripped: None, gso: None };
        shadow.process(&mut bufs, input, now, &mut outs, &mut steps);
        Ok(steps.into_iter().map(|s| trace_step(&pipeline, &shadow, s)).collect())
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
                    tracing::warn!(port = %pipeline.core.port(port).name, suppressed = held, "receive failed: {e}");
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
            self.switch.counter(port).rx(len);
            let tag = self.stripped_tag(i);
            let bytes = rx_bytes(&self.rx, i, start..start + len);
            self.switch(&pipeline, port, None, bytes, tag, gso, now);
        }
        self.end_batch();
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
            self.switch.counter(port).drop(DropReason::Malformed);
            return None;
        };
        let frame_start = range.start + VNET_HDR_LEN;
        let frame_len = range.len() - VNET_HDR_LEN;
        if hdr.is_gso() {
            if self.offloads && hdr.passable(frame_len) {
                return Some((frame_start, frame_len, Some(hdr)));
            }
            let whole = rx_bytes(&self.rx, i, frame_start..frame_start + frame_len);
            if self.cut(whole, &hdr, port) {
                let pipeline = self.pipeline.clone();
                let now = self.now();
                self.switch.counter(port).rx(frame_len);
                let tag = self.stripped_tag(i);
                let segs = std::mem::take(&mut self.seg_list);
                for &(start, len) in &segs {
                    self.switch(&pipeline, port, None, seg_bytes(start, len), tag, None, now);
                }
                self.seg_list = segs;
            }
            return None;
        }
        if hdr.flags & offload::F_NEEDS_CSUM != 0 {
            let frame = &mut slot[frame_start..frame_start + frame_len];
            if offload::complete_checksum(frame, usize::from(hdr.csum_start), usize::from(hdr.csum_offset)).is_err() {
                self.switch.counter(port).drop(DropReason::Malformed);
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
        self.end_batch();
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
        let mtu = pipeline.core.port(port).tunnel().map_or(usize::MAX, |t| usize::from(t.mtu));
        if let Some(gso) = gro::oversized_partial_tcp(&self.rx.slot(i)[frame.clone()], mtu) {
            if let Some((rp, rsrc, rslot, r)) = run.take() {
                self.switch_run(pipeline, rslot, rp, rsrc, r, now);
            }
            let bytes = rx_bytes(&self.rx, i, frame.clone());
            if self.offloads {
                self.switch(pipeline, port, Some(src), bytes, None, Some(gso), now);
            } else if self.cut(bytes, &gso, port) {
                let segs = std::mem::take(&mut self.seg_list);
                for &(start, len) in &segs {
                    self.switch(pipeline, port, Some(src), seg_bytes(start, len), None, None, now);
                }
                self.seg_list = segs;
            }
            return;
        }
        if !self.offloads {
            self.finish_partial(i, frame.clone());
            let bytes = rx_bytes(&self.rx, i, frame.clone());
            self.switch(pipeline, port, Some(src), bytes, None, None, now);
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
                let bytes = rx_bytes(&self.rx, i, frame.clone());
                self.switch(pipeline, port, Some(src), bytes, None, None, now);
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
            self.switch.counter(port).gro_rx += u64::from(merged);
        } else {
            self.finish_partial(slot, frame.start - base..frame.end - base);
        }
        let bytes = Data::new(Area::Rx, frame.start, frame.len());
        self.switch(pipeline, port, Some(src), bytes, None, gso, now);
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
        let Decap { vni, inner_at, error } = decap(rs.encap, rs.bound.is_ipv4() && !protected, pkt);
        let port = match rs.classify(src.ip(), vni) {
            Ok(p) => p,
            Err((charged, why)) => {
                self.switch.counter(charged).drop(error.unwrap_or(why));
                return None;
            }
        };
        if let Some(why) = error {
            self.switch.counter(port).drop(why);
            return None;
        }
        if let Some(t) = pipeline.core.port(port).tunnel() {
            if t.spec.ipsec.is_some() != protected {
                self.switch.counter(port).drop(DropReason::Cleartext);
                return None;
            }
        }
        if rs.encap == Encap::Geneve {
            let Some(PortKind::Tunnel(TunnelPort { known_options, .. })) = Some(&pipeline.core.port(port).kind) else {
                return None;
            };
            let g = GenevePacket::new_unchecked(pkt);
            let mut seen = 0;
            let mut unknown_critical = false;
            for o in g.options().flatten() {
                seen += 1;
                unknown_critical |= o.is_critical() && !known_options.contains(&(o.class, o.kind));
            }
            let c = self.switch.counter(port);
            c.geneve_options_rx += seen;
            if unknown_critical {
                c.drop(DropReason::CriticalOption);
                return None;
            }
        }
        if self.tapped[usize::from(port.0)] {
            let whole = rx_bytes(&self.rx, i, datagram.clone());
            self.tap_received(port, rs.encap, rs.bound, src, whole);
        }
        let len = datagram.len() - inner_at;
        self.switch.counter(port).rx(len);
        Some((port, datagram.start + inner_at..datagram.end))
    }

    fn bytes(&self, b: Bytes) -> &[u8] {
        resolve(&self.rx, &self.seg, &self.scratch, b)
    }

    /// Switches one received frame (`stripped`: the 802.1Q tag the kernel already took off it, `gso`: its
    /// offload header) and performs what the switch produced.
    #[allow(clippy::too_many_arguments)]
    fn switch(
        &mut self,
        pipeline: &Pipeline,
        in_port: PortIdx,
        remote: Option<IpAddr>,
        data: Bytes,
        stripped: Option<u16>,
        gso: Option<VnetHdr>,
        now: Nanos,
    ) {
        if self.tapped[usize::from(in_port.0)] {
            self.tap_frame(in_port, data, stripped.map(vlan_tag));
        }
        let mut bufs = Buffers { rx: self.rx.storage_mut(), seg: &mut self.seg, scratch: &mut self.scratch };
        let input = Input { data, in_port, remote, stripped, gso };
        self.switch.process(&mut bufs, input, now, &mut self.outs, &mut Quiet);
        self.perform(pipeline);
    }

    /// Sends what the switch produced, hands frames to controllers, and logs what it reported.
    fn perform(&mut self, pipeline: &Pipeline) {
        let mut outs = std::mem::take(&mut self.outs);
        for e in &outs.sends {
            self.transmit(pipeline, e);
        }
        for c in &outs.to_controller {
            self.packet_in(pipeline, c);
        }
        for ev in &outs.events {
            match *ev {
                Event::MacTableFull { bridge, src, entries, misses } => tracing::warn!(
                    "bridge {}: MAC table full ({entries} entries, other_config:mac-table-size); {src} not learned \
                     ({misses} misses so far)",
                    pipeline.core.bridges[bridge].name,
                ),
            }
        }
        outs.clear();
        self.outs = outs;
    }

    /// Hands a frame to the bridge's OpenFlow controller (counted as `no_controller` when none takes it).
    fn packet_in(&mut self, pipeline: &Pipeline, c: &ToController) {
        let frame = resolve(&self.rx, &self.seg, &self.scratch, c.data);
        let sent = self.packet_in_rt[c.bridge].as_ref().is_some_and(|tx| {
            let mut data = Vec::with_capacity(frame.len() + 4);
            data.extend_from_slice(&frame[..12]);
            if c.tci & 0x0fff != 0 {
                data.extend_from_slice(&vlan_tag(c.tci));
            }
            data.extend_from_slice(&frame[12..]);
            data.truncate(usize::from(c.max_len));
            let in_port = pipeline.core.port(c.in_port).ofport;
            let p = crate::ofconn::PacketIn { in_port, table: c.table, cookie: c.cookie, data };
            tx.try_send(p).is_ok()
        });
        if !sent {
            self.switch.counter(c.in_port).drop(DropReason::NoController);
        }
    }

    /// Sends one emission of the switch: TAPs are written at once, the rest is queued for a batched send. An
    /// offloaded frame goes whole where the kernel takes it whole (TAP and AF_PACKET ports with a virtio-net
    /// header, UDP tunnels as one UDP_SEGMENT train unless a capture wants each packet); elsewhere it is cut
    /// into segments first.
    fn transmit(&mut self, pipeline: &Pipeline, e: &Emission) {
        let port = e.port;
        let bytes = e.data;
        let tag = e.tagged.then(|| vlan_tag(e.tci));
        let tag_len = if tag.is_some() { 4 } else { 0 };
        let desc = pipeline.core.port(port);
        let io = &pipeline.ports[usize::from(port.0)].io;
        let tapped = self.tapped[usize::from(port.0)];
        let len = bytes.len() + tag_len;
        let gso = e.gso.map(|g| g.shifted(tag_len as u16));
        if let Some(g) = e.gso {
            let whole = match (&desc.kind, io) {
                (PortKind::Tap { vnet_hdr }, _) => *vnet_hdr,
                (PortKind::Tunnel(t), _) => {
                    self.udp_gso
                        && t.spec.encap != Encap::Gre
                        && t.spec.ipsec.is_none()
                        && !tapped
                        && offload::segment_wire_len(self.bytes(bytes), &g)
                            .is_some_and(|l| l - ETH_LEN + tag_len <= usize::from(t.mtu))
                }
                (PortKind::Packet | PortKind::Down(_), _) => true,
            };
            if !whole {
                self.transmit_segmented(pipeline, e, &g);
                return;
            }
        }
        let vnet = gso.map_or(VnetHdr::NONE, |g| g.to_bytes());
        let (sink, prefix, prefix_len) = match (&desc.kind, io) {
            (_, PortIo::Tap(t)) => {
                if tapped {
                    self.tap_frame(port, bytes, tag);
                }
                let frame = resolve(&self.rx, &self.seg, &self.scratch, bytes);
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
                let c = self.switch.counter(port);
                match r {
                    Ok(_) => {
                        c.tx(len);
                        c.gso_tx += u64::from(gso.is_some());
                    }
                    Err(_) => c.drop(DropReason::TxError),
                }
                return;
            }
            (_, PortIo::Packet(_)) => {
                if tapped {
                    self.tap_frame(port, bytes, tag);
                }
                let mut prefix = [0u8; PREFIX_MAX];
                prefix[..VNET_HDR_LEN].copy_from_slice(&vnet);
                (Sink::Packet(port), prefix, VNET_HDR_LEN as u8)
            }
            (PortKind::Tunnel(t), PortIo::Tunnel { pool }) => {
                self.transmit_tunnel(pipeline, e, t, *pool, tag);
                return;
            }
            _ => {
                self.switch.counter(port).drop(DropReason::TxError);
                return;
            }
        };
        self.enqueue(TxEntry {
            sink,
            port,
            bytes,
            dest: None,
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
            self.switch.counter(port).gso_tx += 1;
        }
    }

    /// Encapsulates an emission for tunnel port `t` and queues it to its VTEPs: the one the switch named, or
    /// else every remote of the port (for remote_ip=flow, every VTEP the control plane lists).
    fn transmit_tunnel(
        &mut self,
        pipeline: &Pipeline,
        e: &Emission,
        t: &TunnelPort,
        pool: usize,
        tag: Option<[u8; 4]>,
    ) {
        let (port, bytes, hash, remote) = (e.port, e.data, e.hash, e.remote);
        let dest = t.dest;
        let frame = resolve(&self.rx, &self.seg, &self.scratch, bytes);
        let meta = outer_meta(&t.spec, frame);
        let mut prefix = [0u8; PREFIX_MAX];
        let mut prefix_len = 0;
        // A flow's tunnel ID replaces the port's key (Geneve: only on ports without options).
        let vni = e.vni.filter(|_| t.spec.encap != Encap::Geneve || t.spec.options_len == 0);
        let spec = &TunnelSpec { vni: vni.unwrap_or(t.spec.vni), keyed: t.spec.keyed || vni.is_some(), ..t.spec };
        match (spec.encap, vni) {
            (Encap::Vxlan, Some(v)) => {
                weft_wire::vxlan::VxlanRepr { vni: v }.emit(&mut prefix);
                prefix_len = weft_wire::vxlan::HEADER_LEN;
            }
            (Encap::Geneve, Some(v)) => {
                let repr = weft_wire::geneve::GeneveRepr { vni: v, protocol: EtherType::TEB, oam: false, options: &[] };
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
                weft_wire::gre::fill_checksum(&mut prefix[..prefix_len], &[frame]);
            }
        }
        let socket = hash as usize % pipeline.pools[pool].len();
        let mut sink = Sink::Udp { pool: pool as u16, socket: socket as u16 };
        let one = [remote.unwrap_or(dest.ip())];
        let flood = if remote.is_none() && spec.flow { self.switch.flood_list(port).cloned() } else { None };
        let targets: &[IpAddr] = match (&flood, remote) {
            (_, Some(_)) => &one,
            (Some(f), None) => f,
            (None, None) => &t.remotes,
        };
        if spec.ipsec.is_some() {
            // Fail closed: without an SA nothing leaves, and nothing leaves in clear text.
            match self.esp.out.get(&dest.ip()) {
                Some(sa) => sink = Sink::Esp { v6: dest.is_ipv6(), udp: sa.udp },
                None => {
                    self.switch.counter(port).drop(DropReason::NoSa);
                    return;
                }
            }
        }
        if self.tapped[usize::from(port.0)] {
            self.tap_frame(port, bytes, tag);
            let head = if prefix_len > 0 || spec.encap == Encap::Gre { &prefix[..prefix_len] } else { &t.header[..] };
            let local = spec.local.unwrap_or(if spec.remote.is_ipv4() {
                std::net::Ipv4Addr::UNSPECIFIED.into()
            } else {
                std::net::Ipv6Addr::UNSPECIFIED.into()
            });
            let src = SocketAddr::new(local, pipeline.pool_ports[pool].get(socket).copied().unwrap_or(0));
            for ip in targets {
                let dst = SocketAddr::new(*ip, dest.port());
                self.tap_outer(port, src, dst, spec.ip_protocol(), meta, head, Some(bytes), tag);
            }
        }
        if let Some(g) = e.gso {
            let head = if prefix_len > 0 { &prefix[..prefix_len] } else { &t.header[..] };
            self.output_train(port, sink, bytes, &g, head, tag, meta, targets, dest.port());
            return;
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
    }

    /// Cuts an offloaded emission into segments and sends each as an ordinary frame.
    fn transmit_segmented(&mut self, pipeline: &Pipeline, e: &Emission, gso: &VnetHdr) {
        if !self.cut(e.data, gso, e.port) {
            return;
        }
        // Taken out while the segments go (nothing below cuts again, and if it did it would find no room
        // rather than overwrite this list).
        let segs = std::mem::take(&mut self.seg_list);
        for &(start, len) in &segs {
            let seg = Emission { data: Data { area: Area::Seg, start, len }, gso: None, ..*e };
            self.transmit(pipeline, &seg);
        }
        self.seg_list = segs;
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
                && pipeline.core.port(e.port).tunnel().is_some_and(|t| t.spec.encap != Encap::Gre);
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
                        bytes: seg_bytes(start as u32, total as u32),
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
        let data = e.bytes.len();
        data + if e.tag.is_some() { 4 } else { 0 }
    }

    /// The length of a queued datagram as it goes on the wire (tunnel header, tag and frame).
    fn wire_len(&self, pipeline: &Pipeline, e: &TxEntry) -> usize {
        let head = match &pipeline.core.port(e.port).kind {
            PortKind::Tunnel(t) if e.port_header => t.header.len(),
            _ => usize::from(e.prefix_len),
        };
        let data = e.bytes.len();
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
        let data = resolve(&self.rx, before, &self.scratch, e.bytes);
        let head: &[u8] = match &pipeline.core.port(e.port).kind {
            PortKind::Tunnel(t) if e.port_header => &t.header,
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
            self.switch.counter(port).drop(DropReason::UnsupportedOffload);
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
            let (frame, out) = frame_and_room(&self.rx, &mut self.seg, &self.scratch, base, bytes);
            let why = match offload::segment(frame, gso, layout, out, |r| on_segment(base + r.start..base + r.end)) {
                Ok(used) => {
                    self.seg_used += used;
                    return true;
                }
                Err(offload::OffloadError::NoRoom(_)) if attempt == 0 && bytes.area == Area::Rx => {
                    self.flush();
                    continue;
                }
                Err(offload::OffloadError::NoRoom(_)) => DropReason::TxError,
                Err(offload::OffloadError::Unsupported(_)) => DropReason::UnsupportedOffload,
                Err(offload::OffloadError::Malformed(_)) => DropReason::Malformed,
            };
            self.switch.counter(port).drop(why);
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
                    bytes: seg_bytes(at as u32, len as u32),
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

    /// Ends a batch: sends everything queued, and empties the switch's scratch area (no queued frame refers
    /// to it any more).
    fn end_batch(&mut self) {
        self.flush();
        self.scratch.clear();
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
            let counters = &mut self.switch;
            let mut train_failed = false;
            let mut account = |owners: &[(PortIdx, usize, u16, bool); BATCH], k: usize, ok: bool| {
                let (port, len, packets, train) = owners[k];
                let c = counters.counter(port);
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
                let data = resolve(&self.rx, &self.seg, &self.scratch, e.bytes);
                let head: &[u8] = match &pipeline.core.port(e.port).kind {
                    PortKind::Tunnel(t) if e.port_header => &t.header,
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
                self.switch.counter(e.port).drop(DropReason::TxError);
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
            let data = resolve(&self.rx, &self.seg, &self.scratch, e.bytes);
            let io = &pipeline.core.port(e.port).kind;
            let head: &[u8] = match io {
                PortKind::Tunnel(t) if e.port_header => &t.header,
                _ => &e.prefix[..usize::from(e.prefix_len)],
            };
            let (proto, dport) = match io {
                PortKind::Tunnel(t) => (t.spec.ip_protocol(), t.spec.dst_port),
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
                self.switch.counter(e.port).drop(DropReason::NoSa);
                continue;
            };
            let room = &mut self.esp_buf[cursor..cursor + ESP_STRIDE];
            let Some(n) = crate::esp::seal(sa, room, proto, e.sport, dport, &parts, e.meta) else {
                self.switch.counter(e.port).drop(DropReason::TooBig);
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
        let counters = &mut self.switch;
        let mut refused = false;
        let mut batch = self.mmsg.start();
        for t in trains {
            let segment = if t.count > 1 { t.seg as u16 } else { 0 };
            batch.push_segmented(&[&self.esp_buf[t.start..t.start + t.len]], Some(&t.to), t.meta, segment);
        }
        batch.send_with(fd, |j, ok| {
            let t = &trains[j];
            let c = counters.counter(t.port);
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

/// What trace says of one step of the switch.
fn trace_step(pipeline: &Pipeline, shadow: &Switch, step: Step) -> TraceStep {
    match step {
        Step::Note(text) => TraceStep::Note(text),
        Step::Flow { table, rule } => TraceStep::Flow { table, id: rule },
        Step::Output { emission: e, too_big } => {
            let p = pipeline.core.port(e.port);
            let (remote, vni, src_port) = match (&p.kind, &pipeline.ports[usize::from(e.port.0)].io) {
                (PortKind::Tunnel(t), PortIo::Tunnel { pool }) => {
                    let targets: Vec<IpAddr> = match (e.remote, shadow.flood_list(e.port)) {
                        (Some(r), _) => vec![r],
                        (None, Some(cp)) => cp.to_vec(),
                        (None, None) => t.remotes.iter().copied().filter(|r| !r.is_unspecified()).collect(),
                    };
                    let ports = &pipeline.pool_ports[*pool];
                    let src =
                        (t.spec.encap != Encap::Gre && !ports.is_empty()).then(|| ports[e.hash as usize % ports.len()]);
                    (Some(targets), Some(e.vni.unwrap_or(t.spec.vni)), src)
                }
                _ => (None, None, None),
            };
            let vlan = e.tagged.then_some(e.tci & 0x0fff);
            TraceStep::Output { port: p.name.clone(), vlan, remote, vni, src_port, too_big }
        }
    }
}
