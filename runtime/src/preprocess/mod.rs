//! Frame preprocessing: a camera frame (JPEG, PNG or raw RGB8) to the backbone's input tensor.
//!
//! The pipeline is fixed by the bundle's [`InputSpec`] and reproduces the reference
//! implementation (PIL + numpy) that produced `reference/dev_scores.tsv`:
//!
//! 1. decode to 8-bit RGB (any JPEG/PNG colour type, like PIL's `.convert("RGB")`; JPEG with
//!    libjpeg-turbo, PIL's own decoder, see [`decode`]);
//! 2. central square crop, see [`CropBox`]: side `round_half_even(crop_fraction * min(w, h))`,
//!    offsets `floor((w - side) / 2)`, `floor((h - side) / 2)`; pixels outside the crop never
//!    enter the resize (PIL `img.crop(box).resize(...)`, not `resize(..., box=box)`);
//! 3. antialiased bilinear resize to `size x size` on u8 pixels (PIL `Image.BILINEAR`), done by
//!    `fast_image_resize`'s convolution, horizontal pass first like PIL;
//! 4. `(pixel - mean[c]) / std[c]` in f32, planes in the spec's channel order, NCHW (batch 1).
//!
//! Untrusted bytes get a [`PreprocessError`], never a panic: every decode runs under
//! [`image::Limits`] so an absurd declared size is refused before any allocation.

mod decode;

use fast_image_resize::images::{CroppedImage, Image, ImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::RgbImage;
use thiserror::Error;

pub use decode::{decode, decode_with_limits, default_limits};

use crate::bundle::manifest::{ChannelOrder, InputSpec};

/// Largest input side [`Preprocessor::new`] accepts: far above any classifier input, small
/// enough that the tensor (3 * 4096^2 floats) stays allocatable.
pub const MAX_INPUT_SIZE: u32 = 4096;

/// Default limit on a decoded frame's width and height, in pixels.
pub const DEFAULT_MAX_SIDE: u32 = 16_384;

/// Default limit on the memory one decode may allocate, in bytes (256 MiB: a 9000 x 9000 RGB
/// frame). A header declaring more is refused before decoding.
pub const DEFAULT_MAX_ALLOC: u64 = 256 * 1024 * 1024;

/// Why a spec, a frame or an output buffer was refused.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PreprocessError {
    /// The [`InputSpec`] cannot describe a usable pipeline.
    #[error("invalid input spec: {0}")]
    InvalidSpec(String),
    /// The bytes carry no signature of a known image format.
    #[error(
        "not an image: the bytes start with no known image signature (JPEG and PNG are decoded)"
    )]
    NotAnImage,
    /// The bytes are an image, in a format or variant this build does not decode.
    #[error("unsupported image format: {0} (JPEG and PNG are decoded)")]
    UnsupportedFormat(String),
    /// The data claims to be JPEG or PNG but does not decode: corrupt or truncated.
    #[error("corrupt or truncated {format} data: {reason}")]
    Corrupt {
        /// Format named by the signature.
        format: &'static str,
        /// The decoder's message.
        reason: String,
    },
    /// The frame has no pixels.
    #[error("empty frame: {width}x{height}")]
    EmptyImage {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The frame's declared size exceeds the decode limits.
    #[error("frame too large: {0}")]
    TooLarge(String),
    /// A raw RGB8 buffer's length does not match its stated dimensions.
    #[error("raw RGB8 frame {width}x{height} needs {} bytes, the buffer holds {actual}", expected.map_or_else(|| "more than usize::MAX".to_string(), |e| e.to_string()))]
    BufferLength {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// `width * height * 3`, `None` when that overflows.
        expected: Option<usize>,
        /// Length of the buffer given.
        actual: usize,
    },
    /// The output slice does not hold exactly one tensor.
    #[error("output buffer holds {actual} floats, the tensor has {expected}")]
    OutputLength {
        /// `3 * size * size`.
        expected: usize,
        /// Length of the slice given.
        actual: usize,
    },
}

/// The central square crop taken from a `width x height` frame, in pixels.
///
/// `side = round_half_even(crop_fraction * min(width, height))` (at least 1), `left =
/// (width - side) / 2` and `top = (height - side) / 2` rounded down. This is the reference's
/// convention, found by reproducing its scores: other roundings (truncated side, rounded offsets)
/// shift or rescale the crop by a pixel on many frames and change the scores by up to 5%.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CropBox {
    /// First column.
    pub left: u32,
    /// First row.
    pub top: u32,
    /// Width and height.
    pub side: u32,
}

