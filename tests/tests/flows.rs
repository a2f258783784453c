//! Flow tables in `ovs-ofctl` syntax steering traffic between sites: three sites in a hub and spoke (site 1
//! tunnels to sites 2 and 3, which tunnel only to site 1), VXLAN on dst_port 8472, each site a namespace with
//! an IPv4 /24 and an IPv6 /64 inside one /16 and one /48, so every site is on-link for every other one.
//! ARP and ND multicast are flooded; unicast is routed by destination subnet with `output:N`.

use weft_interop::*;

fn site_v4(k: usize) -> String {
    format!("172.31.{k}.1")
}

fn site_v6(k: usize) -> String {
    format!("2001:db8:0:{k}::1")
}

#[test]
fn hub_and_spoke_routed_by_flows() {
    let p = "fl";
    if !prerequisites(&["ip", "ping"]) {
        return;
    }
    let tmp = TempDir::new(p);
    // The underlay: three hosts on one segment.
    let seg = Ns::new(&format!("{p}seg"));
    seg.sh("ip link add sw type bridge && ip link set sw up");
    let hosts: Vec<Ns> = (1..=3).map(|k| Ns::new(&format!("{p}h{k}"))).collect();
    for (i, h) in hosts.iter().enumerate() {
        veth(h, "u", Some(&format!("192.0.2.{}/24", 11 + i)), &seg, &format!("s{i}"), None);
        seg.sh(&format!("ip link set s{i} master sw"));
    }
    let ws: Vec<Weftd> = hosts.iter().enumerate().map(|(i, h)| Weftd::start(h, &tmp.path(&format!("w{i}")))).collect();
    let mut sites = Vec::new();
    for (i, w) in ws.iter().enumerate() {
        let k = i + 1;
        w.weft("add-br sw1");
        let port = format!("{p}p{k}");
        let ns = Ns::new(&format!("{p}site{k}"));
        veth(&ns, "eth0", None, &hosts[i], &port, None);
        ns.sh(&format!(
            "ip link set eth0 mtu 1450 up && ip addr add {}/16 dev eth0 && ip addr add {}/48 dev eth0 nodad",
            site_v4(k),
            site_v6(k)
        ));
        w.weft(&format!("add-port sw1 {port}"));
        sites.push(ns);
    }
    let tunnel = |w: &Weftd, name: &str, remote: &str| {
        w.weft(&format!(
            "add-port sw1 {name} -- set interface {name} type=vxlan options:remote_ip={remote} options:key=77 \
             options:dst_port=8472"
        ))
    };
    // Site 1 (ports: 1 = its LAN, 2 = to site 2, 3 = to site 3); sites 2 and 3 (1 = LAN, 2 = to site 1).
    tunnel(&ws[0], "vx2", "192.0.2.12");
    tunnel(&ws[0], "vx3", "192.0.2.13");
    tunnel(&ws[1], "vx1", "192.0.2.11");
    tunnel(&ws[2], "vx1", "192.0.2.11");
    let hub_flows = tmp.path("hub.flows");
    std::fs::write(
        &hub_flows,
        "# site 1: the hub\n\
         arp,actions=flood\n\
         icmp6,ipv6_dst=ff00::/8,actions=flood\n\
         ip,nw_dst=172.31.1.0/24,actions=output:1\n\
         ip,nw_dst=172.31.2.0/24,actions=output:vx2\n\
         ip,nw_dst=172.31.3.0/24,actions=output:3\n\
         ip6,ipv6_dst=2001:db8:0:1::/64,actions=output:1\n\
         ip6,ipv6_dst=2001:db8:0:2::/64,actions=output:2\n\
         ip6,ipv6_dst=2001:db8:0:3::/64,actions=output:3\n",
    )
    .unwrap();
    ws[0].weft("del-flows sw1");
    ws[0].weft(&format!("add-flows sw1 {}", hub_flows.display()));
    for (i, w) in ws.iter().enumerate().skip(1) {
        let k = i + 1;
        w.weft("del-flows sw1");
        w.weft("add-flow sw1 arp,actions=flood");
        w.weft("add-flow sw1 icmp6,ipv6_dst=ff00::/8,actions=flood");
        w.weft(&format!("add-flow sw1 ip,nw_dst=172.31.{k}.0/24,actions=output:1"));
        w.weft(&format!("add-flow sw1 ip6,ipv6_dst=2001:db8:0:{k}::/64,actions=output:1"));
        // Everything else goes to the hub.
        w.weft("add-flow sw1 priority=10,ip,actions=output:2");
        w.weft("add-flow sw1 priority=10,ip6,actions=output:2");
    }
    let dump = ws[0].weft("dump-flows sw1");
    assert_eq!(dump.lines().count(), 8, "{dump}");
    assert!(dump.contains("ip,nw_dst=172.31.2.0/24 actions=output:2"), "names become numbers:\n{dump}");

    for a in 1..=3 {
        for b in 1..=3 {
            if a != b {
                sites[a - 1].ping(&site_v4(b), 2);
                sites[a - 1].ping(&site_v6(b), 2);
            }
        }
    }
    // Site 3 got 2 pings from each of sites 1 and 2 through the hub's flow to port 3 (and replies back).
    let flows = ws[0].json("dump-flows sw1");
    let to3 = flows.as_array().unwrap().iter().find(|f| f["match"] == "ip,nw_dst=172.31.3.0/24").unwrap();
    assert!(to3["n_packets"].as_u64().unwrap() >= 4, "{to3}");
    assert!(to3["n_bytes"].as_u64().unwrap() >= 4 * 98, "{to3}");
    let arp = flows.as_array().unwrap().iter().find(|f| f["match"] == "arp").unwrap();
    assert!(arp["n_packets"].as_u64().unwrap() >= 2, "{arp}");

    // del-flows with a match removes what it covers (strict: only the exact flow); routes go with them.
    ws[0].weft("del-flows --strict sw1 ip,nw_dst=172.31.3.0/16");
    assert_eq!(ws[0].weft("dump-flows sw1").lines().count(), 8, "strict del with another match removes nothing");
    ws[0].weft("del-flows sw1 ip,nw_dst=172.31.3.0/24");
    assert_eq!(ws[0].weft("dump-flows sw1").lines().count(), 7);
    let lost = sites[0].run(&format!("ping -c 2 -i 0.3 -W 1 {}", site_v4(3)));
    assert!(!lost.status.success(), "site 3 reachable without its flow");
    // mod-flows changes actions in place: send site 3's traffic there again by turning the flood rule's
    // neighbour into a route.
    ws[0].weft("add-flow sw1 priority=200,ip,nw_dst=172.31.3.0/24,actions=drop");
    ws[0].weft("mod-flows --strict sw1 priority=200,ip,nw_dst=172.31.3.0/24,actions=output:3");
    sites[0].ping(&site_v4(3), 2);
    let (ok, _, err) = ws[0].try_weft("add-flow sw1 ip,nw_dst=172.31.3.0/33,actions=output:3");
    assert!(!ok && err.contains("nw_dst=172.31.3.0/33") && err.contains("0..=32"), "{err}");
    // Flows survive a crash of the daemon.
    drop(seg);
}

