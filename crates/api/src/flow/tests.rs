use super::*;

fn ports(name: &str) -> Option<u32> {
    match name {
        "vx1" => Some(1),
        "vx2" => Some(2),
        n => n.parse().ok(),
    }
}

fn p(text: &str) -> Result<Flow, FlowError> {
    parse(text, &ports)
}

#[test]
fn the_issues_flows() {
    let f = p("ip,nw_dst=172.31.1.0/24,actions=output:1").unwrap();
    assert_eq!(f.priority, DEFAULT_PRIORITY);
    assert_eq!(f.matches[1], Match { field: Field::NwDst, value: 0xac1f_0100, mask: 0xffff_ff00 });
    assert_eq!(f.actions, [Action::Output(1)]);
    let f = p("icmp6,ipv6_dst=ff00::/8,actions=flood").unwrap();
    assert_eq!(f.matches[1].field, Field::NwProto);
    assert_eq!(f.matches[2].mask, 0xff00_0000_0000_0000_0000_0000_0000_0000);
    assert_eq!(f.actions, [Action::Flood]);
    let f = p("ip6,ipv6_dst=fc00:0:0:1::0/64,actions=output:vx1").unwrap();
    assert_eq!(f.actions, [Action::Output(1)]);
    let f = p("priority=10 arp actions=flood").unwrap();
    assert_eq!((f.priority, f.to_string()), (10, "priority=10,arp actions=FLOOD".to_string()));
}

#[test]
fn everything_else_parses() {
    let f =
        p("table=1,cookie=0x10,idle_timeout=5,hard_timeout=60,in_port=vx2,dl_src=02:00:00:00:00:01/ff:ff:ff:00:00:00,\
               dl_vlan=10,tcp,nw_src=10.0.0.0/255.0.0.0,nw_tos=0x20,tp_dst=80/0xfff0,tun_id=0x5,tun_src=192.0.2.1,\
               actions=mod_vlan_vid:20,strip_vlan,push_vlan:0x8100,set_field:02:00:00:00:00:09->eth_dst,\
               set_tunnel:7,set_field:192.0.2.9->tun_dst,resubmit(,2),output:LOCAL,in_port,controller,goto_table:3")
        .unwrap();
    assert_eq!((f.table, f.cookie, f.idle_timeout, f.hard_timeout), (1, 0x10, 5, 60));
    assert_eq!(f.matches.len(), 10);
    assert_eq!(f.actions.len(), 11);
    assert_eq!(f.actions[6], Action::Resubmit { port: None, table: Some(2) });
    assert_eq!(f.actions[7], Action::Output(OFPP_LOCAL));
    assert!(p("arp,arp_op=1,arp_tpa=10.0.0.1 actions=normal").is_ok());
    assert!(p("icmp,icmp_type=8,icmp_code=0 actions=drop").is_ok());
    assert_eq!(p("actions=1,2").unwrap().actions, [Action::Output(1), Action::Output(2)]);
}

#[test]
fn errors_name_the_token() {
    for (text, token, says) in [
        ("nw_dst=10.0.0.1,actions=drop", "nw_dst=10.0.0.1", "needs ip or arp"),
        ("tcp,tp_dst=99999,actions=drop", "tp_dst=99999", "out of range"),
        ("ip,nw_dst=10.0.0.0/33,actions=drop", "nw_dst=10.0.0.0/33", "0..=32"),
        ("ip,colour=blue,actions=drop", "colour=blue", "unknown field"),
        ("in_port=nope,actions=drop", "in_port=nope", "no port"),
        ("ip,actions=output:nope", "output:nope", "no port"),
        ("ip,actions=frobnicate", "frobnicate", "unknown action"),
        ("udp,tcp,actions=drop", "tcp", "contradicts"),
        ("ip,actions=drop,normal", "drop", "combined"),
        ("table=2,actions=goto_table:1", "goto_table", "not after"),
        ("ip,actions=", "actions=", "empty"),
        ("ip6,ipv6_dst=fc00::/129,actions=drop", "ipv6_dst=fc00::/129", "0..=128"),
        ("ip,nw_tos=1,actions=drop", "nw_tos=1", "ECN"),
    ] {
        let e = p(text).unwrap_err();
        assert_eq!(e.token, token, "{text}: {e}");
        assert!(e.why.contains(says), "{text}: {e}");
    }
}

