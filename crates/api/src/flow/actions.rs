//! One action of a flow in ovs-ofctl syntax, parsed and checked.

use super::*;

/// Parses one action into `out` (most are one [`Action`]; a `load` of more than 64 bits, or a masked
/// `set_field`, are several loads as OVS keeps them).
pub(super) fn parse_action(
    act: &str,
    resolve: &dyn Fn(&str, &str) -> Result<u32, FlowError>,
    out: &mut Vec<Action>,
) -> Result<(), FlowError> {
    // As ovs-ofctl: the name ends at the first ':', '=' or '(' (`output=2` is `output:2`).
    let (name, arg) = match act.find([':', '(', '=']) {
        Some(i) if matches!(act.as_bytes()[i], b':' | b'=') => (&act[..i], Some(&act[i + 1..])),
        Some(i) => (&act[..i], act[i + 1..].strip_suffix(')')),
        None => (act, None),
    };
    let need = || arg.filter(|a| !a.is_empty()).ok_or_else(|| err(act, "needs an argument"));
    let a = match name.to_ascii_lowercase().as_str() {
        // `output(port=P,max_len=N)`; `output(P)` is `output:P`, as OVS takes it.
        "output" if act.starts_with("output(") && arg.is_some_and(|a| a.contains('=')) => {
            let (mut port, mut max_len) = (None, None);
            for kv in need()?.split(',') {
                match kv.split_once('=') {
                    Some(("port", p)) => {
                        port = Some(match p {
                            "LOCAL" | "local" => crate::flow::OFPP_LOCAL,
                            "IN_PORT" | "in_port" => crate::flow::OFPP_IN_PORT,
                            _ => resolve(act, p)?,
                        })
                    }
                    Some(("max_len", n)) => max_len = Some(num(act, n, u128::from(u32::MAX))? as u32),
                    _ => return Err(err(act, format!("invalid key {kv:?} (output takes port= and max_len=)"))),
                }
            }
            let port = port.ok_or_else(|| err(act, "output(...) needs port="))?;
            match max_len {
                Some(n) if n >= 14 => Action::OutputTrunc(port, n),
                Some(n) => return Err(err(act, format!("max_len {n} is less than the minimum value 14"))),
                None => Action::Output(port),
            }
        }
        "output" => {
            let arg = need()?;
            match arg {
                "in_port" | "IN_PORT" => Action::InPort,
                "NORMAL" | "normal" => Action::Normal,
                "FLOOD" | "flood" => Action::Flood,
                "ALL" | "all" => Action::All,
                "CONTROLLER" | "controller" => Action::Controller,
                _ if arg.contains('[') || sub_field(act, arg).is_ok_and(|s| s.field != Field::InPort) => {
                    let src = sub_field(act, arg)?;
                    if src.nbits > 32 {
                        return Err(err(act, format!("a port number is at most 32 bits, not {}", src.nbits)));
                    }
                    Action::OutputReg(src)
                }
                _ => Action::Output(resolve(act, arg)?),
            }
        }
        "sample" => {
            let mut s = crate::flow::Sample {
                probability: 0,
                collector_set_id: 0,
                obs_domain_id: 0,
                obs_point_id: 0,
                sampling_port: None,
                direction: 0,
            };
            for kv in need()?.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                match kv.split_once('=') {
                    Some(("probability", v)) => {
                        s.probability = num(act, v, 0xffff)? as u16;
                        if s.probability == 0 {
                            return Err(err(act, format!("invalid probability value {v:?}")));
                        }
                    }
                    Some(("collector_set_id", v)) => s.collector_set_id = num(act, v, u128::from(u32::MAX))? as u32,
                    Some(("obs_domain_id", v)) => s.obs_domain_id = num(act, v, u128::from(u32::MAX))? as u32,
                    Some(("obs_point_id", v)) => s.obs_point_id = num(act, v, u128::from(u32::MAX))? as u32,
                    Some(("sampling_port", v)) => s.sampling_port = Some(resolve(act, v)?),
                    None if kv == "ingress" => s.direction = 1,
                    None if kv == "egress" => s.direction = 2,
                    _ => return Err(err(act, format!("invalid key {kv:?} in \"sample\" argument"))),
                }
            }
            if s.probability == 0 {
                return Err(err(act, "non-zero \"probability\" must be specified on sample"));
            }
            Action::Sample(s)
        }
        "normal" => Action::Normal,
        "flood" => Action::Flood,
        "all" => Action::All,
        "in_port" => Action::InPort,
        "local" => Action::Local,
        "controller" => match arg.filter(|a| !a.is_empty()) {
            None => Action::Controller,
            // `controller:N`.
            Some(a) if !a.contains('=') => match num(act, a, 0xffff)? as u16 {
                0xffff => Action::Controller,
                m => Action::ControllerMaxLen(m),
            },
            // `controller(key=value,…)`: max_len, reason and id.
            Some(a) => {
                let (mut max_len, mut reason, mut id) = (0xffffu16, 1u8, 0u16);
                for kv in a.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    match kv.split_once('=').unwrap_or((kv, "")) {
                        ("max_len", v) => max_len = num(act, v, 0xffff)? as u16,
                        ("reason", v) => {
                            reason = packet_in_reason(v).ok_or_else(|| err(act, format!("unknown reason \"{v}\"")))?
                        }
                        ("id", v) => id = num(act, v, 0xffff)? as u16,
                        (k @ ("userdata" | "pause" | "meter_id"), _) => {
                            return Err(err(act, format!("weft does not support controller's {k} (NXAST_CONTROLLER2)")))
                        }
                        (k, _) => return Err(err(act, format!("unknown key {k:?} in controller(…)"))),
                    }
                }
                match (reason, id, max_len) {
                    (1, 0, 0xffff) => Action::Controller,
                    (1, 0, m) => Action::ControllerMaxLen(m),
                    _ => Action::ControllerEx { max_len, reason, id },
                }
            }
        },
        "drop" => Action::Drop,
        "mod_vlan_vid" => Action::ModVlanVid(num(act, need()?, 4095).map_err(|e| err(act, e.why))? as u16),
        "strip_vlan" | "pop_vlan" => Action::StripVlan,
        "push_vlan" => {
            let t = num(act, need()?, 0xffff)? as u16;
            if t != 0x8100 && t != 0x88a8 {
                return Err(err(act, "the TPID must be 0x8100 or 0x88a8"));
            }
            Action::PushVlan(t)
        }
        // As OVS with OpenFlow 1.3: the tunnel ID set by set_field.
        "set_tunnel" | "set_tunnel64" => {
            Action::SetField(SetField::TunId(num(act, need()?, u128::from(u64::MAX))? as u64))
        }
        "mod_nw_ttl" => Action::SetNwTtl(num(act, need()?, 255)? as u8),
        "group" => Action::Group(num(act, need()?, u128::from(crate::group::MAX))? as u32),
        "meter" => match num(act, need()?, u128::from(crate::meter::MAX))? as u32 {
            0 => return Err(err(act, "meter 0 does not exist (meters are numbered from 1)")),
            m => Action::Meter(m),
        },
        "push_mpls" | "pop_mpls" => {
            let t = num(act, need()?, 0xffff)? as u16;
            if name == "push_mpls" && !matches!(t, 0x8847 | 0x8848) {
                return Err(err(act, "push_mpls takes 0x8847 or 0x8848"));
            }
            if name == "push_mpls" {
                Action::PushMpls(t)
            } else {
                Action::PopMpls(t)
            }
        }
        "set_mpls_ttl" => Action::SetMplsTtl(num(act, need()?, 255)? as u8),
        "dec_mpls_ttl" if arg.is_none() => Action::DecMplsTtl,
        "set_mpls_label" | "set_mpls_tc" => {
            let field = if name == "set_mpls_label" { "mpls_label" } else { "mpls_tc" };
            match setfield::parse_set_field(act, field, need()?) {
                Some(a) => a?,
                None => return Err(err(act, "cannot be written")),
            }
        }
        "dec_ttl" if arg.is_none() => Action::DecTtl,
        "dec_ttl" => {
            return Err(err(
                act,
                "controller IDs are not supported (plain dec_ttl sends expired packets to controller 0)",
            ))
        }
        "mod_nw_src" | "mod_nw_dst" | "mod_nw_tos" | "mod_nw_ecn" | "mod_tp_src" | "mod_tp_dst" | "mod_vlan_pcp" => {
            let field = match name {
                "mod_nw_src" => "nw_src",
                "mod_nw_dst" => "nw_dst",
                "mod_nw_tos" => "nw_tos",
                "mod_nw_ecn" => "nw_ecn",
                "mod_tp_src" => "tp_src",
                "mod_tp_dst" => "tp_dst",
                _ => "vlan_pcp",
            };
            match setfield::parse_set_field(act, field, need()?) {
                Some(a) => a?,
                None => return Err(err(act, "cannot be written")),
            }
        }
        "mod_dl_src" | "mod_dl_dst" => {
            let m = EthernetAddress::from_bytes(&(mac(act, need()?)? as u64).to_be_bytes()[2..]);
            Action::SetField(if name == "mod_dl_src" { SetField::EthSrc(m) } else { SetField::EthDst(m) })
        }
        "load" => {
            let arg = need()?;
            let (v, dst) = arg.split_once("->").ok_or_else(|| err(act, "expected load:VALUE->DST"))?;
            let dst = sub_field(act, dst)?;
            if matches!(dst.field, Field::CtMark | Field::CtLabel) {
                return Err(err(act, "cannot set CT fields outside of ct action"));
            }
            if !dst.field.writable() {
                return Err(err(act, format!("weft cannot write {} (it writes {WRITABLE})", dst.field.name())));
            }
            let value = num(act, v, u128::MAX)?;
            if dst.nbits < 128 && value >> dst.nbits != 0 {
                return Err(err(act, format!("value {v} does not fit into {} bits", dst.nbits)));
            }
            let mask = if dst.nbits >= 128 { u128::MAX } else { ((1u128 << dst.nbits) - 1) << dst.ofs };
            // A load of a whole tun_metadata field is its set_field (as OVS has it: the field has no fixed
            // width to split into loads).
            if matches!(dst.field, Field::TunMetadata(_)) && mask == u128::MAX {
                out.push(Action::SetReg { field: dst.field, value, mask });
                return Ok(());
            }
            out.extend(loads(dst.field, value << dst.ofs, mask));
            return Ok(());
        }
        "move" => {
            let arg = need()?;
            let (src, dst) = arg.split_once("->").ok_or_else(|| err(act, "expected move:SRC->DST"))?;
            let (src, dst) = (sub_field(act, src)?, sub_field(act, dst)?);
            if src.nbits != dst.nbits {
                return Err(err(act, format!("source is {} bits, destination {} bits", src.nbits, dst.nbits)));
            }
            if matches!(dst.field, Field::CtMark | Field::CtLabel) {
                return Err(err(act, "cannot set CT fields outside of ct action"));
            }
            if !dst.field.writable() {
                return Err(err(act, format!("weft cannot write {} (it writes {WRITABLE})", dst.field.name())));
            }
            Action::Move { src, dst }
        }
        "bundle" | "bundle_load" => Action::Bundle(bundle::parse(act, need()?, name == "bundle_load", resolve)?),
        "multipath" => Action::Multipath(bundle::parse_multipath(act, need()?)?),
        "push" | "pop" => {
            let sf = sub_field(act, need()?)?;
            if name == "push" {
                Action::StackPush(sf)
            } else if sf.field.writable() {
                Action::StackPop(sf)
            } else {
                return Err(err(act, format!("weft cannot write {} (it writes {WRITABLE})", sf.field.name())));
            }
        }
        "exit" if arg.is_none() => Action::Exit,
        "learn" => return learn::parse_learn(act, arg.unwrap_or(""), resolve, out),
        "fin_timeout" => {
            let (mut idle, mut hard) = (0, 0);
            for kv in arg.unwrap_or("").split(',').map(str::trim).filter(|k| !k.is_empty()) {
                match kv.split_once('=') {
                    Some(("idle_timeout", v)) => {
                        idle = num(act, v, 0xffff).map_err(|_| err(act, format!("invalid idle_timeout {v:?}")))? as u16
                    }
                    Some(("hard_timeout", v)) => {
                        hard = num(act, v, 0xffff).map_err(|_| err(act, format!("invalid hard_timeout {v:?}")))? as u16
                    }
                    _ => return Err(err(act, format!("invalid key {kv:?} in 'fin_timeout' argument"))),
                }
            }
            Action::FinTimeout { idle, hard }
        }
        // `conjunction(id, k/n)`, spaces allowed around the numbers.
        "conjunction" => {
            let a = need()?;
            let (id, kn) = a.split_once(',').ok_or_else(|| err(act, "conjunction takes (id, k/n)"))?;
            let (k, n) = kn.split_once('/').ok_or_else(|| err(act, "conjunction takes (id, k/n)"))?;
            let id = num(act, id.trim(), u128::from(u32::MAX))? as u32;
            let (k, n) = (num(act, k.trim(), 255)? as u8, num(act, n.trim(), 255)? as u8);
            match (k, n) {
                (_, ..=1) => return Err(err(act, "conjunction must have at least 2 clauses")),
                (_, 65..) => return Err(err(act, "conjunction must have at most 64 clauses")),
                (0, _) => return Err(err(act, "clause index must be positive")),
                (k, n) if k > n => {
                    return Err(err(act, "clause index must be less than or equal to number of clauses"))
                }
                _ => Action::Conjunction { id, k, n },
            }
        }
        "ct" => super::ct::parse_ct(act, arg.unwrap_or(""))?,
        "ct_clear" if arg.is_none() => Action::CtClear,
        "nat" => return Err(err(act, "Cannot have NAT action outside of \"ct\" action")),
        "note" => {
            let hex: String = arg.unwrap_or_default().chars().filter(|c| *c != '.').collect();
            let bad = || err(act, "a note is hex digits in pairs (note:41.42.43)");
            if !hex.len().is_multiple_of(2) {
                return Err(bad());
            }
            let raw = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).map_err(|_| bad()))
                .collect::<Result<Vec<u8>, _>>()?;
            note(&raw).ok_or_else(|| err(act, format!("weft keeps notes of up to {} bytes", NOTE_MAX - 2)))?
        }
        "set_queue" => Action::SetQueue(num(act, need()?, u128::from(u32::MAX))? as u32),
        "pop_queue" if arg.is_none() => Action::PopQueue,
        // enqueue:PORT:QUEUE (or enqueue(PORT,QUEUE)): as OVS keeps it, set_queue, output, pop_queue.
        "enqueue" => {
            let a = need()?;
            let (p, q) = a.split_once([':', ',']).ok_or_else(|| err(act, "expected enqueue:PORT:QUEUE"))?;
            let q = num(act, q.trim(), u128::from(u32::MAX))? as u32;
            let port = resolve(act, p.trim())?;
            out.extend([Action::SetQueue(q), Action::Output(port), Action::PopQueue]);
            return Ok(());
        }
        "clear_actions" if arg.is_none() => Action::ClearActions,
        "clone" => {
            let mut inner = Vec::new();
            for a in split_actions(arg.unwrap_or("")) {
                parse_action(a, resolve, &mut inner)?;
            }
            inner.retain(|a| *a != Action::Drop);
            let instruction = inner.iter().find_map(|a| match a {
                Action::GotoTable(_) => Some("goto_table"),
                Action::WriteMetadata { .. } => Some("write_metadata"),
                Action::ClearActions => Some("clear_actions"),
                Action::WriteActions(_) => Some("write_actions"),
                Action::Meter(_) => Some("meter"),
                _ => None,
            });
            if let Some(i) = instruction {
                return Err(err(act, format!("{i} instruction not allowed here")));
            }
            let n = u8::try_from(inner.len()).map_err(|_| err(act, "more than 255 actions in clone"))?;
            out.push(Action::Clone(n));
            out.extend(inner);
            return Ok(());
        }
        "write_actions" => {
            let mut set = Vec::new();
            for a in split_actions(arg.unwrap_or("")) {
                parse_action(a, resolve, &mut set)?;
            }
            set.retain(|a| *a != Action::Drop);
            if let Some(bad) = set.iter().find(|a| action_set_class(a).is_none()) {
                return Err(err(act, format!("{bad} is not allowed in an action set")));
            }
            let n = u8::try_from(set.len()).map_err(|_| err(act, "more than 255 actions in write_actions"))?;
            out.push(Action::WriteActions(n));
            out.extend(set);
            return Ok(());
        }
        "write_metadata" => {
            let (value, mask) = num_mask(act, need()?, u128::from(u64::MAX))?;
            Action::WriteMetadata { value: (value & mask) as u64, mask: mask as u64 }
        }
        "set_field" => {
            let arg = need()?;
            let (v, field) = arg.split_once("->").ok_or_else(|| err(act, "expected set_field:VALUE->FIELD"))?;
            let sf = match field {
                "ct_mark" | "ct_label" => return Err(err(act, "cannot set CT fields outside of ct action")),
                "eth_src" | "dl_src" => {
                    SetField::EthSrc(EthernetAddress::from_bytes(&(mac(act, v)? as u64).to_be_bytes()[2..]))
                }
                "eth_dst" | "dl_dst" => {
                    SetField::EthDst(EthernetAddress::from_bytes(&(mac(act, v)? as u64).to_be_bytes()[2..]))
                }
                "vlan_vid" => SetField::VlanVid((num(act, v, 0x1fff)? & 0x0fff) as u16),
                "tun_id" | "tunnel_id" => SetField::TunId(num(act, v, u128::from(u64::MAX))? as u64),
                "tun_dst" => SetField::TunDst(v.parse().map_err(|_| err(act, format!("{v:?} is not an IP address")))?),
                other if setfield::parse_set_field(act, other, v).is_some() => {
                    if let Some(a) = setfield::parse_set_field(act, other, v) {
                        out.push(a?);
                    }
                    return Ok(());
                }
                other => {
                    let sub = sub_field(act, other).ok().filter(|s| {
                        matches!(
                            s.field,
                            Field::Reg(_)
                                | Field::XReg(_)
                                | Field::XXReg(_)
                                | Field::Metadata
                                | Field::PktMark
                                | Field::TunMetadata(_)
                        ) && !other.contains('[')
                    });
                    let Some(sub) = sub else {
                        return Err(err(
                            act,
                            format!(
                                "cannot set {other:?} (weft sets eth_src, eth_dst, vlan_vid, tun_id, tun_dst, \
                                     registers, metadata, pkt_mark and tun_metadata)"
                            ),
                        ));
                    };
                    let full = if sub.nbits == 128 { u128::MAX } else { (1u128 << sub.nbits) - 1 };
                    let (value, mask) = num_mask(act, v, full)?;
                    // As OVS: under a mask, the bits are loads.
                    if mask == full {
                        out.push(Action::SetReg { field: sub.field, value, mask });
                    } else {
                        out.extend(loads(sub.field, value, mask));
                    }
                    return Ok(());
                }
            };
            Action::SetField(sf)
        }
        "resubmit" => {
            let arg = need()?;
            let (p, t) = arg.split_once(',').map_or((arg, ""), |(p, t)| (p, t));
            let port = if p.trim().is_empty() { None } else { Some(resolve(act, p.trim())?) };
            let table = if t.trim().is_empty() { None } else { Some(num(act, t.trim(), 254)? as u8) };
            if port.is_none() && table.is_none() {
                return Err(err(act, "needs a port or a table: resubmit(PORT) or resubmit(,TABLE)"));
            }
            Action::Resubmit { port, table }
        }
        "goto_table" => Action::GotoTable(num(act, need()?, 254)? as u8),
        _ if arg.is_none() && act.bytes().all(|b| b.is_ascii_digit()) => Action::Output(resolve(act, act)?),
        other => return Err(err(act, format!("unknown action {other:?}"))),
    };
    out.push(a);
    Ok(())
}

/// OpenFlow's packet-in reasons by the names ovs-ofctl gives them.
pub const PACKET_IN_REASONS: [&str; 6] = ["no_match", "action", "invalid_ttl", "action_set", "group", "packet_out"];

/// The number of a packet-in reason name.
pub fn packet_in_reason(name: &str) -> Option<u8> {
    PACKET_IN_REASONS.iter().position(|r| *r == name).map(|i| i as u8)
}
