//! OpenFlow 1.3 (version 0x04) messages: the header, OXM matches, instructions and actions weft uses, and
//! the fixed parts of the messages it exchanges. Decoding checks every length before reading.

use crate::{be16, be32, Error, Result};

pub const VERSION: u8 = 0x04;
pub const HEADER_LEN: usize = 8;

pub mod msg {
    pub const HELLO: u8 = 0;
    pub const ERROR: u8 = 1;
    pub const ECHO_REQUEST: u8 = 2;
    pub const ECHO_REPLY: u8 = 3;
    pub const EXPERIMENTER: u8 = 4;
    pub const FEATURES_REQUEST: u8 = 5;
    pub const FEATURES_REPLY: u8 = 6;
    pub const GET_CONFIG_REQUEST: u8 = 7;
    pub const GET_CONFIG_REPLY: u8 = 8;
    pub const SET_CONFIG: u8 = 9;
    pub const GROUP_MOD: u8 = 15;
    pub const PACKET_IN: u8 = 10;
    pub const FLOW_REMOVED: u8 = 11;
    pub const PORT_STATUS: u8 = 12;
    pub const PACKET_OUT: u8 = 13;
    pub const FLOW_MOD: u8 = 14;
    pub const MULTIPART_REQUEST: u8 = 18;
    pub const MULTIPART_REPLY: u8 = 19;
    pub const BARRIER_REQUEST: u8 = 20;
    pub const BARRIER_REPLY: u8 = 21;
    pub const ROLE_REQUEST: u8 = 24;
    pub const ROLE_REPLY: u8 = 25;
    pub const GET_ASYNC_REQUEST: u8 = 26;
    pub const GET_ASYNC_REPLY: u8 = 27;
    pub const SET_ASYNC: u8 = 28;
    pub const METER_MOD: u8 = 29;
    pub const PORT_MOD: u8 = 16;
}

/// Multipart (statistics) types.
pub mod mp {
    pub const DESC: u16 = 0;
    pub const FLOW: u16 = 1;
    pub const AGGREGATE: u16 = 2;
    pub const TABLE: u16 = 3;
    pub const PORT_STATS: u16 = 4;
    pub const GROUP: u16 = 6;
    pub const GROUP_DESC: u16 = 7;
    pub const GROUP_FEATURES: u16 = 8;
    pub const METER: u16 = 9;
    pub const METER_CONFIG: u16 = 10;
    pub const METER_FEATURES: u16 = 11;
    pub const PORT_DESC: u16 = 13;
}

