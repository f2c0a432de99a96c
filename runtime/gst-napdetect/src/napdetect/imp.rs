//! How `napdetect` works: buffers go to a pool of scoring threads in arrival order and leave in
//! the same order once scored, at most `workers` of them in flight; a serialized event (caps,
//! segment, end of stream) first lets every frame before it out.

use super::method::MethodChoice;
use crate::verdict::{self, Verdict};
use crossbeam_channel::{Receiver, Sender};
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer::subclass::prelude::*;
use gstreamer_base::prelude::*;
use gstreamer_base::subclass::base_transform::GenerateOutputSuccess;
use gstreamer_base::subclass::prelude::*;
use gstreamer_video::VideoInfo;
use gstreamer_video::subclass::prelude::*;
use nap_runtime::bundle::BundleFile;
use nap_runtime::bundle::signature::TrustedKeys;
use nap_runtime::detector::Worker;
use napd::DetectorScorer;
use napd::pipeline::{ScoreError, Scored, Scorer};
use napd::source::{Frame, gst::buffer_pixels};
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Instant;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "napdetect",
        gst::DebugColorFlags::empty(),
        Some("NAP out-of-distribution detector"),
    )
});

/// `threshold`'s value when unset: the bundle's calibrated threshold decides.
const THRESHOLD_UNSET: f64 = f64::NEG_INFINITY;
const MAX_WORKERS: u32 = 64;

/// What the properties say.
#[derive(Clone, Debug)]
struct Settings {
    bundle: Option<PathBuf>,
    threshold: f64,
    method: MethodChoice,
    workers: u32,
    drop_ood: bool,
    trusted_keys: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            bundle: None,
            threshold: THRESHOLD_UNSET,
            method: MethodChoice::Bundle,
            workers: 1,
            drop_ood: false,
            trusted_keys: None,
        }
    }
}

/// Frames counted since the element started; read-only properties.
#[derive(Default)]
struct Counts {
    scored: AtomicU64,
    ood: AtomicU64,
    dropped: AtomicU64,
    unscored: AtomicU64,
}

/// One frame for a scoring thread.
struct Job {
    buffer: gst::Buffer,
    info: VideoInfo,
    number: u64,
    outcome: Sender<Result<Scored, ScoreError>>,
}

/// A frame in flight, in arrival order.
struct InFlight {
    buffer: gst::Buffer,
    number: u64,
    outcome: Receiver<Result<Scored, ScoreError>>,
}

