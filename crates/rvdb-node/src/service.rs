//! The gRPC `StorageNode` service: converts protobuf messages to domain calls on [`Node`] and back. Every call
//! runs on tokio's blocking pool (RocksDB I/O and SIMD scans must not stall the async reactor) and through
//! [`Node::with_shard`], so a panic is contained to its shard. [`LocalNode`] serves the same handlers to services
//! of the same process without gRPC.

use std::pin::Pin;
use std::sync::Arc;

use rvdb_proto::api::{ApiResult, ApiStream, NodeDirectory, StorageApi};
use rvdb_proto::convert::{config_from_pb, config_to_pb};
use rvdb_proto::rpc::served_locally;
use rvdb_proto::v1 as pb;
use rvdb_proto::v1::storage_node_server::{StorageNode, StorageNodeServer};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status};

use crate::shard::{BucketFilter, Change, MetadataPatch, PointData, ScoredPoint, SearchOptions};
use crate::{Node, NodeError, ShardKey, ShardStats};
use rvdb_core::filter::Filter;
use rvdb_core::sharding::Owner;
use rvdb_core::text::CorpusStats;

/// Default cap on one decoded request (the whole upsert batch): large enough for 100k × 128-d points.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 64 << 20;

#[derive(Debug, Clone)]
pub struct StorageNodeService {
    node: Arc<Node>,
    /// How `CatchUp` reaches the source replica (over gRPC, unless it is in this process).
    peers: Arc<NodeDirectory>,
}

impl StorageNodeService {
    pub fn new(node: Arc<Node>) -> Self {
        Self::with_peers(node, NodeDirectory::new())
    }

    /// A service whose catch-ups reach their source through `peers`.
    pub fn with_peers(node: Arc<Node>, peers: Arc<NodeDirectory>) -> Self {
        Self { node, peers }
    }

    /// The tonic server for this service, with request-size limits and compression enabled.
    pub fn into_server(self, max_request_bytes: usize) -> StorageNodeServer<Self> {
        StorageNodeServer::new(self)
            .max_decoding_message_size(max_request_bytes)
            .max_encoding_message_size(usize::MAX)
            .accept_compressed(tonic::codec::CompressionEncoding::Zstd)
            .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
    }

    async fn blocking<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Node) -> Result<R, NodeError> + Send + 'static,
    ) -> Result<R, Status> {
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || f(&node))
            .await
            .map_err(|e| Status::internal(format!("request task failed: {e}")))?
            .map_err(Status::from)
    }
}

fn shard_key(id: Option<pb::ShardId>) -> Result<ShardKey, Status> {
    let id = id.ok_or_else(|| Status::invalid_argument("shard is required"))?;
    rvdb_core::types::validate_store_name(&id.store).map_err(|e| Status::invalid_argument(e.to_string()))?;
    Ok(ShardKey::new(id.store, id.shard))
}

/// A read's filter: its JSON text (empty = none), restricted to the points `key`'s shard owns under a layout of
/// `layout_shards` shards when that is set (reads of a store being resharded, see `rvdb_core::sharding`).
fn read_filter(json: &str, key: &ShardKey, layout_shards: u32) -> Result<Option<Filter>, Status> {
    let owner = owner_of(key, layout_shards)?;
    Ok(match parse_filter(json)? {
        Some(f) => Some(f.owned_by(owner)),
        None => owner.map(|o| Filter { owner: Some(o), ..Filter::default() }),
    })
}

/// The layout a read asks for, checked: `key`'s shard must exist in it.
fn owner_of(key: &ShardKey, layout_shards: u32) -> Result<Option<Owner>, Status> {
    if layout_shards == 0 {
        return Ok(None);
    }
    if layout_shards > rvdb_core::types::MAX_SHARDS || key.shard >= layout_shards {
        return Err(Status::invalid_argument(format!(
            "layout_shards {layout_shards}: shard {} is not in a layout of that many shards (1..={})",
            key.shard,
            rvdb_core::types::MAX_SHARDS
        )));
    }
    Ok(Some(Owner { shard: key.shard, shards: layout_shards }))
}

