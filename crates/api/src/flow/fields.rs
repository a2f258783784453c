//! The fields `load`, `move` and `set_field` name, and the pieces of match and action syntax built on them:
//! subfields, registers, loads, the VLAN match merge, notes.

use super::*;

/// Bits `ofs .. ofs + nbits` of a field, as `load` and `move` name them (`NXM_NX_REG0[0..15]`, `reg0[3]`,
/// `metadata[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubField {
    pub field: Field,
    pub ofs: u16,
    pub nbits: u16,
}

/// What `load`/`move`/`set_field` may name: (field, its names, NXM/OXM name, width in bits, writable).
/// The first name is the one `set_field` prints.
fn named_fields() -> impl Iterator<Item = (Field, &'static [&'static str], String, u16, bool)> {
    const FIXED: &[(Field, &[&str], &str, u16, bool)] = &[
        (Field::Metadata, &["metadata"], "OXM_OF_METADATA", 64, true),
        (Field::PktMark, &["pkt_mark"], "NXM_NX_PKT_MARK", 32, true),
        (Field::TunId, &["tun_id", "tunnel_id"], "NXM_NX_TUN_ID", 64, true),
        (Field::DlSrc, &["eth_src", "dl_src"], "NXM_OF_ETH_SRC", 48, true),
        (Field::DlDst, &["eth_dst", "dl_dst"], "NXM_OF_ETH_DST", 48, true),
        (Field::InPort, &["in_port"], "NXM_OF_IN_PORT", 16, false),
        (Field::DlType, &["eth_type", "dl_type"], "NXM_OF_ETH_TYPE", 16, false),
        (Field::VlanTci, &["vlan_tci"], "NXM_OF_VLAN_TCI", 16, true),
        (Field::NwSrc, &["ip_src", "nw_src"], "NXM_OF_IP_SRC", 32, true),
        (Field::NwDst, &["ip_dst", "nw_dst"], "NXM_OF_IP_DST", 32, true),
        (Field::NwProto, &["nw_proto", "ip_proto"], "NXM_OF_IP_PROTO", 8, false),
        (Field::NwTos, &["nw_tos"], "NXM_OF_IP_TOS", 8, true),
        (Field::TpSrc, &["tcp_src", "tp_src", "udp_src", "sctp_src"], "NXM_OF_TCP_SRC", 16, true),
        (Field::TpDst, &["tcp_dst", "tp_dst", "udp_dst", "sctp_dst"], "NXM_OF_TCP_DST", 16, true),
        (Field::Ipv6Src, &["ipv6_src"], "NXM_NX_IPV6_SRC", 128, true),
        (Field::Ipv6Dst, &["ipv6_dst"], "NXM_NX_IPV6_DST", 128, true),
        (Field::ArpOp, &["arp_op"], "NXM_OF_ARP_OP", 16, true),
        (Field::ArpSpa, &["arp_spa"], "NXM_OF_ARP_SPA", 32, true),
        (Field::ArpTpa, &["arp_tpa"], "NXM_OF_ARP_TPA", 32, true),
        (Field::TunSrc, &["tun_src"], "NXM_NX_TUN_IPV4_SRC", 32, false),
        (Field::TunDst, &["tun_dst"], "NXM_NX_TUN_IPV4_DST", 32, false),
        (Field::NwEcn, &["nw_ecn", "ip_ecn"], "NXM_NX_IP_ECN", 2, true),
        (Field::NwTtl, &["nw_ttl"], "NXM_NX_IP_TTL", 8, true),
        (Field::Ipv6Label, &["ipv6_label"], "NXM_NX_IPV6_LABEL", 20, true),
        (Field::ArpSha, &["arp_sha", "nd_sll"], "NXM_NX_ARP_SHA", 48, true),
        (Field::ArpTha, &["arp_tha", "nd_tll"], "NXM_NX_ARP_THA", 48, true),
        (Field::NdTarget, &["nd_target"], "NXM_NX_ND_TARGET", 128, true),
        (Field::MplsLabel, &["mpls_label"], "OXM_OF_MPLS_LABEL", 20, true),
        (Field::MplsTc, &["mpls_tc"], "OXM_OF_MPLS_TC", 3, true),
        (Field::MplsBos, &["mpls_bos"], "OXM_OF_MPLS_BOS", 1, false),
        (Field::MplsTtl, &["mpls_ttl"], "NXM_NX_MPLS_TTL", 8, false),
        (Field::NwFrag, &["nw_frag"], "NXM_NX_IP_FRAG", 8, false),
        // Written only inside `ct(exec(...))` (mark and label), read anywhere.
        (Field::CtState, &["ct_state"], "NXM_NX_CT_STATE", 32, false),
        (Field::CtZone, &["ct_zone"], "NXM_NX_CT_ZONE", 16, false),
        (Field::CtMark, &["ct_mark"], "NXM_NX_CT_MARK", 32, false),
        (Field::CtLabel, &["ct_label"], "NXM_NX_CT_LABEL", 128, false),
        (Field::CtNwProto, &["ct_nw_proto"], "NXM_NX_CT_NW_PROTO", 8, false),
        (Field::CtNwSrc, &["ct_nw_src"], "NXM_NX_CT_NW_SRC", 32, false),
        (Field::CtNwDst, &["ct_nw_dst"], "NXM_NX_CT_NW_DST", 32, false),
        (Field::CtIpv6Src, &["ct_ipv6_src"], "NXM_NX_CT_IPV6_SRC", 128, false),
        (Field::CtIpv6Dst, &["ct_ipv6_dst"], "NXM_NX_CT_IPV6_DST", 128, false),
        (Field::CtTpSrc, &["ct_tp_src"], "NXM_NX_CT_TP_SRC", 16, false),
        (Field::CtTpDst, &["ct_tp_dst"], "NXM_NX_CT_TP_DST", 16, false),
        (Field::TcpFlags, &["tcp_flags"], "NXM_NX_TCP_FLAGS", 16, false),
        (Field::ConjId, &["conj_id"], "NXM_NX_CONJ_ID", 32, false),
    ];
    const REGS: [&str; 16] = [
        "reg0", "reg1", "reg2", "reg3", "reg4", "reg5", "reg6", "reg7", "reg8", "reg9", "reg10", "reg11", "reg12",
        "reg13", "reg14", "reg15",
    ];
    const XREGS: [&str; 8] = ["xreg0", "xreg1", "xreg2", "xreg3", "xreg4", "xreg5", "xreg6", "xreg7"];
    const XXREGS: [&str; 4] = ["xxreg0", "xxreg1", "xxreg2", "xxreg3"];
    const TUN_MD: [&str; 64] = [
        "tun_metadata0",
        "tun_metadata1",
        "tun_metadata2",
        "tun_metadata3",
        "tun_metadata4",
        "tun_metadata5",
        "tun_metadata6",
        "tun_metadata7",
        "tun_metadata8",
        "tun_metadata9",
        "tun_metadata10",
        "tun_metadata11",
        "tun_metadata12",
        "tun_metadata13",
        "tun_metadata14",
        "tun_metadata15",
        "tun_metadata16",
        "tun_metadata17",
        "tun_metadata18",
        "tun_metadata19",
        "tun_metadata20",
        "tun_metadata21",
        "tun_metadata22",
        "tun_metadata23",
        "tun_metadata24",
        "tun_metadata25",
        "tun_metadata26",
        "tun_metadata27",
        "tun_metadata28",
        "tun_metadata29",
        "tun_metadata30",
        "tun_metadata31",
        "tun_metadata32",
        "tun_metadata33",
        "tun_metadata34",
        "tun_metadata35",
        "tun_metadata36",
        "tun_metadata37",
        "tun_metadata38",
        "tun_metadata39",
        "tun_metadata40",
        "tun_metadata41",
        "tun_metadata42",
        "tun_metadata43",
        "tun_metadata44",
        "tun_metadata45",
        "tun_metadata46",
        "tun_metadata47",
        "tun_metadata48",
        "tun_metadata49",
        "tun_metadata50",
        "tun_metadata51",
        "tun_metadata52",
        "tun_metadata53",
        "tun_metadata54",
        "tun_metadata55",
        "tun_metadata56",
        "tun_metadata57",
        "tun_metadata58",
        "tun_metadata59",
        "tun_metadata60",
        "tun_metadata61",
        "tun_metadata62",
        "tun_metadata63",
    ];
    let tun_md = (0..TUN_METADATA_FIELDS).map(|n| {
        let i = usize::from(n);
        (Field::TunMetadata(n), &TUN_MD[i..=i], format!("NXM_NX_TUN_METADATA{n}"), 128, true)
    });
    let regs =
        (0..16u8).map(|n| (Field::Reg(n), &REGS[usize::from(n)..=usize::from(n)], format!("NXM_NX_REG{n}"), 32, true));
    let xregs = (0..8u8)
        .map(|n| (Field::XReg(n), &XREGS[usize::from(n)..=usize::from(n)], format!("OXM_OF_PKT_REG{n}"), 64, true));
    let xxregs = (0..4u8)
        .map(|n| (Field::XXReg(n), &XXREGS[usize::from(n)..=usize::from(n)], format!("NXM_NX_XXREG{n}"), 128, true));
    FIXED
        .iter()
        .map(|&(f, names, nxm, bits, w)| (f, names, nxm.to_string(), bits, w))
        .chain(regs)
        .chain(xregs)
        .chain(xxregs)
        .chain(tun_md)
}

