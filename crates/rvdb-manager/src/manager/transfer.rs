//! Shard transfer: moving one replica of a shard to another node while reads and writes continue.
//!
//! 1. **Create** the new replica on the target as *filling*: it takes writes but refuses reads (UNAVAILABLE, so a
//!    gateway reads another replica), and it stays so across restarts until filled.
//! 2. **Join**: the target is appended to the shard's replica list (last, so it is not the preferred reader) under
//!    a new placement epoch, and every live replica is fenced at that epoch and waited for. From then on no write
//!    can land on the shard's other replicas without being sent to the target too (a gateway with an older table
//!    is refused and refetches it), so the snapshot pulled next holds everything the target may lack.
//! 3. **Fill**: the target pulls every record from a live replica (the source if it is up), with versions, by
//!    last-write-wins, fsyncs, and starts serving reads.
//! 4. **Switch**: the target takes the source's place in the list (its read preference too) under a new epoch; the
//!    remaining replicas and the source are fenced, so a write routed to the old set is refused and resent.
//! 5. **Drop** the source's replica (best effort: otherwise it is an orphan, dropped at the node's next heartbeat).
//!
//! Transfers of different shards run side by side: the catalog lock is held while a transfer creates and joins
//! its replica and while it switches, not while it fills; a shard has at most one transfer at a time, and a store
//! dropped meanwhile cancels its transfers.
//!
//! A failure before the switch rolls the transfer back (the target leaves the list under a new epoch and its
//! replica is dropped): the shard is as before, nothing written is lost, since the old replicas took every write.
//! The transfer is recorded in the catalog while it runs (`transfer:<store>#<shard>`): a manager that restarts in
//! the middle rolls back a transfer that had not switched and finishes one that had. `rvdb cancel` rolls one back
//! too ([`super::operations`]).

use super::*;

/// A transfer in progress, as recorded in the catalog and shown in the routing table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Transfer {
    pub from: String,
    pub to: String,
    pub started_unix_ms: u64,
    /// Progress of the fill (records on the new replica, on the source), kept in memory only.
    #[serde(skip)]
    pub copied: u64,
    #[serde(skip)]
    pub total: u64,
}

/// Bytes a record costs besides its vector (id, version, metadata, index links), for balancing by size.
const RECORD_OVERHEAD: u64 = 128;

/// What a finished move did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MoveReport {
    /// Records (points and tombstones) the fill copied.
    pub records: u64,
    pub elapsed: Duration,
    /// The routing version that routes to the new replica.
    pub version: u64,
}

pub(super) fn transfer_key(store: &str, shard: u32) -> String {
    format!("transfer:{store}#{shard}")
}

impl State {
    /// Sets `shard`'s placement epoch to the version about to be published and puts its store record in `batch`.
    fn bump_shard_epoch(&mut self, store: &str, shard: u32, batch: &mut rocksdb::WriteBatch) -> Result<()> {
        let epoch = self.version + 1;
        let entry = self.stores.get_mut(store).ok_or_else(|| ManagerError::NotFound(format!("store '{store}'")))?;
        entry.epochs.resize(entry.shards.len(), 0);
        entry.epochs[shard as usize] = epoch;
        batch.put(format!("store:{store}"), encode(&*entry)?);
        Ok(())
    }
}

impl State {
    /// Ends the record of `store`'s transfer of `shard` (in state and, by `batch`, on disk). One that had not
    /// switched yet (the list holds both the source and the target) is rolled back: the target leaves the list
    /// under a new epoch. Returns the transfer if it was rolled back.
    fn end_transfer(&mut self, store: &str, shard: u32, batch: &mut rocksdb::WriteBatch) -> Result<Option<Transfer>> {
        let Some(t) = self.transfers.remove(&(store.to_string(), shard)) else { return Ok(None) };
        batch.delete(transfer_key(store, shard));
        let replicas = self.stores.get_mut(store).and_then(|e| e.shards.get_mut(shard as usize));
        let Some(replicas) = replicas.filter(|r| r.contains(&t.from) && r.contains(&t.to)) else { return Ok(None) };
        replicas.retain(|n| *n != t.to);
        self.bump_shard_epoch(store, shard, batch)?;
        Ok(Some(t))
    }
}

