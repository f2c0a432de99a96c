//! napd's drift alarm on real frames: the shared MobileNetV2 with a threshold that keeps 95% of
//! the ImageNet photos (as `napctl calibrate --tpr 0.95` would), scenes of ImageNet photos and
//! of DTD textures.
//!
//! - On the verdict sequences themselves (10 shuffled runs of 600 ImageNet, 600 DTD, 600
//!   ImageNet verdicts): no alarm on the familiar part, raised within the documented delay after
//!   the switch, cleared once the familiar scene is back.
//! - napd itself (in-process, TCP link) on a folder of 150 + 150 + 150 frames with a 100-frame
//!   window: the `drift` log objects at the switches, a `Degraded` status with the drift code,
//!   and the controller firmware (the library, fed what napd sent) goes safe on it and re-arms
//!   after the alarm clears.

use nap_core::protocol::{ControllerState, Health, Message};
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use nap_test_support::data::shared_data_file;
use nap_test_support::peer::Peer;
use napctl::images::{self, ImageFile};
use napd::drift::{Drift, DriftEvent};
use napd::status::code;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

const TPR: f32 = 0.95;

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// The calibrated bundle's path, and each set's images with their verdicts.
struct Scenes {
    bundle: PathBuf,
    familiar: Vec<(ImageFile, bool)>,
    textures: Vec<(ImageFile, bool)>,
}

fn scenes() -> Option<Scenes> {
    let images = shared_data_file("images")?;
    let mut bundle = nap_test_support::mobilenet::float_bundle()?;
    let detector = Detector::new(&bundle).unwrap();
    let pre = Preprocessor::new(bundle.manifest.input).unwrap();
    let scored = |set: &str| -> Vec<(ImageFile, f32)> {
        // Every other photo: enough for the rates, half the scoring time.
        let files: Vec<ImageFile> = images::collect(&[images.join(set)])
            .unwrap()
            .into_iter()
            .step_by(2)
            .collect();
        let scores = napctl::score::score_images(&detector, &pre, &files, || {}).unwrap();
        let scores = scores.into_iter().map(|r| r.unwrap().score);
        files.into_iter().zip(scores).collect()
    };
    let (familiar, textures) = (scored("id-imagenet"), scored("ood-dtd"));
    // The threshold keeps TPR of the familiar photos: OOD is `score < threshold`.
    let mut sorted: Vec<f32> = familiar.iter().map(|f| f.1).collect();
    sorted.sort_by(f32::total_cmp);
    let threshold = sorted[((1.0 - TPR) * sorted.len() as f32).round() as usize];
    bundle.manifest.scorer.threshold = Some(threshold);
    bundle.manifest.scorer.tpr = Some(TPR);
    let path = tmp("napd_drift.nap");
    bundle.write(&path).unwrap();
    let verdicts = |set: Vec<(ImageFile, f32)>| -> Vec<(ImageFile, bool)> {
        set.into_iter().map(|(f, s)| (f, s < threshold)).collect()
    };
    Some(Scenes {
        bundle: path,
        familiar: verdicts(familiar),
        textures: verdicts(textures),
    })
}

/// `n` items of `set`, shuffled by `seed`, cycling through it when `n` is longer.
fn shuffled<T: Clone>(set: &[T], n: usize, seed: u64) -> Vec<T> {
    let mut order: Vec<usize> = (0..set.len()).collect();
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for i in (1..order.len()).rev() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        order.swap(i, (state % (i as u64 + 1)) as usize);
    }
    (0..n).map(|i| set[order[i % set.len()]].clone()).collect()
}