/// Error types and codes (OpenFlow 1.3 §A.4.4).
pub mod error {
    pub const HELLO_FAILED: u16 = 0;
    pub const BAD_REQUEST: u16 = 1;
    pub const BAD_ACTION: u16 = 2;
    pub const BAD_INSTRUCTION: u16 = 3;
    pub const BAD_MATCH: u16 = 4;
    pub const FLOW_MOD_FAILED: u16 = 5;
    pub const GROUP_MOD_FAILED: u16 = 6;
    pub const METER_MOD_FAILED: u16 = 12;
    pub const PORT_MOD_FAILED: u16 = 7;
    /// PORT_MOD_FAILED codes.
    pub mod port_mod {
        pub const BAD_PORT: u16 = 0;
        pub const BAD_HW_ADDR: u16 = 1;
        pub const BAD_CONFIG: u16 = 2;
    }
    /// HELLO_FAILED / INCOMPATIBLE; BAD_REQUEST / BAD_VERSION.
    pub const INCOMPATIBLE: u16 = 0;
    pub const BAD_VERSION: u16 = 0;
    pub const BAD_TYPE: u16 = 1;
    pub const BAD_MULTIPART: u16 = 2;
    pub const BAD_LEN: u16 = 6;
    /// BAD_MATCH codes.
    pub const BAD_FIELD: u16 = 6;
    pub const BAD_VALUE: u16 = 7;
    pub const BAD_MASK: u16 = 8;
    pub const BAD_PREREQ: u16 = 9;
    /// BAD_ACTION / BAD_OUT_PORT; BAD_INSTRUCTION / UNKNOWN_INST; FLOW_MOD_FAILED / BAD_COMMAND.
    pub const BAD_OUT_PORT: u16 = 4;
    pub const UNKNOWN_INST: u16 = 0;
    pub const BAD_COMMAND: u16 = 6;
    pub const BAD_TABLE_ID: u16 = 2;
    /// FLOW_MOD_FAILED / OVERLAP (check_overlap).
    pub const OVERLAP: u16 = 3;
    /// BAD_ACTION codes (an action type the switch does not know or does: BAD_ACTION_TYPE).
    pub const BAD_ACTION_TYPE: u16 = 0;
    pub const BAD_EXPERIMENTER: u16 = 2;
    pub const BAD_EXP_TYPE: u16 = 3;
    pub const BAD_ARGUMENT: u16 = 5;
    pub const BAD_SET_TYPE: u16 = 13;
    pub const BAD_SET_ARGUMENT: u16 = 15;
    pub const BAD_SET_LEN: u16 = 14;
    /// BAD_ACTION / BAD_OUT_GROUP: a `group` action naming no group.
    pub const BAD_OUT_GROUP: u16 = 9;
    /// BAD_REQUEST / BAD_STAT... OpenFlow 1.3's BAD_MULTIPART is 2, BAD_TABLE_ID 9.
    /// GROUP_MOD_FAILED codes.
    pub mod group {
        pub const GROUP_EXISTS: u16 = 0;
        pub const INVALID_GROUP: u16 = 1;
        pub const WEIGHT_UNSUPPORTED: u16 = 2;
        pub const OUT_OF_GROUPS: u16 = 3;
        pub const CHAINING_UNSUPPORTED: u16 = 5;
        pub const WATCH_UNSUPPORTED: u16 = 6;
        pub const UNKNOWN_GROUP: u16 = 8;
        pub const BAD_TYPE: u16 = 10;
        pub const BAD_COMMAND: u16 = 11;
        pub const BAD_WATCH: u16 = 13;
    }
    /// METER_MOD_FAILED codes.
    pub mod meter {
        pub const METER_EXISTS: u16 = 1;
        pub const INVALID_METER: u16 = 2;
        pub const UNKNOWN_METER: u16 = 3;
        pub const BAD_COMMAND: u16 = 4;
        pub const BAD_FLAGS: u16 = 5;
        pub const BAD_RATE: u16 = 6;
        pub const BAD_BAND: u16 = 8;
        pub const OUT_OF_METERS: u16 = 10;
        pub const OUT_OF_BANDS: u16 = 11;
    }
}

/// Reserved port numbers.
pub mod port {
    pub const MAX: u32 = 0xffff_ff00;
    pub const IN_PORT: u32 = 0xffff_fff8;
    pub const NORMAL: u32 = 0xffff_fffa;
    pub const FLOOD: u32 = 0xffff_fffb;
    pub const ALL: u32 = 0xffff_fffc;
    pub const CONTROLLER: u32 = 0xffff_fffd;
    pub const LOCAL: u32 = 0xffff_fffe;
    pub const ANY: u32 = 0xffff_ffff;
    /// Only in a packet-out's actions: run the frame through the flow tables.
    pub const TABLE: u32 = 0xffff_fff9;
}

