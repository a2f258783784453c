//! The OpenFlow pipeline beyond one table: registers, metadata and the packet mark written by `load`,
//! `move`, `set_field` and `write_metadata`, matched by later tables. Open vSwitch is the oracle: its
//! `ovs-ofctl parse-flow` says how each flow must print, and its `ovs-ofctl` programs and reads weft over
//! OpenFlow 1.3 with OVS's own encodings (NXM registers, NXAST_REG_LOAD/MOVE, WRITE_METADATA).

use weft_interop::*;

/// Flows with what weft now matches and does, each as a user would write it (OVS normalizes the text).
const FLOWS: &[&str] = &[
    "reg0=5,actions=load:1->reg1",
    "xreg1=0x500000006,metadata=0x5/0xf,pkt_mark=1,actions=load:1->xxreg0[3],set_field:3->tun_id,set_field:5/7->reg3,goto_table:3",
    "actions=move:reg0->reg1,move:NXM_NX_REG0[0..7]->NXM_OF_ETH_DST[8..15],load:0x123456789->xreg3",
    "reg1=0x10/0xf0,actions=load:0xa->NXM_OF_ETH_SRC[0..7],move:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15],mod_dl_src:00:00:00:00:00:01,set_field:00:00:00:00:00:02->eth_dst,write_metadata:0x5/0xff",
    "xxreg1=0x5,actions=drop",
    "xreg0=1/1,actions=output:1",
    "metadata=0x0/0xff,pkt_mark=0x5/0xf,reg15=0xffffffff,actions=resubmit(,2)",
    "tcp,tp_dst=80,tp_src=9,nw_tos=4,nw_dst=10.0.0.1,nw_src=10.0.0.2,dl_vlan=5,dl_dst=00:00:00:00:00:01,dl_src=00:00:00:00:00:02,in_port=1,metadata=1,reg1=2,reg0=1,pkt_mark=3,tun_id=5,actions=drop",
    "nw_proto=47,ip,nw_tos=8,nw_dst=1.2.3.4,in_port=1,dl_vlan=3,actions=drop",
    "dl_type=0x1234,dl_src=00:00:00:00:00:01,actions=drop",
    "arp,arp_op=1,arp_spa=1.1.1.1,arp_tpa=2.2.2.2,reg0=0,actions=flood",
    "icmp6,icmp_type=1,icmp_code=2,ipv6_src=2001:db8::1,ipv6_dst=2001:db8::/64,reg1=0,actions=normal",
    "ip,actions=move:NXM_OF_IP_SRC[]->NXM_NX_REG0[],move:NXM_OF_IP_DST[0..7]->NXM_NX_PKT_MARK[24..31]",
    "tcp,actions=move:NXM_OF_TCP_DST[]->NXM_NX_REG2[16..31],load:0->NXM_NX_REG10[12]",
    "actions=set_field:1->pkt_mark,set_field:0x1/0x3->metadata,set_field:0x5/0x5->reg3",
    "actions=load:0xffffffffffffffffffff->xxreg2[0..79],set_field:7->xxreg3,move:NXM_NX_XXREG0[]->NXM_NX_XXREG1[]",
    "in_port=1,actions=load:1->reg0,move:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15],write_metadata:0x10/0xff,goto_table:1",
    "udp,tp_src=53,actions=controller:128",
    "vlan_tci=0x1000/0x1000,tcp6,tp_src=1/0xff00,actions=strip_vlan,output:2",
    "actions=move:tun_id->xreg1,move:NXM_NX_TUN_ID[0..31]->NXM_NX_REG4[]",
    "tun_id=0x5/0xff,actions=set_tunnel:9,output:1",
    "actions=output:NXM_NX_REG0,output:reg1[16..31],output:NXM_NX_REG0[3..5],output:in_port",
    "dl_vlan_pcp=7,dl_vlan=5,actions=drop",
    "vlan_pcp=3,ip,ip_dscp=8,actions=drop",
    "in_port=2 actions=resubmit:1,resubmit(2),resubmit(,3),resubmit(2,3) output:1",
    "actions=resubmit(,1),exit,output:2",
    "actions=note:41.42.43,output:1,note:00.01.02.03.04.05.06.07,note",
    "importance=7,ip,actions=enqueue:1:2,set_queue:5,output:2,pop_queue",
    "tcp,actions=output:1,clear_actions,write_metadata:1,goto_table:2",
    "actions=set_tunnel64:0x100000000,set_tunnel:0x10,resubmit(1,2)",
    "ipv6,ipv6_label=5,nw_ttl=3,nw_ecn=1,actions=set_field:2001:db8::1->ipv6_src,dec_ttl",
    "udp,actions=mod_tp_src:80,mod_nw_dst:10.0.0.2,set_field:1->nw_ecn,mod_nw_tos:8,mod_nw_ttl:5",
    "arp,arp_sha=01:00:00:00:00:01,actions=set_field:2->arp_op,set_field:00:00:00:00:00:01->arp_tha",
    "icmp6,icmp_type=136,nd_target=2001:db8::1,nd_tll=00:00:00:00:00:05,actions=set_field:::2->nd_target",
    "ip,in_port=2,actions=push_mpls:0x8847,set_field:5->mpls_label,set_mpls_ttl:5,dec_mpls_ttl,output:1",
    "mpls,mpls_label=5,mpls_tc=3,mpls_bos=1,actions=pop_mpls:0x0800,dec_ttl,output:2",
    "sctp,tp_dst=9,actions=set_field:5->sctp_dst,output:1",
    "mpls,mpls_ttl=3,mpls_label=9,actions=dec_mpls_ttl,output:1",
    "ip,nw_frag=later,actions=drop",
    "actions=bundle(symmetric_l4,60,hrw,ofport,members:1,2)",
    "actions=multipath(symmetric_l3l4+udp,7,hash_threshold,2,0,NXM_NX_REG3[0..1]),resubmit(,1)",
    "actions=bundle_load(eth_src,50,active_backup,ofport,NXM_NX_REG0[],members:2,1),output:NXM_NX_REG0[]",
    "in_port=2,actions=output(port=1,max_len=64),output(max_len=100,port=IN_PORT)",
    "udp6,nw_frag=not_later,tp_dst=53,actions=output:1",
    "tcp,tp_src[5]=1,tp_dst[0..3]=2,actions=output=1",
    "actions=push:eth_src,push:eth_dst,pop:eth_src,pop:eth_dst,push:reg0[0..15],pop:reg1[16..31],in_port",
    "tcp,actions=load:5->NXM_NX_IP_TTL[],move:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[],load:0x50->NXM_OF_TCP_DST[]",
    "in_port=2 actions=output:1,write_actions(output:2,output:3)",
    "ip,actions=clear_actions,write_actions(mod_dl_src:00:00:00:00:00:01,dec_ttl,set_field:5->reg0,output:2),goto_table:2",
    "actions=clone(output:1,clone(mod_dl_src:00:00:00:00:00:01,output:2)),output:3",
    "ip,actions=clone(ct(commit),resubmit(,2)),clone(drop),output:1",
    "icmp,actions=controller(reason=invalid_ttl,max_len=64),controller(id=5)",
    "in_port=1,actions=write_actions(controller:100)",
    "actions=sample(probability=12345,collector_set_id=23456,obs_domain_id=34567,obs_point_id=45678),output:1",
    "actions=sample(probability=1,collector_set_id=2,obs_domain_id=3,obs_point_id=4,sampling_port=1,egress),output:2",
    "priority=5,ip,nw_src=10.0.0.1,actions=conjunction(1234,1/2),conjunction(9,2/3),note:ab.cd",
    "conj_id=1234,tcp,tp_dst=80,actions=output:1",
    "actions=learn(table=1,hard_timeout=60,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:NXM_OF_IN_PORT[]),output:1",
    "ip,actions=learn(table=3,idle_timeout=10,priority=5,send_flow_rem,delete_learned,cookie=0x123,eth_type=0x800,ip_dst=10.0.0.1,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],load:0x1->NXM_NX_REG0[],load:NXM_NX_REG1[0..7]->NXM_NX_REG2[8..15],output:NXM_NX_REG3[0..15])",
    "actions=learn(table=1,limit=10,NXM_OF_ETH_SRC[],NXM_NX_REG0[1..31]=NXM_NX_REG1[0..30],in_port=LOCAL)",
    "tcp,actions=fin_timeout(idle_timeout=5,hard_timeout=15),learn(table=2,fin_idle_timeout=1,NXM_OF_ETH_SRC[]),output:1",
    // With the TLV map the test gives both bridges.
    "tun_metadata0=0x1234,tun_metadata1=0x1200/0xff00,actions=move:tun_metadata0[0..15]->reg0[0..15],set_field:0xabcdef->tun_metadata1,output:1",
];

