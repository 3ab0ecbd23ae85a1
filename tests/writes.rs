//! Writes through a real `rvdb serve` (REST): a batch is written whole or refused whole, and a write meant as
//! the newest is never dropped as stale.
//!
//! - A 2-shard store of 17,000-d vectors takes one batch of 100 points for one shard and 1,000 for the other
//!   (36 MiB of JSON, under the HTTP limit, but 68 MB of gRPC for the second shard, over a node's 64 MiB limit).
//! - After a restart with the clock 10 minutes behind the previous run, an update of an existing id replaces it
//!   and a delete removes it. The clock is set back with libfaketime when it is installed (deploy/setup.sh
//!   installs it), which is what a host whose clock was set back looks like to the process; without it, with the
//!   gateway's `RVDB_CLOCK_OFFSET_MS` test knob.

use std::path::Path;

use rvdb_it::{ServeProcess, http, http_text, shard_of};
use serde_json::{Value, json};

/// libfaketime: `$RVDB_LIBFAKETIME`, or where Debian's `faketime` package puts it.
fn libfaketime() -> Option<String> {
    let arch = std::env::consts::ARCH;
    std::env::var("RVDB_LIBFAKETIME")
        .into_iter()
        .chain([
            format!("/usr/lib/{arch}-linux-gnu/faketime/libfaketime.so.1"),
            "/usr/lib/faketime/libfaketime.so.1".to_string(),
        ])
        .find(|p| Path::new(p).exists())
}

