//! The `bundle` target's checks with tract built in, seeded with tiny classifiers whose
//! backbones are ONNX (float, int8-weights, f16-weights, int8 for tract): mutated protobuf and
//! tensors reach tract's model loading and optimization, as napd would hand them over. Run with
//! `--features tract`; its seeds come from `cargo run -p nap-tests --example bundle_seeds`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nap_test_support::fuzz::CappedAllocator;

#[global_allocator]
static ALLOCATOR: CappedAllocator<{ 256 << 20 }> = CappedAllocator;

fuzz_target!(
    // tract panics on some malformed graphs; nap-runtime turns those into errors, so only
    // panics it does not catch may abort the run as crashes.
    init: nap_runtime::backbone::quiet_guarded_panics(),
    |data: &[u8]| {
        nap_test_support::bundle_bytes::check_bundle(data);
    }
);
