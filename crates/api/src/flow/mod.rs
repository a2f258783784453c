//! Flows in `ovs-ofctl` syntax: `[table=T,][priority=P,][cookie=C,][idle_timeout=S,][hard_timeout=S,]
//! MATCH... actions=ACTION[,ACTION...]`.
//!
//! Parsing checks everything (values, masks, prerequisites such as `ip` for `nw_dst`, wherever in the match)
//! and names the offending token in its error. Port names are turned into port numbers by the caller's
//! resolver, as `ovs-ofctl` does through the switch. Flows print back as `ovs-ofctl -O OpenFlow13` prints
//! them (`print.rs`).

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use weft_wire::EthernetAddress;

mod action_set;
mod actions;
pub use action_set::{action_set_class, nested_len, SetClass};
pub mod bundle;
mod ct;
mod fields;
pub mod learn;
mod print;
mod setfield;
#[cfg(test)]
mod tests;
mod trace;

use actions::parse_action;
pub use actions::{packet_in_reason, PACKET_IN_REASONS};
pub use ct::{format_ct_state, Ct, CtExec, CtWrite, CtZone, Nat, NatKind, CT_EXEC_MAX, CT_STATES};
pub use fields::{hex, loads, merge_vlan, note, SubField, NOTE_MAX};
use fields::{prerequisite, reg_match, sub_field, WRITABLE};
pub use print::format_matches;
pub use setfield::{format_set_field, is_packet_set, set_field_name, Ctx};
pub(crate) use setfield::{set_field_from_oxm, set_field_oxm};
pub use trace::packet_for;

/// OpenFlow's port number of the local (internal) port.
pub const OFPP_LOCAL: u32 = 0xffff_fffe;
/// OpenFlow's OFPP_IN_PORT (as `output(port=IN_PORT,…)` names it).
pub const OFPP_IN_PORT: u32 = 0xffff_fff8;
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
    /// The ECN bits of the TOS byte / traffic class (`nw_ecn`, `ip_ecn`), 0..=3.
    NwEcn,
    /// IPv4's TTL or IPv6's hop limit.
    NwTtl,
    /// IPv6's 20-bit flow label.
    Ipv6Label,
    /// ARP's sender hardware address; in an IPv6 neighbor solicitation, the source link-layer address
    /// option (`nd_sll`): one field, as in OVS, named by the frame's type.
    ArpSha,
    /// ARP's target hardware address; in a neighbor advertisement, the target link-layer address (`nd_tll`).
    ArpTha,
    /// The target address of a neighbor solicitation or advertisement.
    NdTarget,
    /// The top MPLS label stack entry's label (20 bits), traffic class (3) and bottom-of-stack bit.
    MplsLabel,
    MplsTc,
    /// `nw_frag`: bit 0 a fragment, bit 1 a later fragment (OVS's encoding).
    NwFrag,
    /// The top MPLS entry's TTL (matched only; `set_mpls_ttl`/`dec_mpls_ttl` write it).
    MplsTtl,
    MplsBos,
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
    /// What the `ct` action found: the state bits ([`CT_STATES`]), the zone, the connection's mark and
    /// label, and its original direction's protocol, addresses and ports.
    CtState,
    CtZone,
    CtMark,
    CtLabel,
    CtNwProto,
    CtNwSrc,
    CtNwDst,
    CtIpv6Src,
    CtIpv6Dst,
    CtTpSrc,
    CtTpDst,
    /// TCP's 12 flag bits (`tcp_flags`), matched only.
    TcpFlags,
    /// `tun_metadataN` (0..64): the data of the Geneve option that the bridge's TLV map binds to N, as a
    /// big-endian number (weft carries at most [`TUN_METADATA_MAX`] bytes of each). Matching it also asks
    /// that the option be there; writing it makes the packet carry the option when it leaves a Geneve port.
    TunMetadata(u8),
    /// `conj_id`: the id of the conjunctive flow a packet met ([`Action::Conjunction`]); matched only, and
    /// only the lookup that follows a conjunctive match sees it other than 0.
    ConjId,
}

