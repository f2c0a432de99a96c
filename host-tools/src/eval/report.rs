//! Evaluation of every method on cached features: what `napctl eval` prints, as the NAP paper's
//! Table 2 (all methods) and Table 5 (NAP variants over `w`).
//!
//! Each frame is reduced once to its [`Components`], the handful of logit scores the methods are
//! made of; every method and every `w` is then a fusion of those, so sweeping `w` costs nothing.

use crate::cache::Features;
use crate::metrics::{MetricsError, OodMetrics};
use nap_core::score::{
    Evidence, FusionWeights, Head, LinearHead, Method, Params, ScoreError, Workspace, fuse,
};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The methods `eval` reports, in the paper's order.
pub const EVAL_METHODS: [Method; 10] = [
    Method::Msp,
    Method::Energy,
    Method::React,
    Method::AshS,
    Method::AshB,
    Method::Nap,
    Method::NapE,
    Method::NapR,
    Method::NapA,
    Method::NapM,
];

/// The fused methods, whose weight `w` calibration chooses.
pub const FUSED_METHODS: [Method; 4] = [Method::NapE, Method::NapR, Method::NapA, Method::NapM];

/// One frame's ingredient scores: every method is one of these or a fusion of one with `nap`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Components {
    /// S_NAP.
    pub nap: f32,
    /// Negative energy of the frame's logits.
    pub lse: f32,
    /// Maximum softmax probability.
    pub msp: f32,
    /// Negative energy after ReAct clipping.
    pub react: f32,
    /// Negative energy after ASH-S.
    pub ash_s: f32,
    /// Negative energy after ASH-B.
    pub ash_b: f32,
    /// Negative energy after ASH-P.
    pub ash_p: f32,
}

impl Components {
    /// Computes the components of one frame with the core's own method code, so the numbers are
    /// the device's. `params.react_clip` must be set.
    pub fn of(
        features: &Features,
        head: &LinearHead<'_>,
        params: &Params,
    ) -> Result<Self, ScoreError> {
        let nap = features.nap(params.eps);
        let mut logits = vec![0.0; head.classes()];
        head.logits(&features.pooled, &mut logits);
        let mut buffer = vec![0.0; Workspace::required(head.features(), head.classes())];
        let evidence = Evidence {
            nap,
            pooled: &features.pooled,
            logits: &logits,
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
            react: score(Method::React)?,
            ash_s: score(Method::AshS)?,
            ash_b: score(Method::AshB)?,
            ash_p: score(Method::AshP)?,
        })
    }

    /// Components of many frames, in parallel.
    pub fn of_all(
        features: &[Features],
        head: &LinearHead<'_>,
        params: &Params,
    ) -> Result<Vec<Self>, ScoreError> {
        features
            .par_iter()
            .map(|f| Components::of(f, head, params))
            .collect()
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

/// One set's name and component scores.
#[derive(Clone, Debug)]
pub struct ScoredSet {
    /// The set's name (its folder's base name, or `pseudo-ood`).
    pub name: String,
    /// One entry per frame.
    pub frames: Vec<Components>,
}

/// The five numbers the paper's tables give for one method, in percent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct MethodMetrics {
    /// FPR at 95% TPR, ID positive (the NAP paper's convention).
    pub fpr95: f64,
    /// FPR at 95% TPR, OOD positive (OpenOOD's convention).
    pub fpr95_ood_positive: f64,
    /// AUROC.
    pub auroc: f64,
    /// AUPR with ID positive.
    pub aupr_in: f64,
    /// AUPR with OOD positive.
    pub aupr_out: f64,
}

impl MethodMetrics {
    fn from(m: &OodMetrics) -> Self {
        let p = m.percent();
        MethodMetrics {
            fpr95: p.fpr_id_positive,
            fpr95_ood_positive: p.fpr_ood_positive,
            auroc: p.auroc,
            aupr_in: p.aupr_in,
            aupr_out: p.aupr_out,
        }
    }

    fn mean(all: &[MethodMetrics]) -> Self {
        let n = all.len().max(1) as f64;
        let avg = |f: fn(&MethodMetrics) -> f64| all.iter().map(f).sum::<f64>() / n;
        MethodMetrics {
            fpr95: avg(|m| m.fpr95),
            fpr95_ood_positive: avg(|m| m.fpr95_ood_positive),
            auroc: avg(|m| m.auroc),
            aupr_in: avg(|m| m.aupr_in),
            aupr_out: avg(|m| m.aupr_out),
        }
    }
}

