//! Text and JSON renderings of the daemon's answers. JSON is the daemon's data as it is (stable for scripts);
//! text reads like ovs-vsctl show, ovs-appctl fdb/show and ovs-ofctl dump-ports. The answers are read into
//! the types of `weft_api::reply`, the ones weftd fills.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt::{Display, Write};
use weft_api::reply::{self, TraceRow};
use weft_api::{Request, Response};

const OFPORT_LOCAL: u32 = 0xffff_fffe;

fn ofport(p: Option<u32>) -> String {
    match p {
        Some(OFPORT_LOCAL) => "LOCAL".to_string(),
        Some(n) => n.to_string(),
        None => "?".to_string(),
    }
}

/// `{k="v", …}`, as ovs-vsctl prints a map column.
fn map(m: &BTreeMap<String, String>) -> String {
    let items: Vec<String> = m.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
    format!("{{{}}}", items.join(", "))
}

/// A value that may be missing, printed as JSON would print it.
fn or_null<T: Display>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

pub fn render(req: &Request, resp: &Response, json: bool) -> anyhow::Result<String> {
    if json {
        return Ok(match &resp.data {
            Value::Null => String::new(),
            d => serde_json::to_string_pretty(d)? + "\n",
        });
    }
    let mut out = String::new();
    match req {
        Request::ListBr | Request::ListPorts { .. } => {
            for name in resp.read::<Vec<String>>()? {
                writeln!(out, "{name}")?;
            }
        }
        Request::Show => show(&mut out, &resp.read()?)?,
        Request::FdbShow { .. } => fdb(&mut out, &resp.read::<Vec<reply::FdbEntry>>()?)?,
        Request::DumpPorts { .. } => dump_ports(&mut out, &resp.read::<Vec<reply::PortRow>>()?)?,
        Request::DumpFlows { .. } => dump_flows(&mut out, &resp.read::<Vec<reply::FlowRow>>()?)?,
        Request::Trace { .. } => trace(&mut out, &resp.read()?)?,
        Request::Vlog { .. } => writeln!(out, "log level: {}", resp.read::<reply::LogLevel>()?.level)?,
        Request::IpsecShow { .. } => ipsec(&mut out, &resp.read()?)?,
        Request::GetSsl => {
            // As ovs-vsctl get-ssl prints it.
            if let Some(ssl) = resp.read::<Option<weft_api::config::SslConfig>>()? {
                writeln!(out, "Private key: {}", ssl.private_key)?;
                writeln!(out, "Certificate: {}", ssl.certificate)?;
                writeln!(out, "CA Certificate: {}", ssl.ca_cert)?;
            }
        }
        Request::CtDump { .. } => {
            for c in resp.read::<Vec<reply::CtConn>>()? {
                writeln!(out, "{}", c.ovs_line())?;
            }
        }
        Request::CtStats { show } => {
            let s: reply::CtStats = resp.read()?;
            match show.as_str() {
                "maxconns" => writeln!(out, "{}", s.max_conns)?,
                "limits" => {
                    writeln!(out, "default limit={}", s.max_conns)?;
                    for z in &s.zone_limits {
                        writeln!(out, "zone={},limit={},count={}", z.zone, z.limit, z.count)?;
                    }
                }
                _ => {
                    writeln!(out, "Connections: {} (limit {})", s.connections, s.max_conns)?;
                    for (p, n) in &s.by_protocol {
                        writeln!(out, "  {p}: {n}")?;
                    }
                    writeln!(out, "Created: {}", s.created)?;
                    writeln!(out, "Expired: {}", s.expired)?;
                    writeln!(out, "Invalid packets: {}", s.invalid)?;
                    writeln!(out, "Refused (table full): {}", s.full)?;
                }
            }
        }
        Request::DumpTlvMap { .. } => {
            // As ovs-ofctl dump-tlv-map prints the table.
            let map: Vec<weft_api::tlv::TlvMapping> = resp.read()?;
            write!(out, "{}", weft_api::tlv::format(&map))?;
        }
        Request::FdbStats { .. } => {
            let s: reply::FdbStats = resp.read()?;
            writeln!(out, "entries: {}", s.entries)?;
            writeln!(out, "mac_table_size: {}", s.mac_table_size)?;
            writeln!(out, "learn_misses: {}", s.learn_misses)?;
            writeln!(out, "moves: {}", s.moves)?;
            writeln!(out, "aged: {}", s.aged)?;
        }
        _ => {}
    }
    Ok(out)
}