#[test]
fn the_alarm_on_real_frames_and_the_controller_going_safe() {
    let Some(scenes) = scenes() else { return };
    let rate =
        |set: &[(ImageFile, bool)]| set.iter().filter(|f| f.1).count() as f64 / set.len() as f64;
    let (p0, p1) = (1.0 - f64::from(TPR), rate(&scenes.textures));
    println!(
        "OOD rate: ImageNet {:.3}, DTD {p1:.3}",
        rate(&scenes.familiar)
    );
    assert!(p1 > 0.5, "DTD is mostly flagged at this threshold: {p1}");
    let familiar: Vec<bool> = scenes.familiar.iter().map(|f| f.1).collect();
    let textures: Vec<bool> = scenes.textures.iter().map(|f| f.1).collect();

    for window in [200, 600] {
        for seed in 1..=10u64 {
            let mut drift = Drift::new(window, p0).unwrap();
            for (i, ood) in shuffled(&familiar, 600, seed).into_iter().enumerate() {
                assert_eq!(
                    drift.verdict(ood),
                    None,
                    "window {window}, seed {seed}: alarm at {i}"
                );
            }
            // The documented delay: about (k - window p0) / (p1 - p0) verdicts.
            let expected = (drift.raise_at() as f64 - window as f64 * p0) / (p1 - p0);
            let raised = shuffled(&textures, 600, seed)
                .into_iter()
                .position(|ood| matches!(drift.verdict(ood), Some(DriftEvent::Raised { .. })))
                .unwrap_or_else(|| panic!("window {window}, seed {seed}: never raised"));
            assert!(
                (raised as f64) < 1.5 * expected + 10.0,
                "window {window}, seed {seed}: raised after {raised}, expected about {expected:.0}"
            );
            let cleared = shuffled(&familiar, 1200, seed + 100)
                .into_iter()
                .position(|ood| matches!(drift.verdict(ood), Some(DriftEvent::Cleared { .. })))
                .unwrap_or_else(|| panic!("window {window}, seed {seed}: never cleared"));
            assert!(
                cleared <= window,
                "window {window}, seed {seed}: cleared after {cleared}"
            );
        }
    }

    // napd itself: 150 ImageNet, 150 DTD, 150 more ImageNet frames, in that order.
    let frames = tmp("napd_drift_frames");
    let _ = std::fs::remove_dir_all(&frames);
    std::fs::create_dir_all(&frames).unwrap();
    let order = shuffled(&scenes.familiar, 300, 7);
    let parts = [
        &order[..150],
        &shuffled(&scenes.textures, 150, 7)[..],
        &order[150..],
    ];
    for (i, (file, _)) in parts.into_iter().flatten().enumerate() {
        std::fs::copy(&file.path, frames.join(format!("{i:04}_{}", file.name))).unwrap();
    }
    let peer = Peer::bind().unwrap();
    let log = tmp("napd_drift.jsonl");
    let _ = std::fs::remove_file(&log);
    let settings = napd::Options {
        bundle: Some(scenes.bundle.clone()),
        source: Some(format!("dir:{}", frames.display())),
        link: Some(peer.link_spec()),
        log: Some(format!("jsonl:{}", log.display())),
        workers: Some(2),
        heartbeat_ms: Some(20),
        drift_window: Some(100),
        ..napd::Options::default()
    }
    .resolve()
    .unwrap();
    let served = napd::serve(&settings, Arc::new(AtomicBool::new(false)));
    assert_eq!(served.exit_code, 0, "{served:?}");
    let log: Vec<Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let drift: Vec<&Value> = log.iter().filter(|v| v["type"] == "drift").collect();
    let events: Vec<(&str, u64)> = drift
        .iter()
        .map(|v| (v["event"].as_str().unwrap(), v["seq"].as_u64().unwrap()))
        .collect();
    assert_eq!(events.len(), 2, "{drift:?}");
    assert_eq!(events[0].0, "raised");
    assert!(
        (150..250).contains(&events[0].1),
        "raised in the DTD part: {drift:?}"
    );
    assert_eq!(events[1].0, "cleared");
    assert!(
        (300..400).contains(&events[1].1),
        "cleared after ImageNet returns: {drift:?}"
    );
    let status = |code: u16| {
        log.iter()
            .any(|v| v["type"] == "status" && v["code"] == u64::from(code))
    };
    assert!(status(code::DRIFT) && status(code::OK), "{log:?}");

    // The controller, fed everything napd sent in order, goes safe on the drift status and
    // re-arms once it clears.
    assert!(
        peer.wait_until(Duration::from_secs(5), |r| r.iter().any(|m| matches!(
            m.message,
            Message::RuntimeStatus(s) if s.health == Health::Fault
        )))
    );
    let mut controller =
        nap_firmware::Controller::new(nap_firmware::Config::DEFAULT_100HZ, NoPin, NoPin);
    let (mut armed_before, mut safe_on_drift, mut armed_after) = (false, false, false);
    let mut drifting = false;
    for (now, received) in peer.received().iter().enumerate() {
        let now = nap_firmware::time::Tick(now as u32);
        controller.tick(now);
        controller.handle(Ok(received.message), now);
        let state = controller.state();
        match received.message {
            Message::RuntimeStatus(s) if s.code == code::DRIFT => {
                drifting = true;
                safe_on_drift = state == ControllerState::Safe;
            }
            Message::RuntimeStatus(s) if s.health == Health::Ok && drifting => drifting = false,
            _ if state == ControllerState::Armed && !drifting => {
                if safe_on_drift {
                    armed_after = true;
                } else {
                    armed_before = true;
                }
            }
            _ => assert!(
                !drifting || state == ControllerState::Safe,
                "armed while drifting"
            ),
        }
    }
    assert!(armed_before && safe_on_drift && armed_after);
}

/// An output line that goes nowhere: the test reads the controller's state instead.
struct NoPin;

impl embedded_hal::digital::ErrorType for NoPin {
    type Error = core::convert::Infallible;
}

impl embedded_hal::digital::OutputPin for NoPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}
