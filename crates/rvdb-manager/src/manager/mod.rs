//! The manager's state and what it does with it.
//!
//! **State.** Stores (config + the node ids of each shard's replicas, first = preferred reader) and nodes
//! (address, state). Both are kept in a RocksDB instance (`store:<name>`, `node:<id>`, `version` keys, synced
//! writes) so that a restarted manager has the same catalog and routing version. Heartbeat times live in memory
//! only: after a restart every node gets a fresh timeout.
//!
//! **Membership.** A node registers when its process starts and heartbeats every `heartbeat_interval`. Without a
//! heartbeat for `node_timeout` it is DOWN: gateways stop reading from it and stop waiting for its acks. A node
//! that registers again (it restarted) or heartbeats again (a partition healed) while it holds replicas is
//! CATCHING_UP: gateways send it writes but no reads, and the manager catches up each of its replicas from a live
//! peer (below) before it marks the node UP.
//!
//! **Catch-up.** For each replica of the node: create it if missing, read its `max_version`, and send the node
//! `CatchUp(source = a live peer, since = max_version − catch_up_margin)`; the node pulls the peer's changes
//! since then (points and tombstones with their versions) and applies them by last-write-wins. The margin covers
//! writes that were still in flight, or issued by a gateway whose clock lags, when the node went away: those can
//! carry versions a little below the newest the node holds. A second pass after `heartbeat_interval` picks up
//! writes that reached the peer from gateways that had not yet learnt the node was writable again.
//!
//! **Write fencing.** Each shard has a placement epoch: the routing version at which its set of writable replicas
//! last changed (the store was created; a replica's node went down, came back or restarted). The routing table
//! carries it, gateways send it with every write, and a replica refuses a write of an older epoch than the one it
//! knows (FAILED_PRECONDITION with the epoch it holds; the gateway fetches a newer table and sends the write
//! again). Replicas learn epochs from the manager (pushed when they change, and synchronously before a catch-up)
//! and from newer writes, and keep them on disk. Before a returning node's catch-up reads its peers, the manager
//! fences every live replica of its shards and waits for them: after that, a write routed by a table from before
//! the node's return can no longer land on a peer without the node, so the snapshot the node pulls holds
//! everything it missed. Without it that rested on timing (every gateway learning of the return within one
//! heartbeat, the second pass) and on anti-entropy for the rest. A catalog from before epochs has epoch 0 until
//! its first change: unfenced, as before.
//!
//! **Placement.** A new store's shard replicas go to UP nodes, each shard on distinct nodes, always to the node
//! with the fewest replicas so far (ties by node id), so shards spread evenly across the cluster.
//!
//! **Orphans and lost replicas.** Heartbeats list the replicas a node holds; one the catalog does not assign to
//! that node (its store was dropped while the node was away) is dropped on the node, and one the catalog assigns
//! but the node lacks is re-created and refilled from a peer.
//!
//! **Repairs.** A gateway whose write to a replica failed (while other replicas acknowledged it) reports the
//! replica and the write's version; the manager has that replica pull the peer's changes from that version on.
//! This is what keeps replicas equal when `write_consistency` is below the replication factor and a node fails
//! one write without going down.
//!
//! **Anti-entropy.** In the background the manager compares every shard's replicas bucket by bucket and has them
//! pull from each other the buckets that differ, so replicas converge after any fault without a restart, even
//! when no one reported the divergence ([`anti_entropy`]).
//!
//! **Shard transfer.** A replica moves to another node while reads and writes continue: the new replica joins
//! the set filling (writes, no reads) under a new epoch, is filled from a live replica, then replaces the old one
//! ([`transfer`]).
//!
//! **Resharding.** A live store's shard count changes, up or down, copying only the points that change shard, with
//! writes sent to both layouts until the switch ([`reshard`]).
//!
//! Modules by concern: [`catalog`], [`placement`], [`rebalance`] (plans: moves that balance nodes, new homes for a
//! departed node's replicas), [`transfer`] (moving a replica), [`reshard`], [`membership`] (with catch-up), [`repair`],
//! [`anti_entropy`]; this file holds the state, its persistence and the routing table it publishes.

mod anti_entropy;
mod catalog;
mod membership;
mod operations;
mod placement;
pub mod rebalance;
mod repair;
pub mod reshard;
mod transfer;

pub use anti_entropy::{ANTI_ENTROPY_BUCKETS, AntiEntropyStats};
pub use placement::place;
pub use reshard::ReshardReport;
pub use transfer::{MoveReport, RemoveReport};

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rvdb_core::StoreConfig;
use rvdb_proto::api::{NodeDirectory, StorageApi};
use rvdb_proto::convert::config_to_pb;
use rvdb_proto::v1 as pb;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::error::{ManagerError, Result};
use tonic::transport::Endpoint;

