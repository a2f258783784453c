//! Between OpenFlow 1.3 FLOW_MODs / flow statistics and weft's [`Flow`]s: OXM matches to [`Match`]es and
//! back, instructions and actions to [`Action`]s and back. Unsupported fields or actions give the OpenFlow
//! error (type, code) to answer with.

use crate::flow::{Action, Ctx, Field, Flow, Match, SetField, SubField, OFPP_LOCAL};
use weft_wire::openflow::{act, error, inst, oxm, port, put_oxm, OxmTlv, Tlv};
use weft_wire::EthernetAddress;

/// An OpenFlow error: (type, code).
pub type OfError = (u16, u16);

pub use encode::set_openflow15;
pub(crate) use encode::{put_action, put_action_list, put_nx, put_nx_dec_ttl, put_nx_mpls};
mod widths;
pub(crate) use widths::{narrow, split_regs};
use widths::{oxm_write, sub_field};

const BAD_FIELD: OfError = (error::BAD_MATCH, error::BAD_FIELD);
/// BAD_INSTRUCTION / UNSUP_INST: a second meter instruction (OpenFlow 1.3 has no DUP_INST code).
const DUP_INST: u16 = 1;

pub(crate) fn field_of(t: &OxmTlv<'_>) -> Result<(Field, u32), OfError> {
    // (field, value width in bits)
    Ok(match (t.class, t.field) {
        (oxm::CLASS_BASIC, oxm::IN_PORT) => (Field::InPort, 32),
        (oxm::CLASS_BASIC, oxm::ETH_DST) => (Field::DlDst, 48),
        (oxm::CLASS_BASIC, oxm::ETH_SRC) => (Field::DlSrc, 48),
        (oxm::CLASS_BASIC, oxm::ETH_TYPE) => (Field::DlType, 16),
        (oxm::CLASS_BASIC, oxm::VLAN_VID) => (Field::VlanTci, 16),
        (oxm::CLASS_BASIC, oxm::VLAN_PCP) => (Field::VlanTci, 8),
        (oxm::CLASS_BASIC, oxm::IP_DSCP) => (Field::NwTos, 8),
        (oxm::CLASS_BASIC, oxm::IP_PROTO) => (Field::NwProto, 8),
        (oxm::CLASS_BASIC, oxm::IPV4_SRC) => (Field::NwSrc, 32),
        (oxm::CLASS_BASIC, oxm::IPV4_DST) => (Field::NwDst, 32),
        (oxm::CLASS_BASIC, oxm::TCP_SRC | oxm::UDP_SRC | oxm::SCTP_SRC) => (Field::TpSrc, 16),
        (oxm::CLASS_BASIC, oxm::TCP_DST | oxm::UDP_DST | oxm::SCTP_DST) => (Field::TpDst, 16),
        (oxm::CLASS_BASIC, oxm::ICMPV4_TYPE | oxm::ICMPV6_TYPE) => (Field::IcmpType, 8),
        (oxm::CLASS_BASIC, oxm::ICMPV4_CODE | oxm::ICMPV6_CODE) => (Field::IcmpCode, 8),
        (oxm::CLASS_BASIC, oxm::ARP_OP) => (Field::ArpOp, 16),
        (oxm::CLASS_BASIC, oxm::ARP_SPA) => (Field::ArpSpa, 32),
        (oxm::CLASS_BASIC, oxm::ARP_TPA) => (Field::ArpTpa, 32),
        (oxm::CLASS_BASIC, oxm::IPV6_SRC) => (Field::Ipv6Src, 128),
        (oxm::CLASS_BASIC, oxm::IPV6_DST) => (Field::Ipv6Dst, 128),
        (oxm::CLASS_BASIC, oxm::TUNNEL_ID) => (Field::TunId, 64),
        (oxm::CLASS_NXM1, oxm::NX_TUN_IPV4_SRC) => (Field::TunSrc, 32),
        (oxm::CLASS_NXM1, oxm::NX_TUN_IPV4_DST) => (Field::TunDst, 32),
        (oxm::CLASS_NXM1, n @ 0..=15) => (Field::Reg(n), 32),
        (oxm::CLASS_NXM1, oxm::NX_PKT_MARK) => (Field::PktMark, 32),
        (oxm::CLASS_NXM1, n @ 111..=114) => (Field::XXReg(n - oxm::NX_XXREG0), 128),
        (oxm::CLASS_PKT_REG, n @ 0..=7) => (Field::XReg(n), 64),
        (oxm::CLASS_BASIC, oxm::METADATA) => (Field::Metadata, 64),
        (oxm::CLASS_BASIC, oxm::IP_ECN) => (Field::NwEcn, 8),
        (oxm::CLASS_NXM1, oxm::NX_IP_TTL) => (Field::NwTtl, 8),
        (oxm::CLASS_BASIC, oxm::IPV6_FLABEL) => (Field::Ipv6Label, 32),
        (oxm::CLASS_BASIC, oxm::ARP_SHA | oxm::IPV6_ND_SLL) => (Field::ArpSha, 48),
        (oxm::CLASS_BASIC, oxm::ARP_THA | oxm::IPV6_ND_TLL) => (Field::ArpTha, 48),
        (oxm::CLASS_BASIC, oxm::IPV6_ND_TARGET) => (Field::NdTarget, 128),
        (oxm::CLASS_BASIC, oxm::MPLS_LABEL) => (Field::MplsLabel, 32),
        (oxm::CLASS_BASIC, oxm::MPLS_TC) => (Field::MplsTc, 8),
        (oxm::CLASS_BASIC, oxm::MPLS_BOS) => (Field::MplsBos, 8),
        (oxm::CLASS_NXM1, oxm::NX_MPLS_TTL) => (Field::MplsTtl, 8),
        (oxm::CLASS_NXM1, oxm::NX_IP_FRAG) => (Field::NwFrag, 8),
        (oxm::CLASS_NXM1, oxm::NX_TCP_FLAGS) => (Field::TcpFlags, 16),
        (oxm::CLASS_NXM1, oxm::NX_CONJ_ID) => (Field::ConjId, 32),
        (oxm::CLASS_NXM1, oxm::NX_CT_STATE) => (Field::CtState, 32),
        (oxm::CLASS_NXM1, oxm::NX_CT_ZONE) => (Field::CtZone, 16),
        (oxm::CLASS_NXM1, oxm::NX_CT_MARK) => (Field::CtMark, 32),
        (oxm::CLASS_NXM1, oxm::NX_CT_LABEL) => (Field::CtLabel, 128),
        (oxm::CLASS_NXM1, oxm::NX_CT_NW_PROTO) => (Field::CtNwProto, 8),
        (oxm::CLASS_NXM1, oxm::NX_CT_NW_SRC) => (Field::CtNwSrc, 32),
        (oxm::CLASS_NXM1, oxm::NX_CT_NW_DST) => (Field::CtNwDst, 32),
        (oxm::CLASS_NXM1, oxm::NX_CT_IPV6_SRC) => (Field::CtIpv6Src, 128),
        (oxm::CLASS_NXM1, oxm::NX_CT_IPV6_DST) => (Field::CtIpv6Dst, 128),
        (oxm::CLASS_NXM1, oxm::NX_CT_TP_SRC) => (Field::CtTpSrc, 16),
        (oxm::CLASS_NXM1, oxm::NX_CT_TP_DST) => (Field::CtTpDst, 16),
        // Variable length: any length OVS allows, the bytes before the last 16 zero (weft's limit).
        (oxm::CLASS_NXM1, n @ oxm::NX_TUN_METADATA0..=103) => {
            let significant = |b: &[u8]| b.len() <= 124 && b.iter().rev().skip(16).all(|x| *x == 0);
            if t.value.is_empty() || !significant(t.value) || !t.mask.is_none_or(significant) {
                return Err((error::BAD_MATCH, error::BAD_VALUE));
            }
            (Field::TunMetadata(n - oxm::NX_TUN_METADATA0), 128)
        }
        _ => return Err(BAD_FIELD),
    })
}

