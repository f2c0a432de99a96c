//! napd's MQTT telemetry against a real mosquitto broker on loopback, with the shared
//! MobileNetV2 replaying ImageNet and DTD photos:
//!
//! - a subscriber gets every OOD verdict the log records (QoS 1: at least once), the stats, the
//!   drift alarm's events and the retained status through `loading`, `ok`, `degraded` (drift)
//!   and the final `fault` with its reason;
//! - the broker stopped for seconds mid-run and started again loses nothing beyond what napd
//!   counted (`dropped`, `lost`);
//! - `kill -9` of napd makes the broker publish the `offline` will;
//! - an unreachable broker or wrong credentials: napd scores every frame anyway and says why
//!   in its log.

use nap_test_support::broker::{Broker, Received, Subscriber, free_port};
use napctl::images;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// 10 ImageNet and 10 DTD photos, and the float bundle with its threshold at their median
/// score (so about half are OOD); `None` without the shared data.
fn frames_and_bundle(name: &str) -> Option<(PathBuf, PathBuf)> {
    let frames = tmp(&format!("{name}_frames"));
    let _ = std::fs::remove_dir_all(&frames);
    std::fs::create_dir_all(&frames).unwrap();
    for set in ["id-imagenet", "ood-dtd"] {
        nap_test_support::mobilenet::link_shared_images(&frames, set, 0..10)?;
    }
    let bundle = nap_test_support::mobilenet::float_bundle_at_median(&frames)?;
    let path = tmp(&format!("{name}.nap"));
    bundle.write(&path).unwrap();
    Some((frames, path))
}

/// napd on `frames` at `fps`, telling `mqtt` as device `device`, logging to `log`.
fn napd(bundle: &Path, frames: &Path, fps: &str, mqtt: &[&str], log: &Path) -> Child {
    let _ = std::fs::remove_file(log);
    Command::new(nap_test_support::cli::workspace_binary("napd", "napd"))
        .args(["--bundle", bundle.to_str().unwrap()])
        .args(["--source", &format!("dir:{}", frames.display())])
        .args(["--fps", fps, "--overflow", "block"])
        .args(["--workers", "2", "--stats-ms", "500"])
        .args(["--log", &format!("jsonl:{}", log.display())])
        .args(mqtt)
        .spawn()
        .unwrap()
}

