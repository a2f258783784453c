//! The control socket's answers to questions (nothing here changes anything): `show`, `fdb show`,
//! `dump-flows`, `dump-ports`, `trace`, built as `weft_api::reply` types.

use super::State;
use crate::msgs::DpMsg;
use crate::pipeline::OFPORT_LOCAL;
use std::collections::BTreeMap;
use weft_api::{reply, Response};

/// `m` with the values of secret keys (`psk`, `bgp-password`, …) shown as "(hidden)": the secrets stay in
/// the database, readable by root only.
fn hide_secrets(m: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    m.iter()
        .map(|(k, v)| {
            let v = if weft_api::config::is_secret(k) { weft_api::config::HIDDEN } else { v.as_str() };
            (k.clone(), v.to_string())
        })
        .collect()
}

impl State {
    pub(super) fn show(&self) -> reply::Show {
        let bridges = self
            .config
            .bridges()
            .map(|(b, specs)| {
                let mut ports =
                    vec![self.port_show(&b.name, OFPORT_LOCAL, "internal", &BTreeMap::new(), &b.local_vlan)];
                let status = self.cp_status.lock().unwrap_or_else(|e| e.into_inner());
                let cp = status.get(&b.name);
                for (p, spec) in b.ports.iter().zip(&specs.ports) {
                    let mut ps = self.port_show(&p.name, p.ofport, p.iface_type.as_str(), &p.options, &p.vlan);
                    ps.external_ids = Some(p.external_ids.clone());
                    // Where each remote VTEP of a tunnel comes from: configured, or a control plane.
                    if let Some(t) = &spec.tunnel {
                        let remote = |ip: &std::net::IpAddr, origin: &str| reply::RemoteShow {
                            ip: ip.to_string(),
                            origin: origin.to_string(),
                        };
                        let mut remotes: Vec<_> = spec.flood_remotes.iter().map(|ip| remote(ip, "static")).collect();
                        if let (true, Some(cp)) = (t.flow, cp) {
                            remotes.extend(cp.flood.get(&p.name).into_iter().flatten().map(|ip| remote(ip, cp.kind)));
                        }
                        ps.remotes = Some(remotes);
                    }
                    ports.push(ps);
                }
                reply::ShowBridge {
                    name: b.name.clone(),
                    controller: b.controllers.clone(),
                    protocols: b.protocols.clone(),
                    fail_mode: b.fail_mode.map(|m| m.as_str().to_string()),
                    fail_open: self.resources.fail_open(&b.name),
                    other_config: hide_secrets(&b.other_config),
                    external_ids: b.external_ids.clone(),
                    ports,
                    control_plane: cp.map(|c| reply::ControlPlaneShow {
                        kind: c.kind.to_string(),
                        vtep: c.vtep.map(|v| v.to_string()),
                        status: c.sources.values().cloned().collect(),
                        remote_macs: c.remote_macs as u64,
                        local_macs: c.local_macs as u64,
                        refused_routes: c.refused,
                    }),
                }
            })
            .collect();
        reply::Show { bridges }
    }

    pub(super) fn port_show(
        &self,
        name: &str,
        ofport: u32,
        ty: &str,
        options: &BTreeMap<String, String>,
        vlan: &weft_api::config::PortVlan,
    ) -> reply::ShowPort {
        let info = self.port_info.get(name);
        reply::ShowPort {
            name: name.to_string(),
            ofport,
            iface_type: ty.to_string(),
            options: hide_secrets(options),
            link_state: if self.link_down(name) { "down" } else { "up" }.to_string(),
            tag: vlan.tag,
            trunks: vlan.trunks.clone(),
            port_external_ids: vlan.external_ids.clone(),
            mtu: info.and_then(|i| i.mtu),
            netns: info.and_then(|i| i.netns.clone()),
            error: info.and_then(|i| i.error.clone()),
            external_ids: None,
            remotes: None,
        }
    }

