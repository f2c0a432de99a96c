//! ONNX model surgery for `napctl inspect` and `napctl split`.
//!
//! A classifier ONNX is cut where global average pooling starts: the backbone (input -> pre-pool
//! tensor A) stays an ONNX graph for tract, and the classifier head after the pooling ends in a
//! dense affine map `logits = W * x + b` with `x = mean_hw(A)`, because on the device pooling
//! moves into our own reduction kernel (one pass gives the per-channel max for S_NAP and the sum
//! for the head). A head with more layers keeps them as a small graph from `mean_hw(A)` to `x`.
//!
//! - [`inspect`] lists the graph inputs and outputs and every pooling candidate with its head.
//! - [`split`] produces the pruned backbone and the head for one candidate: its last dense layer,
//!   and the layers before it (a head graph tract runs on the device) when it has more.
//! - [`proto`] builds ONNX protobuf pieces in code.
//!
//! Inside: `graph` indexes a model (producers, consumers, constants, shapes), `tensor` reads
//! constants and attributes, `pooling` finds the global poolings and picks the one to cut at,
//! `head` reads the classifier after a pooling as a dense map, after a head graph if it has one. The graph is read with
//! tract-onnx's prost types ([`tract_onnx::pb`]); tract's own shape inference only fills in
//! tensor ranks and channel counts the file does not state.

mod error;
pub(crate) mod graph;
mod head;
mod inspect;
mod pooling;
pub mod proto;
mod split;
pub(crate) mod tensor;

pub use error::OnnxError;
pub use graph::Dim;
pub use head::{DenseHead, NeckGraph};
pub use inspect::{HeadStatus, ModelInfo, PoolCandidate, TensorInfo, inspect};
pub use pooling::PoolKind;
pub use split::{SplitModel, split};

use std::path::Path;
use tract_onnx::pb::ModelProto;

/// Decodes ONNX bytes and checks that there is a graph with nodes.
pub fn decode(bytes: &[u8]) -> Result<ModelProto, OnnxError> {
    let model = <ModelProto as prost::Message>::decode(bytes).map_err(|e| OnnxError::NotOnnx {
        reason: format!("protobuf decoding failed ({e})"),
    })?;
    graph::check_model(&model)?;
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