/// Turns frames into backbone input tensors as a bundle's [`InputSpec`] says.
///
/// Holds only the validated spec and a per-channel lookup table, so it is cheap to share
/// between worker threads (`Send + Sync`); every call allocates its own small scratch.
#[derive(Clone, Debug)]
pub struct Preprocessor {
    spec: InputSpec,
    /// `crop_fraction` as the f64 a reader of the spec means: 0.9 stays 0.9, not 0.899999976.
    crop_fraction: f64,
    /// `lut[plane][v] = (v - mean[plane]) / std[plane]`, computed in f32 exactly as numpy does.
    lut: Box<[[f32; 256]; 3]>,
}

impl Preprocessor {
    /// Checks the spec (size in `1..=MAX_INPUT_SIZE`, crop fraction in `(0, 1]`, mean finite, std
    /// finite and non-zero, normalized values finite) and precomputes the normalization.
    pub fn new(spec: InputSpec) -> Result<Preprocessor, PreprocessError> {
        let invalid = |msg: String| Err(PreprocessError::InvalidSpec(msg));
        if spec.size == 0 || spec.size > MAX_INPUT_SIZE {
            return invalid(format!(
                "size {} is outside 1..={MAX_INPUT_SIZE}",
                spec.size
            ));
        }
        let frac = spec.crop_fraction;
        if !(frac.is_finite() && frac > 0.0 && frac <= 1.0) {
            return invalid(format!("crop_fraction {frac} is outside (0, 1]"));
        }
        for c in 0..3 {
            if !spec.mean[c].is_finite() {
                return invalid(format!("mean[{c}] = {} is not finite", spec.mean[c]));
            }
            if !spec.std[c].is_finite() || spec.std[c] == 0.0 {
                return invalid(format!(
                    "std[{c}] = {} is not finite and non-zero",
                    spec.std[c]
                ));
            }
        }
        let mut lut = Box::new([[0.0f32; 256]; 3]);
        for (c, table) in lut.iter_mut().enumerate() {
            for (v, out) in table.iter_mut().enumerate() {
                *out = (v as f32 - spec.mean[c]) / spec.std[c];
                if !out.is_finite() {
                    return invalid(format!(
                        "mean[{c}] = {}, std[{c}] = {} map pixel {v} to {out}",
                        spec.mean[c], spec.std[c]
                    ));
                }
            }
        }
        // The shortest decimal that round-trips the f32, read as f64: what a Python reference
        // computing `0.875 * min(w, h)` in double precision used.
        let crop_fraction = frac.to_string().parse::<f64>().unwrap_or(f64::from(frac));
        Ok(Preprocessor {
            spec,
            crop_fraction,
            lut,
        })
    }

    /// The spec this preprocessor follows.
    pub fn spec(&self) -> &InputSpec {
        &self.spec
    }

    /// Number of floats in one tensor: `3 * size * size` (NCHW, batch 1).
    pub fn tensor_len(&self) -> usize {
        3 * self.spec.size as usize * self.spec.size as usize
    }

    /// The central crop taken from a `width x height` frame. At least one pixel wide for any
    /// non-empty frame; empty (side 0) for an empty one.
    pub fn crop_box(&self, width: u32, height: u32) -> CropBox {
        let short = width.min(height);
        let side = (self.crop_fraction * f64::from(short)).round_ties_even();
        // 0 < crop_fraction <= 1, so side <= short; a tiny fraction still keeps one pixel.
        let side = (side as u32).clamp(short.min(1), short);
        CropBox {
            left: (width - side) / 2,
            top: (height - side) / 2,
            side,
        }
    }

    /// Crops and resizes a raw RGB8 frame (rows top to bottom, `R G B` per pixel, no padding)
    /// to `size x size` RGB8, the image the normalization reads. Public so that the
    /// resampling can be checked on its own against PIL.
    pub fn crop_resize_rgb8(
        &self,
        width: u32,
        height: u32,
        pixels: &[u8],
    ) -> Result<Vec<u8>, PreprocessError> {
        check_rgb8(width, height, pixels)?;
        let size = self.spec.size;
        let CropBox { left, top, side } = self.crop_box(width, height);
        let src = ImageRef::new(width, height, pixels, PixelType::U8x3)
            .expect("buffer length and alignment checked");
        let cropped =
            CroppedImage::new(&src, left, top, side, side).expect("crop box lies inside the frame");
        let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
        let mut resizer = Resizer::new();
        // Two one-axis passes, horizontal first, each rounding to u8 as PIL does (the library
        // would run the vertical pass first for u8, which rounds differently on some pixels).
        let mut tmp = Image::new(size, side, PixelType::U8x3);
        resizer
            .resize(&cropped, &mut tmp, &options)
            .expect("pixel types match");
        let mut dst = Image::new(size, size, PixelType::U8x3);
        resizer
            .resize(&tmp, &mut dst, &options)
            .expect("pixel types match");
        Ok(dst.into_vec())
    }

