//! The reference: [`AddParams::apply`] on every byte.

use super::AddParams;

/// `out[i] = params.apply(a[i], b[i])`; the three slices have one length.
pub fn run(params: &AddParams, a: &[u8], b: &[u8], out: &mut [u8]) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = params.apply(a, b);
    }
}
