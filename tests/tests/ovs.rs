//! weft against Open vSwitch's userspace datapath (`datapath_type=netdev`; this kernel has no OVS module), for
//! VXLAN, Geneve and GRE over IPv4 and IPv6 underlays. Each test starts its own ovsdb-server and ovs-vswitchd
//! in a namespace, with their files in a temporary directory, and checks the underlay with tshark.
//!
//! ```text
//!  [L] eth0 ──veth── P1 [H1: weftd sw1, tunnel t1] U1 ──veth── U2 [H2: OVS br-phy (underlay IP) + br-int t1] ──veth── [R]
//! ```

use weft_interop::*;

/// What a test against an Open vSwitch peer works with.
struct Site<'a> {
    tmp: &'a TempDir,
    u: &'a Underlay,
    ovs: &'a Ovs<'a>,
    w1: &'a Weftd,
    left: &'a Ns,
    right: &'a Ns,
    /// weft's and OVS's underlay addresses.
    a1: &'a str,
    a2: &'a str,
}

/// Builds the picture above for tunnel type `ty` and runs `body` in it. With `right_checksum_offload` the
/// endpoint behind OVS keeps its transmit checksum offload, so that its TCP segments reach OVS, and through the
/// tunnel weft, with their checksums left partial.
fn with_ovs_peer(p: &str, ty: &str, v6: bool, right_checksum_offload: bool, body: impl FnOnce(&Site)) {
    if !prerequisites(&["ip", "ping", "tcpdump", "tshark", "ovs-vswitchd", "ovsdb-server", "ovs-vsctl", "ethtool"]) {
        return;
    }
    let tmp = TempDir::new(p);
    let u = underlay(p);
    let u2 = format!("{p}u2");
    let (a1, a2) = if v6 { ("2001:db8:ff::11", "2001:db8:ff::12") } else { ("192.0.2.11", "192.0.2.12") };

    // Host 2: Open vSwitch. The underlay address moves to br-phy, where OVS's native tunnelling needs it.
    let ovs = Ovs::start(&u.h2, tmp.path("ovs"));
    ovs.netdev_host(&u2);
    let rp = format!("{p}rp");
    let right = Ns::new(&format!("{p}r"));
    veth(&right, "eth0", None, &u.h2, &rp, None);
    let offloads = if right_checksum_offload {
        // For OVS: it reads a TSO train from its AF_PACKET socket as one frame larger than any MTU and cannot
        // tunnel it. Checksum offload stays on, so the segments leave with partial checksums.
        "ethtool -K eth0 tso off >/dev/null"
    } else {
        // For OVS: it reads TCP/UDP checksums the sender left to offload as they are; have the endpoint fill
        // them in.
        "ethtool -K eth0 tx off >/dev/null"
    };
    right.sh(&format!(
        "{offloads} && ip link set eth0 mtu 1400 && ip addr add {V4_RIGHT}/24 dev eth0 && \
         ip addr add {V6_RIGHT}/64 dev eth0 nodad"
    ));
    u.h2.sh(&format!("ip link set {rp} up"));
    ovs.vsctl(&format!("add-port br-int {rp}"));
    ovs.vsctl(&format!("add-port br-int t1 -- set interface t1 type={ty} options:remote_ip={a1} options:key=5000"));

    // Host 1: weft. For OVS: over veth the kernel leaves the outer UDP checksum of weft's tunnel packets to an
    // offload that never happens (CHECKSUM_PARTIAL), and OVS drops what does not verify; a NIC would fill it in.
    u.h1.sh(&format!("ethtool -K {} tx off >/dev/null", u.u1));
    let w1 = Weftd::start(&u.h1, &tmp.path("h1"));
    w1.weft("add-br sw1");
    let p1 = format!("{p}p1");
    let left = endpoint_veth(&format!("{p}l"), &u.h1, &p1, V4_LEFT, V6_LEFT);
    left.sh("ip link set eth0 mtu 1400");
    w1.weft(&format!("add-port sw1 {p1}"));
    w1.weft(&format!("add-port sw1 t1 -- set interface t1 type={ty} options:remote_ip={a2} options:key=5000"));

    // OVS resolves its tunnel next hop from traffic it sees on br-phy.
    u.h2.ping(a1, 2);
    body(&Site { tmp: &tmp, u: &u, ovs: &ovs, w1: &w1, left: &left, right: &right, a1, a2 });
}

