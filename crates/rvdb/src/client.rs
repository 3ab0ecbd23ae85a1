//! Client commands: talk gRPC to a storage node and print JSON. In the embedded mode a store is one shard
//! (shard 0); once the gateway lands these commands go through it and its routing instead.

use std::io::BufRead;

use anyhow::Context;
use rvdb_core::Metric;
use rvdb_proto::Channel;
use rvdb_proto::v1 as pb;
use rvdb_proto::v1::storage_node_client::StorageNodeClient;
use serde_json::{Value, json};

#[derive(Debug, clap::Args)]
pub struct Target {
    /// gRPC address of the node.
    #[arg(long, env = "RVDB_ADDR", default_value = "http://127.0.0.1:50051", global = true)]
    addr: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Create a store.
    CreateStore {
        name: String,
        #[arg(long)]
        dimension: u32,
        /// cosine, euclidean, manhattan or dot.
        #[arg(long, default_value = "cosine")]
        metric: String,
        /// flat (exact) or hnsw (approximate graph, built in the background).
        #[arg(long, default_value = "flat")]
        index: String,
        /// none or sq8 (HNSW graph on 8-bit codes, re-scored on full vectors).
        #[arg(long, default_value = "none")]
        quantization: String,
        #[command(flatten)]
        target: Target,
    },
    /// Drop a store and all its points.
    DropStore {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List stores with their statistics.
    ListStores {
        #[command(flatten)]
        target: Target,
    },
    /// Statistics of one store.
    Stats {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Rebuild an HNSW store's graph from its points in the background (searches keep using the current graph).
    RebuildIndex {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Insert (or replace) one point.
    Insert {
        store: String,
        #[arg(long)]
        id: String,
        /// JSON array of numbers.
        #[arg(long)]
        vector: String,
        /// JSON object.
        #[arg(long, default_value = "{}")]
        metadata: String,
        #[command(flatten)]
        target: Target,
    },
    /// Insert points from a JSON-lines file (`{"id":…, "vector":[…], "metadata":{…}}` per line), in batches.
    Import {
        store: String,
        file: std::path::PathBuf,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Get points by id.
    Get {
        store: String,
        ids: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete points by id.
    Delete {
        store: String,
        ids: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// k nearest neighbours of a vector.
    Search {
        store: String,
        /// JSON array of numbers.
        #[arg(long)]
        vector: String,
        #[arg(short, long, default_value_t = 10)]
        k: u32,
        #[arg(long)]
        with_vector: bool,
        /// Metadata filter (JSON), e.g. '{"must":[{"key":"lang","match":{"value":"en"}}]}'.
        #[arg(long)]
        filter: Option<String>,
        /// HNSW beam width for this search.
        #[arg(long)]
        ef: Option<u32>,
        /// Exact search even on an HNSW store.
        #[arg(long)]
        exact: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Flush a store (or every store) to disk and fsync the WAL.
    Sync {
        store: Option<String>,
        #[command(flatten)]
        target: Target,
    },
}

fn shard(store: &str) -> Option<pb::ShardId> {
    Some(pb::ShardId { store: store.to_string(), shard: 0 })
}

async fn connect(t: &Target) -> anyhow::Result<StorageNodeClient<Channel>> {
    let c = StorageNodeClient::new(
        rvdb_proto::connect(&t.addr).await.with_context(|| format!("connecting to {}", t.addr))?,
    );
    Ok(c.max_decoding_message_size(usize::MAX))
}

fn parse_vector(s: &str) -> anyhow::Result<Vec<f32>> {
    serde_json::from_str(s).context("--vector must be a JSON array of numbers, e.g. [0.1, 0.2]")
}

fn metric_name(m: i32) -> &'static str {
    rvdb_proto::convert::metric_from_pb(m).map(Metric::as_str).unwrap_or("unknown")
}

fn stats_json(s: &pb::ShardStats) -> Value {
    let c = s.config.clone().unwrap_or_default();
    json!({
        "store": c.name, "dimension": c.dimension, "metric": metric_name(c.metric),
        "points": s.points, "tombstones": s.tombstones, "max_version": s.max_version,
        "index_memory_bytes": s.index_memory_bytes, "disk_bytes": s.disk_bytes, "index_status": s.index_status,
    })
}

fn print(v: Value) {
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

pub async fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match cmd {
        ClientCommand::CreateStore { name, dimension, metric, index, quantization, target } => {
            let metric: Metric = metric.parse()?;
            let mut config = rvdb_core::StoreConfig::new(name.clone(), dimension, metric);
            config.index.kind = index.parse()?;
            config.index.quantization = quantization.parse()?;
            let config = rvdb_proto::convert::config_to_pb(&config);
            connect(&target)
                .await?
                .create_shard(pb::CreateShardRequest { shard: shard(&name), config: Some(config) })
                .await?;
            print(json!({"created": name}));
        }
        ClientCommand::DropStore { name, target } => {
            connect(&target).await?.drop_shard(pb::DropShardRequest { shard: shard(&name) }).await?;
            print(json!({"dropped": name}));
        }
        ClientCommand::ListStores { target } => {
            let r = connect(&target).await?.list_shards(pb::ListShardsRequest {}).await?.into_inner();
            print(Value::Array(r.shards.iter().map(stats_json).collect()));
        }
        ClientCommand::Stats { name, target } => {
            let r = connect(&target).await?.stats(pb::StatsRequest { shard: shard(&name) }).await?.into_inner();
            print(r.stats.as_ref().map(stats_json).unwrap_or(Value::Null));
        }
        ClientCommand::RebuildIndex { name, target } => {
            let r = connect(&target)
                .await?
                .rebuild_index(pb::RebuildIndexRequest { shard: shard(&name) })
                .await?
                .into_inner();
            print(json!({"store": name, "started": r.started}));
        }
        ClientCommand::Insert { store, id, vector, metadata, target } => {
            let point = pb::Point { id, vector: parse_vector(&vector)?, metadata_json: metadata, version: 0 };
            let r = connect(&target)
                .await?
                .upsert(pb::UpsertRequest { shard: shard(&store), points: vec![point], sync: false })
                .await?
                .into_inner();
            print(json!({"applied": r.applied, "version": r.max_version}));
        }
        ClientCommand::Import { store, file, batch, target } => {
            let mut client = connect(&target).await?;
            let reader = std::io::BufReader::new(
                std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?,
            );
            let (mut points, mut total) = (Vec::new(), 0u64);
            for (n, line) in reader.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let v: Value = serde_json::from_str(&line).with_context(|| format!("line {}", n + 1))?;
                let id = v["id"].as_str().map(str::to_string).or_else(|| v["id"].as_u64().map(|i| i.to_string()));
                let point = pb::Point {
                    id: id.with_context(|| format!("line {}: id must be a string or integer", n + 1))?,
                    vector: serde_json::from_value(v["vector"].clone())
                        .with_context(|| format!("line {}: vector", n + 1))?,
                    metadata_json: v.get("metadata").map(Value::to_string).unwrap_or_default(),
                    version: 0,
                };
                points.push(point);
                if points.len() >= batch {
                    total += client
                        .upsert(pb::UpsertRequest {
                            shard: shard(&store),
                            points: std::mem::take(&mut points),
                            sync: false,
                        })
                        .await?
                        .into_inner()
                        .applied as u64;
                }
            }
            if !points.is_empty() {
                total += client
                    .upsert(pb::UpsertRequest { shard: shard(&store), points, sync: false })
                    .await?
                    .into_inner()
                    .applied as u64;
            }
            print(json!({"imported": total}));
        }
        ClientCommand::Get { store, ids, target } => {
            let r = connect(&target)
                .await?
                .get(pb::GetRequest { shard: shard(&store), ids, with_vector: true, with_metadata: true })
                .await?
                .into_inner();
            let points: Vec<Value> = r
                .points
                .into_iter()
                .map(|p| json!({"id": p.id, "vector": p.vector, "metadata": serde_json::from_str::<Value>(&p.metadata_json).unwrap_or(Value::Null), "version": p.version}))
                .collect();
            print(Value::Array(points));
        }
        ClientCommand::Delete { store, ids, target } => {
            let r = connect(&target)
                .await?
                .delete(pb::DeleteRequest { shard: shard(&store), ids, version: 0, sync: false })
                .await?
                .into_inner();
            print(json!({"deleted": r.deleted}));
        }
        ClientCommand::Search { store, vector, k, with_vector, filter, ef, exact, target } => {
            let r = connect(&target)
                .await?
                .search(pb::SearchRequest {
                    shard: shard(&store),
                    vector: parse_vector(&vector)?,
                    k,
                    with_vector,
                    with_metadata: true,
                    filter_json: filter.unwrap_or_default(),
                    ef: ef.unwrap_or(0),
                    exact,
                })
                .await?
                .into_inner();
            let hits: Vec<Value> = r
                .results
                .into_iter()
                .map(|h| {
                    let mut v = json!({"id": h.id, "distance": h.distance, "metadata": serde_json::from_str::<Value>(&h.metadata_json).unwrap_or(Value::Null)});
                    if with_vector {
                        v["vector"] = json!(h.vector);
                    }
                    v
                })
                .collect();
            print(Value::Array(hits));
        }
        ClientCommand::Sync { store, target } => {
            connect(&target).await?.flush(pb::FlushRequest { shard: store.as_deref().and_then(shard) }).await?;
            print(json!({"synced": store.unwrap_or_else(|| "*".into())}));
        }
    }
    Ok(())
}
