//! weft's BGP EVPN control plane against FRR (Debian `frr` 8.4): an FRR route reflector, a Linux kernel VTEP
//! driven by FRR (`advertise-all-vni`), and two weft hosts.
//!
//! ```text
//!   namespace UL: bridge ul0 joining
//!     rr  10.0.0.254  FRR route reflector (bgp listen range 10.0.0.0/24)
//!     h1  10.0.0.1    FRR + kernel vxlan100 (VNI 100, nolearning) in bridge br100, endpoint e1 10.100.0.1
//!     w2  10.0.0.2    weftd: br0 = TAP (endpoint e2 10.100.0.2) + vxlan remote_ip=flow key=100
//!     w3  10.0.0.3    weftd, the same (endpoint e3 10.100.0.3)
//! ```

use std::time::{Duration, Instant};
use weft_interop::*;

/// One FRR instance (zebra + bgpd) in a namespace, with its own pathspace (`-N`), stopped by PID on drop.
struct Frr {
    name: String,
}

impl Frr {
    fn start(ns: &Ns, conf: &str) -> Frr {
        let n = &ns.name;
        sh(&format!("install -d -o frr -g frr -m 755 /etc/frr/{n} /var/run/frr/{n}"));
        std::fs::write(format!("/etc/frr/{n}/frr.conf"), conf).unwrap();
        sh(&format!("chown frr:frr /etc/frr/{n}/frr.conf && chmod 640 /etc/frr/{n}/frr.conf"));
        sh(&format!("touch /etc/frr/{n}/vtysh.conf"));
        let frr = Frr { name: n.clone() };
        sh(&format!("ip netns exec {n} /usr/lib/frr/zebra -d -N {n} -F traditional -i /var/run/frr/{n}/zebra.pid"));
        frr.wait_for_pid("zebra");
        sh(&format!("ip netns exec {n} /usr/lib/frr/bgpd -d -N {n} -F traditional -i /var/run/frr/{n}/bgpd.pid"));
        frr.wait_for_pid("bgpd");
        // Push the integrated configuration into the daemons (retry: the vty sockets appear a moment later).
        let deadline = Instant::now() + Duration::from_secs(10);
        while !run(&format!("vtysh -N {n} -b")).status.success() {
            assert!(Instant::now() < deadline, "vtysh -N {n} -b keeps failing");
            std::thread::sleep(Duration::from_millis(300));
        }
        frr
    }

