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

use rocksdb::{BoundColumnFamily, Direction, IteratorMode, WriteBatch, WriteOptions};
use rvdb_core::clock::HybridClock;
use rvdb_core::engine::{GraphStatus, Plan, SearchRequest, ShardIndex};
use rvdb_core::error::excerpt;
use rvdb_core::filter::Filter;
use rvdb_core::hnsw::HnswIndex;
use rvdb_core::options::IndexOptions;
use rvdb_core::types::{check_metadata, parse_metadata, validate_k, validate_point_id, validate_vector};
use rvdb_core::{IndexKind, StoreConfig};

use crate::NodeError;
use crate::record::{Record, encode_live, encode_tombstone};

/// Where a shard's HNSW snapshot lives inside the node's graph directory.
pub(crate) fn graph_file(dir: &Path, key: &ShardKey) -> PathBuf {
    dir.join(format!("{}.hnsw", key.cf_name()))
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

    /// The column family that holds this replica. Store names cannot contain `#`, so the name is unambiguous.
    pub fn cf_name(&self) -> String {
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
    /// The running build's progress (for metrics); `None` when no build runs.
    build_progress: Mutex<Option<Arc<rvdb_core::engine::BuildProgress>>>,
    key: ShardKey,
    /// The HNSW snapshot file; `None` on an in-memory node.
    graph_path: Option<PathBuf>,
    /// False for an in-memory node: writes skip the WAL and nothing is fsynced.
    durable: bool,
    config: StoreConfig,
    cf_name: String,
    db: Arc<Db>,
    clock: Arc<HybridClock>,
    write_lock: Mutex<()>,
    state: RwLock<ShardState>,
    retired: AtomicBool,
}

impl fmt::Debug for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shard").field("key", &self.key).finish_non_exhaustive()
    }
}

