//! weft's etcd control plane against a real etcd cluster (Debian `etcd-server`).
//!
//! ```text
//!   namespace ETCD-UL: bridge ul0 10.0.0.254/24; etcd members m1..m3 (peers on 127.0.0.1:2380x, clients on
//!                      127.0.0.1 and 10.0.0.254:2379x)
//!   h1, h2, h3: eth0 10.0.0.{1,2,3}/24 on ul0; weftd with bridge br0 = TAP (moved into e1..e3, 10.100.0.x/24)
//!               + vxlan remote_ip=flow key=100; no remote_ip anywhere
//! ```

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft_interop::*;

const TTL: u64 = 5;

struct Etcd {
    members: Vec<Option<Child>>,
}

impl Etcd {
    fn start(ul: &Ns, dir: &std::path::Path) -> Etcd {
        let cluster: Vec<String> = (1..=3).map(|i| format!("m{i}=http://127.0.0.1:2380{i}")).collect();
        let members = (1..=3)
            .map(|i| {
                let log = std::fs::File::create(dir.join(format!("etcd-m{i}.log"))).unwrap();
                let child = Command::new("ip")
                    .args(["netns", "exec", &ul.name, "etcd"])
                    .args(["--name", &format!("m{i}")])
                    .arg("--data-dir")
                    .arg(dir.join(format!("m{i}")))
                    .args(["--listen-client-urls", &format!("http://127.0.0.1:2379{i},http://10.0.0.254:2379{i}")])
                    .args(["--advertise-client-urls", &format!("http://10.0.0.254:2379{i}")])
                    .args(["--listen-peer-urls", &format!("http://127.0.0.1:2380{i}")])
                    .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:2380{i}")])
                    .args(["--initial-cluster", &cluster.join(",")])
                    .args(["--initial-cluster-state", "new", "--initial-cluster-token", "weft-test"])
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().unwrap())
                    .stderr(log)
                    .spawn()
                    .expect("cannot start etcd");
                Some(child)
            })
            .collect();
        let e = Etcd { members };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ul.run(&format!("ETCDCTL_API=3 etcdctl --endpoints {} endpoint health", endpoints())).status.success() {
            assert!(Instant::now() < deadline, "the etcd cluster did not become healthy");
            std::thread::sleep(Duration::from_millis(300));
        }
        e
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}

fn endpoints() -> String {
    "http://10.0.0.254:23791,http://10.0.0.254:23792,http://10.0.0.254:23793".to_string()
}

struct Host {
    /// The host's namespace (kept alive: dropping it removes the namespace).
    _ns: Ns,
    w: Weftd,
    ep: Ns,
    mac: String,
}

fn host(p: &str, i: u8, ul: &Ns, tmp: &TempDir) -> Host {
    let settings = format!(
        "other_config:control-plane=etcd other_config:etcd-endpoints={} other_config:etcd-ttl={TTL}",
        endpoints()
    );
    host_with(p, i, ul, tmp, &settings)
}

/// Host `i` on the underlay bridge of `ul`, its bridge's control plane set by `settings`.
fn host_with(p: &str, i: u8, ul: &Ns, tmp: &TempDir, settings: &str) -> Host {
    let ns = Ns::new(&format!("{p}h{i}"));
    sh(&format!("ip link add eth0 netns {} type veth peer name {p}v{i} netns {}", ns.name, ul.name));
    ul.sh(&format!("ip link set {p}v{i} master ul0 up"));
    ns.sh(&format!("ip addr add 10.0.0.{i}/24 dev eth0 && ip link set eth0 up"));
    let w = Weftd::start(&ns, &tmp.path(&format!("h{i}")));
    w.weft("add-br br0");
    let tap = format!("{p}t{i}");
    w.weft(&format!("add-port br0 {tap} -- set interface {tap} type=tap"));
    w.weft("add-port br0 vx -- set interface vx type=vxlan options:remote_ip=flow options:key=100");
    w.weft(&format!("set bridge br0 {settings}"));
    let ep = endpoint_tap(&format!("{p}e{i}"), &ns, &tap, &format!("10.100.0.{i}"), &format!("2001:db8:100::{i}"));
    let mac = mac_of(&ep, &tap);
    Host { _ns: ns, w, ep, mac }
}

