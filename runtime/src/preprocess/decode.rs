//! Frame decoding: JPEG and PNG bytes to 8-bit RGB, like PIL's `Image.open(f).convert("RGB")`.
//!
//! JPEG goes through libjpeg-turbo's decoder (as built by the `mozjpeg` crate: integer IDCT,
//! "fancy" triangle chroma upsampling), the decoder PIL itself uses, so a decoded photo equals
//! the reference's pixel for pixel. A pure-Rust decoder rounds the IDCT and the chroma
//! upsampling differently (by up to 4 levels) and moved NAP by more than 1% on a few percent
//! of real photos. PNG is lossless, so the `image` crate's decoder agrees with any other.
//!
//! Untrusted bytes get a [`PreprocessError`], never a panic: the declared size is checked
//! against the [`Limits`] before any pixel is decoded.

use std::io::Cursor;
use std::panic::{self, AssertUnwindSafe};

use image::error::{ImageError, LimitErrorKind};
use image::{DynamicImage, ImageFormat, ImageReader, Limits, RgbImage};
use mozjpeg::{ColorSpace, Decompress};

use super::{DEFAULT_MAX_ALLOC, DEFAULT_MAX_SIDE, PreprocessError};
use crate::panic_message;

/// The default decode limits: [`DEFAULT_MAX_SIDE`] per side, [`DEFAULT_MAX_ALLOC`] bytes.
pub fn default_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(DEFAULT_MAX_SIDE);
    limits.max_image_height = Some(DEFAULT_MAX_SIDE);
    limits.max_alloc = Some(DEFAULT_MAX_ALLOC);
    limits
}

/// Decodes a JPEG or PNG frame to 8-bit RGB under [`default_limits`].
///
/// Every colour type is converted like PIL's `.convert("RGB")`: grey is replicated, alpha is
/// dropped (not composited), palettes are expanded, CMYK JPEGs are read with Adobe's inverted
/// polarity and converted as PIL does, 16-bit samples keep their high byte. EXIF orientation is
/// not applied (PIL's `Image.open` does not either).
pub fn decode(bytes: &[u8]) -> Result<RgbImage, PreprocessError> {
    decode_with_limits(bytes, default_limits())
}

/// [`decode`] under the caller's limits.
pub fn decode_with_limits(bytes: &[u8], limits: Limits) -> Result<RgbImage, PreprocessError> {
    let format = match image::guess_format(bytes) {
        Ok(ImageFormat::Jpeg) => ImageFormat::Jpeg,
        Ok(ImageFormat::Png) => ImageFormat::Png,
        Ok(other) => return Err(PreprocessError::UnsupportedFormat(format!("{other:?}"))),
        Err(_) => return Err(PreprocessError::NotAnImage),
    };
    let peek = peek(format, bytes);
    // The decoders reject a zero dimension as a generic format error; name it.
    if let Some((width, height)) = peek.size
        && (width == 0 || height == 0)
    {
        return Err(PreprocessError::EmptyImage { width, height });
    }
    let image = if format == ImageFormat::Jpeg {
        // libjpeg fills a truncated scan with grey and only warns (PIL refuses the file): a
        // frame cut in transit must not be scored as a grey one.
        if peek.jpeg_complete == Some(false) {
            return Err(PreprocessError::Corrupt {
                format: JPEG,
                reason: "truncated: no end-of-image marker after the scan data".into(),
            });
        }
        decode_jpeg(bytes, &limits)?
    } else {
        decode_png(bytes, limits)?
    };
    let (width, height) = image.dimensions();
    if width == 0 || height == 0 {
        return Err(PreprocessError::EmptyImage { width, height });
    }
    Ok(image)
}

const JPEG: &str = "JPEG";
const PNG: &str = "PNG";

