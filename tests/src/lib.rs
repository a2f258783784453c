//! Helpers for interop tests: network namespaces that remove themselves, weftd instances that are stopped by
//! their PID, and commands that fail loudly.
//!
//! Every address used lies in 192.0.2.0/24, 198.51.100.0/24 or 2001:db8::/32 inside namespaces the test
//! creates. Tests need root, iproute2, ping and (some) tshark and iperf3: without them a test prints why it
//! skips, except under CI (`CI` set), where a missing prerequisite fails the test.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Checks prerequisites; returns false (after saying why) when the test should skip.
pub fn prerequisites(tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    // `id -u` prints 0 for root.
    let uid = Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
    if uid.ok().as_deref() != Some("0") {
        missing.push("root".to_string());
    }
    for t in tools {
        let found = Command::new("sh").arg("-c").arg(format!("command -v {t}")).output().map(|o| o.status.success());
        if !found.unwrap_or(false) {
            missing.push(t.to_string());
        }
    }
    if !bin_dir().join("weftd").exists() || !bin_dir().join("weft").exists() {
        missing.push(format!("weftd and weft in {} (run cargo build --release)", bin_dir().display()));
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("interop test needs {}", missing.join(", "));
    if std::env::var_os("CI").is_some() {
        panic!("{msg}: CI runs as root with every tool installed, so this may not skip");
    }
    eprintln!("SKIP: {msg}");
    false
}

/// Where the weftd and weft binaries are: $WEFT_BIN_DIR, else target/release of this workspace.
pub fn bin_dir() -> PathBuf {
    match std::env::var_os("WEFT_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release"),
    }
}

/// Runs a shell command line; panics with its output unless it succeeds.
pub fn sh(cmd: &str) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "command failed: {cmd}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs a shell command line and returns its output whatever happened.
pub fn run(cmd: &str) -> Output {
    Command::new("sh").arg("-c").arg(cmd).stdin(Stdio::null()).output().expect("cannot run sh")
}

/// Polls `ok` every 200 ms until it holds; panics after `secs` seconds. Returns how long it took.
pub fn wait_for(what: &str, secs: u64, mut ok: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !ok() {
        assert!(start.elapsed() < Duration::from_secs(secs), "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
    start.elapsed()
}

/// A network namespace, deleted on drop.
pub struct Ns {
    pub name: String,
}

impl Ns {
    pub fn new(name: &str) -> Ns {
        let _ = run(&format!("ip netns del {name} 2>/dev/null"));
        sh(&format!("ip netns add {name} && ip -n {name} link set lo up"));
        Ns { name: name.to_string() }
    }

    /// Runs `cmd` inside the namespace; panics unless it succeeds.
    pub fn sh(&self, cmd: &str) -> String {
        sh(&format!("ip netns exec {} sh -c '{}'", self.name, cmd.replace('\'', "'\\''")))
    }

    pub fn run(&self, cmd: &str) -> Output {
        run(&format!("ip netns exec {} sh -c '{}'", self.name, cmd.replace('\'', "'\\''")))
    }

    /// Starts `cmd` inside the namespace without waiting for it (its output is captured).
    pub fn spawn(&self, cmd: &str) -> Child {
        Command::new("ip")
            .args(["netns", "exec", &self.name, "sh", "-c", cmd])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run ip netns exec")
    }

    /// Pings `dst` (IPv4 or IPv6) until one answer arrives or `secs` pass; then `count` more must all answer.
    pub fn ping(&self, dst: &str, count: u32) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.run(&format!("ping -c 1 -W 1 {dst}")).status.success() {
                break;
            }
            assert!(Instant::now() < deadline, "{}: no answer from {dst} within 10 s", self.name);
        }
        let out = self.run(&format!("ping -c {count} -i 0.2 -W 1 {dst}"));
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains(&format!("{count} received")),
            "{}: ping {dst} lost packets:\n{text}",
            self.name
        );
    }
}

