//! Repair of one replica that missed a write another replica acknowledged: the gateway reports it, the replica
//! pulls the peer's changes from that write's version on.

use super::*;

impl Manager {
    /// A replica missed acknowledged writes (a gateway's write to it failed): after a heartbeat interval — time
    /// for a dying node to be marked down, whose return then catches it up anyway — it pulls the changes from
    /// `min_version` on from a live peer. Reports for one replica coalesce while a repair is pending.
    pub fn report_missed_write(self: &Arc<Self>, id: pb::ShardId, address: &str, min_version: u64) -> bool {
        let key = {
            let mut state = self.state();
            let Some(node_id) = state.nodes.iter().find(|(_, n)| n.address == address).map(|(id, _)| id.clone()) else {
                return false;
            };
            if !state.assigns(&id.store, id.shard, &node_id) {
                return false;
            }
            let key = (node_id, id.store.clone(), id.shard);
            if let Some(pending) = state.repairs.get_mut(&key) {
                *pending = (*pending).min(min_version);
                return true;
            }
            state.repairs.insert(key.clone(), min_version);
            key
        };
        tracing::info!(node_id = %key.0, store = %key.1, shard = key.2, min_version, "replica missed a write; repairing");
        let me = self.clone();
        tokio::spawn(async move {
            for attempt in 0..5u32 {
                tokio::time::sleep(me.options.heartbeat_interval * (1 + attempt)).await;
                let since = {
                    let mut state = me.state();
                    if state.stores.get(&key.1).is_some_and(|e| e.resharding.is_some()) {
                        continue; // after the reshard: a peer's unpruned copies must not come back
                    }
                    let Some(since) = state.repairs.remove(&key) else { return };
                    if state.nodes.get(&key.0).is_none_or(|n| n.state != NodeState::Up) {
                        return; // down or catching up: its own catch-up covers these writes
                    }
                    since
                };
                let work = me.replicas_of(&key.0).into_iter().find(|(id, ..)| id.store == key.1 && id.shard == key.2);
                let Some((id, config, address, source)) = work else { return };
                match me.catch_up_replica(&address, &id, &config, source.as_deref(), Some(since)).await {
                    Ok(out) => {
                        tracing::info!(node_id = %key.0, store = %key.1, shard = key.2, applied = out.applied, "replica repaired");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(node_id = %key.0, store = %key.1, shard = key.2, error = %e, "repair failed; retrying");
                        let mut state = me.state();
                        let pending = state.repairs.entry(key.clone()).or_insert(since);
                        *pending = (*pending).min(since);
                    }
                }
            }
        });
        true
    }
}
