//! Reading constant tensors (initializers and `Constant` nodes) out of ONNX protobufs.

use super::OnnxError;
use super::proto::{f32_tensor_typed, i64_tensor_typed};
use tract_onnx::pb::tensor_proto::{DataLocation, DataType};
use tract_onnx::pb::{AttributeProto, NodeProto, TensorProto};

/// Human name of an ONNX element type, e.g. `FLOAT` or `INT8`.
pub(crate) fn type_name(data_type: i32) -> String {
    match DataType::try_from(data_type) {
        Ok(t) => t.as_str_name().to_string(),
        Err(_) => format!("unknown type {data_type}"),
    }
}

/// Number of elements of a shape (1 for a scalar), or `None` for a negative dimension or
/// overflow.
pub(crate) fn element_count(dims: &[i64]) -> Option<usize> {
    dims.iter().try_fold(1usize, |n, &d| {
        usize::try_from(d).ok().and_then(|d| n.checked_mul(d))
    })
}

fn is_external(t: &TensorProto) -> bool {
    t.data_location == Some(DataLocation::External as i32)
}

/// The float32 values of `t`, which names `name` in messages.
pub(crate) fn f32_values(t: &TensorProto, name: &str) -> Result<Vec<f32>, OnnxError> {
    let problem = |problem: String| OnnxError::HeadData {
        tensor: name.to_string(),
        problem,
    };
    if t.data_type != DataType::Float as i32 {
        return Err(problem(format!(
            "element type is {}; only FLOAT (float32) head weights are supported",
            type_name(t.data_type)
        )));
    }
    if is_external(t) {
        return Err(problem(
            "data is stored in an external file, which is not supported".into(),
        ));
    }
    let n = element_count(&t.dims)
        .ok_or_else(|| problem(format!("invalid dimensions {:?}", t.dims)))?;
    let values: Vec<f32> = if !t.raw_data.is_empty() {
        t.raw_data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect()
    } else {
        t.float_data.clone()
    };
    let bytes_ok = t.raw_data.is_empty() || t.raw_data.len().is_multiple_of(4);
    if values.len() != n || !bytes_ok {
        return Err(problem(format!(
            "holds {} values ({} raw bytes, {} float_data) but its shape {:?} needs {n}",
            values.len(),
            t.raw_data.len(),
            t.float_data.len(),
            t.dims
        )));
    }
    Ok(values)
}

/// The integer values of an INT64 or INT32 tensor (axes, shapes), or `None` for any other type or
/// malformed data.
pub(crate) fn i64_values(t: &TensorProto) -> Option<Vec<i64>> {
    if is_external(t) {
        return None;
    }
    let n = element_count(&t.dims)?;
    let values: Vec<i64> = if t.data_type == DataType::Int64 as i32 {
        if t.raw_data.is_empty() {
            t.int64_data.clone()
        } else {
            t.raw_data
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("chunk of 8")))
                .collect()
        }
    } else if t.data_type == DataType::Int32 as i32 {
        if t.raw_data.is_empty() {
            t.int32_data.iter().map(|&v| v as i64).collect()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("chunk of 4")) as i64)
                .collect()
        }
    } else {
        return None;
    };
    (values.len() == n).then_some(values)
}

/// The tensor a `Constant` node produces, normalised to a `TensorProto` (the `value` attribute,
/// or `value_float(s)` / `value_int(s)`); `None` for sparse or string constants.
pub(crate) fn constant_node_tensor(node: &NodeProto) -> Option<TensorProto> {
    let attr = node.attribute.first()?;
    let list = |n: usize| [n as i64];
    Some(match attr.name.as_str() {
        "value" => return attr.t.clone(),
        "value_float" => f32_tensor_typed("", &[], &[attr.f]),
        "value_floats" => f32_tensor_typed("", &list(attr.floats.len()), &attr.floats),
        "value_int" => i64_tensor_typed("", &[], &[attr.i]),
        "value_ints" => i64_tensor_typed("", &list(attr.ints.len()), &attr.ints),
        _ => return None,
    })
}

/// The attribute `name` of `node`, if present.
pub(crate) fn attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

/// An integer attribute, or `default` when absent.
pub(crate) fn attr_i(node: &NodeProto, name: &str, default: i64) -> i64 {
    attr(node, name).map_or(default, |a| a.i)
}

/// A float attribute, or `default` when absent.
pub(crate) fn attr_f(node: &NodeProto, name: &str, default: f32) -> f32 {
    attr(node, name).map_or(default, |a| a.f)
}

/// An integer-list attribute, if present.
pub(crate) fn attr_ints<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    attr(node, name).map(|a| a.ints.as_slice())
}

/// A string attribute, if present (lossy UTF-8).
pub(crate) fn attr_s(node: &NodeProto, name: &str) -> Option<String> {
    attr(node, name).map(|a| String::from_utf8_lossy(&a.s).into_owned())
}
