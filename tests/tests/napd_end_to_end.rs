//! `napd` end to end on real images: the shared MobileNetV2 bundle, 20 ImageNet and 20 DTD
//! photos, a TCP link to a peer that decodes the protocol.
//!
//! - dir source: one verdict per frame, in order, wire sequence numbers contiguous, OOD flags and
//!   scores equal to `napctl score` for the same bundle, heartbeats at the configured period
//!   (median gap within 50%), a final status at the end of the stream;
//! - raw source: the same images as RGB8, YUYV and NV12 streams give the dir source's verdicts
//!   (RGB8 exactly; YUV within the conversion's tolerance), with malformed frames mixed in that
//!   are rejected while the stream goes on;
//! - capture: the folder holds exactly the frames the log marks OOD (JPEG files byte for byte,
//!   raw frames as lossless PNG), with sidecars that match the verdicts and name the bundle's
//!   SHA-256; the per-minute and size caps skip and evict the frames they should, counted.

use nap_core::protocol::{Health, Message, RuntimeStatus};
use nap_runtime::bundle::Bundle;
use nap_runtime::preprocess::{Preprocessor, decode};
use nap_test_support::data::shared_data_file;
use nap_test_support::peer::Peer;
use napctl::images::{self, ImageFile};
use napd::source::PixelFormat;
use napd::source::pixel::from_rgb8;
use napd::source::raw::{encode_frame, header};
use napd::status::code;
use napd::{Options, Served};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const PER_SET: usize = 20;
const HEARTBEAT_MS: u64 = 50;

struct Fixture {
    bundle_path: PathBuf,
    frames_dir: PathBuf,
    files: Vec<ImageFile>,
    /// `napctl score`'s table for `files`: (file, score, ood).
    napctl: Vec<(String, f32, bool)>,
    threshold: f32,
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// The bundle (with a threshold at the subset's median score, so both verdicts occur), a
/// folder with the 40 frames, and napctl's scores for them.
fn fixture() -> Option<&'static Fixture> {
    static FIXTURE: OnceLock<Option<Fixture>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let images = shared_data_file("images")?;
            let frames_dir = tmp("napd_e2e_frames");
            let _ = std::fs::remove_dir_all(&frames_dir);
            std::fs::create_dir_all(&frames_dir).unwrap();
            for (prefix, set) in [("a_id_", "id-imagenet"), ("b_dtd_", "ood-dtd")] {
                for f in images::collect(&[images.join(set)])
                    .unwrap()
                    .iter()
                    .take(PER_SET)
                {
                    std::fs::copy(&f.path, frames_dir.join(format!("{prefix}{}", f.name))).unwrap();
                }
            }
            let files = images::collect(std::slice::from_ref(&frames_dir)).unwrap();
            assert_eq!(files.len(), 2 * PER_SET);

            let mut bundle = nap_test_support::mobilenet::float_bundle()?;
            let detector = nap_runtime::detector::Detector::new(&bundle).unwrap();
            let pre = Preprocessor::new(bundle.manifest.input).unwrap();
            let first = napctl::score::score_images(&detector, &pre, &files, || {}).unwrap();
            let mut scores: Vec<f32> = first.iter().map(|r| r.as_ref().unwrap().score).collect();
            scores.sort_by(f32::total_cmp);
            let threshold = scores[scores.len() / 2];
            bundle.manifest.scorer.threshold = Some(threshold);
            let bundle_path = tmp("napd_e2e.nap");
            bundle.write(&bundle_path).unwrap();

            // What `napctl score` prints for the same bundle, through its own table writer.
            let bundle = Bundle::read(&bundle_path).unwrap();
            let detector = nap_runtime::detector::Detector::new(&bundle).unwrap();
            let results = napctl::score::score_images(&detector, &pre, &files, || {}).unwrap();
            let mut tsv = Vec::new();
            napctl::score::write_tsv(&mut tsv, &files, &results).unwrap();
            let napctl = String::from_utf8(tsv)
                .unwrap()
                .lines()
                .skip(1)
                .map(|l| {
                    let c: Vec<&str> = l.split('\t').collect();
                    (c[1].to_string(), c[6].parse().unwrap(), c[7] == "1")
                })
                .collect::<Vec<_>>();
            assert_eq!(napctl.len(), files.len());
            Some(Fixture {
                bundle_path,
                frames_dir,
                files,
                napctl,
                threshold,
            })
        })
        .as_ref()
}