impl Field {
    /// Width in bits as `load`/`move` see the field (in_port as OpenFlow 1.0's 16-bit port).
    pub fn bits(self) -> u16 {
        named_fields().find(|n| n.0 == self).map_or(0, |n| n.3)
    }

    /// The NXM/OXM name `load` and `move` print.
    pub fn nxm_name(self) -> String {
        named_fields().find(|n| n.0 == self).map_or_else(|| format!("{self:?}"), |n| n.2)
    }

    /// The name `set_field` prints.
    pub fn name(self) -> &'static str {
        named_fields().find(|n| n.0 == self).map_or("?", |n| n.1[0])
    }

    /// Whether actions may write it: registers, metadata, the mark, the tunnel ID, and the packet's fields
    /// but for the input port, the EtherType, the IP protocol and MPLS's bottom-of-stack bit (read-only, as
    /// in OVS).
    pub fn writable(self) -> bool {
        named_fields().any(|n| n.0 == self && n.4)
    }
}

/// A number as OVS prints hexadecimal fields: `0` or `0x…`.
pub fn hex(v: u128) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("0x{v:x}")
    }
}

/// `NAME`, `NAME[]`, `NAME[N]` or `NAME[A..B]`, NAME an NXM/OXM name or a field name.
pub(super) fn sub_field(token: &str, text: &str) -> Result<SubField, FlowError> {
    let (name, range) = match text.split_once('[') {
        Some((n, r)) => (n, Some(r.strip_suffix(']').ok_or_else(|| err(token, format!("{text:?}: missing ]")))?)),
        None => (text, None),
    };
    // OpenFlow 1.2's names of the NXM fields with the same meaning (as OVS takes them in `move` and `load`).
    let name = match name.to_ascii_uppercase().as_str() {
        "OXM_OF_ETH_DST" => "NXM_OF_ETH_DST",
        "OXM_OF_ETH_SRC" => "NXM_OF_ETH_SRC",
        "OXM_OF_ETH_TYPE" => "NXM_OF_ETH_TYPE",
        "OXM_OF_IPV4_SRC" => "NXM_OF_IP_SRC",
        "OXM_OF_IPV4_DST" => "NXM_OF_IP_DST",
        "OXM_OF_IP_PROTO" => "NXM_OF_IP_PROTO",
        // weft keeps one field for the ports of TCP, UDP and SCTP (it prints them as TCP's).
        "OXM_OF_TCP_SRC" | "OXM_OF_UDP_SRC" | "NXM_OF_UDP_SRC" | "OXM_OF_SCTP_SRC" => "NXM_OF_TCP_SRC",
        "OXM_OF_TCP_DST" | "OXM_OF_UDP_DST" | "NXM_OF_UDP_DST" | "OXM_OF_SCTP_DST" => "NXM_OF_TCP_DST",
        "OXM_OF_IPV6_SRC" => "NXM_NX_IPV6_SRC",
        "OXM_OF_IPV6_DST" => "NXM_NX_IPV6_DST",
        "OXM_OF_ARP_SPA" => "NXM_OF_ARP_SPA",
        "OXM_OF_ARP_TPA" => "NXM_OF_ARP_TPA",
        "OXM_OF_ARP_OP" => "NXM_OF_ARP_OP",
        "OXM_OF_TUNNEL_ID" => "NXM_NX_TUN_ID",
        _ => name,
    };
    let (field, width) = named_fields()
        .find(|n| n.2.eq_ignore_ascii_case(name) || n.1.contains(&name))
        .map(|n| (n.0, n.3))
        .ok_or_else(|| err(token, format!("unknown field {name:?}")))?;
    let (ofs, nbits) = match range {
        None | Some("") => (0, width),
        Some(r) => {
            let bit = |t: &str| t.trim().parse::<u16>().map_err(|_| err(token, format!("{r:?} is not a bit range")));
            let (a, b) = match r.split_once("..") {
                Some((a, b)) => (bit(a)?, bit(b)?),
                None => (bit(r)?, bit(r)?),
            };
            if a > b || b >= width {
                return Err(err(token, format!("bits {a}..{b} are not within the {width} bits of {name}")));
            }
            (a, b - a + 1)
        }
    };
    Ok(SubField { field, ofs, nbits })
}

