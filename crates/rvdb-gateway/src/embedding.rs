//! The embedding models the gateway runs: a store bound to a model ([`rvdb_core::EmbeddingSpec`], fixed at
//! creation) has its texts embedded here, and `POST /v1/embeddings` serves the same models to other programs.
//!
//! Local models are directories under the models directory (`GatewayOptions::models_dir`; by default where the
//! README's commands install all-MiniLM-L6-v2), loaded on first use and kept. Inference is CPU-bound and runs on
//! the blocking pool, never on the async workers.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rvdb_core::EmbeddingSpec;
use rvdb_core::error::excerpt;
use rvdb_embed::{Embedder, LocalEmbedder};

use crate::error::{GatewayError, Result};

/// The provider of in-process models.
pub const LOCAL: &str = "local";

#[derive(Debug)]
pub struct Embedders {
    models_dir: PathBuf,
    local: Mutex<HashMap<String, Arc<LocalEmbedder>>>,
}

impl Embedders {
    pub fn new(models_dir: PathBuf) -> Self {
        Self { models_dir, local: Mutex::new(HashMap::new()) }
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
                "embedding model '{}' made a {}-d vector, but the store records {} dimensions",
                spec.model,
                v.len(),
                spec.dimension
            )));
        }
        Ok(vectors)
    }

    /// Vectors and the number of tokens each text counted (after truncation).
    pub async fn embed_counted(
        self: &Arc<Self>,
        provider: &str,
        model: &str,
        texts: Vec<String>,
    ) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        check_provider(provider)?;
        let m = self.local(model).await?;
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            m.embed_counted(&refs).map_err(|e| GatewayError::Backend(e.to_string()))
        })
        .await
        .map_err(|e| GatewayError::Backend(format!("embedding failed: {e}")))?
    }
}

/// Refuses a provider this server does not run.
fn check_provider(provider: &str) -> Result<()> {
    if provider == LOCAL {
        return Ok(());
    }
    Err(GatewayError::InvalidArgument(format!(
        "embedding provider {:?} is not available on this server: use \"local\"",
        excerpt(provider)
    )))
}
