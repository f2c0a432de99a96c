//! The integer backbone as data: the layers `napctl quantize` decided, in the order they run,
//! with their codes, scales and zero points. The fixed-point parameters the kernels need
//! ([`Requant`], [`AddParams`]) are derived from these when the program loads, the way TFLite
//! derives them from a model's scales, so the bundle stores only what quantization chose.

use nap_core::int8::add::AddParams;
use nap_core::int8::{OutputStage, Quant, Requant};
use serde::{Deserialize, Serialize};

/// An int8 backbone: the frame quantized once, then integer layers to the pre-pool tensor.
///
/// Tensors are numbered: 0 is the frame's codes (`[size][size][3]`), and layer `i` writes
/// tensor `i + 1`. The last layer's tensor is the pre-pool activation, NHWC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Program {
    /// Side of the square input frame, as the manifest's input size.
    pub size: u32,
    /// How the preprocessed frame's values become codes.
    pub input: Quant,
    /// The layers, in the order they run.
    pub layers: Vec<Layer>,
}

/// One integer layer and the codes of the tensor it writes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Layer {
    /// What the layer computes.
    pub op: Op,
    /// The output tensor's codes.
    pub output: Quant,
    /// Lowest and highest output code: a fused ReLU6 clamps here, `[0, 255]` is no clamp.
    pub clamp: [u8; 2],
}

/// The operations the integer kernels run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// 3x3 convolution with stride 2 over the frame (tensor 0); ONNX's `pads` `[t, l, b, r]`.
    Stem {
        /// The convolution's weights `[M][3][3][3]` and bias.
        conv: Conv,
        /// Padding top, left, bottom, right, each at most 2.
        pads: [u8; 4],
    },
    /// 1x1 convolution, stride 1, no padding.
    Pointwise(Conv),
    /// 3x3 depthwise convolution (one group per channel).
    Depthwise {
        /// The weights `[C][3][3]` and bias.
        conv: Conv,
        /// 1 or 2.
        stride: u8,
        /// Padding top, left, bottom, right, each at most 2.
        pads: [u8; 4],
    },
    /// Element-wise sum of two tensors of one shape (a residual connection).
    Add {
        /// The first tensor.
        a: u32,
        /// The second tensor.
        b: u32,
    },
}

/// A convolution's quantized parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conv {
    /// The tensor it reads.
    pub input: u32,
    /// Symmetric codes in `[-127, 127]`, ONNX's weight order, one row per output channel.
    pub weights: Vec<i8>,
    /// One scale per output channel: weight = scale * code.
    pub weight_scales: Vec<f32>,
    /// One bias per output channel, in units of `input scale * weight scale`.
    pub bias: Vec<i32>,
}

/// Height, width and channels of one tensor of a program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TensorShape {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Channels (the frame's 3, or a layer's outputs).
    pub channels: usize,
}

impl TensorShape {
    /// Pixels of the plane.
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }
}

