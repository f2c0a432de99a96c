//! The tract ops that run the backbone's convolutions on `nap-core`'s kernels.
//!
//! Each op is a [`Kernel`]: what it computes from one f32 tensor into another of a fixed shape.
//! [`NapOp`] gives every kernel the same tract trait code (`Op`, `EvalOp`, `TypedOp`), so an op
//! file holds only its own arithmetic.

mod depthwise;
mod expand_depthwise;
mod pointwise;

pub use depthwise::DepthwiseOp;
pub use expand_depthwise::ExpandDepthwiseOp;
pub use pointwise::PointwiseOp;

use nap_core::depthwise::Clip;
use std::fmt;
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;

/// A kernel op's own part: its name and description in model dumps, its output shape and its
/// arithmetic. Equality must mean "computes the same function", bit for bit (tract's graph
/// rewrites compare ops, and need the relation reflexive even for NaN weights).
pub trait Kernel: fmt::Debug + Clone + PartialEq + Eq + Send + Sync + 'static {
    /// The op's name in model dumps.
    const NAME: &'static str;
    /// What model dumps show beside the name.
    fn info(&self) -> Vec<String>;
    /// The shape of the one output.
    fn output_shape(&self) -> &[usize];
    /// Computes the output from the input; must write every element of `output`.
    fn run(&self, input: &[f32], output: &mut [f32]) -> TractResult<()>;
}

/// A [`Kernel`] as a tract op: one f32 input, one f32 output of the kernel's shape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NapOp<K>(pub K);

impl<K: Kernel> Op for NapOp<K> {
    fn name(&self) -> StaticName {
        K::NAME.into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(self.0.info())
    }

    fn validation(&self) -> Validation {
        Validation::Rounding
    }

    op_as_typed_op!();
}

impl<K: Kernel> EvalOp for NapOp<K> {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let input = args_1!(inputs);
        let input = input.try_as_plain_ram()?;
        // SAFETY: f32 has no invalid bit patterns, and `Kernel::run` writes every output
        // element before anything reads the tensor (on error the tensor is dropped unread).
        let mut output = unsafe { Tensor::uninitialized::<f32>(self.0.output_shape())? };
        self.0.run(
            input.as_slice::<f32>()?,
            output.try_as_plain_ram_mut()?.as_slice_mut::<f32>()?,
        )?;
        Ok(tvec!(output.into_tvalue()))
    }
}

impl<K: Kernel> TypedOp for NapOp<K> {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        ensure!(inputs.len() == 1 && inputs[0].datum_type == f32::datum_type());
        Ok(tvec!(f32::fact(self.0.output_shape())))
    }

    as_op!();
}

/// Bit patterns, so that equality is reflexive even for NaN.
pub(crate) fn float_bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn clip_bits(c: Clip) -> (u32, u32) {
    (c.min.to_bits(), c.max.to_bits())
}
