//! How rvdb's services speak gRPC beyond the generated stubs: API keys, request ids, and per-method metrics —
//! the same for the storage node, the index manager and the gateway's own gRPC API, on both ends of a call.
//!
//! - **Keys.** Every listener accepts `authorization: Bearer <key>` against [`ApiKeys`]: read-write keys may call
//!   anything, read-only keys only the methods [`is_read_only_method`] lists. A missing or unknown key is
//!   `UNAUTHENTICATED`, a read-only key on a write `PERMISSION_DENIED`; both are answered before the request body
//!   is read, so a refused call changes nothing. `grpc.health.v1` stays open: orchestrators probe it without keys.
//!   Keys are compared in constant time and never logged.
//! - **Outgoing calls.** [`Channel`] wraps tonic's channel and adds this process's own key ([`set_client_key`]:
//!   the first read-write key it was configured with — never a key a client presented to the gateway, which the
//!   MCP spec forbids forwarding) and the current request id ([`REQUEST_ID`]), so one id follows a tool call from
//!   the gateway to every node it reaches.
//! - **Metrics and spans.** [`ServerLayer`] counts requests per service, method and status code
//!   (`rvdb_grpc_server_requests_total`), times them (`rvdb_grpc_server_request_duration_seconds`) and runs each
//!   one inside a `grpc` span carrying the method and the request id (taken from `x-request-id`, or made here).
//!   The status of a streaming call is the one sent with the response headers (an error in mid-stream counts as
//!   `OK`: the call was accepted).

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::task::{Context, Poll};
use std::time::Instant;

use prometheus::{HistogramVec, IntCounterVec, register_histogram_vec, register_int_counter_vec};
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderValue};
use tower::{Layer, Service};
use tracing::Instrument;

/// The metadata key that carries a request id between services (and the HTTP header the gateway honours).
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    /// The id of the request being served by this task; outgoing calls made by the task carry it.
    pub static REQUEST_ID: Arc<str>;
}

/// The current task's request id, if it serves one.
pub fn current_request_id() -> Option<Arc<str>> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// `fut`, running with the current task's request id: for futures handed to `tokio::spawn` / `JoinSet`, which do
/// not inherit task-locals.
pub fn in_current_request<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let id = current_request_id();
    async move {
        match id {
            Some(id) => REQUEST_ID.scope(id, fut).await,
            None => fut.await,
        }
    }
}

/// A fresh request id: unique within the process, and across processes with high probability (time + counter).
pub fn new_request_id() -> Arc<str> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static START: LazyLock<u64> = LazyLock::new(|| {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        (now.as_nanos() as u64) ^ ((std::process::id() as u64) << 40)
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    Arc::from(format!("{:012x}{:06x}", *START & 0xffff_ffff_ffff, n & 0xff_ffff))
}

/// Accepts a client-supplied request id only if it is short and plain (it goes into logs and metadata).
pub fn sanitize_request_id(raw: &str) -> Option<Arc<str>> {
    let ok = !raw.is_empty()
        && raw.len() <= 64
        && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    ok.then(|| Arc::from(raw))
}

/// What a presented key allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    ReadOnly,
}

/// Why a request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No key, or a key that is not configured: 401 / `UNAUTHENTICATED`.
    Unauthenticated,
    /// A read-only key on a write: 403 / `PERMISSION_DENIED`.
    ReadOnly,
}

impl Refusal {
    pub fn message(self) -> &'static str {
        match self {
            Refusal::Unauthenticated => "a valid API key is required: Authorization: Bearer <key>",
            Refusal::ReadOnly => "this API key is read-only; the operation needs a read-write key",
        }
    }

    pub fn status(self) -> tonic::Status {
        match self {
            Refusal::Unauthenticated => tonic::Status::unauthenticated(self.message()),
            Refusal::ReadOnly => tonic::Status::permission_denied(self.message()),
        }
    }
}

/// The API keys a listener accepts. With none configured, authentication is off and every caller is read-write.
#[derive(Clone, Default)]
pub struct ApiKeys {
    read_write: Vec<Box<[u8]>>,
    read_only: Vec<Box<[u8]>>,
}

