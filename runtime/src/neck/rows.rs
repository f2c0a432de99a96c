//! The head graph's dense layers whose weights are int8 rows (one symmetric scale per output, as
//! `napctl quantize` stores them), computed from those rows by `nap-core`'s int8 row product
//! instead of tract's f32 matrix product. A dense layer's time goes into reading its weights once
//! per frame: the rows are a quarter of the f32 bytes.
//!
//! Weights that are not on such a grid (every f32 bundle's) stay with tract.

use crate::backbone::float_product;
use crate::backbone::ops::{Kernel, NapOp, float_bits};
use nap_core::gemv::Int8Gemv;
use nap_core::score::{Head, Int8Head};
use std::fmt;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// A dense layer without its bias on one vector: `out[n] = scale[n] * (codes[n] . x)`, computed
/// as nap-core's [`Int8Head`] computes the last dense layer.
#[derive(Clone)]
pub struct Int8RowsOp {
    /// Row-major, one row of `inputs` codes per output.
    codes: Vec<i8>,
    scales: Vec<f32>,
    /// The head's bias, zero: tract adds the layer's own after this op.
    zeros: Vec<f32>,
    inputs: usize,
    output_shape: TVec<usize>,
}

impl fmt::Debug for Int8RowsOp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The codes would drown the model dumps.
        f.debug_struct("Int8RowsOp")
            .field("inputs", &self.inputs)
            .field("outputs", &self.scales.len())
            .field("isa", &Int8Gemv::new().isa())
            .finish_non_exhaustive()
    }
}

impl PartialEq for Int8RowsOp {
    fn eq(&self, other: &Self) -> bool {
        self.inputs == other.inputs
            && self.output_shape == other.output_shape
            && self.codes == other.codes
            && float_bits(&self.scales) == float_bits(&other.scales)
    }
}

impl Eq for Int8RowsOp {}

impl Kernel for Int8RowsOp {
    const NAME: &'static str = "NapInt8Rows";

    fn info(&self) -> Vec<String> {
        vec![format!(
            "{} -> {} ({:?})",
            self.inputs,
            self.scales.len(),
            Int8Gemv::new().isa()
        )]
    }

    fn output_shape(&self) -> &[usize] {
        &self.output_shape
    }

    fn run(&self, input: &[f32], output: &mut [f32]) -> TractResult<()> {
        ensure!(
            input.len() == self.inputs && output.len() == self.scales.len(),
            "int8 rows of {} -> {} given {} -> {} values",
            self.inputs,
            self.scales.len(),
            input.len(),
            output.len()
        );
        Int8Head::new(&self.codes, &self.scales, &self.zeros, self.inputs)
            .map_err(|e| anyhow!("int8 rows: {e}"))?
            .logits(input, output);
        Ok(())
    }
}

