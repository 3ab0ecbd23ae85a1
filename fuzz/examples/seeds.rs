//! Writes the seed corpora of the fuzz targets into `fuzz/corpus/<target>/` from the code's own writers: filters
//! from the README and the unit tests, records `Record::encode` made, a backup manifest and records as a backup
//! writes them, HNSW snapshots `HnswIndex::write_to` wrote, export lines as `export` writes them, and MCP
//! JSON-RPC messages calling every tool.
//!
//! ```text
//! cargo run --release --manifest-path fuzz/Cargo.toml --example seeds -- fuzz/corpus
//! ```
//! Seeds are named after their content's hash, so running it again adds nothing twice.

use std::path::{Path, PathBuf};

use rvdb_core::backup_format::{BackupFile, FORMAT, FORMAT_VERSION, Manifest, write_record};
use rvdb_core::hnsw::HnswIndex;
use rvdb_core::jsonl::{EXPORT_VERSION, ExportHeader, ExportPoint};
use rvdb_core::record::{Record, encode_live, encode_tombstone};
use rvdb_core::sq8::Sq8;
use rvdb_core::{HnswParams, IndexKind, Metric, Quantization, StoreConfig};
use serde_json::json;

/// FNV-1a, 64 bits: a stable name for a seed.
fn name_of(bytes: &[u8]) -> String {
    let h = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    format!("seed-{h:016x}")
}

fn write(root: &Path, target: &str, bytes: &[u8]) -> std::io::Result<()> {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name_of(bytes)), bytes)
}

fn filters() -> Vec<serde_json::Value> {
    vec![
        // README (crates/rvdb-core/src/filter.rs's doc and the CLI examples)
        json!({"must": [{"key": "lang", "match": {"value": "en"}}, {"key": "year", "range": {"gte": 2020, "lt": 2025}}],
               "should": [{"key": "tags", "match": {"any": ["rust", "db"]}}],
               "must_not": [{"key": "draft", "match": {"value": true}}, {"key": "deleted_at", "exists": true}]}),
        json!({"must": [{"key": "title", "match": {"value": "Document 1"}}]}),
        json!({"must": [{"key": "_text", "exists": true}]}),
        json!({"must": [{"key": "reviewed", "match": {"value": true}}]}),
        // unit tests (filter.rs, payload.rs)
        json!({"must": [{"key": "year", "match": {"value": 2021.0}}]}),
        json!({"must": [{"key": "author.name", "match": {"any": ["bob", "ada"]}}]}),
        json!({"must": [{"should": [{"key": "year", "range": {"lt": 2000}}, {"key": "lang", "match": {"value": "en"}}]}]}),
        json!({"must": [{"key": "a.b.c.d.e", "match": {"any": ["x", "q"]}}, {"key": ".b", "match": {"value": "y"}}]}),
        json!({"must": [{"key": "n", "match": {"value": true}}], "must_not": [{"key": "k.", "match": {"value": 3}}]}),
        json!({"must_not": [{"must": [{"key": "year", "range": {"gt": 2021, "lte": 1e300}}]}]}),
        json!({}),
        // refused ones: their error paths are code too
        json!({"may": []}),
        json!({"must": [{"key": "a", "match": {"value": 1}, "range": {"lt": 1}}]}),
        json!({"must": [{"key": "a", "range": {"from": 1}}]}),
    ]
}

