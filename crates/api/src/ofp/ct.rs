//! The `ct` action on the wire: NXAST_CT with its nested actions (NXAST_NAT, and the loads of `exec`), as
//! OVS encodes it.

use super::encode::{put_load2, put_nx};
use super::*;
use crate::flow::{Ct, CtExec, CtZone, Nat, NatKind, CT_EXEC_MAX};
use std::net::IpAddr;

const F_COMMIT: u16 = 1;
const F_FORCE: u16 = 2;
const NAT_SRC: u16 = 1;
const NAT_DST: u16 = 2;
const NAT_PERSISTENT: u16 = 4;
const NAT_HASH: u16 = 8;
const NAT_RANDOM: u16 = 16;
const R_V4_MIN: u16 = 1;
const R_V4_MAX: u16 = 2;
const R_V6_MIN: u16 = 4;
const R_V6_MAX: u16 = 8;
const R_PROTO_MIN: u16 = 16;
const R_PROTO_MAX: u16 = 32;

pub(super) fn put_nx_ct(out: &mut Vec<u8>, ct: &Ct) {
    let flags = if ct.commit { F_COMMIT } else { 0 } | if ct.force { F_FORCE } else { 0 };
    let mut rest = flags.to_be_bytes().to_vec();
    match ct.zone {
        CtZone::Imm(z) => {
            rest.extend_from_slice(&[0; 4]);
            rest.extend_from_slice(&z.to_be_bytes());
        }
        CtZone::Field(sf) => {
            let (class, field, bytes) = header_of(sf.field).unwrap_or((0, 0, 0));
            rest.extend_from_slice(&nxm_header(class, field, bytes, false).to_be_bytes());
            rest.extend_from_slice(&((sf.ofs << 6) | (sf.nbits - 1)).to_be_bytes());
        }
    }
    rest.push(ct.table.unwrap_or(0xff));
    rest.extend_from_slice(&[0; 3]);
    rest.extend_from_slice(&ct.alg.to_be_bytes());
    if let Some(nat) = &ct.nat {
        put_nat(&mut rest, nat);
    }
    for e in ct.exec.iter().flatten() {
        match *e {
            CtExec::Load { dst, value } => put_action(&mut rest, &Action::Load { dst, value }),
            CtExec::Move { src, dst } => put_action(&mut rest, &Action::Move { src, dst }),
            CtExec::Set { field, value, mask } => {
                let Some((class, code, bytes)) = header_of(field) else { continue };
                let full = full_mask(u32::from(field.bits()));
                put_load2(&mut rest, class, code, bytes, value, (mask != full).then_some(mask));
            }
        }
    }
    put_nx(out, act::NXAST_CT, &rest);
}

fn put_nat(out: &mut Vec<u8>, nat: &Nat) {
    let mut flags = match nat.kind {
        NatKind::Reverse => 0,
        NatKind::Src => NAT_SRC,
        NatKind::Dst => NAT_DST,
    };
    flags |= if nat.persistent { NAT_PERSISTENT } else { 0 };
    flags |= if nat.hash { NAT_HASH } else { 0 };
    flags |= if nat.random { NAT_RANDOM } else { 0 };
    let (mut present, mut ranges) = (0u16, Vec::new());
    if let Some((a, b)) = nat.addrs {
        match (a, b) {
            (IpAddr::V4(a), IpAddr::V4(b)) => {
                present |= R_V4_MIN;
                ranges.extend_from_slice(&a.octets());
                if a != b {
                    present |= R_V4_MAX;
                    ranges.extend_from_slice(&b.octets());
                }
            }
            (IpAddr::V6(a), IpAddr::V6(b)) => {
                present |= R_V6_MIN;
                ranges.extend_from_slice(&a.octets());
                if a != b {
                    present |= R_V6_MAX;
                    ranges.extend_from_slice(&b.octets());
                }
            }
            _ => {}
        }
    }
    if let Some((p, q)) = nat.ports {
        present |= R_PROTO_MIN;
        ranges.extend_from_slice(&p.to_be_bytes());
        if p != q {
            present |= R_PROTO_MAX;
            ranges.extend_from_slice(&q.to_be_bytes());
        }
    }
    let mut rest = vec![0, 0];
    rest.extend_from_slice(&flags.to_be_bytes());
    rest.extend_from_slice(&present.to_be_bytes());
    rest.extend_from_slice(&ranges);
    put_nx(out, act::NXAST_NAT, &rest);
}

