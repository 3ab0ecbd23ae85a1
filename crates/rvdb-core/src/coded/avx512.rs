//! The code scan on AVX-512 (with VNNI `vpdpbusd` where the CPU has it).

use super::*;
use std::arch::x86_64::*;

/// Lanes of block `b` to re-score, from the code sums `s`.
#[target_feature(enable = "avx512f")]
#[inline]
fn mask(c: &CodedVectors, p: &Prepared, b: usize, s: __m512, lim: f32) -> u32 {
    // SAFETY: `err` and `norm` (L2) hold whole blocks.
    let r = unsafe { _mm512_loadu_ps(c.err.as_ptr().add(b * BLOCK)) };
    let lim = _mm512_set1_ps(lim);
    (match c.op {
        ScanOp::NegDot => _mm512_cmp_ps_mask::<_CMP_NLE_UQ>(_mm512_fmadd_ps(_mm512_set1_ps(p.qn), r, s), lim),
        ScanOp::L2Squared => {
            let n = unsafe { _mm512_loadu_ps(c.norm.as_ptr().add(b * BLOCK)) };
            let lhs =
                _mm512_fmadd_ps(_mm512_set1_ps(p.m), n, _mm512_fnmadd_ps(_mm512_set1_ps(2.0), s, _mm512_set1_ps(p.k)));
            let t = _mm512_add_ps(lim, r);
            _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(lhs, _mm512_mul_ps(t, t))
        }
        ScanOp::L1 => _mm512_cmp_ps_mask::<_CMP_NGE_UQ>(_mm512_fmsub_ps(_mm512_set1_ps(p.m), s, r), lim),
    }) as u32
}

#[target_feature(enable = "avx512f")]
#[inline]
fn run(
    c: &CodedVectors,
    p: &Prepared,
    top: &mut TopK,
    rescore: &mut dyn FnMut(usize, u32, &mut TopK),
    sums: impl Fn(*const u8) -> __m512,
) {
    let stride = c.groups * GROUP_BYTES;
    let mut lim = p.limit(c.op, top.threshold());
    let end = c.codes.as_ptr_range().end;
    for b in 0..c.len.div_ceil(BLOCK) {
        // SAFETY: block b spans codes[b*stride .. (b+1)*stride].
        let blk = unsafe { c.codes.as_ptr().add(b * stride) };
        // A few percent on GloVe: the hardware prefetcher alone leaves the scan waiting on the L3.
        let ahead = blk.wrapping_add(PREFETCH * stride);
        let mut off = 0;
        while off < stride {
            if ahead.wrapping_add(off) < end {
                // SAFETY: inside the codes (and a prefetch does not fault anyway).
                unsafe { _mm_prefetch::<_MM_HINT_T0>(ahead.add(off).cast()) };
            }
            off += 64;
        }
        let s = sums(blk);
        let m = mask(c, p, b, s, lim);
        if m != 0 {
            rescore(b, m, top);
            lim = p.limit(c.op, top.threshold());
        }
    }
}

/// The f32 widening of code byte `u` of every 32-bit lane.
#[target_feature(enable = "avx512f")]
#[inline]
fn widen<const U: u32>(v: __m512i) -> __m512 {
    let x = _mm512_srli_epi32::<U>(v);
    _mm512_cvtepi32_ps(if U == 24 { x } else { _mm512_and_si512(x, _mm512_set1_epi32(0xFF)) })
}

