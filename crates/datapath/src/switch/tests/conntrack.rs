use super::*;
use crate::switch::pipeline::{CtRt, CtWriteRt};

// ---- The ct action in the pipeline: a stateful firewall between p1 (inside) and p2 (outside) ----

const TRK: u128 = 0x20;
const NEW: u128 = 0x01;
const EST: u128 = 0x02;
const INV: u128 = 0x10;

fn ct(commit: bool, table: Option<u8>) -> CtRt {
    CtRt {
        commit,
        force: false,
        zone: Ok(7),
        table,
        exec: [Some(CtWriteRt::Const { label: false, value: 0xab, mask: 0xff }), None, None, None],
        nat: None,
    }
}

fn st(value: u128, mask: u128) -> (Slot, u128, u128) {
    (slot::CT_STATE, value, mask)
}

/// Table 0 sends IP through the tracker into table 1; table 1 lets established traffic both ways, new
/// connections only from p1 to UDP port 53, and drops the rest.
fn firewall() -> Net {
    two_taps()
        .cts(vec![ct(false, Some(1)), ct(true, None)])
        .table(
            0,
            vec![
                (10, vec![m(slot::DL_TYPE, 0x0800), st(0, TRK)], vec![ActRt::Ct(0)]),
                (0, vec![], vec![ActRt::Normal]),
            ],
        )
        .table(
            1,
            vec![
                (30, vec![st(TRK | INV, TRK | INV)], vec![]),
                (20, vec![st(TRK | EST, TRK | EST), m(slot::IN_PORT, 1)], vec![ActRt::Output(P2)]),
                (20, vec![st(TRK | EST, TRK | EST), m(slot::IN_PORT, 2)], vec![ActRt::Output(P1)]),
                (
                    10,
                    vec![st(TRK | NEW, TRK | NEW), m(slot::IN_PORT, 1), m(slot::TP_DST, 53)],
                    vec![ActRt::Ct(1), ActRt::Output(P2)],
                ),
            ],
        )
}

/// The frame's answer: addresses, MACs and ports swapped.
fn reply(f: &[u8]) -> Vec<u8> {
    let mut r = f.to_vec();
    r[0..6].copy_from_slice(&f[6..12]);
    r[6..12].copy_from_slice(&f[0..6]);
    r[26..30].copy_from_slice(&f[30..34]);
    r[30..34].copy_from_slice(&f[26..30]);
    r[34..36].copy_from_slice(&f[36..38]);
    r[36..38].copy_from_slice(&f[34..36]);
    r
}

#[test]
fn a_stateful_firewall_lets_answers_in_and_nothing_else() {
    let mut h = Harness::new(firewall().build());
    let out = udp4(B, A, 60, false, 53);
    assert_eq!(h.ports("p1", &out), ["p2"]);
    assert_eq!(h.ports("p2", &reply(&out)), ["p1"], "the answer is established");
    // p2 cannot start anything, and p1 only to port 53.
    assert!(h.ports("p1", &udp4(B, A, 60, false, 54)).is_empty());
    assert!(h.ports("p2", &reply(&udp4(B, A, 60, false, 54))).is_empty(), "no connection to answer");
    let ct = h.sw.pipeline().conntrack.clone();
    let conns = ct.dump(None, h.now);
    assert_eq!(conns.len(), 1);
    assert_eq!((conns[0].zone, conns[0].mark, conns[0].orig.dst.port), (7, 0xab, 53));
    // Non-IP goes by NORMAL, untouched by the tracker.
    assert_eq!(h.ports("p1", &raw(B, A)), ["br0", "p2", "p3"]);
}

