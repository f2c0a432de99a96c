//! Recognising the classifier head after a pooling node: its last dense layer as an affine map,
//! and, for a head with more layers (MobileNetV3, ConvNeXt), the graph before that layer.

use super::error::OnnxError;
use super::graph::{FLOAT, Graph};
use super::proto::value_info;
use super::tensor::{attr_f, attr_i, attr_ints, element_count, f32_values};
use nap_runtime::bundle::{HeadForm, NeckSpec};
use std::borrow::Cow;
use std::collections::HashSet;
use tract_onnx::pb::{GraphProto, ModelProto, TensorProto};

/// The classifier head after pooling: an optional neck, then a dense affine map
/// `logits = weights * x + bias`, where `x` is the pooled feature (the per-channel mean of the
/// pre-pool tensor) or the neck's output.
#[derive(Clone, Debug, PartialEq)]
pub struct DenseHead {
    /// The form of the last dense layer in the source graph.
    pub form: HeadForm,
    /// The dense layer's input length: the pooled C, or the neck's output.
    pub features: usize,
    /// Classes K (logits).
    pub classes: usize,
    /// Row-major `[classes][features]`.
    pub weights: Vec<f32>,
    /// `[classes]`.
    pub bias: Vec<f32>,
    /// The tensor of the source model that holds these logits (e.g. `logits`), for comparisons.
    pub logits: String,
    /// The graph output the logits reach through post-processing only (Softmax, Squeeze, ...);
    /// `None` for a pooling inside the network (e.g. a squeeze-excite block).
    pub output: Option<String>,
    /// The layers between the pooling and the dense layer, when there are any.
    pub neck: Option<NeckGraph>,
}

/// The head's layers between the pooling and its last dense layer, cut out as an ONNX model.
#[derive(Clone, Debug, PartialEq)]
pub struct NeckGraph {
    /// Its input (the pooling's output) and output (the dense layer's input), as the bundle
    /// records them.
    pub spec: NeckSpec,
    /// The pooled channels C it takes.
    pub channels: usize,
    /// The model: pooled feature in, the dense layer's input out.
    pub model: ModelProto,
}

impl DenseHead {
    /// The length of the pooled feature the head takes.
    pub fn pooled_channels(&self) -> usize {
        self.neck.as_ref().map_or(self.features, |n| n.channels)
    }
}

/// Ops that only move or rename data on the way from the pooled tensor to the head.
const PASS_THROUGH: &[&str] = &["Identity", "Dropout"];
/// Ops that flatten the pooled `[N, C, 1, 1]` tensor to `[N, C]`.
const FLATTEN: &[&str] = &["Flatten", "Reshape", "Squeeze"];
/// Ops that may sit between the logits and a graph output without making them something else.
const POST_PROCESSING: &[&str] = &[
    "Identity",
    "Dropout",
    "Squeeze",
    "Unsqueeze",
    "Reshape",
    "Flatten",
    "Softmax",
    "LogSoftmax",
    "Sigmoid",
    "ArgMax",
    "TopK",
    "Cast",
];

/// Recognises the head after pooling node `pool`, whose output has rank `pooled_rank` (4 with
/// kept dims, 2 without), given the pre-pool channel count when known: one dense layer, or a head
/// graph that ends in one.
pub(crate) fn analyse(
    g: &Graph,
    pool: usize,
    pooled_rank: usize,
    channels: Option<usize>,
) -> Result<DenseHead, OnnxError> {
    let single = one_dense_layer(g, pool, pooled_rank, channels);
    match &single {
        // A dense layer whose logits reach no output may be the first of several.
        Ok(head) if head.output.is_some() => return single,
        Ok(_) | Err(OnnxError::UnsupportedHead { .. }) => {}
        Err(_) => return single,
    }
    match graph_head(g, pool, pooled_rank, channels) {
        Ok(head) => Ok(head),
        Err(GraphHead::NotAHead) => single,
        Err(GraphHead::Refused(e)) => Err(e),
    }
}

