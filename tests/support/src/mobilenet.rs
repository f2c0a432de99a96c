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
        input: InputSpec::TF,
    };
    Some(
        build_bundle(&proto, "mobilenet_v2_1.0_224.onnx", options)
            .expect("the shared model splits on its own"),
    )
}
