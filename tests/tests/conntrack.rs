//! Connection tracking: a security group — stateful flows in ovs-ofctl syntax, as OpenStack's OVS firewall
//! driver writes them — on the host of endpoint R, across a VXLAN tunnel from weft's host of endpoint L.
//! R's host is weft in one run and Open vSwitch's userspace datapath in the other, with the same flows and
//! the same traffic: OVS is the oracle, and both must decide the same, as the security group says.
//!
//! ```text
//!  [L] ── weft sw1 (H1) ══ VXLAN 5000 ══ (H2) weft br0 | OVS br-int, the security group ── [R]
//! ```
//!
//! The group lets R's own connections out and their answers back (`+est`, `+rel`), lets in new TCP to port
//! 22 and ICMP echo, and drops the rest. Checked with iperf3 (offloads on where weft carries it), ping, UDP,
//! an ICMP time-exceeded from a router on L's side (related to R's ping), and an out-of-window reset forged
//! with scapy (invalid: dropped, the connection lives on).

use std::time::Duration;
use weft_interop::*;

const L4: &str = "10.23.0.1";
const R4: &str = "10.23.0.2";
const L6: &str = "2001:db8:23::1";
const R6: &str = "2001:db8:23::2";
const PY: &str = "/usr/bin/python3";

/// The security group, for a bridge whose tunnel port is `t1` and whose port to R is `rp`.
fn security_group(rp: &str) -> Vec<String> {
    [
        "table=0,priority=110,icmp6,icmp_type=135,actions=NORMAL",
        "table=0,priority=110,icmp6,icmp_type=136,actions=NORMAL",
        "table=0,priority=100,ip,actions=ct(table=1,zone=5)",
        "table=0,priority=100,ipv6,actions=ct(table=1,zone=5)",
        "table=0,priority=0,actions=NORMAL",
        "table=1,priority=100,ct_state=+trk+est,actions=NORMAL",
        "table=1,priority=100,ct_state=+trk+rel,actions=NORMAL",
        "table=1,priority=90,ct_state=+trk+inv,actions=drop",
        "table=1,priority=50,ct_state=+trk+new,tcp,in_port=t1,tp_dst=22,actions=ct(commit,zone=5),NORMAL",
        "table=1,priority=50,ct_state=+trk+new,icmp,in_port=t1,icmp_type=8,actions=ct(commit,zone=5),NORMAL",
        "table=1,priority=50,ct_state=+trk+new,icmp6,in_port=t1,icmp_type=128,actions=ct(commit,zone=5),NORMAL",
        "table=1,priority=50,ct_state=+trk+new,ip,in_port=RP,actions=ct(commit,zone=5),NORMAL",
        "table=1,priority=50,ct_state=+trk+new,ipv6,in_port=RP,actions=ct(commit,zone=5),NORMAL",
        "table=1,priority=0,actions=drop",
    ]
    .iter()
    .map(|f| f.replace("RP", rp))
    .collect()
}

/// One UDP datagram from `client` to `dst:port`, where `server` echoes it back: whether the answer came.
fn udp_answered(client: &Ns, server: &Ns, dst: &str, port: u16) -> bool {
    let mut srv = server.spawn(&format!(
        "{PY} -c \"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.bind(('0.0.0.0',{port}));\
         s.settimeout(6);d,a=s.recvfrom(100);s.sendto(d,a)\""
    ));
    std::thread::sleep(Duration::from_millis(400));
    let out = client.run(&format!(
        "{PY} -c \"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(2);\
         s.sendto(b'ping',('{dst}',{port}));print(s.recvfrom(100)[0])\""
    ));
    let _ = srv.kill();
    let _ = srv.wait();
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("ping")
}

/// What the security group decided, check by check.
#[derive(Debug, PartialEq, Eq)]
struct Decisions {
    tcp_22_in: bool,
    tcp_5201_in: bool,
    ping_in: bool,
    ping6_in: bool,
    tcp_out: bool,
    udp_out_answered: bool,
    udp_in: bool,
    time_exceeded_back: bool,
    forged_reset_dropped: bool,
    connection_survived_reset: bool,
}

