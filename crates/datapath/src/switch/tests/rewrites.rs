use super::*;

// ---- Matches on TTL, ECN, the flow label, ARP and neighbor discovery; rewrites of L3/L4 fields ----

fn set(s: Slot, v: u128) -> ActRt {
    ActRt::SetBits { slot: s, value: v, mask: Slot::bits_mask(0, s.bits) }
}

fn sum(b: &[u8]) -> u16 {
    let mut s: u32 = b.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]))).sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// Both checksums of an IPv4 UDP frame (with its UDP checksum filled in) hold.
pub(super) fn checksums_hold(f: &[u8]) -> bool {
    let ip = &f[14..34];
    let udp = &f[34..];
    let mut pseudo = f[26..34].to_vec();
    pseudo.extend_from_slice(&[0, 17]);
    pseudo.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    pseudo.extend_from_slice(udp);
    sum(ip) == 0xffff && sum(&pseudo) == 0xffff
}

pub(super) fn udp4_summed(ttl: u8, tos: u8) -> Vec<u8> {
    let mut f = udp4(B, A, 60, true, 53);
    f[14 + 1] = tos;
    f[14 + 8] = ttl;
    f[24..26].fill(0);
    let c = !sum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
    let mut pseudo = f[26..34].to_vec();
    pseudo.extend_from_slice(&[0, 17, 0, 40]);
    pseudo.extend_from_slice(&f[34..]);
    let c = !sum(&pseudo);
    f[40..42].copy_from_slice(&c.to_be_bytes());
    assert!(checksums_hold(&f));
    f
}

#[test]
fn ttl_ecn_and_the_flow_label_are_matched() {
    let net = two_taps().table(
        0,
        vec![
            (30, vec![m(slot::NW_TTL, 5), m(slot::NW_ECN, 1)], vec![ActRt::Output(P2)]),
            (20, vec![m(slot::IPV6_LABEL, 0x12345)], vec![ActRt::Output(P3)]),
            (10, vec![], vec![]),
        ],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &udp4_summed(5, 0x21)), ["p2"]);
    assert!(h.ports("p1", &udp4_summed(6, 0x21)).is_empty(), "another TTL");
    assert!(h.ports("p1", &udp4_summed(5, 0x22)).is_empty(), "another ECN");
    let mut v6 = udp6(B, A, 80);
    v6[15] = 0x01;
    v6[16..18].copy_from_slice(&0x2345u16.to_be_bytes());
    assert_eq!(h.ports("p1", &v6), ["p3"]);
}

#[test]
fn arp_hardware_addresses_and_neighbor_discovery_are_matched() {
    let net = two_taps().table(
        0,
        vec![
            (30, vec![m(slot::ARP_SHA, u128::from(A.as_u64()))], vec![ActRt::Output(P2)]),
            (
                20,
                vec![m(slot::ND_TARGET, 0x2001_0db8 << 96 | 7), m(slot::ARP_SHA, 0x0200_0000_0009)],
                vec![ActRt::Output(P3)],
            ),
            (10, vec![], vec![]),
        ],
    );
    let mut h = Harness::new(net.build());
    assert_eq!(h.ports("p1", &arp(1, EthernetAddress::BROADCAST, A, [10, 0, 0, 1], [10, 0, 0, 2])), ["p2"]);
    assert!(h.ports("p1", &arp(1, EthernetAddress::BROADCAST, B, [10, 0, 0, 1], [10, 0, 0, 2])).is_empty());
    // A neighbor solicitation for 2001:db8::7 with a source link-layer address option.
    let mut ns = udp6(B, A, 40 + 32);
    ns[20] = 58;
    let icmp = &mut ns[54..];
    icmp.fill(0);
    icmp[0] = 135;
    icmp[8..24].copy_from_slice(&(0x2001_0db8u128 << 96 | 7).to_be_bytes());
    icmp[24..32].copy_from_slice(&[1, 1, 2, 0, 0, 0, 0, 9]);
    assert_eq!(h.ports("p1", &ns), ["p3"]);
}

#[test]
fn address_port_tos_and_ttl_rewrites_keep_the_checksums() {
    let net = two_taps().table(
        0,
        vec![(
            10,
            vec![],
            vec![
                set(slot::NW_DST, 0x0a00_0063),
                set(slot::TP_DST, 5353),
                set(slot::NW_TOS, 0xb8),
                ActRt::DecTtl,
                ActRt::Output(P2),
            ],
        )],
    );
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &udp4_summed(64, 0x01));
    assert_eq!(out.len(), 1);
    let f = &out[0].frame;
    assert_eq!(&f[30..34], &[10, 0, 0, 99]);
    assert_eq!(u16::from_be_bytes([f[36], f[37]]), 5353);
    assert_eq!((f[15], f[22]), (0xb9, 63), "the DSCP changes (not ECN), the TTL goes down by one");
    assert!(checksums_hold(f));
}

