//! Running weft: versions with the git commit, a clear message when the daemon cannot be reached, Prometheus
//! metrics scraped with a real HTTP client, and `dump-drops`.

use weft_interop::*;

fn repo_commit() -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    sh(&format!("git -C {} rev-parse --short=12 HEAD", root.display())).trim().to_string()
}

#[test]
fn versions_name_the_commit() {
    let commit = repo_commit();
    for bin in ["weft", "weftd"] {
        let out = sh(&format!("{} --version", bin_dir().join(bin).display()));
        assert!(out.starts_with(&format!("{bin} {}", env!("CARGO_PKG_VERSION"))), "{out}");
        assert!(out.contains(&format!("commit {commit}")), "{bin} --version: {out} (HEAD is {commit})");
    }
}

#[test]
fn unreachable_daemon_is_explained() {
    let out = run(&format!("{} --socket /tmp/weft-nonexistent.sock show", bin_dir().join("weft").display()));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("/tmp/weft-nonexistent.sock") && err.contains("weftd is not running"), "{err}");
}

#[test]
fn metrics_are_scraped_and_drops_listed() {
    let p = "mx";
    if !prerequisites(&["ip", "ping", "curl", "python3"]) {
        return;
    }
    let tmp = TempDir::new(p);
    let u = underlay(p);
    let w = Weftd::start_with(&u.h1, &tmp.path("w"), &["--metrics", "127.0.0.1:9108"]);
    w.weft("add-br sw1");
    let left = endpoint_veth(&format!("{p}l"), &u.h1, &format!("{p}p1"), V4_LEFT, V6_LEFT);
    let _right = endpoint_veth(&format!("{p}r"), &u.h1, &format!("{p}p2"), V4_RIGHT, V6_RIGHT);
    w.weft(&format!("add-port sw1 {p}p1"));
    w.weft(&format!("add-port sw1 {p}p2"));
    w.weft("add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.12 options:key=5");
    left.ping(V4_RIGHT, 3);
    // A VXLAN packet from the tunnel's remote with a VNI it does not use: a drop with a reason.
    u.h2.sh("python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.sendto(bytes([8,0,0,0,0,0,9,0])+bytes(14), ('192.0.2.11', 4789))\"");
    std::thread::sleep(std::time::Duration::from_millis(300));

    let m = u.h1.sh("curl -sS --fail http://127.0.0.1:9108/metrics");
    let value = |series: &str| -> u64 {
        m.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{m}"))
    };
    assert!(m.contains("# TYPE weft_port_rx_packets_total counter"), "{m}");
    assert!(value(&format!("weft_port_rx_packets_total{{bridge=\"sw1\",port=\"{p}p1\"}}")) >= 3);
    assert!(value(&format!("weft_port_tx_packets_total{{bridge=\"sw1\",port=\"{p}p2\"}}")) >= 3);
    assert!(value("weft_fdb_entries{bridge=\"sw1\"}") >= 2);
    assert_eq!(value("weft_fdb_aged_total{bridge=\"sw1\"}"), 0);
    assert_eq!(value("weft_tunnel_ports{type=\"vxlan\"}"), 1);
    assert_eq!(value("weft_port_drops_total{bridge=\"sw1\",port=\"vx1\",reason=\"wrong_vni\"}"), 1);
    assert_eq!(value("weft_flows{bridge=\"sw1\",table=\"0\"}"), 1);
    assert!(m.contains(&format!("commit=\"{}\"", repo_commit())), "build info names the commit");
    let missing = u.h1.run("curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:9108/nope");
    assert_eq!(String::from_utf8_lossy(&missing.stdout), "404");

    let drops = w.weft("dump-drops sw1");
    assert_eq!(drops.trim(), "vx1 wrong_vni=1", "{drops}");
}

