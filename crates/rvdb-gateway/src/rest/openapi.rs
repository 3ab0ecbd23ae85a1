//! The OpenAPI 3.1 document: the handlers' `#[utoipa::path]` attributes, the messages' schemas (from their
//! `JsonSchema`, as MCP's tools declare them) and, added by [`CommonErrors`], what every operation shares.

use axum::http::Method;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorCode};
use super::handlers::*;

/// Adds what every operation shares: the error responses it can give — 400 (when it takes parameters or a
/// body), 413 (a body), 401 / 403 (with API keys configured; 403 only for writes, as [`crate::ops::rest_reads`]
/// tells them apart), 507 (writes: a node's disk is full), 502 / 503 (a storage node failed or is down) — and the optional bearer API key.
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
                if !crate::ops::rest_reads(&method, path) {
                    add(op, "403", "permission_denied: a read-only API key cannot write");
                    add(op, "507", "insufficient_storage: a storage node's disk is full; reads still work");
                }
                add(op, "502", "backend_error: a storage node, the backup directory or an embedding provider failed");
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
        upsert_points, get_points, get_point, delete_point, delete_points, update_metadata, count_points,
        scroll_points, search,
        create_backup, list_backups, describe_backup, delete_backup, restore_backup, export_store, import_store,
        insert_texts, search_text, embeddings, map_store, cluster_status,
    ),
    components(schemas(ErrorBody, ErrorCode)),
    modifiers(&CommonErrors),
    tags(
        (name = "stores", description = "Create, list, describe, sync and delete stores."),
        (name = "points", description = "Write, read, delete and search points."),
        (name = "backups", description = "Backups, restores into new stores, JSON Lines export and import."),
        (name = "texts", description = "Stores bound to an embedding model: store and search texts."),
        (name = "embeddings", description = "Text to vectors with the server's models (OpenAI-compatible)."),
        (name = "cluster", description = "Nodes, their states and where every replica lives."),
    ),
)]
pub struct ApiDoc;

#[cfg(test)]
mod tests {
    use rvdb_core::types::{MAX_DIMENSION, MAX_EF, MAX_K, MAX_SHARDS};

    use super::*;

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
        assert_eq!(ops.len(), 27, "{ops:?}");
        // Limits in the schemas are the server's.
        let create = &doc["components"]["schemas"]["CreateStore"]["properties"];
        assert_eq!(create["dimension"]["maximum"], MAX_DIMENSION);
        assert_eq!(create["shards"]["maximum"], MAX_SHARDS);
        assert_eq!(create["ef_search"]["maximum"], MAX_EF);
        assert_eq!(doc["components"]["schemas"]["SearchRequest"]["properties"]["k"]["maximum"], MAX_K);
    }
}
