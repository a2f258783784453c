//! Connection tracking in flows: the `ct(...)` and `ct_clear` actions and the `ct_*` matches, in
//! ovs-ofctl's syntax (`ct(commit,table=1,zone=5,nat(src=10.0.0.1-10.0.0.9:1024-2047),
//! exec(load:0x1->NXM_NX_CT_MARK[]))`, `ct_state=+trk+est-inv`).

use super::*;

/// `ct_state` bits by name, lowest first (OVS's order, in which they print).
pub const CT_STATES: [(&str, u16); 8] =
    [("new", 1), ("est", 2), ("rel", 4), ("rpl", 8), ("inv", 0x10), ("trk", 0x20), ("snat", 0x40), ("dnat", 0x80)];

/// `tcp_flags` bits by name, lowest first (the three reserved bits as OVS names them).
pub const TCP_FLAGS: [(&str, u16); 12] = [
    ("fin", 0x001),
    ("syn", 0x002),
    ("rst", 0x004),
    ("psh", 0x008),
    ("ack", 0x010),
    ("urg", 0x020),
    ("ece", 0x040),
    ("cwr", 0x080),
    ("ns", 0x100),
    ("[200]", 0x200),
    ("[400]", 0x400),
    ("[800]", 0x800),
];

/// Where a `ct` action's zone comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtZone {
    Imm(u16),
    /// 16 bits of a field, read when the action runs.
    Field(SubField),
}

/// Which addresses `nat` rewrites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NatKind {
    /// `nat` alone: the translation a committed connection already has is applied (no new one).
    Reverse,
    Src,
    Dst,
}

/// `nat(src|dst[=ADDR[-ADDR][:PORT[-PORT]]][,persistent][,hash|random])`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nat {
    pub kind: NatKind,
    pub addrs: Option<(IpAddr, IpAddr)>,
    pub ports: Option<(u16, u16)>,
    pub persistent: bool,
    pub hash: bool,
    pub random: bool,
}

/// Actions a `ct` action's `exec(...)` holds at most (a 128-bit `load` is two).
pub const CT_EXEC_MAX: usize = 4;

/// One action of `exec(...)`: a write into the connection's mark or label as it is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CtExec {
    /// `load:V->NXM_NX_CT_MARK[a..b]` (at most 64 bits; a wider load is two, as OVS carries it).
    Load { dst: SubField, value: u128 },
    /// `set_field:V[/M]->ct_mark|ct_label`.
    Set { field: Field, value: u128, mask: u128 },
    /// `move:SRC->NXM_NX_CT_MARK[a..b]`: bits of the packet's fields (registers…) when the action runs.
    Move { src: SubField, dst: SubField },
}

impl fmt::Display for CtExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            CtExec::Load { dst, value } => write!(f, "load:{}->{dst}", hex(value)),
            CtExec::Set { field, value, mask } if mask == Slot128::bits(0, field.bits()) => {
                write!(f, "set_field:{}->{}", hex(value), field.name())
            }
            CtExec::Set { field, value, mask } => write!(f, "set_field:{}/{}->{}", hex(value), hex(mask), field.name()),
            CtExec::Move { src, dst } => write!(f, "move:{src}->{dst}"),
        }
    }
}

/// The `ct` action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ct {
    pub commit: bool,
    pub force: bool,
    pub zone: CtZone,
    /// Where the tracked packet continues (`None`: it does not; the current actions go on untracked).
    pub table: Option<u8>,
    /// An application-layer helper (21 ftp, 69 tftp): accepted and kept, as the wire carries it; weft
    /// tracks those connections like any other (no expectations).
    pub alg: u16,
    pub nat: Option<Nat>,
    /// `exec(...)`: writes into `ct_mark` and `ct_label`, in the order written.
    pub exec: [Option<CtExec>; CT_EXEC_MAX],
}

/// A NAT range: first and last address, and the ports if given.
type NatRange = ((IpAddr, IpAddr), Option<(u16, u16)>);

impl Ct {
    /// The bits of the mark (false) or label (true) each of `exec`'s actions writes: (label?, value, mask)
    /// for a constant, (label?, source, offset) for a move.
    pub fn exec_writes(&self) -> impl Iterator<Item = CtWrite> + '_ {
        self.exec.iter().flatten().map(|e| match *e {
            CtExec::Load { dst, value } => CtWrite::Const {
                label: dst.field == Field::CtLabel,
                value: (value << dst.ofs) & Slot128::bits(dst.ofs, dst.nbits),
                mask: Slot128::bits(dst.ofs, dst.nbits),
            },
            CtExec::Set { field, value, mask } => {
                CtWrite::Const { label: field == Field::CtLabel, value: value & mask, mask }
            }
            CtExec::Move { src, dst } => CtWrite::Move { label: dst.field == Field::CtLabel, src, ofs: dst.ofs },
        })
    }
}

