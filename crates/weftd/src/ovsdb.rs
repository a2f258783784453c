//! weftd's OVSDB server (RFC 7047): JSON-RPC over a Unix socket (and TCP when asked) serving the
//! `Open_vSwitch` database, so `ovs-vsctl`, libvirt, os-vif and IDL clients configure weft unchanged.
//!
//! The database is a view of the configuration ([`weft_api::ovsdb::vswitch`]): a transaction runs on a
//! copy of the view, the result becomes a configuration, and that is validated, persisted and applied as
//! every CLI command is ([`State::apply_config`]). Every committed change — from OVSDB, the CLI or OpenFlow —
//! and, once a second, the status columns are published to the monitors as the difference between the
//! view before and after.
//!
//! Each client has a reader thread (requests in order) and a writer thread fed by a bounded queue: a client
//! that stops reading fills its queue and is dropped; it never holds up a commit or another client.

use crate::control::State;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_api::ovsdb::monitor::Monitor;
use weft_api::ovsdb::schema::vswitch;
use weft_api::ovsdb::txn::{self, Outcome};
use weft_api::ovsdb::vswitch::{project, to_config, IfaceStatus, Status};
use weft_api::ovsdb::{Db, DbError, Uuid};

/// The longest JSON-RPC message a client may send; a longer one closes the connection (the largest
/// transaction ovs-vsctl sends for hundreds of ports is a few hundred kilobytes).
pub const MAX_MESSAGE: usize = 4 << 20;
/// Messages queued for a client that does not read before it is dropped.
const QUEUE: usize = 1024;
/// How long a `wait` with a timeout may hold its transaction at most.
const MAX_WAIT: Duration = Duration::from_secs(60);

struct Client {
    out: SyncSender<Vec<u8>>,
    monitors: Vec<Monitor>,
    gone: Arc<AtomicBool>,
}

/// The published view and who watches it.
#[derive(Default)]
pub struct Hub {
    db: Db,
    clients: HashMap<u64, Client>,
    next_client: u64,
    /// Lock name → owner, then those waiting.
    locks: BTreeMap<String, Vec<u64>>,
    /// Each interface's counters, read every few seconds.
    stats: BTreeMap<String, BTreeMap<String, i64>>,
    stats_at: Option<Instant>,
    txn_id: u64,
    /// Listeners the Manager rows ask for (`ptcp:`, `punix:`), by target, with the flag that stops each.
    managers: BTreeMap<String, Arc<AtomicBool>>,
}

pub type Shared = Arc<Mutex<Hub>>;

fn lock(h: &Shared) -> std::sync::MutexGuard<'_, Hub> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

fn notify(method: &str, params: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({"id": Value::Null, "method": method, "params": params})).unwrap_or_default()
}

impl Hub {
    fn send(&mut self, client: u64, msg: Vec<u8>) {
        let Some(c) = self.clients.get(&client) else { return };
        match c.out.try_send(msg) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                tracing::warn!("OVSDB client {client} does not read its updates; dropped");
                c.gone.store(true, Ordering::Relaxed);
                self.clients.remove(&client);
            }
            Err(TrySendError::Disconnected(_)) => {
                self.clients.remove(&client);
            }
        }
    }

    /// Makes `new` the view and sends each monitor what changed.
    fn publish(&mut self, new: Db) {
        if new == self.db {
            return;
        }
        let old = std::mem::replace(&mut self.db, new);
        self.txn_id += 1;
        let txn_id = Uuid::derived(self.txn_id, "txn", "").to_string();
        let s = vswitch();
        let mut out = Vec::new();
        for (id, c) in &self.clients {
            for m in &c.monitors {
                if let Some(u) = m.update(s, &old, &self.db) {
                    let msg = match m.version {
                        1 => notify("update", json!([m.id, u])),
                        2 => notify("update2", json!([m.id, u])),
                        _ => notify("update3", json!([m.id, txn_id, u])),
                    };
                    out.push((*id, msg));
                }
            }
        }
        for (id, msg) in out {
            self.send(id, msg);
        }
    }

    fn drop_client(&mut self, id: u64) {
        self.clients.remove(&id);
        let mut granted = Vec::new();
        for (name, q) in self.locks.iter_mut() {
            let was_owner = q.first() == Some(&id);
            q.retain(|c| *c != id);
            if was_owner {
                if let Some(next) = q.first() {
                    granted.push((*next, name.clone()));
                }
            }
        }
        self.locks.retain(|_, q| !q.is_empty());
        for (c, name) in granted {
            self.send(c, notify("locked", json!([name])));
        }
    }
}