/// OXM fields of the OpenFlow basic class (0x8000), and the Nicira class (0x0001) tunnel addresses.
pub mod oxm {
    pub const CLASS_BASIC: u16 = 0x8000;
    /// Nicira's classes: NXM_OF (OpenFlow 1.0's fields) and NXM_NX (extensions: registers, the mark, …).
    pub const CLASS_NXM0: u16 = 0x0000;
    pub const CLASS_NXM1: u16 = 0x0001;
    /// OpenFlow 1.5's packet registers (OVS's `xreg`), also understood in 1.3.
    pub const CLASS_PKT_REG: u16 = 0x8001;
    pub const METADATA: u8 = 2;
    /// Nicira class: registers 0..16 are fields 0..16, the xxregs 111..115, the packet mark 33.
    pub const NX_REG0: u8 = 0;
    pub const NX_PKT_MARK: u8 = 33;
    pub const NX_XXREG0: u8 = 111;
    pub const IN_PORT: u8 = 0;
    pub const ETH_DST: u8 = 3;
    pub const ETH_SRC: u8 = 4;
    pub const ETH_TYPE: u8 = 5;
    pub const VLAN_VID: u8 = 6;
    pub const VLAN_PCP: u8 = 7;
    pub const IP_DSCP: u8 = 8;
    pub const IP_ECN: u8 = 9;
    pub const IP_PROTO: u8 = 10;
    pub const IPV4_SRC: u8 = 11;
    pub const IPV4_DST: u8 = 12;
    pub const TCP_SRC: u8 = 13;
    pub const TCP_DST: u8 = 14;
    pub const UDP_SRC: u8 = 15;
    pub const UDP_DST: u8 = 16;
    pub const SCTP_SRC: u8 = 17;
    pub const SCTP_DST: u8 = 18;
    pub const ICMPV4_TYPE: u8 = 19;
    pub const ICMPV4_CODE: u8 = 20;
    pub const ARP_OP: u8 = 21;
    pub const ARP_SPA: u8 = 22;
    pub const ARP_TPA: u8 = 23;
    pub const ARP_SHA: u8 = 24;
    pub const ARP_THA: u8 = 25;
    pub const IPV6_SRC: u8 = 26;
    pub const IPV6_DST: u8 = 27;
    pub const IPV6_FLABEL: u8 = 28;
    pub const IPV6_ND_TARGET: u8 = 31;
    pub const IPV6_ND_SLL: u8 = 32;
    pub const IPV6_ND_TLL: u8 = 33;
    pub const MPLS_LABEL: u8 = 34;
    pub const MPLS_TC: u8 = 35;
    pub const MPLS_BOS: u8 = 36;
    /// Nicira class: IP TTL (OpenFlow has no OXM for it; OVS sends this one in 1.3 too).
    pub const NX_IP_TTL: u8 = 29;
    pub const NX_MPLS_TTL: u8 = 30;
    pub const NX_IP_FRAG: u8 = 26;
    /// Connection tracking's fields (read-only but for the mark and label inside `ct`).
    pub const NX_TCP_FLAGS: u8 = 34;
    /// `conj_id` (NXM only).
    pub const NX_CONJ_ID: u8 = 37;
    /// NXM_NX_TUN_METADATA0; 1..63 follow (variable length, up to 124 bytes).
    pub const NX_TUN_METADATA0: u8 = 40;
    pub const NX_CT_STATE: u8 = 105;
    pub const NX_CT_ZONE: u8 = 106;
    pub const NX_CT_MARK: u8 = 107;
    pub const NX_CT_LABEL: u8 = 108;
    pub const NX_CT_NW_PROTO: u8 = 119;
    pub const NX_CT_NW_SRC: u8 = 120;
    pub const NX_CT_NW_DST: u8 = 121;
    pub const NX_CT_IPV6_SRC: u8 = 122;
    pub const NX_CT_IPV6_DST: u8 = 123;
    pub const NX_CT_TP_SRC: u8 = 124;
    pub const NX_CT_TP_DST: u8 = 125;
    pub const ICMPV6_TYPE: u8 = 29;
    pub const ICMPV6_CODE: u8 = 30;
    pub const TUNNEL_ID: u8 = 38;
    /// Nicira class: tunnel IPv4 source and destination.
    pub const NX_TUN_IPV4_SRC: u8 = 31;
    pub const NX_TUN_IPV4_DST: u8 = 32;
    /// OFPVID_PRESENT: the frame has a VLAN tag.
    pub const VID_PRESENT: u16 = 0x1000;
}

