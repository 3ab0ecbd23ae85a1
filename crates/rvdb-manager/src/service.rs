//! The gRPC `IndexManager` service: converts messages and delegates to [`Manager`]; [`LocalManager`] serves the
//! same handlers to services of the same process without gRPC.

use std::sync::Arc;

use rvdb_proto::api::{ApiResult, ApiStream, ManagerApi};
use rvdb_proto::convert::{config_from_pb, config_to_pb};
use rvdb_proto::v1 as pb;
use rvdb_proto::v1::index_manager_server::{IndexManager, IndexManagerServer};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

use crate::Manager;
use crate::manager::route_to_pb;

#[derive(Debug, Clone)]
pub struct IndexManagerService {
    manager: Arc<Manager>,
}

impl IndexManagerService {
    pub fn new(manager: Arc<Manager>) -> Self {
        Self { manager }
    }

    pub fn into_server(self) -> IndexManagerServer<Self> {
        IndexManagerServer::new(self).max_encoding_message_size(usize::MAX)
    }
}

type TableStream = ApiStream<pb::RoutingTable>;

#[tonic::async_trait]
impl IndexManager for IndexManagerService {
    async fn register_node(
        &self,
        req: Request<pb::RegisterNodeRequest>,
    ) -> Result<Response<pb::RegisterNodeResponse>, Status> {
        let req = req.into_inner();
        self.manager.check_cluster(&req.cluster_id)?;
        self.manager.check_removed(&req.node_id, &req.cluster_id)?;
        let (heartbeat_interval_ms, routing_version) = self.manager.register_node(&req.node_id, &req.address)?;
        let cluster_id = self.manager.cluster_id();
        Ok(Response::new(pb::RegisterNodeResponse { heartbeat_interval_ms, routing_version, cluster_id }))
    }

    async fn heartbeat(&self, req: Request<pb::HeartbeatRequest>) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = req.into_inner();
        let routing_version = self.manager.heartbeat(&req.node_id, req.hosted)?;
        Ok(Response::new(pb::HeartbeatResponse { routing_version }))
    }

    async fn leave_cluster(
        &self,
        req: Request<pb::LeaveClusterRequest>,
    ) -> Result<Response<pb::LeaveClusterResponse>, Status> {
        let routing_version = self.manager.leave(&req.into_inner().node_id)?;
        Ok(Response::new(pb::LeaveClusterResponse { routing_version }))
    }

    async fn create_store(
        &self,
        req: Request<pb::CreateStoreRequest>,
    ) -> Result<Response<pb::CreateStoreResponse>, Status> {
        let config = req.into_inner().config.ok_or_else(|| Status::invalid_argument("config is required"))?;
        let config = config_from_pb(config).map_err(|e| Status::invalid_argument(e.to_string()))?;
        let entry = self.manager.create_store(config).await?;
        Ok(Response::new(pb::CreateStoreResponse { route: Some(route_to_pb(&entry)) }))
    }

    async fn drop_store(&self, req: Request<pb::DropStoreRequest>) -> Result<Response<pb::DropStoreResponse>, Status> {
        self.manager.drop_store(&req.into_inner().name).await?;
        Ok(Response::new(pb::DropStoreResponse {}))
    }

    async fn list_stores(
        &self,
        _req: Request<pb::ListStoresRequest>,
    ) -> Result<Response<pb::ListStoresResponse>, Status> {
        let stores = self.manager.list_stores().iter().map(config_to_pb).collect();
        Ok(Response::new(pb::ListStoresResponse { stores }))
    }

    async fn describe_store(
        &self,
        req: Request<pb::DescribeStoreRequest>,
    ) -> Result<Response<pb::DescribeStoreResponse>, Status> {
        let entry = self.manager.describe_store(&req.into_inner().name)?;
        Ok(Response::new(pb::DescribeStoreResponse { route: Some(route_to_pb(&entry)) }))
    }

    async fn get_routing_table(
        &self,
        _req: Request<pb::GetRoutingTableRequest>,
    ) -> Result<Response<pb::RoutingTable>, Status> {
        Ok(Response::new((*self.manager.routing_table()).clone()))
    }

    type WatchRoutingTableStream = TableStream;

    async fn watch_routing_table(
        &self,
        req: Request<pb::WatchRoutingTableRequest>,
    ) -> Result<Response<Self::WatchRoutingTableStream>, Status> {
        let req = req.into_inner();
        let (known, known_cluster) = (req.known_version, req.known_cluster_id);
        // The current table first (unless the caller has it), then every new version; a slow watcher skips
        // intermediate versions and gets the latest, which is all it needs.
        // ... until the manager closes (the process stops): the stream ends, so the server's graceful stop does
        // not wait for it and the gateway re-subscribes to the next manager.
        use tokio_stream::wrappers::WatchStream;
        let tables = WatchStream::new(self.manager.watch())
            .filter(move |t| t.version > known || (!known_cluster.is_empty() && t.cluster_id != known_cluster))
            .map(Some);
        let closed = WatchStream::new(self.manager.closed()).filter(|closed| *closed).map(|_| None);
        let stream = tables.merge(closed).take_while(Option::is_some).filter_map(|t| t).map(|t| Ok((*t).clone()));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn report_missed_write(
        &self,
        req: Request<pb::ReportMissedWriteRequest>,
    ) -> Result<Response<pb::ReportMissedWriteResponse>, Status> {
        let req = req.into_inner();
        let shard = req.shard.ok_or_else(|| Status::invalid_argument("shard is required"))?;
        let scheduled = self.manager.report_missed_write(shard, &req.node_address, req.min_version);
        Ok(Response::new(pb::ReportMissedWriteResponse { scheduled }))
    }

    async fn rebuild_index(
        &self,
        req: Request<pb::ManagerRebuildIndexRequest>,
    ) -> Result<Response<pb::ManagerRebuildIndexResponse>, Status> {
        let started = self.manager.rebuild_index(&req.into_inner().name).await?;
        Ok(Response::new(pb::ManagerRebuildIndexResponse { started }))
    }

    async fn move_shard(&self, req: Request<pb::MoveShardRequest>) -> Result<Response<pb::MoveShardResponse>, Status> {
        let req = req.into_inner();
        let report = self.manager.move_shard(&req.store, req.shard, &req.from_node_id, &req.to_node_id).await?;
        Ok(Response::new(pb::MoveShardResponse {
            records: report.records,
            elapsed_ms: report.elapsed.as_millis() as u64,
            version: report.version,
        }))
    }

    async fn rebalance(&self, req: Request<pb::RebalanceRequest>) -> Result<Response<pb::RebalanceResponse>, Status> {
        let started = std::time::Instant::now();
        let req = req.into_inner();
        let done = self.manager.rebalance(req.max_moves as usize, req.parallel as usize).await?;
        Ok(Response::new(pb::RebalanceResponse {
            records: done.iter().map(|(_, r)| r.records).sum(),
            moves: done.into_iter().map(|(m, _)| done_move(m)).collect(),
            elapsed_ms: started.elapsed().as_millis() as u64,
        }))
    }

    async fn reshard(&self, req: Request<pb::ReshardRequest>) -> Result<Response<pb::ReshardResponse>, Status> {
        let req = req.into_inner();
        let r = self.manager.reshard(&req.store, req.shards).await?;
        Ok(Response::new(pb::ReshardResponse {
            from_shards: r.from,
            to_shards: r.to,
            records: r.records,
            pruned: r.pruned,
            elapsed_ms: r.elapsed.as_millis() as u64,
            version: r.version,
            copy_ms: r.copy.as_millis() as u64,
        }))
    }

    async fn cancel_operation(
        &self,
        req: Request<pb::CancelOperationRequest>,
    ) -> Result<Response<pb::CancelOperationResponse>, Status> {
        let req = req.into_inner();
        let cancelled = self.manager.cancel(&req.store, req.shard)?;
        Ok(Response::new(pb::CancelOperationResponse { cancelled }))
    }

    async fn remove_node(
        &self,
        req: Request<pb::RemoveNodeRequest>,
    ) -> Result<Response<pb::RemoveNodeResponse>, Status> {
        let report = self.manager.remove_node(&req.into_inner().node_id).await?;
        Ok(Response::new(pb::RemoveNodeResponse {
            moves: report.moved.into_iter().map(done_move).collect(),
            records: report.records,
            version: report.version,
        }))
    }
}

