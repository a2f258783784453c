//! Offloads end to end: bulk TCP in both directions across weft tunnels, checked byte for byte (SHA-256 of
//! 24 MB each way), with the kernel's offloads on the endpoints left on.
//!
//! ```text
//!  [L] eth0 ──veth── P1 [H1: weftd sw1] U1 ──veth── U2 [H2: weftd sw1] tap → [R]
//! ```
//!
//! With offloads on (the default), L's kernel hands 64 KiB TCP frames to P1 (AF_PACKET), weft sends them as
//! UDP_SEGMENT trains, H2 receives them coalesced (UDP_GRO), merges the TCP segments again and writes one
//! GSO frame to the TAP; R's kernel sends TSO frames into its TAP, and the way back is the same. The test
//! asserts that each of those steps really happened (the `gso_tx` / `gro_rx` counters). With
//! `WEFT_OFFLOADS=off` (CI runs this file both ways) it asserts that none did: every frame was cut to wire
//! size by weft and nothing was merged. Either way nothing may be dropped as malformed.

use weft_interop::*;

/// Sends 24 MB of deterministic pseudo-random bytes from `from` to `to_addr` over TCP and returns the
/// SHA-256 the receiver computed and the one the sender computed.
fn transfer(dir: &TempDir, from: &Ns, to: &Ns, to_addr: &str, port: u16) -> (String, String) {
    let script = dir.path(&format!("xfer{port}.py"));
    std::fs::write(
        &script,
        r#"import hashlib, random, socket, sys
role, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
h = hashlib.sha256()
if role == "recv":
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(1); s.settimeout(60)
    c, _ = s.accept(); c.settimeout(60); n = 0
    while True:
        b = c.recv(1 << 20)
        if not b: break
        h.update(b); n += len(b)
    print(h.hexdigest(), n)
else:
    r = random.Random(7)
    c = socket.create_connection((addr, port), timeout=60)
    for _ in range(24):
        b = r.randbytes(1 << 20)
        h.update(b); c.sendall(b)
    c.shutdown(socket.SHUT_WR); c.recv(1); c.close()
    print(h.hexdigest(), 24 << 20)
"#,
    )
    .expect("write transfer script");
    let out = dir.path(&format!("recv{port}.out"));
    let s = script.display();
    to.sh(&format!("timeout 90 python3 {s} recv {to_addr} {port} > {} 2>&1 &", out.display()));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let sent = from.sh(&format!("timeout 90 python3 {s} send {to_addr} {port}"));
    let got = wait_for(&out, 30, |g| g.contains(' '));
    (got.trim().to_string(), sent.trim().to_string())
}

/// Whether this run has offloads (CI runs this file with and without `WEFT_OFFLOADS=off`).
fn offloads_on() -> bool {
    !matches!(
        std::env::var("WEFT_OFFLOADS").unwrap_or_default().to_ascii_lowercase().as_str(),
        "off" | "0" | "no" | "false"
    )
}

