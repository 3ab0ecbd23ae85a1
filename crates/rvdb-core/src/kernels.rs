//! Distance kernels on `f32` slices, SIMD with runtime dispatch: AVX-512F, AVX2+FMA, or a portable version that
//! the compiler auto-vectorises. Tails shorter than a register are read with masked loads, so vectors need no
//! padding (GloVe's 50 dimensions cost 50 floats, not 56 or 64).
//!
//! The dispatch is decided once per process ([`level`]). These pair kernels serve row-major vectors (normalising,
//! graph traversal, re-scoring); exhaustive scans use the blocked layout of [`crate::blocked`], whose loop runs
//! entirely inside the chosen target feature.
//!
//! [`reference`] holds naive `f64` versions that the property tests check every kernel against.

use std::sync::OnceLock;

use crate::metric::ScanOp;

/// An instruction-set level, as a name (for display, configuration and matching). Kernels take a [`Simd`], the
/// proof that this CPU has the level, never a bare `SimdLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SimdLevel {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl SimdLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            SimdLevel::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            SimdLevel::Avx512 => "avx512",
        }
    }
}

impl std::str::FromStr for SimdLevel {
    type Err = crate::CoreError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "portable" => Ok(SimdLevel::Portable),
            #[cfg(target_arch = "x86_64")]
            "avx2" => Ok(SimdLevel::Avx2),
            #[cfg(target_arch = "x86_64")]
            "avx512" => Ok(SimdLevel::Avx512),
            _ => Err(crate::CoreError::InvalidConfig(format!(
                "simd {s:?}: use portable{}",
                if cfg!(target_arch = "x86_64") { ", avx2 or avx512" } else { "" }
            ))),
        }
    }
}

/// A [`SimdLevel`] this CPU was checked to support. Its field is private: the only ways to get one are runtime
/// detection ([`Simd::best`], [`Simd::available`]) and lowering one ([`Simd::at_most`]), so safe code cannot run
/// AVX-512 instructions on a CPU without them — which the `unsafe` kernel calls behind [`raw_at`],
/// [`crate::blocked::BlockedVectors::scan_at`] and [`crate::coded::CodedVectors::scan`] rely on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simd(SimdLevel);

impl Simd {
    /// The best level this CPU supports (detected once per process).
    pub fn best() -> Simd {
        static BEST: OnceLock<Simd> = OnceLock::new();
        *BEST.get_or_init(|| Simd::available()[0])
    }

    /// Levels usable on this CPU, best first (tests run every kernel on each).
    pub fn available() -> Vec<Simd> {
        let mut v = Vec::new();
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx512f") {
                v.push(Simd(SimdLevel::Avx512));
            }
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Simd(SimdLevel::Avx2));
            }
        }
        v.push(Simd(SimdLevel::Portable));
        v
    }

    /// The best available level that is not above `cap` (a configured cap; `portable` is always available).
    pub fn at_most(cap: SimdLevel) -> Simd {
        Simd::available().into_iter().find(|s| s.0 <= cap).unwrap_or(Simd(SimdLevel::Portable))
    }

    pub fn level(self) -> SimdLevel {
        self.0
    }

    /// Whether this level can run the AVX-512 VNNI code kernel of [`crate::coded`] (the AVX-512 level, on a CPU
    /// with AVX-512 BW and VNNI too).
    pub fn has_vnni(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        {
            self.0 == SimdLevel::Avx512
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512vnni")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    }
}

/// `a·b`
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    raw_at(Simd::best(), ScanOp::NegDot, a, b).map_or(0.0, |d| -d)
}

/// `Σ (a-b)²`
pub fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    raw_at(Simd::best(), ScanOp::L2Squared, a, b).unwrap_or(0.0)
}

/// `Σ |a-b|`
pub fn l1(a: &[f32], b: &[f32]) -> f32 {
    raw_at(Simd::best(), ScanOp::L1, a, b).unwrap_or(0.0)
}

