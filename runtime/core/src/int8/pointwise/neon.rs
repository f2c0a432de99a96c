//! NEON without the dot product (Cortex-A72 class): 16 output channels x 4 pixels per tile, in
//! 16 accumulators whose lanes are output channels; and what both NEON paths share.
//!
//! Per group of four input channels `k0..k3` and four output channels `m0..m3`, a weight vector
//! holds `[m0k0 m0k1 m1k0 m1k1 m2k0 m2k1 m3k0 m3k1 | m0k2 m0k3 m1k2 m1k3 ... m3k3]`, and one
//! `TBL` turns a pixel's flipped activations (`x ^ 0x80`, i8) into
//! `[x0 x1 x0 x1 x0 x1 x0 x1 | x2 x3 x2 x3 ...]`. Then `SMULL` multiplies the low halves into
//! eight i16 lanes, `SMLAL2` adds the high halves' products (two products of magnitude at most
//! 127 * 128 fit an i16: why weights of -128 are refused), and `SADALP` adds adjacent lanes into
//! the four channels' i32 accumulators: 16 multiply-adds in 3 instructions, with no reduction
//! across lanes at the end. A block of 16 input channels costs, for 16 channels x 4 pixels,
//! 4 weight loads, 4 activation loads and flips, 16 `TBL`s, 4 `EXT`s and 192 multiply-add steps.
//!
//! The tiles of four pixels run as one `asm!` loop over a panel's pixels (compiled from
//! intrinsics, the 16 accumulators, weights and products spill); a panel of 8 channels (the
//! last, when `stride(M)` is 8 more than a multiple of 16) runs an 8-channel form of it; the
//! last 1 to 3 pixels of a block run the same arithmetic from intrinsics.

use core::arch::aarch64::*;

use super::{ARRAYS, BIAS_AT, Header, LEFT_AT, MULTIPLIER_AT, RIGHT_AT, Shape, pixel_block};
use crate::int8::requant::neon::apply;
use crate::int8::stride;

/// Pixels per tile.
const PIXELS: usize = 4;

/// `TBL` indices of the first two groups of four input channels in a 16-byte vector; `EXT` by
/// 8 bytes brings the other two groups under them.
pub(super) const PAIRS: [[u8; 16]; 2] = [
    [0, 1, 0, 1, 0, 1, 0, 1, 2, 3, 2, 3, 2, 3, 2, 3],
    [4, 5, 4, 5, 4, 5, 4, 5, 6, 7, 6, 7, 6, 7, 6, 7],
];

/// Runs the whole layer: the NEON path, or the dot-product one when `DOT` (the two differ only
/// in their tiles, see [`super::neon_dot`]).
///
/// # Safety
/// The buffers must match `shape` and the layout of [`super::Pointwise::pack`] for the path:
/// `weights` `stride(M) * stride(K)` bytes, `body` the params after the header. With `DOT`, the
/// CPU must have the dot-product extension.
#[target_feature(enable = "neon")]
pub(super) unsafe fn run<const DOT: bool>(
    shape: &Shape,
    weights: &[i8],
    body: &[i32],
    header: Header,
    input: &[u8],
    output: &mut [u8],
) {
    let (kk, mm) = (stride(shape.in_channels), stride(shape.out_channels));
    let stage = Stage::new(header);
    let block = pixel_block(kk, PIXELS);
    let out = output.as_mut_ptr();
    let mut start = 0;
    while start < shape.pixels {
        let end = (start + block).min(shape.pixels);
        let tiles = (end - start) / PIXELS;
        let mut first = 0;
        while first < mm {
            let rows = 16.min(mm - first);
            let w = weights[first * kk..][..rows * kk].as_ptr();
            let p = body[first * ARRAYS..][..rows * ARRAYS].as_ptr();
            let x = input[start * kk..end * kk].as_ptr();
            // Wrapping: written through only within the output (pixels start..end).
            let o = out.wrapping_add(start * mm + first);
            // SAFETY: `w` and `p` are this panel's packed weights and params; pixels
            // start..end lie within the frame, each with kk input bytes and, from `first`,
            // `rows <= mm - first` output bytes; the dot-product tiles run only with `DOT`,
            // when the caller vouched for the extension.
            unsafe {
                let panel = Panel {
                    w,
                    p,
                    kk,
                    mm,
                    stage: &stage,
                };
                match (DOT, rows, header.left) {
                    (false, 16, false) => panel.tiles16::<false>(x, o, tiles),
                    (false, 16, true) => panel.tiles16::<true>(x, o, tiles),
                    (false, _, false) => panel.tiles8::<false>(x, o, tiles),
                    (false, _, true) => panel.tiles8::<true>(x, o, tiles),
                    (true, 16, false) => panel.dot_tiles16::<false>(x, o, tiles),
                    (true, 16, true) => panel.dot_tiles16::<true>(x, o, tiles),
                    (true, _, false) => panel.dot_tiles8::<false>(x, o, tiles),
                    (true, _, true) => panel.dot_tiles8::<true>(x, o, tiles),
                }
                let q = start + PIXELS * tiles;
                let (x, o) = (input[q * kk..].as_ptr(), out.wrapping_add(q * mm + first));
                match (DOT, rows, end - q) {
                    (_, _, 0) => {}
                    (false, 16, c) => panel.tail::<4>(c, x, o, header.left),
                    (false, _, c) => panel.tail::<2>(c, x, o, header.left),
                    (true, 16, c) => panel.dot_tail::<4>(c, x, o, header.left),
                    (true, _, c) => panel.dot_tail::<2>(c, x, o, header.left),
                }
            }
            first += rows;
        }
        start = end;
    }
}