const EXPECTED: Decisions = Decisions {
    tcp_22_in: true,
    tcp_5201_in: false,
    ping_in: true,
    ping6_in: true,
    tcp_out: true,
    udp_out_answered: true,
    udp_in: false,
    time_exceeded_back: true,
    forged_reset_dropped: true,
    connection_survived_reset: true,
};

/// The `n_packets` of the flow of `dump` (ovs-ofctl dump-flows lines) containing `needle`.
fn packets_of(dump: &str, needle: &str) -> u64 {
    dump.lines()
        .find(|l| l.contains(needle))
        .and_then(|l| l.split("n_packets=").nth(1))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

/// Runs the traffic; `dump` reads the firewall bridge's flows (for the invalid-packet flow's count).
fn decide(left: &Ns, right: &Ns, dump: &dyn Fn() -> String) -> Decisions {
    // L is also a router towards 10.99.0.0/24 (a network behind it), for R's ping with TTL 1.
    left.sh("sysctl -qw net.ipv4.ip_forward=1 && ip link add rt0 type veth peer name rt1 && \
         ip addr add 10.99.0.254/24 dev rt0 && ip link set rt0 up && ip link set rt1 up");
    right.sh(&format!("ip route add 10.99.0.0/24 via {L4}"));
    // Neighbours first (ARP and ND are not tracked), and R's connection out, which the group allows.
    right.ping(L4, 1);
    let ping_in = left.run(&format!("ping -c 2 -i 0.3 -W 1 {R4}")).status.success();
    let ping6_in = left.run(&format!("ping -c 2 -i 0.3 -W 1 {R6}")).status.success();
    let tcp_22_in = tcp_passes(left, right, R4, 22);
    let tcp_5201_in = tcp_passes(left, right, R4, 5201);
    let tcp_out = tcp_passes(right, left, L4, 5202);
    let udp_out_answered = udp_answered(right, left, L4, 7000);
    let udp_in = udp_answered(left, right, R4, 7001);
    let te = right.run("ping -c 1 -t 1 -W 2 10.99.0.1");
    let time_exceeded_back = String::from_utf8_lossy(&te.stdout).contains("Time to live exceeded");

    // A long connection to port 22, and a reset forged into it far outside its window.
    let inv_before = packets_of(&dump(), "ct_state=+inv+trk");
    right.sh("iperf3 -s -1 -D -p 22");
    std::thread::sleep(Duration::from_millis(300));
    let client = left.spawn(&format!("timeout 30 iperf3 -c {R4} -p 22 -t 4 -J"));
    std::thread::sleep(Duration::from_millis(1500));
    let ports = left.sh(&format!("ss -Htn state established dst {R4}:22 | awk '{{print $3}}' | cut -d: -f2"));
    assert!(!ports.trim().is_empty(), "no connection to port 22 to forge a reset into");
    for sport in ports.split_whitespace() {
        left.sh(&format!(
            "{PY} -c \"from scapy.all import IP,TCP,send;send(IP(src='{L4}',dst='{R4}')/TCP(sport={sport},dport=22,\
             flags='R',seq=0x12345678),verbose=0,count=3)\""
        ));
    }
    let out = client.wait_with_output().expect("iperf3 client");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let connection_survived_reset =
        out.status.success() && v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) > 0.0;
    // Open vSwitch updates flow counters in the background: give them a few seconds.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut forged_reset_dropped = false;
    while !forged_reset_dropped && std::time::Instant::now() < deadline {
        forged_reset_dropped = packets_of(&dump(), "ct_state=+inv+trk") >= inv_before + 3;
        std::thread::sleep(Duration::from_millis(250));
    }
    Decisions {
        tcp_22_in,
        tcp_5201_in,
        ping_in,
        ping6_in,
        tcp_out,
        udp_out_answered,
        udp_in,
        time_exceeded_back,
        forged_reset_dropped,
        connection_survived_reset,
    }
}

/// H1 with weft, L behind it, and the tunnel towards H2.
fn left_side(p: &str, u: &Underlay, tmp: &TempDir) -> (Weftd, Ns) {
    let w1 = Weftd::start(&u.h1, &tmp.path("h1"));
    w1.weft("add-br sw1");
    let lp = format!("{p}lp");
    let left = endpoint_veth(&format!("{p}l"), &u.h1, &lp, L4, L6);
    left.sh("ip link set eth0 mtu 1400");
    w1.weft(&format!("add-port sw1 {lp}"));
    w1.weft("add-port sw1 t1 -- set interface t1 type=vxlan options:remote_ip=192.0.2.12 options:key=5000");
    (w1, left)
}

