//! The quantized backbone graphs, written as ONNX that tract loads and runs well.
//!
//! - Weights only: every convolution's weights become int8 codes with a `DequantizeLinear`
//!   that tract folds into a float constant when it loads the model. Small file, float speed.
//!   Grouped (depthwise) convolutions keep f16 weights instead: see `ConvSite::grouped`.
//! - Int8: each pointwise (1x1) convolution, which together hold nearly all of MobileNetV2's
//!   multiply-adds, becomes an int8 x u8 `MatMulInteger` over the activation reshaped to
//!   `[C, H*W]`. The reshape sits on the float side: reshaping the u8 tensor lets a tract rewrite
//!   undo it, and the product then runs as H small ones. Activations are quantized by
//!   Mul / Add / Clip / Cast rather than `QuantizeLinear`, which tract runs slowly and cannot fuse
//!   with its neighbours. Depthwise convolutions and residual adds stay float (our own depthwise
//!   kernel is faster than any int8 form tract offers). The pre-pool tensor leaves as u8 codes.

use super::codes::quantize_weights;
use super::ranges::Observed;
use super::sites::{ConvSite, ExpandFold};
use crate::onnx::proto::{self, Element, attr_int};
use nap_core::int8::Quant;
use std::collections::{HashMap, HashSet};
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto};

/// Builds new nodes and initializers with names that cannot clash with the graph's.
pub(super) struct Emitter {
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
    taken: HashSet<String>,
}

impl Emitter {
    /// An emitter for new parts of `graph`: every name the graph uses is taken.
    pub fn for_graph(graph: &GraphProto) -> Emitter {
        let mut taken: HashSet<String> = graph.initializer.iter().map(|t| t.name.clone()).collect();
        taken.extend(graph.input.iter().map(|i| i.name.clone()));
        for n in &graph.node {
            taken.extend(n.output.iter().cloned());
            taken.insert(n.name.clone());
        }
        Emitter {
            nodes: Vec::new(),
            initializers: Vec::new(),
            taken,
        }
    }

    pub fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut n = 1;
        while !self.taken.insert(name.clone()) {
            n += 1;
            name = format!("{base}.{n}");
        }
        name
    }

    /// A new initializer holding `values`, named after `base`.
    pub fn constant<T: Element>(&mut self, base: &str, dims: &[i64], values: &[T]) -> String {
        let name = self.fresh(base);
        self.initializers.push(proto::tensor(&name, dims, values));
        name
    }

    pub fn node(
        &mut self,
        op: &str,
        inputs: &[&str],
        output: &str,
        attributes: Vec<AttributeProto>,
    ) {
        let name = self.fresh(&format!("{output}/{op}"));
        self.nodes
            .push(proto::node(op, &name, inputs, &[output], attributes));
    }

    /// `x` (float) to u8 codes: `floor(clip(x / scale + zero + 0.5, 0, 255))`, i.e. rounded.
    fn quantize(&mut self, x: &str, q: Quant, output: &str) {
        let inv = self.constant(&format!("{x}/inv_scale"), &[], &[1.0 / q.scale]);
        let offset = self.constant(
            &format!("{x}/offset"),
            &[],
            &[f32::from(q.zero_point) + 0.5],
        );
        let lo = self.constant(&format!("{x}/q_min"), &[], &[0.0f32]);
        let hi = self.constant(&format!("{x}/q_max"), &[], &[255.0f32]);
        let scaled = self.fresh(&format!("{x}/scaled"));
        let shifted = self.fresh(&format!("{x}/shifted"));
        let clipped = self.fresh(&format!("{x}/clipped"));
        self.node("Mul", &[x, &inv], &scaled, vec![]);
        self.node("Add", &[&scaled, &offset], &shifted, vec![]);
        self.node("Clip", &[&shifted, &lo, &hi], &clipped, vec![]);
        self.node(
            "Cast",
            &[&clipped],
            output,
            vec![attr_int("to", DataType::Uint8 as i64)],
        );
    }

    /// The weights of `site` as f16 with a `Cast` to float producing `output`.
    fn f16_weights(&mut self, site: &ConvSite, output: &str) {
        let halves: Vec<half::f16> = site
            .weights
            .iter()
            .map(|&w| half::f16::from_f32(w))
            .collect();
        let halves = self.constant(&format!("{output}/f16"), &site.dims, &halves);
        self.node(
            "Cast",
            &[&halves],
            output,
            vec![attr_int("to", DataType::Float as i64)],
        );
    }

    /// The weights of `site` as int8 codes with a `DequantizeLinear` producing `output`.
    fn dequantized_weights(&mut self, site: &ConvSite, per_channel: bool, output: &str) {
        self.dequantized(&site.weights, &site.dims, per_channel, output);
    }

    /// `weights` of dimensions `dims` (outputs first) as int8 codes, one scale per output or one
    /// for all, with a `DequantizeLinear` producing `output`.
    pub fn dequantized(&mut self, weights: &[f32], dims: &[i64], per_channel: bool, output: &str) {
        let q = quantize_weights(weights, dims[0] as usize, per_channel);
        let codes = self.constant(&format!("{output}/codes"), dims, &q.codes);
        let scale_dims: Vec<i64> = if per_channel { vec![dims[0]] } else { vec![] };
        let scales = self.constant(&format!("{output}/scales"), &scale_dims, &q.scales);
        let zeros = self.constant(
            &format!("{output}/zero_points"),
            &scale_dims,
            &vec![0i8; q.scales.len()],
        );
        self.node(
            "DequantizeLinear",
            &[&codes, &scales, &zeros],
            output,
            vec![attr_int("axis", 0)],
        );
    }
}

