//! The int8 backbone run by nap-core's integer kernels: the frame is quantized once, every
//! layer reads and writes u8 codes, and the pre-pool tensor comes out as the u8 NHWC codes the
//! reductions read. No float between layers, no tract.
//!
//! [`program`] is the backbone as data (what the bundle stores); [`IntegerBackbone`] is it
//! prepared for one CPU: every layer's fixed-point parameters derived and its weights packed
//! for the kernel path this CPU runs, and the activation buffers planned so tensors that are no
//! longer read share memory.

pub mod program;

pub use program::{Conv, Layer, Op, Program, ProgramError, TensorShape};

use nap_core::depthwise::Geometry;
use nap_core::int8::add::{Add, AddParams};
use nap_core::int8::depthwise::{self, Depthwise, Packed};
use nap_core::int8::pointwise::{self, Pointwise, PointwiseError};
use nap_core::int8::stem::{Frame, SCRATCH_LEN, Stem, StemShape};
use nap_core::int8::{OutputStage, Quant, fold_zero_point, stride};
use nap_core::isa::Isa;

/// The integer backbone, ready to run: shared by every worker, immutable.
pub struct IntegerBackbone {
    size: usize,
    input: Quant,
    steps: Vec<Step>,
    /// Bytes of each tensor as it lies in its buffer (pixels times the padded channel stride).
    tensor_lens: Vec<usize>,
    /// Which buffer holds each tensor (tensor 0, the frame, has its own).
    slot_of: Vec<usize>,
    slot_lens: Vec<usize>,
    scratch_len: usize,
    output: TensorShape,
    kernels: Kernels,
}

/// The kernel implementations one backbone runs with.
#[derive(Clone, Copy, Debug)]
struct Kernels {
    stem: Stem,
    pointwise: Pointwise,
    depthwise: Depthwise,
    add: Add,
}

/// One layer with everything its kernel needs.
enum Step {
    Stem {
        shape: StemShape,
        weights: Vec<i8>,
        params: Vec<i32>,
    },
    Pointwise {
        input: usize,
        shape: pointwise::Shape,
        weights: Vec<i8>,
        params: Vec<i32>,
    },
    Depthwise {
        input: usize,
        geometry: Geometry,
        input_zero_point: u8,
        stage: OutputStage,
        weights: Vec<i8>,
        params: Vec<i32>,
    },
    Add {
        a: usize,
        b: usize,
        params: AddParams,
    },
}

/// One worker's activation buffers for an [`IntegerBackbone`].
pub struct Activations {
    frame: Vec<u8>,
    slots: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    pre_pool: Vec<u8>,
}

impl IntegerBackbone {
    /// Prepares `program` with the fastest kernel paths this CPU runs.
    pub fn new(program: &Program) -> Result<Self, ProgramError> {
        Self::prepare(
            program,
            Kernels {
                stem: Stem::new(),
                pointwise: Pointwise::new(),
                depthwise: Depthwise::new(),
                add: Add::new(),
            },
        )
    }

    /// Prepares `program` with every kernel on path `isa` where it has one, and on its
    /// scalar reference otherwise (`Isa::Scalar`: the reference throughout).
    pub fn with_isa(program: &Program, isa: Isa) -> Result<Self, ProgramError> {
        let scalar = "every kernel has its scalar reference";
        Self::prepare(
            program,
            Kernels {
                stem: Stem::with_isa(isa)
                    .or(Stem::with_isa(Isa::Scalar))
                    .expect(scalar),
                pointwise: Pointwise::with_isa(isa)
                    .or(Pointwise::with_isa(Isa::Scalar))
                    .expect(scalar),
                depthwise: Depthwise::with_isa(isa)
                    .or(Depthwise::with_isa(Isa::Scalar))
                    .expect(scalar),
                add: Add::with_isa(isa)
                    .or(Add::with_isa(Isa::Scalar))
                    .expect(scalar),
            },
        )
    }

