use super::monitor::Monitor;
use super::txn::{run, Context, Outcome};
use super::vswitch::{project, to_config, Status};
use super::*;
use crate::config::{Config, IfaceType, Valid};
use serde_json::json;

fn status() -> Status {
    Status { version: "weft test".into(), salt: 7, ..Default::default() }
}

/// Runs `ops` on the view of `config`: the new configuration (validated) or the error.
fn transact(config: &Config, ops: Value) -> Result<(Config, Value), DbError> {
    let db = project(config, &status());
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut new_uuid = || Uuid(0xabc0_0000 + N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) as u128);
    let mut cx = Context { new_uuid: &mut new_uuid, owns_lock: &|_| false, expired: true };
    match run(schema::vswitch(), &db, ops.as_array().unwrap(), &mut cx) {
        Outcome::Done { results, db: Some(db), .. } => {
            let c = to_config(&db, config, 7)?;
            Valid::new(c.clone()).map_err(|e| DbError::constraint(e.to_string()))?;
            Ok((c, Value::Array(results)))
        }
        Outcome::Done { results, db: None, .. } => Ok((config.clone(), Value::Array(results))),
        Outcome::Failed { error, .. } => Err(error),
        Outcome::Blocked => panic!("blocked"),
    }
}

fn add_br(name: &str) -> Value {
    json!([
        {"op": "insert", "table": "Interface", "row": {"name": name, "type": "internal"}, "uuid-name": "i"},
        {"op": "insert", "table": "Port", "row": {"name": name, "interfaces": ["named-uuid", "i"]}, "uuid-name": "p"},
        {"op": "insert", "table": "Bridge", "row": {"name": name, "ports": ["named-uuid", "p"]}, "uuid-name": "b"},
        {"op": "mutate", "table": "Open_vSwitch", "where": [],
         "mutations": [["bridges", "insert", ["set", [["named-uuid", "b"]]]], ["next_cfg", "+=", 1]]},
        {"op": "select", "table": "Open_vSwitch", "where": [], "columns": ["next_cfg"]}
    ])
}

fn add_port(bridge: &str, port: &str, ty: &str, options: Value) -> Value {
    json!([
        {"op": "insert", "table": "Interface", "row": {"name": port, "type": ty, "options": options}, "uuid-name": "i"},
        {"op": "insert", "table": "Port", "row": {"name": port, "interfaces": ["named-uuid", "i"]}, "uuid-name": "p"},
        {"op": "mutate", "table": "Bridge", "where": [["name", "==", bridge]],
         "mutations": [["ports", "insert", ["set", [["named-uuid", "p"]]]]]}
    ])
}

#[test]
fn the_schema_parses_and_every_reference_resolves() {
    let s = schema::vswitch();
    assert_eq!(s.tables.len(), 19);
    let j = s.to_json();
    assert_eq!(j["tables"]["Port"]["columns"]["tag"]["type"]["key"]["maxInteger"], json!(4095));
    assert_eq!(j["tables"]["Bridge"]["columns"]["ports"]["type"]["max"], json!("unlimited"));
    assert_eq!(j["tables"]["Open_vSwitch"]["maxRows"], json!(1));
    assert_eq!(j["tables"]["Interface"]["columns"]["name"]["mutable"], json!(false));
}

#[test]
fn uuids_print_and_parse_as_ovsdb_does() {
    let u = Uuid::derived(1, "Bridge", "br0");
    let s = u.to_string();
    assert_eq!(s.len(), 36);
    assert_eq!(&s[14..15], "4");
    assert_eq!(Uuid::parse(&s), Some(u));
    assert_eq!(Uuid::parse("not-a-uuid"), None);
    assert_ne!(Uuid::derived(1, "Bridge", "br0"), Uuid::derived(2, "Bridge", "br0"));
}

