//! Egress per wire frame: tunnel headers (a flow's tunnel ID, GRE sequence numbers and checksums), outer
//! TOS/TTL, and which ports take an offloaded frame whole.

use super::*;
use crate::offload;
use crate::switch::egress::{OuterIp, SendOffloads, TunnelHeader};
use crate::tunnel::Inherit;
use weft_wire::gre::GrePacket;

fn one_tunnel(spec: TunnelSpec, mtu: u16) -> Harness {
    let remote = spec.remote.to_string();
    Harness::new(Net::default().bridge("br0").tap("p1", 1).tunnel_with("t1", 2, spec, &[&remote], mtu, false).build())
}

fn tunnel_port(h: &Harness) -> TunnelPort {
    h.sw.pipeline().port(h.port("t1")).tunnel().unwrap().clone()
}

#[test]
fn vxlan_frames_go_behind_the_port_header_unless_a_flow_sets_the_tunnel_id() {
    let h = one_tunnel(tunnel_spec("192.0.2.2", 42), 1450);
    let frame = udp4(B, A, 100, false, 53);
    let t1 = h.port("t1");
    let own = h.sw.tunnel_header(t1, None, None, &frame).unwrap();
    assert!(own.is_port_header());
    let port = tunnel_port(&h);
    assert_eq!(own.bytes(&port), &port.header[..]);
    let flow = h.sw.tunnel_header(t1, Some(7), None, &frame).unwrap();
    let v = weft_wire::vxlan::VxlanPacket::new_checked(flow.built()).unwrap();
    assert_eq!(v.vni(), 7);
    assert_eq!(port.spec_for(Some(7)).vni, 7);
    assert_eq!(port.spec_for(None).vni, 42);
    // Not a tunnel: no header.
    assert_eq!(h.sw.tunnel_header(h.port("p1"), None, None, &frame), None);
}

#[test]
fn geneve_ports_with_options_keep_their_header_whatever_the_flow_says() {
    let mut spec = TunnelSpec::new(Encap::Geneve, ip("192.0.2.2"), 42);
    let h = one_tunnel(spec, 1450);
    let g = h.sw.tunnel_header(h.port("t1"), Some(9), None, &[0u8; 60]).unwrap();
    let p = weft_wire::geneve::GenevePacket::new_checked(g.built()).unwrap();
    assert_eq!(p.vni(), 9);
    spec.options_len = 8;
    let h = one_tunnel(spec, 1450);
    let g = h.sw.tunnel_header(h.port("t1"), Some(9), None, &[0u8; 60]).unwrap();
    assert_eq!(g, TunnelHeader::PORT, "a port with options sends its own header");
    assert_eq!(tunnel_port(&h).spec_for(Some(9)).vni, 42);
}

#[test]
fn gre_numbers_each_frame_and_checksums_it() {
    let mut spec = TunnelSpec::new(Encap::Gre, ip("192.0.2.2"), 5);
    spec.seq = true;
    spec.csum = true;
    let mut h = one_tunnel(spec, 1450);
    let t1 = h.port("t1");
    let frame = udp4(B, A, 200, false, 53);
    for want in 0..3u32 {
        let hd = h.sw.tunnel_header(t1, None, None, &frame).unwrap();
        let mut packet = hd.built().to_vec();
        packet.extend_from_slice(&frame);
        let p = GrePacket::new_checked(&packet[..]).unwrap();
        assert_eq!(p.sequence(), Some(want));
        assert_eq!(p.key(), Some(5));
        assert!(p.verify_checksum(), "frame {want}");
    }
    // A new pipeline keeps the port's numbering.
    let net = Net::default().bridge("br0").tap("p1", 1).tunnel_with("t1", 2, spec, &["192.0.2.2"], 1450, false);
    let mut again = Arc::try_unwrap(net.build()).unwrap();
    again.generation = 2;
    h.sw.install(Arc::new(again), 0);
    let hd = h.sw.tunnel_header(t1, None, None, &frame).unwrap();
    let p = GrePacket::new_checked(hd.built()).unwrap();
    assert_eq!(p.sequence(), Some(3));
    // Without seq=true nothing is numbered.
    spec.seq = false;
    let h = one_tunnel(spec, 1450);
    let hd = h.sw.tunnel_header(h.port("t1"), None, None, &frame).unwrap();
    assert_eq!(GrePacket::new_checked(hd.built()).unwrap().sequence(), None);
}

