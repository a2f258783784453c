//! The `ct` action: the packet through the switch's connection tracker, its findings into the key's
//! `ct_*` fields, and (with `table=`) on into that table — a fork, as OVS has it: the tracked packet goes on
//! in the table, the actions after `ct` go on with the packet untracked.

use super::pipeline::CtWriteRt;
use super::*;
use crate::conntrack::{packet::CtPacket, state, CtArgs, CtMeta, Verdict};
use weft_wire::checksum;

/// The key's `ct_*` fields from what tracking found.
fn put(key: &mut FlowKey, m: &CtMeta) {
    key.put(slot::CT_STATE, u128::from(m.state));
    key.put(slot::CT_ZONE, u128::from(m.zone));
    key.put(slot::CT_MARK, u128::from(m.mark));
    key.put(slot::CT_LABEL, m.label);
    let t = m.orig.unwrap_or_default();
    key.put(slot::CT_NW_PROTO, u128::from(t.proto));
    key.put(slot::CT_NW_SRC, t.src.addr);
    key.put(slot::CT_NW_DST, t.dst.addr);
    key.put(slot::CT_TP_SRC, u128::from(t.src.port));
    key.put(slot::CT_TP_DST, u128::from(t.dst.port));
}

/// `ct_clear`, and a packet after `ct` without `table=`: untracked.
pub(super) fn clear(key: &mut FlowKey) {
    put(key, &CtMeta::default());
}

fn show_addr(a: u128, v6: bool) -> String {
    if v6 {
        std::net::Ipv6Addr::from(a).to_string()
    } else {
        std::net::Ipv4Addr::from(a as u32).to_string()
    }
}

fn state_names(s: u8) -> String {
    const NAMES: [&str; 8] = ["new", "est", "rel", "rpl", "inv", "trk", "snat", "dnat"];
    (0..8).filter(|b| s & (1 << b) != 0).map(|b| format!("+{}", NAMES[b])).collect()
}

impl Tables {
    /// Runs `ct` on the packet; false when it goes no further (a new connection the full table refused).
    pub(super) fn run_ct<O: Observer>(
        &mut self,
        r: &mut Run<'_, '_, O>,
        index: u32,
        st: &mut ActState,
        depth: u8,
    ) -> bool {
        let own = &r.pipe.bridges[r.bridge].cts;
        let i = index as usize;
        let Some(ct) = own.get(i).or_else(|| r.extra_cts.get(i - own.len().min(i))).copied() else { return true };
        let ct = &ct;
        let zone = match ct.zone {
            Ok(z) => z,
            Err(sub) => st.key.get_bits(sub) as u16,
        };
        let pkt = CtPacket::parse(r.bufs.get(st.data), &st.hdr);
        // exec's writes, in order, into one (value, mask) for the mark and one for the label.
        let (mut mark, mut label) = (None::<(u128, u128)>, None::<(u128, u128)>);
        for w in ct.exec.iter().flatten() {
            let (is_label, value, mask) = match *w {
                CtWriteRt::Const { label, value, mask } => (label, value, mask),
                CtWriteRt::Move { label, src, ofs } => {
                    (label, st.key.get_bits(src) << ofs, crate::classifier::Slot::bits_mask(ofs, src.nbits))
                }
            };
            let acc = if is_label { &mut label } else { &mut mark };
            let (v, m) = acc.unwrap_or((0, 0));
            *acc = Some(((v & !mask) | (value & mask), m | mask));
        }
        let args = CtArgs {
            zone,
            commit: ct.commit,
            force: ct.force,
            mark: mark.map(|(v, m)| (v as u32, m as u32)),
            label,
            nat: ct.nat,
            dry: self.ct_dry,
        };
        let meta = match r.pipe.conntrack.execute(pkt.as_ref(), &args, r.now) {
            Verdict::Tracked(m) => m,
            Verdict::Full => {
                r.obs.on(|| note(format!("ct(zone={zone}): the connection table is full, dropped")));
                self.counters[usize::from(r.in_port.0)].drop(DropReason::CtFull);
                st.exit = true;
                return false;
            }
        };
        r.obs.on(|| {
            let commit = match (ct.commit, self.ct_dry) {
                (false, _) => "",
                (true, false) => ", committed",
                (true, true) => ", would be committed",
            };
            let nat = match (meta.rewrite.src, meta.rewrite.dst) {
                (Some(e), _) => format!(", source translated to {} port {}", show_addr(e.addr, st.hdr.v6), e.port),
                (_, Some(e)) => format!(", destination translated to {} port {}", show_addr(e.addr, st.hdr.v6), e.port),
                _ => String::new(),
            };
            note(format!("ct(zone={zone}): ct_state={}{commit}{nat}", state_names(meta.state)))
        });
        // An ICMP error through NAT: the packet it quotes first (its own checksum, then the message's).
        let error = meta.state & crate::conntrack::state::REL != 0 && matches!(st.hdr.nw_proto, Some(1 | 58));
        if error && meta.rewrite != crate::conntrack::Rewrite::default() {
            if !self.own_frame(r, st) {
                return false;
            }
            rewrite_quoted(r.bufs.get_mut(st.data), &st.hdr, &meta.rewrite.quoted());
        }
        // NAT rewrites the packet (checksums moved with it, an offloaded frame once, whole) before it goes on.
        for (end, nw, tp) in
            [(meta.rewrite.src, slot::NW_SRC, slot::TP_SRC), (meta.rewrite.dst, slot::NW_DST, slot::TP_DST)]
        {
            let Some(e) = end else { continue };
            st.key.put(nw, e.addr);
            if !self.sync_field(r, st, nw) {
                return false;
            }
            if st.hdr.tp.is_some() && !matches!(st.hdr.nw_proto, Some(1 | 58)) {
                st.key.put(tp, u128::from(e.port));
                if !self.sync_field(r, st, tp) {
                    return false;
                }
            }
        }
        if let Some(t) = ct.table {
            let mut fork = st.clone();
            fork.copied = false;
            fork.exit = false;
            put(&mut fork.key, &meta);
            self.run_table(r, usize::from(t), &mut fork, depth + 1);
            st.too_big = st.too_big.or(fork.too_big);
            // What the fork sent may refer to these bytes: a later rewrite works on a copy of its own.
            st.copied = false;
        }
        if st.key.get(slot::CT_STATE) as u8 & state::TRK != 0 {
            clear(&mut st.key);
        }
        true
    }
}