/// The dense layer right after the pooling, through pass-through and flattening ops only.
fn one_dense_layer(
    g: &Graph,
    pool: usize,
    pooled_rank: usize,
    channels: Option<usize>,
) -> Result<DenseHead, OnnxError> {
    let unsupported_head = |reason: String| unsupported(g, pool, reason);
    // Head readers label unsupported cases with their own node; report the pooling node instead.
    let with_pool = |e: OnnxError| match e {
        OnnxError::UnsupportedHead { reason, .. } => unsupported_head(reason),
        e => e,
    };
    let expected = "expected Conv (1x1) [-> Squeeze], Flatten/Reshape -> Gemm, or \
                    Flatten/Reshape -> MatMul [-> Add]";
    let mut tensor = first_output(g, pool).map_err(unsupported_head)?;
    let mut flat = pooled_rank == 2;
    // Each step moves one node on; more steps than nodes means a (malformed) cycle.
    for _ in 0..=g.g.node.len() {
        let next = single_consumer(g, tensor).map_err(unsupported_head)?;
        let node = g.node(next);
        let op = node.op_type.as_str();
        let known = PASS_THROUGH.contains(&op)
            || FLATTEN.contains(&op)
            || ["Conv", "Gemm", "MatMul"].contains(&op);
        if !node.domain.is_empty() || !known {
            let domain = if node.domain.is_empty() {
                String::new()
            } else {
                format!(" (domain {:?})", node.domain)
            };
            return Err(unsupported_head(format!(
                "{op}{domain} node {:?} follows; {expected}",
                g.label(next)
            )));
        }
        if node.input.first().map(String::as_str) != Some(tensor) {
            return Err(unsupported_head(format!(
                "the pooled feature {tensor:?} enters {op} node {:?} as a later input, not as its \
                 data input",
                g.label(next)
            )));
        }
        match op {
            "Flatten" => {
                let axis = attr_i(node, "axis", 1);
                if !(axis == 1 || (!flat && axis == -3)) {
                    return Err(unsupported_head(format!(
                        "Flatten node {:?} has axis {axis}; expected 1",
                        g.label(next)
                    )));
                }
                flat = true;
            }
            _ if FLATTEN.contains(&op) => {
                flat_or_refused(g, next, channels)?;
                flat = true;
            }
            "Conv" if !flat => return conv(g, next, channels).map_err(with_pool),
            "Conv" => {
                return Err(unsupported_head(format!(
                    "Conv node {:?} follows the flattened pooled feature",
                    g.label(next)
                )));
            }
            "Gemm" if flat => return gemm(g, next, channels).map_err(with_pool),
            "MatMul" if flat => return matmul(g, next, channels).map_err(with_pool),
            "Gemm" | "MatMul" => {
                return Err(unsupported_head(format!(
                    "{op} node {:?} takes the 4-D pooled tensor without a Flatten/Reshape",
                    g.label(next)
                )));
            }
            _ => {} // pass-through
        }
        tensor = first_output(g, next).map_err(unsupported_head)?;
    }
    Err(unsupported_head(format!(
        "the nodes after the pooling form a cycle at {tensor:?}"
    )))
}

/// The first output of node `n`, or why it has none.
fn first_output<'a>(g: &Graph<'a>, n: usize) -> Result<&'a str, String> {
    g.node(n)
        .output
        .first()
        .map(String::as_str)
        .filter(|o| !o.is_empty())
        .ok_or_else(|| format!("node {:?} has no output", g.label(n)))
}

