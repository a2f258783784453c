//! Replays the control-input fuzz corpus through request and configuration handling: nothing may panic.

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
fn control_corpus() {
    assert!(
        weft_wire::fuzz::replay_corpus(&corpus("control"), weft_api::fuzz::control_input, peak) > 0,
        "empty corpus"
    );
}

#[test]
fn openflow_corpus() {
    assert!(
        weft_wire::fuzz::replay_corpus(&corpus("openflow"), weft_api::fuzz::openflow_input, peak) > 0,
        "empty corpus"
    );
}

#[test]
fn ovsdb_corpus() {
    assert!(weft_wire::fuzz::replay_corpus(&corpus("ovsdb"), weft_api::fuzz::ovsdb_input, peak) > 0, "empty corpus");
}
