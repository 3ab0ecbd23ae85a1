//! The MCP server: `tools/list` from [`crate::tools`], `tools/call` parsed into the typed requests of
//! [`crate::api`] and delegated to [`Gateway`] / [`BackupManager`], answering the typed responses. Bad arguments and backend failures become tool results with `isError: true` and a message an
//! agent can act on; only an unknown tool name is a JSON-RPC error (-32602), as the spec asks.

use std::sync::Arc;

use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation, ListToolsResult,
    PaginatedRequestParams, ProgressNotificationParam, ServerCapabilities, ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler};
use rvdb_core::error::{clip, excerpt};
use rvdb_proto::rpc::{self, Access, Refusal};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::api::*;
use crate::backup::BackupManager;
use crate::error::GatewayError;
use crate::gateway::Gateway;
use crate::{metrics, tools};

/// How long clients may cache `tools/list` (the catalogue only changes with a new rvdb version).
const TOOLS_TTL_MS: u64 = 300_000;

#[derive(Debug, Clone)]
pub struct McpServer {
    gateway: Arc<Gateway>,
    backups: Arc<BackupManager>,
}

impl McpServer {
    pub fn new(gateway: Arc<Gateway>, backups: Arc<BackupManager>) -> Self {
        Self { gateway, backups }
    }
}

/// Parses a tool's arguments; the error says which tool and what serde found wrong (missing / unknown field,
/// wrong type), which is what an agent needs to fix its call.
/// A field deep in the arguments is named by its path (`points[3].vector[1]: invalid type: …`), as REST's body
/// parser names it.
fn parse<T: DeserializeOwned>(tool: &str, args: Option<rmcp::model::JsonObject>) -> Result<T, GatewayError> {
    serde_path_to_error::deserialize(Value::Object(args.unwrap_or_default())).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." { String::new() } else { format!("{path}: ") };
        let detail = format!("{at}{}", e.inner());
        GatewayError::InvalidArgument(format!("invalid arguments for {tool}: {}", clip(&detail)))
    })
}

/// A tool's result as JSON; one that cannot be encoded is an error, never a `null` result that breaks the tool's
/// output schema.
fn to_json(value: &impl serde::Serialize) -> Result<Value, GatewayError> {
    serde_json::to_value(value).map_err(|e| GatewayError::Backend(format!("cannot encode the result: {e}")))
}

fn error_result(e: GatewayError) -> CallToolResult {
    let text = match &e {
        GatewayError::Invalid(_) | GatewayError::InvalidArgument(_) => format!("Invalid input: {e}"),
        _ => format!("Error ({}): {e}", e.kind()),
    };
    CallToolResult::error(vec![ContentBlock::text(text)])
}

