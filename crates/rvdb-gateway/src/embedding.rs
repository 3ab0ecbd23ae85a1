//! The embedding models the gateway runs: a store bound to a model ([`rvdb_core::EmbeddingSpec`], fixed at
//! creation) has its texts embedded here, and `POST /v1/embeddings` serves the same models to other programs.
//!
//! Local models are directories under the models directory (`GatewayOptions::models_dir`; by default where the
//! README's commands install all-MiniLM-L6-v2), loaded on first use and kept. Inference is CPU-bound and runs on
//! the blocking pool, never on the async workers.
//!
//! The `openai` provider is the one OpenAI-compatible endpoint the server is configured with
//! (`GatewayOptions::openai`: `--openai-base-url`, the key from a file or the environment). A store bound to it
//! records the provider, the model name and the dimension and normalisation its first vector showed when the
//! store was created (a probe request); the endpoint and the key are the server's, never in the catalog. Every
//! later answer is held to that dimension.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rvdb_core::EmbeddingSpec;
use rvdb_core::error::excerpt;
use rvdb_embed::{EmbedError, Embedder, LocalEmbedder, OpenAiClient};

use crate::error::{GatewayError, Result};

/// The provider of in-process models.
pub const LOCAL: &str = "local";
/// The provider of an OpenAI-compatible endpoint.
pub const OPENAI: &str = "openai";

/// The text a store bound to a remote model is probed with at creation, to learn its dimension.
const PROBE: &str = "rvdb: the dimension of this model";

#[derive(Debug)]
pub struct Embedders {
    models_dir: PathBuf,
    local: Mutex<HashMap<String, Arc<LocalEmbedder>>>,
    openai: Option<OpenAiClient>,
}

/// A provider's failure as the gateway reports it: unreachable or overloaded = `Unavailable` (retry later), a
/// refusal of the request (an unknown model) = `InvalidArgument` with the provider's words, anything else a
/// backend error.
fn from_embed(e: EmbedError) -> GatewayError {
    match e {
        EmbedError::Unavailable(m) => GatewayError::Unavailable(m),
        EmbedError::InvalidInput(m) => GatewayError::InvalidArgument(m),
        e @ EmbedError::Provider { status: 400 | 404 | 422, .. } => GatewayError::InvalidArgument(e.to_string()),
        e @ EmbedError::Provider { status: 401 | 403, .. } => {
            GatewayError::Backend(format!("{e} (check the server's API key for the provider)"))
        }
        e => GatewayError::Backend(e.to_string()),
    }
}

impl Embedders {
    pub fn new(models_dir: PathBuf, openai: Option<OpenAiClient>) -> Self {
        Self { models_dir, local: Mutex::new(HashMap::new()), openai }
    }

    fn openai(&self) -> Result<&OpenAiClient> {
        self.openai.as_ref().ok_or_else(|| {
            GatewayError::InvalidArgument(
                "embedding provider \"openai\" is not configured on this server: start it with --openai-base-url \
                 (and the key in RVDB_OPENAI_API_KEY or --openai-api-key-file)"
                    .into(),
            )
        })
    }

    pub fn models_dir(&self) -> &std::path::Path {
        &self.models_dir
    }

    /// The local model `name`, loaded on first use. Blocking (reads ~90 MB the first time).
    fn local_blocking(&self, name: &str) -> Result<Arc<LocalEmbedder>> {
        // a directory in the models directory: the file-name rule of backups and exports (no paths)
        crate::backup::validate_file_name("embedding model", name)?;
        let mut models = self.local.lock().map_err(|_| GatewayError::Backend("embedding models lock".into()))?;
        if let Some(m) = models.get(name) {
            return Ok(m.clone());
        }
        let dir = self.models_dir.join(name);
        if !dir.join("model.safetensors").is_file() {
            return Err(GatewayError::NotFound(format!(
                "embedding model '{name}' is not installed: no {}/model.safetensors (deploy/setup.sh installs {} \
                 there; other sentence-transformers BERT models can be copied next to it)",
                dir.display(),
                rvdb_embed::DEFAULT_MODEL
            )));
        }
        let model = Arc::new(LocalEmbedder::load(&dir).map_err(|e| GatewayError::Backend(e.to_string()))?);
        models.insert(name.to_string(), model.clone());
        Ok(model)
    }

