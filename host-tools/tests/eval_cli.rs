//! `napctl eval` and `napctl calibrate` as a user runs them, on a tiny model the project builds
//! itself (no shared data): the JSON schema, the feature cache (hits, stale entries after a file
//! changes, damaged entries ignored), calibrated bundles, and clear errors for bad input.

mod common;

use common::{fixture_bundle, napctl, png};
use nap_test_support::cli::{Scratch, assert_fails_with, assert_ok, stderr, stdout};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Exit code of a run that failed on its input.
const FAILED: i32 = 1;
/// Exit code of a command line that does not parse (clap's usage error).
const USAGE: i32 = 2;

/// A scratch folder for one test.
fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("napctl-eval-{name}"))
}

/// A folder of `n` PNGs in `dir` drawn by `pixel(image index, x, y)`.
fn folder(dir: &Scratch, name: &str, n: u32, pixel: impl Fn(u32, u32, u32) -> [u8; 3]) -> String {
    for i in 0..n {
        dir.write(
            &format!("{name}/{i:02}.png"),
            &png(16, 16, |x, y| pixel(i, x, y)),
        );
    }
    dir.path(name)
}

/// Structured ID frames (a bright spot on a dark field) and flat or noisy OOD frames.
fn id_pixel(i: u32, x: u32, y: u32) -> [u8; 3] {
    let spot = (x as i32 - (3 + i % 9) as i32).abs() + (y as i32 - (4 + i % 7) as i32).abs() < 3;
    if spot {
        [250, 240, (i * 20) as u8]
    } else {
        [(x * 3) as u8, (y * 3) as u8, 20]
    }
}

fn ood_pixel(i: u32, x: u32, y: u32) -> [u8; 3] {
    let v = ((x * 7 + y * 13 + i * 31) % 50) as u8 + 100;
    [v, v, v]
}

/// The "N hit(s), M computed" numbers of the cache line on stderr.
fn cache_counts(out: &Output) -> (u64, u64) {
    let err = stderr(out);
    let line = err
        .lines()
        .find(|l| l.starts_with("feature cache"))
        .unwrap_or_else(|| panic!("no cache line: {err}"));
    let numbers: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|s| s.parse().ok())
        .collect();
    let n = numbers.len();
    (numbers[n - 2], numbers[n - 1])
}

