use super::*;

// ---- OpenFlow 1.1+'s action set (write_actions, clear_actions) ----

fn goto(t: u8) -> ActRt {
    ActRt::GotoTable(t)
}

fn wa(acts: &[ActRt]) -> Vec<ActRt> {
    let mut v = vec![ActRt::WriteActions(acts.len() as u8)];
    v.extend_from_slice(acts);
    v
}

#[test]
fn written_actions_run_once_when_the_pipeline_ends_not_where_they_are_written() {
    // Table 0 writes output:p2 and goes on; table 1 applies output:p3 at once. The set runs last.
    let mut t0 = wa(&[ActRt::Output(P2)]);
    t0.push(goto(1));
    let net = two_taps().table(0, vec![(10, vec![], t0)]).table(1, vec![(10, vec![], vec![ActRt::Output(P3)])]);
    let mut h = Harness::new(net.build());
    let out: Vec<String> = h.send("p1", &raw(B, A)).into_iter().map(|o| o.port).collect();
    assert_eq!(out, ["p3", "p2"], "applied first, the action set at the end");
}

#[test]
fn a_later_output_in_the_set_replaces_an_earlier_one() {
    let mut t0 = wa(&[ActRt::Output(P2)]);
    t0.push(goto(1));
    let net =
        two_taps().table(0, vec![(10, vec![], t0.clone())]).table(1, vec![(10, vec![], wa(&[ActRt::Output(P3)]))]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"], "one output: the last written");
    // Two outputs in one write_actions: the last.
    let net = two_taps().table(0, vec![(10, vec![], wa(&[ActRt::Output(P2), ActRt::Output(P3)]))]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"]);
}

#[test]
fn clear_actions_empties_the_set_and_a_set_without_an_output_does_nothing() {
    let mut t0 = wa(&[ActRt::Output(P2)]);
    t0.push(goto(1));
    let net = two_taps().table(0, vec![(10, vec![], t0)]).table(1, vec![(10, vec![], vec![ActRt::ClearActions])]);
    let mut h = Harness::new(net.build());
    assert!(h.send("p1", &raw(B, A)).is_empty(), "the set was cleared");
    let mac = EthernetAddress([2, 0, 0, 0, 0, 0x77]);
    let net = two_taps().table(0, vec![(10, vec![], wa(&[ActRt::SetEthSrc(mac)]))]);
    let mut h = Harness::new(net.build());
    assert!(h.send("p1", &raw(B, A)).is_empty(), "no final action: nothing runs");
}

#[test]
fn set_fields_in_the_set_run_before_its_output_whatever_order_they_were_written_in() {
    let mac = EthernetAddress([2, 0, 0, 0, 0, 0x77]);
    let mut t0 = wa(&[ActRt::Output(P2)]);
    t0.push(goto(1));
    let net = two_taps().table(0, vec![(10, vec![], t0)]).table(1, vec![(10, vec![], wa(&[ActRt::SetEthSrc(mac)]))]);
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].port, "p2");
    assert_eq!(&out[0].frame[6..12], &mac.0, "the source rewritten before the output ran");
}

// ---- clone ----

#[test]
fn a_clone_rewrites_and_sends_a_copy_and_the_packet_goes_on_unchanged() {
    let mac = EthernetAddress([2, 0, 0, 0, 0, 0x77]);
    // clone(mod_dl_src, output:p2), output:p3 — p3 gets the frame as it came.
    let acts = vec![ActRt::Clone(2), ActRt::SetEthSrc(mac), ActRt::Output(P2), ActRt::Output(P3)];
    let net = two_taps().table(0, vec![(10, vec![], acts)]);
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    let by = |p: &str| out.iter().find(|o| o.port == p).unwrap_or_else(|| panic!("nothing to {p}"));
    assert_eq!(&by("p2").frame[6..12], &mac.0, "the copy was rewritten");
    assert_eq!(&by("p3").frame[6..12], &A.0, "the packet itself was not");
    // An exit inside the clone ends the clone only; nested clones run in order.
    let acts = vec![ActRt::Clone(4), ActRt::Clone(1), ActRt::Output(P2), ActRt::Exit, ActRt::InPort, ActRt::Output(P3)];
    let net = two_taps().table(0, vec![(10, vec![], acts)]);
    let mut h = Harness::new(net.build());
    let out: Vec<String> = h.send("p1", &raw(B, A)).into_iter().map(|o| o.port).collect();
    assert_eq!(out, ["p2", "p3"]);
}

#[test]
fn an_output_to_the_controller_is_the_sets_output() {
    use crate::switch::pipeline::REASON_AUTO;
    let to_controller = ActRt::Controller { max_len: 0xffff, reason: REASON_AUTO, id: 0 };
    let mut t0 = wa(&[ActRt::Output(P2)]);
    t0.push(goto(1));
    let net = two_taps().table(0, vec![(10, vec![], t0)]).table(1, vec![(10, vec![], wa(&[to_controller]))]);
    let mut h = Harness::new(net.build());
    assert!(h.send("p1", &raw(B, A)).is_empty(), "the later output (to the controller) replaced output:p2");
    assert_eq!(h.outs.to_controller.len(), 1);
    assert_eq!(h.outs.to_controller[0].table, 1);
}
