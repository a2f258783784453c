//! Flows in `ovs-ofctl` syntax: `[table=T,][priority=P,][cookie=C,][idle_timeout=S,][hard_timeout=S,]
//! MATCH... actions=ACTION[,ACTION...]`.
//!
//! Parsing checks everything (values, masks, prerequisites such as `ip` before `nw_dst`) and names the
//! offending token in its error. Port names are turned into port numbers by the caller's resolver, as
//! `ovs-ofctl` does through the switch.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use weft_wire::EthernetAddress;

/// OpenFlow's port number of the local (internal) port.
pub const OFPP_LOCAL: u32 = 0xffff_fffe;
/// Priority of flows that do not say (OpenFlow's default).
pub const DEFAULT_PRIORITY: u16 = 32768;

/// Fields a flow can match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Field {
    InPort,
    DlSrc,
    DlDst,
    DlType,
    VlanTci,
    NwSrc,
    NwDst,
    NwProto,
    NwTos,
    TpSrc,
    TpDst,
    Ipv6Src,
    Ipv6Dst,
    ArpSpa,
    ArpTpa,
    ArpOp,
    IcmpType,
    IcmpCode,
    TunId,
    TunSrc,
    TunDst,
}

/// One field match: the bits of `value` under `mask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Match {
    pub field: Field,
    pub value: u128,
    pub mask: u128,
}

