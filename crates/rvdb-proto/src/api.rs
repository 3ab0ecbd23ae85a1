//! How one rvdb service reaches another: a trait per service ([`StorageApi`] for a storage node, [`ManagerApi`]
//! for the index manager) with two implementations each, as Qdrant's `LocalShard` / `RemoteShard`:
//!
//! - remote ([`RemoteStorage`], [`RemoteManager`], here): gRPC over a shared [`Channel`], with a deadline per call;
//! - local (`rvdb_node::LocalNode`, `rvdb_manager::LocalManager`): direct calls into the service in the same
//!   process: no serialization, no socket, the same request handling as the gRPC server (they call the very
//!   handler the server runs, so a local and a remote replica cannot drift apart).
//!
//! The gateway and the manager hold a [`NodeDirectory`] that hands out the right one by node URL, so the embedded
//! `rvdb serve` (manager + node + gateway in one process) and a cluster (each in its own process) run the same
//! code; only the directory's local entries differ.
//!
//! The messages are the protobuf types (plain structs, the schema both sides share); the error is
//! `tonic::Status`, the one status model of every rvdb service, which the callers map to their own error enums.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio_stream::Stream;
use tonic::Status;
use tower::timeout::Timeout;

use crate::v1 as pb;
use crate::v1::index_manager_client::IndexManagerClient;
use crate::v1::storage_node_client::StorageNodeClient;
use crate::{Channel, Channels};

pub type ApiResult<T> = Result<T, Status>;
/// A server stream (scan, changes, routing-table watch), local or remote alike.
pub type ApiStream<T> = Pin<Box<dyn Stream<Item = ApiResult<T>> + Send>>;

/// A storage node's API (`rvdb.v1.StorageNode`), one method per RPC.
#[tonic::async_trait]
pub trait StorageApi: Send + Sync + std::fmt::Debug {
    async fn create_shard(&self, req: pb::CreateShardRequest) -> ApiResult<pb::CreateShardResponse>;
    async fn drop_shard(&self, req: pb::DropShardRequest) -> ApiResult<pb::DropShardResponse>;
    async fn list_shards(&self) -> ApiResult<pb::ListShardsResponse>;
    async fn upsert(&self, req: pb::UpsertRequest) -> ApiResult<pb::UpsertResponse>;
    async fn get(&self, req: pb::GetRequest) -> ApiResult<pb::GetResponse>;
    async fn delete(&self, req: pb::DeleteRequest) -> ApiResult<pb::DeleteResponse>;
    async fn search(&self, req: pb::SearchRequest) -> ApiResult<pb::SearchResponse>;
    async fn scan(&self, req: pb::ScanRequest) -> ApiResult<ApiStream<pb::ScanChunk>>;
    async fn count(&self, req: pb::CountRequest) -> ApiResult<pb::CountResponse>;
    async fn text_stats(&self, req: pb::TextStatsRequest) -> ApiResult<pb::TextStatsResponse>;
    async fn keyword_search(&self, req: pb::KeywordSearchRequest) -> ApiResult<pb::KeywordSearchResponse>;
    async fn update_metadata(&self, req: pb::UpdateMetadataRequest) -> ApiResult<pb::UpdateMetadataResponse>;
    async fn flush(&self, req: pb::FlushRequest) -> ApiResult<pb::FlushResponse>;
    async fn stats(&self, req: pb::StatsRequest) -> ApiResult<pb::StatsResponse>;
    async fn rebuild_index(&self, req: pb::RebuildIndexRequest) -> ApiResult<pb::RebuildIndexResponse>;
    async fn changes(&self, req: pb::ChangesRequest) -> ApiResult<ApiStream<pb::ChangesChunk>>;
    async fn digest(&self, req: pb::DigestRequest) -> ApiResult<pb::DigestResponse>;
    async fn catch_up(&self, req: pb::CatchUpRequest) -> ApiResult<pb::CatchUpResponse>;
    async fn bucket_digests(&self, req: pb::BucketDigestsRequest) -> ApiResult<pb::BucketDigestsResponse>;
    async fn fence_shards(&self, req: pb::FenceShardsRequest) -> ApiResult<pb::FenceShardsResponse>;
    async fn prune_shard(&self, req: pb::PruneShardRequest) -> ApiResult<pb::PruneShardResponse>;
}

