//! Texts in, texts out, on a store bound to an embedding model: the domain of `insert_texts` and `search_text`.
//!
//! A document's text is stored with its point, in the reserved metadata key [`TEXT_KEY`], so it is written in the
//! same atomic batch as the vector and travels with the point everywhere points go (WAL, replicas and catch-up,
//! backups, exports, filters) with no second record or format. Texts are embedded here, in the gateway, by the
//! model the store's config names (one model per store, fixed at creation), in one batch per request.

use serde_json::Value;
use sha2::{Digest, Sha256};

use rvdb_core::types::validate_k;
use rvdb_proto::v1 as pb;

use crate::error::{GatewayError, Result};
use crate::gateway::{Gateway, PointInput, SearchHit, SearchParams, UpsertSummary};
use crate::hybrid::{SearchMode, TextQuery, fuse};

/// The metadata key that holds a document's text (indexed for keyword search on the nodes).
pub use rvdb_core::text::TEXT_KEY;

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

/// Which retrieval found a hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Dense,
    Keyword,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dense => "dense",
            Source::Keyword => "keyword",
        }
    }
}

/// A text search hit with its text taken out of the metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct TextHit {
    pub id: String,
    /// The dense retrieval's distance (lower is closer), when it found the hit.
    pub distance: Option<f32>,
    /// The keyword retrieval's BM25 score (higher is better), when it found the hit.
    pub bm25: Option<f32>,
    /// A hybrid search's fused score (higher is better).
    pub score: Option<f32>,
    /// The retrievals that found it.
    pub sources: Vec<Source>,
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

    /// The documents that best answer `query`: nearest by the store's model (dense), best by BM25 over the stored
    /// texts (keyword), or both fused (hybrid), as `how` says; filters apply inside every retrieval.
    /// `with_text` returns each hit's text.
    pub async fn search_text(
        &self,
        store: &str,
        query: String,
        params: &SearchParams,
        with_text: bool,
        how: &TextQuery,
    ) -> Result<Vec<TextHit>> {
        how.validate()?;
        if query.trim().is_empty() {
            return Err(GatewayError::InvalidArgument("query is empty: send the words to search for".into()));
        }
        if query.len() > MAX_TEXT_BYTES {
            return Err(GatewayError::InvalidArgument(format!(
                "query has {} bytes: at most {MAX_TEXT_BYTES}",
                query.len()
            )));
        }
        let route = self.resolve(store).await?;
        let mode =
            how.mode.unwrap_or(if route.config.embedding.is_some() { SearchMode::Dense } else { SearchMode::Keyword });
        let wanted_metadata = params.with_metadata;
        let fetch = SearchParams { with_metadata: wanted_metadata || with_text, ..params.clone() };
        match mode {
            SearchMode::Dense => {
                let hits = self.dense_text(store, query, &fetch).await?;
                Ok(hits.into_iter().map(|h| split_text(from_dense(h), with_text, wanted_metadata)).collect())
            }
            SearchMode::Keyword => {
                if params.score_threshold.is_some() {
                    return Err(GatewayError::InvalidArgument(
                        "score_threshold is a distance, for dense retrieval: mode keyword ranks by BM25 score".into(),
                    ));
                }
                let hits = self.keyword_search(store, &query, &fetch).await?;
                Ok(hits.into_iter().map(|h| split_text(from_keyword(h), with_text, wanted_metadata)).collect())
            }
            SearchMode::Hybrid => {
                let prefetch = SearchParams { k: how.prefetch_for(params.k), ..fetch };
                let keyword_params = SearchParams { score_threshold: None, ..prefetch.clone() };
                let (dense, keyword) = tokio::try_join!(
                    self.dense_text(store, query.clone(), &prefetch),
                    self.keyword_search(store, &query, &keyword_params)
                )?;
                let fused = {
                    let d: Vec<(&str, f32)> = dense.iter().map(|h| (h.id.as_str(), h.distance)).collect();
                    let kw: Vec<(&str, f32)> = keyword.iter().map(|h| (h.id.as_str(), h.score)).collect();
                    fuse(&d, &kw, how)
                };
                let mut dense: Vec<Option<SearchHit>> = dense.into_iter().map(Some).collect();
                let mut keyword: Vec<Option<KeywordResult>> = keyword.into_iter().map(Some).collect();
                Ok(fused
                    .into_iter()
                    .take(params.k as usize)
                    .filter_map(|f| {
                        let d = f.dense.and_then(|i| dense[i].take());
                        let kw = f.keyword.and_then(|i| keyword[i].take());
                        let mut hit = match (d, kw) {
                            (Some(d), kw) => {
                                let mut h = from_dense(d);
                                if let Some(kw) = kw {
                                    h.bm25 = Some(kw.score);
                                    h.sources.push(Source::Keyword);
                                }
                                h
                            }
                            (None, Some(kw)) => from_keyword(kw),
                            (None, None) => return None,
                        };
                        hit.score = Some(f.score as f32);
                        Some(split_text(hit, with_text, wanted_metadata))
                    })
                    .collect())
            }
        }
    }

    /// The dense retrieval of a text query: the query embedded by the store's model, then a k-NN search.
    async fn dense_text(&self, store: &str, query: String, params: &SearchParams) -> Result<Vec<SearchHit>> {
        let spec = self.text_model(store).await?;
        let vector = self.embedders().embed(&spec, vec![query]).await?.pop().unwrap_or_default();
        self.search(store, vector, params).await
    }

    /// The `k` documents that score highest by BM25 for `query`, analysed by the store's analyzer, among those
    /// the filter takes, best first, ties by id. A sharded store first gathers the collection's statistics from
    /// one replica of every shard, so a document scores as it would in one shard.
    pub async fn keyword_search(&self, store: &str, query: &str, params: &SearchParams) -> Result<Vec<KeywordResult>> {
        let route = self.resolve(store).await?;
        let k = params.k;
        validate_k(k).map_err(|e| GatewayError::InvalidArgument(format!("k: {e}")))?;
        let filter_json = crate::points::filter_text(params.filter.as_ref())?;
        let query = route.analyzer.query(query);
        if query.is_empty() {
            return Ok(Vec::new());
        }
        let (terms, weights): (Vec<String>, Vec<u32>) = query.into_iter().unzip();
        let collection = if route.read_shards() > 1 {
            let request = |shard| pb::TextStatsRequest { shard: Some(shard_id(store, shard)), terms: terms.clone() };
            let mut total = pb::TextStatsResponse { document_frequency: vec![0; terms.len()], ..Default::default() };
            for s in self
                .read_every_shard(&route, "text statistics", request, |c, req| async move { c.text_stats(req).await })
                .await?
            {
                total.documents += s.documents;
                total.total_length += s.total_length;
                for (a, b) in total.document_frequency.iter_mut().zip(s.document_frequency) {
                    *a += b;
                }
            }
            Some(total)
        } else {
            None
        };
        let request = |shard| pb::KeywordSearchRequest {
            shard: Some(shard_id(store, shard)),
            terms: terms.clone(),
            weights: weights.clone(),
            k,
            filter_json: filter_json.clone(),
            with_vector: params.with_vector,
            with_metadata: params.with_metadata,
            collection: collection.clone(),
            layout_shards: route.layout_shards(),
        };
        let mut all: Vec<pb::KeywordHit> = self
            .read_every_shard(&route, "keyword search", request, |c, req| async move {
                c.keyword_search(req).await.map(|r| r.results)
            })
            .await?
            .into_iter()
            .flatten()
            .collect();
        all.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
        all.dedup_by(|a, b| a.id == b.id); // as in `Gateway::search`
        all.truncate(k as usize);
        Ok(all
            .into_iter()
            .map(|h| KeywordResult {
                id: h.id,
                score: h.score,
                metadata: params.with_metadata.then(|| serde_json::from_str(&h.metadata_json).unwrap_or(Value::Null)),
                vector: params.with_vector.then_some(h.vector),
            })
            .collect())
    }
}