/// `dump-drops`: each port's non-zero drop counters, a row per reason.
pub fn drop_rows(ports: &[reply::PortRow]) -> Vec<reply::DropRow> {
    ports
        .iter()
        .flat_map(|p| {
            p.drops.iter().filter(|(_, n)| **n > 0).map(|(reason, count)| reply::DropRow {
                port: p.port.clone(),
                ofport: p.ofport,
                reason: reason.clone(),
                count: *count,
            })
        })
        .collect()
}

fn show(out: &mut String, data: &reply::Show) -> std::fmt::Result {
    for b in &data.bridges {
        writeln!(out, "    Bridge {}", b.name)?;
        if !b.other_config.is_empty() {
            writeln!(out, "        other_config: {}", map(&b.other_config))?;
        }
        if !b.external_ids.is_empty() {
            writeln!(out, "        external_ids: {}", map(&b.external_ids))?;
        }
        if let Some(m) = &b.fail_mode {
            writeln!(out, "        fail_mode: {m}")?;
        }
        if b.fail_open {
            writeln!(out, "        fail-open: no controller connected; switching as a learning switch")?;
        }
        if !b.protocols.is_empty() {
            writeln!(out, "        protocols: [{}]", b.protocols.join(", "))?;
        }
        for c in &b.controller {
            // As ovs-vsctl show prints it.
            writeln!(out, "        Controller \"{c}\"")?;
        }
        if let Some(cp) = &b.control_plane {
            writeln!(
                out,
                "        control_plane: {}, vtep {}, {} remote MAC(s), {} local",
                cp.kind,
                cp.vtep.as_deref().unwrap_or("unknown yet"),
                cp.remote_macs,
                cp.local_macs,
            )?;
            for s in &cp.status {
                writeln!(out, "            {s}")?;
            }
            if cp.refused_routes > 0 {
                writeln!(
                    out,
                    "            {} route(s) refused (bad VTEP, VNI or sequence number; weftd --log-level debug says which)",
                    cp.refused_routes
                )?;
            }
        }
        for p in &b.ports {
            let name = &p.name;
            writeln!(out, "        Port {name}")?;
            if let Some(tag) = p.tag {
                writeln!(out, "            tag: {tag}")?;
            }
            if !p.trunks.is_empty() {
                let list: Vec<String> = p.trunks.iter().map(|t| t.to_string()).collect();
                writeln!(out, "            trunks: [{}]", list.join(", "))?;
            }
            if !p.port_external_ids.is_empty() {
                writeln!(out, "            external_ids: {}", map(&p.port_external_ids))?;
            }
            writeln!(out, "            Interface {name}")?;
            if p.iface_type != "system" {
                writeln!(out, "                type: {}", p.iface_type)?;
            }
            writeln!(out, "                ofport: {}", ofport(Some(p.ofport)))?;
            if p.link_state == "down" {
                writeln!(out, "                link_state: down")?;
            }
            if let Some(mtu) = p.mtu {
                writeln!(out, "                mtu: {mtu}")?;
            }
            if let Some(ns) = &p.netns {
                writeln!(out, "                netns: {ns}")?;
            }
            if let Some(r) = p.remotes.as_ref().filter(|r| !r.is_empty()) {
                let list: Vec<String> = r.iter().map(|x| format!("{} ({})", x.ip, x.origin)).collect();
                writeln!(out, "                remotes: {}", list.join(", "))?;
            }
            if !p.options.is_empty() {
                writeln!(out, "                options: {}", map(&p.options))?;
            }
            if let Some(m) = p.external_ids.as_ref().filter(|m| !m.is_empty()) {
                writeln!(out, "                external_ids: {}", map(m))?;
            }
            if let Some(err) = &p.error {
                writeln!(out, "                error: \"{err}\"")?;
            }
        }
    }
    Ok(())
}

fn fdb(out: &mut String, rows: &[reply::FdbEntry]) -> std::fmt::Result {
    writeln!(out, " port  name             VLAN  MAC                Age  remote           origin")?;
    for e in rows {
        let age = if e.origin == "learned" { e.age.to_string() } else { "-".to_string() };
        writeln!(
            out,
            "{:>5}  {:<15}  {:>4}  {}  {:>4}  {:<15}  {}",
            ofport(e.ofport),
            e.port,
            e.vlan,
            e.mac,
            age,
            e.remote_ip.as_deref().unwrap_or("-"),
            e.origin,
        )?;
    }
    Ok(())
}

