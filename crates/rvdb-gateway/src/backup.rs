//! Backups, restores, JSON export / import, and the automatic backup schedule.
//!
//! A backup is a directory `<backup_dir>/<name>/`:
//! - `points-<shard>.bin.zst`: one zstd stream per source shard of binary point records
//!   (`[u32 id_len][id][u64 version][u32 dim][f32 × dim][u32 metadata_len][metadata JSON]`, little-endian),
//! - `manifest.json`: format version, rvdb version, the store's config, point count, creation time, and per file
//!   its point count, byte size and SHA-256.
//!
//! JSON exports live in `<backup_dir>/exports/` (so `exports` is not a backup name).
//!
//! Consistency: every shard's scan is opened before any data is read, and each node reads from a RocksDB
//! snapshot taken when its scan opens, so the backup is the store as of (within milliseconds of) one moment while
//! writes continue. Atomicity: files are written into a hidden temporary (`.<name>.tmp-<pid>-<ms>-<seq>`, unique
//! per call), fsynced, and published last, so a crash never leaves a half backup or export under a real name.
//! Publishing never replaces: a backup directory is renamed into place (a rename onto a non-empty directory
//! fails), an export file is hard-linked (a link onto an existing name fails), and calls of this process claim a
//! name for their whole run, so of two calls with one name exactly one succeeds and the other gets
//! `AlreadyExists`. Temporaries of processes that no longer run are removed at start ([`BackupManager::recover`]).
//!
//! Portability: records carry no shard number; a restore routes every point through the gateway again, so a
//! backup restores onto any shard count or cluster. A restore verifies every checksum and record count before it
//! creates anything, and drops the new store if anything fails midway: nothing half-restored remains.
//!
//! Staging of restores and imports: a store cannot be renamed (its shards are RocksDB column families named after
//! it), so a restore fills the target store under its real name and journals that instead. Before the store is
//! created, a marker `<backup_dir>/.restoring-<store>.json` (the config about to be created, the owner's pid) is
//! written and fsynced; it is removed only after the last point is written and flushed. A failure or a cancelled
//! request drops the store at once; after a kill the next start finds the marker and drops the store it names
//! (only if that store still has the journalled shape, so a store made by someone else since is never touched),
//! so a retry succeeds. The marker is created exclusively, so it is also the claim on the name: a second restore
//! into the same name gets `AlreadyExists`. The store is visible (and readable) while it fills; "complete" is
//! the absence of its marker. This keeps the catalog, node and wire formats unchanged, which a hidden staging
//! store published by a rename would need (a rename RPC on nodes and manager, and copying every column family).
//!
//! Export / import use JSON Lines (a header object, then one point per line), so both stream: stores larger than
//! memory export and import in constant memory, and `f32` values round-trip exactly (shortest repr).

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rvdb_core::StoreConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{GatewayError, Result};
use crate::gateway::{Gateway, PointInput};
use crate::routing::StoreRoute;

pub const FORMAT: &str = "rvdb-backup";
pub const FORMAT_VERSION: u32 = 1;
const EXPORT_VERSION: u32 = 1;
const AUTO_PREFIX: &str = "auto-";
/// The directory of JSON exports inside `backup_dir`: reserved, not a backup name.
const EXPORTS_DIR: &str = "exports";
/// `<backup_dir>/.restoring-<store>.json`: the journal of a restore or import that has not completed.
const STAGING_PREFIX: &str = ".restoring-";
const STAGING_SUFFIX: &str = ".json";
/// Marks hidden temporaries: `.<name>.tmp-<pid>-<ms>-<seq>`.
const TMP_MARK: &str = ".tmp-";
/// Upsert batches a restore keeps in flight.
const RESTORE_BATCHES_IN_FLIGHT: usize = 4;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupFile {
    pub name: String,
    pub points: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub rvdb_version: String,
    pub name: String,
    pub store: StoreConfig,
    pub point_count: u64,
    pub created_at: String,
    pub created_unix_ms: u64,
    pub compression: String,
    pub files: Vec<BackupFile>,
}

/// What `list_backups` shows of one backup.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct BackupInfo {
    pub name: String,
    pub store: String,
    pub points: u64,
    pub bytes: u64,
    pub created_at: String,
    pub rvdb_version: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RestoreInfo {
    pub backup: String,
    pub store: String,
    pub points: u64,
    pub shards: u32,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ExportInfo {
    pub store: String,
    /// The file name, as `import` takes it.
    pub file: String,
    /// Where the file was written.
    pub path: String,
    pub points: u64,
    pub bytes: u64,
}

/// The header line of a JSON Lines export.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExportHeader {
    rvdb_export: u32,
    store: StoreConfig,
    exported_at: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct ExportPoint {
    id: String,
    vector: Vec<f32>,
    #[serde(default)]
    metadata: serde_json::Value,
}

/// Backup names: `[A-Za-z0-9_.-]{1,128}`, not starting with a dot (hidden temporaries start with one).
pub fn validate_file_name(kind: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(GatewayError::InvalidArgument(format!(
            "invalid {kind} name {:?}: use 1-128 letters, digits, '_', '-', '.', not starting with '.' (no paths)",
            rvdb_core::error::excerpt(name)
        )))
    }
}

/// A backup name: a valid file name other than the reserved `exports`.
pub fn validate_backup_name(name: &str) -> Result<()> {
    validate_file_name("backup", name)?;
    if name == EXPORTS_DIR {
        return Err(GatewayError::InvalidArgument(format!(
            "invalid backup name {name:?}: it is reserved (the directory of JSON exports); choose another name"
        )));
    }
    Ok(())
}

fn now() -> (String, u64) {
    let t = chrono::Utc::now();
    (t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), t.timestamp_millis().max(0) as u64)
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> GatewayError {
    move |e| GatewayError::Backend(format!("{what}: {e}"))
}

/// A hidden temporary beside `name` in `dir`, unique per call (pid, time and a counter), so concurrent calls never
/// share one.
fn temp_path(dir: &Path, name: &str) -> PathBuf {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let (_, ms) = now();
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    dir.join(format!(".{name}{TMP_MARK}{}-{ms}-{seq}", std::process::id()))
}

