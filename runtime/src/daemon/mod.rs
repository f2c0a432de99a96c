//! `napd`, the on-device daemon: frames in, verdicts out to the controller, the OOD line and a
//! log, in real time.
//!
//! - [`config`]: flags and the TOML file, one set of options.
//! - [`queue`]: the bounded frame queue (drop the oldest, or wait).
//! - [`order`]: verdicts back in frame order.
//! - [`stats`]: fps, latency percentiles, memory.
//! - [`log`]: the JSON Lines verdict log.
//! - [`pipeline`]: the threads that tie them together.
//!
//! [`serve`] is the daemon's life: open the link first (so even a failure to start reaches the
//! controller as a fault status), load the bundle, open the OOD line and the source, run the
//! pipeline, and end with a final status.

pub mod config;
pub mod log;
mod memory;
pub mod order;
pub mod pipeline;
pub mod queue;
pub mod stats;

pub use config::{Options, Settings};
pub use pipeline::{EndReason, PipelineOptions, ScoreError, Scored, Scorer, Summary};

use crate::backbone::BackboneOptions;
use crate::bundle::Bundle;
use crate::detector::{Detector, DetectorError, Worker};
use crate::link::{Link, code};
use crate::ood_line::{OodOutput, open_gpio_cdev};
use crate::preprocess::Preprocessor;
use crate::source::{self, Frame, Pixels, pixel};
use log::JsonLog;
use nap_core::protocol::{Health, RuntimeStatus};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// How long a failing daemon tries to reach the controller with its fault status.
pub const FAULT_PATIENCE: Duration = Duration::from_secs(2);

/// The bundle's detector as the pipeline's scorer: decode or convert, preprocess, score.
pub struct DetectorScorer {
    detector: Detector,
    preprocessor: Preprocessor,
    threshold: f32,
}

impl DetectorScorer {
    /// Builds the detector; the threshold is `threshold` if given, else the bundle's, and there
    /// must be one.
    pub fn new(bundle: Bundle, threshold: Option<f32>) -> Result<DetectorScorer, String> {
        let threshold = threshold.or(bundle.manifest.scorer.threshold).ok_or(
            "the bundle has no threshold: calibrate it (napctl calibrate) or pass --threshold",
        )?;
        let preprocessor =
            Preprocessor::new(bundle.manifest.input).map_err(|e| format!("bundle input: {e}"))?;
        let detector = Detector::from_bundle(bundle, BackboneOptions::default())
            .map_err(|e| format!("loading the backbone: {e}"))?;
        memory::release_freed_heap();
        memory::release_startup_code();
        Ok(DetectorScorer {
            detector,
            preprocessor,
            threshold,
        })
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
            Err(e @ DetectorError::Backbone(_)) => Err(ScoreError::Fatal(format!("backbone: {e}"))),
            Err(e) => Err(bad(&e)),
        }
    }

    fn threshold(&self) -> f32 {
        self.threshold
    }
}

/// How a daemon run ended, for the exit code.
#[derive(Debug)]
pub struct Served {
    /// 0 for a clean end (end of stream, SIGINT / SIGTERM), 1 otherwise.
    pub exit_code: u8,
    /// What the pipeline did, if it ran.
    pub summary: Option<Summary>,
    /// Why it could not start or ended badly.
    pub error: Option<String>,
}

/// Fails before the pipeline runs: fault status to the controller, a log line, exit 1.
fn fail(link: Link, log: &mut JsonLog, code: u16, error: String) -> Served {
    eprintln!("napd: {error}");
    log.write(
        &serde_json::json!({"type": "final", "reason": "fault", "code": code, "error": error}),
    );
    let delivered = link.close(
        RuntimeStatus {
            health: Health::Fault,
            code,
        },
        FAULT_PATIENCE,
    );
    if !delivered {
        eprintln!("napd: the fault status could not be delivered (link down)");
    }
    Served {
        exit_code: 1,
        summary: None,
        error: Some(error),
    }
}

/// Loads the bundle and everything it needs, without running: `napd --check`.
pub fn check(settings: &Settings) -> Result<String, String> {
    let bundle = Bundle::read(&settings.bundle).map_err(|e| e.to_string())?;
    let scorer = DetectorScorer::new(bundle, settings.threshold)?;
    drop(scorer.worker()?);
    let m = scorer.detector.manifest();
    Ok(format!(
        "bundle {}: {} ({}x{} input, {:?} scorer, threshold {})\nsource {}\nlink {}\nOOD line {}\nlog {:?}\nworkers {}, queue {}",
        settings.bundle.display(),
        m.source,
        m.input.size,
        m.input.size,
        m.scorer.method,
        scorer.threshold,
        settings.source,
        settings.link,
        settings
            .ood_gpio
            .as_ref()
            .map_or("none".to_string(), |g| format!(
                "{}:{} ({:?})",
                g.chip, g.line, settings.ood_line
            )),
        settings.log,
        settings.pipeline.workers,
        settings.pipeline.queue,
    ))
}

/// Runs the daemon until the source ends, `stop` is raised, or something fatal happens. The
/// controller hears a status at every step: degraded while starting, ok once scoring, a fault
/// with the reason at the end (a clean end included: no verdict follows, so it must go safe).
pub fn serve(settings: &Settings, stop: Arc<AtomicBool>) -> Served {
    let mut log = match JsonLog::open(&settings.log) {
        Ok(l) => l,
        Err(e) => {
            let link = Link::open(&settings.link, settings.link_options, starting());
            return fail(link, &mut JsonLog::none(), code::CONFIG, e);
        }
    };
    let link = Link::open(&settings.link, settings.link_options, starting());
    let bundle = match Bundle::read(&settings.bundle) {
        Ok(b) => b,
        Err(e) => return fail(link, &mut log, code::BUNDLE, format!("bundle: {e}")),
    };
    let scorer = match DetectorScorer::new(bundle, settings.threshold) {
        Ok(s) => Arc::new(s),
        Err(e) => return fail(link, &mut log, code::BUNDLE, e),
    };
    let mut line: Option<Box<dyn OodOutput>> = match &settings.ood_gpio {
        None => None,
        Some(spec) => match open_gpio_cdev(spec, settings.ood_line) {
            Ok(l) => Some(Box::new(l)),
            Err(e) => return fail(link, &mut log, code::CONFIG, e),
        },
    };
    let source = match source::open(&settings.source, &settings.source_options) {
        Ok(s) => s,
        Err(e) => return fail(link, &mut log, code::SOURCE, format!("source: {e}")),
    };
    link.status(RuntimeStatus {
        health: Health::Ok,
        code: code::OK,
    });
    let summary = pipeline::run(
        scorer,
        source,
        pipeline::Outputs {
            link: &link,
            line: line.as_deref_mut().map(|l| l as &mut dyn OodOutput),
            log: &mut log,
        },
        &settings.pipeline,
        &stop,
    );
    log.write(&summary.to_json());
    let status = summary.reason.status();
    let clean = summary.reason.is_clean();
    // A clean end gets the same patience: the controller should learn why verdicts stopped.
    link.close(status, FAULT_PATIENCE);
    let error = match &summary.reason {
        EndReason::SourceFailed(e) | EndReason::Fatal(e) => Some(e.clone()),
        _ => None,
    };
    Served {
        exit_code: if clean { 0 } else { 1 },
        summary: Some(summary),
        error,
    }
}

fn starting() -> RuntimeStatus {
    RuntimeStatus {
        health: Health::Degraded,
        code: code::STARTING,
    }
}
