//! Configuration changes and their validation.

use super::*;

/// Tunnel port `port`'s spec, as a checked configuration holds it.
fn tunnel(c: &Config, port: &str) -> TunnelSpec {
    Valid::new(c.clone()).unwrap().port(port).unwrap().2.tunnel.unwrap()
}

/// Bridge `bridge`'s control plane, as a checked configuration holds it.
fn cp(c: &Config, bridge: &str) -> Option<CpSpec> {
    Valid::new(c.clone()).unwrap().bridge_spec(bridge).unwrap().1.control_plane.clone()
}

#[test]
fn ipsec_gre_is_gre_with_a_psk_shown_as_written() {
    let mut c = Config::default();
    c.add_bridge("sw1", false).unwrap();
    // Seed 003's own line.
    c.add_port(
        "sw1",
        "tun0",
        &kv(&[("type", "ipsec_gre"), ("options:remote_ip", "192.168.56.12"), ("options:psk", "test123")]),
        &[],
        false,
    )
    .unwrap();
    c.validate().unwrap();
    let p = &c.bridges[0].ports[0];
    assert_eq!(p.iface_type.as_str(), "ipsec_gre");
    let t = tunnel(&c, "tun0");
    assert_eq!(t.encap, Encap::Gre);
    assert!(t.ipsec.is_some());
    assert!(serde_json::to_string(&c).unwrap().contains("\"ipsec_gre\""));
    let mut d = Config::default();
    d.add_bridge("sw1", false).unwrap();
    d.add_port("sw1", "tun1", &kv(&[("type", "ipsec_gre"), ("options:remote_ip", "192.0.2.1")]), &[], false).unwrap();
    assert!(d.validate().unwrap_err().to_string().contains("needs options:psk"));
}

#[test]
fn options_and_ids_can_be_removed_and_cleared() {
    let mut c = Config::default();
    c.add_bridge("br0", false).unwrap();
    c.add_port(
        "br0",
        "vx1",
        &kv(&[
            ("type", "vxlan"),
            ("options:remote_ip", "192.0.2.9"),
            ("options:tos", "inherit"),
            ("options:ttl", "9"),
            ("external_ids:a", "1"),
        ]),
        &[],
        false,
    )
    .unwrap();
    let rm = |t: &str, n: &str, col: &str, keys: &[&str]| crate::Request::RemoveKeys {
        table: t.into(),
        name: n.into(),
        column: col.into(),
        keys: keys.iter().map(|k| k.to_string()).collect(),
    };
    c.apply(&rm("Interface", "vx1", "options", &["tos", "ttl", "absent"])).unwrap();
    let p = &c.bridges[0].ports[0];
    assert_eq!(p.options.keys().collect::<Vec<_>>(), vec!["remote_ip"]);
    c.apply(&rm("interface", "vx1", "external-ids", &[])).unwrap();
    assert!(c.bridges[0].ports[0].external_ids.is_empty());
    // A tunnel cannot lose its remote_ip: the change is refused when validated.
    let mut d = c.clone();
    d.apply(&rm("Interface", "vx1", "options", &[])).unwrap();
    assert!(d.validate().is_err());
    assert!(c.apply(&rm("Interface", "vx1", "type", &[])).unwrap_err().to_string().contains("cannot remove"));
    assert!(c.apply(&rm("Interface", "nope", "options", &["x"])).is_err());
}

