//! The bundle's detector as the pipeline's scorer: decode or convert, preprocess, score.

use crate::DaemonError;
use crate::pipeline::{ScoreError, Scored, Scorer};
use crate::source::{Frame, Pixels, pixel};
use nap_runtime::backbone::BackboneOptions;
use nap_runtime::bundle::{Bundle, Manifest};
use nap_runtime::detector::{Detector, Worker};
use nap_runtime::preprocess::Preprocessor;

/// The detector, its preprocessing and the threshold verdicts are decided against.
pub struct DetectorScorer {
    detector: Detector,
    preprocessor: Preprocessor,
    threshold: f32,
}

impl DetectorScorer {
    /// Builds the detector; the threshold is `threshold` if given, else the bundle's, and there
    /// must be one.
    pub fn new(bundle: Bundle, threshold: Option<f32>) -> Result<DetectorScorer, DaemonError> {
        let threshold = threshold
            .or(bundle.manifest.scorer.threshold)
            .ok_or_else(|| {
                DaemonError::Bundle(
                "the bundle has no threshold: calibrate it (napctl calibrate) or pass --threshold"
                    .into(),
            )
            })?;
        let preprocessor = Preprocessor::new(bundle.manifest.input)
            .map_err(|e| DaemonError::Bundle(format!("bundle input: {e}")))?;
        let detector = Detector::from_bundle(bundle, BackboneOptions::default())
            .map_err(|e| DaemonError::Bundle(format!("loading the backbone: {e}")))?;
        Ok(DetectorScorer {
            detector,
            preprocessor,
            threshold,
        })
    }

    /// The bundle's manifest.
    pub fn manifest(&self) -> &Manifest {
        self.detector.manifest()
    }
}

impl Scorer for DetectorScorer {
    type Worker = Worker;

    fn worker(&self) -> Result<Worker, String> {
        self.detector.worker().map_err(|e| e.to_string())
    }

    fn score(&self, worker: &mut Worker, frame: &Frame) -> Result<Scored, ScoreError> {
        let bad = |e: &dyn std::fmt::Display| ScoreError::Frame(e.to_string());
        // Raw frames are converted here, on the worker, so capture never waits for it.
        let input = match &frame.pixels {
            Pixels::Encoded(bytes) => self.preprocessor.tensor_vec_from_encoded(bytes),
            Pixels::Raw {
                width,
                height,
                format,
                data,
            } => {
                let rgb = pixel::to_rgb8(*format, *width, *height, data).map_err(|e| bad(&e))?;
                self.preprocessor
                    .tensor_vec_from_rgb8(*width, *height, &rgb)
            }
        }
        .map_err(|e| bad(&e))?;
        match self.detector.analyze(worker, input) {
            Ok(a) => Ok(Scored {
                score: a.score,
                ood: a.score < self.threshold,
                top1: a.top1,
            }),
            // The backbone itself failing is not this frame's fault: nothing will score.
            Err(e) if e.is_backbone_failure() => Err(ScoreError::Fatal(format!("backbone: {e}"))),
            Err(e) => Err(bad(&e)),
        }
    }

    fn threshold(&self) -> f32 {
        self.threshold
    }
}
