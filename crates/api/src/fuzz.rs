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
