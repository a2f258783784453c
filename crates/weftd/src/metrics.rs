//! `weftd --metrics IP:PORT`: Prometheus text exposition (format 0.0.4) over plain HTTP, one scrape per
//! connection. The numbers are the ones `dump-ports`, `fdb stats` and `dump-flows` show, read from the datapath
//! at scrape time.

use crate::control::State;
use crate::msgs::DpMsg;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Scrapes served at once; a connection beyond them is closed as it arrives.
pub const MAX_SCRAPES: usize = 4;
/// A scrape must have sent its request within this long, and gets this long again to take the answer.
pub const DEADLINE: Duration = Duration::from_secs(5);

/// Serves scrapes until the process ends.
pub fn serve(addr: SocketAddr, state: Arc<Mutex<State>>) -> anyhow::Result<()> {
    let l = TcpListener::bind(addr).map_err(|e| anyhow::anyhow!("--metrics {addr}: cannot listen: {e}"))?;
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("metrics".into()).spawn(move || {
        for conn in l.incoming().flatten() {
            if busy.fetch_add(1, Ordering::AcqRel) >= MAX_SCRAPES {
                busy.fetch_sub(1, Ordering::AcqRel);
                drop(conn);
                continue;
            }
            let (s, done) = (state.clone(), busy.clone());
            let spawned = std::thread::Builder::new().name("metrics-scrape".into()).spawn(move || {
                answer(conn, &s);
                done.fetch_sub(1, Ordering::AcqRel);
            });
            if spawned.is_err() {
                busy.fetch_sub(1, Ordering::AcqRel);
            }
        }
    })?;
    Ok(())
}

/// Reads a request head of at most 16 KiB within [`DEADLINE`] all told (a client sending a byte now and then
/// is cut off when the deadline passes, not on each read's timeout).
fn read_head(conn: &mut TcpStream) -> Option<Vec<u8>> {
    let end = Instant::now() + DEADLINE;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
        let left = end.checked_duration_since(Instant::now()).filter(|d| !d.is_zero())?;
        if req.len() >= 16 * 1024 || conn.set_read_timeout(Some(left)).is_err() {
            return None;
        }
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => req.extend_from_slice(&buf[..n]),
        }
    }
    Some(req)
}

fn answer(mut conn: TcpStream, state: &Mutex<State>) {
    let _ = conn.set_write_timeout(Some(DEADLINE));
    // Read the request head; only the path matters.
    let Some(req) = read_head(&mut conn) else { return };
    let line = String::from_utf8_lossy(&req);
    let mut words = line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let (status, ctype, body) = if method != "GET" {
        ("405 Method Not Allowed", "text/plain", "only GET\n".to_string())
    } else if path == "/metrics" || path.starts_with("/metrics?") {
        let s = state.lock().unwrap_or_else(|e| e.into_inner());
        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", render(&s))
    } else {
        ("404 Not Found", "text/plain", "weftd serves /metrics\n".to_string())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(body.as_bytes()));
}