/// One panel's packed layer and the output's layout.
pub(super) struct Panel<'a> {
    /// The panel's packed weights.
    pub(super) w: *const i8,
    /// The panel's params: `ARRAYS` arrays of its rows.
    pub(super) p: *const i32,
    /// Bytes per input pixel.
    pub(super) kk: usize,
    /// Bytes per output pixel.
    pub(super) mm: usize,
    /// The output stage.
    pub(super) stage: &'a Stage,
}

// The assembly's text, built by the macros below (formatted by hand: one instruction a line).
// Registers of a tile: v0-v15 accumulators (pixel c's channels 4j..4j+4 in v(4c+j); v(2c+j)
// for an 8-channel panel), v16-v19 weights, v20-v23 the four pixels' activations, v24 paired
// activations, v25-v26 products, v27 the flip (0x80), v28-v29 the `TBL` indices ([`PAIRS`]).

/// One multiply-add step: weight vector `$w` times the paired activations `$t`, into i16
/// pairs in `$p`, added into the accumulator `$a`.
#[rustfmt::skip]
macro_rules! mla {
    ($w:literal, $t:literal, $p:literal, $a:literal) => { concat!(
        "smull ", $p, ".8h, ", $w, ".8b, ", $t, ".8b\n",
        "smlal2 ", $p, ".8h, ", $w, ".16b, ", $t, ".16b\n",
        "sadalp ", $a, ".4s, ", $p, ".8h\n",
    ) };
}

/// One pixel (activations `$x`) of one group of four input channels (`TBL` indices `$idx`)
/// against 16 channels (v16-v19), into its accumulators `$a0..$a3`.
#[rustfmt::skip]
macro_rules! pixel16 {
    ($x:literal, $idx:literal, $a0:literal, $a1:literal, $a2:literal, $a3:literal) => { concat!(
        "tbl v24.16b, {{", $x, ".16b}}, ", $idx, ".16b\n",
        mla!("v16", "v24", "v25", $a0),
        mla!("v17", "v24", "v26", $a1),
        mla!("v18", "v24", "v25", $a2),
        mla!("v19", "v24", "v26", $a3),
    ) };
}

/// One group of four input channels for 16 channels x 4 pixels: its weights, then each pixel.
#[rustfmt::skip]
macro_rules! group16 {
    ($idx:literal) => { concat!(
        "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{w}], #64\n",
        pixel16!("v20", $idx, "v0", "v1", "v2", "v3"),
        pixel16!("v21", $idx, "v4", "v5", "v6", "v7"),
        pixel16!("v22", $idx, "v8", "v9", "v10", "v11"),
        pixel16!("v23", $idx, "v12", "v13", "v14", "v15"),
    ) };
}

/// As [`pixel16`] against 8 channels (v16, v17).
#[rustfmt::skip]
macro_rules! pixel8 {
    ($x:literal, $idx:literal, $a0:literal, $a1:literal) => { concat!(
        "tbl v24.16b, {{", $x, ".16b}}, ", $idx, ".16b\n",
        mla!("v16", "v24", "v25", $a0),
        mla!("v17", "v24", "v26", $a1),
    ) };
}

/// As [`group16`] for 8 channels.
#[rustfmt::skip]
macro_rules! group8 {
    ($idx:literal) => { concat!(
        "ld1 {{v16.16b, v17.16b}}, [{w}], #32\n",
        pixel8!("v20", $idx, "v0", "v1"),
        pixel8!("v21", $idx, "v2", "v3"),
        pixel8!("v22", $idx, "v4", "v5"),
        pixel8!("v23", $idx, "v6", "v7"),
    ) };
}

