//! What a stranger on the underlay, or a reader of logs and files, can do to weft (docs/threat-model.md):
//! crafted IKE datagrams do not grow weftd's memory, the pre-shared key appears in no log line, reply or
//! readable file (and can come from a file), the database and the directories weftd makes are private, and
//! an OpenFlow listener without an address listens on loopback only.

use weft_interop::*;

const SECRET: &str = "swordfish-7f3a9c21-do-not-log";

/// The most memory weftd has held (VmHWM) and holds now (VmRSS), in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmHWM:"), field("VmRSS:"))
}

/// Sends UDP datagrams of IKE_SA_INIT messages stuffed with Delete payloads of SPI size 0 and count 65535
/// (the memory bomb: each 8-byte payload used to build 65 535 vectors) from `ns` to `to`:500.
const IKE_BOMB: &str = r#"
import socket, struct, sys
to, n, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
payload = bytes([3, 0, 0xff, 0xff])
body = b''
for i in range(n):
    nxt = 42 if i + 1 < n else 0
    body += bytes([nxt, 0]) + struct.pack('>H', 4 + len(payload)) + payload
msg = struct.pack('>QQBBBBII', 7, 0, 42, 0x20, 34, 0x08, 0, 28 + len(body)) + body
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(('0.0.0.0', 500))
for _ in range(count):
    s.sendto(msg, (to, 500))
print(len(msg))
"#;

#[test]
fn crafted_ike_datagrams_leave_weftd_small() {
    let p = "sk";
    if !prerequisites(&["ip", "python3"]) {
        return;
    }
    let tmp = TempDir::new(p);
    let u = underlay(p);
    let w = Weftd::start(&u.h1, &tmp.path("w"));
    w.weft("add-br sw1");
    // A protected tunnel to 192.0.2.12: port 500 is open and that address is a known peer.
    w.weft(&format!(
        "add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.12 options:key=5 options:psk={SECRET}"
    ));
    let script = tmp.path("bomb.py");
    std::fs::write(&script, IKE_BOMB).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (peak_before, _) = memory_kib(w.pid());
    assert!(peak_before > 0, "cannot read weftd's memory");
    // 1 388 bytes (170 payloads) and 60 KiB (7 500 payloads, IP fragments reassembled by the kernel), from
    // the configured peer's address, twenty times each.
    for (n, bytes) in [(170, "1388"), (7500, "60028")] {
        let out = u.h2.sh(&format!("python3 {} 192.0.2.11 {n} 20", script.display()));
        assert_eq!(out.trim(), bytes);
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (peak_after, rss) = memory_kib(w.pid());
    assert!(
        peak_after <= peak_before + 8 * 1024,
        "weftd's peak memory grew from {peak_before} KiB to {peak_after} KiB (now {rss} KiB)"
    );
    // Still serving, and the datagrams were counted as malformed.
    let v = w.json("ipsec show");
    assert!(v["ike"]["malformed"].as_u64().unwrap_or(0) >= 20, "{v}");
}

#[test]
fn secrets_stay_out_of_logs_replies_and_readable_files() {
    let p = "sl";
    if !prerequisites(&["ip", "ping"]) {
        return;
    }
    let tmp = TempDir::new(p);
    let u = underlay(p);
    // Host 1 logs at debug level into a database directory weftd creates itself.
    let state = tmp.path("w1").join("state");
    let db = state.join("conf.db");
    let w1 = Weftd::start_with(&u.h1, &tmp.path("w1"), &["--log-level", "debug", "--db", db.to_str().unwrap()]);
    w1.weft("add-br sw1");
    let left = endpoint_veth(&format!("{p}l"), &u.h1, &format!("{p}p1"), V4_LEFT, V6_LEFT);
    w1.weft(&format!("add-port sw1 {p}p1"));
    w1.weft(&format!(
        "add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.12 options:key=9 options:psk={SECRET}"
    ));
    // A refused change that carries the key: its error must not echo it.
    let (ok, _, err) = w1.try_weft(&format!(
        "add-port sw1 vx2 -- set interface vx2 type=vxlan options:remote_ip=239.1.1.1 options:dev={} options:psk={SECRET}",
        u.u1
    ));
    assert!(!ok && !err.contains(SECRET) && err.contains("(hidden)"), "{err}");
    // Host 2 reads the same key from a file (mode 0600), so it is on no command line.
    let key_file = tmp.path("psk");
    std::fs::write(&key_file, format!("{SECRET}\n")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let w2 = Weftd::start(&u.h2, &tmp.path("w2"));
    w2.weft("add-br sw1");
    w2.weft(&format!("add-port sw1 {p}tap -- set interface {p}tap type=tap"));
    let _right = endpoint_tap(&format!("{p}r"), &u.h2, &format!("{p}tap"), V4_RIGHT, V6_RIGHT);
    w2.weft(&format!(
        "add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.11 options:key=9 options:psk_file={}",
        key_file.display()
    ));
    // IKE comes up with the key from the file: traffic crosses.
    left.ping(V4_RIGHT, 3);
    let sas = w1.json("ipsec show");
    assert!(sas["sas"].as_array().is_some_and(|s| s.iter().any(|sa| sa["state"] == "ESTABLISHED")), "{sas}");
    // Nowhere in what weft says or logs, nor in host 2's database.
    for (what, text) in [
        ("weftd log (debug)", w1.log()),
        ("weftd log of the psk_file host", w2.log()),
        ("show", w1.weft("show")),
        ("show --format json", w1.weft("show --format json")),
        ("ipsec show", w1.weft("ipsec show")),
        ("host 2's database", std::fs::read_to_string(tmp.path("w2").join("conf.db")).unwrap()),
    ] {
        assert!(!text.contains(SECRET), "{what} holds the pre-shared key:\n{text}");
    }
    // The database that holds it is private, as is the directory weftd made for it and the socket.
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&db), 0o600, "the database");
    assert_eq!(mode(&state), 0o700, "the directory weftd created");
    assert_eq!(mode(&w1.socket()), 0o600, "the control socket");
    assert!(std::fs::read_to_string(&db).unwrap().contains(SECRET), "the key is kept (only there)");
    // A symbolic link at the database path is refused at start.
    let link = tmp.path("link.db");
    std::os::unix::fs::symlink(&db, &link).unwrap();
    let out = run(&format!(
        "ip netns exec {} {} --db {} --socket {}",
        u.h1.name,
        bin_dir().join("weftd").display(),
        link.display(),
        tmp.path("other.sock").display()
    ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("symbolic link"), "{err}");
}

#[test]
fn openflow_listener_without_an_address_is_loopback_only() {
    let p = "so";
    let Some(OneHost { tmp: _tmp, h, w }) = one_host(p, &["ip", "ss"]) else { return };
    w.weft("add-br sw1");
    w.weft("set-controller sw1 ptcp:6653");
    wait_for("the OpenFlow listener", 5, || h.sh("ss -ltnH").contains(":6653"));
    let listening = h.sh("ss -ltnH");
    assert!(listening.contains("127.0.0.1:6653"), "{listening}");
    assert!(!listening.contains("0.0.0.0:6653") && !listening.contains("*:6653"), "{listening}");
}
