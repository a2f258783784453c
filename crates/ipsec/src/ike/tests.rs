//! The engine driven exchange by exchange between two instances (and hostile inputs).

use super::*;

const A: &str = "192.0.2.1";
const B: &str = "192.0.2.2";

/// Two engines joined by a perfect (or lossy) network, driven step by step.
struct Net {
    e: [Engine; 2],
    addr: [IpAddr; 2],
    installed: [Vec<ChildKeys>; 2],
    removed: [Vec<u32>; 2],
    activated: [Vec<u32>; 2],
    /// Drop this many of the next messages each side sends.
    drop: [usize; 2],
    sent: [usize; 2],
    now: Nanos,
    /// Side 0 sits behind a NAT with this public address: its ports are moved up by 10 000.
    nat: Option<IpAddr>,
}

impl Net {
    fn new(a: PeerConfig, b: PeerConfig) -> Net {
        let mut n = Net {
            e: [Engine::new(), Engine::new()],
            addr: [a.local, b.local],
            installed: Default::default(),
            removed: Default::default(),
            activated: Default::default(),
            drop: [0, 0],
            sent: [0, 0],
            now: 0,
            nat: None,
        };
        n.e[0].set_peers(vec![a], 0);
        n.e[1].set_peers(vec![b], 0);
        n
    }

    fn pair(psk_b: &[u8]) -> Net {
        let (a, b) = (A.parse().unwrap(), B.parse().unwrap());
        Net::new(PeerConfig::new(a, b, b"swordfish"), PeerConfig::new(b, a, psk_b))
    }

