//! Test harness: starts real `rvdb` processes on loopback ports and hands out gRPC clients.
//!
//! The binary is `$RVDB_BIN`, or `rvdb` next to the test executable's `deps/` directory (the same cargo target
//! dir; the test command builds it first). A process prints `RVDB_READY grpc=<url>` on stdout when it serves;
//! the harness waits for that line, so tests never guess ports or sleep. `rvdb serve` adds `mcp=` and
//! `gateway_grpc=` to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub mod proxy;
pub use proxy::Proxy;

use rvdb_proto::v1::backup_service_client::BackupServiceClient;
use rvdb_proto::v1::storage_node_client::StorageNodeClient;
use tonic::transport::Channel;

/// The `rvdb` binary under test, checked once to be built from this checkout's sources: its `--version` names
/// the source fingerprint it was built from (`crates/rvdb/fingerprint.rs`), which must equal the one this test
/// crate was compiled with. A stale binary (sources changed since it was built) fails every test that starts one.
pub fn rvdb_bin() -> PathBuf {
    static CHECKED: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    CHECKED
        .get_or_init(|| {
            let bin = match std::env::var("RVDB_BIN") {
                Ok(p) => PathBuf::from(p),
                Err(_) => {
                    let exe = std::env::current_exe().expect("test executable path");
                    let dir = exe.parent().and_then(Path::parent).expect("target profile dir");
                    dir.join(format!("rvdb{}", std::env::consts::EXE_SUFFIX))
                }
            };
            assert!(
                bin.exists(),
                "{} not found: build it first (cargo build --release --workspace --all-targets) or set RVDB_BIN",
                bin.display()
            );
            let out = Command::new(&bin).arg("--version").output().expect("running rvdb --version");
            let version = String::from_utf8_lossy(&out.stdout);
            let expected = env!("RVDB_SOURCE_FINGERPRINT");
            assert!(
                version.contains(&format!("(source {expected})")),
                "{} is stale: it reports {:?}, but these sources have fingerprint {expected}; rebuild it \
             (cargo build --release --workspace --all-targets)",
                bin.display(),
                version.trim()
            );
            bin
        })
        .clone()
}

/// A running `rvdb serve` process (node + gateway). Killed when dropped.
#[derive(Debug)]
pub struct ServeProcess {
    child: Child,
    /// The storage node's gRPC URL.
    pub node_url: String,
    /// The gateway's gRPC URL (`BackupService`).
    pub gateway_url: String,
    pub mcp_url: String,
}

impl ServeProcess {
    pub fn start(data_dir: &Path, backup_dir: &Path) -> ServeProcess {
        Self::start_with(data_dir, backup_dir, &[], None)
    }

    /// With extra environment variables, and stderr (logs) written to `stderr` instead of the test's.
    pub fn start_with(
        data_dir: &Path,
        backup_dir: &Path,
        env: &[(&str, &str)],
        stderr: Option<std::fs::File>,
    ) -> ServeProcess {
        let mut cmd = Command::new(rvdb_bin());
        cmd.args(["serve", "--grpc-addr", "127.0.0.1:0", "--mcp-port", "0", "--gateway-grpc-addr", "127.0.0.1:0"])
            .arg("--persistence-dir")
            .arg(data_dir)
            .arg("--backup-dir")
            .arg(backup_dir)
            .env("RVDB_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(stderr.map_or_else(Stdio::inherit, Stdio::from));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn rvdb serve");
        let line = wait_ready(&mut child);
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
        };
        ServeProcess { node_url: field("grpc"), gateway_url: field("gateway_grpc"), mcp_url: field("mcp"), child }
    }

    pub async fn node(&self) -> StorageNodeClient<Channel> {
        StorageNodeClient::connect(self.node_url.clone()).await.expect("connect to node")
    }

    pub async fn backups(&self) -> BackupServiceClient<Channel> {
        BackupServiceClient::connect(self.gateway_url.clone()).await.expect("connect to gateway")
    }

    /// The gateway's `rvdb.v1.StoreService`.
    pub async fn stores(&self) -> rvdb_proto::v1::store_service_client::StoreServiceClient<Channel> {
        rvdb_proto::v1::store_service_client::StoreServiceClient::connect(self.gateway_url.clone())
            .await
            .expect("connect to gateway")
    }

    /// The gateway's HTTP base URL (`http://host:port`).
    pub fn http_url(&self) -> String {
        self.mcp_url.trim_end_matches("/mcp").to_string()
    }
}

