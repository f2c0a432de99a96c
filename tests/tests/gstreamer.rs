//! GStreamer on real pipelines (cargo feature `gstreamer`), with the shared MobileNetV2 bundle:
//! napd's `gst:` and `rtsp://` sources, and the `napdetect` element.
//!
//! - `videotestsrc` gives one verdict per frame, in order, and its end of stream ends napd
//!   cleanly;
//! - a video file the test encodes with GStreamer (MJPEG in AVI) from real photos and textures
//!   gives, through `gst:`, the verdicts the same frames give through `raw:`, within what lossy
//!   encoding moves a score;
//! - a real RTSP server (gst-rtsp-server, `src/bin/rtsp_serve.rs`) serving that file: `rtsp://`
//!   gives the file's verdicts; the server killed mid-stream and started again: napd reports
//!   `Degraded` 6, reconnects, resumes with `Ok`, every frame accounted, exit 0 when stopped;
//! - a description that does not parse, a missing element, caps napd cannot read, a sink that
//!   is not an appsink and an RTSP camera that does not answer are each a source failure naming
//!   the cause;
//! - `napdetect` loaded by `gst-launch-1.0` from `GST_PLUGIN_PATH`: its `nap-verdict` messages
//!   for the file are napd's verdicts, `drop-ood=true` passes exactly the frames napd finds in
//!   distribution, each buffer carries its verdict as a `NapVerdictMeta`, `gst-inspect-1.0`
//!   documents it, and bad settings fail the pipeline with their cause.
//!
//! `cargo test -p nap-tests --features gstreamer --test gstreamer` (needs GStreamer's development
//! packages, plugins-base and -good, and gst-launch-1.0).
#![cfg(feature = "gstreamer")]

use image::imageops::FilterType;
use nap_test_support::broker::free_port;
use nap_test_support::data::shared_data_file;
use nap_test_support::tools::require;
use napctl::images;
use napd::source::PixelFormat;
use napd::source::raw::encode_frame;
use napd::status::code;
use napd::{Options, Served};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Frames taken from each image set (every `STRIDE`-th photo).
const PER_SET: usize = 12;
const STRIDE: usize = 7;
const WIDTH: u32 = 320;
const HEIGHT: u32 = 240;

struct Fixture {
    bundle: PathBuf,
    /// (frame name, score) of the same frames through a `raw:` stream (RGB8), in order.
    raw_scores: Vec<(String, f32)>,
    /// The same frames as MJPEG (quality 95, 4:2:0) in AVI at 5 frames per second.
    video: PathBuf,
    /// The median score of the frames through `raw:`: half of them are OOD.
    threshold: f32,
    /// The bundle with `threshold` as its calibrated threshold.
    calibrated: PathBuf,
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let images = shared_data_file("images")?;
            let bundle = tmp("gstreamer.nap");
            nap_test_support::mobilenet::float_bundle()?
                .write(&bundle)
                .unwrap();
            let frames = tmp("gstreamer_frames");
            let _ = std::fs::remove_dir_all(&frames);
            std::fs::create_dir_all(&frames).unwrap();
            let mut raw = Vec::new();
            let sets = ["id-imagenet", "ood-dtd"];
            let files = sets.iter().flat_map(|set| {
                let all = images::collect(&[images.join(set)]).unwrap();
                all.into_iter().step_by(STRIDE).take(PER_SET)
            });
            for (i, file) in files.enumerate() {
                let img = image::open(&file.path).unwrap();
                let rgb = img
                    .resize_exact(WIDTH, HEIGHT, FilterType::Triangle)
                    .to_rgb8();
                rgb.save(frames.join(format!("frame_{i:03}.png"))).unwrap();
                raw.extend(encode_frame(PixelFormat::Rgb8, WIDTH, HEIGHT, rgb.as_raw()).unwrap());
            }
            let raw_path = tmp("gstreamer_frames.raw");
            std::fs::write(&raw_path, raw).unwrap();
            let video = tmp("gstreamer_frames.avi");
            let status = Command::new(require("gst-launch-1.0")?)
                .arg("-q")
                .args(format!(
                    "multifilesrc location={}/frame_%03d.png index=0 caps=image/png,framerate=5/1 ! pngdec ! videoconvert ! video/x-raw,format=I420 ! jpegenc quality=95 ! avimux ! filesink location={}",
                    frames.display(),
                    video.display()
                ).split(' '))
                .status()
                .unwrap();
            assert!(status.success(), "encoding the test video failed");
            let mut fx = Fixture {
                bundle,
                raw_scores: Vec::new(),
                video,
                threshold: f32::MAX,
                calibrated: tmp("gstreamer_calibrated.nap"),
            };
            let (served, log) = serve(&fx, format!("raw:{}", raw_path.display()), "raw");
            assert_eq!(served.exit_code, 0);
            fx.raw_scores = scores(&log);
            let mut sorted: Vec<f32> = fx.raw_scores.iter().map(|(_, s)| *s).collect();
            sorted.sort_by(f32::total_cmp);
            fx.threshold = sorted[sorted.len() / 2];
            let mut calibrated = nap_runtime::bundle::Bundle::read(&fx.bundle).unwrap();
            calibrated.manifest.scorer.threshold = Some(fx.threshold);
            calibrated.write(&fx.calibrated).unwrap();
            Some(fx)
        })
        .as_ref()
}