impl Shard {
    /// Loads a shard from its column family, rebuilding the exact index from every stored record, and starts
    /// the graph build of an HNSW store.
    pub(crate) fn load(
        db: Arc<Db>,
        durable: bool,
        clock: Arc<HybridClock>,
        graph_dir: Option<&Path>,
        key: ShardKey,
        config: StoreConfig,
        index_options: IndexOptions,
    ) -> Result<Arc<Shard>, NodeError> {
        let cf_name = key.cf_name();
        let mut state = ShardState {
            index: ShardIndex::with_options(config.dimension as usize, config.metric, config.index, index_options),
            versions: HashMap::new(),
            tombstones: 0,
            max_version: 0,
        };
        {
            let cf = db.cf_handle(&cf_name).ok_or_else(|| NodeError::ShardNotFound(key.clone()))?;
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
        let graph_path = graph_dir.map(|d| graph_file(d, &key));
        let shard = Arc::new_cyclic(|me| Shard {
            me: me.clone(),
            building: AtomicBool::new(false),
            build_progress: Mutex::new(None),
            graph_path,
            key,
            durable,
            config,
            cf_name,
            db,
            clock,
            write_lock: Mutex::new(()),
            state: RwLock::new(state),
            retired: AtomicBool::new(false),
        });
        // An HNSW store builds its graph on a background thread — from the persisted snapshot when there is one
        // (only the points written after it are inserted), from scratch otherwise. Searches use the flat index
        // until the graph is ready; writes meanwhile are queued for it. A retired shard's build stops.
        let _ = shard.spawn_build(true);
        Ok(shard)
    }

    /// Rebuilds the HNSW graph from the points in the background; false if a build is already running.
    pub fn rebuild_graph(&self) -> Result<bool, NodeError> {
        if self.config.index.kind != IndexKind::Hnsw {
            return Err(NodeError::BadRequest(format!(
                "store shard {} has a flat index: there is no graph to rebuild",
                self.key
            )));
        }
        Ok(self.spawn_build(false))
    }

    /// Starts a build thread unless one is running (returns whether it started); `from_snapshot` false rebuilds
    /// from the points alone.
    fn spawn_build(&self, from_snapshot: bool) -> bool {
        if self.config.index.kind != IndexKind::Hnsw
            || self.building.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err()
        {
            return false;
        }
        let Some(shard) = self.me.upgrade() else {
            self.building.store(false, Ordering::SeqCst);
            return false;
        };
        let spawned = std::thread::Builder::new().name(format!("hnsw-{}", self.cf_name)).spawn(move || {
            let started = Instant::now();
            let result = shard.build_graph(from_snapshot);
            *shard.build_progress.lock().unwrap_or_else(|p| p.into_inner()) = None;
            crate::metrics::graph_build_finished(result.is_ok(), started.elapsed());
            if let Err(e) = result {
                tracing::error!(shard = %shard.key, error = %e, "HNSW build failed; searches stay exact");
            }
            shard.building.store(false, Ordering::SeqCst);
        });
        if let Err(e) = spawned {
            self.building.store(false, Ordering::SeqCst);
            tracing::error!(shard = %self.key, error = %e, "cannot start the HNSW build thread");
            return false;
        }
        true
    }

    fn build_graph(&self, from_snapshot: bool) -> Result<(), NodeError> {
        let started = Instant::now();
        let (dim, metric) = (self.config.dimension as usize, self.config.metric);
        let base = match self.graph_path.as_ref().filter(|_| from_snapshot) {
            Some(path) => match std::fs::File::open(path) {
                Ok(mut f) => match HnswIndex::read_from(&mut f, dim, metric) {
                    Ok(g) => Some(g),
                    Err(e) => {
                        tracing::warn!(shard = %self.key, error = %e, "ignoring the HNSW snapshot; rebuilding");
                        None
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(e.into()),
            },
            None => None,
        };
        let resumed = base.is_some();
        let job = {
            let mut state = self.write_state()?;
            let ShardState { index, versions, .. } = &mut *state;
            index.begin_build(base, &|id| versions.get(id).map_or(0, |e| e.version))
        };
        let Some(mut job) = job else { return Ok(()) };
        *self.build_progress.lock().unwrap_or_else(|p| p.into_inner()) = Some(job.progress());
        let cancelled = || self.retired.load(Ordering::SeqCst);
        if !job.run(&cancelled) {
            return Ok(());
        }
        // Catch up with the writes queued meanwhile, off the lock, until few are left; install those under it.
        loop {
            let mut state = self.write_state()?;
            if cancelled() {
                return Ok(());
            }
            let Some(pending) = state.index.take_pending(&job) else { return Ok(()) };
            let few = pending.len() <= 256;
            job.extend(pending);
            if few {
                state.index.install(job);
                break;
            }
            drop(state);
            if !job.run(&cancelled) {
                return Ok(());
            }
        }
        tracing::info!(shard = %self.key, resumed, elapsed_ms = started.elapsed().as_millis() as u64, "HNSW graph ready");
        self.persist_graph()?;
        Ok(())
    }

    /// Writes the HNSW graph to its snapshot file if it changed since the last snapshot: a temporary file,
    /// fsynced, then renamed over the old one, so a crash leaves either snapshot whole. Writers wait meanwhile
    /// (the snapshot's tags must match the versions it is reconciled with); searches do not.
    pub fn persist_graph(&self) -> Result<bool, NodeError> {
        let Some(path) = &self.graph_path else { return Ok(false) };
        let _writes = self.begin_write()?;
        {
            let state = self.read_state()?;
            let Some(graph) = state.index.graph_to_persist() else { return Ok(false) };
            let tmp = path.with_extension("hnsw.tmp");
            let mut file = std::fs::File::create(&tmp)?;
            graph.write_to(&mut file)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)?;
            if let Some(dir) = path.parent() {
                std::fs::File::open(dir)?.sync_all()?;
            }
        }
        self.write_state()?.index.mark_persisted();
        Ok(true)
    }

    /// What the last installed graph build did (tests and diagnostics).
    pub fn last_graph_build(&self) -> Option<rvdb_core::engine::BuildInfo> {
        self.read_state().ok()?.index.last_build()
    }

    pub fn key(&self) -> &ShardKey {
        &self.key
    }

    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn retire(&self) {
        self.retired.store(true, Ordering::SeqCst);
    }

    /// Takes the write lock even if a panic poisoned it: the reload that follows a panic must wait for writers.
    pub(crate) fn lock_writes(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_lock.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cf(&self) -> Result<Arc<BoundColumnFamily<'_>>, NodeError> {
        self.db.cf_handle(&self.cf_name).ok_or_else(|| NodeError::ShardNotFound(self.key.clone()))
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

    /// Inserts or replaces a batch atomically. Everything is validated first: one bad point refuses the whole batch
    /// and nothing is written. A point whose version is not newer than the stored one is skipped (`stale`).
    pub fn upsert(&self, points: Vec<PointData>, sync: bool) -> Result<UpsertOutcome, NodeError> {
        let mut prepared = Vec::with_capacity(points.len());
        for (index, p) in points.into_iter().enumerate() {
            let invalid = |source| NodeError::InvalidPoint { index, source };
            validate_point_id(&p.id).map_err(invalid)?;
            validate_vector(&p.vector, self.config.dimension, self.config.metric).map_err(invalid)?;
            let (value, canonical) = parse_metadata(&p.metadata).map_err(invalid)?;
            prepared.push((p, canonical, value));
        }
        let _guard = self.begin_write()?;
        let mut outcome = UpsertOutcome::default();
        let mut batch = WriteBatch::default();
        let mut accepted: Vec<(usize, u64)> = Vec::with_capacity(prepared.len());
        {
            let state = self.read_state()?;
            // Records of this batch by id: a later duplicate is compared with them, not with the store.
            let mut in_batch: HashMap<&str, (u64, Vec<u8>)> = HashMap::new();
            let cf = self.cf()?;
            for (i, (p, metadata, _)) in prepared.iter().enumerate() {
                let version = if p.version == 0 {
                    self.clock.now()
                } else {
                    self.clock.observe(p.version);
                    p.version
                };
                let record = encode_live(version, &p.vector, metadata);
                let wins = match in_batch.get(p.id.as_str()) {
                    Some((v, bytes)) => (version, &record) > (*v, bytes),
                    None => self.newer_than_stored(&state, &p.id, version, &record)?,
                };
                if !wins {
                    outcome.stale += 1;
                    outcome.stale_ids.push(p.id.clone());
                    continue;
                }
                batch.put_cf(&cf, p.id.as_bytes(), &record);
                in_batch.insert(&p.id, (version, record));
                accepted.push((i, version));
                outcome.max_version = outcome.max_version.max(version);
            }
        }
        self.write_batch(batch, sync)?;
        let mut state = self.write_state()?;
        for (i, version) in accepted {
            let (p, _, value) = &mut prepared[i];
            if PANIC_ON_ID.get().is_some_and(|hook| hook.as_deref() == Some(p.id.as_str())) {
                panic!("fault injection: panic while indexing point {:?}", p.id);
            }
            state.apply(&p.id, version, Some((&p.vector, std::mem::take(value))));
            outcome.applied += 1;
        }
        outcome.shard_max_version = state.max_version;
        self.rebuild_if_needed(state);
        Ok(outcome)
    }

    /// Deletes ids with a versioned tombstone each.
    pub fn delete(&self, ids: &[String], version: u64, sync: bool) -> Result<DeleteOutcome, NodeError> {
        let version = if version == 0 { self.clock.now() } else { version };
        let tombstones: Vec<(&str, u64)> = ids.iter().map(|id| (id.as_str(), version)).collect();
        let (deleted, _, stale) = self.apply_tombstones(&tombstones, sync)?;
        let shard_max_version = self.read_state()?.max_version;
        Ok(DeleteOutcome { deleted, stale_ids: stale.into_iter().map(str::to_string).collect(), shard_max_version })
    }

    /// Writes a tombstone for each `(id, version)` that is newer than what is stored (last write wins); returns
    /// how many ids held a live point, how many tombstones were written and the ids whose stored record was newer
    /// (in request order). Nothing is written if an id is invalid.
    fn apply_tombstones<'a>(
        &self,
        tombstones: &[(&'a str, u64)],
        sync: bool,
    ) -> Result<(u32, u64, Vec<&'a str>), NodeError> {
        for (index, (id, _)) in tombstones.iter().enumerate() {
            validate_point_id(id).map_err(|source| NodeError::InvalidPoint { index, source })?;
        }
        let _guard = self.begin_write()?;
        let mut batch = WriteBatch::default();
        let mut doomed: HashMap<&str, u64> = HashMap::new();
        let mut stale: Vec<&str> = Vec::new();
        {
            let state = self.read_state()?;
            let cf = self.cf()?;
            for &(id, version) in tombstones {
                self.clock.observe(version);
                let record = encode_tombstone(version);
                let wins = match doomed.get(id) {
                    Some(v) => version > *v,
                    None => self.newer_than_stored(&state, id, version, &record)?,
                };
                if wins {
                    batch.put_cf(&cf, id.as_bytes(), &record);
                    doomed.insert(id, version);
                } else if !doomed.contains_key(id) {
                    stale.push(id);
                }
            }
        }
        self.write_batch(batch, sync)?;
        let mut state = self.write_state()?;
        let (mut deleted, written) = (0, doomed.len() as u64);
        for (id, version) in doomed {
            if state.index.contains(id) {
                deleted += 1;
            }
            state.apply(id, version, None);
        }
        self.rebuild_if_needed(state);
        Ok((deleted, written, stale))
    }

    /// Last write wins: whether a record at `version` replaces what is stored for `id`. Equal versions (two
    /// gateways' clocks can issue the same one) are decided by the record bytes, so every replica keeps the same
    /// record whatever order the writes arrive in (a live point beats a tombstone).
    fn newer_than_stored(&self, state: &ShardState, id: &str, version: u64, record: &[u8]) -> Result<bool, NodeError> {
        match state.current_version(id) {
            None => Ok(true),
            Some(c) if c != version => Ok(version > c),
            Some(_) => {
                let stored = self.db.get_cf(&self.cf()?, id.as_bytes())?;
                Ok(stored.is_none_or(|s| record > s.as_slice()))
            }
        }
    }

    /// Applies records streamed from a peer replica (catch-up): points and tombstones keep their versions and go
    /// through last-write-wins like any write. Returns how many were newer than the local ones.
    pub fn apply_changes(
        &self,
        points: Vec<PointData>,
        tombstones: &[(String, u64)],
        sync: bool,
    ) -> Result<u64, NodeError> {
        let mut applied = 0;
        if points.iter().any(|p| p.version == 0) || tombstones.iter().any(|t| t.1 == 0) {
            return Err(NodeError::BadRequest("replicated records must carry their version".into()));
        }
        if !points.is_empty() {
            applied += self.upsert(points, sync)?.applied as u64;
        }
        if !tombstones.is_empty() {
            let refs: Vec<(&str, u64)> = tombstones.iter().map(|(id, v)| (id.as_str(), *v)).collect();
            applied += self.apply_tombstones(&refs, sync)?.1;
        }
        Ok(applied)
    }

    /// After a write: starts a background rebuild when the graph has decayed (see `ShardIndex::needs_rebuild`).
    fn rebuild_if_needed(&self, state: std::sync::RwLockWriteGuard<'_, ShardState>) {
        let decayed = state.index.needs_rebuild();
        drop(state);
        if decayed {
            let _ = self.spawn_build(false);
        }
    }

    fn write_batch(&self, batch: WriteBatch, sync: bool) -> Result<(), NodeError> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync && self.durable);
        opts.disable_wal(!self.durable);
        self.db.write_opt(batch, &opts)?;
        Ok(())
    }

    /// Top-k by the plan the engine chooses (see `rvdb_core::engine`); vectors and metadata, when asked for, are
    /// read from RocksDB for the hits only.
    pub fn search(&self, query: &[f32], opts: &SearchOptions) -> Result<SearchOutcome, NodeError> {
        validate_vector(query, self.config.dimension, self.config.metric)?;
        validate_k(opts.k)?;
        let (result, versions) = {
            let state = self.read_state()?;
            let result = state.index.search(&SearchRequest {
                query,
                k: opts.k as usize,
                ef: opts.ef.map(|e| e.min(rvdb_core::types::MAX_EF) as usize),
                filter: opts.filter.as_ref(),
                exact: opts.exact,
            });
            let versions: Vec<u64> = result.hits.iter().map(|h| state.current_version(&h.id).unwrap_or(0)).collect();
            (result, versions)
        };
        let (scanned, plan) = (result.scanned, result.plan);
        let hits = result.hits;
        if !opts.with_vector && !opts.with_metadata {
            // Ids, distances and versions all come from memory: no disk read on the plain search path.
            let points = hits
                .into_iter()
                .zip(versions)
                .map(|(h, version)| ScoredPoint {
                    id: h.id,
                    distance: h.distance,
                    version,
                    vector: None,
                    metadata: None,
                })
                .collect();
            return Ok(SearchOutcome { points, scanned, plan });
        }
        let ids: Vec<String> = hits.iter().map(|h| h.id.clone()).collect();
        let records = self.read_records(&ids)?;
        let mut points = Vec::with_capacity(hits.len());
        for (hit, record) in hits.into_iter().zip(records) {
            // A point deleted between the scan and the read is left out rather than returned half-filled.
            let Some(Record::Live { version, vector, metadata }) = record else { continue };
            points.push(ScoredPoint {
                id: hit.id,
                distance: hit.distance,
                version,
                vector: opts.with_vector.then_some(vector),
                metadata: opts.with_metadata.then_some(metadata),
            });
        }
        Ok(SearchOutcome { points, scanned, plan })
    }

    /// Live points by id, in request order; missing or deleted ids are left out.
    pub fn get(&self, ids: &[String]) -> Result<Vec<PointData>, NodeError> {
        let records = self.read_records(ids)?;
        Ok(ids
            .iter()
            .zip(records)
            .filter_map(|(id, r)| match r {
                Some(Record::Live { version, vector, metadata }) => {
                    Some(PointData { id: id.clone(), vector, metadata, version })
                }
                _ => None,
            })
            .collect())
    }

    /// Applies `patch` to the metadata of each live point among `ids`, atomically (one `WriteBatch`, under the
    /// write lock, so no write lands between the read of a record and its update), at `version` (last write
    /// wins: a point stored at a newer version is left alone and reported stale). Vectors are kept. Every updated
    /// document is checked before anything is written: one that would be invalid (too large, too deep) refuses
    /// the whole request.
    pub fn update_metadata(
        &self,
        ids: &[String],
        patch: &MetadataPatch,
        version: u64,
        sync: bool,
    ) -> Result<UpdateOutcome, NodeError> {
        for (index, id) in ids.iter().enumerate() {
            validate_point_id(id).map_err(|source| NodeError::InvalidPoint { index, source })?;
        }
        let _guard = self.begin_write()?;
        let version = if version == 0 {
            self.clock.now()
        } else {
            self.clock.observe(version);
            version
        };
        let records = self.read_records(ids)?;
        let mut outcome = UpdateOutcome::default();
        let mut batch = WriteBatch::default();
        let mut updated: Vec<(&str, serde_json::Value)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        {
            let state = self.read_state()?;
            let cf = self.cf()?;
            for (id, record) in ids.iter().zip(records) {
                let Some(Record::Live { vector, metadata, .. }) = record else { continue };
                if !seen.insert(id.as_str()) {
                    continue;
                }
                let (mut doc, _) = parse_metadata(&metadata).map_err(|e| NodeError::Corrupt {
                    key: self.key.clone(),
                    message: format!("point {id:?}: stored metadata: {e}"),
                })?;
                if let Some(map) = doc.as_object_mut() {
                    patch.apply(map);
                }
                let canonical = check_metadata(&doc).map_err(|e| {
                    NodeError::BadRequest(format!("point {:?}: its metadata after this update: {e}", excerpt(id)))
                })?;
                let record = encode_live(version, &vector, &canonical);
                if !self.newer_than_stored(&state, id, version, &record)? {
                    outcome.stale_ids.push(id.clone());
                    continue;
                }
                batch.put_cf(&cf, id.as_bytes(), &record);
                updated.push((id, doc));
            }
        }
        self.write_batch(batch, sync)?;
        let mut state = self.write_state()?;
        for (id, doc) in updated {
            state.apply_metadata(id, version, doc);
            outcome.updated += 1;
        }
        outcome.shard_max_version = state.max_version;
        Ok(outcome)
    }

    /// How many live points match `filter` (all of them without one), from the in-memory index.
    pub fn count(&self, filter: Option<&Filter>) -> Result<u64, NodeError> {
        Ok(self.read_state()?.index.count(filter) as u64)
    }

    fn read_records(&self, ids: &[String]) -> Result<Vec<Option<Record>>, NodeError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cf = self.cf()?;
        let values = self.db.batched_multi_get_cf(&cf, ids.iter().map(|s| s.as_bytes()), false);
        ids.iter()
            .zip(values)
            .map(|(id, v)| match v? {
                None => Ok(None),
                Some(bytes) => Record::decode(&bytes)
                    .map(Some)
                    .map_err(|m| NodeError::Corrupt { key: self.key.clone(), message: format!("point {id:?}: {m}") }),
            })
            .collect()
    }

    /// Visits the live points with ids after `start_after` in id order, from one consistent RocksDB view (the
    /// iterator's implicit snapshot), until `visit` returns false.
    pub fn scan(&self, start_after: &str, mut visit: impl FnMut(PointData) -> bool) -> Result<(), NodeError> {
        let cf = self.cf()?;
        let mode = if start_after.is_empty() {
            IteratorMode::Start
        } else {
            IteratorMode::From(start_after.as_bytes(), Direction::Forward)
        };
        for item in self.db.iterator_cf(&cf, mode) {
            let (k, v) = item?;
            if !start_after.is_empty() && &*k == start_after.as_bytes() {
                continue;
            }
            let (id, record) = self.decode_entry(k, &v)?;
            if let Record::Live { version, vector, metadata } = record
                && !visit(PointData { id, vector, metadata, version })
            {
                break;
            }
        }
        Ok(())
    }

    /// [`Shard::scan`] of the points whose metadata matches `filter` (every point without one).
    pub fn scan_matching(
        &self,
        start_after: &str,
        filter: Option<&Filter>,
        mut visit: impl FnMut(PointData) -> bool,
    ) -> Result<(), NodeError> {
        let Some(filter) = filter else { return self.scan(start_after, visit) };
        let mut corrupt = None;
        self.scan(start_after, |p| match parse_metadata(&p.metadata) {
            Ok((doc, _)) => !filter.matches(&doc) || visit(p),
            Err(e) => {
                corrupt = Some(format!("point {:?}: stored metadata: {e}", p.id));
                false
            }
        })?;
        match corrupt {
            Some(message) => Err(NodeError::Corrupt { key: self.key.clone(), message }),
            None => Ok(()),
        }
    }

    /// One stored key and value as `(point id, record)`; a non-UTF-8 id or an undecodable value is `Corrupt`.
    fn decode_entry(&self, key: Box<[u8]>, value: &[u8]) -> Result<(String, Record), NodeError> {
        let id = String::from_utf8(key.into_vec())
            .map_err(|_| NodeError::Corrupt { key: self.key.clone(), message: "a point id is not UTF-8".into() })?;
        let record = Record::decode(value)
            .map_err(|m| NodeError::Corrupt { key: self.key.clone(), message: format!("point {id:?}: {m}") })?;
        Ok((id, record))
    }

    /// Visits every record (live points and tombstones) with a version above `since`, in id order, from one
    /// consistent RocksDB view, until `visit` returns false.
    ///
    /// Design: this is a scan of the whole column family that skips old records by the version in their first 9
    /// bytes (no decoding), not a version-ordered index. Such an index would make a catch-up O(changes) instead
    /// of O(shard) reads on the peer, but would cost every write a second key and a read-modify-write of the old
    /// one; a catch-up is rare and a RocksDB scan runs at millions of keys per second, so the write path stays
    /// lean. Tombstones are kept forever for the same reason (a returning replica learns of deletes from them).
    pub fn changes(&self, since: u64, mut visit: impl FnMut(Change) -> bool) -> Result<(), NodeError> {
        let cf = self.cf()?;
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item?;
            // skip old records without decoding their vectors
            if Record::version_of(&v).is_some_and(|version| version <= since) {
                continue;
            }
            let (id, record) = self.decode_entry(k, &v)?;
            let change = match record {
                Record::Live { version, vector, metadata } => {
                    Change::Point(PointData { id, vector, metadata, version })
                }
                Record::Tombstone { version } => Change::Tombstone { id, version },
            };
            if !visit(change) {
                break;
            }
        }
        Ok(())
    }

