//! OpenFlow 1.3: Open vSwitch's own `ovs-ofctl` manages weft's flow table over TCP (`set-controller
//! ptcp:`), and weft connects to Open vSwitch's test controller (`set-controller tcp:`) and sends it
//! PACKET_IN for `actions=controller`. A malformed message gets an OFPT_ERROR and the daemon stays up.

use weft_interop::*;

/// A weftd host `{p}h` with bridge sw1 and, on its veth ports `{p}p1` and `{p}p2` (ofports 1 and 2), the
/// endpoint namespaces `{p}l` (10.`net`.0.1) and `{p}r` (10.`net`.0.2). Fields drop in order: weftd first.
struct TwoEnds {
    w: Weftd,
    left: Ns,
    right: Ns,
    h: Ns,
    tmp: TempDir,
}

fn two_ends(p: &str, net: u8) -> TwoEnds {
    let tmp = TempDir::new(p);
    let h = Ns::new(&format!("{p}h"));
    let w = Weftd::start(&h, &tmp.path("w"));
    w.weft("add-br sw1");
    let left = Ns::new(&format!("{p}l"));
    let right = Ns::new(&format!("{p}r"));
    veth(&left, "eth0", Some(&format!("10.{net}.0.1/24")), &h, &format!("{p}p1"), None);
    veth(&right, "eth0", Some(&format!("10.{net}.0.2/24")), &h, &format!("{p}p2"), None);
    w.weft(&format!("add-port sw1 {p}p1"));
    w.weft(&format!("add-port sw1 {p}p2"));
    TwoEnds { w, left, right, h, tmp }
}

fn ofctl(ns: &Ns, port: u16, args: &str) -> String {
    ns.sh(&format!("timeout 10 ovs-ofctl -O OpenFlow13 {args}").replace("TARGET", &format!("tcp:127.0.0.1:{port}")))
}

#[test]
fn ovs_ofctl_manages_flows_and_reads_counters() {
    if !prerequisites(&["ip", "ping", "ovs-ofctl"]) {
        return;
    }
    // (Bound in this order so that they drop in reverse: weftd first, the directory last.)
    let TwoEnds { tmp, h, left, right: _right, w } = two_ends("of", 1);
    w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
    let show = w.json("show");
    assert!(show.to_string().contains("sw1"));
    std::thread::sleep(std::time::Duration::from_millis(300));

    // The default flow, as ovs-ofctl reads it.
    let dump = ofctl(&h, 6653, "dump-flows TARGET");
    assert!(dump.contains("priority=0 actions=NORMAL"), "{dump}");
    // Replace it with flows that route by hand; ovs-ofctl writes them, weft's CLI and ovs-ofctl read them.
    ofctl(&h, 6653, "del-flows TARGET");
    for f in [
        "arp,actions=flood",
        "priority=100,ip,nw_dst=10.1.0.2,actions=output:2",
        "priority=100,ip,nw_dst=10.1.0.1,actions=output:1",
        "priority=50,tcp6,ipv6_dst=2001:db8::/64,tp_dst=80,actions=mod_vlan_vid:10,resubmit(,1)",
    ] {
        ofctl(&h, 6653, &format!("add-flow TARGET '{f}'"));
    }
    let ours = w.weft("dump-flows sw1");
    assert_eq!(ours.lines().count(), 4, "{ours}");
    assert!(ours.contains("priority=100,ip,nw_dst=10.1.0.2 actions=output:2"), "{ours}");
    left.ping("10.1.0.2", 3);
    let dump = ofctl(&h, 6653, "dump-flows TARGET");
    let line = dump.lines().find(|l| l.contains("nw_dst=10.1.0.2")).unwrap_or_else(|| panic!("{dump}"));
    let packets: u64 =
        line.split("n_packets=").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(packets >= 3, "ovs-ofctl sees the counters: {line}");
    assert!(
        dump.contains(
            "tcp6,ipv6_dst=2001:db8::/64,tp_dst=80 actions=push_vlan:0x8100,set_field:4106->vlan_vid,resubmit(,1)"
        ),
        "{dump}"
    );
    // Port statistics.
    let ports = ofctl(&h, 6653, "dump-ports TARGET");
    assert!(ports.contains("3 ports") && ports.contains("port  1: rx pkts="), "{ports}");
    // Deleting: loose by match, strict by match and priority.
    ofctl(&h, 6653, "del-flows TARGET arp");
    ofctl(&h, 6653, "--strict del-flows TARGET 'priority=100,ip,nw_dst=10.1.0.1'");
    let ours = w.weft("dump-flows sw1");
    assert_eq!(ours.lines().count(), 2, "{ours}");
    assert!(!ours.contains("arp") && !ours.contains("10.1.0.1 "), "{ours}");
    // The flows are weft's own: they survive a restart.
    let mut w = w;
    w.kill9();
    w.restart();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(ofctl(&h, 6653, "dump-flows TARGET").lines().filter(|l| l.contains("cookie=")).count(), 2);

    // A malformed FLOW_MOD (an OXM running past its match) gets OFPT_ERROR BAD_MATCH, and weftd goes on.
    let script = tmp.path("bad_flow_mod.py");
    std::fs::write(&script, BAD_FLOW_MOD).unwrap();
    let reply = h.sh(&format!("python3 {}", script.display()));
    assert_eq!(reply.trim(), "1 7 (4, 1)", "expected OFPT_ERROR xid 7, type BAD_MATCH (4), code BAD_LEN (1)");
    assert!(ofctl(&h, 6653, "dump-flows TARGET").contains("cookie="), "weftd still answers");
}

