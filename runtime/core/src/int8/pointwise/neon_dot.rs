//! NEON with the dot product (Cortex-A76 and later): the tiles of [`super::neon::run`] when it
//! runs the dot-product path; 16 output channels x 4 pixels per tile, in 16 accumulators whose
//! lanes are output channels.
//!
//! `SDOT acc.4s, w.16b, x.4b[q]` adds to each of four channels' lanes the products of its four
//! weights of input channels `4q..4q+4` with the pixel's four flipped activations there
//! (`x ^ 0x80`, i8): 16 multiply-adds per instruction. The packed weights hold, per group of
//! four input channels, four rows' four weights in each vector; one 16-byte load of a pixel's
//! activations serves four groups. A block of 16 input channels costs 4 weight loads, 4
//! activation loads and flips and 64 `SDOT`s (16 x 4 x 16 multiply-adds). The tiles of four
//! pixels run as one `asm!` loop over a panel's pixels, with the NEON path's bias, rescale and
//! store; a panel of 8 channels runs an 8-channel form; the last 1 to 3 pixels run the same
//! arithmetic with `SDOT` one instruction at a time.
//!
//! SDOT is not a stable Rust intrinsic: it is written with `asm!`.

use core::arch::aarch64::*;
use core::arch::asm;

use super::BIAS_AT;
use super::neon::{
    Panel, finish, load_w, load8, load16, panel_asm, rescale4, rescale8, rescale16, store8,
    store16, tiles8, tiles16,
};

/// Pixel `$x`'s four activations of group `$q` against four weight vectors (v16-v19), into
/// the pixel's accumulators `$a0..$a3`.
#[rustfmt::skip]
macro_rules! sdot4 {
    ($x:literal, $q:literal, $a0:literal, $a1:literal, $a2:literal, $a3:literal) => { concat!(
        "sdot ", $a0, ".4s, v16.16b, ", $x, ".4b[", $q, "]\n",
        "sdot ", $a1, ".4s, v17.16b, ", $x, ".4b[", $q, "]\n",
        "sdot ", $a2, ".4s, v18.16b, ", $x, ".4b[", $q, "]\n",
        "sdot ", $a3, ".4s, v19.16b, ", $x, ".4b[", $q, "]\n",
    ) };
}

/// Group `$q` of a block for 16 channels x 4 pixels: its weights, then each pixel (pixel
/// `c`'s accumulators are v(4c)..v(4c+3), its activations v(20+c)).
#[rustfmt::skip]
macro_rules! dot_group16 {
    ($q:literal) => { concat!(
        "ld1 {{v16.16b, v17.16b, v18.16b, v19.16b}}, [{w}], #64\n",
        sdot4!("v20", $q, "v0", "v1", "v2", "v3"),
        sdot4!("v21", $q, "v4", "v5", "v6", "v7"),
        sdot4!("v22", $q, "v8", "v9", "v10", "v11"),
        sdot4!("v23", $q, "v12", "v13", "v14", "v15"),
    ) };
}

/// As [`dot_group16`] for 8 channels (pixel `c`'s accumulators v(2c), v(2c+1)).
#[rustfmt::skip]
macro_rules! dot_group8 {
    ($q:literal) => { concat!(
        "ld1 {{v16.16b, v17.16b}}, [{w}], #32\n",
        "sdot v0.4s, v16.16b, v20.4b[", $q, "]\n",
        "sdot v1.4s, v17.16b, v20.4b[", $q, "]\n",
        "sdot v2.4s, v16.16b, v21.4b[", $q, "]\n",
        "sdot v3.4s, v17.16b, v21.4b[", $q, "]\n",
        "sdot v4.4s, v16.16b, v22.4b[", $q, "]\n",
        "sdot v5.4s, v17.16b, v22.4b[", $q, "]\n",
        "sdot v6.4s, v16.16b, v23.4b[", $q, "]\n",
        "sdot v7.4s, v17.16b, v23.4b[", $q, "]\n",
    ) };
}

