//! The head graph's dense layers as int8 rows: the weights of each Gemm, MatMul or 1x1 Conv
//! become int8 codes with one symmetric scale per output, behind a `DequantizeLinear`. tract folds
//! that into a constant when the runtime loads the head graph, and the runtime then computes
//! with the codes themselves (`nap_runtime::neck::rows`), as it does for the last dense layer.

use super::rewrite::{Emitter, drop_unused_initializers};
use super::sites::SMALL_LAYER;
use crate::onnx;
use crate::onnx::proto::attr_ints;
use crate::onnx::tensor::{attr_i, f32_values};
use std::collections::HashMap;
use tract_onnx::pb::tensor_proto::DataType;

/// The head graph `neck` (ONNX bytes) with its dense layers' weights as int8 rows. Layers with
/// fewer weights than the backbone's smallest quantized ones, and weights that are not an f32
/// initializer used by that layer alone, stay as they are.
pub(super) fn int8_rows(neck: &[u8]) -> Result<Vec<u8>, String> {
    let mut model = onnx::decode(neck).map_err(|e| format!("the head graph: {e}"))?;
    let graph = model.graph.as_mut().ok_or("the head graph has no graph")?;
    let mut uses: HashMap<&str, usize> = HashMap::new();
    for name in graph.node.iter().flat_map(|n| &n.input) {
        *uses.entry(name).or_default() += 1;
    }
    let initializers: HashMap<&str, usize> = graph
        .initializer
        .iter()
        .enumerate()
        .map(|(i, t)| (t.name.as_str(), i))
        .collect();
    // Per layer: its node, its float weights, their dimensions, and whether they are
    // `[inputs, outputs]`.
    let mut replaced: Vec<(usize, Vec<f32>, Vec<i64>, bool)> = Vec::new();
    for (i, node) in graph.node.iter().enumerate() {
        let Some(name) = node.input.get(1) else {
            continue;
        };
        let Some(&t) = initializers.get(name.as_str()) else {
            continue;
        };
        let t = &graph.initializer[t];
        if uses[name.as_str()] != 1 || t.data_type != DataType::Float as i32 {
            continue;
        }
        // Whether the weights are `[inputs, outputs]`, their outputs along the second axis.
        let transposed = match (node.op_type.as_str(), &t.dims[..]) {
            ("Gemm", [_, _]) => attr_i(node, "transB", 0) == 0,
            ("MatMul", [_, _]) => true,
            ("Conv", [_, _, 1, 1]) if attr_i(node, "group", 1) == 1 => false,
            _ => continue,
        };
        let weights = f32_values(t, name).map_err(|e| e.to_string())?;
        if weights.len() < SMALL_LAYER || weights.iter().any(|w| !w.is_finite()) {
            continue;
        }
        replaced.push((i, weights, t.dims.clone(), transposed));
    }
    let mut e = Emitter::for_graph(graph);
    let mut names = Vec::new();
    for (i, weights, dims, transposed) in &replaced {
        let weights_name = &graph.node[*i].input[1];
        let output = e.fresh(&format!("{weights_name}/int8_rows"));
        if *transposed {
            let (inputs, outputs) = (dims[0] as usize, dims[1] as usize);
            let rows: Vec<f32> = (0..outputs)
                .flat_map(|n| (0..inputs).map(move |k| weights[k * outputs + n]))
                .collect();
            let by_row = e.fresh(&format!("{output}/rows"));
            e.dequantized(&rows, &[dims[1], dims[0]], true, &by_row);
            e.node(
                "Transpose",
                &[&by_row],
                &output,
                vec![attr_ints("perm", &[1, 0])],
            );
        } else {
            e.dequantized(weights, dims, true, &output);
        }
        names.push(output);
    }
    for ((i, ..), name) in replaced.into_iter().zip(names) {
        graph.node[i].input[1] = name;
    }
    // The new nodes make the weights: they go first, the graph's order stays topological.
    let mut nodes = std::mem::take(&mut e.nodes);
    nodes.append(&mut graph.node);
    graph.node = nodes;
    graph.initializer.append(&mut e.initializers);
    drop_unused_initializers(graph);
    Ok(prost::Message::encode_to_vec(&model))
}
