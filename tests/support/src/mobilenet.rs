//! The shared MobileNetV2, as the end-to-end tests start from it.

use crate::data::shared_data_file;
use nap_runtime::bundle::{Bundle, InputSpec};
use napctl::bundle::{BuildOptions, build_bundle};

/// The model's path below the shared data folder.
pub const MODEL: &str = "mobilenetv2/mobilenet_v2_1.0_224.onnx";

/// The shared MobileNetV2 split as `napctl split MODEL` does (TF-slim preprocessing): a float
/// bundle without a threshold. `None` without the shared data (and a line saying so).
pub fn float_bundle() -> Option<Bundle> {
    let model = shared_data_file(MODEL)?;
    let proto = napctl::onnx::read_model(&model).expect("the shared model reads");
    let options = BuildOptions {
        layer: None,
        input: InputSpec::TF.into(),
    };
    Some(
        build_bundle(&proto, "mobilenet_v2_1.0_224.onnx", options)
            .expect("the shared model splits on its own")
            .bundle,
    )
}

/// The float bundle with its threshold at the median score of the images in `frames`, so about
/// half of them are OOD. `None` without the shared data.
pub fn float_bundle_at_median(frames: &std::path::Path) -> Option<Bundle> {
    let mut bundle = float_bundle()?;
    let detector = nap_runtime::detector::Detector::new(&bundle).expect("the bundle loads");
    let pre = nap_runtime::preprocess::Preprocessor::new(bundle.manifest.input).unwrap();
    let files = napctl::images::collect(&[frames.to_path_buf()]).expect("the frames list");
    let scored = napctl::score::score_images(&detector, &pre, &files, || {}).unwrap();
    let mut scores: Vec<f32> = scored.iter().map(|r| r.as_ref().unwrap().score).collect();
    scores.sort_by(f32::total_cmp);
    bundle.manifest.scorer.threshold = Some(scores[scores.len() / 2]);
    Some(bundle)
}

/// Links images `range` (in name order) of the shared image set `set` into `dir` as
/// `<set>-<name>`: a replay folder of real photos. `None` without the shared data.
pub fn link_shared_images(
    dir: &std::path::Path,
    set: &str,
    range: std::ops::Range<usize>,
) -> Option<()> {
    let folder = shared_data_file(std::path::Path::new("images").join(set))?;
    for f in &napctl::images::collect(&[folder]).expect("the shared set lists")[range] {
        std::os::unix::fs::symlink(&f.path, dir.join(format!("{set}-{}", f.name))).unwrap();
    }
    Some(())
}