impl Manager {
    /// Moves `store`'s replica of `shard` from node `from` to node `to` (see the module docs).
    pub async fn move_shard(&self, store: &str, shard: u32, from: &str, to: &str) -> Result<MoveReport> {
        let started = Instant::now();
        let admin = self.admin.lock().await;
        let id = pb::ShardId { store: store.to_string(), shard };
        let (config, to_address) = {
            let state = self.state();
            let entry = state
                .stores
                .get(store)
                .ok_or_else(|| ManagerError::NotFound(format!("store '{store}' does not exist")))?;
            let replicas = entry.shards.get(shard as usize).ok_or_else(|| {
                ManagerError::InvalidArgument(format!(
                    "store '{store}' has {} shards; there is no shard {shard}",
                    entry.shards.len()
                ))
            })?;
            if !replicas.iter().any(|n| n == from) {
                return Err(ManagerError::InvalidArgument(format!(
                    "node {from:?} holds no replica of shard {shard} of store '{store}' (its replicas: {})",
                    replicas.join(", ")
                )));
            }
            if replicas.iter().any(|n| n == to) {
                return Err(ManagerError::AlreadyExists(format!(
                    "node {to:?} already holds a replica of shard {shard} of store '{store}'"
                )));
            }
            if let Some(t) = state.transfers.get(&(store.to_string(), shard)) {
                return Err(ManagerError::FailedPrecondition(format!(
                    "shard {shard} of store '{store}' is moving from node {:?} to node {:?} already: one transfer per \
                     shard at a time",
                    t.from, t.to
                )));
            }
            if entry.resharding.is_some() {
                return Err(ManagerError::FailedPrecondition(format!(
                    "store '{store}' is being resharded; move its replicas when that is done"
                )));
            }
            let target =
                state.nodes.get(to).ok_or_else(|| ManagerError::NotFound(format!("node {to:?} is not registered")))?;
            if target.state != NodeState::Up {
                return Err(ManagerError::NotEnoughNodes(format!(
                    "node {to:?} is {:?}: a shard moves only to a node that is up",
                    target.state
                )));
            }
            (entry.replica_config(), target.address.clone())
        };
        tracing::info!(store, shard, from, to, "shard transfer: starting");
        // 1. the new replica, filling (a leftover of an earlier, interrupted transfer is dropped first)
        let create = || pb::CreateShardRequest {
            shard: Some(id.clone()),
            config: Some(config_to_pb(&config)),
            placement_epoch: self.state().stores.get(store).map_or(0, |e| e.epoch(shard)),
            filling: true,
        };
        let client = self.client(&to_address)?;
        match client.create_shard(create()).await {
            Err(s) if s.code() == tonic::Code::AlreadyExists => {
                client.drop_shard(pb::DropShardRequest { shard: Some(id.clone()) }).await?;
                client.create_shard(create()).await?;
            }
            other => {
                other?;
            }
        }
        // 2. join the replica set under a new epoch (cancellable from the moment the table shows it)
        let op = (store.to_string(), Some(shard));
        let (registered, cancel) = self.cancels.register(op);
        {
            let mut state = self.state();
            let mut batch = rocksdb::WriteBatch::default();
            if let Some(entry) = state.stores.get_mut(store) {
                entry.shards[shard as usize].push(to.to_string());
            }
            state.bump_shard_epoch(store, shard, &mut batch)?;
            let record = Transfer {
                from: from.to_string(),
                to: to.to_string(),
                started_unix_ms: unix_ms(),
                copied: 0,
                total: 0,
            };
            batch.put(transfer_key(store, shard), encode(&record)?);
            state.transfers.insert((store.to_string(), shard), record);
            self.publish(&mut state, batch)?;
        }
        drop(admin); // the fill runs without the catalog lock: other transfers, creates and drops go on
        crate::metrics::transfer_started();
        let filled = async {
            self.fence(std::slice::from_ref(&id)).await?;
            // 3. fill from the source if it is up, else from another live replica
            let source_address = {
                let state = self.state();
                let replicas = state.stores.get(store).map(|e| e.shards[shard as usize].clone()).unwrap_or_default();
                let up =
                    |n: &String| state.nodes.get(n).filter(|e| e.state == NodeState::Up).map(|e| e.address.clone());
                up(&from.to_string())
                    .or_else(|| replicas.iter().filter(|n| *n != to && *n != from).find_map(up))
                    .ok_or_else(|| {
                        ManagerError::NotEnoughNodes(format!(
                            "no replica of shard {shard} of store '{store}' is up to copy from"
                        ))
                    })?
            };
            let req = pb::CatchUpRequest {
                shard: Some(id.clone()),
                source_address: source_address.clone(),
                since_version: 0,
                finish_fill: true,
                ..Default::default()
            };
            // no deadline: the fill streams the whole shard
            let fill = async { Ok::<_, ManagerError>(self.client_with(&to_address, None)?.catch_up(req).await?) };
            tokio::select! {
                filled = fill => filled,
                never = self.transfer_progress(store, shard, &to_address, &source_address) => match never {},
            }
        };
        let filled = tokio::select! {
            filled = filled => filled,
            () = operations::cancelled(cancel) => Err(ManagerError::Aborted(format!(
                "the transfer of shard {shard} of store '{store}' was cancelled; it was rolled back"
            ))),
        };
        drop(registered);
        let filled = match filled {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(store, shard, from, to, error = %e, "shard transfer failed; rolling back");
                self.roll_back_transfer(store, shard).await;
                crate::metrics::transfer_finished("rolled_back", 0);
                return Err(e);
            }
        };
        // 4. switch: the target takes the source's place (unless the store was dropped meanwhile)
        let admin = self.admin.lock().await;
        if !self.state().transfers.contains_key(&(store.to_string(), shard)) {
            return Err(ManagerError::Aborted(format!("store '{store}' was dropped while its shard {shard} moved")));
        }
        let (version, from_address) = {
            let mut state = self.state();
            let mut batch = rocksdb::WriteBatch::default();
            if let Some(entry) = state.stores.get_mut(store) {
                let replicas = &mut entry.shards[shard as usize];
                replicas.retain(|n| n != to);
                match replicas.iter_mut().find(|n| *n == from) {
                    Some(slot) => *slot = to.to_string(),
                    None => replicas.push(to.to_string()),
                }
            }
            state.bump_shard_epoch(store, shard, &mut batch)?;
            batch.delete(transfer_key(store, shard));
            state.transfers.remove(&(store.to_string(), shard));
            state.retiring.insert((from.to_string(), store.to_string(), shard));
            let version = self.publish(&mut state, batch)?;
            (version, state.address(from))
        };
        drop(admin);
        if let Err(e) = self.fence(std::slice::from_ref(&id)).await {
            tracing::warn!(store, shard, error = %e, "cannot fence the new replica set at once (writers learn it from the table)");
        }
        // 5. the source stops taking writes of the old set at once; its replica serves gateways still on the old
        // table for a grace period, then goes (in the background: the move is done)
        let retired = (from.to_string(), store.to_string(), shard);
        match from_address.map(|a| self.client(&a)) {
            Some(Ok(c)) => {
                let epoch = self.state().stores.get(store).map_or(0, |e| e.epoch(shard));
                let _ = c
                    .fence_shards(pb::FenceShardsRequest {
                        shards: vec![pb::ShardEpoch { shard: Some(id.clone()), epoch }],
                    })
                    .await;
                let me = self.me.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(OLD_TABLE_GRACE).await;
                    if let Err(e) = c.drop_shard(pb::DropShardRequest { shard: Some(id.clone()) }).await {
                        tracing::warn!(store = %id.store, shard = id.shard, from = %retired.0, error = %e.message(), "cannot drop the moved replica now; it goes at the node's next heartbeat");
                    }
                    if let Some(m) = me.upgrade() {
                        m.state().retiring.remove(&retired);
                    }
                });
            }
            _ => {
                self.state().retiring.remove(&retired);
            }
        }
        crate::metrics::transfer_finished("done", filled.received);
        let report = MoveReport { records: filled.received, elapsed: started.elapsed(), version };
        tracing::info!(
            store,
            shard,
            from,
            to,
            records = report.records,
            elapsed_ms = report.elapsed.as_millis() as u64,
            "shard transfer: done"
        );
        Ok(report)
    }

    /// Refreshes the progress of the transfer of `store`'s `shard` in the table every [`operations::PROGRESS_EVERY`]
    /// (records on the target, on the source), until dropped.
    async fn transfer_progress(&self, store: &str, shard: u32, target: &str, source: &str) -> std::convert::Infallible {
        loop {
            tokio::time::sleep(operations::PROGRESS_EVERY).await;
            let (copied, total) =
                (self.replica_records(target, store, shard).await, self.replica_records(source, store, shard).await);
            let mut state = self.state();
            if let Some(t) = state.transfers.get_mut(&(store.to_string(), shard)) {
                t.copied = copied.unwrap_or(t.copied);
                t.total = total.unwrap_or(t.total);
            }
            self.refresh_progress(&state);
        }
    }

    /// Undoes a transfer that has not switched: the target leaves the replica list under a new epoch, the record
    /// goes, and the target's replica is dropped (best effort; an orphan otherwise).
    async fn roll_back_transfer(&self, store: &str, shard: u32) {
        let _admin = self.admin.lock().await;
        let target = {
            let mut state = self.state();
            let mut batch = rocksdb::WriteBatch::default();
            let undone = match state.end_transfer(store, shard, &mut batch) {
                Ok(undone) => undone,
                Err(e) => {
                    tracing::error!(error = %e, "cannot roll back a shard transfer");
                    None
                }
            };
            if let Err(e) = self.publish(&mut state, batch) {
                tracing::error!(error = %e, "cannot persist the roll-back of a shard transfer");
            }
            undone.and_then(|t| state.address(&t.to))
        };
        if let Some(address) = target
            && let Ok(c) = self.client(&address)
        {
            let _ = c
                .drop_shard(pb::DropShardRequest { shard: Some(pb::ShardId { store: store.to_string(), shard }) })
                .await;
        }
    }

    /// After a restart: transfers that were running when the manager stopped are rolled back (those that had not
    /// switched) or finished (those that had: only their record remains). Their replicas that no longer belong
    /// anywhere are orphans, dropped at the nodes' next heartbeats.
    pub(super) fn recover_transfers(&self) -> Result<()> {
        let pending: Vec<(String, u32)> = self.state().transfers.keys().cloned().collect();
        for (store, shard) in pending {
            let mut state = self.state();
            let mut batch = rocksdb::WriteBatch::default();
            if let Some(t) = state.end_transfer(&store, shard, &mut batch)? {
                tracing::warn!(store, shard, from = %t.from, to = %t.to, "rolled back a shard transfer interrupted by a restart");
            }
            self.publish(&mut state, batch)?;
        }
        Ok(())
    }
}

