//! Independent arithmetic that tests compare our results with: products in f64, and how far
//! two results are apart.

/// `W x + b` with `W` row-major `[K][x.len()]`, accumulated in f64.
pub fn gemv(w: &[f32], b: &[f32], x: &[f32]) -> Vec<f32> {
    b.iter()
        .enumerate()
        .map(|(k, bk)| {
            let row = &w[k * x.len()..(k + 1) * x.len()];
            let dot: f64 = row.iter().zip(x).map(|(&w, &x)| w as f64 * x as f64).sum();
            (dot + *bk as f64) as f32
        })
        .collect()
}

/// Largest `|a - b|` relative to the largest `|b|`.
pub fn max_rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = b
        .iter()
        .fold(0f32, |m, v| m.max(v.abs()))
        .max(f32::MIN_POSITIVE);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}
