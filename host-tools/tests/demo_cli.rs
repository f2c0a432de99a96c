//! `napctl demo` as a new user runs it: the built-in model and frames, no arguments besides the
//! output folder. It must succeed, separate Fashion-MNIST from MNIST with NAP-E, show every
//! method, and the controller must act on every verdict.

use nap_test_support::cli::{self, assert_ok};
use std::ffi::OsStr;

#[test]
fn demo_runs_end_to_end_on_the_built_in_model() {
    let out = std::env::temp_dir().join(format!("napctl-demo-{}", std::process::id()));
    let run = cli::run(
        env!("CARGO_BIN_EXE_napctl"),
        [OsStr::new("demo"), OsStr::new("--out"), out.as_os_str()],
    );
    assert_ok(&run);
    let stdout = cli::stdout(&run);
    assert!(
        stdout.contains("Kept the bundle's fusion weights"),
        "{stdout}"
    );

    // Every method in the table.
    for method in [
        "MSP", "MaxLogit", "Energy", "GEN", "ReAct", "ASH-S", "ASH-B", "SCALE", "DICE", "ViM",
        "NAP ", "NAP-E", "NAP-R", "NAP-A", "NAP-M", "NAP-D",
    ] {
        assert!(stdout.contains(method), "no {method} row: {stdout}");
    }
    let eval: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("eval.json")).unwrap()).unwrap();
    let mnist = eval["ood"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["set"] == "ood-mnist")
        .expect("an ood-mnist set");
    let auroc = mnist["methods"]["NAP-E"]["auroc"].as_f64().unwrap();
    assert!(
        auroc > 90.0,
        "NAP-E AUROC {auroc} for Fashion-MNIST vs MNIST"
    );
    assert!(out.join("plots").read_dir().unwrap().count() > 0);

    // The replay: one controller frame per image, one reject pulse per OOD verdict, armed.
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("controller:"))
        .expect("a controller summary");
    let numbers: Vec<u64> = summary
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|w| w.parse().ok())
        .collect();
    let flagged: u64 = stdout
        .lines()
        .filter(|l| l.starts_with("id ") || l.starts_with("ood-"))
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum();
    let frames: u64 = stdout
        .lines()
        .filter(|l| l.starts_with("id ") || l.starts_with("ood-"))
        .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        .sum();
    assert!(frames >= 600, "{stdout}");
    // valid frames = verdicts + the first heartbeat; OOD verdicts; reject pulses; damaged frames
    assert_eq!(numbers[..4], [frames + 1, flagged, flagged, 0], "{summary}");
    assert!(
        summary.ends_with("armed") && !summary.contains("NOT"),
        "{summary}"
    );
    let _ = std::fs::remove_dir_all(&out);
}
