//! The gateway's domain: store operations expressed over the routing table and the storage nodes' gRPC API.
//! MCP (and later REST) handlers only parse arguments and call these methods, so every surface behaves alike.
//!
//! - Writes: points are validated here first (clear errors before any network hop), versioned with the gateway's
//!   hybrid logical clock (so all replicas agree on last-write-wins), grouped by shard and sent to every replica
//!   of the shard in parallel; a shard succeeds after `write_consistency` acks (default: a majority).
//! - Reads: each shard is asked on one replica, failing over to the next; per-shard top-k lists are merged into
//!   the global top-k by (distance, id), the same order a single node uses.
//! - Catalog: in a cluster ([`Gateway::connect_manager`]) the routing table comes from the index manager: the
//!   gateway watches it (a server stream; on a broken stream it re-subscribes, and a store it does not know
//!   makes it fetch the table once), and sends create / drop to the manager. Replica states from the table
//!   steer traffic: reads go to UP replicas only (a CATCHING_UP one may miss writes), writes go to every replica
//!   that is not DOWN, and the default consistency (0) is a majority of those, so a store keeps taking writes
//!   while a node is down. In the embedded mode ([`Gateway::connect`]) the gateway is given a list of nodes,
//!   discovers the stores already on them and places new stores' shards round-robin across them.
//! - Deadlines: every call to a node runs under a tower `Timeout` layer: `read_timeout` for reads (so a slow
//!   replica fails over to the next one), `call_timeout` for writes and admin calls.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rvdb_core::clock::HybridClock;
use rvdb_core::error::excerpt;
use rvdb_core::types::{canonical_metadata, validate_k, validate_point_id, validate_store_name, validate_vector};
use rvdb_core::{IndexKind, StoreConfig};
use rvdb_proto::Channel;
use rvdb_proto::convert::{config_from_pb, config_to_pb};
use rvdb_proto::v1 as pb;
use rvdb_proto::v1::index_manager_client::IndexManagerClient;
use rvdb_proto::v1::storage_node_client::StorageNodeClient;
use serde::Serialize;
use tokio::task::JoinSet;
use tower::timeout::Timeout;

use crate::error::{GatewayError, Result};
use crate::routing::{RoutingTable, StoreRoute, place};

/// A storage-node client whose every call has a deadline (tower's `Timeout` layer over the shared channel).
pub type NodeClient = StorageNodeClient<Timeout<Channel>>;

#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The seed's `max_vector_stores`.
    pub max_vector_stores: usize,
    /// Deadline of one write or admin call to a node.
    pub call_timeout: Duration,
    /// Deadline of one read (search, get, stats) on one replica before the next replica is tried.
    pub read_timeout: Duration,
    /// Points per upsert request sent to a node.
    pub write_batch: usize,
    /// The seed's `default_index_type`: the index of a store created without one.
    pub default_index: IndexKind,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            max_vector_stores: 100,
            call_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(10),
            write_batch: 1000,
            default_index: IndexKind::Flat,
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
        Ok(PointInput { id, vector, metadata })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct PointOutput {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
    pub metadata: serde_json::Value,
    pub version: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct SearchHit {
    pub id: String,
    /// Lower is closer (cosine: 1 − cos, euclidean: L2, manhattan: L1, dot: −a·b); always a JSON number.
    #[serde(serialize_with = "finite_distance")]
    pub distance: f32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

/// JSON has no infinities (serde_json would write `null`, which MCP clients then reject against the tool's
/// output schema): a distance that overflowed `f32` saturates at ±3.4028235e38 instead, which keeps the order.
/// The one JSON form of a distance, for MCP and REST alike.
fn finite_distance<S: serde::Serializer>(d: &f32, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f32(if d.is_nan() { f32::MAX } else { d.clamp(f32::MIN, f32::MAX) })
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
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
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
    pub disk_bytes: u64,
    /// `none` (flat), `building` (some shard's graph is being built: its searches are exact meanwhile), `ready`.
    pub index_status: String,
    pub quantization: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Default)]
pub struct UpsertSummary {
    pub inserted: u64,
    /// Points skipped because a newer version was already stored.
    pub stale: u64,
}

/// Where the gateway's routing table comes from.
#[derive(Debug)]
enum Catalog {
    /// A fixed list of nodes (embedded mode): the table is derived from what they hold.
    Nodes(Vec<String>),
    /// The index manager.
    Manager(IndexManagerClient<Channel>),
}

#[derive(Debug)]
pub struct Gateway {
    catalog: Catalog,
    table: Arc<RwLock<RoutingTable>>,
    channels: rvdb_proto::Channels,
    clock: HybridClock,
    /// Serialises catalog changes (create / drop) made by this gateway.
    catalog_lock: tokio::sync::Mutex<()>,
    options: GatewayOptions,
    /// The routing-table watch of a cluster gateway, stopped when the gateway is dropped.
    watcher: Option<tokio::task::AbortHandle>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(w) = &self.watcher {
            w.abort();
        }
    }
}