/// The `tun_metadataN` fields (OVS's NXM_NX_TUN_METADATA0..63).
pub const TUN_METADATA_FIELDS: u8 = 64;
/// The longest option data one `tun_metadataN` field carries in weft (OVS: 124 bytes).
pub const TUN_METADATA_MAX: usize = 16;

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

// Configuration, not the packet path (the datapath runs its own compact form): `ct(...)`'s size is kept
// inline so that actions stay `Copy`.
#[allow(clippy::large_enum_variant)]
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
    /// `controller(reason=R,max_len=N,id=I)`: a packet-in saying reason R (OpenFlow's number: 0 no_match,
    /// 1 action, 2 invalid_ttl, 3 action_set, 4 group, 5 packet_out) to the controllers whose connection
    /// has controller ID I (NXT_SET_CONTROLLER_ID; 0 unless set). Only when it says more than
    /// `CONTROLLER:N` (NXAST_CONTROLLER on the wire).
    ControllerEx {
        max_len: u16,
        reason: u8,
        id: u16,
    },
    /// An OpenFlow 1.3 OUTPUT to `port` (a port number or a reserved port other than CONTROLLER, as on the
    /// wire) that came with a `max_len` other than 0: kept so that the flow reads back as it was written, as
    /// OVS keeps it. It acts and prints as the plain output ([`Action::plain`]).
    OutputMaxLen(u32, u16),
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
    /// `bundle(…)` / `bundle_load(…)`: a live member port of a list, chosen by a hash of the flow.
    Bundle(bundle::Bundle),
    /// `multipath(…)`: a link number by a hash of the flow, into a field.
    Multipath(bundle::Multipath),
    /// `output(port=P,max_len=N)`: to port P (a port of the bridge, LOCAL or IN_PORT), cut to its first N
    /// bytes (at least an Ethernet header's 14).
    OutputTrunc(u32, u32),
    /// `push:FIELD[a..b]`, `pop:FIELD[a..b]`: those bits onto the packet's stack, or the top of the stack into
    /// them (a stack of [`STACK_DEPTH`] values per packet).
    StackPush(SubField),
    StackPop(SubField),
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
    /// `mod_nw_ttl:N` (OpenFlow 1.3's SET_NW_TTL): the IPv4 TTL or IPv6 hop limit becomes N.
    SetNwTtl(u8),
    /// `dec_ttl` (OpenFlow 1.3's DEC_NW_TTL): the TTL or hop limit less one; a packet whose TTL would reach
    /// zero goes no further (dropped and counted as OVS does with no controller asking for it).
    DecTtl,
    /// `group:N`: the packet to group N of the bridge (which must exist).
    Group(u32),
    /// `push_mpls:ETHERTYPE` (0x8847 or 0x8848), `pop_mpls:ETHERTYPE`.
    PushMpls(u16),
    PopMpls(u16),
    /// `set_mpls_ttl:N`, `dec_mpls_ttl` (the top entry's TTL).
    SetMplsTtl(u8),
    DecMplsTtl,
    /// `meter:N` (OpenFlow 1.3's meter instruction, so first of all): the packet through meter N of the
    /// bridge (which must exist), which may drop it or remark its DSCP.
    Meter(u32),
    /// `write_metadata:VALUE[/MASK]` (an instruction: after the other actions, before goto_table).
    WriteMetadata {
        value: u64,
        mask: u64,
    },
    /// `ct(...)`: the packet through the connection tracker.
    Ct(Ct),
    /// `ct_clear`: the packet untracked again (its `ct_*` fields zero).
    CtClear,
    /// `write_actions(…)` (an instruction): the next N actions of the list are written into the packet's
    /// action set, which runs when the pipeline ends ([`action_set_class`]). Kept flat so that actions stay
    /// `Copy`.
    WriteActions(u8),
    /// `sample(probability=P,collector_set_id=C,obs_domain_id=D,obs_point_id=O[,sampling_port=S][,ingress|egress])`:
    /// IPFIX flow sampling. weft has no IPFIX exporter (the OVSDB tables that configure one are refused), so
    /// the action is kept, printed and sent back as written, and samples nothing — what Open vSwitch does
    /// when no Flow_Sample_Collector_Set names the collector set.
    Sample(Sample),
    /// `conjunction(id, k/n)`: the flow is one value of dimension `k` of the `n` dimensions of conjunctive
    /// flow `id` of its table. Such a flow does nothing itself: a packet that matches a flow of every dimension
    /// (at one priority) is looked up again with `conj_id=id`, and that flow's actions run. Only `note` may
    /// accompany it.
    Conjunction {
        id: u32,
        k: u8,
        n: u8,
    },
    /// `fin_timeout(idle_timeout=I,hard_timeout=H)`: when a TCP packet with FIN or RST runs it, the flow's
    /// idle and hard timeouts come down to these (0: that one unchanged; a shorter one stays).
    FinTimeout {
        idle: u16,
        hard: u16,
    },
    /// `learn(…)`: adds (or refreshes) a flow built from the packet; its pieces follow it as
    /// [`Action::LearnSpec`]s ([`learn::Learn::n`] of them).
    Learn(learn::Learn),
    /// One piece of the flow the `learn` before it builds (not an action of its own).
    LearnSpec(learn::LearnSpec),
    /// `clone(…)`: the next N actions of the list run on a copy of the packet (outputs, rewrites, resubmits
    /// of its own); the packet itself goes on as it was. N counts nested clones' actions too. Kept flat so
    /// that actions stay `Copy`.
    Clone(u8),
}

