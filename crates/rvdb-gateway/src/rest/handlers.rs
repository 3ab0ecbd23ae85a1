//! One handler per route: each takes the operation's message ([`crate::api`]) from the path, query and body,
//! calls the gateway or the backup manager, and answers the operation's response type.

use std::sync::Arc;

use axum::Json;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use rvdb_core::error::excerpt;
use rvdb_core::types::validate_store_name;
use serde::{Deserialize, Serialize};
use utoipa::IntoParams;

use super::error::{ApiError, ApiResult, ErrorBody, ErrorCode};
use super::extract::{Body, OptionalBody, Param, QueryArgs};
use crate::Gateway;
use crate::api::*;
use crate::backup::{BackupInfo, BackupManager, ExportInfo, RestoreInfo, validate_file_name};
use crate::error::GatewayError;
use crate::gateway::{PointOutput, StoreStats};

// Request and response types are the operations' JSON messages ([`crate::api`]); only the query parameters,
// which are REST's own, are defined here.

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetPointQuery {
    /// Also return the vector (default true).
    #[serde(default = "yes")]
    #[param(default = true)]
    pub with_vector: bool,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupQuery {
    /// Only backups of this store.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub store: Option<String>,
}

#[derive(Clone)]
pub(super) struct Api {
    pub(super) gateway: Arc<Gateway>,
    pub(super) backups: Arc<BackupManager>,
}

/// A 201 with the created resource's location.
fn created(location: Option<String>, body: impl Serialize) -> Response {
    let mut response = (StatusCode::CREATED, Json(body)).into_response();
    if let Some(v) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    response
}

/// List stores
///
/// Every store with its dimension, metric, index, shards and number of live and deleted points.
#[utoipa::path(get, path = "/v1/stores", tag = "stores", operation_id = "list_stores",
    responses((status = 200, description = "The stores", body = StoreList)))]
pub(super) async fn list_stores(State(api): State<Api>) -> ApiResult<Json<StoreList>> {
    Ok(Json(StoreList { stores: api.gateway.all_stats().await? }))
}

/// Create a store
///
/// A new, empty store. Every vector later inserted must have exactly `dimension` numbers.
#[utoipa::path(post, path = "/v1/stores", tag = "stores", operation_id = "create_store", request_body = CreateStore,
    responses(
        (status = 201, description = "Created", body = StoreCreated,
            headers(("Location" = String, description = "The store's URL: /v1/stores/{store}"))),
        (status = 409, description = "already_exists: a store with this name exists", body = ErrorBody),
        (status = 429, description = "limit_reached: the deployment holds max_vector_stores stores", body = ErrorBody),
    ))]
pub(super) async fn create_store(State(api): State<Api>, Body(req): Body<CreateStore>) -> ApiResult<Response> {
    let c = api.gateway.create(req.settings.into_request(req.name)).await?.config;
    let body = StoreCreated { name: c.name.clone(), settings: (&c).into() };
    Ok(created(Some(format!("/v1/stores/{}", c.name)), body))
}

