//! The gateway's gRPC surface: stores and points (`rvdb.v1.StoreService`, over the same [`Gateway`] operations as
//! MCP and REST) and backups (`rvdb.v1.BackupService`, over the same [`BackupManager`]), converted to protobuf.
//! Errors map to status codes once, here.

use std::sync::Arc;

use rvdb_proto::v1 as pb;
use rvdb_proto::v1::backup_service_server::{BackupService, BackupServiceServer};
use tonic::{Code, Request, Response, Status};

use rvdb_proto::v1::store_service_server::{StoreService, StoreServiceServer};

use crate::backup::{BackupInfo, BackupManager};
use crate::gateway::{CreateStore, PointInput, PointOutput, SearchParams, StoreStats, default_k, finite};
use crate::points::{MetadataUpdate, ScrollParams, Selector};
use crate::text::Document;
use crate::{Gateway, GatewayError};

impl From<GatewayError> for Status {
    fn from(e: GatewayError) -> Status {
        let code = match &e {
            GatewayError::Invalid(_) | GatewayError::InvalidArgument(_) => Code::InvalidArgument,
            GatewayError::StoreNotFound { .. } | GatewayError::NotFound(_) => Code::NotFound,
            GatewayError::AlreadyExists(_) => Code::AlreadyExists,
            GatewayError::LimitReached(_) | GatewayError::InsufficientStorage(_) => Code::ResourceExhausted,
            GatewayError::ShardUnavailable { .. } | GatewayError::Unavailable(_) => Code::Unavailable,
            GatewayError::Backend(_) => Code::Internal,
            GatewayError::Cancelled => Code::Cancelled,
        };
        Status::new(code, e.to_string())
    }
}

#[derive(Debug, Clone)]
pub struct BackupGrpc {
    backups: Arc<BackupManager>,
}

impl BackupGrpc {
    pub fn new(backups: Arc<BackupManager>) -> Self {
        Self { backups }
    }

    pub fn into_server(self) -> BackupServiceServer<Self> {
        BackupServiceServer::new(self)
    }
}

fn info_to_pb(b: BackupInfo) -> pb::BackupInfo {
    pb::BackupInfo {
        name: b.name,
        store: b.store,
        points: b.points,
        bytes: b.bytes,
        created_at: b.created_at,
        rvdb_version: b.rvdb_version,
        path: b.path,
    }
}

fn non_empty(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

#[tonic::async_trait]
impl BackupService for BackupGrpc {
    async fn backup(&self, req: Request<pb::BackupRequest>) -> Result<Response<pb::BackupInfo>, Status> {
        let r = req.into_inner();
        let info = self.backups.backup(&r.store, non_empty(r.name), |_| true).await?;
        Ok(Response::new(info_to_pb(info)))
    }

    async fn list_backups(
        &self,
        req: Request<pb::ListBackupsRequest>,
    ) -> Result<Response<pb::ListBackupsResponse>, Status> {
        let store = non_empty(req.into_inner().store);
        let backups = self.backups.list(store.as_deref())?.into_iter().map(info_to_pb).collect();
        Ok(Response::new(pb::ListBackupsResponse { backups }))
    }

    async fn restore(&self, req: Request<pb::RestoreRequest>) -> Result<Response<pb::RestoreResponse>, Status> {
        let r = req.into_inner();
        let shards = (r.shards > 0).then_some(r.shards);
        let out = self.backups.restore(&r.backup, &r.store, shards, |_, _| true).await?;
        Ok(Response::new(pb::RestoreResponse {
            source: out.backup,
            store: out.store,
            points: out.points,
            shards: out.shards,
        }))
    }

    async fn export(&self, req: Request<pb::ExportRequest>) -> Result<Response<pb::ExportResponse>, Status> {
        let r = req.into_inner();
        let out = self.backups.export(&r.store, non_empty(r.file), |_| true).await?;
        Ok(Response::new(pb::ExportResponse {
            store: out.store,
            file: out.file,
            points: out.points,
            bytes: out.bytes,
            path: out.path,
        }))
    }

    async fn import(&self, req: Request<pb::ImportRequest>) -> Result<Response<pb::RestoreResponse>, Status> {
        let r = req.into_inner();
        let out = self.backups.import(&r.file, &r.store, |_| true).await?;
        Ok(Response::new(pb::RestoreResponse {
            source: out.backup,
            store: out.store,
            points: out.points,
            shards: out.shards,
        }))
    }
}

/// `rvdb.v1.StoreService`: the store and point operations of [`Gateway`].
#[derive(Debug, Clone)]
pub struct StoreGrpc {
    gateway: Arc<Gateway>,
}

impl StoreGrpc {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        Self { gateway }
    }

    /// The tonic server, taking requests up to `max_request_bytes` (a large upsert batch).
    pub fn into_server(self, max_request_bytes: usize) -> StoreServiceServer<Self> {
        StoreServiceServer::new(self).max_decoding_message_size(max_request_bytes).max_encoding_message_size(usize::MAX)
    }
}

