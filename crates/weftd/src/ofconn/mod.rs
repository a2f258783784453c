//! OpenFlow 1.3 connections: weftd listening for `ovs-ofctl` and controllers (`ptcp:`, or `pssl:` over TLS), or
//! connecting to a controller (`tcp:`, `ssl:`). Each connection is served by its own thread, which alone reads
//! and writes it (a TLS session cannot be shared between threads); requests that change flows go through the
//! same transactions as the CLI. Packets that reach `actions=controller` come from the datapath through a
//! bounded channel and go to each connection's own bounded queue as PACKET_IN.

mod asynccfg;
mod bundles;
mod groups;
mod meters;
mod of10;
mod of14;
mod of15;
mod ports;
mod requests;
mod roles;
mod tlv;

use crate::msgs::{DpMsg, PacketIn};
use requests::handle;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use weft_api::config::{parse_of_target, OfTarget};
use weft_api::flow::Flow;
use weft_wire::openflow::{self as of, error, msg};

/// What the OpenFlow side needs of the daemon (the control thread's state provides it): the configuration, a
/// way to change it, the datapath and its counters.
pub trait Daemon: Send {
    fn config(&self) -> &weft_api::Config;
    /// Validates and applies a new configuration (one transaction), or says why not.
    fn commit_config(&mut self, new: weft_api::Config) -> Result<(), String>;
    /// Each flow's (packets, bytes) by flow id.
    fn flow_counters(&self, bridge: &str) -> std::collections::HashMap<u64, (u64, u64)>;
    fn port_counters(&self, bridge: &str) -> Vec<(String, u32, weft_datapath::counters::PortCounters)>;
    fn link_down(&self, name: &str) -> bool;
    /// Each table's (lookups, matches), table 0 first.
    fn table_stats(&self, bridge: &str) -> Vec<(u64, u64)>;
    /// Sends OpenFlow 1.3 messages (port status) to every connection of the bridge (translated for 1.0 ones).
    fn broadcast(&self, bridge: &str, messages: &[Vec<u8>]);
    /// Why the flows the next configuration change removes go (`of::removed`; DELETE unless said).
    fn set_removal_reason(&mut self, reason: u8);
    /// Each group's statistics (summed over the workers) and how long it has been as it is, by id.
    fn group_stats(&self, bridge: &str) -> Vec<(u32, weft_datapath::switch::group::GroupStat, Duration)>;
    /// What meter `id` of `bridge` counted, and for how long.
    fn meter_counts(&self, bridge: &str, id: u32) -> Option<(weft_datapath::switch::meter::MeterCounts, Duration)>;
    fn dp(&self) -> &crate::msgs::DpHandle;
    /// Bundles: while on, [`Daemon::commit_config`] checks a change and keeps it as [`Daemon::config`], but
    /// neither applies, persists nor announces it.
    fn defer_commits(&mut self, on: bool);
    /// Puts back a configuration taken before deferred changes (none of which was applied).
    fn restore_config(&mut self, config: weft_api::Config);
}

/// Packet-ins queued towards a bridge's connections before the datapath leaves some out.
pub const PACKET_IN_QUEUE: usize = 1024;

/// Connections one listener serves at once; more are closed as they arrive (and logged, at most once per
/// [`REFUSED_LOG_INTERVAL`]).
pub const MAX_CONNECTIONS: usize = 16;
const REFUSED_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// FLOW_MODs one connection may send: a burst of this many, then this many a second. Each is a configuration
/// transaction (and an fsync); past the rate weftd reads no more from that connection until it may, so TCP
/// slows the sender down and nothing is lost.
pub const FLOW_MOD_BURST: f64 = 2000.0;
pub const FLOW_MOD_RATE: f64 = 1000.0;

/// A token bucket: `take` waits until a token is there.
struct RateLimit {
    tokens: f64,
    last: std::time::Instant,
}

impl RateLimit {
    fn new() -> Self {
        RateLimit { tokens: FLOW_MOD_BURST, last: std::time::Instant::now() }
    }

    /// How long to wait before one more FLOW_MOD may be applied (zero: now), taking its token.
    fn take(&mut self, now: std::time::Instant) -> Duration {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * FLOW_MOD_RATE;
        self.tokens = (self.tokens + refill).min(FLOW_MOD_BURST);
        self.last = now;
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / FLOW_MOD_RATE)
        }
    }
}

/// A connection's queue of messages to send it (packet-ins, port status, flow removals), drained by its own
/// thread, and the role the controller on it asked for ([`roles`]).
#[derive(Clone)]
struct Session {
    queue: SyncSender<Vec<u8>>,
    role: Arc<std::sync::atomic::AtomicU32>,
    /// NXT_SET_CONTROLLER_ID's (0 unless set): `controller(id=N)` packet-ins go to connections with N.
    controller_id: Arc<std::sync::atomic::AtomicU32>,
    /// What asynchronous messages it takes (SET_ASYNC).
    asynccfg: Arc<asynccfg::AsyncConfig>,
}

