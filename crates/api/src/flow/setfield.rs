//! `set_field` (and `mod_nw_*`, `mod_tp_*`) on the packet's own fields: IP addresses, DSCP, ECN, TTL, the
//! IPv6 flow label, transport ports, ICMP type and code, ARP's fields, neighbor discovery's target and
//! addresses, the VLAN priority. One [`Action::SetReg`] per write, as for registers; what differs is the
//! name and encoding OVS gives the field, which may depend on what the flow matches (`tcp_src` or
//! `udp_src`, `arp_sha` or `nd_sll`, ICMP's or ICMPv6's type): [`Ctx`] says.

use super::*;
use weft_wire::openflow::oxm;

/// What a flow's match says of its packets: the names and encodings of some fields depend on it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ctx {
    pub dl_type: Option<u16>,
    pub nw_proto: Option<u8>,
}

impl Ctx {
    pub fn of(matches: &[Match]) -> Ctx {
        let get = |f: Field| matches.iter().find(|m| m.field == f && m.mask != 0).map(|m| m.value);
        Ctx { dl_type: get(Field::DlType).map(|v| v as u16), nw_proto: get(Field::NwProto).map(|v| v as u8) }
    }

    fn v6(self) -> bool {
        self.dl_type == Some(0x86dd)
    }
}

/// The packet fields `set_field` writes: (field, mask of the bits it writes).
fn packet_field(field: Field) -> Option<u128> {
    Some(match field {
        Field::NwSrc | Field::NwDst | Field::ArpSpa | Field::ArpTpa => 0xffff_ffff,
        Field::Ipv6Src | Field::Ipv6Dst | Field::NdTarget => u128::MAX,
        Field::NwTos => 0xfc,
        Field::NwEcn => 3,
        Field::NwTtl | Field::IcmpType | Field::IcmpCode | Field::ArpOp => 0xff,
        Field::Ipv6Label => 0xf_ffff,
        Field::TpSrc | Field::TpDst => 0xffff,
        Field::ArpSha | Field::ArpTha => 0xffff_ffff_ffff,
        Field::MplsLabel => 0xf_ffff,
        Field::MplsTc => 7,
        _ => return None,
    })
}

/// Whether `SetReg { field, mask }` is a write of a packet field by `set_field` (printed and encoded as
/// one), and not a register's.
pub fn is_packet_set(field: Field, mask: u128) -> bool {
    packet_field(field) == Some(mask) || (field == Field::VlanTci && mask == 0xe000)
}

/// The name `set_field` prints for a packet field in a flow of `ctx`.
pub fn set_field_name(field: Field, mask: u128, ctx: Ctx) -> &'static str {
    let proto = ctx.nw_proto;
    match field {
        Field::VlanTci if mask == 0xe000 => "vlan_pcp",
        Field::NwSrc => "ip_src",
        Field::NwDst => "ip_dst",
        Field::Ipv6Src => "ipv6_src",
        Field::Ipv6Dst => "ipv6_dst",
        Field::NwTos => "ip_dscp",
        Field::NwEcn => "nw_ecn",
        Field::NwTtl => "nw_ttl",
        Field::Ipv6Label => "ipv6_label",
        Field::TpSrc if proto == Some(17) => "udp_src",
        Field::TpDst if proto == Some(17) => "udp_dst",
        Field::TpSrc if proto == Some(132) => "sctp_src",
        Field::TpDst if proto == Some(132) => "sctp_dst",
        Field::TpSrc => "tcp_src",
        Field::TpDst => "tcp_dst",
        Field::IcmpType if ctx.v6() => "icmpv6_type",
        Field::IcmpCode if ctx.v6() => "icmpv6_code",
        Field::IcmpType => "icmp_type",
        Field::IcmpCode => "icmp_code",
        Field::ArpOp => "arp_op",
        Field::ArpSpa => "arp_spa",
        Field::ArpTpa => "arp_tpa",
        Field::ArpSha if ctx.v6() => "nd_sll",
        Field::ArpTha if ctx.v6() => "nd_tll",
        Field::ArpSha => "arp_sha",
        Field::ArpTha => "arp_tha",
        Field::NdTarget => "nd_target",
        Field::MplsLabel => "mpls_label",
        Field::MplsTc => "mpls_tc",
        _ => field.name(),
    }
}

/// `set_field:VALUE->NAME` as OVS prints a packet field's write.
pub fn format_set_field(field: Field, value: u128, mask: u128, ctx: Ctx) -> String {
    let v = match field {
        Field::VlanTci => (value >> 13).to_string(),
        Field::NwSrc | Field::NwDst | Field::ArpSpa | Field::ArpTpa => Ipv4Addr::from(value as u32).to_string(),
        Field::Ipv6Src | Field::Ipv6Dst | Field::NdTarget => Ipv6Addr::from(value).to_string(),
        Field::ArpSha | Field::ArpTha => EthernetAddress::from_bytes(&(value as u64).to_be_bytes()[2..]).to_string(),
        Field::NwTos => (value >> 2).to_string(),
        Field::Ipv6Label => format!("{value:#x}"),
        _ => value.to_string(),
    };
    format!("set_field:{v}->{}", set_field_name(field, mask, ctx))
}