/// Describe a store
///
/// Statistics of one store: dimension, metric, index and its status, shards, live and deleted points, memory and
/// disk use.
#[utoipa::path(get, path = "/v1/stores/{store}", tag = "stores", operation_id = "describe_store",
    params(StorePath),
    responses(
        (status = 200, description = "The store's statistics", body = StoreStats),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn describe_store(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
) -> ApiResult<Json<StoreStats>> {
    Ok(Json(api.gateway.stats(&store).await?))
}

/// Delete a store
///
/// Deletes the store and every point in it. This cannot be undone (make a backup first if the data matters).
#[utoipa::path(delete, path = "/v1/stores/{store}", tag = "stores", operation_id = "delete_store",
    params(StorePath),
    responses(
        (status = 200, description = "Deleted", body = StoreDeleted),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn delete_store(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
) -> ApiResult<Json<StoreDeleted>> {
    api.gateway.drop_store(&store).await?;
    Ok(Json(StoreDeleted { store, deleted: true }))
}

/// Sync a store to disk
///
/// Flushes the store's recent writes to disk and fsyncs them. Writes are durable in the write-ahead log when
/// acknowledged already; call this before a backup or a planned shutdown to make the data files current.
#[utoipa::path(post, path = "/v1/stores/{store}/sync", tag = "stores", operation_id = "sync_store",
    params(StorePath),
    responses(
        (status = 200, description = "Synced", body = StoreSynced),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn sync_store(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
) -> ApiResult<Json<StoreSynced>> {
    api.gateway.sync(&store).await?;
    Ok(Json(StoreSynced { store, synced: true }))
}

/// Rebuild a store's HNSW graph
///
/// Starts rebuilding the graph of every replica from its points, in the background; searches keep using the
/// current graph meanwhile. Refused for a flat store.
#[utoipa::path(post, path = "/v1/stores/{store}/rebuild-index", tag = "stores", operation_id = "rebuild_index",
    params(StorePath),
    responses(
        (status = 200, description = "Rebuilds started", body = IndexRebuild),
        (status = 400, description = "invalid_argument: the store has no graph (flat)", body = ErrorBody),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn rebuild_index(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
) -> ApiResult<Json<IndexRebuild>> {
    let started = api.gateway.rebuild_index(&store).await?;
    Ok(Json(IndexRebuild { store, started }))
}

/// Insert or replace points
///
/// Inserts a batch of points; existing ids are replaced. The whole batch is checked first: if any point is invalid
/// nothing is written and the error names it.
#[utoipa::path(put, path = "/v1/stores/{store}/points", tag = "points", operation_id = "upsert_points",
    params(StorePath), request_body = UpsertPoints,
    responses(
        (status = 200, description = "Written", body = Upserted),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn upsert_points(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<UpsertPoints>,
) -> ApiResult<Json<Upserted>> {
    let s = api.gateway.upsert(&store, req.into_points()?, |_, _| true).await?;
    Ok(Json(Upserted { store, inserted: s.inserted, stale: s.stale }))
}

/// Get a point
#[utoipa::path(get, path = "/v1/stores/{store}/points/{id}", tag = "points", operation_id = "get_point",
    params(PointPath, GetPointQuery),
    responses(
        (status = 200, description = "The point", body = PointOutput),
        (status = 404, description = "not_found: no such store, or no point with this id", body = ErrorBody),
    ))]
pub(super) async fn get_point(
    State(api): State<Api>,
    Param(PointPath { store, id }): Param<PointPath>,
    QueryArgs(q): QueryArgs<GetPointQuery>,
) -> ApiResult<Json<PointOutput>> {
    fetch_point(&api, store, id, q.with_vector).await
}

pub(super) async fn fetch_point(
    api: &Api,
    store: String,
    id: String,
    with_vector: bool,
) -> ApiResult<Json<PointOutput>> {
    let mut found = api.gateway.get(&store, vec![id.clone()], with_vector).await?;
    found
        .pop()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(format!("point {:?} does not exist in store '{store}'", excerpt(&id))))
}

/// Get points
///
/// Points by id, in the order asked; ids that do not exist are left out.
#[utoipa::path(post, path = "/v1/stores/{store}/points/get", tag = "points", operation_id = "get_points",
    params(StorePath), request_body = GetPoints,
    responses(
        (status = 200, description = "The points found", body = Points),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn get_points(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<GetPoints>,
) -> ApiResult<Json<Points>> {
    if req.ids.is_empty() {
        return Err(ApiError::invalid("no ids given: send at least one"));
    }
    Ok(Json(Points { points: api.gateway.get(&store, req.ids, req.with_vector).await? }))
}

/// Delete a point
#[utoipa::path(delete, path = "/v1/stores/{store}/points/{id}", tag = "points", operation_id = "delete_point",
    params(PointPath),
    responses(
        (status = 200, description = "Deleted (`deleted` is 0 if the id did not exist)", body = PointsDeleted),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn delete_point(
    State(api): State<Api>,
    Param(PointPath { store, id }): Param<PointPath>,
) -> ApiResult<Json<PointsDeleted>> {
    remove_point(&api, store, id).await
}

pub(super) async fn remove_point(api: &Api, store: String, id: String) -> ApiResult<Json<PointsDeleted>> {
    let deleted = api.gateway.delete(&store, vec![id]).await?;
    Ok(Json(PointsDeleted { store, deleted }))
}

/// `GET` and `DELETE` of the point whose id is `name` (`get` or `delete`): the batch routes `…/points/get` and
/// `…/points/delete` take precedence over `…/points/{id}` in the router and would answer 405 for those ids.
pub(super) fn point_named(name: &'static str) -> MethodRouter<Api> {
    get(
        move |State(api): State<Api>,
              Param(StorePath { store }): Param<StorePath>,
              QueryArgs(q): QueryArgs<GetPointQuery>| async move {
            fetch_point(&api, store, name.to_string(), q.with_vector).await
        },
    )
    .delete(move |State(api): State<Api>, Param(StorePath { store }): Param<StorePath>| async move {
        remove_point(&api, store, name.to_string()).await
    })
}

/// Delete points
///
/// By ids, or every point whose metadata matches a filter.
#[utoipa::path(post, path = "/v1/stores/{store}/points/delete", tag = "points", operation_id = "delete_points",
    params(StorePath), request_body = DeletePoints,
    responses(
        (status = 200, description = "Deleted", body = PointsDeleted),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn delete_points(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<DeletePoints>,
) -> ApiResult<Json<PointsDeleted>> {
    let deleted = api.gateway.delete_points(&store, req.selector()?, |_, _| true).await?;
    Ok(Json(PointsDeleted { store, deleted }))
}

/// Update metadata
///
/// Sets and removes top-level metadata keys of points chosen by ids or by a filter; vectors and other keys are
/// kept. Each point is updated atomically.
#[utoipa::path(post, path = "/v1/stores/{store}/points/metadata", tag = "points", operation_id = "update_metadata",
    params(StorePath), request_body = UpdateMetadata,
    responses(
        (status = 200, description = "Updated", body = MetadataUpdated),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn update_metadata(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<UpdateMetadata>,
) -> ApiResult<Json<MetadataUpdated>> {
    let (selector, update) = req.into_parts()?;
    let updated = api.gateway.update_metadata(&store, selector, &update, |_, _| true).await?;
    Ok(Json(MetadataUpdated { store, updated }))
}

/// Count points
///
/// How many points match a filter (every point without one).
#[utoipa::path(post, path = "/v1/stores/{store}/points/count", tag = "points", operation_id = "count_points",
    params(StorePath), request_body = Option<CountPoints>,
    responses(
        (status = 200, description = "The count", body = Counted),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn count_points(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    OptionalBody(req): OptionalBody<CountPoints>,
) -> ApiResult<Json<Counted>> {
    let count = api.gateway.count(&store, req.filter.as_ref()).await?;
    Ok(Json(Counted { store, count }))
}

/// Scroll points
///
/// One page of points in id order, optionally only those matching a filter; pass `next_cursor` back for the next
/// page. Cursors are stateless: they stay valid across requests, gateways and restarts.
#[utoipa::path(post, path = "/v1/stores/{store}/points/scroll", tag = "points", operation_id = "scroll_points",
    params(StorePath), request_body = Option<ScrollPoints>,
    responses(
        (status = 200, description = "A page of points", body = ScrollPage),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn scroll_points(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    OptionalBody(req): OptionalBody<ScrollPoints>,
) -> ApiResult<Json<ScrollPage>> {
    let page = api.gateway.scroll(&store, &req.into_params()).await?;
    Ok(Json(ScrollPage { store, points: page.points, next_cursor: page.next_cursor }))
}

/// Map a store
///
/// A uniform random sample of the store's points (at most `limit`, of those matching `filter`) projected onto the
/// sample's two principal components, for a 2-D picture of the store (the web console draws it). The projection
/// comes with the map, so any other vector can be placed on the same axes.
#[utoipa::path(post, path = "/v1/stores/{store}/map", tag = "stores", operation_id = "map_store",
    params(StorePath), request_body = Option<MapRequest>,
    responses(
        (status = 200, description = "The map", body = StoreMap),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn map_store(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    OptionalBody(req): OptionalBody<MapRequest>,
) -> ApiResult<Json<StoreMap>> {
    Ok(Json(api.gateway.map(&store, &req).await?))
}

/// Cluster status
///
/// The nodes with their states and where every replica of every store lives, as the index manager publishes
/// them now. `rvdb serve` is a cluster of one node.
#[utoipa::path(get, path = "/v1/cluster", tag = "cluster", operation_id = "cluster_status",
    responses((status = 200, description = "The cluster", body = ClusterStatus)))]
pub(super) async fn cluster_status(State(api): State<Api>) -> ApiResult<Json<ClusterStatus>> {
    Ok(Json(api.gateway.cluster_status().await?))
}

/// Search
///
/// The k stored points nearest to a query vector, optionally only those whose metadata matches a filter.
#[utoipa::path(post, path = "/v1/stores/{store}/search", tag = "points", operation_id = "search",
    params(StorePath), request_body = SearchRequest,
    responses(
        (status = 200, description = "Nearest first", body = SearchResults),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn search(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<SearchRequest>,
) -> ApiResult<Json<SearchResults>> {
    let (vector, params) = req.into_parts();
    let results = api.gateway.search(&store, vector, &params).await?;
    Ok(Json(SearchResults { store, results }))
}

/// Back up a store
///
/// Writes a consistent, checksummed, compressed backup of the store into the server's backup directory while
/// writes continue.
#[utoipa::path(post, path = "/v1/stores/{store}/backups", tag = "backups", operation_id = "create_backup",
    params(StorePath), request_body = Option<CreateBackup>,
    responses(
        (status = 201, description = "Backed up", body = BackupInfo,
            headers(("Location" = String, description = "The backup's URL: /v1/backups/{backup}"))),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
        (status = 409, description = "already_exists: a backup with this name exists", body = ErrorBody),
    ))]
pub(super) async fn create_backup(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    OptionalBody(req): OptionalBody<CreateBackup>,
) -> ApiResult<Response> {
    let info = api.backups.backup(&store, req.name, |_| true).await?;
    Ok(created(Some(format!("/v1/backups/{}", info.name)), info))
}

/// List backups
///
/// The backups in the server's backup directory, newest first.
#[utoipa::path(get, path = "/v1/backups", tag = "backups", operation_id = "list_backups",
    params(BackupQuery),
    responses((status = 200, description = "The backups", body = BackupList)))]
pub(super) async fn list_backups(
    State(api): State<Api>,
    QueryArgs(q): QueryArgs<BackupQuery>,
) -> ApiResult<Json<BackupList>> {
    if let Some(store) = &q.store {
        validate_store_name(store).map_err(GatewayError::from)?;
    }
    Ok(Json(BackupList { backups: api.backups.list(q.store.as_deref())? }))
}

/// Describe a backup
#[utoipa::path(get, path = "/v1/backups/{backup}", tag = "backups", operation_id = "describe_backup",
    params(BackupPath),
    responses(
        (status = 200, description = "The backup", body = BackupInfo),
        (status = 404, description = "not_found: no such backup", body = ErrorBody),
    ))]
pub(super) async fn describe_backup(
    State(api): State<Api>,
    Param(BackupPath { backup }): Param<BackupPath>,
) -> ApiResult<Json<BackupInfo>> {
    validate_file_name("backup", &backup)?;
    let found = api.backups.list(None)?.into_iter().find(|b| b.name == backup);
    found.map(Json).ok_or_else(|| ApiError::not_found(format!("backup '{}' does not exist", excerpt(&backup))))
}

/// Delete a backup
#[utoipa::path(delete, path = "/v1/backups/{backup}", tag = "backups", operation_id = "delete_backup",
    params(BackupPath),
    responses(
        (status = 200, description = "Deleted", body = BackupDeleted),
        (status = 404, description = "not_found: no such backup", body = ErrorBody),
    ))]
