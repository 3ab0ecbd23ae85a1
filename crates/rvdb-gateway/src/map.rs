//! What the web console draws besides the API's own answers: a 2-D map of a store and the cluster's state.
//!
//! A map is a uniform random sample of a store's points (each shard samples its share, in proportion to how many
//! of its points match, by reservoir sampling on the node: `ScanRequest.sample`), projected onto the sample's
//! two principal components ([`rvdb_core::projection`]). The projection travels with the map, so the console
//! places a query or a search hit that is not in the sample on the same axes.

use rvdb_core::projection::Projection;
use rvdb_proto::v1 as pb;
use serde_json::Value;
use tokio::task::JoinSet;

use crate::api::{
    ClusterNode, ClusterReplica, ClusterResharding, ClusterShard, ClusterStatus, ClusterStore, ClusterTransfer,
    MAX_MAP_POINTS, MapPoint, MapProjection, MapRequest, StoreMap,
};
use crate::error::{GatewayError, Result};
use crate::gateway::Gateway;
use crate::points::filter_text;

impl Gateway {
    /// A map of `store`: at most `request.limit` points drawn uniformly from those matching the filter.
    pub async fn map(&self, store: &str, request: &MapRequest) -> Result<StoreMap> {
        let route = self.resolve(store).await?;
        if request.limit == 0 || request.limit > MAX_MAP_POINTS {
            return Err(GatewayError::InvalidArgument(format!("limit must be between 1 and {MAX_MAP_POINTS}")));
        }
        let filter_json = filter_text(request.filter.as_ref())?;
        // How many match on each shard, to give each its share of the sample.
        let counts = self.shard_counts(&route, &filter_json).await?;
        let total: u64 = counts.iter().sum();
        let quotas = shares(&counts, u64::from(request.limit));
        let mut tasks = JoinSet::new();
        for (shard, quota) in quotas.iter().enumerate().filter(|(_, q)| **q > 0) {
            let shard = shard as u32;
            let req = pb::ScanRequest {
                shard: Some(pb::ShardId { store: store.to_string(), shard }),
                chunk_size: 1000,
                with_vector: true,
                with_metadata: request.with_metadata,
                filter_json: filter_json.clone(),
                sample: *quota as u32,
                seed: request.seed.wrapping_add(u64::from(shard)),
                layout_shards: route.layout_shards(),
                ..Default::default()
            };
            let replicas = self.read_replicas(&route, shard)?;
            tasks.spawn(rvdb_proto::rpc::in_current_request(crate::gateway::collect_scan(replicas, req)));
        }
        let mut sample = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            sample.extend(joined.map_err(|e| GatewayError::Backend(format!("sample task failed: {e}")))??);
        }
        sample.sort_by(|a, b| a.id.cmp(&b.id));
        let (config, normalize) = (&route.config, route.config.metric.normalizes());
        let dim = config.dimension as usize;
        let rows: Vec<&[f32]> = sample.iter().map(|p| p.vector.as_slice()).collect();
        let projection = Projection::fit(&rows, dim, normalize, request.seed);
        let points = sample
            .iter()
            .filter_map(|p| {
                let [x, y] = projection.project(&p.vector)?;
                let metadata = if request.with_metadata {
                    serde_json::from_str(&p.metadata_json).unwrap_or(Value::Null)
                } else {
                    Value::Null
                };
                Some(MapPoint { id: p.id.clone(), x, y, metadata })
            })
            .collect::<Vec<_>>();
        Ok(StoreMap {
            store: store.to_string(),
            metric: config.metric.to_string(),
            total,
            sampled: points.len() as u64,
            projection: MapProjection {
                method: "pca".into(),
                normalized: projection.normalized,
                mean: projection.mean,
                components: projection.components,
                explained_variance_ratio: projection.explained_variance_ratio,
            },
            points,
        })
    }

    /// The cluster as the index manager publishes it now (asked afresh, not this gateway's cached table).
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let t = self.manager_routing_table().await?;
        let state = |s: i32| rvdb_proto::convert::node_state_name(s).to_string();
        let states: std::collections::HashMap<&str, i32> =
            t.nodes.iter().map(|n| (n.node_id.as_str(), n.state)).collect();
        let nodes = t
            .nodes
            .iter()
            .map(|n| ClusterNode {
                node_id: n.node_id.clone(),
                address: n.address.clone(),
                state: state(n.state),
                last_heartbeat_unix_ms: n.last_heartbeat_unix_ms,
            })
            .collect();
        let mut stores: Vec<ClusterStore> = t
            .stores
            .iter()
            .filter_map(|s| {
                let config = s.config.as_ref()?;
                let shards = s
                    .shards
                    .iter()
                    .map(|p| ClusterShard {
                        shard: p.shard,
                        epoch: p.epoch,
                        replicas: p
                            .replica_node_ids
                            .iter()
                            .map(|id| ClusterReplica {
                                node_id: id.clone(),
                                state: states.get(id.as_str()).map_or_else(|| "unknown".to_string(), |s| state(*s)),
                            })
                            .collect(),
                    })
                    .collect();
                Some(ClusterStore {
                    name: config.name.clone(),
                    replication_factor: config.replication_factor.max(1),
                    shards,
                    resharding: s.resharding.as_ref().map(|r| ClusterResharding {
                        from_shards: r.from_shards,
                        to_shards: r.to_shards,
                        phase: r.phase.clone(),
                        started_unix_ms: r.started_unix_ms,
                        copies_done: r.copies_done,
                        copies_total: r.copies_total,
                        records_copied: r.records_copied,
                    }),
                })
            })
            .collect();
        stores.sort_by(|a, b| a.name.cmp(&b.name));
        let transfers = t
            .transfers
            .iter()
            .map(|x| ClusterTransfer {
                store: x.store.clone(),
                shard: x.shard,
                from_node_id: x.from_node_id.clone(),
                to_node_id: x.to_node_id.clone(),
                phase: x.phase.clone(),
                started_unix_ms: x.started_unix_ms,
                records_copied: x.records_copied,
                records_total: x.records_total,
            })
            .collect();
        Ok(ClusterStatus { version: t.version, cluster_id: t.cluster_id, nodes, stores, transfers })
    }
}