/// The OXM (class, field, bytes, value as sent) of a packet field's `set_field` in a flow of `ctx`.
pub(crate) fn set_field_oxm(field: Field, value: u128, mask: u128, ctx: Ctx) -> Option<(u16, u8, usize, u128)> {
    use oxm::*;
    let proto = ctx.nw_proto;
    let l4 = |tcp: u8, udp: u8, sctp: u8| match proto {
        Some(17) => udp,
        Some(132) => sctp,
        _ => tcp,
    };
    Some(match field {
        Field::VlanTci if mask == 0xe000 => (CLASS_BASIC, VLAN_PCP, 1, value >> 13),
        Field::NwSrc => (CLASS_BASIC, IPV4_SRC, 4, value),
        Field::NwDst => (CLASS_BASIC, IPV4_DST, 4, value),
        Field::Ipv6Src => (CLASS_BASIC, IPV6_SRC, 16, value),
        Field::Ipv6Dst => (CLASS_BASIC, IPV6_DST, 16, value),
        Field::NwTos => (CLASS_BASIC, IP_DSCP, 1, value >> 2),
        Field::NwEcn => (CLASS_BASIC, IP_ECN, 1, value),
        Field::NwTtl => (CLASS_NXM1, NX_IP_TTL, 1, value),
        Field::Ipv6Label => (CLASS_BASIC, IPV6_FLABEL, 4, value),
        Field::TpSrc => (CLASS_BASIC, l4(TCP_SRC, UDP_SRC, SCTP_SRC), 2, value),
        Field::TpDst => (CLASS_BASIC, l4(TCP_DST, UDP_DST, SCTP_DST), 2, value),
        Field::IcmpType => (CLASS_BASIC, if ctx.v6() { ICMPV6_TYPE } else { ICMPV4_TYPE }, 1, value),
        Field::IcmpCode => (CLASS_BASIC, if ctx.v6() { ICMPV6_CODE } else { ICMPV4_CODE }, 1, value),
        Field::ArpOp => (CLASS_BASIC, ARP_OP, 2, value),
        Field::ArpSpa => (CLASS_BASIC, ARP_SPA, 4, value),
        Field::ArpTpa => (CLASS_BASIC, ARP_TPA, 4, value),
        Field::ArpSha => (CLASS_BASIC, if ctx.v6() { IPV6_ND_SLL } else { ARP_SHA }, 6, value),
        Field::ArpTha => (CLASS_BASIC, if ctx.v6() { IPV6_ND_TLL } else { ARP_THA }, 6, value),
        Field::NdTarget => (CLASS_BASIC, IPV6_ND_TARGET, 16, value),
        Field::MplsLabel => (CLASS_BASIC, MPLS_LABEL, 4, value),
        Field::MplsTc => (CLASS_BASIC, MPLS_TC, 1, value),
        _ => return None,
    })
}

/// A `set_field` OXM on a packet field, as the action it is (`None`: not a packet field weft writes).
pub(crate) fn set_field_from_oxm(class: u16, code: u8, v: u128, bytes: usize) -> Option<Result<Action, (u16, u16)>> {
    use oxm::*;
    let bad = Err((weft_wire::openflow::error::BAD_ACTION, weft_wire::openflow::error::BAD_SET_ARGUMENT));
    let (field, width, value, mask) = match (class, code) {
        (CLASS_BASIC, VLAN_PCP) if v <= 7 => (Field::VlanTci, 1, v << 13, 0xe000),
        (CLASS_BASIC, IP_DSCP) if v <= 63 => (Field::NwTos, 1, v << 2, 0xfc),
        (CLASS_BASIC, VLAN_PCP | IP_DSCP) => return Some(bad),
        (CLASS_BASIC, IP_ECN) => (Field::NwEcn, 1, v, 3),
        (CLASS_NXM1, NX_IP_TTL) => (Field::NwTtl, 1, v, 0xff),
        (CLASS_BASIC, IPV4_SRC) => (Field::NwSrc, 4, v, 0xffff_ffff),
        (CLASS_BASIC, IPV4_DST) => (Field::NwDst, 4, v, 0xffff_ffff),
        (CLASS_BASIC, IPV6_SRC) => (Field::Ipv6Src, 16, v, u128::MAX),
        (CLASS_BASIC, IPV6_DST) => (Field::Ipv6Dst, 16, v, u128::MAX),
        (CLASS_BASIC, IPV6_FLABEL) => (Field::Ipv6Label, 4, v, 0xf_ffff),
        (CLASS_BASIC, TCP_SRC | UDP_SRC | SCTP_SRC) => (Field::TpSrc, 2, v, 0xffff),
        (CLASS_BASIC, TCP_DST | UDP_DST | SCTP_DST) => (Field::TpDst, 2, v, 0xffff),
        (CLASS_BASIC, ICMPV4_TYPE | ICMPV6_TYPE) => (Field::IcmpType, 1, v, 0xff),
        (CLASS_BASIC, ICMPV4_CODE | ICMPV6_CODE) => (Field::IcmpCode, 1, v, 0xff),
        (CLASS_BASIC, ARP_OP) if v <= 0xff => (Field::ArpOp, 2, v, 0xff),
        (CLASS_BASIC, ARP_SPA) => (Field::ArpSpa, 4, v, 0xffff_ffff),
        (CLASS_BASIC, ARP_TPA) => (Field::ArpTpa, 4, v, 0xffff_ffff),
        (CLASS_BASIC, ARP_SHA | IPV6_ND_SLL) => (Field::ArpSha, 6, v, 0xffff_ffff_ffff),
        (CLASS_BASIC, ARP_THA | IPV6_ND_TLL) => (Field::ArpTha, 6, v, 0xffff_ffff_ffff),
        (CLASS_BASIC, IPV6_ND_TARGET) => (Field::NdTarget, 16, v, u128::MAX),
        (CLASS_BASIC, MPLS_LABEL) => (Field::MplsLabel, 4, v, 0xf_ffff),
        (CLASS_BASIC, MPLS_TC) => (Field::MplsTc, 1, v, 7),
        _ => return None,
    };
    if width != bytes || value & !mask != 0 {
        return Some(bad);
    }
    Some(Ok(Action::SetReg { field, value, mask }))
}