/// Refuses a declared size beyond the limits, before the decoder allocates for it.
fn check_limits(
    format: &'static str,
    (width, height): (u32, u32),
    bytes_per_pixel: u64,
    limits: &Limits,
) -> Result<(), PreprocessError> {
    let too_large = |what: String| Err(PreprocessError::TooLarge(format!("{format} frame {what}")));
    if let Some(max) = limits.max_image_width
        && width > max
    {
        return too_large(format!("is {width} pixels wide, the limit is {max}"));
    }
    if let Some(max) = limits.max_image_height
        && height > max
    {
        return too_large(format!("is {height} pixels high, the limit is {max}"));
    }
    let bytes = u64::from(width) * u64::from(height) * bytes_per_pixel;
    if let Some(max) = limits.max_alloc
        && bytes > max
    {
        return too_large(format!(
            "{width}x{height} needs {bytes} bytes to decode, the limit is {max}"
        ));
    }
    Ok(())
}

/// Decodes a JPEG with libjpeg-turbo's default settings, as PIL does.
fn decode_jpeg(bytes: &[u8], limits: &Limits) -> Result<RgbImage, PreprocessError> {
    // libjpeg reports a fatal error by unwinding out of its C code: catch it here and name it.
    let decoded = panic::catch_unwind(AssertUnwindSafe(|| decode_jpeg_unguarded(bytes, limits)));
    match decoded {
        Ok(result) => result,
        Err(payload) => Err(corrupt_jpeg(panic_message(payload.as_ref()))),
    }
}

fn corrupt_jpeg(reason: impl ToString) -> PreprocessError {
    PreprocessError::Corrupt {
        format: JPEG,
        reason: reason.to_string(),
    }
}

fn decode_jpeg_unguarded(bytes: &[u8], limits: &Limits) -> Result<RgbImage, PreprocessError> {
    let header = Decompress::new_mem(bytes).map_err(corrupt_jpeg)?;
    let (width, height) = header.size();
    let (Ok(width), Ok(height)) = (u32::try_from(width), u32::try_from(height)) else {
        return Err(corrupt_jpeg("declared size does not fit in 32 bits"));
    };
    if width == 0 || height == 0 {
        return Err(PreprocessError::EmptyImage { width, height });
    }
    let cmyk = matches!(
        header.color_space(),
        ColorSpace::JCS_CMYK | ColorSpace::JCS_YCCK
    );
    check_limits(JPEG, (width, height), if cmyk { 4 } else { 3 }, limits)?;
    // Grey, YCbCr and RGB convert to RGB inside libjpeg (grey is replicated); CMYK and YCCK
    // come out as CMYK and are converted as PIL converts them.
    let space = if cmyk {
        ColorSpace::JCS_CMYK
    } else {
        ColorSpace::JCS_RGB
    };
    let mut started = header.to_colorspace(space).map_err(corrupt_jpeg)?;
    let samples = started.read_scanlines::<u8>().map_err(corrupt_jpeg)?;
    started.finish().map_err(corrupt_jpeg)?;
    let pixels = if cmyk { cmyk_to_rgb(&samples) } else { samples };
    RgbImage::from_raw(width, height, pixels)
        .ok_or_else(|| corrupt_jpeg("the decoder returned fewer rows than the header declares"))
}

/// PIL's reading of a CMYK JPEG: samples inverted (Adobe's polarity, which PIL always
/// assumes), then `x' = 255 - k - x * (255 - k) / 255` per channel, with PIL's rounding.
fn cmyk_to_rgb(inverted_cmyk: &[u8]) -> Vec<u8> {
    let muldiv255 = |a: u32, b: u32| {
        let t = a * b + 128;
        ((t >> 8) + t) >> 8
    };
    inverted_cmyk
        .chunks_exact(4)
        .flat_map(|px| {
            let [c, m, y, k] = [px[0], px[1], px[2], px[3]].map(|v| u32::from(255 - v));
            let nk = 255 - k;
            // muldiv255(x, nk) <= nk, so no channel goes below zero.
            [c, m, y].map(|x| (nk - muldiv255(x, nk)) as u8)
        })
        .collect()
}