/// What `sample(…)` says ([`Action::Sample`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sample {
    /// Packets sampled out of 65535 (1..=65535).
    pub probability: u16,
    pub collector_set_id: u32,
    pub obs_domain_id: u32,
    pub obs_point_id: u32,
    /// The port sampled (an OpenFlow port number), if said.
    pub sampling_port: Option<u32>,
    /// 0 unsaid, 1 ingress, 2 egress (NXAST_SAMPLE3's numbering).
    pub direction: u8,
}

impl Field {
    /// One of what the `ct` action sets (`ct_state`, `ct_zone`, `ct_mark`, `ct_label`, the original tuple).
    pub fn is_ct(self) -> bool {
        matches!(
            self,
            Field::CtState
                | Field::CtZone
                | Field::CtMark
                | Field::CtLabel
                | Field::CtNwProto
                | Field::CtNwSrc
                | Field::CtNwDst
                | Field::CtIpv6Src
                | Field::CtIpv6Dst
                | Field::CtTpSrc
                | Field::CtTpDst
        )
    }
}

impl Action {
    /// What this action does: an [`Action::OutputMaxLen`] as the output it is, anything else itself.
    pub fn plain(self) -> Action {
        match self {
            Action::OutputMaxLen(p, _) => crate::ofp::reserved_port(p),
            a => a,
        }
    }
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
    /// `send_flow_rem`: the controllers hear when the flow goes (OFPT_FLOW_REMOVED: timed out, deleted, its
    /// group or meter deleted).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub send_flow_rem: bool,
    /// `check_overlap`: adding the flow fails if a flow of the same table and priority could match a packet
    /// it matches (OFPFMFC_OVERLAP).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub check_overlap: bool,
    /// `reset_counts`: a modification of the flow starts its packet and byte counts again.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub reset_counts: bool,
    /// `importance=N`: the flow's rank when a full table evicts (OpenFlow 1.4). weft's tables do not evict,
    /// as OVS's do not unless told to: it is kept and read back (OpenFlow 1.4 and 1.5 carry it; 1.3 does
    /// not, and neither does its text form).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub importance: u16,
}

fn is_zero(v: &u16) -> bool {
    *v == 0
}

impl Flow {
    /// The OpenFlow 1.3 FLOW_MOD flags of the flow (SEND_FLOW_REM, CHECK_OVERLAP, RESET_COUNTS).
    pub fn of_flags(&self) -> u16 {
        u16::from(self.send_flow_rem) | u16::from(self.check_overlap) << 1 | u16::from(self.reset_counts) << 2
    }

