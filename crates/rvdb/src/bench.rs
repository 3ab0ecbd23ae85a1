//! `rvdb bench`: the measurements the README and issue notes report. Each prints one JSON object per line so
//! `bench/run.sh` can set them beside the peers (faiss, hnswlib, …) measured in the same run.
//!
//! - `flat`: single-thread exact search QPS and recall@10 on a data set from `../shared/bench/make_glove.py`.
//! - `insert`: insert throughput into a real node (RocksDB, WAL on), in process and over gRPC on loopback.
//! - `cluster`, `catch-up`: see [`crate::cluster_bench`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use rvdb_core::{FlatIndex, Metric, StoreConfig};
use rvdb_node::shard::PointData;
use rvdb_node::{Node, NodeOptions, ShardKey};
use rvdb_proto::v1 as pb;
use serde_json::json;

use crate::npy;
use crate::server::incoming;

#[derive(Debug, clap::Subcommand)]
pub enum BenchCommand {
    /// Exact (flat) search: single-thread QPS and recall@10 against the data set's ground truth.
    Flat {
        /// Directory written by make_glove.py (base.npy, query.npy, gt_<metric>_ids.npy).
        #[arg(long)]
        data: PathBuf,
        /// Metrics to run: cosine, l2, l1, dot.
        #[arg(long, value_delimiter = ',', default_value = "cosine,l2,l1,dot")]
        metrics: Vec<String>,
        /// Queries to time.
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        /// Also time the plain f32 scan (no SQ8 codes) of the same data, as engine `rvdb-f32`.
        #[arg(long)]
        plain: bool,
    },
    /// HNSW: single-thread build time, then recall@10 and QPS at each ef.
    Hnsw {
        #[arg(long)]
        data: PathBuf,
        /// cosine, l2, l1 or dot.
        #[arg(long, default_value = "cosine")]
        metric: String,
        #[arg(long, default_value_t = 16)]
        m: u32,
        #[arg(long, default_value_t = 200)]
        ef_construction: u32,
        #[arg(long, value_delimiter = ',', default_value = "10,20,40,80,160,320")]
        ef: Vec<usize>,
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        /// Index only the first N base vectors (0 = all); recall is then against brute force over those.
        #[arg(long, default_value_t = 0)]
        limit: usize,
        /// none or sq8 (graph on 8-bit codes, results re-scored on the full vectors).
        #[arg(long, default_value = "none")]
        quantization: String,
        /// Also run filtered searches (10% and 1% selectivity, exact ground truth) at these ef values (0 = none).
        #[arg(long, value_delimiter = ',', default_value = "64")]
        filtered_ef: Vec<usize>,
        /// Threads of the graph build (searches are always one thread, one query at a time).
        #[arg(long, default_value_t = 1)]
        build_threads: usize,
    },
    /// Insert throughput into a node with the WAL on.
    Insert {
        /// Data set directory (base.npy); without it, random vectors.
        #[arg(long)]
        data: Option<PathBuf>,
        /// Vectors to insert (random mode) or the first N of the data set.
        #[arg(long, default_value_t = 200_000)]
        count: usize,
        /// Dimension in random mode.
        #[arg(long, default_value_t = 128)]
        dimension: usize,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        /// Where the node's RocksDB goes (a fresh temporary directory by default).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// On-disk size of a store under each compression setting (after a full compaction).
    Compression {
        /// Data set directory (base.npy); without it, random vectors.
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value_t = 200_000)]
        count: usize,
        #[arg(long, default_value_t = 128)]
        dimension: usize,
    },
    /// Backup and restore of a large store through the gateway: time and size.
    Backup {
        #[arg(long, default_value_t = 1_000_000)]
        count: usize,
        #[arg(long, default_value_t = 128)]
        dimension: usize,
    },
    /// A store on a cluster of N nodes (real manager and node processes): insert throughput, search QPS, recall.
    Cluster {
        /// Directory written by make_glove.py (base.npy, query.npy, gt_cosine_ids.npy).
        #[arg(long)]
        data: PathBuf,
        /// Cluster sizes to measure, one after the other.
        #[arg(long, value_delimiter = ',', default_value = "1,3")]
        nodes: Vec<usize>,
        #[arg(long, default_value_t = 3)]
        shards: u32,
        #[arg(long, default_value_t = 1)]
        replication_factor: u32,
        #[arg(long, default_value_t = 1000)]
        queries: usize,
        /// Requests in flight (insert batches of 1000, searches).
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
    },
    /// Catch-up of a node that missed writes while it was down: time from its restart until it serves again.
    CatchUp {
        #[arg(long, default_value_t = 100_000)]
        missed: usize,
        #[arg(long, default_value_t = 50)]
        dimension: usize,
    },
    /// Embedding throughput of the in-process model (texts/s) on a file of texts, one per line; the thread count
    /// is rayon's (`RAYON_NUM_THREADS=1`). The peer: bench/embed_peer.py (sentence-transformers).
    Embed {
        #[arg(long)]
        texts: PathBuf,
        /// Model directory (default: the default model under `$RVDB_MODEL_DIR` / `~/.cache/rvdb/models`).
        #[arg(long)]
        model: Option<PathBuf>,
    },
    /// Keyword (BM25) search in process, single thread: index build (documents/s) and query QPS, with the
    /// analysed tokens of documents and queries and the top-k written out for peers to compare (bench/bm25_peer.py).
    Keyword {
        /// One document per line.
        #[arg(long)]
        texts: PathBuf,
        /// One query per line.
        #[arg(long)]
        queries: PathBuf,
        /// The store's text_index settings, as JSON (default: the defaults).
        #[arg(long)]
        text_index: Option<String>,
        #[arg(short, long, default_value_t = 10)]
        k: usize,
        /// Directory for tokens.jsonl (documents), query_tokens.jsonl and results.jsonl.
        #[arg(long)]
        out: PathBuf,
    },
    /// Latency a `search_vectors` MCP call adds over a direct gRPC search to the node (median, p99).
    GatewayLatency {
        #[arg(long, default_value_t = 10_000)]
        count: usize,
        #[arg(long, default_value_t = 128)]
        dimension: usize,
        #[arg(long, default_value_t = 2_000)]
        queries: usize,
        #[arg(short, long, default_value_t = 10)]
        k: u32,
    },
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Flat { data, metrics, queries, k, plain } => {
            tokio::task::spawn_blocking(move || flat(data, metrics, queries, k, plain)).await?
        }
        BenchCommand::Insert { data, count, dimension, batch, dir } => insert(data, count, dimension, batch, dir).await,
        BenchCommand::GatewayLatency { count, dimension, queries, k } => {
            gateway_latency(count, dimension, queries, k).await
        }
        BenchCommand::Keyword { texts, queries, text_index, k, out } => {
            tokio::task::spawn_blocking(move || keyword(texts, queries, text_index, k, out)).await?
        }
        BenchCommand::Embed { texts, model } => tokio::task::spawn_blocking(move || embed(texts, model)).await?,
        BenchCommand::Hnsw {
            data,
            metric,
            m,
            ef_construction,
            ef,
            queries,
            limit,
            quantization,
            filtered_ef,
            build_threads,
        } => {
            let q: rvdb_core::Quantization = quantization.parse()?;
            let run =
                HnswRun { data, metric_name: metric, m, ef_c: ef_construction, efs: ef, queries, limit, build_threads };
            tokio::task::spawn_blocking(move || hnsw(run, q, filtered_ef)).await?
        }
        BenchCommand::Compression { data, count, dimension } => {
            tokio::task::spawn_blocking(move || compression(data, count, dimension)).await?
        }
        BenchCommand::Backup { count, dimension } => backup(count, dimension).await,
        BenchCommand::Cluster { data, nodes, shards, replication_factor, queries, concurrency } => {
            crate::cluster_bench::cluster(data, nodes, shards, replication_factor, queries, concurrency).await
        }
        BenchCommand::CatchUp { missed, dimension } => crate::cluster_bench::catch_up(missed, dimension).await,
    }
}