impl State {
    /// What the status columns show now.
    fn ovsdb_status(&self, hub: &mut Hub) -> Status {
        let fresh = hub.stats_at.is_some_and(|t| t.elapsed() < Duration::from_secs(5));
        if !fresh {
            hub.stats_at = Some(Instant::now());
            hub.stats.clear();
            for b in &self.config.bridges {
                let Some(Some(rows)) = self.ask_dp(|tx| crate::msgs::DpMsg::Counters(b.name.clone(), tx)) else {
                    continue;
                };
                for (port, _, c) in rows {
                    let m = [
                        ("rx_packets", c.rx_packets),
                        ("rx_bytes", c.rx_bytes),
                        ("tx_packets", c.tx_packets),
                        ("tx_bytes", c.tx_bytes),
                    ];
                    hub.stats.insert(port, m.iter().map(|(k, v)| (k.to_string(), *v as i64)).collect());
                }
            }
        }
        let mut ifaces = BTreeMap::new();
        for b in &self.config.bridges {
            for name in std::iter::once(&b.name).chain(b.ports.iter().map(|p| &p.name)) {
                let info = self.port_info.get(name);
                let link = self.links.get(name).map(|(up, _)| *up);
                let sys = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{name}/{f}")).ok();
                ifaces.insert(
                    name.clone(),
                    IfaceStatus {
                        link_up: link,
                        admin_up: link.map(|_| info.is_none_or(|i| i.error.is_none())),
                        mtu: info.and_then(|i| i.mtu).map(i64::from),
                        mac: sys("address").map(|s| s.trim().to_string()).filter(|s| !s.is_empty()),
                        ifindex: sys("ifindex").and_then(|s| s.trim().parse().ok()),
                        statistics: hub.stats.get(name).cloned().unwrap_or_default(),
                        error: info.and_then(|i| i.error.clone()),
                    },
                );
            }
        }
        let mut controllers = BTreeMap::new();
        for b in &self.config.bridges {
            for t in &b.controllers {
                controllers.insert((b.name.clone(), t.clone()), (self.of.target_connected(&b.name, t), None));
            }
        }
        Status {
            ifaces,
            controllers,
            version: format!("weft {}", env!("CARGO_PKG_VERSION")),
            salt: self.config.ovsdb.salt,
        }
    }

    /// Publishes the view of the running configuration to the OVSDB monitors (after every change, and once
    /// a second for the status columns).
    /// While no client is connected nothing is projected (a commit from the CLI or an OpenFlow flow-mod
    /// does not pay for it): a client's first transaction or monitor brings the view up to date.
    pub fn publish_ovsdb(&self) {
        self.publish(true)
    }

    /// The once-a-second refresh of the status columns.
    pub fn refresh_ovsdb(&self) {
        self.publish(false)
    }

    fn publish(&self, after_change: bool) {
        let Some(h) = &self.ovsdb else { return };
        let mut hub = lock(h);
        if after_change {
            self.reconcile_managers(&mut hub);
        }
        if hub.clients.is_empty() {
            return;
        }
        let status = self.ovsdb_status(&mut hub);
        let db = project(&self.config, &status);
        hub.publish(db);
    }

    /// Validates, persists and applies a whole new configuration (an OVSDB transaction's).
    fn apply_config(&mut self, mut new: weft_api::Config) -> Result<(), String> {
        new.ovsdb.salt = self.config.ovsdb.salt;
        let new = weft_api::config::Valid::new(new).map_err(|e| e.to_string())?;
        if new == self.config {
            return Ok(());
        }
        self.commit(new)
    }
}