impl Drop for Ns {
    fn drop(&mut self) {
        let _ = run(&format!("ip netns del {}", self.name));
    }
}

/// Joins two namespaces with a veth pair and gives each end an address.
pub fn veth(a: &Ns, a_if: &str, a_addr: Option<&str>, b: &Ns, b_if: &str, b_addr: Option<&str>) {
    sh(&format!("ip link add {a_if} netns {} type veth peer name {b_if} netns {}", a.name, b.name));
    for (ns, ifname, addr) in [(a, a_if, a_addr), (b, b_if, b_addr)] {
        if let Some(addr) = addr {
            ns.sh(&format!("ip addr add {addr} dev {ifname}"));
        }
        ns.sh(&format!("ip link set {ifname} up"));
    }
}

/// A weftd running in a namespace with its own db and socket; stopped by PID on drop.
pub struct Weftd {
    pub ns: String,
    pub dir: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl Weftd {
    pub fn start(ns: &Ns, dir: &std::path::Path) -> Weftd {
        Weftd::start_with(ns, dir, &[])
    }

    /// Starts weftd with more command-line arguments (e.g. `--metrics IP:PORT`).
    pub fn start_with(ns: &Ns, dir: &std::path::Path, extra: &[&str]) -> Weftd {
        Weftd::start_env(ns, dir, extra, &[])
    }

    /// Starts weftd with more arguments and environment variables (e.g. a narrower `PATH`).
    pub fn start_env(ns: &Ns, dir: &std::path::Path, extra: &[&str], env: &[(&str, &str)]) -> Weftd {
        std::fs::create_dir_all(dir).expect("cannot create test directory");
        let extra = extra.iter().map(|s| s.to_string()).collect();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut w = Weftd { ns: ns.name.clone(), dir: dir.to_path_buf(), child: None, extra, env };
        w.spawn();
        w
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(self.dir.join("weftd.log")).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns])
            .arg(bin_dir().join("weftd"))
            .arg("--db")
            .arg(self.dir.join("conf.db"))
            .arg("--socket")
            .arg(self.socket())
            .args(&self.extra)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("cannot start weftd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::os::unix::net::UnixStream::connect(self.socket()).is_err() {
            assert!(Instant::now() < deadline, "weftd did not open its socket; log:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join("weft.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("weftd.log")).unwrap_or_default()
    }

    /// The datapath workers this daemon runs, as its start-up line says.
    pub fn workers(&self) -> usize {
        // The line follows the control socket by a moment.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.log().contains(" datapath worker(s)") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let log = self.log();
        let n = log.find(" datapath worker(s)").and_then(|end| log[..end].rsplit(' ').next()?.parse().ok());
        n.unwrap_or_else(|| panic!("weftd did not say how many workers it runs:\n{log}"))
    }