impl std::fmt::Debug for ApiKeys {
    // Never prints the keys themselves.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeys")
            .field("read_write", &self.read_write.len())
            .field("read_only", &self.read_only.len())
            .finish()
    }
}

impl ApiKeys {
    pub fn new(read_write: impl IntoIterator<Item = String>, read_only: impl IntoIterator<Item = String>) -> Self {
        let keep = |k: String| (!k.is_empty()).then(|| k.into_bytes().into_boxed_slice());
        Self {
            read_write: read_write.into_iter().filter_map(keep).collect(),
            read_only: read_only.into_iter().filter_map(keep).collect(),
        }
    }

    pub fn enabled(&self) -> bool {
        !self.read_write.is_empty() || !self.read_only.is_empty()
    }

    /// The key this process presents to other rvdb services.
    pub fn client_key(&self) -> Option<&[u8]> {
        self.read_write.first().map(|k| &k[..])
    }

    /// The access an `Authorization` header value grants (`None` header = no key presented).
    pub fn check(&self, authorization: Option<&[u8]>) -> Result<Access, Refusal> {
        if !self.enabled() {
            return Ok(Access::ReadWrite);
        }
        let Some(key) = authorization.and_then(bearer_token) else { return Err(Refusal::Unauthenticated) };
        // Every configured key is compared, so timing does not tell which list (or position) matched.
        let rw = self.read_write.iter().fold(false, |hit, k| hit | constant_time_eq(k, key));
        let ro = self.read_only.iter().fold(false, |hit, k| hit | constant_time_eq(k, key));
        match (rw, ro) {
            (true, _) => Ok(Access::ReadWrite),
            (false, true) => Ok(Access::ReadOnly),
            _ => Err(Refusal::Unauthenticated),
        }
    }

    /// [`check`](Self::check), then refuse a read-only key when the operation writes.
    pub fn authorize(&self, authorization: Option<&[u8]>, writes: bool) -> Result<Access, Refusal> {
        let access = self.check(authorization)?;
        if writes && access == Access::ReadOnly {
            return Err(Refusal::ReadOnly);
        }
        Ok(access)
    }
}

fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let rest = value.strip_prefix(b"Bearer ").or_else(|| value.strip_prefix(b"bearer "))?;
    let start = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    let end = rest.iter().rposition(|b| !b.is_ascii_whitespace())? + 1;
    Some(&rest[start..end])
}

/// Constant-time equality, so a key cannot be guessed byte by byte from response times.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Node and manager gRPC methods a read-only key may call: everything that does not change stored data. (The
/// gateway's own services decide by its operation table, `rvdb_gateway::ops`.)
pub fn is_read_only_method(path: &str) -> bool {
    const READS: &[&str] = &[
        "/rvdb.v1.StorageNode/ListShards",
        "/rvdb.v1.StorageNode/Get",
        "/rvdb.v1.StorageNode/Search",
        "/rvdb.v1.StorageNode/Scan",
        "/rvdb.v1.StorageNode/Count",
        "/rvdb.v1.StorageNode/TextStats",
        "/rvdb.v1.StorageNode/KeywordSearch",
        "/rvdb.v1.StorageNode/Stats",
        "/rvdb.v1.StorageNode/Changes",
        "/rvdb.v1.StorageNode/Digest",
        "/rvdb.v1.IndexManager/ListStores",
        "/rvdb.v1.IndexManager/DescribeStore",
        "/rvdb.v1.IndexManager/GetRoutingTable",
        "/rvdb.v1.IndexManager/WatchRoutingTable",
    ];
    READS.contains(&path) || path.starts_with("/grpc.health.v1.Health/")
}

static CLIENT_KEY: OnceLock<HeaderValue> = OnceLock::new();