fn metric_of(name: &str) -> anyhow::Result<Metric> {
    Ok(match name {
        "cosine" => Metric::Cosine,
        "l2" => Metric::Euclidean,
        "l1" => Metric::Manhattan,
        "dot" => Metric::Dot,
        other => anyhow::bail!("unknown metric {other}: use cosine, l2, l1, dot"),
    })
}

/// The flat index as a store uses it (SQ8 codes with error bounds above `CODED_MIN_FLOATS`, exact), and with
/// `plain` also the f32 scan alone (`rvdb-f32`), measured the same way right after it.
fn flat(data: PathBuf, metrics: Vec<String>, queries: usize, k: usize, plain: bool) -> anyhow::Result<()> {
    let base = npy::read_f32(&data.join("base.npy"))?;
    let query = npy::read_f32(&data.join("query.npy"))?;
    let nq = queries.min(query.rows);
    eprintln!(
        "flat: base {}x{}, {} queries, k={k}, simd {:?}, vnni {}",
        base.rows,
        base.cols,
        nq,
        crate::index_options().simd.level(),
        crate::index_options().uses_vnni()
    );
    let runs: &[(&str, bool)] = if plain { &[("rvdb", true), ("rvdb-f32", false)] } else { &[("rvdb", true)] };
    for name in metrics {
        for &(engine, coded) in runs {
            flat_run(&data, &base, &query, &name, engine, coded, nq, k)?;
        }
    }
    Ok(())
}

