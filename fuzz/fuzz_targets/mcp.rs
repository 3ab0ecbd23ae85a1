//! MCP JSON-RPC messages into the server, in process: the input is written as is to the stdio transport of an MCP
//! session (`rvdb mcp-stdio`'s path: the malformed-line filter, then rmcp and `McpServer`) over a whole embedded
//! deployment (index manager, a storage node on an in-memory RocksDB, the gateway, the backup manager), which
//! lives for the whole fuzzing run, so stores created by one input are there for the next.
//!
//! Properties: nothing panics (libFuzzer aborts on a panic in any thread, the server's included); every line the
//! server writes is a JSON-RPC 2.0 object; after each input the session still answers a `ping` within 30 s, so no
//! message ends the session or wedges it.
//!
//! `RVDB_FUZZ_ECHO=1` prints what the server answers (to see what an input did when reproducing it).
//!
//! Built only with `--features mcp`: it links rvdb-gateway and so RocksDB, whose C++ is taken prebuilt from the
//! main build (fuzz/run.sh sets ROCKSDB_LIB_DIR / ROCKSDB_STATIC) rather than compiled again with the fuzz flags.
#![no_main]

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use rmcp::ServiceExt;
use rvdb_gateway::backup::BackupManager;
use rvdb_gateway::embedded::{Embedded, LocalNodeSpec};
use rvdb_gateway::{GatewayOptions, McpServer};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

/// Longest input written into the session (rmcp's line limit is far above; this keeps executions fast).
const MAX_INPUT: usize = 64 << 10;

struct Session {
    runtime: tokio::runtime::Runtime,
    to_server: DuplexStream,
    from_server: BufReader<DuplexStream>,
    pings: u64,
    _deployment: (Embedded, tempfile::TempDir),
}

impl Session {
    fn start() -> Session {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a tokio runtime");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (embedded, to_server, from_server) = runtime.block_on(async {
            let mut node = rvdb_node::NodeOptions::new(dir.path().join("node"));
            node.persistence = false;
            let node = Arc::new(rvdb_node::Node::open(&node).expect("the node opens"));
            let spec = LocalNodeSpec { id: "n1".into(), url: "http://in-process:1".into(), node };
            let mut manager = rvdb_manager::ManagerOptions::new(dir.path().join("manager"));
            manager.persistence = false;
            let embedded =
                Embedded::start(manager, vec![spec], GatewayOptions::default()).await.expect("the deployment starts");
            let gateway = embedded.gateway().clone();
            let backups = Arc::new(BackupManager::new(gateway.clone(), dir.path().join("backups")));
            let (client_out, server_in) = tokio::io::duplex(1 << 20);
            let (server_out, client_in) = tokio::io::duplex(1 << 20);
            let (transport, _writer) = rvdb_gateway::stdio::answer_malformed_lines(server_in, server_out);
            tokio::spawn(async move {
                let service = McpServer::new(gateway, backups).serve(transport).await.expect("an MCP session");
                let _ = service.waiting().await;
            });
            (embedded, client_out, BufReader::new(client_in))
        });
        let mut session = Session { runtime, to_server, from_server, pings: 0, _deployment: (embedded, dir) };
        session.exchange(
            br#"{"jsonrpc":"2.0","id":"init","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"rvdb-fuzz","version":"0"}}}"#,
            "init",
        );
        session.send(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#);
        session
    }

    fn send(&mut self, line: &[u8]) {
        let (to_server, runtime) = (&mut self.to_server, &self.runtime);
        runtime.block_on(async {
            to_server.write_all(line).await.expect("the session takes input");
            to_server.write_all(b"\n").await.expect("the session takes input");
        });
    }

    /// Writes `line`, then reads the server's lines until the answer to request `id`, checking each.
    fn exchange(&mut self, line: &[u8], id: &str) {
        self.send(line);
        let echo = std::env::var_os("RVDB_FUZZ_ECHO").is_some();
        let (from_server, runtime) = (&mut self.from_server, &self.runtime);
        runtime.block_on(async {
            let read = async {
                let mut buf = String::new();
                loop {
                    buf.clear();
                    let n = from_server.read_line(&mut buf).await.expect("the session's output reads");
                    assert!(n > 0, "the MCP session ended");
                    if echo {
                        eprint!("< {buf}");
                    }
                    let message: Value = serde_json::from_str(&buf)
                        .unwrap_or_else(|e| panic!("the server wrote a line that is not JSON ({e}): {buf:.300}"));
                    assert_eq!(message["jsonrpc"], "2.0", "not a JSON-RPC 2.0 message: {buf:.300}");
                    if message["id"] == id && (message.get("result").is_some() || message.get("error").is_some()) {
                        return;
                    }
                }
            };
            tokio::time::timeout(Duration::from_secs(30), read)
                .await
                .unwrap_or_else(|_| panic!("no answer to {id} within 30 s: the session is wedged"));
        });
    }
}

fn session() -> &'static Mutex<Session> {
    static SESSION: OnceLock<Mutex<Session>> = OnceLock::new();
    SESSION.get_or_init(|| Mutex::new(Session::start()))
}

fuzz_target!(|data: &[u8]| {
    let data = &data[..data.len().min(MAX_INPUT)];
    let mut s = session().lock().unwrap_or_else(|p| p.into_inner());
    s.send(data);
    s.pings += 1;
    let id = format!("rvdb-fuzz-ping-{}", s.pings);
    s.exchange(format!(r#"{{"jsonrpc":"2.0","id":"{id}","method":"ping"}}"#).as_bytes(), &id);
});
