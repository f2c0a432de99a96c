//! An index over an ONNX graph: who produces and who consumes each tensor, the constants, and the
//! tensor shapes we know (declared in the file, completed by tract's shape inference), as [`Dim`]s.

use super::error::OnnxError;
use super::tensor::{constant_node_tensor, type_name};
use serde::Serialize;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use tract_onnx::pb::tensor_shape_proto::dimension;
use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, TensorProto, ValueInfoProto, type_proto};
use tract_onnx::tract_hir::infer::{GenericFactoid, InferenceModelExt};

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

/// The model's graph, or [`OnnxError::NotOnnx`] when it has none or it has no node.
pub(crate) fn check_model(model: &ModelProto) -> Result<&GraphProto, OnnxError> {
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

/// Read-only index over one model's main graph.
pub(crate) struct Graph<'a> {
    /// The model it belongs to (opsets, IR version).
    pub model: &'a ModelProto,
    /// The graph itself.
    pub g: &'a GraphProto,
    /// Version of the default (`ai.onnx`) operator set, 0 when not stated.
    pub opset: i64,
    producer: HashMap<&'a str, usize>,
    consumers: HashMap<&'a str, Vec<usize>>,
    initializers: HashMap<&'a str, &'a TensorProto>,
    outputs: HashSet<&'a str>,
    shapes: HashMap<String, Vec<Dim>>,
    elem_types: HashMap<&'a str, i32>,
}

impl<'a> Graph<'a> {
    /// Indexes `model`; fails with [`OnnxError::NotOnnx`] when it has no graph or no node.
    pub fn new(model: &'a ModelProto) -> Result<Self, OnnxError> {
        let g = check_model(model)?;
        let opset = model
            .opset_import
            .iter()
            .find(|o| o.domain.is_empty() || o.domain == "ai.onnx")
            .map_or(0, |o| o.version);
        let mut producer = HashMap::new();
        let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, node) in g.node.iter().enumerate() {
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                producer.insert(out.as_str(), i);
            }
            for input in node_uses(node) {
                let list = consumers.entry(input).or_default();
                if list.last() != Some(&i) {
                    list.push(i);
                }
            }
        }
        let initializers: HashMap<&str, &TensorProto> =
            g.initializer.iter().map(|t| (t.name.as_str(), t)).collect();
        let outputs = g.output.iter().map(|o| o.name.as_str()).collect();
        let mut shapes = HashMap::new();
        let mut elem_types = HashMap::new();
        for info in g.input.iter().chain(&g.output).chain(&g.value_info) {
            if let Some(t) = tensor_type(info) {
                elem_types.insert(info.name.as_str(), t.elem_type);
                if let Some(dims) = declared_dims(t) {
                    shapes.insert(info.name.clone(), dims);
                }
            }
        }
        // tract panics on a graph output that names no tensor; such a model gets no inference.
        let resolvable = g.output.iter().all(|o| {
            producer.contains_key(o.name.as_str())
                || initializers.contains_key(o.name.as_str())
                || g.input.iter().any(|i| i.name == o.name)
        });
        let inferred = if resolvable {
            inferred_shapes(model)
        } else {
            HashMap::new()
        };
        for (name, inferred) in inferred {
            let merged = match shapes.remove(&name) {
                Some(declared) if declared.len() == inferred.len() => declared
                    .into_iter()
                    .zip(inferred)
                    .map(|(d, i)| {
                        if i.specificity() >= d.specificity() {
                            i
                        } else {
                            d
                        }
                    })
                    .collect(),
                Some(declared) => declared,
                None => inferred,
            };
            shapes.insert(name, merged);
        }
        Ok(Graph {
            model,
            g,
            opset,
            producer,
            consumers,
            initializers,
            outputs,
            shapes,
            elem_types,
        })
    }

    /// The node at `i`.
    pub fn node(&self, i: usize) -> &'a NodeProto {
        &self.g.node[i]
    }

    /// The node producing `tensor`, if any.
    pub fn producer(&self, tensor: &str) -> Option<usize> {
        self.producer.get(tensor).copied()
    }

    /// The nodes using `tensor` as an input (or inside a subgraph), in graph order.
    pub fn consumers(&self, tensor: &str) -> &[usize] {
        self.consumers.get(tensor).map_or(&[], Vec::as_slice)
    }

    /// Whether `tensor` is a graph output.
    pub fn is_output(&self, tensor: &str) -> bool {
        self.outputs.contains(tensor)
    }

    /// Whether `tensor` is an initializer.
    pub fn is_initializer(&self, tensor: &str) -> bool {
        self.initializers.contains_key(tensor)
    }

    /// The known shape of `tensor`, if its rank is known.
    pub fn shape(&self, tensor: &str) -> Option<&[Dim]> {
        self.shapes.get(tensor).map(Vec::as_slice)
    }

    /// The declared element type of `tensor`, if the file states it.
    pub fn elem_type(&self, tensor: &str) -> Option<i32> {
        self.elem_types.get(tensor).copied()
    }

    /// The constant value of `tensor`: an initializer or the output of a `Constant` node.
    pub fn constant(&self, tensor: &str) -> Option<Cow<'a, TensorProto>> {
        if let Some(t) = self.initializers.get(tensor) {
            return Some(Cow::Borrowed(*t));
        }
        let node = self.node(self.producer(tensor)?);
        if node.op_type == "Constant" && node.domain.is_empty() {
            return constant_node_tensor(node).map(Cow::Owned);
        }
        None
    }

    /// A label for node `i` in messages: its name, or its op type and first output.
    pub fn label(&self, i: usize) -> String {
        let node = self.node(i);
        if node.name.is_empty() {
            format!(
                "#{i} {} -> {}",
                node.op_type,
                node.output.first().map_or("", String::as_str)
            )
        } else {
            node.name.clone()
        }
    }
}

