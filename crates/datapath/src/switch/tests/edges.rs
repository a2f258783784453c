use super::*;

// ---- More edges ----

#[test]
fn an_inline_tag_moves_the_offload_header_with_the_frame() {
    let mut h = Harness::new(vlan_net().build());
    let frame = tagged(&udp4(BCAST, A, 3000, true, 53), 10);
    let gso = VnetHdr {
        flags: offload::F_NEEDS_CSUM,
        gso_type: offload::GSO_UDP_L4,
        hdr_len: 46,
        gso_size: 1000,
        csum_start: 38,
        csum_offset: 6,
    };
    let input = h.input("trunk", &frame, None, None, Some(gso));
    let out = h.run(input, &mut Quiet);
    let a10 = out.iter().find(|o| o.port == "a10").unwrap();
    assert_eq!(a10.gso, Some(gso.untagged()));
    assert_eq!(a10.gso.unwrap().csum_start, 34);
}

#[test]
fn priority_bits_cross_a_trunk_and_priority_tags_enter_an_access_vlan() {
    let mut h = Harness::new(vlan_net().build());
    h.send("a10", &raw(BCAST, B));
    // PCP 5, VLAN 10, from the trunk: leaves another trunk with its priority (the internal port).
    let out = h.send("trunk", &tagged(&raw(BCAST, A), 0xa00a));
    assert_eq!(out.iter().find(|o| o.port == "br0").unwrap().frame, tagged(&raw(BCAST, A), 0xa00a));
    // A priority tag (VLAN 0) on an access port puts the frame in the port's VLAN (the priority is not kept).
    let out = h.send("a20", &tagged(&raw(BCAST, C), 0x2000));
    assert!(out.iter().any(|o| o.port == "trunk" && o.frame[14..16] == [0, 20]), "{out:?}");
}

#[test]
fn push_vlan_then_set_the_vid_tags_an_untagged_frame() {
    let net = two_taps().vlan("p3", None, &[9]).table(
        0,
        vec![(10, vec![], vec![ActRt::PushVlan, ActRt::ModVlanVid(9), ActRt::SetEthSrc(C), ActRt::Output(P3)])],
    );
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!(out[0].frame, tagged(&raw(B, C), 9));
}

#[test]
fn static_entries_follow_a_new_pipeline_and_deleted_ports_take_their_entries() {
    let mut net = two_taps();
    net.bridges[0].statics.push((0, C, PortIdx(3), None));
    let mut h = Harness::new(net.build());
    h.send("p2", &raw(BCAST, B));
    let mut next = Net::default().bridge("br0").tap("p1", 1).tap("p3", 3);
    next.bridges[0].statics.push((0, C, PortIdx(2), None));
    let mut next = next.build();
    Arc::get_mut(&mut next).unwrap().generation = 2;
    h.sw.install(next, h.now);
    let rows = h.sw.fdb_rows("br0", h.now).unwrap();
    assert_eq!(rows.len(), 1, "B went with p2: {rows:?}");
    assert_eq!((rows[0].mac, rows[0].port.as_str(), rows[0].origin), (C, "p3", Origin::Static));
    assert_eq!(h.ports("p1", &raw(C, A)), ["p3"]);
}

#[test]
fn fdb_rows_say_where_when_and_how_an_entry_was_learned() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx2", &raw(BCAST, B), Some("192.0.2.13"));
    let rows = h.sw.fdb_rows("br0", h.now + 3 * SECOND).unwrap();
    let r = &rows[0];
    assert_eq!((r.port.as_str(), r.ofport, r.vlan, r.age, r.origin), ("vx2", 3, 0, 3, Origin::Learned));
    assert_eq!(r.remote, Some("192.0.2.13".parse().unwrap()));
}

#[test]
fn port_counters_list_the_internal_port_first() {
    let h = Harness::new(two_taps().build());
    let names: Vec<(String, u32)> = h.sw.port_counters("br0").unwrap().into_iter().map(|(n, o, _)| (n, o)).collect();
    assert_eq!(names, [("br0".into(), OFPORT_LOCAL), ("p1".into(), 1), ("p2".into(), 2), ("p3".into(), 3)]);
    assert!(h.sw.port_counters("nope").is_none());
}

#[test]
fn a_control_plane_entry_for_an_unknown_port_is_ignored() {
    let mut h = Harness::new(tunnels().build());
    let u = CpUpdate { install: vec![(0, B, "nope".into(), "192.0.2.50".parse().unwrap())], ..Default::default() };
    h.sw.control_plane("br0", u);
    assert!(h.sw.fdb_rows("br0", h.now).unwrap().is_empty());
}

