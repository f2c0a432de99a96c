//! Replays the fuzz corpus (`fuzz/corpus/frame_decoder/`, minimized with `cargo fuzz cmin`)
//! through the same invariant checks as the `frame_decoder` fuzz target, so that plain
//! `cargo test` guards what the fuzzer found, without nightly or libFuzzer.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use nap_test_support::protocol::{StreamStats, check_stream};

#[test]
fn fuzz_corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frame_decoder");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty fuzz corpus in {}", dir.display());

    let mut total = StreamStats::default();
    let mut failed = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        match catch_unwind(AssertUnwindSafe(|| check_stream(&bytes))) {
            Ok(stats) => {
                total.messages += stats.messages;
                total.errors += stats.errors;
            }
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    assert!(failed.is_empty(), "invariants broken by: {failed:#?}");
    // The corpus must exercise both paths, not just noise.
    assert!(total.messages > 0 && total.errors > 0, "{total:?}");
    eprintln!("{} corpus files: {total:?}", files.len());
}
