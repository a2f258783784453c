use super::packet::*;
use super::*;
use crate::headers::Headers;
use weft_wire::tcp::{FLAG_ACK, FLAG_FIN, FLAG_RST, FLAG_SYN};

const A: [u8; 4] = [10, 0, 0, 1];
const B: [u8; 4] = [10, 0, 0, 2];
const R: [u8; 4] = [10, 0, 0, 254];

fn ipv4(src: [u8; 4], dst: [u8; 4], proto: u8, l4: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; 14];
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (20 + l4.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, proto, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    f.extend_from_slice(&ip);
    f.extend_from_slice(l4);
    f
}

struct Seg {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    win: u16,
    len: usize,
    wscale: Option<u8>,
}

fn tcp(src: [u8; 4], dst: [u8; 4], s: Seg) -> Vec<u8> {
    let opts: Vec<u8> = s.wscale.map_or(vec![], |w| vec![1, 3, 3, w]);
    let hlen = 20 + opts.len();
    let mut l4 = vec![0u8; hlen];
    l4[0..2].copy_from_slice(&s.sport.to_be_bytes());
    l4[2..4].copy_from_slice(&s.dport.to_be_bytes());
    l4[4..8].copy_from_slice(&s.seq.to_be_bytes());
    l4[8..12].copy_from_slice(&s.ack.to_be_bytes());
    l4[12] = ((hlen / 4) as u8) << 4;
    l4[13] = s.flags;
    l4[14..16].copy_from_slice(&s.win.to_be_bytes());
    l4[20..].copy_from_slice(&opts);
    l4.extend(std::iter::repeat_n(0xab, s.len));
    ipv4(src, dst, TCP, &l4)
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
    let mut l4 = vec![0u8; 12];
    l4[0..2].copy_from_slice(&sport.to_be_bytes());
    l4[2..4].copy_from_slice(&dport.to_be_bytes());
    l4[4..6].copy_from_slice(&12u16.to_be_bytes());
    ipv4(src, dst, UDP, &l4)
}

fn pkt(frame: &[u8]) -> Option<CtPacket> {
    CtPacket::parse(frame, &Headers::parse(frame))
}

fn run(ct: &Conntrack, frame: &[u8], args: &CtArgs, now: Nanos) -> CtMeta {
    match ct.execute(pkt(frame).as_ref(), args, now) {
        Verdict::Tracked(m) => m,
        Verdict::Full => panic!("table full"),
    }
}

const COMMIT: CtArgs = CtArgs { zone: 0, commit: true, force: false, mark: None, label: None, nat: None, dry: false };
const LOOK: CtArgs = CtArgs { zone: 0, commit: false, force: false, mark: None, label: None, nat: None, dry: false };

fn seg(sport: u16, dport: u16, seq: u32, ack: u32, flags: u8, len: usize) -> Seg {
    Seg { sport, dport, seq, ack, flags, win: 64000, len, wscale: None }
}

/// A committed handshake between A:40000 and B:22; returns A's and B's next sequence numbers.
fn handshake(ct: &Conntrack, now: Nanos) -> (u32, u32) {
    let syn = tcp(A, B, Seg { wscale: Some(7), ..seg(40000, 22, 1000, 0, FLAG_SYN, 0) });
    assert_eq!(run(ct, &syn, &LOOK, now).state, state::TRK | state::NEW);
    assert_eq!(run(ct, &syn, &COMMIT, now).state, state::TRK | state::NEW);
    let synack = tcp(B, A, Seg { wscale: Some(7), ..seg(22, 40000, 5000, 1001, FLAG_SYN | FLAG_ACK, 0) });
    assert_eq!(run(ct, &synack, &LOOK, now).state, state::TRK | state::EST | state::RPL);
    let ack = tcp(A, B, Seg { win: 500, ..seg(40000, 22, 1001, 5001, FLAG_ACK, 0) });
    assert_eq!(run(ct, &ack, &LOOK, now).state, state::TRK | state::EST);
    (1001, 5001)
}

