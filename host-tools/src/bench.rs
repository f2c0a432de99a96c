//! `napctl bench`: time each stage of scoring a frame, on one or several worker threads.

use nap_core::depthwise::Depthwise;
use nap_runtime::backbone::BackboneOptions;
use nap_runtime::bundle::Bundle;
use nap_runtime::detector::{Detector, DetectorError};
use nap_runtime::preprocess::{self, PreprocessError, Preprocessor};
use serde::Serialize;
use std::fmt;
use std::time::{Duration, Instant};

/// The stages of one frame, in order.
pub const STAGES: [&str; 6] = [
    "decode",
    "preprocess",
    "backbone",
    "reduce",
    "head",
    "scores",
];

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The frame is not a usable image.
    #[error("benchmark frame: {0}")]
    Frame(#[from] PreprocessError),
    /// The detector failed.
    #[error(transparent)]
    Detector(#[from] DetectorError),
    /// Nothing to measure.
    #[error("--threads and --frames must be at least 1")]
    Empty,
}

/// Median and 99th percentile of one stage, over all timed frames.
#[derive(Clone, Debug, Serialize)]
pub struct StageTiming {
    /// The stage's name (one of [`STAGES`]).
    pub stage: &'static str,
    /// Median, microseconds.
    pub median_us: f64,
    /// 99th percentile, microseconds.
    pub p99_us: f64,
}

/// What `napctl bench` reports.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The bundle's backbone precision (`f32`, `int8`, `int8-weights`).
    pub precision: String,
    /// Worker threads.
    pub threads: usize,
    /// Timed frames, all threads together.
    pub frames: usize,
    /// The reduction kernels' implementation.
    pub reduce_isa: &'static str,
    /// Who ran the backbone's depthwise convolutions: `nap-core (avx2)` or `tract`.
    pub depthwise: String,
    /// Per-stage timings.
    pub stages: Vec<StageTiming>,
    /// Scored frames per second, all threads together, wall clock.
    pub frames_per_second: f64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} backbone: {} frames on {} thread(s), reduction path {}, depthwise convolutions by {}",
            self.precision, self.frames, self.threads, self.reduce_isa, self.depthwise
        )?;
        writeln!(f, "{:<12}{:>12}{:>12}", "stage", "median us", "p99 us")?;
        for s in &self.stages {
            writeln!(f, "{:<12}{:>12.1}{:>12.1}", s.stage, s.median_us, s.p99_us)?;
        }
        writeln!(f, "{:.1} frames/s", self.frames_per_second)
    }
}

/// A built-in 640x480 camera-like JPEG, so the benchmark needs no data.
pub fn synthetic_jpeg() -> Vec<u8> {
    let image = image::RgbImage::from_fn(640, 480, |x, y| {
        let n = (x.wrapping_mul(2_654_435_761) ^ y.wrapping_mul(40_503)) % 32;
        image::Rgb([(x / 3 + n) as u8, (y / 2 + n) as u8, ((x + y) / 5) as u8])
    });
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Jpeg,
        )
        .expect("encoding an in-memory image cannot fail");
    bytes
}

/// Scores `frames` copies of `frame` on `threads` workers, timing every stage of every frame,
/// with the backbone prepared as `backbone` says.
pub fn run(
    bundle: &Bundle,
    frame: &[u8],
    threads: usize,
    frames: usize,
    backbone: BackboneOptions,
) -> Result<BenchReport, BenchError> {
    let mut reports = compare(&[bundle], frame, threads, frames, 1, backbone)?;
    Ok(reports.remove(0))
}

