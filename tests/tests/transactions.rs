//! Commands joined by `--`, as libvirt, os-vif and operators' scripts send them to ovs-vsctl: one transaction,
//! validated whole, applied whole or not at all; `external_ids` kept on bridges, ports and interfaces.

use weft_interop::*;

const PLUG: &str = "-- --if-exists del-port vnet0 -- add-port br0 vnet0 -- set Interface vnet0 type=tap \
                    external-ids:iface-id=4f9b0c2e external-ids:attached-mac=52:54:00:12:34:56 \
                    external-ids:vm-uuid=8c7d6e5f";

#[test]
fn chains_are_transactions_and_external_ids_are_kept() {
    let p = "tx";
    let Some(OneHost { tmp, h, mut w }) = one_host(p, &["ip"]) else { return };
    w.weft("add-br br0");
    // libvirt's plug line, twice (a VM restarted): both succeed and leave one TAP with its ids.
    for _ in 0..2 {
        w.weft(PLUG);
        assert!(h.run("ip link show vnet0").status.success(), "no TAP vnet0");
    }
    let show = w.json("show");
    let ports = show["bridges"][0]["ports"].as_array().unwrap();
    let vnet0 = ports.iter().find(|x| x["name"] == "vnet0").unwrap();
    assert_eq!(vnet0["type"], "tap");
    assert_eq!(vnet0["external_ids"]["iface-id"], "4f9b0c2e");
    assert_eq!(vnet0["external_ids"]["attached-mac"], "52:54:00:12:34:56");
    // Port and Bridge rows too (table names in any case, both spellings of the column).
    w.weft("set Port vnet0 external_ids:neutron-port=p-1 -- set Bridge br0 external-ids:owner=nova");
    let show = w.json("show");
    assert_eq!(show["bridges"][0]["external_ids"]["owner"], "nova");
    let vnet0 = show["bridges"][0]["ports"].as_array().unwrap().iter().find(|x| x["name"] == "vnet0").unwrap().clone();
    assert_eq!(vnet0["port_external_ids"]["neutron-port"], "p-1");
    assert!(w.weft("show").contains("iface-id=\"4f9b0c2e\""));
    // A chain with one bad command changes nothing: the good port is not added either.
    let db_before = std::fs::read_to_string(tmp.path("w").join("conf.db")).unwrap();
    let (ok, out, err) = w.try_weft(
        "add-port br0 good -- set interface good type=tap -- add-port br0 bad -- set interface bad type=vxlan \
         options:remote_ip=192.0.2.9 options:key=99999999",
    );
    assert!(!ok && err.contains("99999999"), "{out}{err}");
    assert!(!h.run("ip link show good").status.success(), "the good port's TAP was made");
    assert!(!w.weft("list-ports br0").contains("good"));
    assert_eq!(std::fs::read_to_string(tmp.path("w").join("conf.db")).unwrap(), db_before, "the db moved");
    // Nothing to do is an error, never a silent success.
    let (ok, _, err) = w.try_weft("--");
    assert!(!ok, "{err}");
    // Removing an id: an empty value.
    w.weft("set Interface vnet0 external-ids:vm-uuid=");
    assert!(w.json("show")["bridges"][0]["ports"][1]["external_ids"].get("vm-uuid").is_none());
    // All of it survives a crash.
    w.kill9();
    w.restart();
    let show = w.json("show");
    assert_eq!(show["bridges"][0]["external_ids"]["owner"], "nova");
    assert_eq!(show["bridges"][0]["ports"][1]["external_ids"]["iface-id"], "4f9b0c2e");
}

/// The smaller things a new user trips over: seed 003's `type=ipsec_gre` line, options that can be removed
/// again, a clear message for `type=internal` on an existing veth, and no Rust debug text in messages.
#[test]
fn ovs_vsctl_lines_and_clear_messages() {
    let p = "tv";
    let Some(OneHost { tmp: _tmp, h, w }) = one_host(p, &["ip"]) else { return };
    w.weft("add-br sw1");
    // Seed 003, as written (capital I, Open vSwitch 2.x's type name).
    w.weft("add-port sw1 tun0 -- set Interface tun0 type=ipsec_gre options:remote_ip=192.0.2.56 options:psk=test1234567890ab");
    let show = w.json("show");
    let tun0 = show["bridges"][0]["ports"].as_array().unwrap().iter().find(|x| x["name"] == "tun0").unwrap().clone();
    assert_eq!(tun0["type"], "ipsec_gre");
    let (ok, _, err) =
        w.try_weft("add-port sw1 tun1 -- set Interface tun1 type=ipsec_gre options:remote_ip=192.0.2.57");
    assert!(!ok && err.contains("needs options:psk"), "{err}");
    // Options set once can be removed again; a tunnel keeps its remote_ip.
    w.weft("add-port sw1 vx1 -- set interface vx1 type=vxlan options:remote_ip=192.0.2.9 options:tos=inherit options:ttl=9");
    w.weft("remove Interface vx1 options tos ttl");
    let opts = w.json("show")["bridges"][0]["ports"].as_array().unwrap().iter().find(|x| x["name"] == "vx1").unwrap()
        ["options"]
        .clone();
    assert!(opts.get("tos").is_none() && opts.get("ttl").is_none() && opts["remote_ip"] == "192.0.2.9", "{opts}");
    let (ok, _, err) = w.try_weft("clear Interface vx1 options");
    assert!(!ok && err.contains("remote_ip"), "{err}");
    // type=internal on an existing veth: said plainly.
    h.sh(&format!("ip link add {p}v0 type veth peer name {p}v1"));
    w.weft(&format!("add-port sw1 {p}v0"));
    let (ok, _, err) = w.try_weft(&format!("set interface {p}v0 type=internal"));
    assert!(!ok && err.contains("is not a TAP") && !err.contains("os error"), "{err}");
    // No Rust debug text.
    let (ok, _, err) = w.try_weft("show --format xml");
    assert!(!ok && err.contains("json or text") && !err.contains("Some("), "{err}");
}
