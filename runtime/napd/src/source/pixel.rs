//! Raw pixel formats and their conversion to packed RGB8, the preprocessor's input.
//!
//! YUV formats use the BT.601 matrix with limited ("studio") range, Y in 16..=235 and Cb, Cr in
//! 16..=240: the V4L2 default for standard-definition YUYV and NV12 cameras. Chroma is shared by
//! 2 pixels (YUYV) or 2x2 pixels (NV12), so a conversion from RGB and back is close, not exact.

use std::fmt;
use std::str::FromStr;

/// The memory layout of a raw frame. Rows run top to bottom with no padding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PixelFormat {
    /// `R G B` per pixel (3 bytes).
    Rgb8,
    /// `B G R` per pixel (3 bytes).
    Bgr8,
    /// One luma byte per pixel.
    Gray8,
    /// Packed 4:2:2, `Y0 Cb Y1 Cr` per pair of pixels; width must be even.
    Yuyv,
    /// Planar 4:2:0: a Y plane, then interleaved `Cb Cr` for each 2x2 block; width and height
    /// must be even.
    Nv12,
}

impl PixelFormat {
    /// Every format, in wire-code order.
    pub const ALL: [PixelFormat; 5] = [
        PixelFormat::Rgb8,
        PixelFormat::Bgr8,
        PixelFormat::Gray8,
        PixelFormat::Yuyv,
        PixelFormat::Nv12,
    ];

    /// The code of this format in the raw stream header.
    pub const fn code(self) -> u8 {
        match self {
            PixelFormat::Rgb8 => 0,
            PixelFormat::Bgr8 => 1,
            PixelFormat::Gray8 => 2,
            PixelFormat::Yuyv => 3,
            PixelFormat::Nv12 => 4,
        }
    }

    /// The format with this header code.
    pub fn from_code(code: u8) -> Option<PixelFormat> {
        PixelFormat::ALL.get(usize::from(code)).copied()
    }

    /// Bytes of a `width x height` frame; an error for sizes the format cannot hold (odd
    /// widths for YUYV, odd sides for NV12, zero sides) or that overflow.
    pub fn frame_len(self, width: u32, height: u32) -> Result<usize, PixelError> {
        if width == 0 || height == 0 {
            return Err(PixelError::Empty { width, height });
        }
        let odd = match self {
            PixelFormat::Yuyv => !width.is_multiple_of(2),
            PixelFormat::Nv12 => !width.is_multiple_of(2) || !height.is_multiple_of(2),
            _ => false,
        };
        if odd {
            return Err(PixelError::OddSize {
                format: self,
                width,
                height,
            });
        }
        let pixels = (width as usize).checked_mul(height as usize);
        let len = match self {
            PixelFormat::Rgb8 | PixelFormat::Bgr8 => pixels.and_then(|p| p.checked_mul(3)),
            PixelFormat::Gray8 => pixels,
            PixelFormat::Yuyv => pixels.and_then(|p| p.checked_mul(2)),
            PixelFormat::Nv12 => pixels.and_then(|p| p.checked_add(p / 2)),
        };
        len.ok_or(PixelError::Overflow { width, height })
    }
}

impl fmt::Display for PixelFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PixelFormat::Rgb8 => "RGB8",
            PixelFormat::Bgr8 => "BGR8",
            PixelFormat::Gray8 => "GRAY8",
            PixelFormat::Yuyv => "YUYV",
            PixelFormat::Nv12 => "NV12",
        })
    }
}

impl FromStr for PixelFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PixelFormat::ALL
            .into_iter()
            .find(|f| f.to_string().eq_ignore_ascii_case(s))
            .ok_or_else(|| format!("unknown pixel format {s:?} (RGB8, BGR8, GRAY8, YUYV or NV12)"))
    }
}

/// Why raw pixels could not be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PixelError {
    /// A side is zero.
    #[error("empty frame: {width}x{height}")]
    Empty {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The format needs even sides.
    #[error("{format} needs even sides, got {width}x{height}")]
    OddSize {
        /// The format.
        format: PixelFormat,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The frame's byte count does not fit in memory.
    #[error("frame {width}x{height} is too large to address")]
    Overflow {
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
    },
    /// The buffer does not hold exactly one frame.
    #[error("{format} {width}x{height} needs {expected} bytes, got {actual}")]
    Length {
        /// The format.
        format: PixelFormat,
        /// Width in pixels.
        width: u32,
        /// Height in pixels.
        height: u32,
        /// Bytes the format needs.
        expected: usize,
        /// Bytes given.
        actual: usize,
    },
}

fn check_len(
    format: PixelFormat,
    width: u32,
    height: u32,
    data: &[u8],
) -> Result<usize, PixelError> {
    let expected = format.frame_len(width, height)?;
    if data.len() != expected {
        return Err(PixelError::Length {
            format,
            width,
            height,
            expected,
            actual: data.len(),
        });
    }
    Ok(expected)
}

fn clamp_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}

/// BT.601 limited range to RGB.
fn yuv_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let y = 1.164_383_6 * (f32::from(y) - 16.0);
    let cb = f32::from(cb) - 128.0;
    let cr = f32::from(cr) - 128.0;
    [
        clamp_u8(y + 1.596_026_8 * cr),
        clamp_u8(y - 0.391_762_3 * cb - 0.812_967_6 * cr),
        clamp_u8(y + 2.017_232_2 * cb),
    ]
}

