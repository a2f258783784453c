//! `learn(...)`: an action that adds a flow made from the packet it runs on (or refreshes that flow when it
//! is there already), as Open vSwitch's NXAST_LEARN does. Parsed, checked and printed here; the datapath
//! reads the packet's fields, and the control plane builds the flow with [`learned_flow_text`].

use super::*;

/// `learn(...)`'s settings. In an action list it is followed by its `n` [`Action::LearnSpec`]s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Learn {
    /// The table the new flow goes into (default 1, as OVS).
    pub table: u8,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    /// The new flow's `fin_timeout(idle_timeout=…,hard_timeout=…)` (none when both are 0).
    pub fin_idle_timeout: u16,
    pub fin_hard_timeout: u16,
    pub priority: u16,
    /// The new flow's cookie.
    pub cookie: u64,
    pub send_flow_rem: bool,
    /// Deleting the last flow that learns into this table with this cookie deletes what they learned.
    pub delete_learned: bool,
    /// At most this many flows with the cookie in the table (0: no limit); past it nothing is learned.
    pub limit: u32,
    pub n: u8,
}

/// Where a [`LearnSpec`]'s bits come from: a constant, or a field of the packet the learn runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LearnSrc {
    Imm(u128),
    Field(SubField),
}

/// One piece of the flow `learn` builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LearnSpec {
    /// The new flow matches `dst` against the source's bits.
    Match { dst: SubField, src: LearnSrc },
    /// The new flow loads the source's bits into `dst`.
    Load { dst: SubField, src: LearnSrc },
    /// The new flow outputs to the port whose number `src` holds.
    Output { src: SubField },
}

impl LearnSpec {
    /// The packet's field this piece reads, if it reads one.
    pub fn packet_field(&self) -> Option<SubField> {
        match *self {
            LearnSpec::Match { src: LearnSrc::Field(s), .. }
            | LearnSpec::Load { src: LearnSrc::Field(s), .. }
            | LearnSpec::Output { src: s } => Some(s),
            _ => None,
        }
    }

    /// The field this piece names in the new flow (matched or loaded).
    pub fn dst(&self) -> Option<SubField> {
        match *self {
            LearnSpec::Match { dst, .. } | LearnSpec::Load { dst, .. } => Some(dst),
            LearnSpec::Output { .. } => None,
        }
    }
}

/// The fields of the packet one `learn` may read (the datapath carries that many values per learn).
pub const LEARN_SOURCES_MAX: usize = 16;

/// OVS's default priority of a learned flow (OFP_DEFAULT_PRIORITY).
const DEFAULT_PRIORITY: u16 = 32768;

/// A value of `field` as `ovs-ofctl` writes it in a match: addresses as addresses, ports and protocol
/// numbers in decimal, the rest in hexadecimal.
fn format_value(field: Field, v: u128) -> String {
    let v4 = || std::net::Ipv4Addr::from(v as u32).to_string();
    match field {
        Field::DlSrc | Field::DlDst | Field::ArpSha | Field::ArpTha => {
            EthernetAddress::from_bytes(&(v as u64).to_be_bytes()[2..]).to_string()
        }
        Field::NwSrc | Field::NwDst | Field::ArpSpa | Field::ArpTpa | Field::TunSrc | Field::TunDst => v4(),
        Field::Ipv6Src | Field::Ipv6Dst | Field::NdTarget => Ipv6Addr::from(v).to_string(),
        Field::InPort if v == 0xfffe || v == u128::from(OFPP_LOCAL) => "LOCAL".into(),
        Field::InPort
        | Field::NwProto
        | Field::NwTos
        | Field::NwEcn
        | Field::NwTtl
        | Field::TpSrc
        | Field::TpDst
        | Field::ArpOp
        | Field::MplsLabel
        | Field::MplsTc
        | Field::MplsBos
        | Field::MplsTtl => v.to_string(),
        _ => hex(v),
    }
}

