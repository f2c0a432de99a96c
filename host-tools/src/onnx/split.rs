//! `napctl split`: cut a classifier at its global pooling into a pruned ONNX backbone and a dense
//! head.

use super::error::OnnxError;
use super::graph::{Dim, FLOAT, Graph, node_uses, shape_string, value_info_type};
use super::head::DenseHead;
use super::pooling::{PoolKind, find_candidates, select};
use super::proto::{dim, dim_param, value_info};
use std::collections::HashSet;
use tract_onnx::pb::tensor_shape_proto::Dimension;
use tract_onnx::pb::{GraphProto, ModelProto, StringStringEntryProto, ValueInfoProto};

/// A classifier cut at its global pooling.
#[derive(Clone, Debug, PartialEq)]
pub struct SplitModel {
    /// The pruned backbone: graph input -> pre-pool tensor (its only output); nodes, initializers
    /// and value infos the pre-pool tensor does not depend on are removed.
    pub backbone: ModelProto,
    /// Name of the backbone's (single) graph input.
    pub input_name: String,
    /// Its shape as declared (`[N, 3, 224, 224]`), `None` when the file does not say.
    pub input_shape: Option<Vec<Dim>>,
    /// Name of the pre-pool tensor, the backbone's output.
    pub pre_pool: String,
    /// Its shape when known (`[N, C, H, W]`).
    pub pre_pool_shape: Option<Vec<Dim>>,
    /// The pooling node removed from the graph (name, or `#index Op -> output`).
    pub pool_node: String,
    /// How it pooled.
    pub pool_kind: PoolKind,
    /// The head after the pooling, with its neck model when it has layers before the dense one.
    pub head: DenseHead,
}

impl SplitModel {
    /// The backbone serialised as ONNX bytes.
    pub fn backbone_bytes(&self) -> Vec<u8> {
        prost::Message::encode_to_vec(&self.backbone)
    }
}

/// Cuts `model` at a global pooling: the one `layer` names (pre-pool tensor or pooling node
/// name), or the one `napctl inspect` marks as selected when `layer` is `None`.
pub fn split(model: &ModelProto, layer: Option<&str>) -> Result<SplitModel, OnnxError> {
    let g = Graph::new(model)?;
    let mut found = find_candidates(&g);
    let index = select(&g, &found, layer)?;
    let chosen = found.swap_remove(index);
    let head = chosen.head?;
    if head.output.is_none() {
        return Err(OnnxError::UnsupportedHead {
            pool: g.label(chosen.pool),
            reason: format!(
                "its logits {:?} reach no graph output; the classifier's logits must be an \
                 output of the model",
                head.logits
            ),
        });
    }
    let pre_pool = chosen.pre_pool;

    let (graph, inputs) = prune(&g, &pre_pool);
    let [input] = &inputs[..] else {
        return Err(OnnxError::InputCount { inputs });
    };
    let input_shape = g.shape(input).map(<[Dim]>::to_vec);
    if let Some(shape) = &input_shape
        && shape.len() != 4
    {
        return Err(OnnxError::InputRank {
            input: input.clone(),
            rank: shape.len(),
            shape: shape_string(Some(shape)),
        });
    }
    let mut backbone = ModelProto {
        graph: Some(graph),
        training_info: vec![],
        ..model.clone_without_graph()
    };
    backbone.metadata_props.push(StringStringEntryProto {
        key: "napctl.split".into(),
        value: format!(
            "backbone of a classifier cut before {} {:?}; output {pre_pool:?}",
            chosen.kind,
            g.label(chosen.pool)
        ),
    });
    Ok(SplitModel {
        backbone,
        input_name: input.clone(),
        input_shape,
        pre_pool_shape: g.shape(&pre_pool).map(<[Dim]>::to_vec),
        pool_node: g.label(chosen.pool),
        pool_kind: chosen.kind,
        head,
        pre_pool,
    })
}

trait CloneWithoutGraph {
    fn clone_without_graph(&self) -> ModelProto;
}