impl Session {
    fn is_slave(&self) -> bool {
        self.role.load(Ordering::Relaxed) == roles::SLAVE
    }

    /// Whether packet-in `m`, for controller ID `id`, is this connection's.
    fn wants(&self, id: u16, m: &[u8]) -> bool {
        self.controller_id.load(Ordering::Relaxed) == u32::from(id) && self.asynccfg.takes(m, self.is_slave())
    }
}

/// Packet-ins waiting for one connection; more are dropped for that connection.
const SESSION_QUEUE: usize = 256;
/// How long a connection's thread waits for bytes before it sends what is queued for it.
const POLL: Duration = Duration::from_millis(20);

/// TLS for a bridge's OpenFlow connection: a server configuration for `pssl:`, a client one for `ssl:`.
#[derive(Clone)]
enum Tls {
    None,
    Server(Arc<rustls::ServerConfig>),
    Client(Arc<rustls::ClientConfig>),
}

/// What every connection of one target shares: the bridge, the daemon state, the bridge's open connections
/// (for packet-ins and roles), the flag that ends them.
#[derive(Clone)]
struct Link {
    bridge: String,
    me: Weak<Mutex<dyn Daemon>>,
    sessions: Arc<Mutex<Vec<Session>>>,
    /// The largest generation ID a master or slave request brought (OpenFlow 1.3 §6.3.7), for the bridge.
    generation: Arc<Mutex<Option<u64>>>,
    stop: Arc<AtomicBool>,
    /// Connections being served (counted from accept to close).
    open: Arc<std::sync::atomic::AtomicUsize>,
    tls: Tls,
}

/// One controller target of a bridge: the TLS files it was started with, the stop flag of its threads, its
/// listener's thread (joined when it stops, so that its port is free again at once).
struct Running {
    ssl: Option<weft_api::config::SslConfig>,
    /// Connecting to a controller (`tcp:`, `ssl:`), not listening; and its connections open now.
    active: bool,
    open: Arc<std::sync::atomic::AtomicUsize>,
    stop: Arc<AtomicBool>,
    listener: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.listener.take() {
            let _ = t.join();
        }
    }
}

/// What every connection of a bridge shares, whichever target it came by: the packet-in hub (one channel
/// from the datapath per bridge), the connections' queues and roles, the generation ID.
struct Hub {
    sessions: Arc<Mutex<Vec<Session>>>,
    generation: Arc<Mutex<Option<u64>>>,
    stop: Arc<AtomicBool>,
}

/// A bridge and one of its controller targets.
type Key = (String, String);
type Wanted = HashMap<Key, Option<weft_api::config::SslConfig>>;

/// Each bridge's controller targets in `config`, with the TLS files each would use.
fn wanted(config: &weft_api::Config) -> Wanted {
    let mut w = Wanted::new();
    for b in &config.bridges {
        for t in &b.controllers {
            let files = if OfTarget::is_tls(t) { config.ssl.clone() } else { None };
            w.insert((b.name.clone(), t.clone()), files);
        }
    }
    w
}

/// The TLS configuration a target needs, built from `set-ssl`'s files.
fn tls_for(target: &str, ssl: Option<&weft_api::config::SslConfig>) -> Result<Tls, String> {
    use weft_control::tls;
    let Some(ssl) = ssl.filter(|_| OfTarget::is_tls(target)) else { return Ok(Tls::None) };
    if target.starts_with("pssl:") {
        tls::server_config(&ssl.ca_cert, &ssl.certificate, &ssl.private_key).map(Tls::Server)
    } else {
        let ck = Some((ssl.certificate.as_str(), ssl.private_key.as_str()));
        tls::client_config(&ssl.ca_cert, ck, tls::NameCheck::ChainOnly).map(Tls::Client)
    }
}

/// Keeps the listeners and connectors the configuration asks for.
#[derive(Default)]
pub struct Manager {
    running: HashMap<Key, Running>,
    hubs: HashMap<String, Hub>,
    /// Listening sockets bound by [`Manager::prepare`] for the configuration about to be committed.
    bound: HashMap<Key, TcpListener>,
}

