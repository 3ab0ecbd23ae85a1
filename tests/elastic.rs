//! The cluster changing shape under load, on real processes: resharding, nodes joining, and the manager crashing
//! in the middle of a reshard or a transfer. The first test: 1 manager, 3 storage nodes, a gateway; a store of 4
//! shards × 2 replicas holding 20,000 points (`RVDB_RESHARD_POINTS` for a measurement). While a writer inserts new points, overwrites old ones
//! and deletes others through REST (retrying a 503, as documented) and a reader searches and counts without pause,
//! the store is resharded 4 → 8 → 2 (`Reshard`, what `rvdb reshard` sends). After each step: the table holds the
//! new layout, the nodes hold exactly its shards, every shard's replicas are equal (digests), every acknowledged
//! write is there with its value and every acknowledged delete is gone, the count is exact, and exact searches
//! return the true nearest neighbours of the data as written (checked against a brute-force scan here). No read
//! fails and no read returns a point twice. Bad reshards are refused with clear errors and change nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rvdb_it::{ClusterNode, GatewayProcess, ManagerProcess, routing_table, wait_for_states};
use rvdb_proto::v1 as pb;
use rvdb_proto::v1::storage_node_client::StorageNodeClient;
use serde_json::{Value, json};

const DIM: usize = 8;
const STORE: &str = "rs";

