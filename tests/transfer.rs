//! Shard transfer on real processes: 1 manager, 3 nodes, a gateway; a store of 2 shards × 2 replicas and one of
//! 2 shards × 1 replica, 20,000 points each. While a writer adds points through REST (retrying a 503, as documented) and a reader
//! searches without pause, one replica of each store moves to another node (`MoveShard`, what `rvdb move-shard`
//! sends). Afterwards: the table routes to the new node in the old one's place, the old node no longer holds the
//! replica, every shard's replicas are equal (digests), every acknowledged write is there with its value, the
//! counts are exact, and no read failed. Bad moves are refused with clear errors and change nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rvdb_it::{ClusterNode, GatewayProcess, ManagerProcess, routing_table, wait_for_states};
use rvdb_proto::v1 as pb;
use rvdb_proto::v1::storage_node_client::StorageNodeClient;
use serde_json::{Value, json};

/// Points per store before the moves and their dimension (`RVDB_TRANSFER_POINTS`, `RVDB_TRANSFER_DIM`: larger
/// for a throughput measurement).
fn scale() -> (u64, usize) {
    let env = |k: &str, d: u64| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    (env("RVDB_TRANSFER_POINTS", 20_000), env("RVDB_TRANSFER_DIM", 8) as usize)
}

fn vector(i: u64) -> Vec<f32> {
    (0..scale().1).map(|d| (((i * 31 + d as u64 * 7) % 101) as f32 / 50.0) - 1.0 + 0.01).collect()
}

fn replicas(t: &pb::RoutingTable, store: &str, shard: u32) -> Vec<String> {
    let route = t.stores.iter().find(|s| s.config.as_ref().is_some_and(|c| c.name == store)).expect("route");
    route.shards[shard as usize].replica_node_ids.clone()
}

async fn holds(address: &str, store: &str, shard: u32) -> bool {
    let mut c = StorageNodeClient::connect(address.to_string()).await.expect("node");
    let list = c.list_shards(pb::ListShardsRequest {}).await.expect("list").into_inner().shards;
    list.iter().any(|s| s.shard.as_ref().is_some_and(|id| id.store == store && id.shard == shard))
}