pub(super) async fn delete_backup(
    State(api): State<Api>,
    Param(BackupPath { backup }): Param<BackupPath>,
) -> ApiResult<Json<BackupDeleted>> {
    let backups = api.backups.clone();
    let name = backup.clone();
    tokio::task::spawn_blocking(move || backups.delete(&name))
        .await
        .map_err(|e| GatewayError::Backend(format!("delete task failed: {e}")))??;
    Ok(Json(BackupDeleted { backup, deleted: true }))
}

/// Restore a backup
///
/// Restores a backup into a NEW store; the original store is not touched. The backup is verified (checksums,
/// counts) before anything is created; if it is damaged nothing is restored.
#[utoipa::path(post, path = "/v1/backups/{backup}/restore", tag = "backups", operation_id = "restore_backup",
    params(BackupPath), request_body = RestoreBackup,
    responses(
        (status = 201, description = "Restored", body = RestoreInfo,
            headers(("Location" = String, description = "The new store's URL: /v1/stores/{store}"))),
        (status = 404, description = "not_found: no such backup", body = ErrorBody),
        (status = 409, description = "already_exists: the target store exists", body = ErrorBody),
        (status = 429, description = "limit_reached: the deployment holds max_vector_stores stores", body = ErrorBody),
    ))]
pub(super) async fn restore_backup(
    State(api): State<Api>,
    Param(BackupPath { backup }): Param<BackupPath>,
    Body(req): Body<RestoreBackup>,
) -> ApiResult<Response> {
    let info = api.backups.restore(&backup, &req.store, req.shards, |_, _| true).await?;
    Ok(created(Some(format!("/v1/stores/{}", info.store)), info))
}

