//! OpenFlow 1.0 (wire version 0x01) with the Nicira extensions `ovs-ofctl` uses with it, which is what plain
//! `ovs-ofctl` (no `-O`) speaks: the fixed 40-byte `ofp_match` of OFPT_FLOW_MOD and OFPST_FLOW, NXM matches
//! (NXT_FLOW_MOD, NXST_FLOW: the same TLVs as OXM, in Nicira's classes), and OpenFlow 1.0's actions beside
//! the NXAST ones (`load`, `move`, `resubmit`, …), whose encodings are those of [`crate::ofp`].
//!
//! Errors are given as OpenFlow 1.3's (type, code) like everywhere else; [`error_code`] says them in 1.0's
//! numbering.

use crate::flow::{Action, Field, Match, SetField, OFPP_LOCAL};
use crate::ofp::OfError;
use weft_wire::openflow::{act, error, oxm, put_oxm, OxmTlv};
use weft_wire::EthernetAddress;

pub const VERSION: u8 = 0x01;

/// OpenFlow 1.0's message types where they differ from 1.3's.
pub mod msg {
    pub const VENDOR: u8 = 4;
    pub const FLOW_REMOVED: u8 = 11;
    pub const PORT_MOD: u8 = 15;
    pub const STATS_REQUEST: u8 = 16;
    pub const STATS_REPLY: u8 = 17;
    pub const BARRIER_REQUEST: u8 = 18;
    pub const BARRIER_REPLY: u8 = 19;
}

/// Statistics types (OFPST_*), and Nicira's (NXST_*) inside OFPST_VENDOR.
pub mod st {
    pub const DESC: u16 = 0;
    pub const FLOW: u16 = 1;
    pub const AGGREGATE: u16 = 2;
    pub const TABLE: u16 = 3;
    pub const PORT: u16 = 4;
    pub const PORT_DESC: u16 = 13;
    pub const VENDOR: u16 = 0xffff;
    pub const NXST_FLOW: u32 = 0;
    pub const NXST_AGGREGATE: u32 = 1;
}

/// Nicira vendor message subtypes (NXT_*).
pub mod nxt {
    pub const ROLE_REQUEST: u32 = 10;
    pub const SET_FLOW_FORMAT: u32 = 12;
    pub const FLOW_MOD: u32 = 13;
    pub const FLOW_MOD_TABLE_ID: u32 = 15;
    pub const SET_PACKET_IN_FORMAT: u32 = 16;
    pub const SET_ASYNC_CONFIG: u32 = 19;
    pub const SET_CONTROLLER_ID: u32 = 20;
}

/// OpenFlow 1.0 action types.
mod a10 {
    pub const OUTPUT: u16 = 0;
    pub const SET_VLAN_VID: u16 = 1;
    pub const STRIP_VLAN: u16 = 3;
    pub const SET_DL_SRC: u16 = 4;
    pub const SET_DL_DST: u16 = 5;
}

/// NXAST_WRITE_METADATA: `write_metadata` as an action (OpenFlow 1.0 has no instructions).
const NXAST_WRITE_METADATA: u16 = 22;

/// An OpenFlow 1.3 (type, code) in OpenFlow 1.0's numbering (1.0 has no BAD_MATCH or BAD_INSTRUCTION:
/// those become FLOW_MOD_FAILED / UNSUPPORTED, as refusals of the flow).
pub fn error_code((kind, code): OfError) -> OfError {
    const FLOW_MOD_FAILED: u16 = 3;
    const UNSUPPORTED: u16 = 5;
    match kind {
        error::HELLO_FAILED => (0, code),
        // Nicira's extended codes (NXBRC_*, NXTTMFC_*: 256 and up) are 1.0 codes already.
        // IS_SLAVE (10): OpenFlow 1.0's EPERM, as OVS says it.
        error::BAD_REQUEST if code == 10 => (1, 5),
        error::BAD_REQUEST => (1, if code <= 8 || code >= 256 { code } else { 1 }),
        error::BAD_ACTION => (
            2,
            match code {
                error::BAD_OUT_PORT => 4,
                error::BAD_EXPERIMENTER => 2, // BAD_VENDOR
                error::BAD_EXP_TYPE => 3,     // BAD_VENDOR_TYPE
                // BAD_SET_TYPE, BAD_SET_LEN, BAD_SET_ARGUMENT: BAD_ARGUMENT.
                13..=15 => 5,
                1 => 1,
                _ => 0,
            },
        ),
        error::FLOW_MOD_FAILED if code == error::BAD_COMMAND => (FLOW_MOD_FAILED, 4),
        error::FLOW_MOD_FAILED if code == error::OVERLAP => (FLOW_MOD_FAILED, 1),
        // OpenFlow 1.0's PORT_MOD_FAILED: BAD_PORT and BAD_HW_ADDR only.
        error::PORT_MOD_FAILED => (4, code.min(1)),
        _ => (FLOW_MOD_FAILED, UNSUPPORTED),
    }
}