#[test]
fn add_br_then_add_port_as_ovs_vsctl_does_makes_the_bridge_and_its_tunnel() {
    let (c, results) = transact(&Config::default(), add_br("sw1")).unwrap();
    assert_eq!(results[4]["rows"][0]["next_cfg"], json!(1));
    assert_eq!(c.bridges.len(), 1);
    assert_eq!(c.bridges[0].name, "sw1");
    assert_eq!(c.ovsdb.next_cfg, 1);
    let (c, _) =
        transact(&c, add_port("sw1", "tun0", "vxlan", json!(["map", [["remote_ip", "192.0.2.2"], ["key", "123"]]])))
            .unwrap();
    let p = &c.bridges[0].ports[0];
    assert_eq!((p.name.as_str(), p.iface_type, p.ofport), ("tun0", IfaceType::Vxlan, 1));
    assert_eq!(p.options["key"], "123");
    // The view shows what was inserted, with the UUIDs the transaction gave.
    let db = project(&c, &status());
    let iface = db.table("Interface").unwrap().iter().find(|(_, r)| r["name"] == Datum::string("tun0")).unwrap();
    assert_eq!(iface.1["ofport"], Datum::int(1));
    assert_eq!(iface.1["type"], Datum::string("vxlan"));
    assert!(iface.0 .0 >= 0xabc0_0000 && iface.0 .0 < 0xabc1_0000, "inserted UUID kept: {}", iface.0);
    let bridge = db.table("Bridge").unwrap().values().next().unwrap();
    assert_eq!(bridge["ports"].len(), 2, "the bridge's own port and tun0");
}

#[test]
fn what_weft_cannot_do_fails_whole_with_the_reason() {
    let (c, _) = transact(&Config::default(), add_br("sw1")).unwrap();
    let e = transact(&c, add_port("sw1", "t", "stt", json!(["map", []]))).unwrap_err();
    assert!(e.details.contains("stt"), "{e}");
    let e =
        transact(&c, add_port("sw1", "t", "vxlan", json!(["map", [["remote_ip", "192.0.2.2"], ["colour", "blue"]]])))
            .unwrap_err();
    assert!(e.details.contains("colour"), "{e}");
    let stp =
        json!([{"op": "update", "table": "Bridge", "where": [["name", "==", "sw1"]], "row": {"stp_enable": true}}]);
    let e = transact(&c, stp).unwrap_err();
    assert!(e.details.contains("spanning tree"), "{e}");
    let ro = json!([{"op": "update", "table": "Interface", "where": [], "row": {"ofport": 7}}]);
    assert!(transact(&c, ro).unwrap_err().details.contains("weftd fills"));
    // A strong reference to nothing, a port without an interface, two bridges of one name.
    let dangling = json!([{"op": "update", "table": "Bridge", "where": [], "row": {"ports": ["uuid", "00000000-0000-4000-8000-000000000001"]}}]);
    assert_eq!(transact(&c, dangling).unwrap_err().tag, "referential integrity violation");
    let empty_port = json!([
        {"op": "insert", "table": "Port", "row": {"name": "p"}, "uuid-name": "p"},
        {"op": "mutate", "table": "Bridge", "where": [], "mutations": [["ports", "insert", ["named-uuid", "p"]]]}
    ]);
    assert_eq!(transact(&c, empty_port).unwrap_err().tag, "referential integrity violation");
    assert_eq!(transact(&c, add_br("sw1")).unwrap_err().tag, "constraint violation");
}

#[test]
fn stored_columns_are_kept_and_returned() {
    let (c, _) = transact(&Config::default(), add_br("sw1")).unwrap();
    let ops = json!([
        {"op": "update", "table": "Bridge", "where": [["name", "==", "sw1"]],
         "row": {"datapath_type": "netdev", "other_config": ["map", [["hwaddr", "02:00:00:00:00:01"]]]}},
        {"op": "mutate", "table": "Open_vSwitch", "where": [], "mutations": [["external_ids", "insert", ["map", [["system-id", "h1"]]]]]}
    ]);
    let (c, _) = transact(&c, ops).unwrap();
    let round = serde_json::from_str::<Config>(&serde_json::to_string(&c).unwrap()).unwrap();
    let db = project(&round, &status());
    let b = db.table("Bridge").unwrap().values().next().unwrap();
    assert_eq!(b["datapath_type"], Datum::string("netdev"));
    assert_eq!(b["other_config"].to_string_map()["hwaddr"], "02:00:00:00:00:01");
    let root = db.table("Open_vSwitch").unwrap().values().next().unwrap();
    assert_eq!(root["external_ids"].to_string_map()["system-id"], "h1");
}

