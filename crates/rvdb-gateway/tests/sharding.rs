//! The gateway over a real index manager and three real storage nodes (gRPC servers on loopback, real RocksDB;
//! the manager in process, its nodes registered without heartbeats, so they stay UP): a store with
//! 4 shards × 2 replicas answers exactly like brute force, spreads over the nodes, and keeps answering reads when
//! a node goes away (fail-over to the other replica). A gateway whose clock is behind the stored versions still
//! replaces and deletes points: its clock learns the versions from the nodes' replies.

use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rvdb_core::kernels::reference;
use rvdb_core::{Metric, StoreConfig};
use rvdb_gateway::gateway::{PointInput, SearchParams};
use rvdb_gateway::{Gateway, GatewayError, GatewayOptions};
use rvdb_manager::{LocalManager, Manager, ManagerOptions};
use rvdb_node::service::StorageNodeService;
use rvdb_node::{Node, NodeOptions};
use rvdb_proto::api::NodeDirectory;

/// An index manager that knows `urls` as nodes n0, n1, …
fn manager(dir: &tempfile::TempDir, urls: &[String]) -> Arc<Manager> {
    let m = Manager::open(ManagerOptions::new(dir.path().join("manager"))).expect("open manager");
    for (i, url) in urls.iter().enumerate() {
        m.register_node(&format!("n{i}"), url).expect("register");
    }
    m
}

/// A gateway over `m`, reaching the nodes over gRPC.
async fn gateway(m: &Arc<Manager>, options: GatewayOptions) -> Gateway {
    Gateway::start(LocalManager::new(m.clone()), NodeDirectory::new(), options).await.expect("gateway")
}

struct TestNode {
    url: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    node: Arc<Node>,
    _dir: tempfile::TempDir,
}

