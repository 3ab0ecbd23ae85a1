//! The encoder's dense (fully connected) layers, `y = x·Wᵀ + b`: 90% of its arithmetic.
//!
//! candle's CPU matrix products come from the `gemm` crate, whose AVX-512 kernels need nightly Rust, so on stable
//! they run 8-wide AVX2 even on CPUs with 16-wide AVX-512 (what PyTorch's oneDNN uses there). On such a CPU this
//! module multiplies with its own AVX-512 kernel (stable since Rust 1.89); elsewhere it is candle's `Linear`.
//!
//! The kernel: `W` is packed once, at load, into panels of [`NR`] = 32 output columns (two 16-lane registers),
//! each panel `K` rows of 32 consecutive weights, so the inner loop reads them sequentially. The product runs in
//! blocks of [`KC`] = 256 inputs (a panel's block is 32 KiB and stays in L1 while [`MC`] rows of `x` pass over it)
//! and strips of [`MR`] = 12 rows: 24 accumulators, 2 weight vectors and 1 broadcast in the 32 vector registers,
//! 24 fused multiply-adds per 14 loads, so the FMA units, not memory, bound it. The bias is the accumulators'
//! initial value. The order of additions differs from candle's (blocked over `K`), within float rounding: the
//! golden-vector test holds the encoder to sentence-transformers either way.

use candle_core::{CpuStorage, CustomOp1, Layout, Module, Result, Shape, Tensor};
use candle_nn::{Linear, VarBuilder};

/// Output columns per packed panel (two AVX-512 registers of f32).
const NR: usize = 32;
/// Rows of `x` per micro-kernel call.
const MR: usize = 12;
/// Inputs per block.
const KC: usize = 256;
/// Rows of `x` per block (a multiple of [`MR`]).
const MC: usize = 96;

/// A dense layer: candle's, or the packed weights of the AVX-512 kernel.
pub struct Dense {
    linear: Linear,
    packed: Option<Packed>,
}

struct Packed {
    /// Inputs (`K`) and outputs (`N`).
    k: usize,
    n: usize,
    /// `N / NR` (rounded up) panels of `K × NR` weights (zero past `N`).
    panels: Vec<f32>,
    /// `N` rounded up to a multiple of `NR` (zeros past `N`).
    bias: Vec<f32>,
}

/// `out`'s pointer, shared by the threads that write disjoint columns of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: used only to write disjoint parts of one buffer from threads that all end before it is read.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

impl OutPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Whether this CPU runs the AVX-512 kernel.
pub fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl Dense {
    /// `inputs → outputs` with weight `[outputs, inputs]` and bias `[outputs]`, as `candle_nn::linear` loads it.
    pub fn load(inputs: usize, outputs: usize, vb: VarBuilder) -> Result<Dense> {
        let linear = candle_nn::linear(inputs, outputs, vb)?;
        Self::from_linear(linear, avx512())
    }

    fn from_linear(linear: Linear, pack: bool) -> Result<Dense> {
        if !pack {
            return Ok(Dense { linear, packed: None });
        }
        let w = linear.weight().to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        let (n, k) = (w.len(), w.first().map_or(0, Vec::len));
        let bias = match linear.bias() {
            Some(b) => b.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?,
            None => vec![0.0; n],
        };
        let panels_n = n.div_ceil(NR);
        let mut panels = vec![0.0f32; panels_n * k * NR];
        for (o, row) in w.iter().enumerate() {
            let (p, j) = (o / NR, o % NR);
            for (i, &x) in row.iter().enumerate() {
                panels[(p * k + i) * NR + j] = x;
            }
        }
        let mut padded = vec![0.0f32; panels_n * NR];
        padded[..n].copy_from_slice(&bias);
        Ok(Dense { linear, packed: Some(Packed { k, n, panels, bias: padded }) })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match &self.packed {
            Some(p) => x.contiguous()?.apply_op1_no_bwd(p),
            None => self.linear.forward(x),
        }
    }
}

