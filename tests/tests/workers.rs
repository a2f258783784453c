//! Two datapath workers per weftd (`--workers 2`), whatever the environment says: flows spread over both
//! and each stays in order, a MAC that every worker learns at once is one entry that moves and ages as one,
//! and configuration changes under TCP load lose no connection.

use std::time::Duration;
use weft_interop::*;

/// CPU seconds (user + system) of each datapath worker thread of process `pid`, by thread name.
fn worker_cpu(pid: u32) -> Vec<(String, f64)> {
    let tick = 100.0;
    let mut out = Vec::new();
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("weftd's threads").flatten() {
        let dir = t.path();
        let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default().trim().to_string();
        if !comm.starts_with("datapath") {
            continue;
        }
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
        let cpu = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
            + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
        out.push((comm, cpu / tick));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

struct Setup {
    _tmp: TempDir,
    u: Underlay,
    w1: Weftd,
    w2: Weftd,
    left: Ns,
    right: Ns,
    /// The right endpoint's interface (the TAP, moved into its namespace).
    tap: String,
}

/// Host 1: a veth endpoint; host 2: a TAP endpoint (a queue per worker); a VXLAN tunnel between them.
fn setup(p: &str) -> Option<Setup> {
    if !prerequisites(&["ip", "ping", "iperf3"]) {
        return None;
    }
    let tmp = TempDir::new(p);
    let u = underlay(p);
    let w1 = Weftd::start_with(&u.h1, &tmp.path("h1"), &["--workers", "2"]);
    let w2 = Weftd::start_with(&u.h2, &tmp.path("h2"), &["--workers", "2"]);
    assert_eq!((w1.workers(), w2.workers()), (2, 2));
    w1.weft("add-br sw1");
    let p1 = format!("{p}p1");
    let left = endpoint_veth(&format!("{p}l"), &u.h1, &p1, V4_LEFT, V6_LEFT);
    w1.weft(&format!("add-port sw1 {p1}"));
    w1.weft("add-port sw1 t1 -- set interface t1 type=vxlan options:remote_ip=192.0.2.12 options:key=7");
    w2.weft("add-br sw1");
    let tap = format!("{p}tap");
    w2.weft(&format!("add-port sw1 {tap} -- set interface {tap} type=tap"));
    w2.weft("add-port sw1 t1 -- set interface t1 type=vxlan options:remote_ip=192.0.2.11 options:key=7");
    let right = endpoint_tap(&format!("{p}r"), &u.h2, &tap, V4_RIGHT, V6_RIGHT);
    let mtu = right.sh(&format!("cat /sys/class/net/{tap}/mtu"));
    left.sh(&format!("ip link set eth0 mtu {}", mtu.trim()));
    let queues = right.sh(&format!("ls /sys/class/net/{tap}/queues | grep -c rx"));
    assert_eq!(queues.trim(), "2", "the TAP has a queue per worker");
    left.ping(V4_RIGHT, 2);
    Some(Setup { _tmp: tmp, u, w1, w2, left, right, tap })
}

#[test]
fn flows_spread_over_both_workers_and_each_stays_in_order() {
    let Some(s) = setup("wko") else { return };
    let before: Vec<f64> = worker_cpu(s.w2.pid()).into_iter().map(|(_, c)| c).collect();
    // 16 UDP flows (different source ports) into host 2's tunnel socket group, 5 s.
    s.right.sh("iperf3 -s -1 -D");
    std::thread::sleep(Duration::from_millis(300));
    let out = s.left.sh(&format!("timeout 40 iperf3 -c {V4_RIGHT} -u -b 15M -l 1200 -P 16 -t 5 -J"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 -J output");
    let sum = &v["end"]["sum"];
    let packets = sum["packets"].as_u64().unwrap_or(0);
    assert!(packets > 10_000, "the flows carried datagrams: {sum}");
    // iperf3 counts datagrams that arrive behind a later one of their stream.
    let reordered: u64 = v["end"]["streams"]
        .as_array()
        .expect("per-stream results")
        .iter()
        .map(|st| st["udp"]["out_of_order"].as_u64().expect("out_of_order per stream"))
        .sum();
    assert_eq!(reordered, 0, "no flow was reordered: {sum}");
    // A frame one worker sends on the AF_PACKET port is not received back by the group as if it came in
    // (it would teach the bridge that the far side sits behind that port).
    for w in [&s.w1, &s.w2] {
        let st = w.json("fdb stats sw1");
        assert_eq!(st["moves"], 0, "no MAC moved: {st}");
    }
    let after = worker_cpu(s.w2.pid());
    assert_eq!(after.len(), 2, "{after:?}");
    for ((name, a), b) in after.iter().zip(&before) {
        assert!(a - b >= 0.02, "worker {name} switched part of the flows: {before:?} -> {after:?}");
    }
}

#[test]
fn one_mac_on_both_workers_moves_and_ages_as_one_entry() {
    let Some(s) = setup("wkm") else { return };
    s.w2.weft("set bridge sw1 other_config:mac-aging-time=3");
    let left_mac = mac_of(&s.left, "eth0");
    // Many flows from the left reach both workers of host 2 at once: each learns the left MAC.
    s.right.sh("iperf3 -s -1 -D");
    std::thread::sleep(Duration::from_millis(300));
    s.left.sh(&format!("timeout 30 iperf3 -c {V4_RIGHT} -u -b 5M -P 16 -t 2 -J >/dev/null"));
    let entries = |w: &Weftd| -> Vec<serde_json::Value> {
        w.json("fdb show sw1").as_array().unwrap().iter().filter(|e| e["mac"] == left_mac.as_str()).cloned().collect()
    };
    let e = entries(&s.w2);
    assert_eq!(e.len(), 1, "one entry for the left MAC: {e:?}");
    assert_eq!(e[0]["port"], "t1");
    // The MAC moves on host 2: the left endpoint goes quiet, a local namespace takes its MAC and speaks; both
    // workers follow.
    s.left.sh("ip link set eth0 down");
    let mover = Ns::new("wkmv");
    veth(&mover, "eth0", None, &s.u.h2, "wkmvp", None);
    s.w2.weft("add-port sw1 wkmvp");
    mover.sh(&format!("ip link set eth0 down && ip link set eth0 address {left_mac} && ip link set eth0 up"));
    mover.sh("ip addr add 198.51.100.77/24 dev eth0");
    wait_for("the move to be learned", 10, || {
        mover.run("ping -c 1 -W 1 198.51.100.2");
        entries(&s.w2).first().is_some_and(|e| e["port"] == "wkmvp")
    });
    // Frames to that MAC now go to the mover, whichever worker handles them.
    let ports = s.w2.json("dump-ports sw1");
    let tx = |ports: &serde_json::Value| -> u64 {
        ports.as_array().unwrap().iter().find(|p| p["port"] == "wkmvp").unwrap()["tx_packets"].as_u64().unwrap()
    };
    let tx0 = tx(&ports);
    s.right.sh(&format!(
        "ip neigh replace 198.51.100.77 lladdr {left_mac} dev {dev} && \
         for i in $(seq 1 16); do ping -c 1 -W 1 198.51.100.77 >/dev/null 2>&1 & done; wait",
        dev = s.tap
    ));
    let tx1 = tx(&s.w2.json("dump-ports sw1"));
    assert!(tx1 >= tx0 + 16, "frames to the moved MAC reached its new port: {tx0} -> {tx1}");
    assert_eq!(entries(&s.w2).len(), 1);
    // Nobody speaks from it any more: the entry ages out of every worker's copy.
    mover.sh("ip link set eth0 down");
    wait_for("the entry to age out", 15, || entries(&s.w2).is_empty());
    std::thread::sleep(Duration::from_millis(1500));
    assert!(entries(&s.w2).is_empty(), "no worker brought it back");
}

#[test]
fn configuration_changes_under_tcp_load_lose_no_connection() {
    let Some(s) = setup("wkc") else { return };
    s.right.sh("iperf3 -s -1 -D");
    std::thread::sleep(Duration::from_millis(300));
    let client = s.left.spawn(&format!("timeout 60 iperf3 -c {V4_RIGHT} -P 4 -t 8 -J"));
    // Ports and flows come and go on both hosts while four TCP streams run.
    for i in 0..12 {
        for w in [&s.w1, &s.w2] {
            w.weft(&format!("add-port sw1 wkx{i} -- set interface wkx{i} type=internal"));
            w.weft(&format!(
                "add-port sw1 vx{i} -- set interface vx{i} type=vxlan options:remote_ip=192.0.2.{} options:key={}",
                100 + i,
                100 + i
            ));
            w.weft(&format!("add-flow sw1 priority={},dl_type=0x88b5,actions=drop", 100 + i));
            w.weft("add-flow sw1 priority=0,actions=normal");
        }
        std::thread::sleep(Duration::from_millis(250));
        for w in [&s.w1, &s.w2] {
            w.weft(&format!("del-port sw1 wkx{i}"));
            w.weft(&format!("del-port sw1 vx{i}"));
        }
    }
    let out = client.wait_with_output().expect("iperf3 ran");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("iperf3 -J output");
    assert!(v["error"].is_null(), "iperf3: {}", v["error"]);
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0);
    assert!(bps > 100e6, "four TCP streams kept going through 24 configuration changes: {bps} bit/s");
    // Afterwards the tables are whole: each host knows the other side's MAC behind its tunnel.
    let right_mac = mac_of(&s.right, &s.tap);
    let fdb = s.w1.json("fdb show sw1");
    assert!(fdb.as_array().unwrap().iter().any(|e| e["mac"] == right_mac.as_str() && e["port"] == "t1"), "{fdb}");
    s.left.ping(V4_RIGHT, 2);
}
