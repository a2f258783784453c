//! Flows, matches and actions written back as `ovs-ofctl -O OpenFlow13` writes them.

use super::*;

impl fmt::Display for SubField {
    /// `NAME[]` for the whole field, `NAME[N]` for one bit, `NAME[A..B]` for a range.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[", self.field.nxm_name())?;
        if self.ofs != 0 || self.nbits != self.field.bits() {
            if self.nbits == 1 {
                write!(f, "{}", self.ofs)?;
            } else {
                write!(f, "{}..{}", self.ofs, self.ofs + self.nbits - 1)?;
            }
        }
        f.write_str("]")
    }
}

impl fmt::Display for Action {
    /// As `ovs-ofctl dump-flows` prints actions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Action::Output(OFPP_LOCAL) | Action::Local => f.write_str("LOCAL"),
            Action::Output(p) => write!(f, "output:{p}"),
            Action::OutputMaxLen(..) => self.plain().fmt(f),
            Action::Normal => f.write_str("NORMAL"),
            Action::Flood => f.write_str("FLOOD"),
            Action::All => f.write_str("ALL"),
            Action::InPort => f.write_str("IN_PORT"),
            Action::Controller => f.write_str("CONTROLLER:65535"),
            Action::ControllerMaxLen(n) => write!(f, "CONTROLLER:{n}"),
            Action::ControllerEx { max_len, reason, id } => {
                // As ovs-ofctl: what differs from the defaults, in this order.
                let mut parts = Vec::new();
                if reason != 1 {
                    let name = super::actions::PACKET_IN_REASONS.get(usize::from(reason)).copied().unwrap_or("?");
                    parts.push(format!("reason={name}"));
                }
                if max_len != 0xffff {
                    parts.push(format!("max_len={max_len}"));
                }
                if id != 0 {
                    parts.push(format!("id={id}"));
                }
                write!(f, "controller({})", parts.join(","))
            }
            Action::Drop => f.write_str("drop"),
            Action::Ct(ct) => ct.fmt(f),
            Action::CtClear => f.write_str("ct_clear"),
            Action::ModVlanVid(v) => write!(f, "mod_vlan_vid:{v}"),
            Action::StripVlan => f.write_str("pop_vlan"),
            Action::PushVlan(t) => write!(f, "push_vlan:0x{t:04x}"),
            Action::SetField(SetField::EthSrc(m)) => write!(f, "set_field:{m}->eth_src"),
            Action::SetField(SetField::EthDst(m)) => write!(f, "set_field:{m}->eth_dst"),
            Action::SetField(SetField::VlanVid(v)) => write!(f, "set_field:{}->vlan_vid", 4096 + u32::from(v)),
            Action::SetField(SetField::TunId(v)) => write!(f, "set_field:0x{v:x}->tun_id"),
            Action::SetField(SetField::TunDst(a)) => write!(f, "set_field:{a}->tun_dst"),
            Action::SetTunnel(v) if v > u64::from(u32::MAX) => write!(f, "set_tunnel64:0x{v:x}"),
            Action::SetTunnel(v) => write!(f, "set_tunnel:0x{v:x}"),
            // As OVS: a resubmit to a port alone is written `resubmit:PORT`.
            Action::Resubmit { port: Some(p), table: None } => write!(f, "resubmit:{p}"),
            Action::Resubmit { port, table } => {
                f.write_str("resubmit(")?;
                if let Some(p) = port {
                    write!(f, "{p}")?;
                }
                f.write_str(",")?;
                if let Some(t) = table {
                    write!(f, "{t}")?;
                }
                f.write_str(")")
            }
            Action::GotoTable(t) => write!(f, "goto_table:{t}"),
            Action::Load { dst, value } => write!(f, "load:{}->{dst}", hex(value)),
            Action::SetReg { field, value, mask } if is_packet_set(field, mask) => {
                f.write_str(&format_set_field(field, value, mask, Ctx::default()))
            }
            Action::SetReg { field, value, mask } => {
                let full = if field.bits() == 128 { u128::MAX } else { (1u128 << field.bits()) - 1 };
                if mask == full {
                    write!(f, "set_field:{}->{}", hex(value), field.name())
                } else {
                    write!(f, "set_field:{}/{}->{}", hex(value), hex(mask), field.name())
                }
            }
            Action::Move { src, dst } => write!(f, "move:{src}->{dst}"),
            Action::StackPush(sf) => write!(f, "push:{sf}"),
            Action::Bundle(b) => write!(f, "{b}"),
            Action::Multipath(m) => write!(f, "{m}"),
            Action::OutputTrunc(p, n) => {
                let port = match p {
                    crate::flow::OFPP_LOCAL => "LOCAL".to_string(),
                    crate::flow::OFPP_IN_PORT => "IN_PORT".to_string(),
                    p => p.to_string(),
                };
                write!(f, "output(port={port},max_len={n})")
            }
            Action::Sample(s) => {
                write!(
                    f,
                    "sample(probability={},collector_set_id={},obs_domain_id={},obs_point_id={}",
                    s.probability, s.collector_set_id, s.obs_domain_id, s.obs_point_id
                )?;
                if let Some(p) = s.sampling_port {
                    match p {
                        crate::flow::OFPP_LOCAL => write!(f, ",sampling_port=LOCAL")?,
                        p => write!(f, ",sampling_port={p}")?,
                    }
                }
                match s.direction {
                    1 => write!(f, ",ingress)"),
                    2 => write!(f, ",egress)"),
                    _ => write!(f, ")"),
                }
            }
            Action::StackPop(sf) => write!(f, "pop:{sf}"),
            Action::OutputReg(src) => write!(f, "output:{src}"),
            Action::Exit => f.write_str("exit"),
            Action::Conjunction { id, k, n } => write!(f, "conjunction({id},{k}/{n})"),
            Action::FinTimeout { idle, hard } => {
                let mut args = Vec::new();
                if idle != 0 {
                    args.push(format!("idle_timeout={idle}"));
                }
                if hard != 0 {
                    args.push(format!("hard_timeout={hard}"));
                }
                write!(f, "fin_timeout({})", args.join(","))
            }
            // Alone (a list prints a learn with its pieces).
            Action::Learn(l) => f.write_str(&super::learn::format_learn(&l, &[])),
            Action::LearnSpec(s) => write!(f, "{s}"),
            Action::Note { bytes, len } => {
                f.write_str("note:")?;
                for (i, b) in bytes[..usize::from(len)].iter().enumerate() {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
            Action::SetQueue(q) => write!(f, "set_queue:{q}"),
            Action::PopQueue => f.write_str("pop_queue"),
            Action::ClearActions => f.write_str("clear_actions"),
            // Printed with its actions by the flow ([`Flow`]'s `Display`).
            Action::WriteActions(n) => write!(f, "write_actions/{n}"),
            Action::Clone(n) => write!(f, "clone/{n}"),
            Action::SetNwTtl(t) => write!(f, "mod_nw_ttl:{t}"),
            Action::DecTtl => f.write_str("dec_ttl"),
            Action::Group(g) => write!(f, "group:{g}"),
            Action::Meter(m) => write!(f, "meter:{m}"),
            Action::PushMpls(t) => write!(f, "push_mpls:0x{t:04x}"),
            Action::PopMpls(t) => write!(f, "pop_mpls:0x{t:04x}"),
            Action::SetMplsTtl(t) => write!(f, "set_mpls_ttl({t})"),
            Action::DecMplsTtl => f.write_str("dec_mpls_ttl"),
            Action::WriteMetadata { value, mask } => {
                if mask == u64::MAX {
                    write!(f, "write_metadata:{}", hex(u128::from(value)))
                } else {
                    write!(f, "write_metadata:{}/{}", hex(u128::from(value)), hex(u128::from(mask)))
                }
            }
        }
    }
}