#[test]
fn log_level_changes_while_running() {
    let p = "lg";
    let Some(OneHost { tmp: _tmp, h: _h, w }) = one_host(p, &["ip"]) else { return };
    assert_eq!(w.json("vlog/list")["level"], "info");
    w.weft("add-br sw1");
    let changed = |log: &str| log.matches("configuration changed").count();
    assert_eq!(changed(&w.log()), 1, "{}", w.log());
    assert!(w.log().contains(" INFO ") && w.log().contains(r#""cmd":"add-br""#), "structured: {}", w.log());
    w.weft("vlog/set warn");
    w.weft("add-br sw2");
    assert_eq!(changed(&w.log()), 1, "info is off at warn:\n{}", w.log());
    w.weft("vlog/set debug");
    let _ = w.try_weft("add-br sw2");
    let log = w.log();
    assert!(log.contains(" DEBUG ") && log.contains("change refused"), "{log}");
    let (ok, _, err) = w.try_weft("vlog/set loud");
    assert!(!ok && err.contains("unknown log level"), "{err}");
}

/// The TAP devices this weftd made (marked with its alias) in its namespace.
fn owned_taps(ns: &Ns) -> std::collections::BTreeSet<String> {
    let out = ns.sh(
        "for d in /sys/class/net/*; do [ -e $d/tun_flags ] && echo \"$(basename $d) $(cat $d/ifalias)\"; done; true",
    );
    out.lines()
        .filter(|l| l.contains("weft-owned"))
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect()
}

/// kill -9 in the middle of concurrent add-port/del-port of TAPs: after the restart, the TAPs weft made and
/// the ports its database names agree both ways, every time.
#[test]
fn kill_9_during_port_changes_leaves_devices_and_db_agreeing() {
    let p = "kc";
    let Some(OneHost { tmp: _tmp, h, mut w }) = one_host(p, &["ip"]) else { return };
    w.weft("add-br sw1");
    for round in 0..12u64 {
        // Eight writers adding and deleting TAP ports of their own.
        let writers: Vec<std::process::Child> = (0..8)
            .map(|i| {
                let weft = format!(
                    "ip netns exec {} {} --socket {}",
                    h.name,
                    bin_dir().join("weft").display(),
                    w.socket().display()
                );
                let script = format!(
                    "while true; do {weft} add-port sw1 t{i} -- set interface t{i} type=tap 2>/dev/null; \
                     {weft} del-port sw1 t{i} 2>/dev/null; done"
                );
                std::process::Command::new("sh")
                    .args(["-c", &script])
                    .stdin(std::process::Stdio::null())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        std::thread::sleep(std::time::Duration::from_millis(150 + 37 * round));
        w.kill9();
        for mut c in writers {
            let _ = c.kill();
            let _ = c.wait();
        }
        w.restart();
        let show = w.json("show");
        let ports: std::collections::BTreeSet<String> = show["bridges"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x["name"].as_str().map(String::from))
            .collect();
        let devices = owned_taps(&h);
        assert_eq!(devices, ports, "round {round}: TAPs weft made vs ports its db names");
    }
}

/// Link state: a system port whose veth is deleted, or a TAP set down (in weftd's namespace or moved out of it), shows `link_state: down` (show, JSON,
/// OpenFlow port descriptions with OFPPS_LINK_DOWN, OFPT_PORT_STATUS to a connected controller), frames to it
/// are counted as `link_down`, and a veth made anew under the same name is taken up again without a command.
#[test]
fn link_state_follows_the_interfaces() {
    let p = "ls";
    let Some(OneHost { tmp, h, w }) = one_host(p, &["ip", "ping", "ovs-ofctl"]) else { return };
    w.weft("add-br sw1");
    let left = Ns::new(&format!("{p}l"));
    veth(&left, "eth0", Some("10.5.0.1/24"), &h, &format!("{p}p1"), None);
    w.weft(&format!("add-port sw1 {p}p1"));
    w.weft(&format!("add-port sw1 {p}tap -- set interface {p}tap type=tap"));
    let right = endpoint_tap(&format!("{p}r"), &h, &format!("{p}tap"), "10.5.0.2", "2001:db8:5::2");
    right.ping("10.5.0.1", 2);
    w.weft("set-controller sw1 ptcp:6658:127.0.0.1");
    let state = |port: &str| -> String {
        let v = w.json("show");
        v["bridges"][0]["ports"].as_array().unwrap().iter().find(|x| x["name"] == port).unwrap()["link_state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    assert_eq!(state(&format!("{p}p1")), "up");
    let monitor = h.spawn(&format!(
        "exec timeout 20 ovs-ofctl -O OpenFlow13 --unixctl={} monitor tcp:127.0.0.1:6658 > {} 2>&1",
        tmp.path("ofctl.ctl").display(),
        tmp.path("monitor.txt").display()
    ));
    std::thread::sleep(std::time::Duration::from_millis(500));
    // The veth goes away.
    h.sh(&format!("ip link del {p}p1"));
    wait_for("link_state down", 5, || state(&format!("{p}p1")) == "down");
    assert!(w.weft("show").contains("link_state: down"));
    let desc = h.sh("timeout 10 ovs-ofctl -O OpenFlow13 dump-ports-desc tcp:127.0.0.1:6658");
    assert!(desc.contains("LINK_DOWN"), "{desc}");
    // Frames towards it are counted, not sent.
    let _ = right.run("ping -c 2 -i 0.2 -W 1 10.5.0.1");
    assert!(w.drops("sw1", &format!("{p}p1"), "link_down") > 0);
    // A veth of the same name again: taken up without a command, and traffic crosses.
    veth(&left, "eth0", Some("10.5.0.1/24"), &h, &format!("{p}p1"), None);
    wait_for("link_state up again", 5, || state(&format!("{p}p1")) == "up");
    // (The new veth has a new MAC: the right side forgets the old one.)
    right.sh("ip neigh flush all");
    right.ping("10.5.0.1", 3);
    // A TAP in weftd's namespace (the bridge's internal port) set down and up.
    h.sh("ip link set sw1 down");
    wait_for("the internal port's link down", 5, || state("sw1") == "down");
    h.sh("ip link set sw1 up");
    wait_for("the internal port's link up", 5, || state("sw1") == "up");
    // A TAP moved into another namespace (a container's), set down and up there: weftd looks from there.
    assert_eq!(state(&format!("{p}tap")), "up");
    right.sh(&format!("ip link set {p}tap down"));
    wait_for("the moved TAP's link down", 5, || state(&format!("{p}tap")) == "down");
    right.sh(&format!("ip link set {p}tap up"));
    wait_for("the moved TAP's link up", 5, || state(&format!("{p}tap")) == "up");
    right.ping("10.5.0.1", 2);
    let mut monitor = monitor;
    let _ = monitor.kill();
    let _ = monitor.wait();
    let seen = std::fs::read_to_string(tmp.path("monitor.txt")).unwrap_or_default();
    assert!(seen.contains("OFPT_PORT_STATUS") && seen.contains("LINK_DOWN"), "the controller was not told:\n{seen}");
}
