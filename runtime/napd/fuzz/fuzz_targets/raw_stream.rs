//! Arbitrary bytes through napd's `raw:` frame stream reader, cut into reads of any size.
//!
//! The checks live in `nap_test_support::raw_stream::check_raw_stream`, shared with the corpus
//! replay test `runtime/napd/tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nap_test_support::raw_stream::check_raw_stream(data);
});
