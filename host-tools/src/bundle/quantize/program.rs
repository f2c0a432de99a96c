//! The integer program: the float backbone re-expressed as the layers nap-core's integer kernels
//! run end to end (u8 codes from the frame to the pre-pool tensor, no float between layers).
//!
//! Two steps, so one calibration run serves the whole quantizer: [`Plan::new`] walks the graph
//! and maps each node to a kernel (or names the node no kernel covers), and lists the tensors
//! whose ranges calibration must observe; [`Plan::program`] turns the plan and those ranges into
//! a [`Program`] with weight codes, biases and every tensor's codes.

use super::codes::quantize_weights;
use super::ranges::Observed;
use super::sites::activation_bounds;
use crate::onnx::graph::Graph;
use crate::onnx::tensor::{attr_i, attr_ints, attr_s, f32_values};
use nap_core::int8::Quant;
use nap_runtime::bundle::InputSpec;
use nap_runtime::integer::{Conv, IntegerBackbone, Layer, Op, Program};
use std::collections::{HashMap, HashSet};
use std::fmt;

/// Why a backbone gets no integer program: the node or value the integer kernels cannot run.
/// The int8 bundle is still made; its backbone runs in tract.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct NoProgram(pub String);

/// How many layers of each kind a program has: what `napctl quantize` reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LayerCounts {
    /// 3x3 stride-2 convolutions over the frame.
    pub stem: usize,
    /// 3x3 depthwise convolutions.
    pub depthwise: usize,
    /// 1x1 convolutions.
    pub pointwise: usize,
    /// Residual additions.
    pub add: usize,
}

impl LayerCounts {
    /// Counts the layers of `program` by kind.
    pub fn of(program: &Program) -> LayerCounts {
        let mut n = LayerCounts::default();
        for layer in &program.layers {
            match layer.op {
                Op::Stem { .. } => n.stem += 1,
                Op::Depthwise { .. } => n.depthwise += 1,
                Op::Pointwise(_) => n.pointwise += 1,
                Op::Add { .. } => n.add += 1,
            }
        }
        n
    }
}

impl fmt::Display for LayerCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} stem, {} depthwise, {} pointwise, {} add",
            self.stem, self.depthwise, self.pointwise, self.add
        )
    }
}

/// The frame's codes, exactly from the preprocessing: pixels 0..=255 become
/// `(pixel - mean[c]) / std[c]`, so the codes cover the lowest and highest value any channel
/// can take. No calibration is needed.
pub fn frame_quant(input: &InputSpec) -> Option<Quant> {
    let (mut low, mut high) = (f32::INFINITY, f32::NEG_INFINITY);
    for c in 0..3 {
        for pixel in [0.0f32, 255.0] {
            // The expression of `nap_runtime::preprocess`'s lookup table.
            let v = (pixel - input.mean[c]) / input.std[c];
            low = low.min(v);
            high = high.max(v);
        }
    }
    Quant::covering(low, high)
}

/// The backbone's nodes mapped to integer layers, before calibration gives their codes.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    layers: Vec<Planned>,
}

/// One planned layer.
#[derive(Clone, Debug)]
struct Planned {
    op: PlannedOp,
    /// The tensor it writes: the fused clip's output when it has one.
    output: String,
    /// The bounds of a fused Clip or Relu, in real units.
    clamp: Option<(f32, f32)>,
}

#[derive(Clone, Debug)]
enum PlannedOp {
    Conv {
        kind: ConvKind,
        /// The program tensor it reads.
        input: u32,
        /// Float weights, ONNX order.
        weights: Vec<f32>,
        outputs: usize,
        bias: Option<Vec<f32>>,
    },
    Add {
        a: u32,
        b: u32,
    },
}

#[derive(Clone, Copy, Debug)]
enum ConvKind {
    Stem { pads: [u8; 4] },
    Pointwise,
    Depthwise { stride: u8, pads: [u8; 4] },
}

