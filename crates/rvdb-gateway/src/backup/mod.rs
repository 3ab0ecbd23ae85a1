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
//!
//! Modules by concern: [`format`] (records, manifest, verification), [`restore`] (restore and its staging
//! journal), [`export`] (JSON Lines), [`schedule`] (automatic backups); this file holds the manager, backups
//! themselves and the atomic publishing of files.

mod export;
mod format;
mod restore;
mod schedule;

pub use export::ExportInfo;
use format::*;
pub use format::{BackupFile, Manifest, verify};
use restore::*;

use std::collections::HashSet;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
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

pub use rvdb_core::backup_format::{FORMAT, FORMAT_VERSION};
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

/// What `list_backups` shows of one backup.
#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct BackupInfo {
    pub name: String,
    pub store: String,
    pub points: u64,
    pub bytes: u64,
    pub created_at: String,
    pub rvdb_version: String,
    pub path: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct RestoreInfo {
    pub backup: String,
    pub store: String,
    pub points: u64,
    pub shards: u32,
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
                Err(e) if e.is_not_found() => remove_marker(&path),
                Err(e) => {
                    tracing::error!(store = %store, error = %e, "cannot check an interrupted restore; retrying at the next start")
                }
            }
        }
        recovery
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
        let result = self.write_backup(&route.config, route.read_shards(), &name, &tmp, &mut progress).await;
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

    /// Deletes a backup.
    pub fn delete(&self, backup: &str) -> Result<()> {
        let path = self.resolve(backup)?;
        std::fs::remove_dir_all(&path).map_err(io_err(format!("deleting {}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(matches!(d.gateway.resolve("r").await, Err(GatewayError::StoreNotFound { .. })));
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
        assert!(matches!(d.gateway.resolve("i").await, Err(GatewayError::StoreNotFound { .. })));
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