/// A filter from its JSON text (empty = none); errors name the offending path.
fn parse_filter(json: &str) -> Result<Option<Filter>, Status> {
    if json.trim().is_empty() {
        return Ok(None);
    }
    let value: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| Status::invalid_argument(format!("filter_json is not valid JSON: {e}")))?;
    Filter::parse(&value, "filter").map(Some).map_err(|e| Status::invalid_argument(e.to_string()))
}

fn stats_to_pb(s: ShardStats) -> pb::ShardStats {
    pb::ShardStats {
        shard: Some(pb::ShardId { store: s.key.store, shard: s.key.shard }),
        config: Some(config_to_pb(&s.config)),
        points: s.points,
        tombstones: s.tombstones,
        max_version: s.max_version,
        index_memory_bytes: s.index_memory_bytes,
        memory: Some(pb::MemoryUse {
            vectors: s.memory.vectors as u64,
            codes: s.memory.codes as u64,
            ids: s.memory.ids as u64,
            graph: s.memory.graph as u64,
            metadata: s.memory.metadata as u64,
            text: s.memory.text as u64,
        }),
        disk_bytes: s.disk_bytes,
        index_status: s.index_status.as_str().to_string(),
    }
}

fn point_to_pb(p: PointData, with_vector: bool, with_metadata: bool) -> pb::Point {
    pb::Point {
        id: p.id,
        vector: if with_vector { p.vector } else { Vec::new() },
        metadata_json: if with_metadata { p.metadata } else { String::new() },
        version: p.version,
    }
}

/// Most distinct terms a keyword query may have.
const MAX_QUERY_TERMS: usize = 1024;

/// A keyword query's analysed terms with their weights (empty `weights`: 1 each), checked.
fn query_terms(terms: Vec<String>, weights: Vec<u32>) -> Result<Vec<(String, u32)>, Status> {
    if terms.len() > MAX_QUERY_TERMS {
        return Err(Status::invalid_argument(format!("{} query terms: at most {MAX_QUERY_TERMS}", terms.len())));
    }
    if !weights.is_empty() && weights.len() != terms.len() {
        return Err(Status::invalid_argument(format!(
            "{} weights for {} terms: give one per term, or none",
            weights.len(),
            terms.len()
        )));
    }
    let weights = if weights.is_empty() { vec![1; terms.len()] } else { weights };
    Ok(terms.into_iter().zip(weights).collect())
}

fn corpus_stats_to_pb(s: CorpusStats) -> pb::TextStatsResponse {
    pb::TextStatsResponse {
        documents: s.documents,
        total_length: s.total_length,
        document_frequency: s.document_frequency,
    }
}

fn scored_to_pb(p: ScoredPoint) -> pb::ScoredPoint {
    pb::ScoredPoint {
        id: p.id,
        distance: p.distance,
        vector: p.vector.unwrap_or_default(),
        metadata_json: p.metadata.unwrap_or_default(),
        version: p.version,
    }
}

type ScanStream = ApiStream<pb::ScanChunk>;
type ChangesStream = ApiStream<pb::ChangesChunk>;

/// Runs `produce` on the blocking pool and streams what it emits, `chunk_size` items per message, through a
/// bounded channel (so a slow reader slows the producer instead of filling memory). `emit` returns false once the
/// reader went away, which stops the producer; an error ends the stream with its status.
fn stream_blocking<I, C>(
    chunk_size: usize,
    to_chunk: impl Fn(Vec<I>) -> C + Send + 'static,
    produce: impl FnOnce(&mut dyn FnMut(I) -> bool) -> Result<(), NodeError> + Send + 'static,
) -> Pin<Box<dyn Stream<Item = Result<C, Status>> + Send>>
where
    I: Send + 'static,
    C: Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<C, Status>>(4);
    tokio::task::spawn_blocking(move || {
        let mut items = Vec::with_capacity(chunk_size);
        let result = produce(&mut |item| {
            items.push(item);
            if items.len() >= chunk_size {
                let full = std::mem::replace(&mut items, Vec::with_capacity(chunk_size));
                return tx.blocking_send(Ok(to_chunk(full))).is_ok();
            }
            true
        });
        match result {
            Ok(()) if !items.is_empty() => {
                let _ = tx.blocking_send(Ok(to_chunk(items)));
            }
            Ok(()) => {}
            Err(e) => {
                let _ = tx.blocking_send(Err(e.into()));
            }
        }
    });
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}

