//! The etcd backend: a writer thread that holds this host's lease and keeps its keys in step with the local
//! routes, and a watcher thread that reads every key under the prefix and then watches it from the revision
//! it read at, reading everything again after a compaction or a broken stream.

use super::{Backend, BackendCtx, LocalSet, Publish, RemoteOp};
use std::net::{IpAddr, ToSocketAddrs};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};
use weft_api::EtcdSpec;
use weft_control::etcd::{self, Client, Record, WatchMsg};
use weft_control::http::Endpoint;
use weft_control::LocalChange;

/// The backend's one source of routes.
const SOURCE: u32 = 0;

impl Backend for EtcdSpec {
    const NAME: &'static str = "etcd";

    fn start(self, ctx: BackendCtx) -> Vec<Sender<Publish>> {
        start(ctx, self)
    }
}

fn start(ctx: BackendCtx, spec: EtcdSpec) -> Vec<Sender<Publish>> {
    let (tx, rx) = std::sync::mpsc::channel();
    let (c, s) = (ctx.clone(), spec.clone());
    let spawned = std::thread::Builder::new().name("etcd-writer".into()).spawn(move || writer(c, s, rx));
    if let Err(e) = spawned {
        tracing::error!("cannot start the etcd writer: {e}");
    }
    let spawned = std::thread::Builder::new().name("etcd-watch".into()).spawn(move || watcher(ctx, spec));
    if let Err(e) = spawned {
        tracing::error!("cannot start the etcd watcher: {e}");
    }
    vec![tx]
}

/// Our VTEP address: `local_ip`, else the source address towards the first etcd member that has one.
fn my_address(ctx: &BackendCtx, spec: &EtcdSpec) -> Option<IpAddr> {
    if ctx.me.is_some() {
        return ctx.me;
    }
    spec.endpoints.iter().find_map(|u| {
        let ep = Endpoint::parse(u).ok()?;
        let ip = (ep.host.as_str(), ep.port).to_socket_addrs().ok()?.next()?.ip();
        weft_sys::udp::source_towards(ip).ok().filter(|a| !a.is_loopback())
    })
}

fn puts_of(spec: &EtcdSpec, me: IpAddr, changes: &[LocalChange]) -> (Vec<(String, String)>, Vec<String>) {
    let (mut puts, mut dels) = (Vec::new(), Vec::new());
    for c in changes {
        match *c {
            LocalChange::Vni { vni, serve: true } => puts.push((etcd::vtep_key(&spec.prefix, vni, me), "{}".into())),
            LocalChange::Vni { vni, serve: false } => dels.push(etcd::vtep_key(&spec.prefix, vni, me)),
            LocalChange::Announce { key, seq } => {
                puts.push((etcd::mac_key(&spec.prefix, key, me), etcd::mac_value(seq, None)))
            }
            LocalChange::Withdraw { key } => dels.push(etcd::mac_key(&spec.prefix, key, me)),
        }
    }
    (puts, dels)
}

/// The etcd client the settings describe: TLS for `https://` (the CA, and a client certificate if given) and
/// credentials. A configuration that cannot be loaded (an unreadable or malformed PEM file) is reported in
/// `show` and the log, and the backend stops.
fn client(ctx: &BackendCtx, spec: &EtcdSpec, source: u32) -> Option<Client> {
    let tls = match &spec.tls {
        None => None,
        Some(t) => {
            let ck = t.cert_key.as_ref().map(|(c, k)| (c.as_str(), k.as_str()));
            match weft_control::tls::client_config(&t.ca_cert, ck, weft_control::tls::NameCheck::Verify) {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::error!(bridge = %ctx.bridge, "etcd TLS settings: {e}");
                    ctx.send(source, RemoteOp::Status(format!("TLS settings unusable: {e}")));
                    return None;
                }
            }
        }
    };
    let credentials = spec.user.as_ref().map(|(u, p)| (u.clone(), p.0.clone()));
    match Client::new(&spec.endpoints, tls, credentials) {
        Ok(c) => Some(c),
        Err(e) => {
            tracing::error!(bridge = %ctx.bridge, "etcd: {e}");
            ctx.send(source, RemoteOp::Status(e));
            None
        }
    }
}

