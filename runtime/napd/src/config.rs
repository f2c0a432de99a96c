//! `napd`'s settings: command-line flags and the TOML config file are one set of options.
//!
//! [`Options`] is both the flag parser and the file's schema, so every flag has a config key of
//! the same name (`--ood-gpio` is `ood-gpio = "..."`) and nothing exists in only one of them.
//! Flags override the file. [`Options::resolve`] checks every value and gives [`Settings`].

use crate::drift::DriftAction;
use crate::flagged::CaptureOptions;
use crate::link::{LinkOptions, LinkSpec};
use crate::log::LogTarget;
use crate::ood_line::{GpioSpec, LineMode};
use crate::pipeline::PipelineOptions;
use crate::queue::Overflow;
use crate::source::raw::DEFAULT_MAX_FRAME_BYTES;
use crate::source::{SourceOptions, SourceSpec};
use crate::telemetry::{
    BrokerUrl, MqttOptions, check_device_id, default_device_id, parse_metrics_addr,
};
use nap_runtime::limits::read_capped;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest config file read: 64 KiB, many times a fully commented one.
pub const MAX_CONFIG_BYTES: u64 = 64 << 10;

/// Every setting, as given (flags or config keys); `None` means not given.
#[derive(clap::Args, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Options {
    /// The model bundle (made by `napctl split`, with a threshold from `napctl calibrate` or
    /// --threshold).
    #[arg(long, value_name = "MODEL.nap")]
    pub bundle: Option<PathBuf>,
    /// Accept only bundles signed by these keys (`napctl sign`): a PEM public key file, or a
    /// folder of them (*.pub). An unsigned bundle, one signed by another key or one changed
    /// after signing is refused before it is loaded [default: any bundle].
    #[arg(long, value_name = "FILE|DIR")]
    pub trusted_keys: Option<PathBuf>,
    /// Where frames come from: dir:PATH (images of a folder, in name order), raw:PATH or raw:-
    /// (raw frame stream from a file, FIFO or stdin; format in the README), v4l2:/dev/videoN
    /// (camera; builds with the `v4l2` feature), gst:'PIPELINE' (a gst-launch-1.0 description,
    /// e.g. 'libcamerasrc' or 'filesrc location=drive.mkv ! decodebin'; napd appends
    /// `videoconvert ! appsink` unless it ends in an appsink; builds with the `gstreamer`
    /// feature).
    #[arg(long, value_name = "SRC")]
    pub source: Option<String>,
    /// The controller link: serial:/dev/ttyX@BAUD, tcp:HOST:PORT or none [default: none].
    #[arg(long, value_name = "LINK")]
    pub link: Option<String>,
    /// A gpio-cdev output line raised for OOD frames, as CHIP:LINE (e.g. gpiochip0:17).
    #[arg(long, value_name = "CHIP:LINE")]
    pub ood_gpio: Option<String>,
    /// How the OOD line shows a verdict: `level` (high while the latest frame is OOD) or
    /// `pulse:MS` (high for MS milliseconds per OOD frame) [default: pulse:50].
    #[arg(long, value_name = "MODE")]
    pub ood_line: Option<String>,
    /// The verdict log: jsonl:PATH (appended), - (stdout) or none [default: none].
    #[arg(long, value_name = "jsonl:PATH|-")]
    pub log: Option<String>,
    /// Scoring threads [default: 1].
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Frames waiting between the source and the workers; bounds the latency [default: 2].
    #[arg(long, value_name = "N")]
    pub queue: Option<usize>,
    /// When the queue is full: drop-oldest (count the drop) or block (wait for the workers)
    /// [default: drop-oldest for cameras, streams and paced replays; block for files].
    #[arg(long, value_name = "POLICY")]
    pub overflow: Option<String>,
    /// Replay a dir: source at this many frames per second, like a camera [default: as fast as
    /// scored].
    #[arg(long, value_name = "FPS")]
    pub fps: Option<f64>,
    /// Decide OOD as score < THRESHOLD instead of the bundle's threshold.
    #[arg(long, value_name = "THRESHOLD", allow_negative_numbers = true)]
    pub threshold: Option<f32>,
    /// Heartbeat period on the link, in milliseconds [default: 100].
    #[arg(long, value_name = "MS")]
    pub heartbeat_ms: Option<u64>,
    /// Wait between reconnection attempts after the link, the MQTT broker or an rtsp:// camera
    /// is lost, in milliseconds [default: 500].
    #[arg(long, value_name = "MS")]
    pub reconnect_ms: Option<u64>,
    /// The jitter buffer of an rtsp:// source, in milliseconds: more absorbs a worse network,
    /// less keeps frames fresher [default: 200].
    #[arg(long, value_name = "MS")]
    pub rtsp_latency_ms: Option<u64>,
    /// Period of the stats lines and health updates, in milliseconds [default: 5000].
    #[arg(long, value_name = "MS")]
    pub stats_ms: Option<u64>,
    /// Largest frame accepted, in bytes: a raw frame's declared size, or an image file's size
    /// in a dir: source; larger ones are rejected unread [default: 33554432].
    #[arg(long, value_name = "BYTES")]
    pub max_frame_bytes: Option<usize>,
    /// Verdicts the drift alarm looks back over; it tests their OOD rate against the rate the
    /// bundle's calibration implies (README: the test and its false-alarm rate). 0 turns it
    /// off [default: 600].
    #[arg(long, value_name = "N")]
    pub drift_window: Option<usize>,
    /// The share of familiar frames the bundle flags, which the drift alarm tests against
    /// [default: 1 - the TPR the bundle was calibrated at; needed with --threshold].
    #[arg(long, value_name = "RATE")]
    pub drift_rate: Option<f64>,
    /// What a raised drift alarm does: degrade (status Degraded, code 5, so the controller goes
    /// safe until it clears) or warn (log only) [default: degrade].
    #[arg(long, value_name = "ACTION")]
    pub drift_action: Option<String>,
    /// Save every OOD frame in this folder (created if missing), with a JSON sidecar: JPEG and
    /// PNG frames as they came, raw frames as PNG. `napctl review DIR` shows them [default: no
    /// capture].
    #[arg(long, value_name = "DIR")]
    pub capture: Option<PathBuf>,
    /// The most the capture folder may hold, in MiB; the oldest captures are deleted first
    /// [default: 256].
    #[arg(long, value_name = "MIB")]
    pub capture_max_mb: Option<u64>,
    /// The most OOD frames saved in any minute; more are skipped and counted. 0: no limit
    /// [default: 60].
    #[arg(long, value_name = "N")]
    pub capture_max_per_min: Option<u32>,
    /// Publish status, stats, OOD verdicts and drift events to this MQTT broker, under
    /// nap/<device-id>/: mqtt://HOST[:PORT] or mqtts://HOST[:PORT] (README: topics and
    /// payloads) [default: no MQTT].
    #[arg(long, value_name = "URL")]
    pub mqtt: Option<String>,
    /// This device's name in the MQTT topics [default: the host name].
    #[arg(long, value_name = "ID")]
    pub device_id: Option<String>,
    /// A file (mode 600) holding the broker's USER:PASSWORD on one line.
    #[arg(long, value_name = "FILE")]
    pub mqtt_credentials: Option<PathBuf>,
    /// The CA certificate(s), PEM, that an mqtts:// broker's certificate chains to.
    #[arg(long, value_name = "FILE")]
    pub mqtt_ca: Option<PathBuf>,
    /// Publish every verdict (QoS 0), not only OOD ones (QoS 1).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub mqtt_all_verdicts: Option<bool>,
    /// MQTT messages kept while the broker is away; when full, the oldest is dropped and
    /// counted [default: 1000].
    #[arg(long, value_name = "N")]
    pub mqtt_queue: Option<usize>,
    /// Serve Prometheus metrics at http://ADDR/metrics: PORT (on 127.0.0.1) or ADDRESS:PORT
    /// (0.0.0.0:9464 to be scraped from other hosts) [default: off].
    #[arg(long, value_name = "[ADDR:]PORT")]
    pub metrics: Option<String>,
}

