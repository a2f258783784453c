//! The IKEv2 engine (RFC 7296) with pre-shared keys: IKE_SA_INIT, IKE_AUTH with the first child SA,
//! CREATE_CHILD_SA to rekey children and the IKE SA, INFORMATIONAL for deletes and liveness, retransmission
//! with back-off, NAT traversal (RFC 7296 §2.23) and cookies (§2.6).
//!
//! No I/O and no clock: the caller hands in datagrams and the time, and takes out datagrams to send and SAs to
//! install, so every exchange can be driven step by step in tests.

use crate::crypto::{self, gcm_material_len, id, Dh, Gcm, Prf, ICV_LEN, IV_LEN};
use crate::msg::{
    self, exchange, flag, kind, notify, transform, Header, Payload, Proposal, Transform, Ts, PROTO_ESP, PROTO_IKE,
};
use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

pub use weft_wire::{Nanos, SECOND};

pub const IKE_PORT: u16 = 500;
pub const NAT_T_PORT: u16 = 4500;

/// Retransmissions of a request before the peer is declared gone, and the first timeout (doubled each time).
const RETRIES: u32 = 5;
const RETRY_FIRST: Nanos = SECOND;
/// A half-open IKE SA (IKE_SA_INIT answered, no IKE_AUTH) is forgotten after this long.
const HALF_OPEN_TTL: Nanos = 30 * SECOND;
/// With this many half-open SAs, new IKE_SA_INIT requests must return a cookie first.
pub const COOKIE_THRESHOLD: usize = 16;
/// Hard limits on half-open SAs, in all and per source address.
pub const HALF_OPEN_MAX: usize = 512;
pub const HALF_OPEN_PER_SOURCE: usize = 32;
/// A peer silent this long is asked whether it is alive (an empty INFORMATIONAL request).
const DPD_AFTER: Nanos = 15 * SECOND;
/// An IKE SA being closed (replaced by a rekey, or refused) is forgotten after this long without a word from
/// the peer (its delete may never come).
const CLOSING_TTL: Nanos = 30 * SECOND;
/// After a failed attempt, the initiator tries again this much later.
const RESTART_AFTER: Nanos = 5 * SECOND;
/// The peer with the higher address waits this long for the other to initiate before it does.
const SECOND_INITIATOR_DELAY: Nanos = 3 * SECOND;
/// At most one log line per this long for messages anyone can send (IKE_SA_INIT from unknown sources).
const LOG_INTERVAL: Nanos = 10 * SECOND;
/// Pre-shared keys shorter than this are weak: one captured IKE_AUTH exchange lets anyone try to guess them
/// offline. weft accepts them (peers' keys are not weft's to choose) and warns.
pub const MIN_PSK_LEN: usize = 16;

/// Whether a pre-shared key is shorter than [`MIN_PSK_LEN`].
pub fn weak_psk(psk: &[u8]) -> bool {
    psk.len() < MIN_PSK_LEN
}

/// Outbound packets after which a child SA is rekeyed whatever its age: half the 32-bit sequence number
/// space (RFC 4303 §3.3.3 forbids wrapping it), so the rekey has 2^31 packets of room to finish.
pub const SEQ_SOFT_LIMIT: u64 = 1 << 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Transport,
    Tunnel,
}

/// How ESP crosses the underlay: in UDP on port 4500 (RFC 3948; also when a NAT is found) or as IP protocol 50.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encap {
    Udp,
    Esp,
}

/// Who starts the exchange with a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiate {
    /// The end with the lower address starts; the other starts only if nothing came after a few seconds.
    Auto,
    Always,
    Never,
}

/// One peer weft protects tunnel traffic with. Its `Debug` hides the pre-shared key.
#[derive(Clone, PartialEq, Eq)]
pub struct PeerConfig {
    pub local: IpAddr,
    pub remote: IpAddr,
    pub psk: Vec<u8>,
    pub mode: Mode,
    pub encap: Encap,
    pub initiate: Initiate,
    /// The IP protocol the child SA carries (17 UDP for VXLAN/Geneve, 47 GRE; 0 any).
    pub proto: u8,
    /// Rekey the child SAs after this long, or after this many bytes (0: no byte limit); the IKE SA after
    /// `ike_lifetime`.
    pub child_lifetime: Nanos,
    pub rekey_bytes: u64,
    pub ike_lifetime: Nanos,
    /// Diffie-Hellman groups in order of preference.
    pub groups: Vec<u16>,
}

impl std::fmt::Debug for PeerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerConfig")
            .field("local", &self.local)
            .field("remote", &self.remote)
            .field("psk", &"(hidden)")
            .field("mode", &self.mode)
            .field("encap", &self.encap)
            .field("initiate", &self.initiate)
            .field("proto", &self.proto)
            .field("groups", &self.groups)
            .finish_non_exhaustive()
    }
}

impl PeerConfig {
    pub fn new(local: IpAddr, remote: IpAddr, psk: &[u8]) -> Self {
        PeerConfig {
            local,
            remote,
            psk: psk.to_vec(),
            mode: Mode::Transport,
            encap: Encap::Udp,
            initiate: Initiate::Auto,
            proto: 0,
            child_lifetime: 3600 * SECOND,
            rekey_bytes: 0,
            ike_lifetime: 4 * 3600 * SECOND,
            groups: vec![id::DH_X25519, id::DH_ECP_256, id::DH_MODP_2048],
        }
    }
}

/// A child SA's keys, as the datapath installs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildKeys {
    pub local: IpAddr,
    pub remote: IpAddr,
    pub spi_in: u32,
    pub spi_out: u32,
    /// AES-GCM key and salt, per direction.
    pub key_in: Vec<u8>,
    pub key_out: Vec<u8>,
    pub mode: Mode,
    /// UDP-encapsulated, and the peer's port (4500, or what a NAT made of it).
    pub udp: bool,
    pub peer_port: u16,
    /// The peer's address as it names it (its traffic selector): behind a NAT, not the one its packets
    /// come from. Tunnel-mode inner packets carry it.
    pub peer_inner: IpAddr,
    /// The datapath sends on this SA (a rekeying responder waits until the old SA is deleted).
    pub send: bool,
}

/// What the engine asks of its caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Send an IKE message from local port `from_port` (500, or 4500 with the non-ESP marker) to `to`.
    Send { from_port: u16, to: SocketAddr, data: Vec<u8> },
    /// Install (or update) a child SA.
    Install(ChildKeys),
    /// Start sending on the child SA with this outbound SPI.
    Activate { remote: IpAddr, spi_out: u32 },
    /// Remove a child SA.
    Remove { remote: IpAddr, spi_in: u32, spi_out: u32 },
}

/// Counters the engine keeps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub ike_sa_established: u64,
    pub child_sa_established: u64,
    pub rekeys: u64,
    pub auth_failed: u64,
    pub no_proposal: u64,
    pub malformed: u64,
    pub unknown_peer: u64,
    pub retransmits: u64,
    pub timeouts: u64,
    pub cookies_sent: u64,
    pub half_open_dropped: u64,
    pub decrypt_failed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Initiator: IKE_SA_INIT sent.
    InitSent,
    /// Initiator: IKE_AUTH sent. Responder: IKE_SA_INIT answered, waiting for IKE_AUTH.
    AuthSent,
    HalfOpen,
    Established,
    /// Replaced by a rekeyed IKE SA or being deleted: no new work.
    Closing,
}

/// Our request in flight.
#[derive(Debug, Clone)]
enum Req {
    Init,
    Auth,
    RekeyChild { old_in: u32 },
    RekeyIke,
    DeleteChild { spi_in: u32 },
    DeleteIke,
    Dpd,
}

#[derive(Debug)]
struct Pending {
    req: Req,
    msg_id: u32,
    data: Vec<u8>,
    from_port: u16,
    sent: Nanos,
    tries: u32,
}

#[derive(Debug, Clone)]
struct Child {
    keys: ChildKeys,
    created: Nanos,
    rekey_at: Nanos,
    /// Replaced by a rekey; deleted soon.
    replaced: bool,
    enc_bits: u16,
    ts_local: Vec<Ts>,
    ts_remote: Vec<Ts>,
}

/// The half of a child SA being negotiated.
#[derive(Debug)]
struct ChildPlan {
    spi_in: u32,
    nonce: Vec<u8>,
    dh: Option<Dh>,
    /// IKE rekey: our new IKE SPI.
    ike_spi: u64,
}

struct Keys {
    prf: Prf,
    enc_bits: u16,
    group: u16,
    sk_d: Vec<u8>,
    ei: Gcm,
    er: Gcm,
    sk_pi: Vec<u8>,
    sk_pr: Vec<u8>,
}

struct IkeSa {
    remote: IpAddr,
    local: IpAddr,
    peer: SocketAddr,
    local_port: u16,
    /// We are this IKE SA's initiator.
    initiator: bool,
    spi_i: u64,
    spi_r: u64,
    state: State,
    keys: Option<Keys>,
    dh: Option<Dh>,
    ni: Vec<u8>,
    nr: Vec<u8>,
    /// The IKE_SA_INIT request and response as sent (signed by AUTH).
    init_req: Vec<u8>,
    init_resp: Vec<u8>,
    cookie: Option<Vec<u8>>,
    next_id: u32,
    peer_next_id: u32,
    pending: Option<Pending>,
    queue: VecDeque<Req>,
    last_response: Option<(u32, Vec<u8>, u16)>,
    children: Vec<Child>,
    plan: Option<ChildPlan>,
    created: Nanos,
    established: Nanos,
    rekey_at: Nanos,
    last_heard: Nanos,
    iv: u64,
    /// UDP encapsulation chosen (NAT found or forced).
    nat: bool,
    /// The identity the peer sent (IDi or IDr): its AUTH is computed over it. Behind a NAT it is the peer's
    /// own (private) address, not the one its packets come from.
    peer_id: Option<(u8, Vec<u8>)>,
}

