//! Between OpenFlow 1.3 FLOW_MODs / flow statistics and weft's [`Flow`]s: OXM matches to [`Match`]es and
//! back, instructions and actions to [`Action`]s and back. Unsupported fields or actions give the OpenFlow
//! error (type, code) to answer with.

use crate::flow::{Action, Field, Flow, Match, SetField, OFPP_LOCAL};
use weft_wire::openflow::{act, error, inst, oxm, port, put_oxm, OxmTlv, Tlv};
use weft_wire::EthernetAddress;

/// An OpenFlow error: (type, code).
pub type OfError = (u16, u16);

const BAD_FIELD: OfError = (error::BAD_MATCH, error::BAD_FIELD);

fn field_of(t: &OxmTlv<'_>) -> Result<(Field, u32), OfError> {
    // (field, value width in bits)
    Ok(match (t.class, t.field) {
        (oxm::CLASS_BASIC, oxm::IN_PORT) => (Field::InPort, 32),
        (oxm::CLASS_BASIC, oxm::ETH_DST) => (Field::DlDst, 48),
        (oxm::CLASS_BASIC, oxm::ETH_SRC) => (Field::DlSrc, 48),
        (oxm::CLASS_BASIC, oxm::ETH_TYPE) => (Field::DlType, 16),
        (oxm::CLASS_BASIC, oxm::VLAN_VID) => (Field::VlanTci, 16),
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
        _ => return Err(BAD_FIELD),
    })
}

/// The matches of an OXM list.
pub fn matches_from_oxm(tlvs: &[OxmTlv<'_>]) -> Result<Vec<Match>, OfError> {
    let mut out: Vec<Match> = Vec::new();
    for t in tlvs {
        let (field, bits) = field_of(t)?;
        if t.value.len() * 8 != bits as usize {
            return Err((error::BAD_MATCH, error::BAD_VALUE));
        }
        let full = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
        let mut value = weft_wire::openflow::be_uint(t.value);
        let mut mask = t.mask.map_or(full, weft_wire::openflow::be_uint);
        match field {
            // OpenFlow's DSCP is the TOS byte's top 6 bits; weft (like ovs-ofctl's nw_tos) keeps the byte.
            Field::NwTos => {
                value <<= 2;
                mask = (mask << 2) & 0xfc;
            }
            Field::VlanTci if t.mask.is_none() => mask = 0x1fff,
            // ARP_OP is not maskable; weft keeps the opcode's low byte, as its flow syntax does.
            Field::ArpOp if t.mask.is_some() => return Err((error::BAD_MATCH, error::BAD_MASK)),
            Field::ArpOp => mask = 0xff,
            _ => {}
        }
        if out.iter().any(|m| m.field == field) {
            return Err((error::BAD_MATCH, 9)); // DUP_FIELD
        }
        out.push(Match { field, value: value & mask, mask });
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
    let order = [
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
        Field::TunId,
        Field::TunSrc,
        Field::TunDst,
    ];
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
        };
        let (mut value, mut mask) = (m.value, m.mask);
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
            || f == Field::ArpOp;
        put_oxm(out, class, code, vb, if exact { None } else { Some(mb) });
    }
}

