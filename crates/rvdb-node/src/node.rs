//! The node: one RocksDB instance, the registry of shard replicas in it, and per-shard fault isolation.
//!
//! Layout inside RocksDB: the `default` column family holds one `shard:<store>#<shard>` key per replica with its
//! [`ShardMeta`] (JSON); each replica's points live in a column family of its own: a slot `@<n>` taken from the
//! pool of [`crate::slots`] and named in the meta (replicas created before slots live in a column family named
//! `<store>#<shard>`). Creating takes a free slot and then writes the meta; dropping deletes the meta and every key
//! of the slot in one atomic batch. So after a crash a slot without meta is free, and a named column family without
//! meta (an interrupted create or drop from before slots) is removed on open.
//!
//! Fault isolation (the Rust form of the seed's OTP supervision): every request runs through
//! [`Node::with_shard`], which catches a panic, retires the shard, reloads it from RocksDB (the source of truth)
//! and answers the request with an error. Other shards never see it; the panicked shard serves again at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use rocksdb::{BlockBasedOptions, Cache, ColumnFamilyDescriptor, DBCompressionType, Options};
use rvdb_core::StoreConfig;
use rvdb_core::clock::HybridClock;
use rvdb_core::options::IndexOptions;
use serde::{Deserialize, Serialize};

use crate::disk::DiskGuard;
use crate::shard::{Db, PANIC_ON_ID, Shard};
use crate::slots::{self, ALL_KEYS, Cf, Lease, Slots};
use crate::{NodeError, ShardKey, ShardStats};

const META_PREFIX: &str = "shard:";

#[derive(Debug, Clone)]
pub struct NodeOptions {
    pub data_dir: PathBuf,
    /// Shared block cache for all column families.
    pub block_cache_bytes: usize,
    /// The seed's `persistence_enabled`: false keeps RocksDB in memory (an in-memory `Env`), nothing on disk.
    pub persistence: bool,
    pub compression: Compression,
    /// How the shards' indexes run (instruction set, flat codes), as the binary configured them.
    pub index: IndexOptions,
    /// Free space kept on the data directory's file system: below it, data writes are refused (see
    /// [`crate::disk`]); 0 turns the check off. Ignored without persistence.
    pub disk_reserve_bytes: u64,
}

impl NodeOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            block_cache_bytes: 256 << 20,
            persistence: true,
            compression: Compression::Auto,
            index: IndexOptions::default(),
            disk_reserve_bytes: crate::disk::DEFAULT_RESERVE_BYTES,
        }
    }
}

/// Compression of stored vectors (per column family, so per store-shard replica).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    None,
    Lz4,
    Zstd,
    /// LZ4 on the upper levels (cheap, hot data), ZSTD at the bottom level (most bytes, cold).
    #[default]
    Auto,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Compression::None),
            "lz4" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            "auto" => Ok(Compression::Auto),
            other => Err(format!("unknown compression {other:?}: use none, lz4, zstd or auto")),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShardMeta {
    store: String,
    shard: u32,
    config: StoreConfig,
    /// The slot the replica lives in; absent for a replica created before slots, whose column family is named
    /// after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cf: Option<String>,
    /// Being filled by a shard transfer: takes writes, serves no reads until the manager's catch-up of it
    /// completes ([`Node::set_filling`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    filling: bool,
}

impl ShardMeta {
    /// The replica's column family, given the replica's name.
    fn cf_name<'a>(&'a self, name: &'a str) -> &'a str {
        self.cf.as_deref().unwrap_or(name)
    }
}

pub struct Node {
    db: Arc<Db>,
    /// Free column families for new replicas (see [`crate::slots`]).
    slots: Arc<Slots>,
    /// Refuses data writes when the disk is nearly full; `None` in memory.
    disk: Option<Arc<DiskGuard>>,
    /// False for an in-memory node (`persistence_enabled = false`): no WAL, no fsync.
    durable: bool,
    /// Where HNSW graph snapshots are kept (`<data_dir>/hnsw/<cf>.hnsw`); `None` without persistence.
    graph_dir: Option<PathBuf>,
    clock: Arc<HybridClock>,
    shards: RwLock<HashMap<ShardKey, Arc<Shard>>>,
    /// Serialises create / drop / reload so the catalog in `default` and the map agree.
    admin: Mutex<()>,
    index_options: IndexOptions,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node").field("path", &self.db.path()).finish_non_exhaustive()
    }
}

