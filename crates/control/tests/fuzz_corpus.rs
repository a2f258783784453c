//! Replays the `bgp` fuzz corpus (and every truncation of each input) through the BGP session and the etcd
//! readers.

/// The corpus replays measure what each input makes the target hold.
#[global_allocator]
static ALLOC: weft_sys::alloc_probe::CountingAlloc = weft_sys::alloc_probe::CountingAlloc;

fn peak(f: &mut dyn FnMut()) -> usize {
    weft_sys::alloc_probe::peak_during(f).1
}

#[test]
fn bgp_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/bgp");
    let n = weft_wire::fuzz::replay_corpus(
        &dir,
        |d| {
            weft_control::bgp::fuzz_input(d);
            weft_control::etcd::fuzz_input(d);
        },
        peak,
    );
    assert!(n > 0, "empty corpus");
}
