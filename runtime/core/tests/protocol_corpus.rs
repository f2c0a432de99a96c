//! Replays the fuzz corpus (`fuzz/corpus/frame_decoder/`, minimized with `cargo fuzz cmin`)
//! through the same invariant checks as the `frame_decoder` fuzz target.

use nap_test_support::fuzz::replay_corpus;
use nap_test_support::protocol::check_stream;
use std::path::Path;

#[test]
fn fuzz_corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frame_decoder");
    let runs = replay_corpus(&dir, check_stream);
    let messages: usize = runs.iter().map(|r| r.messages).sum();
    let errors: usize = runs.iter().map(|r| r.errors).sum();
    // The corpus must exercise both paths, not just noise.
    assert!(
        messages > 0 && errors > 0,
        "{messages} messages, {errors} errors"
    );
}