/// The element between start and stop.
struct Running {
    /// Closing it ends the scoring threads.
    jobs: Option<Sender<Job>>,
    threads: Vec<JoinHandle<()>>,
    threshold: f32,
    method: &'static str,
    workers: usize,
    drop_ood: bool,
    info: Option<VideoInfo>,
    in_flight: VecDeque<InFlight>,
    next_number: u64,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.in_flight.clear();
        drop(self.jobs.take());
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// The element's instance.
#[derive(Default)]
pub struct NapDetect {
    settings: Mutex<Settings>,
    running: Mutex<Option<Running>>,
    counts: Counts,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere does not make the settings or the queue unusable.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// A scoring thread: scores jobs until the job queue closes.
fn score_jobs(scorer: Arc<DetectorScorer>, mut worker: Worker, jobs: Receiver<Job>) {
    for job in jobs {
        let pixels = buffer_pixels(&job.buffer, &job.info, usize::MAX);
        // The buffer goes back to being the element's alone before the outcome is known, so
        // the meta can be attached without copying it.
        let pts = job
            .buffer
            .pts()
            .map(|t| std::time::Duration::from_nanos(t.nseconds()));
        drop(job.buffer);
        let outcome = pixels.map_err(ScoreError::Frame).and_then(|pixels| {
            let frame = Frame {
                name: format!("frame {}", job.number),
                captured: Instant::now(),
                pts,
                pixels,
            };
            scorer.score(&mut worker, &frame)
        });
        // The receiver is gone when the element flushed or stopped: nothing waits for it.
        let _ = job.outcome.send(outcome);
    }
}

impl NapDetect {
    /// Loads the bundle the properties name and starts the scoring threads.
    fn start_running(&self, settings: &Settings) -> Result<Running, gst::ErrorMessage> {
        let settings_error =
            |text: String| gst::error_msg!(gst::LibraryError::Settings, ("{}", text));
        let bundle_path = settings.bundle.clone().ok_or_else(|| {
            settings_error("no bundle: set the `bundle` property to a .nap file".into())
        })?;
        let keys = settings
            .trusted_keys
            .as_ref()
            .map(|k| TrustedKeys::load(k).map_err(|e| settings_error(format!("trusted-keys: {e}"))))
            .transpose()?;
        let file = BundleFile::read(&bundle_path, keys.as_ref()).map_err(|e| {
            gst::error_msg!(
                gst::ResourceError::OpenRead,
                ("bundle {}: {}", bundle_path.display(), e)
            )
        })?;
        let mut bundle = file.bundle;
        let threshold =
            (settings.threshold != THRESHOLD_UNSET).then_some(settings.threshold as f32);
        if let Some(method) = settings.method.method() {
            if method != bundle.manifest.scorer.method && threshold.is_none() {
                return Err(settings_error(format!(
                    "the bundle's threshold is for {}, not {method}: set `threshold` too",
                    bundle.manifest.scorer.method
                )));
            }
            bundle.manifest.scorer.method = method;
        }
        if threshold.is_none() && bundle.manifest.scorer.threshold.is_none() {
            return Err(settings_error(
                "the bundle has no threshold: calibrate it (napctl calibrate) or set `threshold`"
                    .into(),
            ));
        }
        let scorer = DetectorScorer::new(bundle, threshold)
            .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("{}", e)))?;
        let method = scorer.manifest().scorer.method.name();
        let scorer = Arc::new(scorer);
        let workers = settings.workers.clamp(1, MAX_WORKERS) as usize;
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(workers);
        let mut threads = Vec::with_capacity(workers);
        for i in 0..workers {
            let worker = scorer
                .worker()
                .map_err(|e| gst::error_msg!(gst::ResourceError::Settings, ("worker: {}", e)))?;
            let (scorer, queue) = (Arc::clone(&scorer), queue.clone());
            let thread = std::thread::Builder::new()
                .name(format!("napdetect-{i}"))
                .spawn(move || score_jobs(scorer, worker, queue))
                .map_err(|e| gst::error_msg!(gst::CoreError::Thread, ("scoring thread: {}", e)))?;
            threads.push(thread);
        }
        gst::info!(
            CAT,
            imp = self,
            "bundle {} (sha256 {}): {method}, threshold {}, {workers} worker(s)",
            bundle_path.display(),
            file.sha256,
            scorer.threshold()
        );
        Ok(Running {
            jobs: Some(jobs),
            threads,
            threshold: scorer.threshold(),
            method,
            workers,
            drop_ood: settings.drop_ood,
            info: None,
            in_flight: VecDeque::new(),
            next_number: 0,
        })
    }

    /// The oldest frame in flight once it is scored, published and ready to leave: `None` when
    /// it was dropped as out of distribution.
    fn finish(
        &self,
        running: &Running,
        frame: InFlight,
    ) -> Result<Option<gst::Buffer>, gst::FlowError> {
        let outcome = frame.outcome.recv().map_err(|_| {
            gst::element_imp_error!(self, gst::CoreError::Thread, ("a scoring thread stopped"));
            gst::FlowError::Error
        })?;
        let mut buffer = frame.buffer;
        let scored = match outcome {
            Ok(scored) => scored,
            Err(ScoreError::Frame(e)) => {
                // Passed on unmarked, counted and said: one bad frame does not stop the stream.
                self.counts.unscored.fetch_add(1, Ordering::Relaxed);
                gst::element_imp_warning!(
                    self,
                    gst::StreamError::Decode,
                    ("frame {} was not scored: {}", frame.number, e)
                );
                return Ok(Some(buffer));
            }
            Err(ScoreError::Fatal(e)) => {
                gst::element_imp_error!(self, gst::LibraryError::Failed, ("{}", e));
                return Err(gst::FlowError::Error);
            }
        };
        let verdict = Verdict {
            frame: frame.number,
            pts: buffer.pts(),
            ood: scored.ood,
            score: scored.score,
            threshold: running.threshold,
            top1: u32::try_from(scored.top1).unwrap_or(u32::MAX),
            method: running.method.to_string(),
        };
        self.counts.scored.fetch_add(1, Ordering::Relaxed);
        if verdict.ood {
            self.counts.ood.fetch_add(1, Ordering::Relaxed);
        }
        let message = gst::message::Element::builder(verdict.to_structure(verdict::MESSAGE))
            .src(&*self.obj())
            .build();
        let _ = self.obj().post_message(message);
        if verdict.ood && running.drop_ood {
            self.counts.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(None);
        }
        if let Err(e) = verdict.attach(buffer.make_mut()) {
            gst::warning!(CAT, imp = self, "{e}");
        }
        Ok(Some(buffer))
    }

