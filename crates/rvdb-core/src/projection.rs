//! A 2-D map of a sample of vectors: principal component analysis, for the web console's map of a store.
//!
//! [`Projection::fit`] finds the two directions of largest variance of the sample by orthogonal (subspace)
//! iteration on the covariance, never forming it: each step multiplies a block of `p = 4` vectors by `Xᵀ(X·)`,
//! which costs `O(n·d·p)` instead of the `O(n·d²)` of building a `d × d` covariance, and a block wider than the two
//! wanted directions makes the second one converge at the rate `λ₅/λ₂` instead of `λ₃/λ₂`. The fit uses at most
//! [`FIT_ROWS`] rows (a map needs the axes, not their last digits); every sampled row is then projected. Stores
//! whose metric compares directions (cosine) are mapped after normalising each vector, so the map shows what
//! their searches see.
//!
//! The projection is returned whole (mean, the two components, and whether rows are normalised first), so a
//! client can place any other vector on the same map: a query, or a search hit outside the sample.

/// Most rows used to fit the axes; more are projected, not fitted.
pub const FIT_ROWS: usize = 4096;
/// Block width of the subspace iteration (two wanted directions plus two that speed up their convergence).
const BLOCK: usize = 4;
/// Most iterations; most samples converge in 10–40.
const MAX_ITERATIONS: usize = 100;
/// Converged when no direction of the block moves by more than this (1 − |cos| between iterations).
const TOLERANCE: f64 = 1e-9;

/// The axes of a 2-D map: `x = (v' − mean)·components[0]`, `y = (v' − mean)·components[1]`, with `v'` the vector
/// normalised to unit length when `normalized`.
#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub normalized: bool,
    pub mean: Vec<f32>,
    /// Two unit vectors, orthogonal, of largest variance first (a zero vector where the data has no variance
    /// left, e.g. in one dimension).
    pub components: [Vec<f32>; 2],
    /// The share of the sample's total variance along each component, in `[0, 1]` (0 when there is none).
    pub explained_variance_ratio: [f32; 2],
}

impl Projection {
    /// Fits the axes to `rows` (each of `dim` values; `dim` ≥ 1). With no rows, or rows that do not vary, the
    /// axes are the first two coordinate axes and the explained ratios 0. `seed` fixes the starting block, so
    /// the same sample gives the same map.
    pub fn fit(rows: &[&[f32]], dim: usize, normalize: bool, seed: u64) -> Projection {
        let dim = dim.max(1);
        let step = rows.len().div_ceil(FIT_ROWS).max(1);
        let fit: Vec<Vec<f64>> =
            rows.iter().step_by(step).map(|r| prepared(r, dim, normalize)).filter(|r| r.len() == dim).collect();
        let n = fit.len();
        let mut mean = vec![0f64; dim];
        for r in &fit {
            for (m, x) in mean.iter_mut().zip(r) {
                *m += x;
            }
        }
        if n > 0 {
            mean.iter_mut().for_each(|m| *m /= n as f64);
        }
        let centered: Vec<Vec<f64>> = fit.iter().map(|r| r.iter().zip(&mean).map(|(x, m)| x - m).collect()).collect();
        let total: f64 = centered.iter().flat_map(|r| r.iter().map(|x| x * x)).sum::<f64>() / n.max(1) as f64;
        let axis = |i: usize| (0..dim).map(|j| if j == i { 1.0 } else { 0.0 }).collect::<Vec<f64>>();
        let (components, variances) = if total > f64::MIN_POSITIVE && n > 1 {
            top_two(&centered, dim, seed)
        } else {
            ([axis(0), if dim > 1 { axis(1) } else { vec![0.0; dim] }], [0.0, 0.0])
        };
        let ratio = |v: f64| if total > f64::MIN_POSITIVE { (v / total).clamp(0.0, 1.0) as f32 } else { 0.0 };
        let to_f32 = |v: &[f64]| v.iter().map(|x| *x as f32).collect::<Vec<f32>>();
        Projection {
            normalized: normalize,
            mean: to_f32(&mean),
            components: [to_f32(&components[0]), to_f32(&components[1])],
            explained_variance_ratio: [ratio(variances[0]), ratio(variances[1])],
        }
    }

