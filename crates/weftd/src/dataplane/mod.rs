//! The datapath thread: waits on every port, moves batches of frames through the learning switch, and sends
//! them out in batches.
//!
//! Memory is allocated when the thread starts; per packet nothing is. A batch is received into fixed
//! buffers, every output is queued as a reference into those buffers (flooding to ten ports queues ten
//! references to one frame, not ten copies), and all queues are flushed before the next batch is received.

mod esp;
mod learn;
pub use learn::FlowMsg;
mod rx;
mod taps;
mod trains;
mod tx;

use crate::capture::Tap;
use crate::msgs::{DpMsg, IpsecMsg, PacketIn, TraceStep};
use crate::pipeline::{Pipeline, PortIo, PortKind, RxSocket, TunnelPort};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use weft_api::Encap;
use weft_datapath::counters::DropReason;
use weft_datapath::gro::{self, MergeRun};
use weft_datapath::offload::{self, VnetHdr, VNET_HDR_LEN};
use weft_datapath::switch::egress::{SendOffloads, TunnelHeader};
use weft_datapath::switch::{
    Area, Buffers, Data, Emission, Event, Input, Learnt, Outputs, Quiet, Scratch, Step, Switch, ToController,
};
use weft_datapath::{Nanos, PortIdx};

static CLOCK: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// The instant the switch's times count from: the same for every worker and for the control thread (which
/// reads the connection tracker's deadlines).
pub fn clock() -> Instant {
    *CLOCK.get_or_init(Instant::now)
}

/// Now, on [`clock`].
pub fn now() -> Nanos {
    clock().elapsed().as_nanos() as Nanos
}
use weft_sys::batch::{IpMeta, MmsgStorage, RecvBatch, MAX_PARTS};
use weft_sys::epoll::{Epoll, EventFd};
use weft_wire::ethernet::EtherType;

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
/// Most merged frames left gathered in one batch.
const GATHERED: usize = BATCH * 4;

/// Longest header kept in a queued frame's entry: a GRE header with every field (the virtio-net header is
/// 10 bytes; VXLAN and Geneve headers are the port's, not built per packet). A longer one — a Geneve
/// header carrying tunnel metadata — is kept in the dataplane's `long_prefixes` ([`TxEntry::prefix_at`]).
const PREFIX_MAX: usize = weft_wire::gre::HEADER_MAX;
/// [`TxEntry::prefix_at`] when the prefix is in the entry.
const PREFIX_INLINE: u32 = u32::MAX;

/// The bytes that go in front of a queued frame: the port's own tunnel header, or its prefix (in the entry,
/// or in `long`, the dataplane's `long_prefixes`).
fn head_of<'a>(pipeline: &'a Pipeline, e: &'a TxEntry, long: &'a [u8]) -> &'a [u8] {
    match &pipeline.core.port(e.port).kind {
        PortKind::Tunnel(t) if e.port_header => &t.header,
        _ if e.prefix_at != PREFIX_INLINE => {
            long.get(e.prefix_at as usize..e.prefix_at as usize + usize::from(e.prefix_len)).unwrap_or_default()
        }
        _ => &e.prefix[..usize::from(e.prefix_len)],
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

/// The bytes a queued frame refers to.
fn resolve<'a>(rx: &'a RecvBatch, seg: &'a [u8], scratch: &'a Scratch, b: Bytes) -> &'a [u8] {
    match b.area {
        Area::Rx => &rx.storage()[b.range()],
        Area::Seg => &seg[b.range()],
        Area::Scratch => &scratch.bytes()[b.range()],
    }
}

#[derive(Clone, Copy)]
struct TxEntry {
    sink: Sink,
    port: PortIdx,
    bytes: Bytes,
    dest: Option<SocketAddr>,
    prefix: [u8; PREFIX_MAX],
    prefix_len: u8,
    /// Where a prefix longer than [`PREFIX_MAX`] starts in `long_prefixes` ([`PREFIX_INLINE`]: in `prefix`).
    prefix_at: u32,
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
    /// A GRE port that numbers its packets: the header (with the flow's tunnel ID, if any) is built when
    /// the queue is sent, under the pipeline's GRE lock, so that numbers leave in order whichever worker
    /// sends them.
    late_gre: Option<Option<u32>>,
}

/// Which kernel object a queued frame leaves through.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sink {
    /// A TAP port, written frame by frame when the batch's queue is flushed (TAPs have no batch write).
    Tap(PortIdx),
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

/// What the workers tell each other: per worker, the MAC-table changes the others learned since it last
/// looked (taken between batches, so the fast path takes no lock), and whether there are any.
pub struct Sharing {
    inbox: Vec<Mutex<Vec<Learnt>>>,
    waiting: Vec<AtomicBool>,
    /// When a full MAC table was last logged, by bridge (a full table is met by every worker).
    full_logged: Mutex<std::collections::HashMap<String, Nanos>>,
    /// What `learn` actions read, for the control plane.
    pub learns: learn::LearnQueue,
}

