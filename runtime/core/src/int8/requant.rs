//! The fixed-point rescale from a layer's i32 accumulator to its u8 output, defined exactly so
//! every path gives the same byte (the scheme of gemmlowp and TFLite, whose steps are single
//! NEON instructions):
//!
//! 1. `x = saturate(acc << left)` where the multiplier's exponent is positive (rare: a scale of
//!    1 or more);
//! 2. `x = (x * multiplier + 2^30) >> 31`, NEON's SQRDMULH (rounding doubling high half);
//! 3. `x = (x + 2^(right-1)) >> right`, NEON's SRSHL by `-right` (rounding half up);
//! 4. `out = clamp(x, min - zp, max - zp) + zp`, which is `clamp(x + zp, min, max)` without an
//!    overflow to care about.
//!
//! [`Requant`] holds steps 1-3 for one output channel, [`OutputStage`] step 4 for a tensor.

/// A real factor in fixed point, `multiplier * 2^(shift - 31)`, for one output channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Requant {
    /// In `[2^30, 2^31)`, or 0 for a factor too small to matter.
    pub multiplier: i32,
    /// Exponent: `> 0` shifts the accumulator left before the multiply, `< 0` rounds it right
    /// after; in `-31..=30`.
    pub shift: i8,
}

/// The largest exponent [`Requant::from_scale`] gives: a factor of `2^30` already saturates any
/// accumulator but 0 and ±1.
const MAX_SHIFT: i8 = 30;
/// The smallest exponent: past a right shift of 31 every accumulator rounds to 0 or -1.
const MIN_SHIFT: i8 = -31;

impl Requant {
    /// A factor of 0: every accumulator maps to the zero point.
    pub const ZERO: Requant = Requant {
        multiplier: 0,
        shift: 0,
    };

    /// The nearest fixed-point factor to `scale`; `None` when it is negative, NaN, or `2^30` or
    /// more. Factors below `2^-32` become [`Requant::ZERO`].
    pub fn from_scale(scale: f64) -> Option<Requant> {
        if scale.is_nan() || scale < 0.0 || scale >= (1u64 << MAX_SHIFT) as f64 {
            return None;
        }
        if scale < 1.0 / (1u64 << 32) as f64 {
            return Some(Requant::ZERO);
        }
        // scale = fraction * 2^exponent, fraction in [0.5, 1).
        let mut exponent = 0i32;
        let mut fraction = scale;
        while fraction >= 1.0 {
            fraction /= 2.0;
            exponent += 1;
        }
        while fraction < 0.5 {
            fraction *= 2.0;
            exponent -= 1;
        }
        let mut multiplier = libm::round(fraction * (1u64 << 31) as f64) as i64;
        if multiplier == 1 << 31 {
            multiplier /= 2;
            exponent += 1;
        }
        if exponent < i32::from(MIN_SHIFT) {
            return Some(Requant::ZERO);
        }
        if exponent > i32::from(MAX_SHIFT) {
            return None;
        }
        Some(Requant {
            multiplier: multiplier as i32,
            shift: exponent as i8,
        })
    }

    /// The real factor this stands for.
    pub fn scale(&self) -> f64 {
        f64::from(self.multiplier) / (1u64 << 31) as f64 * libm::pow(2.0, f64::from(self.shift))
    }

    /// Whether the fields are in the ranges the kernels assume (a hand-built value may not be).
    pub fn is_valid(&self) -> bool {
        (self.multiplier == 0 || self.multiplier >= 1 << 30)
            && (MIN_SHIFT..=MAX_SHIFT).contains(&self.shift)
    }

    /// The left shift of step 1.
    pub fn left(&self) -> u32 {
        self.shift.max(0) as u32
    }

    /// The right shift of step 3.
    pub fn right(&self) -> u32 {
        (-self.shift).max(0) as u32
    }

    /// Steps 1-3: `acc` times the factor, rounded, before the output stage.
    pub fn apply(&self, acc: i32) -> i32 {
        let x = (i64::from(acc) << self.left()).clamp(i64::from(i32::MIN), i64::from(i32::MAX));
        let x = (x * i64::from(self.multiplier) + (1 << 30)) >> 31;
        let x = x.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
        let right = self.right();
        let x = if right == 0 {
            x
        } else {
            (x + (1 << (right - 1))) >> right
        };
        x as i32
    }
}

/// Step 4: a tensor's zero point and the clamp a fused activation asks for (ReLU6 is
/// `min = zero_point`, `max = code of 6.0`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutputStage {
    /// The output's zero point.
    pub zero_point: u8,
    /// Smallest code written.
    pub min: u8,
    /// Largest code written; `>= min`.
    pub max: u8,
}