fn decode_png(bytes: &[u8], limits: Limits) -> Result<RgbImage, PreprocessError> {
    let mut reader = ImageReader::with_format(Cursor::new(bytes), ImageFormat::Png);
    reader.limits(limits);
    let image = reader.decode().map_err(map_png_error)?;
    Ok(into_rgb8(image))
}

/// Any decoded colour type to 8-bit RGB as PIL's `.convert("RGB")` does for 8-bit and 16-bit RGB
/// (16-bit samples keep their high byte). 16-bit grey also keeps its high byte, where PIL would
/// clip the 16-bit value at 255.
fn into_rgb8(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        DynamicImage::ImageLuma16(_)
        | DynamicImage::ImageLumaA16(_)
        | DynamicImage::ImageRgb16(_)
        | DynamicImage::ImageRgba16(_) => {
            // Same-depth conversion: grey replicated, alpha dropped, samples unchanged.
            let rgb16 = image.into_rgb16();
            let (width, height) = rgb16.dimensions();
            let high: Vec<u8> = rgb16
                .into_raw()
                .into_iter()
                .map(|v| (v >> 8) as u8)
                .collect();
            RgbImage::from_raw(width, height, high).expect("same dimensions")
        }
        other => other.into_rgb8(),
    }
}

/// What the headers of a JPEG or PNG say before decoding: the declared size, and for JPEG
/// whether an end-of-image marker follows the first scan. `None` fields: not found.
#[derive(Default)]
struct Peek {
    size: Option<(u32, u32)>,
    jpeg_complete: Option<bool>,
}

/// Reads the PNG IHDR, or walks the JPEG marker segments to the first start-of-scan.
fn peek(format: ImageFormat, bytes: &[u8]) -> Peek {
    let be16 = |i: usize| Some(u16::from_be_bytes([*bytes.get(i)?, *bytes.get(i + 1)?]));
    let be32 = |i: usize| Some(u32::from_be_bytes(bytes.get(i..i + 4)?.try_into().ok()?));
    let mut peek = Peek::default();
    if format == ImageFormat::Png {
        // Signature (8), chunk length (4), "IHDR" (4), width, height.
        if bytes.get(12..16) == Some(b"IHDR") {
            peek.size = be32(16).zip(be32(20));
        }
        return peek;
    }
    let mut i = 2;
    while let (Some(0xff), Some(&marker)) = (bytes.get(i), bytes.get(i + 1)) {
        match marker {
            0xff => i += 1, // fill byte
            0x01 | 0xd0..=0xd9 => i += 2,
            _ => {
                let Some(len) = be16(i + 2) else { break };
                if matches!(marker, 0xc0..=0xc3 | 0xc5..=0xc7 | 0xc9..=0xcb | 0xcd..=0xcf) {
                    // Length (2), precision (1), height (2), width (2).
                    let (h, w) = (be16(i + 5), be16(i + 7));
                    peek.size = w.zip(h).map(|(w, h)| (u32::from(w), u32::from(h)));
                }
                if marker == 0xda {
                    // Entropy-coded data escapes 0xff, so 0xff 0xd9 after here is a marker.
                    let scan = bytes.get(i + 2 + usize::from(len)..).unwrap_or(&[]);
                    peek.jpeg_complete = Some(scan.windows(2).any(|w| w == [0xff, 0xd9]));
                    break;
                }
                i += 2 + usize::from(len);
            }
        }
    }
    peek
}

/// Sorts the PNG decoder's errors into ours.
fn map_png_error(error: ImageError) -> PreprocessError {
    match error {
        ImageError::Limits(e) => match e.kind() {
            LimitErrorKind::DimensionError | LimitErrorKind::InsufficientMemory => {
                PreprocessError::TooLarge(format!("{PNG} frame: {e}"))
            }
            _ => PreprocessError::Corrupt {
                format: PNG,
                reason: e.to_string(),
            },
        },
        ImageError::Unsupported(e) => PreprocessError::UnsupportedFormat(format!("{PNG}: {e}")),
        other => PreprocessError::Corrupt {
            format: PNG,
            reason: other.to_string(),
        },
    }
}