/// The raw value of `op` on one pair at a given level; `None` if the lengths differ.
pub fn raw_at(simd: Simd, op: ScanOp, a: &[f32], b: &[f32]) -> Option<f32> {
    if a.len() != b.len() {
        return None;
    }
    // SAFETY: the lengths are equal, and a `Simd` is only ever a level this CPU was found to have.
    Some(unsafe { pair_fn(simd, op)(a, b) })
}

/// A pair kernel chosen once for a hot loop (graph search): [`raw_at`] without its per-call checks.
///
/// # Safety
/// The function may use the instructions of the level it was chosen for, which is why its type is `unsafe fn`:
/// calling it is sound when the CPU has them, and [`pair_fn`] only returns one for a [`Simd`], the proof that it
/// does. Every kernel reads `min(a.len(), b.len())` components, so no length can make it read out of bounds;
/// callers pass equal lengths for a meaningful value.
pub type PairFn = unsafe fn(&[f32], &[f32]) -> f32;

pub fn pair_fn(simd: Simd, op: ScanOp) -> PairFn {
    match (simd.0, op) {
        (SimdLevel::Portable, ScanOp::NegDot) => portable::neg_dot,
        (SimdLevel::Portable, ScanOp::L2Squared) => portable::l2sq,
        (SimdLevel::Portable, ScanOp::L1) => portable::l1,
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx2, ScanOp::NegDot) => avx2::neg_dot,
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx2, ScanOp::L2Squared) => avx2::l2sq,
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx2, ScanOp::L1) => avx2::l1,
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx512, ScanOp::NegDot) => avx512::neg_dot,
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx512, ScanOp::L2Squared) => avx512::l2sq,
        #[cfg(target_arch = "x86_64")]
        (SimdLevel::Avx512, ScanOp::L1) => avx512::l1,
    }
}

/// Normalises `v` to unit length in place; returns false (and leaves it) if its length is zero.
///
/// The norm is taken in `f64`: in `f32` the squared norm overflows for components from about 1.9e19 and
/// underflows to zero below about 1e-22, and either would leave the vector un-normalised (a cosine "distance" of
/// -2e19, or 1 against every point). In `f64` neither can happen for any finite `f32` vector of up to
/// [`crate::types::MAX_DIMENSION`] components, so every stored and query vector of a cosine store is unit length.
pub fn normalize(v: &mut [f32]) -> bool {
    let norm = v.iter().map(|x| *x as f64 * *x as f64).sum::<f64>().sqrt();
    if norm == 0.0 || !norm.is_finite() {
        return false;
    }
    v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
    true
}

mod portable {
    const LANES: usize = 8;

    #[inline]
    fn fold(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
        let mut acc = [0.0f32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let (ta, tb) = (ca.remainder(), cb.remainder());
        for (x, y) in ca.zip(cb) {
            for i in 0..LANES {
                acc[i] += f(x[i], y[i]);
            }
        }
        let mut s: f32 = acc.iter().sum();
        for (x, y) in ta.iter().zip(tb) {
            s += f(*x, *y);
        }
        s
    }

    #[inline]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |x, y| x * y)
    }

    pub(super) fn neg_dot(a: &[f32], b: &[f32]) -> f32 {
        -dot(a, b)
    }