fn serve(fx: &Fixture, source: String, log: &str) -> (Served, Vec<Value>) {
    let log = tmp(&format!("{log}.jsonl"));
    let _ = std::fs::remove_file(&log);
    let options = Options {
        bundle: Some(fx.bundle.clone()),
        source: Some(source),
        log: Some(format!("jsonl:{}", log.display())),
        workers: Some(2),
        threshold: Some(fx.threshold),
        stats_ms: Some(500),
        ..Options::default()
    };
    let served = napd::serve(
        &options.resolve().unwrap(),
        Arc::new(AtomicBool::new(false)),
    );
    (served, read_log(&log))
}

/// (frame name, score) of each verdict, in log order.
fn scores(log: &[Value]) -> Vec<(String, f32)> {
    log.iter()
        .filter(|v| v["type"] == "verdict")
        .map(|v| {
            let name = v["frame"].as_str().unwrap().to_string();
            (name, v["score"].as_f64().unwrap() as f32)
        })
        .collect()
}

fn final_line(log: &[Value]) -> &Value {
    log.iter()
        .rfind(|v| v["type"] == "final")
        .expect("a final line")
}

#[test]
fn videotestsrc_gives_one_verdict_per_frame_in_order() {
    let Some(fx) = fixture() else { return };
    let source =
        format!("gst:videotestsrc num-buffers=24 ! video/x-raw,width={WIDTH},height={HEIGHT}");
    let (served, log) = serve(fx, source, "videotestsrc");
    assert_eq!(served.exit_code, 0, "{:?}", served.error);
    let names: Vec<String> = scores(&log).into_iter().map(|(n, _)| n).collect();
    let expected: Vec<String> = (0..24).map(|i| format!("gst:{i}")).collect();
    assert_eq!(names, expected);
    let seqs: Vec<u64> = log
        .iter()
        .filter(|v| v["type"] == "verdict")
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (0..24).collect::<Vec<u64>>());
    // The pipeline's timestamps: videotestsrc's default 30 frames per second.
    let pts: Vec<u64> = log
        .iter()
        .filter(|v| v["type"] == "verdict")
        .map(|v| v["pts_us"].as_u64().unwrap())
        .collect();
    assert_eq!(
        pts,
        (0..24).map(|i| i * 1_000_000 / 30).collect::<Vec<u64>>()
    );
    let end = final_line(&log);
    assert_eq!(end["reason"], "end_of_stream");
    assert_eq!(
        (end["dropped"].as_u64(), end["bad"].as_u64()),
        (Some(0), Some(0))
    );
}

