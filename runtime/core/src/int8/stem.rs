//! The stem: MobileNetV2's first convolution, 3x3 with stride 2 over the quantized RGB frame
//! (3 channels) to `M` output channels, in integers.
//!
//! The input is the frame as the camera path quantizes it, `[H][W][3]` u8 codes (3 bytes per
//! pixel, not padded to [`CHANNEL_ALIGN`](super::CHANNEL_ALIGN)) with the frame's zero point;
//! the output is NHWC with `stride(M)` bytes per pixel, `out_height() x out_width()` pixels.
//! Output channel `m` of pixel `(oy, ox)` is, exactly,
//!
//! ```text
//! acc = bias[m] + sum_{c,ky,kx} w[m][c][ky][kx] * x[2*oy + ky - top][2*ox + kx - left][c]
//! out = requantize(acc, requant[m], stage)
//! ```
//!
//! in wrapping i32 arithmetic, where a tap outside the frame (in the padding) reads the frame's
//! zero point code: with the zero point folded into the bias over all 27 taps
//! ([`fold_zero_point`](super::fold_zero_point)`(bias, weights, 27, zp)`), a padded tap adds
//! exactly nothing, as zero padding does in the float model. Weights are ONNX's order
//! `[M][3][3][3]` (`[m][c][ky][kx]`), each in `[-127, 127]`.
//!
//! # Paths
//!
//! [`Isa::Scalar`] is the reference, the sum above computed directly. The fast paths gather
//! each output pixel's 27 taps into a row of [`SCRATCH_ROW`] bytes of a caller-provided scratch
//! (im2col; tap `t = (ky * 3 + kx) * 3 + c`, so each kernel row's 9 taps are 9 adjacent bytes of
//! the frame; bytes 27..32 are left as they are and meet zero weights), as many rows at a time as
//! the scratch holds, and run the [pointwise](super::pointwise) kernel of the same path with
//! `K = 27` over them; [`Stem::pack`] packs the weights in tap order for it.

use super::pointwise::{Isa, Layer, PackedLen, Pointwise, PointwiseError, Shape, scalar};
use super::{Requant, requant::requantize, stride};

/// Taps of one output pixel: 3 rows x 3 columns x 3 channels.
pub const TAPS: usize = 27;

/// Bytes of one gathered row of taps, `stride(27)`.
pub const SCRATCH_ROW: usize = stride(TAPS);

/// A scratch length that holds a good block of rows: 256 of them (8 KiB).
pub const SCRATCH_LEN: usize = 256 * SCRATCH_ROW;

/// The stem's sizes: the frame, its padding, the output channels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StemShape {
    /// Frame rows H.
    pub height: usize,
    /// Frame columns W.
    pub width: usize,
    /// Padding (top, left, bottom, right), each at most 2 (ONNX `pads` `[t, l, b, r]`).
    pub pads: [usize; 4],
    /// Output channels M.
    pub out_channels: usize,
}

impl StemShape {
    /// Output rows, `(H + top + bottom - 3) / 2 + 1`; `None` when the padded frame is shorter
    /// than the kernel.
    pub fn out_height(&self) -> Option<usize> {
        out_size(self.height, self.pads[0], self.pads[2])
    }

    /// Output columns, `(W + left + right - 3) / 2 + 1`; `None` when the padded frame is
    /// narrower than the kernel.
    pub fn out_width(&self) -> Option<usize> {
        out_size(self.width, self.pads[1], self.pads[3])
    }

    /// Bytes of the frame, `H * W * 3`; `None` on overflow.
    pub fn input_len(&self) -> Option<usize> {
        self.height.checked_mul(self.width)?.checked_mul(3)
    }

    /// Bytes of the output, `out_height * out_width * stride(M)`; `None` on overflow.
    pub fn output_len(&self) -> Option<usize> {
        self.pixels()?.checked_mul(stride(self.out_channels))
    }

    /// Output pixels; `None` on overflow or an empty output.
    fn pixels(&self) -> Option<usize> {
        self.out_height()?.checked_mul(self.out_width()?)
    }

    /// The pointwise shape of `pixels` gathered rows.
    fn rows(&self, pixels: usize) -> Shape {
        Shape {
            pixels,
            in_channels: TAPS,
            out_channels: self.out_channels,
        }
    }

    /// Checks the sizes: pads at most 2, an output, lengths within `usize`.
    fn check(&self) -> Result<(), PointwiseError> {
        let ok = self.pads.iter().all(|&p| p <= 2)
            && self.input_len().is_some_and(|n| n > 0)
            && self.output_len().is_some();
        if ok {
            Ok(())
        } else {
            Err(PointwiseError::Shape)
        }
    }
}