/// One write of `exec`, as the datapath carries it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CtWrite {
    Const { label: bool, value: u128, mask: u128 },
    Move { label: bool, src: SubField, ofs: u16 },
}

struct Slot128;
impl Slot128 {
    fn bits(ofs: u16, nbits: u16) -> u128 {
        if nbits >= 128 {
            u128::MAX
        } else {
            ((1u128 << nbits) - 1) << ofs
        }
    }
}

/// Parses the inside of `ct(...)`.
pub(super) fn parse_ct(act: &str, args: &str) -> Result<Action, FlowError> {
    let mut ct = Ct {
        commit: false,
        force: false,
        zone: CtZone::Imm(0),
        table: None,
        alg: 0,
        nat: None,
        exec: [None; CT_EXEC_MAX],
    };
    for arg in split_actions(args) {
        let (k, v) = match arg.find(['=', '(']) {
            Some(i) if arg.as_bytes()[i] == b'=' => (&arg[..i], Some(&arg[i + 1..])),
            Some(i) => (&arg[..i], arg[i + 1..].strip_suffix(')')),
            None => (arg, None),
        };
        match (k, v) {
            ("commit", None) => ct.commit = true,
            ("force", None) => ct.force = true,
            ("zone", Some(z)) => {
                ct.zone = if z.starts_with(|c: char| c.is_ascii_digit()) {
                    CtZone::Imm(num(act, z, 0xffff)? as u16)
                } else {
                    let sf = sub_field(act, z)?;
                    if sf.nbits != 16 {
                        return Err(err(act, format!("the zone is 16 bits, not the {} of {z}", sf.nbits)));
                    }
                    CtZone::Field(sf)
                }
            }
            ("table", Some(t)) => {
                let n = num(act, t, 255).map_err(|_| err(act, format!("unknown table {t}")))?;
                if n == 255 {
                    return Err(err(act, "invalid table 0xff"));
                }
                ct.table = Some(n as u8);
            }
            ("alg", Some(a)) => {
                ct.alg = match a {
                    "ftp" => 21,
                    "tftp" => 69,
                    _ => return Err(err(act, format!("unknown alg {a:?} (ftp or tftp)"))),
                }
            }
            ("nat", inner) => {
                if ct.nat.is_some() {
                    return Err(err(act, "nat given twice"));
                }
                ct.nat = Some(parse_nat(act, inner.unwrap_or(""))?);
            }
            ("exec", Some(inner)) => parse_exec(act, inner, &mut ct)?,
            _ => return Err(err(act, format!("invalid argument to \"ct\" action: `{k}'"))),
        }
    }
    if ct.force && !ct.commit {
        return Err(err(act, "\"force\" flag requires \"commit\" flag."));
    }
    if ct.exec.iter().any(Option::is_some) && !ct.commit {
        return Err(err(act, "exec requires commit (a connection's mark and label are set as it is committed)"));
    }
    Ok(Action::Ct(ct))
}