/// Export a store
///
/// Writes every point of the store with its metadata as JSON Lines (a header line, then one point per line) into
/// the server's export directory. Vectors round-trip exactly.
#[utoipa::path(post, path = "/v1/stores/{store}/export", tag = "backups", operation_id = "export_store",
    params(StorePath), request_body = Option<ExportStore>,
    responses(
        (status = 201, description = "Exported", body = ExportInfo),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
        (status = 409, description = "already_exists: an export file with this name exists", body = ErrorBody),
    ))]
pub(super) async fn export_store(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    OptionalBody(req): OptionalBody<ExportStore>,
) -> ApiResult<Response> {
    let info = api.backups.export(&store, req.file, |_| true).await?;
    Ok(created(None, info))
}

/// Import a store
///
/// Creates the store `{store}` (it must not exist) from a JSON Lines export file in the server's export
/// directory. Every line is checked; on an error the new store is removed again and the error names the line.
#[utoipa::path(post, path = "/v1/stores/{store}/import", tag = "backups", operation_id = "import_store",
    params(StorePath), request_body = ImportStore,
    responses(
        (status = 201, description = "Imported", body = Imported,
            headers(("Location" = String, description = "The new store's URL: /v1/stores/{store}"))),
        (status = 404, description = "not_found: no such export file", body = ErrorBody),
        (status = 409, description = "already_exists: the store exists", body = ErrorBody),
        (status = 429, description = "limit_reached: the deployment holds max_vector_stores stores", body = ErrorBody),
    ))]
