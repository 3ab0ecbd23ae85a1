//! Test harness: starts real `rvdb` processes on loopback ports and hands out gRPC clients.
//!
//! The binary is `$RVDB_BIN`, or `rvdb` next to the test executable's `deps/` directory (the same cargo target
//! dir; the test command builds it first). A process prints `RVDB_READY grpc=<url>` on stdout when it serves;
//! the harness waits for that line, so tests never guess ports or sleep.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

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
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(url) = line.strip_prefix("RVDB_READY grpc=") {
                    let _ = tx.send(url.to_string());
                }
            }
        });
        let url = match rx.recv_timeout(Duration::from_secs(120)) {
            Ok(url) => url,
            Err(_) => {
                let _ = child.kill();
                panic!("rvdb node did not become ready within 120 s");
            }
        };
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
