//! A randomized fault campaign on real processes, reproducible from a seed (the schedule of faults and
//! operations; the timing of real processes is not).
//!
//! **Cluster.** One index manager, three storage nodes, two gateways; two stores, `rf2` (2 shards × 2 replicas)
//! and `rf3` (2 shards × 3 replicas), default write consistency. Every link that a partition can cut goes through
//! a [`Proxy`]: into each node (the URL it advertises, used by gateways, the manager and its peers), from each
//! node to the manager, and from each gateway to the manager.
//!
//! **Clients.** Four tasks, each owning its keys (so each key has one sequential history): upserts of unique
//! values, deletes, and reads, each through either gateway. Every answer is recorded: an acknowledged write
//! (2xx), or an indeterminate one (anything else: it may or may not have been applied, now or later).
//!
//! **Nemesis.** One fault at a time, chosen at random: kill -9 a node (then start it again), SIGSTOP one (then
//! SIGCONT), cut one node off (all its links), cut two nodes off (the other "half"), kill -9 the manager (then
//! start it again on its data), kill -9 a gateway (then start it again), restart a gateway with its clock off by
//! seconds (then without), cut a gateway off from the manager (its routing table goes stale), and two at once:
//! a node dies, a gateway learns it and is cut off, the node returns and catches up while that gateway still
//! thinks it down (what write fencing is for). Each lasts a random 1–4 s, then heals; the next comes once every
//! node is UP again.
//!
//! **Checker.** After the last fault heals: every shard's replicas must reach equal digests (the time it takes is
//! reported), then each key's final value must be the outcome of its last acknowledged write or of an
//! indeterminate one (Jepsen's rule for a register: an operation without an answer may take effect at any time
//! after it was sent). So: no acknowledged write lost to an older one (`lost`), no acknowledged delete undone by
//! an older write (`resurrected`), no value that was never written, in a final read or any read during the run
//! (`phantom`).
//!
//! Short by default (part of the test command); long with `tests/campaign.sh --duration 30m --seed N`
//! (`RVDB_CAMPAIGN_SECS`, `RVDB_CAMPAIGN_SEED`). It prints one summary line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rvdb_it::{
    ClusterNode, GatewayProcess, ManagerProcess, Proxy, free_port, replica_digests, routing_table, try_http,
};
use rvdb_proto::v1 as pb;
use serde_json::{Value, json};

const STORES: [&str; 2] = ["rf2", "rf3"];
const CLIENTS: usize = 4;
const KEYS_PER_CLIENT: usize = 64;
const HEARTBEAT_MS: u64 = 200;
const NODE_TIMEOUT_MS: u64 = 1500;
/// A client gives up on a request after this long (the request is then indeterminate).
const REQUEST_DEADLINE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq)]
enum Write {
    Upsert(String),
    Delete,
}

#[derive(Debug, Clone)]
struct Op {
    write: Write,
    acknowledged: bool,
}

