//! Building ONNX protobuf pieces in code: tensors, attributes, nodes and value infos. The
//! quantizer writes its graphs with these, and the tests assemble their small models with them,
//! so there is one way to encode each piece.

use tract_onnx::pb::attribute_proto::AttributeType;
use tract_onnx::pb::tensor_proto::DataType;
use tract_onnx::pb::tensor_shape_proto::{Dimension, dimension};
use tract_onnx::pb::{
    AttributeProto, NodeProto, TensorProto, TensorShapeProto, TypeProto, ValueInfoProto, type_proto,
};

/// An element type a tensor can hold: its ONNX type code and its little-endian bytes.
pub trait Element: Copy {
    /// The ONNX element type.
    const DATA_TYPE: DataType;
    /// Appends the value's little-endian bytes to `out`.
    fn push_le_bytes(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($($t:ty => $data_type:ident),* $(,)?) => {$(
        impl Element for $t {
            const DATA_TYPE: DataType = DataType::$data_type;
            fn push_le_bytes(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    )*};
}

element!(
    f32 => Float,
    half::f16 => Float16,
    i8 => Int8,
    u8 => Uint8,
    i32 => Int32,
    i64 => Int64,
);

/// A tensor with its values in `raw_data`, little-endian, as most exporters write it.
pub fn tensor<T: Element>(name: &str, dims: &[i64], values: &[T]) -> TensorProto {
    let mut raw_data = Vec::with_capacity(size_of_val(values));
    for &v in values {
        v.push_le_bytes(&mut raw_data);
    }
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: T::DATA_TYPE as i32,
        raw_data,
        ..Default::default()
    }
}

/// A float32 tensor with its values in the typed `float_data` field instead of `raw_data`.
pub fn f32_tensor_typed(name: &str, dims: &[i64], values: &[f32]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Float as i32,
        float_data: values.to_vec(),
        ..Default::default()
    }
}

/// An int64 tensor with its values in the typed `int64_data` field instead of `raw_data`.
pub fn i64_tensor_typed(name: &str, dims: &[i64], values: &[i64]) -> TensorProto {
    TensorProto {
        name: name.into(),
        dims: dims.to_vec(),
        data_type: DataType::Int64 as i32,
        int64_data: values.to_vec(),
        ..Default::default()
    }
}

/// An integer attribute.
pub fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Int as i32,
        i,
        ..Default::default()
    }
}

/// An integer-list attribute.
pub fn attr_ints(name: &str, ints: &[i64]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Ints as i32,
        ints: ints.to_vec(),
        ..Default::default()
    }
}

/// A float attribute.
pub fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Float as i32,
        f,
        ..Default::default()
    }
}

/// A float-list attribute.
pub fn attr_floats(name: &str, floats: &[f32]) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Floats as i32,
        floats: floats.to_vec(),
        ..Default::default()
    }
}

/// A tensor attribute.
pub fn attr_tensor(name: &str, t: TensorProto) -> AttributeProto {
    AttributeProto {
        name: name.into(),
        r#type: AttributeType::Tensor as i32,
        t: Some(t),
        ..Default::default()
    }
}

/// A node of the default domain.
pub fn node(
    op: &str,
    name: &str,
    inputs: &[&str],
    outputs: &[&str],
    attributes: Vec<AttributeProto>,
) -> NodeProto {
    NodeProto {
        op_type: op.into(),
        name: name.into(),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute: attributes,
        ..Default::default()
    }
}

/// A fixed dimension of a value info's shape.
pub fn dim(size: i64) -> Dimension {
    Dimension {
        denotation: String::new(),
        value: Some(dimension::Value::DimValue(size)),
    }
}

/// A symbolic dimension (`N`, `batch_size`) of a value info's shape.
pub fn dim_param(name: &str) -> Dimension {
    Dimension {
        denotation: String::new(),
        value: Some(dimension::Value::DimParam(name.into())),
    }
}

/// A tensor's value info: its element type (an ONNX type code) and its shape, `None` when even
/// the rank is unknown.
pub fn value_info(name: &str, elem_type: i32, dims: Option<Vec<Dimension>>) -> ValueInfoProto {
    ValueInfoProto {
        name: name.into(),
        r#type: Some(TypeProto {
            denotation: String::new(),
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type,
                shape: dims.map(|dim| TensorShapeProto { dim }),
            })),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_tensors_are_little_endian_and_typed() {
        let t = tensor("w", &[2], &[1.0f32, -2.0]);
        assert_eq!(t.data_type, DataType::Float as i32);
        assert_eq!(t.raw_data, [0, 0, 128, 63, 0, 0, 0, 192]);
        let t = tensor("codes", &[2], &[-1i8, 3]);
        assert_eq!(
            (t.data_type, t.raw_data),
            (DataType::Int8 as i32, vec![255, 3])
        );
        let t = tensor("", &[], &[half::f16::ONE]);
        assert_eq!(
            (t.data_type, t.raw_data),
            (DataType::Float16 as i32, vec![0, 60])
        );
    }
}
