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
    let own = h.sw.tunnel_header(t1, None, &frame).unwrap();
    assert!(own.is_port_header());
    let port = tunnel_port(&h);
    assert_eq!(own.bytes(&port), &port.header[..]);
    let flow = h.sw.tunnel_header(t1, Some(7), &frame).unwrap();
    let v = weft_wire::vxlan::VxlanPacket::new_checked(flow.built()).unwrap();
    assert_eq!(v.vni(), 7);
    assert_eq!(port.spec_for(Some(7)).vni, 7);
    assert_eq!(port.spec_for(None).vni, 42);
    // Not a tunnel: no header.
    assert_eq!(h.sw.tunnel_header(h.port("p1"), None, &frame), None);
}

#[test]
fn geneve_ports_with_options_keep_their_header_whatever_the_flow_says() {
    let mut spec = TunnelSpec::new(Encap::Geneve, ip("192.0.2.2"), 42);
    let h = one_tunnel(spec, 1450);
    let g = h.sw.tunnel_header(h.port("t1"), Some(9), &[0u8; 60]).unwrap();
    let p = weft_wire::geneve::GenevePacket::new_checked(g.built()).unwrap();
    assert_eq!(p.vni(), 9);
    spec.options_len = 8;
    let h = one_tunnel(spec, 1450);
    let g = h.sw.tunnel_header(h.port("t1"), Some(9), &[0u8; 60]).unwrap();
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
        let hd = h.sw.tunnel_header(t1, None, &frame).unwrap();
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
    let hd = h.sw.tunnel_header(t1, None, &frame).unwrap();
    let p = GrePacket::new_checked(hd.built()).unwrap();
    assert_eq!(p.sequence(), Some(3));
    // Without seq=true nothing is numbered.
    spec.seq = false;
    let h = one_tunnel(spec, 1450);
    let hd = h.sw.tunnel_header(h.port("t1"), None, &frame).unwrap();
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