type Db = rocksdb::DB;

#[derive(Debug, Clone)]
pub struct ManagerOptions {
    pub data_dir: PathBuf,
    /// How often nodes send heartbeats (told to them when they register).
    pub heartbeat_interval: Duration,
    /// A node without a heartbeat for this long is DOWN.
    pub node_timeout: Duration,
    /// The seed's `max_vector_stores`, for the whole cluster.
    pub max_vector_stores: usize,
    /// How far below a returning replica's newest version its catch-up starts (see the module docs).
    pub catch_up_margin: Duration,
    /// Deadline of one command to a node (catch-up streams can take longer: they have none).
    pub call_timeout: Duration,
    /// False keeps the catalog in memory (an embedded `rvdb serve` with `persistence_enabled = false`, whose
    /// stores do not outlive the process either).
    pub persistence: bool,
    /// How often anti-entropy compares every shard's replicas (zero: never; see [`anti_entropy`]).
    pub anti_entropy_interval: Duration,
    /// Pause between two shards in an anti-entropy round (its rate limit).
    pub anti_entropy_pause: Duration,
    /// When a new node joins, move replicas to it until the up nodes are balanced ([`rebalance`]).
    pub rebalance_on_join: bool,
    /// Shard transfers a rebalance runs at a time (its request may ask for another number).
    pub max_parallel_transfers: usize,
}

impl ManagerOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
            max_vector_stores: 100,
            catch_up_margin: Duration::from_secs(60),
            call_timeout: Duration::from_secs(30),
            persistence: true,
            anti_entropy_interval: Duration::from_secs(60),
            anti_entropy_pause: Duration::from_millis(100),
            rebalance_on_join: true,
            max_parallel_transfers: 2,
        }
    }
}

/// A store in the catalog.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoreEntry {
    pub config: StoreConfig,
    /// Per shard, the node ids of its replicas (first = preferred for reads).
    pub shards: Vec<Vec<String>>,
    /// Per shard, its placement epoch: the routing version at which its writable replicas last changed (absent in
    /// catalogs written before epochs: 0, unfenced until the next change). See "Write fencing" in the module docs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub epochs: Vec<u64>,
    /// A reshard in progress ([`reshard`]): `shards` then lists every shard of both layouts and
    /// `config.shards` is the layout reads route by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resharding: Option<reshard::Resharding>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeState {
    Up,
    Down,
    CatchingUp,
}

