//! `weft decode` against tshark, field by field, on captures made by Linux and Open vSwitch; the tunnel tests
//! check the captures they make of weft's own Geneve, GRE, VLAN and IPv6-underlay traffic the same way.

use weft_interop::*;

fn captures() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/captures")
}

#[test]
fn shared_captures_decode_like_tshark() {
    if !prerequisites(&["tshark"]) {
        return;
    }
    for name in ["vxlan-linux", "vxlan-linux-mcast", "vxlan-ovs", "geneve-ovs", "gre-ovs"] {
        let (packets, values) = assert_decode_matches_tshark(&captures().join(format!("{name}.pcap")), &[]);
        assert!(packets >= 4 && values > packets * 20, "{name}: only {values} values in {packets} packets");
    }
}

/// Builders for hand-made packets of the protocols no test traffic here carries (ESP, QinQ, IPv6 extension
/// headers, GRE with checksum and sequence around IPv4, ICMP errors quoting a packet).
mod craft {
    pub fn checksum(data: &[u8]) -> u16 {
        let mut sum: u32 = 0;
        for c in data.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        !(sum as u16)
    }

    pub fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        f.extend_from_slice(&ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }

    pub fn ipv4(proto: u8, src: [u8; 4], dst: [u8; 4], payload: &[u8]) -> Vec<u8> {
        let len = (20 + payload.len()) as u16;
        let mut h = vec![0x45, 0x10];
        h.extend_from_slice(&len.to_be_bytes());
        h.extend_from_slice(&[0x12, 0x34, 0x40, 0x00, 61, proto, 0, 0]);
        h.extend_from_slice(&src);
        h.extend_from_slice(&dst);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    pub fn ipv6(next: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = vec![0x6a, 0x01, 0x23, 0x45];
        h.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        h.extend_from_slice(&[next, 33]);
        h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        h.extend_from_slice(payload);
        h
    }

    pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let mut u = sport.to_be_bytes().to_vec();
        u.extend_from_slice(&dport.to_be_bytes());
        u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        u
    }

    pub fn pcap(linktype: u32, packets: &[Vec<u8>]) -> Vec<u8> {
        let mut f = Vec::new();
        for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, linktype] {
            f.extend_from_slice(&v.to_le_bytes());
        }
        f.truncate(24);
        let mut f2 = 0xa1b2_c3d4u32.to_le_bytes().to_vec();
        f2.extend_from_slice(&2u16.to_le_bytes());
        f2.extend_from_slice(&4u16.to_le_bytes());
        f2.extend_from_slice(&[0; 8]);
        f2.extend_from_slice(&65535u32.to_le_bytes());
        f2.extend_from_slice(&linktype.to_le_bytes());
        for (i, p) in packets.iter().enumerate() {
            for v in [1_700_000_000u32, i as u32 * 1000, p.len() as u32, p.len() as u32] {
                f2.extend_from_slice(&v.to_le_bytes());
            }
            f2.extend_from_slice(p);
        }
        f2
    }
}

