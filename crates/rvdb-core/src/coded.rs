//! An exact flat scan that reads a quarter of the bytes: SQ8 codes with a per-vector error bound.
//!
//! A flat scan of f32 vectors is bound by memory bandwidth (GloVe 390,000 × 50: 78 MB per query). Here every
//! vector also has one byte per component on a per-dimension affine grid, `x ≈ x̂ = lo + step ∘ c`, and the
//! exact size of its residual `e = x − x̂` (computed in f64 when it is encoded, rounded up). A search first scans
//! the codes and bounds every exact distance from below:
//!
//! - `−q·x` (dot, cosine on normalised vectors): `q·x = q·x̂ + q·e` and `|q·e| ≤ ‖q‖·‖e‖₂`;
//! - `‖q − x‖²`: `| ‖q − x‖ − ‖q − x̂‖ | ≤ ‖e‖₂` (triangle inequality), so `‖q − x‖² ≥ (‖q − x̂‖ − ‖e‖₂)²`;
//! - `|q − x|₁`: `| |q − x|₁ − |q − x̂|₁ | ≤ ‖e‖₁`.
//!
//! A block of 16 vectors whose lower bounds all reach the exact top-k threshold so far cannot change the result
//! and is skipped; any other block is re-scored on the f32 vectors with the very kernel of the plain scan
//! ([`BlockedVectors::block_distances`]) and offered to the top-k the same way. So the result is the plain scan's,
//! bit for bit, ties included: a vector skipped has an exact distance ≥ the threshold, which the plain scan would
//! not have let in either. The bounds carry a margin for f32 rounding (of the code pass and of the exact kernel),
//! and every comparison treats NaN as "re-score". On GloVe the bound is tight: ~13 vectors per query have a lower
//! bound under the final threshold, so the scan reads the 20 MB of codes plus a few f32 blocks.
//!
//! Codes of a block are stored in groups of four components: 64 bytes hold components `4g .. 4g+3` of the 16
//! vectors, vector `l`'s four bytes in 32-bit lane `l`. That is the operand layout of AVX-512 VNNI `vpdpbusd`
//! (u8 × i8, four products summed per 32-bit lane), which computes 64 products per instruction with no widening;
//! without VNNI the bytes are widened to f32 with shifts (same layout).
//!
//! Dot and L2 share one code kernel, `Σ w_j·c_j`: for L2, `‖q − x̂‖² = ‖a‖² − 2·Σ (a_j·step_j)·c_j + ‖x̂ − lo‖²`
//! with `a = q − lo`, and `‖x̂ − lo‖²` is stored per vector. On VNNI the weights are rounded to 15-bit integers
//! split in two i8 halves (two `vpdpbusd` per group); the rounding error is bounded per query
//! (`255 · Σ |w_j − α·w̃_j|`) and added to the margin. L1 on VNNI puts the query on the grid too, `p_j =
//! clamp(round(a_j / step_j), 0, 255)`, and sums `step_j · |p_j − c_j|` (byte max − min, then `vpdpbusd` with the
//! steps as weights): exact up to `|a_j − step_j·p_j|` per component, which is added when the query is outside
//! the grid in `j` (then it is exact) and subtracted otherwise (then it is a bound). Without VNNI, L1 widens to
//! f32 (`Σ |a_j − step_j·c_j|`).
//!
//! The grid is fitted on the vectors the index holds (per-dimension min and max of an even sample) and refitted
//! each time the index doubles; vectors outside it are clamped and their larger residual keeps the bound true.
//! Memory: `dim` rounded up to 4 bytes of codes + 4 bytes of residual (+ 4 for L2) per vector.

use crate::blocked::{BLOCK, BlockedVectors};
use crate::kernels::{Simd, SimdLevel};
use crate::metric::ScanOp;
use crate::topk::TopK;

/// Components per group (one 32-bit lane of codes per vector).
const GROUP: usize = 4;
/// Bytes per group of a block: 4 components × 16 vectors.
const GROUP_BYTES: usize = GROUP * BLOCK;
/// Vectors sampled to fit the grid.
const FIT_SAMPLE: usize = 65_536;
/// Largest integer weight on the VNNI path (15 bits: `128·hi + lo` with `hi ∈ [-127, 127]`, `lo ∈ [0, 127]`).
const WMAX: f32 = 16_256.0;
/// Blocks the code scan prefetches ahead (AVX-512).
const PREFETCH: usize = 8;