/// What `weft ipsec show` prints for an IKE SA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IkeInfo {
    pub local: IpAddr,
    pub remote: SocketAddr,
    pub spi_i: u64,
    pub spi_r: u64,
    pub initiator: bool,
    pub state: &'static str,
    pub encryption: String,
    pub prf: &'static str,
    pub group: &'static str,
    pub age_secs: u64,
    pub rekey_in_secs: u64,
    pub udp_encap: bool,
    /// Wireshark's ikev2_decryption_table values: SK_ei, SK_er (key and salt), hex.
    pub sk_ei: String,
    pub sk_er: String,
    pub children: Vec<ChildInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildInfo {
    pub spi_in: u32,
    pub spi_out: u32,
    pub mode: Mode,
    pub encryption: String,
    pub age_secs: u64,
    pub rekey_in_secs: u64,
    pub sending: bool,
    pub key_in: String,
    pub key_out: String,
    pub ts_local: String,
    pub ts_remote: String,
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn rand_u64() -> u64 {
    let mut b = [0u8; 8];
    crypto::random(&mut b);
    u64::from_be_bytes(b)
}

fn nonce() -> Vec<u8> {
    let mut n = vec![0u8; 32];
    crypto::random(&mut n);
    n
}

fn ip_bytes(a: IpAddr) -> Vec<u8> {
    match a {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// Addresses a host behind a NAT may have: RFC 1918, RFC 6598 (carrier-grade NAT) and IPv6 unique local.
fn is_private(a: IpAddr) -> bool {
    match a {
        IpAddr::V4(v) => v.is_private() || (v.octets()[0] == 100 && v.octets()[1] & 0xc0 == 64),
        IpAddr::V6(v) => v.segments()[0] & 0xfe00 == 0xfc00,
    }
}

/// The address in an ID payload's data (ID_IPV4_ADDR or ID_IPV6_ADDR).
fn id_addr(d: &[u8]) -> Option<IpAddr> {
    weft_wire::ip_from_bytes(d)
}

fn id_payload(a: IpAddr) -> (u8, Vec<u8>) {
    (if a.is_ipv4() { msg::ID_IPV4_ADDR } else { msg::ID_IPV6_ADDR }, ip_bytes(a))
}

/// NAT detection hash: SHA-1(SPIi | SPIr | IP | port) (RFC 7296 §2.23).
fn nat_hash(spi_i: u64, spi_r: u64, addr: SocketAddr) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY);
    ctx.update(&spi_i.to_be_bytes());
    ctx.update(&spi_r.to_be_bytes());
    ctx.update(&ip_bytes(addr.ip()));
    ctx.update(&addr.port().to_be_bytes());
    ctx.finish().as_ref().to_vec()
}

/// The IKE proposal weft offers: AES-GCM-16 256 then 128, PRF HMAC-SHA2 256/384/512, the groups in order.
fn ike_proposal(groups: &[u16], spi: Vec<u8>) -> Proposal {
    let mut t = vec![
        Transform { kind: transform::ENCR, id: id::ENCR_AES_GCM_16, key_len: Some(256) },
        Transform { kind: transform::ENCR, id: id::ENCR_AES_GCM_16, key_len: Some(128) },
        Transform { kind: transform::PRF, id: id::PRF_HMAC_SHA2_256, key_len: None },
        Transform { kind: transform::PRF, id: id::PRF_HMAC_SHA2_384, key_len: None },
        Transform { kind: transform::PRF, id: id::PRF_HMAC_SHA2_512, key_len: None },
    ];
    t.extend(groups.iter().map(|&g| Transform { kind: transform::DH, id: g, key_len: None }));
    Proposal { num: 1, proto: PROTO_IKE, spi, transforms: t }
}

/// The ESP proposal: AES-GCM-16 256 then 128, no ESN, and a group when the exchange carries a KE (PFS).
fn esp_proposal(spi: u32, group: Option<u16>) -> Proposal {
    let mut t = vec![
        Transform { kind: transform::ENCR, id: id::ENCR_AES_GCM_16, key_len: Some(256) },
        Transform { kind: transform::ENCR, id: id::ENCR_AES_GCM_16, key_len: Some(128) },
    ];
    if let Some(g) = group {
        t.push(Transform { kind: transform::DH, id: g, key_len: None });
    }
    t.push(Transform { kind: transform::ESN, id: id::ESN_NONE, key_len: None });
    Proposal { num: 1, proto: PROTO_ESP, spi: spi.to_be_bytes().to_vec(), transforms: t }
}

/// What a responder picked from a proposal.
#[derive(Debug, Clone, Copy)]
struct Choice {
    num: u8,
    enc_bits: u16,
    prf: Option<Prf>,
    group: Option<u16>,
}

/// Picks the first offered proposal of `proto` whose every transform type has an entry weft supports.
/// `want_dh`: the group to prefer (the KE payload's) when the proposal lists several.
fn choose(props: &[Proposal], proto: u8, want_dh: Option<u16>) -> Option<(Choice, &Proposal)> {
    for p in props.iter().filter(|p| p.proto == proto) {
        let enc = p
            .of(transform::ENCR)
            .find(|t| t.id == id::ENCR_AES_GCM_16 && matches!(t.key_len, Some(128 | 256)))
            .and_then(|t| t.key_len);
        let Some(enc_bits) = enc else { continue };
        if p.of(transform::INTEG).any(|t| t.id != 0) && p.of(transform::INTEG).all(|t| t.id != 0) {
            // AEAD proposals carry no integrity algorithm (or NONE).
            continue;
        }
        let prf = p.of(transform::PRF).find_map(|t| Prf::from_id(t.id));
        if proto == PROTO_IKE && prf.is_none() {
            continue;
        }
        let groups: Vec<u16> = p.of(transform::DH).map(|t| t.id).collect();
        let group = if groups.is_empty() {
            None
        } else if let Some(g) = want_dh.filter(|g| groups.contains(g)) {
            Some(g)
        } else if let Some(&g) = groups.iter().find(|g| crypto::group_supported(**g)) {
            Some(g)
        } else if groups.contains(&0) {
            None
        } else {
            continue;
        };
        if proto == PROTO_IKE && group.is_none() {
            continue;
        }
        if p.of(transform::ESN).next().is_some() && !p.of(transform::ESN).any(|t| t.id == id::ESN_NONE) {
            continue;
        }
        return Some((Choice { num: p.num, enc_bits, prf, group }, p));
    }
    None
}

/// The proposal a responder answers with: the chosen transforms only.
fn chosen_proposal(c: Choice, proto: u8, spi: Vec<u8>, had_esn: bool) -> Proposal {
    let mut t = vec![Transform { kind: transform::ENCR, id: id::ENCR_AES_GCM_16, key_len: Some(c.enc_bits) }];
    if let Some(p) = c.prf {
        if proto == PROTO_IKE {
            t.push(Transform { kind: transform::PRF, id: p.id(), key_len: None });
        }
    }
    if let Some(g) = c.group {
        t.push(Transform { kind: transform::DH, id: g, key_len: None });
    }
    if had_esn {
        t.push(Transform { kind: transform::ESN, id: id::ESN_NONE, key_len: None });
    }
    Proposal { num: c.num, proto, spi, transforms: t }
}

/// Narrows the peer's traffic selectors to the one address we allow on that side (any port, the configured
/// protocol or what the peer narrowed it to).
/// `addrs`: the side's address as we see it, and (behind a NAT) the one it has itself; the first one a selector
/// covers is kept.
fn narrow(offered: &[Ts], addrs: &[IpAddr], proto: u8) -> Option<Vec<Ts>> {
    let (t, addr) = offered.iter().find_map(|t| {
        let a = addrs.iter().copied().find(|a| t.contains(*a))?;
        (proto == 0 || t.proto == 0 || t.proto == proto).then_some((t, a))
    })?;
    let p = if t.proto != 0 { t.proto } else { proto };
    let ports = if p == 0 { (0, 65535) } else { (t.start_port, t.end_port) };
    Some(vec![Ts { proto: p, start_port: ports.0, end_port: ports.1, start: addr, end: addr }])
}

fn find_notify(payloads: &[Payload], want: u16) -> Option<&Payload> {
    payloads.iter().find(|p| matches!(p, Payload::Notify { kind, .. } if *kind == want))
}

fn notify_data(payloads: &[Payload], want: u16) -> Option<&[u8]> {
    match find_notify(payloads, want)? {
        Payload::Notify { data, .. } => Some(data),
        _ => None,
    }
}

/// The first error notification (types below 16384) in a response.
fn error_notify(payloads: &[Payload]) -> Option<u16> {
    payloads.iter().find_map(|p| match p {
        Payload::Notify { kind, .. } if *kind < 16384 => Some(*kind),
        _ => None,
    })
}

fn notify_name(k: u16) -> String {
    match k {
        notify::INVALID_SYNTAX => "INVALID_SYNTAX".into(),
        notify::NO_PROPOSAL_CHOSEN => "NO_PROPOSAL_CHOSEN".into(),
        notify::INVALID_KE_PAYLOAD => "INVALID_KE_PAYLOAD".into(),
        notify::AUTHENTICATION_FAILED => "AUTHENTICATION_FAILED".into(),
        notify::TS_UNACCEPTABLE => "TS_UNACCEPTABLE".into(),
        notify::TEMPORARY_FAILURE => "TEMPORARY_FAILURE".into(),
        k => format!("notify {k}"),
    }
}

impl IkeSa {
    fn new(local: IpAddr, peer: SocketAddr, initiator: bool, now: Nanos) -> IkeSa {
        IkeSa {
            remote: peer.ip(),
            local,
            peer,
            local_port: IKE_PORT,
            initiator,
            spi_i: 0,
            spi_r: 0,
            state: State::InitSent,
            keys: None,
            dh: None,
            ni: Vec::new(),
            nr: Vec::new(),
            init_req: Vec::new(),
            init_resp: Vec::new(),
            cookie: None,
            next_id: 0,
            peer_next_id: 0,
            pending: None,
            queue: VecDeque::new(),
            last_response: None,
            children: Vec::new(),
            plan: None,
            created: now,
            established: now,
            rekey_at: u64::MAX,
            last_heard: now,
            iv: 0,
            nat: false,
            peer_id: None,
        }
    }

    /// Derives the IKE SA's keys (RFC 7296 §2.14) from g^ir (and, for a rekeyed SA, the old SK_d).
    fn derive(&mut self, prf: Prf, enc_bits: u16, group: u16, shared: &[u8], old_sk_d: Option<(&[u8], Prf)>) {
        let skeyseed = match old_sk_d {
            None => prf.prf(&[&self.ni[..], &self.nr[..]].concat(), &[shared]),
            Some((d, old_prf)) => old_prf.prf(d, &[shared, &self.ni, &self.nr]),
        };
        let enc = gcm_material_len(enc_bits);
        let pl = prf.out_len();
        let seed = [&self.ni[..], &self.nr[..], &self.spi_i.to_be_bytes(), &self.spi_r.to_be_bytes()].concat();
        let km = prf.prf_plus(&skeyseed, &seed, 3 * pl + 2 * enc);
        let (sk_d, rest) = km.split_at(pl);
        let (ei, rest) = rest.split_at(enc);
        let (er, rest) = rest.split_at(enc);
        let (pi, pr) = rest.split_at(pl);
        let (Some(ei), Some(er)) = (Gcm::new(ei), Gcm::new(er)) else { return };
        self.keys =
            Some(Keys { prf, enc_bits, group, sk_d: sk_d.to_vec(), ei, er, sk_pi: pi.to_vec(), sk_pr: pr.to_vec() });
    }

    fn header(&self, exch: u8, msg_id: u32, response: bool) -> Header {
        let mut flags = if self.initiator { flag::INITIATOR } else { 0 };
        if response {
            flags |= flag::RESPONSE;
        }
        Header { spi_i: self.spi_i, spi_r: self.spi_r, next: 0, exchange: exch, flags, msg_id, length: 0 }
    }

    /// An encrypted message: the payloads inside an SK payload (RFC 5282 §5 for AES-GCM).
    fn seal(&mut self, exch: u8, msg_id: u32, response: bool, payloads: &[Payload]) -> Vec<u8> {
        let mut inner = Vec::with_capacity(256);
        let first = msg::write_payloads(payloads, &mut inner);
        inner.push(0); // pad length: AES-GCM needs no padding
        let mut header = self.header(exch, msg_id, response);
        header.next = kind::SK;
        let sk_len = 4 + IV_LEN + inner.len() + ICV_LEN;
        header.length = (msg::HEADER_LEN + sk_len) as u32;
        let mut out = Vec::with_capacity(header.length as usize);
        header.write(&mut out);
        out.extend_from_slice(&[first, 0]);
        out.extend_from_slice(&(sk_len as u16).to_be_bytes());
        self.iv += 1;
        let iv = self.iv.to_be_bytes();
        out.extend_from_slice(&iv);
        let aad_len = msg::HEADER_LEN + 4;
        let Some(k) = &self.keys else { return Vec::new() };
        let key = if self.initiator { &k.ei } else { &k.er };
        let icv = key.seal(iv, &out[..aad_len], &mut inner);
        out.extend_from_slice(&inner);
        out.extend_from_slice(&icv);
        out
    }

    /// Decrypts a message's SK payload and parses what it holds.
    fn open(&self, data: &[u8], m: &msg::Message) -> Result<Vec<Payload>, &'static str> {
        let sk = m.sk.ok_or("no encrypted payload")?;
        let k = self.keys.as_ref().ok_or("no keys yet")?;
        let key = if self.initiator { &k.er } else { &k.ei };
        if data.len() < sk.body + IV_LEN + ICV_LEN + 1 {
            return Err("encrypted payload too short");
        }
        let mut iv = [0u8; IV_LEN];
        iv.copy_from_slice(&data[sk.body..sk.body + IV_LEN]);
        let mut body = data[sk.body + IV_LEN..].to_vec();
        let n = key.open(iv, &data[..sk.body], &mut body).map_err(|_| "integrity check failed")?;
        let pad = usize::from(*body[..n].last().ok_or("empty")?);
        if pad + 1 > n {
            return Err("bad padding");
        }
        let inner = &body[..n - 1 - pad];
        msg::parse_payloads(sk.first, inner, 0).map(|(p, _)| p).map_err(|e| e.0)
    }

    /// AUTH for one side: prf(prf(psk, "Key Pad for IKEv2"), message | peer's nonce | prf(SK_p, ID)).
    /// Why the identity the peer authenticated with is not the one this tunnel expects, if it is not. weft's
    /// policy (RFC 7296 §2.15 leaves it to the implementation): the peer names itself by an IP address, the
    /// tunnel's `remote_ip`; when NAT detection found a NAT between us, by its own private address behind the
    /// NAT (RFC 1918, RFC 6598 shared space, IPv6 unique local).
    fn identity_problem(&self) -> Option<String> {
        let Some((kind, data)) = &self.peer_id else {
            return Some("it sent no identity".to_string());
        };
        let addr = match (*kind, id_addr(data)) {
            (msg::ID_IPV4_ADDR, Some(a @ IpAddr::V4(_))) | (msg::ID_IPV6_ADDR, Some(a @ IpAddr::V6(_))) => a,
            _ => {
                return Some(format!(
                    "its identity is of type {kind}, not an IP address (weft expects {})",
                    self.remote
                ))
            }
        };
        if addr == self.remote || (self.nat && is_private(addr)) {
            None
        } else if self.nat {
            Some(format!(
                "it names itself {addr}, neither the tunnel's remote_ip {} nor a private address behind the NAT found between us",
                self.remote
            ))
        } else {
            Some(format!("it names itself {addr}, not the tunnel's remote_ip {}", self.remote))
        }
    }

    fn auth(&self, psk: &[u8], of_initiator: bool) -> Vec<u8> {
        let Some(k) = &self.keys else { return Vec::new() };
        let (message, nonce, sk_p) =
            if of_initiator { (&self.init_req, &self.nr, &k.sk_pi) } else { (&self.init_resp, &self.ni, &k.sk_pr) };
        let (t, data) = if of_initiator == self.initiator {
            id_payload(self.local)
        } else {
            self.peer_id.clone().unwrap_or_else(|| id_payload(self.remote))
        };
        let id_body = [&[t, 0, 0, 0][..], &data].concat();
        let maced = k.prf.prf(sk_p, &[&id_body]);
        let pad = k.prf.prf(psk, &[b"Key Pad for IKEv2"]);
        k.prf.prf(&pad, &[message, nonce, &maced])
    }

    /// Child SA keys from KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr), as (inbound, outbound). The first key is for
    /// the direction from the initiator *of the exchange that creates the child* (RFC 7296 §2.17) — after an IKE
    /// rekey by the peer, that is not necessarily this IKE SA's initiator.
    fn child_keys(
        &self,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
        enc_bits: u16,
        we_initiated: bool,
    ) -> (Vec<u8>, Vec<u8>) {
        let Some(k) = &self.keys else { return (Vec::new(), Vec::new()) };
        let seed = [shared.unwrap_or(&[]), ni, nr].concat();
        let len = gcm_material_len(enc_bits);
        let km = k.prf.prf_plus(&k.sk_d, &seed, 2 * len);
        let (i2r, r2i) = km.split_at(len);
        if we_initiated {
            (r2i.to_vec(), i2r.to_vec())
        } else {
            (i2r.to_vec(), r2i.to_vec())
        }
    }
}

