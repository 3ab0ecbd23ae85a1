//! The gateway's HTTP listener: MCP over Streamable HTTP at `/mcp` (rmcp's tower service inside axum), plus
//! `/healthz` and the OAuth protected-resource metadata that bearer-token clients discover.
//!
//! Security, per the MCP spec: `Origin` is validated against an allow-list (rmcp leaves it off by default; we
//! always set one: loopback origins unless configured), `Host` is validated (DNS rebinding), the listener binds
//! loopback by default, request bodies are capped, and an optional bearer token guards `/mcp` (401 with
//! `WWW-Authenticate: Bearer resource_metadata=…`). The token is compared in constant time and never logged or
//! forwarded to the nodes.

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

use crate::backup::BackupManager;
use crate::{Gateway, McpServer};

#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Browser origins allowed to call `/mcp`; requests without `Origin` (non-browser clients) pass.
    pub allowed_origins: Vec<String>,
    /// `Host` values accepted; empty = any (for deployments behind a proxy or in containers).
    pub allowed_hosts: Vec<String>,
    /// When set, `/mcp` needs `Authorization: Bearer <token>`.
    pub bearer_token: Option<String>,
    pub max_body_bytes: usize,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            allowed_origins: vec!["http://localhost:*".into(), "http://127.0.0.1:*".into(), "http://[::1]:*".into()],
            allowed_hosts: vec!["localhost".into(), "127.0.0.1".into(), "::1".into()],
            bearer_token: None,
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

#[derive(Clone)]
struct AuthState {
    token: Option<Arc<str>>,
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
    let mcp_gateway = gateway.clone();
    let service = StreamableHttpService::new(
        move || Ok(McpServer::new(mcp_gateway.clone(), backups.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let auth = AuthState { token: options.bearer_token.as_deref().map(Arc::from) };
    let limit = BodyLimit(options.max_body_bytes);
    // Layers run outside-in: auth first (nothing is parsed for an unauthenticated caller), then JSON checks.
    let mcp = Router::new()
        .nest_service("/mcp", service)
        .layer(axum::middleware::from_fn_with_state(limit, require_json_rpc))
        .layer(axum::middleware::from_fn_with_state(auth, require_bearer));
    Router::new()
        .merge(mcp)
        .route("/healthz", get(|| async { Json(serde_json::json!({"status": "ok"})) }))
        .route("/.well-known/oauth-protected-resource", get(protected_resource))
        .route("/.well-known/oauth-protected-resource/mcp", get(protected_resource))
}

fn base_url(headers: &HeaderMap) -> String {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("127.0.0.1");
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
    (status, Json(serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}})))
        .into_response()
}

/// rmcp answers a body that is not JSON with a plain-text 415 and has no JSON-RPC batches; the spec wants a
/// JSON-RPC error. So POST bodies are checked here first: not JSON → -32700 (parse error), an array (a batch,
/// which we do not advertise: no 2025-03-26) or a non-object → -32600 (invalid request). Too large → 413.
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
                -32600,
                format!("request body is larger than the limit of {} bytes", limit.0),
            );
        }
    };
    match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Err(e) => return json_rpc_error(StatusCode::BAD_REQUEST, -32700, format!("Parse error: {e}")),
        Ok(serde_json::Value::Array(_)) => {
            return json_rpc_error(StatusCode::BAD_REQUEST, -32600, "JSON-RPC batches are not supported".into());
        }
        Ok(serde_json::Value::Object(_)) => {}
        Ok(_) => {
            return json_rpc_error(
                StatusCode::BAD_REQUEST,
                -32600,
                "Invalid Request: expected a JSON-RPC object".into(),
            );
        }
    }
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes))).await
}

/// Constant-time comparison, so the token cannot be guessed byte by byte from response times.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn require_bearer(State(auth): State<AuthState>, request: Request, next: Next) -> Response {
    let Some(expected) = &auth.token else { return next.run(request).await };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    if presented.is_some_and(|t| same(t.trim().as_bytes(), expected.as_bytes())) {
        return next.run(request).await;
    }
    let base = base_url(request.headers());
    let challenge =
        format!("Bearer resource_metadata=\"{base}/.well-known/oauth-protected-resource\", error=\"invalid_token\"");
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        Json(serde_json::json!({"error": "unauthorized", "message": "a valid bearer token is required: Authorization: Bearer <token>"})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}