/// Parses a value for the whole of `field` (an address, a port, a number).
fn parse_value(
    token: &str,
    field: Field,
    text: &str,
    resolve: &dyn Fn(&str, &str) -> Result<u32, FlowError>,
) -> Result<u128, FlowError> {
    let width = field.bits();
    let max = if width >= 128 { u128::MAX } else { (1u128 << width) - 1 };
    match field {
        Field::DlSrc | Field::DlDst | Field::ArpSha | Field::ArpTha => mac(token, text),
        Field::NwSrc | Field::NwDst | Field::ArpSpa | Field::ArpTpa | Field::TunSrc | Field::TunDst => text
            .parse::<std::net::Ipv4Addr>()
            .map(|a| u128::from(u32::from(a)))
            .map_err(|_| err(token, format!("{text:?} is not an IPv4 address"))),
        Field::Ipv6Src | Field::Ipv6Dst | Field::NdTarget => {
            text.parse::<Ipv6Addr>().map(u128::from).map_err(|_| err(token, format!("{text:?} is not an IPv6 address")))
        }
        // OpenFlow 1.0's 16-bit port numbers, as NXM_OF_IN_PORT carries them.
        Field::InPort => {
            let p = match num(token, text, 0xffff) {
                Ok(n) => n as u32,
                Err(_) => resolve(token, text)?,
            };
            Ok(u128::from(if p >= 0xffff_ff00 { p & 0xffff } else { p }))
        }
        _ => num(token, text, max),
    }
}

/// Parses `learn(…)`'s argument into its [`Action::Learn`] and specs.
pub(super) fn parse_learn(
    act: &str,
    arg: &str,
    resolve: &dyn Fn(&str, &str) -> Result<u32, FlowError>,
    out: &mut Vec<Action>,
) -> Result<(), FlowError> {
    let mut l = Learn {
        table: 1,
        idle_timeout: 0,
        hard_timeout: 0,
        fin_idle_timeout: 0,
        fin_hard_timeout: 0,
        priority: DEFAULT_PRIORITY,
        cookie: 0,
        send_flow_rem: false,
        delete_learned: false,
        limit: 0,
        n: 0,
    };
    let mut specs: Vec<Action> = Vec::new();
    // What the new flow's match says so far, for the prerequisites of what follows (as OVS checks them).
    let (mut dl_type, mut nw_proto): (Option<u16>, Option<u8>) = (None, None);
    for piece in arg.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = match piece.split_once('=') {
            Some((k, v)) if !k.contains(':') => (k.trim(), Some(v.trim())),
            _ => (piece, None),
        };
        let setting = |max: u128| -> Result<u128, FlowError> {
            num(piece, value.ok_or_else(|| err(piece, "needs a value"))?, max)
        };
        match key {
            "table" => {
                let t = setting(255)?;
                if t == 255 {
                    return Err(err(piece, "table id 255 not valid for `learn' action"));
                }
                l.table = t as u8;
                continue;
            }
            "idle_timeout" => {
                l.idle_timeout = setting(0xffff)? as u16;
                continue;
            }
            "hard_timeout" => {
                l.hard_timeout = setting(0xffff)? as u16;
                continue;
            }
            "priority" => {
                l.priority = setting(0xffff)? as u16;
                continue;
            }
            "cookie" => {
                l.cookie = setting(u128::from(u64::MAX))? as u64;
                continue;
            }
            "limit" => {
                l.limit = setting(u128::from(u32::MAX))? as u32;
                continue;
            }
            "send_flow_rem" if value.is_none() => {
                l.send_flow_rem = true;
                continue;
            }
            "delete_learned" if value.is_none() => {
                l.delete_learned = true;
                continue;
            }
            "fin_idle_timeout" => {
                l.fin_idle_timeout = setting(0xffff)? as u16;
                continue;
            }
            "fin_hard_timeout" => {
                l.fin_hard_timeout = setting(0xffff)? as u16;
                continue;
            }
            "result_dst" => return Err(err(piece, "weft does not support learn's result_dst")),
            _ => {}
        }
        let spec = if let Some(rest) = piece.strip_prefix("load:") {
            let (src, dst) = rest.split_once("->").ok_or_else(|| err(piece, "load needs SRC->DST"))?;
            let dst = sub_field(piece, dst.trim())?;
            if !dst.field.writable() {
                return Err(err(piece, format!("{} is read-only", dst.field.name())));
            }
            prerequisite(dst.field, dl_type, nw_proto, None)
                .map_err(|why| err(piece, format!("the new flow {why}")))?;
            let src = source(piece, src.trim(), dst, None, resolve)?;
            LearnSpec::Load { dst, src }
        } else if let Some(src) = piece.strip_prefix("output:") {
            LearnSpec::Output { src: sub_field(piece, src.trim())? }
        } else {
            let dst = sub_field(piece, key)?;
            if matches!(dst.field, Field::XReg(_) | Field::XXReg(_) | Field::ConjId) {
                return Err(err(piece, format!("weft's learn cannot match {}", dst.field.name())));
            }
            prerequisite(dst.field, dl_type, nw_proto, None).map_err(|why| {
                err(piece, format!("the new flow {why} first (actions are invalid with specified match)"))
            })?;
            let src = match value {
                None => LearnSrc::Field(dst),
                Some(v) => source(piece, v, dst, Some(dst.field), resolve)?,
            };
            if let LearnSrc::Imm(v) = src {
                let whole = dst.ofs == 0 && dst.nbits == dst.field.bits();
                match dst.field {
                    Field::DlType if whole => dl_type = Some(v as u16),
                    Field::NwProto if whole => nw_proto = Some(v as u8),
                    _ => {}
                }
            }
            LearnSpec::Match { dst, src }
        };
        specs.push(Action::LearnSpec(spec));
    }
    l.n = u8::try_from(specs.len()).map_err(|_| err(act, "more than 255 pieces in learn"))?;
    let reads = specs.iter().filter(|a| matches!(a, Action::LearnSpec(s) if s.packet_field().is_some())).count();
    if reads > LEARN_SOURCES_MAX {
        return Err(err(
            act,
            format!("weft's learn reads at most {LEARN_SOURCES_MAX} fields of the packet, not {reads}"),
        ));
    }
    out.push(Action::Learn(l));
    out.extend(specs);
    Ok(())
}

