//! Scalar quantization to 8 bits (SQ8): each component is stored as one byte on a per-dimension affine grid,
//! `x ≈ lo[j] + step[j] · code[j]`, a quarter of the memory of an f32.
//!
//! Distances are *asymmetric*: the query stays f32 and is folded with the grid once per search, so that each
//! distance is one pass over the codes with no decoding step of its own:
//! - L2²: `Σ (a[j] − step[j]·c[j])²` with `a = q − lo`;
//! - L1: `Σ |a[j] − step[j]·c[j]|`;
//! - −dot: `−(Σ q[j]·lo[j] + Σ (q[j]·step[j])·c[j])`.
//!
//! The loops are written over 8 independent accumulators so that LLVM turns them into AVX2 code (byte → int →
//! float conversion and FMA); the AVX2 copy is chosen once at run time. Quantized distances only steer the graph
//! search: the engine re-scores the final candidates on the full-precision vectors.

use crate::metric::ScanOp;

/// Codes span the training range widened by this share on each side, so values a little outside it still fit.
const MARGIN: f32 = 0.05;

#[derive(Debug, Clone, PartialEq)]
pub struct Sq8 {
    lo: Vec<f32>,
    step: Vec<f32>,
    /// Vectors the grid was fitted on (the engine rebuilds when a store outgrows a small training set).
    trained_on: usize,
}

impl Sq8 {
    /// Fits the grid to the range of each dimension over `vectors` (an empty set gives [-1, 1], the range of
    /// normalised vectors).
    pub fn train<'a>(dim: usize, vectors: impl IntoIterator<Item = &'a [f32]>) -> Sq8 {
        let mut lo = vec![f32::INFINITY; dim];
        let mut hi = vec![f32::NEG_INFINITY; dim];
        let mut n = 0;
        for v in vectors {
            n += 1;
            for (j, &x) in v.iter().enumerate().take(dim) {
                lo[j] = lo[j].min(x);
                hi[j] = hi[j].max(x);
            }
        }
        let mut step = vec![0.0; dim];
        for j in 0..dim {
            if n == 0 {
                (lo[j], hi[j]) = (-1.0, 1.0);
            }
            let width = (hi[j] - lo[j]).max(1e-6);
            lo[j] -= width * MARGIN;
            step[j] = width * (1.0 + 2.0 * MARGIN) / 255.0;
        }
        Sq8 { lo, step, trained_on: n }
    }

    pub fn from_parts(lo: Vec<f32>, step: Vec<f32>, trained_on: usize) -> Option<Sq8> {
        (lo.len() == step.len() && step.iter().all(|s| s.is_finite() && *s > 0.0) && lo.iter().all(|l| l.is_finite()))
            .then_some(Sq8 { lo, step, trained_on })
    }

    pub fn lo(&self) -> &[f32] {
        &self.lo
    }

    pub fn step(&self) -> &[f32] {
        &self.step
    }

    pub fn trained_on(&self) -> usize {
        self.trained_on
    }

    pub fn encode(&self, v: &[f32], out: &mut [u8]) {
        for (j, (&x, o)) in v.iter().zip(out.iter_mut()).enumerate() {
            *o = ((x - self.lo[j]) / self.step[j]).round().clamp(0.0, 255.0) as u8;
        }
    }

    pub fn decode(&self, codes: &[u8]) -> Vec<f32> {
        codes.iter().enumerate().map(|(j, &c)| self.lo[j] + self.step[j] * c as f32).collect()
    }

    /// Folds a (prepared) f32 query with the grid for `op`.
    pub fn query(&self, op: ScanOp, q: &[f32]) -> Sq8Query {
        let (a, b, c) = match op {
            ScanOp::L2Squared | ScanOp::L1 => {
                (q.iter().zip(&self.lo).map(|(x, l)| x - l).collect(), self.step.clone(), 0.0)
            }
            ScanOp::NegDot => {
                let c: f32 = q.iter().zip(&self.lo).map(|(x, l)| x * l).sum();
                (q.iter().zip(&self.step).map(|(x, s)| x * s).collect(), Vec::new(), c)
            }
        };
        Sq8Query { op, a, b, c, kernel: kernel(op) }
    }
}

type Kernel = unsafe fn(&[f32], &[f32], &[u8]) -> f32;

/// A query folded with a grid: [`Sq8Query::distance`] gives the raw value of its [`ScanOp`] against codes.
pub struct Sq8Query {
    op: ScanOp,
    a: Vec<f32>,
    b: Vec<f32>,
    c: f32,
    kernel: Kernel,
}

impl Sq8Query {
    /// Raw distance to a code vector of the query's dimension.
    #[inline]
    pub fn distance(&self, codes: &[u8]) -> f32 {
        debug_assert_eq!(codes.len(), self.a.len());
        let n = self.a.len().min(codes.len());
        let codes = &codes[..n];
        // SAFETY: the kernel is the portable one or an AVX2 one chosen after `is_x86_feature_detected!`.
        let s = unsafe { (self.kernel)(&self.a[..n], &self.b[..self.b.len().min(n)], codes) };
        match self.op {
            ScanOp::NegDot => -(self.c + s),
            _ => s,
        }
    }
}

