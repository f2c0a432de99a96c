//! `napctl inspect`: what a classifier ONNX holds, and where it can be cut.

use super::graph::{Graph, elem_type_name, shape_string};
use super::head::{self, Head};
use super::tensor::{attr, attr_i, attr_ints, attr_s, i64_values};
use super::{HeadForm, OnnxError};
use serde::Serialize;
use std::fmt;
use tract_onnx::pb::ModelProto;

/// One dimension of a tensor shape: a number, a symbol (`N`, `batch`), or unknown.
/// Serialises as a number, a string, or `null`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Dim {
    /// A fixed size.
    Fixed(i64),
    /// A named symbolic size.
    Symbol(String),
    /// Not stated and not inferred.
    Unknown,
}

impl Dim {
    /// How much this dimension says: unknown < symbol < fixed.
    pub(crate) fn specificity(&self) -> u8 {
        match self {
            Dim::Unknown => 0,
            Dim::Symbol(_) => 1,
            Dim::Fixed(_) => 2,
        }
    }

    /// The size when fixed and non-negative.
    pub fn fixed(&self) -> Option<usize> {
        match self {
            Dim::Fixed(v) => usize::try_from(*v).ok(),
            _ => None,
        }
    }
}

impl fmt::Display for Dim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Symbol(s) => f.write_str(s),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// A graph input or output: name, element type and shape (when known).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TensorInfo {
    /// Tensor name.
    pub name: String,
    /// ONNX element type, e.g. `FLOAT`; `?` when not stated.
    pub elem_type: String,
    /// Shape, `None` when even the rank is unknown.
    pub shape: Option<Vec<Dim>>,
}

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

/// What follows a pooling candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HeadStatus {
    /// A head we can turn into a dense affine map.
    Supported {
        /// Its form in the source graph.
        form: HeadForm,
        /// Pooled features C.
        features: usize,
        /// Classes K.
        classes: usize,
        /// The source tensor holding the logits.
        logits: String,
        /// The graph output the logits reach through post-processing only; `None` for a pooling
        /// inside the network (e.g. a squeeze-excite block).
        output: Option<String>,
    },
    /// Something else follows; `reason` says what.
    Unsupported {
        /// What follows and why it is not supported.
        reason: String,
    },
}

/// One place where the model could be cut: a global pooling node and its input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PoolCandidate {
    /// The pre-pool tensor (the pooling node's input): the backbone output after a split.
    pub pre_pool: String,
    /// Its shape, when known (`[N, C, H, W]`).
    pub pre_pool_shape: Option<Vec<Dim>>,
    /// The pooling node's name (or `#index Op -> output` when it has none).
    pub pool_node: String,
    /// How it pools.
    pub pool_kind: PoolKind,
    /// The head that follows.
    pub head: HeadStatus,
}

/// Summary of a model for `napctl inspect` (serialisable for `--json`, readable via `Display`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ModelInfo {
    /// ONNX IR version.
    pub ir_version: i64,
    /// Default-domain operator set version (0 when not stated).
    pub opset: i64,
    /// Producer name and version, e.g. `pytorch 2.3`.
    pub producer: String,
    /// Number of nodes in the main graph.
    pub nodes: usize,
    /// Number of initializers.
    pub initializers: usize,
    /// Graph inputs fed at run time (initializers listed as inputs are left out).
    pub inputs: Vec<TensorInfo>,
    /// Graph outputs.
    pub outputs: Vec<TensorInfo>,
    /// Every global pooling node found, in graph order.
    pub candidates: Vec<PoolCandidate>,
    /// Index into `candidates` of the one `split` picks without `--layer`, if it can pick one.
    pub selected: Option<usize>,
}

/// A pooling candidate with its head analysis (crate-internal form of [`PoolCandidate`]).
pub(crate) struct Found {
    pub pool: usize,
    pub kind: PoolKind,
    pub pre_pool: String,
    pub head: Result<Head, OnnxError>,
}

