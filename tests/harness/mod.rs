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

use rvdb_proto::v1::backup_service_client::BackupServiceClient;
use rvdb_proto::v1::storage_node_client::StorageNodeClient;
use tonic::transport::Channel;

pub fn rvdb_bin() -> PathBuf {
    if let Ok(p) = std::env::var("RVDB_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target profile dir");
    let bin = dir.join(format!("rvdb{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} not found: build it first (cargo build --release -p rvdb) or set RVDB_BIN",
        bin.display()
    );
    bin
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
        let mut cmd = Command::new(rvdb_bin());
        cmd.args(["serve", "--grpc-addr", "127.0.0.1:0", "--mcp-port", "0", "--gateway-grpc-addr", "127.0.0.1:0"])
            .arg("--persistence-dir")
            .arg(data_dir)
            .arg("--backup-dir")
            .arg(backup_dir)
            .env("RVDB_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
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
