//! `rvdb-manager`: the index manager of an rvdb cluster.
//!
//! It owns the metadata, never the data: the catalog of stores (dimension, metric, index and quantization
//! settings, shard count, replication factor, write consistency) and where each shard's replicas live, the list
//! of storage nodes and whether each is up, and the routing table built from both, with a version that gateways
//! watch (server-streaming gRPC) or poll. Data writes go from gateways straight to the nodes.
//!
//! - [`manager`]: the state, its persistence in RocksDB, placement, the membership monitor and replica catch-up.
//! - [`service`]: the gRPC `IndexManager` service, and [`LocalManager`], the same handlers called in process.
//!
//! `rvdb serve` runs this manager in process beside one storage node and the gateway (the same catalog,
//! placement, limits and repair as a cluster); a cluster runs it as `rvdb manager`.
//!
//! The manager is a single process. It is not on the data path, so while it is away reads and writes continue
//! on the last routing table the gateways hold; only catalog changes and failure handling wait. Making it highly
//! available (three managers replicating the catalog through `openraft`) is the planned next step.

pub mod error;
pub mod manager;
pub mod metrics;
pub mod service;

pub use error::ManagerError;
pub use manager::{Manager, ManagerOptions};
pub use service::{IndexManagerService, LocalManager};
