//! A manager restarted with an empty data directory cannot take over the cluster it lost: the catalog carries a
//! cluster id, nodes keep the id of the cluster they joined and are refused by a manager of another one, and
//! gateways refuse its routing tables (they keep serving the last table of their cluster and report not ready).
//! When the manager's data comes back, everything rejoins by itself.

use std::time::{Duration, Instant};

use rvdb_it::{ClusterNode, GatewayProcess, ManagerProcess, Mcp, free_port, http, routing_table, wait_for_states};
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
        let kept = std::fs::read_to_string(dir.path().join(format!("n{i}/cluster_id"))).expect("node keeps the id");
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