/// The index manager's API (`rvdb.v1.IndexManager`), one method per RPC.
#[tonic::async_trait]
pub trait ManagerApi: Send + Sync + std::fmt::Debug {
    async fn register_node(&self, req: pb::RegisterNodeRequest) -> ApiResult<pb::RegisterNodeResponse>;
    async fn heartbeat(&self, req: pb::HeartbeatRequest) -> ApiResult<pb::HeartbeatResponse>;
    async fn leave_cluster(&self, req: pb::LeaveClusterRequest) -> ApiResult<pb::LeaveClusterResponse>;
    async fn create_store(&self, req: pb::CreateStoreRequest) -> ApiResult<pb::CreateStoreResponse>;
    async fn drop_store(&self, req: pb::DropStoreRequest) -> ApiResult<pb::DropStoreResponse>;
    async fn routing_table(&self) -> ApiResult<pb::RoutingTable>;
    async fn watch_routing_table(&self, req: pb::WatchRoutingTableRequest) -> ApiResult<ApiStream<pb::RoutingTable>>;
    async fn rebuild_index(&self, req: pb::ManagerRebuildIndexRequest) -> ApiResult<pb::ManagerRebuildIndexResponse>;
    async fn report_missed_write(&self, req: pb::ReportMissedWriteRequest) -> ApiResult<pb::ReportMissedWriteResponse>;
}

/// A storage node over gRPC; every unary call has the deadline it was made with (tower's `Timeout`).
#[derive(Debug, Clone)]
pub struct RemoteStorage(StorageNodeClient<Timeout<Channel>>);

impl RemoteStorage {
    pub fn new(channel: Channel, deadline: Duration) -> Self {
        Self(
            StorageNodeClient::new(Timeout::new(channel, deadline))
                .max_decoding_message_size(usize::MAX)
                .max_encoding_message_size(usize::MAX),
        )
    }
}

fn boxed<T: Send + 'static>(s: tonic::Streaming<T>) -> ApiStream<T> {
    Box::pin(s)
}

#[tonic::async_trait]
impl StorageApi for RemoteStorage {
    async fn create_shard(&self, req: pb::CreateShardRequest) -> ApiResult<pb::CreateShardResponse> {
        Ok(self.0.clone().create_shard(req).await?.into_inner())
    }
    async fn drop_shard(&self, req: pb::DropShardRequest) -> ApiResult<pb::DropShardResponse> {
        Ok(self.0.clone().drop_shard(req).await?.into_inner())
    }
    async fn list_shards(&self) -> ApiResult<pb::ListShardsResponse> {
        Ok(self.0.clone().list_shards(pb::ListShardsRequest {}).await?.into_inner())
    }
    async fn upsert(&self, req: pb::UpsertRequest) -> ApiResult<pb::UpsertResponse> {
        Ok(self.0.clone().upsert(req).await?.into_inner())
    }
    async fn get(&self, req: pb::GetRequest) -> ApiResult<pb::GetResponse> {
        Ok(self.0.clone().get(req).await?.into_inner())
    }
    async fn delete(&self, req: pb::DeleteRequest) -> ApiResult<pb::DeleteResponse> {
        Ok(self.0.clone().delete(req).await?.into_inner())
    }
    async fn search(&self, req: pb::SearchRequest) -> ApiResult<pb::SearchResponse> {
        Ok(self.0.clone().search(req).await?.into_inner())
    }
    async fn scan(&self, req: pb::ScanRequest) -> ApiResult<ApiStream<pb::ScanChunk>> {
        Ok(boxed(self.0.clone().scan(req).await?.into_inner()))
    }
    async fn count(&self, req: pb::CountRequest) -> ApiResult<pb::CountResponse> {
        Ok(self.0.clone().count(req).await?.into_inner())
    }
    async fn text_stats(&self, req: pb::TextStatsRequest) -> ApiResult<pb::TextStatsResponse> {
        Ok(self.0.clone().text_stats(req).await?.into_inner())
    }
    async fn keyword_search(&self, req: pb::KeywordSearchRequest) -> ApiResult<pb::KeywordSearchResponse> {
        Ok(self.0.clone().keyword_search(req).await?.into_inner())
    }
    async fn update_metadata(&self, req: pb::UpdateMetadataRequest) -> ApiResult<pb::UpdateMetadataResponse> {
        Ok(self.0.clone().update_metadata(req).await?.into_inner())
    }
    async fn flush(&self, req: pb::FlushRequest) -> ApiResult<pb::FlushResponse> {
        Ok(self.0.clone().flush(req).await?.into_inner())
    }
    async fn stats(&self, req: pb::StatsRequest) -> ApiResult<pb::StatsResponse> {
        Ok(self.0.clone().stats(req).await?.into_inner())
    }
    async fn rebuild_index(&self, req: pb::RebuildIndexRequest) -> ApiResult<pb::RebuildIndexResponse> {
        Ok(self.0.clone().rebuild_index(req).await?.into_inner())
    }
    async fn changes(&self, req: pb::ChangesRequest) -> ApiResult<ApiStream<pb::ChangesChunk>> {
        Ok(boxed(self.0.clone().changes(req).await?.into_inner()))
    }
    async fn digest(&self, req: pb::DigestRequest) -> ApiResult<pb::DigestResponse> {
        Ok(self.0.clone().digest(req).await?.into_inner())
    }
    async fn catch_up(&self, req: pb::CatchUpRequest) -> ApiResult<pb::CatchUpResponse> {
        Ok(self.0.clone().catch_up(req).await?.into_inner())
    }
    async fn bucket_digests(&self, req: pb::BucketDigestsRequest) -> ApiResult<pb::BucketDigestsResponse> {
        Ok(self.0.clone().bucket_digests(req).await?.into_inner())
    }
    async fn fence_shards(&self, req: pb::FenceShardsRequest) -> ApiResult<pb::FenceShardsResponse> {
        Ok(self.0.clone().fence_shards(req).await?.into_inner())
    }
    async fn prune_shard(&self, req: pb::PruneShardRequest) -> ApiResult<pb::PruneShardResponse> {
        Ok(self.0.clone().prune_shard(req).await?.into_inner())
    }
}

