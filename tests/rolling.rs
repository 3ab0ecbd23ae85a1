//! A rolling restart (the Rust form of the seed's "hot code reload"): every storage node, the index manager and
//! both gateways of a 3-node cluster (store of 4 shards × 2 replicas) are restarted one after the other with
//! SIGTERM while two writers and a reader keep going. Each process drains: a node leaves the routing table before
//! its listener closes, a gateway reports not ready and finishes what is in flight. A client that follows the
//! README's retry advice (retry a failed call on the other gateway after a short pause) must see no request fail,
//! every acknowledged write and delete must be there afterwards with its value, and every shard's replicas must
//! be equal (digests).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rvdb_it::{ClusterNode, GatewayProcess, ManagerProcess, Mcp, free_port, replica_digests, wait_for_states};
use rvdb_proto::v1 as pb;
use serde_json::{Value, json};

const STORE: &str = "roll";
const DIM: usize = 8;
/// Ids per writer; each round overwrites `BATCH` of them, so every id is written many times.
const IDS: u64 = 100;
const BATCH: u64 = 10;
/// How long a call is retried before the client gives up (counted as a failed request).
const GIVE_UP: Duration = Duration::from_secs(20);

fn vector(writer: u64, id: u64, round: u64) -> Vec<f32> {
    (0..DIM as u64).map(|d| ((writer * 7_919 + id * 104_729 + round * 31 + d * 17) % 1_000) as f32 / 100.0).collect()
}

/// What the clients saw: failed attempts (retried) by the phase they happened in, and requests that failed for good.
#[derive(Default)]
struct Seen {
    phase: String,
    retried: BTreeMap<String, u64>,
    failed: Vec<String>,
    requests: u64,
}