/// JPEG at quality 95 with 4:2:0 chroma, then YUV back to RGB, moves MobileNetV2's NAP-E score
/// by up to 6% on these frames (measured: 5.75%); a frame that went missing, came twice or out of
/// order would move it far more.
#[test]
fn a_video_file_gives_the_raw_verdicts() {
    let Some(fx) = fixture() else { return };
    let (raw, gst) = (&fx.raw_scores, scores(file_log(fx)));
    assert_eq!(raw.len(), 2 * PER_SET);
    assert_eq!(gst.len(), raw.len(), "one verdict per frame of the file");
    let mut worst = 0.0f32;
    for (i, ((_, r), (name, g))) in raw.iter().zip(&gst).enumerate() {
        assert_eq!(name, &format!("gst:{i}"));
        worst = worst.max((g - r).abs() / r.abs());
    }
    println!("largest relative score change through MJPEG: {worst:.4}");
    assert!(worst < 0.08, "a score moved by {worst}");
    // Verdicts agree but where lossy encoding carries a score across the threshold.
    let flipped = raw
        .iter()
        .zip(&gst)
        .filter(|((_, r), (_, g))| (*r < fx.threshold) != (*g < fx.threshold))
        .filter(|((_, r), _)| (r - fx.threshold).abs() / fx.threshold > 0.08)
        .count();
    assert_eq!(flipped, 0, "a verdict far from the threshold changed");
}

/// napd's log for the video file through `gst:` (2 workers, the fixture's threshold).
fn file_log(fx: &Fixture) -> &'static [Value] {
    static LOG: OnceLock<Vec<Value>> = OnceLock::new();
    LOG.get_or_init(|| {
        let (served, log) = serve(fx, file_source(fx), "gst_file");
        assert_eq!(served.exit_code, 0, "{:?}", served.error);
        log
    })
}

/// The decoding both napd and the element's pipelines use, so they score the same pixels.
const FILE_DECODE: &str = "avidemux ! jpegdec";

fn file_source(fx: &Fixture) -> String {
    format!(
        "gst:filesrc location={} ! {FILE_DECODE}",
        fx.video.display()
    )
}

/// The test's RTSP server: gst-rtsp-server serving the fixture's video at `/cam`.
struct RtspServer {
    child: Child,
}

impl RtspServer {
    fn start(port: u16, video: &Path) -> RtspServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rtsp-serve"))
            .arg(port.to_string())
            .arg(video)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
        RtspServer { child }
    }
}