/// Whether another rvdb process `pid` runs (one in `/proc` with this program's name; where there is no `/proc`,
/// none does), so that two processes sharing a backup dir leave each other's work alone while a pid reused by an
/// unrelated program does not keep a dead process's leftovers. This process's own pid counts as not running:
/// [`BackupManager::recover`] runs before this process writes anything, so an entry with its pid was left by an
/// earlier process that had the same pid (in a container rvdb is often pid 1 every time).
fn other_process_alive(pid: u32) -> bool {
    let name = |proc: &str| std::fs::read_to_string(Path::new("/proc").join(proc).join("comm")).ok();
    pid != std::process::id() && name(&pid.to_string()).is_some_and(|n| Some(n) == name("self"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Removes the hidden temporaries in `dir` that a killed process left (`.<name>.tmp-<pid>-…` whose pid does not
/// run; names from older versions without a pid count as left). Returns how many were removed.
fn remove_temporaries(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(at) = name.rfind(TMP_MARK).filter(|_| name.starts_with('.')) else { continue };
        let pid = name[at + TMP_MARK.len()..].split('-').next().and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(other_process_alive) {
            continue;
        }
        let path = entry.path();
        let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match result {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed a temporary left by an interrupted backup or export");
                removed += 1;
            }
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "cannot remove a left temporary"),
        }
    }
    removed
}

/// Moves the finished temporary `tmp` to `target` unless `target` exists: a hard link fails atomically where a
/// rename would silently replace the file. Where the file system has no hard links, a rename (this process's
/// claim on the name still keeps its own calls apart).
fn publish_file(tmp: &Path, target: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(tmp, target) {
        Ok(()) => {
            if let Err(e) = std::fs::remove_file(tmp) {
                tracing::warn!(path = %tmp.display(), error = %e, "cannot remove a published temporary");
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Err(e),
        Err(_) if target.exists() => return Err(std::io::ErrorKind::AlreadyExists.into()),
        Err(_) => std::fs::rename(tmp, target)?,
    }
    target.parent().map_or(Ok(()), sync_dir)
}

/// The journal entry of a restore or import in progress (see the module docs).
#[derive(Debug, Serialize, Deserialize)]
struct StagingMarker {
    /// The store as it is created.
    store: StoreConfig,
    /// The backup or export file it is filled from.
    source: String,
    pid: u32,
    started_at: String,
}

/// Whether `found` is (still) the store a marker journalled: same name, dimension, metric and shard count.
fn same_store(found: &StoreConfig, journalled: &StoreConfig) -> bool {
    found.name == journalled.name
        && found.dimension == journalled.dimension
        && found.metric == journalled.metric
        && found.shards == journalled.shards
}

/// Drops the store a restore or import created and did not complete, then its marker. The marker stays when the
/// drop fails, so the next start tries again.
async fn abandon_staged(gateway: &Gateway, store: &str, marker: &Path) -> Result<()> {
    match gateway.drop_store(store).await {
        Ok(()) | Err(GatewayError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    remove_marker(marker);
    Ok(())
}

fn remove_marker(marker: &Path) {
    if let Err(e) = std::fs::remove_file(marker) {
        tracing::warn!(path = %marker.display(), error = %e, "cannot remove a restore marker");
    }
    if let Some(dir) = marker.parent() {
        let _ = sync_dir(dir);
    }
}

/// A store created by a restore or import that is not complete yet. Dropped without [`Self::disarm`] (the request
/// was cancelled, its future dropped), it removes the store in the background.
struct StagedStore {
    gateway: Arc<Gateway>,
    store: String,
    marker: PathBuf,
    armed: bool,
}

impl StagedStore {
    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for StagedStore {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (gateway, store, marker) = (self.gateway.clone(), self.store.clone(), self.marker.clone());
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = abandon_staged(&gateway, &store, &marker).await {
                    tracing::error!(store = %store, error = %e, "cannot remove a cancelled restore; it is removed at the next start");
                }
            });
        }
    }
}

/// A name this process is writing (a backup directory or export file): held for the whole call.
struct Claim<'a> {
    claims: &'a Mutex<HashSet<PathBuf>>,
    path: PathBuf,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.claims.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.path);
    }
}

/// What [`BackupManager::recover`] cleaned up.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Recovery {
    /// Temporaries of interrupted backups and exports removed.
    pub temporaries: usize,
    /// Stores of interrupted restores and imports dropped.
    pub dropped_stores: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A writer that hashes what passes through it and counts bytes.
struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
    bytes: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

fn write_record(w: &mut impl Write, id: &str, version: u64, vector: &[f32], metadata: &str) -> std::io::Result<()> {
    w.write_all(&(id.len() as u32).to_le_bytes())?;
    w.write_all(id.as_bytes())?;
    w.write_all(&version.to_le_bytes())?;
    w.write_all(&(vector.len() as u32).to_le_bytes())?;
    for x in vector {
        w.write_all(&x.to_le_bytes())?;
    }
    w.write_all(&(metadata.len() as u32).to_le_bytes())?;
    w.write_all(metadata.as_bytes())
}

/// One decoded backup record.
struct Record {
    id: String,
    vector: Vec<f32>,
    metadata: String,
}

/// Reads the next record; `Ok(None)` at a clean end of stream, an error on a truncated or malformed one.
fn read_record(r: &mut impl Read, max_dim: u32) -> std::result::Result<Option<Record>, String> {
    let mut len = [0u8; 4];
    match r.read(&mut len[..1]) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    let mut exact = |buf: &mut [u8]| r.read_exact(buf).map_err(|e| format!("truncated record: {e}"));
    exact(&mut len[1..])?;
    let id_len = u32::from_le_bytes(len) as usize;
    if id_len == 0 || id_len > 512 {
        return Err(format!("bad id length {id_len}"));
    }
    let mut id = vec![0u8; id_len];
    exact(&mut id)?;
    let mut v8 = [0u8; 8];
    exact(&mut v8)?;
    let mut d4 = [0u8; 4];
    exact(&mut d4)?;
    let dim = u32::from_le_bytes(d4);
    if dim == 0 || dim > max_dim {
        return Err(format!("bad dimension {dim}"));
    }
    let mut raw = vec![0u8; dim as usize * 4];
    exact(&mut raw)?;
    exact(&mut d4)?;
    let meta_len = u32::from_le_bytes(d4) as usize;
    if meta_len > rvdb_core::types::MAX_METADATA_BYTES {
        return Err(format!("bad metadata length {meta_len}"));
    }
    let mut meta = vec![0u8; meta_len];
    exact(&mut meta)?;
    Ok(Some(Record {
        id: String::from_utf8(id).map_err(|_| "id is not UTF-8".to_string())?,
        vector: raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        metadata: String::from_utf8(meta).map_err(|_| "metadata is not UTF-8".to_string())?,
    }))
}

/// Backups and exports of one deployment, kept under `backup_dir`.
#[derive(Debug)]
pub struct BackupManager {
    gateway: Arc<Gateway>,
    dir: PathBuf,
    /// Backup directories and export files this process is writing now.
    claims: Mutex<HashSet<PathBuf>>,
}

impl BackupManager {
    pub fn new(gateway: Arc<Gateway>, dir: impl Into<PathBuf>) -> Self {
        Self { gateway, dir: dir.into(), claims: Mutex::new(HashSet::new()) }
    }