impl OutputStage {
    /// No clamp beyond the u8 range.
    pub const fn unclamped(zero_point: u8) -> OutputStage {
        OutputStage {
            zero_point,
            min: 0,
            max: u8::MAX,
        }
    }

    /// Bounds for the rescaled value before the zero point is added: `(min - zp, max - zp)`.
    pub fn bounds(&self) -> (i32, i32) {
        let zp = i32::from(self.zero_point);
        (i32::from(self.min) - zp, i32::from(self.max) - zp)
    }

    /// The output code of a rescaled value.
    pub fn apply(&self, x: i32) -> u8 {
        let (lo, hi) = self.bounds();
        (x.clamp(lo, hi.max(lo)) + i32::from(self.zero_point)) as u8
    }
}

/// All four steps: the u8 a kernel writes for accumulator `acc`.
pub fn requantize(acc: i32, requant: Requant, stage: OutputStage) -> u8 {
    stage.apply(requant.apply(acc))
}

/// NEON forms of the steps, four output channels per vector.
#[cfg(target_arch = "aarch64")]
pub(crate) mod neon {
    use core::arch::aarch64::*;

    /// Steps 1-3 for four lanes: `left` and `neg_right` are the shifts of [`super::Requant`]
    /// as NEON's signed shift counts (`left >= 0`, `neg_right = -right <= 0`).
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn apply(
        acc: int32x4_t,
        multiplier: int32x4_t,
        left: int32x4_t,
        neg_right: int32x4_t,
    ) -> int32x4_t {
        vrshlq_s32(vqrdmulhq_s32(vqshlq_s32(acc, left), multiplier), neg_right)
    }

    /// Step 4 for four lanes, from [`super::OutputStage::bounds`] and its zero point, all
    /// splat; the results are in 0..=255.
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn stage(x: int32x4_t, lo: int32x4_t, hi: int32x4_t, zp: int32x4_t) -> int32x4_t {
        vaddq_s32(vmaxq_s32(vminq_s32(x, hi), lo), zp)
    }

    /// Sixteen staged lanes (each in 0..=255) as sixteen bytes.
    #[inline]
    #[target_feature(enable = "neon")]
    pub fn narrow(a: int32x4_t, b: int32x4_t, c: int32x4_t, d: int32x4_t) -> uint8x16_t {
        let low = vcombine_s16(vmovn_s32(a), vmovn_s32(b));
        let high = vcombine_s16(vmovn_s32(c), vmovn_s32(d));
        vcombine_u8(vqmovun_s16(low), vqmovun_s16(high))
    }
}

