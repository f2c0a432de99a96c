//! Replays the `controller` fuzz target's corpus (`fuzz/corpus/controller/`, minimized with
//! `cargo fuzz cmin`) through the same invariant checks as the target.

use nap_test_support::controller::check_controller;
use nap_test_support::fuzz::replay_corpus;

#[test]
fn fuzz_corpus_replays_cleanly() {
    let runs = replay_corpus(env!("CARGO_MANIFEST_DIR"), "controller", check_controller);
    // The corpus must reach the interesting transitions, not just noise.
    let armings: usize = runs.iter().map(|r| r.armings).sum();
    let disarms: usize = runs.iter().map(|r| r.disarms).sum();
    assert!(
        armings > 0 && disarms > 0,
        "{armings} armings, {disarms} disarms"
    );
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(2000))]

    /// Fresh random inputs on every run, beyond the corpus.
    #[test]
    fn random_inputs_keep_the_invariants(input in proptest::collection::vec(0u8.., 0..600)) {
        check_controller(&input);
    }
}