/// `weft trace`, one step per line.
fn trace(out: &mut String, data: &reply::Trace) -> std::fmt::Result {
    writeln!(out, "bridge {}, packet in on {}", data.bridge, data.in_port)?;
    writeln!(out, "  packet: {}", data.packet)?;
    for s in &data.steps {
        match s {
            TraceRow::Note { note } => writeln!(out, "  {note}")?,
            TraceRow::Flow { flow: Some(f), table } => writeln!(out, "  table {table}: {f}")?,
            TraceRow::Flow { flow: None, table } => writeln!(out, "  table {table}: no flow matches: dropped")?,
            TraceRow::Output { output, remote_ips, src_port, too_big, vlan, vni, .. } => {
                write!(out, "  -> output to {output}")?;
                if let Some(v) = vlan {
                    write!(out, ", tagged VLAN {v}")?;
                }
                if let Some(list) = remote_ips {
                    if list.is_empty() {
                        write!(
                            out,
                            ", tunnel to no VTEP yet (none configured or named by the control plane) VNI {}",
                            or_null(*vni)
                        )?;
                    } else {
                        write!(out, ", tunnel to {} VNI {}", list.join(", "), or_null(*vni))?;
                    }
                    if let Some(sp) = src_port {
                        write!(out, " from UDP port {sp}")?;
                    }
                }
                if let Some(m) = too_big {
                    write!(out, " (too big for MTU {m}: dropped, the sender gets ICMP)")?;
                }
                writeln!(out)?;
            }
        }
    }
    writeln!(
        out,
        "verdict: {}",
        if data.outputs.is_empty() { "dropped".to_string() } else { format!("out of {}", data.outputs.join(", ")) }
    )
}

/// Like `ovs-ofctl dump-flows`.
fn dump_flows(out: &mut String, rows: &[reply::FlowRow]) -> std::fmt::Result {
    for f in rows {
        write!(
            out,
            " cookie={}, duration={:.3}s, table={}, n_packets={}, n_bytes={}, ",
            f.cookie, f.duration, f.table, f.n_packets, f.n_bytes
        )?;
        for (t, v) in [("idle_timeout", f.idle_timeout), ("hard_timeout", f.hard_timeout)] {
            if v > 0 {
                write!(out, "{t}={v}, ")?;
            }
        }
        if f.send_flow_rem {
            out.push_str("send_flow_rem ");
        }
        writeln!(out, "{}", f.flow)?;
    }
    Ok(())
}

fn dump_ports(out: &mut String, ports: &[reply::PortRow]) -> std::fmt::Result {
    writeln!(out, "{} ports", ports.len())?;
    for p in ports {
        let total: u64 = p.drops.values().sum();
        writeln!(
            out,
            "  port {:>5} ({}): rx pkts={}, bytes={}, drop={}",
            ofport(Some(p.ofport)),
            p.port,
            p.rx_packets,
            p.rx_bytes,
            total
        )?;
        writeln!(out, "             tx pkts={}, bytes={}", p.tx_packets, p.tx_bytes)?;
        if !p.drops.is_empty() {
            let items: Vec<String> = p.drops.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(out, "             drops: {}", items.join(", "))?;
        }
        let extra: Vec<String> = [
            ("arp_nd_answered", p.arp_nd_answered),
            ("arp_nd_flooded", p.arp_nd_flooded),
            ("geneve_options_rx", p.geneve_options_rx),
            ("gso_tx", p.gso_tx),
            ("gro_rx", p.gro_rx),
        ]
        .iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
        if !extra.is_empty() {
            writeln!(out, "             {}", extra.join(", "))?;
        }
    }
    Ok(())
}