#[test]
fn eval_reports_every_method_in_the_json_schema_and_caches_features() {
    let dir = scratch("eval");
    let bundle = fixture_bundle(&dir);
    let id = folder(&dir, "id", 12, id_pixel);
    let ood = folder(&dir, "ood", 8, ood_pixel);
    let cache = dir.path("cache");
    let json = dir.path("eval.json");
    let plots = dir.path("plots");
    let args = [
        "eval",
        &bundle,
        "--id",
        &id,
        "--ood",
        &ood,
        "--json",
        &json,
        "--cache-dir",
        &cache,
    ];
    let out = napctl(&args);
    assert_ok(&out);
    assert_eq!(cache_counts(&out), (0, 20));
    let text = stdout(&out);
    assert!(text.contains("has no ReAct clip"), "{text}");
    for m in [
        "MSP", "MaxLogit", "Energy", "GEN", "ReAct", "ASH-S", "ASH-B", "SCALE", "DICE", "ViM",
        "NAP", "NAP-E", "NAP-R", "NAP-A", "NAP-M", "NAP-D",
    ] {
        assert!(text.contains(&format!("\n  {m} ")), "{m} missing: {text}");
    }
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["id"]["set"], "id");
    assert_eq!(report["id"]["n"], 12);
    assert_eq!(report["ood"][0]["set"], "ood");
    assert_eq!(report["ood"][0]["n"], 8);
    let methods = report["ood"][0]["methods"].as_object().unwrap();
    assert_eq!(methods.len(), 16);
    for (name, m) in methods {
        for key in [
            "fpr95",
            "fpr95_ood_positive",
            "auroc",
            "aupr_in",
            "aupr_out",
        ] {
            let v = m[key].as_f64().unwrap_or_else(|| panic!("{name}.{key}"));
            assert!((0.0..=100.0).contains(&v), "{name}.{key} = {v} not percent");
        }
        assert_eq!(report["average"][name], *m, "one OOD set: average = it");
    }

    // Second run: every frame from the cache, same numbers; with plots and the w sweep.
    let mut again = args.to_vec();
    again.extend(["--plots", &plots, "--sweep-w"]);
    let out = napctl(&again);
    assert_ok(&out);
    assert_eq!(cache_counts(&out), (20, 0));
    let second: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(second, report);
    assert!(stdout(&out).contains("NAP-E FPR95/AUROC"));
    for f in ["hist-NAP-E.png", "hist-Energy.svg", "roc-ood.png"] {
        assert!(Path::new(&plots).join(f).exists(), "{f}");
    }

    // A changed file is recomputed, never served stale.
    std::fs::write(
        Path::new(&id).join("00.png"),
        png(16, 16, |x, y| ood_pixel(99, x, y)),
    )
    .unwrap();
    let out = napctl(&args);
    assert_ok(&out);
    assert_eq!(cache_counts(&out), (19, 1));

    // Damaged entries are ignored with a warning and rewritten.
    let entries: Vec<PathBuf> = walk(Path::new(&cache));
    assert_eq!(entries.len(), 21, "one entry per image content");
    for e in entries.iter().take(3) {
        let mut bytes = std::fs::read(e).unwrap();
        let n = bytes.len();
        bytes[n / 2] ^= 0xff;
        std::fs::write(e, bytes).unwrap();
    }
    std::fs::write(&entries[3], b"garbage").unwrap();
    let out = napctl(&args);
    assert_ok(&out);
    assert!(
        stderr(&out).contains("ignoring cache entry"),
        "{}",
        stderr(&out)
    );
    let (hits, computed) = cache_counts(&out);
    assert_eq!(hits + computed, 20);
    assert!(computed <= 4, "only damaged entries recomputed");

    // Pseudo-OOD sets (two ID images per corruption here) join the table as extra OOD sets.
    let mut pseudo = args.to_vec();
    pseudo.extend(["--pseudo-ood", "--corruptions", "blur,shuffle"]);
    let out = napctl(&pseudo);
    assert_ok(&out);
    let text = stdout(&out);
    assert!(text.contains("pseudo-ood-blur (n = 2)"), "{text}");
    assert!(text.contains("pseudo-ood-shuffle (n = 2)"), "{text}");
    assert!(!text.contains("pseudo-ood-noise"), "{text}");
    assert!(text.contains("Average over 3 OOD sets"), "{text}");

    // --no-cache computes everything and prints no cache line.
    let mut no_cache = args.to_vec();
    no_cache.push("--no-cache");
    let out = napctl(&no_cache);
    assert_ok(&out);
    assert!(!stderr(&out).contains("feature cache"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out.sort();
    out
}

#[test]
fn calibrate_writes_a_bundle_with_threshold_clip_and_weights() {
    let dir = scratch("calibrate");
    let bundle = fixture_bundle(&dir);
    let id = folder(&dir, "id", 20, id_pixel);
    let ood = folder(&dir, "ood", 10, ood_pixel);
    let cache = dir.path("cache");
    for (label, extra) in [
        ("with-ood", vec!["--ood", ood.as_str()]),
        ("id-only", vec![]),
        ("keep-w", vec!["--keep-w"]),
        ("auto", vec!["--method", "auto"]),
    ] {
        let output = dir.path(&format!("{label}.nap"));
        let mut args = vec![
            "calibrate",
            &bundle,
            "--id",
            &id,
            "--tpr",
            "0.9",
            "-o",
            &output,
            "--cache-dir",
            &cache,
        ];
        args.extend(extra);
        let out = napctl(&args);
        assert_ok(&out);
        let text = stdout(&out);
        let way = match label {
            "id-only" | "auto" => "Calibrated on ID only",
            "keep-w" => "Kept the bundle's fusion weights",
            _ => "Calibrated with OOD folders",
        };
        assert!(text.contains(way), "{text}");
        assert_eq!(text.contains("w search"), label != "keep-w", "{text}");
        assert_eq!(
            text.contains("Methods by mean FPR"),
            label != "keep-w",
            "{text}"
        );
        // Auto names the method it chose, the best of the ranking; otherwise NAP-E decides.
        let deciding = match text.split_once("Deciding method ") {
            Some((_, rest)) if label == "auto" => {
                assert!(rest.contains("(--method auto)"), "{text}");
                let best = text
                    .split_once("(ties: higher AUROC), best 5:\n")
                    .and_then(|(_, list)| list.split_whitespace().next())
                    .unwrap();
                let chosen = rest.split_whitespace().next().unwrap();
                assert_eq!(chosen, best, "{text}");
                chosen.to_owned()
            }
            _ => "NAP-E".to_owned(),
        };
        assert!(text.contains("expected ID rejection rate 10.00%"), "{text}");

        let out = napctl(&["inspect", &output, "--json"]);
        assert_ok(&out);
        let m: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(m["scorer"]["method"], deciding.as_str());
        assert!(m["scorer"]["threshold"].is_number(), "{m}");
        // The TPR the threshold keeps, for napd's drift alarm.
        let tpr = m["scorer"]["tpr"].as_f64().unwrap();
        assert!((tpr - 0.9).abs() < 1e-6, "{m}");
        assert!(m["scorer"]["params"]["react_clip"].is_number(), "{m}");
        // DICE's statistics: the ID mean pooled feature, one value per head feature.
        let features = m["head"]["features"].as_u64().unwrap() as usize;
        assert_eq!(m["dice"]["mean"].as_array().unwrap().len(), features, "{m}");
        assert_eq!(m["dice"]["sparsity"], 70.0);
        let text = stdout(&napctl(&["inspect", &output]));
        assert!(
            text.contains(&format!("DICE's ID mean pooled feature: {features} values")),
            "{text}"
        );
        let w = m["scorer"]["params"]["weights"]["nap_e"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&w));
        if label == "keep-w" {
            assert!((w - 0.6).abs() < 1e-6, "the paper's w stays: {w}");
        }

        // The calibrated bundle flags about 10% of the ID frames it was calibrated on.
        let out = napctl(&["score", &output, &id]);
        assert_ok(&out);
        let flagged = stdout(&out)
            .lines()
            .skip(1)
            .filter(|l| l.ends_with("\t1"))
            .count();
        assert_eq!(flagged, 2, "{}", stdout(&out));
    }
}