/// `GET /v1/stores/{store}`: the store's stats.
async fn stats(server: &ServeProcess, store: &str) -> Value {
    let (status, _, body) = http("GET", &format!("{}/v1/stores/{store}", server.http_url()), None, None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_a_node_request_limit_is_written_whole_or_refused_whole() {
    const DIM: usize = 17_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let server = ServeProcess::start(&dir.path().join("data"), &dir.path().join("backups"));
    let base = server.http_url();
    let create = json!({"name": "big", "dimension": DIM, "metric": "euclidean", "shards": 2});
    let (status, _, body) = http("POST", &format!("{base}/v1/stores"), None, Some(create)).await;
    assert_eq!(status, 201, "{body}");

    // 100 ids of shard 0 and 1000 of shard 1, each vector all zeros but one 1: written as text ("0,0,…") the
    // body is 36 MiB, while the protobuf floats of shard 1 alone are 68 MB
    let mut ids = (0u64..).map(|i| format!("p{i}"));
    let mut picked: Vec<String> = Vec::new();
    let (mut zero, mut one) = (0, 0);
    while zero < 100 || one < 1000 {
        let id = ids.next().expect("ids");
        match shard_of(&id, 2) {
            0 if zero < 100 => zero += 1,
            1 if one < 1000 => one += 1,
            _ => continue,
        }
        picked.push(id);
    }
    let mut body = String::with_capacity(40 << 20);
    body.push_str(r#"{"points":["#);
    for (n, id) in picked.iter().enumerate() {
        if n > 0 {
            body.push(',');
        }
        body.push_str(&format!(r#"{{"id":"{id}","vector":["#));
        for j in 0..DIM {
            body.push_str(if j == n % DIM { "1" } else { "0" });
            body.push(if j + 1 < DIM { ',' } else { ']' });
        }
        body.push('}');
    }
    body.push_str("]}");
    assert!(body.len() < 64 << 20 && body.len() > 32 << 20, "{} bytes", body.len());

    let (status, _, answer) = http_text("PUT", &format!("{base}/v1/stores/big/points"), None, Some(body)).await;
    let stored = stats(&server, "big").await["points"].as_u64().expect("points");
    assert!(!answer.contains("decoded message length"), "an internal hop leaked into the error: {answer}");
    if status == 200 {
        let a: Value = serde_json::from_str(&answer).expect("JSON");
        assert_eq!((a["inserted"].as_u64(), a["stale"].as_u64()), (Some(1100), Some(0)), "{answer}");
        assert_eq!(stored, 1100, "acknowledged but not all stored");
    } else {
        assert_eq!(stored, 0, "refused with {status} ({answer}) but {stored} points were written");
    }
    // this gateway splits node requests by size: the batch is written whole
    assert_eq!(status, 200, "{answer}");

    // every point is there, with its vector
    let get = json!({"ids": [picked[0].clone(), picked[1099].clone()], "with_vector": true});
    let (status, _, got) = http("POST", &format!("{base}/v1/stores/big/points/get"), None, Some(get)).await;
    assert_eq!(status, 200, "{got}");
    let got: Value = serde_json::from_str(&got).expect("JSON");
    let points = got["points"].as_array().expect("points");
    assert_eq!(points.len(), 2, "{got}");
    assert_eq!(points[1]["vector"][1099 % DIM], 1.0);
}

/// `rvdb serve` on `data`, its clock `behind_ms` behind the host's: with libfaketime when installed, otherwise
/// with the gateway's clock knob.
fn serve_behind(data: &Path, backups: &Path, behind_ms: u64) -> ServeProcess {
    let seconds = format!("-{}", behind_ms / 1000);
    let offset = format!("-{behind_ms}");
    if let Some(lib) = libfaketime() {
        eprintln!("setting the clock back with {lib}");
        let env = [("LD_PRELOAD", lib.as_str()), ("FAKETIME", seconds.as_str()), ("FAKETIME_DONT_FAKE_MONOTONIC", "1")];
        ServeProcess::start_with(data, backups, &env, None)
    } else {
        eprintln!("libfaketime is not installed: setting the gateway clock back with RVDB_CLOCK_OFFSET_MS");
        ServeProcess::start_with(data, backups, &[("RVDB_CLOCK_OFFSET_MS", offset.as_str())], None)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_and_deletes_win_after_a_restart_with_the_clock_behind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, backups) = (dir.path().join("data"), dir.path().join("backups"));
    let version_of_a = {
        let server = ServeProcess::start(&data, &backups);
        let base = server.http_url();
        let create = json!({"name": "c", "dimension": 3, "metric": "euclidean", "shards": 2});
        let (status, _, body) = http("POST", &format!("{base}/v1/stores"), None, Some(create)).await;
        assert_eq!(status, 201, "{body}");
        let pts = json!({"points": [{"id": "a", "vector": [1, 1, 1]}, {"id": "b", "vector": [1, 1, 1]}]});
        let (status, _, body) = http("PUT", &format!("{base}/v1/stores/c/points"), None, Some(pts)).await;
        assert_eq!(status, 200, "{body}");
        let (status, _, body) = http("POST", &format!("{base}/v1/stores/c/sync"), None, None).await;
        assert!(status < 300, "{body}");
        let (_, _, a) = http("GET", &format!("{base}/v1/stores/c/points/a"), None, None).await;
        serde_json::from_str::<Value>(&a).expect("JSON")["version"].as_u64().expect("version")
    };

    let server = serve_behind(&data, &backups, 600_000);
    let base = server.http_url();
    let update = json!({"points": [{"id": "a", "vector": [2, 2, 2]}]});
    let (status, _, body) = http("PUT", &format!("{base}/v1/stores/c/points"), None, Some(update)).await;
    assert_eq!(status, 200, "{body}");
    let summary: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!((summary["inserted"].as_u64(), summary["stale"].as_u64()), (Some(1), Some(0)), "{body}");
    let (_, _, a) = http("GET", &format!("{base}/v1/stores/c/points/a?with_vector=true"), None, None).await;
    let a: Value = serde_json::from_str(&a).expect("JSON");
    assert_eq!(a["vector"], json!([2.0, 2.0, 2.0]), "the update was dropped: {a}");
    assert!(a["version"].as_u64().expect("version") > version_of_a, "{a}");

    let (status, _, body) = http("DELETE", &format!("{base}/v1/stores/c/points/b"), None, None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).expect("JSON")["deleted"], 1, "{body}");
    let (status, _, body) = http("GET", &format!("{base}/v1/stores/c/points/b"), None, None).await;
    assert_eq!(status, 404, "the delete was dropped: {body}");
    assert_eq!(stats(&server, "c").await["points"], 1);
}