/// An OpenFlow 1.0 port number (16 bits, reserved ones from 0xff00) as the 32-bit number weft keeps.
pub fn port32(p: u16) -> u32 {
    if p >= 0xff00 {
        u32::from(p) | 0xffff_0000
    } else {
        u32::from(p)
    }
}

/// A 32-bit port number in OpenFlow 1.0's 16 bits.
pub fn port16(p: u32) -> u16 {
    if p >= 0xffff_ff00 {
        p as u16
    } else {
        p.min(0xfeff) as u16
    }
}

// ---- ofp_match (OpenFlow 1.0) ----

mod fw {
    pub const IN_PORT: u32 = 1 << 0;
    pub const DL_VLAN: u32 = 1 << 1;
    pub const DL_SRC: u32 = 1 << 2;
    pub const DL_DST: u32 = 1 << 3;
    pub const DL_TYPE: u32 = 1 << 4;
    pub const NW_PROTO: u32 = 1 << 5;
    pub const TP_SRC: u32 = 1 << 6;
    pub const TP_DST: u32 = 1 << 7;
    pub const NW_SRC_SHIFT: u32 = 8;
    pub const NW_DST_SHIFT: u32 = 14;
    pub const DL_VLAN_PCP: u32 = 1 << 20;
    pub const NW_TOS: u32 = 1 << 21;
}

/// Length of OpenFlow 1.0's `ofp_match`.
pub const MATCH_LEN: usize = 40;

fn mac_value(b: &[u8]) -> u128 {
    u128::from(EthernetAddress::from_bytes(b).as_u64())
}