#[test]
fn bad_input_is_named() {
    let dir = scratch("bad");
    let bundle = fixture_bundle(&dir);
    let id = folder(&dir, "id", 4, id_pixel);
    let ood = folder(&dir, "ood", 3, ood_pixel);
    let cache = dir.path("cache");
    let out_nap = dir.path("out.nap");
    let calibrate = |extra: &[&str]| {
        let mut args = vec![
            "calibrate",
            &bundle,
            "--id",
            &id,
            "-o",
            &out_nap,
            "--cache-dir",
            &cache,
        ];
        args.extend_from_slice(extra);
        napctl(&args)
    };
    for tpr in ["0", "1", "1.5", "-0.2", "nan"] {
        assert_fails_with(
            &calibrate(&[&format!("--tpr={tpr}")]),
            FAILED,
            "outside (0, 1)",
        );
    }
    assert_fails_with(
        &calibrate(&["--method", "NAP-X"]),
        USAGE,
        "unknown scoring method",
    );
    assert_fails_with(
        &calibrate(&["--method", "auto", "--keep-w"]),
        FAILED,
        "--method auto compares methods against pseudo-OOD sets, which --keep-w skips",
    );
    assert_fails_with(
        &calibrate(&["--ash-percentile", "100"]),
        FAILED,
        "outside [0, 100)",
    );
    assert_fails_with(
        &calibrate(&["--corruptions", "noise,fog"]),
        USAGE,
        "unknown corruption",
    );
    assert!(
        !Path::new(&out_nap).exists(),
        "nothing written on bad input"
    );

    let eval = |id: &str, ood: &str| {
        napctl(&[
            "eval",
            &bundle,
            "--id",
            id,
            "--ood",
            ood,
            "--cache-dir",
            &cache,
        ])
    };
    assert_fails_with(&eval(&id, &dir.path("missing")), FAILED, "missing");
    let empty = dir.path("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_fails_with(&eval(&empty, &ood), FAILED, "no .jpg, .jpeg or .png");
    let junk = dir.path("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(Path::new(&junk).join("a.png"), b"not a png").unwrap();
    std::fs::write(Path::new(&junk).join("b.jpg"), b"").unwrap();
    assert_fails_with(
        &eval(&id, &junk),
        FAILED,
        "none of its 2 image(s) could be read",
    );
    assert_fails_with(
        &napctl(&[
            "eval",
            &bundle,
            "--id",
            &id,
            "--ood",
            &ood,
            "--channel",
            "999999",
            "--plots",
            &dir.path("p"),
            "--cache-dir",
            &cache,
        ]),
        FAILED,
        "--channel 999999 is out of range",
    );

    let mut other_version = std::fs::read(&bundle).unwrap();
    other_version[8] = other_version[8].wrapping_add(1);
    let other = dir.path("version.nap");
    std::fs::write(&other, other_version).unwrap();
    assert_fails_with(
        &napctl(&["eval", &other, "--id", &id, "--ood", &ood]),
        FAILED,
        "format version",
    );
    assert_fails_with(
        &napctl(&["calibrate", &other, "--id", &id, "-o", &out_nap]),
        FAILED,
        "format version",
    );

    // Comparing thresholds needs bundles that have one.
    let mut compare = vec!["eval", &bundle, "--id", &id, "--ood", &ood, "--compare"];
    compare.extend([bundle.as_str(), "--cache-dir", &cache]);
    assert_fails_with(&napctl(&compare), FAILED, "the bundle has no threshold");
    dir.write("capture/1-0.png", &png(16, 16, |x, y| id_pixel(0, x, y)));
    dir.write(
        "capture/1-0.json",
        br#"{"seq": 0, "frame": "a.png", "time": "2026-12-03T10:00:00Z", "score": 1.5,
            "threshold": 2.0, "top1": 1, "bundle_sha256": "00", "image": "1-0.png"}"#,
    );
    let review = |extra: &[&str]| {
        let capture = dir.path("capture");
        let page = dir.path("page.html");
        let mut args = vec!["review", &capture, "-o", &page];
        args.extend_from_slice(extra);
        napctl(&args)
    };
    assert_fails_with(
        &review(&["--bundle", &bundle]),
        FAILED,
        "the bundle has no threshold",
    );
    assert_fails_with(
        &review(&["--bundle", &bundle, "--threshold", "1"]),
        USAGE,
        "cannot be used with",
    );
    assert_ok(&review(&["--threshold", "1"]));
}
