//! The reference: one row at a time, summed in order.

/// `out[k] = sum_i codes[k * x.len() + i] * x[i]`; the lengths are the caller's to check.
pub fn dots(codes: &[i8], x: &[f32], out: &mut [f32]) {
    if x.is_empty() {
        out.fill(0.0);
        return;
    }
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(x.len())) {
        *o = dot(row, x);
    }
}

/// `sum(codes[i] * x[i])` over the common length, in order: a row, or the tail of a row a
/// vector path leaves.
pub(super) fn dot(codes: &[i8], x: &[f32]) -> f32 {
    codes.iter().zip(x).map(|(&q, &v)| f32::from(q) * v).sum()
}

/// Independent partial sums per row.
const LANES: usize = 8;

/// [`dots`] in eight partial sums per row, which the compiler vectorizes for any target: the
/// path of x86_64 CPUs without AVX2 ([`Isa::Sse2`](crate::isa::Isa::Sse2)), five times the
/// reference's speed.
pub fn dots_lanes(codes: &[i8], x: &[f32], out: &mut [f32]) {
    if x.is_empty() {
        out.fill(0.0);
        return;
    }
    let body = x.len() / LANES * LANES;
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(x.len())) {
        let mut lanes = [0.0f32; LANES];
        for (q, v) in row[..body].chunks_exact(LANES).zip(x.chunks_exact(LANES)) {
            for l in 0..LANES {
                lanes[l] += f32::from(q[l]) * v[l];
            }
        }
        let tail = dot(&row[body..], &x[body..]);
        *o = lanes.iter().sum::<f32>() + tail;
    }
}

/// `out[k] = sum_i codes[k * x.len() + i] * x[i]`, summed exactly in i64 and rounded once to
/// f32; the lengths are the caller's to check.
pub fn dots_i16(codes: &[i8], x: &[i16], out: &mut [f32]) {
    if x.is_empty() {
        out.fill(0.0);
        return;
    }
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(x.len())) {
        *o = dot_i16(row, x) as f32;
    }
}

/// `sum(codes[i] * x[i])` over the common length, exactly.
pub(super) fn dot_i16(codes: &[i8], x: &[i16]) -> i64 {
    codes
        .iter()
        .zip(x)
        .map(|(&q, &v)| i64::from(q) * i64::from(v))
        .sum()
}

/// [`dots_i16`] in eight i32 partial sums per row, moved into i64 before they could overflow,
/// which the compiler vectorizes for any target: the path of x86_64 CPUs without AVX2.
pub fn dots_i16_lanes(codes: &[i8], x: &[i16], out: &mut [f32]) {
    if x.is_empty() {
        out.fill(0.0);
        return;
    }
    let body = x.len() / LANES * LANES;
    for (o, row) in out.iter_mut().zip(codes.chunks_exact(x.len())) {
        let mut sum = 0i64;
        for (q, v) in row[..body]
            .chunks(LANES * super::I16_BLOCK)
            .zip(x[..body].chunks(LANES * super::I16_BLOCK))
        {
            let mut lanes = [0i32; LANES];
            for (q, v) in q.chunks_exact(LANES).zip(v.chunks_exact(LANES)) {
                for l in 0..LANES {
                    lanes[l] += i32::from(q[l]) * i32::from(v[l]);
                }
            }
            sum += lanes.iter().map(|&l| i64::from(l)).sum::<i64>();
        }
        *o = (sum + dot_i16(&row[body..], &x[body..])) as f32;
    }
}
