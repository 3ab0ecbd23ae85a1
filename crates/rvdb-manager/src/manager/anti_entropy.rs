//! Anti-entropy: the background comparison of every shard's replicas, and the repair of what differs.
//!
//! Catch-up and missed-write repairs fix the divergences the manager hears about. A divergence nobody reports
//! (a gateway with a stale routing table that wrote to only some replicas after a catch-up's last pass, a repair
//! that failed five times, a bug) would otherwise stay until a restart. So, every `anti_entropy_interval`, the
//! manager walks every shard with two or more replicas on UP nodes, one shard at a time with a pause between
//! shards (the rate limit), and:
//!
//! 1. asks each replica for its bucket digests (`BucketDigests`: the id space cut into `ANTI_ENTROPY_BUCKETS` by a
//!    hash of the id; per bucket the record count and an order-independent sum of record hashes);
//! 2. for the buckets where a replica differs from the first, has the first replica pull those buckets from that
//!    replica, then every replica pull the union of the differing buckets from the first (`CatchUp` with a bucket
//!    filter and `since = 0`). Records carry their versions and are applied by last-write-wins (tombstones
//!    included, equal versions decided by the record bytes), so after these two steps every replica holds, for
//!    every id of those buckets, the newest record any of them had: the replicas converge, whatever the order.
//!
//! Writes that are in flight while digests are read make some buckets look different; repairing them is harmless
//! (applying a record twice changes nothing) and costs only the transfer of those buckets.

use prometheus::IntCounter;

use super::*;

/// Buckets a replica is cut into: 1,024 buckets of a million-point shard hold about 1,000 records each, so one
/// differing record costs the transfer of about 0.1% of the shard.
pub const ANTI_ENTROPY_BUCKETS: u32 = 1024;

/// What anti-entropy has done since the manager started: Prometheus counters, exported by
/// [`crate::metrics`].
#[derive(Debug, Clone)]
pub struct AntiEntropyStats {
    /// Shard comparisons (all replicas of one shard).
    pub shards_compared: IntCounter,
    /// Buckets compared (per replica pair).
    pub ranges_compared: IntCounter,
    /// Buckets that differed and were repaired.
    pub ranges_repaired: IntCounter,
    /// Records a repair applied (newer than what the replica held).
    pub records_repaired: IntCounter,
    /// Comparisons or repairs that failed (retried on the next round).
    pub failures: IntCounter,
}

impl Default for AntiEntropyStats {
    fn default() -> Self {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric definition");
        Self {
            shards_compared: counter(
                "rvdb_manager_anti_entropy_shards_compared_total",
                "Anti-entropy comparisons of all the replicas of a shard.",
            ),
            ranges_compared: counter(
                "rvdb_manager_anti_entropy_ranges_compared_total",
                "Buckets of the id space compared between two replicas.",
            ),
            ranges_repaired: counter(
                "rvdb_manager_anti_entropy_ranges_repaired_total",
                "Buckets that differed between replicas and were repaired.",
            ),
            records_repaired: counter(
                "rvdb_manager_anti_entropy_records_repaired_total",
                "Records a repair applied to a replica (newer than what it held).",
            ),
            failures: counter(
                "rvdb_manager_anti_entropy_failures_total",
                "Anti-entropy comparisons or repairs that failed (retried in the next round).",
            ),
        }
    }
}

impl AntiEntropyStats {
    pub fn counters(&self) -> [&IntCounter; 5] {
        [&self.shards_compared, &self.ranges_compared, &self.ranges_repaired, &self.records_repaired, &self.failures]
    }
}

impl Manager {
    /// The anti-entropy loop: runs until aborted; does nothing when `anti_entropy_interval` is zero.
    pub async fn run_anti_entropy(self: Arc<Self>) {
        let interval = self.options.anti_entropy_interval;
        if interval.is_zero() {
            return;
        }
        loop {
            tokio::time::sleep(interval).await;
            for (id, replicas) in self.comparable_shards() {
                if let Err(e) = self.compare_and_repair(&id, &replicas).await {
                    self.anti_entropy.failures.inc();
                    tracing::warn!(store = %id.store, shard = id.shard, error = %e, "anti-entropy round failed");
                }
                tokio::time::sleep(self.options.anti_entropy_pause).await;
            }
        }
    }

