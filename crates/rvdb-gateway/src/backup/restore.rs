//! Restore into a new store, and the staging journal that makes a restore or an import all-or-nothing across
//! failures, cancellation and kills (see the module doc of [`super`]).

use super::*;

/// The journal entry of a restore or import in progress (see the module docs).
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct StagingMarker {
    /// The store as it is created.
    pub(super) store: StoreConfig,
    /// The backup or export file it is filled from.
    pub(super) source: String,
    pub(super) pid: u32,
    pub(super) started_at: String,
}

/// Whether `found` is (still) the store a marker journalled: same name, dimension, metric and shard count.
pub(super) fn same_store(found: &StoreConfig, journalled: &StoreConfig) -> bool {
    found.name == journalled.name
        && found.dimension == journalled.dimension
        && found.metric == journalled.metric
        && found.shards == journalled.shards
}

/// Drops the store a restore or import created and did not complete, then its marker. The marker stays when the
/// drop fails, so the next start tries again.
pub(super) async fn abandon_staged(gateway: &Gateway, store: &str, marker: &Path) -> Result<()> {
    match gateway.drop_store(store).await {
        Ok(()) => {}
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e),
    }
    remove_marker(marker);
    Ok(())
}

pub(super) fn remove_marker(marker: &Path) {
    if let Err(e) = std::fs::remove_file(marker) {
        tracing::warn!(path = %marker.display(), error = %e, "cannot remove a restore marker");
    }
    if let Some(dir) = marker.parent() {
        let _ = sync_dir(dir);
    }
}

/// A store created by a restore or import that is not complete yet. Dropped without [`Self::disarm`] (the request
/// was cancelled, its future dropped), it removes the store in the background.
pub(super) struct StagedStore {
    pub(super) gateway: Arc<Gateway>,
    pub(super) store: String,
    pub(super) marker: PathBuf,
    pub(super) armed: bool,
}

impl StagedStore {
    pub(super) fn disarm(&mut self) {
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

/// Forwards one shard scan's chunks to a file writer, counting points into `seen` and reporting progress (false
/// from `progress` cancels). Returns false when the writer hung up (it failed; its own error tells why).
pub(super) async fn forward(
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
pub(super) fn fit_replication(config: &mut StoreConfig, nodes: usize) {
    config.replication_factor = config.replication_factor.min(nodes as u32).max(1);
    config.write_consistency = config.write_consistency.min(config.replication_factor);
}

impl BackupManager {
    /// Creates `config.name` and fills it with `fill`, journalled by a staging marker (see the module docs) until
    /// `fill` succeeded and the store is flushed. On failure the store is dropped before the error returns.
    pub(super) async fn create_staged<T>(
        &self,
        config: StoreConfig,
        source: &str,
        fill: impl std::future::Future<Output = Result<T>>,
    ) -> Result<(StoreRoute, T)> {
        let store = config.name.clone();
        let taken = || GatewayError::AlreadyExists(format!("store '{store}' already exists"));
        match self.gateway.resolve(&store).await {
            Err(e) if e.is_not_found() => {}
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

    pub(super) async fn load_points(
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

    /// Finds a backup by name (or by a path inside `backup_dir`, as `list_backups` prints it).
    pub(super) fn resolve(&self, backup: &str) -> Result<PathBuf> {
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
}