/// Action types.
pub mod act {
    pub const OUTPUT: u16 = 0;
    pub const SET_MPLS_TTL: u16 = 15;
    pub const DEC_MPLS_TTL: u16 = 16;
    pub const PUSH_MPLS: u16 = 19;
    pub const POP_MPLS: u16 = 20;
    pub const GROUP: u16 = 22;
    pub const SET_NW_TTL: u16 = 23;
    pub const DEC_NW_TTL: u16 = 24;
    pub const PUSH_VLAN: u16 = 17;
    pub const POP_VLAN: u16 = 18;
    pub const SET_QUEUE: u16 = 21;
    pub const SET_FIELD: u16 = 25;
    /// OpenFlow 1.5's copy_field (a `move`) and meter action.
    pub const COPY_FIELD: u16 = 28;
    pub const METER: u16 = 29;
    pub const EXPERIMENTER: u16 = 0xffff;
    /// Nicira's experimenter ID and the subtypes weft reads and writes.
    pub const NX_VENDOR: u32 = 0x0000_2320;
    pub const NXAST_RESUBMIT: u16 = 1;
    pub const NXAST_DEC_TTL: u16 = 18;
    pub const NXAST_PUSH_MPLS: u16 = 23;
    pub const NXAST_POP_MPLS: u16 = 24;
    pub const NXAST_SET_MPLS_TTL: u16 = 25;
    pub const NXAST_DEC_MPLS_TTL: u16 = 26;
    pub const NXAST_SET_TUNNEL: u16 = 2;
    pub const NXAST_SET_TUNNEL64: u16 = 9;
    pub const NXAST_RESUBMIT_TABLE: u16 = 14;
    pub const NXAST_REG_MOVE: u16 = 6;
    pub const NXAST_OUTPUT_TRUNC: u16 = 39;
    pub const NXAST_SAMPLE: u16 = 29;
    pub const NXAST_SAMPLE2: u16 = 38;
    pub const NXAST_SAMPLE3: u16 = 41;
    pub const NXAST_BUNDLE: u16 = 12;
    pub const NXAST_MULTIPATH: u16 = 10;
    pub const NXAST_BUNDLE_LOAD: u16 = 13;
    pub const NXAST_STACK_PUSH: u16 = 27;
    pub const NXAST_STACK_POP: u16 = 28;
    pub const NXAST_REG_LOAD: u16 = 7;
    pub const NXAST_REG_LOAD2: u16 = 33;
    pub const NXAST_CT: u16 = 35;
    pub const NXAST_NAT: u16 = 36;
    pub const NXAST_CT_CLEAR: u16 = 43;
    pub const NXAST_CLONE: u16 = 42;
    pub const NXAST_CONTROLLER: u16 = 20;
    pub const NXAST_OUTPUT_REG: u16 = 15;
    pub const NXAST_EXIT: u16 = 17;
    pub const NXAST_CONJUNCTION: u16 = 34;
    pub const NXAST_LEARN: u16 = 16;
    pub const NXAST_FIN_TIMEOUT: u16 = 19;
    pub const NXAST_LEARN2: u16 = 45;
    pub const NXAST_NOTE: u16 = 8;
    pub const NXAST_SET_QUEUE: u16 = 4;
    pub const NXAST_POP_QUEUE: u16 = 5;
}

/// Instruction types.
pub mod inst {
    pub const GOTO_TABLE: u16 = 1;
    pub const WRITE_METADATA: u16 = 2;
    pub const WRITE_ACTIONS: u16 = 3;
    pub const APPLY_ACTIONS: u16 = 4;
    pub const CLEAR_ACTIONS: u16 = 5;
    pub const METER: u16 = 6;
}