fn writer(ctx: BackendCtx, spec: EtcdSpec, rx: Receiver<Publish>) {
    let Some(me) = announce_me(&ctx, &spec) else { return };
    let Some(mut client) = client(&ctx, &spec, SOURCE) else { return };
    let mut local = LocalSet::default();
    let mut lease = 0i64;
    let mut last_error: Option<String> = None;
    let keepalive_every = Duration::from_secs((spec.ttl / 3).max(1));
    let mut next_keepalive = Instant::now();
    loop {
        if ctx.stopped() {
            if lease != 0 {
                let _ = client.revoke(lease);
            }
            return;
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Publish::Changes { changes }) => {
                local.apply(&changes);
                if lease != 0 {
                    let (puts, dels) = puts_of(&spec, me, &changes);
                    if let Err(e) = client.write(&puts, &dels, lease) {
                        tracing::warn!(bridge = %ctx.bridge, "etcd: cannot publish: {e}; publishing everything again");
                        lease = 0;
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        if lease == 0 {
            // (Re)join: a fresh lease, and every local key written under it.
            let joined = client.grant(spec.ttl).and_then(|id| {
                let mut all: Vec<LocalChange> =
                    local.vnis.iter().map(|vni| LocalChange::Vni { vni: *vni, serve: true }).collect();
                all.extend(local.macs.iter().map(|(key, seq)| LocalChange::Announce { key: *key, seq: *seq }));
                let (puts, _) = puts_of(&spec, me, &all);
                client.write(&puts, &[], id).map(|_| id)
            });
            match joined {
                Ok(id) => {
                    lease = id;
                    next_keepalive = Instant::now() + keepalive_every;
                    tracing::info!(bridge = %ctx.bridge, "etcd: joined through {} (lease {id:x}, TTL {} s)", client.current(), spec.ttl);
                    ctx.send(SOURCE, RemoteOp::Status(format!("joined through {} (lease {id:x})", client.current())));
                }
                Err(e) => {
                    let status = format!("cannot join: {e}");
                    // Once per distinct reason (a refused password or certificate does not fix itself).
                    if last_error.as_deref() != Some(status.as_str()) {
                        tracing::warn!(bridge = %ctx.bridge, "etcd: {status}");
                        last_error = Some(status.clone());
                    }
                    ctx.send(SOURCE, RemoteOp::Status(status));
                    if !ctx.sleep(Duration::from_secs(1)) {
                        return;
                    }
                }
            }
            continue;
        }
        if Instant::now() >= next_keepalive {
            match client.keepalive(lease) {
                Ok(ttl) if ttl > 0 => next_keepalive = Instant::now() + keepalive_every,
                Ok(_) => {
                    tracing::warn!(bridge = %ctx.bridge, "etcd: lease {lease:x} expired; joining again");
                    lease = 0;
                }
                Err(e) => {
                    ctx.send(SOURCE, RemoteOp::Status(format!("keepalive failed: {e}")));
                    next_keepalive = Instant::now() + Duration::from_secs(1);
                }
            }
        }
    }
}

fn record(spec: &EtcdSpec, key: &str, value: Option<&str>) -> Option<Record> {
    etcd::parse_record(&spec.prefix, key, value)
}

/// Waits until our VTEP address is known and reports it (before any route: our own keys, left from before a
/// restart, must be recognised as ours).
fn announce_me(ctx: &BackendCtx, spec: &EtcdSpec) -> Option<IpAddr> {
    loop {
        if let Some(me) = my_address(ctx, spec) {
            ctx.send(SOURCE, RemoteOp::Me(me));
            return Some(me);
        }
        ctx.send(SOURCE, RemoteOp::Status("no route to any etcd member; waiting".into()));
        if !ctx.sleep(Duration::from_secs(1)) {
            return None;
        }
    }
}

fn watcher(ctx: BackendCtx, spec: EtcdSpec) {
    if announce_me(&ctx, &spec).is_none() {
        return;
    }
    let Some(mut client) = client(&ctx, &spec, SOURCE + 1) else { return };
    while !ctx.stopped() {
        // A full read, then changes from the revision after it.
        let (revision, kvs) = match client.range_prefix(&spec.prefix) {
            Ok(r) => r,
            Err(e) => {
                ctx.send(SOURCE + 1, RemoteOp::Status(format!("cannot read {}: {e}", spec.prefix)));
                ctx.sleep(Duration::from_secs(1));
                continue;
            }
        };
        let all: Vec<(Vec<u8>, Record)> =
            kvs.iter().filter_map(|(k, v)| Some((k.clone().into_bytes(), record(&spec, k, Some(v))?))).collect();
        let n = all.len();
        if !ctx.send(SOURCE, RemoteOp::Snapshot(all)) {
            return;
        }
        let mut watch = match client.watch(&spec.prefix, revision + 1) {
            Ok(w) => w,
            Err(e) => {
                ctx.send(SOURCE + 1, RemoteOp::Status(format!("cannot watch: {e}")));
                ctx.sleep(Duration::from_secs(1));
                continue;
            }
        };
        let _ = watch.set_timeout(Duration::from_millis(500));
        tracing::info!(bridge = %ctx.bridge, "etcd: {n} keys at revision {revision}; watching through {}", client.current());
        ctx.send(
            SOURCE + 1,
            RemoteOp::Status(format!("watching from revision {} through {}", revision + 1, client.current())),
        );
        loop {
            if ctx.stopped() {
                return;
            }
            match watch.next_msg() {
                Ok(WatchMsg::Idle) | Ok(WatchMsg::Created) => {}
                Ok(WatchMsg::Events { events, .. }) => {
                    for e in events {
                        let id = e.key.clone().into_bytes();
                        let op = if e.put {
                            match record(&spec, &e.key, Some(&e.value)) {
                                Some(r) => RemoteOp::Add(id, r),
                                None => continue,
                            }
                        } else {
                            RemoteOp::Remove(id)
                        };
                        if !ctx.send(SOURCE, op) {
                            return;
                        }
                    }
                }
                Ok(WatchMsg::Compacted(c)) => {
                    tracing::info!(bridge = %ctx.bridge, "etcd: revision {} compacted (now {c}); reading everything again", revision + 1);
                    break;
                }
                Ok(WatchMsg::Canceled(why)) => {
                    tracing::warn!(bridge = %ctx.bridge, "etcd: watch canceled: {why}; reading everything again");
                    break;
                }
                Err(e) => {
                    tracing::warn!(bridge = %ctx.bridge, "etcd: watch through {} broke: {e}; reading everything again", client.current());
                    break;
                }
            }
        }
    }
}