impl NodeState {
    fn to_pb(self) -> pb::NodeState {
        match self {
            NodeState::Up => pb::NodeState::Up,
            NodeState::Down => pb::NodeState::Down,
            NodeState::CatchingUp => pb::NodeState::CatchingUp,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct NodeRecord {
    address: String,
    state: NodeState,
}

#[derive(Debug)]
struct NodeEntry {
    address: String,
    state: NodeState,
    last_seen: Instant,
    last_heartbeat_unix_ms: u64,
    /// Bumped on every registration and every return, so a catch-up started for an earlier life is not trusted.
    epoch: u64,
    catching_up: bool,
    /// The node left (`LeaveCluster`, it is shutting down): a heartbeat still in flight from that process does not
    /// bring it back; only a new registration does.
    left: bool,
}

#[derive(Debug, Default)]
struct State {
    version: u64,
    /// Made with the catalog (`cluster_id` key), never changed: see [`Manager::check_cluster`].
    cluster_id: String,
    nodes: BTreeMap<String, NodeEntry>,
    stores: BTreeMap<String, StoreEntry>,
    /// Stores whose shards are being created: their replicas are not orphans yet.
    creating: BTreeSet<String>,
    /// Replicas to repair after missed writes: (node id, store, shard) → lowest missed version.
    repairs: BTreeMap<(String, String, u32), u64>,
    /// Shard transfers in progress, by (store, shard) ([`transfer`]).
    transfers: BTreeMap<(String, u32), transfer::Transfer>,
    /// Nodes removed for good (`remove_node`): they may join again only as new nodes (an empty data directory).
    removed: BTreeSet<String>,
    /// Replicas that left the catalog (a transfer's source, a shrinking reshard's removed shards) but serve
    /// gateways whose table is a moment old for [`OLD_TABLE_GRACE`]: not orphans yet. (node id, store, shard).
    retiring: BTreeSet<(String, String, u32)>,
}

/// How long a replica that left the routing table keeps serving reads before it is dropped: gateways get the new
/// table from the watch stream within milliseconds; this covers a read routed just before, and a busy machine.
pub const OLD_TABLE_GRACE: Duration = Duration::from_secs(2);

impl StoreEntry {
    pub fn new(config: StoreConfig, shards: Vec<Vec<String>>) -> Self {
        Self { config, shards, epochs: Vec::new(), resharding: None }
    }

    /// The placement epoch of `shard` (0 before the first change of a catalog from before epochs).
    pub fn epoch(&self, shard: u32) -> u64 {
        self.epochs.get(shard as usize).copied().unwrap_or(0)
    }

    /// The config a replica of this store is created with: during a reshard the shards of both layouts exist, and
    /// a node checks a shard's number against the count it is given.
    pub fn replica_config(&self) -> StoreConfig {
        StoreConfig { shards: self.config.shards.max(self.shards.len() as u32), ..self.config.clone() }
    }

    /// Every replica as `(shard, node id)`.
    fn replicas(&self) -> impl Iterator<Item = (u32, &String)> {
        self.shards.iter().enumerate().flat_map(|(i, r)| r.iter().map(move |n| (i as u32, n)))
    }
}

impl State {
    /// Whether `node_id` holds a replica of a shard that has other replicas: only then can it have missed writes
    /// that exist elsewhere (a shard's only replica misses nothing: no write succeeds without it), so only then
    /// does a returning node need to catch up before it serves reads. An embedded `rvdb serve` (one node) is
    /// thus readable the moment it registers.
    fn hosts_replicas(&self, node_id: &str) -> bool {
        self.stores.values().flat_map(|s| &s.shards).any(|r| r.len() > 1 && r.iter().any(|n| n == node_id))
    }

    /// Whether the catalog gives `node_id` a replica of `store`'s `shard`.
    fn assigns(&self, store: &str, shard: u32, node_id: &str) -> bool {
        self.stores
            .get(store)
            .and_then(|e| e.shards.get(shard as usize))
            .is_some_and(|r| r.iter().any(|n| n == node_id))
    }

    /// Whether a replica a node holds belongs there: assigned to it, of a store being created right now, or
    /// retiring (see `retiring`).
    fn claims(&self, id: &pb::ShardId, node_id: &str) -> bool {
        self.creating.contains(&id.store)
            || self.assigns(&id.store, id.shard, node_id)
            || self.retiring.contains(&(node_id.to_string(), id.store.clone(), id.shard))
    }

    fn address(&self, node_id: &str) -> Option<String> {
        self.nodes.get(node_id).map(|n| n.address.clone())
    }

    /// The writable replicas of every shard `node_id` holds change (it went down, came back or restarted): their
    /// placement epochs become the routing version about to be published, and their store records go in `batch`.
    /// Returns the shards with their new epoch.
    fn bump_epochs(&mut self, node_id: &str, batch: &mut rocksdb::WriteBatch) -> Result<Vec<pb::ShardEpoch>> {
        let epoch = self.version + 1;
        let mut changed = Vec::new();
        for (name, entry) in self.stores.iter_mut() {
            let mut touched = false;
            for (shard, replicas) in entry.shards.iter().enumerate() {
                if replicas.iter().any(|n| n == node_id) {
                    entry.epochs.resize(entry.shards.len(), 0);
                    entry.epochs[shard] = epoch;
                    touched = true;
                    changed.push(pb::ShardEpoch {
                        shard: Some(pb::ShardId { store: name.clone(), shard: shard as u32 }),
                        epoch,
                    });
                }
            }
            if touched {
                batch.put(format!("store:{name}"), encode(&*entry)?);
            }
        }
        Ok(changed)
    }

    /// The fences to send for `shards`: per node address (of every replica whose node is not down), the shards it
    /// holds with their current epochs.
    fn fences(&self, shards: &[pb::ShardId]) -> BTreeMap<String, Vec<pb::ShardEpoch>> {
        let mut out: BTreeMap<String, Vec<pb::ShardEpoch>> = BTreeMap::new();
        for id in shards {
            let Some(entry) = self.stores.get(&id.store) else { continue };
            let Some(replicas) = entry.shards.get(id.shard as usize) else { continue };
            for n in replicas {
                let Some(node) = self.nodes.get(n).filter(|n| n.state != NodeState::Down) else { continue };
                out.entry(node.address.clone())
                    .or_default()
                    .push(pb::ShardEpoch { shard: Some(id.clone()), epoch: entry.epoch(id.shard) });
            }
        }
        out
    }

    fn table(&self) -> pb::RoutingTable {
        pb::RoutingTable {
            version: self.version,
            cluster_id: self.cluster_id.clone(),
            nodes: self
                .nodes
                .iter()
                .map(|(id, n)| pb::NodeInfo {
                    node_id: id.clone(),
                    address: n.address.clone(),
                    state: n.state.to_pb() as i32,
                    last_heartbeat_unix_ms: n.last_heartbeat_unix_ms,
                })
                .collect(),
            stores: self.stores.values().map(route_to_pb).collect(),
            transfers: self
                .transfers
                .iter()
                .map(|((store, shard), t)| pb::ShardTransfer {
                    store: store.clone(),
                    shard: *shard,
                    from_node_id: t.from.clone(),
                    to_node_id: t.to.clone(),
                    phase: "filling".into(),
                    started_unix_ms: t.started_unix_ms,
                    records_copied: t.copied,
                    records_total: t.total,
                })
                .collect(),
        }
    }
}

pub fn route_to_pb(s: &StoreEntry) -> pb::StoreRoute {
    pb::StoreRoute {
        config: Some(config_to_pb(&s.config)),
        shards: s
            .shards
            .iter()
            .enumerate()
            .map(|(i, r)| pb::ShardPlacement { shard: i as u32, replica_node_ids: r.clone(), epoch: s.epoch(i as u32) })
            .collect(),
        resharding: s.resharding.as_ref().map(reshard::Resharding::to_pb),
    }
}

fn unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A catalog record as stored (JSON); a record that cannot be encoded fails the change instead of persisting
/// an empty one.
fn encode(record: &impl Serialize) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|e| ManagerError::Storage(format!("cannot encode a catalog record: {e}")))
}

fn storage(e: impl std::fmt::Display) -> ManagerError {
    ManagerError::Storage(e.to_string())
}

pub struct Manager {
    /// This manager, for work it leaves running in the background.
    me: std::sync::Weak<Manager>,
    db: Db,
    state: Mutex<State>,
    /// Serialises catalog changes (create / drop), which span several node calls.
    admin: tokio::sync::Mutex<()>,
    table_tx: watch::Sender<Arc<pb::RoutingTable>>,
    /// The storage nodes, by address: in `rvdb serve` the node in this process is called directly.
    nodes: Arc<NodeDirectory>,
    /// Whether [`Manager::open`] created the catalog (none was on disk).
    fresh: bool,
    options: ManagerOptions,
    /// What the anti-entropy loop has done ([`anti_entropy`]).
    anti_entropy: AntiEntropyStats,
    /// Set by [`Manager::close`].
    closed: watch::Sender<bool>,
    /// Running transfers and reshards, cancellable ([`operations`]).
    cancels: operations::Cancels,
    /// Held by the running rebalance ([`Manager::rebalance`]).
    rebalancing: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager").field("data_dir", &self.options.data_dir).finish_non_exhaustive()
    }
}

