//! `rvdb-gateway`: how agents and applications reach rvdb.
//!
//! - [`gateway`]: the domain — store operations over the index manager's routing table and the storage nodes'
//!   API, local or remote (validation, versioning, replica writes, scatter-gather search).
//! - [`embedded`]: manager + nodes + gateway in one process, wired by direct calls (`rvdb serve`).
//! - [`api`]: the JSON messages of every operation, shared by MCP and REST; both surfaces' schemas derive from
//!   them.
//! - [`ops`]: every operation once, with the access it needs and its name on each surface (MCP, REST, gRPC, CLI).
//! - [`map`]: a store's 2-D map (a sample projected on its principal components) and the cluster's state, for
//!   the web console ([`console`]).
//! - [`points`]: count, scroll (stateless cursor), delete and metadata updates by ids or by filter.
//! - [`routing`]: the routing table and the point → shard hash.
//! - [`backup`]: checksummed, portable backups; restore into a new store; JSON Lines export / import; schedule.
//! - [`mcp`] + [`tools`]: the MCP server (rmcp) and its tool catalogue; [`stdio`]: MCP on stdin / stdout, with
//!   malformed lines answered as over HTTP.
//! - [`grpc`]: the gRPC `BackupService` over the same backup manager.
//! - [`http`]: the HTTP listener: MCP over Streamable HTTP at `/mcp`, with Origin checks, bearer auth and size
//!   limits; the REST API ([`rest`]); `/metrics` ([`metrics`]); `/healthz`, `/readyz`; the web console at
//!   `/console` ([`console`]).

pub mod api;
pub mod backup;
pub mod console;
pub mod embedded;
pub mod embedding;
pub mod error;
pub mod gateway;
pub mod grpc;
pub mod http;
pub mod hybrid;
pub mod map;
pub mod mcp;
pub mod metrics;
pub mod ops;
pub mod points;
pub mod rest;
pub mod routing;
pub mod stdio;
pub mod text;
pub mod tools;

pub use error::GatewayError;
pub use gateway::{Gateway, GatewayOptions};
pub use mcp::McpServer;