impl Drop for RtspServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The complete lines of napd's log (of a run that may still be writing it).
fn read_log(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
    complete
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Waits (at most a minute) until `ready` holds for napd's log so far.
fn wait_for(path: &Path, what: &str, ready: impl Fn(&[Value]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready(&read_log(path)) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn source_events(log: &[Value]) -> Vec<&str> {
    log.iter()
        .filter(|v| v["type"] == "source")
        .map(|v| v["event"].as_str().unwrap())
        .collect()
}

/// The file through `rtsp://` from a real server, which is killed after 8 verdicts and started
/// again a second later; napd is stopped when the restarted server's stream has ended.
#[test]
fn rtsp_gives_the_file_verdicts_and_survives_a_server_restart() {
    let Some(fx) = fixture() else { return };
    let file = scores(file_log(fx));

    let port = free_port();
    let mut server = Some(RtspServer::start(port, &fx.video));
    let log = tmp("rtsp.jsonl");
    let _ = std::fs::remove_file(&log);
    let stop = Arc::new(AtomicBool::new(false));
    let options = Options {
        bundle: Some(fx.bundle.clone()),
        source: Some(format!("rtsp://127.0.0.1:{port}/cam")),
        log: Some(format!("jsonl:{}", log.display())),
        workers: Some(2),
        threshold: Some(fx.threshold),
        reconnect_ms: Some(200),
        stats_ms: Some(500),
        ..Options::default()
    };
    let napd = {
        let stop = stop.clone();
        std::thread::spawn(move || napd::serve(&options.resolve().unwrap(), stop))
    };
    let verdicts = |log: &[Value]| log.iter().filter(|v| v["type"] == "verdict").count();
    wait_for(&log, "8 verdicts", |log| verdicts(log) >= 8);
    drop(server.take());
    wait_for(&log, "the loss", |log| source_events(log) == ["lost"]);
    std::thread::sleep(Duration::from_secs(1));
    server = Some(RtspServer::start(port, &fx.video));
    // The restarted server's stream plays to its end, which a camera source takes as a loss too.
    wait_for(&log, "the second stream's end", |log| {
        source_events(log) == ["lost", "resumed", "lost"]
    });
    stop.store(true, Ordering::Relaxed);
    let served = napd.join().unwrap();
    drop(server);
    assert_eq!(served.exit_code, 0, "{:?}", served.error);

    let log = read_log(&log);
    // The controller hears Degraded 6 while the camera is lost, Ok once frames come again.
    let statuses: Vec<u64> = log
        .iter()
        .filter(|v| v["type"] == "status")
        .map(|v| v["code"].as_u64().unwrap())
        .collect();
    let lost = u64::from(code::SOURCE_LOST);
    assert!(statuses.windows(2).any(|w| w == [lost, 0]), "{statuses:?}");
    // The restarted stream, between the resume and the second loss, is the file: the same
    // JPEG bytes, so the same scores (the stream's end may cut its last frame).
    let resumed = log.iter().position(|v| v["event"] == "resumed").unwrap();
    let second_loss = log.iter().rposition(|v| v["event"] == "lost").unwrap();
    let restarted = scores(&log[resumed..second_loss]);
    assert!(
        restarted.len() + 1 >= file.len(),
        "{} frames",
        restarted.len()
    );
    for ((_, r), (_, f)) in restarted.iter().zip(&file) {
        assert!((r - f).abs() <= 1e-4 * f.abs(), "{r} vs {f}");
    }
    // Every frame that entered napd has exactly one outcome.
    let end = final_line(&log);
    let frames = end["frames"].as_u64().unwrap();
    let outcomes = ["verdicts", "dropped", "bad"].map(|k| end[k].as_u64().unwrap());
    assert_eq!(outcomes.iter().sum::<u64>(), frames, "{end}");
    let mut seqs: Vec<u64> = log
        .iter()
        .filter(|v| ["verdict", "dropped", "error"].contains(&v["type"].as_str().unwrap()))
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..frames).collect::<Vec<u64>>());
    assert_eq!(end["reason"], "stopped");
}

#[test]
fn broken_pipelines_fail_the_source_with_their_cause() {
    let Some(fx) = fixture() else { return };
    for (description, cause) in [
        ("videotestsrc ! ! appsink", "syntax error"),
        ("nosuchelement ! appsink", "no element \"nosuchelement\""),
        (
            "videotestsrc num-buffers=3 ! video/x-raw,format=I420 ! appsink",
            "caps could not be negotiated",
        ),
        ("videotestsrc num-buffers=3 ! fakesink", "not an appsink"),
        (
            "filesrc location=/nonexistent.avi ! decodebin",
            "/nonexistent.avi",
        ),
    ] {
        let (served, log) = serve(fx, format!("gst:{description}"), "broken");
        assert_eq!(served.exit_code, 1, "{description}");
        let error = served.error.expect("an error").to_string();
        assert!(error.contains(cause), "{description}: {error}");
        let end = final_line(&log);
        assert_eq!(end["code"].as_u64(), Some(u64::from(code::SOURCE)), "{end}");
    }
    // Nothing listens on the port: napd says so at start instead of retrying for ever.
    let url = format!("rtsp://127.0.0.1:{}/cam", free_port());
    let (served, _) = serve(fx, url.clone(), "unreachable");
    assert_eq!(served.exit_code, 1);
    let error = served.error.expect("an error").to_string();
    assert!(error.contains(&url) && error.contains("connect"), "{error}");
}

/// What napd decided about one frame, from its log.
struct NapdVerdict {
    pts_us: u64,
    score: f32,
    ood: bool,
    top1: u32,
}

fn napd_verdicts(log: &[Value]) -> Vec<NapdVerdict> {
    log.iter()
        .filter(|v| v["type"] == "verdict")
        .map(|v| NapdVerdict {
            pts_us: v["pts_us"].as_u64().unwrap(),
            score: v["score"].as_f64().unwrap() as f32,
            ood: v["ood"].as_bool().unwrap(),
            top1: v["top1"].as_u64().unwrap() as u32,
        })
        .collect()
}

/// The plugin built with these tests (cargo builds a dependency's cdylib beside the test
/// binaries), alone in a folder for `GST_PLUGIN_PATH`.
fn plugin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().unwrap();
        let built = exe.parent().unwrap().join("libgstnapdetect.so");
        assert!(built.is_file(), "{} was not built", built.display());
        let dir = tmp("gst-plugins");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&built, dir.join("libgstnapdetect.so")).unwrap();
        dir
    })
}

/// A GStreamer tool run with the test's plugin; each call has a registry of its own, so no
/// cache of an older build answers.
fn gst_tool(tool: &str, args: &[&str], registry: &str) -> std::process::Output {
    let output = Command::new(tool)
        .args(args)
        .env("GST_PLUGIN_PATH", plugin_dir())
        .env("GST_REGISTRY", tmp(&format!("gst-registry-{registry}.bin")))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    output
}

