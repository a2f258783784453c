use super::*;

// ---- Flows ----

#[test]
fn an_output_action_sends_to_that_port() {
    let mut h = Harness::new(flows(vec![(10, vec![], vec![ActRt::Output(P3)])]).build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"]);
}

#[test]
fn a_table_miss_drops_and_counts() {
    let mut h = Harness::new(flows(vec![(10, vec![m(slot::IN_PORT, 2)], vec![ActRt::Output(P3)])]).build());
    assert!(h.send("p1", &raw(B, A)).is_empty());
    assert_eq!(h.drops("p1", DropReason::NoFlow), 1);
    assert_eq!(h.sw.table_stats("br0").unwrap(), [(1, 0)]);
}

#[test]
fn a_flow_without_actions_drops_and_counts() {
    let mut h = Harness::new(flows(vec![(10, vec![], vec![])]).build());
    assert!(h.send("p1", &raw(B, A)).is_empty());
    assert_eq!(h.drops("p1", DropReason::FlowDrop), 1);
}

#[test]
fn the_highest_priority_match_wins() {
    let t = vec![
        (10, vec![], vec![ActRt::Output(P2)]),
        (20, vec![m(slot::DL_DST, u128::from(B.as_u64()))], vec![ActRt::Output(P3)]),
    ];
    let mut h = Harness::new(flows(t).build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"]);
    assert_eq!(h.ports("p1", &raw(C, A)), ["p2"]);
}

#[test]
fn flood_all_and_in_port_actions() {
    let mut h = Harness::new(flows(vec![(10, vec![], vec![ActRt::Flood])]).build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["br0", "p2", "p3"]);
    let mut h = Harness::new(flows(vec![(10, vec![], vec![ActRt::InPort])]).build());
    assert_eq!(h.ports("p2", &raw(B, A)), ["p2"]);
    let mut h = Harness::new(flows(vec![(10, vec![], vec![ActRt::Output(P1)])]).build());
    assert!(h.send("p1", &raw(B, A)).is_empty(), "output to the input port is skipped (OpenFlow needs in_port)");
}

#[test]
fn the_normal_action_runs_the_learning_switch() {
    let mut h = Harness::new(flows(vec![(10, vec![], vec![ActRt::Normal])]).build());
    h.send("p2", &raw(BCAST, B));
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2"]);
}

#[test]
fn a_controller_action_hands_the_frame_over_with_its_cookie() {
    let mut h = Harness::new(
        flows(vec![(10, vec![], vec![ActRt::Controller { max_len: 64, reason: pipeline::REASON_AUTO, id: 0 }])])
            .build(),
    );
    assert!(h.send("p1", &raw(B, A)).is_empty());
    let c = h.outs.to_controller[0];
    assert_eq!((c.bridge, c.in_port, c.table, c.cookie, c.max_len), (0, P1, 0, 0xc0, 64));
}

#[test]
fn vlan_actions_change_the_tag_it_leaves_with() {
    let net = two_taps().vlan("p3", None, &[7]).table(
        0,
        vec![(10, vec![], vec![ActRt::ModVlanVid(7), ActRt::Output(P3), ActRt::StripVlan, ActRt::Output(P2)])],
    );
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!(out[0], Out { port: "p3".into(), frame: tagged(&raw(B, A), 7), remote: None, vni: None, gso: None });
    assert_eq!(out[1].frame, raw(B, A));
}

#[test]
fn a_rewrite_after_an_output_does_not_change_what_was_sent() {
    let t = vec![(
        10,
        vec![],
        vec![ActRt::SetEthDst(B), ActRt::Output(P2), ActRt::SetEthDst(C), ActRt::Output(P3), ActRt::SetEthSrc(B)],
    )];
    let mut h = Harness::new(flows(t).build());
    let original = raw(BCAST, A);
    let out = h.send("p1", &original);
    assert_eq!(out[0].frame, raw(B, A));
    assert_eq!(out[1].frame, raw(C, A));
    assert_eq!(&h.rx[..original.len()], &original[..], "the received frame itself is left alone");
}

#[test]
fn tunnel_actions_set_the_vni_and_the_vtep() {
    let net = tunnels().table(
        0,
        vec![(
            10,
            vec![],
            vec![ActRt::SetTunId(77), ActRt::SetTunDst("192.0.2.99".parse().unwrap()), ActRt::Output(PortIdx(2))],
        )],
    );
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!(
        (out[0].port.as_str(), out[0].vni, out[0].remote),
        ("vx1", Some(77), Some("192.0.2.99".parse().unwrap()))
    );
}

#[test]
fn resubmit_and_goto_table_continue_in_other_tables() {
    let net = two_taps()
        .table(0, vec![(10, vec![], vec![ActRt::Resubmit { port: None, table: Some(1) }, ActRt::GotoTable(2)])])
        .table(1, vec![(10, vec![], vec![ActRt::Output(P2)])])
        .table(2, vec![(10, vec![], vec![ActRt::Output(P3)])]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2", "p3"]);
    assert_eq!(h.sw.table_stats("br0").unwrap(), [(1, 1), (1, 1), (1, 1)]);
}

#[test]
fn resubmit_with_a_port_looks_up_as_if_from_it() {
    let net = two_taps().table(
        0,
        vec![
            (10, vec![m(slot::IN_PORT, 1)], vec![ActRt::Resubmit { port: Some(P2), table: None }]),
            (10, vec![m(slot::IN_PORT, 2)], vec![ActRt::Output(P3)]),
        ],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"]);
}

#[test]
fn a_resubmit_loop_ends() {
    let net = two_taps()
        .table(0, vec![(10, vec![], vec![ActRt::Resubmit { port: None, table: Some(0) }, ActRt::Output(P2)])]);
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!(out.len(), usize::from(MAX_RESUBMIT) + 1, "each level outputs once, and the depth is bounded");
}

#[test]
fn flows_match_l3_and_l4_fields() {
    let t = vec![
        (30, vec![m(slot::DL_TYPE, 0x0800), m(slot::NW_PROTO, 17), m(slot::TP_DST, 53)], vec![ActRt::Output(P2)]),
        (
            20,
            vec![m(slot::DL_TYPE, 0x0806), m(slot::NW_PROTO, 1), m(slot::NW_DST, 0x0a00_0002)],
            vec![ActRt::Output(P3)],
        ),
        (
            10,
            vec![m(slot::DL_TYPE, 0x86dd), m(slot::NW_DST, u128::from("2001:db8::2".parse::<Ipv6Addr>().unwrap()))],
            vec![ActRt::Output(PortIdx(0))],
        ),
    ];
    let mut h = Harness::new(flows(t).build());
    assert_eq!(h.ports("p1", &udp4(B, A, 100, true, 53)), ["p2"]);
    assert!(h.send("p1", &udp4(B, A, 100, true, 54)).is_empty());
    assert_eq!(h.ports("p1", &arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 2])), ["p3"]);
    assert!(h.send("p1", &arp(2, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 2])).is_empty(), "arp_op 2 does not match");
    assert_eq!(h.ports("p1", &udp6(B, A, 100)), ["br0"]);
}

#[test]
fn flows_match_the_tunnel_id_and_source_and_the_vlan() {
    let net = tunnels().table(
        0,
        vec![
            (20, vec![m(slot::TUN_ID, 42), m(slot::TUN_SRC, 0xc000_020c)], vec![ActRt::Output(PortIdx(1))]),
            (10, vec![m(slot::VLAN_TCI, 0x1005)], vec![ActRt::Output(PortIdx(3))]),
        ],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.send_from("vx1", &raw(B, A), Some("192.0.2.12"))[0].port, "p1");
    assert!(h.send_from("vx2", &raw(B, A), Some("192.0.2.13")).is_empty(), "another VTEP: no match");
    let out = h.send("p1", &tagged(&raw(B, A), 5));
    assert_eq!((out.len(), out[0].port.as_str()), (1, "vx2"), "VLAN 5");
    assert_eq!(out[0].frame, tagged(&raw(B, A), 5), "a trunk tunnel keeps the tag");
    assert!(h.send("p1", &raw(B, A)).is_empty(), "untagged: no match");
}

#[test]
fn flow_counters_count_and_survive_a_new_pipeline() {
    let t = || vec![(10, vec![], vec![ActRt::Output(P2)])];
    let mut h = Harness::new(flows(t()).build());
    h.send("p1", &raw(B, A));
    h.send("p1", &raw(B, A));
    assert_eq!(h.sw.flow_stats("br0", h.now).unwrap(), [(100, 2, 120, 0)]);
    let mut next = flows(t()).build();
    Arc::get_mut(&mut next).unwrap().generation = 2;
    h.sw.install(next, h.now);
    assert_eq!(h.sw.flow_stats("br0", h.now).unwrap(), [(100, 2, 120, 0)]);
}

// ---- A new pipeline ----

#[test]
fn a_new_pipeline_keeps_what_was_learned_by_port_name() {
    let mut h = Harness::new(two_taps().build());
    h.send("p3", &raw(BCAST, C));
    h.sw.counter(PortIdx(3)).tx(100);
    // p2 goes away: p3 moves from index 3 to 2.
    let mut next = Net::default().bridge("br0").tap("p1", 1).tap("p3", 3).build();
    Arc::get_mut(&mut next).unwrap().generation = 2;
    h.sw.install(next, h.now);
    assert_eq!(h.ports("p1", &raw(C, A)), ["p3"]);
    assert_eq!(h.sw.port_counters("br0").unwrap()[2].2.tx_bytes, 100);
}

#[test]
fn a_removed_bridge_takes_its_table_with_it() {
    let mut h = Harness::new(two_taps().build());
    h.send("p1", &raw(BCAST, A));
    let mut next = Net::default().bridge("br1").tap("q1", 1).build();
    Arc::get_mut(&mut next).unwrap().generation = 2;
    h.sw.install(next, h.now);
    assert!(h.sw.fdb_rows("br0", h.now).is_none());
    assert!(h.sw.fdb_rows("br1", h.now).unwrap().is_empty());
}

// ---- Trace ----

/// Trace runs the switch with an observer: the outputs it reports are what the switch emits, for every kind
/// of frame, ARP suppression and MTU errors included.
#[test]
fn trace_reports_exactly_what_the_switch_emits() {
    let frames: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
        ("p2", arp(2, A, B, [10, 0, 0, 2], [10, 0, 0, 1]), None),
        ("p1", arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 2]), None),
        ("p1", arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 7]), None),
        ("vx1", raw(BCAST, C), Some("192.0.2.12")),
        ("p1", udp4(C, A, 1500, true, 53), None),
        ("p1", raw(C, A), None),
        ("p2", raw(BCAST, B), None),
    ];
    let mut h = Harness::new(proxy_net().build());
    for (port, frame, remote) in frames {
        // The trace first, on a copy, then the real thing from the same state.
        let mut copy = Harness { sw: h.sw.clone(), ..Harness::new(proxy_net().build()) };
        let input = copy.input(port, &frame, remote, None, None);
        let mut steps: Vec<Step> = Vec::new();
        copy.run(input, &mut steps);
        let traced: Vec<Emission> = steps
            .iter()
            .filter_map(|s| match s {
                Step::Output { emission, too_big: None } => Some(*emission),
                _ => None,
            })
            .collect();
        h.send_from(port, &frame, remote);
        assert_eq!(traced, h.outs.sends, "trace and switch disagree on a frame from {port}: {steps:?}");
    }
}

