//! The storage node's Prometheus metrics, in the process's default registry (see `rvdb-gateway`'s `metrics` for
//! the `/metrics` encoding).
//!
//! - Counters moved by the node's own work, per store: points written (upserts applied, catch-up excluded),
//!   points deleted, searches served; graph builds by result and their duration.
//! - Gauges read at scrape time by [`NodeCollector`] from the shards themselves, so they are never stale and cost
//!   nothing between scrapes: points, tombstones, index memory, bytes on disk, index status and build progress
//!   per shard replica, and RocksDB's own figures per column family (memtable bytes, SST bytes, whether a
//!   compaction is pending and the bytes it would rewrite).

use std::sync::{Arc, LazyLock, Weak};
use std::time::Duration;

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{GaugeVec, Histogram, IntCounterVec, Opts, register_histogram, register_int_counter_vec};

use crate::Node;

static POINTS_WRITTEN: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "rvdb_node_points_written_total",
        "Points written (upserts applied), by store.",
        &["store"]
    )
    .expect("metric registered once")
});

static POINTS_DELETED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("rvdb_node_points_deleted_total", "Points deleted, by store.", &["store"])
        .expect("metric registered once")
});

static SEARCHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "rvdb_node_searches_total",
        "Searches served (one per shard replica asked), by store.",
        &["store"]
    )
    .expect("metric registered once")
});

static BUILDS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!("rvdb_node_index_builds_total", "HNSW graph builds finished, by result.", &["result"])
        .expect("metric registered once")
});

static BUILD_SECONDS: LazyLock<Histogram> = LazyLock::new(|| {
    register_histogram!(
        "rvdb_node_index_build_duration_seconds",
        "Duration of HNSW graph builds.",
        vec![0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0]
    )
    .expect("metric registered once")
});

pub fn points_written(store: &str, n: u64) {
    POINTS_WRITTEN.with_label_values(&[store]).inc_by(n);
}

pub fn points_deleted(store: &str, n: u64) {
    POINTS_DELETED.with_label_values(&[store]).inc_by(n);
}

pub fn search_served(store: &str) {
    SEARCHES.with_label_values(&[store]).inc();
}

pub(crate) fn graph_build_finished(ok: bool, elapsed: Duration) {
    BUILDS.with_label_values(&[if ok { "ok" } else { "error" }]).inc();
    BUILD_SECONDS.observe(elapsed.as_secs_f64());
}

/// Gauges of every shard replica on a node, read when Prometheus scrapes.
pub struct NodeCollector {
    node: Weak<Node>,
    points: GaugeVec,
    tombstones: GaugeVec,
    index_memory: GaugeVec,
    disk: GaugeVec,
    status: GaugeVec,
    build_done: GaugeVec,
    build_total: GaugeVec,
    memtable: GaugeVec,
    sst: GaugeVec,
    compaction_pending: GaugeVec,
    compaction_bytes: GaugeVec,
    shards: GaugeVec,
    column_families: GaugeVec,
    disk_free: GaugeVec,
}

fn gauge(name: &str, help: &str, labels: &[&str]) -> GaugeVec {
    GaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition")
}