/// The FDB entry of `mac` on `w`, if any.
fn entry(w: &Weftd, mac: &str) -> Option<serde_json::Value> {
    w.json("fdb show br0").as_array().unwrap().iter().find(|e| e["mac"] == mac).cloned()
}

#[test]
fn three_hosts_find_each_other_through_etcd() {
    if !prerequisites(&["ip", "ping", "etcd", "etcdctl"]) {
        return;
    }
    let p = "etc";
    let tmp = TempDir::new(p);
    let ul = Ns::new(&format!("{p}ul"));
    ul.sh("ip link add ul0 type bridge && ip link set ul0 up && ip addr add 10.0.0.254/24 dev ul0");
    let mut etcd = Etcd::start(&ul, &tmp.0);
    let mut hosts: Vec<Host> = (1..=3).map(|i| host(p, i, &ul, &tmp)).collect();

    // Every host sees the other two as flood destinations and their MACs as etcd entries.
    for (i, h) in hosts.iter().enumerate() {
        for (j, o) in hosts.iter().enumerate().filter(|(j, _)| *j != i) {
            let vtep = format!("10.0.0.{}", j + 1);
            wait_for(&format!("h{} learns h{}'s MAC through etcd", i + 1, j + 1), 15, || {
                entry(&h.w, &o.mac).is_some_and(|e| e["origin"] == "etcd" && e["remote_ip"] == vtep.as_str())
            });
        }
        // `show` reports the flood list (refreshed twice a second).
        let want: Vec<String> = (1..=3).filter(|j| *j != i + 1).map(|j| format!("10.0.0.{j} (etcd)")).collect();
        wait_for(&format!("h{}'s show lists its flood list", i + 1), 5, || {
            let show = h.w.weft("show");
            show.contains(&format!("remotes: {}", want.join(", ")))
        });
        let show = h.w.json("show");
        assert_eq!(show["bridges"][0]["control_plane"]["vtep"], format!("10.0.0.{}", i + 1));
        assert_eq!(show["bridges"][0]["control_plane"]["kind"], "etcd");
        let text = h.w.weft("fdb show br0");
        assert!(text.contains("etcd"), "{text}");
    }
    let keys = ul.sh(&format!("ETCDCTL_API=3 etcdctl --endpoints {} get /weft/ --prefix --keys-only", endpoints()));
    for i in 1..=3 {
        assert!(keys.contains(&format!("/weft/host/10.0.0.{i}/vni/100/vtep")), "{keys}");
    }
    let ping_all = |hosts: &[Host]| {
        for a in hosts {
            for b in hosts.iter().filter(|b| b.ep.name != a.ep.name) {
                let dst = b.ep.sh("ip -4 -o addr show | grep 10.100.0 | awk '{print $4}'");
                a.ep.ping(dst.trim().trim_end_matches("/24"), 3);
            }
        }
    };
    ping_all(&hosts);

    // One etcd member dies (the one every host asks first): the hosts go on through the other two.
    etcd.kill(0);
    ping_all(&hosts);

    // One weft host dies: its lease expires and its MAC and VTEP leave the others within the TTL.
    let dead_mac = hosts[2].mac.clone();
    hosts[2].w.kill9();
    let took =
        wait_for("h3's MAC leaves h1 and h2", TTL + 4, || hosts[..2].iter().all(|h| entry(&h.w, &dead_mac).is_none()));
    eprintln!("h3's entries left the others {:.1} s after it died (lease TTL {TTL} s)", took.as_secs_f64());
    for h in &hosts[..2] {
        // Its flood entry went with the same lease (`show` refreshes within 100 ms).
        wait_for("only one VTEP left in show", 2, || {
            let show = h.w.json("show");
            let vx =
                show["bridges"][0]["ports"].as_array().unwrap().iter().find(|x| x["name"] == "vx").unwrap().clone();
            vx["remotes"].as_array().unwrap().len() == 1
        });
    }
    ping_all(&hosts[..2]);

    // It restarts (configuration from its db): it rejoins, and everyone reaches it again.
    hosts[2].w.restart();
    for h in &hosts[..2] {
        wait_for("the restarted h3 is back", 15, || {
            entry(&h.w, &dead_mac).is_some_and(|e| e["origin"] == "etcd" && e["remote_ip"] == "10.0.0.3")
        });
    }
    ping_all(&hosts);
    let log = hosts[0].w.log();
    assert!(log.contains("etcd: joined through"), "{log}");
    drop(hosts);
}

