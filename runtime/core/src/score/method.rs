//! The method registry: every scoring method by name, as a recipe of shaping, logit score and
//! fusion, behind one `score` call.

use super::fusion::fuse;
use super::head::Head;
use super::logits::{generalized_entropy, max_logit, max_softmax, neg_energy};
use super::shaping::{Ash, ash, react};
use crate::nap::DEFAULT_EPS;

/// An OOD scoring method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Method {
    /// Maximum softmax probability (Hendrycks & Gimpel).
    #[serde(rename = "MSP")]
    Msp,
    /// Negative energy, the logsumexp of the logits (Liu et al.).
    #[serde(rename = "Energy")]
    Energy,
    /// Energy of the head applied to the clipped pooled feature (Sun et al.).
    #[serde(rename = "ReAct")]
    React,
    /// Energy after ASH-S shaping (Djurisic et al.).
    #[serde(rename = "ASH-S")]
    AshS,
    /// Energy after ASH-B shaping.
    #[serde(rename = "ASH-B")]
    AshB,
    /// Energy after ASH-P shaping.
    #[serde(rename = "ASH-P")]
    AshP,
    /// S_NAP alone, the Neural Activation Prior.
    #[serde(rename = "NAP")]
    Nap,
    /// NAP fused with energy: the default.
    #[serde(rename = "NAP-E")]
    NapE,
    /// NAP fused with ReAct's energy.
    #[serde(rename = "NAP-R")]
    NapR,
    /// NAP fused with ASH-S's energy.
    #[serde(rename = "NAP-A")]
    NapA,
    /// NAP fused with the maximum softmax probability.
    #[serde(rename = "NAP-M")]
    NapM,
    // Bundles store a method by its position here: new methods go last.
    /// The largest logit (Hendrycks et al. 2022).
    #[serde(rename = "MaxLogit")]
    MaxLogit,
    /// Negative generalized entropy of the top softmax probabilities (Liu et al. 2023).
    #[serde(rename = "GEN")]
    Gen,
    /// Energy after SCALE, ASH-S's rescaling without its pruning (Xu et al. 2024).
    #[serde(rename = "SCALE")]
    Scale,
    /// Energy of the head sparsified by ID contributions (Sun & Li 2022).
    #[serde(rename = "DICE")]
    Dice,
    /// NAP fused with DICE's energy.
    #[serde(rename = "NAP-D")]
    NapD,
    /// Energy less the feature's norm off the ID principal subspace (Wang et al. 2022).
    #[serde(rename = "ViM")]
    Vim,
}

/// How a method shapes the pooled feature before the head runs again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shaping {
    /// The frame's own logits are used.
    None,
    /// ReAct clipping at the calibrated `c`.
    React,
    /// ASH at the configured percentile.
    Ash(Ash),
    /// The unshaped feature through DICE's sparsified head.
    Dice,
}

/// Which score a method reads off the (possibly shaped) logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogitScore {
    /// No logits: S_NAP alone.
    None,
    /// `logsumexp` of the logits.
    NegEnergy,
    /// Maximum softmax probability.
    MaxSoftmax,
    /// The largest logit.
    MaxLogit,
    /// GEN's negative generalized entropy.
    GeneralizedEntropy,
    /// `logsumexp` of the logits less ViM's virtual logit.
    VimEnergy,
}

/// A method spelled out as its three steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recipe {
    /// Shaping of the pooled feature.
    pub shaping: Shaping,
    /// The score taken from the logits.
    pub logit_score: LogitScore,
    /// Whether the logit score is fused with S_NAP (with the method's weight).
    pub fused: bool,
}

impl Method {
    /// Every method: the logit scores, the shaping methods, then NAP and its fusions, as the
    /// paper's tables list them.
    pub const ALL: [Method; 17] = [
        Method::Msp,
        Method::MaxLogit,
        Method::Energy,
        Method::Gen,
        Method::React,
        Method::AshS,
        Method::AshB,
        Method::AshP,
        Method::Scale,
        Method::Dice,
        Method::Vim,
        Method::Nap,
        Method::NapE,
        Method::NapR,
        Method::NapA,
        Method::NapM,
        Method::NapD,
    ];