/// The k loop of a tile: `$group` for each group of four input channels; blocks of 16 (the
/// four pixels' activations loaded at `x0..x3` and flipped; groups 0 and 1 from indices v28
/// and v29, then `EXT` by 8 and the same for groups 2 and 3), then a half block of 8 when bit 3
/// of `kk` is set; each pixel pointer ends at the next tile's.
#[rustfmt::skip]
macro_rules! k_loop {
    ($group:ident) => { concat!(
        "mov {w}, {w0}\n",
        "lsr {cnt}, {kk}, #4\n",
        "cbz {cnt}, 3f\n",
        "2:\n",
        "ldr q20, [{x0}], #16\n",
        "ldr q21, [{x1}], #16\n",
        "ldr q22, [{x2}], #16\n",
        "ldr q23, [{x3}], #16\n",
        "eor v20.16b, v20.16b, v27.16b\n",
        "eor v21.16b, v21.16b, v27.16b\n",
        "eor v22.16b, v22.16b, v27.16b\n",
        "eor v23.16b, v23.16b, v27.16b\n",
        $group!("v28"),
        $group!("v29"),
        "ext v20.16b, v20.16b, v20.16b, #8\n",
        "ext v21.16b, v21.16b, v21.16b, #8\n",
        "ext v22.16b, v22.16b, v22.16b, #8\n",
        "ext v23.16b, v23.16b, v23.16b, #8\n",
        $group!("v28"),
        $group!("v29"),
        "subs {cnt}, {cnt}, #1\n",
        "b.ne 2b\n",
        "3:\n",
        "tbz {kk}, #3, 4f\n",
        "ldr d20, [{x0}], #8\n",
        "ldr d21, [{x1}], #8\n",
        "ldr d22, [{x2}], #8\n",
        "ldr d23, [{x3}], #8\n",
        "eor v20.16b, v20.16b, v27.16b\n",
        "eor v21.16b, v21.16b, v27.16b\n",
        "eor v22.16b, v22.16b, v27.16b\n",
        "eor v23.16b, v23.16b, v27.16b\n",
        $group!("v28"),
        $group!("v29"),
        "4:\n",
        // Each pointer moved by kk; the next tile starts 4 pixels on.
        "add {x0}, {x0}, {adv}\n",
        "add {x1}, {x1}, {adv}\n",
        "add {x2}, {x2}, {adv}\n",
        "add {x3}, {x3}, {adv}\n",
    ) };
}

/// The k loop of a 16-channel tile.
macro_rules! pairs16 {
    () => {
        k_loop!(group16)
    };
}

/// The k loop of an 8-channel tile.
macro_rules! pairs8 {
    () => {
        k_loop!(group8)
    };
}

/// Steps 1-3 of the requantization for one pixel's four vectors: `$op` by v16-v19 (`lo`:
/// sqshl, sqrdmulh) or v20-v23 (`hi`: srshl).
#[rustfmt::skip]
macro_rules! rescale4 {
    ($op:literal, lo, $a0:literal, $a1:literal, $a2:literal, $a3:literal) => { concat!(
        $op, " ", $a0, ".4s, ", $a0, ".4s, v16.4s\n",
        $op, " ", $a1, ".4s, ", $a1, ".4s, v17.4s\n",
        $op, " ", $a2, ".4s, ", $a2, ".4s, v18.4s\n",
        $op, " ", $a3, ".4s, ", $a3, ".4s, v19.4s\n",
    ) };
    ($op:literal, hi, $a0:literal, $a1:literal, $a2:literal, $a3:literal) => { concat!(
        $op, " ", $a0, ".4s, ", $a0, ".4s, v20.4s\n",
        $op, " ", $a1, ".4s, ", $a1, ".4s, v21.4s\n",
        $op, " ", $a2, ".4s, ", $a2, ".4s, v22.4s\n",
        $op, " ", $a3, ".4s, ", $a3, ".4s, v23.4s\n",
    ) };
}