    /// Runs the weft CLI against this daemon; returns (success, stdout, stderr).
    pub fn try_weft(&self, args: &str) -> (bool, String, String) {
        let out = run(&format!(
            "ip netns exec {} {} --socket {} {args}",
            self.ns,
            bin_dir().join("weft").display(),
            self.socket().display()
        ));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Starts the weft CLI in the background (for `capture`), its output piped.
    pub fn spawn_weft(&self, args: &str) -> Child {
        Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec ip netns exec {} {} --socket {} {args}",
                self.ns,
                bin_dir().join("weft").display(),
                self.socket().display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start weft")
    }

    /// Runs the weft CLI; panics unless it succeeds.
    pub fn weft(&self, args: &str) -> String {
        let (ok, out, err) = self.try_weft(args);
        assert!(ok, "weft {args} failed: {err}\nweftd log:\n{}", self.log());
        out
    }

    pub fn json(&self, args: &str) -> serde_json::Value {
        serde_json::from_str(&self.weft(&format!("{args} --format json"))).expect("weft printed invalid JSON")
    }

    /// The daemon's process ID.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Kills the daemon with SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The counter `drops[reason]` of `port` on `bridge`.
    pub fn drops(&self, bridge: &str, port: &str, reason: &str) -> u64 {
        let v = self.json(&format!("dump-ports {bridge}"));
        v.as_array()
            .and_then(|ports| ports.iter().find(|p| p["port"] == port))
            .map(|p| p["drops"][reason].as_u64().unwrap_or(0))
            .unwrap_or_else(|| panic!("no port {port} on {bridge}: {v}"))
    }
}

impl Drop for Weftd {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A scratch directory under /tmp, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("weft-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    pub fn path(&self, sub: &str) -> PathBuf {
        self.0.join(sub)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The MAC address of `ifname` inside `ns`.
pub fn mac_of(ns: &Ns, ifname: &str) -> String {
    ns.sh(&format!("cat /sys/class/net/{ifname}/address")).trim().to_string()
}

// Topology shared by the tunnel tests:
//  [L] eth0 ──veth── P1 [H1: weftd] U1 ──veth (192.0.2.0/24, 2001:db8:ff::/64)── U2 [H2: weftd] tap → [R]

pub const V4_LEFT: &str = "198.51.100.1";
pub const V4_RIGHT: &str = "198.51.100.2";
pub const V6_LEFT: &str = "2001:db8:1::1";
pub const V6_RIGHT: &str = "2001:db8:1::2";

/// Two underlay hosts joined by a veth pair with IPv4 and IPv6 addresses.
pub struct Underlay {
    pub h1: Ns,
    pub h2: Ns,
    pub u1: String,
}

pub fn underlay(p: &str) -> Underlay {
    let h1 = Ns::new(&format!("{p}h1"));
    let h2 = Ns::new(&format!("{p}h2"));
    let (u1, u2) = (format!("{p}u1"), format!("{p}u2"));
    veth(&h1, &u1, Some("192.0.2.11/24"), &h2, &u2, Some("192.0.2.12/24"));
    h1.sh(&format!("ip addr add 2001:db8:ff::11/64 dev {u1} nodad"));
    h2.sh(&format!("ip addr add 2001:db8:ff::12/64 dev {u2} nodad"));
    Underlay { h1, h2, u1 }
}

/// The setup most single-host tests start from: a namespace `{p}h` running weftd (its files in a temporary
/// directory). Fields are dropped in order: weftd stops, then the namespace goes, then the directory.
pub struct OneHost {
    pub w: Weftd,
    pub h: Ns,
    pub tmp: TempDir,
}

/// [`OneHost`] for test `p`, once `tools` are there (`None`: the test skips, or fails under CI).
pub fn one_host(p: &str, tools: &[&str]) -> Option<OneHost> {
    if !prerequisites(tools) {
        return None;
    }
    let tmp = TempDir::new(p);
    let h = Ns::new(&format!("{p}h"));
    let w = Weftd::start(&h, &tmp.path("w"));
    Some(OneHost { w, h, tmp })
}

/// The setup of tests between two weft hosts: the [`underlay`] with weftd running on each host.
pub struct TwoHosts {
    pub w1: Weftd,
    pub w2: Weftd,
    pub u: Underlay,
    pub tmp: TempDir,
}

/// [`TwoHosts`] for test `p`, once `tools` are there (`None`: the test skips, or fails under CI).
pub fn two_hosts(p: &str, tools: &[&str]) -> Option<TwoHosts> {
    if !prerequisites(tools) {
        return None;
    }
    let tmp = TempDir::new(p);
    let u = underlay(p);
    let w1 = Weftd::start(&u.h1, &tmp.path("h1"));
    let w2 = Weftd::start(&u.h2, &tmp.path("h2"));
    Some(TwoHosts { w1, w2, u, tmp })
}

/// An endpoint namespace with `eth0` joined to `host` by a veth whose host end is `port`.
pub fn endpoint_veth(name: &str, host: &Ns, port: &str, v4: &str, v6: &str) -> Ns {
    let ns = Ns::new(name);
    veth(&ns, "eth0", None, host, port, None);
    ns.sh(&format!("ip link set eth0 mtu 1450 && ip addr add {v4}/24 dev eth0 && ip addr add {v6}/64 dev eth0 nodad"));
    ns
}

/// TCP both ways between `client` and `server` (an iperf3 server bound to each of `dsts` in turn): `client`
/// sends, then `server` sends (-R), 2 s each; each must carry more than 50 Mbit/s. `what` names the path
/// in the failure message.
pub fn tcp_both_ways(client: &Ns, server: &Ns, dsts: &[&str], what: &str) {
    for dst in dsts {
        for reverse in ["", " -R"] {
            let bps = iperf3_bps(client, server, dst, dst, 5201, reverse);
            assert!(bps > 50e6, "TCP to {dst}{reverse} {what} reached only {bps} bit/s");
        }
    }
}

/// Whether a TCP connection from `client` to `dst:port` (an iperf3 server `server` starts there) carries data.
pub fn tcp_passes(client: &Ns, server: &Ns, dst: &str, port: u16) -> bool {
    server.sh(&format!("iperf3 -s -1 -D -p {port}"));
    std::thread::sleep(Duration::from_millis(300));
    let out = client.run(&format!("timeout 20 iperf3 -c {dst} -p {port} -t 1 --connect-timeout 1500 -J"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let bps = v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0);
    if bps == 0.0 {
        // The server waits for a client that never came: end it (only the one this test started).
        let _ = server.run(&format!(
            "pid=$(ss -Htlnp sport = :{port} | grep -o 'pid=[0-9]*' | cut -d= -f2); [ -n \"$pid\" ] && kill $pid"
        ));
    }
    bps > 0.0
}

/// One 2-second iperf3 TCP run from `client` to `dst:port` (`extra`: more iperf3 arguments, such as " -R")
/// against a server that `server` starts bound to `bind` and `port`: the bits per second received.
pub fn iperf3_bps(client: &Ns, server: &Ns, bind: &str, dst: &str, port: u16, extra: &str) -> f64 {
    server.sh(&format!("iperf3 -s -1 -D -B {bind} -p {port}"));
    std::thread::sleep(Duration::from_millis(300));
    iperf3_client_bps(client, dst, port, extra)
}

/// A 2-second iperf3 TCP run from `client` to `dst:port`, a server already listening behind it: the bits
/// per second received.
pub fn iperf3_client_bps(client: &Ns, dst: &str, port: u16, extra: &str) -> f64 {
    let out = client.sh(&format!("timeout 30 iperf3 -c {dst} -p {port} -t 2 -J{extra}"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 -J output");
    v["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0)
}

/// Moves TAP `tap` from `host` into a new endpoint namespace and addresses it.
pub fn endpoint_tap(name: &str, host: &Ns, tap: &str, v4: &str, v6: &str) -> Ns {
    let ns = Ns::new(name);
    host.sh(&format!("ip link set {tap} netns {name}"));
    ns.sh(&format!("ip addr add {v4}/24 dev {tap} && ip addr add {v6}/64 dev {tap} nodad && ip link set {tap} up"));
    ns
}

/// An ovsdb-server and ovs-vswitchd running in one namespace, with their own database, sockets and logs.
pub struct Ovs<'a> {
    pub ns: &'a Ns,
    pub dir: PathBuf,
}

impl<'a> Ovs<'a> {
    pub fn start(ns: &'a Ns, dir: PathBuf) -> Ovs<'a> {
        std::fs::create_dir_all(&dir).expect("OVS directory");
        let ovs = Ovs { ns, dir };
        let d = ovs.dir.display().to_string();
        sh(&format!("ovsdb-tool create {d}/conf.db /usr/share/openvswitch/vswitch.ovsschema"));
        ns.sh(&format!(
            "{env} ovsdb-server {d}/conf.db --remote=punix:{d}/db.sock --pidfile={d}/ovsdb-server.pid \
             --unixctl={d}/ovsdb-server.ctl --log-file={d}/ovsdb-server.log --detach",
            env = ovs.env()
        ));
        ovs.vsctl("--no-wait init");
        ns.sh(&format!(
            "{env} ovs-vswitchd unix:{d}/db.sock --disable-system --pidfile={d}/ovs-vswitchd.pid \
             --unixctl={d}/ovs-vswitchd.ctl --log-file={d}/ovs-vswitchd.log --detach",
            env = ovs.env()
        ));
        ovs
    }

    /// Keeps every OVS tool on this instance's files.
    pub fn env(&self) -> String {
        let d = self.dir.display();
        format!("OVS_RUNDIR={d} OVS_LOGDIR={d} OVS_DBDIR={d}")
    }

    pub fn vsctl(&self, args: &str) -> String {
        let d = self.dir.display();
        self.ns.sh(&format!("{} ovs-vsctl --db=unix:{d}/db.sock --timeout=20 {args}", self.env()))
    }

    /// Host 2 of the [`underlay`] as OVS's native tunnelling wants it: the underlay port `uplink` in a
    /// netdev bridge `br-phy` that takes over the host's underlay addresses (192.0.2.12, 2001:db8:ff::12),
    /// and an empty netdev bridge `br-int` for the tunnels and endpoints.
    pub fn netdev_host(&self, uplink: &str) {
        self.vsctl("add-br br-phy -- set bridge br-phy datapath_type=netdev");
        self.vsctl(&format!("add-port br-phy {uplink}"));
        self.ns.sh(&format!(
            "ip addr flush dev {uplink} && ip link set br-phy up && ip addr add 192.0.2.12/24 dev br-phy && \
             ip addr add 2001:db8:ff::12/64 dev br-phy nodad"
        ));
        self.vsctl("add-br br-int -- set bridge br-int datapath_type=netdev");
    }

    pub fn appctl(&self, args: &str) -> String {
        let d = self.dir.display();
        self.ns.sh(&format!("{} ovs-appctl -t {d}/ovs-vswitchd.ctl {args}", self.env()))
    }
}

impl Drop for Ovs<'_> {
    fn drop(&mut self) {
        // Only the two daemons this test started, by the PIDs they wrote.
        for daemon in ["ovs-vswitchd", "ovsdb-server"] {
            let pidfile = self.dir.join(format!("{daemon}.pid"));
            if let Ok(pid) = std::fs::read_to_string(&pidfile) {
                let pid = pid.trim();
                if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                    let _ = run(&format!(
                        "kill {pid}; for i in $(seq 50); do kill -0 {pid} 2>/dev/null || break; sleep 0.1; done"
                    ));
                }
            }
        }
    }
}

/// Checks `weft decode --format json` against tshark on every packet of `pcap`: for every field weft prints,
/// tshark's values (all occurrences, outermost first) must be the same. `decode_as` rules go to both.
/// Returns how many packets and field values were compared.
pub fn assert_decode_matches_tshark(pcap: &std::path::Path, decode_as: &[&str]) -> (usize, usize) {
    let rules: String = decode_as.iter().map(|r| format!(" --decode-as {r}")).collect();
    let weft = bin_dir().join("weft");
    let out = sh(&format!("{} decode --format json{rules} {}", weft.display(), pcap.display()));
    let packets: Vec<serde_json::Value> =
        out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}"))).collect();
    // Each packet's fields, every occurrence in layer order.
    let mut per_packet: Vec<Vec<(String, Vec<String>)>> = Vec::new();
    let mut names: Vec<String> = Vec::new();
    for p in &packets {
        let mut fields: Vec<(String, Vec<String>)> = Vec::new();
        for layer in p["layers"].as_array().expect("layers") {
            for (name, v) in layer["fields"].as_object().expect("fields") {
                // data.len is weft's own count of undissected bytes; tshark has no such field.
                if name.starts_with("data.") {
                    continue;
                }
                let values: Vec<String> = match v {
                    serde_json::Value::Array(a) => {
                        a.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect()
                    }
                    x => vec![x.as_str().unwrap_or_default().to_string()],
                };
                match fields.iter_mut().find(|(n, _)| n == name) {
                    Some((_, all)) => all.extend(values),
                    None => fields.push((name.clone(), values)),
                }
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        per_packet.push(fields);
    }
    assert!(!packets.is_empty(), "{}: weft decoded no packets", pcap.display());
    let d: String = decode_as.iter().map(|r| format!(" -d {r}")).collect();
    let e: String = names.iter().map(|n| format!(" -e {n}")).collect();
    let tshark =
        // weft does not reassemble IP fragments: it shows what each fragment holds, as tshark does without
        // reassembly.
        sh(&format!(
            "tshark -r {} -n -o ip.defragment:FALSE -o ipv6.defragment:FALSE{d} -T fields -E separator=/t \
             -E occurrence=a -E aggregator=,{e}",
            pcap.display()
        ));
    let rows: Vec<Vec<&str>> = tshark.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), packets.len(), "{}: tshark and weft see different packet counts", pcap.display());
    let mut compared = 0;
    for (i, (row, fields)) in rows.iter().zip(&per_packet).enumerate() {
        for (name, values) in fields {
            let col = names.iter().position(|n| n == name).expect("name listed");
            let theirs = row.get(col).copied().unwrap_or_default();
            let ours = values.join(",");
            assert_eq!(
                ours,
                theirs,
                "{} packet {}: {name} differs (weft vs tshark); weft's packet: {}",
                pcap.display(),
                i + 1,
                packets[i]
            );
            compared += values.len();
        }
    }
    (packets.len(), compared)
}

/// Two weft hosts, each with a bridge `sw1` and one tunnel port `t1` of `ty` with `opts`; an endpoint behind
/// each (a veth on host 1, a TAP on host 2) with overlay addresses of both families.
pub struct Pair {
    pub u: Underlay,
    pub w1: Weftd,
    pub w2: Weftd,
    pub left: Ns,
    pub right: Ns,
    /// Host 2's port towards R (the TAP, or the veth end), and host 1's towards L.
    pub tap: String,
    pub p1: String,
    pub tmp: TempDir,
}

pub fn pair(p: &str, ty: &str, v6_underlay: bool, opts1: &str, opts2: &str) -> Pair {
    pair_with(p, ty, v6_underlay, opts1, opts2, "", true)
}

/// [`pair`], with `access` after each endpoint port's name in `add-port` (` tag=10`), and R behind a veth
/// instead of a TAP when `right_tap` is false.
pub fn pair_with(
    p: &str,
    ty: &str,
    v6_underlay: bool,
    opts1: &str,
    opts2: &str,
    access: &str,
    right_tap: bool,
) -> Pair {
    let tmp = TempDir::new(p);
    let u = underlay(p);
    let (a1, a2) = if v6_underlay { ("2001:db8:ff::11", "2001:db8:ff::12") } else { ("192.0.2.11", "192.0.2.12") };
    let w1 = Weftd::start(&u.h1, &tmp.path("h1"));
    let w2 = Weftd::start(&u.h2, &tmp.path("h2"));
    w1.weft("add-br sw1");
    let p1 = format!("{p}p1");
    let left = endpoint_veth(&format!("{p}l"), &u.h1, &p1, V4_LEFT, V6_LEFT);
    w1.weft(&format!("add-port sw1 {p1}{access}"));
    w1.weft(&format!("add-port sw1 t1 -- set interface t1 type={ty} options:remote_ip={a2} {opts1}"));
    w2.weft("add-br sw1");
    let (tap, right) = if right_tap {
        let tap = format!("{p}tap");
        w2.weft(&format!("add-port sw1 {tap}{access} -- set interface {tap} type=tap"));
        w2.weft(&format!("add-port sw1 t1 -- set interface t1 type={ty} options:remote_ip={a1} {opts2}"));
        let right = endpoint_tap(&format!("{p}r"), &u.h2, &tap, V4_RIGHT, V6_RIGHT);
        // The veth endpoint gets the MTU weft gave the TAP on the other side.
        let mtu = right.sh(&format!("cat /sys/class/net/{tap}/mtu"));
        left.sh(&format!("ip link set eth0 mtu {}", mtu.trim()));
        (tap, right)
    } else {
        let p2 = format!("{p}p2");
        let right = endpoint_veth(&format!("{p}r"), &u.h2, &p2, V4_RIGHT, V6_RIGHT);
        w2.weft(&format!("add-port sw1 {p2}{access}"));
        w2.weft(&format!("add-port sw1 t1 -- set interface t1 type={ty} options:remote_ip={a1} {opts2}"));
        (p2, right)
    };
    Pair { u, w1, w2, left, right, tap, p1, tmp }
}

/// tcpdump on `ifname` in `ns`, writing `file`, until [`Capture::finish`] stops it (by its PID).
pub struct Capture<'a> {
    ns: &'a Ns,
    pid: String,
    pub file: std::path::PathBuf,
}

impl<'a> Capture<'a> {
    pub fn start(ns: &'a Ns, ifname: &str, file: std::path::PathBuf) -> Capture<'a> {
        let pid = ns
            .sh(&format!("tcpdump -i {ifname} --immediate-mode -U -n -w {} >/dev/null 2>&1 & echo $!", file.display()));
        // tcpdump needs a moment before it sees packets.
        std::thread::sleep(std::time::Duration::from_millis(700));
        Capture { ns, pid: pid.trim().to_string(), file }
    }

    /// Returns tshark's fields for every packet matching `filter`. A field that occurs several times (an outer
    /// and an inner IP header, several options) has its values joined with commas.
    pub fn fields(&self, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
        let e: String = fields.iter().map(|f| format!(" -e {f}")).collect();
        let out = sh(&format!("tshark -r {} -Y '{filter}' -T fields -E separator=/t{e}", self.file.display()));
        out.lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
    }

    /// Stops the capture.
    pub fn finish(&self) {
        std::thread::sleep(std::time::Duration::from_millis(300));
        self.ns.sh(&format!("kill {} 2>/dev/null; sleep 0.3; true", self.pid));
    }
}

/// A test CA, and certificates it signed, made with openssl: the etcd server's (for 10.0.0.254; etcd's JSON
/// gateway also uses it as a client of etcd's own gRPC side, hence clientAuth too) and a client's. With
/// client-cert-auth and authentication both on, etcd refuses gateway requests whose client certificate has a
/// Common Name (it could not become the etcd user through the gateway): the client certificate has none. Returns the directory holding ca.crt, server.{crt,key} and client.{crt,key}.
pub fn test_pki(d: &std::path::Path) -> std::path::PathBuf {
    let d = d.to_path_buf();
    std::fs::create_dir_all(&d).unwrap();
    let ec = "-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes";
    sh(&format!(
        "cd {d} && openssl req -x509 {ec} -keyout ca.key -out ca.crt -days 2 -subj /CN=weft-test-ca 2>/dev/null && \
         openssl req {ec} -keyout server.key -out server.csr -subj /CN=etcd \
           -addext subjectAltName=IP:10.0.0.254,IP:127.0.0.1 -addext extendedKeyUsage=serverAuth,clientAuth 2>/dev/null && \
         openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 2 \
           -copy_extensions copy 2>/dev/null && \
         openssl req {ec} -keyout client.key -out client.csr -subj /O=weft \
           -addext extendedKeyUsage=clientAuth 2>/dev/null && \
         openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 2 \
           -copy_extensions copy 2>/dev/null && chmod 600 *.key",
        d = d.display()
    ));
    d
}
