//! The short soak: napd on a paced raw camera stream for 90 s with every fault of the long run
//! (malformed frames, camera stalls, a controller link dropped every 10 s, garbage replies from
//! the controller), compressed. Every frame offered must be accounted for, and the controller
//! must never be armed while napd says it is not healthy. The 30-minute run is
//! `cargo run --release -p nap-tests --example soak`.

use nap_test_support::mobilenet::{float_bundle_at_median, link_shared_images};
use nap_test_support::soak::{self, SoakPlan};
use std::path::PathBuf;
use std::time::Duration;

#[test]
fn napd_accounts_for_every_frame_and_keeps_the_controller_safe_under_faults() {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("napd-soak");
    let photos = dir.join("photos");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&photos).unwrap();
    // Familiar photos and textures: the threshold at their median flags about half.
    if link_shared_images(&photos, "id-imagenet", 0..8).is_none() {
        return;
    }
    link_shared_images(&photos, "ood-dtd", 0..4).unwrap();
    let bundle = float_bundle_at_median(&photos).expect("shared data");
    let bundle_path = dir.join("f32.nap");
    bundle.write(&bundle_path).unwrap();
    let frames = soak::photos(&photos, 12);
    let napd = nap_test_support::cli::workspace_binary("napd", "napd");
    let plan = SoakPlan::short(Duration::from_secs(90));
    let report = soak::run(&napd, &bundle_path, &frames, &plan, &dir.join("napd.jsonl"));
    eprintln!("{}", report.table());

    assert!(
        report.exit_ok,
        "napd did not end cleanly at the end of its stream"
    );
    assert!(report.offered > 1000, "{report:?}");
    assert_eq!(
        report.accounted(),
        report.offered,
        "frames unaccounted: {report:?}"
    );
    assert_eq!(report.rejected, report.malformed, "{report:?}");
    assert!(
        report.malformed > 0 && report.garbage_sent > 0,
        "{report:?}"
    );
    assert!(
        report.connections >= 8,
        "the link was not dropped and re-made: {report:?}"
    );
    assert!(
        report.armings >= 1,
        "the controller never armed: {report:?}"
    );
    assert_eq!(report.armed_while_unhealthy, 0, "{report:?}");
    assert!(report.rss_kib.len() >= 30, "{report:?}");
}