    #[inline]
    pub(super) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |x, y| (x - y) * (x - y))
    }

    #[inline]
    pub(super) fn l1(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |x, y| (x - y).abs())
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// Lanes `< rem` set (for masked loads of a tail of `rem < 8` floats).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn tail_mask(rem: usize) -> __m256i {
        _mm256_cmpgt_epi32(_mm256_set1_epi32(rem as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
    }

    /// Folds `a` and `b` 8 lanes at a time with two accumulators; `step(acc, x, y)` adds one register's worth.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn fold(a: &[f32], b: &[f32], step: impl Fn(__m256, __m256, __m256) -> __m256) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm256_setzero_ps();
        let mut acc1 = _mm256_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads lanes below `n`, the length of both slices; masked lanes are not read.
        unsafe {
            while i + 16 <= n {
                acc0 = step(acc0, _mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                acc1 = step(acc1, _mm256_loadu_ps(pa.add(i + 8)), _mm256_loadu_ps(pb.add(i + 8)));
                i += 16;
            }
            if i + 8 <= n {
                acc0 = step(acc0, _mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
                i += 8;
            }
            if i < n {
                let m = tail_mask(n - i);
                acc1 = step(acc1, _mm256_maskload_ps(pa.add(i), m), _mm256_maskload_ps(pb.add(i), m));
            }
        }
        hsum(_mm256_add_ps(acc0, acc1))
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |acc, x, y| _mm256_fmadd_ps(x, y, acc))
    }

    #[target_feature(enable = "avx2,fma")]
    pub(super) fn neg_dot(a: &[f32], b: &[f32]) -> f32 {
        -dot(a, b)
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |acc, x, y| {
            let d = _mm256_sub_ps(x, y);
            _mm256_fmadd_ps(d, d, acc)
        })
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn l1(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |acc, x, y| _mm256_add_ps(acc, _mm256_andnot_ps(_mm256_set1_ps(-0.0), _mm256_sub_ps(x, y))))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    #[target_feature(enable = "avx512f")]
    #[inline]
    fn fold(a: &[f32], b: &[f32], step: impl Fn(__m512, __m512, __m512) -> __m512) -> f32 {
        let n = a.len().min(b.len());
        let (pa, pb) = (a.as_ptr(), b.as_ptr());
        let mut acc0 = _mm512_setzero_ps();
        let mut acc1 = _mm512_setzero_ps();
        let mut i = 0;
        // SAFETY: every load reads lanes below `n`; masked-off lanes are not touched.
        unsafe {
            while i + 32 <= n {
                acc0 = step(acc0, _mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                acc1 = step(acc1, _mm512_loadu_ps(pa.add(i + 16)), _mm512_loadu_ps(pb.add(i + 16)));
                i += 32;
            }
            if i + 16 <= n {
                acc0 = step(acc0, _mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
                i += 16;
            }
            if i < n {
                let m: __mmask16 = ((1u32 << (n - i)) - 1) as u16;
                acc1 = step(acc1, _mm512_maskz_loadu_ps(m, pa.add(i)), _mm512_maskz_loadu_ps(m, pb.add(i)));
            }
        }
        _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1))
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |acc, x, y| _mm512_fmadd_ps(x, y, acc))
    }

    #[target_feature(enable = "avx512f")]
    pub(super) fn neg_dot(a: &[f32], b: &[f32]) -> f32 {
        -dot(a, b)
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn l2sq(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |acc, x, y| {
            let d = _mm512_sub_ps(x, y);
            _mm512_fmadd_ps(d, d, acc)
        })
    }

    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) fn l1(a: &[f32], b: &[f32]) -> f32 {
        fold(a, b, |acc, x, y| _mm512_add_ps(acc, _mm512_abs_ps(_mm512_sub_ps(x, y))))
    }
}

