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

pub use rvdb_core::sharding::shard_of;

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
    /// A reshard in progress: `shards` lists the shards of both layouts; reads go by one layout (and ask each
    /// shard for the points it owns under it), writes by both until the switch.
    pub resharding: Option<Resharding>,
}

/// A reshard as a gateway routes by it (the manager's `reshard` module says how it runs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resharding {
    pub from: u32,
    pub to: u32,
    /// Reads and writes go by `to` alone.
    pub switched: bool,
}

/// Where a write of one id goes: its shard under the read layout, and during a reshard's copy, its shard under
/// the new layout when that is another one (the same records, with the same versions, go to both).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WriteTarget {
    pub shard: u32,
    pub also: Option<u32>,
}

impl WriteTarget {
    pub fn shards(self) -> impl Iterator<Item = u32> {
        std::iter::once(self.shard).chain(self.also)
    }
}

/// Routes are equal when their config and placement are (the analyzer is derived from the config).
impl PartialEq for StoreRoute {
    fn eq(&self, other: &Self) -> bool {
        self.config == other.config
            && self.shards == other.shards
            && self.epochs == other.epochs
            && self.resharding == other.resharding
    }
}

impl StoreRoute {
    pub fn new(config: StoreConfig, shards: Vec<Vec<String>>) -> Self {
        Self {
            analyzer: Arc::new(Analyzer::new(&config.text_index)),
            config,
            shards,
            epochs: Vec::new(),
            resharding: None,
        }
    }

    /// The placement epoch of `shard` in this table.
    pub fn epoch(&self, shard: u32) -> u64 {
        self.epochs.get(shard as usize).copied().unwrap_or(0)
    }

    /// How many shards reads go to (shards `0..read_shards()`): all of them, but during a reshard the ones of
    /// the layout it reads by.
    pub fn read_shards(&self) -> u32 {
        match self.resharding {
            Some(r) if r.switched => r.to,
            Some(r) => r.from,
            None => self.shards.len() as u32,
        }
    }

    /// The layout a read asks each shard to keep to (`layout_shards` of the node's read requests): 0 (every point
    /// a shard holds) unless the store is being resharded.
    pub fn layout_shards(&self) -> u32 {
        if self.resharding.is_some() { self.read_shards() } else { 0 }
    }

    /// The shard that serves `id` (under the layout reads go by).
    pub fn shard_of(&self, id: &str) -> u32 {
        shard_of(id, self.read_shards())
    }

    /// Where writes of `id` go.
    pub fn write_target(&self, id: &str) -> WriteTarget {
        let shard = self.shard_of(id);
        let also = match self.resharding {
            Some(r) if !r.switched => Some(shard_of(id, r.to)).filter(|s| *s != shard),
            _ => None,
        };
        WriteTarget { shard, also }
    }

    /// Whether a write routed by `self` is still routed the same way by `newer` (the same layouts).
    pub fn same_layout(&self, newer: &StoreRoute) -> bool {
        self.resharding == newer.resharding && self.shards.len() == newer.shards.len()
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
            let resharding =
                r.resharding.map(|x| Resharding { from: x.from_shards, to: x.to_shards, switched: x.switched });
            let expected = resharding.map_or(config.shards, |x| x.from.max(x.to));
            let Some(shards) = shards.filter(|s| s.len() == expected as usize) else { continue };
            let mut route = StoreRoute::new(config, shards);
            route.epochs = r.shards.iter().map(|p| p.epoch).collect();
            route.resharding = resharding;
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

#[cfg(test)]
mod tests {
    use super::*;

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
                    ..Default::default()
                },
                // a store naming an unknown node is left out rather than routed wrongly
                pb::StoreRoute {
                    config: Some(pb::StoreConfig { name: "t".into(), ..config }),
                    shards: vec![placement(0, &["zz"]), placement(1, &["a"])],
                    ..Default::default()
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

    /// During a reshard reads go by one layout (and ask shards for their own points only), writes by both until
    /// the switch; a table whose shard list fits neither layout is refused.
    #[test]
    fn resharding_routes_reads_by_one_layout_and_writes_by_both() {
        let mut config = StoreConfig::new("s", 2, rvdb_core::Metric::Dot);
        config.shards = 4;
        let table = |resharding: Option<pb::Resharding>, shards: u32| {
            let pbc = rvdb_proto::convert::config_to_pb(&config);
            RoutingTable::from_pb(pb::RoutingTable {
                version: 1,
                nodes: vec![pb::NodeInfo {
                    node_id: "a".into(),
                    address: "http://a:1".into(),
                    state: 1,
                    ..Default::default()
                }],
                stores: vec![pb::StoreRoute {
                    config: Some(pbc),
                    shards: (0..shards)
                        .map(|shard| pb::ShardPlacement { shard, replica_node_ids: vec!["a".into()], epoch: 3 })
                        .collect(),
                    resharding,
                }],
                ..Default::default()
            })
        };
        let growing = |switched| pb::Resharding { from_shards: 4, to_shards: 8, switched, ..Default::default() };
        let copying = table(Some(growing(false)), 8);
        let r = &copying.stores["s"];
        assert_eq!((r.shards.len(), r.read_shards(), r.layout_shards()), (8, 4, 4));
        let (mut both, mut one) = (0, 0);
        for i in 0..2000 {
            let id = format!("id{i}");
            let t = r.write_target(&id);
            assert_eq!(t.shard, shard_of(&id, 4));
            match t.also {
                Some(also) => {
                    assert_eq!(also, shard_of(&id, 8));
                    assert!(also >= 4, "growing moves ids only into new shards");
                    both += 1;
                }
                None => {
                    assert_eq!(shard_of(&id, 8), t.shard);
                    one += 1;
                }
            }
        }
        assert!(both > 800 && one > 800, "about half the ids move from 4 to 8: {both} / {one}");
        let switched = table(Some(growing(true)), 8);
        let r = &switched.stores["s"];
        assert_eq!((r.read_shards(), r.layout_shards()), (8, 8));
        assert!((0..500).all(|i| r.write_target(&format!("id{i}")).also.is_none()), "after the switch: one layout");
        assert!(!copying.stores["s"].same_layout(r));
        assert_eq!(table(None, 4).stores["s"].layout_shards(), 0, "no reshard: shards read everything");
        assert!(table(Some(growing(false)), 5).stores.is_empty(), "a list that fits neither layout is refused");
        assert!(table(None, 8).stores.is_empty());
    }
}
