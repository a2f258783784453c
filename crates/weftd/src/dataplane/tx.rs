//! Sending: what the switch emitted, written to TAPs or encapsulated and queued, segmented where the
//! output cannot take an offloaded frame, and flushed in batches (`sendmmsg`, UDP_SEGMENT trains).

use super::*;

impl Dataplane {
    /// Makes the merged frame at `bytes` contiguous, if its payloads still lie apart: for any use but a
    /// gathering write of the whole frame.
    pub(super) fn close_gaps(&mut self, bytes: Bytes) {
        if let Some(k) = find_gathered(&self.gathers, bytes) {
            let g = self.gathers.swap_remove(k);
            g.close_gaps(self.rx.storage_mut());
        }
    }

    /// Sends one emission of the switch: TAPs are written at once, the rest is queued for a batched send. An
    /// offloaded frame goes whole where the kernel takes it whole (TAP and AF_PACKET ports with a virtio-net
    /// header, UDP tunnels as one UDP_SEGMENT train unless a capture wants each packet); elsewhere it is cut
    /// into segments first.
    pub(super) fn transmit(&mut self, pipeline: &Pipeline, e: &Emission) {
        let port = e.port;
        let bytes = e.data;
        let tag = e.tagged.then(|| vlan_tag(e.tci));
        let tag_len = if tag.is_some() { 4 } else { 0 };
        let desc = pipeline.core.port(port);
        let io = &pipeline.ports[usize::from(port.0)].io;
        let tapped = self.tapped[usize::from(port.0)];
        let gso = e.gso.map(|g| g.shifted(tag_len as u16));
        // Only a TAP or AF_PACKET port writes a merged frame from where its payloads lie; every other use
        // reads it whole.
        if tag.is_some() || tapped || !matches!(io, PortIo::Tap(_) | PortIo::Packet(_)) {
            self.close_gaps(bytes);
        }
        if let Some(g) = e.gso {
            let send = SendOffloads { udp_segment: self.udp_gso };
            if !desc.takes_whole(self.bytes(bytes), &g, tag_len, send, tapped) {
                self.close_gaps(bytes);
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
                let mut prefix = [0u8; PREFIX_MAX];
                let prefix_len = if t.first().offloads().vnet_hdr {
                    prefix[..VNET_HDR_LEN].copy_from_slice(&vnet);
                    VNET_HDR_LEN as u8
                } else {
                    0
                };
                (Sink::Tap(port), prefix, prefix_len)
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
            prefix_at: PREFIX_INLINE,
            port_header: false,
            meta: IpMeta::default(),
            tag,
            segment: 0,
            packets: 1,
            train_head: 0,
            sport: 0,
            late_gre: None,
        });
        if gso.is_some() {
            self.switch.counter(port).gso_tx += 1;
        }
    }

