//! The BGP EVPN backend: one iBGP session per route reflector (`other_config:bgp-peers`), each on its own
//! thread. weft connects (port 179); the reflector listens. Local VNIs go out as type-3 routes, local MACs as
//! type-2 routes; reflected routes become remote VTEPs and MACs, except our own (ORIGINATOR_ID = our router
//! id, or our VTEP as next hop).

use super::{mac_record, Backend, BackendCtx, LocalSet, Publish, RemoteOp};
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};
use weft_api::EvpnSpec;
use weft_control::bgp::{self, Announce, Event, EvpnRoute, Session};
use weft_control::etcd::Record;
use weft_control::{LocalChange, MacKey, Vni};

impl Backend for EvpnSpec {
    const NAME: &'static str = "evpn";

    fn start(self, ctx: BackendCtx) -> Vec<Sender<Publish>> {
        start(ctx, self)
    }
}

fn start(ctx: BackendCtx, spec: EvpnSpec) -> Vec<Sender<Publish>> {
    let mut out = Vec::new();
    for (i, peer) in spec.peers.iter().enumerate() {
        let (tx, rx) = std::sync::mpsc::channel();
        let (c, s, p) = (ctx.clone(), spec.clone(), *peer);
        let spawned =
            std::thread::Builder::new().name(format!("bgp-{peer}")).spawn(move || peer_loop(c, s, p, i as u32, rx));
        match spawned {
            Ok(_) => out.push(tx),
            Err(e) => tracing::error!("cannot start the BGP session to {peer}: {e}"),
        }
    }
    out
}

/// The route distinguisher of our routes in `vni`: router-id:VNI (low 16 bits), as FRR derives them.
fn rd(spec: &EvpnSpec, vni: Vni) -> [u8; 8] {
    bgp::rd_ip(spec.router_id, vni as u16)
}

fn imet(spec: &EvpnSpec, vni: Vni, me: IpAddr) -> EvpnRoute {
    EvpnRoute::Imet { rd: rd(spec, vni), tag: 0, origin: me }
}

fn mac_route(spec: &EvpnSpec, key: MacKey) -> EvpnRoute {
    EvpnRoute::Mac { rd: rd(spec, key.vni), vni: key.vni, mac: key.mac, ip: None }
}

/// What identifies a route for its withdrawal: the NLRI without its label (RFC 7432 leaves the label of a
/// withdrawn route unread).
fn route_id(r: &EvpnRoute) -> Vec<u8> {
    let mut b = Vec::with_capacity(48);
    match *r {
        EvpnRoute::Mac { rd, mac, ip, .. } => EvpnRoute::Mac { rd, vni: 0, mac, ip }.emit(&mut b),
        EvpnRoute::Imet { .. } => r.emit(&mut b),
    }
    b
}

