//! BGP-4 (RFC 4271) for the L2VPN EVPN family (AFI 25, SAFI 70; RFC 4760, 7432, 8365): the messages, the
//! EVPN routes weft uses (type 2 MAC/IP advertisement, type 3 inclusive multicast Ethernet tag) and an I/O-free
//! iBGP session towards a route reflector.
//!
//! The session takes bytes and time in and gives bytes and route events out; weftd owns the TCP connection.

use crate::model::{MacKey, Vni};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;
use weft_wire::EthernetAddress;

pub const PORT: u16 = 179;
pub const AFI_L2VPN: u16 = 25;
pub const SAFI_EVPN: u8 = 70;
const HEADER_LEN: usize = 19;
const MAX_LEN: usize = 4096;
const AS_TRANS: u16 = 23456;

const OPEN: u8 = 1;
const UPDATE: u8 = 2;
const NOTIFICATION: u8 = 3;
const KEEPALIVE: u8 = 4;
const ROUTE_REFRESH: u8 = 5;

const ATTR_ORIGIN: u8 = 1;
const ATTR_AS_PATH: u8 = 2;
const ATTR_LOCAL_PREF: u8 = 5;
const ATTR_ORIGINATOR_ID: u8 = 9;
const ATTR_MP_REACH: u8 = 14;
const ATTR_MP_UNREACH: u8 = 15;
const ATTR_EXT_COMMUNITIES: u8 = 16;
const ATTR_PMSI_TUNNEL: u8 = 22;

const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_EXTENDED: u8 = 0x10;

/// PMSI tunnel type 6: ingress replication (RFC 6514), what VXLAN EVPN uses for head-end replication.
pub const PMSI_INGRESS_REPLICATION: u8 = 6;
/// BGP encapsulation extended community tunnel type 8: VXLAN (RFC 9012).
pub const ENCAP_VXLAN: u16 = 8;

/// A malformed message: the session answers with a NOTIFICATION of this code and subcode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    pub code: u8,
    pub subcode: u8,
    pub why: String,
}

fn malformed(code: u8, subcode: u8, why: impl Into<String>) -> Malformed {
    Malformed { code, subcode, why: why.into() }
}

/// Message header error.
fn header_err(why: impl Into<String>) -> Malformed {
    malformed(1, 2, why)
}

/// UPDATE message error: malformed attribute list.
fn update_err(why: impl Into<String>) -> Malformed {
    malformed(3, 1, why)
}

/// An EVPN route as weft reads and writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EvpnRoute {
    /// Type 2: `mac` (and `ip`) in `vni`, from the VTEP the route distinguisher belongs to.
    Mac { rd: [u8; 8], vni: Vni, mac: EthernetAddress, ip: Option<IpAddr> },
    /// Type 3: the VTEP `origin` floods `vni` by ingress replication.
    Imet { rd: [u8; 8], tag: u32, origin: IpAddr },
}

/// A route distinguisher of type 1 (IPv4 address : 16-bit number), as FRR derives them (router-id:index).
pub fn rd_ip(router_id: Ipv4Addr, n: u16) -> [u8; 8] {
    let mut rd = [0u8; 8];
    rd[1] = 1;
    rd[2..6].copy_from_slice(&router_id.octets());
    rd[6..8].copy_from_slice(&n.to_be_bytes());
    rd
}

fn put_ip(out: &mut Vec<u8>, ip: IpAddr) {
    match ip {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()),
    }
}

fn label(vni: Vni) -> [u8; 3] {
    // RFC 8365 section 5.1.3: the VNI fills the whole 24-bit label field.
    let b = vni.to_be_bytes();
    [b[1], b[2], b[3]]
}

