//! Patch ports: a frame sent to one enters the peer's bridge by the peer, inside the switch, before the call
//! that received it returns — as Open vSwitch joins `br-int` and `br-tun`. The peer's bridge sees a new
//! packet: its own flow tables from table 0, registers, metadata and tunnel fields cleared (as OVS clears
//! them), the VLAN as the patch port's egress left it and the peer's ingress takes it. Frames are taken a
//! round at a time; a frame still crossing after [`MAX_PATCH_HOPS`] patch ports in a row is dropped (a loop
//! of bridges), counted as `patch_loop`.

use super::*;

/// Patch ports one frame may cross one behind the other.
pub const MAX_PATCH_HOPS: usize = 8;

impl Tables {
    /// Runs the frames sent to patch ports (and those they send on, round by round) in their peers'
    /// bridges.
    pub(super) fn run_patched(
        &mut self,
        pipe: &Pipeline,
        bufs: &mut Buffers,
        now: Nanos,
        out: &mut Outputs,
        obs: &mut impl Observer,
    ) {
        let mut hops = 0;
        while !out.patched.is_empty() {
            hops += 1;
            std::mem::swap(&mut self.patch_work, &mut out.patched);
            for i in 0..self.patch_work.len() {
                let e = self.patch_work[i];
                let PortKind::Patch(peer) = pipe.port(e.port).kind else { continue };
                if hops > MAX_PATCH_HOPS {
                    obs.on(|| {
                        note(format!(
                            "{}: crossed {MAX_PATCH_HOPS} patch ports already; dropped",
                            pipe.port(e.port).name
                        ))
                    });
                    self.counters[usize::from(e.port.0)].drop(DropReason::PatchLoop);
                    continue;
                }
                obs.on(|| {
                    note(format!(
                        "through patch port {} into bridge {}",
                        pipe.port(e.port).name,
                        pipe.bridges[pipe.port(peer).bridge].name
                    ))
                });
                self.counters[usize::from(peer.0)].rx(e.data.len() + if e.tagged { 4 } else { 0 });
                let frame =
                    Frame { data: e.data, in_port: peer, remote: None, tci: 0, gso: e.gso, hdr: Headers::default() };
                // Tunnel metadata stays behind (a patch port's frame enters the peer bridge as a local one).
                self.enter(pipe, bufs, frame, e.tagged.then_some(e.tci), TunMd::default(), now, out, obs);
            }
            self.patch_work.clear();
        }
    }
}