#[derive(Debug, Clone)]
pub struct CodedVectors {
    dim: usize,
    groups: usize,
    op: ScanOp,
    lo: Vec<f32>,
    step: Vec<f32>,
    /// `1 / step`, for encoding.
    inv: Vec<f32>,
    trained_on: usize,
    len: usize,
    /// Blocks of `groups × 64` bytes.
    codes: Vec<u8>,
    /// Per slot (padded to whole blocks): `‖x − x̂‖₂` (`‖x − x̂‖₁` for L1), rounded up; `+∞`: always re-scored.
    err: Vec<f32>,
    /// L2 only, per slot: `‖x̂ − lo‖²`; `−∞` with `err = +∞`.
    norm: Vec<f32>,
}

impl CodedVectors {
    /// Fits a grid to `vectors` (an even sample of them) and encodes them all, slot for slot.
    pub fn build(op: ScanOp, vectors: &BlockedVectors) -> Self {
        let (dim, n) = (vectors.dim(), vectors.len());
        let mut lo = vec![f32::INFINITY; dim];
        let mut hi = vec![f32::NEG_INFINITY; dim];
        let take = n.min(FIT_SAMPLE);
        for i in 0..take {
            let v = vectors.get(i * n / take);
            for j in 0..dim {
                lo[j] = lo[j].min(v[j]);
                hi[j] = hi[j].max(v[j]);
            }
        }
        let mut step = vec![0.0f32; dim];
        for j in 0..dim {
            if !(lo[j].is_finite() && hi[j].is_finite()) {
                (lo[j], hi[j]) = (-1.0, 1.0);
            }
            let mut width = hi[j] - lo[j];
            if !(width > 0.0 && width.is_finite()) {
                width = lo[j].abs().max(1.0) * 1e-3;
            }
            step[j] = width / 255.0;
            if !(step[j] > 0.0 && step[j].is_finite()) {
                (lo[j], step[j]) = (0.0, 1.0);
            }
        }
        let mut c = CodedVectors {
            dim,
            groups: dim.div_ceil(GROUP),
            op,
            lo,
            inv: step.iter().map(|s| 1.0 / s).collect(),
            step,
            trained_on: n,
            len: 0,
            codes: Vec::new(),
            err: Vec::new(),
            norm: Vec::new(),
        };
        // As much room as the vectors have (`FlatIndex::reserve` before a bulk load).
        c.reserve(vectors.capacity().max(n));
        for i in 0..n {
            c.push(&vectors.get(i));
        }
        c
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Vectors the grid was fitted on.
    pub fn trained_on(&self) -> usize {
        self.trained_on
    }

    pub fn op(&self) -> ScanOp {
        self.op
    }

    pub fn reserve(&mut self, additional: usize) {
        let slots = (self.len + additional).div_ceil(BLOCK) * BLOCK;
        self.codes.reserve((slots / BLOCK * self.groups * GROUP_BYTES).saturating_sub(self.codes.len()));
        self.err.reserve(slots.saturating_sub(self.err.len()));
        if self.op == ScanOp::L2Squared {
            self.norm.reserve(slots.saturating_sub(self.norm.len()));
        }
    }

    #[inline]
    fn at(&self, slot: usize, j: usize) -> usize {
        (slot / BLOCK) * self.groups * GROUP_BYTES + (j / GROUP) * GROUP_BYTES + (slot % BLOCK) * GROUP + j % GROUP
    }

    /// Appends the code of `v` (a prepared vector); returns its slot.
    pub fn push(&mut self, v: &[f32]) -> usize {
        let slot = self.len;
        if slot.is_multiple_of(BLOCK) {
            self.codes.resize(self.codes.len() + self.groups * GROUP_BYTES, 0);
            self.err.resize(self.err.len() + BLOCK, 0.0);
            if self.op == ScanOp::L2Squared {
                self.norm.resize(self.norm.len() + BLOCK, 0.0);
            }
        }
        self.len += 1;
        self.set(slot, v);
        slot
    }

    /// Overwrites the code of `slot` (< len) with that of `v`.
    pub fn set(&mut self, slot: usize, v: &[f32]) {
        debug_assert!(slot < self.len && v.len() == self.dim);
        let (mut e2, mut e1, mut n) = (0.0f64, 0.0f64, 0.0f64);
        for (j, &x) in v.iter().enumerate().take(self.dim) {
            let (lo, s) = (self.lo[j], self.step[j]);
            // Any code is correct (the residual is measured against the code chosen); `as u8` saturates and maps
            // NaN to 0, so a value outside the grid gets the nearest edge.
            let c = ((x - lo) * self.inv[j]).round().clamp(0.0, 255.0) as u8;
            let i = self.at(slot, j);
            self.codes[i] = c;
            // Exact in f64: a 24-bit step times an 8-bit code, plus lo.
            let t = s as f64 * c as f64;
            let e = x as f64 - (lo as f64 + t);
            e2 += e * e;
            e1 += e.abs();
            n += t * t;
        }
        let r = if self.op == ScanOp::L1 { e1 } else { e2.sqrt() };
        let mut rf = r as f32;
        if (rf as f64) < r {
            rf = rf.next_up();
        }
        let nf = n as f32;
        let ok = rf.is_finite() && nf.is_finite();
        self.err[slot] = if ok { rf } else { f32::INFINITY };
        if self.op == ScanOp::L2Squared {
            self.norm[slot] = if ok { nf } else { f32::NEG_INFINITY };
        }
    }

    /// Moves the last code into `slot` (as [`BlockedVectors::swap_remove`] does with the vectors).
    pub fn swap_remove(&mut self, slot: usize) {
        debug_assert!(slot < self.len);
        let last = self.len - 1;
        for j in 0..self.dim {
            let (from, to) = (self.at(last, j), self.at(slot, j));
            self.codes[to] = self.codes[from];
            self.codes[from] = 0;
        }
        self.err[slot] = self.err[last];
        self.err[last] = 0.0;
        if self.op == ScanOp::L2Squared {
            self.norm[slot] = self.norm[last];
            self.norm[last] = 0.0;
        }
        self.len = last;
        if last.is_multiple_of(BLOCK) {
            self.codes.truncate(last / BLOCK * self.groups * GROUP_BYTES);
            self.err.truncate(last);
            self.norm.truncate(if self.op == ScanOp::L2Squared { last } else { 0 });
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.codes.capacity() + 4 * (self.err.capacity() + self.norm.capacity()) + 12 * self.dim
    }

    /// The exact top-k of `query` (prepared) over `vectors`, which must hold the vectors these codes encode, slot
    /// for slot: the same candidates, distances and order as `vectors.scan_at(level, op, ..)`. `accept` is asked
    /// only for slots whose lower bound is under the threshold, before their block is re-scored.
    pub fn scan(
        &self,
        simd: Simd,
        vnni: bool,
        query: &[f32],
        vectors: &BlockedVectors,
        top: &mut TopK,
        accept: &mut dyn FnMut(u32) -> bool,
    ) {
        assert_eq!(vectors.len(), self.len, "codes and vectors out of step");
        if query.len() != self.dim || self.len == 0 {
            return;
        }
        let vnni = vnni && simd.has_vnni();
        let p = Prepared::new(self, query, vnni);
        let mut rescore = |b: usize, mask: u32, top: &mut TopK| {
            let mut lanes = 0u32;
            let mut m = mask;
            while m != 0 {
                let lane = m.trailing_zeros();
                m &= m - 1;
                let slot = b * BLOCK + lane as usize;
                if slot < self.len && accept(slot as u32) {
                    lanes |= 1 << lane;
                }
            }
            if lanes == 0 {
                return;
            }
            let d = vectors.block_distances(simd, self.op, query, b);
            while lanes != 0 {
                let lane = lanes.trailing_zeros() as usize;
                lanes &= lanes - 1;
                if d[lane] < top.threshold() {
                    top.push(d[lane], (b * BLOCK + lane) as u32);
                }
            }
        };
        match simd.level() {
            SimdLevel::Portable => portable::scan(self, &p, top, &mut rescore),
            // SAFETY: a `Simd` is only ever a level that was detected on this CPU, and `vnni` only where VNNI was.
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => unsafe { avx2::scan(self, &p, top, &mut rescore) },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 if vnni => unsafe { avx512::scan_vnni(self, &p, top, &mut rescore) },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => unsafe { avx512::scan(self, &p, top, &mut rescore) },
        }
    }
}

/// A query folded with the grid, and the constants of the per-lane bound tests.
///
/// With `S` the code kernel's sum for a lane, `R` its residual and `N` its `‖x̂ − lo‖²`, a lane is re-scored
/// unless (all in f32, margins included):
/// - dot: `S + qn·R ≤ −τ − qlo − c0`;
/// - L2: `K − 2S + m·N ≥ (t + R)²` with `t = √τ·(1 + 4ε)`;
/// - L1: `m·S − R ≥ τ·(1 + 4ε) + c0 + shift`.
struct Prepared {
    /// dot: `q ∘ step`; L2: `(q − lo) ∘ step`; L1: `q − lo`. Zero-padded to whole groups.
    w: Vec<f32>,
    /// L1: the step, zero-padded.
    s: Vec<f32>,
    /// VNNI: the weights (dot, L2: `w`; L1: the step) as `α·(128·hi + lo)`, four i8 per i32, per group.
    hi4: Vec<i32>,
    lo4: Vec<i32>,
    alpha: f32,
    /// VNNI, L1: the query on the grid, `clamp(round((q − lo) / step), 0, 255)`, four u8 per i32, per group.
    p4: Vec<i32>,
    /// VNNI, L1: added to the limit (the weights' rounding bound, minus the query's exact or bounded offset from
    /// its grid point).
    shift: f32,
    qn: f32,
    qlo: f32,
    c0: f32,
    k: f32,
    m: f32,
    eps4: f32,
}

impl Prepared {
    fn new(c: &CodedVectors, q: &[f32], vnni: bool) -> Prepared {
        let dim = c.dim;
        let padded = c.groups * GROUP;
        // Relative error bound of an f32 sum of `dim` terms (either kernel, any accumulation order), doubled.
        let eps = (dim + 16) as f32 * f32::EPSILON;
        let eps4 = 4.0 * eps;
        let mut w = vec![0.0f32; padded];
        let mut s = Vec::new();
        let (mut qn, mut qlo, mut c0, mut k, mut m) = (0.0f32, 0.0f32, 0.0f32, 0.0f32, 1.0 - eps4);
        match c.op {
            ScanOp::NegDot => {
                let (mut n2, mut lo_dot, mut mag) = (0.0f64, 0.0f64, 0.0f64);
                for j in 0..dim {
                    w[j] = q[j] * c.step[j];
                    n2 += (q[j] as f64).powi(2);
                    lo_dot += q[j] as f64 * c.lo[j] as f64;
                    // bounds |q_j · x̂_j| for every code, and |q_j · lo_j| and |w_j · c|
                    mag += (q[j] as f64).abs() * (c.lo[j].abs() as f64 + 255.0 * c.step[j] as f64);
                }
                qn = (n2.sqrt() * (1.0 + 4.0 * eps as f64)) as f32;
                qlo = lo_dot as f32;
                c0 = (mag * 2.0 * eps4 as f64) as f32;
            }
            ScanOp::L2Squared => {
                let mut a2 = 0.0f64;
                for j in 0..dim {
                    let a = q[j] - c.lo[j];
                    w[j] = a * c.step[j];
                    a2 += (a as f64).powi(2);
                }
                k = (a2 * (1.0 - 2.0 * eps4 as f64)) as f32;
                m = 1.0 - 2.0 * eps4;
            }
            ScanOp::L1 => {
                s = vec![0.0f32; padded];
                let mut mag = 0.0f64;
                for j in 0..dim {
                    w[j] = q[j] - c.lo[j];
                    s[j] = c.step[j];
                    mag += (w[j] as f64).abs();
                }
                c0 = (mag * eps4 as f64) as f32;
            }
        }
        let (mut hi4, mut lo4, mut p4, mut alpha, mut shift) = (Vec::new(), Vec::new(), Vec::new(), 1.0f32, 0.0f32);
        if vnni {
            // L1 sums `step_j · |p_j − c_j|` over byte differences; dot and L2 sum `w_j · c_j`.
            let weights = if c.op == ScanOp::L1 { &s } else { &w };
            let max = weights.iter().fold(0.0f32, |a, x| a.max(x.abs()));
            if max > 0.0 && max.is_finite() {
                alpha = max / WMAX;
            }
            // The rounding of the weights, as a bound on its effect on any sum of codes (or differences) ≤ 255.
            let mut werr = 0.0f64;
            let (mut h, mut l) = (vec![0i8; padded], vec![0i8; padded]);
            for j in 0..padded {
                let wi = ((weights[j] / alpha).round() as i32).clamp(-(WMAX as i32), WMAX as i32);
                h[j] = (wi >> 7) as i8;
                l[j] = (wi & 127) as i8;
                werr += (weights[j] as f64 - alpha as f64 * wi as f64).abs();
            }
            let pack = |v: &[u8], g: usize| i32::from_le_bytes([0, 1, 2, 3].map(|u| v[g * GROUP + u]));
            let (h, l): (Vec<u8>, Vec<u8>) =
                (h.iter().map(|&x| x as u8).collect(), l.iter().map(|&x| x as u8).collect());
            for g in 0..c.groups {
                hi4.push(pack(&h, g));
                lo4.push(pack(&l, g));
            }
            let eq = (255.0 * werr * (1.0 + 1e-6)) as f32;
            match c.op {
                ScanOp::NegDot => c0 += eq,
                // The sum enters L2 twice.
                ScanOp::L2Squared => k -= 2.0 * eq,
                ScanOp::L1 => {
                    // |a_j − step_j·c| against step_j·|p_j − c|: exactly `|a_j − step_j·p_j|` more when the query
                    // is outside the grid in j (p_j is the edge, on the same side of every code), at least that
                    // much less otherwise.
                    let mut p = vec![0u8; padded];
                    let mut d = 0.0f64;
                    for j in 0..dim {
                        let u = w[j] as f64 / c.step[j] as f64;
                        p[j] = u.round().clamp(0.0, 255.0) as u8;
                        let off = (w[j] as f64 - c.step[j] as f64 * p[j] as f64).abs();
                        d += if (0.0..=255.0).contains(&u) { -off } else { off };
                    }
                    p4 = (0..c.groups).map(|g| pack(&p, g)).collect();
                    // With a margin over the f32 rounding, so that the limit only grows.
                    shift = ((eq as f64 - d) + 1e-6 * (eq as f64 + d.abs())) as f32;
                    c0 += (d.abs() * eps4 as f64) as f32;
                }
            }
        }
        Prepared { w, s, hi4, lo4, alpha, p4, shift, qn, qlo, c0, k, m, eps4 }
    }

    /// dot: `−τ − qlo − c0`; L1: `τ·(1 + 4ε) + c0`; L2: `√τ·(1 + 4ε)`.
    #[inline]
    fn limit(&self, op: ScanOp, tau: f32) -> f32 {
        match op {
            ScanOp::NegDot => -tau - self.qlo - self.c0,
            ScanOp::L1 => tau * (1.0 + self.eps4) + self.c0 + self.shift,
            ScanOp::L2Squared => tau.max(0.0).sqrt() * (1.0 + self.eps4),
        }
    }
}

mod portable {
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
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
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
                let lhs = _mm512_fmadd_ps(
                    _mm512_set1_ps(p.m),
                    n,
                    _mm512_fnmadd_ps(_mm512_set1_ps(2.0), s, _mm512_set1_ps(p.k)),
                );
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
                            let d =
                                _mm512_fnmadd_ps(_mm512_set1_ps(*s.add(j + u)), cs[u], _mm512_set1_ps(*w.add(j + u)));
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
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
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
                let lhs = _mm256_fmadd_ps(
                    _mm256_set1_ps(p.m),
                    n,
                    _mm256_fnmadd_ps(_mm256_set1_ps(2.0), s, _mm256_set1_ps(p.k)),
                );
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
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;
    use rand::{Rng, SeedableRng};

    /// Every kernel the CPU can run: (level, vnni).
    fn variants() -> Vec<(Simd, bool)> {
        let mut v: Vec<(Simd, bool)> = Simd::available().into_iter().map(|l| (l, false)).collect();
        if v[0].0.has_vnni() {
            v.insert(0, (v[0].0, true));
        }
        v
    }

    fn plain(
        bv: &BlockedVectors,
        lvl: Simd,
        op: ScanOp,
        q: &[f32],
        k: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, u32)> {
        let mut top = TopK::new(k);
        bv.scan_at(lvl, op, q, None, &mut top, &mut |s| accept(s));
        top.into_sorted().iter().map(|c| (c.slot, c.distance.to_bits())).collect()
    }

    fn coded(
        cv: &CodedVectors,
        bv: &BlockedVectors,
        lvl: Simd,
        vnni: bool,
        q: &[f32],
        k: usize,
        accept: &dyn Fn(u32) -> bool,
    ) -> Vec<(u32, u32)> {
        let mut top = TopK::new(k);
        cv.scan(lvl, vnni, q, bv, &mut top, &mut |s| accept(s));
        top.into_sorted().iter().map(|c| (c.slot, c.distance.to_bits())).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(150))]
        /// Bit-identical to the plain scan (slots and distances, ties included) for every op and kernel, with
        /// vectors outside the fitted grid, replacements, swap-removes, duplicates and a filter.
        #[test]
        fn coded_scan_equals_the_plain_scan(
            dim in 1usize..70, n in 1usize..300, k in 1usize..40, removals in 0usize..60, seed in any::<u64>(),
            scale in prop_oneof![Just(1.0f32), Just(1e-3), Just(1e4)], filtered in any::<bool>(),
        ) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mk = |rng: &mut rand::rngs::StdRng, wide: f32| -> Vec<f32> {
                (0..dim).map(|_| rng.random_range(-scale..scale) * wide).collect()
            };
            for op in [ScanOp::NegDot, ScanOp::L2Squared, ScanOp::L1] {
                let mut bv = BlockedVectors::new(dim);
                let first = n.div_ceil(2);
                for _ in 0..first {
                    bv.push(&mk(&mut rng, 1.0));
                }
                let mut cv = CodedVectors::build(op, &bv);
                // Later inserts: some far outside the grid, some exact duplicates (ties).
                for i in first..n {
                    let v = match i % 5 {
                        0 => mk(&mut rng, 8.0),
                        1 if !bv.is_empty() => bv.get(rng.random_range(0..bv.len())),
                        _ => mk(&mut rng, 1.0),
                    };
                    bv.push(&v);
                    cv.push(&v);
                }
                for _ in 0..removals.min(n - 1) {
                    let s = rng.random_range(0..bv.len());
                    bv.swap_remove(s);
                    cv.swap_remove(s);
                }
                for _ in 0..bv.len() / 4 {
                    let s = rng.random_range(0..bv.len());
                    let v = mk(&mut rng, 3.0);
                    bv.set(s, &v);
                    cv.set(s, &v);
                }
                prop_assert_eq!(cv.len(), bv.len());
                let pass = |s: u32| !filtered || s % 3 != 1;
                for qi in 0..3 {
                    let q = if qi == 2 { bv.get(0) } else { mk(&mut rng, if qi == 1 { 5.0 } else { 1.0 }) };
                    for &(lvl, vnni) in &variants() {
                        let want = plain(&bv, lvl, op, &q, k, &pass);
                        let got = coded(&cv, &bv, lvl, vnni, &q, k, &pass);
                        prop_assert_eq!(&got, &want, "{:?} {:?} vnni {}", op, lvl, vnni);
                    }
                }
            }
        }
    }

    #[test]
    fn prunes_most_blocks_on_clustered_data() {
        // 20,000 vectors: the scan must re-score only a few blocks (checked through `accept` calls).
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let dim = 24;
        let mut bv = BlockedVectors::new(dim);
        for _ in 0..20_000 {
            let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            bv.push(&v);
        }
        for op in [ScanOp::NegDot, ScanOp::L2Squared, ScanOp::L1] {
            let cv = CodedVectors::build(op, &bv);
            for &(lvl, vnni) in &variants() {
                let q = bv.get(123);
                let mut asked = 0;
                let mut top = TopK::new(10);
                cv.scan(lvl, vnni, &q, &bv, &mut top, &mut |_| {
                    asked += 1;
                    true
                });
                assert!(asked < 2_000, "{op:?} {lvl:?} vnni {vnni}: {asked} lanes re-scored");
                let want = plain(&bv, lvl, op, &q, 10, &|_| true);
                let got: Vec<(u32, u32)> = top.into_sorted().iter().map(|c| (c.slot, c.distance.to_bits())).collect();
                assert_eq!(got, want);
            }
        }
    }

    #[test]
    fn memory_is_codes_plus_residuals() {
        let mut bv = BlockedVectors::new(50);
        bv.reserve(1600);
        for i in 0..1600 {
            bv.push(&[i as f32; 50]);
        }
        let cv = CodedVectors::build(ScanOp::NegDot, &bv);
        assert_eq!(cv.memory_bytes(), 1600 * (52 + 4) + 50 * 12);
        let cv = CodedVectors::build(ScanOp::L2Squared, &bv);
        assert_eq!(cv.memory_bytes(), 1600 * (52 + 8) + 50 * 12);
    }
}