/// The one node consuming `tensor`, or why there is not exactly one.
fn single_consumer(g: &Graph, tensor: &str) -> Result<usize, String> {
    match g.consumers(tensor) {
        [one] => Ok(*one),
        [] if g.is_output(tensor) => Err(format!(
            "{tensor:?} is a graph output and no classifier follows it"
        )),
        [] => Err(format!("{tensor:?} feeds no node")),
        many => Err(format!(
            "{tensor:?} feeds {} nodes ({}); expected one classifier",
            many.len(),
            many.iter()
                .map(|&i| format!("{} {:?}", g.node(i).op_type, g.label(i)))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The constant input `ix` of node `n` (an initializer or a `Constant` node's output).
fn const_input<'a>(g: &Graph<'a>, n: usize, ix: usize) -> Result<Cow<'a, TensorProto>, OnnxError> {
    let name = g.node(n).input.get(ix).map_or("", String::as_str);
    g.constant(name).ok_or_else(|| OnnxError::HeadData {
        tensor: name.to_string(),
        problem: format!(
            "input {ix} of {} node {:?} is computed in the graph, not a constant (initializer or \
             Constant node)",
            g.node(n).op_type,
            g.label(n)
        ),
    })
}

/// The optional constant input `ix` (absent or empty name: `None`).
fn opt_const_input<'a>(
    g: &Graph<'a>,
    n: usize,
    ix: usize,
) -> Result<Option<(String, Cow<'a, TensorProto>)>, OnnxError> {
    match g.node(n).input.get(ix) {
        Some(name) if !name.is_empty() => Ok(Some((name.clone(), const_input(g, n, ix)?))),
        _ => Ok(None),
    }
}

/// Why what follows node `n` is not a head we read, reported at that node.
fn unsupported(g: &Graph, n: usize, reason: String) -> OnnxError {
    OnnxError::UnsupportedHead {
        pool: g.label(n),
        reason,
    }
}

fn shape_error(tensor: &str, expected: String, found: &[i64]) -> OnnxError {
    OnnxError::HeadShape {
        tensor: tensor.to_string(),
        expected,
        found: found.to_vec(),
    }
}

/// A weight of the wrong shape for `expected`, naming the pre-pool channels when known.
fn weight_shape_error(
    tensor: &str,
    expected: &str,
    channels: Option<usize>,
    found: &[i64],
) -> OnnxError {
    let note = channels.map_or_else(String::new, |c| {
        format!(" with C = {c} (the pre-pool channels)")
    });
    shape_error(tensor, format!("{expected}{note}"), found)
}

/// The head's weight matrix: constant input 1 of the head node, with the classes K and features
/// C its shape gives.
struct Weight<'a> {
    name: String,
    tensor: Cow<'a, TensorProto>,
    classes: usize,
    features: usize,
}

/// Reads input 1 of node `n` as the head's weight. `kc` gives K and C from its dimensions
/// (`None`: a shape no head of this form has); `expected` names that shape in errors. K must be
/// positive and C equal the pre-pool channels when they are known.
fn weight<'a>(
    g: &Graph<'a>,
    n: usize,
    expected: &str,
    channels: Option<usize>,
    kc: impl Fn(&[i64]) -> Option<(i64, i64)>,
) -> Result<Weight<'a>, OnnxError> {
    let name = g.node(n).input.get(1).cloned().unwrap_or_default();
    let tensor = const_input(g, n, 1)?;
    let dims = &tensor.dims;
    let Some((k, c)) = kc(dims) else {
        return Err(weight_shape_error(&name, expected, channels, dims));
    };
    if k <= 0 {
        return Err(shape_error(&name, expected.into(), dims));
    }
    if c <= 0 || channels.is_some_and(|ch| ch as i64 != c) {
        return Err(weight_shape_error(&name, expected, channels, dims));
    }
    Ok(Weight {
        name,
        classes: k as usize,
        features: c as usize,
        tensor,
    })
}

