//! Vectors stored in blocks of [`BLOCK`] = 16, component-major inside a block, for exact scans.
//!
//! Row-major storage forces a flat scan to finish every distance with a horizontal sum across SIMD lanes, which
//! for short vectors (GloVe: 50-d) costs more than the arithmetic itself. Here component `j` of the 16 vectors of
//! a block is one contiguous run of 16 floats — one AVX-512 register (two AVX2 registers) — so a block's 16
//! distances are computed lane-parallel with one broadcast of `query[j]` and one FMA per component, with no
//! horizontal sums, and are compared to the top-k threshold with one masked compare. Memory is read strictly
//! sequentially; the last block is padded with zeros.
//!
//! ```text
//! block b: [v(16b)[0] … v(16b+15)[0]] [v(16b)[1] … v(16b+15)[1]] … [v(16b)[dim-1] … v(16b+15)[dim-1]]
//! ```

use crate::kernels::{Simd, SimdLevel};
use crate::metric::ScanOp;
use crate::topk::TopK;

/// Vectors per block.
pub const BLOCK: usize = 16;

#[derive(Debug, Clone)]
pub struct BlockedVectors {
    dim: usize,
    len: usize,
    data: Vec<f32>,
}

impl BlockedVectors {
    pub fn new(dim: usize) -> Self {
        assert!(dim > 0, "dimension must be positive");
        Self { dim, len: 0, data: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn reserve(&mut self, additional: usize) {
        let blocks = (self.len + additional).div_ceil(BLOCK);
        self.data.reserve((blocks * BLOCK * self.dim).saturating_sub(self.data.len()));
    }

    #[inline]
    fn at(&self, slot: usize, j: usize) -> usize {
        (slot / BLOCK) * BLOCK * self.dim + j * BLOCK + slot % BLOCK
    }

    /// Appends a vector; returns its slot.
    pub fn push(&mut self, v: &[f32]) -> usize {
        debug_assert_eq!(v.len(), self.dim);
        let slot = self.len;
        if slot.is_multiple_of(BLOCK) {
            self.data.resize(self.data.len() + BLOCK * self.dim, 0.0);
        }
        self.len += 1;
        self.set(slot, v);
        slot
    }

    /// Overwrites the vector in `slot` (< len).
    pub fn set(&mut self, slot: usize, v: &[f32]) {
        debug_assert!(slot < self.len);
        for (j, x) in v.iter().enumerate() {
            let i = self.at(slot, j);
            self.data[i] = *x;
        }
    }

    /// Copies the vector in `slot` out (a strided gather).
    pub fn get(&self, slot: usize) -> Vec<f32> {
        (0..self.dim).map(|j| self.data[self.at(slot, j)]).collect()
    }

    /// Removes `slot` by moving the last vector into it (the caller re-points the last vector's id to `slot`).
    pub fn swap_remove(&mut self, slot: usize) {
        debug_assert!(slot < self.len);
        let last = self.len - 1;
        for j in 0..self.dim {
            let (from, to) = (self.at(last, j), self.at(slot, j));
            self.data[to] = self.data[from];
            self.data[from] = 0.0;
        }
        self.len = last;
        if last.is_multiple_of(BLOCK) {
            self.data.truncate(last / BLOCK * BLOCK * self.dim);
        }
    }

    pub fn memory_bytes(&self) -> usize {
        self.data.capacity() * 4
    }

    /// Vectors the allocation holds room for.
    pub fn capacity(&self) -> usize {
        self.data.capacity() / self.dim
    }

    /// Pushes `(raw distance, slot)` of every vector that `accept` lets through into `top`. `accept` is asked only
    /// for candidates that would enter the top-k.
    pub fn scan(&self, simd: Simd, op: ScanOp, query: &[f32], top: &mut TopK, accept: &mut dyn FnMut(u32) -> bool) {
        self.scan_at(simd, op, query, None, top, accept)
    }

    /// [`BlockedVectors::scan`] over the listed blocks only (block `b` holds slots `16b .. 16b + 15`; ascending,
    /// without repeats): for a filter whose passing slots are known, only their blocks are read.
    pub fn scan_blocks(
        &self,
        simd: Simd,
        op: ScanOp,
        query: &[f32],
        blocks: &[u32],
        top: &mut TopK,
        accept: &mut dyn FnMut(u32) -> bool,
    ) {
        self.scan_at(simd, op, query, Some(blocks), top, accept)
    }

    pub fn scan_at(
        &self,
        simd: Simd,
        op: ScanOp,
        query: &[f32],
        blocks: Option<&[u32]>,
        top: &mut TopK,
        accept: &mut dyn FnMut(u32) -> bool,
    ) {
        if query.len() != self.dim || self.len == 0 {
            return;
        }
        let n = self.data.len() / (BLOCK * self.dim);
        let mut all = 0..n;
        let mut listed = blocks.unwrap_or(&[]).iter().map(|&b| b as usize).filter(|&b| b < n);
        let it: &mut dyn Iterator<Item = usize> = if blocks.is_some() { &mut listed } else { &mut all };
        match simd.level() {
            SimdLevel::Portable => portable::scan(op, query, &self.data, self.len, it, top, accept),
            // SAFETY: a `Simd` is only ever a level that `is_x86_feature_detected!` confirmed on this CPU.
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => unsafe { avx2::scan(op, query, &self.data, self.len, it, top, accept) },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => unsafe { avx512::scan(op, query, &self.data, self.len, it, top, accept) },
        }
    }

    /// Number of blocks (the last one may be partly padding).
    pub fn blocks(&self) -> usize {
        self.data.len() / (BLOCK * self.dim)
    }

    /// The 16 raw distances of block `b` (< [`Self::blocks`]) to `query`, computed with exactly the arithmetic of
    /// [`Self::scan_at`] at the same level, so that a scan that re-scores some blocks (see [`crate::coded`])
    /// returns the same values, bit for bit, as a full scan. Lanes past `len` are padding.
    pub fn block_distances(&self, simd: Simd, op: ScanOp, query: &[f32], b: usize) -> [f32; BLOCK] {
        assert!(query.len() == self.dim && b < self.blocks());
        let blk = &self.data[b * BLOCK * self.dim..(b + 1) * BLOCK * self.dim];
        match simd.level() {
            SimdLevel::Portable => portable::block(op, query, blk),
            // SAFETY: `blk` is a whole block; a `Simd` is only ever a level that was detected on this CPU.
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => unsafe { avx2::distances(op, query, blk.as_ptr()) },
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => unsafe { avx512::distances(op, query, blk.as_ptr()) },
        }
    }
}

/// Offers the 16 distances of block `b` to the top-k (lanes past `len` are padding and skipped).
#[inline(always)]
fn offer(
    dists: &[f32; BLOCK],
    mut lanes: u32,
    b: usize,
    len: usize,
    top: &mut TopK,
    accept: &mut dyn FnMut(u32) -> bool,
) {
    while lanes != 0 {
        let lane = lanes.trailing_zeros() as usize;
        lanes &= lanes - 1;
        let slot = b * BLOCK + lane;
        if slot < len && dists[lane] < top.threshold() && accept(slot as u32) {
            top.push(dists[lane], slot as u32);
        }
    }
}

mod portable {
    use super::*;

    #[inline]
    pub(super) fn block(op: ScanOp, q: &[f32], blk: &[f32]) -> [f32; BLOCK] {
        let mut acc = [0.0f32; BLOCK];
        for (qj, row) in q.iter().zip(blk.chunks_exact(BLOCK)) {
            for l in 0..BLOCK {
                acc[l] += match op {
                    ScanOp::NegDot => qj * row[l],
                    ScanOp::L2Squared => (row[l] - qj) * (row[l] - qj),
                    ScanOp::L1 => (row[l] - qj).abs(),
                };
            }
        }
        if op == ScanOp::NegDot {
            acc.iter_mut().for_each(|x| *x = -*x);
        }
        acc
    }

    pub(super) fn scan(
        op: ScanOp,
        q: &[f32],
        data: &[f32],
        len: usize,
        blocks: &mut dyn Iterator<Item = usize>,
        top: &mut TopK,
        accept: &mut dyn FnMut(u32) -> bool,
    ) {
        let stride = BLOCK * q.len();
        for b in blocks {
            let d = block(op, q, &data[b * stride..(b + 1) * stride]);
            let thr = top.threshold();
            let lanes = d.iter().enumerate().fold(0u32, |m, (l, x)| m | (((*x < thr) as u32) << l));
            offer(&d, lanes, b, len, top, accept);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::*;
    use std::arch::x86_64::*;

    /// The 16 raw distances of one block; `step(acc, q_j broadcast, row_j)`. Four accumulators hide FMA latency.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn block(q: &[f32], blk: *const f32, step: impl Fn(__m512, __m512, __m512) -> __m512) -> __m512 {
        let dim = q.len();
        let mut acc = [_mm512_setzero_ps(); 4];
        let mut j = 0;
        // SAFETY: `blk` points at a whole block of BLOCK * dim floats; every load is inside it.
        unsafe {
            while j + 4 <= dim {
                for u in 0..4 {
                    acc[u] = step(acc[u], _mm512_set1_ps(q[j + u]), _mm512_loadu_ps(blk.add((j + u) * BLOCK)));
                }
                j += 4;
            }
            while j < dim {
                acc[0] = step(acc[0], _mm512_set1_ps(q[j]), _mm512_loadu_ps(blk.add(j * BLOCK)));
                j += 1;
            }
        }
        _mm512_add_ps(_mm512_add_ps(acc[0], acc[1]), _mm512_add_ps(acc[2], acc[3]))
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn run(
        q: &[f32],
        data: &[f32],
        len: usize,
        blocks: &mut dyn Iterator<Item = usize>,
        top: &mut TopK,
        accept: &mut dyn FnMut(u32) -> bool,
        dists: impl Fn(*const f32) -> __m512,
    ) {
        let stride = BLOCK * q.len();
        let mut out = [0.0f32; BLOCK];
        for b in blocks {
            // SAFETY: block b spans data[b*stride .. (b+1)*stride].
            let d = dists(unsafe { data.as_ptr().add(b * stride) });
            let lanes = _mm512_cmp_ps_mask::<_CMP_LT_OQ>(d, _mm512_set1_ps(top.threshold())) as u32;
            if lanes != 0 {
                // SAFETY: `out` holds 16 floats.
                unsafe { _mm512_storeu_ps(out.as_mut_ptr(), d) };
                offer(&out, lanes, b, len, top, accept);
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn neg_dot(q: &[f32], p: *const f32) -> __m512 {
        _mm512_sub_ps(_mm512_setzero_ps(), block(q, p, |acc, qj, x| _mm512_fmadd_ps(qj, x, acc)))
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn l2(q: &[f32], p: *const f32) -> __m512 {
        block(q, p, |acc, qj, x| {
            let d = _mm512_sub_ps(x, qj);
            _mm512_fmadd_ps(d, d, acc)
        })
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn l1(q: &[f32], p: *const f32) -> __m512 {
        block(q, p, |acc, qj, x| _mm512_add_ps(acc, _mm512_abs_ps(_mm512_sub_ps(x, qj))))
    }

    /// # Safety
    /// The CPU must have AVX-512F (callers hold a [`Simd`] of the AVX-512 level).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn scan(
        op: ScanOp,
        q: &[f32],
        data: &[f32],
        len: usize,
        blocks: &mut dyn Iterator<Item = usize>,
        top: &mut TopK,
        accept: &mut dyn FnMut(u32) -> bool,
    ) {
        match op {
            ScanOp::NegDot => run(q, data, len, blocks, top, accept, |p| neg_dot(q, p)),
            ScanOp::L2Squared => run(q, data, len, blocks, top, accept, |p| l2(q, p)),
            ScanOp::L1 => run(q, data, len, blocks, top, accept, |p| l1(q, p)),
        }
    }

    /// The raw distances of the block at `p` (a whole block of `BLOCK * q.len()` floats).
    ///
    /// # Safety
    /// The CPU must have AVX-512F (callers hold a [`Simd`] of the AVX-512 level).
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn distances(op: ScanOp, q: &[f32], p: *const f32) -> [f32; BLOCK] {
        let d = match op {
            ScanOp::NegDot => neg_dot(q, p),
            ScanOp::L2Squared => l2(q, p),
            ScanOp::L1 => l1(q, p),
        };
        let mut out = [0.0f32; BLOCK];
        // SAFETY: `out` holds 16 floats.
        unsafe { _mm512_storeu_ps(out.as_mut_ptr(), d) };
        out
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use std::arch::x86_64::*;

    /// A block is two 8-lane halves; two accumulators per half.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn block(q: &[f32], blk: *const f32, step: impl Fn(__m256, __m256, __m256) -> __m256) -> (__m256, __m256) {
        let dim = q.len();
        let (mut lo0, mut hi0, mut lo1, mut hi1) =
            (_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps());
        let mut j = 0;
        // SAFETY: `blk` points at a whole block of BLOCK * dim floats.
        unsafe {
            while j + 2 <= dim {
                let (q0, q1) = (_mm256_set1_ps(q[j]), _mm256_set1_ps(q[j + 1]));
                lo0 = step(lo0, q0, _mm256_loadu_ps(blk.add(j * BLOCK)));
                hi0 = step(hi0, q0, _mm256_loadu_ps(blk.add(j * BLOCK + 8)));
                lo1 = step(lo1, q1, _mm256_loadu_ps(blk.add((j + 1) * BLOCK)));
                hi1 = step(hi1, q1, _mm256_loadu_ps(blk.add((j + 1) * BLOCK + 8)));
                j += 2;
            }
            if j < dim {
                let q0 = _mm256_set1_ps(q[j]);
                lo0 = step(lo0, q0, _mm256_loadu_ps(blk.add(j * BLOCK)));
                hi0 = step(hi0, q0, _mm256_loadu_ps(blk.add(j * BLOCK + 8)));
            }
        }
        (_mm256_add_ps(lo0, lo1), _mm256_add_ps(hi0, hi1))
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn run(
        q: &[f32],
        data: &[f32],
        len: usize,
        blocks: &mut dyn Iterator<Item = usize>,
        top: &mut TopK,
        accept: &mut dyn FnMut(u32) -> bool,
        dists: impl Fn(*const f32) -> (__m256, __m256),
    ) {
        let stride = BLOCK * q.len();
        let mut out = [0.0f32; BLOCK];
        for b in blocks {
            // SAFETY: block b spans data[b*stride .. (b+1)*stride].
            let (lo, hi) = dists(unsafe { data.as_ptr().add(b * stride) });
            let thr = _mm256_set1_ps(top.threshold());
            let lanes = (_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(lo, thr)) as u32)
                | ((_mm256_movemask_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(hi, thr)) as u32) << 8);
            if lanes != 0 {
                // SAFETY: `out` holds 16 floats.
                unsafe {
                    _mm256_storeu_ps(out.as_mut_ptr(), lo);
                    _mm256_storeu_ps(out.as_mut_ptr().add(8), hi);
                }
                offer(&out, lanes, b, len, top, accept);
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn neg_dot(q: &[f32], p: *const f32) -> (__m256, __m256) {
        let (lo, hi) = block(q, p, |acc, qj, x| _mm256_fmadd_ps(qj, x, acc));
        let z = _mm256_setzero_ps();
        (_mm256_sub_ps(z, lo), _mm256_sub_ps(z, hi))
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn l2(q: &[f32], p: *const f32) -> (__m256, __m256) {
        block(q, p, |acc, qj, x| {
            let d = _mm256_sub_ps(x, qj);
            _mm256_fmadd_ps(d, d, acc)
        })
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn l1(q: &[f32], p: *const f32) -> (__m256, __m256) {
        let sign = _mm256_set1_ps(-0.0);
        block(q, p, |acc, qj, x| _mm256_add_ps(acc, _mm256_andnot_ps(sign, _mm256_sub_ps(x, qj))))
    }

    /// # Safety
    /// The CPU must have AVX2 and FMA (callers hold a [`Simd`] of the AVX2 level).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn scan(
        op: ScanOp,
        q: &[f32],
        data: &[f32],
        len: usize,
        blocks: &mut dyn Iterator<Item = usize>,
        top: &mut TopK,
        accept: &mut dyn FnMut(u32) -> bool,
    ) {
        match op {
            ScanOp::NegDot => run(q, data, len, blocks, top, accept, |p| neg_dot(q, p)),
            ScanOp::L2Squared => run(q, data, len, blocks, top, accept, |p| l2(q, p)),
            ScanOp::L1 => run(q, data, len, blocks, top, accept, |p| l1(q, p)),
        }
    }

    /// The raw distances of the block at `p` (a whole block of `BLOCK * q.len()` floats).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA (callers hold a [`Simd`] of the AVX2 level).
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn distances(op: ScanOp, q: &[f32], p: *const f32) -> [f32; BLOCK] {
        let (lo, hi) = match op {
            ScanOp::NegDot => neg_dot(q, p),
            ScanOp::L2Squared => l2(q, p),
            ScanOp::L1 => l1(q, p),
        };
        let mut out = [0.0f32; BLOCK];
        // SAFETY: `out` holds 16 floats.
        unsafe {
            _mm256_storeu_ps(out.as_mut_ptr(), lo);
            _mm256_storeu_ps(out.as_mut_ptr().add(8), hi);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::{Simd, reference};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn blocked_scan_finds_the_reference_top_k(
            dim in 1usize..70, n in 1usize..120, k in 1usize..20, removals in 0usize..40, seed in any::<u64>(),
        ) {
            use rand::{Rng, SeedableRng};
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let mut rows: Vec<Vec<f32>> = (0..n).map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
            let mut bv = BlockedVectors::new(dim);
            for r in &rows {
                bv.push(r);
            }
            for _ in 0..removals.min(n - 1) {
                let s = rng.random_range(0..rows.len());
                bv.swap_remove(s);
                rows.swap_remove(s);
            }
            prop_assert_eq!(bv.len(), rows.len());
            for (s, r) in rows.iter().enumerate() {
                prop_assert_eq!(&bv.get(s), r);
            }
            let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            for op in [ScanOp::NegDot, ScanOp::L2Squared, ScanOp::L1] {
                let mut want: Vec<f64> = rows.iter().map(|v| match op {
                    ScanOp::NegDot => -reference::dot(&q, v),
                    ScanOp::L2Squared => reference::l2_squared(&q, v),
                    ScanOp::L1 => reference::l1(&q, v),
                }).collect();
                want.sort_by(f64::total_cmp);
                for lvl in Simd::available() {
                    let mut top = TopK::new(k);
                    bv.scan_at(lvl, op, &q, None, &mut top, &mut |_| true);
                    let got = top.into_sorted();
                    prop_assert_eq!(got.len(), k.min(rows.len()));
                    for (g, w) in got.iter().zip(&want) {
                        prop_assert!((g.distance as f64 - w).abs() < 1e-3, "{:?} {:?} {} vs {}", lvl, op, g.distance, w);
                        let exact = match op {
                            ScanOp::NegDot => -reference::dot(&q, &rows[g.slot as usize]),
                            ScanOp::L2Squared => reference::l2_squared(&q, &rows[g.slot as usize]),
                            ScanOp::L1 => reference::l1(&q, &rows[g.slot as usize]),
                        };
                        prop_assert!((g.distance as f64 - exact).abs() < 1e-3, "slot {} carries a wrong distance", g.slot);
                    }
                }
            }
        }
    }

    #[test]
    fn accept_filters_and_padding_is_never_returned() {
        let mut bv = BlockedVectors::new(1);
        for i in 0..5 {
            bv.push(&[i as f32]);
        }
        for lvl in Simd::available() {
            let mut top = TopK::new(10);
            // the zero padding lanes (slots 5..16) would be the nearest to -1 under L1 if they leaked
            bv.scan_at(lvl, ScanOp::L1, &[-1.0], None, &mut top, &mut |s| s != 2);
            let slots: Vec<u32> = top.into_sorted().iter().map(|c| c.slot).collect();
            assert_eq!(slots, vec![0, 1, 3, 4], "{lvl:?}");
        }
    }
}
