use super::*;
use crate::classifier::SubSlot;

// ---- Registers, metadata and rewritten fields between tables ----

/// Sets all of `s` to `v`.
fn set(s: Slot, v: u128) -> ActRt {
    ActRt::SetBits { slot: s, value: v, mask: Slot::bits_mask(0, s.bits) }
}

fn goto(t: u8) -> ActRt {
    ActRt::GotoTable(t)
}

fn resubmit(t: u8) -> ActRt {
    ActRt::Resubmit { port: None, table: Some(t) }
}

#[test]
fn a_register_written_in_one_table_is_matched_in_the_next() {
    let net = two_taps().table(0, vec![(10, vec![], vec![set(slot::reg(5), 0x55), goto(1)])]).table(
        1,
        vec![(20, vec![m(slot::reg(5), 0x55)], vec![ActRt::Output(P2)]), (10, vec![], vec![ActRt::Output(P3)])],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2"]);
    // Registers start at zero for every packet: the next one is not steered by the last one's.
    let net =
        two_taps().table(0, vec![(20, vec![m(slot::reg(5), 0x55)], vec![ActRt::Output(P2)]), (10, vec![], vec![])]);
    let mut h = Harness::new(net.build());
    assert!(h.send("p1", &raw(B, A)).is_empty());
}

#[test]
fn registers_share_words_without_touching_each_other() {
    // reg0 and reg1 are the two halves of xreg0; xxreg0 is reg0..reg3.
    let mut k = FlowKey::default();
    k.put(slot::reg(0), 0x1111_1111);
    k.put(slot::reg(1), 0x2222_2222);
    k.put(slot::reg(3), 0x4444_4444);
    assert_eq!(k.get(slot::xreg(0)), 0x1111_1111_2222_2222);
    assert_eq!(k.get(slot::xxreg(0)), 0x1111_1111_2222_2222_0000_0000_4444_4444);
    k.set_masked(slot::reg(1), 0xab00, 0xff00);
    assert_eq!(k.get(slot::reg(1)), 0x2222_ab22);
    assert_eq!(k.get(slot::reg(0)), 0x1111_1111);
    assert_eq!(k.get_bits(SubSlot { slot: slot::xxreg(0), ofs: 96, nbits: 32 }), 0x1111_1111);
}

#[test]
fn what_a_resubmitted_table_writes_stays_but_the_input_port_comes_back() {
    let net = two_taps()
        .table(
            0,
            vec![(
                10,
                vec![m(slot::IN_PORT, 1)],
                vec![ActRt::Resubmit { port: Some(P2), table: Some(1) }, resubmit(2)],
            )],
        )
        .table(1, vec![(10, vec![m(slot::IN_PORT, 2)], vec![set(slot::METADATA, 0xfeed)])])
        .table(
            2,
            vec![
                (30, vec![m(slot::IN_PORT, 1), m(slot::METADATA, 0xfeed)], vec![ActRt::Output(P3)]),
                (10, vec![], vec![ActRt::Output(P2)]),
            ],
        );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"]);
}

#[test]
fn move_copies_bits_between_the_packet_and_registers() {
    // A's last byte (0x0a) goes into reg2 bits 8..15; table 1 matches it there, writes 0xbb into reg3 and moves
    // that into the destination MAC's last byte: the frame leaves rewritten.
    let dl_src = SubSlot { slot: slot::DL_SRC, ofs: 0, nbits: 8 };
    let r2 = SubSlot { slot: slot::reg(2), ofs: 8, nbits: 8 };
    let r3 = SubSlot { slot: slot::reg(3), ofs: 0, nbits: 8 };
    let dl_dst = SubSlot { slot: slot::DL_DST, ofs: 0, nbits: 8 };
    let net = two_taps().table(0, vec![(10, vec![], vec![ActRt::Move { src: dl_src, dst: r2 }, goto(1)])]).table(
        1,
        vec![(
            10,
            vec![(slot::reg(2), 0x0a00, 0xff00)],
            vec![set(slot::reg(3), 0xbb), ActRt::Move { src: r3, dst: dl_dst }, ActRt::Output(P2)],
        )],
    );
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].frame, raw(EthernetAddress([2, 0, 0, 0, 0, 0xbb]), A));
}

