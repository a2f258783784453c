//! Geneve and GRE between two weft hosts, over IPv4 and IPv6 underlays, each carrying IPv4 and IPv6, checked
//! on the wire with tshark: VNI / key, Geneve options, GRE checksum and sequence numbers, outer TOS, TTL
//! and DF as the port options ask.

use weft_interop::*;

/// The first (outermost) of a field's values.
fn outer(v: &str) -> &str {
    v.split(',').next().unwrap_or_default()
}

/// A number as tshark prints it (decimal, or hex with any number of digits).
fn num(v: &str) -> u64 {
    match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => v.parse(),
    }
    .unwrap_or_else(|_| panic!("{v:?} is not a number"))
}

fn both_ways(pr: &Pair) {
    pr.left.ping(V4_RIGHT, 3);
    pr.right.ping(V4_LEFT, 2);
    pr.left.ping(V6_RIGHT, 3);
    pr.right.ping(V6_LEFT, 2);
}

fn geneve(p: &str, v6: bool) {
    if !prerequisites(&["ip", "ping", "tcpdump", "tshark"]) {
        return;
    }
    // Host 1 sends two options, one of them critical, and inherits the inner TOS; host 2 declares the critical
    // one as its own (so it understands it) and sets a fixed TTL.
    let opts1 = "options:key=5000 options:geneve_opts=0x0102:0x01:0a0b0c0d,0x0103:0x85:11223344aabbccdd \
                 options:tos=inherit";
    let opts2 = "options:key=5000 options:geneve_opts=0x0103:0x85:00000000 options:ttl=17";
    let pr = pair(p, "geneve", v6, opts1, opts2);
    // 1500 - outer IP - UDP (8) - Geneve (8) - host 2's options (8) - inner Ethernet (14).
    let ip = if v6 { 40 } else { 20 };
    let mtu = pr.right.sh(&format!("cat /sys/class/net/{}/mtu", pr.tap));
    assert_eq!(mtu.trim(), (1500 - ip - 8 - 8 - 8 - 14).to_string(), "TAP MTU fits Geneve with options");

    let cap = Capture::start(&pr.u.h1, &pr.u.u1, pr.tmp.path("geneve.pcap"));
    both_ways(&pr);
    pr.left.sh(&format!("ping -c 2 -i 0.2 -Q 0xb8 {V4_RIGHT}"));
    cap.finish();

    let family = if v6 { "ipv6" } else { "ip" };
    let (src_addr, tos, ttl) =
        if v6 { ("ipv6.src", "ipv6.tclass", "ipv6.hlim") } else { ("ip.src", "ip.dsfield", "ip.ttl") };
    let rows = cap.fields(
        "geneve",
        &[
            src_addr,
            "udp.dstport",
            "geneve.vni",
            "geneve.proto_type",
            "geneve.flags.critical",
            "geneve.option.class",
            tos,
            ttl,
        ],
    );
    assert!(rows.len() >= 10, "{family} underlay: too few Geneve packets: {rows:?}");
    let from1: Vec<_> = rows.iter().filter(|r| outer(&r[0]).ends_with("11")).collect();
    let from2: Vec<_> = rows.iter().filter(|r| outer(&r[0]).ends_with("12")).collect();
    assert!(!from1.is_empty() && !from2.is_empty(), "{rows:?}");
    for r in &rows {
        assert_eq!(r[1], "6081", "{r:?}");
        assert_eq!(r[2], "0x001388", "VNI 5000 as tshark shows it: {r:?}");
        assert_eq!(r[3], "0x6558", "{r:?}");
        assert_eq!(r[4], "1", "critical bit set, each side sends a critical option: {r:?}");
    }
    for r in &from1 {
        assert_eq!(r[5], "0x0102,0x0103", "host 1's two options: {r:?}");
    }
    for r in &from2 {
        assert_eq!(r[5], "0x0103", "{r:?}");
        assert_eq!(outer(&r[7]), "17", "options:ttl=17: {r:?}");
    }
    // tos=inherit: the pings sent with TOS 0xb8 leave host 1 with TOS 0xb8 outside.
    let inherited = from1.iter().filter(|r| num(outer(&r[6])) == 0xb8).count();
    assert!(inherited >= 2, "outer TOS not inherited from the inner packet: {from1:?}");

    // weft decode reads the capture as tshark does, options included.
    assert_decode_matches_tshark(&cap.file, &[]);

    // Options are counted where they arrive.
    let ports = pr.w2.json("dump-ports sw1");
    let t1 = ports.as_array().unwrap().iter().find(|p| p["port"] == "t1").unwrap();
    assert!(t1["geneve_options_rx"].as_u64().unwrap() >= 2 * 5, "{t1}");
}

