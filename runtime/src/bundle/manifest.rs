//! What a bundle says about its model: everything the device needs besides the weights.

use nap_core::int8::Quant;
use nap_core::reduce::Layout;
use nap_core::score::{Method, Params};
use serde::{Deserialize, Serialize};

/// The bundle's description of its backbone, input, pre-pool tensor, head and scorer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Where the model came from (the file name given to `napctl split`), for humans.
    pub source: String,
    /// The backbone graph: input -> pre-pool tensor.
    pub backbone: BackboneSpec,
    /// How a frame becomes the backbone's input tensor.
    pub input: InputSpec,
    /// The tensor the backbone ends with, where global pooling used to start.
    pub pre_pool: PrePoolSpec,
    /// The classifier head that follows global pooling.
    pub head: HeadSpec,
    /// Which score decides, with its parameters and threshold.
    pub scorer: ScorerConfig,
    /// DICE's ID statistics, from `napctl calibrate`; `None` before (DICE and NAP-D cannot
    /// score then).
    pub dice: Option<DiceSpec>,
    /// The layers between pooling and the head's last dense layer, for a classifier that has
    /// more than one (MobileNetV3, ConvNeXt); `None` when the dense layer follows pooling.
    pub neck: Option<NeckSpec>,
    /// ViM's principal subspace and scale, from `napctl calibrate` when ViM decides; `None`
    /// otherwise (megabytes that other methods do not need).
    pub vim: Option<VimSpec>,
}

impl Manifest {
    /// The head in a line, for `napctl split` and `inspect`: its head graph's ops when it has
    /// one, then the dense layer.
    pub fn head_summary(&self) -> String {
        let h = &self.head;
        let dense = format!("head {:?} {} -> {} classes", h.form, h.features, h.classes);
        match &self.neck {
            None => dense,
            Some(neck) => format!(
                "head graph {} ({} -> {}, run by tract), then {dense}",
                neck.ops.join(" -> "),
                self.pre_pool.channels,
                h.features
            ),
        }
    }
}

/// The head graph before the last dense layer: an ONNX graph the bundle stores after the dense
/// rows, which tract runs on the pooled feature to make the dense layer's input.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NeckSpec {
    /// The graph's input: the pooling's output in the source model.
    pub input_name: String,
    /// Whether that input keeps the pooled dims, `[1, C, 1, 1]`, rather than `[1, C]`.
    pub keeps_dims: bool,
    /// The graph's output: the last dense layer's input, [`HeadSpec::features`] values.
    pub output_name: String,
    /// Its nodes' op types in order (`Gemm`, `HardSwish`, ...), for `napctl inspect`.
    pub ops: Vec<String>,
}

/// What DICE sparsifies the head by: the head's weights are masked from these when the bundle
/// loads, so the file holds one small vector instead of a second head.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiceSpec {
    /// The ID frames' mean pooled feature, one value per head feature.
    pub mean: Vec<f32>,
    /// Share of the head's weights dropped, in percent, in [0, 100).
    pub sparsity: f32,
}

impl DiceSpec {
    /// `weights` (a dense layer's, row-major) with DICE's mask applied: what the device's DICE
    /// head computes with.
    pub fn sparsified(&self, weights: &[f32]) -> Vec<f32> {
        let mut sparse = weights.to_vec();
        let mut scratch = vec![0.0; sparse.len()];
        nap_core::score::dice::sparsify(&mut sparse, &self.mean, self.sparsity, &mut scratch);
        sparse
    }
}

/// ViM's statistics of the ID frames' dense-layer inputs (the head's last dense layer, after the
/// head graph if any), stored as the scorer reads them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VimSpec {
    /// `-pinv(W) b`, where the dense layer's logits are all zero; one value per head feature.
    pub origin: Vec<f32>,
    /// The principal subspace, orthonormal rows `[dims][features]`, by decreasing variance.
    pub basis: Vec<f32>,
    /// Scales the residual's norm to the ID logits: their mean largest logit over their mean
    /// residual norm.
    pub alpha: f32,
}

impl VimSpec {
    /// The principal subspace's dimension `D`.
    pub fn dims(&self) -> usize {
        self.basis.len() / self.origin.len().max(1)
    }

    /// The projection's constant term `-B u` that [`nap_core::score::vim::Vim`] borrows.
    pub fn offset(&self) -> Vec<f32> {
        let mut offset = vec![0.0; self.dims()];
        nap_core::score::vim::offset(&self.basis, &self.origin, &mut offset);
        offset
    }

    /// The scorer's view, given [`VimSpec::offset`]'s output.
    pub fn view<'a>(&'a self, offset: &'a [f32]) -> nap_core::score::vim::Vim<'a> {
        nap_core::score::vim::Vim::new(&self.origin, &self.basis, offset, self.alpha)
            .expect("bundle validation checked ViM's lengths")
    }
}

/// The backbone model stored in the bundle.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BackboneSpec {
    /// Encoding of the model bytes.
    pub format: ModelFormat,
    /// Numeric precision of the weights and arithmetic.
    pub precision: Precision,
    /// Name of the input tensor.
    pub input_name: String,
    /// Name of the output (pre-pool) tensor.
    pub output_name: String,
}

