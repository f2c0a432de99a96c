//! The int8 backbone run by nap-core's integer kernels: the frame is quantized once, every
//! layer reads and writes u8 codes, and the pre-pool tensor comes out as the u8 NHWC codes the
//! reductions read. No float between layers, no tract.
//!
//! [`program`] is the backbone as data (what the bundle stores); [`IntegerBackbone`] is it
//! prepared for one CPU: every layer's fixed-point parameters derived and its weights packed
//! for the kernel path this CPU runs, and the activation buffers planned so tensors that are no
//! longer read share memory. An expansion whose only reader is the depthwise convolution after
//! it runs fused with it, row by row, where its rows are wide enough to pay
//! ([`FUSE_MIN_WIDTH`]): the block's largest tensor then never exists whole.

pub mod program;

pub use program::{Conv, Layer, Op, Program, ProgramError, TensorShape};

use nap_core::depthwise::Geometry;
use nap_core::int8::add::{Add, AddParams};
use nap_core::int8::depthwise::{self, Checked, Depthwise, Packed};
use nap_core::int8::expand_depthwise::{ExpandDepthwise, Expansion};
use nap_core::int8::pointwise::{self, Pointwise, PointwiseError};
use nap_core::int8::stem::{Frame, SCRATCH_LEN, Stem, StemShape};
use nap_core::int8::{OutputStage, Quant, fold_zero_point, stride};
use nap_core::isa::Isa;

/// Narrowest input rows an expansion runs fused with its depthwise convolution at: each row
/// passes over all the expansion's weights once, which on narrower rows costs more than writing
/// and reading the expanded tensor whole (`cargo bench -p nap-core --bench
/// int8_expand_depthwise`: 3-6% faster fused at 56 and 112 pixels, 2-6% slower at 14 and 7;
/// BENCHMARKS.md).
pub const FUSE_MIN_WIDTH: usize = 28;

/// How a program is prepared.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Every kernel on this path where it has one, and on its scalar reference otherwise
    /// (`Isa::Scalar`: the reference throughout); `None`: the fastest paths this CPU runs.
    pub isa: Option<Isa>,
    /// Run an expansion fused with the depthwise convolution it feeds where its rows are at
    /// least this many pixels wide (default [`FUSE_MIN_WIDTH`]); `None`: every layer writes its
    /// tensor.
    pub fuse_min_width: Option<usize>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            isa: None,
            fuse_min_width: Some(FUSE_MIN_WIDTH),
        }
    }
}

/// The integer backbone, ready to run: shared by every worker, immutable.
pub struct IntegerBackbone {
    size: usize,
    input: Quant,
    steps: Vec<Step>,
    /// The tensor each step writes.
    step_outputs: Vec<usize>,
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

/// A pointwise layer with everything its kernel needs.
struct PointwiseStep {
    input: usize,
    shape: pointwise::Shape,
    weights: Vec<i8>,
    params: Vec<i32>,
}

/// A depthwise layer with everything its kernel needs.
struct DepthwiseStep {
    input: usize,
    geometry: Geometry,
    input_zero_point: u8,
    stage: OutputStage,
    weights: Vec<i8>,
    params: Vec<i32>,
    /// `weights` and `params` passed `Packed`'s checks when they were packed.
    checked: Checked,
}

impl DepthwiseStep {
    /// The kernels' view of the packed layer.
    fn packed(&self) -> Packed<'_> {
        Packed::again(self.checked, &self.weights, &self.params)
            .expect("the lengths the layer was packed with")
    }
}

