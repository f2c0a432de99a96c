//! Replays the corpora of nap-runtime's fuzz targets (`fuzz/corpus/<target>/`, minimized with
//! `cargo fuzz cmin`) through the same checks and under the same allocation cap as the targets
//! (the larger of their two caps: one test binary holds both).

use nap_test_support::bundle_bytes::check_bundle;
use nap_test_support::encoded_frame::check_encoded_frame;
use nap_test_support::fuzz::{CappedAllocator, replay_corpus};

#[global_allocator]
static ALLOCATOR: CappedAllocator<{ 384 << 20 }> = CappedAllocator;

#[test]
fn bundle_corpus_replays_cleanly() {
    let runs = replay_corpus(env!("CARGO_MANIFEST_DIR"), "bundle", check_bundle);
    assert!(runs.iter().any(|r| r.loaded), "no corpus file loads");
    assert!(runs.iter().any(|r| r.parsed && !r.loaded));
    assert!(runs.iter().any(|r| !r.parsed));
}

/// The same checks on tiny bundles whose backbones tract reads, mutated: tract's own panics on
/// malformed graphs must come back as load errors.
#[test]
fn bundle_onnx_corpus_replays_cleanly() {
    nap_runtime::backbone::quiet_guarded_panics();
    let runs = replay_corpus(env!("CARGO_MANIFEST_DIR"), "bundle_onnx", check_bundle);
    assert!(runs.iter().any(|r| r.loaded), "no corpus file loads");
    assert!(runs.iter().any(|r| r.parsed && !r.loaded));
}

#[test]
fn image_corpus_replays_cleanly() {
    let runs = replay_corpus(env!("CARGO_MANIFEST_DIR"), "image", check_encoded_frame);
    assert!(runs.iter().any(|r| r.decoded), "no corpus file decodes");
    assert!(runs.iter().any(|r| !r.decoded));
}