/// Splits `limit` draws among shards in proportion to their matching points (largest remainders get the rest),
/// never more than a shard has: every point has the same chance to be drawn.
fn shares(counts: &[u64], limit: u64) -> Vec<u64> {
    let total: u64 = counts.iter().sum();
    if total <= limit {
        return counts.to_vec();
    }
    let exact: Vec<f64> = counts.iter().map(|c| *c as f64 * limit as f64 / total as f64).collect();
    let mut quotas: Vec<u64> = exact.iter().map(|e| e.floor() as u64).collect();
    let mut order: Vec<usize> = (0..counts.len()).collect();
    order.sort_by(|a, b| (exact[*b] - exact[*b].floor()).total_cmp(&(exact[*a] - exact[*a].floor())));
    let mut left = limit - quotas.iter().sum::<u64>();
    for i in order {
        if left == 0 {
            break;
        }
        if quotas[i] < counts[i] {
            quotas[i] += 1;
            left -= 1;
        }
    }
    quotas
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_proportional_exact_in_sum_and_bounded() {
        assert_eq!(shares(&[10, 20], 100), vec![10, 20], "fewer points than asked: all");
        assert_eq!(shares(&[100, 300], 100), vec![25, 75]);
        let q = shares(&[1, 1, 1], 2);
        assert_eq!(q.iter().sum::<u64>(), 2);
        assert!(q.iter().all(|v| *v <= 1));
        let q = shares(&[0, 5000, 7, 123_456], 20_000);
        assert_eq!(q.iter().sum::<u64>(), 20_000);
        assert_eq!(q[0], 0);
        assert!(q.iter().zip([0u64, 5000, 7, 123_456]).all(|(q, c)| *q <= c));
    }
}
