//! The routing table: which shards a store has and which nodes hold each shard's replicas, and which shard a
//! point belongs to.
//!
//! A point's shard is `jump_consistent_hash(fnv1a_64(id), shards)`: stable across processes, Rust versions and
//! machines (unlike `std`'s hasher), and when a store is resharded from n to n+1 shards only 1/(n+1) of the ids
//! move. The table itself, and where each replica goes, comes from the index manager (in process for `rvdb
//! serve`): the gateway never places anything.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use rvdb_core::StoreConfig;
use rvdb_core::text::Analyzer;
use rvdb_proto::convert::config_from_pb;
use rvdb_proto::v1 as pb;

/// Where one store lives.
#[derive(Debug, Clone)]
pub struct StoreRoute {
    pub config: StoreConfig,
    /// For each shard, the URLs of the nodes that hold a replica (first = preferred for reads).
    pub shards: Vec<Vec<String>>,
    /// The analyzer of `config.text_index`, built once per table rather than per keyword query (a store may
    /// list thousands of stop words).
    pub analyzer: Arc<Analyzer>,
    /// Per shard, its placement epoch (sent with every write, which a replica refuses if it knows a newer one);
    /// empty: 0, not fenced.
    pub epochs: Vec<u64>,
}

/// Routes are equal when their config and placement are (the analyzer is derived from the config).
impl PartialEq for StoreRoute {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config && self.shards == other.shards && self.epochs == other.epochs
    }
}

impl StoreRoute {
    pub fn new(config: StoreConfig, shards: Vec<Vec<String>>) -> Self {
        Self { analyzer: Arc::new(Analyzer::new(&config.text_index)), config, shards, epochs: Vec::new() }
    }

    /// The placement epoch of `shard` in this table.
    pub fn epoch(&self, shard: u32) -> u64 {
        self.epochs.get(shard as usize).copied().unwrap_or(0)
    }

    pub fn shard_of(&self, id: &str) -> u32 {
        shard_of(id, self.shards.len() as u32)
    }
}

/// What the index manager says of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReplicaState {
    #[default]
    Up,
    /// Back after being away: takes writes, serves no reads until its replicas have caught up.
    CatchingUp,
    /// Missed its heartbeats: neither read from nor waited for.
    Down,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutingTable {
    pub version: u64,
    /// The manager's cluster (empty before the first table, or from a manager that predates cluster ids).
    pub cluster_id: String,
    /// A table of another cluster was refused (that cluster's id): see `Gateway::unready_reasons`.
    pub refused_cluster: Option<String>,
    pub stores: BTreeMap<String, StoreRoute>,
    /// Node URL → state (absent = up).
    pub states: HashMap<String, ReplicaState>,
}

impl RoutingTable {
    /// The table the index manager publishes, with node ids resolved to their URLs. Stores whose config does not
    /// parse (a newer manager) or that name unknown nodes are left out rather than routed wrongly.
    pub fn from_pb(t: pb::RoutingTable) -> RoutingTable {
        let urls: HashMap<&str, &str> = t.nodes.iter().map(|n| (n.node_id.as_str(), n.address.as_str())).collect();
        let states = t
            .nodes
            .iter()
            .map(|n| {
                let state = match pb::NodeState::try_from(n.state) {
                    Ok(pb::NodeState::Down) => ReplicaState::Down,
                    Ok(pb::NodeState::CatchingUp) => ReplicaState::CatchingUp,
                    _ => ReplicaState::Up,
                };
                (n.address.clone(), state)
            })
            .collect();
        let mut stores = BTreeMap::new();
        for r in t.stores {
            let Some(Ok(config)) = r.config.map(config_from_pb) else { continue };
            let shards: Option<Vec<Vec<String>>> = r
                .shards
                .iter()
                .map(|p| p.replica_node_ids.iter().map(|id| urls.get(id.as_str()).map(|u| u.to_string())).collect())
                .collect();
            let Some(shards) = shards.filter(|s| s.len() == config.shards as usize) else { continue };
            let mut route = StoreRoute::new(config, shards);
            route.epochs = r.shards.iter().map(|p| p.epoch).collect();
            stores.insert(route.config.name.clone(), route);
        }
        RoutingTable { version: t.version, cluster_id: t.cluster_id, refused_cluster: None, stores, states }
    }

    pub fn state(&self, url: &str) -> ReplicaState {
        self.states.get(url).copied().unwrap_or_default()
    }

