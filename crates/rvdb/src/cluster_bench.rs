//! Cluster benchmarks: real `rvdb manager` and `rvdb node` processes (this binary, spawned) on loopback, a gateway
//! in this process following the manager's routing table.
//!
//! - `cluster`: insert throughput and search QPS / recall@10 of one store on N nodes (GloVe data set).
//! - `catch-up`: how long a node that was down takes to catch up with writes it missed.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rvdb_core::{IndexKind, IndexSpec, Metric, StoreConfig};
use rvdb_gateway::gateway::{PointInput, SearchParams};
use rvdb_gateway::{Gateway, GatewayOptions};
use rvdb_proto::v1 as pb;
use serde_json::json;

use crate::npy;

/// A child `rvdb` process, killed when dropped.
struct Proc {
    child: Child,
    url: String,
    args: Vec<String>,
}

impl Proc {
    fn spawn(args: &[String]) -> anyhow::Result<Proc> {
        let mut child = Command::new(std::env::current_exe()?)
            .args(args)
            .env("RVDB_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().context("stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("RVDB_READY grpc=") {
                    let _ = tx.send(url.split_whitespace().next().unwrap_or_default().to_string());
                }
            }
        });
        let url = rx.recv_timeout(Duration::from_secs(300)).context("the process did not become ready")?;
        Ok(Proc { child, url, args: args.to_vec() })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        *self = Proc::spawn(&self.args)?;
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

struct Cluster {
    manager: Proc,
    nodes: Vec<Proc>,
    dir: PathBuf,
}