/// The IKE engine of one weftd.
pub struct Engine {
    peers: HashMap<IpAddr, PeerConfig>,
    sas: Vec<IkeSa>,
    out: VecDeque<Output>,
    pub stats: Stats,
    cookie_secret: [u8; 32],
    /// When each peer may (re)start an initiation.
    next_try: HashMap<IpAddr, Nanos>,
    /// SPIs in use for inbound child SAs.
    spis: std::collections::HashSet<u32>,
    /// When the last "IKE_SA_INIT from an unknown address" line was logged, and how many were not since.
    unknown_logged_at: Nanos,
    unknown_suppressed: u64,
    /// Tests only: answer child rekeys with PFS as a broken or downgrading peer would, without a KE.
    #[cfg(test)]
    test_answer_without_ke: bool,
}

impl Default for Engine {
    fn default() -> Self {
        Self::new()
    }
}

impl Engine {
    pub fn new() -> Engine {
        let mut cookie_secret = [0u8; 32];
        crypto::random(&mut cookie_secret);
        Engine {
            peers: HashMap::new(),
            sas: Vec::new(),
            out: VecDeque::new(),
            stats: Stats::default(),
            cookie_secret,
            next_try: HashMap::new(),
            spis: Default::default(),
            unknown_logged_at: 0,
            unknown_suppressed: 0,
            #[cfg(test)]
            test_answer_without_ke: false,
        }
    }

    /// The next thing to do, if any.
    pub fn poll(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// Sets the peers to protect. SAs with peers no longer listed (or whose settings changed) are deleted.
    pub fn set_peers(&mut self, peers: Vec<PeerConfig>, now: Nanos) {
        let new: HashMap<IpAddr, PeerConfig> = peers.into_iter().map(|p| (p.remote, p)).collect();
        let gone: Vec<IpAddr> = self.peers.iter().filter(|(r, c)| new.get(*r) != Some(*c)).map(|(r, _)| *r).collect();
        for r in gone {
            self.close_peer(r, now);
        }
        for (r, c) in &new {
            if !self.peers.contains_key(r) {
                let delay = match c.initiate {
                    Initiate::Always => 0,
                    Initiate::Auto if c.local < c.remote => 0,
                    Initiate::Auto => SECOND_INITIATOR_DELAY,
                    Initiate::Never => u64::MAX,
                };
                self.next_try.insert(*r, now.saturating_add(delay));
            }
        }
        self.peers = new;
    }

    /// Deletes every SA with `remote` (telling the peer) and forgets it.
    fn close_peer(&mut self, remote: IpAddr, now: Nanos) {
        for i in 0..self.sas.len() {
            if self.sas[i].remote == remote && self.sas[i].state == State::Established {
                self.request(i, Req::DeleteIke, now);
            }
        }
        let mut k = 0;
        while k < self.sas.len() {
            if self.sas[k].remote == remote {
                let sa = self.sas.remove(k);
                self.drop_children(&sa);
            } else {
                k += 1;
            }
        }
        self.next_try.remove(&remote);
    }

    fn drop_children(&mut self, sa: &IkeSa) {
        for c in &sa.children {
            self.spis.remove(&c.keys.spi_in);
            self.out.push_back(Output::Remove { remote: sa.remote, spi_in: c.keys.spi_in, spi_out: c.keys.spi_out });
        }
    }

    fn new_spi(&mut self) -> u32 {
        loop {
            let mut b = [0u8; 4];
            crypto::random(&mut b);
            let s = u32::from_be_bytes(b);
            // 1..=255 are reserved (RFC 4303 §2.1).
            if s > 255 && self.spis.insert(s) {
                return s;
            }
        }
    }

    /// Makes a request on SA `i` (now, or after the one in flight).
    fn request(&mut self, i: usize, req: Req, now: Nanos) {
        if self.sas[i].pending.is_some() {
            self.sas[i].queue.push_back(req);
            return;
        }
        self.send_request(i, req, now);
    }

    fn send(&mut self, from_port: u16, to: SocketAddr, data: Vec<u8>) {
        self.out.push_back(Output::Send { from_port, to, data });
    }

    fn send_request(&mut self, i: usize, req: Req, now: Nanos) {
        let Some(cfg) = self.peers.get(&self.sas[i].remote).cloned() else { return };
        let msg_id = self.sas[i].next_id;
        let data = match &req {
            // IKE_SA_INIT is sent by `send_init`, which also handles its cookie and group retries.
            Req::Init => return,
            Req::Auth => {
                let spi_in = self.new_spi();
                let remote = self.sas[i].remote;
                let first_contact = self.sas.iter().filter(|s| s.remote == remote).count() == 1;
                let sa = &mut self.sas[i];
                sa.plan = Some(ChildPlan { spi_in, nonce: Vec::new(), dh: None, ike_spi: 0 });
                let (t, d) = id_payload(sa.local);
                let mut p = vec![
                    Payload::IdI { kind: t, data: d },
                    Payload::Auth { method: msg::AUTH_SHARED_KEY, data: sa.auth(&cfg.psk, true) },
                ];
                if first_contact {
                    // We hold no other SA with this peer (a fresh start): it may drop what it still has with
                    // us (RFC 7296 §2.4).
                    p.push(Payload::notify(notify::INITIAL_CONTACT, Vec::new()));
                }
                if cfg.mode == Mode::Transport {
                    p.push(Payload::notify(notify::USE_TRANSPORT_MODE, Vec::new()));
                }
                p.push(Payload::Sa(vec![esp_proposal(spi_in, None)]));
                p.push(Payload::TsI(vec![Ts::host(sa.local, cfg.proto)]));
                p.push(Payload::TsR(vec![Ts::host(sa.remote, cfg.proto)]));
                sa.seal(exchange::IKE_AUTH, msg_id, false, &p)
            }
            Req::RekeyChild { .. } => {
                let old_in = if let Req::RekeyChild { old_in } = req { Some(old_in) } else { None };
                let spi_in = self.new_spi();
                let sa = &mut self.sas[i];
                let group = sa.keys.as_ref().map_or(id::DH_X25519, |k| k.group);
                let dh = Dh::new(group);
                let n = nonce();
                let mut p = Vec::new();
                if let Some(old) = old_in {
                    p.push(Payload::Notify {
                        proto: PROTO_ESP,
                        spi: old.to_be_bytes().to_vec(),
                        kind: notify::REKEY_SA,
                        data: Vec::new(),
                    });
                }
                if cfg.mode == Mode::Transport {
                    p.push(Payload::notify(notify::USE_TRANSPORT_MODE, Vec::new()));
                }
                p.push(Payload::Sa(vec![esp_proposal(spi_in, dh.as_ref().map(|d| d.group()))]));
                p.push(Payload::Nonce(n.clone()));
                if let Some(d) = &dh {
                    p.push(Payload::Ke { group: d.group(), data: d.public().to_vec() });
                }
                p.push(Payload::TsI(vec![Ts::host(sa.local, cfg.proto)]));
                p.push(Payload::TsR(vec![Ts::host(sa.remote, cfg.proto)]));
                sa.plan = Some(ChildPlan { spi_in, nonce: n, dh, ike_spi: 0 });
                sa.seal(exchange::CREATE_CHILD_SA, msg_id, false, &p)
            }
            Req::RekeyIke => {
                let sa = &mut self.sas[i];
                let group = sa.keys.as_ref().map_or(id::DH_X25519, |k| k.group);
                let Some(dh) = Dh::new(group) else { return };
                let new_spi = rand_u64() | 1;
                let n = nonce();
                let (bits, prf) = sa.keys.as_ref().map_or((256, Prf::Sha256), |k| (k.enc_bits, k.prf));
                let prop = chosen_proposal(
                    Choice { num: 1, enc_bits: bits, prf: Some(prf), group: Some(group) },
                    PROTO_IKE,
                    new_spi.to_be_bytes().to_vec(),
                    false,
                );
                let p = vec![
                    Payload::Sa(vec![prop]),
                    Payload::Nonce(n.clone()),
                    Payload::Ke { group, data: dh.public().to_vec() },
                ];
                sa.plan = Some(ChildPlan { spi_in: 0, nonce: n, dh: Some(dh), ike_spi: new_spi });
                sa.seal(exchange::CREATE_CHILD_SA, msg_id, false, &p)
            }
            Req::DeleteChild { spi_in } => {
                let p = vec![Payload::Delete { proto: PROTO_ESP, spis: vec![spi_in.to_be_bytes().to_vec()] }];
                self.sas[i].seal(exchange::INFORMATIONAL, msg_id, false, &p)
            }
            Req::DeleteIke => {
                let p = vec![Payload::Delete { proto: PROTO_IKE, spis: Vec::new() }];
                self.sas[i].seal(exchange::INFORMATIONAL, msg_id, false, &p)
            }
            Req::Dpd => self.sas[i].seal(exchange::INFORMATIONAL, msg_id, false, &[]),
        };
        let sa = &mut self.sas[i];
        sa.next_id += 1;
        let (port, to) = (sa.local_port, sa.peer);
        sa.pending = Some(Pending { req, msg_id, data: data.clone(), from_port: port, sent: now, tries: 0 });
        self.send(port, to, data);
    }

    /// Starts an IKE SA with a configured peer.
    fn initiate(&mut self, remote: IpAddr, now: Nanos) {
        let Some(cfg) = self.peers.get(&remote).cloned() else { return };
        let mut sa = IkeSa::new(cfg.local, SocketAddr::new(remote, IKE_PORT), true, now);
        sa.spi_i = rand_u64() | 1;
        self.sas.push(sa);
        let i = self.sas.len() - 1;
        self.send_init(i, cfg.groups.first().copied().unwrap_or(id::DH_X25519), now);
    }

    fn send_init(&mut self, i: usize, group: u16, now: Nanos) {
        let Some(cfg) = self.peers.get(&self.sas[i].remote).cloned() else { return };
        let sa = &mut self.sas[i];
        if sa.dh.as_ref().map(|d| d.group()) != Some(group) {
            sa.dh = Dh::new(group);
        }
        if sa.ni.is_empty() {
            sa.ni = nonce();
        }
        let Some(dh) = &sa.dh else { return };
        let mut p = Vec::new();
        if let Some(c) = &sa.cookie {
            p.push(Payload::notify(notify::COOKIE, c.clone()));
        }
        // Our preferred group first; the KE carries the group we try now.
        let mut groups = vec![group];
        groups.extend(cfg.groups.iter().copied().filter(|g| *g != group));
        p.push(Payload::Sa(vec![ike_proposal(&groups, Vec::new())]));
        p.push(Payload::Ke { group, data: dh.public().to_vec() });
        p.push(Payload::Nonce(sa.ni.clone()));
        p.extend(nat_payloads(sa.spi_i, 0, SocketAddr::new(sa.local, IKE_PORT), sa.peer, cfg.encap == Encap::Udp));
        let data = msg::encode(sa.header(exchange::IKE_SA_INIT, 0, false), &p);
        sa.init_req = data.clone();
        sa.state = State::InitSent;
        sa.next_id = 1;
        let to = sa.peer;
        sa.pending =
            Some(Pending { req: Req::Init, msg_id: 0, data: data.clone(), from_port: IKE_PORT, sent: now, tries: 0 });
        self.send(IKE_PORT, to, data);
    }

    /// Handles one received IKE message (without the non-ESP marker) that arrived on `local_port` from `from`.
    pub fn input(&mut self, now: Nanos, local_port: u16, from: SocketAddr, data: &[u8]) {
        let m = match msg::parse(data) {
            Ok(m) => m,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        let h = m.header;
        let idx = self.sas.iter().position(|s| {
            s.spi_i == h.spi_i && (s.spi_r == h.spi_r || (h.exchange == exchange::IKE_SA_INIT && s.spi_r == 0))
        });
        match idx {
            None if h.exchange == exchange::IKE_SA_INIT && !h.is_response() && h.spi_r == 0 && h.msg_id == 0 => {
                self.respond_init(now, local_port, from, data, &m)
            }
            None => self.stats.unknown_peer += 1,
            Some(i) => {
                if h.is_response() {
                    self.response(i, now, from, data, &m)
                } else {
                    self.incoming_request(i, now, local_port, from, data, &m)
                }
            }
        }
    }

    fn cookie_for(&self, from: SocketAddr, spi_i: u64, ni: &[u8]) -> Vec<u8> {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        ctx.update(&self.cookie_secret);
        ctx.update(ni);
        ctx.update(&ip_bytes(from.ip()));
        ctx.update(&spi_i.to_be_bytes());
        ctx.finish().as_ref().to_vec()
    }

    fn respond_init(&mut self, now: Nanos, local_port: u16, from: SocketAddr, data: &[u8], m: &msg::Message) {
        let h = m.header;
        // A retransmitted request: answer again with the same response.
        if let Some(sa) = self.sas.iter().find(|s| s.spi_i == h.spi_i && !s.initiator && s.peer == from) {
            let (resp, port) = (sa.init_resp.clone(), sa.local_port);
            self.send(port, from, resp);
            return;
        }
        let Some(cfg) = self.peers.get(&from.ip()).cloned() else {
            self.stats.unknown_peer += 1;
            // Anyone can send these: one line per LOG_INTERVAL at most, with how many were not logged.
            if now.saturating_sub(self.unknown_logged_at) >= LOG_INTERVAL || self.unknown_logged_at == 0 {
                tracing::info!(
                    peer = %from,
                    suppressed = self.unknown_suppressed,
                    "IKE_SA_INIT from an address with no tunnel using ipsec; ignored"
                );
                self.unknown_logged_at = now.max(1);
                self.unknown_suppressed = 0;
            } else {
                self.unknown_suppressed += 1;
            }
            return;
        };
        let Some(ni) = m.payloads.iter().find_map(|p| if let Payload::Nonce(n) = p { Some(n) } else { None }) else {
            self.stats.malformed += 1;
            return;
        };
        if ni.len() < 16 || ni.len() > 256 {
            self.stats.malformed += 1;
            return;
        }
        let half_open = self.sas.iter().filter(|s| s.state == State::HalfOpen).count();
        // Every SA with this source that is not established (half open, being authenticated, refused and
        // closing) counts against its share, so a spoofed source cannot pile up SAs in any state.
        let from_source = self.sas.iter().filter(|s| s.state != State::Established && s.peer.ip() == from.ip()).count();
        if half_open >= HALF_OPEN_MAX || from_source >= HALF_OPEN_PER_SOURCE {
            self.stats.half_open_dropped += 1;
            return;
        }
        if half_open >= COOKIE_THRESHOLD {
            let want = self.cookie_for(from, h.spi_i, ni);
            if notify_data(&m.payloads, notify::COOKIE) != Some(&want[..]) {
                self.stats.cookies_sent += 1;
                let resp_h = Header { flags: flag::RESPONSE, ..h };
                let data = msg::encode(resp_h, &[Payload::notify(notify::COOKIE, want)]);
                self.send(local_port, from, data);
                return;
            }
        }
        let Some(Payload::Sa(props)) = m.payloads.iter().find(|p| p.kind() == kind::SA) else {
            self.stats.malformed += 1;
            return;
        };
        let Some((ke_group, ke_data)) =
            m.payloads
                .iter()
                .find_map(|p| if let Payload::Ke { group, data } = p { Some((*group, data)) } else { None })
        else {
            self.stats.malformed += 1;
            return;
        };
        let reject = |engine: &mut Engine, n: Payload| {
            let resp_h = Header { flags: flag::RESPONSE, ..h };
            let data = msg::encode(resp_h, &[n]);
            engine.send(local_port, from, data);
        };
        // Our preference among the groups offered: the KE's if we like it, else our first that is offered.
        let offered: Vec<u16> = props.iter().flat_map(|p| p.of(transform::DH).map(|t| t.id)).collect();
        let want = if cfg.groups.contains(&ke_group) && offered.contains(&ke_group) {
            Some(ke_group)
        } else {
            cfg.groups.iter().copied().find(|g| offered.contains(g))
        };
        let Some((choice, _)) = choose(props, PROTO_IKE, want) else {
            self.stats.no_proposal += 1;
            tracing::warn!(peer = %from, "IKE_SA_INIT: no acceptable proposal (weft offers AES-GCM-16 with HMAC-SHA2 PRFs and x25519, ECP-256 or MODP-2048)");
            reject(self, Payload::notify(notify::NO_PROPOSAL_CHOSEN, Vec::new()));
            return;
        };
        let group = choice.group.unwrap_or(id::DH_X25519);
        if group != ke_group {
            reject(self, Payload::notify(notify::INVALID_KE_PAYLOAD, group.to_be_bytes().to_vec()));
            return;
        }
        let Some(dh) = Dh::new(group) else { return };
        let public = dh.public().to_vec();
        let Some(shared) = dh.agree(ke_data) else {
            self.stats.malformed += 1;
            return;
        };
        let mut sa = IkeSa::new(cfg.local, from, false, now);
        sa.local_port = local_port;
        sa.spi_i = h.spi_i;
        sa.spi_r = rand_u64() | 1;
        sa.ni = ni.clone();
        sa.nr = nonce();
        sa.state = State::HalfOpen;
        sa.init_req = data.to_vec();
        sa.peer_next_id = 1;
        // NAT detection: the initiator's source hash against the address it came from.
        let src_ok = m.payloads.iter().any(|p| matches!(p, Payload::Notify { kind: notify::NAT_DETECTION_SOURCE_IP, data, .. } if *data == nat_hash(h.spi_i, 0, from)));
        let dst_ok = m.payloads.iter().any(|p| matches!(p, Payload::Notify { kind: notify::NAT_DETECTION_DESTINATION_IP, data, .. } if *data == nat_hash(h.spi_i, 0, SocketAddr::new(cfg.local, local_port))));
        let has_nat_d = find_notify(&m.payloads, notify::NAT_DETECTION_SOURCE_IP).is_some();
        sa.nat = local_port == NAT_T_PORT || cfg.encap == Encap::Udp || (has_nat_d && !(src_ok && dst_ok));
        let prf = choice.prf.unwrap_or(Prf::Sha256);
        let mut p = vec![
            Payload::Sa(vec![chosen_proposal(choice, PROTO_IKE, Vec::new(), false)]),
            Payload::Ke { group, data: public },
            Payload::Nonce(sa.nr.clone()),
        ];
        if has_nat_d {
            p.extend(nat_payloads(
                h.spi_i,
                sa.spi_r,
                SocketAddr::new(cfg.local, local_port),
                from,
                cfg.encap == Encap::Udp,
            ));
        }
        let resp = msg::encode(sa.header(exchange::IKE_SA_INIT, 0, true), &p);
        sa.init_resp = resp.clone();
        sa.derive(prf, choice.enc_bits, group, &shared, None);
        self.sas.push(sa);
        self.send(local_port, from, resp);
    }

    fn incoming_request(
        &mut self,
        i: usize,
        now: Nanos,
        local_port: u16,
        from: SocketAddr,
        data: &[u8],
        m: &msg::Message,
    ) {
        let h = m.header;
        // A request we answered already (our response was lost): send the same response again.
        if let Some((id, resp, port)) = &self.sas[i].last_response {
            if *id == h.msg_id {
                let (resp, port) = (resp.clone(), *port);
                self.send(port, from, resp);
                return;
            }
        }
        if h.msg_id != self.sas[i].peer_next_id {
            self.stats.malformed += 1;
            return;
        }
        let payloads = match self.sas[i].open(data, m) {
            Ok(p) => p,
            Err(why) => {
                self.stats.decrypt_failed += 1;
                tracing::debug!(peer = %from, "IKE request dropped: {why}");
                return;
            }
        };
        // A NAT may change the peer's port: answer where the request came from (RFC 7296 §2.23).
        let sa = &mut self.sas[i];
        sa.last_heard = now;
        sa.peer_next_id += 1;
        sa.peer = from;
        sa.local_port = local_port;
        let response = match h.exchange {
            exchange::IKE_AUTH if sa.state == State::HalfOpen => self.auth_request(i, now, &payloads),
            exchange::CREATE_CHILD_SA if self.sas[i].state == State::Established => {
                self.create_child_request(i, now, &payloads)
            }
            exchange::INFORMATIONAL => self.informational_request(i, now, &payloads),
            _ => vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())],
        };
        // Handling the request may have removed other SAs (INITIAL_CONTACT) or added one (an IKE rekey):
        // find this one again.
        let Some(i) = self.sas.iter().position(|s| s.spi_i == h.spi_i && s.spi_r == h.spi_r) else { return };
        let sa = &mut self.sas[i];
        let resp = sa.seal(h.exchange, h.msg_id, true, &response);
        sa.last_response = Some((h.msg_id, resp.clone(), local_port));
        self.send(local_port, from, resp);
        if self.sas[i].state == State::Closing && self.sas[i].pending.is_none() && h.exchange == exchange::INFORMATIONAL
        {
            // The peer deleted this IKE SA.
            let sa = self.sas.remove(i);
            self.drop_children_unless_moved(&sa);
        }
    }

