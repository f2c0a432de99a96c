//! The detector: a bundle's backbone, run by tract or (an int8 bundle's integer program) by
//! the core's integer kernels, then the core's reduction, head and scores.
//!
//! One prepared backbone is shared by all threads; each worker holds a [`Worker`] with its own
//! backbone state and scratch buffers, so scoring a frame allocates nothing but the pre-pool
//! tensor.
//!
//! Built without the `tract` feature, the detector takes int8 bundles with an integer program
//! only, and says so for any other.

#[cfg(feature = "tract")]
use crate::backbone;
use crate::backbone::BackboneOptions;
use crate::bundle::{ActivationStorage, Bundle, BundleError, HeadStorage, Manifest, VimSpec};
use crate::integer::{self, Activations, IntegerBackbone, Program, ProgramError};
use crate::neck::{Neck, NeckError, NeckThen};
use nap_core::nap::{nap_f32, nap_u8};
use nap_core::reduce::{Layout, Reducer, Shape, ShapeError};
use nap_core::score::{
    Evidence, Head, Int8Head, LinearHead, LogitScore, Method, Score, ScoreError, Shaping, Workspace,
};
#[cfg(feature = "tract")]
use std::sync::Arc;
#[cfg(feature = "tract")]
use tract_onnx::prelude::*;

/// Why a bundle could not be turned into a detector, or a frame not scored.
#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    /// The bundle is not consistent.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// tract could not load, optimize or run the backbone.
    #[cfg(feature = "tract")]
    #[error("backbone: {0:#}")]
    Backbone(#[from] TractError),
    /// The integer program could not be prepared.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// The head's layers before its dense one could not be loaded or run.
    #[error(transparent)]
    Neck(#[from] NeckError),
    /// tract was asked to run a bundle whose only backbone is its integer program.
    #[error(
        "this int8 bundle's backbone is an integer program only, tract cannot run it; quantize with --precision int8-tract for a tract backbone"
    )]
    NoTractBackbone,
    /// The bundle's backbone needs tract, and this build has none.
    #[error(
        "this build runs int8 bundles' integer programs only (it was built without the `tract` feature); this bundle's backbone needs tract"
    )]
    TractNotBuilt,
    /// The backbone produced a tensor of another shape or type than the bundle declares.
    #[error("backbone output {got} does not match the bundle's pre-pool tensor {expected}")]
    PrePoolShape {
        /// What the bundle declares.
        expected: String,
        /// What came out.
        got: String,
    },
    /// The input tensor has the wrong number of values.
    #[error("input has {got} values, the backbone takes {expected} (3 x {size} x {size})")]
    InputLength {
        /// 3 * size * size.
        expected: usize,
        /// The given length.
        got: usize,
        /// The bundle's input size.
        size: u32,
    },
    /// The pre-pool tensor's storage is not the one the bundle declares.
    #[error("pre-pool tensor holds {got}, the bundle declares {expected}")]
    PrePoolStorage {
        /// What the bundle declares.
        expected: &'static str,
        /// What the tensor holds.
        got: &'static str,
    },
    /// The reduction refused the tensor.
    #[error("pre-pool reduction: {0}")]
    Reduce(#[from] ShapeError),
    /// A scoring method failed.
    #[error("scoring: {0}")]
    Score(#[from] ScoreError),
}

impl DetectorError {
    /// Whether the backbone itself failed rather than the frame: no later frame will score.
    pub fn is_backbone_failure(&self) -> bool {
        match self {
            #[cfg(feature = "tract")]
            DetectorError::Backbone(_) => true,
            _ => false,
        }
    }
}

/// Everything the detector says about one frame.
#[derive(Clone, Debug, PartialEq)]
pub struct Analysis {
    /// The classifier's top class.
    pub top1: usize,
    /// Negative energy, `logsumexp(logits)`.
    pub lse: f32,
    /// S_NAP.
    pub nap: f32,
    /// Maximum softmax probability.
    pub msp: f32,
    /// The bundle's deciding method's score.
    pub score: f32,
    /// Fusion floored a factor (a black frame, or non-positive energy).
    pub clamped: bool,
    /// The verdict: `score < threshold`; `None` while the bundle has no threshold.
    pub ood: Option<bool>,
}

/// One frame's pre-pool tensor, in the storage the bundle declares (f32, or the u8 codes of an
/// int8 backbone), laid out as [`Detector::pre_pool_layout`] says.
#[derive(Clone, Debug, PartialEq)]
pub enum PrePool {
    /// Float activations.
    F32(Vec<f32>),
    /// u8 codes; the manifest's pre-pool quantization gives their real values.
    U8(Vec<u8>),
}

impl PrePool {
    /// `f32` or `u8`, as [`ActivationStorage::name`] says.
    pub fn storage_name(&self) -> &'static str {
        match self {
            PrePool::F32(_) => "f32",
            PrePool::U8(_) => "u8",
        }
    }
}

