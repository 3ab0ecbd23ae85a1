//! `rvdb-manager`: the index manager (filled by the cluster issue).
//!
//! It will own the catalog of stores (dimension, metric, index and quantization settings, shard count,
//! replication factor, write consistency) in RocksDB, node registration and heartbeats, balanced placement of
//! shard replicas, the versioned routing table that gateways watch, and index lifecycle commands to nodes. Its
//! gRPC contract is already fixed in `proto/rvdb/v1/manager.proto` (`rvdb_proto::v1::index_manager_server`).
