//! `weft capture`: frames at a port of a running bridge, inner or with outer headers, to a pcap file or as
//! decoded lines; checked with tshark and `weft decode`.

use std::io::Read;
use std::process::Child;
use std::time::{Duration, Instant};
use weft_interop::*;

/// Waits for a capture that stops by itself (`-c N`); returns its standard output.
fn finish(mut c: Child, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = c.try_wait().expect("wait") {
            let mut out = String::new();
            let mut err = String::new();
            c.stdout.take().map(|mut o| o.read_to_string(&mut out));
            c.stderr.take().map(|mut e| e.read_to_string(&mut err));
            assert!(status.success(), "{what} failed: {err}");
            return out;
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            panic!("{what} did not end after its packet count");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn capture_inner_outer_and_decoded() {
    let p = "cp";
    if !prerequisites(&["ip", "ping", "tshark"]) {
        return;
    }
    let pr = pair(p, "vxlan", false, "options:key=123", "options:key=123");
    let (w1, left, tmp) = (&pr.w1, &pr.left, &pr.tmp);
    let p1 = format!("{p}p1");
    left.ping(V4_RIGHT, 1);

    // Bad requests are refused before anything starts.
    let (ok, _, err) = w1.try_weft("capture sw1 nope");
    assert!(!ok && err.contains("no port named \"nope\""), "{err}");
    let (ok, _, err) = w1.try_weft(&format!("capture sw1 {p1} --outer"));
    assert!(!ok && err.contains("not a tunnel port"), "{err}");

    let inner = tmp.path("inner.pcap");
    let outer = tmp.path("outer.pcap");
    // The counts are reached by the pings (20 frames each way, besides any IPv6 housekeeping).
    let c_inner = w1.spawn_weft(&format!("capture sw1 t1 -w {} -c 12", inner.display()));
    let c_outer = w1.spawn_weft(&format!("capture sw1 t1 --outer -w {} -c 12", outer.display()));
    let c_lines = w1.spawn_weft(&format!("capture sw1 {p1} -c 12"));
    let c_json = w1.spawn_weft(&format!("capture sw1 {p1} -c 2 --format json"));
    std::thread::sleep(Duration::from_millis(500));
    left.sh(&format!("ping -c 10 -i 0.1 {V4_RIGHT}"));
    finish(c_inner, "inner capture");
    finish(c_outer, "outer capture");
    let lines = finish(c_lines, "decoded capture");
    let json = finish(c_json, "JSON capture");

    // Inner frames: Ethernet, ICMP both ways; tshark and weft decode agree.
    let t = sh(&format!("tshark -r {} -T fields -e frame.protocols -e icmp.type", inner.display()));
    assert_eq!(t.lines().count(), 12, "{t}");
    assert!(t.lines().all(|l| l.starts_with("eth:ethertype:ip")), "{t}");
    let kinds: Vec<&str> = t.lines().filter_map(|l| l.split('\t').nth(1)).collect();
    assert!(kinds.contains(&"8") && kinds.contains(&"0"), "requests and replies: {t}");
    assert_decode_matches_tshark(&inner, &[]);
    // Outer packets: raw IP, UDP to 4789, VXLAN VNI 123, from and to the underlay addresses.
    let t = sh(&format!(
        "tshark -r {} -T fields -E occurrence=f -e ip.src -e ip.dst -e udp.dstport -e vxlan.vni -e udp.srcport",
        outer.display()
    ));
    assert_eq!(t.lines().count(), 12, "{t}");
    for l in t.lines() {
        let f: Vec<&str> = l.split('\t').collect();
        assert!(f[0] == "192.0.2.11" || f[0] == "192.0.2.12", "{l}");
        assert_eq!((f[2], f[3]), ("4789", "123"), "{l}");
        assert_ne!(f[4], "0", "the source port is the sending socket's: {l}");
    }
    assert_decode_matches_tshark(&outer, &[]);
    // Decoded as it comes: one line per frame, both directions.
    assert_eq!(lines.lines().count(), 12, "{lines}");
    assert!(lines.contains("Echo (ping) request") && lines.contains("Echo (ping) reply"), "{lines}");
    let first: serde_json::Value = serde_json::from_str(json.lines().next().unwrap()).expect("JSON line");
    assert_eq!(first["layers"][0]["name"], "eth");

    // A client that goes away ends its capture; traffic is unaffected throughout.
    let mut c = w1.spawn_weft("capture sw1 t1");
    std::thread::sleep(Duration::from_millis(300));
    let _ = c.kill();
    let _ = c.wait();
    left.ping(V4_RIGHT, 2);
    let c2 = w1.spawn_weft("capture sw1 t1 -c 1 -w -");
    left.ping(V4_RIGHT, 1);
    let mut c2 = c2;
    let mut pcap = Vec::new();
    c2.stdout.take().unwrap().read_to_end(&mut pcap).unwrap();
    assert!(c2.wait().unwrap().success());
    assert_eq!(&pcap[..4], &[0xd4, 0xc3, 0xb2, 0xa1], "-w - writes pcap to standard output");
}