/// The matches an OpenFlow 1.0 `ofp_match` says (what it leaves wildcarded is not matched).
pub fn matches_from_of10(m: &[u8]) -> Result<Vec<Match>, OfError> {
    if m.len() < MATCH_LEN {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let w = u32::from_be_bytes([m[0], m[1], m[2], m[3]]);
    let be16 = |at: usize| u16::from_be_bytes([m[at], m[at + 1]]);
    let be32 = |at: usize| u32::from_be_bytes([m[at], m[at + 1], m[at + 2], m[at + 3]]);
    let mut out: Vec<Match> = Vec::new();
    let add = |out: &mut Vec<Match>, field: Field, value: u128, mask: u128| {
        out.push(Match { field, value: value & mask, mask })
    };
    if w & fw::IN_PORT == 0 {
        add(&mut out, Field::InPort, u128::from(port32(be16(4))), 0xffff_ffff);
    }
    if w & fw::DL_SRC == 0 {
        add(&mut out, Field::DlSrc, mac_value(&m[6..12]), 0xffff_ffff_ffff);
    }
    if w & fw::DL_DST == 0 {
        add(&mut out, Field::DlDst, mac_value(&m[12..18]), 0xffff_ffff_ffff);
    }
    if w & fw::DL_VLAN == 0 {
        // 0xffff: no tag.
        match be16(18) {
            0xffff => add(&mut out, Field::VlanTci, 0, 0xffff),
            vid => add(&mut out, Field::VlanTci, u128::from(0x1000 | (vid & 0xfff)), 0x1fff),
        }
    }
    if w & fw::DL_VLAN_PCP == 0 && !(w & fw::DL_VLAN == 0 && be16(18) == 0xffff) {
        let pcp = Match { field: Field::VlanTci, value: 0x1000 | u128::from(m[20] & 7) << 13, mask: 0xf000 };
        if !crate::flow::merge_vlan(&mut out, pcp) {
            out.push(pcp);
        }
    }
    let dl_type = (w & fw::DL_TYPE == 0).then(|| be16(22));
    if let Some(t) = dl_type {
        add(&mut out, Field::DlType, u128::from(t), 0xffff);
    }
    let ip = matches!(dl_type, Some(0x0800));
    let arp = matches!(dl_type, Some(0x0806));
    let proto = (w & fw::NW_PROTO == 0 && (ip || arp)).then_some(m[25]);
    if let Some(p) = proto {
        add(&mut out, if arp { Field::ArpOp } else { Field::NwProto }, u128::from(p), 0xff);
    }
    if w & fw::NW_TOS == 0 && ip {
        add(&mut out, Field::NwTos, u128::from(m[24] & 0xfc), 0xfc);
    }
    for (shift, at, v4, a) in
        [(fw::NW_SRC_SHIFT, 28, Field::NwSrc, Field::ArpSpa), (fw::NW_DST_SHIFT, 32, Field::NwDst, Field::ArpTpa)]
    {
        let wild = (w >> shift) & 0x3f;
        if wild < 32 && (ip || arp) {
            let mask = u32::MAX << wild;
            add(&mut out, if arp { a } else { v4 }, u128::from(be32(at)), u128::from(mask));
        }
    }
    if ip && matches!(proto, Some(1 | 6 | 17 | 132)) {
        let (src, dst) =
            if proto == Some(1) { (Field::IcmpType, Field::IcmpCode) } else { (Field::TpSrc, Field::TpDst) };
        let full = if proto == Some(1) { 0xff } else { 0xffff };
        if w & fw::TP_SRC == 0 {
            add(&mut out, src, u128::from(be16(36)), full);
        }
        if w & fw::TP_DST == 0 {
            add(&mut out, dst, u128::from(be16(38)), full);
        }
    }
    Ok(out)
}

/// Writes `matches` as an OpenFlow 1.0 `ofp_match`, or returns false when they say more than it can (then the
/// flow needs NXM).
pub fn put_of10_match(out: &mut Vec<u8>, matches: &[Match]) -> bool {
    let mut m = [0u8; MATCH_LEN];
    // Everything wildcarded (the VLAN priority too) until a match says otherwise.
    let mut w: u32 = 0x3f_ffff & !(0x3f << fw::NW_SRC_SHIFT) & !(0x3f << fw::NW_DST_SHIFT) | fw::DL_VLAN_PCP;
    w |= 32 << fw::NW_SRC_SHIFT | 32 << fw::NW_DST_SHIFT;
    let full = |mm: &Match, bits: u32| mm.mask == (1u128 << bits) - 1;
    for x in matches {
        let ok = match x.field {
            Field::InPort if full(x, 32) => {
                w &= !fw::IN_PORT;
                m[4..6].copy_from_slice(&port16(x.value as u32).to_be_bytes());
                true
            }
            Field::DlSrc | Field::DlDst if full(x, 48) => {
                let at = if x.field == Field::DlSrc { 6 } else { 12 };
                w &= !(if x.field == Field::DlSrc { fw::DL_SRC } else { fw::DL_DST });
                m[at..at + 6].copy_from_slice(&(x.value as u64).to_be_bytes()[2..]);
                true
            }
            Field::VlanTci if x.mask == 0x1fff && x.value & 0x1000 != 0 => {
                w &= !fw::DL_VLAN;
                m[18..20].copy_from_slice(&((x.value & 0xfff) as u16).to_be_bytes());
                true
            }
            Field::VlanTci if x.mask == 0xf000 && x.value & 0x1000 != 0 => {
                w &= !fw::DL_VLAN_PCP;
                m[20] = (x.value >> 13) as u8;
                true
            }
            Field::VlanTci if x.mask == 0xffff && x.value & 0x1000 != 0 => {
                w &= !(fw::DL_VLAN | fw::DL_VLAN_PCP);
                m[18..20].copy_from_slice(&((x.value & 0xfff) as u16).to_be_bytes());
                m[20] = (x.value >> 13) as u8;
                true
            }
            Field::VlanTci if x.mask == 0xffff && x.value == 0 => {
                w &= !fw::DL_VLAN;
                m[18..20].copy_from_slice(&0xffffu16.to_be_bytes());
                true
            }
            Field::DlType => {
                w &= !fw::DL_TYPE;
                m[22..24].copy_from_slice(&(x.value as u16).to_be_bytes());
                true
            }
            Field::NwTos if x.mask == 0xfc => {
                w &= !fw::NW_TOS;
                m[24] = x.value as u8;
                true
            }
            Field::NwProto | Field::ArpOp => {
                w &= !fw::NW_PROTO;
                m[25] = x.value as u8;
                true
            }
            Field::NwSrc | Field::NwDst | Field::ArpSpa | Field::ArpTpa => {
                let mask = x.mask as u32;
                let ones = mask.leading_ones();
                if mask != u32::MAX.checked_shl(32 - ones).unwrap_or(0) {
                    false
                } else {
                    let (shift, at) = if matches!(x.field, Field::NwSrc | Field::ArpSpa) {
                        (fw::NW_SRC_SHIFT, 28)
                    } else {
                        (fw::NW_DST_SHIFT, 32)
                    };
                    w = (w & !(0x3f << shift)) | ((32 - ones) << shift);
                    m[at..at + 4].copy_from_slice(&(x.value as u32).to_be_bytes());
                    true
                }
            }
            Field::TpSrc | Field::IcmpType if full(x, if x.field == Field::TpSrc { 16 } else { 8 }) => {
                w &= !fw::TP_SRC;
                m[36..38].copy_from_slice(&(x.value as u16).to_be_bytes());
                true
            }
            Field::TpDst | Field::IcmpCode if full(x, if x.field == Field::TpDst { 16 } else { 8 }) => {
                w &= !fw::TP_DST;
                m[38..40].copy_from_slice(&(x.value as u16).to_be_bytes());
                true
            }
            _ => false,
        };
        if !ok {
            return false;
        }
    }
    m[0..4].copy_from_slice(&w.to_be_bytes());
    out.extend_from_slice(&m);
    true
}

// ---- NXM ----

/// The field an NXM TLV names, its width in bits, and whether it is OpenFlow 1.0's 16-bit in_port.
fn nxm_field(t: &OxmTlv<'_>) -> Result<(Field, u32), OfError> {
    use oxm::{CLASS_NXM0, CLASS_NXM1};
    Ok(match (t.class, t.field) {
        (CLASS_NXM0, 0) => (Field::InPort, 16),
        (CLASS_NXM0, 1) => (Field::DlDst, 48),
        (CLASS_NXM0, 2) => (Field::DlSrc, 48),
        (CLASS_NXM0, 3) => (Field::DlType, 16),
        (CLASS_NXM0, 4) => (Field::VlanTci, 16),
        (CLASS_NXM0, 5) => (Field::NwTos, 8),
        (CLASS_NXM0, 6) => (Field::NwProto, 8),
        (CLASS_NXM0, 7) => (Field::NwSrc, 32),
        (CLASS_NXM0, 8) => (Field::NwDst, 32),
        (CLASS_NXM0, 9 | 11) => (Field::TpSrc, 16),
        (CLASS_NXM0, 10 | 12) => (Field::TpDst, 16),
        (CLASS_NXM0, 13) | (CLASS_NXM1, 21) => (Field::IcmpType, 8),
        (CLASS_NXM0, 14) | (CLASS_NXM1, 22) => (Field::IcmpCode, 8),
        (CLASS_NXM0, 15) => (Field::ArpOp, 16),
        (CLASS_NXM0, 16) => (Field::ArpSpa, 32),
        (CLASS_NXM0, 17) => (Field::ArpTpa, 32),
        (CLASS_NXM1, 16) => (Field::TunId, 64),
        (CLASS_NXM1, 19) => (Field::Ipv6Src, 128),
        (CLASS_NXM1, 20) => (Field::Ipv6Dst, 128),
        (CLASS_NXM1, 28) => (Field::NwEcn, 8),
        (CLASS_NXM1, 27) => (Field::Ipv6Label, 32),
        (CLASS_NXM1, 17 | 24) => (Field::ArpSha, 48),
        (CLASS_NXM1, 18 | 25) => (Field::ArpTha, 48),
        (CLASS_NXM1, 23) => (Field::NdTarget, 128),
        _ => crate::ofp::field_of(t)?,
    })
}

/// The matches of an NXM match (`b`: its TLVs, without padding).
pub fn matches_from_nxm(b: &[u8]) -> Result<Vec<Match>, OfError> {
    let tlvs = weft_wire::openflow::parse_oxm_tlvs(b).map_err(|_| (error::BAD_MATCH, error::BAD_LEN))?;
    let mut out: Vec<Match> = Vec::new();
    for t in &tlvs {
        let (field, bits) = nxm_field(t)?;
        let (mut value, mut mask) = crate::ofp::tlv_value_mask(t, bits)?;
        match field {
            Field::InPort if t.mask.is_some() => return Err((error::BAD_MATCH, error::BAD_MASK)),
            Field::InPort => {
                value = u128::from(port32(value as u16));
                mask = 0xffff_ffff;
            }
            Field::ArpOp => {
                value &= 0xff;
                mask &= 0xff;
            }
            // ovs-ofctl's nw_tos is the TOS byte without ECN.
            Field::NwTos => mask &= 0xfc,
            Field::NwEcn | Field::NwTtl | Field::Ipv6Label => {
                (value, mask) = crate::ofp::narrow(field, value, t.mask.map(weft_wire::openflow::be_uint))?;
            }
            _ => {}
        }
        for m in crate::ofp::split_regs(field, value, mask) {
            if out.iter().any(|x| x.field == m.field) {
                return Err((error::BAD_MATCH, 9)); // DUP_FIELD
            }
            out.push(m);
        }
    }
    Ok(out)
}

/// Writes `matches` as NXM TLVs (no padding): Nicira's classes where they have the field.
pub fn put_nxm(out: &mut Vec<u8>, matches: &[Match]) {
    use oxm::{CLASS_NXM0, CLASS_NXM1};
    let get = |f: Field| matches.iter().find(|m| m.field == f);
    let proto = get(Field::NwProto).map(|m| m.value as u8);
    let v6 = get(Field::DlType).is_some_and(|m| m.value == 0x86dd);
    let mut sorted: Vec<&Match> = matches.iter().collect();
    // Prerequisites first: in_port, Ethernet, type, then the rest in weft's field order.
    sorted.sort_by_key(|m| match m.field {
        Field::InPort => 0,
        Field::DlDst | Field::DlSrc => 1,
        Field::DlType => 2,
        Field::VlanTci => 3,
        Field::NwProto => 4,
        _ => 5,
    });
    for m in sorted {
        // Where the protocol decides the header; otherwise the one `load` and `move` use.
        let (class, code, bytes) = match m.field {
            Field::TpSrc if proto == Some(17) => (CLASS_NXM0, 11, 2),
            Field::TpDst if proto == Some(17) => (CLASS_NXM0, 12, 2),
            Field::TpSrc if proto == Some(132) => (oxm::CLASS_BASIC, oxm::SCTP_SRC, 2),
            Field::TpDst if proto == Some(132) => (oxm::CLASS_BASIC, oxm::SCTP_DST, 2),
            Field::ArpSha if v6 => (CLASS_NXM1, 24, 6),
            Field::ArpTha if v6 => (CLASS_NXM1, 25, 6),
            Field::IcmpType if v6 => (CLASS_NXM1, 21, 1),
            Field::IcmpCode if v6 => (CLASS_NXM1, 22, 1),
            Field::IcmpType => (CLASS_NXM0, 13, 1),
            Field::IcmpCode => (CLASS_NXM0, 14, 1),
            f => match crate::ofp::header_of(f) {
                Some(h) => h,
                None => continue,
            },
        };
        let (mut value, mut mask) = (m.value, m.mask);
        if m.field == Field::InPort {
            value = u128::from(port16(value as u32));
            mask = 0xffff;
        }
        let full: u128 = if bytes == 16 { u128::MAX } else { (1u128 << (bytes * 8)) - 1 };
        let exact = mask & full == full
            || (m.field == Field::NwTos && mask == 0xfc)
            || (m.field == Field::NwEcn && mask == 3)
            || (m.field == Field::Ipv6Label && mask == 0xf_ffff)
            || m.field == Field::ArpOp;
        let vb = value.to_be_bytes();
        let mb = mask.to_be_bytes();
        put_oxm(out, class, code, &vb[16 - bytes..], if exact { None } else { Some(&mb[16 - bytes..]) });
    }
}

// ---- Actions ----

/// The actions of an OpenFlow 1.0 action list (its own and Nicira's).
pub fn actions_from_of10(b: &[u8]) -> Result<Vec<Action>, OfError> {
    let list = weft_wire::openflow::parse_tlvs(b, "action").map_err(|_| (error::BAD_ACTION, 1))?;
    let mut out = Vec::new();
    let mac = |b: &[u8]| EthernetAddress::from_bytes(&b[..6]);
    for a in &list {
        let b = a.body;
        match a.kind {
            a10::OUTPUT if b.len() >= 4 => {
                let p = port32(u16::from_be_bytes([b[0], b[1]]));
                let max_len = u16::from_be_bytes([b[2], b[3]]);
                out.push(match p {
                    0xffff_fff8 => Action::InPort,
                    0xffff_fffa => Action::Normal,
                    0xffff_fffb => Action::Flood,
                    0xffff_fffc => Action::All,
                    0xffff_fffd if max_len == 0xffff => Action::Controller,
                    0xffff_fffd => Action::ControllerMaxLen(max_len),
                    OFPP_LOCAL => Action::Output(OFPP_LOCAL),
                    0xffff_fff9 => Action::Resubmit { port: None, table: Some(0) },
                    p if p >= 0xffff_ff00 => return Err((error::BAD_ACTION, error::BAD_OUT_PORT)),
                    p => Action::Output(p),
                });
            }
            a10::SET_VLAN_VID if b.len() >= 2 => {
                let vid = u16::from_be_bytes([b[0], b[1]]);
                if vid > 4095 {
                    return Err((error::BAD_ACTION, error::BAD_SET_ARGUMENT));
                }
                out.push(Action::ModVlanVid(vid));
            }
            a10::STRIP_VLAN => out.push(Action::StripVlan),
            a10::SET_DL_SRC if b.len() >= 6 => out.push(Action::SetField(SetField::EthSrc(mac(b)))),
            a10::SET_DL_DST if b.len() >= 6 => out.push(Action::SetField(SetField::EthDst(mac(b)))),
            // vendor, subtype, 6 bytes of padding, metadata, mask.
            act::EXPERIMENTER if b.len() >= 28 && u16::from_be_bytes([b[4], b[5]]) == NXAST_WRITE_METADATA => {
                let value = weft_wire::openflow::read_u64(b, 12);
                let mask = weft_wire::openflow::read_u64(b, 20);
                out.push(Action::WriteMetadata { value: value & mask, mask });
            }
            // A clone holds OpenFlow 1.0 actions here (after vendor, subtype and six bytes of padding).
            act::EXPERIMENTER if b.len() >= 12 && u16::from_be_bytes([b[4], b[5]]) == crate::ofp::act_nxast_clone() => {
                crate::ofp::push_clone(&mut out, actions_from_of10(&b[12..])?)?
            }
            act::EXPERIMENTER => crate::ofp::actions_from(std::slice::from_ref(a), &mut out)?,
            _ => return Err((error::BAD_ACTION, error::BAD_ACTION_TYPE)),
        }
    }
    // OpenFlow 1.0 has no goto_table: OVS sends it as a resubmit to that table, after write_metadata.
    if let [.., Action::WriteMetadata { .. }, Action::Resubmit { port: None, table: Some(t) }] = out[..] {
        if let Some(last) = out.last_mut() {
            *last = Action::GotoTable(t);
        }
    }
    Ok(out)
}

fn put_output10(out: &mut Vec<u8>, port: u32, max_len: u16) {
    out.extend_from_slice(&a10::OUTPUT.to_be_bytes());
    out.extend_from_slice(&8u16.to_be_bytes());
    out.extend_from_slice(&port16(port).to_be_bytes());
    out.extend_from_slice(&max_len.to_be_bytes());
}

/// Writes `actions` as an OpenFlow 1.0 action list: 1.0's own where it has them, Nicira's for the rest
/// (`set_field` as NXAST_REG_LOAD, goto_table as a resubmit to that table, as OVS does).
pub fn put_actions_of10(out: &mut Vec<u8>, actions: &[Action]) {
    let mut skip = 0;
    for (i, a) in actions.iter().enumerate() {
        if skip > 0 {
            skip -= 1;
            continue;
        }
        match *a {
            // OpenFlow 1.0 has no action set: write_actions and what it writes are left out (as OVS does).
            Action::WriteActions(n) => skip = n,
            Action::Learn(l) => {
                let inner = &actions[i + 1..(i + 1 + usize::from(l.n)).min(actions.len())];
                crate::ofp::put_learn(out, &l, inner);
                skip = l.n;
            }
            Action::LearnSpec(_) => {}
            Action::Clone(n) => {
                let inner = &actions[i + 1..(i + 1 + usize::from(n)).min(actions.len())];
                let mut body = vec![0u8; 6];
                put_actions_of10(&mut body, inner);
                crate::ofp::put_nx(out, crate::ofp::act_nxast_clone(), &body);
                skip = n;
            }
            Action::Output(p) => put_output10(out, p, 0),
            Action::OutputMaxLen(..) => put_actions_of10(out, &[a.plain()]),
            Action::Local => put_output10(out, OFPP_LOCAL, 0),
            Action::Normal => put_output10(out, 0xffff_fffa, 0),
            Action::Flood => put_output10(out, 0xffff_fffb, 0),
            Action::All => put_output10(out, 0xffff_fffc, 0),
            Action::InPort => put_output10(out, 0xffff_fff8, 0),
            Action::Controller => put_output10(out, 0xffff_fffd, 0xffff),
            Action::ControllerMaxLen(n) => put_output10(out, 0xffff_fffd, n),
            Action::ControllerEx { .. } => crate::ofp::put_action(out, a),
            // OpenFlow 1.0 has no action set to clear (OVS leaves it out too).
            Action::Drop | Action::ClearActions => {}
            // As OVS writes them in 1.0: Nicira's dec_ttl, and a load into the TTL.
            Action::DecTtl => crate::ofp::put_nx_dec_ttl(out),
            // OpenFlow 1.0 has no groups (OVS cannot say them there either); a 1.0 reply leaves it out.
            // Nor meters (an OpenFlow 1.3 instruction; OVS leaves it out of 1.0 too).
            Action::Group(_) | Action::Meter(_) => {}
            Action::Ct(_) | Action::CtClear => crate::ofp::put_action(out, a),
            Action::PushMpls(_) | Action::PopMpls(_) | Action::SetMplsTtl(_) | Action::DecMplsTtl => {
                crate::ofp::put_nx_mpls(out, a)
            }
            Action::SetNwTtl(t) => {
                let dst = crate::flow::SubField { field: Field::NwTtl, ofs: 0, nbits: 8 };
                crate::ofp::put_action(out, &Action::Load { dst, value: u128::from(t) })
            }
            Action::SetReg { field, value, mask } if crate::flow::is_packet_set(field, mask) => {
                // A packet field's write: a load of the bits it writes (the DSCP's six, the priority's three).
                let (ofs, nbits) = (mask.trailing_zeros() as u16, mask.count_ones() as u16);
                let dst = crate::flow::SubField { field, ofs, nbits };
                crate::ofp::put_action(out, &Action::Load { dst, value: value >> ofs })
            }
            Action::ModVlanVid(v) | Action::SetField(SetField::VlanVid(v)) => {
                out.extend_from_slice(&[0, 1, 0, 8]);
                out.extend_from_slice(&v.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Action::StripVlan => out.extend_from_slice(&[0, 3, 0, 8, 0, 0, 0, 0]),
            // OpenFlow 1.0 cannot push a tag: mod_vlan_vid on an untagged frame adds one.
            Action::PushVlan(_) => {}
            Action::SetField(SetField::EthSrc(m)) | Action::SetField(SetField::EthDst(m)) => {
                let kind =
                    if matches!(a, Action::SetField(SetField::EthSrc(_))) { a10::SET_DL_SRC } else { a10::SET_DL_DST };
                out.extend_from_slice(&kind.to_be_bytes());
                out.extend_from_slice(&16u16.to_be_bytes());
                out.extend_from_slice(&m.0);
                out.extend_from_slice(&[0; 6]);
            }
            Action::SetField(SetField::TunId(v)) => crate::ofp::put_action(out, &Action::SetTunnel(v)),
            Action::SetField(SetField::TunDst(std::net::IpAddr::V4(ip))) => {
                let dst = crate::flow::SubField { field: Field::TunDst, ofs: 0, nbits: 32 };
                crate::ofp::put_action(out, &Action::Load { dst, value: u128::from(u32::from(ip)) });
            }
            Action::SetField(SetField::TunDst(_)) => {}
            Action::SetReg { field, value, .. } => {
                // NXAST_REG_LOAD carries 64 bits: wider registers go in 64-bit pieces.
                for l in crate::flow::loads(field, value, crate::ofp::full_mask(u32::from(field.bits()))) {
                    crate::ofp::put_action(out, &l);
                }
            }
            Action::GotoTable(t) => crate::ofp::put_action(out, &Action::Resubmit { port: None, table: Some(t) }),
            // As loads into the metadata: OVS, reading NXAST_WRITE_METADATA followed by the resubmit that stands
            // for goto_table, refuses the order (an instruction before an action).
            Action::WriteMetadata { value, mask } => {
                for l in crate::flow::loads(Field::Metadata, u128::from(value), u128::from(mask)) {
                    crate::ofp::put_action(out, &l);
                }
            }
            Action::SetTunnel(_)
            | Action::Resubmit { .. }
            | Action::Load { .. }
            | Action::Move { .. }
            | Action::StackPush(_)
            | Action::OutputTrunc(..)
            | Action::Sample(_)
            | Action::Bundle(_)
            | Action::Multipath(_)
            | Action::StackPop(_)
            | Action::OutputReg(_)
            | Action::Exit
            | Action::Conjunction { .. }
            | Action::FinTimeout { .. }
            | Action::Note { .. }
            | Action::PopQueue => crate::ofp::put_action(out, a),
            // OpenFlow 1.0's own set_queue is Nicira's.
            Action::SetQueue(q) => {
                out.extend_from_slice(&act::EXPERIMENTER.to_be_bytes());
                out.extend_from_slice(&16u16.to_be_bytes());
                out.extend_from_slice(&act::NX_VENDOR.to_be_bytes());
                out.extend_from_slice(&act::NXAST_SET_QUEUE.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&q.to_be_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(text: &str) -> crate::flow::Flow {
        crate::flow::parse(text, &|p| p.parse().ok()).unwrap()
    }

    #[test]
    fn nxm_and_of10_actions_round_trip() {
        for text in [
            "reg0=5,xreg1=0x500000006,metadata=0x5/0xf,pkt_mark=1,in_port=3,actions=load:1->reg1,set_field:2->reg3,\
             move:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15],set_field:3->xxreg1,output:2,LOCAL,controller:64,\
             write_metadata:0x5/0xff,goto_table:4",
            "tcp,nw_src=10.0.0.0/8,tp_dst=80,dl_vlan=5,actions=mod_vlan_vid:7,strip_vlan,set_field:00:00:00:00:00:02->eth_dst,\
             set_tunnel:5,resubmit(2,3),NORMAL",
            "udp6,ipv6_dst=2001:db8::/32,tp_src=53,tun_id=0x9/0xff,dl_vlan_pcp=3,actions=FLOOD,IN_PORT,ALL",
            "arp,arp_op=2,arp_tpa=192.0.2.1,actions=drop",
            "icmp6,icmp_type=135,actions=controller",
        ] {
            let f = flow(text);
            let mut m = Vec::new();
            put_nxm(&mut m, &f.matches);
            let back = matches_from_nxm(&m).unwrap();
            assert!(back.len() == f.matches.len() && f.matches.iter().all(|x| back.contains(x)), "{text}: {back:?}");
            let mut a = Vec::new();
            put_actions_of10(&mut a, &f.actions);
            let back = actions_from_of10(&a).unwrap();
            // goto_table travels as a resubmit to that table, as OVS sends it in OpenFlow 1.0.
            let want: Vec<Action> = f
                .actions
                .iter()
                .flat_map(|x| match *x {
                    Action::GotoTable(t) => vec![Action::Resubmit { port: None, table: Some(t) }],
                    // set_field becomes load (OVS prints it so with OpenFlow 1.0 too); LOCAL a port number.
                    Action::SetReg { field, value, mask } => crate::flow::loads(field, value, mask),
                    Action::WriteMetadata { value, mask } => {
                        crate::flow::loads(Field::Metadata, u128::from(value), u128::from(mask))
                    }
                    Action::Local => vec![Action::Output(OFPP_LOCAL)],
                    Action::SetField(SetField::TunId(v)) => vec![Action::SetTunnel(v)],
                    y => vec![y],
                })
                .collect();
            assert_eq!(back, want, "{text}");
        }
    }

    #[test]
    fn of10_match_says_what_it_can() {
        let f = flow("tcp,in_port=1,dl_src=02:00:00:00:00:01,nw_src=10.1.0.0/16,tp_dst=22,dl_vlan=9,dl_vlan_pcp=5");
        let mut m = Vec::new();
        assert!(put_of10_match(&mut m, &f.matches));
        assert_eq!(m.len(), MATCH_LEN);
        let back = matches_from_of10(&m).unwrap();
        assert!(back.len() == f.matches.len() && f.matches.iter().all(|x| back.contains(x)), "{back:?}");
        // A register or an IPv6 address needs NXM.
        assert!(!put_of10_match(&mut Vec::new(), &flow("reg0=1").matches));
        assert!(!put_of10_match(&mut Vec::new(), &flow("ipv6,ipv6_dst=2001:db8::1").matches));
        // Everything wildcarded matches everything.
        let mut all = vec![0u8; MATCH_LEN];
        all[0..4].copy_from_slice(&0x003f_ffffu32.to_be_bytes());
        assert_eq!(matches_from_of10(&all), Ok(vec![]));
        assert_eq!(port32(0xfffe), OFPP_LOCAL);
        assert_eq!(port16(OFPP_LOCAL), 0xfffe);
    }
}
