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
    /// Register `n` (0..16), 32 bits, zero when a packet enters the bridge.
    Reg(u8),
    /// OpenFlow's 64-bit metadata.
    Metadata,
    /// The packet mark, 32 bits.
    PktMark,
    /// `xreg n`: registers 2n and 2n+1 as one 64-bit field. Only in `load`/`move`; a match on it is kept
    /// as matches on its two registers (as OVS prints it).
    XReg(u8),
    /// `xxreg n`: registers 4n..4n+3 as one 128-bit field (as [`Field::XReg`]).
    XXReg(u8),
}

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
        (Field::VlanTci, &["vlan_tci"], "NXM_OF_VLAN_TCI", 16, false),
        (Field::NwSrc, &["ip_src", "nw_src"], "NXM_OF_IP_SRC", 32, false),
        (Field::NwDst, &["ip_dst", "nw_dst"], "NXM_OF_IP_DST", 32, false),
        (Field::NwProto, &["nw_proto", "ip_proto"], "NXM_OF_IP_PROTO", 8, false),
        (Field::NwTos, &["nw_tos"], "NXM_OF_IP_TOS", 8, false),
        (Field::TpSrc, &["tcp_src", "tp_src"], "NXM_OF_TCP_SRC", 16, false),
        (Field::TpDst, &["tcp_dst", "tp_dst"], "NXM_OF_TCP_DST", 16, false),
        (Field::Ipv6Src, &["ipv6_src"], "NXM_NX_IPV6_SRC", 128, false),
        (Field::Ipv6Dst, &["ipv6_dst"], "NXM_NX_IPV6_DST", 128, false),
        (Field::ArpOp, &["arp_op"], "NXM_OF_ARP_OP", 16, false),
        (Field::ArpSpa, &["arp_spa"], "NXM_OF_ARP_SPA", 32, false),
        (Field::ArpTpa, &["arp_tpa"], "NXM_OF_ARP_TPA", 32, false),
        (Field::TunSrc, &["tun_src"], "NXM_NX_TUN_IPV4_SRC", 32, false),
        (Field::TunDst, &["tun_dst"], "NXM_NX_TUN_IPV4_DST", 32, false),
    ];
    const REGS: [&str; 16] = [
        "reg0", "reg1", "reg2", "reg3", "reg4", "reg5", "reg6", "reg7", "reg8", "reg9", "reg10", "reg11", "reg12",
        "reg13", "reg14", "reg15",
    ];
    const XREGS: [&str; 8] = ["xreg0", "xreg1", "xreg2", "xreg3", "xreg4", "xreg5", "xreg6", "xreg7"];
    const XXREGS: [&str; 4] = ["xxreg0", "xxreg1", "xxreg2", "xxreg3"];
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

    /// Whether actions may write it (registers, metadata, the mark, the tunnel ID, the Ethernet addresses).
    pub fn writable(self) -> bool {
        named_fields().any(|n| n.0 == self && n.4)
    }
}

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

/// A number as OVS prints hexadecimal fields: `0` or `0x…`.
pub fn hex(v: u128) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("0x{v:x}")
    }
}