impl Plan {
    /// Maps every node of the backbone to an integer layer, in graph order: convolutions to
    /// stem, pointwise or depthwise layers, a Clip or Relu that is the only use of a layer's
    /// output into that layer's clamp, Add to a residual add. Any other node is named in the
    /// error.
    pub fn new(graph: &Graph) -> Result<Plan, NoProgram> {
        let input = graph
            .g
            .input
            .iter()
            .find(|i| !graph.is_initializer(&i.name))
            .ok_or_else(|| NoProgram("the backbone has no input".into()))?;
        let mut index: HashMap<String, u32> = HashMap::from([(input.name.clone(), 0)]);
        let mut fused = HashSet::new();
        let mut layers: Vec<Planned> = Vec::new();
        for (i, node) in graph.g.node.iter().enumerate() {
            if fused.contains(&i) {
                continue;
            }
            let unsupported = || {
                NoProgram(format!(
                    "the integer kernels do not cover {} (node {})",
                    node.op_type,
                    graph.label(i)
                ))
            };
            if !node.domain.is_empty() && node.domain != "ai.onnx" {
                return Err(unsupported());
            }
            let read = |k: usize| tensor_of(graph, i, &index, k);
            let op = match node.op_type.as_str() {
                "Constant" => continue,
                "Identity" => {
                    let t = read(0)?;
                    index.insert(node.output[0].clone(), t);
                    continue;
                }
                "Conv" => conv_op(graph, i, read(0)?)?,
                "Add" => PlannedOp::Add {
                    a: read(0)?,
                    b: read(1)?,
                },
                "Clip" | "Relu" => {
                    return Err(NoProgram(format!(
                        "{} (node {}) is not the only use of a convolution's or an add's \
                         output, so the integer kernels cannot fuse it",
                        node.op_type,
                        graph.label(i)
                    )));
                }
                _ => return Err(unsupported()),
            };
            let (output, clamp) = match fused_clamp(graph, &node.output[0]) {
                Some((j, bounds)) => {
                    fused.insert(j);
                    (graph.node(j).output[0].clone(), Some(bounds))
                }
                None => (node.output[0].clone(), None),
            };
            layers.push(Planned { op, output, clamp });
            index.insert(layers[layers.len() - 1].output.clone(), layers.len() as u32);
        }
        let out = &graph
            .g
            .output
            .first()
            .ok_or_else(|| NoProgram("the backbone has no output".into()))?
            .name;
        if layers.is_empty() || index.get(out.as_str()) != Some(&(layers.len() as u32)) {
            return Err(NoProgram(format!(
                "the backbone's output {out} is not the last integer layer's"
            )));
        }
        Ok(Plan { layers })
    }

    /// The tensors whose ranges calibration must observe: every layer's output.
    pub fn tensors(&self) -> impl Iterator<Item = &str> {
        self.layers.iter().map(|l| l.output.as_str())
    }

    /// The program from the plan: `input` codes the frame (see [`frame_quant`]), each layer's
    /// codes cover its output's `observed` range, except the last, whose codes are `pre_pool`
    /// (the manifest's); weights get symmetric int8 codes, per channel or one scale for all.
    /// The program is prepared once here, so a program the runtime would refuse is an error.
    pub fn program(
        &self,
        size: u32,
        input: Quant,
        observed: &HashMap<String, Observed>,
        pre_pool: Quant,
        per_channel: bool,
    ) -> Result<Program, NoProgram> {
        let mut quants = vec![input];
        let mut layers = Vec::with_capacity(self.layers.len());
        for (k, planned) in self.layers.iter().enumerate() {
            let output = if k + 1 == self.layers.len() {
                pre_pool
            } else {
                let seen = observed.get(&planned.output).ok_or_else(|| {
                    NoProgram(format!("calibration did not observe {}", planned.output))
                })?;
                Quant::covering(seen.low, seen.high).ok_or_else(|| {
                    NoProgram(format!(
                        "{} has the range [{}, {}], not finite",
                        planned.output, seen.low, seen.high
                    ))
                })?
            };
            let op = match &planned.op {
                PlannedOp::Add { a, b } => Op::Add { a: *a, b: *b },
                PlannedOp::Conv {
                    kind,
                    input,
                    weights,
                    outputs,
                    bias,
                } => {
                    let conv = quantize_conv(
                        *input,
                        quants[*input as usize],
                        weights,
                        *outputs,
                        bias.as_deref(),
                        per_channel,
                    )
                    .map_err(|e| NoProgram(format!("layer {k} ({}): {e}", planned.output)))?;
                    match *kind {
                        ConvKind::Stem { pads } => Op::Stem { conv, pads },
                        ConvKind::Pointwise => Op::Pointwise(conv),
                        ConvKind::Depthwise { stride, pads } => {
                            Op::Depthwise { conv, stride, pads }
                        }
                    }
                }
            };
            let clamp = planned.clamp.map_or([0, 255], |(lo, hi)| {
                [output.quantize(lo), output.quantize(hi)]
            });
            quants.push(output);
            layers.push(Layer { op, output, clamp });
        }
        let program = Program {
            size,
            input,
            layers,
        };
        IntegerBackbone::new(&program).map_err(|e| NoProgram(e.to_string()))?;
        Ok(program)
    }
}

