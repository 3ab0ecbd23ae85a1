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
    let deleted = g.delete_points(pb::DeletePointsRequest {
        store: "p".into(),
        ids: vec!["a".into(), "zz".into()],
        ..Default::default()
    });
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
        // 100 KB as sent, 325 KB once stored (1e9 is kept as 1000000000.0): over the 256 KiB limit of what is
        // stored, which a backup or export would carry and a restore or import would refuse (#15 item 10)
        vec![pb::Point {
            metadata_json: format!("{{\"a\": [{}]}}", vec!["1e9"; 25_000].join(",")),
            ..point("z", &[1.0, 2.0, 3.0], json!({}))
        }],
        // nested deeper than the 32 levels an import reads back
        vec![pb::Point {
            metadata_json: format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40)),
            ..point("z", &[1.0, 2.0, 3.0], json!({}))
        }],
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

/// The memory and text operations over gRPC: count, scroll with its cursor, metadata updates and deletes by
/// filter, and texts embedded by the server, answering as REST does on the same store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_and_text_operations_over_grpc_answer_as_rest() {
    let dir = tempfile::tempdir().unwrap();
    let serve = ServeProcess::start(&dir.path().join("data"), &dir.path().join("backups"));
    let mut g = serve.stores().await;
    let rest = |method: &'static str, path: String, body: Option<Value>| {
        let url = format!("{}{path}", serve.http_url());
        async move {
            let (status, _, text) = http(method, &url, None, body).await;
            assert_eq!(status, 200, "{method} {path}: {text}");
            serde_json::from_str::<Value>(&text).unwrap()
        }
    };
    let created = g
        .create_store(pb::NewStore {
            embedding_model: Some("all-MiniLM-L6-v2".into()),
            shards: Some(2),
            ..new_store("t", 0)
        })
        .await
        .unwrap()
        .into_inner();
    let spec = created.embedding.expect("the model is in the summary");
    assert_eq!(
        (created.dimension, spec.model.as_str(), spec.dimension, spec.normalized),
        (384, "all-MiniLM-L6-v2", 384, true)
    );
    let texts = [
        "The kernel mounts the root file system read-only at boot.",
        "Use chmod to change the permissions of a file.",
        "The ping command sends ICMP echo requests to a host.",
        "Disk quotas limit how much space a user may take.",
    ];
    let documents = texts
        .iter()
        .enumerate()
        .map(|(i, t)| pb::Document {
            id: format!("doc{i}"),
            text: t.to_string(),
            metadata_json: json!({"i": i, "odd": i % 2 == 1}).to_string(),
        })
        .collect();
    let inserted = g.insert_texts(pb::InsertTextsRequest { store: "t".into(), documents }).await.unwrap().into_inner();
    assert_eq!((inserted.inserted, inserted.ids.len()), (4, 4));
    let found = g
        .search_text(pb::SearchTextRequest {
            store: "t".into(),
            query: "send echo packets to a machine on the network".into(),
            k: Some(2),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!((found[0].id.as_str(), found[0].text.as_str()), ("doc2", texts[2]));
    let by_rest = rest(
        "POST",
        "/v1/stores/t/texts/search".into(),
        Some(json!({"query": "send echo packets to a machine on the network", "k": 2})),
    )
    .await;
    let rest_ids: Vec<&str> = by_rest["results"].as_array().unwrap().iter().filter_map(|h| h["id"].as_str()).collect();
    assert_eq!(found.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), rest_ids);
    assert!(
        (found[0].distance.expect("a dense hit has a distance") as f64
            - by_rest["results"][0]["distance"].as_f64().unwrap())
        .abs()
            < 1e-6
    );
    let cut = g
        .search_text(pb::SearchTextRequest {
            store: "t".into(),
            query: texts[1].into(),
            score_threshold: Some(0.01),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .results;
    assert_eq!(cut.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["doc1"], "only the text itself is that close");

    // count, scroll, update and delete by filter
    let odd = json!({"must": [{"key": "odd", "match": {"value": true}}]}).to_string();
    let counted = g.count_points(pb::CountPointsRequest { store: "t".into(), filter_json: odd.clone() });
    assert_eq!(counted.await.unwrap().into_inner().count, 2);
    let page = g
        .scroll_points(pb::ScrollPointsRequest { store: "t".into(), limit: Some(3), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(page.points.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["doc0", "doc1", "doc2"]);
    let by_rest = rest("POST", "/v1/stores/t/points/scroll".into(), Some(json!({"limit": 3}))).await;
    assert_eq!(by_rest["next_cursor"].as_str(), Some(page.next_cursor.as_str()), "one cursor for every surface");
    let last = g
        .scroll_points(pb::ScrollPointsRequest { store: "t".into(), cursor: page.next_cursor, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((last.points.len(), last.points[0].id.as_str(), last.next_cursor.as_str()), (1, "doc3", ""));
    let updated = g
        .update_metadata(pb::UpdateMetadataPointsRequest {
            store: "t".into(),
            filter_json: odd.clone(),
            set_json: json!({"seen": true}).to_string(),
            unset: vec!["i".into()],
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(updated.updated, 2);
    let got = rest("GET", "/v1/stores/t/points/doc3?with_vector=false".into(), None).await;
    assert_eq!(got["metadata"], json!({"odd": true, "seen": true, "_text": texts[3]}));
    let bad = [
        pb::UpdateMetadataPointsRequest { store: "t".into(), ids: vec!["doc0".into()], ..Default::default() },
        pb::UpdateMetadataPointsRequest {
            store: "t".into(),
            ids: vec!["doc0".into()],
            set_json: "[1]".into(),
            ..Default::default()
        },
        pb::UpdateMetadataPointsRequest {
            store: "t".into(),
            ids: vec!["doc0".into()],
            filter_json: odd.clone(),
            set_json: "{}".into(),
            unset: vec!["x".into()],
        },
    ];
    for req in bad {
        let err = g.update_metadata(req.clone()).await.expect_err("refused");
        assert_eq!(err.code(), Code::InvalidArgument, "{req:?}: {}", err.message());
    }
    let deleted =
        g.delete_points(pb::DeletePointsRequest { store: "t".into(), filter_json: odd, ..Default::default() });
    assert_eq!(deleted.await.unwrap().into_inner().deleted, 2);
    let counted = rest("POST", "/v1/stores/t/points/count".into(), None).await;
    assert_eq!(counted["count"], 2);
    let err = g
        .scroll_points(pb::ScrollPointsRequest { store: "t".into(), cursor: "zz".into(), ..Default::default() })
        .await
        .expect_err("a forged cursor");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("cursor"), "{}", err.message());
}