/// A bias of `classes` values: `[K]`, `[1, K]`, or one value broadcast (`[]`, `[1]`, `[1, 1]`).
fn bias_values(
    name: &str,
    t: &TensorProto,
    classes: usize,
    scale: f32,
) -> Result<Vec<f32>, OnnxError> {
    let dims = &t.dims;
    let k = classes as i64;
    let fits = match dims.as_slice() {
        [] => true,
        [d] => *d == k || *d == 1,
        [1, d] => *d == k || *d == 1,
        _ => false,
    };
    if !fits {
        return Err(shape_error(
            name,
            format!("[{classes}] (or [1, {classes}], or a single value)"),
            dims,
        ));
    }
    let values = f32_values(t, name)?;
    Ok(if values.len() == classes {
        values.iter().map(|v| v * scale).collect()
    } else {
        vec![values[0] * scale; classes]
    })
}

/// Follows shape-only ops after the logits tensor (Squeeze, Reshape, ...), each the only consumer,
/// so `logits` names the tensor the source model calls its logits.
fn follow_shape_ops<'a>(g: &Graph<'a>, mut tensor: &'a str) -> &'a str {
    for _ in 0..g.g.node.len() {
        let [one] = g.consumers(tensor) else { break };
        let node = g.node(*one);
        let op = node.op_type.as_str();
        if g.is_output(tensor)
            || !(FLATTEN.contains(&op) || PASS_THROUGH.contains(&op) || op == "Unsqueeze")
            || node.input.first().map(String::as_str) != Some(tensor)
        {
            break;
        }
        match first_output(g, *one) {
            Ok(out) => tensor = out,
            Err(_) => break,
        }
    }
    tensor
}

/// The graph output `logits` reaches through post-processing ops only, if any.
fn reaches_output(g: &Graph, logits: &str) -> Option<String> {
    let mut stack = vec![logits.to_string()];
    let mut seen = std::collections::HashSet::new();
    while let Some(t) = stack.pop() {
        if g.is_output(&t) {
            return Some(t);
        }
        if !seen.insert(t.clone()) {
            continue;
        }
        for &c in g.consumers(&t) {
            let node = g.node(c);
            if POST_PROCESSING.contains(&node.op_type.as_str()) {
                stack.extend(node.output.iter().filter(|o| !o.is_empty()).cloned());
            }
        }
    }
    None
}

/// The head with its logits tensor named as the source model names it.
fn finish<'a>(
    g: &Graph<'a>,
    form: HeadForm,
    w: &Weight,
    weights: Vec<f32>,
    bias: Vec<f32>,
    logits: &'a str,
) -> DenseHead {
    let logits = follow_shape_ops(g, logits);
    DenseHead {
        form,
        features: w.features,
        classes: w.classes,
        weights,
        bias,
        output: reaches_output(g, logits),
        logits: logits.to_string(),
        neck: None,
    }
}

/// Pooling -> 1x1 Conv: weights `[K, C, 1, 1]`, optional bias `[K]`, group 1, no padding.
fn conv(g: &Graph, n: usize, channels: Option<usize>) -> Result<DenseHead, OnnxError> {
    let node = g.node(n);
    let group = attr_i(node, "group", 1);
    if group != 1 {
        return Err(unsupported(
            g,
            n,
            format!(
                "the 1x1 Conv {:?} has group = {group}; only group 1 is supported",
                g.label(n)
            ),
        ));
    }
    if attr_ints(node, "pads").is_some_and(|p| p.iter().any(|&v| v != 0)) {
        return Err(unsupported(
            g,
            n,
            format!(
                "the 1x1 Conv {:?} pads its input; expected no padding",
                g.label(n)
            ),
        ));
    }
    let w = weight(
        g,
        n,
        "[K, C, 1, 1] (a 1x1 convolution)",
        channels,
        |d| match d {
            [k, c, 1, 1] => Some((*k, *c)),
            _ => None,
        },
    )?;
    let weights = f32_values(&w.tensor, &w.name)?;
    let bias = match opt_const_input(g, n, 2)? {
        Some((name, b)) => {
            if element_count(&b.dims) != Some(w.classes) || b.dims.len() != 1 {
                return Err(shape_error(&name, format!("[{}]", w.classes), &b.dims));
            }
            f32_values(&b, &name)?
        }
        None => vec![0.0; w.classes],
    };
    let out = first_output(g, n).map_err(|reason| unsupported(g, n, reason))?;
    Ok(finish(g, HeadForm::Conv1x1, &w, weights, bias, out))
}

