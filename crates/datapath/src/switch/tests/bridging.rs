use super::*;

// ---- Learning and flooding ----

#[test]
fn unknown_unicast_floods_to_every_port_but_the_input() {
    let mut h = Harness::new(two_taps().build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["br0", "p2", "p3"]);
}

#[test]
fn broadcast_floods_and_teaches_the_source() {
    let mut h = Harness::new(two_taps().build());
    assert_eq!(h.ports("p1", &raw(BCAST, A)), ["br0", "p2", "p3"]);
    assert_eq!(h.ports("p2", &raw(A, B)), ["p1"], "A was learned on p1");
}

#[test]
fn a_frame_for_its_own_port_goes_nowhere() {
    let mut h = Harness::new(two_taps().build());
    h.send("p1", &raw(BCAST, A));
    h.send("p1", &raw(BCAST, B));
    assert!(h.send("p1", &raw(A, B)).is_empty());
}

#[test]
fn a_station_that_moves_is_learned_again() {
    let mut h = Harness::new(two_taps().build());
    h.send("p1", &raw(BCAST, A));
    h.send("p2", &raw(BCAST, A));
    assert_eq!(h.ports("p3", &raw(A, C)), ["p2"]);
    assert_eq!(h.sw.fdb_stats("br0").unwrap().moves, 1);
}

#[test]
fn multicast_sources_are_never_learned() {
    let mut h = Harness::new(two_taps().build());
    let mcast = EthernetAddress([1, 0, 0x5e, 0, 0, 1]);
    h.send("p1", &raw(BCAST, mcast));
    assert_eq!(h.sw.fdb_stats("br0").unwrap().entries, 0);
}

#[test]
fn entries_age_out_on_the_timer() {
    let mut h = Harness::new(two_taps().limits(10, 8192).build());
    h.send("p1", &raw(BCAST, A));
    assert_eq!(h.sw.fdb_rows("br0", h.now).unwrap().len(), 1);
    h.sw.tick(h.now + 11 * SECOND);
    assert!(h.sw.fdb_rows("br0", h.now + 11 * SECOND).unwrap().is_empty());
    assert_eq!(h.sw.fdb_stats("br0").unwrap().aged, 1);
}

#[test]
fn a_full_table_counts_and_reports_once() {
    let mut h = Harness::new(two_taps().limits(300, 2).build());
    for i in 0..5u8 {
        h.send("p1", &raw(BCAST, EthernetAddress([2, 0, 0, 1, 0, i])));
    }
    assert_eq!(h.sw.fdb_stats("br0").unwrap().entries, 2);
    assert_eq!(h.drops("p1", DropReason::FdbFull), 3);
    // Reported on the first miss only (the log is rate-limited): the last frame's outputs say nothing.
    assert!(h.outs.events.is_empty());
    let input = h.input("p1", &raw(BCAST, C), None, None, None);
    h.now += 11 * SECOND;
    h.run(input, &mut Quiet);
    assert!(matches!(h.outs.events[..], [Event::MacTableFull { entries: 2, .. }]), "{:?}", h.outs.events);
}

#[test]
fn frames_shorter_than_an_ethernet_header_are_dropped_as_malformed() {
    let mut h = Harness::new(two_taps().build());
    assert!(h.send("p1", &[0u8; 10]).is_empty());
    assert_eq!(h.drops("p1", DropReason::Malformed), 1);
}

#[test]
fn the_default_flow_and_table_zero_count_every_frame() {
    let mut h = Harness::new(two_taps().build());
    for _ in 0..3 {
        h.send("p1", &raw(BCAST, A));
    }
    let stats = h.sw.flow_stats("br0", h.now).unwrap();
    assert_eq!(stats, [(1, 3, 180, 0)]);
    assert_eq!(h.sw.table_stats("br0").unwrap(), [(3, 3)]);
}

#[test]
fn flushing_forgets_learned_entries_but_not_static_ones() {
    let mut net = two_taps();
    net.bridges[0].statics.push((0, C, PortIdx(3), None));
    let mut h = Harness::new(net.build());
    h.send("p1", &raw(BCAST, A));
    assert_eq!(h.sw.fdb_rows("br0", h.now).unwrap().len(), 2);
    assert!(h.sw.fdb_flush("br0"));
    let rows = h.sw.fdb_rows("br0", h.now).unwrap();
    assert_eq!((rows.len(), rows[0].mac, rows[0].port.as_str()), (1, C, "p3"));
    assert_eq!(h.ports("p1", &raw(C, A)), ["p3"], "the static entry forwards");
    assert!(!h.sw.fdb_flush("nope"));
}

