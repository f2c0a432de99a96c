//! The `napd` process on real data: started on a paced replay with a TCP link, it gives its
//! first verdict soon after start (measured and printed, not asserted: the machine may be
//! loaded), and SIGTERM or SIGINT drains, sends a final status and exits 0.
//!
//! The binary lives in another package, so this test builds it with cargo when it is missing.

use nap_core::protocol::{Health, Message, RuntimeStatus};
use nap_runtime::bundle::{Bundle, InputSpec};
use nap_test_support::data::{shared_data_file, workspace_root};
use nap_test_support::peer::Peer;
use napctl::bundle::{BuildOptions, build_bundle};
use napd::status::code;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

const MODEL: &str = "mobilenetv2/mobilenet_v2_1.0_224.onnx";

/// `target/<profile>/napd`, beside this test's own `deps/` folder; built if absent.
fn napd_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(|d| d.parent()).unwrap().to_path_buf();
    let bin = profile_dir.join("napd");
    if !bin.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "napd", "--bin", "napd"])
            .current_dir(workspace_root())
            .status()
            .unwrap();
        assert!(status.success(), "building napd failed");
    }
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn sigterm_sends_a_final_status_and_exits_0() {
    stop_with("TERM");
}

#[test]
fn sigint_sends_a_final_status_and_exits_0() {
    stop_with("INT");
}

/// Runs napd on a paced replay, sends `signal` after three verdicts, checks the clean end.
fn stop_with(signal: &str) {
    let Some(model) = shared_data_file(MODEL) else {
        return;
    };
    let Some(images) = shared_data_file("images/id-imagenet") else {
        return;
    };
    let proto = napctl::onnx::read_model(&model).unwrap();
    let mut bundle: Bundle = build_bundle(
        &proto,
        "mobilenet_v2_1.0_224.onnx",
        BuildOptions {
            layer: None,
            input: InputSpec::TF,
        },
    )
    .unwrap();
    bundle.manifest.scorer.threshold = Some(0.0);
    let bundle_path = tmp(&format!("napd_process_{signal}.nap"));
    bundle.write(&bundle_path).unwrap();
    let log = tmp(&format!("napd_process_{signal}.jsonl"));
    let _ = std::fs::remove_file(&log);
    let bin = napd_binary();

    let peer = Peer::bind().unwrap();
    let started = Instant::now();
    let mut child = Command::new(bin)
        .args(["--bundle", bundle_path.to_str().unwrap()])
        .args([
            "--source",
            &format!("dir:{}", images.display()),
            "--fps",
            "5",
        ])
        .args([
            "--link",
            &peer.link_spec(),
            "--log",
            &format!("jsonl:{}", log.display()),
        ])
        .args(["--workers", "1", "--heartbeat-ms", "50"])
        .spawn()
        .unwrap();
    let verdict = |r: &[nap_test_support::peer::Received]| {
        r.iter().any(|m| matches!(m.message, Message::Verdict(_)))
    };
    assert!(
        peer.wait_until(Duration::from_secs(60), verdict),
        "no verdict within a minute"
    );
    let first = peer
        .received()
        .iter()
        .find(|m| matches!(m.message, Message::Verdict(_)))
        .unwrap()
        .at
        - started;
    assert!(peer.wait_until(Duration::from_secs(30), |r| {
        r.iter()
            .filter(|m| matches!(m.message, Message::Verdict(_)))
            .count()
            >= 3
    }));
    let term = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "napd exits 0 on SIG{signal}");

    // The peer may still be reading napd's last bytes.
    let shutdown = Message::RuntimeStatus(RuntimeStatus {
        health: Health::Fault,
        code: code::SHUTDOWN,
    });
    assert!(peer.wait_until(Duration::from_secs(10), |r| {
        r.iter().any(|m| m.message == shutdown)
    }));
    let got = peer.received();
    assert_eq!(
        got.last().map(|r| r.message),
        Some(Message::RuntimeStatus(RuntimeStatus {
            health: Health::Fault,
            code: code::SHUTDOWN
        })),
        "the final status is the last word"
    );
    let text = std::fs::read_to_string(&log).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "final");
    assert_eq!(last["reason"], "stopped");
    let verdicts = text
        .lines()
        .filter(|l| l.contains("\"type\":\"verdict\""))
        .count() as u64;
    // Every frame taken from the folder was scored or counted: nothing vanished in the drain.
    assert_eq!(last["verdicts"].as_u64(), Some(verdicts));
    assert_eq!(
        last["frames"].as_u64().unwrap(),
        verdicts + last["dropped"].as_u64().unwrap()
    );
    eprintln!(
        "napd process: first verdict at the peer {first:?} after spawn (napd's own count: {} ms), peak RSS {} KiB",
        last["first_verdict_ms"], last["peak_rss_kib"]
    );
}