#[test]
fn openflow_listeners_default_to_loopback() {
    let listen = |t: &str| match parse_of_target(t).unwrap() {
        OfTarget::Listen(a) => a.to_string(),
        OfTarget::Connect(_) => panic!("{t} is a listener"),
    };
    assert_eq!(listen("ptcp:6653"), "127.0.0.1:6653");
    assert_eq!(listen("ptcp:"), "127.0.0.1:6653");
    assert_eq!(listen("ptcp:6653:0.0.0.0"), "0.0.0.0:6653");
    assert_eq!(listen("ptcp:6633:[::1]"), "[::1]:6633");
    assert_eq!(listen("pssl:6653"), "127.0.0.1:6653");
    assert!(OfTarget::is_tls("pssl:6653") && OfTarget::is_tls("ssl:192.0.2.9") && !OfTarget::is_tls("ptcp:1"));
    let mut c = Config::default();
    c.add_bridge("br0", false).unwrap();
    c.apply(&crate::Request::SetController { bridge: "br0".into(), targets: vec!["pssl:6653".into()] }).unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("set-ssl"));
    let bad = SslConfig {
        private_key: "/nonexistent/k".into(),
        certificate: "/etc/hostname".into(),
        ca_cert: "/etc/hostname".into(),
    };
    assert!(c.apply(&crate::Request::SetSsl { ssl: Some(bad) }).unwrap_err().to_string().contains("cannot be read"));
    assert!(parse_of_target("ptcp:0").is_err());
    assert_eq!(parse_of_target("tcp:192.0.2.9").unwrap(), OfTarget::Connect("192.0.2.9:6653".parse().unwrap()));
}

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn sample() -> Config {
    let mut c = Config::default();
    c.add_bridge("sw1", false).unwrap();
    c.add_port("sw1", "p1", &[], &[], false).unwrap();
    c.add_port(
        "sw1",
        "vx1",
        &kv(&[("type", "vxlan"), ("options:remote_ip", "192.0.2.12"), ("options:key", "123")]),
        &[],
        false,
    )
    .unwrap();
    c
}

#[test]
fn ofports_in_order_never_reused() {
    let mut c = sample();
    assert_eq!(c.bridge("sw1").unwrap().ports.iter().map(|p| p.ofport).collect::<Vec<_>>(), vec![1, 2]);
    c.del_port(None, "p1", false).unwrap();
    c.add_port("sw1", "p3", &[], &[], false).unwrap();
    assert_eq!(c.find_port("p3").unwrap().1.unwrap().ofport, 3);
    c.validate().unwrap();
}

#[test]
fn tunnel_options_are_checked() {
    let c = sample();
    let t = tunnel(&c, "vx1");
    assert_eq!((t.vni, t.dst_port, t.overhead()), (123, 4789, 36));
    let mut c2 = c.clone();
    c2.set_interface("vx1", &kv(&[("options:key", "16777216")])).unwrap();
    let e = c2.validate().unwrap_err().to_string();
    assert!(e.contains("VNI 16777216 is out of range 0..=16777215"), "{e}");
    let mut c3 = c.clone();
    c3.set_interface("vx1", &kv(&[("options:remote_ip", "192.0.2.300")])).unwrap();
    assert!(c3.validate().unwrap_err().to_string().contains("not an IPv4 or IPv6 address"));
    let mut c4 = c.clone();
    c4.set_interface("vx1", &kv(&[("options:colour", "blue")])).unwrap();
    assert!(c4.validate().unwrap_err().to_string().contains("unknown option \"colour\""));
    let mut c5 = c;
    c5.set_interface("vx1", &kv(&[("options:local_ip", "2001:db8::1")])).unwrap();
    assert!(c5.validate().unwrap_err().to_string().contains("same family"));
}

#[test]
fn ipsec_options_are_checked() {
    let mut c = sample();
    c.set_interface("vx1", &kv(&[("options:psk", "swordfish")])).unwrap();
    c.validate().unwrap();
    let t = tunnel(&c, "vx1");
    // Transport mode in UDP: 37 bytes of ESP and 8 of UDP on top of VXLAN's 36.
    assert_eq!(t.overhead(), 36 + 37 + 8);
    let bad = |opts: &[(&str, &str)], want: &str| {
        let mut c2 = c.clone();
        c2.set_interface("vx1", &kv(opts)).unwrap();
        let e = c2.validate().unwrap_err().to_string();
        assert!(e.contains(want), "{opts:?}: {e}");
    };
    bad(&[("options:ipsec_mode", "sideways")], "neither transport nor tunnel");
    bad(&[("options:ipsec_encap", "tcp")], "neither udp");
    bad(&[("options:ipsec_lifetime", "5")], "at least 10");
    bad(&[("options:remote_ip", "239.1.1.1"), ("options:dev", "eth0")], "one remote_ip");
    bad(&[("options:remote_ip", "192.0.2.12,192.0.2.13")], "one remote_ip");
    bad(&[("options:psk", "")], "1 to 256");
    let mut plain = sample();
    plain.set_interface("vx1", &kv(&[("options:ipsec_mode", "tunnel")])).unwrap();
    assert!(plain.validate().unwrap_err().to_string().contains("only applies with options:psk"));
    // Tunnel mode over IPv4 adds an inner IP header.
    let mut tun = c.clone();
    tun.set_interface("vx1", &kv(&[("options:ipsec_mode", "tunnel"), ("options:ipsec_encap", "esp")])).unwrap();
    let t = tunnel(&tun, "vx1");
    assert_eq!(t.overhead(), 36 + 37 + 20);
    // Two protected ports to one remote must agree (one IKE SA serves both).
    let mut two = c.clone();
    two.add_port(
        "sw1",
        "gre1",
        &kv(&[("type", "gre"), ("options:remote_ip", "192.0.2.12"), ("options:psk", "marlin")]),
        &[],
        false,
    )
    .unwrap();
    assert!(two.validate().unwrap_err().to_string().contains("psk or ipsec_* options differ"));
}