#[test]
fn rewritten_packet_fields_are_what_the_next_table_sees() {
    let net = tunnels()
        .table(0, vec![(10, vec![], vec![ActRt::SetTunId(77), ActRt::ModVlanVid(7), ActRt::SetEthDst(C), goto(1)])])
        .table(
            1,
            vec![
                (
                    30,
                    vec![
                        m(slot::TUN_ID, 77),
                        (slot::VLAN_TCI, 0x1007, 0x1fff),
                        m(slot::DL_DST, u128::from(C.as_u64())),
                    ],
                    vec![ActRt::StripVlan, ActRt::Output(PortIdx(2))],
                ),
                (10, vec![], vec![]),
            ],
        );
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!((out.len(), out[0].vni), (1, Some(77)), "{out:?}");
    assert_eq!(out[0].frame[..6], C.0);
}

#[test]
fn a_masked_metadata_write_keeps_the_other_bits() {
    let write = |v: u128, mask: u128| ActRt::SetBits { slot: slot::METADATA, value: v, mask };
    let net = two_taps()
        .table(0, vec![(10, vec![], vec![write(0xff00, 0xff00), write(0x0012, 0x00ff), goto(1)])])
        .table(1, vec![(10, vec![m(slot::METADATA, 0xff12)], vec![ActRt::Output(P3)])]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p3"]);
}

#[test]
fn output_reg_sends_to_the_port_a_register_names() {
    // reg0 holds 3 (p3's number); reg1's high half holds 2; a register naming no port sends nowhere.
    let r0 = SubSlot { slot: slot::reg(0), ofs: 0, nbits: 32 };
    let r1_high = SubSlot { slot: slot::reg(1), ofs: 16, nbits: 16 };
    let r2 = SubSlot { slot: slot::reg(2), ofs: 0, nbits: 32 };
    let net = two_taps().table(
        0,
        vec![(
            10,
            vec![],
            vec![
                set(slot::reg(0), 3),
                set(slot::reg(1), 0x0002_0000),
                set(slot::reg(2), 99),
                ActRt::OutputReg(r0),
                ActRt::OutputReg(r1_high),
                ActRt::OutputReg(r2),
            ],
        )],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2", "p3"]);
    // The input port is skipped, as for output:N.
    assert_eq!(h.ports("p3", &raw(B, A)), ["p2"]);
}

// ---- Packet-out ----

#[test]
fn a_packet_out_runs_its_actions_on_the_frame() {
    let mut h = Harness::new(two_taps().table(0, vec![(10, vec![], vec![])]).build());
    let out = h.packet_out(Some("p1"), &raw(B, A), &[ActRt::SetEthDst(C), ActRt::Output(P2), ActRt::Output(P1)]);
    assert_eq!(out.len(), 1, "output to the input port is skipped, as for a flow: {out:?}");
    assert_eq!((out[0].port.as_str(), &out[0].frame), ("p2", &raw(C, A)));
    // From the controller itself no port is the input port: the internal port may be an output too.
    let out = h.packet_out(None, &raw(B, A), &[ActRt::Output(PortIdx(0)), ActRt::Output(P3)]);
    assert_eq!(out.iter().map(|o| o.port.as_str()).collect::<Vec<_>>(), ["br0", "p3"]);
}

#[test]
fn a_packet_out_to_the_table_goes_through_the_flows() {
    // Flows see in_port=CONTROLLER (0xfffffffd) for a frame from the controller, the real port otherwise.
    let net = two_taps().table(
        0,
        vec![
            (20, vec![m(slot::IN_PORT, 0xffff_fffd)], vec![ActRt::Output(P3)]),
            (10, vec![m(slot::IN_PORT, 1)], vec![ActRt::Output(P2)]),
        ],
    );
    let mut h = Harness::new(net.build());
    let table = [resubmit(0)];
    assert_eq!(h.packet_out(None, &raw(B, A), &table)[0].port, "p3");
    assert_eq!(h.packet_out(Some("p1"), &raw(B, A), &table)[0].port, "p2");
    // With only the default flow, OFPP_TABLE is the learning switch.
    let mut h = Harness::new(two_taps().build());
    h.send("p3", &raw(BCAST, B));
    let out = h.packet_out(Some("p1"), &raw(B, A), &table);
    assert_eq!(out.iter().map(|o| o.port.as_str()).collect::<Vec<_>>(), ["p3"], "B was learned on p3");
}

#[test]
fn a_flow_matches_a_tagged_frames_priority() {
    // dl_vlan_pcp=5: the TCI's top bits with the "tagged" bit; dl_vlan=7,dl_vlan_pcp=5 both.
    let net = two_taps().vlan("p1", None, &[7]).table(
        0,
        vec![
            (30, vec![(slot::VLAN_TCI, 0x1000 | 7 | 5 << 13, 0xffff)], vec![ActRt::Output(P3)]),
            (20, vec![(slot::VLAN_TCI, 0x1000 | 5 << 13, 0xf000)], vec![ActRt::Output(P2)]),
            (10, vec![], vec![]),
        ],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &tagged(&raw(B, A), 7 | 5 << 13)), ["p3"]);
    assert!(h.send("p1", &tagged(&raw(B, A), 7 | 4 << 13)).is_empty(), "another priority");
    let net = two_taps().vlan("p1", None, &[8]).table(
        0,
        vec![(20, vec![(slot::VLAN_TCI, 0x1000 | 5 << 13, 0xf000)], vec![ActRt::Output(P2)]), (10, vec![], vec![])],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &tagged(&raw(B, A), 8 | 5 << 13)), ["p2"]);
}