/// Steps 1-3 for 16 channels x 4 pixels: left shifts (when `$left`) and multipliers in
/// v16-v19, negated right shifts in v20-v23.
#[rustfmt::skip]
macro_rules! rescale16 {
    ($left:tt) => { concat!(
        rescale16!(@left $left),
        "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{pm}]\n",
        "ld1 {{v20.4s, v21.4s, v22.4s, v23.4s}}, [{pr}]\n",
        rescale4!("sqrdmulh", lo, "v0", "v1", "v2", "v3"),
        rescale4!("sqrdmulh", lo, "v4", "v5", "v6", "v7"),
        rescale4!("sqrdmulh", lo, "v8", "v9", "v10", "v11"),
        rescale4!("sqrdmulh", lo, "v12", "v13", "v14", "v15"),
        rescale4!("srshl", hi, "v0", "v1", "v2", "v3"),
        rescale4!("srshl", hi, "v4", "v5", "v6", "v7"),
        rescale4!("srshl", hi, "v8", "v9", "v10", "v11"),
        rescale4!("srshl", hi, "v12", "v13", "v14", "v15"),
    ) };
    (@left true) => { concat!(
        "ld1 {{v16.4s, v17.4s, v18.4s, v19.4s}}, [{pl}]\n",
        rescale4!("sqshl", lo, "v0", "v1", "v2", "v3"),
        rescale4!("sqshl", lo, "v4", "v5", "v6", "v7"),
        rescale4!("sqshl", lo, "v8", "v9", "v10", "v11"),
        rescale4!("sqshl", lo, "v12", "v13", "v14", "v15"),
    ) };
    (@left false) => { "// no left shifts: {pl} unused\n" };
}

/// Steps 1-3 for 8 channels x 4 pixels: as [`rescale16`], each parameter in two vectors
/// (v16, v17 and v20, v21).
#[rustfmt::skip]
macro_rules! rescale8 {
    ($left:tt) => { concat!(
        rescale8!(@left $left),
        "ld1 {{v16.4s, v17.4s}}, [{pm}]\n",
        "ld1 {{v20.4s, v21.4s}}, [{pr}]\n",
        rescale8!(@op "sqrdmulh", "v16", "v17"),
        rescale8!(@op "srshl", "v20", "v21"),
    ) };
    (@left true) => { concat!(
        "ld1 {{v16.4s, v17.4s}}, [{pl}]\n",
        rescale8!(@op "sqshl", "v16", "v17"),
    ) };
    (@left false) => { "// no left shifts: {pl} unused\n" };
    (@op $op:literal, $lo:literal, $hi:literal) => { concat!(
        $op, " v0.4s, v0.4s, ", $lo, ".4s\n",
        $op, " v1.4s, v1.4s, ", $hi, ".4s\n",
        $op, " v2.4s, v2.4s, ", $lo, ".4s\n",
        $op, " v3.4s, v3.4s, ", $hi, ".4s\n",
        $op, " v4.4s, v4.4s, ", $lo, ".4s\n",
        $op, " v5.4s, v5.4s, ", $hi, ".4s\n",
        $op, " v6.4s, v6.4s, ", $lo, ".4s\n",
        $op, " v7.4s, v7.4s, ", $hi, ".4s\n",
    ) };
}

/// Step 4 and the store of one pixel's 16 channels (`$a0..$a3`, bytes into `$a0`), as
/// [`Stage`] does it: the zero point in v24 (i16), the clamp in v25, v26 (u8).
#[rustfmt::skip]
macro_rules! store16 {
    ($a0:literal, $a1:literal, $a2:literal, $a3:literal, $out:literal) => { concat!(
        "sqxtn ", $a0, ".4h, ", $a0, ".4s\n",
        "sqxtn2 ", $a0, ".8h, ", $a1, ".4s\n",
        "sqxtn ", $a2, ".4h, ", $a2, ".4s\n",
        "sqxtn2 ", $a2, ".8h, ", $a3, ".4s\n",
        "sqadd ", $a0, ".8h, ", $a0, ".8h, v24.8h\n",
        "sqadd ", $a2, ".8h, ", $a2, ".8h, v24.8h\n",
        "sqxtun ", $a0, ".8b, ", $a0, ".8h\n",
        "sqxtun2 ", $a0, ".16b, ", $a2, ".8h\n",
        "umax ", $a0, ".16b, ", $a0, ".16b, v25.16b\n",
        "umin ", $a0, ".16b, ", $a0, ".16b, v26.16b\n",
        "st1 {{", $a0, ".16b}}, [", $out, "], {ostride}\n",
    ) };
}