/// Rewrites, inside an ICMP error (the frame, its outer headers `h`), the packet it quotes: its addresses
/// (and the quoted IPv4 header's checksum) and its ports, then sums the ICMP message again. Quoted packets
/// too short to hold what is rewritten are left as they are.
pub(super) fn rewrite_quoted(frame: &mut [u8], h: &Headers, rw: &crate::conntrack::Rewrite) {
    let icmp = usize::from(h.l4_at);
    let inner = icmp + 8;
    if icmp == 0 || frame.len() < inner + 20 {
        return;
    }
    let v6 = h.v6;
    let (ihl, proto, src_at, dst_at, alen) = if v6 {
        (40, frame[inner + 6], inner + 8, inner + 24, 16)
    } else {
        (usize::from(frame[inner] & 0x0f) * 4, frame[inner + 9], inner + 12, inner + 16, 4)
    };
    if ihl < 20 || frame.len() < inner + ihl {
        return;
    }
    let ported = matches!(proto, 6 | 17 | 132 | 136) && frame.len() >= inner + ihl + 4;
    for (end, at, port_at) in [(rw.src, src_at, inner + ihl), (rw.dst, dst_at, inner + ihl + 2)] {
        let Some(e) = end else { continue };
        let b = e.addr.to_be_bytes();
        frame[at..at + alen].copy_from_slice(&b[16 - alen..]);
        if ported {
            frame[port_at..port_at + 2].copy_from_slice(&e.port.to_be_bytes());
        }
    }
    if !v6 {
        frame[inner + 10..inner + 12].fill(0);
        let c = checksum::checksum(&frame[inner..inner + ihl]);
        frame[inner + 10..inner + 12].copy_from_slice(&c.to_be_bytes());
    }
    // The ICMP checksum over the whole message (with IPv6's pseudo-header).
    let end = if v6 {
        (14 + 40 + usize::from(u16::from_be_bytes([frame[18], frame[19]]))).min(frame.len())
    } else {
        (14 + usize::from(u16::from_be_bytes([frame[16], frame[17]]))).min(frame.len())
    };
    if end <= icmp + 4 {
        return;
    }
    frame[icmp + 2..icmp + 4].fill(0);
    let mut s = checksum::sum(&frame[icmp..end]);
    if v6 {
        s = checksum::combine(s, checksum::combine(checksum::sum(&frame[22..54]), (end - icmp) as u32 + 58));
    }
    let c = checksum::finish(s);
    frame[icmp + 2..icmp + 4].copy_from_slice(&c.to_be_bytes());
}