/// Naive `f64` versions: the definition the SIMD kernels are tested against.
pub mod reference {
    pub fn dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum()
    }
    pub fn l2_squared(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum()
    }
    pub fn l1(a: &[f32], b: &[f32]) -> f64 {
        a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum()
    }
    /// The user-facing distance of `metric` (see [`crate::Metric`]) on raw, un-normalised vectors.
    pub fn distance(metric: crate::Metric, a: &[f32], b: &[f32]) -> f64 {
        match metric {
            crate::Metric::Cosine => 1.0 - dot(a, b) / (dot(a, a).sqrt() * dot(b, b).sqrt()),
            crate::Metric::Euclidean => l2_squared(a, b).sqrt(),
            crate::Metric::Manhattan => l1(a, b),
            crate::Metric::Dot => -dot(a, b),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn close(got: f32, want: f64, scale: f64) -> bool {
        (got as f64 - want).abs() <= 1e-4 * scale.max(1.0)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn kernels_match_reference(
            (a, b) in (0usize..300).prop_flat_map(|n| (
                prop::collection::vec(-100.0f32..100.0, n),
                prop::collection::vec(-100.0f32..100.0, n),
            ))
        ) {
            let mag: f64 = a.iter().chain(&b).map(|x| (*x as f64).abs()).sum::<f64>() + 1.0;
            for lvl in Simd::available() {
                let d = -raw_at(lvl, ScanOp::NegDot, &a, &b).unwrap();
                prop_assert!(close(d, reference::dot(&a, &b), mag * 100.0), "{lvl:?} dot {d}");
                let l2 = raw_at(lvl, ScanOp::L2Squared, &a, &b).unwrap();
                prop_assert!(close(l2, reference::l2_squared(&a, &b), mag * 200.0), "{lvl:?} l2 {l2}");
                let l1v = raw_at(lvl, ScanOp::L1, &a, &b).unwrap();
                prop_assert!(close(l1v, reference::l1(&a, &b), mag), "{lvl:?} l1 {l1v}");
            }
        }

    }

    /// Issue #15: components too large or too small for an `f32` squared norm are still normalised.
    #[test]
    fn normalize_survives_overflow_and_underflow() {
        for v in [[2e19f32, 0.0], [3e38, 3e38], [1e-23, 0.0], [-1e-40, 1e-40], [f32::MAX, -f32::MAX]] {
            let mut u = v;
            assert!(normalize(&mut u), "{v:?}");
            let n = reference::dot(&u, &u).sqrt();
            assert!((n - 1.0).abs() < 1e-6, "{v:?} → {u:?} has norm {n}");
            assert!(u.iter().zip(&v).all(|(a, b)| a.signum() == b.signum()), "{v:?} → {u:?}");
        }
    }

    #[test]
    fn normalize_rejects_zero() {
        let mut z = [0.0f32; 4];
        assert!(!normalize(&mut z));
        let mut v = [3.0f32, 4.0];
        assert!(normalize(&mut v));
        assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn pair_fns_match_the_reference() {
        let a: Vec<f32> = (0..37).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..37).map(|i| (i as f32 * 0.11).cos()).collect();
        for lvl in Simd::available() {
            for op in [ScanOp::NegDot, ScanOp::L2Squared, ScanOp::L1] {
                // SAFETY: equal lengths, a detected level.
                let got = unsafe { pair_fn(lvl, op)(&a, &b) } as f64;
                let want = match op {
                    ScanOp::NegDot => -reference::dot(&a, &b),
                    ScanOp::L2Squared => reference::l2_squared(&a, &b),
                    ScanOp::L1 => reference::l1(&a, &b),
                };
                assert!((got - want).abs() < 1e-4, "{lvl:?} {op:?}: {got} vs {want}");
            }
        }
    }

    #[test]
    fn levels_come_only_from_detection() {
        let all = Simd::available();
        assert_eq!(all[0], Simd::best());
        assert_eq!(all.last().map(|s| s.level()), Some(SimdLevel::Portable));
        assert_eq!(Simd::at_most(SimdLevel::Portable).level(), SimdLevel::Portable);
        for s in &all {
            // A cap at a level the CPU has gives that level; a cap never raises one.
            assert_eq!(Simd::at_most(s.level()), *s);
            assert!(Simd::at_most(s.level()).level() <= Simd::best().level());
            assert_eq!(s.level().as_str().parse::<SimdLevel>().unwrap(), s.level());
        }
        assert!("sse9".parse::<SimdLevel>().is_err());
    }

    #[test]
    fn mismatched_lengths_are_refused() {
        assert_eq!(raw_at(Simd::at_most(SimdLevel::Portable), ScanOp::L1, &[1.0], &[1.0, 2.0]), None);
    }
}