/// RGB to BT.601 limited range (Y, Cb, Cr) as floats, before rounding.
fn rgb_to_yuv(p: &[u8]) -> [f32; 3] {
    let (r, g, b) = (f32::from(p[0]), f32::from(p[1]), f32::from(p[2]));
    [
        16.0 + 0.256_788_24 * r + 0.504_129_3 * g + 0.097_905_88 * b,
        128.0 - 0.148_222_9 * r - 0.290_992_9 * g + 0.439_215_7 * b,
        128.0 + 0.439_215_7 * r - 0.367_788_3 * g - 0.071_427_45 * b,
    ]
}

/// Converts one raw frame to packed RGB8 (`width * height * 3` bytes).
pub fn to_rgb8(
    format: PixelFormat,
    width: u32,
    height: u32,
    data: &[u8],
) -> Result<Vec<u8>, PixelError> {
    check_len(format, width, height, data)?;
    let (w, h) = (width as usize, height as usize);
    let mut out = vec![0u8; w * h * 3];
    match format {
        PixelFormat::Rgb8 => out.copy_from_slice(data),
        PixelFormat::Bgr8 => {
            for (o, i) in out.chunks_exact_mut(3).zip(data.chunks_exact(3)) {
                o.copy_from_slice(&[i[2], i[1], i[0]]);
            }
        }
        PixelFormat::Gray8 => {
            for (o, &g) in out.chunks_exact_mut(3).zip(data) {
                o.fill(g);
            }
        }
        PixelFormat::Yuyv => {
            for (o, i) in out.chunks_exact_mut(6).zip(data.chunks_exact(4)) {
                o[..3].copy_from_slice(&yuv_to_rgb(i[0], i[1], i[3]));
                o[3..].copy_from_slice(&yuv_to_rgb(i[2], i[1], i[3]));
            }
        }
        PixelFormat::Nv12 => {
            let (luma, chroma) = data.split_at(w * h);
            for row in 0..h {
                let crow = &chroma[(row / 2) * w..(row / 2 + 1) * w];
                for col in 0..w {
                    let c = (col / 2) * 2;
                    let rgb = yuv_to_rgb(luma[row * w + col], crow[c], crow[c + 1]);
                    out[(row * w + col) * 3..][..3].copy_from_slice(&rgb);
                }
            }
        }
    }
    Ok(out)
}

/// Converts packed RGB8 to a raw format: how test streams and frame generators produce YUYV or
/// NV12 from images. Chroma is averaged over the pixels that share it; gray is BT.601 luma.
pub fn from_rgb8(
    format: PixelFormat,
    width: u32,
    height: u32,
    rgb: &[u8],
) -> Result<Vec<u8>, PixelError> {
    check_len(PixelFormat::Rgb8, width, height, rgb)?;
    let len = format.frame_len(width, height)?;
    let (w, h) = (width as usize, height as usize);
    let mut out = vec![0u8; len];
    match format {
        PixelFormat::Rgb8 => out.copy_from_slice(rgb),
        PixelFormat::Bgr8 => {
            for (o, i) in out.chunks_exact_mut(3).zip(rgb.chunks_exact(3)) {
                o.copy_from_slice(&[i[2], i[1], i[0]]);
            }
        }
        PixelFormat::Gray8 => {
            for (o, i) in out.iter_mut().zip(rgb.chunks_exact(3)) {
                let (r, g, b) = (f32::from(i[0]), f32::from(i[1]), f32::from(i[2]));
                *o = clamp_u8(0.299 * r + 0.587 * g + 0.114 * b);
            }
        }
        PixelFormat::Yuyv => {
            for (o, i) in out.chunks_exact_mut(4).zip(rgb.chunks_exact(6)) {
                let (a, b) = (rgb_to_yuv(&i[..3]), rgb_to_yuv(&i[3..]));
                o.copy_from_slice(&[
                    clamp_u8(a[0]),
                    clamp_u8((a[1] + b[1]) / 2.0),
                    clamp_u8(b[0]),
                    clamp_u8((a[2] + b[2]) / 2.0),
                ]);
            }
        }
        PixelFormat::Nv12 => {
            let (luma, chroma) = out.split_at_mut(w * h);
            for (y, p) in luma.iter_mut().zip(rgb.chunks_exact(3)) {
                *y = clamp_u8(rgb_to_yuv(p)[0]);
            }
            for by in 0..h / 2 {
                for bx in 0..w / 2 {
                    let mut acc = [0.0f32; 2];
                    for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                        let i = ((2 * by + dy) * w + 2 * bx + dx) * 3;
                        let yuv = rgb_to_yuv(&rgb[i..i + 3]);
                        acc[0] += yuv[1];
                        acc[1] += yuv[2];
                    }
                    chroma[by * w + 2 * bx] = clamp_u8(acc[0] / 4.0);
                    chroma[by * w + 2 * bx + 1] = clamp_u8(acc[1] / 4.0);
                }
            }
        }
    }
    Ok(out)
}