/// What the int8 rewrite needs besides the graph.
pub(crate) struct Int8Plan<'a> {
    /// Range and shape of each pointwise convolution's input, by tensor name.
    pub inputs: &'a HashMap<String, Observed>,
    /// Expansion layers to fold.
    pub folds: &'a [ExpandFold],
    /// Codes for the pre-pool tensor (the graph output).
    pub pre_pool: Quant,
}

/// How the weights that stay in float arithmetic are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Storage {
    /// Symmetric int8 codes, per output channel or per tensor (depthwise weights: f16).
    Int8 {
        /// One scale per output channel.
        per_channel: bool,
    },
    /// f16 for every convolution.
    F16,
}

/// Rewrites `model` in place. `sites` are its convolutions; with `int8` the pointwise ones run
/// as integer products and the output becomes u8; the other weights are stored as `storage`.
pub(crate) fn rewrite(
    model: &mut ModelProto,
    sites: &[ConvSite],
    storage: Storage,
    int8: Option<&Int8Plan>,
) -> Result<(), String> {
    let per_channel = matches!(storage, Storage::Int8 { per_channel: true });
    let graph = model.graph.as_mut().ok_or("the backbone has no graph")?;
    let mut e = Emitter::for_graph(graph);
    let by_node: HashMap<usize, &ConvSite> = sites.iter().map(|s| (s.node, s)).collect();
    let mut quantized_inputs: HashMap<String, (String, Quant, Vec<usize>)> = HashMap::new();
    let folds: HashMap<usize, ExpandFold> = int8
        .map(|p| p.folds.iter().map(|f| (f.conv, *f)).collect())
        .unwrap_or_default();
    let folded_clips: HashSet<usize> = folds.values().map(|f| f.clip).collect();
    let mut depthwise_scales: HashMap<usize, Vec<f32>> = HashMap::new();
    let old_nodes = std::mem::take(&mut graph.node);
    let clip_outputs: HashMap<usize, String> = folded_clips
        .iter()
        .map(|&i| (i, old_nodes[i].output[0].clone()))
        .collect();
    for (i, node) in old_nodes.into_iter().enumerate() {
        if folded_clips.contains(&i) {
            continue;
        }
        let Some(site) = by_node.get(&i).filter(|s| !s.stays_float()) else {
            e.nodes.push(node);
            continue;
        };
        match int8 {
            Some(plan) if site.pointwise => {
                let x = &node.input[0];
                let observed = plan
                    .inputs
                    .get(x)
                    .ok_or_else(|| format!("no calibration range for {x}"))?;
                if !quantized_inputs.contains_key(x) {
                    let q = Quant::covering(observed.low, observed.high)
                        .ok_or_else(|| format!("{x} has a range that is not finite"))?;
                    let [1, c, h, w] = observed.shape[..] else {
                        return Err(format!(
                            "{x} has shape {:?}, expected [1, C, H, W]",
                            observed.shape
                        ));
                    };
                    let shape = e.constant(
                        &format!("{x}/matrix_shape"),
                        &[2],
                        &[c as i64, (h * w) as i64],
                    );
                    let matrix = e.fresh(&format!("{x}/matrix"));
                    e.node("Reshape", &[x, &shape], &matrix, vec![]);
                    let codes = e.fresh(&format!("{x}/u8"));
                    e.quantize(&matrix, q, &codes);
                    quantized_inputs.insert(x.clone(), (codes, q, observed.shape.clone()));
                }
                let (codes, q, shape) = quantized_inputs[x].clone();
                let fold = folds
                    .get(&i)
                    .map(|f| (f.max, clip_outputs[&f.clip].as_str()));
                let scales =
                    pointwise_int8(&mut e, &node, site, &codes, q, &shape, per_channel, fold);
                if let Some(f) = folds.get(&i) {
                    depthwise_scales.insert(f.depthwise, scales);
                }
            }
            _ => {
                let base = format!("{}/dequantized", node.input[1]);
                let weights = if let Some(scales) = depthwise_scales.get(&i) {
                    // Weight times both scales: values small enough for f16 to flush them.
                    let taps = site.fan_in();
                    let scaled: Vec<f32> = site
                        .weights
                        .iter()
                        .enumerate()
                        .map(|(k, w)| w * scales[k / taps])
                        .collect();
                    e.constant(&base, &site.dims, &scaled)
                } else {
                    let weights = e.fresh(&base);
                    if site.grouped || storage == Storage::F16 {
                        e.f16_weights(site, &weights);
                    } else {
                        e.dequantized_weights(site, per_channel, &weights);
                    }
                    weights
                };
                let mut node = node;
                node.input[1] = weights;
                e.nodes.push(node);
            }
        }
    }
    graph.node = e.nodes;
    graph.initializer.extend(e.initializers);
    if let Some(plan) = int8 {
        quantize_output(graph, plan.pre_pool)?;
    }
    drop_unused_initializers(graph);
    Ok(())
}