    /// Where `v` lands on the map; `None` if it has another dimension (or cannot be normalised: all zeros).
    pub fn project(&self, v: &[f32]) -> Option<[f32; 2]> {
        let dim = self.mean.len();
        let row = prepared(v, dim, self.normalized);
        if row.len() != dim {
            return None;
        }
        let along = |c: &[f32]| row.iter().zip(&self.mean).zip(c).map(|((x, m), c)| (x - *m as f64) * *c as f64).sum();
        let (x, y): (f64, f64) = (along(&self.components[0]), along(&self.components[1]));
        Some([x as f32, y as f32])
    }
}

/// `v` as f64, normalised when asked; empty when it has another dimension, a non-finite value, or no length to
/// normalise.
fn prepared(v: &[f32], dim: usize, normalize: bool) -> Vec<f64> {
    if v.len() != dim || v.iter().any(|x| !x.is_finite()) {
        return Vec::new();
    }
    let mut row: Vec<f64> = v.iter().map(|x| *x as f64).collect();
    if normalize {
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        if norm <= f64::MIN_POSITIVE {
            return Vec::new();
        }
        row.iter_mut().for_each(|x| *x /= norm);
    }
    row
}

/// The two leading eigenvectors of the covariance of `centered` (rows already centred) and their eigenvalues
/// (variances), by orthogonal iteration with Gram–Schmidt, which keeps the block ordered by variance.
fn top_two(centered: &[Vec<f64>], dim: usize, seed: u64) -> ([Vec<f64>; 2], [f64; 2]) {
    let p = BLOCK.min(dim);
    let mut state = seed ^ 0x9E37_79B9_7F4A_7C15;
    let mut block: Vec<Vec<f64>> = (0..p).map(|_| (0..dim).map(|_| uniform(&mut state) - 0.5).collect()).collect();
    let _ = orthonormalize(&mut block);
    let n = centered.len() as f64;
    let covariance_times = |v: &[f64]| {
        let mut out = vec![0f64; dim];
        for r in centered {
            let s: f64 = r.iter().zip(v).map(|(a, b)| a * b).sum();
            for (o, a) in out.iter_mut().zip(r) {
                *o += s * a;
            }
        }
        out.iter_mut().for_each(|o| *o /= n);
        out
    };
    for _ in 0..MAX_ITERATIONS {
        let mut next: Vec<Vec<f64>> = block.iter().map(|v| covariance_times(v)).collect();
        let residuals = orthonormalize(&mut next);
        let scale = residuals.first().copied().unwrap_or(0.0);
        // A wanted direction without variance (rank-1 data) wanders in the null space: it has converged.
        let moved = block
            .iter()
            .zip(&next)
            .zip(&residuals)
            .take(2)
            .filter(|(_, residual)| **residual > 1e-9 * scale)
            .map(|((a, b), _)| 1.0 - a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>().abs())
            .fold(0f64, f64::max);
        block = next;
        if moved < TOLERANCE {
            break;
        }
    }
    let variance = |v: &[f64]| covariance_times(v).iter().zip(v).map(|(a, b)| a * b).sum::<f64>().max(0.0);
    // Order by variance (Gram–Schmidt orders them already once converged; this guards an early stop).
    let mut ranked: Vec<(f64, Vec<f64>)> = block.into_iter().map(|v| (variance(&v), v)).collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut ranked = ranked.into_iter();
    let (v0, c0) = ranked.next().unwrap_or_else(|| (0.0, vec![0.0; dim]));
    let (v1, c1) = ranked.next().unwrap_or_else(|| (0.0, vec![0.0; dim]));
    ([sign_fixed(c0), sign_fixed(c1)], [v0, v1])
}