    /// Whether a packet could match both flows: every field both match has, under both masks, one value.
    pub fn overlaps(&self, other: &Flow) -> bool {
        self.matches.iter().all(|a| {
            other.matches.iter().filter(|b| b.field == a.field).all(|b| (a.value ^ b.value) & a.mask & b.mask == 0)
        })
    }
}

/// Values the stack of `push`/`pop` holds for one packet; a push past it, or a pop from an empty stack, stops
/// the packet.
pub const STACK_DEPTH: usize = 8;

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

/// N of `tun_metadataN` (0..64).
pub(crate) fn tun_metadata_index(name: &str) -> Option<u8> {
    let n = name.strip_prefix("tun_metadata")?;
    if n.is_empty() || n.len() > 2 || !n.bytes().all(|b| b.is_ascii_digit()) || (n.len() > 1 && n.starts_with('0')) {
        return None;
    }
    n.parse::<u8>().ok().filter(|n| *n < TUN_METADATA_FIELDS)
}

/// A `tun_metadataN` value or mask: a number of at most [`TUN_METADATA_MAX`] bytes.
fn tun_metadata_value(token: &str, text: &str) -> Result<u128, FlowError> {
    let digits = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")).map(|h| h.trim_start_matches('0'));
    if digits.is_some_and(|d| d.len() > 2 * TUN_METADATA_MAX) {
        return Err(err(
            token,
            format!("weft carries at most {TUN_METADATA_MAX} bytes of a tun_metadata field (OVS: 124)"),
        ));
    }
    num(token, text, u128::MAX)
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
        Some((at, len)) => (&text[..at], Some(text[at + len..].trim())),
        None => (text, None),
    };
    let toks = head.split([',', ' ', '\t']).map(str::trim).filter(|t| !t.is_empty()).collect();
    (toks, actions)
}

