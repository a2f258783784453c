//! `weft trace`: the verdict for a packet equals what the datapath then does with the real packet, and tracing
//! sends, learns and counts nothing.

use weft_interop::*;

fn tx(w: &Weftd, port: &str) -> u64 {
    let v = w.json("dump-ports sw1");
    v.as_array().unwrap().iter().find(|p| p["port"] == port).map(|p| p["tx_packets"].as_u64().unwrap()).unwrap()
}

fn outputs(w: &Weftd, args: &str) -> Vec<String> {
    let t = w.json(&format!("trace sw1 {args}"));
    t["outputs"].as_array().unwrap().iter().map(|o| o.as_str().unwrap().to_string()).collect()
}

#[test]
fn trace_predicts_forwarding() {
    let p = "tr";
    if !prerequisites(&["ip", "ping"]) {
        return;
    }
    let tmp = TempDir::new(p);
    let u = underlay(p);
    let w = Weftd::start(&u.h1, &tmp.path("w"));
    w.weft("add-br sw1");
    let (p1, p2) = (format!("{p}p1"), format!("{p}p2"));
    let left = endpoint_veth(&format!("{p}l"), &u.h1, &p1, V4_LEFT, V6_LEFT);
    let right = endpoint_veth(&format!("{p}r"), &u.h1, &p2, V4_RIGHT, V6_RIGHT);
    w.weft(&format!("add-port sw1 {p1}"));
    w.weft(&format!("add-port sw1 {p2}"));
    w.weft("add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.12 options:key=42");
    // IPv4 only, so no IPv6 housekeeping crosses the bridge while counters are compared.
    for ns in [&left, &right] {
        ns.sh("sysctl -qw net.ipv6.conf.eth0.disable_ipv6=1");
    }
    u.h1.sh("sysctl -qw net.ipv6.conf.sw1.disable_ipv6=1");
    let (lmac, rmac) = (mac_of(&left, "eth0"), mac_of(&right, "eth0"));
    let flow = |dst: &str| format!("in_port={p1},dl_src={lmac},dl_dst={dst},ip,nw_src={V4_LEFT},nw_dst={V4_RIGHT}");

    // Nothing learned: NORMAL floods, to the other ports and through the tunnel to its VTEP.
    w.weft("fdb flush sw1");
    let before = tx(&w, &p2);
    let t = w.json(&format!("trace sw1 {}", flow(&rmac)));
    let mut outs = outputs(&w, &flow(&rmac));
    outs.sort();
    assert_eq!(outs, ["sw1".to_string(), p2.clone(), "vx1".to_string()], "{t}");
    let tunnel = t["steps"].as_array().unwrap().iter().find(|s| s["output"] == "vx1").unwrap();
    assert_eq!((tunnel["remote_ip"].as_str(), tunnel["vni"].as_u64()), (Some("192.0.2.12"), Some(42)));
    let sport = tunnel["src_port"].as_u64().unwrap();
    assert!((32768..=60999).contains(&sport), "outer source port {sport}");
    // A flood to several remotes (head-end replication), and to a remote_ip=flow port the control plane has
    // named no VTEP for yet: the trace lists what it would use, never "0.0.0.0".
    w.weft("add-port sw1 vx2 -- set interface vx2 type=vxlan options:remote_ip=192.0.2.13,192.0.2.14 options:key=43");
    w.weft("add-port sw1 vxf -- set interface vxf type=vxlan options:remote_ip=flow options:key=44");
    let t = w.json(&format!("trace sw1 {}", flow(&rmac)));
    let step = |port: &str| t["steps"].as_array().unwrap().iter().find(|s| s["output"] == port).unwrap().clone();
    assert_eq!(step("vx2")["remote_ips"], serde_json::json!(["192.0.2.13", "192.0.2.14"]), "{t}");
    assert_eq!(step("vxf")["remote_ips"], serde_json::json!([]), "{t}");
    let text = w.weft(&format!("trace sw1 {}", flow(&rmac)));
    assert!(text.contains("tunnel to 192.0.2.13, 192.0.2.14 VNI 43") && text.contains("no VTEP yet"), "{text}");
    assert!(!text.contains("0.0.0.0"), "{text}");
    w.weft("del-port sw1 vx2");
    w.weft("del-port sw1 vxf");
    assert_eq!(tx(&w, &p2), before, "a trace sends nothing");
    assert!(
        w.json("fdb show sw1").as_array().unwrap().iter().all(|e| e["mac"] != lmac.as_str()),
        "a trace learns nothing"
    );

    // The MTU check: a 1448-byte IPv4 packet with DF fits VXLAN's 1450 untagged, not with a VLAN tag pushed.
    let ipv4 = |len: usize| format!("4500{len:04x}00004000401100000a0000010a000002{}", "00".repeat(len - 20));
    let bcast = format!("ffffffffffff{}", lmac.replace(':', ""));
    let vx1_too_big = |hex: String| -> serde_json::Value {
        let t = w.json(&format!("trace sw1 in_port={p1} --packet {hex}"));
        t["steps"].as_array().unwrap().iter().find(|s| s["output"] == "vx1").unwrap()["too_big"].clone()
    };
    assert_eq!(vx1_too_big(format!("{bcast}0800{}", ipv4(1448))), serde_json::Value::Null);
    assert_eq!(vx1_too_big(format!("{bcast}8100000a0800{}", ipv4(1448))), 1446, "the tag takes 4 bytes");

    // After real traffic both MACs are known: unicast goes to one port, as the real packets do.
    left.ping(V4_RIGHT, 2);
    assert_eq!(outputs(&w, &flow(&rmac)), std::slice::from_ref(&p2));
    let (p2_before, vx_before) = (tx(&w, &p2), tx(&w, "vx1"));
    left.ping(V4_RIGHT, 3);
    assert!(tx(&w, &p2) >= p2_before + 3);
    assert_eq!(tx(&w, "vx1"), vx_before, "the datapath did what the trace said: nothing through the tunnel");

    // With flows: the matching rule is named, and its counter counts the real packets the trace predicted.
    w.weft(&format!("add-flow sw1 priority=100,ip,nw_dst={V4_RIGHT},actions=output:{p2}"));
    w.weft(&format!("add-flow sw1 priority=90,ip,nw_dst={V4_LEFT},actions=output:{p1}"));
    w.weft("add-flow sw1 priority=50,ip,actions=drop");
    let t = w.json(&format!("trace sw1 {}", flow(&rmac)));
    let table0 = t["steps"].as_array().unwrap().iter().find(|s| s["table"] == 0).unwrap();
    assert!(table0["flow"].as_str().unwrap().contains(&format!("nw_dst={V4_RIGHT}")), "{t}");
    assert_eq!(outputs(&w, &flow(&rmac)), std::slice::from_ref(&p2));
    let other = format!("in_port={p1},ip,nw_dst=198.51.100.99");
    assert!(outputs(&w, &other).is_empty(), "the drop rule wins for other destinations");
    let text = w.weft(&format!("trace sw1 {other}"));
    assert!(text.contains("priority=50,ip actions=drop") && text.contains("verdict: dropped"), "{text}");
    // And so does the datapath, counting why.
    left.sh("ip neigh replace 198.51.100.99 lladdr 02:00:00:00:00:99 dev eth0");
    let _ = left.run("ping -c 2 -i 0.2 -W 1 198.51.100.99");
    assert_eq!(w.drops("sw1", &p1, "flow_drop"), 2, "{}", w.weft("dump-drops sw1"));
    left.ping(V4_RIGHT, 2);
    let flows = w.json("dump-flows sw1");
    let f = flows.as_array().unwrap().iter().find(|f| f["priority"] == 100).unwrap();
    assert!(f["n_packets"].as_u64().unwrap() >= 2, "{f}");
    // A raw frame works too, and a missing in_port is refused.
    let hex: String = format!("{}{}0806", rmac.replace(':', ""), lmac.replace(':', ""));
    let raw = w.json(&format!("trace sw1 in_port={p1} --packet {hex}{}", "00".repeat(46)));
    // ARP matches none of the IP flows: the bridge's first flow, priority=0 actions=NORMAL, sends it to the
    // port where its destination was learned.
    assert_eq!(raw["outputs"], serde_json::json!([p2]), "{raw}");
    assert_eq!(raw["steps"][1]["flow"], "priority=0 actions=NORMAL", "{raw}");
    let (ok, _, err) = w.try_weft("trace sw1 ip,nw_dst=10.0.0.1");
    assert!(!ok && err.contains("in_port"), "{err}");
}