#[test]
fn a_tcp_handshake_goes_from_new_to_established_both_ways() {
    let ct = Conntrack::new(7);
    let (a, b) = handshake(&ct, 0);
    let data = tcp(A, B, Seg { win: 500, ..seg(40000, 22, a, b, FLAG_ACK, 1400) });
    let m = run(&ct, &data, &LOOK, SECOND);
    assert_eq!(m.state, state::TRK | state::EST);
    let orig = m.orig.expect("the original tuple");
    assert_eq!((orig.src.port, orig.dst.port, orig.proto), (40000, 22, TCP));
    let back = tcp(B, A, Seg { win: 500, ..seg(22, 40000, b, a + 1400, FLAG_ACK, 100) });
    assert_eq!(run(&ct, &back, &LOOK, SECOND).state, state::TRK | state::EST | state::RPL);
    let e = ct.dump(None, SECOND);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].tcp, Some((tcp::PeerState::Established, tcp::PeerState::Established)));
    assert_eq!(e[0].expires_in, 24 * 3600);
}

#[test]
fn an_out_of_window_reset_is_invalid_and_the_connection_survives() {
    let ct = Conntrack::new(7);
    let (a, b) = handshake(&ct, 0);
    // A forged reset far from the sequence B expects from A.
    let forged = tcp(A, B, seg(40000, 22, a.wrapping_add(3_000_000), 0, FLAG_RST, 0));
    assert_eq!(run(&ct, &forged, &LOOK, SECOND).state, state::TRK | state::INV);
    // Also one just off by a few bytes: a reset must carry exactly the expected number.
    let near = tcp(A, B, seg(40000, 22, a + 10, 0, FLAG_RST, 0));
    assert_eq!(run(&ct, &near, &LOOK, SECOND).state, state::TRK | state::INV);
    let data = tcp(A, B, Seg { win: 500, ..seg(40000, 22, a, b, FLAG_ACK, 100) });
    assert_eq!(run(&ct, &data, &LOOK, SECOND).state, state::TRK | state::EST);
    assert_eq!(ct.counters.invalid.load(Ordering::Relaxed), 2);
    // The exact one closes it.
    let rst = tcp(B, A, seg(22, 40000, b, 0, FLAG_RST, 0));
    assert_eq!(run(&ct, &rst, &LOOK, SECOND).state, state::TRK | state::EST | state::RPL);
    assert_eq!(ct.dump(None, SECOND)[0].tcp, Some((tcp::PeerState::TimeWait, tcp::PeerState::TimeWait)));
    assert_eq!(ct.dump(None, SECOND)[0].expires_in, 30);
}

#[test]
fn data_beyond_the_advertised_window_is_invalid() {
    let ct = Conntrack::new(7);
    let (a, b) = handshake(&ct, 0);
    // B advertised 64000 << 7 bytes: 20 MB further on is outside it.
    let far = tcp(A, B, Seg { win: 500, ..seg(40000, 22, a.wrapping_add(20_000_000), b, FLAG_ACK, 100) });
    assert_eq!(run(&ct, &far, &LOOK, SECOND).state, state::TRK | state::INV);
}

#[test]
fn bad_flags_and_half_openings_cannot_start_a_connection() {
    let ct = Conntrack::new(7);
    for flags in [FLAG_SYN | FLAG_FIN, FLAG_SYN | FLAG_RST, 0, FLAG_FIN, FLAG_SYN | FLAG_ACK] {
        let f = tcp(A, B, seg(1, 2, 100, 0, flags, 0));
        assert_eq!(run(&ct, &f, &COMMIT, 0).state, state::TRK | state::INV, "flags {flags:#x}");
    }
    assert!(ct.is_empty());
    // An ACK in the middle of a stream is picked up (as OVS does).
    let mid = tcp(A, B, seg(1, 2, 100, 77, FLAG_ACK, 10));
    assert_eq!(run(&ct, &mid, &COMMIT, 0).state, state::TRK | state::NEW);
    assert_eq!(ct.len(), 1);
}

#[test]
fn a_syn_again_is_still_new_and_fin_close_both_ways_ends_it() {
    let ct = Conntrack::new(7);
    let syn = tcp(A, B, seg(40000, 22, 1000, 0, FLAG_SYN, 0));
    run(&ct, &syn, &COMMIT, 0);
    assert_eq!(run(&ct, &syn, &LOOK, SECOND).state, state::TRK | state::NEW);
    let (a, b) = handshake(&Conntrack::new(1), 0);
    let ct = Conntrack::new(7);
    handshake(&ct, 0);
    let fin_a = tcp(A, B, seg(40000, 22, a, b, FLAG_FIN | FLAG_ACK, 0));
    assert_eq!(run(&ct, &fin_a, &LOOK, 0).state & state::EST, state::EST);
    let fin_b = tcp(B, A, seg(22, 40000, b, a + 1, FLAG_FIN | FLAG_ACK, 0));
    run(&ct, &fin_b, &LOOK, 0);
    let last = tcp(A, B, seg(40000, 22, a + 1, b + 1, FLAG_ACK, 0));
    run(&ct, &last, &LOOK, 0);
    let e = ct.dump(None, 0);
    assert_eq!(e[0].tcp, Some((tcp::PeerState::FinWait2, tcp::PeerState::FinWait2)));
    assert_eq!(e[0].expires_in, 30);
    // A new SYN on the closed connection starts a new one.
    let again = tcp(A, B, seg(40000, 22, 9000, 0, FLAG_SYN, 0));
    assert_eq!(run(&ct, &again, &COMMIT, SECOND).state, state::TRK | state::NEW);
    assert_eq!(ct.dump(None, SECOND)[0].tcp, Some((tcp::PeerState::SynSent, tcp::PeerState::Closed)));
}

