//! Entry points shared by the cargo-fuzz targets in `fuzz/` and by the test that replays their corpora:
//! every parser of this crate, run over arbitrary bytes. None may panic.

use crate::*;

/// Runs every packet view over `data`: each parser directly on the raw bytes, and from Ethernet, IPv4, IPv6
/// and VXLAN down through the layers as the datapath and the decoder would.
pub fn parse_packet(data: &[u8]) {
    decode_all_linktypes(data);
    if let Ok(a) = arp::ArpPacket::new_checked(data) {
        let _ = arp::ArpRepr::parse(&a);
    }
    for proto in
        [ipv4::Protocol::UDP, ipv4::Protocol::TCP, ipv4::Protocol::ICMP, ipv4::Protocol::ICMPV6, gre::IP_PROTOCOL]
    {
        dissect_l4(proto, data, 1);
    }
    if let Ok(v) = vlan::VlanPacket::new_checked(data) {
        let _ = (v.vid(), v.ethertype(), v.payload().len());
    }
    dissect_ethernet(data, 0);
    if let Ok(p) = ipv4::Ipv4Packet::new_checked(data) {
        let _ = ipv4::Ipv4Repr::parse(&p);
        dissect_l4(p.protocol(), p.payload(), 0);
    }
    if let Ok(p) = ipv6::Ipv6Packet::new_checked(data) {
        let _ = ipv6::Ipv6Repr::parse(&p);
        if let Ok((proto, at)) = p.upper_layer() {
            dissect_l4(proto, &p.payload()[at..], 0);
        }
    }
    if let Ok(v) = vxlan::VxlanPacket::new_checked(data) {
        let _ = vxlan::VxlanRepr::parse(&v);
        dissect_ethernet(v.payload(), 1);
    }
    dissect_geneve(data, 1);
}

/// Geneve: every option, then the inner frame; re-emitting the parsed header must give the same bytes.
fn dissect_geneve(data: &[u8], depth: u8) {
    let Ok(g) = geneve::GenevePacket::new_checked(data) else { return };
    let mut well_formed = true;
    for o in g.options() {
        match o {
            Ok(o) => {
                let _ = (o.class, o.is_critical(), o.data.len());
            }
            Err(_) => well_formed = false,
        }
    }
    if well_formed {
        let repr =
            geneve::GeneveRepr { vni: g.vni(), protocol: g.protocol(), oam: g.is_oam(), options: g.options_bytes() };
        let mut out = [0u8; geneve::HEADER_LEN + geneve::OPTIONS_MAX];
        repr.emit(&mut out);
        let again = geneve::GenevePacket::new_checked(&out[..repr.buffer_len()]).expect("emitted header parses");
        assert_eq!((again.vni(), again.options_bytes()), (g.vni(), g.options_bytes()), "Geneve round-trip");
    }
    if g.protocol() == EtherType::TEB {
        dissect_ethernet(g.payload(), depth);
    }
}

fn dissect_ethernet(data: &[u8], depth: u8) {
    let Ok(eth) = ethernet::EthernetFrame::new_checked(data) else { return };
    let _ = ethernet::EthernetRepr::parse(&eth);
    let mut ethertype = eth.ethertype();
    let mut payload = eth.payload();
    for _ in 0..4 {
        if ethertype != EtherType::VLAN && ethertype != EtherType::QINQ {
            break;
        }
        let Ok(tag) = vlan::VlanPacket::new_checked(payload) else { return };
        let _ = (tag.vid(), tag.pcp(), tag.dei());
        ethertype = tag.ethertype();
        payload = &payload[vlan::HEADER_LEN..];
    }
    match ethertype {
        EtherType::ARP => {
            if let Ok(a) = arp::ArpPacket::new_checked(payload) {
                let _ = arp::ArpRepr::parse(&a);
            }
        }
        EtherType::IPV4 => {
            if let Ok(p) = ipv4::Ipv4Packet::new_checked(payload) {
                let _ = ipv4::Ipv4Repr::parse(&p);
                let _ = (p.dont_frag(), p.more_frags(), p.frag_offset());
                dissect_l4(p.protocol(), p.payload(), depth);
            }
        }
        EtherType::IPV6 => {
            if let Ok(p) = ipv6::Ipv6Packet::new_checked(payload) {
                if let Ok((proto, at)) = p.upper_layer() {
                    dissect_l4(proto, &p.payload()[at..], depth);
                }
            }
        }
        _ => {}
    }
}

