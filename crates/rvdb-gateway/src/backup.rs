//! Backups, restores, JSON export / import, and the automatic backup schedule.
//!
//! A backup is a directory `<backup_dir>/<name>/`:
//! - `points-<shard>.bin.zst`: one zstd stream per source shard of binary point records
//!   (`[u32 id_len][id][u64 version][u32 dim][f32 × dim][u32 metadata_len][metadata JSON]`, little-endian),
//! - `manifest.json`: format version, rvdb version, the store's config, point count, creation time, and per file
//!   its point count, byte size and SHA-256.
//!
//! Consistency: every shard's scan is opened before any data is read, and each node reads from a RocksDB
//! snapshot taken when its scan opens, so the backup is the store as of (within milliseconds of) one moment while
//! writes continue. Atomicity: files are written into a hidden temporary directory, fsynced, and renamed into
//! place last, so a crash never leaves a half backup under a real name.
//!
//! Portability: records carry no shard number; a restore routes every point through the gateway again, so a
//! backup restores onto any shard count or cluster. A restore verifies every checksum and record count before it
//! creates anything, and drops the new store if anything fails midway: nothing half-restored remains.
//!
//! Export / import use JSON Lines (a header object, then one point per line), so both stream: stores larger than
//! memory export and import in constant memory, and `f32` values round-trip exactly (shortest repr).

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rvdb_core::StoreConfig;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{GatewayError, Result};
use crate::gateway::{Gateway, PointInput};

pub const FORMAT: &str = "rvdb-backup";
pub const FORMAT_VERSION: u32 = 1;
const EXPORT_VERSION: u32 = 1;
const AUTO_PREFIX: &str = "auto-";
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
    pub file: String,
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

fn now() -> (String, u64) {
    let t = chrono::Utc::now();
    (t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), t.timestamp_millis().max(0) as u64)
}

fn io_err(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> GatewayError {
    move |e| GatewayError::Backend(format!("{what}: {e}"))
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
}

impl BackupManager {
    pub fn new(gateway: Arc<Gateway>, dir: impl Into<PathBuf>) -> Self {
        Self { gateway, dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn exports_dir(&self) -> PathBuf {
        self.dir.join("exports")
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
        validate_file_name("backup", &name)?;
        let final_dir = self.dir.join(&name);
        if final_dir.exists() {
            return Err(GatewayError::AlreadyExists(format!(
                "a backup named '{name}' already exists; choose another name"
            )));
        }
        std::fs::create_dir_all(&self.dir).map_err(io_err(format!("creating backup dir {}", self.dir.display())))?;
        let tmp = self.dir.join(format!(".{name}.tmp-{}-{created_unix_ms}", std::process::id()));
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
            f.write_all(&serde_json::to_vec_pretty(&manifest).unwrap_or_default())?;
            f.sync_all()?;
            File::open(&tmp)?.sync_all()?;
            std::fs::rename(&tmp, &final_dir)?;
            File::open(&self.dir)?.sync_all()
        };
        if let Err(e) = finish() {
            let _ = std::fs::remove_dir_all(&tmp);
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
            if name.starts_with('.') || name == "exports" || !entry.path().is_dir() {
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
        validate_file_name("backup", name)?;
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
    /// the store; drops it again if anything fails midway.
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
        let route = self.gateway.create_store(config).await?;
        let total = manifest.point_count;
        let outcome = self.load_points(&path, &manifest, new_store, total, &mut progress).await;
        match outcome {
            Ok(points) => Ok(RestoreInfo {
                backup: manifest.name,
                store: new_store.to_string(),
                points,
                shards: route.config.shards,
            }),
            Err(e) => {
                if let Err(drop_err) = self.gateway.drop_store(new_store).await {
                    tracing::error!(store = new_store, error = %drop_err, "could not remove a partly restored store");
                }
                Err(e)
            }
        }
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
        if target.exists() {
            return Err(GatewayError::AlreadyExists(format!(
                "export file '{file}' already exists; choose another name"
            )));
        }
        let tmp = dir.join(format!(".{file}.tmp-{ms}"));
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
            (None, Ok((points, bytes))) => std::fs::rename(&tmp, &target)
                .map(|_| ExportInfo { store: store.to_string(), file: target.display().to_string(), points, bytes })
                .map_err(io_err("finishing export")),
        };
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }

    /// Creates `store` from a JSON Lines export in `<backup_dir>/exports/` (by file name). Every line is checked;
    /// on any error the new store is dropped again.
    pub async fn import(&self, file: &str, store: &str, mut progress: impl FnMut(u64) -> bool) -> Result<RestoreInfo> {
        rvdb_core::types::validate_store_name(store)?;
        validate_file_name("export file", file)?;
        let path = self.exports_dir().join(file);
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
        self.gateway.create_store(config.clone()).await?;
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
        if let Some(e) = failure {
            let _ = self.gateway.drop_store(store).await;
            return Err(e);
        }
        Ok(RestoreInfo { backup: file.to_string(), store: store.to_string(), points: done, shards: config.shards })
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
    stream: &mut tonic::Streaming<rvdb_proto::v1::ScanChunk>,
    tx: &tokio::sync::mpsc::Sender<Vec<rvdb_proto::v1::Point>>,
    seen: &mut u64,
    progress: &mut impl FnMut(u64) -> bool,
) -> Result<bool> {
    while let Some(chunk) = stream.message().await.map_err(GatewayError::from_status)? {
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

    #[test]
    fn names_cannot_escape_the_backup_dir() {
        for bad in ["", "../x", "a/b", ".hidden", "a b", &"x".repeat(129)] {
            assert!(validate_file_name("backup", bad).is_err(), "{bad:?}");
        }
        assert!(validate_file_name("backup", "daily-2026-11-24.v1_x").is_ok());
    }
}