    fn drop_children_unless_moved(&mut self, sa: &IkeSa) {
        let moved: Vec<u32> = self.sas.iter().flat_map(|s| s.children.iter().map(|c| c.keys.spi_in)).collect();
        for c in sa.children.iter().filter(|c| !moved.contains(&c.keys.spi_in)) {
            self.spis.remove(&c.keys.spi_in);
            self.out.push_back(Output::Remove { remote: sa.remote, spi_in: c.keys.spi_in, spi_out: c.keys.spi_out });
        }
    }

    /// Responder: IKE_AUTH with the first child SA.
    fn auth_request(&mut self, i: usize, now: Nanos, p: &[Payload]) -> Vec<Payload> {
        let remote = self.sas[i].remote;
        let Some(cfg) = self.peers.get(&remote).cloned() else {
            return vec![Payload::notify(notify::AUTHENTICATION_FAILED, Vec::new())];
        };
        let auth =
            p.iter().find_map(|x| if let Payload::Auth { method, data } = x { Some((*method, data)) } else { None });
        self.sas[i].peer_id =
            p.iter().find_map(|x| if let Payload::IdI { kind, data } = x { Some((*kind, data.clone())) } else { None });
        let want = self.sas[i].auth(&cfg.psk, true);
        let ok = matches!(auth, Some((msg::AUTH_SHARED_KEY, d)) if ct_eq(d, &want));
        let identity = self.sas[i].identity_problem();
        if !ok || identity.is_some() {
            self.stats.auth_failed += 1;
            match identity.filter(|_| ok) {
                Some(why) => tracing::warn!(peer = %remote, "IKE_AUTH from {remote} refused: {why}; no SA"),
                None => {
                    tracing::warn!(peer = %remote, "IKE_AUTH from {remote} failed: its pre-shared key (options:psk) differs from ours; no SA")
                }
            }
            self.sas[i].state = State::Closing;
            self.sas[i].last_heard = now;
            return vec![Payload::notify(notify::AUTHENTICATION_FAILED, Vec::new())];
        }
        let sa = &mut self.sas[i];
        sa.state = State::Established;
        sa.established = now;
        sa.rekey_at = now + jitter(cfg.ike_lifetime);
        self.stats.ike_sa_established += 1;
        tracing::info!(peer = %remote, "IKE SA established (responder)");
        if find_notify(p, notify::INITIAL_CONTACT).is_some() {
            // The peer started afresh: the SAs we still hold with it are dead; forget them without a word.
            let (spi_i, spi_r) = (self.sas[i].spi_i, self.sas[i].spi_r);
            let stale: Vec<usize> = (0..self.sas.len())
                .filter(|&k| self.sas[k].remote == remote && (self.sas[k].spi_i, self.sas[k].spi_r) != (spi_i, spi_r))
                .collect();
            for k in stale.into_iter().rev() {
                let old = self.sas.remove(k);
                self.drop_children(&old);
            }
            let Some(n) = self.sas.iter().position(|s| (s.spi_i, s.spi_r) == (spi_i, spi_r)) else {
                return Vec::new();
            };
            return self.auth_reply(n, now, p, &cfg);
        }
        self.auth_reply(i, now, p, &cfg)
    }

    /// The responder's IKE_AUTH answer: IDr, AUTH and the first child SA.
    fn auth_reply(&mut self, i: usize, now: Nanos, p: &[Payload], cfg: &PeerConfig) -> Vec<Payload> {
        let (t, d) = id_payload(cfg.local);
        let mut out = vec![
            Payload::IdR { kind: t, data: d },
            Payload::Auth { method: msg::AUTH_SHARED_KEY, data: self.sas[i].auth(&cfg.psk, false) },
        ];
        let (ni, nr) = (self.sas[i].ni.clone(), self.sas[i].nr.clone());
        out.extend(self.accept_child(i, now, p, cfg, &ni, &nr, None, true));
        out
    }