impl Cluster {
    fn start(dir: &Path, nodes: usize) -> anyhow::Result<Cluster> {
        let _ = std::fs::remove_dir_all(dir);
        let s = |v: &str| v.to_string();
        let manager = Proc::spawn(&[
            s("manager"),
            s("--grpc-addr"),
            s("127.0.0.1:0"),
            s("--persistence-dir"),
            dir.join("manager").display().to_string(),
            s("--heartbeat-interval"),
            s("250"),
            s("--node-timeout"),
            s("2000"),
        ])?;
        let nodes = (1..=nodes)
            .map(|i| {
                Proc::spawn(&[
                    s("node"),
                    s("--grpc-addr"),
                    s("127.0.0.1:0"),
                    s("--persistence-dir"),
                    dir.join(format!("n{i}")).display().to_string(),
                    s("--manager"),
                    manager.url.clone(),
                    s("--node-id"),
                    format!("n{i}"),
                    s("--sync-interval"),
                    s("1000"),
                ])
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let c = Cluster { manager, nodes, dir: dir.to_path_buf() };
        c.wait_states(&[], pb::NodeState::Up, Duration::from_secs(30))?;
        Ok(c)
    }

    fn table(&self) -> anyhow::Result<pb::RoutingTable> {
        let url = self.manager.url.clone();
        let rt = tokio::runtime::Handle::current();
        tokio::task::block_in_place(|| {
            rt.block_on(async move {
                let mut c = rvdb_proto::v1::index_manager_client::IndexManagerClient::connect(url).await?;
                Ok(c.get_routing_table(pb::GetRoutingTableRequest {}).await?.into_inner())
            })
        })
    }

    /// Waits until the given nodes (all when empty) are in `state`.
    fn wait_states(&self, ids: &[&str], state: pb::NodeState, within: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let t = self.table()?;
            let wanted = |id: &str| ids.is_empty() || ids.contains(&id);
            let seen = t.nodes.iter().filter(|n| wanted(&n.node_id)).count();
            let expected = if ids.is_empty() { self.nodes.len() } else { ids.len() };
            if seen == expected && t.nodes.iter().filter(|n| wanted(&n.node_id)).all(|n| n.state == state as i32) {
                return Ok(started.elapsed());
            }
            anyhow::ensure!(started.elapsed() < within, "nodes never reached {state:?}: {:?}", t.nodes);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for n in &mut self.nodes {
            n.kill();
        }
        self.manager.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn inputs(vectors: &[Vec<f32>], offset: usize) -> Vec<PointInput> {
    vectors
        .iter()
        .enumerate()
        .map(|(i, v)| PointInput {
            id: format!("p{}", offset + i),
            vector: v.clone(),
            metadata: json!({"i": offset + i}),
        })
        .collect()
}

/// Inserts `vectors` in batches of `batch`, `concurrency` requests in flight; returns points per second.
async fn load(
    gw: &Arc<Gateway>,
    store: &str,
    vectors: &[Vec<f32>],
    batch: usize,
    concurrency: usize,
) -> anyhow::Result<f64> {
    let started = Instant::now();
    let chunks: Vec<(usize, Vec<PointInput>)> =
        vectors.chunks(batch).enumerate().map(|(i, c)| (i * batch, inputs(c, i * batch))).collect();
    let queue = Arc::new(tokio::sync::Mutex::new(chunks.into_iter()));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (gw, queue, store) = (gw.clone(), queue.clone(), store.to_string());
        tasks.spawn(async move {
            loop {
                let next = queue.lock().await.next();
                let Some((_, points)) = next else { return anyhow::Ok(()) };
                gw.upsert(&store, points, |_, _| true).await?;
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(vectors.len() as f64 / started.elapsed().as_secs_f64())
}

pub async fn cluster(
    data: PathBuf,
    node_counts: Vec<usize>,
    shards: u32,
    replication: u32,
    queries: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let base = npy::read_f32(&data.join("base.npy"))?;
    let query = npy::read_f32(&data.join("query.npy"))?;
    let gt = npy::read_i32(&data.join("gt_cosine_ids.npy"))?;
    let vectors: Vec<Vec<f32>> = (0..base.rows).map(|i| base.row(i).to_vec()).collect();
    let nq = queries.min(query.rows);
    for nodes in node_counts {
        let dir = std::env::temp_dir().join(format!("rvdb-bench-cluster-{}-{nodes}", std::process::id()));
        let cluster = Cluster::start(&dir, nodes)?;
        let gw = Arc::new(Gateway::connect_manager(&cluster.manager.url, GatewayOptions::default()).await?);
        let mut config = StoreConfig::new("glove", base.cols as u32, Metric::Cosine);
        config.shards = shards;
        config.replication_factor = replication.min(nodes as u32);
        config.index = IndexSpec { kind: IndexKind::Flat, ..IndexSpec::default() };
        gw.create_store(config.clone()).await?;
        let insert_pps = load(&gw, "glove", &vectors, 1000, concurrency).await?;
        // search: `concurrency` clients, each query scatter-gathered over every shard
        let started = Instant::now();
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..concurrency.max(1) {
            let (gw, next, query) =
                (gw.clone(), next.clone(), (0..nq).map(|i| query.row(i).to_vec()).collect::<Vec<_>>());
            tasks.spawn(async move {
                let mut found = Vec::new();
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= query.len() {
                        return anyhow::Ok(found);
                    }
                    let params = SearchParams { k: 10, ..Default::default() };
                    let hits = gw.search("glove", query[i].clone(), &params).await?;
                    found.push((i, hits.into_iter().map(|h| h.id).collect::<Vec<_>>()));
                }
            });
        }
        let mut hits = 0usize;
        while let Some(r) = tasks.join_next().await {
            for (i, ids) in r?? {
                let truth: std::collections::HashSet<String> =
                    gt.row(i)[..10].iter().map(|&j| format!("p{j}")).collect();
                hits += ids.iter().filter(|id| truth.contains(*id)).count();
            }
        }
        let qps = nq as f64 / started.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"bench": "cluster", "nodes": nodes, "shards": shards, "replication_factor": config.replication_factor,
                   "n": vectors.len(), "dim": base.cols, "index": "flat", "metric": "cosine", "concurrency": concurrency,
                   "insert_points_per_s": insert_pps, "search_qps": qps, "queries": nq,
                   "recall_at_10": hits as f64 / (nq * 10) as f64})
        );
        drop(gw);
        drop(cluster);
    }
    Ok(())
}

/// 3 nodes, a store of 3 shards × 3 replicas (so the killed node hosts every shard and misses every write); one
/// node is killed, `missed` points are written, the node restarts: time until it is UP again (caught up), and
/// whether its replicas then equal their peers.
pub async fn catch_up(missed: usize, dimension: usize) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("rvdb-bench-catchup-{}", std::process::id()));
    let mut cluster = Cluster::start(&dir, 3)?;
    let gw = Arc::new(Gateway::connect_manager(&cluster.manager.url, GatewayOptions::default()).await?);
    let mut config = StoreConfig::new("c", dimension as u32, Metric::Euclidean);
    config.shards = 3;
    config.replication_factor = 3;
    gw.create_store(config).await?;
    let random = |n: usize| -> Vec<Vec<f32>> {
        use rand::Rng;
        let mut rng = rand::rng();
        (0..n).map(|_| (0..dimension).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect()
    };
    load(&gw, "c", &random(10_000), 1000, 2).await?;
    cluster.nodes[2].kill();
    let down_after = cluster.wait_states(&["n3"], pb::NodeState::Down, Duration::from_secs(30))?;
    let missed_vectors = random(missed);
    let written = Instant::now();
    let chunks: Vec<Vec<PointInput>> =
        missed_vectors.chunks(1000).enumerate().map(|(i, c)| inputs(c, 1_000_000 + i * 1000)).collect();
    for points in chunks {
        gw.upsert("c", points, |_, _| true).await?;
    }
    let write_s = written.elapsed().as_secs_f64();
    let restarted = Instant::now();
    cluster.nodes[2].restart()?;
    let process_s = restarted.elapsed().as_secs_f64();
    cluster.wait_states(&["n3"], pb::NodeState::Up, Duration::from_secs(600))?;
    let catch_up_s = restarted.elapsed().as_secs_f64();
    // the replicas now match
    let t = cluster.table()?;
    let address: std::collections::HashMap<&str, &str> =
        t.nodes.iter().map(|n| (n.node_id.as_str(), n.address.as_str())).collect();
    let mut equal = true;
    for placement in &t.stores[0].shards {
        let mut digests = std::collections::BTreeSet::new();
        for id in &placement.replica_node_ids {
            let mut c =
                rvdb_proto::v1::storage_node_client::StorageNodeClient::connect(address[id.as_str()].to_string())
                    .await?;
            let shard = Some(pb::ShardId { store: "c".into(), shard: placement.shard });
            digests.insert(c.digest(pb::DigestRequest { shard }).await?.into_inner().sha256);
        }
        equal &= digests.len() == 1;
    }
    println!(
        "{}",
        json!({"bench": "catch_up", "missed_writes": missed, "dim": dimension, "nodes": 3, "shards": 3,
               "replication_factor": 3, "detected_down_s": down_after.as_secs_f64(),
               "missed_write_s": write_s, "node_start_s": process_s,
               "restart_to_up_s": catch_up_s, "replicas_equal": equal,
               "note": "restart_to_up_s includes the node's start, two catch-up passes and 2 x heartbeat_interval (250 ms) of settling"})
    );
    Ok(())
}