/// Gram–Schmidt (twice, for stability). Returns each vector's length after the earlier ones were taken out of it
/// (before normalising). A vector that collapses (nothing left but rounding, as when the data has fewer
/// directions than the block) is replaced by the first coordinate axis that is independent of the earlier
/// vectors, orthogonalised: rounding residue can point back along an earlier vector (it does for rank-1 data, where
/// all arithmetic stays on one line), and normalising it would duplicate that vector. Its length is reported as 0.
fn orthonormalize(block: &mut [Vec<f64>]) -> Vec<f64> {
    fn remove_earlier(block: &mut [Vec<f64>], i: usize, v: &mut [f64]) {
        for _ in 0..2 {
            for earlier in block[..i].iter() {
                let d: f64 = v.iter().zip(earlier).map(|(a, b)| a * b).sum();
                for (x, y) in v.iter_mut().zip(earlier) {
                    *x -= d * y;
                }
            }
        }
    }
    let length = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    let mut residuals = Vec::with_capacity(block.len());
    for i in 0..block.len() {
        let before = length(&block[i]);
        let mut v = std::mem::take(&mut block[i]);
        remove_earlier(block, i, &mut v);
        let mut norm = length(&v);
        if norm > 1e-10 * before && norm > 1e-300 {
            residuals.push(norm);
        } else {
            residuals.push(0.0);
            norm = 0.0;
            for axis in 0..v.len() {
                v.iter_mut().enumerate().for_each(|(j, x)| *x = if j == axis { 1.0 } else { 0.0 });
                remove_earlier(block, i, &mut v);
                norm = length(&v);
                if norm > 0.5 {
                    break;
                }
            }
        }
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        block[i] = v;
    }
    residuals
}

/// A component's sign is arbitrary; fix it (largest coordinate positive) so maps of similar samples agree.
fn sign_fixed(mut v: Vec<f64>) -> Vec<f64> {
    let largest = v.iter().copied().fold(0f64, |a, x| if x.abs() > a.abs() { x } else { a });
    if largest < 0.0 {
        v.iter_mut().for_each(|x| *x = -*x);
    }
    v
}