impl Gateway {
    /// A gateway over `nodes` (gRPC URLs). Reads the stores already on them to build the routing table.
    pub async fn connect(nodes: Vec<String>, options: GatewayOptions) -> Result<Gateway> {
        if nodes.is_empty() {
            return Err(GatewayError::InvalidArgument("the gateway needs at least one storage node".into()));
        }
        let gw = Gateway::new(Catalog::Nodes(nodes), options);
        gw.refresh().await?;
        Ok(gw)
    }

    fn new(catalog: Catalog, options: GatewayOptions) -> Gateway {
        Gateway {
            catalog,
            table: Arc::new(RwLock::new(RoutingTable::default())),
            channels: rvdb_proto::Channels::default(),
            clock: HybridClock::new(),
            catalog_lock: tokio::sync::Mutex::new(()),
            options,
            watcher: None,
        }
    }

    /// A gateway of a cluster: the routing table comes from the index manager at `manager_url` and is kept
    /// current by a watch stream. Fails if the manager cannot be reached now.
    pub async fn connect_manager(manager_url: &str, options: GatewayOptions) -> Result<Gateway> {
        let channel = rvdb_proto::endpoint(manager_url)
            .map_err(|e| GatewayError::InvalidArgument(format!("bad manager address {manager_url:?}: {e}")))?
            .timeout(options.call_timeout)
            .connect_lazy();
        let channel = Channel::new(channel);
        let manager = IndexManagerClient::new(channel).max_decoding_message_size(usize::MAX);
        let mut gw = Gateway::new(Catalog::Manager(manager.clone()), options);
        gw.refresh().await?;
        gw.watcher = Some(tokio::spawn(watch_table(manager, gw.table.clone())).abort_handle());
        Ok(gw)
    }

    /// Reloads the routing table: from the manager, or from what the nodes hold.
    pub async fn refresh(&self) -> Result<()> {
        let nodes = match &self.catalog {
            Catalog::Manager(m) => {
                let t = m.clone().get_routing_table(pb::GetRoutingTableRequest {}).await?.into_inner();
                install(&self.table, RoutingTable::from_pb(t));
                return Ok(());
            }
            Catalog::Nodes(nodes) => nodes,
        };
        let mut stores: BTreeMap<String, StoreRoute> = BTreeMap::new();
        for url in nodes {
            let shards = self.client(url)?.list_shards(pb::ListShardsRequest {}).await?.into_inner().shards;
            for s in shards {
                let (Some(id), Some(config)) = (s.shard, s.config) else { continue };
                let Ok(config) = config_from_pb(config) else { continue };
                let route = stores
                    .entry(id.store.clone())
                    .or_insert_with(|| StoreRoute { shards: vec![Vec::new(); config.shards as usize], config });
                if let Some(replicas) = route.shards.get_mut(id.shard as usize) {
                    replicas.push(url.clone());
                }
            }
        }
        let mut table = self.table_mut();
        table.version += 1;
        table.stores = stores;
        Ok(())
    }