/// Encoding of the backbone model bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModelFormat {
    /// An ONNX `ModelProto`.
    Onnx,
}

/// Numeric precision of a backbone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Precision {
    /// 32-bit float throughout.
    F32,
    /// int8 weights, dequantized when the backbone loads: a small file at float speed.
    Int8Weights,
    /// int8 weights and u8 activations in the pointwise convolutions, which hold nearly all of
    /// the multiply-adds; the pre-pool tensor comes out as u8 codes.
    Int8,
    /// f16 weights, widened when the backbone loads: half the size at float speed.
    F16Weights,
}

impl Precision {
    /// Whether `napctl quantize` already made this backbone smaller than float.
    pub fn is_quantized(self) -> bool {
        self != Precision::F32
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Int8Weights => "int8-weights",
            Precision::F16Weights => "f16-weights",
            Precision::Int8 => "int8",
        })
    }
}

/// Order of the colour channels the model expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ChannelOrder {
    /// Red, green, blue.
    Rgb,
    /// Blue, green, red (Caffe-style exports).
    Bgr,
}

/// How a decoded frame becomes the backbone input: central square crop, antialiased bilinear
/// resize, then `(pixel - mean) / std` per channel with pixels in 0..=255, laid out NCHW.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// Side of the square input, in pixels.
    pub size: u32,
    /// Side of the central crop as a fraction of the frame's shorter side (0.875 for the
    /// Inception-style evaluation, 1.0 for none).
    pub crop_fraction: f32,
    /// Channel order of the input tensor.
    pub channel_order: ChannelOrder,
    /// Per-channel mean, in pixel units (0..=255), in `channel_order`.
    pub mean: [f32; 3],
    /// Per-channel standard deviation, in pixel units, in `channel_order`.
    pub std: [f32; 3],
}

impl InputSpec {
    /// TensorFlow-slim models: `(pixel - 127.5) / 127.5`, RGB, 87.5% central crop.
    pub const TF: InputSpec = InputSpec {
        size: 224,
        crop_fraction: 0.875,
        channel_order: ChannelOrder::Rgb,
        mean: [127.5; 3],
        std: [127.5; 3],
    };

    /// torchvision models: ImageNet mean and std on `pixel / 255`, RGB, 87.5% central crop
    /// (resize 256, crop 224).
    pub const TORCH: InputSpec = InputSpec {
        size: 224,
        crop_fraction: 0.875,
        channel_order: ChannelOrder::Rgb,
        mean: [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0],
        std: [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0],
    };
}

/// The pre-pool activation A the backbone produces for one frame.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrePoolSpec {
    /// Channels C.
    pub channels: u32,
    /// Height H.
    pub height: u32,
    /// Width W.
    pub width: u32,
    /// Memory order.
    pub layout: Layout,
    /// How values are stored.
    pub storage: ActivationStorage,
}

/// How pre-pool values are stored.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum ActivationStorage {
    /// 32-bit floats.
    F32,
    /// u8 codes with their real-value mapping.
    U8(Quant),
}

impl ActivationStorage {
    /// `f32` or `u8`, for messages.
    pub fn name(self) -> &'static str {
        match self {
            ActivationStorage::F32 => "f32",
            ActivationStorage::U8(_) => "u8",
        }
    }
}

/// The head's last dense layer `logits = W * x + b`, whatever form it had in the source model;
/// `x` is the pooled feature, or the output of the manifest's [`NeckSpec`] graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeadSpec {
    /// Number of logits K.
    pub classes: u32,
    /// Length of the dense layer's input: the pooled feature's C, or the neck's output.
    pub features: u32,
    /// The form it had in the source graph, for `napctl inspect`.
    pub form: HeadForm,
    /// How the weights are stored in the file (the device always computes in f32).
    pub storage: HeadStorage,
}

/// How the head's weight matrix is stored in the bundle file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadStorage {
    /// f32 values.
    F32,
    /// Symmetric int8 codes with one f32 scale per class row: a quarter of the size.
    I8,
}

/// Forms of the classifier's last dense layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeadForm {
    /// GAP -> 1x1 Conv (-> Squeeze / Reshape / Flatten): TF-slim exports.
    Conv1x1,
    /// GAP -> Flatten / Reshape -> Gemm: torchvision exports.
    Gemm,
    /// GAP -> Flatten / Reshape -> MatMul + Add.
    MatMulAdd,
}

/// Which method decides a frame's verdict, its parameters, and the threshold.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScorerConfig {
    /// The deciding method.
    pub method: Method,
    /// Parameters of every method.
    pub params: Params,
    /// Frames scoring below it are out of distribution; `None` until calibrated.
    pub threshold: Option<f32>,
    /// The share of in-distribution frames the calibrated threshold keeps (`napctl calibrate
    /// --tpr`), so a familiar scene is flagged at a rate of 1 - tpr (napd's drift alarm tests
    /// that); `None` when the threshold was not calibrated.
    pub tpr: Option<f32>,
}

impl Default for ScorerConfig {
    /// NAP-E with the paper's defaults, uncalibrated.
    fn default() -> Self {
        ScorerConfig {
            method: Method::NapE,
            params: Params::default(),
            threshold: None,
            tpr: None,
        }
    }
}
