//! Column-family slots: creating or dropping a shard replica costs the same with 10 or 10,000 column families.
//!
//! RocksDB rewrites, re-reads and verifies its whole OPTIONS file (the options of every column family) on every
//! `CreateColumnFamily` and `DropColumnFamily`. With one column family per store-shard replica that made each
//! create and drop O(n) in the column families a node holds, and filling a node O(n²): one store of 256 shards
//! took 8.8 s to create, 1,024 shards minutes (Qdrant's #4241 is the same complaint about its per-shard RocksDB).
//!
//! So a node keeps a pool of column families that no replica uses ("slots", named `@<n>`; a replica's own name
//! always contains `#`, so the two cannot clash). The pool grows by doubling, with one `CreateColumnFamilies`
//! call per growth (one OPTIONS write for the whole batch): amortised O(1) column-family work per replica. A new
//! replica takes a free slot and records it in its meta; dropping a replica deletes its meta and, in the same
//! atomic batch, every key of its slot with one range tombstone. The slot goes back to the pool when the last
//! reader of the dropped replica has let go of it ([`Lease`]), so a request still running on the old replica
//! can never read the data of the next one, and a background thread compacts it to give the disk space back.
//! Every replica still has a column family of its own (its compaction, compression and key space); only the
//! column family's name is no longer the replica's.
//!
//! rust-rocksdb has no batch create, so growth calls the C API (`rocksdb_create_column_families`) and owns the
//! handles it returns ([`RawCf`]); the column families that exist when the node opens are opened by rust-rocksdb
//! as before and reached by name.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, Weak};
use std::thread::JoinHandle;

use librocksdb_sys as ffi;
use rocksdb::{AsColumnFamilyRef, AsRawPtr, BoundColumnFamily, Options};

use crate::NodeError;
use crate::shard::Db;

/// Prefix of a slot's column-family name.
const SLOT_PREFIX: char = '@';
/// The first growth of an empty pool; later growths double the number of slots.
const MIN_GROWTH: usize = 16;

/// Every key a shard column family can hold: ids are UTF-8, and no UTF-8 string contains the byte 0xFF, so every
/// id sorts below `[0xFF]`.
pub(crate) const ALL_KEYS: (&[u8], &[u8]) = (b"", b"\xff");

/// The number of a slot's column family (`None`: it is named after its replica, as before slots existed).
pub(crate) fn slot_number(name: &str) -> Option<u64> {
    name.strip_prefix(SLOT_PREFIX)?.parse().ok()
}

/// Whether a column family is a slot.
pub(crate) fn is_slot(name: &str) -> bool {
    slot_number(name).is_some()
}

/// A column family a replica lives in.
#[derive(Clone)]
pub(crate) enum Cf {
    /// Opened with the database (rust-rocksdb holds the handle; reached by name).
    Opened(String),
    /// Created by pool growth while the node runs (this module holds the handle).
    Created(Arc<RawCf>),
}

impl Cf {
    pub(crate) fn name(&self) -> &str {
        match self {
            Cf::Opened(name) => name,
            Cf::Created(raw) => &raw.name,
        }
    }

    /// The handle for one operation; `None` when the column family no longer exists.
    pub(crate) fn bind<'a>(&'a self, db: &'a Db) -> Option<CfRef<'a>> {
        match self {
            Cf::Opened(name) => db.cf_handle(name).map(CfRef::Bound),
            Cf::Created(raw) => Some(CfRef::Raw(raw)),
        }
    }
}

/// A column-family handle for the length of one operation.
pub(crate) enum CfRef<'a> {
    Bound(Arc<BoundColumnFamily<'a>>),
    Raw(&'a RawCf),
}

impl AsColumnFamilyRef for CfRef<'_> {
    fn inner(&self) -> *mut ffi::rocksdb_column_family_handle_t {
        match self {
            CfRef::Bound(cf) => cf.inner(),
            CfRef::Raw(raw) => raw.handle,
        }
    }
}

/// A column-family handle returned by `rocksdb_create_column_families`. It keeps the database open: the handle
/// is destroyed before the database is closed.
pub(crate) struct RawCf {
    name: String,
    handle: *mut ffi::rocksdb_column_family_handle_t,
    _db: Arc<Db>,
}

