//! How actions write the packet: a private copy of the frame first (earlier outputs keep the original),
//! then the bytes; a key field written by `set_field`, `load` or `move` is made true of the packet
//! ([`Tables::sync_field`]); MPLS label stack entries are pushed and popped.

use super::*;

impl Tables {
    /// Rewrites bytes `at..` of the frame (on a copy of its own the first time). False when there is no room
    /// for the copy: the frame is dropped and counted.
    pub(super) fn rewrite<O: Observer>(
        &mut self,
        r: &mut Run<'_, '_, O>,
        st: &mut ActState,
        at: usize,
        bytes: &[u8],
    ) -> bool {
        if !self.own_frame(r, st) {
            return false;
        }
        r.bufs.get_mut(st.data)[at..at + bytes.len()].copy_from_slice(bytes);
        true
    }

    /// Makes the frame the actions' own (a copy in the scratch area, the first time), so that it may be
    /// written. False when there is no room for the copy: the frame is dropped and counted.
    pub(super) fn own_frame<O: Observer>(&mut self, r: &mut Run<'_, '_, O>, st: &mut ActState) -> bool {
        if !st.copied {
            match r.bufs.copy(st.data) {
                Some(d) => {
                    st.data = d;
                    st.copied = true;
                }
                None => {
                    self.counters[usize::from(r.in_port.0)].drop(DropReason::TxError);
                    return false;
                }
            }
        }
        true
    }

    /// After a key field was written: makes the packet agree (the Ethernet addresses in the frame, the
    /// tunnel ID it leaves with). Registers, metadata and the mark live in the key alone.
    pub(super) fn sync_field<O: Observer>(&mut self, r: &mut Run<'_, '_, O>, st: &mut ActState, s: Slot) -> bool {
        match s {
            slot::DL_DST | slot::DL_SRC => {
                let at = if s == slot::DL_DST { 0 } else { 6 };
                let mac = (st.key.get(s) as u64).to_be_bytes();
                self.rewrite(r, st, at, &mac[2..])
            }
            slot::TUN_ID => {
                st.vni = Some(st.key.get(s) as u32);
                true
            }
            // A tagged frame's priority or ID (an untagged frame has no tag to change).
            slot::VLAN_TCI => {
                let k = st.key.get(s) as u16;
                // Without the "tagged" bit the frame leaves untagged (a load into vlan_tci can take a tag off).
                st.set_tci(if k & 0x1000 != 0 { k & !0x1000 } else { 0 });
                true
            }
            slot::NW_SRC
            | slot::NW_DST
            | slot::NW_TOS
            | slot::NW_ECN
            | slot::NW_TTL
            | slot::IPV6_LABEL
            | slot::MPLS_TC
            | slot::TP_SRC
            | slot::TP_DST
            | slot::NW_PROTO
            | slot::ARP_SHA
            | slot::ARP_THA
            | slot::ND_TARGET => {
                if !self.own_frame(r, st) {
                    return false;
                }
                let partial = st.gso.is_some_and(|g| g.flags & offload::F_NEEDS_CSUM != 0);
                let v = st.key.get(s);
                // A frame shorter than its headers said is left as it is; the key says what was asked.
                rewrite::write_field(r.bufs.get_mut(st.data), &mut st.hdr, partial, s, v);
                true
            }
            _ => true,
        }
    }

    /// `push_mpls` (a copy of the top entry with the bottom-of-stack bit clear on an MPLS frame; else label
    /// 0, the IP TTL and the DSCP's low three bits as OVS takes them, bottom of stack). False when the packet goes no further (no room for its copy, or an offloaded frame,
    /// whose segments could not be cut behind a header the core put in).
    pub(super) fn push_mpls<O: Observer>(&mut self, r: &mut Run<'_, '_, O>, st: &mut ActState, ethertype: u16) -> bool {
        if st.gso.is_some() {
            self.counters[usize::from(r.in_port.0)].drop(DropReason::UnsupportedOffload);
            return false;
        }
        let lse = match st.hdr.mpls {
            Some(top) => top & !0x100,
            // As OVS: the IP TTL (0 when not IP) and the DSCP's low three bits.
            None => (u32::from((st.hdr.nw_tos >> 2) & 7) << 9) | 0x100 | u32::from(st.hdr.nw_ttl),
        };
        let Some(d) = r.bufs.copy_opening(st.data, ETH_LEN, 4) else {
            self.counters[usize::from(r.in_port.0)].drop(DropReason::TxError);
            return false;
        };
        st.data = d;
        st.copied = true;
        let frame = r.bufs.get_mut(d);
        frame[12..14].copy_from_slice(&ethertype.to_be_bytes());
        frame[14..18].copy_from_slice(&lse.to_be_bytes());
        self.reparse(r, st);
        true
    }