/// What the clients did, per key `(store, id)`.
#[derive(Debug, Default)]
struct History {
    writes: BTreeMap<(String, String), Vec<Op>>,
    reads: u64,
    phantom_reads: Vec<String>,
    failed: u64,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn randomized_faults_lose_nothing_acknowledged_and_replicas_converge() {
    let seed: u64 = env_or("RVDB_CAMPAIGN_SEED", 1);
    let duration = Duration::from_secs(env_or("RVDB_CAMPAIGN_SECS", 75));
    let dir = tempfile::tempdir().expect("tempdir");
    let started = Instant::now();

    // --- the cluster, every cuttable link behind a proxy
    let manager_addr = format!("127.0.0.1:{}", free_port());
    let manager_env = [("RVDB_ANTI_ENTROPY_INTERVAL", "1000"), ("RVDB_ANTI_ENTROPY_PAUSE", "10")];
    let start_manager = |dir: &std::path::Path| {
        ManagerProcess::start_with_env(&dir.join("manager"), HEARTBEAT_MS, NODE_TIMEOUT_MS, &manager_addr, &manager_env)
    };
    let mut manager = Some(start_manager(dir.path()));
    let manager_url = format!("http://{manager_addr}");
    let mut inbound = Vec::new();
    let mut to_manager = Vec::new();
    let mut nodes = Vec::new();
    for i in 1..=3 {
        let addr = format!("127.0.0.1:{}", free_port());
        let into = Proxy::start(&format!("http://{addr}")).await;
        let out = Proxy::start(&manager_url).await;
        let node = ClusterNode::start_at(
            &dir.path().join(format!("n{i}")),
            &out.url,
            &format!("n{i}"),
            &addr,
            Some(&into.url),
        );
        inbound.push(into);
        to_manager.push(out);
        nodes.push(node);
    }
    wait_all_up(&manager_url, Duration::from_secs(30)).await.expect("nodes up");
    let mut gateway_links = Vec::new();
    let mut gateways = Vec::new();
    for _ in 0..2 {
        let link = Proxy::start(&manager_url).await;
        let extra = ["--call-timeout", "3000", "--read-timeout", "1000"];
        gateways.push(GatewayProcess::start_on(&link.url, &dir.path().join("backups"), free_port(), &extra));
        gateway_links.push(link);
    }
    let bases: Vec<String> = gateways.iter().map(|g| g.mcp_url.trim_end_matches("/mcp").to_string()).collect();
    for (store, rf) in [("rf2", 2), ("rf3", 3)] {
        let body = json!({"name": store, "dimension": 2, "metric": "euclidean", "shards": 2, "replication_factor": rf});
        let (status, text) = try_http("POST", &format!("{}/v1/stores", bases[0]), Some(&body), REQUEST_DEADLINE)
            .await
            .expect("create store");
        assert_eq!(status, 201, "{text}");
    }

    // --- clients
    let history = Arc::new(Mutex::new(History::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (history, stop, bases) = (history.clone(), stop.clone(), bases.clone());
        let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(1_000_003).wrapping_add(c as u64 + 1));
        clients.push(tokio::spawn(async move {
            let mut seq = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let k = rng.random_range(0..KEYS_PER_CLIENT);
                let store = STORES[k % 2];
                let id = format!("c{c}-k{k}");
                let base = &bases[rng.random_range(0..bases.len())];
                let roll = rng.random_range(0..100);
                if roll < 70 {
                    seq += 1;
                    let value = format!("c{c}-{seq}");
                    let body = json!({"points": [{"id": id, "vector": [seq as f32, 1.0], "metadata": {"v": value}}]});
                    let url = format!("{base}/v1/stores/{store}/points");
                    let out = try_http("PUT", &url, Some(&body), REQUEST_DEADLINE).await;
                    record(&history, store, &id, Write::Upsert(value), &out);
                } else if roll < 85 {
                    let body = json!({"ids": [id]});
                    let url = format!("{base}/v1/stores/{store}/points/delete");
                    let out = try_http("POST", &url, Some(&body), REQUEST_DEADLINE).await;
                    record(&history, store, &id, Write::Delete, &out);
                } else {
                    let url = format!("{base}/v1/stores/{store}/points/{id}");
                    if let Ok((status, body)) = try_http("GET", &url, None, REQUEST_DEADLINE).await {
                        let mut h = history.lock().expect("history");
                        h.reads += 1;
                        if status == 200 {
                            let v = value_of(&body);
                            let known = h.writes.get(&(store.to_string(), id.clone())).is_some_and(|ops| {
                                ops.iter().any(|o| matches!(&o.write, Write::Upsert(w) if Some(w) == v.as_ref()))
                            });
                            if !known {
                                h.phantom_reads.push(format!("{store}/{id} read {v:?}"));
                            }
                        }
                    }
                }
                if out_of_time(&stop) {
                    break;
                }
            }
        }));
    }