impl NodeCollector {
    pub fn new(node: &Arc<Node>) -> Self {
        const SHARD: &[&str] = &["store", "shard"];
        Self {
            node: Arc::downgrade(node),
            points: gauge("rvdb_node_store_points", "Live points per shard replica.", SHARD),
            tombstones: gauge("rvdb_node_store_tombstones", "Delete tombstones kept per shard replica.", SHARD),
            index_memory: gauge(
                "rvdb_node_store_index_memory_bytes",
                "Memory of the in-memory index (vectors, graph, ids, versions) per shard replica.",
                SHARD,
            ),
            disk: gauge(
                "rvdb_node_store_disk_bytes",
                "Bytes in RocksDB (SST files + memtables) per shard replica.",
                SHARD,
            ),
            status: gauge(
                "rvdb_node_index_status",
                "1 for the index state of a shard replica (none = flat, building, ready).",
                &["store", "shard", "status"],
            ),
            build_done: gauge(
                "rvdb_node_index_build_applied_points",
                "Writes the running graph build has applied (absent when none runs).",
                SHARD,
            ),
            build_total: gauge(
                "rvdb_node_index_build_queued_points",
                "Writes handed to the running graph build so far (absent when none runs).",
                SHARD,
            ),
            memtable: gauge("rvdb_node_rocksdb_memtable_bytes", "RocksDB memtable bytes per column family.", SHARD),
            sst: gauge("rvdb_node_rocksdb_sst_bytes", "RocksDB SST file bytes per column family.", SHARD),
            compaction_pending: gauge(
                "rvdb_node_rocksdb_compaction_pending",
                "1 when RocksDB has a compaction pending for the column family.",
                SHARD,
            ),
            compaction_bytes: gauge(
                "rvdb_node_rocksdb_pending_compaction_bytes",
                "Bytes RocksDB estimates its pending compactions will rewrite.",
                SHARD,
            ),
            shards: gauge("rvdb_node_shards", "Shard replicas held by this node.", &[]),
            column_families: gauge(
                "rvdb_node_column_family_slots",
                "Pooled RocksDB column families for shard replicas, by state (used, free).",
                &["state"],
            ),
            disk_free: gauge(
                "rvdb_node_disk_free_bytes",
                "Free bytes on the data directory's file system (writes are refused below the reserve).",
                &[],
            ),
        }
    }

    fn all(&self) -> [&GaugeVec; 14] {
        [
            &self.points,
            &self.tombstones,
            &self.index_memory,
            &self.disk,
            &self.status,
            &self.build_done,
            &self.build_total,
            &self.memtable,
            &self.sst,
            &self.compaction_pending,
            &self.compaction_bytes,
            &self.shards,
            &self.column_families,
            &self.disk_free,
        ]
    }
}

impl Collector for NodeCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.all().into_iter().flat_map(|g| g.desc()).collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        for g in self.all() {
            g.reset();
        }
        let Some(node) = self.node.upgrade() else { return Vec::new() };
        let shards = node.shards();
        self.shards.with_label_values::<&str>(&[]).set(shards.len() as f64);
        let (total, free) = node.column_family_slots();
        self.column_families.with_label_values(&["used"]).set(total.saturating_sub(free) as f64);
        self.column_families.with_label_values(&["free"]).set(free as f64);
        if let Some(bytes) = node.disk_free_bytes() {
            self.disk_free.with_label_values::<&str>(&[]).set(bytes as f64);
        }
        for shard in shards {
            let Ok(stats) = shard.stats() else { continue };
            let number = stats.key.shard.to_string();
            let labels = [stats.key.store.as_str(), number.as_str()];
            self.points.with_label_values(&labels).set(stats.points as f64);
            self.tombstones.with_label_values(&labels).set(stats.tombstones as f64);
            self.index_memory.with_label_values(&labels).set(stats.index_memory_bytes as f64);
            self.disk.with_label_values(&labels).set(stats.disk_bytes as f64);
            self.status.with_label_values(&[labels[0], labels[1], stats.index_status.as_str()]).set(1.0);
            if let Some((done, total)) = shard.build_progress() {
                self.build_done.with_label_values(&labels).set(done as f64);
                self.build_total.with_label_values(&labels).set(total as f64);
            }
            let prop = |name| shard.rocksdb_property(name) as f64;
            self.memtable.with_label_values(&labels).set(prop("rocksdb.cur-size-all-mem-tables"));
            self.sst.with_label_values(&labels).set(prop("rocksdb.total-sst-files-size"));
            self.compaction_pending.with_label_values(&labels).set(prop("rocksdb.compaction-pending"));
            self.compaction_bytes.with_label_values(&labels).set(prop("rocksdb.estimate-pending-compaction-bytes"));
        }
        self.all().into_iter().flat_map(|g| g.collect()).collect()
    }
}

/// Registers the gauges of `node` in the default registry (once per process; a second node is ignored).
pub fn register(node: &Arc<Node>) {
    if let Err(e) = prometheus::register(Box::new(NodeCollector::new(node))) {
        tracing::debug!(error = %e, "node metrics already registered in this process");
    }
}