fn done_move(m: crate::manager::rebalance::Move) -> pb::ShardTransfer {
    pb::ShardTransfer {
        store: m.shard.store,
        shard: m.shard.shard,
        from_node_id: m.from,
        to_node_id: m.to,
        phase: "done".into(),
        ..Default::default()
    }
}

/// The manager as a [`ManagerApi`] for services in the same process (the node agent and gateway of `rvdb
/// serve`): each call runs the gRPC handler above directly, with no serialization and no socket.
#[derive(Debug, Clone)]
pub struct LocalManager(IndexManagerService);

impl LocalManager {
    pub fn new(manager: Arc<Manager>) -> Arc<Self> {
        Arc::new(Self(IndexManagerService::new(manager)))
    }
}

#[tonic::async_trait]
impl ManagerApi for LocalManager {
    async fn register_node(&self, req: pb::RegisterNodeRequest) -> ApiResult<pb::RegisterNodeResponse> {
        Ok(IndexManager::register_node(&self.0, Request::new(req)).await?.into_inner())
    }
    async fn heartbeat(&self, req: pb::HeartbeatRequest) -> ApiResult<pb::HeartbeatResponse> {
        Ok(IndexManager::heartbeat(&self.0, Request::new(req)).await?.into_inner())
    }
    async fn leave_cluster(&self, req: pb::LeaveClusterRequest) -> ApiResult<pb::LeaveClusterResponse> {
        Ok(IndexManager::leave_cluster(&self.0, Request::new(req)).await?.into_inner())
    }
    async fn create_store(&self, req: pb::CreateStoreRequest) -> ApiResult<pb::CreateStoreResponse> {
        Ok(IndexManager::create_store(&self.0, Request::new(req)).await?.into_inner())
    }
    async fn drop_store(&self, req: pb::DropStoreRequest) -> ApiResult<pb::DropStoreResponse> {
        Ok(IndexManager::drop_store(&self.0, Request::new(req)).await?.into_inner())
    }
    async fn routing_table(&self) -> ApiResult<pb::RoutingTable> {
        Ok(IndexManager::get_routing_table(&self.0, Request::new(pb::GetRoutingTableRequest {})).await?.into_inner())
    }
    async fn watch_routing_table(&self, req: pb::WatchRoutingTableRequest) -> ApiResult<ApiStream<pb::RoutingTable>> {
        Ok(IndexManager::watch_routing_table(&self.0, Request::new(req)).await?.into_inner())
    }
    async fn rebuild_index(&self, req: pb::ManagerRebuildIndexRequest) -> ApiResult<pb::ManagerRebuildIndexResponse> {
        Ok(IndexManager::rebuild_index(&self.0, Request::new(req)).await?.into_inner())
    }
    async fn report_missed_write(&self, req: pb::ReportMissedWriteRequest) -> ApiResult<pb::ReportMissedWriteResponse> {
        Ok(IndexManager::report_missed_write(&self.0, Request::new(req)).await?.into_inner())
    }
}
