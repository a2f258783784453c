//! Answering a connection's OpenFlow requests: FEATURES, configuration, FLOW_MOD (one configuration
//! transaction each), and the multipart statistics and descriptions.

use super::*;

/// Answers one request.
pub(super) fn handle(
    st: &mut dyn Daemon,
    bridge: &str,
    h: &of::Header,
    m: &[u8],
    miss_send_len: &mut u16,
) -> Vec<Vec<u8>> {
    let body = &m[of::HEADER_LEN..];
    let reply = |kind: u8, fill: &dyn Fn(&mut Vec<u8>)| {
        let mut r = Vec::new();
        let at = of::start(&mut r, kind, h.xid);
        fill(&mut r);
        of::finish(&mut r, at);
        r
    };
    match h.kind {
        msg::ECHO_REQUEST => vec![reply(msg::ECHO_REPLY, &|r| r.extend_from_slice(body))],
        msg::FEATURES_REQUEST => vec![reply(msg::FEATURES_REPLY, &|r| {
            r.extend_from_slice(&datapath_id(st, bridge).to_be_bytes());
            r.extend_from_slice(&0u32.to_be_bytes()); // n_buffers
            r.push(254); // n_tables
            r.push(0); // auxiliary_id
            r.extend_from_slice(&[0, 0]);
            r.extend_from_slice(&(0x1u32 | 0x2 | 0x4).to_be_bytes()); // flow, table and port stats
            r.extend_from_slice(&[0; 4]);
        })],
        msg::GET_CONFIG_REQUEST => {
            let len = *miss_send_len;
            vec![reply(msg::GET_CONFIG_REPLY, &|r| {
                r.extend_from_slice(&[0, 0]);
                r.extend_from_slice(&len.to_be_bytes());
            })]
        }
        msg::SET_CONFIG => {
            if body.len() >= 4 {
                *miss_send_len = u16::from_be_bytes([body[2], body[3]]);
            }
            vec![]
        }
        msg::BARRIER_REQUEST => vec![reply(msg::BARRIER_REPLY, &|_| {})],
        msg::GET_ASYNC_REQUEST => vec![reply(msg::GET_ASYNC_REPLY, &|r| {
            // packet-in, port-status, flow-removed masks for master/equal and slave.
            for v in [0x7u32, 0x0, 0x7, 0x7, 0xf, 0x0] {
                r.extend_from_slice(&v.to_be_bytes());
            }
        })],
        msg::SET_ASYNC => vec![],
        msg::FLOW_MOD => match flow_mod(st, bridge, body) {
            Ok(()) => vec![],
            Err(e) => vec![error_msg(h.xid, e, m)],
        },
        msg::GROUP_MOD => match super::groups::group_mod(st, bridge, body) {
            Ok(()) => vec![],
            Err(e) => vec![error_msg(h.xid, e, m)],
        },
        msg::PORT_MOD => {
            let r = match body {
                [a, b, c, d, _, _, _, _, m @ ..] if m.len() >= 16 => {
                    let hw: [u8; 6] = [m[0], m[1], m[2], m[3], m[4], m[5]];
                    let word = |i: usize| u32::from_be_bytes([m[i], m[i + 1], m[i + 2], m[i + 3]]);
                    super::ports::port_mod(st, bridge, u32::from_be_bytes([*a, *b, *c, *d]), hw, word(8), word(12))
                }
                _ => Err((error::BAD_REQUEST, error::BAD_LEN)),
            };
            match r {
                Ok(()) => vec![],
                Err(e) => vec![error_msg(h.xid, e, m)],
            }
        }
        msg::METER_MOD => match super::meters::meter_mod(st, bridge, body) {
            Ok(()) => vec![],
            Err(e) => vec![error_msg(h.xid, e, m)],
        },
        msg::PACKET_OUT => match packet_out(st, bridge, body) {
            Ok(()) => vec![],
            Err(e) => vec![error_msg(h.xid, e, m)],
        },
        msg::MULTIPART_REQUEST => match multipart(st, bridge, h.xid, body) {
            Ok(r) => r,
            Err(e) => vec![error_msg(h.xid, e, m)],
        },
        msg::EXPERIMENTER => match experimenter(st, bridge, body) {
            Ok(Some((sub, data))) => vec![reply(msg::EXPERIMENTER, &|r| {
                r.extend_from_slice(&of::act::NX_VENDOR.to_be_bytes());
                r.extend_from_slice(&sub.to_be_bytes());
                r.extend_from_slice(&data);
            })],
            Ok(None) => vec![],
            Err(e) => vec![error_msg(h.xid, e, m)],
        },
        _ => vec![error_msg(h.xid, (error::BAD_REQUEST, error::BAD_TYPE), m)],
    }
}

