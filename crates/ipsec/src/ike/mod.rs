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

mod exchanges;
mod proposals;
mod sa;

use proposals::*;

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

#[cfg(test)]
mod tests;
