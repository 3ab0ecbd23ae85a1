//! Backups over gRPC (`rvdb.v1.BackupService` on the gateway of a real `rvdb serve` process): backup while writes
//! continue, list, restore onto another shard count, a damaged backup refused with nothing created, JSON export /
//! import round trip; kill -9 during a restore or an import leaves no half-filled store after a restart, and the
//! temporaries of interrupted backups and exports are removed at start.

use rand::{Rng, SeedableRng};
use rvdb_it::ServeProcess;
use rvdb_proto::v1 as pb;
use tonic::Code;

fn shard(store: &str, shard: u32) -> Option<pb::ShardId> {
    Some(pb::ShardId { store: store.into(), shard })
}

/// Creates a store through the gateway's REST API (the one catalog: the in-process manager's).
async fn create_store(serve: &ServeProcess, body: serde_json::Value) {
    let (status, _, text) = rvdb_it::http("POST", &format!("{}/v1/stores", serve.http_url()), None, Some(body)).await;
    assert_eq!(status, 201, "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_export_import_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let backup_dir = dir.path().join("backups");
    let serve = ServeProcess::start(&dir.path().join("data"), &backup_dir);
    let mut node = serve.node().await;
    let mut backups = serve.backups().await;

    // A one-shard store made through the gateway (the catalog), filled directly on its node's only replica.
    create_store(&serve, serde_json::json!({"name": "g", "dimension": 8, "metric": "dot"})).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let points: Vec<pb::Point> = (0..2000)
        .map(|i| pb::Point {
            id: format!("id{i:04}"),
            vector: (0..8).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            metadata_json: format!(r#"{{"i":{i}}}"#),
            version: 0,
        })
        .collect();
    node.upsert(pb::UpsertRequest { shard: shard("g", 0), points: points.clone(), sync: false, placement_epoch: 0 })
        .await
        .unwrap();

    // Writes keep flowing while the backup runs; the backup is one consistent view of at least the first 2000.
    let writer = {
        let mut node = serve.node().await;
        tokio::spawn(async move {
            for i in 0..50 {
                let p = pb::Point {
                    id: format!("during{i}"),
                    vector: vec![0.5; 8],
                    metadata_json: String::new(),
                    version: 0,
                };
                node.upsert(pb::UpsertRequest {
                    shard: shard("g", 0),
                    points: vec![p],
                    sync: false,
                    placement_epoch: 0,
                })
                .await
                .unwrap();
            }
        })
    };
    let info = backups.backup(pb::BackupRequest { store: "g".into(), name: "snap".into() }).await.unwrap().into_inner();
    writer.await.unwrap();
    assert!(info.points >= 2000 && info.points <= 2050, "{}", info.points);
    assert!(info.bytes > 0);
    let listed = backups.list_backups(pb::ListBackupsRequest { store: "g".into() }).await.unwrap().into_inner().backups;
    assert_eq!(listed.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), vec!["snap"]);

    let restored = backups
        .restore(pb::RestoreRequest { backup: "snap".into(), store: "g2".into(), shards: 4 })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((restored.points, restored.shards), (info.points, 4));
    // Every point of the backup is in the restored store, exactly: read it back shard by shard.
    let mut found = Vec::new();
    for s in 0..4 {
        let r = node
            .get(pb::GetRequest {
                shard: shard("g2", s),
                ids: vec!["id0000".into(), "id1999".into()],
                with_vector: true,
                with_metadata: true,
            })
            .await
            .unwrap()
            .into_inner();
        found.extend(r.points);
    }
    found.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(found.len(), 2);
    assert_eq!(found[0].vector, points[0].vector);
    assert_eq!(found[1].metadata_json, r#"{"i":1999}"#);

    // Damage the backup: restore refuses it and creates nothing.
    let file = std::fs::read_dir(backup_dir.join("snap"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "zst"))
        .unwrap();
    let mut bytes = std::fs::read(&file).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x55;
    std::fs::write(&file, bytes).unwrap();
    let err =
        backups.restore(pb::RestoreRequest { backup: "snap".into(), store: "g3".into(), shards: 0 }).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("corrupted"), "{}", err.message());
    let shards = node.list_shards(pb::ListShardsRequest {}).await.unwrap().into_inner().shards;
    assert!(shards.iter().all(|s| s.shard.as_ref().unwrap().store != "g3"), "nothing of g3 may exist");

    // JSON Lines export / import, with exactly the file name the export returned.
    let exported =
        backups.export(pb::ExportRequest { store: "g".into(), file: "g.jsonl".into() }).await.unwrap().into_inner();
    assert_eq!(exported.points, 2050);
    assert_eq!(exported.file, "g.jsonl");
    assert_eq!(std::path::Path::new(&exported.path), backup_dir.join("exports").join("g.jsonl"));
    let imported =
        backups.import(pb::ImportRequest { file: exported.file, store: "g4".into() }).await.unwrap().into_inner();
    assert_eq!(imported.points, 2050);
    let got = node
        .get(pb::GetRequest {
            shard: shard("g4", 0),
            ids: vec!["id0042".into()],
            with_vector: true,
            with_metadata: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.points[0].vector, points[42].vector, "vectors round-trip exactly through JSON");

    // Errors carry status codes.
    let e = backups.backup(pb::BackupRequest { store: "missing".into(), name: String::new() }).await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = backups.backup(pb::BackupRequest { store: "g".into(), name: "snap".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    let e = backups.import(pb::ImportRequest { file: "../x".into(), store: "g5".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = backups.backup(pb::BackupRequest { store: "g".into(), name: "exports".into() }).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "exports is reserved for the export directory");
}

/// Points of `store` shard 0 on the node (0 while the shard does not exist).
async fn points_on_node(
    node: &mut pb::storage_node_client::StorageNodeClient<tonic::transport::Channel>,
    store: &str,
) -> u64 {
    match node.stats(pb::StatsRequest { shard: shard(store, 0) }).await {
        Ok(r) => r.into_inner().stats.map_or(0, |s| s.points),
        Err(_) => 0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_during_restore_or_import_leaves_no_half_store_and_a_retry_succeeds() {
    const N: u64 = 150_000;
    let dir = tempfile::tempdir().unwrap();
    let (data_dir, backup_dir) = (dir.path().join("data"), dir.path().join("backups"));
    let mut serve = ServeProcess::start(&data_dir, &backup_dir);
    let mut node = serve.node().await;
    create_store(&serve, serde_json::json!({"name": "big", "dimension": 2, "metric": "euclidean"})).await;
    for start in (0..N).step_by(10_000) {
        let points = (start..start + 10_000)
            .map(|i| pb::Point {
                id: format!("{i}"),
                vector: vec![i as f32, 1.0],
                metadata_json: String::new(),
                version: 0,
            })
            .collect();
        node.upsert(pb::UpsertRequest { shard: shard("big", 0), points, sync: false, placement_epoch: 0 })
            .await
            .unwrap();
    }
    let mut backups = serve.backups().await;
    backups.backup(pb::BackupRequest { store: "big".into(), name: "snap".into() }).await.unwrap();
    let exported =
        backups.export(pb::ExportRequest { store: "big".into(), file: "big.jsonl".into() }).await.unwrap().into_inner();
    assert_eq!(exported.points, N);

    for (op, target) in [("restore", "restored"), ("import", "imported")] {
        let run = |mut backups: pb::backup_service_client::BackupServiceClient<tonic::transport::Channel>| {
            let file = exported.file.clone();
            async move {
                match op {
                    "restore" => backups
                        .restore(pb::RestoreRequest { backup: "snap".into(), store: target.into(), shards: 0 })
                        .await
                        .map(|r| r.into_inner().points),
                    _ => backups
                        .import(pb::ImportRequest { file, store: target.into() })
                        .await
                        .map(|r| r.into_inner().points),
                }
            }
        };
        // kill -9 once the store is filling.
        let call = tokio::spawn(run(serve.backups().await));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let n = points_on_node(&mut node, target).await;
            if n >= 5_000 {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "the {op} never got underway");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        drop(serve);
        let outcome = call.await.unwrap();
        assert!(outcome.is_err(), "the {op} finished before the kill ({outcome:?}): make it bigger");
        // What interrupted backups and exports leave (a pid that cannot run; an older name without one).
        let tmp_backup = backup_dir.join(".bk1.tmp-4000000000-1700000000000-0");
        std::fs::create_dir_all(&tmp_backup).unwrap();
        std::fs::write(tmp_backup.join("points-00000.bin.zst"), b"partial").unwrap();
        let tmp_export = backup_dir.join("exports").join(".ex1.jsonl.tmp-1700000000000");
        std::fs::write(&tmp_export, b"partial").unwrap();

        serve = ServeProcess::start(&data_dir, &backup_dir);
        node = serve.node().await;
        let shards = node.list_shards(pb::ListShardsRequest {}).await.unwrap().into_inner().shards;
        assert!(
            shards.iter().all(|s| s.shard.as_ref().unwrap().store != target),
            "after kill -9 mid-{op} and a restart, the half-filled store '{target}' must be gone"
        );
        assert!(!tmp_backup.exists() && !tmp_export.exists(), "temporaries are removed at start");
        let hidden: Vec<_> = std::fs::read_dir(&backup_dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        assert!(hidden.is_empty(), "{hidden:?}");

        let retried = run(serve.backups().await).await.unwrap_or_else(|e| panic!("retrying the {op}: {e}"));
        assert_eq!(retried, N);
        assert_eq!(points_on_node(&mut node, target).await, N);
    }
    let listed = serve.backups().await.list_backups(pb::ListBackupsRequest::default()).await.unwrap().into_inner();
    assert_eq!(listed.backups.iter().map(|b| b.name.as_str()).collect::<Vec<_>>(), vec!["snap"]);
}
