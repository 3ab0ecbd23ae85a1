//! Backups over gRPC (`rvdb.v1.BackupService` on the gateway of a real `rvdb serve` process): backup while writes
//! continue, list, restore onto another shard count, a damaged backup refused with nothing created, JSON export /
//! import round trip.

use rand::{Rng, SeedableRng};
use rvdb_it::ServeProcess;
use rvdb_proto::v1 as pb;
use tonic::Code;

fn shard(store: &str, shard: u32) -> Option<pb::ShardId> {
    Some(pb::ShardId { store: store.into(), shard })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_restore_export_import_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let backup_dir = dir.path().join("backups");
    let serve = ServeProcess::start(&dir.path().join("data"), &backup_dir);
    let mut node = serve.node().await;
    let mut backups = serve.backups().await;

    // A store made directly on the node: the gateway discovers it on first use.
    let config =
        pb::StoreConfig { name: "g".into(), dimension: 8, metric: pb::Metric::Dot as i32, ..Default::default() };
    node.create_shard(pb::CreateShardRequest { shard: shard("g", 0), config: Some(config) }).await.unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(4);
    let points: Vec<pb::Point> = (0..2000)
        .map(|i| pb::Point {
            id: format!("id{i:04}"),
            vector: (0..8).map(|_| rng.random_range(-1.0f32..1.0)).collect(),
            metadata_json: format!(r#"{{"i":{i}}}"#),
            version: 0,
        })
        .collect();
    node.upsert(pb::UpsertRequest { shard: shard("g", 0), points: points.clone(), sync: false }).await.unwrap();

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
                node.upsert(pb::UpsertRequest { shard: shard("g", 0), points: vec![p], sync: false }).await.unwrap();
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

    // JSON Lines export / import.
    let exported =
        backups.export(pb::ExportRequest { store: "g".into(), file: "g.jsonl".into() }).await.unwrap().into_inner();
    assert_eq!(exported.points, 2050);
    let imported =
        backups.import(pb::ImportRequest { file: "g.jsonl".into(), store: "g4".into() }).await.unwrap().into_inner();
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
}
