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
    let GatewayError::ShardUnavailable { store, node, .. } = &err else { panic!("expected Unavailable: {err:?}") };
    assert_eq!(store, "sharded");
    assert!(node.contains(&nodes[1].url), "{err}");
    let message = err.to_string();
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

/// The memory operations over 4 shards × 2 replicas on real nodes: counts and scrolls equal what brute force
/// finds in the data the test stored, a cursor from one gateway continues on another, updates and deletes by ids
/// and by filter change exactly the matching points on every replica (equal digests), vectors untouched, and
/// `score_threshold` keeps exactly the top-k hits within the distance. A gateway whose clock is behind still
/// updates metadata (the stale update is re-stamped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_scroll_update_and_delete_by_filter_are_exact_on_every_replica() {
    use rvdb_gateway::points::{MetadataUpdate, ScrollParams, Selector};
    use serde_json::json;
    let nodes = [start_node().await, start_node().await, start_node().await];
    let urls: Vec<String> = nodes.iter().map(|n| n.url.clone()).collect();
    let dir = tempfile::tempdir().unwrap();
    let m = manager(&dir, &urls);
    let gw = gateway(&m, GatewayOptions::default()).await;
    let mut config = StoreConfig::new("mem", 8, Metric::Cosine);
    config.shards = 4;
    config.replication_factor = 2;
    gw.create_store(config).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let n = 1000;
    let vectors: Vec<Vec<f32>> = (0..n).map(|_| (0..8).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
    let meta = |i: usize| json!({"i": i, "group": i % 10, "tag": if i.is_multiple_of(3) { "a" } else { "b" }});
    let inputs =
        (0..n).map(|i| PointInput { id: format!("p{i:04}"), vector: vectors[i].clone(), metadata: meta(i) }).collect();
    gw.upsert("mem", inputs, |_, _| true).await.unwrap();
    let group = |g: usize| json!({"must": [{"key": "group", "match": {"value": g}}]});

    // count, with and without filters (one indexed, one a range read from every point)
    assert_eq!(gw.count("mem", None).await.unwrap(), n as u64);
    assert_eq!(gw.count("mem", Some(&group(3))).await.unwrap(), 100);
    let range = json!({"must": [{"key": "i", "range": {"gte": 100, "lt": 350}}], "must_not": [{"key": "tag", "match": {"value": "a"}}]});
    let want = (100..350).filter(|i| i % 3 != 0).count() as u64;
    assert_eq!(gw.count("mem", Some(&range)).await.unwrap(), want);

    // scroll: every id once, in order, across shards; a filtered scroll equals the filtered ids; a cursor from
    // this gateway continues on another one
    let gw2 = gateway(&m, GatewayOptions::default()).await;
    let (mut seen, mut cursor, mut pages) = (Vec::new(), None, 0);
    loop {
        let on = if pages % 2 == 0 { &gw } else { &gw2 };
        let params = ScrollParams { limit: 33, cursor: cursor.clone(), with_metadata: true, ..Default::default() };
        let page = on.scroll("mem", &params).await.unwrap();
        pages += 1;
        assert!(page.points.iter().all(|p| p.metadata == meta(p.id[1..].parse().unwrap())));
        seen.extend(page.points.into_iter().map(|p| p.id));
        match page.next_cursor {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let all_ids: Vec<String> = (0..n).map(|i| format!("p{i:04}")).collect();
    assert_eq!(seen, all_ids);
    assert_eq!(pages, n.div_ceil(33));
    let params = ScrollParams { limit: 10_000, filter: Some(range.clone()), ..Default::default() };
    let page = gw.scroll("mem", &params).await.unwrap();
    let want_ids: Vec<String> = (100..350).filter(|i| i % 3 != 0).map(|i| format!("p{i:04}")).collect();
    assert_eq!(page.points.iter().map(|p| p.id.clone()).collect::<Vec<_>>(), want_ids);
    assert!(page.next_cursor.is_none());
    assert!(page.points.iter().all(|p| p.vector.is_none() && p.metadata.is_null()));

    // update by ids and by filter, from a gateway whose clock is ten minutes behind the stored versions
    let late = gateway(&m, GatewayOptions { clock_offset_ms: -600_000, ..GatewayOptions::default() }).await;
    let before = gw.get("mem", vec!["p0015".into()], true).await.unwrap().remove(0);
    let mut set = serde_json::Map::new();
    set.insert("status".into(), json!("done"));
    let update = MetadataUpdate { set, unset: vec!["tag".into()] };
    let ids = Selector::Ids(vec!["p0001".into(), "p0002".into(), "nope".into()]);
    assert_eq!(late.update_metadata("mem", ids, &update, |_, _| true).await.unwrap(), 2);
    assert_eq!(gw.update_metadata("mem", Selector::Filter(group(5)), &update, |_, _| true).await.unwrap(), 100);
    let done = json!({"must": [{"key": "status", "match": {"value": "done"}}]});
    assert_eq!(gw.count("mem", Some(&done)).await.unwrap(), 102);
    let got = gw.get("mem", vec!["p0015".into(), "p0001".into()], true).await.unwrap();
    assert_eq!(got[0].metadata, json!({"i": 15, "group": 5, "status": "done"}));
    assert_eq!(got[1].metadata, json!({"i": 1, "group": 1, "status": "done"}));
    assert_eq!(got[0].vector, before.vector, "the vector is kept");
    assert!(got[0].version > before.version);

    // delete by filter: exactly the matching points, and searches no longer see them
    let mut ticks = Vec::new();
    let deleted = gw
        .delete_points("mem", Selector::Filter(group(7)), |done, total| {
            ticks.push((done, total));
            true
        })
        .await
        .unwrap();
    assert_eq!(deleted, 100);
    assert!(ticks.len() >= 2 && ticks.last() == Some(&(100, 100)), "progress per request: {ticks:?}");
    assert_eq!(gw.delete_points("mem", Selector::Filter(group(7)), |_, _| true).await.unwrap(), 0);
    assert_eq!(gw.count("mem", None).await.unwrap(), n as u64 - 100);
    let q = vectors[17].clone();
    let hits = gw.search("mem", q.clone(), &SearchParams { k: 50, ..Default::default() }).await.unwrap();
    assert!(hits.iter().all(|h| h.id[1..].parse::<usize>().unwrap() % 10 != 7));

    // every shard's two replicas hold the same bytes
    for shard in 0..4 {
        let key = rvdb_node::ShardKey::new("mem", shard);
        let digests: Vec<_> = nodes.iter().filter_map(|nd| nd.node.with_shard(&key, |s| s.digest()).ok()).collect();
        assert_eq!(digests.len(), 2, "shard {shard}");
        assert_eq!(digests[0], digests[1], "shard {shard}");
    }

    // score_threshold: the top-k hits within the distance, no others
    let live: Vec<(String, Vec<f32>)> =
        (0..n).filter(|i| i % 10 != 7).map(|i| (format!("p{i:04}"), vectors[i].clone())).collect();
    let ranked = brute(&live, &q, 20);
    let all = gw.search("mem", q.clone(), &SearchParams { k: 20, ..Default::default() }).await.unwrap();
    assert_eq!(all.iter().map(|h| h.id.clone()).collect::<Vec<_>>(), ranked);
    let cut = (all[5].distance + all[6].distance) / 2.0;
    let near = gw
        .search("mem", q.clone(), &SearchParams { k: 20, score_threshold: Some(cut), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(near.iter().map(|h| h.id.clone()).collect::<Vec<_>>(), ranked[..6].to_vec());
    let nan = SearchParams { k: 5, score_threshold: Some(f32::NAN), ..Default::default() };
    assert!(matches!(gw.search("mem", q, &nan).await, Err(GatewayError::InvalidArgument(_))));
}
