use super::*;

// ---- Patch ports: bridges joined inside the switch ----

/// br-int (p1, p2, VLAN 10 on its patch port) and br-tun (a tunnel), joined by patch-tun / patch-int.
fn joined() -> Net {
    Net::default()
        .bridge("br-int")
        .tap("p1", 1)
        .tap("p2", 2)
        .tap("patch-tun", 3)
        .vlan("p1", Some(10), &[])
        .vlan("p2", Some(20), &[])
        .bridge("br-tun")
        .tap("patch-int", 1)
        .tunnel("vx1", 2, "192.0.2.12", 5)
        .patch("patch-tun", "patch-int")
}

#[test]
fn a_frame_crosses_a_patch_port_into_the_peer_bridge_with_its_vlan() {
    let mut h = Harness::new(joined().build());
    // From p1 (VLAN 10, access): br-int floods it to patch-tun, tagged 10; br-tun takes it in by patch-int
    // (a trunk) and floods it to the tunnel, where it leaves tagged.
    let out = h.send("p1", &raw(B, A));
    let ports: Vec<&str> = out.iter().map(|o| o.port.as_str()).collect();
    assert_eq!(ports, ["br-int", "br-tun", "vx1"], "{out:?}");
    assert_eq!(&out[2].frame[12..16], &[0x81, 0, 0, 10], "VLAN 10 kept across the patch");
    assert_eq!(h.sw.counter(h.port("patch-tun")).tx_packets, 1);
    assert_eq!(h.sw.counter(h.port("patch-int")).rx_packets, 1);
    // br-tun learned A behind patch-int: the answer from the tunnel goes back over the patch to p1 alone.
    let back = h.send_from("vx1", &tagged(&raw(A, B), 10), Some("192.0.2.12"));
    let ports: Vec<&str> = back.iter().map(|o| o.port.as_str()).collect();
    assert_eq!(ports, ["p1"], "{back:?}");
    assert_eq!(back[0].frame, raw(A, B), "untagged on the access port");
    // Trace follows the frame into the other bridge.
    let mut steps: Vec<Step> = Vec::new();
    let frame = raw(B, A);
    let input = h.input("p1", &frame, None, None, None);
    h.run(input, &mut steps);
    assert!(
        steps
            .iter()
            .any(|s| matches!(s, Step::Note(n) if n.contains("through patch port patch-tun into bridge br-tun"))),
        "{steps:?}"
    );
}

#[test]
fn a_loop_of_patched_bridges_ends_and_is_counted() {
    // Three bridges in a ring, each flooding: a broadcast would go round for ever.
    let net = Net::default()
        .bridge("a")
        .tap("pa", 1)
        .tap("ab", 2)
        .tap("ac", 3)
        .bridge("b")
        .tap("ba", 1)
        .tap("bc", 2)
        .bridge("c")
        .tap("cb", 1)
        .tap("ca", 2)
        .patch("ab", "ba")
        .patch("bc", "cb")
        .patch("ca", "ac");
    let mut h = Harness::new(net.build());
    let out = h.send("pa", &raw(BCAST, A));
    assert!(out.len() < 64, "{} frames", out.len());
    let loops: u64 = ["ab", "ac", "ba", "bc", "cb", "ca"].iter().map(|p| h.drops(p, DropReason::PatchLoop)).sum();
    assert!(loops > 0, "the ring was cut");
}
