//! Starting rvdb's services: a storage node (open RocksDB, serve gRPC, fsync the WAL every `sync_interval`), the
//! index manager, the gateway (MCP over Streamable HTTP or stdio, REST, gRPC), or all three in one process
//! (`rvdb serve`, `rvdb mcp-stdio`). SIGINT / SIGTERM shut down cleanly: listeners stop, the WAL is fsynced.
//!
//! In `rvdb serve` the manager, node and gateway are the very code of a cluster, wired by direct calls instead
//! of gRPC ([`rvdb_gateway::embedded`]): one catalog, one placement, the same repair.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use rmcp::ServiceExt;
use rvdb_core::IndexKind;
use rvdb_gateway::backup::BackupManager;
use rvdb_gateway::embedded::{Embedded, LocalNodeSpec};
use rvdb_gateway::gateway::DEFAULT_WRITE_REQUEST_BYTES;
use rvdb_gateway::http::HttpOptions;
use rvdb_gateway::{Gateway, GatewayOptions, McpServer};
use rvdb_node::service::{DEFAULT_MAX_REQUEST_BYTES, StorageNodeService};
use rvdb_node::{Node, NodeOptions};
use tokio_util::sync::CancellationToken;

/// A secret from the command line or the environment; its `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.trim().to_string()))
    }
}

/// API keys, for every service of this process (global flags). Keys come from the environment or from files
/// (one per line, `#` comments), so that they stay out of `ps` and shell history; they are never logged.
#[derive(Debug, Clone, clap::Args)]
pub struct SecurityArgs {
    /// Read-write API keys (comma-separated) that every listener requires (`Authorization: Bearer <key>`): MCP,
    /// REST, /metrics, gRPC. The first one is also the key this process presents to other rvdb services.
    /// Without any key, authentication is off. Prefer RVDB_API_KEY or --api-key-file.
    #[arg(long = "api-key", env = "RVDB_API_KEY", hide_env_values = true, value_delimiter = ',', global = true)]
    pub api_keys: Vec<Secret>,
    /// File with read-write API keys, one per line.
    #[arg(long, alias = "api-token-file", env = "RVDB_API_KEY_FILE", global = true)]
    pub api_key_file: Option<PathBuf>,
    /// Read-only API keys (comma-separated): search, get, list, describe, stats; refused on writes (HTTP 403,
    /// gRPC PERMISSION_DENIED, MCP isError).
    #[arg(
        long = "read-only-api-key",
        env = "RVDB_READ_ONLY_API_KEY",
        hide_env_values = true,
        value_delimiter = ',',
        global = true
    )]
    pub read_only_api_keys: Vec<Secret>,
    /// File with read-only API keys, one per line.
    #[arg(long, env = "RVDB_READ_ONLY_API_KEY_FILE", global = true)]
    pub read_only_api_key_file: Option<PathBuf>,
    /// TLS certificate chain (PEM): with --tls-key-file, every listener of this process serves TLS (gRPC and
    /// HTTP) and its URLs become https://.
    #[arg(long, env = "RVDB_TLS_CERT_FILE", global = true, requires = "tls_key_file")]
    pub tls_cert_file: Option<PathBuf>,
    /// TLS private key (PEM) of --tls-cert-file.
    #[arg(long, env = "RVDB_TLS_KEY_FILE", global = true, requires = "tls_cert_file")]
    pub tls_key_file: Option<PathBuf>,
    /// CA bundle (PEM) trusted when calling https:// rvdb services (default: the system's roots).
    #[arg(long, env = "RVDB_TLS_CA_FILE", global = true)]
    pub tls_ca_file: Option<PathBuf>,
}

fn keys_from_file(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading key file {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

static API_KEYS: std::sync::OnceLock<rvdb_proto::rpc::ApiKeys> = std::sync::OnceLock::new();

impl SecurityArgs {
    /// Loads the keys once for the process and makes the first read-write key the one its clients present.
    pub fn install(&self) -> anyhow::Result<()> {
        let mut read_write: Vec<String> = self.api_keys.iter().map(|k| k.0.clone()).collect();
        // The earlier single-token setting (RVDB_API_TOKEN) still works.
        read_write.retain(|k| !k.is_empty());
        if read_write.is_empty()
            && let Ok(token) = std::env::var("RVDB_API_TOKEN")
        {
            read_write.push(token.trim().to_string());
        }
        if let Some(f) = &self.api_key_file {
            read_write.extend(keys_from_file(f)?);
        }
        let mut read_only: Vec<String> = self.read_only_api_keys.iter().map(|k| k.0.clone()).collect();
        if let Some(f) = &self.read_only_api_key_file {
            read_only.extend(keys_from_file(f)?);
        }
        read_write.retain(|k| !k.is_empty());
        read_only.retain(|k| !k.is_empty());
        for key in read_write.iter().chain(&read_only) {
            anyhow::ensure!(
                key.len() >= 8 && key.bytes().all(|b| b.is_ascii_graphic()),
                "API keys must be at least 8 printable ASCII characters without spaces"
            );
        }
        if let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_key_file) {
            let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
            let tls = rvdb_proto::tls::ServerTls::from_pem(read(cert)?, read(key)?).map_err(|e| anyhow::anyhow!(e))?;
            let _ = TLS.set(tls);
        }
        if let Some(ca) = &self.tls_ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            rvdb_proto::tls::set_client_ca(pem).map_err(|e| anyhow::anyhow!(e))?;
        }
        let keys = rvdb_proto::rpc::ApiKeys::new(read_write, read_only);
        if let Some(key) = keys.client_key() {
            rvdb_proto::rpc::set_client_key(key).map_err(|e| anyhow::anyhow!(e))?;
        }
        let _ = API_KEYS.set(keys);
        Ok(())
    }
}