    /// Lets every frame in flight out, in order (before a serialized event passes them).
    fn drain(&self) -> Result<(), gst::FlowError> {
        let mut guard = lock(&self.running);
        let Some(running) = guard.as_mut() else {
            return Ok(());
        };
        let mut leaving = Vec::with_capacity(running.in_flight.len());
        while let Some(frame) = running.in_flight.pop_front() {
            leaving.extend(self.finish(running, frame)?);
        }
        drop(guard);
        for buffer in leaving {
            self.obj().src_pad().push(buffer)?;
        }
        Ok(())
    }
}

#[glib::object_subclass]
impl ObjectSubclass for NapDetect {
    const NAME: &'static str = "GstNapDetect";
    type Type = super::NapDetect;
    type ParentType = gstreamer_video::VideoFilter;
}

impl ObjectImpl for NapDetect {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(|| {
            vec![
                glib::ParamSpecString::builder("bundle")
                    .nick("Bundle")
                    .blurb("The .nap bundle to score frames with (from napctl split/quantize/calibrate)")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecDouble::builder("threshold")
                    .nick("Threshold")
                    .blurb("Frames scoring below it are out of distribution; -inf (the default): the bundle's calibrated threshold")
                    .minimum(f64::NEG_INFINITY)
                    .maximum(f64::INFINITY)
                    .default_value(THRESHOLD_UNSET)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecEnum::builder::<MethodChoice>("method")
                    .nick("Method")
                    .blurb("The deciding score; another than the bundle's needs `threshold` too")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt::builder("workers")
                    .nick("Workers")
                    .blurb("Frames scored at once, each on its own thread; frames still leave in order, up to this many frames later")
                    .minimum(1)
                    .maximum(MAX_WORKERS)
                    .default_value(1)
                    .mutable_ready()
                    .build(),
                glib::ParamSpecBoolean::builder("drop-ood")
                    .nick("Drop OOD")
                    .blurb("Drop the frames found out of distribution instead of passing them on with their verdict")
                    .mutable_playing()
                    .build(),
                glib::ParamSpecString::builder("trusted-keys")
                    .nick("Trusted keys")
                    .blurb("Refuse bundles not signed by one of these public keys (a PEM file or a folder of them), as napd --trusted-keys")
                    .mutable_ready()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-scored")
                    .nick("Frames scored")
                    .blurb("Frames scored since the element started")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-ood")
                    .nick("Frames OOD")
                    .blurb("Frames found out of distribution since the element started")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-dropped")
                    .nick("Frames dropped")
                    .blurb("Out-of-distribution frames dropped (drop-ood) since the element started")
                    .read_only()
                    .build(),
                glib::ParamSpecUInt64::builder("frames-unscored")
                    .nick("Frames unscored")
                    .blurb("Frames passed on without a verdict because they could not be scored (each one a warning on the bus)")
                    .read_only()
                    .build(),
            ]
        });
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let mut settings = lock(&self.settings);
        match pspec.name() {
            "bundle" => {
                settings.bundle = value.get::<Option<String>>().unwrap().map(PathBuf::from);
            }
            "threshold" => settings.threshold = value.get().unwrap(),
            "method" => settings.method = value.get().unwrap(),
            "workers" => settings.workers = value.get().unwrap(),
            "drop-ood" => {
                settings.drop_ood = value.get().unwrap();
                if let Some(running) = lock(&self.running).as_mut() {
                    running.drop_ood = settings.drop_ood;
                }
            }
            "trusted-keys" => {
                settings.trusted_keys = value.get::<Option<String>>().unwrap().map(PathBuf::from);
            }
            name => unreachable!("napdetect has no writable property {name}"),
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        let settings = lock(&self.settings);
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.display().to_string());
        let count = |c: &AtomicU64| c.load(Ordering::Relaxed).to_value();
        match pspec.name() {
            "bundle" => path(&settings.bundle).to_value(),
            "threshold" => settings.threshold.to_value(),
            "method" => settings.method.to_value(),
            "workers" => settings.workers.to_value(),
            "drop-ood" => settings.drop_ood.to_value(),
            "trusted-keys" => path(&settings.trusted_keys).to_value(),
            "frames-scored" => count(&self.counts.scored),
            "frames-ood" => count(&self.counts.ood),
            "frames-dropped" => count(&self.counts.dropped),
            "frames-unscored" => count(&self.counts.unscored),
            name => unreachable!("napdetect has no property {name}"),
        }
    }
}

impl GstObjectImpl for NapDetect {}

