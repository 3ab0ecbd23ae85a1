//! The REST API under `/v1` and its OpenAPI document at `GET /openapi.json`, next to MCP on the same listener.
//!
//! Handlers are thin: they parse and check the request, call [`Gateway`] or [`BackupManager`] (the same calls the
//! MCP tools make, so both surfaces behave alike) and shape the answer. Resources are stores
//! (`/v1/stores/{store}`), their points (`…/points`, batch upsert with `PUT`) and backups (`/v1/backups/{backup}`);
//! actions that are neither a create nor a read are `POST`s on a verb (`…/sync`, `…/restore`, `…/export`,
//! `…/import`). Reads that need a body (search, get many points, count, scroll) are `POST`s on paths ending in
//! `/search`, `/points/get`, `/points/count` or `/points/scroll`, so an access policy can tell reads from writes by
//! method and path alone (and `POST
//! /v1/embeddings`, OpenAI's path, which stores nothing); which routes only read is the operation table's to say
//! ([`crate::ops`]), for REST as for MCP and gRPC.
//!
//! Errors have one JSON shape everywhere, `{"error": {"code": "not_found", "message": "…"}}`: a domain error is
//! mapped once ([`ApiError`]'s `From<GatewayError>`, the code being [`GatewayError::kind`], as MCP reports it),
//! and so is everything axum would otherwise answer in plain text (a malformed body, a wrong content type, a bad
//! path or query, an unknown route, a wrong method). Hence the own extractors ([`Body`], [`OptionalBody`],
//! [`Param`], [`QueryArgs`]) and fallbacks.
//!
//! The OpenAPI 3.1 document is generated from this code by `utoipa`: the handlers' `#[utoipa::path]` attributes
//! and the request / response types of [`crate::api`], whose schemas are their `schemars` JSON Schemas (the very
//! schemas MCP's tools declare); the error responses operations share are added by [`CommonErrors`]. Request schemas state the server's limits (name patterns, dimension, k, shard counts, HNSW
//! parameters), so a generated client, or a fuzzer like schemathesis, learns them before it is refused.
//!
//! Modules by concern: [`error`] (the one error shape and its mapping), [`extract`] (body, path and query
//! extractors that answer with it), [`handlers`] (one thin handler per route), [`openapi`] (the document).

mod error;
mod extract;
mod handlers;
mod openapi;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};

pub use error::{ApiError, ErrorBody, ErrorCode, ErrorDetail};
pub use extract::{Body, OptionalBody, Param, QueryArgs};
pub use openapi::{ApiDoc, CommonErrors};

use crate::Gateway;
use crate::backup::BackupManager;
use handlers::*;

/// Largest request body, as the MCP endpoint's default limit: 64 MiB carries about 100k 128-d points in a batch.
pub const MAX_BODY_BYTES: usize = 64 << 20;

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
        .route("/stores/{store}/points/metadata", point_named("metadata").post(update_metadata))
        .route("/stores/{store}/points/count", point_named("count").post(count_points))
        .route("/stores/{store}/points/scroll", point_named("scroll").post(scroll_points))
        .route("/stores/{store}/points/{id}", get(get_point).delete(delete_point))
        .route("/stores/{store}/search", post(search))
        .route("/stores/{store}/backups", post(create_backup))
        .route("/stores/{store}/export", post(export_store))
        .route("/stores/{store}/import", post(import_store))
        .route("/backups", get(list_backups))
        .route("/backups/{backup}", get(describe_backup).delete(delete_backup))
        .route("/backups/{backup}/restore", post(restore_backup))
        .route("/stores/{store}/texts", put(insert_texts))
        .route("/stores/{store}/texts/search", post(search_text))
        .route("/embeddings", post(embeddings))
        .route("/stores/{store}/map", post(map_store))
        .route("/cluster", get(cluster_status))
        .method_not_allowed_fallback(wrong_method)
        .fallback(unknown_route)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(api);
    let doc = Arc::new(<ApiDoc as utoipa::OpenApi>::openapi());
    let docs = Router::new()
        .route("/openapi.json", get(openapi_json))
        .method_not_allowed_fallback(wrong_method)
        .with_state(doc);
    Router::new().nest("/v1", v1).merge(docs)
}