#[test]
fn crafted_protocols_decode_like_tshark() {
    use craft::*;
    if !prerequisites(&["tshark"]) {
        return;
    }
    let tmp = TempDir::new("dcr");
    let (a, b) = ([192, 0, 2, 1], [192, 0, 2, 2]);
    let payload = [0xabu8; 12];
    let mut esp = 0x0000_1001u32.to_be_bytes().to_vec();
    esp.extend_from_slice(&7u32.to_be_bytes());
    esp.extend_from_slice(&[0x55; 24]);
    let icmp_echo = {
        let mut m = vec![8, 0, 0, 0, 0x12, 0x34, 0, 1];
        m.extend_from_slice(&payload);
        let c = checksum(&m);
        m[2..4].copy_from_slice(&c.to_be_bytes());
        m
    };
    let mut ip_packets = vec![
        // ESP directly over IP, and ESP-in-UDP (RFC 3948).
        ipv4(50, a, b, &esp),
        ipv4(17, a, b, &udp(4500, 4500, &esp)),
        // TCP SYN with a window.
        ipv4(6, a, b, &[0x30, 0x39, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xfa, 0xf0, 0, 0, 0, 0]),
        // GRE with checksum, key and sequence number, carrying IPv4 (an ICMP echo).
        {
            let inner = ipv4(1, [10, 0, 0, 1], [10, 0, 0, 2], &icmp_echo);
            let mut g = vec![0xb0, 0x00, 0x08, 0x00, 0, 0, 0, 0, 0, 0, 0, 5, 0, 0, 0, 9];
            g.extend_from_slice(&inner);
            let c = checksum(&g);
            g[4..6].copy_from_slice(&c.to_be_bytes());
            ipv4(47, a, b, &g)
        },
        // ICMP "fragmentation needed" quoting a UDP packet.
        {
            let quoted = ipv4(17, b, [198, 51, 100, 7], &udp(40000, 53, &payload));
            let mut m = vec![3, 4, 0, 0, 0, 0, 0x05, 0xaa];
            m.extend_from_slice(&quoted);
            let c = checksum(&m);
            m[2..4].copy_from_slice(&c.to_be_bytes());
            ipv4(1, [203, 0, 113, 1], b, &m)
        },
        // IPv6: hop-by-hop and destination options, then UDP; a fragment that is not the first; ICMPv6 echo.
        {
            let mut ext = vec![60, 0, 1, 4, 0, 0, 0, 0];
            ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]);
            ext.extend_from_slice(&udp(5000, 5001, &payload));
            ipv6(0, &ext)
        },
        {
            let mut frag = vec![17, 0, 0x00, 0x08, 0, 0, 0, 42];
            frag.extend_from_slice(&payload);
            ipv6(44, &frag)
        },
        ipv6(58, &[128, 0, 0, 0, 0xbe, 0xef, 0, 3, 1, 2, 3, 4]),
        // ICMP "fragmentation needed" quoting a TCP segment (Wireshark shows such a segment differently).
        {
            let tcp = [0x9c, 0x40, 0x14, 0x51, 0, 0, 3, 0xe8, 0, 0, 7, 0xd0, 0x50, 0x10, 1, 0xf6, 0, 0, 0, 0];
            let quoted = ipv4(6, b, [198, 51, 100, 7], &tcp);
            let mut m = vec![3, 4, 0, 0, 0, 0, 0x05, 0xaa];
            m.extend_from_slice(&quoted);
            let c = checksum(&m);
            m[2..4].copy_from_slice(&c.to_be_bytes());
            ipv4(1, [203, 0, 113, 1], b, &m)
        },
    ];
    let mut eth_packets: Vec<Vec<u8>> =
        ip_packets.iter().map(|p| eth(if p[0] >> 4 == 4 { 0x0800 } else { 0x86dd }, p)).collect();
    // QinQ: an 802.1ad S-tag (100) over an 802.1Q C-tag (10) over IPv4/UDP.
    let mut qinq = vec![0x60, 0x64, 0x81, 0x00, 0x00, 0x0a, 0x08, 0x00];
    qinq.extend_from_slice(&ipv4(17, a, b, &udp(1234, 5678, &payload)));
    eth_packets.push(eth(0x88a8, &qinq));
    // A packet cut short inside its UDP header.
    let mut cut = eth(0x0800, &ipv4(17, a, b, &udp(1, 2, &payload)));
    cut.truncate(14 + 20 + 5);
    eth_packets.push(cut);

    let file = tmp.path("crafted-eth.pcap");
    std::fs::write(&file, pcap(1, &eth_packets)).unwrap();
    let (n, values) = assert_decode_matches_tshark(&file, &[]);
    assert_eq!(n, eth_packets.len());
    assert!(values > 200, "only {values} values compared");
    // The same IP packets as raw IP and behind Linux cooked headers (v1).
    ip_packets.truncate(5);
    let raw = tmp.path("crafted-raw.pcap");
    std::fs::write(&raw, pcap(101, &ip_packets)).unwrap();
    assert_decode_matches_tshark(&raw, &[]);
    let sll: Vec<Vec<u8>> = ip_packets
        .iter()
        .map(|p| {
            let mut h = vec![0, 0, 0, 1, 0, 6, 0x02, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
            h.extend_from_slice(p);
            h
        })
        .collect();
    let sllf = tmp.path("crafted-sll.pcap");
    std::fs::write(&sllf, pcap(113, &sll)).unwrap();
    assert_decode_matches_tshark(&sllf, &[]);
    // weft marks the cut packet malformed at UDP.
    let weft = bin_dir().join("weft");
    let lines = sh(&format!("{} decode {}", weft.display(), file.display()));
    assert!(lines.lines().last().unwrap().contains("[Malformed Packet: udp:"), "{lines}");
}