static TLS: std::sync::OnceLock<rvdb_proto::tls::ServerTls> = std::sync::OnceLock::new();

fn tls() -> Option<&'static rvdb_proto::tls::ServerTls> {
    TLS.get()
}

/// The scheme of this process's URLs.
fn scheme() -> &'static str {
    if tls().is_some() { "https" } else { "http" }
}

/// A gRPC server builder, with TLS when configured.
fn grpc_server() -> anyhow::Result<tonic::transport::Server> {
    let builder = tonic::transport::Server::builder();
    Ok(match tls() {
        Some(tls) => builder.tls_config(tls.tonic()).context("TLS for gRPC")?,
        None => builder,
    })
}

/// Serves an HTTP router until `shutdown`, over TLS when configured.
async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let stop = async move { shutdown.cancelled().await };
    match tls() {
        Some(tls) => rvdb_gateway::http::serve_tls(listener, tls.rustls(), app, stop).await,
        None => rvdb_gateway::http::serve(listener, app, stop).await,
    }
}

/// The keys [`SecurityArgs::install`] loaded (none before it ran).
fn api_keys() -> rvdb_proto::rpc::ApiKeys {
    API_KEYS.get().cloned().unwrap_or_default()
}

/// The tower layer of every gRPC server of this process: keys, request ids, metrics.
fn grpc_layer() -> rvdb_proto::rpc::ServerLayer {
    rvdb_proto::rpc::ServerLayer::new(api_keys())
}

/// Serves `/metrics` (and `/healthz`) on `addr` for a node or manager, under the same API keys.
async fn serve_metrics(addr: SocketAddr, shutdown: CancellationToken) -> anyhow::Result<String> {
    let listener =
        tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding metrics address {addr}"))?;
    let url = format!("{}://{}/metrics", scheme(), listener.local_addr()?);
    let app = rvdb_gateway::http::metrics_router(api_keys());
    tokio::spawn(serve_http(listener, app, shutdown));
    tracing::info!(%url, "serving Prometheus metrics");
    Ok(url)
}

