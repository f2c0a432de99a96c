//! `napctl inspect`: what a classifier ONNX holds, and where it can be cut.

use super::error::OnnxError;
use super::graph::{Dim, Graph, elem_type_name, shape_string};
use super::pooling::{PoolKind, find_candidates, select};
use nap_runtime::bundle::HeadForm;
use serde::Serialize;
use std::fmt;
use tract_onnx::pb::ModelProto;

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

/// What follows a pooling candidate.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum HeadStatus {
    /// A head we can cut: a dense affine map, after a head graph when it has more layers.
    Supported {
        /// The form of its last dense layer in the source graph.
        form: HeadForm,
        /// The ops between the pooling and that layer, run by tract on the device; `None` when
        /// the dense layer follows the pooling.
        head_graph: Option<Vec<String>>,
        /// Pooled features C.
        pooled: usize,
        /// The dense layer's input length (C without a head graph).
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
                    head_graph: h.neck.as_ref().map(|n| n.spec.ops.clone()),
                    pooled: h.pooled_channels(),
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
                    head_graph,
                    pooled,
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
                    if let Some(ops) = head_graph {
                        writeln!(
                            f,
                            "    head graph: {} ({pooled} -> {features}, run by tract), then:",
                            ops.join(" -> ")
                        )?;
                    }
                    writeln!(
                        f,
                        "    head: {form:?}, {features} features -> {classes} classes, logits {logits} ({reach})"
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
