//! The gateway's HTTP listener: MCP over Streamable HTTP at `/mcp` (rmcp's tower service inside axum), the REST
//! API under `/v1` ([`crate::rest`]), Prometheus `/metrics`, `/healthz` (alive) and `/readyz` (routing table
//! loaded, every shard readable and writable at its consistency), and the OAuth protected-resource metadata that
//! bearer-token clients discover.
//!
//! Security, per the MCP spec: `Origin` is validated against an allow-list (rmcp leaves it off by default; we
//! always set one: loopback origins unless configured), `Host` is validated (DNS rebinding), the listener binds
//! loopback by default, request bodies are capped. API keys ([`ApiKeys`]) guard `/mcp`, `/v1` and `/metrics`
//! when configured: no or an unknown key → 401 with `WWW-Authenticate: Bearer resource_metadata=…`; a read-only
//! key may call the operations that only read (one table for every surface, [`crate::ops`]) and gets
//! 403 (REST) or an `isError` result (MCP) on a write, before anything is parsed or changed. Keys are compared in
//! constant time and never logged or forwarded to the nodes (the gateway presents its own key there).
//! `/healthz`, `/readyz`, `/openapi.json` and the console's files (`/console`, which hold no data) stay open.
//!
//! Every REST request runs in a `rest` span with its request id (the client's `x-request-id` when it is plain, or
//! a new one), which is echoed in the response and sent on to the nodes ([`rvdb_proto::rpc`]).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;

use rvdb_core::error::excerpt;
use rvdb_proto::rpc::{self, ApiKeys, Refusal};

use crate::backup::BackupManager;
use crate::rest::{ApiError, ErrorCode};
use crate::{Gateway, McpServer, metrics, stdio};

#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Browser origins allowed to call `/mcp`; requests without `Origin` (non-browser clients) pass.
    pub allowed_origins: Vec<String>,
    /// `Host` values accepted; empty = any (for deployments behind a proxy or in containers).
    pub allowed_hosts: Vec<String>,
    /// API keys required on `/mcp`, `/v1` and `/metrics` (none configured = open).
    pub keys: ApiKeys,
    pub max_body_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["http://localhost:*".into(), "http://127.0.0.1:*".into(), "http://[::1]:*".into()],
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            keys: ApiKeys::default(),
            max_body_bytes: 64 << 20,
        }
    }
}

/// Serves `app` on `listener` with TCP_NODELAY on every connection: MCP responses are written as headers plus
/// body chunks (SSE), and Nagle's algorithm with delayed ACKs would hold each one back ~40 ms (measured).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use axum::serve::ListenerExt;
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await
}

/// [`serve`] over TLS: handshakes run in their own tasks (10 s limit), so a slow or silent client never holds
/// up the accept loop; failed handshakes are logged at debug level and dropped.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(TlsListener::new(listener, tls)?, app).with_graceful_shutdown(shutdown).await
}

type TlsConnection = (tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::net::SocketAddr);

