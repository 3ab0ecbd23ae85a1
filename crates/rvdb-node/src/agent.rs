//! A storage node's membership in a cluster: it registers with the index manager when it starts, then sends a
//! heartbeat every interval the manager asks for, listing the shard replicas it holds. The manager marks a node
//! down when heartbeats stop, and sends it `CatchUp` commands when it returns. A manager that does not know the
//! node (it restarted without its data, or the node was removed) answers NOT_FOUND and the node registers again.

use std::sync::Arc;
use std::time::Duration;

use rvdb_proto::Channel;
use rvdb_proto::v1 as pb;
use rvdb_proto::v1::index_manager_client::IndexManagerClient;

use crate::Node;

#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub manager_url: String,
    pub node_id: String,
    /// The node's gRPC URL as the manager, gateways and peers reach it.
    pub advertise_url: String,
}

/// Runs until the task is aborted: registration (retried until the manager answers), then heartbeats.
pub async fn run(node: Arc<Node>, options: AgentOptions) {
    let endpoint = match rvdb_proto::endpoint(&options.manager_url) {
        Ok(e) => e.timeout(Duration::from_secs(5)),
        Err(e) => {
            tracing::error!(url = %options.manager_url, error = %e, "bad manager URL; the node stays out of the cluster");
            return;
        }
    };
    let mut client = IndexManagerClient::new(Channel::new(endpoint.connect_lazy()));
    loop {
        let interval = register(&mut client, &options).await;
        tracing::info!(node_id = %options.node_id, manager = %options.manager_url, "registered with the index manager");
        loop {
            tokio::time::sleep(interval).await;
            let hosted = {
                let node = node.clone();
                tokio::task::spawn_blocking(move || node.shard_keys()).await.unwrap_or_default()
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

async fn register(client: &mut IndexManagerClient<Channel>, options: &AgentOptions) -> Duration {
    let mut backoff = Duration::from_millis(200);
    loop {
        let req = pb::RegisterNodeRequest { node_id: options.node_id.clone(), address: options.advertise_url.clone() };
        match client.register_node(req).await {
            Ok(r) => return Duration::from_millis(r.into_inner().heartbeat_interval_ms.clamp(50, 60_000)),
            Err(s) => {
                tracing::warn!(error = %s.message(), "cannot register with the index manager; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