pub(super) async fn import_store(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<ImportStore>,
) -> ApiResult<Response> {
    let info = api.backups.import(&req.file, &store, |_| true).await?;
    let body = Imported { file: info.backup, store: info.store, points: info.points, shards: info.shards };
    Ok(created(Some(format!("/v1/stores/{}", body.store)), body))
}

/// The `{store}` path parameter.
/// Store texts
///
/// Documents embedded by the store's model and stored with their text and metadata (the store must have been
/// created with `embedding`). All are checked before any is embedded or written.
#[utoipa::path(put, path = "/v1/stores/{store}/texts", tag = "texts", operation_id = "insert_texts",
    params(StorePath), request_body = InsertTexts,
    responses(
        (status = 200, description = "Written", body = TextsInserted),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn insert_texts(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<InsertTexts>,
) -> ApiResult<Json<TextsInserted>> {
    let (s, ids) = api.gateway.insert_texts(&store, req.into_documents(), |_, _| true).await?;
    Ok(Json(TextsInserted { store, inserted: s.inserted, stale: s.stale, ids }))
}

/// Search texts by meaning
///
/// The stored documents nearest in meaning to a query in words, embedded by the store's model.
#[utoipa::path(post, path = "/v1/stores/{store}/texts/search", tag = "texts", operation_id = "search_text",
    params(StorePath), request_body = SearchTextRequest,
    responses(
        (status = 200, description = "Nearest first", body = TextResults),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
pub(super) async fn search_text(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<SearchTextRequest>,
) -> ApiResult<Json<TextResults>> {
    let (query, params, with_text, how) = req.into_parts();
    let hits = api.gateway.search_text(&store, query, &params, with_text, &how).await?;
    Ok(Json(TextResults { store, results: hits.into_iter().map(Into::into).collect() }))
}

/// Create embeddings
///
/// Vectors for texts with one of the server's embedding models, as OpenAI's `POST /v1/embeddings` answers (so
/// OpenAI clients work against it). Read-only: it stores nothing.
#[utoipa::path(post, path = "/v1/embeddings", tag = "embeddings", operation_id = "create_embeddings",
    request_body = EmbeddingsRequest,
    responses(
        (status = 200, description = "One vector per text, in order", body = EmbeddingsResponse),
        (status = 404, description = "not_found: no such model in the server's models directory", body = ErrorBody),
    ))]
