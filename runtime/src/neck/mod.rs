//! The head's layers between global pooling and its last dense layer (MobileNetV3's 960->1280
//! layer and hardswish, ConvNeXt's LayerNorm): the bundle's neck graph, run by tract on the
//! pooled feature. One plan per detector serves every worker; the dense layer after it keeps
//! the head's fast path.
//!
//! Its dense layers whose weights `napctl quantize` stored as int8 rows run from those rows
//! ([`rows`]), as the last dense layer does.
//!
//! Without the `tract` feature [`Neck`] has no values: such a build refuses bundles with a neck.

#[cfg(feature = "tract")]
pub mod rows;

#[cfg(not(feature = "tract"))]
use crate::bundle::Bundle;
use nap_core::score::Head;
use std::sync::OnceLock;

/// Why a bundle's neck could not be loaded or run.
#[derive(Debug, thiserror::Error)]
#[error("head graph: {0}")]
pub struct NeckError(String);

#[cfg(feature = "tract")]
pub use with_tract::Neck;

#[cfg(feature = "tract")]
mod with_tract {
    use super::NeckError;
    use crate::backbone::guarded;
    use crate::bundle::{Bundle, NeckSpec};
    use std::sync::Arc;
    use tract_onnx::prelude::*;

    /// A bundle's neck, typed and optimized for one frame.
    pub struct Neck {
        plan: Arc<TypedSimplePlan>,
        input_shape: TVec<usize>,
        channels: usize,
        width: usize,
        int8_layers: usize,
    }

    impl Neck {
        /// The bundle's neck, `None` when its head is one dense layer; checked to map the
        /// pre-pool channels to the dense layer's input.
        pub fn load(bundle: &Bundle) -> Result<Option<Neck>, NeckError> {
            let Some(spec) = &bundle.manifest.neck else {
                return Ok(None);
            };
            let channels = bundle.manifest.pre_pool.channels as usize;
            let width = bundle.manifest.head.features as usize;
            Neck::new(&bundle.neck, spec, channels, width).map(Some)
        }

        /// The neck in `onnx` as `spec` describes it, taking `channels` pooled values and giving
        /// `width`.
        pub fn new(
            onnx: &[u8],
            spec: &NeckSpec,
            channels: usize,
            width: usize,
        ) -> Result<Neck, NeckError> {
            let input_shape: TVec<usize> = if spec.keeps_dims {
                tvec![1, channels, 1, 1]
            } else {
                tvec![1, channels]
            };
            let tract = |e: TractError| NeckError(format!("{e:#}"));
            let (model, int8_layers) = guarded("reading the head graph", || {
                let mut model = tract_onnx::onnx()
                    .model_for_read(&mut &*onnx)?
                    .with_input_fact(0, f32::fact(&input_shape).into())?
                    .into_typed()?
                    .into_decluttered()?;
                let int8_layers = super::rows::replace_int8_rows(&mut model)?;
                Ok((model.into_optimized()?, int8_layers))
            })
            .map_err(tract)?;
            let outlets = model.output_outlets().map_err(tract)?;
            let [outlet] = outlets else {
                return Err(NeckError(format!(
                    "{} outputs, expected one (the dense layer's input)",
                    outlets.len()
                )));
            };
            let fact = model.outlet_fact(*outlet).map_err(tract)?;
            let values = fact
                .shape
                .as_concrete()
                .map(|s| s.iter().product::<usize>());
            if fact.datum_type != f32::datum_type() || values != Some(width) {
                return Err(NeckError(format!(
                    "it gives {:?} {:?} for {channels} pooled channels, the dense layer takes \
                     {width} f32 values",
                    fact.shape, fact.datum_type
                )));
            }
            let plan =
                guarded("planning the head graph", || model.into_runnable()).map_err(tract)?;
            Ok(Neck {
                plan,
                input_shape,
                channels,
                width,
                int8_layers,
            })
        }

        /// Pooled channels it takes.
        pub fn channels(&self) -> usize {
            self.channels
        }

