//! Data for the benchmarks and the ARM cost examples (which include this file by path):
//! deterministic pseudo-random values, so every run (and every machine) measures the same
//! inputs, without a dependency for it.

#![allow(dead_code)] // each benchmark uses a different part

use nap_core::depthwise::Geometry;
use nap_core::int8::Requant;

/// The xorshift64 generator (shifts 13, 7, 17).
pub struct XorShift64(u64);

impl XorShift64 {
    /// A generator starting from `seed`, which must not be zero (zero stays zero).
    pub fn new(seed: u64) -> Self {
        assert_ne!(seed, 0, "xorshift never leaves a zero state");
        XorShift64(seed)
    }

    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// `n` int8 weight codes in `-127..=127`, as `napctl quantize` makes them.
    pub fn codes(&mut self, n: usize) -> Vec<i8> {
        (0..n)
            .map(|_| ((self.next_u64() % 255) as i32 - 127) as i8)
            .collect()
    }

    /// `n` i32 biases in `-10_000..10_000`.
    pub fn biases(&mut self, n: usize) -> Vec<i32> {
        (0..n)
            .map(|_| (self.next_u64() % 20_000) as i32 - 10_000)
            .collect()
    }

    /// `n` per-channel rescales from 0.002 to 0.012.
    pub fn requants(&mut self, n: usize) -> Vec<Requant> {
        (0..n)
            .map(|_| Requant::from_scale(0.002 + (self.next_u64() % 1000) as f64 * 1e-5).unwrap())
            .collect()
    }

    /// `n` values uniform in `lo..hi`, from the top 24 bits of each step (what an f32 holds).
    pub fn uniform(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n)
            .map(|_| (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * (hi - lo) + lo)
            .collect()
    }
}

/// A 3x3 depthwise window over a square `side` x `side` input with padding 1 on every side,
/// as MobileNetV2's layers have it.
pub fn padded_square(channels: usize, side: usize, stride: usize) -> Geometry {
    let out = side / stride;
    Geometry {
        channels,
        in_height: side,
        in_width: side,
        stride,
        pad_top: 1,
        pad_left: 1,
        out_height: out,
        out_width: out,
    }
}

pub mod expand_depthwise {
    //! One MobileNetV2 expansion and the depthwise convolution it feeds, with random numbers,
    //! run either as two layers (the expanded tensor whole) or fused.

    use super::{XorShift64, padded_square};
    use nap_core::depthwise::{Geometry, TAPS};
    use nap_core::int8::depthwise::{self, Depthwise, Packed};
    use nap_core::int8::expand_depthwise::{ExpandDepthwise, Expansion};
    use nap_core::int8::pointwise::{Layer, Pointwise, Shape};
    use nap_core::int8::{OutputStage, fold_zero_point, stride};

    /// (input channels, expanded channels, input side, stride) of every expansion + depthwise
    /// pair of MobileNetV2 1.0 / 224, padding 1 on every side.
    pub const BLOCKS: [(usize, usize, usize, usize); 16] = [
        (16, 96, 112, 2),
        (24, 144, 56, 1),
        (24, 144, 56, 2),
        (32, 192, 28, 1),
        (32, 192, 28, 1),
        (32, 192, 28, 2),
        (64, 384, 14, 1),
        (64, 384, 14, 1),
        (64, 384, 14, 1),
        (64, 384, 14, 1),
        (96, 576, 14, 1),
        (96, 576, 14, 1),
        (96, 576, 14, 2),
        (160, 960, 7, 1),
        (160, 960, 7, 1),
        (160, 960, 7, 1),
    ];

    /// The two layers' packed numbers and buffers.
    pub struct Block {
        pub shape: Shape,
        pub g: Geometry,
        expand_weights: Vec<i8>,
        expand_params: Vec<i32>,
        dw_weights: Vec<i8>,
        dw_params: Vec<i32>,
        pub input: Vec<u8>,
        pub expanded: Vec<u8>,
        pub scratch: Vec<u8>,
        pub output: Vec<u8>,
    }

    /// ReLU6 on codes of scale 6/255: what MobileNetV2's expansions and depthwise layers end in.
    const STAGE: OutputStage = OutputStage {
        zero_point: 0,
        min: 0,
        max: 255,
    };

    impl Block {
        /// Block `(k, m, side, s)` of [`BLOCKS`], packed for `pointwise`.
        pub fn new(
            (k, m, side, s): (usize, usize, usize, usize),
            pointwise: &Pointwise,
            rng: &mut XorShift64,
        ) -> Block {
            let g = padded_square(m, side, s);
            let shape = Shape {
                pixels: side * side,
                in_channels: k,
                out_channels: m,
            };
            let w = rng.codes(m * k);
            let (b, r) = (rng.biases(m), rng.requants(m));
            let len = pointwise.packed_len(&shape).unwrap();
            let (mut expand_weights, mut expand_params) =
                (vec![0; len.weights], vec![0; len.params]);
            let layer = Layer {
                weights: &w,
                bias: &b,
                requant: &r,
                stage: STAGE,
            };
            pointwise
                .pack(&shape, &layer, &mut expand_weights, &mut expand_params)
                .unwrap();
            let w = rng.codes(m * TAPS);
            let mut b = rng.biases(m);
            fold_zero_point(&mut b, &w, TAPS, STAGE.zero_point).unwrap();
            let mut dw_weights = vec![0; Packed::weights_len(m).unwrap()];
            let mut dw_params = vec![0; Packed::params_len(m).unwrap()];
            depthwise::pack(&w, &b, &rng.requants(m), &mut dw_weights, &mut dw_params).unwrap();
            Block {
                shape,
                g,
                expand_weights,
                expand_params,
                dw_weights,
                dw_params,
                input: rng.bytes(shape.input_len().unwrap()),
                expanded: vec![0; shape.output_len().unwrap()],
                scratch: vec![0; depthwise::scratch_len(&g).unwrap()],
                output: vec![0; stride(m) * g.out_height * g.out_width],
            }
        }

        /// The expansion into the whole expanded tensor, then the depthwise convolution.
        pub fn separate(&mut self, pointwise: &Pointwise, depthwise: &Depthwise) {
            pointwise
                .run(
                    &self.shape,
                    &self.expand_weights,
                    &self.expand_params,
                    &self.input,
                    &mut self.expanded,
                )
                .unwrap();
            let packed = Packed::new(self.g.channels, &self.dw_weights, &self.dw_params).unwrap();
            depthwise
                .run(
                    &self.g,
                    &packed,
                    STAGE.zero_point,
                    STAGE,
                    &self.expanded,
                    &mut self.scratch,
                    &mut self.output,
                )
                .unwrap();
        }

        /// The two fused, row by row.
        pub fn fused(&mut self, kernels: &ExpandDepthwise) {
            let packed = Packed::new(self.g.channels, &self.dw_weights, &self.dw_params).unwrap();
            let expansion = Expansion {
                shape: self.shape,
                weights: &self.expand_weights,
                params: &self.expand_params,
            };
            kernels
                .run(
                    &expansion,
                    &self.g,
                    &packed,
                    STAGE,
                    &self.input,
                    &mut self.scratch,
                    &mut self.output,
                )
                .unwrap();
        }
    }
}