/// A set's name and size, as the JSON report names them.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SetInfo {
    /// The set's name.
    pub set: String,
    /// Number of frames.
    pub n: usize,
}

/// One OOD set's results.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OodResult {
    /// The set's name.
    pub set: String,
    /// Number of frames.
    pub n: usize,
    /// Metrics per method name.
    pub methods: BTreeMap<String, MethodMetrics>,
}

/// The whole evaluation, serialized as `napctl eval --json` writes it (values in percent).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EvalReport {
    /// The ID set.
    pub id: SetInfo,
    /// One entry per OOD set.
    pub ood: Vec<OodResult>,
    /// Per method, the mean over the OOD sets.
    pub average: BTreeMap<String, MethodMetrics>,
}

/// Evaluates `methods` on ID against every OOD set, at the ID-positive threshold keeping 95%.
pub fn evaluate(
    id: &ScoredSet,
    oods: &[ScoredSet],
    methods: &[Method],
    weights: &FusionWeights,
) -> Result<EvalReport, MetricsError> {
    let mut ood = Vec::new();
    for set in oods {
        let mut table = BTreeMap::new();
        for &m in methods {
            let w = weights.of(m);
            let metrics = OodMetrics::compute(
                &scores(&id.frames, m, w),
                &scores(&set.frames, m, w),
                crate::metrics::DEFAULT_TPR,
            )?;
            table.insert(m.name().to_string(), MethodMetrics::from(&metrics));
        }
        ood.push(OodResult {
            set: set.name.clone(),
            n: set.frames.len(),
            methods: table,
        });
    }
    let average = methods
        .iter()
        .map(|m| {
            let all: Vec<_> = ood.iter().map(|o| o.methods[m.name()]).collect();
            (m.name().to_string(), MethodMetrics::mean(&all))
        })
        .collect();
    Ok(EvalReport {
        id: SetInfo {
            set: id.name.clone(),
            n: id.frames.len(),
        },
        ood,
        average,
    })
}

impl EvalReport {
    /// The report as text: one block per OOD set and one for the average, methods as rows in
    /// `methods` order.
    pub fn table(&self, methods: &[Method]) -> String {
        let mut out = String::new();
        let mut block = |title: String, table: &BTreeMap<String, MethodMetrics>| {
            let _ = writeln!(out, "{title}");
            let _ = writeln!(
                out,
                "  {:<8} {:>10} {:>11} {:>7} {:>8} {:>9}",
                "method", "FPR95(ID+)", "FPR95(OOD+)", "AUROC", "AUPR-In", "AUPR-Out"
            );
            for m in methods {
                if let Some(r) = table.get(m.name()) {
                    let _ = writeln!(
                        out,
                        "  {:<8} {:>10.2} {:>11.2} {:>7.2} {:>8.2} {:>9.2}",
                        m.name(),
                        r.fpr95,
                        r.fpr95_ood_positive,
                        r.auroc,
                        r.aupr_in,
                        r.aupr_out
                    );
                }
            }
            let _ = writeln!(out);
        };
        for o in &self.ood {
            block(
                format!(
                    "{} (n = {}) vs ID {} (n = {})",
                    o.set, o.n, self.id.set, self.id.n
                ),
                &o.methods,
            );
        }
        if self.ood.len() > 1 {
            block(
                format!("Average over {} OOD sets", self.ood.len()),
                &self.average,
            );
        }
        out
    }
}

/// Mean FPR (ID-positive, at `tpr`) and mean AUROC over the OOD sets, as fractions, for one
/// method at weight `w`: the objective of the `w` search and the rows of the sweep table.
pub fn mean_fpr_auroc(
    id: &[Components],
    oods: &[&[Components]],
    method: Method,
    w: f32,
    tpr: f64,
) -> Result<(f64, f64), MetricsError> {
    let id_scores = scores(id, method, w);
    let (mut fpr, mut auroc) = (0.0, 0.0);
    for ood in oods {
        let m = OodMetrics::compute(&id_scores, &scores(ood, method, w), tpr)?;
        fpr += m.fpr_id_positive;
        auroc += m.auroc;
    }
    let n = oods.len().max(1) as f64;
    Ok((fpr / n, auroc / n))
}

