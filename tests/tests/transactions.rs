//! Commands joined by `--`, as libvirt, os-vif and operators' scripts send them to ovs-vsctl: one transaction,
//! validated whole, applied whole or not at all; `external_ids` kept on bridges, ports and interfaces.

use weft_interop::*;

const PLUG: &str = "-- --if-exists del-port vnet0 -- add-port br0 vnet0 -- set Interface vnet0 type=tap \
                    external-ids:iface-id=4f9b0c2e external-ids:attached-mac=52:54:00:12:34:56 \
                    external-ids:vm-uuid=8c7d6e5f";

#[test]
fn chains_are_transactions_and_external_ids_are_kept() {
    let p = "tx";
    if !prerequisites(&["ip"]) {
        return;
    }
    let tmp = TempDir::new(p);
    let h = Ns::new(&format!("{p}h"));
    let mut w = Weftd::start(&h, &tmp.path("w"));
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
