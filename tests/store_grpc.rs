//! The gateway's `rvdb.v1.StoreService` against a real `rvdb serve`: every store and point operation over gRPC,
//! answering as REST does for the same store (same hits and distances, same stats), and the bad inputs of the
//! surface-parity table (`tests/mcp/test_parity.py`) refused with the status code REST's error code stands for.

use rvdb_it::{ServeProcess, http};
use rvdb_proto::v1 as pb;
use serde_json::{Value, json};
use tonic::Code;

fn point(id: &str, vector: &[f32], metadata: Value) -> pb::Point {
    pb::Point { id: id.into(), vector: vector.to_vec(), metadata_json: metadata.to_string(), version: 0 }
}

fn search(store: &str, vector: &[f32]) -> pb::SearchPointsRequest {
    pb::SearchPointsRequest { store: store.into(), vector: vector.to_vec(), ..Default::default() }
}

fn new_store(name: &str, dimension: u32) -> pb::NewStore {
    pb::NewStore { name: name.into(), dimension, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_and_points_over_grpc_answer_as_rest() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(&dir.path().join("data"), &dir.path().join("backups"));
    let mut g = serve.stores().await;
    let created = g
        .create_store(pb::NewStore { metric: Some("euclidean".into()), shards: Some(2), ..new_store("p", 3) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((created.name.as_str(), created.metric.as_str(), created.shards), ("p", "euclidean", 2));
    let points = vec![
        point("a", &[0.0, 0.0, 0.0], json!({"n": 0})),
        point("b", &[1.0, 0.0, 0.0], json!({"n": 1})),
        point("c", &[2.0, 0.0, 0.0], json!({"n": 2})),
    ];
    let up = g.upsert_points(pb::UpsertPointsRequest { store: "p".into(), points }).await.unwrap().into_inner();
    assert_eq!((up.inserted, up.stale), (3, 0));

    let filter = json!({"must": [{"key": "n", "range": {"gte": 1}}]});
    let req = pb::SearchPointsRequest { k: Some(2), filter_json: filter.to_string(), ..search("p", &[0.9, 0.0, 0.0]) };
    let hits = g.search_points(req).await.unwrap().into_inner().results;
    let got: Vec<(String, f32, Value)> =
        hits.iter().map(|h| (h.id.clone(), h.distance, serde_json::from_str(&h.metadata_json).unwrap())).collect();
    let body = json!({"vector": [0.9, 0, 0], "k": 2, "filter": filter});
    let (status, _, text) = http("POST", &format!("{}/v1/stores/p/search", serve.http_url()), None, Some(body)).await;
    assert_eq!(status, 200, "{text}");
    let rest: Value = serde_json::from_str(&text).unwrap();
    let rest: Vec<(String, f32, Value)> = rest["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| (h["id"].as_str().unwrap().to_string(), h["distance"].as_f64().unwrap() as f32, h["metadata"].clone()))
        .collect();
    assert_eq!(got, rest, "gRPC and REST give the same hits");
    assert_eq!(got.iter().map(|h| h.0.as_str()).collect::<Vec<_>>(), ["b", "c"]);
    assert!((got[0].1 - 0.1).abs() < 1e-6, "{got:?}");

    let got = g
        .get_points(pb::GetPointsRequest {
            store: "p".into(),
            ids: vec!["c".into(), "zz".into()],
            without_vector: false,
        })
        .await
        .unwrap()
        .into_inner()
        .points;
    assert_eq!(got.len(), 1);
    assert_eq!((got[0].id.as_str(), got[0].vector.as_slice()), ("c", [2.0f32, 0.0, 0.0].as_slice()));
    let deleted = g.delete_points(pb::DeletePointsRequest { store: "p".into(), ids: vec!["a".into(), "zz".into()] });
    assert_eq!(deleted.await.unwrap().into_inner().deleted, 1);
    g.sync_store(pb::StoreRef { name: "p".into() }).await.unwrap();
    let described = g.describe_store(pb::StoreRef { name: "p".into() }).await.unwrap().into_inner();
    let (status, _, text) = http("GET", &format!("{}/v1/stores/p", serve.http_url()), None, None).await;
    assert_eq!(status, 200, "{text}");
    let rest: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(described.points, 2);
    assert_eq!(rest["points"], described.points);
    assert_eq!(rest["shards"], described.shards);
    let listed = g.list_stores(pb::ListStoreSummariesRequest {}).await.unwrap().into_inner().stores;
    assert_eq!(listed.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["p"]);

    // the bad rows of the parity table, with the code REST's error code stands for
    let bad_searches = [
        (search("p", &[1.0, 2.0]), Code::InvalidArgument),
        (search("p", &[1e39_f64 as f32, 0.0, 0.0]), Code::InvalidArgument),
        (search("nope", &[1.0, 2.0, 3.0]), Code::NotFound),
        (pb::SearchPointsRequest { k: Some(0), ..search("p", &[1.0, 2.0, 3.0]) }, Code::InvalidArgument),
        (pb::SearchPointsRequest { ef: Some(1_000_000_000), ..search("p", &[1.0, 2.0, 3.0]) }, Code::InvalidArgument),
        (
            pb::SearchPointsRequest {
                filter_json: r#"{"must": [{"key": "n", "bogus": 1}]}"#.into(),
                ..search("p", &[1.0, 2.0, 3.0])
            },
            Code::InvalidArgument,
        ),
        (
            pb::SearchPointsRequest { filter_json: "{not json".into(), ..search("p", &[1.0, 2.0, 3.0]) },
            Code::InvalidArgument,
        ),
    ];
    for (req, code) in bad_searches {
        let err = g.search_points(req.clone()).await.expect_err("refused");
        assert_eq!(err.code(), code, "{req:?}: {}", err.message());
    }
    let bad_creates = [
        (new_store("p", 3), Code::AlreadyExists),
        (new_store("a b", 3), Code::InvalidArgument),
        (new_store("d0", 0), Code::InvalidArgument),
        (pb::NewStore { metric: Some("bogus".into()), ..new_store("m0", 3) }, Code::InvalidArgument),
        (pb::NewStore { shards: Some(0), ..new_store("s0", 3) }, Code::InvalidArgument),
        (pb::NewStore { replication_factor: Some(2), ..new_store("r2", 3) }, Code::InvalidArgument),
        (pb::NewStore { m: Some(1000), ..new_store("mf", 3) }, Code::InvalidArgument),
        (pb::NewStore { index: Some("ivf".into()), ..new_store("ui", 3) }, Code::InvalidArgument),
    ];
    for (req, code) in bad_creates {
        let err = g.create_store(req.clone()).await.expect_err("refused");
        assert_eq!(err.code(), code, "{req:?}: {}", err.message());
    }
    let bad_upserts = [
        vec![point("z", &[1.0, 2.0], json!({}))],
        vec![point(&"x".repeat(600), &[1.0, 2.0, 3.0], json!({}))],
        vec![point("z", &[1.0, 2.0, 3.0], json!([1]))],
        vec![pb::Point { metadata_json: "{oops".into(), ..point("z", &[1.0, 2.0, 3.0], json!({})) }],
        vec![],
    ];
    for points in bad_upserts {
        let err = g.upsert_points(pb::UpsertPointsRequest { store: "p".into(), points: points.clone() }).await;
        assert_eq!(err.expect_err("refused").code(), Code::InvalidArgument, "{points:?}");
    }
    assert_eq!(
        g.describe_store(pb::StoreRef { name: "p".into() }).await.unwrap().into_inner().points,
        2,
        "refused writes wrote nothing"
    );
    assert_eq!(g.drop_store(pb::StoreRef { name: "nope".into() }).await.expect_err("absent").code(), Code::NotFound);
    g.drop_store(pb::StoreRef { name: "p".into() }).await.unwrap();
    assert!(g.list_stores(pb::ListStoreSummariesRequest {}).await.unwrap().into_inner().stores.is_empty());
}