/// One layer, or an expansion and its depthwise convolution, with everything the kernels need.
enum Step {
    Stem {
        shape: StemShape,
        weights: Vec<i8>,
        params: Vec<i32>,
    },
    Pointwise(PointwiseStep),
    Depthwise(DepthwiseStep),
    /// The depthwise step's input is the expansion's output, which is never written.
    ExpandDepthwise(PointwiseStep, DepthwiseStep),
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
        Self::with_options(program, Options::default())
    }

    /// Prepares `program` with every kernel on path `isa` where it has one, and on its
    /// scalar reference otherwise (`Isa::Scalar`: the reference throughout).
    pub fn with_isa(program: &Program, isa: Isa) -> Result<Self, ProgramError> {
        let options = Options {
            isa: Some(isa),
            ..Options::default()
        };
        Self::with_options(program, options)
    }

    /// Prepares `program` as `options` say.
    pub fn with_options(program: &Program, options: Options) -> Result<Self, ProgramError> {
        let Some(isa) = options.isa else {
            let kernels = Kernels {
                stem: Stem::new(),
                pointwise: Pointwise::new(),
                depthwise: Depthwise::new(),
                add: Add::new(),
            };
            return Self::prepare(program, kernels, options.fuse_min_width);
        };
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
            options.fuse_min_width,
        )
    }

    fn prepare(
        program: &Program,
        kernels: Kernels,
        fuse_min_width: Option<usize>,
    ) -> Result<Self, ProgramError> {
        let shapes = program.shapes()?;
        let mut readers = vec![0usize; shapes.len()];
        for layer in &program.layers {
            for t in layer.inputs() {
                readers[t] += 1;
            }
        }
        let mut steps: Vec<Step> = Vec::with_capacity(program.layers.len());
        // Each step's first layer and the tensor it writes.
        let mut writes: Vec<(usize, usize)> = Vec::with_capacity(program.layers.len());
        let mut scratch_len = SCRATCH_LEN;
        for (i, layer) in program.layers.iter().enumerate() {
            let step = prepare_step(program, &shapes, layer, kernels)
                .map_err(|reason| ProgramError::Layer { layer: i, reason })?;
            if let Step::Depthwise(d) = &step {
                let need =
                    depthwise::scratch_len(&d.geometry).ok_or_else(|| ProgramError::Layer {
                        layer: i,
                        reason: "the depthwise scratch overflows".into(),
                    })?;
                scratch_len = scratch_len.max(need);
            }
            // The expansion before this depthwise convolution, when only it reads that tensor.
            let fusable = |last: &Step| match (last, &step) {
                (Step::Pointwise(p), Step::Depthwise(d)) => {
                    d.input == i
                        && readers[i] == 1
                        && fuse_min_width.is_some_and(|w| d.geometry.in_width >= w)
                        && p.shape.out_channels == d.geometry.channels
                }
                _ => false,
            };
            if steps.last().is_some_and(fusable) {
                let Some(Step::Pointwise(p)) = steps.pop() else {
                    unreachable!("fusable checked the last step")
                };
                let Step::Depthwise(d) = step else {
                    unreachable!("fusable checked this step")
                };
                steps.push(Step::ExpandDepthwise(p, d));
                writes.last_mut().expect("a step per write").1 = i + 1;
            } else {
                steps.push(step);
                writes.push((i, i + 1));
            }
        }
        let tensor_lens: Vec<usize> = shapes
            .iter()
            .map(|s| s.pixels() * stride(s.channels))
            .collect();
        let (slot_of, slot_lens) = plan_slots(program, &tensor_lens, &writes);
        Ok(IntegerBackbone {
            size: program.size as usize,
            input: program.input,
            steps,
            step_outputs: writes.iter().map(|w| w.1).collect(),
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

    /// How many expansions run fused with their depthwise convolution.
    pub fn fused_expansions(&self) -> usize {
        let fused = |s: &&Step| matches!(s, Step::ExpandDepthwise(..));
        self.steps.iter().filter(fused).count()
    }

    /// Bytes of activation buffers one worker holds ([`activations`](Self::activations)).
    pub fn activation_bytes(&self) -> usize {
        3 * self.size * self.size + self.slot_lens.iter().sum::<usize>() + self.scratch_len
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
        let (r, g, b) = (
            &input[..plane],
            &input[plane..2 * plane],
            &input[2 * plane..],
        );
        let quant = self.input;
        for (pixel, ((&r, &g), &b)) in act.frame.chunks_exact_mut(3).zip(r.iter().zip(g).zip(b)) {
            for (code, v) in pixel.iter_mut().zip([r, g, b]) {
                *code = quant.quantize(v);
            }
        }
        for (step, &t) in self.steps.iter().zip(&self.step_outputs) {
            let out_slot = self.slot_of[t];
            let mut out = std::mem::take(&mut act.slots[out_slot]);
            self.run_step(step, act, &mut out[..self.tensor_lens[t]]);
            act.slots[out_slot] = out;
        }
        let last = &act.slots[self.slot_of[self.tensor_lens.len() - 1]];
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
            Step::Pointwise(p) => {
                k.pointwise
                    .run(&p.shape, &p.weights, &p.params, tensor(p.input), out)
                    .expect(sized);
            }
            Step::Depthwise(d) => {
                let g = &d.geometry;
                let packed = d.packed();
                let x = &act.slots[self.slot_of[d.input]][..self.tensor_lens[d.input]];
                k.depthwise
                    .run(
                        g,
                        &packed,
                        d.input_zero_point,
                        d.stage,
                        x,
                        &mut act.scratch,
                        out,
                    )
                    .expect(sized);
            }
            Step::ExpandDepthwise(p, d) => {
                let g = &d.geometry;
                let packed = d.packed();
                let expansion = Expansion {
                    shape: p.shape,
                    weights: &p.weights,
                    params: &p.params,
                };
                let x = &act.slots[self.slot_of[p.input]][..self.tensor_lens[p.input]];
                let fused = ExpandDepthwise {
                    pointwise: k.pointwise,
                    depthwise: k.depthwise,
                };
                fused
                    .run(&expansion, g, &packed, d.stage, x, &mut act.scratch, out)
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
            Ok(Step::Pointwise(PointwiseStep {
                input: conv.input as usize,
                shape,
                weights,
                params,
            }))
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
            let checked =
                depthwise::pack(&conv.weights, &bias, &requant, &mut weights, &mut params)
                    .map_err(|e| e.to_string())?
                    .checked();
            Ok(Step::Depthwise(DepthwiseStep {
                input: conv.input as usize,
                geometry,
                input_zero_point: program.quant(conv.input as usize).zero_point,
                stage,
                weights,
                params,
                checked,
            }))
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

/// Assigns every tensor a step writes (`writes`: each step's first layer and its tensor) a
/// buffer, reusing the buffers of tensors no later layer reads. Returns each tensor's buffer
/// (index 0 and tensors no step writes unused) and each buffer's length.
fn plan_slots(
    program: &Program,
    lens: &[usize],
    writes: &[(usize, usize)],
) -> (Vec<usize>, Vec<usize>) {
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
    for &(i, t) in writes {
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