    // --- nemesis
    let mut rng = StdRng::seed_from_u64(seed);
    let mut faults: BTreeMap<&'static str, u32> = BTreeMap::new();
    let kinds = [
        "kill-node",
        "pause-node",
        "partition-node",
        "partition-halves",
        "restart-manager",
        "restart-gateway",
        "clock-offset",
        "partition-gateway",
        "stale-gateway",
    ];
    while started.elapsed() < duration {
        let kind = kinds[rng.random_range(0..kinds.len())];
        let hold = Duration::from_millis(rng.random_range(1000..4000));
        let n = rng.random_range(0..nodes.len());
        let g = rng.random_range(0..gateways.len());
        *faults.entry(kind).or_default() += 1;
        eprintln!(
            "campaign: t={:>5.1}s fault {kind} (node n{}, gateway g{}) for {hold:?}",
            secs(started),
            n + 1,
            g + 1
        );
        match kind {
            "kill-node" => {
                nodes[n].kill();
                tokio::time::sleep(hold).await;
                nodes[n].start_again();
            }
            "pause-node" => {
                nodes[n].signal("STOP");
                tokio::time::sleep(hold).await;
                nodes[n].signal("CONT");
            }
            "partition-node" => {
                inbound[n].cut();
                to_manager[n].cut();
                tokio::time::sleep(hold).await;
                inbound[n].mend();
                to_manager[n].mend();
            }
            "partition-halves" => {
                let other = (n + 1 + rng.random_range(0..nodes.len() - 1)) % nodes.len();
                for i in [n, other] {
                    inbound[i].cut();
                    to_manager[i].cut();
                }
                tokio::time::sleep(hold).await;
                for i in [n, other] {
                    inbound[i].mend();
                    to_manager[i].mend();
                }
            }
            "restart-manager" => {
                drop(manager.take()); // SIGKILL
                tokio::time::sleep(hold).await;
                manager = Some(start_manager(dir.path()));
            }
            "restart-gateway" => {
                gateways[g].restart_with_env(&[]);
            }
            "clock-offset" => {
                let ms = rng.random_range(2000..10000) * if rng.random_bool(0.5) { 1 } else { -1 };
                eprintln!("campaign: gateway g{} clock {ms:+} ms", g + 1);
                gateways[g].restart_with_env(&[("RVDB_CLOCK_OFFSET_MS", &ms.to_string())]);
                tokio::time::sleep(hold).await;
                gateways[g].restart_with_env(&[]);
            }
            "partition-gateway" => {
                gateway_links[g].cut();
                tokio::time::sleep(hold).await;
                gateway_links[g].mend();
            }
            "stale-gateway" => {
                // Two faults at once, the case write fencing exists for: a node dies, a gateway learns it and
                // is then cut off from the manager; the node comes back and catches up while that gateway's
                // table still says it is down.
                nodes[n].kill();
                tokio::time::sleep(Duration::from_millis(NODE_TIMEOUT_MS + 4 * HEARTBEAT_MS)).await;
                gateway_links[g].cut();
                nodes[n].start_again();
                if let Err(e) = wait_all_up(&manager_url, Duration::from_secs(60)).await {
                    panic!("the node did not come back under a stale gateway: {e}");
                }
                tokio::time::sleep(hold).await;
                gateway_links[g].mend();
            }
            _ => unreachable!(),
        }
        if let Err(e) = wait_all_up(&manager_url, Duration::from_secs(60)).await {
            panic!("after {kind} healed, the cluster did not recover: {e}");
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1500))).await;
    }
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let operations_done = secs(started);

    // --- convergence: equal digests on every shard of every store
    let converge_started = Instant::now();
    let deadline = converge_started + Duration::from_secs(90);
    loop {
        let mut equal = true;
        for store in STORES {
            for shard in replica_digests(&manager_url, store).await {
                equal &= shard.windows(2).all(|w| w[0] == w[1]) && !shard.iter().any(|(d, _)| d.len() != 64);
            }
        }
        if equal {
            break;
        }
        assert!(Instant::now() < deadline, "replicas did not converge within 90 s of the last write");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // from the last write and the last heal (whichever came later: the clients stop after the last heal)
    let convergence = converge_started.elapsed();

    // --- the checker
    let h = std::mem::take(&mut *history.lock().expect("history"));
    let (mut lost, mut resurrected, mut phantom) = (Vec::new(), Vec::new(), h.phantom_reads.clone());
    let (mut upserts, mut deletes, mut acknowledged) = (0u64, 0u64, 0u64);
    for ((store, id), ops) in &h.writes {
        for o in ops {
            match o.write {
                Write::Upsert(_) => upserts += 1,
                Write::Delete => deletes += 1,
            }
            acknowledged += u64::from(o.acknowledged);
        }
        let url = format!("{}/v1/stores/{store}/points/{id}", bases[0]);
        let (status, body) = try_http("GET", &url, None, REQUEST_DEADLINE).await.expect("final read");
        let final_value = match status {
            200 => value_of(&body),
            404 => None,
            _ => panic!("final read of {store}/{id}: {status} {body}"),
        };
        match verdict(ops, &final_value) {
            Verdict::Allowed => {}
            Verdict::Phantom => phantom.push(format!("{store}/{id}: final {final_value:?}, history {ops:?}")),
            Verdict::Resurrected => resurrected.push(format!("{store}/{id}: final {final_value:?}, history {ops:?}")),
            Verdict::Lost => lost.push(format!("{store}/{id}: final {final_value:?}, history {ops:?}")),
        }
    }
    let reads = h.reads;
    let faults_text: Vec<String> = faults.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!(
        "campaign: seed={seed} duration={operations_done:.0}s operations={} (upserts {upserts}, deletes {deletes}, \
         reads {reads}) acknowledged={acknowledged} indeterminate={} faults={} [{}] lost={} resurrected={} \
         phantom={} convergence={:.1}s",
        upserts + deletes + reads,
        h.failed,
        faults.values().sum::<u32>(),
        faults_text.join(" "),
        lost.len(),
        resurrected.len(),
        phantom.len(),
        convergence.as_secs_f64(),
    );
    assert!(
        lost.is_empty() && resurrected.is_empty() && phantom.is_empty(),
        "lost: {lost:#?}\nresurrected: \
        {resurrected:#?}\nphantom: {phantom:#?}"
    );
    assert!(acknowledged > 100, "too few acknowledged writes to mean anything: {acknowledged}");
    assert!(faults.values().sum::<u32>() >= 5, "too few faults: {faults:?}");
    drop(manager);
}

