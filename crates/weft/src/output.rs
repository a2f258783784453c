//! Text and JSON renderings of the daemon's answers. JSON is the daemon's data as it is (stable for scripts);
//! text reads like ovs-vsctl show, ovs-appctl fdb/show and ovs-ofctl dump-ports.

use serde_json::Value;
use std::fmt::Write;
use weft_api::Request;

const OFPORT_LOCAL: u64 = 0xffff_fffe;

fn ofport(v: &Value) -> String {
    match v.as_u64() {
        Some(OFPORT_LOCAL) => "LOCAL".to_string(),
        Some(n) => n.to_string(),
        None => "?".to_string(),
    }
}

pub fn render(req: &Request, data: &Value, json: bool) -> anyhow::Result<String> {
    if json {
        return Ok(match data {
            Value::Null => String::new(),
            d => serde_json::to_string_pretty(d)? + "\n",
        });
    }
    let mut out = String::new();
    match req {
        Request::ListBr | Request::ListPorts { .. } => {
            for name in data.as_array().into_iter().flatten() {
                writeln!(out, "{}", name.as_str().unwrap_or_default())?;
            }
        }
        Request::Show => show(&mut out, data)?,
        Request::FdbShow { .. } => fdb(&mut out, data)?,
        Request::DumpPorts { .. } => dump_ports(&mut out, data)?,
        Request::DumpFlows { .. } => dump_flows(&mut out, data)?,
        Request::Trace { .. } => trace(&mut out, data)?,
        Request::Vlog { .. } => writeln!(out, "log level: {}", data["level"].as_str().unwrap_or_default())?,
        Request::IpsecShow { .. } => ipsec(&mut out, data)?,
        Request::GetSsl => {
            // As ovs-vsctl get-ssl prints it.
            if let Some(o) = data.as_object() {
                for (key, label) in
                    [("private_key", "Private key"), ("certificate", "Certificate"), ("ca_cert", "CA Certificate")]
                {
                    writeln!(out, "{label}: {}", o.get(key).and_then(Value::as_str).unwrap_or_default())?;
                }
            }
        }
        Request::FdbStats { .. } => {
            for key in ["entries", "mac_table_size", "learn_misses", "moves", "aged"] {
                writeln!(out, "{key}: {}", data[key])?;
            }
        }
        _ => {}
    }
    Ok(out)
}

fn show(out: &mut String, data: &Value) -> std::fmt::Result {
    for b in data["bridges"].as_array().into_iter().flatten() {
        writeln!(out, "    Bridge {}", b["name"].as_str().unwrap_or_default())?;
        if let Some(oc) = b["other_config"].as_object().filter(|o| !o.is_empty()) {
            let items: Vec<String> =
                oc.iter().map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default())).collect();
            writeln!(out, "        other_config: {{{}}}", items.join(", "))?;
        }
        if let Some(m) = b["external_ids"].as_object().filter(|o| !o.is_empty()) {
            let items: Vec<String> =
                m.iter().map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default())).collect();
            writeln!(out, "        external_ids: {{{}}}", items.join(", "))?;
        }
        if let Some(c) = b["controller"].as_str() {
            // As ovs-vsctl show prints it.
            writeln!(out, "        Controller \"{c}\"")?;
        }
        if let Some(cp) = b["control_plane"].as_object() {
            writeln!(
                out,
                "        control_plane: {}, vtep {}, {} remote MAC(s), {} local",
                cp["kind"].as_str().unwrap_or_default(),
                cp["vtep"].as_str().unwrap_or("unknown yet"),
                cp["remote_macs"],
                cp["local_macs"],
            )?;
            for s in cp["status"].as_array().into_iter().flatten() {
                writeln!(out, "            {}", s.as_str().unwrap_or_default())?;
            }
            if let Some(n) = cp["refused_routes"].as_u64().filter(|n| *n > 0) {
                writeln!(out, "            {n} route(s) refused (bad VTEP, VNI or sequence number; weftd --log-level debug says which)")?;
            }
        }
        for p in b["ports"].as_array().into_iter().flatten() {
            let name = p["name"].as_str().unwrap_or_default();
            writeln!(out, "        Port {name}")?;
            if let Some(tag) = p["tag"].as_u64() {
                writeln!(out, "            tag: {tag}")?;
            }
            if let Some(trunks) = p["trunks"].as_array().filter(|t| !t.is_empty()) {
                let list: Vec<String> = trunks.iter().map(|t| t.to_string()).collect();
                writeln!(out, "            trunks: [{}]", list.join(", "))?;
            }
            if let Some(m) = p["port_external_ids"].as_object().filter(|o| !o.is_empty()) {
                let items: Vec<String> =
                    m.iter().map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default())).collect();
                writeln!(out, "            external_ids: {{{}}}", items.join(", "))?;
            }
            writeln!(out, "            Interface {name}")?;
            let ty = p["type"].as_str().unwrap_or_default();
            if ty != "system" {
                writeln!(out, "                type: {ty}")?;
            }
            writeln!(out, "                ofport: {}", ofport(&p["ofport"]))?;
            if p["link_state"] == "down" {
                writeln!(out, "                link_state: down")?;
            }
            if let Some(mtu) = p["mtu"].as_u64() {
                writeln!(out, "                mtu: {mtu}")?;
            }
            if let Some(ns) = p["netns"].as_str() {
                writeln!(out, "                netns: {ns}")?;
            }
            if let Some(r) = p["remotes"].as_array().filter(|r| !r.is_empty()) {
                let list: Vec<String> = r
                    .iter()
                    .map(|x| {
                        format!("{} ({})", x["ip"].as_str().unwrap_or_default(), x["origin"].as_str().unwrap_or(""))
                    })
                    .collect();
                writeln!(out, "                remotes: {}", list.join(", "))?;
            }
            if let Some(opts) = p["options"].as_object().filter(|o| !o.is_empty()) {
                let items: Vec<String> =
                    opts.iter().map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default())).collect();
                writeln!(out, "                options: {{{}}}", items.join(", "))?;
            }
            if let Some(m) = p["external_ids"].as_object().filter(|o| !o.is_empty()) {
                let items: Vec<String> =
                    m.iter().map(|(k, v)| format!("{k}=\"{}\"", v.as_str().unwrap_or_default())).collect();
                writeln!(out, "                external_ids: {{{}}}", items.join(", "))?;
            }
            if let Some(err) = p["error"].as_str() {
                writeln!(out, "                error: \"{err}\"")?;
            }
        }
    }
    Ok(())
}