/// The paper's Table 5: FPR95 and AUROC of each fused method as `w` goes from 0 (S_NAP alone)
/// to 1 (the logit score alone) in steps of 0.1, per OOD set and averaged over them.
pub fn sweep_table(id: &ScoredSet, oods: &[ScoredSet]) -> Result<String, MetricsError> {
    let mut out = String::new();
    let mut block = |title: String, sets: Vec<&[Components]>| -> Result<(), MetricsError> {
        let _ = writeln!(out, "{title}");
        let _ = write!(out, "{:>5}", "w");
        for m in FUSED_METHODS {
            let _ = write!(out, "  {:>17}", format!("{m} FPR95/AUROC"));
        }
        let _ = writeln!(out);
        for step in 0..=10 {
            let w = step as f32 / 10.0;
            let _ = write!(out, "{w:>5.1}");
            for m in FUSED_METHODS {
                let (fpr, auroc) =
                    mean_fpr_auroc(&id.frames, &sets, m, w, crate::metrics::DEFAULT_TPR)?;
                let _ = write!(
                    out,
                    "  {:>17}",
                    format!("{:.2}/{:.2}", 100.0 * fpr, 100.0 * auroc)
                );
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(out);
        Ok(())
    };
    for set in oods {
        block(
            format!("w sweep on {}", set.name),
            vec![set.frames.as_slice()],
        )?;
    }
    if oods.len() > 1 {
        block(
            format!("w sweep, mean over {} OOD sets", oods.len()),
            oods.iter().map(|s| s.frames.as_slice()).collect(),
        )?;
    }
    Ok(out)
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
        let params = Params {
            react_clip: Some(1.5),
            weights: FusionWeights {
                nap_e: 0.25,
                nap_r: 0.5,
                nap_a: 0.75,
                nap_m: 0.4,
            },
            ..Params::default()
        };
        for f in &features {
            let comps = Components::of(f, &head, &params).unwrap();
            let nap = f.nap(params.eps);
            let mut logits = vec![0.0; 5];
            head.logits(&f.pooled, &mut logits);
            let evidence = Evidence {
                nap,
                pooled: &f.pooled,
                logits: &logits,
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
        assert!(Components::of(&features[0], &head, &unset).is_err());
    }

    fn set(name: &str, values: &[(f32, f32)]) -> ScoredSet {
        ScoredSet {
            name: name.into(),
            frames: values
                .iter()
                .map(|&(lse, nap)| Components {
                    nap,
                    lse,
                    msp: 0.5,
                    react: lse,
                    ash_s: lse,
                    ash_b: lse,
                    ash_p: lse,
                })
                .collect(),
        }
    }

    #[test]
    fn report_averages_and_serializes_in_the_documented_schema() {
        let id = set("id", &[(10.0, 5.0), (11.0, 6.0), (12.0, 7.0), (13.0, 8.0)]);
        // OOD set a: separated by energy only; set b: by nothing (same as ID).
        let a = set("a", &[(1.0, 6.0), (2.0, 7.0)]);
        let b = set("b", &[(10.0, 5.0), (13.0, 8.0)]);
        let methods = [Method::Energy, Method::Nap];
        let r = evaluate(&id, &[a, b], &methods, &FusionWeights::default()).unwrap();
        assert_eq!(r.ood[0].methods["Energy"].auroc, 100.0);
        assert_eq!(r.ood[0].methods["Energy"].fpr95, 0.0);
        assert_eq!(r.ood[1].methods["Energy"].auroc, 50.0);
        assert_eq!(r.average["Energy"].auroc, 75.0);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["id"]["set"], "id");
        assert_eq!(json["id"]["n"], 4);
        assert_eq!(json["ood"][1]["set"], "b");
        assert_eq!(json["ood"][0]["n"], 2);
        let e = &json["ood"][0]["methods"]["Energy"];
        for key in [
            "fpr95",
            "fpr95_ood_positive",
            "auroc",
            "aupr_in",
            "aupr_out",
        ] {
            assert!(e[key].is_number(), "{key} missing");
        }
        assert_eq!(json["average"]["NAP"]["auroc"], r.average["NAP"].auroc);
        let table = r.table(&methods);
        assert!(table.contains("Average over 2 OOD sets"), "{table}");
        assert!(table.contains("Energy"), "{table}");
    }
}
