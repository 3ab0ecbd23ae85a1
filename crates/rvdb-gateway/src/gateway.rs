//! The gateway's domain: store operations expressed over the routing table and the storage nodes' API
//! ([`StorageApi`]: a node in this process is called directly, a remote one over gRPC). MCP, REST and gRPC
//! handlers only parse arguments and call these methods, so every surface behaves alike.
//!
//! - Writes: points are validated here first (clear errors before any network hop), versioned with the gateway's
//!   hybrid logical clock (so all replicas agree on last-write-wins), grouped by shard, split into requests below
//!   the nodes' request-size limit (`write_request_bytes`: a node refusing an oversized request after other shards
//!   were written would leave the call half-done) and sent to every replica of the shard in parallel; a shard
//!   succeeds after `write_consistency` acks (default: a majority). So a call refused for its arguments writes
//!   nothing; one that fails on a node midway (unavailable, deadline) may have written some shards, and can be
//!   retried as is (an upsert or delete of the same points is idempotent).
//! - Versions: the clock learns the versions already stored (each shard's max version, from the nodes when the
//!   gateway starts and from every write reply), so a gateway whose wall clock is behind them (restarted after the
//!   clock was set back, or beside a gateway whose clock runs ahead) still stamps newer versions. The caller never
//!   picks a version: every write is meant as the newest, so a point or delete a replica reports stale is
//!   re-stamped above the stored version and sent again rather than silently dropped.
//! - Reads: each shard is asked on one replica, failing over to the next; per-shard top-k lists are merged into
//!   the global top-k by (distance, id), the same order a single node uses.
//! - Catalog: the routing table comes from the index manager ([`ManagerApi`]: in this process for `rvdb serve`,
//!   over gRPC in a cluster, [`Gateway::connect_manager`]); there is no other catalog. The gateway watches it (a server stream; on a broken stream it re-subscribes, and a store it does not know
//!   makes it fetch the table once), and sends create / drop to the manager. Replica states from the table
//!   steer traffic: reads go to UP replicas only (a CATCHING_UP one may miss writes), writes go to every replica
//!   that is not DOWN, and the default consistency (0) is a majority of those, so a store keeps taking writes
//!   while a node is down. Placement and `max_vector_stores` are the manager's alone; a replica write that
//!   fails is reported to it for repair, embedded or not.
//! - Deadlines: every call to a remote node runs under a tower `Timeout` layer: `read_timeout` for reads (so a slow
//!   replica fails over to the next one), `call_timeout` for writes and admin calls. A node that cannot be reached
//!   or does not answer in time is `Unavailable` naming the store, shard and node ([`GatewayError::from_replica`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use prost::Message;
use rvdb_core::clock::HybridClock;
use rvdb_core::error::excerpt;
use rvdb_core::types::MAX_EF;
use rvdb_core::types::{canonical_metadata, validate_k, validate_point_id, validate_store_name, validate_vector};
use rvdb_core::{EmbeddingSpec, IndexKind, Metric, Quantization, StoreConfig};
use rvdb_proto::api::{ApiStream, ManagerApi, NodeDirectory, RemoteManager, StorageApi};
use rvdb_proto::convert::config_to_pb;
use rvdb_proto::v1 as pb;
use serde::Serialize;
use tokio::task::JoinSet;
use tokio_stream::StreamExt;

use crate::error::{GatewayError, Result};
use crate::routing::{RoutingTable, StoreRoute, WriteTarget};

/// One replica's node: in this process (called directly) or remote (gRPC with the call's deadline).
pub type Replica = Arc<dyn StorageApi>;

#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// Deadline of one write or admin call to a node.
    pub call_timeout: Duration,
    /// Deadline of one read (search, get, stats) on one replica before the next replica is tried.
    pub read_timeout: Duration,
    /// Points per upsert request sent to a node.
    pub write_batch: usize,
    /// Encoded bytes per upsert request sent to a node (at least 1 MiB): must stay below the nodes'
    /// `--max-request-bytes` (64 MiB by default).
    pub write_request_bytes: usize,
    /// The seed's `default_index_type`: the index of a store created without one.
    pub default_index: IndexKind,
    /// Milliseconds added to the wall clock of the gateway's version clock (negative = behind). A test and drill
    /// knob (`RVDB_CLOCK_OFFSET_MS`): it runs a gateway "in the past" against versions stamped by a faster clock.
    pub clock_offset_ms: i64,
    /// Where local embedding models are (one directory per model, named as the model).
    pub models_dir: std::path::PathBuf,
    /// The OpenAI-compatible endpoint of the `openai` embedding provider (`None`: not offered).
    pub openai: Option<rvdb_embed::OpenAiOptions>,
}

/// Default [`GatewayOptions::write_request_bytes`]: a quarter of the nodes' default request limit.
pub const DEFAULT_WRITE_REQUEST_BYTES: usize = 16 << 20;

/// The smallest request size the gateway splits writes into. One point is at most about 0.5 MiB (`MAX_DIMENSION`
/// floats, `MAX_METADATA_BYTES` of metadata), so every point fits in a request of this size.
const MIN_WRITE_REQUEST_BYTES: usize = 1 << 20;

/// Room in a request for what is not a point: the shard id, flags, the placement epoch, gRPC framing.
const REQUEST_OVERHEAD_BYTES: usize = 1024;

/// How many times points (or deletes) that a replica reports stale are re-stamped and sent again.
const STALE_RETRIES: usize = 3;

/// How many times a write refused by a replica's fence (its placement epoch is newer than this gateway's table) is
/// sent again with a newer table.
const EPOCH_RETRIES: usize = 3;

/// How many times one write is routed again because the store's layout changed under it (a reshard starts,
/// switches and ends: three changes at most in a row).
const MAX_REROUTES: u32 = 4;

fn rerouted_too_often(store: &str) -> GatewayError {
    GatewayError::Unavailable(format!(
        "store '{store}' changed its shard layout {MAX_REROUTES} times while this write was sent (resharding); \
         what was acknowledged is written: retry the request"
    ))
}
/// How long a write refused by a fence waits for a newer routing table, and how often it asks for one meanwhile.
const TABLE_WAIT: Duration = Duration::from_secs(2);
const TABLE_POLL: Duration = Duration::from_millis(50);

/// How one round of a write to a shard's replicas ended, short of an error.
/// What [`Gateway::on_replicas`] did with a write.
enum Routed<T> {
    /// Enough replicas acknowledged it: their answers.
    Done(Vec<T>),
    /// The store's layout changed under it (a reshard started or switched), as `route` (a newer table) says:
    /// the caller routes the write again by it, since its ids may now go to other or more shards.
    Rerouted(Box<StoreRoute>),
}

enum Sent<T> {
    /// Enough replicas acknowledged it.
    Acked(Vec<T>),
    /// Too few did, and a replica refused it as routed by an older table than its placement epoch `held`: worth
    /// another round with a newer table (`error` is what to report if there is none).
    Fenced { held: u64, error: GatewayError },
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            call_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(10),
            write_batch: 1000,
            write_request_bytes: DEFAULT_WRITE_REQUEST_BYTES,
            default_index: IndexKind::Flat,
            clock_offset_ms: 0,
            models_dir: rvdb_embed::default_models_dir(),
            openai: None,
        }
    }
}

/// A point as a caller hands it in.
#[derive(Debug, Clone, Default)]
pub struct PointInput {
    pub id: String,
    pub vector: Vec<f32>,
    /// A JSON object (or `Value::Null` for none).
    pub metadata: serde_json::Value,
}

