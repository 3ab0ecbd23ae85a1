//! How `search_text` retrieves: by meaning (dense vectors), by words (BM25), or both fused into one ranking.
//!
//! Hybrid search runs both retrievals with the same filter, each for `prefetch` candidates, and fuses the two
//! lists (as Qdrant's `prefetch` + `fusion` query, or Milvus' hybrid search):
//! - Reciprocal Rank Fusion: `Σ weight / (k + rank)` over the lists a document is in (rank from 1). It needs no
//!   calibration between a cosine distance and a BM25 score, which live on unrelated scales.
//! - Distribution-based score fusion: each list's scores normalised by its own mean ± 3 standard deviations to
//!   [0, 1] (a distance taken as its negation, so higher is better in both), then summed with the weights.

use serde::{Deserialize, Serialize};

use crate::error::{GatewayError, Result};

/// Which retrieval `search_text` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Nearest by the store's embedding model.
    Dense,
    /// BM25 over the stored texts.
    Keyword,
    /// Both, fused.
    Hybrid,
}

impl std::str::FromStr for SearchMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "dense" => Ok(Self::Dense),
            "keyword" | "bm25" => Ok(Self::Keyword),
            "hybrid" => Ok(Self::Hybrid),
            _ => Err(format!("unknown mode {:?}: expected dense, keyword or hybrid", rvdb_core::error::excerpt(s))),
        }
    }
}

/// How hybrid search fuses its two lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum FusionMethod {
    /// Reciprocal Rank Fusion.
    #[default]
    Rrf,
    /// Distribution-based score fusion.
    Dbsf,
}

impl std::str::FromStr for FusionMethod {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "rrf" => Ok(Self::Rrf),
            "dbsf" => Ok(Self::Dbsf),
            _ => Err(format!("unknown fusion {:?}: expected rrf or dbsf", rvdb_core::error::excerpt(s))),
        }
    }
}

/// A mode or fusion method given by name (gRPC, CLI), `None` when absent.
pub fn parse_opt<T: std::str::FromStr<Err = String>>(name: Option<&str>) -> Result<Option<T>> {
    name.map(str::parse).transpose().map_err(GatewayError::InvalidArgument)
}

/// RRF's k when none is given (the value of Cormack et al., and Qdrant's, Milvus' and Elasticsearch's default).
pub const DEFAULT_RRF_K: u32 = 60;

/// How a text query retrieves and fuses.
#[derive(Debug, Clone, PartialEq)]
pub struct TextQuery {
    /// `None`: dense on a store with an embedding model, keyword on one without.
    pub mode: Option<SearchMode>,
    pub fusion: FusionMethod,
    pub rrf_k: u32,
    pub dense_weight: f32,
    pub keyword_weight: f32,
    /// Candidates each retrieval of a hybrid search returns (`None`: `max(2k, 20)`, at most 10,000).
    pub prefetch: Option<u32>,
}

impl Default for TextQuery {
    fn default() -> Self {
        Self {
            mode: None,
            fusion: FusionMethod::Rrf,
            rrf_k: DEFAULT_RRF_K,
            dense_weight: 1.0,
            keyword_weight: 1.0,
            prefetch: None,
        }
    }
}

impl TextQuery {
    pub fn validate(&self) -> Result<()> {
        for (name, w) in [("dense_weight", self.dense_weight), ("keyword_weight", self.keyword_weight)] {
            if !w.is_finite() || !(0.0..=1000.0).contains(&w) {
                return Err(GatewayError::InvalidArgument(format!("{name} is {w}: must be between 0 and 1000")));
            }
        }
        if self.rrf_k > 100_000 {
            return Err(GatewayError::InvalidArgument(format!("rrf_k is {}: at most 100000", self.rrf_k)));
        }
        if let Some(p) = self.prefetch
            && (p == 0 || p > rvdb_core::types::MAX_K)
        {
            return Err(GatewayError::InvalidArgument(format!(
                "prefetch is {p}: must be between 1 and {}",
                rvdb_core::types::MAX_K
            )));
        }
        Ok(())
    }

    /// Candidates per retrieval for a hybrid search of `k` results.
    pub fn prefetch_for(&self, k: u32) -> u32 {
        self.prefetch.unwrap_or_else(|| (2 * k).max(20)).max(k).min(rvdb_core::types::MAX_K)
    }
}

/// One document of the fused ranking: where it stood in each list.
#[derive(Debug, Clone, PartialEq)]
pub struct Fused {
    pub id: String,
    /// Higher is better (f64, so that a sum does not depend on which list came first).
    pub score: f64,
    /// Index into the dense list, if the document is in it.
    pub dense: Option<usize>,
    /// Index into the keyword list, if the document is in it.
    pub keyword: Option<usize>,
}

/// Each value of `values` (higher is better) mapped by its list's mean ± 3 standard deviations onto [0, 1]; a
/// list whose values are all equal maps to 0.5.
fn normalised(values: &[f64]) -> Vec<f64> {
    if values.is_empty() {
        return Vec::new();
    }
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt();
    if sd.is_nan() || sd <= 0.0 {
        return vec![0.5; values.len()];
    }
    let (lo, hi) = (mean - 3.0 * sd, mean + 3.0 * sd);
    values.iter().map(|v| ((v - lo) / (hi - lo)).clamp(0.0, 1.0)).collect()
}