#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Where data lives (the seed's `persistence_dir`).
    #[arg(long = "persistence-dir", alias = "data-dir", env = "RVDB_PERSISTENCE_DIR", default_value = "data")]
    pub persistence_dir: PathBuf,
    /// gRPC listen address of the storage node (port 0 picks a free one).
    #[arg(long, env = "RVDB_GRPC_ADDR", default_value = "127.0.0.1:50051")]
    pub grpc_addr: SocketAddr,
    /// Milliseconds between WAL fsyncs (the seed's `sync_interval`); 0 = only on request.
    #[arg(long, env = "RVDB_SYNC_INTERVAL", default_value_t = 30_000)]
    pub sync_interval: u64,
    /// Largest accepted gRPC request, in bytes.
    #[arg(long, env = "RVDB_MAX_REQUEST_BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// RocksDB block cache shared by all stores, in MiB.
    #[arg(long, env = "RVDB_BLOCK_CACHE_MB", default_value_t = 256)]
    pub block_cache_mb: usize,
    /// The seed's `persistence_enabled`: false keeps everything in memory (lost on exit).
    #[arg(long, env = "RVDB_PERSISTENCE_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub persistence_enabled: bool,
    /// Compression of stored vectors: none, lz4, zstd, or auto (LZ4 upper levels, ZSTD bottom level).
    #[arg(long, env = "RVDB_COMPRESSION", default_value = "auto")]
    pub compression: rvdb_node::Compression,
    /// Free space (MiB) kept on the data directory's file system for RocksDB's flushes and compactions: below it
    /// the node refuses writes (RESOURCE_EXHAUSTED; REST 507) and keeps serving reads, and takes writes again as
    /// soon as space is freed. 0 turns the check off.
    #[arg(long, env = "RVDB_DISK_RESERVE_MB", default_value_t = rvdb_node::disk::DEFAULT_RESERVE_BYTES >> 20)]
    pub disk_reserve_mb: u64,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Address the MCP HTTP listener binds (loopback by default, as the MCP spec asks for local servers).
    #[arg(long, env = "RVDB_MCP_HOST", default_value = "127.0.0.1")]
    pub mcp_host: std::net::IpAddr,
    /// MCP port (the seed's `mcp_port`); MCP is served at http://<host>:<port>/mcp. 0 picks a free one.
    #[arg(long, env = "RVDB_MCP_PORT", default_value_t = 8080)]
    pub mcp_port: u16,
    /// Index of a store created without one (the seed's `default_index_type`): flat or hnsw.
    #[arg(long, env = "RVDB_DEFAULT_INDEX_TYPE", default_value = "flat")]
    pub default_index_type: IndexKind,
    /// Browser origins allowed on /mcp (comma-separated, with scheme; `:*` = any port).
    #[arg(
        long,
        env = "RVDB_ALLOWED_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:*,http://127.0.0.1:*,http://[::1]:*"
    )]
    pub allowed_origins: Vec<String>,
    /// Host header values accepted on /mcp (comma-separated); `*` accepts any (behind a proxy, in containers).
    #[arg(long, env = "RVDB_ALLOWED_HOSTS", value_delimiter = ',', default_value = "localhost,127.0.0.1,::1")]
    pub allowed_hosts: Vec<String>,
    /// gRPC address of the gateway's own API (`rvdb.v1.StoreService`, `rvdb.v1.BackupService`); port 0 picks a free one.
    #[arg(long, env = "RVDB_GATEWAY_GRPC_ADDR", default_value = "127.0.0.1:50052")]
    pub gateway_grpc_addr: SocketAddr,
    /// Largest accepted MCP request body, in bytes (larger ones get 413 with a JSON-RPC error).
    #[arg(long, env = "RVDB_MCP_MAX_BODY_BYTES", default_value_t = 64 << 20)]
    pub mcp_max_body_bytes: usize,
    /// Milliseconds a read (search, get, stats) waits for one replica before trying the next.
    #[arg(long, env = "RVDB_READ_TIMEOUT", default_value_t = 10_000)]
    pub read_timeout: u64,
    /// Milliseconds a write or admin call to a node may take.
    #[arg(long, env = "RVDB_CALL_TIMEOUT", default_value_t = 30_000)]
    pub call_timeout: u64,
    /// Largest write request the gateway sends to a node, in bytes: batches are split by size (and by 1000
    /// points), so this must stay below the nodes' --max-request-bytes. `rvdb serve` keeps it below its own.
    #[arg(long, env = "RVDB_WRITE_REQUEST_BYTES", default_value_t = DEFAULT_WRITE_REQUEST_BYTES)]
    pub write_request_bytes: usize,
    /// Test and drill knob: milliseconds added to the wall clock of the gateway's version clock (negative =
    /// behind), to run a gateway "in the past" against the versions already stored.
    #[arg(long, env = "RVDB_CLOCK_OFFSET_MS", default_value_t = 0, allow_negative_numbers = true, hide = true)]
    pub clock_offset_ms: i64,
    #[command(flatten)]
    pub embedding: EmbeddingArgs,
    #[command(flatten)]
    pub backup: BackupArgs,
}

/// The `openai` embedding provider: an OpenAI-compatible endpoint stores can be bound to.
#[derive(Debug, Clone, clap::Args)]
pub struct EmbeddingArgs {
    /// Base URL of an OpenAI-compatible embeddings API (OpenAI, Ollama, vLLM, TEI, LiteLLM, another rvdb):
    /// requests go to `<url>/v1/embeddings`. Unset: the `openai` provider is not offered. The API key is read
    /// from --openai-api-key-file, else RVDB_OPENAI_API_KEY, else OPENAI_API_KEY; it is never logged or stored.
    #[arg(long, env = "RVDB_OPENAI_BASE_URL")]
    pub openai_base_url: Option<String>,
    /// A file whose first line is the provider's API key.
    #[arg(long, env = "RVDB_OPENAI_API_KEY_FILE")]
    pub openai_api_key_file: Option<std::path::PathBuf>,
    /// Texts per request to the provider.
    #[arg(long, env = "RVDB_OPENAI_BATCH_SIZE", default_value_t = 128, value_parser = clap::value_parser!(u32).range(1..=2048))]
    pub openai_batch_size: u32,
    /// Requests to the provider in flight at once.
    #[arg(long, env = "RVDB_OPENAI_MAX_CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub openai_max_concurrency: u32,
    /// Milliseconds one request to the provider may take.
    #[arg(long, env = "RVDB_OPENAI_TIMEOUT", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub openai_timeout: u64,
    /// Retries of a request that timed out or got 429 / 5xx (exponential backoff from 200 ms).
    #[arg(long, env = "RVDB_OPENAI_RETRIES", default_value_t = 3)]
    pub openai_retries: u32,
}