/// What [`Manager::remove_node`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveReport {
    /// The replicas re-created elsewhere, as moves from the removed node.
    pub moved: Vec<super::rebalance::Move>,
    pub records: u64,
    /// The routing version without the node.
    pub version: u64,
}

impl Manager {
    /// Every shard's replicas, and the ids of the nodes that are up (the ones that may take replicas).
    fn placement_now(&self) -> (super::rebalance::Placement, Vec<String>) {
        use super::rebalance::ShardRef;
        let state = self.state();
        let placement = state
            .stores
            .iter()
            .flat_map(|(name, e)| {
                e.shards
                    .iter()
                    .enumerate()
                    .map(move |(i, r)| (ShardRef { store: name.clone(), shard: i as u32 }, r.clone()))
            })
            .collect();
        let up = state.nodes.iter().filter(|(_, n)| n.state == NodeState::Up).map(|(id, _)| id.clone()).collect();
        (placement, up)
    }

    /// Moves replicas, at most `max_moves` (0: as many as needed), until no up node holds more than one replica
    /// more than another ([`super::rebalance::plan_rebalance`]: the fewest moves), then evens out their bytes where
    /// that gains at least 5% of a node's share ([`super::rebalance::plan_byte_balance`]), `parallel` transfers at a time
    /// (0: the manager's `max_parallel_transfers`). Moves of one shard run in plan order, one after the other. On a
    /// failure no new move starts; the ones running finish, then the first error is returned.
    pub async fn rebalance(
        self: &Arc<Self>,
        max_moves: usize,
        parallel: usize,
    ) -> Result<Vec<(super::rebalance::Move, MoveReport)>> {
        // one rebalance at a time: a second one (another node joined) plans from where the first one left things
        let _one = self.rebalancing.lock().await;
        let (mut placement, up) = self.placement_now();
        let bound = if max_moves == 0 { usize::MAX } else { max_moves };
        let mut plan = super::rebalance::plan_rebalance(&placement, &up, bound);
        // then bytes: shards differ in size
        super::rebalance::apply_moves(&mut placement, &plan);
        let sizes = self.replica_sizes(&up).await;
        let total: u64 = placement.iter().map(|(s, r)| sizes.get(s).copied().unwrap_or(0) * r.len() as u64).sum();
        let min_gain = total / up.len().max(1) as u64 / 20; // 5% of a node's share
        let size = |s: &super::rebalance::ShardRef| sizes.get(s).copied().unwrap_or(0);
        let left = bound.saturating_sub(plan.len());
        plan.extend(super::rebalance::plan_byte_balance(&placement, &up, &size, min_gain, left));
        let parallel = if parallel == 0 { self.options.max_parallel_transfers } else { parallel }.max(1);
        tracing::info!(moves = plan.len(), nodes = up.len(), parallel, "rebalancing");
        let mut pending: std::collections::VecDeque<super::rebalance::Move> = plan.into();
        let mut busy: BTreeSet<super::rebalance::ShardRef> = BTreeSet::new();
        let mut running = tokio::task::JoinSet::new();
        let (mut done, mut failed) = (Vec::new(), None);
        loop {
            while running.len() < parallel && failed.is_none() {
                let Some(next) = pending.iter().position(|m| !busy.contains(&m.shard)) else { break };
                let Some(m) = pending.remove(next) else { break };
                busy.insert(m.shard.clone());
                let me = self.clone();
                running.spawn(async move {
                    let report = me.move_shard(&m.shard.store, m.shard.shard, &m.from, &m.to).await;
                    (m, report)
                });
            }
            let Some(joined) = running.join_next().await else { break };
            let (m, report) = joined.map_err(|e| ManagerError::Aborted(format!("a transfer task failed: {e}")))?;
            busy.remove(&m.shard);
            match report {
                Ok(report) => done.push((m, report)),
                Err(e) => {
                    failed.get_or_insert(e);
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// Each shard's size in bytes, as its largest replica on the `nodes` that answer reports it: its records
    /// (points and tombstones) times a vector's bytes plus [`RECORD_OVERHEAD`].
    async fn replica_sizes(&self, nodes: &[String]) -> BTreeMap<super::rebalance::ShardRef, u64> {
        let addresses: Vec<String> = {
            let state = self.state();
            nodes.iter().filter_map(|n| state.address(n)).collect()
        };
        let mut sizes = BTreeMap::new();
        for address in addresses {
            let Ok(client) = self.client(&address) else { continue };
            let Ok(list) = client.list_shards().await else { continue };
            for stats in list.shards {
                let Some(id) = stats.shard else { continue };
                let key = super::rebalance::ShardRef { store: id.store, shard: id.shard };
                // records × their raw size, not the bytes on disk: those swing with flushes and compactions
                let dimension = stats.config.as_ref().map_or(0, |c| u64::from(c.dimension));
                let bytes = (stats.points + stats.tombstones) * (4 * dimension + RECORD_OVERHEAD);
                let size = sizes.entry(key).or_insert(0u64);
                *size = (*size).max(bytes);
            }
        }
        sizes
    }

    /// Removes a node for good: each of its replicas is re-created on the least loaded up node without that
    /// shard (a shard transfer, filled from the node itself while it is up, else from a live peer), then the node
    /// leaves the catalog; if it registers again with its old data it is refused (only as a new node, on an empty
    /// data directory, can it join again). Refused, before anything moves, if a shard would lose its last readable replica or no
    /// node can take a replica.
    pub async fn remove_node(&self, node_id: &str) -> Result<RemoveReport> {
        let (placement, up) = self.placement_now();
        let node_up = up.iter().any(|n| n == node_id);
        if !self.state().nodes.contains_key(node_id) {
            return Err(ManagerError::NotFound(format!("node {node_id:?} is not registered")));
        }
        let live: Vec<String> = up.into_iter().filter(|n| n != node_id).collect();
        let readable: Vec<String> = if node_up { vec![node_id.to_string()] } else { Vec::new() };
        let plan = super::rebalance::plan_recreate(&placement, &live, &readable);
        let holds = |shard: &super::rebalance::ShardRef| {
            placement.iter().any(|(s, r)| s == shard && r.iter().any(|n| n == node_id))
        };
        if let Some(lost) = plan.lost.iter().find(|s| holds(s)) {
            return Err(ManagerError::NotEnoughNodes(format!(
                "shard {} of store '{}' has no readable replica besides node {node_id:?}, which is down: bring it back \
                 (or another replica's node) before removing it",
                lost.shard, lost.store
            )));
        }
        if let Some((shard, _)) = plan.unplaceable.iter().find(|(_, n)| n == node_id) {
            return Err(ManagerError::NotEnoughNodes(format!(
                "no other up node can take node {node_id:?}'s replica of shard {} of store '{}' (every one holds a \
                 replica of it already): add a node first",
                shard.shard, shard.store
            )));
        }
        let mut moved = Vec::new();
        let mut records = 0;
        for r in plan.recreate.into_iter().filter(|r| r.lost == node_id) {
            let report = self.move_shard(&r.shard.store, r.shard.shard, node_id, &r.to).await?;
            records += report.records;
            moved.push(super::rebalance::Move { shard: r.shard, from: node_id.to_string(), to: r.to });
        }
        let _admin = self.admin.lock().await;
        let mut state = self.state();
        if let Some(still) = state.stores.iter().find(|(_, e)| e.shards.iter().any(|r| r.iter().any(|n| n == node_id)))
        {
            return Err(ManagerError::Aborted(format!(
                "store '{}' was given a replica on node {node_id:?} meanwhile; run remove-node again",
                still.0
            )));
        }
        state.nodes.remove(node_id);
        state.removed.insert(node_id.to_string());
        let mut batch = rocksdb::WriteBatch::default();
        batch.delete(format!("node:{node_id}"));
        batch.put(format!("removed:{node_id}"), b"");
        let version = self.publish(&mut state, batch)?;
        tracing::info!(node_id, replicas = moved.len(), records, "node removed");
        Ok(RemoveReport { moved, records, version })
    }
}
