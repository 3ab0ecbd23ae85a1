//! Node membership: registration, heartbeats (which also report the replicas a node holds: orphans are dropped,
//! lost ones re-created), the monitor that declares silent nodes DOWN, and catch-up of a returning node.

use super::*;

impl Manager {
    pub fn register_node(self: &Arc<Self>, node_id: &str, address: &str) -> Result<(u64, u64)> {
        if node_id.is_empty() || node_id.len() > 128 || node_id.chars().any(|c| c.is_control() || c == ':') {
            return Err(ManagerError::InvalidArgument(
                "node_id must be 1..=128 characters without ':' or controls".into(),
            ));
        }
        Endpoint::from_shared(address.to_string())
            .map_err(|e| ManagerError::InvalidArgument(format!("address {address:?} is not a gRPC URL: {e}")))?;
        let mut state = self.state();
        let hosts = state.hosts_replicas(node_id);
        let joins = !state.nodes.contains_key(node_id);
        let now = Instant::now();
        let entry = state.nodes.entry(node_id.to_string()).or_insert_with(|| NodeEntry {
            address: address.to_string(),
            state: NodeState::Up,
            last_seen: now,
            last_heartbeat_unix_ms: 0,
            epoch: 0,
            catching_up: false,
            left: false,
        });
        entry.address = address.to_string();
        entry.last_seen = now;
        entry.last_heartbeat_unix_ms = unix_ms();
        entry.epoch += 1;
        entry.left = false;
        // A (re)started process may have missed writes: it serves reads only after catching up.
        entry.state = if hosts { NodeState::CatchingUp } else { NodeState::Up };
        tracing::info!(node_id, address, state = ?entry.state, "node registered");
        let mut batch = rocksdb::WriteBatch::default();
        Self::node_record(&mut batch, node_id, entry)?;
        // a (re)started process: its shards' writable replicas change (it is one again, from now on)
        let changed = state.bump_epochs(node_id, &mut batch)?;
        let version = self.publish(&mut state, batch)?;
        self.push_epochs(&state, &changed);
        drop(state);
        if joins && self.options.rebalance_on_join {
            self.rebalance_soon(node_id);
        }
        Ok((self.options.heartbeat_interval.as_millis() as u64, version))
    }