/// One HTTP request with optional bearer key and JSON body: (status, headers, body text).
pub async fn http(
    method: &str,
    url: &str,
    key: Option<&str>,
    body: Option<serde_json::Value>,
) -> (u16, hyper::HeaderMap, String) {
    http_text(method, url, key, body.map(|b| b.to_string())).await
}

/// [`http`] with the JSON body as text (for bodies too large to build as a `serde_json::Value`).
pub async fn http_text(
    method: &str,
    url: &str,
    key: Option<&str>,
    body: Option<String>,
) -> (u16, hyper::HeaderMap, String) {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Full<bytes::Bytes>>(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(http_body_util::Full::new(bytes::Bytes::from(body.unwrap_or_default()))).expect("request");
    let resp = client.request(req).await.expect("HTTP request");
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let bytes = resp.into_body().collect().await.expect("HTTP body").to_bytes();
    (status, headers, String::from_utf8_lossy(&bytes).into_owned())
}

/// One HTTP request with a JSON body that reports transport failures instead of panicking (the server may be
/// restarting): `Ok((status, body))`, or `Err` when no answer came within `deadline`.
pub async fn try_http(
    method: &str,
    url: &str,
    body: Option<&serde_json::Value>,
    deadline: Duration,
) -> Result<(u16, String), String> {
    use http_body_util::BodyExt;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build::<_, http_body_util::Full<bytes::Bytes>>(hyper_util::client::legacy::connect::HttpConnector::new());
    let mut req = hyper::Request::builder().method(method).uri(url);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    let text = body.map(|b| b.to_string()).unwrap_or_default();
    let req = req.body(http_body_util::Full::new(bytes::Bytes::from(text))).map_err(|e| e.to_string())?;
    let call = async {
        let resp = client.request(req).await.map_err(|e| format!("request failed: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map_err(|e| format!("body failed: {e}"))?.to_bytes();
        Ok((status, String::from_utf8_lossy(&bytes).into_owned()))
    };
    tokio::time::timeout(deadline, call).await.map_err(|_| format!("no answer within {deadline:?}"))?
}

/// The shard of point `id` in a store of `shards` shards: the gateway's routing (FNV-1a 64 of the id, then
/// Lamping & Veach's jump consistent hash), fixed because it decides where stored points live.
pub fn shard_of(id: &str, shards: u32) -> u32 {
    let mut key: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.as_bytes() {
        key ^= *b as u64;
        key = key.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < shards.max(1) as i64 {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// Parses Prometheus text: `name{labels}` → value, labels as written by the exposition (sorted by name).
pub fn parse_metrics(text: &str) -> std::collections::HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect()
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for the `RVDB_READY …` line on the child's stdout and returns it.
fn wait_ready(child: &mut Child) -> String {
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("RVDB_READY ") {
                let _ = tx.send(line);
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            panic!("rvdb did not become ready within 120 s");
        }
    }
}

/// A running `rvdb node` process. Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    child: Child,
    pub url: String,
    pub data_dir: PathBuf,
    env: Vec<(String, String)>,
}

impl NodeProcess {
    /// Starts a node on a free loopback port with its data in `data_dir`.
    pub fn start(data_dir: &Path) -> NodeProcess {
        Self::start_with_env(data_dir, &[])
    }

    pub fn start_with_env(data_dir: &Path, env: &[(&str, &str)]) -> NodeProcess {
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut cmd = Command::new(rvdb_bin());
        cmd.args(["node", "--grpc-addr", "127.0.0.1:0", "--persistence-dir"])
            .arg(data_dir)
            .env("RVDB_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn rvdb node");
        let line = wait_ready(&mut child);
        let url = line.trim_start_matches("RVDB_READY grpc=").to_string();
        NodeProcess { child, url, data_dir: data_dir.to_path_buf(), env }
    }

    pub async fn client(&self) -> StorageNodeClient<Channel> {
        StorageNodeClient::connect(self.url.clone())
            .await
            .expect("connect to node")
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs, only what reached the WAL survives.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        let _ = self.child.wait();
    }

    /// Kills the process and starts a new one on the same data (a new port).
    pub fn restart_after_kill(mut self) -> NodeProcess {
        self.kill();
        let env: Vec<(String, String)> = std::mem::take(&mut self.env);
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        NodeProcess::start_with_env(&self.data_dir, &refs)
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `rvdb <args>` and waits for its `RVDB_READY` line; returns the child and the line's `key=value` fields.
fn spawn_ready(args: &[String], env: &[(String, String)]) -> (Child, std::collections::HashMap<String, String>) {
    let mut cmd = Command::new(rvdb_bin());
    cmd.args(args).env("RVDB_LOG", "warn").stdout(Stdio::piped()).stderr(Stdio::inherit());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn rvdb {args:?}: {e}"));
    let line = wait_ready(&mut child);
    let fields = line
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    (child, fields)
}

/// A running `rvdb manager` (the index manager). Killed when dropped.
#[derive(Debug)]
pub struct ManagerProcess {
    child: Child,
    pub url: String,
}

impl ManagerProcess {
    /// A manager with fast failure detection: heartbeats every `heartbeat_ms`, down after `timeout_ms`.
    pub fn start(data_dir: &Path, heartbeat_ms: u64, timeout_ms: u64) -> ManagerProcess {
        Self::start_at(data_dir, heartbeat_ms, timeout_ms, "127.0.0.1:0")
    }

    /// A manager on a given address (to restart one where nodes and gateways look for it).
    pub fn start_at(data_dir: &Path, heartbeat_ms: u64, timeout_ms: u64, addr: &str) -> ManagerProcess {
        Self::start_with_env(data_dir, heartbeat_ms, timeout_ms, addr, &[])
    }

    /// [`ManagerProcess::start_at`] with extra environment variables (e.g. `RVDB_ANTI_ENTROPY_INTERVAL`).
    pub fn start_with_env(
        data_dir: &Path,
        heartbeat_ms: u64,
        timeout_ms: u64,
        addr: &str,
        env: &[(&str, &str)],
    ) -> ManagerProcess {
        let args: Vec<String> = vec![
            "manager".into(),
            "--grpc-addr".into(),
            addr.into(),
            "--persistence-dir".into(),
            data_dir.display().to_string(),
            "--heartbeat-interval".into(),
            heartbeat_ms.to_string(),
            "--node-timeout".into(),
            timeout_ms.to_string(),
        ];
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (child, fields) = spawn_ready(&args, &env);
        ManagerProcess { child, url: fields["grpc"].clone() }
    }

    pub async fn client(&self) -> rvdb_proto::v1::index_manager_client::IndexManagerClient<Channel> {
        rvdb_proto::v1::index_manager_client::IndexManagerClient::connect(self.url.clone())
            .await
            .expect("connect to manager")
            .max_decoding_message_size(usize::MAX)
    }
}

impl ManagerProcess {
    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, and wait for the process to exit; returns how long that took and whether it exited cleanly.
    pub fn terminate(&mut self) -> (Duration, bool) {
        terminate(&mut self.child)
    }
}

/// SIGTERM to `child` and wait for its exit: (time to exit, exit status success).
fn terminate(child: &mut Child) -> (Duration, bool) {
    let started = std::time::Instant::now();
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let ok = child.wait().map(|s| s.success()).unwrap_or(false);
    (started.elapsed(), ok)
}

/// The routing table the index manager at `url` publishes; `None` while it cannot be reached (e.g. restarting).
pub async fn routing_table(url: &str) -> Option<rvdb_proto::v1::RoutingTable> {
    use rvdb_proto::v1::{GetRoutingTableRequest, index_manager_client::IndexManagerClient};
    let mut c = IndexManagerClient::connect(url.to_string()).await.ok()?.max_decoding_message_size(usize::MAX);
    Some(c.get_routing_table(GetRoutingTableRequest {}).await.ok()?.into_inner())
}

/// Waits until each node of `wanted` has its state in the manager's routing table (through a restart of the
/// manager, too); panics after `within`.
pub async fn wait_for_states(manager_url: &str, wanted: &[(&str, rvdb_proto::v1::NodeState)], within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let table = routing_table(manager_url).await;
        let nodes = table.map(|t| t.nodes).unwrap_or_default();
        if wanted.iter().all(|(id, st)| nodes.iter().any(|n| n.node_id == *id && n.state == *st as i32)) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "nodes never reached {wanted:?}: {nodes:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every shard of `store` in the manager's placement order, each as its replicas' (SHA-256 digest, records); a
/// replica that cannot give a digest shows its error code instead. Replicas of a shard are equal when their
/// entries are.
pub async fn replica_digests(manager_url: &str, store: &str) -> Vec<Vec<(String, u64)>> {
    use rvdb_proto::v1::{DigestRequest, ShardId};
    let t = routing_table(manager_url).await.expect("routing table");
    let address: std::collections::BTreeMap<&str, &str> =
        t.nodes.iter().map(|n| (n.node_id.as_str(), n.address.as_str())).collect();
    let route = t.stores.iter().find(|s| s.config.as_ref().is_some_and(|c| c.name == store)).expect("route");
    let mut out = Vec::new();
    for placement in &route.shards {
        let mut per_shard = Vec::new();
        for id in &placement.replica_node_ids {
            let mut c = StorageNodeClient::connect(address[id.as_str()].to_string()).await.expect("node");
            let shard = Some(ShardId { store: store.into(), shard: placement.shard });
            match c.digest(DigestRequest { shard }).await {
                Ok(d) => per_shard.push((d.get_ref().sha256.clone(), d.get_ref().records)),
                Err(s) => per_shard.push((format!("{:?}", s.code()), 0)),
            }
        }
        out.push(per_shard);
    }
    out
}

/// Waits (`within` at most) until every shard of `store` has equal replicas ([`replica_digests`]); panics with
/// the digests otherwise.
pub async fn replicas_converge(manager_url: &str, store: &str, within: Duration) {
    let deadline = std::time::Instant::now() + within;
    loop {
        let digests = replica_digests(manager_url, store).await;
        if digests.iter().all(|s| s.windows(2).all(|w| w[0] == w[1])) {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "replicas of '{store}' differ: {digests:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A loopback port free now (for a process that must come back on the same address after a restart).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

impl Drop for ManagerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A storage node that is part of a cluster (`rvdb node --manager`). Killed (SIGKILL) when dropped.
#[derive(Debug)]
pub struct ClusterNode {
    child: Option<Child>,
    pub node_id: String,
    pub url: String,
    pub data_dir: PathBuf,
    manager_url: String,
    /// Where it listens (`127.0.0.1:0`: a new port each start) and what it tells the manager (`None`: its URL).
    grpc_addr: String,
    advertise_url: Option<String>,
}

impl ClusterNode {
    pub fn start(data_dir: &Path, manager_url: &str, node_id: &str) -> ClusterNode {
        Self::start_at(data_dir, manager_url, node_id, "127.0.0.1:0", None)
    }

    /// A node listening on `grpc_addr` (kept across restarts) that others reach at `advertise_url` (e.g. a
    /// [`Proxy`] in front of it).
    pub fn start_at(
        data_dir: &Path,
        manager_url: &str,
        node_id: &str,
        grpc_addr: &str,
        advertise_url: Option<&str>,
    ) -> ClusterNode {
        let mut n = ClusterNode {
            child: None,
            node_id: node_id.to_string(),
            url: String::new(),
            data_dir: data_dir.to_path_buf(),
            manager_url: manager_url.to_string(),
            grpc_addr: grpc_addr.to_string(),
            advertise_url: advertise_url.map(str::to_string),
        };
        n.spawn();
        n
    }

    fn spawn(&mut self) {
        let mut args: Vec<String> = vec![
            "node".into(),
            "--grpc-addr".into(),
            self.grpc_addr.clone(),
            "--persistence-dir".into(),
            self.data_dir.display().to_string(),
            "--manager".into(),
            self.manager_url.clone(),
            "--node-id".into(),
            self.node_id.clone(),
        ];
        if let Some(a) = &self.advertise_url {
            args.extend(["--advertise-url".to_string(), a.clone()]);
        }
        let (child, fields) = spawn_ready(&args, &[]);
        self.url = fields["grpc"].clone();
        self.child = Some(child);
    }

    /// Whether a process is running (not killed).
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Starts a killed node again on its data.
    pub fn start_again(&mut self) {
        if self.child.is_none() {
            self.spawn();
        }
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends a signal to the process (e.g. `STOP` to freeze it: it accepts connections but never answers).
    pub fn signal(&self, signal: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").args([&format!("-{signal}"), &c.id().to_string()]).status();
        }
    }

    /// Starts the node again on its data (a new port; it registers again).
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// SIGTERM (a graceful drain: it leaves the routing table, serves what is in flight, syncs and exits), then
    /// starts it again on its data; returns how long the old process took to exit and whether it exited cleanly.
    pub fn restart_gracefully(&mut self) -> (Duration, bool) {
        let out = self.child.as_mut().map(terminate).unwrap_or_default();
        self.child = None;
        self.spawn();
        out
    }
}

impl Drop for ClusterNode {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A running `rvdb gateway --manager`. Killed when dropped.
#[derive(Debug)]
pub struct GatewayProcess {
    child: Child,
    pub mcp_url: String,
    args: Vec<String>,
}

impl GatewayProcess {
    /// SIGKILL, then the same command again with `env` (e.g. `RVDB_CLOCK_OFFSET_MS`), on the same address when
    /// started with a port.
    pub fn restart_with_env(&mut self, env: &[(&str, &str)]) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let env: Vec<(String, String)> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let (child, fields) = spawn_ready(&self.args, &env);
        self.child = child;
        self.mcp_url = fields["mcp"].clone();
    }
}

impl GatewayProcess {
    pub fn start(manager_url: &str, backup_dir: &Path) -> GatewayProcess {
        Self::start_with(manager_url, backup_dir, &[])
    }

    pub fn start_with(manager_url: &str, backup_dir: &Path, extra: &[&str]) -> GatewayProcess {
        Self::start_on(manager_url, backup_dir, 0, extra)
    }

    /// A gateway whose MCP / REST listener is on `port` (0: any free port).
    pub fn start_on(manager_url: &str, backup_dir: &Path, port: u16, extra: &[&str]) -> GatewayProcess {
        let mut args: Vec<String> = vec![
            "gateway".into(),
            "--manager".into(),
            manager_url.into(),
            "--mcp-port".into(),
            port.to_string(),
            "--gateway-grpc-addr".into(),
            "127.0.0.1:0".into(),
            "--backup-dir".into(),
            backup_dir.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        let (child, fields) = spawn_ready(&args, &[]);
        GatewayProcess { child, mcp_url: fields["mcp"].clone(), args }
    }

    /// SIGTERM (a graceful drain), then the same command again (on the same address when started with
    /// [`GatewayProcess::start_on`] a port); returns how long the old process took to exit and whether it exited cleanly.
    pub fn restart_gracefully(&mut self) -> (Duration, bool) {
        let out = terminate(&mut self.child);
        let (child, fields) = spawn_ready(&self.args, &[]);
        self.child = child;
        self.mcp_url = fields["mcp"].clone();
        out
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal MCP client: stateless Streamable HTTP (protocol 2026-07-28), one `tools/call` per POST.
#[derive(Debug, Clone)]
pub struct Mcp {
    url: String,
    headers: Vec<(String, String)>,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        http_body_util::Full<bytes::Bytes>,
    >,
}

impl Mcp {
    pub fn new(url: &str) -> Mcp {
        let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(hyper_util::client::legacy::connect::HttpConnector::new());
        Mcp { url: url.to_string(), http, headers: Vec::new() }
    }

    /// The same client, sending `name: value` with every call (e.g. `authorization`, `x-request-id`).
    pub fn with_header(mut self, name: &str, value: &str) -> Mcp {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Calls a tool; `Ok(structuredContent)` or `Err(text)` for an `isError` result or a transport failure.
    pub async fn call(&self, tool: &str, arguments: serde_json::Value) -> Result<serde_json::Value, String> {
        use http_body_util::BodyExt;
        let body = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {
                "name": tool, "arguments": arguments,
                "_meta": {
                    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                    "io.modelcontextprotocol/clientCapabilities": {},
                    "io.modelcontextprotocol/clientInfo": {"name": "rvdb-it", "version": "1"},
                },
            },
        });
        let mut req = hyper::Request::post(&self.url);
        for (k, v) in &self.headers {
            req = req.header(k, v);
        }
        let req = req
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2026-07-28")
            .header("mcp-method", "tools/call")
            .header("mcp-name", tool)
            .body(http_body_util::Full::new(bytes::Bytes::from(body.to_string())))
            .map_err(|e| e.to_string())?;
        let resp = self.http.request(req).await.map_err(|e| format!("transport: {e}"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        let text = String::from_utf8_lossy(&bytes);
        // JSON, or one SSE `data:` line carrying the JSON-RPC response
        let json_text = text.lines().find_map(|l| l.strip_prefix("data:")).map(str::trim).unwrap_or(&text);
        let v: serde_json::Value =
            serde_json::from_str(json_text).map_err(|e| format!("HTTP {status}: not JSON ({e}): {text}"))?;
        if let Some(err) = v.get("error") {
            return Err(format!("JSON-RPC error: {err}"));
        }
        let result = &v["result"];
        if result["isError"] == serde_json::json!(true) {
            return Err(result["content"][0]["text"].as_str().unwrap_or("error").to_string());
        }
        Ok(result["structuredContent"].clone())
    }
}