/// `gst-launch-1.0 FLAG` on the fixture's video through `napdetect PROPERTIES ! SINK`.
fn launch_on_file(fx: &Fixture, flag: &str, properties: &str, sink: &str) -> (bool, String) {
    let description = format!(
        "filesrc location={} ! {FILE_DECODE} ! videoconvert ! napdetect {properties} ! {sink}",
        fx.video.display()
    );
    // gst-launch-1.0 quotes each argument as one token: the description goes word by word.
    let args: Vec<&str> = std::iter::once(flag)
        .chain(description.split_whitespace())
        .collect();
    let output = gst_tool("gst-launch-1.0", &args, "launch");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

/// The `nap-verdict` messages `gst-launch-1.0 -m` printed, in order.
fn bus_verdicts(text: &str) -> Vec<gstnapdetect::Verdict> {
    text.lines()
        .filter_map(|l| l.split_once("(element): nap-verdict"))
        .map(|(_, fields)| {
            let structure: gstreamer::Structure = format!("nap-verdict{fields}").parse().unwrap();
            gstnapdetect::Verdict::from_structure(&structure).unwrap()
        })
        .collect()
}

/// The element, run by `gst-launch-1.0` on the video with the calibrated bundle and 2 workers,
/// posts for each frame the verdict napd gives it through `gst:`: same frames, same order,
/// same timestamps, same scores to the bit (same decoder, same pixels, same detector).
#[test]
fn napdetect_messages_are_napds_verdicts() {
    let Some(fx) = fixture() else { return };
    let properties = format!("bundle={} workers=2", fx.calibrated.display());
    let (ok, text) = launch_on_file(fx, "-m", &properties, "fakesink");
    assert!(ok, "{text}");
    let (bus, napd) = (bus_verdicts(&text), napd_verdicts(file_log(fx)));
    assert_eq!(napd.len(), 2 * PER_SET);
    assert_eq!(bus.len(), napd.len(), "one message per frame");
    for (i, (b, n)) in bus.iter().zip(&napd).enumerate() {
        assert_eq!(b.frame, i as u64);
        assert_eq!(b.pts.map(|t| t.useconds()), Some(n.pts_us), "frame {i}");
        assert_eq!(
            (b.score, b.ood, b.top1),
            (n.score, n.ood, n.top1),
            "frame {i}"
        );
        // The bundle's calibrated threshold and deciding method, with no property naming them.
        assert_eq!((b.threshold, b.method.as_str()), (fx.threshold, "NAP-E"));
    }
}

/// `drop-ood=true`: what reaches the sink is exactly the frames napd calls in distribution, each
/// with its verdict attached.
#[test]
fn napdetect_drop_ood_passes_exactly_the_in_distribution_frames() {
    let Some(fx) = fixture() else { return };
    let properties = format!("bundle={} drop-ood=true", fx.calibrated.display());
    let (ok, text) = launch_on_file(fx, "-v", &properties, "fakesink silent=false");
    assert!(ok, "{text}");
    let passed: Vec<u64> = text
        .lines()
        .filter(|l| l.contains("last-message = chain"))
        .map(|l| {
            assert!(l.contains("NapVerdictMeta"), "{l}");
            let pts = l.split("pts: ").nth(1).unwrap().split(',').next().unwrap();
            let (hms, ns) = pts.split_once('.').unwrap();
            let secs = hms
                .split(':')
                .fold(0u64, |acc, part| acc * 60 + part.parse::<u64>().unwrap());
            (secs * 1_000_000_000 + ns.parse::<u64>().unwrap()) / 1000
        })
        .collect();
    let in_distribution: Vec<u64> = napd_verdicts(file_log(fx))
        .iter()
        .filter(|v| !v.ood)
        .map(|v| v.pts_us)
        .collect();
    assert!(!in_distribution.is_empty() && in_distribution.len() < 2 * PER_SET);
    assert_eq!(passed, in_distribution);
}

/// In a program of its own (the element linked in): every buffer leaving `napdetect` carries
/// the verdict the bus got for it, and the counters add up.
#[test]
fn napdetect_attaches_each_verdict_to_its_buffer() {
    use gstreamer as gst;
    use gstreamer::prelude::*;
    let Some(fx) = fixture() else { return };
    gst::init().unwrap();
    static REGISTERED: OnceLock<()> = OnceLock::new();
    REGISTERED.get_or_init(|| gstnapdetect::plugin::plugin_register_static().unwrap());
    let pipeline = gst::parse::launch(&format!(
        "filesrc location={} ! {FILE_DECODE} ! videoconvert ! napdetect name=detect bundle={} threshold={} workers=3 ! fakesink name=sink",
        fx.video.display(),
        fx.bundle.display(),
        fx.threshold
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let attached = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink_pad = pipeline
        .by_name("sink")
        .unwrap()
        .static_pad("sink")
        .unwrap();
    {
        let attached = attached.clone();
        sink_pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            if let Some(buffer) = info.buffer() {
                let verdict = gstnapdetect::Verdict::from_buffer(buffer).expect("a verdict");
                attached.lock().unwrap().push(verdict.unwrap());
            }
            gst::PadProbeReturn::Ok
        });
    }
    let bus = pipeline.bus().unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let mut posted = Vec::new();
    let timeout = gst::ClockTime::from_seconds(60);
    while let Some(message) = bus.timed_pop(timeout) {
        match message.view() {
            gst::MessageView::Element(e) => {
                let s = e.structure().unwrap();
                if s.name() == gstnapdetect::verdict::MESSAGE {
                    posted.push(gstnapdetect::Verdict::from_structure(s).unwrap());
                }
            }
            gst::MessageView::Error(e) => panic!("{e:?}"),
            gst::MessageView::Eos(_) => break,
            _ => {}
        }
    }
    let detect = pipeline.by_name("detect").unwrap();
    let count = |name: &str| detect.property::<u64>(name);
    let counts = [
        "frames-scored",
        "frames-ood",
        "frames-dropped",
        "frames-unscored",
    ]
    .map(count);
    pipeline.set_state(gst::State::Null).unwrap();

    let attached = attached.lock().unwrap();
    assert_eq!(posted.len(), 2 * PER_SET);
    assert_eq!(*attached, posted);
    let ood = posted.iter().filter(|v| v.ood).count() as u64;
    assert_eq!(counts, [2 * PER_SET as u64, ood, 0, 0]);
    let napd = napd_verdicts(file_log(fx));
    let napd_ood: Vec<bool> = napd.iter().map(|v| v.ood).collect();
    assert_eq!(posted.iter().map(|v| v.ood).collect::<Vec<_>>(), napd_ood);
}

#[test]
fn gst_inspect_documents_napdetect() {
    if fixture().is_none() {
        return;
    }
    let output = gst_tool("gst-inspect-1.0", &["napdetect"], "inspect");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{text}");
    for needed in [
        "nap-verdict",
        "NapVerdictMeta",
        "bundle",
        "threshold",
        "method",
        "NAP-E",
        "workers",
        "drop-ood",
        "trusted-keys",
        "frames-unscored",
        "libgstnapdetect.so",
    ] {
        assert!(
            text.contains(needed),
            "gst-inspect-1.0 does not say {needed}:\n{text}"
        );
    }
}

/// Settings the element cannot run with fail the pipeline at start, naming the cause.
#[test]
fn napdetect_refuses_bad_settings_with_their_cause() {
    let Some(fx) = fixture() else { return };
    let (uncalibrated, calibrated) = (fx.bundle.display(), fx.calibrated.display());
    for (properties, cause) in [
        (
            String::new(),
            "no bundle: set the `bundle` property".to_string(),
        ),
        (
            "bundle=/nonexistent.nap".into(),
            "/nonexistent.nap: No such file".into(),
        ),
        (
            format!("bundle={}", fx.video.display()),
            fx.video.display().to_string(),
        ),
        (
            format!("bundle={uncalibrated}"),
            "the bundle has no threshold".into(),
        ),
        (
            format!("bundle={calibrated} method=Energy"),
            "not Energy: set `threshold` too".into(),
        ),
    ] {
        let (ok, text) = launch_on_file(fx, "-q", &properties, "fakesink");
        assert!(!ok, "{properties}: the pipeline ran");
        assert!(text.contains(&cause), "{properties}: {text}");
    }
}