#[test]
fn udp_is_new_then_established_and_expires_on_its_own_timer() {
    let ct = Conntrack::new(7);
    let out = udp(A, B, 5000, 53);
    assert_eq!(run(&ct, &out, &LOOK, 0).state, state::TRK | state::NEW);
    assert!(ct.is_empty(), "nothing is kept without commit");
    assert_eq!(run(&ct, &out, &COMMIT, 0).state, state::TRK | state::NEW);
    let back = udp(B, A, 53, 5000);
    assert_eq!(run(&ct, &back, &LOOK, SECOND).state, state::TRK | state::EST | state::RPL);
    // Replied: 30 s without traffic and it is gone.
    assert_eq!(run(&ct, &out, &LOOK, 30 * SECOND).state, state::TRK | state::EST);
    assert_eq!(run(&ct, &out, &LOOK, 61 * SECOND).state, state::TRK | state::NEW);
    assert!(ct.is_empty());
    assert_eq!(ct.counters.expired.load(Ordering::Relaxed), 1);
}

#[test]
fn zones_keep_connections_apart_and_mark_and_label_are_kept() {
    let ct = Conntrack::new(7);
    let out = udp(A, B, 5000, 53);
    let args = CtArgs { zone: 5, mark: Some((0xab, 0xff)), label: Some((1 << 100, 1 << 100)), ..COMMIT };
    let m = run(&ct, &out, &args, 0);
    assert_eq!((m.zone, m.mark, m.label), (5, 0xab, 1 << 100));
    let back = udp(B, A, 53, 5000);
    assert_eq!(run(&ct, &back, &LOOK, 0).state, state::TRK | state::NEW, "zone 0 knows nothing of it");
    let m = run(&ct, &back, &CtArgs { zone: 5, ..LOOK }, 0);
    assert_eq!((m.state, m.mark, m.label), (state::TRK | state::EST | state::RPL, 0xab, 1 << 100));
    assert_eq!(ct.dump(Some(5), 0).len(), 1);
    assert_eq!(ct.dump(Some(0), 0).len(), 0);
    assert_eq!(ct.flush(Some(5)), 1);
    assert!(ct.is_empty());
}

#[test]
fn an_icmp_error_quoting_a_tracked_packet_is_related() {
    let ct = Conntrack::new(7);
    let out = udp(A, B, 5000, 53);
    run(&ct, &out, &COMMIT, 0);
    // A router in the path answers A's datagram: time exceeded, quoting it.
    let mut icmp = vec![11, 0, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&out[14..14 + 28]);
    let err = ipv4(R, A, ICMP, &icmp);
    assert_eq!(run(&ct, &err, &LOOK, 0).state, state::TRK | state::REL | state::RPL);
    // Quoting a packet nobody tracks, or sent to someone who did not send it: invalid.
    let mut stray = vec![3, 3, 0, 0, 0, 0, 0, 0];
    stray.extend_from_slice(&udp(A, B, 5001, 53)[14..14 + 28]);
    assert_eq!(run(&ct, &ipv4(R, A, ICMP, &stray), &LOOK, 0).state, state::TRK | state::INV);
    assert_eq!(run(&ct, &ipv4(R, B, ICMP, &icmp), &LOOK, 0).state, state::TRK | state::INV);
}

#[test]
fn icmp_echo_is_tracked_by_its_identifier() {
    let ct = Conntrack::new(7);
    let echo = |src, dst, t: u8, id: u16| ipv4(src, dst, ICMP, &[t, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1]);
    assert_eq!(run(&ct, &echo(A, B, 8, 77), &COMMIT, 0).state, state::TRK | state::NEW);
    assert_eq!(run(&ct, &echo(B, A, 0, 77), &LOOK, 0).state, state::TRK | state::EST | state::RPL);
    assert_eq!(run(&ct, &echo(B, A, 0, 78), &LOOK, 0).state, state::TRK | state::INV, "a reply with no request");
    assert_eq!(ct.dump(None, 0)[0].icmp, Some((8, 0)));
}