    /// Replicas that may serve reads: the up ones, in placement order.
    pub fn readable(&self, replicas: &[String]) -> Vec<String> {
        replicas.iter().filter(|u| self.state(u) == ReplicaState::Up).cloned().collect()
    }

    /// Replicas that take writes: every one that is not down.
    pub fn writable(&self, replicas: &[String]) -> Vec<String> {
        replicas.iter().filter(|u| self.state(u) != ReplicaState::Down).cloned().collect()
    }

    /// Nodes that are up.
    pub fn up_nodes(&self) -> usize {
        self.states.values().filter(|s| **s == ReplicaState::Up).count()
    }
}

/// FNV-1a, 64 bit.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Lamping & Veach's jump consistent hash: a bucket in `0..buckets` for `key`.
pub fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let buckets = buckets.max(1) as i64;
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

pub fn shard_of(id: &str, shards: u32) -> u32 {
    jump_consistent_hash(fnv1a_64(id.as_bytes()), shards)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_is_stable_and_balanced() {
        // fixed values: a change here would silently re-route every stored point
        assert_eq!(fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(jump_consistent_hash(0, 1), 0);
        let mut counts = [0u32; 4];
        for i in 0..40_000 {
            counts[shard_of(&format!("doc-{i}"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (9_000..11_000).contains(c)), "{counts:?}");
    }

    #[test]
    fn growing_shards_moves_few_ids() {
        let moved = (0..10_000).filter(|i| shard_of(&i.to_string(), 4) != shard_of(&i.to_string(), 5)).count();
        assert!((1_500..2_500).contains(&moved), "{moved} of 10000 moved; expected about 1/5");
    }

    #[test]
    fn tables_from_the_manager_steer_reads_and_writes_by_node_state() {
        let node = |id: &str, state: pb::NodeState| pb::NodeInfo {
            node_id: id.into(),
            address: format!("http://{id}:1"),
            state: state as i32,
            last_heartbeat_unix_ms: 0,
        };
        let config = rvdb_proto::convert::config_to_pb(&{
            let mut c = StoreConfig::new("s", 2, rvdb_core::Metric::Dot);
            c.shards = 2;
            c.replication_factor = 2;
            c
        });
        let placement = |shard: u32, ids: &[&str]| pb::ShardPlacement {
            shard,
            replica_node_ids: ids.iter().map(|s| s.to_string()).collect(),
            epoch: 5 + u64::from(shard),
        };
        let t = RoutingTable::from_pb(pb::RoutingTable {
            version: 7,
            nodes: vec![
                node("a", pb::NodeState::Up),
                node("b", pb::NodeState::CatchingUp),
                node("c", pb::NodeState::Down),
            ],
            stores: vec![
                pb::StoreRoute {
                    config: Some(config.clone()),
                    shards: vec![placement(0, &["b", "a"]), placement(1, &["c", "a"])],
                },
                // a store naming an unknown node is left out rather than routed wrongly
                pb::StoreRoute {
                    config: Some(pb::StoreConfig { name: "t".into(), ..config }),
                    shards: vec![placement(0, &["zz"]), placement(1, &["a"])],
                },
            ],
            ..Default::default()
        });
        assert_eq!(t.version, 7);
        assert_eq!(t.stores.keys().collect::<Vec<_>>(), vec!["s"]);
        let s = &t.stores["s"];
        assert_eq!(t.readable(&s.shards[0]), vec!["http://a:1"], "a catching-up replica serves no reads");
        assert_eq!(t.writable(&s.shards[0]), vec!["http://b:1", "http://a:1"], "but takes writes");
        assert_eq!(t.writable(&s.shards[1]), vec!["http://a:1"], "a down replica takes neither");
        assert_eq!(t.up_nodes(), 1);
        assert_eq!((s.epoch(0), s.epoch(1), s.epoch(2)), (5, 6, 0), "each shard's placement epoch, for its writes");
        // by default a majority of the live replicas for RF 1 and 2, of the replication factor from RF 3 on; an
        // explicit consistency is strict
        use crate::gateway::required_acks;
        assert_eq!(required_acks(0, 2, 2), 2);
        assert_eq!(required_acks(0, 2, 1), 1);
        assert_eq!(required_acks(0, 1, 1), 1);
        assert_eq!(required_acks(0, 3, 3), 2);
        assert_eq!(required_acks(0, 3, 1), 2, "RF 3 with one replica live refuses writes");
        assert_eq!(required_acks(0, 5, 3), 3);
        assert_eq!(required_acks(2, 3, 1), 2);
        assert_eq!(required_acks(2, 2, 1), 2);
    }
}