/// Merges a match on a tagged frame's VLAN ID or priority into one already on the other (`dl_vlan=5` and
/// `dl_vlan_pcp=7` are one match on the TCI); false when `m` is not such a match or there is none to join.
pub fn merge_vlan(matches: &mut [Match], m: Match) -> bool {
    if m.field != Field::VlanTci || m.value & 0x1000 == 0 {
        return false;
    }
    let Some(x) = matches.iter_mut().find(|x| x.field == Field::VlanTci) else { return false };
    if x.value & 0x1000 == 0 || x.mask & m.mask & !0x1000 != 0 {
        return false;
    }
    x.value |= m.value;
    x.mask |= m.mask;
    true
}

/// Writes of `value` under `mask` into `field` as OVS carries them: one `load` per run of ones in the mask,
/// each at most 64 bits (what NXAST_REG_LOAD holds), lowest bits first.
pub fn loads(field: Field, value: u128, mask: u128) -> Vec<Action> {
    let mut out = Vec::new();
    let mut rest = mask;
    while rest != 0 {
        let ofs = rest.trailing_zeros();
        let run = (rest >> ofs).trailing_ones().min(64);
        let bits = if run >= 128 { u128::MAX } else { ((1u128 << run) - 1) << ofs };
        out.push(Action::Load {
            dst: SubField { field, ofs: ofs as u16, nbits: run as u16 },
            value: (value & bits) >> ofs,
        });
        rest &= !bits;
    }
    out
}