fn parse_exec(act: &str, inner: &str, ct: &mut Ct) -> Result<(), FlowError> {
    let mut n = 0;
    for a in split_actions(inner) {
        // `load:V->F`, `load(V->F)`, `set_field:V->F`, `set_field(V->F)`, `move:S->F`.
        let (name, body) = match a.find([':', '(']) {
            Some(i) if a.as_bytes()[i] == b':' => (&a[..i], &a[i + 1..]),
            Some(i) => (&a[..i], a[i + 1..].strip_suffix(')').unwrap_or(&a[i + 1..])),
            None => (a, ""),
        };
        let Some((v, dst)) = body.split_once("->") else {
            return Err(err(act, format!("ct action doesn't support nested action {name}")));
        };
        let writes: Vec<CtExec> = match name {
            "load" => {
                let sf = sub_field(act, dst)?;
                check_exec_field(act, sf.field)?;
                let max = if sf.nbits >= 128 { u128::MAX } else { (1u128 << sf.nbits) - 1 };
                let value = num(act, v, max)?;
                // As OVS carries a load: 64 bits at most each.
                split_load(sf, value).into_iter().map(|(dst, value)| CtExec::Load { dst, value }).collect()
            }
            "set_field" => {
                let sf = sub_field(act, dst)?;
                check_exec_field(act, sf.field)?;
                let full = Slot128::bits(0, sf.field.bits());
                let (value, mask) = num_mask(act, v, full)?;
                let one_run = mask != 0 && (mask >> mask.trailing_zeros()).trailing_ones() == mask.count_ones();
                if mask != full && one_run {
                    // A mask of one run of bits is a load, as OVS keeps it.
                    super::fields::loads(sf.field, value, mask)
                        .into_iter()
                        .filter_map(|l| match l {
                            Action::Load { dst, value } => Some(CtExec::Load { dst, value }),
                            _ => None,
                        })
                        .collect()
                } else {
                    vec![CtExec::Set { field: sf.field, value: value & mask, mask }]
                }
            }
            "move" => {
                let (src, dst) = (sub_field(act, v)?, sub_field(act, dst)?);
                check_exec_field(act, dst.field)?;
                if src.nbits != dst.nbits {
                    return Err(err(act, format!("move of {} bits into {} bits", src.nbits, dst.nbits)));
                }
                vec![CtExec::Move { src, dst }]
            }
            _ => return Err(err(act, format!("ct action doesn't support nested action {name}"))),
        };
        for w in writes {
            if n == CT_EXEC_MAX {
                return Err(err(act, format!("exec holds at most {CT_EXEC_MAX} actions")));
            }
            ct.exec[n] = Some(w);
            n += 1;
        }
    }
    Ok(())
}

fn split_load(sf: SubField, value: u128) -> Vec<(SubField, u128)> {
    if sf.nbits <= 64 {
        return vec![(sf, value)];
    }
    let lo = SubField { nbits: 64, ..sf };
    let hi = SubField { ofs: sf.ofs + 64, nbits: sf.nbits - 64, ..sf };
    vec![(lo, value & u128::from(u64::MAX)), (hi, value >> 64)]
}

fn check_exec_field(act: &str, f: Field) -> Result<(), FlowError> {
    if matches!(f, Field::CtMark | Field::CtLabel) {
        Ok(())
    } else {
        Err(err(act, format!("ct action doesn't support nested modification of {}", f.name())))
    }
}

/// `src`, `dst`, `src=RANGE`, flags; or nothing (`nat` alone).
fn parse_nat(act: &str, inner: &str) -> Result<Nat, FlowError> {
    let mut nat =
        Nat { kind: NatKind::Reverse, addrs: None, ports: None, persistent: false, hash: false, random: false };
    let mut flags = false;
    for arg in inner.split(',').map(str::trim).filter(|a| !a.is_empty()) {
        let (k, v) = arg.split_once('=').map_or((arg, None), |(k, v)| (k, Some(v)));
        match k {
            "src" | "dst" => {
                if nat.kind != NatKind::Reverse {
                    return Err(err(act, "May only specify one of \"src\" or \"dst\"."));
                }
                nat.kind = if k == "src" { NatKind::Src } else { NatKind::Dst };
                if let Some(r) = v {
                    let (addrs, ports) = nat_range(act, r)?;
                    nat.addrs = Some(addrs);
                    nat.ports = ports;
                }
            }
            "persistent" => nat.persistent = true,
            "hash" => nat.hash = true,
            "random" => nat.random = true,
            _ => return Err(err(act, format!("invalid key \"{k}\" in \"nat\" argument"))),
        }
        flags |= matches!(k, "persistent" | "hash" | "random");
    }
    if flags && nat.kind == NatKind::Reverse {
        return Err(err(act, "Flags allowed only with \"src\" or \"dst\"."));
    }
    if nat.hash && nat.random {
        return Err(err(act, "Both \"hash\" and \"random\" are not allowed."));
    }
    Ok(nat)
}