impl EvpnRoute {
    /// Appends the route as EVPN NLRI (type, length, value).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let start = out.len();
        match *self {
            EvpnRoute::Mac { rd, vni, mac, ip } => {
                out.extend_from_slice(&[2, 0]);
                out.extend_from_slice(&rd);
                out.extend_from_slice(&[0; 10]); // ESI: single-homed
                out.extend_from_slice(&0u32.to_be_bytes()); // Ethernet tag: VLAN-based service
                out.push(48);
                out.extend_from_slice(&mac.0);
                match ip {
                    None => out.push(0),
                    Some(a) => {
                        out.push(if a.is_ipv4() { 32 } else { 128 });
                        put_ip(out, a);
                    }
                }
                out.extend_from_slice(&label(vni));
            }
            EvpnRoute::Imet { rd, tag, origin } => {
                out.extend_from_slice(&[3, 0]);
                out.extend_from_slice(&rd);
                out.extend_from_slice(&tag.to_be_bytes());
                out.push(if origin.is_ipv4() { 32 } else { 128 });
                put_ip(out, origin);
            }
        }
        out[start + 1] = (out.len() - start - 2) as u8;
    }

    /// Reads a sequence of EVPN NLRI. Route types weft does not use (1, 4, 5) are skipped.
    pub fn parse_all(mut b: &[u8]) -> Result<Vec<EvpnRoute>, Malformed> {
        let mut out = Vec::new();
        while !b.is_empty() {
            if b.len() < 2 || b.len() < 2 + usize::from(b[1]) {
                return Err(update_err("EVPN NLRI runs past its attribute"));
            }
            let (kind, v) = (b[0], &b[2..2 + usize::from(b[1])]);
            b = &b[2 + usize::from(b[1])..];
            if let Some(r) = Self::parse_one(kind, v)? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn parse_one(kind: u8, v: &[u8]) -> Result<Option<EvpnRoute>, Malformed> {
        let short = || update_err(format!("EVPN route type {kind} of {} bytes is too short", v.len()));
        let mut rd = [0u8; 8];
        match kind {
            2 => {
                // RD 8, ESI 10, tag 4, MAC length 1, MAC 6, IP length 1, IP, label 3 [, label 3]
                if v.len() < 33 {
                    return Err(short());
                }
                rd.copy_from_slice(&v[..8]);
                if v[22] != 48 {
                    return Err(update_err(format!("EVPN MAC length {} is not 48", v[22])));
                }
                let mac = EthernetAddress([v[23], v[24], v[25], v[26], v[27], v[28]]);
                let ip_bits = usize::from(v[29]);
                let ip_len = match ip_bits {
                    0 => 0,
                    32 => 4,
                    128 => 16,
                    n => return Err(update_err(format!("EVPN IP length {n} is not 0, 32 or 128"))),
                };
                let rest = &v[30..];
                if rest.len() < ip_len + 3 {
                    return Err(short());
                }
                let ip = if ip_len == 0 { None } else { weft_wire::ip_from_bytes(&rest[..ip_len]) };
                let l = &rest[ip_len..ip_len + 3];
                let mut vni = u32::from_be_bytes([0, l[0], l[1], l[2]]);
                let tag = u32::from_be_bytes([v[18], v[19], v[20], v[21]]);
                if vni == 0 && tag != 0 {
                    vni = tag;
                }
                Ok(Some(EvpnRoute::Mac { rd, vni, mac, ip }))
            }
            3 => {
                if v.len() < 13 {
                    return Err(short());
                }
                rd.copy_from_slice(&v[..8]);
                let tag = u32::from_be_bytes([v[8], v[9], v[10], v[11]]);
                let len = match v[12] {
                    32 => 4,
                    128 => 16,
                    n => return Err(update_err(format!("EVPN originator length {n} is not 32 or 128"))),
                };
                let origin = v.get(13..13 + len).and_then(weft_wire::ip_from_bytes).ok_or_else(short)?;
                Ok(Some(EvpnRoute::Imet { rd, tag, origin }))
            }
            _ => Ok(None),
        }
    }

    /// The MAC this route announces, if it is a type-2 route.
    pub fn mac_key(&self) -> Option<MacKey> {
        match *self {
            EvpnRoute::Mac { vni, mac, .. } => Some(MacKey { vni, mac }),
            EvpnRoute::Imet { .. } => None,
        }
    }
}

/// The attributes of an UPDATE that matter to weft.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub reach: Vec<EvpnRoute>,
    pub unreach: Vec<EvpnRoute>,
    pub next_hop: Option<IpAddr>,
    pub originator_id: Option<Ipv4Addr>,
    /// Route targets (AS:number) and the MAC mobility sequence number from the extended communities.
    pub route_targets: Vec<(u32, u32)>,
    pub mac_mobility_seq: u32,
    pub encap_vxlan: bool,
    /// The VNI in the PMSI tunnel attribute (type-3 routes).
    pub pmsi_vni: Option<Vni>,
}

impl Update {
    /// Whether the route targets import a route of `vni` into our AS: the target FRR and weft derive,
    /// AS:VNI (two-octet AS), or AS:VNI's low 16 bits (four-octet AS).
    pub fn imports(&self, asn: u32, vni: Vni) -> bool {
        self.route_targets.iter().any(|&(a, n)| {
            a == asn && if u16::try_from(asn).is_ok() { n & 0xff_ffff == vni } else { n == vni & 0xffff }
        })
    }
}

/// Why a reflected route naming VTEP `vtep` in `vni` is not taken, if it is not: the VTEP must be a unicast
/// address other than ours (`me`), and the route must carry our route target for the VNI. Anything else
/// would let a peer point our tunnels at a broadcast, loopback or multicast address, at ourselves, or into
/// another tenant's VNI.
pub fn import_problem(u: &Update, asn: u32, vni: Vni, vtep: IpAddr, me: IpAddr) -> Option<String> {
    if let Some(why) = crate::model::vtep_problem(vtep, Some(me)) {
        return Some(why);
    }
    if vni > 0xff_ffff {
        return Some(format!("VNI {vni} is out of range"));
    }
    if !u.imports(asn, vni) {
        return Some(format!("no route target {asn}:{vni}"));
    }
    None
}

/// One BGP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open { asn: u32, hold: u16, router_id: Ipv4Addr, evpn: bool, as4: bool, route_refresh: bool },
    Update(Update),
    Notification { code: u8, subcode: u8, data: Vec<u8> },
    Keepalive,
    RouteRefresh,
}

fn header(out: &mut Vec<u8>, kind: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 0, kind]);
    start
}