fn right_endpoint(p: &str, h2: &Ns, rp: &str) -> Ns {
    let right = Ns::new(&format!("{p}r"));
    veth(&right, "eth0", None, h2, rp, None);
    right.sh(&format!(
        "ip link set eth0 mtu 1400 && ip addr add {R4}/24 dev eth0 && ip addr add {R6}/64 dev eth0 nodad"
    ));
    h2.sh(&format!("ip link set {rp} up"));
    right
}

#[test]
fn a_security_group_on_weft_tracks_connections_over_vxlan() {
    let p = "ctw";
    if !prerequisites(&["ip", "ping", "iperf3", "ethtool", "ss", PY]) {
        return;
    }
    let tmp = TempDir::new(p);
    let u = underlay(p);
    let (w1, left) = left_side(p, &u, &tmp);
    let w2 = Weftd::start(&u.h2, &tmp.path("h2"));
    let rp = format!("{p}rp");
    w2.weft("add-br br0");
    w2.weft("add-port br0 t1 -- set interface t1 type=vxlan options:remote_ip=192.0.2.11 options:key=5000");
    let right = right_endpoint(p, &u.h2, &rp);
    w2.weft(&format!("add-port br0 {rp}"));
    for f in security_group(&rp) {
        w2.weft(&format!("add-flow br0 '{f}'"));
    }
    let offloads = left.sh("ethtool -k eth0");
    assert!(offloads.contains("tcp-segmentation-offload: on"), "{offloads}");
    let d = decide(&left, &right, &|| w2.weft("dump-flows br0"));
    assert_eq!(d, EXPECTED, "{}", w2.weft("dump-flows br0"));

    // trace (its TCP packet a SYN) says what the tracker would answer, and changes nothing: a new connection to port 22 would be
    // committed, one to port 23 would be dropped by the last flow.
    let before = w2.json("dpctl/ct-stats-show")["connections"].clone();
    let trace =
        |dport: u16| w2.weft(&format!("trace br0 in_port=t1,tcp,nw_src={L4},nw_dst={R4},tp_src=40999,tp_dst={dport}"));
    let t22 = trace(22);
    assert!(t22.contains("ct(zone=5): ct_state=+new+trk") && t22.contains("would be committed"), "{t22}");
    let t23 = trace(23);
    assert!(t23.contains("ct(zone=5): ct_state=+new+trk") && !t23.contains("committed"), "{t23}");
    assert_eq!(w2.json("dpctl/ct-stats-show")["connections"], before, "a trace commits nothing");

    // TCP at speed through the group, both ways on the allowed port.
    right.sh("iperf3 -s -1 -D -p 22");
    std::thread::sleep(Duration::from_millis(300));
    let bps = iperf3_client_bps(&left, R4, 22, "");
    assert!(bps > 50e6, "TCP through the security group: {bps} bit/s");
    let bps = iperf3_bps(&left, &right, R4, R4, 22, " -R");
    assert!(bps > 50e6, "TCP through the security group, answering way: {bps} bit/s");

    // What the tracker holds, as OVS prints it, and its counters.
    let dump = w2.weft("dpctl/dump-conntrack zone=5");
    assert!(
        dump.lines().any(|l| l.starts_with(&format!("tcp,orig=(src={L4},dst={R4},"))
            && l.contains("dport=22),")
            && l.contains(",zone=5")),
        "{dump}"
    );
    assert!(dump.contains(&format!("icmp,orig=(src={R4},dst=10.99.0.1,id=")), "{dump}");
    assert!(w2.weft("dpctl/dump-conntrack zone=6").trim().is_empty());
    let json = w2.json("dpctl/dump-conntrack");
    assert!(json.as_array().is_some_and(|a| a.iter().any(|c| c["proto"] == 17 && c["zone"] == 5)), "{json}");
    let stats = w2.json("dpctl/ct-stats-show");
    assert!(stats["connections"].as_u64().unwrap() >= 5 && stats["invalid"].as_u64().unwrap() >= 3, "{stats}");
    let metrics_ok = w2.weft("dpctl/ct-stats-show");
    assert!(metrics_ok.contains("TCP:") && metrics_ok.contains("Invalid packets:"), "{metrics_ok}");

    // A full table: existing connections go on, new ones are refused and counted; then room again.
    let n = stats["connections"].as_u64().unwrap();
    w2.weft(&format!("dpctl/ct-set-maxconns {n}"));
    assert_eq!(w2.weft("dpctl/ct-get-maxconns").trim(), n.to_string());
    assert!(!udp_answered(&right, &left, L4, 7002), "a new connection went through a full table");
    assert!(w2.drops("br0", &rp, "ct_full") >= 1);
    w2.weft("dpctl/ct-set-limits zone=5,limit=100000");
    assert!(w2.weft("dpctl/ct-get-limits").contains("zone=5,limit=100000,count="));
    w2.weft("dpctl/ct-set-maxconns 1000000");
    assert!(udp_answered(&right, &left, L4, 7003));
    // Limits are configuration: they survive kill -9.
    let mut w2 = w2;
    w2.kill9();
    w2.restart();
    assert!(w2.weft("dpctl/ct-get-limits").contains("zone=5,limit=100000"));
    w2.weft("dpctl/ct-del-limits zone=5");
    assert!(!w2.weft("dpctl/ct-get-limits").contains("zone=5"));
    // Connections live in memory (as in OVS's userspace datapath): a restart starts empty. Flushing forgets
    // every connection (of a zone, or all).
    assert_eq!(w2.json("dpctl/ct-stats-show")["connections"], 0);
    assert!(udp_answered(&right, &left, L4, 7004));
    assert!(w2.json("dpctl/ct-stats-show")["connections"].as_u64().unwrap() >= 1);
    w2.weft("dpctl/flush-conntrack zone=6");
    assert!(w2.json("dpctl/ct-stats-show")["connections"].as_u64().unwrap() >= 1);
    w2.weft("dpctl/flush-conntrack");
    assert_eq!(w2.json("dpctl/ct-stats-show")["connections"], 0);
    drop(w1);
}