/// Flows with registers and the actions that write them print as `ovs-ofctl -O OpenFlow13 parse-flow`
/// (Open vSwitch 3.1) prints them: its output for these inputs, taken from a run of it.
#[test]
fn registers_print_as_ovs_prints_them() {
    for (text, ovs) in [
        ("reg0=5,actions=load:1->reg1", "reg0=0x5 actions=load:0x1->NXM_NX_REG1[]"),
        (
            "xreg1=0x500000006,metadata=0x5/0xf,pkt_mark=1,actions=load:1->xxreg0[3],set_field:3->tun_id,\
             set_field:5/7->reg3,goto_table:3",
            "pkt_mark=0x1,reg2=0x5,reg3=0x6,metadata=0x5/0xf actions=load:0x1->NXM_NX_XXREG0[3],\
             set_field:0x3->tun_id,load:0x5->NXM_NX_REG3[0..2],goto_table:3",
        ),
        (
            "actions=move:reg0->reg1,move:NXM_NX_REG0[0..7]->NXM_OF_ETH_DST[8..15],load:0x123456789->xreg3",
            "actions=move:NXM_NX_REG0[]->NXM_NX_REG1[],move:NXM_NX_REG0[0..7]->NXM_OF_ETH_DST[8..15],\
             load:0x123456789->OXM_OF_PKT_REG3[]",
        ),
        (
            "reg0=5,actions=load:1->reg1,set_field:2->reg3,load:0xa->NXM_OF_ETH_SRC[0..7],\
             move:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15],mod_dl_src:00:00:00:00:00:01,\
             set_field:00:00:00:00:00:02->eth_dst,write_metadata:0x5/0xff",
            "reg0=0x5 actions=load:0x1->NXM_NX_REG1[],set_field:0x2->reg3,load:0xa->NXM_OF_ETH_SRC[0..7],\
             move:NXM_OF_IN_PORT[]->NXM_NX_REG0[0..15],set_field:00:00:00:00:00:01->eth_src,\
             set_field:00:00:00:00:00:02->eth_dst,write_metadata:0x5/0xff",
        ),
        ("xxreg1=0x5,actions=drop", "reg4=0,reg5=0,reg6=0,reg7=0x5 actions=drop"),
        (
            "actions=output:NXM_NX_REG0,output:reg1[16..31],output:NXM_NX_REG0[3..5],output:in_port",
            "actions=output:NXM_NX_REG0[],output:NXM_NX_REG1[16..31],output:NXM_NX_REG0[3..5],IN_PORT",
        ),
        ("xreg0=1/1,actions=drop", "reg1=0x1/0x1 actions=drop"),
        ("reg0=0/0,reg1=0,actions=drop", "reg1=0 actions=drop"),
        (
            "metadata=0x0/0xff,pkt_mark=0x5/0xf,reg15=0xffffffff,actions=drop",
            "pkt_mark=0x5/0xf,reg15=0xffffffff,metadata=0/0xff actions=drop",
        ),
        (
            "tcp,tp_dst=80,tp_src=9,nw_tos=4,nw_dst=10.0.0.1,nw_src=10.0.0.2,dl_vlan=5,dl_dst=00:00:00:00:00:01,\
             dl_src=00:00:00:00:00:02,in_port=3,metadata=1,reg1=2,reg0=1,pkt_mark=3,tun_id=5,tun_src=1.1.1.1,\
             tun_dst=2.2.2.2,actions=drop",
            "pkt_mark=0x3,tcp,reg0=0x1,reg1=0x2,tun_id=0x5,tun_src=1.1.1.1,tun_dst=2.2.2.2,metadata=0x1,in_port=3,\
             dl_vlan=5,dl_src=00:00:00:00:00:02,dl_dst=00:00:00:00:00:01,nw_src=10.0.0.2,nw_dst=10.0.0.1,nw_tos=4,\
             tp_src=9,tp_dst=80 actions=drop",
        ),
        (
            "nw_proto=47,ip,nw_tos=8,nw_dst=1.2.3.4,in_port=1,dl_vlan=3,actions=drop",
            "ip,in_port=1,dl_vlan=3,nw_dst=1.2.3.4,nw_proto=47,nw_tos=8 actions=drop",
        ),
        (
            "dl_type=0x1234,dl_src=00:00:00:00:00:01,actions=drop",
            "dl_src=00:00:00:00:00:01,dl_type=0x1234 actions=drop",
        ),
        (
            "arp,arp_op=1,arp_spa=1.1.1.1,arp_tpa=2.2.2.2,reg0=0,actions=drop",
            "arp,reg0=0,arp_spa=1.1.1.1,arp_tpa=2.2.2.2,arp_op=1 actions=drop",
        ),
        ("ip,ip_dscp=8,actions=drop", "ip,nw_tos=32 actions=drop"),
        ("dl_vlan_pcp=7,actions=drop", "dl_vlan_pcp=7 actions=drop"),
        ("dl_vlan_pcp=7,dl_vlan=5,actions=drop", "dl_vlan=5,dl_vlan_pcp=7 actions=drop"),
        ("vlan_pcp=3,actions=drop", "dl_vlan_pcp=3 actions=drop"),
        ("actions=resubmit(,1),exit,output:2", "actions=resubmit(,1),exit,output:2"),
        ("importance=5,actions=drop", "actions=drop"),
        (
            "actions=note:41.42.43,note:00.01.02.03.04.05.06.07,note",
            "actions=note:41.42.43.00.00.00,note:00.01.02.03.04.05.06.07.00.00.00.00.00.00,note:00.00.00.00.00.00",
        ),
        ("actions=set_queue:5,output:1", "actions=set_queue:5,output:1"),
        ("actions=enqueue:1:2,pop_queue", "actions=set_queue:2,output:1,pop_queue,pop_queue"),
        ("actions=output:1,clear_actions,goto_table:2", "actions=output:1,clear_actions,goto_table:2"),
        ("in_port=1,actions=meter:1,output:2", "in_port=1 actions=meter:1,output:2"),
        ("ip,actions=dec_ttl,output=2", "ip actions=dec_ttl,output:2"),
        ("actions=dec_ttl,mod_nw_ttl:5", "actions=dec_ttl,mod_nw_ttl:5"),
        ("actions=clone()", "actions=clone(drop)"),
        (
            "actions=clone(output:1,clone(mod_dl_src:00:00:00:00:00:01,output:2)),output:3",
            "actions=clone(output:1,clone(set_field:00:00:00:00:00:01->eth_src,output:2)),output:3",
        ),
        (
            "actions=bundle_load(symmetric_l4,60,hrw,ofport,reg0[0..15],members:[2,3])",
            "actions=bundle_load(symmetric_l4,60,hrw,ofport,NXM_NX_REG0[0..15],members:2,3)",
        ),
        ("actions=output(max_len=100,port=123)", "actions=output(port=123,max_len=100)"),
        (
            "actions=bundle(eth_src,50,active_backup,ofport,slaves:1)",
            "actions=bundle(eth_src,50,active_backup,ofport,members:1)",
        ),
        ("actions=bundle(symmetric_l4,60,hrw,ofport,members:)", "actions=bundle(symmetric_l4,60,hrw,ofport,members:)"),
        (
            "actions=multipath(eth_src, 50, hrw, 12, 0, NXM_NX_REG0[0..3]),multipath(symmetric_l4, 1024, iter_hash, 5000, 5050, reg0[0..12])",
            "actions=multipath(eth_src,50,hrw,12,0,NXM_NX_REG0[0..3]),multipath(symmetric_l4,1024,iter_hash,5000,5050,NXM_NX_REG0[0..12])",
        ),
        (
            "actions=bundle_load(symmetric_l3,60,hrw,ofport,reg0[0..15],members:2,3)",
            "actions=bundle_load(symmetric_l3,60,hrw,ofport,NXM_NX_REG0[0..15],members:2,3)",
        ),
        ("actions=move:OXM_OF_ETH_DST[]->OXM_OF_ETH_SRC[]", "actions=move:NXM_OF_ETH_DST[]->NXM_OF_ETH_SRC[]"),
        ("n_packets=1, n_bytes=14, idle_timeout=13, in_port=1 actions=drop", "in_port=1 actions=drop"),
        (
            "actions=output(port=LOCAL,max_len=14),output(port=IN_PORT,max_len=99)",
            "actions=output(port=LOCAL,max_len=14),output(port=IN_PORT,max_len=99)",
        ),
        ("actions=push:reg0[0..31],pop:reg0", "actions=push:NXM_NX_REG0[],pop:NXM_NX_REG0[]"),
        ("nw_frag=later,ip,nw_ttl=3,tcp,actions=drop", "tcp,nw_ttl=3,nw_frag=later actions=drop"),
        ("ipv6,nw_frag=not_later,actions=drop", "ipv6,nw_frag=not_later actions=drop"),
        (
            "actions=push:eth_src,push:eth_dst,pop:eth_src,pop:eth_dst",
            "actions=push:NXM_OF_ETH_SRC[],push:NXM_OF_ETH_DST[],pop:NXM_OF_ETH_SRC[],pop:NXM_OF_ETH_DST[]",
        ),
        (
            "mpls,mpls_bos=0,mpls_ttl=1,mpls_label=5,mpls_tc=1,actions=drop",
            "mpls,mpls_label=5,mpls_tc=1,mpls_ttl=1,mpls_bos=0 actions=drop",
        ),
        ("tcp,tp_src[5]=1,actions=flood", "tcp,tp_src=0x20/0x20 actions=FLOOD"),
        ("tcp,tp_src[6..10]=19,tp_src[0]=1,actions=flood", "tcp,tp_src=0x4c1/0x7c1 actions=FLOOD"),
        ("reg0[0..7]=5,xreg1[32..39]=3,actions=drop", "reg0=0x5/0xff,reg2=0x3/0xff actions=drop"),
        ("actions=meter:4294901760,goto_table:1", "actions=meter:4294901760,goto_table:1"),
        (
            "actions=resubmit:1,resubmit(2),resubmit(,3),resubmit(2,3)",
            "actions=resubmit:1,resubmit:2,resubmit(,3),resubmit(2,3)",
        ),
        ("dl_dst=aa:bb:cc:dd:ee:ff/00:00:00:00:00:00,actions=drop", "actions=drop"),
        ("udp dl_vlan_pcp=7 idle_timeout=5 actions=pop_vlan output:0", "udp,dl_vlan_pcp=7 actions=pop_vlan,output:0"),
    ] {
        let f = p(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(f.to_string(), ovs, "{text}");
    }
}

#[test]
fn parse_flow_prints_as_ovs_ofctl_does() {
    let f = p("table=3,cookie=0x123456789abcdef,hard_timeout=10,idle_timeout=5,priority=60000,ip actions=controller")
        .unwrap();
    assert_eq!(
        f.flow_mod_text(),
        "table:3 priority=60000,ip cookie:0x123456789abcdef idle:5 hard:10 actions=CONTROLLER:65535"
    );
    assert_eq!(p("table=0,ip actions=drop").unwrap().flow_mod_text(), "ip actions=drop");
    assert_eq!(p("actions=drop").unwrap().flow_mod_text(), "actions=drop");
    assert_eq!(p("table=1,actions=drop").unwrap().flow_mod_text(), "table:1 actions=drop");
    let f = p("send_flow_rem,table=2,idle_timeout=3,ip,actions=drop").unwrap();
    assert!(f.send_flow_rem);
    assert_eq!(f.flow_mod_text(), "table:2 ip idle:3 send_flow_rem actions=drop");
    assert_eq!(p("send_flow_rem actions=drop").unwrap().flow_mod_text(), "send_flow_rem actions=drop");
    assert!(p("send_flow_rem=1,actions=drop").is_err());
    // OVS's order for the flags, whatever order they were written in.
    let f = p("reset_counts check_overlap in_port=1 send_flow_rem actions=drop").unwrap();
    assert_eq!(f.flow_mod_text(), "in_port=1 send_flow_rem check_overlap reset_counts actions=drop");
    assert_eq!(f.of_flags(), 7);
}

#[test]
fn register_actions_are_checked() {
    for (text, says) in [
        ("actions=load:0x100->NXM_NX_REG0[0..7]", "does not fit"),
        ("actions=move:NXM_NX_REG0[0..7]->NXM_NX_REG1[0..15]", "8 bits, destination 16"),
        ("actions=load:1->NXM_OF_IN_PORT[]", "cannot write in_port"),
        ("actions=move:NXM_OF_IP_SRC[]->NXM_NX_REG0[]", "needs ip"),
        ("actions=load:1->NXM_NX_REG0[32]", "not within the 32 bits"),
        ("actions=load:1->NXM_NX_REG16[]", "unknown field"),
        ("actions=write_metadata:1,output:1", "apply_actions must appear before write_metadata"),
        ("reg16=1,actions=drop", "unknown field"),
        ("actions=output:1,meter:1", "meter must appear before apply_actions"),
        ("actions=meter:1,meter:2", "duplicate meter instruction"),
        ("actions=meter:0", "meter 0 does not exist"),
        ("in_port[0..3]=1,actions=drop", "cannot be matched in part"),
        ("nw_frag=yes,actions=drop", "needs ip"),
        ("actions=output(port=1,max_len=13)", "less than the minimum value 14"),
        ("actions=output(port=1,len=20)", "invalid key"),
        ("actions=bundle(eth_src,50,random,ofport,members:1)", "active_backup or hrw"),
        ("actions=multipath(1,2,3,4)", "not enough arguments"),
        ("actions=multipath(eth_src,50,hrw,17,0,NXM_NX_REG0[0..3])", "fewer values than n_links 17"),
        ("actions=bundle(eth_src,50,hrw,ifindex,members:1)", "named by ofport"),
        ("ip,nw_frag=maybe,actions=drop", "nw_frag is no, yes"),
        ("tcp,tp_src[0..3]=1,tp_src[2]=1,actions=drop", "contradicts"),
        ("tp_src[5]=1,actions=drop", "needs"),
        ("actions=meter:4294901761", "out of range"),
        ("reg0=0x100000000,actions=drop", "out of range"),
    ] {
        let e = p(text).unwrap_err();
        assert!(e.to_string().contains(says), "{text}: {e}");
    }
    assert!(p("ip,actions=move:NXM_OF_IP_SRC[]->NXM_NX_REG0[]").is_ok());
    assert!(p("actions=write_metadata:1,goto_table:1").is_ok());
    // The action set: written after the actions, once, and only with what an action set may hold.
    for (text, says) in [
        ("actions=write_actions(output:1),output:2", "must appear before write_actions"),
        ("actions=write_actions(output:1),clear_actions", "must appear before write_actions"),
        ("actions=write_actions(output:1),write_actions(output:2)", "duplicate"),
        ("actions=write_actions(controller(reason=no_match))", "not allowed in an action set"),
        ("actions=write_actions(note:01)", "not allowed in an action set"),
        ("actions=clone(goto_table:1)", "goto_table instruction not allowed here"),
        ("actions=clone(write_actions(output:1))", "write_actions instruction not allowed here"),
        ("actions=write_actions(clone(output:1))", "not allowed in an action set"),
    ] {
        let e = p(text).unwrap_err();
        assert!(e.to_string().contains(says), "{text}: {e}");
    }
    let f = p("actions=write_actions(mod_dl_src:00:00:00:00:00:01,output:1),write_metadata:1,goto_table:2").unwrap();
    assert_eq!(
        f.to_string(),
        "actions=write_actions(set_field:00:00:00:00:00:01->eth_src,output:1),write_metadata:0x1,goto_table:2"
    );
}

#[test]
fn flows_overlap_when_one_packet_could_match_both() {
    let a = p("ip,nw_dst=10.0.0.0/8,actions=drop").unwrap();
    assert!(a.overlaps(&p("ip,nw_dst=10.1.0.0/16,actions=drop").unwrap()));
    assert!(a.overlaps(&p("tcp,tp_dst=80,actions=drop").unwrap()), "fields only one has do not separate them");
    assert!(!a.overlaps(&p("ip,nw_dst=192.0.2.0/24,actions=drop").unwrap()));
    assert!(!a.overlaps(&p("arp,actions=drop").unwrap()));
    assert!(a.overlaps(&p("actions=drop").unwrap()));
}

#[test]
fn strict_and_loose_selection() {
    let a = p("priority=100,ip,nw_dst=172.31.1.0/24,actions=output:1").unwrap();
    let b = p("priority=100,ip,nw_dst=172.31.2.0/24,actions=output:2").unwrap();
    let c = p("arp,actions=flood").unwrap();
    let any = p("").unwrap();
    let ip = p("ip").unwrap();
    let narrow = p("ip,nw_dst=172.31.1.0/24").unwrap();
    assert!(a.covered_by(&any) && c.covered_by(&any));
    assert!(a.covered_by(&ip) && b.covered_by(&ip) && !c.covered_by(&ip));
    assert!(a.covered_by(&narrow) && !b.covered_by(&narrow));
    assert!(!a.same_match(&narrow), "strict needs the priority too");
    assert!(a.same_match(&p("priority=100,ip,nw_dst=172.31.1.0/24").unwrap()));
    let cookie = p("cookie=0x10/0xff").unwrap();
    assert!(!a.covered_by(&cookie));
}

/// What `ovs-ofctl -O OpenFlow13 parse-flow` printed for these (Open vSwitch 3.1), byte for byte.
#[test]
fn new_fields_and_writes_print_as_open_vswitch_prints_them() {
    for (text, ovs) in [
        (
            "ipv6,ipv6_label=5,nw_ttl=3,nw_ecn=1,nw_tos=4,ipv6_src=::1,ipv6_dst=::2,nw_proto=6,tp_src=1,actions=drop",
            "tcp6,ipv6_src=::1,ipv6_dst=::2,ipv6_label=0x00005,nw_tos=4,nw_ecn=1,nw_ttl=3,tp_src=1 actions=drop",
        ),
        (
            "arp,arp_sha=01:00:00:00:00:01,arp_tha=02:00:00:00:00:00/ff:00:00:00:00:00,arp_op=1,arp_spa=1.1.1.1,actions=drop",
            "arp,arp_spa=1.1.1.1,arp_op=1,arp_sha=01:00:00:00:00:01,arp_tha=02:00:00:00:00:00/ff:00:00:00:00:00 actions=drop",
        ),
        (
            "icmp6,icmp_type=135,nd_target=2001:db8::/64,nd_sll=00:00:00:00:00:05,icmp_code=0,ipv6_label=0x5/0xf,actions=drop",
            "icmp6,ipv6_label=0x00005/0x0000f,icmp_type=135,icmp_code=0,nd_target=2001:db8::/64,nd_sll=00:00:00:00:00:05 actions=drop",
        ),
        (
            "ip,actions=set_field:10.0.0.1->ip_src,mod_nw_dst:10.0.0.2,set_field:32->ip_dscp,mod_nw_tos:8,set_field:1->ip_ecn,mod_nw_ecn:2,set_field:5->nw_ttl,mod_nw_ttl:6,dec_ttl",
            "ip actions=set_field:10.0.0.1->ip_src,set_field:10.0.0.2->ip_dst,set_field:32->ip_dscp,set_field:2->ip_dscp,set_field:1->nw_ecn,set_field:2->nw_ecn,set_field:5->nw_ttl,mod_nw_ttl:6,dec_ttl",
        ),
        ("udp,actions=set_field:80->udp_src,mod_tp_dst:81", "udp actions=set_field:80->udp_src,set_field:81->udp_dst"),
        ("sctp,sctp_src=5,sctp_dst=0x10/0xf0,actions=drop", "sctp,tp_src=5,tp_dst=0x10/0xf0 actions=drop"),
        (
            "ip,actions=push_mpls:0x8847,set_field:5->mpls_label,set_field:1->mpls_tc,set_mpls_ttl:5,dec_mpls_ttl,output:1",
            "ip actions=push_mpls:0x8847,set_field:5->mpls_label,set_field:1->mpls_tc,set_mpls_ttl(5),dec_mpls_ttl,output:1",
        ),
        (
            "mplsm,mpls_label=0x5,in_port=1,actions=set_mpls_label:7,set_mpls_tc:3",
            "mplsm,in_port=1,mpls_label=5 actions=set_field:7->mpls_label,set_field:3->mpls_tc",
        ),
        ("dl_vlan=5,actions=set_field:5->vlan_pcp,mod_vlan_pcp:3", "dl_vlan=5 actions=set_field:5->vlan_pcp,set_field:3->vlan_pcp"),
        (
            "tcp,actions=load:5->NXM_NX_IP_TTL[],move:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[],load:0x50->NXM_OF_TCP_DST[]",
            "tcp actions=load:0x5->NXM_NX_IP_TTL[],move:NXM_OF_IP_SRC[]->NXM_OF_IP_DST[],load:0x50->NXM_OF_TCP_DST[]",
        ),
        ("actions=load:0->NXM_OF_VLAN_TCI[]", "actions=load:0->NXM_OF_VLAN_TCI[]"),
    ] {
        assert_eq!(p(text).unwrap().to_string(), ovs, "{text}");
    }
    // Refused as OVS refuses them: a write without its prerequisite, a value out of range.
    for bad in [
        "actions=set_field:80->tcp_src",
        "ip,actions=set_field:5->mpls_label",
        "actions=mod_nw_src:10.0.0.1",
        "ip,nw_ecn=4,actions=drop",
        "icmp6,nd_target=::1,actions=drop",
        "ip,actions=push_mpls:0x0800",
        "ipv6,ipv6_label=0x100000,actions=drop",
        "actions=load:1->NXM_OF_IP_PROTO[]",
        "ip,actions=load:1->OXM_OF_MPLS_BOS[]",
    ] {
        assert!(p(bad).is_err(), "{bad}");
    }
}

#[test]
fn ct_flows_parse_and_print_as_ovs() {
    for (text, want) in [
        ("ip,ct_state=-trk,actions=ct(table=1)", "ct_state=-trk,ip actions=ct(table=1)"),
        (
            "table=1,tcp,ct_state=+trk+new,tp_dst=22,actions=ct(commit,zone=5),output:2",
            "ct_state=+new+trk,tcp,tp_dst=22 actions=ct(commit,zone=5),output:2",
        ),
        ("ct_state=trk|est,ip,actions=NORMAL", "ct_state=est|trk,ip actions=NORMAL"),
        (
            "ip,actions=ct(commit,exec(load(0x1->ct_label[])))",
            "ip actions=ct(commit,exec(load:0x1->NXM_NX_CT_LABEL[0..63],load:0->NXM_NX_CT_LABEL[64..127]))",
        ),
        (
            "ip,actions=ct(commit,exec(set_field:0x5/0xff->ct_mark))",
            "ip actions=ct(commit,exec(load:0x5->NXM_NX_CT_MARK[0..7]))",
        ),
        (
            "ipv6,actions=ct(commit,nat(src=[fe80::20c:29ff:fe88:1]-[fe80::20c:29ff:fe88:a18b]:255-4096,random))",
            "ipv6 actions=ct(commit,nat(src=[fe80::20c:29ff:fe88:1]-[fe80::20c:29ff:fe88:a18b]:255-4096,random))",
        ),
        (
            "tcp,actions=ct(commit,nat(src=10.1.1.240-10.1.1.255),alg=ftp)",
            "tcp actions=ct(commit,nat(src=10.1.1.240-10.1.1.255),alg=ftp)",
        ),
        (
            "ct_state=+trk-inv,ct_nw_dst=10.0.0.5,ip,actions=drop",
            "ct_state=-inv+trk,ct_nw_dst=10.0.0.5,ip actions=drop",
        ),
    ] {
        assert_eq!(p(text).unwrap().to_string(), want, "{text}");
    }
    for (text, why) in [
        ("ip,actions=ct(table=255)", "invalid table 0xff"),
        ("ip,actions=ct(table=asdf)", "unknown table asdf"),
        ("ip,actions=ct(foo=bar)", "invalid argument"),
        ("ip,actions=ct(force)", "requires \"commit\""),
        ("ip,actions=nat(src=1.2.3.4)", "outside of \"ct\""),
        ("ip,actions=ct(commit,nat(src=1.2.3.4-0.1.2.3))", "invalid nat range"),
        ("ip,actions=ct(commit,nat(src=1.2.3.4,dst=2.3.4.5))", "only specify one"),
        ("ip,actions=ct(commit,nat(persistent))", "only with"),
        ("ip,actions=ct(commit,nat(src=1.2.3.4,hash,random))", "are not allowed"),
        ("ip,actions=set_field:1234->ct_mark", "outside of ct action"),
        ("ip,actions=ct(commit,exec(push_vlan(0x8100)))", "nested action push_vlan"),
        ("ip,actions=ct(commit,exec(set_field:12:34:56:78:9a:bc->eth_dst))", "nested modification of eth_dst"),
        ("ip,actions=ct(zone=NXM_NX_REG0[0..7])", "16 bits"),
        ("ip,actions=ct(commit,exec(move:reg0[0..3]->ct_mark[0..7]))", "move of 4 bits into 8"),
        ("ip,actions=ct(commit,exec(move:reg0[0..3]->reg1[0..3]))", "nested modification of reg1"),
        ("ip,ct_nw_src=10.0.0.1,actions=drop", "tracked, valid"),
        ("ip,ct_state=+trk,ct_tp_src=80,actions=drop", "tracked, valid"),
        ("ip,ct_state=+bogus,actions=drop", "unknown connection tracking state"),
    ] {
        let e = p(text).expect_err(text);
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
}

#[test]
fn ct_needs_an_ip_match_as_in_ovs() {
    for (text, ok) in [
        ("actions=ct(commit)", false),
        ("arp,actions=ct(commit)", false),
        ("ip,actions=ct(commit)", true),
        ("ipv6,actions=ct(table=1)", true),
        ("ip,ct_state=+trk+inv,actions=ct(commit)", false),
        ("ip,ct_state=+trk+inv,actions=ct(table=2)", true),
        ("udp,actions=ct(commit,alg=ftp)", false),
        ("tcp,actions=ct(commit,alg=ftp)", true),
        ("udp,actions=ct(commit,alg=tftp)", true),
        ("actions=ct_clear", true),
    ] {
        assert_eq!(p(text).is_ok(), ok, "{text}: {:?}", p(text));
    }
}

#[test]
fn tcp_flags_parse_and_print_as_ovs() {
    for (text, want) in [
        (
            "in_port=1,tcp,tp_dst=80,tcp_flags=+syn-rst-ack-fin,action=2",
            "tcp,in_port=1,tp_dst=80,tcp_flags=-fin+syn-rst-ack actions=output:2",
        ),
        ("tcp6,tcp_flags=+ack,actions=drop", "tcp6,tcp_flags=+ack actions=drop"),
        ("tcp,tcp_flags=syn|ack,actions=drop", "tcp,tcp_flags=syn|ack actions=drop"),
        ("tcp,tcp_flags=0x012/0x0ff,actions=drop", "tcp,tcp_flags=-fin+syn-rst-psh+ack-urg-ece-cwr actions=drop"),
        ("tcp,tcp_flags=0,actions=drop", "tcp,tcp_flags=0 actions=drop"),
    ] {
        assert_eq!(p(text).unwrap().to_string(), want, "{text}");
    }
    for (text, why) in [
        ("udp,tcp_flags=+syn,actions=drop", "needs tcp"),
        ("ip,tcp_flags=+syn,actions=drop", "needs tcp"),
        ("tcp,tcp_flags=+sin,actions=drop", "unknown flag"),
        ("tcp,tcp_flags=0x1000,actions=drop", "out of range"),
        ("tcp,tcp_flags=+syn+syn,actions=drop", "given twice"),
    ] {
        let e = p(text).expect_err(text);
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
}

#[test]
fn tun_metadata_parses_prints_and_round_trips_over_openflow() {
    let f = parse("priority=1,tun_metadata1=0xef/0xff,tun_metadata0=0xabcd,actions=drop", &|p| p.parse().ok()).unwrap();
    assert_eq!(f.to_string(), "priority=1,tun_metadata0=0xabcd,tun_metadata1=0xef actions=drop");
    let f = parse("tun_metadata2=0x1200/0xff00,tun_id=5,in_port=1,actions=load:0x11223344->tun_metadata1", &|p| {
        p.parse().ok()
    })
    .unwrap();
    assert_eq!(
        f.to_string(),
        "tun_id=0x5,tun_metadata2=0x1200/0xff00,in_port=1 actions=set_field:0x11223344->tun_metadata1"
    );
    let f = parse("actions=move:tun_metadata0[32..63]->NXM_NX_REG0[]", &|p| p.parse().ok()).unwrap();
    assert_eq!(f.to_string(), "actions=move:NXM_NX_TUN_METADATA0[32..63]->NXM_NX_REG0[]");
    // 16 bytes are weft's limit (OVS's is 124), said as such; tun_metadata64 does not exist.
    assert!(parse(&format!("tun_metadata0=0x{},actions=drop", "ab".repeat(16)), &|p| p.parse().ok()).is_ok());
    let e = parse(&format!("tun_metadata0=0x{},actions=drop", "ab".repeat(17)), &|p| p.parse().ok()).unwrap_err();
    assert!(e.why.contains("at most 16 bytes"), "{e}");
    assert!(parse("tun_metadata64=1,actions=drop", &|p| p.parse().ok()).is_err());
    // Over OpenFlow: the match as long as its value, the mask only when partial; OVS's 124-byte form read.
    let f = parse("tun_metadata0=0xab,tun_metadata3=0x100/0xf00,actions=drop", &|p| p.parse().ok()).unwrap();
    let mut oxm = Vec::new();
    crate::ofp::put_matches(&mut oxm, &f.matches);
    assert_eq!(oxm, [0x00, 0x01, 0x50, 0x01, 0xab, 0x00, 0x01, 0x57, 0x04, 0x01, 0x00, 0x0f, 0x00]);
    let tlvs = weft_wire::openflow::parse_oxm_tlvs(&oxm).unwrap();
    assert_eq!(crate::ofp::matches_from_oxm(&tlvs).unwrap(), f.matches);
    let mut long = vec![0x00, 0x01, 0x50, 124];
    long.extend_from_slice(&[0; 120]);
    long.extend_from_slice(&[0, 0, 0x12, 0x34]);
    let tlvs = weft_wire::openflow::parse_oxm_tlvs(&long).unwrap();
    let m = crate::ofp::matches_from_oxm(&tlvs).unwrap();
    assert_eq!((m[0].field, m[0].value, m[0].mask), (Field::TunMetadata(0), 0x1234, u128::MAX));
    long[4] = 1;
    let tlvs = weft_wire::openflow::parse_oxm_tlvs(&long).unwrap();
    assert!(crate::ofp::matches_from_oxm(&tlvs).is_err(), "more than 16 significant bytes");
}

#[test]
fn output_with_a_port_in_parentheses_is_output_to_it() {
    let p = |t: &str| parse(t, &|n| n.parse().ok()).unwrap().to_string();
    assert_eq!(
        p("in_port=10 actions=write_actions(output(CONTROLLER))"),
        "in_port=10 actions=write_actions(CONTROLLER:65535)"
    );
    assert_eq!(p("actions=output(3)"), "actions=output:3");
    assert_eq!(p("actions=output(port=3,max_len=100)"), "actions=output(port=3,max_len=100)");
    assert!(parse("actions=output(port=3,x=1)", &|n| n.parse().ok()).is_err());
}

#[test]
fn conjunctions_parse_print_and_refuse_as_ovs() {
    let f = parse("priority=5,ip,nw_src=10.0.0.1 actions=conjunction( 1234 , 1 / 2 ),note:ab", &|_| None).unwrap();
    assert_eq!(f.actions[0], Action::Conjunction { id: 1234, k: 1, n: 2 });
    assert_eq!(f.to_string(), "priority=5,ip,nw_src=10.0.0.1 actions=conjunction(1234,1/2),note:ab.00.00.00.00.00");
    // conj_id prints after the mark, before what connection tracking found and the protocol (as OVS).
    let f = parse("ct_state=+trk,ip,conj_id=5,pkt_mark=1 actions=drop", &|_| None).unwrap();
    assert_eq!(f.to_string(), "pkt_mark=0x1,conj_id=5,ct_state=+trk,ip actions=drop");
    for (text, why) in [
        ("ip actions=conjunction(1,1/2),normal", "not any other kind of action (such as the \"NORMAL\" action"),
        ("ip actions=conjunction(1,1/2),goto_table:3", "(such as the \"goto_table\" action"),
        ("ip actions=conjunction(1,3/2)", "clause index must be less than or equal to number of clauses"),
        ("ip actions=conjunction(1,1/1)", "at least 2 clauses"),
        ("ip actions=conjunction(1,1/65)", "at most 64 clauses"),
        ("ip actions=conjunction(1,0/2)", "clause index must be positive"),
        ("ip actions=conjunction(1)", "conjunction takes (id, k/n)"),
        ("conj_id=0x10/0xff actions=drop", ""),
    ] {
        let e = parse(text, &|_| None).expect_err(text);
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
}

#[test]
fn learn_parses_prints_and_refuses_as_ovs() {
    let port = |p: &str| p.parse().ok();
    for (text, want) in [
        (
            "actions=learn(table=1,hard_timeout=60,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:NXM_OF_IN_PORT[])",
            "actions=learn(table=1,hard_timeout=60,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:NXM_OF_IN_PORT[])",
        ),
        (
            "actions=learn(priority=5,idle_timeout=10,cookie=0x123,send_flow_rem,delete_learned,table=3,eth_dst=eth_src,load:1->reg0,load:reg1[0..7]->reg2[8..15],output:reg3[0..15])",
            "actions=learn(table=3,idle_timeout=10,priority=5,send_flow_rem,delete_learned,cookie=0x123,NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0x1->NXM_NX_REG0[],load:NXM_NX_REG1[0..7]->NXM_NX_REG2[8..15],output:NXM_NX_REG3[0..15])",
        ),
        (
            "actions=learn(vlan_tci=5,reg3=0,reg1[0..3]=0,reg2[0..3]=10,in_port=65534,eth_src=00:11:22:33:44:55,tun_id=7,metadata=9,pkt_mark=3,load:0->reg4[0..3],load:10->reg4)",
            "actions=learn(table=1,vlan_tci=0x5,reg3=0,NXM_NX_REG1[0..3]=0,NXM_NX_REG2[0..3]=0xa,in_port=LOCAL,eth_src=00:11:22:33:44:55,tun_id=0x7,metadata=0x9,pkt_mark=0x3,load:0->NXM_NX_REG4[0..3],load:0xa->NXM_NX_REG4[])",
        ),
        ("actions=learn(limit=10,eth_src)", "actions=learn(table=1,limit=10,NXM_OF_ETH_SRC[])"),
        ("actions=learn()", "actions=learn(table=1)"),
        (
            "ip,actions=learn(eth_type=0x800,ip_dst=10.0.0.1,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],reg6[0..15]=in_port),output:2",
            "ip actions=learn(table=1,eth_type=0x800,ip_dst=10.0.0.1,NXM_OF_IP_SRC[]=NXM_OF_IP_DST[],NXM_NX_REG6[0..15]=NXM_OF_IN_PORT[]),output:2",
        ),
        (
            "actions=clone(learn(table=2,eth_src),output:1)",
            "actions=clone(learn(table=2,NXM_OF_ETH_SRC[]),output:1)",
        ),
    ] {
        let f = parse(text, &port).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(f.to_string(), want, "{text}");
        assert_eq!(parse(want, &port).unwrap().actions, f.actions, "{want} reads back the same");
    }
    for (text, why) in [
        ("actions=learn(tcp_dst=80)", "needs tcp, udp, tcp6 or udp6 first"),
        ("actions=learn(ip_src=ip_dst)", "the new flow needs ip or arp"),
        ("actions=learn(eth_type=0x800,ip_src=ip_dst)", "NXM_OF_IP_SRC[]=NXM_OF_IP_DST[]: needs ip or arp"),
        ("actions=learn(reg0=0x123456789)", "out of range"),
        ("actions=learn(load:eth_src->reg0)", "source field is 48 bits wide but destination is 32 bits wide"),
        ("actions=learn(reg0=reg1[0..15])", "source field is 16 bits wide but destination is 32 bits wide"),
        ("actions=learn(table=255)", "table id 255 not valid"),
        ("actions=learn(result_dst=reg0[1])", "result_dst"),
        ("actions=learn(load:1->in_port)", "read-only"),
        ("actions=write_actions(learn(eth_src))", ""),
    ] {
        let e = parse(text, &port).expect_err(text);
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
    let many: Vec<String> = (0..17).map(|i| format!("reg{}", i % 16)).collect();
    let e = parse(&format!("actions=learn({})", many.join(",")), &port).expect_err("17 reads");
    assert!(e.to_string().contains("at most 16 fields"), "{e}");
}

#[test]
fn a_learn_builds_the_flow_ovs_would() {
    use learn::{learned_flow_text, learns_in};
    let port = |p: &str| p.parse().ok();
    // Neutron's br-tun MAC learning: the VLAN and the source MAC are matched, the VLAN cleared, the tunnel ID
    // kept, and the output is the input port.
    let f = parse(
        "table=10,actions=learn(table=20,hard_timeout=300,priority=1,cookie=0x7,NXM_OF_VLAN_TCI[0..11],NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[],load:0->NXM_OF_VLAN_TCI[],load:NXM_NX_TUN_ID[]->NXM_NX_TUN_ID[],output:NXM_OF_IN_PORT[]),output:1",
        &port,
    )
    .unwrap();
    let learns = learns_in(&f.actions);
    assert_eq!(learns.len(), 1);
    let (at, l, specs) = &learns[0];
    assert_eq!((*at, l.table, specs.len()), (0, 20, 5));
    // VLAN 5 (and the CFI bit, not read: 12 bits), the source MAC, the tunnel ID, the input port.
    let text = learned_flow_text(l, specs, &[0x005, 0x0200_0000_0001, 0x1234, 3]).unwrap();
    let learned = parse(&text, &port).unwrap();
    assert_eq!(
        learned.to_string(),
        "priority=1,vlan_tci=0x0005/0x0fff,dl_dst=02:00:00:00:00:01 \
         actions=load:0->NXM_OF_VLAN_TCI[],load:0x1234->NXM_NX_TUN_ID[],output:3"
    );
    assert_eq!((learned.table, learned.cookie, learned.hard_timeout, learned.idle_timeout), (20, 7, 300, 0));
    // Too few values for the specs: no flow. An output to a reserved port other than the four OVS takes: none.
    assert!(learned_flow_text(l, specs, &[1, 2]).is_none());
    let text = learned_flow_text(l, specs, &[0x005, 0x0200_0000_0001, 0x1234, 0xfffd]).unwrap();
    assert!(text.ends_with("actions=load:0->NXM_OF_VLAN_TCI[],load:0x1234->NXM_NX_TUN_ID[]"), "{text}");
    let text = learned_flow_text(l, specs, &[0x005, 0x0200_0000_0001, 0x1234, 0xfffe]).unwrap();
    assert!(text.ends_with(",LOCAL"), "{text}");
    // Matches on whole fields are written in their own syntax, so that the new flow's prerequisites hold.
    let f =
        parse("udp,actions=learn(eth_type=0x800,nw_proto=17,udp_dst=udp_src,NXM_OF_IP_DST[]=NXM_OF_IP_SRC[])", &port)
            .unwrap();
    let (_, l, specs) = &learns_in(&f.actions)[0];
    let text = learned_flow_text(l, specs, &[53, 0x0a00_0001]).unwrap();
    let learned = parse(&text, &port).unwrap();
    assert_eq!((learned.to_string().as_str(), learned.table), ("udp,nw_dst=10.0.0.1,tp_dst=53 actions=drop", 1));
}

#[test]
fn fin_timeout_parses_and_prints_as_ovs() {
    let port = |p: &str| p.parse().ok();
    for (text, want) in [
        (
            "tcp,actions=fin_timeout(idle_timeout=5,hard_timeout=15)",
            "tcp actions=fin_timeout(idle_timeout=5,hard_timeout=15)",
        ),
        (
            "tcp6,actions=fin_timeout(idle_timeout=5,hard_timeout=0),output:1",
            "tcp6 actions=fin_timeout(idle_timeout=5),output:1",
        ),
        ("actions=fin_timeout()", "actions=fin_timeout()"),
        (
            "actions=learn(table=2,fin_hard_timeout=7,fin_idle_timeout=3,eth_src)",
            "actions=learn(table=2,fin_idle_timeout=3,fin_hard_timeout=7,NXM_OF_ETH_SRC[])",
        ),
    ] {
        assert_eq!(parse(text, &port).unwrap().to_string(), want, "{text}");
    }
    for (text, why) in [
        ("tcp,actions=fin_timeout(idle_timeout=70000)", "invalid idle_timeout"),
        ("tcp,actions=fin_timeout(foo=1)", "invalid key"),
        ("tcp actions=push_mpls:0x8847,fin_timeout(idle_timeout=1)", "needs TCP"),
        ("udp actions=fin_timeout(idle_timeout=1)", "needs TCP"),
    ] {
        let e = parse(text, &port).expect_err(text);
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
    // A learned flow gets the learn's fin_timeout first.
    let f = parse("actions=learn(table=2,fin_idle_timeout=3,eth_src)", &port).unwrap();
    let (_, l, specs) = &learn::learns_in(&f.actions)[0];
    let text = learn::learned_flow_text(l, specs, &[0x0200_0000_0001]).unwrap();
    assert!(text.ends_with("eth_src=02:00:00:00:00:01 actions=fin_timeout(idle_timeout=3)"), "{text}");
    assert!(parse(&text, &port).is_ok());
}