/// As [`store16`] for one pixel's 8 channels.
#[rustfmt::skip]
macro_rules! store8 {
    ($a0:literal, $a1:literal, $out:literal) => { concat!(
        "sqxtn ", $a0, ".4h, ", $a0, ".4s\n",
        "sqxtn2 ", $a0, ".8h, ", $a1, ".4s\n",
        "sqadd ", $a0, ".8h, ", $a0, ".8h, v24.8h\n",
        "sqxtun ", $a0, ".8b, ", $a0, ".8h\n",
        "umax ", $a0, ".8b, ", $a0, ".8b, v25.8b\n",
        "umin ", $a0, ".8b, ", $a0, ".8b, v26.8b\n",
        "st1 {{", $a0, ".8b}}, [", $out, "], {ostride}\n",
    ) };
}

/// The whole tile loop of a panel of 16 channels: the bias into every pixel's accumulators, the
/// k loop `$k_loop`, steps 1-3 (with left shifts when `$left`), step 4 and the stores, for
/// `{n}` tiles. Shared with the dot-product path, whose k loop differs.
#[rustfmt::skip]
macro_rules! tiles16 {
    ($left:tt, $k_loop:ident) => { concat!(
        "1:\n",
        "ld1 {{v0.4s, v1.4s, v2.4s, v3.4s}}, [{pb}]\n",
        "ld1 {{v4.4s, v5.4s, v6.4s, v7.4s}}, [{pb}]\n",
        "ld1 {{v8.4s, v9.4s, v10.4s, v11.4s}}, [{pb}]\n",
        "ld1 {{v12.4s, v13.4s, v14.4s, v15.4s}}, [{pb}]\n",
        $k_loop!(),
        rescale16!($left),
        "ld1 {{v24.16b, v25.16b, v26.16b}}, [{st}]\n",
        store16!("v0", "v1", "v2", "v3", "{o0}"),
        store16!("v4", "v5", "v6", "v7", "{o1}"),
        store16!("v8", "v9", "v10", "v11", "{o2}"),
        store16!("v12", "v13", "v14", "v15", "{o3}"),
        "subs {n}, {n}, #1\n",
        "b.ne 1b\n",
    ) };
}

/// As [`tiles16`] for a panel of 8 channels.
#[rustfmt::skip]
macro_rules! tiles8 {
    ($left:tt, $k_loop:ident) => { concat!(
        "1:\n",
        "ld1 {{v0.4s, v1.4s}}, [{pb}]\n",
        "ld1 {{v2.4s, v3.4s}}, [{pb}]\n",
        "ld1 {{v4.4s, v5.4s}}, [{pb}]\n",
        "ld1 {{v6.4s, v7.4s}}, [{pb}]\n",
        $k_loop!(),
        rescale8!($left),
        "ld1 {{v24.16b, v25.16b, v26.16b}}, [{st}]\n",
        store8!("v0", "v1", "{o0}"),
        store8!("v2", "v3", "{o1}"),
        store8!("v4", "v5", "{o2}"),
        store8!("v6", "v7", "{o3}"),
        "subs {n}, {n}, #1\n",
        "b.ne 1b\n",
    ) };
}

/// Runs the tile loop `[$template]` over `$tiles` tiles of a panel of `$rows` channels, pixels
/// from `$x`, outputs from `$o`.
macro_rules! panel_asm {
    ([$($template:tt)*], $panel:expr, $x:expr, $o:expr, $tiles:expr, $rows:expr) => {{
        use core::arch::aarch64::{vdupq_n_u8, vld1q_u8};
        use super::{BIAS_AT, LEFT_AT, MULTIPLIER_AT, RIGHT_AT};
        let panel: &super::neon::Panel<'_> = $panel;
        let (kk, mm, rows) = (panel.kk, panel.mm, $rows);
        let (x, o): (*const u8, *mut u8) = ($x, $o);
        let stage = panel.stage.vectors();
        core::arch::asm!(
            $($template)*,
            w0 = in(reg) panel.w,
            w = out(reg) _,
            kk = in(reg) kk,
            cnt = out(reg) _,
            adv = in(reg) 3 * kk,
            x0 = inout(reg) x => _,
            x1 = inout(reg) x.wrapping_add(kk) => _,
            x2 = inout(reg) x.wrapping_add(2 * kk) => _,
            x3 = inout(reg) x.wrapping_add(3 * kk) => _,
            o0 = inout(reg) o => _,
            o1 = inout(reg) o.wrapping_add(mm) => _,
            o2 = inout(reg) o.wrapping_add(2 * mm) => _,
            o3 = inout(reg) o.wrapping_add(3 * mm) => _,
            ostride = in(reg) 4 * mm,
            n = inout(reg) $tiles => _,
            pb = in(reg) panel.p.wrapping_add(BIAS_AT * rows),
            pm = in(reg) panel.p.wrapping_add(MULTIPLIER_AT * rows),
            pl = in(reg) panel.p.wrapping_add(LEFT_AT * rows),
            pr = in(reg) panel.p.wrapping_add(RIGHT_AT * rows),
            st = in(reg) stage.as_ptr(),
            in("v27") vdupq_n_u8(0x80),
            in("v28") vld1q_u8(super::neon::PAIRS[0].as_ptr()),
            in("v29") vld1q_u8(super::neon::PAIRS[1].as_ptr()),
            out("v0") _, out("v1") _, out("v2") _, out("v3") _,
            out("v4") _, out("v5") _, out("v6") _, out("v7") _,
            out("v8") _, out("v9") _, out("v10") _, out("v11") _,
            out("v12") _, out("v13") _, out("v14") _, out("v15") _,
            out("v16") _, out("v17") _, out("v18") _, out("v19") _,
            out("v20") _, out("v21") _, out("v22") _, out("v23") _,
            out("v24") _, out("v25") _, out("v26") _,
            options(nostack),
        );
    }};
}