fn log_objects(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// napd over all of `frames` as fast as it scores them; gives its log. It must end well.
fn replay(bundle: &Path, frames: &Path, mqtt: &[&str], log: &Path) -> Vec<Value> {
    let status = napd(bundle, frames, "50", mqtt, log).wait().unwrap();
    assert!(status.success(), "napd: {status}");
    log_objects(log)
}

/// Why the log says the broker connection went down (it must say so).
fn down_reason(objects: &[Value]) -> String {
    objects
        .iter()
        .find(|o| o["type"] == "mqtt" && o["event"] == "down")
        .and_then(|o| o["reason"].as_str())
        .expect("an mqtt down event with its reason")
        .to_string()
}

/// The `seq` of every OOD verdict in the log.
fn ood_in_log(objects: &[Value]) -> BTreeSet<u64> {
    objects
        .iter()
        .filter(|o| o["type"] == "verdict" && o["ood"] == true)
        .map(|o| o["seq"].as_u64().unwrap())
        .collect()
}

/// The `seq` of every verdict message received.
fn ood_received(messages: &[Received], device: &str) -> BTreeSet<u64> {
    messages
        .iter()
        .filter(|m| m.topic == format!("nap/{device}/verdict"))
        .map(|m| {
            assert_eq!(
                m.json["ood"], true,
                "only OOD verdicts by default: {:?}",
                m.json
            );
            m.json["seq"].as_u64().unwrap()
        })
        .collect()
}

fn states(messages: &[Received], device: &str) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.topic == format!("nap/{device}/status"))
        .map(|m| m.json["state"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_subscriber_gets_every_ood_verdict_and_the_retained_status() {
    let Some((frames, bundle)) = frames_and_bundle("mqtt_basic") else {
        return;
    };
    let Some(broker) = Broker::start(&tmp("mqtt_basic_broker"), "") else {
        return;
    };
    let watcher = Subscriber::start(broker.port, "watcher-basic", "nap/#");
    let log = tmp("mqtt_basic.jsonl");
    let url = broker.url();
    // A short drift window: the DTD half of the replay raises the alarm.
    let mqtt = [
        "--mqtt",
        &url,
        "--device-id",
        "cam-1",
        "--drift-window",
        "10",
        "--drift-rate",
        "0.05",
    ];
    let status = napd(&bundle, &frames, "20", &mqtt, &log).wait().unwrap();
    assert!(status.success());

    let objects = log_objects(&log);
    let last = objects.last().unwrap();
    assert_eq!(last["type"], "final");
    let expected = ood_in_log(&objects);
    assert!(expected.len() >= 5, "{} OOD verdicts", expected.len());
    let end = |m: &Received| m.topic == "nap/cam-1/status" && m.json["code"] == 11;
    assert!(watcher.wait_for(Duration::from_secs(10), end).is_some());
    let got = watcher.messages();
    assert_eq!(
        ood_received(&got, "cam-1"),
        expected,
        "every OOD verdict, once or more"
    );
    assert_eq!(
        states(&got, "cam-1"),
        ["loading", "ok", "degraded", "fault"]
    );
    let drift_in_log: Vec<&Value> = objects.iter().filter(|o| o["type"] == "drift").collect();
    let drift_received: Vec<&Value> = got
        .iter()
        .filter(|m| m.topic == "nap/cam-1/drift")
        .map(|m| &m.json)
        .collect();
    assert!(!drift_in_log.is_empty());
    assert_eq!(drift_received, drift_in_log, "the drift events, as logged");
    assert!(
        got.iter()
            .any(|m| m.topic == "nap/cam-1/stats" && m.json["fps"].is_number())
    );
    let counts = &last["mqtt"];
    assert_eq!(counts["dropped"], 0, "{counts}");
    assert_eq!(counts["lost"], 0, "{counts}");
    assert_eq!(counts["unconfirmed"], 0, "{counts}");

    // Later subscribers get the last status, retained, with the bundle that ran.
    let late = Subscriber::start(broker.port, "late-basic", "nap/+/status");
    let retained = late
        .wait_for(Duration::from_secs(5), |m| m.retained)
        .expect("a retained status");
    assert_eq!(retained.json["state"], "fault");
    assert_eq!(retained.json["reason"], "source ended");
    assert_eq!(retained.json["device"], "cam-1");
    let sha = std::fs::read(&bundle).unwrap();
    let sha = sha2_hex(&sha);
    assert_eq!(retained.json["bundle"]["sha256"], sha.as_str());
    assert_eq!(retained.json["bundle"]["method"], "NAP-E");
    eprintln!(
        "mqtt: {} OOD verdicts, all received; counts {counts}",
        expected.len()
    );
}

fn sha2_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn a_broker_restart_mid_run_loses_nothing_uncounted() {
    let Some((frames, bundle)) = frames_and_bundle("mqtt_restart") else {
        return;
    };
    let Some(mut broker) = Broker::start(&tmp("mqtt_restart_broker"), "") else {
        return;
    };
    let watcher = Subscriber::start(broker.port, "watcher-restart", "nap/#");
    let log = tmp("mqtt_restart.jsonl");
    let url = broker.url();
    let mqtt = [
        "--mqtt",
        &url,
        "--device-id",
        "cam-2",
        "--reconnect-ms",
        "200",
    ];
    // 20 frames at 4 a second: about 5 s, with the broker away for 2 s of it.
    let mut child = napd(&bundle, &frames, "4", &mqtt, &log);
    assert!(
        watcher
            .wait_for(Duration::from_secs(60), |m| m.topic == "nap/cam-2/verdict")
            .is_some(),
        "no verdict before the restart"
    );
    broker.stop();
    std::thread::sleep(Duration::from_secs(2));
    broker.restart();
    assert!(child.wait().unwrap().success());

    let objects = log_objects(&log);
    let last = objects.last().unwrap();
    let expected = ood_in_log(&objects);
    let counts = &last["mqtt"];
    assert!(counts["reconnects"].as_u64().unwrap() >= 1, "{counts}");
    assert!(
        objects
            .iter()
            .any(|o| o["type"] == "mqtt" && o["event"] == "down"),
        "the loss of the broker is logged"
    );
    let end = |m: &Received| m.topic == "nap/cam-2/status" && m.json["code"] == 11;
    assert!(watcher.wait_for(Duration::from_secs(15), end).is_some());
    let got = ood_received(&watcher.messages(), "cam-2");
    assert!(got.is_subset(&expected));
    let missing = expected.len() - got.len();
    let counted = counts["dropped"].as_u64().unwrap() + counts["lost"].as_u64().unwrap();
    assert!(
        missing as u64 <= counted,
        "{missing} OOD verdicts missing, napd counted {counted}: {counts}"
    );
    eprintln!(
        "mqtt restart: {} of {} OOD verdicts received; counts {counts}",
        got.len(),
        expected.len()
    );
}

#[test]
fn a_killed_napd_is_marked_offline_by_its_will() {
    let Some((frames, bundle)) = frames_and_bundle("mqtt_kill") else {
        return;
    };
    let Some(broker) = Broker::start(&tmp("mqtt_kill_broker"), "") else {
        return;
    };
    let watcher = Subscriber::start(broker.port, "watcher-kill", "nap/+/status");
    let url = broker.url();
    let mqtt = ["--mqtt", &url, "--device-id", "cam-3"];
    let mut child = napd(&bundle, &frames, "2", &mqtt, &tmp("mqtt_kill.jsonl"));
    let ok = |m: &Received| m.json["state"] == "ok";
    assert!(watcher.wait_for(Duration::from_secs(60), ok).is_some());
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let offline = watcher
        .wait_for(Duration::from_secs(20), |m| m.json["state"] == "offline")
        .expect("the will");
    assert_eq!(offline.topic, "nap/cam-3/status");
    assert_eq!(offline.json["device"], "cam-3");
}

#[test]
fn without_a_broker_or_with_wrong_credentials_napd_scores_anyway_and_says_why() {
    let Some((frames, bundle)) = frames_and_bundle("mqtt_bad") else {
        return;
    };
    // Nothing listens on this port.
    let url = format!("mqtt://127.0.0.1:{}", free_port());
    let log = tmp("mqtt_unreachable.jsonl");
    let mqtt = ["--mqtt", &url, "--device-id", "cam-4"];
    let objects = replay(&bundle, &frames, &mqtt, &log);
    let last = objects.last().unwrap();
    assert_eq!(last["verdicts"], 20, "every frame scored: {last}");
    assert_eq!(last["mqtt"]["connected"], false);
    assert_eq!(last["mqtt"]["sent"], 0);
    // What could not be sent is counted, not lost silently.
    assert_eq!(last["mqtt"]["waiting"], last["mqtt"]["queued"], "{last}");
    let reason = down_reason(&objects);
    assert!(reason.contains("Connection refused"), "{reason}");
    // The fleet view says so too, and fails.
    let out = Command::new(nap_test_support::cli::workspace_binary("napctl", "napctl"))
        .args(["fleet", &url, "--json", "--wait", "2"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("Connection refused"), "{said}");

    // A broker that wants a password napd does not have.
    let dir = tmp("mqtt_auth_broker");
    let Some(broker) = Broker::start(&dir, "") else {
        return;
    };
    drop(broker);
    let passwords = tmp("mqtt_auth.passwd");
    std::fs::write(&passwords, "").unwrap();
    let made = Command::new("mosquitto_passwd")
        .args(["-b", passwords.to_str().unwrap(), "cam", "right"])
        .status();
    if made.map(|s| !s.success()).unwrap_or(true) {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "mosquitto_passwd failed under CI"
        );
        println!("skipped: mosquitto_passwd is not usable");
        return;
    }
    let broker = Broker::start(&dir, &format!("password_file {}", passwords.display())).unwrap();
    let credentials = tmp("mqtt_auth.cred");
    std::fs::write(&credentials, "cam:wrong\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&credentials, std::fs::Permissions::from_mode(0o600)).unwrap();
    let url = broker.url();
    let cred = credentials.to_str().unwrap();
    let log = tmp("mqtt_auth.jsonl");
    let mqtt = [
        "--mqtt",
        &url,
        "--device-id",
        "cam-5",
        "--mqtt-credentials",
        cred,
    ];
    let objects = replay(&bundle, &frames, &mqtt, &log);
    assert_eq!(objects.last().unwrap()["verdicts"], 20);
    let reason = down_reason(&objects);
    assert!(reason.contains("check --mqtt-credentials"), "{reason}");

    // The right password gets through.
    std::fs::write(&credentials, "cam:right\n").unwrap();
    let watcher =
        Subscriber::start_with_credentials(broker.port, "watcher-auth", "nap/#", ("cam", "right"));
    let log = tmp("mqtt_auth_ok.jsonl");
    replay(&bundle, &frames, &mqtt, &log);
    let end = |m: &Received| m.topic == "nap/cam-5/status" && m.json["code"] == 11;
    assert!(watcher.wait_for(Duration::from_secs(10), end).is_some());
}

/// Makes a CA and a certificate for 127.0.0.1 signed by it, with openssl; gives (ca, cert, key).
fn tls_files(dir: &Path) -> Option<(PathBuf, PathBuf, PathBuf)> {
    let openssl = nap_test_support::tools::require("openssl")?;
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let file = |name: &str| dir.join(name).to_str().unwrap().to_string();
    let run = |args: &[&str]| {
        let out = Command::new(&openssl).args(args).output().unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=nap test CA",
        "-keyout",
        &file("ca.key"),
        "-out",
        &file("ca.pem"),
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        &file("broker.key"),
        "-out",
        &file("broker.csr"),
    ]);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        &file("broker.csr"),
        "-CA",
        &file("ca.pem"),
        "-CAkey",
        &file("ca.key"),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &file("san.ext"),
        "-out",
        &file("broker.pem"),
    ]);
    Some((
        dir.join("ca.pem"),
        dir.join("broker.pem"),
        dir.join("broker.key"),
    ))
}