#[test]
fn the_tracked_fork_goes_on_in_its_table_and_the_rest_untracked() {
    // Table 0: ct(table=1), then output to p3 with the packet untracked: table 1 sees ct_state, the output
    // after the ct does not need it.
    let net = two_taps()
        .cts(vec![ct(true, Some(1))])
        .table(
            0,
            vec![(
                10,
                vec![m(slot::DL_TYPE, 0x0800)],
                vec![ActRt::Ct(0), ActRt::Resubmit { port: None, table: Some(2) }],
            )],
        )
        .table(
            1,
            vec![(
                10,
                vec![st(TRK | NEW, TRK | NEW), m(slot::CT_ZONE, 7), m(slot::CT_MARK, 0xab)],
                vec![ActRt::Output(P2)],
            )],
        )
        .table(2, vec![(10, vec![st(0, TRK)], vec![ActRt::Output(P3)])]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &udp4(B, A, 60, false, 53)), ["p2", "p3"]);
    // ct_clear: untracked again.
    let net = two_taps()
        .cts(vec![ct(false, Some(1))])
        .table(0, vec![(10, vec![m(slot::DL_TYPE, 0x0800)], vec![ActRt::Ct(0)])])
        .table(1, vec![(10, vec![st(TRK, TRK)], vec![ActRt::CtClear, ActRt::Resubmit { port: None, table: Some(2) }])])
        .table(2, vec![(10, vec![st(0, TRK)], vec![ActRt::Output(P3)])]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &udp4(B, A, 60, false, 53)), ["p3"]);
}

#[test]
fn a_full_connection_table_drops_new_connections_and_counts_them() {
    let mut h = Harness::new(firewall().build());
    h.sw.pipeline().conntrack.set_limit(1);
    assert_eq!(h.ports("p1", &udp4(B, A, 60, false, 53)), ["p2"]);
    let mut second = udp4(B, A, 60, false, 53);
    second[34..36].copy_from_slice(&40001u16.to_be_bytes());
    assert!(h.ports("p1", &second).is_empty());
    assert_eq!(h.drops("p1", DropReason::CtFull), 1);
    assert_eq!(h.ports("p2", &reply(&udp4(B, A, 60, false, 53))), ["p1"], "the old connection goes on");
}

// ---- NAT in the pipeline ----

use super::rewrites::{checksums_hold, udp4_summed};
use crate::conntrack::{NatArgs, NatKind};

const HOST: u32 = 0xcb00_7107; // 203.0.113.7

fn nat_ct(kind: NatKind, commit: bool, table: Option<u8>) -> CtRt {
    let addrs = (kind != NatKind::Reverse).then_some((u128::from(HOST), u128::from(HOST)));
    let nat = NatArgs { kind, addrs, v6: false, ports: None, persistent: false };
    CtRt { commit, force: false, zone: Ok(1), table, exec: [None; 4], nat: Some(nat) }
}

/// p1 inside, p2 outside: what p1 sends leaves p2 from 203.0.113.7; what comes in on p2 is translated back
/// and goes on in table 1, which `table1` fills.
fn snat_net(table1: Vec<FlowSpec>) -> Net {
    two_taps()
        .cts(vec![nat_ct(NatKind::Src, true, None), nat_ct(NatKind::Reverse, false, Some(1))])
        .table(
            0,
            vec![
                (10, vec![m(slot::DL_TYPE, 0x0800), m(slot::IN_PORT, 1)], vec![ActRt::Ct(0), ActRt::Output(P2)]),
                (10, vec![m(slot::DL_TYPE, 0x0800), m(slot::IN_PORT, 2)], vec![ActRt::Ct(1)]),
            ],
        )
        .table(1, table1)
}

#[test]
fn snat_rewrites_frames_both_ways_with_their_checksums_right() {
    // p1 inside, p2 outside: what leaves p2 comes from 203.0.113.7; answers to it go back to p1.
    let net =
        snat_net(vec![(10, vec![st(TRK | EST, TRK | EST), m(slot::NW_DST, 0xc633_6401)], vec![ActRt::Output(P1)])]);
    let mut h = Harness::new(net.build());
    let out = udp4_summed(64, 0);
    let sent = h.send("p1", &out);
    assert_eq!(sent.len(), 1);
    let f = &sent[0].frame;
    assert_eq!((sent[0].port.as_str(), &f[26..30]), ("p2", &[203, 0, 113, 7][..]));
    assert_eq!(&f[34..36], &out[34..36], "the source port is kept");
    assert!(checksums_hold(f), "{f:02x?}");
    // The answer, to the translated address: its destination goes back to 198.51.100.1.
    let mut answer = reply(f);
    answer[40..42].fill(0);
    let mut pseudo = answer[26..34].to_vec();
    pseudo.extend_from_slice(&[0, 17, 0, 40]);
    pseudo.extend_from_slice(&answer[34..]);
    let c = !pseudo.chunks(2).fold(0u32, |s, w| {
        let s = s + u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        (s & 0xffff) + (s >> 16)
    }) as u16;
    answer[40..42].copy_from_slice(&c.to_be_bytes());
    assert!(checksums_hold(&answer));
    let back = h.send("p2", &answer);
    assert_eq!(back.len(), 1, "the answer is established and un-translated");
    let b = &back[0].frame;
    assert_eq!((back[0].port.as_str(), &b[30..34]), ("p1", &[198, 51, 100, 1][..]));
    assert!(checksums_hold(b), "{b:02x?}");
    // Something sent to the host address that answers nothing is not let in.
    let mut stray = answer.clone();
    stray[34..36].copy_from_slice(&9999u16.to_be_bytes());
    assert!(h.send("p2", &stray).is_empty());
}