/// Starts the OVSDB server on `unix:PATH` or `ptcp:PORT[:IP]` targets.
pub fn start(targets: &[String], state: &Arc<Mutex<State>>) -> anyhow::Result<()> {
    let hub: Shared = Arc::default();
    {
        let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
        if s.config.ovsdb.salt == 0 {
            // Derived row UUIDs differ from one weftd to the next: the salt is made once and kept.
            let mut seed = [0u8; 8];
            weft_ipsec::crypto::random(&mut seed);
            let mut c = s.config.config().clone();
            c.ovsdb.salt = u64::from_le_bytes(seed) | 1;
            if let Err(e) = weft_api::config::Valid::new(c).map_err(|e| e.to_string()).and_then(|v| s.commit(v)) {
                anyhow::bail!("cannot keep the OVSDB salt: {e}");
            }
        }
        s.ovsdb = Some(hub.clone());
        s.publish_ovsdb();
    }
    for t in targets {
        let t = match t.strip_prefix("compat:") {
            Some(path) => match compat_blocked(path) {
                Some(why) => {
                    tracing::info!("not serving OVSDB on {path}: {why}");
                    continue;
                }
                None => format!("unix:{path}"),
            },
            None => t.clone(),
        };
        listen(&t, state, &hub, None).map_err(|e| anyhow::anyhow!("--ovsdb {t}: {e}"))?;
        tracing::info!("OVSDB on {t}");
    }
    Ok(())
}