/// An experimenter reply: Nicira's subtype and the body after it.
type ExpReply = Option<(u32, Vec<u8>)>;

/// Nicira's experimenter messages over OpenFlow 1.3: the TLV table's.
fn experimenter(st: &mut dyn Daemon, bridge: &str, body: &[u8]) -> Result<ExpReply, (u16, u16)> {
    const BAD_EXPERIMENTER: u16 = 3;
    const BAD_EXP_TYPE: u16 = 4;
    if body.len() < 8 {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    if u32::from_be_bytes([body[0], body[1], body[2], body[3]]) != of::act::NX_VENDOR {
        return Err((error::BAD_REQUEST, BAD_EXPERIMENTER));
    }
    match u32::from_be_bytes([body[4], body[5], body[6], body[7]]) {
        super::tlv::TABLE_MOD => super::tlv::table_mod(st, bridge, &body[8..], false).map(|()| None),
        super::tlv::TABLE_REQUEST => Ok(Some((super::tlv::TABLE_REPLY, super::tlv::table_reply(st, bridge)))),
        _ => Err((error::BAD_REQUEST, BAD_EXP_TYPE)),
    }
}

/// The bridge's datapath ID (`other_config:datapath-id`, else derived from its name).
pub(super) fn datapath_id(st: &dyn Daemon, bridge: &str) -> u64 {
    match st.config().bridges.iter().find(|b| b.name == bridge) {
        Some(b) => b.datapath_id(),
        None => weft_api::config::name_datapath_id(bridge),
    }
}

/// A PACKET_OUT: checked here (the frame must be in the message; the input port one of the bridge's, its
/// internal port, or the controller), then run by datapath worker 0.
fn packet_out(st: &mut dyn Daemon, bridge: &str, body: &[u8]) -> Result<(), (u16, u16)> {
    let po = of::PacketOut::parse(body).map_err(|_| (error::BAD_REQUEST, error::BAD_LEN))?;
    let actions = weft_api::ofp::packet_out_actions(po.actions)?;
    run_packet_out(st, bridge, po.buffer_id, po.in_port, actions, po.data)
}

/// Checks a packet-out (of any OpenFlow version, decoded) and hands it to datapath worker 0.
pub(super) fn run_packet_out(
    st: &mut dyn Daemon,
    bridge: &str,
    buffer_id: u32,
    in_port: u32,
    actions: Vec<weft_api::flow::Action>,
    data: &[u8],
) -> Result<(), (u16, u16)> {
    const BUFFER_UNKNOWN: u16 = 8;
    const BAD_PORT: u16 = 11;
    const BAD_PACKET: u16 = 12;
    if buffer_id != of::NO_BUFFER {
        // weft buffers nothing: its packet-ins carry the whole frame (buffer_id none).
        return Err((error::BAD_REQUEST, BUFFER_UNKNOWN));
    }
    let b = st.config().bridge(bridge).ok_or((error::BAD_REQUEST, BAD_PORT))?;
    // weft learns from flows only (a learned flow names the flow that learned it).
    if actions.iter().any(|a| matches!(a, weft_api::flow::Action::Learn(_))) {
        return Err((error::BAD_ACTION, error::BAD_ACTION_TYPE));
    }
    // Tunnel metadata the bridge maps, only.
    if weft_api::tlv::actions_use(&actions).into_iter().any(|n| !b.tlv_map.iter().any(|m| m.index == n)) {
        return Err((error::BAD_ACTION, error::BAD_SET_TYPE));
    }
    let known = in_port == of::port::LOCAL || b.ports.iter().any(|p| p.ofport == in_port);
    if !known && !matches!(in_port, of::port::CONTROLLER | of::port::ANY) {
        return Err((error::BAD_REQUEST, BAD_PORT));
    }
    if data.len() < 14 || data.len() > 65_535 {
        return Err((error::BAD_REQUEST, BAD_PACKET));
    }
    st.dp().send(DpMsg::PacketOut { bridge: bridge.to_string(), in_port, actions, frame: data.to_vec() });
    Ok(())
}

/// Parses a FLOW_MOD and applies it as a configuration change.
fn flow_mod(st: &mut dyn Daemon, bridge: &str, body: &[u8]) -> Result<(), (u16, u16)> {
    let bad_len = (error::BAD_REQUEST, error::BAD_LEN);
    let fm = of::FlowMod::parse(body).map_err(|_| bad_len)?;
    let (tlvs, mlen) = of::parse_match(&body[of::FLOW_MOD_LEN..]).map_err(|_| (error::BAD_MATCH, 1))?;
    let matches = weft_api::ofp::matches_from_oxm(&tlvs)?;
    let inst_at = of::FLOW_MOD_LEN + mlen;
    let insts = of::parse_tlvs(body.get(inst_at..).unwrap_or_default(), "instruction")
        .map_err(|_| (error::BAD_INSTRUCTION, 4))?; // BAD_LEN
    let actions = weft_api::ofp::actions_from_instructions(&insts)?;
    apply_flow_mod(st, bridge, &fm, matches, actions)
}

/// Applies a FLOW_MOD (of any OpenFlow version, decoded) as one configuration change.
pub(super) fn apply_flow_mod(
    st: &mut dyn Daemon,
    bridge: &str,
    fm: &of::FlowMod,
    matches: Vec<weft_api::flow::Match>,
    actions: Vec<weft_api::flow::Action>,
) -> Result<(), (u16, u16)> {
    if fm.table_id > 254 && matches!(fm.command, of::flow_cmd::ADD | of::flow_cmd::MODIFY | of::flow_cmd::MODIFY_STRICT)
    {
        return Err((error::FLOW_MOD_FAILED, error::BAD_TABLE_ID));
    }
    let mut flow: Flow = weft_api::ofp::flow_from_flow_mod(fm, matches, actions);
    // Prerequisites, as ovs-ofctl's parser checks them: round-trip through the text form.
    if let Err(e) = weft_api::flow::parse(&flow.to_string(), &|p| p.parse().ok()) {
        tracing::warn!("OpenFlow flow_mod refused: {e}");
        return Err((error::BAD_MATCH, error::BAD_PREREQ));
    }
    let mut new = st.config().clone();
    // A group the flow sends to, a meter it uses, must be there.
    let b = new.bridges.iter().find(|b| b.name == bridge);
    for a in &flow.actions {
        if let weft_api::flow::Action::Group(g) = *a {
            if !b.is_some_and(|b| b.groups.iter().any(|x| x.id == g)) {
                return Err((error::BAD_ACTION, error::BAD_OUT_GROUP));
            }
        }
        if let weft_api::flow::Action::Meter(m) = *a {
            if !b.is_some_and(|b| b.meters.iter().any(|x| x.id == m)) {
                return Err((error::METER_MOD_FAILED, error::meter::INVALID_METER));
            }
        }
    }
    // Tunnel metadata: mapped (else NXFMFC_INVALID_TLV_FIELD, as OVS).
    if matches!(fm.command, of::flow_cmd::ADD | of::flow_cmd::MODIFY | of::flow_cmd::MODIFY_STRICT) {
        const INVALID_TLV_FIELD: u16 = 37;
        if let Err(e) = weft_api::tlv::check_flow(b.map_or(&[], |b| &b.tlv_map), &flow) {
            tracing::warn!("OpenFlow flow_mod refused: {e}");
            return Err((super::tlv::EXPERIMENTER_ERROR, INVALID_TLV_FIELD));
        }
    }
    let r = match fm.command {
        of::flow_cmd::ADD => {
            flow.cookie_mask = 0;
            new.add_parsed_flows(bridge, vec![flow])
        }
        of::flow_cmd::MODIFY | of::flow_cmd::MODIFY_STRICT => {
            new.mod_parsed_flows(bridge, &flow, fm.command == of::flow_cmd::MODIFY_STRICT)
        }
        of::flow_cmd::DELETE | of::flow_cmd::DELETE_STRICT => {
            new.del_parsed_flows(bridge, Some(&flow), fm.command == of::flow_cmd::DELETE_STRICT)
        }
        _ => return Err((error::FLOW_MOD_FAILED, error::BAD_COMMAND)),
    };
    // OFPFMFC_OVERLAP for an ADD that check_overlap refused; otherwise UNKNOWN.
    let overlap = fm.command == of::flow_cmd::ADD && fm.flags & 2 != 0;
    r.map_err(|e| {
        let code = if overlap && matches!(e, weft_api::ConfigError::Conflict(_)) { error::OVERLAP } else { 0 };
        (error::FLOW_MOD_FAILED, code)
    })?;
    st.commit_config(new).map_err(|e| {
        tracing::warn!("OpenFlow flow_mod failed: {e}");
        (error::FLOW_MOD_FAILED, 0)
    })
}

/// The switch description (`ofp_desc`, the same in every OpenFlow version).
pub(super) fn desc(bridge: &str) -> Vec<u8> {
    let mut e = Vec::new();
    for (text, len) in
        [("weft", 256), ("userspace overlay switch", 256), (env!("CARGO_PKG_VERSION"), 256), ("", 32), (bridge, 256)]
    {
        let mut f = text.as_bytes().to_vec();
        f.resize(len, 0);
        e.extend_from_slice(&f);
    }
    e
}

/// A flow as statistics report it.
pub(super) struct Selected {
    pub flow: Flow,
    pub packets: u64,
    pub bytes: u64,
    /// Time since it was added.
    pub age: Duration,
}

/// The bridge's flows `filter` covers (non-strict, as flow statistics select), with an output to `out_port`
/// unless that is OFPP_ANY.
pub(super) fn select_flows(
    st: &mut dyn Daemon,
    bridge: &str,
    filter: &Flow,
    out_port: u32,
) -> Result<Vec<Selected>, (u16, u16)> {
    let stats = st.flow_counters(bridge);
    let Some(b) = st.config().bridge(bridge) else { return Err((error::BAD_REQUEST, 0)) };
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Ok(b.flows
        .iter()
        .filter(|s| {
            s.flow.covered_by(filter)
                && (out_port == of::port::ANY
                    || s.flow
                        .actions
                        .iter()
                        .any(|a| matches!(a.plain(), weft_api::flow::Action::Output(p) if p == out_port)))
        })
        .map(|s| {
            let (packets, bytes) = stats.get(&s.id).copied().unwrap_or_default();
            Selected { flow: s.flow.clone(), packets, bytes, age: now.saturating_sub(Duration::from_secs(s.added)) }
        })
        .collect())
}

/// Multipart replies, split so that no message exceeds 64 KiB (all but the last flagged "more").
fn multipart(st: &mut dyn Daemon, bridge: &str, xid: u32, body: &[u8]) -> Result<Vec<Vec<u8>>, (u16, u16)> {
    if body.len() < 8 {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let kind = u16::from_be_bytes([body[0], body[1]]);
    let req = &body[8..];
    let mut entries: Vec<Vec<u8>> = Vec::new();
    match kind {
        of::mp::DESC => entries.push(desc(bridge)),
        of::mp::GROUP_DESC | of::mp::GROUP_FEATURES => entries.extend(super::groups::describe(st, bridge, kind)),
        of::mp::GROUP => entries.extend(super::groups::stats(st, bridge, req)?),
        of::mp::METER | of::mp::METER_CONFIG | of::mp::METER_FEATURES => {
            entries.extend(super::meters::describe(st, bridge, kind, req)?)
        }
        of::mp::FLOW | of::mp::AGGREGATE => {
            if req.len() < 32 {
                return Err((error::BAD_REQUEST, error::BAD_LEN));
            }
            let table = req[0];
            let out_port = u32::from_be_bytes([req[4], req[5], req[6], req[7]]);
            let cookie = of::read_u64(req, 16);
            let cookie_mask = of::read_u64(req, 24);
            let (tlvs, _) = of::parse_match(&req[32..]).map_err(|_| (error::BAD_MATCH, 1))?;
            let matches = weft_api::ofp::matches_from_oxm(&tlvs)?;
            let mut filter = weft_api::flow::parse("", &|_| None).map_err(|_| (error::BAD_REQUEST, 0))?;
            filter.matches = matches;
            filter.table = table;
            filter.has_table = table != 0xff;
            filter.cookie = cookie;
            filter.cookie_mask = cookie_mask;
            let selected = select_flows(st, bridge, &filter, out_port)?;
            if kind == of::mp::AGGREGATE {
                let (mut packets, mut bytes, mut n) = (0u64, 0u64, 0u32);
                for s in selected {
                    packets += s.packets;
                    bytes += s.bytes;
                    n += 1;
                }
                let mut e = packets.to_be_bytes().to_vec();
                e.extend_from_slice(&bytes.to_be_bytes());
                e.extend_from_slice(&n.to_be_bytes());
                e.extend_from_slice(&[0; 4]);
                entries.push(e);
            } else {
                for s in selected {
                    let f = &s.flow;
                    let (packets, bytes, age) = (s.packets, s.bytes, s.age);
                    let mut e = vec![0, 0, f.table, 0];
                    e.extend_from_slice(&(age.as_secs() as u32).to_be_bytes());
                    e.extend_from_slice(&age.subsec_nanos().to_be_bytes());
                    e.extend_from_slice(&f.priority.to_be_bytes());
                    e.extend_from_slice(&f.idle_timeout.to_be_bytes());
                    e.extend_from_slice(&f.hard_timeout.to_be_bytes());
                    e.extend_from_slice(&f.of_flags().to_be_bytes());
                    // 1.3's padding, where 1.4 has the importance.
                    e.extend_from_slice(&f.importance.to_be_bytes());
                    e.extend_from_slice(&[0; 2]);
                    e.extend_from_slice(&f.cookie.to_be_bytes());
                    e.extend_from_slice(&packets.to_be_bytes());
                    e.extend_from_slice(&bytes.to_be_bytes());
                    of::put_match(&mut e, |o| weft_api::ofp::put_matches(o, &f.matches));
                    weft_api::ofp::put_instructions(&mut e, &f.actions, weft_api::flow::Ctx::of(&f.matches));
                    let len = e.len() as u16;
                    e[0..2].copy_from_slice(&len.to_be_bytes());
                    entries.push(e);
                }
            }
        }
        of::mp::PORT_STATS | of::mp::PORT_DESC => {
            let want = if kind == of::mp::PORT_STATS && req.len() >= 4 {
                u32::from_be_bytes([req[0], req[1], req[2], req[3]])
            } else {
                of::port::ANY
            };
            for (name, ofport, c) in st.port_counters(bridge) {
                let ofport = if ofport == crate::pipeline::OFPORT_LOCAL { of::port::LOCAL } else { ofport };
                if want != of::port::ANY && want != ofport {
                    continue;
                }
                let mut e = ofport.to_be_bytes().to_vec();
                e.extend_from_slice(&[0; 4]);
                if kind == of::mp::PORT_DESC {
                    e = port_desc(ofport, &name, st.link_down(&name), super::ports::config_of(st, bridge, &name));
                } else {
                    let dropped: u64 = c.drops.iter().sum();
                    for v in [c.rx_packets, c.tx_packets, c.rx_bytes, c.tx_bytes, dropped, 0, 0, 0, 0, 0, 0, 0] {
                        e.extend_from_slice(&v.to_be_bytes());
                    }
                    e.extend_from_slice(&[0; 8]); // duration
                }
                entries.push(e);
            }
        }
        // Table features: every table, with the eight properties OpenFlow requires, listing what weft
        // matches and does (the same for every table).
        12 => {
            let prop = |e: &mut Vec<u8>, kind: u16, items: &[u8]| {
                let at = e.len();
                e.extend_from_slice(&kind.to_be_bytes());
                e.extend_from_slice(&((4 + items.len()) as u16).to_be_bytes());
                e.extend_from_slice(items);
                of::pad8(e, at);
            };
            let tlv_heads = |kinds: &[u16]| -> Vec<u8> {
                kinds.iter().flat_map(|k| [k.to_be_bytes()[0], k.to_be_bytes()[1], 0, 4]).collect()
            };
            let oxm_heads = |fields: &[(u16, u8, u8)]| -> Vec<u8> {
                fields.iter().flat_map(|(c, f, l)| [c.to_be_bytes()[0], c.to_be_bytes()[1], f << 1, *l]).collect()
            };
            use of::oxm::*;
            let fields = [
                (CLASS_BASIC, IN_PORT, 4),
                (CLASS_BASIC, ETH_DST, 6),
                (CLASS_BASIC, ETH_SRC, 6),
                (CLASS_BASIC, ETH_TYPE, 2),
                (CLASS_BASIC, VLAN_VID, 2),
                (CLASS_BASIC, VLAN_PCP, 1),
                (CLASS_BASIC, IP_DSCP, 1),
                (CLASS_BASIC, IP_PROTO, 1),
                (CLASS_BASIC, IPV4_SRC, 4),
                (CLASS_BASIC, IPV4_DST, 4),
                (CLASS_BASIC, TCP_SRC, 2),
                (CLASS_BASIC, TCP_DST, 2),
                (CLASS_BASIC, UDP_SRC, 2),
                (CLASS_BASIC, UDP_DST, 2),
                (CLASS_BASIC, ICMPV4_TYPE, 1),
                (CLASS_BASIC, ICMPV4_CODE, 1),
                (CLASS_BASIC, ARP_OP, 2),
                (CLASS_BASIC, ARP_SPA, 4),
                (CLASS_BASIC, ARP_TPA, 4),
                (CLASS_BASIC, IPV6_SRC, 16),
                (CLASS_BASIC, IPV6_DST, 16),
                (CLASS_BASIC, ICMPV6_TYPE, 1),
                (CLASS_BASIC, ICMPV6_CODE, 1),
                (CLASS_BASIC, TUNNEL_ID, 8),
                (CLASS_BASIC, METADATA, 8),
                (CLASS_NXM1, NX_PKT_MARK, 4),
            ]
            .into_iter()
            .chain((0..16).map(|n| (CLASS_NXM1, NX_REG0 + n, 4)))
            .collect::<Vec<_>>();
            let set_fields = [
                (CLASS_BASIC, VLAN_VID, 2),
                (CLASS_BASIC, ETH_DST, 6),
                (CLASS_BASIC, ETH_SRC, 6),
                (CLASS_BASIC, TUNNEL_ID, 8),
                (CLASS_BASIC, METADATA, 8),
                (CLASS_NXM1, NX_PKT_MARK, 4),
            ]
            .into_iter()
            .chain((0..16).map(|n| (CLASS_NXM1, NX_REG0 + n, 4)))
            .collect::<Vec<_>>();
            let insts = tlv_heads(&[
                of::inst::GOTO_TABLE,
                of::inst::WRITE_METADATA,
                of::inst::APPLY_ACTIONS,
                of::inst::CLEAR_ACTIONS,
            ]);
            let acts = tlv_heads(&[of::act::OUTPUT, of::act::PUSH_VLAN, of::act::POP_VLAN, of::act::SET_FIELD]);
            let (matches, sets) = (oxm_heads(&fields), oxm_heads(&set_fields));
            for t in 0u8..254 {
                let mut e = vec![0, 0, t, 0, 0, 0, 0, 0];
                let mut name = format!("table{t}").into_bytes();
                name.resize(32, 0);
                e.extend_from_slice(&name);
                e.extend_from_slice(&[0xff; 16]); // metadata match / write: every bit
                e.extend_from_slice(&[0; 4]); // config
                e.extend_from_slice(&1_000_000u32.to_be_bytes()); // max_entries
                let next: Vec<u8> = (t.saturating_add(1)..254).collect();
                prop(&mut e, 0, &insts); // INSTRUCTIONS
                prop(&mut e, 2, &next); // NEXT_TABLES
                prop(&mut e, 4, &[]); // WRITE_ACTIONS
                prop(&mut e, 6, &acts); // APPLY_ACTIONS
                prop(&mut e, 8, &matches); // MATCH
                prop(&mut e, 10, &matches); // WILDCARDS
                prop(&mut e, 12, &[]); // WRITE_SETFIELD
                prop(&mut e, 14, &sets); // APPLY_SETFIELD
                let len = e.len() as u16;
                e[0..2].copy_from_slice(&len.to_be_bytes());
                entries.push(e);
            }
        }
        of::mp::TABLE => {
            let Some(b) = st.config().bridge(bridge) else { return Err((error::BAD_REQUEST, 0)) };
            let top = b.flows.iter().map(|f| f.flow.table).max().unwrap_or(0);
            let counts = st.table_stats(bridge);
            for t in 0..=top {
                let mut e = vec![t, 0, 0, 0];
                let n = b.flows.iter().filter(|f| f.flow.table == t).count() as u32;
                e.extend_from_slice(&n.to_be_bytes());
                let (lookups, matched) = counts.get(usize::from(t)).copied().unwrap_or((0, 0));
                e.extend_from_slice(&lookups.to_be_bytes());
                e.extend_from_slice(&matched.to_be_bytes());
                entries.push(e);
            }
        }
        _ => return Err((error::BAD_REQUEST, error::BAD_MULTIPART)),
    }
    let mut head = kind.to_be_bytes().to_vec();
    head.extend_from_slice(&[0; 6]); // flags, pad
    Ok(split_replies(of::VERSION, msg::MULTIPART_REPLY, xid, &head, &entries))
}

/// Statistics replies (any version) of at most ~60 KiB: the header, `head` (type, then the flags at its bytes
/// 2..4, then whatever that version puts before the entries), as many entries as fit; all but the last
/// flagged "more".
pub(super) fn split_replies(version: u8, kind: u8, xid: u32, head: &[u8], entries: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let mut r = Vec::new();
        let at = of::start(&mut r, kind, xid);
        r[at] = version;
        let flags_at = r.len() + 2;
        r.extend_from_slice(head);
        while i < entries.len() && r.len() + entries[i].len() <= 60_000 {
            r.extend_from_slice(&entries[i]);
            i += 1;
        }
        if i < entries.len() {
            r[flags_at..flags_at + 2].copy_from_slice(&1u16.to_be_bytes()); // REPLY_MORE
        }
        of::finish(&mut r, at);
        out.push(r);
        if i >= entries.len() {
            return out;
        }
    }
}
