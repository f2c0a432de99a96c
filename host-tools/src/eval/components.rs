//! Every method's score of one frame from its cached features: the frame is reduced once to its
//! [`Components`], the handful of logit scores the methods are made of; every method and every
//! `w` is then a fusion of those, so sweeping `w` costs nothing.

use super::features::Features;
use nap_core::score::{
    Evidence, FusionWeights, Head, HeadError, LinearHead, Method, Params, ScoreError, Workspace,
    fuse,
};
use nap_runtime::bundle::DiceSpec;
use nap_runtime::neck::{Neck, NeckError, NeckThen};
use rayon::prelude::*;

/// The methods `eval` reports, in the paper's order.
pub const EVAL_METHODS: [Method; 16] = [
    Method::Msp,
    Method::MaxLogit,
    Method::Energy,
    Method::Gen,
    Method::React,
    Method::AshS,
    Method::AshB,
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

/// The fused methods, whose weight `w` calibration chooses.
pub const FUSED_METHODS: [Method; 5] = [
    Method::NapE,
    Method::NapR,
    Method::NapA,
    Method::NapM,
    Method::NapD,
];

/// Why a set of frames could not be scored.
#[derive(Debug, thiserror::Error)]
pub enum ComponentsError {
    /// A method could not score.
    #[error("{0}")]
    Score(#[from] ScoreError),
    /// The head's layers before its dense one failed.
    #[error("{0}")]
    Neck(#[from] NeckError),
    /// DICE's head does not fit.
    #[error("DICE's head: {0:?}")]
    Head(HeadError),
}

/// A bundle's classifier head as the host scores with it: the dense layer, after the bundle's
/// neck when it has one.
#[derive(Clone, Copy)]
pub struct HostHead<'a> {
    /// The last dense layer (an int8 head's dequantized weights).
    pub dense: LinearHead<'a>,
    /// The layers before it, when the head has any.
    pub neck: Option<&'a Neck>,
}

impl<'a> HostHead<'a> {
    /// A head that is one dense layer.
    pub fn dense(dense: LinearHead<'a>) -> Self {
        HostHead { dense, neck: None }
    }

    /// The dense layer's input for each frame: its pooled feature, through the neck if any.
    pub fn dense_inputs(&self, frames: &[Features]) -> Result<Vec<Vec<f32>>, NeckError> {
        let Some(neck) = self.neck else {
            return Ok(frames.iter().map(|f| f.pooled.clone()).collect());
        };
        frames
            .par_iter()
            .map(|f| {
                let mut out = vec![0.0; neck.width()];
                neck.run(&f.pooled, &mut out).map(|()| out)
            })
            .collect()
    }

    /// Every method's components of many frames, in parallel, with DICE's statistics and each
    /// frame's ViM virtual logit (NaN where ViM is left out).
    pub fn components(
        &self,
        frames: &[Features],
        dice: &DiceSpec,
        vim_logits: &[f32],
        params: &Params,
    ) -> Result<Vec<Components>, ComponentsError> {
        let sparse = dice.sparsified(self.dense.weights());
        let dice_dense = LinearHead::new(&sparse, self.dense.bias(), self.dense.features())
            .map_err(ComponentsError::Head)?;
        let Some(neck) = self.neck else {
            return Ok(Components::of_all(
                frames,
                &self.dense,
                &dice_dense,
                vim_logits,
                params,
            )?);
        };
        let (head, dice) = (
            NeckThen::new(neck, self.dense),
            NeckThen::new(neck, dice_dense),
        );
        let components = Components::of_all(frames, &head, &dice, vim_logits, params)?;
        head.check()?;
        dice.check()?;
        Ok(components)
    }
}

/// One frame's ingredient scores: every method is one of these or a fusion of one with `nap`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Components {
    /// S_NAP.
    pub nap: f32,
    /// Negative energy of the frame's logits.
    pub lse: f32,
    /// Maximum softmax probability.
    pub msp: f32,
    /// The largest logit.
    pub max_logit: f32,
    /// GEN's negative generalized entropy.
    pub gen_score: f32,
    /// Negative energy after ReAct clipping.
    pub react: f32,
    /// Negative energy after ASH-S.
    pub ash_s: f32,
    /// Negative energy after ASH-B.
    pub ash_b: f32,
    /// Negative energy after ASH-P.
    pub ash_p: f32,
    /// Negative energy after SCALE.
    pub scale: f32,
    /// Negative energy of DICE's sparsified head.
    pub dice: f32,
    /// Negative energy less ViM's virtual logit.
    pub vim: f32,
}

impl Components {
    /// Computes the components of one frame with the core's own method code, so the numbers are
    /// the device's. `params.react_clip` must be set; `dice` is the head with DICE's mask,
    /// `vim_logit` the frame's ViM virtual logit.
    pub fn of<H: Head>(
        features: &Features,
        head: &H,
        dice: &H,
        vim_logit: f32,
        params: &Params,
    ) -> Result<Self, ScoreError> {
        let nap = features.nap(params.eps);
        let mut logits = vec![0.0; head.classes()];
        head.logits(&features.pooled, &mut logits);
        let mut dice_logits = vec![0.0; head.classes()];
        dice.logits(&features.pooled, &mut dice_logits);
        let mut buffer = vec![0.0; Workspace::required(head.features(), head.classes())];
        let evidence = Evidence {
            nap,
            pooled: &features.pooled,
            logits: &logits,
            dice_logits: Some(&dice_logits),
            vim_logit: Some(vim_logit),
        };
        let mut score = |m: Method| -> Result<f32, ScoreError> {
            Ok(
                m.score(params, &evidence, head, &mut Workspace::new(&mut buffer))?
                    .value,
            )
        };
        Ok(Components {
            nap,
            lse: score(Method::Energy)?,
            msp: score(Method::Msp)?,
            max_logit: score(Method::MaxLogit)?,
            gen_score: score(Method::Gen)?,
            react: score(Method::React)?,
            ash_s: score(Method::AshS)?,
            ash_b: score(Method::AshB)?,
            ash_p: score(Method::AshP)?,
            scale: score(Method::Scale)?,
            dice: score(Method::Dice)?,
            vim: score(Method::Vim)?,
        })
    }

    /// Components of many frames, in parallel; `vim_logits` holds one per frame.
    pub fn of_all<H: Head + Sync>(
        features: &[Features],
        head: &H,
        dice: &H,
        vim_logits: &[f32],
        params: &Params,
    ) -> Result<Vec<Self>, ScoreError> {
        if vim_logits.len() != features.len() {
            return Err(ScoreError::Length {
                what: "ViM's virtual logits",
                expected: features.len(),
                got: vim_logits.len(),
            });
        }
        features
            .par_iter()
            .zip(vim_logits)
            .map(|(f, &vim)| Components::of(f, head, dice, vim, params))
            .collect()
    }

    /// The frame's components with ViM's virtual logit `vim_logit`: what [`Components::of`]
    /// gives with it, as ViM's score is the energy less it.
    pub fn with_vim_logit(self, vim_logit: f32) -> Self {
        Components {
            vim: self.lse - vim_logit,
            ..self
        }
    }

    /// The score of `method` with fusion weight `w` (ignored by unfused methods). Equals
    /// `Method::score` with `w` as the method's weight.
    pub fn score_with_w(&self, method: Method, w: f32) -> f32 {
        let fused = |logit: f32| fuse(logit, self.nap, w).score;
        match method {
            Method::Msp => self.msp,
            Method::Energy => self.lse,
            Method::React => self.react,
            Method::AshS => self.ash_s,
            Method::AshB => self.ash_b,
            Method::AshP => self.ash_p,
            Method::Nap => self.nap,
            Method::NapE => fused(self.lse),
            Method::NapR => fused(self.react),
            Method::NapA => fused(self.ash_s),
            Method::NapM => fused(self.msp),
            Method::MaxLogit => self.max_logit,
            Method::Gen => self.gen_score,
            Method::Scale => self.scale,
            Method::Dice => self.dice,
            Method::NapD => fused(self.dice),
            Method::Vim => self.vim,
        }
    }

    /// The score of `method` with the bundle's weights.
    pub fn score(&self, method: Method, weights: &FusionWeights) -> f32 {
        self.score_with_w(method, weights.of(method))
    }
}

/// Scores of a set of frames under one method and weight, widened for the metrics.
pub fn scores(set: &[Components], method: Method, w: f32) -> Vec<f64> {
    set.iter()
        .map(|c| f64::from(c.score_with_w(method, w)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small random-ish head and feature vectors.
    fn fixture() -> (Vec<f32>, Vec<f32>, Vec<Features>) {
        let (c, k) = (12, 5);
        let weights: Vec<f32> = (0..c * k)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
            .collect();
        let bias: Vec<f32> = (0..k).map(|i| i as f32 * 0.1).collect();
        let features = (0..6)
            .map(|n| {
                let pooled: Vec<f32> = (0..c)
                    .map(|j| ((j * 13 + n * 7) % 17) as f32 / 5.0)
                    .collect();
                let max = pooled
                    .iter()
                    .enumerate()
                    .map(|(j, p)| p * (1.0 + ((j + n) % 4) as f32))
                    .collect();
                Features { pooled, max }
            })
            .collect();
        (weights, bias, features)
    }

    #[test]
    fn components_give_every_method_exactly_as_the_core_scores_it() {
        let (w, b, features) = fixture();
        let head = LinearHead::new(&w, &b, 12).unwrap();
        let spec = DiceSpec {
            mean: features[0].pooled.clone(),
            sparsity: 60.0,
        };
        let sparse = spec.sparsified(head.weights());
        assert_eq!(sparse.iter().filter(|&&x| x == 0.0).count(), 36);
        let dice = LinearHead::new(&sparse, &b, 12).unwrap();
        let params = Params {
            react_clip: Some(1.5),
            weights: FusionWeights {
                nap_e: 0.25,
                nap_r: 0.5,
                nap_a: 0.75,
                nap_m: 0.4,
                nap_d: 0.6,
            },
            ..Params::default()
        };
        for (i, f) in features.iter().enumerate() {
            let vim_logit = 0.5 * i as f32;
            let comps = Components::of(f, &head, &dice, vim_logit, &params).unwrap();
            let without = Components::of(f, &head, &dice, f32::NAN, &params).unwrap();
            assert_eq!(without.with_vim_logit(vim_logit), comps);
            let nap = f.nap(params.eps);
            let mut logits = vec![0.0; 5];
            head.logits(&f.pooled, &mut logits);
            let mut dice_logits = vec![0.0; 5];
            dice.logits(&f.pooled, &mut dice_logits);
            let evidence = Evidence {
                nap,
                pooled: &f.pooled,
                logits: &logits,
                dice_logits: Some(&dice_logits),
                vim_logit: Some(vim_logit),
            };
            let mut buf = vec![0.0; Workspace::required(12, 5)];
            for m in Method::ALL {
                let want = m
                    .score(&params, &evidence, &head, &mut Workspace::new(&mut buf))
                    .unwrap()
                    .value;
                assert_eq!(comps.score(m, &params.weights), want, "{m}");
            }
        }
        // ReAct without a clip is refused, not silently scored.
        let unset = Params::default();
        assert!(Components::of(&features[0], &head, &dice, 0.0, &unset).is_err());
    }
}