/// Shape and type of the backbone's output for a batch of one `size x size` frame: how
/// `napctl split` learns the pre-pool tensor's C, H and W.
#[cfg(feature = "tract")]
pub fn probe_backbone_output(
    model: &[u8],
    size: u32,
) -> Result<(Vec<usize>, DatumType), DetectorError> {
    let size = size as usize;
    let typed = backbone::guarded("reading the backbone", || {
        tract_onnx::onnx()
            .model_for_read(&mut &model[..])?
            .with_input_fact(0, f32::fact([1, 3, size, size]).into())?
            .into_typed()
    })?;
    let fact = pre_pool_fact(&typed)?;
    let shape = fact
        .shape
        .as_concrete()
        .map(<[usize]>::to_vec)
        .ok_or_else(|| DetectorError::PrePoolShape {
            expected: "a concrete shape".into(),
            got: format!("{:?}", fact.shape),
        })?;
    Ok((shape, fact.datum_type))
}

/// The fact of the backbone's one output, the pre-pool tensor (tract's `output_fact` panics on a
/// graph without outputs, which a damaged bundle can hold).
#[cfg(feature = "tract")]
fn pre_pool_fact(model: &TypedModel) -> Result<&TypedFact, DetectorError> {
    match model.output_outlets()? {
        [outlet] => Ok(model.outlet_fact(*outlet)?),
        outlets => Err(DetectorError::PrePoolShape {
            expected: "one output, the pre-pool tensor".into(),
            got: format!("{} outputs", outlets.len()),
        }),
    }
}

/// A bundle made runnable: shared, immutable, `Send + Sync`.
pub struct Detector {
    manifest: Manifest,
    backbone: Backbone,
    /// The head's layers before its dense one, when it has any.
    neck: Option<Neck>,
    /// The head's last dense layer.
    head: HeadWeights,
    /// The dense layer with DICE's mask applied, in the head's storage, when DICE or NAP-D decides
    /// (the bundle's statistics make it; other methods do not pay for a second head).
    dice_head: Option<HeadWeights>,
    /// ViM's statistics and their projection offset, when ViM decides.
    vim: Option<(VimSpec, Vec<f32>)>,
    head_bias: Vec<f32>,
    reducer: Reducer,
}

/// What runs the backbone.
enum Backbone {
    /// tract's optimized plan of the bundle's backbone model.
    #[cfg(feature = "tract")]
    Tract(Arc<TypedSimplePlan>),
    /// The bundle's integer program on the core's integer kernels.
    Integer(IntegerBackbone),
}

/// A worker's state for its detector's [`Backbone`].
enum BackboneState {
    #[cfg(feature = "tract")]
    Tract(TypedSimpleState),
    Integer(Activations),
}

/// The head's weights as the bundle stores them, which is how they are computed with.
enum HeadWeights {
    F32(Vec<f32>),
    I8 { codes: Vec<i8>, scales: Vec<f32> },
}

impl HeadWeights {
    /// A copy of the bundle's head weights; an int8 head keeps only its codes and scales.
    fn copied(bundle: &Bundle) -> HeadWeights {
        match bundle.manifest.head.storage {
            HeadStorage::F32 => HeadWeights::F32(bundle.head_weights.clone()),
            HeadStorage::I8 => HeadWeights::I8 {
                codes: bundle.head_codes(),
                scales: bundle.head_scales.clone(),
            },
        }
    }

