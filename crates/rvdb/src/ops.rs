//! Operator commands: `rvdb probe` (a health check that needs nothing but this binary, so container images can
//! be `FROM scratch`) and `rvdb cluster-status` (the manager's view of nodes and stores, with replica digests).

use std::time::Duration;

use anyhow::Context;
use rvdb_proto::v1 as pb;
use serde_json::json;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeKind {
    Node,
    Manager,
    Gateway,
}

#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// What to probe.
    #[arg(long, value_enum)]
    pub kind: ProbeKind,
    /// gRPC URL of a node or manager, or the gateway's MCP URL (any HTTP answer below 500 counts).
    #[arg(long)]
    pub url: String,
    /// Milliseconds before the probe fails.
    #[arg(long, default_value_t = 3000)]
    pub timeout: u64,
}

/// Exits 0 when the service answers, 1 (with the reason on stderr) otherwise.
pub async fn probe(args: ProbeArgs) -> anyhow::Result<()> {
    let deadline = Duration::from_millis(args.timeout);
    let check = async {
        match args.kind {
            ProbeKind::Node | ProbeKind::Manager => {
                // grpc.health.v1: open without an API key, and NOT_SERVING while the service drains on shutdown.
                use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client};
                let service = if matches!(args.kind, ProbeKind::Node) {
                    pb::storage_node_server::SERVICE_NAME
                } else {
                    pb::index_manager_server::SERVICE_NAME
                };
                let mut c = health_client::HealthClient::new(rvdb_proto::connect(&args.url).await?);
                let status = c.check(HealthCheckRequest { service: service.into() }).await?.into_inner().status;
                anyhow::ensure!(
                    status == ServingStatus::Serving as i32,
                    "{service} is {:?}",
                    ServingStatus::try_from(status).unwrap_or(ServingStatus::Unknown)
                );
            }
            ProbeKind::Gateway => {
                let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build::<_, http_body_util::Empty<bytes::Bytes>>(
                    hyper_util::client::legacy::connect::HttpConnector::new(),
                );
                let uri: hyper::Uri = args.url.parse().context("bad URL")?;
                let status = client.get(uri).await?.status();
                anyhow::ensure!(status.as_u16() < 500, "HTTP {status}");
            }
        }
        anyhow::Ok(())
    };
    match tokio::time::timeout(deadline, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => anyhow::bail!("{:?} at {} is not healthy: {e:#}", args.kind, args.url),
        Err(_) => anyhow::bail!("{:?} at {} did not answer within {deadline:?}", args.kind, args.url),
    }
}

#[derive(Debug, clap::Args)]
pub struct ClusterStatusArgs {
    /// The index manager's gRPC URL.
    #[arg(long, env = "RVDB_MANAGER", default_value = "http://127.0.0.1:50060")]
    pub manager: String,
    /// Also ask every replica of every shard of these stores for its digest (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub digests: Vec<String>,
}