/// A watch from a compacted revision is refused with the compaction revision; weft then reads everything again.
#[test]
fn compacted_watch_is_reported() {
    if !prerequisites(&["ip", "etcd", "etcdctl", "curl"]) {
        return;
    }
    let p = "etw";
    let tmp = TempDir::new(p);
    let ul = Ns::new(&format!("{p}ul"));
    ul.sh("ip link add ul0 type bridge && ip link set ul0 up && ip addr add 10.0.0.254/24 dev ul0");
    let _etcd = Etcd::start(&ul, &tmp.0);
    // Revisions made with etcdctl; the watch asked of the JSON gateway with curl (etcd lives in a namespace
    // this test process is not in), its answer read by weft's own parser.
    for i in 0..5 {
        ul.sh(&format!("ETCDCTL_API=3 etcdctl --endpoints {} put /weft/x{i} {i}", endpoints()));
    }
    let out = ul.sh(&format!("ETCDCTL_API=3 etcdctl --endpoints {} get /weft/x4 -w json", endpoints()));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let rev = v["header"]["revision"].as_i64().unwrap();
    ul.sh(&format!("ETCDCTL_API=3 etcdctl --endpoints {} compact {rev}", endpoints()));
    // The same request weft's watcher sends, from an old revision.
    let body =
        format!(r#"{{"create_request":{{"key":"L3dlZnQv","range_end":"L3dlZnQw","start_revision":{}}}}}"#, rev - 3);
    let out = ul.sh(&format!("timeout 3 curl -s -N -X POST http://10.0.0.254:23791/v3/watch -d '{body}' || true"));
    let first = out.lines().find(|l| l.contains("compact_revision")).unwrap_or_else(|| panic!("no compaction: {out}"));
    let v: serde_json::Value = serde_json::from_str(first).unwrap();
    assert_eq!(
        weft_control::etcd::parse_watch(&v),
        weft_control::etcd::WatchMsg::Compacted(rev),
        "weft's reading of etcd's answer"
    );
}

/// etcd with TLS, client certificates and authentication: hosts with the CA, a client certificate and the
/// right password find each other; a host with a wrong password, and one without a client certificate, are
/// refused with a log line that says which.
#[test]
fn etcd_over_tls_with_client_certificates_and_a_password() {
    if !prerequisites(&["ip", "ping", "etcd", "etcdctl", "openssl"]) {
        return;
    }
    let p = "ets";
    let tmp = TempDir::new(p);
    let ul = Ns::new(&format!("{p}ul"));
    ul.sh("ip link add ul0 type bridge && ip link set ul0 up && ip addr add 10.0.0.254/24 dev ul0");
    let pki = test_pki(&tmp.path("pki"));
    let f = |n: &str| pki.join(n).display().to_string();
    let url = "https://10.0.0.254:23790";
    let log = std::fs::File::create(tmp.path("etcd.log")).unwrap();
    let mut etcd = Command::new("ip")
        .args(["netns", "exec", &ul.name, "etcd", "--name", "s1"])
        .arg("--data-dir")
        .arg(tmp.path("s1"))
        .args(["--listen-client-urls", url, "--advertise-client-urls", url])
        .args([
            "--listen-peer-urls",
            "http://127.0.0.1:23800",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:23800",
        ])
        .args(["--initial-cluster", "s1=http://127.0.0.1:23800"])
        .args(["--cert-file", &f("server.crt"), "--key-file", &f("server.key")])
        .args(["--trusted-ca-file", &f("ca.crt"), "--client-cert-auth"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("cannot start etcd");
    let ctl = format!(
        "ETCDCTL_API=3 etcdctl --endpoints {url} --cacert {} --cert {} --key {}",
        f("ca.crt"),
        f("client.crt"),
        f("client.key")
    );
    wait_for("etcd over TLS is healthy", 30, || ul.run(&format!("{ctl} endpoint health")).status.success());
    // Authentication: root, and a user weft that may read and write under /weft/ only.
    // Each host an etcd user of its own, that may read every key and write only under its own prefix
    // (/weft/host/<its VTEP>/): no host can speak for another.
    ul.sh(&format!("{ctl} user add root:root-pw-1"));
    for i in 1..=4 {
        for cmd in [
            format!("user add weft-{i}:weft-pw-{i}"),
            format!("role add weft-{i}"),
            format!("role grant-permission weft-{i} --prefix=true read /weft/"),
            format!("role grant-permission weft-{i} --prefix=true readwrite /weft/host/10.0.0.{i}/"),
            format!("user grant-role weft-{i} weft-{i}"),
        ] {
            ul.sh(&format!("{ctl} {cmd}"));
        }
    }
    ul.sh(&format!("{ctl} auth enable"));
    let tls_settings = |i: u8, password: &str, with_cert: bool| {
        let mut s = format!(
            "other_config:control-plane=etcd other_config:etcd-endpoints={url} other_config:etcd-ttl={TTL} \
             other_config:etcd-ca-cert={} other_config:etcd-user=weft-{i} other_config:etcd-password={password}",
            f("ca.crt")
        );
        if with_cert {
            s += &format!(" other_config:etcd-cert={} other_config:etcd-key={}", f("client.crt"), f("client.key"));
        }
        s
    };
    let hosts: Vec<Host> =
        [(1u8, "weft-pw-1", true), (2, "weft-pw-2", true), (3, "wrong-pw", true), (4, "weft-pw-4", false)]
            .into_iter()
            .map(|(i, password, cert)| host_with(p, i, &ul, &tmp, &tls_settings(i, password, cert)))
            .collect();
    // The two well-configured hosts find each other and their endpoints ping.
    for (a, b, vtep) in [(0, 1, "10.0.0.2"), (1, 0, "10.0.0.1")] {
        wait_for(&format!("h{} learns h{}'s MAC over TLS", a + 1, b + 1), 20, || {
            entry(&hosts[a].w, &hosts[b].mac).is_some_and(|e| e["origin"] == "etcd" && e["remote_ip"] == vtep)
        });
    }
    hosts[0].ep.ping("10.100.0.2", 3);
    // A wrong password: refused, and the log and show say so.
    wait_for("h3 reports the refused password", 20, || {
        hosts[2].w.log().contains("etcd refused user \"weft-3\"")
            && hosts[2].w.weft("show").contains("etcd refused user")
    });
    // No client certificate: the TLS handshake fails, and the log says so.
    wait_for("h4 reports the refused TLS session", 20, || hosts[3].w.weft("show").contains("refused the TLS session"));
    assert!(hosts[3].w.log().contains("etcd-cert and etcd-key"), "{}", hosts[3].w.log());
    for h in &hosts[2..] {
        assert!(entry(&h.w, &hosts[0].mac).is_none(), "a refused host learned routes");
    }
    let keys = ul.sh(&format!("{ctl} --user root:root-pw-1 get /weft/ --prefix --keys-only"));
    assert!(keys.contains("/weft/host/10.0.0.1/vni/100/vtep") && !keys.contains("10.0.0.3"), "{keys}");
    for h in &hosts {
        assert!(!h.w.log().contains("weft-pw-") && !h.w.weft("show").contains("weft-pw-"));
    }
    // Host 1's credentials cannot write a key that speaks for host 2.
    let forged = ul.run(&format!("{ctl} --user weft-1:weft-pw-1 put /weft/host/10.0.0.2/vni/100/vtep '{{}}'"));
    assert!(!forged.status.success(), "host 1 wrote under host 2's prefix");
    assert!(String::from_utf8_lossy(&forged.stderr).contains("permission denied"));
    drop(hosts);
    let _ = etcd.kill();
    let _ = etcd.wait();
}