pub(super) use {panel_asm, rescale4, rescale8, rescale16, store8, store16, tiles8, tiles16};

impl Panel<'_> {
    /// `tiles >= 0` tiles of four pixels of a 16-channel panel: pixels from `x` (kk apart),
    /// outputs from `o` (mm apart).
    ///
    /// # Safety
    /// The panel's weights and params are 16 rows'; `4 * tiles` pixels of `kk` bytes at `x`
    /// are readable and of 16 bytes at `o`, `mm` apart, writable.
    #[target_feature(enable = "neon")]
    unsafe fn tiles16<const LEFT: bool>(&self, x: *const u8, o: *mut u8, tiles: usize) {
        if tiles == 0 {
            return;
        }
        // SAFETY: the asm reads the panel's weights (16 * kk bytes per tile, from the start),
        // its params (4 arrays of 16 i32), the 48 stage bytes and each tile's 4 pixels, and
        // writes each tile's 4 x 16 output bytes (the caller's bounds); it declares every
        // register it writes, and uses no stack.
        unsafe {
            if LEFT {
                panel_asm!([tiles16!(true, pairs16)], self, x, o, tiles, 16);
            } else {
                panel_asm!([tiles16!(false, pairs16)], self, x, o, tiles, 16);
            }
        }
    }

    /// As [`tiles16`](Self::tiles16) for an 8-channel panel.
    ///
    /// # Safety
    /// As for [`tiles16`](Self::tiles16), with 8 rows and 8 output bytes per pixel.
    #[target_feature(enable = "neon")]
    unsafe fn tiles8<const LEFT: bool>(&self, x: *const u8, o: *mut u8, tiles: usize) {
        if tiles == 0 {
            return;
        }
        // SAFETY: as in `tiles16`, with 8 rows.
        unsafe {
            if LEFT {
                panel_asm!([tiles8!(true, pairs8)], self, x, o, tiles, 8);
            } else {
                panel_asm!([tiles8!(false, pairs8)], self, x, o, tiles, 8);
            }
        }
    }

    /// The last `c` (1 to 3) pixels of a panel of `4 * G` channels, from intrinsics.
    ///
    /// # Safety
    /// The panel has `4 * G` rows; `c` pixels of `kk` bytes at `x` are readable and of `4 * G`
    /// bytes at `o`, `mm` apart, writable.
    #[target_feature(enable = "neon")]
    unsafe fn tail<const G: usize>(&self, c: usize, x: *const u8, o: *mut u8, left: bool) {
        let (kk, mm) = (self.kk, self.mm);
        let px = |i: usize| (x.wrapping_add(i * kk), o.wrapping_add(i * mm));
        let ((x0, o0), (x1, o1), (x2, o2)) = (px(0), px(1), px(2));
        // SAFETY: forwarded from the caller: pixels 0..c.
        unsafe {
            match (c, left) {
                (1, false) => self.tile::<G, 1, false>([x0], [o0]),
                (1, true) => self.tile::<G, 1, true>([x0], [o0]),
                (2, false) => self.tile::<G, 2, false>([x0, x1], [o0, o1]),
                (2, true) => self.tile::<G, 2, true>([x0, x1], [o0, o1]),
                (_, false) => self.tile::<G, 3, false>([x0, x1, x2], [o0, o1, o2]),
                (_, true) => self.tile::<G, 3, true>([x0, x1, x2], [o0, o1, o2]),
            }
        }
    }

    /// One tile of `C` pixels and `4 * G` channels, the arithmetic of the assembly from
    /// intrinsics.
    ///
    /// # Safety
    /// As for [`tail`](Self::tail), with `c = C`.
    #[inline]
    #[target_feature(enable = "neon")]
    unsafe fn tile<const G: usize, const C: usize, const LEFT: bool>(
        &self,
        x: [*const u8; C],
        out: [*mut u8; C],
    ) {
        let kk = self.kk;
        let mut acc = [[vdupq_n_s32(0); C]; G];
        for (g, a) in acc.iter_mut().enumerate() {
            // SAFETY: the bias array holds 4G i32.
            *a = [unsafe { vld1q_s32(self.p.add(BIAS_AT * 4 * G + 4 * g)) }; C];
        }
        // SAFETY: the index tables are 16 bytes each.
        let pairs = unsafe { [vld1q_u8(PAIRS[0].as_ptr()), vld1q_u8(PAIRS[1].as_ptr())] };
        let mut w = self.w;
        let mut xs = [vdupq_n_s8(0); C];
        // SAFETY: per block of 16 input channels, 4 groups of 16G weight bytes and 16 input
        // bytes per pixel, then a half block of 2 groups and 8 bytes: within the panel's
        // `4G * kk` weights and each pixel's `kk` bytes.
        unsafe {
            for b in 0..kk / 16 {
                for c in 0..C {
                    xs[c] = load16(x[c].add(16 * b));
                }
                for half in 0..2 {
                    for pair in pairs {
                        pair_group::<G, C>(&mut acc, load_w::<G>(w), &xs, pair);
                        w = w.add(16 * G);
                    }
                    if half == 0 {
                        for v in &mut xs {
                            *v = vextq_s8::<8>(*v, *v);
                        }
                    }
                }
            }
            if !kk.is_multiple_of(16) {
                for c in 0..C {
                    xs[c] = load8(x[c].add(kk - 8));
                }
                for pair in pairs {
                    pair_group::<G, C>(&mut acc, load_w::<G>(w), &xs, pair);
                    w = w.add(16 * G);
                }
            }
            finish::<G, C, LEFT>(&acc, self.p, self.stage, out);
        }
    }
}

