//! The control socket: one JSON request per line, answered with one JSON response per line.
//!
//! Changes are transactions: the request is applied to a copy of the configuration, the copy is validated
//! whole, the devices and sockets it needs are opened, it is persisted, and only then does the datapath
//! switch to it. Any failure on the way returns an error and leaves the running state and the db as they were.

mod learn;
mod replies;

use crate::msgs::{DpHandle, DpMsg, Merge};
use crate::pipeline::{PortKind, Resources, OFPORT_LOCAL};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_api::config::Valid;
use weft_api::{reply, Config, Request, Response};

pub struct State {
    /// The running configuration, checked, with its options parsed.
    pub config: Valid,
    pub db: PathBuf,
    pub resources: Resources,
    pub dp: DpHandle,
    /// The IKE thread (IPsec for tunnels with `options:psk`).
    pub ike: std::sync::mpsc::SyncSender<crate::msgs::IpsecMsg>,
    /// The control-plane thread (etcd, BGP EVPN) and what it reports for `show`.
    pub cp: std::sync::mpsc::Sender<crate::cp::CpMsg>,
    pub cp_status: crate::cp::Shared,
    pub generation: u64,
    /// What the running pipeline knows of each port: its state, MTU and namespace, for `show`.
    pub port_info: BTreeMap<String, PortInfo>,
    /// OpenFlow listeners and connections the bridges' `controller` settings ask for.
    pub of: crate::ofconn::Manager,
    /// This state's own handle, for the OpenFlow threads.
    pub me: std::sync::Weak<Mutex<State>>,
    /// Each port's link as last seen: up or not, and (system ports) the interface index it had.
    pub links: BTreeMap<String, (bool, Option<u32>)>,
    /// Why the flows the next change removes go (OFPT_FLOW_REMOVED's reason), by flow id, and for the
    /// others; back to "deleted" after each change.
    pub removal_reasons: std::collections::HashMap<u64, u8>,
    pub removal_reason: u8,
    /// Per bridge with controllers to connect to: when one was last seen connected (or the watch began).
    pub controller_seen: std::collections::HashMap<String, std::time::Instant>,
    /// The OVSDB server's published view and its clients, once it runs.
    pub ovsdb: Option<crate::ovsdb::Shared>,
    /// Learned flows learned again as they were, by (bridge, flow id): when (their hard timeout starts
    /// there, as OVS's learn refreshes it).
    pub learn_refreshed: std::collections::HashMap<(String, u64), u64>,
    /// An OpenFlow bundle is being committed: changes are kept, not applied ([`crate::ofconn::Daemon`]).
    pub deferring: bool,
}

/// How long a `fail_mode=standalone` bridge waits without a controller before it fails open (OVS: three
/// times its five-second inactivity probe).
pub const FAIL_OPEN_AFTER: Duration = Duration::from_secs(15);

/// What the running pipeline knows of a port, for `show`.
#[derive(Debug, Clone, Default)]
pub struct PortInfo {
    pub mtu: Option<u32>,
    /// The namespace another process moved the TAP into.
    pub netns: Option<String>,
    /// Why the port is not running.
    pub error: Option<String>,
}

/// Whether interface `name` of this namespace is up: it exists, is administratively up, and its operational
/// state is not down (a veth whose peer is down, a NIC without carrier).
fn iface_up(name: &str) -> bool {
    let read = |f: &str| std::fs::read_to_string(format!("/sys/class/net/{name}/{f}")).unwrap_or_default();
    let flags = u32::from_str_radix(read("flags").trim().trim_start_matches("0x"), 16).unwrap_or(0);
    let oper = read("operstate");
    flags & 1 != 0 && !matches!(oper.trim(), "down" | "lowerlayerdown" | "notpresent" | "")
}