fn reserved_port(p: u32) -> Action {
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

fn actions_from(list: &[Tlv<'_>], out: &mut Vec<Action>) -> Result<(), OfError> {
    let bad = (error::BAD_ACTION, error::BAD_TYPE);
    for a in list {
        let b = a.body;
        match a.kind {
            act::OUTPUT if b.len() >= 6 => {
                let p = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                if p == port::ANY || (p > port::MAX && p < port::IN_PORT) {
                    return Err((error::BAD_ACTION, error::BAD_OUT_PORT));
                }
                let max_len = u16::from_be_bytes([b[4], b[5]]);
                out.push(match reserved_port(p) {
                    Action::Controller if max_len != 0xffff => Action::ControllerMaxLen(max_len),
                    a => a,
                });
            }
            act::PUSH_VLAN if b.len() >= 2 => out.push(Action::PushVlan(u16::from_be_bytes([b[0], b[1]]))),
            act::POP_VLAN => out.push(Action::StripVlan),
            act::SET_FIELD => {
                // One OXM TLV, then padding.
                if b.len() < 4 || 4 + usize::from(b[3]) > b.len() || b[2] & 1 != 0 {
                    return Err((error::BAD_ACTION, 14)); // BAD_SET_ARGUMENT
                }
                let t = OxmTlv {
                    class: u16::from_be_bytes([b[0], b[1]]),
                    field: b[2] >> 1,
                    value: &b[4..4 + usize::from(b[3])],
                    mask: None,
                };
                let v = weft_wire::openflow::be_uint(t.value);
                let mac = || EthernetAddress::from_bytes(&(v as u64).to_be_bytes()[2..]);
                out.push(match (t.class, t.field) {
                    (oxm::CLASS_BASIC, oxm::VLAN_VID) => Action::ModVlanVid((v & 0x0fff) as u16),
                    (oxm::CLASS_BASIC, oxm::ETH_SRC) => Action::SetField(SetField::EthSrc(mac())),
                    (oxm::CLASS_BASIC, oxm::ETH_DST) => Action::SetField(SetField::EthDst(mac())),
                    (oxm::CLASS_BASIC, oxm::TUNNEL_ID) => Action::SetTunnel(v as u64),
                    (oxm::CLASS_NXM1, oxm::NX_TUN_IPV4_DST) => {
                        Action::SetField(SetField::TunDst(std::net::Ipv4Addr::from(v as u32).into()))
                    }
                    _ => return Err((error::BAD_ACTION, 13)), // BAD_SET_TYPE
                });
            }
            act::EXPERIMENTER if b.len() >= 6 => {
                let vendor = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                let sub = u16::from_be_bytes([b[4], b[5]]);
                if vendor != act::NX_VENDOR {
                    return Err((error::BAD_ACTION, 3)); // BAD_EXPERIMENTER
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
                    _ => return Err((error::BAD_ACTION, 4)), // BAD_EXP_TYPE
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
    for i in list {
        match i.kind {
            inst::APPLY_ACTIONS if i.body.len() >= 4 => {
                let acts =
                    weft_wire::openflow::parse_tlvs(&i.body[4..], "action").map_err(|_| (error::BAD_ACTION, 1))?;
                actions_from(&acts, &mut out)?;
            }
            inst::GOTO_TABLE if !i.body.is_empty() => goto = Some(i.body[0]),
            inst::CLEAR_ACTIONS => {}
            _ => return Err((error::BAD_INSTRUCTION, error::UNKNOWN_INST)),
        }
    }
    if let Some(t) = goto {
        out.push(Action::GotoTable(t));
    }
    Ok(out)
}

/// Writes the instructions for `actions` (an APPLY_ACTIONS list, then GOTO_TABLE if any).
pub fn put_instructions(out: &mut Vec<u8>, actions: &[Action]) {
    let apply: Vec<&Action> = actions.iter().filter(|a| !matches!(a, Action::GotoTable(_) | Action::Drop)).collect();
    if !apply.is_empty() {
        let at = out.len();
        out.extend_from_slice(&inst::APPLY_ACTIONS.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        for a in apply {
            put_action(out, a);
        }
        let len = (out.len() - at) as u16;
        out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
    }
    if let Some(Action::GotoTable(t)) = actions.iter().find(|a| matches!(a, Action::GotoTable(_))) {
        out.extend_from_slice(&inst::GOTO_TABLE.to_be_bytes());
        out.extend_from_slice(&[0, 8, *t, 0, 0, 0]);
    }
}

fn put_output(out: &mut Vec<u8>, p: u32) {
    put_output_len(out, p, 0xffff);
}

fn put_output_len(out: &mut Vec<u8>, p: u32, max_len: u16) {
    out.extend_from_slice(&act::OUTPUT.to_be_bytes());
    out.extend_from_slice(&16u16.to_be_bytes());
    out.extend_from_slice(&p.to_be_bytes());
    out.extend_from_slice(&max_len.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
}

fn put_set_field(out: &mut Vec<u8>, class: u16, field: u8, value: &[u8]) {
    let at = out.len();
    out.extend_from_slice(&act::SET_FIELD.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    put_oxm(out, class, field, value, None);
    weft_wire::openflow::pad8(out, at);
    let len = (out.len() - at) as u16;
    out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
}

fn put_nx(out: &mut Vec<u8>, sub: u16, rest: &[u8]) {
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

fn put_action(out: &mut Vec<u8>, a: &Action) {
    match *a {
        Action::Output(OFPP_LOCAL) | Action::Local => put_output(out, port::LOCAL),
        Action::Output(p) => put_output(out, p),
        Action::Normal => put_output(out, port::NORMAL),
        Action::Flood => put_output(out, port::FLOOD),
        Action::All => put_output(out, port::ALL),
        Action::InPort => put_output(out, port::IN_PORT),
        Action::Controller => put_output(out, port::CONTROLLER),
        Action::ControllerMaxLen(n) => put_output_len(out, port::CONTROLLER, n),
        Action::Drop | Action::GotoTable(_) => {}
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
        Action::SetField(SetField::TunId(v)) | Action::SetTunnel(v) => {
            put_set_field(out, oxm::CLASS_BASIC, oxm::TUNNEL_ID, &v.to_be_bytes())
        }
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
    };
    f.match_text = crate::flow::format_matches(&f.matches);
    f.actions_text = f.to_string().split_once(" actions=").map(|x| x.1.to_string()).unwrap_or_default();
    f
}

/// Runs every OpenFlow decoder weftd uses over one message (the `control` fuzz target calls it).
pub fn fuzz_decode(m: &[u8]) {
    use weft_wire::openflow as of;
    let Ok(h) = of::Header::parse(m) else { return };
    let body = m.get(of::HEADER_LEN..usize::from(h.length).min(m.len())).unwrap_or_default();
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
                    put_instructions(&mut out, &flow.actions);
                    let _ = flow.to_string();
                }
            }
        }
    }
    if body.len() >= 8 {
        let _ = of::parse_match(&body[8..]);
    }
}