    fn table(&self) -> std::sync::RwLockReadGuard<'_, RoutingTable> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    fn table_mut(&self) -> std::sync::RwLockWriteGuard<'_, RoutingTable> {
        self.table.write().unwrap_or_else(|p| p.into_inner())
    }

    fn client_with(&self, url: &str, deadline: Duration) -> Result<NodeClient> {
        let channel = self
            .channels
            .get(url)
            .map_err(|e| GatewayError::InvalidArgument(format!("bad node address {url:?}: {e}")))?;
        Ok(StorageNodeClient::new(Timeout::new(channel, deadline))
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX))
    }

    /// A client for writes and admin calls (`call_timeout`).
    fn client(&self, url: &str) -> Result<NodeClient> {
        self.client_with(url, self.options.call_timeout)
    }

    /// The route of `store`, or a NotFound error that lists what exists.
    pub fn route(&self, store: &str) -> Result<StoreRoute> {
        validate_store_name(store)?;
        let table = self.table();
        table.stores.get(store).cloned().ok_or_else(|| {
            let names: Vec<&str> = table.stores.keys().map(String::as_str).collect();
            GatewayError::NotFound(if names.is_empty() {
                format!("store '{store}' does not exist; there are no stores yet: create one with create_store")
            } else {
                format!("store '{store}' does not exist; existing stores: {}", names.join(", "))
            })
        })
    }

    /// Like [`Self::route`], but a store this gateway does not know yet (created through another gateway, or
    /// directly on the nodes) triggers one refresh of the table from the nodes before NotFound.
    pub async fn resolve(&self, store: &str) -> Result<StoreRoute> {
        match self.route(store) {
            Err(GatewayError::NotFound(_)) => {
                self.refresh().await?;
                self.route(store)
            }
            other => other,
        }
    }

    /// Storage nodes that can take new replicas (the embedded list, or the cluster's UP nodes).
    pub fn node_count(&self) -> usize {
        match &self.catalog {
            Catalog::Nodes(nodes) => nodes.len(),
            Catalog::Manager(_) => self.table().up_nodes(),
        }
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
                Err(GatewayError::NotFound(_)) => {} // dropped meanwhile
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
        if matches!(self.catalog, Catalog::Manager(_)) && table.version == 0 {
            reasons.push("no routing table from the index manager yet".to_string());
        }
        for (name, route) in &table.stores {
            for (shard, replicas) in route.shards.iter().enumerate() {
                if table.readable(replicas).is_empty() {
                    reasons.push(format!("store '{name}' shard {shard}: no replica is up"));
                    continue;
                }
                let writable = table.writable(replicas).len();
                if writable < required_acks(route.config.write_consistency, writable) {
                    reasons.push(format!(
                        "store '{name}' shard {shard}: {writable} writable replica(s), write consistency {} needs more",
                        route.config.write_consistency
                    ));
                }
            }
        }
        reasons
    }

    pub async fn create_store(&self, config: StoreConfig) -> Result<StoreRoute> {
        config.validate()?;
        let _catalog = self.catalog_lock.lock().await;
        let nodes = match &self.catalog {
            Catalog::Manager(m) => {
                let req = pb::CreateStoreRequest { config: Some(config_to_pb(&config)) };
                m.clone().create_store(req).await?;
                self.refresh().await?;
                return self.route(&config.name);
            }
            Catalog::Nodes(nodes) => nodes,
        };
        {
            let table = self.table();
            if table.stores.contains_key(&config.name) {
                return Err(GatewayError::AlreadyExists(format!("store '{}' already exists", config.name)));
            }
            if table.stores.len() >= self.options.max_vector_stores {
                return Err(GatewayError::LimitReached(format!(
                    "this server holds at most {} stores (max_vector_stores); delete one first",
                    self.options.max_vector_stores
                )));
            }
        }
        if config.replication_factor as usize > nodes.len() {
            return Err(GatewayError::InvalidArgument(format!(
                "replication_factor {} needs as many nodes, but only {} are available",
                config.replication_factor,
                nodes.len()
            )));
        }
        let route = StoreRoute { shards: place(config.shards, config.replication_factor, nodes), config };
        let pb_config = config_to_pb(&route.config);
        let mut created: Vec<(String, u32)> = Vec::new();
        for (shard, replicas) in route.shards.iter().enumerate() {
            for url in replicas {
                let req = pb::CreateShardRequest {
                    shard: Some(pb::ShardId { store: route.config.name.clone(), shard: shard as u32 }),
                    config: Some(pb_config.clone()),
                };
                if let Err(status) = self.client(url)?.create_shard(req).await {
                    // Undo the replicas already made so a failed create leaves nothing behind.
                    for (url, shard) in created {
                        let shard = Some(pb::ShardId { store: route.config.name.clone(), shard });
                        if let Ok(mut c) = self.client(&url) {
                            let _ = c.drop_shard(pb::DropShardRequest { shard }).await;
                        }
                    }
                    return Err(status.into());
                }
                created.push((url.clone(), shard as u32));
            }
        }
        let mut table = self.table_mut();
        table.version += 1;
        table.stores.insert(route.config.name.clone(), route.clone());
        Ok(route)
    }

    pub async fn drop_store(&self, store: &str) -> Result<()> {
        let _catalog = self.catalog_lock.lock().await;
        let route = self.resolve(store).await?;
        if let Catalog::Manager(m) = &self.catalog {
            m.clone().drop_store(pb::DropStoreRequest { name: store.to_string() }).await?;
            return self.refresh().await;
        }
        for (shard, replicas) in route.shards.iter().enumerate() {
            for url in replicas {
                let shard = Some(pb::ShardId { store: store.to_string(), shard: shard as u32 });
                match self.client(url)?.drop_shard(pb::DropShardRequest { shard }).await {
                    Ok(_) => {}
                    Err(s) if s.code() == tonic::Code::NotFound => {}
                    Err(s) => return Err(s.into()),
                }
            }
        }
        let mut table = self.table_mut();
        table.version += 1;
        table.stores.remove(store);
        Ok(())
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
        let mut by_shard: BTreeMap<u32, Vec<pb::Point>> = BTreeMap::new();
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
            let shard = route.shard_of(&p.id);
            let point = pb::Point { id: p.id, vector: p.vector, metadata_json: metadata, version: self.clock.now() };
            by_shard.entry(shard).or_default().push(point);
        }
        let total: u64 = by_shard.values().map(|v| v.len() as u64).sum();
        let mut summary = UpsertSummary::default();
        let mut done = 0u64;
        for (shard, points) in by_shard {
            for chunk in points.chunks(self.options.write_batch.max(1)) {
                let acks = self.write_replicas(&route, shard, chunk.to_vec()).await?;
                summary.inserted += acks.applied as u64;
                summary.stale += acks.stale as u64;
                done += chunk.len() as u64;
                if !progress(done, total) {
                    return Err(GatewayError::Cancelled);
                }
            }
        }
        Ok(summary)
    }

    /// Sends one batch to every replica of a shard in parallel; succeeds after the store's write consistency.
    async fn write_replicas(
        &self,
        route: &StoreRoute,
        shard: u32,
        points: Vec<pb::Point>,
    ) -> Result<pb::UpsertResponse> {
        let min_version = points.iter().map(|p| p.version).min().unwrap_or(0);
        let req = pb::UpsertRequest {
            shard: Some(pb::ShardId { store: route.config.name.clone(), shard }),
            points,
            sync: false,
        };
        let mut acks = self
            .on_replicas(route, shard, min_version, |mut c| {
                let req = req.clone();
                async move { c.upsert(req).await.map(tonic::Response::into_inner) }
            })
            .await?;
        Ok(acks.swap_remove(0))
    }

    /// Runs `call` on every replica of `shard` in parallel and returns once the store's write consistency is met
    /// (the other replicas finish in the background), with the answers received so far; or the last error when
    /// too few replicas answered. A replica whose call fails for any reason but a bad request (which every replica
    /// refuses alike) is reported to the index manager, which repairs it from a peer from `min_version` on.
    async fn on_replicas<T, F, Fut>(&self, route: &StoreRoute, shard: u32, min_version: u64, call: F) -> Result<Vec<T>>
    where
        T: Send + 'static,
        F: Fn(NodeClient) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>> + Send + 'static,
    {
        let placed = route.shards[shard as usize].len();
        let replicas = self.table().writable(&route.shards[shard as usize]);
        let needed = required_acks(route.config.write_consistency, replicas.len());
        if needed > replicas.len() || replicas.is_empty() {
            return Err(GatewayError::Unavailable(format!(
                "shard {shard} of store '{}' has {} of {placed} replicas up; this write needs {} acks",
                route.config.name,
                replicas.len(),
                needed.max(1)
            )));
        }
        let mut calls = JoinSet::new();
        for url in &replicas {
            let answer = call(self.client(url)?);
            let report = match &self.catalog {
                Catalog::Manager(m) => Some((m.clone(), url.clone())),
                Catalog::Nodes(_) => None,
            };
            let id = pb::ShardId { store: route.config.name.clone(), shard };
            calls.spawn(rvdb_proto::rpc::in_current_request(async move {
                let result = answer.await;
                let failed = match &result {
                    Err(status) if status.code() != tonic::Code::InvalidArgument => Some(status.message().to_string()),
                    _ => None,
                };
                if let (Some(error), Some((mut manager, url))) = (failed, report) {
                    tracing::warn!(store = %id.store, shard, replica = %url, %error, "replica write failed; reporting it for repair");
                    let req = pb::ReportMissedWriteRequest { shard: Some(id), node_address: url, min_version };
                    if let Err(e) = manager.report_missed_write(req).await {
                        tracing::warn!(error = %e.message(), "cannot report a missed write to the index manager");
                    }
                }
                result
            }));
        }
        let (mut acks, mut last_err) = (Vec::with_capacity(replicas.len()), None);
        while let Some(joined) = calls.join_next().await {
            match joined {
                Ok(Ok(answer)) => {
                    acks.push(answer);
                    if acks.len() >= needed {
                        calls.detach_all();
                        return Ok(acks);
                    }
                }
                Ok(Err(status)) => last_err = Some(GatewayError::from_status(status)),
                Err(e) => last_err = Some(GatewayError::Backend(format!("replica task failed: {e}"))),
            }
        }
        Err(last_err.unwrap_or_else(|| GatewayError::Unavailable(format!("shard {shard}: no replica answered"))))
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
                .read_shard(&route, shard, |mut c| {
                    let req = req.clone();
                    async move { c.get(req).await.map(tonic::Response::into_inner) }
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
        if ids.is_empty() {
            return Err(GatewayError::InvalidArgument("no ids given: send at least one".into()));
        }
        for (i, id) in ids.iter().enumerate() {
            validate_point_id(id).map_err(|e| GatewayError::InvalidArgument(format!("ids[{i}]: {e}")))?;
        }
        let version = self.clock.now();
        let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for id in ids {
            by_shard.entry(route.shard_of(&id)).or_default().push(id);
        }
        let mut deleted = 0u64;
        for (shard, ids) in by_shard {
            let req = pb::DeleteRequest {
                shard: Some(pb::ShardId { store: store.to_string(), shard }),
                ids,
                version,
                sync: false,
            };
            let acks = self
                .on_replicas(&route, shard, version, |mut c| {
                    let req = req.clone();
                    async move { c.delete(req).await.map(tonic::Response::into_inner) }
                })
                .await?;
            deleted += acks.iter().map(|r| r.deleted).max().unwrap_or(0) as u64;
        }
        Ok(deleted)
    }

    /// k-NN over every shard (each by its own plan: exact, candidates or HNSW), merged into the global top-k.
    pub async fn search(&self, store: &str, vector: Vec<f32>, params: &SearchParams) -> Result<Vec<SearchHit>> {
        let SearchParams { k, with_vector, with_metadata, .. } = *params;
        let route = self.resolve(store).await?;
        validate_vector(&vector, route.config.dimension, route.config.metric)
            .map_err(|e| GatewayError::InvalidArgument(format!("vector: {e}")))?;
        validate_k(k).map_err(|e| GatewayError::InvalidArgument(format!("k: {e}")))?;
        let filter_json = match &params.filter {
            None | Some(serde_json::Value::Null) => String::new(),
            Some(f) => {
                rvdb_core::filter::Filter::parse(f, "filter")?;
                f.to_string()
            }
        };
        if params.ef.is_some_and(|ef| ef == 0 || ef > 100_000) {
            return Err(GatewayError::InvalidArgument("ef must be between 1 and 100000".into()));
        }
        let mut tasks = JoinSet::new();
        for shard in 0..route.shards.len() as u32 {
            let req = pb::SearchRequest {
                shard: Some(pb::ShardId { store: store.to_string(), shard }),
                vector: vector.clone(),
                k,
                with_vector,
                with_metadata,
                filter_json: filter_json.clone(),
                ef: params.ef.unwrap_or(0),
                exact: params.exact,
            };
            let replicas = self.replica_clients(&route, shard)?;
            tasks.spawn(rvdb_proto::rpc::in_current_request(first_replica(replicas, shard, move |mut c| {
                let req = req.clone();
                async move { c.search(req).await.map(|r| r.into_inner().results) }
            })));
        }
        let mut all = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            let results = joined.map_err(|e| GatewayError::Backend(format!("search task failed: {e}")))??;
            all.extend(results);
        }
        all.sort_by(|a, b| a.distance.total_cmp(&b.distance).then_with(|| a.id.cmp(&b.id)));
        all.truncate(k as usize);
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
            disk_bytes: 0,
            index_status: String::new(),
            quantization: c.index.quantization.as_str().to_string(),
        };
        let mut statuses = Vec::new();
        for shard in 0..route.shards.len() as u32 {
            let req = pb::StatsRequest { shard: Some(pb::ShardId { store: store.to_string(), shard }) };
            let s = self
                .read_shard(&route, shard, |mut cl| {
                    let req = req.clone();
                    async move { cl.stats(req).await.map(tonic::Response::into_inner) }
                })
                .await?
                .stats
                .unwrap_or_default();
            stats.points += s.points;
            stats.deleted_points += s.tombstones;
            stats.memory_bytes += s.index_memory_bytes;
            stats.disk_bytes += s.disk_bytes;
            statuses.push(s.index_status);
        }
        stats.memory_bytes_per_vector = stats.memory_bytes.checked_div(stats.points).unwrap_or(0);
        stats.index_status = ["building", "ready", "none"]
            .into_iter()
            .find(|st| statuses.iter().any(|s| s == st))
            .unwrap_or("none")
            .to_string();
        Ok(stats)
    }

    /// Opens a scan of one shard on the first replica that answers. The node takes its RocksDB snapshot when the
    /// scan opens, so the stream is a consistent view of the shard as of this call.
    pub async fn scan_shard(
        &self,
        store: &str,
        shard: u32,
        with_vector: bool,
    ) -> Result<tonic::Streaming<pb::ScanChunk>> {
        let route = self.resolve(store).await?;
        let req = pb::ScanRequest {
            shard: Some(pb::ShardId { store: store.to_string(), shard }),
            start_after: String::new(),
            chunk_size: 1000,
            with_vector,
            with_metadata: true,
        };
        self.read_shard(&route, shard, |mut c| {
            let req = req.clone();
            async move { c.scan(req).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    /// Flushes every replica (that is not down) of every shard of `store` and fsyncs their WALs.
    pub async fn sync(&self, store: &str) -> Result<()> {
        let route = self.resolve(store).await?;
        for (shard, replicas) in route.shards.iter().enumerate() {
            let writable = self.table().writable(replicas);
            for url in writable {
                let shard = Some(pb::ShardId { store: store.to_string(), shard: shard as u32 });
                self.client(&url)?.flush(pb::FlushRequest { shard }).await?;
            }
        }
        Ok(())
    }

    /// Clients for the replicas of `shard` that may serve reads, in placement order, with `read_timeout`.
    fn replica_clients(&self, route: &StoreRoute, shard: u32) -> Result<Vec<NodeClient>> {
        let readable = self.table().readable(&route.shards[shard as usize]);
        readable.iter().map(|url| self.client_with(url, self.options.read_timeout)).collect()
    }

    /// Runs a read on the first replica of `shard` that answers.
    async fn read_shard<T, F, Fut>(&self, route: &StoreRoute, shard: u32, call: F) -> Result<T>
    where
        F: Fn(NodeClient) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
    {
        first_replica(self.replica_clients(route, shard)?, shard, call).await
    }
}

/// Tries `call` on each replica in order until one answers; fails over on unavailable / deadline errors, returns
/// any other error at once. Owns its clients, so scatter-gather can spawn it per shard.
async fn first_replica<T, F, Fut>(replicas: Vec<NodeClient>, shard: u32, call: F) -> Result<T>
where
    F: Fn(NodeClient) -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
{
    let mut last = None;
    for client in replicas {
        match call(client).await {
            Ok(v) => return Ok(v),
            Err(s) if is_retryable(&s) => last = Some(s),
            Err(s) => return Err(s.into()),
        }
    }
    Err(last.map_or_else(
        || GatewayError::Unavailable(format!("shard {shard} has no replica that is up")),
        GatewayError::from_status,
    ))
}

/// Installs `new` unless the table there is already newer (a watch update and a fetch can race).
fn install(table: &RwLock<RoutingTable>, new: RoutingTable) {
    let mut t = table.write().unwrap_or_else(|p| p.into_inner());
    if new.version >= t.version {
        *t = new;
    }
}

/// Follows the manager's routing table for as long as the gateway lives, re-subscribing after errors.
async fn watch_table(mut manager: IndexManagerClient<Channel>, table: Arc<RwLock<RoutingTable>>) {
    loop {
        let known = table.read().unwrap_or_else(|p| p.into_inner()).version;
        match manager.watch_routing_table(pb::WatchRoutingTableRequest { known_version: known }).await {
            Ok(stream) => {
                let mut stream = stream.into_inner();
                loop {
                    match stream.message().await {
                        Ok(Some(t)) => {
                            tracing::debug!(version = t.version, "routing table update");
                            install(&table, RoutingTable::from_pb(t));
                        }
                        Ok(None) => break,
                        Err(s) => {
                            tracing::warn!(error = %s.message(), "routing table watch broke; re-subscribing");
                            break;
                        }
                    }
                }
            }
            Err(s) => tracing::warn!(error = %s.message(), "cannot watch the routing table; retrying"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn is_retryable(s: &tonic::Status) -> bool {
    matches!(
        s.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Unknown | tonic::Code::Cancelled
    )
}

/// Acks a write needs from the `live` replicas (those not down): the configured consistency, or a majority of
/// the live ones when it is 0. An explicit consistency is strict: more than `live` makes the write fail.
pub fn required_acks(write_consistency: u32, live: usize) -> usize {
    if write_consistency == 0 { live / 2 + 1 } else { write_consistency as usize }
}
