//! Receiving: batches from TAP, AF_PACKET and tunnel sockets, decapsulation and receive merging, and the
//! call into the switch.

use super::*;
use weft_datapath::switch::pipeline::HEADERS_ONLY_LEN;
use weft_datapath::switch::TunMd;

/// A tunnel datagram that passed the checks: its port, the inner frame's range in its slot, and its tunnel
/// metadata.
pub(super) type Accepted = (PortIdx, std::ops::Range<usize>, TunMd);

/// A run of received segments being merged: port, sender and tunnel metadata, slot, the run.
type Run = (PortIdx, (IpAddr, TunMd), usize, MergeRun);

impl Dataplane {
    /// Receives a batch from a TAP or AF_PACKET port and switches it.
    pub(super) fn poll_port(&mut self, port: PortIdx) {
        let pipeline = self.pipeline.clone();
        let Some(p) = pipeline.ports.get(usize::from(port.0)) else { return };
        let w = self.worker;
        let got = match &p.io {
            PortIo::Tap(t) => match t.recv(w) {
                Some(t) => self.rx.fill_with(|buf| t.read(buf)),
                None => return,
            },
            PortIo::Packet(s) => match s.recv(w) {
                Some(s) => self.rx.recv_mmsg(s.as_raw_fd()),
                None => return,
            },
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
            PortIo::Tap(t) => t.first().offloads().vnet_hdr,
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
            self.switch(&pipeline, port, None, bytes, tag, gso, now, TunMd::default());
        }
        self.end_batch();
    }

    /// The 802.1Q tag control the kernel took off received packet `i` (AF_PACKET ports). Other tag types are
    /// not put back: the frame then crosses untagged.
    pub(super) fn stripped_tag(&self, i: usize) -> Option<u16> {
        self.rx.stripped_tag(i).filter(|(tpid, _)| *tpid == EtherType::VLAN).map(|(_, tci)| tci)
    }

    /// Strips the virtio-net header of packet `i`. A frame to be segmented is passed on whole with its header
    /// when offloads are on, and otherwise segmented here (each segment is then switched here); a frame with
    /// only its checksum left to do gets it done. Returns the frame's range within the slot, and its header
    /// when it goes on as an offloaded frame.
    pub(super) fn take_offloaded(&mut self, port: PortIdx, i: usize) -> Option<(usize, usize, Option<VnetHdr>)> {
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
                    self.switch(&pipeline, port, None, seg_bytes(start, len), tag, None, now, TunMd::default());
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
    pub(super) fn poll_udp(&mut self, si: usize) {
        let pipeline = self.pipeline.clone();
        let Some(rs) = pipeline.rx_sockets.get(si) else { return };
        let Some(socket) = rs.sockets.recv(self.worker) else { return };
        let n = match self.rx.recv_mmsg(socket.as_raw_fd()) {
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
            dp.accept_datagram(rs, si, i, src, datagram, false)
        });
    }