fn fdb(out: &mut String, data: &Value) -> std::fmt::Result {
    writeln!(out, " port  name             VLAN  MAC                Age  remote           origin")?;
    for e in data.as_array().into_iter().flatten() {
        let origin = e["origin"].as_str().unwrap_or(if e["static"] == true { "static" } else { "learned" });
        let age = if origin == "learned" { e["age"].to_string() } else { "-".to_string() };
        writeln!(
            out,
            "{:>5}  {:<15}  {:>4}  {}  {:>4}  {:<15}  {}",
            ofport(&e["ofport"]),
            e["port"].as_str().unwrap_or_default(),
            e["vlan"],
            e["mac"].as_str().unwrap_or_default(),
            age,
            e["remote_ip"].as_str().unwrap_or("-"),
            origin,
        )?;
    }
    Ok(())
}

/// `weft trace`, one step per line.
fn trace(out: &mut String, data: &Value) -> std::fmt::Result {
    writeln!(
        out,
        "bridge {}, packet in on {}",
        data["bridge"].as_str().unwrap_or_default(),
        data["in_port"].as_str().unwrap_or_default()
    )?;
    writeln!(out, "  packet: {}", data["packet"].as_str().unwrap_or_default())?;
    for s in data["steps"].as_array().into_iter().flatten() {
        if let Some(n) = s["note"].as_str() {
            writeln!(out, "  {n}")?;
        } else if let Some(t) = s["table"].as_u64() {
            match s["flow"].as_str() {
                Some(f) => writeln!(out, "  table {t}: {f}")?,
                None => writeln!(out, "  table {t}: no flow matches: dropped")?,
            }
        } else if let Some(p) = s["output"].as_str() {
            write!(out, "  -> output to {p}")?;
            if let Some(v) = s["vlan"].as_u64() {
                write!(out, ", tagged VLAN {v}")?;
            }
            if let Some(r) = s["remote_ips"].as_array() {
                let list: Vec<&str> = r.iter().filter_map(Value::as_str).collect();
                if list.is_empty() {
                    write!(
                        out,
                        ", tunnel to no VTEP yet (none configured or named by the control plane) VNI {}",
                        s["vni"]
                    )?;
                } else {
                    write!(out, ", tunnel to {} VNI {}", list.join(", "), s["vni"])?;
                }
                if let Some(sp) = s["src_port"].as_u64() {
                    write!(out, " from UDP port {sp}")?;
                }
            }
            if let Some(m) = s["too_big"].as_u64() {
                write!(out, " (too big for MTU {m}: dropped, the sender gets ICMP)")?;
            }
            writeln!(out)?;
        }
    }
    let outs: Vec<&str> = data["outputs"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    writeln!(
        out,
        "verdict: {}",
        if outs.is_empty() { "dropped".to_string() } else { format!("out of {}", outs.join(", ")) }
    )
}

/// Like `ovs-ofctl dump-flows`.
fn dump_flows(out: &mut String, data: &Value) -> std::fmt::Result {
    for f in data.as_array().into_iter().flatten() {
        write!(
            out,
            " cookie={}, duration={:.3}s, table={}, n_packets={}, n_bytes={}, ",
            f["cookie"].as_str().unwrap_or("0x0"),
            f["duration"].as_f64().unwrap_or(0.0),
            f["table"],
            f["n_packets"],
            f["n_bytes"]
        )?;
        for t in ["idle_timeout", "hard_timeout"] {
            if let Some(v) = f[t].as_u64().filter(|v| *v > 0) {
                write!(out, "{t}={v}, ")?;
            }
        }
        writeln!(out, "{}", f["flow"].as_str().unwrap_or_default())?;
    }
    Ok(())
}

fn dump_ports(out: &mut String, data: &Value) -> std::fmt::Result {
    let ports = data.as_array().map(Vec::as_slice).unwrap_or_default();
    writeln!(out, "{} ports", ports.len())?;
    for p in ports {
        let drops = p["drops"].as_object();
        let total: u64 = drops.map(|d| d.values().filter_map(Value::as_u64).sum()).unwrap_or(0);
        writeln!(
            out,
            "  port {:>5} ({}): rx pkts={}, bytes={}, drop={}",
            ofport(&p["ofport"]),
            p["port"].as_str().unwrap_or_default(),
            p["rx_packets"],
            p["rx_bytes"],
            total
        )?;
        writeln!(out, "             tx pkts={}, bytes={}", p["tx_packets"], p["tx_bytes"])?;
        if let Some(d) = drops.filter(|d| !d.is_empty()) {
            let items: Vec<String> = d.iter().map(|(k, v)| format!("{k}={v}")).collect();
            writeln!(out, "             drops: {}", items.join(", "))?;
        }
        let extra: Vec<String> = ["arp_nd_answered", "arp_nd_flooded", "geneve_options_rx", "gso_tx", "gro_rx"]
            .iter()
            .filter_map(|k| p[*k].as_u64().filter(|v| *v > 0).map(|v| format!("{k}={v}")))
            .collect();
        if !extra.is_empty() {
            writeln!(out, "             {}", extra.join(", "))?;
        }
    }
    Ok(())
}

/// `ipsec show`: one block per IKE SA, as `swanctl --list-sas` lays it out, then the drop counters; with
/// `--keys`, lines in the form Wireshark's ESP SA and IKEv2 decryption tables take.
fn ipsec(out: &mut String, data: &Value) -> std::fmt::Result {
    let s = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let sas = data["sas"].as_array().cloned().unwrap_or_default();
    if sas.is_empty() {
        writeln!(out, "no IKE SAs")?;
    }
    for sa in &sas {
        writeln!(
            out,
            "{} === {}: {}, {} {} {}{}",
            s(&sa["local"]),
            s(&sa["remote"]),
            s(&sa["state"]),
            if sa["initiator"].as_bool() == Some(true) { "initiator" } else { "responder" },
            s(&sa["spi_i"]),
            s(&sa["spi_r"]),
            if sa["udp_encap"].as_bool() == Some(true) { ", ESP in UDP" } else { "" },
        )?;
        writeln!(
            out,
            "  {}/{}/{}, established {}s ago, rekeying in {}s",
            s(&sa["encryption"]),
            s(&sa["prf"]),
            s(&sa["dh_group"]),
            sa["age"],
            sa["rekey_in"]
        )?;
        if let (Some(ei), Some(er)) = (sa["sk_ei"].as_str(), sa["sk_er"].as_str()) {
            writeln!(out, "  ikev2 SK_ei {ei} SK_er {er}")?;
        }
        for c in sa["children"].as_array().into_iter().flatten() {
            writeln!(
                out,
                "  child: {}, {}, SPIs {}_i {}_o{}",
                s(&c["mode"]).to_uppercase(),
                s(&c["encryption"]),
                s(&c["spi_in"]),
                s(&c["spi_out"]),
                if c["sending"].as_bool() == Some(false) { " (standby)" } else { "" },
            )?;
            writeln!(
                out,
                "    in  {} bytes, {} packets; out {} bytes, {} packets; {}s old, rekeying in {}s",
                c["bytes_in"], c["packets_in"], c["bytes_out"], c["packets_out"], c["age"], c["rekey_in"]
            )?;
            writeln!(out, "    {} === {}", s(&c["ts_local"]), s(&c["ts_remote"]))?;
            if let (Some(ki), Some(ko)) = (c["key_in"].as_str(), c["key_out"].as_str()) {
                writeln!(out, "    esp_sa in  spi 0x{} key {}", s(&c["spi_in"]), ki)?;
                writeln!(out, "    esp_sa out spi 0x{} key {}", s(&c["spi_out"]), ko)?;
            }
        }
    }
    for table in ["esp_sa", "ikev2_decryption_table"] {
        for line in data["wireshark"][table].as_array().into_iter().flatten() {
            writeln!(out, "uat:{table}:{}", line.as_str().unwrap_or_default())?;
        }
    }
    for (key, title) in [("esp_dropped", "ESP dropped"), ("ike", "IKE")] {
        let nonzero: Vec<String> = data[key]
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !nonzero.is_empty() {
            writeln!(out, "{title}: {}", nonzero.join(", "))?;
        }
    }
    Ok(())
}