#[test]
fn a_full_table_refuses_new_connections_and_keeps_the_old() {
    let ct = Conntrack::new(7);
    ct.set_limit(2);
    run(&ct, &udp(A, B, 1, 53), &COMMIT, 0);
    run(&ct, &udp(A, B, 2, 53), &COMMIT, 0);
    assert_eq!(ct.execute(pkt(&udp(A, B, 3, 53)).as_ref(), &COMMIT, 0), Verdict::Full);
    assert_eq!(run(&ct, &udp(B, A, 53, 1), &LOOK, 0).state, state::TRK | state::EST | state::RPL);
    assert_eq!(ct.counters.full.load(Ordering::Relaxed), 1);
    ct.set_limit(100);
    ct.set_zone_limit(9, Some(1));
    let z9 = CtArgs { zone: 9, ..COMMIT };
    run(&ct, &udp(A, B, 1, 53), &z9, 0);
    assert_eq!(ct.execute(pkt(&udp(A, B, 2, 53)).as_ref(), &z9, 0), Verdict::Full);
    assert_eq!(ct.zone_limits(), vec![(9, 1, 1)]);
}

#[test]
fn the_sweep_removes_what_expired_in_bounded_slices() {
    let ct = Conntrack::new(7);
    for p in 0..1000 {
        run(&ct, &udp(A, B, p, 53), &COMMIT, 0);
    }
    assert_eq!(ct.len(), 1000);
    assert_eq!(ct.sweep(10 * SECOND, 100_000), 0);
    let mut removed = 0;
    for _ in 0..100 {
        removed += ct.sweep(61 * SECOND, 640);
    }
    assert_eq!(removed, 1000);
    assert!(ct.is_empty());
    // Freed slots are used again.
    run(&ct, &udp(A, B, 1, 53), &COMMIT, 70 * SECOND);
    assert_eq!(ct.len(), 1);
}

#[test]
fn what_cannot_be_followed_is_invalid_and_force_restarts_a_reversed_connection() {
    let ct = Conntrack::new(7);
    let mut arp = vec![0u8; 42];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert_eq!(run(&ct, &arp, &COMMIT, 0).state, state::TRK | state::INV);
    let mut short = tcp(A, B, seg(1, 2, 3, 4, FLAG_SYN, 0));
    short.truncate(14 + 20 + 10);
    assert_eq!(run(&ct, &short, &COMMIT, 0).state, state::TRK | state::INV);
    run(&ct, &udp(A, B, 5000, 53), &COMMIT, 0);
    let force = CtArgs { force: true, ..COMMIT };
    assert_eq!(run(&ct, &udp(B, A, 53, 5000), &force, 0).state, state::TRK | state::NEW);
    let e = ct.dump(None, 0);
    assert_eq!((e.len(), e[0].orig.src.port), (1, 53));
}

#[test]
fn workers_see_one_connection_from_both_sides() {
    let ct = std::sync::Arc::new(Conntrack::new(7));
    run(&ct, &udp(A, B, 5000, 53), &COMMIT, 0);
    let c2 = ct.clone();
    let t = std::thread::spawn(move || {
        (0..1000)
            .map(|_| run(&c2, &udp(B, A, 53, 5000), &LOOK, 0).state)
            .all(|s| s == state::TRK | state::EST | state::RPL)
    });
    let mine = (0..1000).all(|_| run(&ct, &udp(A, B, 5000, 53), &LOOK, 0).state == state::TRK | state::EST);
    assert!(mine && t.join().unwrap());
    assert_eq!(ct.len(), 1);
}

// ---- NAT ----

const S: [u8; 4] = [203, 0, 113, 7];

fn v4(a: [u8; 4]) -> u128 {
    u128::from(u32::from_be_bytes(a))
}

fn snat(ports: Option<(u16, u16)>) -> CtArgs {
    let nat = NatArgs { kind: NatKind::Src, addrs: Some((v4(S), v4(S))), v6: false, ports, persistent: false };
    CtArgs { nat: Some(nat), ..COMMIT }
}

const UNNAT: CtArgs = CtArgs {
    zone: 0,
    commit: false,
    force: false,
    mark: None,
    label: None,
    nat: Some(NatArgs { kind: NatKind::Reverse, addrs: None, v6: false, ports: None, persistent: false }),
    dry: false,
};

