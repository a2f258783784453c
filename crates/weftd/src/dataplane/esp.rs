//! IPsec on the data path: ESP packets opened in place on receive and sealed in batches on send.

use super::*;

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

impl Dataplane {
    /// Receives a batch on an ESP socket: IKE messages (port 4500, non-ESP marker) go to the IKE thread; ESP
    /// packets are checked against their SA's replay window, opened in place, and the tunnel packet inside
    /// goes on as if received on the tunnel's own socket.
    pub(super) fn poll_esp(&mut self, ei: usize) {
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
    pub(super) fn open_esp(
        &mut self,
        pipeline: &Pipeline,
        udp: bool,
        i: usize,
        src: SocketAddr,
        datagram: std::ops::Range<usize>,
    ) -> Option<super::rx::Accepted> {
        let pkt = &mut self.rx.slot_mut(i).0[datagram.clone()];
        if udp && pkt.len() == 1 && pkt[0] == 0xff {
            return None; // NAT keepalive (RFC 3948 §2.3)
        }
        if udp && pkt.len() >= 4 && pkt[..4] == [0, 0, 0, 0] {
            let m = crate::msgs::IpsecMsg::Ike {
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
        let ri = pipeline.rx_sockets.iter().position(|r| {
            r.bound.is_ipv4() == v4
                && if proto == weft_wire::ipv4::Protocol::GRE {
                    r.encap == Encap::Gre
                } else {
                    r.encap != Encap::Gre && r.bound.port() == dport
                }
        });
        let Some(ri) = ri else {
            self.esp.counters.bad_inner += 1;
            return None;
        };
        let start = datagram.start + payload.start + at;
        let end = datagram.start + payload.end;
        self.accept_datagram(&pipeline.rx_sockets[ri], ri, i, src, start..end, true)
    }

    /// Seals the queued tunnel packets of one ESP sink into the ESP buffer and sends them. ESP in UDP packets
    /// of one port to one peer that come out the same length (the segments of a TCP frame, cut to the MSS)
    /// lie side by side and leave as one UDP_SEGMENT train, as clear-text tunnel packets do.
    pub(super) fn flush_esp(&mut self, pipeline: &Pipeline, sink: Sink, v6: bool, udp: bool) {
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
            let head = super::head_of(pipeline, &e, &self.long_prefixes);
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
