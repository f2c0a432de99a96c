//! The bundle reader, and what napd does with a bundle before its first frame, under arbitrary
//! bytes. Shared by the `bundle` fuzz target and its corpus replay test, so both check exactly
//! the same thing; both run under [`CappedAllocator`](crate::fuzz::CappedAllocator).

use crc::{CRC_32_ISCSI, Crc};
use nap_runtime::backbone::BackboneOptions;
use nap_runtime::bundle::Bundle;
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;

/// What [`check_bundle`] got from its input.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BundleRun {
    /// The input (its checksum made right) parsed as a bundle.
    pub parsed: bool,
    /// ... and its backbone and head loaded into a detector with a worker, as napd does before
    /// the first frame.
    pub loaded: bool,
}

/// Reads `input` as a bundle file twice: as given, and with its last four bytes replaced by
/// the checksum of the rest, so that damage inside reaches the manifest, head and program
/// decoders instead of stopping at the checksum. Any error must say something; a bundle that
/// parses must write back to bytes that parse to the same bundle, and then goes where napd
/// takes it: its preprocessing, its detector (backbone and head) and one worker.
pub fn check_bundle(input: &[u8]) -> BundleRun {
    let mut run = BundleRun::default();
    if let Err(e) = Bundle::from_bytes(input) {
        assert!(!e.to_string().is_empty());
    }
    let mut fixed = input.to_vec();
    if let Some(body) = fixed.len().checked_sub(4) {
        let checksum = Crc::<u32>::new(&CRC_32_ISCSI).checksum(&fixed[..body]);
        fixed[body..].copy_from_slice(&checksum.to_le_bytes());
    }
    let bundle = match Bundle::from_bytes(&fixed) {
        Ok(bundle) => bundle,
        Err(e) => {
            assert!(!e.to_string().is_empty());
            return run;
        }
    };
    run.parsed = true;
    let written = bundle.to_bytes().expect("a parsed bundle writes");
    let again = Bundle::from_bytes(&written).expect("a written bundle parses");
    assert_eq!(
        again.to_bytes().expect("writes"),
        written,
        "round trip changed the bundle"
    );

    if let Err(e) = Preprocessor::new(bundle.manifest.input) {
        assert!(!e.to_string().is_empty());
        return run;
    }
    match Detector::from_bundle(bundle, BackboneOptions::default()).and_then(|d| d.worker()) {
        Ok(_) => run.loaded = true,
        Err(e) => assert!(!e.to_string().is_empty()),
    }
    run
}