/// Checked settings, ready to run.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    /// The bundle's path.
    pub bundle: PathBuf,
    /// Where the keys a bundle must be signed by are, if any.
    pub trusted_keys: Option<PathBuf>,
    /// The frame source.
    pub source: SourceSpec,
    /// Source options.
    pub source_options: SourceOptions,
    /// The controller link.
    pub link: LinkSpec,
    /// Link timing.
    pub link_options: LinkOptions,
    /// The OOD line, if any.
    pub ood_gpio: Option<GpioSpec>,
    /// How the line shows verdicts.
    pub ood_line: LineMode,
    /// The verdict log.
    pub log: LogTarget,
    /// Workers, queue, overflow, stats period.
    pub pipeline: PipelineOptions,
    /// A threshold replacing the bundle's.
    pub threshold: Option<f32>,
    /// The drift alarm's settings.
    pub drift: DriftOptions,
    /// Where OOD frames are saved, if anywhere.
    pub capture: Option<CaptureOptions>,
    /// MQTT telemetry, if on.
    pub mqtt: Option<MqttOptions>,
    /// Where the Prometheus metrics are served, if anywhere.
    pub metrics: Option<SocketAddr>,
}

/// The drift alarm as configured; the bundle supplies the expected rate when none is given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DriftOptions {
    /// Verdicts looked back over; 0: off.
    pub window: usize,
    /// The expected OOD rate, if given.
    pub rate: Option<f64>,
    /// What a raised alarm does.
    pub action: DriftAction,
}