    /// SHA-256 over `(len(id), id, len(record), record)` of every key in id order, from one consistent view: equal
    /// digests mean byte-for-byte equal replicas.
    pub fn digest(&self) -> Result<ShardDigest, NodeError> {
        use sha2::Digest as _;
        let cf = self.cf()?;
        let mut hasher = sha2::Sha256::new();
        let (mut records, mut max_version) = (0u64, 0u64);
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item?;
            hasher.update((k.len() as u32).to_le_bytes());
            hasher.update(&k);
            hasher.update((v.len() as u32).to_le_bytes());
            hasher.update(&v);
            records += 1;
            max_version = max_version.max(Record::version_of(&v).unwrap_or(0));
        }
        let sha256 = rvdb_core::types::hex(&hasher.finalize());
        Ok(ShardDigest { sha256, records, max_version })
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

    /// (writes applied, writes handed to it) of the running graph build, if one runs.
    pub fn build_progress(&self) -> Option<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let p = self.build_progress.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        Some((p.done.load(Relaxed) as u64, p.total.load(Relaxed) as u64))
    }

    /// RocksDB properties of this shard's column family (e.g. `rocksdb.cur-size-all-mem-tables`), 0 if unknown.
    pub fn rocksdb_property(&self, name: &str) -> u64 {
        self.cf().ok().and_then(|cf| self.db.property_int_value_cf(&cf, name).ok().flatten()).unwrap_or(0)
    }

    pub fn stats(&self) -> Result<ShardStats, NodeError> {
        let (points, tombstones, max_version, mem, index_status) = {
            let s = self.read_state()?;
            let version_map = s.versions.capacity() as u64 * 32;
            let mem = s.index.memory_bytes() as u64 + version_map;
            (s.index.len() as u64, s.tombstones, s.max_version, mem, s.index.graph_status())
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
            index_memory_bytes: mem,
            disk_bytes,
            index_status,
        })
    }
}