fn kernel(op: ScanOp) -> Kernel {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        return match op {
            ScanOp::L2Squared => avx2::l2,
            ScanOp::L1 => avx2::l1,
            ScanOp::NegDot => avx2::dot,
        };
    }
    match op {
        ScanOp::L2Squared => portable::l2,
        ScanOp::L1 => portable::l1,
        ScanOp::NegDot => portable::dot,
    }
}

/// The loop bodies, each over 8 accumulators; instantiated once portable and once with AVX2 + FMA enabled.
macro_rules! kernels {
    () => {
        #[inline(always)]
        fn lanes(a: &[f32], b: &[f32], c: &[u8], f: impl Fn(f32, f32, f32) -> f32) -> f32 {
            let mut acc = [0.0f32; 8];
            // Fixed-size chunks: no bounds checks in the loop, so it vectorises.
            let (ac, bc, cc) = (a.chunks_exact(8), b.chunks_exact(8), c.chunks_exact(8));
            let (ar, br, cr) = (ac.remainder(), bc.remainder(), cc.remainder());
            for ((a8, b8), c8) in ac.zip(bc).zip(cc) {
                for l in 0..8 {
                    acc[l] += f(a8[l], b8[l], c8[l] as f32);
                }
            }
            let mut s: f32 = acc.iter().sum();
            for ((x, y), z) in ar.iter().zip(br).zip(cr) {
                s += f(*x, *y, *z as f32);
            }
            s
        }
        #[inline(always)]
        fn body_dot(a: &[f32], c: &[u8]) -> f32 {
            let mut acc = [0.0f32; 8];
            let (ac, cc) = (a.chunks_exact(8), c.chunks_exact(8));
            let (ar, cr) = (ac.remainder(), cc.remainder());
            for (a8, c8) in ac.zip(cc) {
                for l in 0..8 {
                    acc[l] += a8[l] * c8[l] as f32;
                }
            }
            let mut s: f32 = acc.iter().sum();
            for (x, z) in ar.iter().zip(cr) {
                s += x * *z as f32;
            }
            s
        }
    };
}

mod portable {
    kernels!();
    /// # Safety
    /// Always sound: `unsafe` only so that it shares the [`Kernel`] type with the AVX2 kernels.
    pub unsafe fn l2(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
        lanes(a, b, c, |a, b, c| {
            let d = a - b * c;
            d * d
        })
    }
    /// # Safety
    /// Always sound: `unsafe` only so that it shares the [`Kernel`] type with the AVX2 kernels.
    pub unsafe fn l1(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
        lanes(a, b, c, |a, b, c| (a - b * c).abs())
    }
    /// # Safety
    /// Always sound: `unsafe` only so that it shares the [`Kernel`] type with the AVX2 kernels.
    pub unsafe fn dot(a: &[f32], _b: &[f32], c: &[u8]) -> f32 {
        body_dot(a, c)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    kernels!();
    /// # Safety
    /// The CPU must have AVX2 and FMA (`kernel` picks these only after `is_x86_feature_detected!`).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l2(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
        lanes(a, b, c, |a, b, c| {
            let d = a - b * c;
            d * d
        })
    }
    /// # Safety
    /// The CPU must have AVX2 and FMA (`kernel` picks these only after `is_x86_feature_detected!`).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn l1(a: &[f32], b: &[f32], c: &[u8]) -> f32 {
        lanes(a, b, c, |a, b, c| (a - b * c).abs())
    }
    /// # Safety
    /// The CPU must have AVX2 and FMA (`kernel` picks these only after `is_x86_feature_detected!`).
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot(a: &[f32], _b: &[f32], c: &[u8]) -> f32 {
        body_dot(a, c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Metric;
    use crate::kernels::reference;
    use rand::{Rng, SeedableRng};

    #[test]
    fn asymmetric_distances_match_the_decoded_vectors() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let dim = 37;
        let data: Vec<Vec<f32>> = (0..200).map(|_| (0..dim).map(|_| rng.random_range(-3.0..5.0)).collect()).collect();
        let sq = Sq8::train(dim, data.iter().map(|v| v.as_slice()));
        let mut codes = vec![0u8; dim];
        for (metric, op) in
            [(Metric::Euclidean, ScanOp::L2Squared), (Metric::Manhattan, ScanOp::L1), (Metric::Dot, ScanOp::NegDot)]
        {
            let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-3.0..5.0)).collect();
            let query = sq.query(op, &q);
            for v in &data[..20] {
                sq.encode(v, &mut codes);
                let decoded = sq.decode(&codes);
                // Quantization error is at most half a step per component.
                assert!(v.iter().zip(&decoded).enumerate().all(|(j, (x, y))| (x - y).abs() <= sq.step[j] * 0.51));
                let want = reference::distance(metric, &q, &decoded);
                let want = if metric == Metric::Euclidean { want * want } else { want };
                let got = query.distance(&codes) as f64;
                assert!((got - want).abs() <= 1e-3 * want.abs().max(1.0), "{metric}: {got} vs {want}");
            }
        }
    }
}
