//! VLANs: a VLAN switch (Open vSwitch's userspace datapath: this kernel has neither 802.1Q sub-interfaces nor
//! VLAN filtering on its bridge) sends tagged frames to a trunk port of one weft host; access ports (TAPs) on
//! the other; a VXLAN tunnel between them carries the tagged frames unchanged; learning is per VLAN.
//!
//! ```text
//!  [L10] [L20] [L30]                                                                      t10 (tag=10) → [R10]
//!    └─ access ports ─ [SW: OVS br-l] eth0 ──veth── P1 (trunks=10,20) [H1 sw1] ══vxlan══ [H2 sw1]
//!                                                                                         t20 (tag=20) → [R20]
//! ```
//! L10 and L20 have the same MAC address, so weft must keep one entry per VLAN.

use weft_interop::*;

#[test]
fn trunk_and_access_ports_across_a_tunnel() {
    let p = "vl";
    let Some(TwoHosts { tmp, u, w1, w2 }) =
        two_hosts(p, &["ip", "ping", "tcpdump", "tshark", "ovs-vswitchd", "ovsdb-server", "ovs-vsctl"])
    else {
        return;
    };

    // Left: a VLAN switch with one access port per VLAN and a trunk towards weft. weft's port carries VLANs
    // 10 and 20 only.
    let sw = Ns::new(&format!("{p}sw"));
    let p1 = format!("{p}p1");
    veth(&sw, "eth0", None, &u.h1, &p1, None);
    let ovs = Ovs::start(&sw, tmp.path("ovs"));
    ovs.vsctl("add-br br-l -- set bridge br-l datapath_type=netdev");
    ovs.vsctl("add-port br-l eth0");
    let shared_mac = "02:00:00:00:10:20";
    let mut lefts = Vec::new();
    for (vid, addr) in [(10, "10.10.0.1"), (20, "10.20.0.1"), (30, "10.30.0.1")] {
        let ns = Ns::new(&format!("{p}l{vid}"));
        let port = format!("{p}a{vid}");
        veth(&ns, "eth0", None, &sw, &port, None);
        let mac = if vid == 30 { String::new() } else { format!("address {shared_mac}") };
        ns.sh(&format!("ip link set eth0 mtu 1400 {mac} && ip addr add {addr}/24 dev eth0"));
        ovs.vsctl(&format!("add-port br-l {port} tag={vid}"));
        lefts.push(ns);
    }
    let (l10, l20, l30) = (&lefts[0], &lefts[1], &lefts[2]);
    w1.weft("add-br sw1");
    w1.weft(&format!("add-port sw1 {p1} trunks=10,20"));
    w1.weft("add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.12 options:key=100");

    // Right: two access ports. R20 also holds R10's address: if VLAN 10 leaked into VLAN 20, it would answer.
    w2.weft("add-br sw1");
    w2.weft("add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.11 options:key=100");
    let (t10, t20) = (format!("{p}t10"), format!("{p}t20"));
    w2.weft(&format!("add-port sw1 {t10} tag=10 -- set interface {t10} type=tap"));
    w2.weft(&format!("add-port sw1 {t20} -- set interface {t20} type=tap -- set port {t20} tag=20"));
    let r10 = Ns::new(&format!("{p}r10"));
    let r20 = Ns::new(&format!("{p}r20"));
    for (ns, tap, addrs) in [(&r10, &t10, vec!["10.10.0.2"]), (&r20, &t20, vec!["10.20.0.2", "10.10.0.2"])] {
        u.h2.sh(&format!("ip link set {tap} netns {}", ns.name));
        for a in addrs {
            ns.sh(&format!("ip addr add {a}/24 dev {tap}"));
        }
        ns.sh(&format!("ip link set {tap} up"));
    }
    let show = w2.json("show");
    let tags: Vec<_> = show["bridges"][0]["ports"].as_array().unwrap().iter().map(|p| p["tag"].clone()).collect();
    assert_eq!(tags, [serde_json::Value::Null, serde_json::Value::Null, 10.into(), 20.into()], "{show}");

    let pcap = tmp.path("underlay.pcap");
    let cap = Capture::start(&u.h1, &u.u1, pcap.clone());
    l10.ping("10.10.0.2", 3);
    l20.ping("10.20.0.2", 3);
    r10.ping("10.10.0.1", 2);
    r20.ping("10.20.0.1", 2);
    cap.finish();

    // VLAN 10's answer came from R10, and R20 never heard VLAN 10's ARP.
    let r10_mac = mac_of(&r10, &t10);
    let neigh = l10.sh("ip neigh show 10.10.0.2 dev eth0");
    assert!(neigh.contains(&r10_mac), "10.10.0.2 should be R10 ({r10_mac}): {neigh}");
    let r20_neigh = r20.sh("ip neigh show");
    assert!(!r20_neigh.contains("10.10.0.1"), "VLAN 10 leaked into VLAN 20: {r20_neigh}");

    // VLAN 30 is not on the trunk: dropped and counted at the port.
    let lost = l30.run("ping -c 2 -i 0.3 -W 1 10.30.0.2");
    assert!(!lost.status.success());
    assert!(w1.drops("sw1", &p1, "vlan") >= 1, "VLAN 30 frames not counted as vlan drops");

    // The tunnel carried the 802.1Q tags unchanged.
    let out = sh(&format!("tshark -r {} -Y 'vxlan && vlan' -T fields -e vlan.id", pcap.display()));
    let ids: std::collections::BTreeSet<&str> = out.lines().collect();
    assert_eq!(ids.into_iter().collect::<Vec<_>>(), ["10", "20"], "inner VLAN IDs on the wire:\n{out}");
    assert_decode_matches_tshark(&pcap, &[]);

    // Learning is per VLAN: the MAC L10 and L20 share is in both VLANs, behind the tunnel.
    let fdb = w2.json("fdb show sw1");
    let vlans: Vec<u64> = fdb
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["mac"] == shared_mac && e["port"] == "vx1")
        .map(|e| e["vlan"].as_u64().unwrap())
        .collect();
    assert_eq!(vlans.len(), 2, "{shared_mac} once per VLAN: {fdb}");
    assert!(vlans.contains(&10) && vlans.contains(&20), "{fdb}");
    let r10_entry = fdb.as_array().unwrap().iter().find(|e| e["mac"] == r10_mac.as_str()).expect("R10 learned");
    assert_eq!((r10_entry["vlan"].as_u64(), r10_entry["port"].as_str()), (Some(10), Some(t10.as_str())));

    // Moving R10's port to VLAN 20 cuts it off from VLAN 10, live.
    w2.weft(&format!("set port {t10} tag=20"));
    l10.sh("ip neigh flush dev eth0");
    let cut = l10.run("ping -c 2 -i 0.3 -W 1 10.10.0.2");
    let text = String::from_utf8_lossy(&cut.stdout);
    let neigh = l10.sh("ip neigh show 10.10.0.2 dev eth0");
    assert!(!neigh.contains(&r10_mac), "R10 still reachable in VLAN 10 after retagging: {text} {neigh}");
}
