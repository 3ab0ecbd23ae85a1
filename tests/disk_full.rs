//! Disk full: `rvdb serve` with its data on a small tmpfs that the test mounts and then fills with a ballast file.
//! Writes are refused with a clear error (REST 507 `insufficient_storage`, MCP `isError`, gRPC
//! RESOURCE_EXHAUSTED), reads keep working, nothing acknowledged is lost, and once the ballast is removed writes
//! are taken again without a restart. Mounting needs root (CAP_SYS_ADMIN); without it the test says loudly that
//! it skipped.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use rvdb_it::{Mcp, ServeProcess, http};
use serde_json::{Value, json};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn free_bytes(path: &Path) -> u64 {
    let out = Command::new("df").args(["--output=avail", "-B1"]).arg(path).output().expect("df");
    String::from_utf8_lossy(&out.stdout).lines().nth(1).and_then(|l| l.trim().parse().ok()).expect("df output")
}

/// Fills the file system of `dir` with `ballast` until `leave` bytes are free.
fn fill(dir: &Path, ballast: &Path, leave: u64) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(ballast).expect("ballast");
    let chunk = vec![0xA5u8; 1 << 20];
    loop {
        let free = free_bytes(dir);
        if free <= leave {
            break;
        }
        let n = ((free - leave) as usize).min(chunk.len());
        if f.write_all(&chunk[..n]).is_err() {
            break;
        }
        f.sync_all().expect("sync ballast");
    }
}

fn points(range: std::ops::Range<u32>) -> Value {
    Value::Array(
        range
            .map(|i| json!({"id": format!("p{i}"), "vector": [i as f32, 1.0, (i % 7) as f32], "metadata": {"i": i}}))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_keeps_reads_and_recovers_without_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    // RocksDB preallocates its WAL files (about 1.1 write buffers each, for the node's and the manager's
    // instances), so the file system needs a few hundred MB before the test's own data.
    let Some(fs) = Tmpfs::mount(&dir.path().join("fs"), "512m") else {
        eprintln!("!!! SKIPPING the disk-full test: cannot mount a tmpfs here (needs root / CAP_SYS_ADMIN)");
        return;
    };
    let data = fs.0.join("data");
    let ballast = fs.0.join("ballast");
    let reserve_mb = 64u64;
    let env = [("RVDB_DISK_RESERVE_MB", "64"), ("RVDB_DRAIN_GRACE_MS", "0")];
    let mut serve = ServeProcess::start_with(&data, &dir.path().join("backups"), &env, None);
    let base = serve.http_url();
    let mcp = Mcp::new(&serve.mcp_url);
    let (status, _, body) =
        http("POST", &format!("{base}/v1/stores"), None, Some(json!({"name": "d", "dimension": 3, "shards": 2}))).await;
    assert_eq!(status, 201, "{body}");
    let upsert = |range: std::ops::Range<u32>| {
        let url = format!("{base}/v1/stores/d/points");
        async move { http("PUT", &url, None, Some(json!({"points": points(range)}))).await }
    };
    let (status, _, body) = upsert(0..500).await;
    assert_eq!(status, 200, "{body}");

    // Fill the disk to below the reserve (but not to zero).
    fill(&fs.0, &ballast, (reserve_mb << 20) / 2);
    let free = free_bytes(&fs.0);
    assert!(free < reserve_mb << 20, "the ballast left {free} bytes free");

    // Writes are refused, clearly, on every surface; nothing of them is applied.
    let (status, _, body) = upsert(500..600).await;
    assert_eq!(status, 507, "{body}");
    let err: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(err["error"]["code"], "insufficient_storage", "{body}");
    assert!(err["error"]["message"].as_str().unwrap().contains("disk is full"), "{body}");
    let refused = mcp.call("insert_vector", json!({"store": "d", "id": "x", "vector": [1, 2, 3]})).await;
    assert!(refused.as_ref().is_err_and(|e| e.contains("disk is full")), "{refused:?}");
    let (status, _, body) =
        http("POST", &format!("{base}/v1/stores/d/points/delete"), None, Some(json!({"ids": ["p1"]}))).await;
    assert_eq!(status, 507, "a delete writes a tombstone, refused too: {body}");
    let mut grpc = serve.stores().await;
    let refused = grpc
        .upsert_points(rvdb_proto::v1::UpsertPointsRequest {
            store: "d".into(),
            points: vec![rvdb_proto::v1::Point { id: "g".into(), vector: vec![1.0, 2.0, 3.0], ..Default::default() }],
        })
        .await
        .expect_err("gRPC upsert on a full disk");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted, "{refused:?}");

    // Reads keep working and see exactly the acknowledged writes.
    let count = |base: String| async move {
        let (status, _, body) = http("POST", &format!("{base}/v1/stores/d/points/count"), None, Some(json!({}))).await;
        assert_eq!(status, 200, "{body}");
        serde_json::from_str::<Value>(&body).unwrap()["count"].as_u64().unwrap()
    };
    assert_eq!(count(base.clone()).await, 500);
    let (status, _, body) =
        http("POST", &format!("{base}/v1/stores/d/search"), None, Some(json!({"vector": [3.0, 1.0, 3.0], "k": 1})))
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["results"][0]["id"], "p3");
    let got = mcp.call("get_vector", json!({"store": "d", "id": "p499"})).await.expect("get on a full disk");
    assert_eq!(got["found"], true);

    // Free the space: writes are taken again at once, no restart.
    std::fs::remove_file(&ballast).expect("remove ballast");
    let (status, _, body) = upsert(500..600).await;
    assert_eq!(status, 200, "after freeing space: {body}");
    mcp.call("insert_vector", json!({"store": "d", "id": "x", "vector": [1, 2, 3]})).await.expect("MCP write after");
    assert_eq!(count(base.clone()).await, 601);

    // Nothing acknowledged was lost: a hard kill and a restart on the same data find every point.
    drop(grpc);
    drop(serve);
    serve = ServeProcess::start_with(&data, &dir.path().join("backups"), &env, None);
    assert_eq!(count(serve.http_url()).await, 601);
    drop(serve);
}