/// The k loop of a dot-product tile: blocks of 16 input channels (the four pixels'
/// activations loaded at `x0..x3` and flipped with v27, then groups 0-3), then a half block of
/// 8 (groups 0 and 1) when bit 3 of `kk` is set; each pixel pointer ends at the next tile's.
#[rustfmt::skip]
macro_rules! dot_k_loop {
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
        $group!("0"),
        $group!("1"),
        $group!("2"),
        $group!("3"),
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
        $group!("0"),
        $group!("1"),
        "4:\n",
        "add {x0}, {x0}, {adv}\n",
        "add {x1}, {x1}, {adv}\n",
        "add {x2}, {x2}, {adv}\n",
        "add {x3}, {x3}, {adv}\n",
    ) };
}

/// The k loop of a 16-channel dot-product tile.
macro_rules! dots16 {
    () => {
        dot_k_loop!(dot_group16)
    };
}

/// The k loop of an 8-channel dot-product tile.
macro_rules! dots8 {
    () => {
        dot_k_loop!(dot_group8)
    };
}

impl Panel<'_> {
    /// `tiles >= 0` tiles of four pixels of a 16-channel panel, with `SDOT`: pixels from `x`
    /// (kk apart), outputs from `o` (mm apart).
    ///
    /// # Safety
    /// The CPU must have the dot product; the panel's weights and params are 16 rows' (dot
    /// layout); `4 * tiles` pixels of `kk` bytes at `x` are readable and of 16 bytes at `o`,
    /// `mm` apart, writable.
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn dot_tiles16<const LEFT: bool>(
        &self,
        x: *const u8,
        o: *mut u8,
        tiles: usize,
    ) {
        if tiles == 0 {
            return;
        }
        // SAFETY: the asm reads the panel's weights (16 * kk bytes per tile, from the start),
        // its params (4 arrays of 16 i32), the 48 stage bytes and each tile's 4 pixels, and
        // writes each tile's 4 x 16 output bytes (the caller's bounds); it declares every
        // register it writes, and uses no stack.
        unsafe {
            if LEFT {
                panel_asm!([tiles16!(true, dots16)], self, x, o, tiles, 16);
            } else {
                panel_asm!([tiles16!(false, dots16)], self, x, o, tiles, 16);
            }
        }
    }

    /// As [`dot_tiles16`](Self::dot_tiles16) for an 8-channel panel.
    ///
    /// # Safety
    /// As for [`dot_tiles16`](Self::dot_tiles16), with 8 rows and 8 output bytes per pixel.
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn dot_tiles8<const LEFT: bool>(
        &self,
        x: *const u8,
        o: *mut u8,
        tiles: usize,
    ) {
        if tiles == 0 {
            return;
        }
        // SAFETY: as in `dot_tiles16`, with 8 rows.
        unsafe {
            if LEFT {
                panel_asm!([tiles8!(true, dots8)], self, x, o, tiles, 8);
            } else {
                panel_asm!([tiles8!(false, dots8)], self, x, o, tiles, 8);
            }
        }
    }

    /// The last `c` (1 to 3) pixels of a panel of `4 * G` channels, with `SDOT` one at a time.
    ///
    /// # Safety
    /// As for [`dot_tiles16`](Self::dot_tiles16): the panel has `4 * G` rows; `c` pixels of
    /// `kk` bytes at `x` are readable and of `4 * G` bytes at `o`, `mm` apart, writable.
    #[target_feature(enable = "neon,dotprod")]
    pub(super) unsafe fn dot_tail<const G: usize>(
        &self,
        c: usize,
        x: *const u8,
        o: *mut u8,
        left: bool,
    ) {
        let (kk, mm) = (self.kk, self.mm);
        let px = |i: usize| (x.wrapping_add(i * kk), o.wrapping_add(i * mm));
        let ((x0, o0), (x1, o1), (x2, o2)) = (px(0), px(1), px(2));
        // SAFETY: forwarded from the caller: pixels 0..c.
        unsafe {
            match (c, left) {
                (1, false) => self.dot_tile::<G, 1, false>([x0], [o0]),
                (1, true) => self.dot_tile::<G, 1, true>([x0], [o0]),
                (2, false) => self.dot_tile::<G, 2, false>([x0, x1], [o0, o1]),
                (2, true) => self.dot_tile::<G, 2, true>([x0, x1], [o0, o1]),
                (_, false) => self.dot_tile::<G, 3, false>([x0, x1, x2], [o0, o1, o2]),
                (_, true) => self.dot_tile::<G, 3, true>([x0, x1, x2], [o0, o1, o2]),
            }
        }
    }

    /// One tile of `C` pixels and `4 * G` channels, with `SDOT` one instruction at a time.
    ///
    /// # Safety
    /// As for [`dot_tail`](Self::dot_tail), with `c = C`.
    #[inline]
    #[target_feature(enable = "neon,dotprod")]
    unsafe fn dot_tile<const G: usize, const C: usize, const LEFT: bool>(
        &self,
        x: [*const u8; C],
        out: [*mut u8; C],
    ) {
        let (w, kk) = (self.w, self.kk);
        let mut acc = [[vdupq_n_s32(0); C]; G];
        for (g, a) in acc.iter_mut().enumerate() {
            // SAFETY: the bias array holds 4G i32.
            *a = [unsafe { vld1q_s32(self.p.add(BIAS_AT * 4 * G + 4 * g)) }; C];
        }
        let blocks = kk / 16;
        let step = 16 * G;
        let mut xs = [vdupq_n_s8(0); C];
        // SAFETY: per block of 16 input channels, 4 groups of 16G weight bytes and 16 input
        // bytes per pixel; then a half block of 2 groups and 8 bytes: within the panel's
        // `4G * kk` weights and each pixel's `kk` bytes.
        unsafe {
            for b in 0..blocks {
                for c in 0..C {
                    xs[c] = load16(x[c].add(16 * b));
                }
                let wb = w.add(4 * step * b);
                group::<G, C, 0>(&mut acc, wb, &xs);
                group::<G, C, 1>(&mut acc, wb.add(step), &xs);
                group::<G, C, 2>(&mut acc, wb.add(2 * step), &xs);
                group::<G, C, 3>(&mut acc, wb.add(3 * step), &xs);
            }
            if !kk.is_multiple_of(16) {
                for c in 0..C {
                    xs[c] = load8(x[c].add(16 * blocks));
                }
                let wb = w.add(4 * step * blocks);
                group::<G, C, 0>(&mut acc, wb, &xs);
                group::<G, C, 1>(&mut acc, wb.add(step), &xs);
            }
            finish::<G, C, LEFT>(&acc, self.p, self.stage, out);
        }
    }
}

