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

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod portable;

#[cfg(test)]
mod tests;
