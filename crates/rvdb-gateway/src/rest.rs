//! The REST API under `/v1` and its OpenAPI document at `GET /openapi.json`, next to MCP on the same listener.
//!
//! Handlers are thin: they parse and check the request, call [`Gateway`] or [`BackupManager`] (the same calls the
//! MCP tools make, so both surfaces behave alike) and shape the answer. Resources are stores
//! (`/v1/stores/{store}`), their points (`…/points`, batch upsert with `PUT`) and backups (`/v1/backups/{backup}`);
//! actions that are neither a create nor a read are `POST`s on a verb (`…/sync`, `…/restore`, `…/export`,
//! `…/import`). Reads that need a body (search, get many points) are `POST`s on paths ending in `/search` or
//! `/points/get`, so an access policy can tell reads from writes by method and path alone; which routes only read
//! is the operation table's to say ([`crate::ops`]), for REST as for MCP and gRPC.
//!
//! Errors have one JSON shape everywhere, `{"error": {"code": "not_found", "message": "…"}}`: a domain error is
//! mapped once ([`ApiError`]'s `From<GatewayError>`, the code being [`GatewayError::kind`], as MCP reports it),
//! and so is everything axum would otherwise answer in plain text (a malformed body, a wrong content type, a bad
//! path or query, an unknown route, a wrong method). Hence the own extractors ([`Body`], [`OptionalBody`],
//! [`Param`], [`QueryArgs`]) and fallbacks.
//!
//! The OpenAPI 3.1 document is generated from this code by `utoipa`: the handlers' `#[utoipa::path]` attributes
//! and the request / response types' `ToSchema` derives; the error responses operations share are added by
//! [`CommonErrors`]. Request schemas state the server's limits (name patterns, dimension, k, shard counts, HNSW
//! parameters), so a generated client, or a fuzzer like schemathesis, learns them before it is refused.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, OriginalUri, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post, put};
use axum::{Json, Router};
use rvdb_core::error::{clip, excerpt};
use rvdb_core::types::validate_store_name;
use rvdb_core::{IndexKind, Metric, Quantization};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Array, ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};

use crate::Gateway;
use crate::backup::{BackupInfo, BackupManager, RestoreInfo, validate_file_name};
use crate::error::GatewayError;
use crate::gateway::{PointInput, PointOutput, SearchHit, SearchParams, StoreStats};

/// Largest request body, as the MCP endpoint's default limit: 64 MiB carries about 100k 128-d points in a batch.
pub const MAX_BODY_BYTES: usize = 64 << 20;

// ---------------------------------------------------------------------------------------------------------------
// Errors

/// The machine-readable kind of an error: the same words MCP tool errors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    MethodNotAllowed,
    AlreadyExists,
    PayloadTooLarge,
    LimitReached,
    Cancelled,
    BackendError,
    Unavailable,
    Unauthenticated,
    PermissionDenied,
}

/// What went wrong: `code` for programs, `message` for people (it names the field and what was expected).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "store 'docs' does not exist; there are no stores yet: create one with create_store"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// An error answer: a status and the JSON body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }

    fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, message)
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }
}

/// `429` for a full deployment (`max_vector_stores`): it is the HTTP status of gRPC's `RESOURCE_EXHAUSTED`, which
/// the nodes and the manager send for it, and a 4xx says the caller can fix it (delete a store); a 5xx such as
/// 507 would blame the server. `499` (client closed request) for cancelled operations, as gRPC gateways map it.
impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let (status, code) = match &e {
            GatewayError::Invalid(_) | GatewayError::InvalidArgument(_) => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument)
            }
            GatewayError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            GatewayError::AlreadyExists(_) => (StatusCode::CONFLICT, ErrorCode::AlreadyExists),
            GatewayError::LimitReached(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::LimitReached),
            GatewayError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            GatewayError::Backend(_) => (StatusCode::BAD_GATEWAY, ErrorCode::BackendError),
            GatewayError::Cancelled => {
                (StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST), ErrorCode::Cancelled)
            }
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "REST request failed");
        }
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