/// The TLV map both bridges of the FLOWS test have.
const TLV_MAP: &str = "{class=0xffff,type=0x80,len=4}->tun_metadata0,{class=0x102,type=1,len=8}->tun_metadata1";

fn ofctl(ns: &Ns, args: &str) -> String {
    ns.sh(&format!("timeout 10 ovs-ofctl -O OpenFlow13 {args}").replace("TARGET", "tcp:127.0.0.1:6653"))
}

/// Plain `ovs-ofctl`, as people type it: it speaks OpenFlow 1.0 and Nicira's extensions (NXM).
fn plain_ofctl(ns: &Ns, args: &str) -> String {
    ns.sh(&format!("timeout 10 ovs-ofctl {args}").replace("TARGET", "tcp:127.0.0.1:6653"))
}

/// What `ovs-ofctl parse-flow` makes of `flow` with OpenFlow 1.3: the flow as it prints it.
fn ovs_normal(ns: &Ns, flow: &str) -> String {
    let out = ofctl(ns, &format!("parse-flow '{flow}'"));
    let line =
        out.lines().find(|l| l.contains(": ADD ")).unwrap_or_else(|| panic!("ovs-ofctl parse-flow {flow}: {out}"));
    line.split_once(": ADD ").unwrap().1.trim().to_string()
}

/// The two sorted lists are equal; otherwise the lines only one side has.
fn assert_same(ours: &[String], want: &[String], what: &str) {
    let only_ours: Vec<&String> = ours.iter().filter(|l| !want.contains(l)).collect();
    let only_ovs: Vec<&String> = want.iter().filter(|l| !ours.contains(l)).collect();
    assert!(only_ours.is_empty() && only_ovs.is_empty(), "{what}:\nonly weft: {only_ours:#?}\nonly OVS: {only_ovs:#?}");
    assert_eq!(ours.len(), want.len(), "{what}");
}

#[test]
fn flows_print_as_open_vswitch_prints_them_from_the_cli_and_over_openflow() {
    let p = "pf";
    let Some(OneHost { tmp: _tmp, h, w }) = one_host(p, &["ip", "ovs-ofctl"]) else { return };
    w.weft("add-br sw1");
    w.weft("add-br sw2");
    let left = Ns::new(&format!("{p}l"));
    veth(&left, "eth0", None, &h, &format!("{p}p1"), None);
    veth(&left, "eth1", None, &h, &format!("{p}p2"), None);
    w.weft(&format!("add-port sw1 {p}p1"));
    w.weft(&format!("add-port sw1 {p}p2"));
    w.weft("set-controller sw2 ptcp:6653:127.0.0.1");
    w.weft("del-flows sw1");
    w.weft("del-flows sw2");
    w.weft(&format!("add-tlv-map sw1 '{TLV_MAP}'"));
    ofctl(&h, &format!("add-tlv-map TARGET '{TLV_MAP}'"));
    let mut want = Vec::new();
    for (i, f) in FLOWS.iter().enumerate() {
        let f = format!("priority={},{f}", 100 + i);
        want.push(ovs_normal(&h, &f));
        // The CLI and OpenFlow (through OVS's own encoder) each add the flow.
        w.weft(&format!("add-flow sw1 '{f}'"));
        ofctl(&h, &format!("add-flow TARGET '{f}'"));
    }
    want.sort();
    let mut ours: Vec<String> =
        w.json("dump-flows sw1").as_array().unwrap().iter().map(|r| r["flow"].as_str().unwrap().to_string()).collect();
    ours.sort();
    assert_same(&ours, &want, "weft's dump-flows against OVS's parse-flow");
    let dump = ofctl(&h, "--no-stats dump-flows TARGET");
    let mut wire: Vec<String> = dump.lines().map(|l| l.trim().to_string()).filter(|l| l.contains("actions=")).collect();
    wire.sort();
    assert_same(&wire, &want, "ovs-ofctl dump-flows of what ovs-ofctl added against its parse-flow");
    // And the flows came through intact: weft's own view of sw2 is the same.
    let mut via_of: Vec<String> =
        w.json("dump-flows sw2").as_array().unwrap().iter().map(|r| r["flow"].as_str().unwrap().to_string()).collect();
    via_of.sort();
    assert_same(&via_of, &want, "weft's dump-flows of what ovs-ofctl added");
    // The same over OpenFlow 1.5 (FLOW_DESC with OXS statistics; OVS's 1.5 encodings of meters, moves and
    // loads), against what OVS's own parser makes of each flow for 1.5.
    let of15 = |args: &str| {
        h.sh(&format!("timeout 10 ovs-ofctl -O OpenFlow15 {args}").replace("TARGET", "tcp:127.0.0.1:6653"))
    };
    of15("del-flows TARGET");
    let mut want15 = Vec::new();
    for (i, f) in FLOWS.iter().enumerate() {
        let f = format!("priority={},{f}", 100 + i);
        let out = of15(&format!("parse-flow '{f}'"));
        let line = out.lines().find(|l| l.contains(": ADD ")).unwrap_or_else(|| panic!("parse-flow {f}: {out}"));
        want15.push(line.split_once(": ADD ").unwrap().1.trim().to_string());
        of15(&format!("add-flow TARGET '{f}'"));
    }
    want15.sort();
    let dump = of15("--no-stats dump-flows TARGET");
    // (dump-flows prints the importance among the statistics, parse-flow after the match.)
    let as_parsed = |l: &str| match l.strip_prefix("importance=").and_then(|r| r.split_once(", ")) {
        Some((n, rest)) => rest.replacen(" actions=", &format!(" importance:{n} actions="), 1),
        None => l.to_string(),
    };
    let mut wire: Vec<String> = dump.lines().map(|l| as_parsed(l.trim())).filter(|l| l.contains("actions=")).collect();
    wire.sort();
    assert_same(&wire, &want15, "ovs-ofctl -O OpenFlow15 dump-flows against its parse-flow");
}