fn in_range<T: PartialOrd + std::fmt::Display + Copy>(
    name: &str,
    value: Option<T>,
    default: T,
    lo: T,
    hi: T,
) -> Result<T, String> {
    let v = value.unwrap_or(default);
    if v < lo || v > hi {
        return Err(format!("{name} = {v} is out of range {lo}..={hi}"));
    }
    Ok(v)
}

impl Options {
    /// Reads a TOML config file of at most [`MAX_CONFIG_BYTES`].
    pub fn from_file(path: &Path) -> Result<Options, String> {
        let name = path.display();
        let bytes =
            read_capped(path, MAX_CONFIG_BYTES).map_err(|e| format!("config {name}: {e}"))?;
        let text =
            String::from_utf8(bytes).map_err(|e| format!("config {name}: not UTF-8 text ({e})"))?;
        Options::from_toml(&text).map_err(|e| format!("config {name}: {e}"))
    }

    /// Parses TOML text; unknown keys are errors (a typo must not be silently ignored).
    pub fn from_toml(text: &str) -> Result<Options, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// These options, with `base` filling what is not given here.
    pub fn over(self, base: Options) -> Options {
        Options {
            bundle: self.bundle.or(base.bundle),
            trusted_keys: self.trusted_keys.or(base.trusted_keys),
            source: self.source.or(base.source),
            link: self.link.or(base.link),
            ood_gpio: self.ood_gpio.or(base.ood_gpio),
            ood_line: self.ood_line.or(base.ood_line),
            log: self.log.or(base.log),
            workers: self.workers.or(base.workers),
            queue: self.queue.or(base.queue),
            overflow: self.overflow.or(base.overflow),
            fps: self.fps.or(base.fps),
            threshold: self.threshold.or(base.threshold),
            heartbeat_ms: self.heartbeat_ms.or(base.heartbeat_ms),
            reconnect_ms: self.reconnect_ms.or(base.reconnect_ms),
            rtsp_latency_ms: self.rtsp_latency_ms.or(base.rtsp_latency_ms),
            stats_ms: self.stats_ms.or(base.stats_ms),
            max_frame_bytes: self.max_frame_bytes.or(base.max_frame_bytes),
            drift_window: self.drift_window.or(base.drift_window),
            drift_rate: self.drift_rate.or(base.drift_rate),
            drift_action: self.drift_action.or(base.drift_action),
            capture: self.capture.or(base.capture),
            capture_max_mb: self.capture_max_mb.or(base.capture_max_mb),
            capture_max_per_min: self.capture_max_per_min.or(base.capture_max_per_min),
            mqtt: self.mqtt.or(base.mqtt),
            device_id: self.device_id.or(base.device_id),
            mqtt_credentials: self.mqtt_credentials.or(base.mqtt_credentials),
            mqtt_ca: self.mqtt_ca.or(base.mqtt_ca),
            mqtt_all_verdicts: self.mqtt_all_verdicts.or(base.mqtt_all_verdicts),
            mqtt_queue: self.mqtt_queue.or(base.mqtt_queue),
            metrics: self.metrics.or(base.metrics),
        }
    }

