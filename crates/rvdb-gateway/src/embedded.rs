//! A whole deployment in one process: the index manager, storage nodes and the gateway, wired by direct calls
//! (`LocalManager`, `LocalNode`) instead of gRPC. This is `rvdb serve` (one node) and `rvdb mcp-stdio`; a
//! cluster runs the very same manager, node and gateway code, each in its own process, over gRPC.
//!
//! Starting: the manager opens its catalog; a fresh catalog adopts the stores the nodes already hold (data
//! written by an embedded rvdb from before it ran a manager, see [`Manager::adopt`]); each node registers and
//! then heartbeats as a cluster node does (so orphans, lost replicas and repairs are handled the same way); the
//! membership monitor runs; the gateway follows the manager's routing table.

use std::sync::Arc;
use std::time::Duration;

use rvdb_manager::{LocalManager, Manager, ManagerOptions};
use rvdb_node::Node;
use rvdb_node::agent::AgentOptions;
use rvdb_node::service::LocalNode;
use rvdb_proto::api::NodeDirectory;
use rvdb_proto::v1 as pb;

use crate::error::Result;
use crate::{Gateway, GatewayOptions};

/// A storage node of this process.
#[derive(Debug, Clone)]
pub struct LocalNodeSpec {
    /// Its id in the catalog (stable across restarts: the catalog's placement names it).
    pub id: String,
    /// The URL the routing table gives it: where its gRPC listens, if it serves one; any unique `http://` URL
    /// otherwise (calls to it never leave the process).
    pub url: String,
    pub node: Arc<Node>,
}

/// A running in-process deployment. Dropping it stops the monitor and heartbeats.
#[derive(Debug)]
pub struct Embedded {
    manager: Arc<Manager>,
    gateway: Arc<Gateway>,
    nodes: Arc<NodeDirectory>,
    urls: Vec<String>,
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Embedded {
    fn drop(&mut self) {
        release(&self.nodes, &self.urls, &self.tasks);
    }
}

impl Embedded {
    pub async fn start(
        manager: ManagerOptions,
        local: Vec<LocalNodeSpec>,
        options: GatewayOptions,
    ) -> Result<Embedded> {
        let nodes = NodeDirectory::new();
        for n in &local {
            nodes.add_local(&n.url, LocalNode::new(n.node.clone(), nodes.clone()));
        }
        let urls = local.iter().map(|n| n.url.clone()).collect();
        let mut tasks = Vec::new();
        let started = Self::wire(manager, &local, &nodes, &mut tasks, options).await;
        match started {
            Ok((manager, gateway)) => Ok(Embedded { manager, gateway, nodes, urls, tasks }),
            Err(e) => {
                release(&nodes, &urls, &tasks);
                Err(e)
            }
        }
    }

    async fn wire(
        manager: ManagerOptions,
        local: &[LocalNodeSpec],
        nodes: &Arc<NodeDirectory>,
        tasks: &mut Vec<tokio::task::AbortHandle>,
        options: GatewayOptions,
    ) -> Result<(Arc<Manager>, Arc<Gateway>)> {
        let manager = Manager::open_with(manager, nodes.clone())?;
        if manager.is_fresh() {
            let found: Vec<_> = local
                .iter()
                .map(|n| {
                    let replicas = n
                        .node
                        .list_shards()
                        .into_iter()
                        .map(|s| (pb::ShardId { store: s.key.store, shard: s.key.shard }, s.config))
                        .collect::<Vec<_>>();
                    (n.id.clone(), replicas)
                })
                .collect();
            manager.adopt(&found).await?;
        }
        let api = LocalManager::new(manager.clone());
        for n in local {
            let (interval_ms, _) = manager.register_node(&n.id, &n.url)?;
            let agent = AgentOptions {
                manager_url: "in-process".into(),
                node_id: n.id.clone(),
                advertise_url: n.url.clone(),
                cluster_id_file: None,
            };
            let interval = Some(Duration::from_millis(interval_ms.max(10)));
            tasks.push(
                tokio::spawn(rvdb_node::agent::run_with(n.node.clone(), api.clone(), agent, interval)).abort_handle(),
            );
        }
        tasks.push(tokio::spawn(manager.clone().run_monitor()).abort_handle());
        tasks.push(tokio::spawn(manager.clone().run_anti_entropy()).abort_handle());
        let gateway = Arc::new(Gateway::start(api, nodes.clone(), options).await?);
        Ok((manager, gateway))
    }

    /// The gateway: every store operation of this deployment.
    pub fn gateway(&self) -> &Arc<Gateway> {
        &self.gateway
    }

    /// The index manager in this process.
    pub fn manager(&self) -> &Arc<Manager> {
        &self.manager
    }
}

/// Stops the background tasks and lets go of the local nodes (which hold the directory for their catch-ups),
/// so their RocksDB can close.
fn release(nodes: &NodeDirectory, urls: &[String], tasks: &[tokio::task::AbortHandle]) {
    for t in tasks {
        t.abort();
    }
    for url in urls {
        nodes.remove_local(url);
    }
}
