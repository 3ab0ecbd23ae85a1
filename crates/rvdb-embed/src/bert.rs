//! A BERT encoder on candle-nn's layers: embeddings, then `num_hidden_layers` transformer layers (self-attention
//! and a GELU feed-forward block, each followed by a residual LayerNorm), as HuggingFace's `BertModel` computes
//! them at inference (no dropout, all token types 0). It reads HuggingFace's tensor names (with or without the
//! `bert.` prefix) and returns the last hidden state; pooling is the caller's ([`crate::local`]).

use candle_core::{CpuStorage, InplaceOp1, Layout, Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use crate::dense::Dense;

/// The fields of a HuggingFace BERT `config.json` the encoder needs.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub hidden_act: String,
    pub max_position_embeddings: usize,
    pub type_vocab_size: usize,
    pub layer_norm_eps: f64,
    #[serde(default = "absolute")]
    pub position_embedding_type: String,
}

fn absolute() -> String {
    "absolute".into()
}

impl BertConfig {
    /// What this encoder cannot compute, if anything (named, so a wrong model directory says why it fails).
    pub fn unsupported(&self) -> Option<String> {
        if self.hidden_act != "gelu" {
            return Some(format!("hidden_act {:?} (only \"gelu\" is supported)", self.hidden_act));
        }
        if self.position_embedding_type != "absolute" {
            return Some(format!("position_embedding_type {:?} (only \"absolute\")", self.position_embedding_type));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Some(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        None
    }
}

struct Embeddings {
    word: Embedding,
    position: Embedding,
    token_type: Embedding,
    norm: LayerNorm,
}

impl Embeddings {
    fn load(vb: VarBuilder, c: &BertConfig) -> Result<Self> {
        Ok(Self {
            word: candle_nn::embedding(c.vocab_size, c.hidden_size, vb.pp("word_embeddings"))?,
            position: candle_nn::embedding(c.max_position_embeddings, c.hidden_size, vb.pp("position_embeddings"))?,
            token_type: candle_nn::embedding(c.type_vocab_size, c.hidden_size, vb.pp("token_type_embeddings"))?,
            norm: candle_nn::layer_norm(c.hidden_size, c.layer_norm_eps, vb.pp("LayerNorm"))?,
        })
    }

    /// `ids`: `[batch, len]` token ids → `[batch, len, hidden]`.
    fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        let (_, len) = ids.dims2()?;
        let words = self.word.forward(ids)?;
        let positions = Tensor::arange(0u32, len as u32, ids.device())?;
        let position = self.position.forward(&positions)?;
        let token_type = self.token_type.embeddings().get(0)?;
        self.norm.forward(&words.broadcast_add(&position)?.broadcast_add(&token_type)?)
    }
}

struct Layer {
    query: Dense,
    key: Dense,
    value: Dense,
    attention_out: Dense,
    attention_norm: LayerNorm,
    intermediate: Dense,
    output: Dense,
    output_norm: LayerNorm,
    heads: usize,
    head_dim: usize,
}

impl Layer {
    fn load(vb: VarBuilder, c: &BertConfig) -> Result<Self> {
        let (h, eps) = (c.hidden_size, c.layer_norm_eps);
        let attention = vb.pp("attention");
        let own = attention.pp("self");
        Ok(Self {
            query: Dense::load(h, h, own.pp("query"))?,
            key: Dense::load(h, h, own.pp("key"))?,
            value: Dense::load(h, h, own.pp("value"))?,
            attention_out: Dense::load(h, h, attention.pp("output").pp("dense"))?,
            attention_norm: candle_nn::layer_norm(h, eps, attention.pp("output").pp("LayerNorm"))?,
            intermediate: Dense::load(h, c.intermediate_size, vb.pp("intermediate").pp("dense"))?,
            output: Dense::load(c.intermediate_size, h, vb.pp("output").pp("dense"))?,
            output_norm: candle_nn::layer_norm(h, eps, vb.pp("output").pp("LayerNorm"))?,
            heads: c.num_attention_heads,
            head_dim: h / c.num_attention_heads,
        })
    }

    /// `x`: `[batch, len, hidden]`; `mask_bias`: `[batch, 1, 1, len]`, 0 for tokens and the most negative
    /// `f32` for padding (HuggingFace's extended attention mask).
    fn forward(&self, x: &Tensor, mask_bias: &Tensor) -> Result<Tensor> {
        let (b, len, hidden) = x.dims3()?;
        let heads = |t: Tensor| t.reshape((b, len, self.heads, self.head_dim))?.transpose(1, 2)?.contiguous();
        let q = heads(self.query.forward(x)?)?;
        let k = heads(self.key.forward(x)?)?;
        let v = heads(self.value.forward(x)?)?;
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let scores = (q.matmul(&k.t()?)? * scale)?.broadcast_add(mask_bias)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?;
        let context = probs.matmul(&v)?.transpose(1, 2)?.contiguous()?.reshape((b, len, hidden))?;
        let x = self.attention_norm.forward(&(self.attention_out.forward(&context)? + x)?)?;
        let inner = self.intermediate.forward(&x)?;
        gelu_erf_in_place(&inner)?;
        self.output_norm.forward(&(self.output.forward(&inner)? + &x)?)
    }
}

/// The encoder.
pub struct BertModel {
    embeddings: Embeddings,
    layers: Vec<Layer>,
}

impl BertModel {
    pub fn load(vb: VarBuilder, c: &BertConfig) -> Result<Self> {
        let vb = if vb.contains_tensor("bert.embeddings.word_embeddings.weight") { vb.pp("bert") } else { vb };
        let embeddings = Embeddings::load(vb.pp("embeddings"), c)?;
        let layers = (0..c.num_hidden_layers)
            .map(|i| Layer::load(vb.pp(format!("encoder.layer.{i}")), c))
            .collect::<Result<_>>()?;
        Ok(Self { embeddings, layers })
    }