/// Fields `set_field` can write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SetField {
    EthSrc(#[serde(with = "crate::config::mac_text")] EthernetAddress),
    EthDst(#[serde(with = "crate::config::mac_text")] EthernetAddress),
    VlanVid(u16),
    TunId(u64),
    TunDst(IpAddr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Action {
    /// To an OpenFlow port number (names resolved when the flow was parsed).
    Output(u32),
    Normal,
    Flood,
    All,
    InPort,
    Local,
    /// To the controller, the whole packet (max_len 65535, OFPCML_NO_BUFFER).
    Controller,
    /// To the controller, at most this many bytes of the packet (`controller:128`,
    /// `controller(max_len=128)`).
    ControllerMaxLen(u16),
    Drop,
    ModVlanVid(u16),
    StripVlan,
    PushVlan(u16),
    SetField(SetField),
    SetTunnel(u64),
    /// `resubmit([PORT],[TABLE])`: look up again, as if from PORT (default: the input port), in TABLE
    /// (default: this one).
    Resubmit {
        port: Option<u32>,
        table: Option<u8>,
    },
    GotoTable(u8),
}

/// A parsed flow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub table: u8,
    pub priority: u16,
    pub cookie: u64,
    /// For `del-flows`/`mod-flows`: which cookie bits must match (`cookie=V/M`); 0 when no cookie was given.
    pub cookie_mask: u64,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub matches: Vec<Match>,
    /// The match as the user wrote it, normalised token by token (for `dump-flows`).
    pub match_text: String,
    pub actions: Vec<Action>,
    pub actions_text: String,
    /// Whether the text had `actions=` (required by add-flow, forbidden by del-flows).
    pub has_actions: bool,
    /// Whether `priority=` was given (strict matching compares it only then).
    pub has_priority: bool,
    pub has_table: bool,
}

/// A flow that could not be parsed: the token and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{token}: {why}")]
pub struct FlowError {
    pub token: String,
    pub why: String,
}

fn err(token: &str, why: impl Into<String>) -> FlowError {
    FlowError { token: token.to_string(), why: why.into() }
}

fn num(token: &str, text: &str, max: u128) -> Result<u128, FlowError> {
    let v = match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(h) => u128::from_str_radix(h, 16),
        None => text.parse::<u128>(),
    }
    .map_err(|_| err(token, format!("{text:?} is not a number")))?;
    if v > max {
        return Err(err(token, format!("{v} is out of range 0..={max}")));
    }
    Ok(v)
}

/// `V` or `V/M` as numbers.
fn num_mask(token: &str, text: &str, max: u128) -> Result<(u128, u128), FlowError> {
    match text.split_once('/') {
        Some((v, m)) => Ok((num(token, v, max)?, num(token, m, max)?)),
        None => Ok((num(token, text, max)?, max)),
    }
}

fn mac(token: &str, text: &str) -> Result<u128, FlowError> {
    let m: EthernetAddress = text.parse().map_err(|_| err(token, format!("{text:?} is not a MAC address")))?;
    Ok(u128::from(m.as_u64()))
}

fn mac_mask(token: &str, text: &str) -> Result<(u128, u128), FlowError> {
    match text.split_once('/') {
        Some((v, m)) => Ok((mac(token, v)?, mac(token, m)?)),
        None => Ok((mac(token, text)?, 0xffff_ffff_ffff)),
    }
}

/// `A.B.C.D`, `A.B.C.D/N` or `A.B.C.D/MASK`.
fn ipv4_mask(token: &str, text: &str) -> Result<(u128, u128), FlowError> {
    let (a, m) = text.split_once('/').map_or((text, None), |(a, m)| (a, Some(m)));
    let addr: Ipv4Addr = a.parse().map_err(|_| err(token, format!("{a:?} is not an IPv4 address")))?;
    let mask: u32 = match m {
        None => u32::MAX,
        Some(m) if m.contains('.') => {
            u32::from(m.parse::<Ipv4Addr>().map_err(|_| err(token, format!("{m:?} is not an IPv4 mask")))?)
        }
        Some(m) => {
            let n: u32 = m
                .parse()
                .ok()
                .filter(|n| *n <= 32)
                .ok_or_else(|| err(token, format!("prefix length {m:?} is not in 0..=32")))?;
            if n == 0 {
                0
            } else {
                u32::MAX << (32 - n)
            }
        }
    };
    Ok((u128::from(u32::from(addr) & mask), u128::from(mask)))
}

fn ipv6_mask(token: &str, text: &str) -> Result<(u128, u128), FlowError> {
    let (a, m) = text.split_once('/').map_or((text, None), |(a, m)| (a, Some(m)));
    let addr: Ipv6Addr = a.parse().map_err(|_| err(token, format!("{a:?} is not an IPv6 address")))?;
    let mask: u128 = match m {
        None => u128::MAX,
        Some(m) if m.contains(':') => {
            u128::from(m.parse::<Ipv6Addr>().map_err(|_| err(token, format!("{m:?} is not an IPv6 mask")))?)
        }
        Some(m) => {
            let n: u32 = m
                .parse()
                .ok()
                .filter(|n| *n <= 128)
                .ok_or_else(|| err(token, format!("prefix length {m:?} is not in 0..=128")))?;
            if n == 0 {
                0
            } else {
                u128::MAX << (128 - n)
            }
        }
    };
    Ok((u128::from(addr) & mask, mask))
}

/// Splits flow text into `key` / `key=value` / `key:value` / `key(args)` tokens at top-level commas and
/// spaces; `actions=` takes the rest.
fn tokens(text: &str) -> (Vec<&str>, Option<&str>) {
    let (head, actions) = match find_actions(text) {
        Some(at) => (&text[..at], Some(text[at + "actions=".len()..].trim())),
        None => (text, None),
    };
    let toks = head.split([',', ' ', '\t']).map(str::trim).filter(|t| !t.is_empty()).collect();
    (toks, actions)
}

fn find_actions(text: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find("actions=") {
        let at = from + i;
        // "actions=" must start a token (not e.g. be part of another word).
        if at == 0 || matches!(text.as_bytes()[at - 1], b',' | b' ' | b'\t') {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Splits an action list at commas outside parentheses.
fn split_actions(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(text[start..].trim());
    out.into_iter().filter(|t| !t.is_empty()).collect()
}

/// What the match must already say for a field to be allowed (OpenFlow's prerequisites).
fn prerequisite(field: Field, dl_type: Option<u16>, nw_proto: Option<u8>) -> Result<(), String> {
    let ip4 = dl_type == Some(0x0800);
    let ip6 = dl_type == Some(0x86dd);
    let arp = dl_type == Some(0x0806);
    let ok = match field {
        Field::NwSrc | Field::NwDst => ip4 || arp,
        Field::NwProto | Field::NwTos => ip4 || ip6,
        Field::Ipv6Src | Field::Ipv6Dst => ip6,
        Field::ArpSpa | Field::ArpTpa | Field::ArpOp => arp,
        Field::TpSrc | Field::TpDst => (ip4 || ip6) && matches!(nw_proto, Some(6 | 17 | 132)),
        Field::IcmpType | Field::IcmpCode => (ip4 && nw_proto == Some(1)) || (ip6 && nw_proto == Some(58)),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    Err(match field {
        Field::NwSrc | Field::NwDst => "needs ip or arp (dl_type=0x0800 or 0x0806) before it".into(),
        Field::NwProto | Field::NwTos => "needs ip or ipv6 before it".into(),
        Field::Ipv6Src | Field::Ipv6Dst => "needs ipv6 (dl_type=0x86dd) before it".into(),
        Field::ArpSpa | Field::ArpTpa | Field::ArpOp => "needs arp before it".into(),
        Field::TpSrc | Field::TpDst => "needs tcp, udp, tcp6 or udp6 before it".into(),
        _ => "needs icmp or icmp6 before it".into(),
    })
}

/// Parses a flow. `port` turns a port name (or number text) into its OpenFlow number.
pub fn parse(text: &str, port: &dyn Fn(&str) -> Option<u32>) -> Result<Flow, FlowError> {
    let (toks, actions) = tokens(text);
    let mut f = Flow {
        table: 0,
        priority: DEFAULT_PRIORITY,
        cookie: 0,
        cookie_mask: 0,
        idle_timeout: 0,
        hard_timeout: 0,
        matches: Vec::new(),
        match_text: String::new(),
        actions: Vec::new(),
        actions_text: String::new(),
        has_actions: actions.is_some(),
        has_priority: false,
        has_table: false,
    };
    let mut dl_type: Option<u16> = None;
    let mut nw_proto: Option<u8> = None;
    let mut words: Vec<String> = Vec::new();
    let resolve = |tok: &str, name: &str| -> Result<u32, FlowError> {
        match name {
            "LOCAL" | "local" => Ok(OFPP_LOCAL),
            _ => port(name).ok_or_else(|| err(tok, format!("no port named or numbered {name:?}"))),
        }
    };
    for tok in toks {
        let (key, value) = match tok.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (tok, None),
        };
        let need = || value.ok_or_else(|| err(tok, "needs a value (KEY=VALUE)"));
        let shorthand = |t: u16, p: Option<u8>| (t, p);
        let sh = match key {
            "ip" => Some(shorthand(0x0800, None)),
            "ipv6" | "ip6" => Some(shorthand(0x86dd, None)),
            "arp" => Some(shorthand(0x0806, None)),
            "icmp" => Some(shorthand(0x0800, Some(1))),
            "icmp6" | "icmpv6" => Some(shorthand(0x86dd, Some(58))),
            "tcp" => Some(shorthand(0x0800, Some(6))),
            "udp" => Some(shorthand(0x0800, Some(17))),
            "sctp" => Some(shorthand(0x0800, Some(132))),
            "tcp6" => Some(shorthand(0x86dd, Some(6))),
            "udp6" => Some(shorthand(0x86dd, Some(17))),
            _ => None,
        };
        if let Some((t, p)) = sh {
            if value.is_some() {
                return Err(err(tok, format!("{key} is a keyword and takes no value")));
            }
            if dl_type.is_some_and(|d| d != t) || (p.is_some() && nw_proto.is_some_and(|n| Some(n) != p)) {
                return Err(err(tok, "contradicts an earlier match"));
            }
            dl_type = Some(t);
            f.matches.retain(|m| m.field != Field::DlType);
            f.matches.push(Match { field: Field::DlType, value: u128::from(t), mask: 0xffff });
            if let Some(p) = p {
                nw_proto = Some(p);
                f.matches.retain(|m| m.field != Field::NwProto);
                f.matches.push(Match { field: Field::NwProto, value: u128::from(p), mask: 0xff });
            }
            words.push(key.to_string());
            continue;
        }
        let v = need()?;
        let field_and = |field: Field, (value, mask): (u128, u128)| Match { field, value: value & mask, mask };
        let m = match key {
            "priority" => {
                f.priority = num(tok, v, 65535)? as u16;
                f.has_priority = true;
                continue;
            }
            "table" => {
                f.table = num(tok, v, 254)? as u8;
                f.has_table = true;
                continue;
            }
            "cookie" => {
                let (c, m) = num_mask(tok, v, u128::from(u64::MAX))?;
                f.cookie = c as u64;
                f.cookie_mask = m as u64;
                continue;
            }
            "idle_timeout" => {
                f.idle_timeout = num(tok, v, 65535)? as u16;
                continue;
            }
            "hard_timeout" => {
                f.hard_timeout = num(tok, v, 65535)? as u16;
                continue;
            }
            "in_port" => Match { field: Field::InPort, value: u128::from(resolve(tok, v)?), mask: 0xffff_ffff },
            "dl_src" | "eth_src" => field_and(Field::DlSrc, mac_mask(tok, v)?),
            "dl_dst" | "eth_dst" => field_and(Field::DlDst, mac_mask(tok, v)?),
            "dl_type" | "eth_type" => {
                let t = num(tok, v, 0xffff)? as u16;
                if dl_type.is_some_and(|d| d != t) {
                    return Err(err(tok, "contradicts an earlier match"));
                }
                dl_type = Some(t);
                Match { field: Field::DlType, value: u128::from(t), mask: 0xffff }
            }
            "dl_vlan" => {
                let vid = num(tok, v, 0xffff)? as u16;
                match vid {
                    // 0xffff: frames without a tag.
                    0xffff => Match { field: Field::VlanTci, value: 0, mask: 0xffff },
                    0..=4095 => Match { field: Field::VlanTci, value: u128::from(0x1000 | vid), mask: 0x1fff },
                    _ => return Err(err(tok, "VLAN ID must be 0..=4095 (or 0xffff for untagged)")),
                }
            }
            "vlan_tci" => field_and(Field::VlanTci, num_mask(tok, v, 0xffff)?),
            "nw_src" | "ip_src" => field_and(Field::NwSrc, ipv4_mask(tok, v)?),
            "nw_dst" | "ip_dst" => field_and(Field::NwDst, ipv4_mask(tok, v)?),
            "arp_spa" => field_and(Field::ArpSpa, ipv4_mask(tok, v)?),
            "arp_tpa" => field_and(Field::ArpTpa, ipv4_mask(tok, v)?),
            "arp_op" => Match { field: Field::ArpOp, value: num(tok, v, 255)?, mask: 0xff },
            "nw_proto" | "ip_proto" => {
                let p = num(tok, v, 255)? as u8;
                if nw_proto.is_some_and(|n| n != p) {
                    return Err(err(tok, "contradicts an earlier match"));
                }
                nw_proto = Some(p);
                Match { field: Field::NwProto, value: u128::from(p), mask: 0xff }
            }
            "nw_tos" => {
                let t = num(tok, v, 255)?;
                if t & 3 != 0 {
                    return Err(err(tok, "the two ECN bits must be zero (nw_tos is the DSCP shifted left by 2)"));
                }
                Match { field: Field::NwTos, value: t, mask: 0xfc }
            }
            "tp_src" | "tcp_src" | "udp_src" => field_and(Field::TpSrc, num_mask(tok, v, 0xffff)?),
            "tp_dst" | "tcp_dst" | "udp_dst" => field_and(Field::TpDst, num_mask(tok, v, 0xffff)?),
            "icmp_type" | "icmpv6_type" => Match { field: Field::IcmpType, value: num(tok, v, 255)?, mask: 0xff },
            "icmp_code" | "icmpv6_code" => Match { field: Field::IcmpCode, value: num(tok, v, 255)?, mask: 0xff },
            "ipv6_src" => field_and(Field::Ipv6Src, ipv6_mask(tok, v)?),
            "ipv6_dst" => field_and(Field::Ipv6Dst, ipv6_mask(tok, v)?),
            "tun_id" | "tunnel_id" => field_and(Field::TunId, num_mask(tok, v, u128::from(u64::MAX))?),
            "tun_src" => field_and(Field::TunSrc, ipv4_mask(tok, v)?),
            "tun_dst" => field_and(Field::TunDst, ipv4_mask(tok, v)?),
            other => return Err(err(tok, format!("unknown field {other:?}"))),
        };
        prerequisite(m.field, dl_type, nw_proto).map_err(|why| err(tok, why))?;
        if f.matches.iter().any(|x| x.field == m.field) {
            return Err(err(tok, "the field is matched twice"));
        }
        f.matches.push(m);
        words.push(tok.to_string());
    }
    f.match_text = words.join(",");
    if let Some(a) = actions {
        if a.is_empty() {
            return Err(err("actions=", "an empty action list (use actions=drop)"));
        }
        for act in split_actions(a) {
            f.actions.push(parse_action(act, &resolve)?);
        }
        f.actions_text = a.to_string();
        // Drop among other actions means nothing; alone it is the empty list.
        if f.actions.len() > 1 && f.actions.contains(&Action::Drop) {
            return Err(err("drop", "drop cannot be combined with other actions"));
        }
        // `drop` is the empty action list.
        f.actions.retain(|a| *a != Action::Drop);
        if let Some(i) = f.actions.iter().position(|a| matches!(a, Action::GotoTable(_))) {
            if i != f.actions.len() - 1 {
                return Err(err("goto_table", "must be the last action"));
            }
            if let Action::GotoTable(t) = f.actions[i] {
                if t <= f.table {
                    return Err(err("goto_table", format!("table {t} is not after table {}", f.table)));
                }
            }
        }
    }
    Ok(f)
}

fn parse_action(act: &str, resolve: &dyn Fn(&str, &str) -> Result<u32, FlowError>) -> Result<Action, FlowError> {
    let (name, arg) = match act.find([':', '(']) {
        Some(i) if act.as_bytes()[i] == b':' => (&act[..i], Some(&act[i + 1..])),
        Some(i) => (&act[..i], act[i + 1..].strip_suffix(')')),
        None => (act, None),
    };
    let need = || arg.filter(|a| !a.is_empty()).ok_or_else(|| err(act, "needs an argument"));
    let a = match name.to_ascii_lowercase().as_str() {
        "output" => Action::Output(resolve(act, need()?)?),
        "normal" => Action::Normal,
        "flood" => Action::Flood,
        "all" => Action::All,
        "in_port" => Action::InPort,
        "local" => Action::Local,
        "controller" => match arg.filter(|a| !a.is_empty()) {
            None => Action::Controller,
            Some(a) => {
                // `controller:N` or `controller(max_len=N)`; other arguments (reason, id) are not supported.
                let n = a.strip_prefix("max_len=").unwrap_or(a);
                if n.contains(['=', ',']) {
                    return Err(err(act, "weft takes only max_len here (controller:N or controller(max_len=N))"));
                }
                match num(act, n, 0xffff)? as u16 {
                    0xffff => Action::Controller,
                    m => Action::ControllerMaxLen(m),
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
        "set_tunnel" | "set_tunnel64" => Action::SetTunnel(num(act, need()?, u128::from(u64::MAX))? as u64),
        "set_field" | "load" => {
            let arg = need()?;
            let (v, field) = arg.split_once("->").ok_or_else(|| err(act, "expected set_field:VALUE->FIELD"))?;
            let sf = match field {
                "eth_src" | "dl_src" => {
                    SetField::EthSrc(EthernetAddress::from_bytes(&(mac(act, v)? as u64).to_be_bytes()[2..]))
                }
                "eth_dst" | "dl_dst" => {
                    SetField::EthDst(EthernetAddress::from_bytes(&(mac(act, v)? as u64).to_be_bytes()[2..]))
                }
                "vlan_vid" => SetField::VlanVid((num(act, v, 0x1fff)? & 0x0fff) as u16),
                "tun_id" | "tunnel_id" => SetField::TunId(num(act, v, u128::from(u64::MAX))? as u64),
                "tun_dst" => SetField::TunDst(v.parse().map_err(|_| err(act, format!("{v:?} is not an IP address")))?),
                other => {
                    return Err(err(
                        act,
                        format!("cannot set {other:?} (weft sets eth_src, eth_dst, vlan_vid, tun_id, tun_dst)"),
                    ))
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
    Ok(a)
}

impl fmt::Display for Action {
    /// As `ovs-ofctl dump-flows` prints actions.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Action::Output(OFPP_LOCAL) | Action::Local => f.write_str("LOCAL"),
            Action::Output(p) => write!(f, "output:{p}"),
            Action::Normal => f.write_str("NORMAL"),
            Action::Flood => f.write_str("FLOOD"),
            Action::All => f.write_str("ALL"),
            Action::InPort => f.write_str("IN_PORT"),
            Action::Controller => f.write_str("CONTROLLER:65535"),
            Action::ControllerMaxLen(n) => write!(f, "CONTROLLER:{n}"),
            Action::Drop => f.write_str("drop"),
            Action::ModVlanVid(v) => write!(f, "mod_vlan_vid:{v}"),
            Action::StripVlan => f.write_str("strip_vlan"),
            Action::PushVlan(t) => write!(f, "push_vlan:0x{t:04x}"),
            Action::SetField(SetField::EthSrc(m)) => write!(f, "set_field:{m}->eth_src"),
            Action::SetField(SetField::EthDst(m)) => write!(f, "set_field:{m}->eth_dst"),
            Action::SetField(SetField::VlanVid(v)) => write!(f, "set_field:{}->vlan_vid", 4096 + u32::from(v)),
            Action::SetField(SetField::TunId(v)) => write!(f, "set_field:0x{v:x}->tun_id"),
            Action::SetField(SetField::TunDst(a)) => write!(f, "set_field:{a}->tun_dst"),
            Action::SetTunnel(v) => write!(f, "set_tunnel:0x{v:x}"),
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
        }
    }
}

impl fmt::Display for Flow {
    /// The flow as `dump-flows` shows its match and actions (without counters).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.priority != DEFAULT_PRIORITY {
            write!(f, "priority={}", self.priority)?;
            if !self.match_text.is_empty() {
                f.write_str(",")?;
            }
        }
        write!(f, "{} actions=", self.match_text)?;
        if self.actions.is_empty() {
            return f.write_str("drop");
        }
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
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
    if let Some(t) = dl_type {
        let word = match (t, proto) {
            (0x0800, Some(1)) => Some("icmp"),
            (0x0800, Some(6)) => Some("tcp"),
            (0x0800, Some(17)) => Some("udp"),
            (0x0800, Some(132)) => Some("sctp"),
            (0x86dd, Some(58)) => Some("icmp6"),
            (0x86dd, Some(6)) => Some("tcp6"),
            (0x86dd, Some(17)) => Some("udp6"),
            _ => None,
        };
        match word {
            Some(w) => {
                words.push(w.into());
                proto_said = true;
            }
            None => words.push(match t {
                0x0800 => "ip".into(),
                0x86dd => "ipv6".into(),
                0x0806 => "arp".into(),
                t => format!("dl_type=0x{t:04x}"),
            }),
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
            n => format!("{a}/{n}"),
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
    for m in matches {
        let w = match m.field {
            Field::DlType => continue,
            Field::NwProto if proto_said => continue,
            Field::InPort if m.value == u128::from(OFPP_LOCAL) => "in_port=LOCAL".to_string(),
            Field::InPort => format!("in_port={}", m.value),
            Field::DlSrc => format!("dl_src={}", mac(m)),
            Field::DlDst => format!("dl_dst={}", mac(m)),
            Field::VlanTci if m.mask == 0x1fff && m.value & 0x1000 != 0 => format!("dl_vlan={}", m.value & 0xfff),
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
        };
        words.push(w);
    }
    words.join(",")
}

/// A packet that matches `matches` (what `weft trace BR FLOW` sends through the pipeline): an Ethernet frame
/// with the addresses, VLAN, IPv4/IPv6/ARP header and TCP/UDP/ICMP header the match names (zero or a plain
/// default for what it does not). Returns the frame and the `in_port`, which the match must give.
pub fn packet_for(matches: &[Match]) -> Result<(u32, Vec<u8>), String> {
    let get = |f: Field| matches.iter().find(|m| m.field == f).map(|m| m.value);
    let in_port = get(Field::InPort).ok_or("a trace needs in_port=PORT")? as u32;
    let mac = |f: Field| ((get(f).unwrap_or(0) as u64).to_be_bytes()[2..]).to_vec();
    let mut frame = mac(Field::DlDst);
    frame.extend(mac(Field::DlSrc));
    if let Some(tci) = get(Field::VlanTci).filter(|t| t & 0x1000 != 0) {
        frame.extend_from_slice(&[0x81, 0x00]);
        frame.extend_from_slice(&((tci as u16) & 0xefff).to_be_bytes());
    }
    let dl_type = get(Field::DlType).unwrap_or(0) as u16;
    frame.extend_from_slice(&dl_type.to_be_bytes());
    let proto = get(Field::NwProto).unwrap_or(0) as u8;
    let l4 = |icmp_v6: bool| -> Vec<u8> {
        let (sp, dp) = (get(Field::TpSrc).unwrap_or(0) as u16, get(Field::TpDst).unwrap_or(0) as u16);
        match proto {
            6 => {
                let mut t = sp.to_be_bytes().to_vec();
                t.extend_from_slice(&dp.to_be_bytes());
                t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
                t
            }
            17 => {
                let mut u = sp.to_be_bytes().to_vec();
                u.extend_from_slice(&dp.to_be_bytes());
                u.extend_from_slice(&[0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
                u
            }
            1 | 58 => {
                let default = if icmp_v6 { 128 } else { 8 };
                let t = get(Field::IcmpType).map_or(default, |v| v as u8);
                vec![t, get(Field::IcmpCode).unwrap_or(0) as u8, 0, 0, 0, 1, 0, 1]
            }
            _ => Vec::new(),
        }
    };
    match dl_type {
        0x0800 => {
            let body = l4(false);
            let mut ip = vec![0x45, get(Field::NwTos).unwrap_or(0) as u8];
            ip.extend_from_slice(&((20 + body.len()) as u16).to_be_bytes());
            ip.extend_from_slice(&[0, 0, 0x40, 0, 64, proto, 0, 0]);
            ip.extend_from_slice(&(get(Field::NwSrc).unwrap_or(0) as u32).to_be_bytes());
            ip.extend_from_slice(&(get(Field::NwDst).unwrap_or(0) as u32).to_be_bytes());
            frame.extend(ip);
            frame.extend(body);
        }
        0x86dd => {
            let body = l4(true);
            let tc = get(Field::NwTos).unwrap_or(0) as u8;
            frame.extend_from_slice(&[0x60 | (tc >> 4), tc << 4, 0, 0]);
            frame.extend_from_slice(&(body.len() as u16).to_be_bytes());
            frame.extend_from_slice(&[proto, 64]);
            frame.extend_from_slice(&get(Field::Ipv6Src).unwrap_or(0).to_be_bytes());
            frame.extend_from_slice(&get(Field::Ipv6Dst).unwrap_or(0).to_be_bytes());
            frame.extend(body);
        }
        0x0806 => {
            frame.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, get(Field::ArpOp).unwrap_or(1) as u8]);
            frame.extend(mac(Field::DlSrc));
            frame.extend_from_slice(&(get(Field::ArpSpa).unwrap_or(0) as u32).to_be_bytes());
            frame.extend_from_slice(&[0; 6]);
            frame.extend_from_slice(&(get(Field::ArpTpa).unwrap_or(0) as u32).to_be_bytes());
        }
        _ => {}
    }
    while frame.len() < 60 {
        frame.push(0);
    }
    Ok((in_port, frame))
}

impl Flow {
    /// Non-strict matching (del-flows / mod-flows without --strict): this flow's match is at least as
    /// specific as `filter`'s (every field `filter` matches, it matches the same way or more narrowly), and the
    /// cookie agrees under the filter's cookie mask. Table: the filter's when it names one.
    pub fn covered_by(&self, filter: &Flow) -> bool {
        if filter.has_table && filter.table != self.table {
            return false;
        }
        if (self.cookie ^ filter.cookie) & filter.cookie_mask != 0 {
            return false;
        }
        filter.matches.iter().all(|fm| {
            self.matches
                .iter()
                .any(|m| m.field == fm.field && m.mask & fm.mask == fm.mask && m.value & fm.mask == fm.value & fm.mask)
        })
    }

    /// Strict matching: the same match and priority (and table, cookie under the mask).
    pub fn same_match(&self, filter: &Flow) -> bool {
        if (filter.has_table && self.table != filter.table) || self.priority != filter.priority {
            return false;
        }
        if (self.cookie ^ filter.cookie) & filter.cookie_mask != 0 {
            return false;
        }
        self.matches.len() == filter.matches.len() && filter.matches.iter().all(|fm| self.matches.contains(fm))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports(name: &str) -> Option<u32> {
        match name {
            "vx1" => Some(1),
            "vx2" => Some(2),
            n => n.parse().ok(),
        }
    }

    fn p(text: &str) -> Result<Flow, FlowError> {
        parse(text, &ports)
    }

    #[test]
    fn the_issues_flows() {
        let f = p("ip,nw_dst=172.31.1.0/24,actions=output:1").unwrap();
        assert_eq!(f.priority, DEFAULT_PRIORITY);
        assert_eq!(f.matches[1], Match { field: Field::NwDst, value: 0xac1f_0100, mask: 0xffff_ff00 });
        assert_eq!(f.actions, [Action::Output(1)]);
        let f = p("icmp6,ipv6_dst=ff00::/8,actions=flood").unwrap();
        assert_eq!(f.matches[1].field, Field::NwProto);
        assert_eq!(f.matches[2].mask, 0xff00_0000_0000_0000_0000_0000_0000_0000);
        assert_eq!(f.actions, [Action::Flood]);
        let f = p("ip6,ipv6_dst=fc00:0:0:1::0/64,actions=output:vx1").unwrap();
        assert_eq!(f.actions, [Action::Output(1)]);
        let f = p("priority=10 arp actions=flood").unwrap();
        assert_eq!((f.priority, f.to_string()), (10, "priority=10,arp actions=FLOOD".to_string()));
    }

    #[test]
    fn everything_else_parses() {
        let f = p("table=1,cookie=0x10,idle_timeout=5,hard_timeout=60,in_port=vx2,dl_src=02:00:00:00:00:01/ff:ff:ff:00:00:00,\
                   dl_vlan=10,tcp,nw_src=10.0.0.0/255.0.0.0,nw_tos=0x20,tp_dst=80/0xfff0,tun_id=0x5,tun_src=192.0.2.1,\
                   actions=mod_vlan_vid:20,strip_vlan,push_vlan:0x8100,set_field:02:00:00:00:00:09->eth_dst,\
                   set_tunnel:7,set_field:192.0.2.9->tun_dst,resubmit(,2),output:LOCAL,in_port,controller,goto_table:3")
            .unwrap();
        assert_eq!((f.table, f.cookie, f.idle_timeout, f.hard_timeout), (1, 0x10, 5, 60));
        assert_eq!(f.matches.len(), 10);
        assert_eq!(f.actions.len(), 11);
        assert_eq!(f.actions[6], Action::Resubmit { port: None, table: Some(2) });
        assert_eq!(f.actions[7], Action::Output(OFPP_LOCAL));
        assert!(p("arp,arp_op=1,arp_tpa=10.0.0.1 actions=normal").is_ok());
        assert!(p("icmp,icmp_type=8,icmp_code=0 actions=drop").is_ok());
        assert_eq!(p("actions=1,2").unwrap().actions, [Action::Output(1), Action::Output(2)]);
    }

    #[test]
    fn errors_name_the_token() {
        for (text, token, says) in [
            ("nw_dst=10.0.0.1,actions=drop", "nw_dst=10.0.0.1", "needs ip or arp"),
            ("tcp,tp_dst=99999,actions=drop", "tp_dst=99999", "out of range"),
            ("ip,nw_dst=10.0.0.0/33,actions=drop", "nw_dst=10.0.0.0/33", "0..=32"),
            ("ip,colour=blue,actions=drop", "colour=blue", "unknown field"),
            ("in_port=nope,actions=drop", "in_port=nope", "no port"),
            ("ip,actions=output:nope", "output:nope", "no port"),
            ("ip,actions=frobnicate", "frobnicate", "unknown action"),
            ("udp,tcp,actions=drop", "tcp", "contradicts"),
            ("ip,actions=drop,normal", "drop", "combined"),
            ("table=2,actions=goto_table:1", "goto_table", "not after"),
            ("ip,actions=", "actions=", "empty"),
            ("ip6,ipv6_dst=fc00::/129,actions=drop", "ipv6_dst=fc00::/129", "0..=128"),
            ("ip,nw_tos=1,actions=drop", "nw_tos=1", "ECN"),
        ] {
            let e = p(text).unwrap_err();
            assert_eq!(e.token, token, "{text}: {e}");
            assert!(e.why.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn strict_and_loose_selection() {
        let a = p("priority=100,ip,nw_dst=172.31.1.0/24,actions=output:1").unwrap();
        let b = p("priority=100,ip,nw_dst=172.31.2.0/24,actions=output:2").unwrap();
        let c = p("arp,actions=flood").unwrap();
        let any = p("").unwrap();
        let ip = p("ip").unwrap();
        let narrow = p("ip,nw_dst=172.31.1.0/24").unwrap();
        assert!(a.covered_by(&any) && c.covered_by(&any));
        assert!(a.covered_by(&ip) && b.covered_by(&ip) && !c.covered_by(&ip));
        assert!(a.covered_by(&narrow) && !b.covered_by(&narrow));
        assert!(!a.same_match(&narrow), "strict needs the priority too");
        assert!(a.same_match(&p("priority=100,ip,nw_dst=172.31.1.0/24").unwrap()));
        let cookie = p("cookie=0x10/0xff").unwrap();
        assert!(!a.covered_by(&cookie));
    }
}