#[test]
fn geneve_and_gre_options() {
    let mut c = sample();
    let gnv = kv(&[
        ("type", "geneve"),
        ("options:remote_ip", "2001:db8::2"),
        ("options:key", "5000"),
        ("options:geneve_opts", "0x0102:0x80:0a0b0c0d, 0xffff:1:"),
        ("options:tos", "inherit"),
        ("options:ttl", "32"),
    ]);
    c.add_port("sw1", "gnv1", &gnv, &[], false).unwrap();
    c.validate().unwrap();
    let v = Valid::new(c.clone()).unwrap();
    let spec = v.port("gnv1").unwrap().2;
    let t = spec.tunnel.unwrap();
    assert_eq!((t.encap, t.vni, t.dst_port, t.options_len), (Encap::Geneve, 5000, 6081, 12));
    assert_eq!((t.tos, t.ttl, t.df), (Inherit::Inherit, Inherit::Value(32), false));
    // IPv6 + UDP + Geneve + 12 bytes of options.
    assert_eq!(t.overhead(), 40 + 8 + 8 + 12);
    assert_eq!(spec.geneve_options, [1, 2, 0x80, 1, 10, 11, 12, 13, 0xff, 0xff, 1, 0]);

    let gre = kv(&[
        ("type", "gre"),
        ("options:remote_ip", "192.0.2.13"),
        ("options:key", "0xffffffff"),
        ("options:csum", "true"),
        ("options:seq", "true"),
        ("options:df_default", "true"),
    ]);
    c.add_port("sw1", "gre1", &gre, &[], false).unwrap();
    c.validate().unwrap();
    let t = tunnel(&c, "gre1");
    assert_eq!((t.encap, t.vni, t.keyed, t.dst_port, t.overhead(), t.df), (Encap::Gre, u32::MAX, true, 0, 36, true));

    for (key, value, says) in [
        ("options:geneve_opts", "1:2", "CLASS:TYPE:DATA"),
        ("options:geneve_opts", "1:2:abc", "even number of hex digits"),
        ("options:geneve_opts", "1:2:abcdef", "multiple of 4 bytes"),
        ("options:geneve_opts", "0x10000:2:", "class"),
        ("options:ttl", "0", "1..=255"),
        ("options:tos", "256", "0..=255"),
        ("options:key", "16777216", "VNI 16777216 is out of range"),
        ("options:df_default", "yes", "true or false"),
        ("options:csum", "true", "unknown option \"csum\" for a geneve interface"),
    ] {
        let mut bad = c.clone();
        bad.set_interface("gnv1", &kv(&[(key, value)])).unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains(says), "{key}={value}: {e}");
    }
    // A GRE key has 32 bits, so 2^32 is refused; GRE has no UDP port and no multicast.
    for (key, value, says) in [
        ("options:key", "4294967296", "out of range"),
        ("options:dst_port", "4789", "unknown option"),
        ("options:remote_ip", "239.1.1.1", "unicast"),
    ] {
        let mut bad = c.clone();
        bad.set_interface("gre1", &kv(&[(key, value)])).unwrap();
        let e = bad.validate().unwrap_err().to_string();
        assert!(e.contains(says), "{key}={value}: {e}");
    }
    // VXLAN and Geneve cannot share a UDP port.
    let mut clash = c.clone();
    clash.set_interface("gnv1", &kv(&[("options:remote_ip", "192.0.2.14"), ("options:dst_port", "4789")])).unwrap();
    let e = clash.validate().unwrap_err().to_string();
    assert!(e.contains("different encapsulations"), "{e}");
}