impl Manager {
    /// Opens (or creates) the manager's RocksDB under `options.data_dir` and loads the catalog and node list.
    pub fn open(options: ManagerOptions) -> Result<Arc<Manager>> {
        Self::open_with(options, NodeDirectory::new())
    }

    /// [`Self::open`], reaching the storage nodes through `nodes` (which knows the ones in this process).
    pub fn open_with(options: ManagerOptions, nodes: Arc<NodeDirectory>) -> Result<Arc<Manager>> {
        let mut db_options = rocksdb::Options::default();
        if options.persistence {
            std::fs::create_dir_all(&options.data_dir)
                .map_err(|e| storage(format!("cannot create {}: {e}", options.data_dir.display())))?;
        } else {
            db_options.set_env(&rocksdb::Env::mem_env().map_err(storage)?);
        }
        let path = options.data_dir.join("catalog");
        let fresh = !options.persistence || !path.join("CURRENT").exists();
        db_options.create_if_missing(true);
        let db = Db::open(&db_options, path).map_err(storage)?;
        let mut state = State::default();
        for item in db.iterator(rocksdb::IteratorMode::Start) {
            let (k, v) = item.map_err(storage)?;
            let key = String::from_utf8_lossy(&k);
            if let Some(name) = key.strip_prefix("store:") {
                let entry: StoreEntry =
                    serde_json::from_slice(&v).map_err(|e| storage(format!("store {name}: {e}")))?;
                state.stores.insert(name.to_string(), entry);
            } else if let Some(id) = key.strip_prefix("node:") {
                let r: NodeRecord = serde_json::from_slice(&v).map_err(|e| storage(format!("node {id}: {e}")))?;
                state.nodes.insert(
                    id.to_string(),
                    NodeEntry {
                        address: r.address,
                        state: r.state,
                        last_seen: Instant::now(),
                        last_heartbeat_unix_ms: 0,
                        epoch: 0,
                        catching_up: false,
                        left: false,
                    },
                );
            } else if key == "version" {
                state.version = v.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes);
            } else if let Some(id) = key.strip_prefix("removed:") {
                state.removed.insert(id.to_string());
            } else if let Some(name) = key.strip_prefix("transfer:") {
                let (store, shard) = name.rsplit_once('#').unwrap_or((name, ""));
                let t: transfer::Transfer =
                    serde_json::from_slice(&v).map_err(|e| storage(format!("transfer {name}: {e}")))?;
                if let Ok(shard) = shard.parse() {
                    state.transfers.insert((store.to_string(), shard), t);
                }
            } else if key == "cluster_id" {
                state.cluster_id = String::from_utf8_lossy(&v).into_owned();
            }
        }
        if state.cluster_id.is_empty() {
            // a new catalog (or one from before cluster ids): a new cluster
            state.cluster_id = format!("{:032x}", rand::random::<u128>());
            let mut wo = rocksdb::WriteOptions::default();
            wo.set_sync(options.persistence);
            db.put_opt("cluster_id", &state.cluster_id, &wo).map_err(storage)?;
        }
        tracing::info!(
            stores = state.stores.len(),
            nodes = state.nodes.len(),
            version = state.version,
            "catalog loaded"
        );
        let (table_tx, _) = watch::channel(Arc::new(state.table()));
        let manager = Arc::new_cyclic(|me| Manager {
            me: me.clone(),
            db,
            state: Mutex::new(state),
            admin: tokio::sync::Mutex::new(()),
            table_tx,
            nodes,
            fresh,
            options,
            anti_entropy: AntiEntropyStats::default(),
            cancels: operations::Cancels::default(),
            rebalancing: tokio::sync::Mutex::new(()),
            closed: watch::Sender::new(false),
        });
        manager.recover_transfers()?;
        manager.spawn_resume_reshards();
        Ok(manager)
    }

    pub fn options(&self) -> &ManagerOptions {
        &self.options
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self, batch: rocksdb::WriteBatch) -> Result<()> {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(true);
        self.db.write_opt(batch, &wo).map_err(storage)
    }

    fn node_record(batch: &mut rocksdb::WriteBatch, id: &str, n: &NodeEntry) -> Result<()> {
        let record = NodeRecord { address: n.address.clone(), state: n.state };
        batch.put(format!("node:{id}"), encode(&record)?);
        Ok(())
    }

    /// Bumps the routing version, persists it with `batch`, and sends the new table to every watcher.
    fn publish(&self, state: &mut State, mut batch: rocksdb::WriteBatch) -> Result<u64> {
        state.version += 1;
        batch.put("version", state.version.to_le_bytes());
        self.write(batch)?;
        self.table_tx.send_replace(Arc::new(state.table()));
        Ok(state.version)
    }

    pub fn routing_table(&self) -> Arc<pb::RoutingTable> {
        self.table_tx.borrow().clone()
    }

    pub fn watch(&self) -> watch::Receiver<Arc<pb::RoutingTable>> {
        self.table_tx.subscribe()
    }

    /// The process is shutting down: routing-table watches end (so a graceful shutdown of the gRPC server does
    /// not wait forever for the gateways' endless streams; they reconnect to the next manager).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// The cluster this manager's catalog belongs to (made with the catalog).
    pub fn cluster_id(&self) -> String {
        self.state().cluster_id.clone()
    }

    /// Refuses a node that joined another cluster: a manager restarted with an empty (or another) data directory
    /// must not take in the nodes of the cluster it lost, as if their stores did not exist. (Empty: a new node.)
    pub fn check_cluster(&self, node_cluster_id: &str) -> Result<()> {
        let own = self.cluster_id();
        if !node_cluster_id.is_empty() && node_cluster_id != own {
            return Err(ManagerError::WrongCluster(format!(
                "this node belongs to cluster {node_cluster_id}, but this index manager's catalog is cluster {own}: \
                 was the manager's data directory lost or replaced? Restore it (or start the node on an empty \
                 data directory to join this cluster as a new node)"
            )));
        }
        Ok(())
    }

    /// Refuses a node removed for good (`remove_node`) that comes back with its old data (`cluster_id` set): its
    /// replicas were re-created elsewhere. With an empty data directory it joins again as a new node.
    pub fn check_removed(&self, node_id: &str, node_cluster_id: &str) -> Result<()> {
        let mut state = self.state();
        if !state.removed.contains(node_id) {
            return Ok(());
        }
        if !node_cluster_id.is_empty() {
            return Err(ManagerError::WrongCluster(format!(
                "node {node_id:?} was removed from this cluster (rvdb remove-node) and its replicas now live on other \
                 nodes: it can join again only as a new node, started on an empty data directory"
            )));
        }
        state.removed.remove(node_id);
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete(format!("removed:{node_id}"));
        self.write(batch)
    }

    /// Whether [`Manager::close`] was called, as a watch.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    /// Tells the live replicas of `changed` shards their new placement epoch, in the background (best effort: the
    /// writers' own tables carry it too, and a catch-up fences synchronously before it relies on it).
    fn push_epochs(&self, state: &State, changed: &[pb::ShardEpoch]) {
        if changed.is_empty() {
            return;
        }
        let ids: Vec<pb::ShardId> = changed.iter().filter_map(|e| e.shard.clone()).collect();
        let calls: Vec<(Arc<dyn StorageApi>, pb::FenceShardsRequest)> = state
            .fences(&ids)
            .into_iter()
            .filter_map(|(address, shards)| Some((self.client(&address).ok()?, pb::FenceShardsRequest { shards })))
            .collect();
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        runtime.spawn(async move {
            for (client, req) in calls {
                if let Err(e) = client.fence_shards(req).await {
                    tracing::debug!(error = %e.message(), "cannot push placement epochs to a node (it fences at its next write or catch-up)");
                }
            }
        });
    }

    /// Fences every live replica of `shards` at its current epoch and waits for all: afterwards no write routed by
    /// an older table is in flight or accepted on them. Fails if one cannot be reached.
    async fn fence(&self, shards: &[pb::ShardId]) -> Result<()> {
        let fences = self.state().fences(shards);
        for (address, shards) in fences {
            self.client(&address)?.fence_shards(pb::FenceShardsRequest { shards }).await.map_err(|status| {
                ManagerError::Node { context: format!("fencing the replicas on {address}"), status }
            })?;
        }
        Ok(())
    }

    /// The node at `address`, each call with the manager's `call_timeout`.
    fn client(&self, address: &str) -> Result<Arc<dyn StorageApi>> {
        self.client_with(address, Some(self.options.call_timeout))
    }

    /// The node at `address`, each remote call failing after `deadline` (`None`: no deadline).
    fn client_with(&self, address: &str, deadline: Option<Duration>) -> Result<Arc<dyn StorageApi>> {
        self.nodes
            .get(address, deadline)
            .map_err(|e| ManagerError::InvalidArgument(format!("bad node address {address:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvdb_core::Metric;

    #[test]
    fn placement_is_balanced_and_distinct() {
        let load: BTreeMap<String, usize> =
            [("a", 0), ("b", 0), ("c", 0)].iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let p = place(4, 2, &load).expect("enough nodes");
        let mut count: BTreeMap<&str, usize> = BTreeMap::new();
        for replicas in &p {
            assert_eq!(replicas.len(), 2);
            assert_ne!(replicas[0], replicas[1]);
            for r in replicas {
                *count.entry(r.as_str()).or_default() += 1;
            }
        }
        assert_eq!(count.values().copied().collect::<Vec<_>>(), vec![3, 3, 2], "{p:?}");
        // existing load steers new replicas to the emptiest nodes
        let loaded: BTreeMap<String, usize> =
            [("a", 5), ("b", 0), ("c", 1)].iter().map(|(k, v)| (k.to_string(), *v)).collect();
        assert_eq!(place(2, 1, &loaded), Some(vec![vec!["b".to_string()], vec!["b".to_string()]]));
        assert_eq!(place(1, 4, &load), None, "more replicas than nodes");
    }

    /// A real storage node (RocksDB in a temp dir) serving gRPC on a loopback port.
    async fn node(dir: &std::path::Path) -> (Arc<rvdb_node::Node>, String) {
        let node = Arc::new(rvdb_node::Node::open(&rvdb_node::NodeOptions::new(dir)).expect("node"));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let service = rvdb_node::service::StorageNodeService::new(node.clone()).into_server(64 << 20);
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (node, url)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stores_are_placed_limited_rebuilt_dropped_and_orphans_cleaned() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut options = ManagerOptions::new(dir.path().join("m"));
        options.max_vector_stores = 2;
        let m = Manager::open(options).expect("open");
        let (n1, u1) = node(&dir.path().join("n1")).await;
        let (n2, u2) = node(&dir.path().join("n2")).await;
        m.register_node("n1", &u1).expect("register");
        m.register_node("n2", &u2).expect("register");
        let mut hnsw = StoreConfig::new("a", 4, Metric::Cosine);
        hnsw.shards = 3;
        hnsw.replication_factor = 2;
        hnsw.index.kind = rvdb_core::IndexKind::Hnsw;
        let a = m.create_store(hnsw).await.expect("create a");
        assert_eq!(a.shards.len(), 3);
        assert_eq!(n1.shard_keys().len() + n2.shard_keys().len(), 6, "every replica was created on its node");
        m.create_store(StoreConfig::new("b", 4, Metric::Dot)).await.expect("create b");
        let err = m.create_store(StoreConfig::new("c", 4, Metric::Dot)).await.expect_err("over the limit");
        assert!(matches!(err, ManagerError::LimitReached(_)), "{err}");
        assert!(matches!(
            m.create_store(StoreConfig::new("b", 4, Metric::Dot)).await.expect_err("dup"),
            ManagerError::AlreadyExists(_)
        ));
        // index lifecycle: a rebuild on every replica of an HNSW store, refused for a flat one
        assert_eq!(m.rebuild_index("a").await.expect("rebuild"), 6);
        let flat = m.rebuild_index("b").await.expect_err("flat");
        assert!(
            matches!(&flat, ManagerError::Node { status, .. } if status.code() == tonic::Code::InvalidArgument),
            "{flat}"
        );
        // n2 goes away; "a" is dropped meanwhile; when n2 returns its heartbeat reveals the orphans, which go
        m.drop_store("b").await.expect("drop b");
        let before = n2.shard_keys().len();
        let version = m.routing_table().version;
        {
            let mut state = m.state();
            let e = state.nodes.get_mut("n2").expect("n2");
            e.address = "http://127.0.0.1:1".into(); // unreachable: the drop cannot reach it
        }
        m.drop_store("a").await.expect("drop a");
        assert!(m.routing_table().version > version);
        assert_eq!(n2.shard_keys().len(), before, "the unreachable node kept its replicas");
        m.register_node("n2", &u2).expect("back");
        let hosted: Vec<pb::ShardId> =
            n2.shard_keys().into_iter().map(|k| pb::ShardId { store: k.store, shard: k.shard }).collect();
        m.heartbeat("n2", hosted).expect("heartbeat");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !n2.shard_keys().is_empty() {
            assert!(Instant::now() < deadline, "orphans were not dropped: {:?}", n2.shard_keys());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(n1.shard_keys().is_empty());
    }

    /// Placement epochs: a store starts at its publish version; a node of a shard that restarts or leaves moves
    /// the shard's epoch to the version that publishes it (other shards keep theirs), the table carries it, it
    /// survives a manager restart, and the live replicas are told.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn placement_epochs_follow_changes_of_the_writable_replicas() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = ManagerOptions::new(dir.path().join("m"));
        let m = Manager::open(options.clone()).expect("open");
        let (n1, u1) = node(&dir.path().join("n1")).await;
        let (_n2, u2) = node(&dir.path().join("n2")).await;
        let (_n3, u3) = node(&dir.path().join("n3")).await;
        for (id, url) in [("n1", &u1), ("n2", &u2), ("n3", &u3)] {
            m.register_node(id, url).expect("register");
        }
        let mut config = StoreConfig::new("e", 2, Metric::Cosine);
        config.shards = 3;
        config.replication_factor = 2;
        let created = m.create_store(config).await.expect("create");
        let v0 = m.routing_table().version;
        let entry = m.describe_store("e").expect("describe");
        assert_eq!(entry.epochs, vec![v0; 3], "every shard starts at the version that published the store");
        assert_eq!(created, entry);
        let with_n2: Vec<u32> = (0..3).filter(|&i| entry.shards[i as usize].iter().any(|n| n == "n2")).collect();
        assert!(!with_n2.is_empty() && with_n2.len() < 3, "{:?}", entry.shards);
        // n2 restarts: the shards it holds move to the version of its registration, the others stay
        let (_, v1) = m.register_node("n2", &u2).expect("register again");
        let entry = m.describe_store("e").expect("describe");
        for shard in 0..3u32 {
            let want = if with_n2.contains(&shard) { v1 } else { v0 };
            assert_eq!(entry.epoch(shard), want, "shard {shard}");
        }
        let table = m.routing_table();
        let placement = &table.stores[0].shards;
        assert_eq!(placement.iter().map(|p| p.epoch).collect::<Vec<_>>(), entry.epochs, "the table carries them");
        // the live replicas are told: n1's replica of a shard n2 holds too learns v1
        let shared = with_n2.iter().find(|&&i| entry.shards[i as usize].iter().any(|n| n == "n1"));
        if let Some(&shard) = shared {
            let key = rvdb_node::ShardKey::new("e", shard);
            let deadline = Instant::now() + Duration::from_secs(5);
            while n1.shard(&key).expect("replica").epoch() < v1 {
                assert!(Instant::now() < deadline, "the new epoch was not pushed to n1");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        // leaving is a change too
        let v2 = m.leave("n2").expect("leave");
        assert!(with_n2.iter().all(|&s| m.describe_store("e").expect("describe").epoch(s) == v2));
        drop(m);
        let m = Manager::open(options).expect("reopen");
        assert_eq!(m.describe_store("e").expect("describe").epochs, entry_epochs_after(&with_n2, v0, v2));
    }

    fn entry_epochs_after(with_n2: &[u32], v0: u64, v2: u64) -> Vec<u64> {
        (0..3u32).map(|s| if with_n2.contains(&s) { v2 } else { v0 }).collect()
    }

    #[tokio::test]
    async fn a_fresh_catalog_adopts_complete_stores_and_single_replicas_serve_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = ManagerOptions::new(dir.path());
        let m = Manager::open(options.clone()).expect("open");
        assert!(m.is_fresh());
        let mut two = StoreConfig::new("two", 4, Metric::Cosine);
        two.shards = 2;
        let one = StoreConfig::new("one", 3, Metric::Dot);
        let id = |store: &str, shard| pb::ShardId { store: store.into(), shard };
        let found = vec![
            (
                "a".to_string(),
                vec![
                    (id("two", 0), two.clone()),
                    (id("one", 0), one.clone()),
                    (id("half", 0), {
                        let mut c = StoreConfig::new("half", 2, Metric::Dot);
                        c.shards = 2;
                        c
                    }),
                ],
            ),
            (
                "b".to_string(),
                vec![(id("two", 1), two.clone()), (id("one", 0), StoreConfig::new("one", 9, Metric::Dot))],
            ),
        ];
        let adopted = m.adopt(&found).await.expect("adopt");
        // "half" misses shard 1; "one" has replicas that disagree on the config: neither is guessed at
        assert_eq!(adopted, vec!["two".to_string()]);
        assert_eq!(m.describe_store("two").expect("two").shards, vec![vec!["a".to_string()], vec!["b".to_string()]]);
        assert_eq!(m.adopt(&found).await.expect("again"), Vec::<String>::new(), "what the catalog holds stays");
        // a node whose replicas are their shards' only ones has missed nothing: up (readable) as it registers
        m.register_node("a", "http://127.0.0.1:1").expect("register");
        assert_eq!(m.routing_table().nodes[0].state, pb::NodeState::Up as i32);
        drop(m);
        let m = Manager::open(options).expect("reopen");
        assert!(!m.is_fresh());
        assert_eq!(m.list_stores().len(), 1);
    }

    #[tokio::test]
    async fn catalog_and_nodes_survive_a_restart_and_errors_change_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let options = ManagerOptions::new(dir.path());
        {
            let m = Manager::open(options.clone()).expect("open");
            let mut watch = m.watch();
            let (interval, v1) = m.register_node("n1", "http://127.0.0.1:1").expect("register");
            assert_eq!(interval, 1000);
            assert!(watch.has_changed().expect("watch"), "registration publishes a new table");
            assert_eq!(watch.borrow_and_update().version, v1);
            assert!(m.register_node("", "http://x:1").is_err());
            assert!(m.register_node("n2", "not a url").is_err());
            assert!(matches!(m.heartbeat("nobody", vec![]).expect_err("unknown"), ManagerError::NotFound(_)));
            // too few nodes for the replication factor: refused, nothing in the catalog
            let mut config = StoreConfig::new("s", 4, Metric::Cosine);
            config.replication_factor = 2;
            let err = m.create_store(config).await.expect_err("rf 2 on one node");
            assert!(matches!(err, ManagerError::NotEnoughNodes(_)), "{err}");
            // the node's address does not answer: the create fails and leaves nothing behind
            let err = m.create_store(StoreConfig::new("s", 4, Metric::Cosine)).await.expect_err("unreachable node");
            assert!(err.to_string().contains("creating shard 0 on node n1"), "{err}");
            assert!(m.list_stores().is_empty());
            assert!(matches!(m.drop_store("s").await.expect_err("absent"), ManagerError::NotFound(_)));
        }
        let m = Manager::open(options).expect("reopen");
        let t = m.routing_table();
        assert_eq!(t.nodes.len(), 1);
        assert_eq!((t.nodes[0].node_id.as_str(), t.nodes[0].address.as_str()), ("n1", "http://127.0.0.1:1"));
        assert!(t.version >= 1, "the routing version survives a restart");
    }
}