/// Waits (15 s at most) until the node at `address` holds none of `shards` of `store`.
async fn gives_up(address: &str, store: &str, shards: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for shard in shards {
        while holds(address, store, *shard).await {
            assert!(Instant::now() < deadline, "{address} still holds {store}/{shard}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Waits (15 s at most) until every shard's replicas of `store` have equal digests.
async fn converges(manager_url: &str, store: &str) {
    rvdb_it::replicas_converge(manager_url, store, Duration::from_secs(15)).await;
}

/// A manager (with `env`), `nodes` storage nodes n1.. up, and a gateway; its REST base URL.
async fn small_cluster(
    dir: &std::path::Path,
    nodes: usize,
    env: &[(&str, &str)],
) -> (ManagerProcess, Vec<ClusterNode>, GatewayProcess, String) {
    let manager = ManagerProcess::start_with_env(&dir.join("manager"), 200, 2000, "127.0.0.1:0", env);
    let ids: Vec<String> = (1..=nodes).map(|i| format!("n{i}")).collect();
    let started: Vec<ClusterNode> = ids.iter().map(|id| ClusterNode::start(&dir.join(id), &manager.url, id)).collect();
    let up: Vec<(&str, pb::NodeState)> = ids.iter().map(|id| (id.as_str(), pb::NodeState::Up)).collect();
    wait_for_states(&manager.url, &up, Duration::from_secs(20)).await;
    let gateway = GatewayProcess::start(&manager.url, &dir.join("b"));
    let rest = gateway.mcp_url.trim_end_matches("/mcp").to_string();
    (manager, started, gateway, rest)
}

/// How many points `store` holds, counted through REST.
async fn count_of(rest: &str, store: &str) -> Option<u64> {
    let url = format!("{rest}/v1/stores/{store}/points/count");
    let (status, _, body) = rvdb_it::http("POST", &url, None, Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body).expect("JSON")["count"].as_u64()
}

/// Creates `store` (`shards` × 1 replica) and writes points p0..p`n` to it through REST.
async fn store_with(rest: &str, store: &str, shards: u32, n: u64) {
    let create = json!({"name": store, "dimension": scale().1, "metric": "euclidean", "shards": shards, "replication_factor": 1});
    let (status, _, body) = rvdb_it::http("POST", &format!("{rest}/v1/stores"), None, Some(create)).await;
    assert_eq!(status, 201, "{body}");
    for start in (0..n).step_by(5000) {
        let points: Vec<Value> =
            (start..(start + 5000).min(n)).map(|i| json!({"id": format!("p{i}"), "vector": vector(i)})).collect();
        let url = format!("{rest}/v1/stores/{store}/points");
        let (status, _, body) = rvdb_it::http("PUT", &url, None, Some(json!({"points": points}))).await;
        assert_eq!(status, 200, "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replicas_move_under_reads_and_writes_without_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manager, _nodes, _gateway, rest) = small_cluster(dir.path(), 3, &[]).await;
    for (name, rf) in [("two", 2), ("one", 1)] {
        let create =
            json!({"name": name, "dimension": scale().1, "metric": "euclidean", "shards": 2, "replication_factor": rf});
        let (status, _, body) = rvdb_it::http("POST", &format!("{rest}/v1/stores"), None, Some(create)).await;
        assert_eq!(status, 201, "{body}");
        for start in (0..scale().0).step_by(2000) {
            let points: Vec<Value> = (start..(start + 2000).min(scale().0))
                .map(|i| json!({"id": format!("p{i}"), "vector": vector(i), "metadata": {"v": i}}))
                .collect();
            let url = format!("{rest}/v1/stores/{name}/points");
            let (status, _, body) = rvdb_it::http("PUT", &url, None, Some(json!({"points": points}))).await;
            assert_eq!(status, 200, "{body}");
        }
    }

    // A writer (new ids, each written once; a 503 is retried as the docs advise) and a reader, both unpaused.
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<std::sync::Mutex<BTreeMap<(String, String), u64>>> = Arc::default();
    let (failed_writes, failed_reads, reads) =
        (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let writer = {
        let (stop, acked, failed, rest) = (stop.clone(), acked.clone(), failed_writes.clone(), rest.clone());
        tokio::spawn(async move {
            let mut i = 100_000u64;
            while !stop.load(Ordering::SeqCst) {
                let store = if i.is_multiple_of(2) { "two" } else { "one" };
                let (id, body) = (
                    format!("w{i}"),
                    json!({"points": [{"id": format!("w{i}"), "vector": vector(i), "metadata": {"v": i}}]}),
                );
                let url = format!("{rest}/v1/stores/{store}/points");
                let mut ok = false;
                for _ in 0..40 {
                    match rvdb_it::try_http("PUT", &url, Some(&body), Duration::from_secs(10)).await {
                        Ok((200, _)) => {
                            ok = true;
                            break;
                        }
                        Ok((503, _)) | Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                        Ok((status, answer)) => panic!("write {id}: {status} {answer}"),
                    }
                }
                if ok {
                    acked.lock().unwrap_or_else(|p| p.into_inner()).insert((store.to_string(), id), i);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
            }
        })
    };
    let reader = {
        let (stop, failed, reads, rest) = (stop.clone(), failed_reads.clone(), reads.clone(), rest.clone());
        tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let store = if i.is_multiple_of(2) { "two" } else { "one" };
                let url = format!("{rest}/v1/stores/{store}/search");
                let body = json!({"vector": vector(i % 1000), "k": 3});
                match rvdb_it::try_http("POST", &url, Some(&body), Duration::from_secs(10)).await {
                    Ok((200, answer)) => {
                        let hits: Value = serde_json::from_str(&answer).expect("JSON");
                        assert_eq!(hits["results"].as_array().map(Vec::len), Some(3), "{answer}");
                    }
                    other => {
                        eprintln!("read failed: {other:?}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                reads.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;

    // Bad moves are refused and change nothing.
    let mut m = manager.client().await;
    let before = routing_table(&manager.url).await.expect("table");
    let two0 = replicas(&before, "two", 0);
    let absent = ["n1", "n2", "n3"].into_iter().find(|n| !two0.iter().any(|r| r == n)).expect("a node without it");
    let bad = |store: &str, shard: u32, from: &str, to: &str| pb::MoveShardRequest {
        store: store.into(),
        shard,
        from_node_id: from.into(),
        to_node_id: to.into(),
    };
    for (req, code, needle) in [
        (bad("nope", 0, "n1", "n2"), tonic::Code::NotFound, "does not exist"),
        (bad("two", 7, &two0[0], absent), tonic::Code::InvalidArgument, "no shard 7"),
        (bad("two", 0, absent, &two0[0]), tonic::Code::InvalidArgument, "holds no replica"),
        (bad("two", 0, &two0[0], &two0[1]), tonic::Code::AlreadyExists, "already holds"),
        (bad("two", 0, &two0[0], "n9"), tonic::Code::NotFound, "not registered"),
    ] {
        let err = m.move_shard(req).await.expect_err("refused");
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(needle), "{needle}: {}", err.message());
    }
    assert_eq!(routing_table(&manager.url).await.expect("table").stores, before.stores, "refusals change nothing");

    // Move one replica of each store while the writer and the reader run.
    let mut moved = Vec::new();
    for store in ["two", "one"] {
        let table = routing_table(&manager.url).await.expect("table");
        let old = replicas(&table, store, 0);
        let to = ["n1", "n2", "n3"].into_iter().find(|n| !old.iter().any(|r| r == n)).expect("a free node");
        let from = old[0].clone();
        let started = Instant::now();
        let writes_before = acked.lock().unwrap_or_else(|p| p.into_inner()).len();
        let r = m.move_shard(bad(store, 0, &from, to)).await.expect("move").into_inner();
        let elapsed = started.elapsed();
        let during = acked.lock().unwrap_or_else(|p| p.into_inner()).len() - writes_before;
        println!(
            "moved {store}/0 {from} -> {to}: {} records in {elapsed:?} ({:.0} records/s), {during} writes acknowledged meanwhile",
            r.records,
            r.records as f64 / elapsed.as_secs_f64()
        );
        assert!(r.records >= scale().0 / 3, "the fill copied the shard: {r:?}");
        let table = routing_table(&manager.url).await.expect("table");
        let mut expected = old.clone();
        expected[0] = to.to_string();
        assert_eq!(replicas(&table, store, 0), expected, "the new replica takes the old one's place");
        assert!(table.transfers.is_empty());
        let address: BTreeMap<String, String> =
            table.nodes.iter().map(|n| (n.node_id.clone(), n.address.clone())).collect();
        moved.push((store, from, address));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    writer.await.expect("writer");
    reader.await.expect("reader");
    assert_eq!(failed_reads.load(Ordering::SeqCst), 0, "no read failed during the moves");
    assert_eq!(failed_writes.load(Ordering::SeqCst), 0, "every write was acknowledged (503s retried)");
    assert!(reads.load(Ordering::SeqCst) > 10);

    // The old nodes gave their replicas up; replicas are equal; every acknowledged write is there.
    for (store, from, address) in &moved {
        gives_up(&address[from], store, &[0]).await;
    }
    converges(&manager.url, "two").await;
    let acked = acked.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(acked.len() > 20, "the writer wrote during the moves: {}", acked.len());
    for store in ["two", "one"] {
        let ids: Vec<&String> = acked.keys().filter(|(s, _)| s == store).map(|(_, id)| id).collect();
        for chunk in ids.chunks(500) {
            let url = format!("{rest}/v1/stores/{store}/points/get");
            let (status, _, body) = rvdb_it::http("POST", &url, None, Some(json!({"ids": chunk}))).await;
            assert_eq!(status, 200, "{body}");
            let got: Value = serde_json::from_str(&body).expect("JSON");
            let points = got["points"].as_array().expect("points");
            assert_eq!(points.len(), chunk.len(), "every acknowledged point of {store} is there");
            for p in points {
                let id = p["id"].as_str().expect("id").to_string();
                assert_eq!(p["metadata"]["v"].as_u64(), acked.get(&(store.to_string(), id.clone())).copied(), "{id}");
            }
        }
        assert_eq!(count_of(&rest, store).await, Some(scale().0 + ids.len() as u64), "exact count of {store}");
    }
}

/// Replica counts per node id in the manager's table.
fn loads(t: &pb::RoutingTable) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = t.nodes.iter().map(|n| (n.node_id.clone(), 0)).collect();
    for s in &t.stores {
        for p in &s.shards {
            for n in &p.replica_node_ids {
                *out.entry(n.clone()).or_default() += 1;
            }
        }
    }
    out
}

/// A third node joins a 2-node cluster holding a store of 4 shards × 2 replicas: `Rebalance` moves the fewest
/// replicas (2) so that nodes hold 3, 3 and 2. Then the first node is removed for good while it is up
/// (`RemoveNode`): its 3 replicas are re-created on the others and it leaves the catalog. Writes go on through
/// both; afterwards digests are equal, counts exact, every acknowledged write there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_node_gets_its_share_and_a_removed_node_is_drained() {
    let dir = tempfile::tempdir().expect("tempdir");
    // the command, not the automatic rebalance on join (tested below)
    let off = [("RVDB_REBALANCE_ON_JOIN", "false")];
    let (manager, mut nodes, _gateway, rest) = small_cluster(dir.path(), 2, &off).await;
    use pb::NodeState::Up;
    let create =
        json!({"name": "bal", "dimension": scale().1, "metric": "euclidean", "shards": 4, "replication_factor": 2});
    let (status, _, body) = rvdb_it::http("POST", &format!("{rest}/v1/stores"), None, Some(create)).await;
    assert_eq!(status, 201, "{body}");
    let base = rest.clone();
    let put = move |range: std::ops::Range<u64>| {
        let rest = base.clone();
        async move {
            let points: Vec<Value> =
                range.map(|i| json!({"id": format!("p{i}"), "vector": vector(i), "metadata": {"v": i}})).collect();
            let url = format!("{rest}/v1/stores/bal/points");
            for _ in 0..40 {
                match rvdb_it::try_http("PUT", &url, Some(&json!({"points": points})), Duration::from_secs(10)).await {
                    Ok((200, _)) => return,
                    Ok((503, _)) | Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    Ok((status, answer)) => panic!("{status} {answer}"),
                }
            }
            panic!("a write was never acknowledged");
        }
    };
    put(0..4000).await;
    nodes.push(ClusterNode::start(&dir.path().join("n3"), &manager.url, "n3"));
    wait_for_states(&manager.url, &[("n3", Up)], Duration::from_secs(20)).await;
    let before = loads(&routing_table(&manager.url).await.expect("table"));
    assert_eq!(before.values().copied().collect::<Vec<_>>(), vec![4, 4, 0]);

    let mut m = manager.client().await;
    let writer = put.clone();
    let writes = tokio::spawn(async move {
        for b in 0..20u64 {
            writer(10_000 + b * 50..10_000 + (b + 1) * 50).await;
        }
    });
    let r = m.rebalance(pb::RebalanceRequest { max_moves: 0, parallel: 1 }).await.expect("rebalance").into_inner();
    println!("rebalance: {} moves, {} records in {} ms", r.moves.len(), r.records, r.elapsed_ms);
    assert_eq!(r.moves.len(), 2, "the fewest moves: {:?}", r.moves);
    assert!(r.moves.iter().all(|m| m.to_node_id == "n3"));
    let after = loads(&routing_table(&manager.url).await.expect("table"));
    let mut counts: Vec<usize> = after.values().copied().collect();
    counts.sort_unstable();
    assert_eq!(counts, vec![2, 3, 3], "{after:?}");
    assert!(
        m.rebalance(pb::RebalanceRequest { max_moves: 0, parallel: 1 })
            .await
            .expect("again")
            .into_inner()
            .moves
            .is_empty()
    );

    let err = m.remove_node(pb::RemoveNodeRequest { node_id: "n9".into() }).await.expect_err("unknown");
    assert_eq!(err.code(), tonic::Code::NotFound);
    let held = after["n1"];
    let r = m.remove_node(pb::RemoveNodeRequest { node_id: "n1".into() }).await.expect("remove").into_inner();
    println!("remove-node n1: {} replicas, {} records", r.moves.len(), r.records);
    assert_eq!(r.moves.len(), held);
    writes.await.expect("writes");
    // n1 still runs: its heartbeats now fail and it tries to register again, which is refused (it would bring
    // back a node whose replicas live elsewhere)
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let t = routing_table(&manager.url).await.expect("table");
    assert!(t.nodes.iter().all(|n| n.node_id != "n1"), "n1 left the catalog and stays out: {:?}", t.nodes);
    assert!(t.stores[0].shards.iter().all(|p| {
        let mut r = p.replica_node_ids.clone();
        r.sort();
        r == ["n2", "n3"]
    }));
    gives_up(&nodes[0].url, "bal", &[0, 1, 2, 3]).await;
    converges(&manager.url, "bal").await;
    assert_eq!(count_of(&rest, "bal").await, Some(4000 + 20 * 50));
}

/// With the manager's default `--rebalance-on-join`, a node that joins a cluster holding data gets its share by
/// itself, while a writer goes on: a store of 6 shards × 1 replica on 2 nodes ends at 2 / 2 / 2 once the third
/// joins, with every point there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_node_gets_its_share_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manager, mut nodes, _gateway, rest) = small_cluster(dir.path(), 2, &[]).await;
    let create =
        json!({"name": "auto", "dimension": scale().1, "metric": "euclidean", "shards": 6, "replication_factor": 1});
    let (status, _, body) = rvdb_it::http("POST", &format!("{rest}/v1/stores"), None, Some(create)).await;
    assert_eq!(status, 201, "{body}");
    let url = format!("{rest}/v1/stores/auto/points");
    let batch = |range: std::ops::Range<u64>| json!({"points": range.map(|i| json!({"id": format!("p{i}"), "vector": vector(i), "metadata": {"v": i}})).collect::<Vec<_>>()});
    let (status, _, body) = rvdb_it::http("PUT", &url, None, Some(batch(0..3000))).await;
    assert_eq!(status, 200, "{body}");
    nodes.push(ClusterNode::start(&dir.path().join("n3"), &manager.url, "n3"));
    let (mut written, deadline) = (3000u64, Instant::now() + Duration::from_secs(30));
    loop {
        // a writer goes on meanwhile (a 503 during a switch is retried, as documented)
        match rvdb_it::try_http("PUT", &url, Some(&batch(written..written + 10)), Duration::from_secs(10)).await {
            Ok((200, _)) => written += 10,
            Ok((503, _)) | Err(_) => {}
            Ok((status, answer)) => panic!("{status} {answer}"),
        }
        let t = routing_table(&manager.url).await.expect("table");
        let counts: Vec<usize> = loads(&t).into_values().collect();
        if counts == [2, 2, 2] && t.transfers.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "not balanced by itself: {counts:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count_of(&rest, "auto").await, Some(written));
}

/// A shard transfer and a reshard are cancelled while they copy (`CancelOperation`, what `rvdb cancel` sends):
/// each call answers ABORTED, the store is as before (its replica where it was, its shard count), the target
/// gives up what was copied, and every point is there. Cancelling nothing is NOT_FOUND.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_and_a_reshard_are_cancelled_and_roll_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (manager, _nodes, _gateway, rest) = small_cluster(dir.path(), 2, &[]).await;
    let n = 150_000u64;
    store_with(&rest, "big", 1, n).await;
    let mut m = manager.client().await;
    let none = m.cancel_operation(pb::CancelOperationRequest { store: "big".into(), shard: None }).await;
    assert_eq!(none.expect_err("nothing runs").code(), tonic::Code::NotFound);

    // the transfer
    let before = routing_table(&manager.url).await.expect("table");
    let holder = replicas(&before, "big", 0)[0].clone();
    let other = if holder == "n1" { "n2" } else { "n1" };
    let url = manager.url.clone();
    let (from, to) = (holder.clone(), other.to_string());
    let call = tokio::spawn(async move {
        let mut m = pb::index_manager_client::IndexManagerClient::connect(url).await.expect("manager");
        let req = pb::MoveShardRequest { store: "big".into(), shard: 0, from_node_id: from, to_node_id: to };
        m.move_shard(req).await
    });
    while routing_table(&manager.url).await.expect("table").transfers.is_empty() {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let what = m
        .cancel_operation(pb::CancelOperationRequest { store: "big".into(), shard: Some(0) })
        .await
        .expect("cancel")
        .into_inner();
    assert!(what.cancelled.contains("transfer of shard 0"), "{what:?}");
    let err = call.await.expect("task").expect_err("the move was cancelled");
    assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");
    assert!(err.message().contains("cancelled"), "{}", err.message());
    let after = routing_table(&manager.url).await.expect("table");
    assert_eq!(replicas(&after, "big", 0), vec![holder.clone()], "the replica stays where it was");
    assert!(after.transfers.is_empty());
    let address: BTreeMap<String, String> =
        after.nodes.iter().map(|n| (n.node_id.clone(), n.address.clone())).collect();
    gives_up(&address[other], "big", &[0]).await;
    assert_eq!(count_of(&rest, "big").await, Some(n));

    // the reshard
    let url = manager.url.clone();
    let call = tokio::spawn(async move {
        let mut m = pb::index_manager_client::IndexManagerClient::connect(url).await.expect("manager");
        m.reshard(pb::ReshardRequest { store: "big".into(), shards: 4 }).await
    });
    loop {
        let t = routing_table(&manager.url).await.expect("table");
        if t.stores.iter().any(|s| s.resharding.as_ref().is_some_and(|r| r.phase == "copying")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let what = m
        .cancel_operation(pb::CancelOperationRequest { store: "big".into(), shard: None })
        .await
        .expect("cancel")
        .into_inner();
    assert!(what.cancelled.contains("reshard of store 'big'"), "{what:?}");
    let err = call.await.expect("task").expect_err("the reshard was cancelled");
    assert_eq!(err.code(), tonic::Code::Aborted, "{err:?}");
    let after = routing_table(&manager.url).await.expect("table");
    let route = after.stores.iter().find(|s| s.config.as_ref().is_some_and(|c| c.name == "big")).expect("route");
    assert_eq!((route.shards.len(), route.config.as_ref().map(|c| c.shards)), (1, Some(1)));
    assert!(route.resharding.is_none());
    for node in ["n1", "n2"] {
        gives_up(&address[node], "big", &[1, 2, 3]).await;
    }
    assert_eq!(count_of(&rest, "big").await, Some(n));
}

/// A rebalance runs transfers of different shards side by side (`parallel`): 8 shards × 1 replica on 2 nodes,
/// 2 more nodes join, and `Rebalance { parallel: 2 }` makes the 4 moves two at a time (the table shows two
/// transfers at once, never more); nodes end at 2 replicas each with every point there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebalance_moves_several_shards_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let off = [("RVDB_REBALANCE_ON_JOIN", "false")];
    let (manager, mut nodes, _gateway, rest) = small_cluster(dir.path(), 2, &off).await;
    let n = 240_000u64;
    store_with(&rest, "par", 8, n).await;
    use pb::NodeState::Up;
    for id in ["n3", "n4"] {
        nodes.push(ClusterNode::start(&dir.path().join(id), &manager.url, id));
    }
    wait_for_states(&manager.url, &[("n3", Up), ("n4", Up)], Duration::from_secs(20)).await;
    let url = manager.url.clone();
    let call = tokio::spawn(async move {
        let mut m = pb::index_manager_client::IndexManagerClient::connect(url).await.expect("manager");
        m.rebalance(pb::RebalanceRequest { max_moves: 0, parallel: 2 }).await
    });
    let mut most = 0;
    while !call.is_finished() {
        most = most.max(routing_table(&manager.url).await.expect("table").transfers.len());
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let r = call.await.expect("task").expect("rebalance").into_inner();
    println!(
        "rebalance: {} moves, {} records in {} ms, at most {most} transfers at once",
        r.moves.len(),
        r.records,
        r.elapsed_ms
    );
    assert_eq!(r.moves.len(), 4, "{:?}", r.moves);
    assert_eq!(most, 2, "two transfers ran side by side, never more");
    let t = routing_table(&manager.url).await.expect("table");
    assert!(loads(&t).values().all(|c| *c == 2), "{:?}", loads(&t));
    assert_eq!(count_of(&rest, "par").await, Some(n));
}

/// A rebalance also evens out bytes: on 2 nodes, 4 one-shard stores are placed two per node (counts balanced),
/// but both large ones land on one node; `Rebalance` swaps a large with a small replica (2 moves), so each node
/// ends with one of each, every point there.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rebalance_evens_out_bytes_when_counts_are_even() {
    let dir = tempfile::tempdir().expect("tempdir");
    let off = [("RVDB_REBALANCE_ON_JOIN", "false")];
    let (manager, _nodes, _gateway, rest) = small_cluster(dir.path(), 2, &off).await;
    let mut sizes = BTreeMap::new();
    for name in ["a", "b", "c", "d"] {
        let create =
            json!({"name": name, "dimension": scale().1, "metric": "euclidean", "shards": 1, "replication_factor": 1});
        let (status, _, body) = rvdb_it::http("POST", &format!("{rest}/v1/stores"), None, Some(create)).await;
        assert_eq!(status, 201, "{body}");
        sizes.insert(name, 0u64);
    }
    let t = routing_table(&manager.url).await.expect("table");
    let home = |t: &pb::RoutingTable, s: &str| replicas(t, s, 0)[0].clone();
    // the two stores placed on the same node get the data
    let (big1, big2) = if home(&t, "a") == home(&t, "c") { ("a", "c") } else { ("a", "b") };
    assert_eq!(home(&t, big1), home(&t, big2), "two stores share a node: {:?}", t.stores);
    for (name, n) in sizes.iter_mut() {
        *n = if *name == big1 || *name == big2 { 10_000 } else { 100 };
        let points: Vec<Value> = (0..*n).map(|i| json!({"id": format!("p{i}"), "vector": vector(i)})).collect();
        let url = format!("{rest}/v1/stores/{name}/points");
        let (status, _, body) = rvdb_it::http("PUT", &url, None, Some(json!({"points": points}))).await;
        assert_eq!(status, 200, "{body}");
    }
    let mut m = manager.client().await;
    let r = m.rebalance(pb::RebalanceRequest { max_moves: 0, parallel: 0 }).await.expect("rebalance").into_inner();
    println!(
        "byte rebalance: {:?}",
        r.moves.iter().map(|m| (&m.store, &m.from_node_id, &m.to_node_id)).collect::<Vec<_>>()
    );
    assert_eq!(r.moves.len(), 2, "one swap: {:?}", r.moves);
    let t = routing_table(&manager.url).await.expect("table");
    assert_ne!(home(&t, big1), home(&t, big2), "the large stores are on different nodes now");
    assert!(loads(&t).values().all(|c| *c == 2), "{:?}", loads(&t));
    let again = m.rebalance(pb::RebalanceRequest { max_moves: 0, parallel: 0 }).await.expect("again").into_inner();
    assert!(again.moves.is_empty(), "balanced: {:?}", again.moves);
    for (name, n) in sizes {
        assert_eq!(count_of(&rest, name).await, Some(n));
    }
}