impl fmt::Display for Flow {
    /// The flow as `dump-flows` shows its match and actions (without counters).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = format_matches(&self.matches);
        let mut head: Vec<String> = Vec::new();
        if self.priority != DEFAULT_PRIORITY {
            head.push(format!("priority={}", self.priority));
        }
        if !m.is_empty() {
            head.push(m);
        }
        if !head.is_empty() {
            write!(f, "{} ", head.join(","))?;
        }
        f.write_str("actions=")?;
        if self.actions.is_empty() {
            return f.write_str("drop");
        }
        fmt_actions(f, &self.actions, Ctx::of(&self.matches))
    }
}

impl Flow {
    /// The flow as `ovs-ofctl parse-flow` prints a FLOW_MOD that adds it (after its "ADD "): the table, the
    /// match, cookie and timeouts, the actions.
    pub fn flow_mod_text(&self) -> String {
        let text = self.to_string();
        let (head, actions) = text.split_once("actions=").unwrap_or((&text, ""));
        let mut out = String::new();
        if self.table != 0 {
            out.push_str(&format!("table:{} ", self.table));
        }
        out.push_str(head.trim());
        for (word, v) in
            [("cookie:0x", self.cookie), ("idle:", self.idle_timeout.into()), ("hard:", self.hard_timeout.into())]
        {
            if v != 0 {
                if word.ends_with("0x") {
                    out.push_str(&format!(" {word}{v:x}"));
                } else {
                    out.push_str(&format!(" {word}{v}"));
                }
            }
        }
        for (on, word) in [
            (self.send_flow_rem, " send_flow_rem"),
            (self.check_overlap, " check_overlap"),
            (self.reset_counts, " reset_counts"),
        ] {
            if on {
                out.push_str(word);
            }
        }
        let mut out = out.trim_start().trim_end().to_string();
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str("actions=");
        out.push_str(actions);
        out
    }
}

