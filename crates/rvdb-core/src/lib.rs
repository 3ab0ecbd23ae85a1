//! `rvdb-core`: the pure heart of rvdb, shared by the storage node, the gateway and the embedded mode.
//!
//! It owns no I/O: distance kernels ([`kernels`], SIMD with runtime dispatch), the exact flat index
//! ([`flat::FlatIndex`]) and its bounded top-k ([`topk::TopK`]), the store and point types with their validation
//! ([`types`]), the HNSW graph ([`hnsw`]), metadata filters with their inverted index ([`filter`],
//! [`payload`]), a shard's search engine and planner ([`engine`]), and the hybrid logical clock that versions writes ([`clock::HybridClock`]).

pub mod blocked;
pub mod clock;
pub mod coded;
pub mod engine;
pub mod error;
pub mod filter;
pub mod flat;
pub mod hnsw;
pub mod kernels;
pub mod metric;
pub mod options;
pub mod payload;
pub mod sq8;
pub mod text;
pub mod topk;
pub mod types;

pub use error::CoreError;
pub use flat::{FlatIndex, SearchHit};
pub use metric::Metric;
pub use text::TextIndexSpec;
pub use types::{EmbeddingSpec, HnswParams, IndexKind, IndexSpec, Quantization, StoreConfig};