#[test]
fn snat_rewrites_the_source_and_answers_find_their_way_back() {
    let ct = Conntrack::new(7);
    let m = run(&ct, &udp(A, B, 5000, 53), &snat(None), 0);
    assert_eq!(m.state, state::TRK | state::NEW | state::SNAT);
    // The source port is kept when free.
    assert_eq!(m.rewrite, Rewrite { src: Some(Endpoint { addr: v4(S), port: 5000 }), dst: None });
    // The answer comes to the translated address: found by the reply key, sent back to A.
    let back = run(&ct, &udp(B, S, 53, 5000), &UNNAT, 0);
    assert_eq!(back.state, state::TRK | state::EST | state::RPL | state::DNAT);
    assert_eq!(back.rewrite, Rewrite { src: None, dst: Some(Endpoint { addr: v4(A), port: 5000 }) });
    // Without nat in the action, nothing is rewritten.
    assert_eq!(run(&ct, &udp(B, S, 53, 5000), &LOOK, 0).rewrite, Rewrite::default());
    // A second host with the same source port gets another port.
    let m2 = run(&ct, &udp(R, B, 5000, 53), &snat(None), 0);
    let p2 = m2.rewrite.src.expect("translated").port;
    assert!(p2 != 5000 && p2 >= 1024, "{p2}");
    let e = ct.dump(None, 0);
    assert_eq!(e.len(), 2);
    assert!(e.iter().any(|e| e.reply.is_some_and(|r| r.dst.port == p2 && r.dst.addr == v4(S))));
    // A packet going B -> A on the original key does not belong to the translated connection.
    assert_eq!(run(&ct, &udp(B, A, 53, 5000), &LOOK, 0).state, state::TRK | state::INV);
}

#[test]
fn a_port_range_is_used_and_its_exhaustion_refuses_new_connections() {
    let ct = Conntrack::new(7);
    let range = snat(Some((40000, 40001)));
    let a = run(&ct, &udp(A, B, 1, 53), &range, 0).rewrite.src.unwrap().port;
    let b = run(&ct, &udp(A, B, 2, 53), &range, 0).rewrite.src.unwrap().port;
    let mut got = [a, b];
    got.sort();
    assert_eq!(got, [40000, 40001]);
    assert_eq!(ct.execute(pkt(&udp(A, B, 3, 53)).as_ref(), &range, 0), Verdict::Full);
    assert_eq!(ct.counters.nat_exhausted.load(Ordering::Relaxed), 1);
    assert_eq!(ct.len(), 2, "the refused connection is not counted");
    // When one expires (and is swept), its port is free again.
    for _ in 0..SHARDS {
        ct.sweep(61 * SECOND, 1 << 20);
    }
    assert!(ct.is_empty());
    let c = run(&ct, &udp(A, B, 3, 53), &range, 62 * SECOND).rewrite.src.unwrap().port;
    assert!((40000..=40001).contains(&c));
}

#[test]
fn dnat_sends_a_virtual_address_to_a_backend_and_answers_come_from_the_virtual_address() {
    let ct = Conntrack::new(7);
    const VIP: [u8; 4] = [10, 0, 0, 100];
    let nat = NatArgs {
        kind: NatKind::Dst,
        addrs: Some((v4(B), v4(B))),
        v6: false,
        ports: Some((8080, 8080)),
        persistent: false,
    };
    let args = CtArgs { nat: Some(nat), ..COMMIT };
    let syn = tcp(A, VIP, Seg { wscale: Some(7), ..seg(40000, 80, 1000, 0, FLAG_SYN, 0) });
    let m = run(&ct, &syn, &args, 0);
    assert_eq!(m.state, state::TRK | state::NEW | state::DNAT);
    assert_eq!(m.rewrite.dst, Some(Endpoint { addr: v4(B), port: 8080 }));
    // ct_nw_dst/ct_tp_dst are the original direction's, before translation.
    assert_eq!(m.orig.unwrap().dst, Endpoint { addr: v4(VIP), port: 80 });
    let synack = tcp(B, A, Seg { wscale: Some(7), ..seg(8080, 40000, 5000, 1001, FLAG_SYN | FLAG_ACK, 0) });
    let back = run(&ct, &synack, &UNNAT, 0);
    assert_eq!(back.state, state::TRK | state::EST | state::RPL | state::SNAT);
    assert_eq!(back.rewrite.src, Some(Endpoint { addr: v4(VIP), port: 80 }));
    // The next packet from A is established, and still translated.
    let ack = tcp(A, VIP, Seg { win: 500, ..seg(40000, 80, 1001, 5001, FLAG_ACK, 0) });
    let m = run(&ct, &ack, &UNNAT, 0);
    assert_eq!(
        (m.state, m.rewrite.dst),
        (state::TRK | state::EST | state::DNAT, Some(Endpoint { addr: v4(B), port: 8080 }))
    );
    // Flushing takes the reply key too: the answer is new now, and can be committed on its own.
    ct.flush(None);
    assert_eq!(run(&ct, &udp(B, A, 1, 2), &COMMIT, 0).state, state::TRK | state::NEW);
}