#[test]
fn trace_says_why_a_frame_is_dropped() {
    let mut h = Harness::new(vlan_net().build());
    let input = h.input("a10", &tagged(&raw(BCAST, A), 20), None, None, None);
    let mut steps: Vec<Step> = Vec::new();
    h.run(input, &mut steps);
    assert_eq!(steps, [Step::Note("dropped at the input port: it does not carry VLAN 20".into())]);
    let mut h = Harness::new(flows(vec![(10, vec![m(slot::IN_PORT, 9)], vec![])]).build());
    let input = h.input("p1", &raw(B, A), None, None, None);
    let mut steps: Vec<Step> = Vec::new();
    h.run(input, &mut steps);
    assert_eq!(steps[1], Step::Flow { table: 0, rule: None });
}

#[test]
fn the_quiet_observer_and_a_recording_one_switch_alike() {
    let mut h = Harness::new(proxy_net().build());
    let mut g = Harness::new(proxy_net().build());
    let frames = [raw(BCAST, A), raw(A, B), arp(1, BCAST, C, [10, 0, 0, 3], [10, 0, 0, 4]), udp4(A, B, 1500, true, 53)];
    for f in &frames {
        let a = h.send("p1", f);
        let input = g.input("p1", f, None, None, None);
        let b = g.run(input, &mut Vec::new());
        assert_eq!(a, b);
    }
    assert_eq!(h.sw.fdb_rows("br0", h.now), g.sw.fdb_rows("br0", g.now));
}