    pub(super) fn fdb_show(&self, bridge: &str) -> Response {
        match self.ask(|tx| DpMsg::Fdb(bridge.to_string(), tx)).ok_or(()) {
            Ok(Some(rows)) => {
                let mut out: Vec<reply::FdbEntry> = rows
                    .into_iter()
                    .map(|r| reply::FdbEntry {
                        port: r.port,
                        ofport: Some(r.ofport),
                        vlan: r.vlan,
                        mac: r.mac.to_string(),
                        age: r.age,
                        remote_ip: r.remote.map(|ip| ip.to_string()),
                        is_static: r.origin == weft_datapath::fdb::Origin::Static,
                        origin: r.origin.as_str().to_string(),
                    })
                    .collect();
                // Default entries (flood destinations) live in the tunnel port, not in the MAC table.
                if let Some(b) = self.config.bridge(bridge) {
                    for e in b.fdb.iter().filter(|e| e.mac == weft_wire::EthernetAddress::ZERO) {
                        let ofport = b.ports.iter().find(|p| p.name == e.port).map(|p| p.ofport);
                        out.push(reply::FdbEntry {
                            port: e.port.clone(),
                            ofport,
                            vlan: e.vlan,
                            mac: e.mac.to_string(),
                            age: 0,
                            remote_ip: e.dst.map(|ip| ip.to_string()),
                            is_static: true,
                            origin: "static".to_string(),
                        });
                    }
                    // Flood destinations of remote_ip=flow ports, from the control plane.
                    let status = self.cp_status.lock().unwrap_or_else(|e| e.into_inner());
                    if let Some(cp) = status.get(bridge) {
                        for (port, vteps) in &cp.flood {
                            let ofport = b.ports.iter().find(|p| p.name == *port).map(|p| p.ofport);
                            for v in vteps {
                                out.push(reply::FdbEntry {
                                    port: port.clone(),
                                    ofport,
                                    vlan: 0,
                                    mac: weft_wire::EthernetAddress::ZERO.to_string(),
                                    age: 0,
                                    remote_ip: Some(v.to_string()),
                                    is_static: false,
                                    origin: cp.kind.to_string(),
                                });
                            }
                        }
                    }
                }
                Response::with(&out)
            }
            Ok(None) => Response::err(format!("no bridge named {bridge:?}")),
            Err(_) => Response::err("the datapath did not answer"),
        }
    }

    /// Each flow with its counters, as `ovs-ofctl dump-flows` lists them (table, then priority, highest first).
    pub(super) fn dump_flows(&self, bridge: &str, filter: Option<&str>) -> Response {
        let Some(b) = self.config.bridge(bridge) else { return Response::err(format!("no bridge named {bridge:?}")) };
        let filter = match filter.map(|f| self.config.parse_flows(bridge, &[f.to_string()])) {
            Some(Ok(mut f)) => Some(f.remove(0)),
            Some(Err(e)) => return Response::err(e.to_string()),
            None => None,
        };
        let stats = self.ask(|tx| DpMsg::FlowStats(bridge.to_string(), tx)).flatten().unwrap_or_default();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
        let mut flows: Vec<&weft_api::config::StoredFlow> =
            b.flows.iter().filter(|s| filter.as_ref().is_none_or(|f| s.flow.covered_by(f))).collect();
        flows.sort_by(|a, b| a.flow.table.cmp(&b.flow.table).then(b.flow.priority.cmp(&a.flow.priority)));
        let rows: Vec<reply::FlowRow> = flows
            .into_iter()
            .map(|s| {
                // With only the default flow the datapath runs NORMAL directly and keeps no flow counters.
                let (n_packets, n_bytes) = stats.iter().find(|x| x.0 == s.id).map_or((0, 0), |x| (x.1, x.2));
                let f = &s.flow;
                let text = f.to_string();
                reply::FlowRow {
                    cookie: format!("0x{:x}", f.cookie),
                    duration: (now - s.added as f64).max(0.0),
                    table: f.table,
                    n_packets,
                    n_bytes,
                    priority: f.priority,
                    idle_timeout: f.idle_timeout,
                    hard_timeout: f.hard_timeout,
                    send_flow_rem: f.send_flow_rem,
                    match_text: f.match_text.clone(),
                    actions: text.split_once(" actions=").map(|x| x.1.to_string()),
                    flow: text,
                }
            })
            .collect();
        Response::with(&rows)
    }

    /// `weft trace`: builds the packet (from the flow's match, or the hex given), runs it through the datapath
    /// in trace mode, and describes each step with the flows' text.
    pub(super) fn trace(&self, bridge: &str, flow: &str, packet: Option<&str>) -> Result<reply::Trace, String> {
        let f = self.config.parse_flows(bridge, &[flow.to_string()]).map_err(|e| e.to_string())?.remove(0);
        if f.has_actions {
            return Err("a trace takes a match (the packet), not actions".into());
        }
        let (ofport, mut frame) = weft_api::flow::packet_for(&f.matches)?;
        if let Some(hex) = packet {
            let hex: String = hex.chars().filter(|c| !c.is_whitespace() && *c != ':').collect();
            frame = weft_api::config::parse_hex(&hex).ok_or("--packet takes the frame in hex digits")?;
            if frame.len() < 14 {
                return Err("--packet: a frame has at least 14 bytes".into());
            }
        }
        let b = self.config.bridge(bridge).ok_or_else(|| format!("no bridge named {bridge:?}"))?;
        let in_port = if ofport == weft_api::flow::OFPP_LOCAL {
            b.name.clone()
        } else {
            b.ports
                .iter()
                .find(|p| p.ofport == ofport)
                .map(|p| p.name.clone())
                .ok_or_else(|| format!("no port {ofport}"))?
        };
        let steps = self
            .ask(|reply| DpMsg::Trace {
                bridge: bridge.to_string(),
                in_port: in_port.clone(),
                frame: frame.clone(),
                reply,
            })
            .ok_or("the datapath did not answer")??;
        let flow_text = |id: u64| b.flows.iter().find(|s| s.id == id).map(|s| s.flow.to_string());
        let mut outputs = Vec::new();
        let steps = steps
            .into_iter()
            .map(|s| match s {
                crate::msgs::TraceStep::Note(note) => reply::TraceRow::Note { note },
                crate::msgs::TraceStep::Flow { table, id } => {
                    reply::TraceRow::Flow { table, flow: id.and_then(flow_text) }
                }
                crate::msgs::TraceStep::Output { port, vlan, remote, vni, src_port, too_big } => {
                    outputs.push(port.clone());
                    reply::TraceRow::Output {
                        output: port,
                        vlan,
                        remote_ip: remote.as_ref().and_then(|r| r.first()).map(|r| r.to_string()),
                        remote_ips: remote.as_ref().map(|r| r.iter().map(|ip| ip.to_string()).collect()),
                        vni,
                        src_port,
                        too_big,
                    }
                }
            })
            .collect();
        let packet: String = frame.iter().map(|b| format!("{b:02x}")).collect();
        Ok(reply::Trace { bridge: bridge.to_string(), in_port, packet, steps, outputs })
    }

