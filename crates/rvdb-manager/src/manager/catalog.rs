//! The catalog: stores created (placed, their replicas created on the nodes, then persisted and published),
//! dropped, adopted from the nodes by a fresh catalog, described and listed.

use super::*;

impl Manager {
    pub async fn create_store(&self, config: StoreConfig) -> Result<StoreEntry> {
        config.validate().map_err(|e| ManagerError::InvalidArgument(e.to_string()))?;
        let _admin = self.admin.lock().await;
        let name = config.name.clone();
        let entry = {
            let mut state = self.state();
            if state.stores.contains_key(&name) {
                return Err(ManagerError::AlreadyExists(format!("store '{name}' already exists")));
            }
            if state.stores.len() >= self.options.max_vector_stores {
                return Err(ManagerError::LimitReached(format!(
                    "this deployment holds at most {} stores (max_vector_stores); delete one first",
                    self.options.max_vector_stores
                )));
            }
            let mut load: BTreeMap<String, usize> =
                state.nodes.iter().filter(|(_, n)| n.state == NodeState::Up).map(|(id, _)| (id.clone(), 0)).collect();
            for s in state.stores.values() {
                for id in s.shards.iter().flatten() {
                    if let Some(l) = load.get_mut(id) {
                        *l += 1;
                    }
                }
            }
            let Some(shards) = place(config.shards, config.replication_factor, &load) else {
                return Err(ManagerError::NotEnoughNodes(format!(
                    "replication_factor {} needs as many live storage nodes, but {} are up",
                    config.replication_factor,
                    load.len()
                )));
            };
            state.creating.insert(name.clone());
            StoreEntry::new(config, shards)
        };
        if let Err(e) = encode(&entry) {
            // refused before any replica exists
            self.state().creating.remove(&name);
            return Err(e);
        }
        let result = self.create_replicas(&entry).await;
        let mut state = self.state();
        state.creating.remove(&name);
        result?;
        // every shard's first placement epoch: the version this store is published at
        let mut entry = entry;
        entry.epochs = vec![state.version + 1; entry.shards.len()];
        let mut batch = rocksdb::WriteBatch::default();
        batch.put(format!("store:{name}"), encode(&entry)?);
        state.stores.insert(name.clone(), entry.clone());
        if let Err(e) = self.publish(&mut state, batch) {
            state.stores.remove(&name); // its replicas are orphans now, dropped at the nodes' next heartbeat
            return Err(e);
        }
        tracing::info!(store = %name, shards = ?entry.shards, "store created");
        Ok(entry)
    }

    /// Creates every replica of a new store; on failure drops the ones made, so nothing is left behind.
    pub(super) async fn create_replicas(&self, entry: &StoreEntry) -> Result<()> {
        self.create_shards(&entry.config, 0, &entry.shards, false).await
    }

