//! Arbitrary bytes as a bundle file: the reader, then what napd does with a bundle before its
//! first frame (preprocessing, detector, a worker), with every allocation counted against a
//! cap of 256 MiB held at once.
//!
//! The checks live in `nap_test_support::bundle_bytes::check_bundle`, shared with the corpus
//! replay test `runtime/tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nap_test_support::fuzz::CappedAllocator;

#[global_allocator]
static ALLOCATOR: CappedAllocator<{ 256 << 20 }> = CappedAllocator;

fuzz_target!(|data: &[u8]| {
    nap_test_support::bundle_bytes::check_bundle(data);
});