    pub(super) fn dump_ports(&self, bridge: &str) -> Response {
        match self.ask(|tx| DpMsg::Counters(bridge.to_string(), tx)).ok_or(()) {
            Ok(Some(rows)) => Response::with(
                &rows
                    .into_iter()
                    .map(|(port, ofport, c)| reply::PortRow {
                        port,
                        ofport,
                        rx_packets: c.rx_packets,
                        rx_bytes: c.rx_bytes,
                        tx_packets: c.tx_packets,
                        tx_bytes: c.tx_bytes,
                        drops: c.drops_by_name().map(|(k, v)| (k.to_string(), v)).collect(),
                        arp_nd_answered: c.nd_answered,
                        arp_nd_flooded: c.nd_flooded,
                        geneve_options_rx: c.geneve_options_rx,
                        gso_tx: c.gso_tx,
                        gro_rx: c.gro_rx,
                    })
                    .collect::<Vec<_>>(),
            ),
            Ok(None) => Response::err(format!("no bridge named {bridge:?}")),
            Err(_) => Response::err("the datapath did not answer"),
        }
    }
}

impl State {
    /// `dpctl/dump-conntrack`: the tracked connections (of `zone`), sorted.
    pub(super) fn ct_dump(&mut self, zone: Option<u16>) -> Vec<reply::CtConn> {
        let now = crate::dataplane::now();
        let ip = |a: u128, v6: bool| -> std::net::IpAddr {
            if v6 {
                std::net::Ipv6Addr::from(a).into()
            } else {
                std::net::Ipv4Addr::from(a as u32).into()
            }
        };
        let mut rows: Vec<reply::CtConn> = self
            .resources
            .conntrack()
            .dump(zone, now)
            .into_iter()
            .map(|e| reply::CtConn {
                proto: e.orig.proto,
                src: ip(e.orig.src.addr, e.orig.v6),
                dst: ip(e.orig.dst.addr, e.orig.v6),
                sport: e.orig.src.port,
                dport: e.orig.dst.port,
                zone: e.zone,
                mark: e.mark,
                label: weft_api::flow::hex(e.label),
                state: e.tcp.map(|(a, b)| a.max(b).name().to_string()),
                icmp: e.icmp,
                timeout: e.expires_in,
                reply: e.reply.map(|r| (ip(r.src.addr, r.v6), ip(r.dst.addr, r.v6), r.src.port, r.dst.port)),
            })
            .collect();
        rows.sort_by_cached_key(|r| r.ovs_line());
        rows
    }

    /// `dpctl/ct-stats-show`.
    pub(super) fn ct_stats(&mut self) -> reply::CtStats {
        use std::sync::atomic::Ordering::Relaxed;
        let ct = self.resources.conntrack().clone();
        let name = |p: u8| match p {
            6 => "TCP".to_string(),
            17 => "UDP".to_string(),
            1 => "ICMP".to_string(),
            58 => "ICMPV6".to_string(),
            132 => "SCTP".to_string(),
            136 => "UDPLITE".to_string(),
            p => format!("proto {p}"),
        };
        reply::CtStats {
            connections: ct.len() as u64,
            max_conns: ct.limit() as u64,
            by_protocol: ct.by_protocol().into_iter().map(|(p, n)| (name(p), n as u64)).collect(),
            created: ct.counters.created.load(Relaxed),
            expired: ct.counters.expired.load(Relaxed),
            invalid: ct.counters.invalid.load(Relaxed),
            full: ct.counters.full.load(Relaxed),
            zone_limits: ct
                .zone_limits()
                .into_iter()
                .map(|(zone, limit, count)| reply::CtZoneLimit { zone, limit: limit as u64, count: count as u64 })
                .collect(),
        }
    }
}