async fn start_node() -> TestNode {
    let dir = tempfile::tempdir().expect("temp dir");
    let node = Arc::new(Node::open(&NodeOptions::new(dir.path())).expect("open node"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("local addr"));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let svc = StorageNodeService::new(node.clone()).into_server(64 << 20);
    tokio::spawn(tonic::transport::Server::builder().add_service(svc).serve_with_incoming_shutdown(
        tokio_stream::wrappers::TcpListenerStream::new(listener),
        async {
            let _ = rx.await;
        },
    ));
    TestNode { url, stop: Some(tx), node, _dir: dir }
}

fn brute(points: &[(String, Vec<f32>)], q: &[f32], k: usize) -> Vec<String> {
    let mut all: Vec<(f64, &String)> =
        points.iter().map(|(id, v)| (reference::distance(Metric::Cosine, q, v), id)).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    all.into_iter().take(k).map(|(_, id)| id.clone()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_replicated_store_is_exact_and_survives_a_lost_node() {
    let mut nodes = [start_node().await, start_node().await, start_node().await];
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let m = manager(&dir, &urls);
    let gw = gateway(&m, GatewayOptions::default()).await;

    let mut config = StoreConfig::new("sharded", 16, Metric::Cosine);
    config.shards = 4;
    config.replication_factor = 2;
    gw.create_store(config.clone()).await.unwrap();
    assert!(matches!(gw.create_store(config).await, Err(GatewayError::AlreadyExists(_))));

    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let points: Vec<(String, Vec<f32>)> =
        (0..2000).map(|i| (format!("id-{i}"), (0..16).map(|_| rng.random_range(-1.0f32..1.0)).collect())).collect();
    let inputs: Vec<PointInput> = points
        .iter()
        .map(|(id, v)| PointInput { id: id.clone(), vector: v.clone(), metadata: serde_json::json!({"id": id}) })
        .collect();
    let mut calls = 0;
    let summary = gw
        .upsert("sharded", inputs, |done, total| {
            calls += 1;
            assert!(done <= total);
            true
        })
        .await
        .unwrap();
    assert_eq!(summary.inserted, 2000);
    assert!(calls >= 4, "progress after every shard batch");

    // Every replica holds its whole shard: 2000 points × 2 replicas over 3 nodes, each node a share.
    let per_node: Vec<u64> = nodes.iter().map(|n| n.node.list_shards().iter().map(|s| s.points).sum()).collect();
    assert_eq!(per_node.iter().sum::<u64>(), 4000);
    assert!(per_node.iter().all(|&p| p > 0), "{per_node:?}");
    assert_eq!(gw.stats("sharded").await.unwrap().points, 2000);

    let queries: Vec<Vec<f32>> = (0..20).map(|_| (0..16).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
    for q in &queries {
        let got: Vec<String> = gw
            .search("sharded", q.clone(), &SearchParams { k: 10, with_metadata: true, ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(got, brute(&points, q, 10));
    }
    let got = gw.get("sharded", vec!["id-5".into(), "nope".into(), "id-7".into()], true).await.unwrap();
    assert_eq!(got.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), vec!["id-5", "id-7"]);
    assert_eq!(got[0].vector.as_ref().unwrap(), &points[5].1);
    assert_eq!(gw.delete("sharded", vec!["id-5".into(), "nope".into()]).await.unwrap(), 1);

    // A second gateway learns the same store from the manager.
    let gw2 = gateway(&m, GatewayOptions::default()).await;
    assert_eq!(gw2.stats("sharded").await.unwrap().points, 1999);

    // Lose a node: every shard still has a live replica, so reads are complete.
    let _ = nodes[1].stop.take().unwrap().send(());
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let live: Vec<(String, Vec<f32>)> = points.iter().filter(|(id, _)| id != "id-5").cloned().collect();
    for q in &queries[..5] {
        let got: Vec<String> = gw
            .search("sharded", q.clone(), &SearchParams { k: 10, ..Default::default() })
            .await
            .unwrap()
            .into_iter()
            .map(|h| h.id)
            .collect();
        assert_eq!(got, brute(&live, q, 10));
    }
    // Writes that need both replicas of a shard on the lost node fail clearly instead of half-succeeding silently.
    let many: Vec<PointInput> =
        (0..50).map(|i| PointInput { id: format!("late-{i}"), vector: vec![0.5; 16], ..Default::default() }).collect();
    let err = gw.upsert("sharded", many, |_, _| true).await.unwrap_err();
    let GatewayError::Unavailable(message) = &err else { panic!("expected Unavailable: {err:?}") };
    assert!(message.contains("of store 'sharded' is unavailable") && message.contains(&nodes[1].url), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_whose_clock_is_behind_the_stored_versions_still_replaces_and_deletes() {
    let node = start_node().await;
    let urls = vec![node.url.clone()];
    // ten minutes in the past, and connected before anything was stored: it learns only from write replies
    let behind = GatewayOptions { clock_offset_ms: -600_000, ..GatewayOptions::default() };
    let dir = tempfile::tempdir().unwrap();
    let m = manager(&dir, &urls);
    let late = gateway(&m, behind).await;
    let gw = gateway(&m, GatewayOptions::default()).await;
    let mut config = StoreConfig::new("v", 2, Metric::Euclidean);
    config.shards = 2;
    gw.create_store(config).await.unwrap();
    let point = |id: &str, x: f32| PointInput { id: id.into(), vector: vec![x, x], ..Default::default() };
    late.upsert("v", vec![point("seed", 0.0)], |_, _| true).await.unwrap();
    gw.upsert("v", vec![point("a", 1.0), point("b", 1.0)], |_, _| true).await.unwrap();
    let stored = gw.get("v", vec!["a".into()], false).await.unwrap()[0].version;

    let summary = late.upsert("v", vec![point("a", 2.0)], |_, _| true).await.unwrap();
    assert_eq!((summary.inserted, summary.stale), (1, 0), "the update was dropped as stale");
    let a = gw.get("v", vec!["a".into()], true).await.unwrap().remove(0);
    assert_eq!(a.vector, Some(vec![2.0, 2.0]));
    assert!(a.version > stored);

    // b is rewritten by the gateway whose clock is right: the late one must still be able to delete it
    gw.upsert("v", vec![point("b", 3.0)], |_, _| true).await.unwrap();
    assert_eq!(late.delete("v", vec!["b".into()]).await.unwrap(), 1, "the delete was dropped as stale");
    assert!(gw.get("v", vec!["b".into()], false).await.unwrap().is_empty());
    drop(node);
}