impl EmbeddingArgs {
    /// The provider's settings, with the key read; `None` when no base URL is set.
    pub fn openai(&self) -> anyhow::Result<Option<rvdb_embed::OpenAiOptions>> {
        let Some(base_url) = &self.openai_base_url else { return Ok(None) };
        let api_key = rvdb_embed::ApiKey::from_file_or_env(
            self.openai_api_key_file.as_deref(),
            &["RVDB_OPENAI_API_KEY", "OPENAI_API_KEY"],
        )?;
        Ok(Some(rvdb_embed::OpenAiOptions {
            base_url: base_url.clone(),
            api_key,
            batch_size: self.openai_batch_size as usize,
            max_concurrency: self.openai_max_concurrency as usize,
            timeout: Duration::from_millis(self.openai_timeout),
            retries: self.openai_retries,
            ..rvdb_embed::OpenAiOptions::default()
        }))
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct BackupArgs {
    /// Where backups and JSON exports are written (the seed's `backup_dir`).
    #[arg(long, env = "RVDB_BACKUP_DIR", default_value = "backups")]
    pub backup_dir: PathBuf,
    /// Back up every store on a schedule (the seed's `auto_backup_enabled`).
    #[arg(long, env = "RVDB_AUTO_BACKUP_ENABLED", default_value_t = false, action = clap::ArgAction::Set)]
    pub auto_backup_enabled: bool,
    /// Milliseconds between automatic backups (the seed's `auto_backup_interval`).
    #[arg(long, env = "RVDB_AUTO_BACKUP_INTERVAL", default_value_t = 3_600_000)]
    pub auto_backup_interval: u64,
    /// Automatic backups kept per store; older ones are deleted (manual backups never are).
    #[arg(long, env = "RVDB_AUTO_BACKUP_RETENTION", default_value_t = 24)]
    pub auto_backup_retention: usize,
}

impl BackupArgs {
    /// The backup manager, after it cleaned up what a killed process left (temporaries, half-restored stores),
    /// with its schedule started when enabled.
    async fn start(&self, gateway: Arc<Gateway>, shutdown: CancellationToken) -> anyhow::Result<Arc<BackupManager>> {
        let manager = Arc::new(BackupManager::new(gateway, &self.backup_dir));
        let recovery = manager.recover().await;
        if recovery != Default::default() {
            tracing::warn!(temporaries = recovery.temporaries, dropped_stores = ?recovery.dropped_stores, "cleaned up after an interrupted run");
        }
        if self.auto_backup_enabled {
            anyhow::ensure!(self.auto_backup_interval >= 1000, "auto_backup_interval must be at least 1000 ms");
            anyhow::ensure!(self.auto_backup_retention >= 1, "auto_backup_retention must be at least 1");
            tracing::info!(every_ms = self.auto_backup_interval, keep = self.auto_backup_retention, dir = %self.backup_dir.display(), "automatic backups on");
            tokio::spawn(manager.clone().run_schedule(
                Duration::from_millis(self.auto_backup_interval),
                self.auto_backup_retention,
                shutdown,
            ));
        }
        Ok(manager)
    }
}

impl GatewayArgs {
    fn http_options(&self) -> anyhow::Result<HttpOptions> {
        let allowed_hosts =
            if self.allowed_hosts.iter().any(|h| h == "*") { Vec::new() } else { self.allowed_hosts.clone() };
        Ok(HttpOptions {
            allowed_origins: self.allowed_origins.clone(),
            allowed_hosts,
            keys: api_keys(),
            max_body_bytes: self.mcp_max_body_bytes,
        })
    }

    fn gateway_options(&self) -> anyhow::Result<GatewayOptions> {
        Ok(GatewayOptions {
            default_index: self.default_index_type,
            read_timeout: Duration::from_millis(self.read_timeout.max(1)),
            call_timeout: Duration::from_millis(self.call_timeout.max(1)),
            write_request_bytes: self.write_request_bytes,
            clock_offset_ms: self.clock_offset_ms,
            openai: self.embedding.openai()?,
            ..GatewayOptions::default()
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub node: NodeArgs,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    /// Most stores this deployment holds (the seed's `max_vector_stores`), enforced by the in-process manager.
    #[arg(long, env = "RVDB_MAX_VECTOR_STORES", default_value_t = 100)]
    pub max_vector_stores: usize,
    #[command(flatten)]
    pub drain: DrainArgs,
}

/// Graceful shutdown: what a process does between SIGTERM (or Ctrl-C) and exit.
#[derive(Debug, Clone, clap::Args)]
pub struct DrainArgs {
    /// Milliseconds between SIGTERM and closing the listeners. Meanwhile readiness says not ready (`/readyz` 503,
    /// gRPC health NOT_SERVING), a cluster node has left the routing table, and requests are still served, so load
    /// balancers and gateways move away before anything is refused. Requests in flight when the listeners close
    /// are finished; then the WAL is synced and the process exits.
    #[arg(long, env = "RVDB_DRAIN_GRACE_MS", default_value_t = 1000)]
    pub drain_grace_ms: u64,
}

impl DrainArgs {
    fn grace(&self) -> Duration {
        Duration::from_millis(self.drain_grace_ms.min(600_000))
    }
}

#[derive(Debug, clap::Args)]
pub struct GatewayCommand {
    /// The index manager's gRPC URL: the gateway follows its routing table (catalog, placement and limits are
    /// the manager's).
    #[arg(long, env = "RVDB_MANAGER")]
    pub manager: String,
    #[command(flatten)]
    pub gateway: GatewayArgs,
    #[command(flatten)]
    pub drain: DrainArgs,
}

#[derive(Debug, clap::Args)]
pub struct NodeCommand {
    #[command(flatten)]
    pub node: NodeArgs,
    /// The index manager's gRPC URL: the node joins that cluster (registers, heartbeats, takes catch-up
    /// commands). Without it the node stands alone.
    #[arg(long, env = "RVDB_MANAGER")]
    pub manager: Option<String>,
    /// This node's id in the cluster; default: one generated on first start and kept in the data directory.
    #[arg(long, env = "RVDB_NODE_ID")]
    pub node_id: Option<String>,
    /// The URL others reach this node's gRPC at (default: http://<bound address>); needed when binding 0.0.0.0.
    #[arg(long, env = "RVDB_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Address of the Prometheus `/metrics` listener (off unless set).
    #[arg(long, env = "RVDB_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    #[command(flatten)]
    pub drain: DrainArgs,
}

#[derive(Debug, clap::Args)]
pub struct ManagerArgs {
    /// Where the catalog lives.
    #[arg(long = "persistence-dir", alias = "data-dir", env = "RVDB_PERSISTENCE_DIR", default_value = "manager-data")]
    pub persistence_dir: PathBuf,
    /// gRPC listen address of the index manager (port 0 picks a free one).
    #[arg(long, env = "RVDB_GRPC_ADDR", default_value = "127.0.0.1:50060")]
    pub grpc_addr: SocketAddr,
    /// Milliseconds between node heartbeats.
    #[arg(long, env = "RVDB_HEARTBEAT_INTERVAL", default_value_t = 1_000)]
    pub heartbeat_interval: u64,
    /// Milliseconds without a heartbeat after which a node is down.
    #[arg(long, env = "RVDB_NODE_TIMEOUT", default_value_t = 5_000)]
    pub node_timeout: u64,
    /// Most stores the cluster holds (the seed's `max_vector_stores`).
    #[arg(long, env = "RVDB_MAX_VECTOR_STORES", default_value_t = 100)]
    pub max_vector_stores: usize,
    /// Milliseconds of versions before a returning replica's newest that its catch-up copies again (covers
    /// writes in flight and gateway clock skew).
    #[arg(long, env = "RVDB_CATCH_UP_MARGIN", default_value_t = 60_000)]
    pub catch_up_margin: u64,
    /// Milliseconds between two anti-entropy rounds, which compare every shard's replicas bucket by bucket and
    /// repair what differs (0 = off).
    #[arg(long, env = "RVDB_ANTI_ENTROPY_INTERVAL", default_value_t = 60_000)]
    pub anti_entropy_interval: u64,
    /// Milliseconds of pause between two shards in an anti-entropy round (its rate limit).
    #[arg(long, env = "RVDB_ANTI_ENTROPY_PAUSE", default_value_t = 100)]
    pub anti_entropy_pause: u64,
    /// When a new storage node joins, move replicas to it until nodes hold balanced replica counts (shard
    /// transfers, one at a time, while the cluster serves). `false`: only on `rvdb rebalance`.
    #[arg(long, env = "RVDB_REBALANCE_ON_JOIN", default_value_t = true, action = clap::ArgAction::Set)]
    pub rebalance_on_join: bool,
    /// Shard transfers a rebalance (on join or `rvdb rebalance`) runs at a time, of different shards.
    #[arg(long, env = "RVDB_MAX_PARALLEL_TRANSFERS", default_value_t = 2)]
    pub max_parallel_transfers: usize,
    /// Address of the Prometheus `/metrics` listener (off unless set).
    #[arg(long, env = "RVDB_METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,
}

#[derive(Debug, clap::Args)]
pub struct McpStdioArgs {
    /// A cluster's index manager (gRPC URL). Without it, an embedded deployment on --persistence-dir (as
    /// `rvdb serve`: manager, node and gateway in this process).
    #[arg(long, env = "RVDB_MANAGER")]
    pub manager: Option<String>,
    #[command(flatten)]
    pub node: NodeArgs,
    /// Most stores this deployment holds (the seed's `max_vector_stores`).
    #[arg(long, env = "RVDB_MAX_VECTOR_STORES", default_value_t = 100)]
    pub max_vector_stores: usize,
    /// Index of a store created without one (the seed's `default_index_type`): flat or hnsw.
    #[arg(long, env = "RVDB_DEFAULT_INDEX_TYPE", default_value = "flat")]
    pub default_index_type: IndexKind,
    #[command(flatten)]
    pub embedding: EmbeddingArgs,
    #[command(flatten)]
    pub backup: BackupArgs,
}

/// A running storage node.
struct RunningNode {
    node: Arc<Node>,
    url: String,
    health: tonic_health::server::HealthReporter,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

async fn start_node(args: &NodeArgs, shutdown: CancellationToken) -> anyhow::Result<RunningNode> {
    let mut options = NodeOptions::new(&args.persistence_dir);
    options.block_cache_bytes = args.block_cache_mb << 20;
    options.persistence = args.persistence_enabled;
    options.compression = args.compression;
    options.index = crate::index_options();
    options.disk_reserve_bytes = args.disk_reserve_mb << 20;
    if !args.persistence_enabled {
        tracing::warn!("persistence_enabled=false: data lives in memory only and is lost when rvdb stops");
    }
    let started = std::time::Instant::now();
    let node = tokio::task::spawn_blocking(move || Node::open(&options))
        .await?
        .with_context(|| format!("opening data in {}", args.persistence_dir.display()))?;
    let node = Arc::new(node);
    tracing::info!(dir = %args.persistence_dir.display(), elapsed_ms = started.elapsed().as_millis() as u64, "storage opened");
    let listener = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC address {}", args.grpc_addr))?;
    let addr = listener.local_addr()?;
    if args.sync_interval > 0 {
        let (node, every, stop) = (node.clone(), Duration::from_millis(args.sync_interval), shutdown.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = stop.cancelled() => return,
                }
                let node = node.clone();
                if let Ok(Err(e)) = tokio::task::spawn_blocking(move || node.sync_wal()).await {
                    tracing::error!(error = %e, "periodic WAL sync failed");
                }
            }
        });
    }
    let service = StorageNodeService::new(node.clone()).into_server(args.max_request_bytes);
    rvdb_node::metrics::register(&node);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    health.set_serving::<rvdb_proto::v1::storage_node_server::StorageNodeServer<StorageNodeService>>().await;
    tracing::info!(%addr, "storage node serving gRPC");
    let server = tokio::spawn(
        grpc_server()?
            .layer(grpc_layer())
            .add_service(health_service)
            .add_service(service)
            .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned()),
    );
    Ok(RunningNode { node, url: format!("{}://{addr}", scheme()), health, server })
}

impl RunningNode {
    /// Readiness off: gRPC health answers NOT_SERVING (the listener still serves).
    async fn drain(&self) {
        self.health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
        self.health
            .set_not_serving::<rvdb_proto::v1::storage_node_server::StorageNodeServer<StorageNodeService>>()
            .await;
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.server.await??;
        let node = self.node;
        tokio::task::spawn_blocking(move || node.sync_wal()).await??;
        Ok(())
    }
}

/// A running gateway: MCP over HTTP and its gRPC API.
struct RunningGateway {
    gateway: Arc<Gateway>,
    health: tonic_health::server::HealthReporter,
    mcp_url: String,
    grpc_url: String,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    grpc: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
}

impl RunningGateway {
    /// Readiness off: `/readyz` answers 503 and gRPC health NOT_SERVING (both listeners still serve).
    async fn drain(&self) {
        self.gateway.drain();
        self.health.set_service_status("", tonic_health::ServingStatus::NotServing).await;
    }

    async fn wait(self) -> anyhow::Result<()> {
        self.http.await??;
        self.grpc.await??;
        Ok(())
    }
}

/// Serves `gateway` over HTTP (MCP, REST) and gRPC.
async fn start_gateway(
    gateway: Arc<Gateway>,
    args: &GatewayArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<RunningGateway> {
    let http = args.http_options()?;
    let listener = tokio::net::TcpListener::bind((args.mcp_host, args.mcp_port))
        .await
        .with_context(|| format!("binding MCP address {}:{}", args.mcp_host, args.mcp_port))?;
    let addr = listener.local_addr()?;
    let backups = args.backup.start(gateway.clone(), shutdown.child_token()).await?;
    let grpc_listener = tokio::net::TcpListener::bind(args.gateway_grpc_addr)
        .await
        .with_context(|| format!("binding gateway gRPC address {}", args.gateway_grpc_addr))?;
    let grpc_url = format!("{}://{}", scheme(), grpc_listener.local_addr()?);
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    let grpc = tokio::spawn(
        grpc_server()?
            .layer(grpc_layer().with_reads(rvdb_gateway::ops::grpc_reads))
            .add_service(health_service)
            .add_service(rvdb_gateway::grpc::BackupGrpc::new(backups.clone()).into_server())
            .add_service(rvdb_gateway::grpc::StoreGrpc::new(gateway.clone()).into_server(args.mcp_max_body_bytes))
            .serve_with_incoming_shutdown(incoming(grpc_listener), shutdown.clone().cancelled_owned()),
    );
    let app = rvdb_gateway::http::router(gateway.clone(), backups, &http, shutdown.child_token());
    let server = tokio::spawn(serve_http(listener, app, shutdown));
    let mcp_url = format!("{}://{addr}/mcp", scheme());
    tracing::info!(%mcp_url, %grpc_url, auth = http.keys.enabled(), "gateway serving MCP (Streamable HTTP) and gRPC");
    Ok(RunningGateway { gateway, health, mcp_url, grpc_url, http: server, grpc })
}

/// The manager, node and gateway of one process (`rvdb serve`, `rvdb mcp-stdio`), on `node`'s data directory:
/// the catalog lives in `<persistence_dir>/manager`, the node id in `<persistence_dir>/node_id`.
async fn embedded(
    node: &RunningNode,
    args: &NodeArgs,
    max_vector_stores: usize,
    options: GatewayOptions,
) -> anyhow::Result<Embedded> {
    let id = persistent_node_id(&args.persistence_dir, args.persistence_enabled)?;
    let mut manager = rvdb_manager::ManagerOptions::new(args.persistence_dir.join("manager"));
    manager.max_vector_stores = max_vector_stores;
    manager.persistence = args.persistence_enabled;
    let spec = LocalNodeSpec { id, url: node.url.clone(), node: node.node.clone() };
    Embedded::start(manager, vec![spec], options).await.context("starting the in-process index manager and gateway")
}

/// `rvdb serve`: manager + node + gateway in one process.
pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let (signal, shutdown) = (signal_token(), CancellationToken::new());
    let node = start_node(&args.node, shutdown.clone()).await?;
    let mut gateway_args = args.gateway.clone();
    // the gateway's write requests must fit the node's limit, with room for framing
    gateway_args.write_request_bytes =
        gateway_args.write_request_bytes.min(args.node.max_request_bytes.saturating_sub(64 << 10));
    let deployment = embedded(&node, &args.node, args.max_vector_stores, gateway_args.gateway_options()?).await?;
    let gateway = start_gateway(deployment.gateway().clone(), &gateway_args, shutdown.clone()).await?;
    // One machine-readable line on stdout: test harnesses and scripts wait for it.
    println!("RVDB_READY grpc={} mcp={} gateway_grpc={}", node.url, gateway.mcp_url, gateway.grpc_url);
    signal.cancelled().await;
    tokio::join!(gateway.drain(), node.drain());
    drain_grace(&args.drain).await;
    shutdown.cancel();
    bounded_stop(gateway.wait()).await?;
    drop(deployment);
    bounded_stop(node.stop()).await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// `rvdb node`: a storage node, alone or in a cluster.
pub async fn node(args: NodeCommand) -> anyhow::Result<()> {
    let (signal, shutdown) = (signal_token(), CancellationToken::new());
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr, shutdown.clone()).await?;
    }
    let node = start_node(&args.node, shutdown.clone()).await?;
    let agent = match &args.manager {
        Some(manager_url) => {
            let node_id = match &args.node_id {
                Some(id) => id.clone(),
                None => persistent_node_id(&args.node.persistence_dir, true)?,
            };
            let options = rvdb_node::agent::AgentOptions {
                manager_url: manager_url.clone(),
                node_id: node_id.clone(),
                advertise_url: args.advertise_url.clone().unwrap_or_else(|| node.url.clone()),
                cluster_id_file: Some(args.node.persistence_dir.join("cluster_id")),
            };
            tracing::info!(%node_id, manager = %manager_url, "joining the cluster");
            Some((tokio::spawn(rvdb_node::agent::run(node.node.clone(), options.clone())), options))
        }
        None => None,
    };
    println!("RVDB_READY grpc={}", node.url);
    signal.cancelled().await;
    // Drain: no more heartbeats, leave the routing table (gateways stop sending requests here), readiness off;
    // serve what still arrives for the grace period; leave again (a heartbeat in flight may have brought the node
    // back); close the listener after the requests in flight.
    if let Some((agent, options)) = &agent {
        agent.abort();
        rvdb_node::agent::leave(options).await;
    }
    node.drain().await;
    drain_grace(&args.drain).await;
    if let Some((_, options)) = &agent {
        rvdb_node::agent::leave(options).await;
    }
    shutdown.cancel();
    bounded_stop(node.stop()).await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The longest a process waits, once its listeners are closing, for the requests in flight to finish.
const STOP_DEADLINE: Duration = Duration::from_secs(30);

/// Awaits a server's graceful stop for at most [`STOP_DEADLINE`] (a client that never ends a stream must not keep
/// the process from exiting).
async fn bounded_stop(stopping: impl std::future::Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    match tokio::time::timeout(STOP_DEADLINE, stopping).await {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(deadline_s = STOP_DEADLINE.as_secs(), "requests still in flight at the stop deadline");
            Ok(())
        }
    }
}

/// The grace period of a drain.
async fn drain_grace(args: &DrainArgs) {
    tracing::info!(grace_ms = args.grace().as_millis() as u64, "draining: not ready, still serving");
    tokio::time::sleep(args.grace()).await;
}

/// The node id kept in `<data>/node_id`, made on first start (without persistence: a new one each time).
fn persistent_node_id(data_dir: &std::path::Path, persistence: bool) -> anyhow::Result<String> {
    if !persistence {
        return Ok(format!("node-{:08x}", rand::random::<u32>()));
    }
    let path = data_dir.join("node_id");
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim().to_string();
        if !id.is_empty() {
            return Ok(id);
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let id = format!("node-{:08x}", rand::random::<u32>());
    std::fs::write(&path, &id).with_context(|| format!("writing {}", path.display()))?;
    Ok(id)
}

/// `rvdb manager`: the index manager of a cluster.
pub async fn manager(args: ManagerArgs) -> anyhow::Result<()> {
    let shutdown = signal_token();
    let mut options = rvdb_manager::ManagerOptions::new(&args.persistence_dir);
    options.heartbeat_interval = Duration::from_millis(args.heartbeat_interval.max(10));
    options.node_timeout = Duration::from_millis(args.node_timeout.max(args.heartbeat_interval * 2));
    options.max_vector_stores = args.max_vector_stores;
    options.catch_up_margin = Duration::from_millis(args.catch_up_margin);
    options.anti_entropy_interval = Duration::from_millis(args.anti_entropy_interval);
    options.anti_entropy_pause = Duration::from_millis(args.anti_entropy_pause);
    options.rebalance_on_join = args.rebalance_on_join;
    options.max_parallel_transfers = args.max_parallel_transfers.max(1);
    let manager = rvdb_manager::Manager::open(options).context("opening the index manager's catalog")?;
    let monitor = tokio::spawn(manager.clone().run_monitor());
    let anti_entropy = tokio::spawn(manager.clone().run_anti_entropy());
    {
        // on shutdown, end the gateways' routing-table watches so the graceful stop below can finish
        let (manager, shutdown) = (manager.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            manager.close();
        });
    }
    let listener = tokio::net::TcpListener::bind(args.grpc_addr)
        .await
        .with_context(|| format!("binding gRPC address {}", args.grpc_addr))?;
    let url = format!("{}://{}", scheme(), listener.local_addr()?);
    tracing::info!(%url, "index manager serving gRPC");
    println!("RVDB_READY grpc={url}");
    rvdb_manager::metrics::register(&manager);
    if let Some(addr) = args.metrics_addr {
        serve_metrics(addr, shutdown.clone()).await?;
    }
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_service_status("", tonic_health::ServingStatus::Serving).await;
    health
        .set_service_status(rvdb_proto::v1::index_manager_server::SERVICE_NAME, tonic_health::ServingStatus::Serving)
        .await;
    grpc_server()?
        .layer(grpc_layer())
        .add_service(health_service)
        .add_service(rvdb_manager::IndexManagerService::new(manager).into_server())
        .serve_with_incoming_shutdown(incoming(listener), shutdown.cancelled_owned())
        .await?;
    // (the watches end on shutdown, see Manager::close; the other RPCs are short)
    monitor.abort();
    anti_entropy.abort();
    tracing::info!("stopped cleanly");
    Ok(())
}

/// `rvdb gateway`: a gateway alone, over the given nodes or a cluster's index manager.
pub async fn gateway(args: GatewayCommand) -> anyhow::Result<()> {
    let (signal, shutdown) = (signal_token(), CancellationToken::new());
    let url = &args.manager;
    let gateway = Gateway::connect_manager(url, args.gateway.gateway_options()?)
        .await
        .with_context(|| format!("connecting the gateway to the index manager at {url}"))?;
    let gateway = start_gateway(Arc::new(gateway), &args.gateway, shutdown.clone()).await?;
    println!("RVDB_READY mcp={} gateway_grpc={}", gateway.mcp_url, gateway.grpc_url);
    signal.cancelled().await;
    gateway.drain().await;
    drain_grace(&args.drain).await;
    shutdown.cancel();
    bounded_stop(gateway.wait()).await?;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// `rvdb mcp-stdio`: MCP on stdin/stdout (one JSON message per line, nothing else on stdout; logs on stderr).
pub async fn mcp_stdio(args: McpStdioArgs) -> anyhow::Result<()> {
    let shutdown = CancellationToken::new();
    let options = GatewayOptions {
        default_index: args.default_index_type,
        openai: args.embedding.openai()?,
        ..GatewayOptions::default()
    };
    let (gateway, embedded) = match &args.manager {
        Some(url) => {
            let gateway = Gateway::connect_manager(url, options)
                .await
                .with_context(|| format!("connecting the gateway to the index manager at {url}"))?;
            (Arc::new(gateway), None)
        }
        None => {
            let mut node_args = args.node.clone();
            node_args.grpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
            let node = start_node(&node_args, shutdown.clone()).await?;
            let deployment = embedded(&node, &node_args, args.max_vector_stores, options).await?;
            (deployment.gateway().clone(), Some((node, deployment)))
        }
    };
    let backups = args.backup.start(gateway.clone(), shutdown.child_token()).await?;
    // rmcp would drop a line that is not JSON unanswered; this answers it with -32700, as HTTP does.
    let (stdin, stdout) = rmcp::transport::stdio();
    let (transport, output) = rvdb_gateway::stdio::answer_malformed_lines(stdin, stdout);
    let service = McpServer::new(gateway, backups).serve(transport).await.context("starting MCP on stdio")?;
    service.waiting().await.context("MCP stdio session")?;
    let _ = tokio::time::timeout(Duration::from_secs(5), output).await; // every response written
    shutdown.cancel();
    if let Some((node, deployment)) = embedded {
        drop(deployment);
        node.stop().await?;
    }
    Ok(())
}

/// Accepted connections with TCP_NODELAY: without it, Nagle's algorithm and delayed ACKs add ~40 ms to every
/// response that spans several segments (measured: 10x slower batch inserts over loopback).
pub fn incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(Duration::from_secs(60)))
}

/// A token cancelled on SIGINT or SIGTERM.
fn signal_token() -> CancellationToken {
    let token = CancellationToken::new();
    let t = token.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        t.cancel();
    });
    token
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => {
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutdown signal received");
}
