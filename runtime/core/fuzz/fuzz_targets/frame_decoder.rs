//! Arbitrary bytes through the protocol's `FrameDecoder`, byte-wise and in chunks.
//!
//! The checks live in `nap_test_support::protocol::check_stream`, shared with the corpus
//! replay test `runtime/core/tests/protocol_corpus.rs`, which runs them in plain `cargo test`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nap_test_support::protocol::check_stream(data);
});