#[test]
fn an_icmp_error_about_a_translated_packet_is_related() {
    let ct = Conntrack::new(7);
    run(&ct, &udp(A, B, 5000, 53), &snat(None), 0);
    // B's router answers the translated datagram (S:5000 -> B:53) with an error to S.
    let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
    icmp.extend_from_slice(&udp(S, B, 5000, 53)[14..14 + 28]);
    let err = ipv4(R, S, ICMP, &icmp);
    assert_eq!(run(&ct, &err, &LOOK, 0).state, state::TRK | state::REL | state::RPL);
}

#[test]
fn a_dry_run_says_what_would_happen_and_changes_nothing() {
    let ct = Conntrack::new(7);
    let dry = CtArgs { dry: true, ..COMMIT };
    assert_eq!(run(&ct, &udp(A, B, 5000, 53), &dry, 0).state, state::TRK | state::NEW);
    assert!(ct.is_empty());
    let (a, b) = handshake(&ct, 0);
    let before = ct.dump(None, 0);
    let fin = tcp(A, B, seg(40000, 22, a, b, FLAG_FIN | FLAG_ACK, 0));
    assert_eq!(run(&ct, &fin, &CtArgs { dry: true, ..LOOK }, SECOND).state, state::TRK | state::EST);
    let forged = tcp(A, B, seg(40000, 22, a.wrapping_add(3_000_000), 0, FLAG_RST, 0));
    assert_eq!(run(&ct, &forged, &CtArgs { dry: true, ..LOOK }, SECOND).state, state::TRK | state::INV);
    assert_eq!(ct.dump(None, 0), before, "the connection is as it was");
    assert_eq!(ct.counters.invalid.load(Ordering::Relaxed), 0);
}

fn tcp6(src: u16, dst: u16, sport: u16, dport: u16, seq: u32, ack: u32, flags: u8) -> Vec<u8> {
    let mut f = vec![0u8; 12];
    f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 20, TCP, 64]);
    for a in [src, dst] {
        f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        f.extend_from_slice(&[0; 10]);
        f.extend_from_slice(&a.to_be_bytes());
    }
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&seq.to_be_bytes());
    f.extend_from_slice(&ack.to_be_bytes());
    f.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
    f
}

#[test]
fn ipv6_tcp_is_tracked_and_translated_like_ipv4() {
    let ct = Conntrack::new(7);
    assert_eq!(run(&ct, &tcp6(1, 2, 4000, 443, 10, 0, FLAG_SYN), &COMMIT, 0).state, state::TRK | state::NEW);
    let back = run(&ct, &tcp6(2, 1, 443, 4000, 99, 11, FLAG_SYN | FLAG_ACK), &LOOK, 0);
    assert_eq!(back.state, state::TRK | state::EST | state::RPL);
    assert!(back.orig.unwrap().v6);
    // SNAT to 2001:db8::9 (an IPv4 range does nothing to IPv6).
    let s6 = u128::from_be_bytes([0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9]);
    let nat = |a: u128, v6| NatArgs { kind: NatKind::Src, addrs: Some((a, a)), v6, ports: None, persistent: false };
    let m = run(&ct, &tcp6(3, 2, 5000, 443, 1, 0, FLAG_SYN), &CtArgs { nat: Some(nat(s6, true)), ..COMMIT }, 0);
    assert_eq!((m.state, m.rewrite.src.map(|e| e.addr)), (state::TRK | state::NEW | state::SNAT, Some(s6)));
    let m = run(&ct, &tcp6(4, 2, 5000, 443, 1, 0, FLAG_SYN), &CtArgs { nat: Some(nat(v4(S), false)), ..COMMIT }, 0);
    assert_eq!((m.state, m.rewrite), (state::TRK | state::NEW, Rewrite::default()));
}