/// The contents of `path` once `done` holds for them, or whatever is there after `secs` seconds.
fn wait_for(path: &std::path::Path, secs: u64, done: impl Fn(&str) -> bool) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let got = std::fs::read_to_string(path).unwrap_or_default();
        if done(&got) || std::time::Instant::now() > deadline {
            return got;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn counter(ports: &serde_json::Value, port: &str, key: &str) -> u64 {
    let p = ports.as_array().expect("ports").iter().find(|p| p["port"] == port);
    p.unwrap_or_else(|| panic!("no port {port} in {ports}"))[key].as_u64().unwrap_or(0)
}

/// `vlan`: the endpoints are access ports of VLAN 10 and the tunnel carries it tagged (a trunk), so every
/// offloaded frame gets its tag pushed into each segment of a train, and merging works on tagged segments.
/// `v6`: the underlay is IPv6 (UDP_SEGMENT and UDP_GRO on IPv6 sockets).
fn bulk_both_ways(p: &str, tunnel: &str, opts: &str, vlan: bool, v6: bool) {
    if !prerequisites(&["ip", "ping", "python3"]) {
        return;
    }
    let offloads = offloads_on();
    let access = if vlan { " tag=10" } else { "" };
    let opts = format!("options:key=77{opts}");
    let t = pair_with(p, tunnel, v6, &opts, &opts, access, true);
    t.left.ping(V4_RIGHT, 2);
    if vlan {
        t.w1.weft("set port t1 trunks=10");
        t.w2.weft("set port t1 trunks=10");
    }
    let (left, right, w1, w2, tmp, p1, tap) = (&t.left, &t.right, &t.w1, &t.w2, &t.tmp, &t.p1, &t.tap);
    left.ping(V6_RIGHT, 2);

    // Drops are counted from here: a flooded frame may meet the TAP still down before it moved to R.
    let before = [w1.json("dump-ports sw1"), w2.json("dump-ports sw1")];
    let (got, sent) = transfer(tmp, left, right, V4_RIGHT, 9001);
    assert_eq!(got, sent, "{tunnel}: L to R over IPv4, what arrived differs from what was sent");
    let (got, sent) = transfer(tmp, right, left, V4_LEFT, 9002);
    assert_eq!(got, sent, "{tunnel}: R to L over IPv4, what arrived differs from what was sent");
    let (got, sent) = transfer(tmp, left, right, V6_RIGHT, 9003);
    assert_eq!(got, sent, "{tunnel}: L to R over IPv6, what arrived differs from what was sent");

    let c1 = w1.json("dump-ports sw1");
    let c2 = w2.json("dump-ports sw1");
    for ((c, b), host) in [(&c1, &before[0]), (&c2, &before[1])].into_iter().zip(["H1", "H2"]) {
        for port in c.as_array().expect("ports") {
            let name = port["port"].as_str().unwrap_or_default();
            let earlier = b.as_array().expect("ports").iter().find(|p| p["port"] == name);
            for why in ["malformed", "unsupported_offload", "tx_error"] {
                let was = earlier.and_then(|p| p["drops"][why].as_u64()).unwrap_or(0);
                let now = port["drops"][why].as_u64().unwrap_or(0);
                assert_eq!(now - was, 0, "{host} {name}: {why} drops during the transfers: {c}");
            }
        }
    }
    // GRE goes over raw IP sockets: no UDP_SEGMENT trains and no UDP_GRO, so weft cuts frames itself; it
    // still merges consecutive segments received in one batch, but how many depends on timing.
    let udp = tunnel != "gre";
    let on = |what: bool| Some(offloads && what);
    let steps = [
        ("H1 sends L's TSO frames as UDP_SEGMENT trains", counter(&c1, "t1", "gso_tx"), on(udp)),
        ("H2 merges the received segments", counter(&c2, "t1", "gro_rx"), if udp { on(true) } else { None }),
        ("H2 writes merged frames to the TAP whole", counter(&c2, tap, "gso_tx"), if udp { on(true) } else { None }),
        ("H2 sends R's TSO frames (from the TAP) as trains", counter(&c2, "t1", "gso_tx"), on(udp)),
        ("H1 merges the received segments", counter(&c1, "t1", "gro_rx"), if udp { on(true) } else { None }),
        ("H1 writes merged frames to AF_PACKET whole", counter(&c1, p1, "gso_tx"), if udp { on(true) } else { None }),
    ];
    for (what, n, expected) in steps {
        if let Some(expected) = expected {
            assert_eq!(n > 0, expected, "{tunnel}, offloads {offloads}: {what}: counter {n}\nH1: {c1}\nH2: {c2}");
        }
    }
    if !offloads {
        for (c, port) in [(&c1, "t1"), (&c2, "t1")] {
            assert_eq!(counter(c, port, "gro_rx"), 0, "offloads off, yet segments were merged: {c}");
        }
    }
}

#[test]
fn bulk_tcp_vxlan() {
    bulk_both_ways("ofv", "vxlan", "", false, false);
}

#[test]
fn bulk_tcp_vxlan_ipv6_underlay() {
    bulk_both_ways("of6", "vxlan", "", false, true);
}

#[test]
fn bulk_tcp_vxlan_vlan_trunk() {
    bulk_both_ways("oft", "vxlan", "", true, false);
}

#[test]
fn bulk_tcp_geneve_with_options() {
    bulk_both_ways("ofg", "geneve", " options:geneve_opts=0x0102:0x80:01020304", false, false);
}

/// IPsec: the segments leave as trains of ESP datagrams and are merged again after decryption; every byte
/// arrives intact.
#[test]
fn bulk_tcp_vxlan_ipsec() {
    bulk_both_ways("ofi", "vxlan", " options:psk=swordfish", false, false);
}

#[test]
fn bulk_tcp_gre() {
    bulk_both_ways("ofr", "gre", "", false, false);
}

/// UDP segmentation offload (USO): an application that sends one buffer as 8 datagrams (UDP_SEGMENT) through
/// a veth (AF_PACKET port) or a TAP hands weft one 9.6 KB frame; what arrives on the far side must be 8
/// separate datagrams of 1200 bytes with the right bytes in each, in both directions.
#[test]
fn udp_segmentation_offload_arrives_as_datagrams() {
    if !prerequisites(&["ip", "ping", "python3"]) {
        return;
    }
    let t = pair_with("ofu", "vxlan", false, "options:key=9", "options:key=9", "", true);
    t.left.ping(V4_RIGHT, 2);
    let (left, right, w1, w2, tmp) = (&t.left, &t.right, &t.w1, &t.w2, &t.tmp);
    let script = tmp.path("uso.py");
    std::fs::write(
        &script,
        r#"import socket, sys
role, addr = sys.argv[1], sys.argv[2]
if role == "recv":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 9100)); s.settimeout(10)
    got = []
    try:
        while len(got) < 8:
            got.append(s.recv(65536))
    except socket.timeout:
        pass
    ok = all(d == bytes([i]) * 1200 for i, d in enumerate(got))
    print(len(got), [len(d) for d in got][:8], "ok" if ok else "bad")
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_UDP, 103, 1200)  # UDP_SEGMENT
    s.sendto(b"".join(bytes([i]) * 1200 for i in range(8)), (addr, 9100))
    print("sent")