fn interop(p: &str, ty: &str, v6: bool) {
    with_ovs_peer(p, ty, v6, false, |s| {
        let pcap = s.tmp.path("underlay.pcap");
        let cap = Capture::start(&s.u.h1, &s.u.u1, pcap.clone());
        s.left.ping(V4_RIGHT, 3);
        s.right.ping(V4_LEFT, 3);
        s.left.ping(V6_RIGHT, 3);
        s.right.ping(V6_LEFT, 3);
        cap.finish();

        let (filter, id, proto) = match ty {
            "vxlan" => ("vxlan", "vxlan.vni", None),
            "geneve" => ("geneve", "geneve.vni", Some("geneve.proto_type")),
            _ => ("gre", "gre.key", Some("gre.proto")),
        };
        let (a1, a2) = (s.a1, s.a2);
        let src = if v6 { "ipv6.src" } else { "ip.src" };
        let fields = format!("-e {src} -e {id}{}", proto.map(|f| format!(" -e {f}")).unwrap_or_default());
        let out = sh(&format!("tshark -r {} -Y {filter} -T fields -E occurrence=f {fields}", pcap.display()));
        let rows: Vec<Vec<&str>> = out.lines().map(|l| l.split('\t').collect()).collect();
        let from = |who: &str| rows.iter().filter(|r| r[0] == who).count();
        assert!(from(a1) >= 6 && from(a2) >= 6, "{ty}: too few tunnel packets each way on the underlay:\n{out}");
        for r in &rows {
            let value = r[1]
                .strip_prefix("0x")
                .map(|h| u32::from_str_radix(h, 16).unwrap())
                .unwrap_or_else(|| r[1].parse().unwrap());
            assert_eq!(value, 5000, "{ty}: {id} is not 5000 (0x1388): {r:?}");
            if proto.is_some() {
                assert_eq!(r[2], "0x6558", "{ty}: protocol is not Transparent Ethernet Bridging: {r:?}");
            }
        }
        assert_decode_matches_tshark(&pcap, &[]);
        // OVS learned weft's endpoint behind the tunnel, and weft learned OVS's behind a2.
        let right_mac = mac_of(s.right, "eth0");
        let fdb = s.w1.json("fdb show sw1");
        assert!(
            fdb.as_array()
                .unwrap()
                .iter()
                .any(|e| e["mac"] == right_mac.as_str() && e["port"] == "t1" && e["remote_ip"] == a2),
            "{right_mac} not learned behind {a2}: {fdb}"
        );
        let left_mac = mac_of(s.left, "eth0");
        let ovs_fdb = s.ovs.appctl("fdb/show br-int");
        assert!(ovs_fdb.contains(&left_mac), "OVS did not learn {left_mac}:\n{ovs_fdb}");
    });
}

/// TCP both ways through a Geneve tunnel to Open vSwitch, whose endpoint leaves its checksums to an offload:
/// OVS forwards the segments as they are, partial checksums and all, and weft must finish them (or mark them
/// so) before its endpoint sees them. The capture proves the premise: the inner TCP checksums OVS sent do not
/// verify on the wire.
fn tcp_with_partial_checksums(p: &str, v6: bool) {
    if !prerequisites(&["iperf3"]) {
        return;
    }
    with_ovs_peer(p, "geneve", v6, true, |s| {
        s.left.ping(V4_RIGHT, 2);
        // A short transfer under capture first (the premise), then the measured ones without.
        let pcap = s.tmp.path("underlay.pcap");
        let cap = Capture::start(&s.u.h1, &s.u.u1, pcap.clone());
        s.right.sh(&format!("iperf3 -s -1 -D -B {V4_RIGHT}"));
        std::thread::sleep(std::time::Duration::from_millis(300));
        s.left.sh(&format!("timeout 30 iperf3 -c {V4_RIGHT} -n 300K -R"));
        cap.finish();
        let bad = sh(&format!(
            "tshark -r {} -o tcp.check_checksum:TRUE -Y 'geneve && tcp.checksum.status == 0' -T fields \
             -e frame.number | wc -l",
            pcap.display()
        ));
        let bad: usize = bad.trim().parse().unwrap();
        assert!(bad > 10, "OVS sent no TCP segments with partial checksums ({bad}): the test proves nothing");
        tcp_both_ways(s.left, s.right, &[V4_RIGHT, V6_RIGHT], "through OVS's Geneve");
    });
}

#[test]
fn geneve_tcp_both_ways_with_open_vswitch_sending_partial_checksums() {
    tcp_with_partial_checksums("ogt", false);
}