fn points() -> u64 {
    std::env::var("RVDB_RESHARD_POINTS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000)
}

/// A pseudo-random vector per seed (splitmix64), so nearest neighbours are distinct and ties rare.
fn vector(seed: u64) -> Vec<f32> {
    (0..DIM as u64)
        .map(|d| {
            let mut z = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(d.wrapping_mul(0xbf58_476d_1ce4_e5b9));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            (z >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        })
        .collect()
}

/// What the store must hold: id → the seed of its vector and metadata `v`, or `None` once deleted.
type Expected = BTreeMap<String, Option<u64>>;

async fn send(method: &str, url: &str, body: &Value) -> bool {
    for _ in 0..60 {
        match rvdb_it::try_http(method, url, Some(body), Duration::from_secs(10)).await {
            Ok((200, _)) => return true,
            Ok((503, _)) | Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            Ok((status, answer)) => panic!("{method} {url}: {status} {answer}"),
        }
    }
    false
}

async fn post(url: &str, body: Value) -> Value {
    let (status, _, answer) = rvdb_it::http("POST", url, None, Some(body)).await;
    assert_eq!(status, 200, "{url}: {answer}");
    serde_json::from_str(&answer).expect("JSON")
}

/// The nodes (by address) that hold each shard of the store.
async fn held(table: &pb::RoutingTable) -> BTreeMap<u32, BTreeSet<String>> {
    let mut out: BTreeMap<u32, BTreeSet<String>> = BTreeMap::new();
    for n in &table.nodes {
        let mut c = StorageNodeClient::connect(n.address.clone()).await.expect("node");
        for s in c.list_shards(pb::ListShardsRequest {}).await.expect("list").into_inner().shards {
            let id = s.shard.expect("id");
            if id.store == STORE {
                out.entry(id.shard).or_default().insert(n.node_id.clone());
            }
        }
    }
    out
}

/// Checks the store against `expected` after a reshard to `shards`.
async fn verify(manager_url: &str, rest: &str, shards: u32, expected: &Expected) {
    // the table and the nodes: exactly the new layout (dropped shards go within seconds)
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let t = routing_table(manager_url).await.expect("table");
        let route = t.stores.iter().find(|s| s.config.as_ref().is_some_and(|c| c.name == STORE)).expect("route");
        assert_eq!(route.shards.len() as u32, shards);
        assert_eq!(route.config.as_ref().map(|c| c.shards), Some(shards));
        assert!(route.resharding.is_none(), "{:?}", route.resharding);
        let placed: BTreeMap<u32, BTreeSet<String>> =
            route.shards.iter().map(|p| (p.shard, p.replica_node_ids.iter().cloned().collect())).collect();
        if held(&t).await == placed {
            break;
        }
        assert!(Instant::now() < deadline, "nodes hold {:?}, the table places {placed:?}", held(&t).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    rvdb_it::replicas_converge(manager_url, STORE, Duration::from_secs(15)).await;
    // every point as written, deleted ones gone
    let ids: Vec<&String> = expected.keys().collect();
    for chunk in ids.chunks(1000) {
        let got = post(&format!("{rest}/v1/stores/{STORE}/points/get"), json!({"ids": chunk})).await;
        let found: BTreeMap<String, u64> = got["points"]
            .as_array()
            .expect("points")
            .iter()
            .map(|p| (p["id"].as_str().expect("id").to_string(), p["metadata"]["v"].as_u64().expect("v")))
            .collect();
        for id in chunk {
            assert_eq!(found.get(*id).copied(), expected[*id], "point {id} after resharding to {shards}");
        }
    }
    let live: Vec<(&String, u64)> = expected.iter().filter_map(|(id, v)| v.map(|v| (id, v))).collect();
    let count = post(&format!("{rest}/v1/stores/{STORE}/points/count"), json!({})).await;
    assert_eq!(count["count"].as_u64(), Some(live.len() as u64), "exact count with {shards} shards");
    // exact search: the true nearest neighbours of the data as written
    for q in 0..20u64 {
        let query = vector(1_000_000_000 + q);
        let mut truth: Vec<(f32, &String)> = live
            .iter()
            .map(|(id, v)| {
                let d: f32 = vector(*v).iter().zip(&query).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
                (d, *id)
            })
            .collect();
        truth.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        let got =
            post(&format!("{rest}/v1/stores/{STORE}/search"), json!({"vector": query, "k": 10, "exact": true})).await;
        let hits = got["results"].as_array().expect("results");
        assert_eq!(hits.len(), 10);
        for (hit, (d, id)) in hits.iter().zip(&truth) {
            let got_d = hit["distance"].as_f64().expect("distance") as f32;
            assert!((got_d - d).abs() < 1e-4, "query {q}: distance {got_d} where the truth is {d} ({id})");
            let hit_id = hit["id"].as_str().expect("id");
            let v = expected[hit_id].expect("a live point");
            let own: f32 = vector(v).iter().zip(&query).map(|(a, b)| (a - b) * (a - b)).sum::<f32>().sqrt();
            assert!((own - got_d).abs() < 1e-4, "{hit_id} is at {own}, reported at {got_d}");
        }
    }
}

/// A writer (new points, overwrites, deletes; a 503 is retried, as documented) and a reader (searches and
/// counts: never a point twice), both unpaused, through the gateway's REST API. The writer pauses for the checks
/// between steps.
struct Load {
    stop: Arc<AtomicBool>,
    pause: Arc<AtomicBool>,
    /// Set by the paused writer once its last write is answered.
    idle: Arc<AtomicBool>,
    expected: Arc<std::sync::Mutex<Expected>>,
    failed_writes: Arc<AtomicU64>,
    failed_reads: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    writes: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(rest: &str, n: u64, expected: Arc<std::sync::Mutex<Expected>>) -> Load {
        let flag = || Arc::new(AtomicBool::new(false));
        let counter = || Arc::new(AtomicU64::new(0));
        let mut load = Load {
            stop: flag(),
            pause: flag(),
            idle: flag(),
            expected,
            failed_writes: counter(),
            failed_reads: counter(),
            reads: counter(),
            writes: counter(),
            tasks: Vec::new(),
        };
        let (stop, pause, idle, expected, failed, writes, rest_w) = (
            load.stop.clone(),
            load.pause.clone(),
            load.idle.clone(),
            load.expected.clone(),
            load.failed_writes.clone(),
            load.writes.clone(),
            rest.to_string(),
        );
        load.tasks.push(tokio::spawn(async move {
            let rest = rest_w;
            let mut i = 10_000_000u64;
            while !stop.load(Ordering::SeqCst) {
                if pause.load(Ordering::SeqCst) {
                    idle.store(true, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                idle.store(false, Ordering::SeqCst);
                let target = format!("p{}", (i * 7919) % n);
                let points = format!("{rest}/v1/stores/{STORE}/points");
                let (id, ok, value) = match i % 3 {
                    0 => {
                        let id = format!("w{i}");
                        let body = json!({"points": [{"id": id, "vector": vector(i), "metadata": {"v": i}}]});
                        (id, send("PUT", &points, &body).await, Some(i))
                    }
                    1 => {
                        let body = json!({"points": [{"id": target, "vector": vector(i), "metadata": {"v": i}}]});
                        (target, send("PUT", &points, &body).await, Some(i))
                    }
                    _ => {
                        let body = json!({"ids": [target]});
                        (target, send("POST", &format!("{points}/delete"), &body).await, None)
                    }
                };
                if ok {
                    expected.lock().unwrap_or_else(|p| p.into_inner()).insert(id, value);
                    writes.fetch_add(1, Ordering::SeqCst);
                } else {
                    failed.fetch_add(1, Ordering::SeqCst);
                }
                i += 1;
            }
        }));
        let (stop, failed, reads, rest) =
            (load.stop.clone(), load.failed_reads.clone(), load.reads.clone(), rest.to_string());
        load.tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let (url, body) = if i.is_multiple_of(5) {
                    (format!("{rest}/v1/stores/{STORE}/points/count"), json!({}))
                } else {
                    (format!("{rest}/v1/stores/{STORE}/search"), json!({"vector": vector(i), "k": 10}))
                };
                match rvdb_it::try_http("POST", &url, Some(&body), Duration::from_secs(10)).await {
                    Ok((200, answer)) => {
                        let answer: Value = serde_json::from_str(&answer).expect("JSON");
                        if let Some(hits) = answer["results"].as_array() {
                            let ids: BTreeSet<&str> = hits.iter().filter_map(|h| h["id"].as_str()).collect();
                            assert_eq!(hits.len(), 10, "{answer}");
                            assert_eq!(ids.len(), 10, "no point twice: {answer}");
                        } else {
                            // no copy counted twice: within the writes made meanwhile of the true count
                            let count = answer["count"].as_u64().expect("count");
                            assert!(count <= n + 100_000 && count + 100_000 >= n / 2, "count {count}");
                        }
                    }
                    other => {
                        eprintln!("read failed: {other:?}");
                        failed.fetch_add(1, Ordering::SeqCst);
                    }
                }
                reads.fetch_add(1, Ordering::SeqCst);
                i += 1;
            }
        }));
        load
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    /// Pauses the writer (its last write answered) and returns what the store must hold.
    async fn pause(&self) -> Expected {
        self.pause.store(true, Ordering::SeqCst);
        self.idle.store(false, Ordering::SeqCst);
        while !self.idle.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.expected.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn resume(&self) {
        self.pause.store(false, Ordering::SeqCst);
    }

    /// Stops both; no read failed, every write was acknowledged (503s retried), both did work.
    async fn finish(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.tasks {
            t.await.expect("load task");
        }
        assert_eq!(self.failed_reads.load(Ordering::SeqCst), 0, "no read failed");
        assert_eq!(self.failed_writes.load(Ordering::SeqCst), 0, "every write was acknowledged (503s retried)");
        assert!(self.reads.load(Ordering::SeqCst) > 10 && self.writes.load(Ordering::SeqCst) > 10);
    }
}

/// 3 nodes and a gateway under `manager`; the store created with 4 shards × 2 replicas and `n` points loaded.
async fn cluster(
    dir: &std::path::Path,
    manager_url: &str,
    n: u64,
) -> (Vec<ClusterNode>, GatewayProcess, String, Arc<std::sync::Mutex<Expected>>) {
    cluster_of(dir, manager_url, n, 4).await
}

/// [`cluster`] with `shards` shards.
async fn cluster_of(
    dir: &std::path::Path,
    manager_url: &str,
    n: u64,
    shards: u32,
) -> (Vec<ClusterNode>, GatewayProcess, String, Arc<std::sync::Mutex<Expected>>) {
    let nodes: Vec<ClusterNode> =
        (1..=3).map(|i| ClusterNode::start(&dir.join(format!("n{i}")), manager_url, &format!("n{i}"))).collect();
    use pb::NodeState::Up;
    wait_for_states(manager_url, &[("n1", Up), ("n2", Up), ("n3", Up)], Duration::from_secs(20)).await;
    let gateway = GatewayProcess::start(manager_url, &dir.join("b"));
    let rest = gateway.mcp_url.trim_end_matches("/mcp").to_string();
    let create =
        json!({"name": STORE, "dimension": DIM, "metric": "euclidean", "shards": shards, "replication_factor": 2});
    let (status, _, body) = rvdb_it::http("POST", &format!("{rest}/v1/stores"), None, Some(create)).await;
    assert_eq!(status, 201, "{body}");
    let started = Instant::now();
    for start in (0..n).step_by(2000) {
        let batch: Vec<Value> = (start..(start + 2000).min(n))
            .map(|i| json!({"id": format!("p{i}"), "vector": vector(i), "metadata": {"v": i}}))
            .collect();
        assert!(send("PUT", &format!("{rest}/v1/stores/{STORE}/points"), &json!({"points": batch})).await);
    }
    println!("loaded {n} points in {:?}", started.elapsed());
    let expected: Expected = (0..n).map(|i| (format!("p{i}"), Some(i))).collect();
    (nodes, gateway, rest, Arc::new(std::sync::Mutex::new(expected)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_reshards_up_and_down_under_reads_and_writes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = ManagerProcess::start(&dir.path().join("manager"), 200, 2000);
    let n = points();
    let (_nodes, _gateway, rest, expected) = cluster(dir.path(), &manager.url, n).await;

    // Bad reshards are refused and change nothing.
    let mut m = manager.client().await;
    let before = routing_table(&manager.url).await.expect("table");
    for (store, shards, code, needle) in [
        ("nope", 8, tonic::Code::NotFound, "does not exist"),
        (STORE, 0, tonic::Code::InvalidArgument, "between 1 and 1024"),
        (STORE, 5000, tonic::Code::InvalidArgument, "between 1 and 1024"),
        (STORE, 4, tonic::Code::InvalidArgument, "has 4 shards already"),
    ] {
        let err = m.reshard(pb::ReshardRequest { store: store.into(), shards }).await.expect_err("refused");
        assert_eq!(err.code(), code, "{err:?}");
        assert!(err.message().contains(needle), "{needle}: {}", err.message());
    }
    assert_eq!(routing_table(&manager.url).await.expect("table").stores, before.stores, "refusals change nothing");

    let load = Load::start(&rest, n, expected);
    tokio::time::sleep(Duration::from_millis(300)).await;
    for shards in [8u32, 2] {
        let (writes_before, started) = (load.writes(), Instant::now());
        let r = m
            .reshard(pb::ReshardRequest { store: STORE.into(), shards })
            .await
            .unwrap_or_else(|e| panic!("reshard to {shards}: {e:?}"))
            .into_inner();
        let elapsed = started.elapsed();
        println!(
            "resharded {} -> {}: {} records copied, {} pruned, in {elapsed:?} ({} ms in the manager, {} ms of \
             copy), {} writes acknowledged meanwhile",
            r.from_shards,
            r.to_shards,
            r.records,
            r.pruned,
            r.elapsed_ms,
            r.copy_ms,
            load.writes() - writes_before
        );
        assert_eq!((r.to_shards, r.records > 0), (shards, true), "{r:?}");
        if shards > r.from_shards {
            // growing copies about 1 − from/to of the points to the new shards (per replica) and prunes them from
            // the old ones, with what was written to both layouts during the copy
            let replicas = 2 * (n + load.writes());
            assert!(r.records > replicas / 3 && r.records < replicas * 2 / 3, "{r:?}");
            assert!(r.pruned >= r.records * 9 / 10 && r.pruned < replicas * 2 / 3, "{r:?}");
        }
        let expected = load.pause().await;
        verify(&manager.url, &rest, shards, &expected).await;
        load.resume();
    }
    load.finish().await;
}

/// The manager is killed while it copies (as soon as its table shows the reshard copying) and started again: the
/// reshard is rolled back (or, had it switched, finished) by itself, the store is whole in one layout with every
/// acknowledged write, and it reshards again afterwards. Writes and reads go on throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reshard_cut_by_a_manager_crash_is_rolled_back_or_finished() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, addr) = (dir.path().join("manager"), format!("127.0.0.1:{}", rvdb_it::free_port()));
    let mut manager = ManagerProcess::start_at(&data, 200, 2000, &addr);
    let n = points() * 5;
    let (_nodes, _gateway, rest, expected) = cluster(dir.path(), &manager.url, n).await;
    let load = Load::start(&rest, n, expected);
    let url = manager.url.clone();
    let call = tokio::spawn(async move {
        let mut m = rvdb_proto::v1::index_manager_client::IndexManagerClient::connect(url).await.expect("manager");
        m.reshard(pb::ReshardRequest { store: STORE.into(), shards: 8 }).await
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let phase = loop {
        let t = routing_table(&manager.url).await.expect("table");
        let route = t.stores.iter().find(|s| s.config.as_ref().is_some_and(|c| c.name == STORE)).expect("route");
        if let Some(r) = &route.resharding {
            break r.phase.clone();
        }
        assert!(Instant::now() < deadline, "the reshard never showed in the table");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    manager.kill();
    let answer = call.await.expect("call task");
    println!("killed the manager in phase {phase:?}; the call got {:?}", answer.as_ref().map(|r| r.get_ref()));
    assert!(answer.is_err(), "the call was cut");
    manager = ManagerProcess::start_at(&data, 200, 2000, &addr);
    // the restarted manager ends the reshard by itself
    let deadline = Instant::now() + Duration::from_secs(30);
    let shards = loop {
        let t = routing_table(&manager.url).await.expect("table");
        let route = t.stores.iter().find(|s| s.config.as_ref().is_some_and(|c| c.name == STORE)).expect("route");
        if route.resharding.is_none() {
            break route.shards.len() as u32;
        }
        assert!(Instant::now() < deadline, "the reshard was never ended: {:?}", route.resharding);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("after the restart: {shards} shards ({})", if shards == 4 { "rolled back" } else { "finished" });
    if phase == "copying" {
        assert_eq!(shards, 4, "a reshard that had not switched is rolled back");
    }
    let expected = load.pause().await;
    verify(&manager.url, &rest, shards, &expected).await;
    load.resume();
    // and the store reshards again
    let mut m = manager.client().await;
    let r = m.reshard(pb::ReshardRequest { store: STORE.into(), shards: 3 }).await.expect("reshard").into_inner();
    println!("then {} -> 3: {} records copied", r.from_shards, r.records);
    let expected = load.pause().await;
    verify(&manager.url, &rest, 3, &expected).await;
    load.resume();
    load.finish().await;
}

/// Replicas per node id in the manager's table (every registered node, 0 for one without any).
fn loads(t: &pb::RoutingTable) -> BTreeMap<String, usize> {
    let mut out: BTreeMap<String, usize> = t.nodes.iter().map(|n| (n.node_id.clone(), 0)).collect();
    for s in &t.stores {
        for n in s.shards.iter().flat_map(|p| &p.replica_node_ids) {
            *out.entry(n.clone()).or_default() += 1;
        }
    }
    out
}

/// A 4th and a 5th node join a 3-node cluster holding 8 shards × 2 replicas while a writer and a reader run: the
/// manager moves replicas to them by itself (`--rebalance-on-join`, the default) until nodes hold 4 / 3 / 3 / 3 / 3
/// replicas; then everything acknowledged is there, the count is exact, replicas are equal, exact searches equal a
/// brute-force scan, and no read failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn nodes_that_join_under_load_get_their_share() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = ManagerProcess::start(&dir.path().join("manager"), 200, 2000);
    let n = points();
    let (mut nodes, _gateway, rest, expected) = cluster_of(dir.path(), &manager.url, n, 8).await;
    let load = Load::start(&rest, n, expected);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    for id in ["n4", "n5"] {
        nodes.push(ClusterNode::start(&dir.path().join(id), &manager.url, id));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let t = routing_table(&manager.url).await.expect("table");
        let mut counts: Vec<usize> = loads(&t).into_values().collect();
        counts.sort_unstable();
        if counts == [3, 3, 3, 3, 4] && t.transfers.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "not balanced: {:?}", loads(&t));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!("balanced over 5 nodes in {:?}, {} writes acknowledged meanwhile", started.elapsed(), load.writes());
    let expected = load.pause().await;
    verify(&manager.url, &rest, 8, &expected).await;
    load.resume();
    load.finish().await;
}

/// The manager is killed while it moves a replica (as soon as its table shows the transfer) and started again:
/// the transfer is rolled back (or, had it switched, finished) by itself; the store is whole with every
/// acknowledged write, and the replica moves on a second try.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_transfer_cut_by_a_manager_crash_is_rolled_back_or_finished() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, addr) = (dir.path().join("manager"), format!("127.0.0.1:{}", rvdb_it::free_port()));
    let mut manager = ManagerProcess::start_with_env(&data, 200, 2000, &addr, &[("RVDB_REBALANCE_ON_JOIN", "false")]);
    let n = points() * 5;
    let (mut nodes, _gateway, rest, expected) = cluster(dir.path(), &manager.url, n).await;
    nodes.push(ClusterNode::start(&dir.path().join("n4"), &manager.url, "n4"));
    wait_for_states(&manager.url, &[("n4", pb::NodeState::Up)], Duration::from_secs(20)).await;
    let load = Load::start(&rest, n, expected);
    let t = routing_table(&manager.url).await.expect("table");
    let before = t.stores[0].shards[0].replica_node_ids.clone();
    let move_req = pb::MoveShardRequest {
        store: STORE.into(),
        shard: 0,
        from_node_id: before[0].clone(),
        to_node_id: "n4".into(),
    };
    let (url, req) = (manager.url.clone(), move_req.clone());
    let call = tokio::spawn(async move {
        let mut m = rvdb_proto::v1::index_manager_client::IndexManagerClient::connect(url).await.expect("manager");
        m.move_shard(req).await
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    while routing_table(&manager.url).await.expect("table").transfers.is_empty() {
        assert!(Instant::now() < deadline, "the transfer never showed in the table");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    manager.kill();
    assert!(call.await.expect("call task").is_err(), "the call was cut");
    manager = ManagerProcess::start_with_env(&data, 200, 2000, &addr, &[("RVDB_REBALANCE_ON_JOIN", "false")]);
    let t = routing_table(&manager.url).await.expect("table");
    assert!(t.transfers.is_empty(), "ended at the restart: {:?}", t.transfers);
    let after = t.stores[0].shards[0].replica_node_ids.clone();
    let rolled_back = after == before;
    println!("after the restart: shard 0 on {after:?} ({})", if rolled_back { "rolled back" } else { "finished" });
    if !rolled_back {
        assert_eq!(after, [vec!["n4".to_string()], before[1..].to_vec()].concat());
    }
    let expected = load.pause().await;
    verify(&manager.url, &rest, 4, &expected).await;
    load.resume();
    if rolled_back {
        let mut m = manager.client().await;
        let r = m.move_shard(move_req).await.expect("the move, again").into_inner();
        println!("moved on the second try: {} records", r.records);
        let expected = load.pause().await;
        verify(&manager.url, &rest, 4, &expected).await;
        load.resume();
    }
    load.finish().await;
}
