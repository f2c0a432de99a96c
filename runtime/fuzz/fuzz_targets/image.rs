//! Arbitrary bytes as an encoded frame: JPEG (libjpeg-turbo) or PNG decoding, then the
//! preprocessing into the backbone's input, with every allocation counted against a cap of
//! 384 MiB held at once (the decoders' own limit is 256 MiB, plus the frame's tensors).
//!
//! The checks live in `nap_test_support::encoded_frame::check_encoded_frame`, shared with the
//! corpus replay test `runtime/tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nap_test_support::fuzz::CappedAllocator;

#[global_allocator]
static ALLOCATOR: CappedAllocator<{ 384 << 20 }> = CappedAllocator;

fuzz_target!(|data: &[u8]| {
    nap_test_support::encoded_frame::check_encoded_frame(data);
});