fn peer_loop(ctx: BackendCtx, spec: EvpnSpec, peer: IpAddr, source: u32, rx: Receiver<Publish>) {
    let mut local = LocalSet::default();
    let mut backoff = Duration::from_secs(1);
    while !ctx.stopped() {
        loop {
            match rx.try_recv() {
                Ok(Publish::Changes { changes }) => local.apply(&changes),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        let addr = SocketAddr::new(peer, bgp::PORT);
        let key = spec.password.as_ref().map(|p| p.0.as_bytes());
        let stream = match weft_sys::tcp::connect(addr, key, Duration::from_secs(3)) {
            Ok(s) => s,
            Err(e) => {
                // With TCP MD5, a peer with another password (or none) drops our SYNs: all we see is a time-out.
                let hint = if key.is_some() && e.kind() == std::io::ErrorKind::TimedOut {
                    " (bgp-password is set: a peer whose password differs, or that has none, never answers)"
                } else {
                    ""
                };
                let status = format!("peer {peer}: connect failed: {e}{hint}");
                if backoff >= Duration::from_secs(4) {
                    tracing::warn!(bridge = %ctx.bridge, "BGP {status}");
                }
                ctx.send(source, RemoteOp::Status(status));
                ctx.sleep(backoff);
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let me = match ctx.me.or_else(|| stream.local_addr().ok().map(|a| a.ip())) {
            Some(me) => me,
            None => continue,
        };
        ctx.send(source, RemoteOp::Me(me));
        let why = session(&ctx, &spec, stream, me, source, &mut local, &rx);
        tracing::info!(bridge = %ctx.bridge, "BGP session to {peer} down: {why}");
        ctx.send(source, RemoteOp::Clear);
        ctx.send(source, RemoteOp::Status(format!("peer {peer}: down ({why})")));
        if why == "stopped" {
            return;
        }
        ctx.sleep(backoff);
        if why.starts_with("established") {
            backoff = Duration::from_secs(1);
        } else {
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

/// Appends UPDATEs for local changes.
fn emit_changes(out: &mut Vec<u8>, spec: &EvpnSpec, me: IpAddr, changes: &[LocalChange]) {
    let mut gone = Vec::new();
    for c in changes {
        match *c {
            LocalChange::Vni { vni, serve: true } => {
                bgp::emit_reach(out, &imet(spec, vni, me), &Announce { asn: spec.asn, next_hop: me, vni, seq: 0 })
            }
            LocalChange::Vni { vni, serve: false } => gone.push(imet(spec, vni, me)),
            LocalChange::Announce { key, seq } => bgp::emit_reach(
                out,
                &mac_route(spec, key),
                &Announce { asn: spec.asn, next_hop: me, vni: key.vni, seq },
            ),
            LocalChange::Withdraw { key } => gone.push(mac_route(spec, key)),
        }
    }
    // Withdrawals go together, as many as fit in one message each.
    for chunk in gone.chunks(100) {
        bgp::emit_unreach(out, chunk);
    }
}

fn everything(local: &LocalSet) -> Vec<LocalChange> {
    let mut all: Vec<LocalChange> = local.vnis.iter().map(|vni| LocalChange::Vni { vni: *vni, serve: true }).collect();
    all.extend(local.macs.iter().map(|(key, seq)| LocalChange::Announce { key: *key, seq: *seq }));
    all
}

/// The VNI of a route: its label, else a route target AS:VNI.
fn vni_of(label: Vni, u: &bgp::Update) -> Vni {
    if label != 0 {
        return label;
    }
    u.route_targets.first().map_or(0, |(_, n)| *n & 0xff_ffff)
}

fn received(ctx: &BackendCtx, spec: &EvpnSpec, me: IpAddr, source: u32, u: bgp::Update) {
    for r in &u.unreach {
        ctx.send(source, RemoteOp::Remove(route_id(r)));
    }
    if u.reach.is_empty() {
        return;
    }
    let own = u.originator_id == Some(spec.router_id) || u.next_hop == Some(me);
    if own {
        return;
    }
    for r in &u.reach {
        let (vni, vtep) = match *r {
            EvpnRoute::Mac { vni, .. } => {
                let Some(vtep) = u.next_hop else { continue };
                (vni_of(vni, &u), vtep)
            }
            EvpnRoute::Imet { origin, .. } => (vni_of(u.pmsi_vni.unwrap_or(0), &u), origin),
        };
        if let Some(why) = bgp::import_problem(&u, spec.asn, vni, vtep, me) {
            tracing::debug!(bridge = %ctx.bridge, "EVPN route not imported: {why}");
            continue;
        }
        let rec = match *r {
            EvpnRoute::Mac { mac, ip, .. } => mac_record(MacKey { vni, mac }, vtep, u.mac_mobility_seq, ip),
            EvpnRoute::Imet { .. } => Record::Vtep { vni, vtep },
        };
        ctx.send(source, RemoteOp::Add(route_id(r), rec));
    }
}

/// Runs one session until it ends; returns why.
fn session(
    ctx: &BackendCtx,
    spec: &EvpnSpec,
    mut stream: TcpStream,
    me: IpAddr,
    source: u32,
    local: &mut LocalSet,
    rx: &Receiver<Publish>,
) -> String {
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(5)));
    let t0 = Instant::now();
    let router_id: Ipv4Addr = spec.router_id;
    let mut s = Session::new(spec.asn, router_id, spec.hold, t0.elapsed());
    let peer = stream.peer_addr().map(|a| a.ip().to_string()).unwrap_or_default();
    let mut buf = vec![0u8; 65536];
    let mut was_up = false;
    loop {
        if ctx.stopped() {
            s.close();
            let _ = stream.write_all(&s.out);
            return "stopped".into();
        }
        if !s.out.is_empty() {
            if let Err(e) = stream.write_all(&s.out) {
                return format!("write failed: {e}");
            }
            s.out.clear();
            s.sent(t0.elapsed());
        }
        let mut events = Vec::new();
        match stream.read(&mut buf) {
            Ok(0) => {
                return if was_up {
                    "established session closed by the peer".into()
                } else {
                    "closed by the peer".into()
                }
            }
            Ok(n) => events.extend(s.input(&buf[..n], t0.elapsed())),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return format!("read failed: {e}"),
        }
        events.extend(s.tick(t0.elapsed()));
        for ev in events {
            match ev {
                Event::Up => {
                    was_up = true;
                    tracing::info!(bridge = %ctx.bridge, "BGP session to {peer} established");
                    ctx.send(source, RemoteOp::Status(format!("peer {peer}: established")));
                    emit_changes(&mut s.out, spec, me, &everything(local));
                    bgp::emit_end_of_rib(&mut s.out);
                }
                Event::Refresh => emit_changes(&mut s.out, spec, me, &everything(local)),
                Event::Update(u) => received(ctx, spec, me, source, u),
                Event::Down(why) => {
                    let _ = stream.write_all(&s.out);
                    return if was_up { format!("established session ended: {why}") } else { why };
                }
            }
        }
        loop {
            match rx.try_recv() {
                Ok(Publish::Changes { changes }) => {
                    local.apply(&changes);
                    if s.established() {
                        emit_changes(&mut s.out, spec, me, &changes);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    s.close();
                    let _ = stream.write_all(&s.out);
                    return "stopped".into();
                }
            }
        }
    }
}