/// The field an NXM/OXM header names in `load`/`move` actions (OpenFlow 1.0's NXM_OF names too).
pub(crate) fn field_of_header(h: u32) -> Option<Field> {
    let (class, field) = ((h >> 16) as u16, ((h >> 9) & 0x7f) as u8);
    use oxm::*;
    Some(match (class, field) {
        (CLASS_NXM0, 0) => Field::InPort,
        (CLASS_NXM0, 1) => Field::DlDst,
        (CLASS_NXM0, 2) => Field::DlSrc,
        (CLASS_NXM0, 3) => Field::DlType,
        (CLASS_NXM0, 4) => Field::VlanTci,
        (CLASS_NXM0, 5) => Field::NwTos,
        (CLASS_NXM0, 6) => Field::NwProto,
        (CLASS_NXM0, 7) => Field::NwSrc,
        (CLASS_NXM0, 8) => Field::NwDst,
        (CLASS_NXM0, 9 | 11) => Field::TpSrc,
        (CLASS_NXM0, 10 | 12) => Field::TpDst,
        (CLASS_NXM0, 15) => Field::ArpOp,
        (CLASS_NXM0, 16) => Field::ArpSpa,
        (CLASS_NXM0, 17) => Field::ArpTpa,
        (CLASS_NXM1, 16) => Field::TunId,
        (CLASS_NXM1, 19) => Field::Ipv6Src,
        (CLASS_NXM1, 20) => Field::Ipv6Dst,
        (CLASS_BASIC, TUNNEL_ID) => Field::TunId,
        (CLASS_BASIC, ETH_SRC) => Field::DlSrc,
        (CLASS_BASIC, ETH_DST) => Field::DlDst,
        (CLASS_BASIC, IPV4_SRC) => Field::NwSrc,
        (CLASS_BASIC, IPV4_DST) => Field::NwDst,
        // Any length: OVS writes 124 in headers, weft 16.
        (CLASS_NXM1, n @ NX_TUN_METADATA0..=103) => Field::TunMetadata(n - NX_TUN_METADATA0),
        _ => field_of(&OxmTlv { class, field, value: &[], mask: None }).ok()?.0,
    })
}

/// The NXM/OXM header (class, field, bytes) weft writes for a field in `load`/`move`/`set_field`.
pub(crate) fn header_of(f: Field) -> Option<(u16, u8, usize)> {
    use oxm::*;
    Some(match f {
        Field::Reg(n) => (CLASS_NXM1, NX_REG0 + n, 4),
        Field::XReg(n) => (CLASS_PKT_REG, n, 8),
        Field::XXReg(n) => (CLASS_NXM1, NX_XXREG0 + n, 16),
        Field::Metadata => (CLASS_BASIC, METADATA, 8),
        Field::PktMark => (CLASS_NXM1, NX_PKT_MARK, 4),
        Field::TunId => (CLASS_NXM1, 16, 8),
        Field::InPort => (CLASS_NXM0, 0, 2),
        Field::DlDst => (CLASS_NXM0, 1, 6),
        Field::DlSrc => (CLASS_NXM0, 2, 6),
        Field::DlType => (CLASS_NXM0, 3, 2),
        Field::VlanTci => (CLASS_NXM0, 4, 2),
        Field::NwTos => (CLASS_NXM0, 5, 1),
        Field::NwProto => (CLASS_NXM0, 6, 1),
        Field::NwSrc => (CLASS_NXM0, 7, 4),
        Field::NwDst => (CLASS_NXM0, 8, 4),
        Field::TpSrc => (CLASS_NXM0, 9, 2),
        Field::TpDst => (CLASS_NXM0, 10, 2),
        Field::NwEcn => (CLASS_NXM1, 28, 1),
        Field::NwTtl => (CLASS_NXM1, NX_IP_TTL, 1),
        Field::Ipv6Label => (CLASS_NXM1, 27, 4),
        Field::ArpSha => (CLASS_NXM1, 17, 6),
        Field::ArpTha => (CLASS_NXM1, 18, 6),
        Field::NdTarget => (CLASS_NXM1, 23, 16),
        Field::MplsLabel => (CLASS_BASIC, MPLS_LABEL, 4),
        Field::MplsTc => (CLASS_BASIC, MPLS_TC, 1),
        Field::MplsBos => (CLASS_BASIC, MPLS_BOS, 1),
        Field::MplsTtl => (CLASS_NXM1, NX_MPLS_TTL, 1),
        Field::NwFrag => (CLASS_NXM1, NX_IP_FRAG, 1),
        Field::ArpOp => (CLASS_NXM0, 15, 2),
        Field::ArpSpa => (CLASS_NXM0, 16, 4),
        Field::ArpTpa => (CLASS_NXM0, 17, 4),
        Field::Ipv6Src => (CLASS_NXM1, 19, 16),
        Field::Ipv6Dst => (CLASS_NXM1, 20, 16),
        Field::TunSrc => (CLASS_NXM1, NX_TUN_IPV4_SRC, 4),
        Field::TunDst => (CLASS_NXM1, NX_TUN_IPV4_DST, 4),
        Field::TcpFlags => (CLASS_NXM1, NX_TCP_FLAGS, 2),
        Field::ConjId => (CLASS_NXM1, NX_CONJ_ID, 4),
        Field::CtState => (CLASS_NXM1, NX_CT_STATE, 4),
        Field::CtZone => (CLASS_NXM1, NX_CT_ZONE, 2),
        Field::CtMark => (CLASS_NXM1, NX_CT_MARK, 4),
        Field::CtLabel => (CLASS_NXM1, NX_CT_LABEL, 16),
        Field::CtNwProto => (CLASS_NXM1, NX_CT_NW_PROTO, 1),
        Field::CtNwSrc => (CLASS_NXM1, NX_CT_NW_SRC, 4),
        Field::CtNwDst => (CLASS_NXM1, NX_CT_NW_DST, 4),
        Field::CtIpv6Src => (CLASS_NXM1, NX_CT_IPV6_SRC, 16),
        Field::CtIpv6Dst => (CLASS_NXM1, NX_CT_IPV6_DST, 16),
        Field::CtTpSrc => (CLASS_NXM1, NX_CT_TP_SRC, 2),
        Field::CtTpDst => (CLASS_NXM1, NX_CT_TP_DST, 2),
        // Variable length in OVS; weft's 16 bytes in headers and values (OVS takes any length up to 124).
        Field::TunMetadata(n) => (CLASS_NXM1, NX_TUN_METADATA0 + n, 16),
        Field::IcmpType | Field::IcmpCode => return None,
    })
}

