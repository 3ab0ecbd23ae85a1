//! A shard's HNSW graph: builds on a background thread (from scratch or resumed from the snapshot), the
//! snapshot file, and the rebuild after too many deletes.

use super::*;

impl Shard {
    /// Rebuilds the HNSW graph from the points in the background. If a build is running, the rebuild is queued
    /// and starts when it ends (true either way: false only if no thread could be started).
    pub fn rebuild_graph(&self) -> Result<bool, NodeError> {
        if self.config.index.kind != IndexKind::Hnsw {
            return Err(NodeError::BadRequest(format!(
                "store shard {} has a flat index: there is no graph to rebuild",
                self.key
            )));
        }
        if self.spawn_build(false) {
            return Ok(true);
        }
        self.rebuild_queued.store(true, Ordering::SeqCst);
        // The running build may have ended between the two steps without seeing the flag: start it here then.
        if !self.building.load(Ordering::SeqCst) && self.rebuild_queued.swap(false, Ordering::SeqCst) {
            return Ok(self.spawn_build(false));
        }
        Ok(true)
    }

    /// Starts a build thread unless one is running (returns whether it started); `from_snapshot` false rebuilds
    /// from the points alone.
    pub(super) fn spawn_build(&self, from_snapshot: bool) -> bool {
        if self.config.index.kind != IndexKind::Hnsw
            || self.building.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst).is_err()
        {
            return false;
        }
        let Some(shard) = self.me.upgrade() else {
            self.building.store(false, Ordering::SeqCst);
            return false;
        };
        let spawned = std::thread::Builder::new().name(format!("hnsw-{}", self.key.name())).spawn(move || {
            let started = Instant::now();
            let result = shard.build_graph(from_snapshot);
            *shard.build_progress.lock().unwrap_or_else(|p| p.into_inner()) = None;
            crate::metrics::graph_build_finished(result.is_ok(), started.elapsed());
            if let Err(e) = result {
                tracing::error!(shard = %shard.key, error = %e, "HNSW build failed; searches stay exact");
            }
            shard.building.store(false, Ordering::SeqCst);
            if shard.rebuild_queued.swap(false, Ordering::SeqCst) && !shard.retired.load(Ordering::SeqCst) {
                shard.spawn_build(false);
            }
        });
        if let Err(e) = spawned {
            self.building.store(false, Ordering::SeqCst);
            tracing::error!(shard = %self.key, error = %e, "cannot start the HNSW build thread");
            return false;
        }
        true
    }

    pub(super) fn build_graph(&self, from_snapshot: bool) -> Result<(), NodeError> {
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

    /// (writes applied, writes handed to it) of the running graph build, if one runs.
    pub fn build_progress(&self) -> Option<(u64, u64)> {
        use std::sync::atomic::Ordering::Relaxed;
        let p = self.build_progress.lock().unwrap_or_else(|p| p.into_inner()).clone()?;
        Some((p.done.load(Relaxed) as u64, p.total.load(Relaxed) as u64))
    }

    /// After a write: starts a background rebuild when the graph has decayed (see `ShardIndex::needs_rebuild`).
    pub(super) fn rebuild_if_needed(&self, state: std::sync::RwLockWriteGuard<'_, ShardState>) {
        let decayed = state.index.needs_rebuild();
        drop(state);
        if decayed {
            let _ = self.spawn_build(false);
        }
    }
}