/// CPU time of this thread (Linux: `/proc/thread-self/schedstat`; NaN elsewhere): on a shared machine, queries
/// per CPU-second are what a time-sliced run cannot distort (bandwidth contention still can).
fn thread_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(f64::NAN, |ns| ns * 1e-9)
}

#[allow(clippy::too_many_arguments)]
fn flat_run(
    data: &std::path::Path,
    base: &npy::Matrix<f32>,
    query: &npy::Matrix<f32>,
    name: &str,
    engine: &str,
    coded: bool,
    nq: usize,
    k: usize,
) -> anyhow::Result<()> {
    let metric = metric_of(name)?;
    let gt = npy::read_i32(&data.join(format!("gt_{name}_ids.npy")))?;
    let t = Instant::now();
    let options = rvdb_core::options::IndexOptions { flat_codes: coded, ..crate::index_options() };
    let mut index = FlatIndex::with_options(base.cols, metric, options);
    index.reserve(base.rows);
    for i in 0..base.rows {
        index.upsert(&i.to_string(), base.row(i));
    }
    let build_s = t.elapsed().as_secs_f64();
    // Warm-up pass over the data (page faults, caches), not timed.
    let _ = index.search(query.row(0), k, None);
    let t = Instant::now();
    let cpu = thread_cpu_seconds();
    let mut results = Vec::with_capacity(nq);
    for qi in 0..nq {
        results.push(index.search(query.row(qi), k, None));
    }
    let secs = t.elapsed().as_secs_f64();
    let cpu_secs = thread_cpu_seconds() - cpu;
    let mut hits = 0usize;
    for (qi, res) in results.iter().enumerate() {
        let truth: std::collections::HashSet<i32> = gt.row(qi)[..k].iter().copied().collect();
        hits += res.iter().filter(|h| h.id.parse::<i32>().is_ok_and(|id| truth.contains(&id))).count();
    }
    let n = base.rows.max(1) as f64;
    println!(
        "{}",
        json!({
            "bench": "flat", "engine": engine, "metric": name, "n": base.rows, "dim": base.cols,
            "queries": nq, "k": k, "qps": nq as f64 / secs, "cpu_qps": nq as f64 / cpu_secs,
            "recall": hits as f64 / (nq * k) as f64,
            "build_s": build_s, "simd": options.simd.level().as_str(),
            "coded": index.is_coded(), "vnni": index.is_coded() && options.uses_vnni(),
            "bytes_per_vector": index.memory_bytes() as f64 / n,
            "code_bytes_per_vector": index.coded_bytes() as f64 / n,
        })
    );
    Ok(())
}

struct HnswRun {
    data: PathBuf,
    metric_name: String,
    m: u32,
    ef_c: u32,
    efs: Vec<usize>,
    queries: usize,
    limit: usize,
    build_threads: usize,
}