// ---- VLANs ----

#[test]
fn an_access_port_floods_only_within_its_vlan_and_trunks_tag_it() {
    let mut h = Harness::new(vlan_net().build());
    let out = h.send("a10", &raw(BCAST, A));
    let mut ports: Vec<&str> = out.iter().map(|o| o.port.as_str()).collect();
    ports.sort();
    assert_eq!(ports, ["b10", "br0", "trunk"], "the internal port is a trunk of every VLAN");
    let trunk = out.iter().find(|o| o.port == "trunk").unwrap();
    assert_eq!(trunk.frame, tagged(&raw(BCAST, A), 10));
    let access = out.iter().find(|o| o.port == "b10").unwrap();
    assert_eq!(access.frame, raw(BCAST, A), "access ports send untagged");
}

#[test]
fn a_tagged_frame_from_a_trunk_reaches_its_vlan_untagged() {
    let mut h = Harness::new(vlan_net().build());
    let out = h.send("trunk", &tagged(&raw(BCAST, A), 20));
    let a20 = out.iter().find(|o| o.port == "a20").unwrap();
    assert_eq!(a20.frame, raw(BCAST, A));
    assert_eq!(out.iter().map(|o| o.port.as_str()).collect::<Vec<_>>(), ["br0", "a20"]);
}

#[test]
fn a_tag_the_kernel_stripped_counts_as_the_frame_tag() {
    let mut h = Harness::new(vlan_net().build());
    let input = h.input("trunk", &raw(BCAST, A), None, Some(20), None);
    let out = h.run(input, &mut Quiet);
    assert_eq!(out.iter().map(|o| o.port.as_str()).collect::<Vec<_>>(), ["br0", "a20"]);
    assert_eq!(out[0].frame, tagged(&raw(BCAST, A), 20), "the internal port (a trunk) gets it tagged");
}

#[test]
fn a_vlan_the_port_does_not_carry_is_dropped() {
    let mut h = Harness::new(vlan_net().build());
    assert!(h.send("trunk", &tagged(&raw(BCAST, A), 30)).is_empty());
    assert!(h.send("a10", &tagged(&raw(BCAST, A), 20)).is_empty(), "an access port takes no other VLAN's tags");
    assert_eq!(h.drops("trunk", DropReason::Vlan), 1);
    assert_eq!(h.drops("a10", DropReason::Vlan), 1);
}

#[test]
fn learning_is_per_vlan() {
    let mut h = Harness::new(vlan_net().build());
    h.send("a10", &raw(BCAST, A));
    // A is known in VLAN 10, not in VLAN 20: a frame to A in VLAN 20 floods there.
    let out = h.send("trunk", &tagged(&raw(A, B), 20));
    assert_eq!(out.iter().map(|o| o.port.as_str()).collect::<Vec<_>>(), ["br0", "a20"]);
    let out = h.send("trunk", &tagged(&raw(A, B), 10));
    assert_eq!(out.iter().map(|o| o.port.as_str()).collect::<Vec<_>>(), ["a10"]);
}

// ---- Tunnels ----

#[test]
fn a_flood_goes_to_each_tunnel_without_a_named_vtep() {
    let mut h = Harness::new(tunnels().build());
    let out = h.send("p1", &raw(BCAST, A));
    let vx: Vec<_> = out.iter().filter(|o| o.port.starts_with("vx")).collect();
    assert_eq!(vx.len(), 2);
    assert!(vx.iter().all(|o| o.remote.is_none() && o.vni.is_none()));
}

#[test]
fn a_source_behind_a_tunnel_is_learned_with_its_vtep() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let out = h.send("p1", &raw(B, A));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].port.as_str(), out[0].remote), ("vx1", Some("192.0.2.12".parse().unwrap())));
    let rows = h.sw.fdb_rows("br0", h.now).unwrap();
    assert_eq!(rows.iter().find(|r| r.mac == B).unwrap().remote, Some("192.0.2.12".parse().unwrap()));
}

