//! Arbitrary text as napd's TOML config (resolved when it parses) and as every spec its command
//! line takes (source, link, OOD line, GPIO line, broker, device id, metrics address).
//!
//! The checks live in `nap_test_support::config_text::check_config_text`, shared with the corpus
//! replay test `runtime/napd/tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nap_test_support::config_text::check_config_text(data);
});