/// A match on a register (`regN`, `xregN`, `xxregN`), the metadata or the mark, as matches on 32-bit
/// registers (parts under an all-zero mask left out, as OVS does); `None` when `key` is none of them.
pub(super) fn reg_match(tok: &str, key: &str, v: &str) -> Result<Option<Vec<Match>>, FlowError> {
    let index = |prefix: &str, count: u8| -> Option<u8> {
        key.strip_prefix(prefix).and_then(|n| n.parse::<u8>().ok()).filter(|n| *n < count && key != prefix)
    };
    let (first, regs, bits) = if let Some(n) = index("reg", 16) {
        (n, 1, 32)
    } else if let Some(n) = index("xreg", 8) {
        (2 * n, 2, 64)
    } else if let Some(n) = index("xxreg", 4) {
        (4 * n, 4, 128)
    } else {
        let (field, bits) = match key {
            "metadata" => (Field::Metadata, 64),
            "pkt_mark" => (Field::PktMark, 32),
            _ => return Ok(None),
        };
        let full = (1u128 << bits) - 1;
        let (value, mask) = num_mask(tok, v, full)?;
        return Ok(Some(if mask == 0 { Vec::new() } else { vec![Match { field, value: value & mask, mask }] }));
    };
    let full = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
    let (value, mask) = num_mask(tok, v, full)?;
    let mut out = Vec::new();
    for i in 0..regs {
        // The first register holds the most significant 32 bits.
        let shift = 32 * (regs - 1 - i);
        let (pv, pm) = ((value >> shift) as u32, (mask >> shift) as u32);
        if pm != 0 {
            out.push(Match { field: Field::Reg(first + i), value: u128::from(pv & pm), mask: u128::from(pm) });
        }
    }
    Ok(Some(out))
}

