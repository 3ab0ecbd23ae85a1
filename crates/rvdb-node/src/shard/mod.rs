//! One shard replica: its config, its in-memory index and versions, and its RocksDB column family.
//!
//! Writes are serialised per shard by `write_lock` so that the order of `WriteBatch`es on disk is the order in
//! which the index is updated, and version checks (last write wins) are atomic with the write. Reads only take
//! the index's read lock, so searches run in parallel with each other and wait for writers only while the index
//! is being updated in memory (not while RocksDB writes).

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use rocksdb::{Direction, IteratorMode, WriteBatch, WriteOptions};
use rvdb_core::clock::HybridClock;
use rvdb_core::engine::{GraphStatus, Plan, SearchRequest, ShardIndex};
use rvdb_core::error::excerpt;
use rvdb_core::filter::Filter;
use rvdb_core::hnsw::HnswIndex;
use rvdb_core::options::IndexOptions;
use rvdb_core::text::CorpusStats;
use rvdb_core::types::{check_metadata, parse_metadata, validate_k, validate_point_id, validate_vector};
use rvdb_core::{IndexKind, StoreConfig};

use crate::NodeError;
use crate::disk::DiskGuard;
use crate::record::{Record, encode_live, encode_tombstone};
use crate::slots::{CfRef, Lease};

// The shard's behaviour by concern, each an `impl Shard` over the types here: its HNSW graph (background builds,
// snapshots), its write path (upserts, deletes, metadata updates, replication's changes: last write wins under
// the write lock), and its read path (search, get, count, scans, changes, digest).
mod graph;
mod read;
pub use read::{BucketDigest, BucketFilter, MAX_BUCKETS, bucket_of};
mod write;

/// A stored point's metadata document. It was checked and made canonical when it was written, so it is only
/// parsed here (scans with a filter read every record's: no re-check, no re-serialisation).
fn stored_metadata(text: &str) -> Result<serde_json::Value, serde_json::Error> {
    if text.is_empty() { Ok(serde_json::Value::Object(Default::default())) } else { serde_json::from_str(text) }
}

/// Where a shard's HNSW snapshot lives inside the node's graph directory.
pub(crate) fn graph_file(dir: &Path, key: &ShardKey) -> PathBuf {
    dir.join(format!("{}.hnsw", key.name()))
}

/// The node's RocksDB instance: one per node, one column family per shard replica. Opened by
/// [`crate::node::Node`], which owns the shards; a shard only reads and writes its column family (so this
/// module does not depend on the node's).
pub type Db = rocksdb::DBWithThreadMode<rocksdb::MultiThreaded>;

/// Which shard of which store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardKey {
    pub store: String,
    pub shard: u32,
}

impl ShardKey {
    pub fn new(store: impl Into<String>, shard: u32) -> Self {
        Self { store: store.into(), shard }
    }

    /// The replica's name, `<store>#<shard>`: the key of its meta, its graph snapshot's file name and (for a
    /// replica created before column-family slots) its column family's. Store names cannot contain `#`, so the
    /// name is unambiguous.
    pub fn name(&self) -> String {
        format!("{}#{}", self.store, self.shard)
    }
}

impl fmt::Display for ShardKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "'{}'/{}", self.store, self.shard)
    }
}

/// A point as the API sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PointData {
    pub id: String,
    pub vector: Vec<f32>,
    /// JSON object text; empty = `{}`.
    pub metadata: String,
    /// 0 = assign one from the node's clock.
    pub version: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ScoredPoint {
    pub id: String,
    pub distance: f32,
    pub version: u64,
    pub vector: Option<Vec<f32>>,
    pub metadata: Option<String>,
}

