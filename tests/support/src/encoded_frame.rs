//! The image decoders (JPEG through libjpeg-turbo, PNG) and the preprocessing after them, as a
//! frame from `dir:` or the host tools meets them, under arbitrary bytes. Shared by the `image`
//! fuzz target and its corpus replay test; both run under
//! [`CappedAllocator`](crate::fuzz::CappedAllocator).

use nap_runtime::bundle::InputSpec;
use nap_runtime::preprocess::decode;
use nap_runtime::preprocess::{DEFAULT_MAX_ALLOC, DEFAULT_MAX_SIDE, Preprocessor};

/// What [`check_encoded_frame`] made of its input.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FrameRun {
    /// Decoded to RGB8 and preprocessed into a tensor.
    pub decoded: bool,
}

/// Decodes `input` as a JPEG or PNG frame, then preprocesses it into MobileNetV2's 224 x 224
/// tensor, and panics when an invariant fails: a decoded image is 1 to the side limit in each
/// direction and within the allocation limit; the tensor exists exactly when the image decodes,
/// has the input's size and only finite values; every refusal says something.
pub fn check_encoded_frame(input: &[u8]) -> FrameRun {
    let preprocessor = Preprocessor::new(InputSpec::TF).expect("the TF preset is valid");
    let decoded = decode(input);
    let tensor = preprocessor.tensor_vec_from_encoded(input);
    match (&decoded, &tensor) {
        (Ok(image), Ok(tensor)) => {
            let (w, h) = image.dimensions();
            assert!((1..=DEFAULT_MAX_SIDE).contains(&w) && (1..=DEFAULT_MAX_SIDE).contains(&h));
            assert!(u64::from(w) * u64::from(h) * 3 <= DEFAULT_MAX_ALLOC);
            assert_eq!(tensor.len(), preprocessor.tensor_len());
            assert!(
                tensor.iter().all(|v| v.is_finite()),
                "a non-finite input value"
            );
            FrameRun { decoded: true }
        }
        (Err(a), Err(b)) => {
            assert!(!a.to_string().is_empty() && !b.to_string().is_empty());
            FrameRun::default()
        }
        (a, b) => panic!(
            "decode and preprocessing disagree: {:?} vs {:?}",
            a.as_ref().map(|_| ()),
            b.as_ref().map(|_| ())
        ),
    }
}