fn finish(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u16;
    out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

fn attr(out: &mut Vec<u8>, flags: u8, kind: u8, value: &[u8]) {
    if value.len() > 255 {
        out.extend_from_slice(&[flags | FLAG_EXTENDED, kind]);
        out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[flags, kind, value.len() as u8]);
    }
    out.extend_from_slice(value);
}

/// What weft announces with its routes.
#[derive(Debug, Clone, Copy)]
pub struct Announce {
    pub asn: u32,
    pub next_hop: IpAddr,
    /// The VNI (for route targets and, on type-3 routes, the PMSI label).
    pub vni: Vni,
    /// MAC mobility sequence number (type-2 routes; 0 sends no MAC mobility community).
    pub seq: u32,
}

/// Appends an OPEN message.
pub fn emit_open(out: &mut Vec<u8>, asn: u32, hold: u16, router_id: Ipv4Addr) {
    let start = header(out, OPEN);
    out.push(4);
    let my_as = u16::try_from(asn).unwrap_or(AS_TRANS);
    out.extend_from_slice(&my_as.to_be_bytes());
    out.extend_from_slice(&hold.to_be_bytes());
    out.extend_from_slice(&router_id.octets());
    let mut caps = Vec::new();
    // Multiprotocol: L2VPN EVPN.
    caps.extend_from_slice(&[1, 4]);
    caps.extend_from_slice(&AFI_L2VPN.to_be_bytes());
    caps.extend_from_slice(&[0, SAFI_EVPN]);
    // Route refresh.
    caps.extend_from_slice(&[2, 0]);
    // Four-octet AS numbers.
    caps.extend_from_slice(&[65, 4]);
    caps.extend_from_slice(&asn.to_be_bytes());
    out.push(caps.len() as u8 + 2);
    out.extend_from_slice(&[2, caps.len() as u8]);
    out.extend_from_slice(&caps);
    finish(out, start);
}

pub fn emit_keepalive(out: &mut Vec<u8>) {
    let start = header(out, KEEPALIVE);
    finish(out, start);
}

pub fn emit_notification(out: &mut Vec<u8>, code: u8, subcode: u8) {
    let start = header(out, NOTIFICATION);
    out.extend_from_slice(&[code, subcode]);
    finish(out, start);
}

/// The extended communities weft puts on a route of `vni`: route target AS:VNI, encapsulation VXLAN, and
/// MAC mobility when the MAC moved.
fn ext_communities(asn: u32, vni: Vni, seq: u32) -> Vec<u8> {
    let mut c = Vec::with_capacity(24);
    if let Ok(as2) = u16::try_from(asn) {
        c.extend_from_slice(&[0x00, 0x02]);
        c.extend_from_slice(&as2.to_be_bytes());
        c.extend_from_slice(&vni.to_be_bytes());
    } else {
        c.extend_from_slice(&[0x02, 0x02]);
        c.extend_from_slice(&asn.to_be_bytes());
        c.extend_from_slice(&(vni as u16).to_be_bytes());
    }
    c.extend_from_slice(&[0x03, 0x0c, 0, 0, 0, 0]);
    c.extend_from_slice(&ENCAP_VXLAN.to_be_bytes());
    if seq > 0 {
        c.extend_from_slice(&[0x06, 0x00, 0, 0]);
        c.extend_from_slice(&seq.to_be_bytes());
    }
    c
}

/// Appends an UPDATE announcing one route (weft sends one route per UPDATE: each has its own communities).
pub fn emit_reach(out: &mut Vec<u8>, route: &EvpnRoute, a: &Announce) {
    let start = header(out, UPDATE);
    out.extend_from_slice(&[0, 0, 0, 0]); // no withdrawn routes; attribute length filled below
    let attrs_at = out.len();
    attr(out, FLAG_TRANSITIVE, ATTR_ORIGIN, &[0]); // IGP
    attr(out, FLAG_TRANSITIVE, ATTR_AS_PATH, &[]); // iBGP: empty
    attr(out, FLAG_TRANSITIVE, ATTR_LOCAL_PREF, &100u32.to_be_bytes());
    let (vni, seq) = match *route {
        EvpnRoute::Mac { vni, .. } => (vni, a.seq),
        EvpnRoute::Imet { .. } => (a.vni, 0),
    };
    attr(out, FLAG_OPTIONAL | FLAG_TRANSITIVE, ATTR_EXT_COMMUNITIES, &ext_communities(a.asn, vni, seq));
    if let EvpnRoute::Imet { origin, .. } = *route {
        let mut p = vec![0, PMSI_INGRESS_REPLICATION];
        p.extend_from_slice(&label(vni));
        put_ip(&mut p, origin);
        attr(out, FLAG_OPTIONAL | FLAG_TRANSITIVE, ATTR_PMSI_TUNNEL, &p);
    }
    let mut mp = Vec::with_capacity(64);
    mp.extend_from_slice(&AFI_L2VPN.to_be_bytes());
    mp.push(SAFI_EVPN);
    mp.push(if a.next_hop.is_ipv4() { 4 } else { 16 });
    put_ip(&mut mp, a.next_hop);
    mp.push(0);
    route.emit(&mut mp);
    attr(out, FLAG_OPTIONAL, ATTR_MP_REACH, &mp);
    let attrs_len = (out.len() - attrs_at) as u16;
    out[attrs_at - 2..attrs_at].copy_from_slice(&attrs_len.to_be_bytes());
    finish(out, start);
}