fn serve(args: Options) -> (Served, Vec<Value>) {
    let log = match &args.log {
        Some(l) => PathBuf::from(l.strip_prefix("jsonl:").unwrap()),
        None => panic!("tests log to a file"),
    };
    let _ = std::fs::remove_file(&log);
    let settings = args.resolve().unwrap();
    let served = napd::serve(&settings, Arc::new(AtomicBool::new(false)));
    let lines = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (served, lines)
}

fn verdicts(log: &[Value]) -> Vec<&Value> {
    log.iter().filter(|v| v["type"] == "verdict").collect()
}

fn options(fx: &Fixture, source: String, log: &str) -> Options {
    Options {
        bundle: Some(fx.bundle_path.clone()),
        source: Some(source),
        log: Some(format!("jsonl:{}", tmp(log).display())),
        workers: Some(2),
        queue: Some(2),
        heartbeat_ms: Some(HEARTBEAT_MS),
        stats_ms: Some(500),
        ..Options::default()
    }
}

#[test]
fn dir_source_over_tcp_agrees_with_napctl_score() {
    let Some(fx) = fixture() else { return };
    let peer = Peer::bind().unwrap();
    peer.set_ack(true);
    let mut args = options(
        fx,
        format!("dir:{}", fx.frames_dir.display()),
        "napd_e2e_dir.jsonl",
    );
    args.link = Some(peer.link_spec());
    let (served, log) = serve(args);
    let summary = served.summary.as_ref().expect("the pipeline ran");
    assert_eq!(served.exit_code, 0, "{served:?}");
    assert_eq!(
        (
            summary.frames,
            summary.verdicts,
            summary.dropped,
            summary.bad
        ),
        (40, 40, 0, 0)
    );

    // The log: one verdict per frame, in file order, equal to napctl's table.
    let v = verdicts(&log);
    assert_eq!(v.len(), fx.files.len());
    for (i, (entry, (file, score, ood))) in v.iter().zip(&fx.napctl).enumerate() {
        assert_eq!(entry["seq"], i as u64);
        assert_eq!(entry["frame"].as_str(), Some(file.as_str()));
        assert_eq!(entry["ood"].as_bool(), Some(*ood), "{file}");
        let s = entry["score"].as_f64().unwrap() as f32;
        assert!(
            (s - score).abs() <= 1e-5 * score.abs().max(1.0),
            "{file}: napd {s}, napctl {score}"
        );
        assert_eq!(entry["threshold"].as_f64().unwrap() as f32, fx.threshold);
    }
    let n_ood = fx.napctl.iter().filter(|r| r.2).count();
    assert!(
        n_ood > 0 && n_ood < fx.files.len(),
        "the threshold splits the subset"
    );

    // The wire: the same verdicts in the same order; one contiguous sequence with heartbeats.
    // napd has closed its end; the peer may still be reading the last bytes.
    let final_status = Message::RuntimeStatus(RuntimeStatus {
        health: Health::Fault,
        code: code::END_OF_STREAM,
    });
    assert!(peer.wait_until(Duration::from_secs(10), |r| {
        r.iter().any(|m| m.message == final_status)
    }));
    let got = peer.received();
    let wire: Vec<_> = got
        .iter()
        .filter_map(|r| match r.message {
            Message::Verdict(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(wire.len(), 40, "verdicts on the wire");
    for (w, (_, score, ood)) in wire.iter().zip(&fx.napctl) {
        assert_eq!(w.ood, *ood);
        assert!((w.score - score).abs() <= 1e-5 * score.abs().max(1.0));
        assert_eq!(w.threshold, fx.threshold);
    }
    assert!(
        wire.windows(2)
            .all(|p| p[0].timestamp_us <= p[1].timestamp_us),
        "capture times in order"
    );
    let seqs: Vec<u32> = got
        .iter()
        .filter_map(|r| match r.message {
            Message::Verdict(v) => Some(v.seq),
            Message::Heartbeat(h) => Some(h.seq),
            _ => None,
        })
        .collect();
    assert_eq!(
        seqs,
        (0..seqs.len() as u32).collect::<Vec<_>>(),
        "contiguous sequence numbers"
    );
    let statuses: Vec<_> = got
        .iter()
        .filter_map(|r| match r.message {
            Message::RuntimeStatus(s) => Some(s),
            _ => None,
        })
        .collect();
    assert_eq!(
        statuses.first(),
        Some(&RuntimeStatus {
            health: Health::Degraded,
            code: code::STARTING
        })
    );
    assert!(statuses.contains(&RuntimeStatus {
        health: Health::Ok,
        code: code::OK
    }));
    assert_eq!(
        got.last().map(|r| r.message),
        Some(Message::RuntimeStatus(RuntimeStatus {
            health: Health::Fault,
            code: code::END_OF_STREAM
        })),
        "the final status is the last word"
    );
    assert_eq!(peer.frame_errors(), 0);

    // Heartbeats at the configured period: the median gap within 50%.
    let beats: Vec<_> = got
        .iter()
        .filter(|r| matches!(r.message, Message::Heartbeat(_)))
        .map(|r| r.at)
        .collect();
    assert!(beats.len() >= 4, "only {} heartbeats", beats.len());
    let mut gaps: Vec<f64> = beats
        .windows(2)
        .map(|w| (w[1] - w[0]).as_secs_f64() * 1e3)
        .collect();
    gaps.sort_by(f64::total_cmp);
    let median = gaps[gaps.len() / 2];
    let hb = HEARTBEAT_MS as f64;
    assert!(
        (0.5 * hb..=1.5 * hb).contains(&median),
        "median heartbeat gap {median:.1} ms"
    );

    let last = log.last().unwrap();
    assert_eq!(last["type"], "final");
    assert_eq!(last["reason"], "end_of_stream");
    eprintln!(
        "napd dir e2e: {} frames, {:.1} fps, p50 {:?} us, p99 {:?} us, first verdict {:?}, peak RSS {:?} KiB, heartbeat gap median {median:.1} ms (max {:.1})",
        summary.verdicts,
        summary.fps,
        summary.p50_us,
        summary.p99_us,
        summary.first_verdict,
        summary.peak_rss_kib,
        gaps[gaps.len() - 1]
    );
}

/// The frames as one raw stream in `format`, cropped to even sides where the format needs it,
/// with malformed frames after frame 5 (bad header) and 12 (absurd size), and a truncated
/// frame at the end.
fn raw_stream(fx: &Fixture, format: PixelFormat, path: &Path) {
    let mut out = Vec::new();
    for (i, f) in fx.files.iter().enumerate() {
        let img = decode(&std::fs::read(&f.path).unwrap()).unwrap();
        let (mut w, mut h) = (img.width(), img.height());
        let even = matches!(format, PixelFormat::Yuyv | PixelFormat::Nv12);
        if even {
            w -= w % 2;
            h -= h % 2;
        }
        let rgb: Vec<u8> = (0..h)
            .flat_map(|y| {
                img.as_raw()[(y * img.width() * 3) as usize..][..(w * 3) as usize].to_vec()
            })
            .collect();
        let pixels = from_rgb8(format, w, h, &rgb).unwrap();
        out.extend(encode_frame(format, w, h, &pixels).unwrap());
        if i == 5 {
            let mut bad = header(format, 4, 4, 48).to_vec();
            bad[5] = 99;
            bad.extend([7u8; 48]);
            out.extend(bad);
        }
        if i == 12 {
            out.extend(header(format, 60_000, 60_000, u32::MAX - 1));
        }
    }
    let len = format.frame_len(64, 64).unwrap() as u32;
    out.extend(&header(format, 64, 64, len)[..]);
    out.extend([1u8; 100]);
    std::fs::write(path, out).unwrap();
}

#[test]
fn raw_streams_give_the_dir_verdicts() {
    let Some(fx) = fixture() else { return };
    let dir_scores: Vec<(f32, bool)> = fx.napctl.iter().map(|r| (r.1, r.2)).collect();
    for (format, tolerance) in [
        (PixelFormat::Rgb8, 1e-5f32),
        (PixelFormat::Yuyv, 0.05),
        (PixelFormat::Nv12, 0.05),
    ] {
        let stream = tmp(&format!("napd_e2e_{format}.raw"));
        raw_stream(fx, format, &stream);
        let args = options(
            fx,
            format!("raw:{}", stream.display()),
            &format!("napd_e2e_{format}.jsonl"),
        );
        let (served, log) = serve(args);
        assert_eq!(served.exit_code, 0, "{format}: {served:?}");
        let s = served.summary.unwrap();
        // 40 frames, 3 malformed ones rejected, nothing dropped (a file waits for the workers).
        assert_eq!((s.verdicts, s.bad, s.dropped), (40, 3, 0), "{format}");
        let errors: Vec<&Value> = log.iter().filter(|v| v["type"] == "error").collect();
        assert!(
            errors[0]["error"]
                .as_str()
                .unwrap()
                .contains("unknown pixel format")
        );
        assert!(
            errors[1]["error"]
                .as_str()
                .unwrap()
                .contains("exceeds the limit")
        );
        assert!(
            errors[2]["error"]
                .as_str()
                .unwrap()
                .contains("truncated frame")
        );
        let v = verdicts(&log);
        let (mut worst, mut flips) = (0f32, 0);
        for (entry, (score, ood)) in v.iter().zip(&dir_scores) {
            let got = entry["score"].as_f64().unwrap() as f32;
            let rel = (got - score).abs() / score.abs().max(1.0);
            worst = worst.max(rel);
            assert!(rel <= tolerance, "{format}: score {got} vs dir {score}");
            // Flags agree wherever the dir score is clear of the threshold by the tolerance.
            if (score - fx.threshold).abs() > tolerance * score.abs().max(1.0) {
                assert_eq!(entry["ood"].as_bool(), Some(*ood), "{format}: {entry}");
            } else if entry["ood"].as_bool() != Some(*ood) {
                flips += 1;
            }
        }
        eprintln!(
            "raw {format}: worst relative score difference to dir {worst:.2e}, flags flipped near the threshold: {flips}"
        );
    }
}

/// The capture folder's sidecars, by name.
fn sidecars(dir: &Path) -> Vec<(String, Value)> {
    let mut found: Vec<(String, Value)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .map(|p| {
            let json = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
            (p.file_name().unwrap().to_string_lossy().into_owned(), json)
        })
        .collect();
    found.sort_by(|a, b| a.0.cmp(&b.0));
    found
}

/// The frame numbers the log marks OOD, in order.
fn ood_seqs(log: &[Value]) -> Vec<u64> {
    verdicts(log)
        .into_iter()
        .filter(|v| v["ood"] == true)
        .map(|v| v["seq"].as_u64().unwrap())
        .collect()
}

/// The frame numbers of a capture's sidecars, in name order.
fn seqs(saved: &[(String, Value)]) -> Vec<u64> {
    saved.iter().map(|s| s.1["seq"].as_u64().unwrap()).collect()
}

fn capture_run(fx: &Fixture, source: String, name: &str, caps: (Option<u64>, u32)) -> Vec<Value> {
    let dir = tmp(name);
    let _ = std::fs::remove_dir_all(&dir);
    let args = Options {
        capture: Some(dir),
        capture_max_mb: caps.0,
        capture_max_per_min: Some(caps.1),
        ..options(fx, source, &format!("{name}.jsonl"))
    };
    let (served, log) = serve(args);
    assert_eq!(served.exit_code, 0, "{served:?}");
    log
}

#[test]
fn capture_holds_exactly_the_frames_the_log_marks_ood() {
    let Some(fx) = fixture() else { return };
    let sha256: String = Sha256::digest(std::fs::read(&fx.bundle_path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();

    // A dir replay: the JPEG files themselves, byte for byte.
    let source = format!("dir:{}", fx.frames_dir.display());
    let log = capture_run(fx, source, "napd_capture_dir", (None, 0));
    let ood: Vec<&Value> = verdicts(&log)
        .into_iter()
        .filter(|v| v["ood"] == true)
        .collect();
    assert!(ood.len() >= 10, "{} OOD frames", ood.len());
    let saved = sidecars(&tmp("napd_capture_dir"));
    assert_eq!(saved.len(), ood.len());
    for ((_, sidecar), verdict) in saved.iter().zip(&ood) {
        for key in ["seq", "frame", "top1"] {
            assert_eq!(sidecar[key], verdict[key], "{key}: {sidecar} vs {verdict}");
        }
        // The same f32: the log writes it widened to f64, the sidecar as the shortest f32.
        let f32_of = |v: &Value| v.as_f64().unwrap() as f32;
        for key in ["score", "threshold"] {
            assert_eq!(f32_of(&sidecar[key]), f32_of(&verdict[key]), "{key}");
        }
        assert_eq!(sidecar["bundle_sha256"], sha256.as_str());
        let image = tmp("napd_capture_dir").join(sidecar["image"].as_str().unwrap());
        let original = fx.frames_dir.join(sidecar["frame"].as_str().unwrap());
        assert_eq!(image.extension().unwrap(), "jpg");
        assert!(std::fs::read(&image).unwrap() == std::fs::read(&original).unwrap());
    }
    let last = log.last().unwrap();
    assert_eq!(last["type"], "final");
    let n = ood.len() as u64;
    assert_eq!(last["capture"]["saved"], n);
    assert_eq!(last["capture"]["files"], n);
    assert_eq!(last["capture"]["skipped_rate"], 0);
    assert_eq!(last["capture"]["skipped_queue"], 0);
    assert_eq!(last["capture"]["failed"], 0);

    // A raw RGB8 stream: saved as PNG, losslessly.
    let stream = tmp("napd_capture.raw");
    raw_stream(fx, PixelFormat::Rgb8, &stream);
    let log = capture_run(
        fx,
        format!("raw:{}", stream.display()),
        "napd_capture_raw",
        (None, 0),
    );
    let saved = sidecars(&tmp("napd_capture_raw"));
    assert_eq!(seqs(&saved), ood_seqs(&log));
    // Frame numbers count the malformed frames too: map them back to the files through the
    // verdicts' order.
    let scored: Vec<u64> = verdicts(&log)
        .iter()
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    for (_, sidecar) in &saved {
        let seq = sidecar["seq"].as_u64().unwrap();
        let file = &fx.files[scored.iter().position(|s| *s == seq).unwrap()];
        let image = tmp("napd_capture_raw").join(sidecar["image"].as_str().unwrap());
        assert_eq!(image.extension().unwrap(), "png");
        let png = image::open(&image).unwrap().to_rgb8();
        let jpeg = decode(&std::fs::read(&file.path).unwrap()).unwrap();
        assert!(png == jpeg, "{}: the PNG is not the frame", file.name);
    }
}

#[test]
fn capture_caps_skip_and_evict_and_count() {
    let Some(fx) = fixture() else { return };
    let source = format!("dir:{}", fx.frames_dir.display());

    // Five a minute: the replay takes seconds, so the first five OOD frames are saved.
    let log = capture_run(fx, source.clone(), "napd_capture_rate", (None, 5));
    let ood = ood_seqs(&log);
    assert_eq!(seqs(&sidecars(&tmp("napd_capture_rate"))), ood[..5]);
    let last = log.last().unwrap();
    assert_eq!(last["capture"]["saved"], 5);
    assert_eq!(last["capture"]["skipped_rate"], ood.len() as u64 - 5);

    // 1 MiB holds fewer than the OOD frames: the oldest go, the newest stay, the cap holds.
    let log = capture_run(fx, source, "napd_capture_size", (Some(1), 0));
    let dir = tmp("napd_capture_size");
    let on_disk: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk <= 1 << 20, "{on_disk} bytes");
    let last = log.last().unwrap();
    let c = &last["capture"];
    let (saved, evicted, files) = (
        c["saved"].as_u64(),
        c["evicted"].as_u64(),
        c["files"].as_u64(),
    );
    assert_eq!(c["bytes"], on_disk);
    assert!(evicted.unwrap() > 0, "{c}");
    assert_eq!(saved.unwrap(), evicted.unwrap() + files.unwrap());
    let kept = seqs(&sidecars(&dir));
    assert_eq!(kept, ood[ood.len() - kept.len()..]);
    assert_eq!(kept.len() as u64, files.unwrap());
    eprintln!(
        "capture: {} OOD frames, 5 a minute saves 5; 1 MiB keeps the newest {} ({on_disk} bytes), {} evicted",
        ood.len(),
        kept.len(),
        evicted.unwrap()
    );
}