    /// Delivers everything queued until both engines are quiet.
    fn run(&mut self) {
        for _ in 0..100 {
            let mut moved = false;
            for side in 0..2 {
                while let Some(o) = self.e[side].poll() {
                    moved = true;
                    match o {
                        Output::Send { from_port, to, data } => {
                            self.sent[side] += 1;
                            if self.drop[side] > 0 {
                                self.drop[side] -= 1;
                                continue;
                            }
                            let (from, to_port) = match (self.nat, side) {
                                (Some(public), 0) => (SocketAddr::new(public, from_port + 10_000), to.port()),
                                (Some(public), _) => {
                                    assert_eq!(to.ip(), public);
                                    (SocketAddr::new(self.addr[side], from_port), to.port() - 10_000)
                                }
                                (None, _) => (SocketAddr::new(self.addr[side], from_port), to.port()),
                            };
                            if self.nat.is_none() || side == 0 {
                                assert_eq!(to.ip(), self.addr[1 - side]);
                            }
                            self.e[1 - side].input(self.now, to_port, from, &data);
                        }
                        Output::Install(k) => self.installed[side].push(k),
                        Output::Remove { spi_in, .. } => self.removed[side].push(spi_in),
                        Output::Activate { spi_out, .. } => self.activated[side].push(spi_out),
                    }
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the engines kept talking");
    }

    fn advance(&mut self, by: Nanos) {
        self.now += by;
        for side in 0..2 {
            self.e[side].tick(self.now);
        }
        self.run();
    }

    /// Children alive on a side: installed and not removed.
    fn live(&self, side: usize) -> Vec<&ChildKeys> {
        self.installed[side].iter().filter(|k| !self.removed[side].contains(&k.spi_in)).collect()
    }

    fn assert_matched(&self) {
        let (a, b) = (self.live(0), self.live(1));
        assert!(!a.is_empty());
        assert_eq!(a.len(), b.len());
        for ka in a {
            let kb = b.iter().find(|k| k.spi_in == ka.spi_out).expect("the peer has the matching SA");
            assert_eq!(kb.spi_out, ka.spi_in);
            assert_eq!(ka.key_out, kb.key_in);
            assert_eq!(ka.key_in, kb.key_out);
            assert_eq!(ka.mode, kb.mode);
            assert_eq!(ka.udp, kb.udp);
        }
    }
}

#[test]
fn lower_address_initiates_and_both_install_matching_child_sas() {
    let mut n = Net::pair(b"swordfish");
    n.advance(0);
    assert!(n.e[0].established(B.parse().unwrap()));
    assert!(n.e[1].established(A.parse().unwrap()));
    n.assert_matched();
    assert!(n.installed[0][0].send && n.installed[1][0].send, "both ends send on the first child SA");
    let k = n.installed[0][0].clone();
    assert_eq!((k.mode, k.udp, k.peer_port), (Mode::Transport, true, NAT_T_PORT));
    assert_eq!(k.key_in.len(), 36, "AES-256-GCM key and salt");
    assert_eq!(n.e[0].stats.ike_sa_established, 1);
    // B never started an SA of its own.
    n.advance(10 * SECOND);
    assert_eq!(n.e[1].stats.ike_sa_established, 1);
    assert_eq!(n.installed[1].len(), 1);
    let show = n.e[0].show(n.now);
    assert_eq!(show.len(), 1);
    assert_eq!(show[0].state, "ESTABLISHED");
    assert_eq!(show[0].group, "CURVE_25519");
    assert_eq!(show[0].children[0].key_out, hex(&k.key_out));
}

#[test]
fn groups_and_modes_negotiate() {
    for (group, mode, encap) in
        [(id::DH_MODP_2048, Mode::Tunnel, Encap::Udp), (id::DH_ECP_256, Mode::Transport, Encap::Esp)]
    {
        let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
        let mut ca = PeerConfig::new(a, b, b"k");
        ca.mode = mode;
        ca.encap = encap;
        let mut cb = PeerConfig::new(b, a, b"k");
        cb.groups = vec![group];
        cb.encap = encap;
        let mut n = Net::new(ca, cb);
        n.advance(0);
        n.assert_matched();
        assert_eq!(n.e[0].show(0)[0].group, crypto::group_name(group));
        let k = &n.installed[0][0];
        assert_eq!(k.mode, mode);
        assert_eq!(k.udp, encap == Encap::Udp, "raw ESP unless asked for UDP (no NAT here)");
    }
}

#[test]
fn wrong_psk_fails_on_both_sides_and_installs_nothing() {
    let mut n = Net::pair(b"not-swordfish");
    n.advance(0);
    assert!(n.installed[0].is_empty() && n.installed[1].is_empty());
    assert_eq!(n.e[1].stats.auth_failed, 1);
    assert_eq!(n.e[0].stats.auth_failed, 1);
    assert!(!n.e[0].established(B.parse().unwrap()));
}

#[test]
fn lost_messages_are_retransmitted_with_back_off() {
    let mut n = Net::pair(b"swordfish");
    n.drop = [1, 1];
    n.advance(0);
    assert!(n.installed[0].is_empty());
    n.advance(SECOND);
    // The retransmitted IKE_SA_INIT's answer was lost once more; the next try (2 s later) goes through.
    assert!(n.installed[0].is_empty());
    n.advance(2 * SECOND);
    n.assert_matched();
    assert!(n.e[0].stats.retransmits >= 2);
}

#[test]
fn child_rekey_replaces_the_sa_without_a_gap() {
    let mut n = Net::pair(b"swordfish");
    n.advance(0);
    let first = n.installed[0][0].clone();
    assert!(n.e[0].rekey(B.parse().unwrap(), false, n.now));
    n.run();
    assert_eq!(n.installed[0].len(), 2);
    assert_eq!(n.removed[0], vec![first.spi_in]);
    assert_eq!(n.removed[1], vec![first.spi_out]);
    n.assert_matched();
    // The responder sent on the old SA until it was deleted, then switched.
    assert!(!n.installed[1][1].send);
    let second = n.installed[1][1].spi_out;
    assert_eq!(n.activated[1], vec![second]);
    assert!(n.installed[0][1].send);
    assert_ne!(n.installed[0][1].key_out, first.key_out, "fresh keys (PFS)");
    assert_eq!(n.e[0].stats.rekeys, 1);
}

#[test]
fn ike_rekey_keeps_children_and_later_child_rekeys_work() {
    let mut n = Net::pair(b"swordfish");
    n.advance(0);
    let spis = (n.e[0].show(0)[0].spi_i, n.e[0].show(0)[0].spi_r);
    assert!(n.e[1].rekey(A.parse().unwrap(), true, n.now));
    n.run();
    let s0 = n.e[0].show(n.now);
    assert_eq!(s0.len(), 1, "the old IKE SA is deleted");
    assert_ne!((s0[0].spi_i, s0[0].spi_r), spis);
    assert!(!s0[0].initiator, "B initiated the rekey: it is the new SA's initiator");
    assert_eq!(s0[0].children.len(), 1);
    assert!(n.removed[0].is_empty() && n.removed[1].is_empty());
    assert!(n.e[0].rekey(B.parse().unwrap(), false, n.now));
    n.run();
    n.assert_matched();
    assert_eq!(n.live(0).len(), 1);
}

#[test]
fn behind_a_nat_ids_and_ports_follow_the_peer() {
    // A (10.0.0.1, its own ID) behind a NAT that shows it as 198.51.100.7 with other ports; B knows A only
    // by the public address. Raw ESP asked for, but the NAT forces UDP encapsulation.
    let (a, b, public): (IpAddr, IpAddr, IpAddr) =
        ("10.0.0.1".parse().unwrap(), B.parse().unwrap(), "198.51.100.7".parse().unwrap());
    let mut ca = PeerConfig::new(a, b, b"k");
    ca.encap = Encap::Esp;
    let mut cb = PeerConfig::new(b, public, b"k");
    cb.encap = Encap::Esp;
    cb.initiate = Initiate::Never;
    let mut n = Net::new(ca, cb);
    n.nat = Some(public);
    n.advance(0);
    n.assert_matched();
    let kb = &n.installed[1][0];
    assert!(kb.udp, "a NAT was found: ESP goes in UDP");
    assert_eq!(kb.peer_port, NAT_T_PORT + 10_000, "B sends ESP to the port the NAT shows");
    assert_eq!(kb.remote, public);
    assert!(n.installed[0][0].udp);
}

#[test]
fn a_restarted_peer_replaces_its_old_sas_at_once() {
    let mut n = Net::pair(b"swordfish");
    n.advance(0);
    let old = n.installed[1][0].spi_in;
    // A loses everything (kill -9) and starts again: INITIAL_CONTACT makes B drop the old SAs at once.
    let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
    n.e[0] = Engine::new();
    n.e[0].set_peers(vec![PeerConfig::new(a, b, b"swordfish")], n.now);
    n.advance(SECOND);
    assert_eq!(n.e[1].show(n.now).len(), 1, "B keeps one IKE SA");
    assert!(n.removed[1].contains(&old));
    assert_eq!(n.live(1).len(), 1);
}

#[test]
fn refused_sas_are_forgotten() {
    let mut n = Net::pair(b"other");
    n.advance(0);
    for _ in 0..40 {
        n.advance(SECOND);
    }
    // A tries every 5 s; B keeps no more than the last few refused attempts.
    assert!(n.e[1].sas.len() <= 8, "{} SAs kept", n.e[1].sas.len());
    assert!(n.e[1].stats.auth_failed >= 5);
}

#[test]
fn byte_limit_rekeys() {
    let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
    let mut ca = PeerConfig::new(a, b, b"k");
    ca.rekey_bytes = 1000;
    let mut n = Net::new(ca, PeerConfig::new(b, a, b"k"));
    n.advance(0);
    let spi_out = n.installed[0][0].spi_out;
    n.e[0].sent(spi_out, 10, 999, n.now);
    n.advance(SECOND);
    assert_eq!(n.installed[0].len(), 1, "under the limit");
    n.e[0].sent(spi_out, 11, 1000, n.now);
    n.advance(SECOND);
    assert_eq!(n.installed[0].len(), 2, "at the limit: rekeyed");
    n.assert_matched();
}

#[test]
fn a_pfs_rekey_answered_without_ke_is_refused_and_the_old_sa_kept() {
    let mut n = Net::pair(b"swordfish");
    n.advance(0);
    let first = n.installed[0][0].spi_in;
    n.e[1].test_answer_without_ke = true;
    assert!(n.e[0].rekey(B.parse().unwrap(), false, n.now));
    n.advance(SECOND);
    assert_eq!(n.installed[0].len(), 1, "A installed no child without the PFS it asked for");
    assert!(n.live(0).iter().any(|k| k.spi_in == first), "the old SA still carries traffic");
    // A well-behaved answer later: the rekey goes through.
    n.e[1].test_answer_without_ke = false;
    for _ in 0..31 {
        n.advance(SECOND);
    }
    assert!(n.installed[0].len() >= 2, "rekeyed on the retry");
    n.assert_matched();
}

#[test]
fn identities_must_name_the_configured_remote() {
    let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
    let mut sa = IkeSa::new(a, SocketAddr::new(b, IKE_PORT), true, 0);
    assert!(sa.identity_problem().unwrap().contains("no identity"));
    sa.peer_id = Some(id_payload(b));
    assert_eq!(sa.identity_problem(), None);
    sa.peer_id = Some(id_payload("192.0.2.99".parse().unwrap()));
    assert!(sa.identity_problem().unwrap().contains("not the tunnel's remote_ip"));
    sa.peer_id = Some((2, b"peer.example".to_vec()));
    assert!(sa.identity_problem().unwrap().contains("not an IP address"));
    sa.peer_id = Some((msg::ID_IPV4_ADDR, vec![1, 2, 3]));
    assert!(sa.identity_problem().is_some());
    // Behind a NAT the peer names its own private address, not somebody else's public one.
    sa.nat = true;
    sa.peer_id = Some(id_payload("10.0.0.1".parse().unwrap()));
    assert_eq!(sa.identity_problem(), None);
    sa.peer_id = Some(id_payload("192.0.2.99".parse().unwrap()));
    assert!(sa.identity_problem().unwrap().contains("private address"));
}

#[test]
fn an_authenticated_peer_with_another_identity_gets_no_sa() {
    // B expects A at A's address; A (same psk) authenticates naming another address and no NAT is
    // between them: B refuses, nothing is installed on either side.
    let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
    let other: IpAddr = "192.0.2.99".parse().unwrap();
    let mut n = Net::new(PeerConfig::new(other, b, b"swordfish"), PeerConfig::new(b, a, b"swordfish"));
    n.addr[0] = a;
    for _ in 0..10 {
        n.advance(SECOND);
    }
    assert!(n.installed[1].is_empty() && n.installed[0].is_empty());
    assert_eq!(n.e[1].stats.auth_failed, 1);
}

#[test]
fn unknown_sources_are_logged_at_most_once_per_interval() {
    let mut e = Engine::new();
    let mut init = Vec::new();
    let h = Header {
        spi_i: 1,
        spi_r: 0,
        next: 0,
        exchange: exchange::IKE_SA_INIT,
        flags: flag::INITIATOR,
        msg_id: 0,
        length: 0,
    };
    init.extend(msg::encode(h, &[Payload::Nonce(vec![1; 32])]));
    for k in 0..1000u64 {
        e.input(k * 1_000_000, IKE_PORT, "192.0.2.200:500".parse().unwrap(), &init);
    }
    assert_eq!(e.stats.unknown_peer, 1000);
    assert_eq!(e.unknown_suppressed, 999, "one line for a second's worth of them");
    e.input(LOG_INTERVAL + SECOND, IKE_PORT, "192.0.2.200:500".parse().unwrap(), &init);
    assert_eq!(e.unknown_suppressed, 0, "a new line after the interval");
}

#[test]
fn sequence_numbers_running_out_rekey_without_a_byte_limit() {
    let mut n = Net::pair(b"swordfish");
    n.advance(0);
    let spi_out = n.installed[0][0].spi_out;
    n.e[0].sent(spi_out, SEQ_SOFT_LIMIT - 1, u64::MAX / 2, n.now);
    n.advance(SECOND);
    assert_eq!(n.installed[0].len(), 1, "no byte limit set, under the packet limit");
    n.e[0].sent(spi_out, SEQ_SOFT_LIMIT, 0, n.now);
    n.advance(SECOND);
    assert_eq!(n.installed[0].len(), 2, "2^31 packets sent: rekeyed before the sequence number wraps");
    n.assert_matched();
}

#[test]
fn lifetime_rekeys_on_its_own() {
    let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
    let mut ca = PeerConfig::new(a, b, b"k");
    ca.child_lifetime = 10 * SECOND;
    let mut n = Net::new(ca, PeerConfig::new(b, a, b"k"));
    n.advance(0);
    for _ in 0..12 {
        n.advance(SECOND);
    }
    assert_eq!(n.installed[0].len(), 2);
    n.assert_matched();
}

#[test]
fn dead_peer_is_detected_and_its_sas_removed() {
    let mut n = Net::pair(b"swordfish");
    n.advance(0);
    n.drop = [1000, 1000];
    for _ in 0..80 {
        n.advance(SECOND);
    }
    assert!(!n.e[0].established(B.parse().unwrap()));
    assert_eq!(n.removed[0].len(), 1);
    assert!(n.e[0].stats.timeouts >= 1);
    // The peer comes back: A starts again.
    n.drop = [0, 0];
    for _ in 0..10 {
        n.advance(SECOND);
    }
    assert!(n.e[0].established(B.parse().unwrap()));
}

#[test]
fn init_flood_gets_cookies_and_stays_bounded() {
    let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
    let mut resp = Engine::new();
    resp.set_peers(vec![PeerConfig::new(b, a, b"k")], 0);
    let mut cfg = PeerConfig::new(a, b, b"k");
    cfg.initiate = Initiate::Always;
    let from = SocketAddr::new(a, IKE_PORT);
    // A flood of distinct IKE_SA_INITs from one source.
    for k in 0..5000u64 {
        let mut e = Engine::new();
        e.set_peers(vec![cfg.clone()], 0);
        e.tick(0);
        let Some(Output::Send { data, .. }) = e.poll() else { panic!() };
        resp.input(k, IKE_PORT, from, &data);
        let _ = k;
    }
    assert!(resp.sas.len() <= COOKIE_THRESHOLD, "{} half-open SAs", resp.sas.len());
    assert!(resp.stats.cookies_sent > 4000);
    // A real initiator answers the cookie and gets through.
    let mut init = Engine::new();
    init.set_peers(vec![cfg], 0);
    init.tick(0);
    let mut installed = false;
    for _ in 0..10 {
        while let Some(o) = init.poll() {
            match o {
                Output::Send { data, to, from_port } => resp.input(1, to.port(), SocketAddr::new(a, from_port), &data),
                Output::Install(_) => installed = true,
                _ => {}
            }
        }
        while let Some(o) = resp.poll() {
            if let Output::Send { data, to, from_port } = o {
                init.input(1, to.port(), SocketAddr::new(b, from_port), &data);
            }
        }
    }
    assert!(installed);
    assert!(resp.stats.cookies_sent > 4000);
}

#[test]
fn every_sa_a_source_has_not_established_counts_against_its_cap() {
    let (a, b): (IpAddr, IpAddr) = (A.parse().unwrap(), B.parse().unwrap());
    let mut resp = Engine::new();
    resp.set_peers(vec![PeerConfig::new(b, a, b"k")], 0);
    let from = SocketAddr::new(a, IKE_PORT);
    // The source's share is taken by SAs that are not half open: refused ones closing, and one being
    // authenticated.
    for k in 0..HALF_OPEN_PER_SOURCE {
        let mut sa = IkeSa::new(b, from, false, 0);
        sa.spi_i = 1000 + k as u64;
        sa.state = if k == 0 { State::AuthSent } else { State::Closing };
        resp.sas.push(sa);
    }
    let mut cfg = PeerConfig::new(a, b, b"k");
    cfg.initiate = Initiate::Always;
    let mut e = Engine::new();
    e.set_peers(vec![cfg], 0);
    e.tick(0);
    let Some(Output::Send { data, .. }) = e.poll() else { panic!() };
    resp.input(0, IKE_PORT, from, &data);
    assert_eq!(resp.stats.half_open_dropped, 1, "a new IKE_SA_INIT from that source is dropped");
    assert_eq!(resp.sas.len(), HALF_OPEN_PER_SOURCE);
    // Established SAs do not count: with them the source gets through again.
    for sa in &mut resp.sas {
        sa.state = State::Established;
    }
    resp.input(0, IKE_PORT, from, &data);
    assert_eq!(resp.sas.len(), HALF_OPEN_PER_SOURCE + 1);
}

#[test]
fn short_keys_are_weak() {
    assert!(weak_psk(b"swordfish"));
    assert!(weak_psk(b"123456789012345"));
    assert!(!weak_psk(b"1234567890123456"));
}

#[test]
fn garbage_is_counted_not_fatal() {
    let mut e = Engine::new();
    let from: SocketAddr = "192.0.2.9:500".parse().unwrap();
    e.input(0, 500, from, &[]);
    e.input(0, 500, from, &[0u8; 28]);
    let mut h = vec![0u8; 28];
    h[17] = 0x20;
    h[27] = 28;
    e.input(0, 500, from, &h);
    assert_eq!(e.stats.malformed, 2);
    assert!(e.poll().is_none());
}