fn dissect_l4(proto: u8, data: &[u8], depth: u8) {
    match proto {
        ipv4::Protocol::UDP => {
            if let Ok(u) = udp::UdpPacket::new_checked(data) {
                let _ = udp::UdpRepr::parse(&u);
                if depth == 0 {
                    if let Ok(v) = vxlan::VxlanPacket::new_checked(u.payload()) {
                        dissect_ethernet(v.payload(), depth + 1);
                    }
                    dissect_geneve(u.payload(), depth + 1);
                }
            }
        }
        gre::IP_PROTOCOL => {
            if let Ok(g) = gre::GrePacket::new_checked(data) {
                let repr = gre::GreRepr::parse(&g);
                let mut out = [0u8; gre::HEADER_MAX];
                repr.emit(&mut out);
                assert_eq!(repr.buffer_len(), g.header_len());
                let _ = g.verify_checksum();
                if depth == 0 && g.protocol() == EtherType::TEB {
                    dissect_ethernet(g.payload(), depth + 1);
                }
            }
        }
        ipv4::Protocol::TCP => {
            if let Ok(t) = tcp::TcpPacket::new_checked(data) {
                let _ = (t.seq_number(), t.ack_number(), t.flags(), t.window_len(), t.payload().len());
            }
        }
        ipv4::Protocol::ICMP => {
            if let Ok(i) = icmpv4::Icmpv4Packet::new_checked(data) {
                let _ = (i.verify_checksum(), i.next_hop_mtu(), i.data().len());
            }
        }
        ipv4::Protocol::ICMPV6 => {
            if let Ok(i) = icmpv6::Icmpv6Packet::new_checked(data) {
                let _ = (i.nd_target(), i.mtu());
            }
        }
        _ => {}
    }
}

/// Reads `data` as a pcap or pcapng file, as `weft decode` does, and dissects every record.
pub fn parse_pcap(data: &[u8]) {
    if let Ok(records) = pcap::PcapRecords::new(data) {
        for r in records.take(10_000) {
            match r {
                Ok((_, pkt)) => parse_packet(pkt),
                Err(_) => break,
            }
        }
    }
    if let Ok(mut reader) = capfile::CaptureReader::new(data) {
        let mut n = 0;
        while let Some(Ok(rec)) = reader.next() {
            decode_packet(rec.linktype, rec.data);
            n += 1;
            if n == 10_000 {
                break;
            }
        }
    }
}

/// Runs the `weft decode` dissector over `data` as each link type, and every way of printing the result.
pub fn decode_all_linktypes(data: &[u8]) {
    for linktype in [pcap::LINKTYPE_ETHERNET, pcap::LINKTYPE_LINUX_SLL, pcap::LINKTYPE_LINUX_SLL2, pcap::LINKTYPE_RAW] {
        decode_packet(linktype, data);
    }
}

fn decode_packet(linktype: u32, data: &[u8]) {
    use std::fmt::Write;
    let mut opts = dissect::DecodeAs::default();
    let _ = opts.add("udp.port==8472,vxlan");
    let mut d = dissect::Dissection::default();
    dissect::dissect(linktype, data, &opts, &mut d);
    let mut text = String::new();
    let _ = d.info(&mut text);
    let _ = d.addresses();
    let _ = d.protocol();
    for l in &d.layers {
        let _ = l.title(&mut text);
        l.fields(&mut |name, v| {
            let _ = write!(text, "{name}={v}");
        });
    }
}

/// Measures the most memory a call holds at its peak: the test binaries that replay corpora pass
/// `weft_sys::alloc_probe::peak_during` behind their counting allocator.
pub type Measure = fn(&mut dyn FnMut()) -> usize;

/// Memory a target may hold for one input: this many bytes per input byte, plus [`MEMORY_BASE`] for the
/// fixed buffers a target sets up. Far below what a length or count field could make a careless decoder
/// build (the IKE Delete bomb built 1.5 MB from 8 bytes).
pub const MEMORY_PER_BYTE: usize = 64;
pub const MEMORY_BASE: usize = 4 << 20;

/// Runs `f` over every file of a fuzz corpus directory and every truncation of each file, checking with
/// `measure` that no input makes it hold more than [`MEMORY_PER_BYTE`] × its length + [`MEMORY_BASE`]; the
/// test that replays a target's corpus calls this. Returns how many files were replayed.
///
/// # Panics
/// If the directory cannot be read, if an input needs more memory than allowed, or if `f` panics (which is
/// what the test looks for).
pub fn replay_corpus(dir: &std::path::Path, f: fn(&[u8]), measure: Measure) -> usize {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap_or_else(|e| panic!("{}: {e}", dir.display())).path();
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for n in 0..=data.len() {
            let peak = measure(&mut || f(&data[..n]));
            let allowed = MEMORY_PER_BYTE * n + MEMORY_BASE;
            assert!(peak <= allowed, "{}: the first {n} bytes made the target hold {peak} bytes", path.display());
        }
        files += 1;
    }
    files
}