/// A spec's source: a value (for the whole of `whole_field`, in its syntax; else a number that fits `dst`)
/// or a field as wide as `dst`.
fn source(
    piece: &str,
    text: &str,
    dst: SubField,
    whole_field: Option<Field>,
    resolve: &dyn Fn(&str, &str) -> Result<u32, FlowError>,
) -> Result<LearnSrc, FlowError> {
    let whole = dst.ofs == 0 && dst.nbits == dst.field.bits();
    let value = match whole_field {
        Some(f) if whole => parse_value(piece, f, text, resolve),
        _ => {
            let max = if dst.nbits >= 128 { u128::MAX } else { (1u128 << dst.nbits) - 1 };
            num(piece, text, max)
        }
    };
    match value {
        Ok(v) => Ok(LearnSrc::Imm(v)),
        Err(e) => {
            let looks_numeric = text.as_bytes().first().is_some_and(|b| b.is_ascii_digit());
            match sub_field(piece, text) {
                Ok(src) if src.nbits == dst.nbits => Ok(LearnSrc::Field(src)),
                Ok(src) => Err(err(
                    piece,
                    format!("source field is {} bits wide but destination is {} bits wide", src.nbits, dst.nbits),
                )),
                Err(_) if looks_numeric => Err(e),
                Err(e2) => Err(e2),
            }
        }
    }
}

/// `learn(…)` with its specs, as `ovs-ofctl` prints it.
pub(super) fn format_learn(l: &Learn, specs: &[Action]) -> String {
    let mut s = format!("learn(table={}", l.table);
    if l.idle_timeout != 0 {
        s += &format!(",idle_timeout={}", l.idle_timeout);
    }
    if l.hard_timeout != 0 {
        s += &format!(",hard_timeout={}", l.hard_timeout);
    }
    if l.fin_idle_timeout != 0 {
        s += &format!(",fin_idle_timeout={}", l.fin_idle_timeout);
    }
    if l.fin_hard_timeout != 0 {
        s += &format!(",fin_hard_timeout={}", l.fin_hard_timeout);
    }
    if l.priority != DEFAULT_PRIORITY {
        s += &format!(",priority={}", l.priority);
    }
    if l.send_flow_rem {
        s += ",send_flow_rem";
    }
    if l.delete_learned {
        s += ",delete_learned";
    }
    if l.cookie != 0 {
        s += &format!(",cookie={:#x}", l.cookie);
    }
    if l.limit != 0 {
        s += &format!(",limit={}", l.limit);
    }
    for a in specs {
        if let Action::LearnSpec(spec) = a {
            s.push(',');
            s += &spec.to_string();
        }
    }
    s.push(')');
    s
}