#[test]
fn mqtts_reaches_a_tls_broker_that_the_ca_vouches_for_and_refuses_another() {
    let Some((frames, bundle)) = frames_and_bundle("mqtt_tls") else {
        return;
    };
    let Some((ca, cert, key)) = tls_files(&tmp("mqtt_tls_certs")) else {
        return;
    };
    // One broker, two listeners: TLS for napd, plain for the test's subscriber.
    let tls_port = free_port();
    let listener = format!(
        "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}",
        ca.display(),
        cert.display(),
        key.display()
    );
    let Some(broker) = Broker::start(&tmp("mqtt_tls_broker"), &listener) else {
        return;
    };
    let watcher = Subscriber::start(broker.port, "watcher-tls", "nap/#");
    let url = format!("mqtts://127.0.0.1:{tls_port}");
    let log = tmp("mqtt_tls.jsonl");
    let ca_arg = ca.to_str().unwrap();
    let mqtt = ["--mqtt", &url, "--device-id", "cam-6", "--mqtt-ca", ca_arg];
    let objects = replay(&bundle, &frames, &mqtt, &log);
    let end = |m: &Received| m.topic == "nap/cam-6/status" && m.json["code"] == 11;
    assert!(watcher.wait_for(Duration::from_secs(10), end).is_some());
    assert_eq!(
        ood_received(&watcher.messages(), "cam-6"),
        ood_in_log(&objects)
    );

    // A CA that did not sign the broker's certificate: refused, said, and scoring goes on.
    let (other_ca, _, _) = tls_files(&tmp("mqtt_tls_other")).unwrap();
    let log = tmp("mqtt_tls_other.jsonl");
    let other = other_ca.to_str().unwrap();
    let mqtt = ["--mqtt", &url, "--device-id", "cam-6", "--mqtt-ca", other];
    let objects = replay(&bundle, &frames, &mqtt, &log);
    assert_eq!(objects.last().unwrap()["verdicts"], 20);
    let reason = down_reason(&objects);
    assert!(reason.contains("TLS"), "{reason}");
}

