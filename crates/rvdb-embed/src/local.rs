//! A sentence-transformers model run in process: tokenise (the model's own `tokenizer.json`, truncated at its
//! `max_seq_length`), encode ([`crate::bert`]), mean-pool over the real tokens, L2-normalise when the model's
//! pipeline does (`modules.json` lists `Normalize`). The same steps as sentence-transformers' `encode`, so the
//! vectors match the ones the model's users already have (the golden-vector test holds them to it).
//!
//! A call's texts are sorted by length and embedded in batches of similar lengths, so short texts are not padded
//! to the longest of the call.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use tokenizers::{Tokenizer, TruncationParams};

use crate::bert::{BertConfig, BertModel};
use crate::{EmbedError, Embedder, ModelInfo};

/// Most texts per forward pass.
const BATCH: usize = 32;
/// Token rows a batch should have before padding may cut it short: below that, the weights (90 MB for
/// all-MiniLM-L6-v2) are read for too little work.
const MIN_BATCH_TOKENS: usize = 256;
/// Padding a batch may carry, as a share of its real tokens, once it has `MIN_BATCH_TOKENS` rows.
const MAX_PADDING: f64 = 0.25;
/// The id padding positions get (BERT's `[PAD]`); they are masked out of attention and pooling, so it never shows.
const PAD_ID: u32 = 0;

pub struct LocalEmbedder {
    tokenizer: Tokenizer,
    model: BertModel,
    info: ModelInfo,
    dir: PathBuf,
}

impl std::fmt::Debug for LocalEmbedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalEmbedder").field("info", &self.info).field("dir", &self.dir).finish()
    }
}

#[derive(serde::Deserialize)]
struct SentenceConfig {
    max_seq_length: usize,
}

#[derive(serde::Deserialize)]
struct PoolingConfig {
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
}

#[derive(serde::Deserialize)]
struct ModuleEntry {
    #[serde(rename = "type")]
    kind: String,
}

impl LocalEmbedder {
    /// Loads the model in `dir`; its name is the directory's name (`…/all-MiniLM-L6-v2`).
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let fail = |reason: String| EmbedError::Model { dir: dir.display().to_string(), reason };
        let read = |name: &str| std::fs::read(dir.join(name)).map_err(|e| fail(format!("cannot read {name}: {e}")));
        let json = |name: &str| -> Result<serde_json::Value, EmbedError> {
            serde_json::from_slice(&read(name)?).map_err(|e| fail(format!("{name} is not valid JSON: {e}")))
        };
        let config: BertConfig =
            serde_json::from_value(json("config.json")?).map_err(|e| fail(format!("config.json: {e}")))?;
        if let Some(what) = config.unsupported() {
            return Err(fail(format!("config.json: unsupported {what}")));
        }
        let sentence: SentenceConfig = serde_json::from_value(json("sentence_bert_config.json")?)
            .map_err(|e| fail(format!("sentence_bert_config.json: {e}")))?;
        let pooling: PoolingConfig = serde_json::from_value(json("1_Pooling/config.json")?)
            .map_err(|e| fail(format!("1_Pooling/config.json: {e}")))?;
        if !pooling.pooling_mode_mean_tokens || pooling.pooling_mode_cls_token || pooling.pooling_mode_max_tokens {
            return Err(fail("1_Pooling/config.json: only mean pooling is supported".into()));
        }
        let modules: Vec<ModuleEntry> =
            serde_json::from_value(json("modules.json")?).map_err(|e| fail(format!("modules.json: {e}")))?;
        let normalized = modules.iter().any(|m| m.kind.ends_with(".Normalize"));
        let max_tokens = sentence.max_seq_length.min(config.max_position_embeddings);