    /// Goes through the `n` buffers just received: cuts UDP_GRO buffers into their datagrams, has `accept`
    /// check each (it returns the tunnel port and the inner frame's range, or drops it), switches the frames
    /// or merges consecutive TCP segments of one flow first, and sends what they produced.
    ///
    /// A run may go on into the next buffers (a 64 KiB TCP frame leaves the sender as two trains); it stays
    /// inside the buffer it began in, where there is room for a whole 64 KiB frame.
    pub(super) fn receive_datagrams(
        &mut self,
        pipeline: &Pipeline,
        n: usize,
        mut accept: impl FnMut(&mut Self, usize, SocketAddr, std::ops::Range<usize>) -> Option<Accepted>,
    ) {
        let now = self.now();
        // Nothing of an earlier batch's buffers may still be taken for gathered (their bytes are new).
        self.gathers.clear();
        let mut run: Option<Run> = None;
        for i in 0..n {
            let Some(src) = self.rx.source(i) else { continue };
            let range = self.rx.slot_mut(i).1;
            let size = usize::from(self.rx.segment_size(i));
            let step = if size == 0 || size >= range.len() { range.len() } else { size };
            let mut at = range.start;
            while at < range.end {
                let datagram = at..(at + step).min(range.end);
                at = datagram.end;
                if let Some((port, frame, md)) = accept(self, i, src, datagram) {
                    self.take_frame(pipeline, &mut run, i, port, (src.ip(), md), frame, now);
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
    pub(super) fn take_frame(
        &mut self,
        pipeline: &Pipeline,
        run: &mut Option<Run>,
        i: usize,
        port: PortIdx,
        (src, md): (IpAddr, TunMd),
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
                self.switch(pipeline, port, Some(src), bytes, None, Some(gso), now, md);
            } else if self.cut(bytes, &gso, port) {
                let segs = std::mem::take(&mut self.seg_list);
                for &(start, len) in &segs {
                    self.switch(pipeline, port, Some(src), seg_bytes(start, len), None, None, now, md);
                }
                self.seg_list = segs;
            }
            return;
        }
        if !self.offloads {
            self.finish_partial(i, frame.clone());
            let bytes = rx_bytes(&self.rx, i, frame.clone());
            self.switch(pipeline, port, Some(src), bytes, None, None, now, md);
            return;
        }
        let base = self.rx.slot_base(i);
        let global = base + frame.start..base + frame.end;
        if let Some((rp, rsrc, _, r)) = run {
            // One run: one port, one sender, one set of tunnel metadata (the merged frame has one key).
            if *rp == port && *rsrc == (src, md) && r.append(self.rx.storage_mut(), global.clone()) {
                return;
            }
        }
        if let Some((rp, rsrc, rslot, r)) = run.take() {
            self.switch_run(pipeline, rslot, rp, rsrc, r, now);
        }
        let limit = base + self.rx.slot(i).len();
        match MergeRun::start(self.rx.storage_mut(), global, limit) {
            Some(mut r) => {
                // Where the switch reads only headers, payloads stay where they arrived until written out.
                if pipeline.core.reads_headers_only(port) && !self.tapped[usize::from(port.0)] {
                    r.leave_in_place(HEADERS_ONLY_LEN);
                }
                *run = Some((port, (src, md), i, r));
            }
            None => {
                self.finish_partial(i, frame.clone());
                let bytes = rx_bytes(&self.rx, i, frame.clone());
                self.switch(pipeline, port, Some(src), bytes, None, None, now, md);
            }
        }
    }

    /// Fills in the TCP or UDP checksum of a frame from a tunnel (its range in slot `i`) that its sender left
    /// partial (a Linux VXLAN peer on a veth underlay): a frame going on alone must carry a whole checksum.
    /// Merged runs need not: they leave marked NEEDS_CSUM. Frames with a right checksum cost only a look at
    /// their headers.
    pub(super) fn finish_partial(&mut self, i: usize, frame: std::ops::Range<usize>) {
        let f = &mut self.rx.slot_mut(i).0[frame];
        if let Some((start, offset, end)) = gro::partial_checksum(f) {
            let _ = offload::complete_checksum(&mut f[..end], start, offset);
        }
    }

    /// Switches the frame a run of merged segments in slot `slot` became.
    pub(super) fn switch_run(
        &mut self,
        pipeline: &Pipeline,
        slot: usize,
        port: PortIdx,
        src: (IpAddr, TunMd),
        run: MergeRun,
        now: Nanos,
    ) {
        let merged = run.count();
        let gathered = run.gathered();
        let (frame, gso) = run.finish(self.rx.storage_mut());
        if let Some(g) = gathered {
            if self.gathers.len() < GATHERED {
                self.gathers.push(g);
            } else {
                g.close_gaps(self.rx.storage_mut());
            }
        }
        let base = self.rx.slot_base(slot);
        if merged > 1 {
            self.switch.counter(port).gro_rx += u64::from(merged);
        } else {
            self.finish_partial(slot, frame.start - base..frame.end - base);
        }
        let bytes = Data::new(Area::Rx, frame.start, frame.len());
        self.switch(pipeline, port, Some(src.0), bytes, None, gso, now, src.1);
    }

    /// Checks one received tunnel datagram (`datagram`: its range in slot `i`) from `src`: decapsulates it,
    /// finds its port by sender and VNI, applies Geneve option rules, feeds outer captures and counts it.
    /// Returns its port and the inner frame's range in the slot, or `None` when it was dropped.
    pub(super) fn accept_datagram(
        &mut self,
        rs: &RxSocket,
        rs_index: usize,
        i: usize,
        src: SocketAddr,
        datagram: std::ops::Range<usize>,
        protected: bool,
    ) -> Option<Accepted> {
        let pkt = &self.rx.slot(i)[datagram.clone()];
        let (port, inner_at) = self.switch.accept_tunnel(rs_index, src.ip(), pkt, protected).ok()?;
        let md = self.switch.tunnel_metadata(port, pkt);
        if self.tapped[usize::from(port.0)] {
            let whole = rx_bytes(&self.rx, i, datagram.clone());
            self.tap_received(port, rs.encap, rs.bound, src, whole);
        }
        Some((port, datagram.start + inner_at..datagram.end, md))
    }

    /// Switches one received frame (`stripped`: the 802.1Q tag the kernel already took off it, `gso`: its
    /// offload header) and performs what the switch produced.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn switch(
        &mut self,
        pipeline: &Pipeline,
        in_port: PortIdx,
        remote: Option<IpAddr>,
        data: Bytes,
        stripped: Option<u16>,
        gso: Option<VnetHdr>,
        now: Nanos,
        tun_md: TunMd,
    ) {
        if self.tapped[usize::from(in_port.0)] {
            self.tap_frame(in_port, data, stripped.map(vlan_tag));
        }
        let mut bufs = Buffers { rx: self.rx.storage_mut(), seg: &mut self.seg, scratch: &mut self.scratch };
        let input = Input { data, in_port, remote, stripped, gso, tun_md };
        self.switch.process(&mut bufs, input, now, &mut self.outs, &mut Quiet);
        self.perform(pipeline);
    }

    /// Sends what the switch produced, hands frames to controllers, and logs what it reported.
    pub(super) fn perform(&mut self, pipeline: &Pipeline) {
        let mut outs = std::mem::take(&mut self.outs);
        // The tunnel metadata the emissions name, where `transmit` finds it.
        std::mem::swap(&mut self.tx_mds, &mut outs.tun_mds);
        for e in &outs.sends {
            self.transmit(pipeline, e);
        }
        std::mem::swap(&mut self.tx_mds, &mut outs.tun_mds);
        for c in &outs.to_controller {
            self.packet_in(pipeline, c);
        }
        for l in &outs.learned {
            self.learn(pipeline, l);
        }
        for f in &outs.fins {
            self.fin(pipeline, f);
        }
        for ev in &outs.events {
            match *ev {
                Event::MacTableFull { bridge, src, entries, misses } => {
                    let name = &pipeline.core.bridges[bridge].name;
                    // Each worker's copy fills; the log says it once per 10 s and bridge for all of them.
                    if self.sharing.may_log_full(name, self.now()) {
                        tracing::warn!(
                            "bridge {name}: MAC table full ({entries} entries, other_config:mac-table-size); {src} not \
                             learned ({misses} misses so far on this worker)",
                        )
                    }
                }
            }
        }
        outs.clear();
        self.outs = outs;
    }

    /// Hands a frame to the bridge's OpenFlow controller (counted as `no_controller` when none takes it).
    pub(super) fn packet_in(&mut self, pipeline: &Pipeline, c: &ToController) {
        self.close_gaps(c.data);
        let frame = resolve(&self.rx, &self.seg, &self.scratch, c.data);
        let sent = self.packet_in_rt[c.bridge].as_ref().is_some_and(|tx| {
            let mut data = Vec::with_capacity(frame.len() + 4);
            data.extend_from_slice(&frame[..12]);
            if c.tci & 0x0fff != 0 {
                data.extend_from_slice(&vlan_tag(c.tci));
            }
            data.extend_from_slice(&frame[12..]);
            let total_len = data.len().min(usize::from(u16::MAX)) as u16;
            data.truncate(usize::from(c.max_len));
            let in_port = pipeline.core.port(c.in_port).ofport;
            // OpenFlow 1.3: a packet-in from the table-miss flow says "no match", from any other "action" —
            // unless the flow's controller(reason=…) says otherwise.
            let reason = match c.reason {
                weft_datapath::switch::pipeline::REASON_AUTO => u8::from(!c.table_miss),
                r => r,
            };
            let p = crate::msgs::PacketIn {
                in_port,
                table: c.table,
                cookie: c.cookie,
                reason,
                controller_id: c.controller_id,
                total_len,
                data,
            };
            tx.try_send(p).is_ok()
        });
        if !sent {
            self.switch.counter(c.in_port).drop(DropReason::NoController);
        }
    }
}
