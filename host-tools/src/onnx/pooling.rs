//! Where a classifier can be cut: every global average pooling of the main graph (with the head
//! that follows it), and the choice of the one to cut at.

use super::error::OnnxError;
use super::graph::{Dim, Graph, shape_string};
use super::head::{self, DenseHead};
use super::tensor::{attr, attr_i, attr_ints, attr_s, i64_values};
use serde::Serialize;
use std::fmt;
use tract_onnx::pb::NodeProto;

/// How a candidate pools globally.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum PoolKind {
    /// `GlobalAveragePool`.
    GlobalAveragePool,
    /// `ReduceMean` over axes 2 and 3 of a rank-4 tensor.
    ReduceMean {
        /// Whether the reduced axes are kept (output `[N, C, 1, 1]` rather than `[N, C]`).
        keepdims: bool,
    },
    /// `AveragePool` whose window covers the whole (fixed) H x W without padding.
    AveragePool,
}

impl fmt::Display for PoolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PoolKind::GlobalAveragePool => f.write_str("GlobalAveragePool"),
            PoolKind::ReduceMean { keepdims } => write!(f, "ReduceMean(H,W, keepdims={keepdims})"),
            PoolKind::AveragePool => f.write_str("AveragePool(full window)"),
        }
    }
}

/// A global pooling node of the graph and what follows it.
pub(crate) struct Candidate {
    /// The pooling node.
    pub pool: usize,
    /// How it pools.
    pub kind: PoolKind,
    /// Its input, the pre-pool tensor.
    pub pre_pool: String,
    /// The classifier head after it, or why there is none we can read.
    pub head: Result<DenseHead, OnnxError>,
}

impl Candidate {
    /// `pre-pool tensor (Op node)`, for error messages.
    pub fn describe(&self, g: &Graph) -> String {
        format!(
            "{:?} ({} {:?})",
            self.pre_pool,
            self.kind,
            g.label(self.pool)
        )
    }
}

/// Every global pooling node of the main graph, in graph order, with its head analysed.
pub(crate) fn find_candidates(g: &Graph) -> Vec<Candidate> {
    let mut found = vec![];
    for (i, node) in g.g.node.iter().enumerate() {
        if !node.domain.is_empty() && node.domain != "ai.onnx" {
            continue;
        }
        let Some(x) = node.input.first().filter(|x| !x.is_empty()) else {
            continue;
        };
        let shape = g.shape(x);
        let rank = shape.map(<[Dim]>::len);
        let (kind, pooled_rank) = match node.op_type.as_str() {
            "GlobalAveragePool" => (PoolKind::GlobalAveragePool, 4),
            "ReduceMean" if rank == Some(4) && reduces_hw(g, node) => {
                let keepdims = attr_i(node, "keepdims", 1) != 0;
                (
                    PoolKind::ReduceMean { keepdims },
                    if keepdims { 4 } else { 2 },
                )
            }
            "AveragePool" if shape.is_some_and(|s| is_full_window(node, s)) => {
                (PoolKind::AveragePool, 4)
            }
            _ => continue,
        };
        let head = match rank {
            Some(r) if r != 4 => Err(OnnxError::PrePoolRank {
                tensor: x.clone(),
                shape: shape_string(shape),
            }),
            _ => {
                let channels = shape.and_then(|s| s.get(1)).and_then(Dim::fixed);
                head::analyse(g, i, pooled_rank, channels)
            }
        };
        found.push(Candidate {
            pool: i,
            kind,
            pre_pool: x.clone(),
            head,
        });
    }
    found
}

/// Whether a rank-4 `ReduceMean` reduces exactly axes 2 and 3 (H and W). The axes come from the
/// attribute (opset < 18) or the constant second input (opset >= 18); without axes it reduces all.
fn reduces_hw(g: &Graph, node: &NodeProto) -> bool {
    let axes: Vec<i64> = if let Some(a) = attr(node, "axes") {
        a.ints.clone()
    } else if let Some(name) = node.input.get(1).filter(|n| !n.is_empty()) {
        match g.constant(name).and_then(|t| i64_values(&t)) {
            Some(v) => v,
            None => return false,
        }
    } else {
        return false;
    };
    let mut axes: Vec<i64> = axes
        .iter()
        .map(|&a| if a < 0 { a + 4 } else { a })
        .collect();
    axes.sort_unstable();
    axes == [2, 3]
}

/// Whether an `AveragePool` covers the whole fixed H x W of its rank-4 input without padding, so
/// it is a global pooling.
fn is_full_window(node: &NodeProto, shape: &[Dim]) -> bool {
    let [_, _, h, w] = shape else { return false };
    let (Some(h), Some(w)) = (h.fixed(), w.fixed()) else {
        return false;
    };
    let kernel_ok = attr_ints(node, "kernel_shape") == Some(&[h as i64, w as i64][..]);
    let no_pads = attr_ints(node, "pads").is_none_or(|p| p.iter().all(|&v| v == 0));
    let auto_ok = attr_s(node, "auto_pad").is_none_or(|p| p == "NOTSET" || p == "VALID");
    kernel_ok && no_pads && auto_ok && attr_i(node, "ceil_mode", 0) == 0
}

/// Picks a candidate: the one `layer` names (pre-pool tensor or pooling node name); else the only
/// candidate; else the only one whose supported head reaches a graph output (the classifier, as
/// opposed to poolings inside squeeze-excite blocks).
pub(crate) fn select(
    g: &Graph,
    found: &[Candidate],
    layer: Option<&str>,
) -> Result<usize, OnnxError> {
    let list = || found.iter().map(|f| f.describe(g)).collect::<Vec<_>>();
    if found.is_empty() {
        return Err(OnnxError::NoPooling);
    }
    if let Some(layer) = layer {
        return found
            .iter()
            .position(|f| f.pre_pool == layer)
            .or_else(|| {
                found
                    .iter()
                    .position(|f| !g.node(f.pool).name.is_empty() && g.node(f.pool).name == layer)
            })
            .ok_or_else(|| OnnxError::UnknownLayer {
                layer: layer.to_string(),
                candidates: list(),
            });
    }
    if found.len() == 1 {
        return Ok(0);
    }
    let classifiers: Vec<usize> = found
        .iter()
        .enumerate()
        .filter(|(_, f)| f.head.as_ref().is_ok_and(|h| h.output.is_some()))
        .map(|(i, _)| i)
        .collect();
    match classifiers[..] {
        [one] => Ok(one),
        _ => Err(OnnxError::AmbiguousPooling { candidates: list() }),
    }
}