/// One group of four input channels: each pixel's activations paired by `pair` (`TBL`), times
/// each of the `G` weight vectors, into the accumulators.
#[inline]
#[target_feature(enable = "neon")]
fn pair_group<const G: usize, const C: usize>(
    acc: &mut [[int32x4_t; C]; G],
    ws: [int8x16_t; G],
    xs: &[int8x16_t; C],
    pair: uint8x16_t,
) {
    for c in 0..C {
        let t = vqtbl1q_s8(xs[c], pair);
        for g in 0..G {
            let p = vmlal_high_s8(vmull_s8(vget_low_s8(ws[g]), vget_low_s8(t)), ws[g], t);
            acc[g][c] = vpadalq_s16(acc[g][c], p);
        }
    }
}

/// The output stage (step 4 of [`requant`](crate::int8::requant)) in three instructions per 8
/// lanes instead of the i32 clamp's nine: narrow `x` to i16 saturating, add the zero point
/// saturating, narrow to u8 saturating, clamp to `[min, max]` in u8. Equal to
/// `clamp(x + zp, min, max)`: where `x` and `x + zp` fit an i16 the saturations change nothing
/// (`0 <= min <= max <= 255`), and where either does not, the sum lies beyond 255 or below 0 in
/// both forms, so both give `max` or `min`.
pub(super) struct Stage {
    zp: int16x8_t,
    min: uint8x16_t,
    max: uint8x16_t,
}

impl Stage {
    /// The vectors of the header's output stage.
    #[target_feature(enable = "neon")]
    pub(super) fn new(h: Header) -> Stage {
        Stage {
            zp: vdupq_n_s16(i16::from(h.stage.zero_point)),
            min: vdupq_n_u8(h.stage.min),
            max: vdupq_n_u8(h.stage.max),
        }
    }

    /// The zero point, the minimum and the maximum, as the assembly loads them.
    #[inline]
    #[target_feature(enable = "neon")]
    pub(super) fn vectors(&self) -> [uint8x16_t; 3] {
        [vreinterpretq_u8_s16(self.zp), self.min, self.max]
    }

    /// Eight rescaled lanes (`lo`, then `hi`) as `x + zp`, saturated to i16.
    #[inline]
    #[target_feature(enable = "neon")]
    pub(super) fn offset(&self, lo: int32x4_t, hi: int32x4_t) -> int16x8_t {
        vqaddq_s16(vqmovn_high_s32(vqmovn_s32(lo), hi), self.zp)
    }