    /// [`HeadWeights::copied`], taking the weights out of the bundle instead (an int8 head's
    /// dequantized copy is dropped).
    fn taken(bundle: &mut Bundle) -> HeadWeights {
        let head = match bundle.manifest.head.storage {
            HeadStorage::F32 => HeadWeights::F32(std::mem::take(&mut bundle.head_weights)),
            HeadStorage::I8 => HeadWeights::I8 {
                codes: bundle.head_codes(),
                scales: std::mem::take(&mut bundle.head_scales),
            },
        };
        bundle.head_weights = Vec::new();
        head
    }

    /// The same head with the weights `sparse` (its dequantized weights, some set to zero)
    /// zeroes: an int8 head keeps its scales and zeroes the codes.
    fn masked(&self, sparse: Vec<f32>) -> HeadWeights {
        match self {
            HeadWeights::F32(_) => HeadWeights::F32(sparse),
            HeadWeights::I8 { codes, scales } => HeadWeights::I8 {
                codes: codes
                    .iter()
                    .zip(&sparse)
                    .map(|(&q, &w)| if w == 0.0 { 0 } else { q })
                    .collect(),
                scales: scales.clone(),
            },
        }
    }

    /// The head's view for the core's scoring; `features` and the bias were checked against
    /// the weights when the bundle was validated.
    fn view<'a>(&'a self, bias: &'a [f32], features: usize) -> HeadView<'a> {
        let checked = "bundle validation checked the head's shape";
        match self {
            HeadWeights::F32(w) => {
                HeadView::F32(LinearHead::new(w, bias, features).expect(checked))
            }
            HeadWeights::I8 { codes, scales } => {
                HeadView::I8(Int8Head::new(codes, scales, bias, features).expect(checked))
            }
        }
    }
}

/// The integer program prepared with the fastest kernels, fused as `options` say.
fn integer_backbone(
    program: &Program,
    options: BackboneOptions,
) -> Result<IntegerBackbone, ProgramError> {
    let fused = integer::Options {
        fuse_min_width: options.fuse_expansions.then_some(integer::FUSE_MIN_WIDTH),
        ..integer::Options::default()
    };
    IntegerBackbone::with_options(program, fused)
}

/// A deciding method that needs DICE's or ViM's statistics finds them in the bundle: refused
/// when the detector is made, not on every frame.
fn deciding_statistics_present(manifest: &Manifest) -> Result<(), ScoreError> {
    let recipe = manifest.scorer.method.recipe();
    if recipe.shaping == Shaping::Dice && manifest.dice.is_none() {
        return Err(ScoreError::DiceUncalibrated);
    }
    if recipe.logit_score == LogitScore::VimEnergy && manifest.vim.is_none() {
        return Err(ScoreError::VimUncalibrated);
    }
    Ok(())
}

/// DICE's sparsified head weights when the deciding method reads them.
fn deciding_dice_weights(bundle: &Bundle) -> Option<Vec<f32>> {
    let deciding = bundle.manifest.scorer.method;
    (deciding.recipe().shaping == Shaping::Dice)
        .then(|| bundle.dice_weights())
        .flatten()
}

/// ViM's statistics, ready to score with, when ViM decides.
fn deciding_vim(bundle: &Bundle) -> Option<(VimSpec, Vec<f32>)> {
    let vim = bundle.manifest.vim.as_ref()?;
    (bundle.manifest.scorer.method.recipe().logit_score == LogitScore::VimEnergy)
        .then(|| (vim.clone(), vim.offset()))
}