    /// Encapsulates an emission for tunnel port `t` and queues it to its VTEPs: the one the switch named, or
    /// else every remote of the port (for remote_ip=flow, every VTEP the control plane lists).
    pub(super) fn transmit_tunnel(
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
        let outer = t.outer_ip(frame);
        let meta = IpMeta { tos: outer.tos, ttl: outer.ttl };
        let spec = &t.spec_for(e.vni);
        // A numbered GRE packet gets its header when it is sent (see `TxEntry::late_gre`); one a capture
        // watches, now (the capture shows it).
        let late =
            t.spec.encap == Encap::Gre && t.spec.seq && spec.ipsec.is_none() && !self.tapped[usize::from(port.0)];
        // The switch builds the header (a flow's tunnel ID, tunnel metadata, GRE sequence number and checksum).
        let md = e.md.checked_sub(1).and_then(|i| self.tx_mds.get(i as usize));
        let header = if late {
            TunnelHeader::PORT
        } else {
            self.switch.tunnel_header(port, e.vni, md, frame).unwrap_or(TunnelHeader::PORT)
        };
        let mut prefix = [0u8; PREFIX_MAX];
        let built = header.built();
        let prefix_len = built.len();
        let prefix_at = if prefix_len > PREFIX_MAX {
            let at = self.long_prefixes.len() as u32;
            self.long_prefixes.extend_from_slice(built);
            at
        } else {
            prefix[..prefix_len].copy_from_slice(built);
            PREFIX_INLINE
        };
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
            let head = header.bytes(t);
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
            let head = header.bytes(t);
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
                prefix_at,
                port_header: header.is_port_header() && !late,
                meta,
                tag,
                segment: 0,
                packets: 1,
                train_head: 0,
                // Source ports spread flows as the tunnel's own socket pool would.
                sport: 49152 + (hash % 16384) as u16,
                late_gre: late.then_some(e.vni),
            });
        }
    }

    /// Cuts an offloaded emission into segments and sends each as an ordinary frame.
    pub(super) fn transmit_segmented(&mut self, pipeline: &Pipeline, e: &Emission, gso: &VnetHdr) {
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

    /// Turns queued tunnel datagrams that go out of one socket to one destination with the same size (small
    /// UDP packets of many flows, TCP acknowledgements) into UDP_SEGMENT trains, as `trains::plan` groups
    /// them: their bytes are copied one after another into the scratch area, where the first one was queued,
    /// and the kernel sends each train as one buffer, so the stack and the underlay handle one packet per
    /// train instead of one per datagram. A train of one is left as it was.
    pub(super) fn batch_trains(&mut self, pipeline: &Pipeline) {
        let queue = std::mem::take(&mut self.txq);
        let mut next = std::mem::take(&mut self.train_next);
        let mut member = std::mem::take(&mut self.train_member);
        let candidates = queue.iter().map(|e| trains::Candidate {
            key: matches!(e.sink, Sink::Udp { .. }).then_some((e.sink, e.dest)),
            joinable: e.segment == 0
                && e.dest.is_some()
                && pipeline.core.port(e.port).tunnel().is_some_and(|t| t.spec.encap != Encap::Gre),
            compat: (e.port, e.meta),
            len: self.wire_len(pipeline, e),
        });
        trains::plan(candidates, &mut next, &mut member);
        let mut out = std::mem::take(&mut self.txq_scratch);
        out.clear();
        for (j, e) in queue.iter().enumerate() {
            if member[j] {
                continue;
            }
            if next[j] == trains::NO_NEXT {
                out.push(*e);
                continue;
            }
            let size = self.wire_len(pipeline, e);
            let Some(start) = self.copy_wire(pipeline, e) else {
                // No room to gather: the train's datagrams go one by one, in order.
                let mut k = j;
                while k != trains::NO_NEXT as usize {
                    out.push(queue[k]);
                    k = next[k] as usize;
                }
                continue;
            };
            let (mut total, mut count, mut head) = (size, 1u16, size - self.frame_len(e));
            let mut k = next[j] as usize;
            while k != trains::NO_NEXT as usize {
                let m = &queue[k];
                let len = self.wire_len(pipeline, m);
                if self.copy_wire(pipeline, m).is_none() {
                    break;
                }
                total += len;
                count += 1;
                head = len - self.frame_len(m);
                k = next[k] as usize;
            }
            if count == 1 {
                out.push(*e);
            } else {
                out.push(TxEntry {
                    train_head: head as u8,
                    bytes: seg_bytes(start as u32, total as u32),
                    prefix_len: 0,
                    prefix_at: PREFIX_INLINE,
                    port_header: false,
                    tag: None,
                    segment: size as u16,
                    packets: count,
                    ..*e
                });
            }
            // What did not fit in the scratch area goes on one by one.
            while k != trains::NO_NEXT as usize {
                out.push(queue[k]);
                k = next[k] as usize;
            }
        }
        self.txq = out;
        self.txq_scratch = queue;
        self.train_next = next;
        self.train_member = member;
    }

    /// The length of a queued frame, with its tag.
    pub(super) fn frame_len(&self, e: &TxEntry) -> usize {
        let data = e.bytes.len();
        data + if e.tag.is_some() { 4 } else { 0 }
    }

    /// The length of a queued datagram as it goes on the wire (tunnel header, tag and frame).
    pub(super) fn wire_len(&self, pipeline: &Pipeline, e: &TxEntry) -> usize {
        let head = head_of(pipeline, e, &self.long_prefixes).len();
        let data = e.bytes.len();
        head + data + if e.tag.is_some() { 4 } else { 0 }
    }

    /// Appends a queued datagram's wire bytes to the scratch area; returns where they start, or `None` when
    /// there is no room.
    pub(super) fn copy_wire(&mut self, pipeline: &Pipeline, e: &TxEntry) -> Option<usize> {
        let len = self.wire_len(pipeline, e);
        let at = self.seg_used;
        if self.seg.len() - at < len {
            return None;
        }
        let (before, after) = self.seg.split_at_mut(at);
        let data = resolve(&self.rx, before, &self.scratch, e.bytes);
        let head = head_of(pipeline, e, &self.long_prefixes);
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
    pub(super) fn cut(&mut self, bytes: Bytes, gso: &VnetHdr, port: PortIdx) -> bool {
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
    pub(super) fn segment_to_scratch(
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
    pub(super) fn output_train(
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
                    prefix_at: PREFIX_INLINE,
                    port_header: false,
                    meta,
                    tag: None,
                    segment: if k > 1 { size as u16 } else { 0 },
                    packets: k as u16,
                    train_head: head.len() as u8,
                    sport: 0,
                    late_gre: None,
                });
                at += len;
                left -= k;
            }
        }
    }

    pub(super) fn enqueue(&mut self, entry: TxEntry) {
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
    pub(super) fn end_batch(&mut self) {
        self.flush();
        self.gathers.clear();
        self.scratch.clear();
    }

    /// Sends everything queued and forgets the segment scratch.
    pub(super) fn flush(&mut self) {
        self.flush_queue();
        self.seg_used = 0;
    }

    pub(super) fn flush_queue(&mut self) {
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
            if let Sink::Tap(p) = sink {
                let PortIo::Tap(t) = &pipeline.ports[usize::from(p.0)].io else { continue };
                let t = t.send(self.worker);
                for e in self.txq.iter().filter(|e| e.sink == sink) {
                    let frame = resolve(&self.rx, &self.seg, &self.scratch, e.bytes);
                    let head = head_of(&pipeline, e, &self.long_prefixes);
                    let mut parts: [&[u8]; MAX_PARTS] = [&[]; MAX_PARTS];
                    let gathered =
                        e.tag.is_none().then(|| gathered_parts(&self.gathers, &self.rx, e, head, &mut parts));
                    let r = match (&e.tag, gathered.flatten()) {
                        (None, Some(n)) => t.write(&parts.map(std::io::IoSlice::new)[..n]),
                        (None, None) => t.write(&[std::io::IoSlice::new(head), std::io::IoSlice::new(frame)]),
                        (Some(tag), _) => t.write(&[
                            std::io::IoSlice::new(head),
                            std::io::IoSlice::new(&frame[..12]),
                            std::io::IoSlice::new(tag),
                            std::io::IoSlice::new(&frame[12..]),
                        ]),
                    };
                    let c = self.switch.counter(e.port);
                    match r {
                        Ok(_) => c.tx(frame.len() + e.tag.map_or(0, |t| t.len())),
                        Err(_) => c.drop(DropReason::TxError),
                    }
                }
                continue;
            }
            let fd = match sink {
                Sink::Packet(p) => match &pipeline.ports[usize::from(p.0)].io {
                    PortIo::Packet(s) => s.send(self.worker).as_raw_fd(),
                    _ => continue,
                },
                Sink::Udp { pool, socket } => pipeline.pools[usize::from(pool)][usize::from(socket)].as_raw_fd(),
                Sink::Esp { .. } | Sink::Tap(_) => continue,
            };
            // Numbered GRE packets: numbers are taken and the packets sent under one lock, so the wire
            // carries them in order.
            let _numbering = if self.txq.iter().any(|e| e.sink == sink && e.late_gre.is_some()) {
                let guard = pipeline.gre_lock.lock().unwrap_or_else(|e| e.into_inner());
                // One number per frame: its copies to several remotes (head-end replication) share it.
                let mut last: Option<(PortIdx, Bytes, [u8; PREFIX_MAX], u8)> = None;
                for e in self.txq.iter_mut().filter(|e| e.sink == sink) {
                    let Some(vni) = e.late_gre else { continue };
                    match last {
                        Some((p, b, prefix, len)) if p == e.port && b == e.bytes => {
                            (e.prefix, e.prefix_len) = (prefix, len);
                        }
                        _ => {
                            let frame = resolve(&self.rx, &self.seg, &self.scratch, e.bytes);
                            if let Some(h) = self.switch.tunnel_header(e.port, vni, None, frame) {
                                let built = h.built();
                                e.prefix[..built.len()].copy_from_slice(built);
                                e.prefix_len = built.len() as u8;
                            }
                        }
                    }
                    last = Some((e.port, e.bytes, e.prefix, e.prefix_len));
                }
                Some(guard)
            } else {
                None
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
                let head = head_of(&pipeline, e, &self.long_prefixes);
                let mut parts: [&[u8]; MAX_PARTS] = [&[]; MAX_PARTS];
                let gathered = match sink {
                    Sink::Packet(_) if e.tag.is_none() => gathered_parts(&self.gathers, &self.rx, e, head, &mut parts),
                    _ => None,
                };
                if let Some(n) = gathered {
                    owners[batch.len()] = (e.port, data.len(), 1, false);
                    batch.push_segmented(&parts[..n], e.dest.as_ref(), e.meta, 0);
                    if batch.is_full() {
                        batch.send_with(fd, |k, ok| account(&owners, k, ok));
                    }
                    continue;
                }
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
        self.long_prefixes.clear();
    }
}

/// Which of `gathers` is the merged frame at `bytes`, if it is one whose payloads still lie apart.
fn find_gathered(gathers: &[gro::Gathered], bytes: Bytes) -> Option<usize> {
    if bytes.area != Area::Rx || gathers.is_empty() {
        return None;
    }
    gathers.iter().position(|g| g.start == bytes.start)
}

/// When `e` is such a merged frame: its header `head` and then its parts where they lie, into `parts`, and
/// how many that is (for one gathering write).
fn gathered_parts<'a>(
    gathers: &[gro::Gathered],
    rx: &'a RecvBatch,
    e: &TxEntry,
    head: &'a [u8],
    parts: &mut [&'a [u8]; MAX_PARTS],
) -> Option<usize> {
    let g = &gathers[find_gathered(gathers, e.bytes)?];
    let storage = rx.storage();
    parts[0] = head;
    for (slot, r) in parts[1..].iter_mut().zip(g.parts()) {
        *slot = &storage[r];
    }
    Some(1 + g.part_count())
}