/// Most changes waiting for one worker (a worker away that long has a table to catch up on anyway).
const INBOX_MAX: usize = 1 << 18;

impl Sharing {
    pub fn new(workers: usize) -> Arc<Sharing> {
        Arc::new(Sharing {
            inbox: (0..workers).map(|_| Mutex::new(Vec::new())).collect(),
            waiting: (0..workers).map(|_| AtomicBool::new(false)).collect(),
            full_logged: Default::default(),
            learns: Default::default(),
        })
    }

    /// Whether a full MAC table of `bridge` may be logged now (once per 10 s and bridge).
    fn may_log_full(&self, bridge: &str, now: Nanos) -> bool {
        let mut m = self.full_logged.lock().unwrap_or_else(|e| e.into_inner());
        match m.get(bridge) {
            Some(&t) if now.saturating_sub(t) < 10 * weft_datapath::SECOND => false,
            _ => {
                m.insert(bridge.to_string(), now);
                true
            }
        }
    }

    fn publish(&self, from: usize, changes: &[Learnt]) {
        for (w, inbox) in self.inbox.iter().enumerate().filter(|(w, _)| *w != from) {
            let mut v = inbox.lock().unwrap_or_else(|e| e.into_inner());
            let room = INBOX_MAX.saturating_sub(v.len());
            v.extend_from_slice(&changes[..changes.len().min(room)]);
            self.waiting[w].store(true, Ordering::Release);
        }
    }

    fn take(&self, w: usize, into: &mut Vec<Learnt>) {
        if self.waiting[w].swap(false, Ordering::Acquire) {
            into.append(&mut self.inbox[w].lock().unwrap_or_else(|e| e.into_inner()));
        }
    }
}

pub struct Dataplane {
    /// This worker's number (0 also reads GRE, ESP and single-queue TAPs) and how many there are.
    worker: usize,
    workers: usize,
    sharing: Arc<Sharing>,
    /// MAC-table changes going to, or coming from, the other workers.
    learnt: Vec<Learnt>,
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
    /// Tunnel headers of queued frames too long for their entries (Geneve with tunnel metadata), emptied
    /// with the queue.
    long_prefixes: Vec<u8>,
    /// The tunnel metadata of the emissions being sent (`Outputs::tun_mds`, while `perform` runs).
    tx_mds: Vec<weft_datapath::switch::TunMd>,
    /// The queue's second buffer, for rewriting it without allocating.
    txq_scratch: Vec<TxEntry>,
    /// For gathering trains (see `batch_trains`): the next datagram of each queued one's train, and which
    /// queued datagrams joined an earlier one.
    train_next: Vec<u32>,
    /// Merged frames of this batch whose later payloads still lie where they arrived (see
    /// `gro::MergeRun::leave_in_place`): written out by gathering writes, or their gaps closed by the first
    /// use that needs contiguous bytes. At most [`GATHERED`]; past that, runs close their gaps at once.
    gathers: Vec<gro::Gathered>,
    train_member: Vec<bool>,
    /// The learns this worker sent lately (a hash of each, and when).
    learn_seen: std::collections::HashMap<u64, Nanos>,
    sinks: Vec<Sink>,
    mmsg: MmsgStorage,
    msgs: Receiver<DpMsg>,
    wake: Arc<EventFd>,
    clock: Instant,
    /// Running captures, and per port whether any watches it (the one test the fast path makes).
    taps: Vec<Tap>,
    tapped: Vec<bool>,
    /// Packet-in channels by bridge name, and by bridge index in the running pipeline.
    packet_in: std::collections::HashMap<String, SyncSender<PacketIn>>,
    packet_in_rt: Vec<Option<SyncSender<PacketIn>>>,
    /// Receive errors are logged at most once a second.
    rx_log: crate::log::RateLimit,
    /// Offloads allowed (`WEFT_OFFLOADS`), and sending UDP_SEGMENT trains (off after the kernel refuses one).
    offloads: bool,
    udp_gso: bool,
    /// Where the segments of the frame being cut are in `seg`.
    seg_list: Vec<(u32, u32)>,
    /// Where watched bridges' MAC table changes go, by bridge name.
    fdb_sinks: Vec<(String, crate::msgs::FdbSink)>,
    /// IPsec: child SAs, the buffer ESP packets are sealed in, and where IKE messages from port 4500 go.
    esp: crate::esp::EspTable,
    esp_buf: Vec<u8>,
    ike_tx: Option<SyncSender<IpsecMsg>>,
}

