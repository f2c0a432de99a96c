//! napd's `gst:` source (cargo feature `gstreamer`) on real pipelines, with the shared
//! MobileNetV2 bundle:
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
//!   the cause.
//!
//! `cargo test -p nap-tests --features gstreamer --test napd_gst` (needs GStreamer's development
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
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let images = shared_data_file("images")?;
            let bundle = tmp("napd_gst.nap");
            nap_test_support::mobilenet::float_bundle()?
                .write(&bundle)
                .unwrap();
            let frames = tmp("napd_gst_frames");
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
            let raw_path = tmp("napd_gst_frames.raw");
            std::fs::write(&raw_path, raw).unwrap();
            let video = tmp("napd_gst_frames.avi");
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
            };
            let (served, log) = serve(&fx, format!("raw:{}", raw_path.display()), "raw");
            assert_eq!(served.exit_code, 0);
            fx.raw_scores = scores(&log);
            let mut sorted: Vec<f32> = fx.raw_scores.iter().map(|(_, s)| *s).collect();
            sorted.sort_by(f32::total_cmp);
            fx.threshold = sorted[sorted.len() / 2];
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
    let source = file_source(fx);
    let (served, gst_log) = serve(fx, source, "gst_file");
    assert_eq!(served.exit_code, 0, "{:?}", served.error);

    let (raw, gst) = (&fx.raw_scores, scores(&gst_log));
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

fn file_source(fx: &Fixture) -> String {
    format!(
        "gst:filesrc location={} ! avidemux ! jpegdec",
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
    let (served, file_log) = serve(fx, file_source(fx), "rtsp_reference");
    assert_eq!(served.exit_code, 0, "{:?}", served.error);
    let file = scores(&file_log);

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