    /// The method's name as the paper writes it; [`Method::from_name`] reads it back.
    pub const fn name(self) -> &'static str {
        match self {
            Method::Msp => "MSP",
            Method::Energy => "Energy",
            Method::React => "ReAct",
            Method::AshS => "ASH-S",
            Method::AshB => "ASH-B",
            Method::AshP => "ASH-P",
            Method::Nap => "NAP",
            Method::NapE => "NAP-E",
            Method::NapR => "NAP-R",
            Method::NapA => "NAP-A",
            Method::NapM => "NAP-M",
            Method::MaxLogit => "MaxLogit",
            Method::Gen => "GEN",
            Method::Scale => "SCALE",
            Method::Dice => "DICE",
            Method::NapD => "NAP-D",
            Method::Vim => "ViM",
        }
    }

    /// The method with this name, ignoring ASCII case.
    pub fn from_name(name: &str) -> Result<Method, UnknownMethod> {
        Method::ALL
            .into_iter()
            .find(|m| m.name().eq_ignore_ascii_case(name))
            .ok_or(UnknownMethod)
    }

    /// The method's steps.
    pub const fn recipe(self) -> Recipe {
        use LogitScore::*;
        let (shaping, logit_score, fused) = match self {
            Method::Msp => (Shaping::None, MaxSoftmax, false),
            Method::Energy => (Shaping::None, NegEnergy, false),
            Method::React => (Shaping::React, NegEnergy, false),
            Method::AshS => (Shaping::Ash(Ash::S), NegEnergy, false),
            Method::AshB => (Shaping::Ash(Ash::B), NegEnergy, false),
            Method::AshP => (Shaping::Ash(Ash::P), NegEnergy, false),
            Method::Nap => (Shaping::None, None, false),
            Method::NapE => (Shaping::None, NegEnergy, true),
            Method::NapR => (Shaping::React, NegEnergy, true),
            Method::NapA => (Shaping::Ash(Ash::S), NegEnergy, true),
            Method::NapM => (Shaping::None, MaxSoftmax, true),
            Method::MaxLogit => (Shaping::None, MaxLogit, false),
            Method::Gen => (Shaping::None, GeneralizedEntropy, false),
            Method::Scale => (Shaping::Ash(Ash::Scale), NegEnergy, false),
            Method::Dice => (Shaping::Dice, NegEnergy, false),
            Method::NapD => (Shaping::Dice, NegEnergy, true),
            Method::Vim => (Shaping::None, VimEnergy, false),
        };
        Recipe {
            shaping,
            logit_score,
            fused,
        }
    }

    /// Scores one frame. `head` must be the head that produced `evidence.logits`.
    pub fn score<H: Head + ?Sized>(
        self,
        params: &Params,
        evidence: &Evidence<'_>,
        head: &H,
        workspace: &mut Workspace<'_>,
    ) -> Result<Score, ScoreError> {
        let recipe = self.recipe();
        if recipe.logit_score == LogitScore::None {
            return Ok(Score {
                value: evidence.nap,
                clamped: false,
            });
        }
        let logit_score = if recipe.logit_score == LogitScore::GeneralizedEntropy {
            // Never shaped: the workspace is free to hold the probabilities.
            check_len("logits", head.classes(), evidence.logits.len())?;
            let (_, _, scratch) = workspace.split(head.features(), head.classes())?;
            generalized_entropy(evidence.logits, scratch)
        } else {
            let logits = shaped_logits(recipe.shaping, params, evidence, head, workspace)?;
            match recipe.logit_score {
                LogitScore::MaxSoftmax => max_softmax(logits),
                LogitScore::MaxLogit => max_logit(logits).unwrap_or(f32::NEG_INFINITY),
                LogitScore::VimEnergy => {
                    neg_energy(logits) - evidence.vim_logit.ok_or(ScoreError::VimUncalibrated)?
                }
                _ => neg_energy(logits),
            }
        };
        if !recipe.fused {
            return Ok(Score {
                value: logit_score,
                clamped: false,
            });
        }
        let fused = fuse(logit_score, evidence.nap, params.weights.of(self));
        Ok(Score {
            value: fused.score,
            clamped: fused.clamped,
        })
    }
}

