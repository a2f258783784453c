//! Replays the packet and pcap fuzz corpora, every file and every truncation of it: no parser may panic.

/// The corpus replays measure what each input makes the target hold.
#[global_allocator]
static ALLOC: weft_sys::alloc_probe::CountingAlloc = weft_sys::alloc_probe::CountingAlloc;

fn peak(f: &mut dyn FnMut()) -> usize {
    weft_sys::alloc_probe::peak_during(f).1
}
fn corpus(target: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target)
}

#[test]
fn packet_corpus() {
    assert!(weft_wire::fuzz::replay_corpus(&corpus("packet"), weft_wire::fuzz::parse_packet, peak) > 0, "empty corpus");
}

#[test]
fn pcap_corpus() {
    assert!(weft_wire::fuzz::replay_corpus(&corpus("pcap"), weft_wire::fuzz::parse_pcap, peak) > 0, "empty corpus");
}