/// A keyword (BM25) hit, as [`Shard::keyword_search`] returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordPoint {
    pub id: String,
    /// BM25: higher is better.
    pub score: f32,
    pub version: u64,
    pub vector: Option<Vec<f32>>,
    pub metadata: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpsertOutcome {
    pub applied: u32,
    pub stale: u32,
    /// The highest version written by this batch.
    pub max_version: u64,
    /// Ids of the stale points, in batch order: the writer re-stamps them if it meant them as the newest.
    pub stale_ids: Vec<String>,
    /// The highest version the shard holds after the batch (any record, tombstones included).
    pub shard_max_version: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeleteOutcome {
    /// Ids that held a live point.
    pub deleted: u32,
    /// Ids whose stored record is newer than the tombstone, which was therefore not written.
    pub stale_ids: Vec<String>,
    /// The highest version the shard holds after the delete.
    pub shard_max_version: u64,
}

/// Top-level metadata keys to remove and to set, as `update_metadata` applies them to each point.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MetadataPatch {
    pub set: serde_json::Map<String, serde_json::Value>,
    pub unset: Vec<String>,
}

impl MetadataPatch {
    /// `metadata` with the keys of `unset` removed, then those of `set` inserted (replacing their values).
    pub fn apply(&self, metadata: &mut serde_json::Map<String, serde_json::Value>) {
        for key in &self.unset {
            metadata.remove(key);
        }
        for (key, value) in &self.set {
            metadata.insert(key.clone(), value.clone());
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UpdateOutcome {
    /// Ids that held a live point, now updated.
    pub updated: u32,
    /// Ids whose stored record is newer than the update's version (left alone), in request order.
    pub stale_ids: Vec<String>,
    /// The highest version the shard holds after the update.
    pub shard_max_version: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ShardStats {
    pub key: ShardKey,
    pub config: StoreConfig,
    pub points: u64,
    pub tombstones: u64,
    pub max_version: u64,
    pub index_memory_bytes: u64,
    /// `index_memory_bytes` by component.
    pub memory: rvdb_core::engine::MemoryUse,
    pub disk_bytes: u64,
    pub index_status: GraphStatus,
}

/// How to search, beyond the query vector.
#[derive(Debug, Clone, Default)]
pub struct SearchOptions {
    pub k: u32,
    pub ef: Option<u32>,
    pub filter: Option<Filter>,
    pub exact: bool,
    pub with_vector: bool,
    pub with_metadata: bool,
}

#[derive(Debug, Clone)]
pub struct SearchOutcome {
    pub points: Vec<ScoredPoint>,
    pub scanned: u64,
    pub plan: Plan,
}

/// One record of a shard as replication sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Point(PointData),
    Tombstone { id: String, version: u64 },
}

impl Change {
    pub fn id(&self) -> &str {
        match self {
            Change::Point(p) => &p.id,
            Change::Tombstone { id, .. } => id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardDigest {
    pub sha256: String,
    pub records: u64,
    pub max_version: u64,
}

#[derive(Debug, Clone, Copy)]
struct VersionEntry {
    version: u64,
    live: bool,
}

struct ShardState {
    index: ShardIndex,
    /// Version of every id ever written (live points and tombstones): what last-write-wins compares against.
    versions: HashMap<Box<str>, VersionEntry>,
    tombstones: u64,
    max_version: u64,
}

impl ShardState {
    fn apply(&mut self, id: &str, version: u64, vector: Option<(&[f32], serde_json::Value)>) {
        let was_tombstone = self.versions.get(id).is_some_and(|e| !e.live);
        let live = vector.is_some();
        match vector {
            Some((v, metadata)) => {
                self.index.upsert(id, v, metadata, version);
                if was_tombstone {
                    self.tombstones -= 1;
                }
            }
            None => {
                self.index.remove(id);
                if !was_tombstone {
                    self.tombstones += 1;
                }
            }
        }
        self.versions.insert(id.into(), VersionEntry { version, live });
        self.max_version = self.max_version.max(version);
    }

    /// A live point's new metadata at `version`; its vector and graph node stay (the graph node keeps the tag of
    /// the version its vector was written at, so a snapshot reload re-inserts it: correct, if not free).
    fn apply_metadata(&mut self, id: &str, version: u64, metadata: serde_json::Value) {
        if self.index.set_metadata(id, metadata) {
            self.versions.insert(id.into(), VersionEntry { version, live: true });
            self.max_version = self.max_version.max(version);
        }
    }

    /// Forgets `id` altogether (a pruned record): out of the index and the version map.
    fn forget(&mut self, id: &str) {
        if let Some(e) = self.versions.remove(id) {
            if e.live {
                self.index.remove(id);
            } else {
                self.tombstones -= 1;
            }
        }
    }

    fn current_version(&self, id: &str) -> Option<u64> {
        self.versions.get(id).map(|e| e.version)
    }
}

/// Test hook: a point id whose upsert panics inside the index update (set with `RVDB_FAULT_PANIC_ID`), to prove
/// that a fault in one shard is contained.
pub(crate) static PANIC_ON_ID: std::sync::OnceLock<Option<String>> = std::sync::OnceLock::new();

pub struct Shard {
    /// This shard's own `Arc`, for starting background builds from `&self`.
    me: std::sync::Weak<Shard>,
    /// A graph build thread is running.
    building: AtomicBool,
    /// A rebuild was asked for while a build ran: it starts from the points when that build ends, so a
    /// request is never dropped (the running build may predate the points or settings it was asked for).
    rebuild_queued: AtomicBool,
    /// Being filled by a shard transfer: reads are refused ([`Shard::readable`]).
    filling: AtomicBool,
    /// The running build's progress (for metrics); `None` when no build runs.
    build_progress: Mutex<Option<Arc<rvdb_core::engine::BuildProgress>>>,
    key: ShardKey,
    /// The HNSW snapshot file; `None` on an in-memory node.
    graph_path: Option<PathBuf>,
    /// False for an in-memory node: writes skip the WAL and nothing is fsynced.
    durable: bool,
    config: StoreConfig,
    /// The column family this replica lives in, shared with a reload of it after a panic.
    lease: Arc<Lease>,
    db: Arc<Db>,
    /// Refuses data writes when the disk is nearly full; `None` in memory.
    disk: Option<Arc<DiskGuard>>,
    clock: Arc<HybridClock>,
    write_lock: Mutex<()>,
    state: RwLock<ShardState>,
    retired: AtomicBool,
    /// The placement epoch this replica was told of (persisted under [`epoch_key`]). Writes hold it shared from
    /// their check to their apply; raising it takes it exclusively, so once a raise returns no write of an older
    /// epoch is still in flight (see [`Shard::fenced`]).
    fence: RwLock<u64>,
}

/// Where a replica's placement epoch is kept, in the node's default column family (next to its meta).
pub(crate) fn epoch_key(key: &ShardKey) -> String {
    format!("epoch:{}", key.name())
}

impl fmt::Debug for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shard").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Shard {
    /// Loads a shard from its column family, rebuilding the exact index from every stored record, and starts
    /// the graph build of an HNSW store.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load(
        db: Arc<Db>,
        disk: Option<Arc<DiskGuard>>,
        durable: bool,
        clock: Arc<HybridClock>,
        graph_dir: Option<&Path>,
        key: ShardKey,
        config: StoreConfig,
        lease: Arc<Lease>,
        index_options: IndexOptions,
    ) -> Result<Arc<Shard>, NodeError> {
        let mut state = ShardState {
            index: ShardIndex::with_options(config.dimension as usize, config.metric, config.index, index_options)
                .with_text_index(config.text_index.clone()),
            versions: HashMap::new(),
            tombstones: 0,
            max_version: 0,
        };
        {
            let cf = lease.cf().bind(&db).ok_or_else(|| NodeError::ShardNotFound(key.clone()))?;
            if let Ok(Some(n)) = db.property_int_value_cf(&cf, "rocksdb.estimate-num-keys") {
                state.index.reserve(n as usize);
            }
            for item in db.iterator_cf(&cf, IteratorMode::Start) {
                let (k, v) = item?;
                let id = std::str::from_utf8(&k)
                    .map_err(|_| NodeError::Corrupt { key: key.clone(), message: "a point id is not UTF-8".into() })?;
                match Record::decode(&v)
                    .map_err(|m| NodeError::Corrupt { key: key.clone(), message: format!("point {id:?}: {m}") })?
                {
                    Record::Live { version, vector, metadata } => {
                        if vector.len() != config.dimension as usize {
                            return Err(NodeError::Corrupt {
                                key: key.clone(),
                                message: format!("point {id:?} has {} dimensions", vector.len()),
                            });
                        }
                        // Stored metadata was checked when written; unreadable metadata filters as `{}`.
                        let metadata = serde_json::from_str(&metadata).unwrap_or(serde_json::Value::Null);
                        state.apply(id, version, Some((&vector, metadata)));
                    }
                    Record::Tombstone { version } => state.apply(id, version, None),
                }
            }
        }
        clock.observe(state.max_version);
        let fence = match db.get(epoch_key(&key))? {
            Some(b) => b.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_le_bytes),
            None => 0,
        };
        let graph_path = graph_dir.map(|d| graph_file(d, &key));
        let shard = Arc::new_cyclic(|me| Shard {
            me: me.clone(),
            building: AtomicBool::new(false),
            rebuild_queued: AtomicBool::new(false),
            filling: AtomicBool::new(false),
            build_progress: Mutex::new(None),
            graph_path,
            key,
            durable,
            config,
            lease,
            db,
            disk,
            clock,
            write_lock: Mutex::new(()),
            state: RwLock::new(state),
            retired: AtomicBool::new(false),
            fence: RwLock::new(fence),
        });
        // An HNSW store builds its graph on a background thread — from the persisted snapshot when there is one
        // (only the points written after it are inserted), from scratch otherwise. Searches use the flat index
        // until the graph is ready; writes meanwhile are queued for it. A retired shard's build stops.
        let _ = shard.spawn_build(true);
        Ok(shard)
    }

    pub fn key(&self) -> &ShardKey {
        &self.key
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Ok unless this replica is being filled by a shard transfer ([`NodeError::Filling`]: UNAVAILABLE, so a
    /// gateway reads another replica).
    pub fn readable(&self) -> Result<(), NodeError> {
        if self.filling.load(Ordering::SeqCst) {
            return Err(NodeError::Filling(self.key.clone()));
        }
        Ok(())
    }

    pub(crate) fn set_filling(&self, filling: bool) {
        self.filling.store(filling, Ordering::SeqCst);
    }

    pub fn is_filling(&self) -> bool {
        self.filling.load(Ordering::SeqCst)
    }

    /// The placement epoch this replica holds.
    pub fn epoch(&self) -> u64 {
        *self.fence.read().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs a client write (`write`) sent under placement epoch `epoch`, unless this replica knows a newer one:
    /// then the writer's routing table misses a change of the shard's replica set (a replica came back and must
    /// get every write from now on) and the write is refused with [`NodeError::StaleEpoch`], before anything is
    /// written. A newer epoch than this replica's is learnt (raised, persisted) first. 0 is not fenced: tools
    /// that write one node directly, and repairs, which carry their own versions.
    pub fn fenced<R>(&self, epoch: u64, write: impl FnOnce() -> Result<R, NodeError>) -> Result<R, NodeError> {
        if epoch == 0 {
            return write();
        }
        loop {
            {
                let fence = self.fence.read().unwrap_or_else(|p| p.into_inner());
                if epoch < *fence {
                    return Err(NodeError::StaleEpoch { key: self.key.clone(), held: *fence, sent: epoch });
                }
                if epoch == *fence {
                    return write();
                }
            }
            self.raise_epoch(epoch)?;
        }
    }

    /// Raises this replica's placement epoch to `epoch` (never lowers it) and returns the one it holds. Waits for
    /// the writes in flight under the old one: when it returns, each has been applied or refused.
    pub fn raise_epoch(&self, epoch: u64) -> Result<u64, NodeError> {
        let mut fence = self.fence.write().unwrap_or_else(|p| p.into_inner());
        if epoch > *fence {
            if self.lease.is_freed() || self.retired.load(Ordering::SeqCst) {
                return Err(NodeError::ShardNotFound(self.key.clone()));
            }
            let mut opts = WriteOptions::default();
            opts.set_sync(self.durable);
            self.db.put_opt(epoch_key(&self.key), epoch.to_le_bytes(), &opts)?;
            *fence = epoch;
        }
        Ok(*fence)
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// Takes the write lock even if a panic poisoned it: the reload that follows a panic must wait for writers.
    pub(crate) fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The replica's column family for one operation. A dropped replica's column family (a slot that may already
    /// hold another replica) is never reached again.
    fn cf(&self) -> Result<CfRef<'_>, NodeError> {
        if self.lease.is_freed() {
            return Err(NodeError::ShardNotFound(self.key.clone()));
        }
        self.lease.cf().bind(&self.db).ok_or_else(|| NodeError::ShardNotFound(self.key.clone()))
    }

    pub(crate) fn lease(&self) -> &Arc<Lease> {
        &self.lease
    }

    fn write_state(&self) -> Result<std::sync::RwLockWriteGuard<'_, ShardState>, NodeError> {
        self.state.write().map_err(|_| NodeError::Reloading(self.key.clone()))
    }

    fn read_state(&self) -> Result<std::sync::RwLockReadGuard<'_, ShardState>, NodeError> {
        self.state.read().map_err(|_| NodeError::Reloading(self.key.clone()))
    }

    /// Begins a write: the write lock, unless the shard was retired (dropped or replaced by a reload) meanwhile.
    fn begin_write(&self) -> Result<std::sync::MutexGuard<'_, ()>, NodeError> {
        let guard = self.write_lock.lock().map_err(|_| NodeError::Reloading(self.key.clone()))?;
        if self.retired.load(Ordering::SeqCst) {
            return Err(NodeError::Reloading(self.key.clone()));
        }
        Ok(guard)
    }

    /// Flushes the memtable to an SST, fsyncs the WAL and writes the HNSW snapshot if the graph changed.
    pub fn flush(&self) -> Result<(), NodeError> {
        let cf = self.cf()?;
        self.db.flush_cf(&cf)?;
        if self.durable {
            self.db.flush_wal(true)?;
        }
        self.persist_graph()?;
        Ok(())
    }

    /// Compacts the whole column family (after a flush): every SST rewritten at the bottom level with its
    /// bottommost compression. Used by benchmarks to report on-disk size; RocksDB compacts on its own otherwise.
    pub fn compact(&self) -> Result<(), NodeError> {
        let cf = self.cf()?;
        self.db.flush_cf(&cf)?;
        self.db.compact_range_cf(&cf, None::<&[u8]>, None::<&[u8]>);
        Ok(())
    }

    /// RocksDB properties of this shard's column family (e.g. `rocksdb.cur-size-all-mem-tables`), 0 if unknown.
    pub fn rocksdb_property(&self, name: &str) -> u64 {
        self.cf().ok().and_then(|cf| self.db.property_int_value_cf(&cf, name).ok().flatten()).unwrap_or(0)
    }

    pub fn stats(&self) -> Result<ShardStats, NodeError> {
        let (points, tombstones, max_version, memory, index_status) = {
            let s = self.read_state()?;
            let mut memory = s.index.memory_use();
            memory.ids += s.versions.capacity() * 32; // the version map
            (s.index.len() as u64, s.tombstones, s.max_version, memory, s.index.graph_status())
        };
        let cf = self.cf()?;
        let prop = |name: &str| self.db.property_int_value_cf(&cf, name).ok().flatten().unwrap_or(0);
        let disk_bytes = prop("rocksdb.total-sst-files-size") + prop("rocksdb.cur-size-all-mem-tables");
        Ok(ShardStats {
            key: self.key.clone(),
            config: self.config.clone(),
            points,
            tombstones,
            max_version,
            index_memory_bytes: memory.total() as u64,
            memory,
            disk_bytes,
            index_status,
        })
    }
}
