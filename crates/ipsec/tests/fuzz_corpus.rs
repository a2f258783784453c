//! Replays the `ike` fuzz corpus (and every truncation of each input) through the IKE and ESP readers.

#[test]
fn ike_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ike");
    assert!(weft_wire::fuzz::replay_corpus(&dir, weft_ipsec::fuzz::ike_input) > 0, "empty corpus");
}