/// The head in its storage's form, for the core's scoring.
enum HeadView<'a> {
    F32(LinearHead<'a>),
    I8(Int8Head<'a>),
}

impl Head for HeadView<'_> {
    fn features(&self) -> usize {
        match self {
            HeadView::F32(h) => h.features(),
            HeadView::I8(h) => h.features(),
        }
    }

    fn classes(&self) -> usize {
        match self {
            HeadView::F32(h) => h.classes(),
            HeadView::I8(h) => h.classes(),
        }
    }

    fn logits(&self, pooled: &[f32], out: &mut [f32]) {
        match self {
            HeadView::F32(h) => h.logits(pooled, out),
            HeadView::I8(h) => h.logits(pooled, out),
        }
    }
}

/// Per-thread state: the backbone's state and every scratch buffer scoring needs.
pub struct Worker {
    state: BackboneState,
    max: Vec<f32>,
    sum: Vec<f32>,
    max_u8: Vec<u8>,
    sum_u8: Vec<u32>,
    pooled: Vec<f32>,
    /// The neck's output, the dense layer's input (empty without a neck).
    dense_input: Vec<f32>,
    logits: Vec<f32>,
    dice_logits: Vec<f32>,
    /// ViM's coordinates in its principal subspace (empty unless ViM decides).
    vim_projection: Vec<f32>,
    scratch: Vec<f32>,
}

impl Worker {
    /// The pooled feature (per-channel mean of the pre-pool tensor) the last
    /// [`Detector::reduce`] left.
    pub fn pooled(&self) -> &[f32] {
        &self.pooled
    }

    /// The logits the last [`Detector::logits`] computed.
    pub fn logits(&self) -> &[f32] {
        &self.logits
    }

    /// What the head's last dense layer took in the last [`Detector::logits`]: the pooled
    /// feature, or the neck's output for a head that has one.
    pub fn dense_input(&self) -> &[f32] {
        if self.dense_input.is_empty() {
            &self.pooled
        } else {
            &self.dense_input
        }
    }
}

impl Detector {
    /// Prepares the backbone for a batch of one frame: an int8 bundle's integer program on the
    /// core's kernels, any other in tract, optimized.
    pub fn new(bundle: &Bundle) -> Result<Self, DetectorError> {
        Self::with_options(bundle, BackboneOptions::default())
    }

    /// [`Detector::new`] with the backbone prepared as `options` say.
    pub fn with_options(bundle: &Bundle, options: BackboneOptions) -> Result<Self, DetectorError> {
        bundle.validate()?;
        deciding_statistics_present(&bundle.manifest)?;
        let backbone = match &bundle.program {
            Some(program) if options.integer => {
                Backbone::Integer(integer_backbone(program, options)?)
            }
            _ if bundle.backbone.is_empty() => return Err(DetectorError::NoTractBackbone),
            #[cfg(feature = "tract")]
            _ => {
                let size = bundle.manifest.input.size as usize;
                let model = backbone::decluttered_model(&bundle.backbone, size)?;
                Self::tract(model, options, &bundle.manifest)?
            }
            #[cfg(not(feature = "tract"))]
            _ => return Err(DetectorError::TractNotBuilt),
        };
        Ok(Self::assemble(
            backbone,
            Neck::load(bundle)?,
            bundle.manifest.clone(),
            HeadWeights::copied(bundle),
            deciding_dice_weights(bundle),
            deciding_vim(bundle),
            bundle.head_bias.clone(),
        ))
    }

    /// [`Detector::with_options`], consuming the bundle: its model bytes are dropped as soon as
    /// they are read, which keeps a device's peak memory down.
    pub fn from_bundle(
        mut bundle: Bundle,
        options: BackboneOptions,
    ) -> Result<Self, DetectorError> {
        bundle.validate()?;
        deciding_statistics_present(&bundle.manifest)?;
        let backbone = match bundle.program.take() {
            Some(program) if options.integer => {
                bundle.backbone = Vec::new();
                Backbone::Integer(integer_backbone(&program, options)?)
            }
            _ if bundle.backbone.is_empty() => return Err(DetectorError::NoTractBackbone),
            #[cfg(feature = "tract")]
            _ => {
                let size = bundle.manifest.input.size as usize;
                let model = backbone::decluttered_model(&bundle.backbone, size)?;
                bundle.backbone = Vec::new();
                Self::tract(model, options, &bundle.manifest)?
            }
            #[cfg(not(feature = "tract"))]
            _ => return Err(DetectorError::TractNotBuilt),
        };
        let dice = deciding_dice_weights(&bundle);
        let vim = deciding_vim(&bundle);
        let neck = Neck::load(&bundle)?;
        bundle.neck = Vec::new();
        let head = HeadWeights::taken(&mut bundle);
        Ok(Self::assemble(
            backbone,
            neck,
            bundle.manifest,
            head,
            dice,
            vim,
            bundle.head_bias,
        ))
    }

