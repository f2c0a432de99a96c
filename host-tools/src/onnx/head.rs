//! Recognising the classifier head after a pooling node and reading it as a dense affine map.

use super::graph::Graph;
use super::tensor::{attr_f, attr_i, attr_ints, element_count, f32_values};
use super::{HeadForm, OnnxError};
use std::borrow::Cow;
use tract_onnx::pb::TensorProto;

/// A recognised head: `logits = weights * pooled + bias`.
#[derive(Clone, Debug)]
pub(crate) struct Head {
    pub form: HeadForm,
    pub features: usize,
    pub classes: usize,
    /// Row-major `[classes][features]`.
    pub weights: Vec<f32>,
    pub bias: Vec<f32>,
    /// The tensor of the source graph that holds the logits.
    pub logits: String,
    /// The graph output the logits reach through post-processing only (Softmax, Squeeze, ...).
    pub output: Option<String>,
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
/// kept dims, 2 without), given the pre-pool channel count when known.
pub(crate) fn analyse(
    g: &Graph,
    pool: usize,
    pooled_rank: usize,
    channels: Option<usize>,
) -> Result<Head, OnnxError> {
    let unsupported = |reason: String| OnnxError::UnsupportedHead {
        pool: g.label(pool),
        reason,
    };
    // Head readers label unsupported cases with their own node; report the pooling node instead.
    let with_pool = |e: OnnxError| match e {
        OnnxError::UnsupportedHead { reason, .. } => unsupported(reason),
        e => e,
    };
    let expected = "expected Conv (1x1) [-> Squeeze], Flatten/Reshape -> Gemm, or \
                    Flatten/Reshape -> MatMul [-> Add]";
    let mut tensor = first_output(g, pool).map_err(unsupported)?;
    let mut flat = pooled_rank == 2;
    // Each step moves one node on; more steps than nodes means a (malformed) cycle.
    for _ in 0..=g.g.node.len() {
        let next = single_consumer(g, tensor).map_err(unsupported)?;
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
            return Err(unsupported(format!(
                "{op}{domain} node {:?} follows; {expected}",
                g.label(next)
            )));
        }
        if node.input.first().map(String::as_str) != Some(tensor) {
            return Err(unsupported(format!(
                "the pooled feature {tensor:?} enters {op} node {:?} as a later input, not as its \
                 data input",
                g.label(next)
            )));
        }
        match op {
            "Flatten" => {
                let axis = attr_i(node, "axis", 1);
                if !(axis == 1 || (!flat && axis == -3)) {
                    return Err(unsupported(format!(
                        "Flatten node {:?} has axis {axis}; expected 1",
                        g.label(next)
                    )));
                }
                flat = true;
            }
            _ if FLATTEN.contains(&op) => flat = true,
            "Conv" if !flat => return conv(g, next, channels).map_err(with_pool),
            "Conv" => {
                return Err(unsupported(format!(
                    "Conv node {:?} follows the flattened pooled feature",
                    g.label(next)
                )));
            }
            "Gemm" if flat => return gemm(g, next, channels).map_err(with_pool),
            "MatMul" if flat => return matmul(g, next, channels).map_err(with_pool),
            "Gemm" | "MatMul" => {
                return Err(unsupported(format!(
                    "{op} node {:?} takes the 4-D pooled tensor without a Flatten/Reshape",
                    g.label(next)
                )));
            }
            _ => {} // pass-through
        }
        tensor = first_output(g, next).map_err(unsupported)?;
    }
    Err(unsupported(format!(
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

fn shape_error(tensor: &str, expected: String, found: &[i64]) -> OnnxError {
    OnnxError::HeadShape {
        tensor: tensor.to_string(),
        expected,
        found: found.to_vec(),
    }
}

fn channels_note(channels: Option<usize>) -> String {
    channels.map_or_else(String::new, |c| {
        format!(" with C = {c} (the pre-pool channels)")
    })
}

/// Checks the feature count `c` read from a weight against the pre-pool channels.
fn check_channels(
    tensor: &str,
    c: i64,
    channels: Option<usize>,
    expected: &str,
    dims: &[i64],
) -> Result<usize, OnnxError> {
    let ok = c > 0 && channels.is_none_or(|ch| ch as i64 == c);
    if ok {
        Ok(c as usize)
    } else {
        Err(shape_error(
            tensor,
            format!("{expected}{}", channels_note(channels)),
            dims,
        ))
    }
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

fn finish<'a>(
    g: &Graph<'a>,
    form: HeadForm,
    features: usize,
    classes: usize,
    weights: Vec<f32>,
    bias: Vec<f32>,
    logits: &'a str,
) -> Head {
    let logits = follow_shape_ops(g, logits);
    Head {
        form,
        features,
        classes,
        weights,
        bias,
        output: reaches_output(g, logits),
        logits: logits.to_string(),
    }
}

/// Pooling -> 1x1 Conv: weights `[K, C, 1, 1]`, optional bias `[K]`, group 1, no padding.
fn conv(g: &Graph, n: usize, channels: Option<usize>) -> Result<Head, OnnxError> {
    let node = g.node(n);
    let unsupported = |reason: String| OnnxError::UnsupportedHead {
        pool: g.label(n),
        reason,
    };
    let group = attr_i(node, "group", 1);
    if group != 1 {
        return Err(unsupported(format!(
            "the 1x1 Conv {:?} has group = {group}; only group 1 is supported",
            g.label(n)
        )));
    }
    if attr_ints(node, "pads").is_some_and(|p| p.iter().any(|&v| v != 0)) {
        return Err(unsupported(format!(
            "the 1x1 Conv {:?} pads its input; expected no padding",
            g.label(n)
        )));
    }
    let w_name = node.input.get(1).cloned().unwrap_or_default();
    let w = const_input(g, n, 1)?;
    let expected = "[K, C, 1, 1] (a 1x1 convolution)";
    let [k, c, 1, 1] = w.dims[..] else {
        return Err(shape_error(
            &w_name,
            format!("{expected}{}", channels_note(channels)),
            &w.dims,
        ));
    };
    if k <= 0 {
        return Err(shape_error(&w_name, expected.into(), &w.dims));
    }
    let features = check_channels(&w_name, c, channels, expected, &w.dims)?;
    let classes = k as usize;
    let weights = f32_values(&w, &w_name)?;
    let bias = match opt_const_input(g, n, 2)? {
        Some((name, b)) => {
            if element_count(&b.dims) != Some(classes) || b.dims.len() != 1 {
                return Err(shape_error(&name, format!("[{classes}]"), &b.dims));
            }
            f32_values(&b, &name)?
        }
        None => vec![0.0; classes],
    };
    let out = first_output(g, n).map_err(unsupported)?;
    Ok(finish(
        g,
        HeadForm::Conv1x1,
        features,
        classes,
        weights,
        bias,
        out,
    ))
}

/// Flattened pooling -> Gemm: `alpha * A * op(B) + beta * C`, `op(B) = B^T` when `transB`.
fn gemm(g: &Graph, n: usize, channels: Option<usize>) -> Result<Head, OnnxError> {
    let node = g.node(n);
    if attr_i(node, "transA", 0) != 0 {
        return Err(OnnxError::UnsupportedHead {
            pool: g.label(n),
            reason: format!(
                "Gemm {:?} transposes the pooled feature (transA = 1)",
                g.label(n)
            ),
        });
    }
    let trans_b = attr_i(node, "transB", 0) != 0;
    let alpha = attr_f(node, "alpha", 1.0);
    let beta = attr_f(node, "beta", 1.0);
    let b_name = node.input.get(1).cloned().unwrap_or_default();
    let b = const_input(g, n, 1)?;
    let expected = if trans_b {
        "[K, C] (Gemm with transB = 1)"
    } else {
        "[C, K] (Gemm with transB = 0)"
    };
    let [r, s] = b.dims[..] else {
        return Err(shape_error(
            &b_name,
            format!("{expected}{}", channels_note(channels)),
            &b.dims,
        ));
    };
    let (k, c) = if trans_b { (r, s) } else { (s, r) };
    if k <= 0 {
        return Err(shape_error(&b_name, expected.into(), &b.dims));
    }
    let features = check_channels(&b_name, c, channels, expected, &b.dims)?;
    let classes = k as usize;
    let values = f32_values(&b, &b_name)?;
    let weights = if trans_b {
        values.iter().map(|v| v * alpha).collect()
    } else {
        transpose(&values, features, classes, alpha)
    };
    let bias = match opt_const_input(g, n, 2)? {
        Some((name, t)) => bias_values(&name, &t, classes, beta)?,
        None => vec![0.0; classes],
    };
    let out = first_output(g, n).map_err(|reason| OnnxError::UnsupportedHead {
        pool: g.label(n),
        reason,
    })?;
    Ok(finish(
        g,
        HeadForm::Gemm,
        features,
        classes,
        weights,
        bias,
        out,
    ))
}

/// Flattened pooling -> MatMul with weight `[C, K]` -> Add with a constant bias (optional).
fn matmul(g: &Graph, n: usize, channels: Option<usize>) -> Result<Head, OnnxError> {
    let node = g.node(n);
    let w_name = node.input.get(1).cloned().unwrap_or_default();
    let w = const_input(g, n, 1)?;
    let expected = "[C, K] (MatMul weight)";
    let [c, k] = w.dims[..] else {
        return Err(shape_error(
            &w_name,
            format!("{expected}{}", channels_note(channels)),
            &w.dims,
        ));
    };
    if k <= 0 {
        return Err(shape_error(&w_name, expected.into(), &w.dims));
    }
    let features = check_channels(&w_name, c, channels, expected, &w.dims)?;
    let classes = k as usize;
    let weights = transpose(&f32_values(&w, &w_name)?, features, classes, 1.0);
    let product = first_output(g, n).map_err(|reason| OnnxError::UnsupportedHead {
        pool: g.label(n),
        reason,
    })?;
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
        Some((out, name, t)) => (out, bias_values(&name, &t, classes, 1.0)?),
        None => (product, vec![0.0; classes]),
    };
    Ok(finish(
        g,
        HeadForm::MatMulAdd,
        features,
        classes,
        weights,
        bias,
        logits,
    ))
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