/// Splits a chunk of streamed changes into points and `(id, version)` tombstones.
/// The bucket filter of a `Changes` / `CatchUp` request (`None` when `buckets` is 0: every record).
fn bucket_filter(buckets: u32, only: &[u32]) -> Result<Option<BucketFilter>, Status> {
    if buckets == 0 {
        return Ok(None);
    }
    Ok(Some(BucketFilter::new(buckets, only)?))
}

fn changes_from_pb(chunk: pb::ChangesChunk) -> (Vec<PointData>, Vec<(String, u64)>) {
    let points = chunk
        .points
        .into_iter()
        .map(|p| PointData { id: p.id, vector: p.vector, metadata: p.metadata_json, version: p.version })
        .collect();
    (points, chunk.tombstones.into_iter().map(|t| (t.id, t.version)).collect())
}

#[tonic::async_trait]
impl StorageNode for StorageNodeService {
    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn create_shard(
        &self,
        req: Request<pb::CreateShardRequest>,
    ) -> Result<Response<pb::CreateShardResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        let config = config_from_pb(req.config.ok_or_else(|| Status::invalid_argument("config is required"))?)
            .map_err(|e| Status::from(NodeError::from(e)))?;
        let (epoch, filling) = (req.placement_epoch, req.filling);
        self.blocking(move |n| {
            n.create_shard(key.clone(), config)?;
            if filling {
                n.set_filling(&key, true)?;
            }
            if epoch > 0 {
                n.with_shard(&key, |s| s.raise_epoch(epoch))?;
            }
            Ok(())
        })
        .await?;
        Ok(Response::new(pb::CreateShardResponse {}))
    }

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn drop_shard(&self, req: Request<pb::DropShardRequest>) -> Result<Response<pb::DropShardResponse>, Status> {
        let key = shard_key(req.into_inner().shard)?;
        record_shard(&key);
        self.blocking(move |n| n.drop_shard(&key)).await?;
        Ok(Response::new(pb::DropShardResponse {}))
    }

    async fn list_shards(
        &self,
        _req: Request<pb::ListShardsRequest>,
    ) -> Result<Response<pb::ListShardsResponse>, Status> {
        let shards = self.blocking(|n| Ok(n.list_shards())).await?;
        Ok(Response::new(pb::ListShardsResponse { shards: shards.into_iter().map(stats_to_pb).collect() }))
    }

    #[tracing::instrument(skip_all, fields(store, shard, points))]
    async fn upsert(&self, req: Request<pb::UpsertRequest>) -> Result<Response<pb::UpsertResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        tracing::Span::current().record("points", req.points.len());
        let points: Vec<PointData> = req
            .points
            .into_iter()
            .map(|p| PointData { id: p.id, vector: p.vector, metadata: p.metadata_json, version: p.version })
            .collect();
        let (sync, epoch) = (req.sync, req.placement_epoch);
        let store = key.store.clone();
        let out = self.blocking(move |n| n.with_shard(&key, |s| s.fenced(epoch, || s.upsert(points, sync)))).await?;
        crate::metrics::points_written(&store, out.applied.into());
        Ok(Response::new(pb::UpsertResponse {
            applied: out.applied,
            stale: out.stale,
            max_version: out.max_version,
            stale_ids: out.stale_ids,
            shard_max_version: out.shard_max_version,
        }))
    }

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn get(&self, req: Request<pb::GetRequest>) -> Result<Response<pb::GetResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        let ids = req.ids;
        let points = self.blocking(move |n| n.with_shard(&key, |s| s.readable().and_then(|()| s.get(&ids)))).await?;
        let points = points.into_iter().map(|p| point_to_pb(p, req.with_vector, req.with_metadata)).collect();
        Ok(Response::new(pb::GetResponse { points }))
    }

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn delete(&self, req: Request<pb::DeleteRequest>) -> Result<Response<pb::DeleteResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        let (ids, version, sync, epoch) = (req.ids, req.version, req.sync, req.placement_epoch);
        let store = key.store.clone();
        let out =
            self.blocking(move |n| n.with_shard(&key, |s| s.fenced(epoch, || s.delete(&ids, version, sync)))).await?;
        crate::metrics::points_deleted(&store, out.deleted.into());
        Ok(Response::new(pb::DeleteResponse {
            deleted: out.deleted,
            stale_ids: out.stale_ids,
            shard_max_version: out.shard_max_version,
        }))
    }

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn rebuild_index(
        &self,
        req: Request<pb::RebuildIndexRequest>,
    ) -> Result<Response<pb::RebuildIndexResponse>, Status> {
        let key = shard_key(req.into_inner().shard)?;
        record_shard(&key);
        let started = self.blocking(move |n| n.with_shard(&key, |s| s.rebuild_graph())).await?;
        Ok(Response::new(pb::RebuildIndexResponse { started }))
    }

    #[tracing::instrument(skip_all, fields(store, shard, k))]
    async fn search(&self, req: Request<pb::SearchRequest>) -> Result<Response<pb::SearchResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        tracing::Span::current().record("k", req.k);
        let opts = SearchOptions {
            k: req.k,
            ef: (req.ef > 0).then_some(req.ef),
            filter: read_filter(&req.filter_json, &key, req.layout_shards)?,
            exact: req.exact,
            with_vector: req.with_vector,
            with_metadata: req.with_metadata,
        };
        let vector = req.vector;
        let store = key.store.clone();
        let out = self
            .blocking(move |n| n.with_shard(&key, |s| s.readable().and_then(|()| s.search(&vector, &opts))))
            .await?;
        crate::metrics::search_served(&store);
        Ok(Response::new(pb::SearchResponse {
            results: out.points.into_iter().map(scored_to_pb).collect(),
            scanned: out.scanned,
            plan: out.plan.as_str().to_string(),
        }))
    }

    type ScanStream = ScanStream;

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn scan(&self, req: Request<pb::ScanRequest>) -> Result<Response<Self::ScanStream>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        let shard = self.node.shard(&key)?;
        shard.readable()?;
        let chunk_size = if req.chunk_size == 0 { 1000 } else { req.chunk_size.min(100_000) as usize };
        let (wv, wm, start_after) = (req.with_vector, req.with_metadata, req.start_after);
        let filter = read_filter(&req.filter_json, &key, req.layout_shards)?;
        let limit = if req.limit == 0 { u64::MAX } else { u64::from(req.limit) };
        let chunk_size = chunk_size.min(usize::try_from(limit).unwrap_or(usize::MAX));
        let (sample, seed) = (req.sample as usize, req.seed);
        let stream = stream_blocking(
            chunk_size,
            |points| pb::ScanChunk { points },
            move |emit| {
                if sample > 0 {
                    for p in shard.sample(sample, filter.as_ref(), seed)? {
                        if !emit(point_to_pb(p, wv, wm)) {
                            break;
                        }
                    }
                    return Ok(());
                }
                let mut sent = 0u64;
                shard.scan_matching(&start_after, filter.as_ref(), |p| {
                    sent += 1;
                    emit(point_to_pb(p, wv, wm)) && sent < limit
                })
            },
        );
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn count(&self, req: Request<pb::CountRequest>) -> Result<Response<pb::CountResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        let filter = read_filter(&req.filter_json, &key, req.layout_shards)?;
        let count = self
            .blocking(move |n| n.with_shard(&key, |s| s.readable().and_then(|()| s.count(filter.as_ref()))))
            .await?;
        Ok(Response::new(pb::CountResponse { count }))
    }

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn text_stats(&self, req: Request<pb::TextStatsRequest>) -> Result<Response<pb::TextStatsResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        let terms = query_terms(req.terms, Vec::new())?;
        let stats =
            self.blocking(move |n| n.with_shard(&key, |s| s.readable().and_then(|()| s.text_stats(&terms)))).await?;
        Ok(Response::new(corpus_stats_to_pb(stats)))
    }

    #[tracing::instrument(skip_all, fields(store, shard, k))]
    async fn keyword_search(
        &self,
        req: Request<pb::KeywordSearchRequest>,
    ) -> Result<Response<pb::KeywordSearchResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        tracing::Span::current().record("k", req.k);
        let terms = query_terms(req.terms, req.weights)?;
        let filter = read_filter(&req.filter_json, &key, req.layout_shards)?;
        let collection = req.collection.map(|c| CorpusStats {
            documents: c.documents,
            total_length: c.total_length,
            document_frequency: c.document_frequency,
        });
        let (k, wv, wm) = (req.k, req.with_vector, req.with_metadata);
        let store = key.store.clone();
        let hits = self
            .blocking(move |n| {
                n.with_shard(&key, |s| {
                    s.readable()?;
                    s.keyword_search(&terms, collection.as_ref(), k, filter.as_ref(), wv, wm)
                })
            })
            .await?;
        crate::metrics::search_served(&store);
        Ok(Response::new(pb::KeywordSearchResponse {
            results: hits
                .into_iter()
                .map(|h| pb::KeywordHit {
                    id: h.id,
                    score: h.score,
                    vector: h.vector.unwrap_or_default(),
                    metadata_json: h.metadata.unwrap_or_default(),
                    version: h.version,
                })
                .collect(),
        }))
    }

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn update_metadata(
        &self,
        req: Request<pb::UpdateMetadataRequest>,
    ) -> Result<Response<pb::UpdateMetadataResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        let set = match req.set_json.trim() {
            "" => serde_json::Map::new(),
            text => match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(m)) => m,
                Ok(_) => return Err(Status::invalid_argument("set_json must be a JSON object")),
                Err(e) => return Err(Status::invalid_argument(format!("set_json is not JSON: {e}"))),
            },
        };
        let patch = MetadataPatch { set, unset: req.unset };
        let (ids, version, sync, epoch) = (req.ids, req.version, req.sync, req.placement_epoch);
        let out = self
            .blocking(move |n| {
                n.with_shard(&key, |s| s.fenced(epoch, || s.update_metadata(&ids, &patch, version, sync)))
            })
            .await?;
        Ok(Response::new(pb::UpdateMetadataResponse {
            updated: out.updated,
            stale_ids: out.stale_ids,
            shard_max_version: out.shard_max_version,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn flush(&self, req: Request<pb::FlushRequest>) -> Result<Response<pb::FlushResponse>, Status> {
        match req.into_inner().shard {
            Some(id) => {
                let key = shard_key(Some(id))?;
                self.blocking(move |n| n.with_shard(&key, |s| s.flush())).await?;
            }
            None => {
                self.blocking(|n| {
                    for s in n.list_shards() {
                        n.with_shard(&s.key, |s| s.flush())?;
                    }
                    n.sync_wal()
                })
                .await?;
            }
        }
        Ok(Response::new(pb::FlushResponse {}))
    }

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn stats(&self, req: Request<pb::StatsRequest>) -> Result<Response<pb::StatsResponse>, Status> {
        let key = shard_key(req.into_inner().shard)?;
        record_shard(&key);
        let stats = self.blocking(move |n| n.with_shard(&key, |s| s.stats())).await?;
        Ok(Response::new(pb::StatsResponse { stats: Some(stats_to_pb(stats)) }))
    }

    type ChangesStream = ChangesStream;

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn changes(&self, req: Request<pb::ChangesRequest>) -> Result<Response<Self::ChangesStream>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        let shard = self.node.shard(&key)?;
        let chunk_size = if req.chunk_size == 0 { 1000 } else { req.chunk_size.min(100_000) as usize };
        let since = req.since_version;
        let buckets = bucket_filter(req.buckets, &req.only_buckets)?;
        let owner = owner_of(&ShardKey::new(key.store.clone(), req.owner_shard), req.owner_shards)?;
        let to_chunk = |changes: Vec<Change>| {
            let mut chunk = pb::ChangesChunk::default();
            for c in changes {
                match c {
                    Change::Point(p) => chunk.points.push(point_to_pb(p, true, true)),
                    Change::Tombstone { id, version } => {
                        chunk.tombstones.push(pb::Point { id, version, ..Default::default() })
                    }
                }
            }
            chunk
        };
        let stream = stream_blocking(chunk_size, to_chunk, move |emit| {
            shard.changes(since, buckets.as_ref(), |c| owner.is_some_and(|o| !o.owns(c.id())) || emit(c))
        });
        Ok(Response::new(stream))
    }

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn digest(&self, req: Request<pb::DigestRequest>) -> Result<Response<pb::DigestResponse>, Status> {
        let key = shard_key(req.into_inner().shard)?;
        record_shard(&key);
        let d = self.blocking(move |n| n.with_shard(&key, |s| s.digest())).await?;
        Ok(Response::new(pb::DigestResponse { sha256: d.sha256, records: d.records, max_version: d.max_version }))
    }

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn bucket_digests(
        &self,
        req: Request<pb::BucketDigestsRequest>,
    ) -> Result<Response<pb::BucketDigestsResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        let buckets = req.buckets;
        let digests = self.blocking(move |n| n.with_shard(&key, |s| s.bucket_digests(buckets))).await?;
        Ok(Response::new(pb::BucketDigestsResponse {
            sums: digests.iter().map(|d| d.sum).collect(),
            records: digests.iter().map(|d| d.records).collect(),
        }))
    }

    async fn fence_shards(
        &self,
        req: Request<pb::FenceShardsRequest>,
    ) -> Result<Response<pb::FenceShardsResponse>, Status> {
        let mut wanted = Vec::new();
        for e in req.into_inner().shards {
            wanted.push((shard_key(e.shard)?, e.epoch));
        }
        let shards = self
            .blocking(move |n| {
                let mut out = Vec::with_capacity(wanted.len());
                for (key, epoch) in wanted {
                    let held = match n.with_shard(&key, |s| s.raise_epoch(epoch)) {
                        Ok(held) => held,
                        Err(NodeError::ShardNotFound(_)) => continue,
                        Err(e) => return Err(e),
                    };
                    out.push(pb::ShardEpoch {
                        shard: Some(pb::ShardId { store: key.store, shard: key.shard }),
                        epoch: held,
                    });
                }
                Ok(out)
            })
            .await?;
        Ok(Response::new(pb::FenceShardsResponse { shards }))
    }

    #[tracing::instrument(skip_all, fields(store, shard))]
    async fn prune_shard(
        &self,
        req: Request<pb::PruneShardRequest>,
    ) -> Result<Response<pb::PruneShardResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        let owner = owner_of(&key, req.layout_shards)?
            .ok_or_else(|| Status::invalid_argument("layout_shards is required (1..=1024)"))?;
        let removed = self.blocking(move |n| n.with_shard(&key, |s| s.prune(|id| owner.owns(id)))).await?;
        Ok(Response::new(pb::PruneShardResponse { removed }))
    }

    #[tracing::instrument(skip_all, fields(store, shard, source))]
    async fn catch_up(&self, req: Request<pb::CatchUpRequest>) -> Result<Response<pb::CatchUpResponse>, Status> {
        let req = req.into_inner();
        let key = shard_key(req.shard)?;
        record_shard(&key);
        tracing::Span::current().record("source", req.source_address.as_str());
        self.node.shard(&key)?; // NOT_FOUND before dialling the peer
        bucket_filter(req.buckets, &req.only_buckets)?; // INVALID_ARGUMENT before dialling the peer
        let started = std::time::Instant::now();
        let peer = self.peers.get(&req.source_address, None).map_err(|e| {
            let address = rvdb_core::error::excerpt(&req.source_address);
            Status::invalid_argument(format!("bad source_address {address:?}: {e}"))
        })?;
        // Resharding copies from another shard of the store, only the ids this shard owns under the new layout.
        let source = match &req.source_shard {
            Some(id) if id.store != key.store => {
                return Err(Status::invalid_argument(format!(
                    "source_shard is of store '{}', not '{}': a catch-up copies within one store",
                    rvdb_core::error::excerpt(&id.store),
                    key.store
                )));
            }
            Some(id) => id.shard,
            None => key.shard,
        };
        owner_of(&key, req.owner_shards)?;
        let shard = Some(pb::ShardId { store: key.store.clone(), shard: source });
        let mut stream = peer
            .changes(pb::ChangesRequest {
                shard,
                since_version: req.since_version,
                chunk_size: 2000,
                buckets: req.buckets,
                only_buckets: req.only_buckets.clone(),
                owner_shard: key.shard,
                owner_shards: req.owner_shards,
            })
            .await
            .map_err(|s| match s.code() {
                tonic::Code::Unavailable | tonic::Code::Unknown => Status::unavailable(format!(
                    "cannot reach the source replica {}: {}",
                    req.source_address,
                    s.message()
                )),
                _ => s,
            })?;
        let mut out = pb::CatchUpResponse::default();
        while let Some(chunk) = stream.next().await.transpose()? {
            out.received += (chunk.points.len() + chunk.tombstones.len()) as u64;
            out.max_version =
                chunk.points.iter().chain(&chunk.tombstones).map(|p| p.version).fold(out.max_version, u64::max);
            let (points, tombstones) = changes_from_pb(chunk);
            let key = key.clone();
            out.applied +=
                self.blocking(move |n| n.with_shard(&key, |s| s.apply_changes(points, &tombstones, false))).await?;
        }
        // what was applied is on disk before the manager lets this replica serve reads
        self.blocking(|n| n.sync_wal()).await?;
        if req.finish_fill {
            let key = key.clone();
            self.blocking(move |n| n.set_filling(&key, false)).await?;
        }
        tracing::info!(shard = %key, received = out.received, applied = out.applied,
            elapsed_ms = started.elapsed().as_millis() as u64, "caught up from peer");
        Ok(Response::new(out))
    }
}