    /// A new node joined: after two heartbeat intervals (it has settled, and nodes joining together are all
    /// there), replicas move to it until the up nodes are balanced ([`Manager::rebalance`], one transfer at a
    /// `max_parallel_transfers` at a time, reads and writes going on). In the background; a failure is logged and left to `rvdb rebalance`.
    fn rebalance_soon(self: &Arc<Self>, node_id: &str) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (me, node_id) = (Arc::downgrade(self), node_id.to_string());
        runtime.spawn(async move {
            let Some(delay) = me.upgrade().map(|m| m.options.heartbeat_interval * 2) else { return };
            tokio::time::sleep(delay).await;
            let Some(manager) = me.upgrade() else { return };
            match manager.rebalance(0, 0).await {
                Ok(moves) if moves.is_empty() => {}
                Ok(moves) => {
                    let records: u64 = moves.iter().map(|(_, r)| r.records).sum();
                    tracing::info!(node_id, moves = moves.len(), records, "rebalanced after a node joined");
                }
                Err(e) => {
                    tracing::warn!(node_id, error = %e, "cannot rebalance after a node joined; run `rvdb rebalance`")
                }
            }
        });
    }

    /// Records a heartbeat; returns the routing version and starts dropping the node's orphan replicas.
    pub fn heartbeat(self: &Arc<Self>, node_id: &str, hosted: Vec<pb::ShardId>) -> Result<u64> {
        let mut state = self.state();
        let hosts = state.hosts_replicas(node_id);
        let mut version = state.version;
        let Some(entry) = state.nodes.get_mut(node_id) else {
            return Err(ManagerError::NotFound(format!("node {node_id:?} is not registered")));
        };
        if entry.left {
            return Ok(version); // sent before the node left; it comes back by registering
        }
        entry.last_seen = Instant::now();
        entry.last_heartbeat_unix_ms = unix_ms();
        let address = entry.address.clone();
        if entry.state == NodeState::Down {
            entry.epoch += 1;
            entry.state = if hosts { NodeState::CatchingUp } else { NodeState::Up };
            tracing::info!(node_id, state = ?entry.state, "node is back");
            let mut batch = rocksdb::WriteBatch::default();
            Self::node_record(&mut batch, node_id, entry)?;
            let changed = state.bump_epochs(node_id, &mut batch)?;
            version = self.publish(&mut state, batch)?;
            self.push_epochs(&state, &changed);
        }
        // replicas the catalog gives this node that it does not hold (lost, or dropped by hand): refill them
        let missing: Vec<pb::ShardId> = state
            .stores
            .iter()
            .filter(|(name, _)| !state.creating.contains(*name))
            .flat_map(|(name, e)| {
                e.replicas().filter(|(_, n)| *n == node_id).map(|(shard, _)| pb::ShardId { store: name.clone(), shard })
            })
            .filter(|id| !hosted.contains(id))
            .collect();
        let orphans: Vec<pb::ShardId> = hosted.into_iter().filter(|s| !state.claims(s, node_id)).collect();
        drop(state);
        for id in missing {
            self.report_missed_write(id, &address, 0);
        }
        if !orphans.is_empty() {
            let (me, node_id) = (self.clone(), node_id.to_string());
            tokio::spawn(async move {
                let _admin = me.admin.lock().await; // not while a create of the same name is half done
                for shard in orphans {
                    if me.state().claims(&shard, &node_id) {
                        continue;
                    }
                    tracing::info!(store = %shard.store, shard = shard.shard, %address, "dropping an orphan replica");
                    if let Ok(c) = me.client(&address) {
                        let _ = c.drop_shard(pb::DropShardRequest { shard: Some(shard) }).await;
                    }
                }
            });
        }
        Ok(version)
    }

    /// A node shutting down leaves: DOWN at once (a new epoch, so a catch-up of its previous life stops), published
    /// so gateways route around it before its listener closes. Its next registration or heartbeat brings it back
    /// through CATCHING_UP as after any absence. Returns the routing version that no longer routes to it.
    pub fn leave(&self, node_id: &str) -> Result<u64> {
        let mut state = self.state();
        let Some(entry) = state.nodes.get_mut(node_id) else {
            return Err(ManagerError::NotFound(format!("node {node_id:?} is not registered")));
        };
        entry.left = true;
        if entry.state == NodeState::Down {
            return Ok(state.version);
        }
        entry.state = NodeState::Down;
        entry.epoch += 1;
        tracing::info!(node_id, "node left the cluster (shutting down)");
        let mut batch = rocksdb::WriteBatch::default();
        Self::node_record(&mut batch, node_id, entry)?;
        let changed = state.bump_epochs(node_id, &mut batch)?;
        let version = self.publish(&mut state, batch)?;
        self.push_epochs(&state, &changed);
        Ok(version)
    }

    /// The membership monitor: marks silent nodes DOWN and catches up returning ones. Runs until aborted.
    pub async fn run_monitor(self: Arc<Self>) {
        let mut tick = tokio::time::interval((self.options.heartbeat_interval / 2).max(Duration::from_millis(20)));
        loop {
            tick.tick().await;
            let mut to_catch_up = Vec::new();
            {
                let mut state = self.state();
                let timeout = self.options.node_timeout;
                let mut batch = rocksdb::WriteBatch::default();
                let mut down = Vec::new();
                for (id, n) in state.nodes.iter_mut() {
                    if n.state != NodeState::Down && n.last_seen.elapsed() > timeout {
                        tracing::warn!(node_id = %id, silent_ms = n.last_seen.elapsed().as_millis() as u64, "node is down");
                        n.state = NodeState::Down;
                        if let Err(e) = Self::node_record(&mut batch, id, n) {
                            tracing::error!(error = %e, "cannot persist a node state");
                        }
                        down.push(id.clone());
                    }
                    if n.state == NodeState::CatchingUp && !n.catching_up {
                        n.catching_up = true;
                        to_catch_up.push((id.clone(), n.epoch));
                    }
                }
                let mut changed = Vec::new();
                for id in &down {
                    match state.bump_epochs(id, &mut batch) {
                        Ok(c) => changed.extend(c),
                        Err(e) => tracing::error!(error = %e, "cannot persist placement epochs"),
                    }
                }
                if !down.is_empty() {
                    match self.publish(&mut state, batch) {
                        Ok(_) => self.push_epochs(&state, &changed),
                        Err(e) => tracing::error!(error = %e, "cannot persist node states"),
                    }
                }
            }
            for (id, epoch) in to_catch_up {
                let me = self.clone();
                tokio::spawn(async move {
                    let result = me.catch_up_node(&id, epoch).await;
                    let mut state = me.state();
                    let Some(n) = state.nodes.get_mut(&id) else { return };
                    n.catching_up = false;
                    match result {
                        Ok(()) if n.epoch == epoch && n.state == NodeState::CatchingUp => {
                            n.state = NodeState::Up;
                            tracing::info!(node_id = %id, "node caught up; serving reads again");
                            let mut batch = rocksdb::WriteBatch::default();
                            if let Err(e) =
                                Self::node_record(&mut batch, &id, n).and_then(|()| me.publish(&mut state, batch))
                            {
                                tracing::error!(error = %e, "cannot persist node state");
                            }
                        }
                        Ok(()) => {}
                        Err(e) => tracing::warn!(node_id = %id, error = %e, "catch-up failed; retrying"),
                    }
                });
            }
        }
    }

    /// Catches up every replica the node holds from a live peer (two passes, see the module docs).
    pub(super) async fn catch_up_node(&self, node_id: &str, epoch: u64) -> Result<()> {
        // let gateways learn that the node takes writes again before the first snapshot of the peers (fewer writes
        // refused by the fence below)
        tokio::time::sleep(self.options.heartbeat_interval).await;
        let started = Instant::now();
        let mut received = 0;
        for pass in 0..2 {
            if pass == 1 {
                tokio::time::sleep(self.options.heartbeat_interval).await;
            }
            let work = self.replicas_of(node_id);
            // Write fencing: every live replica of these shards learns the epoch at which this node became
            // writable again, and waits for the writes still in flight under an older table. From here on no
            // write reaches a peer without being sent to this node too, so the snapshot below holds everything
            // this node may have missed (whatever the gateways' tables, clocks or delays).
            let shards: Vec<pb::ShardId> = work.iter().map(|(id, ..)| id.clone()).collect();
            self.fence(&shards).await?;
            for (id, config, address, source) in work {
                if self.state().nodes.get(node_id).is_none_or(|n| n.epoch != epoch) {
                    return Err(ManagerError::Aborted("the node restarted during catch-up".into()));
                }
                let out = self.catch_up_replica(&address, &id, &config, source.as_deref(), None).await?;
                received += out.received;
                tracing::debug!(node_id, store = %id.store, shard = id.shard, pass, received = out.received,
                    applied = out.applied, "replica caught up");
            }
        }
        tracing::info!(node_id, received, elapsed_ms = started.elapsed().as_millis() as u64, "catch-up done");
        Ok(())
    }

    /// Brings one replica level with `source`: creates it if missing, then has its node pull the source's changes
    /// since `since` (default: the replica's newest version), minus the catch-up margin.
    pub(super) async fn catch_up_replica(
        &self,
        address: &str,
        id: &pb::ShardId,
        config: &StoreConfig,
        source: Option<&str>,
        since: Option<u64>,
    ) -> Result<pb::CatchUpResponse> {
        let margin = (self.options.catch_up_margin.as_millis() as u64) << 16;
        let client = self.client(address)?;
        let epoch = self.state().stores.get(&id.store).map_or(0, |e| e.epoch(id.shard));
        let req = pb::CreateShardRequest {
            shard: Some(id.clone()),
            config: Some(config_to_pb(config)),
            placement_epoch: epoch,
            filling: false,
        };
        let since = match client.create_shard(req).await {
            Ok(_) => Some(0), // the replica was missing: it needs everything
            Err(s) if s.code() == tonic::Code::AlreadyExists => since,
            Err(s) => return Err(s.into()),
        };
        let Some(source) = source else { return Ok(pb::CatchUpResponse::default()) };
        let since = match since {
            Some(v) => v,
            None => {
                let stats = client.stats(pb::StatsRequest { shard: Some(id.clone()) }).await?;
                stats.stats.map_or(0, |s| s.max_version)
            }
        };
        let req = pb::CatchUpRequest {
            shard: Some(id.clone()),
            source_address: source.to_string(),
            since_version: since.saturating_sub(margin),
            ..Default::default()
        };
        // no deadline: a catch-up streams the whole difference, however long that takes
        Ok(self.client_with(address, None)?.catch_up(req).await?)
    }

    /// The replicas a node should hold, each with a peer to copy from (UP preferred, else CATCHING_UP; `None`
    /// when no other replica is reachable: nothing newer exists anywhere we can read).
    #[allow(clippy::type_complexity)]
    pub(super) fn replicas_of(&self, node_id: &str) -> Vec<(pb::ShardId, StoreConfig, String, Option<String>)> {
        let state = self.state();
        let Some(address) = state.address(node_id) else { return Vec::new() };
        let mut out = Vec::new();
        for (name, entry) in &state.stores {
            for (shard, replicas) in entry.shards.iter().enumerate() {
                if !replicas.iter().any(|n| n == node_id) {
                    continue;
                }
                let peer = |wanted: NodeState| {
                    replicas
                        .iter()
                        .filter(|n| *n != node_id)
                        .filter_map(|n| state.nodes.get(n))
                        .find(|n| n.state == wanted)
                        .map(|n| n.address.clone())
                };
                let source = peer(NodeState::Up).or_else(|| peer(NodeState::CatchingUp));
                let id = pb::ShardId { store: name.clone(), shard: shard as u32 };
                out.push((id, entry.replica_config(), address.clone(), source));
            }
        }
        out
    }
}