#[test]
fn geneve_with_options_ipv4_underlay() {
    geneve("gn4", false);
}

#[test]
fn geneve_with_options_ipv6_underlay() {
    geneve("gn6", true);
}

#[test]
fn geneve_unknown_critical_option_is_dropped() {
    let p = "gnc";
    if !prerequisites(&["ip", "ping"]) {
        return;
    }
    // Host 2 sends a critical option host 1 has never heard of.
    let pr = pair(p, "geneve", false, "options:key=7", "options:key=7 options:geneve_opts=0xffff:0x80:01020304");
    let lost = pr.left.run(&format!("ping -c 2 -i 0.3 -W 1 {V4_RIGHT}"));
    assert!(!lost.status.success(), "a packet with an unknown critical option was forwarded");
    assert!(pr.w1.drops("sw1", "t1", "critical_option") >= 1, "drops not counted");
    // Once host 1 knows the option (it sends it too), traffic flows.
    pr.w1.weft("set interface t1 options:geneve_opts=0xffff:0x80:00000000");
    both_ways(&pr);
}

fn gre(p: &str, v6: bool) {
    if !prerequisites(&["ip", "ping", "tcpdump", "tshark"]) {
        return;
    }
    let opts1 = "options:key=0xdeadbeef options:csum=true options:seq=true options:df_default=true options:tos=0x20";
    let opts2 = "options:key=0xdeadbeef";
    let pr = pair(p, "gre", v6, opts1, opts2);
    let ip = if v6 { 40 } else { 20 };
    let mtu = pr.right.sh(&format!("cat /sys/class/net/{}/mtu", pr.tap));
    // Host 2's GRE header: 4 bytes and the key.
    assert_eq!(mtu.trim(), (1500 - ip - 8 - 14).to_string(), "TAP MTU fits GRE with a key");

    let cap = Capture::start(&pr.u.h1, &pr.u.u1, pr.tmp.path("gre.pcap"));
    both_ways(&pr);
    cap.finish();
    let (src_addr, tos) = if v6 { ("ipv6.src", "ipv6.tclass") } else { ("ip.src", "ip.dsfield") };
    let rows = cap.fields(
        "gre",
        &[
            src_addr,
            "gre.key",
            "gre.proto",
            "gre.flags.checksum",
            "gre.checksum.status",
            "gre.sequence_number",
            tos,
            "ip.flags.df",
        ],
    );
    assert!(rows.len() >= 10, "too few GRE packets: {rows:?}");
    let mut seqs = Vec::new();
    for r in &rows {
        assert_eq!(r[1], "0xdeadbeef", "{r:?}");
        assert_eq!(r[2], "0x6558", "{r:?}");
        if outer(&r[0]).ends_with("11") {
            assert_eq!(r[3], "1", "host 1 sends checksums: {r:?}");
            assert_eq!(r[4], "1", "tshark finds the checksum good (status 1): {r:?}");
            seqs.push(r[5].parse::<u32>().unwrap());
            assert_eq!(num(outer(&r[6])), 0x20, "options:tos=0x20: {r:?}");
            if !v6 {
                assert_eq!(outer(&r[7]), "1", "df_default=true sets DF: {r:?}");
            }
        } else {
            assert_eq!((r[3].as_str(), r[5].as_str()), ("0", ""), "host 2 sends neither checksum nor sequence: {r:?}");
            if !v6 {
                assert_eq!(outer(&r[7]), "0", "without df_default, no DF: {r:?}");
            }
        }
    }
    // In order on the wire, none skipped, however many workers send them (one lock numbers and sends).
    assert!(seqs.len() >= 5 && seqs.windows(2).all(|w| w[1] == w[0] + 1), "sequence numbers count up: {seqs:?}");
    assert_decode_matches_tshark(&cap.file, &[]);
}

#[test]
fn gre_with_key_checksum_and_sequence_ipv4_underlay() {
    gre("gr4", false);
}

#[test]
fn gre_with_key_checksum_and_sequence_ipv6_underlay() {
    gre("gr6", true);
}

#[test]
fn gre_key_mismatch_is_dropped_and_counted() {
    let p = "grk";
    if !prerequisites(&["ip", "ping"]) {
        return;
    }
    let pr = pair(p, "gre", false, "options:key=1", "options:key=2");
    let lost = pr.left.run(&format!("ping -c 2 -i 0.3 -W 1 {V4_RIGHT}"));
    assert!(!lost.status.success(), "GRE with the wrong key was accepted");
    assert!(pr.w2.drops("sw1", "t1", "wrong_vni") >= 1, "wrong key not counted");
    pr.w2.weft("set interface t1 options:key=1");
    both_ways(&pr);
}