/// Flattened pooling -> Gemm: `alpha * A * op(B) + beta * C`, `op(B) = B^T` when `transB`.
fn gemm(g: &Graph, n: usize, channels: Option<usize>) -> Result<DenseHead, OnnxError> {
    let node = g.node(n);
    if attr_i(node, "transA", 0) != 0 {
        return Err(unsupported(
            g,
            n,
            format!(
                "Gemm {:?} transposes the pooled feature (transA = 1)",
                g.label(n)
            ),
        ));
    }
    let trans_b = attr_i(node, "transB", 0) != 0;
    let alpha = attr_f(node, "alpha", 1.0);
    let beta = attr_f(node, "beta", 1.0);
    let expected = if trans_b {
        "[K, C] (Gemm with transB = 1)"
    } else {
        "[C, K] (Gemm with transB = 0)"
    };
    let w = weight(g, n, expected, channels, |d| match d {
        [k, c] if trans_b => Some((*k, *c)),
        [c, k] => Some((*k, *c)),
        _ => None,
    })?;
    let values = f32_values(&w.tensor, &w.name)?;
    let weights = if trans_b {
        values.iter().map(|v| v * alpha).collect()
    } else {
        transpose(&values, w.features, w.classes, alpha)
    };
    let bias = match opt_const_input(g, n, 2)? {
        Some((name, t)) => bias_values(&name, &t, w.classes, beta)?,
        None => vec![0.0; w.classes],
    };
    let out = first_output(g, n).map_err(|reason| unsupported(g, n, reason))?;
    Ok(finish(g, HeadForm::Gemm, &w, weights, bias, out))
}

/// Flattened pooling -> MatMul with weight `[C, K]` -> Add with a constant bias (optional).
fn matmul(g: &Graph, n: usize, channels: Option<usize>) -> Result<DenseHead, OnnxError> {
    let w = weight(g, n, "[C, K] (MatMul weight)", channels, |d| match d {
        [c, k] => Some((*k, *c)),
        _ => None,
    })?;
    let weights = transpose(&f32_values(&w.tensor, &w.name)?, w.features, w.classes, 1.0);
    let product = first_output(g, n).map_err(|reason| unsupported(g, n, reason))?;
    // The bias: an Add whose other operand is a constant; without one the head has no bias.
    let add = match g.consumers(product) {
        [a] if g.node(*a).op_type == "Add" && g.node(*a).domain.is_empty() => {
            let add = g.node(*a);
            let other = add.input.iter().find(|i| i.as_str() != product);
            other
                .and_then(|o| g.constant(o).map(|t| (o.clone(), t)))
                .zip(first_output(g, *a).ok())
                .map(|((name, t), out)| (out, name, t))
        }
        _ => None,
    };
    let (logits, bias) = match add {
        Some((out, name, t)) => (out, bias_values(&name, &t, w.classes, 1.0)?),
        None => (product, vec![0.0; w.classes]),
    };
    Ok(finish(g, HeadForm::MatMulAdd, &w, weights, bias, logits))
}

/// `[C][K]` row-major -> `[K][C]` row-major, scaled.
fn transpose(values: &[f32], c: usize, k: usize, scale: f32) -> Vec<f32> {
    let mut out = vec![0.0; c * k];
    for (ci, row) in values.chunks_exact(k).enumerate() {
        for (ki, v) in row.iter().enumerate() {
            out[ki * c + ci] = v * scale;
        }
    }
    out
}

