//! `napctl` as a user runs it: every kind of bad input gives its own clear message on stderr and
//! a non-zero exit, never a panic; good input succeeds. Uses a tiny model the project builds
//! itself, so it needs no shared data.

mod common;

use common::{fixture_bundle, napctl};
use nap_test_support::cli::{Scratch, stderr};
use nap_test_support::onnx::{self as fixture, TinyCnn};
use std::path::Path;
use std::process::Output;

/// Fails with exit code 1 and a message naming the problem, not a panic.
fn assert_fails_with(out: &Output, needle: &str) {
    nap_test_support::cli::assert_fails_with(out, 1, needle);
}

fn scratch(name: &str) -> Scratch {
    Scratch::new(&format!("napctl-cli-{name}"))
}

/// A gradient frame.
fn png(width: u32, height: u32) -> Vec<u8> {
    common::png(width, height, |x, y| [(x * 20) as u8, (y * 20) as u8, 90])
}

#[test]
fn split_score_and_inspect_a_good_model() {
    let dir = scratch("good");
    let bundle = fixture_bundle(&dir);
    let images = dir.dir().join("frames");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join("a.png"), png(12, 10)).unwrap();
    let out = napctl(&["score", &bundle, &images.to_string_lossy()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let table = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<_> = table.lines().collect();
    assert_eq!(lines[0], "set\tfile\ttop1\tlse\tnap\tmsp\tscore\tood");
    assert!(lines[1].starts_with("frames\ta.png\t"), "{table}");
    assert_eq!(lines.len(), 2);

    let out = napctl(&["inspect", &bundle, "--json"]);
    assert!(out.status.success());
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["head"]["form"], "Gemm");
    assert_eq!(manifest["scorer"]["method"], "NAP-E");
}

#[test]
fn bad_models_are_named() {
    let dir = scratch("models");
    let not_onnx = dir.write("notes.onnx", b"these are not protobuf bytes \xff\xff\xff");
    assert_fails_with(
        &napctl(&["split", &not_onnx, "-o", &dir.path("x.nap")]),
        "not an ONNX model",
    );
    assert_fails_with(&napctl(&["inspect", &not_onnx]), "not an ONNX model");

    let no_pool = prost::Message::encode_to_vec(&fixture::no_pooling(&TinyCnn::default()));
    let no_pool = dir.write("no_pool.onnx", &no_pool);
    assert_fails_with(
        &napctl(&["split", &no_pool, "-o", &dir.path("x.nap")]),
        "no global pooling layer",
    );

    assert_fails_with(
        &napctl(&["split", &dir.path("missing.onnx"), "-o", &dir.path("x.nap")]),
        "missing.onnx",
    );
}

#[test]
fn damaged_bundles_are_named() {
    let dir = scratch("bundles");
    let bundle = fixture_bundle(&dir);
    let bytes = std::fs::read(&bundle).unwrap();
    let frames = dir.dir().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::write(frames.join("a.png"), png(8, 8)).unwrap();
    let frames = frames.to_string_lossy().into_owned();

    let truncated = dir.write("truncated.nap", &bytes[..bytes.len() / 2]);
    assert_fails_with(&napctl(&["score", &truncated, &frames]), "truncated");

    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    let flipped = dir.write("flipped.nap", &flipped);
    assert_fails_with(&napctl(&["score", &flipped, &frames]), "checksum mismatch");

    let mut other_version = bytes.clone();
    other_version[8] = other_version[8].wrapping_add(1);
    let other_version = dir.write("version.nap", &other_version);
    assert_fails_with(
        &napctl(&["bench", &other_version, "--frames", "1"]),
        "format version",
    );
}