/// The README's retry advice: a call that fails (connection refused or reset, HTTP 503, an unavailable replica) is
/// retried after a short pause on the other gateway; writes are idempotent (an upsert by id, a delete by id).
async fn call(gateways: &[Mcp; 2], first: usize, seen: &Mutex<Seen>, tool: &str, args: Value) -> Option<Value> {
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        match gateways[(first + attempt) % 2].call(tool, args.clone()).await {
            Ok(v) => {
                seen.lock().expect("seen").requests += 1;
                return Some(v);
            }
            Err(e) => {
                let mut s = seen.lock().expect("seen");
                let phase = s.phase.clone();
                *s.retried.entry(phase).or_default() += 1;
                if started.elapsed() > GIVE_UP {
                    s.failed.push(format!("{tool}: {e}"));
                    return None;
                }
            }
        }
        attempt += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_of_every_process_fails_no_request_and_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let manager_addr = format!("127.0.0.1:{}", free_port());
    let mut manager = ManagerProcess::start_at(&dir.path().join("manager"), 200, 2000, &manager_addr);
    let mut nodes: Vec<ClusterNode> = (1..=3)
        .map(|i| ClusterNode::start(&dir.path().join(format!("n{i}")), &manager.url, &format!("n{i}")))
        .collect();
    const ALL_UP: [(&str, pb::NodeState); 3] =
        [("n1", pb::NodeState::Up), ("n2", pb::NodeState::Up), ("n3", pb::NodeState::Up)];
    wait_for_states(&manager.url, &ALL_UP, Duration::from_secs(20)).await;
    let mut gateways: Vec<GatewayProcess> = (1..=2)
        .map(|i| GatewayProcess::start_on(&manager.url, &dir.path().join(format!("b{i}")), free_port(), &[]))
        .collect();
    let mcp = [Mcp::new(&gateways[0].mcp_url), Mcp::new(&gateways[1].mcp_url)];
    let seen = Arc::new(Mutex::new(Seen { phase: "start".into(), ..Seen::default() }));
    let created = call(
        &mcp,
        0,
        &seen,
        "create_store",
        json!({"store": STORE, "dimension": DIM, "metric": "euclidean", "shards": 4, "replication_factor": 2}),
    )
    .await
    .expect("create_store");
    assert_eq!(created["replication_factor"], 2);

    // Two writers, each owning its ids: upserts of round-numbered values, and every fifth round a delete. Each keeps
    // what it was told: id -> Some(round) (acknowledged value) or None (acknowledged delete).
    let stop = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2u64)
        .map(|w| {
            let (mcp, seen, stop) = (mcp.clone(), seen.clone(), stop.clone());
            tokio::spawn(async move {
                let mut state: BTreeMap<String, Option<u64>> = BTreeMap::new();
                let mut round = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    let ids: Vec<u64> = (0..BATCH).map(|j| (round * BATCH + j) % IDS).collect();
                    let points: Vec<Value> = ids
                        .iter()
                        .map(|&i| json!({"id": format!("w{w}-{i}"), "vector": vector(w, i, round), "metadata": {"round": round}}))
                        .collect();
                    let args = json!({"store": STORE, "points": points});
                    if call(&mcp, (w + round) as usize % 2, &seen, "insert_vectors", args).await.is_some() {
                        for &i in &ids {
                            state.insert(format!("w{w}-{i}"), Some(round));
                        }
                    } else {
                        break;
                    }
                    if round % 5 == 4 {
                        let id = format!("w{w}-{}", ids[0]);
                        let args = json!({"store": STORE, "id": id});
                        if call(&mcp, round as usize % 2, &seen, "delete_vector", args).await.is_some() {
                            state.insert(id, None);
                        } else {
                            break;
                        }
                    }
                    round += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                (state, round)
            })
        })
        .collect();
    let reader = {
        let (mcp, seen, stop) = (mcp.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            let mut reads = 0u64;
            while !stop.load(Ordering::SeqCst) {
                let q = vector(9, reads, 0);
                call(&mcp, reads as usize % 2, &seen, "search_vectors", json!({"store": STORE, "vector": q, "k": 5}))
                    .await;
                let id = format!("w{}-{}", reads % 2, reads % IDS);
                call(&mcp, (reads + 1) as usize % 2, &seen, "get_vector", json!({"store": STORE, "id": id})).await;
                reads += 1;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            reads
        })
    };
    let set_phase = |phase: &str| seen.lock().expect("seen").phase = phase.to_string();
    tokio::time::sleep(Duration::from_millis(800)).await;

    // The rolling restart: each node (waiting until it has caught up and serves again), the manager, each gateway.
    let mut timings = Vec::new();
    for node in nodes.iter_mut() {
        let id = node.node_id.clone();
        set_phase(&format!("node {id}"));
        let started = Instant::now();
        let (exit, clean) = tokio::task::block_in_place(|| node.restart_gracefully());
        assert!(clean, "node {id} did not exit cleanly on SIGTERM");
        wait_for_states(&manager.url, &ALL_UP, Duration::from_secs(30)).await;
        timings.push(format!("{id}: exit {exit:.2?}, back up {:.2?}", started.elapsed()));
        set_phase("between");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    set_phase("manager");
    let (exit, clean) = tokio::task::block_in_place(|| manager.terminate());
    assert!(clean, "the manager did not exit cleanly on SIGTERM");
    manager = ManagerProcess::start_at(&dir.path().join("manager"), 200, 2000, &manager_addr);
    wait_for_states(&manager.url, &ALL_UP, Duration::from_secs(30)).await;
    timings.push(format!("manager: exit {exit:.2?}"));
    for (g, gateway) in gateways.iter_mut().enumerate() {
        set_phase(&format!("gateway {g}"));
        let (exit, clean) = tokio::task::block_in_place(|| gateway.restart_gracefully());
        assert!(clean, "gateway {g} did not exit cleanly on SIGTERM");
        timings.push(format!("gateway {g}: exit {exit:.2?}"));
        set_phase("between");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    set_phase("end");
    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::SeqCst);
    let mut expected: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut rounds = 0;
    for w in writers {
        let (state, r) = w.await.expect("writer");
        expected.extend(state);
        rounds += r;
    }
    let reads = reader.await.expect("reader");
    let (retried, failed, requests) = {
        let s = seen.lock().expect("seen");
        (s.retried.clone(), s.failed.clone(), s.requests)
    };
    println!(
        "rolling restart: {requests} requests ({rounds} write rounds, {reads} read rounds), failed {}, attempts retried by \
         phase {retried:?}; {}",
        failed.len(),
        timings.join("; ")
    );
    assert!(failed.is_empty(), "requests failed during the rolling restart: {failed:?}");

    // Nothing lost: every id holds its last acknowledged value, every acknowledged delete is gone.
    for (id, want) in &expected {
        let got = call(&mcp, 0, &seen, "get_vector", json!({"store": STORE, "id": id})).await.expect("get");
        match want {
            Some(round) => {
                assert_eq!(got["found"], true, "{id}: acknowledged write lost");
                assert_eq!(got["point"]["metadata"]["round"], *round, "{id}: not its last acknowledged value");
            }
            None => assert_eq!(got["found"], false, "{id}: acknowledged delete came back"),
        }
    }
    let live = expected.values().filter(|v| v.is_some()).count() as u64;
    for (g, m) in mcp.iter().enumerate() {
        let stats = m.call("describe_store", json!({"store": STORE})).await.expect("describe");
        assert_eq!(stats["points"].as_u64(), Some(live), "gateway {g}: {stats}");
    }
    assert_replicas_equal(&manager.url).await;
}

/// Every shard's replicas hold the same records (digest and count), within 10 s.
async fn assert_replicas_equal(manager_url: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let digests = replica_digests(manager_url, STORE).await;
        let differ: Vec<_> = digests.iter().enumerate().filter(|(_, d)| !d.windows(2).all(|w| w[0] == w[1])).collect();
        if differ.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "replicas differ: {differ:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