/// Why what follows a pooling is not read as a head graph.
enum GraphHead {
    /// It is no classifier head (the pooling feeds back into the network, or it ends in no
    /// dense layer): the single-layer analysis's reason stands.
    NotAHead,
    /// It is a head, and one we refuse, for the reason given.
    Refused(OnnxError),
}

impl From<OnnxError> for GraphHead {
    fn from(e: OnnxError) -> Self {
        GraphHead::Refused(e)
    }
}

/// Ops a head's last dense layer may be (a Conv only as a 1x1 convolution).
const DENSE: &[&str] = &["Gemm", "MatMul", "Conv"];

/// A head with layers before its last dense one: everything computed from the pooled feature
/// alone (and constants) up to the graph output, whose logits must come from a dense layer.
fn graph_head(
    g: &Graph,
    pool: usize,
    pooled_rank: usize,
    channels: Option<usize>,
) -> Result<DenseHead, GraphHead> {
    let pooled = first_output(g, pool).map_err(|_| GraphHead::NotAHead)?;
    let region = downstream(g, pooled);
    // A pooling whose consumers read the trunk too is inside the network (squeeze-excite).
    let inside = region.iter().any(|&n| {
        g.node(n).input.iter().any(|i| {
            !i.is_empty()
                && i != pooled
                && g.constant(i).is_none()
                && g.producer(i).is_none_or(|p| !region.contains(&p))
        })
    });
    if inside || region.is_empty() {
        return Err(GraphHead::NotAHead);
    }
    let outputs: Vec<&str> = region
        .iter()
        .flat_map(|&n| g.node(n).output.iter())
        .map(String::as_str)
        .filter(|t| g.is_output(t))
        .collect();
    if outputs.is_empty() {
        let ends: Vec<String> = region
            .iter()
            .filter(|&&n| g.node(n).output.iter().all(|o| g.consumers(o).is_empty()))
            .map(|&n| format!("{} {:?}", g.node(n).op_type, g.label(n)))
            .collect();
        return Err(unsupported(
            g,
            pool,
            format!(
                "the {} nodes after it reach no graph output (they end in {}); the classifier's \
                 logits must be an output of the model",
                region.len(),
                ends.join(", ")
            ),
        )
        .into());
    }
    let last = last_dense(g, &outputs).map_err(|reason| unsupported(g, pool, reason))?;
    let Some(last) = last else {
        return Err(GraphHead::NotAHead);
    };
    let mut head = match g.node(last).op_type.as_str() {
        "Gemm" => gemm(g, last, None)?,
        "MatMul" => matmul(g, last, None)?,
        _ => conv(g, last, None)?,
    };
    let input = g.node(last).input.first().map_or("", String::as_str);
    let neck = neck_nodes(g, pooled, input).map_err(|reason| unsupported(g, pool, reason))?;
    check_flattening(g, pooled, &neck, channels)?;
    for &n in &neck {
        check_op(g, n)?;
    }
    if !reshapes_only(g, pooled, input, &neck) {
        let channels = channels.ok_or_else(|| {
            unsupported(
                g,
                pool,
                "the pooled feature's channel count is not known; the head graph needs it".into(),
            )
        })?;
        head.neck = Some(neck_model(g, pooled, pooled_rank, input, &neck, channels));
    } else if channels.is_some_and(|c| c != head.features) {
        return Err(weight_shape_error(
            &g.node(last).input.get(1).cloned().unwrap_or_default(),
            "a dense layer on the pooled feature",
            channels,
            &[head.classes as i64, head.features as i64],
        )
        .into());
    }
    Ok(head)
}

/// Ops that compute a shape for a Reshape from the pooled tensor's shape (torch's
/// `x.view(x.size(0), -1)`: Shape -> Gather -> Unsqueeze -> Concat -> Reshape).
const SHAPE_OPS: &[&str] = &[
    "Shape",
    "Gather",
    "Unsqueeze",
    "Squeeze",
    "Concat",
    "Constant",
    "Cast",
    "Slice",
];

