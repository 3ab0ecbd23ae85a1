//! Durability: SIGKILL a node while clients stream writes and deletes; after a restart every acknowledged write is
//! there and every acknowledged delete stays done.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rvdb_it::NodeProcess;
use rvdb_proto::v1 as pb;

fn shard(store: &str) -> Option<pb::ShardId> {
    Some(pb::ShardId { store: store.into(), shard: 0 })
}

/// What the node acknowledged for an id: a write of the writer's round tag, or a delete made after that round.
#[derive(Debug, Clone, Copy)]
enum Ack {
    Written(f32),
    Deleted(f32),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_write_survives_sigkill_during_a_write_stream() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start(dir.path());
    let mut c = node.client().await;
    let config =
        pb::StoreConfig { name: "d".into(), dimension: 16, metric: pb::Metric::Euclidean as i32, ..Default::default() };
    c.create_shard(pb::CreateShardRequest {
        shard: shard("d"),
        config: Some(config),
        placement_epoch: 0,
        filling: false,
    })
    .await
    .unwrap();

    // Two writers stream batches (inserts, overwrites and deletes); each records what the node acknowledged.
    let acked: Arc<Mutex<HashMap<String, Ack>>> = Arc::default();
    let mut writers = Vec::new();
    for w in 0..2u32 {
        let (mut c, acked) = (node.client().await, acked.clone());
        writers.push(tokio::spawn(async move {
            for round in 0u32.. {
                let tag = (w * 1_000_000 + round) as f32;
                let points: Vec<pb::Point> = (0..50)
                    .map(|i| pb::Point {
                        id: format!("w{w}-{}", (round * 50 + i) % 4000),
                        vector: vec![tag; 16],
                        metadata_json: String::new(),
                        version: 0,
                    })
                    .collect();
                let ids: Vec<String> = points.iter().map(|p| p.id.clone()).collect();
                if c.upsert(pb::UpsertRequest { shard: shard("d"), points, sync: false, placement_epoch: 0 })
                    .await
                    .is_err()
                {
                    return round;
                }
                {
                    let mut a = acked.lock().unwrap();
                    for id in &ids {
                        a.insert(id.clone(), Ack::Written(tag));
                    }
                }
                if round % 7 == 3 {
                    let doomed = vec![ids[0].clone(), ids[1].clone()];
                    {
                        // While the delete is in flight either outcome is correct: stop asserting on these ids.
                        let mut a = acked.lock().unwrap();
                        for id in &doomed {
                            a.remove(id);
                        }
                    }
                    if c.delete(pb::DeleteRequest {
                        shard: shard("d"),
                        ids: doomed.clone(),
                        version: 0,
                        sync: false,
                        placement_epoch: 0,
                    })
                    .await
                    .is_err()
                    {
                        return round;
                    }
                    let mut a = acked.lock().unwrap();
                    for id in doomed {
                        a.insert(id, Ack::Deleted(tag));
                    }
                    drop(a);
                }
            }
            unreachable!()
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill(); // SIGKILL while both writers are mid-stream
    let mut rounds = 0;
    for w in writers {
        rounds += w.await.unwrap();
    }
    assert!(rounds > 20, "the writers should have been busy when the node died ({rounds} rounds)");

    let node = NodeProcess::start(dir.path());
    let mut c = node.client().await;
    let acked = acked.lock().unwrap().clone();
    let ids: Vec<String> = acked.keys().cloned().collect();
    let mut stored: HashMap<String, f32> = HashMap::new();
    for chunk in ids.chunks(1000) {
        let r = c
            .get(pb::GetRequest { shard: shard("d"), ids: chunk.to_vec(), with_vector: true, with_metadata: false })
            .await
            .unwrap()
            .into_inner();
        for p in r.points {
            stored.insert(p.id, p.vector[0]);
        }
    }
    let (mut lost, mut resurrected, mut deletes) = (0, 0, 0);
    for (id, want) in &acked {
        match (want, stored.get(id)) {
            // The acknowledged value, or a later one whose ack was cut off by the kill (never an older one, never
            // none).
            (Ack::Written(tag), Some(got)) if got >= tag => {}
            (Ack::Written(tag), other) => {
                lost += 1;
                eprintln!("{id}: acknowledged {tag}, found {other:?}");
            }
            // An acknowledged delete stays deleted, unless a later write of the id was cut off by the kill.
            (Ack::Deleted(_), None) => deletes += 1,
            (Ack::Deleted(tag), Some(got)) if got > tag => deletes += 1,
            (Ack::Deleted(tag), Some(got)) => {
                resurrected += 1;
                eprintln!("{id}: deleted after {tag}, found {got} again");
            }
        }
    }
    assert!(deletes > 0, "the writers acknowledged deletes before the kill");
    assert_eq!(resurrected, 0, "acknowledged deletes undone after SIGKILL");
    assert_eq!(lost, 0, "acknowledged writes lost after SIGKILL ({} acknowledged ids)", acked.len());
    eprintln!("SIGKILL test: {} ids acknowledged over {rounds} rounds, all present after restart", acked.len());
}