#[test]
fn the_same_security_group_decides_the_same_in_open_vswitch() {
    let p = "cto";
    if !prerequisites(&["ip", "ping", "iperf3", "ethtool", "ss", PY, "ovs-vswitchd", "ovsdb-server", "ovs-ofctl"]) {
        return;
    }
    let tmp = TempDir::new(p);
    let u = underlay(p);
    // For OVS: over veth the kernel leaves the outer UDP checksum of weft's tunnel packets to an offload that
    // never happens, and OVS drops what does not verify.
    u.h1.sh(&format!("ethtool -K {} tx off >/dev/null", u.u1));
    let (w1, left) = left_side(p, &u, &tmp);
    let ovs = Ovs::start(&u.h2, tmp.path("ovs"));
    ovs.netdev_host(&format!("{p}u2"));
    let rp = format!("{p}rp");
    let right = right_endpoint(p, &u.h2, &rp);
    // For OVS: it reads a TSO train from its AF_PACKET socket as one frame larger than any MTU, and takes
    // checksums left to an offload as they are.
    right.sh("ethtool -K eth0 tso off tx off >/dev/null");
    ovs.vsctl(&format!("add-port br-int {rp}"));
    ovs.vsctl("add-port br-int t1 -- set interface t1 type=vxlan options:remote_ip=192.0.2.11 options:key=5000");
    let ofctl = |args: &str| ovs.ns.sh(&format!("{} ovs-ofctl {args}", ovs.env()));
    let bridge = format!("unix:{}/br-int.mgmt", ovs.dir.display());
    ofctl(&format!("del-flows {bridge}"));
    for f in security_group(&rp) {
        ofctl(&format!("add-flow {bridge} '{f}'"));
    }
    u.h2.ping("192.0.2.11", 2);
    let d = decide(&left, &right, &|| ofctl(&format!("dump-flows {bridge}")));
    // The oracle agrees with what the group says, and so with weft (the other test asserts the same).
    assert_eq!(d, EXPECTED, "{}", ofctl(&format!("dump-flows {bridge}")));
    let ovs_dump = ovs.appctl("dpctl/dump-conntrack zone=5");
    assert!(ovs_dump.contains(&format!("tcp,orig=(src={L4},dst={R4},")), "{ovs_dump}");
    drop(w1);
}