impl PointInput {
    /// A point from an MCP or REST request: `metadata`, when given, must be a JSON object; `field` names it in
    /// the error (`metadata`, `points[3].metadata`).
    pub fn from_request(
        id: String,
        vector: Vec<f32>,
        metadata: Option<serde_json::Value>,
        field: &str,
    ) -> Result<Self> {
        use serde_json::Value;
        let metadata = match metadata {
            None | Some(Value::Null) => Value::Null,
            Some(Value::Object(m)) => Value::Object(m),
            Some(other) => {
                let kind = match other {
                    Value::Array(_) => "an array",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    _ => "a boolean",
                };
                return Err(GatewayError::InvalidArgument(format!("{field} must be a JSON object, got {kind}")));
            }
        };
        // `_text` holds a point's text (crate::text): a point written with its own vector may carry one, as a string
        if metadata.get(crate::text::TEXT_KEY).is_some_and(|t| !t.is_string()) {
            return Err(GatewayError::InvalidArgument(format!(
                "{field}.{} must be a string: it holds the point's text",
                crate::text::TEXT_KEY
            )));
        }
        Ok(PointInput { id, vector, metadata })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct PointOutput {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    /// The point's metadata (an object); left out only when not asked for (a scroll with `with_metadata: false`).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub metadata: serde_json::Value,
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct SearchHit {
    pub id: String,
    /// Lower is closer (cosine: 1 − cos, euclidean: L2, manhattan: L1, dot: −a·b); always a JSON number.
    #[serde(serialize_with = "finite_distance")]
    #[schemars(with = "f32")]
    pub distance: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Map<String, serde_json::Value>>")]
    pub metadata: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// JSON has no infinities (serde_json would write `null`, which MCP clients then reject against the tool's
/// output schema): a distance that overflowed `f32` saturates at ±3.4028235e38 instead, which keeps the order.
/// The one JSON form of a distance, for MCP and REST alike.
fn finite_distance<S: serde::Serializer>(d: &f32, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f32(finite(*d))
}

/// A distance as every surface reports it: finite (saturated at ±f32::MAX, NaN as the worst), order kept.
pub fn finite(d: f32) -> f32 {
    if d.is_nan() { f32::MAX } else { d.clamp(f32::MIN, f32::MAX) }
}

/// A store to create, as every surface takes it (MCP `create_store`, REST `POST /v1/stores`, the CLI, gRPC): the
/// one place its defaults and limits are applied ([`CreateStore::into_config`]).
#[derive(Debug, Clone, Default)]
pub struct CreateStore {
    pub name: String,
    /// Required, unless the store gets an embedding model (then it is the model's; if given, it must match).
    pub dimension: Option<u32>,
    /// Default cosine.
    pub metric: Option<Metric>,
    /// Default 1.
    pub shards: Option<u32>,
    /// Default 1.
    pub replication_factor: Option<u32>,
    /// Default 0 (a majority: of the replication factor when it is 3 or more, of the replicas that are up below).
    pub write_consistency: Option<u32>,
    /// Default: the gateway's `default_index_type`.
    pub index: Option<IndexKind>,
    /// Default none.
    pub quantization: Option<Quantization>,
    pub m: Option<u32>,
    pub ef_construction: Option<u32>,
    pub ef_search: Option<u32>,
    /// Provider and model that embed the store's texts (`None`: the store takes vectors only).
    pub embedding: Option<(String, String)>,
    /// How texts are analysed and scored for keyword search (`None`: the defaults).
    pub text_index: Option<rvdb_core::TextIndexSpec>,
}

impl CreateStore {
    /// A metric, index or quantization given by name (`None`: not given), as MCP and gRPC take them.
    pub fn parse_name<T>(name: Option<&str>) -> Result<Option<T>>
    where
        T: std::str::FromStr,
        GatewayError: From<T::Err>,
    {
        Ok(name.map(str::parse).transpose()?)
    }

    /// The store's config, checked: HNSW parameters are checked whatever the index (the core checks them for
    /// HNSW stores only; a beam is allocated up front, so an unbounded ef could ask for gigabytes).
    pub fn into_config(self, default_index: IndexKind, embedding: Option<EmbeddingSpec>) -> Result<StoreConfig> {
        if self.m.is_some_and(|m| !(2..=128).contains(&m)) {
            return Err(GatewayError::InvalidArgument("m must be between 2 and 128".into()));
        }
        for (name, ef) in [("ef_construction", self.ef_construction), ("ef_search", self.ef_search)] {
            if ef.is_some_and(|ef| !(1..=MAX_EF).contains(&ef)) {
                return Err(GatewayError::InvalidArgument(format!("{name} must be between 1 and {MAX_EF}")));
            }
        }
        let dimension = match (self.dimension, &embedding) {
            (Some(d), _) => d,
            (None, Some(e)) => e.dimension,
            (None, None) => {
                return Err(GatewayError::InvalidArgument(
                    "dimension is required (or give the store an embedding model, whose dimension it takes)".into(),
                ));
            }
        };
        let mut config = StoreConfig::new(self.name, dimension, self.metric.unwrap_or(Metric::Cosine));
        config.embedding = embedding;
        config.text_index = self.text_index.unwrap_or_default();
        config.shards = self.shards.unwrap_or(1);
        config.replication_factor = self.replication_factor.unwrap_or(1);
        config.write_consistency = self.write_consistency.unwrap_or(0);
        config.index.kind = self.index.unwrap_or(default_index);
        config.index.quantization = self.quantization.unwrap_or(Quantization::None);
        let h = &mut config.index.hnsw;
        h.m = self.m.unwrap_or(h.m);
        h.ef_construction = self.ef_construction.unwrap_or(h.ef_construction);
        h.ef_search = self.ef_search.unwrap_or(h.ef_search);
        config.validate()?;
        Ok(config)
    }
}

/// Results of a search when the caller does not say (MCP `k`, REST `k`).
pub fn default_k() -> u32 {
    10
}

/// What a search asks for beyond the query vector.
#[derive(Debug, Clone, Default)]
pub struct SearchParams {
    pub k: u32,
    pub with_vector: bool,
    pub with_metadata: bool,
    /// A metadata filter (see `rvdb_core::filter`), checked here so that a bad one fails before any node is asked.
    pub filter: Option<serde_json::Value>,
    /// HNSW beam width for this search (`None` = the store's `ef_search`).
    pub ef: Option<u32>,
    /// Exact search even on an HNSW store.
    pub exact: bool,
    /// Only hits at most this far from the query (a distance, as results report it: lower is closer).
    pub score_threshold: Option<f32>,
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct StoreStats {
    pub name: String,
    pub dimension: u32,
    pub metric: String,
    pub index: String,
    pub shards: u32,
    pub replication_factor: u32,
    pub points: u64,
    pub deleted_points: u64,
    pub memory_bytes: u64,
    /// In-memory bytes per live vector (vectors, graph links, metadata, ids).
    pub memory_bytes_per_vector: u64,
    /// `memory_bytes_per_vector` by component.
    pub memory_bytes_per_vector_by_component: MemoryPerVector,
    pub disk_bytes: u64,
    /// `none` (flat), `building` (some shard's graph is being built: its searches are exact meanwhile), `ready`.
    pub index_status: String,
    pub quantization: String,
    /// The model that embeds the store's texts, if it takes text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingInfo>,
    /// How the store's texts are analysed and scored by keyword search.
    pub text_index: crate::api::TextIndexChoice,
}

/// Bytes per live vector by component, summed over a store's shards (one replica each). Allocated bytes: the
/// vector arrays grow by doubling, so right after a growth they hold up to twice what they use.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, schemars::JsonSchema)]
pub struct MemoryPerVector {
    /// The exact index's f32 vectors (normalised for cosine).
    pub vectors: u64,
    /// Its SQ8 codes, which let exact scans skip most blocks.
    pub codes: u64,
    /// Ids, the maps that find them, and the version map.
    pub ids: u64,
    /// The HNSW graph: its own copy of each vector (f32 or SQ8 codes), its links, its ids.
    pub graph: u64,
    /// Metadata documents and their inverted index.
    pub metadata: u64,
    /// The keyword (BM25) index.
    pub text: u64,
}

/// A store's embedding model as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct EmbeddingInfo {
    /// `local`: run in the server's process.
    pub provider: String,
    pub model: String,
    pub dimension: u32,
    /// Its vectors have length 1.
    pub normalized: bool,
}

impl From<&EmbeddingSpec> for EmbeddingInfo {
    fn from(e: &EmbeddingSpec) -> Self {
        Self { provider: e.provider.clone(), model: e.model.clone(), dimension: e.dimension, normalized: e.normalized }
    }
}

/// A replica's answer to a write of ids ([`Gateway::write_ids`]).
#[derive(Debug, Clone, Default)]
pub(crate) struct IdsAck {
    /// Ids that held a live point and were written.
    pub count: u64,
    /// Ids whose stored record is newer than the write's version.
    pub stale_ids: Vec<String>,
    pub shard_max_version: u64,
}

/// A replica's answer to a write: whether the replica found something newer stored for some of its ids (a write
/// stamped by a clock ahead of this gateway's), in which case it did not take the write for those ids.
pub(crate) trait WriteAnswer {
    fn overtaken(&self) -> bool;
}

impl WriteAnswer for IdsAck {
    fn overtaken(&self) -> bool {
        !self.stale_ids.is_empty()
    }
}

impl WriteAnswer for pb::UpsertResponse {
    fn overtaken(&self) -> bool {
        !self.stale_ids.is_empty()
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct UpsertSummary {
    pub inserted: u64,
    /// Points skipped because a newer version was already stored.
    pub stale: u64,
}

#[derive(Debug)]
pub struct Gateway {
    /// The index manager: the catalog, placement and limits, in this process (`rvdb serve`) or remote.
    manager: Arc<dyn ManagerApi>,
    table: Arc<RwLock<RoutingTable>>,
    nodes: Arc<NodeDirectory>,
    clock: HybridClock,
    /// Serialises catalog changes (create / drop) made by this gateway.
    catalog_lock: tokio::sync::Mutex<()>,
    options: GatewayOptions,
    embedders: Arc<crate::embedding::Embedders>,
    /// The routing-table watch, stopped when the gateway is dropped.
    watcher: Option<tokio::task::AbortHandle>,
    /// Shutting down: readiness says not ready while requests are still served (see [`Gateway::drain`]).
    draining: std::sync::atomic::AtomicBool,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(w) = &self.watcher {
            w.abort();
        }
    }
}

impl Gateway {
    /// A gateway of a cluster: the index manager at `manager_url` (over gRPC), nodes over gRPC. Fails if the
    /// manager cannot be reached now.
    pub async fn connect_manager(manager_url: &str, options: GatewayOptions) -> Result<Gateway> {
        let manager = RemoteManager::connect_lazy(manager_url, options.call_timeout)
            .map_err(|e| GatewayError::InvalidArgument(format!("bad manager address {manager_url:?}: {e}")))?;
        Gateway::start(Arc::new(manager), NodeDirectory::new(), options).await
    }

    /// A gateway over `manager`, reaching nodes through `nodes` (in `rvdb serve`: both in this process). Loads
    /// the routing table and keeps it current by the manager's watch stream (re-subscribing after errors);
    /// fails if the manager does not answer now.
    pub async fn start(
        manager: Arc<dyn ManagerApi>,
        nodes: Arc<NodeDirectory>,
        options: GatewayOptions,
    ) -> Result<Gateway> {
        let openai = match &options.openai {
            Some(o) => Some(
                rvdb_embed::OpenAiClient::new(o.clone()).map_err(|e| GatewayError::InvalidArgument(e.to_string()))?,
            ),
            None => None,
        };
        let mut gw = Gateway {
            manager: manager.clone(),
            table: Arc::new(RwLock::new(RoutingTable::default())),
            nodes,
            clock: HybridClock::with_offset_ms(options.clock_offset_ms),
            catalog_lock: tokio::sync::Mutex::new(()),
            embedders: Arc::new(crate::embedding::Embedders::new(options.models_dir.clone(), openai)),
            options,
            watcher: None,
            draining: std::sync::atomic::AtomicBool::new(false),
        };
        gw.refresh().await?;
        gw.learn_versions().await;
        gw.watcher = Some(tokio::spawn(watch_table(manager, gw.table.clone())).abort_handle());
        Ok(gw)
    }

    /// Reloads the routing table from the manager.
    pub async fn refresh(&self) -> Result<()> {
        let t = self.manager.routing_table().await?;
        install(&self.table, RoutingTable::from_pb(t));
        Ok(())
    }

    /// The routing table as the manager has it now (for `cluster_status`; routing uses the watched copy).
    pub(crate) async fn manager_routing_table(&self) -> Result<pb::RoutingTable> {
        Ok(self.manager.routing_table().await?)
    }

    /// Moves the clock past the versions stored on the nodes of the routing table. Best effort: a node that does
    /// not answer now is learnt from its write replies.
    async fn learn_versions(&self) {
        let urls: HashSet<String> =
            self.table().stores.values().flat_map(|r| r.shards.iter().flatten().cloned()).collect();
        for url in urls {
            let Ok(client) = self.client_with(&url, self.options.read_timeout) else { continue };
            match client.list_shards().await {
                Ok(r) => r.shards.iter().for_each(|s| self.clock.observe(s.max_version)),
                Err(e) => tracing::debug!(node = %url, error = %e.message(), "cannot read the versions a node holds"),
            }
        }
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, RoutingTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn client_with(&self, url: &str, deadline: Duration) -> Result<Replica> {
        self.nodes
            .get(url, Some(deadline))
            .map_err(|e| GatewayError::InvalidArgument(format!("bad node address {url:?}: {e}")))
    }

    /// A client for writes and admin calls (`call_timeout`).
    fn client(&self, url: &str) -> Result<Replica> {
        self.client_with(url, self.options.call_timeout)
    }

    /// The route of `store`, or a NotFound error that lists what exists.
    pub fn route(&self, store: &str) -> Result<StoreRoute> {
        validate_store_name(store)?;
        let table = self.table();
        table
            .stores
            .get(store)
            .cloned()
            .ok_or_else(|| GatewayError::store_not_found(store, table.stores.keys().map(String::as_str)))
    }

    /// Like [`Self::route`], but a store this gateway does not know yet (created through another gateway, whose
    /// table update has not arrived yet) triggers one refresh of the table before NotFound.
    pub async fn resolve(&self, store: &str) -> Result<StoreRoute> {
        match self.route(store) {
            Err(e) if e.is_not_found() => {
                self.refresh().await?;
                self.route(store)
            }
            other => other,
        }
    }

    /// Storage nodes that can take new replicas (the UP ones).
    pub fn node_count(&self) -> usize {
        self.table().up_nodes()
    }

    /// The embedding models this gateway runs.
    pub fn embedders(&self) -> &Arc<crate::embedding::Embedders> {
        &self.embedders
    }

    pub fn options(&self) -> &GatewayOptions {
        &self.options
    }

    /// Statistics of every store, by name; stores dropped meanwhile are left out.
    pub async fn all_stats(&self) -> Result<Vec<StoreStats>> {
        let mut stores = Vec::new();
        for store in self.store_names() {
            match self.stats(&store).await {
                Ok(s) => stores.push(s),
                Err(e) if e.is_not_found() => {} // dropped meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(stores)
    }

    pub fn store_names(&self) -> Vec<String> {
        self.table().stores.keys().cloned().collect()
    }

    /// What keeps the gateway from serving every store now (empty = ready): no routing table yet, or a shard
    /// without a replica to read from or without enough writable replicas for its write consistency.
    pub fn unready_reasons(&self) -> Vec<String> {
        let table = self.table();
        let mut reasons = Vec::new();
        if self.draining.load(std::sync::atomic::Ordering::Relaxed) {
            reasons.push("shutting down: draining, send new requests to another gateway".to_string());
        }
        if let Some(other) = &table.refused_cluster {
            reasons.push(format!(
                "the index manager serves another cluster ({other}) than this gateway follows ({}): was its data \
                 directory lost? Serving the last routing table of this cluster; catalog changes will fail",
                table.cluster_id
            ));
        }
        if table.version == 0 {
            reasons.push("no routing table from the index manager yet".to_string());
        }
        for (name, route) in &table.stores {
            for (shard, replicas) in route.shards.iter().enumerate() {
                if table.readable(replicas).is_empty() {
                    reasons.push(format!("store '{name}' shard {shard}: no replica is up"));
                    continue;
                }
                let writable = table.writable(replicas).len();
                if writable < required_acks(route.config.write_consistency, replicas.len(), writable) {
                    reasons.push(format!(
                        "store '{name}' shard {shard}: {writable} writable replica(s), write consistency {} needs more",
                        route.config.write_consistency
                    ));
                }
            }
        }
        reasons
    }

    /// Starts a graceful shutdown: `/readyz` reports not ready from now on, so load balancers move away while
    /// the requests that still arrive are served.
    pub fn drain(&self) {
        self.draining.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Creates a store as a caller asked for it (defaults and limits: [`CreateStore::into_config`]).
    pub async fn create(&self, mut request: CreateStore) -> Result<StoreRoute> {
        let embedding = match request.embedding.take() {
            Some((provider, model)) => Some(self.embedders.spec(&provider, &model).await?),
            None => None,
        };
        let config = request.into_config(self.options.default_index, embedding)?;
        self.create_store(config).await
    }

    /// Creates a store through the manager (placement, limits, the replicas on the nodes) and returns its route.
    pub async fn create_store(&self, config: StoreConfig) -> Result<StoreRoute> {
        config.validate()?;
        let _catalog = self.catalog_lock.lock().await;
        self.manager.create_store(pb::CreateStoreRequest { config: Some(config_to_pb(&config)) }).await?;
        self.refresh().await?;
        self.route(&config.name)
    }

    pub async fn drop_store(&self, store: &str) -> Result<()> {
        let _catalog = self.catalog_lock.lock().await;
        self.resolve(store).await?;
        self.manager.drop_store(pb::DropStoreRequest { name: store.to_string() }).await?;
        self.refresh().await
    }

    /// Starts a background rebuild of the HNSW graph on every replica of `store` (through the manager, which
    /// knows where they are); returns how many started. Refused for a flat store.
    pub async fn rebuild_index(&self, store: &str) -> Result<u32> {
        self.resolve(store).await?;
        let req = pb::ManagerRebuildIndexRequest { name: store.to_string() };
        Ok(self.manager.rebuild_index(req).await?.started)
    }

    /// Validates everything first; then writes shard by shard. `progress(done, total)` is called after each
    /// request and may return false to stop (cancellation): points already written stay written.
    pub async fn upsert(
        &self,
        store: &str,
        points: Vec<PointInput>,
        mut progress: impl FnMut(u64, u64) -> bool,
    ) -> Result<UpsertSummary> {
        let route = self.resolve(store).await?;
        let (dim, metric) = (route.config.dimension, route.config.metric);
        if points.is_empty() {
            return Err(GatewayError::InvalidArgument("no points given: send at least one".into()));
        }
        let mut by_target: BTreeMap<WriteTarget, Vec<pb::Point>> = BTreeMap::new();
        for (i, p) in points.into_iter().enumerate() {
            let at = |e: rvdb_core::CoreError| {
                GatewayError::InvalidArgument(format!("points[{i}] (id {:?}): {e}", excerpt(&p.id)))
            };
            validate_point_id(&p.id).map_err(at)?;
            validate_vector(&p.vector, dim, metric).map_err(at)?;
            let metadata = match &p.metadata {
                serde_json::Value::Null => String::new(),
                v => canonical_metadata(&v.to_string()).map_err(at)?,
            };
            let target = route.write_target(&p.id);
            let point = pb::Point { id: p.id, vector: p.vector, metadata_json: metadata, version: self.clock.now() };
            by_target.entry(target).or_default().push(point);
        }
        let total: u64 = by_target.values().map(|v| v.len() as u64).sum();
        let max_bytes = self.options.write_request_bytes.max(MIN_WRITE_REQUEST_BYTES);
        let mut summary = UpsertSummary::default();
        let mut done = 0u64;
        for (target, points) in by_target {
            for chunk in request_chunks(points, self.options.write_batch.max(1), max_bytes) {
                let written = self.write_chunk(&route, target, chunk, 0).await?;
                summary.inserted += written.inserted;
                summary.stale += written.stale;
                done += written.inserted + written.stale;
                if !progress(done, total) {
                    return Err(GatewayError::Cancelled);
                }
            }
        }
        Ok(summary)
    }

    /// Writes one request's points on the replicas of their shard (and, while a reshard copies, of their shard in
    /// the new layout too: the same records with the same versions, so both layouts hold the same). A point a
    /// replica reports stale lost against a version stamped by a clock ahead of this one; the clock has observed
    /// the shard's max version from the reply, so the point is re-stamped (newer than anything stored) and sent
    /// again, to every shard of its target. Only a point that keeps losing, to a concurrent writer, is counted
    /// stale. If the store's layout changes meanwhile, the points are routed again by the new one.
    async fn write_chunk(
        &self,
        route: &StoreRoute,
        target: WriteTarget,
        points: Vec<pb::Point>,
        rerouted: u32,
    ) -> Result<UpsertSummary> {
        let mut summary = UpsertSummary::default();
        let mut pending = points;
        for attempt in 0..=STALE_RETRIES {
            let mut acks = Vec::new();
            for shard in target.shards() {
                match self.write_replicas(route, shard, &pending).await? {
                    Routed::Done(a) => acks.extend(a),
                    Routed::Rerouted(fresh) => {
                        let more = Box::pin(self.reroute_points(&fresh, pending, rerouted)).await?;
                        summary.inserted += more.inserted;
                        summary.stale += more.stale;
                        return Ok(summary);
                    }
                }
            }
            let stale: HashSet<&str> = acks.iter().flat_map(|a| a.stale_ids.iter().map(String::as_str)).collect();
            let lost = pending.iter().filter(|p| stale.contains(p.id.as_str())).count() as u64;
            summary.inserted += pending.len() as u64 - lost;
            if lost == 0 {
                break;
            }
            if attempt == STALE_RETRIES {
                summary.stale += lost;
                break;
            }
            tracing::info!(store = %route.config.name, shard = target.shard, points = lost, "points lost to newer stored versions; re-stamping them");
            let stale: HashSet<String> = stale.into_iter().map(str::to_string).collect();
            pending = last_of_each_id(pending.into_iter().filter(|p| stale.contains(&p.id)).collect());
            for p in &mut pending {
                p.version = self.clock.now();
            }
        }
        Ok(summary)
    }

    /// Points whose write met a change of the store's layout, written again as `route` routes them.
    async fn reroute_points(&self, route: &StoreRoute, points: Vec<pb::Point>, rerouted: u32) -> Result<UpsertSummary> {
        if rerouted >= MAX_REROUTES {
            return Err(rerouted_too_often(&route.config.name));
        }
        let mut by_target: BTreeMap<WriteTarget, Vec<pb::Point>> = BTreeMap::new();
        for p in points {
            by_target.entry(route.write_target(&p.id)).or_default().push(p);
        }
        let mut summary = UpsertSummary::default();
        for (target, points) in by_target {
            let more = self.write_chunk(route, target, points, rerouted + 1).await?;
            summary.inserted += more.inserted;
            summary.stale += more.stale;
        }
        Ok(summary)
    }

    /// Sends one request to every replica of a shard in parallel; succeeds after the store's write consistency,
    /// with the answers received by then. The clock observes each replica's max version.
    async fn write_replicas(
        &self,
        route: &StoreRoute,
        shard: u32,
        points: &[pb::Point],
    ) -> Result<Routed<pb::UpsertResponse>> {
        let min_version = points.iter().map(|p| p.version).min().unwrap_or(0);
        let req = pb::UpsertRequest {
            shard: Some(pb::ShardId { store: route.config.name.clone(), shard }),
            points: points.to_vec(),
            sync: false,
            placement_epoch: 0, // set per round by on_replicas
        };
        let acks = self
            .on_replicas(route, shard, min_version, |c, placement_epoch| {
                let req = pb::UpsertRequest { placement_epoch, ..req.clone() };
                async move { c.upsert(req).await }
            })
            .await?;
        if let Routed::Done(acks) = &acks {
            for a in acks {
                self.clock.observe(a.shard_max_version);
            }
        }
        Ok(acks)
    }

    /// Runs `call` on every writable replica of `shard` in parallel (with the shard's placement epoch) and returns
    /// once the store's write consistency is met (the other replicas finish in the background), with the answers
    /// received so far; or the last error when too few replicas answered. A replica whose call fails for any
    /// reason but a bad request (which every replica refuses alike) is reported to the index manager, which
    /// repairs it from a peer from `min_version` on.
    ///
    /// Write fencing: a replica that knows a newer placement epoch than this gateway's table refuses the write
    /// (the shard's writable replicas changed: one came back). If that leaves the write short of its acks, the
    /// gateway gets a table at least that new from the index manager and sends the write again to the new
    /// replica set (writes are idempotent: same ids, versions and values).
    async fn on_replicas<T, F, Fut>(
        &self,
        route: &StoreRoute,
        shard: u32,
        min_version: u64,
        call: F,
    ) -> Result<Routed<T>>
    where
        T: WriteAnswer + Send + 'static,
        F: Fn(Replica, u64) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>> + Send + 'static,
    {
        let mut fresh: Option<StoreRoute> = None;
        for attempt in 0..=EPOCH_RETRIES {
            let current = fresh.as_ref().unwrap_or(route);
            match self.on_replicas_once(current, shard, min_version, &call).await? {
                Sent::Acked(acks) => return Ok(Routed::Done(acks)),
                Sent::Fenced { held, error } => {
                    if attempt == EPOCH_RETRIES {
                        return Err(error);
                    }
                    tracing::info!(store = %route.config.name, shard, sent = current.epoch(shard), held,
                        "a replica refused a write routed by an older table; sending it again with a newer one");
                    if !self.await_table(held).await {
                        return Err(error); // no newer table to send it with
                    }
                    let newer = self.route(&route.config.name)?;
                    if !route.same_layout(&newer) {
                        return Ok(Routed::Rerouted(Box::new(newer)));
                    }
                    fresh = Some(newer);
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    /// One round of [`Self::on_replicas`].
    async fn on_replicas_once<T, F, Fut>(
        &self,
        route: &StoreRoute,
        shard: u32,
        min_version: u64,
        call: &F,
    ) -> Result<Sent<T>>
    where
        T: WriteAnswer + Send + 'static,
        F: Fn(Replica, u64) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>> + Send + 'static,
    {
        let store = route.config.name.as_str();
        let placed = &route.shards[shard as usize];
        let epoch = route.epoch(shard);
        let replicas = self.table().writable(placed);
        let needed = required_acks(route.config.write_consistency, placed.len(), replicas.len());
        if needed > replicas.len() || replicas.is_empty() {
            let down: Vec<&str> = placed.iter().filter(|u| !replicas.contains(*u)).map(String::as_str).collect();
            let nodes = if down.is_empty() { placed.join(", ") } else { down.join(", ") };
            let reason = format!(
                "is down ({} of {} replicas up; this write needs {} acks)",
                replicas.len(),
                placed.len(),
                needed.max(1)
            );
            return Err(GatewayError::shard_unavailable(store, shard, &nodes, &reason));
        }
        let mut calls = JoinSet::new();
        for url in &replicas {
            let answer = call(self.client(url)?, epoch);
            let (manager, url) = (self.manager.clone(), url.clone());
            let id = pb::ShardId { store: route.config.name.clone(), shard };
            calls.spawn(rvdb_proto::rpc::in_current_request(async move {
                let result = answer.await;
                let failed = match &result {
                    Err(status) if status.code() != tonic::Code::InvalidArgument => Some(status.message().to_string()),
                    _ => None,
                };
                if let Some(error) = failed {
                    tracing::warn!(store = %id.store, shard, replica = %url, %error, "replica write failed; reporting it for repair");
                    let req = pb::ReportMissedWriteRequest { shard: Some(id), node_address: url.clone(), min_version };
                    if let Err(e) = manager.report_missed_write(req).await {
                        tracing::warn!(error = %e.message(), "cannot report a missed write to the index manager");
                    }
                }
                result.map_err(|status| (url, status))
            }));
        }
        // An answer counts as an ack only if the replica took the write for every id: one that holds a newer
        // version of some id (stamped by a clock ahead of this one) did not. Waiting for `needed` such acks is what
        // makes quorum writes safe under clock skew: two majorities share a replica, so an acknowledged write is
        // newer than every write acknowledged before it (the caller re-stamps overtaken ids past the versions the
        // replicas reported and sends them again).
        let (mut answers, mut clean, mut last_err, mut fenced) =
            (Vec::with_capacity(replicas.len()), 0, None, None::<u64>);
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok(Ok(answer)) => {
                    clean += usize::from(!answer.overtaken());
                    answers.push(answer);
                    if clean >= needed {
                        calls.detach_all();
                        return Ok(Sent::Acked(answers));
                    }
                }
                Ok(Err((url, status))) => {
                    if let Some(held) = rvdb_proto::fenced_epoch(&status) {
                        fenced = Some(fenced.unwrap_or(0).max(held));
                        last_err = Some(GatewayError::Unavailable(format!(
                            "shard {shard} of store '{store}': storage node {url} refused the write as routed by an \
                             old routing table (placement epoch {epoch}, the replica holds {held}) and this gateway \
                             has not received a newer table from the index manager; retry"
                        )));
                    } else {
                        last_err = Some(GatewayError::from_replica(status, store, shard, &url));
                    }
                }
                Err(e) => last_err = Some(GatewayError::Backend(format!("replica task failed: {e}"))),
            }
        }
        if answers.len() >= needed {
            return Ok(Sent::Acked(answers)); // enough answers, some overtaken: the caller re-stamps those ids
        }
        let error = last_err
            .unwrap_or_else(|| GatewayError::shard_unavailable(store, shard, &replicas.join(", "), "did not answer"));
        match fenced {
            Some(held) => Ok(Sent::Fenced { held, error }),
            None => Err(error),
        }
    }

    /// Waits (at most [`TABLE_WAIT`]) until this gateway's routing table reaches `version`, fetching it from the
    /// index manager rather than waiting for the watch stream; whether it did.
    async fn await_table(&self, version: u64) -> bool {
        let deadline = tokio::time::Instant::now() + TABLE_WAIT;
        loop {
            if self.table().version >= version {
                return true;
            }
            match tokio::time::timeout_at(deadline, self.refresh()).await {
                Err(_) => return false,
                Ok(Err(e)) => tracing::debug!(error = %e, "cannot fetch the routing table"),
                Ok(Ok(())) => {}
            }
            if self.table().version >= version {
                return true;
            }
            if tokio::time::Instant::now() + TABLE_POLL > deadline {
                return false;
            }
            tokio::time::sleep(TABLE_POLL).await;
        }
    }

    pub async fn get(&self, store: &str, ids: Vec<String>, with_vector: bool) -> Result<Vec<PointOutput>> {
        let route = self.resolve(store).await?;
        for (i, id) in ids.iter().enumerate() {
            validate_point_id(id).map_err(|e| GatewayError::InvalidArgument(format!("ids[{i}]: {e}")))?;
        }
        let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for id in &ids {
            by_shard.entry(route.shard_of(id)).or_default().push(id.clone());
        }
        let mut found: HashMap<String, PointOutput> = HashMap::new();
        for (shard, shard_ids) in by_shard {
            let req = pb::GetRequest {
                shard: Some(pb::ShardId { store: store.to_string(), shard }),
                ids: shard_ids,
                with_vector,
                with_metadata: true,
            };
            let resp = self
                .read_shard(&route, shard, |c| {
                    let req = req.clone();
                    async move { c.get(req).await }
                })
                .await?;
            for p in resp.points {
                let metadata = serde_json::from_str(&p.metadata_json).unwrap_or(serde_json::Value::Null);
                found.insert(
                    p.id.clone(),
                    PointOutput { id: p.id, vector: with_vector.then_some(p.vector), metadata, version: p.version },
                );
            }
        }
        Ok(ids.iter().filter_map(|id| found.remove(id)).collect())
    }

    pub async fn delete(&self, store: &str, ids: Vec<String>) -> Result<u64> {
        let route = self.resolve(store).await?;
        crate::points::check_ids(&ids)?;
        self.delete_ids(&route, ids).await
    }

    /// Deletes ids on the replicas of their shards; returns how many held a point.
    pub(crate) async fn delete_ids(&self, route: &StoreRoute, ids: Vec<String>) -> Result<u64> {
        let store = route.config.name.clone();
        self.write_ids(route, ids, move |c, shard, ids, version, placement_epoch| {
            let req = pb::DeleteRequest {
                shard: Some(pb::ShardId { store: store.clone(), shard }),
                ids,
                version,
                sync: false,
                placement_epoch,
            };
            async move {
                c.delete(req).await.map(|r| IdsAck {
                    count: r.deleted.into(),
                    stale_ids: r.stale_ids,
                    shard_max_version: r.shard_max_version,
                })
            }
        })
        .await
    }

    /// Sends a write of ids at one version (a delete, a metadata update; `call` makes the request for a shard, the
    /// ids and the version) to the replicas of the ids' shards (both layouts' while a reshard copies). Returns the
    /// count the replicas report (per shard the largest, as replicas that were behind may count fewer; the new
    /// layout's copies are not counted twice).
    pub(crate) async fn write_ids<F, Fut>(&self, route: &StoreRoute, ids: Vec<String>, call: F) -> Result<u64>
    where
        F: Fn(Replica, u32, Vec<String>, u64, u64) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<IdsAck, tonic::Status>> + Send + 'static,
    {
        self.write_ids_routed(route, ids, &call, 0).await
    }

    async fn write_ids_routed<F, Fut>(
        &self,
        route: &StoreRoute,
        ids: Vec<String>,
        call: &F,
        rerouted: u32,
    ) -> Result<u64>
    where
        F: Fn(Replica, u32, Vec<String>, u64, u64) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<IdsAck, tonic::Status>> + Send + 'static,
    {
        if rerouted > MAX_REROUTES {
            return Err(rerouted_too_often(&route.config.name));
        }
        let mut by_target: BTreeMap<WriteTarget, Vec<String>> = BTreeMap::new();
        for id in ids {
            by_target.entry(route.write_target(&id)).or_default().push(id);
        }
        let mut count = 0;
        for (target, ids) in by_target {
            count += match self.write_target_ids(route, target, ids, call).await? {
                Ok(n) => n,
                Err((fresh, ids)) => Box::pin(self.write_ids_routed(&fresh, ids, call, rerouted + 1)).await?,
            };
        }
        Ok(count)
    }

    /// [`Self::write_ids`] for ids of one write target. Ids a replica reports stale hold a version from a clock
    /// ahead of this one: the clock observed the shard's max version from the reply, so they are re-stamped and
    /// sent again (to every shard of the target), as in `write_chunk`. `Err((route, ids))`: the layout changed;
    /// these ids are to be written again by that route.
    #[allow(clippy::type_complexity)]
    async fn write_target_ids<F, Fut>(
        &self,
        route: &StoreRoute,
        target: WriteTarget,
        ids: Vec<String>,
        call: &F,
    ) -> Result<std::result::Result<u64, (StoreRoute, Vec<String>)>>
    where
        F: Fn(Replica, u32, Vec<String>, u64, u64) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<IdsAck, tonic::Status>> + Send + 'static,
    {
        let (mut pending, mut version) = (ids, self.clock.now());
        let mut count = 0u64;
        for attempt in 0..=STALE_RETRIES {
            let sent = std::mem::take(&mut pending);
            let mut stale_ids = Vec::new();
            for shard in target.shards() {
                let acks = match self
                    .on_replicas(route, shard, version, |c, epoch| call(c, shard, sent.clone(), version, epoch))
                    .await?
                {
                    Routed::Done(acks) => acks,
                    Routed::Rerouted(fresh) => return Ok(Err((*fresh, sent))),
                };
                for a in &acks {
                    self.clock.observe(a.shard_max_version);
                }
                if shard == target.shard {
                    count += acks.iter().map(|a| a.count).max().unwrap_or(0);
                }
                stale_ids.extend(acks.into_iter().flat_map(|a| a.stale_ids));
            }
            let mut seen = HashSet::new();
            pending = stale_ids.into_iter().filter(|id| seen.insert(id.clone())).collect();
            if pending.is_empty() || attempt == STALE_RETRIES {
                break;
            }
            tracing::info!(
                store = %route.config.name,
                shard = target.shard,
                ids = pending.len(),
                "writes lost to newer stored versions; re-stamping them"
            );
            version = self.clock.now();
        }
        if !pending.is_empty() {
            // Each retry was stamped past the newest version the replicas reported, and was overtaken again: a
            // concurrent writer of these ids runs ahead. Saying so is better than a count that leaves them out.
            return Err(GatewayError::Unavailable(format!(
                "{} of the ids (first: '{}') on shard {} of store '{}' were overtaken by newer writes of the \
                 same ids {} times in a row (another writer's clock runs ahead); the request stopped there, with \
                 what came before it applied: retry the request (deleting or updating again is safe)",
                pending.len(),
                rvdb_core::error::excerpt(&pending[0]),
                target.shard,
                route.config.name,
                STALE_RETRIES + 1
            )));
        }
        Ok(Ok(count))
    }

    /// k-NN over every shard (each by its own plan: exact, candidates or HNSW), merged into the global top-k.
    pub async fn search(&self, store: &str, vector: Vec<f32>, params: &SearchParams) -> Result<Vec<SearchHit>> {
        let SearchParams { k, with_vector, with_metadata, .. } = *params;
        let route = self.resolve(store).await?;
        validate_vector(&vector, route.config.dimension, route.config.metric)
            .map_err(|e| GatewayError::InvalidArgument(format!("vector: {e}")))?;
        validate_k(k).map_err(|e| GatewayError::InvalidArgument(format!("k: {e}")))?;
        let filter_json = crate::points::filter_text(params.filter.as_ref())?;
        if params.score_threshold.is_some_and(|t| !t.is_finite()) {
            return Err(GatewayError::InvalidArgument("score_threshold must be a finite number".into()));
        }
        if params.ef.is_some_and(|ef| ef == 0 || ef > 100_000) {
            return Err(GatewayError::InvalidArgument("ef must be between 1 and 100000".into()));
        }
        let request = |shard| pb::SearchRequest {
            shard: Some(pb::ShardId { store: store.to_string(), shard }),
            vector: vector.clone(),
            k,
            with_vector,
            with_metadata,
            filter_json: filter_json.clone(),
            ef: params.ef.unwrap_or(0),
            exact: params.exact,
            layout_shards: route.layout_shards(),
        };
        let mut all: Vec<pb::ScoredPoint> = self
            .read_every_shard(&route, "search", request, |c, req| async move { c.search(req).await.map(|r| r.results) })
            .await?
            .into_iter()
            .flatten()
            .collect();
        all.sort_by(|a, b| a.distance.total_cmp(&b.distance).then_with(|| a.id.cmp(&b.id)));
        // A point is answered by one shard; a copy on another (a reshard's, read by a gateway whose table is a
        // moment old) has the same distance and id, so it sorts next to it and goes here.
        all.dedup_by(|a, b| a.id == b.id);
        all.truncate(k as usize);
        if let Some(t) = params.score_threshold {
            all.retain(|p| p.distance <= t);
        }
        Ok(all
            .into_iter()
            .map(|p| SearchHit {
                id: p.id,
                distance: p.distance,
                metadata: with_metadata
                    .then(|| serde_json::from_str(&p.metadata_json).unwrap_or(serde_json::Value::Null)),
                vector: with_vector.then_some(p.vector),
            })
            .collect())
    }

    pub async fn stats(&self, store: &str) -> Result<StoreStats> {
        let route = self.resolve(store).await?;
        let c = &route.config;
        let mut stats = StoreStats {
            name: c.name.clone(),
            dimension: c.dimension,
            metric: c.metric.to_string(),
            index: c.index.kind.as_str().to_string(),
            shards: c.shards,
            replication_factor: c.replication_factor,
            points: 0,
            deleted_points: 0,
            memory_bytes: 0,
            memory_bytes_per_vector: 0,
            memory_bytes_per_vector_by_component: MemoryPerVector::default(),
            disk_bytes: 0,
            index_status: String::new(),
            quantization: c.index.quantization.as_str().to_string(),
            embedding: c.embedding.as_ref().map(Into::into),
            text_index: (&c.text_index).into(),
        };
        let mut statuses = Vec::new();
        let mut memory = pb::MemoryUse::default();
        for shard in 0..route.read_shards() {
            let req = pb::StatsRequest { shard: Some(pb::ShardId { store: store.to_string(), shard }) };
            let s = self
                .read_shard(&route, shard, |cl| {
                    let req = req.clone();
                    async move { cl.stats(req).await }
                })
                .await?
                .stats
                .unwrap_or_default();
            stats.points += s.points;
            stats.deleted_points += s.tombstones;
            stats.memory_bytes += s.index_memory_bytes;
            let m = s.memory.unwrap_or_default();
            for (sum, part) in [
                (&mut memory.vectors, m.vectors),
                (&mut memory.codes, m.codes),
                (&mut memory.ids, m.ids),
                (&mut memory.graph, m.graph),
                (&mut memory.metadata, m.metadata),
                (&mut memory.text, m.text),
            ] {
                *sum += part;
            }
            stats.disk_bytes += s.disk_bytes;
            statuses.push(s.index_status);
        }
        stats.memory_bytes_per_vector = stats.memory_bytes.checked_div(stats.points).unwrap_or(0);
        let per = |bytes: u64| bytes.checked_div(stats.points).unwrap_or(0);
        stats.memory_bytes_per_vector_by_component = MemoryPerVector {
            vectors: per(memory.vectors),
            codes: per(memory.codes),
            ids: per(memory.ids),
            graph: per(memory.graph),
            metadata: per(memory.metadata),
            text: per(memory.text),
        };
        stats.index_status = ["building", "ready", "none"]
            .into_iter()
            .find(|st| statuses.iter().any(|s| s == st))
            .unwrap_or("none")
            .to_string();
        Ok(stats)
    }

    /// Opens a scan of one shard on the first replica that answers. The node takes its RocksDB snapshot when the
    /// scan opens, so the stream is a consistent view of the shard as of this call.
    pub async fn scan_shard(&self, store: &str, shard: u32, with_vector: bool) -> Result<ApiStream<pb::ScanChunk>> {
        let route = self.resolve(store).await?;
        let req = pb::ScanRequest {
            shard: Some(pb::ShardId { store: store.to_string(), shard }),
            start_after: String::new(),
            chunk_size: 1000,
            with_vector,
            with_metadata: true,
            layout_shards: route.layout_shards(),
            ..Default::default()
        };
        self.read_shard(&route, shard, |c| {
            let req = req.clone();
            async move { c.scan(req).await }
        })
        .await
    }

    /// Flushes every replica (that is not down) of every shard of `store` and fsyncs their WALs.
    pub async fn sync(&self, store: &str) -> Result<()> {
        let route = self.resolve(store).await?;
        for (shard, replicas) in route.shards.iter().enumerate() {
            let writable = self.table().writable(replicas);
            for url in writable {
                let id = Some(pb::ShardId { store: store.to_string(), shard: shard as u32 });
                self.client(&url)?
                    .flush(pb::FlushRequest { shard: id })
                    .await
                    .map_err(|s| GatewayError::from_replica(s, store, shard as u32, &url))?;
            }
        }
        Ok(())
    }

    /// The replicas of `shard` that may serve reads, in placement order, with `read_timeout`.
    pub(crate) fn read_replicas(&self, route: &StoreRoute, shard: u32) -> Result<ReadReplicas> {
        let placed = route.shards[shard as usize].clone();
        let readable = self.table().readable(&placed);
        let clients = readable
            .into_iter()
            .map(|url| Ok((self.client_with(&url, self.options.read_timeout)?, url)))
            .collect::<Result<_>>()?;
        Ok(ReadReplicas { store: route.config.name.clone(), shard, placed, clients })
    }

    /// Runs a read on every shard at once, each on the first replica that answers (see [`first_replica`]): the
    /// request for each shard from `request`, sent by `call`. The answers come in completion order; `what` names
    /// the read in an error.
    pub(crate) async fn read_every_shard<R, T, F, Fut>(
        &self,
        route: &StoreRoute,
        what: &str,
        request: impl Fn(u32) -> R,
        call: F,
    ) -> Result<Vec<T>>
    where
        R: Clone + Send + Sync + 'static,
        T: Send + 'static,
        F: Fn(Replica, R) -> Fut + Copy + Send + Sync + 'static,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>> + Send + 'static,
    {
        let mut tasks = JoinSet::new();
        for shard in 0..route.read_shards() {
            let req = request(shard);
            let replicas = self.read_replicas(route, shard)?;
            tasks.spawn(rvdb_proto::rpc::in_current_request(first_replica(replicas, move |c| call(c, req.clone()))));
        }
        let mut out = Vec::with_capacity(route.read_shards() as usize);
        while let Some(joined) = tasks.join_next().await {
            out.push(joined.map_err(|e| GatewayError::Backend(format!("{what} task failed: {e}")))??);
        }
        Ok(out)
    }

    /// Runs a read on the first replica of `shard` that answers.
    pub(crate) async fn read_shard<T, F, Fut>(&self, route: &StoreRoute, shard: u32, call: F) -> Result<T>
    where
        F: Fn(Replica) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
    {
        first_replica(self.read_replicas(route, shard)?, call).await
    }
}

/// The replicas a read of one shard tries in order, and what an error names.
pub(crate) struct ReadReplicas {
    store: String,
    shard: u32,
    /// Every replica of the shard, up or not.
    placed: Vec<String>,
    /// The ones that may serve reads, with their URLs.
    clients: Vec<(Replica, String)>,
}

/// Tries `call` on each replica in order until one answers; fails over on unavailable / deadline errors, returns
/// any other error at once. Owns its clients, so scatter-gather can spawn it per shard.
pub(crate) async fn first_replica<T, F, Fut>(replicas: ReadReplicas, call: F) -> Result<T>
where
    F: Fn(Replica) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
{
    let ReadReplicas { store, shard, placed, clients } = replicas;
    let mut last = None;
    for (client, url) in clients {
        match call(client).await {
            Ok(v) => return Ok(v),
            Err(s) if is_retryable(&s) => last = Some((s, url)),
            Err(s) => return Err(GatewayError::from_replica(s, &store, shard, &url)),
        }
    }
    Err(match last {
        Some((s, url)) => GatewayError::from_replica(s, &store, shard, &url),
        None => GatewayError::shard_unavailable(&store, shard, &placed.join(", "), "is down (no replica is up)"),
    })
}

/// Runs a scan of one shard to its end on the first replica that serves it whole, failing over (and starting
/// again) on unavailable / deadline errors, when opening the stream or in the middle of it: a scan only reads.
pub(crate) async fn collect_scan(replicas: ReadReplicas, req: pb::ScanRequest) -> Result<Vec<pb::Point>> {
    let ReadReplicas { store, shard, placed, clients } = replicas;
    let mut last = None;
    for (client, url) in clients {
        let drained = async {
            let mut stream = client.scan(req.clone()).await?;
            let mut points = Vec::new();
            while let Some(chunk) = stream.next().await {
                points.extend(chunk?.points);
            }
            Ok::<_, tonic::Status>(points)
        };
        match drained.await {
            Ok(points) => return Ok(points),
            Err(s) if is_retryable(&s) => last = Some((s, url)),
            Err(s) => return Err(GatewayError::from_replica(s, &store, shard, &url)),
        }
    }
    Err(match last {
        Some((s, url)) => GatewayError::from_replica(s, &store, shard, &url),
        None => GatewayError::shard_unavailable(&store, shard, &placed.join(", "), "is down (no replica is up)"),
    })
}

/// Splits one shard's points into upsert requests of at most `max_points` points and about `max_bytes` encoded
/// bytes: a node refuses a request above its `--max-request-bytes`, and a refusal after other requests were
/// written would leave the call half-done. A request holds at least one point (each fits, see
/// `MIN_WRITE_REQUEST_BYTES`).
fn request_chunks(points: Vec<pb::Point>, max_points: usize, max_bytes: usize) -> Vec<Vec<pb::Point>> {
    let mut chunks = Vec::new();
    let (mut chunk, mut bytes) = (Vec::new(), REQUEST_OVERHEAD_BYTES);
    for p in points {
        let len = p.encoded_len();
        let size = 1 + prost::length_delimiter_len(len) + len;
        if !chunk.is_empty() && (chunk.len() >= max_points || bytes + size > max_bytes) {
            chunks.push(std::mem::take(&mut chunk));
            bytes = REQUEST_OVERHEAD_BYTES;
        }
        bytes += size;
        chunk.push(p);
    }
    if !chunk.is_empty() {
        chunks.push(chunk);
    }
    chunks
}

/// The last point of each id, in order: the one a batch with duplicates means (it carries the highest version).
fn last_of_each_id(points: Vec<pb::Point>) -> Vec<pb::Point> {
    let last: HashMap<&str, usize> = points.iter().enumerate().map(|(i, p)| (p.id.as_str(), i)).collect();
    let keep: HashSet<usize> = last.into_values().collect();
    points.into_iter().enumerate().filter(|(i, _)| keep.contains(i)).map(|(_, p)| p).collect()
}

/// Installs `new` unless the table there is already newer (a watch update and a fetch can race).
/// Installs a newer table from the manager. A table of another cluster than the one this gateway follows (a
/// manager restarted with an empty data directory would hand out an empty catalog, at a version that soon passes
/// the last one) is refused: the gateway keeps serving with the table it has and reports itself not ready.
fn install(table: &RwLock<RoutingTable>, new: RoutingTable) {
    let mut t = table.write().unwrap_or_else(|p| p.into_inner());
    if !t.cluster_id.is_empty() && !new.cluster_id.is_empty() && new.cluster_id != t.cluster_id {
        if t.refused_cluster.as_deref() != Some(new.cluster_id.as_str()) {
            tracing::error!(
                following = %t.cluster_id, offered = %new.cluster_id,
                "the index manager now serves another cluster (was its data directory lost?); keeping the last \
                 routing table of this cluster"
            );
        }
        t.refused_cluster = Some(new.cluster_id);
        return;
    }
    if new.version >= t.version || (t.cluster_id.is_empty() && !new.cluster_id.is_empty()) {
        *t = new;
    } else {
        t.refused_cluster = None;
    }
}

/// Follows the manager's routing table for as long as the gateway lives, re-subscribing after errors.
async fn watch_table(manager: Arc<dyn ManagerApi>, table: Arc<RwLock<RoutingTable>>) {
    loop {
        let (known, cluster) = {
            let t = table.read().unwrap_or_else(|p| p.into_inner());
            (t.version, t.cluster_id.clone())
        };
        let request = pb::WatchRoutingTableRequest { known_version: known, known_cluster_id: cluster };
        match manager.watch_routing_table(request).await {
            Ok(mut stream) => loop {
                match stream.next().await {
                    Some(Ok(t)) => {
                        tracing::debug!(version = t.version, "routing table update");
                        install(&table, RoutingTable::from_pb(t));
                    }
                    None => break,
                    Some(Err(s)) => {
                        tracing::warn!(error = %s.message(), "routing table watch broke; re-subscribing");
                        break;
                    }
                }
            },
            Err(s) => tracing::warn!(error = %s.message(), "cannot watch the routing table; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn is_retryable(s: &tonic::Status) -> bool {
    match s.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown | tonic::Code::Cancelled => {
            true
        }
        // a broken connection that HTTP/2 gave a reason for (as GatewayError::from_replica reads it)
        tonic::Code::Internal => std::error::Error::source(s).is_some(),
        _ => false,
    }
}

/// Acks a write needs from the `live` replicas (those not down) of a shard with `replication_factor` replicas:
/// the configured consistency when it is set (strict: more than `live` makes the write fail). By default (0), a
/// majority of the replication factor when it is 3 or more, so an acknowledged write is on a majority of the
/// replicas and survives the loss of any minority (with 1 of 3 replicas live, writes fail rather than land on one
/// copy); with a replication factor of 1 or 2, a majority of the live replicas, so that RF 2 keeps taking writes
/// with one node down (the returning node catches up; anti-entropy repairs what catch-up misses).
pub fn required_acks(write_consistency: u32, replication_factor: usize, live: usize) -> usize {
    match write_consistency {
        0 if replication_factor >= 3 => replication_factor / 2 + 1,
        0 => live / 2 + 1,
        w => w as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A read fails over on exactly the failures `GatewayError::from_replica` calls transport failures: a reset
    /// connection that tonic files as Internal (a local source) too, an Internal the node sent not.
    #[test]
    fn reads_fail_over_on_transport_failures_only() {
        let mut reset = tonic::Status::internal("h2 protocol error");
        reset.set_source(Arc::new(std::io::Error::other("stream reset")));
        assert!(is_retryable(&reset));
        assert!(!is_retryable(&tonic::Status::internal("the node's own failure")));
        assert!(is_retryable(&tonic::Status::unavailable("down")));
        assert!(!is_retryable(&tonic::Status::invalid_argument("bad")));
    }

    /// A manager that lost its data directory serves another cluster: its tables are refused, however high their
    /// version, until a table of the followed cluster comes again.
    #[test]
    fn a_table_of_another_cluster_is_refused() {
        let table = RwLock::new(RoutingTable::default());
        let t = |version, cluster: &str| RoutingTable { version, cluster_id: cluster.into(), ..Default::default() };
        install(&table, t(5, "a"));
        install(&table, t(9, "b"));
        let now = table.read().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!((now.version, now.cluster_id.as_str(), now.refused_cluster.as_deref()), (5, "a", Some("b")));
        install(&table, t(6, "a"));
        let now = table.read().unwrap_or_else(|p| p.into_inner()).clone();
        assert_eq!((now.version, now.refused_cluster), (6, None));
        install(&table, t(3, "a"));
        assert_eq!(table.read().unwrap_or_else(|p| p.into_inner()).version, 6, "never rolled back");
    }

    fn point(id: &str, dimension: usize, version: u64) -> pb::Point {
        pb::Point { id: id.into(), vector: vec![1.0; dimension], metadata_json: String::new(), version }
    }

    #[test]
    fn write_requests_stay_below_the_byte_limit_and_keep_every_point_in_order() {
        // 17,000 floats = 68 KB a point: 1000 of them would be a 68 MB request, over a node's 64 MiB limit
        let points: Vec<pb::Point> = (0..1000).map(|i| point(&format!("p{i}"), 17_000, i + 1)).collect();
        let max = 16 << 20;
        let chunks = request_chunks(points.clone(), 1000, max);
        assert!(chunks.len() >= 5, "{} chunks", chunks.len());
        for c in &chunks {
            let req = pb::UpsertRequest {
                shard: Some(pb::ShardId { store: "s".repeat(64), shard: 1023 }),
                points: c.clone(),
                sync: true,
                placement_epoch: u64::MAX,
            };
            assert!(req.encoded_len() <= max, "{} bytes", req.encoded_len());
        }
        assert_eq!(chunks.concat(), points);
        // the point count still bounds small points
        let small: Vec<pb::Point> = (0..2500).map(|i| point(&format!("s{i}"), 4, 1)).collect();
        assert_eq!(request_chunks(small, 1000, max).iter().map(Vec::len).collect::<Vec<_>>(), vec![1000, 1000, 500]);
        // one point larger than the limit still goes (alone), never an empty request
        assert_eq!(request_chunks(vec![point("big", 1000, 1)], 10, 100).len(), 1);
    }

    #[test]
    fn a_resent_batch_keeps_the_last_point_of_each_id() {
        let got = last_of_each_id(vec![point("a", 1, 1), point("b", 1, 2), point("a", 1, 3)]);
        assert_eq!(got.iter().map(|p| (p.id.as_str(), p.version)).collect::<Vec<_>>(), vec![("b", 2), ("a", 3)]);
    }
}
