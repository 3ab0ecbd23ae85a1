//! The routing table: which shards a store has and which nodes hold each shard's replicas, and which shard a
//! point belongs to.
//!
//! A point's shard is `jump_consistent_hash(fnv1a_64(id), shards)`: stable across processes, Rust versions and
//! machines (unlike `std`'s hasher), and when a store is resharded from n to n+1 shards only 1/(n+1) of the ids
//! move. The table itself comes from the index manager in a cluster; in the embedded mode the gateway derives it
//! from the nodes it is given ([`crate::Gateway::connect`]).

use std::collections::BTreeMap;

use rvdb_core::StoreConfig;

/// Where one store lives.
#[derive(Debug, Clone, PartialEq)]
pub struct StoreRoute {
    pub config: StoreConfig,
    /// For each shard, the URLs of the nodes that hold a replica (first = preferred for reads).
    pub shards: Vec<Vec<String>>,
}

impl StoreRoute {
    pub fn shard_of(&self, id: &str) -> u32 {
        shard_of(id, self.shards.len() as u32)
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RoutingTable {
    pub version: u64,
    pub stores: BTreeMap<String, StoreRoute>,
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

/// Places `shards` × `replication` replicas on `nodes` round-robin: replica r of shard s goes to node
/// `(s + r) % n`, so replicas of one shard never share a node and shards spread evenly.
pub fn place(shards: u32, replication: u32, nodes: &[String]) -> Vec<Vec<String>> {
    let n = nodes.len();
    (0..shards as usize)
        .map(|s| (0..(replication as usize).min(n)).map(|r| nodes[(s + r) % n].clone()).collect())
        .collect()
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
    fn placement_spreads_replicas() {
        let nodes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let p = place(4, 2, &nodes);
        assert_eq!(p, vec![vec!["a", "b"], vec!["b", "c"], vec!["c", "a"], vec!["a", "b"]]);
        assert_eq!(place(1, 5, &nodes[..1]), vec![vec!["a".to_string()]]);
    }
}
