//! The paper's tables from component scores: Table 2 (every method's FPR95 in both
//! conventions, AUROC, AUPR-In and AUPR-Out per OOD set and averaged), as text and as the JSON
//! `napctl eval --json` writes, and Table 5 (the fused methods over `w`).

use super::components::{Components, FUSED_METHODS, scores};
use super::metrics::{DEFAULT_TPR, MetricsError, OodMetrics};
use nap_core::score::{FusionWeights, Method};
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

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
    /// Each bundle's own verdicts at its calibrated threshold (the evaluated bundle's, then
    /// those compared with it), when any has one.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub at_threshold: Vec<AtThreshold>,
}

/// One bundle's verdicts on the evaluated sets: its deciding method at its own calibrated
/// threshold, so an old and a new calibration can be compared on the same frames.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AtThreshold {
    /// The bundle file, as named on the command line.
    pub bundle: String,
    /// SHA-256 of the bundle file, as napd's log and captures name it.
    pub sha256: String,
    /// The deciding method.
    pub method: String,
    /// The threshold: frames scoring below it are flagged OOD.
    pub threshold: f32,
    /// Per set, the ID set first: how many frames are flagged.
    pub sets: Vec<Flagged>,
}

/// How many frames of a set a bundle flags.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Flagged {
    /// The set's name.
    pub set: String,
    /// Number of frames.
    pub n: usize,
    /// Frames scoring below the threshold.
    pub flagged: usize,
    /// The same, in percent of `n`.
    pub percent: f64,
}

impl AtThreshold {
    /// Flags the frames of `sets` whose `method` score (with `weights`) is below `threshold`.
    pub fn count(
        bundle: String,
        sha256: String,
        method: Method,
        weights: &FusionWeights,
        threshold: f32,
        sets: &[ScoredSet],
    ) -> AtThreshold {
        let sets = sets
            .iter()
            .map(|set| {
                let n = set.frames.len();
                let flagged = set
                    .frames
                    .iter()
                    .filter(|c| c.score(method, weights) < threshold)
                    .count();
                Flagged {
                    set: set.name.clone(),
                    n,
                    flagged,
                    percent: 100.0 * flagged as f64 / n.max(1) as f64,
                }
            })
            .collect();
        AtThreshold {
            bundle,
            sha256,
            method: method.name().to_string(),
            threshold,
            sets,
        }
    }

    /// Bundles as rows, sets as columns: the percent of frames each flags.
    pub fn table(rows: &[AtThreshold]) -> String {
        let Some(first) = rows.first() else {
            return String::new();
        };
        let width = rows
            .iter()
            .map(|r| r.bundle.len())
            .max()
            .unwrap_or(0)
            .max(6);
        let mut out = String::new();
        let _ = write!(
            out,
            "  {:<width$} {:<6} {:>10}",
            "bundle", "method", "threshold"
        );
        for set in &first.sets {
            let _ = write!(out, " {:>14}", truncate(&set.set, 14));
        }
        out.push('\n');
        for row in rows {
            let _ = write!(
                out,
                "  {:<width$} {:<6} {:>10.4}",
                row.bundle, row.method, row.threshold
            );
            for set in &row.sets {
                let _ = write!(out, " {:>14}", format!("{:.2}", set.percent));
            }
            out.push('\n');
        }
        out
    }
}

/// At most `max` characters of `text`, the end kept (set names differ at the end).
fn truncate(text: &str, max: usize) -> &str {
    let skip = text.chars().count().saturating_sub(max);
    text.char_indices()
        .nth(skip)
        .map_or("", |(i, _)| &text[i..])
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
                DEFAULT_TPR,
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
        at_threshold: Vec::new(),
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
                let (fpr, auroc) = mean_fpr_auroc(&id.frames, &sets, m, w, DEFAULT_TPR)?;
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

    fn set(name: &str, values: &[(f32, f32)]) -> ScoredSet {
        ScoredSet {
            name: name.into(),
            frames: values
                .iter()
                .map(|&(lse, nap)| Components {
                    nap,
                    lse,
                    msp: 0.5,
                    max_logit: lse,
                    gen_score: -0.5,
                    react: lse,
                    ash_s: lse,
                    ash_b: lse,
                    ash_p: lse,
                    scale: lse,
                    dice: lse,
                    vim: lse,
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
        assert!(
            json.get("at_threshold").is_none(),
            "absent until a bundle has a threshold"
        );
    }

    #[test]
    fn at_threshold_counts_the_frames_scoring_below_it() {
        let id = set("id", &[(10.0, 5.0), (11.0, 6.0), (12.0, 7.0), (13.0, 8.0)]);
        let ood = set("a-long-ood-set-name", &[(1.0, 6.0), (11.5, 7.0)]);
        let sets = [id, ood];
        let weights = FusionWeights::default();
        // Energy below 11.5: 10 and 11 of ID, 1 of OOD (11.5 itself is not below).
        let row = AtThreshold::count(
            "new.nap".into(),
            "ab".into(),
            Method::Energy,
            &weights,
            11.5,
            &sets,
        );
        let counts: Vec<(usize, usize)> = row.sets.iter().map(|s| (s.flagged, s.n)).collect();
        assert_eq!(counts, [(2, 4), (1, 2)]);
        assert_eq!(row.sets[0].percent, 50.0);
        let table = AtThreshold::table(&[row]);
        assert!(table.contains("new.nap"), "{table}");
        assert!(table.contains("ood-set-name"), "the name's end: {table}");
        assert!(table.contains("50.00"), "{table}");
        assert_eq!(truncate("abc", 14), "abc");
        assert_eq!(truncate("é-long-name-xyz", 4), "-xyz");
    }
}