#[test]
fn napctl_fleet_lists_each_device_with_its_counts() {
    let Some((frames, bundle)) = frames_and_bundle("mqtt_fleet") else {
        return;
    };
    let Some(broker) = Broker::start(&tmp("mqtt_fleet_broker"), "") else {
        return;
    };
    let url = broker.url();
    let fleet = Command::new(nap_test_support::cli::workspace_binary("napctl", "napctl"))
        .args(["fleet", &url, "--json", "--wait", "20"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // The view subscribes first: give it a moment.
    std::thread::sleep(Duration::from_secs(1));
    let files = images::collect(std::slice::from_ref(&frames)).unwrap();
    let devices = [("dev-a", 4), ("dev-b", 7), ("dev-c", 12)];
    let runs: Vec<(Child, PathBuf)> = devices
        .iter()
        .map(|&(id, n)| {
            // Frames from both sets, so each device flags some.
            let dir = tmp(&format!("mqtt_fleet_{id}"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for f in files
                .iter()
                .rev()
                .take(n / 2)
                .chain(files.iter().take(n - n / 2))
            {
                std::os::unix::fs::symlink(&f.path, dir.join(&f.name)).unwrap();
            }
            let log = tmp(&format!("mqtt_fleet_{id}.jsonl"));
            let mqtt = ["--mqtt", &url, "--device-id", id];
            (napd(&bundle, &dir, "20", &mqtt, &log), log)
        })
        .collect();
    let mut logs = Vec::new();
    for (mut child, log) in runs {
        assert!(child.wait().unwrap().success());
        logs.push(log_objects(&log));
    }
    let out = fleet.wait_with_output().unwrap();
    assert!(out.status.success());
    let view: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(view.as_object().unwrap().len(), devices.len(), "{view}");
    for ((id, n), objects) in devices.iter().zip(&logs) {
        let device = &view[*id];
        let last = objects.last().unwrap();
        assert_eq!(last["verdicts"], *n as u64);
        assert_eq!(device["verdicts"], last["verdicts"], "{id}: {device}");
        assert_eq!(device["dropped"], last["dropped"], "{id}: {device}");
        assert_eq!(device["state"], "fault", "{id}: {device}");
        assert_eq!(device["code"], 11, "{id}: {device}");
        let ood = ood_in_log(objects).len() as u64;
        assert!(ood > 0, "{id} flags some frames");
        assert!(
            device["ood_verdicts_seen"].as_u64().unwrap() >= ood,
            "{id}: {device}"
        );
    }
}