    /// Claims `path` for one call of this process; `None` while another call holds it.
    fn claim(&self, path: &Path) -> Option<Claim<'_>> {
        let mut claims = self.claims.lock().unwrap_or_else(|p| p.into_inner());
        claims.insert(path.to_path_buf()).then(|| Claim { claims: &self.claims, path: path.to_path_buf() })
    }

    /// Cleans up after a process that was killed (run at start, before serving): removes the temporaries of
    /// interrupted backups and exports, and drops the stores of interrupted restores and imports (see the module
    /// docs), so their names are free for a retry. Markers and temporaries of a process that still runs are left.
    pub async fn recover(&self) -> Recovery {
        let mut recovery = Recovery {
            temporaries: remove_temporaries(&self.dir) + remove_temporaries(&self.exports_dir()),
            ..Recovery::default()
        };
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return recovery };
        let markers: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                name.starts_with(STAGING_PREFIX) && name.ends_with(STAGING_SUFFIX) && !name.contains(TMP_MARK)
            })
            .map(|e| e.path())
            .collect();
        for path in markers {
            let marker = std::fs::read(&path).ok().and_then(|b| serde_json::from_slice::<StagingMarker>(&b).ok());
            // A marker is fsynced before its store is created: one that cannot be read was cut short by a kill
            // before anything was created.
            let Some(marker) = marker else {
                remove_marker(&path);
                continue;
            };
            if other_process_alive(marker.pid) {
                continue;
            }
            let store = marker.store.name.clone();
            match self.gateway.resolve(&store).await {
                Ok(route) if same_store(&route.config, &marker.store) => {
                    match abandon_staged(&self.gateway, &store, &path).await {
                        Ok(()) => {
                            tracing::warn!(store = %store, source = %marker.source, started_at = %marker.started_at, "dropped a store whose restore or import was interrupted");
                            recovery.dropped_stores.push(store);
                        }
                        Err(e) => {
                            tracing::error!(store = %store, error = %e, "cannot drop an interrupted restore; retrying at the next start")
                        }
                    }
                }
                Ok(_) => {
                    tracing::warn!(store = %store, "an interrupted restore's store was replaced by another one; leaving it");
                    remove_marker(&path);
                }
                Err(GatewayError::NotFound(_)) => remove_marker(&path),
                Err(e) => {
                    tracing::error!(store = %store, error = %e, "cannot check an interrupted restore; retrying at the next start")
                }
            }
        }
        recovery
    }

    /// Creates `config.name` and fills it with `fill`, journalled by a staging marker (see the module docs) until
    /// `fill` succeeded and the store is flushed. On failure the store is dropped before the error returns.
    async fn create_staged<T>(
        &self,
        config: StoreConfig,
        source: &str,
        fill: impl std::future::Future<Output = Result<T>>,
    ) -> Result<(StoreRoute, T)> {
        let store = config.name.clone();
        let taken = || GatewayError::AlreadyExists(format!("store '{store}' already exists"));
        match self.gateway.resolve(&store).await {
            Err(GatewayError::NotFound(_)) => {}
            Ok(_) => return Err(taken()),
            Err(e) => return Err(e),
        }
        std::fs::create_dir_all(&self.dir).map_err(io_err(format!("creating backup dir {}", self.dir.display())))?;
        let marker = self.dir.join(format!("{STAGING_PREFIX}{store}{STAGING_SUFFIX}"));
        let mut f = match std::fs::OpenOptions::new().write(true).create_new(true).open(&marker) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(GatewayError::AlreadyExists(format!(
                    "store '{store}' is being restored or imported right now; wait for it or choose another name"
                )));
            }
            Err(e) => return Err(io_err("writing a restore marker")(e)),
        };
        let journal = StagingMarker {
            store: config.clone(),
            source: source.to_string(),
            pid: std::process::id(),
            started_at: now().0,
        };
        let written = serde_json::to_vec(&journal)
            .map_err(std::io::Error::other)
            .and_then(|bytes| f.write_all(&bytes))
            .and_then(|()| f.sync_all())
            .and_then(|()| sync_dir(&self.dir));
        drop(f);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&marker);
            return Err(io_err("writing a restore marker")(e));
        }
        let route = match self.gateway.create_store(config).await {
            Ok(route) => route,
            Err(e) => {
                remove_marker(&marker);
                return Err(e);
            }
        };
        let mut staged =
            StagedStore { gateway: self.gateway.clone(), store: store.clone(), marker: marker.clone(), armed: true };
        let outcome = match fill.await {
            Ok(v) => self.gateway.sync(&store).await.map(|()| v),
            Err(e) => Err(e),
        };
        staged.disarm();
        match outcome {
            Ok(v) => {
                remove_marker(&marker);
                Ok((route, v))
            }
            Err(e) => {
                if let Err(drop_err) = abandon_staged(&self.gateway, &store, &marker).await {
                    tracing::error!(store = %store, error = %drop_err, "could not remove a partly restored store; it is removed at the next start");
                }
                Err(e)
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn exports_dir(&self) -> PathBuf {
        self.dir.join(EXPORTS_DIR)
    }

    /// Writes a backup of `store`. `progress(points_written)` is called per chunk; returning false cancels (the
    /// temporary directory is removed).
    pub async fn backup(
        &self,
        store: &str,
        name: Option<String>,
        mut progress: impl FnMut(u64) -> bool,
    ) -> Result<BackupInfo> {
        let route = self.gateway.resolve(store).await?;
        let (created_at, created_unix_ms) = now();
        let name = name.unwrap_or_else(|| format!("{store}-{}", created_at.replace([':', '.'], "-")));
        validate_backup_name(&name)?;
        let final_dir = self.dir.join(&name);
        let taken =
            || GatewayError::AlreadyExists(format!("a backup named '{name}' already exists; choose another name"));
        let Some(_claim) = self.claim(&final_dir) else {
            return Err(GatewayError::AlreadyExists(format!(
                "a backup named '{name}' already exists (it is being written right now); choose another name"
            )));
        };
        if final_dir.exists() {
            return Err(taken());
        }
        std::fs::create_dir_all(&self.dir).map_err(io_err(format!("creating backup dir {}", self.dir.display())))?;
        let tmp = temp_path(&self.dir, &name);
        std::fs::create_dir_all(&tmp).map_err(io_err("creating temporary backup dir"))?;
        let result = self.write_backup(&route.config, route.shards.len() as u32, &name, &tmp, &mut progress).await;
        let manifest = match result {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
        };
        let manifest = Manifest { created_at, created_unix_ms, ..manifest };
        let bytes: u64 = manifest.files.iter().map(|f| f.bytes).sum();
        let finish = || -> std::io::Result<()> {
            let mut f = File::create(tmp.join("manifest.json"))?;
            // a manifest that cannot be encoded fails the backup; an empty one would be a backup nothing can restore
            f.write_all(&serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?)?;
            f.sync_all()?;
            sync_dir(&tmp)?;
            // Never replaces: a rename onto an existing (non-empty) backup directory fails.
            std::fs::rename(&tmp, &final_dir)?;
            sync_dir(&self.dir)
        };
        if let Err(e) = finish() {
            let _ = std::fs::remove_dir_all(&tmp);
            if matches!(e.kind(), std::io::ErrorKind::DirectoryNotEmpty | std::io::ErrorKind::AlreadyExists) {
                return Err(taken());
            }
            return Err(GatewayError::Backend(format!("finishing backup '{name}': {e}")));
        }
        tracing::info!(backup = %name, store, points = manifest.point_count, bytes, "backup written");
        Ok(BackupInfo {
            name,
            store: store.to_string(),
            points: manifest.point_count,
            bytes,
            created_at: manifest.created_at,
            rvdb_version: manifest.rvdb_version,
            path: final_dir.display().to_string(),
        })
    }

    async fn write_backup(
        &self,
        config: &StoreConfig,
        shards: u32,
        name: &str,
        tmp: &Path,
        progress: &mut impl FnMut(u64) -> bool,
    ) -> Result<Manifest> {
        // Open every shard's scan first: the snapshots are taken now, together.
        let mut streams = Vec::with_capacity(shards as usize);
        for shard in 0..shards {
            streams.push(self.gateway.scan_shard(&config.name, shard, true).await?);
        }
        let mut files = Vec::with_capacity(shards as usize);
        let mut total = 0u64;
        for (shard, mut stream) in streams.into_iter().enumerate() {
            let file_name = format!("points-{shard:05}.bin.zst");
            let path = tmp.join(&file_name);
            let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<rvdb_proto::v1::Point>>(4);
            let writer = tokio::task::spawn_blocking(move || -> std::io::Result<BackupFile> {
                let file = File::create(&path)?;
                let hashing = HashingWriter { inner: BufWriter::new(file), hash: Sha256::new(), bytes: 0 };
                let mut enc = zstd::Encoder::new(hashing, 3)?;
                let mut points = 0u64;
                while let Some(chunk) = rx.blocking_recv() {
                    for p in &chunk {
                        write_record(&mut enc, &p.id, p.version, &p.vector, &p.metadata_json)?;
                    }
                    points += chunk.len() as u64;
                }
                let mut hashing = enc.finish()?;
                hashing.flush()?;
                let file = hashing.inner.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                Ok(BackupFile { name: file_name, points, bytes: hashing.bytes, sha256: hex(&hashing.hash.finalize()) })
            });
            // A writer that hung up failed; its own error is reported below.
            forward(&mut stream, &tx, &mut total, progress).await?;
            drop(tx);
            let file = writer
                .await
                .map_err(|e| GatewayError::Backend(format!("backup writer failed: {e}")))?
                .map_err(io_err(format!("writing backup '{name}'")))?;
            files.push(file);
        }
        Ok(Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            rvdb_version: env!("CARGO_PKG_VERSION").into(),
            name: name.into(),
            store: config.clone(),
            point_count: files.iter().map(|f| f.points).sum(),
            created_at: String::new(),
            created_unix_ms: 0,
            compression: "zstd".into(),
            files,
        })
    }

    /// Every backup under `backup_dir` (optionally of one store), newest first. Directories whose manifest is
    /// missing or unreadable are skipped (and logged), never listed as restorable.
    pub fn list(&self, store: Option<&str>) -> Result<Vec<BackupInfo>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(GatewayError::Backend(format!("reading {}: {e}", self.dir.display()))),
        };
        let mut found: Vec<(u64, BackupInfo)> = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == EXPORTS_DIR || !entry.path().is_dir() {
                continue;
            }
            match read_manifest(&entry.path()) {
                Ok(m) if store.is_none_or(|s| s == m.store.name) => {
                    let bytes = m.files.iter().map(|f| f.bytes).sum();
                    found.push((
                        m.created_unix_ms,
                        BackupInfo {
                            name,
                            store: m.store.name.clone(),
                            points: m.point_count,
                            bytes,
                            created_at: m.created_at,
                            rvdb_version: m.rvdb_version,
                            path: entry.path().display().to_string(),
                        },
                    ));
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(backup = %name, error = %e, "skipping unreadable backup"),
            }
        }
        found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.name.cmp(&b.1.name)));
        out.extend(found.into_iter().map(|(_, b)| b));
        Ok(out)
    }

    /// Finds a backup by name (or by a path inside `backup_dir`, as `list_backups` prints it).
    fn resolve(&self, backup: &str) -> Result<PathBuf> {
        let name = Path::new(backup)
            .strip_prefix(&self.dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| backup.to_string());
        let name = name.trim_end_matches('/');
        validate_backup_name(name)?;
        let path = self.dir.join(name);
        if !path.join("manifest.json").exists() {
            let known: Vec<String> = self.list(None)?.into_iter().map(|b| b.name).collect();
            return Err(GatewayError::NotFound(format!(
                "backup '{name}' does not exist; available backups: {}",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )));
        }
        Ok(path)
    }

    /// Restores a backup into a new store (optionally with another shard count). Checks everything before creating
    /// the store; drops it again if anything fails midway, or at the next start after a kill (staged, see the
    /// module docs).
    pub async fn restore(
        &self,
        backup: &str,
        new_store: &str,
        shards: Option<u32>,
        mut progress: impl FnMut(u64, u64) -> bool,
    ) -> Result<RestoreInfo> {
        rvdb_core::types::validate_store_name(new_store)?;
        let path = self.resolve(backup)?;
        let manifest = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || verify(&path))
                .await
                .map_err(|e| GatewayError::Backend(format!("verify task failed: {e}")))??
        };
        let mut config = manifest.store.clone();
        config.name = new_store.to_string();
        if let Some(s) = shards {
            config.shards = s;
        }
        fit_replication(&mut config, self.gateway.node_count());
        let total = manifest.point_count;
        let fill = self.load_points(&path, &manifest, new_store, total, &mut progress);
        let (route, points) = self.create_staged(config, &format!("backup {}", manifest.name), fill).await?;
        Ok(RestoreInfo { backup: manifest.name, store: new_store.to_string(), points, shards: route.config.shards })
    }

    async fn load_points(
        &self,
        path: &Path,
        manifest: &Manifest,
        store: &str,
        total: u64,
        progress: &mut impl FnMut(u64, u64) -> bool,
    ) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::result::Result<Vec<PointInput>, String>>(4);
        let files: Vec<PathBuf> = manifest.files.iter().map(|f| path.join(&f.name)).collect();
        let max_dim = manifest.store.dimension;
        let reader = tokio::task::spawn_blocking(move || {
            for file in files {
                let result = (|| -> std::result::Result<(), String> {
                    let f = File::open(&file).map_err(|e| e.to_string())?;
                    let mut dec = zstd::Decoder::new(BufReader::new(f)).map_err(|e| e.to_string())?;
                    let mut batch = Vec::with_capacity(1000);
                    while let Some(r) = read_record(&mut dec, max_dim)? {
                        let metadata = serde_json::from_str(&r.metadata).unwrap_or(serde_json::Value::Null);
                        batch.push(PointInput { id: r.id, vector: r.vector, metadata });
                        if batch.len() == 1000 && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                            return Ok(());
                        }
                    }
                    if !batch.is_empty() {
                        let _ = tx.blocking_send(Ok(batch));
                    }
                    Ok(())
                })();
                if let Err(e) = result {
                    let _ = tx.blocking_send(Err(format!("{}: {e}", file.display())));
                    return;
                }
            }
        });
        // A backup holds every id once (one scan per shard, ids hashed to one shard), so batches are independent
        // and several can be in flight: the nodes' write paths overlap with decoding and the network.
        let mut done = 0u64;
        let mut in_flight = tokio::task::JoinSet::new();
        let mut finish_one = |joined: Option<std::result::Result<Result<u64>, tokio::task::JoinError>>| -> Result<()> {
            if let Some(joined) = joined {
                done += joined.map_err(|e| GatewayError::Backend(format!("restore task failed: {e}")))??;
                if !progress(done, total) {
                    return Err(GatewayError::Cancelled);
                }
            }
            Ok(())
        };
        while let Some(batch) = rx.recv().await {
            let batch = batch.map_err(|e| GatewayError::InvalidArgument(format!("backup is corrupted: {e}")))?;
            if in_flight.len() >= RESTORE_BATCHES_IN_FLIGHT {
                finish_one(in_flight.join_next().await)?;
            }
            let (gateway, store) = (self.gateway.clone(), store.to_string());
            in_flight.spawn(async move {
                let n = batch.len() as u64;
                gateway.upsert(&store, batch, |_, _| true).await.map(|_| n)
            });
        }
        while !in_flight.is_empty() {
            finish_one(in_flight.join_next().await)?;
        }
        let _ = reader.await;
        if done != total {
            return Err(GatewayError::InvalidArgument(format!(
                "backup is corrupted: {done} points read, manifest says {total}"
            )));
        }
        Ok(done)
    }

    /// Deletes a backup.
    pub fn delete(&self, backup: &str) -> Result<()> {
        let path = self.resolve(backup)?;
        std::fs::remove_dir_all(&path).map_err(io_err(format!("deleting {}", path.display())))
    }

    /// Writes `store` as JSON Lines to `<backup_dir>/exports/<file>`.
    pub async fn export(
        &self,
        store: &str,
        file: Option<String>,
        mut progress: impl FnMut(u64) -> bool,
    ) -> Result<ExportInfo> {
        let route = self.gateway.resolve(store).await?;
        let (exported_at, ms) = now();
        let file = file.unwrap_or_else(|| format!("{store}-{ms}.jsonl"));
        validate_file_name("export file", &file)?;
        let dir = self.exports_dir();
        std::fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
        let target = dir.join(&file);
        let taken = || GatewayError::AlreadyExists(format!("export file '{file}' already exists; choose another name"));
        let Some(_claim) = self.claim(&target) else {
            return Err(GatewayError::AlreadyExists(format!(
                "export file '{file}' already exists (it is being written right now); choose another name"
            )));
        };
        if target.exists() {
            return Err(taken());
        }
        let tmp = temp_path(&dir, &file);
        let header = ExportHeader { rvdb_export: EXPORT_VERSION, store: route.config.clone(), exported_at };
        let mut streams = Vec::new();
        for shard in 0..route.shards.len() as u32 {
            streams.push(self.gateway.scan_shard(store, shard, true).await?);
        }
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<rvdb_proto::v1::Point>>(4);
        let tmp2 = tmp.clone();
        let writer = tokio::task::spawn_blocking(move || -> std::io::Result<(u64, u64)> {
            let mut w = BufWriter::new(File::create(&tmp2)?);
            serde_json::to_writer(&mut w, &header)?;
            w.write_all(b"\n")?;
            let mut points = 0u64;
            while let Some(chunk) = rx.blocking_recv() {
                for p in chunk {
                    let metadata = serde_json::from_str(&p.metadata_json).unwrap_or(serde_json::Value::Null);
                    serde_json::to_writer(&mut w, &ExportPoint { id: p.id, vector: p.vector, metadata })?;
                    w.write_all(b"\n")?;
                    points += 1;
                }
            }
            let file = w.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok((points, file.metadata()?.len()))
        });
        let mut seen = 0u64;
        let mut failure = None;
        for mut stream in streams {
            match forward(&mut stream, &tx, &mut seen, &mut progress).await {
                Ok(true) => {}
                Ok(false) => break, // the writer failed; its error is reported below
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(tx);
        let written = writer.await.map_err(|e| GatewayError::Backend(format!("export writer failed: {e}")))?;
        let result = match (failure, written) {
            (Some(e), _) => Err(e),
            (None, Err(e)) => Err(GatewayError::Backend(format!("writing export '{file}': {e}"))),
            (None, Ok((points, bytes))) => match publish_file(&tmp, &target) {
                Ok(()) => {
                    let path = target.display().to_string();
                    Ok(ExportInfo { store: store.to_string(), file: file.clone(), path, points, bytes })
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Err(taken()),
                Err(e) => Err(GatewayError::Backend(format!("finishing export '{file}': {e}"))),
            },
        };
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// An export file as `import` takes it: its name, or its path inside the export directory (as `export` returns
    /// it in `path`).
    fn export_file_name(&self, file: &str) -> Result<String> {
        let name = Path::new(file)
            .strip_prefix(self.exports_dir())
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| file.to_string());
        validate_file_name("export file", &name)?;
        Ok(name)
    }

    /// Creates `store` from a JSON Lines export in `<backup_dir>/exports/` (by file name). Every line is checked;
    /// on any error the new store is dropped again (after a kill: at the next start; staged like a restore).
    pub async fn import(&self, file: &str, store: &str, mut progress: impl FnMut(u64) -> bool) -> Result<RestoreInfo> {
        rvdb_core::types::validate_store_name(store)?;
        let file = self.export_file_name(file)?;
        let path = self.exports_dir().join(&file);
        let f = File::open(&path).map_err(|e| {
            GatewayError::NotFound(format!("export file '{file}' not found in {}: {e}", self.exports_dir().display()))
        })?;
        let mut lines = BufReader::new(f).lines();
        let header_line = lines
            .next()
            .transpose()
            .map_err(io_err("reading export"))?
            .ok_or_else(|| GatewayError::InvalidArgument(format!("export file '{file}' is empty")))?;
        let header: ExportHeader = serde_json::from_str(&header_line).map_err(|e| {
            GatewayError::InvalidArgument(format!("export file '{file}' line 1 is not an rvdb export header: {e}"))
        })?;
        if header.rvdb_export != EXPORT_VERSION {
            return Err(GatewayError::InvalidArgument(format!("unsupported export version {}", header.rvdb_export)));
        }
        let mut config = header.store;
        config.name = store.to_string();
        fit_replication(&mut config, self.gateway.node_count());
        let fill = self.import_points(lines, &file, store, &mut progress);
        let (route, done) = self.create_staged(config, &format!("export {file}"), fill).await?;
        Ok(RestoreInfo { backup: file, store: store.to_string(), points: done, shards: route.config.shards })
    }

    async fn import_points(
        &self,
        lines: std::io::Lines<BufReader<File>>,
        file: &str,
        store: &str,
        progress: &mut impl FnMut(u64) -> bool,
    ) -> Result<u64> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<std::result::Result<Vec<PointInput>, String>>(4);
        let reader = tokio::task::spawn_blocking(move || {
            let mut batch = Vec::with_capacity(1000);
            for (i, line) in lines.enumerate() {
                let parsed = line
                    .map_err(|e| e.to_string())
                    .and_then(|l| serde_json::from_str::<ExportPoint>(&l).map_err(|e| e.to_string()));
                match parsed {
                    Ok(p) => batch.push(PointInput { id: p.id, vector: p.vector, metadata: p.metadata }),
                    Err(e) => {
                        let _ = tx.blocking_send(Err(format!("line {}: {e}", i + 2)));
                        return;
                    }
                }
                if batch.len() == 1000 && tx.blocking_send(Ok(std::mem::take(&mut batch))).is_err() {
                    return;
                }
            }
            if !batch.is_empty() {
                let _ = tx.blocking_send(Ok(batch));
            }
        });
        let mut done = 0u64;
        let mut failure = None;
        while let Some(batch) = rx.recv().await {
            let step = match batch {
                Ok(b) => {
                    let n = b.len() as u64;
                    self.gateway.upsert(store, b, |_, _| true).await.map(|_| n)
                }
                Err(e) => Err(GatewayError::InvalidArgument(format!("export file '{file}': {e}"))),
            };
            match step {
                Ok(n) => {
                    done += n;
                    if !progress(done) {
                        failure = Some(GatewayError::Cancelled);
                        break;
                    }
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        drop(rx);
        let _ = reader.await;
        match failure {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// One round of automatic backups: every store, then prune each store's automatic backups to `keep`.
    pub async fn auto_backup_round(&self, keep: usize) {
        for store in self.gateway.store_names() {
            let (stamp, _) = now();
            let name = format!("{AUTO_PREFIX}{store}-{}", stamp.replace([':', '.'], "-"));
            match self.backup(&store, Some(name), |_| true).await {
                Ok(b) => tracing::info!(backup = %b.name, points = b.points, "automatic backup"),
                Err(e) => tracing::error!(store = %store, error = %e, "automatic backup failed"),
            }
            if let Err(e) = self.prune_auto(&store, keep) {
                tracing::error!(store = %store, error = %e, "pruning automatic backups failed");
            }
        }
    }

    /// Keeps the newest `keep` automatic backups of `store`, deleting older ones. Manual backups are never pruned.
    pub fn prune_auto(&self, store: &str, keep: usize) -> Result<usize> {
        let prefix = format!("{AUTO_PREFIX}{store}-");
        let autos: Vec<BackupInfo> =
            self.list(Some(store))?.into_iter().filter(|b| b.name.starts_with(&prefix)).collect();
        let mut removed = 0;
        for old in autos.iter().skip(keep) {
            self.delete(&old.name)?;
            removed += 1;
        }
        Ok(removed)
    }

    /// Runs [`Self::auto_backup_round`] every `interval` until `shutdown`.
    pub async fn run_schedule(
        self: Arc<Self>,
        interval: Duration,
        keep: usize,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = tick.tick() => self.auto_backup_round(keep).await,
                _ = shutdown.cancelled() => return,
            }
        }
    }
}

/// Forwards one shard scan's chunks to a file writer, counting points into `seen` and reporting progress (false
/// from `progress` cancels). Returns false when the writer hung up (it failed; its own error tells why).
async fn forward(
    stream: &mut rvdb_proto::api::ApiStream<rvdb_proto::v1::ScanChunk>,
    tx: &tokio::sync::mpsc::Sender<Vec<rvdb_proto::v1::Point>>,
    seen: &mut u64,
    progress: &mut impl FnMut(u64) -> bool,
) -> Result<bool> {
    use tokio_stream::StreamExt;
    while let Some(chunk) = stream.next().await.transpose().map_err(GatewayError::from_status)? {
        *seen += chunk.points.len() as u64;
        if tx.send(chunk.points).await.is_err() {
            return Ok(false);
        }
        if !progress(*seen) {
            return Err(GatewayError::Cancelled);
        }
    }
    Ok(true)
}

/// A restored or imported store keeps its replication factor where this deployment has enough nodes, and is
/// capped at the node count (with its write consistency) where it has not.
fn fit_replication(config: &mut StoreConfig, nodes: usize) {
    config.replication_factor = config.replication_factor.min(nodes as u32).max(1);
    config.write_consistency = config.write_consistency.min(config.replication_factor);
}

fn read_manifest(dir: &Path) -> Result<Manifest> {
    let bytes =
        std::fs::read(dir.join("manifest.json")).map_err(io_err(format!("reading {}/manifest.json", dir.display())))?;
    let m: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| GatewayError::InvalidArgument(format!("backup manifest {} is not valid: {e}", dir.display())))?;
    if m.format != FORMAT || m.format_version != FORMAT_VERSION {
        return Err(GatewayError::InvalidArgument(format!(
            "backup {} has format {} v{}, this rvdb reads {FORMAT} v{FORMAT_VERSION}",
            dir.display(),
            m.format,
            m.format_version
        )));
    }
    Ok(m)
}

/// Checks a backup completely: manifest, each file's size and SHA-256, and that every record decodes and the
/// counts match. Returns the manifest.
pub fn verify(dir: &Path) -> Result<Manifest> {
    let m = read_manifest(dir)?;
    let corrupt = |msg: String| GatewayError::InvalidArgument(format!("backup '{}' is corrupted: {msg}", m.name));
    let mut total = 0u64;
    for f in &m.files {
        validate_file_name("backup file", &f.name)?;
        let path = dir.join(&f.name);
        let bytes = std::fs::read(&path).map_err(|e| corrupt(format!("{} cannot be read: {e}", f.name)))?;
        if bytes.len() as u64 != f.bytes {
            return Err(corrupt(format!(
                "{} has {} bytes, the manifest says {} (truncated?)",
                f.name,
                bytes.len(),
                f.bytes
            )));
        }
        if hex(&Sha256::digest(&bytes)) != f.sha256 {
            return Err(corrupt(format!("{} fails its SHA-256 checksum", f.name)));
        }
        let mut dec = zstd::Decoder::new(&bytes[..]).map_err(|e| corrupt(format!("{}: {e}", f.name)))?;
        let mut n = 0u64;
        while read_record(&mut dec, m.store.dimension).map_err(|e| corrupt(format!("{}: {e}", f.name)))?.is_some() {
            n += 1;
        }
        if n != f.points {
            return Err(corrupt(format!("{} holds {n} points, the manifest says {}", f.name, f.points)));
        }
        total += n;
    }
    if total != m.point_count {
        return Err(corrupt(format!("{total} points in files, the manifest says {}", m.point_count)));
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncation_is_detected() {
        let mut buf = Vec::new();
        write_record(&mut buf, "a", 7, &[1.5, -2.25, f32::MIN_POSITIVE], r#"{"k":1}"#).unwrap();
        write_record(&mut buf, "b", 8, &[0.0, 1.0, 2.0], "").unwrap();
        let mut r = &buf[..];
        let a = read_record(&mut r, 3).unwrap().unwrap();
        assert_eq!(
            (a.id.as_str(), a.vector.as_slice(), a.metadata.as_str()),
            ("a", &[1.5, -2.25, f32::MIN_POSITIVE][..], r#"{"k":1}"#)
        );
        assert_eq!(read_record(&mut r, 3).unwrap().unwrap().id, "b");
        assert!(read_record(&mut r, 3).unwrap().is_none());
        for cut in 1..buf.len() / 2 {
            let mut r = &buf[..cut];
            assert!(read_record(&mut r, 3).is_err(), "cut at {cut}");
        }
        let mut r = &buf[..];
        assert!(read_record(&mut r, 2).is_err(), "dimension above the store's is refused");
    }

    /// A storage node served in-process on loopback, and a gateway over it.
    struct TestDeployment {
        gateway: Arc<Gateway>,
        backups: BackupManager,
        _embedded: crate::embedded::Embedded,
        _dir: tempfile::TempDir,
    }

    /// Manager, node and gateway in this process, as `rvdb serve` runs them.
    async fn deployment() -> TestDeployment {
        let dir = tempfile::tempdir().unwrap();
        let node = Arc::new(rvdb_node::Node::open(&rvdb_node::NodeOptions::new(dir.path().join("node"))).unwrap());
        let spec = crate::embedded::LocalNodeSpec { id: "n".into(), url: "http://in-process:1".into(), node };
        let manager = rvdb_manager::ManagerOptions::new(dir.path().join("manager"));
        let embedded = crate::embedded::Embedded::start(manager, vec![spec], Default::default()).await.unwrap();
        let gateway = embedded.gateway().clone();
        let backups = BackupManager::new(gateway.clone(), dir.path().join("backups"));
        TestDeployment { gateway, backups, _embedded: embedded, _dir: dir }
    }

    async fn store_with_points(gateway: &Gateway, name: &str, n: usize) {
        let mut config = StoreConfig::new(name, 4, rvdb_core::Metric::Euclidean);
        config.shards = 2;
        gateway.create_store(config).await.unwrap();
        let points: Vec<PointInput> = (0..n)
            .map(|i| PointInput {
                id: format!("p{i}"),
                vector: vec![i as f32, 1.0, 2.0, 3.0],
                metadata: serde_json::json!({"i": i}),
            })
            .collect();
        gateway.upsert(name, points, |_, _| true).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_backups_with_one_name_give_one_backup_and_already_exists() {
        let d = deployment().await;
        store_with_points(&d.gateway, "s", 3000).await;
        let b = &d.backups;
        let one = || b.backup("s", Some("same".into()), |_| true);
        let results = [one(), one(), one(), one()];
        let results = futures_join_all(results).await;
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(ok, 1, "{results:?}");
        for r in &results {
            assert!(matches!(r, Ok(_) | Err(GatewayError::AlreadyExists(_))), "{r:?}");
        }
        assert_eq!(verify(&b.dir().join("same")).unwrap().point_count, 3000);
        assert_eq!(b.list(None).unwrap().len(), 1);
        let left: Vec<_> = std::fs::read_dir(b.dir()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("same")], "no temporaries remain");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_exports_with_one_file_name_give_one_export_and_already_exists() {
        let d = deployment().await;
        store_with_points(&d.gateway, "s", 3000).await;
        let b = &d.backups;
        let one = || b.export("s", Some("same.jsonl".into()), |_| true);
        let results = futures_join_all([one(), one(), one(), one()]).await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        for r in &results {
            assert!(matches!(r, Ok(_) | Err(GatewayError::AlreadyExists(_))), "{r:?}");
        }
        let left: Vec<_> = std::fs::read_dir(b.exports_dir()).unwrap().flatten().map(|e| e.file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("same.jsonl")], "no temporaries remain");
        assert_eq!(b.import("same.jsonl", "copy", |_| true).await.unwrap().points, 3000);
    }

    /// Runs the futures concurrently (on this task) and returns their outputs in order.
    async fn futures_join_all<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
        let mut futures: Vec<_> = futures.into_iter().map(Box::pin).collect();
        let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
        std::future::poll_fn(|cx| {
            for (f, out) in futures.iter_mut().zip(outputs.iter_mut()) {
                if out.is_none()
                    && let std::task::Poll::Ready(v) = f.as_mut().poll(cx)
                {
                    *out = Some(v);
                }
            }
            if outputs.iter().all(Option::is_some) { std::task::Poll::Ready(()) } else { std::task::Poll::Pending }
        })
        .await;
        outputs.into_iter().flatten().collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn exports_is_a_reserved_backup_name() {
        let d = deployment().await;
        store_with_points(&d.gateway, "s", 10).await;
        let err = d.backups.backup("s", Some("exports".into()), |_| true).await.unwrap_err();
        assert!(matches!(&err, GatewayError::InvalidArgument(m) if m.contains("reserved")), "{err:?}");
        assert!(!d.backups.dir().join("exports").exists(), "nothing written");
        d.backups.export("s", Some("e.jsonl".into()), |_| true).await.unwrap();
        assert!(matches!(
            d.backups.restore("exports", "r", None, |_, _| true).await,
            Err(GatewayError::InvalidArgument(_))
        ));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_file_an_export_returns_is_what_import_takes() {
        let d = deployment().await;
        store_with_points(&d.gateway, "s", 1500).await;
        let e = d.backups.export("s", Some("ex1.jsonl".into()), |_| true).await.unwrap();
        assert_eq!(e.file, "ex1.jsonl");
        assert_eq!(Path::new(&e.path), d.backups.exports_dir().join("ex1.jsonl"));
        assert_eq!(d.backups.import(&e.file, "by-name", |_| true).await.unwrap().points, 1500);
        assert_eq!(d.backups.import(&e.path, "by-path", |_| true).await.unwrap().points, 1500);
        let auto = d.backups.export("s", None, |_| true).await.unwrap();
        assert_eq!(d.backups.import(&auto.file, "by-auto-name", |_| true).await.unwrap().points, 1500);
    }

    #[test]
    fn temporaries_of_processes_that_are_gone_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let exports = dir.path().join("exports");
        std::fs::create_dir_all(&exports).unwrap();
        let gone = 4_000_000_000u32; // above any pid_max
        std::fs::create_dir_all(dir.path().join(format!(".bk1.tmp-{gone}-1700000000000-0"))).unwrap();
        std::fs::write(dir.path().join(format!(".bk1.tmp-{gone}-1700000000000-0/points-00000.bin.zst")), b"x").unwrap();
        std::fs::write(exports.join(".ex1.jsonl.tmp-1700000000000"), b"{}").unwrap(); // older name, no pid
        std::fs::write(exports.join(format!(".ex2.jsonl.tmp-{}-1-0", std::process::id())), b"{}").unwrap();
        // A backup, an export, a marker: kept.
        std::fs::create_dir_all(dir.path().join("bk.tmp-9-9")).unwrap();
        std::fs::write(exports.join("ex.jsonl"), b"{}").unwrap();
        std::fs::write(dir.path().join(".restoring-s.json"), b"{}").unwrap();
        assert_eq!(remove_temporaries(dir.path()) + remove_temporaries(&exports), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .chain(std::fs::read_dir(&exports).unwrap())
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, [".restoring-s.json", "bk.tmp-9-9", "ex.jsonl", "exports"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_restore_cut_short_is_dropped_at_the_next_start_and_a_retry_succeeds() {
        let d = deployment().await;
        store_with_points(&d.gateway, "s", 20_000).await;
        d.backups.backup("s", Some("b".into()), |_| true).await.unwrap();
        // A staged store that stops filling midway and is never cleaned up (leaked, no destructor runs), as a
        // kill -9 leaves it. (The kill itself, during restore_store and import_store: tests/backup_grpc.rs.)
        let (reached, underway) = tokio::sync::oneshot::channel();
        let gateway = d.gateway.clone();
        let fill = async move {
            let points: Vec<PointInput> = (0..4000)
                .map(|i| PointInput { id: format!("p{i}"), vector: vec![0.0; 4], metadata: serde_json::Value::Null })
                .collect();
            gateway.upsert("r", points, |_, _| true).await?;
            let _ = reached.send(());
            std::future::pending::<Result<()>>().await
        };
        let mut config = StoreConfig::new("r", 4, rvdb_core::Metric::Euclidean);
        config.shards = 2;
        let mut staged = Box::pin(d.backups.create_staged(config, "backup b", fill));
        tokio::select! {
            _ = underway => {}
            r = &mut staged => panic!("the fill cannot finish: {r:?}"),
        }
        std::mem::forget(staged);
        assert_eq!(d.gateway.stats("r").await.unwrap().points, 4000);
        assert!(d.backups.dir().join(".restoring-r.json").exists());
        assert!(matches!(d.backups.restore("b", "r", None, |_, _| true).await, Err(GatewayError::AlreadyExists(_))));

        // The next start: a new manager over the same directory.
        let restarted = BackupManager::new(d.gateway.clone(), d.backups.dir());
        let recovery = restarted.recover().await;
        assert_eq!(recovery.dropped_stores, vec!["r".to_string()]);
        assert!(matches!(d.gateway.resolve("r").await, Err(GatewayError::NotFound(_))));
        assert!(!d.backups.dir().join(".restoring-r.json").exists());
        let retried = restarted.restore("b", "r", None, |_, _| true).await.unwrap();
        assert_eq!(retried.points, 20_000);
        assert_eq!(d.gateway.stats("r").await.unwrap().points, 20_000);
        assert!(!d.backups.dir().join(".restoring-r.json").exists(), "a complete restore leaves no marker");
        assert_eq!(restarted.recover().await, Recovery::default(), "nothing to do for complete stores");
        assert_eq!(d.gateway.stats("r").await.unwrap().points, 20_000);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_marker_whose_store_was_replaced_leaves_that_store_alone() {
        let d = deployment().await;
        store_with_points(&d.gateway, "r", 10).await;
        let journalled = StoreConfig::new("r", 8, rvdb_core::Metric::Cosine);
        let marker = StagingMarker { store: journalled, source: "backup b".into(), pid: 0, started_at: now().0 };
        std::fs::create_dir_all(d.backups.dir()).unwrap();
        std::fs::write(d.backups.dir().join(".restoring-r.json"), serde_json::to_vec(&marker).unwrap()).unwrap();
        std::fs::write(d.backups.dir().join(".restoring-cut.json"), b"{\"sto").unwrap();
        assert_eq!(d.backups.recover().await, Recovery::default());
        assert_eq!(d.gateway.stats("r").await.unwrap().points, 10);
        assert!(std::fs::read_dir(d.backups.dir()).unwrap().next().is_none(), "both markers removed");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cancelled_import_leaves_no_store_and_no_marker() {
        let d = deployment().await;
        store_with_points(&d.gateway, "s", 5000).await;
        let e = d.backups.export("s", None, |_| true).await.unwrap();
        let err = d.backups.import(&e.file, "i", |done| done < 2000).await.unwrap_err();
        assert!(matches!(err, GatewayError::Cancelled), "{err:?}");
        assert!(matches!(d.gateway.resolve("i").await, Err(GatewayError::NotFound(_))));
        assert!(!d.backups.dir().join(".restoring-i.json").exists());
        assert_eq!(d.backups.import(&e.file, "i", |_| true).await.unwrap().points, 5000);
    }

    #[test]
    fn names_cannot_escape_the_backup_dir() {
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(129)] {
            assert!(validate_file_name("backup", bad).is_err(), "{bad:?}");
        }
        assert!(validate_file_name("backup", "daily-2026-11-24.v1_x").is_ok());
    }
}