// ---------------------------------------------------------------------------------------------------------------
// Extractors: axum's own reject in plain text (and with 415 / 422); these answer with [`ApiError`].

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than the limit of {MAX_BODY_BYTES} bytes; send smaller batches"),
    )
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> ApiResult<(bool, Bytes)> {
    let json = is_json(req.headers());
    // A declared length over the limit is refused before a byte is read (the limit below catches chunked ones).
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|r: BytesRejection| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::invalid(format!("cannot read the request body: {}", clip(&r.body_text())))
        }
    })?;
    Ok((json, bytes))
}

fn parse_json<T: DeserializeOwned>(json: bool, bytes: &[u8]) -> ApiResult<T> {
    if !json {
        return Err(ApiError::invalid("the request body must be JSON: send Content-Type: application/json"));
    }
    // axum's `Json` parser names the field at fault (`points[3].vector[1]: invalid type: …`).
    Json::<T>::from_bytes(bytes).map(|Json(v)| v).map_err(|rejection| {
        let text = rejection.body_text();
        let detail = text.split_once(": ").map_or(text.as_str(), |(_, detail)| detail);
        ApiError::invalid(format!("invalid request body: {}", clip(detail)))
    })
}

/// A required JSON body (`Content-Type: application/json`); unknown fields and wrong types are 400s.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let (json, bytes) = read_body(req, state).await?;
        parse_json(json, &bytes).map(Body)
    }
}

/// A JSON body that may be left out: no body or `null` = every field at its default.
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let (json, bytes) = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        parse_json::<Option<T>>(json, &bytes).map(|v| OptionalBody(v.unwrap_or_default()))
    }
}

/// Path parameters (percent-decoded).
pub struct Param<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Param<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Param(v))
            .map_err(|e| ApiError::invalid(format!("invalid path: {}", clip(&e.body_text()))))
    }
}

/// Query parameters.
pub struct QueryArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryArgs(v))
            .map_err(|e| ApiError::invalid(format!("invalid query: {}", clip(&e.body_text()))))
    }
}

// ---------------------------------------------------------------------------------------------------------------
// Request and response types

#[derive(Debug, Clone, Copy, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
/// What "similar" means: cosine (direction only; text embeddings), euclidean (L2), manhattan (L1), dot.
pub enum MetricName {
    #[default]
    Cosine,
    Euclidean,
    Manhattan,
    Dot,
}