/// A keyword hit as the gateway returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordResult {
    pub id: String,
    /// BM25: higher is better.
    pub score: f32,
    pub metadata: Option<Value>,
    pub vector: Option<Vec<f32>>,
}

fn shard_id(store: &str, shard: u32) -> pb::ShardId {
    pb::ShardId { store: store.to_string(), shard }
}

fn from_dense(h: SearchHit) -> TextHit {
    TextHit {
        id: h.id,
        distance: Some(h.distance),
        bm25: None,
        score: None,
        sources: vec![Source::Dense],
        text: None,
        metadata: h.metadata,
        vector: h.vector,
    }
}

fn from_keyword(h: KeywordResult) -> TextHit {
    TextHit {
        id: h.id,
        distance: None,
        bm25: Some(h.score),
        score: None,
        sources: vec![Source::Keyword],
        text: None,
        metadata: h.metadata,
        vector: h.vector,
    }
}

/// `hit` with its text moved out of its metadata (kept when `with_text`), and the metadata kept when asked for.
fn split_text(mut hit: TextHit, with_text: bool, with_metadata: bool) -> TextHit {
    let text = match hit.metadata.as_mut() {
        Some(Value::Object(m)) => match m.remove(TEXT_KEY) {
            Some(Value::String(t)) => Some(t),
            _ => None,
        },
        _ => None,
    };
    hit.text = text.filter(|_| with_text);
    if !with_metadata {
        hit.metadata = None;
    }
    hit
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
        let hit = from_dense(SearchHit {
            id: "x".into(),
            distance: 0.5,
            metadata: Some(serde_json::json!({"_text": "hello", "lang": "en"})),
            vector: None,
        });
        let h = split_text(hit.clone(), true, true);
        assert_eq!(h.text.as_deref(), Some("hello"));
        assert_eq!(h.metadata, Some(serde_json::json!({"lang": "en"})));
        let h = split_text(hit, false, false);
        assert_eq!((h.text, h.metadata), (None, None));
    }
}
