//! The `napd` process on real data: started on a paced replay with a TCP link, it gives its
//! first verdict soon after start (measured and printed, not asserted: the machine may be
//! loaded), and SIGTERM or SIGINT drains, sends a final status and exits 0.
//!
//! With `--trusted-keys`, only a bundle signed by a trusted key and unchanged since loads; any
//! other is refused with its own fault status.
//!
//! With `--capture` on a folder whose disk fills up (a small tmpfs in a mount namespace of its
//! own), failed writes are counted and logged and every frame is still scored.
//!
//! The binary lives in another package, so this test builds it with cargo when it is missing.

use nap_core::protocol::{Health, Message, RuntimeStatus};
use nap_test_support::data::shared_data_file;
use nap_test_support::peer::Peer;
use napd::status::code;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

fn napd_binary() -> PathBuf {
    nap_test_support::cli::workspace_binary("napd", "napd")
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
    let Some(images) = shared_data_file("images/id-imagenet") else {
        return;
    };
    let Some(mut bundle) = nap_test_support::mobilenet::float_bundle() else {
        return;
    };
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

#[test]
fn trusted_keys_admit_only_bundles_their_keys_signed_unchanged() {
    use ed25519_dalek::SigningKey;
    use ed25519_dalek::pkcs8::EncodePublicKey;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use nap_runtime::bundle::signature::{TRAILER_LEN, fingerprint, sign};

    let Some(images) = shared_data_file("images/id-imagenet") else {
        return;
    };
    let Some(mut bundle) = nap_test_support::mobilenet::float_bundle() else {
        return;
    };
    bundle.manifest.scorer.threshold = Some(0.0);
    let unsigned = bundle.to_bytes().unwrap();
    let (ours, theirs) = (
        SigningKey::from_bytes(&[5; 32]),
        SigningKey::from_bytes(&[6; 32]),
    );
    let keys = tmp("napd_trusted_keys");
    let _ = std::fs::remove_dir_all(&keys);
    std::fs::create_dir_all(&keys).unwrap();
    let pem = |k: &SigningKey| k.verifying_key().to_public_key_pem(LineEnding::LF).unwrap();
    std::fs::write(keys.join("fleet.pub"), pem(&ours)).unwrap();
    let foreign = tmp("napd_foreign.pub");
    std::fs::write(&foreign, pem(&theirs)).unwrap();
    // Whatever the umask: napd refuses trusted keys others may write.
    use std::os::unix::fs::PermissionsExt;
    for (path, mode) in [
        (keys.clone(), 0o755),
        (keys.join("fleet.pub"), 0o644),
        (foreign.clone(), 0o644),
    ] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    let file = |name: &str, bytes: &[u8]| {
        let path = tmp(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let signed_bytes = sign(&unsigned, &ours).unwrap();
    let signed = file("napd_signed.nap", &signed_bytes);
    let unsigned = file("napd_unsigned.nap", &unsigned);

    let check = |bundle: &PathBuf, trusted: &PathBuf| {
        Command::new(napd_binary())
            .args(["--check", "--bundle", bundle.to_str().unwrap()])
            .args(["--source", &format!("dir:{}", images.display())])
            .args(["--trusted-keys", trusted.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let out = check(&signed, &keys);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let signer = fingerprint(&ours.verifying_key());
    assert!(
        said.contains(&format!("signature by {signer}, trusted")),
        "{said}"
    );
    for (bundle, trusted, reason) in [
        (&unsigned, &keys, "not signed"),
        (&signed, &foreign, "not trusted"),
    ] {
        let out = check(bundle, trusted);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {err}", bundle.display());
        assert!(err.contains(reason), "{}: {err}", bundle.display());
    }

    // One changed byte anywhere is refused by name: sampled over the header, the manifest, the
    // model, the head, the checksum and the signature trailer (every byte: runtime/tests).
    let field = |at: usize, len: usize| {
        let mut v = [0u8; 8];
        v[..len].copy_from_slice(&signed_bytes[at..at + len]);
        u64::from_le_bytes(v) as usize
    };
    let (manifest, model, head) = (field(12, 4), field(16, 8), field(24, 8));
    let model_at = 40 + manifest;
    let head_at = model_at + model;
    let trailer_at = signed_bytes.len() - TRAILER_LEN;
    let changed_after = &["changed after signing"][..];
    let samples = [
        (11, changed_after),
        (20, changed_after),
        (40, changed_after),
        (40 + manifest / 2, changed_after),
        (model_at + 7, changed_after),
        (model_at + model / 2, changed_after),
        (head_at + head / 3, changed_after),
        (trailer_at - 2, changed_after),
        (trailer_at + 3, &["signature trailer"]),
        // Another key: one nobody trusts, or no valid key at all.
        (trailer_at + 12, &["not trusted", "no valid public key"]),
        (trailer_at + 60, changed_after),
        (signed_bytes.len() - 1, changed_after),
    ];
    for (i, reasons) in samples {
        let mut changed = signed_bytes.clone();
        changed[i] ^= 0x10;
        let path = file("napd_changed.nap", &changed);
        let out = check(&path, &keys);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "byte {i}: {err}");
        assert!(reasons.iter().any(|r| err.contains(r)), "byte {i}: {err}");
    }

    // Started for real, the controller hears why nothing will score.
    let peer = Peer::bind().unwrap();
    let out = Command::new(napd_binary())
        .args(["--bundle", unsigned.to_str().unwrap()])
        .args(["--source", &format!("dir:{}", images.display())])
        .args(["--trusted-keys", keys.to_str().unwrap()])
        .args(["--link", &peer.link_spec(), "--heartbeat-ms", "20"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let fault = Message::RuntimeStatus(RuntimeStatus {
        health: Health::Fault,
        code: code::UNTRUSTED_BUNDLE,
    });
    assert!(
        peer.wait_until(Duration::from_secs(5), |r| r
            .iter()
            .any(|m| m.message == fault)),
        "the controller never heard the untrusted-bundle fault: {:?}",
        peer.received()
    );
}

#[test]
fn a_full_capture_disk_is_counted_and_logged_and_scoring_goes_on() {
    let Some(textures) = shared_data_file("images/ood-dtd") else {
        return;
    };
    let Some(unshare) = nap_test_support::tools::require("unshare") else {
        return;
    };
    // A mount namespace of its own, where a tmpfs can be mounted without touching the host.
    let probe = Command::new(&unshare).args(["-rm", "true"]).status();
    if !probe.is_ok_and(|s| s.success()) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "unshare -rm fails, and CI=true"
        );
        println!("skipped: this machine allows no mount namespace (unshare -rm)");
        return;
    }
    let Some(mut bundle) = nap_test_support::mobilenet::float_bundle() else {
        return;
    };
    // Every frame is OOD: 30 photos of about 75 KB each against a 512 KiB disk.
    bundle.manifest.scorer.threshold = Some(1e9);
    let bundle_path = tmp("napd_full_disk.nap");
    bundle.write(&bundle_path).unwrap();
    let frames = tmp("napd_full_disk_frames");
    let _ = std::fs::remove_dir_all(&frames);
    std::fs::create_dir_all(&frames).unwrap();
    let mut photos: Vec<PathBuf> = std::fs::read_dir(&textures)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    photos.sort();
    for p in photos.iter().take(30) {
        std::os::unix::fs::symlink(p, frames.join(p.file_name().unwrap())).unwrap();
    }
    let capture = tmp("napd_full_disk_capture");
    std::fs::create_dir_all(&capture).unwrap();
    let log = tmp("napd_full_disk.jsonl");
    let _ = std::fs::remove_file(&log);

    let status = Command::new(&unshare)
        .args(["-rm", "sh", "-c"])
        .arg(r#"mount -t tmpfs -o size=512k napd-capture "$0" && exec "$@""#)
        .arg(&capture)
        .arg(napd_binary())
        .args(["--bundle", bundle_path.to_str().unwrap()])
        .args(["--source", &format!("dir:{}", frames.display())])
        .args(["--capture", capture.to_str().unwrap()])
        .args(["--capture-max-per-min", "0"])
        .args(["--log", &format!("jsonl:{}", log.display())])
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));

    let entries: Vec<serde_json::Value> = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let last = entries.last().unwrap();
    assert_eq!(last["type"], "final");
    assert_eq!(last["verdicts"], 30, "every frame is scored");
    let c = &last["capture"];
    let count = |k: &str| c[k].as_u64().unwrap();
    assert!(count("saved") > 0 && count("failed") > 0, "{c}");
    assert_eq!(
        count("saved") + count("failed") + count("skipped_queue"),
        30
    );
    assert_eq!(count("files"), count("saved"));
    assert!(count("bytes") <= 512 << 10, "{c}");
    // Logged when writing starts failing and when it works again (a smaller frame may still
    // fit), counted every time.
    let events: Vec<&serde_json::Value> =
        entries.iter().filter(|e| e["type"] == "capture").collect();
    assert!(!events.is_empty());
    for (i, e) in events.iter().enumerate() {
        let expected = if i % 2 == 0 { "failed" } else { "recovered" };
        assert_eq!(e["event"], expected, "{e}");
        if expected == "failed" {
            let error = e["error"].as_str().unwrap();
            assert!(error.contains("No space left"), "{error}");
        }
    }
    assert!(events.len().div_ceil(2) as u64 <= count("failed"));
    eprintln!("full capture disk: {c}");
}