/// Sets the key every [`Channel`] of this process presents (once; later calls are ignored). A key that is not a
/// valid header value is refused here rather than on every call.
pub fn set_client_key(key: &[u8]) -> Result<(), String> {
    let mut value = HeaderValue::from_bytes(&[b"Bearer ".as_slice(), key].concat())
        .map_err(|_| "the API key must be printable ASCII without spaces".to_string())?;
    value.set_sensitive(true);
    let _ = CLIENT_KEY.set(value);
    Ok(())
}

/// The `Authorization` value this process presents to other rvdb services (its first read-write key), if any:
/// for its HTTP clients (the CLI), as [`Channel`] adds it to gRPC calls.
pub fn client_authorization() -> Option<HeaderValue> {
    CLIENT_KEY.get().cloned()
}

/// A channel to another rvdb service that adds this process's key and the current request id to every call.
#[derive(Debug, Clone)]
pub struct Channel {
    inner: tonic::transport::Channel,
}

impl Channel {
    pub fn new(inner: tonic::transport::Channel) -> Self {
        Self { inner }
    }
}

type BoxFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl Service<http::Request<Body>> for Channel {
    type Response = http::Response<Body>;
    type Error = tonic::transport::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Service::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        if let Some(key) = CLIENT_KEY.get() {
            request.headers_mut().insert(http::header::AUTHORIZATION, key.clone());
        }
        if let Some(id) = current_request_id()
            && let Ok(v) = HeaderValue::from_str(&id)
        {
            request.headers_mut().insert(REQUEST_ID_HEADER, v);
        }
        Box::pin(Service::call(&mut self.inner, request))
    }
}

static REQUESTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        "rvdb_grpc_server_requests_total",
        "gRPC requests served, by service, method and status code.",
        &["service", "method", "code"]
    )
    .expect("metric registered once")
});

static DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        "rvdb_grpc_server_request_duration_seconds",
        "Time to the response headers of gRPC requests, by service and method.",
        &["service", "method"],
        vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]
    )
    .expect("metric registered once")
});

/// The tower layer every rvdb gRPC server runs: authentication, request id + span, metrics.
#[derive(Debug, Clone)]
pub struct ServerLayer {
    keys: Arc<ApiKeys>,
    /// Which methods a read-only key may call.
    reads: fn(&str) -> bool,
}

impl ServerLayer {
    /// A layer for the node and manager services (reads: [`is_read_only_method`]).
    pub fn new(keys: ApiKeys) -> Self {
        Self { keys: Arc::new(keys), reads: is_read_only_method }
    }

    /// The same layer deciding read-only methods by `reads` (the gateway's operation table).
    pub fn with_reads(self, reads: fn(&str) -> bool) -> Self {
        Self { reads, ..self }
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = ServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ServerService { inner, keys: self.keys.clone(), reads: self.reads }
    }
}

#[derive(Debug, Clone)]
pub struct ServerService<S> {
    inner: S,
    keys: Arc<ApiKeys>,
    reads: fn(&str) -> bool,
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn split_path(path: &str) -> (&str, &str) {
    let trimmed = path.trim_start_matches('/');
    trimmed.split_once('/').unwrap_or((trimmed, ""))
}

fn code_label(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}

fn response_code<B>(response: &http::Response<B>) -> tonic::Code {
    response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map(tonic::Code::from_i32)
        .unwrap_or(tonic::Code::Ok)
}

impl<S> Service<http::Request<Body>> for ServerService<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let start = Instant::now();
        let path = request.uri().path().to_string();
        let request_id = request
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(sanitize_request_id)
            .unwrap_or_else(new_request_id);
        let open = path.starts_with("/grpc.health.v1.Health/");
        let authorization = request.headers().get(http::header::AUTHORIZATION).map(|v| v.as_bytes());
        let verdict =
            if open { Ok(Access::ReadWrite) } else { self.keys.authorize(authorization, !(self.reads)(&path)) };
        // The ready inner service is taken; a clone is left for the next call (tower's usual dance).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let span = tracing::info_span!("grpc", method = %path, request_id = %request_id);
        Box::pin(
            REQUEST_ID
                .scope(request_id, async move {
                    let (service, method) = split_path(&path);
                    let response = match verdict {
                        Err(refusal) => {
                            tracing::warn!(reason = refusal.message(), "request refused");
                            Ok(refusal.status().into_http::<Body>())
                        }
                        Ok(_) => inner.call(request).await,
                    };
                    if let Ok(r) = &response {
                        let code = code_label(response_code(r));
                        let elapsed = start.elapsed();
                        REQUESTS.with_label_values(&[service, method, code]).inc();
                        DURATION.with_label_values(&[service, method]).observe(elapsed.as_secs_f64());
                        tracing::debug!(code, elapsed_us = elapsed.as_micros() as u64, "rpc served");
                    }
                    response
                })
                .instrument(span),
        )
    }
}

