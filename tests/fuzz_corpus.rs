//! Replays every fuzz target's corpus (fuzz/corpus/NAME) through the
//! target's own check (fuzz/checks/), so every crash ever found stays
//! fixed, and checks that each target has its file, its entry in
//! fuzz/Cargo.toml and its seeds.

#[path = "../fuzz/checks/mod.rs"]
mod checks;

use std::path::Path;

/// Seeds each target's corpus must hold at least.
const MIN_SEEDS: usize = 5;

#[test]
fn every_fuzz_corpus_replays_cleanly() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    for (name, check) in checks::TARGETS {
        let dir = fuzz.join("corpus").join(name);
        let mut count = 0;
        let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("corpus entry").path();
            let data = std::fs::read(&path).expect("corpus file");
            let replay = std::panic::catch_unwind(|| check(&data));
            assert!(replay.is_ok(), "{name}: {} fails its check", path.display());
            count += 1;
        }
        assert!(
            count >= MIN_SEEDS,
            "{name}: {count} seeds, want {MIN_SEEDS}"
        );
    }
}

#[test]
fn every_fuzz_target_is_built_and_listed() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(fuzz.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let mut files: Vec<String> = std::fs::read_dir(fuzz.join("fuzz_targets"))
        .expect("fuzz/fuzz_targets")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut names: Vec<String> = checks::TARGETS
        .iter()
        .map(|(name, _)| format!("{name}.rs"))
        .collect();
    names.sort();
    assert_eq!(files, names, "fuzz/fuzz_targets and checks::TARGETS");
    for (name, _) in checks::TARGETS {
        let entry = format!("name = \"{name}\"\npath = \"fuzz_targets/{name}.rs\"");
        assert!(
            manifest.contains(&entry),
            "fuzz/Cargo.toml lacks the [[bin]] {name}"
        );
        let source = std::fs::read_to_string(fuzz.join("fuzz_targets").join(format!("{name}.rs")))
            .expect("target source");
        assert!(
            source.contains(&format!("checks::{name}::check(data)")),
            "fuzz_targets/{name}.rs calls its own check"
        );
    }
}
