//! The daemon's life: open the link first (so even a failure to start reaches the controller as a
//! fault status), load the bundle, open the OOD line and the source, run the pipeline, and end
//! with a final status.

use crate::DaemonError;
use crate::config::Settings;
use crate::drift::{self, Drift, DriftAlarm};
use crate::flagged::Capture;
use crate::link::Link;
use crate::log::JsonLog;
use crate::memory;
use crate::ood_line::{OodOutput, open_gpio_cdev};
use crate::pipeline::{self, Scorer, Summary};
use crate::scorer::DetectorScorer;
use crate::source;
use crate::status;
use crate::telemetry::{self, Sink, Telemetry};
use nap_runtime::bundle::signature::{TrustError, TrustedKeys};
use nap_runtime::bundle::{BundleFile, Manifest};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

/// How long a failing daemon tries to reach the controller with its fault status.
pub const FAULT_PATIENCE: Duration = Duration::from_secs(2);

/// How a daemon run ended, for the exit code.
#[derive(Debug)]
pub struct Served {
    /// 0 for a clean end (end of stream, SIGINT / SIGTERM), 1 otherwise.
    pub exit_code: u8,
    /// What the pipeline did, if it ran.
    pub summary: Option<Summary>,
    /// Why it could not start or ended badly.
    pub error: Option<DaemonError>,
}

/// Loads the bundle and everything it needs, without running: `napd --check`. Gives a report
/// of what would run.
pub fn check(settings: &Settings) -> Result<String, DaemonError> {
    let file = read_bundle(settings)?;
    let signer = file.signature.as_ref().map(|s| s.fingerprint());
    let scorer = DetectorScorer::new(file.bundle, settings.threshold)?;
    drop(scorer.worker().map_err(DaemonError::Bundle)?);
    let m = scorer.manifest();
    let (_, drift) = drift_alarm(settings, m)?;
    if let Some(path) = settings.mqtt.as_ref().and_then(|m| m.credentials.as_ref()) {
        telemetry::read_credentials(path).map_err(DaemonError::Config)?;
    }
    Ok(format!(
        "bundle {} (sha256 {}): {} ({}x{} input, {:?} scorer, threshold {})\nsignature {}\ndrift alarm {drift}\ncapture {}\nsource {}\nlink {}\nOOD line {}\nlog {:?}\nmqtt {}\nmetrics {}\nworkers {}, queue {}",
        settings.bundle.display(),
        file.sha256,
        m.source,
        m.input.size,
        m.input.size,
        m.scorer.method,
        scorer.threshold(),
        signer.map_or("not checked (no trusted keys)".to_string(), |key| format!(
            "by {key}, trusted"
        )),
        settings
            .capture
            .as_ref()
            .map_or("off".to_string(), |c| format!(
                "OOD frames to {}, up to {} MiB, {} a minute{}",
                c.dir.display(),
                c.max_bytes >> 20,
                c.max_per_min,
                if c.max_per_min == 0 {
                    " (no limit)"
                } else {
                    ""
                }
            )),
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
        settings
            .mqtt
            .as_ref()
            .map_or("off".to_string(), |m| format!(
                "{} as nap/{}/ (queue {}{}{})",
                m.broker,
                m.device_id,
                m.queue,
                if m.all_verdicts {
                    ", every verdict"
                } else {
                    ""
                },
                if m.credentials.is_some() {
                    ", with credentials"
                } else {
                    ""
                },
            )),
        settings
            .metrics
            .map_or("off".to_string(), |a| format!("http://{a}/metrics")),
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
            let link = Link::open(&settings.link, settings.link_options, status::STARTING);
            return fail(link, &[], &mut JsonLog::none(), DaemonError::Config(e));
        }
    };
    let link = Link::open(&settings.link, settings.link_options, status::STARTING);
    let sinks = match open_sinks(settings, &mut log) {
        Ok(sinks) => sinks,
        Err(e) => return fail(link, &[], &mut log, e),
    };
    for sink in &sinks {
        sink.status(status::STARTING);
    }
    let Started {
        scorer,
        mut line,
        source,
        drift,
        capture,
        bundle,
    } = match start(settings) {
        Ok(started) => started,
        Err(e) => return fail(link, &sinks, &mut log, e),
    };
    link.status(status::OK);
    for sink in &sinks {
        sink.bundle(&bundle);
        sink.status(status::OK);
    }
    let summary = pipeline::run(
        Arc::new(scorer),
        source,
        pipeline::Outputs {
            link: &link,
            line: line.as_deref_mut().map(|l| l as &mut dyn OodOutput),
            log: &mut log,
            drift,
            capture,
            telemetry: sinks.iter().map(|s| s.as_ref() as &dyn Telemetry).collect(),
        },
        &settings.pipeline,
        &stop,
    );
    let mut last = summary.to_json();
    close_sinks(&sinks, summary.reason.status(), &mut last, &mut log);
    log.write(&last);
    // A clean end gets the same patience: the controller should learn why verdicts stopped.
    link.close(summary.reason.status(), FAULT_PATIENCE);
    Served {
        exit_code: if summary.reason.is_clean() { 0 } else { 1 },
        error: summary.reason.error().cloned(),
        summary: Some(summary),
    }
}

/// Reads the bundle, and with `--trusted-keys` first checks that a trusted key signed it.
fn read_bundle(settings: &Settings) -> Result<BundleFile, DaemonError> {
    let keys = settings
        .trusted_keys
        .as_ref()
        .map(|keys| TrustedKeys::load(keys).map_err(|e| DaemonError::Config(e.to_string())))
        .transpose()?;
    BundleFile::read(&settings.bundle, keys.as_ref()).map_err(|e| match e {
        TrustError::Bundle(e) => DaemonError::Bundle(format!("bundle: {e}")),
        e => DaemonError::Untrusted(format!("bundle {}: {e}", settings.bundle.display())),
    })
}