impl McpServer {
    async fn dispatch(
        &self,
        request: CallToolRequestParams,
        context: &RequestContext<RoleServer>,
    ) -> Result<Value, GatewayError> {
        let gw = &self.gateway;
        let name = request.name.as_ref();
        let args = request.arguments;
        match name {
            "create_store" => {
                let a: CreateStoreArgs = parse(name, args)?;
                let route = gw.create(a.settings.into_request(a.store)).await?;
                let c = &route.config;
                to_json(&StoreCreatedResult { store: c.name.clone(), settings: c.into() })
            }
            "insert_vector" => {
                let a: InsertVectorArgs = parse(name, args)?;
                let id = a.point.id.clone();
                let s = gw.upsert(&a.store, vec![a.point.into_point("metadata")?], |_, _| true).await?;
                to_json(&VectorInserted { store: a.store, id, inserted: s.inserted == 1 })
            }
            "insert_vectors" => {
                let a: InsertVectorsArgs = parse(name, args)?;
                let points = a.batch.into_points()?;
                let progress = ProgressReporter::new(context);
                let s = gw.upsert(&a.store, points, |done, total| progress.tick(done, total)).await?;
                progress.finish().await;
                to_json(&Upserted { store: a.store, inserted: s.inserted, stale: s.stale })
            }
            "insert_texts" => {
                let a: InsertTextsArgs = parse(name, args)?;
                let progress = ProgressReporter::new(context);
                let documents = a.batch.into_documents();
                let (s, ids) = gw.insert_texts(&a.store, documents, |done, total| progress.tick(done, total)).await?;
                progress.finish().await;
                to_json(&TextsInserted { store: a.store, inserted: s.inserted, stale: s.stale, ids })
            }
            "search_text" => {
                let a: SearchTextArgs = parse(name, args)?;
                let (query, params, with_text, how) = a.query.into_parts();
                let hits = gw.search_text(&a.store, query, &params, with_text, &how).await?;
                to_json(&TextResults { store: a.store, results: hits.into_iter().map(Into::into).collect() })
            }
            "update_metadata" => {
                let a: UpdateMetadataArgs = parse(name, args)?;
                let (selector, update) = a.update.into_parts()?;
                let progress = ProgressReporter::new(context);
                let updated =
                    gw.update_metadata(&a.store, selector, &update, |done, total| progress.tick(done, total)).await?;
                progress.finish().await;
                to_json(&MetadataUpdated { store: a.store, updated })
            }
            "delete_points" => {
                let a: DeletePointsArgs = parse(name, args)?;
                let progress = ProgressReporter::new(context);
                let deleted =
                    gw.delete_points(&a.store, a.which.selector()?, |done, total| progress.tick(done, total)).await?;
                progress.finish().await;
                to_json(&PointsDeleted { store: a.store, deleted })
            }
            "count" => {
                let a: CountArgs = parse(name, args)?;
                let count = gw.count(&a.store, a.query.filter.as_ref()).await?;
                to_json(&Counted { store: a.store, count })
            }
            "scroll" => {
                let a: ScrollArgs = parse(name, args)?;
                let page = gw.scroll(&a.store, &a.page.into_params()).await?;
                to_json(&ScrollPage { store: a.store, points: page.points, next_cursor: page.next_cursor })
            }
            "search_vectors" => {
                let a: SearchVectorsArgs = parse(name, args)?;
                let (vector, params) = a.query.into_parts();
                let results = gw.search(&a.store, vector, &params).await?;
                to_json(&SearchResults { store: a.store, results })
            }
            "sync_store" => {
                let a: StoreArgs = parse(name, args)?;
                gw.sync(&a.store).await?;
                to_json(&StoreSynced { store: a.store, synced: true })
            }
            "list_stores" => {
                let _: NoArgs = parse(name, args)?;
                to_json(&StoreList { stores: gw.all_stats().await? })
            }
            "describe_store" => {
                let a: StoreArgs = parse(name, args)?;
                to_json(&gw.stats(&a.store).await?)
            }
            "delete_store" => {
                let a: StoreArgs = parse(name, args)?;
                gw.drop_store(&a.store).await?;
                to_json(&StoreDeleted { store: a.store, deleted: true })
            }
            "get_vector" => {
                let a: GetVectorArgs = parse(name, args)?;
                let point = gw.get(&a.store, vec![a.id], a.with_vector).await?.pop();
                to_json(&VectorFound { store: a.store, found: point.is_some(), point })
            }
            "delete_vector" => {
                let a: IdArgs = parse(name, args)?;
                let n = gw.delete(&a.store, vec![a.id.clone()]).await?;
                to_json(&VectorDeleted { store: a.store, id: a.id, deleted: n > 0 })
            }
            "backup_store" => {
                let a: BackupArgs = parse(name, args)?;
                let progress = ProgressReporter::new(context);
                let info = self.backups.backup(&a.store, a.options.name, |done| progress.tick(done, 0)).await?;
                progress.finish().await;
                to_json(&info)
            }
            "restore_store" => {
                let a: RestoreArgs = parse(name, args)?;
                let progress = ProgressReporter::new(context);
                let (store, shards) = (a.target.store, a.target.shards);
                let info =
                    self.backups.restore(&a.backup, &store, shards, |done, total| progress.tick(done, total)).await?;
                progress.finish().await;
                to_json(&info)
            }
            "list_backups" => {
                let a: ListBackupsArgs = parse(name, args)?;
                to_json(&BackupList { backups: self.backups.list(a.store.as_deref())? })
            }
            "export_store" => {
                let a: ExportArgs = parse(name, args)?;
                let progress = ProgressReporter::new(context);
                let info = self.backups.export(&a.store, a.options.file, |done| progress.tick(done, 0)).await?;
                progress.finish().await;
                to_json(&info)
            }
            "import_store" => {
                let a: ImportArgs = parse(name, args)?;
                let progress = ProgressReporter::new(context);
                let info = self.backups.import(&a.source.file, &a.store, |done| progress.tick(done, 0)).await?;
                progress.finish().await;
                to_json(&info)
            }
            _ => unreachable!("unknown tools are refused before dispatch"),
        }
    }
}

