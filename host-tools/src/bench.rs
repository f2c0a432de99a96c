//! `napctl bench`: time each stage of scoring a frame, on one or several worker threads.

use nap_core::depthwise::Depthwise;
use nap_core::pointwise::Pointwise;
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

/// How a benchmark runs.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Worker threads scoring frames in parallel.
    pub threads: usize,
    /// Timed frames, all threads together (each thread also scores one untimed warm-up frame).
    pub frames: usize,
    /// Rounds the frames are split into, alternating between bundles.
    pub rounds: usize,
    /// How the backbone is prepared.
    pub backbone: BackboneOptions,
    /// Frames arrive decoded, as a camera delivers them (raw RGB8): the image is decoded once
    /// up front and each frame starts at preprocessing.
    pub raw_frames: bool,
}

/// What `napctl bench` reports.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// The bundle's backbone precision (`f32`, `int8`, `int8-weights`).
    pub precision: String,
    /// What each frame starts as: `encoded` (a JPEG or PNG decoded per frame) or `raw` (RGB8
    /// pixels, as from a camera).
    pub frames_from: &'static str,
    /// Worker threads.
    pub threads: usize,
    /// Timed frames, all threads together.
    pub frames: usize,
    /// The reduction kernels' implementation.
    pub reduce_isa: &'static str,
    /// Who ran the backbone's depthwise convolutions: `nap-core (avx2)`, `nap-core int8 (avx2)`
    /// (the integer program) or `tract`.
    pub depthwise: String,
    /// Who ran the backbone's pointwise convolutions: `nap-core (avx2)` (those whose plane
    /// suits it; tract the rest) or `tract`.
    pub pointwise: String,
    /// Per-stage timings.
    pub stages: Vec<StageTiming>,
    /// Scored frames per second, all threads together, wall clock.
    pub frames_per_second: f64,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} backbone: {} {} frames on {} thread(s), reduction path {}, depthwise convolutions by {}, pointwise by {}",
            self.precision,
            self.frames,
            self.frames_from,
            self.threads,
            self.reduce_isa,
            self.depthwise,
            self.pointwise
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

/// Benchmarks bundles on copies of `frame` (a JPEG or PNG), timing every stage of every frame:
/// `plan.rounds` rounds, each scoring its share of the frames with every bundle in turn, so
/// that a machine whose speed drifts (other load, clock changes) affects all bundles alike.
/// One report per bundle, in order.
pub fn compare(
    bundles: &[&Bundle],
    frame: &[u8],
    plan: Plan,
) -> Result<Vec<BenchReport>, BenchError> {
    let Plan {
        threads,
        frames,
        rounds,
        backbone,
        raw_frames,
    } = plan;
    if threads == 0 || frames == 0 || rounds == 0 {
        return Err(BenchError::Empty);
    }
    let frame = Frame {
        encoded: frame,
        decoded: preprocess::decode(frame)?,
        raw: raw_frames,
    };
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
            let (timings, wall) = time_round(detector, preprocessor, &frame, threads, n)?;
            laps[i].extend(timings);
            walls[i] += wall;
        }
    }
    Ok(laps
        .into_iter()
        .zip(walls)
        .zip(bundles)
        .zip(&prepared)
        .map(|(((all, wall), bundle), (detector, _))| BenchReport {
            precision: bundle.manifest.backbone.precision.to_string(),
            frames_from: if raw_frames { "raw" } else { "encoded" },
            threads,
            frames,
            reduce_isa: nap_core::reduce::Reducer::new().isa().name(),
            depthwise: match detector.integer_paths() {
                Some([_, _, depthwise, _]) => format!(
                    "nap-core int8 ({}, {} fused with their expansion)",
                    depthwise.name(),
                    detector.fused_expansions()
                ),
                None if backbone.own_depthwise => {
                    format!("nap-core ({})", Depthwise::new().isa().name())
                }
                None => "tract".into(),
            },
            pointwise: match detector.integer_paths() {
                Some([_, pointwise, _, _]) => format!("nap-core int8 ({})", pointwise.name()),
                None if backbone.own_pointwise => {
                    format!("nap-core ({})", Pointwise::new().isa().name())
                }
                None => "tract".into(),
            },
            stages: stage_timings(&all)
                .into_iter()
                .filter(|s| !(raw_frames && s.stage == "decode"))
                .collect(),
            frames_per_second: frames as f64 / wall.as_secs_f64(),
        })
        .collect())
}

/// The benchmark's frame, in both forms.
struct Frame<'a> {
    encoded: &'a [u8],
    decoded: image::RgbImage,
    /// Frames start decoded.
    raw: bool,
}

/// `frames` frames spread over `threads` workers: every frame's stage times, and the wall time.
fn time_round(
    detector: &Detector,
    preprocessor: &Preprocessor,
    frame: &Frame,
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
    frame: &Frame,
    n: usize,
) -> Result<Vec<[Duration; 6]>, BenchError> {
    let mut worker = detector.worker()?;
    let mut timings = Vec::with_capacity(n);
    for i in 0..=n {
        let mut lap = Lap::new();
        let decoded;
        let image = if frame.raw {
            &frame.decoded
        } else {
            decoded = preprocess::decode(frame.encoded)?;
            &decoded
        };
        let decode = lap.next();
        let mut input = vec![0.0; preprocessor.tensor_len()];
        preprocessor.tensor_from_image(image, &mut input)?;
        let prep = lap.next();
        let pre_pool = detector.backbone(&mut worker, input)?;
        let backbone = lap.next();
        let nap = detector.reduce(&mut worker, &pre_pool)?;
        let reduce = lap.next();
        detector.logits(&mut worker)?;
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
