//! From a classifier ONNX to a bundle: the split, the pre-pool tensor's shape as tract sees it,
//! and the manifest with the default scorer.

use super::input::{self, InputError, InputRequest, ResolvedInput};
use crate::onnx::{self, OnnxError};
use nap_core::reduce::Layout;
use nap_runtime::bundle::{
    ActivationStorage, BackboneSpec, Bundle, BundleError, HeadSpec, HeadStorage, Manifest,
    ModelFormat, PrePoolSpec, Precision, ScorerConfig,
};
use nap_runtime::detector::{DetectorError, probe_backbone_output};
use nap_runtime::neck::{Neck, NeckError};
use tract_onnx::pb::ModelProto;
use tract_onnx::prelude::{Datum, DatumType};

/// Choices `napctl split` leaves to the user.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// The pre-pool tensor or pooling node, when the model has several candidates.
    pub layer: Option<String>,
    /// How frames become the model's input, as far as the user says.
    pub input: InputRequest,
}

/// A bundle just made, and how its input was settled.
#[derive(Clone, Debug)]
pub struct Built {
    /// The bundle.
    pub bundle: Bundle,
    /// Its input and where each part of it came from.
    pub input: ResolvedInput,
}

/// Why a model could not become a bundle.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The model could not be cut.
    #[error(transparent)]
    Onnx(#[from] OnnxError),
    /// The model's input cannot be settled.
    #[error(transparent)]
    Input(#[from] InputError),
    /// tract could not load the cut backbone.
    #[error(transparent)]
    Backbone(#[from] DetectorError),
    /// tract could not run the head's layers before its dense one.
    #[error("{0} (the layers between the pooling and the last dense layer)")]
    Neck(#[from] NeckError),
    /// The backbone's output is not a single NCHW f32 frame whose channels feed the head.
    #[error(
        "pre-pool tensor {tensor} is {shape:?} {datum:?} for a {size}x{size} input; expected [1, {channels}, H, W] f32"
    )]
    PrePool {
        /// Its name.
        tensor: String,
        /// Its shape as tract infers it.
        shape: Vec<usize>,
        /// Its type.
        datum: DatumType,
        /// The input size used.
        size: u32,
        /// The head's feature count.
        channels: usize,
    },
    /// The assembled bundle is inconsistent.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// Cuts `model` and assembles a validated bundle with the default scorer (NAP-E, eps 1, w 0.6);
/// the input is settled by [`input::resolve`].
pub fn build_bundle(
    model: &ModelProto,
    source: &str,
    options: BuildOptions,
) -> Result<Built, BuildError> {
    let split = onnx::split(model, options.layer.as_deref())?;
    let resolved = input::resolve(
        &options.input,
        model,
        &split.input_name,
        split.input_shape.as_deref(),
    )?;
    let backbone = split.backbone_bytes();
    let size = resolved.spec.size;
    let (shape, datum) = probe_backbone_output(&backbone, size)?;
    let head = &split.head;
    let (channels, height, width) = match shape[..] {
        [1, c, h, w] if c == head.pooled_channels() && datum == f32::datum_type() => (c, h, w),
        _ => {
            return Err(BuildError::PrePool {
                tensor: split.pre_pool,
                shape,
                datum,
                size,
                channels: head.pooled_channels(),
            });
        }
    };
    let manifest = Manifest {
        source: source.to_owned(),
        backbone: BackboneSpec {
            format: ModelFormat::Onnx,
            precision: Precision::F32,
            input_name: split.input_name.clone(),
            output_name: split.pre_pool.clone(),
        },
        input: resolved.spec,
        pre_pool: PrePoolSpec {
            channels: channels as u32,
            height: height as u32,
            width: width as u32,
            layout: Layout::Nchw,
            storage: ActivationStorage::F32,
        },
        head: HeadSpec {
            classes: head.classes as u32,
            features: head.features as u32,
            form: head.form,
            storage: HeadStorage::F32,
        },
        scorer: ScorerConfig::default(),
        dice: None,
        neck: head.neck.as_ref().map(|n| n.spec.clone()),
        vim: None,
    };
    let neck = match &head.neck {
        Some(n) => {
            let bytes = prost::Message::encode_to_vec(&n.model);
            // What the detector will load, checked now so a bad head fails here and not on the
            // device.
            Neck::new(&bytes, &n.spec, n.channels, head.features)?;
            bytes
        }
        None => Vec::new(),
    };
    let bundle = Bundle {
        manifest,
        backbone,
        head_weights: head.weights.clone(),
        head_bias: head.bias.clone(),
        head_scales: Vec::new(),
        neck,
        program: None,
    };
    bundle.validate()?;
    Ok(Built {
        bundle,
        input: resolved,
    })
}