/// A TCP server in `ns` on port 5201 that answers each connection with `name`, the client's address as it
/// sees it, and `bulk` bytes, then closes it (exits after 30 s without a connection).
fn named_server(ns: &Ns, name: &str, bulk: usize) -> std::process::Child {
    ns.spawn(&format!(
        "exec {PY} -c \"import socket\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         s.bind(('0.0.0.0',5201));s.listen(64);s.settimeout(30)\nwhile True:\n  c,a=s.accept()\n  \
         c.sendall(b'{name} '+a[0].encode()+b'\\n'+b'x'*{bulk});c.close()\""
    ))
}

/// `n` TCP connections from `ns` to `dst:port`, each read to its end: (first line, bytes after it) each.
fn fetch(ns: &Ns, dst: &str, port: u16, n: usize) -> Vec<(String, usize)> {
    let out = ns.sh(&format!(
        "{PY} -c \"import socket\nfor i in range({n}):\n  s=socket.create_connection(('{dst}',{port}),timeout=5)\n  \
         d=b''\n  while True:\n    b=s.recv(65536)\n    if not b: break\n    d+=b\n  \
         h,_,rest=d.partition(b'\\n');print(h.decode(),len(rest))\""
    ));
    out.lines()
        .map(|l| {
            let (h, n) = l.rsplit_once(' ').unwrap_or((l, "0"));
            (h.to_string(), n.parse().unwrap_or(0))
        })
        .collect()
}