"#,
    )
    .expect("write script");
    let offloads = offloads_on();
    for (from, to, addr, sender) in [(left, right, V4_RIGHT, w1), (right, left, V4_LEFT, w2)] {
        let out = tmp.path(&format!("uso-{addr}.out"));
        to.sh(&format!("timeout 20 python3 {} recv {addr} > {} 2>&1 &", script.display(), out.display()));
        std::thread::sleep(std::time::Duration::from_millis(500));
        assert_eq!(from.sh(&format!("python3 {} send {addr}", script.display())).trim(), "sent");
        let got = wait_for(&out, 15, |g| g.contains("ok") || g.contains("bad"));
        assert_eq!(
            got.trim(),
            "8 [1200, 1200, 1200, 1200, 1200, 1200, 1200, 1200] ok",
            "to {addr}\nH1: {}\nH2: {}",
            w1.json("dump-ports sw1"),
            w2.json("dump-ports sw1")
        );
        // With offloads on, the 9.6 KB frame crossed the sending weftd whole and left as one train.
        let trains = counter(&sender.json("dump-ports sw1"), "t1", "gso_tx");
        assert_eq!(trains > 0, offloads, "to {addr}: UDP_SEGMENT trains sent: {trains}");
    }
}

/// A merged frame whose payloads were left where they arrived is made whole for any use that reads it: here
/// a capture on H1's port towards L while 24 MB cross from R to L (H1 merges the segments it receives and
/// writes them to that port). What L receives must be exactly what R sent, and every segment the capture
/// holds, merged ones included, must carry what R sent at its place in the stream.
#[test]
fn merged_frames_a_capture_watches_are_written_whole() {
    if !prerequisites(&["ip", "ping", "python3", "tshark"]) {
        return;
    }
    let t = pair_with("ofw", "vxlan", false, "options:key=5", "options:key=5", "", true);
    t.left.ping(V4_RIGHT, 2);
    let (left, right, w1, tmp, p1) = (&t.left, &t.right, &t.w1, &t.tmp, &t.p1);
    let pcap = tmp.path("p1.pcap");
    let mut capture = w1.spawn_weft(&format!("capture sw1 {p1} -w {}", pcap.display()));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (got, sent) = transfer(tmp, right, left, V4_LEFT, 9004);
    let _ = capture.kill();
    let _ = capture.wait();
    assert_eq!(got, sent, "R to L with a capture on H1's port towards L: what arrived differs from what was sent");
    // Every data segment the capture holds must carry the bytes R sent at its sequence number: a frame read
    // before its gaps were closed would hold the next datagrams' headers instead.
    let check = tmp.path("check.py");
    std::fs::write(
        &check,
        r#"import random, subprocess, sys
pcap = sys.argv[1]
r = random.Random(7)
stream = b"".join(r.randbytes(1 << 20) for _ in range(24))
def fields(flt, *f):
    cmd = ["tshark", "-r", pcap, "-Y", flt, "-T", "fields"] + [x for n in f for x in ("-e", n)]
    out = subprocess.run(cmd, capture_output=True, text=True).stdout
    return [l.split("	") for l in out.splitlines() if l.strip()]
syn = fields("tcp.dstport == 9004 && tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.seq_raw")
isn = int(syn[0][0])
seen = bad = largest = 0
for seq, payload in fields("tcp.dstport == 9004 && tcp.len > 0", "tcp.seq_raw", "tcp.payload"):
    data = bytes.fromhex(payload.replace(":", ""))
    off = (int(seq) - isn - 1) % (1 << 32)
    seen += 1
    largest = max(largest, len(data))
    bad += stream[off:off + len(data)] != data
print(seen, bad, largest)
"#,
    )
    .expect("write check script");
    let out = sh(&format!("python3 {} {}", check.display(), pcap.display()));
    let v: Vec<usize> = out.split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let merged = counter(&w1.json("dump-ports sw1"), "t1", "gro_rx");
    assert_eq!(v.len(), 3, "the capture check printed {out:?}");
    let (seen, bad, largest) = (v[0], v[1], v[2]);
    assert!(seen > 50, "data segments captured on {p1}: {seen}");
    assert_eq!(bad, 0, "captured segments whose payload differs from what R sent: {bad} of {seen}");
    assert_eq!(largest > 3000, offloads_on(), "largest payload captured on {p1}: {largest} (merged: {merged})");
}

