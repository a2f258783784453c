//! Patch ports: two bridges joined inside weftd, as Neutron's OVS agent joins `br-int` (the VMs, one local
//! VLAN per network) and `br-tun` (the tunnels, flows turning local VLANs into tunnel IDs and back). Two
//! hosts, each with both bridges, made with the commands people give `ovs-vsctl`; the hosts use different
//! local VLANs for the same network, as Neutron's agents do. Real TCP (offloads on) crosses both patches and
//! the VXLAN tunnel.
//!
//! ```text
//!  [L] ─ pa (tag=10) [H1 br-int] patch-tun ═ patch-int [H1 br-tun] vx ══ vxlan 100 ══ vx [H2 br-tun] … [H2 br-int] pb (tag=20) ─ [R]
//! ```

use weft_interop::*;

#[test]
fn bridges_joined_by_patch_ports_carry_tcp_through_vlan_and_tunnel_flows() {
    let p = "pp";
    let Some(TwoHosts { tmp: _tmp, u, w1, w2 }) = two_hosts(p, &["ip", "ping", "iperf3", "ethtool"]) else {
        return;
    };
    let mut ends = Vec::new();
    for (w, h, vlan, remote, name, v4, v6) in [
        (&w1, &u.h1, 10, "192.0.2.12", "ppl", "10.14.0.1", "2001:db8:14::1"),
        (&w2, &u.h2, 20, "192.0.2.11", "ppr", "10.14.0.2", "2001:db8:14::2"),
    ] {
        w.weft("add-br br-int");
        w.weft("add-br br-tun");
        w.weft(
            "add-port br-int patch-tun -- set interface patch-tun type=patch options:peer=patch-int \
             -- add-port br-tun patch-int -- set interface patch-int type=patch options:peer=patch-tun",
        );
        w.weft(&format!(
            "add-port br-tun vx -- set interface vx type=vxlan options:remote_ip={remote} options:key=100"
        ));
        // Neutron's br-tun: the local VLAN becomes tunnel ID 100 on the way out, and back on the way in.
        w.weft(&format!(
            "add-flow br-tun priority=1,in_port=patch-int,dl_vlan={vlan},actions=strip_vlan,set_tunnel:100,output:vx"
        ));
        w.weft(&format!(
            "add-flow br-tun priority=1,in_port=vx,tun_id=100,actions=mod_vlan_vid:{vlan},output:patch-int"
        ));
        w.weft("add-flow br-tun priority=0,actions=drop");
        let port = format!("{name}p");
        ends.push(endpoint_veth(name, h, &port, v4, v6));
        w.weft(&format!("add-port br-int {port} tag={vlan}"));
    }
    let show = w1.weft("show");
    assert!(show.contains("type: patch") && show.contains("options: {peer=\"patch-int\"}"), "{show}");
    let (left, right) = (&ends[0], &ends[1]);
    let offloads = left.sh("ethtool -k eth0");
    assert!(offloads.contains("tcp-segmentation-offload: on"), "{offloads}");
    left.ping("10.14.0.2", 3);
    right.ping("2001:db8:14::1", 3);
    for (dst, reverse) in [("10.14.0.2", ""), ("10.14.0.2", " -R"), ("2001:db8:14::2", "")] {
        let bps = iperf3_bps(left, right, dst, dst, 5201, reverse);
        assert!(bps > 50e6, "TCP to {dst}{reverse} across both patches and the tunnel: {bps} bit/s");
    }
    // Both patch ports counted what crossed them, both ways; the tunnel flows matched every packet.
    let ports = w1.json("dump-ports br-int");
    let tx = |name: &str, key: &str| -> u64 {
        ports.as_array().unwrap().iter().find(|p| p["port"] == name).map_or(0, |p| p[key].as_u64().unwrap_or(0))
    };
    assert!(tx("patch-tun", "tx_packets") > 1000 && tx("patch-tun", "rx_packets") > 1000, "{ports}");
    let flows = w1.weft("dump-flows br-tun");
    for line in flows.lines().filter(|l| l.contains("priority=1")) {
        let n: u64 =
            line.split("n_packets=").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).unwrap();
        assert!(n > 1000, "{line}");
    }
    // A patch port whose peer is missing is down and says why; removing the peer takes the link down.
    w1.weft("add-port br-int dangling -- set interface dangling type=patch options:peer=nowhere");
    let show = w1.json("show");
    let dangling = show.to_string();
    assert!(dangling.contains("its peer \\\"nowhere\\\" does not exist"), "{show}");
    // Refused, changing nothing: a patch port without a peer.
    let (ok, _, err) = w1.try_weft("add-port br-int lonely -- set interface lonely type=patch");
    assert!(!ok && err.contains("needs options:peer"), "{err}");
    assert!(!w1.weft("list-ports br-int").contains("lonely"));
}