#[test]
fn packet_in_to_a_controller() {
    let p = "oc";
    let Some(OneHost { tmp, h, w }) = one_host(p, &["ip", "ping", "ovs-testcontroller"]) else { return };
    w.weft("add-br sw1");
    let left = Ns::new(&format!("{p}l"));
    veth(&left, "eth0", Some("10.2.0.1/24"), &h, &format!("{p}p1"), None);
    w.weft(&format!("add-port sw1 {p}p1"));
    let d = tmp.path("tc");
    std::fs::create_dir_all(&d).unwrap();
    let log = d.join("tc.log");
    // Open vSwitch's test controller, listening; it takes over the table (priority=0 actions=CONTROLLER).
    h.sh(&format!(
        "ovs-testcontroller -O OpenFlow13 ptcp:6654:127.0.0.1 -n --verbose=vconn:file:dbg --log-file={} \
         --pidfile={d}/tc.pid --unixctl={d}/tc.ctl --detach",
        log.display(),
        d = d.display()
    ));
    let pid = std::fs::read_to_string(d.join("tc.pid")).unwrap_or_default().trim().to_string();
    w.weft("set-controller sw1 tcp:127.0.0.1:6654");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("OFPT_FEATURES_REPLY") {
        assert!(std::time::Instant::now() < deadline, "weft did not connect to the controller");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    w.weft("add-flow sw1 priority=10,icmp,actions=controller");
    left.sh("ip neigh add 10.2.0.9 lladdr 02:00:00:00:00:09 dev eth0");
    let _ = left.run("ping -c 3 -i 0.3 -W 1 10.2.0.9");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = run(&format!("kill {pid}"));
    // The bridge's own internal port may send ICMP of its own (an error from the host's stack); the pings
    // come in on port 1.
    // The pings match priority=10,icmp: "action"; other frames from port 1 (IPv6 neighbour discovery) meet the
    // controller's own table-miss flow (priority=0 actions=CONTROLLER): "no_match", as OpenFlow 1.3 says.
    let pins: Vec<&str> = text.lines().filter(|l| l.contains("OFPT_PACKET_IN") && l.contains("in_port=1")).collect();
    let by_action = pins.iter().filter(|l| l.contains("(via action)")).count();
    assert!(by_action >= 3, "no PACKET_IN by action from port 1 at the controller:\n{text}");
    assert!(pins.iter().all(|l| l.contains("(via action)") || l.contains("(via no_match)")), "{pins:?}");
    assert!(text.contains("nw_dst=10.2.0.9") && text.contains("icmp_type=8"), "the packet is in it:\n{text}");
}

/// Sends a FLOW_MOD whose OXM claims 40 bytes inside a 12-byte match, and prints the error it gets back:
/// "type xid (error type, code)".
const BAD_FLOW_MOD: &str = r#"
import socket, struct
s = socket.create_connection(('127.0.0.1', 6653))
s.settimeout(5)
s.sendall(bytes([4, 0, 0, 8, 0, 0, 0, 1]))
fm = struct.pack('>QQBBHHHIIIH2x', 0, 0, 0, 0, 0, 0, 100, 0xffffffff, 0xffffffff, 0xffffffff, 0)
m = struct.pack('>HH', 1, 12) + bytes([0x80, 0, 0x0a, 40, 8, 0, 0, 0]) + bytes(4)
body = fm + m
s.sendall(struct.pack('>BBHI', 4, 14, 8 + len(body), 7) + body)
while True:
    h = s.recv(8)
    n = struct.unpack('>H', h[2:4])[0]
    b = s.recv(n - 8) if n > 8 else b''
    if h[1] == 1:
        print(h[1], struct.unpack('>I', h[4:8])[0], struct.unpack('>HH', b[:4]))
        break
"#;

/// OpenFlow over TLS, as Open vSwitch does it (`set-ssl`, `pssl:`/`ssl:`): `ovs-ofctl` with a certificate
/// the CA signed manages flows through weft's `pssl:` listener; one with a certificate of another CA is
/// refused (and the log says so); weft connects to Open vSwitch's test controller over `ssl:` and sends it
/// PACKET_IN.
#[test]
fn openflow_over_tls_with_ovs_ofctl_and_a_controller() {
    let p = "ot";
    if !prerequisites(&["ip", "ping", "ovs-ofctl", "ovs-testcontroller", "openssl"]) {
        return;
    }
    let tmp = TempDir::new(p);
    let pki = test_pki(&tmp.path("pki"));
    let other = test_pki(&tmp.path("other-pki"));
    let f = |d: &std::path::Path, n: &str| d.join(n).display().to_string();
    let h = Ns::new(&format!("{p}h"));
    let w = Weftd::start(&h, &tmp.path("w"));
    w.weft("add-br sw1");
    let left = Ns::new(&format!("{p}l"));
    veth(&left, "eth0", Some("10.3.0.1/24"), &h, &format!("{p}p1"), None);
    w.weft(&format!("add-port sw1 {p}p1"));
    // pssl without set-ssl is refused whole.
    let (ok, _, err) = w.try_weft("set-controller sw1 pssl:6653");
    assert!(!ok && err.contains("set-ssl"), "{err}");
    w.weft(&format!("set-ssl {} {} {}", f(&pki, "server.key"), f(&pki, "server.crt"), f(&pki, "ca.crt")));
    assert!(w.weft("get-ssl").contains(&format!("CA Certificate: {}", f(&pki, "ca.crt"))));
    w.weft("set-controller sw1 pssl:6653");
    wait_for("the TLS listener", 5, || h.sh("ss -ltnH").contains("127.0.0.1:6653"));
    let ofctl = |d: &std::path::Path, args: &str| {
        h.run(&format!(
            "timeout 10 ovs-ofctl -O OpenFlow13 --private-key={} --certificate={} --ca-cert={} {args}",
            f(d, "client.key"),
            f(d, "client.crt"),
            f(d, "ca.crt")
        ))
    };
    let out = ofctl(&pki, "add-flow ssl:127.0.0.1:6653 priority=7,icmp,actions=drop");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let dump = String::from_utf8_lossy(&ofctl(&pki, "dump-flows ssl:127.0.0.1:6653").stdout).into_owned();
    assert!(dump.contains("priority=7,icmp actions=drop"), "{dump}");
    assert!(w.weft("dump-flows sw1").contains("priority=7,icmp"), "the flow is weft's");
    // Another CA's certificate (ovs-ofctl trusting that other CA too): refused by weft.
    let out = ofctl(&other, "dump-flows ssl:127.0.0.1:6653");
    assert!(!out.status.success(), "a stranger's certificate was accepted");
    wait_for("weft logs the refused connection", 5, || w.log().contains("OpenFlow connection with 127.0.0.1"));
    // Plain TCP to a TLS listener gets nowhere either.
    let out = h.run("timeout 5 ovs-ofctl -O OpenFlow13 dump-flows tcp:127.0.0.1:6653");
    assert!(!out.status.success());

    // weft as the TLS client of Open vSwitch's test controller.
    let d = tmp.path("tc");
    std::fs::create_dir_all(&d).unwrap();
    let log = d.join("tc.log");
    h.sh(&format!(
        "ovs-testcontroller -O OpenFlow13 pssl:6654:127.0.0.1 -p {} -c {} -C {} -n --verbose=vconn:file:dbg \
         --log-file={} --pidfile={d}/tc.pid --unixctl={d}/tc.ctl --detach",
        f(&pki, "server.key"),
        f(&pki, "server.crt"),
        f(&pki, "ca.crt"),
        log.display(),
        d = d.display()
    ));
    let pid = std::fs::read_to_string(d.join("tc.pid")).unwrap_or_default().trim().to_string();
    w.weft("set-controller sw1 ssl:127.0.0.1:6654");
    wait_for("weft connects to the controller over TLS", 10, || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("OFPT_FEATURES_REPLY")
    });
    w.weft("add-flow sw1 priority=10,icmp,actions=controller");
    left.sh("ip neigh add 10.3.0.9 lladdr 02:00:00:00:00:09 dev eth0");
    let _ = left.run("ping -c 3 -i 0.3 -W 1 10.3.0.9");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = run(&format!("kill {pid}"));
    let pins = text.lines().filter(|l| l.contains("OFPT_PACKET_IN") && l.contains("in_port=1")).count();
    assert!(pins >= 3, "no PACKET_IN over TLS:\n{text}");
}

