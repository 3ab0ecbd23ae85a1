//! The code scan in portable Rust (LLVM vectorises the lane loop): any CPU.

use super::*;
use std::cmp::Ordering;

/// The code sums of one block: one weight per component, 16 lanes (LLVM vectorises the lane loop).
#[inline]
fn sums<const L1: bool>(blk: &[u8], p: &Prepared) -> [f32; BLOCK] {
    let mut acc = [0.0f32; BLOCK];
    for (g, grp) in blk.chunks_exact(GROUP_BYTES).enumerate() {
        for u in 0..GROUP {
            let j = g * GROUP + u;
            let (w, s) = (p.w[j], if L1 { p.s[j] } else { 0.0 });
            for (l, a) in acc.iter_mut().enumerate() {
                let code = grp[l * GROUP + u] as f32;
                *a += if L1 { (w - s * code).abs() } else { w * code };
            }
        }
    }
    acc
}

pub(super) fn scan(c: &CodedVectors, p: &Prepared, top: &mut TopK, rescore: &mut dyn FnMut(usize, u32, &mut TopK)) {
    let stride = c.groups * GROUP_BYTES;
    for b in 0..c.len.div_ceil(BLOCK) {
        let blk = &c.codes[b * stride..(b + 1) * stride];
        let sum = if c.op == ScanOp::L1 { sums::<true>(blk, p) } else { sums::<false>(blk, p) };
        let lim = p.limit(c.op, top.threshold());
        let mut mask = 0u32;
        // Pruned only when the comparison holds (`Some(Less)` / `Some(Greater | Equal)`): NaN re-scores.
        let ge = |x: f32, y: f32| matches!(x.partial_cmp(&y), Some(Ordering::Greater | Ordering::Equal));
        for (l, &s) in sum.iter().enumerate() {
            let r = c.err[b * BLOCK + l];
            let keep = match c.op {
                ScanOp::NegDot => !ge(lim, s + p.qn * r),
                ScanOp::L2Squared => {
                    let n = c.norm[b * BLOCK + l];
                    !ge(p.k - 2.0 * s + p.m * n, (lim + r) * (lim + r))
                }
                ScanOp::L1 => !ge(p.m * s - r, lim),
            };
            mask |= (keep as u32) << l;
        }
        if mask != 0 {
            rescore(b, mask, top);
        }
    }
}