/// `set_field:V->NAME` in text for a packet field (`None`: NAME is not one).
pub(super) fn parse_set_field(act: &str, name: &str, v: &str) -> Option<Result<Action, FlowError>> {
    let set = |field: Field, value: u128, mask: u128| Ok(Action::SetReg { field, value, mask });
    let ip4 = |v: &str| -> Result<u128, FlowError> {
        v.parse::<Ipv4Addr>()
            .map(|a| u128::from(u32::from(a)))
            .map_err(|_| err(act, format!("{v:?} is not an IPv4 address")))
    };
    let ip6 = |v: &str| -> Result<u128, FlowError> {
        v.parse::<Ipv6Addr>().map(u128::from).map_err(|_| err(act, format!("{v:?} is not an IPv6 address")))
    };
    Some((|| match name {
        "ip_src" | "nw_src" => set(Field::NwSrc, ip4(v)?, 0xffff_ffff),
        "ip_dst" | "nw_dst" => set(Field::NwDst, ip4(v)?, 0xffff_ffff),
        "ipv6_src" => set(Field::Ipv6Src, ip6(v)?, u128::MAX),
        "ipv6_dst" => set(Field::Ipv6Dst, ip6(v)?, u128::MAX),
        "nd_target" => set(Field::NdTarget, ip6(v)?, u128::MAX),
        "arp_spa" => set(Field::ArpSpa, ip4(v)?, 0xffff_ffff),
        "arp_tpa" => set(Field::ArpTpa, ip4(v)?, 0xffff_ffff),
        "arp_sha" | "nd_sll" => set(Field::ArpSha, mac(act, v)?, 0xffff_ffff_ffff),
        "arp_tha" | "nd_tll" => set(Field::ArpTha, mac(act, v)?, 0xffff_ffff_ffff),
        "ip_dscp" => set(Field::NwTos, num(act, v, 63)? << 2, 0xfc),
        "nw_tos" => {
            let t = num(act, v, 255)?;
            if t & 3 != 0 {
                return Err(err(act, "the two ECN bits of nw_tos must be zero"));
            }
            set(Field::NwTos, t, 0xfc)
        }
        "nw_ecn" | "ip_ecn" => set(Field::NwEcn, num(act, v, 3)?, 3),
        "nw_ttl" => set(Field::NwTtl, num(act, v, 255)?, 0xff),
        "ipv6_label" => set(Field::Ipv6Label, num(act, v, 0xf_ffff)?, 0xf_ffff),
        "tcp_src" | "udp_src" | "sctp_src" | "tp_src" => set(Field::TpSrc, num(act, v, 0xffff)?, 0xffff),
        "tcp_dst" | "udp_dst" | "sctp_dst" | "tp_dst" => set(Field::TpDst, num(act, v, 0xffff)?, 0xffff),
        "icmp_type" | "icmpv6_type" => set(Field::IcmpType, num(act, v, 255)?, 0xff),
        "icmp_code" | "icmpv6_code" => set(Field::IcmpCode, num(act, v, 255)?, 0xff),
        "arp_op" => set(Field::ArpOp, num(act, v, 255)?, 0xff),
        "vlan_pcp" => set(Field::VlanTci, num(act, v, 7)? << 13, 0xe000),
        "mpls_label" => set(Field::MplsLabel, num(act, v, 0xf_ffff)?, 0xf_ffff),
        "mpls_tc" => set(Field::MplsTc, num(act, v, 7)?, 7),
        _ => Err(err(act, "")),
    })())
    .filter(|r| r.as_ref().map_or_else(|e| !e.why.is_empty(), |_| true))
}

/// The prerequisites of writing `field` (what a match on it needs; a VLAN priority needs nothing: a frame
/// without a tag is left as it is).
pub(super) fn set_field_needs(field: Field) -> Option<Field> {
    (field != Field::VlanTci).then_some(field)
}