pub(super) async fn embeddings(
    State(api): State<Api>,
    Body(req): Body<EmbeddingsRequest>,
) -> ApiResult<Json<EmbeddingsResponse>> {
    let texts = req.input.into_texts()?;
    let model = req.model.unwrap_or_else(|| rvdb_embed::DEFAULT_MODEL.to_string());
    let format = req.encoding_format.unwrap_or(EncodingFormat::Float);
    let embedders = api.gateway.embedders();
    let (vectors, tokens) = embedders.embed_counted(crate::embedding::LOCAL, &model, texts).await?;
    let dimension = vectors.first().map_or(0, Vec::len);
    if let Some(d) = req.dimensions.filter(|d| *d as usize != dimension) {
        return Err(ApiError::invalid(format!(
            "dimensions is {d}, but model '{model}' makes {dimension}-d vectors (it cannot be shortened)"
        )));
    }
    let total = tokens;
    let data = vectors
        .into_iter()
        .enumerate()
        .map(|(index, v)| EmbeddingData {
            object: "embedding".into(),
            index,
            embedding: EmbeddingValue::encode(v, format),
        })
        .collect();
    Ok(Json(EmbeddingsResponse {
        object: "list".into(),
        data,
        model,
        usage: EmbeddingUsage { prompt_tokens: total, total_tokens: total },
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct StorePath {
    /// Store name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64, example = "docs")]
    store: String,
}

/// The `{store}` and `{id}` path parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct PointPath {
    /// Store name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64, example = "docs")]
    store: String,
    /// Point id (percent-encoded in the path).
    #[param(min_length = 1, max_length = 512, example = "a")]
    id: String,
}

/// The `{backup}` path parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(super) struct BackupPath {
    /// Backup name, as `GET /v1/backups` lists it.
    #[param(
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$",
        min_length = 1,
        max_length = 128,
        example = "docs-nightly"
    )]
    backup: String,
}

pub(super) async fn openapi_json(State(doc): State<Arc<utoipa::openapi::OpenApi>>) -> Response {
    Json(doc.as_ref()).into_response()
}

pub(super) async fn unknown_route(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("no route {method} {}: see /openapi.json", excerpt(uri.path())))
}

pub(super) async fn wrong_method(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}: see the Allow header", excerpt(uri.path())),
    )
}