        /// Values it gives: the dense layer's input.
        pub fn width(&self) -> usize {
            self.width
        }

        /// How many of its dense layers run from int8 rows.
        pub fn int8_layers(&self) -> usize {
            self.int8_layers
        }

        /// The dense layer's input for one pooled feature of [`Neck::channels`] values, written
        /// to `out` ([`Neck::width`] values).
        pub fn run(&self, pooled: &[f32], out: &mut [f32]) -> Result<(), NeckError> {
            let tract = |e: TractError| NeckError(format!("{e:#}"));
            if pooled.len() != self.channels || out.len() != self.width {
                return Err(NeckError(format!(
                    "{} pooled values in, {} out; it maps {} to {}",
                    pooled.len(),
                    out.len(),
                    self.channels,
                    self.width
                )));
            }
            let input = Tensor::from_shape(&self.input_shape, pooled).map_err(tract)?;
            let outputs = guarded("running the head graph", || {
                self.plan.run(tvec!(input.into()))
            })
            .map_err(tract)?;
            let values = outputs[0]
                .try_as_plain_ram()
                .and_then(|t| t.as_slice::<f32>())
                .map_err(tract)?;
            // Loading checked the output's type and size.
            out.copy_from_slice(values);
            Ok(())
        }
    }
}

/// A neck needs tract, which this build lacks: no value of it exists.
#[cfg(not(feature = "tract"))]
pub enum Neck {}

#[cfg(not(feature = "tract"))]
impl Neck {
    /// `None` for a head that is one dense layer; an error for any other.
    pub fn load(bundle: &Bundle) -> Result<Option<Neck>, NeckError> {
        match bundle.manifest.neck {
            None => Ok(None),
            Some(_) => Err(NeckError(
                "this build runs no tract (it was built without the `tract` feature), and this \
                 bundle's head has layers before its dense one"
                    .into(),
            )),
        }
    }

    /// Pooled channels it takes.
    pub fn channels(&self) -> usize {
        match *self {}
    }

    /// Values it gives: the dense layer's input.
    pub fn width(&self) -> usize {
        match *self {}
    }

    /// How many of its dense layers run from int8 rows.
    pub fn int8_layers(&self) -> usize {
        match *self {}
    }

    /// The dense layer's input for one pooled feature.
    pub fn run(&self, _pooled: &[f32], _out: &mut [f32]) -> Result<(), NeckError> {
        match *self {}
    }
}

/// The whole head as nap-core's scoring sees it: the neck, then the dense layer `H`. Methods
/// that shape the pooled feature (ReAct, ASH, SCALE) run both on the shaped feature.
pub struct NeckThen<'a, H> {
    neck: &'a Neck,
    dense: H,
    failure: OnceLock<String>,
}

impl<'a, H: Head> NeckThen<'a, H> {
    /// `dense` after `neck`; its features must be the neck's width.
    pub fn new(neck: &'a Neck, dense: H) -> Self {
        NeckThen {
            neck,
            dense,
            failure: OnceLock::new(),
        }
    }

    /// Why the neck failed in a call to [`Head::logits`], whose logits were NaN then: the
    /// caller must check this after scoring, since a NaN score would be no verdict.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// [`NeckThen::failure`] as an error.
    pub fn check(&self) -> Result<(), NeckError> {
        match self.failure() {
            Some(e) => Err(NeckError(e.to_string())),
            None => Ok(()),
        }
    }
}

impl<H: Head> Head for NeckThen<'_, H> {
    fn features(&self) -> usize {
        self.neck.channels()
    }

    fn classes(&self) -> usize {
        self.dense.classes()
    }

    fn logits(&self, pooled: &[f32], out: &mut [f32]) {
        let mut input = vec![0.0; self.neck.width()];
        match self.neck.run(pooled, &mut input) {
            Ok(()) => self.dense.logits(&input, out),
            Err(e) => {
                out.fill(f32::NAN);
                let _ = self.failure.set(e.0);
            }
        }
    }
}