#[test]
fn kernel_vxlan_on_port_8472_captured_as_pcapng_and_linux_cooked() {
    let p = "dk";
    if !prerequisites(&["ip", "ping", "iperf3", "tcpdump", "tshark"]) {
        return;
    }
    let tmp = TempDir::new(p);
    let u = underlay(p);
    // Linux VXLAN with the port it used before IANA's, 8472; an address on each VXLAN device.
    for (ns, local, remote, addr) in
        [(&u.h1, "192.0.2.11", "192.0.2.12", "10.8.0.1"), (&u.h2, "192.0.2.12", "192.0.2.11", "10.8.0.2")]
    {
        ns.sh(&format!(
            "ip link add vx0 type vxlan id 8 local {local} remote {remote} dstport 8472 && \
             ip addr add {addr}/24 dev vx0 && ip addr add fd00:8::{}/64 dev vx0 nodad && ip link set vx0 up",
            &addr[7..]
        ));
    }
    let ng = tmp.path("kernel.pcapng");
    let any = tmp.path("kernel-any.pcap");
    let tshark = u.h1.sh(&format!("tshark -i {} -w {} -q >/dev/null 2>&1 & echo $!", u.u1, ng.display()));
    let tcpdump = u
        .h1
        .sh(&format!("tcpdump -i any --immediate-mode -U -n -c 400 -w {} >/dev/null 2>&1 & echo $!", any.display()));
    std::thread::sleep(std::time::Duration::from_millis(1500));
    u.h1.ping("10.8.0.2", 2);
    u.h1.ping("fd00:8::2", 2);
    u.h2.sh("iperf3 -s -1 -D -B 10.8.0.2");
    std::thread::sleep(std::time::Duration::from_millis(300));
    u.h1.sh("timeout 20 iperf3 -c 10.8.0.2 -n 200K >/dev/null");
    std::thread::sleep(std::time::Duration::from_millis(500));
    u.h1.sh(&format!("kill -INT {} {} 2>/dev/null; sleep 1; true", tshark.trim(), tcpdump.trim()));

    assert!(std::fs::read(&ng).unwrap().starts_with(&[0x0a, 0x0d, 0x0d, 0x0a]), "tshark writes pcapng");
    let (n, _) = assert_decode_matches_tshark(&ng, &["udp.port==8472,vxlan"]);
    assert!(n >= 20, "only {n} packets captured");
    let (n_any, _) = assert_decode_matches_tshark(&any, &["udp.port==8472,vxlan"]);
    assert!(n_any >= 20);
    // Without the rule the tunnel is plain UDP to both tools; with it, weft finds VNI 8 and TCP inside.
    let weft = bin_dir().join("weft");
    let with = sh(&format!("{} decode --format json -d udp.port==8472,vxlan {}", weft.display(), ng.display()));
    assert!(with.contains("\"vxlan.vni\":\"8\"") && with.contains("\"tcp.srcport\""), "no VXLAN/TCP decoded");
    let without = sh(&format!("{} decode --format json {}", weft.display(), ng.display()));
    assert!(!without.contains("vxlan.vni"));
    let linktype = sh(&format!("{} decode --format json -c 1 {}", weft.display(), any.display()));
    assert!(linktype.contains("\"name\":\"sll\""), "tcpdump -i any gives Linux cooked captures: {linktype}");
}