/// Output size along one axis.
fn out_size(size: usize, before: usize, after: usize) -> Option<usize> {
    let padded = size.checked_add(before)?.checked_add(after)?;
    Some(padded.checked_sub(3)? / 2 + 1)
}

/// The frame the stem reads.
#[derive(Clone, Copy, Debug)]
pub struct Frame<'a> {
    /// `[H][W][3]` u8 codes.
    pub data: &'a [u8],
    /// The code of real zero, read for every padding tap.
    pub zero_point: u8,
}

/// One implementation of the stem.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Stem {
    pointwise: Pointwise,
}

impl Default for Stem {
    fn default() -> Self {
        Self::new()
    }
}

impl Stem {
    /// The fastest implementation this CPU supports (the pointwise kernel's).
    pub fn new() -> Self {
        Stem {
            pointwise: Pointwise::new(),
        }
    }

    /// A specific implementation, or `None` when the pointwise kernel has no such path or this
    /// CPU cannot run it.
    pub fn with_isa(isa: Isa) -> Option<Self> {
        Pointwise::with_isa(isa).map(|pointwise| Stem { pointwise })
    }

    /// The implementation this runs.
    pub fn isa(&self) -> Isa {
        self.pointwise.isa()
    }

    /// The lengths [`pack`](Self::pack) needs for `shape` on this path.
    pub fn packed_len(&self, shape: &StemShape) -> Result<PackedLen, PointwiseError> {
        shape.check()?;
        self.pointwise.packed_len(&shape.rows(1))
    }

    /// Lays out `layer` (weights `[M][3][3][3]`, ONNX order) in tap order for this path; as
    /// [`Pointwise::pack`] otherwise.
    pub fn pack(
        &self,
        shape: &StemShape,
        layer: &Layer<'_>,
        weights: &mut [i8],
        params: &mut [i32],
    ) -> Result<(), PointwiseError> {
        shape.check()?;
        // Tap t = (ky * 3 + kx) * 3 + c is ONNX's c * 9 + ky * 3 + kx.
        let weight = |m: usize, t: usize| {
            let (ky, kx, c) = (t / 9, t / 3 % 3, t % 3);
            layer.weights[m * TAPS + c * 9 + ky * 3 + kx]
        };
        self.pointwise
            .pack_by(&shape.rows(1), layer, weight, weights, params)
    }

    /// The stem over `frame` into `output` (`output_len()` bytes; its padding channels receive
    /// arbitrary bytes), with `weights` and `params` as [`pack`](Self::pack) made them on this
    /// path. The fast paths gather rows into `scratch`, which must hold at least one
    /// [`SCRATCH_ROW`] ([`SCRATCH_LEN`] is a good length); the reference does not touch it.
    pub fn run(
        &self,
        shape: &StemShape,
        weights: &[i8],
        params: &[i32],
        frame: Frame<'_>,
        scratch: &mut [u8],
        output: &mut [u8],
    ) -> Result<(), PointwiseError> {
        shape.check()?;
        if Some(frame.data.len()) != shape.input_len()
            || Some(output.len()) != shape.output_len()
            || scratch.len() < SCRATCH_ROW
        {
            return Err(PointwiseError::BufferLength);
        }
        self.pointwise.header(&shape.rows(1), weights, params)?;
        if self.isa() == Isa::Scalar {
            return direct(shape, weights, params, frame, output);
        }
        let mm = stride(shape.out_channels);
        let rows = scratch.len() / SCRATCH_ROW;
        let pixels = output.len() / mm;
        let mut first = 0;
        while first < pixels {
            let n = rows.min(pixels - first);
            let block = &mut scratch[..n * SCRATCH_ROW];
            gather_block(shape, frame, first, block);
            let out = &mut output[first * mm..(first + n) * mm];
            self.pointwise
                .run(&shape.rows(n), weights, params, block, out)?;
            first += n;
        }
        Ok(())
    }
}