/// What the pipeline runs with.
struct Started {
    scorer: DetectorScorer,
    line: Option<Box<dyn OodOutput>>,
    source: Box<dyn source::Source>,
    drift: Option<DriftAlarm>,
    capture: Option<Capture>,
    /// The bundle as the fleet sees it: file, hash, method, threshold, precision.
    bundle: serde_json::Value,
}

/// The drift alarm for this run (`None` when off) and what it does, in words.
fn drift_alarm(
    settings: &Settings,
    manifest: &Manifest,
) -> Result<(Option<DriftAlarm>, String), DaemonError> {
    let d = settings.drift;
    if d.window == 0 {
        return Ok((None, "off (drift-window = 0)".into()));
    }
    let rate = match (d.rate, settings.threshold, manifest.scorer.tpr) {
        (Some(rate), _, _) => rate,
        (None, None, Some(tpr)) => 1.0 - f64::from(tpr),
        (None, Some(_), _) => {
            return Ok((None, "off: --threshold replaces the calibrated one, so the expected OOD rate is unknown (give --drift-rate)".into()));
        }
        (None, None, None) => {
            return Ok((None, "off: the bundle has no calibrated TPR (napctl calibrate) to expect an OOD rate from (give --drift-rate)".into()));
        }
    };
    let test = Drift::new(d.window, rate).map_err(DaemonError::Config)?;
    let said = format!(
        "over the last {} verdicts: raised at {} OOD or more (expected rate {:.1}%, false alarms <= {:e} per verdict), cleared at {} or fewer; action {:?}",
        test.window(),
        test.raise_at(),
        100.0 * rate,
        drift::ALPHA,
        test.clear_at(),
        d.action,
    );
    Ok((
        Some(DriftAlarm {
            test,
            action: d.action,
        }),
        said,
    ))
}

/// Everything the pipeline needs, in the order a failure should be reported: the bundle and its
/// detector, the capture folder, the OOD line, the source.
fn start(settings: &Settings) -> Result<Started, DaemonError> {
    let file = read_bundle(settings)?;
    eprintln!(
        "napd: bundle {} (sha256 {})",
        settings.bundle.display(),
        file.sha256
    );
    let scorer = DetectorScorer::new(file.bundle, settings.threshold)?;
    // The daemon runs for months: loading's freed heap and code go back to the system.
    memory::release_freed_heap();
    memory::release_startup_code();
    let m = scorer.manifest();
    let bundle = serde_json::json!({
        "file": settings.bundle.display().to_string(),
        "sha256": file.sha256,
        "method": m.scorer.method.name(),
        "threshold": scorer.threshold(),
        "precision": m.backbone.precision,
    });
    let (drift, said) = drift_alarm(settings, m)?;
    eprintln!("napd: drift alarm {said}");
    let capture = settings
        .capture
        .as_ref()
        .map(|c| Capture::open(c, &file.sha256))
        .transpose()
        .map_err(DaemonError::Config)?;
    let line: Option<Box<dyn OodOutput>> = match &settings.ood_gpio {
        None => None,
        Some(spec) => Some(Box::new(
            open_gpio_cdev(spec, settings.ood_line).map_err(DaemonError::Config)?,
        )),
    };
    let source = source::open(&settings.source, &settings.source_options)
        .map_err(|e| DaemonError::Source(format!("source: {e}")))?;
    Ok(Started {
        scorer,
        line,
        source,
        drift,
        capture,
        bundle,
    })
}

/// Fails before the pipeline runs: fault status to the controller (and the broker), a log
/// line, exit 1.
fn fail(link: Link, sinks: &[Box<dyn Sink>], log: &mut JsonLog, error: DaemonError) -> Served {
    eprintln!("napd: {error}");
    let mut last = serde_json::json!({
        "type": "final",
        "reason": "fault",
        "code": error.code(),
        "error": error.to_string(),
    });
    close_sinks(sinks, error.status(), &mut last, log);
    log.write(&last);
    if !link.close(error.status(), FAULT_PATIENCE) {
        eprintln!("napd: the fault status could not be delivered (link down)");
    }
    Served {
        exit_code: 1,
        summary: None,
        error: Some(error),
    }
}

/// The telemetry sinks asked for. A broker that cannot be set up is a configuration error; a
/// metrics port that cannot be bound is logged, and napd goes on without metrics.
fn open_sinks(settings: &Settings, log: &mut JsonLog) -> Result<Vec<Box<dyn Sink>>, DaemonError> {
    let mut sinks = Vec::new();
    if let Some(options) = &settings.mqtt {
        sinks.push(telemetry::open_mqtt(options).map_err(DaemonError::Config)?);
    }
    if let Some(addr) = settings.metrics {
        match telemetry::open_metrics(addr) {
            Ok(sink) => sinks.push(sink),
            Err(e) => {
                eprintln!("napd: {e}; going on without metrics");
                log.write(&serde_json::json!({"type": "metrics", "event": "failed", "error": e}));
            }
        }
    }
    Ok(sinks)
}

/// The last status to every sink, then each is closed; their final counters go into `last`,
/// their last connection events into the log.
fn close_sinks(
    sinks: &[Box<dyn Sink>],
    status: nap_core::protocol::RuntimeStatus,
    last: &mut serde_json::Value,
    log: &mut JsonLog,
) {
    for sink in sinks {
        sink.status(status);
        if let Some((key, counts)) = sink.close(FAULT_PATIENCE) {
            last[key] = counts;
        }
        for event in sink.events() {
            log.write(&event);
        }
    }
}