        let mut tokenizer =
            Tokenizer::from_bytes(read("tokenizer.json")?).map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        // tokenizer.json carries its own truncation and fixed padding (128); sentence-transformers truncates at
        // max_seq_length and pads a batch to its longest text. Here texts are tokenised without padding, then
        // batched by token count and padded per batch (`embed_counted`).
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: max_tokens, ..Default::default() }))
            .map_err(|e| fail(format!("tokenizer.json: {e}")))?;
        tokenizer.with_padding(None);

        let weights = read("model.safetensors")?;
        let vb = VarBuilder::from_buffered_safetensors(weights, DType::F32, &Device::Cpu)
            .map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let model = BertModel::load(vb, &config).map_err(|e| fail(format!("model.safetensors: {e}")))?;
        let name = dir.file_name().map_or_else(|| "local".to_string(), |n| n.to_string_lossy().into_owned());
        let info = ModelInfo { name, dimension: config.hidden_size as u32, normalized, max_tokens };
        tracing::info!(model = %info.name, dimension = info.dimension, dir = %dir.display(), "embedding model loaded");
        Ok(Self { tokenizer, model, info, dir: dir.to_path_buf() })
    }

    /// Where the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One vector per text and the tokens each text counted after truncation (what a call costs; the
    /// OpenAI-compatible endpoint reports it), from the same tokenisation.
    pub fn embed_counted(&self, texts: &[&str]) -> Result<(Vec<Vec<f32>>, Vec<usize>), EmbedError> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| EmbedError::Inference(format!("tokenizer: {e}")))?;
        let tokens: Vec<usize> = encodings.iter().map(|e| e.len()).collect();
        // Batches of texts of about the same token count, so that little of a batch is padding (sorting by
        // characters, as sentence-transformers does, leaves a third of the tokens padding on man-page sentences).
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| tokens[i]);
        let mut vectors = vec![Vec::new(); texts.len()];
        // Batches run in parallel on rayon's pool (`RAYON_NUM_THREADS`): a batch's element-wise work and small
        // attention products do not spread over cores, whole batches do.
        use rayon::prelude::*;
        let chunks = batches(&order, &tokens);
        let done: Vec<_> = chunks
            .par_iter()
            .map(|chunk| {
                let batch: Vec<&[u32]> = chunk.iter().map(|&i| encodings[i].get_ids()).collect();
                self.embed_batch(&batch)
            })
            .collect();
        for (chunk, out) in chunks.iter().zip(done) {
            for (&i, v) in chunk.iter().zip(out?) {
                vectors[i] = v;
            }
        }
        Ok((vectors, tokens))
    }

    /// Token ids of one batch (each with its special tokens, truncated) → one vector each: padded to the
    /// longest, encoded, mean-pooled over the real tokens, normalised.
    fn embed_batch(&self, batch: &[&[u32]]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let len = batch.iter().map(|ids| ids.len()).max().unwrap_or(0).max(1);
        let mut ids = Vec::with_capacity(batch.len() * len);
        let mut mask = Vec::with_capacity(batch.len() * len);
        for t in batch {
            ids.extend_from_slice(t);
            ids.extend(std::iter::repeat_n(PAD_ID, len - t.len()));
            mask.extend(std::iter::repeat_n(1.0f32, t.len()));
            mask.extend(std::iter::repeat_n(0.0f32, len - t.len()));
        }
        let device = Device::Cpu;
        let ids = Tensor::from_vec(ids, (batch.len(), len), &device)?;
        let mask = Tensor::from_vec(mask, (batch.len(), len), &device)?;
        let hidden = self.model.forward(&ids, &mask)?;
        // mean over the real tokens (padding masked out), as sentence-transformers' Pooling
        let summed = hidden.broadcast_mul(&mask.unsqueeze(2)?)?.sum(1)?;
        let counts = mask.sum_keepdim(1)?.clamp(1e-9, f64::MAX)?;
        let mut pooled = summed.broadcast_div(&counts)?;
        if self.info.normalized {
            // F.normalize(p=2, eps=1e-12)
            let norms = pooled.sqr()?.sum_keepdim(1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
            pooled = pooled.broadcast_div(&norms)?;
        }
        Ok(pooled.to_vec2::<f32>()?)
    }
}

/// Splits texts sorted by token count into batches: at most [`BATCH`] texts, and a new batch as soon as the next
/// text would make this one more than [`MAX_PADDING`] padding (once it has [`MIN_BATCH_TOKENS`] rows). A few
/// texts of very different lengths so become several small batches (which run in parallel) instead of one padded
/// to the longest; many texts become full batches of nearly equal lengths.
fn batches<'a>(order: &'a [usize], tokens: &[usize]) -> Vec<&'a [usize]> {
    let mut out = Vec::new();
    let (mut start, mut real) = (0, 0usize);
    for (n, &i) in order.iter().enumerate() {
        let (count, len) = (n - start, tokens[i]);
        let padded = len * (count + 1);
        let wasteful = padded as f64 > (1.0 + MAX_PADDING) * (real + len) as f64;
        let rows = if count > 0 { tokens[order[n - 1]] * count } else { 0 };
        if count > 0 && (count >= BATCH || (wasteful && rows >= MIN_BATCH_TOKENS)) {
            out.push(&order[start..n]);
            (start, real) = (n, 0);
        }
        real += len;
    }
    if start < order.len() {
        out.push(&order[start..]);
    }
    out
}

impl Embedder for LocalEmbedder {
    fn info(&self) -> &ModelInfo {
        &self.info
    }

    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError> {
        Ok(self.embed_counted(texts)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_full_or_little_padded() {
        // many texts of about the same length: full batches
        let tokens: Vec<usize> = (0..100).map(|i| 20 + i / 50).collect();
        let order: Vec<usize> = (0..100).collect();
        let b = batches(&order, &tokens);
        assert_eq!(b.iter().map(|b| b.len()).collect::<Vec<_>>(), [32, 32, 32, 4]);
        // a few texts of very different lengths: cut where padding would pass a quarter
        let tokens = [5, 6, 8, 10, 12, 15, 20, 30, 40, 60, 80, 120, 200, 256];
        let order: Vec<usize> = (0..tokens.len()).collect();
        let b = batches(&order, &tokens);
        assert_eq!(b.concat(), order, "every text once, in order");
        let padded = |b: &[&[usize]]| -> usize {
            b.iter().map(|b| b.len() * b.iter().map(|&i| tokens[i]).max().unwrap_or(0)).sum()
        };
        let real: usize = tokens.iter().sum();
        assert!(b.len() > 1 && b.iter().all(|b| b.len() <= BATCH));
        assert!(padded(&b) * 4 < padded(&[&order]) * 3, "{b:?}: {} rows for {real} tokens", padded(&b));
        assert!(batches(&[], &[]).is_empty());
    }
}