fn record_shard(key: &ShardKey) {
    let span = tracing::Span::current();
    span.record("store", key.store.as_str());
    span.record("shard", key.shard);
}

/// This node as a [`StorageApi`] for services in the same process (the gateway and manager of `rvdb serve`):
/// each call runs the gRPC handler above directly, with no serialization and no socket, so a local replica
/// behaves exactly as a remote one; it is traced as the gRPC server traces a call ([`served_locally`]).
#[derive(Debug, Clone)]
pub struct LocalNode(StorageNodeService);

impl LocalNode {
    /// `node` in this process; its catch-ups reach their source through `peers`.
    pub fn new(node: Arc<Node>, peers: Arc<NodeDirectory>) -> Arc<Self> {
        Arc::new(Self(StorageNodeService::with_peers(node, peers)))
    }
}

#[tonic::async_trait]
impl StorageApi for LocalNode {
    async fn create_shard(&self, req: pb::CreateShardRequest) -> ApiResult<pb::CreateShardResponse> {
        served_locally("/rvdb.v1.StorageNode/CreateShard", async {
            Ok(StorageNode::create_shard(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn drop_shard(&self, req: pb::DropShardRequest) -> ApiResult<pb::DropShardResponse> {
        served_locally("/rvdb.v1.StorageNode/DropShard", async {
            Ok(StorageNode::drop_shard(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn list_shards(&self) -> ApiResult<pb::ListShardsResponse> {
        served_locally("/rvdb.v1.StorageNode/ListShards", async {
            Ok(StorageNode::list_shards(&self.0, Request::new(pb::ListShardsRequest {})).await?.into_inner())
        })
        .await
    }
    async fn upsert(&self, req: pb::UpsertRequest) -> ApiResult<pb::UpsertResponse> {
        served_locally("/rvdb.v1.StorageNode/Upsert", async {
            Ok(StorageNode::upsert(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn get(&self, req: pb::GetRequest) -> ApiResult<pb::GetResponse> {
        served_locally("/rvdb.v1.StorageNode/Get", async {
            Ok(StorageNode::get(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn delete(&self, req: pb::DeleteRequest) -> ApiResult<pb::DeleteResponse> {
        served_locally("/rvdb.v1.StorageNode/Delete", async {
            Ok(StorageNode::delete(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn search(&self, req: pb::SearchRequest) -> ApiResult<pb::SearchResponse> {
        served_locally("/rvdb.v1.StorageNode/Search", async {
            Ok(StorageNode::search(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn scan(&self, req: pb::ScanRequest) -> ApiResult<ApiStream<pb::ScanChunk>> {
        served_locally("/rvdb.v1.StorageNode/Scan", async {
            Ok(StorageNode::scan(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn count(&self, req: pb::CountRequest) -> ApiResult<pb::CountResponse> {
        served_locally("/rvdb.v1.StorageNode/Count", async {
            Ok(StorageNode::count(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn text_stats(&self, req: pb::TextStatsRequest) -> ApiResult<pb::TextStatsResponse> {
        served_locally("/rvdb.v1.StorageNode/TextStats", async {
            Ok(StorageNode::text_stats(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn keyword_search(&self, req: pb::KeywordSearchRequest) -> ApiResult<pb::KeywordSearchResponse> {
        served_locally("/rvdb.v1.StorageNode/KeywordSearch", async {
            Ok(StorageNode::keyword_search(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn update_metadata(&self, req: pb::UpdateMetadataRequest) -> ApiResult<pb::UpdateMetadataResponse> {
        served_locally("/rvdb.v1.StorageNode/UpdateMetadata", async {
            Ok(StorageNode::update_metadata(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn flush(&self, req: pb::FlushRequest) -> ApiResult<pb::FlushResponse> {
        served_locally("/rvdb.v1.StorageNode/Flush", async {
            Ok(StorageNode::flush(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn stats(&self, req: pb::StatsRequest) -> ApiResult<pb::StatsResponse> {
        served_locally("/rvdb.v1.StorageNode/Stats", async {
            Ok(StorageNode::stats(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn rebuild_index(&self, req: pb::RebuildIndexRequest) -> ApiResult<pb::RebuildIndexResponse> {
        served_locally("/rvdb.v1.StorageNode/RebuildIndex", async {
            Ok(StorageNode::rebuild_index(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn changes(&self, req: pb::ChangesRequest) -> ApiResult<ApiStream<pb::ChangesChunk>> {
        served_locally("/rvdb.v1.StorageNode/Changes", async {
            Ok(StorageNode::changes(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn digest(&self, req: pb::DigestRequest) -> ApiResult<pb::DigestResponse> {
        served_locally("/rvdb.v1.StorageNode/Digest", async {
            Ok(StorageNode::digest(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn catch_up(&self, req: pb::CatchUpRequest) -> ApiResult<pb::CatchUpResponse> {
        served_locally("/rvdb.v1.StorageNode/CatchUp", async {
            Ok(StorageNode::catch_up(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn bucket_digests(&self, req: pb::BucketDigestsRequest) -> ApiResult<pb::BucketDigestsResponse> {
        served_locally("/rvdb.v1.StorageNode/BucketDigests", async {
            Ok(StorageNode::bucket_digests(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn fence_shards(&self, req: pb::FenceShardsRequest) -> ApiResult<pb::FenceShardsResponse> {
        served_locally("/rvdb.v1.StorageNode/FenceShards", async {
            Ok(StorageNode::fence_shards(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
    async fn prune_shard(&self, req: pb::PruneShardRequest) -> ApiResult<pb::PruneShardResponse> {
        served_locally("/rvdb.v1.StorageNode/PruneShard", async {
            Ok(StorageNode::prune_shard(&self.0, Request::new(req)).await?.into_inner())
        })
        .await
    }
}