#[test]
fn dec_ttl_stops_a_packet_at_the_end_of_its_life() {
    let net = two_taps().table(0, vec![(10, vec![], vec![ActRt::DecTtl, ActRt::Output(P2)])]);
    let mut h = Harness::new(net.build());
    assert!(h.send("p1", &udp4_summed(1, 0)).is_empty());
    assert_eq!(h.drops("p1", DropReason::TtlExpired), 1);
    // It goes to the controller as an invalid-TTL packet-in (reason 2), whole.
    assert_eq!(h.outs.to_controller.len(), 1);
    let c = h.outs.to_controller[0];
    assert_eq!((c.reason, c.controller_id, c.max_len), (2, 0, u16::MAX));
    assert_eq!(h.ports("p1", &udp4_summed(2, 0)), ["p2"]);
    // Not IP: dec_ttl does nothing.
    assert_eq!(h.ports("p1", &raw(B, A)), ["p2"]);
}

#[test]
fn a_vlan_priority_is_written_into_a_tagged_frame_only() {
    let net = two_taps().table(
        0,
        vec![(
            10,
            vec![],
            vec![ActRt::SetBits { slot: slot::VLAN_TCI, value: 5 << 13, mask: 0xe000 }, ActRt::Output(P2)],
        )],
    );
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &tagged(&raw(B, A), 7));
    assert_eq!(&out[0].frame[14..16], &(5u16 << 13 | 7).to_be_bytes());
    let out = h.send("p1", &raw(B, A));
    assert_eq!(out[0].frame, raw(B, A));
}

#[test]
fn an_mpls_entry_is_pushed_matched_rewritten_and_popped() {
    // Table 0 pushes an entry onto IPv4 and goes to table 1, which matches the MPLS packet, sets the label and
    // the TTL; a second switch pops it again.
    let net = two_taps().table(0, vec![(10, vec![], vec![ActRt::PushMpls(0x8847), ActRt::GotoTable(1)])]).table(
        1,
        vec![(
            10,
            vec![m(slot::DL_TYPE, 0x8847), m(slot::MPLS_LABEL, 0), m(slot::MPLS_BOS, 1)],
            vec![set(slot::MPLS_LABEL, 1000), set(slot::MPLS_TC, 5), ActRt::DecMplsTtl, ActRt::Output(P2)],
        )],
    );
    let mut h = Harness::new(net.build());
    let ip = udp4_summed(64, 0x20);
    let out = h.send("p1", &ip);
    assert_eq!(out.len(), 1, "table 1 saw an MPLS packet");
    let f = &out[0].frame;
    assert_eq!(&f[12..14], &[0x88, 0x47]);
    let lse = u32::from_be_bytes([f[14], f[15], f[16], f[17]]);
    assert_eq!((lse >> 12, (lse >> 9) & 7, (lse >> 8) & 1, lse & 0xff), (1000, 5, 1, 63));
    assert_eq!(&f[18..], &ip[14..], "the IP packet behind the entry is untouched");
    // Popped: the IP packet again, matched as IP by the next table.
    let net = two_taps()
        .table(0, vec![(10, vec![m(slot::DL_TYPE, 0x8847)], vec![ActRt::PopMpls(0x0800), ActRt::GotoTable(1)])])
        .table(1, vec![(10, vec![m(slot::DL_TYPE, 0x0800), m(slot::NW_TTL, 64)], vec![ActRt::Output(P3)])]);
    let mut h = Harness::new(net.build());
    let out = h.send("p1", f);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].frame, ip);
    // Not MPLS: pop_mpls and the MPLS TTL actions leave the frame alone.
    let net =
        two_taps().table(0, vec![(10, vec![], vec![ActRt::PopMpls(0x0800), ActRt::DecMplsTtl, ActRt::Output(P2)])]);
    let mut h = Harness::new(net.build());
    assert_eq!(h.send("p1", &ip)[0].frame, ip);
}

#[test]
fn the_mpls_ttl_is_matched_and_follows_set_mpls_ttl() {
    // A frame with one MPLS entry (label 5, TTL 64).
    let mut f = raw(B, A);
    f[12..14].copy_from_slice(&0x8847u16.to_be_bytes());
    f[14..18].copy_from_slice(&((5u32 << 12) | (1 << 8) | 64).to_be_bytes());
    let net = two_taps()
        .table(
            0,
            vec![
                (20, vec![m(slot::MPLS_TTL, 64)], vec![ActRt::SetMplsTtl(9), ActRt::GotoTable(1)]),
                (10, vec![], vec![]),
            ],
        )
        .table(1, vec![(10, vec![m(slot::MPLS_TTL, 9)], vec![ActRt::Output(P2)]), (5, vec![], vec![])]);
    let mut h = Harness::new(net.build());
    let out = h.send("p1", &f);
    assert_eq!(out.len(), 1, "table 1 saw the new TTL");
    assert_eq!(out[0].frame[17], 9);
    f[17] = 63;
    assert!(h.send("p1", &f).is_empty(), "another TTL");
}

#[test]
fn fragments_are_matched_by_nw_frag() {
    let net = two_taps().table(0, vec![(20, vec![m(slot::NW_FRAG, 3)], vec![]), (10, vec![], vec![ActRt::Output(P2)])]);
    let mut h = Harness::new(net.build());
    let mut first = udp4(B, A, 60, false, 53);
    first[20..22].copy_from_slice(&0x2000u16.to_be_bytes());
    assert_eq!(h.ports("p1", &first), ["p2"], "a first fragment passes");
    let mut later = first.clone();
    later[20..22].copy_from_slice(&0x0010u16.to_be_bytes());
    assert!(h.ports("p1", &later).is_empty(), "a later fragment is dropped by the nw_frag=later flow");
}