impl CustomOp1 for Packed {
    fn name(&self) -> &'static str {
        "rvdb-dense-avx512"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let CpuStorage::F32(data) = storage else {
            return Err(candle_core::Error::Msg("dense: f32 tensors only".into()));
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Err(candle_core::Error::Msg("dense: contiguous tensors only".into()));
        };
        let dims = layout.shape().dims();
        if dims.last() != Some(&self.k) {
            return Err(candle_core::Error::Msg(format!("dense: input {dims:?}, expected last dimension {}", self.k)));
        }
        let x = &data[start..end];
        let m = x.len() / self.k.max(1);
        let mut out = vec![0.0f32; m * self.n];
        self.multiply(x, m, &mut out);
        let mut shape = dims.to_vec();
        if let Some(last) = shape.last_mut() {
            *last = self.n;
        }
        Ok((CpuStorage::F32(out), Shape::from(shape)))
    }
}

impl Packed {
    /// `out[m × n] = x[m × k] · Wᵀ + b`.
    fn multiply(&self, x: &[f32], m: usize, out: &mut [f32]) {
        assert!(x.len() >= m * self.k && out.len() >= m * self.n, "dense: buffers too small");
        #[cfg(target_arch = "x86_64")]
        if avx512() {
            let panels = self.n.div_ceil(NR);
            let threads = rayon::current_num_threads().min(panels);
            let ptr = OutPtr(out.as_mut_ptr());
            if m <= MC && threads > 1 {
                // Few rows (a query, a short batch): the product is bound by reading the weights, so the panels
                // are split over the threads (each writes its own columns of `out`).
                use rayon::prelude::*;
                let per = panels.div_ceil(threads);
                (0..threads).into_par_iter().for_each(|t| {
                    let range = t * per..((t + 1) * per).min(panels);
                    // SAFETY: AVX-512F is present (checked above); the buffers hold m rows (asserted above), and
                    // the threads write disjoint column ranges (their panels) of `out`.
                    unsafe { self.multiply_avx512(x, m, ptr.get(), range) };
                });
            } else {
                // SAFETY: as above, on one thread.
                unsafe { self.multiply_avx512(x, m, ptr.get(), 0..panels) };
            }
            return;
        }
        self.multiply_portable(x, m, out);
    }

    /// The same product without SIMD (for CPUs without AVX-512, where [`Dense`] keeps candle's layer anyway, and
    /// as the tests' reference).
    fn multiply_portable(&self, x: &[f32], m: usize, out: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        for r in 0..m {
            for o in 0..n {
                let (p, j) = (o / NR, o % NR);
                let mut acc = self.bias[o];
                for i in 0..k {
                    acc += x[r * k + i] * self.panels[(p * k + i) * NR + j];
                }
                out[r * n + o] = acc;
            }
        }
    }

    /// The product for the output columns of `panels` (`out`: `m × n`, written only in those columns).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn multiply_avx512(&self, x: &[f32], m: usize, out: *mut f32, panels: std::ops::Range<usize>) {
        let (k, n) = (self.k, self.n);
        let mut k0 = 0;
        while k0 < k {
            let kc = KC.min(k - k0);
            let first = k0 == 0;
            let mut m0 = 0;
            while m0 < m {
                let mc = MC.min(m - m0);
                for p in panels.clone() {
                    let panel = &self.panels[(p * k + k0) * NR..(p * k + k0 + kc) * NR];
                    let bias = &self.bias[p * NR..(p + 1) * NR];
                    let cols = NR.min(n - p * NR);
                    let mut r = m0;
                    while r < m0 + mc {
                        let rows = MR.min(m0 + mc - r);
                        // SAFETY: AVX-512F is enabled for this function; `strip` keeps within x, out, panel.
                        unsafe { strip(x, k, k0, kc, r, rows, panel, bias, first, out, n, p * NR, cols) };
                        r += rows;
                    }
                }
                m0 += mc;
            }
            k0 += kc;
        }
    }
}

