//! IPsec between weft hosts: IKEv2 with a pre-shared key brings up ESP on its own, and tunnel traffic crosses
//! the underlay only inside ESP (checked with tshark on the underlay, which also decrypts it with the keys
//! `weft ipsec show --keys` prints), in transport and tunnel mode, as ESP in UDP and as raw ESP, for VXLAN,
//! Geneve and GRE, over IPv4 and IPv6. A wrong key, replayed, changed or cut packets and an IKE_SA_INIT flood
//! fail closed and are counted.

use weft_interop::*;

/// Waits until `weft ipsec show` on `w` lists an established IKE SA with a child SA.
fn wait_for_sa(w: &Weftd) -> serde_json::Value {
    for _ in 0..150 {
        let v = w.json("ipsec show");
        if v["sas"].as_array().is_some_and(|s| {
            s.iter().any(|sa| sa["state"] == "ESTABLISHED" && sa["children"].as_array().is_some_and(|c| !c.is_empty()))
        }) {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no SA came up:\n{}\n{}", w.weft("ipsec show"), w.log());
}

/// tshark over `pcap` with the Wireshark table lines `weft ipsec show --keys` printed on `w`.
fn tshark_decrypting(w: &Weftd, pcap: &std::path::Path, filter: &str, fields: &[&str]) -> Vec<Vec<String>> {
    let keys = w.weft("ipsec show --keys");
    let opts: String = keys.lines().filter(|l| l.starts_with("uat:")).map(|l| format!(" -o '{l}'")).collect();
    assert!(opts.matches("uat:esp_sa").count() >= 2, "{keys}");
    let e: String = fields.iter().map(|f| format!(" -e {f}")).collect();
    let out = sh(&format!(
        "tshark -r {} -o esp.enable_encryption_decode:TRUE -o esp.enable_authentication_check:TRUE{opts} -Y '{filter}' -T fields -E separator=/t{e}",
        pcap.display()
    ));
    out.lines().map(|l| l.split('\t').map(str::to_string).collect()).collect()
}

const PSK: &str = "options:psk=swordfish";

/// Makes the underlay veths cut UDP_SEGMENT trains before they cross, so that tcpdump sees each datagram as
/// the wire would (a veth otherwise hands the whole train over as one packet).
fn no_gso_on_underlay(p: &Pair) {
    p.u.h1.sh(&format!("ethtool -K {} tx-udp-segmentation off >/dev/null", p.u.u1));
    p.u.h2.sh(&format!("ethtool -K {} tx-udp-segmentation off >/dev/null", p.u.u1.replace("u1", "u2")));
}

#[test]
fn vxlan_transport_esp_in_udp_decrypted_by_tshark() {
    if !prerequisites(&["tshark", "tcpdump"]) {
        return;
    }
    let o = format!("options:key=123 {PSK}");
    let p = pair("ipa", "vxlan", false, &o, &o);
    no_gso_on_underlay(&p);
    let cap = Capture::start(&p.u.h1, &p.u.u1, p.tmp.path("u.pcap"));
    let v = wait_for_sa(&p.w1);
    wait_for_sa(&p.w2);
    p.left.ping(V4_RIGHT, 3);
    p.left.ping(V6_RIGHT, 3);
    cap.finish();
    let sa = &v["sas"][0];
    assert_eq!(sa["encryption"], "AES_GCM_16-256");
    assert_eq!(sa["dh_group"], "CURVE_25519");
    assert_eq!(sa["udp_encap"], true);
    assert_eq!(sa["initiator"], true, "the lower address initiates");
    // On the underlay: ESP in UDP 4500 and IKE, never clear-text VXLAN.
    assert!(cap.fields("vxlan", &["frame.number"]).is_empty(), "clear-text VXLAN on the underlay");
    let esp = cap.fields("esp && udp.port == 4500", &["esp.spi"]);
    assert!(esp.len() >= 12, "{} ESP packets", esp.len());
    assert!(!cap.fields("isakmp", &["isakmp.exchangetype"]).is_empty());
    // Wireshark decrypts with weft's keys: every ICV is good, and inside is VXLAN 123 carrying the pings.
    let dec = tshark_decrypting(&p.w1, &cap.file, "esp", &["esp.icv_good", "vxlan.vni", "icmp.type", "icmpv6.type"]);
    assert_eq!(dec.len(), esp.len());
    assert!(dec.iter().all(|r| r[0] == "1" && r[1] == "123"), "{dec:?}");
    assert!(dec.iter().filter(|r| r[2] == "8").count() >= 3);
    assert!(dec.iter().filter(|r| r[3] == "129").count() >= 3);
    // The IKE_AUTH exchange decrypts too (IDi, AUTH inside the encrypted payload).
    let ike = tshark_decrypting(&p.w1, &cap.file, "isakmp.exchangetype == 35", &["isakmp.typepayload"]);
    assert!(ike.iter().any(|r| r[0].contains("35") && r[0].contains("39")), "{ike:?}");
    let after = p.w1.json("ipsec show");
    let c = &after["sas"][0]["children"][0];
    assert!(c["packets_out"].as_u64().unwrap() >= 6, "{after}");
    assert!(c["packets_in"].as_u64().unwrap() >= 6, "{after}");
    assert_eq!(c["mode"], "transport");
    let text = p.w1.weft("ipsec show");
    assert!(text.contains("ESTABLISHED") && text.contains("TRANSPORT, AES_GCM_16-256"), "{text}");
    // `show` does not print the key.
    let show = p.w1.weft("show");
    assert!(show.contains("psk=\"(hidden)\"") && !show.contains("swordfish"), "{show}");
}

#[test]
fn geneve_tunnel_mode_raw_esp_over_ipv6() {
    if !prerequisites(&["tshark", "tcpdump"]) {
        return;
    }
    let o = format!("options:key=5 {PSK} options:ipsec_mode=tunnel options:ipsec_encap=esp");
    let p = pair("ipb", "geneve", true, &o, &o);
    let cap = Capture::start(&p.u.h1, &p.u.u1, p.tmp.path("u.pcap"));
    let v = wait_for_sa(&p.w1);
    assert_eq!(v["sas"][0]["udp_encap"], false);
    p.left.ping(V4_RIGHT, 3);
    p.left.ping(V6_RIGHT, 3);
    cap.finish();
    assert!(cap.fields("geneve", &["frame.number"]).is_empty(), "clear-text Geneve on the underlay");
    let raw = cap.fields("esp && !udp && ipv6", &["esp.spi"]);
    assert!(raw.len() >= 12, "{} raw ESP packets", raw.len());
    let dec = tshark_decrypting(&p.w1, &cap.file, "esp", &["esp.icv_good", "geneve.vni", "ipv6.nxt"]);
    assert!(dec.iter().all(|r| r[0] == "1" && r[1] == "0x000005"), "{dec:?}");
    // Tunnel mode: an inner IPv6 header (UDP) inside ESP (50) inside the outer one.
    assert!(dec.iter().all(|r| r[2].starts_with("50,17")), "{dec:?}");
    assert_eq!(p.w1.json("ipsec show")["sas"][0]["children"][0]["mode"], "tunnel");
}

#[test]
fn gre_transport_raw_esp() {
    if !prerequisites(&["tshark", "tcpdump"]) {
        return;
    }
    let o = format!("options:key=9 {PSK} options:ipsec_encap=esp");
    let p = pair("ipc", "gre", false, &o, &o);
    let cap = Capture::start(&p.u.h1, &p.u.u1, p.tmp.path("u.pcap"));
    wait_for_sa(&p.w1);
    p.left.ping(V4_RIGHT, 3);
    p.left.ping(V6_RIGHT, 3);
    cap.finish();
    assert!(cap.fields("gre", &["frame.number"]).is_empty(), "clear-text GRE on the underlay");
    let dec = tshark_decrypting(&p.w1, &cap.file, "esp", &["esp.icv_good", "gre.key", "esp.protocol"]);
    assert!(dec.len() >= 12);
    assert!(dec.iter().all(|r| r[0] == "1" && r[1] == "0x00000009" && r[2] == "0x2f"), "{dec:?}");
}

#[test]
fn wrong_psk_fails_closed() {
    if !prerequisites(&["tshark", "tcpdump"]) {
        return;
    }
    let p = pair("ipd", "vxlan", false, "options:key=1 options:psk=swordfish", "options:key=1 options:psk=marlin");
    let cap = Capture::start(&p.u.h1, &p.u.u1, p.tmp.path("u.pcap"));
    let out = p.left.run(&format!("ping -c 3 -i 0.5 -W 1 {V4_RIGHT}"));
    assert!(!out.status.success(), "a ping crossed with mismatched keys");
    std::thread::sleep(std::time::Duration::from_secs(2));
    cap.finish();
    let v2 = p.w2.json("ipsec show");
    assert!(v2["sas"].as_array().unwrap().iter().all(|s| s["state"] != "ESTABLISHED"), "{v2}");
    assert!(v2["ike"]["auth_failed"].as_u64().unwrap() >= 1, "{v2}");
    assert!(p.w2.log().contains("pre-shared key"), "{}", p.w2.log());
    assert!(p.w1.drops("sw1", "t1", "ipsec_no_sa") >= 1);
    assert!(cap.fields("vxlan", &["frame.number"]).is_empty(), "clear text went out");
    assert!(cap.fields("esp", &["frame.number"]).is_empty(), "ESP went out without an SA");
}

#[test]
fn rekeys_during_a_ping_lose_nothing_and_kill9_recovers() {
    let o = format!("options:key=7 {PSK}");
    let p = pair("ipe", "vxlan", false, &o, &o);
    let first = wait_for_sa(&p.w1);
    let spi0 = first["sas"][0]["children"][0]["spi_out"].clone();
    let ping = p.left.spawn(&format!("ping -c 120 -i 0.05 -W 1 {V4_RIGHT}"));
    std::thread::sleep(std::time::Duration::from_millis(800));
    p.w1.weft("ipsec rekey");
    std::thread::sleep(std::time::Duration::from_millis(800));
    p.w2.weft("ipsec rekey 192.0.2.11");
    std::thread::sleep(std::time::Duration::from_millis(800));
    p.w2.weft("ipsec rekey --ike");
    std::thread::sleep(std::time::Duration::from_millis(800));
    p.w1.weft("ipsec rekey");
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("120 received"), "{text}");
    let v = p.w1.json("ipsec show");
    assert_eq!(v["sas"].as_array().unwrap().len(), 1, "the old IKE SA is gone: {v}");
    let children = v["sas"][0]["children"].as_array().unwrap().clone();
    assert_eq!(children.len(), 1, "old child SAs are deleted: {v}");
    assert_ne!(children[0]["spi_out"], spi0);
    assert!(v["ike"]["rekeys"].as_u64().unwrap() >= 3, "{v}");
    // weftd killed: the configuration (key included) survives, the SAs come back, traffic flows.
    let mut w2 = p.w2;
    w2.kill9();
    w2.restart();
    wait_for_sa(&w2);
    p.left.ping(V4_RIGHT, 3);
}

/// Sends `payload` as a UDP datagram from `ns` to `dst`:`port`.
fn udp_send(ns: &Ns, dst: &str, port: u16, payload: &[u8]) {
    let hex: String = payload.iter().map(|b| format!("{b:02x}")).collect();
    ns.sh(&format!(
        "python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(bytes.fromhex(\"{hex}\"), (\"{dst}\", {port}))'"
    ));
}

#[test]
fn replayed_changed_and_cut_esp_is_dropped_and_counted() {
    if !prerequisites(&["tshark", "tcpdump", "python3"]) {
        return;
    }
    let o = format!("options:key=8 {PSK}");
    let p = pair("ipf", "vxlan", false, &o, &o);
    wait_for_sa(&p.w1);
    let cap = Capture::start(&p.u.h2, "ipfu2", p.tmp.path("u.pcap"));
    p.left.ping(V4_RIGHT, 2);
    cap.finish();
    // An ESP packet host 1 sent, as captured (the UDP payload: SPI on).
    let rows = cap.fields("esp && ip.src == 192.0.2.11", &["udp.payload"]);
    let hex = rows.first().expect("an ESP packet from host 1")[0].replace(':', "");
    let pkt: Vec<u8> = (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
    let before = p.w2.json("ipsec show")["esp_dropped"].clone();
    udp_send(&p.u.h1, "192.0.2.12", 4500, &pkt);
    let mut changed = pkt.clone();
    changed[30] ^= 0x01;
    // A fresh sequence number far ahead, so that the window does not reject it first.
    changed[4..8].copy_from_slice(&1000u32.to_be_bytes());
    udp_send(&p.u.h1, "192.0.2.12", 4500, &changed);
    udp_send(&p.u.h1, "192.0.2.12", 4500, &pkt[..6]);
    let mut unknown = pkt.clone();
    unknown[..4].copy_from_slice(&[1, 2, 3, 4]);
    udp_send(&p.u.h1, "192.0.2.12", 4500, &unknown);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = p.w2.json("ipsec show")["esp_dropped"].clone();
    let grew = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert_eq!(grew("replayed"), 1, "{after}");
    assert_eq!(grew("auth_failed"), 1, "{after}");
    assert_eq!(grew("truncated"), 1, "{after}");
    assert_eq!(grew("unknown_spi"), 1, "{after}");
    // The SA is unharmed.
    p.left.ping(V4_RIGHT, 2);
    // A clear-text VXLAN packet from the peer is dropped, not switched.
    let drops = p.w2.drops("sw1", "t1", "ipsec_cleartext");
    let frame = "08000000000008000102030405060a0b0c0d0e0f0800450000140000000040ff00000a0000010a000002";
    let frame: Vec<u8> =
        (0..frame.len()).step_by(2).map(|i| u8::from_str_radix(&frame[i..i + 2], 16).unwrap()).collect();
    udp_send(&p.u.h1, "192.0.2.12", 4789, &frame);
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(p.w2.drops("sw1", "t1", "ipsec_cleartext"), drops + 1);
}

#[test]
fn ike_sa_init_flood_gets_cookies_and_memory_stays_bounded() {
    if !prerequisites(&["python3"]) {
        return;
    }
    let o = format!("options:key=9 {PSK} options:ipsec_mode=tunnel");
    let p = pair("ipg", "vxlan", false, &o, &o);
    wait_for_sa(&p.w1);
    let pid = p.w2.pid();
    let rss = || sh(&format!("awk '/VmRSS/ {{print $2}}' /proc/{pid}/status")).trim().parse::<u64>().unwrap();
    let before = rss();
    // 20 000 IKE_SA_INIT requests with fresh SPIs from host 1's address, each with an x25519 KE and a nonce.
    let script = r#"
import os, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(20000):
    spi = os.urandom(8)
    sa_body = bytes([0,0,0,36, 1,1,0,3]) + bytes([3,0,0,12, 1,0,0,20, 0x80,14,1,0]) + bytes([3,0,0,8, 2,0,0,5]) + bytes([0,0,0,8, 4,0,0,31])
    sa = bytes([34,0]) + struct.pack('>H', 4 + len(sa_body)) + sa_body
    ke = bytes([40,0]) + struct.pack('>H', 8 + 32) + struct.pack('>HH', 31, 0) + os.urandom(32)
    nonce = bytes([0,0]) + struct.pack('>H', 4 + 32) + os.urandom(32)
    body = sa + ke + nonce
    hdr = spi + bytes(8) + bytes([33, 0x20, 34, 0x08]) + bytes(4) + struct.pack('>I', 28 + len(body))
    s.sendto(hdr + body, ('192.0.2.12', 500))
"#;
    std::fs::write(p.tmp.path("flood.py"), script).unwrap();
    p.u.h1.sh(&format!("python3 {}", p.tmp.path("flood.py").display()));
    std::thread::sleep(std::time::Duration::from_secs(1));
    let v = p.w2.json("ipsec show");
    assert!(v["ike"]["cookies_sent"].as_u64().unwrap() > 1000, "{v}");
    let grown = rss().saturating_sub(before);
    assert!(grown < 16 * 1024, "weftd grew by {grown} KiB under the flood");
    // The real SA still carries traffic.
    p.left.ping(V4_RIGHT, 2);
}

#[test]
fn behind_a_nat_esp_goes_in_udp_to_the_mapped_port() {
    if !prerequisites(&["nft", "tshark", "tcpdump"]) {
        return;
    }
    // h1 (10.77.0.2, private) → router n (masquerades to 192.0.2.41, ports remapped) → h2 (192.0.2.42). h2 knows h1 only as
    // 192.0.2.41; h1 asks for raw ESP, but the NAT is found and ESP goes in UDP.
    let tmp = TempDir::new("iph");
    let h1 = Ns::new("iphh1");
    let n = Ns::new("iphn");
    let h2 = Ns::new("iphh2");
    veth(&h1, "iphu1", Some("10.77.0.2/24"), &n, "iphn1", Some("10.77.0.1/24"));
    veth(&n, "iphn2", Some("192.0.2.41/24"), &h2, "iphu2", Some("192.0.2.42/24"));
    h1.sh("ip route add default via 10.77.0.1");
    n.sh("sysctl -qw net.ipv4.ip_forward=1");
    n.sh("nft add table ip nat && nft add chain ip nat post \"{ type nat hook postrouting priority 100 ; }\" && nft add rule ip nat post oifname iphn2 masquerade fully-random");
    let w1 = Weftd::start(&h1, &tmp.path("h1"));
    let w2 = Weftd::start(&h2, &tmp.path("h2"));
    let l = endpoint_veth("iphl", &h1, "iphp1", V4_LEFT, V6_LEFT);
    let r = endpoint_veth("iphr", &h2, "iphp2", V4_RIGHT, V6_RIGHT);
    for e in [&l, &r] {
        e.sh("ip link set eth0 mtu 1360");
    }
    w1.weft("add-br sw1");
    w1.weft("add-port sw1 iphp1");
    w1.weft(&format!("add-port sw1 t1 -- set interface t1 type=vxlan options:remote_ip=192.0.2.42 options:key=3 {PSK} options:ipsec_encap=esp"));
    w2.weft("add-br sw1");
    w2.weft("add-port sw1 iphp2");
    w2.weft(&format!("add-port sw1 t1 -- set interface t1 type=vxlan options:remote_ip=192.0.2.41 options:key=3 {PSK} options:ipsec_encap=esp"));
    let cap = Capture::start(&h2, "iphu2", tmp.path("u.pcap"));
    let v = wait_for_sa(&w1);
    assert_eq!(v["sas"][0]["udp_encap"], true, "{v}");
    l.ping(V4_RIGHT, 3);
    r.ping(V4_LEFT, 3);
    cap.finish();
    // At h2: ESP in UDP from the NAT's address and a port other than 4500 (the NAT's mapping), and back.
    let from_nat = cap.fields("esp && ip.src == 192.0.2.41", &["udp.srcport"]);
    assert!(from_nat.len() >= 6, "{from_nat:?}");
    assert!(from_nat.iter().all(|f| f[0] != "4500" && f[0] == from_nat[0][0]), "{from_nat:?}");
    let to_nat = cap.fields("esp && ip.dst == 192.0.2.41", &["udp.dstport"]);
    assert!(to_nat.len() >= 6 && to_nat.iter().all(|f| f[0] == from_nat[0][0]), "{to_nat:?}");
    assert!(cap.fields("vxlan", &["frame.number"]).is_empty());
}