    /// Responder: picks an ESP proposal and traffic selectors from a request, installs the child SA and
    /// returns the response payloads for it (or an error notification).
    #[allow(clippy::too_many_arguments)]
    fn accept_child(
        &mut self,
        i: usize,
        now: Nanos,
        p: &[Payload],
        cfg: &PeerConfig,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
        send_now: bool,
    ) -> Vec<Payload> {
        let (sa_local, sa_remote) = (self.sas[i].local, self.sas[i].remote);
        // Behind a NAT the peer names its own (private) address in its selectors and ID.
        let mut peer_addrs = vec![sa_remote];
        peer_addrs.extend(self.sas[i].peer_id.as_ref().and_then(|(_, d)| id_addr(d)));
        let Some(Payload::Sa(props)) = p.iter().find(|x| x.kind() == kind::SA) else {
            return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
        };
        let ke_group = p.iter().find_map(|x| if let Payload::Ke { group, .. } = x { Some(*group) } else { None });
        let Some((choice, prop)) = choose(props, PROTO_ESP, ke_group) else {
            self.stats.no_proposal += 1;
            tracing::warn!(peer = %sa_remote, "child SA: no acceptable ESP proposal (weft offers AES-GCM-16 128/256)");
            return vec![Payload::notify(notify::NO_PROPOSAL_CHOSEN, Vec::new())];
        };
        if choice.group.is_some() && choice.group != ke_group {
            return vec![Payload::notify(notify::INVALID_KE_PAYLOAD, choice.group.unwrap_or(0).to_be_bytes().to_vec())];
        }
        let Ok(spi_bytes) = <[u8; 4]>::try_from(&prop.spi[..]) else {
            return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
        };
        let spi_out = u32::from_be_bytes(spi_bytes);
        let tsi = p.iter().find_map(|x| if let Payload::TsI(t) = x { Some(t) } else { None });
        let tsr = p.iter().find_map(|x| if let Payload::TsR(t) = x { Some(t) } else { None });
        let (Some(tsi), Some(tsr)) = (tsi, tsr) else {
            return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
        };
        let (Some(ts_remote), Some(ts_local)) =
            (narrow(tsi, &peer_addrs, cfg.proto), narrow(tsr, &[sa_local], cfg.proto))
        else {
            tracing::warn!(peer = %sa_remote, "child SA: the peer's traffic selectors do not cover the tunnel endpoints");
            return vec![Payload::notify(notify::TS_UNACCEPTABLE, Vec::new())];
        };
        let transport = find_notify(p, notify::USE_TRANSPORT_MODE).is_some();
        let spi_in = self.new_spi();
        let (key_in, key_out) = self.sas[i].child_keys(ni, nr, shared, choice.enc_bits, false);
        let sa = &self.sas[i];
        let keys = ChildKeys {
            local: sa.local,
            remote: sa.remote,
            spi_in,
            spi_out,
            key_in,
            key_out,
            mode: if transport { Mode::Transport } else { Mode::Tunnel },
            udp: sa.nat,
            peer_port: if sa.nat { sa.peer.port() } else { 0 },
            peer_inner: ts_remote[0].start,
            send: send_now,
        };
        let had_esn = prop.of(transform::ESN).next().is_some();
        let mut out = Vec::new();
        out.push(Payload::Sa(vec![chosen_proposal(choice, PROTO_ESP, spi_in.to_be_bytes().to_vec(), had_esn)]));
        out.push(Payload::TsI(ts_remote.clone()));
        out.push(Payload::TsR(ts_local.clone()));
        if transport {
            out.push(Payload::notify(notify::USE_TRANSPORT_MODE, Vec::new()));
        }
        self.add_child(i, now, keys, choice.enc_bits, ts_local, ts_remote, cfg);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn add_child(
        &mut self,
        i: usize,
        now: Nanos,
        keys: ChildKeys,
        enc_bits: u16,
        ts_local: Vec<Ts>,
        ts_remote: Vec<Ts>,
        cfg: &PeerConfig,
    ) {
        self.stats.child_sa_established += 1;
        tracing::info!(
            peer = %keys.remote,
            spi_in = format_args!("{:08x}", keys.spi_in),
            spi_out = format_args!("{:08x}", keys.spi_out),
            "child SA established ({} mode, {})",
            if keys.mode == Mode::Transport { "transport" } else { "tunnel" },
            if keys.udp { "ESP in UDP" } else { "ESP" }
        );
        self.out.push_back(Output::Install(keys.clone()));
        self.sas[i].children.push(Child {
            keys,
            created: now,
            rekey_at: now + jitter(cfg.child_lifetime),
            replaced: false,
            enc_bits,
            ts_local,
            ts_remote,
        });
    }

    fn create_child_request(&mut self, i: usize, now: Nanos, p: &[Payload]) -> Vec<Payload> {
        let remote = self.sas[i].remote;
        let Some(cfg) = self.peers.get(&remote).cloned() else {
            return vec![Payload::notify(notify::NO_PROPOSAL_CHOSEN, Vec::new())];
        };
        let Some(Payload::Sa(props)) = p.iter().find(|x| x.kind() == kind::SA) else {
            return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
        };
        let Some(ni) = p.iter().find_map(|x| if let Payload::Nonce(n) = x { Some(n.clone()) } else { None }) else {
            return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
        };
        let ke =
            p.iter()
                .find_map(|x| if let Payload::Ke { group, data } = x { Some((*group, data.clone())) } else { None });
        let nr = nonce();
        if props.iter().any(|x| x.proto == PROTO_IKE) {
            // Rekeying the IKE SA.
            let Some((choice, prop)) = choose(props, PROTO_IKE, ke.as_ref().map(|k| k.0)) else {
                return vec![Payload::notify(notify::NO_PROPOSAL_CHOSEN, Vec::new())];
            };
            let (Some(group), Some((kg, kd))) = (choice.group, ke) else {
                return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
            };
            if group != kg {
                return vec![Payload::notify(notify::INVALID_KE_PAYLOAD, group.to_be_bytes().to_vec())];
            }
            let Ok(spi) = <[u8; 8]>::try_from(&prop.spi[..]) else {
                return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
            };
            let Some(dh) = Dh::new(group) else { return Vec::new() };
            let public = dh.public().to_vec();
            let Some(shared) = dh.agree(&kd) else {
                return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
            };
            let new_spi = rand_u64() | 1;
            let old = &self.sas[i];
            let mut sa = IkeSa::new(old.local, old.peer, false, now);
            sa.local_port = old.local_port;
            sa.nat = old.nat;
            sa.spi_i = u64::from_be_bytes(spi);
            sa.spi_r = new_spi;
            sa.ni = ni;
            sa.nr = nr.clone();
            sa.state = State::Established;
            sa.rekey_at = now + jitter(cfg.ike_lifetime);
            let Some(k) = &old.keys else { return Vec::new() };
            let (d, oprf) = (k.sk_d.clone(), k.prf);
            sa.derive(choice.prf.unwrap_or(oprf), choice.enc_bits, group, &shared, Some((&d, oprf)));
            sa.children = std::mem::take(&mut self.sas[i].children);
            self.sas[i].state = State::Closing;
            self.sas.push(sa);
            self.stats.rekeys += 1;
            tracing::info!(peer = %remote, "IKE SA rekeyed (responder)");
            return vec![
                Payload::Sa(vec![chosen_proposal(choice, PROTO_IKE, new_spi.to_be_bytes().to_vec(), false)]),
                Payload::Nonce(nr),
                Payload::Ke { group, data: public },
            ];
        }
        // A child SA, new or rekeying one.
        let rekey_of = p.iter().find_map(|x| match x {
            Payload::Notify { kind: notify::REKEY_SA, spi, .. } => {
                <[u8; 4]>::try_from(&spi[..]).ok().map(u32::from_be_bytes)
            }
            _ => None,
        });
        let mut shared = None;
        let mut ke_out = None;
        if let Some((g, d)) = &ke {
            let Some(dh) = Dh::new(*g) else {
                let pref = cfg.groups.first().copied().unwrap_or(id::DH_X25519);
                return vec![Payload::notify(notify::INVALID_KE_PAYLOAD, pref.to_be_bytes().to_vec())];
            };
            ke_out = Some(Payload::Ke { group: *g, data: dh.public().to_vec() });
            #[cfg(test)]
            if self.test_answer_without_ke {
                ke_out = None;
            }
            shared = dh.agree(d);
            if shared.is_none() {
                return vec![Payload::notify(notify::INVALID_SYNTAX, Vec::new())];
            }
        }
        // The rekeyed child keeps sending until the peer deletes the old SA: the peer has the new inbound
        // SA only once it reads our response.
        let mut out = self.accept_child(i, now, p, &cfg, &ni, &nr, shared.as_deref(), rekey_of.is_none());
        if let Some(old_out) = rekey_of {
            if let Some(c) = self.sas[i].children.iter_mut().find(|c| c.keys.spi_out == old_out) {
                c.replaced = true;
            }
            self.stats.rekeys += 1;
        }
        let at = out.iter().position(|x| x.kind() == kind::SA).map_or(0, |k| k + 1);
        out.insert(at, Payload::Nonce(nr));
        if let Some(k) = ke_out {
            out.insert(at + 1, k);
        }
        out
    }

    fn informational_request(&mut self, i: usize, _now: Nanos, p: &[Payload]) -> Vec<Payload> {
        let mut out = Vec::new();
        for x in p {
            match x {
                Payload::Delete { proto: PROTO_IKE, .. } => {
                    self.sas[i].state = State::Closing;
                    tracing::info!(peer = %self.sas[i].remote, "the peer deleted the IKE SA");
                }
                Payload::Delete { proto: PROTO_ESP, spis } => {
                    let mut ours = Vec::new();
                    for s in spis {
                        let Ok(b) = <[u8; 4]>::try_from(&s[..]) else { continue };
                        let out_spi = u32::from_be_bytes(b);
                        let sa = &mut self.sas[i];
                        if let Some(k) = sa.children.iter().position(|c| c.keys.spi_out == out_spi) {
                            let c = sa.children.remove(k);
                            ours.push(c.keys.spi_in.to_be_bytes().to_vec());
                            self.spis.remove(&c.keys.spi_in);
                            self.out.push_back(Output::Remove {
                                remote: c.keys.remote,
                                spi_in: c.keys.spi_in,
                                spi_out: c.keys.spi_out,
                            });
                            // The replacement may send now.
                            if let Some(n) = self.sas[i].children.iter_mut().rev().find(|c| !c.keys.send) {
                                n.keys.send = true;
                                self.out.push_back(Output::Activate { remote: n.keys.remote, spi_out: n.keys.spi_out });
                            }
                        }
                    }
                    if !ours.is_empty() {
                        out.push(Payload::Delete { proto: PROTO_ESP, spis: ours });
                    }
                }
                _ => {}
            }
        }
        out
    }

    fn response(&mut self, i: usize, now: Nanos, from: SocketAddr, data: &[u8], m: &msg::Message) {
        let h = m.header;
        let Some(pending) = &self.sas[i].pending else { return };
        if pending.msg_id != h.msg_id {
            return;
        }
        let req = pending.req.clone();
        if let Req::Init = req {
            return self.init_response(i, now, from, data, m);
        }
        let payloads = match self.sas[i].open(data, m) {
            Ok(p) => p,
            Err(why) => {
                self.stats.decrypt_failed += 1;
                tracing::debug!(peer = %from, "IKE response dropped: {why}");
                return;
            }
        };
        let sa = &mut self.sas[i];
        sa.pending = None;
        sa.last_heard = now;
        match req {
            Req::Init => {}
            Req::Auth => self.auth_response(i, now, &payloads),
            Req::RekeyChild { old_in } => self.child_response(i, now, &payloads, Some(old_in)),
            Req::RekeyIke => self.ike_rekey_response(i, now, &payloads),
            Req::DeleteChild { spi_in } => {
                let sa = &mut self.sas[i];
                if let Some(k) = sa.children.iter().position(|c| c.keys.spi_in == spi_in) {
                    let c = sa.children.remove(k);
                    self.spis.remove(&c.keys.spi_in);
                    self.out.push_back(Output::Remove { remote: c.keys.remote, spi_in, spi_out: c.keys.spi_out });
                }
            }
            Req::DeleteIke => {
                let sa = self.sas.remove(i);
                self.drop_children_unless_moved(&sa);
                return;
            }
            Req::Dpd => {}
        }
        self.next_request(i, now);
    }

    fn next_request(&mut self, i: usize, now: Nanos) {
        if i < self.sas.len() && self.sas[i].pending.is_none() {
            if let Some(r) = self.sas[i].queue.pop_front() {
                self.send_request(i, r, now);
            }
        }
    }

    fn fail(&mut self, i: usize, now: Nanos, why: String) {
        let sa = self.sas.remove(i);
        tracing::warn!(peer = %sa.remote, "IKE SA with {} failed: {why}", sa.remote);
        self.drop_children(&sa);
        if sa.initiator {
            self.next_try.insert(sa.remote, now + RESTART_AFTER);
        }
    }

    fn init_response(&mut self, i: usize, now: Nanos, from: SocketAddr, data: &[u8], m: &msg::Message) {
        let p = &m.payloads;
        if let Some(c) = notify_data(p, notify::COOKIE) {
            self.sas[i].cookie = Some(c.to_vec());
            let g = self.sas[i].dh.as_ref().map_or(id::DH_X25519, |d| d.group());
            return self.send_init(i, g, now);
        }
        if let Some(g) = notify_data(p, notify::INVALID_KE_PAYLOAD) {
            let group = if g.len() == 2 { u16::from_be_bytes([g[0], g[1]]) } else { 0 };
            let ours = self.peers.get(&self.sas[i].remote).map(|c| c.groups.contains(&group)).unwrap_or(false);
            if !ours || self.sas[i].dh.as_ref().map(|d| d.group()) == Some(group) {
                return self.fail(i, now, format!("the peer wants DH group {group}, which is not offered"));
            }
            tracing::info!(peer = %from, "the peer prefers DH group {}; trying again with it", crypto::group_name(group));
            return self.send_init(i, group, now);
        }
        if let Some(e) = error_notify(p) {
            self.stats.no_proposal += u64::from(e == notify::NO_PROPOSAL_CHOSEN);
            return self.fail(i, now, format!("IKE_SA_INIT refused: {}", notify_name(e)));
        }
        let Some(cfg) = self.peers.get(&self.sas[i].remote).cloned() else { return };
        let Some(Payload::Sa(props)) = p.iter().find(|x| x.kind() == kind::SA) else {
            self.stats.malformed += 1;
            return;
        };
        let nr = p.iter().find_map(|x| if let Payload::Nonce(n) = x { Some(n.clone()) } else { None });
        let ke =
            p.iter()
                .find_map(|x| if let Payload::Ke { group, data } = x { Some((*group, data.clone())) } else { None });
        let (Some(nr), Some((kg, kd))) = (nr, ke) else {
            self.stats.malformed += 1;
            return;
        };
        let Some((choice, _)) = choose(props, PROTO_IKE, Some(kg)) else {
            return self.fail(i, now, "the peer chose a proposal we did not offer".into());
        };
        let sa = &mut self.sas[i];
        let Some(dh) = sa.dh.take() else { return };
        if dh.group() != kg || choice.group != Some(kg) {
            return self.fail(i, now, "the peer answered with another DH group".into());
        }
        let Some(shared) = dh.agree(&kd) else {
            return self.fail(i, now, "the peer's DH value is invalid".into());
        };
        let sa = &mut self.sas[i];
        sa.spi_r = m.header.spi_r;
        sa.nr = nr;
        sa.init_resp = data.to_vec();
        sa.last_heard = now;
        let local = SocketAddr::new(sa.local, IKE_PORT);
        let src_ok = p.iter().any(|x| matches!(x, Payload::Notify { kind: notify::NAT_DETECTION_SOURCE_IP, data, .. } if *data == nat_hash(sa.spi_i, sa.spi_r, from)));
        let dst_ok = p.iter().any(|x| matches!(x, Payload::Notify { kind: notify::NAT_DETECTION_DESTINATION_IP, data, .. } if *data == nat_hash(sa.spi_i, sa.spi_r, local)));
        let has_nat_d = find_notify(p, notify::NAT_DETECTION_SOURCE_IP).is_some();
        sa.nat = cfg.encap == Encap::Udp || (has_nat_d && !(src_ok && dst_ok));
        if sa.nat {
            // From IKE_AUTH on, IKE moves to port 4500 with the non-ESP marker (RFC 7296 §2.23).
            sa.local_port = NAT_T_PORT;
            sa.peer = SocketAddr::new(sa.peer.ip(), NAT_T_PORT);
        }
        sa.derive(choice.prf.unwrap_or(Prf::Sha256), choice.enc_bits, kg, &shared, None);
        sa.pending = None;
        sa.state = State::AuthSent;
        self.send_request(i, Req::Auth, now);
    }

    fn auth_response(&mut self, i: usize, now: Nanos, p: &[Payload]) {
        let remote = self.sas[i].remote;
        let Some(cfg) = self.peers.get(&remote).cloned() else { return };
        if let Some(e) = error_notify(p) {
            if e == notify::AUTHENTICATION_FAILED {
                self.stats.auth_failed += 1;
                return self.fail(
                    i,
                    now,
                    "the peer rejected our authentication: the pre-shared keys (options:psk) differ".into(),
                );
            }
            return self.fail(i, now, format!("IKE_AUTH refused: {}", notify_name(e)));
        }
        let auth =
            p.iter().find_map(|x| if let Payload::Auth { method, data } = x { Some((*method, data)) } else { None });
        self.sas[i].peer_id =
            p.iter().find_map(|x| if let Payload::IdR { kind, data } = x { Some((*kind, data.clone())) } else { None });
        let want = self.sas[i].auth(&cfg.psk, false);
        if !matches!(auth, Some((msg::AUTH_SHARED_KEY, d)) if ct_eq(d, &want)) {
            self.stats.auth_failed += 1;
            return self.fail(
                i,
                now,
                "the peer's AUTH does not verify: the pre-shared keys (options:psk) differ".into(),
            );
        }
        if let Some(why) = self.sas[i].identity_problem() {
            self.stats.auth_failed += 1;
            return self.fail(i, now, format!("the peer's identity is refused: {why}"));
        }
        let sa = &mut self.sas[i];
        sa.state = State::Established;
        sa.established = now;
        sa.rekey_at = now + jitter(cfg.ike_lifetime);
        self.stats.ike_sa_established += 1;
        tracing::info!(peer = %remote, "IKE SA established (initiator)");
        let (ni, nr) = (self.sas[i].ni.clone(), self.sas[i].nr.clone());
        self.finish_child(i, now, p, &cfg, &ni, &nr, None, None);
    }

    /// Initiator: a child SA response; installs the child.
    #[allow(clippy::too_many_arguments)]
    fn finish_child(
        &mut self,
        i: usize,
        now: Nanos,
        p: &[Payload],
        cfg: &PeerConfig,
        ni: &[u8],
        nr: &[u8],
        shared: Option<&[u8]>,
        old_in: Option<u32>,
    ) {
        let Some(plan) = self.sas[i].plan.take() else { return };
        if let Some(e) = error_notify(p) {
            self.spis.remove(&plan.spi_in);
            tracing::warn!(peer = %self.sas[i].remote, "child SA refused: {}", notify_name(e));
            if old_in.is_none() && self.sas[i].children.is_empty() {
                return self.fail(i, now, format!("no child SA: {}", notify_name(e)));
            }
            return;
        }
        let prop = p.iter().find_map(|x| if let Payload::Sa(v) = x { v.first() } else { None });
        let Some((choice, prop)) = prop.and_then(|x| choose(std::slice::from_ref(x), PROTO_ESP, None)) else {
            self.spis.remove(&plan.spi_in);
            return self.fail(i, now, "the peer answered with an ESP proposal we did not offer".into());
        };
        let Ok(b) = <[u8; 4]>::try_from(&prop.spi[..]) else { return };
        let spi_out = u32::from_be_bytes(b);
        let tsi =
            p.iter().find_map(|x| if let Payload::TsI(t) = x { Some(t.clone()) } else { None }).unwrap_or_default();
        let tsr =
            p.iter().find_map(|x| if let Payload::TsR(t) = x { Some(t.clone()) } else { None }).unwrap_or_default();
        let (key_in, key_out) = self.sas[i].child_keys(ni, nr, shared, choice.enc_bits, true);
        let transport = find_notify(p, notify::USE_TRANSPORT_MODE).is_some();
        if cfg.mode == Mode::Transport && !transport {
            tracing::info!(peer = %cfg.remote, "the peer refused transport mode; using tunnel mode");
        }
        let sa = &self.sas[i];
        let keys = ChildKeys {
            local: sa.local,
            remote: sa.remote,
            spi_in: plan.spi_in,
            spi_out,
            key_in,
            key_out,
            mode: if transport { Mode::Transport } else { Mode::Tunnel },
            udp: sa.nat,
            peer_port: if sa.nat { sa.peer.port() } else { 0 },
            peer_inner: tsr.first().map_or(sa.remote, |t| t.start),
            send: true,
        };
        self.add_child(i, now, keys, choice.enc_bits, tsi, tsr, cfg);
        if let Some(old) = old_in {
            self.stats.rekeys += 1;
            if let Some(c) = self.sas[i].children.iter_mut().find(|c| c.keys.spi_in == old) {
                c.replaced = true;
            }
            self.request(i, Req::DeleteChild { spi_in: old }, now);
        }
    }

    fn child_response(&mut self, i: usize, now: Nanos, p: &[Payload], old_in: Option<u32>) {
        let Some(cfg) = self.peers.get(&self.sas[i].remote).cloned() else { return };
        let Some(nr) = p.iter().find_map(|x| if let Payload::Nonce(n) = x { Some(n.clone()) } else { None }) else {
            if let Some(e) = error_notify(p) {
                if let Some(plan) = self.sas[i].plan.take() {
                    self.spis.remove(&plan.spi_in);
                }
                tracing::warn!(peer = %cfg.remote, "child SA rekey refused: {}", notify_name(e));
                // Try again later; the old SA keeps working until its hard end.
                if let Some(c) = self.sas[i].children.iter_mut().find(|c| Some(c.keys.spi_in) == old_in) {
                    c.rekey_at = now + 30 * SECOND;
                }
            }
            return;
        };
        let ni = self.sas[i].plan.as_ref().map(|x| x.nonce.clone()).unwrap_or_default();
        let mut shared = None;
        if let Some(dh) = self.sas[i].plan.as_mut().and_then(|x| x.dh.take()) {
            // We offered only proposals with our group and sent a KE (PFS): the answer must carry a KE of that
            // group that agrees. Anything else would be keys without PFS that we never offered.
            let ke =
                p.iter().find_map(|x| if let Payload::Ke { group, data } = x { Some((*group, data)) } else { None });
            shared = ke.filter(|(g, _)| *g == dh.group()).and_then(|(_, kd)| dh.agree(kd));
            if shared.is_none() {
                let plan = self.sas[i].plan.take();
                if let Some(plan) = &plan {
                    self.spis.remove(&plan.spi_in);
                }
                self.stats.malformed += 1;
                tracing::warn!(peer = %cfg.remote, "child SA rekey refused: the answer has no usable KE payload for the PFS we asked for; the old SA stays and the rekey is tried again");
                if let Some(c) = self.sas[i].children.iter_mut().find(|c| Some(c.keys.spi_in) == old_in) {
                    c.rekey_at = now + 30 * SECOND;
                }
                // The peer installed its half: tell it to delete that (by the SPI it would send to).
                if let Some(plan) = plan {
                    self.request(i, Req::DeleteChild { spi_in: plan.spi_in }, now);
                }
                return;
            }
        }
        self.finish_child(i, now, p, &cfg, &ni, &nr, shared.as_deref(), old_in);
    }

    fn ike_rekey_response(&mut self, i: usize, now: Nanos, p: &[Payload]) {
        let Some(plan) = self.sas[i].plan.take() else { return };
        let remote = self.sas[i].remote;
        let Some(cfg) = self.peers.get(&remote).cloned() else { return };
        let prop = p.iter().find_map(|x| if let Payload::Sa(v) = x { v.first().cloned() } else { None });
        let nr = p.iter().find_map(|x| if let Payload::Nonce(n) = x { Some(n.clone()) } else { None });
        let ke = p.iter().find_map(|x| if let Payload::Ke { data, .. } = x { Some(data.clone()) } else { None });
        let (Some(prop), Some(nr), Some(kd), Some(dh)) = (prop, nr, ke, plan.dh) else {
            tracing::warn!(peer = %remote, "IKE rekey refused; trying again later");
            self.sas[i].rekey_at = now + 30 * SECOND;
            return;
        };
        let Some((choice, _)) = choose(std::slice::from_ref(&prop), PROTO_IKE, Some(dh.group())) else { return };
        let Ok(spi) = <[u8; 8]>::try_from(&prop.spi[..]) else { return };
        let group = dh.group();
        let Some(shared) = dh.agree(&kd) else { return };
        let old = &self.sas[i];
        let mut sa = IkeSa::new(old.local, old.peer, true, now);
        sa.local_port = old.local_port;
        sa.nat = old.nat;
        sa.spi_i = plan.ike_spi;
        sa.spi_r = u64::from_be_bytes(spi);
        sa.ni = plan.nonce;
        sa.nr = nr;
        sa.state = State::Established;
        sa.rekey_at = now + jitter(cfg.ike_lifetime);
        let Some(k) = &old.keys else { return };
        let (d, oprf) = (k.sk_d.clone(), k.prf);
        sa.derive(choice.prf.unwrap_or(oprf), choice.enc_bits, group, &shared, Some((&d, oprf)));
        sa.children = std::mem::take(&mut self.sas[i].children);
        self.sas[i].state = State::Closing;
        self.sas.push(sa);
        self.stats.rekeys += 1;
        tracing::info!(peer = %remote, "IKE SA rekeyed (initiator)");
        self.request(i, Req::DeleteIke, now);
    }

    /// Timers: retransmissions, rekeying, liveness checks, starting configured peers.
    pub fn tick(&mut self, now: Nanos) {
        // Retransmit or give up.
        let mut i = 0;
        while i < self.sas.len() {
            let sa = &mut self.sas[i];
            if sa.state == State::HalfOpen && now.saturating_sub(sa.created) > HALF_OPEN_TTL {
                self.sas.remove(i);
                continue;
            }
            if sa.state == State::Closing && sa.pending.is_none() && now.saturating_sub(sa.last_heard) > CLOSING_TTL {
                let sa = self.sas.remove(i);
                self.drop_children_unless_moved(&sa);
                continue;
            }
            if let Some(p) = &mut sa.pending {
                if now.saturating_sub(p.sent) >= RETRY_FIRST << p.tries {
                    if p.tries >= RETRIES {
                        self.stats.timeouts += 1;
                        let what = format!("no answer after {} retransmissions", RETRIES);
                        self.fail(i, now, what);
                        continue;
                    }
                    p.tries += 1;
                    p.sent = now;
                    self.stats.retransmits += 1;
                    let (port, to, data) = (p.from_port, sa.peer, p.data.clone());
                    self.send(port, to, data);
                }
            }
            i += 1;
        }
        // Rekeys, liveness.
        for i in 0..self.sas.len() {
            if self.sas[i].state != State::Established {
                continue;
            }
            if !self.peers.contains_key(&self.sas[i].remote) {
                continue;
            }
            let queued = |sa: &IkeSa, f: &dyn Fn(&Req) -> bool| {
                sa.queue.iter().any(f) || sa.pending.as_ref().is_some_and(|p| f(&p.req))
            };
            let sa = &mut self.sas[i];
            if now >= sa.rekey_at && !queued(sa, &|r| matches!(r, Req::RekeyIke)) {
                sa.rekey_at = u64::MAX;
                self.request(i, Req::RekeyIke, now);
                continue;
            }
            let due: Vec<u32> = self.sas[i]
                .children
                .iter()
                .filter(|c| !c.replaced && now >= c.rekey_at)
                .map(|c| c.keys.spi_in)
                .collect();
            for spi in due {
                if let Some(c) = self.sas[i].children.iter_mut().find(|c| c.keys.spi_in == spi) {
                    c.rekey_at = u64::MAX;
                }
                self.request(i, Req::RekeyChild { old_in: spi }, now);
            }
            let sa = &self.sas[i];
            if sa.pending.is_none() && now.saturating_sub(sa.last_heard) > DPD_AFTER {
                self.sas[i].last_heard = now;
                self.request(i, Req::Dpd, now);
            }
        }
        // Peers without an SA.
        let idle: Vec<IpAddr> = self
            .next_try
            .iter()
            .filter(|(r, t)| now >= **t && !self.sas.iter().any(|s| s.remote == **r && s.state != State::Closing))
            .map(|(r, _)| *r)
            .collect();
        for r in idle {
            self.next_try.insert(r, now + RESTART_AFTER);
            let wait = self.peers.get(&r).map(|c| c.initiate == Initiate::Never).unwrap_or(true);
            if !wait {
                self.initiate(r, now);
            }
        }
    }

    /// Asks for a rekey of the child SAs with `remote` now (`weft ipsec rekey`), or of the IKE SA.
    pub fn rekey(&mut self, remote: IpAddr, ike: bool, now: Nanos) -> bool {
        let mut any = false;
        for i in 0..self.sas.len() {
            if self.sas[i].remote != remote || self.sas[i].state != State::Established {
                continue;
            }
            any = true;
            if ike {
                self.sas[i].rekey_at = now;
            } else {
                for c in self.sas[i].children.iter_mut().filter(|c| !c.replaced) {
                    c.rekey_at = now;
                }
            }
        }
        self.tick(now);
        any
    }

    /// Rekeys children whose outbound SA carried `packets` and `bytes` (the datapath's counts) past the byte
    /// limit or past [`SEQ_SOFT_LIMIT`] packets.
    pub fn sent(&mut self, spi_out: u32, packets: u64, bytes: u64, now: Nanos) {
        for sa in &mut self.sas {
            let limit = self.peers.get(&sa.remote).map_or(0, |c| c.rekey_bytes);
            if (limit == 0 || bytes < limit) && packets < SEQ_SOFT_LIMIT {
                continue;
            }
            for c in sa.children.iter_mut().filter(|c| c.keys.spi_out == spi_out && !c.replaced) {
                if c.rekey_at != u64::MAX {
                    c.rekey_at = now;
                }
            }
        }
    }

    /// Whether an established IKE SA with `remote` exists.
    pub fn established(&self, remote: IpAddr) -> bool {
        self.sas.iter().any(|s| s.remote == remote && s.state == State::Established)
    }

    pub fn show(&self, now: Nanos) -> Vec<IkeInfo> {
        let secs = |t: Nanos| t / SECOND;
        self.sas
            .iter()
            .filter(|s| s.keys.is_some() && s.state != State::HalfOpen)
            .map(|s| {
                let k = s.keys.as_ref();
                IkeInfo {
                    local: s.local,
                    remote: s.peer,
                    spi_i: s.spi_i,
                    spi_r: s.spi_r,
                    initiator: s.initiator,
                    state: match s.state {
                        State::Established => "ESTABLISHED",
                        State::Closing => "DELETING",
                        _ => "CONNECTING",
                    },
                    encryption: k.map_or(String::new(), |k| format!("AES_GCM_16-{}", k.enc_bits)),
                    prf: k.map_or("", |k| k.prf.name()),
                    group: k.map_or("", |k| crypto::group_name(k.group)),
                    age_secs: secs(now.saturating_sub(s.established)),
                    rekey_in_secs: if s.rekey_at == u64::MAX { 0 } else { secs(s.rekey_at.saturating_sub(now)) },
                    udp_encap: s.nat,
                    sk_ei: k.map_or(String::new(), |k| hex(k.ei.material())),
                    sk_er: k.map_or(String::new(), |k| hex(k.er.material())),
                    children: s
                        .children
                        .iter()
                        .map(|c| ChildInfo {
                            spi_in: c.keys.spi_in,
                            spi_out: c.keys.spi_out,
                            mode: c.keys.mode,
                            encryption: format!("AES_GCM_16-{}", c.enc_bits),
                            age_secs: secs(now.saturating_sub(c.created)),
                            rekey_in_secs: if c.rekey_at == u64::MAX {
                                0
                            } else {
                                secs(c.rekey_at.saturating_sub(now))
                            },
                            sending: c.keys.send,
                            key_in: hex(&c.keys.key_in),
                            key_out: hex(&c.keys.key_out),
                            ts_local: c.ts_local.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                            ts_remote: c.ts_remote.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

/// Equality that takes as long for every mismatch (AUTH values are secrets' MACs).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The two NAT detection notifications. `force`: send a source hash that cannot match, so that both ends
/// see a NAT and encapsulate ESP in UDP (what strongSwan does with `encap = yes`).
fn nat_payloads(spi_i: u64, spi_r: u64, local: SocketAddr, remote: SocketAddr, force: bool) -> Vec<Payload> {
    let src = if force {
        let mut r = vec![0u8; 20];
        crypto::random(&mut r);
        r
    } else {
        nat_hash(spi_i, spi_r, local)
    };
    vec![
        Payload::notify(notify::NAT_DETECTION_SOURCE_IP, src),
        Payload::notify(notify::NAT_DETECTION_DESTINATION_IP, nat_hash(spi_i, spi_r, remote)),
    ]
}

/// A lifetime less up to 10% (so both ends do not rekey at the same moment).
fn jitter(t: Nanos) -> Nanos {
    let mut b = [0u8; 2];
    crypto::random(&mut b);
    t - (t / 10) * u64::from(u16::from_be_bytes(b)) / 65536
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "192.0.2.1";
    const B: &str = "192.0.2.2";

    /// Two engines joined by a perfect (or lossy) network, driven step by step.
    struct Net {
        e: [Engine; 2],
        addr: [IpAddr; 2],
        installed: [Vec<ChildKeys>; 2],
        removed: [Vec<u32>; 2],
        activated: [Vec<u32>; 2],
        /// Drop this many of the next messages each side sends.
        drop: [usize; 2],
        sent: [usize; 2],
        now: Nanos,
        /// Side 0 sits behind a NAT with this public address: its ports are moved up by 10 000.
        nat: Option<IpAddr>,
    }

    impl Net {
        fn new(a: PeerConfig, b: PeerConfig) -> Net {
            let mut n = Net {
                e: [Engine::new(), Engine::new()],
                addr: [a.local, b.local],
                installed: Default::default(),
                removed: Default::default(),
                activated: Default::default(),
                drop: [0, 0],
                sent: [0, 0],
                now: 0,
                nat: None,
            };
            n.e[0].set_peers(vec![a], 0);
            n.e[1].set_peers(vec![b], 0);
            n
        }

        fn pair(psk_b: &[u8]) -> Net {
            let (a, b) = (A.parse().unwrap(), B.parse().unwrap());
            Net::new(PeerConfig::new(a, b, b"swordfish"), PeerConfig::new(b, a, psk_b))
        }

        /// Delivers everything queued until both engines are quiet.
        fn run(&mut self) {
            for _ in 0..100 {
                let mut moved = false;
                for side in 0..2 {
                    while let Some(o) = self.e[side].poll() {
                        moved = true;
                        match o {
                            Output::Send { from_port, to, data } => {
                                self.sent[side] += 1;
                                if self.drop[side] > 0 {
                                    self.drop[side] -= 1;
                                    continue;
                                }
                                let (from, to_port) = match (self.nat, side) {
                                    (Some(public), 0) => (SocketAddr::new(public, from_port + 10_000), to.port()),
                                    (Some(public), _) => {
                                        assert_eq!(to.ip(), public);
                                        (SocketAddr::new(self.addr[side], from_port), to.port() - 10_000)
                                    }
                                    (None, _) => (SocketAddr::new(self.addr[side], from_port), to.port()),
                                };
                                if self.nat.is_none() || side == 0 {
                                    assert_eq!(to.ip(), self.addr[1 - side]);
                                }
                                self.e[1 - side].input(self.now, to_port, from, &data);
                            }
                            Output::Install(k) => self.installed[side].push(k),
                            Output::Remove { spi_in, .. } => self.removed[side].push(spi_in),
                            Output::Activate { spi_out, .. } => self.activated[side].push(spi_out),
                        }
                    }
                }
                if !moved {
                    return;
                }
            }
            panic!("the engines kept talking");
        }

        fn advance(&mut self, by: Nanos) {
            self.now += by;
            for side in 0..2 {
                self.e[side].tick(self.now);
            }
            self.run();
        }

        /// Children alive on a side: installed and not removed.
        fn live(&self, side: usize) -> Vec<&ChildKeys> {
            self.installed[side].iter().filter(|k| !self.removed[side].contains(&k.spi_in)).collect()
        }

        fn assert_matched(&self) {
            let (a, b) = (self.live(0), self.live(1));
            assert!(!a.is_empty());
            assert_eq!(a.len(), b.len());
            for ka in a {
                let kb = b.iter().find(|k| k.spi_in == ka.spi_out).expect("the peer has the matching SA");
                assert_eq!(kb.spi_out, ka.spi_in);
                assert_eq!(ka.key_out, kb.key_in);
                assert_eq!(ka.key_in, kb.key_out);
                assert_eq!(ka.mode, kb.mode);
                assert_eq!(ka.udp, kb.udp);
            }
        }
    }

    #[test]
    fn lower_address_initiates_and_both_install_matching_child_sas() {
        let mut n = Net::pair(b"swordfish");
        n.advance(0);
        assert!(n.e[0].established(B.parse().unwrap()));
        assert!(n.e[1].established(A.parse().unwrap()));
        n.assert_matched();
        assert!(n.installed[0][0].send && n.installed[1][0].send, "both ends send on the first child SA");
        let k = n.installed[0][0].clone();
        assert_eq!((k.mode, k.udp, k.peer_port), (Mode::Transport, true, NAT_T_PORT));
        assert_eq!(k.key_in.len(), 36, "AES-256-GCM key and salt");
        assert_eq!(n.e[0].stats.ike_sa_established, 1);
        // B never started an SA of its own.
        n.advance(10 * SECOND);
        assert_eq!(n.e[1].stats.ike_sa_established, 1);
        assert_eq!(n.installed[1].len(), 1);
        let show = n.e[0].show(n.now);
        assert_eq!(show.len(), 1);
        assert_eq!(show[0].state, "ESTABLISHED");
        assert_eq!(show[0].group, "CURVE_25519");
        assert_eq!(show[0].children[0].key_out, hex(&k.key_out));
    }

    #[test]
    fn groups_and_modes_negotiate() {
        for (group, mode, encap) in
            [(id::DH_MODP_2048, Mode::Tunnel, Encap::Udp), (id::DH_ECP_256, Mode::Transport, Encap::Esp)]
        {
            let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
            let mut ca = PeerConfig::new(a, b, b"k");
            ca.mode = mode;
            ca.encap = encap;
            let mut cb = PeerConfig::new(b, a, b"k");
            cb.groups = vec![group];
            cb.encap = encap;
            let mut n = Net::new(ca, cb);
            n.advance(0);
            n.assert_matched();
            assert_eq!(n.e[0].show(0)[0].group, crypto::group_name(group));
            let k = &n.installed[0][0];
            assert_eq!(k.mode, mode);
            assert_eq!(k.udp, encap == Encap::Udp, "raw ESP unless asked for UDP (no NAT here)");
        }
    }

    #[test]
    fn wrong_psk_fails_on_both_sides_and_installs_nothing() {
        let mut n = Net::pair(b"not-swordfish");
        n.advance(0);
        assert!(n.installed[0].is_empty() && n.installed[1].is_empty());
        assert_eq!(n.e[1].stats.auth_failed, 1);
        assert_eq!(n.e[0].stats.auth_failed, 1);
        assert!(!n.e[0].established(B.parse().unwrap()));
    }

    #[test]
    fn lost_messages_are_retransmitted_with_back_off() {
        let mut n = Net::pair(b"swordfish");
        n.drop = [1, 1];
        n.advance(0);
        assert!(n.installed[0].is_empty());
        n.advance(SECOND);
        // The retransmitted IKE_SA_INIT's answer was lost once more; the next try (2 s later) goes through.
        assert!(n.installed[0].is_empty());
        n.advance(2 * SECOND);
        n.assert_matched();
        assert!(n.e[0].stats.retransmits >= 2);
    }

    #[test]
    fn child_rekey_replaces_the_sa_without_a_gap() {
        let mut n = Net::pair(b"swordfish");
        n.advance(0);
        let first = n.installed[0][0].clone();
        assert!(n.e[0].rekey(B.parse().unwrap(), false, n.now));
        n.run();
        assert_eq!(n.installed[0].len(), 2);
        assert_eq!(n.removed[0], vec![first.spi_in]);
        assert_eq!(n.removed[1], vec![first.spi_out]);
        n.assert_matched();
        // The responder sent on the old SA until it was deleted, then switched.
        assert!(!n.installed[1][1].send);
        let second = n.installed[1][1].spi_out;
        assert_eq!(n.activated[1], vec![second]);
        assert!(n.installed[0][1].send);
        assert_ne!(n.installed[0][1].key_out, first.key_out, "fresh keys (PFS)");
        assert_eq!(n.e[0].stats.rekeys, 1);
    }

    #[test]
    fn ike_rekey_keeps_children_and_later_child_rekeys_work() {
        let mut n = Net::pair(b"swordfish");
        n.advance(0);
        let spis = (n.e[0].show(0)[0].spi_i, n.e[0].show(0)[0].spi_r);
        assert!(n.e[1].rekey(A.parse().unwrap(), true, n.now));
        n.run();
        let s0 = n.e[0].show(n.now);
        assert_eq!(s0.len(), 1, "the old IKE SA is deleted");
        assert_ne!((s0[0].spi_i, s0[0].spi_r), spis);
        assert!(!s0[0].initiator, "B initiated the rekey: it is the new SA's initiator");
        assert_eq!(s0[0].children.len(), 1);
        assert!(n.removed[0].is_empty() && n.removed[1].is_empty());
        assert!(n.e[0].rekey(B.parse().unwrap(), false, n.now));
        n.run();
        n.assert_matched();
        assert_eq!(n.live(0).len(), 1);
    }

    #[test]
    fn behind_a_nat_ids_and_ports_follow_the_peer() {
        // A (10.0.0.1, its own ID) behind a NAT that shows it as 198.51.100.7 with other ports; B knows A only
        // by the public address. Raw ESP asked for, but the NAT forces UDP encapsulation.
        let (a, b, public): (IpAddr, IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), B.parse().unwrap(), "198.51.100.7".parse().unwrap());
        let mut ca = PeerConfig::new(a, b, b"k");
        ca.encap = Encap::Esp;
        let mut cb = PeerConfig::new(b, public, b"k");
        cb.encap = Encap::Esp;
        cb.initiate = Initiate::Never;
        let mut n = Net::new(ca, cb);
        n.nat = Some(public);
        n.advance(0);
        n.assert_matched();
        let kb = &n.installed[1][0];
        assert!(kb.udp, "a NAT was found: ESP goes in UDP");
        assert_eq!(kb.peer_port, NAT_T_PORT + 10_000, "B sends ESP to the port the NAT shows");
        assert_eq!(kb.remote, public);
        assert!(n.installed[0][0].udp);
    }

    #[test]
    fn a_restarted_peer_replaces_its_old_sas_at_once() {
        let mut n = Net::pair(b"swordfish");
        n.advance(0);
        let old = n.installed[1][0].spi_in;
        // A loses everything (kill -9) and starts again: INITIAL_CONTACT makes B drop the old SAs at once.
        let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
        n.e[0] = Engine::new();
        n.e[0].set_peers(vec![PeerConfig::new(a, b, b"swordfish")], n.now);
        n.advance(SECOND);
        assert_eq!(n.e[1].show(n.now).len(), 1, "B keeps one IKE SA");
        assert!(n.removed[1].contains(&old));
        assert_eq!(n.live(1).len(), 1);
    }

    #[test]
    fn refused_sas_are_forgotten() {
        let mut n = Net::pair(b"other");
        n.advance(0);
        for _ in 0..40 {
            n.advance(SECOND);
        }
        // A tries every 5 s; B keeps no more than the last few refused attempts.
        assert!(n.e[1].sas.len() <= 8, "{} SAs kept", n.e[1].sas.len());
        assert!(n.e[1].stats.auth_failed >= 5);
    }

    #[test]
    fn byte_limit_rekeys() {
        let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
        let mut ca = PeerConfig::new(a, b, b"k");
        ca.rekey_bytes = 1000;
        let mut n = Net::new(ca, PeerConfig::new(b, a, b"k"));
        n.advance(0);
        let spi_out = n.installed[0][0].spi_out;
        n.e[0].sent(spi_out, 10, 999, n.now);
        n.advance(SECOND);
        assert_eq!(n.installed[0].len(), 1, "under the limit");
        n.e[0].sent(spi_out, 11, 1000, n.now);
        n.advance(SECOND);
        assert_eq!(n.installed[0].len(), 2, "at the limit: rekeyed");
        n.assert_matched();
    }

    #[test]
    fn a_pfs_rekey_answered_without_ke_is_refused_and_the_old_sa_kept() {
        let mut n = Net::pair(b"swordfish");
        n.advance(0);
        let first = n.installed[0][0].spi_in;
        n.e[1].test_answer_without_ke = true;
        assert!(n.e[0].rekey(B.parse().unwrap(), false, n.now));
        n.advance(SECOND);
        assert_eq!(n.installed[0].len(), 1, "A installed no child without the PFS it asked for");
        assert!(n.live(0).iter().any(|k| k.spi_in == first), "the old SA still carries traffic");
        // A well-behaved answer later: the rekey goes through.
        n.e[1].test_answer_without_ke = false;
        for _ in 0..31 {
            n.advance(SECOND);
        }
        assert!(n.installed[0].len() >= 2, "rekeyed on the retry");
        n.assert_matched();
    }

    #[test]
    fn identities_must_name_the_configured_remote() {
        let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
        let mut sa = IkeSa::new(a, SocketAddr::new(b, IKE_PORT), true, 0);
        assert!(sa.identity_problem().unwrap().contains("no identity"));
        sa.peer_id = Some(id_payload(b));
        assert_eq!(sa.identity_problem(), None);
        sa.peer_id = Some(id_payload("192.0.2.99".parse().unwrap()));
        assert!(sa.identity_problem().unwrap().contains("not the tunnel's remote_ip"));
        sa.peer_id = Some((2, b"peer.example".to_vec()));
        assert!(sa.identity_problem().unwrap().contains("not an IP address"));
        sa.peer_id = Some((msg::ID_IPV4_ADDR, vec![1, 2, 3]));
        assert!(sa.identity_problem().is_some());
        // Behind a NAT the peer names its own private address, not somebody else's public one.
        sa.nat = true;
        sa.peer_id = Some(id_payload("10.0.0.1".parse().unwrap()));
        assert_eq!(sa.identity_problem(), None);
        sa.peer_id = Some(id_payload("192.0.2.99".parse().unwrap()));
        assert!(sa.identity_problem().unwrap().contains("private address"));
    }

    #[test]
    fn an_authenticated_peer_with_another_identity_gets_no_sa() {
        // B expects A at A's address; A (same psk) authenticates naming another address and no NAT is
        // between them: B refuses, nothing is installed on either side.
        let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
        let other: IpAddr = "192.0.2.99".parse().unwrap();
        let mut n = Net::new(PeerConfig::new(other, b, b"swordfish"), PeerConfig::new(b, a, b"swordfish"));
        n.addr[0] = a;
        for _ in 0..10 {
            n.advance(SECOND);
        }
        assert!(n.installed[1].is_empty() && n.installed[0].is_empty());
        assert_eq!(n.e[1].stats.auth_failed, 1);
    }

    #[test]
    fn unknown_sources_are_logged_at_most_once_per_interval() {
        let mut e = Engine::new();
        let mut init = Vec::new();
        let h = Header {
            spi_i: 1,
            spi_r: 0,
            next: 0,
            exchange: exchange::IKE_SA_INIT,
            flags: flag::INITIATOR,
            msg_id: 0,
            length: 0,
        };
        init.extend(msg::encode(h, &[Payload::Nonce(vec![1; 32])]));
        for k in 0..1000u64 {
            e.input(k * 1_000_000, IKE_PORT, "192.0.2.200:500".parse().unwrap(), &init);
        }
        assert_eq!(e.stats.unknown_peer, 1000);
        assert_eq!(e.unknown_suppressed, 999, "one line for a second's worth of them");
        e.input(LOG_INTERVAL + SECOND, IKE_PORT, "192.0.2.200:500".parse().unwrap(), &init);
        assert_eq!(e.unknown_suppressed, 0, "a new line after the interval");
    }

    #[test]
    fn sequence_numbers_running_out_rekey_without_a_byte_limit() {
        let mut n = Net::pair(b"swordfish");
        n.advance(0);
        let spi_out = n.installed[0][0].spi_out;
        n.e[0].sent(spi_out, SEQ_SOFT_LIMIT - 1, u64::MAX / 2, n.now);
        n.advance(SECOND);
        assert_eq!(n.installed[0].len(), 1, "no byte limit set, under the packet limit");
        n.e[0].sent(spi_out, SEQ_SOFT_LIMIT, 0, n.now);
        n.advance(SECOND);
        assert_eq!(n.installed[0].len(), 2, "2^31 packets sent: rekeyed before the sequence number wraps");
        n.assert_matched();
    }

    #[test]
    fn lifetime_rekeys_on_its_own() {
        let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
        let mut ca = PeerConfig::new(a, b, b"k");
        ca.child_lifetime = 10 * SECOND;
        let mut n = Net::new(ca, PeerConfig::new(b, a, b"k"));
        n.advance(0);
        for _ in 0..12 {
            n.advance(SECOND);
        }
        assert_eq!(n.installed[0].len(), 2);
        n.assert_matched();
    }

    #[test]
    fn dead_peer_is_detected_and_its_sas_removed() {
        let mut n = Net::pair(b"swordfish");
        n.advance(0);
        n.drop = [1000, 1000];
        for _ in 0..80 {
            n.advance(SECOND);
        }
        assert!(!n.e[0].established(B.parse().unwrap()));
        assert_eq!(n.removed[0].len(), 1);
        assert!(n.e[0].stats.timeouts >= 1);
        // The peer comes back: A starts again.
        n.drop = [0, 0];
        for _ in 0..10 {
            n.advance(SECOND);
        }
        assert!(n.e[0].established(B.parse().unwrap()));
    }

    #[test]
    fn init_flood_gets_cookies_and_stays_bounded() {
        let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
        let mut resp = Engine::new();
        resp.set_peers(vec![PeerConfig::new(b, a, b"k")], 0);
        let mut cfg = PeerConfig::new(a, b, b"k");
        cfg.initiate = Initiate::Always;
        let from = SocketAddr::new(a, IKE_PORT);
        // A flood of distinct IKE_SA_INITs from one source.
        for k in 0..5000u64 {
            let mut e = Engine::new();
            e.set_peers(vec![cfg.clone()], 0);
            e.tick(0);
            let Some(Output::Send { data, .. }) = e.poll() else { panic!() };
            resp.input(k, IKE_PORT, from, &data);
            let _ = k;
        }
        assert!(resp.sas.len() <= COOKIE_THRESHOLD, "{} half-open SAs", resp.sas.len());
        assert!(resp.stats.cookies_sent > 4000);
        // A real initiator answers the cookie and gets through.
        let mut init = Engine::new();
        init.set_peers(vec![cfg], 0);
        init.tick(0);
        let mut installed = false;
        for _ in 0..10 {
            while let Some(o) = init.poll() {
                match o {
                    Output::Send { data, to, from_port } => {
                        resp.input(1, to.port(), SocketAddr::new(a, from_port), &data)
                    }
                    Output::Install(_) => installed = true,
                    _ => {}
                }
            }
            while let Some(o) = resp.poll() {
                if let Output::Send { data, to, from_port } = o {
                    init.input(1, to.port(), SocketAddr::new(b, from_port), &data);
                }
            }
        }
        assert!(installed);
        assert!(resp.stats.cookies_sent > 4000);
    }

    #[test]
    fn every_sa_a_source_has_not_established_counts_against_its_cap() {
        let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
        let mut resp = Engine::new();
        resp.set_peers(vec![PeerConfig::new(b, a, b"k")], 0);
        let from = SocketAddr::new(a, IKE_PORT);
        // The source's share is taken by SAs that are not half open: refused ones closing, and one being
        // authenticated.
        for k in 0..HALF_OPEN_PER_SOURCE {
            let mut sa = IkeSa::new(b, from, false, 0);
            sa.spi_i = 1000 + k as u64;
            sa.state = if k == 0 { State::AuthSent } else { State::Closing };
            resp.sas.push(sa);
        }
        let mut cfg = PeerConfig::new(a, b, b"k");
        cfg.initiate = Initiate::Always;
        let mut e = Engine::new();
        e.set_peers(vec![cfg], 0);
        e.tick(0);
        let Some(Output::Send { data, .. }) = e.poll() else { panic!() };
        resp.input(0, IKE_PORT, from, &data);
        assert_eq!(resp.stats.half_open_dropped, 1, "a new IKE_SA_INIT from that source is dropped");
        assert_eq!(resp.sas.len(), HALF_OPEN_PER_SOURCE);
        // Established SAs do not count: with them the source gets through again.
        for sa in &mut resp.sas {
            sa.state = State::Established;
        }
        resp.input(0, IKE_PORT, from, &data);
        assert_eq!(resp.sas.len(), HALF_OPEN_PER_SOURCE + 1);
    }

    #[test]
    fn short_keys_are_weak() {
        assert!(weak_psk(b"swordfish"));
        assert!(weak_psk(b"123456789012345"));
        assert!(!weak_psk(b"1234567890123456"));
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let mut e = Engine::new();
        let from: SocketAddr = "192.0.2.9:500".parse().unwrap();
        e.input(0, 500, from, &[]);
        e.input(0, 500, from, &[0u8; 28]);
        let mut h = vec![0u8; 28];
        h[17] = 0x20;
        h[27] = 28;
        e.input(0, 500, from, &h);
        assert_eq!(e.stats.malformed, 2);
        assert!(e.poll().is_none());
    }
}