impl From<MetricName> for Metric {
    fn from(m: MetricName) -> Metric {
        match m {
            MetricName::Cosine => Metric::Cosine,
            MetricName::Euclidean => Metric::Euclidean,
            MetricName::Manhattan => Metric::Manhattan,
            MetricName::Dot => Metric::Dot,
        }
    }
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
/// flat: exact search, best below ~100k vectors. hnsw: approximate graph search, fast at any size (built in the
/// background; searches are exact until it is ready).
pub enum IndexName {
    Flat,
    Hnsw,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
/// sq8: the HNSW graph keeps 8-bit codes (4x less memory per vector); results are re-scored on full vectors.
pub enum QuantizationName {
    None,
    Sq8,
}

/// A new store.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "docs", "dimension": 4, "metric": "cosine"}))]
pub struct CreateStore {
    /// Name of the store: letters, digits, `_` and `-`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub name: String,
    /// Length of every vector in the store, e.g. 384 or 1536.
    #[schema(minimum = 1, maximum = 65536)]
    pub dimension: u32,
    #[serde(default)]
    #[schema(default = "cosine")]
    pub metric: MetricName,
    /// Partitions spread over the storage nodes (default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1024)]
    pub shards: Option<u32>,
    /// Copies of each shard on distinct nodes (default 1).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 16)]
    pub replication_factor: Option<u32>,
    /// Replica acks a write waits for; 0 (default) = a majority of the replicas that are up.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 16)]
    pub write_consistency: Option<u32>,
    /// Default: the server's `default_index_type`.
    #[serde(default)]
    pub index: Option<IndexName>,
    /// HNSW: links per node (default 16; more = better recall, more memory).
    #[serde(default)]
    #[schema(minimum = 2, maximum = 128)]
    pub m: Option<u32>,
    /// HNSW: beam width while building (default 200).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100000)]
    pub ef_construction: Option<u32>,
    /// HNSW: default beam width of a search (default 64).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100000)]
    pub ef_search: Option<u32>,
    /// Default none.
    #[serde(default)]
    pub quantization: Option<QuantizationName>,
}

/// A store's configuration as created.
#[derive(Debug, Serialize, ToSchema)]
pub struct StoreCreated {
    pub name: String,
    pub dimension: u32,
    pub metric: String,
    pub index: String,
    pub quantization: String,
    pub shards: u32,
    pub replication_factor: u32,
    pub write_consistency: u32,
    pub m: u32,
    pub ef_construction: u32,
    pub ef_search: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreList {
    pub stores: Vec<StoreStats>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreDeleted {
    pub store: String,
    pub deleted: bool,
}

/// Graph rebuilds started, one per replica held by a node that is not down.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexRebuild {
    pub store: String,
    pub started: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StoreSynced {
    pub store: String,
    pub synced: bool,
}

/// A point to insert or replace.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointIn {
    /// Unique id of the point in the store (1-512 bytes, no control characters).
    #[schema(min_length = 1, max_length = 512)]
    pub id: String,
    /// Exactly the store's dimension of finite numbers (not all zero under cosine).
    #[schema(min_items = 1, max_items = 65536)]
    pub vector: Vec<f32>,
    /// A JSON object (at most 256 KiB) that search filters can match.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// A batch of points. The whole batch is checked first: if any point is invalid nothing is written.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"points": [
    {"id": "a", "vector": [0.1, 0.2, 0.3, 0.4], "metadata": {"lang": "en", "year": 2024}},
    {"id": "b", "vector": [0.4, 0.3, 0.2, 0.1], "metadata": {"lang": "de", "year": 2019}}
]}))]
pub struct UpsertPoints {
    #[schema(min_items = 1)]
    pub points: Vec<PointIn>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Upserted {
    pub store: String,
    /// Points written.
    pub inserted: u64,
    /// Points skipped because a newer write of the same id was already stored.
    pub stale: u64,
}

fn yes() -> bool {
    true
}

/// Point ids: at least one, each 1-512 bytes (a derived `Vec<String>` schema cannot bound its items).
fn point_ids() -> Array {
    let id = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).max_length(Some(512));
    ArrayBuilder::new()
        .items(id)
        .min_items(Some(1))
        .description(Some("Point ids (1-512 bytes of UTF-8 each, no control characters)."))
        .build()
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetPointQuery {
    /// Also return the vector (default true).
    #[serde(default = "yes")]
    #[param(default = true)]
    pub with_vector: bool,
}

/// Points by id.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ids": ["a", "b"], "with_vector": false}))]
pub struct GetPoints {
    #[schema(schema_with = point_ids)]
    pub ids: Vec<String>,
    /// Also return the vectors (default true).
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub with_vector: bool,
}

/// The points found, in the order asked; ids that do not exist are left out.
#[derive(Debug, Serialize, ToSchema)]
pub struct Points {
    pub points: Vec<PointOutput>,
}

/// Ids of points to delete.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"ids": ["a"]}))]
pub struct DeletePoints {
    #[schema(schema_with = point_ids)]
    pub ids: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PointsDeleted {
    pub store: String,
    /// Points that existed and are now deleted.
    pub deleted: u64,
}

/// A k-nearest-neighbour query.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"vector": [0.1, 0.2, 0.3, 0.4], "k": 3,
    "filter": {"must": [{"key": "lang", "match": {"value": "en"}}]}}))]
