//! Long operations an operator can watch and cancel: shard transfers (by store and shard) and reshards (by
//! store). Each registers while it runs a cancellation flag ([`Cancels`]) and refreshes its progress in the
//! routing table ([`Manager::refresh_progress`]: the same version, since routing does not change, so gateways
//! keep their table; `rvdb cluster-status`, `GET /v1/cluster` and the console read it).

use super::*;

/// How often a running operation's progress is read from the nodes.
pub(super) const PROGRESS_EVERY: Duration = Duration::from_millis(250);

/// Which operation: a transfer of `(store, Some(shard))`, the reshard of `(store, None)`.
pub(super) type OpKey = (String, Option<u32>);

/// Cancellation flags of the running operations.
#[derive(Debug, Default)]
pub(super) struct Cancels(Mutex<BTreeMap<OpKey, watch::Sender<bool>>>);

impl Cancels {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<OpKey, watch::Sender<bool>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a running operation until the returned registration is dropped (it ended, or can no longer be
    /// cancelled); the receiver turns true when it is cancelled.
    pub(super) fn register(&self, key: OpKey) -> (Registration<'_>, watch::Receiver<bool>) {
        let (tx, rx) = watch::channel(false);
        self.map().insert(key.clone(), tx);
        (Registration { cancels: self, key }, rx)
    }

    /// Cancels the operation; whether one was running.
    pub(super) fn cancel(&self, key: &OpKey) -> bool {
        self.map().get(key).map(|tx| tx.send_replace(true)).is_some()
    }
}

/// A running operation's entry in [`Cancels`], removed when dropped.
pub(super) struct Registration<'a> {
    cancels: &'a Cancels,
    key: OpKey,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.cancels.map().remove(&self.key);
    }
}

/// Resolves when `flag` turns true (never, if its operation ends first and drops the sender).
pub(super) async fn cancelled(mut flag: watch::Receiver<bool>) {
    if flag.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

impl Manager {
    /// Cancels the transfer of `store`'s `shard` (`Some`) or the store's reshard (`None`); it rolls back as after a
    /// failure. Returns what was cancelled. A reshard that has switched can no longer be: its clean-up finishes.
    pub fn cancel(&self, store: &str, shard: Option<u32>) -> Result<String> {
        let key = (store.to_string(), shard);
        if self.cancels.cancel(&key) {
            return Ok(match shard {
                Some(s) => format!("transfer of shard {s} of store '{store}'"),
                None => format!("reshard of store '{store}'"),
            });
        }
        let state = self.state();
        let reshard = state.stores.get(store).and_then(|e| e.resharding.as_ref());
        match (shard, reshard) {
            (None, Some(r)) if r.switched => Err(ManagerError::FailedPrecondition(format!(
                "the reshard of store '{store}' to {} shards has switched already: only its clean-up remains, and it \
                 finishes by itself",
                r.to
            ))),
            (Some(s), _) => {
                Err(ManagerError::NotFound(format!("no transfer of shard {s} of store '{store}' is running")))
            }
            (None, _) => Err(ManagerError::NotFound(format!("no reshard of store '{store}' is running"))),
        }
    }

    /// Sends the routing table again with the progress now in `state` (same version: nothing routes otherwise).
    pub(super) fn refresh_progress(&self, state: &State) {
        self.table_tx.send_replace(Arc::new(state.table()));
    }

    /// Records (points and tombstones) a replica holds, from its node's stats; `None` if it cannot be read.
    pub(super) async fn replica_records(&self, address: &str, store: &str, shard: u32) -> Option<u64> {
        let req = pb::StatsRequest { shard: Some(pb::ShardId { store: store.to_string(), shard }) };
        let stats = self.client(address).ok()?.stats(req).await.ok()?.stats?;
        Some(stats.points + stats.tombstones)
    }
}