// SAFETY: a RocksDB column-family handle is thread-safe (RocksDB's own handles are shared between threads; the
// rust-rocksdb handles are Send + Sync for the same reason); it is only destroyed in `Drop`.
unsafe impl Send for RawCf {}
unsafe impl Sync for RawCf {}

impl Drop for RawCf {
    fn drop(&mut self) {
        // SAFETY: the handle came from rocksdb_create_column_families and is destroyed once; `_db` is still
        // alive, so the database is open.
        unsafe { ffi::rocksdb_column_family_handle_destroy(self.handle) }
    }
}

/// The pool of free slots of one node.
pub(crate) struct Slots {
    db: Arc<Db>,
    options: Options,
    pool: Mutex<Pool>,
    janitor: Mutex<Option<(Sender<Cf>, JoinHandle<()>)>>,
    stopping: Arc<AtomicBool>,
}

struct Pool {
    free: Vec<Cf>,
    /// Slots in use or free (growth doubles it).
    total: usize,
    /// The number of the next slot created.
    next: u64,
}

impl Slots {
    /// The pool over the column families found when the node opened: `free` are the slots no replica's meta
    /// names (they may still hold a dropped replica's range-deleted keys: they are free at once and queued for
    /// compaction), `total` the slots in use or free, `next` a number above every slot's.
    pub(crate) fn new(db: Arc<Db>, options: Options, free: Vec<String>, total: usize, next: u64) -> Arc<Slots> {
        let stopping = Arc::new(AtomicBool::new(false));
        let (tx, rx) = channel::<Cf>();
        let janitor = {
            let db = Arc::downgrade(&db);
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name("rvdb-slot-janitor".into())
                .spawn(move || reclaim_loop(db, rx, stopping))
                .expect("spawn the slot janitor thread")
        };
        let slots = Arc::new(Slots {
            db,
            options,
            pool: Mutex::new(Pool { free: Vec::new(), total, next }),
            janitor: Mutex::new(Some((tx, janitor))),
            stopping,
        });
        for name in free {
            slots.release(Cf::Opened(name));
        }
        slots
    }

    /// A free slot for a new replica, growing the pool when none is free.
    pub(crate) fn take(&self) -> Result<Cf, NodeError> {
        let mut pool = self.pool.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cf) = pool.free.pop() {
            return Ok(cf);
        }
        let grow = pool.total.max(MIN_GROWTH);
        let names: Vec<String> = (pool.next..pool.next + grow as u64).map(|n| format!("{SLOT_PREFIX}{n}")).collect();
        let created = self.create_batch(&names)?;
        pool.next += grow as u64;
        pool.total += created.len();
        pool.free.extend(created.into_iter().rev());
        tracing::debug!(slots = pool.total, "grew the column-family pool");
        pool.free.pop().ok_or_else(|| NodeError::StorageCall("column-family pool growth created nothing".into()))
    }

    /// The slots in use or free.
    pub(crate) fn total(&self) -> usize {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// The slots free now.
    pub(crate) fn free(&self) -> usize {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).free.len()
    }

    /// Gives a slot whose keys are all deleted back to the pool, and queues it for compaction.
    fn release(&self, cf: Cf) {
        if let Some((tx, _)) = self.janitor.lock().unwrap_or_else(|p| p.into_inner()).as_ref() {
            let _ = tx.send(cf.clone());
        }
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).free.push(cf);
    }

    /// A slot taken back by a failed create (nothing was written to it).
    pub(crate) fn put_back(&self, cf: Cf) {
        self.pool.lock().unwrap_or_else(|p| p.into_inner()).free.push(cf);
    }

    /// Creates column families `names` with one `CreateColumnFamilies` call (one OPTIONS-file write).
    fn create_batch(&self, names: &[String]) -> Result<Vec<Cf>, NodeError> {
        let c_names: Vec<std::ffi::CString> =
            names.iter().map(|n| std::ffi::CString::new(n.as_str()).expect("slot names have no NUL")).collect();
        let ptrs: Vec<*const std::ffi::c_char> = c_names.iter().map(|n| n.as_ptr()).collect();
        let count = i32::try_from(ptrs.len()).map_err(|_| NodeError::StorageCall("too many slots at once".into()))?;
        let mut len: usize = 0;
        let mut err: *mut std::ffi::c_char = std::ptr::null_mut();
        // SAFETY: the database and options pointers are alive for the call (`self` holds both); `ptrs` points to
        // `count` NUL-terminated names that outlive the call. The returned array is freed below with the matching
        // destroy function after its handles are moved into `RawCf`s, which destroy each one once.
        let handles = unsafe {
            ffi::rocksdb_create_column_families(
                self.db.as_raw_ptr(),
                self.options.as_raw_ptr(),
                count,
                ptrs.as_ptr(),
                &mut len,
                &mut err,
            )
        };
        let mut out = Vec::with_capacity(len);
        if !handles.is_null() {
            for (i, name) in names.iter().enumerate().take(len) {
                // SAFETY: `handles` has `len` valid entries.
                let handle = unsafe { *handles.add(i) };
                out.push(Cf::Created(Arc::new(RawCf { name: name.clone(), handle, _db: self.db.clone() })));
            }
            // SAFETY: frees only the array (the handles now belong to `out`).
            unsafe { ffi::rocksdb_create_column_families_destroy(handles) };
        }
        if !err.is_null() {
            // SAFETY: RocksDB set `err` to a malloc'ed C string.
            let message = unsafe { std::ffi::CStr::from_ptr(err) }.to_string_lossy().into_owned();
            // SAFETY: freed once, with RocksDB's allocator.
            unsafe { ffi::rocksdb_free(err.cast()) };
            if out.is_empty() {
                return Err(NodeError::StorageCall(format!("cannot create column families: {message}")));
            }
            tracing::warn!(created = out.len(), %message, "column-family pool growth stopped part way");
        }
        Ok(out)
    }
}