/// Why a program was refused. Bundles are untrusted: each check names the layer it failed.
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum ProgramError {
    /// The program as a whole is unusable.
    #[error("integer backbone: {0}")]
    Program(String),
    /// One layer is inconsistent.
    #[error("integer backbone, layer {layer}: {reason}")]
    Layer {
        /// Index of the layer.
        layer: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// The largest frame side a program may declare.
pub const MAX_SIZE: u32 = 4096;
/// The most channels a tensor may have (the pointwise kernel's limit).
pub const MAX_CHANNELS: usize = nap_core::int8::pointwise::MAX_CHANNELS;

impl Program {
    /// Checks every layer against the tensors before it and returns each tensor's shape
    /// (tensor 0, the frame, first).
    pub fn shapes(&self) -> Result<Vec<TensorShape>, ProgramError> {
        if self.size == 0 || self.size > MAX_SIZE {
            return Err(ProgramError::Program(format!(
                "frame side {} outside 1..={MAX_SIZE}",
                self.size
            )));
        }
        if !valid_quant(self.input) {
            return Err(ProgramError::Program(format!(
                "the frame's scale {} is not a positive finite number",
                self.input.scale
            )));
        }
        if self.layers.is_empty() {
            return Err(ProgramError::Program("no layers".into()));
        }
        let side = self.size as usize;
        let mut shapes = vec![TensorShape {
            height: side,
            width: side,
            channels: 3,
        }];
        for (i, layer) in self.layers.iter().enumerate() {
            let shape = layer_shape(layer, &shapes)
                .map_err(|reason| ProgramError::Layer { layer: i, reason })?;
            shapes.push(shape);
        }
        Ok(shapes)
    }

    /// The quantization of tensor `t` (0: the frame).
    pub fn quant(&self, t: usize) -> Quant {
        match t {
            0 => self.input,
            _ => self.layers[t - 1].output,
        }
    }

    /// The pre-pool tensor's codes: the last layer's output.
    pub fn output(&self) -> Quant {
        self.quant(self.layers.len())
    }
}

impl Layer {
    /// The output stage: the output's zero point and clamp.
    pub fn stage(&self) -> OutputStage {
        OutputStage {
            zero_point: self.output.zero_point,
            min: self.clamp[0],
            max: self.clamp[1],
        }
    }

    /// The tensors this layer reads.
    pub fn inputs(&self) -> Vec<usize> {
        match &self.op {
            Op::Stem { conv, .. } | Op::Pointwise(conv) | Op::Depthwise { conv, .. } => {
                vec![conv.input as usize]
            }
            Op::Add { a, b } => vec![*a as usize, *b as usize],
        }
    }
}

impl Conv {
    /// Each output channel's rescale from accumulator to output codes,
    /// `input scale * weight scale / output scale`.
    pub fn requants(&self, input: Quant, output: Quant) -> Result<Vec<Requant>, String> {
        self.weight_scales
            .iter()
            .enumerate()
            .map(|(m, &s)| {
                let scale = f64::from(input.scale) * f64::from(s) / f64::from(output.scale);
                Requant::from_scale(scale)
                    .ok_or_else(|| format!("output channel {m}: rescale {scale} is out of range"))
            })
            .collect()
    }
}

/// The parameters of an add from its tensors' codes.
pub fn add_params(a: Quant, b: Quant, layer: &Layer) -> Result<AddParams, String> {
    AddParams::new(a, b, layer.output, layer.stage()).map_err(|e| e.to_string())
}

fn valid_quant(q: Quant) -> bool {
    q.scale.is_finite() && q.scale > 0.0
}

/// The shape `layer` writes, after checking it against the tensors before it.
fn layer_shape(layer: &Layer, shapes: &[TensorShape]) -> Result<TensorShape, String> {
    if !valid_quant(layer.output) {
        return Err(format!(
            "output scale {} is not a positive finite number",
            layer.output.scale
        ));
    }
    let [lo, hi] = layer.clamp;
    if lo > hi {
        return Err(format!("clamp [{lo}, {hi}] is reversed"));
    }
    for t in layer.inputs() {
        if t >= shapes.len() {
            return Err(format!("reads tensor {t}, which is not written before it"));
        }
        let is_stem = matches!(layer.op, Op::Stem { .. });
        if (t == 0) != is_stem {
            return Err(if is_stem {
                "the stem must read the frame (tensor 0)".into()
            } else {
                "only the stem reads the frame".into()
            });
        }
    }
    let input = |t: u32| shapes[t as usize];
    let shape = match &layer.op {
        Op::Stem { conv, pads } => {
            let x = input(conv.input);
            let (height, width) = (
                conv_out(x.height, pads[0], pads[2], 2)?,
                conv_out(x.width, pads[1], pads[3], 2)?,
            );
            TensorShape {
                height,
                width,
                channels: check_conv(conv, 27)?,
            }
        }
        Op::Pointwise(conv) => {
            let x = input(conv.input);
            TensorShape {
                channels: check_conv(conv, x.channels)?,
                ..x
            }
        }
        Op::Depthwise { conv, stride, pads } => {
            let x = input(conv.input);
            if !matches!(stride, 1 | 2) {
                return Err(format!("depthwise stride {stride}, expected 1 or 2"));
            }
            let channels = check_conv(conv, 9)?;
            if channels != x.channels {
                return Err(format!(
                    "depthwise over {} channels, its input has {}",
                    channels, x.channels
                ));
            }
            let s = usize::from(*stride);
            TensorShape {
                height: conv_out(x.height, pads[0], pads[2], s)?,
                width: conv_out(x.width, pads[1], pads[3], s)?,
                channels,
            }
        }
        Op::Add { a, b } => {
            let (a, b) = (input(*a), input(*b));
            if a != b {
                return Err(format!("adds tensors of shapes {a:?} and {b:?}"));
            }
            a
        }
    };
    Ok(shape)
}

/// Output channels of `conv` with `taps` weights each, after checking its arrays.
fn check_conv(conv: &Conv, taps: usize) -> Result<usize, String> {
    let m = conv.bias.len();
    if m == 0 || m > MAX_CHANNELS {
        return Err(format!("{m} output channels, expected 1..={MAX_CHANNELS}"));
    }
    if Some(conv.weights.len()) != m.checked_mul(taps) {
        return Err(format!(
            "{} weights for {m} output channels of {taps} taps",
            conv.weights.len()
        ));
    }
    if conv.weight_scales.len() != m {
        return Err(format!(
            "{} weight scales for {m} output channels",
            conv.weight_scales.len()
        ));
    }
    if let Some(s) = conv
        .weight_scales
        .iter()
        .find(|s| !(s.is_finite() && **s > 0.0))
    {
        return Err(format!("weight scale {s} is not a positive finite number"));
    }
    if conv.weights.contains(&i8::MIN) {
        return Err("a weight code of -128 (codes are symmetric, -127..=127)".into());
    }
    Ok(m)
}

/// Output size of a 3x3 window along one axis.
fn conv_out(size: usize, before: u8, after: u8, stride: usize) -> Result<usize, String> {
    if before > 2 || after > 2 {
        return Err(format!("padding {before}/{after}, at most 2"));
    }
    let padded = size + usize::from(before) + usize::from(after);
    padded
        .checked_sub(3)
        .map(|d| d / stride + 1)
        .ok_or_else(|| format!("a 3x3 window does not fit {size} padded by {before}/{after}"))
}
