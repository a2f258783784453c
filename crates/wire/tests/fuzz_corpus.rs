//! Replays the packet and pcap fuzz corpora, every file and every truncation of it: no parser may panic.
fn corpus(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

#[test]
fn packet_corpus() {
    assert!(weft_wire::fuzz::replay_corpus(&corpus("packet"), weft_wire::fuzz::parse_packet) > 0, "empty corpus");
}

#[test]
fn pcap_corpus() {
    assert!(weft_wire::fuzz::replay_corpus(&corpus("pcap"), weft_wire::fuzz::parse_pcap) > 0, "empty corpus");
}