/// Forwards progress to the client in order, from a synchronous callback, when the request carries a token, and
/// tells the long-running operation whether the client cancelled the request.
struct ProgressReporter {
    tx: Option<tokio::sync::mpsc::UnboundedSender<(u64, u64)>>,
    task: Option<tokio::task::JoinHandle<()>>,
    cancelled: tokio_util::sync::CancellationToken,
}

impl ProgressReporter {
    fn new(context: &RequestContext<RoleServer>) -> Self {
        let cancelled = context.ct.clone();
        let Some(token) = context.meta.get_progress_token() else { return Self { tx: None, task: None, cancelled } };
        let peer = context.peer.clone();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
        let task = tokio::spawn(async move {
            while let Some((done, total)) = rx.recv().await {
                let mut p = ProgressNotificationParam::new(token.clone(), done as f64);
                if total > 0 {
                    p.total = Some(total as f64);
                    p.message = Some(format!("{done} of {total} points"));
                } else {
                    p.message = Some(format!("{done} points"));
                }
                if peer.notify_progress(p).await.is_err() {
                    break;
                }
            }
        });
        Self { tx: Some(tx), task: Some(task), cancelled }
    }

    /// Reports `done` of `total` (0 = unknown); returns false once the client has cancelled.
    fn tick(&self, done: u64, total: u64) -> bool {
        if let Some(tx) = &self.tx {
            let _ = tx.send((done, total));
        }
        !self.cancelled.is_cancelled()
    }

    /// Waits until every notification is sent, so they all precede the result.
    async fn finish(mut self) {
        self.tx.take();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(
                Implementation::new("rvdb", env!("CARGO_PKG_VERSION"))
                    .with_title("rvdb vector database")
                    .with_description("Named vector stores with k-NN search for AI agents"),
            )
            .with_instructions(
                "rvdb stores texts or vectors with an id and JSON metadata in named stores and finds the nearest ones. \
                 For texts (memory, notes, documents) no vectors are needed: create_store with `embedding: {}` (the \
                 server's model embeds every text), then insert_texts, then search_text with a query in words. For \
                 your own vectors: create_store with `dimension`, insert_vectors, search_vectors. list_stores shows \
                 what exists.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools::catalogue())
            .with_ttl_ms(TOOLS_TTL_MS)
            .with_cache_scope(CacheScope::Public))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let started = std::time::Instant::now();
        let name = request.name.to_string();
        // the operation table knows every tool (a test holds it to the catalogue), without building the catalogue
        let Some(operation) = crate::ops::by_mcp_tool(&name) else {
            metrics::record("mcp", "unknown", "", "unknown_tool", started.elapsed());
            let known: Vec<String> = tools::catalogue().iter().map(|t| t.name.to_string()).collect();
            return Err(ErrorData::invalid_params(
                format!("unknown tool '{}'; available tools: {}", excerpt(&name), known.join(", ")),
                None,
            ));
        };
        let store =
            request.arguments.as_ref().and_then(|a| a.get("store")).and_then(Value::as_str).unwrap_or("").to_string();
        // Over HTTP the listener put the caller's access and headers in the request parts; stdio is local.
        let parts = context.extensions.get::<axum::http::request::Parts>();
        let access = parts.and_then(|p| p.extensions.get::<Access>().copied()).unwrap_or(Access::ReadWrite);
        let request_id = parts
            .and_then(|p| p.headers.get(rpc::REQUEST_ID_HEADER))
            .and_then(|v| v.to_str().ok())
            .and_then(rpc::sanitize_request_id)
            .unwrap_or_else(rpc::new_request_id);
        let read_only_tool = operation.access == crate::ops::Access::Read;
        if access == Access::ReadOnly && !read_only_tool {
            metrics::record("mcp", &name, &store, "permission_denied", started.elapsed());
            let message = format!("Error (permission_denied): {} ('{name}' changes data)", Refusal::ReadOnly.message());
            return Ok(CallToolResult::error(vec![ContentBlock::text(message)]).into());
        }
        let span = tracing::info_span!("tool_call", tool = %name, store = %excerpt(&store), request_id = %request_id);
        tracing::debug!(parent: &span, over_http = parts.is_some(), ?access, "tool call");
        let call = rpc::REQUEST_ID.scope(request_id, self.dispatch(request, &context));
        let (result, outcome) = match tracing::Instrument::instrument(call, span).await {
            Ok(value) => (CallToolResult::structured(value), "ok"),
            Err(e) => {
                tracing::info!(tool = %name, error = %e, "tool call failed");
                let kind = e.kind();
                (error_result(e), kind)
            }
        };
        metrics::record("mcp", &name, &store, outcome, started.elapsed());
        Ok(result.into())
    }
}