/// One pointwise convolution as `Cast(MatMulInteger(W, x)) * scale + bias`, back to NCHW. With
/// `fold` (the clip's upper bound and output name) it is `Cast(clip(MatMulInteger(W, x) + bias'))`
/// in units of each channel's scale instead, written as the clip's output. Returns the
/// per-channel scales.
#[allow(clippy::too_many_arguments)]
fn pointwise_int8(
    e: &mut Emitter,
    node: &NodeProto,
    site: &ConvSite,
    codes: &str,
    q: Quant,
    shape: &[usize],
    per_channel: bool,
    fold: Option<(f32, &str)>,
) -> Vec<f32> {
    let (out, c) = (site.outputs(), site.fan_in());
    let (h, w) = (shape[2], shape[3]);
    let weights = quantize_weights(&site.weights, out, per_channel);
    let base = &node.output[0];
    let wq = e.constant(
        &format!("{base}/weights_i8"),
        &[out as i64, c as i64],
        &weights.codes,
    );
    let mut inputs = vec![wq.clone(), codes.to_string()];
    if q.zero_point != 0 {
        let a_zero = e.constant(&format!("{base}/weights_zero"), &[], &[0i8]);
        let x_zero = e.constant(&format!("{base}/input_zero"), &[], &[q.zero_point]);
        inputs.extend([a_zero, x_zero]);
    }
    let inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
    let acc = e.fresh(&format!("{base}/i32"));
    e.node("MatMulInteger", &inputs, &acc, vec![]);
    let scales: Vec<f32> = (0..out)
        .map(|o| q.scale * weights.scales[if per_channel { o } else { 0 }])
        .collect();
    let nchw = e.constant(
        &format!("{base}/nchw"),
        &[4],
        &[1, out as i64, h as i64, w as i64],
    );
    if let Some((max, output)) = fold {
        let mut acc = acc;
        if let Some(bias) = &site.bias {
            let codes: Vec<i32> = bias
                .iter()
                .zip(&scales)
                .map(|(b, s)| (b / s).round() as i32)
                .collect();
            let column = e.constant(&format!("{base}/bias_i32"), &[out as i64, 1], &codes);
            let biased = e.fresh(&format!("{base}/biased"));
            e.node("Add", &[&acc, &column], &biased, vec![]);
            acc = biased;
        }
        let zero = e.constant(&format!("{base}/zero_i32"), &[], &[0i32]);
        let ceiling: Vec<i32> = scales.iter().map(|s| (max / s).round() as i32).collect();
        let ceiling = e.constant(&format!("{base}/max_i32"), &[out as i64, 1], &ceiling);
        let floored = e.fresh(&format!("{base}/floored"));
        e.node("Max", &[&acc, &zero], &floored, vec![]);
        let clipped = e.fresh(&format!("{base}/clipped"));
        e.node("Min", &[&floored, &ceiling], &clipped, vec![]);
        let accf = e.fresh(&format!("{base}/acc"));
        e.node(
            "Cast",
            &[&clipped],
            &accf,
            vec![attr_int("to", DataType::Float as i64)],
        );
        e.node("Reshape", &[&accf, &nchw], output, vec![]);
        return scales;
    }
    let accf = e.fresh(&format!("{base}/acc"));
    e.node(
        "Cast",
        &[&acc],
        &accf,
        vec![attr_int("to", DataType::Float as i64)],
    );
    let scale = e.constant(&format!("{base}/scale"), &[out as i64, 1], &scales);
    let scaled = e.fresh(&format!("{base}/scaled"));
    e.node("Mul", &[&accf, &scale], &scaled, vec![]);
    let mut matrix = scaled;
    if let Some(bias) = &site.bias {
        let column = e.constant(&format!("{base}/bias"), &[out as i64, 1], bias);
        let biased = e.fresh(&format!("{base}/biased"));
        e.node("Add", &[&matrix, &column], &biased, vec![]);
        matrix = biased;
    }
    e.node("Reshape", &[&matrix, &nchw], base, vec![]);
    scales
}

