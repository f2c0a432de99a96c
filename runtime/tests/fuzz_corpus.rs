//! Replays the `bundle` fuzz target's corpus (`fuzz/corpus/bundle/`, minimized with
//! `cargo fuzz cmin`) through the same checks and under the same allocation cap as the target.

use nap_test_support::bundle_bytes::check_bundle;
use nap_test_support::fuzz::{CappedAllocator, replay_corpus};
use std::path::Path;

#[global_allocator]
static ALLOCATOR: CappedAllocator<{ 256 << 20 }> = CappedAllocator;

#[test]
fn bundle_corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/bundle");
    let runs = replay_corpus(&dir, check_bundle);
    assert!(runs.iter().any(|r| r.loaded), "no corpus file loads");
    assert!(runs.iter().any(|r| r.parsed && !r.loaded));
    assert!(runs.iter().any(|r| !r.parsed));
}
