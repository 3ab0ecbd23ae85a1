//! A manager restarted with an empty data directory cannot take over the cluster it lost: the catalog carries a
//! cluster id, nodes keep the id of the cluster they joined and are refused by a manager of another one, and
//! gateways refuse its routing tables (they keep serving the last table of their cluster and report not ready).
//! When the manager's data comes back, everything rejoins by itself.
//!
//! And write fencing: a gateway cut off from the manager, whose table is stale, cannot write around a replica
//! that came back (the replicas know the shard's new placement epoch and refuse its writes).

use std::time::{Duration, Instant};

use rvdb_it::{
    ClusterNode, GatewayProcess, ManagerProcess, Mcp, Proxy, free_port, http, replica_digests, routing_table,
    wait_for_states,
};
use rvdb_proto::v1 as pb;
use serde_json::json;

async fn wait_until<F: std::future::Future<Output = bool>>(what: &str, within: Duration, mut check: impl FnMut() -> F) {
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what} did not happen within {within:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        let target = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).expect("copy");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_manager_that_lost_its_data_cannot_take_the_cluster_over() {
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = format!("127.0.0.1:{}", free_port());
    let data = dir.path().join("manager");
    let mut manager = ManagerProcess::start_at(&data, 200, 2000, &addr);
    let url = manager.url.clone();
    let _nodes: Vec<ClusterNode> =
        (1..=2).map(|i| ClusterNode::start(&dir.path().join(format!("n{i}")), &url, &format!("n{i}"))).collect();
    wait_for_states(&url, &[("n1", pb::NodeState::Up), ("n2", pb::NodeState::Up)], Duration::from_secs(20)).await;
    let cluster = routing_table(&url).await.expect("table").cluster_id;
    assert_eq!(cluster.len(), 32, "a cluster id is made with the catalog: {cluster:?}");
    for i in 1..=2 {
        // the node writes the id once its registration is answered, a moment after the manager counts it up
        let file = dir.path().join(format!("n{i}/cluster_id"));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let kept = loop {
            match std::fs::read_to_string(&file) {
                Ok(kept) if !kept.is_empty() => break kept,
                other => assert!(std::time::Instant::now() < deadline, "node keeps the id: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert_eq!(kept, cluster);
    }
    let gateway = GatewayProcess::start(&url, &dir.path().join("b"));
    let mcp = Mcp::new(&gateway.mcp_url);
    let base = gateway.mcp_url.trim_end_matches("/mcp").to_string();
    mcp.call("create_store", json!({"store": "s", "dimension": 2, "shards": 2, "replication_factor": 2}))
        .await
        .expect("create");
    let points: Vec<_> = (0..40).map(|i| json!({"id": format!("p{i}"), "vector": [i as f32, 1.0]})).collect();
    mcp.call("insert_vectors", json!({"store": "s", "points": points})).await.expect("insert");

    // The manager loses its data directory (kept aside here) and comes back empty on the same address.
    manager.kill();
    let saved = dir.path().join("manager-saved");
    copy_dir(&data, &saved);
    std::fs::remove_dir_all(&data).expect("wipe");
    manager = ManagerProcess::start_at(&data, 200, 2000, &addr);
    let other = routing_table(&url).await.expect("table").cluster_id;
    assert_ne!(other, cluster, "an empty catalog is a new cluster");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let t = routing_table(&url).await.expect("table");
    assert!(t.nodes.is_empty(), "the nodes of the lost cluster were taken in: {:?}", t.nodes);
    // the gateway keeps its cluster's table: reads and writes go on, and it says why it is not ready
    let found = mcp.call("get_vector", json!({"store": "s", "id": "p7"})).await.expect("get");
    assert_eq!(found["found"], true);
    mcp.call("insert_vector", json!({"store": "s", "id": "late", "vector": [0.5, 0.5]})).await.expect("write");
    let (status, _, body) = http("GET", &format!("{base}/readyz"), None, None).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("another cluster"), "{body}");

    // The data comes back: nodes register again by themselves, the gateway takes the tables again.
    manager.kill();
    std::fs::remove_dir_all(&data).expect("wipe");
    copy_dir(&saved, &data);
    let _manager = ManagerProcess::start_at(&data, 200, 2000, &addr);
    // (the restored catalog lists the nodes as they were; a node has rejoined once it registered with this
    // process, which stamps its first heartbeat time)
    wait_until("nodes rejoin the restored manager", Duration::from_secs(20), || async {
        routing_table(&url).await.is_some_and(|t| {
            t.cluster_id == cluster
                && t.nodes
                    .iter()
                    .filter(|n| n.state == pb::NodeState::Up as i32 && n.last_heartbeat_unix_ms > 0)
                    .count()
                    == 2
        })
    })
    .await;
    wait_until("the gateway is ready again", Duration::from_secs(20), || async {
        http("GET", &format!("{base}/readyz"), None, None).await.0 == 200
    })
    .await;
    let stats = mcp.call("describe_store", json!({"store": "s"})).await.expect("describe");
    assert_eq!(stats["points"], 41, "{stats}");
    mcp.call("create_store", json!({"store": "t", "dimension": 2})).await.expect("catalog changes work again");
}

/// A gateway cut off from the index manager keeps an old routing table. Here its table says node n2 is down;
/// n2 comes back meanwhile and catches up. Without write fencing that gateway would write n1 alone, and n2 would
/// miss the write for good (its catch-up is over; only anti-entropy, switched off here, could find it). With it,
/// n1 knows the shard's new placement epoch and refuses the write: the client gets a clear, retryable 503 and
/// nothing is written anywhere. Once the gateway reaches the manager again, the same write goes to both replicas.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_with_a_stale_table_cannot_write_around_a_returned_replica() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = ManagerProcess::start_with_env(
        &dir.path().join("manager"),
        200,
        1500,
        "127.0.0.1:0",
        &[("RVDB_ANTI_ENTROPY_INTERVAL", "0")],
    );
    let url = manager.url.clone();
    let _n1 = ClusterNode::start(&dir.path().join("n1"), &url, "n1");
    let mut n2 = ClusterNode::start(&dir.path().join("n2"), &url, "n2");
    let up = pb::NodeState::Up;
    wait_for_states(&url, &[("n1", up), ("n2", up)], Duration::from_secs(20)).await;
    let fresh = GatewayProcess::start(&url, &dir.path().join("b"));
    let link = Proxy::start(&url).await;
    let stale = GatewayProcess::start(&link.url, &dir.path().join("b"));
    let rest = |g: &GatewayProcess| g.mcp_url.trim_end_matches("/mcp").to_string();
    let (fresh_rest, stale_rest) = (rest(&fresh), rest(&stale));
    let (status, _, body) = http(
        "POST",
        &format!("{fresh_rest}/v1/stores"),
        None,
        Some(json!({"name": "f", "dimension": 2, "shards": 1, "replication_factor": 2})),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let put = |base: String, id: &'static str| async move {
        let points = json!({"points": [{"id": id, "vector": [1.0, 2.0], "metadata": {"by": id}}]});
        http("PUT", &format!("{base}/v1/stores/f/points"), None, Some(points)).await
    };
    let (status, _, body) = put(stale_rest.clone(), "before").await;
    assert_eq!(status, 200, "the stale-to-be gateway writes while it is current: {body}");

    // n2 dies; both gateways learn it is down; then the second one is cut off from the manager.
    n2.kill();
    wait_for_states(&url, &[("n2", pb::NodeState::Down)], Duration::from_secs(10)).await;
    wait_until("the gateway learns that n2 is down", Duration::from_secs(10), || {
        let base = stale_rest.clone();
        async move { put(base, "while-down").await.0 == 200 }
    })
    .await;
    link.cut();
    // n2 comes back and catches up; the cut-off gateway still believes it is down
    n2.restart();
    wait_for_states(&url, &[("n2", up)], Duration::from_secs(20)).await;
    let digests = replica_digests(&url, "f").await;
    assert_eq!(digests[0][0], digests[0][1], "n2 caught up: {digests:?}");

    let started = Instant::now();
    let (status, _, body) = put(stale_rest.clone(), "stale").await;
    assert_eq!(status, 503, "a write routed around the returned replica must be refused: {body}");
    assert!(body.contains("old routing table"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(10), "refused in {:?}", started.elapsed());
    let after = replica_digests(&url, "f").await;
    assert_eq!(after, digests, "the refused write left nothing on any replica");
    let (status, _, body) = http("GET", &format!("{fresh_rest}/v1/stores/f/points/stale"), None, None).await;
    assert_eq!(status, 404, "{body}");

    // The gateway reaches the manager again: the write goes to both replicas.
    link.mend();
    wait_until("the gateway writes again once it has the new table", Duration::from_secs(20), || {
        let base = stale_rest.clone();
        async move { put(base, "stale").await.0 == 200 }
    })
    .await;
    let digests = replica_digests(&url, "f").await;
    assert_eq!(digests[0][0], digests[0][1], "both replicas took the write: {digests:?}");
    assert_eq!(digests[0][0].1, 3, "{digests:?}");
}