/// `set-controller` right after `del-controller` (or after another target on the same port) listens at once:
/// the old listener is gone and the new one bound before the command returns, and a port another program
/// holds is the command's error, with nothing changed.
#[test]
fn set_controller_listens_when_it_returns() {
    let p = "sc";
    let Some(OneHost { tmp, h, w }) = one_host(p, &["ip", "ss", "python3"]) else { return };
    w.weft("add-br sw1");
    for i in 0..10 {
        w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
        let ss = h.sh("ss -ltnH");
        assert!(ss.contains("127.0.0.1:6653"), "round {i}: nothing listens after set-controller returned:\n{ss}");
        w.weft("del-controller sw1");
        assert!(!h.sh("ss -ltnH").contains(":6653"), "round {i}: still listening after del-controller");
        // The same port under another bridge target spelling, back to back.
        w.weft("set-controller sw1 ptcp:6653");
        w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
        assert!(h.sh("ss -ltnH").contains("127.0.0.1:6653"), "round {i}: the re-set listener is not up");
        w.weft("del-controller sw1");
    }
    // A port held by another program: refused, and the bridge keeps no controller.
    let mut holder = h.spawn(
        "exec python3 -c 'import socket, time; s = socket.socket(); s.bind((\"127.0.0.1\", 6655)); s.listen(); time.sleep(60)'",
    );
    wait_for("the other program listens", 5, || h.sh("ss -ltnH").contains("127.0.0.1:6655"));
    let (ok, _, err) = w.try_weft("set-controller sw1 ptcp:6655:127.0.0.1");
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(!ok && err.contains("cannot listen") && err.contains("6655"), "{err}");
    assert!(!w.weft("show").contains("ptcp:6655"), "the refused controller was kept");
    let db = std::fs::read_to_string(tmp.path("w").join("conf.db")).unwrap();
    assert!(!db.contains("ptcp:6655"), "the refused controller was saved");
    w.weft("set-controller sw1 ptcp:6656:127.0.0.1");
    assert!(w.weft("show").contains("Controller \"ptcp:6656:127.0.0.1\""));
}

/// What weft encodes, ovs-ofctl decodes: ARP opcodes (not maskable), SCTP ports (their own OXM fields, both
/// ways), controller max_len; and the default NORMAL flow and table 0 count what passes.
#[test]
fn ovs_ofctl_reads_what_weft_encodes() {
    if !prerequisites(&["ip", "ping", "ovs-ofctl"]) {
        return;
    }
    let TwoEnds { tmp: _tmp, h, left, right: _right, w } = two_ends("oe", 4);
    w.weft("set-controller sw1 ptcp:6657:127.0.0.1");
    let ofctl = |args: &str| {
        h.sh(&format!("timeout 10 ovs-ofctl -O OpenFlow13 {args}").replace("TARGET", "tcp:127.0.0.1:6657"))
    };
    // The default flow counts, over OpenFlow and in weft's own dump; so does table 0.
    left.ping("10.4.0.2", 3);
    let dump = ofctl("dump-flows TARGET");
    let line = dump.lines().find(|l| l.contains("actions=NORMAL")).unwrap_or_else(|| panic!("{dump}"));
    let n: u64 =
        line.split("n_packets=").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(n >= 6, "the default NORMAL flow counted {n}: {line}");
    let ours = w.weft("dump-flows sw1");
    let ours_n: u64 = ours
        .split("n_packets=")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{ours}"));
    assert!(ours_n >= n, "weft's own dump-flows: {ours}");
    let tables = ofctl("dump-tables TARGET");
    let lookups: u64 = tables
        .split("lookup=")
        .nth(1)
        .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(lookups >= 6, "table 0 lookups: {tables}");
    // Flows with ARP opcodes, SCTP ports and a controller max_len, added with weft's CLI and with ovs-ofctl.
    w.weft("add-flow sw1 priority=10,arp,arp_op=1,actions=NORMAL");
    w.weft("add-flow sw1 priority=10,sctp,tp_dst=5,actions=drop");
    w.weft("add-flow sw1 priority=10,icmp,actions=controller:128");
    ofctl("add-flow TARGET priority=11,sctp,tp_src=6,actions=drop");
    let dump = ofctl("dump-flows TARGET");
    assert!(!dump.contains("decode error") && !dump.contains("OFPBMC"), "{dump}");
    for want in [
        "arp,arp_op=1 actions=NORMAL",
        "sctp,tp_dst=5 actions=drop",
        "sctp,tp_src=6 actions=drop",
        "icmp actions=CONTROLLER:128",
    ] {
        assert!(dump.contains(want), "ovs-ofctl lacks {want:?}:\n{dump}");
    }
    let ours = w.weft("dump-flows sw1");
    assert!(ours.contains("CONTROLLER:128") && ours.contains("sctp,tp_src=6"), "{ours}");
}