/// `A[-B][:P[-Q]]`, IPv6 addresses in brackets when ports follow.
fn nat_range(act: &str, r: &str) -> Result<NatRange, FlowError> {
    let bad = || err(act, format!("invalid nat range \"{r}\""));
    let (addrs, ports) = if r.starts_with('[') || r.matches(':').count() <= 1 {
        // IPv4 (one colon at most: the ports), or bracketed IPv6.
        match r.rfind(':') {
            Some(i) if !r.starts_with('[') || r[..i].ends_with(']') => (&r[..i], Some(&r[i + 1..])),
            _ => (r, None),
        }
    } else {
        (r, None)
    };
    let addr = |t: &str| -> Result<IpAddr, FlowError> {
        t.trim_start_matches('[').trim_end_matches(']').parse().map_err(|_| bad())
    };
    let (a, b) = match addrs.split_once('-') {
        Some((a, b)) => (addr(a)?, addr(b)?),
        None => (addr(addrs)?, addr(addrs)?),
    };
    let ordered = match (a, b) {
        (IpAddr::V4(x), IpAddr::V4(y)) => u32::from(x) <= u32::from(y),
        (IpAddr::V6(x), IpAddr::V6(y)) => u128::from(x) <= u128::from(y),
        _ => false,
    };
    if !ordered {
        return Err(bad());
    }
    let ports = match ports {
        None => None,
        Some(p) => {
            let port = |t: &str| t.parse::<u16>().map_err(|_| bad());
            let (x, y) = match p.split_once('-') {
                Some((x, y)) => (port(x)?, port(y)?),
                None => (port(p)?, port(p)?),
            };
            if x > y {
                return Err(bad());
            }
            Some((x, y))
        }
    };
    Ok(((a, b), ports))
}

impl fmt::Display for Ct {
    /// As ovs-ofctl prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        if self.commit {
            parts.push("commit".into());
        }
        if self.force {
            parts.push("force".into());
        }
        // OVS's order: the table before the zone.
        if let Some(t) = self.table {
            parts.push(format!("table={t}"));
        }
        match self.zone {
            CtZone::Imm(0) => {}
            CtZone::Imm(z) => parts.push(format!("zone={z}")),
            CtZone::Field(sf) => parts.push(format!("zone={sf}")),
        }
        if let Some(n) = &self.nat {
            parts.push(n.to_string());
        }
        if self.exec.iter().any(Option::is_some) {
            let writes: Vec<String> = self.exec.iter().flatten().map(CtExec::to_string).collect();
            parts.push(format!("exec({})", writes.join(",")));
        }
        match self.alg {
            0 => {}
            21 => parts.push("alg=ftp".into()),
            69 => parts.push("alg=tftp".into()),
            a => parts.push(format!("alg={a}")),
        }
        write!(f, "ct({})", parts.join(","))
    }
}

impl fmt::Display for Nat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("nat")?;
        let kind = match self.kind {
            NatKind::Reverse => return Ok(()),
            NatKind::Src => "src",
            NatKind::Dst => "dst",
        };
        write!(f, "({kind}")?;
        if let Some((a, b)) = self.addrs {
            let v6 = a.is_ipv6();
            let bracket = v6 && self.ports.is_some();
            let one = |x: IpAddr| if bracket { format!("[{x}]") } else { x.to_string() };
            write!(f, "={}", one(a))?;
            if a != b {
                write!(f, "-{}", one(b))?;
            }
            if let Some((p, q)) = self.ports {
                write!(f, ":{p}")?;
                if p != q {
                    write!(f, "-{q}")?;
                }
            }
        }
        if self.persistent {
            f.write_str(",persistent")?;
        }
        if self.hash {
            f.write_str(",hash")?;
        }
        if self.random {
            f.write_str(",random")?;
        }
        f.write_str(")")
    }
}

/// A match on a `ct_*` field; `None` when `key` is none of them.
pub(super) fn ct_match(tok: &str, key: &str, v: &str) -> Result<Option<Match>, FlowError> {
    let full = |field: Field, bits: u32| -> Result<Match, FlowError> {
        let max = if bits == 128 { u128::MAX } else { (1u128 << bits) - 1 };
        let (value, mask) = num_mask(tok, v, max)?;
        Ok(Match { field, value: value & mask, mask })
    };
    Ok(Some(match key {
        "ct_state" => {
            let (value, mask) = flags(tok, v, &CT_STATES, 0xff)
                .map_err(|e| err(tok, e.why.replace("unknown flag", "unknown connection tracking state flag")))?;
            Match { field: Field::CtState, value: u128::from(value), mask: u128::from(mask) }
        }
        "ct_zone" => Match { field: Field::CtZone, value: num(tok, v, 0xffff)?, mask: 0xffff },
        "ct_mark" => full(Field::CtMark, 32)?,
        "ct_label" => full(Field::CtLabel, 128)?,
        "ct_nw_proto" => Match { field: Field::CtNwProto, value: num(tok, v, 255)?, mask: 0xff },
        "ct_nw_src" => {
            let (value, mask) = ipv4_mask(tok, v)?;
            Match { field: Field::CtNwSrc, value, mask }
        }
        "ct_nw_dst" => {
            let (value, mask) = ipv4_mask(tok, v)?;
            Match { field: Field::CtNwDst, value, mask }
        }
        "ct_ipv6_src" => {
            let (value, mask) = ipv6_mask(tok, v)?;
            Match { field: Field::CtIpv6Src, value, mask }
        }
        "ct_ipv6_dst" => {
            let (value, mask) = ipv6_mask(tok, v)?;
            Match { field: Field::CtIpv6Dst, value, mask }
        }
        "ct_tp_src" => full(Field::CtTpSrc, 16)?,
        "ct_tp_dst" => full(Field::CtTpDst, 16)?,
        _ => return Ok(None),
    }))
}

