use super::*;

// ---- Meters: drop and DSCP-remark bands ----

#[test]
fn a_drop_band_passes_the_burst_then_the_rate_and_counts_the_rest() {
    // 100 packets a second, a burst of 10.
    let net = two_taps()
        .meter(1, true, &[(100, 10, None)])
        .table(0, vec![(10, vec![], vec![ActRt::Meter(1), ActRt::Output(P2)]), (5, vec![], vec![ActRt::Meter(9)])]);
    let mut h = Harness::new(net.build());
    let frame = udp4(B, A, 60, true, 53);
    let passed = (0..100).filter(|_| !h.send("p1", &frame).is_empty()).count();
    assert_eq!(passed, 10, "a full bucket: the burst");
    assert_eq!(h.drops("p1", DropReason::Meter), 90);
    // A tenth of a second later, ten more tokens.
    h.now += SECOND / 10;
    let passed = (0..100).filter(|_| !h.send("p1", &frame).is_empty()).count();
    assert_eq!(passed, 10);
    let c = h.sw.pipeline().bridges[0].meters[0].state.counts();
    assert_eq!((c.packets, c.bands[0].0), (200, 180));
}

#[test]
fn a_dscp_remark_band_raises_the_drop_precedence_and_keeps_checksums_right() {
    // 1 kbit a second with a 1 kbit burst: one 74-byte frame (592 bits) fits, the second does not.
    let net = two_taps()
        .meter(2, false, &[(1, 1, Some(1))])
        .table(0, vec![(10, vec![], vec![ActRt::Meter(2), ActRt::Output(P2)])]);
    let mut h = Harness::new(net.build());
    let frame = super::rewrites::udp4_summed(64, 18 << 2); // AF21
    let first = h.send("p1", &frame);
    assert_eq!(first[0].frame, frame, "within the rate: untouched");
    let second = h.send("p1", &frame);
    assert_eq!(second.len(), 1, "a remark band does not drop");
    assert_eq!(second[0].frame[15] >> 2, 20, "AF22");
    assert!(super::rewrites::checksums_hold(&second[0].frame));
    // Not IP: a remark band lets it through unchanged.
    let arp = raw(B, A);
    assert_eq!(h.send("p1", &arp)[0].frame, arp);
}