/// Runs an in-process call to a service (`rvdb serve`'s gateway calling its node, see [`crate::api`]) the way
/// [`ServerLayer`] runs a gRPC one, minus the wire: in a `local` span with the method and the caller's request id
/// (a fresh one when it has none), ending with a debug event carrying the status code and the time taken. So a
/// request is traced into the node alike in both deployments. The gRPC metrics are not moved: no RPC happened.
pub async fn served_locally<T>(
    method: &'static str,
    call: impl Future<Output = Result<T, tonic::Status>>,
) -> Result<T, tonic::Status> {
    let start = Instant::now();
    let request_id = current_request_id().unwrap_or_else(new_request_id);
    let span = tracing::info_span!("local", method, request_id = %request_id);
    REQUEST_ID
        .scope(request_id, async move {
            let result = call.await;
            let code = code_label(result.as_ref().err().map_or(tonic::Code::Ok, tonic::Status::code));
            tracing::debug!(code, elapsed_us = start.elapsed().as_micros() as u64, "call served in process");
            result
        })
        .instrument(span)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_grant_the_right_access() {
        let keys = ApiKeys::new(["rw-key".to_string()], ["ro-key".to_string()]);
        assert_eq!(keys.check(Some(b"Bearer rw-key")), Ok(Access::ReadWrite));
        assert_eq!(keys.check(Some(b"bearer  ro-key ")), Ok(Access::ReadOnly));
        assert_eq!(keys.check(Some(b"Bearer other")), Err(Refusal::Unauthenticated));
        assert_eq!(keys.check(Some(b"rw-key")), Err(Refusal::Unauthenticated));
        assert_eq!(keys.check(None), Err(Refusal::Unauthenticated));
        assert_eq!(keys.authorize(Some(b"Bearer ro-key"), true), Err(Refusal::ReadOnly));
        assert_eq!(keys.authorize(Some(b"Bearer ro-key"), false), Ok(Access::ReadOnly));
        assert_eq!(keys.authorize(Some(b"Bearer rw-key"), true), Ok(Access::ReadWrite));
    }

    #[test]
    fn no_keys_means_open() {
        let keys = ApiKeys::new(Vec::<String>::new(), vec![String::new()]);
        assert!(!keys.enabled());
        assert_eq!(keys.authorize(None, true), Ok(Access::ReadWrite));
    }

    #[test]
    fn debug_never_prints_keys() {
        let keys = ApiKeys::new(["secret-1".to_string()], ["secret-2".to_string()]);
        assert!(!format!("{keys:?}").contains("secret"));
    }

    #[test]
    fn request_ids() {
        assert_ne!(new_request_id(), new_request_id());
        assert!(sanitize_request_id("abc-123_x.y:z").is_some());
        assert!(sanitize_request_id("").is_none());
        assert!(sanitize_request_id("a b").is_none());
        assert!(sanitize_request_id(&"x".repeat(65)).is_none());
    }

    #[test]
    fn read_only_methods() {
        assert!(is_read_only_method("/rvdb.v1.StorageNode/Search"));
        assert!(!is_read_only_method("/rvdb.v1.StorageNode/Upsert"));
        assert!(!is_read_only_method("/rvdb.v1.IndexManager/CreateStore"));
        assert!(is_read_only_method("/grpc.health.v1.Health/Check"));
        assert_eq!(split_path("/rvdb.v1.StorageNode/Search"), ("rvdb.v1.StorageNode", "Search"));
    }
}
