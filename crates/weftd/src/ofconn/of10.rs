//! A connection that negotiated OpenFlow 1.0, as plain `ovs-ofctl` does: 1.0's messages, and the Nicira
//! extensions it relies on for what 1.0 cannot say (NXT_SET_FLOW_FORMAT to NXM, NXT_FLOW_MOD,
//! NXT_FLOW_MOD_TABLE_ID, NXST_FLOW and NXST_AGGREGATE). The flows, counters and checks are those of the
//! OpenFlow 1.3 side ([`super::requests`]); only the encodings differ.

use super::requests::{self, apply_flow_mod, select_flows, Selected};
use super::*;
use weft_api::of10::{self as o10, nxt, st};

/// What a 1.0 connection has asked for so far.
pub(super) struct State10 {
    pub miss_send_len: u16,
    /// NXT_FLOW_MOD_TABLE_ID: the high byte of a FLOW_MOD's command is the table.
    pub table_id: bool,
    /// The connection's controller ID (NXT_SET_CONTROLLER_ID), shared with the packet-in hub.
    pub controller_id: Arc<std::sync::atomic::AtomicU32>,
    /// The connection's asynchronous configuration (NXT_SET_ASYNC_CONFIG), shared with the packet-in hub.
    pub asynccfg: Arc<super::asynccfg::AsyncConfig>,
}

impl State10 {
    pub fn new(controller_id: Arc<std::sync::atomic::AtomicU32>, asynccfg: Arc<super::asynccfg::AsyncConfig>) -> Self {
        State10 { miss_send_len: 128, table_id: false, controller_id, asynccfg }
    }
}

/// A message of OpenFlow 1.0 `kind` with body `fill`.
fn message(kind: u8, xid: u32, fill: &dyn Fn(&mut Vec<u8>)) -> Vec<u8> {
    let mut r = Vec::new();
    let at = of::start(&mut r, kind, xid);
    r[at] = o10::VERSION;
    fill(&mut r);
    of::finish(&mut r, at);
    r
}

/// OFPT_ERROR in OpenFlow 1.0's numbering.
pub(super) fn error10(xid: u32, e: (u16, u16), request: &[u8]) -> Vec<u8> {
    let (kind, code) = o10::error_code(e);
    message(msg::ERROR, xid, &|r| {
        r.extend_from_slice(&kind.to_be_bytes());
        r.extend_from_slice(&code.to_be_bytes());
        r.extend_from_slice(&request[..request.len().min(64)]);
    })
}

/// An `ofp_phy_port` (OpenFlow 1.0, 48 bytes).
fn phy_port(ofport: u32, name: &str, link_down: bool, config: u32) -> Vec<u8> {
    let mut e = o10::port16(ofport).to_be_bytes().to_vec();
    e.extend_from_slice(&weft_sys::iface::mac(name).unwrap_or([0; 6]));
    let mut n = name.as_bytes().to_vec();
    n.resize(16, 0);
    e.extend_from_slice(&n);
    e.extend_from_slice(&config.to_be_bytes());
    e.extend_from_slice(&u32::from(link_down).to_be_bytes()); // state: OFPPS_LINK_DOWN
    e.extend_from_slice(&[0; 16]); // curr, advertised, supported, peer
    e
}