/// Prints the routing table as JSON: nodes with their state, stores with their placement, and (with `--digests`)
/// each replica's checksum and record count, so replicas can be compared byte for byte.
pub async fn cluster_status(args: ClusterStatusArgs) -> anyhow::Result<()> {
    let mut m = manager_client(&args.manager).await?;
    let t = m.get_routing_table(pb::GetRoutingTableRequest {}).await?.into_inner();
    let state = rvdb_proto::convert::node_state_name;
    let address: std::collections::HashMap<&str, &str> =
        t.nodes.iter().map(|n| (n.node_id.as_str(), n.address.as_str())).collect();
    let mut stores = Vec::new();
    for s in &t.stores {
        let Some(config) = &s.config else { continue };
        let mut shards = Vec::new();
        for p in &s.shards {
            let mut replicas = Vec::new();
            for id in &p.replica_node_ids {
                let mut r = json!({"node_id": id});
                if args.digests.contains(&config.name) {
                    let shard = Some(pb::ShardId { store: config.name.clone(), shard: p.shard });
                    let url = address.get(id.as_str()).copied().unwrap_or_default().to_string();
                    let digest = async {
                        let mut c = pb::storage_node_client::StorageNodeClient::new(rvdb_proto::connect(&url).await?);
                        anyhow::Ok(c.digest(pb::DigestRequest { shard }).await?.into_inner())
                    };
                    match tokio::time::timeout(Duration::from_secs(10), digest).await {
                        Ok(Ok(d)) => {
                            r["sha256"] = json!(d.sha256);
                            r["records"] = json!(d.records);
                        }
                        Ok(Err(e)) => r["error"] = json!(format!("{e:#}")),
                        Err(_) => r["error"] = json!("timed out"),
                    }
                }
                replicas.push(r);
            }
            shards.push(json!({"shard": p.shard, "replicas": replicas}));
        }
        let mut store = json!({"name": config.name, "dimension": config.dimension, "shards": shards});
        if let Some(r) = &s.resharding {
            store["resharding"] = json!({"from_shards": r.from_shards, "to_shards": r.to_shards, "phase": r.phase,
                                         "started_unix_ms": r.started_unix_ms, "copies_done": r.copies_done,
                                         "copies_total": r.copies_total, "records_copied": r.records_copied});
        }
        stores.push(store);
    }
    let nodes: Vec<_> = t
        .nodes
        .iter()
        .map(|n| {
            json!({"node_id": n.node_id, "address": n.address, "state": state(n.state),
                        "last_heartbeat_unix_ms": n.last_heartbeat_unix_ms})
        })
        .collect();
    let transfers: Vec<_> = t
        .transfers
        .iter()
        .map(|x| {
            json!({"store": x.store, "shard": x.shard, "from": x.from_node_id, "to": x.to_node_id, "phase": x.phase,
                   "started_unix_ms": x.started_unix_ms, "records_copied": x.records_copied,
                   "records_total": x.records_total})
        })
        .collect();
    println!("{}", json!({"version": t.version, "nodes": nodes, "stores": stores, "transfers": transfers}));
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct MoveShardArgs {
    /// The index manager's gRPC URL.
    #[arg(long, env = "RVDB_MANAGER", default_value = "http://127.0.0.1:50060")]
    pub manager: String,
    #[arg(long)]
    pub store: String,
    #[arg(long)]
    pub shard: u32,
    /// The node that holds the replica now.
    #[arg(long)]
    pub from: String,
    /// The node to move it to (up, without a replica of this shard).
    #[arg(long)]
    pub to: String,
}

/// Moves a replica (`rvdb move-shard`): prints the records copied and the time taken as JSON when done.
pub async fn move_shard(args: MoveShardArgs) -> anyhow::Result<()> {
    let mut m = manager_client(&args.manager).await?;
    let req = pb::MoveShardRequest {
        store: args.store.clone(),
        shard: args.shard,
        from_node_id: args.from.clone(),
        to_node_id: args.to.clone(),
    };
    let r = m.move_shard(req).await.map_err(|s| anyhow::anyhow!("{}", s.message()))?.into_inner();
    println!(
        "{}",
        json!({"store": args.store, "shard": args.shard, "from": args.from, "to": args.to, "records": r.records,
               "elapsed_ms": r.elapsed_ms, "routing_version": r.version})
    );
    Ok(())
}

async fn manager_client(
    url: &str,
) -> anyhow::Result<pb::index_manager_client::IndexManagerClient<rvdb_proto::Channel>> {
    Ok(pb::index_manager_client::IndexManagerClient::new(
        rvdb_proto::connect(url).await.with_context(|| format!("connecting to the manager at {url}"))?,
    ))
}

fn moves_json(moves: &[pb::ShardTransfer]) -> Vec<serde_json::Value> {
    moves
        .iter()
        .map(|m| json!({"store": m.store, "shard": m.shard, "from": m.from_node_id, "to": m.to_node_id}))
        .collect()
}

#[derive(Debug, clap::Args)]
pub struct RebalanceArgs {
    /// The index manager's gRPC URL.
    #[arg(long, env = "RVDB_MANAGER", default_value = "http://127.0.0.1:50060")]
    pub manager: String,
    /// Most replicas to move in this run (0: as many as balance needs).
    #[arg(long, default_value_t = 0)]
    pub max_moves: u32,
    /// Transfers at a time (0: the manager's --max-parallel-transfers).
    #[arg(long, default_value_t = 0)]
    pub parallel: u32,
}

/// `rvdb rebalance`: prints the moves made as JSON.
pub async fn rebalance(args: RebalanceArgs) -> anyhow::Result<()> {
    let mut m = manager_client(&args.manager).await?;
    let r = m
        .rebalance(pb::RebalanceRequest { max_moves: args.max_moves, parallel: args.parallel })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!("{}", json!({"moves": moves_json(&r.moves), "records": r.records, "elapsed_ms": r.elapsed_ms}));
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RemoveNodeArgs {
    /// The index manager's gRPC URL.
    #[arg(long, env = "RVDB_MANAGER", default_value = "http://127.0.0.1:50060")]
    pub manager: String,
    /// The node to remove.
    #[arg(long)]
    pub node: String,
}

/// `rvdb remove-node`: prints the replicas re-created elsewhere as JSON.
pub async fn remove_node(args: RemoveNodeArgs) -> anyhow::Result<()> {
    let mut m = manager_client(&args.manager).await?;
    let r = m
        .remove_node(pb::RemoveNodeRequest { node_id: args.node.clone() })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!(
        "{}",
        json!({"node": args.node, "moves": moves_json(&r.moves), "records": r.records, "routing_version": r.version})
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct ReshardArgs {
    /// The index manager's gRPC URL.
    #[arg(long, env = "RVDB_MANAGER", default_value = "http://127.0.0.1:50060")]
    pub manager: String,
    #[arg(long)]
    pub store: String,
    /// The new shard count (1..=1024).
    #[arg(long)]
    pub shards: u32,
}

/// `rvdb reshard`: changes a store's shard count while it serves; prints what was copied and pruned as JSON.
pub async fn reshard(args: ReshardArgs) -> anyhow::Result<()> {
    let mut m = manager_client(&args.manager).await?;
    let r = m
        .reshard(pb::ReshardRequest { store: args.store.clone(), shards: args.shards })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!(
        "{}",
        json!({"store": args.store, "from_shards": r.from_shards, "to_shards": r.to_shards, "records": r.records,
               "pruned": r.pruned, "elapsed_ms": r.elapsed_ms, "copy_ms": r.copy_ms,
               "routing_version": r.version})
    );
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct CancelArgs {
    /// The index manager's gRPC URL.
    #[arg(long, env = "RVDB_MANAGER", default_value = "http://127.0.0.1:50060")]
    pub manager: String,
    #[arg(long)]
    pub store: String,
    /// The shard whose transfer to cancel; without it, the store's reshard.
    #[arg(long)]
    pub shard: Option<u32>,
}

/// `rvdb cancel`: cancels a running shard transfer or reshard (it rolls back); prints what was cancelled.
pub async fn cancel(args: CancelArgs) -> anyhow::Result<()> {
    let mut m = manager_client(&args.manager).await?;
    let r = m
        .cancel_operation(pb::CancelOperationRequest { store: args.store.clone(), shard: args.shard })
        .await
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?
        .into_inner();
    println!("{}", json!({"cancelled": r.cancelled}));
    Ok(())
}