/// The index manager over gRPC.
#[derive(Debug, Clone)]
pub struct RemoteManager(IndexManagerClient<Channel>);

impl RemoteManager {
    pub fn new(channel: Channel) -> Self {
        Self(IndexManagerClient::new(channel).max_decoding_message_size(usize::MAX))
    }

    /// The manager at `url`, connected lazily; each call has `deadline` (the watch stream has none).
    pub fn connect_lazy(url: &str, deadline: Duration) -> Result<Self, tonic::transport::Error> {
        Ok(Self::new(Channel::new(crate::endpoint(url)?.timeout(deadline).connect_lazy())))
    }
}

#[tonic::async_trait]
impl ManagerApi for RemoteManager {
    async fn register_node(&self, req: pb::RegisterNodeRequest) -> ApiResult<pb::RegisterNodeResponse> {
        Ok(self.0.clone().register_node(req).await?.into_inner())
    }
    async fn heartbeat(&self, req: pb::HeartbeatRequest) -> ApiResult<pb::HeartbeatResponse> {
        Ok(self.0.clone().heartbeat(req).await?.into_inner())
    }
    async fn leave_cluster(&self, req: pb::LeaveClusterRequest) -> ApiResult<pb::LeaveClusterResponse> {
        Ok(self.0.clone().leave_cluster(req).await?.into_inner())
    }
    async fn create_store(&self, req: pb::CreateStoreRequest) -> ApiResult<pb::CreateStoreResponse> {
        Ok(self.0.clone().create_store(req).await?.into_inner())
    }
    async fn drop_store(&self, req: pb::DropStoreRequest) -> ApiResult<pb::DropStoreResponse> {
        Ok(self.0.clone().drop_store(req).await?.into_inner())
    }
    async fn routing_table(&self) -> ApiResult<pb::RoutingTable> {
        Ok(self.0.clone().get_routing_table(pb::GetRoutingTableRequest {}).await?.into_inner())
    }
    async fn watch_routing_table(&self, req: pb::WatchRoutingTableRequest) -> ApiResult<ApiStream<pb::RoutingTable>> {
        Ok(boxed(self.0.clone().watch_routing_table(req).await?.into_inner()))
    }
    async fn rebuild_index(&self, req: pb::ManagerRebuildIndexRequest) -> ApiResult<pb::ManagerRebuildIndexResponse> {
        Ok(self.0.clone().rebuild_index(req).await?.into_inner())
    }
    async fn report_missed_write(&self, req: pb::ReportMissedWriteRequest) -> ApiResult<pb::ReportMissedWriteResponse> {
        Ok(self.0.clone().report_missed_write(req).await?.into_inner())
    }
}

/// Storage nodes by URL: the ones in this process (registered with [`NodeDirectory::add_local`]) are called
/// directly, every other one over gRPC on a channel shared by all calls to it.
#[derive(Debug, Default)]
pub struct NodeDirectory {
    local: RwLock<HashMap<String, Arc<dyn StorageApi>>>,
    channels: Channels,
}

/// How long a remote call without a deadline of its own may take (a catch-up stream).
const NO_DEADLINE: Duration = Duration::from_secs(7 * 24 * 3600);

impl NodeDirectory {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Serves calls to `url` by `node`, in this process.
    pub fn add_local(&self, url: &str, node: Arc<dyn StorageApi>) {
        self.local.write().unwrap_or_else(|p| p.into_inner()).insert(url.to_string(), node);
    }

    /// Stops serving `url` in process (calls to it go over gRPC again).
    pub fn remove_local(&self, url: &str) {
        self.local.write().unwrap_or_else(|p| p.into_inner()).remove(url);
    }

    /// The node at `url`. A remote call fails after `deadline` (`None`: no deadline); a local one has none (it
    /// cannot be lost on a network, and it runs on this process's threads).
    pub fn get(&self, url: &str, deadline: Option<Duration>) -> Result<Arc<dyn StorageApi>, tonic::transport::Error> {
        if let Some(node) = self.local.read().unwrap_or_else(|p| p.into_inner()).get(url) {
            return Ok(node.clone());
        }
        let channel = self.channels.get(url)?;
        Ok(Arc::new(RemoteStorage::new(channel, deadline.unwrap_or(NO_DEADLINE))))
    }
}
