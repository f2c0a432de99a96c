//! The classifier head's matrix-vector product over int8 weight rows: `out[k] = codes[k] . x`,
//! the codes widened to f32.
//!
//! A head's time goes into reading its weights once per frame (1000 x 1280 for MobileNetV2),
//! usually from memory, since the backbone has run through the caches since the last frame.
//! Stored as int8 they are a quarter of the f32 bytes, but widening them costs more than the
//! reading saves unless it is vectorized: the fast paths widen a vector of codes per step. They
//! read one row at a time, a single sequential stream the hardware prefetcher follows: reading
//! four rows at once was as fast with warm caches and twice as slow with cold ones.
//!
//! [`scalar`] is the reference. The fast paths ([`Isa::Sse2`], [`Isa::Avx2`], [`Isa::Neon`]) sum
//! in another order (the last two also fuse multiply and add), so they agree with it to float
//! rounding; an [`Int8Gemv`] only ever runs a path the CPU supports.
//!
//! [`Int8Gemv::dots_i16`] takes the vector as i16 codes instead: integer products, twice as many
//! per instruction as widening the codes to f32, summed exactly, so every path equals the
//! reference bit for bit.

pub mod scalar;

#[cfg(target_arch = "aarch64")]
mod neon;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use crate::isa::Isa;

/// Steps each i32 lane of the i16 paths takes before its sum moves into i64. A step adds at most
/// two products of `128 * 32767`, so 256 steps stay below 2^31.
pub(crate) const I16_BLOCK: usize = 256;

/// The fast paths, fastest first.
const PATHS: [Isa; 3] = [Isa::Avx2, Isa::Neon, Isa::Sse2];

/// One implementation of the int8 row products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Gemv {
    isa: Isa,
}

impl Default for Int8Gemv {
    fn default() -> Self {
        Self::new()
    }
}

impl Int8Gemv {
    /// The fastest implementation this CPU supports.
    pub fn new() -> Self {
        let isa = Isa::fastest_of(&PATHS);
        Int8Gemv { isa }
    }

    /// A specific implementation, or `None` when this kernel has no such path or this CPU
    /// cannot run it.
    pub fn with_isa(isa: Isa) -> Option<Self> {
        isa.among(&PATHS).map(|isa| Int8Gemv { isa })
    }

    /// The implementation this runs.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// `out[k] = sum_i codes[k * x.len() + i] * x[i]` for every row `k` of `codes` (row-major,
    /// `out.len()` rows of `x.len()` codes).
    ///
    /// # Panics
    /// When `codes.len() != out.len() * x.len()`: the caller's head validation guarantees it.
    pub fn dots(&self, codes: &[i8], x: &[f32], out: &mut [f32]) {
        assert_eq!(
            Some(codes.len()),
            out.len().checked_mul(x.len()),
            "int8 rows do not match the vector and the output"
        );
        match self.isa {
            // SAFETY: an Int8Gemv holds Avx2 only when the CPU reported AVX2 and FMA
            // (`Isa::is_supported`); the lengths were checked above.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::dots_avx2(codes, x, out) },
            // SAFETY: NEON is part of the aarch64 baseline; the lengths were checked above.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { neon::dots(codes, x, out) },
            Isa::Sse2 => scalar::dots_lanes(codes, x, out),
            _ => scalar::dots(codes, x, out),
        }
    }

    /// `out[k] = sum_i codes[k * x.len() + i] * x[i]` for every row `k` of `codes`, the sum exact
    /// and rounded once to f32: the same on every path. `x` must not hold `i16::MIN` (the
    /// lanes' bound counts on `|x[i]| <= 32767`).
    ///
    /// # Panics
    /// When `codes.len() != out.len() * x.len()`: the caller's head validation guarantees it.
    pub fn dots_i16(&self, codes: &[i8], x: &[i16], out: &mut [f32]) {
        assert_eq!(
            Some(codes.len()),
            out.len().checked_mul(x.len()),
            "int8 rows do not match the vector and the output"
        );
        debug_assert!(!x.contains(&i16::MIN));
        match self.isa {
            // SAFETY: as in `dots`.
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => unsafe { x86::dots_i16_avx2(codes, x, out) },
            // SAFETY: as in `dots`.
            #[cfg(target_arch = "aarch64")]
            Isa::Neon => unsafe { neon::dots_i16(codes, x, out) },
            Isa::Sse2 => scalar::dots_i16_lanes(codes, x, out),
            _ => scalar::dots_i16(codes, x, out),
        }
    }
}