impl Found {
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

/// Lists the graph inputs and outputs, every global pooling candidate, and the head after each.
pub fn inspect(model: &ModelProto) -> Result<ModelInfo, OnnxError> {
    let g = Graph::new(model)?;
    let found = find_candidates(&g);
    let selected = select(&g, &found, None).ok();
    let tensor_info = |name: &str| TensorInfo {
        name: name.to_string(),
        elem_type: elem_type_name(&g, name),
        shape: g.shape(name).map(<[Dim]>::to_vec),
    };
    let candidates = found
        .iter()
        .map(|f| PoolCandidate {
            pre_pool: f.pre_pool.clone(),
            pre_pool_shape: g.shape(&f.pre_pool).map(<[Dim]>::to_vec),
            pool_node: g.label(f.pool),
            pool_kind: f.kind,
            head: match &f.head {
                Ok(h) => HeadStatus::Supported {
                    form: h.form,
                    features: h.features,
                    classes: h.classes,
                    logits: h.logits.clone(),
                    output: h.output.clone(),
                },
                Err(e) => HeadStatus::Unsupported {
                    reason: e.to_string(),
                },
            },
        })
        .collect();
    let producer = [model.producer_name.as_str(), &model.producer_version]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    Ok(ModelInfo {
        ir_version: model.ir_version,
        opset: g.opset,
        producer,
        nodes: g.g.node.len(),
        initializers: g.g.initializer.len(),
        inputs: g
            .g
            .input
            .iter()
            .filter(|i| !g.is_initializer(&i.name))
            .map(|i| tensor_info(&i.name))
            .collect(),
        outputs: g.g.output.iter().map(|o| tensor_info(&o.name)).collect(),
        candidates,
        selected,
    })
}

/// Every global pooling node of the main graph, in graph order, with its head analysed.
pub(crate) fn find_candidates(g: &Graph) -> Vec<Found> {
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
        found.push(Found {
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
fn reduces_hw(g: &Graph, node: &tract_onnx::pb::NodeProto) -> bool {
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
fn is_full_window(node: &tract_onnx::pb::NodeProto, shape: &[Dim]) -> bool {
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
pub(crate) fn select(g: &Graph, found: &[Found], layer: Option<&str>) -> Result<usize, OnnxError> {
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

impl fmt::Display for ModelInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let producer = if self.producer.is_empty() {
            "unknown producer"
        } else {
            &self.producer
        };
        writeln!(
            f,
            "ONNX model: IR {}, opset {}, {producer}; {} nodes, {} initializers",
            self.ir_version, self.opset, self.nodes, self.initializers
        )?;
        for (title, list) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            writeln!(f, "{title}:")?;
            for t in list {
                writeln!(
                    f,
                    "  {} {} {}",
                    t.name,
                    t.elem_type,
                    shape_string(t.shape.as_deref())
                )?;
            }
        }
        if self.candidates.is_empty() {
            return writeln!(f, "global pooling candidates: none");
        }
        writeln!(f, "global pooling candidates ({}):", self.candidates.len())?;
        for (i, c) in self.candidates.iter().enumerate() {
            let mark = if self.selected == Some(i) { "*" } else { " " };
            writeln!(
                f,
                "{mark} pre-pool {} {} -> {} {:?}",
                c.pre_pool,
                shape_string(c.pre_pool_shape.as_deref()),
                c.pool_kind,
                c.pool_node
            )?;
            match &c.head {
                HeadStatus::Supported {
                    form,
                    features,
                    classes,
                    logits,
                    output,
                } => {
                    let reach = match output {
                        Some(o) if o == logits => "a graph output".to_string(),
                        Some(o) => format!("reaches graph output {o}"),
                        None => "reaches no graph output".to_string(),
                    };
                    writeln!(
                        f,
                        "    head: {form}, {features} features -> {classes} classes, logits {logits} ({reach})"
                    )?;
                }
                HeadStatus::Unsupported { reason } => {
                    writeln!(f, "    head: unsupported: {reason}")?
                }
            }
        }
        match self.selected {
            Some(i) => writeln!(
                f,
                "split cuts at {} (marked *); --layer NAME picks another",
                self.candidates[i].pre_pool
            ),
            None => writeln!(
                f,
                "split cannot pick a candidate on its own: pass --layer NAME (a pre-pool tensor \
                 or pooling node name)"
            ),
        }
    }
}
