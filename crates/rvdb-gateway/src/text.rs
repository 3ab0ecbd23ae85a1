//! Texts in, texts out, on a store bound to an embedding model: the domain of `insert_texts` and `search_text`.
//!
//! A document's text is stored with its point, in the reserved metadata key [`TEXT_KEY`], so it is written in the
//! same atomic batch as the vector and travels with the point everywhere points go (WAL, replicas and catch-up,
//! backups, exports, filters) with no second record or format. Texts are embedded here, in the gateway, by the
//! model the store's config names (one model per store, fixed at creation), in one batch per request.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::{GatewayError, Result};
use crate::gateway::{Gateway, PointInput, SearchHit, SearchParams, UpsertSummary};

/// The metadata key that holds a document's text.
pub const TEXT_KEY: &str = "_text";

/// Longest text a document may have: the model reads only its first tokens (256 for all-MiniLM-L6-v2); the rest
/// is stored and returned.
pub const MAX_TEXT_BYTES: usize = 64 * 1024;

/// A document to store.
#[derive(Debug, Clone)]
pub struct Document {
    /// `None`: derived from the text, so the same text is stored once.
    pub id: Option<String>,
    pub text: String,
    /// A JSON object or `Null`.
    pub metadata: Value,
}

/// The id of a document given without one: the first 128 bits of the SHA-256 of its text, in hex.
pub fn content_id(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    rvdb_core::types::hex(&digest[..16])
}

/// A search hit with its text taken out of the metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct TextHit {
    pub id: String,
    pub distance: f32,
    pub text: Option<String>,
    pub metadata: Option<Value>,
    pub vector: Option<Vec<f32>>,
}

impl Gateway {
    /// The embedding model of `store`, or why it takes no text.
    async fn text_model(&self, store: &str) -> Result<rvdb_core::EmbeddingSpec> {
        let route = self.resolve(store).await?;
        route.config.embedding.clone().ok_or_else(|| {
            GatewayError::InvalidArgument(format!(
                "store '{store}' has no embedding model, so it takes vectors, not texts: create a store with \
                 `embedding` (e.g. {{\"model\": \"{}\"}}) to store texts",
                rvdb_embed::DEFAULT_MODEL
            ))
        })
    }

    /// Embeds the documents with the store's model (one batch) and upserts them with their texts. Everything is
    /// checked before anything is embedded or written; `progress` as in [`Gateway::upsert`]. Returns the ids
    /// written, in order.
    pub async fn insert_texts(
        &self,
        store: &str,
        documents: Vec<Document>,
        progress: impl FnMut(u64, u64) -> bool,
    ) -> Result<(UpsertSummary, Vec<String>)> {
        let spec = self.text_model(store).await?;
        if documents.is_empty() {
            return Err(GatewayError::InvalidArgument("no documents given: send at least one".into()));
        }
        let mut ids = Vec::with_capacity(documents.len());
        let mut metadata = Vec::with_capacity(documents.len());
        let mut texts = Vec::with_capacity(documents.len());
        for (i, d) in documents.into_iter().enumerate() {
            if d.text.trim().is_empty() {
                return Err(GatewayError::InvalidArgument(format!("documents[{i}].text is empty")));
            }
            if d.text.len() > MAX_TEXT_BYTES {
                return Err(GatewayError::InvalidArgument(format!(
                    "documents[{i}].text has {} bytes: at most {MAX_TEXT_BYTES}",
                    d.text.len()
                )));
            }
            let mut meta = match d.metadata {
                Value::Null => serde_json::Map::new(),
                Value::Object(m) => m,
                _ => {
                    return Err(GatewayError::InvalidArgument(format!(
                        "documents[{i}].metadata must be a JSON object"
                    )));
                }
            };
            if meta.contains_key(TEXT_KEY) {
                return Err(GatewayError::InvalidArgument(format!(
                    "documents[{i}].metadata has the key '{TEXT_KEY}', which holds the text: use another key"
                )));
            }
            ids.push(d.id.unwrap_or_else(|| content_id(&d.text)));
            meta.insert(TEXT_KEY.into(), Value::String(d.text.clone()));
            metadata.push(meta);
            texts.push(d.text);
        }
        let vectors = self.embedders().embed(&spec, texts).await?;
        let points = ids
            .iter()
            .zip(vectors)
            .zip(metadata)
            .map(|((id, vector), meta)| PointInput { id: id.clone(), vector, metadata: Value::Object(meta) })
            .collect();
        let summary = self.upsert(store, points, progress).await?;
        Ok((summary, ids))
    }

    /// The documents nearest to `query`, embedded with the store's model; `with_text` returns each hit's text.
    pub async fn search_text(
        &self,
        store: &str,
        query: String,
        params: &SearchParams,
        with_text: bool,
    ) -> Result<Vec<TextHit>> {
        let spec = self.text_model(store).await?;
        if query.trim().is_empty() {
            return Err(GatewayError::InvalidArgument("query is empty: send the words to search for".into()));
        }
        if query.len() > MAX_TEXT_BYTES {
            return Err(GatewayError::InvalidArgument(format!(
                "query has {} bytes: at most {MAX_TEXT_BYTES}",
                query.len()
            )));
        }
        let vector = self.embedders().embed(&spec, vec![query]).await?.pop().unwrap_or_default();
        let wanted_metadata = params.with_metadata;
        let params = SearchParams { with_metadata: wanted_metadata || with_text, ..params.clone() };
        let hits = self.search(store, vector, &params).await?;
        Ok(hits.into_iter().map(|h| split_text(h, with_text, wanted_metadata)).collect())
    }
}

fn split_text(hit: SearchHit, with_text: bool, with_metadata: bool) -> TextHit {
    let mut metadata = hit.metadata;
    let text = match metadata.as_mut() {
        Some(Value::Object(m)) => match m.remove(TEXT_KEY) {
            Some(Value::String(t)) => Some(t),
            _ => None,
        },
        _ => None,
    };
    TextHit {
        id: hit.id,
        distance: hit.distance,
        text: text.filter(|_| with_text),
        metadata: metadata.filter(|_| with_metadata),
        vector: hit.vector,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ids_are_stable_and_distinct() {
        assert_eq!(content_id("a"), content_id("a"));
        assert_ne!(content_id("a"), content_id("b"));
        assert_eq!(content_id("abc"), "ba7816bf8f01cfea414140de5dae2223");
    }

    #[test]
    fn the_text_is_taken_out_of_the_metadata() {
        let hit = SearchHit {
            id: "x".into(),
            distance: 0.5,
            metadata: Some(serde_json::json!({"_text": "hello", "lang": "en"})),
            vector: None,
        };
        let h = split_text(hit.clone(), true, true);
        assert_eq!(h.text.as_deref(), Some("hello"));
        assert_eq!(h.metadata, Some(serde_json::json!({"lang": "en"})));
        let h = split_text(hit, false, false);
        assert_eq!((h.text, h.metadata), (None, None));
    }
}
