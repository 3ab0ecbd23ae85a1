//! Conversions between protobuf messages and `rvdb-core` domain types. Unset / zero fields take their defaults
//! here (1 shard, 1 replica, flat index, default HNSW parameters) so every service defaults alike.

use rvdb_core::{CoreError, HnswParams, IndexKind, IndexSpec, Metric, Quantization, StoreConfig};

use crate::v1 as pb;

/// A node's state as the APIs and metrics name it: `up`, `down`, `catching_up` (`unknown` for a value this
/// version does not know).
pub fn node_state_name(state: i32) -> &'static str {
    match pb::NodeState::try_from(state) {
        Ok(pb::NodeState::Up) => "up",
        Ok(pb::NodeState::Down) => "down",
        Ok(pb::NodeState::CatchingUp) => "catching_up",
        _ => "unknown",
    }
}

pub fn metric_from_pb(m: i32) -> Result<Metric, CoreError> {
    match pb::Metric::try_from(m) {
        Ok(pb::Metric::Cosine) => Ok(Metric::Cosine),
        Ok(pb::Metric::Euclidean) => Ok(Metric::Euclidean),
        Ok(pb::Metric::Manhattan) => Ok(Metric::Manhattan),
        Ok(pb::Metric::Dot) => Ok(Metric::Dot),
        Ok(pb::Metric::Unspecified) => {
            Err(CoreError::InvalidConfig("metric is required: one of cosine, euclidean, manhattan, dot".into()))
        }
        Err(_) => Err(CoreError::UnknownMetric(format!("enum value {m}"))),
    }
}

pub fn metric_to_pb(m: Metric) -> pb::Metric {
    match m {
        Metric::Cosine => pb::Metric::Cosine,
        Metric::Euclidean => pb::Metric::Euclidean,
        Metric::Manhattan => pb::Metric::Manhattan,
        Metric::Dot => pb::Metric::Dot,
    }
}

/// Protobuf config → validated domain config.
pub fn config_from_pb(c: pb::StoreConfig) -> Result<StoreConfig, CoreError> {
    let metric = metric_from_pb(c.metric)?;
    let index = c.index.unwrap_or_default();
    let kind = match pb::IndexKind::try_from(index.kind) {
        Ok(pb::IndexKind::Hnsw) => IndexKind::Hnsw,
        Ok(pb::IndexKind::Flat) | Ok(pb::IndexKind::Unspecified) => IndexKind::Flat,
        Err(_) => return Err(CoreError::InvalidConfig("index.kind must be flat or hnsw".into())),
    };
    let quantization = match pb::Quantization::try_from(index.quantization) {
        Ok(pb::Quantization::Sq8) => Quantization::Sq8,
        Ok(pb::Quantization::None) => Quantization::None,
        Err(_) => return Err(CoreError::InvalidConfig("index.quantization must be none or sq8".into())),
    };
    let d = HnswParams::default();
    let hnsw = index.hnsw.map_or(d, |h| HnswParams {
        m: if h.m == 0 { d.m } else { h.m },
        ef_construction: if h.ef_construction == 0 { d.ef_construction } else { h.ef_construction },
        ef_search: if h.ef_search == 0 { d.ef_search } else { h.ef_search },
    });
    let config = StoreConfig {
        name: c.name,
        dimension: c.dimension,
        metric,
        index: IndexSpec { kind, hnsw, quantization },
        shards: c.shards.max(1),
        replication_factor: c.replication_factor.max(1),
        write_consistency: c.write_consistency,
        embedding: c.embedding.map(|e| rvdb_core::EmbeddingSpec {
            provider: e.provider,
            model: e.model,
            dimension: e.dimension,
            normalized: e.normalized,
        }),
        text_index: c.text_index.map(text_index_from_pb).unwrap_or_default(),
    };
    config.validate()?;
    Ok(config)
}

pub fn config_to_pb(c: &StoreConfig) -> pb::StoreConfig {
    pb::StoreConfig {
        name: c.name.clone(),
        dimension: c.dimension,
        metric: metric_to_pb(c.metric) as i32,
        index: Some(pb::IndexSpec {
            kind: match c.index.kind {
                IndexKind::Flat => pb::IndexKind::Flat,
                IndexKind::Hnsw => pb::IndexKind::Hnsw,
            } as i32,
            hnsw: Some(pb::HnswParams {
                m: c.index.hnsw.m,
                ef_construction: c.index.hnsw.ef_construction,
                ef_search: c.index.hnsw.ef_search,
            }),
            quantization: match c.index.quantization {
                Quantization::None => pb::Quantization::None,
                Quantization::Sq8 => pb::Quantization::Sq8,
            } as i32,
        }),
        shards: c.shards,
        replication_factor: c.replication_factor,
        write_consistency: c.write_consistency,
        embedding: c.embedding.as_ref().map(|e| pb::EmbeddingSpec {
            provider: e.provider.clone(),
            model: e.model.clone(),
            dimension: e.dimension,
            normalized: e.normalized,
        }),
        text_index: (!c.text_index.is_default()).then(|| text_index_to_pb(&c.text_index)),
    }
}

pub fn text_index_from_pb(t: pb::TextIndexSpec) -> rvdb_core::TextIndexSpec {
    let d = rvdb_core::TextIndexSpec::default();
    rvdb_core::TextIndexSpec {
        stemmer: (!t.stemmer.is_empty()).then_some(t.stemmer),
        stop_words_language: (!t.stop_words_language.is_empty()).then_some(t.stop_words_language),
        stop_words: t.stop_words,
        k1: t.k1.unwrap_or(d.k1),
        b: t.b.unwrap_or(d.b),
    }
}

pub fn text_index_to_pb(t: &rvdb_core::TextIndexSpec) -> pb::TextIndexSpec {
    pb::TextIndexSpec {
        stemmer: t.stemmer.clone().unwrap_or_default(),
        stop_words_language: t.stop_words_language.clone().unwrap_or_default(),
        stop_words: t.stop_words.clone(),
        k1: Some(t.k1),
        b: Some(t.b),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_round_trip_and_default() {
        let mut c = StoreConfig::new("s", 8, Metric::Manhattan);
        c.shards = 4;
        assert_eq!(config_from_pb(config_to_pb(&c)).unwrap(), c);
        let minimal =
            pb::StoreConfig { name: "m".into(), dimension: 3, metric: pb::Metric::Dot as i32, ..Default::default() };
        let d = config_from_pb(minimal).unwrap();
        assert_eq!((d.shards, d.replication_factor, d.index.kind), (1, 1, IndexKind::Flat));
        let unset = pb::StoreConfig { name: "m".into(), dimension: 3, metric: 0, ..Default::default() };
        assert!(matches!(config_from_pb(unset), Err(CoreError::InvalidConfig(_))));
        let bad = pb::StoreConfig { name: "m".into(), dimension: 3, metric: 99, ..Default::default() };
        assert!(matches!(config_from_pb(bad), Err(CoreError::UnknownMetric(_))));
    }
}