#[test]
fn the_outer_header_inherits_tos_and_ttl_when_asked() {
    let mut frame = udp4(B, A, 100, false, 53);
    frame[14 + 1] = 0xb8; // DSCP EF
    frame[14 + 8] = 17; // TTL
    let mut spec = tunnel_spec("192.0.2.2", 1);
    let h = one_tunnel(spec, 1450);
    assert_eq!(tunnel_port(&h).outer_ip(&frame), OuterIp::default());
    spec.tos = Inherit::Inherit;
    spec.ttl = Inherit::Value(9);
    let h = one_tunnel(spec, 1450);
    assert_eq!(tunnel_port(&h).outer_ip(&frame), OuterIp { tos: Some(0xb8), ttl: Some(9) });
    spec.ttl = Inherit::Inherit;
    let h = one_tunnel(spec, 1450);
    assert_eq!(tunnel_port(&h).outer_ip(&frame), OuterIp { tos: Some(0xb8), ttl: Some(17) });
    // IPv6: traffic class and hop limit.
    let mut v6 = udp6(B, A, 100);
    v6[14] = 0x6b;
    v6[15] = 0x80;
    v6[14 + 7] = 33;
    assert_eq!(tunnel_port(&h).outer_ip(&v6), OuterIp { tos: Some(0xb8), ttl: Some(33) });
    // Not IP: the socket's defaults.
    assert_eq!(tunnel_port(&h).outer_ip(&arp(1, BCAST, A, [10, 0, 0, 1], [10, 0, 0, 2])), OuterIp::default());
}

#[test]
fn offloaded_frames_go_whole_only_where_the_output_takes_them() {
    let frame = udp4(B, A, 3000, true, 53);
    let gso = VnetHdr {
        flags: offload::F_NEEDS_CSUM,
        gso_type: offload::GSO_UDP_L4,
        hdr_len: 42,
        gso_size: 1000,
        csum_start: 34,
        csum_offset: 6,
    };
    let on = SendOffloads { udp_segment: true };
    let off = SendOffloads { udp_segment: false };
    let h = one_tunnel(tunnel_spec("192.0.2.2", 1), 1450);
    let pipe = h.sw.pipeline().clone();
    let tunnel = pipe.port(h.port("t1"));
    let tap = pipe.port(h.port("p1"));
    assert!(tunnel.takes_whole(&frame, &gso, 0, on, false), "1000-byte segments fit an MTU of 1450");
    assert!(!tunnel.takes_whole(&frame, &gso, 0, off, false), "no UDP_SEGMENT: cut first");
    assert!(!tunnel.takes_whole(&frame, &gso, 0, on, true), "a capture wants each packet");
    assert!(tap.takes_whole(&frame, &gso, 0, off, false), "a TAP with a virtio-net header takes it");
    // Segments that would not fit the tunnel's MTU are cut (and then each is checked against it).
    let h = one_tunnel(tunnel_spec("192.0.2.2", 1), 1020);
    assert!(!h.sw.pipeline().port(h.port("t1")).takes_whole(&frame, &gso, 0, on, false));
    // GRE and IPsec tunnels never send UDP_SEGMENT trains.
    let h = one_tunnel(TunnelSpec::new(Encap::Gre, ip("192.0.2.2"), 1), 1450);
    assert!(!h.sw.pipeline().port(h.port("t1")).takes_whole(&frame, &gso, 0, on, false));
    let mut spec = tunnel_spec("192.0.2.2", 1);
    spec.ipsec = Some(crate::tunnel::IpsecShape { tunnel: false, udp: true });
    let h = one_tunnel(spec, 1450);
    assert!(!h.sw.pipeline().port(h.port("t1")).takes_whole(&frame, &gso, 0, on, false));
    // A TAP without a virtio-net header cannot take it.
    let h = Harness::new(Net::default().bridge("br0").port("p1", 1, PortKind::Tap { vnet_hdr: false }).build());
    assert!(!h.sw.pipeline().port(h.port("p1")).takes_whole(&frame, &gso, 0, on, false));
}