    /// The decluttered backbone optimized for tract and checked against the pre-pool tensor the
    /// manifest declares.
    #[cfg(feature = "tract")]
    fn tract(
        model: TypedModel,
        options: BackboneOptions,
        manifest: &Manifest,
    ) -> Result<Backbone, DetectorError> {
        let model = backbone::optimize(model, options)?;
        let output = pre_pool_fact(&model)?;
        let p = manifest.pre_pool;
        let (c, h, w) = (p.channels as usize, p.height as usize, p.width as usize);
        let expected = match p.layout {
            Layout::Nchw => [1, c, h, w],
            Layout::Nhwc => [1, h, w, c],
        };
        let got = output.shape.as_concrete().map(<[usize]>::to_vec);
        let datum = match p.storage {
            ActivationStorage::F32 => f32::datum_type(),
            ActivationStorage::U8(_) => u8::datum_type(),
        };
        if got.as_deref() != Some(&expected[..]) || output.datum_type != datum {
            return Err(DetectorError::PrePoolShape {
                expected: format!("{expected:?} {datum:?}"),
                got: format!("{:?} {:?}", output.shape, output.datum_type),
            });
        }
        let plan = backbone::guarded("planning the backbone", || model.into_runnable())?;
        Ok(Backbone::Tract(plan))
    }

    fn assemble(
        backbone: Backbone,
        neck: Option<Neck>,
        manifest: Manifest,
        head: HeadWeights,
        dice_weights: Option<Vec<f32>>,
        vim: Option<(VimSpec, Vec<f32>)>,
        head_bias: Vec<f32>,
    ) -> Self {
        Detector {
            backbone,
            dice_head: dice_weights.map(|w| head.masked(w)),
            vim,
            neck,
            head,
            head_bias,
            reducer: Reducer::new(),
            manifest,
        }
    }

    /// Whether the integer program runs the backbone (otherwise tract does).
    pub fn runs_integer_program(&self) -> bool {
        matches!(self.backbone, Backbone::Integer(_))
    }

    /// The integer kernels' paths (stem, pointwise, depthwise, add) when the integer program
    /// runs the backbone.
    pub fn integer_paths(&self) -> Option<[nap_core::isa::Isa; 4]> {
        match &self.backbone {
            Backbone::Integer(integer) => Some(integer.paths()),
            #[cfg(feature = "tract")]
            Backbone::Tract(_) => None,
        }
    }

    /// How many of the integer program's expansions run fused with their depthwise
    /// convolution (0 when tract runs the backbone).
    pub fn fused_expansions(&self) -> usize {
        match &self.backbone {
            Backbone::Integer(integer) => integer.fused_expansions(),
            #[cfg(feature = "tract")]
            Backbone::Tract(_) => 0,
        }
    }

    /// How the pre-pool tensor [`Detector::backbone`] returns is laid out: NHWC from the
    /// integer program, the manifest's layout from tract.
    pub fn pre_pool_layout(&self) -> Layout {
        match self.backbone {
            Backbone::Integer(_) => Layout::Nhwc,
            #[cfg(feature = "tract")]
            Backbone::Tract(_) => self.manifest.pre_pool.layout,
        }
    }