/// Answers one OpenFlow 1.0 request.
pub(super) fn handle10(st: &mut dyn Daemon, bridge: &str, h: &of::Header, m: &[u8], s: &mut State10) -> Vec<Vec<u8>> {
    let body = &m[of::HEADER_LEN..];
    let xid = h.xid;
    let r = match h.kind {
        msg::ECHO_REQUEST => Ok(vec![message(msg::ECHO_REPLY, xid, &|r| r.extend_from_slice(body))]),
        msg::FEATURES_REQUEST => {
            let ports: Vec<Vec<u8>> = st
                .port_counters(bridge)
                .into_iter()
                .map(|(name, ofport, _)| {
                    phy_port(ofport, &name, st.link_down(&name), super::ports::config_of(st, bridge, &name))
                })
                .collect();
            Ok(vec![message(msg::FEATURES_REPLY, xid, &|r| {
                r.extend_from_slice(&requests::datapath_id(st, bridge).to_be_bytes());
                r.extend_from_slice(&0u32.to_be_bytes()); // n_buffers
                r.push(254); // n_tables
                r.extend_from_slice(&[0; 3]);
                r.extend_from_slice(&(0x1u32 | 0x2 | 0x4).to_be_bytes()); // flow, table and port stats
                                                                          // Actions: OUTPUT, SET_VLAN_VID, STRIP_VLAN, SET_DL_SRC, SET_DL_DST.
                r.extend_from_slice(&(1u32 | 1 << 1 | 1 << 3 | 1 << 4 | 1 << 5).to_be_bytes());
                for p in &ports {
                    r.extend_from_slice(p);
                }
            })])
        }
        msg::GET_CONFIG_REQUEST => Ok(vec![message(msg::GET_CONFIG_REPLY, xid, &|r| {
            r.extend_from_slice(&[0, 0]);
            r.extend_from_slice(&s.miss_send_len.to_be_bytes());
        })]),
        msg::SET_CONFIG => {
            if body.len() >= 4 {
                s.miss_send_len = u16::from_be_bytes([body[2], body[3]]);
            }
            Ok(vec![])
        }
        o10::msg::BARRIER_REQUEST => Ok(vec![message(o10::msg::BARRIER_REPLY, xid, &|_| {})]),
        o10::msg::VENDOR => vendor(st, bridge, xid, body, s),
        msg::FLOW_MOD => flow_mod10(st, bridge, body, s).map(|()| vec![]),
        msg::PACKET_OUT => packet_out10(st, bridge, body).map(|()| vec![]),
        // port_no (16 bits), hw_addr, config, mask, advertise.
        o10::msg::PORT_MOD if body.len() >= 20 => {
            let hw: [u8; 6] = [body[2], body[3], body[4], body[5], body[6], body[7]];
            let word = |i: usize| u32::from_be_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
            super::ports::port_mod(st, bridge, o10::port32(be16(body, 0)), hw, word(8), word(12)).map(|()| vec![])
        }
        o10::msg::STATS_REQUEST => stats(st, bridge, xid, body),
        _ => Err((error::BAD_REQUEST, error::BAD_TYPE)),
    };
    r.unwrap_or_else(|e| vec![error10(xid, e, m)])
}

/// Nicira's vendor messages.
fn vendor(
    st: &mut dyn Daemon,
    bridge: &str,
    xid: u32,
    body: &[u8],
    s: &mut State10,
) -> Result<Vec<Vec<u8>>, (u16, u16)> {
    const BAD_VENDOR: u16 = 3;
    const BAD_SUBTYPE: u16 = 4;
    if body.len() < 8 {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    if u32::from_be_bytes([body[0], body[1], body[2], body[3]]) != of::act::NX_VENDOR {
        return Err((error::BAD_REQUEST, BAD_VENDOR));
    }
    let sub = u32::from_be_bytes([body[4], body[5], body[6], body[7]]);
    let rest = &body[8..];
    let word = |b: &[u8]| b.get(..4).map(|w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]));
    match sub {
        // OpenFlow 1.0's match (0) or NXM (2): weft reads both whatever was chosen.
        nxt::SET_FLOW_FORMAT if matches!(word(rest), Some(0 | 2)) => Ok(vec![]),
        nxt::FLOW_MOD_TABLE_ID if !rest.is_empty() => {
            s.table_id = rest[0] != 0;
            Ok(vec![])
        }
        // Only the standard packet-in format.
        nxt::SET_PACKET_IN_FORMAT if word(rest) == Some(0) => Ok(vec![]),
        // Six bytes of padding, then the ID.
        nxt::SET_CONTROLLER_ID if rest.len() >= 8 => {
            s.controller_id.store(u32::from(u16::from_be_bytes([rest[6], rest[7]])), Ordering::Relaxed);
            Ok(vec![])
        }
        // Nicira's masks are OpenFlow 1.3's, in the same order, with the same reason numbers.
        nxt::SET_ASYNC_CONFIG => s.asynccfg.set13(rest).map(|()| vec![]),
        super::tlv::TABLE_MOD => super::tlv::table_mod(st, bridge, rest, true).map(|()| vec![]),
        super::tlv::TABLE_REQUEST => Ok(vec![message(o10::msg::VENDOR, xid, &|r| {
            r.extend_from_slice(&of::act::NX_VENDOR.to_be_bytes());
            r.extend_from_slice(&super::tlv::TABLE_REPLY.to_be_bytes());
            r.extend_from_slice(&super::tlv::table_reply(st, bridge));
        })]),
        nxt::FLOW_MOD => nx_flow_mod(st, bridge, rest, s).map(|()| vec![]),
        _ => Err((error::BAD_REQUEST, BAD_SUBTYPE)),
    }
}

