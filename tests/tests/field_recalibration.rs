//! Re-calibration from the field, as a user does it, on the shared MobileNetV2 and real photos:
//!
//! 1. a bundle calibrated on 40 ImageNet photos to accept 80% of them (a strict one, so the
//!    field has familiar frames to give back) runs in napd over 160 other ImageNet photos and 20
//!    DTD textures, capturing what it flags;
//! 2. the user moves the captured ImageNet frames (sidecars and all) into a field ID folder and
//!    calibrates the same bundle again, at the same 80%, with the original ID folder plus that
//!    one;
//! 3. `napctl eval --compare` puts old and new thresholds side by side on the same frames: the
//!    old one flags every captured frame, exactly as napd did, and the new one lets some field
//!    frames pass while the textures stay flagged; `napctl review --bundle` scores the captures
//!    again and agrees with eval.

use nap_test_support::cli::{assert_ok, run, stdout, workspace_binary};
use nap_test_support::data::shared_data_file;
use nap_test_support::mobilenet::link_shared_images;
use napd::Options;
use serde_json::Value;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

/// A fresh, empty folder.
fn fresh(name: &str) -> PathBuf {
    let dir = tmp(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn napctl<I: IntoIterator<Item = S>, S: AsRef<OsStr>>(args: I) -> String {
    let out = run(workspace_binary("napctl", "napctl"), args);
    assert_ok(&out);
    stdout(&out)
}

fn threshold(bundle: &Path) -> f32 {
    nap_runtime::bundle::Bundle::read(bundle)
        .unwrap()
        .manifest
        .scorer
        .threshold
        .unwrap()
}

/// `at_threshold` of an eval report: per bundle, per set, the frames flagged.
fn flagged(report: &Value, bundle: usize, set: usize) -> (u64, u64) {
    let set = &report["at_threshold"][bundle]["sets"][set];
    (set["flagged"].as_u64().unwrap(), set["n"].as_u64().unwrap())
}

#[test]
fn field_frames_recalibrate_a_bundle_and_eval_and_review_compare_thresholds() {
    if shared_data_file("images").is_none() {
        return;
    }
    let Some(bundle) = nap_test_support::mobilenet::float_bundle() else {
        return;
    };
    let cache = tmp("field_cache");
    let cache_args = ["--cache-dir".as_ref(), cache.as_os_str()];

    // The bundle as first shipped: calibrated on 40 ImageNet photos.
    let tpr = ["--tpr", "0.8"];
    let original_id = fresh("field_original_id");
    link_shared_images(&original_id, "id-imagenet", 0..40).unwrap();
    let uncalibrated = tmp("field_uncalibrated.nap");
    bundle.write(&uncalibrated).unwrap();
    let old = tmp("field_old.nap");
    napctl(
        [
            "calibrate".as_ref(),
            uncalibrated.as_os_str(),
            "--id".as_ref(),
            original_id.as_os_str(),
            "--keep-w".as_ref(),
            "-o".as_ref(),
            old.as_os_str(),
        ]
        .into_iter()
        .chain(tpr.map(OsStr::new))
        .chain(cache_args),
    );

    // In the field: other ImageNet photos and DTD textures, every flagged frame captured.
    let seen = fresh("field_seen");
    link_shared_images(&seen, "id-imagenet", 40..200).unwrap();
    link_shared_images(&seen, "ood-dtd", 0..20).unwrap();
    let capture = tmp("field_capture");
    let _ = std::fs::remove_dir_all(&capture);
    let settings = Options {
        bundle: Some(old.clone()),
        source: Some(format!("dir:{}", seen.display())),
        capture: Some(capture.clone()),
        capture_max_per_min: Some(0),
        workers: Some(2),
        ..Options::default()
    }
    .resolve()
    .unwrap();
    let served = napd::serve(&settings, Arc::new(AtomicBool::new(false)));
    assert_eq!(served.exit_code, 0, "{served:?}");

    // Review: the ImageNet frames napd flagged are familiar after all; move them, sidecars too.
    let field_id = fresh("field_id");
    let mut moved = 0;
    let mut kept = 0;
    for entry in std::fs::read_dir(&capture).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let sidecar: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        if !sidecar["frame"]
            .as_str()
            .unwrap()
            .starts_with("id-imagenet-")
        {
            kept += 1;
            continue;
        }
        let image = capture.join(sidecar["image"].as_str().unwrap());
        for file in [&path, &image] {
            std::fs::rename(file, field_id.join(file.file_name().unwrap())).unwrap();
        }
        moved += 1;
    }
    eprintln!("captured {moved} ImageNet frames (moved to the field ID folder) and {kept} DTD");
    assert!(
        moved >= 10,
        "only {moved} ImageNet frames flagged: nothing to learn from"
    );
    assert!(kept >= 15, "only {kept} of 20 DTD frames flagged");

    // Re-calibrate the bundle that flagged them, with the original ID photos and the field ones.
    let new = tmp("field_new.nap");
    let said = napctl(
        [
            "calibrate".as_ref(),
            old.as_os_str(),
            "--id".as_ref(),
            original_id.as_os_str(),
            "--id".as_ref(),
            field_id.as_os_str(),
            "--keep-w".as_ref(),
            "-o".as_ref(),
            new.as_os_str(),
        ]
        .into_iter()
        .chain(tpr.map(OsStr::new))
        .chain(cache_args),
    );
    let total = 40 + moved;
    assert!(
        said.contains(&format!(
            "{moved} of the {total} ID images are frames napd captured in the field ({moved} \
             flagged by this bundle, 0 by other bundles)"
        )),
        "{said}"
    );
    let (t_old, t_new) = (threshold(&old), threshold(&new));
    assert!(t_new < t_old, "new threshold {t_new} not below {t_old}");

    // Old and new thresholds on the same frames.
    let report_path = tmp("field_eval.json");
    let table = napctl(
        [
            "eval".as_ref(),
            new.as_os_str(),
            "--id".as_ref(),
            field_id.as_os_str(),
            "--ood".as_ref(),
            capture.as_os_str(),
            "--compare".as_ref(),
            old.as_os_str(),
            "--json".as_ref(),
            report_path.as_os_str(),
        ]
        .into_iter()
        .chain(cache_args),
    );
    assert!(
        table.contains("Frames flagged OOD at each bundle's own threshold"),
        "{table}"
    );
    let report: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let rows = report["at_threshold"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0]["bundle"]
            .as_str()
            .unwrap()
            .ends_with("field_new.nap")
    );
    assert!(
        rows[1]["bundle"]
            .as_str()
            .unwrap()
            .ends_with("field_old.nap")
    );
    assert_eq!(rows[1]["threshold"].as_f64().unwrap() as f32, t_old);
    // The old bundle flags every frame napd captured with it: host and device agree.
    assert_eq!(flagged(&report, 1, 0), (moved, moved));
    assert_eq!(flagged(&report, 1, 1), (kept, kept));
    // The new one lets field frames pass.
    let (new_field, _) = flagged(&report, 0, 0);
    let (new_dtd, _) = flagged(&report, 0, 1);
    assert!(
        new_field < moved,
        "new bundle still flags all {moved} field frames"
    );
    assert!(
        new_dtd * 10 >= kept * 9,
        "new bundle flags only {new_dtd} of {kept} DTD"
    );
    eprintln!(
        "field ID frames flagged: old {moved}/{moved}, new {new_field}/{moved}; captured DTD \
         flagged: old {kept}/{kept}, new {new_dtd}/{kept}; thresholds {t_old} -> {t_new}"
    );

    // The review page, scoring the captures again with the new bundle, agrees with eval.
    for (dir, expected) in [(&field_id, new_field), (&capture, new_dtd)] {
        let page = tmp("field_review.html");
        let said = napctl([
            "review".as_ref(),
            dir.as_os_str(),
            "-o".as_ref(),
            page.as_os_str(),
            "--bundle".as_ref(),
            new.as_os_str(),
        ]);
        let n = if dir == &field_id { moved } else { kept };
        assert!(
            said.contains(&format!(
                "under field_new.nap (threshold {t_new}): {expected} of {n} would still be flagged"
            )),
            "{said}"
        );
        let html = std::fs::read_to_string(&page).unwrap();
        assert_eq!(
            html.matches("class=\"card passes\"").count() as u64,
            n - expected
        );
    }
}