/// A 32-bit NXM header.
fn nxm_header(class: u16, field: u8, bytes: usize, masked: bool) -> u32 {
    u32::from(class) << 16
        | u32::from(field) << 9
        | u32::from(masked) << 8
        | (bytes * if masked { 2 } else { 1 }) as u32
}

/// A match TLV's value and mask (all ones when it has none), checked against the field's width in bits.
pub(crate) fn tlv_value_mask(t: &OxmTlv<'_>, bits: u32) -> Result<(u128, u128), OfError> {
    if t.class == oxm::CLASS_NXM1 && (oxm::NX_TUN_METADATA0..=103).contains(&t.field) {
        // Right-aligned, as OVS reads variable-length fields ([`field_of`] checked the length); no mask: all
        // of it.
        let tail = |b: &[u8]| weft_wire::openflow::be_uint(&b[b.len().saturating_sub(16)..]);
        return Ok((tail(t.value), t.mask.map_or(u128::MAX, tail)));
    }
    if t.value.len() * 8 != bits as usize {
        return Err((error::BAD_MATCH, error::BAD_VALUE));
    }
    let full = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
    Ok((weft_wire::openflow::be_uint(t.value), t.mask.map_or(full, weft_wire::openflow::be_uint)))
}

/// The matches of an OXM list.
pub fn matches_from_oxm(tlvs: &[OxmTlv<'_>]) -> Result<Vec<Match>, OfError> {
    let mut out: Vec<Match> = Vec::new();
    for t in tlvs {
        let (field, bits) = field_of(t)?;
        let (mut value, mut mask) = tlv_value_mask(t, bits)?;
        match field {
            // OpenFlow's DSCP is the TOS byte's top 6 bits; weft (like ovs-ofctl's nw_tos) keeps the byte.
            Field::NwTos => {
                value <<= 2;
                mask = (mask << 2) & 0xfc;
            }
            // VLAN_PCP: the priority of a tagged frame (its TCI's top three bits).
            Field::VlanTci if t.field == oxm::VLAN_PCP => {
                if t.mask.is_some() || value > 7 {
                    return Err((error::BAD_MATCH, error::BAD_VALUE));
                }
                value = 0x1000 | value << 13;
                mask = 0xf000;
            }
            Field::VlanTci if t.mask.is_none() => mask = 0x1fff,
            // ARP_OP is not maskable; weft keeps the opcode's low byte, as its flow syntax does.
            Field::ArpOp if t.mask.is_some() => return Err((error::BAD_MATCH, error::BAD_MASK)),
            Field::ArpOp => mask = 0xff,
            Field::NwEcn
            | Field::NwTtl
            | Field::Ipv6Label
            | Field::MplsLabel
            | Field::MplsTc
            | Field::MplsTtl
            | Field::NwFrag
            | Field::MplsBos => {
                (value, mask) = narrow(field, value, t.mask.map(weft_wire::openflow::be_uint))?;
            }
            _ => {}
        }
        for m in split_regs(field, value, mask) {
            if crate::flow::merge_vlan(&mut out, m) {
                continue;
            }
            if out.iter().any(|x| x.field == m.field) {
                return Err((error::BAD_MATCH, 9)); // DUP_FIELD
            }
            out.push(m);
        }
    }
    Ok(out)
}

fn get(matches: &[Match], f: Field) -> Option<&Match> {
    matches.iter().find(|m| m.field == f)
}

/// The OXM field of a port match for IP protocol `proto`: TCP's, UDP's or SCTP's.
fn l4_field(proto: Option<u8>, tcp: u8, udp: u8, sctp: u8) -> u8 {
    match proto {
        Some(17) => udp,
        Some(132) => sctp,
        _ => tcp,
    }
}

/// Writes `matches` as OXM TLVs, prerequisites first.
pub fn put_matches(out: &mut Vec<u8>, matches: &[Match]) {
    let dl_type = get(matches, Field::DlType).map(|m| m.value as u16);
    let proto = get(matches, Field::NwProto).map(|m| m.value as u8);
    let v6 = dl_type == Some(0x86dd);
    let regs = (0..16).map(Field::Reg);
    let ct = [
        Field::CtState,
        Field::CtZone,
        Field::CtMark,
        Field::CtLabel,
        Field::CtNwProto,
        Field::CtNwSrc,
        Field::CtNwDst,
        Field::CtIpv6Src,
        Field::CtIpv6Dst,
        Field::CtTpSrc,
        Field::CtTpDst,
    ];
    let tcp = [Field::TcpFlags, Field::ConjId];
    let order = [Field::PktMark, Field::Metadata]
        .into_iter()
        .chain(regs)
        .chain(ct)
        .chain([
            Field::InPort,
            Field::DlDst,
            Field::DlSrc,
            Field::DlType,
            Field::VlanTci,
            Field::NwTos,
            Field::NwProto,
            Field::NwSrc,
            Field::NwDst,
            Field::TpSrc,
            Field::TpDst,
            Field::IcmpType,
            Field::IcmpCode,
            Field::ArpOp,
            Field::ArpSpa,
            Field::ArpTpa,
            Field::Ipv6Src,
            Field::Ipv6Dst,
            Field::Ipv6Label,
            Field::NwEcn,
            Field::NwTtl,
            Field::NwFrag,
            Field::ArpSha,
            Field::ArpTha,
            Field::NdTarget,
            Field::MplsLabel,
            Field::MplsTc,
            Field::MplsTtl,
            Field::MplsBos,
            Field::TunId,
            Field::TunSrc,
            Field::TunDst,
        ])
        .chain((0..crate::flow::TUN_METADATA_FIELDS).map(Field::TunMetadata))
        .chain(tcp);
    for f in order {
        let Some(m) = get(matches, f) else { continue };
        let (class, code, bytes) = match f {
            Field::InPort => (oxm::CLASS_BASIC, oxm::IN_PORT, 4),
            Field::DlDst => (oxm::CLASS_BASIC, oxm::ETH_DST, 6),
            Field::DlSrc => (oxm::CLASS_BASIC, oxm::ETH_SRC, 6),
            Field::DlType => (oxm::CLASS_BASIC, oxm::ETH_TYPE, 2),
            Field::VlanTci => (oxm::CLASS_BASIC, oxm::VLAN_VID, 2),
            Field::NwTos => (oxm::CLASS_BASIC, oxm::IP_DSCP, 1),
            Field::NwProto => (oxm::CLASS_BASIC, oxm::IP_PROTO, 1),
            Field::NwSrc => (oxm::CLASS_BASIC, oxm::IPV4_SRC, 4),
            Field::NwDst => (oxm::CLASS_BASIC, oxm::IPV4_DST, 4),
            Field::TpSrc => (oxm::CLASS_BASIC, l4_field(proto, oxm::TCP_SRC, oxm::UDP_SRC, oxm::SCTP_SRC), 2),
            Field::TpDst => (oxm::CLASS_BASIC, l4_field(proto, oxm::TCP_DST, oxm::UDP_DST, oxm::SCTP_DST), 2),
            Field::IcmpType => (oxm::CLASS_BASIC, if v6 { oxm::ICMPV6_TYPE } else { oxm::ICMPV4_TYPE }, 1),
            Field::IcmpCode => (oxm::CLASS_BASIC, if v6 { oxm::ICMPV6_CODE } else { oxm::ICMPV4_CODE }, 1),
            Field::ArpOp => (oxm::CLASS_BASIC, oxm::ARP_OP, 2),
            Field::ArpSpa => (oxm::CLASS_BASIC, oxm::ARP_SPA, 4),
            Field::ArpTpa => (oxm::CLASS_BASIC, oxm::ARP_TPA, 4),
            Field::Ipv6Src => (oxm::CLASS_BASIC, oxm::IPV6_SRC, 16),
            Field::Ipv6Dst => (oxm::CLASS_BASIC, oxm::IPV6_DST, 16),
            Field::TunId => (oxm::CLASS_BASIC, oxm::TUNNEL_ID, 8),
            Field::TunSrc => (oxm::CLASS_NXM1, oxm::NX_TUN_IPV4_SRC, 4),
            Field::TunDst => (oxm::CLASS_NXM1, oxm::NX_TUN_IPV4_DST, 4),
            Field::NwEcn => (oxm::CLASS_BASIC, oxm::IP_ECN, 1),
            Field::NwTtl => (oxm::CLASS_NXM1, oxm::NX_IP_TTL, 1),
            Field::Ipv6Label => (oxm::CLASS_BASIC, oxm::IPV6_FLABEL, 4),
            Field::ArpSha => (oxm::CLASS_BASIC, if v6 { oxm::IPV6_ND_SLL } else { oxm::ARP_SHA }, 6),
            Field::ArpTha => (oxm::CLASS_BASIC, if v6 { oxm::IPV6_ND_TLL } else { oxm::ARP_THA }, 6),
            Field::NdTarget => (oxm::CLASS_BASIC, oxm::IPV6_ND_TARGET, 16),
            Field::MplsLabel => (oxm::CLASS_BASIC, oxm::MPLS_LABEL, 4),
            Field::MplsTc => (oxm::CLASS_BASIC, oxm::MPLS_TC, 1),
            Field::MplsBos => (oxm::CLASS_BASIC, oxm::MPLS_BOS, 1),
            Field::MplsTtl => (oxm::CLASS_NXM1, oxm::NX_MPLS_TTL, 1),
            Field::NwFrag => (oxm::CLASS_NXM1, oxm::NX_IP_FRAG, 1),
            // As long as the value needs (and the mask, when there is one); none when it is all of it.
            Field::TunMetadata(n) => {
                let len = |v: u128| (128 - v.leading_zeros()).div_ceil(8).max(1) as usize;
                let masked = m.mask != u128::MAX;
                let bytes = if masked { len(m.value).max(len(m.mask)) } else { len(m.value) };
                let (vb, mb) = (m.value.to_be_bytes(), m.mask.to_be_bytes());
                let mask = masked.then_some(&mb[16 - bytes..]);
                put_oxm(out, oxm::CLASS_NXM1, oxm::NX_TUN_METADATA0 + n, &vb[16 - bytes..], mask);
                continue;
            }
            // Nicira's fields, by their NXM headers.
            _ => {
                let Some(h) = header_of(f) else { continue };
                h
            }
        };
        let (mut value, mut mask) = (m.value, m.mask);
        if f == Field::VlanTci && mask & 0xe000 == 0xe000 && value & 0x1000 != 0 {
            // A tagged frame's priority goes as VLAN_PCP after the VLAN_VID (present bit, and the ID if
            // matched).
            let vid_mask = mask & 0x1fff;
            let vb = ((value & 0x1fff) as u16).to_be_bytes();
            let mb = (vid_mask as u16).to_be_bytes();
            put_oxm(out, class, code, &vb, if vid_mask == 0x1fff { None } else { Some(&mb) });
            put_oxm(out, oxm::CLASS_BASIC, oxm::VLAN_PCP, &[(value >> 13) as u8 & 7], None);
            continue;
        }
        if f == Field::NwTos {
            value >>= 2;
            mask = (mask >> 2) & 0x3f;
        }
        let full: u128 = if bytes == 16 { u128::MAX } else { (1u128 << (bytes * 8)) - 1 };
        let vb = &value.to_be_bytes()[16 - bytes..];
        let mb = &mask.to_be_bytes()[16 - bytes..];
        // A VLAN match of the ID with the present bit is OpenFlow's unmasked form; ARP_OP is never masked.
        let exact = mask == full
            || (f == Field::VlanTci && mask == 0x1fff)
            || (f == Field::NwTos && mask == 0x3f)
            || (f == Field::NwEcn && mask == 3)
            || (f == Field::Ipv6Label && mask == 0xf_ffff)
            || (f == Field::NwFrag && mask == 3)
            || matches!(f, Field::MplsLabel | Field::MplsTc | Field::MplsTtl | Field::MplsBos)
            || f == Field::ArpOp;
        put_oxm(out, class, code, vb, if exact { None } else { Some(mb) });
    }
}

pub(crate) fn reserved_port(p: u32) -> Action {
    match p {
        port::IN_PORT => Action::InPort,
        port::NORMAL => Action::Normal,
        port::FLOOD => Action::Flood,
        port::ALL => Action::All,
        port::CONTROLLER => Action::Controller,
        port::LOCAL => Action::Output(OFPP_LOCAL),
        n => Action::Output(n),
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn full_mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// The actions of a PACKET_OUT: those of a flow, and output to OFPP_TABLE (the flow tables, from table 0).
pub fn packet_out_actions(actions: &[u8]) -> Result<Vec<Action>, OfError> {
    let list = weft_wire::openflow::parse_tlvs(actions, "action").map_err(|_| (error::BAD_ACTION, 1))?;
    let mut out = Vec::new();
    for a in &list {
        if a.kind == act::OUTPUT && a.body.len() >= 4 && be32(a.body, 0) == port::TABLE {
            out.push(Action::Resubmit { port: None, table: Some(0) });
        } else {
            actions_from(std::slice::from_ref(a), &mut out)?;
        }
    }
    Ok(out)
}

pub(crate) fn actions_from(list: &[Tlv<'_>], out: &mut Vec<Action>) -> Result<(), OfError> {
    let bad = (error::BAD_ACTION, error::BAD_ACTION_TYPE);
    for a in list {
        let b = a.body;
        match a.kind {
            act::OUTPUT if b.len() >= 6 => {
                let p = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                if p == port::ANY || p == port::TABLE || (p > port::MAX && p < port::IN_PORT) {
                    return Err((error::BAD_ACTION, error::BAD_OUT_PORT));
                }
                let max_len = u16::from_be_bytes([b[4], b[5]]);
                out.push(match reserved_port(p) {
                    Action::Controller if max_len != 0xffff => Action::ControllerMaxLen(max_len),
                    Action::Controller => Action::Controller,
                    _ if max_len != 0 => Action::OutputMaxLen(p, max_len),
                    a => a,
                });
            }
            act::PUSH_VLAN if b.len() >= 2 => out.push(Action::PushVlan(u16::from_be_bytes([b[0], b[1]]))),
            act::SET_QUEUE if b.len() >= 4 => out.push(Action::SetQueue(be32(b, 0))),
            act::POP_VLAN => out.push(Action::StripVlan),
            act::SET_NW_TTL if !b.is_empty() => out.push(Action::SetNwTtl(b[0])),
            act::DEC_NW_TTL => out.push(Action::DecTtl),
            act::GROUP if b.len() >= 4 => {
                let g = be32(b, 0);
                if g > crate::group::MAX {
                    return Err((error::BAD_ACTION, error::BAD_OUT_GROUP));
                }
                out.push(Action::Group(g))
            }
            act::PUSH_MPLS if b.len() >= 2 => {
                let t = u16::from_be_bytes([b[0], b[1]]);
                if !matches!(t, 0x8847 | 0x8848) {
                    return Err((error::BAD_ACTION, error::BAD_ARGUMENT));
                }
                out.push(Action::PushMpls(t))
            }
            act::POP_MPLS if b.len() >= 2 => out.push(Action::PopMpls(u16::from_be_bytes([b[0], b[1]]))),
            act::SET_MPLS_TTL if !b.is_empty() => out.push(Action::SetMplsTtl(b[0])),
            act::DEC_MPLS_TTL => out.push(Action::DecMplsTtl),
            // OpenFlow 1.5's set_field with a mask: a write of those bits, as NXAST_REG_LOAD2's.
            act::SET_FIELD if b.len() >= 4 && b[2] & 1 != 0 => oxm_write(be32(b, 0), &b[4..], out)?,
            // n_bits, src_offset, dst_offset, pad, the two fields' headers.
            act::COPY_FIELD if b.len() >= 16 => {
                let n = u16::from_be_bytes([b[0], b[1]]);
                let src = sub_field(be32(b, 8), u16::from_be_bytes([b[2], b[3]]), n)?;
                let dst = sub_field(be32(b, 12), u16::from_be_bytes([b[4], b[5]]), n)?;
                out.push(Action::Move { src, dst });
            }
            act::METER if b.len() >= 4 => out.push(Action::Meter(be32(b, 0))),
            act::SET_FIELD => {
                // One OXM TLV, then padding.
                if b.len() < 4 || 4 + usize::from(b[3]) > b.len() {
                    return Err((error::BAD_ACTION, error::BAD_SET_ARGUMENT));
                }
                let t = OxmTlv {
                    class: u16::from_be_bytes([b[0], b[1]]),
                    field: b[2] >> 1,
                    value: &b[4..4 + usize::from(b[3])],
                    mask: None,
                };
                let v = weft_wire::openflow::be_uint(t.value);
                let mac = || EthernetAddress::from_bytes(&(v as u64).to_be_bytes()[2..]);
                if let Some(a) = crate::flow::set_field_from_oxm(t.class, t.field, v, t.value.len()) {
                    out.push(a?);
                    continue;
                }
                out.push(match (t.class, t.field) {
                    (oxm::CLASS_BASIC, oxm::VLAN_VID) => Action::ModVlanVid((v & 0x0fff) as u16),
                    (oxm::CLASS_BASIC, oxm::ETH_SRC) => Action::SetField(SetField::EthSrc(mac())),
                    (oxm::CLASS_BASIC, oxm::ETH_DST) => Action::SetField(SetField::EthDst(mac())),
                    (oxm::CLASS_BASIC, oxm::TUNNEL_ID) => Action::SetField(SetField::TunId(v as u64)),
                    (oxm::CLASS_NXM1, oxm::NX_TUN_IPV4_DST) => {
                        Action::SetField(SetField::TunDst(std::net::Ipv4Addr::from(v as u32).into()))
                    }
                    _ => match field_of(&t) {
                        Ok((field @ Field::TunMetadata(_), bits)) => {
                            let (value, _) = tlv_value_mask(&t, bits)?;
                            Action::SetReg { field, value, mask: u128::MAX }
                        }
                        Ok((
                            field @ (Field::Reg(_)
                            | Field::XReg(_)
                            | Field::XXReg(_)
                            | Field::Metadata
                            | Field::PktMark),
                            bits,
                        )) if t.value.len() * 8 == bits as usize => {
                            Action::SetReg { field, value: v, mask: full_mask(bits) }
                        }
                        _ => return Err((error::BAD_ACTION, error::BAD_SET_TYPE)),
                    },
                });
            }
            act::EXPERIMENTER if b.len() >= 6 => {
                let vendor = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let sub = u16::from_be_bytes([b[4], b[5]]);
                if vendor != act::NX_VENDOR {
                    return Err((error::BAD_ACTION, error::BAD_EXPERIMENTER));
                }
                let port_of = |p: u16| {
                    (p != 0xfff8).then_some(if p >= 0xff00 { u32::from(p) | 0xffff_0000 } else { u32::from(p) })
                };
                match sub {
                    act::NXAST_RESUBMIT if b.len() >= 8 => {
                        out.push(Action::Resubmit { port: port_of(u16::from_be_bytes([b[6], b[7]])), table: None })
                    }
                    act::NXAST_RESUBMIT_TABLE if b.len() >= 9 => out.push(Action::Resubmit {
                        port: port_of(u16::from_be_bytes([b[6], b[7]])),
                        table: (b[8] != 255).then_some(b[8]),
                    }),
                    act::NXAST_SET_TUNNEL if b.len() >= 12 => {
                        out.push(Action::SetTunnel(u64::from(u32::from_be_bytes([b[8], b[9], b[10], b[11]]))))
                    }
                    act::NXAST_SET_TUNNEL64 if b.len() >= 20 => {
                        out.push(Action::SetTunnel(weft_wire::openflow::read_u64(b, 12)))
                    }
                    act::NXAST_REG_LOAD if b.len() >= 20 => {
                        let ofs_nbits = u16::from_be_bytes([b[6], b[7]]);
                        let dst = sub_field(be32(b, 8), ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1)?;
                        if !dst.field.writable() {
                            return Err((error::BAD_ACTION, error::BAD_SET_TYPE));
                        }
                        let value = u128::from(weft_wire::openflow::read_u64(b, 12));
                        if dst.nbits < 64 && value >> dst.nbits != 0 {
                            return Err((error::BAD_ACTION, error::BAD_SET_ARGUMENT));
                        }
                        out.push(Action::Load { dst, value });
                    }
                    // ofs_nbits, source, max_len.
                    act::NXAST_OUTPUT_REG if b.len() >= 14 => {
                        let ofs_nbits = u16::from_be_bytes([b[6], b[7]]);
                        let src = sub_field(be32(b, 8), ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1)?;
                        out.push(Action::OutputReg(src));
                    }
                    act::NXAST_EXIT => out.push(Action::Exit),
                    act::NXAST_FIN_TIMEOUT if b.len() >= 10 => out.push(Action::FinTimeout {
                        idle: u16::from_be_bytes([b[6], b[7]]),
                        hard: u16::from_be_bytes([b[8], b[9]]),
                    }),
                    act::NXAST_CONJUNCTION => learn::decode_conjunction(&b[6..], out)?,
                    act::NXAST_LEARN | act::NXAST_LEARN2 => {
                        learn::decode_learn(&b[6..], sub == act::NXAST_LEARN2, out)?
                    }
                    act::NXAST_DEC_TTL => out.push(Action::DecTtl),
                    act::NXAST_PUSH_MPLS if b.len() >= 8 => {
                        let t = u16::from_be_bytes([b[6], b[7]]);
                        if !matches!(t, 0x8847 | 0x8848) {
                            return Err((error::BAD_ACTION, error::BAD_ARGUMENT));
                        }
                        out.push(Action::PushMpls(t))
                    }
                    act::NXAST_POP_MPLS if b.len() >= 8 => out.push(Action::PopMpls(u16::from_be_bytes([b[6], b[7]]))),
                    act::NXAST_SET_MPLS_TTL if b.len() >= 7 => out.push(Action::SetMplsTtl(b[6])),
                    act::NXAST_DEC_MPLS_TTL => out.push(Action::DecMplsTtl),
                    act::NXAST_NOTE => {
                        out.push(crate::flow::note(&b[6..]).ok_or((error::BAD_ACTION, error::BAD_ARGUMENT))?);
                    }
                    act::NXAST_POP_QUEUE => out.push(Action::PopQueue),
                    act::NXAST_SET_QUEUE if b.len() >= 12 => out.push(Action::SetQueue(be32(b, 8))),
                    act::NXAST_REG_MOVE if b.len() >= 20 => {
                        let n = u16::from_be_bytes([b[6], b[7]]);
                        let src = sub_field(be32(b, 12), u16::from_be_bytes([b[8], b[9]]), n)?;
                        let dst = sub_field(be32(b, 16), u16::from_be_bytes([b[10], b[11]]), n)?;
                        if !dst.field.writable() {
                            return Err((error::BAD_ACTION, error::BAD_SET_TYPE));
                        }
                        out.push(Action::Move { src, dst });
                    }
                    act::NXAST_BUNDLE | act::NXAST_BUNDLE_LOAD if b.len() >= 28 => {
                        // algorithm, fields, basis, member type, n_members, ofs_nbits, dst, zero, members.
                        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
                        let bad = (error::BAD_ACTION, error::BAD_ARGUMENT);
                        let hrw = match be16(6) {
                            0 => false,
                            1 => true,
                            _ => return Err(bad),
                        };
                        let fields = crate::flow::bundle::HashFields::from_wire(be16(8)).ok_or(bad)?;
                        let n = usize::from(be16(16));
                        if be32(b, 12) != 2 || n > crate::flow::bundle::MAX_MEMBERS || b.len() < 28 + 2 * n {
                            return Err(bad);
                        }
                        let dst = if sub == act::NXAST_BUNDLE_LOAD {
                            let ofs_nbits = be16(18);
                            let d = sub_field(be32(b, 20), ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1)?;
                            if !d.field.writable() {
                                return Err((error::BAD_ACTION, error::BAD_SET_TYPE));
                            }
                            Some(d)
                        } else {
                            None
                        };
                        let mut bundle = crate::flow::bundle::Bundle {
                            fields,
                            basis: be16(10),
                            hrw,
                            members: [0; crate::flow::bundle::MAX_MEMBERS],
                            n: n as u8,
                            dst,
                        };
                        for i in 0..n {
                            bundle.members[i] = crate::of10::port32(be16(28 + 2 * i));
                        }
                        out.push(Action::Bundle(bundle));
                    }
                    act::NXAST_MULTIPATH if b.len() >= 28 => {
                        // fields, basis, pad, algorithm, max_link, arg, pad, ofs_nbits, dst.
                        let be16 = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
                        let bad = (error::BAD_ACTION, error::BAD_ARGUMENT);
                        let fields = crate::flow::bundle::HashFields::from_wire(be16(6)).ok_or(bad)?;
                        let algorithm = be16(12);
                        if algorithm > 3 {
                            return Err(bad);
                        }
                        let ofs_nbits = be16(22);
                        let dst = sub_field(be32(b, 24), ofs_nbits >> 6, (ofs_nbits & 0x3f) + 1)?;
                        if !dst.field.writable() {
                            return Err((error::BAD_ACTION, error::BAD_SET_TYPE));
                        }
                        out.push(Action::Multipath(crate::flow::bundle::Multipath {
                            fields,
                            basis: be16(8),
                            algorithm,
                            n_links: u32::from(be16(14)) + 1,
                            arg: be32(b, 16),
                            dst,
                        }));
                    }
                    // probability, collector set, domain, point; then (2 and 3) port and (3) direction.
                    act::NXAST_SAMPLE | act::NXAST_SAMPLE2 | act::NXAST_SAMPLE3 if b.len() >= 20 => {
                        let probability = u16::from_be_bytes([b[6], b[7]]);
                        let long = sub != act::NXAST_SAMPLE;
                        if probability == 0 || (long && b.len() < 23) {
                            return Err((error::BAD_ACTION, error::BAD_ARGUMENT));
                        }
                        let port = if long { u16::from_be_bytes([b[20], b[21]]) } else { 0xffff };
                        let direction = if sub == act::NXAST_SAMPLE3 { b[22] } else { 0 };
                        if direction > 2 {
                            return Err((error::BAD_ACTION, error::BAD_ARGUMENT));
                        }
                        out.push(Action::Sample(crate::flow::Sample {
                            probability,
                            collector_set_id: be32(b, 8),
                            obs_domain_id: be32(b, 12),
                            obs_point_id: be32(b, 16),
                            sampling_port: (port != 0xffff).then(|| crate::of10::port32(port)),
                            direction,
                        }));
                    }
                    act::NXAST_OUTPUT_TRUNC if b.len() >= 12 => {
                        let p = crate::of10::port32(u16::from_be_bytes([b[6], b[7]]));
                        let n = be32(b, 8);
                        if n < 14 {
                            return Err((error::BAD_ACTION, error::BAD_ARGUMENT));
                        }
                        out.push(Action::OutputTrunc(p, n));
                    }
                    act::NXAST_STACK_PUSH | act::NXAST_STACK_POP if b.len() >= 14 => {
                        // ofs, field header, n_bits.
                        let n = u16::from_be_bytes([b[12], b[13]]);
                        let sf = sub_field(be32(b, 8), u16::from_be_bytes([b[6], b[7]]), n)?;
                        if sub == act::NXAST_STACK_PUSH {
                            out.push(Action::StackPush(sf));
                        } else if sf.field.writable() {
                            out.push(Action::StackPop(sf));
                        } else {
                            return Err((error::BAD_ACTION, error::BAD_SET_TYPE));
                        }
                    }
                    act::NXAST_REG_LOAD2 if b.len() >= 10 => oxm_write(be32(b, 6), &b[10..], out)?,
                    act::NXAST_CT if b.len() >= 20 => out.push(ct::ct_from(b)?),
                    act::NXAST_CT_CLEAR => out.push(Action::CtClear),
                    // max_len, controller ID, reason, a byte of padding.
                    act::NXAST_CONTROLLER if b.len() >= 11 => {
                        let (max_len, id) = (u16::from_be_bytes([b[6], b[7]]), u16::from_be_bytes([b[8], b[9]]));
                        let reason = b[10];
                        if usize::from(reason) >= crate::flow::PACKET_IN_REASONS.len() {
                            return Err((error::BAD_ACTION, error::BAD_ARGUMENT));
                        }
                        out.push(match (reason, id, max_len) {
                            (1, 0, 0xffff) => Action::Controller,
                            (1, 0, m) => Action::ControllerMaxLen(m),
                            _ => Action::ControllerEx { max_len, reason, id },
                        });
                    }
                    // Six bytes of padding, then the actions the clone holds.
                    act::NXAST_CLONE if b.len() >= 12 => {
                        let nested =
                            weft_wire::openflow::parse_tlvs(&b[12..], "action").map_err(|_| (error::BAD_ACTION, 1))?;
                        let mut inner = Vec::new();
                        actions_from(&nested, &mut inner)?;
                        push_clone(out, inner)?;
                    }
                    // NAT outside a `ct` action (OVS refuses it too).
                    act::NXAST_NAT => return Err((error::BAD_ACTION, error::BAD_ARGUMENT)),
                    _ => return Err((error::BAD_ACTION, error::BAD_EXP_TYPE)),
                }
            }
            _ => return Err(bad),
        }
    }
    Ok(())
}

/// The actions of an instruction list.
pub fn actions_from_instructions(list: &[Tlv<'_>]) -> Result<Vec<Action>, OfError> {
    let mut out = Vec::new();
    let mut goto = None;
    let mut metadata = None;
    let mut clear = false;
    let mut written: Option<Vec<Action>> = None;
    for i in list {
        match i.kind {
            // The meter runs first: it leads the list.
            inst::METER if i.body.len() >= 4 => {
                let m = u32::from_be_bytes([i.body[0], i.body[1], i.body[2], i.body[3]]);
                if m == 0 || m > crate::meter::MAX {
                    return Err((error::METER_MOD_FAILED, error::meter::INVALID_METER));
                }
                if out.iter().any(|a| matches!(a, Action::Meter(_))) {
                    return Err((error::BAD_INSTRUCTION, DUP_INST));
                }
                out.insert(0, Action::Meter(m));
            }
            inst::APPLY_ACTIONS if i.body.len() >= 4 => {
                let acts =
                    weft_wire::openflow::parse_tlvs(&i.body[4..], "action").map_err(|_| (error::BAD_ACTION, 1))?;
                actions_from(&acts, &mut out)?;
            }
            inst::GOTO_TABLE if !i.body.is_empty() => goto = Some(i.body[0]),
            inst::WRITE_METADATA if i.body.len() >= 20 => {
                let value = weft_wire::openflow::read_u64(i.body, 4);
                let mask = weft_wire::openflow::read_u64(i.body, 12);
                metadata = Some(Action::WriteMetadata { value: value & mask, mask });
            }
            inst::CLEAR_ACTIONS => clear = true,
            inst::WRITE_ACTIONS if i.body.len() >= 4 => {
                if written.is_some() {
                    return Err((error::BAD_INSTRUCTION, DUP_INST));
                }
                let acts =
                    weft_wire::openflow::parse_tlvs(&i.body[4..], "action").map_err(|_| (error::BAD_ACTION, 1))?;
                let mut set = Vec::new();
                actions_from(&acts, &mut set)?;
                // OVS: an action that has no place in an action set is OFPBAC_BAD_TYPE.
                if set.iter().any(|a| crate::flow::action_set_class(a).is_none()) || set.len() > 255 {
                    return Err((error::BAD_ACTION, error::BAD_ACTION_TYPE));
                }
                written = Some(set);
            }
            _ => return Err((error::BAD_INSTRUCTION, error::UNKNOWN_INST)),
        }
    }
    if clear {
        out.push(Action::ClearActions);
    }
    if let Some(set) = written {
        out.push(Action::WriteActions(set.len() as u8));
        out.extend(set);
    }
    out.extend(metadata);
    if let Some(t) = goto {
        out.push(Action::GotoTable(t));
    }
    Ok(out)
}

/// Writes the instructions for `actions` (an APPLY_ACTIONS list, then GOTO_TABLE if any).
/// `ctx`: what the flow matches (some fields' encodings depend on it: a TCP or a UDP port).
pub fn put_instructions(out: &mut Vec<u8>, actions: &[Action], ctx: Ctx) {
    // OpenFlow 1.5: the meter is the first action of the list.
    let meter15 = match actions.first() {
        Some(&Action::Meter(m)) if encode::openflow15() => Some(m),
        _ => None,
    };
    if let (Some(Action::Meter(m)), None) = (actions.first(), meter15) {
        out.extend_from_slice(&inst::METER.to_be_bytes());
        out.extend_from_slice(&8u16.to_be_bytes());
        out.extend_from_slice(&m.to_be_bytes());
    }
    // The action set's actions (after a WriteActions marker) go into their own instruction.
    let (actions, written): (&[Action], &[Action]) =
        match actions.iter().position(|a| matches!(a, Action::WriteActions(_))) {
            Some(i) => {
                let Action::WriteActions(n) = actions[i] else { unreachable!() };
                let end = (i + 1 + usize::from(n)).min(actions.len());
                // What follows the set (write_metadata, goto_table) is looked for in the whole list below.
                (actions, &actions[i + 1..end])
            }
            None => (actions, &[]),
        };
    let in_set = |a: &Action| written.iter().any(|w| std::ptr::eq(w, a));
    let apply: Vec<Action> = actions
        .iter()
        .filter(|a| !in_set(a))
        .filter(|a| {
            !matches!(
                a,
                Action::GotoTable(_)
                    | Action::Drop
                    | Action::WriteMetadata { .. }
                    | Action::ClearActions
                    | Action::Meter(_)
            )
        })
        .copied()
        .collect();
    if !apply.is_empty() || meter15.is_some() {
        let at = out.len();
        out.extend_from_slice(&inst::APPLY_ACTIONS.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        if let Some(m) = meter15 {
            out.extend_from_slice(&act::METER.to_be_bytes());
            out.extend_from_slice(&8u16.to_be_bytes());
            out.extend_from_slice(&m.to_be_bytes());
        }
        put_action_list(out, &apply, ctx);
        let len = (out.len() - at) as u16;
        out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    if actions.contains(&Action::ClearActions) {
        out.extend_from_slice(&inst::CLEAR_ACTIONS.to_be_bytes());
        out.extend_from_slice(&[0, 8, 0, 0, 0, 0]);
    }
    if actions.iter().any(|a| matches!(a, Action::WriteActions(_))) {
        let at = out.len();
        out.extend_from_slice(&inst::WRITE_ACTIONS.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        put_action_list(out, written, ctx);
        let len = (out.len() - at) as u16;
        out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    if let Some(&Action::WriteMetadata { value, mask }) =
        actions.iter().find(|a| matches!(a, Action::WriteMetadata { .. }))
    {
        out.extend_from_slice(&inst::WRITE_METADATA.to_be_bytes());
        out.extend_from_slice(&[0, 24, 0, 0, 0, 0]);
        out.extend_from_slice(&value.to_be_bytes());
        out.extend_from_slice(&mask.to_be_bytes());
    }
    if let Some(Action::GotoTable(t)) = actions.iter().find(|a| matches!(a, Action::GotoTable(_))) {
        out.extend_from_slice(&inst::GOTO_TABLE.to_be_bytes());
        out.extend_from_slice(&[0, 8, *t, 0, 0, 0]);
    }
}

/// A flow from a FLOW_MOD's fields, match and instructions.
pub fn flow_from_flow_mod(fm: &weft_wire::openflow::FlowMod, matches: Vec<Match>, actions: Vec<Action>) -> Flow {
    let mut f = Flow {
        table: fm.table_id,
        priority: fm.priority,
        cookie: fm.cookie,
        cookie_mask: fm.cookie_mask,
        idle_timeout: fm.idle_timeout,
        hard_timeout: fm.hard_timeout,
        match_text: String::new(),
        matches,
        actions_text: String::new(),
        has_actions: true,
        has_priority: true,
        has_table: fm.table_id != 0xff,
        actions,
        send_flow_rem: fm.flags & 1 != 0,
        check_overlap: fm.flags & 2 != 0,
        reset_counts: fm.flags & 4 != 0,
        importance: fm.importance,
    };
    f.match_text = crate::flow::format_matches(&f.matches);
    f.actions_text = f.to_string().split_once(" actions=").map(|x| x.1.to_string()).unwrap_or_default();
    f
}

/// OpenFlow 1.0's decoders over a message body: its match, an NXM match, an action list (each from the
/// start, and after a FLOW_MOD's fixed part); what decodes must encode again and decode to the same.
fn fuzz_decode_of10(body: &[u8]) {
    use crate::of10;
    if let Ok(ms) = of10::matches_from_of10(body) {
        let mut out = Vec::new();
        if of10::put_of10_match(&mut out, &ms) {
            assert_eq!(of10::matches_from_of10(&out).map(|m| m.len()), Ok(ms.len()), "1.0 match round trip");
        }
    }
    for at in [0, 8, 32, 40, 48, 64] {
        let b = body.get(at..).unwrap_or_default();
        if let Ok(ms) = of10::matches_from_nxm(b) {
            let mut out = Vec::new();
            of10::put_nxm(&mut out, &ms);
            assert_eq!(of10::matches_from_nxm(&out).map(|m| m.len()), Ok(ms.len()), "NXM round trip");
        }
        if let Ok(acts) = of10::actions_from_of10(b) {
            let mut out = Vec::new();
            of10::put_actions_of10(&mut out, &acts);
            assert!(of10::actions_from_of10(&out).is_ok(), "what weft encodes it decodes");
        }
    }
}

/// Runs every OpenFlow decoder weftd uses over one message (the `control` fuzz target calls it).
pub fn fuzz_decode(m: &[u8]) {
    use weft_wire::openflow as of;
    let Ok(h) = of::Header::parse(m) else { return };
    let body = m.get(of::HEADER_LEN..usize::from(h.length).min(m.len())).unwrap_or_default();
    if h.version == crate::of10::VERSION {
        fuzz_decode_of10(body);
    }
    if let Ok(fm) = of::FlowMod::parse(body) {
        if let Ok((tlvs, mlen)) = of::parse_match(&body[of::FLOW_MOD_LEN..]) {
            if let (Ok(matches), Ok(insts)) = (
                matches_from_oxm(&tlvs),
                of::parse_tlvs(body.get(of::FLOW_MOD_LEN + mlen..).unwrap_or_default(), "instruction"),
            ) {
                if let Ok(actions) = actions_from_instructions(&insts) {
                    // What is accepted must encode back and decode to the same.
                    let flow = flow_from_flow_mod(&fm, matches, actions);
                    let mut out = Vec::new();
                    of::put_match(&mut out, |o| put_matches(o, &flow.matches));
                    let (again, _) = of::parse_match(&out).expect("weft's own match parses");
                    assert_eq!(matches_from_oxm(&again).map(|m| m.len()), Ok(flow.matches.len()));
                    put_instructions(&mut out, &flow.actions, Ctx::of(&flow.matches));
                    let _ = flow.to_string();
                }
            }
        }
    }
    if body.len() >= 8 {
        let _ = of::parse_match(&body[8..]);
    }
    if let Ok(po) = of::PacketOut::parse(body) {
        let _ = packet_out_actions(po.actions);
    }
}

mod ct;
mod encode;
mod learn;
pub(crate) use learn::put_learn;
mod nested;
pub(crate) use nested::{act_nxast_clone, push_clone};
#[cfg(test)]
mod tests;
