//! Replays the fuzz corpora (fuzz/corpus/control), every file and every truncation of
//! it, through request and configuration handling: none may panic.

fn replay(target: &str, f: fn(&[u8])) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        for n in 0..=data.len() {
            f(&data[..n]);
        }
        files += 1;
    }
    assert!(files > 0, "empty corpus {}", dir.display());
}

#[test]
fn control_corpus() {
    replay("control", weft_api::fuzz::control_input);
}