/// Where OVS prints a field in a match.
fn rank(f: Field) -> u16 {
    match f {
        // After the mark (printed first of all), before what connection tracking found.
        Field::PktMark | Field::ConjId => 0,
        Field::Reg(n) | Field::XReg(n) | Field::XXReg(n) => 12 + u16::from(n),
        Field::TunId => 30,
        Field::TunSrc => 31,
        Field::TunDst => 32,
        // After the other tunnel fields, by index (the sort's second key).
        Field::TunMetadata(_) => 32,
        Field::Metadata => 33,
        Field::InPort => 34,
        Field::VlanTci => 35,
        Field::DlSrc => 36,
        Field::DlDst => 37,
        Field::DlType => 38,
        Field::NwSrc | Field::ArpSpa | Field::Ipv6Src => 39,
        Field::NwDst | Field::ArpTpa | Field::Ipv6Dst => 40,
        Field::Ipv6Label => 41,
        Field::NwProto => 42,
        Field::ArpOp => 43,
        Field::NwTos => 44,
        Field::NwEcn => 45,
        Field::NwTtl => 46,
        Field::NwFrag => 47,
        Field::TpSrc => 48,
        Field::TpDst => 49,
        Field::IcmpType => 50,
        // After the ports, as OVS prints it (TCP and ICMP never meet in one match).
        Field::TcpFlags => 50,
        Field::IcmpCode => 51,
        Field::NdTarget => 52,
        Field::ArpSha => 53,
        Field::ArpTha => 54,
        Field::MplsLabel => 55,
        Field::MplsTc => 56,
        Field::MplsTtl => 57,
        Field::MplsBos => 58,
        Field::CtState => 1,
        Field::CtZone => 2,
        Field::CtMark => 3,
        Field::CtLabel => 4,
        Field::CtNwSrc => 5,
        Field::CtIpv6Src => 6,
        Field::CtNwDst => 7,
        Field::CtIpv6Dst => 8,
        Field::CtNwProto => 9,
        Field::CtTpSrc => 10,
        Field::CtTpDst => 11,
    }
}

/// A `tun_metadataN` value and mask as OVS prints them: the mask only when it leaves out some bits of the
/// value's bytes (with no TLV map to give the field a length, as `ovs-ofctl parse-flow` has it, the field is
/// as long as the longer of value and mask).
pub(crate) fn tun_metadata_text(value: u128, mask: u128) -> String {
    let bytes = |v: u128| (128 - v.leading_zeros()).div_ceil(8).max(1);
    let len = bytes(value).max(bytes(mask));
    let full = if len >= 16 { u128::MAX } else { (1u128 << (8 * len)) - 1 };
    if mask == u128::MAX || mask == full {
        hex(value)
    } else {
        format!("{}/{}", hex(value), hex(mask))
    }
}

