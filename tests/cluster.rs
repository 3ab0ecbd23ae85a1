//! The cluster on loopback with real processes: 1 index manager, 3 storage nodes, 2 gateways (MCP over HTTP).
//!
//! A store of 4 shards × 2 replicas takes writes through both gateways while one node is killed with SIGKILL.
//! Every acknowledged write must survive, searches must keep answering with full recall, the node must catch up
//! when it returns (its replicas byte-for-byte equal to their peers, by digest), and afterwards it must be able
//! to serve alone the shards it shares with a second node that is killed. Results equal those of a single-node
//! `rvdb serve` holding the same data.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rvdb_it::{
    ClusterNode, GatewayProcess, ManagerProcess, Mcp, ServeProcess, replica_digests, routing_table, wait_for_states,
};
use rvdb_proto::v1 as pb;
use rvdb_proto::v1::storage_node_client::StorageNodeClient;
use serde_json::{Value, json};

const DIM: usize = 16;
const STORE: &str = "docs";
const BATCH: u64 = 40;
const BATCHES: u64 = 60;

fn vector(i: u64) -> Vec<f32> {
    // splitmix64: deterministic, well spread
    (0..DIM as u64)
        .map(|j| {
            let mut z = (i * 31 + j).wrapping_add(0x9E37_79B9_7F4A_7C15);
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) % 20_000) as f32 / 1000.0 - 10.0
        })
        .collect()
}

/// A point's document, for keyword search: words that repeat across points at different rates.
fn text(i: u64) -> String {
    format!("alpha{} beta{} common {}", i % 97, i % 13, "gamma ".repeat((i % 4) as usize))
}

fn points(range: std::ops::Range<u64>) -> Value {
    Value::Array(
        range
            .map(|i| json!({"id": format!("p{i}"), "vector": vector(i), "metadata": {"i": i, "_text": text(i)}}))
            .collect(),
    )
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt()
}

/// Exact top-k over the ids that should be stored, ties by id (the order rvdb uses).
fn brute_force(live: &BTreeSet<u64>, q: &[f32], k: usize) -> Vec<String> {
    let mut all: Vec<(f32, String)> = live.iter().map(|&i| (l2(&vector(i), q), format!("p{i}"))).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    all.into_iter().take(k).map(|(_, id)| id).collect()
}

fn hit_ids(result: &Value) -> Vec<String> {
    result["results"].as_array().expect("results").iter().map(|h| h["id"].as_str().expect("id").to_string()).collect()
}

async fn table(manager: &ManagerProcess) -> pb::RoutingTable {
    routing_table(&manager.url).await.expect("routing table")
}

async fn search(mcp: &Mcp, q: &[f32], k: usize) -> Result<Vec<String>, String> {
    search_in(mcp, STORE, q, k).await
}

