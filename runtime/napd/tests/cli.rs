//! The `napd` binary and its configuration: help for every flag, clear refusals of bad flags
//! and config (exit 2), the TOML file equivalent to the flags, the shipped sample config, and a
//! corrupt bundle at start: a fault status reaches the controller before the non-zero exit.

use nap_core::protocol::{Health, Message, RuntimeStatus};
use nap_test_support::peer::Peer;
use napd::Options;
use napd::drift::DriftAction;
use napd::flagged::CaptureOptions;
use napd::link::LinkSpec;
use napd::log::LogTarget;
use napd::ood_line::{GpioSpec, LineMode};
use napd::source::SourceSpec;
use napd::status::code;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn napd(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_napd"))
        .args(args)
        .output()
        .expect("napd runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

#[test]
fn help_explains_every_flag() {
    let out = napd(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--bundle",
        "--trusted-keys",
        "--source",
        "--link",
        "--ood-gpio",
        "--ood-line",
        "--log",
        "--workers",
        "--queue",
        "--overflow",
        "--fps",
        "--threshold",
        "--heartbeat-ms",
        "--reconnect-ms",
        "--stats-ms",
        "--max-frame-bytes",
        "--drift-window",
        "--drift-rate",
        "--drift-action",
        "--capture",
        "--capture-max-mb",
        "--capture-max-per-min",
        "--mqtt",
        "--device-id",
        "--mqtt-credentials",
        "--mqtt-ca",
        "--mqtt-all-verdicts",
        "--mqtt-queue",
        "--metrics",
        "--config",
        "--check",
    ] {
        let line = help
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("{flag} missing:\n{help}"));
        let _ = line;
    }
    assert!(help.contains("SIGTERM"), "the help says how to stop it");
}

#[test]
fn bad_flags_and_config_exit_2_with_a_reason() {
    let cases: [(&[&str], &str); 18] = [
        (&["--source", "dir:x"], "no bundle"),
        (&["--bundle", "b.nap"], "no source"),
        (&["--bundle", "b.nap", "--source", "usb:x"], "unknown kind"),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--link",
                "tcp:nowhere",
            ],
            "no port",
        ),
        (
            &["--bundle", "b.nap", "--source", "dir:x", "--workers", "0"],
            "workers = 0",
        ),
        (
            &["--bundle", "b.nap", "--source", "raw:-", "--fps", "30"],
            "fps applies to dir",
        ),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--ood-gpio",
                "gpiochip0",
            ],
            "CHIP:LINE",
        ),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--drift-window",
                "5",
            ],
            "at least 10",
        ),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--drift-rate",
                "1.5",
            ],
            "drift-rate = 1.5",
        ),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--drift-action",
                "panic",
            ],
            "degrade or warn",
        ),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--capture-max-mb",
                "10",
            ],
            "need a capture folder",
        ),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--capture",
                "c",
                "--capture-max-mb",
                "0",
            ],
            "capture-max-mb = 0",
        ),
        (
            &[
                "--bundle", "b.nap", "--source", "dir:x", "--mqtt", "tcp://h",
            ],
            "unknown scheme",
        ),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--mqtt",
                "mqtt://u:p@h",
            ],
            "credentials do not go in the URL",
        ),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--device-id",
                "cam",
            ],
            "need a broker",
        ),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--mqtt",
                "mqtt://h",
                "--device-id",
                "a/b",
            ],
            "MQTT topic level",
        ),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--mqtt",
                "mqtt://h",
                "--mqtt-ca",
                "ca.pem",
            ],
            "mqtts:// brokers only",
        ),
        (
            &[
                "--bundle",
                "b.nap",
                "--source",
                "dir:x",
                "--metrics",
                "host:80",
            ],
            "expected PORT",
        ),
    ];
    for (args, reason) in cases {
        let out = napd(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(stderr(&out).contains(reason), "{args:?}: {}", stderr(&out));
    }
    let out = napd(&["--workers", "many"]);
    assert_eq!(out.status.code(), Some(2));
    let config = tmp("napd_cli_unknown.toml");
    std::fs::write(
        &config,
        "bundle = \"b.nap\"\nsource = \"dir:x\"\nwrokers = 2\n",
    )
    .unwrap();
    let out = napd(&["--config", config.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("wrokers"), "{}", stderr(&out));
    let out = napd(&["--config", "/nonexistent/napd.toml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn the_config_file_is_equivalent_to_the_flags_and_flags_win() {
    let text = r#"
        bundle = "/opt/m.nap"
        trusted-keys = "/etc/napd/keys"
        source = "raw:-"
        link = "tcp:10.0.0.2:7000"
        ood-gpio = "gpiochip1:4"
        ood-line = "level"
        log = "jsonl:/tmp/v.jsonl"
        workers = 3
        queue = 5
        overflow = "block"
        threshold = -1.5
        heartbeat-ms = 50
        reconnect-ms = 250
        stats-ms = 1000
        max-frame-bytes = 1000000
        drift-window = 300
        drift-rate = 0.02
        drift-action = "warn"
        capture = "/var/lib/napd/capture"
        capture-max-mb = 64
        capture-max-per-min = 0
        mqtt = "mqtts://broker.fleet:8884"
        device-id = "cam-07"
        mqtt-credentials = "/etc/napd/mqtt.cred"
        mqtt-ca = "/etc/napd/fleet-ca.pem"
        mqtt-all-verdicts = true
        mqtt-queue = 50
        metrics = "0.0.0.0:9464"
    "#;
    let file = Options::from_toml(text).unwrap();
    let s = file.clone().resolve().unwrap();
    assert_eq!(s.bundle, Path::new("/opt/m.nap"));
    assert_eq!(s.trusted_keys.as_deref(), Some(Path::new("/etc/napd/keys")));
    assert_eq!(s.source, SourceSpec::RawStdin);
    assert_eq!(s.link, LinkSpec::Tcp("10.0.0.2:7000".into()));
    assert_eq!(
        s.ood_gpio,
        Some(GpioSpec {
            chip: "/dev/gpiochip1".into(),
            line: 4
        })
    );
    assert_eq!(s.ood_line, LineMode::Level);
    assert_eq!(s.log, LogTarget::File("/tmp/v.jsonl".into()));
    assert_eq!((s.pipeline.workers, s.pipeline.queue), (3, 5));
    assert_eq!(s.threshold, Some(-1.5));
    assert_eq!(s.link_options.heartbeat, Duration::from_millis(50));
    assert_eq!(s.source_options.max_frame_bytes, 1_000_000);
    assert_eq!(
        (s.drift.window, s.drift.rate, s.drift.action),
        (300, Some(0.02), DriftAction::Warn)
    );
    assert_eq!(
        s.capture,
        Some(CaptureOptions {
            dir: "/var/lib/napd/capture".into(),
            max_bytes: 64 << 20,
            max_per_min: 0,
        })
    );
    let mqtt = s.mqtt.unwrap();
    assert_eq!(mqtt.broker.to_string(), "mqtts://broker.fleet:8884");
    assert_eq!(mqtt.device_id, "cam-07");
    assert_eq!(
        mqtt.credentials.as_deref(),
        Some(Path::new("/etc/napd/mqtt.cred"))
    );
    assert_eq!(
        mqtt.ca.as_deref(),
        Some(Path::new("/etc/napd/fleet-ca.pem"))
    );
    assert!(mqtt.all_verdicts);
    assert_eq!(
        (mqtt.queue, mqtt.reconnect),
        (50, Duration::from_millis(250))
    );
    let flags = Options {
        workers: Some(1),
        link: Some("none".into()),
        ..Options::default()
    };
    let merged = flags.over(file).resolve().unwrap();
    assert_eq!((merged.pipeline.workers, merged.link), (1, LinkSpec::None));
    assert_eq!(
        merged.pipeline.queue, 5,
        "what the flags do not give comes from the file"
    );
    assert!(Options::from_toml("workers = \"two\"").is_err());
    assert!(
        Options::from_toml("queue = 0\nbundle = \"b\"\nsource = \"dir:x\"")
            .unwrap()
            .resolve()
            .is_err()
    );
}

#[test]
fn gst_sources_keep_their_pipeline_as_written() {
    let text = "gst:rtspsrc location=rtsp://cam/stream latency=200 ! decodebin";
    let spec: SourceSpec = text.parse().unwrap();
    assert_eq!(
        spec,
        SourceSpec::Gst("rtspsrc location=rtsp://cam/stream latency=200 ! decodebin".into())
    );
    assert_eq!(spec.to_string(), text);
    for empty in ["gst:", "gst:  "] {
        let e = empty.parse::<SourceSpec>().unwrap_err().to_string();
        assert!(e.contains("empty") && e.contains("gst:PIPELINE"), "{e}");
    }
}

#[test]
fn the_sample_config_resolves() {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/napd.toml");
    let s = Options::from_file(&sample).unwrap().resolve().unwrap();
    assert_eq!(s.source, SourceSpec::V4l2("/dev/video0".into()));
    assert!(matches!(s.link, LinkSpec::Serial { baud: 115_200, .. }));
    let unit =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/napd.service"))
            .unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/napd --config /etc/napd/napd.toml"));
}

#[test]
fn a_corrupt_bundle_sends_a_fault_status_and_exits_1() {
    let bundle = tmp("napd_cli_corrupt.nap");
    std::fs::write(&bundle, b"NAPBNDL\0 this is not really a bundle").unwrap();
    let peer = Peer::bind().unwrap();
    let out = napd(&[
        "--bundle",
        bundle.to_str().unwrap(),
        "--source",
        "dir:/nonexistent",
        "--link",
        &peer.link_spec(),
        "--heartbeat-ms",
        "20",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("bundle"), "{}", stderr(&out));
    let fault = Message::RuntimeStatus(RuntimeStatus {
        health: Health::Fault,
        code: code::BUNDLE,
    });
    assert!(
        peer.wait_until(Duration::from_secs(5), |r| r
            .iter()
            .any(|m| m.message == fault)),
        "the controller never heard the fault: {:?}",
        peer.received()
    );
    // The same bundle fails --check, without any link traffic.
    let out = napd(&[
        "--check",
        "--bundle",
        bundle.to_str().unwrap(),
        "--source",
        "dir:/nonexistent",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("check failed"), "{}", stderr(&out));
}

#[test]
fn a_config_file_at_the_size_limit_is_read_and_one_past_it_refused() {
    use napd::config::MAX_CONFIG_BYTES;
    let body = "bundle = \"m.nap\"\nsource = \"dir:frames\"\n# ";
    let at = format!(
        "{body}{}\n",
        "x".repeat(MAX_CONFIG_BYTES as usize - body.len() - 1)
    );
    assert_eq!(at.len() as u64, MAX_CONFIG_BYTES);
    let path = tmp("config-at-limit.toml");
    std::fs::write(&path, &at).unwrap();
    let options = Options::from_file(&path).expect("a config at the limit is read");
    assert_eq!(options.source.as_deref(), Some("dir:frames"));
    std::fs::write(&path, format!("{at}\n")).unwrap();
    let e = Options::from_file(&path).unwrap_err();
    assert!(
        e.ends_with("65537 bytes, more than the limit of 65536"),
        "{e}"
    );
    // And so says napd, before anything else.
    let out = napd(&["--config", path.to_str().unwrap(), "--check"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("more than the limit of 65536"),
        "{}",
        stderr(&out)
    );
}