impl ElementImpl for NapDetect {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "NAP out-of-distribution detector",
                "Filter/Analyzer/Video",
                "Scores each frame with a NAP bundle: posts a nap-verdict element message \
                 (frame, pts, ood, score, threshold, top1, method) and attaches the same fields \
                 to the buffer as a NapVerdictMeta custom meta; drop-ood=true drops the frames \
                 found out of distribution",
                "NAP runtime",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = napd::source::gst::CAPS
                .parse::<gst::Caps>()
                .expect("napd's caps parse");
            [gst::PadDirection::Src, gst::PadDirection::Sink]
                .into_iter()
                .map(|direction| {
                    let name = if direction == gst::PadDirection::Src {
                        "src"
                    } else {
                        "sink"
                    };
                    gst::PadTemplate::new(name, direction, gst::PadPresence::Always, &caps)
                        .expect("a static pad template")
                })
                .collect()
        });
        TEMPLATES.as_ref()
    }
}

impl BaseTransformImpl for NapDetect {
    const MODE: gstreamer_base::subclass::BaseTransformMode =
        gstreamer_base::subclass::BaseTransformMode::AlwaysInPlace;
    const PASSTHROUGH_ON_SAME_CAPS: bool = false;
    const TRANSFORM_IP_ON_PASSTHROUGH: bool = false;

    fn start(&self) -> Result<(), gst::ErrorMessage> {
        let settings = lock(&self.settings).clone();
        let running = self.start_running(&settings)?;
        for count in [
            &self.counts.scored,
            &self.counts.ood,
            &self.counts.dropped,
            &self.counts.unscored,
        ] {
            count.store(0, Ordering::Relaxed);
        }
        *lock(&self.running) = Some(running);
        Ok(())
    }

    fn stop(&self) -> Result<(), gst::ErrorMessage> {
        // Joins the scoring threads once each has finished its frame.
        lock(&self.running).take();
        Ok(())
    }

    fn sink_event(&self, event: gst::Event) -> bool {
        match event.view() {
            gst::EventView::FlushStop(_) => {
                if let Some(running) = lock(&self.running).as_mut() {
                    running.in_flight.clear();
                }
            }
            _ if event.is_serialized() => {
                if let Err(e) = self.drain() {
                    gst::debug!(
                        CAT,
                        imp = self,
                        "draining before {:?}: {e:?}",
                        event.type_()
                    );
                }
            }
            _ => {}
        }
        self.parent_sink_event(event)
    }

    fn submit_input_buffer(
        &self,
        _is_discont: bool,
        buffer: gst::Buffer,
    ) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut guard = lock(&self.running);
        let running = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        let info = running.info.clone().ok_or(gst::FlowError::NotNegotiated)?;
        let (outcome, receive) = crossbeam_channel::bounded(1);
        let number = running.next_number;
        running.next_number += 1;
        let job = Job {
            buffer: buffer.clone(),
            info,
            number,
            outcome,
        };
        // Blocks only while every thread is busy and the queue holds `workers` frames, which
        // `generate_output` never lets happen: it waits for the oldest frame first.
        let jobs = running.jobs.as_ref().ok_or(gst::FlowError::Flushing)?;
        jobs.send(job).map_err(|_| gst::FlowError::Error)?;
        running.in_flight.push_back(InFlight {
            buffer,
            number,
            outcome: receive,
        });
        Ok(gst::FlowSuccess::Ok)
    }

    fn generate_output(&self) -> Result<GenerateOutputSuccess, gst::FlowError> {
        let mut guard = lock(&self.running);
        let running = guard.as_mut().ok_or(gst::FlowError::Flushing)?;
        loop {
            let Some(oldest) = running.in_flight.front() else {
                return Ok(GenerateOutputSuccess::NoOutput);
            };
            // With every worker busy the oldest frame must leave before another comes in.
            if running.in_flight.len() < running.workers && oldest.outcome.is_empty() {
                return Ok(GenerateOutputSuccess::NoOutput);
            }
            let frame = running.in_flight.pop_front().expect("a frame in flight");
            if let Some(buffer) = self.finish(running, frame)? {
                return Ok(GenerateOutputSuccess::Buffer(buffer));
            }
        }
    }
}

impl VideoFilterImpl for NapDetect {
    fn set_info(
        &self,
        incaps: &gst::Caps,
        in_info: &VideoInfo,
        outcaps: &gst::Caps,
        out_info: &VideoInfo,
    ) -> Result<(), gst::LoggableError> {
        if let Some(running) = lock(&self.running).as_mut() {
            running.info = Some(in_info.clone());
        }
        self.parent_set_info(incaps, in_info, outcaps, out_info)
    }
}