fn summary(s: StoreStats) -> pb::StoreSummary {
    pb::StoreSummary {
        name: s.name,
        dimension: s.dimension,
        metric: s.metric,
        index: s.index,
        shards: s.shards,
        replication_factor: s.replication_factor,
        points: s.points,
        deleted_points: s.deleted_points,
        memory_bytes: s.memory_bytes,
        disk_bytes: s.disk_bytes,
        index_status: s.index_status,
        quantization: s.quantization,
        embedding: s.embedding.map(|e| pb::EmbeddingSpec {
            provider: e.provider,
            model: e.model,
            dimension: e.dimension,
            normalized: e.normalized,
        }),
    }
}

/// A JSON text field (`metadata_json`, `filter_json`): empty = none; text that is not JSON names `field`.
fn json_field(text: &str, field: &str) -> Result<Option<serde_json::Value>, GatewayError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    serde_json::from_str(text).map(Some).map_err(|e| GatewayError::InvalidArgument(format!("{field} is not JSON: {e}")))
}

fn json_text(value: &serde_json::Value) -> String {
    if value.is_null() { String::new() } else { value.to_string() }
}

/// The points a request chooses: its `ids`, or (with none) its `filter_json`; both or neither is refused.
fn selector(ids: Vec<String>, filter_json: &str) -> Result<Selector, GatewayError> {
    let ids = (!ids.is_empty() || filter_json.trim().is_empty()).then_some(ids);
    Selector::from_request(ids, json_field(filter_json, "filter_json")?)
}

/// The search parameters `SearchPointsRequest` and `SearchTextRequest` share, with MCP's and REST's defaults.
fn search_params(
    k: Option<u32>,
    filter_json: &str,
    ef: Option<u32>,
    exact: bool,
    score_threshold: Option<f32>,
    with_vector: bool,
    without_metadata: bool,
) -> Result<SearchParams, GatewayError> {
    Ok(SearchParams {
        k: k.unwrap_or_else(default_k),
        with_vector,
        with_metadata: !without_metadata,
        filter: json_field(filter_json, "filter_json")?,
        ef,
        exact,
        score_threshold,
    })
}

fn point_to_pb(p: PointOutput) -> pb::Point {
    pb::Point {
        id: p.id,
        vector: p.vector.unwrap_or_default(),
        metadata_json: json_text(&p.metadata),
        version: p.version,
    }
}

#[tonic::async_trait]
impl StoreService for StoreGrpc {
    async fn create_store(&self, req: Request<pb::NewStore>) -> Result<Response<pb::StoreSummary>, Status> {
        let r = req.into_inner();
        let request = CreateStore {
            name: r.name,
            dimension: (r.dimension > 0 || r.embedding_model.is_none()).then_some(r.dimension),
            metric: CreateStore::parse_name(r.metric.as_deref())?,
            shards: r.shards,
            replication_factor: r.replication_factor,
            write_consistency: r.write_consistency,
            index: CreateStore::parse_name(r.index.as_deref())?,
            quantization: CreateStore::parse_name(r.quantization.as_deref())?,
            m: r.m,
            ef_construction: r.ef_construction,
            ef_search: r.ef_search,
            embedding: r.embedding_model.map(|m| (crate::embedding::LOCAL.to_string(), m)),
            text_index: r.text_index.map(rvdb_proto::convert::text_index_from_pb),
        };
        let route = self.gateway.create(request).await?;
        Ok(Response::new(summary(self.gateway.stats(&route.config.name).await?)))
    }