    /// `ids`: `[batch, len]` (u32), `mask`: `[batch, len]` (f32, 1 for a token, 0 for padding) → the last hidden
    /// state, `[batch, len, hidden]`.
    pub fn forward(&self, ids: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, len) = mask.dims2()?;
        let bias = ((1.0 - mask)? * f64::from(f32::MIN))?.reshape((b, 1, 1, len))?;
        let mut x = self.embeddings.forward(ids)?;
        for layer in &self.layers {
            x = layer.forward(&x, &bias)?;
        }
        Ok(x)
    }
}

/// GELU with the exact (erf) form, computed in place: BERT's activation, on the largest tensor of a layer
/// (`[batch, len, intermediate]`). candle's `gelu_erf` calls a scalar, branchy `erf` per element, a sixth of an
/// encoder's time; this one is a branch-free rational approximation the compiler vectorises, accurate to about
/// 3e-7, a few f32 ulps (the test below holds it to 5e-7 of an f64 reference).
fn gelu_erf_in_place(t: &Tensor) -> Result<()> {
    t.inplace_op1(&GeluErf)
}

struct GeluErf;

impl InplaceOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "rvdb-gelu-erf"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let CpuStorage::F32(data) = storage else {
            return Err(candle_core::Error::Msg("gelu: f32 tensors only".into()));
        };
        let Some((start, end)) = layout.contiguous_offsets() else {
            return Err(candle_core::Error::Msg("gelu: contiguous tensors only".into()));
        };
        gelu_slice(&mut data[start..end]);
        Ok(())
    }
}

/// GELU over a slice: 16 lanes at a time where the CPU has AVX-512 (the same code, compiled for it), else at
/// the build's baseline width.
fn gelu_slice(data: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::dense::avx512() {
        // SAFETY: the CPU has AVX-512F, checked just above.
        unsafe { gelu_slice_avx512(data) };
        return;
    }
    for v in data {
        *v = gelu(*v);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gelu_slice_avx512(data: &mut [f32]) {
    for v in data {
        *v = gelu(*v);
    }
}

#[inline(always)]
fn gelu(x: f32) -> f32 {
    0.5 * x * (1.0 + erf(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// erf(x) as x·P(x²)/Q(x²) on x clamped to [-4, 4] (erf is ±1 to f32 precision beyond): the rational
/// approximation Eigen and XNNPACK use for f32, with no branches and no `exp`. Multiply-adds are written as
/// `a * b + c`, not `mul_add`: without FMA in the build's target features `mul_add` is a call to a software fma.
#[inline(always)]
fn erf(x: f32) -> f32 {
    let x = x.clamp(-4.0, 4.0);
    let x2 = x * x;
    let mut p = -2.726_142_3e-10_f32;
    p = p * x2 + 2.770_681_4e-8;
    p = p * x2 + -2.101_024e-6;
    p = p * x2 + -5.692_506_4e-5;
    p = p * x2 + -7.349_906_3e-4;
    p = p * x2 + -2.954_600_5e-3;
    p = p * x2 + -1.609_603_3e-2;
    let mut q = -1.456_607_2e-5_f32;
    q = q * x2 + -2.133_740_6e-4;
    q = q * x2 + -1.682_827e-3;
    q = q * x2 + -7.373_329_3e-3;
    q = q * x2 + -1.426_474e-2;
    x * p / q
}

#[cfg(test)]
mod tests {
    use super::*;

    /// erf by its Taylor series in f64 (exact enough for |x| <= 4 with enough terms) and 1 beyond.
    fn erf_reference(x: f64) -> f64 {
        if x.abs() > 4.0 {
            return x.signum() * (1.0 - 1e-8);
        }
        // erf(x) = 2/sqrt(pi) * sum_n (-1)^n x^(2n+1) / (n! (2n+1))
        let (mut term, mut sum) = (x, x);
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn fast_erf_is_accurate() {
        let mut worst = 0.0f64;
        for i in -60_000..=60_000 {
            let x = i as f32 / 10_000.0;
            let e = (f64::from(erf(x)) - erf_reference(f64::from(x))).abs();
            worst = worst.max(e);
        }
        assert!(worst < 5e-7, "max |erf error| {worst}");
        assert_eq!(gelu(0.0), 0.0);
        let xs: Vec<f32> = (-1000..1000).map(|i| i as f32 / 100.0).collect();
        let mut sliced = xs.clone();
        gelu_slice(&mut sliced);
        assert!(xs.iter().zip(&sliced).all(|(x, g)| (gelu(*x) - g).abs() <= 1e-6 * (1.0 + g.abs())));
        assert!((gelu(1.0) - 0.841_344_7).abs() < 1e-6);
        assert!((gelu(-3.0) - -0.004_049_7).abs() < 1e-6);
    }
}