pub struct SearchRequest {
    /// The query vector: the store's dimension of finite numbers.
    #[schema(min_items = 1, max_items = 65536)]
    pub vector: Vec<f32>,
    /// How many results to return.
    #[serde(default = "crate::gateway::default_k")]
    #[schema(minimum = 1, maximum = 10000, default = 10)]
    pub k: u32,
    /// Only points whose metadata matches, e.g. `{"must": [{"key": "lang", "match": {"value": "en"}}, {"key":
    /// "year", "range": {"gte": 2020}}], "must_not": [{"key": "draft", "match": {"value": true}}]}`. Clauses: must
    /// (all), should (at least one), must_not (none); conditions: match {value | any: [...]}, range {gt, gte, lt,
    /// lte}, exists (true/false); keys may be dotted paths (`author.name`).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub filter: Option<Value>,
    /// HNSW stores: beam width for this search (default: the store's ef_search).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 100000)]
    pub ef: Option<u32>,
    /// Exact search even on an HNSW store.
    #[serde(default)]
    pub exact: bool,
    /// Also return each result's vector.
    #[serde(default)]
    pub with_vector: bool,
    /// Return each result's metadata (default true).
    #[serde(default = "yes")]
    #[schema(default = true)]
    pub with_metadata: bool,
}

/// Nearest first. `distance` is lower for closer points (cosine: 1 - cosine similarity, euclidean: L2,
/// manhattan: L1, dot: minus the dot product); it saturates at ±3.4028235e38 when it overflows `f32`.
#[derive(Debug, Serialize, ToSchema)]
pub struct SearchResults {
    pub results: Vec<SearchHit>,
}