    async fn drop_store(&self, req: Request<pb::StoreRef>) -> Result<Response<pb::StoreDropped>, Status> {
        let name = req.into_inner().name;
        self.gateway.drop_store(&name).await?;
        Ok(Response::new(pb::StoreDropped { name }))
    }

    async fn list_stores(
        &self,
        _req: Request<pb::ListStoreSummariesRequest>,
    ) -> Result<Response<pb::StoreSummaries>, Status> {
        let stores = self.gateway.all_stats().await?.into_iter().map(summary).collect();
        Ok(Response::new(pb::StoreSummaries { stores }))
    }

    async fn describe_store(&self, req: Request<pb::StoreRef>) -> Result<Response<pb::StoreSummary>, Status> {
        Ok(Response::new(summary(self.gateway.stats(&req.into_inner().name).await?)))
    }

    async fn sync_store(&self, req: Request<pb::StoreRef>) -> Result<Response<pb::StoreSynced>, Status> {
        let name = req.into_inner().name;
        self.gateway.sync(&name).await?;
        Ok(Response::new(pb::StoreSynced { name }))
    }

    async fn upsert_points(
        &self,
        req: Request<pb::UpsertPointsRequest>,
    ) -> Result<Response<pb::UpsertPointsResponse>, Status> {
        let r = req.into_inner();
        let points = r
            .points
            .into_iter()
            .enumerate()
            .map(|(i, p)| {
                let field = format!("points[{i}].metadata_json");
                PointInput::from_request(p.id, p.vector, json_field(&p.metadata_json, &field)?, &field)
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        let s = self.gateway.upsert(&r.store, points, |_, _| true).await?;
        Ok(Response::new(pb::UpsertPointsResponse { inserted: s.inserted, stale: s.stale }))
    }

    async fn get_points(&self, req: Request<pb::GetPointsRequest>) -> Result<Response<pb::GetPointsResponse>, Status> {
        let r = req.into_inner();
        let found = self.gateway.get(&r.store, r.ids, !r.without_vector).await?;
        let points = found.into_iter().map(point_to_pb).collect();
        Ok(Response::new(pb::GetPointsResponse { points }))
    }

    async fn delete_points(
        &self,
        req: Request<pb::DeletePointsRequest>,
    ) -> Result<Response<pb::DeletePointsResponse>, Status> {
        let r = req.into_inner();
        let selector = selector(r.ids, &r.filter_json)?;
        let deleted = self.gateway.delete_points(&r.store, selector, |_, _| true).await?;
        Ok(Response::new(pb::DeletePointsResponse { deleted }))
    }

    async fn search_points(
        &self,
        req: Request<pb::SearchPointsRequest>,
    ) -> Result<Response<pb::SearchPointsResponse>, Status> {
        let r = req.into_inner();
        let params =
            search_params(r.k, &r.filter_json, r.ef, r.exact, r.score_threshold, r.with_vector, r.without_metadata)?;
        let hits = self.gateway.search(&r.store, r.vector, &params).await?;
        let results = hits
            .into_iter()
            .map(|h| pb::ScoredPoint {
                id: h.id,
                distance: finite(h.distance),
                vector: h.vector.unwrap_or_default(),
                metadata_json: h.metadata.as_ref().map(json_text).unwrap_or_default(),
                version: 0,
            })
            .collect();
        Ok(Response::new(pb::SearchPointsResponse { results }))
    }

    async fn update_metadata(
        &self,
        req: Request<pb::UpdateMetadataPointsRequest>,
    ) -> Result<Response<pb::UpdateMetadataPointsResponse>, Status> {
        let r = req.into_inner();
        let selector = selector(r.ids, &r.filter_json)?;
        let set = match json_field(&r.set_json, "set_json")? {
            None => serde_json::Map::new(),
            Some(serde_json::Value::Object(m)) => m,
            Some(_) => return Err(GatewayError::InvalidArgument("set_json must be a JSON object".into()).into()),
        };
        let update = MetadataUpdate { set, unset: r.unset };
        let updated = self.gateway.update_metadata(&r.store, selector, &update, |_, _| true).await?;
        Ok(Response::new(pb::UpdateMetadataPointsResponse { updated }))
    }

    async fn count_points(
        &self,
        req: Request<pb::CountPointsRequest>,
    ) -> Result<Response<pb::CountPointsResponse>, Status> {
        let r = req.into_inner();
        let count = self.gateway.count(&r.store, json_field(&r.filter_json, "filter_json")?.as_ref()).await?;
        Ok(Response::new(pb::CountPointsResponse { count }))
    }

    async fn scroll_points(
        &self,
        req: Request<pb::ScrollPointsRequest>,
    ) -> Result<Response<pb::ScrollPointsResponse>, Status> {
        let r = req.into_inner();
        let params = ScrollParams {
            filter: json_field(&r.filter_json, "filter_json")?,
            limit: r.limit.unwrap_or_else(crate::points::default_scroll_limit),
            cursor: non_empty(r.cursor),
            with_vector: r.with_vector,
            with_metadata: !r.without_metadata,
        };
        let page = self.gateway.scroll(&r.store, &params).await?;
        let points = page.points.into_iter().map(point_to_pb).collect();
        Ok(Response::new(pb::ScrollPointsResponse { points, next_cursor: page.next_cursor.unwrap_or_default() }))
    }

    async fn insert_texts(
        &self,
        req: Request<pb::InsertTextsRequest>,
    ) -> Result<Response<pb::InsertTextsResponse>, Status> {
        let r = req.into_inner();
        let documents = r
            .documents
            .into_iter()
            .enumerate()
            .map(|(i, d)| {
                let metadata = json_field(&d.metadata_json, &format!("documents[{i}].metadata_json"))?;
                Ok(Document { id: non_empty(d.id), text: d.text, metadata: metadata.unwrap_or_default() })
            })
            .collect::<Result<Vec<_>, GatewayError>>()?;
        let (s, ids) = self.gateway.insert_texts(&r.store, documents, |_, _| true).await?;
        Ok(Response::new(pb::InsertTextsResponse { inserted: s.inserted, stale: s.stale, ids }))
    }

    async fn search_text(
        &self,
        req: Request<pb::SearchTextRequest>,
    ) -> Result<Response<pb::SearchTextResponse>, Status> {
        let r = req.into_inner();
        let params =
            search_params(r.k, &r.filter_json, r.ef, r.exact, r.score_threshold, r.with_vector, r.without_metadata)?;
        let d = crate::hybrid::TextQuery::default();
        let how = crate::hybrid::TextQuery {
            mode: crate::hybrid::parse_opt(r.mode.as_deref())?,
            fusion: crate::hybrid::parse_opt(r.fusion.as_deref())?.unwrap_or(d.fusion),
            rrf_k: r.rrf_k.unwrap_or(d.rrf_k),
            dense_weight: r.dense_weight.unwrap_or(d.dense_weight),
            keyword_weight: r.keyword_weight.unwrap_or(d.keyword_weight),
            prefetch: r.prefetch,
        };
        let hits = self.gateway.search_text(&r.store, r.query, &params, !r.without_text, &how).await?;
        let results = hits
            .into_iter()
            .map(|h| pb::TextHit {
                id: h.id,
                distance: h.distance.map(finite),
                text: h.text.unwrap_or_default(),
                metadata_json: h.metadata.as_ref().map(json_text).unwrap_or_default(),
                vector: h.vector.unwrap_or_default(),
                bm25: h.bm25.map(finite),
                score: h.score.map(finite),
                sources: h.sources.iter().map(|s| s.as_str().to_string()).collect(),
            })
            .collect();
        Ok(Response::new(pb::SearchTextResponse { results }))
    }
}