#[test]
fn names_types_and_duplicates() {
    let mut c = sample();
    assert_eq!(c.add_bridge("sw1", false), Err(ConfigError::BridgeExists("sw1".into())));
    assert!(c.add_bridge("sw1", true).is_ok());
    assert!(matches!(c.add_port("sw1", "p1", &[], &[], false), Err(ConfigError::PortExists { .. })));
    assert!(matches!(c.add_port("nope", "p9", &[], &[], false), Err(ConfigError::NoSuchBridge(_))));
    assert!(matches!(c.add_port("sw1", "p9", &kv(&[("type", "warp")]), &[], false), Err(ConfigError::UnknownType(_))));
    assert!(matches!(c.add_port("sw1", "a-very-long-interface-name", &[], &[], false), Err(ConfigError::BadName(_))));
    assert!(matches!(c.del_port(None, "sw1", false), Err(ConfigError::InternalPort(_))));
    assert!(matches!(c.add_bridge("p1", false), Err(ConfigError::PortExists { .. })));
    c.add_bridge("sw2", false).unwrap();
    assert!(matches!(c.del_port(Some("sw2"), "p1", false), Err(ConfigError::WrongBridge { .. })));
}

#[test]
fn several_remotes() {
    let mut c = sample();
    c.set_interface("vx1", &kv(&[("options:remote_ip", "192.0.2.12,192.0.2.13")])).unwrap();
    c.validate().unwrap();
    assert_eq!(Valid::new(c.clone()).unwrap().port("vx1").unwrap().2.flood_remotes.len(), 2);
    for (bad_list, why) in [
        ("192.0.2.12,2001:db8::1", "mixes IPv4 and IPv6"),
        ("192.0.2.12,192.0.2.12", "twice"),
        ("192.0.2.12,", "not an IPv4 or IPv6 address"),
    ] {
        let mut c2 = c.clone();
        c2.set_interface("vx1", &kv(&[("options:remote_ip", bad_list)])).unwrap();
        let e = c2.validate().unwrap_err().to_string();
        assert!(e.contains(why), "{bad_list}: {e}");
    }
    // A remote may belong to one tunnel per VNI only, also inside a list.
    c.add_port(
        "sw1",
        "vx2",
        &kv(&[("type", "vxlan"), ("options:remote_ip", "192.0.2.13"), ("options:key", "123")]),
        &[],
        false,
    )
    .unwrap();
    assert!(matches!(c.validate(), Err(ConfigError::Conflict(_))));
}

#[test]
fn vlan_settings() {
    let mut c = sample();
    c.set_port("p1", &kv(&[("tag", "10")])).unwrap();
    c.set_port("vx1", &kv(&[("trunks", "[30, 20,20]")])).unwrap();
    c.set_port("sw1", &kv(&[("tag", "20")])).unwrap();
    c.validate().unwrap();
    let b = c.bridge("sw1").unwrap();
    assert_eq!((b.ports[0].vlan.tag, &b.ports[1].vlan.trunks, b.local_vlan.tag), (Some(10), &vec![20, 30], Some(20)));
    // Both at once is refused by validation; bad values by the setter.
    let mut both = c.clone();
    both.set_port("p1", &kv(&[("trunks", "1,2")])).unwrap();
    assert!(both.validate().unwrap_err().to_string().contains("both tag"));
    for (k, v, says) in [
        ("tag", "0", "1..=4094"),
        ("tag", "4095", "1..=4094"),
        ("trunks", "1,x", "\"x\""),
        ("vlan_mode", "x", "unknown"),
    ] {
        let e = c.clone().set_port("p1", &kv(&[(k, v)])).unwrap_err().to_string();
        assert!(e.contains(says), "{k}={v}: {e}");
    }
    assert!(c.set_port("nope", &kv(&[("tag", "1")])).is_err());
    c.clear_port("p1", &["tag".to_string()]).unwrap();
    c.set_port("vx1", &kv(&[("trunks", "[]")])).unwrap();
    assert!(c.bridge("sw1").unwrap().ports.iter().all(|p| p.vlan.is_empty()));
    assert!(c.clear_port("p1", &["mtu".to_string()]).is_err());
    // add-port takes port settings too, and they survive the db round trip.
    c.add_port("sw1", "p9", &[], &kv(&[("tag", "7")]), false).unwrap();
    let text = serde_json::to_string(&c).unwrap();
    let back: Config = serde_json::from_str(&text).unwrap();
    assert_eq!(back.find_port("p9").unwrap().1.unwrap().vlan.tag, Some(7));
    assert_eq!(back, c);
}