    /// Sixteen [`offset`](Self::offset) lanes as clamped bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    pub(super) fn bytes16(&self, a: int16x8_t, b: int16x8_t) -> uint8x16_t {
        let v = vqmovun_high_s16(vqmovun_s16(a), b);
        vminq_u8(vmaxq_u8(v, self.min), self.max)
    }

    /// Eight [`offset`](Self::offset) lanes as clamped bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    pub(super) fn bytes8(&self, a: int16x8_t) -> uint8x8_t {
        let v = vqmovun_s16(a);
        vmin_u8(vmax_u8(v, vget_low_u8(self.min)), vget_low_u8(self.max))
    }
}

/// [`apply`] for lanes whose left shift is 0: step 1 (`SQSHL` by 0) is the identity.
#[inline]
#[target_feature(enable = "neon")]
pub(super) fn apply_right(
    acc: int32x4_t,
    multiplier: int32x4_t,
    neg_right: int32x4_t,
) -> int32x4_t {
    vrshlq_s32(vqrdmulhq_s32(acc, multiplier), neg_right)
}

/// Requantizes a tile's accumulators (channels in lanes: `acc[g][c]` holds channels
/// `4g..4g+4` of pixel `c`) and stores each pixel's `4 * G` bytes.
///
/// # Safety
/// `p` holds the panel's `4 * G * ARRAYS` params; each `out[c]` has `4 * G` writable bytes;
/// `G` is 2 or 4.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn finish<const G: usize, const C: usize, const LEFT: bool>(
    acc: &[[int32x4_t; C]; G],
    p: *const i32,
    stage: &Stage,
    out: [*mut u8; C],
) {
    let rows = 4 * G;
    let vec = |a: usize, g: usize| {
        // SAFETY: the panel's params are ARRAYS arrays of `rows` i32.
        unsafe { vld1q_s32(p.add(a * rows + 4 * g)) }
    };
    let zero = vdupq_n_s32(0);
    let (mut mult, mut shl, mut shr) = ([zero; G], [zero; G], [zero; G]);
    for g in 0..G {
        mult[g] = vec(MULTIPLIER_AT, g);
        shr[g] = vec(RIGHT_AT, g);
        if LEFT {
            shl[g] = vec(LEFT_AT, g);
        }
    }
    for c in 0..C {
        let mut v = [zero; G];
        for g in 0..G {
            v[g] = if LEFT {
                apply(acc[g][c], mult[g], shl[g], shr[g])
            } else {
                apply_right(acc[g][c], mult[g], shr[g])
            };
        }
        let lo = stage.offset(v[0], v[1]);
        // SAFETY: out[c] has 4G writable bytes.
        unsafe {
            if G == 4 {
                let hi = stage.offset(v[G - 2], v[G - 1]);
                vst1q_u8(out[c], stage.bytes16(lo, hi));
            } else {
                vst1_u8(out[c], stage.bytes8(lo));
            }
        }
    }
}

/// The `G` weight vectors of one group of four input channels at `w`.
///
/// # Safety
/// `16 * G` bytes must be readable at `w`; `G` is 2 or 4.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn load_w<const G: usize>(w: *const i8) -> [int8x16_t; G] {
    let mut v = [vdupq_n_s8(0); G];
    // SAFETY: forwarded from the caller.
    let all = unsafe {
        if G == 4 {
            let t = vld1q_s8_x4(w);
            [t.0, t.1, t.2, t.3]
        } else {
            let t = vld1q_s8_x2(w);
            [t.0, t.1, t.0, t.1]
        }
    };
    v.copy_from_slice(&all[..G]);
    v
}

/// Flipped activations (`x ^ 0x80`, read as i8) of 16 input channels at `x`.
///
/// # Safety
/// 16 bytes must be readable at `x`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn load16(x: *const u8) -> int8x16_t {
    // SAFETY: forwarded from the caller.
    let v = unsafe { vld1q_u8(x) };
    vreinterpretq_s8_u8(veorq_u8(v, vdupq_n_u8(0x80)))
}

/// Flipped activations of 8 input channels at `x`, in both halves.
///
/// # Safety
/// 8 bytes must be readable at `x`.
#[inline]
#[target_feature(enable = "neon")]
pub(super) unsafe fn load8(x: *const u8) -> int8x16_t {
    // SAFETY: forwarded from the caller.
    let v = unsafe { vld1_u8(x) };
    let v = veor_u8(v, vdup_n_u8(0x80));
    vreinterpretq_s8_u8(vcombine_u8(v, v))
}
