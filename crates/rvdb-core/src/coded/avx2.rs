//! The code scan on AVX2 + FMA: codes widened to f32 with shifts.

use super::*;
use std::arch::x86_64::*;

#[target_feature(enable = "avx2,fma")]
#[inline]
fn widen<const U: i32>(v: __m256i) -> __m256 {
    let x = _mm256_srli_epi32::<U>(v);
    _mm256_cvtepi32_ps(if U == 24 { x } else { _mm256_and_si256(x, _mm256_set1_epi32(0xFF)) })
}

#[target_feature(enable = "avx2,fma")]
#[inline]
fn half_mask(c: &CodedVectors, p: &Prepared, i: usize, s: __m256, lim: f32) -> u32 {
    // SAFETY: `err` and `norm` (L2) hold whole blocks; i is a multiple of 8 inside them.
    let r = unsafe { _mm256_loadu_ps(c.err.as_ptr().add(i)) };
    let lim = _mm256_set1_ps(lim);
    let m = match c.op {
        ScanOp::NegDot => _mm256_cmp_ps::<_CMP_NLE_UQ>(_mm256_fmadd_ps(_mm256_set1_ps(p.qn), r, s), lim),
        ScanOp::L2Squared => {
            let n = unsafe { _mm256_loadu_ps(c.norm.as_ptr().add(i)) };
            let lhs =
                _mm256_fmadd_ps(_mm256_set1_ps(p.m), n, _mm256_fnmadd_ps(_mm256_set1_ps(2.0), s, _mm256_set1_ps(p.k)));
            let t = _mm256_add_ps(lim, r);
            _mm256_cmp_ps::<_CMP_NGE_UQ>(lhs, _mm256_mul_ps(t, t))
        }
        ScanOp::L1 => _mm256_cmp_ps::<_CMP_NGE_UQ>(_mm256_fmsub_ps(_mm256_set1_ps(p.m), s, r), lim),
    };
    _mm256_movemask_ps(m) as u32
}

/// # Safety
/// The CPU must have AVX2 and FMA (callers hold a [`Simd`] of the AVX2 level).
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn scan(
    c: &CodedVectors,
    p: &Prepared,
    top: &mut TopK,
    rescore: &mut dyn FnMut(usize, u32, &mut TopK),
) {
    let stride = c.groups * GROUP_BYTES;
    let (w, s) = (p.w.as_ptr(), p.s.as_ptr());
    let l1 = c.op == ScanOp::L1;
    let sign = _mm256_set1_ps(-0.0);
    let mut lim = p.limit(c.op, top.threshold());
    for b in 0..c.len.div_ceil(BLOCK) {
        let z = _mm256_setzero_ps();
        let (mut a0, mut b0, mut a1, mut b1) = (z, z, z, z);
        for g in 0..c.groups {
            // SAFETY: group g of block b (two halves of 32 bytes); weights padded to whole groups.
            unsafe {
                let base = c.codes.as_ptr().add(b * stride + g * GROUP_BYTES);
                let (va, vb) = (_mm256_loadu_si256(base.cast()), _mm256_loadu_si256(base.add(32).cast()));
                let j = g * GROUP;
                macro_rules! comp {
                    ($u:literal, $acc_a:ident, $acc_b:ident) => {{
                        let wj = _mm256_set1_ps(*w.add(j + $u / 8));
                        let (ca, cb) = (widen::<$u>(va), widen::<$u>(vb));
                        if l1 {
                            let sj = _mm256_set1_ps(*s.add(j + $u / 8));
                            $acc_a = _mm256_add_ps($acc_a, _mm256_andnot_ps(sign, _mm256_fnmadd_ps(sj, ca, wj)));
                            $acc_b = _mm256_add_ps($acc_b, _mm256_andnot_ps(sign, _mm256_fnmadd_ps(sj, cb, wj)));
                        } else {
                            $acc_a = _mm256_fmadd_ps(wj, ca, $acc_a);
                            $acc_b = _mm256_fmadd_ps(wj, cb, $acc_b);
                        }
                    }};
                }
                comp!(0, a0, b0);
                comp!(8, a1, b1);
                comp!(16, a0, b0);
                comp!(24, a1, b1);
            }
        }
        let (sa, sb) = (_mm256_add_ps(a0, a1), _mm256_add_ps(b0, b1));
        let m = half_mask(c, p, b * BLOCK, sa, lim) | (half_mask(c, p, b * BLOCK + 8, sb, lim) << 8);
        if m != 0 {
            rescore(b, m, top);
            lim = p.limit(c.op, top.threshold());
        }
    }
}
