//! Placement of a new store's shard replicas: distinct nodes per shard, always the least-loaded node first.

use super::*;

/// Places `shards` × `replication` replicas on `nodes` (node id → replicas it holds already): each shard on
/// distinct nodes, each replica on the least-loaded node (ties by id). `None` if there are too few nodes.
pub fn place(shards: u32, replication: u32, load: &BTreeMap<String, usize>) -> Option<Vec<Vec<String>>> {
    if (replication as usize) > load.len() {
        return None;
    }
    let mut load = load.clone();
    let mut out = Vec::with_capacity(shards as usize);
    for _ in 0..shards {
        let mut replicas: Vec<String> = Vec::with_capacity(replication as usize);
        for _ in 0..replication {
            let (id, _) = load
                .iter()
                .filter(|(id, _)| !replicas.contains(id))
                .min_by(|a, b| a.1.cmp(b.1).then_with(|| a.0.cmp(b.0)))?;
            let id = id.clone();
            *load.get_mut(&id)? += 1;
            replicas.push(id);
        }
        out.push(replicas);
    }
    Some(out)
}