/// OpenFlow 1.3's action set, written with `ovs-ofctl`: each direction's first table writes a decoy output
/// and the second replaces (or clears and rewrites) it; real TCP crosses only if the set runs once, at the
/// end, with the last output written.
#[test]
fn the_action_set_carries_real_tcp_between_two_ports() {
    let p = "pw";
    let Some(OneHost { tmp: _tmp, h, w }) = one_host(p, &["ip", "ping", "iperf3", "ovs-ofctl"]) else { return };
    w.weft("add-br sw1");
    let left = endpoint_veth(&format!("{p}l"), &h, &format!("{p}p1"), "10.12.0.1", "2001:db8:12::1");
    let right = endpoint_veth(&format!("{p}r"), &h, &format!("{p}p2"), "10.12.0.2", "2001:db8:12::2");
    w.weft(&format!("add-port sw1 {p}p1"));
    w.weft(&format!("add-port sw1 {p}p2"));
    w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    ofctl(&h, "del-flows TARGET");
    for f in [
        "table=0,in_port=1,actions=write_actions(output:LOCAL),goto_table:1",
        "table=0,in_port=2,actions=write_actions(output:LOCAL),goto_table:1",
        "table=1,in_port=1,actions=write_actions(output:2)",
        "table=1,in_port=2,actions=clear_actions,write_actions(output:1)",
    ] {
        ofctl(&h, &format!("add-flow TARGET '{f}'"));
    }
    let dump = ofctl(&h, "--no-stats dump-flows TARGET table=1");
    assert!(dump.contains("in_port=2 actions=clear_actions,write_actions(output:1)"), "{dump}");
    left.ping("10.12.0.2", 2);
    tcp_both_ways(&left, &right, &["10.12.0.2"], "through an action set");
    // Nothing went to the decoy: the bridge's own port sent nothing of it.
    let local = w.json("dump-ports sw1");
    let sent = local.as_array().unwrap().iter().find(|r| r["port"] == "sw1").map(|r| r["tx_packets"].as_u64().unwrap());
    assert!(sent.unwrap_or(0) < 50, "the decoy output ran: {local}");
}

#[test]
fn registers_and_metadata_steer_real_tcp_through_three_tables() {
    register_pipeline("pr", 9, &ofctl);
}

/// The same with plain `ovs-ofctl` (OpenFlow 1.0 with NXM): the flows go as NXT_FLOW_MOD, statistics come
/// back as NXST_FLOW, and the other everyday commands work.
#[test]
fn plain_ovs_ofctl_speaks_openflow_1_0_with_nicira_extensions() {
    let Some((OneHost { tmp: _tmp, h, w }, _ends)) = register_pipeline("pz", 7, &plain_ofctl) else { return };
    let show = plain_ofctl(&h, "show TARGET");
    assert!(show.contains("OFPT_FEATURES_REPLY") && show.contains("1(pzp1)") && show.contains("LOCAL(sw1)"), "{show}");
    // The datapath ID is the bridge's other_config:datapath-id when set (as OVS takes it: 16 hex digits).
    w.weft("set bridge sw1 other_config:datapath-id=00000000000000ab");
    assert!(plain_ofctl(&h, "show TARGET").contains("dpid:00000000000000ab"));
    let (ok, _, err) = w.try_weft("set bridge sw1 other_config:datapath-id=12");
    assert!(!ok && err.contains("16 hex digits"), "{err}");
    let desc = plain_ofctl(&h, "dump-ports-desc TARGET");
    assert!(desc.contains("2(pzp2)"), "{desc}");
    let tables = plain_ofctl(&h, "dump-tables TARGET");
    assert!(tables.contains("table 2") && tables.contains("active=2"), "{tables}");
    let ports = plain_ofctl(&h, "dump-ports TARGET 1");
    assert!(ports.contains("port  1: rx pkts="), "{ports}");
    let agg = plain_ofctl(&h, "dump-aggregate TARGET");
    assert!(agg.contains("flow_count=6"), "{agg}");
    // A flow OpenFlow 1.0's own match can say goes as OFPT_FLOW_MOD; deleting by match and strictly works.
    plain_ofctl(&h, "add-flow TARGET 'table=3,priority=9,ip,nw_dst=10.7.0.9,actions=drop'");
    assert!(plain_ofctl(&h, "dump-flows TARGET table=3").contains("priority=9,ip,nw_dst=10.7.0.9 actions=drop"));
    plain_ofctl(&h, "--strict del-flows TARGET 'table=3,priority=9,ip,nw_dst=10.7.0.9'");
    assert!(!plain_ofctl(&h, "dump-flows TARGET").contains("10.7.0.9"));
    // What weft cannot do is refused with an OpenFlow 1.0 error, and nothing changes.
    let r = h.run("timeout 10 ovs-ofctl add-flow tcp:127.0.0.1:6653 'table=3,actions=controller(userdata=00.01)'");
    assert!(!r.status.success(), "NXAST_CONTROLLER2 is not weft's yet");
    assert!(String::from_utf8_lossy(&r.stderr).contains("OFPT_ERROR"), "{}", String::from_utf8_lossy(&r.stderr));
    assert!(plain_ofctl(&h, "dump-aggregate TARGET").contains("flow_count=6"));
}

/// A firewall as Neutron's OVS agent writes one, with conjunctive flows (plain `ovs-ofctl`, so OpenFlow 1.0
/// with Nicira's extensions): dimension 1 is the source address (two of three allowed), dimension 2 the
/// service (TCP to or from port 5201, or ICMP, on different fields). Real TCP to 5201 crosses both ways, TCP
/// to another port and pings from the third address do not; the conj_id flow counts the traffic and the
/// clauses count nothing, as in OVS.
#[test]
fn conjunctive_flows_let_through_only_the_pairs_they_name() {
    let p = "pcj";
    let Some(OneHost { tmp: _tmp, h, w }) = one_host(p, &["ip", "ping", "iperf3", "ovs-ofctl", "ss"]) else { return };
    w.weft("add-br sw1");
    let left = endpoint_veth("pcjl", &h, "pcjp1", "10.41.0.1", "2001:db8:41::1");
    let right = endpoint_veth("pcjr", &h, "pcjp2", "10.41.0.2", "2001:db8:41::2");
    right.sh("ip addr add 10.41.0.3/24 dev eth0");
    w.weft("add-port sw1 pcjp1");
    w.weft("add-port sw1 pcjp2");
    w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    plain_ofctl(&h, "del-flows TARGET");
    for f in [
        "priority=100,arp,actions=normal",
        "priority=50,conj_id=7,ip,actions=normal",
        "priority=10,ip,nw_src=10.41.0.1,actions=conjunction(7,1/2)",
        "priority=10,ip,nw_src=10.41.0.2,actions=conjunction(7,1/2)",
        "priority=10,tcp,tp_dst=5201,actions=conjunction(7,2/2)",
        "priority=10,tcp,tp_src=5201,actions=conjunction(7,2/2)",
        "priority=10,icmp,actions=conjunction(7,2/2),note:1234",
        "priority=0,actions=drop",
    ] {
        plain_ofctl(&h, &format!("add-flow TARGET '{f}'"));
    }
    let dump = plain_ofctl(&h, "--no-stats dump-flows TARGET");
    assert!(dump.contains("priority=10,icmp actions=conjunction(7,2/2),note:12.34.00.00.00.00"), "{dump}");
    assert!(dump.contains("conj_id=7,ip actions=NORMAL"), "{dump}");
    left.ping("10.41.0.2", 2);
    tcp_both_ways(&left, &right, &["10.41.0.2"], "through a conjunctive flow");
    assert!(!tcp_passes(&left, &right, "10.41.0.2", 5202), "TCP to a port no clause names crossed");
    let blocked = right.run("ping -c 2 -W 1 -I 10.41.0.3 10.41.0.1");
    assert!(!blocked.status.success(), "a source no clause names got through");
    // A clause flow alone is no flow: with dimension 2 gone, nothing IP passes.
    plain_ofctl(&h, "--strict del-flows TARGET 'priority=10,icmp'");
    assert!(!right.run("ping -c 2 -W 1 10.41.0.1").status.success(), "half a conjunction matched");
    let counted = |line: &str| -> u64 {
        line.split("n_packets=").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).unwrap()
    };
    let dump = plain_ofctl(&h, "dump-flows TARGET");
    for line in dump.lines() {
        if line.contains("conj_id=7") {
            assert!(counted(line) > 1000, "{line}");
        } else if line.contains("conjunction(") {
            assert_eq!(counted(line), 0, "{line}");
        }
    }
}