/// Where `actions=` (or `action=`, which ovs-ofctl also takes) starts, and its length.
fn find_actions(text: &str) -> Option<(usize, usize)> {
    let mut from = 0;
    while let Some(i) = text[from..].find("action") {
        let at = from + i;
        let len = if text[at..].starts_with("actions=") {
            "actions=".len()
        } else if text[at..].starts_with("action=") {
            "action=".len()
        } else {
            0
        };
        // It must start a token (not e.g. be part of another word).
        if len > 0 && (at == 0 || matches!(text.as_bytes()[at - 1], b',' | b' ' | b'\t')) {
            return Some((at, len));
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
        send_flow_rem: false,
        check_overlap: false,
        reset_counts: false,
        importance: 0,
    };
    let mut dl_type: Option<u16> = None;
    let mut nw_proto: Option<u8> = None;
    let mut icmp_type: Option<u8> = None;
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
            "sctp6" => Some(shorthand(0x86dd, Some(132))),
            "mpls" => Some(shorthand(0x8847, None)),
            "mplsm" => Some(shorthand(0x8848, None)),
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
        // The FLOW_MOD flags.
        if value.is_none() && matches!(key, "send_flow_rem" | "check_overlap" | "reset_counts") {
            match key {
                "send_flow_rem" => f.send_flow_rem = true,
                "check_overlap" => f.check_overlap = true,
                _ => f.reset_counts = true,
            }
            continue;
        }
        let v = need()?;
        // `FIELD[a..b]=V` (ovs-ofctl's subfield match): those bits of the field, merged with any other bits
        // of it matched already.
        if key.ends_with(']') && key.contains('[') {
            let sf = fields::sub_field(tok, key)?;
            let value = num(tok, v, (1u128 << sf.nbits) - 1)? << sf.ofs;
            let mask = ((1u128 << sf.nbits) - 1) << sf.ofs;
            let whole = sf.ofs == 0 && sf.nbits == sf.field.bits();
            let unmaskable = matches!(
                sf.field,
                Field::InPort | Field::DlType | Field::NwProto | Field::NwTtl | Field::NwEcn | Field::ArpOp
            );
            if unmaskable && !whole {
                return Err(err(tok, format!("{} cannot be matched in part", sf.field.name())));
            }
            for part in crate::ofp::split_regs(sf.field, value, mask) {
                match f.matches.iter_mut().find(|m| m.field == part.field) {
                    Some(m) if (m.value ^ part.value) & m.mask & part.mask != 0 => {
                        return Err(err(tok, "contradicts an earlier match of the field"))
                    }
                    Some(m) => {
                        m.value |= part.value;
                        m.mask |= part.mask;
                    }
                    None => f.matches.push(part),
                }
                checks.push((part.field, tok));
            }
            continue;
        }
        if let Some(m) = ct::ct_match(tok, key, v)? {
            if f.matches.iter().any(|x| x.field == m.field) {
                return Err(err(tok, "the field is matched twice"));
            }
            f.matches.push(m);
            checks.push((m.field, tok));
            continue;
        }
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
                f.importance = num(tok, v, 65535)? as u16;
                continue;
            }
            // Counters as dump-flows prints them: ovs-ofctl reads them (for replace-flows and diff-flows)
            // and adding a flow ignores them; so does weft.
            "n_packets" | "n_bytes" => {
                num(tok, v, u128::from(u64::MAX))?;
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
            "tp_src" | "tcp_src" | "udp_src" | "sctp_src" => field_and(Field::TpSrc, num_mask(tok, v, 0xffff)?),
            "tp_dst" | "tcp_dst" | "udp_dst" | "sctp_dst" => field_and(Field::TpDst, num_mask(tok, v, 0xffff)?),
            "icmp_type" | "icmpv6_type" => {
                let t = num(tok, v, 255)?;
                icmp_type = Some(t as u8);
                Match { field: Field::IcmpType, value: t, mask: 0xff }
            }
            "nw_ecn" | "ip_ecn" => Match { field: Field::NwEcn, value: num(tok, v, 3)?, mask: 3 },
            "nw_ttl" => Match { field: Field::NwTtl, value: num(tok, v, 255)?, mask: 0xff },
            "nw_frag" | "ip_frag" => {
                let (value, mask) = match v {
                    "no" => (0, 1),
                    "yes" => (1, 1),
                    "first" => (1, 3),
                    "later" => (3, 3),
                    "not_later" => (0, 2),
                    _ => return Err(err(tok, "nw_frag is no, yes, first, later or not_later")),
                };
                Match { field: Field::NwFrag, value, mask }
            }
            "ipv6_label" => field_and(Field::Ipv6Label, num_mask(tok, v, 0xf_ffff)?),
            "arp_sha" | "nd_sll" => field_and(Field::ArpSha, mac_mask(tok, v)?),
            "arp_tha" | "nd_tll" => field_and(Field::ArpTha, mac_mask(tok, v)?),
            "nd_target" => field_and(Field::NdTarget, ipv6_mask(tok, v)?),
            "mpls_label" => Match { field: Field::MplsLabel, value: num(tok, v, 0xf_ffff)?, mask: 0xf_ffff },
            "mpls_tc" => Match { field: Field::MplsTc, value: num(tok, v, 7)?, mask: 7 },
            "mpls_bos" => Match { field: Field::MplsBos, value: num(tok, v, 1)?, mask: 1 },
            "mpls_ttl" => Match { field: Field::MplsTtl, value: num(tok, v, 255)?, mask: 0xff },
            "icmp_code" | "icmpv6_code" => Match { field: Field::IcmpCode, value: num(tok, v, 255)?, mask: 0xff },
            "tcp_flags" => {
                let (value, mask) = ct::flags(tok, v, &ct::TCP_FLAGS, 0x0fff)?;
                Match { field: Field::TcpFlags, value: u128::from(value), mask: u128::from(mask) }
            }
            "ipv6_src" => field_and(Field::Ipv6Src, ipv6_mask(tok, v)?),
            "ipv6_dst" => field_and(Field::Ipv6Dst, ipv6_mask(tok, v)?),
            "tun_id" | "tunnel_id" => field_and(Field::TunId, num_mask(tok, v, u128::from(u64::MAX))?),
            k if tun_metadata_index(k).is_some() => {
                let n = tun_metadata_index(k).unwrap_or(0);
                let (value, mask) = match v.split_once('/') {
                    Some((a, b)) => (tun_metadata_value(tok, a)?, tun_metadata_value(tok, b)?),
                    None => (tun_metadata_value(tok, v)?, u128::MAX),
                };
                field_and(Field::TunMetadata(n), (value, mask))
            }
            "conj_id" => Match { field: Field::ConjId, value: num(tok, v, u128::from(u32::MAX))?, mask: 0xffff_ffff },
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
        prerequisite(field, dl_type, nw_proto, icmp_type).map_err(|why| err(tok, why))?;
        let ct_tuple =
            field.is_ct() && !matches!(field, Field::CtState | Field::CtZone | Field::CtMark | Field::CtLabel);
        if ct_tuple && !ct::ct_valid(&f.matches) {
            return Err(err(tok, "needs a tracked, valid connection (ct_state=+trk-inv, +new, +est, …)"));
        }
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
        // A conjunctive flow's clauses act only together: nothing but notes may come with them.
        if let Some(other) = f.actions.iter().find(|a| !matches!(a, Action::Conjunction { .. } | Action::Note { .. })) {
            if f.actions.iter().any(|a| matches!(a, Action::Conjunction { .. })) {
                let name = other.to_string();
                let name = name.split([':', '(']).next().unwrap_or("");
                return Err(err(
                    "conjunction",
                    format!(
                        "\"conjunction\" actions may be used along with \"note\" but not any other kind of action \
                         (such as the \"{name}\" action used here)"
                    ),
                ));
            }
        }
        // Drop among other actions means nothing; alone it is the empty list.
        if f.actions.len() > 1 && f.actions.contains(&Action::Drop) {
            return Err(err("drop", "drop cannot be combined with other actions"));
        }
        // `drop` is the empty action list.
        f.actions.retain(|a| *a != Action::Drop);
        // The fields `load` and `move` touch need what a match on them would need — of the packet as the
        // actions before have made it (a label pushed makes an MPLS packet, a label popped whatever it says).
        let (mut dl_type, mut nw_proto) = (dl_type, nw_proto);
        for a in &f.actions {
            if let Action::PushMpls(t) | Action::PopMpls(t) = *a {
                (dl_type, nw_proto) = (Some(t), None);
                continue;
            }
            if let Action::Ct(ct) = a {
                ct::check_match(ct, dl_type, nw_proto, &f.matches).map_err(|why| err(&a.to_string(), why))?;
                continue;
            }
            // On what the match says is not TCP, OVS refuses it (over OpenFlow 1.1+).
            let mpls = matches!(dl_type, Some(0x8847 | 0x8848));
            if matches!(a, Action::FinTimeout { .. }) && (mpls || nw_proto.is_some_and(|p| p != 6)) {
                return Err(err(&a.to_string(), "needs TCP, which the match (and the actions before) rule out"));
            }
            let fields = match *a {
                Action::LearnSpec(spec) => [spec.packet_field().map(|s| s.field), None],
                Action::Load { dst, .. } => [Some(dst.field), None],
                Action::OutputReg(src) => [Some(src.field), None],
                Action::Move { src, dst } => [Some(src.field), Some(dst.field)],
                Action::StackPush(sf) | Action::StackPop(sf) => [Some(sf.field), None],
                Action::Bundle(b) => [b.dst.map(|d| d.field), None],
                Action::Multipath(m) => [Some(m.dst.field), None],
                Action::SetReg { field, mask, .. } if is_packet_set(field, mask) => {
                    [setfield::set_field_needs(field), None]
                }
                // dec_ttl and mod_nw_ttl need no IP match (as OVS): on other packets they do nothing.
                _ => continue,
            };
            for field in fields.into_iter().flatten() {
                prerequisite(field, dl_type, nw_proto, icmp_type).map_err(|why| err(&a.to_string(), why))?;
            }
        }
        action_set::check_instruction_order(&f.actions, f.table)?;
    }
    Ok(f)
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