fn records() -> Vec<Vec<u8>> {
    vec![
        encode_live(42, &[1.5, -0.0, f32::MIN_POSITIVE, 3.0e38], r#"{"a":"é"}"#),
        encode_live(1, &[0.25; 8], r#"{"lang":"en","_text":"hello world","tags":["x","y"]}"#),
        encode_live(u64::MAX, &[f32::NAN], ""),
        encode_tombstone(7),
        Record::Tombstone { version: 0 }.encode(),
    ]
}

fn store(name: &str, dimension: u32, metric: Metric) -> StoreConfig {
    let mut config = StoreConfig::new(name, dimension, metric);
    config.shards = 2;
    config.index.kind = IndexKind::Hnsw;
    config.index.quantization = Quantization::Sq8;
    config
}

fn backups() -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    let points: [(&str, u64, [f32; 3], &str); 3] = [
        ("a", 7, [1.5, -2.25, f32::MIN_POSITIVE], r#"{"k":1}"#),
        ("b", 8, [0.0, 1.0, 2.0], ""),
        ("doc-é", 9, [3.0e38, -0.0, 0.1], r#"{"lang":"en","tags":["x"]}"#),
    ];
    for (id, version, vector, metadata) in &points {
        write_record(&mut records, id, *version, vector, metadata).expect("writes to a Vec");
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        format_version: FORMAT_VERSION,
        rvdb_version: "0.1.0".into(),
        name: "docs-2026-01-01T00-00-00-000Z".into(),
        store: store("docs", 3, Metric::Cosine),
        point_count: 3,
        created_at: "2026-01-01T00:00:00.000Z".into(),
        created_unix_ms: 1_767_225_600_000,
        compression: "zstd".into(),
        files: vec![
            BackupFile { name: "points-00000.bin.zst".into(), points: 2, bytes: 96, sha256: "00".repeat(32) },
            BackupFile { name: "points-00001.bin.zst".into(), points: 1, bytes: 64, sha256: "ff".repeat(32) },
        ],
    };
    let pretty = serde_json::to_vec_pretty(&manifest).expect("a manifest encodes");
    let compact = serde_json::to_vec(&Manifest { files: Vec::new(), point_count: 0, ..manifest }).expect("encodes");
    vec![
        rvdb_fuzz::frame_backup_input(&pretty, &records),
        rvdb_fuzz::frame_backup_input(&compact, &[]),
        rvdb_fuzz::frame_backup_input(b"{}", &records),
    ]
}

/// A small graph: `n` points of `dim` on a spiral, every `delete_every`-th deleted (0: none).
fn snapshot(dim: usize, metric: Metric, n: usize, delete_every: usize, sq8: bool) -> Vec<u8> {
    let vectors: Vec<Vec<f32>> =
        (0..n).map(|i| (0..dim).map(|j| ((i * 7 + j * 3) as f32 * 0.37).sin() + 0.01 * i as f32).collect()).collect();
    let quantizer = sq8.then(|| Sq8::train(dim, vectors.iter().map(Vec::as_slice)));
    let params = HnswParams { m: 4, ef_construction: 16, ef_search: 8 };
    let mut graph = HnswIndex::with_quantizer(dim, metric, params, quantizer);
    for (i, v) in vectors.iter().enumerate() {
        graph.insert(&format!("p{i}"), v, i as u64 + 1);
    }
    if delete_every > 0 {
        for i in (0..n).step_by(delete_every) {
            graph.remove(&format!("p{i}"));
        }
    }
    let mut out = Vec::new();
    graph.write_to(&mut out).expect("writes to a Vec");
    out
}

fn snapshots() -> Vec<Vec<u8>> {
    vec![
        snapshot(4, Metric::Euclidean, 24, 0, false),
        snapshot(3, Metric::Cosine, 12, 3, false),
        snapshot(8, Metric::Dot, 16, 5, true),
        snapshot(2, Metric::Manhattan, 1, 0, false),
        snapshot(2, Metric::Euclidean, 0, 0, false),
    ]
}

fn exports() -> Vec<Vec<u8>> {
    let header = ExportHeader {
        rvdb_export: EXPORT_VERSION,
        store: store("docs", 3, Metric::Euclidean),
        exported_at: "2026-01-01T00:00:00.000Z".into(),
    };
    let points = [
        ExportPoint { id: "a".into(), vector: vec![0.1, -3e-45, 3.4028235e38], metadata: json!({"k": 1, "f": 0.1}) },
        ExportPoint { id: "b".into(), vector: vec![1.0, 2.0, 3.0], metadata: serde_json::Value::Null },
        ExportPoint {
            id: "doc-é".into(),
            vector: vec![1.0e-7, 123_456.79, -0.0],
            metadata: json!({"_text": "hello world", "tags": ["x", "y"], "nested": {"a": [1, 2.5, null]}}),
        },
    ];
    let mut file = serde_json::to_string(&header).expect("a header encodes");
    for p in &points {
        file.push('\n');
        file.push_str(&serde_json::to_string(p).expect("a point encodes"));
    }
    file.push('\n');
    let header_only = serde_json::to_string(&header).expect("a header encodes");
    vec![file.into_bytes(), header_only.into_bytes()]
}

/// One JSON-RPC request line calling `tool` with `arguments`.
fn call(id: u64, tool: &str, arguments: serde_json::Value) -> String {
    json!({"jsonrpc": "2.0", "id": id, "method": "tools/call", "params": {"name": tool, "arguments": arguments}})
        .to_string()
}

/// MCP messages as an agent sends them (one per input; several lines make one input too), and broken ones.
fn mcp_messages() -> Vec<String> {
    let filter = json!({"must": [{"key": "lang", "match": {"value": "en"}}], "must_not": [{"key": "year", "range": {"lt": 2000}}]});
    let points = json!([
        {"id": "a", "vector": [0.1, 0.2, 0.3, 0.4], "metadata": {"lang": "en", "year": 2024}},
        {"id": "b", "vector": [0.4, 0.3, 0.2, 0.1], "metadata": {"lang": "de", "year": 2019, "tags": ["x"]}}
    ]);
    let setup = [
        call(1, "create_store", json!({"store": "docs", "dimension": 4, "metric": "cosine"})),
        call(2, "insert_vectors", json!({"store": "docs", "points": points})),
    ]
    .join("\n");
    vec![
        json!({"jsonrpc": "2.0", "id": 1, "method": "tools/list"}).to_string(),
        json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}).to_string(),
        setup,
        call(
            3,
            "create_store",
            json!({"store": "graph", "dimension": 2, "metric": "euclidean", "index": "hnsw", "shards": 2}),
        ),
        call(
            4,
            "insert_vector",
            json!({"store": "docs", "id": "c", "vector": [1, 0, 0, 0], "metadata": {"lang": "en"}}),
        ),
        call(5, "search_vectors", json!({"store": "docs", "vector": [0.1, 0.2, 0.3, 0.4], "k": 3, "filter": filter})),
        call(6, "get_vector", json!({"store": "docs", "id": "a"})),
        call(7, "delete_vector", json!({"store": "docs", "id": "b"})),
        call(8, "list_stores", json!({})),
        call(9, "describe_store", json!({"store": "docs"})),
        call(10, "count", json!({"store": "docs", "filter": filter})),
        call(11, "scroll", json!({"store": "docs", "limit": 1})),
        call(12, "update_metadata", json!({"store": "docs", "ids": ["a"], "set": {"reviewed": true}})),
        call(13, "delete_points", json!({"store": "docs", "filter": {"must": [{"key": "reviewed", "exists": true}]}})),
        call(14, "sync_store", json!({"store": "docs"})),
        call(15, "backup_store", json!({"store": "docs", "name": "b1"})),
        call(16, "list_backups", json!({})),
        call(17, "restore_store", json!({"backup": "b1", "store": "docs2"})),
        call(18, "export_store", json!({"store": "docs", "file": "docs.jsonl"})),
        call(19, "import_store", json!({"file": "docs.jsonl", "store": "docs3"})),
        call(20, "delete_store", json!({"store": "docs2"})),
        call(21, "search_text", json!({"store": "docs", "query": "hello", "mode": "keyword"})),
        call(22, "insert_vectors", json!({"store": "docs", "points": [{"id": "bad", "vector": [1e39, 0, 0, 0]}]})),
        call(23, "no_such_tool", json!({})),
        json!({"jsonrpc": "2.0", "id": 24, "method": "tools/call", "params": {"name": "create_store"}}).to_string(),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 5}}).to_string(),
        "not json".to_string(),
        "[1, 2]".to_string(),
        "{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"} trailing".to_string(),
    ]
}

fn main() -> std::io::Result<()> {
    let root = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("fuzz/corpus"));
    for f in filters() {
        write(&root, "filter", f.to_string().as_bytes())?;
    }
    for r in records() {
        write(&root, "record", &r)?;
    }
    for b in backups() {
        write(&root, "backup", &b)?;
    }
    for s in snapshots() {
        write(&root, "hnsw_snapshot", &s)?;
    }
    for e in exports() {
        write(&root, "jsonl", &e)?;
    }
    for m in mcp_messages() {
        write(&root, "mcp", m.as_bytes())?;
    }
    println!("seeds written under {}", root.display());
    Ok(())
}