/// A learning switch made of flows, as OVS's `learn` builds one (programmed over OpenFlow 1.3, so NXAST_LEARN
/// rides as an experimenter action): table 0 learns, for each source MAC, a flow in table 10 that sends
/// frames to that MAC out of the port it came in by, then resubmits to table 10, which floods what it has
/// not learned. Real TCP crosses both ways by the learned flows (they count it; the flood flow does not),
/// they survive `kill -9`, go when idle past their timeout, and go with the flow that learned them
/// (`delete_learned`).
#[test]
fn a_learning_switch_made_of_flows_learns_from_real_traffic() {
    let p = "plr";
    let Some(OneHost { tmp: _tmp, h, mut w }) = one_host(p, &["ip", "ping", "iperf3", "ovs-ofctl"]) else { return };
    w.weft("add-br sw1");
    let left = endpoint_veth("plrl", &h, "plrp1", "10.42.0.1", "2001:db8:42::1");
    let right = endpoint_veth("plrr", &h, "plrp2", "10.42.0.2", "2001:db8:42::2");
    w.weft("add-port sw1 plrp1");
    w.weft("add-port sw1 plrp2");
    w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    ofctl(&h, "del-flows TARGET");
    let learn = "table=0,priority=10,actions=learn(table=10,idle_timeout=4,priority=5,cookie=0x42,delete_learned,\
                 NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),resubmit(,10)";
    ofctl(&h, &format!("add-flow TARGET '{learn}'"));
    ofctl(&h, "add-flow TARGET 'table=10,priority=0,actions=flood'");
    let dump = ofctl(&h, "--no-stats dump-flows TARGET table=0");
    assert!(
        dump.contains(
            "actions=learn(table=10,idle_timeout=4,priority=5,delete_learned,cookie=0x42,\
                       NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],output:NXM_OF_IN_PORT[]),resubmit(,10)"
        ),
        "{dump}"
    );
    let (lmac, rmac) = (mac_of(&left, "eth0"), mac_of(&right, "eth0"));
    left.ping("10.42.0.2", 2);
    let learned = |w: &Weftd| -> Vec<String> {
        w.weft("dump-flows sw1").lines().filter(|l| l.contains("cookie=0x42")).map(String::from).collect()
    };
    // The endpoints' MACs (the bridge's own port may be learned too, when it speaks).
    let both = |w: &Weftd| {
        let l = learned(w);
        [&lmac, &rmac].iter().all(|m| l.iter().any(|f| f.contains(&format!("dl_dst={m}"))))
    };
    wait_for("both MACs learned", 5, || both(&w));
    let counted = |line: &str| -> u64 {
        line.split("n_packets=").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).unwrap()
    };
    let flooded =
        |h: &Ns| counted(ofctl(h, "dump-flows TARGET table=10").lines().find(|l| l.contains("FLOOD")).unwrap());
    let before = flooded(&h);
    tcp_both_ways(&left, &right, &["10.42.0.2"], "through learned flows");
    let dump = ofctl(&h, "dump-flows TARGET table=10");
    for (mac, port) in [(&lmac, 1), (&rmac, 2)] {
        let line = dump.lines().find(|l| l.contains(&format!("dl_dst={mac}"))).unwrap_or_else(|| panic!("{dump}"));
        assert!(
            line.contains("cookie=0x42") && line.contains("idle_timeout=4") && line.contains("priority=5"),
            "{line}"
        );
        assert!(line.ends_with(&format!("actions=output:{port}")), "{line}");
        assert!(counted(line) > 1000, "TCP did not take the learned flow: {line}");
    }
    // Only what is not unicast (neighbor discovery's multicast) floods now.
    let after = flooded(&h);
    assert!(after - before < 50, "TCP flooded after learning: {before} -> {after} frames");
    // Learned flows are flows of the configuration: back after kill -9.
    w.restart();
    assert!(both(&w), "learned flows lost by kill -9: {:?}", learned(&w));
    // Idle past their timeout, they go; traffic learns them again; deleting the learning flow takes them too.
    // (The endpoints' neighbour entries fixed, so that no reachability probe keeps a flow busy.)
    left.sh(&format!("ip neigh replace 10.42.0.2 lladdr {rmac} dev eth0 nud permanent"));
    right.sh(&format!("ip neigh replace 10.42.0.1 lladdr {lmac} dev eth0 nud permanent"));
    let gone = |w: &Weftd| learned(w).iter().all(|f| !f.contains(&lmac) && !f.contains(&rmac));
    let t = std::time::Instant::now();
    while !gone(&w) && t.elapsed() < std::time::Duration::from_secs(15) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(gone(&w), "idle learned flows stay: {:?}", learned(&w));
    left.ping("10.42.0.2", 1);
    wait_for("MACs learned again", 5, || both(&w));
    ofctl(&h, "del-flows TARGET table=0");
    assert!(learned(&w).is_empty(), "delete_learned left learned flows: {:?}", learned(&w));
    assert!(w.weft("dump-flows sw1").contains("actions=FLOOD"), "the other flows stay");
}

/// `fin_timeout`: a flow that would idle for a minute goes a second after the TCP connections through it
/// close (their FINs bring its idle timeout down), as in OVS; the flow for the other direction, without the
/// action, stays.
#[test]
fn fin_timeout_ends_a_flow_when_its_connections_close() {
    let p = "pft";
    let Some(OneHost { tmp: _tmp, h, w }) = one_host(p, &["ip", "ping", "iperf3"]) else { return };
    w.weft("add-br sw1");
    let left = endpoint_veth("pftl", &h, "pftp1", "10.43.0.1", "2001:db8:43::1");
    let right = endpoint_veth("pftr", &h, "pftp2", "10.43.0.2", "2001:db8:43::2");
    w.weft("add-port sw1 pftp1");
    w.weft("add-port sw1 pftp2");
    w.weft("del-flows sw1");
    for f in [
        "priority=100,arp,actions=normal",
        "priority=10,idle_timeout=60,tcp,in_port=1,tp_dst=5201,actions=fin_timeout(idle_timeout=1),output:2",
        "priority=10,idle_timeout=60,tcp,in_port=2,tp_src=5201,actions=output:1",
    ] {
        w.weft(&format!("add-flow sw1 '{f}'"));
    }
    let flows = || w.weft("dump-flows sw1");
    assert!(flows().contains("idle_timeout=60, priority=10,tcp,in_port=1,tp_dst=5201"), "{}", flows());
    let bps = iperf3_bps(&left, &right, "10.43.0.2", "10.43.0.2", 5201, "");
    assert!(bps > 50e6, "TCP through the flows reached only {bps} bit/s");
    let t = std::time::Instant::now();
    while flows().contains("tp_dst=5201") && t.elapsed() < std::time::Duration::from_secs(10) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let dump = flows();
    assert!(!dump.contains("tp_dst=5201"), "the flow outlived its connections by {:?}: {dump}", t.elapsed());
    assert!(dump.contains("idle_timeout=60, priority=10,tcp,in_port=2,tp_src=5201"), "{dump}");
}