/// # Safety
/// The CPU must have AVX-512F (callers hold a [`Simd`] of the AVX-512 level).
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn scan(
    c: &CodedVectors,
    p: &Prepared,
    top: &mut TopK,
    rescore: &mut dyn FnMut(usize, u32, &mut TopK),
) {
    let groups = c.groups;
    let (w, s) = (p.w.as_ptr(), p.s.as_ptr());
    match c.op {
        ScanOp::L1 => run(c, p, top, rescore, |blk| {
            let mut acc = [_mm512_setzero_ps(); 4];
            for g in 0..groups {
                // SAFETY: group g of the block, and weights padded to whole groups.
                unsafe {
                    let v = _mm512_loadu_si512(blk.add(g * GROUP_BYTES).cast());
                    let j = g * GROUP;
                    let cs = [widen::<0>(v), widen::<8>(v), widen::<16>(v), widen::<24>(v)];
                    for u in 0..4 {
                        let d = _mm512_fnmadd_ps(_mm512_set1_ps(*s.add(j + u)), cs[u], _mm512_set1_ps(*w.add(j + u)));
                        acc[u] = _mm512_add_ps(acc[u], _mm512_abs_ps(d));
                    }
                }
            }
            _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]))
        }),
        _ => run(c, p, top, rescore, |blk| {
            let mut acc = [_mm512_setzero_ps(); 4];
            for g in 0..groups {
                // SAFETY: as above.
                unsafe {
                    let v = _mm512_loadu_si512(blk.add(g * GROUP_BYTES).cast());
                    let j = g * GROUP;
                    acc[0] = _mm512_fmadd_ps(_mm512_set1_ps(*w.add(j)), widen::<0>(v), acc[0]);
                    acc[1] = _mm512_fmadd_ps(_mm512_set1_ps(*w.add(j + 1)), widen::<8>(v), acc[1]);
                    acc[2] = _mm512_fmadd_ps(_mm512_set1_ps(*w.add(j + 2)), widen::<16>(v), acc[2]);
                    acc[3] = _mm512_fmadd_ps(_mm512_set1_ps(*w.add(j + 3)), widen::<24>(v), acc[3]);
                }
            }
            _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]))
        }),
    }
}

/// `vpdpbusd`: two integer sums (high and low weight bytes) per lane, combined in f32. Dot and L2 multiply the
/// codes; L1 the byte distances `|p_j − c_j|` of the codes to the query's grid point.
///
/// # Safety
/// The CPU must have AVX-512F, BW and VNNI (callers hold a [`Simd`] whose `has_vnni` is true).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn scan_vnni(
    c: &CodedVectors,
    p: &Prepared,
    top: &mut TopK,
    rescore: &mut dyn FnMut(usize, u32, &mut TopK),
) {
    if c.op == ScanOp::L1 {
        let q4 = p.p4.as_ptr();
        // SAFETY: p4 holds one i32 per group.
        vnni_run(c, p, top, rescore, |v, g| {
            let q = _mm512_set1_epi32(unsafe { *q4.add(g) });
            _mm512_sub_epi8(_mm512_max_epu8(v, q), _mm512_min_epu8(v, q))
        })
    } else {
        vnni_run(c, p, top, rescore, |v, _| v)
    }
}

#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
#[inline]
fn vnni_run(
    c: &CodedVectors,
    p: &Prepared,
    top: &mut TopK,
    rescore: &mut dyn FnMut(usize, u32, &mut TopK),
    bytes: impl Fn(__m512i, usize) -> __m512i,
) {
    let groups = c.groups;
    let (hi, lo) = (p.hi4.as_ptr(), p.lo4.as_ptr());
    let (alpha, a128) = (_mm512_set1_ps(p.alpha), _mm512_set1_ps(128.0 * p.alpha));
    run(c, p, top, rescore, |blk| {
        let z = _mm512_setzero_si512();
        let (mut h0, mut h1, mut l0, mut l1) = (z, z, z, z);
        let mut g = 0;
        // SAFETY: groups g and g + 1 of the block; weights hold one i32 per group.
        unsafe {
            while g + 2 <= groups {
                let v0 = bytes(_mm512_loadu_si512(blk.add(g * GROUP_BYTES).cast()), g);
                let v1 = bytes(_mm512_loadu_si512(blk.add((g + 1) * GROUP_BYTES).cast()), g + 1);
                h0 = _mm512_dpbusd_epi32(h0, v0, _mm512_set1_epi32(*hi.add(g)));
                l0 = _mm512_dpbusd_epi32(l0, v0, _mm512_set1_epi32(*lo.add(g)));
                h1 = _mm512_dpbusd_epi32(h1, v1, _mm512_set1_epi32(*hi.add(g + 1)));
                l1 = _mm512_dpbusd_epi32(l1, v1, _mm512_set1_epi32(*lo.add(g + 1)));
                g += 2;
            }
            if g < groups {
                let v0 = bytes(_mm512_loadu_si512(blk.add(g * GROUP_BYTES).cast()), g);
                h0 = _mm512_dpbusd_epi32(h0, v0, _mm512_set1_epi32(*hi.add(g)));
                l0 = _mm512_dpbusd_epi32(l0, v0, _mm512_set1_epi32(*lo.add(g)));
            }
        }
        let h = _mm512_cvtepi32_ps(_mm512_add_epi32(h0, h1));
        let l = _mm512_cvtepi32_ps(_mm512_add_epi32(l0, l1));
        _mm512_fmadd_ps(h, a128, _mm512_mul_ps(l, alpha))
    })
}