    /// `pop_mpls`: on an MPLS frame only.
    pub(super) fn pop_mpls<O: Observer>(&mut self, r: &mut Run<'_, '_, O>, st: &mut ActState, ethertype: u16) -> bool {
        if st.hdr.mpls.is_none() || st.data.len() < ETH_LEN + 4 {
            return true;
        }
        if st.gso.is_some() {
            self.counters[usize::from(r.in_port.0)].drop(DropReason::UnsupportedOffload);
            return false;
        }
        if !self.own_frame(r, st) {
            return false;
        }
        // The addresses move four bytes on, over the entry; the frame then starts four bytes later.
        let frame = r.bufs.get_mut(st.data);
        frame.copy_within(0..12, 4);
        frame[16..18].copy_from_slice(&ethertype.to_be_bytes());
        st.data = Data::new(st.data.area, st.data.start as usize + 4, st.data.len() - 4);
        self.reparse(r, st);
        true
    }

    /// `set_mpls_ttl` and `dec_mpls_ttl`, on an MPLS frame.
    pub(super) fn mpls_ttl<O: Observer>(&mut self, r: &mut Run<'_, '_, O>, st: &mut ActState, act: ActRt) -> bool {
        let Some(lse) = st.hdr.mpls else { return true };
        let ttl = match act {
            ActRt::SetMplsTtl(t) => t,
            _ if lse & 0xff <= 1 => {
                self.counters[usize::from(r.in_port.0)].drop(DropReason::TtlExpired);
                st.exit = true;
                return false;
            }
            _ => (lse & 0xff) as u8 - 1,
        };
        if !self.own_frame(r, st) {
            return false;
        }
        r.bufs.get_mut(st.data)[17] = ttl;
        st.hdr.mpls = Some((lse & !0xff) | u32::from(ttl));
        st.key.put(slot::MPLS_TTL, u128::from(ttl));
        true
    }

    /// `push`/`pop`: a field's bits onto the packet's stack, or the top value into a field (false: the
    /// stack was full or empty, and the packet is dropped, as OVS stops a translation that fails so).
    pub(super) fn stack_op<O: Observer>(&mut self, r: &mut Run<'_, '_, O>, st: &mut ActState, act: ActRt) -> bool {
        match act {
            ActRt::StackPush(src) if usize::from(st.depth) < STACK_DEPTH => {
                st.stack[usize::from(st.depth)] = st.key.get_bits(src);
                st.depth += 1;
                true
            }
            ActRt::StackPop(dst) if st.depth > 0 => {
                st.depth -= 1;
                let v = st.stack[usize::from(st.depth)] & Slot::bits_mask(0, dst.nbits);
                st.key.set_masked(dst.slot, v << dst.ofs, Slot::bits_mask(dst.ofs, dst.nbits));
                self.sync_field(r, st, dst.slot)
            }
            _ => {
                r.obs.on(|| note("push/pop: the stack is full or empty; dropped".to_string()));
                self.counters[usize::from(r.in_port.0)].drop(DropReason::FlowDrop);
                st.exit = true;
                false
            }
        }
    }

    /// After the frame changed type: its headers parsed again and the key's packet fields made to agree
    /// (registers, metadata and the input port stay).
    fn reparse<O: Observer>(&mut self, r: &mut Run<'_, '_, O>, st: &mut ActState) {
        st.hdr = Headers::parse(r.bufs.get(st.data));
        put_l3(&mut st.key, &st.hdr);
    }
}