#[derive(Debug, PartialEq)]
enum Verdict {
    Allowed,
    /// The final value was never written.
    Phantom,
    /// The last acknowledged write was a delete, and an earlier write's value is back.
    Resurrected,
    /// The last acknowledged write's outcome is gone, replaced by an older acknowledged one (or by nothing).
    Lost,
}

/// Whether `final_value` (None: absent) may be a key's final state after its sequential history `ops`: the outcome
/// of the last acknowledged write, or of any write without an answer (it may have taken effect at any time after
/// it was sent); with no acknowledged write, also the initial absence.
fn verdict(ops: &[Op], final_value: &Option<String>) -> Verdict {
    let outcome = |o: &Op| match &o.write {
        Write::Upsert(v) => Some(v.clone()),
        Write::Delete => None,
    };
    let last_acked = ops.iter().rposition(|o| o.acknowledged);
    let mut allowed: HashSet<Option<String>> = ops.iter().filter(|o| !o.acknowledged).map(outcome).collect();
    allowed.insert(last_acked.and_then(|i| outcome(&ops[i])));
    if allowed.contains(final_value) {
        return Verdict::Allowed;
    }
    let written = final_value.as_ref().is_none_or(|v| ops.iter().any(|o| o.write == Write::Upsert(v.clone())));
    match (written, last_acked.map(|i| &ops[i].write)) {
        (false, _) => Verdict::Phantom,
        (true, Some(Write::Delete)) => Verdict::Resurrected,
        _ => Verdict::Lost,
    }
}

/// The checker itself can fail: each anomaly it looks for, in a made-up history.
#[test]
fn the_checker_finds_lost_resurrected_and_phantom_values() {
    let up = |v: &str, acknowledged| Op { write: Write::Upsert(v.into()), acknowledged };
    let del = |acknowledged| Op { write: Write::Delete, acknowledged };
    let some = |v: &str| Some(v.to_string());
    let h = [up("a", true), up("b", true), up("c", false)];
    assert_eq!(verdict(&h, &some("b")), Verdict::Allowed, "the last acknowledged");
    assert_eq!(verdict(&h, &some("c")), Verdict::Allowed, "an indeterminate write took effect");
    assert_eq!(verdict(&h, &some("a")), Verdict::Lost, "b was acknowledged after a");
    assert_eq!(verdict(&h, &None), Verdict::Lost, "nothing deleted it");
    assert_eq!(verdict(&h, &some("zz")), Verdict::Phantom);
    let h = [up("a", true), del(true), up("b", false)];
    assert_eq!(verdict(&h, &None), Verdict::Allowed);
    assert_eq!(verdict(&h, &some("b")), Verdict::Allowed);
    assert_eq!(verdict(&h, &some("a")), Verdict::Resurrected);
    let h = [up("a", false), del(false)];
    assert_eq!(verdict(&h, &None), Verdict::Allowed, "never acknowledged: absent is fine");
    assert_eq!(verdict(&h, &some("a")), Verdict::Allowed);
    let h = [del(false), up("a", true), up("b", false)];
    assert_eq!(verdict(&h, &None), Verdict::Allowed, "the indeterminate delete may have come last");
}

fn out_of_time(stop: &AtomicBool) -> bool {
    stop.load(Ordering::Relaxed)
}

fn secs(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

fn record(history: &Mutex<History>, store: &str, id: &str, write: Write, out: &Result<(u16, String), String>) {
    let acknowledged = matches!(out, Ok((status, _)) if (200..300).contains(status));
    let mut h = history.lock().expect("history");
    if !acknowledged {
        h.failed += 1;
    }
    h.writes.entry((store.to_string(), id.to_string())).or_default().push(Op { write, acknowledged });
}

/// The `v` metadata value of a point as REST returns it.
fn value_of(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    v["metadata"]["v"].as_str().map(str::to_string)
}

/// Waits until the manager lists every node UP; `Err` with the states after `within`.
async fn wait_all_up(manager_url: &str, within: Duration) -> Result<(), String> {
    let deadline = Instant::now() + within;
    loop {
        let nodes = routing_table(manager_url).await.map(|t| t.nodes).unwrap_or_default();
        if nodes.len() == 3 && nodes.iter().all(|n| n.state == pb::NodeState::Up as i32) {
            return Ok(());
        }
        if Instant::now() > deadline {
            let states: HashMap<String, i32> = nodes.into_iter().map(|n| (n.node_id, n.state)).collect();
            return Err(format!("node states {states:?}"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