/// Whether the neck only reshapes the pooled tensor into the dense layer's input `input`: the
/// data path from `pooled` is pass-through and flattening ops, and everything else computes
/// shapes from the pooled tensor's shape alone. Such a neck is no neck.
fn reshapes_only(g: &Graph, pooled: &str, input: &str, neck: &[usize]) -> bool {
    let mut data_path = HashSet::new();
    let mut t = input;
    while t != pooled {
        let Some(p) = g.producer(t) else { return false };
        let op = g.node(p).op_type.as_str();
        if !(FLATTEN.contains(&op) || PASS_THROUGH.contains(&op)) || !data_path.insert(p) {
            return false;
        }
        t = g.node(p).input.first().map_or("", String::as_str);
    }
    neck.iter().filter(|n| !data_path.contains(*n)).all(|&n| {
        let node = g.node(n);
        let op = node.op_type.as_str();
        SHAPE_OPS.contains(&op) && (op == "Shape" || !node.input.iter().any(|i| i == pooled))
    })
}

/// Every node computed, directly or not, from `tensor`, in graph order.
fn downstream(g: &Graph, tensor: &str) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut stack = vec![tensor];
    while let Some(t) = stack.pop() {
        for &c in g.consumers(t) {
            if seen.insert(c) {
                stack.extend(g.node(c).output.iter().map(String::as_str));
            }
        }
    }
    let mut nodes: Vec<usize> = seen.into_iter().collect();
    nodes.sort_unstable();
    nodes
}

/// The dense layer the graph outputs come from through post-processing: `None` when one is not
/// dense (the region is no classifier head), an error when the outputs come from different ones.
fn last_dense(g: &Graph, outputs: &[&str]) -> Result<Option<usize>, String> {
    let mut found = None;
    for &out in outputs {
        let mut t = out;
        let producer = loop {
            let Some(p) = g.producer(t) else {
                return Ok(None);
            };
            let node = g.node(p);
            if !POST_PROCESSING.contains(&node.op_type.as_str()) {
                break p;
            }
            t = node.input.first().map_or("", String::as_str);
        };
        let node = g.node(producer);
        // MatMul -> Add of a constant bias reads as the MatMul (which takes the Add with it).
        let dense = match node.op_type.as_str() {
            "Add" if node.input.iter().any(|i| g.constant(i).is_some()) => node
                .input
                .iter()
                .filter_map(|i| g.producer(i))
                .find(|&p| g.node(p).op_type == "MatMul"),
            op if DENSE.contains(&op) && node.domain.is_empty() => Some(producer),
            _ => None,
        };
        let Some(dense) = dense else {
            return Ok(None);
        };
        match found {
            Some(other) if other != dense => {
                return Err(format!(
                    "its outputs come from two different layers, {:?} and {:?}; expected one \
                     classifier",
                    g.label(other),
                    g.label(dense)
                ));
            }
            _ => found = Some(dense),
        }
    }
    Ok(found)
}

/// The nodes computing `target` from the pooled tensor, in graph order (Constant nodes
/// included), or why `target` depends on something else.
fn neck_nodes(g: &Graph, pooled: &str, target: &str) -> Result<Vec<usize>, String> {
    let mut kept = HashSet::new();
    let mut stack = vec![target];
    let mut seen = HashSet::new();
    while let Some(t) = stack.pop() {
        if t.is_empty() || t == pooled || !seen.insert(t) || g.is_initializer(t) {
            continue;
        }
        let Some(p) = g.producer(t) else {
            return Err(format!(
                "the head reads {t:?}, a graph input, besides the pooled feature"
            ));
        };
        kept.insert(p);
        stack.extend(g.node(p).input.iter().map(String::as_str));
    }
    let mut nodes: Vec<usize> = kept.into_iter().collect();
    nodes.sort_unstable();
    Ok(nodes)
}

