//! The MAC table under a flood: a tenant sending frames from ever new source addresses into a full table
//! (65 536 entries) neither stalls the switch nor pushes out the addresses it has.

use weft_interop::*;

/// Sends `count` Ethernet frames from `first`.. consecutive source MACs to the sender's own MAC (so weft
/// drops them after learning: nothing is flooded), from `eth0` of the namespace it runs in.
const FLOOD: &str = r#"
import socket, struct, sys
first, count = int(sys.argv[1]), int(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(('eth0', 0))
me = open('/sys/class/net/eth0/address').read().strip()
dst = bytes.fromhex(me.replace(':', ''))
payload = bytes(46)
for i in range(first, first + count):
    src = b'\x02\x5e' + struct.pack('>I', i)
    s.send(dst + src + b'\x88\xb5' + payload)
"#;

#[test]
fn a_mac_flood_into_a_full_table_loses_no_ping() {
    let p = "mf";
    let Some(OneHost { tmp, h, w }) = one_host(p, &["ip", "ping", "python3"]) else { return };
    w.weft("add-br sw1");
    w.weft("set bridge sw1 other_config:mac-table-size=65536");
    let left = endpoint_veth(&format!("{p}l"), &h, &format!("{p}p1"), V4_LEFT, V6_LEFT);
    let _right = endpoint_veth(&format!("{p}r"), &h, &format!("{p}p2"), V4_RIGHT, V6_RIGHT);
    let flooder = Ns::new(&format!("{p}f"));
    veth(&flooder, "eth0", None, &h, &format!("{p}p3"), None);
    for port in ["p1", "p2", "p3"] {
        w.weft(&format!("add-port sw1 {p}{port}"));
    }
    left.ping(V4_RIGHT, 2);
    let script = tmp.path("flood.py");
    std::fs::write(&script, FLOOD).unwrap();
    // Fill the table (again if the kernel dropped some of a burst on the way).
    wait_for("the table is full", 60, || {
        flooder.sh(&format!("python3 {} 0 70000", script.display()));
        std::thread::sleep(std::time::Duration::from_millis(300));
        w.json("fdb stats sw1")["entries"].as_u64() == Some(65536)
    });
    // Keep flooding new sources while pinging across the same bridge.
    let mut flood = flooder.spawn(&format!("exec python3 {} 100000 5000000", script.display()));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let out = left.sh(&format!("ping -c 100 -i 0.01 -W 1 {V4_RIGHT} | tail -2"));
    let still_flooding = flood.try_wait().ok().flatten().is_none();
    let _ = flood.kill();
    let _ = flood.wait();
    assert!(still_flooding, "the flood ended before the pings: the test proves nothing");
    assert!(out.contains(" 0% packet loss"), "pings lost during the MAC flood:\n{out}");
    let stats = w.json("fdb stats sw1");
    assert_eq!(stats["entries"].as_u64(), Some(65536), "{stats}");
    assert!(stats["learn_misses"].as_u64().unwrap_or(0) >= 100_000, "the flood was refused and counted: {stats}");
    // The endpoints' own addresses were learned before the flood and are still there.
    let fdb = w.weft("fdb show sw1");
    assert!(fdb.contains(&mac_of(&left, "eth0")), "the flood pushed out a live address");
}
