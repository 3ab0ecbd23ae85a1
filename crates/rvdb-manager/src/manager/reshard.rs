//! Resharding: changing a live store's shard count, up or down, while reads and writes continue, copying only
//! the points that change shard.
//!
//! Points go to shards by jump hashing ([`rvdb_core::sharding`]), so between a layout of `from` and one of `to`
//! shards, an id moves only between a shard that both layouts have and one that only the larger has: growing
//! copies ids from the old shards into the new ones (about `1 - from/to` of the store), shrinking copies the
//! removed shards into the kept ones, and no id moves between two kept shards.
//!
//! 1. **Create** (growing): the new shards' replicas are placed on the least loaded up nodes and created
//!    *filling* (writes, no reads).
//! 2. **Dual writes**: the store's table lists every shard (max(from, to)) and carries the reshard; gateways keep
//!    reading by `from` and write each point to its shard under both layouts (one write when they agree, the same
//!    version on both). Every shard's placement epoch is bumped and every replica fenced and waited for: from then
//!    on no write routed by the old table lands anywhere, so what the copy reads next misses nothing.
//! 3. **Copy**: each replica of a shard that gains ids pulls, from a live replica of each shard that loses some,
//!    the records (points and tombstones, with their versions, by last-write-wins) it owns under `to`
//!    (`CatchUp` with `source_shard` and `owner_shards`).
//! 4. **Switch**: reads and writes go by `to`; every epoch is bumped and every replica fenced again, so a write
//!    routed by the dual-write table is refused and resent by the new one.
//! 5. **Clean up**, after a grace period for gateways still reading by the old table: growing, each old shard
//!    prunes the records it no longer owns; shrinking, the removed shards are dropped.
//!
//! While the store is resharded, every read of a shard asks for only the points it owns under the read layout
//! (`layout_shards`): a shard may hold copies that arrived early (shrinking) or have not been pruned yet
//! (growing), and they must not be counted or returned twice.
//!
//! A failure before the switch rolls back: the table goes back to `from` shards, the new shards are dropped
//! (growing) or the copies are pruned from the kept ones (shrinking); the old shards took every write, so nothing
//! is lost. A failure after it leaves the store readable and correct, with the clean-up pending. The reshard is
//! recorded in the store's catalog entry: a manager restarted in the middle, or the next `reshard` of any store,
//! rolls back one that had not switched and finishes one that had. Only one reshard or transfer runs at a time
//! (the catalog lock), and every replica of the store must be up to start.

use super::*;

/// A reshard in progress, in the store's catalog entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resharding {
    pub from: u32,
    pub to: u32,
    /// Reads and writes go by `to` (the clean-up is what remains).
    pub switched: bool,
    pub started_unix_ms: u64,
    /// Progress of the copy, in memory only: pulls done, of all, and the records they copied.
    #[serde(skip)]
    pub copies_done: u32,
    #[serde(skip)]
    pub copies_total: u32,
    #[serde(skip)]
    pub records_copied: u64,
}

impl Resharding {
    /// The layout reads route by.
    pub fn read_shards(&self) -> u32 {
        if self.switched { self.to } else { self.from }
    }

    pub fn phase(&self) -> &'static str {
        if self.switched { "pruning" } else { "copying" }
    }

    pub fn to_pb(&self) -> pb::Resharding {
        pb::Resharding {
            from_shards: self.from,
            to_shards: self.to,
            switched: self.switched,
            phase: self.phase().into(),
            started_unix_ms: self.started_unix_ms,
            copies_done: self.copies_done,
            copies_total: self.copies_total,
            records_copied: self.records_copied,
        }
    }
}

/// Which shards exchange ids in a reshard from `from` to `to` shards: `(target, sources)` for each shard that
/// gains ids, with the shards it gains them from (jump hashing moves nothing else).
pub fn copy_plan(from: u32, to: u32) -> Vec<(u32, Vec<u32>)> {
    if to > from {
        (from..to).map(|j| (j, (0..from).collect())).collect()
    } else {
        (0..to).map(|j| (j, (to..from).collect())).collect()
    }
}