/// The store's own search engine (`ShardIndex`: flat + graph + payload index + planner), built the way a node
/// builds it (one background job, single thread), then searched one query at a time.
fn hnsw(run: HnswRun, quantization: rvdb_core::Quantization, filtered_efs: Vec<usize>) -> anyhow::Result<()> {
    use rvdb_core::engine::{SearchRequest, ShardIndex};
    use rvdb_core::filter::Filter;
    let HnswRun { data, metric_name, m, ef_c, efs, queries, limit, build_threads } = run;
    let metric = metric_of(&metric_name)?;
    let base = npy::read_f32(&data.join("base.npy"))?;
    let query = npy::read_f32(&data.join("query.npy"))?;
    let n = if limit == 0 { base.rows } else { limit.min(base.rows) };
    let nq = queries.min(query.rows);
    let k = 10;
    let spec = rvdb_core::IndexSpec {
        kind: rvdb_core::IndexKind::Hnsw,
        hnsw: rvdb_core::HnswParams { m, ef_construction: ef_c, ef_search: 64 },
        quantization,
    };
    let mut index = ShardIndex::with_options(base.cols, metric, spec, crate::index_options());
    index.reserve(n);
    // Metadata for the filtered runs: `b10` (10% per value), `b100` (1%), and `r` for a range filter that no
    // inverted index answers (1%), so the filter has to be applied inside the graph traversal.
    for i in 0..n {
        let r = ((i * 7919) % 10_000) as f64 / 10_000.0;
        index.upsert(&i.to_string(), base.row(i), json!({"b10": i % 10, "b100": (i * 31) % 100, "r": r}), 0);
    }
    let flat_bytes = index.memory_bytes();
    let t = Instant::now();
    let mut job = index.begin_build(None, &|_| 0).ok_or_else(|| anyhow::anyhow!("not an HNSW spec"))?;
    job.set_threads(build_threads);
    job.run(&|| false);
    let build_s = t.elapsed().as_secs_f64();
    let graph_bytes = job.graph().memory_bytes();
    index.install(job);
    let q_name = quantization.as_str();
    eprintln!(
        "hnsw ({q_name}, {build_threads} build threads): built {n} x {} in {build_s:.1} s ({:.0} vectors/s)",
        base.cols,
        n as f64 / build_s
    );
    // Ground truth: the data set's for the full base, exact flat search for a prefix.
    let truth: Vec<Vec<i32>> = if n == base.rows {
        let gt = npy::read_i32(&data.join(format!("gt_{metric_name}_ids.npy")))?;
        (0..nq).map(|q| gt.row(q)[..k].to_vec()).collect()
    } else {
        (0..nq)
            .map(|q| {
                let req = SearchRequest { query: query.row(q), k, ef: None, filter: None, exact: true };
                index.search(&req).hits.iter().map(|h| h.id.parse().unwrap_or(-1)).collect()
            })
            .collect()
    };
    let recall = |results: &[Vec<rvdb_core::SearchHit>], truth: &[Vec<i32>]| {
        let mut hits = 0usize;
        for (qi, res) in results.iter().enumerate() {
            hits += res.iter().filter(|h| h.id.parse::<i32>().is_ok_and(|id| truth[qi].contains(&id))).count();
        }
        hits as f64 / (results.len() * k) as f64
    };
    let memory = index.memory_bytes();
    for ef in efs {
        let req = |qi: usize| SearchRequest { query: query.row(qi), k, ef: Some(ef), filter: None, exact: false };
        let _ = index.search(&req(0));
        let t = Instant::now();
        let results: Vec<_> = (0..nq).map(|qi| index.search(&req(qi)).hits).collect();
        let secs = t.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"bench": "hnsw", "engine": "rvdb", "quantization": q_name, "metric": metric_name, "n": n,
                   "dim": base.cols, "m": m, "ef_construction": ef_c, "ef": ef, "queries": nq, "build_threads": build_threads,
                   "qps": nq as f64 / secs, "recall": recall(&results, &truth), "build_s": build_s,
                   "build_vectors_per_s": n as f64 / build_s, "memory_bytes": memory,
                   "graph_bytes_per_vector": graph_bytes / n.max(1),
                   "bytes_per_vector": memory / n.max(1), "flat_bytes_per_vector": flat_bytes / n.max(1)})
        );
    }
    // Filtered: exact ground truth by a flat scan under the same filter.
    let fq = nq.min(200);
    for (name, json_filter) in [
        ("match 10%", json!({"must": [{"key": "b10", "match": {"value": 3}}]})),
        ("match 1%", json!({"must": [{"key": "b100", "match": {"value": 42}}]})),
        ("range 1%", json!({"must": [{"key": "r", "range": {"gte": 0.5, "lt": 0.51}}]})),
    ] {
        let filter = Filter::parse(&json_filter, "filter")?;
        let truth: Vec<Vec<i32>> = (0..fq)
            .map(|qi| {
                let req = SearchRequest { query: query.row(qi), k, ef: None, filter: Some(&filter), exact: true };
                index.search(&req).hits.iter().map(|h| h.id.parse().unwrap_or(-1)).collect()
            })
            .collect();
        for &ef in filtered_efs.iter().filter(|&&ef| ef > 0) {
            let req = |qi: usize| SearchRequest {
                query: query.row(qi),
                k,
                ef: Some(ef),
                filter: Some(&filter),
                exact: false,
            };
            let plan = index.search(&req(0)).plan;
            let t = Instant::now();
            let results: Vec<_> = (0..fq).map(|qi| index.search(&req(qi)).hits).collect();
            let secs = t.elapsed().as_secs_f64();
            println!(
                "{}",
                json!({"bench": "hnsw_filtered", "engine": "rvdb", "quantization": q_name, "metric": metric_name,
                       "n": n, "filter": name, "plan": plan.as_str(), "ef": ef, "queries": fq,
                       "qps": fq as f64 / secs, "recall": recall(&results, &truth)})
            );
        }
    }
    Ok(())
}

