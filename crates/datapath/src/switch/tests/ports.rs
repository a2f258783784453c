use super::*;
use pipeline::port_config::*;

// ---- Ports' OpenFlow configuration (PORT_MOD) ----

#[test]
fn no_flood_keeps_a_port_out_of_floods_but_not_its_own_frames() {
    let mut h = Harness::new(two_taps().of_config("p3", NO_FLOOD).build());
    assert_eq!(h.ports("p1", &raw(BCAST, A)), ["br0", "p2"], "NORMAL's flood leaves p3 out");
    // p3's own address, once learned, still reaches it.
    h.send("p3", &raw(A, C));
    assert_eq!(h.ports("p1", &raw(C, A)), ["p3"]);
    // The FLOOD action leaves it out, ALL does not.
    let net = two_taps().of_config("p3", NO_FLOOD).table(
        0,
        vec![(10, vec![m(slot::DL_DST, u128::from(B.as_u64()))], vec![ActRt::Flood]), (5, vec![], vec![ActRt::All])],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["br0", "p2"]);
    assert_eq!(h.ports("p1", &raw(C, A)), ["br0", "p2", "p3"]);
}

#[test]
fn down_no_receive_and_no_forward_drop_and_count() {
    let mut h = Harness::new(two_taps().of_config("p2", PORT_DOWN).of_config("p3", NO_FWD).build());
    assert_eq!(h.ports("p1", &raw(BCAST, A)), ["br0"]);
    assert_eq!((h.drops("p2", DropReason::PortConfig), h.drops("p3", DropReason::PortConfig)), (1, 1));
    assert!(h.send("p2", &raw(BCAST, B)).is_empty(), "a port that is down receives nothing");
    assert_eq!(h.drops("p2", DropReason::PortConfig), 2);
    // no-forward still receives.
    assert_eq!(h.ports("p3", &raw(BCAST, C)), ["br0", "p1"]);
    let mut h = Harness::new(two_taps().of_config("p1", NO_RECV).build());
    assert!(h.send("p1", &raw(BCAST, A)).is_empty());
    assert_eq!(h.ports("p2", &raw(BCAST, B)), ["br0", "p1", "p3"], "no-receive still sends");
}

#[test]
fn no_packet_in_keeps_a_ports_frames_from_the_controller() {
    let net = two_taps()
        .of_config("p2", NO_PACKET_IN)
        .table(0, vec![(10, vec![], vec![ActRt::Controller { max_len: 128, reason: pipeline::REASON_AUTO, id: 0 }])]);
    let mut h = Harness::new(net.build());
    h.send("p1", &raw(B, A));
    assert_eq!(h.outs.to_controller.len(), 1);
    h.send("p2", &raw(A, B));
    assert!(h.outs.to_controller.is_empty(), "from a no-packet-in port: none");
}