/// The logits a recipe scores: the frame's own, or the head rerun on the shaped pooled feature.
fn shaped_logits<'a, H: Head + ?Sized>(
    shaping: Shaping,
    params: &Params,
    evidence: &Evidence<'a>,
    head: &H,
    workspace: &'a mut Workspace<'_>,
) -> Result<&'a [f32], ScoreError> {
    check_len("pooled feature", head.features(), evidence.pooled.len())?;
    match shaping {
        Shaping::None => {
            check_len("logits", head.classes(), evidence.logits.len())?;
            return Ok(evidence.logits);
        }
        Shaping::Dice => {
            let logits = evidence.dice_logits.ok_or(ScoreError::DiceUncalibrated)?;
            check_len("DICE logits", head.classes(), logits.len())?;
            return Ok(logits);
        }
        Shaping::React | Shaping::Ash(_) => {}
    }
    let (features, scratch, logits) = workspace.split(head.features(), head.classes())?;
    match shaping {
        Shaping::React => {
            let clip = params.react_clip.ok_or(ScoreError::ReactUncalibrated)?;
            react(evidence.pooled, clip, features);
        }
        Shaping::Ash(variant) => ash(
            variant,
            evidence.pooled,
            params.ash_percentile,
            features,
            scratch,
        ),
        Shaping::None | Shaping::Dice => unreachable!("handled above"),
    }
    head.logits(features, logits);
    Ok(logits)
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), ScoreError> {
    if expected == got {
        Ok(())
    } else {
        Err(ScoreError::Length {
            what,
            expected,
            got,
        })
    }
}

impl core::str::FromStr for Method {
    type Err = UnknownMethod;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::from_name(s)
    }
}

impl core::fmt::Display for Method {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A method name that is not one of [`Method::ALL`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownMethod;

impl core::error::Error for UnknownMethod {}

impl core::fmt::Display for UnknownMethod {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("unknown scoring method; expected one of")?;
        for m in Method::ALL {
            write!(f, " {}", m.name())?;
        }
        Ok(())
    }
}

/// The weight `w` of the logit score in each fused method (S_NAP gets `1 - w`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FusionWeights {
    /// NAP-E.
    pub nap_e: f32,
    /// NAP-R.
    pub nap_r: f32,
    /// NAP-A.
    pub nap_a: f32,
    /// NAP-M.
    pub nap_m: f32,
    /// NAP-D.
    pub nap_d: f32,
}

impl Default for FusionWeights {
    /// The paper's ImageNet MobileNetV2 weights (NAP-M: 0.3; NAP-D, which the paper does not
    /// have, as NAP-R and NAP-A: 0.8), used until calibration.
    fn default() -> Self {
        FusionWeights {
            nap_e: 0.6,
            nap_r: 0.8,
            nap_a: 0.8,
            nap_m: 0.3,
            nap_d: 0.8,
        }
    }
}

impl FusionWeights {
    /// The weight of a fused method; 1.0 (the logit score alone) for the others.
    pub fn of(&self, method: Method) -> f32 {
        match method {
            Method::NapE => self.nap_e,
            Method::NapR => self.nap_r,
            Method::NapA => self.nap_a,
            Method::NapM => self.nap_m,
            Method::NapD => self.nap_d,
            _ => 1.0,
        }
    }
}

/// Every tunable constant of the methods, as stored in a bundle.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Params {
    /// NAP's `eps` in `max / (mean + eps)`.
    pub eps: f32,
    /// ReAct's clip `c`, the 90th percentile of ID pooled activations; `None` until calibrated.
    pub react_clip: Option<f32>,
    /// ASH's pruning percentile `p` in [0, 100).
    pub ash_percentile: f32,
    /// Fusion weights.
    pub weights: FusionWeights,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            eps: DEFAULT_EPS,
            react_clip: None,
            ash_percentile: 90.0,
            weights: FusionWeights::default(),
        }
    }
}