const TOKEN_CONTROL: u64 = u64::MAX;
const TOKEN_UDP: u64 = 1 << 32;
const TOKEN_ESP: u64 = 1 << 33;
/// Room per sealed ESP packet (a jumbo-frame underlay's packet and ESP's overhead).
const ESP_STRIDE: usize = 9216 + 256;

impl Dataplane {
    /// Worker `worker` of `sharing`'s workers; all of them read one `clock`, so that the times they learn
    /// addresses at compare.
    pub fn new(
        worker: usize,
        sharing: Arc<Sharing>,
        clock: Instant,
        pipeline: Arc<Pipeline>,
        msgs: Receiver<DpMsg>,
        wake: Arc<EventFd>,
    ) -> Self {
        let workers = sharing.inbox.len();
        let mut switch = Switch::new();
        switch.share_learning(workers > 1);
        let mut dp = Dataplane {
            worker,
            workers,
            sharing,
            learnt: Vec::with_capacity(1024),
            pipeline: Arc::new(Pipeline::empty()),
            switch,
            outs: Outputs::with_capacity(TX_QUEUE),
            scratch: Scratch::new(SEGMENT_ARENA),
            rx: RecvBatch::new(BATCH, STRIDE, HEADROOM),
            seg: vec![0u8; SEGMENT_ARENA],
            seg_used: 0,
            txq: Vec::with_capacity(TX_QUEUE),
            long_prefixes: Vec::with_capacity(4096),
            tx_mds: Vec::with_capacity(16),
            txq_scratch: Vec::with_capacity(TX_QUEUE),
            train_next: Vec::with_capacity(TX_QUEUE),
            gathers: Vec::with_capacity(GATHERED),
            train_member: Vec::with_capacity(TX_QUEUE),
            learn_seen: Default::default(),
            sinks: Vec::with_capacity(64),
            mmsg: MmsgStorage::new(BATCH),
            msgs,
            wake,
            clock,
            taps: Vec::new(),
            tapped: Vec::new(),
            packet_in: Default::default(),
            packet_in_rt: Vec::new(),
            rx_log: Default::default(),
            offloads: weft_sys::offloads_enabled(),
            udp_gso: weft_sys::offloads_enabled() && udp_gso_supported(),
            seg_list: Vec::with_capacity(MAX_SEGMENTS),
            fdb_sinks: Vec::new(),
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

    /// Switches to a new pipeline: the switch carries its state over by bridge, port and flow (GRE sequence
    /// numbers follow their port by name).
    fn install(&mut self, new: Arc<Pipeline>) {
        self.pipeline = new;
        let now = self.now();
        self.switch.install(self.pipeline.core.clone(), now);
        let p = &self.pipeline.core;
        self.packet_in_rt = p.bridges.iter().map(|b| self.packet_in.get(&b.name).cloned()).collect();
        self.retap();
    }

    fn register(&self, epoll: &Epoll) -> std::io::Result<()> {
        epoll.add(self.wake.raw(), TOKEN_CONTROL)?;
        let w = self.worker;
        for (i, port) in self.pipeline.ports.iter().enumerate() {
            match &port.io {
                PortIo::Tap(t) => {
                    if let Some(t) = t.recv(w) {
                        epoll.add(t.as_raw_fd(), i as u64)?
                    }
                }
                PortIo::Packet(s) => {
                    if let Some(s) = s.recv(w) {
                        epoll.add(s.as_raw_fd(), i as u64)?
                    }
                }
                _ => {}
            }
        }
        for (i, s) in self.pipeline.rx_sockets.iter().enumerate() {
            if let Some(s) = s.sockets.recv(w) {
                epoll.add(s.as_raw_fd(), TOKEN_UDP + i as u64)?;
            }
        }
        // ESP is read by worker 0 alone: the anti-replay window of an SA is one (outbound sequence numbers
        // are shared by every worker that seals).
        if w == 0 {
            for (i, s) in self.pipeline.esp.iter().enumerate() {
                epoll.add(s.fd.as_raw_fd(), TOKEN_ESP + i as u64)?;
            }
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
        let mut last_fdb_push = self.now();
        loop {
            ready.clear();
            match epoll.wait(100) {
                Ok(it) => ready.extend(it),
                Err(e) => {
                    tracing::error!("epoll_wait: {e}");
                    return;
                }
            }
            // What the other workers learned is in this switch before it sees the next batch.
            self.take_learnt();
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
            self.publish_learnt();
            if ready.contains(&TOKEN_CONTROL) || ready.is_empty() {
                self.wake.drain();
                loop {
                    match self.msgs.try_recv() {
                        Ok(DpMsg::Swap(p, ack, barrier)) => {
                            // Every worker stops on the old pipeline having told the others what it learned
                            // there, takes what they learned, and starts on the new one.
                            barrier.wait();
                            self.take_learnt();
                            self.install(p);
                            barrier.wait();
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
                        Ok(DpMsg::WatchFdb(bridge, sink)) => {
                            self.fdb_sinks.retain(|(b, _)| *b != bridge);
                            let on = sink.is_some();
                            if let Some(sink) = sink {
                                self.fdb_sinks.push((bridge.clone(), sink));
                            }
                            self.switch.watch_fdb(&bridge, on);
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
                        Ok(DpMsg::GroupStats(bridge, reply)) => {
                            let _ = reply.send(self.switch.group_stats(&bridge));
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
                        Ok(DpMsg::PacketOut { bridge, in_port, actions, frame }) => {
                            self.packet_out(&bridge, in_port, &actions, &frame);
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
            if now.saturating_sub(last_fdb_push) >= weft_datapath::SECOND / 10 {
                last_fdb_push = now;
                self.push_fdb_changes(now);
            }
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
        shadow.dry_run();
        let mut scratch = Scratch::new(SEGMENT_ARENA);
        let mut outs = Outputs::default();
        let mut steps: Vec<Step> = Vec::new();
        let now = self.now();
        let mut bufs = Buffers { rx: &mut [], seg: &mut self.seg, scratch: &mut scratch };
        let input = Input::plain(seg_bytes(0, frame.len() as u32), port, remote);
        shadow.process(&mut bufs, input, now, &mut outs, &mut steps);
        Ok(steps.into_iter().map(|s| trace_step(&pipeline, &shadow, s)).collect())
    }

    /// A controller's packet-out: the frame goes through the switch with the given actions and what comes
    /// out is sent. A bridge or port gone since the controller looked is a silent drop (as a flow to a port
    /// that went away).
    fn packet_out(&mut self, bridge: &str, in_port: u32, actions: &[weft_api::flow::Action], frame: &[u8]) {
        let pipeline = self.pipeline.clone();
        let Some(b) = pipeline.core.bridge_named(bridge) else { return };
        let port_of = |n: u32| {
            let i = pipeline.core.ports.iter().position(|p| p.bridge == b && p.ofport == n)?;
            Some(PortIdx(i as u16))
        };
        let from_controller = matches!(in_port, 0xffff_fffd | 0xffff_ffff);
        let Some(port) = port_of(if from_controller { weft_datapath::switch::pipeline::OFPORT_LOCAL } else { in_port })
        else {
            return;
        };
        let base = pipeline.core.bridges[b].cts.len();
        let mut cts = Vec::new();
        let acts = crate::pipeline::compile_actions(actions, &port_of, (&mut cts, base), &pipeline.core.bridges[b].tun);
        if frame.len() > self.seg.len() {
            return;
        }
        // The frame lies at the start of the segment area, which nothing queued refers to after the flush;
        // it is sent before the next batch.
        self.end_batch();
        self.seg[..frame.len()].copy_from_slice(frame);
        self.seg_used = frame.len();
        let remote = pipeline.core.port(port).tunnel().map(|t| t.spec.remote);
        let now = self.now();
        let mut bufs = Buffers { rx: &mut [], seg: &mut self.seg, scratch: &mut self.scratch };
        let input = Input::plain(seg_bytes(0, frame.len() as u32), port, remote);
        self.switch.packet_out(&mut bufs, input, from_controller, (&acts, &cts), now, &mut self.outs, &mut Quiet);
        self.perform(&pipeline);
        self.end_batch();
    }

    /// Sends each watched bridge's MAC table changes to its sink. A bridge that a new pipeline dropped and
    /// brought back is watched again (the watch is kept by name).
    fn push_fdb_changes(&mut self, now: Nanos) {
        let mut sinks = std::mem::take(&mut self.fdb_sinks);
        sinks.retain_mut(|(bridge, sink)| {
            if !self.switch.watch_fdb_kept(bridge) {
                return true;
            }
            match self.switch.fdb_changes(bridge, now) {
                Some(delta) => sink(bridge, delta),
                None => true,
            }
        });
        self.fdb_sinks = sinks;
    }

    /// Tells the other workers what this one learned.
    fn publish_learnt(&mut self) {
        if self.workers > 1 {
            self.learnt.clear();
            self.switch.take_learnt(&mut self.learnt);
            if !self.learnt.is_empty() {
                self.sharing.publish(self.worker, &self.learnt);
            }
        }
    }

    /// Learns what the other workers learned.
    fn take_learnt(&mut self) {
        if self.workers > 1 {
            self.learnt.clear();
            self.sharing.take(self.worker, &mut self.learnt);
            if !self.learnt.is_empty() {
                self.switch.apply_learnt(&self.learnt);
            }
        }
    }

    fn bytes(&self, b: Bytes) -> &[u8] {
        resolve(&self.rx, &self.seg, &self.scratch, b)
    }
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
