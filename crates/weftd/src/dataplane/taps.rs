//! Captures: feeding `weft capture` with the frames a port receives and sends, and with tunnel packets
//! as they cross the underlay.

use super::*;

impl Dataplane {
    /// Points every capture at its port in the current pipeline (a capture whose port is gone ends) and
    /// recomputes which ports are watched.
    pub(super) fn retap(&mut self) {
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
    pub(super) fn tap_frame(&mut self, port: PortIdx, bytes: Bytes, tag: Option<[u8; 4]>) {
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
    pub(super) fn tap_received(
        &mut self,
        port: PortIdx,
        encap: Encap,
        bound: SocketAddr,
        src: SocketAddr,
        whole: Bytes,
    ) {
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
    pub(super) fn tap_outer(
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
}