#[test]
fn exit_stops_every_action_that_was_to_follow() {
    // Table 1 outputs to p2 and exits: table 0's output to p3 after the resubmit never runs.
    let net = two_taps()
        .table(0, vec![(10, vec![], vec![resubmit(1), ActRt::Output(P3)])])
        .table(1, vec![(10, vec![], vec![ActRt::Output(P2), ActRt::Exit, ActRt::Output(P3)])]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2"]);
}

#[test]
fn push_and_pop_swap_two_fields_and_an_empty_stack_stops_the_packet() {
    use crate::classifier::SubSlot;
    let whole = |s| SubSlot { slot: s, ofs: 0, nbits: 48 };
    // The swap OVN's and Neutron's responders write: push both MACs, pop them the other way round.
    let net = two_taps().table(
        0,
        vec![
            (
                20,
                vec![m(slot::DL_DST, u128::from(B.as_u64()))],
                vec![
                    ActRt::StackPush(whole(slot::DL_SRC)),
                    ActRt::StackPush(whole(slot::DL_DST)),
                    ActRt::StackPop(whole(slot::DL_SRC)),
                    ActRt::StackPop(whole(slot::DL_DST)),
                    ActRt::Output(P2),
                ],
            ),
            (10, vec![], vec![ActRt::StackPop(whole(slot::DL_SRC)), ActRt::Output(P2)]),
        ],
    );
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &raw(B, A));
    assert_eq!((&out[0].frame[0..6], &out[0].frame[6..12]), (&A.0[..], &B.0[..]), "swapped");
    assert!(h.send("p1", &raw(C, A)).is_empty(), "a pop from an empty stack drops the packet");
    assert_eq!(h.drops("p1", DropReason::FlowDrop), 1);
}

#[test]
fn output_with_max_len_sends_the_first_bytes_only() {
    let net = two_taps().table(0, vec![(10, vec![], vec![ActRt::OutputTrunc(Some(P2), 20), ActRt::Output(P3)])]);
    let mut h = Harness::new(net.build());
    let frame = udp4(B, A, 60, false, 53);
    let out = h.send("p1", &frame);
    assert_eq!(out[0].frame, frame[..20], "cut to 20 bytes");
    assert_eq!(out[1].frame, frame, "the next output has the whole frame");
}