    fn prepare(program: &Program, kernels: Kernels) -> Result<Self, ProgramError> {
        let shapes = program.shapes()?;
        let mut steps = Vec::with_capacity(program.layers.len());
        let mut scratch_len = SCRATCH_LEN;
        for (i, layer) in program.layers.iter().enumerate() {
            let step = prepare_step(program, &shapes, layer, kernels)
                .map_err(|reason| ProgramError::Layer { layer: i, reason })?;
            if let Step::Depthwise { geometry, .. } = &step {
                let need = depthwise::scratch_len(geometry).ok_or_else(|| ProgramError::Layer {
                    layer: i,
                    reason: "the depthwise scratch overflows".into(),
                })?;
                scratch_len = scratch_len.max(need);
            }
            steps.push(step);
        }
        let tensor_lens: Vec<usize> = shapes
            .iter()
            .map(|s| s.pixels() * stride(s.channels))
            .collect();
        let (slot_of, slot_lens) = plan_slots(program, &tensor_lens);
        Ok(IntegerBackbone {
            size: program.size as usize,
            input: program.input,
            steps,
            tensor_lens,
            slot_of,
            slot_lens,
            scratch_len,
            output: *shapes.last().expect("a program has layers"),
            kernels,
        })
    }

    /// The pre-pool tensor's shape.
    pub fn output_shape(&self) -> TensorShape {
        self.output
    }

    /// The kernel paths this backbone runs: stem, pointwise, depthwise, add.
    pub fn paths(&self) -> [Isa; 4] {
        let k = self.kernels;
        [
            k.stem.isa(),
            k.pointwise.isa(),
            k.depthwise.isa(),
            k.add.isa(),
        ]
    }

    /// Buffers for one worker.
    pub fn activations(&self) -> Activations {
        Activations {
            frame: vec![0; self.size * self.size * 3],
            slots: self.slot_lens.iter().map(|&n| vec![0; n]).collect(),
            scratch: vec![0; self.scratch_len],
            pre_pool: Vec::new(),
        }
    }

    /// Runs one preprocessed frame (NCHW, `3 * size * size` values) to the pre-pool tensor,
    /// u8 codes NHWC with exactly its channels per pixel. `None` when `input` has another
    /// length or `act` was made for another backbone.
    pub fn run<'a>(&self, act: &'a mut Activations, input: &[f32]) -> Option<&'a [u8]> {
        let plane = self.size * self.size;
        if input.len() != 3 * plane || act.frame.len() != 3 * plane {
            return None;
        }
        if act.slots.len() != self.slot_lens.len()
            || act
                .slots
                .iter()
                .zip(&self.slot_lens)
                .any(|(s, &n)| s.len() != n)
        {
            return None;
        }
        // `Quant::quantize`, with std's rounding (one instruction where libm's no_std one is a
        // routine; both round half away from zero, so the codes are the same).
        let (scale, zero_point) = (self.input.scale, f32::from(self.input.zero_point));
        let (r, g, b) = (
            &input[..plane],
            &input[plane..2 * plane],
            &input[2 * plane..],
        );
        for (pixel, ((&r, &g), &b)) in act.frame.chunks_exact_mut(3).zip(r.iter().zip(g).zip(b)) {
            for (code, v) in pixel.iter_mut().zip([r, g, b]) {
                *code = ((v / scale).round() + zero_point).clamp(0.0, 255.0) as u8;
            }
        }
        for (i, step) in self.steps.iter().enumerate() {
            let out_slot = self.slot_of[i + 1];
            let mut out = std::mem::take(&mut act.slots[out_slot]);
            self.run_step(step, act, &mut out[..self.tensor_lens[i + 1]]);
            act.slots[out_slot] = out;
        }
        let last = &act.slots[self.slot_of[self.steps.len()]];
        let (c, pixels) = (self.output.channels, self.output.pixels());
        let len = pixels * c;
        if stride(c) == c {
            return Some(&last[..len]);
        }
        act.pre_pool.clear();
        act.pre_pool.extend(
            last.chunks_exact(stride(c))
                .take(pixels)
                .flat_map(|p| &p[..c]),
        );
        Some(&act.pre_pool)
    }

    /// One layer into `out`, its output tensor. The buffers were sized from the same shapes
    /// the steps were prepared with, so a kernel's refusal here is a bug, not bad input.
    fn run_step(&self, step: &Step, act: &mut Activations, out: &mut [u8]) {
        let k = self.kernels;
        let tensor = |t: usize| -> &[u8] { &act.slots[self.slot_of[t]][..self.tensor_lens[t]] };
        let sized = "buffers planned from the checked shapes";
        match step {
            Step::Stem {
                shape,
                weights,
                params,
            } => {
                let frame = Frame {
                    data: &act.frame,
                    zero_point: self.input.zero_point,
                };
                k.stem
                    .run(shape, weights, params, frame, &mut act.scratch, out)
                    .expect(sized);
            }
            Step::Pointwise {
                input,
                shape,
                weights,
                params,
            } => {
                k.pointwise
                    .run(shape, weights, params, tensor(*input), out)
                    .expect(sized);
            }
            Step::Depthwise {
                input,
                geometry: g,
                input_zero_point,
                stage,
                weights,
                params,
            } => {
                let packed = Packed::new(g.channels, weights, params).expect(sized);
                let x = &act.slots[self.slot_of[*input]][..self.tensor_lens[*input]];
                k.depthwise
                    .run(
                        g,
                        &packed,
                        *input_zero_point,
                        *stage,
                        x,
                        &mut act.scratch,
                        out,
                    )
                    .expect(sized);
            }
            Step::Add { a, b, params } => {
                k.add.run(params, tensor(*a), tensor(*b), out).expect(sized);
            }
        }
    }
}

