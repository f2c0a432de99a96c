//! Arbitrary link bytes, valid frames, time passing and link errors through the controller's
//! state machine, its invariants checked after every step.
//!
//! The input's meaning and the checks live in `nap_test_support::controller::check_controller`,
//! shared with the corpus replay test `firmware/controller/tests/fuzz_corpus.rs`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    nap_test_support::controller::check_controller(data);
});