async fn search_in(mcp: &Mcp, store: &str, q: &[f32], k: usize) -> Result<Vec<String>, String> {
    mcp.call("search_vectors", json!({"store": store, "vector": q, "k": k})).await.map(|r| hit_ids(&r))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_survives_a_node_kill_and_catches_it_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = ManagerProcess::start(&dir.path().join("manager"), 200, 2000);
    let mut nodes: Vec<ClusterNode> = (1..=3)
        .map(|i| ClusterNode::start(&dir.path().join(format!("n{i}")), &manager.url, &format!("n{i}")))
        .collect();
    use pb::NodeState::{Down, Up};
    wait_for_states(&manager.url, &[("n1", Up), ("n2", Up), ("n3", Up)], Duration::from_secs(20)).await;
    let gateways = [
        GatewayProcess::start(&manager.url, &dir.path().join("b1")),
        GatewayProcess::start(&manager.url, &dir.path().join("b2")),
    ];
    let mcp = [Mcp::new(&gateways[0].mcp_url), Mcp::new(&gateways[1].mcp_url)];

    let created = mcp[0]
        .call(
            "create_store",
            json!({"store": STORE, "dimension": DIM, "metric": "euclidean", "shards": 4, "replication_factor": 2}),
        )
        .await
        .expect("create_store");
    assert_eq!((created["shards"].as_u64(), created["replication_factor"].as_u64()), (Some(4), Some(2)));
    // placement is balanced: 8 replicas on 3 nodes → 3, 3, 2
    let t = table(&manager).await;
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    for p in &t.stores[0].shards {
        assert_eq!(p.replica_node_ids.len(), 2);
        assert_ne!(p.replica_node_ids[0], p.replica_node_ids[1], "replicas of a shard on one node");
        for id in &p.replica_node_ids {
            *load.entry(id.clone()).or_default() += 1;
        }
    }
    let mut counts: Vec<usize> = load.values().copied().collect();
    counts.sort();
    assert_eq!(counts, vec![2, 3, 3], "{load:?}");
    // the store is visible through the other gateway too
    assert_eq!(mcp[1].call("describe_store", json!({"store": STORE})).await.expect("describe")["points"], 0);

    // Writers through both gateways; a batch is retried until acknowledged. Searches run meanwhile.
    let acked = Arc::new(AtomicU64::new(0));
    let failed_writes = Arc::new(AtomicU64::new(0));
    let writer = {
        let (mcp, acked, failed) = (mcp.clone(), acked.clone(), failed_writes.clone());
        tokio::spawn(async move {
            for b in 0..BATCHES {
                let args = json!({"store": STORE, "points": points(b * BATCH..(b + 1) * BATCH)});
                let started = Instant::now();
                while let Err(e) = mcp[(b % 2) as usize].call("insert_vectors", args.clone()).await {
                    failed.fetch_add(1, Ordering::SeqCst);
                    assert!(started.elapsed() < Duration::from_secs(30), "batch {b} never acknowledged: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                acked.store(b + 1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let stop_searching = Arc::new(AtomicBool::new(false));
    let searcher = {
        let (mcp, stop) = (mcp[1].clone(), stop_searching.clone());
        tokio::spawn(async move {
            let (mut ok, mut errors) = (0u64, Vec::new());
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                match search(&mcp, &vector(1_000_000 + i), 5).await {
                    Ok(_) => ok += 1,
                    Err(e) => errors.push(e),
                }
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (ok, errors)
        })
    };
    while acked.load(Ordering::SeqCst) < BATCHES / 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    nodes[1].kill(); // n2, while writes and searches are in flight
    let killed_at = Instant::now();
    wait_for_states(&manager.url, &[("n2", Down)], Duration::from_secs(20)).await;
    let detected = killed_at.elapsed();
    // deletes while n2 is down: its replicas must get the tombstones on catch-up
    let deleted: BTreeSet<u64> = (0..20).map(|i| i * 7).collect();
    for &i in &deleted {
        let r = mcp[(i % 2) as usize]
            .call("delete_vector", json!({"store": STORE, "id": format!("p{i}")}))
            .await
            .expect("delete while a node is down");
        assert_eq!(r["deleted"], true);
    }
    writer.await.expect("writer");
    stop_searching.store(true, Ordering::SeqCst);
    let (searches_ok, search_errors) = searcher.await.expect("searcher");
    assert!(search_errors.is_empty(), "searches failed while a node died: {search_errors:?}");
    assert!(searches_ok > 10);
    println!(
        "n2 killed: down after {detected:?}; {} write attempts failed and were retried; {searches_ok} searches, 0 errors",
        failed_writes.load(Ordering::SeqCst)
    );

    let live: BTreeSet<u64> = (0..BATCHES * BATCH).filter(|i| !deleted.contains(i)).collect();
    let check_everything = |label: &'static str| {
        let (mcp, live, deleted) = (mcp.clone(), live.clone(), deleted.clone());
        async move {
            for (g, m) in mcp.iter().enumerate() {
                let stats = m.call("describe_store", json!({"store": STORE})).await.expect("describe");
                assert_eq!(stats["points"].as_u64(), Some(live.len() as u64), "{label}: gateway {g}: {stats}");
            }
            // every acknowledged write is there, every delete too
            for i in (0..BATCHES * BATCH).step_by(13) {
                let got = mcp[(i % 2) as usize]
                    .call("get_vector", json!({"store": STORE, "id": format!("p{i}")}))
                    .await
                    .expect("get_vector");
                assert_eq!(got["found"], !deleted.contains(&i), "{label}: p{i}");
            }
            // full recall: exact top-10 through either gateway
            for q in 0..20u64 {
                let query = vector(5_000_000 + q);
                let expected = brute_force(&live, &query, 10);
                for m in &mcp {
                    assert_eq!(search(m, &query, 10).await.expect("search"), expected, "{label}: query {q}");
                }
            }
        }
    };
    check_everything("n2 down").await;

    // n2 returns: it catches up before it serves reads, then its replicas equal their peers byte for byte.
    let restarted = Instant::now();
    nodes[1].restart();
    wait_for_states(&manager.url, &[("n2", Up)], Duration::from_secs(60)).await;
    println!("n2 restarted: caught up and up after {:?}", restarted.elapsed());
    let digests = replica_digests(&manager.url, STORE).await;
    assert_eq!(digests.len(), 4);
    for (shard, replicas) in digests.iter().enumerate() {
        assert!(
            replicas.iter().all(|(sha, _)| sha.len() == 64),
            "shard {shard}: a replica gave no digest: {replicas:?}"
        );
        assert!(replicas.windows(2).all(|w| w[0] == w[1]), "shard {shard}: replicas differ: {replicas:?}");
    }

    // n2 now serves alone the shards it shares with n3.
    nodes[2].kill();
    wait_for_states(&manager.url, &[("n3", Down)], Duration::from_secs(20)).await;
    check_everything("n3 down after n2 caught up").await;
    // and writes still go through with one replica of a shard down
    mcp[0].call("insert_vectors", json!({"store": STORE, "points": points(900_000..900_010)})).await.expect("write");
    mcp[1].call("delete_vector", json!({"store": STORE, "id": "p900000"})).await.expect("delete");

    // The same data in a single-node `rvdb serve` answers the same.
    let single = ServeProcess::start(&dir.path().join("single"), &dir.path().join("single-backups"));
    let one = Mcp::new(&single.mcp_url);
    one.call("create_store", json!({"store": STORE, "dimension": DIM, "metric": "euclidean"})).await.expect("create");
    let mut all: Vec<u64> = live.iter().copied().collect();
    all.extend(900_001..900_010);
    for chunk in all.chunks(500) {
        let pts: Vec<Value> = chunk
            .iter()
            .map(|&i| json!({"id": format!("p{i}"), "vector": vector(i), "metadata": {"i": i, "_text": text(i)}}))
            .collect();
        one.call("insert_vectors", json!({"store": STORE, "points": pts})).await.expect("insert");
    }
    for q in 0..20u64 {
        let query = vector(7_000_000 + q);
        let args = json!({"store": STORE, "vector": query, "k": 10, "with_metadata": true});
        let a = mcp[0].call("search_vectors", args.clone()).await.expect("cluster search");
        let b = one.call("search_vectors", args).await.expect("single search");
        assert_eq!(a["results"], b["results"], "query {q}: cluster and single node differ");
    }
    // Keyword search too: the replicas n2 caught up (its deletes included) hold the same texts, so BM25 over 4
    // shards (statistics gathered across them) ranks and scores as the single node does.
    for q in ["alpha5 beta7", "gamma common", "alpha96 gamma beta0", "beta12"] {
        let args = json!({"store": STORE, "query": q, "k": 10, "mode": "keyword", "with_text": false});
        let a = mcp[1].call("search_text", args.clone()).await.expect("cluster keyword search");
        let b = one.call("search_text", args).await.expect("single keyword search");
        assert_eq!(a["results"].as_array().map(Vec::len), Some(10), "{q}: {a}");
        assert_eq!(a["results"], b["results"], "{q}: cluster and single node differ");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_replica_lost_on_a_live_node_is_refilled_and_concurrent_gateways_converge() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = ManagerProcess::start(&dir.path().join("manager"), 200, 2000);
    let nodes: Vec<ClusterNode> = (1..=2)
        .map(|i| ClusterNode::start(&dir.path().join(format!("n{i}")), &manager.url, &format!("n{i}")))
        .collect();
    use pb::NodeState::Up;
    wait_for_states(&manager.url, &[("n1", Up), ("n2", Up)], Duration::from_secs(20)).await;
    let gateways = [
        GatewayProcess::start(&manager.url, &dir.path().join("b1")),
        GatewayProcess::start(&manager.url, &dir.path().join("b2")),
    ];
    let mcp = [Mcp::new(&gateways[0].mcp_url), Mcp::new(&gateways[1].mcp_url)];
    let args = json!({"store": "r", "dimension": DIM, "metric": "euclidean", "shards": 2, "replication_factor": 2,
                      "write_consistency": 1});
    let created = mcp[0].call("create_store", args.clone()).await.expect("create_store");
    assert_eq!(created["write_consistency"], 1);
    let again = mcp[1].call("create_store", args).await.expect_err("a second create of the same name");
    assert!(again.contains("already exists"), "{again}");

    // Both gateways write the same ids concurrently, round after round: every replica must end with the same
    // record for every id, whatever order the writes reached it in.
    let mut rounds = Vec::new();
    for (g, m) in mcp.iter().enumerate() {
        let m = m.clone();
        rounds.push(tokio::spawn(async move {
            for round in 0..10u64 {
                let pts: Vec<Value> = (0..50u64)
                    .map(|i| json!({"id": format!("hot{i}"), "vector": vector(i * 1000 + round * 10 + g as u64), "metadata": {"g": g}}))
                    .collect();
                m.call("insert_vectors", json!({"store": "r", "points": pts})).await.expect("concurrent insert");
            }
        }));
    }
    for r in rounds {
        r.await.expect("writer");
    }
    mcp[0].call("insert_vectors", json!({"store": "r", "points": points(0..200)})).await.expect("insert");
    let d = replica_digests(&manager.url, "r").await;
    assert!(d.iter().all(|s| s[0] == s[1]), "replicas differ after concurrent writes: {d:?}");

    // A replica lost on a node that stays up (dropped by hand here): writes with write_consistency 1 are still
    // acknowledged by the other replica, and the manager re-creates the lost one and refills it from its peer.
    let t = table(&manager).await;
    let n2 = t.nodes.iter().find(|n| n.node_id == "n2").expect("n2").address.clone();
    let mut c = StorageNodeClient::connect(n2).await.expect("n2");
    let lost =
        t.stores[0].shards.iter().find(|p| p.replica_node_ids.contains(&"n2".to_string())).expect("a shard").shard;
    c.drop_shard(pb::DropShardRequest { shard: Some(pb::ShardId { store: "r".into(), shard: lost }) })
        .await
        .expect("drop a replica by hand");
    mcp[1].call("insert_vectors", json!({"store": "r", "points": points(200..300)})).await.expect("insert with W=1");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let d = replica_digests(&manager.url, "r").await;
        if d.iter().all(|s| s[0] == s[1]) {
            let records: u64 = d.iter().map(|s| s[0].1).sum();
            assert_eq!(records, 350, "{d:?}");
            break;
        }
        assert!(Instant::now() < deadline, "the lost replica was never refilled: {d:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_frozen_replica_is_skipped_after_the_read_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    // a long node timeout: the frozen node stays UP in the routing table, so only the deadline can save reads
    let manager = ManagerProcess::start(&dir.path().join("manager"), 200, 120_000);
    let nodes: Vec<ClusterNode> = (1..=2)
        .map(|i| ClusterNode::start(&dir.path().join(format!("n{i}")), &manager.url, &format!("n{i}")))
        .collect();
    use pb::NodeState::Up;
    wait_for_states(&manager.url, &[("n1", Up), ("n2", Up)], Duration::from_secs(20)).await;
    let gateway = GatewayProcess::start_with(&manager.url, &dir.path().join("b"), &["--read-timeout", "300"]);
    let mcp = Mcp::new(&gateway.mcp_url);
    mcp.call("create_store", json!({"store": "f", "dimension": DIM, "metric": "euclidean", "replication_factor": 2}))
        .await
        .expect("create_store");
    mcp.call("insert_vectors", json!({"store": "f", "points": points(0..100)})).await.expect("insert");
    let query = vector(42);
    let expected = brute_force(&(0..100).collect(), &query, 5);
    assert_eq!(search_in(&mcp, "f", &query, 5).await.expect("search"), expected);
    // freeze the preferred read replica (SIGSTOP: it accepts connections, never answers)
    let t = table(&manager).await;
    let preferred = &t.stores[0].shards[0].replica_node_ids[0];
    let frozen = nodes.iter().find(|n| &n.node_id == preferred).expect("node");
    frozen.signal("STOP");
    for _ in 0..3 {
        let started = Instant::now();
        let hits = search_in(&mcp, "f", &query, 5).await;
        let took = started.elapsed();
        assert_eq!(hits.expect("search with a frozen replica"), expected);
        assert!(took < Duration::from_secs(5), "fail-over took {took:?}");
    }
    frozen.signal("CONT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_data_path_does_not_need_the_manager_which_restarts_with_its_catalog() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager_dir = dir.path().join("manager");
    let mut manager = ManagerProcess::start(&manager_dir, 200, 1500);
    let addr = manager.url.trim_start_matches("http://").to_string();
    let nodes: Vec<ClusterNode> = (1..=2)
        .map(|i| ClusterNode::start(&dir.path().join(format!("n{i}")), &manager.url, &format!("n{i}")))
        .collect();
    use pb::NodeState::Up;
    wait_for_states(&manager.url, &[("n1", Up), ("n2", Up)], Duration::from_secs(20)).await;
    let gateway = GatewayProcess::start(&manager.url, &dir.path().join("b"));
    let mcp = Mcp::new(&gateway.mcp_url);
    mcp.call(
        "create_store",
        json!({"store": "m", "dimension": DIM, "metric": "euclidean", "shards": 2, "replication_factor": 2}),
    )
    .await
    .expect("create_store");
    let version = table(&manager).await.version;

    // the manager dies: writes and reads go on with the table the gateway holds; catalog changes wait
    manager.kill();
    mcp.call("insert_vectors", json!({"store": "m", "points": points(0..100)})).await.expect("write without manager");
    let query = vector(7);
    let expected = brute_force(&(0..100).collect(), &query, 5);
    assert_eq!(search_in(&mcp, "m", &query, 5).await.expect("read without manager"), expected);
    let err = mcp.call("create_store", json!({"store": "m2", "dimension": 4})).await.expect_err("no manager");
    assert!(err.starts_with("Error (unavailable)"), "a create without the manager is unavailable: {err}");

    // it restarts on its address with its catalog; nodes heartbeat again, the gateway re-subscribes
    let manager = ManagerProcess::start_at(&manager_dir, 200, 1500, &addr);
    let t = table(&manager).await;
    assert!(t.version >= version, "the routing version survived: {} -> {}", version, t.version);
    assert_eq!(t.stores.len(), 1);
    wait_for_states(&manager.url, &[("n1", Up), ("n2", Up)], Duration::from_secs(20)).await;
    mcp.call("create_store", json!({"store": "m2", "dimension": 4})).await.expect("create after the restart");
    assert_eq!(search_in(&mcp, "m", &query, 5).await.expect("read"), expected);
    let stats = mcp.call("describe_store", json!({"store": "m"})).await.expect("describe");
    assert_eq!(stats["points"], 100);
    drop(nodes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_write_to_a_shard_on_a_dead_node_is_unavailable_naming_store_shard_and_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager = ManagerProcess::start(&dir.path().join("manager"), 200, 1500);
    let mut nodes: Vec<ClusterNode> = (1..=2)
        .map(|i| ClusterNode::start(&dir.path().join(format!("n{i}")), &manager.url, &format!("n{i}")))
        .collect();
    use pb::NodeState::{Down, Up};
    wait_for_states(&manager.url, &[("n1", Up), ("n2", Up)], Duration::from_secs(20)).await;
    let gateway = GatewayProcess::start(&manager.url, &dir.path().join("b"));
    let rest = format!("{}/v1/stores", gateway.mcp_url.trim_end_matches("/mcp"));
    let create = json!({"name": "u", "dimension": DIM, "metric": "euclidean", "shards": 2, "replication_factor": 1});
    let (status, _, body) = rvdb_it::http("POST", &rest, None, Some(create)).await;
    assert_eq!(status, 201, "{body}");

    // the shard whose only replica is on n2, and points that belong to it
    let t = table(&manager).await;
    let n2 = t.nodes.iter().find(|n| n.node_id == "n2").expect("n2").address.clone();
    let shard = t.stores[0].shards.iter().find(|p| p.replica_node_ids == ["n2"]).expect("a shard on n2 alone").shard;
    let ids: Vec<String> =
        (0..).map(|i| format!("p{i}")).filter(|id| rvdb_it::shard_of(id, 2) == shard).take(5).collect();
    let body = json!({"points": ids.iter().enumerate().map(|(i, id)| json!({"id": id, "vector": vector(i as u64)})).collect::<Vec<_>>()});
    let url = format!("{rest}/u/points");
    let (status, _, answer) = rvdb_it::http("PUT", &url, None, Some(body.clone())).await;
    assert_eq!(status, 200, "{answer}");

    // SIGKILL n2. Writes to its shard fail while the manager still has it up (connection refused or reset), and
    // after it marked it down: always 503 naming the store, the shard and the node.
    nodes[1].kill();
    let deadline = Instant::now() + Duration::from_secs(20);
    let (mut tries, mut seen_down) = (0, 0);
    while seen_down < 5 {
        let (status, _, answer) = rvdb_it::http("PUT", &url, None, Some(body.clone())).await;
        tries += 1;
        assert_eq!(status, 503, "try {tries}: {answer}");
        let error: Value = serde_json::from_str(&answer).expect("JSON error");
        assert_eq!(error["error"]["code"], "unavailable", "{answer}");
        let message = error["error"]["message"].as_str().expect("message");
        assert!(
            message.contains(&format!("shard {shard} of store 'u'")) && message.contains(&n2),
            "try {tries}: the error does not name the store, shard {shard} and node {n2}: {message}"
        );
        if table(&manager).await.nodes.iter().any(|n| n.node_id == "n2" && n.state == Down as i32) {
            seen_down += 1;
        }
        assert!(Instant::now() < deadline, "n2 was never marked down");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(tries > seen_down, "no write was tried before the manager marked n2 down");
    // The console's cluster view (REST /v1/cluster) shows it: n2 down, its replica down, n1's up.
    let cluster_url = format!("{}/v1/cluster", gateway.mcp_url.trim_end_matches("/mcp"));
    let (status, _, cluster) = rvdb_it::http("GET", &cluster_url, None, None).await;
    assert_eq!(status, 200, "{cluster}");
    let cluster: Value = serde_json::from_str(&cluster).expect("JSON");
    let states: BTreeMap<String, String> = cluster["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| (n["node_id"].as_str().unwrap_or("").to_string(), n["state"].as_str().unwrap_or("").to_string()))
        .collect();
    assert_eq!(states, BTreeMap::from([("n1".to_string(), "up".to_string()), ("n2".to_string(), "down".to_string())]));
    let replica = &cluster["stores"][0]["shards"][shard as usize]["replicas"];
    assert_eq!(replica, &json!([{"node_id": "n2", "state": "down"}]), "{cluster}");
    // the other shard still takes writes
    let other: Vec<Value> = (0..)
        .map(|i| format!("q{i}"))
        .filter(|id| rvdb_it::shard_of(id, 2) != shard)
        .take(3)
        .map(|id| json!({"id": id, "vector": vector(1)}))
        .collect();
    let (status, _, answer) = rvdb_it::http("PUT", &url, None, Some(json!({"points": other}))).await;
    assert_eq!(status, 200, "{answer}");
}