/// `NAME`, `NAME[]`, `NAME[N]` or `NAME[A..B]`, NAME an NXM/OXM name or a field name.
fn sub_field(token: &str, text: &str) -> Result<SubField, FlowError> {
    let (name, range) = match text.split_once('[') {
        Some((n, r)) => (n, Some(r.strip_suffix(']').ok_or_else(|| err(token, format!("{text:?}: missing ]")))?)),
        None => (text, None),
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
fn reg_match(tok: &str, key: &str, v: &str) -> Result<Option<Vec<Match>>, FlowError> {
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
    /// `load:VALUE->DST`: the bits of DST become VALUE.
    Load {
        dst: SubField,
        value: u128,
    },
    /// `set_field:VALUE[/MASK]->FIELD` on a register, xreg, xxreg, the metadata or the mark (a mask that is one
    /// run of bits becomes a `load`, as OVS has it).
    SetReg {
        field: Field,
        value: u128,
        mask: u128,
    },
    /// `move:SRC->DST`: copies bits from one field to another.
    Move {
        src: SubField,
        dst: SubField,
    },
    /// `output:FIELD[a..b]`: to the port whose number those bits hold.
    OutputReg(SubField),
    /// `set_queue:N`: the OpenFlow queue the next outputs use. weft has no queues (QoS), as OVS on a port
    /// with no QoS configured: it is kept and changes nothing.
    SetQueue(u32),
    /// `pop_queue`: back to the port's default queue (nothing, as `set_queue`).
    PopQueue,
    /// `note:HEX`: bytes that mean nothing to the switch (controllers tag flows with them), kept padded with
    /// zeros as OVS keeps them (so that the NXAST_NOTE action fills whole 8-byte words): `len` bytes of
    /// `bytes`. At most [`NOTE_MAX`] bytes.
    Note {
        bytes: [u8; NOTE_MAX],
        len: u8,
    },
    /// `exit`: stop; no further action runs, not even those of the tables that resubmitted here.
    Exit,
    /// `clear_actions` (an instruction): clears the action set, which weft's flows do not fill (it has no
    /// `write_actions`), so it changes nothing; kept so that the flow says what it was given.
    ClearActions,
    /// `write_metadata:VALUE[/MASK]` (an instruction: after the other actions, before goto_table).
    WriteMetadata {
        value: u64,
        mask: u64,
    },
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

/// Splits an action list at commas (or spaces, as ovs-ofctl also takes them) outside parentheses.
fn split_actions(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | ' ' | '\t' if depth == 0 => {
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
        Field::NwSrc | Field::NwDst => "needs ip or arp (dl_type=0x0800 or 0x0806)".into(),
        Field::NwProto | Field::NwTos => "needs ip or ipv6".into(),
        Field::Ipv6Src | Field::Ipv6Dst => "needs ipv6 (dl_type=0x86dd)".into(),
        Field::ArpSpa | Field::ArpTpa | Field::ArpOp => "needs arp".into(),
        Field::TpSrc | Field::TpDst => "needs tcp, udp, tcp6 or udp6".into(),
        _ => "needs icmp or icmp6".into(),
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
    let resolve = |tok: &str, name: &str| -> Result<u32, FlowError> {
        match name {
            "LOCAL" | "local" => Ok(OFPP_LOCAL),
            _ => port(name).ok_or_else(|| err(tok, format!("no port named or numbered {name:?}"))),
        }
    };
    let mut checks: Vec<(Field, &str)> = Vec::new();
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
            continue;
        }
        let v = need()?;
        if let Some(ms) = reg_match(tok, key, v)? {
            for m in ms {
                if f.matches.iter().any(|x| x.field == m.field) {
                    return Err(err(tok, "the field is matched twice"));
                }
                f.matches.push(m);
            }
            continue;
        }
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
            // A flow's rank when a full table evicts (OpenFlow 1.4). weft's tables do not evict, as OVS's do
            // not unless told to: it is checked and has no effect (and OpenFlow 1.3 cannot carry it, so it is
            // not printed, as OVS prints it there).
            "importance" => {
                num(tok, v, 65535)?;
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
            // The priority of a tagged frame: the TCI's top three bits, with the "tagged" bit.
            "dl_vlan_pcp" | "vlan_pcp" => {
                let pcp = num(tok, v, 7)?;
                Match { field: Field::VlanTci, value: 0x1000 | pcp << 13, mask: 0xf000 }
            }
            // The DSCP: nw_tos without the two ECN bits, shifted down.
            "ip_dscp" => Match { field: Field::NwTos, value: num(tok, v, 63)? << 2, mask: 0xfc },
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
        if !merge_vlan(&mut f.matches, m) {
            if f.matches.iter().any(|x| x.field == m.field) {
                return Err(err(tok, "the field is matched twice"));
            }
            f.matches.push(m);
        }
        checks.push((m.field, tok));
    }
    // Prerequisites are those of the whole match, wherever in it they were written (as OVS has it).
    for (field, tok) in checks {
        prerequisite(field, dl_type, nw_proto).map_err(|why| err(tok, why))?;
    }
    // A match under an all-zero mask matches everything: as OVS, it is no match at all.
    f.matches.retain(|m| m.mask != 0);
    f.match_text = format_matches(&f.matches);
    if let Some(a) = actions {
        if a.is_empty() {
            return Err(err("actions=", "an empty action list (use actions=drop)"));
        }
        for act in split_actions(a) {
            parse_action(act, &resolve, &mut f.actions)?;
        }
        f.actions_text = a.to_string();
        // Drop among other actions means nothing; alone it is the empty list.
        if f.actions.len() > 1 && f.actions.contains(&Action::Drop) {
            return Err(err("drop", "drop cannot be combined with other actions"));
        }
        // `drop` is the empty action list.
        f.actions.retain(|a| *a != Action::Drop);
        // The fields `load` and `move` touch need what a match on them would need.
        for a in &f.actions {
            let fields = match *a {
                Action::Load { dst, .. } => [Some(dst.field), None],
                Action::OutputReg(src) => [Some(src.field), None],
                Action::Move { src, dst } => [Some(src.field), Some(dst.field)],
                _ => continue,
            };
            for field in fields.into_iter().flatten() {
                prerequisite(field, dl_type, nw_proto).map_err(|why| err(&a.to_string(), why))?;
            }
        }
        // write_metadata and clear_actions are instructions: OpenFlow runs them after the actions, in the order
        // clear_actions, write_metadata, goto_table.
        if let Some(i) = f.actions.iter().position(|a| matches!(a, Action::WriteMetadata { .. })) {
            if f.actions[i + 1..].iter().any(|a| !matches!(a, Action::GotoTable(_))) {
                return Err(err(
                    "write_metadata",
                    "invalid instruction ordering: apply_actions must appear before write_metadata",
                ));
            }
        }
        if let Some(i) = f.actions.iter().position(|a| *a == Action::ClearActions) {
            if f.actions[i + 1..].iter().any(|a| !matches!(a, Action::GotoTable(_) | Action::WriteMetadata { .. })) {
                return Err(err(
                    "clear_actions",
                    "invalid instruction ordering: apply_actions must appear before clear_actions",
                ));
            }
        }
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
const WRITABLE: &str = "registers, xreg, xxreg, metadata, pkt_mark, tun_id, eth_src and eth_dst";

/// Parses one action into `out` (most are one [`Action`]; a `load` of more than 64 bits, or a masked
/// `set_field`, are several loads as OVS keeps them).
fn parse_action(
    act: &str,
    resolve: &dyn Fn(&str, &str) -> Result<u32, FlowError>,
    out: &mut Vec<Action>,
) -> Result<(), FlowError> {
    let (name, arg) = match act.find([':', '(']) {
        Some(i) if act.as_bytes()[i] == b':' => (&act[..i], Some(&act[i + 1..])),
        Some(i) => (&act[..i], act[i + 1..].strip_suffix(')')),
        None => (act, None),
    };
    let need = || arg.filter(|a| !a.is_empty()).ok_or_else(|| err(act, "needs an argument"));
    let a = match name.to_ascii_lowercase().as_str() {
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
        // As OVS with OpenFlow 1.3: the tunnel ID set by set_field.
        "set_tunnel" | "set_tunnel64" => {
            Action::SetField(SetField::TunId(num(act, need()?, u128::from(u64::MAX))? as u64))
        }
        "mod_dl_src" | "mod_dl_dst" => {
            let m = EthernetAddress::from_bytes(&(mac(act, need()?)? as u64).to_be_bytes()[2..]);
            Action::SetField(if name == "mod_dl_src" { SetField::EthSrc(m) } else { SetField::EthDst(m) })
        }
        "load" => {
            let arg = need()?;
            let (v, dst) = arg.split_once("->").ok_or_else(|| err(act, "expected load:VALUE->DST"))?;
            let dst = sub_field(act, dst)?;
            if !dst.field.writable() {
                return Err(err(act, format!("weft cannot write {} (it writes {WRITABLE})", dst.field.name())));
            }
            let value = num(act, v, u128::MAX)?;
            if dst.nbits < 128 && value >> dst.nbits != 0 {
                return Err(err(act, format!("value {v} does not fit into {} bits", dst.nbits)));
            }
            let mask = if dst.nbits >= 128 { u128::MAX } else { ((1u128 << dst.nbits) - 1) << dst.ofs };
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
            if !dst.field.writable() {
                return Err(err(act, format!("weft cannot write {} (it writes {WRITABLE})", dst.field.name())));
            }
            Action::Move { src, dst }
        }
        "exit" if arg.is_none() => Action::Exit,
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
        "write_metadata" => {
            let (value, mask) = num_mask(act, need()?, u128::from(u64::MAX))?;
            Action::WriteMetadata { value: (value & mask) as u64, mask: mask as u64 }
        }
        "set_field" => {
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
                    let sub = sub_field(act, other).ok().filter(|s| {
                        matches!(
                            s.field,
                            Field::Reg(_) | Field::XReg(_) | Field::XXReg(_) | Field::Metadata | Field::PktMark
                        ) && !other.contains('[')
                    });
                    let Some(sub) = sub else {
                        return Err(err(
                            act,
                            format!(
                                "cannot set {other:?} (weft sets eth_src, eth_dst, vlan_vid, tun_id, tun_dst, \
                                     registers, metadata and pkt_mark)"
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
            Action::SetReg { field, value, mask } => {
                let full = if field.bits() == 128 { u128::MAX } else { (1u128 << field.bits()) - 1 };
                if mask == full {
                    write!(f, "set_field:{}->{}", hex(value), field.name())
                } else {
                    write!(f, "set_field:{}/{}->{}", hex(value), hex(mask), field.name())
                }
            }
            Action::Move { src, dst } => write!(f, "move:{src}->{dst}"),
            Action::OutputReg(src) => write!(f, "output:{src}"),
            Action::Exit => f.write_str("exit"),
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
        for (i, a) in self.actions.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
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
        let mut out = out.trim_end().to_string();
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
        Field::PktMark => 0,
        Field::Reg(n) | Field::XReg(n) | Field::XXReg(n) => 10 + u16::from(n),
        Field::TunId => 30,
        Field::TunSrc => 31,
        Field::TunDst => 32,
        Field::Metadata => 33,
        Field::InPort => 34,
        Field::VlanTci => 35,
        Field::DlSrc => 36,
        Field::DlDst => 37,
        Field::DlType => 38,
        Field::NwSrc | Field::ArpSpa | Field::Ipv6Src => 39,
        Field::NwDst | Field::ArpTpa | Field::Ipv6Dst => 40,
        Field::NwProto => 41,
        Field::ArpOp => 42,
        Field::NwTos => 43,
        Field::TpSrc => 44,
        Field::TpDst => 45,
        Field::IcmpType => 46,
        Field::IcmpCode => 47,
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
    sorted.sort_by_key(|m| rank(m.field));
    if let Some(m) = get(Field::PktMark) {
        words.push(format!("pkt_mark={}", hex_mask(m, 0xffff_ffff)));
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
            Field::PktMark | Field::XReg(_) | Field::XXReg(_) => continue,
            Field::Reg(n) => format!("reg{n}={}", hex_mask(m, 0xffff_ffff)),
            Field::Metadata => format!("metadata={}", hex_mask(m, u128::from(u64::MAX))),
            Field::DlType if !proto_said && !matches!(dl_type, Some(0x0800 | 0x86dd | 0x0806)) => {
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

    /// Flows with registers and the actions that write them print as `ovs-ofctl -O OpenFlow13 parse-flow`
    /// (Open vSwitch 3.1) prints them: its output for these inputs, taken from a run of it.
    #[test]
    fn registers_print_as_ovs_prints_them() {
        for (text, ovs) in [
            ("reg0=5,actions=load:1->reg1", "reg0=0x5 actions=load:0x1->NXM_NX_REG1[]"),
            (
                "xreg1=0x500000006,metadata=0x5/0xf,pkt_mark=1,actions=load:1->xxreg0[3],set_field:3->tun_id,\
                 set_field:5/7->reg3,goto_table:3",
                "pkt_mark=0x1,reg2=0x5,reg3=0x6,metadata=0x5/0xf actions=load:0x1->NXM_NX_XXREG0[3],\
                 set_field:0x3->tun_id,load:0x5->NXM_NX_REG3[0..2],goto_table:3",
            ),
            (
                "actions=move:reg0->reg1,move:NXM_NX_REG0[0..7]->NXM_OF_ETH_DST[8..15],load:0x123456789->xreg3",
                "actions=move:NXM_NX_REG0[]->NXM_NX_REG1[],move:NXM_NX_REG0[0..7]->NXM_OF_ETH_DST[8..15],\
                 load:0x123456789->OXM_OF_PKT_REG3[]",
            ),
            (
                "reg0=5,actions=load:1->reg1,set_field:2->reg3,load:0xa->NXM_OF_ETH_SRC[0..7],\
                 move:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15],mod_dl_src:00:00:00:00:00:01,\
                 set_field:00:00:00:00:00:02->eth_dst,write_metadata:0x5/0xff",
                "reg0=0x5 actions=load:0x1->NXM_NX_REG1[],set_field:0x2->reg3,load:0xa->NXM_OF_ETH_SRC[0..7],\
                 move:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15],set_field:00:00:00:00:00:01->eth_src,\
                 set_field:00:00:00:00:00:02->eth_dst,write_metadata:0x5/0xff",
            ),
            ("xxreg1=0x5,actions=drop", "reg4=0,reg5=0,reg6=0,reg7=0x5 actions=drop"),
            (
                "actions=output:NXM_NX_REG0,output:reg1[16..31],output:NXM_NX_REG0[3..5],output:in_port",
                "actions=output:NXM_NX_REG0[],output:NXM_NX_REG1[16..31],output:NXM_NX_REG0[3..5],IN_PORT",
            ),
            ("xreg0=1/1,actions=drop", "reg1=0x1/0x1 actions=drop"),
            ("reg0=0/0,reg1=0,actions=drop", "reg1=0 actions=drop"),
            (
                "metadata=0x0/0xff,pkt_mark=0x5/0xf,reg15=0xffffffff,actions=drop",
                "pkt_mark=0x5/0xf,reg15=0xffffffff,metadata=0/0xff actions=drop",
            ),
            (
                "tcp,tp_dst=80,tp_src=9,nw_tos=4,nw_dst=10.0.0.1,nw_src=10.0.0.2,dl_vlan=5,dl_dst=00:00:00:00:00:01,\
                 dl_src=00:00:00:00:00:02,in_port=3,metadata=1,reg1=2,reg0=1,pkt_mark=3,tun_id=5,tun_src=1.1.1.1,\
                 tun_dst=2.2.2.2,actions=drop",
                "pkt_mark=0x3,tcp,reg0=0x1,reg1=0x2,tun_id=0x5,tun_src=1.1.1.1,tun_dst=2.2.2.2,metadata=0x1,in_port=3,\
                 dl_vlan=5,dl_src=00:00:00:00:00:02,dl_dst=00:00:00:00:00:01,nw_src=10.0.0.2,nw_dst=10.0.0.1,nw_tos=4,\
                 tp_src=9,tp_dst=80 actions=drop",
            ),
            (
                "nw_proto=47,ip,nw_tos=8,nw_dst=1.2.3.4,in_port=1,dl_vlan=3,actions=drop",
                "ip,in_port=1,dl_vlan=3,nw_dst=1.2.3.4,nw_proto=47,nw_tos=8 actions=drop",
            ),
            (
                "dl_type=0x1234,dl_src=00:00:00:00:00:01,actions=drop",
                "dl_src=00:00:00:00:00:01,dl_type=0x1234 actions=drop",
            ),
            (
                "arp,arp_op=1,arp_spa=1.1.1.1,arp_tpa=2.2.2.2,reg0=0,actions=drop",
                "arp,reg0=0,arp_spa=1.1.1.1,arp_tpa=2.2.2.2,arp_op=1 actions=drop",
            ),
            ("ip,ip_dscp=8,actions=drop", "ip,nw_tos=32 actions=drop"),
            ("dl_vlan_pcp=7,actions=drop", "dl_vlan_pcp=7 actions=drop"),
            ("dl_vlan_pcp=7,dl_vlan=5,actions=drop", "dl_vlan=5,dl_vlan_pcp=7 actions=drop"),
            ("vlan_pcp=3,actions=drop", "dl_vlan_pcp=3 actions=drop"),
            ("actions=resubmit(,1),exit,output:2", "actions=resubmit(,1),exit,output:2"),
            ("importance=5,actions=drop", "actions=drop"),
            (
                "actions=note:41.42.43,note:00.01.02.03.04.05.06.07,note",
                "actions=note:41.42.43.00.00.00,note:00.01.02.03.04.05.06.07.00.00.00.00.00.00,note:00.00.00.00.00.00",
            ),
            ("actions=set_queue:5,output:1", "actions=set_queue:5,output:1"),
            ("actions=enqueue:1:2,pop_queue", "actions=set_queue:2,output:1,pop_queue,pop_queue"),
            ("actions=output:1,clear_actions,goto_table:2", "actions=output:1,clear_actions,goto_table:2"),
            (
                "actions=resubmit:1,resubmit(2),resubmit(,3),resubmit(2,3)",
                "actions=resubmit:1,resubmit:2,resubmit(,3),resubmit(2,3)",
            ),
            ("dl_dst=aa:bb:cc:dd:ee:ff/00:00:00:00:00:00,actions=drop", "actions=drop"),
            (
                "udp dl_vlan_pcp=7 idle_timeout=5 actions=pop_vlan output:0",
                "udp,dl_vlan_pcp=7 actions=pop_vlan,output:0",
            ),
        ] {
            let f = p(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(f.to_string(), ovs, "{text}");
        }
    }

    #[test]
    fn parse_flow_prints_as_ovs_ofctl_does() {
        let f =
            p("table=3,cookie=0x123456789abcdef,hard_timeout=10,idle_timeout=5,priority=60000,ip actions=controller")
                .unwrap();
        assert_eq!(
            f.flow_mod_text(),
            "table:3 priority=60000,ip cookie:0x123456789abcdef idle:5 hard:10 actions=CONTROLLER:65535"
        );
        assert_eq!(p("table=0,ip actions=drop").unwrap().flow_mod_text(), "ip actions=drop");
        assert_eq!(p("actions=drop").unwrap().flow_mod_text(), "actions=drop");
        assert_eq!(p("table=1,actions=drop").unwrap().flow_mod_text(), "table:1 actions=drop");
    }

    #[test]
    fn register_actions_are_checked() {
        for (text, says) in [
            ("actions=load:0x100->NXM_NX_REG0[0..7]", "does not fit"),
            ("actions=move:NXM_NX_REG0[0..7]->NXM_NX_REG1[0..15]", "8 bits, destination 16"),
            ("actions=load:1->NXM_OF_IN_PORT[]", "cannot write in_port"),
            ("actions=move:NXM_OF_IP_SRC[]->NXM_NX_REG0[]", "needs ip"),
            ("actions=load:1->NXM_NX_REG0[32]", "not within the 32 bits"),
            ("actions=load:1->NXM_NX_REG16[]", "unknown field"),
            ("actions=write_metadata:1,output:1", "apply_actions must appear before write_metadata"),
            ("reg16=1,actions=drop", "unknown field"),
            ("reg0=0x100000000,actions=drop", "out of range"),
        ] {
            let e = p(text).unwrap_err();
            assert!(e.to_string().contains(says), "{text}: {e}");
        }
        assert!(p("ip,actions=move:NXM_OF_IP_SRC[]->NXM_NX_REG0[]").is_ok());
        assert!(p("actions=write_metadata:1,goto_table:1").is_ok());
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