/// PORT_MOD from `ovs-ofctl mod-port`: a port set `no-flood` (OpenFlow 1.0's bit) gets no flooded frames
/// but still its own; set `down` (OpenFlow 1.3), it neither receives nor sends (counted as `port_config`),
/// and `up` (1.0) brings it back; `dump-ports-desc` shows each setting and it survives a restart. A
/// PORT_MOD for a port the bridge lacks is refused.
#[test]
fn mod_port_sets_a_ports_openflow_configuration() {
    if !prerequisites(&["ip", "ping", "ovs-ofctl"]) {
        return;
    }
    let TwoEnds { tmp, h, left, right, w } = two_ends("om", 6);
    w.weft("set-controller sw1 ptcp:6654:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    left.ping("10.6.0.2", 2);
    // no-flood (OpenFlow 1.0's bit: plain ovs-ofctl): an address nobody has is flooded, and omp2 gets none
    // of it; known unicast still crosses.
    h.sh("timeout 10 ovs-ofctl mod-port tcp:127.0.0.1:6654 omp2 no-flood");
    let desc = h.sh("timeout 10 ovs-ofctl dump-ports-desc tcp:127.0.0.1:6654");
    assert!(desc.contains("config:     NO_FLOOD"), "{desc}");
    let before = w.json("dump-ports sw1");
    let tx = |v: &serde_json::Value| -> u64 {
        v.as_array().unwrap().iter().find(|p| p["port"] == "omp2").unwrap()["tx_packets"].as_u64().unwrap()
    };
    let _ = left.run("ping -c 3 -i 0.2 -W 1 10.6.0.99");
    assert_eq!(tx(&w.json("dump-ports sw1")), tx(&before), "no flooded frame reached omp2");
    left.ping("10.6.0.2", 2);
    // down: nothing crosses either way; the drops are counted on the port.
    h.sh("timeout 10 ovs-ofctl mod-port tcp:127.0.0.1:6654 omp2 flood");
    ofctl(&h, 6654, "mod-port TARGET omp2 down");
    let desc = ofctl(&h, 6654, "dump-ports-desc TARGET");
    assert!(desc.contains("config:     PORT_DOWN"), "{desc}");
    assert!(!left.run("ping -c 2 -i 0.2 -W 1 10.6.0.2").status.success(), "the port is down");
    assert!(w.drops("sw1", "omp2", "port_config") > 0);
    // It is the bridge's configuration: it survives a restart.
    let mut w = w;
    w.kill9();
    w.restart();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(ofctl(&h, 6654, "dump-ports-desc TARGET").contains("config:     PORT_DOWN"));
    // Plain ovs-ofctl (OpenFlow 1.0) brings it up again.
    h.sh("timeout 10 ovs-ofctl mod-port tcp:127.0.0.1:6654 omp2 up");
    right.ping("10.6.0.1", 2);
    // No such port: OFPET_PORT_MOD_FAILED (7), OFPPMFC_BAD_PORT (0); a wrong address: BAD_HW_ADDR (1).
    let script = tmp.path("bad_port_mod.py");
    std::fs::write(&script, BAD_PORT_MOD).unwrap();
    assert_eq!(h.sh(&format!("python3 {} 99", script.display())).trim(), "1 9 (7, 0)");
    assert_eq!(h.sh(&format!("python3 {} 2", script.display())).trim(), "1 9 (7, 1)");
    assert!(!ofctl(&h, 6654, "dump-ports-desc TARGET").contains("PORT_DOWN"), "nothing changed");
}

/// Sends PORT_MOD (port `argv[1]`, address 02:00:00:00:00:01, PORT_DOWN) and prints the error it gets.
const BAD_PORT_MOD: &str = r#"
import socket, struct, sys
s = socket.create_connection(('127.0.0.1', 6654))
s.settimeout(5)
s.sendall(bytes([4, 0, 0, 8, 0, 0, 0, 1]))
body = struct.pack('>I4x6s2xIII4x', int(sys.argv[1]), bytes([2, 0, 0, 0, 0, 1]), 1, 1, 0)
s.sendall(struct.pack('>BBHI', 4, 16, 8 + len(body), 9) + body)
while True:
    h = s.recv(8)
    n = struct.unpack('>H', h[2:4])[0]
    b = s.recv(n - 8) if n > 8 else b''
    if h[1] == 1:
        print(h[1], struct.unpack('>I', h[4:8])[0], struct.unpack('>HH', b[:4]))
        break
"#;

/// OpenFlow 1.4 and 1.5 with `ovs-ofctl -O OpenFlow14/15`: the ports in their shape (`show`,
/// `dump-ports-desc`, `dump-ports`, `mod-port`), flows, groups, aggregates, packet-out, and bundles:
/// `--bundle add-flows` puts a table in place at once and real TCP crosses it; a bundle with one flow weft
/// refuses changes nothing (the other flow of it is not there either) and says why.
#[test]
fn openflow_1_4_and_bundles_from_ovs_ofctl() {
    newer_openflow("o14", 44, 6656, "OpenFlow14");
}

/// Bundles over OpenFlow 1.3 (ONF's extension, what `ovs-ofctl -O OpenFlow13 --bundle` sends): a bundle's
/// flows are all in place at once and traffic crosses them; a bundle holding one flow weft refuses fails
/// with ONF's OFPBFC_MSG_FAILED and changes nothing.
#[test]
fn openflow_1_3_bundles_from_ovs_ofctl() {
    if !prerequisites(&["ip", "ping", "iperf3", "ovs-ofctl"]) {
        return;
    }
    let TwoEnds { tmp, h, left, right, w } = two_ends("ob", 48);
    w.weft("set-controller sw1 ptcp:6663:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let target = "tcp:127.0.0.1:6663";
    let of = |args: &str| h.run(&format!("timeout 10 ovs-ofctl -O OpenFlow13 {args}").replace("TARGET", target));
    assert!(of("del-flows TARGET").status.success());
    let good = tmp.path("good.flows");
    std::fs::write(&good, "priority=5,in_port=1,actions=output:2\npriority=5,in_port=2,actions=output:1\n").unwrap();
    let r = of(&format!("--bundle add-flows TARGET {}", good.display()));
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let flows = w.weft("dump-flows sw1");
    assert!(flows.lines().count() == 2 && flows.contains("in_port=2"), "{flows}");
    left.ping("10.48.0.2", 2);
    tcp_both_ways(&left, &right, &["10.48.0.2"], "through flows from an OpenFlow 1.3 bundle");
    let bad = tmp.path("bad.flows");
    std::fs::write(
        &bad,
        "priority=9,in_port=1,actions=drop\npriority=9,in_port=2,actions=controller(userdata=00.01)\n",
    )
    .unwrap();
    let r = of(&format!("--bundle add-flows TARGET {}", bad.display()));
    let err = String::from_utf8_lossy(&r.stderr).to_string();
    assert!(!r.status.success() && err.contains("OFPBFC_MSG_FAILED"), "{err}");
    assert!(!w.weft("dump-flows sw1").contains("priority=9"), "half a bundle applied");
    left.ping("10.48.0.2", 1);
}

/// The same with OpenFlow 1.5 (flow descriptions and aggregates with OXS statistics, PACKET_OUT with a
/// match, groups with bucket ids, the meter and set-field actions).
#[test]
fn openflow_1_5_and_bundles_from_ovs_ofctl() {
    newer_openflow("o15", 45, 6657, "OpenFlow15");
}

fn newer_openflow(p: &str, net: u8, port: u16, version: &str) {
    if !prerequisites(&["ip", "ping", "iperf3", "ovs-ofctl"]) {
        return;
    }
    let TwoEnds { tmp, h, left, right, w } = two_ends(p, net);
    w.weft(&format!("set-controller sw1 ptcp:{port}:127.0.0.1"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let target = format!("tcp:127.0.0.1:{port}");
    let of = |args: &str| h.sh(&format!("timeout 10 ovs-ofctl -O {version} {args}").replace("TARGET", &target));
    let show = of("show TARGET");
    let tag = format!("(OF1.{})", &version[9..]);
    assert!(show.contains(&format!("OFPT_FEATURES_REPLY {tag}")), "{show}");
    assert!(show.contains(&format!("1({p}p1)")) && show.contains("LOCAL(sw1)"), "{show}");
    assert!(of("dump-ports-desc TARGET").contains(&format!("2({p}p2)")));
    of("del-flows TARGET");
    let good = tmp.path("good.flows");
    std::fs::write(&good, "priority=5,in_port=1,actions=group:1\npriority=5,in_port=2,actions=output:1\n").unwrap();
    of("add-group TARGET group_id=1,type=all,bucket=output:2");
    assert!(of("dump-groups TARGET").contains("group_id=1,type=all,bucket="), "{}", of("dump-groups TARGET"));
    of(&format!("--bundle add-flows TARGET {}", good.display()));
    assert_eq!(w.weft("dump-flows sw1").lines().count(), 2, "{}", w.weft("dump-flows sw1"));
    let l_ip = format!("10.{net}.0.2");
    left.ping(&l_ip, 2);
    tcp_both_ways(&left, &right, &[&l_ip], &format!("through flows from an {version} bundle"));
    let dump = of("dump-flows TARGET");
    assert!(dump.contains("priority=5,in_port=1 actions=group:1"), "{dump}");
    let counted: u64 = dump
        .lines()
        .find(|l| l.contains("in_port=1"))
        .and_then(|l| l.split("n_packets=").nth(1))
        .and_then(|r| r.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(counted > 1000, "{dump}");
    assert!(of("dump-aggregate TARGET").contains("flow_count=2"), "{}", of("dump-aggregate TARGET"));
    let ports = of("dump-ports TARGET 1");
    let rx: u64 =
        ports.split("rx pkts=").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).unwrap();
    assert!(rx > 1000, "{ports}");
    // A packet-out (from the controller, out of port 2): it leaves by it.
    let tx = |w: &Weftd| -> u64 {
        let v = w.json("dump-ports sw1");
        v.as_array().unwrap().iter().find(|x| x["port"] == format!("{p}p2")).unwrap()["tx_packets"].as_u64().unwrap()
    };
    let before = tx(&w);
    let frame = "ffffffffffff0200000000010806000108000604000102000000000ac0000201000000000000c0000202";
    for _ in 0..3 {
        of(&format!("packet-out TARGET CONTROLLER output:2 {frame}"));
    }
    assert!(tx(&w) >= before + 3, "the packet-outs did not leave by port 2");
    // One flow of the bundle is refused (NXAST_CONTROLLER2): the whole bundle fails, the other one is not added.
    let bad = tmp.path("bad.flows");
    std::fs::write(
        &bad,
        "priority=9,in_port=1,actions=drop\npriority=9,in_port=2,actions=controller(userdata=00.01)\n",
    )
    .unwrap();
    let r = h.run(&format!("timeout 10 ovs-ofctl -O {version} --bundle add-flows {target} {}", bad.display()));
    let err = String::from_utf8_lossy(&r.stderr).to_string();
    assert!(!r.status.success() && err.contains("OFPBFC_MSG_FAILED"), "{err}");
    assert!(!w.weft("dump-flows sw1").contains("priority=9"), "half a bundle applied");
    left.ping(&l_ip, 1);
    // PORT_MOD in the newer shape.
    of(&format!("mod-port TARGET {p}p2 down"));
    assert!(of("dump-ports-desc TARGET").contains("config:     PORT_DOWN"));
    assert!(!left.run(&format!("ping -c 2 -i 0.2 -W 1 {l_ip}")).status.success(), "the port is down");
    of(&format!("mod-port TARGET {p}p2 up"));
    left.ping(&l_ip, 2);
}

/// SET_ASYNC (OpenFlow 1.3, 1.4's properties, and Nicira's NXT_SET_ASYNC_CONFIG over 1.0): a controller that
/// asks for table misses only gets no packet-in from an `actions=controller` flow, and the other way round;
/// GET_ASYNC says what it set.
#[test]
fn set_async_chooses_the_packet_ins_a_controller_gets() {
    if !prerequisites(&["ip", "ping", "python3"]) {
        return;
    }
    let TwoEnds { tmp, h, left, right: _right, w } = two_ends("oa", 46);
    w.weft("set-controller sw1 ptcp:6658:127.0.0.1");
    let flows = |icmp: &str| {
        w.weft("del-flows sw1");
        for f in [icmp, "priority=5,arp,actions=normal", "priority=0,actions=controller"] {
            w.weft(&format!("add-flow sw1 '{f}'"));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
    };
    let script = tmp.path("async.py");
    std::fs::write(&script, ASYNC_CONTROLLER).unwrap();
    // A controller of `version` asking for packet-ins of `mask`, while pings (with `ping`'s options) and UDP
    // that no flow takes (the table miss: NO_MATCH) cross: what it says, and its errors.
    let controller = |version: u8, mask: u32, ping: &str| {
        let child = h.spawn(&format!("exec python3 {} {version} {mask} 4", script.display()));
        std::thread::sleep(std::time::Duration::from_millis(800));
        let _ = left.run(&format!("ping -c 3 -i 0.3 -W 1 {ping} 10.46.0.2"));
        left.sh("python3 -c \"import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);[s.sendto(b'x',('10.46.0.2',9)) for _ in range(3)]\"");
        let out = child.wait_with_output().unwrap();
        (String::from_utf8_lossy(&out.stdout).trim().to_string(), String::from_utf8_lossy(&out.stderr).to_string())
    };
    // Pings meet `controller` (reason ACTION). (version, mask) -> (reasons seen, mask GET_ASYNC reports)
    flows("priority=10,icmp,actions=controller,normal");
    for (version, mask, want) in
        [(4, 1u32, "[0]"), (4, 2, "[1]"), (5, 1, "[0]"), (5, 2, "[1]"), (1, 1, "[0]"), (1, 2, "[1]")]
    {
        let (said, stderr) = controller(version, mask, "");
        assert_eq!(said, format!("{want} {mask}"), "wire version {version}, mask {mask}: {stderr}");
    }
    // `dec_ttl` at the end of a packet's life: an invalid-TTL packet-in (reason 2), to a controller that asked
    // for those only (OVS's default leaves them out).
    flows("priority=10,icmp,actions=dec_ttl,normal");
    let (said, stderr) = controller(4, 4, "-t 1");
    assert_eq!(said, "[2] 4", "invalid-TTL packet-ins: {stderr}");
}

/// Nicira's role request over OpenFlow 1.0 (what 1.0 controllers use): a connection made slave gets
/// NXT_ROLE_REPLY saying so, and its FLOW_MOD is refused (OFPBRC_EPERM) with nothing changed.
#[test]
fn nicira_roles_over_openflow_1_0() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let TwoEnds { tmp, h, w, .. } = two_ends("or", 47);
    w.weft("set-controller sw1 ptcp:6659:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let script = tmp.path("role10.py");
    std::fs::write(&script, ROLE10).unwrap();
    let said = h.sh(&format!("python3 {}", script.display()));
    // The reply says slave (2); the FLOW_MOD's error is OpenFlow 1.0's BAD_REQUEST (1), EPERM (5).
    assert_eq!(said.trim(), "role 2\nerror 1 5", "{said}");
    let flows = w.weft("dump-flows sw1");
    assert!(
        flows.lines().count() == 1 && !flows.contains("priority=100"),
        "a slave's FLOW_MOD changed the table: {flows}"
    );
}

/// ROLE_STATUS (OpenFlow 1.4): when a second controller becomes master, the first is told it is a slave now
/// (reason: a master request, with the new generation ID); a 1.3 connection, which has no such message, is
/// not sent one.
#[test]
fn role_status_tells_the_old_master() {
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let TwoEnds { tmp, h, w, .. } = two_ends("rs", 49);
    w.weft("set-controller sw1 ptcp:6664:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let script = tmp.path("rolestatus.py");
    std::fs::write(&script, ROLE_STATUS).unwrap();
    let said = h.sh(&format!("python3 {}", script.display()));
    // 1.4's old master: ROLE_STATUS slave (3), reason 0, generation 2; the 1.3 one: nothing.
    assert_eq!(said.trim(), "5 [(3, 0, 2)]\n4 []", "{said}");
}

/// A connection (OpenFlow 1.4, then 1.3) made master, then a second one (1.4) made master with a newer
/// generation; prints, for the first, the ROLE_STATUS messages (role, reason, generation) it got.
const ROLE_STATUS: &str = r#"
import socket, struct, time
def conn(v):
    s = socket.create_connection(('127.0.0.1', 6664))
    s.settimeout(0.3)
    s.sendall(struct.pack('>BBHI', v, 0, 16, 1) + struct.pack('>HHI', 1, 8, 1 << v))
    return s
def role(s, v, gen):
    s.sendall(struct.pack('>BBHI', v, 24, 24, 2) + struct.pack('>I4xQ', 2, gen))
def got(s):
    buf, seen, end = b'', [], time.time() + 1.5
    while time.time() < end:
        try:
            d = s.recv(65536)
        except socket.timeout:
            continue
        if not d:
            break
        buf += d
        while len(buf) >= 8 and len(buf) >= struct.unpack('>H', buf[2:4])[0]:
            n = struct.unpack('>H', buf[2:4])[0]
            m, buf = buf[:n], buf[n:]
            if m[1] == 30:
                seen.append(struct.unpack('>IB3xQ', m[8:24]))
    return seen
for v in (5, 4):
    old, new = conn(v), conn(5)
    role(old, v, 1 if v == 5 else 3)
    time.sleep(0.3)
    role(new, 5, 2 if v == 5 else 4)
    print(v, got(old))
    old.close(); new.close()
"#;

/// Over OpenFlow 1.0: NXT_ROLE_REQUEST slave, then an OFPT_FLOW_MOD adding a catch-all drop; prints the role
/// the reply says and the error the FLOW_MOD got.
const ROLE10: &str = r#"
import socket, struct
s = socket.create_connection(('127.0.0.1', 6659))
s.settimeout(5)
s.sendall(struct.pack('>BBHI', 1, 0, 8, 1))
s.sendall(struct.pack('>BBHIII', 1, 4, 20, 2, 0x2320, 10) + struct.pack('>I', 2))
fm = struct.pack('>I', 0x3fffff) + bytes(36) + struct.pack('>QHHHHIHH', 0, 0, 0, 0, 100, 0xffffffff, 0xffff, 0)
s.sendall(struct.pack('>BBHI', 1, 14, 8 + len(fm), 3) + fm)
s.sendall(struct.pack('>BBHI', 1, 18, 8, 4))
buf = b''
while True:
    while len(buf) < 8 or len(buf) < struct.unpack('>H', buf[2:4])[0]:
        buf += s.recv(4096)
    n = struct.unpack('>H', buf[2:4])[0]
    m, buf = buf[:n], buf[n:]
    if m[1] == 4 and struct.unpack('>I', m[12:16])[0] == 11:
        print('role', struct.unpack('>I', m[16:20])[0])
    elif m[1] == 1:
        print('error', *struct.unpack('>HH', m[8:12]))
    elif m[1] == 19:
        break
"#;

/// A controller speaking wire version `argv[1]` (1, 4 or 5) that sets the packet-in mask for master/equal
/// connections to `argv[2]` (1.0: NXT_SET_ASYNC_CONFIG; 1.3: the six masks; 1.4: properties), asks GET_ASYNC, and for
/// `argv[3]` seconds notes the reasons of the packet-ins it gets; prints them and the mask GET_ASYNC said.
const ASYNC_CONTROLLER: &str = r#"
import socket, struct, sys, time
v, mask, secs = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
s = socket.create_connection(('127.0.0.1', 6658))
s.settimeout(0.2)
said = None
if v == 1:
    # OpenFlow 1.0: Nicira's NXT_SET_ASYNC_CONFIG (the same six masks); 1.0 has no GET_ASYNC.
    s.sendall(struct.pack('>BBHI', 1, 0, 8, 1))
    body = struct.pack('>II', 0x2320, 19) + struct.pack('>6I', mask, 0, 7, 7, 15, 0)
    s.sendall(struct.pack('>BBHI', 1, 4, 8 + len(body), 2) + body)
    said = mask
else:
    s.sendall(struct.pack('>BBHI', v, 0, 16, 1) + struct.pack('>HHI', 1, 8, 1 << v))
    if v == 4:
        body = struct.pack('>6I', mask, 0, 7, 7, 15, 0)
    else:
        body = struct.pack('>HHI', 1, 8, mask)
    s.sendall(struct.pack('>BBHI', v, 28, 8 + len(body), 2) + body)
    s.sendall(struct.pack('>BBHI', v, 26, 8, 3))
buf, reasons, end = b'', set(), time.time() + secs
while time.time() < end:
    try:
        d = s.recv(65536)
    except socket.timeout:
        continue
    if not d:
        break
    buf += d
    while len(buf) >= 8 and len(buf) >= struct.unpack('>H', buf[2:4])[0]:
        n = struct.unpack('>H', buf[2:4])[0]
        m, buf = buf[:n], buf[n:]
        if m[1] == 10:
            # The reason: after buffer_id and total_len (1.0: and in_port).
            reasons.add(m[8 + (8 if v == 1 else 6)])
        elif m[1] == 27 and v == 4:
            said = struct.unpack('>I', m[8:12])[0]
        elif m[1] == 27:
            props = m[8:]
            while len(props) >= 8:
                t, l, val = struct.unpack('>HHI', props[:8])
                if t == 1:
                    said = val
                props = props[8:]
        elif m[1] == 1:
            print('error', m.hex(), file=sys.stderr)
        elif m[1] == 2:
            s.sendall(struct.pack('>BBHI', v, 3, n, struct.unpack('>I', m[4:8])[0]) + m[8:])
print(sorted(reasons), said)
"#;

/// `set bridge BR protocols=…` (the Bridge column OVS users set): connections may speak only the versions
/// listed; a peer offering none of them gets HELLO_FAILED, as from OVS. Unknown names, and lists naming no
/// version weft speaks, are refused.
#[test]
fn protocols_limit_the_openflow_versions_a_bridge_speaks() {
    if !prerequisites(&["ip", "ovs-ofctl"]) {
        return;
    }
    let TwoEnds { tmp: _tmp, h, left: _l, right: _r, w } = two_ends("ov", 7);
    w.weft("set-controller sw1 ptcp:6655:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let plain = |args: &str| h.run(&format!("timeout 10 ovs-ofctl {args} tcp:127.0.0.1:6655"));
    let of13 = |args: &str| h.run(&format!("timeout 10 ovs-ofctl -O OpenFlow13 {args} tcp:127.0.0.1:6655"));
    assert!(plain("show").status.success() && of13("show").status.success());
    w.weft("set bridge sw1 protocols=OpenFlow13");
    assert!(w.weft("show").contains("protocols: [OpenFlow13]"));
    let r = plain("show");
    assert!(!r.status.success(), "OpenFlow 1.0 is not allowed: {r:?}");
    assert!(of13("dump-flows").status.success());
    w.weft("set bridge sw1 protocols=OpenFlow10,OpenFlow14");
    assert!(plain("dump-flows").status.success());
    assert!(!of13("show").status.success(), "OpenFlow 1.3 is not allowed");
    assert!(h.run("timeout 10 ovs-ofctl -O OpenFlow14 show tcp:127.0.0.1:6655").status.success());
    for (bad, says) in
        [("protocols=OpenFlow99", "not an OpenFlow version"), ("protocols=OpenFlow11,OpenFlow12", "names none of them")]
    {
        let (ok, _, err) = w.try_weft(&format!("set bridge sw1 {bad}"));
        assert!(!ok && err.contains(says), "{bad}: {err}");
    }
    w.weft("clear bridge sw1 protocols");
    assert!(plain("show").status.success() && of13("show").status.success());
}

/// Several controller targets at once (`set-controller BR TARGET…`, as Faucet with Gauge, or a cluster):
/// weft connects to Open vSwitch's test controller, which switches the traffic, while `ovs-ofctl` reads
/// through the listener at the same time; both show in `show`. Roles over the listener (ROLE_REQUEST): a
/// master request demotes the other master to slave; a slave is refused FLOW_MOD (OFPBRC_IS_SLAVE) but may
/// read; a stale generation ID is refused.
#[test]
fn several_controllers_at_once_with_roles() {
    if !prerequisites(&["ip", "ping", "ovs-ofctl", "ovs-testcontroller", "python3"]) {
        return;
    }
    let TwoEnds { tmp, h, left, right: _r, w } = two_ends("os", 8);
    let d = tmp.path("tc");
    std::fs::create_dir_all(&d).unwrap();
    let log = d.join("tc.log");
    h.sh(&format!(
        "ovs-testcontroller -O OpenFlow13 ptcp:6662:127.0.0.1 --verbose=vconn:file:dbg --log-file={} \
         --pidfile={d}/tc.pid --unixctl={d}/tc.ctl --detach",
        log.display(),
        d = d.display()
    ));
    let pid = std::fs::read_to_string(d.join("tc.pid")).unwrap_or_default().trim().to_string();
    w.weft("set-controller sw1 tcp:127.0.0.1:6662 ptcp:6661:127.0.0.1");
    let show = w.weft("show");
    assert!(show.contains("Controller \"tcp:127.0.0.1:6662\"") && show.contains("Controller \"ptcp:6661:127.0.0.1\""));
    wait_for("the controller's handshake", 10, || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("OFPT_FEATURES_REPLY")
    });
    // The test controller (a learning switch) switches the pings, installing flows ovs-ofctl reads meanwhile.
    left.ping("10.8.0.2", 3);
    let flows = ofctl(&h, 6661, "dump-flows TARGET");
    assert!(flows.lines().filter(|l| l.contains("actions=output")).count() >= 2, "{flows}");
    let script = tmp.path("roles.py");
    std::fs::write(&script, ROLES).unwrap();
    let out = h.sh(&format!("python3 {}", script.display()));
    let _ = run(&format!("kill {pid}"));
    assert_eq!(
        out.trim().lines().collect::<Vec<_>>(),
        ["a master 2 5", "b master 2 6", "a now 3 6", "a flow_mod error 1 10", "a read ok", "c stale error 11 0"],
        "{out}"
    );
    // The slave's FLOW_MOD changed nothing.
    assert!(!w.weft("dump-flows sw1").contains("priority=77"));
}

/// Three OpenFlow 1.3 connections to port 6661: a asks to be master (generation 5), then b (6); a asks its role
/// (NOCHANGE), tries a FLOW_MOD and reads the flows; c asks to be master with generation 4.
const ROLES: &str = r#"
import socket, struct
def conn():
    s = socket.create_connection(('127.0.0.1', 6661))
    s.settimeout(5)
    s.sendall(bytes([4, 0, 0, 8, 0, 0, 0, 1]))
    return s
def reply(s, want):
    while True:
        h = s.recv(8)
        n = struct.unpack('>H', h[2:4])[0]
        b = b''
        while len(b) < n - 8:
            b += s.recv(n - 8 - len(b))
        if h[1] in want:
            return h[1], b
def role(s, r, gen):
    s.sendall(struct.pack('>BBHII4xQ', 4, 24, 24, 9, r, gen))
    t, b = reply(s, (1, 25))
    return struct.unpack('>I4xQ', b[:16]) if t == 25 else struct.unpack('>HH', b[:4])
a, b, c = conn(), conn(), conn()
print('a master', *role(a, 2, 5))
print('b master', *role(b, 2, 6))
print('a now', *role(a, 0, 0))
fm = struct.pack('>QQBBHHHIIIH2x', 0, 0, 0, 0, 0, 0, 77, 0xffffffff, 0xffffffff, 0xffffffff, 0) + struct.pack('>HH4x', 1, 4)
a.sendall(struct.pack('>BBHI', 4, 14, 8 + len(fm), 10) + fm)
t, e = reply(a, (1,))
print('a flow_mod error', *struct.unpack('>HH', e[:4]))
a.sendall(struct.pack('>BBHIHH4xB3xII4xQQHH4x', 4, 18, 56, 11, 1, 0, 0xff, 0xffffffff, 0xffffffff, 0, 0, 1, 4))
t, body = reply(a, (1, 19))
print('a read', 'ok' if t == 19 else 'refused')
print('c stale error', *role(c, 2, 4))
"#;

/// `fail_mode` (`set-fail-mode`, as ovs-vsctl): a standalone bridge (the default) whose controller cannot be
/// reached fails open after 15 s — it switches as a learning switch although its flows drop everything —
/// and a secure one keeps to its flows; once a controller connects, the flows rule again.
#[test]
fn fail_mode_standalone_fails_open_and_secure_does_not() {
    if !prerequisites(&["ip", "ping", "ovs-testcontroller"]) {
        return;
    }
    let TwoEnds { tmp, h, left, right: _r, w } = two_ends("ou", 9);
    w.weft("del-flows sw1");
    w.weft("add-flow sw1 priority=0,actions=drop");
    assert!(!left.run("ping -c 1 -W 1 10.9.0.2").status.success(), "the flows drop everything");
    // A controller nobody runs yet.
    w.weft("set-controller sw1 tcp:127.0.0.1:6670");
    let failed_open = || w.weft("show").contains("fail-open");
    wait_for("the bridge to fail open", 25, failed_open);
    left.ping("10.9.0.2", 2);
    // Secure: back to the flows at once.
    w.weft("set-fail-mode sw1 secure");
    assert!(w.weft("show").contains("fail_mode: secure"));
    wait_for("fail-open to end", 5, || !failed_open());
    assert!(!left.run("ping -c 1 -W 1 10.9.0.2").status.success(), "secure keeps to the flows");
    let (ok, _, err) = w.try_weft("set-fail-mode sw1 open");
    assert!(!ok && err.contains("standalone or secure"), "{err}");
    // Standalone again (the default): the controller has been away long enough already.
    w.weft("del-fail-mode sw1");
    wait_for("the bridge to fail open again", 5, failed_open);
    // The controller comes: the flows rule again.
    let d = tmp.path("tc");
    std::fs::create_dir_all(&d).unwrap();
    h.sh(&format!(
        "ovs-testcontroller -O OpenFlow13 -n ptcp:6670:127.0.0.1 --pidfile={d}/tc.pid --unixctl={d}/tc.ctl \
         --log-file={d}/tc.log --detach",
        d = d.display()
    ));
    let pid = std::fs::read_to_string(d.join("tc.pid")).unwrap_or_default().trim().to_string();
    wait_for("fail-open to end with a controller", 10, || !failed_open());
    let _ = run(&format!("kill {pid}"));
}

/// The TLV map from weft's own CLI: mappings in `ovs-ofctl add-tlv-map`'s syntax, flows on them, both back
/// after `kill -9`; bad or conflicting mappings, a flow on an unmapped field and the removal of a mapping in
/// use are refused and change nothing.
#[test]
fn tlv_maps_from_the_cli_survive_kill_9_and_refuse_what_they_must() {
    let p = "otl";
    let Some(OneHost { tmp: _tmp, h: _h, mut w }) = one_host(p, &["ip"]) else { return };
    w.weft("add-br sw1");
    w.weft("add-tlv-map sw1 '{class=0xffff,type=0x80,len=4}->tun_metadata0,{class=0x102,type=1,len=8}->tun_metadata3'");
    w.weft("add-flow sw1 'priority=5,tun_metadata0=0x1234,actions=set_field:0xabcdef->tun_metadata3,NORMAL'");
    let flows = |w: &Weftd| -> Vec<String> {
        w.json("dump-flows sw1").as_array().unwrap().iter().map(|f| f["flow"].as_str().unwrap().to_string()).collect()
    };
    let before = (w.weft("dump-tlv-map sw1"), flows(&w));
    assert!(before.1.iter().any(|f| f.contains("tun_metadata0=0x1234")), "{:?}", before.1);
    assert!(before.0.contains("allocated option space=12") && before.0.contains("tun_metadata3"), "{}", before.0);
    for (bad, why) in [
        ("add-tlv-map sw1 '{class=1,type=1,len=4}->tun_metadata0'", "already mapped"),
        ("add-tlv-map sw1 '{class=0xffff,type=0x80,len=4}->tun_metadata1'", "mapped to tun_metadata0 already"),
        ("add-tlv-map sw1 '{class=1,type=1,len=6}->tun_metadata1'", "multiple of 4"),
        ("add-tlv-map sw1 '{class=1,type=1,len=20}->tun_metadata1'", "at most 16 bytes"),
        (
            "add-tlv-map sw1 '{class=1,type=1,len=16}->tun_metadata1,{class=1,type=2,len=16}->tun_metadata2'",
            "does not fit",
        ),
        ("add-tlv-map sw1 '{class=1,len=4}->tun_metadata1'", "needs class, type and len"),
        ("add-flow sw1 'tun_metadata1=1,actions=drop'", "tun_metadata1 is not mapped"),
        ("del-tlv-map sw1 '{class=0xffff,type=0x80,len=4}->tun_metadata0'", "used by a flow"),
        ("del-tlv-map sw1", "used by a flow"),
    ] {
        let (ok, _, err) = w.try_weft(bad);
        assert!(!ok && err.contains(why), "{bad}: {err}");
    }
    assert_eq!((w.weft("dump-tlv-map sw1"), flows(&w)), before, "a refusal changed something");
    w.restart();
    assert_eq!((w.weft("dump-tlv-map sw1"), flows(&w)), before, "not as before kill -9");
    w.weft("del-flows sw1");
    w.weft("del-tlv-map sw1 '{class=0x102,type=1,len=8}->tun_metadata3'");
    assert!(!w.weft("dump-tlv-map sw1").contains("tun_metadata3"));
    w.weft("del-tlv-map sw1");
    assert!(w.weft("dump-tlv-map sw1").contains("allocated option space=0"));
}