/// Swaps every f32 matrix product of one vector by constant int8-row weights for an
/// [`Int8RowsOp`]; returns how many. Runs between tract's declutter (which folds the weights'
/// `DequantizeLinear` into a constant and turns Gemm, MatMul and 1x1 Conv into `EinSum`) and its
/// optimization.
pub(super) fn replace_int8_rows(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let Some(op) = int8_rows_plan(model, id)? else {
            continue;
        };
        let node = model.node(id);
        let mut patch = TypedModelPatch::new(format!("int8 rows {}", node.name));
        let input = patch.tap_model(model, node.inputs[0])?;
        let wire = patch.wire_node(&node.name, NapOp(op), &[input])?;
        patch.shunt_outside(model, OutletId::new(id, 0), wire[0])?;
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

/// The replacement for node `id`, if it is an f32 `EinSum` of a vector (every axis but the
/// summed one of size 1) by constant weights that are int8 rows.
fn int8_rows_plan(model: &TypedModel, id: usize) -> TractResult<Option<Int8RowsOp>> {
    let node = model.node(id);
    let Some(einsum) = float_product(node) else {
        return Ok(None);
    };
    let x = model.outlet_fact(node.inputs[0])?;
    let w = model.outlet_fact(node.inputs[1])?;
    let y = model.outlet_fact(OutletId::new(id, 0))?;
    let (Some(x_shape), Some(w_shape), Some(y_shape)) = (
        x.shape.as_concrete(),
        w.shape.as_concrete(),
        y.shape.as_concrete(),
    ) else {
        return Ok(None);
    };
    if x.konst.is_some() || x.datum_type != f32::datum_type() {
        return Ok(None);
    }
    let Some(weights) = constant(model, node.inputs[1], MAX_FOLD_DEPTH)?
        .filter(|k| k.datum_type() == f32::datum_type())
    else {
        return Ok(None);
    };
    // The summed axis (in the vector and the weights) and the output axis (in the weights and
    // the output), as positions in the weights; any other axis must be of size 1.
    let (mut summed, mut output) = (None, None);
    for axis in einsum.axes.iter_all_axes() {
        let (in_x, in_w, in_y) = (&axis.inputs[0], &axis.inputs[1], &axis.outputs[0]);
        if in_x.len() > 1 || in_w.len() > 1 || in_y.len() > 1 {
            return Ok(None);
        }
        let unit = [(in_x, x_shape), (in_w, w_shape), (in_y, y_shape)]
            .iter()
            .all(|(at, shape)| at.iter().all(|&p| shape[p] == 1));
        match (in_x.len(), in_w.len(), in_y.len()) {
            (1, 1, 0) if summed.is_none() => summed = Some(in_w[0]),
            (0, 1, 1) if output.is_none() => output = Some(in_w[0]),
            _ if unit => {}
            _ => return Ok(None),
        }
    }
    let (Some(summed), Some(output)) = (summed, output) else {
        return Ok(None);
    };
    let (inputs, outputs) = (w_shape[summed], w_shape[output]);
    if inputs == 0
        || x_shape.iter().product::<usize>() != inputs
        || y_shape.iter().product::<usize>() != outputs
    {
        return Ok(None);
    }
    let stride = |axis: usize| w_shape[axis + 1..].iter().product::<usize>();
    let (summed_stride, output_stride) = (stride(summed), stride(output));
    let weights = weights.try_as_plain_ram()?.as_slice::<f32>()?;
    let rows: Vec<f32> = (0..outputs)
        .flat_map(|n| (0..inputs).map(move |k| n * output_stride + k * summed_stride))
        .map(|i| weights[i])
        .collect();
    let Some((codes, scales)) = int8_rows(&rows, inputs) else {
        return Ok(None);
    };
    Ok(Some(Int8RowsOp {
        codes,
        zeros: vec![0.0; scales.len()],
        scales,
        inputs,
        output_shape: y_shape.into(),
    }))
}

/// How many ops deep [`constant`] looks for the weights' constants: a `DequantizeLinear`, a cast
/// and a transpose.
const MAX_FOLD_DEPTH: usize = 6;

/// The most values [`constant`] computes for one outlet: far above any head's dense layer, far
/// below what a hostile bundle would need to exhaust a device's memory at load.
const MAX_FOLD_VALUES: usize = 1 << 24;

/// The value of `outlet` when it depends on constants alone, evaluated. tract folds such values
/// only while they are no larger than their inputs, so int8 codes widened to f32 weights stay a
/// cast and a product in its graph.
fn constant(model: &TypedModel, outlet: OutletId, depth: usize) -> TractResult<Option<TValue>> {
    let fact = model.outlet_fact(outlet)?;
    if let Some(k) = &fact.konst {
        return Ok(Some(k.clone().into_tvalue()));
    }
    let node = model.node(outlet.node);
    let volume = fact
        .shape
        .as_concrete()
        .map(|s| s.iter().product::<usize>());
    if depth == 0 || node.inputs.is_empty() || volume.is_none_or(|v| v > MAX_FOLD_VALUES) {
        return Ok(None);
    }
    let mut inputs = TVec::new();
    for &input in &node.inputs {
        match constant(model, input, depth - 1)? {
            Some(v) => inputs.push(v),
            None => return Ok(None),
        }
    }
    Ok(node
        .op
        .eval_out_of_plan(inputs)?
        .and_then(|mut out| (outlet.slot < out.len()).then(|| out.swap_remove(outlet.slot))))
}

/// The codes and scales that `rows` (of `inputs` weights each) are, to float rounding: each row's
/// scale its largest magnitude over 127; `None` when some weight is not a whole code times it.
pub fn int8_rows(rows: &[f32], inputs: usize) -> Option<(Vec<i8>, Vec<f32>)> {
    let mut codes = Vec::with_capacity(rows.len());
    let mut scales = Vec::with_capacity(rows.len() / inputs.max(1));
    for row in rows.chunks(inputs.max(1)) {
        let max = row.iter().fold(0f32, |m, w| m.max(w.abs()));
        if !max.is_finite() {
            return None;
        }
        let scale = if max > 0.0 { max / 127.0 } else { 1.0 };
        for &w in row {
            let code = (w / scale).round();
            // The scale recovered from the largest weight may be an ulp off the one the codes
            // were made with, which moves each weight by an ulp or two.
            if !w.is_finite() || (code * scale - w).abs() > 4.0 * f32::EPSILON * w.abs() {
                return None;
            }
            codes.push(code as i8);
        }
        scales.push(scale);
    }
    Some((codes, scales))
}

#[cfg(test)]
mod tests {
    use super::int8_rows;

    #[test]
    fn rows_on_the_int8_grid_give_their_codes_and_others_none() {
        let scale = 0.37f32 / 127.0;
        let row: Vec<f32> = [127i8, -5, 0, 64, -127]
            .iter()
            .map(|&c| f32::from(c) * scale)
            .collect();
        let zeros = [0.0f32; 5];
        let (codes, scales) = int8_rows(&[row.clone(), zeros.to_vec()].concat(), 5).unwrap();
        assert_eq!(codes, vec![127, -5, 0, 64, -127, 0, 0, 0, 0, 0]);
        assert_eq!(scales, vec![0.37 / 127.0, 1.0]);
        let mut off = row;
        off[1] *= 1.001;
        assert_eq!(int8_rows(&off, 5), None);
        assert_eq!(int8_rows(&[f32::NAN, 1.0], 2), None);
    }
}