    /// Every shard with two or more replicas on UP nodes: (shard, addresses of those replicas).
    fn comparable_shards(&self) -> Vec<(pb::ShardId, Vec<String>)> {
        let state = self.state();
        let mut out = Vec::new();
        for (name, entry) in &state.stores {
            // a store being resharded has copies that some replicas have pruned and others not yet: comparing them
            // would copy them back
            if state.creating.contains(name) || entry.resharding.is_some() {
                continue;
            }
            for (shard, replicas) in entry.shards.iter().enumerate() {
                let up: Vec<String> = replicas
                    .iter()
                    .filter_map(|n| state.nodes.get(n).filter(|e| e.state == NodeState::Up).map(|e| e.address.clone()))
                    .collect();
                if up.len() >= 2 {
                    out.push((pb::ShardId { store: name.clone(), shard: shard as u32 }, up));
                }
            }
        }
        out
    }

    /// Compares the replicas of one shard and repairs the buckets that differ; returns how many did.
    pub async fn compare_and_repair(&self, id: &pb::ShardId, replicas: &[String]) -> Result<usize> {
        if self.state().stores.get(&id.store).is_some_and(|e| e.resharding.is_some()) {
            return Ok(0); // resharded since the round began (see `comparable_shards`)
        }
        let mut digests = Vec::with_capacity(replicas.len());
        for address in replicas {
            let req = pb::BucketDigestsRequest { shard: Some(id.clone()), buckets: ANTI_ENTROPY_BUCKETS };
            let d = self.client(address)?.bucket_digests(req).await?;
            if d.sums.len() != ANTI_ENTROPY_BUCKETS as usize || d.records.len() != d.sums.len() {
                return Err(ManagerError::Aborted(format!("node {address} sent a malformed bucket digest")));
            }
            digests.push(d);
        }
        self.anti_entropy.shards_compared.inc();
        self.anti_entropy.ranges_compared.inc_by(ANTI_ENTROPY_BUCKETS as u64 * (replicas.len() as u64 - 1));
        let first = &digests[0];
        let differing: Vec<Vec<u32>> = digests
            .iter()
            .map(|d| {
                (0..ANTI_ENTROPY_BUCKETS)
                    .filter(|&b| {
                        (d.sums[b as usize], d.records[b as usize])
                            != (first.sums[b as usize], first.records[b as usize])
                    })
                    .collect()
            })
            .collect();
        let mut union: Vec<u32> = differing.iter().flatten().copied().collect();
        union.sort_unstable();
        union.dedup();
        if union.is_empty() {
            return Ok(0);
        }
        tracing::info!(store = %id.store, shard = id.shard, buckets = union.len(), "replicas differ; repairing");
        let pull = |from: &str, buckets: Vec<u32>| pb::CatchUpRequest {
            shard: Some(id.clone()),
            source_address: from.to_string(),
            since_version: 0,
            buckets: ANTI_ENTROPY_BUCKETS,
            only_buckets: buckets,
            ..Default::default()
        };
        // 1. the first replica takes what each other one has newer
        let mut applied = 0;
        for (i, buckets) in differing.iter().enumerate().skip(1) {
            if !buckets.is_empty() {
                let req = pull(&replicas[i], buckets.clone());
                let out = self.client_with(&replicas[0], None)?.catch_up(req).await?;
                applied += out.applied;
            }
        }
        // 2. every other replica takes the union from the first, which now has the newest of all
        for address in &replicas[1..] {
            let out = self.client_with(address, None)?.catch_up(pull(&replicas[0], union.clone())).await?;
            applied += out.applied;
        }
        self.anti_entropy.ranges_repaired.inc_by(union.len() as u64);
        self.anti_entropy.records_repaired.inc_by(applied);
        tracing::info!(store = %id.store, shard = id.shard, buckets = union.len(), applied, "replicas repaired");
        Ok(union.len())
    }

    /// What anti-entropy has done so far.
    pub fn anti_entropy_stats(&self) -> &AntiEntropyStats {
        &self.anti_entropy
    }
}