/// The program tensor node `i` reads as its input `k`.
fn tensor_of(
    graph: &Graph,
    i: usize,
    index: &HashMap<String, u32>,
    k: usize,
) -> Result<u32, NoProgram> {
    let node = graph.node(i);
    let name = node.input.get(k).map_or("", String::as_str);
    index.get(name).copied().ok_or_else(|| {
        NoProgram(format!(
            "{} (node {}) reads {name:?}, which no integer layer writes",
            node.op_type,
            graph.label(i)
        ))
    })
}

/// The Clip or Relu that is the only use of `tensor`, with its constant bounds.
fn fused_clamp(graph: &Graph, tensor: &str) -> Option<(usize, (f32, f32))> {
    let [j] = graph.consumers(tensor) else {
        return None;
    };
    if graph.is_output(tensor) || graph.node(*j).input.first().map(String::as_str) != Some(tensor) {
        return None;
    }
    Some((*j, activation_bounds(graph, *j)?))
}

/// The convolution at node `i` reading program tensor `input`, as the kernel that runs it.
fn conv_op(graph: &Graph, i: usize, input: u32) -> Result<PlannedOp, NoProgram> {
    let node = graph.node(i);
    let label = graph.label(i);
    let fail = |what: String| NoProgram(format!("Conv (node {label}): {what}"));
    let constant = |k: usize| -> Result<Option<Vec<f32>>, NoProgram> {
        match node.input.get(k).filter(|s| !s.is_empty()) {
            None => Ok(None),
            Some(name) => {
                let t = graph
                    .constant(name)
                    .ok_or_else(|| fail(format!("{name} is not a constant")))?;
                f32_values(&t, name)
                    .map(Some)
                    .map_err(|e| fail(e.to_string()))
            }
        }
    };
    let weights = constant(1)?.ok_or_else(|| fail("no weights".into()))?;
    let dims = graph
        .constant(&node.input[1])
        .map(|t| t.dims.clone())
        .unwrap_or_default();
    let [m, per_group, kh, kw] = dims[..] else {
        return Err(fail(format!(
            "weights of shape {dims:?}, expected 4 dimensions"
        )));
    };
    let bias = constant(2)?;
    if bias.as_ref().is_some_and(|b| b.len() as i64 != m) {
        return Err(fail(format!("a bias not of its {m} output channels")));
    }
    if attr_s(node, "auto_pad").is_some_and(|p| !p.is_empty() && p != "NOTSET") {
        return Err(fail("auto_pad is not supported; explicit pads are".into()));
    }
    if attr_ints(node, "dilations").is_some_and(|d| d.iter().any(|&x| x != 1)) {
        return Err(fail("dilated convolutions are not supported".into()));
    }
    let strides = attr_ints(node, "strides").map_or(vec![1, 1], <[i64]>::to_vec);
    let pads = attr_ints(node, "pads").map_or(vec![0; 4], <[i64]>::to_vec);
    let group = attr_i(node, "group", 1);
    let pads: [u8; 4] = match pads[..] {
        [t, l, b, r] if [t, l, b, r].iter().all(|p| (0..=2).contains(p)) => {
            [t as u8, l as u8, b as u8, r as u8]
        }
        _ => return Err(fail(format!("pads {pads:?}, each must be 0..=2"))),
    };
    let square3 = kh == 3 && kw == 3;
    let kind = if input == 0 {
        if square3 && strides == [2, 2] && group == 1 && per_group == 3 {
            ConvKind::Stem { pads }
        } else {
            return Err(fail(format!(
                "a {kh}x{kw} convolution, strides {strides:?}, group {group}, over the frame; \
                 the integer stem is 3x3, stride 2, over 3 channels"
            )));
        }
    } else if kh == 1 && kw == 1 && strides == [1, 1] && group == 1 && pads == [0; 4] {
        ConvKind::Pointwise
    } else if let &[s @ (1 | 2), t] = &strides[..]
        && s == t
        && square3
        && per_group == 1
        && group == m
    {
        ConvKind::Depthwise {
            stride: s as u8,
            pads,
        }
    } else {
        return Err(fail(format!(
            "the integer kernels do not cover a {kh}x{kw} convolution with strides {strides:?}, \
             group {group} and pads {pads:?} (they run 1x1 pointwise and 3x3 depthwise)"
        )));
    };
    Ok(PlannedOp::Conv {
        kind,
        input,
        weights,
        outputs: m as usize,
        bias,
    })
}