/// Derives one layer's integer parameters and packs its weights for `kernels`.
fn prepare_step(
    program: &Program,
    shapes: &[TensorShape],
    layer: &Layer,
    kernels: Kernels,
) -> Result<Step, String> {
    let stage = layer.stage();
    let pw_err = |e: PointwiseError| e.to_string();
    match &layer.op {
        Op::Stem { conv, pads } => {
            let x = shapes[0];
            let shape = StemShape {
                height: x.height,
                width: x.width,
                pads: pads.map(usize::from),
                out_channels: conv.bias.len(),
            };
            let (requant, bias) = fixed_point(program, layer, conv, 27)?;
            let len = kernels.stem.packed_len(&shape).map_err(pw_err)?;
            let (mut weights, mut params) = (vec![0; len.weights], vec![0; len.params]);
            let params_of = pointwise::Layer {
                weights: &conv.weights,
                bias: &bias,
                requant: &requant,
                stage,
            };
            kernels
                .stem
                .pack(&shape, &params_of, &mut weights, &mut params)
                .map_err(pw_err)?;
            Ok(Step::Stem {
                shape,
                weights,
                params,
            })
        }
        Op::Pointwise(conv) => {
            let x = shapes[conv.input as usize];
            let shape = pointwise::Shape {
                pixels: x.pixels(),
                in_channels: x.channels,
                out_channels: conv.bias.len(),
            };
            let (requant, bias) = fixed_point(program, layer, conv, x.channels)?;
            let len = kernels.pointwise.packed_len(&shape).map_err(pw_err)?;
            let (mut weights, mut params) = (vec![0; len.weights], vec![0; len.params]);
            let params_of = pointwise::Layer {
                weights: &conv.weights,
                bias: &bias,
                requant: &requant,
                stage,
            };
            kernels
                .pointwise
                .pack(&shape, &params_of, &mut weights, &mut params)
                .map_err(pw_err)?;
            Ok(Step::Pointwise {
                input: conv.input as usize,
                shape,
                weights,
                params,
            })
        }
        Op::Depthwise { conv, stride, pads } => {
            let x = shapes[conv.input as usize];
            let s = usize::from(*stride);
            let out =
                |size: usize, a: u8, b: u8| (size + usize::from(a) + usize::from(b) - 3) / s + 1;
            let geometry = Geometry {
                channels: x.channels,
                in_height: x.height,
                in_width: x.width,
                stride: s,
                pad_top: usize::from(pads[0]),
                pad_left: usize::from(pads[1]),
                out_height: out(x.height, pads[0], pads[2]),
                out_width: out(x.width, pads[1], pads[3]),
            };
            let c = x.channels;
            geometry
                .check(
                    c * x.pixels(),
                    c * 9,
                    c,
                    c * geometry.out_height * geometry.out_width,
                )
                .map_err(|e| e.to_string())?;
            let (requant, bias) = fixed_point(program, layer, conv, 9)?;
            let channels = conv.bias.len();
            let overflow = || "the packed depthwise parameters overflow".to_string();
            let mut weights = vec![0; Packed::weights_len(channels).ok_or_else(overflow)?];
            let mut params = vec![0; Packed::params_len(channels).ok_or_else(overflow)?];
            depthwise::pack(&conv.weights, &bias, &requant, &mut weights, &mut params)
                .map_err(|e| e.to_string())?;
            Ok(Step::Depthwise {
                input: conv.input as usize,
                geometry,
                input_zero_point: program.quant(conv.input as usize).zero_point,
                stage,
                weights,
                params,
            })
        }
        Op::Add { a, b } => {
            let params = program::add_params(
                program.quant(*a as usize),
                program.quant(*b as usize),
                layer,
            )?;
            Ok(Step::Add {
                a: *a as usize,
                b: *b as usize,
                params,
            })
        }
    }
}

