//! Entry point for the fuzz target over user input that reaches weftd: control-socket requests and a db file.

use crate::{Config, Request};

/// Parses `data` as a request and as a configuration, applies the request to a small configuration and
/// validates the result, as weftd does for every command.
pub fn control_input(data: &[u8]) {
    if let Ok(cfg) = serde_json::from_slice::<Config>(data) {
        let _ = crate::config::Valid::new(cfg);
    }
    let Ok(req) = serde_json::from_slice::<Request>(data) else { return };
    let mut cfg = Config::default();
    let _ = cfg.add_bridge("br0", false);
    let r = cfg.apply(&req);
    if r.is_ok() {
        let _ = cfg.validate();
    }
}

/// OpenFlow messages as weftd's sessions decode them, and the same bytes as `ovs-ofctl` flow text.
pub fn openflow_input(data: &[u8]) {
    crate::ofp::fuzz_decode(data);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(f) = crate::flow::parse(text, &|p| p.parse().ok()) {
            // A parsed flow prints as text that parses again to the same match and actions.
            let again = crate::flow::parse(&f.to_string(), &|p| p.parse().ok()).expect("printed flow parses");
            // (The same matches, printed in OVS's order, which need not be the order they were written in.)
            let same = again.matches.len() == f.matches.len() && f.matches.iter().all(|m| again.matches.contains(m));
            assert!(same, "{:?} printed as {f} parses to {:?}", f.matches, again.matches);
            assert_eq!(again.actions, f.actions);
        }
    }
}

/// OVSDB JSON-RPC as weftd's server takes it: the stream split into messages, each parsed, and
/// transactions, monitors and condition changes run against the view of a small configuration; a
/// transaction that commits is turned into a configuration and validated, as weftd does.
pub fn ovsdb_input(data: &[u8]) {
    use crate::ovsdb::{monitor::Monitor, schema::vswitch, txn, vswitch as vs, Uuid};
    let mut base = Config::default();
    let _ = base.add_bridge("br0", false);
    let vx = [("type".to_string(), "vxlan".to_string()), ("options:remote_ip".to_string(), "192.0.2.2".to_string())];
    let _ = base.add_port("br0", "vx1", &vx, &[], false);
    let status = vs::Status { salt: 1, ..Default::default() };
    let db = vs::project(&base, &status);
    let mut rest = data;
    while let Ok(Some(n)) = crate::ovsdb::frame(rest) {
        let (msg, tail) = rest.split_at(n);
        rest = tail;
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(msg) else { continue };
        let params = v.get("params").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
        match v.get("method").and_then(serde_json::Value::as_str) {
            Some("transact") if !params.is_empty() => {
                let mut n = 0u128;
                let mut new_uuid = || {
                    n += 1;
                    Uuid(n)
                };
                let mut cx = txn::Context { new_uuid: &mut new_uuid, owns_lock: &|_| false, expired: true };
                if let txn::Outcome::Done { db: Some(new), .. } = txn::run(vswitch(), &db, &params[1..], &mut cx) {
                    if let Ok(cfg) = vs::to_config(&new, &base, 1) {
                        if let Ok(valid) = crate::config::Valid::new(cfg) {
                            // What commits shows again as a view.
                            let _ = vs::project(&valid, &status);
                        }
                    }
                }
            }
            Some(m @ ("monitor" | "monitor_cond" | "monitor_cond_since")) if params.len() >= 3 => {
                let version = if m == "monitor" { 1 } else { 2 };
                if let Ok(mut mon) = Monitor::parse(vswitch(), version, params[1].clone(), &params[2]) {
                    let _ = mon.initial(vswitch(), &db);
                    let _ = mon.update(vswitch(), &crate::ovsdb::Db::new(vswitch()), &db);
                    let _ = mon.change_conditions(vswitch(), &db, &params[2]);
                }
            }
            _ => {}
        }
    }
}
