//! End-to-end tests of the storage node as a real process over gRPC on loopback with real RocksDB.

use rand::{Rng, SeedableRng};
use rvdb_it::NodeProcess;
use rvdb_proto::v1 as pb;
use tonic::Code;

const METRICS: [(pb::Metric, &str); 4] = [
    (pb::Metric::Cosine, "cosine"),
    (pb::Metric::Euclidean, "euclidean"),
    (pb::Metric::Manhattan, "manhattan"),
    (pb::Metric::Dot, "dot"),
];

fn shard(store: &str) -> Option<pb::ShardId> {
    Some(pb::ShardId { store: store.into(), shard: 0 })
}

fn config(name: &str, dim: u32, metric: pb::Metric) -> Option<pb::StoreConfig> {
    Some(pb::StoreConfig { name: name.into(), dimension: dim, metric: metric as i32, ..Default::default() })
}

fn reference_distance(metric: pb::Metric, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    match metric {
        pb::Metric::Cosine => {
            let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        }
        pb::Metric::Euclidean => a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).powi(2)).sum::<f64>().sqrt(),
        pb::Metric::Manhattan => a.iter().zip(b).map(|(x, y)| (*x as f64 - *y as f64).abs()).sum(),
        _ => -dot,
    }
}

fn brute_force(metric: pb::Metric, points: &[(String, Vec<f32>)], q: &[f32], k: usize) -> Vec<(String, f64)> {
    let mut all: Vec<(String, f64)> =
        points.iter().map(|(id, v)| (id.clone(), reference_distance(metric, q, v))).collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

fn random_points(rng: &mut impl Rng, n: usize, dim: usize) -> Vec<(String, Vec<f32>)> {
    (0..n).map(|i| (format!("pt-{i:05}"), (0..dim).map(|_| rng.random_range(-1.0f32..1.0)).collect())).collect()
}

async fn insert_all(
    client: &mut rvdb_proto::v1::storage_node_client::StorageNodeClient<tonic::transport::Channel>,
    store: &str,
    points: &[(String, Vec<f32>)],
) {
    for chunk in points.chunks(1000) {
        let batch = chunk
            .iter()
            .map(|(id, v)| pb::Point {
                id: id.clone(),
                vector: v.clone(),
                metadata_json: format!(r#"{{"id":"{id}"}}"#),
                version: 0,
            })
            .collect();
        let r = client
            .upsert(pb::UpsertRequest { shard: shard(store), points: batch, sync: false, placement_epoch: 0 })
            .await
            .expect("upsert")
            .into_inner();
        assert_eq!(r.applied as usize, chunk.len());
    }
}

async fn search_ids(
    client: &mut rvdb_proto::v1::storage_node_client::StorageNodeClient<tonic::transport::Channel>,
    store: &str,
    q: &[f32],
    k: u32,
) -> Vec<(String, f32)> {
    let r = client
        .search(pb::SearchRequest { shard: shard(store), vector: q.to_vec(), k, ..Default::default() })
        .await
        .expect("search")
        .into_inner();
    r.results.into_iter().map(|p| (p.id, p.distance)).collect()
}

/// The issue's acceptance test: 10,000 random 128-d vectors over gRPC, SIGKILL + restart, exact top-10 equal to
/// brute force for all four metrics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_vectors_survive_a_kill_and_search_exactly_for_every_metric() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let mut client = node.client().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2026);
    let points = random_points(&mut rng, 10_000, 128);
    for (metric, name) in METRICS {
        client
            .create_shard(pb::CreateShardRequest {
                shard: shard(name),
                config: config(name, 128, metric),
                placement_epoch: 0,
                filling: false,
            })
            .await
            .unwrap();
        insert_all(&mut client, name, &points).await;
    }
    drop(client);
    // Acknowledged writes must be in the WAL: kill -9, no shutdown code runs.
    let node = node.restart_after_kill();
    let mut client = node.client().await;
    let queries: Vec<Vec<f32>> = (0..25).map(|_| (0..128).map(|_| rng.random_range(-1.0f32..1.0)).collect()).collect();
    for (metric, name) in METRICS {
        let stats = client.stats(pb::StatsRequest { shard: shard(name) }).await.unwrap().into_inner().stats.unwrap();
        assert_eq!(stats.points, 10_000, "{name}: points after restart");
        for q in &queries {
            let got = search_ids(&mut client, name, q, 10).await;
            let want = brute_force(metric, &points, q, 10);
            let got_ids: Vec<&str> = got.iter().map(|(id, _)| id.as_str()).collect();
            let want_ids: Vec<&str> = want.iter().map(|(id, _)| id.as_str()).collect();
            assert_eq!(got_ids, want_ids, "{name}: top-10 differs from brute force");
            for ((_, g), (_, w)) in got.iter().zip(&want) {
                assert!((*g as f64 - w).abs() <= 1e-4 * w.abs().max(1.0), "{name}: distance {g} vs reference {w}");
            }
        }
    }
    // Vectors and metadata round-trip exactly.
    let got = client
        .get(pb::GetRequest {
            shard: shard("dot"),
            ids: vec!["pt-00042".into(), "missing".into()],
            with_vector: true,
            with_metadata: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.points.len(), 1);
    assert_eq!(got.points[0].vector, points[42].1, "vector must round-trip bit for bit");
    assert_eq!(got.points[0].metadata_json, r#"{"id":"pt-00042"}"#);
}

fn assert_status(r: Result<impl std::fmt::Debug, tonic::Status>, codes: &[Code], needle: &str) {
    let status = r.expect_err("request should have failed");
    assert!(codes.contains(&status.code()), "code {:?} (message: {})", status.code(), status.message());
    assert!(
        status.message().to_lowercase().contains(&needle.to_lowercase()),
        "message {:?} should mention {needle:?}",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_a_clear_error_and_leaves_data_intact() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let mut c = node.client().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let points = random_points(&mut rng, 200, 16);
    c.create_shard(pb::CreateShardRequest {
        shard: shard("docs"),
        config: config("docs", 16, pb::Metric::Cosine),
        placement_epoch: 0,
        filling: false,
    })
    .await
    .unwrap();
    insert_all(&mut c, "docs", &points).await;
    let q: Vec<f32> = (0..16).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let before = search_ids(&mut c, "docs", &q, 10).await;

    let upsert =
        |points: Vec<pb::Point>| pb::UpsertRequest { shard: shard("docs"), points, sync: false, placement_epoch: 0 };
    let good = |id: &str| pb::Point { id: id.into(), vector: vec![0.5; 16], metadata_json: String::new(), version: 0 };

    // wrong dimension (the batch also holds a good point: nothing of it may be written)
    let mut short = good("short");
    short.vector.pop();
    assert_status(
        c.upsert(upsert(vec![good("new-1"), short])).await,
        &[Code::InvalidArgument],
        "points[1]: vector has 15 dimensions, but the store expects 16",
    );
    // NaN and infinity
    let mut nan = good("nan");
    nan.vector[3] = f32::NAN;
    assert_status(c.upsert(upsert(vec![nan])).await, &[Code::InvalidArgument], "vector[3] is NaN");
    let mut inf = good("inf");
    inf.vector[0] = f32::INFINITY;
    assert_status(c.upsert(upsert(vec![inf])).await, &[Code::InvalidArgument], "finite");
    // zero vector under cosine
    let mut zero = good("zero");
    zero.vector = vec![0.0; 16];
    assert_status(c.upsert(upsert(vec![zero])).await, &[Code::InvalidArgument], "zero length");
    // empty id
    assert_status(c.upsert(upsert(vec![good("")])).await, &[Code::InvalidArgument], "it is empty");
    // metadata that is not an object
    let mut meta = good("meta");
    meta.metadata_json = "[1,2]".into();
    assert_status(c.upsert(upsert(vec![meta])).await, &[Code::InvalidArgument], "must be a JSON object");
    // unknown store
    assert_status(
        c.upsert(pb::UpsertRequest { shard: shard("nope"), points: vec![good("x")], sync: false, placement_epoch: 0 })
            .await,
        &[Code::NotFound],
        "'nope'/0 does not exist",
    );
    assert_status(
        c.search(pb::SearchRequest { shard: shard("nope"), vector: q.clone(), k: 3, ..Default::default() }).await,
        &[Code::NotFound],
        "does not exist",
    );
    // duplicate store
    assert_status(
        c.create_shard(pb::CreateShardRequest {
            shard: shard("docs"),
            config: config("docs", 16, pb::Metric::Cosine),
            placement_epoch: 0,
            filling: false,
        })
        .await,
        &[Code::AlreadyExists],
        "already exists",
    );
    // bad store name, bad dimension, bad metric
    assert_status(
        c.create_shard(pb::CreateShardRequest {
            shard: shard("a/b"),
            config: config("a/b", 16, pb::Metric::Cosine),
            placement_epoch: 0,
            filling: false,
        })
        .await,
        &[Code::InvalidArgument],
        "only letters",
    );
    assert_status(
        c.create_shard(pb::CreateShardRequest {
            shard: shard("d0"),
            config: config("d0", 0, pb::Metric::Cosine),
            placement_epoch: 0,
            filling: false,
        })
        .await,
        &[Code::InvalidArgument],
        "invalid dimension 0",
    );
    assert_status(
        c.create_shard(pb::CreateShardRequest {
            shard: shard("m0"),
            config: config("m0", 4, pb::Metric::Unspecified),
            placement_epoch: 0,
            filling: false,
        })
        .await,
        &[Code::InvalidArgument],
        "metric is required",
    );
    // bad searches
    assert_status(
        c.search(pb::SearchRequest { shard: shard("docs"), vector: q.clone(), k: 0, ..Default::default() }).await,
        &[Code::InvalidArgument],
        "invalid k 0",
    );
    assert_status(
        c.search(pb::SearchRequest { shard: shard("docs"), vector: vec![1.0; 3], k: 3, ..Default::default() }).await,
        &[Code::InvalidArgument],
        "expects 16",
    );
    // a 100 MB request
    let huge: Vec<pb::Point> = (0..1600)
        .map(|i| pb::Point {
            id: format!("huge-{i}"),
            vector: vec![0.25; 16],
            metadata_json: format!(r#"{{"pad":"{}"}}"#, "x".repeat(64_000)),
            version: 0,
        })
        .collect();
    let r = c.upsert(upsert(huge)).await;
    assert_status(r, &[Code::OutOfRange, Code::ResourceExhausted], "too large");

    // Nothing changed: same count, same results, and the node still serves.
    let mut c = node.client().await;
    let stats = c.stats(pb::StatsRequest { shard: shard("docs") }).await.unwrap().into_inner().stats.unwrap();
    assert_eq!(stats.points, 200);
    assert_eq!(search_ids(&mut c, "docs", &q, 10).await, before);
    let got = c
        .get(pb::GetRequest { shard: shard("docs"), ids: vec!["new-1".into(), "huge-0".into()], ..Default::default() })
        .await
        .unwrap();
    assert!(got.into_inner().points.is_empty(), "no point of a refused batch may be stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_store_is_contained_and_the_store_reloads_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_with_env(dir.path(), &[("RVDB_FAULT_PANIC_ID", "boom"), ("RUST_BACKTRACE", "0")]);
    let mut c = node.client().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(9);
    let points = random_points(&mut rng, 500, 8);
    for store in ["victim", "bystander"] {
        c.create_shard(pb::CreateShardRequest {
            shard: shard(store),
            config: config(store, 8, pb::Metric::Euclidean),
            placement_epoch: 0,
            filling: false,
        })
        .await
        .unwrap();
        insert_all(&mut c, store, &points).await;
    }
    let q = points[7].1.clone();
    let before = search_ids(&mut c, "bystander", &q, 5).await;

    let boom = pb::Point { id: "boom".into(), vector: vec![0.1; 8], metadata_json: String::new(), version: 0 };
    let r = c
        .upsert(pb::UpsertRequest { shard: shard("victim"), points: vec![boom], sync: false, placement_epoch: 0 })
        .await;
    assert_status(r, &[Code::Internal], "reloaded from disk");

    // The other store never noticed; the victim serves again, rebuilt from RocksDB.
    assert_eq!(search_ids(&mut c, "bystander", &q, 5).await, before);
    let victim = search_ids(&mut c, "victim", &q, 5).await;
    assert_eq!(victim[0].0, "pt-00007");
    let stats = c.stats(pb::StatsRequest { shard: shard("victim") }).await.unwrap().into_inner().stats.unwrap();
    // The batch reached the WAL before the index panicked, so the reloaded shard holds it.
    assert_eq!(stats.points, 501);
    insert_all(&mut c, "victim", &random_points(&mut rng, 10, 8)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scan_delete_flush_list_and_drop_over_grpc() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let mut c = node.client().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let points = random_points(&mut rng, 2_500, 4);
    c.create_shard(pb::CreateShardRequest {
        shard: shard("s"),
        config: config("s", 4, pb::Metric::Manhattan),
        placement_epoch: 0,
        filling: false,
    })
    .await
    .unwrap();
    c.create_shard(pb::CreateShardRequest {
        shard: shard("t"),
        config: config("t", 4, pb::Metric::Dot),
        placement_epoch: 0,
        filling: false,
    })
    .await
    .unwrap();
    insert_all(&mut c, "s", &points).await;

    let doomed: Vec<String> = points.iter().step_by(10).map(|(id, _)| id.clone()).collect();
    let r = c
        .delete(pb::DeleteRequest {
            shard: shard("s"),
            ids: doomed.clone(),
            version: 0,
            sync: true,
            placement_epoch: 0,
        })
        .await
        .unwrap();
    assert_eq!(r.into_inner().deleted as usize, doomed.len());
    // deleting again finds nothing live
    let r = c
        .delete(pb::DeleteRequest {
            shard: shard("s"),
            ids: doomed[..3].to_vec(),
            version: 0,
            sync: false,
            placement_epoch: 0,
        })
        .await
        .unwrap();
    assert_eq!(r.into_inner().deleted, 0);
    c.flush(pb::FlushRequest { shard: shard("s") }).await.unwrap();
    c.flush(pb::FlushRequest { shard: None }).await.unwrap();

    // Scan streams every live point exactly once, in id order, with exact vectors; resumes after a cursor.
    let mut stream = c
        .scan(pb::ScanRequest {
            shard: shard("s"),
            start_after: String::new(),
            chunk_size: 300,
            with_vector: true,
            with_metadata: true,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut scanned = Vec::new();
    let mut chunks = 0;
    while let Some(chunk) = stream.message().await.unwrap() {
        assert!(chunk.points.len() <= 300);
        chunks += 1;
        scanned.extend(chunk.points);
    }
    let live: Vec<&(String, Vec<f32>)> = points.iter().filter(|(id, _)| !doomed.contains(id)).collect();
    assert_eq!(scanned.len(), live.len());
    assert!(chunks >= live.len() / 300);
    for (got, want) in scanned.iter().zip(&live) {
        assert_eq!(&got.id, &want.0);
        assert_eq!(&got.vector, &want.1);
        assert_eq!(got.metadata_json, format!(r#"{{"id":"{}"}}"#, want.0));
    }
    let cursor = scanned[999].id.clone();
    let mut rest = c
        .scan(pb::ScanRequest {
            shard: shard("s"),
            start_after: cursor,
            chunk_size: 0,
            with_vector: false,
            with_metadata: false,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut n = 0;
    while let Some(chunk) = rest.message().await.unwrap() {
        assert!(chunk.points.iter().all(|p| p.vector.is_empty() && p.metadata_json.is_empty()));
        n += chunk.points.len();
    }
    assert_eq!(n, live.len() - 1000);

    // A sample: distinct live points (never a deleted one), in id order, the same for the same seed, another for
    // another seed; all of them when fewer than asked.
    let sample = |seed: u64, n: u32| {
        let mut c = c.clone();
        async move {
            let req = pb::ScanRequest { shard: shard("s"), sample: n, seed, with_vector: true, ..Default::default() };
            let mut stream = c.scan(req).await.unwrap().into_inner();
            let mut got = Vec::new();
            while let Some(chunk) = stream.message().await.unwrap() {
                got.extend(chunk.points);
            }
            got
        }
    };
    let (a, b, again) = (sample(1, 100).await, sample(2, 100).await, sample(1, 100).await);
    assert_eq!(a.len(), 100);
    assert!(a.windows(2).all(|w| w[0].id < w[1].id), "in id order, distinct");
    assert!(a.iter().all(|p| !doomed.contains(&p.id) && live.iter().any(|(id, v)| id == &p.id && v == &p.vector)));
    assert_eq!(a.iter().map(|p| &p.id).collect::<Vec<_>>(), again.iter().map(|p| &p.id).collect::<Vec<_>>());
    assert_ne!(a.iter().map(|p| &p.id).collect::<Vec<_>>(), b.iter().map(|p| &p.id).collect::<Vec<_>>());
    assert_eq!(sample(3, u32::MAX).await.len(), live.len(), "fewer points than asked: all of them");
    // uniform: the sample's mean position in id order is near the middle (100 draws: σ ≈ 0.029)
    let rank = |id: &String| live.iter().position(|(l, _)| l == id).unwrap() as f64 / live.len() as f64;
    let mean = a.iter().map(|p| rank(&p.id)).sum::<f64>() / a.len() as f64;
    assert!((mean - 0.5).abs() < 0.15, "mean rank {mean}");

    let list = c.list_shards(pb::ListShardsRequest {}).await.unwrap().into_inner().shards;
    let counts: Vec<(String, u64, u64)> =
        list.iter().map(|s| (s.shard.clone().unwrap().store, s.points, s.tombstones)).collect();
    assert_eq!(counts, vec![("s".into(), live.len() as u64, doomed.len() as u64), ("t".into(), 0, 0)]);

    c.drop_shard(pb::DropShardRequest { shard: shard("s") }).await.unwrap();
    assert_status(c.drop_shard(pb::DropShardRequest { shard: shard("s") }).await, &[Code::NotFound], "does not exist");
    // The drop is durable and the other store is intact after a restart.
    drop(c);
    let node = node.restart_after_kill();
    let mut c = node.client().await;
    let list = c.list_shards(pb::ListShardsRequest {}).await.unwrap().into_inner().shards;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].shard.as_ref().unwrap().store, "t");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hnsw_store_over_grpc_filters_rebuilds_and_resumes_its_graph_after_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start(dir.path());
    let mut client = node.client().await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(99);
    let points = random_points(&mut rng, 5000, 32);
    let mut cfg = config("g", 32, pb::Metric::Euclidean).unwrap();
    cfg.index = Some(pb::IndexSpec { kind: pb::IndexKind::Hnsw as i32, hnsw: None, quantization: 0 });
    client
        .create_shard(pb::CreateShardRequest {
            shard: shard("g"),
            config: Some(cfg),
            placement_epoch: 0,
            filling: false,
        })
        .await
        .unwrap();
    client
        .create_shard(pb::CreateShardRequest {
            shard: shard("f"),
            config: config("f", 32, pb::Metric::Euclidean),
            placement_epoch: 0,
            filling: false,
        })
        .await
        .unwrap();
    insert_all(&mut client, "g", &points).await;
    async fn wait_ready(
        client: &mut rvdb_proto::v1::storage_node_client::StorageNodeClient<tonic::transport::Channel>,
    ) {
        for _ in 0..600 {
            let s = client.stats(pb::StatsRequest { shard: shard("g") }).await.unwrap().into_inner().stats.unwrap();
            if s.index_status == "ready" {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the graph was never ready");
    }
    wait_ready(&mut client).await;
    let q: Vec<f32> = (0..32).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    let search = |filter: &str, ef: u32, exact: bool| pb::SearchRequest {
        shard: shard("g"),
        vector: q.clone(),
        k: 10,
        with_metadata: true,
        filter_json: filter.into(),
        ef,
        exact,
        ..Default::default()
    };
    let graph = client.search(search("", 400, false)).await.unwrap().into_inner();
    assert_eq!(graph.plan, "hnsw");
    let exact = client.search(search("", 0, true)).await.unwrap().into_inner();
    assert_eq!(exact.plan, "flat");
    let ids = |r: &pb::SearchResponse| r.results.iter().map(|p| p.id.clone()).collect::<Vec<_>>();
    let want: Vec<String> = brute_force(pb::Metric::Euclidean, &points, &q, 10).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids(&exact), want);
    assert!(ids(&graph).iter().filter(|id| want.contains(id)).count() >= 9);
    // A filter on a metadata value: exactly the one point carrying it.
    let one = client.search(search(r#"{"must":[{"key":"id","match":{"value":"pt-00042"}}]}"#, 0, false)).await.unwrap();
    let one = one.into_inner();
    assert_eq!((ids(&one), one.plan.as_str()), (vec!["pt-00042".to_string()], "candidates"));
    assert_eq!(one.results[0].metadata_json, r#"{"id":"pt-00042"}"#);
    assert_status(
        client.search(search(r#"{"must":[{"key":"id","range":{"gt":"a"}}]}"#, 0, false)).await,
        &[Code::InvalidArgument],
        "filter.must[0].range.gt",
    );
    assert_status(client.search(search("{not json", 0, false)).await, &[Code::InvalidArgument], "filter_json");
    // Index lifecycle: a rebuild runs in the background; a flat store has nothing to rebuild.
    let r = client.rebuild_index(pb::RebuildIndexRequest { shard: shard("g") }).await.unwrap().into_inner();
    assert!(r.started);
    assert_status(
        client.rebuild_index(pb::RebuildIndexRequest { shard: shard("f") }).await,
        &[Code::InvalidArgument],
        "flat index",
    );
    wait_ready(&mut client).await;
    client.flush(pb::FlushRequest { shard: shard("g") }).await.unwrap();
    assert!(dir.path().join("hnsw").join("g#0.hnsw").exists(), "sync writes the graph snapshot");
    drop(client);
    let node = node.restart_after_kill();
    let mut client = node.client().await;
    wait_ready(&mut client).await;
    assert_eq!(ids(&client.search(search("", 400, false)).await.unwrap().into_inner()), ids(&graph));
}