/// A connection's two halves from one socket.
trait Stream: Conn + WriteConn + Sized + 'static {
    fn twin(&self) -> std::io::Result<Self>;
    /// Accepted from a non-blocking listener: blocking again, as the session reads.
    fn blocking(&self) -> std::io::Result<()>;
}
impl Stream for std::os::unix::net::UnixStream {
    fn twin(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn blocking(&self) -> std::io::Result<()> {
        self.set_nonblocking(false)
    }
}
impl Stream for std::net::TcpStream {
    fn twin(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn blocking(&self) -> std::io::Result<()> {
        self.set_nonblocking(false)
    }
}

/// Listens on `unix:PATH`, `punix:PATH` or `ptcp:PORT[:IP]` (with `stop`: until it is set).
fn listen(target: &str, state: &Arc<Mutex<State>>, hub: &Shared, stop: Option<Arc<AtomicBool>>) -> std::io::Result<()> {
    let nonblocking = stop.is_some();
    if let Some(rest) = target.strip_prefix("ptcp:") {
        let addr = ptcp_addr(rest).ok_or_else(|| std::io::Error::other("expected ptcp:PORT[:IP]"))?;
        let l = std::net::TcpListener::bind(addr)?;
        l.set_nonblocking(nonblocking)?;
        return serve("ovsdb-tcp", move || l.accept().map(|(s, _)| s), state, hub, stop);
    }
    let Some(path) = target.strip_prefix("unix:").or_else(|| target.strip_prefix("punix:")) else {
        return Err(std::io::Error::other("expected unix:PATH, compat:PATH or ptcp:PORT[:IP]"));
    };
    let l = crate::bind_socket(std::path::Path::new(path)).map_err(|e| std::io::Error::other(format!("{e:#}")))?;
    l.set_nonblocking(nonblocking)?;
    serve("ovsdb", move || l.accept().map(|(s, _)| s), state, hub, stop)
}

/// `PORT[:IP]` of a `ptcp:` target (127.0.0.1 unless an address is named: whoever reaches it owns the switch).
fn ptcp_addr(rest: &str) -> Option<std::net::SocketAddr> {
    let (port, ip) = rest.split_once(':').unwrap_or((rest, "127.0.0.1"));
    format!("{}:{port}", if ip.contains(':') { format!("[{ip}]") } else { ip.to_string() }).parse().ok()
}

impl State {
    /// Opens the listeners the Manager rows name (`ptcp:PORT[:IP]`, `punix:PATH`) and closes those no row
    /// names any more. Other targets (active `tcp:`, TLS) are kept in the row and not acted on.
    fn reconcile_managers(&self, hub: &mut Hub) {
        let Some(state) = self.me.upgrade() else { return };
        let wanted: Vec<String> = self
            .config
            .ovsdb
            .columns
            .keys()
            .filter_map(|k| k.strip_prefix("Manager/"))
            .filter(|t| t.starts_with("ptcp:") || t.starts_with("punix:"))
            .map(str::to_string)
            .collect();
        hub.managers.retain(|t, stop| {
            let keep = wanted.contains(t);
            if !keep {
                stop.store(true, Ordering::Relaxed);
                tracing::info!("OVSDB manager {t}: closed");
            }
            keep
        });
        for t in wanted {
            if hub.managers.contains_key(&t) {
                continue;
            }
            let stop = Arc::new(AtomicBool::new(false));
            let shared = self.ovsdb.clone().unwrap_or_default();
            let opened = listen(&t, &state, &shared, Some(stop.clone()));
            match opened {
                Ok(()) => {
                    tracing::info!("OVSDB manager {t}: listening");
                    hub.managers.insert(t, stop);
                }
                // As ovsdb-server, the row stays; the next change tries again.
                Err(e) => tracing::warn!("OVSDB manager {t}: {e}"),
            }
        }
    }
}

/// Accepts clients on a thread of their own (`accept` is the listener's); each gets its session.
/// With `stop`, the listener is non-blocking and the thread ends (closing it) once the flag is set.
fn serve<S: Stream>(
    name: &str,
    mut accept: impl FnMut() -> std::io::Result<S> + Send + 'static,
    state: &Arc<Mutex<State>>,
    hub: &Shared,
    stop: Option<Arc<AtomicBool>>,
) -> std::io::Result<()> {
    let (state, hub) = (state.clone(), hub.clone());
    std::thread::Builder::new().name(name.into()).spawn(move || loop {
        if stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
            return;
        }
        match accept().and_then(|s| s.blocking().and_then(|_| s.twin()).map(|w| (s, w))) {
            Ok((s, w)) => spawn_client(&state, &hub, Box::new(s), Box::new(w)),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(100)),
            Err(e) => {
                // (Out of file descriptors, say: no busy loop while it lasts.)
                tracing::warn!("OVSDB accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    })?;
    Ok(())
}

/// Why weftd leaves `compat:PATH` (Open vSwitch's own socket path, for scripts that run plain `ovs-vsctl`)
/// alone: Open vSwitch is installed (`ovsdb-server` is on weftd's PATH) or something answers there.
fn compat_blocked(path: &str) -> Option<String> {
    let path_var = std::env::var("PATH").unwrap_or_default();
    if let Some(dir) =
        path_var.split(':').find(|d| !d.is_empty() && std::path::Path::new(d).join("ovsdb-server").exists())
    {
        return Some(format!("Open vSwitch is installed ({dir}/ovsdb-server)"));
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Some("another server answers there".into());
    }
    None
}

/// A client's socket halves; `Shutdown` closes it from the writer's side.
pub trait Conn: Read + Send {
    fn shutdown(&self);
}
impl Conn for std::os::unix::net::UnixStream {
    fn shutdown(&self) {
        let _ = std::os::unix::net::UnixStream::shutdown(self, std::net::Shutdown::Both);
    }
}
impl Conn for std::net::TcpStream {
    fn shutdown(&self) {
        let _ = std::net::TcpStream::shutdown(self, std::net::Shutdown::Both);
    }
}

fn spawn_client(state: &Arc<Mutex<State>>, hub: &Shared, reader: Box<dyn Conn>, mut writer: Box<dyn WriteConn>) {
    let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
    let gone = Arc::new(AtomicBool::new(false));
    let id = {
        let mut h = lock(hub);
        h.next_client += 1;
        let id = h.next_client;
        h.clients.insert(id, Client { out: tx.clone(), monitors: Vec::new(), gone: gone.clone() });
        id
    };
    let gone_w = gone.clone();
    // A client that stops reading for this long is dropped.
    writer.set_timeout(Duration::from_secs(30));
    let _ = std::thread::Builder::new().name("ovsdb-out".into()).spawn(move || {
        for msg in rx {
            if gone_w.load(Ordering::Relaxed) || writer.write_all(&msg).is_err() {
                break;
            }
        }
        writer.close();
    });
    let (state, hub) = (state.clone(), hub.clone());
    let _ = std::thread::Builder::new().name("ovsdb-in".into()).spawn(move || {
        let mut session = Session { id, state, hub: hub.clone(), out: tx, gone };
        session.run(reader);
        lock(&hub).drop_client(id);
    });
}

/// The writing half, closable.
pub trait WriteConn: Write + Send {
    fn close(&self);
    fn set_timeout(&self, t: Duration);
}
impl WriteConn for std::os::unix::net::UnixStream {
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
    fn set_timeout(&self, t: Duration) {
        let _ = self.set_write_timeout(Some(t));
    }
}
impl WriteConn for std::net::TcpStream {
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
    fn set_timeout(&self, t: Duration) {
        let _ = self.set_write_timeout(Some(t));
    }
}

struct Session {
    id: u64,
    state: Arc<Mutex<State>>,
    hub: Shared,
    out: SyncSender<Vec<u8>>,
    gone: Arc<AtomicBool>,
}

impl Session {
    fn send(&self, v: &Value) -> bool {
        let msg = serde_json::to_vec(v).unwrap_or_default();
        match self.out.try_send(msg) {
            Ok(()) => true,
            Err(_) => {
                if !self.gone.swap(true, Ordering::Relaxed) {
                    tracing::warn!("OVSDB client {} does not read its replies; dropped", self.id);
                }
                false
            }
        }
    }

    /// The last word to a client whose input is not JSON-RPC (the writer sends it, then closes).
    fn refuse(&self, details: String) {
        let _ = self.reply(&Value::Null, Err(DbError::syntax(details).to_json()));
    }

    fn reply(&self, id: &Value, result: Result<Value, Value>) -> bool {
        let v = match result {
            Ok(r) => json!({"id": id, "result": r, "error": Value::Null}),
            Err(e) => json!({"id": id, "result": Value::Null, "error": e}),
        };
        self.send(&v)
    }

    fn run(&mut self, mut r: Box<dyn Conn>) {
        let mut buf: Vec<u8> = Vec::with_capacity(64 << 10);
        let mut chunk = vec![0u8; 64 << 10];
        loop {
            // Every complete message in the buffer, then more bytes.
            loop {
                match weft_api::ovsdb::frame(&buf) {
                    Ok(Some(n)) => {
                        let msg: Result<Value, _> = serde_json::from_slice(&buf[..n]);
                        buf.drain(..n);
                        match msg {
                            Ok(v) => {
                                if !self.handle(v) {
                                    return;
                                }
                                if self.gone.load(Ordering::Relaxed) {
                                    // Its queue is full: it does not read. Closing unblocks the writer.
                                    r.shutdown();
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!("OVSDB client {}: malformed JSON ({e}); connection closed", self.id);
                                // The writer sends this, then closes the connection.
                                self.refuse(format!("malformed JSON: {e}"));
                                return;
                            }
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        tracing::warn!("OVSDB client {}: {e}; connection closed", self.id);
                        self.refuse(e);
                        return;
                    }
                }
            }
            if buf.len() > MAX_MESSAGE {
                tracing::warn!("OVSDB client {}: message over {} MiB; connection closed", self.id, MAX_MESSAGE >> 20);
                self.refuse(format!("message longer than {} MiB", MAX_MESSAGE >> 20));
                return;
            }
            if self.gone.load(Ordering::Relaxed) {
                r.shutdown();
                return;
            }
            match r.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Handles one message; `false` ends the session.
    fn handle(&mut self, msg: Value) -> bool {
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            // A reply (to an echo weftd never sends) is ignored; anything else is not JSON-RPC.
            if msg.get("result").is_some() || msg.get("error").is_some() {
                return true;
            }
            tracing::warn!("OVSDB client {}: not a JSON-RPC message; connection closed", self.id);
            self.refuse("a JSON-RPC message needs a \"method\"".into());
            return false;
        };
        let id = msg.get("id").cloned().unwrap_or(Value::Null);
        let params = msg.get("params").and_then(Value::as_array).cloned().unwrap_or_default();
        let notification = id.is_null();
        let result = match method {
            "echo" => Ok(Value::Array(params)),
            "list_dbs" => Ok(json!(["Open_vSwitch"])),
            "get_schema" => db_name(&params).map(|_| vswitch().to_json()),
            "transact" => db_name(&params).map(|_| self.transact(&params[1..])),
            "monitor" | "monitor_cond" | "monitor_cond_since" => self.monitor(method, &params),
            "monitor_cond_change" => self.cond_change(&params),
            "monitor_cancel" => self.cancel(&params),
            "lock" | "steal" | "unlock" => self.lock(method, &params),
            "set_db_change_aware" => Ok(json!({})),
            other => Err(json!({"error": "unknown method", "details": format!("weftd has no method {other:?}")})),
        };
        if !notification {
            self.reply(&id, result);
        }
        true
    }

    fn transact(&mut self, ops: &[Value]) -> Value {
        let started = Instant::now();
        let longest = ops
            .iter()
            .filter(|o| o.get("op").and_then(Value::as_str) == Some("wait"))
            .filter_map(|o| o.get("timeout").and_then(Value::as_u64))
            .max()
            .map_or(Duration::ZERO, |ms| Duration::from_millis(ms).min(MAX_WAIT));
        loop {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            let Some(hub) = state.ovsdb.clone() else { return json!([]) };
            state.publish_ovsdb();
            let (db, salt) = {
                let h = lock(&hub);
                (h.db.clone(), state.config.ovsdb.salt)
            };
            let owner = |name: &str| lock(&hub).locks.get(name).and_then(|q| q.first()) == Some(&self.id);
            let mut new_uuid = || {
                let mut b = [0u8; 16];
                weft_ipsec::crypto::random(&mut b);
                Uuid::from_random(b)
            };
            let mut cx =
                txn::Context { new_uuid: &mut new_uuid, owns_lock: &owner, expired: started.elapsed() >= longest };
            match txn::run(vswitch(), &db, ops, &mut cx) {
                Outcome::Blocked => {
                    drop(state);
                    std::thread::sleep(Duration::from_millis(50));
                    continue;
                }
                Outcome::Done { mut results, db: Some(new), comments } => {
                    for c in comments {
                        tracing::info!("OVSDB transaction: {c}");
                    }
                    let applied = to_config(&new, state.config.config(), salt).map_err(|e| e.to_json()).and_then(|c| {
                        state
                            .apply_config(c)
                            .map_err(|e| DbError::constraint(format!("weft cannot carry this out: {e}")).to_json())
                    });
                    match applied {
                        Ok(()) => {
                            tracing::info!("configuration changed by an OVSDB transaction");
                            // A change weft made nothing of (the same configuration) still shows.
                            state.publish_ovsdb();
                        }
                        Err(e) => {
                            tracing::debug!("OVSDB transaction refused: {e}");
                            results.push(e);
                        }
                    }
                    return Value::Array(results);
                }
                other => return other.results(),
            }
        }
    }

    fn monitor(&mut self, method: &str, params: &[Value]) -> Result<Value, Value> {
        db_name(params)?;
        let (Some(mid), Some(reqs)) = (params.get(1), params.get(2)) else {
            return Err(DbError::syntax("monitor needs [db, id, requests]").to_json());
        };
        let version = match method {
            "monitor" => 1,
            "monitor_cond" => 2,
            _ => 3,
        };
        let m = Monitor::parse(vswitch(), version, mid.clone(), reqs).map_err(|e| e.to_json())?;
        // The status columns as they are now, then the monitor's first contents from them.
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.publish_ovsdb();
        let mut h = lock(&self.hub);
        let initial = m.initial(vswitch(), &h.db);
        let txn_id = Uuid::derived(h.txn_id, "txn", "").to_string();
        let c = h.clients.get_mut(&self.id).ok_or_else(|| json!({"error": "not connected"}))?;
        if c.monitors.iter().any(|x| x.id == *mid) {
            return Err(json!({"error": "duplicate monitor ID", "details": format!("monitor {mid} exists")}));
        }
        c.monitors.push(m);
        Ok(if version == 3 { json!([false, txn_id, initial]) } else { initial })
    }

    fn cond_change(&mut self, params: &[Value]) -> Result<Value, Value> {
        let (Some(old), Some(new), Some(reqs)) = (params.first(), params.get(1), params.get(2)) else {
            return Err(DbError::syntax("monitor_cond_change needs [id, new id, requests]").to_json());
        };
        let mut h = lock(&self.hub);
        let db = h.db.clone();
        let c = h.clients.get_mut(&self.id).ok_or_else(|| json!({"error": "not connected"}))?;
        let m = c.monitors.iter_mut().find(|m| m.id == *old).ok_or_else(|| json!({"error": "unknown monitor"}))?;
        let update = m.change_conditions(vswitch(), &db, reqs).map_err(|e| e.to_json())?;
        m.id = new.clone();
        let version = m.version;
        if let Some(u) = update {
            let msg = if version == 3 {
                notify("update3", json!([new, Uuid::derived(h.txn_id, "txn", "").to_string(), u]))
            } else {
                notify("update2", json!([new, u]))
            };
            h.send(self.id, msg);
        }
        Ok(json!({}))
    }

    fn cancel(&mut self, params: &[Value]) -> Result<Value, Value> {
        let mid = params.first().ok_or_else(|| DbError::syntax("monitor_cancel needs [id]").to_json())?;
        let mut h = lock(&self.hub);
        let c = h.clients.get_mut(&self.id).ok_or_else(|| json!({"error": "not connected"}))?;
        let before = c.monitors.len();
        c.monitors.retain(|m| m.id != *mid);
        if c.monitors.len() == before {
            return Err(json!({"error": "unknown monitor"}));
        }
        Ok(json!({}))
    }

    fn lock(&mut self, method: &str, params: &[Value]) -> Result<Value, Value> {
        let name =
            params.first().and_then(Value::as_str).ok_or_else(|| DbError::syntax("needs [lock name]").to_json())?;
        let mut h = lock(&self.hub);
        let me = self.id;
        let q = h.locks.entry(name.to_string()).or_default();
        match method {
            "lock" => {
                if !q.contains(&me) {
                    q.push(me);
                }
                Ok(json!({"locked": q.first() == Some(&me)}))
            }
            "steal" => {
                let before = q.first().copied();
                q.retain(|c| *c != me);
                q.insert(0, me);
                if let Some(prev) = before.filter(|p| *p != me) {
                    q.retain(|c| *c != prev);
                    h.send(prev, notify("stolen", json!([name])));
                }
                Ok(json!({"locked": true}))
            }
            _ => {
                let owned = q.first() == Some(&me);
                q.retain(|c| *c != me);
                let next = if owned { q.first().copied() } else { None };
                if q.is_empty() {
                    h.locks.remove(name);
                }
                if let Some(n) = next {
                    h.send(n, notify("locked", json!([name])));
                }
                Ok(json!({}))
            }
        }
    }
}

/// The database a request names: only `Open_vSwitch` is served.
fn db_name(params: &[Value]) -> Result<&str, Value> {
    match params.first().and_then(Value::as_str) {
        Some("Open_vSwitch") => Ok("Open_vSwitch"),
        Some(other) => {
            Err(json!({"error": "unknown database", "details": format!("weftd serves Open_vSwitch, not {other:?}")}))
        }
        None => Err(DbError::syntax("the first parameter names the database").to_json()),
    }
}