/// The taps of output pixels `first..` into the rows of `block`: runs of pixels whose taps all
/// lie inside the frame as three 9-byte copies each (the next pixel's start 6 bytes on), the
/// others by [`gather`].
fn gather_block(shape: &StemShape, frame: Frame<'_>, first: usize, block: &mut [u8]) {
    let ow = shape.out_width().unwrap_or(1);
    let (w, h, top, left) = (shape.width, shape.height, shape.pads[0], shape.pads[1]);
    let line = 3 * w;
    // Columns with all taps inside a row: 2 * ox >= left and 2 * ox - left + 3 <= w.
    let inner = left.div_ceil(2)..((w + left).saturating_sub(1) / 2).min(ow);
    let mut rows = block.chunks_exact_mut(SCRATCH_ROW);
    let mut todo = rows.len();
    let (mut oy, mut ox) = (first / ow, first % ow);
    while todo > 0 {
        let y0 = (2 * oy).wrapping_sub(top);
        let n = if y0 < h && y0 + 3 <= h && inner.contains(&ox) {
            let n = (inner.end - ox).min(todo);
            let start = y0 * line + 3 * (2 * ox - left);
            let taps = |ky: usize| frame.data[start + ky * line..].windows(9).step_by(6);
            let run = rows.by_ref().take(n).zip(taps(0)).zip(taps(1)).zip(taps(2));
            for (((row, a), b), c) in run {
                row[..9].copy_from_slice(a);
                row[9..18].copy_from_slice(b);
                row[18..27].copy_from_slice(c);
            }
            n
        } else {
            if let Some(row) = rows.next() {
                gather(shape, frame, oy, ox, row);
            }
            1
        };
        todo -= n;
        ox += n;
        if ox == ow {
            (oy, ox) = (oy + 1, 0);
        }
    }
}

/// Output pixel `(oy, ox)`'s taps into `row`, in tap order; padding taps read `zero_point`.
fn gather(shape: &StemShape, frame: Frame<'_>, oy: usize, ox: usize, row: &mut [u8]) {
    let (h, w) = (shape.height, shape.width);
    let (top, left) = (shape.pads[0], shape.pads[1]);
    let zp = frame.zero_point;
    let x0 = (2 * ox).wrapping_sub(left);
    let y0 = (2 * oy).wrapping_sub(top);
    if x0 < w && x0 + 3 <= w && y0 < h && y0 + 3 <= h {
        // Inside the frame (nearly every pixel): three runs of 9 bytes.
        let line = 3 * w;
        let at = y0 * line + 3 * x0;
        for (ky, taps) in row[..27].chunks_exact_mut(9).enumerate() {
            let from = &frame.data[at + ky * line..][..9];
            taps.copy_from_slice(from);
        }
        return;
    }
    for ky in 0..3 {
        let taps = &mut row[9 * ky..9 * ky + 9];
        let y = (2 * oy + ky).wrapping_sub(top);
        if y >= h {
            taps.fill(zp);
            continue;
        }
        let line = &frame.data[y * w * 3..(y + 1) * w * 3];
        if x0 < w && x0 + 3 <= w {
            taps.copy_from_slice(&line[3 * x0..3 * x0 + 9]);
            continue;
        }
        for (kx, tap) in taps.chunks_exact_mut(3).enumerate() {
            let x = x0.wrapping_add(kx);
            if x < w {
                tap.copy_from_slice(&line[3 * x..3 * x + 3]);
            } else {
                tap.fill(zp);
            }
        }
    }
}

/// The reference: every output channel of every pixel summed over its 27 taps directly.
fn direct(
    shape: &StemShape,
    weights: &[i8],
    params: &[i32],
    frame: Frame<'_>,
    output: &mut [u8],
) -> Result<(), PointwiseError> {
    let (h, w, m) = (shape.height, shape.width, shape.out_channels);
    let (top, left) = (shape.pads[0] as isize, shape.pads[1] as isize);
    let stage = Pointwise::with_isa(Isa::Scalar)
        .unwrap_or_default()
        .header(&shape.rows(1), weights, params)?
        .stage;
    let p = scalar::Params::new(&params[super::pointwise::HEADER..], m)?;
    let ow = shape.out_width().unwrap_or(1);
    let tap = |iy: isize, ix: isize, c: usize| {
        if (0..h as isize).contains(&iy) && (0..w as isize).contains(&ix) {
            frame.data[(iy as usize * w + ix as usize) * 3 + c]
        } else {
            frame.zero_point
        }
    };
    for (pixel, out) in output.chunks_exact_mut(stride(m)).enumerate() {
        let (oy, ox) = ((pixel / ow) as isize, (pixel % ow) as isize);
        for (o, y) in out[..m].iter_mut().enumerate() {
            let mut acc = p.bias(o);
            for ky in 0..3 {
                for kx in 0..3 {
                    for c in 0..3 {
                        let x = tap(2 * oy + ky as isize - top, 2 * ox + kx as isize - left, c);
                        let wt = weights[o * TAPS + (ky * 3 + kx) * 3 + c];
                        acc = acc.wrapping_add(i32::from(wt) * i32::from(x));
                    }
                }
            }
            *y = requantize(acc, p.requant(o).unwrap_or(Requant::ZERO), stage);
        }
    }
    Ok(())
}