    /// The bundle's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// Scratch and tract state for one worker thread.
    pub fn worker(&self) -> Result<Worker, DetectorError> {
        let (c, k) = (
            self.manifest.pre_pool.channels as usize,
            self.manifest.head.classes as usize,
        );
        let dense_input = match &self.neck {
            Some(neck) => vec![0.0; neck.width()],
            None => Vec::new(),
        };
        let state = match &self.backbone {
            #[cfg(feature = "tract")]
            Backbone::Tract(plan) => {
                BackboneState::Tract(backbone::guarded("preparing a worker", || plan.spawn())?)
            }
            Backbone::Integer(integer) => BackboneState::Integer(integer.activations()),
        };
        Ok(Worker {
            state,
            max: vec![0.0; c],
            sum: vec![0.0; c],
            max_u8: vec![0; c],
            sum_u8: vec![0; c],
            pooled: vec![0.0; c],
            dense_input,
            logits: vec![0.0; k],
            dice_logits: vec![0.0; k],
            vim_projection: vec![0.0; self.vim.as_ref().map_or(0, |(v, _)| v.dims())],
            scratch: vec![0.0; Workspace::required(c, k)],
        })
    }

    /// The head's last dense layer.
    fn head(&self) -> HeadView<'_> {
        self.head
            .view(&self.head_bias, self.manifest.head.features as usize)
    }

    /// Runs the backbone on one preprocessed frame (NCHW, `3 * size * size` floats) and returns
    /// the pre-pool tensor, laid out as [`Detector::pre_pool_layout`] says.
    pub fn backbone(&self, worker: &mut Worker, input: Vec<f32>) -> Result<PrePool, DetectorError> {
        let size = self.manifest.input.size as usize;
        if input.len() != 3 * size * size {
            return Err(DetectorError::InputLength {
                expected: 3 * size * size,
                got: input.len(),
                size: self.manifest.input.size,
            });
        }
        match (&self.backbone, &mut worker.state) {
            #[cfg(feature = "tract")]
            (Backbone::Tract(_), BackboneState::Tract(state)) => {
                let input = Tensor::from_shape(&[1, 3, size, size], &input)?;
                let outputs =
                    backbone::guarded("running the backbone", || state.run(tvec!(input.into())))?;
                let values = outputs[0].try_as_plain_ram()?;
                // Preparation checked the output's datum type against the manifest's storage.
                Ok(match self.manifest.pre_pool.storage {
                    ActivationStorage::F32 => PrePool::F32(values.as_slice::<f32>()?.to_vec()),
                    ActivationStorage::U8(_) => PrePool::U8(values.as_slice::<u8>()?.to_vec()),
                })
            }
            (Backbone::Integer(integer), BackboneState::Integer(act)) => {
                let codes =
                    integer
                        .run(act, &input)
                        .ok_or_else(|| DetectorError::PrePoolShape {
                            expected: format!("{:?}", integer.output_shape()),
                            got: "nothing: the worker belongs to another detector".into(),
                        })?;
                Ok(PrePool::U8(codes.to_vec()))
            }
            #[cfg(feature = "tract")]
            _ => Err(DetectorError::PrePoolShape {
                expected: "the pre-pool tensor".into(),
                got: "nothing: the worker belongs to another detector".into(),
            }),
        }
    }

    /// One pass over the pre-pool tensor: S_NAP, and the pooled feature left in the worker.
    pub fn reduce(&self, worker: &mut Worker, pre_pool: &PrePool) -> Result<f32, DetectorError> {
        let p = self.manifest.pre_pool;
        let plane = (p.height * p.width) as usize;
        let shape = Shape {
            channels: p.channels as usize,
            plane,
            layout: self.pre_pool_layout(),
        };
        let eps = self.manifest.scorer.params.eps;
        let nap = match (p.storage, pre_pool) {
            (ActivationStorage::F32, PrePool::F32(a)) => {
                self.reducer
                    .reduce_f32(shape, a, &mut worker.max, &mut worker.sum)?;
                nap_f32(&worker.max, &worker.sum, plane, eps, &mut worker.pooled)
            }
            (ActivationStorage::U8(quant), PrePool::U8(a)) => {
                self.reducer
                    .reduce_u8(shape, a, &mut worker.max_u8, &mut worker.sum_u8)?;
                nap_u8(
                    &worker.max_u8,
                    &worker.sum_u8,
                    plane,
                    quant,
                    eps,
                    &mut worker.pooled,
                )
            }
            (storage, _) => {
                return Err(DetectorError::PrePoolStorage {
                    expected: storage.name(),
                    got: pre_pool.storage_name(),
                });
            }
        };
        Ok(nap)
    }

    /// Per-channel max of the pre-pool tensor the last [`Detector::reduce`] read, in the
    /// activation's real units (dequantized for u8 storage), as S_NAP sees it.
    pub fn channel_max(&self, worker: &Worker) -> Vec<f32> {
        match self.manifest.pre_pool.storage {
            ActivationStorage::F32 => worker.max.clone(),
            ActivationStorage::U8(q) => {
                let zero = f32::from(q.zero_point);
                // The same expression as `nap_core::nap::nap_u8`.
                worker
                    .max_u8
                    .iter()
                    .map(|&m| q.scale * (f32::from(m) - zero))
                    .collect()
            }
        }
    }

    /// The classifier head on the pooled feature the last [`Detector::reduce`] left.
    pub fn logits(&self, worker: &mut Worker) -> Result<(), DetectorError> {
        let input = match &self.neck {
            Some(neck) => {
                neck.run(&worker.pooled, &mut worker.dense_input)?;
                &worker.dense_input
            }
            None => &worker.pooled,
        };
        self.head().logits(input, &mut worker.logits);
        Ok(())
    }

    /// Scores under one method, from the worker's pooled feature and logits.
    pub fn score(
        &self,
        worker: &mut Worker,
        nap: f32,
        method: Method,
    ) -> Result<Score, DetectorError> {
        let recipe = method.recipe();
        let dense_input = if self.neck.is_some() {
            &worker.dense_input
        } else {
            &worker.pooled
        };
        let dice_logits = match &self.dice_head {
            Some(dice) if recipe.shaping == Shaping::Dice => {
                let features = self.manifest.head.features as usize;
                dice.view(&self.head_bias, features)
                    .logits(dense_input, &mut worker.dice_logits);
                Some(&worker.dice_logits[..])
            }
            _ => None,
        };
        let vim_logit = match &self.vim {
            Some((vim, offset)) if recipe.logit_score == LogitScore::VimEnergy => Some(
                vim.view(offset)
                    .virtual_logit(dense_input, &mut worker.vim_projection),
            ),
            _ => None,
        };
        let evidence = Evidence {
            nap,
            pooled: &worker.pooled,
            logits: &worker.logits,
            dice_logits,
            vim_logit,
        };
        let params = &self.manifest.scorer.params;
        let mut workspace = Workspace::new(&mut worker.scratch);
        match &self.neck {
            None => Ok(method.score(params, &evidence, &self.head(), &mut workspace)?),
            Some(neck) => {
                let head = NeckThen::new(neck, self.head());
                let score = method.score(params, &evidence, &head, &mut workspace)?;
                head.check()?;
                Ok(score)
            }
        }
    }

    /// Everything after the backbone: reduction, head, the reference scores and the verdict.
    pub fn analyze_pre_pool(
        &self,
        worker: &mut Worker,
        pre_pool: &PrePool,
    ) -> Result<Analysis, DetectorError> {
        let nap = self.reduce(worker, pre_pool)?;
        self.logits(worker)?;
        let top1 = worker
            .logits
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map_or(0, |(i, _)| i);
        let lse = self.score(worker, nap, Method::Energy)?.value;
        let msp = self.score(worker, nap, Method::Msp)?.value;
        let scorer = self.manifest.scorer;
        let decided = self.score(worker, nap, scorer.method)?;
        Ok(Analysis {
            top1,
            lse,
            nap,
            msp,
            score: decided.value,
            clamped: decided.clamped,
            ood: scorer.threshold.map(|t| decided.value < t),
        })
    }

    /// A preprocessed frame from input tensor to verdict.
    pub fn analyze(&self, worker: &mut Worker, input: Vec<f32>) -> Result<Analysis, DetectorError> {
        let pre_pool = self.backbone(worker, input)?;
        self.analyze_pre_pool(worker, &pre_pool)
    }
}