#[test]
fn multicast_group_needs_dev() {
    let mut c = sample();
    c.set_interface("vx1", &kv(&[("options:remote_ip", "239.1.1.1")])).unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("needs options:dev"));
    c.set_interface("vx1", &kv(&[("options:dev", "eth1")])).unwrap();
    c.validate().unwrap();
    c.set_interface("vx1", &kv(&[("options:remote_ip", "239.1.1.1,192.0.2.12")])).unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("cannot be combined"));
}

#[test]
fn duplicate_tunnels_conflict() {
    let mut c = sample();
    c.add_port(
        "sw1",
        "vx2",
        &kv(&[("type", "vxlan"), ("options:remote_ip", "192.0.2.12"), ("options:key", "123")]),
        &[],
        false,
    )
    .unwrap();
    assert!(matches!(c.validate(), Err(ConfigError::Conflict(_))));
}

#[test]
fn bridge_settings() {
    let mut c = sample();
    c.set_bridge("sw1", &kv(&[("other_config:mac-aging-time", "30")])).unwrap();
    assert_eq!(c.bridge("sw1").unwrap().mac_aging_time(), 30);
    assert!(c.set_bridge("sw1", &kv(&[("other_config:mac-aging-time", "0")])).is_err());
    assert!(c.set_bridge("sw1", &kv(&[("other_config:colour", "1")])).is_err());
    assert!(c.set_bridge("sw1", &kv(&[("stp_enable", "true")])).is_err());
    // The datapath ID: 16 hex digits (optionally after 0x), not zero; unset, one derived from the name.
    let derived = c.bridge("sw1").unwrap().datapath_id();
    assert!(derived != 0 && derived < 1 << 48);
    c.set_bridge("sw1", &kv(&[("other_config:datapath-id", "0x00000000000000Ab")])).unwrap();
    assert_eq!(c.bridge("sw1").unwrap().datapath_id(), 0xab);
    for bad in ["ab", "0000000000000000", "00000000000000xy", "000000000000000ab"] {
        assert!(c.set_bridge("sw1", &kv(&[("other_config:datapath-id", bad)])).is_err(), "{bad}");
    }
    assert_eq!(c.bridge("sw1").unwrap().datapath_id(), 0xab, "a refused value changes nothing");
    c.set_bridge("sw1", &kv(&[("other_config:datapath-id", "")])).unwrap();
    assert_eq!(c.bridge("sw1").unwrap().datapath_id(), derived);
}

#[test]
fn control_plane_settings() {
    let mut c = sample();
    c.add_port(
        "sw1",
        "vxf",
        &kv(&[("type", "vxlan"), ("options:remote_ip", "flow"), ("options:key", "100")]),
        &[],
        false,
    )
    .unwrap();
    c.validate().unwrap();
    let t = tunnel(&c, "vxf");
    assert!(t.flow && t.remote.is_unspecified() && t.remote.is_ipv4());
    let set = |c: &mut Config, pairs: &[(&str, &str)]| {
        let mut n = c.clone();
        n.set_bridge("sw1", &kv(pairs)).and_then(|_| n.validate()).map(|_| *c = n)
    };
    // etcd needs endpoints; a wrong one is refused whole and changes nothing.
    let err = set(&mut c, &[("other_config:control-plane", "etcd")]).unwrap_err().to_string();
    assert!(err.contains("etcd-endpoints"), "{err}");
    assert!(
        set(&mut c, &[("other_config:control-plane", "etcd"), ("other_config:etcd-endpoints", "https://x:1")]).is_err()
    );
    assert!(set(&mut c, &[("other_config:control-plane", "bgp")]).is_err());
    assert_eq!(c.bridge("sw1").unwrap().control_plane(), None, "nothing applied");
    set(
        &mut c,
        &[
            ("other_config:control-plane", "etcd"),
            ("other_config:etcd-endpoints", "http://127.0.0.1:2379,http://10.0.0.1:2379"),
        ],
    )
    .unwrap();
    let Some(CpSpec::Etcd(e)) = cp(&c, "sw1") else { panic!("no etcd spec") };
    assert_eq!((e.endpoints.len(), e.prefix.as_str(), e.ttl), (2, "/weft/", 10));
    assert!(set(&mut c, &[("other_config:etcd-ttl", "1")]).is_err());
    // EVPN: AS, router id and peers; VXLAN only.
    let evpn = [
        ("other_config:control-plane", "evpn"),
        ("other_config:bgp-asn", "65000"),
        ("other_config:bgp-router-id", "10.0.0.3"),
        ("other_config:bgp-peers", "10.0.0.254"),
    ];
    assert!(set(&mut c, &evpn[..3]).unwrap_err().to_string().contains("bgp-peers"));
    set(&mut c, &evpn).unwrap();
    let Some(CpSpec::Evpn(v)) = cp(&c, "sw1") else { panic!("no EVPN spec") };
    assert_eq!((v.asn, v.hold, v.peers.len()), (65000, 9, 1));
    assert!(set(&mut c, &[("other_config:bgp-router-id", "0.0.0.0")]).is_err());
    let mut g = c.clone();
    g.add_port("sw1", "gf", &kv(&[("type", "gre"), ("options:remote_ip", "flow"), ("options:key", "5")]), &[], false)
        .unwrap();
    assert!(g.validate().unwrap_err().to_string().contains("EVPN"));
    // Two flow ports with one key are ambiguous.
    let mut d = c.clone();
    d.add_port(
        "sw1",
        "vxg",
        &kv(&[("type", "vxlan"), ("options:remote_ip", "flow"), ("options:key", "100")]),
        &[],
        false,
    )
    .unwrap();
    assert!(matches!(d.validate(), Err(ConfigError::Conflict(_))));
    // IPsec needs one remote.
    let mut i = c.clone();
    i.set_interface("vxf", &kv(&[("options:psk", "k")])).unwrap();
    assert!(i.validate().is_err());
    // Removing a setting with an empty value.
    set(&mut c, &[("other_config:control-plane", "")]).unwrap();
    assert_eq!(c.bridge("sw1").unwrap().control_plane(), None);
}

