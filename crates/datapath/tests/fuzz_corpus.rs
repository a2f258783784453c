//! Replays the offload fuzz corpus (with the inputs that once crashed it): nothing may panic.
fn corpus(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

#[test]
fn offload_corpus() {
    assert!(weft_wire::fuzz::replay_corpus(&corpus("offload"), weft_datapath::fuzz::offload) > 0, "empty corpus");
}
