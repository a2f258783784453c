//! The captures made by Linux and Open vSwitch (testdata/captures, copied from shared/captures) parse to
//! exactly what tshark printed for them in the matching .txt files.

use std::net::Ipv4Addr;
use weft_wire::arp::{ArpPacket, ArpRepr, OP_REPLY, OP_REQUEST};
use weft_wire::ethernet::{EtherType, EthernetFrame};
use weft_wire::geneve::GenevePacket;
use weft_wire::gre::GrePacket;
use weft_wire::icmpv4::{Icmpv4Packet, TYPE_ECHO_REPLY, TYPE_ECHO_REQUEST};
use weft_wire::ipv4::{Ipv4Packet, Protocol};
use weft_wire::pcap::{PcapRecords, LINKTYPE_ETHERNET};
use weft_wire::udp::UdpPacket;
use weft_wire::vxlan::VxlanPacket;

fn dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testdata/captures")
}

/// One row of the tshark table: frame outer-src outer-dst inner-proto vni … info.
struct Expected {
    frame: usize,
    outer_src: Ipv4Addr,
    outer_dst: Ipv4Addr,
    inner_proto: String,
    vni: u32,
    info: String,
}

fn expected(name: &str) -> Vec<Expected> {
    let text = std::fs::read_to_string(dir().join(name)).unwrap();
    text.lines()
        .skip(2)
        .take_while(|l| !l.starts_with("detail"))
        .map(|l| {
            let t: Vec<&str> = l.split_whitespace().collect();
            // tshark prints vxlan.vni in decimal, geneve.vni and gre.key in hex; a GRE row adds gre.proto.
            let vni = match t[4].strip_prefix("0x") {
                Some(hex) => u32::from_str_radix(hex, 16).unwrap(),
                None => t[4].parse().unwrap(),
            };
            let info_at = if t[5] == "0x6558" { 6 } else { 5 };
            Expected {
                frame: t[0].parse().unwrap(),
                outer_src: t[1].parse().unwrap(),
                outer_dst: t[2].parse().unwrap(),
                inner_proto: t[3].to_string(),
                vni,
                info: t[info_at..].join(" "),
            }
        })
        .collect()
}

/// What weft's views say of one packet, written the way tshark's info column would.
fn dissect(frame: &[u8]) -> (Ipv4Addr, Ipv4Addr, String, u32, String) {
    let eth = EthernetFrame::new_checked(frame).unwrap();
    assert_eq!(eth.ethertype(), EtherType::IPV4);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    let l4 = ip.payload();
    let (vni, inner) = if ip.protocol() == Protocol::UDP {
        let udp = UdpPacket::new_checked(l4).unwrap();
        let tunnel = &l4[8..];
        // Linux over veth leaves the outer UDP checksum partial; Open vSwitch sends zero. Both are valid here.
        let (s, d) = (ip.src_addr().into(), ip.dst_addr().into());
        assert!(udp.verify_checksum(s, d) || udp.checksum_is_partial(s, d));
        match udp.dst_port() {
            4789 => {
                let vx = VxlanPacket::new_checked(tunnel).unwrap();
                (vx.vni(), &tunnel[8..])
            }
            6081 => {
                let g = GenevePacket::new_checked(tunnel).unwrap();
                assert_eq!(g.protocol(), EtherType::TEB);
                assert!(g.options().all(|o| o.is_ok()));
                (g.vni(), &tunnel[g.header_len()..])
            }
            port => panic!("unexpected UDP port {port}"),
        }
    } else {
        assert_eq!(ip.protocol(), weft_wire::gre::IP_PROTOCOL);
        let g = GrePacket::new_checked(l4).unwrap();
        assert_eq!(g.protocol(), EtherType::TEB);
        assert!(g.verify_checksum());
        (g.key().unwrap_or(0), &l4[g.header_len()..])
    };
    let inner = EthernetFrame::new_checked(inner).unwrap();
    let (proto, info) = match inner.ethertype() {
        EtherType::ARP => {
            let a = ArpRepr::parse(&ArpPacket::new_checked(inner.payload()).unwrap());
            let info = match a.operation {
                OP_REQUEST => format!("Who has {}? Tell {}", a.target_protocol_addr, a.sender_protocol_addr),
                OP_REPLY => format!("{} is at {}", a.sender_protocol_addr, a.sender_hardware_addr),
                op => panic!("unexpected ARP op {op}"),
            };
            ("ARP".to_string(), info)
        }
        EtherType::IPV4 => {
            let iip = Ipv4Packet::new_checked(inner.payload()).unwrap();
            let icmp = Icmpv4Packet::new_checked(iip.payload()).unwrap();
            assert!(icmp.verify_checksum());
            let kind = match icmp.msg_type() {
                TYPE_ECHO_REQUEST => "request",
                TYPE_ECHO_REPLY => "reply  ",
                t => panic!("unexpected ICMP type {t}"),
            };
            let seq = icmp.echo_seq_no();
            let info = format!(
                "Echo (ping) {kind} id=0x{:04x}, seq={}/{}, ttl={}",
                icmp.echo_ident(),
                seq,
                seq.swap_bytes(),
                iip.hop_limit()
            );
            ("ICMP".to_string(), info.split_whitespace().collect::<Vec<_>>().join(" "))
        }
        t => panic!("unexpected inner ethertype {t:#06x}"),
    };
    (ip.src_addr(), ip.dst_addr(), proto, vni, info)
}

fn check(capture: &str) {
    let file = std::fs::read(dir().join(format!("{capture}.pcap"))).unwrap();
    let records = PcapRecords::new(&file).unwrap();
    assert_eq!(records.header().linktype, LINKTYPE_ETHERNET);
    let frames: Vec<_> = records.map(|r| r.unwrap().1).collect();
    let want = expected(&format!("{capture}.txt"));
    assert_eq!(frames.len(), want.len(), "{capture}: frame count");
    for (data, w) in frames.iter().zip(&want) {
        let (src, dst, proto, vni, info) = dissect(data);
        assert_eq!((src, dst), (w.outer_src, w.outer_dst), "{capture} frame {}", w.frame);
        assert_eq!(proto, w.inner_proto, "{capture} frame {}", w.frame);
        assert_eq!(vni, w.vni, "{capture} frame {}", w.frame);
        assert!(w.info.starts_with(&info), "{capture} frame {}: tshark says {:?}, weft {:?}", w.frame, w.info, info);
    }
}

#[test]
fn vxlan_from_linux() {
    check("vxlan-linux");
}

#[test]
fn vxlan_from_linux_multicast() {
    check("vxlan-linux-mcast");
}

#[test]
fn vxlan_from_open_vswitch() {
    check("vxlan-ovs");
}

#[test]
fn geneve_from_open_vswitch() {
    check("geneve-ovs");
}

#[test]
fn gre_from_open_vswitch() {
    check("gre-ovs");
}
