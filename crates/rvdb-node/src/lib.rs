//! `rvdb-node`: the storage node.
//!
//! A node keeps any number of *shard replicas*. Each lives in its own RocksDB column family (so a store can be
//! dropped in O(1), compacted and compressed on its own, and backed up by iterating one key space) and is served
//! from an in-memory index that is rebuilt from that column family when the node opens. RocksDB is the source of
//! truth: a write is applied to the index only after its `WriteBatch` is in the WAL.
//!
//! - [`record`]: the binary encoding of points and tombstones on disk.
//! - [`shard`]: one shard replica: validation, last-write-wins versions, the index, RocksDB reads and writes.
//! - [`node`]: the registry of shards on one RocksDB instance, and per-shard fault isolation: a panic while
//!   serving one shard is caught, that shard alone is reloaded from disk, the others keep serving.
//! - [`service`]: the gRPC `StorageNode` service, which only converts and delegates (and pulls a peer's changes
//!   for `CatchUp`).
//! - [`metrics`]: Prometheus counters of the node's work and gauges read from the shards at scrape time.
//! - [`disk`]: writes refused (RESOURCE_EXHAUSTED) while the data directory's free space is below a reserve.
//! - [`agent`]: registration and heartbeats with the index manager, in a cluster.

pub mod agent;
pub mod disk;
pub mod error;
pub mod metrics;
pub mod node;
pub mod record;
pub mod service;
pub mod shard;
mod slots;

pub use error::NodeError;
pub use node::{Compression, Node, NodeOptions};
pub use shard::{ShardKey, ShardStats};