#[test]
fn waits_selects_and_mutations_follow_rfc_7047() {
    let (c, _) = transact(&Config::default(), add_br("sw1")).unwrap();
    let ok = json!([{"op": "wait", "timeout": 0, "table": "Bridge", "where": [["name", "==", "sw1"]],
                     "columns": ["name"], "until": "==", "rows": [{"name": "sw1"}]}]);
    assert!(transact(&c, ok).is_ok());
    let bad = json!([{"op": "wait", "timeout": 0, "table": "Bridge", "where": [], "columns": ["name"], "until": "==",
                      "rows": [{"name": "other"}]}]);
    assert_eq!(transact(&c, bad).unwrap_err().tag, "timed out");
    let div = json!([{"op": "mutate", "table": "Open_vSwitch", "where": [], "mutations": [["next_cfg", "/=", 0]]}]);
    assert_eq!(transact(&c, div).unwrap_err().tag, "domain error");
    let sel = json!([{"op": "select", "table": "Interface", "where": [["ofport", "==", 65534]], "columns": ["name"]}]);
    let (_, r) = transact(&c, sel).unwrap();
    assert_eq!(r[0]["rows"], json!([{"name": "sw1"}]));
    assert_eq!(transact(&c, json!([{"op": "abort"}])).unwrap_err().tag, "aborted");
    assert_eq!(transact(&c, json!([{"op": "select", "table": "Nope", "where": []}])).unwrap_err().tag, "unknown table");
    let col = json!([{"op": "select", "table": "Bridge", "where": [["nope", "==", 1]]}]);
    assert_eq!(transact(&c, col).unwrap_err().tag, "unknown column");
}

#[test]
fn deleting_a_port_collects_its_interface_and_the_monitor_says_so() {
    let (c0, _) = transact(&Config::default(), add_br("sw1")).unwrap();
    let (c1, _) = transact(&c0, add_port("sw1", "p1", "tap", json!(["map", []]))).unwrap();
    let ops = json!([
        {"op": "mutate", "table": "Bridge", "where": [["name", "==", "sw1"]],
         "mutations": [["ports", "delete", ["set", [project(&c1, &status()).table("Port").unwrap().iter()
            .find(|(_, r)| r["name"] == Datum::string("p1")).map(|(u, _)| u.to_json()).unwrap()]]]]}
    ]);
    let (c2, _) = transact(&c1, ops).unwrap();
    assert!(c2.bridges[0].ports.is_empty());
    let (old, new) = (project(&c1, &status()), project(&c2, &status()));
    let s = schema::vswitch();
    let req = json!({"Interface": {"columns": ["name", "ofport"]}, "Bridge": [{"columns": ["ports"]}]});
    for version in [1u8, 2] {
        let m = Monitor::parse(s, version, json!(null), &req).unwrap();
        let init = m.initial(s, &old);
        assert_eq!(init["Interface"].as_object().unwrap().len(), 2);
        let up = m.update(s, &old, &new).unwrap();
        let gone = up["Interface"].as_object().unwrap();
        assert_eq!(gone.len(), 1);
        let (_, change) = gone.iter().next().unwrap();
        if version == 1 {
            assert_eq!(change["old"]["name"], json!("p1"));
        } else {
            assert_eq!(change, &json!({"delete": null}));
            let b = up["Bridge"].as_object().unwrap().values().next().unwrap();
            assert!(b["modify"]["ports"].is_array(), "the port set's difference: {b}");
        }
    }
    // A condition narrows what a monitor_cond sees.
    let m = Monitor::parse(s, 2, json!(1), &json!({"Interface": {"where": [["name", "==", "p1"]]}})).unwrap();
    assert_eq!(m.initial(s, &old)["Interface"].as_object().unwrap().len(), 1);
}

#[test]
fn docs_ovsdb_md_lists_what_weft_does_with_every_column() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/ovsdb.md")).unwrap_or_default();
    let table = vswitch::coverage_markdown();
    assert!(doc.contains(&table), "docs/ovsdb.md must hold this coverage table:\n{table}");
}