const DP_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest request line the control socket takes (16 MiB: `add-flows` of about 250 000 flows in one
/// transaction). A longer one is answered with an error and the connection is closed; weftd never holds
/// more than this for one request.
pub const MAX_REQUEST: usize = 16 << 20;

/// Reads one request line of at most `max` bytes (without its newline): `Ok(None)` at the end of the stream,
/// `Err` when the line is longer than `max`.
fn read_request<R: BufRead>(r: &mut R, line: &mut Vec<u8>, max: usize) -> Result<Option<()>, String> {
    line.clear();
    let got = std::io::Read::take(&mut *r, max as u64 + 1).read_until(b'\n', line).map_err(|e| e.to_string())?;
    if got == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > max {
        return Err(format!("request longer than {} MiB refused", max >> 20));
    }
    Ok(Some(()))
}

impl State {
    /// Serves one client connection until it closes.
    pub fn serve(state: Arc<Mutex<State>>, stream: UnixStream) {
        let Ok(read_half) = stream.try_clone() else { return };
        let mut writer = stream;
        let mut reader = BufReader::new(read_half);
        let mut line = Vec::new();
        loop {
            match read_request(&mut reader, &mut line, MAX_REQUEST) {
                Ok(Some(())) => {}
                Ok(None) => return,
                Err(e) => {
                    tracing::warn!("control socket: {e}; connection closed");
                    let mut out = serde_json::to_vec(&Response::err(e)).unwrap_or_default();
                    out.push(b'\n');
                    let _ = writer.write_all(&out);
                    return;
                }
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let resp = match serde_json::from_slice::<Request>(&line) {
                Ok(Request::Capture { bridge, port, outer, count }) => {
                    let Ok(alive_half) = writer.try_clone() else { return };
                    let started = {
                        let s = state.lock().unwrap_or_else(|e| e.into_inner());
                        s.start_capture(&bridge, &port, outer)
                    };
                    match started {
                        Ok((rx, linktype)) => {
                            let head = Response::with(&reply::CaptureHead { linktype });
                            let mut out = serde_json::to_vec(&head).unwrap_or_default();
                            out.push(b'\n');
                            if writer.write_all(&out).is_err() {
                                return;
                            }
                            crate::capture::stream(rx, linktype, count, &mut writer, || peer_open(&alive_half));
                            return;
                        }
                        Err(e) => Response::err(e),
                    }
                }
                Ok(req) => {
                    let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                    s.handle(req)
                }
                Err(e) => Response::err(format!("malformed request: {e}")),
            };
            let mut out = serde_json::to_vec(&resp).unwrap_or_default();
            out.push(b'\n');
            if writer.write_all(&out).is_err() {
                return;
            }
        }
    }

    /// Checks the port and asks the datapath to feed a capture of it. Returns the frames' receiving end and
    /// the pcap link type (Ethernet, or raw IP for a tunnel's outer packets).
    fn start_capture(
        &self,
        bridge: &str,
        port: &str,
        outer: bool,
    ) -> Result<(std::sync::mpsc::Receiver<crate::capture::CapFrame>, u32), String> {
        let b = self.config.bridge(bridge).ok_or_else(|| format!("no bridge named {bridge:?}"))?;
        let spec = if port == b.name {
            None
        } else {
            match self.config.port(port) {
                Some((pb, _, s)) if pb.name == b.name => s.tunnel,
                _ => return Err(format!("bridge {bridge:?} has no port named {port:?}")),
            }
        };
        if outer && spec.is_none() {
            return Err(format!("--outer shows tunnel packets, and {port:?} is not a tunnel port"));
        }
        let local = spec.and_then(|t| t.local.or_else(|| weft_sys::udp::source_towards(t.remote).ok()));
        let (tx, rx) = std::sync::mpsc::sync_channel(crate::capture::QUEUE);
        let tap =
            crate::capture::Tap { port_name: port.to_string(), port: None, outer, local, tx, missed: 0, closed: false };
        match self.ask(|reply| DpMsg::Capture(Box::new(tap.clone()), reply)) {
            Some(true) => {
                let linktype = if outer { weft_wire::pcap::LINKTYPE_RAW } else { weft_wire::pcap::LINKTYPE_ETHERNET };
                Ok((rx, linktype))
            }
            Some(false) => Err(format!("port {port:?} is not running")),
            None => Err("the datapath did not answer".to_string()),
        }
    }

    pub fn handle(&mut self, req: Request) -> Response {
        if req.is_change() {
            return match self.change(&req) {
                Ok(()) => Response::ok(serde_json::Value::Null),
                Err(e) => Response::err(e),
            };
        }
        match req {
            Request::ListBr => Response::with(&self.config.bridges.iter().map(|b| &b.name).collect::<Vec<_>>()),
            Request::ListPorts { bridge } => match self.config.bridge(&bridge) {
                Some(b) => Response::with(&b.ports.iter().map(|p| &p.name).collect::<Vec<_>>()),
                None => Response::err(format!("no bridge named {bridge:?}")),
            },
            Request::Show => Response::with(&self.show()),
            Request::GetSsl => Response::with(&self.config.ssl),
            Request::DumpTlvMap { bridge } => match self.config.bridge(&bridge) {
                Some(b) => Response::with(&b.tlv_map),
                None => Response::err(format!("no bridge named {bridge:?}")),
            },
            Request::FdbShow { bridge } => self.fdb_show(&bridge),
            Request::FdbFlush { bridge } => match self.ask(|tx| DpMsg::FdbFlush(bridge.clone(), tx)) {
                Some(true) => Response::ok(serde_json::Value::Null),
                Some(false) => Response::err(format!("no bridge named {bridge:?}")),
                None => Response::err("the datapath did not answer"),
            },
            Request::DumpPorts { bridge } => self.dump_ports(&bridge),
            Request::DumpFlows { bridge, filter } => self.dump_flows(&bridge, filter.as_deref()),
            Request::Vlog { level } => {
                if let Some(l) = level {
                    match crate::log::parse(&l).and_then(crate::log::set) {
                        Ok(()) => tracing::info!(level = %l, "log level changed"),
                        Err(e) => return Response::err(e),
                    }
                }
                Response::with(&reply::LogLevel { level: crate::log::current().to_string() })
            }
            Request::Trace { bridge, flow, packet } => match self.trace(&bridge, &flow, packet.as_deref()) {
                Ok(v) => Response::with(&v),
                Err(e) => Response::err(e),
            },
            Request::FdbStats { bridge } => match self.ask(|tx| DpMsg::FdbStats(bridge.clone(), tx)) {
                Some(Some(st)) => Response::with(&reply::FdbStats {
                    entries: st.entries as u64,
                    mac_table_size: st.max_entries as u64,
                    learn_misses: st.learn_misses,
                    moves: st.moves,
                    aged: st.aged,
                }),
                Some(None) => Response::err(format!("no bridge named {bridge:?}")),
                None => Response::err("the datapath did not answer"),
            },
            Request::CtDump { zone } => Response::with(&self.ct_dump(zone)),
            Request::CtFlush { zone } => {
                let n = self.resources.conntrack().flush(zone);
                tracing::info!(zone = ?zone, connections = n, "connection tracking flushed");
                Response::ok(serde_json::Value::Null)
            }
            Request::CtStats { .. } => Response::with(&self.ct_stats()),
            Request::IpsecShow { keys } => {
                let (tx, rx) = channel();
                let _ = self.ike.send(crate::msgs::IpsecMsg::Show { keys, reply: tx });
                match rx.recv_timeout(DP_TIMEOUT) {
                    Ok(v) => Response::with(&v),
                    Err(_) => Response::err("the IKE thread did not answer"),
                }
            }
            Request::IpsecRekey { remote, ike } => {
                let (tx, rx) = channel();
                let _ = self.ike.send(crate::msgs::IpsecMsg::Rekey { remote, ike, reply: tx });
                match rx.recv_timeout(DP_TIMEOUT) {
                    Ok(0) => Response::err(match remote {
                        Some(r) => format!("no established IKE SA with {r}"),
                        None => "no established IKE SA".to_string(),
                    }),
                    Ok(n) => Response::with(&reply::Rekeying { rekeying: n as u64 }),
                    Err(_) => Response::err("the IKE thread did not answer"),
                }
            }
            _ => Response::err("unhandled request"),
        }
    }

    fn change(&mut self, req: &Request) -> Result<(), String> {
        let r = self.change_inner(req);
        match &r {
            Ok(()) => {
                tracing::info!(request = %serde_json::to_string(&req.redacted()).unwrap_or_default(), "configuration changed")
            }
            Err(e) => {
                tracing::debug!(request = %serde_json::to_string(&req.redacted()).unwrap_or_default(), error = %e, "change refused")
            }
        }
        r
    }

    fn change_inner(&mut self, req: &Request) -> Result<(), String> {
        let mut new = self.config.config().clone();
        let r = new.apply(req);
        r.map_err(|e| e.to_string())?;
        // What the OVSDB view kept for rows this change removed goes with them.
        let mut extra = std::mem::take(&mut new.ovsdb);
        extra.prune(&new);
        new.ovsdb = extra;
        let new = Valid::new(new).map_err(|e| e.to_string())?;
        if new == self.config {
            return Ok(());
        }
        self.commit(new)
    }

    /// Opens, persists and installs `new`; on failure nothing changes.
    pub(crate) fn commit(&mut self, new: Valid) -> Result<(), String> {
        // learn(…,delete_learned): the flows a deleted learn made go with it.
        let mut pruned = new.config().clone();
        let new = if weft_api::config::delete_learned(self.config.config(), &mut pruned) {
            Valid::new(pruned).map_err(|e| e.to_string())?
        } else {
            new
        };
        let removed = self.removed_flows(&new);
        let r = self.commit_inner(new);
        if r.is_ok() {
            for (bridge, msgs) in removed {
                self.of.broadcast(&bridge, &msgs);
            }
            self.publish_ovsdb();
        }
        self.removal_reasons.clear();
        self.removal_reason = weft_wire::openflow::removed::DELETE;
        r
    }

    /// OFPT_FLOW_REMOVED for each flow with `send_flow_rem` that `new` no longer has, by bridge (its counters
    /// are read now, before the change takes them away).
    fn removed_flows(&self, new: &Valid) -> Vec<(String, Vec<Vec<u8>>)> {
        let mut out = Vec::new();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        for b in &self.config.bridges {
            let kept = new.bridge(&b.name);
            let gone: Vec<&weft_api::config::StoredFlow> = b
                .flows
                .iter()
                .filter(|s| s.flow.send_flow_rem)
                .filter(|s| !kept.is_some_and(|k| k.flows.iter().any(|x| x.id == s.id)))
                .collect();
            if gone.is_empty() {
                continue;
            }
            let counters = self.flow_counters(&b.name);
            let msgs = gone
                .into_iter()
                .map(|s| {
                    let (packets, bytes) = counters.get(&s.id).copied().unwrap_or_default();
                    let reason = self.removal_reasons.get(&s.id).copied().unwrap_or(self.removal_reason);
                    let age = now.saturating_sub(Duration::from_secs(s.added));
                    crate::ofconn::flow_removed(&s.flow, reason, age, packets, bytes)
                })
                .collect();
            out.push((b.name.clone(), msgs));
        }
        out
    }

    fn commit_inner(&mut self, new: Valid) -> Result<(), String> {
        let generation = self.generation + 1;
        let (pipeline, created) = self.resources.build(&new, generation, true).map_err(|e| format!("{e:#}"))?;
        // OpenFlow listeners are bound before anything is saved: a port in use is this change's error.
        if let Err(e) = self.of.prepare(&new, &self.dp) {
            drop(pipeline);
            self.resources.abandon(&created);
            self.resources.release_unused(&self.config);
            self.reconcile_openflow();
            return Err(e);
        }
        if let Err(e) = crate::db::save(&self.db, &new) {
            drop(pipeline);
            self.resources.abandon(&created);
            self.resources.release_unused(&self.config);
            self.reconcile_openflow();
            return Err(format!("cannot save the configuration: {e:#}"));
        }
        self.install(pipeline, &new);
        self.generation = generation;
        self.config = new;
        self.resources.release_unused(&self.config);
        self.resources.adjust_tap_mtus(&self.config);
        self.reconcile_openflow();
        Ok(())
    }

    /// Looks at every port's link (called once a second): a change is logged, reaches the datapath (frames
    /// to a port whose link is down are counted as `link_down`, not sent) and OpenFlow controllers
    /// (OFPT_PORT_STATUS); a system port whose interface went away or came back (a veth made anew) gets its
    /// socket opened again without a command.
    pub fn check_links(&mut self) {
        let mut now: BTreeMap<String, (bool, Option<u32>)> = BTreeMap::new();
        let mut reopen = Vec::new();
        let moved = self.resources.moved_tap_links();
        for b in &self.config.bridges {
            let internal = std::iter::once((b.name.as_str(), weft_api::config::IfaceType::Internal, OFPORT_LOCAL));
            for (name, ty, ofport) in internal.chain(b.ports.iter().map(|p| (p.name.as_str(), p.iface_type, p.ofport)))
            {
                use weft_api::config::IfaceType;
                let (up, index) = match ty {
                    IfaceType::System => {
                        let index = weft_sys::iface::index(name);
                        (index.is_some() && iface_up(name), index)
                    }
                    // A TAP moved into another namespace is looked at from there.
                    IfaceType::Tap | IfaceType::Internal => match moved.get(name) {
                        Some(up) => (up.unwrap_or(true), None),
                        None => (weft_sys::iface::index(name).is_none() || iface_up(name), None),
                    },
                    _ => (true, None),
                };
                if let Some((was_up, was_index)) = self.links.get(name) {
                    if ty == IfaceType::System && *was_index != index {
                        reopen.push(name.to_string());
                    }
                    if *was_up != up {
                        tracing::info!(bridge = %b.name, "port {name}: link {}", if up { "up" } else { "down" });
                        let config = b.ports.iter().find(|p| p.name == name).map_or(b.local_of_config, |p| p.of_config);
                        self.of.port_status(&b.name, ofport, name, !up, config);
                    }
                }
                now.insert(name.to_string(), (up, index));
            }
        }
        let changed = now.iter().map(|(n, (u, _))| (n, u)).ne(self.links.iter().map(|(n, (u, _))| (n, u)));
        self.links = now;
        if !reopen.is_empty() {
            for name in &reopen {
                self.resources.forget_packet(name);
            }
            let generation = self.generation + 1;
            let cfg = self.config.clone();
            match self.resources.build(&cfg, generation, false) {
                Ok((pipeline, _)) => {
                    self.install(pipeline, &cfg);
                    self.generation = generation;
                    tracing::info!("reopened {}", reopen.join(", "));
                }
                Err(e) => tracing::warn!("cannot reopen {}: {e:#}", reopen.join(", ")),
            }
        }
        if changed || !reopen.is_empty() {
            let down = self.links.iter().filter(|(_, (up, _))| !up).map(|(n, _)| n.clone()).collect();
            self.dp.send(DpMsg::LinkDown(down));
        }
    }

    /// Whether port `name`'s link is down (as last seen).
    pub fn link_down(&self, name: &str) -> bool {
        self.links.get(name).is_some_and(|(up, _)| !up)
    }

    /// Starts or stops OpenFlow connections to match the configuration.
    pub fn reconcile_openflow(&mut self) {
        let mut of = std::mem::take(&mut self.of);
        let me: std::sync::Weak<Mutex<dyn crate::ofconn::Daemon>> = self.me.clone();
        of.reconcile(self, &me);
        self.of = of;
    }

    /// Validates and commits a configuration built outside the CLI requests (OpenFlow flow changes).
    pub fn commit_config(&mut self, new: Config) -> Result<(), String> {
        let new = match Valid::new(new) {
            Ok(v) if v != self.config => v,
            r => {
                self.removal_reasons.clear();
                self.removal_reason = weft_wire::openflow::removed::DELETE;
                return r.map(|_| ()).map_err(|e| e.to_string());
            }
        };
        self.commit(new)
    }

    /// Each flow's (packets, bytes) by flow id.
    pub fn flow_counters(&self, bridge: &str) -> std::collections::HashMap<u64, (u64, u64)> {
        self.ask(|tx| DpMsg::FlowStats(bridge.to_string(), tx))
            .flatten()
            .unwrap_or_default()
            .into_iter()
            .map(|(id, p, b, _)| (id, (p, b)))
            .collect()
    }

    /// Every port of the bridge with its counters.
    pub fn port_counters(&self, bridge: &str) -> Vec<(String, u32, weft_datapath::counters::PortCounters)> {
        self.ask(|tx| DpMsg::Counters(bridge.to_string(), tx)).flatten().unwrap_or_default()
    }

    /// Hands a pipeline to the datapath and waits until it runs it.
    pub fn install(&mut self, pipeline: crate::pipeline::Pipeline, cfg: &Valid) {
        self.port_info = pipeline
            .ports
            .iter()
            .zip(&pipeline.core.ports)
            .map(|(p, d)| {
                let error = match &d.kind {
                    PortKind::Down(why) => Some(why.clone()),
                    _ => None,
                };
                (d.name.clone(), PortInfo { mtu: p.mtu, netns: p.netns.clone(), error })
            })
            .collect();
        let nat_t: Vec<_> = pipeline.esp.iter().filter(|e| e.udp).map(|e| e.fd.clone()).collect();
        let pipeline = Arc::new(pipeline);
        let barrier = Arc::new(std::sync::Barrier::new(self.dp.workers()));
        if self.ask(|tx| DpMsg::Swap(pipeline.clone(), tx, barrier.clone())).is_none() {
            tracing::warn!("the datapath did not take the new configuration in time");
        }
        // After the datapath: its ESP sockets are open and watched when the first SAs arrive.
        let peers = crate::ipsec::peers_of(cfg);
        let _ = self.ike.send(crate::msgs::IpsecMsg::Config { peers, nat_t });
        let _ = self.cp.send(crate::cp::CpMsg::Config(Arc::new(cfg.clone())));
    }

    /// [`ask`](Self::ask), for the metrics endpoint.
    pub fn ask_dp<T: Merge>(&self, question: impl Fn(std::sync::mpsc::Sender<T>) -> DpMsg) -> Option<T> {
        self.ask(question)
    }

    /// Sends the datapath's workers a question and waits for their answers, merged into one (`None`: one
    /// did not answer in time).
    fn ask<T: Merge>(&self, question: impl Fn(std::sync::mpsc::Sender<T>) -> DpMsg) -> Option<T> {
        self.dp.ask(question, DP_TIMEOUT)
    }

    /// Fails bridges open or closes them again (called once a second): a `standalone` bridge whose
    /// controllers (`tcp:`, `ssl:`) have all been away for [`FAIL_OPEN_AFTER`] switches as a learning switch
    /// until one connects; a `secure` one, or one without such controllers, keeps to its flows.
    pub fn check_fail_open(&mut self) {
        let now = std::time::Instant::now();
        let mut watched = Vec::new();
        for b in &self.config.bridges {
            let open = match self.of.controller_connected(&b.name) {
                None => false,
                Some(connected) => {
                    watched.push(b.name.clone());
                    let seen = self.controller_seen.entry(b.name.clone()).or_insert(now);
                    if connected {
                        *seen = now;
                    }
                    let standalone = b.fail_mode != Some(weft_api::config::FailMode::Secure);
                    standalone && now.duration_since(*seen) >= FAIL_OPEN_AFTER
                }
            };
            if self.resources.set_fail_open(&b.name, open) {
                if open {
                    tracing::warn!(bridge = %b.name, "fail-open: no controller for {}s; switching as a learning switch until one connects", FAIL_OPEN_AFTER.as_secs());
                } else {
                    tracing::info!(bridge = %b.name, "fail-open ends: back to the flow tables");
                }
            }
        }
        self.controller_seen.retain(|b, _| watched.contains(b));
    }

    /// Removes flows whose idle or hard timeout has passed (called once a second).
    pub fn expire_flows(&mut self) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut expired: Vec<(String, Vec<u64>)> = Vec::new();
        let mut reasons = Vec::new();
        let config = &self.config;
        self.learn_refreshed.retain(|(b, id), _| config.bridge(b).is_some_and(|b| b.flows.iter().any(|s| s.id == *id)));
        for b in &self.config.bridges {
            if !b.flows.iter().any(|s| s.flow.idle_timeout > 0 || s.flow.hard_timeout > 0) {
                continue;
            }
            let stats = self.ask(|tx| DpMsg::FlowStats(b.name.clone(), tx)).flatten().unwrap_or_default();
            let ids: Vec<u64> = b
                .flows
                .iter()
                .filter(|s| {
                    let f = &s.flow;
                    let since = s.added.max(self.learned_again(&b.name, s.id).unwrap_or(0));
                    let hard = f.hard_timeout > 0 && now >= since + u64::from(f.hard_timeout);
                    let idle = f.idle_timeout > 0
                        && stats.iter().find(|x| x.0 == s.id).is_some_and(|x| x.3 >= u64::from(f.idle_timeout));
                    use weft_wire::openflow::removed;
                    if idle || hard {
                        // As OVS: a hard timeout that has passed is the reason, even when the flow is idle too.
                        let why = if hard { removed::HARD_TIMEOUT } else { removed::IDLE_TIMEOUT };
                        reasons.push((s.id, why));
                    }
                    hard || idle
                })
                .map(|s| s.id)
                .collect();
            if !ids.is_empty() {
                expired.push((b.name.clone(), ids));
            }
        }
        if expired.is_empty() {
            return;
        }
        self.removal_reasons.extend(reasons);
        let mut new = self.config.config().clone();
        for (bridge, ids) in &expired {
            if let Some(b) = new.bridges.iter_mut().find(|b| &b.name == bridge) {
                b.flows.retain(|s| !ids.contains(&s.id));
            }
        }
        if let Err(e) = self.commit_config(new) {
            tracing::warn!("cannot remove expired flows: {e}");
        }
    }
}

/// True while the client has not closed its end (it sends nothing after a capture request, so a readable
/// socket means end of file).
fn peer_open(stream: &UnixStream) -> bool {
    let mut pfd = [0u8; 1];
    if stream.set_nonblocking(true).is_err() {
        return false;
    }
    let r = std::io::Read::read(&mut &*stream, &mut pfd);
    let _ = stream.set_nonblocking(false);
    matches!(r, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

impl crate::ofconn::Daemon for State {
    fn config(&self) -> &Config {
        &self.config
    }

    fn commit_config(&mut self, new: Config) -> Result<(), String> {
        if self.deferring {
            self.config = Valid::new(new).map_err(|e| e.to_string())?;
            return Ok(());
        }
        State::commit_config(self, new)
    }

    fn defer_commits(&mut self, on: bool) {
        self.deferring = on;
    }

    fn restore_config(&mut self, config: Config) {
        if let Ok(v) = Valid::new(config) {
            self.config = v;
        }
    }

    fn flow_counters(&self, bridge: &str) -> std::collections::HashMap<u64, (u64, u64)> {
        State::flow_counters(self, bridge)
    }

    fn port_counters(&self, bridge: &str) -> Vec<(String, u32, weft_datapath::counters::PortCounters)> {
        State::port_counters(self, bridge)
    }

    fn link_down(&self, name: &str) -> bool {
        State::link_down(self, name)
    }

    fn table_stats(&self, bridge: &str) -> Vec<(u64, u64)> {
        self.ask(|tx| DpMsg::TableStats(bridge.to_string(), tx)).flatten().unwrap_or_default()
    }

    fn broadcast(&self, bridge: &str, messages: &[Vec<u8>]) {
        self.of.broadcast(bridge, messages);
    }

    fn group_stats(&self, bridge: &str) -> Vec<(u32, weft_datapath::switch::group::GroupStat, Duration)> {
        let stats = self.ask(|tx| DpMsg::GroupStats(bridge.to_string(), tx)).flatten().unwrap_or_default();
        stats
            .into_iter()
            .map(|(id, s)| {
                let age = self.resources.group_since(bridge, id).map_or(Duration::ZERO, |t| t.elapsed());
                (id, s, age)
            })
            .collect()
    }

    fn set_removal_reason(&mut self, reason: u8) {
        self.removal_reason = reason;
    }

    fn meter_counts(&self, bridge: &str, id: u32) -> Option<(weft_datapath::switch::meter::MeterCounts, Duration)> {
        let (_, state, since) = self.resources.meters.get(&(bridge.to_string(), id))?;
        Some((state.counts(), since.elapsed()))
    }

    fn dp(&self) -> &DpHandle {
        &self.dp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_bounded_lines() {
        let mut line = Vec::new();
        let mut r = BufReader::new(&b"{\"cmd\":\"show\"}\nsecond"[..]);
        assert_eq!(read_request(&mut r, &mut line, 64), Ok(Some(())));
        assert_eq!(line, b"{\"cmd\":\"show\"}");
        assert_eq!(read_request(&mut r, &mut line, 64), Ok(Some(())));
        assert_eq!(line, b"second");
        assert_eq!(read_request(&mut r, &mut line, 64), Ok(None));
        // A line that never ends: refused once it passes the limit, holding no more than the limit.
        let endless = std::io::repeat(b'x');
        let mut r = BufReader::new(endless);
        let (res, peak) = weft_sys::alloc_probe::peak_during(|| read_request(&mut r, &mut line, 1 << 20));
        assert!(res.unwrap_err().contains("longer than 1 MiB"));
        assert!(peak <= 4 << 20, "{peak} bytes held for a 1 MiB limit");
    }
}
