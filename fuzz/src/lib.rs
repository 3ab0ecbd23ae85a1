//! What the fuzz targets share with the seed writer (`examples/seeds.rs`): how a target's input is framed, and
//! the fixed data the targets check their properties against.

use rvdb_core::Metric;
use serde_json::{Value, json};

/// The `backup` target's input: `[u16 LE manifest length][manifest.json][records]`, so that one input carries
/// both what a restore reads first (the manifest) and the record stream it then reads with the manifest's
/// dimension.
pub fn split_backup_input(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else { return (&[], &[]) };
    rest.split_at((u16::from_le_bytes(*len) as usize).min(rest.len()))
}

/// Frames a manifest and records as [`split_backup_input`] reads them.
pub fn frame_backup_input(manifest: &[u8], records: &[u8]) -> Vec<u8> {
    let mut out = (manifest.len().min(u16::MAX as usize) as u16).to_le_bytes().to_vec();
    out.extend_from_slice(manifest);
    out.extend_from_slice(records);
    out
}

/// Offsets in an HNSW snapshot header (after the 9-byte magic: dim, m, ef_construction, ef_search, nodes,
/// max_level, live, metric, as u64 LE).
const SNAPSHOT_DIM_AT: usize = 9;
const SNAPSHOT_METRIC_AT: usize = 9 + 7 * 8;

/// Largest dimension the `hnsw_snapshot` target asks the loader for (a real store's dimension is at most 65,536;
/// small ones keep each execution fast).
pub const SNAPSHOT_MAX_DIM: usize = 1024;

/// The dimension and metric a snapshot's header names, as the node passes the store's own to the loader: so
/// that mutated snapshots get past the shape check to the contents. `None` when the header is cut short or names
/// a dimension above [`SNAPSHOT_MAX_DIM`].
pub fn snapshot_shape(data: &[u8]) -> Option<(usize, Metric)> {
    let word = |at: usize| Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?));
    let dim = usize::try_from(word(SNAPSHOT_DIM_AT)?).ok().filter(|&d| d <= SNAPSHOT_MAX_DIM)?;
    let metric = Metric::ALL.get(word(SNAPSHOT_METRIC_AT)? as usize).copied().unwrap_or(Metric::Euclidean);
    Some((dim, metric))
}

/// The metadata documents every parsed filter is evaluated on: nested objects, arrays, dotted and empty keys,
/// integers and floats that compare equal, booleans, null.
pub fn filter_documents() -> Vec<(&'static str, Value)> {
    vec![
        ("en", json!({"lang": "en", "year": 2021, "tags": ["rust", "db"], "author": {"name": "ada"}, "draft": false})),
        ("de", json!({"lang": "de", "year": 2019.0, "tags": [], "author": {"name": "bob", "age": 41}, "draft": true})),
        ("deep", json!({"a": {"b": {"c": {"d": {"e": "x", "n": [1, 2.5, -0.0]}}}}, "": {"b": "y"}, "a.b": "z"})),
        ("nulls", json!({"lang": null, "year": "2021", "tags": [null, "rust", 7], "deleted_at": "2026-01-01"})),
        ("numbers", json!({"n": 1, "f": 1.0, "big": 18446744073709551615u64, "neg": -9007199254740993i64, "e": 1e300})),
        ("empty", json!({})),
    ]
}