/// Benchmarks several bundles in one run: `rounds` rounds, each scoring `frames / rounds`
/// frames with every bundle in turn, so that a machine whose speed drifts (other load, clock
/// changes) affects all bundles alike. One report per bundle, in order.
pub fn compare(
    bundles: &[&Bundle],
    frame: &[u8],
    threads: usize,
    frames: usize,
    rounds: usize,
    backbone: BackboneOptions,
) -> Result<Vec<BenchReport>, BenchError> {
    if threads == 0 || frames == 0 || rounds == 0 {
        return Err(BenchError::Empty);
    }
    preprocess::decode(frame)?;
    let prepared = bundles
        .iter()
        .map(|b| {
            Ok((
                Detector::with_options(b, backbone)?,
                Preprocessor::new(b.manifest.input)?,
            ))
        })
        .collect::<Result<Vec<_>, BenchError>>()?;
    let mut laps: Vec<Vec<[Duration; 6]>> = vec![Vec::new(); bundles.len()];
    let mut walls = vec![Duration::ZERO; bundles.len()];
    for round in 0..rounds {
        let n = frames / rounds + usize::from(round < frames % rounds);
        if n == 0 {
            continue;
        }
        for (i, (detector, preprocessor)) in prepared.iter().enumerate() {
            let (timings, wall) = time_round(detector, preprocessor, frame, threads, n)?;
            laps[i].extend(timings);
            walls[i] += wall;
        }
    }
    Ok(laps
        .into_iter()
        .zip(walls)
        .zip(bundles)
        .map(|((all, wall), bundle)| BenchReport {
            precision: bundle.manifest.backbone.precision.to_string(),
            threads,
            frames,
            reduce_isa: nap_core::reduce::Reducer::new().isa().name(),
            depthwise: if backbone.own_depthwise {
                format!("nap-core ({})", Depthwise::new().isa().name())
            } else {
                "tract".into()
            },
            stages: stage_timings(&all),
            frames_per_second: frames as f64 / wall.as_secs_f64(),
        })
        .collect())
}

/// `frames` frames spread over `threads` workers: every frame's stage times, and the wall time.
fn time_round(
    detector: &Detector,
    preprocessor: &Preprocessor,
    frame: &[u8],
    threads: usize,
    frames: usize,
) -> Result<(Vec<[Duration; 6]>, Duration), BenchError> {
    let per_thread: Vec<usize> = (0..threads)
        .map(|t| frames / threads + usize::from(t < frames % threads))
        .filter(|&n| n > 0)
        .collect();
    let start = Instant::now();
    let timings: Vec<Vec<[Duration; 6]>> = std::thread::scope(|scope| {
        let handles: Vec<_> = per_thread
            .iter()
            .map(|&n| scope.spawn(move || time_frames(detector, preprocessor, frame, n)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("benchmark thread panicked"))
            .collect::<Result<_, _>>()
    })?;
    Ok((timings.into_iter().flatten().collect(), start.elapsed()))
}

fn stage_timings(all: &[[Duration; 6]]) -> Vec<StageTiming> {
    STAGES
        .iter()
        .enumerate()
        .map(|(i, &stage)| {
            let mut us: Vec<f64> = all.iter().map(|t| t[i].as_secs_f64() * 1e6).collect();
            us.sort_by(f64::total_cmp);
            StageTiming {
                stage,
                median_us: quantile(&us, 0.5),
                p99_us: quantile(&us, 0.99),
            }
        })
        .collect()
}

/// One worker: a warm-up frame, then `n` timed frames.
fn time_frames(
    detector: &Detector,
    preprocessor: &Preprocessor,
    frame: &[u8],
    n: usize,
) -> Result<Vec<[Duration; 6]>, BenchError> {
    let mut worker = detector.worker()?;
    let mut timings = Vec::with_capacity(n);
    for i in 0..=n {
        let mut lap = Lap::new();
        let image = preprocess::decode(frame)?;
        let decode = lap.next();
        let mut input = vec![0.0; preprocessor.tensor_len()];
        preprocessor.tensor_from_image(&image, &mut input)?;
        let prep = lap.next();
        let pre_pool = detector.backbone(&mut worker, input)?;
        let backbone = lap.next();
        let nap = detector.reduce(&mut worker, &pre_pool)?;
        let reduce = lap.next();
        detector.logits(&mut worker);
        let head = lap.next();
        detector.score(&mut worker, nap, detector.manifest().scorer.method)?;
        let scores = lap.next();
        if i > 0 {
            timings.push([decode, prep, backbone, reduce, head, scores]);
        }
    }
    Ok(timings)
}

/// Successive intervals of one frame's stages.
struct Lap(Instant);

impl Lap {
    fn new() -> Self {
        Lap(Instant::now())
    }

    fn next(&mut self) -> Duration {
        let now = Instant::now();
        let lap = now - self.0;
        self.0 = now;
        lap
    }
}

/// Nearest-rank quantile of sorted values.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

impl BenchReport {
    /// Median microseconds of `stage`, if the report has it.
    pub fn median_us(&self, stage: &str) -> Option<f64> {
        self.stages
            .iter()
            .find(|s| s.stage == stage)
            .map(|s| s.median_us)
    }
}