/// Table 0 classifies by input port into reg0 (and keeps the port number in reg1 and metadata); table 1
/// writes the output port into reg2 from reg0; table 2 outputs by reg2 and metadata alone. Programmed with
/// `ctl`, checked with ping and TCP both ways; returns the host with weftd still running, and the endpoints.
fn register_pipeline(p: &str, net: u8, ctl: &dyn Fn(&Ns, &str) -> String) -> Option<(OneHost, [Ns; 2])> {
    let OneHost { tmp, h, w } = one_host(p, &["ip", "ping", "iperf3", "ovs-ofctl"])?;
    w.weft("add-br sw1");
    let left =
        endpoint_veth(&format!("{p}l"), &h, &format!("{p}p1"), &format!("10.{net}.0.1"), &format!("2001:db8:{net}::1"));
    let right =
        endpoint_veth(&format!("{p}r"), &h, &format!("{p}p2"), &format!("10.{net}.0.2"), &format!("2001:db8:{net}::2"));
    w.weft(&format!("add-port sw1 {p}p1"));
    w.weft(&format!("add-port sw1 {p}p2"));
    w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    ctl(&h, "del-flows TARGET");
    for f in [
        "table=0,in_port=1,actions=load:1->reg0,move:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15],write_metadata:0x100/0xf00,goto_table:1",
        "table=0,in_port=2,actions=load:2->reg0,move:NXM_OF_IN_PORT[]->NXM_NX_REG1[0..15],write_metadata:0x200/0xf00,goto_table:1",
        "table=1,reg0=1,reg1=1,actions=load:2->NXM_NX_REG2[8..15],resubmit(,2)",
        "table=1,reg0=2,reg1=2,actions=set_field:0x100->reg2,resubmit(,2)",
        "table=2,reg2=0x200,metadata=0x100/0xf00,actions=output:2",
        "table=2,reg2=0x100,metadata=0x200/0xf00,actions=output:1",
    ] {
        ctl(&h, &format!("add-flow TARGET '{f}'"));
    }
    let flows = w.weft("dump-flows sw1");
    assert_eq!(flows.lines().count(), 6, "{flows}");
    // (What arrived before the flows did, between del-flows and add-flow, missed; nothing after may.)
    let missed = w.drops("sw1", &format!("{p}p1"), "no_flow");
    left.ping(&format!("10.{net}.0.2"), 2);
    left.ping(&format!("2001:db8:{net}::2"), 2);
    tcp_both_ways(&left, &right, &[&format!("10.{net}.0.2")], "through a three-table register pipeline");
    // Every packet took the register path: each table-2 flow counted traffic, table 0 missed nothing.
    let dump = ctl(&h, "dump-flows TARGET table=2");
    let outputs: Vec<&str> = dump.lines().filter(|l| l.contains("actions=output")).collect();
    assert_eq!(outputs.len(), 2, "{dump}");
    for line in outputs {
        let n: u64 =
            line.split("n_packets=").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).unwrap();
        assert!(n > 1000, "{line}");
    }
    assert_eq!(w.drops("sw1", &format!("{p}p1"), "no_flow"), missed, "no packet missed a table");
    Some((OneHost { tmp, h, w }, [left, right]))
}

/// Starts Open vSwitch's test controller listening on `port` in `h` (its log and pid in `d`) with `args`,
/// connects bridge sw1 to it, waits for the handshake and returns its pid.
fn test_controller(h: &Ns, w: &Weftd, d: &std::path::Path, port: u16, args: &str) -> String {
    std::fs::create_dir_all(d).unwrap();
    let log = d.join("tc.log");
    h.sh(&format!(
        "ovs-testcontroller -O OpenFlow13 {args} ptcp:{port}:127.0.0.1 --verbose=vconn:file:dbg --log-file={} \
         --pidfile={d}/tc.pid --unixctl={d}/tc.ctl --detach",
        log.display(),
        d = d.display()
    ));
    let pid = std::fs::read_to_string(d.join("tc.pid")).unwrap_or_default().trim().to_string();
    assert!(!pid.is_empty(), "ovs-testcontroller did not start");
    w.weft(&format!("set-controller sw1 tcp:127.0.0.1:{port}"));
    wait_for("the controller's handshake", 10, || {
        std::fs::read_to_string(&log).unwrap_or_default().contains("OFPT_FEATURES_REPLY")
    });
    pid
}

/// Open vSwitch's test controller, a reactive learning switch, forwards everything through weft: first with
/// no flows at all (every frame goes up as a PACKET_IN and comes back as a PACKET_OUT), then installing flows
/// as it learns; ping and TCP both ways work each time.
#[test]
fn a_reactive_controller_switches_with_packet_out() {
    let p = "pt";
    let Some(OneHost { tmp, h, w }) = one_host(p, &["ip", "ping", "iperf3", "ovs-testcontroller"]) else { return };
    w.weft("add-br sw1");
    let left = endpoint_veth(&format!("{p}l"), &h, &format!("{p}p1"), "10.8.0.1", "2001:db8:8::1");
    let right = endpoint_veth(&format!("{p}r"), &h, &format!("{p}p2"), "10.8.0.2", "2001:db8:8::2");
    w.weft(&format!("add-port sw1 {p}p1"));
    w.weft(&format!("add-port sw1 {p}p2"));
    // The controller takes the table over (priority=0 actions=CONTROLLER); with -n it adds no flows.
    let pid = test_controller(&h, &w, &tmp.path("tc1"), 6655, "-n");
    left.ping("10.8.0.2", 3);
    left.ping("2001:db8:8::2", 2);
    let log = std::fs::read_to_string(tmp.path("tc1").join("tc.log")).unwrap_or_default();
    assert!(log.contains("OFPT_PACKET_OUT"), "the controller answered with packet-outs:\n{log}");
    assert!(!log.contains("OFPT_ERROR"), "weft refused something:\n{log}");
    let flows = w.weft("dump-flows sw1");
    assert_eq!(flows.lines().count(), 1, "no flow but the controller's table-miss flow:\n{flows}");
    let _ = run(&format!("kill {pid}"));

    // Now as a learning switch that installs flows.
    w.weft("del-controller sw1");
    let pid = test_controller(&h, &w, &tmp.path("tc2"), 6656, "");
    left.ping("10.8.0.2", 3);
    tcp_both_ways(&left, &right, &["10.8.0.2", "2001:db8:8::2"], "through ovs-testcontroller's flows");
    let flows = w.weft("dump-flows sw1");
    let _ = run(&format!("kill {pid}"));
    assert!(flows.lines().count() > 2, "the controller installed flows:\n{flows}");
    let log = std::fs::read_to_string(tmp.path("tc2").join("tc.log")).unwrap_or_default();
    assert!(!log.contains("OFPT_ERROR"), "weft refused something:\n{log}");
}

/// Sends three PACKET_OUTs over OpenFlow 1.3 and prints what comes back for each ("ok" when nothing, or the
/// error's type and code): a frame out of port 2 from port 1, one naming a buffer weft never gave out, one
/// from a port the bridge does not have.
const PACKET_OUTS: &str = r#"
import socket, struct
s = socket.create_connection(('127.0.0.1', 6653))
s.settimeout(2)
s.sendall(bytes([4, 0, 0, 8, 0, 0, 0, 1]))
frame = bytes.fromhex('ffffffffffff020000000001') + b'\x88\xb5' + b'weft packet-out test' + bytes(26)
out2 = struct.pack('>HHIH6x', 0, 16, 2, 0xffff)
for xid, buffer_id, in_port in [(11, 0xffffffff, 1), (12, 5, 1), (13, 0xffffffff, 77)]:
    body = struct.pack('>IIH6x', buffer_id, in_port, len(out2)) + out2 + frame
    s.sendall(struct.pack('>BBHI', 4, 13, 8 + len(body), xid) + body)
    s.sendall(struct.pack('>BBHI', 4, 20, 8, xid + 100))
    got = 'ok'
    while True:
        h = s.recv(8)
        n = struct.unpack('>H', h[2:4])[0]
        b = s.recv(n - 8) if n > 8 else b''
        if h[1] == 1:
            got = '%d %d' % struct.unpack('>HH', b[:4])
        if h[1] == 21:
            break
    print(got)
"#;