/// An OpenFlow message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub version: u8,
    pub kind: u8,
    pub length: u16,
    pub xid: u32,
}

impl Header {
    /// Reads a header; the length must cover at least the header.
    pub fn parse(b: &[u8]) -> Result<Header> {
        crate::need("openflow", HEADER_LEN, b.len())?;
        let h = Header { version: b[0], kind: b[1], length: be16(b, 2), xid: be32(b, 4) };
        if usize::from(h.length) < HEADER_LEN {
            return Err(Error::Malformed { layer: "openflow", what: "length shorter than the header" });
        }
        Ok(h)
    }
}

/// Starts a message of `kind` in `out` (length fixed by [`finish`]).
pub fn start(out: &mut Vec<u8>, kind: u8, xid: u32) -> usize {
    let at = out.len();
    out.extend_from_slice(&[VERSION, kind, 0, 0]);
    out.extend_from_slice(&xid.to_be_bytes());
    at
}

/// Writes the length of the message that starts at `at`.
pub fn finish(out: &mut [u8], at: usize) {
    let len = (out.len() - at) as u16;
    out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// Pads `out` with zeros to a multiple of 8 bytes counted from `from`.
pub fn pad8(out: &mut Vec<u8>, from: usize) {
    while !(out.len() - from).is_multiple_of(8) {
        out.push(0);
    }
}

/// One OXM TLV: class, field, whether a mask follows the value, and value (and mask) bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OxmTlv<'a> {
    pub class: u16,
    pub field: u8,
    pub value: &'a [u8],
    pub mask: Option<&'a [u8]>,
}

/// Reads the OXM TLVs of an `ofp_match` (type 1) at the start of `b`. Returns them and the match's length
/// including its padding.
pub fn parse_match(b: &[u8]) -> Result<(Vec<OxmTlv<'_>>, usize)> {
    crate::need("ofp_match", 4, b.len())?;
    if be16(b, 0) != 1 {
        return Err(Error::Malformed { layer: "ofp_match", what: "not an OXM match (type 1)" });
    }
    let len = usize::from(be16(b, 2));
    if len < 4 {
        return Err(Error::Malformed { layer: "ofp_match", what: "length below 4" });
    }
    let padded = len.div_ceil(8) * 8;
    crate::need("ofp_match", len, b.len())?;
    Ok((parse_oxm_tlvs(&b[4..len])?, padded.min(b.len()).max(len)))
}

/// Reads a run of OXM (or NXM: the same layout) TLVs that fills `rest` exactly.
pub fn parse_oxm_tlvs(mut rest: &[u8]) -> Result<Vec<OxmTlv<'_>>> {
    let mut tlvs = Vec::new();
    while !rest.is_empty() {
        crate::need("oxm", 4, rest.len())?;
        let class = be16(rest, 0);
        let field = rest[2] >> 1;
        let has_mask = rest[2] & 1 != 0;
        let l = usize::from(rest[3]);
        crate::need("oxm", 4 + l, rest.len())?;
        let body = &rest[4..4 + l];
        let (value, mask) = if has_mask {
            if l % 2 != 0 {
                return Err(Error::Malformed { layer: "oxm", what: "masked field of odd length" });
            }
            (&body[..l / 2], Some(&body[l / 2..]))
        } else {
            (body, None)
        };
        tlvs.push(OxmTlv { class, field, value, mask });
        rest = &rest[4 + l..];
    }
    Ok(tlvs)
}

/// Appends one OXM TLV.
pub fn put_oxm(out: &mut Vec<u8>, class: u16, field: u8, value: &[u8], mask: Option<&[u8]>) {
    out.extend_from_slice(&class.to_be_bytes());
    out.push(field << 1 | u8::from(mask.is_some()));
    out.push((value.len() + mask.map_or(0, <[u8]>::len)) as u8);
    out.extend_from_slice(value);
    if let Some(m) = mask {
        out.extend_from_slice(m);
    }
}