/// Flags as OVS writes them: `+trk+est-new` (these bits set or clear, the others not looked at), `trk|est`
/// (exactly these set), or a number (`0x21/0x21`).
pub(super) fn flags(tok: &str, v: &str, names: &[(&str, u16)], full: u16) -> Result<(u16, u16), FlowError> {
    if v.starts_with(|c: char| c.is_ascii_digit()) {
        let (value, mask) = num_mask(tok, v, u128::from(full))?;
        return Ok((value as u16, mask as u16));
    }
    let bit = |name: &str| {
        names
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, b)| *b)
            .ok_or_else(|| err(tok, format!("unknown flag {name:?}")))
    };
    let (mut value, mut mask) = (0u16, 0u16);
    if !v.starts_with(['+', '-']) {
        for name in v.split('|') {
            value |= bit(name)?;
        }
        return Ok((value, full));
    }
    let mut rest = v;
    while let Some(sign) = rest.chars().next() {
        let body = &rest[1..];
        let end = body.find(['+', '-']).unwrap_or(body.len());
        let b = bit(&body[..end])?;
        if mask & b != 0 {
            return Err(err(tok, format!("{} is given twice", &body[..end])));
        }
        mask |= b;
        if sign == '+' {
            value |= b;
        }
        rest = &body[end..];
    }
    Ok((value, mask))
}

/// Flags as OVS prints them: `a|b` under a full mask (`0` for none), else `+a-b` (bits lowest first).
pub fn format_flags(names: &[(&str, u16)], value: u16, mask: u16, full: u16) -> String {
    if mask == full {
        if value == 0 {
            return "0".into();
        }
        let set: Vec<&str> = names.iter().filter(|(_, b)| value & b != 0).map(|(n, _)| *n).collect();
        return set.join("|");
    }
    names
        .iter()
        .filter(|(_, b)| mask & b != 0)
        .map(|(n, b)| format!("{}{n}", if value & b != 0 { '+' } else { '-' }))
        .collect()
}

/// `ct_state` as OVS prints it: `trk|est` under a full mask, else `+est+trk-new` (bits lowest first).
pub fn format_ct_state(value: u8, mask: u8) -> String {
    format_flags(&CT_STATES, u16::from(value), u16::from(mask), 0xff)
}

/// Whether a match says the packet was tracked and is valid (OVS's prerequisite of the `ct_nw_*`, `ct_tp_*`
/// fields): one of new, est, rel, rpl, snat, dnat set, or +trk with -inv.
pub(super) fn ct_valid(matches: &[Match]) -> bool {
    matches.iter().filter(|m| m.field == Field::CtState).any(|m| {
        let (v, mask) = (m.value as u8, m.mask as u8);
        v & 0xcf != 0 || (v & 0x20 != 0 && mask & 0x10 != 0 && v & 0x10 == 0)
    })
}

/// What the flow's match must say for its `ct` (as OVS checks it, OFPBAC_MATCH_INCONSISTENT otherwise): IP
/// or IPv6; no commit of a packet the match says is invalid; ftp's helper on TCP, tftp's on UDP.
pub(super) fn check_match(
    ct: &Ct,
    dl_type: Option<u16>,
    nw_proto: Option<u8>,
    matches: &[Match],
) -> Result<(), String> {
    if !matches!(dl_type, Some(0x0800 | 0x86dd)) {
        return Err("actions are invalid with specified match: ct needs ip or ipv6 in the match".into());
    }
    let inv = matches.iter().any(|m| m.field == Field::CtState && m.value & m.mask & 0x10 != 0);
    if inv && ct.commit {
        return Err("actions are invalid with specified match: cannot commit a packet matched as invalid".into());
    }
    if (ct.alg == 21 && nw_proto != Some(6)) || (ct.alg == 69 && nw_proto != Some(17)) {
        return Err("actions are invalid with specified match: alg=ftp needs tcp, alg=tftp udp".into());
    }
    Ok(())
}