/// Appends an UPDATE withdrawing routes.
pub fn emit_unreach(out: &mut Vec<u8>, routes: &[EvpnRoute]) {
    let start = header(out, UPDATE);
    out.extend_from_slice(&[0, 0, 0, 0]);
    let attrs_at = out.len();
    let mut mp = Vec::with_capacity(3 + routes.len() * 40);
    mp.extend_from_slice(&AFI_L2VPN.to_be_bytes());
    mp.push(SAFI_EVPN);
    for r in routes {
        r.emit(&mut mp);
    }
    attr(out, FLAG_OPTIONAL, ATTR_MP_UNREACH, &mp);
    let attrs_len = (out.len() - attrs_at) as u16;
    out[attrs_at - 2..attrs_at].copy_from_slice(&attrs_len.to_be_bytes());
    finish(out, start);
}

/// Appends an End-of-RIB marker for L2VPN EVPN (an UPDATE with an empty MP_UNREACH_NLRI, RFC 4724).
pub fn emit_end_of_rib(out: &mut Vec<u8>) {
    emit_unreach(out, &[]);
}

/// The length of the first whole message in `buf`, if it holds one.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Malformed> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16] != [0xff; 16] {
        return Err(malformed(1, 1, "the marker is not all ones"));
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    if !(HEADER_LEN..=MAX_LEN).contains(&len) {
        return Err(header_err(format!("message length {len} is outside 19..=4096")));
    }
    Ok((buf.len() >= len).then_some(len))
}

impl Message {
    /// Parses one whole message (as cut by [`frame_len`]).
    pub fn parse(msg: &[u8]) -> Result<Message, Malformed> {
        if msg.len() < HEADER_LEN {
            return Err(header_err("shorter than a header"));
        }
        let body = &msg[HEADER_LEN..];
        match msg[18] {
            OPEN => parse_open(body),
            UPDATE => parse_update(body).map(Message::Update),
            NOTIFICATION if body.len() >= 2 => {
                Ok(Message::Notification { code: body[0], subcode: body[1], data: body[2..].to_vec() })
            }
            KEEPALIVE if body.is_empty() => Ok(Message::Keepalive),
            ROUTE_REFRESH => Ok(Message::RouteRefresh),
            t => Err(malformed(1, 3, format!("message type {t} (or its length) is not valid"))),
        }
    }
}

fn parse_open(b: &[u8]) -> Result<Message, Malformed> {
    if b.len() < 10 {
        return Err(malformed(2, 0, "OPEN is too short"));
    }
    if b[0] != 4 {
        return Err(malformed(2, 1, format!("BGP version {} (weft speaks 4)", b[0])));
    }
    let mut asn = u32::from(u16::from_be_bytes([b[1], b[2]]));
    let hold = u16::from_be_bytes([b[3], b[4]]);
    if hold == 1 || hold == 2 {
        return Err(malformed(2, 6, format!("hold time {hold} s is not allowed")));
    }
    let router_id = Ipv4Addr::new(b[5], b[6], b[7], b[8]);
    let plen = usize::from(b[9]);
    let mut params = b.get(10..10 + plen).ok_or_else(|| malformed(2, 0, "OPEN parameters run past the message"))?;
    let (mut evpn, mut as4, mut route_refresh) = (false, false, false);
    while params.len() >= 2 {
        let (t, l) = (params[0], usize::from(params[1]));
        let v = params.get(2..2 + l).ok_or_else(|| malformed(2, 0, "an OPEN parameter runs past the message"))?;
        params = &params[2 + l..];
        if t != 2 {
            continue;
        }
        let mut caps = v;
        while caps.len() >= 2 {
            let (c, cl) = (caps[0], usize::from(caps[1]));
            let cv = caps.get(2..2 + cl).ok_or_else(|| malformed(2, 0, "a capability runs past its parameter"))?;
            caps = &caps[2 + cl..];
            match c {
                1 if cl == 4 => {
                    evpn |= u16::from_be_bytes([cv[0], cv[1]]) == AFI_L2VPN && cv[3] == SAFI_EVPN;
                }
                2 | 128 => route_refresh = true,
                65 if cl == 4 => {
                    as4 = true;
                    asn = u32::from_be_bytes([cv[0], cv[1], cv[2], cv[3]]);
                }
                _ => {}
            }
        }
    }
    Ok(Message::Open { asn, hold, router_id, evpn, as4, route_refresh })
}