    /// Checks every value and fills the defaults.
    pub fn resolve(&self) -> Result<Settings, String> {
        let bundle = self
            .bundle
            .clone()
            .ok_or("no bundle: pass --bundle MODEL.nap or set `bundle` in the config")?;
        let source: SourceSpec = self
            .source
            .as_deref()
            .ok_or("no source: pass --source SRC or set `source` in the config")?
            .parse()
            .map_err(|e: crate::source::SourceSpecError| e.to_string())?;
        let link: LinkSpec = self.link.as_deref().unwrap_or("none").parse()?;
        let ood_gpio = self.ood_gpio.as_deref().map(str::parse).transpose()?;
        let ood_line: LineMode = self.ood_line.as_deref().unwrap_or("pulse:50").parse()?;
        let log: LogTarget = self.log.as_deref().unwrap_or("none").parse()?;
        let overflow = self
            .overflow
            .as_deref()
            .map(str::parse::<Overflow>)
            .transpose()?;
        if let Some(fps) = self.fps {
            if !matches!(source, SourceSpec::Dir(_)) {
                return Err("fps applies to dir: sources only".into());
            }
            if !(fps.is_finite() && fps > 0.0 && fps <= 10_000.0) {
                return Err(format!("fps = {fps} must be a number in (0, 10000]"));
            }
        }
        if let Some(t) = self.threshold
            && !t.is_finite()
        {
            return Err(format!("threshold = {t} is not a finite number"));
        }
        let workers = in_range("workers", self.workers, 1, 1, 64)?;
        let queue = in_range("queue", self.queue, 2, 1, 1024)?;
        let heartbeat = in_range("heartbeat-ms", self.heartbeat_ms, 100, 10, 60_000)?;
        let reconnect = in_range("reconnect-ms", self.reconnect_ms, 500, 10, 600_000)?;
        let rtsp_latency = in_range("rtsp-latency-ms", self.rtsp_latency_ms, 200, 0, 60_000)?;
        let stats = in_range("stats-ms", self.stats_ms, 5000, 100, 3_600_000)?;
        let max_frame_bytes = in_range(
            "max-frame-bytes",
            self.max_frame_bytes,
            DEFAULT_MAX_FRAME_BYTES,
            1,
            1 << 30,
        )?;
        let drift_window = in_range("drift-window", self.drift_window, 600, 0, 1_000_000)?;
        if drift_window != 0 && drift_window < 10 {
            return Err(format!(
                "drift-window = {drift_window}: at least 10 verdicts (0: off)"
            ));
        }
        if let Some(rate) = self.drift_rate
            && !(rate > 0.0 && rate < 1.0)
        {
            return Err(format!("drift-rate = {rate} must be in (0, 1)"));
        }
        let drift_action = self.drift_action.as_deref().unwrap_or("degrade").parse()?;
        let capture_max_mb = in_range("capture-max-mb", self.capture_max_mb, 256, 1, 1 << 24)?;
        let capture_max_per_min = in_range(
            "capture-max-per-min",
            self.capture_max_per_min,
            60,
            0,
            1_000_000,
        )?;
        if self.capture.is_none()
            && (self.capture_max_mb.is_some() || self.capture_max_per_min.is_some())
        {
            return Err(
                "capture-max-mb and capture-max-per-min need a capture folder (--capture DIR)"
                    .into(),
            );
        }
        let mqtt = self.mqtt_options(Duration::from_millis(reconnect))?;
        Ok(Settings {
            bundle,
            trusted_keys: self.trusted_keys.clone(),
            source,
            source_options: SourceOptions {
                fps: self.fps,
                max_frame_bytes,
                reconnect: Duration::from_millis(reconnect),
                rtsp_latency: Duration::from_millis(rtsp_latency),
            },
            link,
            link_options: LinkOptions {
                heartbeat: Duration::from_millis(heartbeat),
                reconnect: Duration::from_millis(reconnect),
                ..LinkOptions::default()
            },
            ood_gpio,
            ood_line,
            log,
            pipeline: PipelineOptions {
                workers,
                queue,
                overflow,
                stats_interval: Duration::from_millis(stats),
            },
            threshold: self.threshold,
            drift: DriftOptions {
                window: drift_window,
                rate: self.drift_rate,
                action: drift_action,
            },
            capture: self.capture.clone().map(|dir| CaptureOptions {
                dir,
                max_bytes: capture_max_mb << 20,
                max_per_min: capture_max_per_min,
            }),
            mqtt,
            metrics: self
                .metrics
                .as_deref()
                .map(parse_metrics_addr)
                .transpose()?,
        })
    }

    /// The MQTT settings: none without a broker URL, and then no other MQTT key either.
    fn mqtt_options(&self, reconnect: Duration) -> Result<Option<MqttOptions>, String> {
        let queue = in_range("mqtt-queue", self.mqtt_queue, 1000, 1, 1_000_000)?;
        let Some(url) = &self.mqtt else {
            if self.device_id.is_some()
                || self.mqtt_credentials.is_some()
                || self.mqtt_ca.is_some()
                || self.mqtt_all_verdicts.is_some()
                || self.mqtt_queue.is_some()
            {
                return Err("device-id and the mqtt-* settings need a broker (--mqtt URL)".into());
            }
            return Ok(None);
        };
        let broker: BrokerUrl = url.parse()?;
        let device_id = self.device_id.clone().unwrap_or_else(default_device_id);
        check_device_id(&device_id)?;
        if self.mqtt_ca.is_some() && !broker.tls {
            return Err("mqtt-ca is for mqtts:// brokers only".into());
        }
        Ok(Some(MqttOptions {
            broker,
            device_id,
            credentials: self.mqtt_credentials.clone(),
            ca: self.mqtt_ca.clone(),
            all_verdicts: self.mqtt_all_verdicts.unwrap_or(false),
            queue,
            reconnect,
        }))
    }
}
