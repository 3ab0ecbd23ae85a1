//! `rvdb-core`: the pure heart of rvdb, shared by the storage node, the gateway and the embedded mode.
//!
//! It owns no I/O: distance kernels ([`kernels`], SIMD with runtime dispatch), the exact flat index
//! ([`flat::FlatIndex`]) and its bounded top-k ([`topk::TopK`]), the store and point types with their validation
//! ([`types`]), the HNSW graph ([`hnsw`]), metadata filters with their inverted index ([`filter`],
//! [`payload`]), a shard's search engine and planner ([`engine`]), 2-D maps of samples ([`projection`]), shard ownership ([`sharding`]), and the hybrid logical clock that versions writes ([`clock::HybridClock`]).
//!
//! It also holds the decoders of everything rvdb reads back from disk or from a file a user hands it, pure and
//! free of RocksDB so that the fuzzer (`fuzz/`) builds them in seconds: the stored point and tombstone records
//! ([`record`]), the backup manifest and backup records ([`backup_format`]), the lines of a JSON Lines export
//! ([`jsonl`]), besides the HNSW snapshot reader ([`hnsw::HnswIndex::read_from`]) and the filter parser.

#[cfg(test)]
mod alloc_probe;
pub mod backup_format;
pub mod blocked;
pub mod clock;
pub mod coded;
pub mod engine;
pub mod error;
pub mod filter;
pub mod flat;
pub mod hnsw;
pub mod jsonl;
pub mod kernels;
pub mod metric;
pub mod options;
pub mod payload;
pub mod projection;
pub mod record;
pub mod sharding;
pub mod sq8;
pub mod text;
pub mod topk;
pub mod types;

pub use error::CoreError;
pub use flat::{FlatIndex, SearchHit};
pub use metric::Metric;
pub use text::TextIndexSpec;
pub use types::{EmbeddingSpec, HnswParams, IndexKind, IndexSpec, Quantization, StoreConfig};