/// Every tensor name `node` reads: its inputs and, for nodes with subgraphs (If, Loop, Scan),
/// every name read inside them (an over-approximation of the outer-scope names they capture).
pub(crate) fn node_uses(node: &NodeProto) -> Vec<&str> {
    let mut names: Vec<&str> = node
        .input
        .iter()
        .filter(|s| !s.is_empty())
        .map(String::as_str)
        .collect();
    for attr in &node.attribute {
        for g in attr.g.iter().chain(&attr.graphs) {
            subgraph_uses(g, &mut names);
        }
    }
    names
}

fn subgraph_uses<'a>(g: &'a GraphProto, names: &mut Vec<&'a str>) {
    for node in &g.node {
        names.extend(node_uses(node));
    }
    names.extend(g.output.iter().map(|o| o.name.as_str()));
}

fn tensor_type(info: &ValueInfoProto) -> Option<&type_proto::Tensor> {
    match info.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => Some(t),
    }
}

fn declared_dims(t: &type_proto::Tensor) -> Option<Vec<Dim>> {
    let shape = t.shape.as_ref()?;
    Some(
        shape
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(dimension::Value::DimValue(v)) => Dim::Fixed(*v),
                Some(dimension::Value::DimParam(p)) if !p.is_empty() => Dim::Symbol(p.clone()),
                _ => Dim::Unknown,
            })
            .collect(),
    )
}

/// Shapes from tract's inference analysis, by tensor name. Best effort: a model tract cannot
/// parse or fully analyse just gives fewer shapes.
fn inferred_shapes(model: &ModelProto) -> HashMap<String, Vec<Dim>> {
    let mut shapes = HashMap::new();
    // tract is not written for hostile input: a malformed model may make it panic. Shapes are a
    // bonus here, so a panic just means fewer shapes.
    let analysed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let parsed = tract_onnx::onnx().parse(model, None).ok()?;
        let mut m = parsed.model;
        let _ = m.analyse(true);
        Some((m, parsed.outlets_by_name))
    }));
    let Ok(Some((m, outlets_by_name))) = analysed else {
        return shapes;
    };
    for (name, outlet) in outlets_by_name {
        let Ok(fact) = m.outlet_fact(outlet) else {
            continue;
        };
        if fact.shape.is_open() {
            continue;
        }
        let dims = fact
            .shape
            .dims()
            .map(|d| match d {
                GenericFactoid::Only(d) => match d.to_i64() {
                    Ok(v) => Dim::Fixed(v),
                    Err(_) => Dim::Symbol(d.to_string()),
                },
                GenericFactoid::Any => Dim::Unknown,
            })
            .collect();
        shapes.insert(name, dims);
    }
    shapes
}

/// Human name of the declared element type of `tensor`, or `?`.
pub(crate) fn elem_type_name(graph: &Graph, tensor: &str) -> String {
    graph
        .elem_type(tensor)
        .map_or_else(|| "?".into(), type_name)
}

/// ONNX element type code for FLOAT.
pub(crate) const FLOAT: i32 = tract_onnx::pb::tensor_proto::DataType::Float as i32;

/// Re-export for the split: declared tensor type of a value info.
pub(crate) fn value_info_type(info: &ValueInfoProto) -> Option<&type_proto::Tensor> {
    tensor_type(info)
}

/// A shape for messages: `[N, 3, 224, 224]`, or `unknown`.
pub(crate) fn shape_string(shape: Option<&[Dim]>) -> String {
    match shape {
        None => "unknown".into(),
        Some(dims) => format!(
            "[{}]",
            dims.iter()
                .map(Dim::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_uses_includes_subgraph_names() {
        let inner = NodeProto {
            input: vec!["outer".into()],
            output: vec!["y".into()],
            op_type: "Relu".into(),
            ..Default::default()
        };
        let node = NodeProto {
            input: vec!["cond".into()],
            op_type: "If".into(),
            attribute: vec![tract_onnx::pb::AttributeProto {
                name: "then_branch".into(),
                g: Some(GraphProto {
                    node: vec![inner],
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(node_uses(&node), vec!["cond", "outer"]);
    }
}