/// One list's per-rank values, the list, its weight, and whether it is the dense one.
type Contribution<'a, 'b> = (Vec<f64>, &'a [(&'b str, f32)], f32, bool);

/// Fuses a dense list (ids with distances, nearest first) and a keyword list (ids with BM25 scores, best first)
/// into one ranking, best first, ties by id.
pub fn fuse(dense: &[(&str, f32)], keyword: &[(&str, f32)], q: &TextQuery) -> Vec<Fused> {
    let mut by_id: std::collections::HashMap<&str, Fused> = std::collections::HashMap::new();
    let contributions: [Contribution<'_, '_>; 2] = match q.fusion {
        FusionMethod::Rrf => [
            ((1..=dense.len()).map(|r| 1.0 / (q.rrf_k as f64 + r as f64)).collect(), dense, q.dense_weight, true),
            (
                (1..=keyword.len()).map(|r| 1.0 / (q.rrf_k as f64 + r as f64)).collect(),
                keyword,
                q.keyword_weight,
                false,
            ),
        ],
        FusionMethod::Dbsf => [
            (normalised(&dense.iter().map(|d| -(d.1 as f64)).collect::<Vec<_>>()), dense, q.dense_weight, true),
            (normalised(&keyword.iter().map(|d| d.1 as f64).collect::<Vec<_>>()), keyword, q.keyword_weight, false),
        ],
    };
    for (values, list, weight, is_dense) in contributions {
        for (i, ((id, _), v)) in list.iter().zip(values).enumerate() {
            let f =
                by_id.entry(id).or_insert_with(|| Fused { id: id.to_string(), score: 0.0, dense: None, keyword: None });
            f.score += weight as f64 * v;
            if is_dense {
                f.dense.get_or_insert(i);
            } else {
                f.keyword.get_or_insert(i);
            }
        }
    }
    let mut out: Vec<Fused> = by_id.into_values().collect();
    out.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_adds_reciprocal_ranks() {
        let dense = [("a", 0.1), ("b", 0.2), ("c", 0.3)];
        let keyword = [("c", 9.0), ("d", 5.0), ("a", 1.0)];
        let q = TextQuery::default();
        let fused = fuse(&dense, &keyword, &q);
        let score = |id: &str| fused.iter().find(|f| f.id == id).unwrap().score;
        assert!((score("a") - (1.0 / 61.0 + 1.0 / 63.0)).abs() < 1e-7);
        assert!((score("c") - (1.0 / 63.0 + 1.0 / 61.0)).abs() < 1e-7);
        assert!((score("d") - 1.0 / 62.0).abs() < 1e-7);
        // a and c tie: by id.
        assert_eq!(fused.iter().map(|f| f.id.as_str()).collect::<Vec<_>>(), ["a", "c", "b", "d"]);
        let a = &fused[0];
        assert_eq!((a.dense, a.keyword), (Some(0), Some(2)));
        assert_eq!((fused[3].dense, fused[3].keyword), (None, Some(1)));
        // A weight of 0 leaves a list's order alone.
        let only_keyword = fuse(&dense, &keyword, &TextQuery { dense_weight: 0.0, ..q });
        assert_eq!(only_keyword.iter().take(3).map(|f| f.id.as_str()).collect::<Vec<_>>(), ["c", "d", "a"]);
    }

    #[test]
    fn dbsf_normalises_each_list() {
        let dense = [("a", 0.1), ("b", 0.5)];
        let keyword = [("b", 20.0), ("c", 10.0)];
        let fused = fuse(&dense, &keyword, &TextQuery { fusion: FusionMethod::Dbsf, ..Default::default() });
        // Two values: mean ± sd, so ±3 sd maps them to 1/2 ± 1/6.
        let score = |id: &str| fused.iter().find(|f| f.id == id).unwrap().score;
        assert!((score("a") - 2.0 / 3.0).abs() < 1e-6);
        assert!((score("b") - (1.0 / 3.0 + 2.0 / 3.0)).abs() < 1e-6);
        assert!((score("c") - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(fused[0].id, "b");
        assert_eq!(normalised(&[3.0, 3.0]), [0.5, 0.5]);
    }

    #[test]
    fn queries_are_checked() {
        assert!(TextQuery::default().validate().is_ok());
        assert!(TextQuery { dense_weight: -1.0, ..Default::default() }.validate().is_err());
        assert!(TextQuery { keyword_weight: f32::NAN, ..Default::default() }.validate().is_err());
        assert!(TextQuery { prefetch: Some(0), ..Default::default() }.validate().is_err());
        assert_eq!(TextQuery::default().prefetch_for(5), 20);
        assert_eq!(TextQuery::default().prefetch_for(50), 100);
        assert_eq!(TextQuery { prefetch: Some(3), ..Default::default() }.prefetch_for(5), 5);
        assert_eq!("BM25".parse::<SearchMode>(), Ok(SearchMode::Keyword));
        assert!("sparse".parse::<SearchMode>().is_err());
    }
}