/// `rows` (≤ MR) rows from `r` of `out[:, col..col + cols]` (+)= `x[r.., k0..k0 + kc] · panel` (+ `bias` when
/// `first`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn strip(
    x: &[f32],
    k: usize,
    k0: usize,
    kc: usize,
    r: usize,
    rows: usize,
    panel: &[f32],
    bias: &[f32],
    first: bool,
    out: *mut f32,
    n: usize,
    col: usize,
    cols: usize,
) {
    use std::arch::x86_64::*;
    // SAFETY (for the whole body): AVX-512F is enabled; every pointer below stays inside its slice: rows r..r+rows
    // of x (each k long, read at k0..k0+kc ≤ k), panel (kc × NR), bias (NR), and out rows r..r+rows (n long, written
    // at col..col+cols ≤ n, through a scratch row when cols < NR).
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); 2]; MR];
        if first {
            let (b0, b1) = (_mm512_loadu_ps(bias.as_ptr()), _mm512_loadu_ps(bias.as_ptr().add(16)));
            for a in acc.iter_mut().take(rows) {
                *a = [b0, b1];
            }
        } else {
            for (i, a) in acc.iter_mut().enumerate().take(rows) {
                let row = out.add((r + i) * n + col).cast_const();
                *a = if cols == NR {
                    [_mm512_loadu_ps(row), _mm512_loadu_ps(row.add(16))]
                } else {
                    let mut tmp = [0.0f32; NR];
                    std::ptr::copy_nonoverlapping(row, tmp.as_mut_ptr(), cols);
                    [_mm512_loadu_ps(tmp.as_ptr()), _mm512_loadu_ps(tmp.as_ptr().add(16))]
                };
            }
        }
        let xs = x.as_ptr().add(r * k + k0);
        let w = panel.as_ptr();
        if rows == MR {
            // the hot loop, with MR fixed so that the accumulators live in registers
            for i in 0..kc {
                let b0 = _mm512_loadu_ps(w.add(i * NR));
                let b1 = _mm512_loadu_ps(w.add(i * NR + 16));
                for (row, a) in acc.iter_mut().enumerate() {
                    let v = _mm512_set1_ps(*xs.add(row * k + i));
                    a[0] = _mm512_fmadd_ps(v, b0, a[0]);
                    a[1] = _mm512_fmadd_ps(v, b1, a[1]);
                }
            }
        } else {
            for i in 0..kc {
                let b0 = _mm512_loadu_ps(w.add(i * NR));
                let b1 = _mm512_loadu_ps(w.add(i * NR + 16));
                for (row, a) in acc.iter_mut().enumerate().take(rows) {
                    let v = _mm512_set1_ps(*xs.add(row * k + i));
                    a[0] = _mm512_fmadd_ps(v, b0, a[0]);
                    a[1] = _mm512_fmadd_ps(v, b1, a[1]);
                }
            }
        }
        for (i, a) in acc.iter().enumerate().take(rows) {
            let row = out.add((r + i) * n + col);
            if cols == NR {
                _mm512_storeu_ps(row, a[0]);
                _mm512_storeu_ps(row.add(16), a[1]);
            } else {
                let mut tmp = [0.0f32; NR];
                _mm512_storeu_ps(tmp.as_mut_ptr(), a[0]);
                _mm512_storeu_ps(tmp.as_mut_ptr().add(16), a[1]);
                std::ptr::copy_nonoverlapping(tmp.as_ptr(), row, cols);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Device};

    fn layer(k: usize, n: usize, seed: u32) -> Result<Linear> {
        let mut s = seed;
        let mut next = move || {
            s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        let w: Vec<f32> = (0..n * k).map(|_| next()).collect();
        let b: Vec<f32> = (0..n).map(|_| next()).collect();
        Ok(Linear::new(Tensor::from_vec(w, (n, k), &Device::Cpu)?, Some(Tensor::from_vec(b, n, &Device::Cpu)?)))
    }

    /// The packed product equals candle's, for shapes that exercise every edge: rows not a multiple of MR or MC,
    /// inputs not a multiple of KC (several K blocks), outputs not a multiple of NR (a partial panel).
    #[test]
    fn packed_equals_candle_on_every_edge() -> Result<()> {
        for (m, k, n) in [(1, 8, 32), (13, 384, 384), (97, 1536, 384), (50, 384, 1536), (7, 300, 45), (200, 17, 70)] {
            let linear = layer(k, n, (m * 31 + k * 7 + n) as u32)?;
            let x = Tensor::rand(-1.0f32, 1.0, (m, k), &Device::Cpu)?;
            let want = linear.forward(&x)?.to_vec2::<f32>()?;
            let dense = Dense::from_linear(linear, true)?;
            let got = dense.forward(&x)?.to_vec2::<f32>()?;
            let p = dense.packed.as_ref().ok_or_else(|| candle_core::Error::Msg("not packed".into()))?;
            let mut portable = vec![0.0; m * n];
            p.multiply_portable(&x.flatten_all()?.to_vec1::<f32>()?, m, &mut portable);
            let mut worst = 0.0f32;
            for r in 0..m {
                for c in 0..n {
                    let scale = 1.0 + want[r][c].abs();
                    worst = worst.max((got[r][c] - want[r][c]).abs() / scale);
                    worst = worst.max((portable[r * n + c] - want[r][c]).abs() / scale);
                }
            }
            // sums of k products, added in different orders: rounding grows with k
            let tolerance = 1e-6 + 3e-8 * k as f32;
            assert!(worst < tolerance, "m {m} k {k} n {n}: worst relative error {worst} (tolerance {tolerance})");
        }
        // a batch of sequences keeps its shape
        let linear = layer(64, 96, 5)?;
        let x = Tensor::rand(-1.0f32, 1.0, (3, 5, 64), &Device::Cpu)?;
        let want = linear.forward(&x)?;
        let got = Dense::from_linear(linear, true)?.forward(&x)?;
        assert_eq!(got.dims(), want.dims());
        let diff = (got - want)?.abs()?.flatten_all()?.max(0)?.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        assert!(diff < 1e-4, "{diff}");
        Ok(())
    }
}

#[cfg(test)]
mod speed {
    use super::*;
    use candle_core::Device;

    /// `cargo test --release -p rvdb-embed speed -- --ignored --nocapture`: GFLOP/s of the packed product against
    /// candle's on the encoder's shapes (a measurement, not a pass/fail check).
    #[test]
    #[ignore]
    fn dense_throughput() -> Result<()> {
        for (m, k, n) in [(1024, 384, 384), (1024, 384, 1536), (1024, 1536, 384)] {
            let w = Tensor::rand(-1.0f32, 1.0, (n, k), &Device::Cpu)?;
            let b = Tensor::rand(-1.0f32, 1.0, n, &Device::Cpu)?;
            let linear = Linear::new(w, Some(b));
            let x = Tensor::rand(-1.0f32, 1.0, (m, k), &Device::Cpu)?;
            let flops = 2.0 * (m * k * n) as f64;
            let time = |f: &dyn Fn() -> Result<Tensor>| -> Result<f64> {
                f()?;
                let t = std::time::Instant::now();
                for _ in 0..20 {
                    f()?;
                }
                Ok(flops * 20.0 / t.elapsed().as_secs_f64() / 1e9)
            };
            let candle = time(&|| linear.forward(&x))?;
            let dense = Dense::from_linear(linear.clone(), true)?;
            let packed = time(&|| dense.forward(&x))?;
            println!("m {m} k {k} n {n}: candle {candle:.1} GFLOP/s, packed {packed:.1} GFLOP/s");
        }
        Ok(())
    }
}