#[test]
fn packet_outs_leave_by_their_actions_and_bad_ones_get_errors() {
    let p = "po";
    let Some(OneHost { tmp, h, w }) = one_host(p, &["ip", "python3", "tcpdump"]) else { return };
    w.weft("add-br sw1");
    let left = Ns::new(&format!("{p}l"));
    veth(&left, "eth0", None, &h, &format!("{p}p1"), None);
    veth(&left, "eth1", None, &h, &format!("{p}p2"), None);
    w.weft(&format!("add-port sw1 {p}p1"));
    w.weft(&format!("add-port sw1 {p}p2"));
    w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pcap = tmp.path("eth1.pcap");
    let dump = left.spawn(&format!("timeout 5 tcpdump -i eth1 -w {} -U ether proto 0x88b5", pcap.display()));
    std::thread::sleep(std::time::Duration::from_millis(800));
    let script = tmp.path("packet_outs.py");
    std::fs::write(&script, PACKET_OUTS).unwrap();
    let replies = h.sh(&format!("python3 {}", script.display()));
    // BAD_REQUEST (1): BUFFER_UNKNOWN (8), BAD_PORT (11).
    assert_eq!(replies.lines().collect::<Vec<_>>(), ["ok", "1 8", "1 11"], "{replies}");
    let _ = dump.wait_with_output();
    let seen = left.sh(&format!("tcpdump -r {} -nn -e 2>/dev/null | grep -c '02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff, ethertype Unknown (0x88b5)'", pcap.display()));
    assert_eq!(seen.trim(), "1", "exactly the good packet-out left by port 2");
}

/// Flows that put a virtual address and port in front of a server — addresses, ports and TTLs rewritten
/// both ways, IPv4 and IPv6 — with real TCP through them and the endpoints' offloads on (TSO, checksums left to
/// the device): the checksums stay right however the frames are offloaded, and the TTL goes down by one.
#[test]
fn flows_translate_a_virtual_address_and_port_for_real_tcp() {
    let p = "pn";
    let Some(OneHost { tmp: _tmp, h, w }) = one_host(p, &["ip", "ping", "iperf3", "ethtool"]) else { return };
    w.weft("add-br sw1");
    let left = endpoint_veth("pnl", &h, "pnp1", "10.11.0.1", "2001:db8:11::1");
    let right = endpoint_veth("pnr", &h, "pnp2", "10.11.0.2", "2001:db8:11::2");
    w.weft("add-port sw1 pnp1");
    w.weft("add-port sw1 pnp2");
    let offloads = left.sh("ethtool -k eth0");
    assert!(offloads.contains("tcp-segmentation-offload: on"), "{offloads}");
    let rmac = mac_of(&right, "eth0");
    left.sh(&format!("ip neigh replace 10.11.0.100 lladdr {rmac} dev eth0"));
    left.sh(&format!("ip -6 neigh replace 2001:db8:11::100 lladdr {rmac} dev eth0"));
    for f in [
        "priority=20,tcp,in_port=1,nw_dst=10.11.0.100,tp_dst=8080,actions=mod_nw_dst:10.11.0.2,mod_tp_dst:5201,dec_ttl,output:2",
        "priority=20,tcp,in_port=2,nw_src=10.11.0.2,tp_src=5201,actions=mod_nw_src:10.11.0.100,mod_tp_src:8080,dec_ttl,output:1",
        "priority=10,ip,in_port=1,nw_dst=10.11.0.100,actions=set_field:10.11.0.2->ip_dst,dec_ttl,output:2",
        "priority=10,ip,in_port=2,nw_src=10.11.0.2,actions=set_field:10.11.0.100->ip_src,dec_ttl,output:1",
        "priority=20,tcp6,in_port=1,ipv6_dst=2001:db8:11::100,tp_dst=8080,actions=set_field:2001:db8:11::2->ipv6_dst,set_field:5201->tcp_dst,dec_ttl,output:2",
        "priority=20,tcp6,in_port=2,ipv6_src=2001:db8:11::2,tp_src=5201,actions=set_field:2001:db8:11::100->ipv6_src,set_field:8080->tcp_src,dec_ttl,output:1",
    ] {
        w.weft(&format!("add-flow sw1 '{f}'"));
    }
    // ICMP through the address flows: the echo reply comes from the virtual address, one hop further.
    let ping = left.sh("ping -c 2 -W 2 10.11.0.100");
    assert!(ping.contains("from 10.11.0.100") && ping.contains("ttl=63"), "{ping}");
    // Offloads on, then off: with them off the senders fill in whole checksums, weft patches them, and the
    // receivers check every one (a wrong one would stall TCP).
    for offload in ["on", "off"] {
        for ns in [&left, &right] {
            ns.sh(&format!("ethtool -K eth0 tx {offload} rx {offload}"));
        }
        for (vip, real) in [("10.11.0.100", "10.11.0.2"), ("2001:db8:11::100", "2001:db8:11::2")] {
            for reverse in ["", " -R"] {
                // The server listens on 5201; the flows turn the virtual port 8080 into it and back.
                right.sh(&format!("iperf3 -s -1 -D -B {real} -p 5201"));
                std::thread::sleep(std::time::Duration::from_millis(300));
                let bps = iperf3_client_bps(&left, vip, 8080, reverse);
                assert!(bps > 100e6, "TCP to {vip}:8080{reverse}, offloads {offload}, reached only {bps} bit/s");
            }
        }
    }
    // Every byte went through the rewriting flows (none by NORMAL): their counters say so.
    let dump = w.weft("dump-flows sw1");
    for line in dump.lines().filter(|l| l.contains("priority=20")) {
        let n: u64 =
            line.split("n_packets=").nth(1).and_then(|r| r.split(',').next()).and_then(|n| n.parse().ok()).unwrap();
        assert!(n > 1000, "{line}");
    }
}

