//! Replays the corpora of nap-runtime's fuzz targets (`fuzz/corpus/<target>/`, minimized with
//! `cargo fuzz cmin`) through the same checks and under the same allocation cap as the targets
//! (the larger of their two caps: one test binary holds both).

use nap_test_support::bundle_bytes::check_bundle;
use nap_test_support::encoded_frame::check_encoded_frame;
use nap_test_support::fuzz::{CappedAllocator, replay_corpus};
use std::path::{Path, PathBuf};

#[global_allocator]
static ALLOCATOR: CappedAllocator<{ 384 << 20 }> = CappedAllocator;

fn corpus(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

#[test]
fn bundle_corpus_replays_cleanly() {
    let runs = replay_corpus(&corpus("bundle"), check_bundle);
    assert!(runs.iter().any(|r| r.loaded), "no corpus file loads");
    assert!(runs.iter().any(|r| r.parsed && !r.loaded));
    assert!(runs.iter().any(|r| !r.parsed));
}

#[test]
fn image_corpus_replays_cleanly() {
    let runs = replay_corpus(&corpus("image"), check_encoded_frame);
    assert!(runs.iter().any(|r| r.decoded), "no corpus file decodes");
    assert!(runs.iter().any(|r| !r.decoded));
}
