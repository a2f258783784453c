//! weftd as an OVSDB server, driven by the real clients: Open vSwitch's `ovs-vsctl` (never with an
//! ovsdb-server or ovs-vswitchd running: weftd is the server), libvirt's and os-vif's command lines, and
//! Open vSwitch's Python IDL; and what a bad client sends.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;
use weft_interop::*;

/// `ovs-vsctl --db=unix:DIR/db.sock ARGS` in `ns`: (success, stdout, stderr).
fn try_vsctl(ns: &Ns, w: &Weftd, args: &str) -> (bool, String, String) {
    let db = w.socket().with_file_name("db.sock");
    let out = ns.run(&format!("ovs-vsctl --db=unix:{} --timeout=10 {args}", db.display()));
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

fn vsctl(ns: &Ns, w: &Weftd, args: &str) -> String {
    let (ok, out, err) = try_vsctl(ns, w, args);
    assert!(ok, "ovs-vsctl {args} failed: {err}\nweftd log:\n{}", w.log());
    assert!(!err.contains("lacks"), "ovs-vsctl found the schema short: {err}");
    out.trim().to_string()
}

fn show_port(w: &Weftd, bridge: &str, port: &str) -> Option<serde_json::Value> {
    let v = w.json("show");
    let b = v["bridges"].as_array()?.iter().find(|b| b["name"] == bridge)?.clone();
    b["ports"].as_array()?.iter().find(|p| p["name"] == port).cloned()
}

/// The seed's command lines, unchanged, build a VXLAN overlay to a Linux kernel VXLAN peer that carries
/// ping and TCP both ways; Geneve and GRE ports come and go the same way.
#[test]
fn ovs_vsctl_builds_a_vxlan_overlay_with_a_linux_kernel_peer() {
    let p = "dv";
    if !prerequisites(&["ip", "iperf3", "ovs-vsctl"]) {
        return;
    }
    let tmp = TempDir::new(p);
    let u = underlay(p);
    let p1 = format!("{p}p1");
    let w1 = Weftd::start(&u.h1, &tmp.path("h1"));
    let left = endpoint_veth(&format!("{p}l"), &u.h1, &p1, V4_LEFT, V6_LEFT);
    vsctl(&u.h1, &w1, "add-br sw1");
    vsctl(&u.h1, &w1, &format!("add-port sw1 {p1}"));
    vsctl(
        &u.h1,
        &w1,
        "add-port sw1 tun0 -- set interface tun0 type=vxlan options:remote_ip=192.0.2.12 options:key=123",
    );
    let show = vsctl(&u.h1, &w1, "show");
    for want in ["Bridge sw1", "Port tun0", "type: vxlan", "options: {key=\"123\", remote_ip=\"192.0.2.12\"}"] {
        assert!(show.contains(want), "ovs-vsctl show lacks {want:?}:\n{show}");
    }
    // The same configuration through weft's own CLI.
    let tun = show_port(&w1, "sw1", "tun0").expect("tun0 in weft show");
    assert_eq!(tun["type"], "vxlan");
    assert_eq!(tun["options"]["key"], "123");
    assert_eq!(vsctl(&u.h1, &w1, "get interface tun0 ofport"), tun["ofport"].to_string());

    let u2 = format!("{p}u2");
    u.h2.sh(&format!(
        "ip link add vx0 type vxlan id 123 remote 192.0.2.11 local 192.0.2.12 dstport 4789 dev {u2} && \
         ip link add br0 type bridge && ip link set vx0 master br0 && ip link set vx0 up && ip link set br0 up"
    ));
    let right = Ns::new(&format!("{p}r"));
    veth(&right, "eth0", None, &u.h2, "k1", None);
    u.h2.sh("ip link set k1 master br0");
    right.sh(&format!(
        "ip link set eth0 mtu 1450 && ip addr add {V4_RIGHT}/24 dev eth0 && ip addr add {V6_RIGHT}/64 dev eth0 nodad"
    ));
    left.ping(V4_RIGHT, 3);
    tcp_both_ways(&left, &right, &[V4_RIGHT, V6_RIGHT], "over a tunnel ovs-vsctl made");

    for (port, ty, opts) in [
        ("gen0", "geneve", "options:remote_ip=192.0.2.13 options:key=5"),
        ("gre0", "gre", "options:remote_ip=192.0.2.14"),
    ] {
        vsctl(&u.h1, &w1, &format!("add-port sw1 {port} -- set interface {port} type={ty} {opts}"));
        assert_eq!(vsctl(&u.h1, &w1, &format!("get interface {port} type")), ty);
        assert_eq!(show_port(&w1, "sw1", port).expect("port in weft show")["type"], ty);
        vsctl(&u.h1, &w1, &format!("del-port {port}"));
        assert!(show_port(&w1, "sw1", port).is_none(), "{port} still in weft show after del-port");
    }
    vsctl(&u.h1, &w1, "del-port sw1 tun0");
    assert!(show_port(&w1, "sw1", "tun0").is_none());
    assert!(!left.run(&format!("ping -c 2 -W 1 {V4_RIGHT}")).status.success(), "ping crossed a deleted tunnel");
}

/// Everyday ovs-vsctl, and the CLI and OVSDB as two faces of one configuration that survives kill -9.
#[test]
fn everyday_ovs_vsctl_and_the_cli_are_one_configuration() {
    let Some(mut h) = one_host("de", &["ip", "ovs-vsctl", "ovs-ofctl", "openssl"]) else { return };
    let (ns, w) = (&h.h, &h.w);
    w.weft("add-br br0");
    assert_eq!(vsctl(ns, w, "list-br"), "br0");
    assert!(try_vsctl(ns, w, "br-exists br0").0);
    assert!(!try_vsctl(ns, w, "br-exists nope").0);
    vsctl(ns, w, "add-port br0 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.2 options:key=7");
    assert!(w.weft("list-ports br0").contains("vx1"), "a port ovs-vsctl added is not in weft list-ports");
    w.weft("add-port br0 t1 -- set interface t1 type=tap");
    assert_eq!(vsctl(ns, w, "list-ports br0"), "t1\nvx1");
    assert_eq!(vsctl(ns, w, "port-to-br vx1"), "br0");
    assert_eq!(vsctl(ns, w, "iface-to-br t1"), "br0");
    let ofport = show_port(w, "br0", "vx1").unwrap()["ofport"].to_string();
    assert_eq!(vsctl(ns, w, "get interface vx1 ofport"), ofport);
    assert!(vsctl(ns, w, "find interface type=vxlan").contains("vx1"));
    assert!(vsctl(ns, w, "list interface t1").contains("name                : t1"));

    vsctl(ns, w, "set interface vx1 options:key=8 external_ids:owner=test");
    assert_eq!(show_port(w, "br0", "vx1").unwrap()["options"]["key"], "8");
    assert_eq!(vsctl(ns, w, "get interface vx1 external_ids:owner"), "test");
    vsctl(ns, w, "remove interface vx1 external_ids owner");
    assert_eq!(vsctl(ns, w, "get interface vx1 external_ids"), "{}");
    vsctl(ns, w, "set port t1 tag=10");
    assert_eq!(show_port(w, "br0", "t1").unwrap()["tag"], 10);
    vsctl(ns, w, "clear port t1 tag");
    assert!(show_port(w, "br0", "t1").unwrap()["tag"].is_null());
    vsctl(ns, w, "--may-exist add-br br0");
    assert!(try_vsctl(ns, w, "add-br br0").2.contains("already exists"));
    vsctl(ns, w, "--if-exists del-port nope");
    assert!(try_vsctl(ns, w, "del-port nope").2.contains("no port named nope"));
    let j: serde_json::Value = serde_json::from_str(&vsctl(ns, w, "--format=json list bridge br0")).unwrap();
    let name_col = j["headings"].as_array().unwrap().iter().position(|h| h == "name").unwrap();
    assert_eq!(j["data"][0][name_col], "br0");
    // A column weft keeps without acting on, and an other_config key it does not know.
    vsctl(ns, w, "set bridge br0 datapath_type=netdev other_config:colour=blue");
    // wait-until is woken by a change made through the CLI.
    let waiter = ns.spawn(&format!(
        "ovs-vsctl --db=unix:{} --timeout=10 wait-until port t1 tag=20",
        w.socket().with_file_name("db.sock").display()
    ));
    std::thread::sleep(Duration::from_millis(300));
    w.weft("set port t1 tag=20");
    let out = waiter.wait_with_output().unwrap();
    assert!(out.status.success(), "wait-until did not see the CLI's change: {}", String::from_utf8_lossy(&out.stderr));

    // OpenFlow settings through OVSDB reach weft's OpenFlow side: ovs-ofctl talks to the listener.
    vsctl(ns, w, "set-controller br0 ptcp:16653:127.0.0.1 -- set-fail-mode br0 secure");
    vsctl(ns, w, "set bridge br0 other_config:datapath-id=00000000000000a1 protocols=OpenFlow10,OpenFlow13");
    assert_eq!(vsctl(ns, w, "get-controller br0"), "ptcp:16653:127.0.0.1");
    assert_eq!(vsctl(ns, w, "get-fail-mode br0"), "secure");
    assert_eq!(vsctl(ns, w, "get bridge br0 datapath_id"), "\"00000000000000a1\"");
    let ofshow = ns.sh("ovs-ofctl -O OpenFlow13 show tcp:127.0.0.1:16653");
    assert!(ofshow.contains("dpid:00000000000000a1") && ofshow.contains("vx1"), "{ofshow}");
    vsctl(ns, w, "del-controller br0 -- del-fail-mode br0");
    assert_eq!(vsctl(ns, w, "get-controller br0"), "");
    // set-ssl fills weft's TLS settings (the SSL table).
    let pki = test_pki(&h.tmp.path("pki"));
    let (key, cert, ca) = (pki.join("client.key"), pki.join("client.crt"), pki.join("ca.crt"));
    vsctl(ns, w, &format!("set-ssl {} {} {}", key.display(), cert.display(), ca.display()));
    assert!(vsctl(ns, w, "get-ssl").contains(&format!("Private key: {}", key.display())));
    assert!(w.weft("get-ssl").contains("client.crt"), "weft get-ssl does not show the certificate");
    vsctl(ns, w, "del-ssl");
    // Refused whole: nothing changes, not even the database file.
    let db = std::fs::read(h.tmp.path("w").join("conf.db")).unwrap();
    let (ok, _, err) = try_vsctl(ns, w, "add-port br0 bad -- set interface bad type=stt");
    assert!(!ok && err.contains("stt"), "type=stt: {err}");
    let (ok, _, err) =
        try_vsctl(ns, w, "add-port br0 okp -- set interface okp type=internal -- set bridge br0 stp_enable=true");
    assert!(!ok && err.contains("spanning tree"), "stp_enable: {err}");
    let (ok, _, err) = try_vsctl(ns, w, "set interface vx1 ofport=9");
    assert!(!ok && err.contains("weftd fills"), "ofport: {err}");
    let (ok, _, err) = try_vsctl(ns, w, "set interface vx1 options:colour=red");
    assert!(!ok && err.contains("colour"), "unknown option: {err}");
    assert_eq!(vsctl(ns, w, "list-ports br0"), "t1\nvx1");
    assert_eq!(std::fs::read(h.tmp.path("w").join("conf.db")).unwrap(), db, "a refused transaction changed the db");

    // kill -9: the same rows, UUIDs and stored columns after the restart.
    let uuid = vsctl(ns, w, "get interface vx1 _uuid");
    h.w.restart();
    let (ns, w) = (&h.h, &h.w);
    wait_for("the OVSDB socket after a restart", 5, || try_vsctl(ns, w, "list-br").0);
    assert_eq!(vsctl(ns, w, "get interface vx1 _uuid"), uuid);
    assert_eq!(vsctl(ns, w, "get bridge br0 other_config:colour"), "blue");
    assert_eq!(vsctl(ns, w, "get bridge br0 datapath_type"), "netdev");
    w.weft("del-port vx1");
    assert_eq!(vsctl(ns, w, "list-ports br0"), "t1");
}

/// libvirt's (`<virtualport type='openvswitch'/>`) and os-vif's command lines, as they run them.
#[test]
fn libvirt_and_os_vif_command_lines_work_unchanged() {
    let Some(h) = one_host("dl", &["ip", "ovs-vsctl"]) else { return };
    let (ns, w) = (&h.h, &h.w);
    ns.sh("ip link add vnet0 type veth peer name vnet0p && ip link set vnet0 up && ip link set vnet0p up");
    ns.sh("ip tuntap add dev tapf00 mode tap && ip link set tapf00 up");
    // os-vif (vif_plug_ovs): the integration bridge, then the VM's port.
    for _ in 0..2 {
        vsctl(ns, w, "--timeout=120 -- --may-exist add-br br-int -- set Bridge br-int datapath_type=system");
    }
    vsctl(
        ns,
        w,
        "--timeout=120 -- --may-exist add-port br-int tapf00 -- set Interface tapf00 \
         external_ids:iface-id=5d3e6d6a-0000-4000-8000-000000000001 external_ids:iface-status=active \
         external_ids:attached-mac=fa:16:3e:00:00:01 external_ids:vm-uuid=0b7b4d6e-0000-4000-8000-000000000002",
    );
    vsctl(ns, w, "--timeout=120 set Interface tapf00 mtu_request=1450");
    assert_eq!(vsctl(ns, w, "get Interface tapf00 mtu_request"), "1450");
    assert_eq!(vsctl(ns, w, "get Interface tapf00 external_ids:attached-mac"), "\"fa:16:3e:00:00:01\"");
    // libvirt: virNetDevOpenvswitchAddPort, then what it asks afterwards.
    vsctl(
        ns,
        w,
        "--timeout=5 -- --if-exists del-port vnet0 -- add-port br-int vnet0 \
         -- set Interface vnet0 'external-ids:attached-mac=\"52:54:00:12:34:56\"' \
         -- set Interface vnet0 'external-ids:iface-id=\"3f6d1d1e-0000-4000-8000-000000000003\"' \
         -- set Interface vnet0 'external-ids:vm-id=\"8c3a0e8b-0000-4000-8000-000000000004\"' \
         -- set Interface vnet0 external-ids:iface-status=active -- set Port vnet0 tag=42",
    );
    assert_eq!(vsctl(ns, w, "--timeout=5 iface-to-br vnet0"), "br-int");
    assert_eq!(vsctl(ns, w, "--timeout=5 --if-exists get Interface vnet0 name"), "vnet0");
    let port = show_port(w, "br-int", "vnet0").expect("vnet0 in weft show");
    assert_eq!(port["tag"], 42);
    // Frames through vnet0 show in the statistics libvirt reads (refreshed every few seconds).
    ns.sh("ip link set vnet0p address 52:54:00:12:34:56 && ip addr add 198.51.100.9/24 dev vnet0p");
    let _ = ns.run("ping -c 3 -i 0.2 -W 1 -I vnet0p 198.51.100.10");
    wait_for("vnet0's statistics", 10, || {
        let (_, out, _) = try_vsctl(
            ns,
            w,
            "--timeout=5 --if-exists --format=list --data=json --no-headings --columns=statistics list Interface vnet0",
        );
        out.contains("rx_packets") && !out.contains("[\"rx_packets\",0]")
    });
    for _ in 0..2 {
        vsctl(ns, w, "--timeout=5 -- --if-exists del-port vnet0");
    }
    vsctl(ns, w, "--timeout=120 -- --if-exists del-port br-int tapf00");
    assert_eq!(vsctl(ns, w, "list-ports br-int"), "");
    assert!(w.weft("list-ports br-int").trim().is_empty() || w.weft("list-ports br-int").trim() == "[]");
}

/// A second client that is not ovs-vsctl: Open vSwitch's Python IDL adds a port and reads its ofport back
/// through its monitor.
#[test]
fn a_python_idl_client_adds_a_port_and_reads_its_ofport_through_a_monitor() {
    let Some(h) = one_host("di", &["ip", "/usr/bin/python3"]) else { return };
    let (ns, w) = (&h.h, &h.w);
    w.weft("add-br br0");
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ovsdb_idl.py");
    let db = w.socket().with_file_name("db.sock");
    let out = ns.sh(&format!("/usr/bin/python3 {} unix:{} br0 idl0", script.display(), db.display()));
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let port = show_port(w, "br0", "idl0").expect("the IDL's port in weft show");
    assert_eq!(v["ofport"], port["ofport"]);
    assert_eq!(v["external_ids"]["owner"], "python-idl");
    assert!(ns.run("ip link show idl0").status.success(), "the internal port's TAP does not exist");
}

/// A JSON-RPC connection kept open.
struct Conn(UnixStream);

impl Conn {
    fn open(path: &std::path::Path) -> Conn {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        Conn(s)
    }
    fn ask(&mut self, msg: &str) -> String {
        self.0.write_all(msg.as_bytes()).unwrap();
        self.read()
    }
    /// One message (the replies here are small enough to come in one read).
    fn read(&mut self) -> String {
        let mut buf = vec![0u8; 1 << 16];
        let n = self.0.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
}

fn rpc(path: &std::path::Path, msg: &[u8]) -> String {
    let mut s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(msg).unwrap();
    let mut buf = vec![0u8; 1 << 16];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Malformed JSON-RPC, unknown methods, tables and columns, wrong types, a 10 MB message and a client that
/// never reads: each gets the protocol's error or is dropped, weftd stays up, nothing changes.
#[test]
fn bad_ovsdb_input_gets_errors_and_changes_nothing() {
    let Some(h) = one_host("db", &["ip", "ovs-vsctl"]) else { return };
    let (ns, w) = (&h.h, &h.w);
    w.weft("add-br br0");
    let sock = w.socket().with_file_name("db.sock");
    let db = std::fs::read(h.tmp.path("w").join("conf.db")).unwrap();
    let r = rpc(&sock, br#"{"id": 1, "method": "echo", "params": [1,]}"#);
    assert!(r.contains("syntax error"), "malformed JSON: {r}");
    let r = rpc(&sock, br#"{"id": 2, "method": "frobnicate", "params": []}"#);
    assert!(r.contains("unknown method"), "{r}");
    let r = rpc(&sock, br#"{"id": 3, "method": "get_schema", "params": ["Nope"]}"#);
    assert!(r.contains("unknown database"), "{r}");
    let r = rpc(&sock, br#"{"id": 4, "method": "transact", "params": ["Open_vSwitch", {"op": "select", "table": "Nope", "where": []}]}"#);
    assert!(r.contains("unknown table"), "{r}");
    let r = rpc(&sock, br#"{"id": 5, "method": "transact", "params": ["Open_vSwitch", {"op": "update", "table": "Bridge", "where": [], "row": {"colour": 1}}]}"#);
    assert!(r.contains("unknown column"), "{r}");
    let r = rpc(&sock, br#"{"id": 6, "method": "transact", "params": ["Open_vSwitch", {"op": "insert", "table": "Bridge", "row": {"name": 5}}]}"#);
    assert!(r.contains("not a valid string"), "{r}");
    let r = rpc(&sock, br#"{"id": 7, "method": "transact", "params": ["Open_vSwitch", {"op": "update", "table": "Port", "where": [], "row": {"tag": 5000}}]}"#);
    assert!(r.contains("constraint violation"), "{r}");
    let r = rpc(&sock, br#"{"id": 7, "what": "no method"}"#);
    assert!(r.contains("needs a"), "not JSON-RPC: {r}");
    // Locks: one owner at a time, and `assert` checks it.
    let (mut a, mut b) = (Conn::open(&sock), Conn::open(&sock));
    assert!(a.ask(r#"{"id": 1, "method": "lock", "params": ["x"]}"#).contains(r#""locked":true"#));
    assert!(b.ask(r#"{"id": 1, "method": "lock", "params": ["x"]}"#).contains(r#""locked":false"#));
    let assert_x = r#"{"id": 2, "method": "transact", "params": ["Open_vSwitch", {"op": "assert", "lock": "x"}]}"#;
    assert!(b.ask(assert_x).contains("not owner"));
    assert!(!a.ask(assert_x).contains("not owner"));
    // Unlocking hands the lock to the next in line, with a "locked" notification.
    assert!(a.ask(r#"{"id": 3, "method": "unlock", "params": ["x"]}"#).contains(r#""result":{}"#));
    assert!(b.read().contains(r#""method":"locked""#));
    // monitor_cond_since: not found, a transaction id, then the contents.
    let r = a.ask(r#"{"id": 4, "method": "monitor_cond_since", "params": ["Open_vSwitch", "m", {"Bridge": {"columns": ["name"]}}, "00000000-0000-0000-0000-000000000000"]}"#);
    let v: serde_json::Value = serde_json::from_str(&r).unwrap();
    assert_eq!(v["result"][0], false);
    assert!(v["result"][2]["Bridge"].to_string().contains("br0"), "{r}");
    // 10 MB in one message: refused and the connection closed.
    let mut big = br#"{"id": 8, "method": "echo", "params": [""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 10 << 20));
    big.extend(br#""]}"#);
    let mut s = UnixStream::connect(&sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let _ = s.write_all(&big);
    let mut reply = String::new();
    let _ = s.read_to_string(&mut reply);
    assert!(reply.contains("longer than"), "a 10 MB message: {:.200}", reply);
    // A client that asks and never reads is dropped; the others are served meanwhile.
    let mut stuck = UnixStream::connect(&sock).unwrap();
    stuck.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
    let ask = br#"{"id": 9, "method": "get_schema", "params": ["Open_vSwitch"]}"#;
    for _ in 0..3000 {
        if stuck.write_all(ask).is_err() {
            break;
        }
    }
    assert_eq!(vsctl(ns, w, "list-br"), "br0");
    wait_for("the stuck client to be dropped", 10, || w.log().contains("does not read"));
    assert_eq!(std::fs::read(h.tmp.path("w").join("conf.db")).unwrap(), db, "bad input changed the db");
    assert_eq!(vsctl(ns, w, "list-br"), "br0");
}

/// `compat:PATH` (the service's Open vSwitch socket path) is served only while Open vSwitch is not
/// installed and nothing answers there; `ptcp:` when asked, and where a Manager row says.
#[test]
fn the_open_vswitch_socket_path_is_taken_only_without_open_vswitch() {
    let Some(h) = one_host("dc", &["ip", "ovs-vsctl"]) else { return };
    let compat = h.tmp.path("ovs/db.sock");
    // With ovsdb-server on weftd's PATH (as on this machine): left alone.
    let d1 = h.tmp.path("w1");
    let w1 = Weftd::start_with(&h.h, &d1, &["--ovsdb", &format!("compat:{}", compat.display())]);
    wait_for("weftd to decide", 5, || w1.log().contains("not serving OVSDB"));
    assert!(w1.log().contains("Open vSwitch is installed"), "{}", w1.log());
    assert!(!compat.exists());
    drop(w1);
    // Without it: served, and plain ovs-vsctl pointed there works.
    let d2 = h.tmp.path("w2");
    let w2 = Weftd::start_env(
        &h.h,
        &d2,
        &["--ovsdb", &format!("compat:{}", compat.display())],
        &[("PATH", "/usr/bin:/bin")],
    );
    wait_for("the compat socket", 5, || compat.exists());
    w2.weft("add-br brc");
    assert_eq!(h.h.sh(&format!("ovs-vsctl --db=unix:{} list-br", compat.display())).trim(), "brc");
    drop(w2);
    // OVSDB over TCP when asked (127.0.0.1 unless an address is named).
    let w3 = Weftd::start_with(&h.h, &h.tmp.path("w3"), &["--ovsdb", "ptcp:16640"]);
    w3.weft("add-br brt");
    let out = h.h.sh("ovs-vsctl --db=tcp:127.0.0.1:16640 --timeout=10 add-port brt t0 -- set interface t0 type=tap");
    assert!(out.trim().is_empty(), "{out}");
    assert!(w3.weft("list-ports brt").contains("t0"));
    assert!(!w3.socket().with_file_name("db.sock").exists(), "--ovsdb replaces the default socket");
    // A Manager row (ovsdbapp's and Neutron's `set-manager ptcp:6640:127.0.0.1`) opens a listener; removing it
    // closes it.
    h.h.sh("ovs-vsctl --db=tcp:127.0.0.1:16640 --timeout=10 set-manager ptcp:16642:127.0.0.1");
    let out = h.h.sh("ovs-vsctl --db=tcp:127.0.0.1:16642 --timeout=10 list-br");
    assert_eq!(out.trim(), "brt");
    h.h.sh("ovs-vsctl --db=tcp:127.0.0.1:16640 --timeout=10 del-manager");
    wait_for("the manager's listener to close", 5, || {
        !h.h.run("ovs-vsctl --db=tcp:127.0.0.1:16642 --timeout=1 list-br").status.success()
    });
}