impl Node {
    /// Opens (or creates) the node's RocksDB under `options.data_dir` and loads every shard replica in it.
    pub fn open(options: &NodeOptions) -> Result<Node, NodeError> {
        PANIC_ON_ID.get_or_init(|| std::env::var("RVDB_FAULT_PANIC_ID").ok().filter(|s| !s.is_empty()));
        let cache = Cache::new_lru_cache(options.block_cache_bytes);
        let cf_options = column_family_options(&cache, options.compression);
        let mut db_options = Options::default();
        if options.persistence {
            std::fs::create_dir_all(&options.data_dir).map_err(|e| {
                NodeError::BadRequest(format!("cannot create data dir {}: {e}", options.data_dir.display()))
            })?;
        } else {
            db_options.set_env(&rocksdb::Env::mem_env()?);
        }
        db_options.create_if_missing(true);
        db_options.create_missing_column_families(true);
        db_options.set_max_background_jobs(2);
        db_options.set_keep_log_file_num(4);
        // With one column family per replica, the defaults scale with the number of column families: the WAL is
        // kept until every column family with data in it is flushed (a store written once keeps every later WAL
        // file alive), and each memtable may grow to its write buffer size. Bound both for the whole node.
        db_options.set_max_total_wal_size(512 << 20);
        db_options.set_db_write_buffer_size(1 << 30);
        let path = db_path(&options.data_dir);
        let existing = if options.persistence && path.join("CURRENT").exists() {
            Db::list_cf(&db_options, &path)?
        } else {
            Vec::new()
        };
        let descriptors = existing
            .iter()
            .filter(|n| n.as_str() != "default")
            .map(|n| ColumnFamilyDescriptor::new(n, cf_options.clone()));
        let db = Arc::new(Db::open_cf_descriptors(&db_options, &path, descriptors)?);
        let clock = Arc::new(HybridClock::new());

        let metas = read_metas(&db)?;
        let owned: HashSet<&str> = metas.iter().map(|(name, meta)| meta.cf_name(name)).collect();
        let mut free = Vec::new();
        for cf in existing.iter().filter(|n| n.as_str() != "default" && !owned.contains(n.as_str())) {
            if slots::is_slot(cf) {
                free.push(cf.clone());
            } else {
                tracing::warn!(cf = %cf, "dropping column family without shard meta (interrupted create or drop)");
                db.drop_cf(cf)?;
            }
        }
        let slot_numbers: Vec<u64> = existing.iter().filter_map(|n| slots::slot_number(n)).collect();
        let next_slot = slot_numbers.iter().max().map_or(0, |n| n + 1);
        let slots = Slots::new(db.clone(), cf_options.clone(), free, slot_numbers.len(), next_slot);
        let disk = if options.persistence {
            Some(Arc::new(DiskGuard::new(&options.data_dir, options.disk_reserve_bytes)?))
        } else {
            None
        };
        let graph_dir = options.persistence.then(|| options.data_dir.join("hnsw"));
        if let Some(dir) = &graph_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| NodeError::BadRequest(format!("cannot create {}: {e}", dir.display())))?;
        }
        let mut shards = HashMap::new();
        for (name, meta) in &metas {
            let key = ShardKey::new(meta.store.clone(), meta.shard);
            let cf = meta.cf_name(name);
            if db.cf_handle(cf).is_none() {
                db.create_cf(cf, &cf_options)?;
            }
            let started = std::time::Instant::now();
            let shard = Shard::load(
                db.clone(),
                disk.clone(),
                options.persistence,
                clock.clone(),
                graph_dir.as_deref(),
                key.clone(),
                meta.config.clone(),
                Lease::new(Cf::Opened(cf.to_string()), &slots),
                options.index,
            )?;
            shard.set_filling(meta.filling);
            tracing::info!(shard = %key, elapsed_ms = started.elapsed().as_millis() as u64, "loaded shard");
            shards.insert(key, shard);
        }
        Ok(Node {
            db,
            disk,
            slots,
            durable: options.persistence,
            graph_dir,
            clock,
            shards: RwLock::new(shards),
            admin: Mutex::new(()),
            index_options: options.index,
        })
    }

    pub fn create_shard(&self, key: ShardKey, config: StoreConfig) -> Result<(), NodeError> {
        config.validate()?;
        if config.name != key.store {
            return Err(NodeError::BadRequest(format!(
                "config.name {:?} differs from the shard's store {:?}",
                config.name, key.store
            )));
        }
        if key.shard >= config.shards {
            return Err(NodeError::BadRequest(format!(
                "shard {} is out of range for a store of {} shards",
                key.shard, config.shards
            )));
        }
        let _admin = self.lock_admin();
        if self.shard_map().contains_key(&key) {
            return Err(NodeError::ShardExists(key));
        }
        let cf = self.slots.take()?;
        let meta = ShardMeta {
            store: key.store.clone(),
            shard: key.shard,
            config: config.clone(),
            cf: Some(cf.name().to_string()),
            filling: false,
        };
        let created = self.write_meta(&key, &meta).and_then(|()| {
            self.remove_graph_snapshot(&key); // a leftover of an earlier store of this name
            self.load_shard(key.clone(), config, Lease::new(cf.clone(), &self.slots))
        });
        match created {
            Ok(shard) => {
                self.shard_map_mut().insert(key, shard);
                Ok(())
            }
            Err(e) => {
                // Nothing was written to the slot: undo the meta (if it was written) and give the slot back.
                let _ = self.db.delete_opt(meta_key(&key), &self.write_options());
                self.slots.put_back(cf);
                Err(e)
            }
        }
    }

    /// Marks a replica as being filled by a shard transfer (it takes writes but refuses reads with
    /// [`NodeError::Filling`], so a client never reads a half-copied replica), or as filled. Persisted in the
    /// replica's meta, so a restart in the middle of a transfer keeps refusing reads.
    pub fn set_filling(&self, key: &ShardKey, filling: bool) -> Result<(), NodeError> {
        let _admin = self.lock_admin();
        let shard = self.shard(key)?;
        let bytes = self.db.get(meta_key(key))?.ok_or_else(|| NodeError::ShardNotFound(key.clone()))?;
        let mut meta: ShardMeta = serde_json::from_slice(&bytes)
            .map_err(|e| NodeError::Corrupt { key: key.clone(), message: format!("shard meta: {e}") })?;
        if meta.filling != filling {
            meta.filling = filling;
            self.write_meta(key, &meta)?;
        }
        shard.set_filling(filling);
        Ok(())
    }

    fn write_meta(&self, key: &ShardKey, meta: &ShardMeta) -> Result<(), NodeError> {
        // An encoding failure must fail the create, never persist an empty meta (the shard would be dropped as an
        // orphan at the next start).
        let encoded =
            serde_json::to_vec(meta).map_err(|e| NodeError::Encode { what: "shard meta", message: e.to_string() })?;
        self.db.put_opt(meta_key(key), encoded, &self.write_options())?;
        Ok(())
    }

    fn write_options(&self) -> rocksdb::WriteOptions {
        let mut wo = rocksdb::WriteOptions::default();
        wo.set_sync(self.durable);
        wo
    }

    pub fn drop_shard(&self, key: &ShardKey) -> Result<(), NodeError> {
        let _admin = self.lock_admin();
        let shard = self.shard_map_mut().remove(key).ok_or_else(|| NodeError::ShardNotFound(key.clone()))?;
        shard.retire();
        // Wait for a writer in flight so its batch is not written into a dropped column family.
        let _writes = shard.lock_writes();
        // The meta and every key of the replica go in one atomic batch: after a crash the replica is either whole
        // or gone, and its slot (which then has no meta) is free.
        let lease = shard.lease().clone();
        let cf = lease.cf().bind(&self.db).ok_or_else(|| NodeError::ShardNotFound(key.clone()))?;
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete(meta_key(key));
        batch.delete(crate::shard::epoch_key(key));
        batch.delete_range_cf(&cf, ALL_KEYS.0, ALL_KEYS.1);
        self.db.write_opt(batch, &self.write_options())?;
        drop(cf);
        if lease.pooled() {
            // Back to the pool once the last request still holding this replica has finished.
            lease.free();
        } else {
            self.db.drop_cf(lease.cf().name())?;
        }
        self.remove_graph_snapshot(key);
        Ok(())
    }

    pub fn list_shards(&self) -> Vec<ShardStats> {
        let shards: Vec<Arc<Shard>> = self.shard_map().values().cloned().collect();
        let mut out: Vec<ShardStats> = shards.iter().filter_map(|s| s.stats().ok()).collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Every shard replica this node holds.
    pub fn shards(&self) -> Vec<Arc<Shard>> {
        self.shard_map().values().cloned().collect()
    }

    /// The replicas this node holds, without their stats (what heartbeats report).
    pub fn shard_keys(&self) -> Vec<ShardKey> {
        let mut keys: Vec<ShardKey> = self.shard_map().keys().cloned().collect();
        keys.sort();
        keys
    }

    pub fn shard(&self, key: &ShardKey) -> Result<Arc<Shard>, NodeError> {
        self.shard_map().get(key).cloned().ok_or_else(|| NodeError::ShardNotFound(key.clone()))
    }

    /// Runs `f` on one shard with fault isolation: a panic inside `f` is caught, the shard is reloaded from disk,
    /// and the caller gets [`NodeError::ShardPanicked`].
    pub fn with_shard<R>(
        &self,
        key: &ShardKey,
        f: impl FnOnce(&Shard) -> Result<R, NodeError>,
    ) -> Result<R, NodeError> {
        let shard = self.shard(key)?;
        match catch_unwind(AssertUnwindSafe(|| f(&shard))) {
            Ok(result) => result,
            Err(payload) => {
                let message = panic_message(&payload);
                tracing::error!(shard = %key, %message, "shard panicked; reloading it from disk");
                if let Err(e) = self.reload(&shard) {
                    tracing::error!(shard = %key, error = %e, "reload after panic failed; the shard stays retired");
                }
                Err(NodeError::ShardPanicked { key: key.clone(), message })
            }
        }
    }

    /// Replaces a (panicked) shard with a fresh load from its column family.
    fn reload(&self, old: &Arc<Shard>) -> Result<(), NodeError> {
        let _admin = self.lock_admin();
        let key = old.key().clone();
        if !self.shard_map().get(&key).is_some_and(|cur| Arc::ptr_eq(cur, old)) {
            return Ok(()); // already reloaded or dropped by someone else
        }
        old.retire();
        let _writes = old.lock_writes();
        let fresh = self.load_shard(key.clone(), old.config().clone(), old.lease().clone())?;
        fresh.set_filling(old.is_filling());
        self.shard_map_mut().insert(key.clone(), fresh);
        tracing::info!(shard = %key, "shard reloaded after panic");
        Ok(())
    }

    /// Loads a shard from its column family (which starts its graph build, for an HNSW store).
    fn load_shard(&self, key: ShardKey, config: StoreConfig, lease: Arc<Lease>) -> Result<Arc<Shard>, NodeError> {
        Shard::load(
            self.db.clone(),
            self.disk.clone(),
            self.durable,
            self.clock.clone(),
            self.graph_dir.as_deref(),
            key,
            config,
            lease,
            self.index_options,
        )
    }

    fn remove_graph_snapshot(&self, key: &ShardKey) {
        if let Some(dir) = &self.graph_dir {
            let _ = std::fs::remove_file(crate::shard::graph_file(dir, key));
        }
    }

    /// Pooled column families for replicas: (in use or free, free).
    pub fn column_family_slots(&self) -> (usize, usize) {
        (self.slots.total(), self.slots.free())
    }

    /// Free bytes on the data directory's file system (`None` in memory or when it cannot be read).
    pub fn disk_free_bytes(&self) -> Option<u64> {
        self.disk.as_ref().and_then(|d| d.free_bytes().ok())
    }

    /// Fsyncs the WAL: every acknowledged write of every shard is durable afterwards.
    pub fn sync_wal(&self) -> Result<(), NodeError> {
        if self.durable {
            self.db.flush_wal(true)?;
        }
        Ok(())
    }

    fn lock_admin(&self) -> std::sync::MutexGuard<'_, ()> {
        self.admin.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn shard_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<ShardKey, Arc<Shard>>> {
        self.shards.read().unwrap_or_else(|p| p.into_inner())
    }

    fn shard_map_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<ShardKey, Arc<Shard>>> {
        self.shards.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("rocksdb")
}

fn meta_key(key: &ShardKey) -> String {
    format!("{META_PREFIX}{}", key.name())
}

/// Every replica's meta, by replica name (`<store>#<shard>`).
fn read_metas(db: &Db) -> Result<BTreeMap<String, ShardMeta>, NodeError> {
    let mut out = BTreeMap::new();
    for item in db.prefix_iterator(META_PREFIX.as_bytes()) {
        let (k, v) = item?;
        let Some(name) = k.strip_prefix(META_PREFIX.as_bytes()) else { break };
        let name = String::from_utf8_lossy(name).into_owned();
        let meta: ShardMeta = serde_json::from_slice(&v).map_err(|e| NodeError::Corrupt {
            key: ShardKey::new(name.clone(), 0),
            message: format!("shard meta is not valid: {e}"),
        })?;
        out.insert(name, meta);
    }
    Ok(out)
}

/// Per-column-family options: compression as configured (default LZ4 on upper levels, ZSTD at the bottom, where
/// most bytes live), bloom filters for point reads, a block cache shared by all shards.
fn column_family_options(cache: &Cache, compression: Compression) -> Options {
    let mut block = BlockBasedOptions::default();
    block.set_block_cache(cache);
    block.set_bloom_filter(10.0, false);
    block.set_cache_index_and_filter_blocks(true);
    let mut o = Options::default();
    o.set_block_based_table_factory(&block);
    let (upper, bottom) = match compression {
        Compression::None => (DBCompressionType::None, DBCompressionType::None),
        Compression::Lz4 => (DBCompressionType::Lz4, DBCompressionType::Lz4),
        Compression::Zstd => (DBCompressionType::Zstd, DBCompressionType::Zstd),
        Compression::Auto => (DBCompressionType::Lz4, DBCompressionType::Zstd),
    };
    o.set_compression_type(upper);
    o.set_bottommost_compression_type(bottom);
    o.set_write_buffer_size(32 << 20);
    o
}

fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shard::{PointData, ScoredPoint, SearchOptions};
    use rvdb_core::Metric;

    fn point(id: &str, v: &[f32], version: u64) -> PointData {
        PointData { id: id.into(), vector: v.to_vec(), metadata: format!(r#"{{"id":"{id}"}}"#), version }
    }

    fn open(dir: &Path) -> Node {
        Node::open(&NodeOptions::new(dir)).expect("open node")
    }

    #[test]
    fn points_survive_reopen_and_deletes_are_tombstones() {
        let dir = tempfile::tempdir().unwrap();
        let key = ShardKey::new("s", 0);
        {
            let node = open(dir.path());
            node.create_shard(key.clone(), StoreConfig::new("s", 2, Metric::Euclidean)).unwrap();
            let out = node
                .with_shard(&key, |s| s.upsert(vec![point("a", &[0.0, 0.0], 0), point("b", &[1.0, 1.0], 0)], false))
                .unwrap();
            assert_eq!(out.applied, 2);
            assert_eq!(node.with_shard(&key, |s| s.delete(&["a".into(), "zz".into()], 0, false)).unwrap().deleted, 1);
        }
        let node = open(dir.path());
        let stats = node.with_shard(&key, |s| s.stats()).unwrap();
        assert_eq!((stats.points, stats.tombstones), (1, 2));
        let opts = SearchOptions { k: 5, with_vector: true, with_metadata: true, ..Default::default() };
        let hits = node.with_shard(&key, |s| s.search(&[0.0, 0.0], &opts)).unwrap().points;
        assert_eq!(hits.len(), 1);
        assert_eq!(hits[0].id, "b");
        assert_eq!(hits[0].metadata.as_deref(), Some(r#"{"id":"b"}"#));
        assert!((hits[0].distance - 2f32.sqrt()).abs() < 1e-6);
        // a new write after reopen gets a version above everything on disk
        let out = node.with_shard(&key, |s| s.upsert(vec![point("c", &[2.0, 2.0], 0)], false)).unwrap();
        assert!(out.max_version > stats.max_version);
    }

    /// Resharding's two node-side pieces: reads restricted to the points a shard owns under a layout (search,
    /// count, scan see no copy of another shard's point), and the prune that removes the rest for good (disk and
    /// index: gone after a reopen too, and no tombstone left behind).
    #[test]
    fn owner_filters_hide_foreign_copies_and_prune_removes_them() {
        use rvdb_core::filter::Filter;
        use rvdb_core::sharding::{Owner, shard_of};
        let dir = tempfile::tempdir().unwrap();
        let key = ShardKey::new("s", 1);
        let owner = Owner { shard: 1, shards: 4 };
        let ids: Vec<String> = (0..400).map(|i| format!("id{i}")).collect();
        let mine: Vec<&String> = ids.iter().filter(|id| owner.owns(id)).collect();
        assert!(mine.len() > 50 && mine.len() < 150, "{}", mine.len());
        {
            let node = open(dir.path());
            let mut config = StoreConfig::new("s", 2, Metric::Euclidean);
            config.shards = 4;
            node.create_shard(key.clone(), config).unwrap();
            let points = ids.iter().enumerate().map(|(i, id)| point(id, &[i as f32, 0.0], 0)).collect();
            node.with_shard(&key, |s| s.upsert(points, false)).unwrap();
            node.with_shard(&key, |s| s.delete(&["id7".into(), "id8".into()], 0, false)).unwrap();
            let only = Filter { owner: Some(owner), ..Filter::default() };
            let live_mine = mine.iter().filter(|id| !["id7", "id8"].contains(&id.as_str())).count() as u64;
            assert_eq!(node.with_shard(&key, |s| s.count(Some(&only))).unwrap(), live_mine);
            let opts = SearchOptions { k: 400, filter: Some(only.clone()), ..Default::default() };
            let hits = node.with_shard(&key, |s| s.search(&[0.0, 0.0], &opts)).unwrap().points;
            assert_eq!(hits.len() as u64, live_mine);
            assert!(hits.iter().all(|h| shard_of(&h.id, 4) == 1));
            let mut scanned = 0;
            node.with_shard(&key, |s| {
                s.scan_matching("", Some(&only), |_| {
                    scanned += 1;
                    true
                })
            })
            .unwrap();
            assert_eq!(scanned, live_mine);
            let removed = node.with_shard(&key, |s| s.prune(|id| owner.owns(id))).unwrap();
            assert_eq!(removed, (ids.len() - mine.len()) as u64, "foreign points and tombstones alike");
            assert_eq!(node.with_shard(&key, |s| s.count(None)).unwrap(), live_mine);
        }
        let node = open(dir.path());
        let stats = node.with_shard(&key, |s| s.stats()).unwrap();
        let tombstones = mine.iter().filter(|id| ["id7", "id8"].contains(&id.as_str())).count() as u64;
        assert_eq!((stats.points, stats.tombstones), (mine.len() as u64 - tombstones, tombstones));
        let mut all = Vec::new();
        node.with_shard(&key, |s| {
            s.changes(0, None, |c| {
                all.push(c.id().to_string());
                true
            })
        })
        .unwrap();
        assert!(all.iter().all(|id| owner.owns(id)) && all.len() == mine.len(), "{} records", all.len());
    }

    #[test]
    fn last_write_wins_by_version() {
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path());
        let key = ShardKey::new("s", 0);
        node.create_shard(key.clone(), StoreConfig::new("s", 1, Metric::Manhattan)).unwrap();
        node.with_shard(&key, |s| s.upsert(vec![point("x", &[5.0], 100)], false)).unwrap();
        let out = node.with_shard(&key, |s| s.upsert(vec![point("x", &[7.0], 50)], false)).unwrap();
        assert_eq!((out.applied, out.stale), (0, 1));
        // the writer learns which points lost and how far the shard's versions are ahead of its own
        assert_eq!((out.stale_ids, out.shard_max_version), (vec!["x".to_string()], 100));
        // an older delete loses too, and says so
        let out = node.with_shard(&key, |s| s.delete(&["x".into()], 60, false)).unwrap();
        assert_eq!((out.deleted, out.stale_ids, out.shard_max_version), (0, vec!["x".to_string()], 100));
        let got = node.with_shard(&key, |s| s.get(&["x".into()])).unwrap();
        assert_eq!(got[0].vector, vec![5.0]);
        // a newer delete wins, and an insert older than the tombstone stays deleted
        let out = node.with_shard(&key, |s| s.delete(&["x".into()], 200, false)).unwrap();
        assert_eq!((out.deleted, out.stale_ids.len(), out.shard_max_version), (1, 0, 200));
        let out = node.with_shard(&key, |s| s.upsert(vec![point("x", &[9.0], 150)], false)).unwrap();
        assert_eq!(out.stale, 1);
        assert!(node.with_shard(&key, |s| s.get(&["x".into()])).unwrap().is_empty());
        // within one batch, the later duplicate wins
        node.with_shard(&key, |s| s.upsert(vec![point("y", &[1.0], 0), point("y", &[2.0], 0)], false)).unwrap();
        assert_eq!(node.with_shard(&key, |s| s.get(&["y".into()])).unwrap()[0].vector, vec![2.0]);
    }

    #[test]
    fn equal_versions_converge_by_record_bytes_whatever_the_order() {
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path());
        let (a, b) = (ShardKey::new("a", 0), ShardKey::new("b", 0));
        for k in [&a, &b] {
            node.create_shard(k.clone(), StoreConfig::new(k.store.clone(), 1, Metric::Euclidean)).unwrap();
        }
        // two gateways issued version 500 for different writes of "x"; replicas see them in opposite orders
        let (w1, w2) = (point("x", &[1.0], 500), point("x", &[2.0], 500));
        node.with_shard(&a, |s| s.upsert(vec![w1.clone()], false)).unwrap();
        node.with_shard(&a, |s| s.upsert(vec![w2.clone()], false)).unwrap();
        node.with_shard(&b, |s| s.upsert(vec![w2], false)).unwrap();
        node.with_shard(&b, |s| s.upsert(vec![w1], false)).unwrap();
        // and a delete at the same version loses to a live point on both
        node.with_shard(&a, |s| s.delete(&["x".into()], 500, false)).unwrap();
        let get = |k: &ShardKey| node.with_shard(k, |s| s.get(&["x".into()])).unwrap();
        assert_eq!(get(&a), get(&b));
        assert_eq!(get(&a).len(), 1, "the live point beat the tombstone of the same version");
        let (da, db) = (node.with_shard(&a, |s| s.digest()).unwrap(), node.with_shard(&b, |s| s.digest()).unwrap());
        assert_eq!((da.sha256, da.records), (db.sha256, db.records));
    }

    #[test]
    fn changes_since_a_version_bring_a_replica_level_with_its_peer() {
        use crate::shard::Change;
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path());
        let (peer, lagging) = (ShardKey::new("p", 0), ShardKey::new("l", 0));
        for k in [&peer, &lagging] {
            node.create_shard(k.clone(), StoreConfig::new(k.store.clone(), 2, Metric::Euclidean)).unwrap();
        }
        let early: Vec<PointData> = (0..50).map(|i| point(&format!("e{i}"), &[i as f32, 1.0], 100 + i)).collect();
        for k in [&peer, &lagging] {
            node.with_shard(k, |s| s.upsert(early.clone(), false)).unwrap();
        }
        // the lagging replica misses these: new points, an update, deletes (one of an id it never saw)
        let late: Vec<PointData> = (0..30).map(|i| point(&format!("l{i}"), &[i as f32, 2.0], 1000 + i)).collect();
        node.with_shard(&peer, |s| s.upsert(late, false)).unwrap();
        node.with_shard(&peer, |s| s.upsert(vec![point("e3", &[9.0, 9.0], 2000)], false)).unwrap();
        node.with_shard(&peer, |s| s.delete(&["e4".into(), "ghost".into()], 2001, false)).unwrap();
        let since = 149; // the lagging replica's newest version
        let (mut points, mut tombstones) = (Vec::new(), Vec::new());
        node.with_shard(&peer, |s| {
            s.changes(since, None, |c| {
                match c {
                    Change::Point(p) => points.push(p),
                    Change::Tombstone { id, version } => tombstones.push((id, version)),
                }
                true
            })
        })
        .unwrap();
        assert_eq!((points.len(), tombstones.len()), (31, 2), "only what changed after `since` is streamed");
        let applied = node.with_shard(&lagging, |s| s.apply_changes(points.clone(), &tombstones, false)).unwrap();
        assert_eq!(applied, 33);
        // applying again changes nothing (last write wins)
        assert_eq!(node.with_shard(&lagging, |s| s.apply_changes(points, &tombstones, false)).unwrap(), 0);
        let d = |k: &ShardKey| node.with_shard(k, |s| s.digest()).unwrap();
        assert_eq!(d(&peer), d(&lagging));
        assert_eq!(d(&peer).records, 50 + 30 + 1);
        assert!(node.with_shard(&lagging, |s| s.get(&["e4".into()])).unwrap().is_empty());
        let unversioned = vec![point("z", &[0.0, 0.0], 0)];
        assert!(node.with_shard(&lagging, |s| s.apply_changes(unversioned, &[], false)).is_err());
    }

    /// Column-family slots: creating many replicas grows the pool by doubling (one batch create each time),
    /// dropping returns slots for reuse, a re-created replica never sees the keys of the one that held its slot
    /// before, a request still holding a dropped replica cannot reach the slot's next owner, and all of it
    /// survives a reopen.
    #[test]
    fn replicas_take_pooled_column_families_and_give_them_back() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<ShardKey> = (0..40).map(|i| ShardKey::new(format!("s{i}"), 0)).collect();
        let config = |k: &ShardKey| StoreConfig::new(k.store.clone(), 2, Metric::Euclidean);
        {
            let node = open(dir.path());
            for (i, k) in keys.iter().enumerate() {
                node.create_shard(k.clone(), config(k)).unwrap();
                node.with_shard(k, |s| s.upsert(vec![point(&format!("p{i}"), &[i as f32, 0.0], 0)], false)).unwrap();
            }
            assert_eq!(node.slots.total(), 16 + 16 + 32, "the pool doubles: 16, 32, 64");
            let held = node.shard(&keys[0]).unwrap();
            for k in &keys[..20] {
                node.drop_shard(k).unwrap();
            }
            assert!(matches!(held.get(&["p0".into()]), Err(NodeError::ShardNotFound(_))), "a dropped replica is gone");
            assert_eq!(node.slots.free(), 24 + 19, "every dropped slot is free but the one a request still holds");
            drop(held);
            assert_eq!(node.slots.free(), 24 + 20);
            // new replicas take the freed slots: no column family is created, none sees its predecessor's keys
            for k in &keys[..20] {
                node.create_shard(k.clone(), config(k)).unwrap();
                assert_eq!(node.with_shard(k, |s| s.stats()).unwrap().points, 0, "{k}: a new replica starts empty");
                assert_eq!(node.with_shard(k, |s| s.digest()).unwrap().records, 0);
            }
            assert_eq!(node.slots.total(), 64);
            node.with_shard(&keys[0], |s| s.upsert(vec![point("fresh", &[1.0, 1.0], 0)], false)).unwrap();
            node.drop_shard(&keys[39]).unwrap();
        }
        let node = open(dir.path());
        assert_eq!(node.list_shards().len(), 39);
        assert_eq!(node.slots.total(), 64);
        assert_eq!(node.slots.free(), 25);
        let got = node.with_shard(&keys[0], |s| s.get(&["fresh".into(), "p0".into()])).unwrap();
        assert_eq!(got.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["fresh"]);
        assert_eq!(node.with_shard(&keys[25], |s| s.stats()).unwrap().points, 1, "an untouched replica kept its point");
        node.create_shard(keys[39].clone(), config(&keys[39])).unwrap();
        assert_eq!(node.with_shard(&keys[39], |s| s.stats()).unwrap().points, 0);
    }

    /// Write fencing: a replica refuses writes of an older placement epoch than the one it holds (and writes
    /// nothing of them), learns a newer one from a write or a fence, never goes back, keeps it across a restart,
    /// and forgets it with the replica: a new replica of the name starts unfenced.
    #[test]
    fn replicas_refuse_writes_routed_by_an_older_placement() {
        let dir = tempfile::tempdir().unwrap();
        let key = ShardKey::new("f", 0);
        let write = |node: &Node, id: &str, epoch: u64| {
            node.with_shard(&key, |s| s.fenced(epoch, || s.upsert(vec![point(id, &[1.0, 2.0], 0)], false)))
        };
        {
            let node = open(dir.path());
            node.create_shard(key.clone(), StoreConfig::new("f", 2, Metric::Euclidean)).unwrap();
            write(&node, "a", 0).expect("0 is not fenced");
            write(&node, "b", 7).expect("a newer epoch is learnt");
            assert_eq!(node.shard(&key).unwrap().epoch(), 7);
            let err = write(&node, "c", 6).expect_err("older than the replica's");
            assert!(matches!(err, NodeError::StaleEpoch { held: 7, sent: 6, .. }), "{err}");
            let status = tonic::Status::from(err);
            assert_eq!(status.code(), tonic::Code::FailedPrecondition);
            assert_eq!(rvdb_proto::fenced_epoch(&status), Some(7), "the refusal names the epoch to reach");
            assert!(status.message().contains("refresh the routing table"), "{}", status.message());
            assert_eq!(node.with_shard(&key, |s| s.raise_epoch(9)).unwrap(), 9);
            assert_eq!(node.with_shard(&key, |s| s.raise_epoch(8)).unwrap(), 9, "never lowered");
            write(&node, "d", 8).expect_err("fenced at 9");
            write(&node, "e", 9).expect("current");
            write(&node, "f", 0).expect("unfenced");
            let ids = ["a", "b", "c", "d", "e", "f"].map(String::from);
            let got: Vec<String> = node.with_shard(&key, |s| s.get(&ids)).unwrap().into_iter().map(|p| p.id).collect();
            assert_eq!(got, ["a", "b", "e", "f"], "refused writes left nothing");
        }
        let node = open(dir.path());
        assert_eq!(node.shard(&key).unwrap().epoch(), 9, "kept across a restart");
        write(&node, "g", 8).expect_err("still fenced after a restart");
        node.drop_shard(&key).unwrap();
        node.create_shard(key.clone(), StoreConfig::new("f", 2, Metric::Euclidean)).unwrap();
        assert_eq!(node.shard(&key).unwrap().epoch(), 0, "a new replica of the name starts unfenced");
    }

    /// Anti-entropy's bucket digests: equal replicas have equal digests; one differing record changes exactly its
    /// bucket; the changes of that bucket alone bring the replicas level.
    #[test]
    fn bucket_digests_point_at_the_buckets_that_differ() {
        use crate::shard::{BucketFilter, Change, bucket_of};
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path());
        let (a, b) = (ShardKey::new("a", 0), ShardKey::new("b", 0));
        let pts: Vec<PointData> = (0..500).map(|i| point(&format!("p{i}"), &[i as f32, 1.0], 100 + i)).collect();
        for k in [&a, &b] {
            node.create_shard(k.clone(), StoreConfig::new(k.store.clone(), 2, Metric::Euclidean)).unwrap();
            node.with_shard(k, |s| s.upsert(pts.clone(), false)).unwrap();
        }
        let digests = |k: &ShardKey| node.with_shard(k, |s| s.bucket_digests(64)).unwrap();
        assert_eq!(digests(&a), digests(&b));
        assert_eq!(digests(&a).iter().map(|d| d.records).sum::<u64>(), 500);
        node.with_shard(&a, |s| s.upsert(vec![point("p7", &[7.0, 7.0], 5000)], false)).unwrap();
        node.with_shard(&b, |s| s.delete(&["p9".into()], 5001, false)).unwrap();
        let (da, db) = (digests(&a), digests(&b));
        let differing: Vec<u32> = (0..64).filter(|&i| da[i as usize] != db[i as usize]).collect();
        let mut expected = vec![bucket_of(b"p7", 64), bucket_of(b"p9", 64)];
        expected.sort_unstable();
        expected.dedup();
        assert_eq!(differing, expected);
        let filter = BucketFilter::new(64, &differing).unwrap();
        for (from, to) in [(&a, &b), (&b, &a)] {
            let (mut points, mut tombstones) = (Vec::new(), Vec::new());
            node.with_shard(from, |s| {
                s.changes(0, Some(&filter), |c| {
                    match c {
                        Change::Point(p) => points.push(p),
                        Change::Tombstone { id, version } => tombstones.push((id, version)),
                    }
                    true
                })
            })
            .unwrap();
            assert!(points.len() + tombstones.len() < 100, "only the differing buckets are streamed");
            node.with_shard(to, |s| s.apply_changes(points, &tombstones, false)).unwrap();
        }
        assert_eq!(digests(&a), digests(&b));
        assert_eq!(node.with_shard(&a, |s| s.digest()).unwrap(), node.with_shard(&b, |s| s.digest()).unwrap());
        assert!(BucketFilter::new(0, &[]).is_err() && BucketFilter::new(8, &[8]).is_err());
    }

    #[test]
    fn a_panic_is_contained_to_its_shard_which_reloads_from_disk() {
        let dir = tempfile::tempdir().unwrap();
        let node = open(dir.path());
        let (a, b) = (ShardKey::new("a", 0), ShardKey::new("b", 0));
        for k in [&a, &b] {
            node.create_shard(k.clone(), StoreConfig::new(k.store.clone(), 2, Metric::Dot)).unwrap();
            node.with_shard(k, |s| s.upsert(vec![point("p", &[1.0, 2.0], 0)], false)).unwrap();
        }
        let before = node.shard(&a).unwrap();
        let err = node.with_shard(&a, |_| -> Result<(), NodeError> { panic!("index bug") }).unwrap_err();
        assert!(matches!(err, NodeError::ShardPanicked { ref message, .. } if message == "index bug"), "{err}");
        let after = node.shard(&a).unwrap();
        assert!(!Arc::ptr_eq(&before, &after), "the panicked shard is replaced by a fresh load");
        // writers holding the old shard are told to retry instead of writing into a retired index
        assert!(matches!(before.upsert(vec![point("q", &[1.0, 1.0], 0)], false), Err(NodeError::Reloading(_))));
        assert_eq!(node.with_shard(&a, |s| s.stats()).unwrap().points, 1);
        assert_eq!(node.with_shard(&b, |s| s.stats()).unwrap().points, 1);
        node.with_shard(&a, |s| s.upsert(vec![point("q", &[1.0, 1.0], 0)], false)).unwrap();
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.path().is_dir() {
                    out.extend(walk(&e.path()));
                } else {
                    out.push(e.path());
                }
            }
        }
        out
    }

    #[test]
    fn without_persistence_nothing_reaches_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("mem");
        let mut opts = NodeOptions::new(&data);
        opts.persistence = false;
        let key = ShardKey::new("m", 0);
        {
            let node = Node::open(&opts).unwrap();
            node.create_shard(key.clone(), StoreConfig::new("m", 2, Metric::Dot)).unwrap();
            node.with_shard(&key, |s| s.upsert(vec![point("a", &[1.0, 2.0], 0)], true)).unwrap();
            node.with_shard(&key, |s| s.flush()).unwrap();
            let opts = SearchOptions { k: 1, ..Default::default() };
            assert_eq!(node.with_shard(&key, |s| s.search(&[1.0, 0.0], &opts)).unwrap().points[0].id, "a");
        }
        let listing: Vec<_> = walk(&data);
        assert!(listing.is_empty(), "an in-memory node must not write files: {listing:?}");
        let node = Node::open(&opts).unwrap();
        assert!(node.list_shards().is_empty(), "in-memory data does not survive a restart");
    }

    #[test]
    fn drop_and_recreate_and_admin_errors() {
        let dir = tempfile::tempdir().unwrap();
        let key = ShardKey::new("s", 0);
        {
            let node = open(dir.path());
            let config = StoreConfig::new("s", 3, Metric::Cosine);
            node.create_shard(key.clone(), config.clone()).unwrap();
            assert!(matches!(node.create_shard(key.clone(), config.clone()), Err(NodeError::ShardExists(_))));
            node.with_shard(&key, |s| s.upsert(vec![point("p", &[1.0, 0.0, 0.0], 0)], false)).unwrap();
            node.drop_shard(&key).unwrap();
            assert!(matches!(node.drop_shard(&key), Err(NodeError::ShardNotFound(_))));
            node.create_shard(key.clone(), config).unwrap();
            assert_eq!(node.with_shard(&key, |s| s.stats()).unwrap().points, 0, "a recreated store starts empty");
            let wrong = StoreConfig::new("other", 3, Metric::Cosine);
            assert!(matches!(node.create_shard(ShardKey::new("x", 0), wrong), Err(NodeError::BadRequest(_))));
            assert!(matches!(
                node.create_shard(ShardKey::new("x", 1), StoreConfig::new("x", 3, Metric::Cosine)),
                Err(NodeError::BadRequest(_))
            ));
        }
        let node = open(dir.path());
        assert_eq!(node.list_shards().len(), 1);
    }

    fn wait_ready(node: &Node, key: &ShardKey) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while node.shard(key).unwrap().stats().unwrap().index_status != rvdb_core::engine::GraphStatus::Ready {
            assert!(std::time::Instant::now() < deadline, "the graph was never ready");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn hnsw_graphs_build_in_the_background_persist_and_resume_after_restart() {
        use rvdb_core::{IndexKind, IndexSpec};
        let dir = tempfile::tempdir().unwrap();
        let key = ShardKey::new("h", 0);
        let mut config = StoreConfig::new("h", 8, Metric::Cosine);
        config.index = IndexSpec { kind: IndexKind::Hnsw, ..IndexSpec::default() };
        let vec_of =
            |i: usize| -> Vec<f32> { (0..8).map(|j| ((i * 7919 + j * 104_729) % 10_007) as f32 - 5000.0).collect() };
        let batch = |range: std::ops::Range<usize>| -> Vec<PointData> {
            range
                .map(|i| PointData {
                    id: format!("p{i}"),
                    vector: vec_of(i),
                    metadata: format!(r#"{{"bucket":{}}}"#, i % 10),
                    version: 0,
                })
                .collect()
        };
        let q = vec_of(12345);
        let filter = rvdb_core::filter::Filter::parse(
            &serde_json::json!({"must": [{"key": "bucket", "match": {"value": 3}}]}),
            "filter",
        )
        .unwrap();
        let opts = SearchOptions { k: 5, ..Default::default() };
        let filtered = SearchOptions { k: 5, filter: Some(filter), ..Default::default() };
        let (before, before_filtered) = {
            let node = open(dir.path());
            node.create_shard(key.clone(), config.clone()).unwrap();
            node.with_shard(&key, |s| s.upsert(batch(0..3000), false)).unwrap();
            wait_ready(&node, &key);
            let first = node.shard(&key).unwrap().last_graph_build().unwrap();
            assert!(!first.resumed);
            node.with_shard(&key, |s| s.flush()).unwrap(); // writes the snapshot
            assert!(dir.path().join("hnsw").join("h#0.hnsw").exists());
            // Written after the snapshot: a SIGKILL-like stop leaves the snapshot behind the store.
            node.with_shard(&key, |s| s.upsert(batch(3000..3100), false)).unwrap();
            node.with_shard(&key, |s| s.delete(&["p1".to_string(), "p2".to_string()], 0, false)).unwrap();
            let out = node.with_shard(&key, |s| s.search(&q, &opts)).unwrap();
            assert_eq!(out.plan, rvdb_core::engine::Plan::Graph);
            let f = node.with_shard(&key, |s| s.search(&q, &filtered)).unwrap();
            (out.points, f.points)
        };
        let node = open(dir.path());
        wait_ready(&node, &key);
        let resumed = node.shard(&key).unwrap().last_graph_build().unwrap();
        assert!(resumed.resumed, "the persisted graph was loaded");
        assert_eq!(resumed.ops, 100 + 2, "only the writes after the snapshot were applied: {resumed:?}");
        let after = node.with_shard(&key, |s| s.search(&q, &opts)).unwrap().points;
        let ids = |v: &[ScoredPoint]| v.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&after), ids(&before));
        let f = node.with_shard(&key, |s| s.search(&q, &filtered)).unwrap();
        assert_eq!(ids(&f.points), ids(&before_filtered));
        assert!(f.points.len() == 5 && f.points.iter().all(|p| p.id[1..].parse::<usize>().unwrap() % 10 == 3));
        node.drop_shard(&key).unwrap();
        assert!(!dir.path().join("hnsw").join("h#0.hnsw").exists(), "dropping a store removes its snapshot");
    }

    #[test]
    fn metadata_updates_count_and_filtered_scans() {
        use crate::shard::MetadataPatch;
        use rvdb_core::filter::Filter;
        let dir = tempfile::tempdir().unwrap();
        let key = ShardKey::new("m", 0);
        let filter = |j: serde_json::Value| Filter::parse(&j, "filter").unwrap();
        let even = filter(serde_json::json!({"must": [{"key": "even", "match": {"value": true}}]}));
        let done = filter(serde_json::json!({"must": [{"key": "status", "match": {"value": "done"}}]}));
        let ranged = filter(serde_json::json!({"must": [{"key": "i", "range": {"gte": 10}}]}));
        let max_version = {
            let node = open(dir.path());
            node.create_shard(key.clone(), StoreConfig::new("m", 2, Metric::Euclidean)).unwrap();
            let points = (0..40)
                .map(|i| PointData {
                    id: format!("p{i:02}"),
                    vector: vec![i as f32, 1.0],
                    metadata: format!(r#"{{"i":{i},"even":{},"tag":"t"}}"#, i % 2 == 0),
                    version: 0,
                })
                .collect();
            node.with_shard(&key, |s| s.upsert(points, false)).unwrap();
            assert_eq!(node.with_shard(&key, |s| s.count(None)).unwrap(), 40);
            assert_eq!(node.with_shard(&key, |s| s.count(Some(&even))).unwrap(), 20);
            assert_eq!(node.with_shard(&key, |s| s.count(Some(&ranged))).unwrap(), 30, "no index: every point read");

            let mut set = serde_json::Map::new();
            set.insert("status".into(), serde_json::json!("done"));
            let patch = MetadataPatch { set, unset: vec!["tag".into()] };
            let ids: Vec<String> = ["p01", "p02", "p02", "nope"].iter().map(|s| s.to_string()).collect();
            let out = node.with_shard(&key, |s| s.update_metadata(&ids, &patch, 0, false)).unwrap();
            assert_eq!((out.updated, out.stale_ids.len()), (2, 0), "duplicates once, absent ids left alone");
            let got = node.with_shard(&key, |s| s.get(&["p02".into()])).unwrap();
            assert_eq!(got[0].vector, vec![2.0, 1.0]);
            assert_eq!(got[0].metadata, r#"{"even":true,"i":2,"status":"done"}"#);
            assert_eq!(node.with_shard(&key, |s| s.count(Some(&done))).unwrap(), 2, "the payload index follows");
            // an update older than the stored version loses, and says so
            let out = node.with_shard(&key, |s| s.update_metadata(&["p03".into()], &patch, 1, false)).unwrap();
            assert_eq!((out.updated, out.stale_ids), (0, vec!["p03".to_string()]));
            // one document that would grow past the limit refuses the whole request
            let mut big = serde_json::Map::new();
            big.insert("blob".into(), serde_json::json!("x".repeat(rvdb_core::types::MAX_METADATA_BYTES)));
            let too_big = MetadataPatch { set: big, unset: vec![] };
            let e = node.with_shard(&key, |s| s.update_metadata(&["p04".into(), "p05".into()], &too_big, 0, false));
            assert!(e.is_err_and(|e| e.to_string().contains("after this update")));
            let got = node.with_shard(&key, |s| s.get(&["p04".into()])).unwrap();
            assert_eq!(got[0].metadata, r#"{"even":true,"i":4,"tag":"t"}"#);

            // filtered scans: matching points only, in id order, resumable after an id
            let mut seen = Vec::new();
            node.shard(&key)
                .unwrap()
                .scan_matching("p10", Some(&even), |p| {
                    seen.push(p.id);
                    true
                })
                .unwrap();
            let want: Vec<String> = (12..40).step_by(2).map(|i| format!("p{i:02}")).collect();
            assert_eq!(seen, want);
            node.with_shard(&key, |s| s.stats()).unwrap().max_version
        };
        // the updates are durable, and a later write is stamped above them
        let node = open(dir.path());
        let got = node.with_shard(&key, |s| s.get(&["p01".into()])).unwrap();
        assert_eq!(got[0].metadata, r#"{"even":false,"i":1,"status":"done"}"#);
        assert_eq!(node.with_shard(&key, |s| s.count(Some(&done))).unwrap(), 2);
        assert_eq!(node.with_shard(&key, |s| s.stats()).unwrap().max_version, max_version);
    }
}