    /// Creates the replicas of shards `first..` of a store (`shards[i]`: the node ids of shard `first + i`), as
    /// `filling` ones (a reshard's new shards) or not; on failure drops the ones made, so nothing is left behind.
    /// A leftover of the same name (an earlier store's whose drop never reached the node, an interrupted
    /// reshard's) is dropped first.
    pub(super) async fn create_shards(
        &self,
        config: &StoreConfig,
        first: u32,
        shards: &[Vec<String>],
        filling: bool,
    ) -> Result<()> {
        let pb_config = config_to_pb(config);
        let mut made: Vec<(String, pb::ShardId)> = Vec::new();
        let mut failure = None;
        'all: for (i, replicas) in shards.iter().enumerate() {
            let shard = first + i as u32;
            for node_id in replicas {
                let Some(address) = self.state().address(node_id) else { continue };
                let id = pb::ShardId { store: config.name.clone(), shard };
                let req = pb::CreateShardRequest {
                    shard: Some(id.clone()),
                    config: Some(pb_config.clone()),
                    placement_epoch: 0, // learnt from the writes and the fences that follow
                    filling,
                };
                let client = self.client(&address)?;
                let mut result = client.create_shard(req.clone()).await;
                if matches!(&result, Err(s) if s.code() == tonic::Code::AlreadyExists) {
                    let _ = client.drop_shard(pb::DropShardRequest { shard: Some(id.clone()) }).await;
                    result = client.create_shard(req).await;
                }
                match result {
                    Ok(_) => made.push((address, id)),
                    Err(s) => {
                        failure = Some(ManagerError::Node {
                            context: format!("creating shard {shard} on node {node_id}"),
                            status: s,
                        });
                        break 'all;
                    }
                }
            }
        }
        let Some(failure) = failure else { return Ok(()) };
        for (address, id) in made {
            if let Ok(c) = self.client(&address) {
                let _ = c.drop_shard(pb::DropShardRequest { shard: Some(id) }).await;
            }
        }
        Err(failure)
    }

    /// Removes a store from the catalog, then drops its replicas; a node that is down drops its replicas when it
    /// returns (its heartbeat lists them as orphans).
    pub async fn drop_store(&self, name: &str) -> Result<()> {
        let _admin = self.admin.lock().await;
        let (entry, targets) = {
            let mut state = self.state();
            let Some(entry) = state.stores.remove(name) else {
                return Err(ManagerError::NotFound(format!("store '{name}' does not exist")));
            };
            let mut batch = rocksdb::WriteBatch::default();
            batch.delete(format!("store:{name}"));
            // its transfers end with it (their fills are cancelled; their replicas are dropped below)
            let moving: Vec<u32> = state.transfers.keys().filter(|(s, _)| s == name).map(|(_, shard)| *shard).collect();
            for shard in moving {
                state.transfers.remove(&(name.to_string(), shard));
                batch.delete(super::transfer::transfer_key(name, shard));
                self.cancels.cancel(&(name.to_string(), Some(shard)));
            }
            self.publish(&mut state, batch)?;
            let targets: Vec<(u32, Option<String>)> = entry.replicas().map(|(i, n)| (i, state.address(n))).collect();
            (entry, targets)
        };
        for (shard, address) in targets {
            let Some(address) = address else { continue };
            let req = pb::DropShardRequest { shard: Some(pb::ShardId { store: name.to_string(), shard }) };
            if let Err(s) = self.client(&address)?.drop_shard(req).await
                && s.code() != tonic::Code::NotFound
            {
                tracing::warn!(store = name, shard, %address, error = %s.message(), "drop deferred until the node returns");
            }
        }
        tracing::info!(store = name, shards = entry.shards.len(), "store dropped");
        Ok(())
    }

    /// Whether this manager's catalog was created when it opened (there was none on disk).
    pub fn is_fresh(&self) -> bool {
        self.fresh
    }

    /// Takes into the catalog the stores that nodes hold but the catalog lacks: `found` lists, per node id, the
    /// replicas it holds with their configs. A store is adopted when each of its shards has a replica somewhere
    /// and all replicas agree on the config; its placement is where they were found. Returns the adopted names.
    ///
    /// This is the upgrade path of data an embedded `rvdb serve` wrote before it ran a manager in process: its
    /// node holds the stores and there is no catalog yet. Without it, the first heartbeat would list them all as
    /// orphans. Callers adopt only into a fresh catalog ([`Self::is_fresh`]): in a catalog that exists, a
    /// replica it does not know is one of a dropped store, whose drop had not reached the node.
    pub async fn adopt(&self, found: &[(String, Vec<(pb::ShardId, StoreConfig)>)]) -> Result<Vec<String>> {
        let _admin = self.admin.lock().await;
        let mut stores: BTreeMap<String, (StoreConfig, Vec<Vec<String>>)> = BTreeMap::new();
        let mut conflicting = BTreeSet::new();
        for (node_id, replicas) in found {
            for (id, config) in replicas {
                let (known, shards) = stores
                    .entry(id.store.clone())
                    .or_insert_with(|| (config.clone(), vec![Vec::new(); config.shards as usize]));
                match shards.get_mut(id.shard as usize) {
                    Some(holders) if known == config => holders.push(node_id.clone()),
                    _ => {
                        conflicting.insert(id.store.clone());
                    }
                }
            }
        }
        let mut state = self.state();
        let mut batch = rocksdb::WriteBatch::default();
        let mut adopted = Vec::new();
        for (name, (config, shards)) in stores {
            if state.stores.contains_key(&name) {
                continue;
            }
            if conflicting.contains(&name) || shards.iter().any(Vec::is_empty) {
                tracing::warn!(store = %name, "not adopting a store whose replicas are incomplete or disagree");
                continue;
            }
            let entry = StoreEntry::new(config, shards);
            batch.put(format!("store:{name}"), encode(&entry)?);
            state.stores.insert(name.clone(), entry);
            adopted.push(name);
        }
        if !adopted.is_empty() {
            self.publish(&mut state, batch)?;
            tracing::info!(stores = ?adopted, "adopted the stores found on the nodes into the catalog");
        }
        Ok(adopted)
    }

    pub fn list_stores(&self) -> Vec<StoreConfig> {
        self.state().stores.values().map(|s| s.config.clone()).collect()
    }

    pub fn describe_store(&self, name: &str) -> Result<StoreEntry> {
        self.state()
            .stores
            .get(name)
            .cloned()
            .ok_or_else(|| ManagerError::NotFound(format!("store '{name}' does not exist")))
    }

    /// Index lifecycle: starts a graph rebuild on every replica of `name` held by a node that is not down.
    pub async fn rebuild_index(&self, name: &str) -> Result<u32> {
        let targets: Vec<(u32, String)> = {
            let state = self.state();
            let entry = state
                .stores
                .get(name)
                .ok_or_else(|| ManagerError::NotFound(format!("store '{name}' does not exist")))?;
            entry
                .replicas()
                .filter_map(|(i, n)| {
                    state.nodes.get(n).filter(|e| e.state != NodeState::Down).map(|e| (i, e.address.clone()))
                })
                .collect()
        };
        let mut started = 0;
        for (shard, address) in targets {
            let req = pb::RebuildIndexRequest { shard: Some(pb::ShardId { store: name.to_string(), shard }) };
            if self.client(&address)?.rebuild_index(req).await?.started {
                started += 1;
            }
        }
        Ok(started)
    }
}