#[test]
fn a_link_down_tunnel_is_skipped_by_flows_too() {
    let net = tunnels().table(0, vec![(10, vec![], vec![ActRt::Output(PortIdx(2)), ActRt::Output(PortIdx(3))])]);
    let mut h = Harness::new(net.build());
    h.sw.set_link_down(["vx1".to_string()].into_iter().collect());
    assert_eq!(h.ports("p1", &raw(B, A)), ["vx2"]);
    assert_eq!(h.drops("vx1", DropReason::LinkDown), 1);
}

#[test]
fn a_resubmit_to_a_missing_table_does_nothing() {
    let net = two_taps()
        .table(0, vec![(10, vec![], vec![ActRt::Resubmit { port: None, table: Some(9) }, ActRt::Output(P2)])]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2"]);
}

#[test]
fn trace_names_each_table_and_flow_on_the_way() {
    let net = two_taps()
        .table(0, vec![(10, vec![], vec![ActRt::GotoTable(1)])])
        .table(1, vec![(10, vec![], vec![ActRt::Output(P2)])]);
    let mut h = Harness::new(net.build());
    let input = h.input("p1", &raw(B, A), None, None, None);
    let mut steps: Vec<Step> = Vec::new();
    h.run(input, &mut steps);
    let flows: Vec<&Step> = steps.iter().filter(|s| matches!(s, Step::Flow { .. })).collect();
    assert_eq!(flows, [&Step::Flow { table: 0, rule: Some(100) }, &Step::Flow { table: 1, rule: Some(200) }]);
    assert!(matches!(steps.last(), Some(Step::Output { too_big: None, .. })));
}

#[test]
fn trace_shows_the_too_big_output_and_the_error_sent_back() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let input = h.input("p1", &udp4(B, A, 1500, true, 53), None, None, None);
    let mut steps: Vec<Step> = Vec::new();
    h.run(input, &mut steps);
    let outs: Vec<(PortIdx, Option<u16>)> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Output { emission, too_big } => Some((emission.port, *too_big)),
            _ => None,
        })
        .collect();
    assert_eq!(outs, [(PortIdx(2), Some(1450)), (PortIdx(1), None)]);
}

#[test]
fn frames_to_a_port_that_is_down_are_still_emitted_for_the_caller_to_count() {
    let net = two_taps().port("gone", 4, PortKind::Down("no such device".into()));
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(BCAST, A)), ["br0", "gone", "p2", "p3"]);
}

// ---- Pushed MAC table changes ----

#[test]
fn a_watched_table_gives_itself_whole_then_only_what_changed() {
    let mut h = Harness::new(two_taps().limits(10, 8192).build());
    h.send("p1", &raw(BCAST, A));
    assert_eq!(h.sw.fdb_changes("br0", h.now), None, "not watched: nothing");
    assert!(h.sw.watch_fdb("br0", true));
    match h.sw.fdb_changes("br0", h.now) {
        Some(FdbDelta::Whole(rows)) => assert_eq!(rows.iter().map(|r| r.mac).collect::<Vec<_>>(), [A]),
        other => panic!("{other:?}"),
    }
    assert_eq!(h.sw.fdb_changes("br0", h.now), None, "nothing new");
    h.send("p1", &raw(BCAST, A));
    assert_eq!(h.sw.fdb_changes("br0", h.now), None, "a refresh is no change");
    h.send("p2", &raw(BCAST, B));
    h.send("p3", &raw(BCAST, A));
    match h.sw.fdb_changes("br0", h.now) {
        Some(FdbDelta::Changed(list)) => {
            let got: Vec<(EthernetAddress, Option<String>)> =
                list.into_iter().map(|(_, m, r)| (m, r.map(|r| r.port))).collect();
            assert_eq!(got.len(), 2);
            assert!(got.contains(&(A, Some("p3".into()))), "A moved: {got:?}");
            assert!(got.contains(&(B, Some("p2".into()))), "B is new: {got:?}");
        }
        other => panic!("{other:?}"),
    }
    // Aged out: reported gone.
    let later = h.now + 11 * SECOND;
    h.sw.tick(later);
    match h.sw.fdb_changes("br0", later) {
        Some(FdbDelta::Changed(list)) => assert!(list.iter().all(|(_, _, r)| r.is_none()) && list.len() == 2),
        other => panic!("{other:?}"),
    }
}