/// A real node (RocksDB, WAL on) in `dir`.
async fn open_node(dir: PathBuf) -> anyhow::Result<Arc<Node>> {
    Ok(Arc::new(
        tokio::task::spawn_blocking(move || {
            Node::open(&NodeOptions { index: crate::index_options(), ..NodeOptions::new(dir) })
        })
        .await??,
    ))
}

/// Manager + `node` + gateway in this process, as `rvdb serve` runs them (the manager's catalog in `dir`).
async fn embedded(
    dir: &std::path::Path,
    node: Arc<Node>,
    url: String,
) -> anyhow::Result<rvdb_gateway::embedded::Embedded> {
    let spec = rvdb_gateway::embedded::LocalNodeSpec { id: "bench".into(), url, node };
    let manager = rvdb_manager::ManagerOptions::new(dir.join("manager"));
    Ok(rvdb_gateway::embedded::Embedded::start(manager, vec![spec], Default::default()).await?)
}

/// Serves `node` over gRPC on a free loopback port; returns its URL.
async fn serve_node(node: Arc<Node>) -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let service = rvdb_node::service::StorageNodeService::new(node).into_server(256 << 20);
    tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming(listener)));
    Ok(url)
}

fn load_vectors(data: &Option<PathBuf>, count: usize, dimension: usize) -> anyhow::Result<Vec<Vec<f32>>> {
    Ok(match data {
        Some(d) => {
            let base = npy::read_f32(&d.join("base.npy"))?;
            (0..count.min(base.rows)).map(|i| base.row(i).to_vec()).collect()
        }
        None => {
            use rand::Rng;
            let mut rng = rand::rng();
            (0..count).map(|_| (0..dimension).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect()
        }
    })
}

fn compression(data: Option<PathBuf>, count: usize, dimension: usize) -> anyhow::Result<()> {
    let vectors = load_vectors(&data, count, dimension)?;
    let dim = vectors.first().map_or(dimension, Vec::len);
    let raw = (vectors.len() * dim * 4) as u64;
    for mode in ["none", "lz4", "zstd", "auto"] {
        let dir = std::env::temp_dir().join(format!("rvdb-bench-compression-{}-{mode}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut options = NodeOptions::new(&dir);
        options.index = crate::index_options();
        options.compression = mode.parse().map_err(anyhow::Error::msg)?;
        let node = Node::open(&options)?;
        let key = ShardKey::new("c", 0);
        node.create_shard(key.clone(), StoreConfig::new("c", dim as u32, Metric::Euclidean))?;
        for (b, chunk) in vectors.chunks(1000).enumerate() {
            let points = chunk
                .iter()
                .enumerate()
                .map(|(i, v)| PointData {
                    id: format!("p{}", b * 1000 + i),
                    vector: v.clone(),
                    metadata: String::new(),
                    version: 0,
                })
                .collect();
            node.with_shard(&key, |s| s.upsert(points, false))?;
        }
        node.with_shard(&key, |s| s.compact())?;
        let stats = node.with_shard(&key, |s| s.stats())?;
        println!(
            "{}",
            json!({"bench": "compression", "compression": mode, "n": vectors.len(), "dim": dim,
                   "vector_bytes": raw, "disk_bytes": stats.disk_bytes,
                   "disk_per_vector_bytes": stats.disk_bytes as f64 / vectors.len() as f64,
                   "ratio_vs_raw_vectors": stats.disk_bytes as f64 / raw as f64})
        );
        drop(node);
        let _ = std::fs::remove_dir_all(&dir);
    }
    Ok(())
}

async fn backup(count: usize, dimension: usize) -> anyhow::Result<()> {
    use rvdb_gateway::gateway::PointInput;
    let dir = std::env::temp_dir().join(format!("rvdb-bench-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = open_node(dir.join("data")).await?;
    let deployment = embedded(&dir, node.clone(), "http://in-process-node:1".into()).await?;
    let gateway = deployment.gateway().clone();
    let backups = rvdb_gateway::backup::BackupManager::new(gateway.clone(), dir.join("backups"));
    gateway.create_store(StoreConfig::new("big", dimension as u32, Metric::Cosine)).await?;
    let t = Instant::now();
    for start in (0..count).step_by(10_000) {
        let points: Vec<PointInput> = {
            use rand::Rng;
            let mut rng = rand::rng();
            (start..(start + 10_000).min(count))
                .map(|i| PointInput {
                    id: format!("p{i}"),
                    vector: (0..dimension).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
                    metadata: json!({"i": i}),
                })
                .collect()
        };
        gateway.upsert("big", points, |_, _| true).await?;
    }
    let insert_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let info = backups.backup("big", Some("big-backup".into()), |_| true).await?;
    let backup_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let path = dir.join("backups").join("big-backup");
    tokio::task::spawn_blocking(move || rvdb_gateway::backup::verify(&path)).await??;
    let verify_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let restored = backups.restore("big-backup", "big_restored", None, |_, _| true).await?;
    let restore_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(restored.points == count as u64, "restored {} of {count}", restored.points);
    println!(
        "{}",
        json!({"bench": "backup", "n": count, "dim": dimension, "insert_s": insert_s, "backup_s": backup_s,
               "backup_bytes": info.bytes, "verify_s": verify_s, "restore_s": restore_s,
               "restore_vectors_per_s": count as f64 / restore_s, "restore_includes_verify": true})
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn insert(
    data: Option<PathBuf>,
    count: usize,
    dimension: usize,
    batch: usize,
    dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let vectors = load_vectors(&data, count, dimension)?;
    let dim = vectors.first().map_or(dimension, Vec::len);
    let tmp;
    let dir = match dir {
        Some(d) => d,
        None => {
            tmp = std::env::temp_dir().join(format!("rvdb-bench-insert-{}", std::process::id()));
            tmp.clone()
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    let node = open_node(dir.clone()).await?;
    let vectors = Arc::new(vectors);

    // 1. In process: the node's own write path (validation, WriteBatch with WAL, index update).
    let key = ShardKey::new("bench_local", 0);
    node.create_shard(key.clone(), StoreConfig::new("bench_local", dim as u32, Metric::Cosine))?;
    let secs = {
        let (node, vectors, key) = (node.clone(), vectors.clone(), key.clone());
        tokio::task::spawn_blocking(move || -> anyhow::Result<f64> {
            let t = Instant::now();
            for (b, chunk) in vectors.chunks(batch).enumerate() {
                let points = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, v)| PointData {
                        id: format!("p{}", b * batch + i),
                        vector: v.clone(),
                        metadata: String::new(),
                        version: 0,
                    })
                    .collect();
                node.with_shard(&key, |s| s.upsert(points, false))?;
            }
            Ok(t.elapsed().as_secs_f64())
        })
        .await??
    };
    report("in_process", vectors.len(), dim, batch, secs);

    // 2. Over gRPC on loopback, one client, batches in sequence.
    let url = serve_node(node.clone()).await?;
    let mut client = rvdb_proto::v1::storage_node_client::StorageNodeClient::connect(url)
        .await
        .context("connecting to the bench node")?;
    let config = pb::StoreConfig {
        name: "bench_grpc".into(),
        dimension: dim as u32,
        metric: pb::Metric::Cosine as i32,
        ..Default::default()
    };
    let shard = Some(pb::ShardId { store: "bench_grpc".into(), shard: 0 });
    client
        .create_shard(pb::CreateShardRequest {
            shard: shard.clone(),
            config: Some(config),
            placement_epoch: 0,
            filling: false,
        })
        .await?;
    let t = Instant::now();
    for (b, chunk) in vectors.chunks(batch).enumerate() {
        let points = chunk
            .iter()
            .enumerate()
            .map(|(i, v)| pb::Point {
                id: format!("p{}", b * batch + i),
                vector: v.clone(),
                metadata_json: String::new(),
                version: 0,
            })
            .collect();
        client.upsert(pb::UpsertRequest { shard: shard.clone(), points, sync: false, placement_epoch: 0 }).await?;
    }
    report("grpc", vectors.len(), dim, batch, t.elapsed().as_secs_f64());
    drop(client);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn report(path: &str, n: usize, dim: usize, batch: usize, secs: f64) {
    println!(
        "{}",
        json!({"bench": "insert", "path": path, "wal": true, "n": n, "dim": dim, "batch": batch, "secs": secs, "vectors_per_s": n as f64 / secs})
    );
}

fn percentile(sorted_us: &[f64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() - 1) as f64 * p).round() as usize;
    sorted_us[i]
}

async fn gateway_latency(count: usize, dimension: usize, queries: usize, k: u32) -> anyhow::Result<()> {
    use http_body_util::{BodyExt, Full};
    use rand::Rng;

    let dir = std::env::temp_dir().join(format!("rvdb-bench-gw-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let node = open_node(dir.join("data")).await?;
    let node_url = serve_node(node.clone()).await?;
    // as in `rvdb serve`: the gateway calls the node in process; the node also serves gRPC, for the baseline
    let deployment = embedded(&dir, node.clone(), node_url.clone()).await?;
    let gateway = deployment.gateway().clone();
    let http_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let mcp_url = format!("http://{}/mcp", http_listener.local_addr()?);
    let backups = Arc::new(rvdb_gateway::backup::BackupManager::new(gateway.clone(), dir.join("backups")));
    let app = rvdb_gateway::http::router(
        gateway.clone(),
        backups,
        &Default::default(),
        tokio_util::sync::CancellationToken::new(),
    );
    tokio::spawn(rvdb_gateway::http::serve(http_listener, app, std::future::pending()));

    let mut rng = rand::rng();
    gateway.create_store(StoreConfig::new("lat", dimension as u32, Metric::Cosine)).await?;
    let points: Vec<rvdb_gateway::gateway::PointInput> = (0..count)
        .map(|i| rvdb_gateway::gateway::PointInput {
            id: format!("p{i}"),
            vector: (0..dimension).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            metadata: json!({"i": i}),
        })
        .collect();
    gateway.upsert("lat", points, |_, _| true).await?;
    let qs: Vec<Vec<f32>> =
        (0..queries).map(|_| (0..dimension).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();

    // Direct gRPC to the node: what the gateway itself does per shard.
    let mut grpc = rvdb_proto::v1::storage_node_client::StorageNodeClient::connect(node_url).await?;
    let shard = Some(pb::ShardId { store: "lat".into(), shard: 0 });
    let mut direct = Vec::with_capacity(queries);
    for (i, q) in qs.iter().enumerate() {
        let t = Instant::now();
        let r = grpc
            .search(pb::SearchRequest {
                shard: shard.clone(),
                vector: q.clone(),
                k,
                with_metadata: true,
                ..Default::default()
            })
            .await?;
        if i >= 50 {
            direct.push(t.elapsed().as_secs_f64() * 1e6);
        }
        anyhow::ensure!(r.into_inner().results.len() == k as usize, "short gRPC result");
    }

    // MCP tools/call search_vectors over Streamable HTTP, stateless 2026-07-28, one keep-alive connection.
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, Full<bytes::Bytes>>(connector);
    let mut via_mcp = Vec::with_capacity(queries);
    for (i, q) in qs.iter().enumerate() {
        let body = json!({
            "jsonrpc": "2.0", "id": i, "method": "tools/call",
            "params": {
                "name": "search_vectors",
                "arguments": {"store": "lat", "vector": q, "k": k},
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "rvdb-bench", "version": "1"},
                },
            },
        });
        let req = hyper::Request::post(&mcp_url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", "search_vectors")
            .body(Full::new(bytes::Bytes::from(body.to_string())))?;
        let t = Instant::now();
        let resp = client.request(req).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        if i >= 50 {
            via_mcp.push(t.elapsed().as_secs_f64() * 1e6);
        }
        let text = String::from_utf8_lossy(&bytes);
        anyhow::ensure!(
            status.is_success() && text.contains("\"results\"") && !text.contains("\"isError\":true"),
            "bad MCP answer {status}: {text}"
        );
    }
    direct.sort_by(f64::total_cmp);
    via_mcp.sort_by(f64::total_cmp);
    let (d50, d99, m50, m99) =
        (percentile(&direct, 0.5), percentile(&direct, 0.99), percentile(&via_mcp, 0.5), percentile(&via_mcp, 0.99));
    println!(
        "{}",
        json!({
            "bench": "gateway_latency", "n": count, "dim": dimension, "k": k, "queries": direct.len(),
            "grpc_direct_us": {"p50": d50, "p99": d99},
            "mcp_search_vectors_us": {"p50": m50, "p99": m99},
            "added_us": {"p50": m50 - d50, "p99": m99 - d99},
        })
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

fn embed(texts: PathBuf, model: Option<PathBuf>) -> anyhow::Result<()> {
    use rvdb_embed::Embedder;
    let text = std::fs::read_to_string(&texts)?;
    let texts: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    anyhow::ensure!(!texts.is_empty(), "no texts in the file");
    let dir = model.unwrap_or_else(|| rvdb_embed::default_models_dir().join(rvdb_embed::DEFAULT_MODEL));
    let model = rvdb_embed::LocalEmbedder::load(&dir)?;
    model.embed(&texts[..texts.len().min(32)])?;
    let start = Instant::now();
    let vectors = model.embed(&texts)?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(vectors.len() == texts.len());
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "default".into());
    println!(
        "{}",
        serde_json::json!({"engine": format!("rvdb {} (candle)", env!("CARGO_PKG_VERSION")), "threads": threads,
                           "texts": texts.len(), "seconds": (secs * 1000.0).round() / 1000.0,
                           "texts_per_s": (texts.len() as f64 / secs * 10.0).round() / 10.0})
    );
    Ok(())
}

/// BM25 in process: the core's `TextIndex` as a shard holds it, built from the texts (ids `d<line>`), then every
/// query analysed and answered one after the other on one thread.
fn keyword(texts: PathBuf, queries: PathBuf, text_index: Option<String>, k: usize, out: PathBuf) -> anyhow::Result<()> {
    use rvdb_core::text::{Analyzer, TextIndex, TextIndexSpec};
    use std::io::Write;
    let spec: TextIndexSpec = match text_index {
        Some(j) => serde_json::from_str(&j)?,
        None => TextIndexSpec::default(),
    };
    spec.validate()?;
    let docs = std::fs::read_to_string(&texts)?;
    let docs: Vec<&str> = docs.lines().collect();
    let qs = std::fs::read_to_string(&queries)?;
    let qs: Vec<&str> = qs.lines().collect();
    std::fs::create_dir_all(&out)?;
    let ids: Vec<String> = (0..docs.len()).map(|i| format!("d{i:06}")).collect();
    let start = Instant::now();
    let mut index = TextIndex::new(spec.clone());
    for (id, t) in ids.iter().zip(&docs) {
        index.set(id, Some(t));
    }
    let build = start.elapsed().as_secs_f64();
    let analyzer = Analyzer::new(&spec);
    let mut f = std::io::BufWriter::new(std::fs::File::create(out.join("tokens.jsonl"))?);
    for t in &docs {
        writeln!(f, "{}", serde_json::to_string(&analyzer.terms(t))?)?;
    }
    let mut f = std::io::BufWriter::new(std::fs::File::create(out.join("query_tokens.jsonl"))?);
    for q in &qs {
        writeln!(f, "{}", serde_json::to_string(&analyzer.terms(q))?)?;
    }
    // Warm up, then time every query (analysis included).
    for q in qs.iter().take(200) {
        index.search(&analyzer.query(q), None, k, None, &|_| true);
    }
    let start = Instant::now();
    let mut results = Vec::with_capacity(qs.len());
    for q in &qs {
        results.push(index.search(&analyzer.query(q), None, k, None, &|_| true));
    }
    let secs = start.elapsed().as_secs_f64();
    let mut f = std::io::BufWriter::new(std::fs::File::create(out.join("results.jsonl"))?);
    for hits in &results {
        let row: Vec<(&str, f32)> = hits.iter().map(|h| (h.id.as_str(), h.score)).collect();
        writeln!(f, "{}", serde_json::to_string(&row)?)?;
    }
    println!(
        "{}",
        serde_json::json!({"engine": "rvdb (core, in process)", "documents": docs.len(), "queries": qs.len(),
                           "build_seconds": (build * 1000.0).round() / 1000.0,
                           "documents_per_s": (docs.len() as f64 / build).round(),
                           "qps": (qs.len() as f64 / secs).round(),
                           "memory_bytes": index.memory_bytes()})
    );
    Ok(())
}