#[test]
fn a_bridge_failed_open_switches_as_a_learning_switch_until_closed_again() {
    let net = two_taps().table(0, vec![(0, vec![], vec![])]);
    let p = net.build();
    let mut h = Harness::new(p.clone());
    assert!(h.send("p1", &raw(BCAST, A)).is_empty(), "the flows drop everything");
    p.bridges[0].fail_open.store(true, Ordering::Relaxed);
    assert_eq!(h.ports("p1", &raw(BCAST, A)), ["br0", "p2", "p3"]);
    assert_eq!(h.ports("p2", &raw(A, B)), ["p1"], "and learns");
    p.bridges[0].fail_open.store(false, Ordering::Relaxed);
    assert!(h.send("p2", &raw(A, B)).is_empty());
}

#[test]
fn tcp_flags_are_matched() {
    // A bare SYN to p2, anything else with ACK to p3, other TCP dropped.
    let syn = 0x002;
    let ack = 0x010;
    let net = two_taps().table(
        0,
        vec![
            (20, vec![(slot::TCP_FLAGS, syn, syn | ack | 0x004)], vec![ActRt::Output(P2)]),
            (10, vec![(slot::TCP_FLAGS, ack, ack)], vec![ActRt::Output(P3)]),
        ],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &tcp4(0x02)), ["p2"]);
    assert_eq!(h.ports("p1", &tcp4(0x12)), ["p3"]);
    assert_eq!(h.ports("p1", &tcp4(0x10)), ["p3"]);
    assert!(h.ports("p1", &tcp4(0x04)).is_empty());
}

