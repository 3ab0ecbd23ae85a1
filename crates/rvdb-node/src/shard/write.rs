//! A shard's write path: every write takes the write lock, checks versions (last write wins, equal versions by
//! record bytes), writes one RocksDB `WriteBatch`, then updates the in-memory index.

use super::*;

/// Ids a prune removes per write batch.
const PRUNE_BATCH: usize = 10_000;

impl Shard {
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
    pub(super) fn apply_tombstones<'a>(
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
    pub(super) fn newer_than_stored(
        &self,
        state: &ShardState,
        id: &str,
        version: u64,
        record: &[u8],
    ) -> Result<bool, NodeError> {
        match state.current_version(id) {
            None => Ok(true),
            Some(c) if c != version => Ok(version > c),
            Some(_) => {
                let stored = self.db.get_cf(&self.cf()?, id.as_bytes())?;
                Ok(stored.is_none_or(|s| record > s.as_slice()))
            }
        }
    }

    /// Resharding's clean-up: removes every record (live point or tombstone) whose id `keep` rejects, from RocksDB
    /// and from the index. These are plain deletes, not tombstones: the records live on in the shard that owns them
    /// now, and a tombstone here would only be a second, wrong answer for an id this shard no longer serves. In
    /// batches of [`PRUNE_BATCH`] ids, each one write under the write lock (writes of owned ids go on between
    /// them); the last is fsynced. Returns how many records went.
    pub fn prune(&self, keep: impl Fn(&str) -> bool) -> Result<u64, NodeError> {
        let doomed: Vec<Box<str>> = self.read_state()?.versions.keys().filter(|id| !keep(id)).cloned().collect();
        let batches = doomed.len().div_ceil(PRUNE_BATCH);
        for (n, chunk) in doomed.chunks(PRUNE_BATCH).enumerate() {
            let _guard = self.begin_write()?;
            let mut batch = WriteBatch::default();
            {
                let cf = self.cf()?;
                for id in chunk {
                    batch.delete_cf(&cf, id.as_bytes());
                }
            }
            self.write_batch(batch, n + 1 == batches)?;
            let mut state = self.write_state()?;
            for id in chunk {
                state.forget(id);
            }
            self.rebuild_if_needed(state);
        }
        Ok(doomed.len() as u64)
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

    pub(super) fn write_batch(&self, batch: WriteBatch, sync: bool) -> Result<(), NodeError> {
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(disk) = &self.disk {
            disk.check()?;
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync && self.durable);
        opts.disable_wal(!self.durable);
        self.db.write_opt(batch, &opts).map_err(|e| NodeError::from_write(e, self.disk.as_deref()))
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
                let mut doc = stored_metadata(&metadata).map_err(|e| NodeError::Corrupt {
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
}