fn parse_update(b: &[u8]) -> Result<Update, Malformed> {
    let mut u = Update::default();
    if b.len() < 4 {
        return Err(update_err("UPDATE is too short"));
    }
    let wlen = usize::from(u16::from_be_bytes([b[0], b[1]]));
    let rest = b.get(2 + wlen..).ok_or_else(|| update_err("withdrawn routes run past the message"))?;
    if rest.len() < 2 {
        return Err(update_err("no path attribute length"));
    }
    let alen = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
    let mut attrs = rest.get(2..2 + alen).ok_or_else(|| update_err("path attributes run past the message"))?;
    while !attrs.is_empty() {
        if attrs.len() < 3 {
            return Err(update_err("a path attribute header is cut"));
        }
        let (flags, kind) = (attrs[0], attrs[1]);
        let (len, at) = if flags & FLAG_EXTENDED != 0 {
            if attrs.len() < 4 {
                return Err(update_err("an extended path attribute header is cut"));
            }
            (usize::from(u16::from_be_bytes([attrs[2], attrs[3]])), 4)
        } else {
            (usize::from(attrs[2]), 3)
        };
        let v = attrs.get(at..at + len).ok_or_else(|| update_err(format!("attribute {kind} runs past the list")))?;
        attrs = &attrs[at + len..];
        match kind {
            ATTR_ORIGINATOR_ID if len == 4 => u.originator_id = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            ATTR_MP_REACH => {
                if v.len() < 5 {
                    return Err(update_err("MP_REACH_NLRI is too short"));
                }
                if u16::from_be_bytes([v[0], v[1]]) != AFI_L2VPN || v[2] != SAFI_EVPN {
                    continue;
                }
                let nhl = usize::from(v[3]);
                let nh = v.get(4..4 + nhl).ok_or_else(|| update_err("MP_REACH next hop is cut"))?;
                // An IPv6 next hop may carry a link-local address after the global one.
                u.next_hop = weft_wire::ip_from_bytes(nh).or_else(|| {
                    if nhl == 32 {
                        weft_wire::ip_from_bytes(&nh[..16])
                    } else {
                        None
                    }
                });
                let nlri = v.get(5 + nhl..).ok_or_else(|| update_err("MP_REACH_NLRI is cut"))?;
                u.reach = EvpnRoute::parse_all(nlri)?;
            }
            ATTR_MP_UNREACH => {
                if v.len() < 3 {
                    return Err(update_err("MP_UNREACH_NLRI is too short"));
                }
                if u16::from_be_bytes([v[0], v[1]]) == AFI_L2VPN && v[2] == SAFI_EVPN {
                    u.unreach = EvpnRoute::parse_all(&v[3..])?;
                }
            }
            ATTR_EXT_COMMUNITIES => {
                for c in v.chunks_exact(8) {
                    match (c[0] & 0x3f, c[1]) {
                        (0x00, 0x02) => u.route_targets.push((
                            u32::from(u16::from_be_bytes([c[2], c[3]])),
                            u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                        )),
                        (0x02, 0x02) => u.route_targets.push((
                            u32::from_be_bytes([c[2], c[3], c[4], c[5]]),
                            u32::from(u16::from_be_bytes([c[6], c[7]])),
                        )),
                        (0x03, 0x0c) => u.encap_vxlan |= u16::from_be_bytes([c[6], c[7]]) == ENCAP_VXLAN,
                        (0x06, 0x00) => u.mac_mobility_seq = u32::from_be_bytes([c[4], c[5], c[6], c[7]]),
                        _ => {}
                    }
                }
            }
            ATTR_PMSI_TUNNEL if len >= 5 => u.pmsi_vni = Some(u32::from_be_bytes([0, v[2], v[3], v[4]])),
            _ => {}
        }
    }
    Ok(u)
}

/// The shortest hold time accepted from a peer (0, no keepalives at all, included).
pub const MIN_HOLD: u16 = 3;

/// The state of the session (RFC 4271 section 8.2.2; Connect and Active belong to weftd's connection loop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    OpenSent,
    OpenConfirm,
    Established,
    Closed,
}

/// What the session wants done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The session reached Established: announce every local route.
    Up,
    /// Routes arrived (or were withdrawn).
    Update(Update),
    /// The peer asked for our routes again.
    Refresh,
    /// The session ended: drop the TCP connection and every route learned on it.
    Down(String),
}

/// One iBGP session over an already connected TCP stream (weft always connects; the reflector listens).
#[derive(Debug)]
pub struct Session {
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub state: State,
    /// Hold time we offer and the one agreed on (0: no keepalives).
    hold_offer: u16,
    hold: Duration,
    last_rx: Duration,
    last_tx: Duration,
    /// Bytes to write to the peer.
    pub out: Vec<u8>,
    rx: Vec<u8>,
    pub peer_router_id: Option<Ipv4Addr>,
}

impl Session {
    /// Starts a session on a fresh connection at time `now`: sends OPEN.
    pub fn new(asn: u32, router_id: Ipv4Addr, hold: u16, now: Duration) -> Session {
        let mut out = Vec::with_capacity(4096);
        emit_open(&mut out, asn, hold, router_id);
        Session {
            asn,
            router_id,
            state: State::OpenSent,
            hold_offer: hold,
            // Until the peer's OPEN: RFC 4271's large initial hold time of 4 minutes.
            hold: Duration::from_secs(240),
            last_rx: now,
            last_tx: now,
            out,
            rx: Vec::with_capacity(4096),
            peer_router_id: None,
        }
    }

    fn fail(&mut self, code: u8, subcode: u8, why: String, events: &mut Vec<Event>) {
        if self.state != State::Closed {
            emit_notification(&mut self.out, code, subcode);
            self.state = State::Closed;
            events.push(Event::Down(why));
        }
    }

