//! Anti-entropy on real processes: 1 manager (anti-entropy every 300 ms), 3 nodes, a store of 2 shards × 3
//! replicas. Divergence is made behind everyone's back, as a gateway with a stale routing table would make it:
//! writes and deletes sent straight to one replica of a shard. Nobody reports them; the manager's background
//! comparison must find and repair them: every shard's replicas equal (digests) within seconds, the newest
//! version of each point everywhere, and a delete made on one replica only applied on all.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rvdb_it::{
    ClusterNode, GatewayProcess, ManagerProcess, Mcp, replica_digests, routing_table, shard_of, wait_for_states,
};
use rvdb_proto::v1 as pb;
use rvdb_proto::v1::storage_node_client::StorageNodeClient;
use serde_json::json;

const STORE: &str = "ae";

/// (shard, [(node id, address)]) of the store, in placement order (that of `replica_digests`).
async fn placement(manager_url: &str) -> Vec<(u32, Vec<(String, String)>)> {
    let t = routing_table(manager_url).await.expect("routing table");
    let address: BTreeMap<String, String> = t.nodes.iter().map(|n| (n.node_id.clone(), n.address.clone())).collect();
    let route = t.stores.iter().find(|s| s.config.as_ref().is_some_and(|c| c.name == STORE)).expect("route");
    route
        .shards
        .iter()
        .map(|p| (p.shard, p.replica_node_ids.iter().map(|id| (id.clone(), address[id].clone())).collect()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anti_entropy_repairs_divergence_nobody_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = ManagerProcess::start_with_env(
        &dir.path().join("manager"),
        200,
        2000,
        "127.0.0.1:0",
        &[("RVDB_ANTI_ENTROPY_INTERVAL", "300"), ("RVDB_ANTI_ENTROPY_PAUSE", "10")],
    );
    let _nodes: Vec<ClusterNode> = (1..=3)
        .map(|i| ClusterNode::start(&dir.path().join(format!("n{i}")), &manager.url, &format!("n{i}")))
        .collect();
    let up = pb::NodeState::Up;
    wait_for_states(&manager.url, &[("n1", up), ("n2", up), ("n3", up)], Duration::from_secs(20)).await;
    let gateway = GatewayProcess::start(&manager.url, &dir.path().join("b"));
    let mcp = Mcp::new(&gateway.mcp_url);
    mcp.call(
        "create_store",
        json!({"store": STORE, "dimension": 2, "metric": "euclidean", "shards": 2, "replication_factor": 3}),
    )
    .await
    .expect("create_store");
    let points: Vec<_> =
        (0..300).map(|i| json!({"id": format!("p{i}"), "vector": [i as f32, 0.0], "metadata": {"v": 0}})).collect();
    mcp.call("insert_vectors", json!({"store": STORE, "points": points})).await.expect("insert");

    // Behind the manager's back: on one replica of each shard, new points and a newer value of an existing one;
    // on another replica, a delete.
    let layout = placement(&manager.url).await;
    for (i, (shard, replicas)) in layout.iter().enumerate() {
        let ids: Vec<String> = (0..300).map(|i| format!("p{i}")).filter(|id| shard_of(id, 2) == *shard).collect();
        let id = Some(pb::ShardId { store: STORE.into(), shard: *shard });
        let mut first = StorageNodeClient::connect(replicas[0].1.clone()).await.expect("node");
        let mut extra: Vec<pb::Point> = (0..50)
            .map(|i| format!("stale-gw-{i}"))
            .filter(|p| shard_of(p, 2) == *shard)
            .map(|p| pb::Point { id: p, vector: vec![-1.0, -1.0], metadata_json: r#"{"v":1}"#.into(), version: 0 })
            .collect();
        extra.push(pb::Point {
            id: ids[0].clone(),
            vector: vec![0.5, 0.5],
            metadata_json: r#"{"v":2}"#.into(),
            version: 0,
        });
        first
            .upsert(pb::UpsertRequest { shard: id.clone(), points: extra, sync: false, placement_epoch: 0 })
            .await
            .expect("direct upsert");
        let mut second = StorageNodeClient::connect(replicas[1].1.clone()).await.expect("node");
        let deleted = second.delete(pb::DeleteRequest {
            shard: id.clone(),
            ids: vec![ids[1].clone()],
            version: 0,
            sync: false,
            placement_epoch: 0,
        });
        assert_eq!(deleted.await.expect("direct delete").into_inner().deleted, 1);
        let d = &replica_digests(&manager.url, STORE).await[i];
        assert!(d.windows(2).any(|w| w[0] != w[1]), "shard {shard}: no divergence was made");
    }

    // Anti-entropy repairs it: equal digests on every shard within 15 s.
    let started = Instant::now();
    loop {
        let d = replica_digests(&manager.url, STORE).await;
        if d.iter().all(|replicas| replicas.windows(2).all(|w| w[0] == w[1])) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(15), "replicas still differ: {d:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("anti-entropy: divergent replicas equal again after {:.2?}", started.elapsed());

    // And what they agree on is the newest of everything: read each replica directly.
    for (shard, replicas) in &layout {
        let ids: Vec<String> = (0..300).map(|i| format!("p{i}")).filter(|id| shard_of(id, 2) == *shard).collect();
        for (node, address) in replicas {
            let mut c = StorageNodeClient::connect(address.clone()).await.expect("node");
            let got = c
                .get(pb::GetRequest {
                    shard: Some(pb::ShardId { store: STORE.into(), shard: *shard }),
                    ids: vec![ids[0].clone(), ids[1].clone()],
                    with_vector: false,
                    with_metadata: true,
                })
                .await
                .expect("get")
                .into_inner()
                .points;
            assert_eq!(got.len(), 1, "{node}: the delete made on one replica is not everywhere: {got:?}");
            assert_eq!(got[0].id, ids[0]);
            assert_eq!(got[0].metadata_json, r#"{"v":2}"#, "{node}: not the newest value");
        }
    }
    let stats = mcp.call("describe_store", json!({"store": STORE})).await.expect("describe");
    let extra = (0..50).filter(|i| [0u32, 1].contains(&shard_of(&format!("stale-gw-{i}"), 2))).count() as u64;
    assert_eq!(stats["points"].as_u64(), Some(300 + extra - 2), "{stats}");
}