#[test]
fn a_flood_from_a_tunnel_never_goes_back_into_it() {
    let net = Net::default().bridge("br0").tap("p1", 1).tunnel_with(
        "her",
        2,
        tunnel_spec("192.0.2.12", 7),
        &["192.0.2.12", "192.0.2.13"],
        1450,
        false,
    );
    let mut h = Harness::new(net.build());
    assert_eq!(
        h.send_from("her", &raw(BCAST, B), Some("192.0.2.12")).iter().map(|o| o.port.as_str()).collect::<Vec<_>>(),
        ["br0", "p1"]
    );
}

#[test]
fn the_control_plane_installs_macs_and_flood_lists_and_takes_them_back() {
    let mut spec = tunnel_spec("0.0.0.0", 5);
    spec.flow = true;
    let net = Net::default().bridge("br0").tap("p1", 1).tunnel_with("vxf", 2, spec, &[], 1450, false);
    let mut h = Harness::new(net.build());
    let vteps: Arc<[IpAddr]> = vec!["192.0.2.21".parse().unwrap(), "192.0.2.22".parse().unwrap()].into();
    let u = CpUpdate {
        origin: Some(Origin::Evpn),
        reset: false,
        flood: vec![("vxf".into(), vteps.clone())],
        install: vec![(0, B, "vxf".into(), "192.0.2.22".parse().unwrap())],
        remove: vec![],
    };
    assert!(h.sw.control_plane("br0", u));
    assert_eq!(h.sw.flood_list(h.port("vxf")), Some(&vteps));
    let out = h.send("p1", &raw(B, A));
    assert_eq!((out[0].port.as_str(), out[0].remote), ("vxf", Some("192.0.2.22".parse().unwrap())));
    let reset = CpUpdate { origin: Some(Origin::Evpn), reset: true, ..Default::default() };
    h.sw.control_plane("br0", reset);
    assert_eq!(h.sw.flood_list(h.port("vxf")), None);
    assert_eq!(h.ports("p1", &raw(B, A)), ["br0", "vxf"], "B is unknown again: flooded");
    assert!(!h.sw.control_plane("nope", CpUpdate::default()));
}

#[test]
fn frames_to_a_port_whose_link_is_down_are_counted_not_sent() {
    let mut h = Harness::new(two_taps().build());
    h.sw.set_link_down(["p2".to_string()].into_iter().collect());
    assert_eq!(h.ports("p1", &raw(BCAST, A)), ["br0", "p3"]);
    assert_eq!(h.drops("p2", DropReason::LinkDown), 1);
    h.sw.set_link_down(HashSet::new());
    assert_eq!(h.ports("p1", &raw(BCAST, A)), ["br0", "p2", "p3"]);
}

// ---- MTU ----

#[test]
fn a_df_frame_too_big_for_a_tunnel_is_answered_with_frag_needed() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let out = h.send("p1", &udp4(B, A, 1451, true, 53));
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0].port, "p1", "the ICMP error goes back to the sender");
    let icmp = &out[0].frame;
    assert_eq!(&icmp[0..6], &A.0);
    assert_eq!((icmp[14 + 9], icmp[34], icmp[35]), (1, 3, 4), "ICMP type 3 code 4");
    assert_eq!(u16::from_be_bytes([icmp[40], icmp[41]]), 1450);
    assert_eq!(h.drops("vx1", DropReason::TooBig), 1);
    assert_eq!(h.send("p1", &udp4(B, A, 1450, true, 53))[0].port, "vx1", "1450 bytes fit");
}

#[test]
fn without_df_the_underlay_may_fragment_unless_the_tunnel_sets_df() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    assert_eq!(h.send("p1", &udp4(B, A, 1480, false, 53))[0].port, "vx1");
    let mut spec = tunnel_spec("192.0.2.12", 42);
    spec.df = true;
    let net = Net::default().bridge("br0").tap("p1", 1).tunnel_with("vx1", 2, spec, &["192.0.2.12"], 1450, false);
    let mut h = Harness::new(net.build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    assert!(h.send("p1", &udp4(B, A, 1480, false, 53)).is_empty(), "dropped, and nobody to tell");
    assert_eq!(h.drops("vx1", DropReason::TooBig), 1);
}

#[test]
fn an_ipv6_frame_too_big_is_answered_with_packet_too_big() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let out = h.send("p1", &udp6(B, A, 1500));
    assert_eq!(out.len(), 1);
    let f = &out[0].frame;
    assert_eq!((out[0].port.as_str(), f[14 + 6], f[54]), ("p1", 58, 2), "ICMPv6 packet too big");
    assert_eq!(u32::from_be_bytes([f[58], f[59], f[60], f[61]]), 1450);
}

