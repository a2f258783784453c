//! Drives the control-plane model as weftd does with a simulated overlay of 1 000 VTEPs and 100 000 MACs
//! (no real hosts): etcd keys parsed into records, fed through the per-source table into the Rib, the
//! datapath changes taken. Reports memory per entry and the time to converge after typical changes.
//!
//! `cargo run --release -p weft-control --example scale [VTEPS] [MACS]`

use std::net::{IpAddr, Ipv4Addr};
use std::time::Instant;
use weft_control::bgp::{self, Announce, EvpnRoute};
use weft_control::etcd;
use weft_control::{Adj, Change, MacKey, Rib};
use weft_wire::EthernetAddress;

const PREFIX: &str = "/weft/";
const VNIS_PER_VTEP: u32 = 10;
const VNIS: u32 = 100;

fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn vtep(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + 1 + i))
}

fn mac(i: u32) -> EthernetAddress {
    let b = i.to_be_bytes();
    EthernetAddress([2, 0, b[0], b[1], b[2], b[3]])
}

fn main() {
    let args: Vec<u32> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let vteps = args.first().copied().unwrap_or(1000);
    let macs = args.get(1).copied().unwrap_or(100_000);
    let per_vtep = macs / vteps;
    // What etcd would hold: one key per (VNI, VTEP) and per MAC.
    let mut kvs: Vec<(String, String)> = Vec::new();
    for v in 0..vteps {
        for k in 0..VNIS_PER_VTEP {
            kvs.push((etcd::vtep_key(PREFIX, (v + k * 7) % VNIS + 1, vtep(v)), "{}".into()));
        }
        for m in 0..per_vtep {
            let n = v * per_vtep + m;
            let key = MacKey { vni: (v + (m % VNIS_PER_VTEP) * 7) % VNIS + 1, mac: mac(n) };
            kvs.push((etcd::mac_key(PREFIX, key, vtep(v)), etcd::mac_value(0, None)));
        }
    }
    let me: IpAddr = "10.255.255.254".parse().unwrap();
    let before = rss_kib();
    let t = Instant::now();
    let records: Vec<(Vec<u8>, weft_control::Record)> = kvs
        .iter()
        .filter_map(|(k, v)| Some((k.clone().into_bytes(), etcd::parse_record(PREFIX, k, Some(v))?)))
        .collect();
    let parse = t.elapsed();
    drop(kvs);
    let mut rib = Rib::new(Some(me));
    let mut adj = Adj::default();
    let t = Instant::now();
    adj.replace(&mut rib, 0, records.clone());
    let changes = rib.take_changes();
    let initial = t.elapsed();
    drop(records);
    let after = rss_kib();
    let (routes, flood) = rib.sizes();
    let installs = changes.iter().filter(|c| matches!(c, Change::Install { .. })).count();
    assert_eq!(routes as u32, per_vtep * vteps, "every MAC route is held");
    assert_eq!(installs as u32, per_vtep * vteps, "every MAC goes to the datapath");
    assert_eq!(flood as u32, vteps * VNIS_PER_VTEP);
    let entries = (routes + flood) as u64;
    println!("simulated overlay: {vteps} VTEPs, {routes} MAC routes, {flood} flood entries, {VNIS} VNIs");
    println!("| step | time |");
    println!("|---|---|");
    println!("| parse {} etcd keys | {:.1} ms |", routes + flood, parse.as_secs_f64() * 1e3);
    println!("| initial convergence (all routes in, datapath changes out) | {:.1} ms |", initial.as_secs_f64() * 1e3);

    // One VTEP leaves: its keys are deleted one by one (etcd lease expiry) or withdrawn (BGP).
    let gone = vtep(vteps / 2);
    let ids: Vec<Vec<u8>> = {
        let mut v = Vec::new();
        for k in 0..VNIS_PER_VTEP {
            v.push(etcd::vtep_key(PREFIX, (vteps / 2 + k * 7) % VNIS + 1, gone).into_bytes());
        }
        for m in 0..per_vtep {
            let n = vteps / 2 * per_vtep + m;
            let key = MacKey { vni: (vteps / 2 + (m % VNIS_PER_VTEP) * 7) % VNIS + 1, mac: mac(n) };
            v.push(etcd::mac_key(PREFIX, key, gone).into_bytes());
        }
        v
    };
    let t = Instant::now();
    for id in &ids {
        adj.remove(&mut rib, 0, id);
    }
    let c = rib.take_changes();
    let leave = t.elapsed();
    assert_eq!(c.iter().filter(|c| matches!(c, Change::Remove { .. })).count() as u32, per_vtep);
    println!(
        "| one VTEP leaves ({} MACs, {} VNIs withdrawn) | {:.3} ms |",
        per_vtep,
        VNIS_PER_VTEP,
        leave.as_secs_f64() * 1e3
    );

    // One MAC moves to another VTEP with a higher sequence number.
    let key = MacKey { vni: 1, mac: mac(0) };
    let t = Instant::now();
    let rec =
        weft_control::Record::Mac { key, route: weft_control::model::MacRoute { vtep: vtep(1), seq: 1, ip: None } };
    adj.add(&mut rib, 0, etcd::mac_key(PREFIX, key, vtep(1)).into_bytes(), rec);
    let c = rib.take_changes();
    let moved = t.elapsed();
    assert_eq!(c, vec![Change::Install { key, vtep: vtep(1) }]);
    println!("| one MAC moves | {:.3} ms |", moved.as_secs_f64() * 1e3);

    // A full read after a reconnect or compaction that finds nothing new.
    let mut again = Vec::new();
    for (k, v) in (0..vteps).flat_map(|v| {
        (0..per_vtep).map(move |m| {
            let n = v * per_vtep + m;
            let key = MacKey { vni: (v + (m % VNIS_PER_VTEP) * 7) % VNIS + 1, mac: mac(n) };
            (etcd::mac_key(PREFIX, key, vtep(v)), etcd::mac_value(0, None))
        })
    }) {
        if let Some(r) = etcd::parse_record(PREFIX, &k, Some(&v)) {
            again.push((k.into_bytes(), r));
        }
    }
    let t = Instant::now();
    adj.replace(&mut rib, 0, again);
    let c = rib.take_changes();
    let resync = t.elapsed();
    println!(
        "| full resync: a full read of {routes} MAC keys after a reconnect | {:.1} ms ({} datapath changes) |",
        resync.as_secs_f64() * 1e3,
        c.iter().filter(|c| !matches!(c, Change::Flood { .. })).count()
    );

    // BGP: the same MACs as type-2 UPDATEs, encoded and parsed.
    let t = Instant::now();
    let mut wire = Vec::with_capacity(routes * 100);
    for n in 0..routes as u32 {
        let r = EvpnRoute::Mac { rd: bgp::rd_ip(Ipv4Addr::new(10, 0, 0, 1), 1), vni: 1, mac: mac(n), ip: None };
        bgp::emit_reach(&mut wire, &r, &Announce { asn: 65000, next_hop: vtep(0), vni: 1, seq: 0 });
    }
    let enc = t.elapsed();
    let t = Instant::now();
    let mut at = 0;
    let mut parsed = 0;
    while let Ok(Some(len)) = bgp::frame_len(&wire[at..]) {
        if let Ok(bgp::Message::Update(u)) = bgp::Message::parse(&wire[at..at + len]) {
            parsed += u.reach.len();
        }
        at += len;
    }
    let dec = t.elapsed();
    assert_eq!(parsed, routes);
    println!(
        "| BGP: encode / parse {routes} type-2 UPDATEs ({} MB on the wire) | {:.1} / {:.1} ms |",
        wire.len() >> 20,
        enc.as_secs_f64() * 1e3,
        dec.as_secs_f64() * 1e3
    );
    println!(
        "memory: {} KiB RSS for {entries} entries = {} bytes per entry (routes, per-source table and datapath view)",
        after.saturating_sub(before),
        after.saturating_sub(before) * 1024 / entries.max(1)
    );
}
