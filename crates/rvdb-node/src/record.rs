//! On-disk encoding of one key of a shard's column family (the key is the point id's UTF-8 bytes).
//!
//! ```text
//! live:      [1u8][version u64 LE][dim u32 LE][dim × f32 LE][metadata JSON bytes …]
//! tombstone: [0u8][version u64 LE]
//! ```
//! The codec itself lives in [`rvdb_core::record`] (pure, without RocksDB, so that the fuzzer can build it
//! quickly); this module keeps its name inside the node.

pub use rvdb_core::record::*;