#[test]
fn new_bridge_has_the_normal_flow_and_flows_survive_restart() {
    let p = "fn";
    let Some(OneHost { tmp: _tmp, h: _h, mut w }) = one_host(p, &["ip"]) else { return };
    w.weft("add-br sw1");
    let dump = w.weft("dump-flows sw1");
    // (The bridge's own port may already have sent a frame through it: the default flow counts, as OVS's does.)
    assert!(
        dump.contains("table=0, n_packets=")
            && dump.ends_with("priority=0 actions=NORMAL\n")
            && dump.lines().count() == 1,
        "{dump}"
    );
    w.weft("add-flow sw1 'table=0,priority=5,cookie=0x2a,hard_timeout=3600,tcp,tp_dst=80,actions=resubmit(,1)'");
    w.weft("add-flow sw1 table=1,dl_vlan=10,actions=strip_vlan,NORMAL");
    w.kill9();
    w.restart();
    let dump = w.weft("dump-flows sw1");
    assert_eq!(dump.lines().count(), 3, "{dump}");
    assert!(dump.contains("cookie=0x2a") && dump.contains("hard_timeout=3600"), "{dump}");
    assert!(dump.contains("table=1") && dump.contains("dl_vlan=10 actions=pop_vlan,NORMAL"), "{dump}");
    // Timeouts expire.
    w.weft("add-flow sw1 priority=7,udp,hard_timeout=1,actions=drop");
    assert!(w.weft("dump-flows sw1").contains("hard_timeout=1"));
    std::thread::sleep(std::time::Duration::from_millis(2500));
    assert!(!w.weft("dump-flows sw1").contains("hard_timeout=1"), "hard_timeout did not expire the flow");
}