impl fmt::Display for LearnSpec {
    /// One piece of a `learn`, as `ovs-ofctl` prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LearnSpec::Match { dst, src: LearnSrc::Imm(v) } if dst.ofs == 0 && dst.nbits == dst.field.bits() => {
                write!(f, "{}={}", dst.field.name(), format_value(dst.field, v))
            }
            LearnSpec::Match { dst, src: LearnSrc::Imm(v) } => write!(f, "{dst}={}", hex(v)),
            LearnSpec::Match { dst, src: LearnSrc::Field(src) } if src == dst => write!(f, "{dst}"),
            LearnSpec::Match { dst, src: LearnSrc::Field(src) } => write!(f, "{dst}={src}"),
            LearnSpec::Load { dst, src: LearnSrc::Imm(v) } => write!(f, "load:{}->{dst}", hex(v)),
            LearnSpec::Load { dst, src: LearnSrc::Field(src) } => write!(f, "load:{src}->{dst}"),
            LearnSpec::Output { src } => write!(f, "output:{src}"),
        }
    }
}

/// The flow a `learn` makes, in ovs-ofctl syntax (parse it with the bridge's ports to get the flow):
/// `values` are the bits of the packet's fields the specs read ([`LearnSpec::packet_field`]), in order.
/// `None` when `values` do not fit the specs.
pub fn learned_flow_text(l: &Learn, specs: &[LearnSpec], values: &[u128]) -> Option<String> {
    let mut values = values.iter();
    let mut matches: Vec<String> = Vec::new();
    let mut actions: Vec<String> = Vec::new();
    if l.fin_idle_timeout != 0 || l.fin_hard_timeout != 0 {
        let fin = Action::FinTimeout { idle: l.fin_idle_timeout, hard: l.fin_hard_timeout };
        actions.push(fin.to_string());
    }
    let bits = |n: u16, v: u128| if n >= 128 { v } else { v & ((1u128 << n) - 1) };
    for spec in specs {
        let v = match *spec {
            LearnSpec::Match { src: LearnSrc::Imm(v), .. } | LearnSpec::Load { src: LearnSrc::Imm(v), .. } => v,
            _ => *values.next()?,
        };
        match *spec {
            LearnSpec::Match { dst, .. } if dst.ofs == 0 && dst.nbits == dst.field.bits() => {
                let name = match dst.field {
                    // The flow syntax names these by their NXM names only.
                    Field::TpSrc => "tp_src",
                    Field::TpDst => "tp_dst",
                    f => f.name(),
                };
                matches.push(format!("{name}={}", format_value(dst.field, bits(dst.nbits, v))));
            }
            LearnSpec::Match { dst, .. } => matches.push(format!("{dst}={}", hex(bits(dst.nbits, v)))),
            LearnSpec::Load { dst, .. } => actions.push(format!("load:{}->{dst}", hex(bits(dst.nbits, v)))),
            // As OVS: an output only to a port number, or IN_PORT, FLOOD, ALL or LOCAL.
            LearnSpec::Output { src } => {
                if src.nbits > 16 && v >> 16 != 0 {
                    continue;
                }
                match bits(16, v) as u16 {
                    p @ 1..=0xfeff => actions.push(format!("output:{p}")),
                    0xfff8 => actions.push("in_port".into()),
                    0xfffb => actions.push("flood".into()),
                    0xfffc => actions.push("all".into()),
                    0xfffe => actions.push("LOCAL".into()),
                    _ => {}
                }
            }
        }
    }
    let mut text = format!("table={},priority={}", l.table, l.priority);
    if l.cookie != 0 {
        text += &format!(",cookie={:#x}", l.cookie);
    }
    if l.idle_timeout != 0 {
        text += &format!(",idle_timeout={}", l.idle_timeout);
    }
    if l.hard_timeout != 0 {
        text += &format!(",hard_timeout={}", l.hard_timeout);
    }
    if l.send_flow_rem {
        text += ",send_flow_rem";
    }
    for m in &matches {
        text.push(',');
        text += m;
    }
    text += " actions=";
    text += &if actions.is_empty() { "drop".to_string() } else { actions.join(",") };
    Some(text)
}

/// The learns of an action list with their specs: `(position of the learn, settings, specs)`.
pub fn learns_in(actions: &[Action]) -> Vec<(usize, Learn, Vec<LearnSpec>)> {
    let mut out = Vec::new();
    for (i, a) in actions.iter().enumerate() {
        if let Action::Learn(l) = *a {
            let specs = actions[i + 1..]
                .iter()
                .take(usize::from(l.n))
                .filter_map(|s| match s {
                    Action::LearnSpec(s) => Some(*s),
                    _ => None,
                })
                .collect();
            out.push((i, l, specs));
        }
    }
    out
}