/// A match written the way `ovs-ofctl dump-flows` writes it: the protocol keyword (`ip`, `tcp6`, `arp`, …),
/// then the fields.
pub fn format_matches(matches: &[Match]) -> String {
    let get = |f: Field| matches.iter().find(|m| m.field == f);
    let dl_type = get(Field::DlType).map(|m| m.value as u16);
    let proto = get(Field::NwProto).map(|m| m.value as u8);
    let mut words: Vec<String> = Vec::new();
    let mut proto_said = false;
    let hex_mask = |m: &Match, full: u128| {
        if m.mask == full {
            hex(m.value)
        } else {
            format!("{}/{}", hex(m.value), hex(m.mask))
        }
    };
    // OVS's order: the mark, the protocol keyword, registers, tunnel, metadata, then the packet's fields
    // from the outside in.
    let mut sorted: Vec<&Match> = matches.iter().collect();
    sorted.sort_by_key(|m| (rank(m.field), if let Field::TunMetadata(n) = m.field { n } else { 0 }));
    if let Some(m) = get(Field::PktMark) {
        words.push(format!("pkt_mark={}", hex_mask(m, 0xffff_ffff)));
    }
    // Then what connection tracking found, before the protocol (OVS's order).
    for m in sorted.iter().filter(|m| rank(m.field) < 12) {
        let v4 = |m: &Match| std::net::Ipv4Addr::from(m.value as u32);
        let w = match m.field {
            Field::CtState => format!("ct_state={}", super::ct::format_ct_state(m.value as u8, m.mask as u8)),
            Field::CtZone => format!("ct_zone={}", hex(m.value)),
            Field::CtMark => format!("ct_mark={}", hex_mask(m, 0xffff_ffff)),
            Field::CtLabel => format!("ct_label={}", hex_mask(m, u128::MAX)),
            Field::CtNwSrc | Field::CtNwDst => {
                let name = if m.field == Field::CtNwSrc { "ct_nw_src" } else { "ct_nw_dst" };
                match (m.mask as u32).leading_ones() {
                    32 => format!("{name}={}", v4(m)),
                    n if (m.mask as u32) == u32::MAX.checked_shl(32 - n).unwrap_or(0) => {
                        format!("{name}={}/{n}", v4(m))
                    }
                    _ => format!("{name}={}/{}", v4(m), std::net::Ipv4Addr::from(m.mask as u32)),
                }
            }
            Field::CtIpv6Src | Field::CtIpv6Dst => {
                let name = if m.field == Field::CtIpv6Src { "ct_ipv6_src" } else { "ct_ipv6_dst" };
                let a = Ipv6Addr::from(m.value);
                match m.mask.leading_ones() {
                    128 => format!("{name}={a}"),
                    n if m.mask == u128::MAX.checked_shl(128 - n).unwrap_or(0) => format!("{name}={a}/{n}"),
                    _ => format!("{name}={a}/{}", Ipv6Addr::from(m.mask)),
                }
            }
            Field::CtNwProto => format!("ct_nw_proto={}", m.value),
            Field::ConjId => format!("conj_id={}", m.value),
            Field::CtTpSrc | Field::CtTpDst => {
                let name = if m.field == Field::CtTpSrc { "ct_tp_src" } else { "ct_tp_dst" };
                if m.mask == 0xffff {
                    format!("{name}={}", m.value)
                } else {
                    format!("{name}=0x{:x}/0x{:x}", m.value, m.mask)
                }
            }
            _ => continue,
        };
        words.push(w);
    }
    if let Some(t) = dl_type {
        let word = match (t, proto) {
            (0x0800, Some(1)) => Some("icmp"),
            (0x0800, Some(6)) => Some("tcp"),
            (0x0800, Some(17)) => Some("udp"),
            (0x0800, Some(132)) => Some("sctp"),
            (0x86dd, Some(58)) => Some("icmp6"),
            (0x86dd, Some(6)) => Some("tcp6"),
            (0x86dd, Some(17)) => Some("udp6"),
            (0x86dd, Some(132)) => Some("sctp6"),
            _ => None,
        };
        match word {
            Some(w) => {
                words.push(w.into());
                proto_said = true;
            }
            None => match t {
                0x0800 => words.push("ip".into()),
                0x86dd => words.push("ipv6".into()),
                0x0806 => words.push("arp".into()),
                0x8847 => words.push("mpls".into()),
                0x8848 => words.push("mplsm".into()),
                // Other types are printed in their place, after the Ethernet addresses.
                _ => {}
            },
        }
    }
    let v4 = |m: &Match| {
        let a = std::net::Ipv4Addr::from(m.value as u32);
        match (m.mask as u32).leading_ones() {
            32 => a.to_string(),
            n if (m.mask as u32) == u32::MAX.checked_shl(32 - n).unwrap_or(0) => format!("{a}/{n}"),
            _ => format!("{a}/{}", std::net::Ipv4Addr::from(m.mask as u32)),
        }
    };
    let v6 = |m: &Match| {
        let a = Ipv6Addr::from(m.value);
        match m.mask.leading_ones() {
            128 => a.to_string(),
            n if m.mask == u128::MAX.checked_shl(128 - n).unwrap_or(0) => format!("{a}/{n}"),
            _ => format!("{a}/{}", Ipv6Addr::from(m.mask)),
        }
    };
    let mac = |m: &Match| {
        let a = EthernetAddress::from_bytes(&(m.value as u64).to_be_bytes()[2..]);
        if m.mask == 0xffff_ffff_ffff {
            a.to_string()
        } else {
            format!("{a}/{}", EthernetAddress::from_bytes(&(m.mask as u64).to_be_bytes()[2..]))
        }
    };
    let num = |m: &Match, full: u128| {
        if m.mask == full {
            m.value.to_string()
        } else {
            format!("0x{:x}/0x{:x}", m.value, m.mask)
        }
    };
    for m in sorted {
        let w = match m.field {
            Field::PktMark | Field::XReg(_) | Field::XXReg(_) | Field::ConjId => continue,
            Field::CtState
            | Field::CtZone
            | Field::CtMark
            | Field::CtLabel
            | Field::CtNwSrc
            | Field::CtNwDst
            | Field::CtIpv6Src
            | Field::CtIpv6Dst
            | Field::CtNwProto
            | Field::CtTpSrc
            | Field::CtTpDst => continue,
            Field::Reg(n) => format!("reg{n}={}", hex_mask(m, 0xffff_ffff)),
            Field::TunMetadata(n) => format!("tun_metadata{n}={}", tun_metadata_text(m.value, m.mask)),
            Field::Metadata => format!("metadata={}", hex_mask(m, u128::from(u64::MAX))),
            Field::DlType if !proto_said && !matches!(dl_type, Some(0x0800 | 0x86dd | 0x0806 | 0x8847 | 0x8848)) => {
                format!("dl_type=0x{:04x}", m.value)
            }
            Field::DlType => continue,
            Field::NwProto if proto_said => continue,
            Field::InPort if m.value == u128::from(OFPP_LOCAL) => "in_port=LOCAL".to_string(),
            Field::InPort => format!("in_port={}", m.value),
            Field::DlSrc => format!("dl_src={}", mac(m)),
            Field::DlDst => format!("dl_dst={}", mac(m)),
            Field::VlanTci if m.mask == 0x1fff && m.value & 0x1000 != 0 => format!("dl_vlan={}", m.value & 0xfff),
            Field::VlanTci if m.mask == 0xf000 && m.value & 0x1000 != 0 => format!("dl_vlan_pcp={}", m.value >> 13),
            Field::VlanTci if m.mask == 0xffff && m.value & 0x1000 != 0 => {
                format!("dl_vlan={},dl_vlan_pcp={}", m.value & 0xfff, m.value >> 13)
            }
            Field::VlanTci => format!("vlan_tci=0x{:04x}/0x{:04x}", m.value, m.mask),
            Field::NwSrc => format!("nw_src={}", v4(m)),
            Field::NwDst => format!("nw_dst={}", v4(m)),
            Field::ArpSpa => format!("arp_spa={}", v4(m)),
            Field::ArpTpa => format!("arp_tpa={}", v4(m)),
            Field::ArpOp => format!("arp_op={}", m.value),
            Field::NwProto => format!("nw_proto={}", m.value),
            Field::NwTos => format!("nw_tos={}", m.value),
            Field::TpSrc => format!("tp_src={}", num(m, 0xffff)),
            Field::TpDst => format!("tp_dst={}", num(m, 0xffff)),
            Field::TcpFlags => {
                format!(
                    "tcp_flags={}",
                    super::ct::format_flags(&super::ct::TCP_FLAGS, m.value as u16, m.mask as u16, 0x0fff)
                )
            }
            Field::IcmpType => format!("icmp_type={}", m.value),
            Field::IcmpCode => format!("icmp_code={}", m.value),
            Field::Ipv6Src => format!("ipv6_src={}", v6(m)),
            Field::Ipv6Dst => format!("ipv6_dst={}", v6(m)),
            Field::TunId => format!(
                "tun_id={}",
                if m.mask == u128::from(u64::MAX) {
                    format!("0x{:x}", m.value)
                } else {
                    format!("0x{:x}/0x{:x}", m.value, m.mask)
                }
            ),
            Field::TunSrc => format!("tun_src={}", v4(m)),
            Field::TunDst => format!("tun_dst={}", v4(m)),
            Field::NwEcn => format!("nw_ecn={}", m.value),
            Field::NwTtl => format!("nw_ttl={}", m.value),
            Field::NwFrag => format!(
                "nw_frag={}",
                match (m.value & m.mask, m.mask & 3) {
                    (0, 1) => "no",
                    (1, 1) => "yes",
                    (1, 3) => "first",
                    (3, 3) => "later",
                    (0, 2) => "not_later",
                    (0, 3) => "no",
                    (_, 2) => "later",
                    _ => "yes",
                }
            ),
            Field::Ipv6Label if m.mask == 0xf_ffff => format!("ipv6_label=0x{:05x}", m.value),
            Field::Ipv6Label => format!("ipv6_label=0x{:05x}/0x{:05x}", m.value, m.mask),
            Field::ArpSha if dl_type == Some(0x86dd) => format!("nd_sll={}", mac(m)),
            Field::ArpTha if dl_type == Some(0x86dd) => format!("nd_tll={}", mac(m)),
            Field::ArpSha => format!("arp_sha={}", mac(m)),
            Field::ArpTha => format!("arp_tha={}", mac(m)),
            Field::NdTarget => format!("nd_target={}", v6(m)),
            Field::MplsLabel => format!("mpls_label={}", m.value),
            Field::MplsTc => format!("mpls_tc={}", m.value),
            Field::MplsBos => format!("mpls_bos={}", m.value),
            Field::MplsTtl => format!("mpls_ttl={}", m.value),
        };
        words.push(w);
    }
    words.join(",")
}