#[test]
fn a_learn_hands_the_fields_it_reads_to_the_control_plane() {
    // learn(…, NXM_OF_ETH_DST[]=NXM_OF_ETH_SRC[], output:NXM_OF_IN_PORT[]) after a load into reg0 (which a
    // learn reading reg0 sees as written), then an output.
    use crate::classifier::SubSlot;
    let eth_src = SubSlot { slot: slot::DL_SRC, ofs: 0, nbits: 48 };
    let in_port = SubSlot { slot: slot::IN_PORT, ofs: 0, nbits: 16 };
    let reg0 = SubSlot { slot: slot::reg(0), ofs: 0, nbits: 32 };
    let net = two_taps().table(
        0,
        vec![(
            0,
            vec![],
            vec![
                ActRt::SetBits { slot: slot::reg(0), value: 77, mask: 0xffff_ffff },
                ActRt::Learn { n: 3, ordinal: 1, flow: 9 },
                ActRt::LearnSrc(eth_src),
                ActRt::LearnSrc(in_port),
                ActRt::LearnSrc(reg0),
                ActRt::Output(P2),
            ],
        )],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2"], "the learn's sources are not actions");
    assert_eq!(h.outs.learned.len(), 1);
    let l = h.outs.learned[0];
    assert_eq!((l.bridge, l.flow, l.ordinal, l.n), (0, 9, 1, 3));
    let p1 = u128::from(h.sw.pipeline().ports[usize::from(h.port("p1").0)].ofport);
    assert_eq!(&l.values[..3], &[u128::from(A.as_u64()), p1, 77]);
}

#[test]
fn fin_timeout_reports_fins_and_resets_only() {
    let net = two_taps()
        .table(0, vec![(0, vec![], vec![ActRt::FinTimeout { idle: 1, hard: 2, flow: 5 }, ActRt::Output(P2)])]);
    let mut h = Harness::new(net.build());
    for (flags, reported) in [(0x10, false), (0x02, false), (0x11, true), (0x04, true), (0x14, true)] {
        assert_eq!(h.ports("p1", &tcp4(flags)), ["p2"]);
        let want = reported.then_some(FinSeen { bridge: 0, flow: 5, idle: 1, hard: 2 });
        assert_eq!(h.outs.fins.first().copied(), want, "TCP flags {flags:#x}");
    }
    // Not TCP: nothing.
    assert_eq!(h.ports("p1", &udp4(B, A, 60, false, 80)), ["p2"]);
    assert!(h.outs.fins.is_empty());
}

/// A TCP segment from A to B (port 80) with these flags.
fn tcp4(flags: u8) -> Vec<u8> {
    let mut f = udp4(B, A, 60, false, 80);
    f[23] = 6;
    f[14 + 20 + 12] = 0x50;
    f[14 + 20 + 13] = flags;
    f
}