/// A convolution's rescales and its bias with the input's zero point folded in.
fn fixed_point(
    program: &Program,
    layer: &Layer,
    conv: &Conv,
    taps: usize,
) -> Result<(Vec<nap_core::int8::Requant>, Vec<i32>), String> {
    let input = program.quant(conv.input as usize);
    let requant = conv.requants(input, layer.output)?;
    let mut bias = conv.bias.clone();
    fold_zero_point(&mut bias, &conv.weights, taps, input.zero_point).map_err(|e| e.to_string())?;
    Ok((requant, bias))
}

/// Assigns every tensor after the frame a buffer, reusing the buffers of tensors no later
/// layer reads. Returns each tensor's buffer (index 0 unused) and each buffer's length.
fn plan_slots(program: &Program, lens: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let n = lens.len();
    // The last layer that reads each tensor; the pre-pool tensor is read after them all.
    let mut last_read = vec![0; n];
    for (i, layer) in program.layers.iter().enumerate() {
        for t in layer.inputs() {
            last_read[t] = i;
        }
    }
    last_read[n - 1] = usize::MAX;
    let mut slot_of = vec![0; n];
    // Each buffer's length and the last layer that reads what it holds.
    let mut slots: Vec<(usize, usize)> = Vec::new();
    for i in 0..program.layers.len() {
        let t = i + 1;
        // A buffer whose tensor no layer from `i` on reads; the smallest that fits, else the
        // largest free one (grown).
        let free = |s: &&(usize, usize)| s.1 < i;
        let pick = slots
            .iter()
            .enumerate()
            .filter(|(_, s)| free(s) && s.0 >= lens[t])
            .min_by_key(|(_, s)| s.0)
            .or_else(|| {
                slots
                    .iter()
                    .enumerate()
                    .filter(|(_, s)| free(s))
                    .max_by_key(|(_, s)| s.0)
            })
            .map(|(k, _)| k);
        let k = pick.unwrap_or_else(|| {
            slots.push((0, 0));
            slots.len() - 1
        });
        slots[k] = (slots[k].0.max(lens[t]), last_read[t]);
        slot_of[t] = k;
    }
    (slot_of, slots.into_iter().map(|s| s.0).collect())
}