    fn wait_for_pid(&self, daemon: &str) {
        let f = format!("/var/run/frr/{}/{daemon}.pid", self.name);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::read_to_string(&f).map_or(true, |s| s.trim().is_empty()) {
            assert!(Instant::now() < deadline, "{daemon} of {} did not start", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn vtysh(&self, cmd: &str) -> String {
        sh(&format!("vtysh -N {} -c '{cmd}'", self.name))
    }
}

impl Drop for Frr {
    fn drop(&mut self) {
        for d in ["bgpd", "zebra"] {
            let f = format!("/var/run/frr/{}/{d}.pid", self.name);
            if let Ok(pid) = std::fs::read_to_string(&f) {
                if let Ok(pid) = pid.trim().parse::<i32>() {
                    let _ = run(&format!("kill {pid}"));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        let _ = run(&format!("rm -rf /etc/frr/{0} /var/run/frr/{0}", self.name));
    }
}

fn rr_conf(n: &str) -> String {
    format!(
        "frr defaults traditional\nhostname rr\nlog file /var/run/frr/{n}/frr.log\n!\nrouter bgp 65000\n \
         bgp router-id 10.0.0.254\n bgp cluster-id 10.0.0.254\n no bgp default ipv4-unicast\n \
         bgp log-neighbor-changes\n neighbor VTEP peer-group\n neighbor VTEP remote-as 65000\n \
         bgp listen range 10.0.0.0/24 peer-group VTEP\n !\n address-family l2vpn evpn\n  neighbor VTEP activate\n  \
         neighbor VTEP route-reflector-client\n exit-address-family\n!\n"
    )
}

fn host_conf(n: &str) -> String {
    format!(
        "frr defaults traditional\nhostname h1\nlog file /var/run/frr/{n}/frr.log\n!\nrouter bgp 65000\n \
         bgp router-id 10.0.0.1\n no bgp default ipv4-unicast\n bgp log-neighbor-changes\n \
         neighbor 10.0.0.254 remote-as 65000\n !\n address-family l2vpn evpn\n  neighbor 10.0.0.254 activate\n  \
         advertise-all-vni\n exit-address-family\n!\n"
    )
}

fn attach(p: &str, ns: &Ns, ul: &Ns, i: u8) {
    sh(&format!("ip link add eth0 netns {} type veth peer name {p}v{i} netns {}", ns.name, ul.name));
    ul.sh(&format!("ip link set {p}v{i} master ul0 up"));
    ns.sh(&format!("ip addr add 10.0.0.{i}/24 dev eth0 && ip link set eth0 up"));
}

fn weft_entry(w: &Weftd, mac: &str) -> Option<serde_json::Value> {
    w.json("fdb show br0").as_array().unwrap().iter().find(|e| e["mac"] == mac).cloned()
}

#[test]
fn weft_and_a_kernel_vtep_meet_through_an_frr_route_reflector() {
    if !prerequisites(&["ip", "ping", "bridge", "vtysh", "/usr/lib/frr/bgpd", "/usr/lib/frr/zebra"]) {
        return;
    }
    let p = "evp";
    let tmp = TempDir::new(p);
    let ul = Ns::new(&format!("{p}ul"));
    ul.sh("ip link add ul0 type bridge && ip link set ul0 up");
    let rr_ns = Ns::new(&format!("{p}rr"));
    attach(p, &rr_ns, &ul, 254);
    let h1 = Ns::new(&format!("{p}h1"));
    attach(p, &h1, &ul, 1);
    // The kernel VTEP, as in FRR's EVPN guides: a bridge with a VXLAN device that does not learn.
    h1.sh("ip link add br100 type bridge && ip link set br100 addrgenmode none");
    h1.sh("ip link add vxlan100 type vxlan id 100 local 10.0.0.1 dstport 4789 nolearning");
    h1.sh("ip link set vxlan100 master br100 addrgenmode none");
    h1.sh("ip link set vxlan100 type bridge_slave neigh_suppress off learning off");
    let e1 = Ns::new(&format!("{p}e1"));
    sh(&format!(
        "ip link add eth0 netns {} address 02:00:00:00:01:01 type veth peer name tap1 netns {}",
        e1.name, h1.name
    ));
    h1.sh("ip link set tap1 master br100 up && ip link set vxlan100 up && ip link set br100 up");
    e1.sh("ip addr add 10.100.0.1/24 dev eth0 && ip link set eth0 mtu 1450 up");

    let rr = Frr::start(&rr_ns, &rr_conf(&rr_ns.name));
    let h1_frr = Frr::start(&h1, &host_conf(&h1.name));

    let mut weft = Vec::new();
    let mut endpoints = Vec::new();
    for i in [2u8, 3] {
        let ns = Ns::new(&format!("{p}w{i}"));
        attach(p, &ns, &ul, i);
        let w = Weftd::start(&ns, &tmp.path(&format!("w{i}")));
        w.weft("add-br br0");
        let tap = format!("{p}t{i}");
        w.weft(&format!("add-port br0 {tap} -- set interface {tap} type=tap"));
        w.weft("add-port br0 vx -- set interface vx type=vxlan options:remote_ip=flow options:key=100");
        w.weft(&format!(
            "set bridge br0 other_config:control-plane=evpn other_config:bgp-asn=65000 \
             other_config:bgp-router-id=10.0.0.{i} other_config:bgp-peers=10.0.0.254"
        ));
        let ep = endpoint_tap(&format!("{p}e{i}"), &ns, &tap, &format!("10.100.0.{i}"), &format!("2001:db8:100::{i}"));
        let mac = mac_of(&ep, &tap);
        endpoints.push(ep);
        weft.push((ns, w, mac));
    }

    // Sessions up; weft's type-3 routes reach the kernel VTEP as flood entries towards weft's VTEPs.
    wait_for("both weft sessions established at the reflector", 30, || {
        let s = rr.vtysh("show bgp l2vpn evpn summary");
        s.matches("10.0.0.").count() >= 3 && !s.contains("Active") && !s.contains("Connect")
    });
    wait_for("h1 floods to both weft VTEPs", 20, || {
        let fdb = h1.sh("bridge fdb show dev vxlan100");
        fdb.contains("00:00:00:00:00:00 dst 10.0.0.2") && fdb.contains("00:00:00:00:00:00 dst 10.0.0.3")
    });
    // Traffic makes every MAC known somewhere; then every pair pings.
    let ping_all = |eps: &[&Ns]| {
        for a in eps {
            for b in eps.iter().filter(|b| b.name != a.name) {
                let dst = b.sh("ip -4 -o addr show | grep 10.100.0 | awk '{print $4}'");
                a.ping(dst.trim().trim_end_matches("/24"), 3);
            }
        }
    };
    let eps: Vec<&Ns> = std::iter::once(&e1).chain(endpoints.iter()).collect();
    ping_all(&eps);

    // The kernel host's FDB lists weft's MACs towards weft's VTEPs (installed by FRR: extern_learn).
    for (i, (_, _, mac)) in weft.iter().enumerate() {
        let vtep = format!("10.0.0.{}", i + 2);
        wait_for(&format!("h1's bridge fdb has {mac} dst {vtep}"), 20, || {
            let fdb = h1.sh("bridge fdb show dev vxlan100");
            fdb.lines().any(|l| l.starts_with(mac.as_str()) && l.contains(&format!("dst {vtep}")))
        });
    }
    // weft's FDB lists the kernel host's MAC (and the other weft host's) from EVPN.
    for (i, (_, w, _)) in weft.iter().enumerate() {
        wait_for("weft learns e1's MAC from EVPN", 20, || {
            weft_entry(w, "02:00:00:00:01:01").is_some_and(|e| e["origin"] == "evpn" && e["remote_ip"] == "10.0.0.1")
        });
        let (_, _, other_mac) = &weft[1 - i];
        let other_vtep = format!("10.0.0.{}", 3 - i);
        wait_for("weft learns the other weft host's MAC from EVPN", 20, || {
            weft_entry(w, other_mac).is_some_and(|e| e["origin"] == "evpn" && e["remote_ip"] == other_vtep.as_str())
        });
        let show = w.weft("show");
        assert!(show.contains("10.0.0.1 (evpn)") && show.contains(&format!("{other_vtep} (evpn)")), "{show}");
    }
    let routes = rr.vtysh("show bgp l2vpn evpn route");
    for (_, _, mac) in &weft {
        assert!(routes.contains(mac.as_str()), "reflector lacks {mac}:\n{routes}");
    }
    ping_all(&eps);
    // TCP between the kernel VTEP's endpoint and a weft host's, both ways, offloads left on: the kernel
    // sends its inner segments with partial checksums, which weft finishes.
    tcp_both_ways(&endpoints[0], &e1, &["10.100.0.1"], "between weft and the kernel VTEP");

    // Stopping a weft host withdraws its routes: they leave the reflector, the kernel host and the other weft.
    let mac3 = weft[1].2.clone();
    weft[1].1.kill9();
    let took = wait_for("w3's routes withdrawn everywhere", 20, || {
        let fdb = h1.sh("bridge fdb show dev vxlan100");
        !fdb.contains("dst 10.0.0.3") && weft_entry(&weft[0].1, &mac3).is_none()
    });
    eprintln!("w3's routes left h1 and w2 {:.1} s after it stopped", took.as_secs_f64());
    assert!(!rr.vtysh("show bgp l2vpn evpn route").contains(&mac3), "the reflector still has w3's MAC");
    ping_all(&eps[..2]);
    drop(h1_frr);
    drop(rr);
}

/// TCP MD5 (`other_config:bgp-password`, FRR's `neighbor … password`): the host with the reflector's password
/// establishes its session and its VNI reaches the reflector; the host with another password never gets a
/// session, and says why in `show` and in its log.
#[test]
fn bgp_sessions_with_a_password() {
    if !prerequisites(&["ip", "vtysh", "/usr/lib/frr/bgpd", "/usr/lib/frr/zebra"]) {
        return;
    }
    let p = "evm";
    let tmp = TempDir::new(p);
    let ul = Ns::new(&format!("{p}ul"));
    ul.sh("ip link add ul0 type bridge && ip link set ul0 up");
    let rr_ns = Ns::new(&format!("{p}rr"));
    attach(p, &rr_ns, &ul, 254);
    let conf = rr_conf(&rr_ns.name).replace(
        " neighbor VTEP remote-as 65000\n",
        " neighbor VTEP remote-as 65000\n neighbor VTEP password weft-bgp-secret-1\n",
    );
    let rr = Frr::start(&rr_ns, &conf);
    let mut hosts = Vec::new();
    for (i, password) in [(2u8, "weft-bgp-secret-1"), (3, "not-the-password")] {
        let ns = Ns::new(&format!("{p}w{i}"));
        attach(p, &ns, &ul, i);
        let w = Weftd::start(&ns, &tmp.path(&format!("w{i}")));
        w.weft("add-br br0");
        w.weft("add-port br0 vx -- set interface vx type=vxlan options:remote_ip=flow options:key=100");
        w.weft(&format!(
            "set bridge br0 other_config:control-plane=evpn other_config:bgp-asn=65000 \
             other_config:bgp-router-id=10.0.0.{i} other_config:bgp-peers=10.0.0.254 \
             other_config:bgp-password={password}"
        ));
        hosts.push((ns, w));
    }
    wait_for("w2's session with the password is established", 30, || {
        hosts[0].1.weft("show").contains("peer 10.0.0.254: established")
    });
    wait_for("w2's VNI 100 at the reflector", 20, || rr.vtysh("show bgp l2vpn evpn route").contains("10.0.0.2"));
    // The wrong password: no session, and weft says what to check.
    wait_for("w3 explains its failed connection", 30, || {
        hosts[1].1.weft("show").contains("bgp-password is set") && hosts[1].1.log().contains("bgp-password is set")
    });
    let summary = rr.vtysh("show bgp l2vpn evpn summary");
    assert!(!rr.vtysh("show bgp l2vpn evpn route").contains("10.0.0.3"), "w3 got routes in:\n{summary}");
    for (_, w) in &hosts {
        assert!(!w.log().contains("weft-bgp-secret-1") && !w.weft("show").contains("weft-bgp-secret-1"));
    }
    drop(rr);
}