#[test]
fn bad_images_are_named_and_the_rest_still_scored() {
    let dir = scratch("images");
    let bundle = fixture_bundle(&dir);
    let frames = dir.dir().join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    std::fs::write(frames.join("good.png"), png(9, 9)).unwrap();
    std::fs::write(frames.join("garbage.jpg"), b"not an image at all").unwrap();
    std::fs::write(frames.join("empty.png"), b"").unwrap();
    let out = napctl(&["score", &bundle, &frames.to_string_lossy()]);
    assert_fails_with(&out, "2 image(s) could not be scored");
    let err = stderr(&out);
    assert!(
        err.contains("garbage.jpg") && err.contains("empty.png"),
        "{err}"
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        table.lines().count(),
        2,
        "header and the good image: {table}"
    );
    assert!(table.contains("good.png"));

    let empty = dir.dir().join("none");
    std::fs::create_dir_all(&empty).unwrap();
    assert_fails_with(
        &napctl(&["score", &bundle, &empty.to_string_lossy()]),
        "no .jpg, .jpeg or .png",
    );
}

#[test]
fn quantize_makes_an_int8_bundle_and_names_bad_input() {
    let dir = scratch("quantize");
    let bundle = fixture_bundle(&dir);
    let frames = dir.dir().join("calib");
    std::fs::create_dir_all(&frames).unwrap();
    for i in 0..4u32 {
        std::fs::write(frames.join(format!("{i}.png")), png(9 + i, 10)).unwrap();
    }
    let calib = frames.to_string_lossy().into_owned();
    let int8 = dir.path("tiny-int8.nap");
    let args = |bundle: &str, calib: &str, out: &str| {
        vec![
            "quantize",
            bundle,
            "--calib",
            calib,
            "--calib-count",
            "3",
            "-o",
            out,
            "--precision",
            "int8",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let run = |a: Vec<String>| napctl(&a.iter().map(String::as_str).collect::<Vec<_>>());
    let out = run(args(&bundle, &calib, &int8));
    assert!(out.status.success(), "{}", stderr(&out));
    let report = String::from_utf8(out.stdout).unwrap();
    assert!(report.contains("top-1 agreement"), "{report}");
    // Three images calibrated, the fourth compared.
    assert!(report.contains("frames compared        1"), "{report}");
    let out = napctl(&["inspect", &int8, "--json"]);
    let manifest: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(manifest["backbone"]["precision"], "Int8");
    assert!(manifest["pre_pool"]["storage"]["U8"]["scale"].is_number());
    assert_eq!(manifest["head"]["storage"], "I8");
    // The int8 bundle scores frames.
    let out = napctl(&["score", &int8, &calib]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8(out.stdout).unwrap().lines().count(), 5);

    let again = dir.path("again.nap");
    assert_fails_with(&run(args(&int8, &calib, &again)), "already quantized");
    let empty = dir.dir().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    assert_fails_with(
        &run(args(&bundle, &empty.to_string_lossy(), &again)),
        "no .jpg, .jpeg or .png file",
    );
    let junk = dir.dir().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("a.png"), b"not a png").unwrap();
    assert_fails_with(
        &run(args(&bundle, &junk.to_string_lossy(), &again)),
        "could be decoded",
    );
    let mut zero = args(&bundle, &calib, &again);
    zero[5] = "0".into();
    assert_fails_with(&run(zero), "--calib-count must be at least 1");
    assert!(!Path::new(&again).exists());
}

#[test]
fn bench_times_encoded_or_raw_frames() {
    let dir = scratch("bench");
    let bundle = fixture_bundle(&dir);
    let image = dir.write("frame.png", &png(32, 24));
    let stages = |raw: bool| {
        let mut args = vec![
            "bench", &bundle, "--frames", "3", "--image", &image, "--json",
        ];
        if raw {
            args.push("--raw-frames");
        }
        let out = napctl(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["frames"], 3);
        assert_eq!(report["frames_from"], if raw { "raw" } else { "encoded" });
        assert!(report["frames_per_second"].as_f64().unwrap() > 0.0);
        report["stages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["stage"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let after_decode = ["preprocess", "backbone", "reduce", "head", "scores"];
    let mut encoded = vec!["decode"];
    encoded.extend(after_decode);
    assert_eq!(stages(false), encoded);
    // Raw frames start at preprocessing: no decode stage to report.
    assert_eq!(stages(true), after_decode);
}

#[test]
fn an_error_names_each_cause_once() {
    let dir = scratch("bench-not-an-image");
    let bundle = fixture_bundle(&dir);
    let text = dir.write("frame.png", b"not a picture");
    let out = napctl(&["bench", &bundle, "--image", &text]);
    assert_fails_with(&out, "benchmark frame: not an image");
    assert_eq!(
        stderr(&out).matches("not an image").count(),
        1,
        "{}",
        stderr(&out)
    );
}

#[test]
fn keygen_sign_verify_and_inspect_a_signed_bundle() {
    use std::os::unix::fs::PermissionsExt;
    let dir = scratch("signing");
    let bundle = fixture_bundle(&dir);
    let key = dir.path("dev.key");
    let out = napctl(&["keygen", "-o", &key]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the private key is its owner's only");
    assert!(Path::new(&format!("{key}.pub")).is_file());
    // An existing key is never replaced by accident.
    assert_fails_with(&napctl(&["keygen", "-o", &key]), "--force");

    let public = format!("{key}.pub");
    assert_fails_with(
        &napctl(&["verify", &bundle, "--trusted", &public]),
        "not signed",
    );
    let signed = dir.path("signed.nap");
    let out = napctl(&["sign", &bundle, "--key", &key, "-o", &signed]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = napctl(&["verify", &signed, "--trusted", &public]);
    assert!(out.status.success(), "{}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    let fingerprint = said
        .split_whitespace()
        .find(|w| w.starts_with("ed25519:"))
        .unwrap_or_else(|| panic!("no fingerprint in {said}"))
        .to_string();
    let out = napctl(&["inspect", &signed]);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("signed by {fingerprint}")));
    let out = napctl(&["inspect", &signed, "--json"]);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["signer"], fingerprint.as_str());
    assert_eq!(
        info["head"]["form"], "Gemm",
        "the manifest's fields stay where they were"
    );

    // Changed after signing, or signed by another key: refused by name.
    let mut bytes = std::fs::read(&signed).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 1;
    let tampered = dir.write("tampered.nap", &bytes);
    assert_fails_with(
        &napctl(&["verify", &tampered, "--trusted", &public]),
        "changed after signing",
    );
    let other = dir.path("other.key");
    assert!(napctl(&["keygen", "-o", &other]).status.success());
    assert_fails_with(
        &napctl(&["verify", &signed, "--trusted", &format!("{other}.pub")]),
        "not trusted",
    );
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_fails_with(
        &napctl(&["sign", &bundle, "--key", &key]),
        "permissions 644",
    );
    let not_a_key = dir.write("not.key", b"-----BEGIN PRIVATE KEY-----\nAAAA\n");
    std::fs::set_permissions(&not_a_key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_fails_with(
        &napctl(&["sign", &bundle, "--key", &not_a_key]),
        "not an ed25519 private key",
    );
}

#[test]
fn keys_made_by_openssl_sign_and_verify() {
    use std::os::unix::fs::PermissionsExt;
    let Some(openssl) = nap_test_support::tools::require("openssl") else {
        return;
    };
    let dir = scratch("openssl");
    let bundle = fixture_bundle(&dir);
    let (key, public) = (dir.path("ossl.key"), dir.path("ossl.pub"));
    let run = |args: &[&str]| {
        nap_test_support::cli::assert_ok(&nap_test_support::cli::run(&openssl, args))
    };
    run(&["genpkey", "-algorithm", "ed25519", "-out", &key]);
    run(&["pkey", "-in", &key, "-pubout", "-out", &public]);
    // openssl leaves the modes to the umask; napctl signs only with a key its owner alone
    // reads, and trusts only keys others cannot write.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(&public, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = napctl(&["sign", &bundle, "--key", &key]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = napctl(&["verify", &bundle, "--trusted", &public]);
    assert!(out.status.success(), "{}", stderr(&out));
}