#[test]
fn exec_writes_constants_and_register_bits_into_the_mark_and_label_in_order() {
    let exec = [
        Some(CtWriteRt::Const { label: false, value: 0xff00, mask: 0xffff }),
        Some(CtWriteRt::Move {
            label: false,
            src: crate::classifier::SubSlot { slot: slot::reg(0), ofs: 0, nbits: 4 },
            ofs: 4,
        }),
        Some(CtWriteRt::Move {
            label: true,
            src: crate::classifier::SubSlot { slot: slot::reg(1), ofs: 0, nbits: 32 },
            ofs: 96,
        }),
        None,
    ];
    let ct = CtRt { commit: true, force: false, zone: Ok(3), table: None, exec, nat: None };
    let set = |s: Slot, v: u128| ActRt::SetBits { slot: s, value: v, mask: Slot::bits_mask(0, s.bits) };
    let net = two_taps().cts(vec![ct]).table(
        0,
        vec![(
            10,
            vec![m(slot::DL_TYPE, 0x0800)],
            vec![set(slot::reg(0), 0x9), set(slot::reg(1), 0xdead_beef), ActRt::Ct(0), ActRt::Output(P2)],
        )],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &udp4(B, A, 60, false, 53)), ["p2"]);
    let conns = h.sw.pipeline().conntrack.dump(Some(3), h.now);
    assert_eq!((conns[0].mark, conns[0].label), (0xff90, 0xdead_beef << 96));
}

/// The 16-bit ones' complement sum of `b` (0xffff when a checksum inside it holds).
fn ones(b: &[u8]) -> u16 {
    let mut s: u32 = b.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

#[test]
fn an_icmp_error_about_a_translated_packet_is_translated_back_with_what_it_quotes() {
    let net = snat_net(vec![(10, vec![st(TRK | 0x04, TRK | 0x04)], vec![ActRt::Output(P1)])]);
    let mut h = Harness::new(net.build());
    let sent = h.send("p1", &udp4_summed(64, 0));
    let out = sent[0].frame.clone();
    assert_eq!(&out[26..30], &[203, 0, 113, 7]);
    // A router beyond answers the translated datagram: "port unreachable", to 203.0.113.7, quoting it.
    let quoted = &out[14..14 + 28];
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(quoted);
    let c = !ones(&icmp);
    icmp[2..4].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0, 0, 64, 1, 0, 0, 192, 0, 2, 99, 203, 0, 113, 7];
    ip[2..4].copy_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
    let c = !ones(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&icmp);
    let mut err = out[6..12].to_vec();
    err.extend_from_slice(&out[0..6]);
    err.extend_from_slice(&[0x08, 0x00]);
    err.extend_from_slice(&ip);
    let back = h.send("p2", &err);
    assert_eq!(back.len(), 1, "the error is related and goes back inside");
    let f = &back[0].frame;
    assert_eq!(&f[30..34], &[198, 51, 100, 1], "the error goes to the inside host");
    assert_eq!(&f[14 + 20 + 8 + 12..14 + 20 + 8 + 16], &[198, 51, 100, 1], "the quoted packet is as it left it");
    assert_eq!(&f[14 + 20 + 8 + 20..14 + 20 + 8 + 22], &40000u16.to_be_bytes());
    assert_eq!(ones(&f[14..34]), 0xffff, "outer IP checksum");
    assert_eq!(ones(&f[34..]), 0xffff, "ICMP checksum");
    assert_eq!(ones(&f[42..62]), 0xffff, "quoted IP header checksum");
}
