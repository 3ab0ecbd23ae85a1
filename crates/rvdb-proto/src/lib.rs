//! The wire types and gRPC stubs of rvdb, generated at build time from `proto/rvdb/v1`.
//!
//! Everything lives in [`v1`]: the storage-node service (`storage_node_client` / `storage_node_server`), the index
//! manager service (`index_manager_client` / `index_manager_server`) and the shared messages. [`convert`] maps the
//! shared messages to and from `rvdb-core`'s domain types, once, for every service.

#[allow(clippy::all, missing_docs, unreachable_pub)]
pub mod v1 {
    tonic::include_proto!("rvdb.v1");
}

pub mod convert;
