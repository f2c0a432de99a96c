//! The convolutions of a float backbone as the quantizer sees them: their weights, which ones
//! are pointwise or grouped, which stay float, and the expansion layers whose clip can run on the
//! integer accumulator.

use crate::onnx::OnnxError;
use crate::onnx::graph::Graph;
use crate::onnx::tensor::{attr, attr_i, attr_ints, f32_values};

/// A convolution of the backbone as the quantizer sees it.
#[derive(Clone, Debug)]
pub(crate) struct ConvSite {
    /// Index of the node in the graph.
    pub node: usize,
    /// Its float weights.
    pub weights: Vec<f32>,
    /// Their dimensions `[out, in / group, kh, kw]`.
    pub dims: Vec<i64>,
    /// Its float bias, if it has one.
    pub bias: Option<Vec<f32>>,
    /// A 1x1 convolution, stride 1, no padding, one group: it becomes a matrix product.
    pub pointwise: bool,
    /// A grouped (depthwise) convolution: few weights per channel, each of which matters, so
    /// they are stored as f16 rather than int8 (int8 here cost MobileNetV2 more pre-pool
    /// accuracy than all its pointwise layers together).
    pub grouped: bool,
}

impl ConvSite {
    /// Output channels.
    pub fn outputs(&self) -> usize {
        self.dims[0] as usize
    }

    /// Weights per output channel.
    pub fn fan_in(&self) -> usize {
        self.weights.len() / self.outputs()
    }

    /// Not worth quantizing: a layer with few weights costs nothing to store as float and sits
    /// early in the network (MobileNetV2's first five pointwise layers), where int8 error does
    /// the most harm downstream; a pointwise layer with short dot products (fewer than 64 inputs
    /// per output) gains less from int8 arithmetic than it spends converting its activations.
    pub fn stays_float(&self) -> bool {
        self.weights.len() < SMALL_LAYER || (self.pointwise && self.fan_in() < 64)
    }
}

/// Convolutions with fewer weights than this stay float.
pub(super) const SMALL_LAYER: usize = 4096;

/// An expansion layer: a pointwise convolution whose only use is a ReLU6-style clip whose only
/// use is a depthwise convolution. Its bias and clip run on the int32 accumulator and its
/// per-channel scale moves into the depthwise weights, so only a cast is left between the
/// integer product and the depthwise kernel.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ExpandFold {
    /// The pointwise convolution's node.
    pub conv: usize,
    /// The clip's node.
    pub clip: usize,
    /// The depthwise convolution's node.
    pub depthwise: usize,
    /// The clip's upper bound (its lower bound is 0).
    pub max: f32,
}

/// Every convolution with constant float weights, and whether it is pointwise (none: an empty
/// list).
pub(super) fn conv_sites(graph: &Graph) -> Result<Vec<ConvSite>, OnnxError> {
    let mut sites = Vec::new();
    for (i, node) in graph.g.node.iter().enumerate() {
        if node.op_type != "Conv" || !node.domain.is_empty() {
            continue;
        }
        let Some(w) = node.input.get(1).and_then(|w| graph.constant(w)) else {
            continue;
        };
        let weights = f32_values(&w, &node.input[1])?;
        if w.dims.len() != 4 || w.dims[0] <= 0 || weights.is_empty() {
            continue;
        }
        let bias = match node.input.get(2).filter(|b| !b.is_empty()) {
            None => None,
            Some(b) => match graph.constant(b) {
                Some(t) => Some(f32_values(&t, b)?),
                None => continue,
            },
        };
        let ones = |name: &str| attr_ints(node, name).is_none_or(|v| v.iter().all(|&x| x == 1));
        let zeros = attr_ints(node, "pads").is_none_or(|v| v.iter().all(|&x| x == 0));
        let pointwise = w.dims[2] == 1
            && w.dims[3] == 1
            && attr_i(node, "group", 1) == 1
            && ones("strides")
            && ones("dilations")
            && zeros;
        sites.push(ConvSite {
            node: i,
            weights,
            dims: w.dims.clone(),
            bias,
            pointwise,
            grouped: attr_i(node, "group", 1) != 1,
        });
    }
    Ok(sites)
}

/// The expansion layers of the graph (see [`ExpandFold`]).
pub(super) fn expand_folds(graph: &Graph, sites: &[ConvSite]) -> Vec<ExpandFold> {
    let only_use = |tensor: &str| match graph.consumers(tensor) {
        [one] if !graph.is_output(tensor) => Some(*one),
        _ => None,
    };
    let mut folds = Vec::new();
    for site in sites.iter().filter(|s| s.pointwise && !s.stays_float()) {
        let Some(clip) = only_use(&graph.node(site.node).output[0]) else {
            continue;
        };
        let Some((0.0, max)) = activation_bounds(graph, clip).filter(|b| b.1.is_finite()) else {
            continue;
        };
        let clipped = &graph.node(clip).output[0];
        let Some(depthwise) = only_use(clipped) else {
            continue;
        };
        let is_depthwise = sites
            .iter()
            .any(|s| s.node == depthwise && s.grouped && !s.stays_float());
        if is_depthwise && graph.node(depthwise).input[0] == *clipped {
            folds.push(ExpandFold {
                conv: site.node,
                clip,
                depthwise,
                max,
            });
        }
    }
    folds
}

/// The constant bounds of the Clip or Relu at node `i`, if it is one; a bound a Clip leaves out
/// is infinite.
pub(super) fn activation_bounds(graph: &Graph, i: usize) -> Option<(f32, f32)> {
    let node = graph.node(i);
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return None;
    }
    match node.op_type.as_str() {
        "Relu" => Some((0.0, f32::INFINITY)),
        "Clip" => {
            // Opset 11 on: optional constant inputs; before: attributes, defaulting to none.
            let bound = |k: usize, attr_name: &str, none: f32| -> Option<f32> {
                match node.input.get(k).filter(|s| !s.is_empty()) {
                    Some(name) => f32_values(&*graph.constant(name)?, name)
                        .ok()?
                        .first()
                        .copied(),
                    None => Some(attr(node, attr_name).map_or(none, |a| a.f)),
                }
            };
            Some((
                bound(1, "min", f32::NEG_INFINITY)?,
                bound(2, "max", f32::INFINITY)?,
            ))
        }
        _ => None,
    }
}