#[test]
fn tunnel_metadata_a_flow_sets_leaves_as_geneve_options_after_the_ports_own() {
    use crate::switch::pipeline::{TunField, TunMap};
    let field = |index: u8, kind: u8, len: u8, slot: Slot, present: usize| TunField {
        index,
        class: 0x0102,
        kind,
        len,
        slot,
        present: slot::tun_md_present(present),
    };
    // tun_metadata0: 4 bytes in the low half of the first word; tun_metadata1: 8 bytes, the second word.
    let f0 = field(0, 0x80, 4, Slot::new(slot::TUN_MD_WORD, 0, 32), 0);
    let f1 = field(1, 0x01, 8, Slot::new(slot::TUN_MD_WORD + 1, 0, 64), 1);
    let spec = TunnelSpec::new(Encap::Geneve, ip("192.0.2.2"), 42);
    let set = |s: Slot, v: u128| ActRt::SetBits { slot: s, value: v, mask: Slot::bits_mask(0, s.bits) };
    let mut net = Net::default().bridge("br0").tap("p1", 1).tunnel_with("t1", 2, spec, &["192.0.2.2"], 1400, false);
    let t1 = net.idx("t1");
    net = net.table(
        0,
        vec![(
            10,
            vec![],
            vec![set(f0.slot, 0xabcd), set(f0.present, 1), ActRt::Output(t1), ActRt::Output(PortIdx(0))],
        )],
    );
    net.bridges[0].tun = TunMap { fields: vec![f0, f1] };
    let mut h = Harness::new(net.build());
    let frame = udp4(B, A, 100, false, 53);
    let sent = h.send("p1", &frame);
    assert_eq!(sent.len(), 2);
    // Only the Geneve port's emission names the metadata.
    let (to_t1, to_br0) = (h.outs.sends[0], h.outs.sends[1]);
    assert_eq!((to_t1.port, to_br0.md), (t1, 0));
    let md = h.outs.tun_mds[to_t1.md as usize - 1];
    assert_eq!((md.present, md.value(&f0), md.has(&f1)), (1, 0xabcd, false));
    let hd = h.sw.tunnel_header(t1, None, Some(&md), &frame).unwrap();
    let g = weft_wire::geneve::GenevePacket::new_checked(hd.built()).unwrap();
    assert_eq!(g.vni(), 42);
    assert!(g.is_critical(), "the mapped option's type has the critical bit: the header says so");
    let opts: Vec<_> = g.options().map(|o| o.unwrap()).map(|o| (o.class, o.kind, o.data.to_vec())).collect();
    assert_eq!(opts, [(0x0102, 0x80, vec![0, 0, 0xab, 0xcd])], "only the field there");
    // Both fields, after the port's own options, with a flow's tunnel ID.
    let both = TunMd { present: 0b11, words: [0x1234, 0x1122_3344_5566_7788, 0, 0] };
    let mut port = h.sw.pipeline().port(t1).tunnel().unwrap().clone();
    let mut own = Vec::new();
    weft_wire::geneve::encode_option(0x0103, 0x05, &[9, 9, 9, 9], &mut own).unwrap();
    let repr = weft_wire::geneve::GeneveRepr { vni: 42, protocol: EtherType::TEB, oam: false, options: &own };
    port.header = vec![0; repr.buffer_len()].into();
    repr.emit(std::sync::Arc::get_mut(&mut port.header).unwrap());
    let tun = TunMap { fields: vec![f0, f1] };
    let hd = port.header_for(Some(7), Some((&tun, &both)), 0, &frame);
    let g = weft_wire::geneve::GenevePacket::new_checked(hd.built()).unwrap();
    assert_eq!(g.vni(), 7);
    let opts: Vec<_> = g.options().map(|o| o.unwrap()).map(|o| (o.class, o.kind, o.data.to_vec())).collect();
    assert_eq!(
        opts,
        [
            (0x0103, 0x05, vec![9, 9, 9, 9]),
            (0x0102, 0x80, vec![0, 0, 0x12, 0x34]),
            (0x0102, 0x01, vec![0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88])
        ]
    );
}