/// A list of actions as ovs-ofctl prints it, `write_actions(…)` and (nested) `clone(…)` with what they hold.
fn fmt_actions(f: &mut fmt::Formatter<'_>, actions: &[Action], ctx: Ctx) -> fmt::Result {
    let mut i = 0;
    while i < actions.len() {
        if i > 0 {
            f.write_str(",")?;
        }
        let a = &actions[i];
        match *a {
            Action::WriteActions(_) | Action::Clone(_) => {
                let end = i + 1 + nested_len(actions, i);
                let inner = &actions[i + 1..end];
                f.write_str(if matches!(a, Action::Clone(_)) { "clone(" } else { "write_actions(" })?;
                if inner.is_empty() {
                    f.write_str("drop")?;
                } else {
                    fmt_actions(f, inner, ctx)?;
                }
                f.write_str(")")?;
                i = end;
                continue;
            }
            Action::Learn(l) => {
                let end = i + 1 + nested_len(actions, i);
                f.write_str(&super::learn::format_learn(&l, &actions[i + 1..end]))?;
                i = end;
                continue;
            }
            Action::SetReg { field, value, mask } if is_packet_set(field, mask) => {
                f.write_str(&format_set_field(field, value, mask, ctx))?
            }
            _ => write!(f, "{a}")?,
        }
        i += 1;
    }
    Ok(())
}