/// The longest note weft keeps (padded), in bytes.
pub const NOTE_MAX: usize = 32;

/// A note's bytes padded as OVS pads them: the NXAST_NOTE action (10 bytes of header) fills 8-byte words.
pub fn note(raw: &[u8]) -> Option<Action> {
    let padded = (10 + raw.len()).div_ceil(8) * 8 - 10;
    if padded > NOTE_MAX {
        return None;
    }
    let mut bytes = [0u8; NOTE_MAX];
    bytes[..raw.len()].copy_from_slice(raw);
    Some(Action::Note { bytes, len: padded as u8 })
}

/// What `load` and `move` may write, for error messages.
pub(super) const WRITABLE: &str =
    "registers, xreg, xxreg, metadata, pkt_mark, tun_id and the packet's fields but in_port, eth_type, ip_proto and mpls_bos";

/// What the match must already say for a field to be allowed (OpenFlow's prerequisites).
pub(super) fn prerequisite(
    field: Field,
    dl_type: Option<u16>,
    nw_proto: Option<u8>,
    icmp_type: Option<u8>,
) -> Result<(), String> {
    let ip4 = dl_type == Some(0x0800);
    let ip6 = dl_type == Some(0x86dd);
    let arp = dl_type == Some(0x0806);
    let nd = |t: &[u8]| ip6 && nw_proto == Some(58) && icmp_type.is_some_and(|i| t.contains(&i));
    let ok = match field {
        Field::NwSrc | Field::NwDst => ip4 || arp,
        Field::NwProto | Field::NwTos | Field::NwEcn | Field::NwTtl | Field::NwFrag => ip4 || ip6,
        Field::Ipv6Src | Field::Ipv6Dst | Field::Ipv6Label => ip6,
        Field::ArpSha => arp || nd(&[135]),
        Field::ArpTha => arp || nd(&[136]),
        Field::NdTarget => nd(&[135, 136]),
        Field::MplsLabel | Field::MplsTc | Field::MplsTtl | Field::MplsBos => matches!(dl_type, Some(0x8847 | 0x8848)),
        Field::ArpSpa | Field::ArpTpa | Field::ArpOp => arp,
        Field::TpSrc | Field::TpDst => (ip4 || ip6) && matches!(nw_proto, Some(6 | 17 | 132)),
        Field::TcpFlags => (ip4 || ip6) && nw_proto == Some(6),
        Field::IcmpType | Field::IcmpCode => (ip4 && nw_proto == Some(1)) || (ip6 && nw_proto == Some(58)),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    Err(match field {
        Field::NwSrc | Field::NwDst => "needs ip or arp (dl_type=0x0800 or 0x0806)".into(),
        Field::NwProto | Field::NwTos | Field::NwEcn | Field::NwTtl | Field::NwFrag => "needs ip or ipv6".into(),
        Field::Ipv6Src | Field::Ipv6Dst | Field::Ipv6Label => "needs ipv6 (dl_type=0x86dd)".into(),
        Field::ArpSha => "needs arp, or icmp6 with icmp_type=135 (nd_sll)".into(),
        Field::ArpTha => "needs arp, or icmp6 with icmp_type=136 (nd_tll)".into(),
        Field::NdTarget => "needs icmp6 with icmp_type=135 or 136".into(),
        Field::MplsLabel | Field::MplsTc | Field::MplsTtl | Field::MplsBos => "needs mpls or mplsm".into(),
        Field::ArpSpa | Field::ArpTpa | Field::ArpOp => "needs arp".into(),
        Field::TpSrc | Field::TpDst => "needs tcp, udp, tcp6 or udp6".into(),
        Field::TcpFlags => "needs tcp or tcp6".into(),
        _ => "needs icmp or icmp6".into(),
    })
}