#[test]
fn a_tag_the_tunnel_carries_takes_four_bytes_of_room() {
    let net = Net::default()
        .bridge("br0")
        .tap("p1", 1)
        .vlan("p1", Some(10), &[])
        .tunnel("vx1", 2, "192.0.2.12", 42)
        .vlan("vx1", None, &[10]);
    let mut h = Harness::new(net.build());
    h.send_from("vx1", &tagged(&raw(BCAST, B), 10), Some("192.0.2.12"));
    let out = h.send("p1", &udp4(B, A, 1450, true, 53));
    assert_eq!(out[0].port, "p1", "too big once tagged: {out:?}");
    assert_eq!(u16::from_be_bytes([out[0].frame[40], out[0].frame[41]]), 1446);
    assert_eq!(h.send("p1", &udp4(B, A, 1446, true, 53))[0].frame, tagged(&udp4(B, A, 1446, true, 53), 10));
}

#[test]
fn icmp_errors_are_limited_to_a_thousand_a_second() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let big = udp4(B, A, 1500, true, 53);
    let answered = (0..1010).filter(|_| !h.send("p1", &big).is_empty()).count();
    assert_eq!(answered, 1000);
    h.now += SECOND;
    assert_eq!(h.send("p1", &big).len(), 1, "a new second, new tokens");
}

#[test]
fn an_offloaded_frame_goes_whole_when_its_segments_fit() {
    let mut h = Harness::new(tunnels().build());
    h.send_from("vx1", &raw(BCAST, B), Some("192.0.2.12"));
    let frame = udp4(B, A, 20 + 8 + 4000, true, 53);
    let gso = |size: u16| VnetHdr {
        flags: offload::F_NEEDS_CSUM,
        gso_type: offload::GSO_UDP_L4,
        hdr_len: 42,
        gso_size: size,
        csum_start: 34,
        csum_offset: 6,
    };
    let input = h.input("p1", &frame, None, None, Some(gso(1400)));
    let out = h.run(input, &mut Quiet);
    assert_eq!((out.len(), out[0].port.as_str(), out[0].gso), (1, "vx1", Some(gso(1400))));
    let input = h.input("p1", &frame, None, None, Some(gso(1440)));
    let out = h.run(input, &mut Quiet);
    assert_eq!(out[0].port, "p1", "segments of 1468 bytes do not fit 1450: {out:?}");
    assert_eq!(out[0].gso, None, "the ICMP error is an ordinary frame");
}

// ---- ARP suppression ----

#[test]
fn an_arp_request_for_a_known_address_is_answered_instead_of_crossing_the_tunnel() {
    let mut h = Harness::new(proxy_net().build());
    // B answers an earlier request from p2: its binding is learned.
    h.send("p2", &arp(2, A, B, [10, 0, 0, 2], [10, 0, 0, 1]));
    let out = h.send("p1", &arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 2]));
    let mut ports: Vec<&str> = out.iter().map(|o| o.port.as_str()).collect();
    ports.sort();
    assert_eq!(ports, ["br0", "p1", "p2"], "answered on p1, still flooded locally, not into the proxy tunnel");
    let reply = &out.iter().find(|o| o.port == "p1").unwrap().frame;
    assert_eq!((&reply[0..6], &reply[6..12]), (&A.0[..], &B.0[..]));
    assert_eq!(u16::from_be_bytes([reply[20], reply[21]]), 2, "an ARP reply");
    assert_eq!(h.sw.counter(h.port("vx1")).nd_answered, 1);
}

#[test]
fn an_arp_request_for_an_unknown_address_crosses_the_tunnel() {
    let mut h = Harness::new(proxy_net().build());
    assert_eq!(h.ports("p1", &arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 9])), ["br0", "p2", "vx1"]);
    assert_eq!(h.sw.counter(h.port("vx1")).nd_flooded, 1);
}

#[test]
fn without_a_proxy_tunnel_nothing_is_answered() {
    let mut h = Harness::new(tunnels().build());
    h.send("p1", &arp(2, BCAST, B, [10, 0, 0, 2], [10, 0, 0, 1]));
    let out = h.send("p1", &arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 2]));
    assert_eq!(out.len(), 3, "flooded everywhere else: {out:?}");
    assert!(out.iter().all(|o| o.port != "p1"));
}
