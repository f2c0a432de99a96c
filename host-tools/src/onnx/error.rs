//! What can go wrong reading or cutting a classifier ONNX, each case named so the user can act.

use std::path::PathBuf;

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
    /// A node of the head is an op tract cannot run.
    #[error(
        "head node {node:?} is {op}{}, an op tract cannot run; the layers after the pooling must be \
         ONNX ops tract implements (Gemm, MatMul, Conv, activations, LayerNormalization, ...)",
        if domain.is_empty() { String::new() } else { format!(" of domain {domain:?}") }
    )]
    HeadOp {
        /// The node.
        node: String,
        /// Its op type.
        op: String,
        /// Its domain (empty: the standard one).
        domain: String,
    },
    /// The pooled feature is flattened to something other than `[N, C]`.
    #[error(
        "{op} node {node:?} makes the pooled feature {}, expected [N, {}] (one value per channel)",
        super::graph::shape_string(Some(shape)),
        channels.map_or_else(|| "C".to_string(), |c| c.to_string())
    )]
    PooledShape {
        /// The node.
        node: String,
        /// Its op type.
        op: String,
        /// The shape it gives.
        shape: Vec<super::graph::Dim>,
        /// The pre-pool channels, when known.
        channels: Option<usize>,
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
