use super::*;

// ---- Groups: all, select, indirect, fast failover ----

fn three_taps() -> Net {
    two_taps().tap("p4", 4)
}

#[test]
fn an_all_group_sends_a_copy_through_every_bucket_each_rewritten_on_its_own() {
    let set_dst = |mac: u64| ActRt::SetBits { slot: slot::DL_DST, value: u128::from(mac), mask: 0xffff_ffff_ffff };
    let net = three_taps()
        .group(
            1,
            GroupKind::All,
            vec![(0, None, vec![set_dst(0x0200_0000_0099), ActRt::Output(P2)]), (0, None, vec![ActRt::Output(P3)])],
        )
        .table(0, vec![(10, vec![], vec![ActRt::Group(1), ActRt::Group(7), ActRt::Output(PortIdx(4))])]);
    let mut h = Harness::new(net.build());
    let frame = raw(B, A);
    let out = h.send("p1", &frame);
    let ports: Vec<&str> = out.iter().map(|o| o.port.as_str()).collect();
    assert_eq!(ports, ["p2", "p3", "p4"], "both buckets, then the flow's own output; group 7 does not exist");
    assert_eq!(&out[0].frame[0..6], &[2, 0, 0, 0, 0, 0x99]);
    assert_eq!(out[1].frame, frame, "the second bucket sees the packet as it came");
    assert_eq!(out[2].frame, frame, "and so do the actions after the group");
}

#[test]
fn a_select_group_keeps_a_flow_on_one_bucket_and_shares_flows_by_weight() {
    let net = three_taps()
        .group(2, GroupKind::Select, vec![(1, None, vec![ActRt::Output(P2)]), (3, None, vec![ActRt::Output(P3)])])
        .table(0, vec![(10, vec![], vec![ActRt::Group(2)])]);
    let mut h = Harness::new(net.build());
    let mut counts = [0u32; 2];
    for port in 0..400u16 {
        let f = udp4(B, A, 60, false, 1000 + port);
        let first = h.ports("p1", &f);
        assert_eq!(first.len(), 1);
        assert_eq!(h.ports("p1", &f), first, "one flow, one bucket");
        counts[usize::from(first[0] == "p3")] += 1;
    }
    // Weights 1:3 — about 100 and 300 of 400 flows.
    assert!((60..=140).contains(&counts[0]) && (260..=340).contains(&counts[1]), "{counts:?}");
}

#[test]
fn indirect_and_fast_failover_groups() {
    let net = three_taps()
        .group(3, GroupKind::Indirect, vec![(0, None, vec![ActRt::Output(P3)])])
        .group(
            4,
            GroupKind::FastFailover,
            vec![(0, Some("p2"), vec![ActRt::Output(P2)]), (0, Some("p3"), vec![ActRt::Output(P3)])],
        )
        .table(
            0,
            vec![
                (20, vec![m(slot::DL_SRC, u128::from(A.as_u64()))], vec![ActRt::Group(3)]),
                (10, vec![], vec![ActRt::Group(4)]),
            ],
        );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"]);
    assert_eq!(h.ports("p1", &raw(A, B)), ["p2"], "the first live bucket");
    // p2's link goes down: the next bucket takes over.
    h.sw.set_link_down(["p2".to_string()].into_iter().collect());
    assert_eq!(h.ports("p1", &raw(A, B)), ["p3"]);
}

#[test]
fn groups_count_what_they_and_their_buckets_take_and_keep_it_across_pipelines() {
    let net = || {
        three_taps()
            .group(2, GroupKind::Select, vec![(1, None, vec![ActRt::Output(P2)]), (1, None, vec![ActRt::Output(P3)])])
            .table(0, vec![(10, vec![], vec![ActRt::Group(2)])])
    };
    let mut h = Harness::new(net().build());
    for port in 0..40u16 {
        h.send("p1", &udp4(B, A, 60, false, 1000 + port));
    }
    let stats = h.sw.group_stats("br0").unwrap();
    let (id, s) = &stats[0];
    assert_eq!((*id, s.packets, s.buckets.len()), (2, 40, 2));
    assert_eq!(s.buckets[0].0 + s.buckets[1].0, 40, "each packet counted in the bucket it took");
    assert!(s.buckets[0].0 > 0 && s.buckets[1].0 > 0);
    assert_eq!(s.bytes, s.buckets[0].1 + s.buckets[1].1);
    // A new pipeline with the same group: the counts stay.
    let mut next = net().build();
    Arc::get_mut(&mut next).unwrap().generation = 2;
    h.sw.install(next, SECOND);
    assert_eq!(h.sw.group_stats("br0").unwrap()[0].1.packets, 40);
}

#[test]
fn bundles_pick_a_live_member_and_bundle_load_writes_it() {
    use crate::switch::bundle::HashOn;
    let bd = |hrw: bool, dst: Option<crate::classifier::SubSlot>| {
        let mut members = [None; 8];
        members[0] = Some(P2);
        members[1] = Some(P3);
        ActRt::Bundle(BundleRt {
            on: HashOn::Symmetric { macs: false, ports: true },
            basis: 1,
            hrw,
            members,
            n: 2,
            dst,
        })
    };
    // active_backup: the first live member; when its link goes down, the next.
    let mut h = Harness::new(three_taps().table(0, vec![(10, vec![], vec![bd(false, None)])]).build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2"]);
    h.sw.set_link_down(["p2".to_string()].into_iter().collect());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"]);
    // hrw: flows spread over both members, each flow on one.
    let mut h = Harness::new(three_taps().table(0, vec![(10, vec![], vec![bd(true, None)])]).build());
    let mut seen = std::collections::HashSet::new();
    for port in 0..40u16 {
        let f = udp4(B, A, 60, false, 1000 + port);
        let first = h.ports("p1", &f);
        assert_eq!(h.ports("p1", &f), first);
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "both members take flows");
    // bundle_load: the member's number into reg0, then out by it.
    let reg0 = crate::classifier::SubSlot { slot: slot::reg(0), ofs: 0, nbits: 32 };
    let net = three_taps().table(0, vec![(10, vec![], vec![bd(false, Some(reg0)), ActRt::OutputReg(reg0)])]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2"]);
}

#[test]
fn multipath_writes_a_link_number_that_later_tables_use() {
    let reg1 = crate::classifier::SubSlot { slot: slot::reg(1), ofs: 0, nbits: 16 };
    let mp = ActRt::Multipath {
        on: crate::switch::bundle::HashOn::Symmetric { macs: false, ports: true },
        basis: 0,
        algorithm: 2,
        n_links: 2,
        arg: 0,
        dst: reg1,
    };
    let net = three_taps().table(0, vec![(10, vec![], vec![mp, ActRt::GotoTable(1)])]).table(
        1,
        vec![
            (10, vec![m(slot::reg(1), 0)], vec![ActRt::Output(P2)]),
            (10, vec![m(slot::reg(1), 1)], vec![ActRt::Output(P3)]),
        ],
    );
    let mut h = Harness::new(net.build());
    let mut seen = std::collections::HashSet::new();
    for port in 0..40u16 {
        let f = udp4(B, A, 60, false, 1000 + port);
        let first = h.ports("p1", &f);
        assert_eq!(first.len(), 1);
        assert_eq!(h.ports("p1", &f), first, "one flow, one link");
        seen.insert(first);
    }
    assert_eq!(seen.len(), 2, "both links used");
}
