//! A storage node's membership in a cluster: it registers with the index manager when it starts, then sends a
//! heartbeat every interval the manager asks for, listing the shard replicas it holds. The manager marks a node
//! down when heartbeats stop, and sends it `CatchUp` commands when it returns. A manager that does not know the
//! node (it restarted without its data, or the node was removed) answers NOT_FOUND and the node registers again.

use std::sync::Arc;
use std::time::Duration;

use rvdb_proto::api::{ManagerApi, RemoteManager};
use rvdb_proto::v1 as pb;

use crate::Node;

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub manager_url: String,
    pub node_id: String,
    /// The node's gRPC URL as the manager, gateways and peers reach it.
    pub advertise_url: String,
    /// Where the node keeps the id of the cluster it joined (`<data>/cluster_id`); `None` in process
    /// (`rvdb serve`, whose manager is its own).
    pub cluster_id_file: Option<std::path::PathBuf>,
}

/// Runs until the task is aborted: registration (retried until the manager answers), then heartbeats, with the
/// manager at `options.manager_url` over gRPC.
pub async fn run(node: Arc<Node>, options: AgentOptions) {
    match RemoteManager::connect_lazy(&options.manager_url, Duration::from_secs(5)) {
        Ok(manager) => run_with(node, Arc::new(manager), options, None).await,
        Err(e) => {
            tracing::error!(url = %options.manager_url, error = %e, "bad manager URL; the node stays out of the cluster")
        }
    }
}

/// [`run`] with a given manager: remote, or the one in this process (`rvdb serve`). `registered`: the node has
/// just registered itself, and was told this heartbeat interval (the first registration is skipped).
pub async fn run_with(
    node: Arc<Node>,
    client: Arc<dyn ManagerApi>,
    options: AgentOptions,
    mut registered: Option<Duration>,
) {
    loop {
        let interval = match registered.take() {
            Some(interval) => interval,
            None => register(client.as_ref(), &options).await,
        };
        tracing::info!(node_id = %options.node_id, manager = %options.manager_url, "registered with the index manager");
        loop {
            tokio::time::sleep(interval).await;
            let node = node.clone();
            // an empty list would tell the manager this node lost every replica: skip the beat instead
            let hosted = match tokio::task::spawn_blocking(move || node.shard_keys()).await {
                Ok(keys) => keys,
                Err(e) => {
                    tracing::error!(error = %e, "cannot list this node's replicas; skipping a heartbeat");
                    continue;
                }
            };
            let req = pb::HeartbeatRequest {
                node_id: options.node_id.clone(),
                hosted: hosted.into_iter().map(|k| pb::ShardId { store: k.store, shard: k.shard }).collect(),
            };
            match client.heartbeat(req).await {
                Ok(_) => {}
                Err(s) if s.code() == tonic::Code::NotFound => {
                    tracing::warn!("the index manager does not know this node; registering again");
                    break;
                }
                Err(s) => tracing::warn!(error = %s.message(), "heartbeat failed; retrying"),
            }
        }
    }
}

async fn register(client: &dyn ManagerApi, options: &AgentOptions) -> Duration {
    let mut backoff = Duration::from_millis(200);
    loop {
        let known = options
            .cluster_id_file
            .as_ref()
            .and_then(|f| std::fs::read_to_string(f).ok())
            .map(|s| s.trim().to_string())
            .unwrap_or_default();
        let req = pb::RegisterNodeRequest {
            node_id: options.node_id.clone(),
            address: options.advertise_url.clone(),
            cluster_id: known.clone(),
        };
        match client.register_node(req).await {
            Ok(r) => {
                if let Some(file) = &options.cluster_id_file
                    && known.is_empty()
                    && !r.cluster_id.is_empty()
                    && let Err(e) = std::fs::write(file, &r.cluster_id)
                {
                    tracing::error!(file = %file.display(), error = %e, "cannot keep the cluster id");
                }
                return Duration::from_millis(r.heartbeat_interval_ms.clamp(50, 60_000));
            }
            Err(s) if s.code() == tonic::Code::FailedPrecondition => {
                // another cluster's manager (or this one's, with its data lost): never join it by ourselves
                // (retried often: a refusal costs the manager nothing, and a restored manager should see the node
                // again before its node timeout)
                tracing::error!(error = %s.message(), "the index manager refused this node; retrying");
                tokio::time::sleep(backoff.min(Duration::from_millis(500))).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(s) => {
                tracing::warn!(error = %s.message(), "cannot register with the index manager; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Tells the manager this node is shutting down, so gateways stop routing to it before its listener closes (see
/// `LeaveCluster`). Best effort within 3 s: a manager that cannot be reached finds out from the missing heartbeats
/// after its node timeout, as for a crash.
pub async fn leave(options: &AgentOptions) {
    let request = pb::LeaveClusterRequest { node_id: options.node_id.clone() };
    let call = async {
        let manager =
            RemoteManager::connect_lazy(&options.manager_url, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        manager.leave_cluster(request).await.map_err(|s| s.message().to_string())
    };
    match tokio::time::timeout(Duration::from_secs(3), call).await {
        Ok(Ok(r)) => tracing::info!(routing_version = r.routing_version, "left the cluster's routing table"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not leave the cluster; the manager will time this node out"),
        Err(_) => tracing::warn!("leaving the cluster timed out; the manager will time this node out"),
    }
}
