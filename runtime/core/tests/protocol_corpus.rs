//! Replays the fuzz corpus (`fuzz/corpus/frame_decoder/`, minimized with `cargo fuzz cmin`)
//! through the same invariant checks as the `frame_decoder` fuzz target.

use nap_test_support::fuzz::replay_corpus;
use nap_test_support::protocol::check_stream;

#[test]
fn fuzz_corpus_replays_cleanly() {
    let runs = replay_corpus(env!("CARGO_MANIFEST_DIR"), "frame_decoder", check_stream);
    let messages: usize = runs.iter().map(|r| r.messages).sum();
    let errors: usize = runs.iter().map(|r| r.errors).sum();
    // The corpus must exercise both paths, not just noise.
    assert!(
        messages > 0 && errors > 0,
        "{messages} messages, {errors} errors"
    );
}