/// What a finished reshard did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReshardReport {
    pub from: u32,
    pub to: u32,
    /// Records copied into the shards that gained ids.
    pub records: u64,
    /// Records pruned from the shards that lost ids (growing).
    pub pruned: u64,
    pub elapsed: Duration,
    /// Of `elapsed`, the copy.
    pub copy: Duration,
    /// The routing version of the new layout.
    pub version: u64,
}

impl State {
    /// Bumps the placement epoch of every shard of `store` to the version about to be published and puts its
    /// record in `batch`; returns the shards.
    fn bump_store_epochs(&mut self, store: &str, batch: &mut rocksdb::WriteBatch) -> Result<Vec<pb::ShardId>> {
        let epoch = self.version + 1;
        let entry = self.stores.get_mut(store).ok_or_else(|| ManagerError::NotFound(format!("store '{store}'")))?;
        entry.epochs = vec![epoch; entry.shards.len()];
        batch.put(format!("store:{store}"), encode(&*entry)?);
        Ok((0..entry.shards.len() as u32).map(|shard| pb::ShardId { store: store.to_string(), shard }).collect())
    }
}

impl Manager {
    /// Changes `store`'s shard count to `to` (see the module docs). Answers when the new layout serves and the
    /// clean-up is done; an error before the switch has rolled the store back to its old layout.
    pub async fn reshard(&self, store: &str, to: u32) -> Result<ReshardReport> {
        let started = Instant::now();
        let _admin = self.admin.lock().await;
        self.resume_reshards().await?;
        if to == 0 || to > rvdb_core::types::MAX_SHARDS {
            return Err(ManagerError::InvalidArgument(format!(
                "shards is {to}: must be between 1 and {}",
                rvdb_core::types::MAX_SHARDS
            )));
        }
        let (from, config, new_shards) = {
            let state = self.state();
            let entry = state
                .stores
                .get(store)
                .ok_or_else(|| ManagerError::NotFound(format!("store '{store}' does not exist")))?;
            let from = entry.shards.len() as u32;
            if to == from {
                return Err(ManagerError::InvalidArgument(format!("store '{store}' has {from} shards already")));
            }
            if state.transfers.keys().any(|(s, _)| s == store) {
                return Err(ManagerError::Aborted(format!(
                    "a shard of store '{store}' is being transferred; reshard when it is done"
                )));
            }
            if let Some((shard, node)) =
                entry.replicas().find(|(_, n)| state.nodes.get(n.as_str()).is_none_or(|e| e.state != NodeState::Up))
            {
                return Err(ManagerError::NotEnoughNodes(format!(
                    "node {node:?}, which holds a replica of shard {shard} of store '{store}', is not up: a store is \
                     resharded only when all its replicas are"
                )));
            }
            let new_shards = if to > from {
                let mut load: BTreeMap<String, usize> = state
                    .nodes
                    .iter()
                    .filter(|(_, n)| n.state == NodeState::Up)
                    .map(|(id, _)| (id.clone(), 0))
                    .collect();
                for id in state.stores.values().flat_map(|s| s.shards.iter().flatten()) {
                    if let Some(l) = load.get_mut(id) {
                        *l += 1;
                    }
                }
                let rf = entry.config.replication_factor;
                place(to - from, rf, &load).ok_or_else(|| {
                    ManagerError::NotEnoughNodes(format!(
                        "replication_factor {rf} needs as many up storage nodes, but {} are up",
                        load.len()
                    ))
                })?
            } else {
                Vec::new()
            };
            (from, entry.config.clone(), new_shards)
        };
        tracing::info!(store, from, to, "reshard: starting");
        // 1. the new shards, filling
        self.state().creating.insert(store.to_string());
        // a node checks a shard's number against its store's shard count: the new shards exist in a layout of `to`
        let created = self.create_shards(&StoreConfig { shards: to, ..config.clone() }, from, &new_shards, true).await;
        if let Err(e) = created {
            self.state().creating.remove(store);
            return Err(e);
        }
        // 2. dual writes, fenced (cancellable from the moment the table shows it)
        let op = (store.to_string(), None);
        let (registered, cancel) = self.cancels.register(op);
        let ids = {
            let mut state = self.state();
            state.creating.remove(store);
            let mut batch = rocksdb::WriteBatch::default();
            if let Some(entry) = state.stores.get_mut(store) {
                entry.shards.extend(new_shards);
                let rf = entry.config.replication_factor;
                let copies_total = copy_plan(from, to).iter().map(|(_, s)| s.len() as u32 * rf).sum();
                entry.resharding = Some(Resharding {
                    from,
                    to,
                    switched: false,
                    started_unix_ms: unix_ms(),
                    copies_done: 0,
                    copies_total,
                    records_copied: 0,
                });
            }
            let ids = state.bump_store_epochs(store, &mut batch)?;
            self.publish(&mut state, batch)?;
            ids
        };
        crate::metrics::reshard_started();
        let copy_started = Instant::now();
        let copied = async {
            self.fence(&ids).await?;
            // 3. copy
            let mut records = 0;
            for (target, sources) in copy_plan(from, to) {
                let (replicas, source_addresses) = {
                    let state = self.state();
                    let entry = state.stores.get(store).ok_or_else(|| ManagerError::NotFound(store.to_string()))?;
                    let addresses = |shard: u32| -> Vec<String> {
                        entry.shards[shard as usize]
                            .iter()
                            .filter_map(|n| state.nodes.get(n).filter(|e| e.state == NodeState::Up))
                            .map(|e| e.address.clone())
                            .collect()
                    };
                    let sources: Vec<(u32, String)> = sources
                        .iter()
                        .map(|&s| {
                            addresses(s).into_iter().next().map(|a| (s, a)).ok_or_else(|| {
                                ManagerError::NotEnoughNodes(format!(
                                    "no replica of shard {s} of store '{store}' is up to copy from"
                                ))
                            })
                        })
                        .collect::<Result<_>>()?;
                    (addresses(target), sources)
                };
                for address in replicas {
                    let client = self.client_with(&address, None)?; // no deadline: the copy streams
                    for (n, (source, source_address)) in source_addresses.iter().enumerate() {
                        let req = pb::CatchUpRequest {
                            shard: Some(pb::ShardId { store: store.to_string(), shard: target }),
                            source_address: source_address.clone(),
                            since_version: 0,
                            finish_fill: to > from && n + 1 == source_addresses.len(),
                            source_shard: Some(pb::ShardId { store: store.to_string(), shard: *source }),
                            owner_shards: to,
                            ..Default::default()
                        };
                        let out = client.catch_up(req).await.map_err(|status| ManagerError::Node {
                            context: format!("copying shard {source} into shard {target} on {address}"),
                            status,
                        })?;
                        records += out.received;
                        let mut state = self.state();
                        if let Some(r) = state.stores.get_mut(store).and_then(|e| e.resharding.as_mut()) {
                            r.copies_done += 1;
                            r.records_copied = records;
                        }
                        self.refresh_progress(&state);
                    }
                }
            }
            Ok::<_, ManagerError>(records)
        };
        let copied = tokio::select! {
            copied = copied => copied,
            () = super::operations::cancelled(cancel) => Err(ManagerError::Aborted(format!(
                "the reshard of store '{store}' was cancelled; it was rolled back to {from} shards"
            ))),
        };
        drop(registered);
        let records = match copied {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(store, from, to, error = %e, "reshard failed before the switch; rolling back");
                crate::metrics::reshard_finished("rolled_back", 0);
                if let Err(undo) = self.end_reshard(store).await {
                    tracing::error!(store, error = %undo, "cannot finish rolling back a reshard now; it is retried by the next reshard or a restart");
                }
                return Err(e);
            }
        };
        let copy = copy_started.elapsed();
        // 4. switch
        let mut retiring = Vec::new();
        let ids = {
            let mut state = self.state();
            let mut batch = rocksdb::WriteBatch::default();
            if let Some(entry) = state.stores.get_mut(store) {
                entry.config.shards = to;
                if to < from {
                    // nothing to prune: the kept shards hold exactly what they own under `to`; the removed ones
                    // serve old tables for the grace period, then go
                    for (shard, replicas) in entry.shards.drain(to as usize..).enumerate() {
                        for node in replicas {
                            retiring.push((node, store.to_string(), to + shard as u32));
                        }
                    }
                    entry.resharding = None;
                } else if let Some(r) = entry.resharding.as_mut() {
                    r.switched = true;
                }
            }
            state.retiring.extend(retiring.iter().cloned());
            let ids = state.bump_store_epochs(store, &mut batch)?;
            self.publish(&mut state, batch)?;
            ids
        };
        if let Err(e) = self.fence(&ids).await {
            tracing::warn!(store, error = %e, "cannot fence the new layout at once (writers learn it from the table)");
        }
        // 5. clean up, after the old layout has served the gateways that were still on it
        tokio::time::sleep(OLD_TABLE_GRACE).await;
        let (pruned, version) = if to > from {
            let pruned = self.end_reshard(store).await?;
            (pruned, self.state().version)
        } else {
            let dropped: Vec<(u32, String)> = retiring.iter().map(|(node, _, shard)| (*shard, node.clone())).collect();
            self.drop_shards(store, &dropped).await;
            let mut state = self.state();
            for r in &retiring {
                state.retiring.remove(r);
            }
            (0, state.version)
        };
        crate::metrics::reshard_finished("done", records);
        let report = ReshardReport { from, to, records, pruned, elapsed: started.elapsed(), copy, version };
        tracing::info!(
            store,
            from,
            to,
            records,
            pruned,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "reshard: done"
        );
        Ok(report)
    }

    /// Drops `store`'s `replicas` (shard, node id), as they were placed before they left the catalog (best effort:
    /// a replica not dropped now is an orphan, dropped at its node's next heartbeat).
    async fn drop_shards(&self, store: &str, replicas: &[(u32, String)]) {
        let targets: Vec<(u32, String)> = {
            let state = self.state();
            replicas.iter().filter_map(|(shard, node)| Some((*shard, state.address(node)?))).collect()
        };
        for (shard, address) in targets {
            if let Ok(c) = self.client(&address) {
                let id = pb::ShardId { store: store.to_string(), shard };
                match c.drop_shard(pb::DropShardRequest { shard: Some(id) }).await {
                    Ok(_) => {}
                    Err(s) if s.code() == tonic::Code::NotFound => {}
                    Err(s) => {
                        tracing::warn!(store, shard, %address, error = %s.message(), "cannot drop a resharded-away replica now; it goes at the node's next heartbeat")
                    }
                }
            }
        }
    }

    /// Ends `store`'s reshard: one that switched is finished (the old shards prune what they no longer own, then
    /// the record goes), one that had not is rolled back (the table goes back to the old layout; new shards are
    /// dropped, copies in kept shards pruned). Returns the records pruned. On an error the record stays (reads keep
    /// asking for owned points only, so results stay right) and this is tried again later.
    async fn end_reshard(&self, store: &str) -> Result<u64> {
        let Some(r) = self.state().stores.get(store).and_then(|e| e.resharding.clone()) else { return Ok(0) };
        let mut pruned = 0;
        if r.switched {
            // the old shards lose what moved to the new ones
            pruned += self.prune_shards(store, 0..r.from, r.to).await?;
        } else {
            // roll back: the old layout alone, under new epochs
            let mut added: Vec<(u32, String)> = Vec::new();
            let ids = {
                let mut state = self.state();
                let mut batch = rocksdb::WriteBatch::default();
                if let Some(entry) = state.stores.get_mut(store) {
                    let from = r.from as usize;
                    for (i, replicas) in entry.shards.drain(from.min(entry.shards.len())..).enumerate() {
                        added.extend(replicas.into_iter().map(|node| (r.from + i as u32, node)));
                    }
                    entry.config.shards = r.from;
                    entry.resharding = Some(Resharding { switched: false, to: r.from, copies_total: 0, ..r.clone() });
                }
                let ids = state.bump_store_epochs(store, &mut batch)?;
                self.publish(&mut state, batch)?;
                ids
            };
            if let Err(e) = self.fence(&ids).await {
                tracing::warn!(store, error = %e, "cannot fence the rolled-back layout at once");
            }
            if r.to > r.from {
                self.drop_shards(store, &added).await;
            } else {
                // copies that reached the kept shards go (reads already leave them out)
                pruned += self.prune_shards(store, 0..r.to, r.from).await?;
            }
        }
        let mut state = self.state();
        let mut batch = rocksdb::WriteBatch::default();
        if let Some(entry) = state.stores.get_mut(store) {
            entry.resharding = None;
            batch.put(format!("store:{store}"), encode(&*entry)?);
        }
        self.publish(&mut state, batch)?;
        Ok(pruned)
    }

    /// Every replica of `store`'s shards in `range` prunes the records it does not own under `layout` shards.
    async fn prune_shards(&self, store: &str, range: std::ops::Range<u32>, layout: u32) -> Result<u64> {
        let targets: Vec<(u32, String, String)> = {
            let state = self.state();
            let entry = state.stores.get(store).ok_or_else(|| ManagerError::NotFound(store.to_string()))?;
            range
                .flat_map(|s| entry.shards.get(s as usize).into_iter().flatten().map(move |n| (s, n.clone())))
                .map(|(s, n)| (s, state.address(&n).unwrap_or_default(), n))
                .collect()
        };
        let mut pruned = 0;
        for (shard, address, node) in targets {
            let req = pb::PruneShardRequest {
                shard: Some(pb::ShardId { store: store.to_string(), shard }),
                layout_shards: layout,
            };
            let out = self.client_with(&address, None)?.prune_shard(req).await.map_err(|status| {
                ManagerError::Node { context: format!("pruning shard {shard} on node {node}"), status }
            })?;
            pruned += out.removed;
        }
        Ok(pruned)
    }

    /// Reshards left unfinished (by a restart or a failure) are finished or rolled back: at start-up, and before
    /// each new reshard. The caller holds the catalog lock (or runs before serving).
    pub(super) async fn resume_reshards(&self) -> Result<()> {
        let pending: Vec<String> =
            self.state().stores.iter().filter(|(_, e)| e.resharding.is_some()).map(|(n, _)| n.clone()).collect();
        for store in pending {
            tracing::warn!(store, "finishing a reshard that was interrupted");
            self.end_reshard(&store).await?;
        }
        Ok(())
    }

    /// After a restart with a reshard unfinished: it is finished or rolled back in the background as soon as its
    /// nodes answer (retried every few seconds). Until then the table keeps routing it as it was, which is safe.
    pub(super) fn spawn_resume_reshards(self: &Arc<Self>) {
        if !self.state().stores.values().any(|e| e.resharding.is_some()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let me = Arc::downgrade(self);
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(OLD_TABLE_GRACE).await;
                let Some(manager) = me.upgrade() else { return };
                let _admin = manager.admin.lock().await;
                match manager.resume_reshards().await {
                    Ok(()) => return,
                    Err(e) => tracing::warn!(error = %e, "cannot finish an interrupted reshard yet; retrying"),
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rvdb_core::sharding::shard_of;

    /// The copy plan names every (source, target) pair that some id moves along, and no other.
    #[test]
    fn copy_plans_cover_exactly_the_ids_that_move() {
        for (from, to) in [(1, 2), (4, 8), (8, 2), (3, 5), (5, 3), (2, 1), (1, 16)] {
            let plan = copy_plan(from, to);
            for i in 0..20_000 {
                let id = format!("id-{i}");
                let (a, b) = (shard_of(&id, from), shard_of(&id, to));
                let planned = plan.iter().any(|(t, s)| *t == b && s.contains(&a));
                assert_eq!(a != b, planned, "{id}: {from} -> {to}: shard {a} -> {b}");
            }
        }
    }
}