#[test]
fn geneve_tcp_both_ways_with_open_vswitch_sending_partial_checksums_over_ipv6() {
    tcp_with_partial_checksums("og6t", true);
}

#[test]
fn vxlan_with_open_vswitch_ipv4_underlay() {
    interop("ov4", "vxlan", false);
}

#[test]
fn vxlan_with_open_vswitch_ipv6_underlay() {
    interop("ov6", "vxlan", true);
}

#[test]
fn geneve_with_open_vswitch_ipv4_underlay() {
    interop("og4", "geneve", false);
}

#[test]
fn geneve_with_open_vswitch_ipv6_underlay() {
    interop("og6", "geneve", true);
}

#[test]
fn gre_with_open_vswitch_ipv4_underlay() {
    interop("oe4", "gre", false);
}

#[test]
fn gre_with_open_vswitch_ipv6_underlay() {
    interop("oe6", "gre", true);
}

/// Geneve options as flow fields (OVN's use), both ways: Open vSwitch maps option (0xffff, 0x80: critical)
/// of 4 bytes to `tun_metadata0` and sets it on what it sends; weft, told the same TLV map over OpenFlow by
/// `ovs-ofctl add-tlv-map`, matches it. Before the map the critical option is unknown to weft and dropped;
/// with it, a flow on `tun_metadata0=0x1234` passes ping and TCP and another value is dropped by weft's
/// flows. Then weft's flows set `tun_metadata0` on what they send, and OVS's flows pass only the value weft
/// set. `ovs-ofctl dump-tlv-map` and `dump-flows` read weft back; flows on unmapped fields, a duplicate
/// mapping and the deletion of a mapping in use are refused with OVS's codes.
#[test]
fn geneve_options_set_by_open_vswitch_are_tun_metadata_weft_flows_match() {
    let p = "otm";
    if !prerequisites(&["ovs-ofctl", "iperf3"]) {
        return;
    }
    with_ovs_peer(p, "geneve", false, false, |s| {
        let ofctl_ovs = |args: &str| s.u.h2.sh(&format!("{} timeout 10 ovs-ofctl {args}", s.ovs.env()));
        ofctl_ovs("add-tlv-map br-int '{class=0xffff,type=0x80,len=4}->tun_metadata0'");
        let ovs_sets = |v: &str| {
            ofctl_ovs(&format!(
                "add-flow br-int 'priority=10,in_port={p}rp,actions=set_field:{v}->tun_metadata0,NORMAL'"
            ))
        };
        ovs_sets("0x1234");
        // weft does not know the critical option yet: OVS's packets are dropped and counted.
        let lost = s.right.run(&format!("ping -c 2 -i 0.3 -W 1 {V4_LEFT}"));
        assert!(!lost.status.success(), "a packet with an unknown critical option was forwarded");
        assert!(s.w1.drops("sw1", "t1", "critical_option") >= 1, "critical-option drops not counted");

        // The same map on weft, over OpenFlow 1.3 and 1.0, and flows on it.
        let target = "tcp:127.0.0.1:6653";
        s.w1.weft("set-controller sw1 ptcp:6653:127.0.0.1");
        s.w1.weft("set-fail-mode sw1 secure");
        let ofctl =
            |v: &str, args: &str| s.u.h1.sh(&format!("timeout 10 ovs-ofctl {v} {}", args.replace("TARGET", target)));
        let try_ofctl =
            |args: &str| s.u.h1.run(&format!("timeout 10 ovs-ofctl -O OpenFlow13 {}", args.replace("TARGET", target)));
        let e = try_ofctl("add-flow TARGET 'tun_metadata0=0x1234,actions=NORMAL'");
        assert!(!e.status.success(), "a flow on an unmapped field was accepted");
        ofctl("-O OpenFlow13", "add-tlv-map TARGET '{class=0xffff,type=0x80,len=4}->tun_metadata0'");
        let e = try_ofctl("add-tlv-map TARGET '{class=0xffff,type=0x80,len=4}->tun_metadata1'");
        assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("NXTTMFC_DUP_ENTRY"), "{e:?}");
        let map = ofctl("", "dump-tlv-map TARGET");
        assert!(map.contains("0xffff") && map.contains("tun_metadata0"), "{map}");
        s.w1.weft("del-flows sw1");
        ofctl("-O OpenFlow13", "add-flow TARGET 'priority=20,tun_metadata0=0x1234,actions=NORMAL'");
        ofctl("-O OpenFlow13", "add-flow TARGET 'priority=10,in_port=2,actions=drop'");
        ofctl("-O OpenFlow13", "add-flow TARGET 'priority=0,actions=NORMAL'");
        let flows = ofctl("-O OpenFlow13", "--no-stats dump-flows TARGET");
        assert!(flows.contains("priority=20,tun_metadata0=0x1234 actions=NORMAL"), "{flows}");
        // Refused: a flow on an unmapped field, the deletion of a mapping flows use.
        let e = try_ofctl("add-flow TARGET 'priority=30,tun_metadata1=1,actions=NORMAL'");
        assert!(
            !e.status.success() && String::from_utf8_lossy(&e.stderr).contains("NXFMFC_INVALID_TLV_FIELD"),
            "{e:?}"
        );
        let e = try_ofctl("del-tlv-map TARGET '{class=0xffff,type=0x80,len=4}->tun_metadata0'");
        assert!(!e.status.success() && String::from_utf8_lossy(&e.stderr).contains("NXTTMFC_INVALID_TLV_DEL"), "{e:?}");

        s.right.ping(V4_LEFT, 3);
        s.left.ping(V6_RIGHT, 2);
        tcp_both_ways(s.left, s.right, &[V4_RIGHT], "Geneve with tun_metadata0 matched by weft");
        let hits = s.w1.json("dump-flows sw1");
        let hit =
            hits.as_array().unwrap().iter().find(|f| f["flow"].as_str().unwrap().contains("tun_metadata0=0x1234"));
        assert!(hit.is_some_and(|f| f["n_packets"].as_u64().unwrap() > 100), "{hits}");
        // Another value: weft's flows drop what OVS sends.
        ovs_sets("0x9999");
        let lost = s.right.run(&format!("ping -c 2 -i 0.3 -W 1 {V4_LEFT}"));
        assert!(!lost.status.success(), "tun_metadata0=0x9999 was forwarded");
        ovs_sets("0x1234");
        s.right.ping(V4_LEFT, 2);

        // The other way: weft sets tun_metadata0 on what it sends to the tunnel (explicit outputs), and OVS
        // passes only what carries the value weft set.
        ofctl_ovs("add-flow br-int 'priority=20,in_port=t1,tun_metadata0=0x5678,actions=NORMAL'");
        ofctl_ovs("add-flow br-int 'priority=15,in_port=t1,actions=drop'");
        let weft_sets = |v: &str| {
            ofctl(
                "-O OpenFlow13",
                &format!("add-flow TARGET 'priority=20,in_port=1,actions=set_field:{v}->tun_metadata0,output:2'"),
            );
        };
        ofctl("", "del-flows TARGET");
        ofctl("-O OpenFlow13", "add-flow TARGET 'priority=20,in_port=2,tun_metadata0=0x1234,actions=output:1'");
        weft_sets("0x9999");
        let lost = s.left.run(&format!("ping -c 2 -i 0.3 -W 1 {V4_RIGHT}"));
        assert!(!lost.status.success(), "OVS passed tun_metadata0=0x9999");
        weft_sets("0x5678");
        let flows = ofctl("-O OpenFlow13", "--no-stats dump-flows TARGET");
        assert!(flows.contains("in_port=1 actions=set_field:0x5678->tun_metadata0,output:2"), "{flows}");
        let pcap = s.tmp.path("metadata.pcap");
        let cap = Capture::start(&s.u.h1, &s.u.u1, pcap.clone());
        s.left.ping(V4_RIGHT, 3);
        cap.finish();
        let opts = sh(&format!(
            "tshark -r {} -Y 'geneve && ip.src == {}' -T fields -e geneve.option.class -e geneve.option.type \
             -e geneve.option.length -e geneve.option.unknown.data",
            pcap.display(),
            s.a1
        ));
        assert!(opts.lines().count() >= 3, "weft sent too few Geneve packets:\n{opts}");
        for l in opts.lines() {
            let f: Vec<&str> = l.split('\t').collect();
            assert_eq!(f[0], "0xffff", "{l}");
            assert_eq!(u8::from_str_radix(f[1].trim_start_matches("0x"), 16).unwrap(), 0x80, "{l}");
            assert!(f[3].ends_with("5678"), "the option carries 0x5678: {l}");
        }
        tcp_both_ways(s.left, s.right, &[V4_RIGHT], "Geneve with tun_metadata0 set by weft and matched by OVS");
        assert_decode_matches_tshark(&pcap, &[]);
    });
}
