//! ONNX model surgery for `napctl inspect` and `napctl split`.
//!
//! A classifier ONNX is cut where global average pooling starts: the backbone (input -> pre-pool
//! tensor A) stays an ONNX graph for tract, and the classifier head after the pooling becomes a
//! dense affine map `logits = W * mean_hw(A) + b`, because on the device pooling moves into our
//! own reduction kernel (one pass gives the per-channel max for S_NAP and the sum for the head).
//!
//! - [`inspect`] lists the graph inputs and outputs and every pooling candidate with its head.
//! - [`split`] produces the pruned backbone and the dense head for one candidate.
//!
//! The graph is read with tract-onnx's prost types ([`tract_onnx::pb`]); tract's own shape
//! inference only fills in tensor ranks and channel counts the file does not state.

pub(crate) mod graph;
mod head;
mod inspect;
pub mod proto;
mod split;
pub(crate) mod tensor;

pub use inspect::{Dim, HeadStatus, ModelInfo, PoolCandidate, PoolKind, TensorInfo, inspect};
pub use split::{DenseHead, SplitModel, split};

use serde::Serialize;
use std::fmt;
use std::path::{Path, PathBuf};
use tract_onnx::pb::ModelProto;

/// Forms of the classifier head found after global pooling (mirrors the bundle manifest's
/// `HeadForm`, so `napctl` can map one onto the other).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum HeadForm {
    /// Pooling -> 1x1 Conv (-> Squeeze / Reshape / Flatten): TF-slim exports.
    Conv1x1,
    /// Pooling -> Flatten / Reshape -> Gemm: torchvision exports.
    Gemm,
    /// Pooling -> Flatten / Reshape -> MatMul (+ Add).
    MatMulAdd,
}

impl fmt::Display for HeadForm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HeadForm::Conv1x1 => "Conv1x1",
            HeadForm::Gemm => "Gemm",
            HeadForm::MatMulAdd => "MatMulAdd",
        })
    }
}

/// Everything that can go wrong reading or cutting a model; each case names the problem so the
/// user can act on it.
#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    /// The model file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The bytes are not an ONNX model (protobuf decoding failed, or there is no graph / no node).
    #[error("not an ONNX model: {reason}")]
    NotOnnx {
        /// What is wrong.
        reason: String,
    },
    /// No GlobalAveragePool and no ReduceMean over H and W of a rank-4 tensor.
    #[error(
        "no global pooling layer found: looked for GlobalAveragePool and for ReduceMean over axes \
         H and W (2, 3) of a rank-4 NCHW tensor"
    )]
    NoPooling,
    /// Several pooling candidates and no way to tell which one feeds the classifier.
    #[error(
        "found {} global pooling candidates and cannot tell which one feeds the classifier: {}; \
         pass --layer NAME with one of these pre-pool tensor (or pooling node) names",
        candidates.len(),
        candidates.join(", ")
    )]
    AmbiguousPooling {
        /// The candidates, as `pre-pool tensor (pooling node)`.
        candidates: Vec<String>,
    },
    /// `--layer` names neither a pre-pool tensor nor a pooling node of any candidate.
    #[error(
        "--layer {layer:?} names no pooling candidate (neither a pre-pool tensor nor a pooling \
         node); candidates: {}",
        candidates.join(", ")
    )]
    UnknownLayer {
        /// The name given.
        layer: String,
        /// The candidates, as `pre-pool tensor (pooling node)`.
        candidates: Vec<String>,
    },
    /// What follows the pooling is not one of the head forms we turn into a dense map.
    #[error("unsupported classifier head after pooling node {pool:?}: {reason}")]
    UnsupportedHead {
        /// The pooling node.
        pool: String,
        /// What follows it and why that is not supported.
        reason: String,
    },
    /// A head weight or bias has a shape that does not fit the head.
    #[error("head tensor {tensor:?} has shape {found:?}, expected {expected}")]
    HeadShape {
        /// The tensor.
        tensor: String,
        /// What was expected, in words.
        expected: String,
        /// Its shape.
        found: Vec<i64>,
    },
    /// A head weight or bias is not float32 (or is not a constant we can read).
    #[error("head tensor {tensor:?}: {problem}")]
    HeadData {
        /// The tensor.
        tensor: String,
        /// What is wrong (element type, external storage, missing data).
        problem: String,
    },
    /// The backbone input is not a rank-4 NCHW image tensor.
    #[error("input {input:?} has rank {rank} (shape {shape}), expected rank 4 (NCHW image)")]
    InputRank {
        /// The input.
        input: String,
        /// Its rank.
        rank: usize,
        /// Its shape, for the message.
        shape: String,
    },
    /// The tensor a pooling node averages is not rank 4 (NCHW).
    #[error("pre-pool tensor {tensor:?} has shape {shape}, expected rank 4 (NCHW)")]
    PrePoolRank {
        /// The tensor.
        tensor: String,
        /// Its shape, for the message.
        shape: String,
    },
    /// The backbone does not depend on exactly one graph input.
    #[error(
        "the backbone must depend on exactly one graph input; it depends on {}",
        if inputs.is_empty() { "none".to_string() } else { inputs.join(", ") }
    )]
    InputCount {
        /// The graph inputs the pre-pool tensor depends on.
        inputs: Vec<String>,
    },
}

/// Decodes ONNX bytes and checks that there is a graph with nodes.
pub fn decode(bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    let model = <ModelProto as prost::Message>::decode(bytes).map_err(|e| OnnxError::NotOnnx {
        reason: format!("protobuf decoding failed ({e})"),
    })?;
    check_model(&model)?;
    Ok(model)
}

/// Reads and decodes an ONNX file (see [`decode`]).
pub fn read_model(path: impl AsRef<Path>) -> Result<ModelProto, OnnxError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode(&bytes)
}

/// The model's graph, or [`OnnxError::NotOnnx`] when it has none or it has no node.
pub(crate) fn check_model(model: &ModelProto) -> Result<&tract_onnx::pb::GraphProto, OnnxError> {
    let graph = model.graph.as_ref().ok_or_else(|| OnnxError::NotOnnx {
        reason: "the model has no graph".into(),
    })?;
    if graph.node.is_empty() {
        return Err(OnnxError::NotOnnx {
            reason: "the graph has no nodes".into(),
        });
    }
    Ok(graph)
}
