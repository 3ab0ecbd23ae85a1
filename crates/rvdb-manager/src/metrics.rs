//! The index manager's Prometheus gauges, read at scrape time from the routing table it publishes: nodes by
//! state, stores, the routing table's version, and the state of every shard replica (the state of the node that
//! holds it: up, catching_up or down), so an operator sees under-replicated shards at a glance; and the
//! anti-entropy counters (shards and buckets compared, buckets and records repaired, failures).

use std::sync::{Arc, Weak};

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Opts};

use crate::Manager;

pub struct ManagerCollector {
    manager: Weak<Manager>,
    /// The anti-entropy counters (they count themselves; collected as they are).
    anti_entropy: crate::manager::AntiEntropyStats,
    nodes: GaugeVec,
    stores: GaugeVec,
    version: GaugeVec,
    replicas: GaugeVec,
    live_replicas: GaugeVec,
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

impl ManagerCollector {
    pub fn new(manager: &Arc<Manager>) -> Self {
        Self {
            manager: Arc::downgrade(manager),
            anti_entropy: manager.anti_entropy_stats().clone(),
            nodes: gauge("rvdb_manager_nodes", "Registered storage nodes, by state.", &["state"]),
            stores: gauge("rvdb_manager_stores", "Stores in the catalog.", &[]),
            version: gauge("rvdb_manager_routing_table_version", "Version of the published routing table.", &[]),
            replicas: gauge(
                "rvdb_manager_replica_state",
                "1 for the state of each shard replica (the state of the node holding it).",
                &["store", "shard", "node", "state"],
            ),
            live_replicas: gauge(
                "rvdb_manager_shard_up_replicas",
                "Replicas of a shard on nodes that are up (compare with the store's replication factor).",
                &["store", "shard"],
            ),
        }
    }

    fn all(&self) -> [&GaugeVec; 5] {
        [&self.nodes, &self.stores, &self.version, &self.replicas, &self.live_replicas]
    }
}

impl Collector for ManagerCollector {
    fn desc(&self) -> Vec<&Desc> {
        let counters = self.anti_entropy.counters().into_iter().flat_map(|c| c.desc());
        self.all().into_iter().flat_map(|g| g.desc()).chain(counters).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for g in self.all() {
            g.reset();
        }
        let Some(manager) = self.manager.upgrade() else { return Vec::new() };
        let table = manager.watch().borrow().clone();
        for state in ["up", "down", "catching_up"] {
            self.nodes.with_label_values(&[state]).set(0.0);
        }
        let mut node_state = std::collections::HashMap::new();
        for n in &table.nodes {
            let state = rvdb_proto::convert::node_state_name(n.state);
            self.nodes.with_label_values(&[state]).inc();
            node_state.insert(n.node_id.as_str(), state);
        }
        self.stores.with_label_values::<&str>(&[]).set(table.stores.len() as f64);
        self.version.with_label_values::<&str>(&[]).set(table.version as f64);
        for store in &table.stores {
            let name = store.config.as_ref().map(|c| c.name.as_str()).unwrap_or("");
            for placement in &store.shards {
                let shard = placement.shard.to_string();
                let mut up = 0;
                for node in &placement.replica_node_ids {
                    let state = node_state.get(node.as_str()).copied().unwrap_or("unknown");
                    up += usize::from(state == "up");
                    self.replicas.with_label_values(&[name, shard.as_str(), node.as_str(), state]).set(1.0);
                }
                self.live_replicas.with_label_values(&[name, shard.as_str()]).set(up as f64);
            }
        }
        let counters = self.anti_entropy.counters().into_iter().flat_map(|c| c.collect());
        self.all().into_iter().flat_map(|g| g.collect()).chain(counters).collect()
    }
}

/// Registers the manager's gauges in the default registry (once per process).
pub fn register(manager: &Arc<Manager>) {
    if let Err(e) = prometheus::register(Box::new(ManagerCollector::new(manager))) {
        tracing::debug!(error = %e, "manager metrics already registered in this process");
    }
}

/// Shard transfers by outcome (`started`, `done`, `rolled_back`; in progress = started − done − rolled_back).
static TRANSFERS: std::sync::LazyLock<prometheus::IntCounterVec> = std::sync::LazyLock::new(|| {
    prometheus::register_int_counter_vec!(
        "rvdb_manager_shard_transfers_total",
        "Shard transfers (moves of a replica to another node), by outcome: started, done, rolled_back.",
        &["outcome"]
    )
    .expect("metric registered once")
});

/// Records (points and tombstones) copied by finished shard transfers.
static TRANSFER_RECORDS: std::sync::LazyLock<prometheus::IntCounter> = std::sync::LazyLock::new(|| {
    prometheus::register_int_counter!(
        "rvdb_manager_shard_transfer_records_total",
        "Records (points and tombstones) copied to new replicas by finished shard transfers."
    )
    .expect("metric registered once")
});

pub(crate) fn transfer_started() {
    TRANSFERS.with_label_values(&["started"]).inc();
}

pub(crate) fn transfer_finished(outcome: &str, records: u64) {
    TRANSFERS.with_label_values(&[outcome]).inc();
    TRANSFER_RECORDS.inc_by(records);
}

/// Reshards by outcome (`started`, `done`, `rolled_back`), and the records their copies moved.
static RESHARDS: std::sync::LazyLock<(prometheus::IntCounterVec, prometheus::IntCounter)> =
    std::sync::LazyLock::new(|| {
        let outcomes = prometheus::register_int_counter_vec!(
            "rvdb_manager_reshards_total",
            "Reshards (changes of a store's shard count), by outcome: started, done, rolled_back.",
            &["outcome"]
        );
        let records = prometheus::register_int_counter!(
            "rvdb_manager_reshard_records_total",
            "Records (points and tombstones) copied into the shards that gained ids by finished reshards."
        );
        (outcomes.expect("metric registered once"), records.expect("metric registered once"))
    });

pub(crate) fn reshard_started() {
    RESHARDS.0.with_label_values(&["started"]).inc();
}

pub(crate) fn reshard_finished(outcome: &str, records: u64) {
    RESHARDS.0.with_label_values(&[outcome]).inc();
    RESHARDS.1.inc_by(records);
}