/// Writes an `ofp_match` whose TLVs `body` writes, padded to 8 bytes.
pub fn put_match(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let at = out.len();
    out.extend_from_slice(&[0, 1, 0, 0]);
    body(out);
    let len = (out.len() - at) as u16;
    out[at + 2..at + 4].copy_from_slice(&len.to_be_bytes());
    pad8(out, at);
}

/// One TLV of an instruction or action list: type and the bytes after the 4-byte type/length header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tlv<'a> {
    pub kind: u16,
    pub body: &'a [u8],
}

/// Splits a list of instructions or actions (each `type(2) len(2) ...`, len a multiple of 8).
pub fn parse_tlvs<'a>(mut b: &'a [u8], layer: &'static str) -> Result<Vec<Tlv<'a>>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        crate::need(layer, 4, b.len())?;
        let len = usize::from(be16(b, 2));
        if len < 4 || len % 8 != 0 {
            return Err(Error::Malformed { layer, what: "length not a multiple of 8" });
        }
        crate::need(layer, len, b.len())?;
        out.push(Tlv { kind: be16(b, 0), body: &b[4..len] });
        b = &b[len..];
    }
    Ok(out)
}

/// A PACKET_OUT's body: where the frame comes from, its actions (a list of action TLVs) and the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketOut<'a> {
    pub buffer_id: u32,
    pub in_port: u32,
    pub actions: &'a [u8],
    pub data: &'a [u8],
}

/// OFP_NO_BUFFER: the frame is in the message.
pub const NO_BUFFER: u32 = 0xffff_ffff;

impl<'a> PacketOut<'a> {
    /// Reads a PACKET_OUT's body (after the header): buffer_id, in_port, actions_len, 6 bytes of padding,
    /// the actions, the frame.
    pub fn parse(b: &'a [u8]) -> Result<PacketOut<'a>> {
        crate::need("packet_out", 16, b.len())?;
        let actions_len = usize::from(be16(b, 8));
        crate::need("packet_out actions", 16 + actions_len, b.len())?;
        Ok(PacketOut {
            buffer_id: be32(b, 0),
            in_port: be32(b, 4),
            actions: &b[16..16 + actions_len],
            data: &b[16 + actions_len..],
        })
    }
}

/// The fixed part of a FLOW_MOD, after the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowMod {
    pub cookie: u64,
    pub cookie_mask: u64,
    pub table_id: u8,
    pub command: u8,
    pub idle_timeout: u16,
    pub hard_timeout: u16,
    pub priority: u16,
    pub buffer_id: u32,
    pub out_port: u32,
    pub out_group: u32,
    pub flags: u16,
    /// OpenFlow 1.4's eviction importance (1.3's padding: 0).
    pub importance: u16,
}

/// The fixed part of a FLOW_MOD after the header (cookie … pad), before the match.
pub const FLOW_MOD_LEN: usize = 40;

/// Why a flow was removed (OFPT_FLOW_REMOVED's reason).
pub mod removed {
    pub const IDLE_TIMEOUT: u8 = 0;
    pub const HARD_TIMEOUT: u8 = 1;
    pub const DELETE: u8 = 2;
    pub const GROUP_DELETE: u8 = 3;
    pub const METER_DELETE: u8 = 4;
}

pub mod flow_cmd {
    pub const ADD: u8 = 0;
    pub const MODIFY: u8 = 1;
    pub const MODIFY_STRICT: u8 = 2;
    pub const DELETE: u8 = 3;
    pub const DELETE_STRICT: u8 = 4;
}

fn be64(b: &[u8], at: usize) -> u64 {
    (u64::from(be32(b, at)) << 32) | u64::from(be32(b, at + 4))
}