#[test]
fn static_fdb_entries() {
    let mut c = sample();
    let mac: EthernetAddress = "02:00:00:00:00:99".parse().unwrap();
    let entry = |port: &str, dst: Option<&str>| StaticFdb {
        mac,
        vlan: 0,
        port: port.to_string(),
        dst: dst.map(|d| d.parse().unwrap()),
    };
    c.fdb_add("sw1", entry("vx1", Some("192.0.2.13"))).unwrap();
    c.validate().unwrap();
    c.fdb_add("sw1", entry("p1", None)).unwrap();
    assert_eq!(c.bridge("sw1").unwrap().fdb.len(), 1, "same MAC and VLAN replaces");
    let mut bad = c.clone();
    bad.fdb_add("sw1", entry("p1", Some("192.0.2.13"))).unwrap();
    assert!(bad.validate().unwrap_err().to_string().contains("needs a tunnel port"));
    let mut bad = c.clone();
    bad.fdb_add("sw1", entry("vx1", Some("2001:db8::1"))).unwrap();
    assert!(bad.validate().unwrap_err().to_string().contains("same family"));
    let mut bad = c.clone();
    bad.fdb_add("sw1", entry("nope", None)).unwrap();
    assert!(bad.validate().unwrap_err().to_string().contains("no port named"));
    let mut bad = c.clone();
    bad.fdb_add("sw1", StaticFdb { mac: EthernetAddress::BROADCAST, ..entry("p1", None) }).unwrap();
    assert!(bad.validate().is_err());
    // Default (all-zero) entries add flood destinations to a tunnel port.
    let mut flood = c.clone();
    flood.fdb_add("sw1", StaticFdb { mac: EthernetAddress::ZERO, ..entry("vx1", Some("192.0.2.14")) }).unwrap();
    flood.validate().unwrap();
    let br = flood.bridge("sw1").unwrap();
    let vx = br.ports.iter().find(|p| p.name == "vx1").unwrap();
    assert_eq!(vx.flood_remotes(br).unwrap().len(), 2);
    let mut bad = c.clone();
    bad.fdb_add("sw1", StaticFdb { mac: EthernetAddress::ZERO, ..entry("p1", None) }).unwrap();
    assert!(bad.validate().unwrap_err().to_string().contains("flood destination"));
    assert!(c.fdb_del("sw1", mac, 7).is_err());
    c.del_port(None, "p1", false).unwrap();
    assert!(c.bridge("sw1").unwrap().fdb.is_empty(), "entries go with their port");
}

#[test]
fn serde_round_trip() {
    let c = sample();
    let s = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<Config>(&s).unwrap(), c);
}