    /// Bytes read from the connection.
    pub fn input(&mut self, data: &[u8], now: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        if self.state == State::Closed {
            return events;
        }
        self.rx.extend_from_slice(data);
        let mut used = 0;
        loop {
            let len = match frame_len(&self.rx[used..]) {
                Ok(Some(l)) => l,
                Ok(None) => break,
                Err(m) => {
                    self.fail(m.code, m.subcode, format!("malformed message from the peer: {}", m.why), &mut events);
                    break;
                }
            };
            let msg = Message::parse(&self.rx[used..used + len]);
            used += len;
            self.last_rx = now;
            match msg {
                Err(m) => {
                    self.fail(m.code, m.subcode, format!("malformed message from the peer: {}", m.why), &mut events);
                    break;
                }
                Ok(m) => self.handle(m, now, &mut events),
            }
            if self.state == State::Closed {
                break;
            }
        }
        self.rx.drain(..used);
        events
    }

    fn handle(&mut self, m: Message, now: Duration, events: &mut Vec<Event>) {
        match (self.state, m) {
            (State::OpenSent, Message::Open { asn, hold, router_id, evpn, .. }) => {
                if asn != self.asn {
                    let why = format!("the peer is in AS {asn}, not {} (weft speaks iBGP)", self.asn);
                    return self.fail(2, 2, why, events);
                }
                if router_id == self.router_id {
                    return self.fail(2, 3, format!("the peer has our router id {router_id}"), events);
                }
                if !evpn {
                    return self.fail(2, 7, "the peer did not offer the L2VPN EVPN family".into(), events);
                }
                if hold < MIN_HOLD {
                    // RFC 4271 §6.2: Unacceptable Hold Time. A hold time of 0 would turn keepalives and the
                    // check that the reflector is alive off, leaving its routes in place after it died.
                    let why = format!("the peer offers hold time {hold} s; weft needs at least {MIN_HOLD} s");
                    return self.fail(2, 6, why, events);
                }
                let agreed = hold.min(self.hold_offer);
                self.hold = Duration::from_secs(u64::from(agreed));
                self.peer_router_id = Some(router_id);
                self.state = State::OpenConfirm;
                emit_keepalive(&mut self.out);
                self.last_tx = now;
            }
            (State::OpenConfirm, Message::Keepalive) => {
                self.state = State::Established;
                events.push(Event::Up);
            }
            (State::Established, Message::Keepalive) => {}
            (State::Established, Message::Update(u)) => events.push(Event::Update(u)),
            (State::Established, Message::RouteRefresh) => events.push(Event::Refresh),
            (_, Message::Notification { code, subcode, .. }) => {
                self.state = State::Closed;
                events.push(Event::Down(format!("the peer sent NOTIFICATION {code}/{subcode}")));
            }
            (s, m) => {
                let why = format!("unexpected {} in state {s:?}", kind_name(&m));
                self.fail(5, 0, why, events)
            }
        }
    }

    /// Time passed: keepalives and the hold timer.
    pub fn tick(&mut self, now: Duration) -> Vec<Event> {
        let mut events = Vec::new();
        if self.state == State::Closed || self.hold.is_zero() {
            return events;
        }
        if now.saturating_sub(self.last_rx) >= self.hold {
            self.fail(4, 0, format!("nothing from the peer for {} s (hold time)", self.hold.as_secs()), &mut events);
            return events;
        }
        let keepalive = if self.state == State::OpenSent { Duration::MAX } else { self.hold / 3 };
        if now.saturating_sub(self.last_tx) >= keepalive {
            emit_keepalive(&mut self.out);
            self.last_tx = now;
        }
        events
    }

    /// Notes that queued bytes were written (any message resets the keepalive timer).
    pub fn sent(&mut self, now: Duration) {
        self.last_tx = now;
    }

    /// Ends the session politely (NOTIFICATION Cease / administrative shutdown).
    pub fn close(&mut self) {
        if self.state != State::Closed {
            emit_notification(&mut self.out, 6, 2);
            self.state = State::Closed;
        }
    }

    pub fn established(&self) -> bool {
        self.state == State::Established
    }
}

fn kind_name(m: &Message) -> &'static str {
    match m {
        Message::Open { .. } => "OPEN",
        Message::Update(_) => "UPDATE",
        Message::Notification { .. } => "NOTIFICATION",
        Message::Keepalive => "KEEPALIVE",
        Message::RouteRefresh => "ROUTE-REFRESH",
    }
}