#[test]
fn too_many_changes_or_a_flush_make_the_next_read_whole() {
    let mut h = Harness::new(two_taps().limits(300, 100_000).build());
    h.sw.watch_fdb("br0", true);
    h.sw.fdb_changes("br0", h.now);
    for i in 0..(crate::fdb::CHANGE_LOG_MAX as u32 + 10) {
        let b = i.to_be_bytes();
        h.send("p1", &raw(BCAST, EthernetAddress([2, 1, b[0], b[1], b[2], b[3]])));
    }
    assert!(
        matches!(h.sw.fdb_changes("br0", h.now), Some(FdbDelta::Whole(r)) if r.len() == crate::fdb::CHANGE_LOG_MAX + 10)
    );
    h.sw.fdb_flush("br0");
    assert!(matches!(h.sw.fdb_changes("br0", h.now), Some(FdbDelta::Whole(r)) if r.is_empty()));
    h.sw.watch_fdb("br0", false);
    h.send("p1", &raw(BCAST, A));
    assert_eq!(h.sw.fdb_changes("br0", h.now), None);
}

// ---- Receiving tunnel packets ----

#[test]
fn a_tunnel_packet_belongs_to_the_port_of_its_sender_and_vni() {
    let net =
        tunnels().demux(Encap::Vxlan, &[("vx1", 42, &["192.0.2.12"], false), ("vx2", 43, &["192.0.2.13"], false)]);
    let mut h = Harness::new(net.build());
    let inner = raw(BCAST, A);
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &vxlan_pkt(42, &inner), false), Ok((PortIdx(2), 8)));
    assert_eq!(h.sw.counter(PortIdx(2)).rx_bytes, inner.len() as u64);
    // A known VTEP with another VNI, and a stranger: dropped, charged to the port that would have taken it.
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &vxlan_pkt(43, &inner), false), Err(DropReason::WrongVni));
    assert_eq!(h.drops("vx1", DropReason::WrongVni), 1);
    assert_eq!(h.sw.accept_tunnel(0, ip("203.0.113.9"), &vxlan_pkt(43, &inner), false), Err(DropReason::UnknownRemote));
    assert_eq!(h.drops("vx2", DropReason::UnknownRemote), 1);
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &[0u8; 5], false), Err(DropReason::Malformed));
    assert_eq!(h.sw.accept_tunnel(9, ip("192.0.2.12"), &vxlan_pkt(42, &inner), false), Err(DropReason::UnknownRemote));
}

#[test]
fn flood_and_learn_tunnels_take_any_sender_of_their_vni() {
    let net = tunnels().demux(Encap::Vxlan, &[("vx1", 42, &[], true)]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.77"), &vxlan_pkt(42, &raw(BCAST, A)), false), Ok((PortIdx(2), 8)));
    assert!(h.sw.accept_tunnel(0, ip("192.0.2.77"), &vxlan_pkt(7, &raw(BCAST, A)), false).is_err());
}

#[test]
fn a_protected_tunnel_takes_nothing_in_clear_text_and_a_clear_one_nothing_protected() {
    let mut spec = tunnel_spec("192.0.2.12", 42);
    spec.ipsec = Some(crate::tunnel::IpsecShape { tunnel: false, udp: true });
    let net = Net::default()
        .bridge("br0")
        .tap("p1", 1)
        .tunnel_with("sec", 2, spec, &["192.0.2.12"], 1400, false)
        .tunnel("vx2", 3, "192.0.2.13", 43)
        .demux(Encap::Vxlan, &[("sec", 42, &["192.0.2.12"], false), ("vx2", 43, &["192.0.2.13"], false)]);
    let mut h = Harness::new(net.build());
    let pkt = vxlan_pkt(42, &raw(BCAST, A));
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &pkt, false), Err(DropReason::Cleartext));
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &pkt, true), Ok((PortIdx(2), 8)));
    assert_eq!(
        h.sw.accept_tunnel(0, ip("192.0.2.13"), &vxlan_pkt(43, &raw(BCAST, A)), true),
        Err(DropReason::Cleartext)
    );
}