impl Manager {
    /// Before `config` is committed: stops the connections it changes (a listener's port is free when this
    /// returns) and binds the listeners it asks for, so that a port in use is the command's error and a
    /// command that returns success has its listener up. On an error nothing is bound; the caller restores
    /// the running setup with [`Manager::reconcile`].
    pub fn prepare(&mut self, config: &weft_api::Config, dp: &crate::msgs::DpHandle) -> Result<(), String> {
        let wanted = wanted(config);
        self.stop_changed(&wanted, dp);
        for key in wanted.keys() {
            if self.running.contains_key(key) || self.bound.contains_key(key) {
                continue;
            }
            if let Ok(OfTarget::Listen(addr)) = parse_of_target(&key.1) {
                match bind(addr) {
                    Ok(l) => {
                        self.bound.insert(key.clone(), l);
                    }
                    Err(e) => {
                        self.bound.clear();
                        return Err(format!("bridge {}: cannot listen for OpenFlow on {addr}: {e}", key.0));
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether bridge `bridge` has controllers to connect to (`tcp:`, `ssl:`; listeners do not count: who
    /// connects to them is a tool, not the bridge's controller), and if so whether one is connected now.
    pub fn controller_connected(&self, bridge: &str) -> Option<bool> {
        let mut active = self.running.iter().filter(|((b, _), r)| b == bridge && r.active).peekable();
        active.peek()?;
        Some(active.any(|(_, r)| r.open.load(Ordering::Relaxed) > 0))
    }

    /// Whether the connection to (or a connection from) controller `target` of `bridge` is open now.
    pub fn target_connected(&self, bridge: &str, target: &str) -> bool {
        self.running.get(&(bridge.to_string(), target.to_string())).is_some_and(|r| r.open.load(Ordering::Relaxed) > 0)
    }

    /// Tells the bridge's controllers that port `name` changed (OFPT_PORT_STATUS, reason MODIFY).
    pub fn port_status(&self, bridge: &str, ofport: u32, name: &str, link_down: bool, config: u32) {
        self.broadcast(bridge, &[ports::port_status_msg(ofport, name, link_down, config)]);
    }

    /// Sends `messages` (OpenFlow 1.3, translated for other versions) to the connections of the bridge whose
    /// asynchronous configuration takes them in their role (by default, slaves take port status only).
    pub fn broadcast(&self, bridge: &str, messages: &[Vec<u8>]) {
        let Some(h) = self.hubs.get(bridge) else { return };
        let list = h.sessions.lock().unwrap_or_else(|e| e.into_inner());
        for m in messages {
            for s in list.iter().filter(|s| s.asynccfg.takes(m, s.is_slave())) {
                let _ = s.queue.try_send(m.clone());
            }
        }
    }

    /// Stops the targets no longer wanted (or wanted with other TLS files), and the hubs of bridges left
    /// with none.
    fn stop_changed(&mut self, wanted: &Wanted, dp: &crate::msgs::DpHandle) {
        self.running.retain(|key, r| {
            let keep = wanted.get(key) == Some(&r.ssl);
            if !keep {
                r.stop();
            }
            keep
        });
        self.hubs.retain(|bridge, h| {
            let keep = wanted.keys().any(|(b, _)| b == bridge);
            if !keep {
                h.stop.store(true, Ordering::Relaxed);
                dp.send(DpMsg::SetPacketIn(bridge.clone(), None));
            }
            keep
        });
    }

    /// Starts and stops connections so that each controller target of each bridge has its listener or
    /// connector.
    pub fn reconcile(&mut self, state: &dyn Daemon, me: &Weak<Mutex<dyn Daemon>>) {
        let wanted = wanted(state.config());
        self.stop_changed(&wanted, state.dp());
        self.bound.retain(|key, _| wanted.contains_key(key));
        for (key, ssl) in wanted {
            if self.running.contains_key(&key) {
                continue;
            }
            let (bridge, target) = key.clone();
            let Ok(t) = parse_of_target(&target) else { continue };
            let tls = match tls_for(&target, ssl.as_ref()) {
                Ok(t) => t,
                Err(e) => {
                    tracing::error!(
                        "bridge {bridge}: OpenFlow over TLS ({target}): the set-ssl files are unusable: {e}"
                    );
                    continue;
                }
            };
            let hub = self.hubs.entry(bridge.clone()).or_insert_with(|| {
                let hub = Hub { sessions: Arc::default(), generation: Arc::default(), stop: Arc::default() };
                let (tx, rx) = std::sync::mpsc::sync_channel(PACKET_IN_QUEUE);
                state.dp().send(DpMsg::SetPacketIn(bridge.clone(), Some(tx)));
                spawn_hub(rx, hub.sessions.clone(), hub.stop.clone());
                hub
            });
            let stop = Arc::new(AtomicBool::new(false));
            let open: Arc<std::sync::atomic::AtomicUsize> = Arc::default();
            let active = matches!(t, OfTarget::Connect(_));
            let link = Link {
                bridge: bridge.clone(),
                me: me.clone(),
                sessions: hub.sessions.clone(),
                generation: hub.generation.clone(),
                stop: stop.clone(),
                open: open.clone(),
                tls,
            };
            let mut listener = None;
            let r = match t {
                OfTarget::Listen(addr) => {
                    let bound = match self.bound.remove(&key) {
                        Some(l) => Ok(l),
                        None => bind(addr),
                    };
                    match bound {
                        Ok(l) => std::thread::Builder::new()
                            .name(format!("of-listen-{bridge}"))
                            .spawn(move || listen(l, link))
                            .map(|h| listener = Some(h)),
                        Err(e) => {
                            tracing::warn!("bridge {bridge}: cannot listen for OpenFlow on {addr}: {e}");
                            Ok(())
                        }
                    }
                }
                OfTarget::Connect(addr) => std::thread::Builder::new()
                    .name(format!("of-connect-{bridge}"))
                    .spawn(move || connect(addr, link))
                    .map(|_| ()),
            };
            if let Err(e) = r {
                tracing::warn!("bridge {bridge}: cannot start the OpenFlow connection {target}: {e}");
            }
            self.running.insert(key, Running { ssl, active, open, stop, listener });
        }
    }
}

/// Forwards packet-ins to every open connection of the bridge but slaves'.
fn spawn_hub(rx: Receiver<PacketIn>, sessions: Arc<Mutex<Vec<Session>>>, stop: Arc<AtomicBool>) {
    let _ = std::thread::Builder::new().name("of-packet-in".into()).spawn(move || {
        let mut xid = 0u32;
        loop {
            let p = match rx.recv_timeout(Duration::from_millis(500)) {
                Ok(p) => p,
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) if !stop.load(Ordering::Relaxed) => continue,
                Err(_) => return,
            };
            xid = xid.wrapping_add(1);
            let m = packet_in(&p, xid);
            let mut list = sessions.lock().unwrap_or_else(|e| e.into_inner());
            // A connection whose queue is full misses this one; a closed one leaves the list.
            list.retain(|s| {
                !s.wants(p.controller_id, &m)
                    || !matches!(s.queue.try_send(m.clone()), Err(TrySendError::Disconnected(_)))
            });
        }
    });
}

/// OFPT_FLOW_REMOVED (OpenFlow 1.3) for a flow that went, with why (`of::removed`), how long it lived and
/// what it counted.
pub fn flow_removed(f: &Flow, reason: u8, age: Duration, packets: u64, bytes: u64) -> Vec<u8> {
    let mut m = Vec::new();
    let at = of::start(&mut m, msg::FLOW_REMOVED, 0);
    m.extend_from_slice(&f.cookie.to_be_bytes());
    m.extend_from_slice(&f.priority.to_be_bytes());
    m.extend_from_slice(&[reason, f.table]);
    m.extend_from_slice(&(age.as_secs() as u32).to_be_bytes());
    m.extend_from_slice(&age.subsec_nanos().to_be_bytes());
    m.extend_from_slice(&f.idle_timeout.to_be_bytes());
    m.extend_from_slice(&f.hard_timeout.to_be_bytes());
    m.extend_from_slice(&packets.to_be_bytes());
    m.extend_from_slice(&bytes.to_be_bytes());
    of::put_match(&mut m, |o| weft_api::ofp::put_matches(o, &f.matches));
    of::finish(&mut m, at);
    m
}

fn packet_in(p: &PacketIn, xid: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(64 + p.data.len());
    let at = of::start(&mut m, msg::PACKET_IN, xid);
    m.extend_from_slice(&u32::MAX.to_be_bytes()); // no buffer
    m.extend_from_slice(&p.total_len.to_be_bytes());
    m.push(p.reason);
    m.push(p.table);
    m.extend_from_slice(&p.cookie.to_be_bytes());
    of::put_match(&mut m, |o| of::put_oxm(o, of::oxm::CLASS_BASIC, of::oxm::IN_PORT, &p.in_port.to_be_bytes(), None));
    m.extend_from_slice(&[0, 0]);
    m.extend_from_slice(&p.data);
    of::finish(&mut m, at);
    m
}

/// A non-blocking listening socket on `addr` (SO_REUSEADDR, as std sets it on Unix: connections of a listener
/// just closed, in TIME_WAIT, do not hold the port).
fn bind(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

fn listen(l: TcpListener, link: Link) {
    let mut refused_logged: Option<std::time::Instant> = None;
    while !link.stop.load(Ordering::Relaxed) {
        match l.accept() {
            Ok((s, from)) => {
                if link.open.load(Ordering::Relaxed) >= MAX_CONNECTIONS {
                    drop(s);
                    if refused_logged.is_none_or(|t| t.elapsed() >= REFUSED_LOG_INTERVAL) {
                        refused_logged = Some(std::time::Instant::now());
                        tracing::warn!(
                            "bridge {}: OpenFlow connection from {from} refused: {MAX_CONNECTIONS} are open already",
                            link.bridge
                        );
                    }
                    continue;
                }
                link.open.fetch_add(1, Ordering::Relaxed);
                let link = link.clone();
                let open = link.open.clone();
                let spawned =
                    std::thread::Builder::new().name("of-session".into()).spawn(move || session(s, link, None));
                if spawned.is_err() {
                    open.fetch_sub(1, Ordering::Relaxed);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                tracing::warn!("bridge {}: OpenFlow accept: {e}", link.bridge);
                std::thread::sleep(Duration::from_millis(500));
            }
        }
    }
}

fn connect(addr: std::net::SocketAddr, link: Link) {
    while !link.stop.load(Ordering::Relaxed) {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            Ok(s) => {
                link.open.fetch_add(1, Ordering::Relaxed);
                session(s, link.clone(), Some(addr.ip().to_string()))
            }
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
        // Reconnect after a drop, as a switch does.
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Cuts the bytes of a connection into OpenFlow messages as they arrive. What it holds grows with what came,
/// never with what a header announces (a message is at most 64 KiB).
#[derive(Default)]
struct MsgReader {
    buf: Vec<u8>,
}

impl MsgReader {
    fn extend(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, if one has arrived. A header with a length under 8 is returned as an 8-byte
    /// message (the caller answers it with an error and closes).
    fn next_msg(&mut self) -> Option<Vec<u8>> {
        if self.buf.len() < of::HEADER_LEN {
            return None;
        }
        let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])).max(of::HEADER_LEN);
        if self.buf.len() < len {
            return None;
        }
        let rest = self.buf.split_off(len);
        Some(std::mem::replace(&mut self.buf, rest))
    }
}

/// An `ofp_port` (OpenFlow 1.3, 64 bytes): number, MAC, name, and the state OFPPS_LINK_DOWN when the link is.
fn port_desc(ofport: u32, name: &str, link_down: bool, config: u32) -> Vec<u8> {
    let ofport = if ofport == crate::pipeline::OFPORT_LOCAL { of::port::LOCAL } else { ofport };
    let mut e = ofport.to_be_bytes().to_vec();
    e.extend_from_slice(&[0; 4]);
    e.extend_from_slice(&weft_sys::iface::mac(name).unwrap_or([0; 6]));
    e.extend_from_slice(&[0, 0]);
    let mut n = name.as_bytes().to_vec();
    n.resize(16, 0);
    e.extend_from_slice(&n);
    e.extend_from_slice(&config.to_be_bytes());
    e.extend_from_slice(&u32::from(link_down).to_be_bytes()); // state: OFPPS_LINK_DOWN
    e.extend_from_slice(&[0; 24]); // curr, advertised, supported, peer, speeds
    e
}

/// A HELLO offering the versions of `allowed` (a bitmap of wire versions: 1.0, 1.3 and 1.4, or those of the
/// bridge's `protocols`), in its header (the highest) and in a version bitmap element.
fn hello(xid: u32, allowed: u32) -> Vec<u8> {
    let mut m = Vec::new();
    let at = of::start(&mut m, msg::HELLO, xid);
    m[at] = [of15::VERSION, of14::VERSION, of::VERSION]
        .into_iter()
        .find(|v| allowed & (1 << v) != 0)
        .unwrap_or(weft_api::of10::VERSION);
    m.extend_from_slice(&[0, 1, 0, 8]);
    m.extend_from_slice(&allowed.to_be_bytes());
    of::finish(&mut m, at);
    m
}

/// The version a peer's HELLO leads to: the highest both may speak (1.5, 1.4, 1.3, else 1.0; `allowed` as
/// for [`hello`]), from its version bitmap when it sends one, else from its version (a peer at 1.0 speaks
/// 1.0; one at 1.5 or above speaks 1.5, 1.4 and 1.3 too; 1.1 and 1.2 are not weft's).
fn negotiate(peer: u8, hello: &[u8], allowed: u32) -> Option<u8> {
    let (v15, v14, v13, v10) = (of15::VERSION, of14::VERSION, of::VERSION, weft_api::of10::VERSION);
    // The first HELLO element, when it is a version bitmap (type 1).
    let bitmap = (hello.len() >= 16 && hello[8..10] == [0, 1])
        .then(|| u32::from_be_bytes([hello[12], hello[13], hello[14], hello[15]]));
    let theirs = match bitmap {
        Some(b) => b,
        None if peer >= v15 => (1 << v15) | (1 << v14) | (1 << v13) | (1 << v10),
        None if peer >= v14 => (1 << v14) | (1 << v13) | (1 << v10),
        None if peer >= v13 => (1 << v13) | (1 << v10),
        None if peer >= v10 => 1 << v10,
        None => 0,
    };
    let both = theirs & allowed;
    [v15, v14, v13, v10].into_iter().find(|v| both & (1 << v) != 0)
}

fn error_msg(xid: u32, (kind, code): (u16, u16), request: &[u8]) -> Vec<u8> {
    let mut m = Vec::new();
    let at = of::start(&mut m, msg::ERROR, xid);
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&code.to_be_bytes());
    // Nicira's experimenter errors (OFPET_EXPERIMENTER): the code is the experimenter's type, then its ID.
    if kind == tlv::EXPERIMENTER_ERROR {
        m.extend_from_slice(&of::act::NX_VENDOR.to_be_bytes());
    }
    m.extend_from_slice(&request[..request.len().min(64)]);
    of::finish(&mut m, at);
    m
}

/// Serves one connection (`peer`: the controller's address when we connected, for TLS) until it closes.
fn session(s: TcpStream, link: Link, peer: Option<String>) {
    let open = link.open.clone();
    let _ = s.set_nonblocking(false);
    let _ = s.set_nodelay(true);
    // The TLS handshake gets a few seconds; then reads wait briefly so that queued packet-ins go out.
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(5)));
    let from = s.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let stream = match &link.tls {
        Tls::None => Ok(weft_control::tls::Stream::Plain(s)),
        Tls::Server(cfg) => weft_control::tls::Stream::accept(cfg, s),
        Tls::Client(cfg) => weft_control::tls::Stream::connect(cfg, peer.as_deref().unwrap_or_default(), s),
    };
    match stream {
        Ok(stream) => {
            let _ = stream.tcp().set_read_timeout(Some(POLL));
            serve_session(stream, link)
        }
        Err(e) => tracing::warn!("bridge {}: OpenFlow connection with {from} refused: {e}", link.bridge),
    }
    open.fetch_sub(1, Ordering::Relaxed);
}

fn serve_session(mut s: weft_control::tls::Stream, link: Link) {
    let send = |s: &mut weft_control::tls::Stream, m: &[u8]| s.write_all(m).and_then(|_| s.flush()).is_ok();
    let Link { bridge, me, sessions, stop, generation, .. } = link;
    let allowed = match me.upgrade() {
        Some(state) => {
            let st = state.lock().unwrap_or_else(|e| e.into_inner());
            st.config().bridge(&bridge).map_or(0, |b| b.of_versions())
        }
        None => 0,
    };
    if !send(&mut s, &hello(0, allowed)) {
        return;
    }
    let (queue, queued) = std::sync::mpsc::sync_channel::<Vec<u8>>(SESSION_QUEUE);
    let role = Arc::new(std::sync::atomic::AtomicU32::new(roles::EQUAL));
    let controller_id = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let asynccfg = Arc::new(asynccfg::AsyncConfig::default());
    let session =
        Session { queue, role: role.clone(), controller_id: controller_id.clone(), asynccfg: asynccfg.clone() };
    sessions.lock().unwrap_or_else(|e| e.into_inner()).push(session);
    let mut miss_send_len: u16 = 128;
    let mut state10 = of10::State10::new(controller_id, asynccfg.clone());
    let mut bundles = bundles::Bundles::default();
    // Until the peer's HELLO: OpenFlow 1.3.
    let mut version = of::VERSION;
    let mut flow_mods = RateLimit::new();
    let mut reader = MsgReader::default();
    let mut chunk = [0u8; 4096];
    'conn: while !stop.load(Ordering::Relaxed) {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => reader.extend(&chunk[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        while let Ok(m) = queued.try_recv() {
            // ROLE_STATUS is OpenFlow 1.4's: older connections are not told.
            if m.get(1) == Some(&roles::ROLE_STATUS) && !matches!(version, of14::VERSION | of15::VERSION) {
                continue;
            }
            // Packet-ins and port status are queued in 1.3's form.
            let m = match version {
                weft_api::of10::VERSION => of10::to_of10(&m).unwrap_or(m),
                of14::VERSION => of14::from13(&m),
                of15::VERSION => of15::from13(&m),
                _ => m,
            };
            if !send(&mut s, &m) {
                break 'conn;
            }
        }
        while let Some(m) = reader.next_msg() {
            let Ok(h) = of::Header::parse(&m) else {
                send(&mut s, &error_msg(0, (error::BAD_REQUEST, error::BAD_LEN), &m));
                break 'conn;
            };
            if h.kind == msg::HELLO {
                match negotiate(h.version, &m, allowed) {
                    Some(v) => {
                        version = v;
                        weft_api::ofp::set_openflow15(v == of15::VERSION);
                    }
                    None => {
                        send(&mut s, &error_msg(h.xid, (error::HELLO_FAILED, error::INCOMPATIBLE), &m));
                        break 'conn;
                    }
                }
                continue;
            }
            if h.version != version {
                let e = (error::BAD_REQUEST, error::BAD_VERSION);
                let reply = match version {
                    weft_api::of10::VERSION => of10::error10(h.xid, e, &m),
                    of14::VERSION => of14::from13(&error_msg(h.xid, e, &m)),
                    of15::VERSION => of15::from13(&error_msg(h.xid, e, &m)),
                    _ => error_msg(h.xid, e, &m),
                };
                send(&mut s, &reply);
                continue;
            }
            // OpenFlow 1.4 and 1.5 are served as 1.3, their messages rewritten both ways.
            let answer14 = |r: Vec<u8>| match version {
                of14::VERSION => of14::from13(&r),
                of15::VERSION => of15::from13(&r),
                _ => r,
            };
            let m = match version {
                of14::VERSION => of14::to13(&m),
                of15::VERSION => match of15::to13(&m) {
                    Ok(t) => t,
                    Err(e) => {
                        send(&mut s, &answer14(error_msg(h.xid, e, &m)));
                        continue;
                    }
                },
                _ => m,
            };
            let h = of::Header::parse(&m).unwrap_or(h);
            // OpenFlow 1.0: Nicira's role request, and what a slave may not do.
            if version == weft_api::of10::VERSION {
                let nx_role = h.kind == weft_api::of10::msg::VENDOR
                    && m.get(8..16).is_some_and(|v| {
                        v[..4] == of::act::NX_VENDOR.to_be_bytes()
                            && v[4..] == weft_api::of10::nxt::ROLE_REQUEST.to_be_bytes()
                    });
                let answer = if nx_role {
                    Some(roles::nx_role_request(&m[16..], &role, &sessions).map(|body| {
                        let mut r = Vec::new();
                        let at = of::start(&mut r, weft_api::of10::msg::VENDOR, h.xid);
                        r[at] = weft_api::of10::VERSION;
                        r.extend_from_slice(&of::act::NX_VENDOR.to_be_bytes());
                        r.extend_from_slice(&11u32.to_be_bytes()); // NXT_ROLE_REPLY
                        r.extend_from_slice(&body);
                        of::finish(&mut r, at);
                        r
                    }))
                } else {
                    roles::refused_to_slave10(&m, &role).map(Err)
                };
                if let Some(a) = answer {
                    if !send(&mut s, &a.unwrap_or_else(|e| of10::error10(h.xid, e, &m))) {
                        break 'conn;
                    }
                    continue;
                }
            }
            // The asynchronous configuration is the connection's own (1.4 and 1.5 say it in properties).
            if version != weft_api::of10::VERSION && matches!(h.kind, msg::SET_ASYNC | msg::GET_ASYNC_REQUEST) {
                let body = &m[of::HEADER_LEN..];
                let r = match (h.kind, version) {
                    (msg::GET_ASYNC_REQUEST, _) => {
                        let mut r = Vec::new();
                        let at = of::start(&mut r, msg::GET_ASYNC_REPLY, h.xid);
                        r.extend_from_slice(&asynccfg.reply13());
                        of::finish(&mut r, at);
                        Ok(Some(r))
                    }
                    (_, of::VERSION) => asynccfg.set13(body).map(|_| None),
                    _ => asynccfg.set_props(body).map(|_| None),
                };
                let reply = r.unwrap_or_else(|e| Some(error_msg(h.xid, e, &m)));
                if reply.is_some_and(|r| !send(&mut s, &answer14(r))) {
                    break 'conn;
                }
                continue;
            }
            if version != weft_api::of10::VERSION {
                let refused = roles::refused_to_slave(h.kind, &role).map(Err);
                let answer = refused.or_else(|| {
                    (h.kind == msg::ROLE_REQUEST).then(|| {
                        roles::role_request(&m[of::HEADER_LEN..], &role, &sessions, &generation).map(|body| {
                            let mut r = Vec::new();
                            let at = of::start(&mut r, msg::ROLE_REPLY, h.xid);
                            r.extend_from_slice(&body);
                            of::finish(&mut r, at);
                            r
                        })
                    })
                });
                if let Some(a) = answer {
                    if !send(&mut s, &answer14(a.unwrap_or_else(|e| error_msg(h.xid, e, &m)))) {
                        break 'conn;
                    }
                    continue;
                }
            }
            if h.kind == msg::FLOW_MOD {
                let wait = flow_mods.take(std::time::Instant::now());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
            }
            let Some(state) = me.upgrade() else { break 'conn };
            let replies = {
                let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                match (version, h.kind) {
                    (weft_api::of10::VERSION, _) => of10::handle10(&mut *st, &bridge, &h, &m, &mut state10),
                    (of14::VERSION | of15::VERSION, bundles::CONTROL) => {
                        bundles.control(&mut *st, &bridge, &h, &m, &mut miss_send_len)
                    }
                    (of14::VERSION | of15::VERSION, bundles::ADD_MESSAGE) => bundles.add(&h, &m, version),
                    (of::VERSION, msg::EXPERIMENTER) => bundles
                        .onf13(&mut *st, &bridge, &m, &mut miss_send_len)
                        .unwrap_or_else(|| handle(&mut *st, &bridge, &h, &m, &mut miss_send_len)),
                    _ => handle(&mut *st, &bridge, &h, &m, &mut miss_send_len),
                }
            };
            for r in replies {
                if !send(&mut s, &answer14(r)) {
                    break 'conn;
                }
            }
        }
    }
    // This connection leaves the bridge's list (its queue's receiving end goes with this thread).
    sessions.lock().unwrap_or_else(|e| e.into_inner()).retain(|s| !Arc::ptr_eq(&s.role, &role));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_negotiated_within_the_bridges_protocols() {
        let both = (1 << 4) | (1 << 1);
        let peer = |bitmap: u32| {
            let mut m = vec![4, 0, 0, 16, 0, 0, 0, 1, 0, 1, 0, 8];
            m.extend_from_slice(&bitmap.to_be_bytes());
            m
        };
        assert_eq!(negotiate(4, &peer(both), both), Some(4));
        assert_eq!(negotiate(4, &peer(both), 1 << 1), Some(1), "protocols=OpenFlow10");
        assert_eq!(negotiate(4, &peer(1 << 4), 1 << 1), None, "nothing in common");
        assert_eq!(negotiate(5, &peer(1 << 5 | 1 << 4), both), Some(4), "1.4 and 1.3 offered, 1.4 not allowed: 1.3");
        let all = both | 1 << 5;
        assert_eq!(negotiate(6, &peer(1 << 6 | 1 << 5 | 1 << 4), all), Some(5), "1.5, 1.4, 1.3 offered: 1.4");
        assert_eq!(negotiate(6, &peer(1 << 6), all), None, "1.5 alone");
        assert_eq!(negotiate(6, &[6, 0, 0, 8, 0, 0, 0, 1], all), Some(5), "a 1.5 peer without a bitmap");
        assert_eq!(hello(0, all)[0], 5, "the header says the highest");
        let all = all | 1 << 6;
        assert_eq!(negotiate(6, &peer(1 << 6 | 1 << 5 | 1 << 4), all), Some(6), "1.5 when allowed");
        assert_eq!(negotiate(6, &[6, 0, 0, 8, 0, 0, 0, 1], all), Some(6));
        assert_eq!(negotiate(1, &[1, 0, 0, 8, 0, 0, 0, 1], both), Some(1), "a 1.0 peer without a bitmap");
        assert_eq!(negotiate(4, &[4, 0, 0, 8, 0, 0, 0, 1], 1 << 1), Some(1), "a 1.3 peer speaks 1.0 too");
        let h = hello(0, 1 << 1);
        assert_eq!((h[0], &h[8..16]), (1, &[0, 1, 0, 8, 0, 0, 0, 2][..]), "offers only 1.0, in a 1.0 header");
    }

    #[test]
    fn flow_mods_past_the_burst_wait_for_the_rate() {
        let mut r = RateLimit::new();
        let t0 = r.last;
        for _ in 0..FLOW_MOD_BURST as usize {
            assert!(r.take(t0).is_zero());
        }
        let wait = r.take(t0);
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(2), "{wait:?}");
        // A second later the bucket holds a second's worth again.
        let later = t0 + Duration::from_secs(1);
        assert!(r.take(later).is_zero());
        let mut n = 1;
        while r.take(later).is_zero() {
            n += 1;
        }
        assert!((990..=1000).contains(&n), "{n} FLOW_MODs in the second second");
    }

    #[test]
    fn messages_are_cut_as_bytes_arrive_and_a_header_allocates_nothing() {
        let mut r = MsgReader::default();
        // A header saying 65535 bytes, then 12 bytes: nothing whole yet, and nothing held beyond what came.
        let (_, peak) = weft_sys::alloc_probe::peak_during(|| {
            r.extend(&[4, 14, 0xff, 0xff, 0, 0, 0, 1]);
            r.extend(&[0; 12]);
            assert!(r.next_msg().is_none());
        });
        assert!(peak < 256, "{peak} bytes allocated for 20 bytes received");
        // Two whole messages in one read, the second cut in two reads.
        let mut r = MsgReader::default();
        r.extend(&[4, 2, 0, 8, 0, 0, 0, 1, 4, 2, 0, 10, 0, 0]);
        assert_eq!(r.next_msg().unwrap(), vec![4, 2, 0, 8, 0, 0, 0, 1]);
        assert!(r.next_msg().is_none());
        r.extend(&[0, 2, 7, 7]);
        assert_eq!(r.next_msg().unwrap(), vec![4, 2, 0, 10, 0, 0, 0, 2, 7, 7]);
        // A length under the header's is returned as the header alone (answered with an error).
        r.extend(&[4, 2, 0, 3, 0, 0, 0, 3, 9]);
        assert_eq!(r.next_msg().unwrap().len(), 8);
    }
}
