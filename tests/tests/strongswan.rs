//! weft's IPsec against strongSwan's charon (IKEv2, userspace ESP through kernel-libipsec, which speaks
//! tunnel mode in UDP 4500), with a Linux kernel VXLAN device behind charon: weft as responder and as
//! initiator, x25519 and MODP-2048, rekeys of child and IKE SAs from both sides while a ping runs.

use std::process::{Child, Command, Stdio};
use weft_interop::*;

/// charon running in a namespace with its own /run, configuration and log; stopped by PID on drop.
struct Charon {
    ns: String,
    dir: std::path::PathBuf,
    child: Child,
}

impl Charon {
    fn start(ns: &Ns, dir: std::path::PathBuf, swanctl: &str) -> Charon {
        std::fs::create_dir_all(&dir).unwrap();
        let d = dir.display().to_string();
        let conf = format!(
            r#"charon {{
  load_modular = no
  load = kernel-libipsec kernel-netlink socket-default vici nonce random openssl aes gcm sha1 sha2 hmac pem pkcs1 x509 pubkey curve25519 gmp kdf
  filelog {{
    f {{
      path = {d}/charon.log
      time_format = %T
      append = no
      flush_line = yes
      default = 1
      ike = 2
      knl = 2
    }}
  }}
  syslog {{ daemon {{ default = -1 }} auth {{ default = -1 }} }}
  plugins {{
    kernel-libipsec {{ load = 2
                      allow_peer_ts = yes }}
    kernel-netlink {{ fwmark = 0x99 }}
    vici {{ socket = unix://{d}/charon.vici }}
  }}
}}
swanctl {{ socket = unix://{d}/charon.vici }}
"#
        );
        std::fs::write(dir.join("strongswan.conf"), conf).unwrap();
        std::fs::write(dir.join("swanctl.conf"), swanctl).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.name, "sh", "-c"])
            .arg(format!("mount -t tmpfs tmpfs /run && STRONGSWAN_CONF={d}/strongswan.conf exec /usr/lib/ipsec/charon"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cannot start charon");
        let c = Charon { ns: ns.name.clone(), dir, child };
        for _ in 0..50 {
            if c.dir.join("charon.vici").exists() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let out = c.swanctl(&format!("--load-all --file {d}/swanctl.conf"));
        assert!(out.contains("successfully loaded 1 connections"), "{out}");
        c
    }

    fn swanctl(&self, args: &str) -> String {
        let out = run(&format!(
            "ip netns exec {} env STRONGSWAN_CONF={}/strongswan.conf swanctl {args} 2>&1",
            self.ns,
            self.dir.display()
        ));
        // swanctl mentions every plugin it could not load; keep the rest.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.starts_with("plugin "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("charon.log")).unwrap_or_default()
    }
}

impl Drop for Charon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn swanctl_conf(local: &str, remote: &str, ike: &str, esp: &str, start: &str) -> String {
    format!(
        r#"connections {{
  weft {{
    version = 2
    local_addrs = {local}
    remote_addrs = {remote}
    proposals = {ike}
    local {{ auth = psk
            id = {local} }}
    remote {{ auth = psk
             id = {remote} }}
    children {{
      vx {{
        local_ts = dynamic
        remote_ts = dynamic
        esp_proposals = {esp}
        mode = tunnel
        start_action = {start}
      }}
    }}
  }}
}}
secrets {{
  ike-1 {{ id-1 = {local}
          id-2 = {remote}
          secret = "weft-test-psk" }}
}}
"#
    )
}

/// The strongSwan host (`s`, with charon and a kernel VXLAN device vx0 of VNI 42) and the weft host (`w`,
/// with bridge sw1: a tunnel port towards s and an endpoint namespace `e`).
struct Sites {
    s: Ns,
    w: Ns,
    e: Ns,
    weft: Weftd,
    tmp: TempDir,
}

fn sites(p: &str, s_addr: &str, w_addr: &str) -> Sites {
    let tmp = TempDir::new(p);
    let s = Ns::new(&format!("{p}s"));
    let w = Ns::new(&format!("{p}w"));
    veth(&s, &format!("{p}u1"), Some(&format!("{s_addr}/24")), &w, &format!("{p}u2"), Some(&format!("{w_addr}/24")));
    // The kernel VTEP: VXLAN to weft, steered into charon's TUN device by its routes in table 220.
    s.sh(&format!("ip link add vx0 type vxlan id 42 local {s_addr} remote {w_addr} dstport 4789 nolearning"));
    s.sh("ip link set vx0 mtu 1370 up && ip addr add 198.51.100.1/24 dev vx0");
    s.sh("ip rule add ipproto udp dport 4789 lookup 220");
    s.sh("sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.default.rp_filter=0");
    let e = endpoint_veth(&format!("{p}e"), &w, &format!("{p}p1"), "198.51.100.2", "2001:db8:1::2");
    e.sh("ip link set eth0 mtu 1370");
    let weft = Weftd::start(&w, &tmp.path("w"));
    weft.weft("add-br sw1");
    weft.weft(&format!("add-port sw1 {p}p1"));
    weft.weft(&format!(
        "add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip={s_addr} options:key=42 \
         options:psk=weft-test-psk options:ipsec_mode=tunnel"
    ));
    Sites { s, w, e, weft, tmp }
}

fn wait_established(w: &Weftd, c: &Charon) {
    for _ in 0..150 {
        let v = w.json("ipsec show");
        let up = v["sas"].as_array().is_some_and(|s| s.iter().any(|sa| sa["state"] == "ESTABLISHED"));
        if up && c.swanctl("--list-sas").contains("INSTALLED") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("no SA with strongSwan:\n{}\n{}\n{}", w.weft("ipsec show"), w.log(), c.log());
}

/// Packets a child SA of `swanctl --list-sas` counted in each direction: [(in, out)].
fn swan_packets(list: &str) -> Vec<(u64, u64)> {
    let count =
        |l: &str| l.split(',').find(|f| f.contains("packets")).and_then(|f| f.split_whitespace().next()?.parse().ok());
    let ins: Vec<u64> = list.lines().filter(|l| l.trim_start().starts_with("in ")).filter_map(count).collect();
    let outs: Vec<u64> = list.lines().filter(|l| l.trim_start().starts_with("out ")).filter_map(count).collect();
    ins.into_iter().zip(outs).collect()
}

#[test]
fn strongswan_initiates_modp2048_and_rekeys_lose_nothing() {
    if !prerequisites(&["/usr/lib/ipsec/charon", "swanctl"]) {
        return;
    }
    // weft has the higher address: it waits for charon, which starts at once.
    let st = sites("ssa", "192.0.2.21", "192.0.2.22");
    let conf =
        swanctl_conf("192.0.2.21", "192.0.2.22", "aes256gcm16-prfsha256-modp2048", "aes256gcm16-modp2048", "start");
    let c = Charon::start(&st.s, st.tmp.path("charon"), &conf);
    wait_established(&st.weft, &c);
    let v = st.weft.json("ipsec show");
    assert_eq!(v["sas"][0]["initiator"], false, "{v}");
    assert_eq!(v["sas"][0]["dh_group"], "MODP_2048");
    st.e.ping("198.51.100.1", 3);
    // Rekeys from both ends during a ping: child (PFS with MODP-2048) and IKE SA, each twice.
    let ping = st.e.spawn("ping -c 150 -i 0.05 -W 1 198.51.100.1");
    let steps: [&dyn Fn(); 4] = [
        &|| assert!(c.swanctl("--rekey --child vx").contains("rekey completed")),
        &|| assert!(c.swanctl("--rekey --ike weft").contains("rekey completed")),
        &|| {
            st.weft.weft("ipsec rekey");
        },
        &|| {
            st.weft.weft("ipsec rekey --ike");
        },
    ];
    for step in steps {
        std::thread::sleep(std::time::Duration::from_millis(1200));
        step();
    }
    let out = ping.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("150 received"), "lost packets across rekeys:\n{text}\n{}", c.log());
    let list = c.swanctl("--list-sas");
    assert!(list.contains("ESTABLISHED") && list.contains("INSTALLED, TUNNEL-in-UDP"), "{list}");
    let installed = &list[list.rfind("INSTALLED").unwrap()..];
    let counts = swan_packets(installed);
    assert!(counts.first().is_some_and(|(i, o)| *i > 0 && *o > 0), "{list}");
    let v = st.weft.json("ipsec show");
    assert!(v["ike"]["rekeys"].as_u64().unwrap() >= 4, "{v}");
    assert_eq!(v["esp_dropped"]["auth_failed"], 0, "{v}");
    assert!(!c.log().contains("ICV verification failed"), "{}", c.log());
    drop(st.w);
}

#[test]
fn weft_initiates_x25519_towards_strongswan() {
    if !prerequisites(&["/usr/lib/ipsec/charon", "swanctl", "tshark", "tcpdump"]) {
        return;
    }
    // weft has the lower address: it starts; charon only answers.
    let st = sites("ssb", "192.0.2.32", "192.0.2.31");
    let conf = swanctl_conf("192.0.2.32", "192.0.2.31", "aes128gcm16-prfsha256-x25519", "aes128gcm16", "none");
    let c = Charon::start(&st.s, st.tmp.path("charon"), &conf);
    // weft's UDP_SEGMENT trains are cut before they cross, so that tcpdump sees each datagram.
    st.w.sh("ethtool -K ssbu2 tx-udp-segmentation off >/dev/null");
    let cap = Capture::start(&st.s, "ssbu1", st.tmp.path("u.pcap"));
    wait_established(&st.weft, &c);
    let v = st.weft.json("ipsec show");
    assert_eq!(v["sas"][0]["initiator"], true, "{v}");
    assert_eq!(v["sas"][0]["dh_group"], "CURVE_25519");
    assert_eq!(v["sas"][0]["encryption"], "AES_GCM_16-128");
    st.e.ping("198.51.100.1", 5);
    cap.finish();
    let list = c.swanctl("--list-sas");
    assert!(list.contains("AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519"), "{list}");
    let counts = swan_packets(&list);
    assert!(counts.first().is_some_and(|(i, o)| *i >= 5 && *o >= 5), "{list}");
    // On the wire: only ESP in UDP 4500 and IKE; tshark decrypts it with weft's keys to the kernel's VXLAN.
    // (The kernel VTEP sends IPv6 neighbour discovery in clear text before charon has an SA: that is
    // strongSwan's side's policy. weft never sends any.)
    assert!(cap.fields("vxlan && ip.src == 192.0.2.31", &["frame.number"]).is_empty());
    let keys = st.weft.weft("ipsec show --keys");
    let opts: String = keys.lines().filter(|l| l.starts_with("uat:")).map(|l| format!(" -o '{l}'")).collect();
    let out = sh(&format!(
        "tshark -r {} -o esp.enable_encryption_decode:TRUE -o esp.enable_authentication_check:TRUE{opts} -Y esp -T fields -e esp.icv_good -e vxlan.vni -e ip.src",
        cap.file.display()
    ));
    let rows: Vec<&str> = out.lines().collect();
    assert!(rows.len() >= 10, "{out}");
    assert!(rows.iter().all(|r| r.starts_with("1\t42\t")), "{out}");
    drop(st.w);
}