#[test]
fn geneve_options_are_counted_and_unknown_critical_ones_dropped() {
    let mut spec = tunnel_spec("192.0.2.12", 42);
    spec.encap = Encap::Geneve;
    let mut known = Vec::new();
    weft_wire::geneve::encode_option(0x0102, 0x80, &[0, 0, 0, 1], &mut known).unwrap();
    let mut net = Net::default().bridge("br0").tap("p1", 1).tunnel_with("gnv", 2, spec, &["192.0.2.12"], 1400, false);
    if let PortKind::Tunnel(t) = &mut net.ports[2].kind {
        t.known_options = Arc::from(&[(0x0102, 0x80)][..]);
    }
    let net = net.demux(Encap::Geneve, &[("gnv", 42, &["192.0.2.12"], false)]);
    let mut h = Harness::new(net.build());
    let geneve = |options: &[u8]| geneve_pkt(42, options, &raw(BCAST, A));
    let at = 8 + known.len();
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &geneve(&known), false), Ok((PortIdx(2), at)));
    let mut unknown = Vec::new();
    weft_wire::geneve::encode_option(0x0999, 0x81, &[], &mut unknown).unwrap();
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &geneve(&unknown), false), Err(DropReason::CriticalOption));
    assert_eq!(h.sw.counter(PortIdx(2)).geneve_options_rx, 2);
}

#[test]
fn mapped_geneve_options_are_tunnel_metadata_the_flows_match() {
    use crate::switch::pipeline::{TunField, TunMap};
    let mut spec = tunnel_spec("192.0.2.12", 42);
    spec.encap = Encap::Geneve;
    // tun_metadata0 is option (0x0102, 0x80: critical) of 4 bytes, in the low half of the first word.
    let field = TunField {
        index: 0,
        class: 0x0102,
        kind: 0x80,
        len: 4,
        slot: Slot::new(slot::TUN_MD_WORD, 0, 32),
        present: slot::tun_md_present(0),
    };
    let mut net =
        Net::default().bridge("br0").tap("p1", 1).tunnel_with("gnv", 2, spec, &["192.0.2.12"], 1400, false).table(
            0,
            vec![
                (20, vec![m(field.slot, 0x1234), m(field.present, 1)], vec![ActRt::Output(PortIdx(1))]),
                (10, vec![], vec![]),
            ],
        );
    net.bridges[0].tun = TunMap { fields: vec![field] };
    let net = net.demux(Encap::Geneve, &[("gnv", 42, &["192.0.2.12"], false)]);
    let mut h = Harness::new(net.build());
    let geneve = |options: &[u8]| geneve_pkt(42, options, &raw(B, A));
    let option = |class: u16, kind: u8, data: &[u8]| {
        let mut o = Vec::new();
        weft_wire::geneve::encode_option(class, kind, data, &mut o).unwrap();
        o
    };
    // Critical, but mapped: known. Its data is the field; a wrong length or another option is not it.
    let gnv = PortIdx(2);
    let run = |h: &mut Harness, opts: &[u8]| -> Vec<String> {
        let pkt = geneve(opts);
        let (port, at) = h.sw.accept_tunnel(0, ip("192.0.2.12"), &pkt, false).expect("accepted");
        assert_eq!(port, gnv);
        let tun_md = h.sw.tunnel_metadata(port, &pkt);
        let mut input = h.input("gnv", &pkt[at..], Some("192.0.2.12"), None, None);
        input.tun_md = tun_md;
        h.run(input, &mut Quiet).into_iter().map(|o| o.port).collect()
    };
    assert_eq!(run(&mut h, &option(0x0102, 0x80, &[0, 0, 0x12, 0x34])), ["p1"]);
    assert!(run(&mut h, &option(0x0102, 0x80, &[0, 0, 0x99, 0x99])).is_empty(), "another value");
    assert!(run(&mut h, &option(0x0102, 0x80, &[0, 0, 0x12, 0x34, 0, 0, 0, 0])).is_empty(), "another length");
    assert!(run(&mut h, &option(0x0102, 0x01, &[0, 0, 0x12, 0x34])).is_empty(), "another option");
    assert!(run(&mut h, &[]).is_empty(), "no option: absent, not zero");
    let md = h.sw.tunnel_metadata(gnv, &geneve(&option(0x0102, 0x80, &[0xde, 0xad, 0xbe, 0xef])));
    assert_eq!((md.present, md.words[0]), (1, 0xdead_beef));
    // An unmapped critical option is still dropped.
    let pkt = geneve(&option(0x0999, 0x81, &[]));
    assert_eq!(h.sw.accept_tunnel(0, ip("192.0.2.12"), &pkt, false), Err(DropReason::CriticalOption));
}

/// A Geneve packet (from its header on) of VNI `vni` with `options`, carrying `inner`.
fn geneve_pkt(vni: u32, options: &[u8], inner: &[u8]) -> Vec<u8> {
    let repr = weft_wire::geneve::GeneveRepr { vni, protocol: EtherType::TEB, oam: false, options };
    let mut p = vec![0u8; repr.buffer_len()];
    repr.emit(&mut p);
    p.extend_from_slice(inner);
    p
}