    /// `out` must hold exactly one tensor; checked before any decoding or resizing work.
    fn check_output_len(&self, out: &[f32]) -> Result<(), PreprocessError> {
        let expected = self.tensor_len();
        if out.len() == expected {
            Ok(())
        } else {
            Err(PreprocessError::OutputLength {
                expected,
                actual: out.len(),
            })
        }
    }

    /// Fills `out` (`tensor_len()` floats, NCHW) with the tensor of a raw RGB8 frame
    /// (rows top to bottom, `R G B` per pixel, no padding), as delivered by cameras.
    pub fn tensor_from_rgb8(
        &self,
        width: u32,
        height: u32,
        pixels: &[u8],
        out: &mut [f32],
    ) -> Result<(), PreprocessError> {
        self.check_output_len(out)?;
        let resized = self.crop_resize_rgb8(width, height, pixels)?;
        self.normalize(&resized, out);
        Ok(())
    }

    /// Like [`Preprocessor::tensor_from_rgb8`], returning a new vector.
    pub fn tensor_vec_from_rgb8(
        &self,
        width: u32,
        height: u32,
        pixels: &[u8],
    ) -> Result<Vec<f32>, PreprocessError> {
        let mut out = vec![0.0; self.tensor_len()];
        self.tensor_from_rgb8(width, height, pixels, &mut out)?;
        Ok(out)
    }

    /// Fills `out` with the tensor of a decoded RGB image.
    pub fn tensor_from_image(
        &self,
        image: &RgbImage,
        out: &mut [f32],
    ) -> Result<(), PreprocessError> {
        self.tensor_from_rgb8(image.width(), image.height(), image.as_raw(), out)
    }

    /// Decodes a JPEG or PNG frame (under the default limits, see [`decode`]) and fills `out`
    /// with its tensor.
    pub fn tensor_from_encoded(
        &self,
        bytes: &[u8],
        out: &mut [f32],
    ) -> Result<(), PreprocessError> {
        self.check_output_len(out)?;
        let image = decode(bytes)?;
        self.tensor_from_image(&image, out)
    }

    /// Like [`Preprocessor::tensor_from_encoded`], returning a new vector.
    pub fn tensor_vec_from_encoded(&self, bytes: &[u8]) -> Result<Vec<f32>, PreprocessError> {
        let mut out = vec![0.0; self.tensor_len()];
        self.tensor_from_encoded(bytes, &mut out)?;
        Ok(out)
    }

    /// `size x size` RGB8 pixels to normalized planes in the spec's channel order.
    fn normalize(&self, rgb: &[u8], out: &mut [f32]) {
        let plane = self.spec.size as usize * self.spec.size as usize;
        let source: [usize; 3] = match self.spec.channel_order {
            ChannelOrder::Rgb => [0, 1, 2],
            ChannelOrder::Bgr => [2, 1, 0],
        };
        for (c, dst) in out.chunks_exact_mut(plane).enumerate() {
            let lut = &self.lut[c];
            let src = source[c];
            for (d, px) in dst.iter_mut().zip(rgb.chunks_exact(3)) {
                *d = lut[usize::from(px[src])];
            }
        }
    }
}

/// Checks that a raw RGB8 frame is non-empty and its buffer holds exactly `width * height * 3`
/// bytes.
fn check_rgb8(width: u32, height: u32, pixels: &[u8]) -> Result<(), PreprocessError> {
    if width == 0 || height == 0 {
        return Err(PreprocessError::EmptyImage { width, height });
    }
    let expected = (width as usize)
        .checked_mul(height as usize)
        .and_then(|n| n.checked_mul(3));
    if expected != Some(pixels.len()) {
        return Err(PreprocessError::BufferLength {
            width,
            height,
            expected,
            actual: pixels.len(),
        });
    }
    Ok(())
}