/// Options of a backup; the body may be left out.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "docs-nightly"}))]
pub struct CreateBackup {
    /// Backup name; default `<store>-<time>`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub name: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BackupQuery {
    /// Only backups of this store.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub store: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupList {
    pub backups: Vec<BackupInfo>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BackupDeleted {
    pub backup: String,
    pub deleted: bool,
}

/// Where to restore a backup: a NEW store (the original is not touched), optionally with another shard count.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"store": "docs-restored"}))]
pub struct RestoreBackup {
    /// Name of the new store.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub store: String,
    /// Shards of the new store (default: as in the backup).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1024)]
    pub shards: Option<u32>,
}

/// Options of an export; the body may be left out.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"file": "docs.jsonl"}))]
pub struct ExportStore {
    /// File name in the server's export directory; default `<store>-<time>.jsonl`.
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub file: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Exported {
    pub store: String,
    /// File name, as `import` takes it.
    pub file: String,
    /// Where the server wrote it.
    pub path: String,
    pub points: u64,
    pub bytes: u64,
}

/// The export file to create the store from.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"file": "docs.jsonl"}))]
pub struct ImportStore {
    /// File name in the server's export directory.
    #[schema(pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$")]
    pub file: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Imported {
    pub file: String,
    pub store: String,
    pub points: u64,
    pub shards: u32,
}

// ---------------------------------------------------------------------------------------------------------------
// Handlers

#[derive(Clone)]
struct Api {
    gateway: Arc<Gateway>,
    backups: Arc<BackupManager>,
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
async fn list_stores(State(api): State<Api>) -> ApiResult<Json<StoreList>> {
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
async fn create_store(State(api): State<Api>, Body(req): Body<CreateStore>) -> ApiResult<Response> {
    let request = crate::gateway::CreateStore {
        name: req.name,
        dimension: req.dimension,
        metric: Some(req.metric.into()),
        shards: req.shards,
        replication_factor: req.replication_factor,
        write_consistency: req.write_consistency,
        index: req.index.map(|i| match i {
            IndexName::Flat => IndexKind::Flat,
            IndexName::Hnsw => IndexKind::Hnsw,
        }),
        quantization: req.quantization.map(|q| match q {
            QuantizationName::None => Quantization::None,
            QuantizationName::Sq8 => Quantization::Sq8,
        }),
        m: req.m,
        ef_construction: req.ef_construction,
        ef_search: req.ef_search,
    };
    let c = api.gateway.create(request).await?.config;
    let body = StoreCreated {
        name: c.name.clone(),
        dimension: c.dimension,
        metric: c.metric.as_str().to_string(),
        index: c.index.kind.as_str().to_string(),
        quantization: c.index.quantization.as_str().to_string(),
        shards: c.shards,
        replication_factor: c.replication_factor,
        write_consistency: c.write_consistency,
        m: c.index.hnsw.m,
        ef_construction: c.index.hnsw.ef_construction,
        ef_search: c.index.hnsw.ef_search,
    };
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
async fn describe_store(
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
async fn delete_store(
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
async fn sync_store(
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
async fn rebuild_index(
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
async fn upsert_points(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<UpsertPoints>,
) -> ApiResult<Json<Upserted>> {
    let mut points = Vec::with_capacity(req.points.len());
    for (i, p) in req.points.into_iter().enumerate() {
        points.push(PointInput::from_request(p.id, p.vector, p.metadata, &format!("points[{i}].metadata"))?);
    }
    let s = api.gateway.upsert(&store, points, |_, _| true).await?;
    Ok(Json(Upserted { store, inserted: s.inserted, stale: s.stale }))
}

/// Get a point
#[utoipa::path(get, path = "/v1/stores/{store}/points/{id}", tag = "points", operation_id = "get_point",
    params(PointPath, GetPointQuery),
    responses(
        (status = 200, description = "The point", body = PointOutput),
        (status = 404, description = "not_found: no such store, or no point with this id", body = ErrorBody),
    ))]
async fn get_point(
    State(api): State<Api>,
    Param(PointPath { store, id }): Param<PointPath>,
    QueryArgs(q): QueryArgs<GetPointQuery>,
) -> ApiResult<Json<PointOutput>> {
    fetch_point(&api, store, id, q.with_vector).await
}

async fn fetch_point(api: &Api, store: String, id: String, with_vector: bool) -> ApiResult<Json<PointOutput>> {
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
async fn get_points(
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
async fn delete_point(
    State(api): State<Api>,
    Param(PointPath { store, id }): Param<PointPath>,
) -> ApiResult<Json<PointsDeleted>> {
    remove_point(&api, store, id).await
}

async fn remove_point(api: &Api, store: String, id: String) -> ApiResult<Json<PointsDeleted>> {
    let deleted = api.gateway.delete(&store, vec![id]).await?;
    Ok(Json(PointsDeleted { store, deleted }))
}

/// `GET` and `DELETE` of the point whose id is `name` (`get` or `delete`): the batch routes `…/points/get` and
/// `…/points/delete` take precedence over `…/points/{id}` in the router and would answer 405 for those ids.
fn point_named(name: &'static str) -> MethodRouter<Api> {
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
#[utoipa::path(post, path = "/v1/stores/{store}/points/delete", tag = "points", operation_id = "delete_points",
    params(StorePath), request_body = DeletePoints,
    responses(
        (status = 200, description = "Deleted", body = PointsDeleted),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
    ))]
async fn delete_points(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<DeletePoints>,
) -> ApiResult<Json<PointsDeleted>> {
    let deleted = api.gateway.delete(&store, req.ids).await?;
    Ok(Json(PointsDeleted { store, deleted }))
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
async fn search(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<SearchRequest>,
) -> ApiResult<Json<SearchResults>> {
    let params = SearchParams {
        k: req.k,
        with_vector: req.with_vector,
        with_metadata: req.with_metadata,
        filter: req.filter,
        ef: req.ef,
        exact: req.exact,
    };
    Ok(Json(SearchResults { results: api.gateway.search(&store, req.vector, &params).await? }))
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
async fn create_backup(
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
async fn list_backups(State(api): State<Api>, QueryArgs(q): QueryArgs<BackupQuery>) -> ApiResult<Json<BackupList>> {
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
async fn describe_backup(
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
async fn delete_backup(
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
async fn restore_backup(
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
        (status = 201, description = "Exported", body = Exported),
        (status = 404, description = "not_found: no such store", body = ErrorBody),
        (status = 409, description = "already_exists: an export file with this name exists", body = ErrorBody),
    ))]
async fn export_store(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    OptionalBody(req): OptionalBody<ExportStore>,
) -> ApiResult<Response> {
    let info = api.backups.export(&store, req.file, |_| true).await?;
    let body = Exported { store: info.store, file: info.file, path: info.path, points: info.points, bytes: info.bytes };
    Ok(created(None, body))
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
async fn import_store(
    State(api): State<Api>,
    Param(StorePath { store }): Param<StorePath>,
    Body(req): Body<ImportStore>,
) -> ApiResult<Response> {
    let info = api.backups.import(&req.file, &store, |_| true).await?;
    let body = Imported { file: info.backup, store: info.store, points: info.points, shards: info.shards };
    Ok(created(Some(format!("/v1/stores/{}", body.store)), body))
}

/// The `{store}` path parameter.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct StorePath {
    /// Store name.
    #[param(pattern = "^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64, example = "docs")]
    store: String,
}

/// The `{store}` and `{id}` path parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
struct PointPath {
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
struct BackupPath {
    /// Backup name, as `GET /v1/backups` lists it.
    #[param(
        pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$",
        min_length = 1,
        max_length = 128,
        example = "docs-nightly"
    )]
    backup: String,
}

async fn openapi_json(State(doc): State<Arc<utoipa::openapi::OpenApi>>) -> Response {
    Json(doc.as_ref()).into_response()
}

async fn unknown_route(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::not_found(format!("no route {method} {}: see /openapi.json", excerpt(uri.path())))
}

async fn wrong_method(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        format!("{method} is not allowed on {}: see the Allow header", excerpt(uri.path())),
    )
}

// ---------------------------------------------------------------------------------------------------------------
// The document and the router

/// Adds what every operation shares: the error responses it can give — 400 (when it takes parameters or a
/// body), 413 (a body), 401 / 403 (with API keys configured; 403 only for writes, as [`crate::http::rest_reads`]
/// tells them apart), 502 / 503 (a storage node failed or is down) — and the optional bearer API key.
pub struct CommonErrors;

impl Modify for CommonErrors {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build()
        };
        let add = |op: &mut Operation, status: &str, description: &str| {
            op.responses.responses.entry(status.to_string()).or_insert_with(|| error(description).into());
        };
        for (path, item) in doc.paths.paths.iter_mut() {
            let ops = [
                (Method::GET, &mut item.get),
                (Method::PUT, &mut item.put),
                (Method::POST, &mut item.post),
                (Method::DELETE, &mut item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op else { continue };
                if op.request_body.is_some() || op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    add(op, "400", "invalid_argument: a parameter or the body is invalid (the message says which)");
                }
                if op.request_body.is_some() {
                    add(op, "413", "payload_too_large: the body is larger than the server's limit");
                }
                add(op, "401", "unauthenticated: API keys are configured and none or an unknown one was sent");
                if !crate::http::rest_reads(&method, path) {
                    add(op, "403", "permission_denied: a read-only API key cannot write");
                }
                add(op, "502", "backend_error: a storage node or the backup directory failed");
                add(op, "503", "unavailable: too few replicas are up");
            }
        }
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        // Optional: a server without API keys takes requests without one.
        doc.security = Some(vec![SecurityRequirement::default(), SecurityRequirement::new("api_key", [""; 0])]);
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rvdb REST API",
        description = "Named vector stores with k-NN search. Every error is `{\"error\": {\"code\", \"message\"}}` \
                       with an HTTP status that matches the code. The same operations are MCP tools at `/mcp`.",
    ),
    paths(
        list_stores, create_store, describe_store, delete_store, sync_store, rebuild_index,
        upsert_points, get_points, get_point, delete_point, delete_points, search,
        create_backup, list_backups, describe_backup, delete_backup, restore_backup, export_store, import_store,
    ),
    components(schemas(ErrorBody, ErrorCode)),
    modifiers(&CommonErrors),
    tags(
        (name = "stores", description = "Create, list, describe, sync and delete stores."),
        (name = "points", description = "Write, read, delete and search points."),
        (name = "backups", description = "Backups, restores into new stores, JSON Lines export and import."),
    ),
)]
pub struct ApiDoc;

/// Routes of the REST API; merged by [`crate::http::router`] under the same auth and limits as MCP.
pub fn router(gateway: Arc<Gateway>, backups: Arc<BackupManager>) -> Router {
    let api = Api { gateway, backups };
    let v1 = Router::new()
        .route("/stores", get(list_stores).post(create_store))
        .route("/stores/{store}", get(describe_store).delete(delete_store))
        .route("/stores/{store}/sync", post(sync_store))
        .route("/stores/{store}/rebuild-index", post(rebuild_index))
        .route("/stores/{store}/points", put(upsert_points))
        .route("/stores/{store}/points/get", point_named("get").post(get_points))
        .route("/stores/{store}/points/delete", point_named("delete").post(delete_points))
        .route("/stores/{store}/points/{id}", get(get_point).delete(delete_point))
        .route("/stores/{store}/search", post(search))
        .route("/stores/{store}/backups", post(create_backup))
        .route("/stores/{store}/export", post(export_store))
        .route("/stores/{store}/import", post(import_store))
        .route("/backups", get(list_backups))
        .route("/backups/{backup}", get(describe_backup).delete(delete_backup))
        .route("/backups/{backup}/restore", post(restore_backup))
        .method_not_allowed_fallback(wrong_method)
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api);
    let doc = Arc::new(ApiDoc::openapi());
    let docs = Router::new()
        .route("/openapi.json", get(openapi_json))
        .method_not_allowed_fallback(wrong_method)
        .with_state(doc);
    Router::new().nest("/v1", v1).merge(docs)
}

#[cfg(test)]
mod tests {
    use rvdb_core::types::{MAX_DIMENSION, MAX_EF, MAX_K, MAX_SHARDS};

    use super::*;

    #[test]
    fn error_codes_are_the_gateway_kinds() {
        let all = [
            GatewayError::InvalidArgument("x".into()),
            GatewayError::Invalid(rvdb_core::CoreError::InvalidK(0)),
            GatewayError::NotFound("x".into()),
            GatewayError::AlreadyExists("x".into()),
            GatewayError::LimitReached("x".into()),
            GatewayError::Unavailable("x".into()),
            GatewayError::Backend("x".into()),
            GatewayError::Cancelled,
        ];
        for e in all {
            let kind = e.kind();
            let api = ApiError::from(e);
            assert_eq!(serde_json::to_value(api.code).ok(), Some(Value::from(kind)));
            assert!(api.status.is_client_error() || api.status.is_server_error());
        }
    }

    /// MCP and REST serialise hits alike: a distance that overflowed is a number (saturated), never `null`.
    #[test]
    fn distances_stay_finite_numbers() {
        let hit = |distance| SearchHit { id: "a".into(), distance, metadata: None, vector: None };
        let hits = [hit(f32::INFINITY), hit(f32::NEG_INFINITY), hit(f32::NAN), hit(0.25)];
        let json = serde_json::to_value(SearchResults { results: hits.to_vec() }).unwrap_or_default();
        let distances: Vec<Option<f64>> =
            json["results"].as_array().into_iter().flatten().map(|h| h["distance"].as_f64()).collect();
        assert_eq!(distances, [Some(f32::MAX as f64), Some(f32::MIN as f64), Some(f32::MAX as f64), Some(0.25)]);
        let text = serde_json::to_string(&hits[1]).unwrap_or_default();
        assert!(text.contains(r#""distance":-3.4028235e"#), "{text}");
    }

    #[test]
    fn document_declares_every_route_with_json_errors() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().cloned().unwrap_or_default();
        let mut ops = Vec::new();
        for (path, item) in &paths {
            for (method, op) in item.as_object().into_iter().flatten() {
                ops.push(format!("{} {path}", method.to_uppercase()));
                let responses = op["responses"].as_object().cloned().unwrap_or_default();
                for (status, r) in responses.iter().filter(|(s, _)| !s.starts_with('2')) {
                    assert_eq!(
                        r["content"]["application/json"]["schema"]["$ref"], "#/components/schemas/ErrorBody",
                        "{method} {path} {status}"
                    );
                }
                assert!(responses.contains_key("503"), "{method} {path}");
            }
        }
        assert_eq!(ops.len(), 19, "{ops:?}");
        // Limits in the schemas are the server's.
        let create = &doc["components"]["schemas"]["CreateStore"]["properties"];
        assert_eq!(create["dimension"]["maximum"], MAX_DIMENSION);
        assert_eq!(create["shards"]["maximum"], MAX_SHARDS);
        assert_eq!(create["ef_search"]["maximum"], MAX_EF);
        assert_eq!(doc["components"]["schemas"]["SearchRequest"]["properties"]["k"]["maximum"], MAX_K);
    }
}