impl FlowMod {
    /// Reads the fixed part from the message body (after the header).
    pub fn parse(b: &[u8]) -> Result<FlowMod> {
        crate::need("flow_mod", FLOW_MOD_LEN, b.len())?;
        Ok(FlowMod {
            cookie: be64(b, 0),
            cookie_mask: be64(b, 8),
            table_id: b[16],
            command: b[17],
            idle_timeout: be16(b, 18),
            hard_timeout: be16(b, 20),
            priority: be16(b, 22),
            buffer_id: be32(b, 24),
            out_port: be32(b, 28),
            out_group: be32(b, 32),
            flags: be16(b, 36),
            importance: be16(b, 38),
        })
    }
}

/// Reads a big-endian number of up to 16 bytes.
pub fn be_uint(b: &[u8]) -> u128 {
    b.iter().take(16).fold(0u128, |acc, x| (acc << 8) | u128::from(*x))
}

/// Reads an 8-byte big-endian number.
pub fn read_u64(b: &[u8], at: usize) -> u64 {
    be64(b, at)
}

#[cfg(test)]
mod tests {
    #[test]
    fn maximal_matches_and_action_lists_allocate_a_constant_times_their_length() {
        // A match as long as a message may be, of empty OXM TLVs (4 bytes each), and an action list of
        // 8-byte actions.
        let mut m = vec![0, 1, 0, 0];
        while m.len() + 4 <= 65528 {
            m.extend_from_slice(&[0x80, 0, 0, 0]);
        }
        let len = m.len() as u16;
        m[2..4].copy_from_slice(&len.to_be_bytes());
        let (r, peak) = weft_sys::alloc_probe::peak_during(|| parse_match(&m).map(|(t, _)| t.len()));
        assert_eq!(r.unwrap(), (m.len() - 4) / 4);
        assert!(peak <= 24 * m.len(), "{peak} bytes for a {}-byte match", m.len());
        let actions: Vec<u8> = (0..8000).flat_map(|_| [0, 0, 0, 8, 0, 0, 0, 1]).collect();
        let (r, peak) = weft_sys::alloc_probe::peak_during(|| parse_tlvs(&actions, "action").map(|t| t.len()));
        assert_eq!(r.unwrap(), 8000);
        assert!(peak <= 8 * actions.len(), "{peak} bytes for {} bytes of actions", actions.len());
    }

    use super::*;

    #[test]
    fn match_round_trip() {
        let mut out = Vec::new();
        put_match(&mut out, |o| {
            put_oxm(o, oxm::CLASS_BASIC, oxm::ETH_TYPE, &[0x08, 0x00], None);
            put_oxm(o, oxm::CLASS_BASIC, oxm::IPV4_DST, &[172, 31, 1, 0], Some(&[255, 255, 255, 0]));
        });
        assert_eq!(out.len() % 8, 0);
        let (tlvs, len) = parse_match(&out).unwrap();
        assert_eq!(len, out.len());
        assert_eq!(tlvs[0], OxmTlv { class: 0x8000, field: oxm::ETH_TYPE, value: &[8, 0], mask: None });
        assert_eq!(tlvs[1].mask, Some(&[255u8, 255, 255, 0][..]));
        assert_eq!(be_uint(tlvs[1].value), 0xac1f_0100);
        // A TLV running past the match is an error, not a panic.
        let mut bad = out.clone();
        bad[7] = 200;
        assert!(parse_match(&bad).is_err());
        assert!(parse_tlvs(&[0, 0, 0, 6, 0, 0], "action").is_err());
    }

    #[test]
    fn header() {
        let mut m = Vec::new();
        let at = start(&mut m, msg::HELLO, 7);
        finish(&mut m, at);
        assert_eq!(Header::parse(&m).unwrap(), Header { version: 4, kind: 0, length: 8, xid: 7 });
        assert!(Header::parse(&[4, 0, 0, 4, 0, 0, 0, 0]).is_err());
    }
}
