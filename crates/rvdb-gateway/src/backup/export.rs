//! JSON Lines export and import: a header object (format version, the store's config), then one point per line;
//! both stream, so stores larger than memory move in constant memory. The lines themselves are
//! [`rvdb_core::jsonl`]'s (pure, and fuzzed there).

use super::*;
use rvdb_core::jsonl::{EXPORT_VERSION, ExportHeader, ExportPoint, HeaderError, parse_header, parse_point};

#[derive(Debug, Clone, Serialize, PartialEq, schemars::JsonSchema)]
pub struct ExportInfo {
    pub store: String,
    /// The file name, as `import` takes it.
    pub file: String,
    /// Where the file was written.
    pub path: String,
    pub points: u64,
    pub bytes: u64,
}

impl BackupManager {
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
        for shard in 0..route.read_shards() {
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
    pub(super) fn export_file_name(&self, file: &str) -> Result<String> {
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
        let header = parse_header(&header_line).map_err(|e| match e {
            HeaderError::Invalid(e) => {
                GatewayError::InvalidArgument(format!("export file '{file}' line 1 is not an rvdb export header: {e}"))
            }
            HeaderError::Unsupported(version) => {
                GatewayError::InvalidArgument(format!("unsupported export version {version}"))
            }
        })?;
        let mut config = header.store;
        config.name = store.to_string();
        fit_replication(&mut config, self.gateway.node_count());
        let fill = self.import_points(lines, &file, store, &mut progress);
        let (route, done) = self.create_staged(config, &format!("export {file}"), fill).await?;
        Ok(RestoreInfo { backup: file, store: store.to_string(), points: done, shards: route.config.shards })
    }

    pub(super) async fn import_points(
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
                let parsed = line.map_err(|e| e.to_string()).and_then(|l| parse_point(&l));
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
}
