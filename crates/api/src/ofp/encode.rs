//! Actions written as OpenFlow 1.3 (and Nicira's) encodings, as OVS writes them.

use super::*;

/// An OUTPUT to a port other than the controller: `max_len` 0, as OVS writes it (it means something only
/// towards the controller).
pub(super) fn put_output(out: &mut Vec<u8>, p: u32) {
    put_output_len(out, p, 0);
}

pub(super) fn put_output_len(out: &mut Vec<u8>, p: u32, max_len: u16) {
    out.extend_from_slice(&act::OUTPUT.to_be_bytes());
    out.extend_from_slice(&16u16.to_be_bytes());
    out.extend_from_slice(&p.to_be_bytes());
    out.extend_from_slice(&max_len.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
}

pub(super) fn put_set_field(out: &mut Vec<u8>, class: u16, field: u8, value: &[u8]) {
    let at = out.len();
    out.extend_from_slice(&act::SET_FIELD.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    put_oxm(out, class, field, value, None);
    weft_wire::openflow::pad8(out, at);
    let len = (out.len() - at) as u16;
    out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
}

pub(crate) fn put_nx(out: &mut Vec<u8>, sub: u16, rest: &[u8]) {
    let at = out.len();
    out.extend_from_slice(&act::EXPERIMENTER.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&act::NX_VENDOR.to_be_bytes());
    out.extend_from_slice(&sub.to_be_bytes());
    out.extend_from_slice(rest);
    weft_wire::openflow::pad8(out, at);
    let len = (out.len() - at) as u16;
    out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Nicira's dec_ttl (no controller IDs: the packet is dropped where OVS would send it to the controllers).
pub(crate) fn put_nx_dec_ttl(out: &mut Vec<u8>) {
    put_nx(out, act::NXAST_DEC_TTL, &[0; 6]);
}

/// Nicira's MPLS actions, as OpenFlow 1.0 carries them.
pub(crate) fn put_nx_mpls(out: &mut Vec<u8>, a: &Action) {
    match *a {
        Action::PushMpls(t) => put_nx(out, act::NXAST_PUSH_MPLS, &[&t.to_be_bytes()[..], &[0; 4]].concat()),
        Action::PopMpls(t) => put_nx(out, act::NXAST_POP_MPLS, &[&t.to_be_bytes()[..], &[0; 4]].concat()),
        Action::SetMplsTtl(t) => put_nx(out, act::NXAST_SET_MPLS_TTL, &[t, 0, 0, 0, 0, 0]),
        Action::DecMplsTtl => put_nx(out, act::NXAST_DEC_MPLS_TTL, &[0; 6]),
        _ => {}
    }
}

/// NXAST_REG_LOAD2: one OXM TLV (with a mask when given), for writes `NXAST_REG_LOAD` cannot say. On an
/// OpenFlow 1.5 connection (which has neither), a set_field with the mask.
pub(super) fn put_load2(out: &mut Vec<u8>, class: u16, field: u8, bytes: usize, value: u128, mask: Option<u128>) {
    let mut tlv = Vec::new();
    let m = mask.map(|m| m.to_be_bytes());
    put_oxm(&mut tlv, class, field, &value.to_be_bytes()[16 - bytes..], m.as_ref().map(|m| &m[16 - bytes..]));
    if openflow15() {
        let at = out.len();
        out.extend_from_slice(&act::SET_FIELD.to_be_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&tlv);
        weft_wire::openflow::pad8(out, at);
        let len = (out.len() - at) as u16;
        out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        return;
    }
    put_nx(out, act::NXAST_REG_LOAD2, &tlv);
}

thread_local! {
    /// This thread writes for an OpenFlow 1.5 connection ([`set_openflow15`]).
    static OPENFLOW15: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether what this thread encodes from now on is for OpenFlow 1.5, which drops Nicira's register loads and
/// moves (NXAST_REG_LOAD, REG_LOAD2, REG_MOVE) for set_field with a mask and copy_field, and the meter
/// instruction for the meter action. An OpenFlow connection's thread says so once its version is known.
pub fn set_openflow15(on: bool) {
    OPENFLOW15.with(|c| c.set(on));
}

pub(super) fn openflow15() -> bool {
    OPENFLOW15.with(|c| c.get())
}

/// Writes a list of actions; a `clone` marker becomes NXAST_CLONE holding the actions it covers.
pub(crate) fn put_action_list(out: &mut Vec<u8>, list: &[Action], ctx: Ctx) {
    let mut i = 0;
    while i < list.len() {
        if let Action::Clone(_) = list[i] {
            let end = i + 1 + crate::flow::nested_len(list, i);
            // Six bytes of padding after the subtype, then the actions.
            let mut inner = vec![0u8; 6];
            put_action_list(&mut inner, &list[i + 1..end], ctx);
            put_nx(out, act::NXAST_CLONE, &inner);
            i = end;
            continue;
        }
        // OpenFlow 1.5: writes into one field one after the other are one set_field with their bits (as OVS
        // merges NXAST_REG_LOADs when it reads them, it writes one set_field).
        if let (true, Some((field, mut value, mut mask))) = (openflow15(), partial_write(&list[i])) {
            let mut j = i + 1;
            let next = |j: usize| list.get(j).and_then(partial_write).filter(|(f, ..)| *f == field);
            while let Some((_, v, m)) = next(j).filter(|(_, _, m)| mask & m == 0) {
                (value, mask) = (value | v, mask | m);
                j += 1;
            }
            if let Some((class, code, bytes)) = header_of(field) {
                put_load2(out, class, code, bytes, value, Some(mask));
            }
            i = j;
            continue;
        }
        if let Action::Learn(l) = list[i] {
            let end = i + 1 + crate::flow::nested_len(list, i);
            super::put_learn(out, &l, &list[i + 1..end]);
            i = end;
            continue;
        }
        put_action_in(out, &list[i], ctx);
        i += 1;
    }
}

/// A write of some bits of a register-like field (`load`, a masked `set_field`), as (field, value, mask).
fn partial_write(a: &Action) -> Option<(crate::flow::Field, u128, u128)> {
    match *a {
        Action::Load { dst, value } => {
            let m = full_mask(u32::from(dst.nbits)) << dst.ofs;
            Some((dst.field, (value << dst.ofs) & m, m))
        }
        Action::SetReg { field, value, mask }
            if mask != full_mask(u32::from(field.bits())) && !crate::flow::is_packet_set(field, mask) =>
        {
            Some((field, value & mask, mask))
        }
        _ => None,
    }
}

pub(crate) fn put_action(out: &mut Vec<u8>, a: &Action) {
    put_action_in(out, a, Ctx::default())
}

/// One action, in a flow whose match `ctx` describes.
pub(crate) fn put_action_in(out: &mut Vec<u8>, a: &Action, ctx: Ctx) {
    match *a {
        Action::SetReg { field, value, mask } if crate::flow::is_packet_set(field, mask) => {
            if let Some((class, code, bytes, v)) = crate::flow::set_field_oxm(field, value, mask, ctx) {
                put_set_field(out, class, code, &v.to_be_bytes()[16 - bytes..]);
            }
        }
        Action::SetNwTtl(t) => out.extend_from_slice(&[0, 23, 0, 8, t, 0, 0, 0]),
        Action::DecTtl => out.extend_from_slice(&[0, 24, 0, 8, 0, 0, 0, 0]),
        Action::Group(g) => {
            out.extend_from_slice(&[0, 22, 0, 8]);
            out.extend_from_slice(&g.to_be_bytes());
        }
        Action::PushMpls(t) | Action::PopMpls(t) => {
            out.extend_from_slice(&[0, if matches!(a, Action::PushMpls(_)) { 19 } else { 20 }, 0, 8]);
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        Action::SetMplsTtl(t) => out.extend_from_slice(&[0, 15, 0, 8, t, 0, 0, 0]),
        Action::DecMplsTtl => out.extend_from_slice(&[0, 16, 0, 8, 0, 0, 0, 0]),
        Action::Output(OFPP_LOCAL) | Action::Local => put_output(out, port::LOCAL),
        Action::Output(p) => put_output(out, p),
        Action::OutputMaxLen(p, n) => put_output_len(out, p, n),
        Action::Normal => put_output(out, port::NORMAL),
        Action::Flood => put_output(out, port::FLOOD),
        Action::All => put_output(out, port::ALL),
        Action::InPort => put_output(out, port::IN_PORT),
        Action::Controller => put_output_len(out, port::CONTROLLER, 0xffff),
        Action::ControllerMaxLen(n) => put_output_len(out, port::CONTROLLER, n),
        Action::ControllerEx { max_len, reason, id } => {
            let (m, i) = (max_len.to_be_bytes(), id.to_be_bytes());
            put_nx(out, act::NXAST_CONTROLLER, &[m[0], m[1], i[0], i[1], reason, 0])
        }
        Action::Drop
        | Action::GotoTable(_)
        | Action::WriteMetadata { .. }
        | Action::ClearActions
        | Action::WriteActions(_)
        | Action::Meter(_) => {}
        // A list encoder ([`put_action_list`]) writes a clone with what it holds.
        Action::Clone(_) => {}
        Action::Exit => put_nx(out, act::NXAST_EXIT, &[0; 6]),
        Action::FinTimeout { idle, hard } => {
            put_nx(out, act::NXAST_FIN_TIMEOUT, &[&idle.to_be_bytes()[..], &hard.to_be_bytes(), &[0, 0]].concat())
        }
        // A list encoder ([`put_action_list`]) writes a learn with its pieces.
        Action::Learn(_) | Action::LearnSpec(_) => {}
        // The clause counts from 0 on the wire.
        Action::Conjunction { id, k, n } => {
            put_nx(out, act::NXAST_CONJUNCTION, &[&[k - 1, n][..], &id.to_be_bytes()].concat())
        }
        Action::Note { bytes, len } => put_nx(out, act::NXAST_NOTE, &bytes[..usize::from(len)]),
        Action::SetQueue(q) => {
            out.extend_from_slice(&act::SET_QUEUE.to_be_bytes());
            out.extend_from_slice(&8u16.to_be_bytes());
            out.extend_from_slice(&q.to_be_bytes());
        }
        Action::PopQueue => put_nx(out, act::NXAST_POP_QUEUE, &[0; 6]),
        Action::Ct(ct) => super::ct::put_nx_ct(out, &ct),
        Action::CtClear => put_nx(out, act::NXAST_CT_CLEAR, &[0; 6]),
        Action::Load { dst, value } => {
            let Some((class, field, bytes)) = header_of(dst.field) else { return };
            if dst.nbits <= 64 && !openflow15() {
                let mut rest = ((dst.ofs << 6) | (dst.nbits - 1)).to_be_bytes().to_vec();
                rest.extend_from_slice(&nxm_header(class, field, bytes, false).to_be_bytes());
                rest.extend_from_slice(&(value as u64).to_be_bytes());
                put_nx(out, act::NXAST_REG_LOAD, &rest);
            } else {
                let mask = full_mask(u32::from(dst.nbits)) << dst.ofs;
                put_load2(out, class, field, bytes, value << dst.ofs, Some(mask));
            }
        }
        Action::SetReg { field, value, mask } => {
            let Some((class, code, bytes)) = header_of(field) else { return };
            if mask == full_mask(u32::from(field.bits())) {
                put_set_field(out, class, code, &value.to_be_bytes()[16 - bytes..]);
            } else {
                put_load2(out, class, code, bytes, value, Some(mask));
            }
        }
        Action::OutputReg(src) => {
            let Some((class, field, bytes)) = header_of(src.field) else { return };
            let mut rest = ((src.ofs << 6) | (src.nbits - 1)).to_be_bytes().to_vec();
            rest.extend_from_slice(&nxm_header(class, field, bytes, false).to_be_bytes());
            rest.extend_from_slice(&0xffffu16.to_be_bytes()); // max_len
            put_nx(out, act::NXAST_OUTPUT_REG, &rest);
        }
        Action::Multipath(mp) => {
            let Some((class, field, bytes)) = header_of(mp.dst.field) else { return };
            let mut rest = mp.fields.wire().to_be_bytes().to_vec();
            rest.extend_from_slice(&mp.basis.to_be_bytes());
            rest.extend_from_slice(&[0, 0]);
            rest.extend_from_slice(&mp.algorithm.to_be_bytes());
            rest.extend_from_slice(&((mp.n_links - 1) as u16).to_be_bytes());
            rest.extend_from_slice(&mp.arg.to_be_bytes());
            rest.extend_from_slice(&[0, 0]);
            rest.extend_from_slice(&((mp.dst.ofs << 6) | (mp.dst.nbits - 1)).to_be_bytes());
            rest.extend_from_slice(&nxm_header(class, field, bytes, false).to_be_bytes());
            put_nx(out, act::NXAST_MULTIPATH, &rest);
        }
        Action::Bundle(bd) => {
            let mut rest = u16::from(bd.hrw).to_be_bytes().to_vec();
            rest.extend_from_slice(&bd.fields.wire().to_be_bytes());
            rest.extend_from_slice(&bd.basis.to_be_bytes());
            rest.extend_from_slice(&2u32.to_be_bytes()); // members are ports (NXM_OF_IN_PORT)
            rest.extend_from_slice(&u16::from(bd.n).to_be_bytes());
            let (ofs_nbits, dst) = match bd.dst.and_then(|d| header_of(d.field).map(|h| (d, h))) {
                Some((d, (class, field, bytes))) => {
                    ((d.ofs << 6) | (d.nbits - 1), nxm_header(class, field, bytes, false))
                }
                None => (0, 0),
            };
            rest.extend_from_slice(&ofs_nbits.to_be_bytes());
            rest.extend_from_slice(&dst.to_be_bytes());
            rest.extend_from_slice(&[0; 4]);
            for m in bd.members() {
                rest.extend_from_slice(&crate::of10::port16(*m).to_be_bytes());
            }
            put_nx(out, if bd.dst.is_some() { act::NXAST_BUNDLE_LOAD } else { act::NXAST_BUNDLE }, &rest);
        }
        // NXAST_SAMPLE, or NXAST_SAMPLE2 with a port, or NXAST_SAMPLE3 with a direction (as OVS chooses).
        Action::Sample(s) => {
            let mut rest = s.probability.to_be_bytes().to_vec();
            for v in [s.collector_set_id, s.obs_domain_id, s.obs_point_id] {
                rest.extend_from_slice(&v.to_be_bytes());
            }
            let sub = if s.direction != 0 {
                act::NXAST_SAMPLE3
            } else if s.sampling_port.is_some() {
                act::NXAST_SAMPLE2
            } else {
                act::NXAST_SAMPLE
            };
            if sub != act::NXAST_SAMPLE {
                rest.extend_from_slice(&s.sampling_port.map_or(0xffff, crate::of10::port16).to_be_bytes());
                rest.push(s.direction);
                rest.extend_from_slice(&[0; 5]);
            }
            put_nx(out, sub, &rest);
        }
        Action::OutputTrunc(p, n) => {
            let mut rest = crate::of10::port16(p).to_be_bytes().to_vec();
            rest.extend_from_slice(&n.to_be_bytes());
            put_nx(out, act::NXAST_OUTPUT_TRUNC, &rest);
        }
        Action::StackPush(sf) | Action::StackPop(sf) => {
            let Some((class, field, bytes)) = header_of(sf.field) else { return };
            let mut rest = sf.ofs.to_be_bytes().to_vec();
            rest.extend_from_slice(&nxm_header(class, field, bytes, false).to_be_bytes());
            rest.extend_from_slice(&sf.nbits.to_be_bytes());
            let sub = if matches!(a, Action::StackPush(_)) { act::NXAST_STACK_PUSH } else { act::NXAST_STACK_POP };
            put_nx(out, sub, &rest);
        }
        // OpenFlow 1.5's copy_field: n_bits, the offsets, padding, the two headers.
        Action::Move { src, dst } if openflow15() => {
            let (Some(s), Some(d)) = (header_of(src.field), header_of(dst.field)) else { return };
            let at = out.len();
            out.extend_from_slice(&act::COPY_FIELD.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&src.nbits.to_be_bytes());
            out.extend_from_slice(&src.ofs.to_be_bytes());
            out.extend_from_slice(&dst.ofs.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&nxm_header(s.0, s.1, s.2, false).to_be_bytes());
            out.extend_from_slice(&nxm_header(d.0, d.1, d.2, false).to_be_bytes());
            weft_wire::openflow::pad8(out, at);
            let len = (out.len() - at) as u16;
            out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
        }
        Action::Move { src, dst } => {
            let (Some(s), Some(d)) = (header_of(src.field), header_of(dst.field)) else { return };
            let mut rest = src.nbits.to_be_bytes().to_vec();
            rest.extend_from_slice(&src.ofs.to_be_bytes());
            rest.extend_from_slice(&dst.ofs.to_be_bytes());
            rest.extend_from_slice(&nxm_header(s.0, s.1, s.2, false).to_be_bytes());
            rest.extend_from_slice(&nxm_header(d.0, d.1, d.2, false).to_be_bytes());
            put_nx(out, act::NXAST_REG_MOVE, &rest);
        }
        Action::ModVlanVid(v) | Action::SetField(SetField::VlanVid(v)) => {
            put_set_field(out, oxm::CLASS_BASIC, oxm::VLAN_VID, &(v | oxm::VID_PRESENT).to_be_bytes())
        }
        Action::StripVlan => out.extend_from_slice(&[0, 18, 0, 8, 0, 0, 0, 0]),
        Action::PushVlan(t) => {
            out.extend_from_slice(&[0, 17, 0, 8]);
            out.extend_from_slice(&t.to_be_bytes());
            out.extend_from_slice(&[0, 0]);
        }
        Action::SetField(SetField::EthSrc(m)) => put_set_field(out, oxm::CLASS_BASIC, oxm::ETH_SRC, &m.0),
        Action::SetField(SetField::EthDst(m)) => put_set_field(out, oxm::CLASS_BASIC, oxm::ETH_DST, &m.0),
        // As OVS: NXAST_SET_TUNNEL when the ID fits 32 bits, NXAST_SET_TUNNEL64 otherwise.
        Action::SetTunnel(v) => match u32::try_from(v) {
            Ok(v32) => put_nx(out, act::NXAST_SET_TUNNEL, &[&[0, 0][..], &v32.to_be_bytes()].concat()),
            Err(_) => put_nx(out, act::NXAST_SET_TUNNEL64, &[&[0; 6][..], &v.to_be_bytes()].concat()),
        },
        Action::SetField(SetField::TunId(v)) => put_set_field(out, oxm::CLASS_BASIC, oxm::TUNNEL_ID, &v.to_be_bytes()),
        Action::SetField(SetField::TunDst(ip)) => match ip {
            std::net::IpAddr::V4(a) => put_set_field(out, oxm::CLASS_NXM1, oxm::NX_TUN_IPV4_DST, &a.octets()),
            std::net::IpAddr::V6(_) => {}
        },
        Action::Resubmit { port: p, table } => {
            let p16 = p.map_or(0xfff8u16, |p| p as u16);
            let mut rest = p16.to_be_bytes().to_vec();
            rest.push(table.unwrap_or(255));
            rest.extend_from_slice(&[0, 0, 0]);
            put_nx(out, act::NXAST_RESUBMIT_TABLE, &rest);
        }
    }
}
