//! Replays the fuzz corpus (fuzz/corpus/answer) through the fuzz target's
//! own check, so every crash ever found stays fixed.

#[path = "../fuzz/check.rs"]
mod check;

#[test]
fn the_fuzz_corpus_replays_cleanly() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/answer");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).expect("the seed corpus exists") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        check::check(&data);
        count += 1;
    }
    assert!(count >= 20, "seed corpus too small: {count}");
}
