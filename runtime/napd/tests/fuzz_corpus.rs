//! Replays the corpora of napd's fuzz targets (`fuzz/corpus/<target>/`, minimized with
//! `cargo fuzz cmin`) through the same invariant checks as the targets, and fresh random
//! inputs beyond them.

use nap_test_support::config_text::check_config_text;
use nap_test_support::fuzz::replay_corpus;
use nap_test_support::raw_stream::check_raw_stream;
use proptest::prelude::*;

#[test]
fn raw_stream_corpus_replays_cleanly() {
    let runs = replay_corpus(env!("CARGO_MANIFEST_DIR"), "raw_stream", check_raw_stream);
    // The corpus must reach both outcomes, not just noise.
    let frames: usize = runs.iter().map(|r| r.frames).sum();
    let rejected: usize = runs.iter().map(|r| r.rejected).sum();
    assert!(
        frames > 0 && rejected > 0,
        "{frames} frames, {rejected} rejected"
    );
}

#[test]
fn config_corpus_replays_cleanly() {
    let runs = replay_corpus(env!("CARGO_MANIFEST_DIR"), "config", check_config_text);
    assert!(
        runs.iter().any(|r| r.resolved),
        "no corpus file is a valid config"
    );
    assert!(runs.iter().any(|r| r.parsed && !r.resolved));
    assert!(
        runs.iter().any(|r| r.specs > 0),
        "no corpus file is a valid spec"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    #[test]
    fn random_streams_keep_the_invariants(input in prop::collection::vec(any::<u8>(), 0..2000)) {
        check_raw_stream(&input);
    }

    #[test]
    fn random_text_keeps_the_invariants(input in "\\PC{0,200}") {
        check_config_text(input.as_bytes());
    }
}
