//! What napctl's command-line tests share: running napctl, a bundle of the tiny fixture model
//! (split by napctl itself), and PNG frames drawn in code.

use nap_test_support::cli::{self, Scratch};
use nap_test_support::onnx::{self as fixture, TinyCnn};
use std::process::Output;

/// Runs the napctl binary under test.
pub fn napctl(args: &[&str]) -> Output {
    cli::run(env!("CARGO_BIN_EXE_napctl"), args)
}

/// A bundle of the torchvision-style fixture (Conv -> Relu -> GAP -> Flatten -> Gemm), made by
/// `napctl split` in `dir`.
pub fn fixture_bundle(dir: &Scratch) -> String {
    let model = prost::Message::encode_to_vec(&fixture::torchvision(&TinyCnn::default()));
    let onnx = dir.write("tiny.onnx", &model);
    let bundle = dir.path("tiny.nap");
    let size = fixture::SIZE.to_string();
    let out = napctl(&[
        "split",
        &onnx,
        "-o",
        &bundle,
        "--input-size",
        &size,
        "--crop",
        "1",
    ]);
    cli::assert_ok(&out);
    bundle
}

/// A PNG of `width` x `height` pixels, each `pixel(x, y)`.
pub fn png(width: u32, height: u32, pixel: impl Fn(u32, u32) -> [u8; 3]) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| image::Rgb(pixel(x, y)));
    let mut bytes = Vec::new();
    image
        .write_to(
            &mut std::io::Cursor::new(&mut bytes),
            image::ImageFormat::Png,
        )
        .expect("encoding an in-memory image cannot fail");
    bytes
}
