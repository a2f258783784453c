//! A controller's PACKET_OUT through the switch: the frame, its input port, and an action list that runs
//! as a flow's would (an output to OFPP_TABLE takes it through the flow tables).

use super::*;

impl Tables {
    /// A controller's packet-out: `actions` run on the frame as a flow's would.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn packet_out(
        &mut self,
        pipe: &Pipeline,
        bufs: &mut Buffers,
        input: Input,
        from_controller: bool,
        (actions, cts): (&[ActRt], &[pipeline::CtRt]),
        now: Nanos,
        out: &mut Outputs,
        obs: &mut impl Observer,
    ) {
        let Input { data, in_port, remote, gso, .. } = input;
        let (data, tci) = match pop_tag(bufs.get_mut(data)) {
            Some(t) => (data.skip(4), t),
            None => (data, 0),
        };
        if data.len() < ETH_LEN {
            self.counters[usize::from(in_port.0)].drop(DropReason::Malformed);
            return;
        }
        let hdr = Headers::parse(bufs.get(data));
        let port = pipe.port(in_port);
        let mut key = flow_key(port, remote, bufs.get(data), tci, &hdr);
        if from_controller {
            key.put(slot::IN_PORT, u128::from(pipeline::OFPP_CONTROLLER));
        }
        let mut st = ActState::new(key, data, tci, hdr, gso);
        let bridge = port.bridge;
        let mut run = Run {
            pipe,
            bufs: &mut *bufs,
            out: &mut *out,
            obs: &mut *obs,
            now,
            bridge,
            in_port,
            remote,
            from_controller,
            extra_cts: cts,
        };
        self.apply_actions(&mut run, 0, (u64::MAX, false), actions, &mut st, 0);
        self.run_action_set(&mut run, &mut st);
        if let Some(mtu) = st.too_big {
            self.signal_too_big(pipe, bufs, in_port, st.data, mtu, tci, now, out, obs);
        }
        self.run_patched(pipe, bufs, now, out, obs);
    }
}