struct TlsListener {
    ready: tokio::sync::mpsc::Receiver<TlsConnection>,
    local: std::net::SocketAddr,
    acceptor: tokio::task::JoinHandle<()>,
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl TlsListener {
    fn new(listener: tokio::net::TcpListener, tls: Arc<tokio_rustls::rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = tokio::sync::mpsc::channel::<TlsConnection>(64);
        let tls = tokio_rustls::TlsAcceptor::from(tls);
        let acceptor = tokio::spawn(async move {
            loop {
                let (tcp, addr) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let (tls, tx) = (tls.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(std::time::Duration::from_secs(10), tls.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, addr)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%addr, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%addr, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self { ready, local, acceptor })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept task is gone (only when the listener is being dropped): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[derive(Clone)]
struct AuthState {
    keys: Arc<ApiKeys>,
}

/// The axum router serving MCP and health. `shutdown` ends open MCP streams when cancelled.
pub fn router(
    gateway: Arc<Gateway>,
    backups: Arc<BackupManager>,
    options: &HttpOptions,
    shutdown: CancellationToken,
) -> Router {
    let mut config = StreamableHttpServerConfig::default()
        .with_allowed_origins(options.allowed_origins.clone())
        .with_max_request_body_bytes(options.max_body_bytes)
        .with_cancellation_token(shutdown);
    config = if options.allowed_hosts.is_empty() {
        config.disable_allowed_hosts()
    } else {
        config.with_allowed_hosts(options.allowed_hosts.clone())
    };
    if options.allowed_origins.is_empty() {
        config = config.enforce_origin_validation();
    }
    let rest = crate::rest::router(gateway.clone(), backups.clone());
    let mcp_gateway = gateway.clone();
    let service = StreamableHttpService::new(
        move || Ok(McpServer::new(mcp_gateway.clone(), backups.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let auth = AuthState { keys: Arc::new(options.keys.clone()) };
    let limit = BodyLimit(options.max_body_bytes);
    let origin =
        Arc::new(OriginPolicy { hosts: options.allowed_hosts.clone(), origins: options.allowed_origins.clone() });
    // Layers run outside-in: Host first (the 401's challenge and the protected-resource document are built from
    // it, so an unchecked one would be reflected to the caller), then auth (nothing is parsed for an
    // unauthenticated caller), then JSON checks. rmcp checks Host and Origin again inside.
    let mcp = Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(limit, require_json_rpc))
        .layer(axum::middleware::from_fn_with_state(auth.clone(), require_key_mcp))
        .layer(axum::middleware::from_fn_with_state(origin.clone(), check_host));
    let discovery = Router::new()
        .route("/.well-known/oauth-protected-resource", get(protected_resource))
        .route("/.well-known/oauth-protected-resource/mcp", get(protected_resource))
        .layer(axum::middleware::from_fn_with_state(origin.clone(), check_host));
    // Observation outermost, so refused requests are counted and carry a request id too. REST gets the same
    // Host (DNS rebinding) and Origin (cross-site requests from browsers) checks that rmcp applies to /mcp.
    let rest = rest
        .layer(axum::middleware::from_fn_with_state(auth.clone(), require_key_rest))
        .layer(axum::middleware::from_fn_with_state(origin.clone(), check_host_and_origin))
        .layer(axum::middleware::from_fn(observe_rest));
    // The console's files hold no data (what it shows comes from /v1 under the key): Host check only.
    let console = crate::console::router().layer(axum::middleware::from_fn_with_state(origin.clone(), check_host));
    let scrape = Router::new()
        .route("/metrics", get(serve_metrics))
        .layer(axum::middleware::from_fn_with_state(auth, require_key_rest))
        .layer(axum::middleware::from_fn_with_state(origin, check_host));
    Router::new()
        .merge(mcp)
        .merge(rest)
        .merge(console)
        .merge(scrape)
        .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/readyz", get(readyz).with_state(gateway))
        .merge(discovery)
}

/// `/metrics` (under `keys`) and `/healthz` alone: the HTTP listener of a storage node or index manager.
pub fn metrics_router(keys: ApiKeys) -> Router {
    let auth = AuthState { keys: Arc::new(keys) };
    Router::new()
        .route("/metrics", get(serve_metrics))
        .layer(axum::middleware::from_fn_with_state(auth, require_key_rest))
        .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
}

/// The URL clients reached us at, for the bearer challenge and the protected-resource document: built from
/// `Host` only after [`check_host`] accepted it, and only when it is a plain `host[:port]` (with any host
/// allowed, a value with quotes or a path must not end up inside the challenge).
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
        .filter(|a| !a.as_str().contains('@'))
        .map_or_else(|| "127.0.0.1".to_string(), |a| a.as_str().to_string());
    format!("http://{host}")
}

async fn protected_resource(headers: HeaderMap) -> Json<serde_json::Value> {
    let base = base_url(&headers);
    Json(serde_json::json!({
        "resource": format!("{base}/mcp"),
        "bearer_methods_supported": ["header"],
        "resource_name": "rvdb MCP gateway",
    }))
}

#[derive(Clone, Copy)]
struct BodyLimit(usize);

fn json_rpc_error(status: StatusCode, code: i64, message: String) -> Response {
    (status, Json(stdio::error_response(code, message))).into_response()
}

/// rmcp answers a body that is not JSON with a plain-text 415 and has no JSON-RPC batches; the spec wants a
/// JSON-RPC error. So POST bodies are checked here first, as stdio lines are ([`stdio::malformed`]): not JSON →
/// -32700 (parse error), an array (a batch) or a non-object → -32600 (invalid request). Too large → 413.
async fn require_json_rpc(State(limit): State<BodyLimit>, request: Request, next: Next) -> Response {
    if request.method() != axum::http::Method::POST {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, limit.0).await {
        Ok(b) => b,
        Err(_) => {
            return json_rpc_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                stdio::INVALID_REQUEST,
                format!("request body is larger than the limit of {} bytes", limit.0),
            );
        }
    };
    if let Some((code, message)) = stdio::malformed(&bytes) {
        return json_rpc_error(StatusCode::BAD_REQUEST, code, message);
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// A refusal as `body`, with the bearer challenge on 401.
fn refusal_response(refusal: Refusal, headers: &HeaderMap, body: impl IntoResponse) -> Response {
    let status = match refusal {
        Refusal::Unauthenticated => StatusCode::UNAUTHORIZED,
        Refusal::ReadOnly => StatusCode::FORBIDDEN,
    };
    let mut resp = (status, body).into_response();
    if refusal == Refusal::Unauthenticated {
        let base = base_url(headers);
        let challenge = format!(
            "Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource\", error=\"invalid_token\""
        );
        if let Ok(v) = HeaderValue::from_str(&challenge) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
    }
    resp
}

fn authorization(request: &Request) -> Option<&[u8]> {
    request.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes())
}

/// `/mcp`: any valid key passes; what a read-only key may call is decided per tool by [`McpServer`], which finds
/// the [`rpc::Access`] in the request's extensions.
async fn require_key_mcp(State(auth): State<AuthState>, mut request: Request, next: Next) -> Response {
    match auth.keys.check(authorization(&request)) {
        Ok(access) => {
            request.extensions_mut().insert(access);
            next.run(request).await
        }
        Err(refusal) => refusal_response(
            refusal,
            request.headers(),
            Json(serde_json::json!({"error": "unauthorized", "message": refusal.message()})),
        ),
    }
}

async fn require_key_rest(State(auth): State<AuthState>, mut request: Request, next: Next) -> Response {
    if request.uri().path() == "/openapi.json" {
        return next.run(request).await;
    }
    let writes = !crate::ops::rest_reads(request.method(), request.uri().path());
    match auth.keys.authorize(authorization(&request), writes) {
        Ok(access) => {
            request.extensions_mut().insert(access);
            next.run(request).await
        }
        Err(refusal) => {
            let (status, code) = match refusal {
                Refusal::Unauthenticated => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthenticated),
                Refusal::ReadOnly => (StatusCode::FORBIDDEN, ErrorCode::PermissionDenied),
            };
            refusal_response(refusal, request.headers(), ApiError::new(status, code, refusal.message()))
        }
    }
}

struct OriginPolicy {
    /// Accepted `Host` names (without port); empty = any.
    hosts: Vec<String>,
    /// Accepted browser origins (`scheme://host:port`, `:*` = any port); requests without `Origin` pass.
    origins: Vec<String>,
}

fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    allowed.iter().any(|pattern| match pattern.strip_suffix(":*") {
        Some(prefix) => {
            origin == prefix
                || origin.strip_prefix(prefix).is_some_and(|rest| {
                    rest.strip_prefix(':')
                        .is_some_and(|port| !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()))
                })
        }
        None => origin == pattern,
    })
}

fn host_name(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    host.rsplit_once(':')
        .map_or(host, |(name, port)| if port.bytes().all(|b| b.is_ascii_digit()) { name } else { host })
}

const BAD_HOST: &str = "the Host header is not an allowed host (see --allowed-hosts)";

impl OriginPolicy {
    fn host_allowed(&self, headers: &HeaderMap) -> bool {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).map(host_name);
        self.hosts.is_empty() || host.is_some_and(|h| self.hosts.iter().any(|a| a.eq_ignore_ascii_case(h)))
    }
}

/// `/mcp` and the protected-resource document: a `Host` that is not allowed gets 403 before anything else (as
/// REST's [`check_host_and_origin`] does), so no answer is built from it.
async fn check_host(State(policy): State<Arc<OriginPolicy>>, request: Request, next: Next) -> Response {
    if !policy.host_allowed(request.headers()) {
        let body = Json(serde_json::json!({"error": "forbidden", "message": BAD_HOST}));
        return (StatusCode::FORBIDDEN, body).into_response();
    }
    next.run(request).await
}

async fn check_host_and_origin(State(policy): State<Arc<OriginPolicy>>, request: Request, next: Next) -> Response {
    let forbidden =
        |message: String| ApiError::new(StatusCode::FORBIDDEN, ErrorCode::PermissionDenied, message).into_response();
    if !policy.host_allowed(request.headers()) {
        return forbidden(BAD_HOST.into());
    }
    if let Some(origin) = request.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !origin_allowed(origin, &policy.origins) {
            return forbidden(format!("origin {:?} is not allowed (see --allowed-origins)", excerpt(origin)));
        }
    }
    next.run(request).await
}

/// The store a REST path names (`/v1/stores/{store}/…`), for metrics and spans.
fn store_of_path(path: &str) -> &str {
    path.strip_prefix("/v1/stores/").map(|rest| rest.split('/').next().unwrap_or("")).unwrap_or("")
}

fn outcome_of(status: StatusCode) -> &'static str {
    match status.as_u16() {
        200..=299 => "ok",
        400 | 413 | 415 | 422 => "invalid_argument",
        401 => "unauthenticated",
        403 => "permission_denied",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "already_exists",
        429 => "limit_reached",
        507 => "insufficient_storage",
        499 => "cancelled",
        502 => "backend_error",
        503 | 504 => "unavailable",
        _ => "error",
    }
}

/// Request id, span and metrics for every REST request.
async fn observe_rest(request: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let route = request
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let operation = format!("{} {route}", request.method());
    let store = store_of_path(request.uri().path()).to_string();
    let request_id = request
        .headers()
        .get(rpc::REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(rpc::sanitize_request_id)
        .unwrap_or_else(rpc::new_request_id);
    let span = tracing::info_span!("rest", op = %operation, store = %store, request_id = %request_id);
    let mut response =
        tracing::Instrument::instrument(rpc::REQUEST_ID.scope(request_id.clone(), next.run(request)), span).await;
    let outcome = outcome_of(response.status());
    metrics::record("rest", &operation, &store, outcome, started.elapsed());
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(rpc::REQUEST_ID_HEADER, v);
    }
    response
}

async fn serve_metrics() -> Response {
    let (content_type, body) = metrics::encode();
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

async fn readyz(State(gateway): State<Arc<Gateway>>) -> Response {
    let reasons = gateway.unready_reasons();
    if reasons.is_empty() {
        (StatusCode::OK, Json(serde_json::json!({"status": "ready"}))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(serde_json::json!({"status": "not_ready", "reasons": reasons})))
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    #[test]
    fn rest_read_classification() {
        assert!(crate::ops::rest_reads(&Method::GET, "/v1/stores"));
        assert!(crate::ops::rest_reads(&Method::POST, "/v1/stores/a/search"));
        assert!(crate::ops::rest_reads(&Method::POST, "/v1/stores/a/points/get"));
        assert!(!crate::ops::rest_reads(&Method::POST, "/v1/stores"));
        assert!(!crate::ops::rest_reads(&Method::PUT, "/v1/stores/a/points"));
        assert!(!crate::ops::rest_reads(&Method::DELETE, "/v1/stores/a"));
        assert_eq!(store_of_path("/v1/stores/docs/points/x"), "docs");
        assert_eq!(store_of_path("/v1/backups"), "");
        let allowed = vec!["http://localhost:*".to_string(), "https://app.example".to_string()];
        assert!(origin_allowed("http://localhost:3000", &allowed));
        assert!(origin_allowed("https://app.example", &allowed));
        assert!(!origin_allowed("http://localhost.evil:3000", &allowed));
        assert!(!origin_allowed("http://evil.example", &allowed));
        assert_eq!(host_name("127.0.0.1:8080"), "127.0.0.1");
        assert_eq!(host_name("[::1]:8080"), "::1");
        assert_eq!(host_name("localhost"), "localhost");
    }
}