/// Small datagrams of one flow leave a tunnel socket as UDP_SEGMENT trains and are merged into USO frames on
/// the far side (with offloads on): 1000 UDP datagrams of 100 bytes sent back to back from L must all reach
/// R, intact and in order, H1 must have sent some of them as trains and H2 merged some.
#[test]
fn small_datagrams_are_sent_as_trains_in_order() {
    small_datagrams("ofs", 1);
}

/// Small datagrams of several flows sent round robin (four UDP sockets on L, 500 datagrams each): the flows
/// interleave on H1's pool of tunnel sockets, and weft gathers each socket's datagrams into trains across
/// the others (with offloads on). Every datagram must reach R intact, each flow in order.
#[test]
fn interleaved_flows_are_gathered_into_trains_each_in_order() {
    small_datagrams("ofm", 4);
}

/// Sends 1000 / `flows` datagrams of 100 bytes on each of `flows` sockets from L, round robin, and checks
/// what R receives (every datagram, each source's in order) and that trains were sent (and, for one flow,
/// merged) exactly when offloads are on.
fn small_datagrams(p: &str, flows: usize) {
    if !prerequisites(&["ip", "ping", "python3"]) {
        return;
    }
    let t = pair_with(p, "vxlan", false, "options:key=3", "options:key=3", "", false);
    t.left.ping(V4_RIGHT, 2);
    let (left, right, w1, w2, tmp) = (&t.left, &t.right, &t.w1, &t.w2, &t.tmp);
    let offloads = offloads_on();
    let before = counter(&w1.json("dump-ports sw1"), "t1", "gso_tx");
    let script = tmp.path("small.py");
    std::fs::write(
        &script,
        r#"import socket, sys
role, addr, flows = sys.argv[1], sys.argv[2], int(sys.argv[3])
each = 1000 // flows
if role == "recv":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)  # SO_RCVBUFFORCE
    s.bind((addr, 9200)); s.settimeout(5)
    got = {}
    try:
        while sum(map(len, got.values())) < each * flows:
            b, src = s.recvfrom(2048)
            got.setdefault(src[1], []).append(b)
    except socket.timeout:
        pass
    want = [i.to_bytes(4, "big") * 25 for i in range(each)]
    ok = len(got) == flows and all(g == want for g in got.values())
    print(sum(map(len, got.values())), "in order" if ok else "out of order or damaged")
else:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(flows)]
    for i in range(each):
        for s in socks:
            s.sendto(i.to_bytes(4, "big") * 25, (addr, 9200))
    print("sent")
"#,
    )
    .expect("write script");
    let out = tmp.path("small.out");
    let args = format!("{V4_RIGHT} {flows}");
    right.sh(&format!("timeout 20 python3 {} recv {args} > {} 2>&1 &", script.display(), out.display()));
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(left.sh(&format!("python3 {} send {args}", script.display())).trim(), "sent");
    let got = wait_for(&out, 15, |g| g.contains("order"));
    let want = format!("{} in order", 1000 / flows * flows);
    assert_eq!(got.trim(), want, "H1: {}\nH2: {}", w1.json("dump-ports sw1"), w2.json("dump-ports sw1"));
    let trains = counter(&w1.json("dump-ports sw1"), "t1", "gso_tx") - before;
    assert_eq!(trains > 0, offloads, "trains sent by H1 during the burst: {trains}");
    // ... and H2 merged datagrams of the flow back into USO frames for R's veth, as UDP GRO forwarding does.
    // (With several flows a train may alternate two flows that share a tunnel socket, which no merge joins.)
    let merged = counter(&w2.json("dump-ports sw1"), "t1", "gro_rx");
    if flows == 1 {
        assert_eq!(merged > 0, offloads, "datagrams merged by H2: {merged}");
    }
}