/// The graph output becomes u8 codes; the float tensor it was is renamed.
fn quantize_output(graph: &mut GraphProto, q: Quant) -> Result<(), String> {
    let [output] = &graph.output[..] else {
        return Err("the backbone must have exactly one output".into());
    };
    let name = output.name.clone();
    let mut e = Emitter::for_graph(graph);
    let float = e.fresh(&format!("{name}/f32"));
    for node in &mut graph.node {
        for o in node.output.iter_mut().filter(|o| **o == name) {
            o.clone_from(&float);
        }
        for i in node.input.iter_mut().filter(|i| **i == name) {
            i.clone_from(&float);
        }
    }
    // The output's declared type changes; its shape stays.
    if let Some(tract_onnx::pb::type_proto::Value::TensorType(t)) = graph.output[0]
        .r#type
        .as_mut()
        .and_then(|t| t.value.as_mut())
    {
        t.elem_type = DataType::Uint8 as i32;
    }
    e.quantize(&float, q, &name);
    graph.node.extend(e.nodes);
    graph.initializer.extend(e.initializers);
    Ok(())
}

pub(super) fn drop_unused_initializers(graph: &mut GraphProto) {
    let used: HashSet<String> = graph
        .node
        .iter()
        .flat_map(|n| n.input.iter().cloned())
        .collect();
    graph.initializer.retain(|t| used.contains(&t.name));
}