/// A Flatten, Reshape or Squeeze that takes the pooled feature must leave `[N, C]`.
fn check_flattening(
    g: &Graph,
    pooled: &str,
    neck: &[usize],
    channels: Option<usize>,
) -> Result<(), OnnxError> {
    for &n in neck {
        let node = g.node(n);
        if FLATTEN.contains(&node.op_type.as_str())
            && node.input.first().map(String::as_str) == Some(pooled)
        {
            flat_or_refused(g, n, channels)?;
        }
    }
    Ok(())
}

/// Refuses flattening node `n` when the shape it is known to give is not `[N, C]`.
fn flat_or_refused(g: &Graph, n: usize, channels: Option<usize>) -> Result<(), OnnxError> {
    let Some(shape) = first_output(g, n).ok().and_then(|out| g.shape(out)) else {
        return Ok(());
    };
    let flat = match shape {
        [_, c] => c.fixed().is_none_or(|c| channels.is_none_or(|ch| ch == c)),
        _ => false,
    };
    if flat {
        return Ok(());
    }
    Err(OnnxError::PooledShape {
        node: g.label(n),
        op: g.node(n).op_type.clone(),
        shape: shape.to_vec(),
        channels,
    })
}

/// Refuses a head node tract cannot run: an op outside the standard ONNX domain, or one tract
/// does not implement.
fn check_op(g: &Graph, n: usize) -> Result<(), OnnxError> {
    let node = g.node(n);
    let standard = node.domain.is_empty() || node.domain == "ai.onnx";
    if standard && tract_ops().contains(node.op_type.as_str()) {
        return Ok(());
    }
    Err(OnnxError::HeadOp {
        node: g.label(n),
        op: node.op_type.clone(),
        domain: node.domain.clone(),
    })
}

/// The ONNX ops tract implements.
fn tract_ops() -> &'static HashSet<String> {
    static OPS: std::sync::OnceLock<HashSet<String>> = std::sync::OnceLock::new();
    OPS.get_or_init(|| tract_onnx::onnx().op_register.0.into_keys().collect())
}

/// The neck as a model of its own: the pooled tensor in (`[1, C, 1, 1]` or `[1, C]`), the dense
/// layer's input out, with the nodes and constants they use.
fn neck_model(
    g: &Graph,
    pooled: &str,
    pooled_rank: usize,
    output: &str,
    nodes: &[usize],
    channels: usize,
) -> NeckGraph {
    let nodes: Vec<_> = nodes.iter().map(|&n| g.node(n).clone()).collect();
    let used: HashSet<&str> = nodes
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str))
        .collect();
    let dims: Vec<i64> = if pooled_rank == 4 {
        vec![1, channels as i64, 1, 1]
    } else {
        vec![1, channels as i64]
    };
    let dims = dims.into_iter().map(super::proto::dim).collect();
    let src = g.g;
    let graph = GraphProto {
        name: "head_graph".into(),
        initializer: src
            .initializer
            .iter()
            .filter(|t| used.contains(t.name.as_str()))
            .cloned()
            .collect(),
        input: vec![value_info(pooled, FLOAT, Some(dims))],
        output: vec![value_info(output, FLOAT, None)],
        node: nodes,
        ..GraphProto::default()
    };
    NeckGraph {
        spec: NeckSpec {
            input_name: pooled.to_string(),
            keeps_dims: pooled_rank == 4,
            output_name: output.to_string(),
            ops: graph
                .node
                .iter()
                .filter(|n| n.op_type != "Constant")
                .map(|n| n.op_type.clone())
                .collect(),
        },
        channels,
        model: ModelProto {
            ir_version: g.model.ir_version,
            opset_import: g.model.opset_import.clone(),
            producer_name: "napctl".into(),
            graph: Some(graph),
            ..ModelProto::default()
        },
    }
}