/// splitmix64 as a uniform value in [0, 1).
fn uniform(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = dot(v, v).sqrt();
        v.iter().map(|x| x / n).collect()
    }

    /// Points spread along two known orthogonal directions of a 6-d space (standard deviations 10 and 3), plus
    /// small noise, around an offset: the axes are found, in order, with the right shares of variance.
    #[test]
    fn finds_the_directions_of_largest_variance_in_order() {
        let a = unit(&[1.0, 2.0, 0.0, -1.0, 0.5, 0.0]);
        let b0 = [2.0, -1.0, 1.0, 0.0, 0.0, 3.0];
        let b = unit(&b0.iter().zip(&a).map(|(x, y)| x - dot(&b0, &a) * y).collect::<Vec<_>>());
        let mut state = 7u64;
        let mut gauss = || {
            let (u1, u2) = (uniform(&mut state).max(1e-12), uniform(&mut state));
            ((-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()) as f32
        };
        let rows: Vec<Vec<f32>> = (0..3000)
            .map(|_| {
                let (s, t) = (10.0 * gauss(), 3.0 * gauss());
                (0..6).map(|j| 5.0 + s * a[j] + t * b[j] + 0.1 * gauss()).collect()
            })
            .collect();
        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let p = Projection::fit(&refs, 6, false, 1);
        assert!(dot(&p.components[0], &a).abs() > 0.999, "{:?}", p.components[0]);
        assert!(dot(&p.components[1], &b).abs() > 0.99, "{:?}", p.components[1]);
        assert!(dot(&p.components[0], &p.components[1]).abs() < 1e-4);
        let [r0, r1] = p.explained_variance_ratio;
        // variances 100, 9 and 6 × 0.01 of noise
        assert!((r0 - 100.0 / 109.06).abs() < 0.02 && (r1 - 9.0 / 109.06).abs() < 0.02, "{r0} {r1}");
        assert!(p.mean.iter().all(|m| (m - 5.0).abs() < 1.0));
        // the mean maps to the origin; a step along `a` moves x alone
        let origin = p.project(&p.mean).expect("same dimension");
        assert!(origin[0].abs() < 1e-4 && origin[1].abs() < 1e-4);
        let moved: Vec<f32> = p.mean.iter().zip(&a).map(|(m, x)| m + 2.0 * x).collect();
        let [x, y] = p.project(&moved).expect("same dimension");
        assert!((x.abs() - 2.0).abs() < 0.01 && y.abs() < 0.05, "{x} {y}");
        assert_eq!(p.project(&[1.0, 2.0]), None, "another dimension");
        assert_eq!(Projection::fit(&refs, 6, false, 1), p, "the same sample and seed give the same map");
    }

    #[test]
    fn cosine_maps_directions_not_lengths() {
        // The same two directions at many lengths: normalised, they are two points.
        let rows: Vec<Vec<f32>> =
            (1..200).map(|i| if i % 2 == 0 { vec![i as f32, 0.0, 0.0] } else { vec![0.0, i as f32, 0.0] }).collect();
        let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
        let p = Projection::fit(&refs, 3, true, 3);
        let (x, y) = (p.project(&[1.0, 0.0, 0.0]).expect("fits"), p.project(&[0.0, 50.0, 0.0]).expect("fits"));
        assert!((p.project(&[7.0, 0.0, 0.0]).expect("fits")[0] - x[0]).abs() < 1e-6, "length does not matter");
        assert!(((x[0] - y[0]).abs() - 2f32.sqrt()).abs() < 1e-3, "the two directions are √2 apart: {x:?} {y:?}");
        assert!(p.explained_variance_ratio[0] > 0.99);
        assert_eq!(p.project(&[0.0, 0.0, 0.0]), None, "a zero vector has no direction");
    }

    /// Two points: the data has one direction; the second axis is orthogonal to it with no variance (rounding
    /// along the first direction must not come back as a copy of it).
    #[test]
    fn rank_one_samples_get_an_orthogonal_second_axis() {
        for rows in [vec![vec![1.0f32, 0.0, 0.0], vec![0.0, 1.0, 0.0]], vec![vec![3.0, 3.0], vec![-1.0, -1.0]]] {
            let refs: Vec<&[f32]> = rows.iter().map(|r| r.as_slice()).collect();
            let p = Projection::fit(&refs, rows[0].len(), false, 0);
            assert!(dot(&p.components[0], &p.components[1]).abs() < 1e-6, "{:?}", p.components);
            assert!((dot(&p.components[1], &p.components[1]) - 1.0).abs() < 1e-5, "{:?}", p.components);
            assert!((p.explained_variance_ratio[0] - 1.0).abs() < 1e-6, "{:?}", p.explained_variance_ratio);
            assert!(p.explained_variance_ratio[1] < 1e-6, "{:?}", p.explained_variance_ratio);
        }
    }

    #[test]
    fn degenerate_samples_give_finite_axes() {
        let none = Projection::fit(&[], 4, false, 0);
        assert_eq!(none.components[0], vec![1.0, 0.0, 0.0, 0.0]);
        assert_eq!(none.explained_variance_ratio, [0.0, 0.0]);
        let same = [[1.0f32, 2.0], [1.0, 2.0]];
        let refs: Vec<&[f32]> = same.iter().map(|r| r.as_slice()).collect();
        let p = Projection::fit(&refs, 2, false, 0);
        assert_eq!(p.project(&[1.0, 2.0]), Some([0.0, 0.0]));
        assert_eq!(p.explained_variance_ratio, [0.0, 0.0]);
        // one dimension: x is the value around the mean, y is 0
        let line = [[1.0f32], [3.0], [5.0]];
        let refs: Vec<&[f32]> = line.iter().map(|r| r.as_slice()).collect();
        let p = Projection::fit(&refs, 1, false, 0);
        assert_eq!(p.project(&[5.0]), Some([2.0, 0.0]));
        assert!((p.explained_variance_ratio[0] - 1.0).abs() < 1e-6 && p.explained_variance_ratio[1] == 0.0);
        // rows with a non-finite value or another dimension are left out of the fit
        let odd: [&[f32]; 3] = [&[f32::NAN, 1.0], &[1.0], &[2.0, 2.0]];
        let p = Projection::fit(&odd, 2, false, 0);
        assert!(p.mean.iter().all(|m| m.is_finite()));
    }
}