impl Params {
    /// Checks every value is in its domain, so a bad config fails at load, not per frame.
    pub fn validate(&self) -> Result<(), ScoreError> {
        let bad = |name| Err(ScoreError::InvalidParam(name));
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return bad("eps must be positive and finite");
        }
        if let Some(c) = self.react_clip
            && !(c >= 0.0 && c.is_finite())
        {
            return bad("ReAct clip must be non-negative and finite");
        }
        if !(0.0..100.0).contains(&self.ash_percentile) {
            return bad("ASH percentile must be in [0, 100)");
        }
        let w = self.weights;
        if [w.nap_e, w.nap_r, w.nap_a, w.nap_m, w.nap_d]
            .iter()
            .any(|w| !(0.0..=1.0).contains(w))
        {
            return bad("fusion weights must be in [0, 1]");
        }
        Ok(())
    }
}

/// What a method may look at for one frame.
#[derive(Clone, Copy, Debug)]
pub struct Evidence<'a> {
    /// S_NAP of the pre-pool activation.
    pub nap: f32,
    /// The pooled feature (per-channel mean of the pre-pool activation).
    pub pooled: &'a [f32],
    /// The head's logits for `pooled`.
    pub logits: &'a [f32],
    /// DICE's sparsified head's logits for `pooled`, where the bundle has DICE's ID statistics;
    /// DICE and NAP-D need them.
    pub dice_logits: Option<&'a [f32]>,
    /// ViM's virtual logit for the head's dense input, where the bundle has ViM's subspace;
    /// ViM needs it.
    pub vim_logit: Option<f32>,
}

/// Caller-provided scratch space, so scoring never allocates.
pub struct Workspace<'a> {
    buffer: &'a mut [f32],
}

impl<'a> Workspace<'a> {
    /// Floats a workspace needs for a head of this size: a shaped feature, a selection
    /// scratch and shaped logits.
    pub const fn required(features: usize, classes: usize) -> usize {
        2 * features + classes
    }

    /// Wraps a buffer of at least [`Workspace::required`] floats.
    pub fn new(buffer: &'a mut [f32]) -> Self {
        Workspace { buffer }
    }

    #[allow(clippy::type_complexity)]
    fn split(
        &mut self,
        features: usize,
        classes: usize,
    ) -> Result<(&mut [f32], &mut [f32], &mut [f32]), ScoreError> {
        let needed = Self::required(features, classes);
        if self.buffer.len() < needed {
            return Err(ScoreError::Length {
                what: "workspace",
                expected: needed,
                got: self.buffer.len(),
            });
        }
        let (features_buf, rest) = self.buffer[..needed].split_at_mut(features);
        let (scratch, logits) = rest.split_at_mut(features);
        Ok((features_buf, scratch, logits))
    }
}

/// One frame's score under one method.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// Higher means more in-distribution.
    pub value: f32,
    /// Fusion raised a factor to [`super::FUSION_FLOOR`]; counted by the runtime.
    pub clamped: bool,
}

/// Why a frame could not be scored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScoreError {
    /// ReAct needs its clip from calibration.
    ReactUncalibrated,
    /// DICE needs its sparsified head: the ID statistics calibration stores, loaded when DICE
    /// or NAP-D decides.
    DiceUncalibrated,
    /// ViM needs its principal subspace, which calibration stores when ViM decides.
    VimUncalibrated,
    /// A buffer does not match the head.
    Length {
        /// Which buffer.
        what: &'static str,
        /// The length the head needs.
        expected: usize,
        /// The buffer's length.
        got: usize,
    },
    /// A parameter outside its domain.
    InvalidParam(&'static str),
}

impl core::error::Error for ScoreError {}

impl core::fmt::Display for ScoreError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ScoreError::ReactUncalibrated => {
                f.write_str("ReAct needs a clip value from calibration (react_clip is unset)")
            }
            ScoreError::DiceUncalibrated => f.write_str(
                "DICE needs its sparsified head, made from the ID mean pooled feature napctl \
                 calibrate stores when DICE or NAP-D decides",
            ),
            ScoreError::VimUncalibrated => f.write_str(
                "ViM needs the principal subspace of ID features napctl calibrate stores when \
                 ViM decides",
            ),
            ScoreError::Length {
                what,
                expected,
                got,
            } => {
                write!(
                    f,
                    "{what} has {got} values, the classifier head needs {expected}"
                )
            }
            ScoreError::InvalidParam(why) => write!(f, "invalid scorer parameter: {why}"),
        }
    }
}
