//! Replays the `ike` fuzz corpus (and every truncation of each input) through the IKE and ESP readers.

/// The corpus replays measure what each input makes the target hold.
#[global_allocator]
static ALLOC: weft_sys::alloc_probe::CountingAlloc = weft_sys::alloc_probe::CountingAlloc;

fn peak(f: &mut dyn FnMut()) -> usize {
    weft_sys::alloc_probe::peak_during(f).1
}

#[test]
fn ike_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/ike");
    assert!(weft_wire::fuzz::replay_corpus(&dir, weft_ipsec::fuzz::ike_input, peak) > 0, "empty corpus");
}
