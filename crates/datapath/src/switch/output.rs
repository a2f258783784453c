//! Putting a frame out of a port: VLAN egress, link state, the tunnel's MTU; frames for patch ports are kept
//! to enter the peer's bridge ([`super::patch`]), the rest go to the caller as [`Emission`]s.

use super::*;

impl Tables {
    /// Sends a frame the switch made itself (an ICMP error, an ARP or ND answer) out of `port`; false if the
    /// scratch area has no room for it.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn emit_local(
        &mut self,
        pipe: &Pipeline,
        bufs: &mut Buffers,
        port: PortIdx,
        frame: &[u8],
        tci: u16,
        out: &mut Outputs,
        obs: &mut impl Observer,
    ) -> bool {
        let Some(data) = bufs.scratch.push(frame) else { return false };
        let hdr = Headers::parse(frame);
        let e = Emission { port, data, tci, tagged: false, remote: None, vni: None, hash: hdr.hash, gso: None, md: 0 };
        self.output(pipe, e, &hdr, out, obs);
        true
    }

    /// Sends an (untagged) frame out of one port, tagged if the port carries its VLAN tagged; ports that do
    /// not carry it are skipped, and so are ports whose link is down (counted). Returns the tunnel's MTU when
    /// the frame is too big for it (and was dropped), so that the sender can be told.
    pub(super) fn output(
        &mut self,
        pipe: &Pipeline,
        mut e: Emission,
        hdr: &Headers,
        out: &mut Outputs,
        obs: &mut impl Observer,
    ) -> Option<u16> {
        let p = pipe.port(e.port);
        e.tagged = match p.vlan.egress(e.tci) {
            Egress::Drop => return None,
            Egress::Untagged => false,
            Egress::Tagged => true,
        };
        if p.of_config & (port_config::PORT_DOWN | port_config::NO_FWD) != 0 {
            obs.on(|| note(format!("{}: configured down or not to forward; not sent", p.name)));
            self.counters[usize::from(e.port.0)].drop(DropReason::PortConfig);
            return None;
        }
        if self.link_down_rt.get(usize::from(e.port.0)).copied().unwrap_or(false) {
            obs.on(|| note(format!("{}: its link is down; not sent", p.name)));
            self.counters[usize::from(e.port.0)].drop(DropReason::LinkDown);
            return None;
        }
        if let PortKind::Tunnel(t) = &p.kind {
            // A pushed tag takes 4 of the inner packet's bytes; with DF outside even a frame the underlay could
            // fragment cannot go. An offloaded frame is measured by its segments.
            let push = if e.tagged { 4 } else { 0 };
            let df = t.spec.df && t.spec.remote.is_ipv4();
            let wire = match e.gso {
                None => Some(e.data.len()),
                Some(g) => offload::segment_wire_len_of(&g, hdr),
            };
            let fit = match wire {
                Some(wire) => mtu::tunnel_fit_headers(hdr, wire, usize::from(t.mtu), push, df),
                None => Ok(()),
            };
            if let Err(tell) = fit {
                obs.on(|| Step::Output { emission: e, too_big: Some(tell.unwrap_or(t.mtu - push as u16)) });
                self.counters[usize::from(e.port.0)].drop(DropReason::TooBig);
                return tell;
            }
        }
        obs.on(|| Step::Output { emission: e, too_big: None });
        if let PortKind::Patch(_) = p.kind {
            self.counters[usize::from(e.port.0)].tx(e.data.len() + if e.tagged { 4 } else { 0 });
            out.patched.push(e);
        } else {
            out.sends.push(e);
        }
        None
    }
}