/// Feeds arbitrary bytes to a session (for the fuzzer): must never panic.
pub fn fuzz_input(data: &[u8]) {
    let mut s = Session::new(65000, Ipv4Addr::new(192, 0, 2, 1), 9, Duration::ZERO);
    // Let the session reach Established so UPDATE parsing is reached too.
    let mut open = Vec::new();
    emit_open(&mut open, 65000, 90, Ipv4Addr::new(192, 0, 2, 2));
    emit_keepalive(&mut open);
    s.input(&open, Duration::ZERO);
    for chunk in data.chunks(701) {
        s.input(chunk, Duration::from_secs(1));
    }
    let _ = EvpnRoute::parse_all(data);
    let _ = Message::parse(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(last: u8) -> EthernetAddress {
        EthernetAddress([2, 0, 0, 0, 1, last])
    }

    fn ip4(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn routes_round_trip() {
        let rd = rd_ip(ip4("10.0.0.3"), 100);
        for r in [
            EvpnRoute::Mac { rd, vni: 100, mac: mac(1), ip: None },
            EvpnRoute::Mac { rd, vni: 0xabcdef, mac: mac(2), ip: Some("10.100.0.3".parse().unwrap()) },
            EvpnRoute::Mac { rd, vni: 5, mac: mac(3), ip: Some("2001:db8::3".parse().unwrap()) },
            EvpnRoute::Imet { rd, tag: 0, origin: "10.0.0.3".parse().unwrap() },
        ] {
            let mut b = Vec::new();
            r.emit(&mut b);
            assert_eq!(EvpnRoute::parse_all(&b).unwrap(), vec![r]);
        }
    }

    #[test]
    fn maximal_messages_allocate_at_most_a_constant_times_their_length() {
        // Two UPDATEs of the largest size BGP allows (4096 bytes): one full of MAC routes, one full of route
        // targets. What parsing builds must stay within a constant times the message.
        let rd = rd_ip(ip4("10.0.0.3"), 100);
        let mut routes = Vec::new();
        while routes.len() < 4096 - 80 {
            EvpnRoute::Mac { rd, vni: 7, mac: mac(9), ip: None }.emit(&mut routes);
        }
        let mut mp = vec![0, 25, SAFI_EVPN, 4, 10, 0, 0, 3, 0];
        mp.extend_from_slice(&routes);
        let communities: Vec<u8> = (0..500u32).flat_map(|i| [0, 2, 0xfd, 0xe8, 0, 0, 0, i as u8]).collect();
        for (kind, value) in [(ATTR_MP_REACH, mp), (ATTR_EXT_COMMUNITIES, communities)] {
            let mut m = vec![0xff; 16];
            m.extend_from_slice(&[0, 0, UPDATE, 0, 0]);
            let alen = value.len() + 4;
            m.extend_from_slice(&(alen as u16).to_be_bytes());
            m.extend_from_slice(&[FLAG_EXTENDED | 0x80, kind]);
            m.extend_from_slice(&(value.len() as u16).to_be_bytes());
            m.extend_from_slice(&value);
            let len = m.len() as u16;
            m[16..18].copy_from_slice(&len.to_be_bytes());
            assert!(m.len() <= MAX_LEN, "{} bytes", m.len());
            let (r, peak) = weft_sys::alloc_probe::peak_during(|| Message::parse(&m));
            assert!(matches!(r, Ok(Message::Update(_))), "{r:?}");
            assert!(peak <= 8 * m.len(), "attribute {kind}: {peak} bytes for a {}-byte message", m.len());
        }
        // A session fed a stream announcing a message longer than 4096 bytes ends it without reading on.
        let mut s = Session::new(65000, ip4("10.0.0.2"), 9, Duration::ZERO);
        let (events, peak) = weft_sys::alloc_probe::peak_during(|| {
            s.input(&[[0xffu8; 16].as_slice(), &[0xff, 0xff, UPDATE]].concat(), Duration::ZERO)
        });
        assert!(matches!(events.as_slice(), [Event::Down(_)]), "{events:?}");
        assert!(peak < 1024, "{peak}");
    }

    #[test]
    fn update_round_trip() {
        let rd = rd_ip(ip4("10.0.0.3"), 100);
        let r = EvpnRoute::Mac { rd, vni: 100, mac: mac(1), ip: None };
        let a = Announce { asn: 65000, next_hop: "10.0.0.3".parse().unwrap(), vni: 100, seq: 2 };
        let mut b = Vec::new();
        emit_reach(&mut b, &r, &a);
        let len = frame_len(&b).unwrap().unwrap();
        assert_eq!(len, b.len());
        let Message::Update(u) = Message::parse(&b).unwrap() else { panic!("not an update") };
        assert_eq!(u.reach, vec![r]);
        assert_eq!(u.next_hop, Some(a.next_hop));
        assert_eq!(u.route_targets, vec![(65000, 100)]);
        assert!(u.encap_vxlan);
        assert_eq!(u.mac_mobility_seq, 2);
        let imet = EvpnRoute::Imet { rd, tag: 0, origin: a.next_hop };
        let mut b = Vec::new();
        emit_reach(&mut b, &imet, &Announce { seq: 0, ..a });
        let Message::Update(u) = Message::parse(&b).unwrap() else { panic!("not an update") };
        assert_eq!(u.pmsi_vni, Some(100));
        assert_eq!(u.route_targets, vec![(65000, 100)]);
        let mut b = Vec::new();
        emit_unreach(&mut b, &[r, imet]);
        let Message::Update(u) = Message::parse(&b).unwrap() else { panic!("not an update") };
        assert_eq!(u.unreach, vec![r, imet]);
    }

    #[test]
    fn session_reaches_established_and_keeps_alive() {
        let t = Duration::from_secs;
        let mut s = Session::new(65000, ip4("10.0.0.3"), 9, t(0));
        assert!(matches!(Message::parse(&s.out).unwrap(), Message::Open { evpn: true, asn: 65000, .. }));
        s.out.clear();
        let mut peer = Vec::new();
        emit_open(&mut peer, 65000, 90, ip4("10.0.0.254"));
        // Split across reads.
        assert!(s.input(&peer[..10], t(0)).is_empty());
        assert!(s.input(&peer[10..], t(0)).is_empty());
        assert_eq!(s.state, State::OpenConfirm);
        assert_eq!(Message::parse(&s.out).unwrap(), Message::Keepalive);
        s.out.clear();
        let mut ka = Vec::new();
        emit_keepalive(&mut ka);
        assert_eq!(s.input(&ka, t(1)), vec![Event::Up]);
        // Hold time 9 agreed: a keepalive every 3 s, the session dies after 9 s of silence.
        assert!(s.tick(t(3)).is_empty());
        assert_eq!(Message::parse(&s.out).unwrap(), Message::Keepalive);
        s.out.clear();
        assert!(matches!(s.tick(t(10))[0], Event::Down(_)));
        assert!(matches!(Message::parse(&s.out).unwrap(), Message::Notification { code: 4, .. }));
    }

    #[test]
    fn session_refuses_wrong_as_and_garbage() {
        let t = Duration::from_secs;
        let mut s = Session::new(65000, ip4("10.0.0.3"), 9, t(0));
        let mut peer = Vec::new();
        emit_open(&mut peer, 65001, 90, ip4("10.0.0.254"));
        assert!(matches!(&s.input(&peer, t(0))[..], [Event::Down(_)]));
        let mut s = Session::new(65000, ip4("10.0.0.3"), 9, t(0));
        let ev = s.input(&[0u8; 40], t(0));
        assert!(matches!(&ev[..], [Event::Down(w)] if w.contains("marker")));
    }

    #[test]
    fn imports_need_our_route_target_and_a_unicast_vtep() {
        let me: IpAddr = "10.0.0.2".parse().unwrap();
        let vtep: IpAddr = "10.0.0.3".parse().unwrap();
        let mut u = Update { route_targets: vec![(65000, 100)], ..Update::default() };
        assert_eq!(import_problem(&u, 65000, 100, vtep, me), None);
        assert!(import_problem(&u, 65000, 200, vtep, me).unwrap().contains("route target"), "another VNI");
        assert!(import_problem(&u, 65001, 100, vtep, me).is_some(), "another AS");
        for bad in ["0.0.0.0", "127.0.0.1", "255.255.255.255", "239.1.1.1", "::", "::1", "ff02::1"] {
            assert!(import_problem(&u, 65000, 100, bad.parse().unwrap(), me).is_some(), "{bad}");
        }
        assert!(import_problem(&u, 65000, 100, me, me).unwrap().contains("our own"));
        u.route_targets.clear();
        assert!(import_problem(&u, 65000, 100, vtep, me).is_some(), "no route target at all");
        // Four-octet AS: AS:VNI's low 16 bits, as weft itself announces them.
        u.route_targets = vec![(4_200_000_000, 100)];
        assert_eq!(import_problem(&u, 4_200_000_000, 100, vtep, me), None);
        // Round trip with what weft announces.
        let mut b = Vec::new();
        let a = Announce { asn: 65000, next_hop: vtep, vni: 7000, seq: 0 };
        emit_reach(&mut b, &EvpnRoute::Imet { rd: rd_ip(ip4("10.0.0.3"), 7000), tag: 0, origin: vtep }, &a);
        let Ok(Message::Update(u)) = Message::parse(&b) else { panic!() };
        assert_eq!(import_problem(&u, 65000, 7000, vtep, me), None);
    }

    #[test]
    fn a_peer_offering_no_keepalives_is_refused() {
        let t = Duration::from_secs;
        let mut s = Session::new(65000, ip4("10.0.0.3"), 9, t(0));
        let mut peer = Vec::new();
        emit_open(&mut peer, 65000, 0, ip4("10.0.0.254"));
        let ev = s.input(&peer, t(0));
        assert!(matches!(&ev[..], [Event::Down(w)] if w.contains("hold time 0")), "{ev:?}");
        // NOTIFICATION OPEN Message Error / Unacceptable Hold Time went out.
        assert_eq!(&s.out[s.out.len() - 2..], &[2, 6]);
        assert!(!s.established());
        // With 3 s it is fine, and keepalives go out every second.
        let mut s = Session::new(65000, ip4("10.0.0.3"), 9, t(0));
        let mut peer = Vec::new();
        emit_open(&mut peer, 65000, 3, ip4("10.0.0.254"));
        emit_keepalive(&mut peer);
        assert!(matches!(&s.input(&peer, t(0))[..], [Event::Up]));
        s.out.clear();
        s.tick(t(1));
        assert!(!s.out.is_empty(), "a keepalive after hold/3");
    }

    #[test]
    fn truncated_routes_are_errors() {
        let rd = rd_ip(ip4("10.0.0.3"), 1);
        let mut b = Vec::new();
        EvpnRoute::Mac { rd, vni: 1, mac: mac(1), ip: None }.emit(&mut b);
        for cut in 0..b.len() {
            let _ = EvpnRoute::parse_all(&b[..cut]);
        }
        b[1] = 100;
        assert!(EvpnRoute::parse_all(&b).is_err());
        fuzz_input(&b);
    }
}