/// Symmetric weight codes and the bias in units of `input scale * weight scale`.
fn quantize_conv(
    input: u32,
    input_quant: Quant,
    weights: &[f32],
    outputs: usize,
    bias: Option<&[f32]>,
    per_channel: bool,
) -> Result<Conv, String> {
    let q = quantize_weights(weights, outputs, per_channel);
    let weight_scales = if per_channel {
        q.scales
    } else {
        vec![q.scales[0]; outputs]
    };
    let bias = (0..outputs)
        .map(|m| {
            let b = bias.map_or(0.0, |b| f64::from(b[m]));
            let units = f64::from(input_quant.scale) * f64::from(weight_scales[m]);
            let code = (b / units).round();
            if code.abs() <= f64::from(i32::MAX) {
                Ok(code as i32)
            } else {
                Err(format!(
                    "output channel {m}: bias {b} is {code} units of {units}, beyond i32"
                ))
            }
        })
        .collect::<Result<_, _>>()?;
    Ok(Conv {
        input,
        weights: q.codes,
        weight_scales,
        bias,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::proto::{attr_ints, dim, node, tensor, value_info};
    use tract_onnx::pb::tensor_proto::DataType;
    use tract_onnx::pb::{GraphProto, ModelProto, NodeProto, OperatorSetIdProto};

    /// `input` [1,3,8,8] -> stem (3x3, stride 2, 4 channels) -> Clip [0, 6] -> pointwise 4 -> 4
    /// -> Add with the clip's output -> then `last` (an Add's consumer, or nothing).
    fn model(last: Option<NodeProto>) -> ModelProto {
        let info = |name: &str, dims: &[i64]| {
            value_info(
                name,
                DataType::Float as i32,
                Some(dims.iter().map(|&d| dim(d)).collect()),
            )
        };
        let mut nodes = vec![
            node(
                "Conv",
                "stem",
                &["input", "stem.w", "stem.b"],
                &["stem"],
                vec![
                    attr_ints("strides", &[2, 2]),
                    attr_ints("pads", &[0, 0, 1, 1]),
                ],
            ),
            node(
                "Clip",
                "relu6",
                &["stem", "zero", "six"],
                &["relu6"],
                vec![],
            ),
            node("Conv", "project", &["relu6", "pw.w"], &["project"], vec![]),
            node("Add", "residual", &["project", "relu6"], &["sum"], vec![]),
        ];
        let output = match last {
            Some(n) => {
                let out = n.output[0].clone();
                nodes.push(n);
                out
            }
            None => "sum".into(),
        };
        let w = |n: usize, seed: f32| {
            (0..n)
                .map(|i| ((i as f32) * seed).sin())
                .collect::<Vec<_>>()
        };
        ModelProto {
            ir_version: 8,
            opset_import: vec![OperatorSetIdProto {
                domain: String::new(),
                version: 13,
            }],
            graph: Some(GraphProto {
                node: nodes,
                initializer: vec![
                    tensor("stem.w", &[4, 3, 3, 3], &w(108, 0.7)),
                    tensor("stem.b", &[4], &[0.5f32, -0.25, 0.0, 1.0]),
                    tensor("pw.w", &[4, 4, 1, 1], &w(16, 1.3)),
                    tensor("zero", &[], &[0f32]),
                    tensor("six", &[], &[6f32]),
                ],
                input: vec![info("input", &[1, 3, 8, 8])],
                output: vec![info(&output, &[1, 4, 4, 4])],
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn observed(low: f32, high: f32) -> Observed {
        Observed {
            shape: vec![1, 4, 4, 4],
            low,
            high,
        }
    }

    #[test]
    fn stem_clip_pointwise_and_add_map_to_integer_layers() {
        let m = model(None);
        let plan = Plan::new(&Graph::new(&m).unwrap()).unwrap();
        // The clip is fused: the stem writes its output.
        assert_eq!(
            plan.tensors().collect::<Vec<_>>(),
            ["relu6", "project", "sum"]
        );
        let ranges = HashMap::from([
            ("relu6".to_string(), observed(0.0, 5.0)),
            ("project".to_string(), observed(-2.0, 3.0)),
        ]);
        let input = frame_quant(&InputSpec::TF).unwrap();
        let pre_pool = Quant::covering(-4.0, 8.0).unwrap();
        let program = plan.program(8, input, &ranges, pre_pool, true).unwrap();
        let counts = LayerCounts::of(&program);
        assert_eq!(
            counts.to_string(),
            "1 stem, 0 depthwise, 1 pointwise, 1 add"
        );
        let [stem, project, add] = &program.layers[..] else {
            panic!("three layers, got {:?}", program.layers);
        };
        let Op::Stem { conv, pads } = &stem.op else {
            panic!("a stem first")
        };
        assert_eq!(*pads, [0, 0, 1, 1]);
        assert_eq!(
            (conv.input, conv.weights.len(), conv.bias.len()),
            (0, 108, 4)
        );
        // Bias 1.0 in units of the frame's scale times the channel's weight scale.
        let units = input.scale * conv.weight_scales[3];
        assert_eq!(conv.bias[3], (1.0 / units).round() as i32);
        // The clip's [0, 6] in the codes of [0, 5]: zero point, then saturated at 255.
        assert_eq!(stem.output, Quant::covering(0.0, 5.0).unwrap());
        assert_eq!(stem.clamp, [0, 255]);
        assert!(matches!(&project.op, Op::Pointwise(c) if c.input == 1));
        assert_eq!(project.clamp, [0, 255]);
        assert_eq!(add.op, Op::Add { a: 2, b: 1 });
        assert_eq!(add.output, pre_pool);
        assert_eq!(program.output(), pre_pool);

        // Per tensor: one scale, repeated per channel.
        let program = plan.program(8, input, &ranges, pre_pool, false).unwrap();
        let Op::Stem { conv, .. } = &program.layers[0].op else {
            panic!("a stem first")
        };
        assert!(
            conv.weight_scales
                .iter()
                .all(|&s| s == conv.weight_scales[0])
        );
    }

    #[test]
    fn a_fused_clip_clamps_in_the_output_codes() {
        let m = model(None);
        let plan = Plan::new(&Graph::new(&m).unwrap()).unwrap();
        // A range wider than the clip: its bound 6 is a code below 255.
        let ranges = HashMap::from([
            ("relu6".to_string(), observed(-1.0, 7.0)),
            ("project".to_string(), observed(-2.0, 3.0)),
        ]);
        let input = frame_quant(&InputSpec::TF).unwrap();
        let program = plan
            .program(8, input, &ranges, Quant::covering(-4.0, 8.0).unwrap(), true)
            .unwrap();
        let q = Quant::covering(-1.0, 7.0).unwrap();
        assert_eq!(program.layers[0].clamp, [q.zero_point, q.quantize(6.0)]);
        assert!(program.layers[0].clamp[1] < 255);
    }

    #[test]
    fn an_unsupported_op_is_named() {
        let sigmoid = node("Sigmoid", "gate", &["sum"], &["gated"], vec![]);
        let m = model(Some(sigmoid));
        let err = Plan::new(&Graph::new(&m).unwrap()).unwrap_err();
        assert_eq!(
            err.0,
            "the integer kernels do not cover Sigmoid (node gate)"
        );
    }
}
