//! Operability, end to end on a real `rvdb serve`: Prometheus counters move by exactly the workload, API keys
//! (read-write and read-only) are enforced on MCP, REST, `/metrics` and gRPC without changing anything when they
//! refuse, gRPC health answers without a key, and one request id follows a tool call from the gateway into the
//! storage node's logs.

use std::collections::HashMap;

use rvdb_it::{Mcp, ServeProcess, http, parse_metrics};
use rvdb_proto::v1 as pb;
use serde_json::json;

const RW: &str = "rw-key-0123456789";
const RO: &str = "ro-key-0123456789";

async fn scrape(server: &ServeProcess, key: Option<&str>) -> HashMap<String, f64> {
    let (status, _, body) = http("GET", &format!("{}/metrics", server.http_url()), key, None).await;
    assert_eq!(status, 200, "{body}");
    parse_metrics(&body)
}

fn get(m: &HashMap<String, f64>, series: &str) -> f64 {
    m.get(series).copied().unwrap_or(0.0)
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, series: &str) -> f64 {
    get(after, series) - get(before, series)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_by_exactly_the_workload() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(&dir.path().join("data"), &dir.path().join("backups"));
    let mcp = Mcp::new(&server.mcp_url);
    mcp.call("create_store", json!({"store": "m", "dimension": 3})).await.unwrap();
    let before = scrape(&server, None).await;

    for i in 0..7 {
        mcp.call("insert_vector", json!({"store": "m", "id": format!("p{i}"), "vector": [1.0, i as f32, 0.5]}))
            .await
            .unwrap();
    }
    let bad = mcp.call("insert_vector", json!({"store": "m", "id": "bad", "vector": [1.0]})).await;
    assert!(bad.is_err(), "a wrong dimension is refused");
    for _ in 0..3 {
        mcp.call("search_vectors", json!({"store": "m", "vector": [1.0, 2.0, 0.5], "k": 2})).await.unwrap();
    }
    mcp.call("delete_vector", json!({"store": "m", "id": "p0"})).await.unwrap();
    let after = scrape(&server, None).await;

    let gw = |op: &str, outcome: &str| {
        format!(r#"rvdb_gateway_requests_total{{operation="{op}",outcome="{outcome}",store="m",surface="mcp"}}"#)
    };
    assert_eq!(delta(&before, &after, &gw("insert_vector", "ok")), 7.0);
    assert_eq!(delta(&before, &after, &gw("insert_vector", "invalid_argument")), 1.0);
    assert_eq!(delta(&before, &after, &gw("search_vectors", "ok")), 3.0);
    assert_eq!(delta(&before, &after, &gw("delete_vector", "ok")), 1.0);
    assert_eq!(
        delta(
            &before,
            &after,
            r#"rvdb_gateway_request_duration_seconds_count{operation="insert_vector",surface="mcp"}"#
        ),
        8.0
    );
    // The node saw the seven valid points (the invalid one never left the gateway), three searches, one delete.
    assert_eq!(delta(&before, &after, r#"rvdb_node_points_written_total{store="m"}"#), 7.0);
    assert_eq!(delta(&before, &after, r#"rvdb_node_searches_total{store="m"}"#), 3.0);
    assert_eq!(delta(&before, &after, r#"rvdb_node_points_deleted_total{store="m"}"#), 1.0);
    // `rvdb serve` calls its node in process: the node did the work, but no gRPC request reached its server.
    for method in ["Upsert", "Search", "Delete"] {
        let rpc =
            format!(r#"rvdb_grpc_server_requests_total{{code="OK",method="{method}",service="rvdb.v1.StorageNode"}}"#);
        assert_eq!(delta(&before, &after, &rpc), 0.0, "{method} went over gRPC");
    }
    // Gauges read from the shard at scrape time.
    assert_eq!(get(&after, r#"rvdb_node_store_points{shard="0",store="m"}"#), 6.0);
    assert_eq!(get(&after, r#"rvdb_node_index_status{shard="0",status="none",store="m"}"#), 1.0);
    assert!(get(&after, r#"rvdb_node_store_index_memory_bytes{shard="0",store="m"}"#) > 0.0);
    assert!(after.contains_key(r#"rvdb_node_rocksdb_memtable_bytes{shard="0",store="m"}"#));
    assert!(after.contains_key(r#"rvdb_node_rocksdb_compaction_pending{shard="0",store="m"}"#));
    assert!(get(&after, "process_resident_memory_bytes") > 0.0);
    assert!(get(&after, "rvdb_node_shards") >= 1.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_keys_guard_every_surface_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start_with(
        &dir.path().join("data"),
        &dir.path().join("backups"),
        &[("RVDB_API_KEY", RW), ("RVDB_READ_ONLY_API_KEY", RO)],
        None,
    );
    let base = server.http_url();
    let rw = Mcp::new(&server.mcp_url).with_header("authorization", &format!("Bearer {RW}"));
    let ro = Mcp::new(&server.mcp_url).with_header("authorization", &format!("Bearer {RO}"));
    let anonymous = Mcp::new(&server.mcp_url);
    let wrong = Mcp::new(&server.mcp_url).with_header("authorization", "Bearer not-a-key-at-all");

    rw.call("create_store", json!({"store": "k", "dimension": 2})).await.unwrap();
    rw.call("insert_vector", json!({"store": "k", "id": "a", "vector": [1.0, 0.0]})).await.unwrap();

    // MCP: no key or a wrong key → 401; a read-only key reads, and its writes are refused.
    for client in [&anonymous, &wrong] {
        let err = client.call("search_vectors", json!({"store": "k", "vector": [1.0, 0.0]})).await.unwrap_err();
        assert!(err.contains("unauthorized"), "{err}");
    }
    let hits = ro.call("search_vectors", json!({"store": "k", "vector": [1.0, 0.0], "k": 1})).await.unwrap();
    assert_eq!(hits["results"][0]["id"], "a");
    for (tool, args) in [
        ("insert_vector", json!({"store": "k", "id": "b", "vector": [0.0, 1.0]})),
        ("delete_vector", json!({"store": "k", "id": "a"})),
        ("delete_store", json!({"store": "k"})),
        ("create_store", json!({"store": "k2", "dimension": 2})),
    ] {
        let err = ro.call(tool, args).await.unwrap_err();
        assert!(err.contains("permission_denied"), "{tool}: {err}");
    }
    let stats = ro.call("describe_store", json!({"store": "k"})).await.unwrap();
    assert_eq!(stats["points"], 1, "refused writes changed nothing: {stats}");
    let stores = ro.call("list_stores", json!({})).await.unwrap();
    assert_eq!(stores["stores"].as_array().map(Vec::len), Some(1));

    // /metrics needs a key too; /healthz and /readyz do not.
    assert_eq!(http("GET", &format!("{base}/metrics"), None, None).await.0, 401);
    assert_eq!(http("GET", &format!("{base}/metrics"), Some(RO), None).await.0, 200);
    assert_eq!(http("GET", &format!("{base}/healthz"), None, None).await.0, 200);
    let (status, _, body) = http("GET", &format!("{base}/readyz"), None, None).await;
    assert_eq!(status, 200, "{body}");

    // REST: 401 without a key (with the bearer challenge), 403 for a read-only key on a write.
    let (status, headers, body) = http("GET", &format!("{base}/v1/stores"), None, None).await;
    assert_eq!(status, 401, "{body}");
    assert!(headers.get("www-authenticate").is_some());
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["code"], "unauthenticated");
    assert_eq!(http("GET", &format!("{base}/v1/stores"), Some(RO), None).await.0, 200);
    let (status, _, body) =
        http("POST", &format!("{base}/v1/stores"), Some(RO), Some(json!({"name": "k3", "dimension": 2}))).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"]["code"], "permission_denied");
    let (status, _, body) = http("DELETE", &format!("{base}/v1/stores/k"), Some(RO), None).await;
    assert_eq!(status, 403, "{body}");

    // gRPC on the node: UNAUTHENTICATED without a key, PERMISSION_DENIED for a read-only key on a write.
    let channel = tonic::transport::Endpoint::from_shared(server.node_url.clone()).unwrap().connect().await.unwrap();
    let with_key = |key: Option<&'static str>| {
        pb::storage_node_client::StorageNodeClient::with_interceptor(
            channel.clone(),
            move |mut r: tonic::Request<()>| {
                if let Some(k) = key {
                    r.metadata_mut().insert("authorization", format!("Bearer {k}").parse().unwrap());
                }
                Ok(r)
            },
        )
    };
    let shard = || Some(pb::ShardId { store: "k".into(), shard: 0 });
    let upsert = || pb::UpsertRequest {
        shard: shard(),
        points: vec![pb::Point { id: "g".into(), vector: vec![0.5, 0.5], metadata_json: String::new(), version: 0 }],
        sync: false,
        placement_epoch: 0,
    };
    let err = with_key(None).list_shards(pb::ListShardsRequest {}).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let err = with_key(Some("wrong-key-0000")).stats(pb::StatsRequest { shard: shard() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    let err = with_key(Some(RO)).upsert(upsert()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let err = with_key(Some(RO)).drop_shard(pb::DropShardRequest { shard: shard() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let stats = with_key(Some(RO)).stats(pb::StatsRequest { shard: shard() }).await.unwrap().into_inner();
    assert_eq!(stats.stats.unwrap().points, 1, "nothing changed");
    with_key(Some(RW)).upsert(upsert()).await.unwrap();
    let stats = with_key(Some(RO)).stats(pb::StatsRequest { shard: shard() }).await.unwrap().into_inner();
    assert_eq!(stats.stats.unwrap().points, 2);

    // The gateway's gRPC API is guarded the same way.
    let gw = tonic::transport::Endpoint::from_shared(server.gateway_url.clone()).unwrap().connect().await.unwrap();
    let err = pb::backup_service_client::BackupServiceClient::new(gw.clone())
        .list_backups(pb::ListBackupsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");
    // StoreService: a read-only key reads (the operation table's reads) and is refused every write
    let stores = |key: &'static str| {
        pb::store_service_client::StoreServiceClient::with_interceptor(gw.clone(), move |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", format!("Bearer {key}").parse().unwrap());
            Ok(r)
        })
    };
    let listed = stores(RO).list_stores(pb::ListStoreSummariesRequest {}).await.unwrap().into_inner();
    assert_eq!(listed.stores.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["k"]);
    let query = pb::SearchPointsRequest { store: "k".into(), vector: vec![0.5, 0.5], ..Default::default() };
    assert_eq!(stores(RO).search_points(query).await.unwrap().into_inner().results.len(), 2);
    let write = pb::UpsertPointsRequest { store: "k".into(), points: vec![upsert().points[0].clone()] };
    let err = stores(RO).upsert_points(write.clone()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    let err = stores(RO).drop_store(pb::StoreRef { name: "k".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err}");
    stores(RW).upsert_points(write).await.unwrap();

    // Health checking is open: orchestrators probe without keys.
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let status = HealthClient::new(channel.clone())
        .check(HealthCheckRequest { service: "rvdb.v1.StorageNode".into() })
        .await
        .unwrap()
        .into_inner()
        .status;
    assert_eq!(status, ServingStatus::Serving as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_id_follows_a_tool_call_into_the_node() {
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("rvdb.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let server = ServeProcess::start_with(
        &dir.path().join("data"),
        &dir.path().join("backups"),
        &[("RVDB_LOG", "warn,rvdb_proto=debug"), ("RVDB_LOG_FORMAT", "json")],
        Some(log),
    );
    let mcp = Mcp::new(&server.mcp_url);
    mcp.call("create_store", json!({"store": "t", "dimension": 2})).await.unwrap();
    let traced = Mcp::new(&server.mcp_url).with_header("x-request-id", "it-req-0042");
    traced.call("insert_vector", json!({"store": "t", "id": "a", "vector": [1.0, 2.0]})).await.unwrap();
    // REST answers carry a request id, and the node's span carries the caller's (in `rvdb serve` the node is
    // called in process: a `local` span, as the gRPC server's `grpc` span in a cluster).
    let (_, headers, _) = rvdb_it::http("GET", &format!("{}/v1/stores", server.http_url()), None, None).await;
    assert!(headers.get("x-request-id").is_some(), "REST answers carry a request id");

    let mut found = false;
    for _ in 0..50 {
        let text = std::fs::read_to_string(&log_path).unwrap();
        found = text.lines().any(|line| {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else { return false };
            let spans = v["spans"].as_array().cloned().unwrap_or_default();
            spans.iter().any(|s| {
                s["name"] == "local"
                    && s["request_id"] == "it-req-0042"
                    && s["method"].as_str().is_some_and(|m| m.ends_with("/Upsert"))
            })
        });
        if found {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        found,
        "no node-side grpc span with the caller's request id in:\n{}",
        std::fs::read_to_string(&log_path).unwrap()
    );
}

/// A throw-away CA and a server certificate for 127.0.0.1 / localhost signed by it (openssl CLI), in `dir`.
fn make_certificates(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run(&[
        &["req", "-x509"],
        &ec[..],
        &["-subj", "/CN=rvdb-test-ca", "-days", "2", "-keyout", "ca.key", "-out", "ca.pem"],
    ]
    .concat());
    run(&[&["req"], &ec[..], &["-subj", "/CN=localhost", "-keyout", "server.key", "-out", "server.csr"]].concat());
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write ext.cnf");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-out",
        "server.pem",
        "-extfile",
        "ext.cnf",
    ]);
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_on_every_listener_with_keys_on_top() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_certificates(dir.path());
    let path = |p: &std::path::Path| p.to_str().unwrap().to_string();
    let (ca_s, cert_s, key_s) = (path(&ca), path(&cert), path(&key));
    let server = ServeProcess::start_with(
        &dir.path().join("data"),
        &dir.path().join("backups"),
        &[
            ("RVDB_TLS_CERT_FILE", &cert_s),
            ("RVDB_TLS_KEY_FILE", &key_s),
            ("RVDB_TLS_CA_FILE", &ca_s),
            ("RVDB_API_KEY", RW),
        ],
        None,
    );
    assert!(server.node_url.starts_with("https://"), "{}", server.node_url);
    assert!(server.mcp_url.starts_with("https://"), "{}", server.mcp_url);

    // MCP over HTTPS (curl verifies the server against the CA); the gateway reaches the node over TLS too.
    let curl = |body: serde_json::Value, key: Option<&str>| {
        let tool = body["params"]["name"].as_str().unwrap_or_default().to_string();
        let mut cmd = std::process::Command::new("curl");
        cmd.args(["-sS", "--cacert", &ca_s, "-X", "POST", &server.mcp_url])
            .args(["-H", "content-type: application/json", "-H", "accept: application/json, text/event-stream"])
            .args(["-H", "mcp-protocol-version: 2026-07-28", "-H", "mcp-method: tools/call"])
            .args(["-H", &format!("mcp-name: {tool}")])
            .args(["-w", "\n%{http_code}", "-d", &body.to_string()]);
        if let Some(k) = key {
            cmd.args(["-H", &format!("authorization: Bearer {k}")]);
        }
        let out = cmd.output().expect("curl runs");
        assert!(out.status.success(), "curl: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let call = |name: &str, arguments: serde_json::Value| {
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments,
            "_meta": {"io.modelcontextprotocol/protocolVersion": "2026-07-28",
                      "io.modelcontextprotocol/clientCapabilities": {},
                      "io.modelcontextprotocol/clientInfo": {"name": "rvdb-it", "version": "1"}}}})
    };
    let out = curl(call("create_store", json!({"store": "tls", "dimension": 2})), Some(RW));
    assert!(out.contains("\"isError\":false") || out.contains("structuredContent"), "{out}");
    let out = curl(call("insert_vector", json!({"store": "tls", "id": "a", "vector": [1.0, 2.0]})), Some(RW));
    assert!(out.contains("\"inserted\":true"), "{out}");
    let out = curl(call("search_vectors", json!({"store": "tls", "vector": [1.0, 2.0]})), None);
    assert!(out.trim_end().ends_with("401"), "no key over TLS is still 401: {out}");

    // gRPC over TLS with the CA works; plain text to the same port does not.
    let tls = tonic::transport::ClientTlsConfig::new()
        .ca_certificate(tonic::transport::Certificate::from_pem(std::fs::read(&ca).unwrap()))
        .domain_name("localhost");
    let channel = tonic::transport::Endpoint::from_shared(server.node_url.clone())
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client =
        pb::storage_node_client::StorageNodeClient::with_interceptor(channel, |mut r: tonic::Request<()>| {
            r.metadata_mut().insert("authorization", format!("Bearer {RW}").parse().unwrap());
            Ok(r)
        });
    let stats = client.stats(pb::StatsRequest { shard: Some(pb::ShardId { store: "tls".into(), shard: 0 }) }).await;
    assert_eq!(stats.unwrap().into_inner().stats.unwrap().points, 1);
    let plain = server.node_url.replace("https://", "http://");
    let plain = tonic::transport::Endpoint::from_shared(plain).unwrap().connect().await;
    let refused = match plain {
        Err(_) => true,
        Ok(ch) => {
            pb::storage_node_client::StorageNodeClient::new(ch).list_shards(pb::ListShardsRequest {}).await.is_err()
        }
    };
    assert!(refused, "plain-text gRPC must not be served when TLS is on");
}