/// An NXAST_CT action's body (from the vendor on).
pub(super) fn ct_from(b: &[u8]) -> Result<Action, OfError> {
    let bad_arg = (error::BAD_ACTION, error::BAD_ARGUMENT);
    let flags = u16::from_be_bytes([b[6], b[7]]);
    if flags & !(F_COMMIT | F_FORCE) != 0 || (flags & F_FORCE != 0 && flags & F_COMMIT == 0) {
        return Err(bad_arg);
    }
    let zone_src = be32(b, 8);
    let zone_v = u16::from_be_bytes([b[12], b[13]]);
    let zone = if zone_src == 0 {
        CtZone::Imm(zone_v)
    } else {
        let (ofs, nbits) = (zone_v >> 6, (zone_v & 0x3f) + 1);
        if nbits != 16 {
            return Err((error::BAD_ACTION, error::BAD_SET_LEN));
        }
        CtZone::Field(sub_field(zone_src, ofs, nbits)?)
    };
    let table = (b[14] != 0xff).then_some(b[14]);
    let alg = u16::from_be_bytes([b[18], b[19]]);
    let mut ct = Ct {
        commit: flags & F_COMMIT != 0,
        force: flags & F_FORCE != 0,
        zone,
        table,
        alg,
        nat: None,
        exec: [None; CT_EXEC_MAX],
    };
    let nested = weft_wire::openflow::parse_tlvs(&b[20..], "action").map_err(|_| (error::BAD_ACTION, 1))?;
    let mut n = 0;
    for a in &nested {
        let nb = a.body;
        let sub = (a.kind == act::EXPERIMENTER && nb.len() >= 6).then(|| u16::from_be_bytes([nb[4], nb[5]]));
        if sub == Some(act::NXAST_NAT) && nb.len() >= 12 && ct.nat.is_none() {
            ct.nat = Some(nat_from(nb)?);
            continue;
        }
        // exec: writes into the mark or the label (the only fields a `ct` may set).
        let ct_field = |f: Field| matches!(f, Field::CtMark | Field::CtLabel);
        let e = match sub {
            Some(act::NXAST_REG_LOAD) if nb.len() >= 20 => {
                let ofs_nbits = u16::from_be_bytes([nb[6], nb[7]]);
                let dst = sub_field(be32(nb, 8), ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1)?;
                let value = u128::from(u64::from_be_bytes(nb[12..20].try_into().map_err(|_| bad_arg)?));
                if dst.nbits < 64 && value >> dst.nbits != 0 {
                    return Err(bad_arg);
                }
                CtExec::Load { dst, value }
            }
            Some(act::NXAST_REG_MOVE) if nb.len() >= 20 => {
                let n_bits = u16::from_be_bytes([nb[6], nb[7]]);
                let (so, d_o) = (u16::from_be_bytes([nb[8], nb[9]]), u16::from_be_bytes([nb[10], nb[11]]));
                CtExec::Move { src: sub_field(be32(nb, 12), so, n_bits)?, dst: sub_field(be32(nb, 16), d_o, n_bits)? }
            }
            Some(act::NXAST_REG_LOAD2) if nb.len() >= 10 => {
                let h = be32(nb, 6);
                let len = (h & 0xff) as usize;
                let masked = h & 0x100 != 0;
                let body = nb.get(10..10 + len).ok_or(bad_arg)?;
                let field = field_of_header(h).ok_or((error::BAD_ACTION, error::BAD_SET_TYPE))?;
                let bytes = if masked { len / 2 } else { len };
                if usize::from(field.bits()) != bytes * 8 {
                    return Err(bad_arg);
                }
                let value = weft_wire::openflow::be_uint(&body[..bytes]);
                let mask =
                    if masked { weft_wire::openflow::be_uint(&body[bytes..]) } else { full_mask(bytes as u32 * 8) };
                CtExec::Set { field, value: value & mask, mask }
            }
            _ => return Err(bad_arg),
        };
        let dst = match e {
            CtExec::Load { dst, .. } | CtExec::Move { dst, .. } => dst.field,
            CtExec::Set { field, .. } => field,
        };
        if !ct_field(dst) {
            return Err((error::BAD_ACTION, error::BAD_SET_ARGUMENT));
        }
        if n == CT_EXEC_MAX || !ct.commit {
            return Err(bad_arg);
        }
        ct.exec[n] = Some(e);
        n += 1;
    }
    Ok(Action::Ct(ct))
}

fn nat_from(b: &[u8]) -> Result<Nat, OfError> {
    let bad = (error::BAD_ACTION, error::BAD_ARGUMENT);
    let flags = u16::from_be_bytes([b[8], b[9]]);
    let present = u16::from_be_bytes([b[10], b[11]]);
    let kind = match flags & (NAT_SRC | NAT_DST) {
        0 => NatKind::Reverse,
        NAT_SRC => NatKind::Src,
        NAT_DST => NatKind::Dst,
        _ => return Err(bad),
    };
    let mut at = 12;
    let mut take = |n: usize| -> Result<&[u8], OfError> {
        let s = b.get(at..at + n).ok_or(bad)?;
        at += n;
        Ok(s)
    };
    let mut addrs = None;
    if present & R_V4_MIN != 0 {
        let a: [u8; 4] = take(4)?.try_into().map_err(|_| bad)?;
        let z = if present & R_V4_MAX != 0 { take(4)?.try_into().map_err(|_| bad)? } else { a };
        addrs = Some((IpAddr::from(a), IpAddr::from(z)));
    } else if present & R_V6_MIN != 0 {
        let a: [u8; 16] = take(16)?.try_into().map_err(|_| bad)?;
        let z = if present & R_V6_MAX != 0 { take(16)?.try_into().map_err(|_| bad)? } else { a };
        addrs = Some((IpAddr::from(a), IpAddr::from(z)));
    }
    let mut ports = None;
    if present & R_PROTO_MIN != 0 {
        let p = u16::from_be_bytes(take(2)?.try_into().map_err(|_| bad)?);
        let q = if present & R_PROTO_MAX != 0 { u16::from_be_bytes(take(2)?.try_into().map_err(|_| bad)?) } else { p };
        ports = Some((p, q));
    }
    Ok(Nat {
        kind,
        addrs,
        ports,
        persistent: flags & NAT_PERSISTENT != 0,
        hash: flags & NAT_HASH != 0,
        random: flags & NAT_RANDOM != 0,
    })
}