    async fn local(self: &Arc<Self>, name: &str) -> Result<Arc<LocalEmbedder>> {
        let (me, name) = (self.clone(), name.to_string());
        tokio::task::spawn_blocking(move || me.local_blocking(&name))
            .await
            .map_err(|e| GatewayError::Backend(format!("model loading failed: {e}")))?
    }

    /// What a store created with `provider` / `model` records: the model's name, dimension and normalisation.
    pub async fn spec(self: &Arc<Self>, provider: &str, model: &str) -> Result<EmbeddingSpec> {
        check_provider(provider)?;
        if provider == OPENAI {
            if model.is_empty() || model.len() > 256 {
                return Err(GatewayError::InvalidArgument("embedding model: 1 to 256 characters".into()));
            }
            let probe = self.openai()?.embed(model, &[PROBE.to_string()]).await.map_err(from_embed)?;
            let v = probe.vectors.first().ok_or_else(|| GatewayError::Backend("the probe got no vector".into()))?;
            let norm = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum::<f64>().sqrt();
            return Ok(EmbeddingSpec {
                provider: OPENAI.into(),
                model: model.to_string(),
                dimension: v.len() as u32,
                normalized: (norm - 1.0).abs() < 1e-3,
            });
        }
        // a store naming a model that is not installed is a bad argument of the create, not a missing resource
        let m = self.local(model).await.map_err(|e| match e {
            GatewayError::NotFound(m) => GatewayError::InvalidArgument(m),
            other => other,
        })?;
        let info = m.info();
        Ok(EmbeddingSpec {
            provider: LOCAL.into(),
            model: info.name.clone(),
            dimension: info.dimension,
            normalized: info.normalized,
        })
    }

    /// One vector per text with the model of `spec`, checked against the dimension it records.
    pub async fn embed(self: &Arc<Self>, spec: &EmbeddingSpec, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let (vectors, _) = self.embed_counted(&spec.provider, &spec.model, texts).await?;
        if let Some(v) = vectors.iter().find(|v| v.len() != spec.dimension as usize) {
            return Err(GatewayError::Backend(format!(
                "embedding model '{}' ({}) made a {}-d vector, but the store records {} dimensions: the model \
                 behind the provider changed; nothing was written",
                spec.model,
                spec.provider,
                v.len(),
                spec.dimension
            )));
        }
        Ok(vectors)
    }

    /// Vectors and the number of tokens the texts counted (after truncation).
    pub async fn embed_counted(
        self: &Arc<Self>,
        provider: &str,
        model: &str,
        texts: Vec<String>,
    ) -> Result<(Vec<Vec<f32>>, usize)> {
        check_provider(provider)?;
        if provider == OPENAI {
            let out = self.openai()?.embed(model, &texts).await.map_err(from_embed)?;
            if out.vectors.len() != texts.len() {
                return Err(GatewayError::Backend(format!(
                    "embedding provider gave {} vectors for {} texts",
                    out.vectors.len(),
                    texts.len()
                )));
            }
            return Ok((out.vectors, out.tokens));
        }
        let m = self.local(model).await?;
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            m.embed_counted(&refs).map(|(v, tokens)| (v, tokens.iter().sum())).map_err(from_embed)
        })
        .await
        .map_err(|e| GatewayError::Backend(format!("embedding failed: {e}")))?
    }
}

/// Refuses a provider rvdb does not have.
fn check_provider(provider: &str) -> Result<()> {
    if provider == LOCAL || provider == OPENAI {
        return Ok(());
    }
    Err(GatewayError::InvalidArgument(format!(
        "embedding provider {:?} does not exist: use \"local\" (in the server's process) or \"openai\" (the \
         server's OpenAI-compatible endpoint)",
        excerpt(provider)
    )))
}