impl Drop for Slots {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        if let Some((tx, handle)) = self.janitor.get_mut().unwrap_or_else(|p| p.into_inner()).take() {
            drop(tx);
            let _ = handle.join();
        }
    }
}

/// Compacts released slots, one at a time, so a dropped replica's disk space comes back. Holds the database only
/// for the length of one compaction, and stops at once when the node closes.
fn reclaim_loop(db: Weak<Db>, rx: Receiver<Cf>, stopping: Arc<AtomicBool>) {
    while let Ok(cf) = rx.recv() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Some(db) = db.upgrade() else { return };
        if let Some(handle) = cf.bind(&db) {
            let mut options = rocksdb::CompactOptions::default();
            options.set_bottommost_level_compaction(rocksdb::BottommostLevelCompaction::Force);
            db.compact_range_cf_opt(&handle, Some(ALL_KEYS.0), Some(ALL_KEYS.1), &options);
        }
    }
}

/// A replica's hold on its column family. The replica (and a reload of it after a panic) share one lease; when
/// the replica is dropped its keys are deleted and the lease marked [`Lease::free`], and the slot returns to the
/// pool only when the last holder lets go, so no request still running on the dropped replica can see the next.
pub(crate) struct Lease {
    cf: Cf,
    /// `None` for a column family named after its replica (dropped with it, never pooled).
    pool: Option<Weak<Slots>>,
    freed: AtomicBool,
}

impl Lease {
    pub(crate) fn new(cf: Cf, pool: &Arc<Slots>) -> Arc<Lease> {
        let pool = is_slot(cf.name()).then(|| Arc::downgrade(pool));
        Arc::new(Lease { cf, pool, freed: AtomicBool::new(false) })
    }

    pub(crate) fn cf(&self) -> &Cf {
        &self.cf
    }

    /// Whether the column family is a pooled slot (else it is dropped with its replica).
    pub(crate) fn pooled(&self) -> bool {
        self.pool.is_some()
    }

    /// The replica's keys are deleted: the slot goes back to the pool when the last holder drops the lease.
    pub(crate) fn free(&self) {
        self.freed.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_freed(&self) -> bool {
        self.freed.load(Ordering::SeqCst)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.freed.load(Ordering::SeqCst)
            && let Some(pool) = self.pool.as_ref().and_then(Weak::upgrade)
        {
            pool.release(self.cf.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_names_are_never_replica_names() {
        assert!(is_slot("@0") && is_slot("@12345"));
        assert!(!is_slot("@") && !is_slot("@x") && !is_slot("s#0") && !is_slot("@1#0"));
    }
}