/// AVX2 forms of the steps, eight output channels per vector.
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use core::arch::x86_64::*;

    /// Step 1 for eight lanes: shift left, and saturate the lanes whose shift lost bits.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn shift_left(acc: __m256i, left: __m256i) -> __m256i {
        let shifted = _mm256_sllv_epi32(acc, left);
        let kept = _mm256_cmpeq_epi32(_mm256_srav_epi32(shifted, left), acc);
        let saturated = _mm256_xor_si256(_mm256_set1_epi32(i32::MAX), _mm256_srai_epi32::<31>(acc));
        _mm256_blendv_epi8(saturated, shifted, kept)
    }

    /// Steps 1-3 for eight lanes; `left` and `right` are the shifts of [`super::Requant`].
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn apply(acc: __m256i, multiplier: __m256i, left: __m256i, right: __m256i) -> __m256i {
        let x = shift_left(acc, left);
        // Step 2: 64-bit products of the even and the odd lanes. The multiplier is never
        // negative, so the high half fits 32 bits and a logical shift gives its bits.
        let round = _mm256_set1_epi64x(1 << 30);
        let even =
            _mm256_srli_epi64::<31>(_mm256_add_epi64(_mm256_mul_epi32(x, multiplier), round));
        let odd = _mm256_add_epi64(
            _mm256_mul_epi32(
                _mm256_srli_epi64::<32>(x),
                _mm256_srli_epi64::<32>(multiplier),
            ),
            round,
        );
        let odd = _mm256_slli_epi64::<1>(odd);
        let x = _mm256_blend_epi32::<0b1010_1010>(even, odd);
        // Step 3: x >> right, plus the last bit shifted out (none when right is 0).
        let one = _mm256_set1_epi32(1);
        let has_round_bit = _mm256_cmpgt_epi32(right, _mm256_setzero_si256());
        let round_bit = _mm256_and_si256(
            _mm256_srav_epi32(x, _mm256_sub_epi32(right, one)),
            _mm256_and_si256(one, has_round_bit),
        );
        _mm256_add_epi32(_mm256_srav_epi32(x, right), round_bit)
    }

    /// Steps 1-3 for eight lanes with AVX-512VL's 64-bit arithmetic shifts, the per-lane
    /// constants derived once: steps 2 and 3 round once, as
    /// `(x * multiplier + 2^30 + [right > 0] 2^(30 + right)) >> (31 + right)`, which equals
    /// their two roundings exactly (floor divisions compose; the sum stays under 2^63).
    pub struct Rounding {
        multiplier: __m256i,
        /// The odd lanes' multipliers in the even lanes.
        multiplier_odd: __m256i,
        left: __m256i,
        /// The even and the odd lanes' addends and shifts, as 64-bit lanes.
        add_even: __m256i,
        add_odd: __m256i,
        shift_even: __m256i,
        shift_odd: __m256i,
    }

    impl Rounding {
        /// From eight lanes of multipliers and the shifts of [`super::Requant`].
        #[inline]
        #[target_feature(enable = "avx512f,avx512vl")]
        pub fn new(multiplier: __m256i, left: __m256i, right: __m256i) -> Rounding {
            // `right` is never negative: its halves are its even and odd lanes, zero-extended.
            let even = _mm256_and_si256(right, _mm256_set1_epi64x(0xffff_ffff));
            let odd = _mm256_srli_epi64::<32>(right);
            let half = _mm256_set1_epi64x(1 << 30);
            let add = |r: __m256i| {
                let step3 = _mm256_sllv_epi64(half, r);
                let none = _mm256_cmpeq_epi64(r, _mm256_setzero_si256());
                _mm256_add_epi64(half, _mm256_andnot_si256(none, step3))
            };
            let shift = |r: __m256i| _mm256_add_epi64(r, _mm256_set1_epi64x(31));
            Rounding {
                multiplier,
                multiplier_odd: _mm256_srli_epi64::<32>(multiplier),
                left,
                add_even: add(even),
                add_odd: add(odd),
                shift_even: shift(even),
                shift_odd: shift(odd),
            }
        }

        /// Steps 1-3 of eight lanes; step 1 only when `LEFT` (an identity when no lane shifts
        /// left).
        #[inline]
        #[target_feature(enable = "avx512f,avx512vl")]
        pub fn apply<const LEFT: bool>(&self, acc: __m256i) -> __m256i {
            let x = if LEFT {
                shift_left(acc, self.left)
            } else {
                acc
            };
            let even = _mm256_add_epi64(_mm256_mul_epi32(x, self.multiplier), self.add_even);
            let even = _mm256_srav_epi64(even, self.shift_even);
            let odd = _mm256_mul_epi32(_mm256_srli_epi64::<32>(x), self.multiplier_odd);
            let odd = _mm256_srav_epi64(_mm256_add_epi64(odd, self.add_odd), self.shift_odd);
            _mm256_blend_epi32::<0b1010_1010>(even, _mm256_slli_epi64::<32>(odd))
        }
    }

    /// Step 4 on 32 lanes at once, as bytes: packing saturates to i16, the zero point adds
    /// with saturation, packing again saturates to 0..=255, and the clamp applies to the bytes,
    /// which equals clamping first (a saturated lane lies beyond the byte range on the side it
    /// came from).
    pub struct ByteStage {
        zero_point: __m256i,
        min: __m256i,
        max: __m256i,
    }

    impl ByteStage {
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn new(stage: super::OutputStage) -> ByteStage {
            ByteStage {
                zero_point: _mm256_set1_epi16(i16::from(stage.zero_point)),
                min: _mm256_set1_epi8(stage.min as i8),
                max: _mm256_set1_epi8(stage.max as i8),
            }
        }

        /// Four vectors of steps 1-3 as 32 bytes, in
        /// `_mm256_packus_epi16(_mm256_packs_epi32(x0, x1), _mm256_packs_epi32(x2, x3))` order.
        #[inline]
        #[target_feature(enable = "avx2")]
        pub fn apply(&self, x: [__m256i; 4]) -> __m256i {
            let ab = _mm256_adds_epi16(_mm256_packs_epi32(x[0], x[1]), self.zero_point);
            let cd = _mm256_adds_epi16(_mm256_packs_epi32(x[2], x[3]), self.zero_point);
            _mm256_max_epu8(
                _mm256_min_epu8(_mm256_packus_epi16(ab, cd), self.max),
                self.min,
            )
        }
    }

    /// Step 4 for eight lanes, from [`super::OutputStage::bounds`] and its zero point, all
    /// splat; the results are in 0..=255.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub fn stage(x: __m256i, lo: __m256i, hi: __m256i, zp: __m256i) -> __m256i {
        _mm256_add_epi32(_mm256_max_epi32(_mm256_min_epi32(x, hi), lo), zp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_scale_is_within_half_a_step() {
        for scale in [1e-9, 3e-5, 0.0123, 0.25, 0.5, 0.99999999, 1.0, 1.5, 300.0] {
            let r = Requant::from_scale(scale).unwrap();
            assert!(r.is_valid(), "{scale}: {r:?}");
            let step = libm::pow(2.0, f64::from(r.shift) - 31.0);
            assert!(
                (r.scale() - scale).abs() <= step / 2.0,
                "{scale}: {r:?} -> {}",
                r.scale()
            );
        }
        assert_eq!(Requant::from_scale(1e-12), Some(Requant::ZERO));
        assert_eq!(Requant::from_scale(-1.0), None);
        assert_eq!(Requant::from_scale(f64::NAN), None);
        assert_eq!(Requant::from_scale(1e10), None);
    }

    #[test]
    fn apply_rounds_half_up_and_saturates() {
        let half = Requant::from_scale(0.5).unwrap();
        assert_eq!((half.multiplier, half.shift), (1 << 30, 0));
        assert_eq!([3, -3, 5, -5].map(|a| half.apply(a)), [2, -1, 3, -2]);
        let quarter = Requant::from_scale(0.25).unwrap();
        assert_eq!([2, -2, 6, -6].map(|a| quarter.apply(a)), [1, 0, 2, -1]);
        let big = Requant::from_scale(4.0).unwrap();
        // Step 1 saturates, then the multiplier (0.5 here) scales the saturated value.
        assert_eq!(big.apply(i32::MAX / 2), 1 << 30);
        assert_eq!(big.apply(i32::MIN / 2), -(1 << 30));
        assert_eq!(big.apply(-7), -28);
        let stage = OutputStage {
            zero_point: 10,
            min: 10,
            max: 200,
        };
        assert_eq!(
            [-50, 0, 90, 190, 1000].map(|x| stage.apply(x)),
            [10, 10, 100, 200, 200]
        );
    }

    /// Requant factors across the whole exponent range, with accumulators around the rounding
    /// and saturation edges.
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    fn cases() -> impl Iterator<Item = (i32, Requant)> {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        (0..20_000).map(move |i| {
            let shift = (next() % 62) as i8 - 31;
            let multiplier = if i % 97 == 0 {
                0
            } else {
                (1 << 30) | (next() as i32 & 0x3fff_ffff)
            };
            let acc = match i % 4 {
                0 => next() as i32,
                1 => (next() % 2001) as i32 - 1000,
                2 => [i32::MIN, i32::MAX, 0, -1, 1][(next() % 5) as usize],
                _ => (next() as i32) >> (next() % 31),
            };
            (acc, Requant { multiplier, shift })
        })
    }

    #[cfg(target_arch = "aarch64")]
    #[test]
    fn neon_equals_reference() {
        use core::arch::aarch64::*;
        for (acc, r) in cases() {
            // SAFETY: NEON is part of aarch64; the helpers only compute on registers.
            let got = unsafe {
                let v = neon::apply(
                    vdupq_n_s32(acc),
                    vdupq_n_s32(r.multiplier),
                    vdupq_n_s32(r.left() as i32),
                    vdupq_n_s32(-(r.right() as i32)),
                );
                vgetq_lane_s32::<3>(v)
            };
            assert_eq!(got, r.apply(acc), "{acc} {r:?}");
        }
    }

    #[cfg(all(target_arch = "x86_64", feature = "std"))]
    #[test]
    fn avx2_equals_reference() {
        use core::arch::x86_64::*;
        if !std::is_x86_feature_detected!("avx2") {
            std::println!("requant: no AVX2 on this CPU, nothing to compare");
            return;
        }
        let cases: std::vec::Vec<_> = cases().collect();
        for chunk in cases.chunks_exact(8) {
            let lanes = |f: &dyn Fn(&(i32, Requant)) -> i32| {
                let mut a = [0i32; 8];
                for (a, case) in a.iter_mut().zip(chunk) {
                    *a = f(case);
                }
                a
            };
            let (acc, m, l, r) = (
                lanes(&|c| c.0),
                lanes(&|c| c.1.multiplier),
                lanes(&|c| c.1.left() as i32),
                lanes(&|c| c.1.right() as i32),
            );
            let mut got = [0i32; 8];
            // SAFETY: AVX2 was detected above; the loads and the store cover 8 i32s.
            unsafe {
                let load = |a: &[i32; 8]| _mm256_loadu_si256(a.as_ptr().cast());
                let v = x86::apply(load(&acc), load(&m), load(&l), load(&r));
                _mm256_storeu_si256(got.as_mut_ptr().cast(), v);
            }
            for (g, (acc, r)) in got.iter().zip(chunk) {
                assert_eq!(*g, r.apply(*acc), "{acc} {r:?}");
            }
        }
    }
}