/// `ipsec show`: one block per IKE SA, as `swanctl --list-sas` lays it out, then the drop counters; with
/// `--keys`, lines in the form Wireshark's ESP SA and IKEv2 decryption tables take.
fn ipsec(out: &mut String, data: &reply::IpsecShow) -> std::fmt::Result {
    if data.sas.is_empty() {
        writeln!(out, "no IKE SAs")?;
    }
    for sa in &data.sas {
        writeln!(
            out,
            "{} === {}: {}, {} {} {}{}",
            sa.local,
            sa.remote,
            sa.state,
            if sa.initiator { "initiator" } else { "responder" },
            sa.spi_i,
            sa.spi_r,
            if sa.udp_encap { ", ESP in UDP" } else { "" },
        )?;
        writeln!(
            out,
            "  {}/{}/{}, established {}s ago, rekeying in {}s",
            sa.encryption, sa.prf, sa.dh_group, sa.age, sa.rekey_in
        )?;
        if let (Some(ei), Some(er)) = (&sa.sk_ei, &sa.sk_er) {
            writeln!(out, "  ikev2 SK_ei {ei} SK_er {er}")?;
        }
        for c in &sa.children {
            writeln!(
                out,
                "  child: {}, {}, SPIs {}_i {}_o{}",
                c.mode.to_uppercase(),
                c.encryption,
                c.spi_in,
                c.spi_out,
                if c.sending { "" } else { " (standby)" },
            )?;
            writeln!(
                out,
                "    in  {} bytes, {} packets; out {} bytes, {} packets; {}s old, rekeying in {}s",
                c.bytes_in, c.packets_in, c.bytes_out, c.packets_out, c.age, c.rekey_in
            )?;
            writeln!(out, "    {} === {}", c.ts_local, c.ts_remote)?;
            if let (Some(ki), Some(ko)) = (&c.key_in, &c.key_out) {
                writeln!(out, "    esp_sa in  spi 0x{} key {}", c.spi_in, ki)?;
                writeln!(out, "    esp_sa out spi 0x{} key {}", c.spi_out, ko)?;
            }
        }
    }
    if let Some(w) = &data.wireshark {
        for (table, lines) in [("esp_sa", &w.esp_sa), ("ikev2_decryption_table", &w.ikev2_decryption_table)] {
            for line in lines {
                writeln!(out, "uat:{table}:{line}")?;
            }
        }
    }
    let counters: [(&str, &[(&str, u64)]); 2] =
        [("ESP dropped", &data.esp_dropped.named()), ("IKE", &data.ike.named())];
    for (title, named) in counters {
        let nonzero: Vec<String> = named.iter().filter(|(_, v)| *v > 0).map(|(k, v)| format!("{k}={v}")).collect();
        if !nonzero.is_empty() {
            writeln!(out, "{title}: {}", nonzero.join(", "))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(req: Request, data: serde_json::Value) -> String {
        render(&req, &Response::ok(data), false).unwrap()
    }

    #[test]
    fn show_reads_like_ovs_vsctl() {
        let port = reply::ShowPort {
            name: "vx1".into(),
            ofport: 2,
            iface_type: "vxlan".into(),
            link_state: "down".into(),
            mtu: Some(1450),
            options: [("psk".to_string(), "(hidden)".to_string())].into(),
            remotes: Some(vec![reply::RemoteShow { ip: "192.0.2.2".into(), origin: "static".into() }]),
            ..Default::default()
        };
        let show = reply::Show {
            bridges: vec![reply::ShowBridge { name: "sw1".into(), ports: vec![port], ..Default::default() }],
        };
        let t = text(Request::Show, serde_json::to_value(&show).unwrap());
        for line in [
            "    Bridge sw1",
            "        Port vx1",
            "                type: vxlan",
            "                link_state: down",
            "                mtu: 1450",
            "                remotes: 192.0.2.2 (static)",
            "                options: {psk=\"(hidden)\"}",
        ] {
            assert!(t.lines().any(|l| l == line), "{line:?} missing from\n{t}");
        }
    }

    #[test]
    fn drops_and_counters_show_only_what_is_not_zero() {
        let row = reply::PortRow {
            port: "p1".into(),
            ofport: 1,
            drops: [("malformed".to_string(), 3), ("no_sa".to_string(), 0)].into(),
            gso_tx: 5,
            ..Default::default()
        };
        let rows = drop_rows(std::slice::from_ref(&row));
        assert_eq!(rows.len(), 1);
        assert_eq!((rows[0].reason.as_str(), rows[0].count), ("malformed", 3));
        let t = text(Request::DumpPorts { bridge: "sw1".into() }, serde_json::to_value(vec![row]).unwrap());
        assert!(t.contains("drop=3") && t.contains("gso_tx=5") && !t.contains("gro_rx"), "{t}");
    }

    #[test]
    fn a_trace_ends_with_its_verdict() {
        let tr = reply::Trace {
            bridge: "sw1".into(),
            in_port: "p1".into(),
            packet: "ff".into(),
            steps: vec![
                TraceRow::Flow { flow: None, table: 0 },
                TraceRow::Output {
                    output: "vx1".into(),
                    remote_ip: None,
                    remote_ips: Some(vec!["192.0.2.2".into()]),
                    src_port: Some(50000),
                    too_big: None,
                    vlan: None,
                    vni: Some(42),
                },
            ],
            outputs: vec!["vx1".into()],
        };
        let t = text(
            Request::Trace { bridge: "sw1".into(), flow: String::new(), packet: None },
            serde_json::to_value(&tr).unwrap(),
        );
        assert!(t.contains("table 0: no flow matches: dropped"), "{t}");
        assert!(t.contains("-> output to vx1, tunnel to 192.0.2.2 VNI 42 from UDP port 50000"), "{t}");
        assert!(t.ends_with("verdict: out of vx1\n"), "{t}");
    }
}