/// Groups programmed by `ovs-ofctl` over OpenFlow 1.3 forward real traffic: an `all` group copies every frame
/// to two ports, a `fast_failover` group moves to its second bucket when its first port's link goes down;
/// `ovs-ofctl dump-groups` reads them back as they were written; a flow naming a missing group is refused with
/// OFPBAC_BAD_OUT_GROUP, and deleting a group deletes the flows that send to it.
#[test]
fn groups_from_ovs_ofctl_forward_real_traffic() {
    let p = "pg";
    let Some(OneHost { tmp, h, w }) = one_host(p, &["ip", "ping", "ovs-ofctl", "tcpdump", "tshark"]) else { return };
    w.weft("add-br sw1");
    let left = endpoint_veth("pgl", &h, "pgp1", "10.12.0.1", "2001:db8:12::1");
    let right = endpoint_veth("pgr", &h, "pgp2", "10.12.0.2", "2001:db8:12::2");
    let third = endpoint_veth("pgt", &h, "pgp3", "10.12.0.3", "2001:db8:12::3");
    for port in ["pgp1", "pgp2", "pgp3"] {
        w.weft(&format!("add-port sw1 {port}"));
    }
    w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    ofctl(&h, "add-group TARGET 'group_id=1,type=all,bucket=output:2,bucket=output:3'");
    ofctl(&h, "add-group TARGET 'group_id=2,type=fast_failover,bucket=watch_port:2,actions=output:2,bucket=watch_port:3,actions=output:3'");
    ofctl(&h, "add-flow TARGET 'in_port=1,actions=group:1'");
    ofctl(&h, "add-flow TARGET 'in_port=2,actions=output:1'");
    ofctl(&h, "add-flow TARGET 'in_port=3,actions=output:1'");
    let groups = ofctl(&h, "dump-groups TARGET");
    assert!(groups.contains("group_id=1,type=all,bucket=actions=output:2,bucket=actions=output:3"), "{groups}");
    assert!(
        groups.contains("group_id=2,type=ff,bucket=watch_port:2,actions=output:2,bucket=watch_port:3,actions=output:3"),
        "{groups}"
    );
    // The all group: the ping crosses, and the third endpoint sees a copy of every request.
    let cap = Capture::start(&third, "eth0", tmp.path("third.pcap"));
    left.ping("10.12.0.2", 3);
    cap.finish();
    assert!(!cap.fields("icmp.type == 8 && ip.dst == 10.12.0.2", &["ip.src"]).is_empty(), "no copy reached port 3");
    // Group statistics: the flow that sends to it, what it took, each bucket a copy of everything.
    let stats = ofctl(&h, "dump-group-stats TARGET");
    let line = stats.lines().find(|l| l.contains("group_id=1,")).unwrap_or_else(|| panic!("{stats}"));
    let num = |key: &str, from: &str| -> u64 {
        from.split(key).nth(1).and_then(|r| r.split([',', ' ']).next()).and_then(|n| n.parse().ok()).unwrap_or(0)
    };
    assert!(line.contains("ref_count=1") && num("packet_count=", line) >= 3, "{line}");
    let buckets: Vec<&str> = line.split("bucket").skip(1).collect();
    assert_eq!(buckets.len(), 2, "{line}");
    assert!(buckets.iter().all(|b| num("packet_count=", b) == num("packet_count=", line)), "{line}");
    // A flow naming a group that is not there is refused, and changes nothing.
    let r = h.run("timeout 10 ovs-ofctl -O OpenFlow13 add-flow tcp:127.0.0.1:6653 'in_port=1,actions=group:9'");
    assert!(
        String::from_utf8_lossy(&r.stderr).contains("OFPBAC_BAD_OUT_GROUP"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );
    // Fast failover: through port 2 while its link is up, through port 3 once it is down.
    ofctl(&h, "mod-flows TARGET 'in_port=1,actions=group:2'");
    left.ping("10.12.0.2", 3);
    let cap = Capture::start(&third, "eth0", tmp.path("failover.pcap"));
    h.sh("ip link set pgp2 down");
    std::thread::sleep(std::time::Duration::from_secs(1));
    let _ = left.run("ping -c 3 -i 0.2 -W 1 10.12.0.2");
    cap.finish();
    assert!(
        !cap.fields("icmp.type == 8 && ip.dst == 10.12.0.2", &["ip.src"]).is_empty(),
        "the second bucket took over"
    );
    // Deleting group 2 deletes the flow that sends to it.
    ofctl(&h, "del-groups TARGET group_id=2");
    let flows = ofctl(&h, "dump-flows TARGET");
    assert!(!flows.contains("group:2") && flows.contains("in_port=2"), "{flows}");
    assert!(!ofctl(&h, "dump-groups TARGET").contains("group_id=2"));
    drop(right);
}

/// What an iperf3 UDP run (`-l 1200`) delivered, in bits per second: what was sent less what was lost.
fn udp_received_bps(client: &Ns, server: &Ns, dst: &str, rate: &str) -> f64 {
    server.sh(&format!("iperf3 -s -1 -D -B {dst} -p 5201"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = client.sh(&format!("timeout 30 iperf3 -c {dst} -u -b {rate} -l 1200 -t 4 -J"));
    let v: serde_json::Value = serde_json::from_str(&out).expect("iperf3 -J output");
    let sum = &v["end"]["sum"];
    let (packets, lost) = (sum["packets"].as_f64().unwrap_or(0.0), sum["lost_packets"].as_f64().unwrap_or(0.0));
    let secs = sum["seconds"].as_f64().unwrap_or(4.0);
    (packets - lost) * 1200.0 * 8.0 / secs
}

/// Meters programmed by `ovs-ofctl` over OpenFlow 1.3 limit real traffic: UDP offered at three times the
/// rate arrives at the meter's rate (the datagrams' Ethernet frames counted, as OpenFlow counts them), TCP
/// with offloads on stays under it; `dump-meters` reads the meter back as it was written, `meter-stats` counts
/// what the band dropped; changing the meter changes the rate; a flow using a missing meter is refused;
/// deleting the meter deletes the flows that use it.
#[test]
fn meters_from_ovs_ofctl_limit_real_traffic() {
    let p = "pm";
    let Some(OneHost { tmp: _tmp, h, w }) = one_host(p, &["ip", "ping", "ovs-ofctl", "iperf3", "ethtool"]) else {
        return;
    };
    w.weft("add-br sw1");
    let left = endpoint_veth("pml", &h, "pmp1", "10.13.0.1", "2001:db8:13::1");
    let right = endpoint_veth("pmr", &h, "pmp2", "10.13.0.2", "2001:db8:13::2");
    w.weft("add-port sw1 pmp1");
    w.weft("add-port sw1 pmp2");
    w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    ofctl(&h, "add-meter TARGET 'meter=1 kbps burst stats bands=type=drop rate=20000 burst_size=1000'");
    ofctl(&h, "add-flow TARGET 'priority=10,ip,in_port=1,actions=meter:1,output:2'");
    ofctl(&h, "add-flow TARGET 'priority=5,in_port=1,actions=output:2'");
    ofctl(&h, "add-flow TARGET 'priority=5,in_port=2,actions=output:1'");
    let meters = ofctl(&h, "dump-meters TARGET");
    assert!(meters.contains("meter=1 kbps burst stats bands=\ntype=drop rate=20000 burst_size=1000"), "{meters}");
    assert!(ofctl(&h, "dump-flows TARGET").contains("actions=meter:1,output:2"));
    let features = ofctl(&h, "meter-features TARGET");
    assert!(features.contains("band_types: drop dscp_remark"), "{features}");
    left.ping("10.13.0.2", 2);

    // UDP at 60 Mbit/s through a 20 Mbit/s meter.
    let bps = udp_received_bps(&left, &right, "10.13.0.2", "60M");
    // iperf3 counts UDP payload; each 1200-byte datagram is a 1242-byte frame for the meter.
    let frame_bps = bps * 1242.0 / 1200.0;
    assert!((17e6..23e6).contains(&frame_bps), "UDP through a 20 Mbit/s meter: {frame_bps} bit/s of frames");
    let stats = ofctl(&h, "meter-stats TARGET");
    let dropped: u64 = stats
        .split("0: packet_count:")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(dropped > 10_000 && stats.contains("meter:1 flow_count:1"), "{stats}");
    // TCP (offloads on: the meter sees 64 KiB frames and counts their bytes) stays under the rate.
    let offloads = left.sh("ethtool -k eth0");
    assert!(offloads.contains("tcp-segmentation-offload: on"), "{offloads}");
    let tcp = iperf3_bps(&left, &right, "10.13.0.2", "10.13.0.2", 5201, "");
    assert!(tcp > 1e6 && tcp < 22e6, "TCP through a 20 Mbit/s meter: {tcp} bit/s");

    // A quarter of the rate, now: the meter changes in place. With no burst its bucket holds a 64 KiB frame
    // (more than a tenth of a second at this rate), and starts full: 5 Mbit/s and a little over 4 seconds.
    ofctl(&h, "mod-meter TARGET 'meter=1 kbps bands=type=drop rate=5000'");
    let bps = udp_received_bps(&left, &right, "10.13.0.2", "30M") * 1242.0 / 1200.0;
    assert!((4.5e6..5.7e6).contains(&bps), "UDP through a 5 Mbit/s meter: {bps} bit/s");

    // Refused, changing nothing: a flow with a meter that is not there, a meter that exists already.
    let r =
        h.run("timeout 10 ovs-ofctl -O OpenFlow13 add-flow tcp:127.0.0.1:6653 'in_port=2,actions=meter:9,output:1'");
    assert!(String::from_utf8_lossy(&r.stderr).contains("OFPMMFC_INVALID_METER"), "{r:?}");
    let r =
        h.run("timeout 10 ovs-ofctl -O OpenFlow13 add-meter tcp:127.0.0.1:6653 'meter=1 pktps bands=type=drop rate=1'");
    assert!(String::from_utf8_lossy(&r.stderr).contains("OFPMMFC_METER_EXISTS"), "{r:?}");
    // Deleting the meter deletes the flow that used it; the others stay.
    ofctl(&h, "del-meters TARGET meter=1");
    let flows = ofctl(&h, "dump-flows TARGET");
    assert!(!flows.contains("meter:1") && flows.contains("in_port=2"), "{flows}");
    assert!(!ofctl(&h, "dump-meters TARGET").contains("meter=1"));
}

/// `controller(reason=…,id=…)`: the packet-in says the flow's reason (`no_match`, not the action's own), and
/// goes only to connections with that controller ID (`ovs-ofctl monitor`'s is 0). (Not `invalid_ttl`: a
/// connection gets those only when it asks, as from OVS.)
#[test]
fn packet_ins_carry_the_reason_and_reach_the_controller_id_the_flow_names() {
    let p = "pq";
    let Some(OneHost { tmp, h, w }) = one_host(p, &["ip", "ping", "ovs-ofctl"]) else { return };
    w.weft("add-br sw1");
    let left = endpoint_veth(&format!("{p}l"), &h, &format!("{p}p1"), "10.16.0.1", "2001:db8:16::1");
    let _right = endpoint_veth(&format!("{p}r"), &h, &format!("{p}p2"), "10.16.0.2", "2001:db8:16::2");
    w.weft(&format!("add-port sw1 {p}p1"));
    w.weft(&format!("add-port sw1 {p}p2"));
    w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    ofctl(&h, "del-flows TARGET");
    ofctl(&h, "add-flow TARGET 'priority=10,icmp,icmp_type=8,actions=controller(reason=no_match,max_len=64),normal'");
    ofctl(&h, "add-flow TARGET 'priority=10,icmp,icmp_type=0,actions=controller(id=5),normal'");
    ofctl(&h, "add-flow TARGET 'priority=5,actions=normal'");
    let out = tmp.path("monitor.txt");
    let mut monitor = h.spawn(&format!(
        "exec timeout 20 ovs-ofctl -O OpenFlow13 --unixctl={} monitor tcp:127.0.0.1:6653 > {} 2>&1",
        tmp.path("ofctl.ctl").display(),
        out.display()
    ));
    std::thread::sleep(std::time::Duration::from_millis(500));
    // The echo requests go to controller 0 (and on); the replies to controller 5, which is not connected.
    left.ping("10.16.0.2", 3);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = monitor.kill();
    let _ = monitor.wait();
    let seen = std::fs::read_to_string(&out).unwrap_or_default();
    let ins: Vec<&str> = seen.lines().filter(|l| l.starts_with("OFPT_PACKET_IN")).collect();
    assert!(ins.len() >= 3, "{seen}");
    assert!(ins.iter().all(|l| l.contains("(via no_match)")), "{seen}");
    assert!(ins.iter().all(|l| l.contains("data_len=64")), "max_len=64: {seen}");
    // The requests come in from port 1; the replies (from port 2) were controller 5's.
    assert!(ins.iter().all(|l| l.contains("in_port=1 ")), "controller 5's packet-ins reached controller 0: {seen}");
}

/// Flows with `send_flow_rem` tell the controllers when they go, as `ovs-ofctl monitor` shows: timed out
/// (idle, hard), deleted by a FLOW_MOD, with their group or their meter; with the counters they ended with. A
/// flow without the flag goes silently; `dump-flows` shows the flag.
#[test]
fn removed_flows_are_reported_to_controllers() {
    let p = "prm";
    let Some(OneHost { tmp, h, w }) = one_host(p, &["ip", "ping", "ovs-ofctl"]) else { return };
    w.weft("add-br sw1");
    // Every name from the test's own prefix: the register test's `pr` makes `prl` and `prr`.
    let left = endpoint_veth(&format!("{p}l"), &h, &format!("{p}p1"), "10.15.0.1", "2001:db8:15::1");
    let _right = endpoint_veth(&format!("{p}r"), &h, &format!("{p}p2"), "10.15.0.2", "2001:db8:15::2");
    w.weft(&format!("add-port sw1 {p}p1"));
    w.weft(&format!("add-port sw1 {p}p2"));
    w.weft("set-controller sw1 ptcp:6653:127.0.0.1");
    std::thread::sleep(std::time::Duration::from_millis(300));
    let out = tmp.path("monitor.txt");
    let mut monitor = h.spawn(&format!(
        "exec timeout 30 ovs-ofctl -O OpenFlow13 --unixctl={} monitor tcp:127.0.0.1:6653 > {} 2>&1",
        tmp.path("ofctl.ctl").display(),
        out.display()
    ));
    std::thread::sleep(std::time::Duration::from_millis(500));
    ofctl(&h, "add-group TARGET 'group_id=5,type=all,bucket=output:2'");
    ofctl(&h, "add-meter TARGET 'meter=3 pktps bands=type=drop rate=1000'");
    for f in [
        "priority=50,in_port=1,send_flow_rem,idle_timeout=3,cookie=0x11,actions=output:2",
        "priority=40,in_port=2,send_flow_rem,hard_timeout=5,cookie=0x12,actions=output:1",
        "priority=30,tcp,send_flow_rem,cookie=0x13,actions=drop",
        "priority=30,udp,send_flow_rem,cookie=0x14,actions=group:5",
        "priority=30,sctp,send_flow_rem,cookie=0x15,actions=meter:3,output:2",
        "priority=30,icmp6,cookie=0x16,actions=drop",
    ] {
        ofctl(&h, &format!("add-flow TARGET '{f}'"));
    }
    let dump = ofctl(&h, "dump-flows TARGET");
    assert!(dump.contains("send_flow_rem priority=30,tcp actions=drop"), "{dump}");
    assert_eq!(dump.matches("send_flow_rem").count(), 5, "{dump}");
    left.ping("10.15.0.2", 3);
    // check_overlap: a flow of the same priority that could match the same packets is refused.
    let r = h.run(
        "timeout 10 ovs-ofctl -O OpenFlow13 add-flow tcp:127.0.0.1:6653 'check_overlap,priority=30,ip,actions=drop'",
    );
    assert!(String::from_utf8_lossy(&r.stderr).contains("OFPFMFC_OVERLAP"), "{r:?}");
    ofctl(&h, "add-flow TARGET 'check_overlap,priority=31,ip,actions=drop'");
    ofctl(&h, "--strict del-flows TARGET 'priority=31,ip'");
    ofctl(&h, "del-flows TARGET tcp");
    ofctl(&h, "del-flows TARGET icmp6");
    ofctl(&h, "del-groups TARGET group_id=5");
    ofctl(&h, "del-meters TARGET meter=3");
    // The two timed flows go within a few seconds.
    wait_for("the timed flows to expire", 15, || !ofctl(&h, "dump-flows TARGET").contains("cookie=0x1"));
    std::thread::sleep(std::time::Duration::from_millis(500));
    let _ = monitor.kill();
    let _ = monitor.wait();
    let seen = std::fs::read_to_string(&out).unwrap_or_default();
    let removed: Vec<&str> = seen.lines().filter(|l| l.starts_with("OFPT_FLOW_REMOVED")).collect();
    let line = |cookie: &str| removed.iter().find(|l| l.contains(&format!("cookie:{cookie} "))).copied().unwrap_or("");
    assert!(line("0x11").contains("priority=50,in_port=1 reason=idle table_id=0"), "{seen}");
    assert!(!line("0x11").contains("pkts0 "), "the flow carried the pings: {}", line("0x11"));
    assert!(line("0x12").contains("reason=hard") && line("0x12").contains("hard5"), "{seen}");
    assert!(line("0x13").contains("priority=30,tcp reason=delete"), "{seen}");
    assert!(line("0x14").contains("reason=group_delete"), "{seen}");
    assert!(line("0x15").contains("reason=meter_delete"), "{seen}");
    assert_eq!(removed.len(), 5, "only the flows that asked: {seen}");
}
