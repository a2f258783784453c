//! Replays the control-input fuzz corpus through request and configuration handling: nothing may panic.
fn corpus(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

#[test]
fn control_corpus() {
    assert!(weft_wire::fuzz::replay_corpus(&corpus("control"), weft_api::fuzz::control_input) > 0, "empty corpus");
}

#[test]
fn openflow_corpus() {
    assert!(weft_wire::fuzz::replay_corpus(&corpus("openflow"), weft_api::fuzz::openflow_input) > 0, "empty corpus");
}