/// The table and command of a 1.0 FLOW_MOD's command field (the table in its high byte once the controller
/// asked for that; else table 0 for adds and every table for the rest).
fn command(cmd: u16, s: &State10) -> (u8, u8) {
    let c = (cmd & 0xff) as u8;
    if s.table_id {
        ((cmd >> 8) as u8, c)
    } else if c == of::flow_cmd::ADD {
        (0, c)
    } else {
        (0xff, c)
    }
}

#[allow(clippy::too_many_arguments)]
fn flow_mod_of(
    cmd: u16,
    s: &State10,
    cookie: u64,
    idle: u16,
    hard: u16,
    priority: u16,
    buffer_id: u32,
    out_port: u16,
    flags: u16,
) -> of::FlowMod {
    let (table_id, command) = command(cmd, s);
    of::FlowMod {
        cookie,
        cookie_mask: 0,
        table_id,
        command,
        idle_timeout: idle,
        hard_timeout: hard,
        priority,
        buffer_id,
        out_port: o10::port32(out_port),
        out_group: of::port::ANY,
        // OpenFlow 1.0's SEND_FLOW_REM and CHECK_OVERLAP (its third bit is EMERG, not RESET_COUNTS).
        flags: flags & 0x3,
        importance: 0,
    }
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// OFPT_FLOW_MOD with OpenFlow 1.0's match.
fn flow_mod10(st: &mut dyn Daemon, bridge: &str, b: &[u8], s: &State10) -> Result<(), (u16, u16)> {
    if b.len() < 64 {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let matches = o10::matches_from_of10(&b[..40])?;
    let f = &b[40..];
    let fm = flow_mod_of(
        be16(f, 8),
        s,
        of::read_u64(f, 0),
        be16(f, 10),
        be16(f, 12),
        be16(f, 14),
        0,
        be16(f, 20),
        be16(f, 22),
    );
    let actions = o10::actions_from_of10(&b[64..])?;
    apply_flow_mod(st, bridge, &fm, matches, actions)
}

/// NXT_FLOW_MOD: an NXM match (after the vendor header).
fn nx_flow_mod(st: &mut dyn Daemon, bridge: &str, b: &[u8], s: &State10) -> Result<(), (u16, u16)> {
    if b.len() < 32 {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let match_len = usize::from(be16(b, 24));
    let actions_at = 32 + match_len.div_ceil(8) * 8;
    if b.len() < actions_at {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let matches = o10::matches_from_nxm(&b[32..32 + match_len])?;
    let fm = flow_mod_of(
        be16(b, 8),
        s,
        of::read_u64(b, 0),
        be16(b, 10),
        be16(b, 12),
        be16(b, 14),
        0,
        be16(b, 20),
        be16(b, 22),
    );
    let actions = o10::actions_from_of10(&b[actions_at..])?;
    apply_flow_mod(st, bridge, &fm, matches, actions)
}

/// OFPT_PACKET_OUT: buffer, 16-bit input port (OFPP_NONE: from the controller), actions, frame.
fn packet_out10(st: &mut dyn Daemon, bridge: &str, b: &[u8]) -> Result<(), (u16, u16)> {
    if b.len() < 8 {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let actions_len = usize::from(be16(b, 6));
    if b.len() < 8 + actions_len {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let in_port = match be16(b, 4) {
        0xffff => of::port::ANY,
        p => o10::port32(p),
    };
    let buffer_id = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let actions = o10::actions_from_of10(&b[8..8 + actions_len])?;
    requests::run_packet_out(st, bridge, buffer_id, in_port, actions, &b[8 + actions_len..])
}

/// A flow filter from a statistics request.
fn filter(matches: Vec<weft_api::flow::Match>, table: u8) -> Result<Flow, (u16, u16)> {
    let mut f = weft_api::flow::parse("", &|_| None).map_err(|_| (error::BAD_REQUEST, 0))?;
    f.matches = matches;
    f.table = table;
    f.has_table = table != 0xff;
    Ok(f)
}

fn aggregate(selected: &[Selected]) -> Vec<u8> {
    let (packets, bytes): (u64, u64) = selected.iter().fold((0, 0), |(p, b), s| (p + s.packets, b + s.bytes));
    let mut e = packets.to_be_bytes().to_vec();
    e.extend_from_slice(&bytes.to_be_bytes());
    e.extend_from_slice(&(selected.len() as u32).to_be_bytes());
    e.extend_from_slice(&[0; 4]);
    e
}

/// OFPT_STATS_REQUEST: description, flows and aggregates (OpenFlow 1.0's match, or Nicira's NXM), tables,
/// ports.
fn stats(st: &mut dyn Daemon, bridge: &str, xid: u32, b: &[u8]) -> Result<Vec<Vec<u8>>, (u16, u16)> {
    const BAD_STAT: u16 = 2;
    if b.len() < 4 {
        return Err((error::BAD_REQUEST, error::BAD_LEN));
    }
    let kind = be16(b, 0);
    let req = &b[4..];
    let mut head = Vec::new(); // after type and flags: the vendor header of NXST replies
    let mut entries: Vec<Vec<u8>> = Vec::new();
    match kind {
        st::DESC => entries.push(requests::desc(bridge)),
        st::FLOW | st::AGGREGATE => {
            if req.len() < 44 {
                return Err((error::BAD_REQUEST, error::BAD_LEN));
            }
            let f = filter(o10::matches_from_of10(&req[..40])?, req[40])?;
            let out_port = match be16(req, 42) {
                0xffff => of::port::ANY,
                p => o10::port32(p),
            };
            let selected = select_flows(st, bridge, &f, out_port)?;
            if kind == st::AGGREGATE {
                entries.push(aggregate(&selected));
            } else {
                for s in &selected {
                    let mut e = vec![0, 0, s.flow.table, 0];
                    // A flow the 1.0 match cannot say is left out of a 1.0-format dump (NXM shows it).
                    if !o10::put_of10_match(&mut e, &s.flow.matches) {
                        continue;
                    }
                    e.extend_from_slice(&(s.age.as_secs() as u32).to_be_bytes());
                    e.extend_from_slice(&s.age.subsec_nanos().to_be_bytes());
                    e.extend_from_slice(&s.flow.priority.to_be_bytes());
                    e.extend_from_slice(&s.flow.idle_timeout.to_be_bytes());
                    e.extend_from_slice(&s.flow.hard_timeout.to_be_bytes());
                    e.extend_from_slice(&[0; 6]);
                    e.extend_from_slice(&s.flow.cookie.to_be_bytes());
                    e.extend_from_slice(&s.packets.to_be_bytes());
                    e.extend_from_slice(&s.bytes.to_be_bytes());
                    o10::put_actions_of10(&mut e, &s.flow.actions);
                    let len = e.len() as u16;
                    e[0..2].copy_from_slice(&len.to_be_bytes());
                    entries.push(e);
                }
            }
        }
        st::TABLE => {
            let Some(br) = st.config().bridge(bridge) else { return Err((error::BAD_REQUEST, 0)) };
            let top = br.flows.iter().map(|f| f.flow.table).max().unwrap_or(0);
            let active: Vec<u32> =
                (0..=top).map(|t| br.flows.iter().filter(|f| f.flow.table == t).count() as u32).collect();
            let counts = st.table_stats(bridge);
            for t in 0..=top {
                let mut e = vec![t, 0, 0, 0];
                let mut name = format!("table{t}").into_bytes();
                name.resize(32, 0);
                e.extend_from_slice(&name);
                e.extend_from_slice(&0x003f_ffffu32.to_be_bytes()); // wildcards: every field
                e.extend_from_slice(&1_000_000u32.to_be_bytes());
                e.extend_from_slice(&active[usize::from(t)].to_be_bytes());
                let (lookups, matched) = counts.get(usize::from(t)).copied().unwrap_or((0, 0));
                e.extend_from_slice(&lookups.to_be_bytes());
                e.extend_from_slice(&matched.to_be_bytes());
                entries.push(e);
            }
        }
        // OVS's OFPST_PORT_DESC, which it also sends with OpenFlow 1.0.
        st::PORT_DESC => {
            for (name, ofport, _) in st.port_counters(bridge) {
                entries.push(phy_port(ofport, &name, st.link_down(&name), super::ports::config_of(st, bridge, &name)));
            }
        }
        st::PORT => {
            let want = if req.len() >= 2 { be16(req, 0) } else { 0xffff };
            for (_, ofport, c) in st.port_counters(bridge) {
                let p16 = o10::port16(ofport);
                if want != 0xffff && want != p16 {
                    continue;
                }
                let mut e = p16.to_be_bytes().to_vec();
                e.extend_from_slice(&[0; 6]);
                let dropped: u64 = c.drops.iter().sum();
                for v in [c.rx_packets, c.tx_packets, c.rx_bytes, c.tx_bytes, dropped, 0, 0, 0, 0, 0, 0, 0] {
                    e.extend_from_slice(&v.to_be_bytes());
                }
                entries.push(e);
            }
        }
        st::VENDOR => {
            if req.len() < 12 || u32::from_be_bytes([req[0], req[1], req[2], req[3]]) != of::act::NX_VENDOR {
                return Err((error::BAD_REQUEST, BAD_STAT));
            }
            let sub = u32::from_be_bytes([req[4], req[5], req[6], req[7]]);
            head.extend_from_slice(&req[..8]);
            head.extend_from_slice(&[0; 4]);
            let r = &req[12..];
            if !matches!(sub, st::NXST_FLOW | st::NXST_AGGREGATE) || r.len() < 8 {
                return Err((error::BAD_REQUEST, BAD_STAT));
            }
            let (out_port, match_len, table) = (be16(r, 0), usize::from(be16(r, 2)), r[4]);
            let nxm = r.get(8..8 + match_len).ok_or((error::BAD_REQUEST, error::BAD_LEN))?;
            let f = filter(o10::matches_from_nxm(nxm)?, table)?;
            let out_port = if out_port == 0xffff { of::port::ANY } else { o10::port32(out_port) };
            let selected = select_flows(st, bridge, &f, out_port)?;
            if sub == st::NXST_AGGREGATE {
                entries.push(aggregate(&selected));
            } else {
                for s in &selected {
                    let mut m = Vec::new();
                    o10::put_nxm(&mut m, &s.flow.matches);
                    let secs = s.age.as_secs();
                    let mut e = vec![0, 0, s.flow.table, 0];
                    e.extend_from_slice(&(secs as u32).to_be_bytes());
                    e.extend_from_slice(&s.age.subsec_nanos().to_be_bytes());
                    e.extend_from_slice(&s.flow.priority.to_be_bytes());
                    e.extend_from_slice(&s.flow.idle_timeout.to_be_bytes());
                    e.extend_from_slice(&s.flow.hard_timeout.to_be_bytes());
                    e.extend_from_slice(&(m.len() as u16).to_be_bytes());
                    // idle_age and hard_age + 1 (0: unknown).
                    let age = (secs.min(0xfffe) + 1) as u16;
                    e.extend_from_slice(&age.to_be_bytes());
                    e.extend_from_slice(&age.to_be_bytes());
                    e.extend_from_slice(&s.flow.cookie.to_be_bytes());
                    e.extend_from_slice(&s.packets.to_be_bytes());
                    e.extend_from_slice(&s.bytes.to_be_bytes());
                    let at = e.len();
                    e.extend_from_slice(&m);
                    e.resize(at + m.len().div_ceil(8) * 8, 0);
                    o10::put_actions_of10(&mut e, &s.flow.actions);
                    let len = e.len() as u16;
                    e[0..2].copy_from_slice(&len.to_be_bytes());
                    entries.push(e);
                }
            }
        }
        _ => return Err((error::BAD_REQUEST, BAD_STAT)),
    }
    let mut h = kind.to_be_bytes().to_vec();
    h.extend_from_slice(&[0, 0]); // flags
    h.extend_from_slice(&head);
    Ok(requests::split_replies(o10::VERSION, o10::msg::STATS_REPLY, xid, &h, &entries))
}

/// A message the 1.3 side queued for every connection (a PACKET_IN or PORT_STATUS) in OpenFlow 1.0's
/// form; `None` for anything else.
pub(super) fn to_of10(m: &[u8]) -> Option<Vec<u8>> {
    let h = of::Header::parse(m).ok()?;
    let b = m.get(of::HEADER_LEN..)?;
    match h.kind {
        msg::PACKET_IN => {
            // 1.3: buffer_id, total_len, reason, table, cookie, match (padded), 2 bytes of padding, frame.
            let (tlvs, mlen) = of::parse_match(b.get(16..)?).ok()?;
            let in_port = tlvs
                .iter()
                .find(|t| t.class == of::oxm::CLASS_BASIC && t.field == of::oxm::IN_PORT)
                .map_or(of::port::ANY, |t| of::be_uint(t.value) as u32);
            let data = b.get(16 + mlen + 2..)?;
            Some(message(msg::PACKET_IN, h.xid, &|r| {
                r.extend_from_slice(&b[0..6]); // buffer_id, total_len
                r.extend_from_slice(&o10::port16(in_port).to_be_bytes());
                r.push(b[6]); // reason
                r.push(0);
                r.extend_from_slice(data);
            }))
        }
        msg::PORT_STATUS => {
            // 1.3: reason, 7 bytes of padding, ofp_port (number, pad, MAC, pad, name, config, state, ...).
            let p = b.get(8..8 + 64)?;
            let ofport = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
            Some(message(msg::PORT_STATUS, h.xid, &|r| {
                r.push(b[0]);
                r.extend_from_slice(&[0; 7]);
                r.extend_from_slice(&o10::port16(ofport).to_be_bytes());
                r.extend_from_slice(&p[8..14]); // MAC
                r.extend_from_slice(&p[16..32]); // name
                r.extend_from_slice(&p[32..40]); // config, state
                r.extend_from_slice(&[0; 16]);
            }))
        }
        msg::FLOW_REMOVED => {
            // 1.3: cookie, priority, reason, table, durations, timeouts, counts, match. 1.0 has the match
            // first, in its own form: a flow it cannot say is not reported on this connection.
            let (tlvs, _) = of::parse_match(b.get(40..)?).ok()?;
            let matches = weft_api::ofp::matches_from_oxm(&tlvs).ok()?;
            let mut m10 = Vec::new();
            if !o10::put_of10_match(&mut m10, &matches) {
                return None;
            }
            Some(message(msg::FLOW_REMOVED, h.xid, &|r| {
                r.extend_from_slice(&m10);
                r.extend_from_slice(&b[0..11]); // cookie, priority, reason
                r.push(0);
                r.extend_from_slice(&b[12..22]); // durations, idle timeout
                r.extend_from_slice(&[0, 0]);
                r.extend_from_slice(&b[24..40]); // packet and byte counts
            }))
        }
        _ => None,
    }
}