#[test]
fn flow_flags_check_overlap_and_reset_counts() {
    let mut c = sample();
    c.del_flows("sw1", None, false).unwrap();
    c.add_flows("sw1", &["priority=5,ip,nw_dst=10.0.0.0/8,actions=drop".into()]).unwrap();
    // An overlapping flow of the same priority with check_overlap is refused; another priority is fine.
    let e = c.add_flows("sw1", &["check_overlap,priority=5,ip,nw_dst=10.1.0.0/16,actions=drop".into()]).unwrap_err();
    assert!(e.to_string().contains("check_overlap"), "{e}");
    c.add_flows("sw1", &["check_overlap,priority=6,ip,nw_dst=10.1.0.0/16,actions=drop".into()]).unwrap();
    c.add_flows("sw1", &["check_overlap,priority=5,ip,nw_dst=192.0.2.0/24,actions=drop".into()]).unwrap();
    // reset_counts on a modification: the flow gets a new id (its counters start again); without, it keeps it.
    let id = |c: &Config| c.bridge("sw1").unwrap().flows.iter().find(|s| s.flow.priority == 6).unwrap().id;
    let before = id(&c);
    c.mod_flows("sw1", "priority=6,ip,nw_dst=10.1.0.0/16,actions=flood", true).unwrap();
    assert_eq!(id(&c), before);
    c.mod_flows("sw1", "reset_counts,priority=6,ip,nw_dst=10.1.0.0/16,actions=normal", true).unwrap();
    assert_ne!(id(&c), before);
    // The flags survive the database.
    let s = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<Config>(&s).unwrap(), c);
}

#[test]
fn a_database_with_one_controller_target_still_loads() {
    let mut c = sample();
    c.apply(&crate::Request::SetController {
        bridge: "sw1".into(),
        targets: vec!["ptcp:6653".into(), "tcp:192.0.2.9".into()],
    })
    .unwrap();
    let mut v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["bridges"][0]["controller"], serde_json::json!(["ptcp:6653", "tcp:192.0.2.9"]));
    // As sessions before this one wrote it: one string.
    v["bridges"][0]["controller"] = serde_json::json!("ptcp:6653");
    let old: Config = serde_json::from_value(v).unwrap();
    assert_eq!(old.bridge("sw1").unwrap().controllers, ["ptcp:6653"]);
    let e = c.apply(&crate::Request::SetController {
        bridge: "sw1".into(),
        targets: vec!["ptcp:1".into(), "ptcp:1".into()],
    });
    assert!(e.unwrap_err().to_string().contains("given twice"));
}

#[test]
fn a_tlv_map_leaves_room_for_its_options_and_bounds_the_ports_own() {
    let mut c = sample();
    let gnv = |opts: &str| {
        kv(&[
            ("type", "geneve"),
            ("options:remote_ip", "192.0.2.2"),
            ("options:key", "5"),
            ("options:geneve_opts", opts),
        ])
    };
    c.add_port("sw1", "gnv1", &gnv("0x0102:0x80:0a0b0c0d"), &[], false).unwrap();
    assert_eq!(tunnel(&c, "gnv1").overhead(), 20 + 8 + 8 + 8);
    c.bridges[0].tlv_map =
        crate::tlv::parse("{class=0xffff,type=0x80,len=4}->tun_metadata0,{class=1,type=1,len=16}->tun_metadata1")
            .unwrap();
    // Room for both mapped options: 4 + 4 and 4 + 16 bytes.
    assert_eq!(tunnel(&c, "gnv1").overhead(), 20 + 8 + 8 + 8 + 28);
    let long = ["0x0102:0x01:00000000000000000000000000000000"; 4].join(",");
    let mut too_long = c.clone();
    too_long.bridges[0].ports.iter_mut().find(|p| p.name == "gnv1").unwrap().options.insert("geneve_opts".into(), long);
    let e = too_long.validate().unwrap_err().to_string();
    assert!(e.contains("at most 64 bytes of options:geneve_opts"), "{e}");
    // A flow on an unmapped field, or one too long for its option, is refused with the configuration.
    c.add_flows("sw1", &["tun_metadata0=0x1234,actions=NORMAL".to_string()]).unwrap();
    c.validate().unwrap();
    c.add_flows("sw1", &["tun_metadata2=1,actions=NORMAL".to_string()]).unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("tun_metadata2 is not mapped"));
}