/// `acc + ` the products of `w`'s four rows with the four bytes `4Q..4Q+4` of `x`, summed per
/// row (SDOT by element).
#[inline]
#[target_feature(enable = "neon,dotprod")]
fn sdot<const Q: i32>(acc: int32x4_t, w: int8x16_t, x: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: SDOT computes on registers only; the CPU has the dot product (target feature).
    unsafe {
        asm!(
            "sdot {a:v}.4s, {b:v}.16b, {c:v}.4b[{q}]",
            a = inout(vreg) acc,
            b = in(vreg) w,
            c = in(vreg) x,
            q = const Q,
            options(pure, nomem, nostack),
        );
    }
    acc
}

/// Adds group `Q` of a block (`w` its weights) to every accumulator.
///
/// # Safety
/// `16 * G` bytes must be readable at `w`; `G` is 2 or 4.
#[inline]
#[target_feature(enable = "neon,dotprod")]
unsafe fn group<const G: usize, const C: usize, const Q: i32>(
    acc: &mut [[int32x4_t; C]; G],
    w: *const i8,
    xs: &[int8x16_t; C],
) {
    // SAFETY: forwarded from the caller.
    let ws = unsafe { load_w::<G>(w) };
    for g in 0..G {
        for c in 0..C {
            acc[g][c] = sdot::<Q>(acc[g][c], ws[g], xs[c]);
        }
    }
}