#[test]
fn snat_to_a_host_address_and_dnat_of_a_virtual_ip_to_two_backends_carry_tcp() {
    let p = "ctn";
    let Some(OneHost { w, h, tmp: _tmp }) = one_host(p, &["ip", "ping", "iperf3", "ethtool", PY]) else { return };
    w.weft("add-br br0");
    let mut ends = Vec::new();
    for (name, v4) in
        [("in", "10.30.0.5"), ("out", "10.30.0.1"), ("cl", "10.31.0.9"), ("b1", "10.31.0.11"), ("b2", "10.31.0.12")]
    {
        let port = format!("{p}{name}");
        let ns = endpoint_veth(&format!("{p}{name}e"), &h, &port, v4, &format!("2001:db8:30::{}", ends.len() + 1));
        w.weft(&format!("add-port br0 {port}"));
        ends.push(ns);
    }
    let [inside, outside, client, b1, b2] = &ends[..] else { unreachable!() };
    let mac = |ns: &Ns| mac_of(ns, "eth0");
    // Nobody owns the host address 10.30.0.100 or the virtual IP 10.31.0.200: their neighbours are static.
    outside.sh(&format!("ip neigh replace 10.30.0.100 lladdr {} dev eth0", mac(inside)));
    client.sh(&format!("ip neigh replace 10.31.0.200 lladdr {} dev eth0", mac(b1)));
    let (pin, pout, pcl, pb1, pb2) =
        (format!("{p}in"), format!("{p}out"), format!("{p}cl"), format!("{p}b1"), format!("{p}b2"));
    for f in [
        "table=0,priority=100,arp,actions=NORMAL".to_string(),
        // SNAT: what the inside sends out comes from the host address; answers are translated back.
        format!("table=0,priority=50,ip,in_port={pin},actions=ct(commit,zone=1,nat(src=10.30.0.100)),output:{pout}"),
        format!("table=0,priority=50,ip,in_port={pout},actions=ct(zone=1,nat,table=1)"),
        format!("table=1,priority=50,ct_state=+trk+est,ip,actions=output:{pin}"),
        format!("table=1,priority=50,ct_state=+trk+rel,ip,actions=output:{pin}"),
        // DNAT: the virtual IP's port 80 goes to one of two backends (by a hash of the connection), whose
        // MAC the next table sets from the address picked; answers come from the virtual IP.
        format!("table=0,priority=50,tcp,in_port={pcl},nw_dst=10.31.0.200,tp_dst=80,actions=ct(commit,zone=2,nat(dst=10.31.0.11-10.31.0.12:5201),table=2)"),
        format!("table=2,priority=50,ip,nw_dst=10.31.0.11,actions=mod_dl_dst:{},output:{pb1}", mac(b1)),
        format!("table=2,priority=50,ip,nw_dst=10.31.0.12,actions=mod_dl_dst:{},output:{pb2}", mac(b2)),
        format!("table=0,priority=50,ip,in_port={pb1},actions=ct(zone=2,nat,table=3)"),
        format!("table=0,priority=50,ip,in_port={pb2},actions=ct(zone=2,nat,table=3)"),
        format!("table=3,priority=50,ct_state=+trk+est,ip,actions=output:{pcl}"),
        "table=0,priority=0,actions=drop".to_string(),
    ] {
        w.weft(&format!("add-flow br0 '{f}'"));
    }
    assert!(inside.sh("ethtool -k eth0").contains("tcp-segmentation-offload: on"));

    // SNAT, with iperf3 both ways: the outside sees the host address.
    outside.sh("iperf3 -s -1 -D -p 5201 -J --logfile /tmp/weft-ctn-iperf3.json");
    std::thread::sleep(Duration::from_millis(300));
    let bps = iperf3_client_bps(inside, "10.30.0.1", 5201, "");
    assert!(bps > 50e6, "TCP through SNAT: {bps} bit/s");
    let log = std::fs::read_to_string("/tmp/weft-ctn-iperf3.json").unwrap_or_default();
    let _ = std::fs::remove_file("/tmp/weft-ctn-iperf3.json");
    assert!(
        log.contains("\"remote_host\":\t\"10.30.0.100\"") || log.contains("\"remote_host\": \"10.30.0.100\""),
        "{log}"
    );
    let bps = iperf3_bps(inside, outside, "10.30.0.1", "10.30.0.1", 5202, " -R");
    assert!(bps > 50e6, "TCP through SNAT, the outside sending: {bps} bit/s");
    // The outside cannot reach the inside: nothing maps to it unless the inside began.
    assert!(!outside.run("ping -c 1 -W 1 10.30.0.5").status.success());
    assert!(!outside.run("ping -c 1 -W 1 10.30.0.100").status.success());
    // An ICMP error about a translated packet comes back translated: a datagram to a closed port of the
    // outside is refused (port unreachable to 10.30.0.100, quoting 10.30.0.100), and the inside's socket
    // hears it.
    let refused = inside.run(&format!(
        "{PY} -c \"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3);\
         s.connect(('10.30.0.1',9));s.send(b'x')\ntry:\n  s.recv(10)\nexcept ConnectionRefusedError:\n  print('refused')\""
    ));
    assert!(String::from_utf8_lossy(&refused.stdout).contains("refused"), "{refused:?}");
    let dump = w.weft("dpctl/dump-conntrack zone=1");
    assert!(
        dump.contains("tcp,orig=(src=10.30.0.5,dst=10.30.0.1,")
            && dump.contains("reply=(src=10.30.0.1,dst=10.30.0.100,"),
        "{dump}"
    );

    // DNAT to two backends: 24 connections, each answered whole by one backend, both backends used; the
    // backends see the client's own address; 4 MB each (TSO frames from the backends, translated whole).
    let mut servers = [named_server(b1, "b1", 4 << 20), named_server(b2, "b2", 4 << 20)];
    std::thread::sleep(Duration::from_millis(400));
    let got = fetch(client, "10.31.0.200", 80, 24);
    for s in &mut servers {
        let _ = s.kill();
        let _ = s.wait();
    }
    assert_eq!(got.len(), 24, "{got:?}");
    assert!(got.iter().all(|(h, n)| h.ends_with(" 10.31.0.9") && *n == 4 << 20), "{got:?}");
    let n1 = got.iter().filter(|(h, _)| h.starts_with("b1 ")).count();
    assert!(n1 > 0 && n1 < 24, "one backend took every connection: {got:?}");
    let dump = w.weft("dpctl/dump-conntrack zone=2");
    assert!(
        dump.contains("tcp,orig=(src=10.31.0.9,dst=10.31.0.200,") && dump.contains("dport=80),reply=(src=10.31.0.1"),
        "{dump}"
    );
}