impl CloneWithoutGraph for ModelProto {
    /// A copy of the model's metadata, opsets and functions, without cloning its (large) graph.
    fn clone_without_graph(&self) -> ModelProto {
        ModelProto {
            ir_version: self.ir_version,
            opset_import: self.opset_import.clone(),
            producer_name: self.producer_name.clone(),
            producer_version: self.producer_version.clone(),
            domain: self.domain.clone(),
            model_version: self.model_version,
            doc_string: self.doc_string.clone(),
            graph: None,
            metadata_props: self.metadata_props.clone(),
            training_info: vec![],
            functions: self.functions.clone(),
        }
    }
}

/// The subgraph computing `target`: the nodes it depends on (in graph order), the initializers,
/// inputs and value infos they use, and `target` as the only output. Also gives the graph inputs
/// (not initializers) it depends on.
fn prune(g: &Graph, target: &str) -> (GraphProto, Vec<String>) {
    let mut needed: HashSet<&str> = HashSet::new();
    let mut kept = vec![false; g.g.node.len()];
    let mut stack = vec![target];
    while let Some(t) = stack.pop() {
        if !needed.insert(t) {
            continue;
        }
        if let Some(p) = g.producer(t)
            && !kept[p]
        {
            kept[p] = true;
            stack.extend(node_uses(g.node(p)));
        }
    }
    let src = g.g;
    let inputs: Vec<String> = src
        .input
        .iter()
        .filter(|i| needed.contains(i.name.as_str()) && !g.is_initializer(&i.name))
        .map(|i| i.name.clone())
        .collect();
    let graph = GraphProto {
        node: src
            .node
            .iter()
            .zip(&kept)
            .filter(|(_, k)| **k)
            .map(|(n, _)| n.clone())
            .collect(),
        name: if src.name.is_empty() {
            "backbone".into()
        } else {
            format!("{}_backbone", src.name)
        },
        initializer: src
            .initializer
            .iter()
            .filter(|t| needed.contains(t.name.as_str()))
            .cloned()
            .collect(),
        sparse_initializer: src
            .sparse_initializer
            .iter()
            .filter(|s| {
                s.values
                    .as_ref()
                    .is_some_and(|v| needed.contains(v.name.as_str()))
            })
            .cloned()
            .collect(),
        doc_string: src.doc_string.clone(),
        input: src
            .input
            .iter()
            .filter(|i| needed.contains(i.name.as_str()))
            .cloned()
            .collect(),
        output: vec![output_info(g, target)],
        value_info: src
            .value_info
            .iter()
            .filter(|v| needed.contains(v.name.as_str()) && v.name != target)
            .cloned()
            .collect(),
        quantization_annotation: src
            .quantization_annotation
            .iter()
            .filter(|a| a.tensor_name.as_deref().is_some_and(|n| needed.contains(n)))
            .cloned()
            .collect(),
    };
    (graph, inputs)
}

/// The value info of the new graph output: the declared one when the file has it, else FLOAT with
/// the shape we know (symbols as parameters, unknown dims left open).
fn output_info(g: &Graph, target: &str) -> ValueInfoProto {
    let declared =
        g.g.value_info
            .iter()
            .chain(&g.g.output)
            .find(|v| v.name == target && value_info_type(v).is_some_and(|t| t.shape.is_some()));
    if let Some(info) = declared {
        return info.clone();
    }
    let dims = g.shape(target).map(|dims| {
        dims.iter()
            .map(|d| match d {
                Dim::Fixed(v) => dim(*v),
                Dim::Symbol(s) if is_identifier(s) => dim_param(s),
                _ => Dimension::default(),
            })
            .collect()
    });
    let elem_type = g.elem_type(target).unwrap_or(FLOAT);
    ValueInfoProto {
        doc_string: "pre-pool activation (input of the removed global pooling)".into(),
        ..value_info(target, elem_type, dims)
    }
}

/// Whether a symbolic dimension is a plain name (`N`, `batch_size`), not an expression.
fn is_identifier(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_alphanumeric() || c == '_')
}
