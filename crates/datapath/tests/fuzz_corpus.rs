//! Replays the offload fuzz corpus (with the inputs that once crashed it): nothing may panic.

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
fn offload_corpus() {
    assert!(weft_wire::fuzz::replay_corpus(&corpus("offload"), weft_datapath::fuzz::offload, peak) > 0, "empty corpus");
}

#[test]
fn conntrack_corpus() {
    assert!(
        weft_wire::fuzz::replay_corpus(&corpus("conntrack"), weft_datapath::fuzz::conntrack, peak) > 0,
        "empty corpus"
    );
}
