//! `rvdb-gateway`: the MCP gateway (filled by the gateway issue).
//!
//! It will serve MCP (Streamable HTTP and stdio, via `rmcp`) and REST, and turn every tool call into gRPC calls to
//! the storage nodes through the manager's routing table: hash(id) → shard, quorum writes to replicas,
//! scatter-gather top-k searches. Until then `rvdb serve` exposes the storage node's gRPC API directly.