/// Escapes a label value.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// The whole exposition.
pub fn render(s: &State) -> String {
    let mut out = String::new();
    family(&mut out, "weft_build_info", "gauge", "Version and git commit of this weftd.");
    let _ = writeln!(
        out,
        "weft_build_info{{version=\"{}\",commit=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION"),
        env!("WEFT_GIT_COMMIT")
    );
    // Per port counters.
    let mut ports: Vec<(String, String, weft_datapath::counters::PortCounters)> = Vec::new();
    for b in &s.config.bridges {
        for (name, _, c) in s.port_counters(&b.name) {
            ports.push((b.name.clone(), name, c));
        }
    }
    type Get = fn(&weft_datapath::counters::PortCounters) -> u64;
    let counters: [(&str, &str, Get); 4] = [
        ("weft_port_rx_packets_total", "Frames received on the port.", |c| c.rx_packets),
        ("weft_port_rx_bytes_total", "Bytes received on the port.", |c| c.rx_bytes),
        ("weft_port_tx_packets_total", "Frames sent out of the port.", |c| c.tx_packets),
        ("weft_port_tx_bytes_total", "Bytes sent out of the port.", |c| c.tx_bytes),
    ];
    for (name, help, get) in counters {
        family(&mut out, name, "counter", help);
        for (b, p, c) in &ports {
            let _ = writeln!(out, "{name}{{bridge=\"{}\",port=\"{}\"}} {}", label(b), label(p), get(c));
        }
    }
    family(
        &mut out,
        "weft_port_drops_total",
        "counter",
        "Frames dropped at the port, by reason (every reason, zero or not).",
    );
    for (b, p, c) in &ports {
        for r in weft_datapath::counters::DropReason::ALL {
            let _ = writeln!(
                out,
                "weft_port_drops_total{{bridge=\"{}\",port=\"{}\",reason=\"{}\"}} {}",
                label(b),
                label(p),
                r.name(),
                c.dropped(r)
            );
        }
    }
    // MAC tables.
    family(&mut out, "weft_fdb_entries", "gauge", "Entries in the bridge's MAC table.");
    let mut fdb = Vec::new();
    for b in &s.config.bridges {
        if let Some(Some(st)) = s.ask_dp(|tx| DpMsg::FdbStats(b.name.clone(), tx)) {
            fdb.push((b.name.clone(), st));
        }
    }
    for (b, st) in &fdb {
        let _ = writeln!(out, "weft_fdb_entries{{bridge=\"{}\"}} {}", label(b), st.entries);
    }
    family(&mut out, "weft_fdb_max_entries", "gauge", "The MAC table's limit (other_config:mac-table-size).");
    for (b, st) in &fdb {
        let _ = writeln!(out, "weft_fdb_max_entries{{bridge=\"{}\"}} {}", label(b), st.max_entries);
    }
    family(&mut out, "weft_fdb_learn_misses_total", "counter", "Source MACs not learned because the table was full.");
    for (b, st) in &fdb {
        let _ = writeln!(out, "weft_fdb_learn_misses_total{{bridge=\"{}\"}} {}", label(b), st.learn_misses);
    }
    family(&mut out, "weft_fdb_moves_total", "counter", "MACs that moved to another port or VTEP.");
    for (b, st) in &fdb {
        let _ = writeln!(out, "weft_fdb_moves_total{{bridge=\"{}\"}} {}", label(b), st.moves);
    }
    family(&mut out, "weft_fdb_aged_total", "counter", "Learned MACs removed because they aged out.");
    for (b, st) in &fdb {
        let _ = writeln!(out, "weft_fdb_aged_total{{bridge=\"{}\"}} {}", label(b), st.aged);
    }
    // Flow tables.
    family(&mut out, "weft_flows", "gauge", "Flows in each table.");
    for b in &s.config.bridges {
        let mut tables: Vec<u8> = b.flows.iter().map(|f| f.flow.table).collect();
        tables.sort_unstable();
        tables.dedup();
        for t in tables {
            let n = b.flows.iter().filter(|f| f.flow.table == t).count();
            let _ = writeln!(out, "weft_flows{{bridge=\"{}\",table=\"{t}\"}} {n}", label(&b.name));
        }
    }
    family(&mut out, "weft_flow_hits_total", "counter", "Packets that matched a flow of the bridge.");
    for b in &s.config.bridges {
        let hits: u64 = s.flow_counters(&b.name).values().map(|(p, _)| p).sum();
        let _ = writeln!(out, "weft_flow_hits_total{{bridge=\"{}\"}} {hits}", label(&b.name));
    }
    // Tunnels by type, and OpenFlow controllers.
    family(&mut out, "weft_tunnel_ports", "gauge", "Tunnel ports by encapsulation.");
    for ty in ["vxlan", "geneve", "gre"] {
        let n = s.config.bridges.iter().flat_map(|b| &b.ports).filter(|p| p.iface_type.as_str() == ty).count();
        let _ = writeln!(out, "weft_tunnel_ports{{type=\"{ty}\"}} {n}");
    }
    family(&mut out, "weft_controllers", "gauge", "Bridges with an OpenFlow controller target configured.");
    let n = s.config.bridges.iter().filter(|b| !b.controllers.is_empty()).count();
    let _ = writeln!(out, "weft_controllers {n}");
    // Connection tracking.
    if let Some(ct) = s.resources.tracker() {
        use std::sync::atomic::Ordering::Relaxed;
        family(&mut out, "weft_conntrack_connections", "gauge", "Connections tracked (the ct action).");
        let _ = writeln!(out, "weft_conntrack_connections {}", ct.len());
        family(&mut out, "weft_conntrack_max_connections", "gauge", "The connection table's limit.");
        let _ = writeln!(out, "weft_conntrack_max_connections {}", ct.limit());
        let c = &ct.counters;
        for (name, help, v) in [
            ("weft_conntrack_created_total", "Connections committed.", c.created.load(Relaxed)),
            ("weft_conntrack_expired_total", "Connections that expired.", c.expired.load(Relaxed)),
            ("weft_conntrack_invalid_total", "Packets the tracker found invalid.", c.invalid.load(Relaxed)),
            (
                "weft_conntrack_full_total",
                "New connections refused: the table (or zone) was full.",
                c.full.load(Relaxed),
            ),
        ] {
            family(&mut out, name, "counter", help);
            let _ = writeln!(out, "{name} {v}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_client_is_cut_off_at_the_deadline() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let client = std::thread::spawn(move || {
            let mut c = TcpStream::connect(addr).unwrap();
            // A byte every second, never finishing the head.
            for _ in 0..10 {
                if c.write_all(b"G").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        let (mut s, _) = l.accept().unwrap();
        let t0 = Instant::now();
        assert!(read_head(&mut s).is_none());
        let took = t0.elapsed();
        assert!(took >= DEADLINE - Duration::from_millis(100) && took < DEADLINE + Duration::from_secs(2), "{took:?}");
        drop(s);
        let _ = client.join();
    }
}
