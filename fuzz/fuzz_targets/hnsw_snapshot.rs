//! Bytes → `HnswIndex::read_from`, the loader of the graph snapshots a node reads at start
//! (`<data>/hnsw/<store>#<shard>.hnsw`). The dimension and metric asked for are the ones the header names (as a
//! node asks for its store's own), so that mutated snapshots get past the shape check; in a fuzz build
//! (`cfg(fuzzing)`) the loader does not compare the trailing checksum, so that mutations reach the structural
//! checks a checksummed but wrong snapshot (a bug, a tampered file) meets.
//!
//! Properties: the loader returns an error, never panics, aborts or allocates beyond what the input holds; a
//! graph it accepts is usable — searches (with and without a filter, with the stored `ef_search`), exact
//! scoring, inserts and deletes do not panic, hits are live ids without duplicates, a deleted id never comes
//! back; the snapshot format is canonical: writing an accepted graph gives the bytes it was read from, and that
//! snapshot reads back.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use rvdb_core::Metric;
use rvdb_core::hnsw::HnswIndex;

/// Checks a search's hits: live ids (in `live`), none twice, none refused by `accept`.
fn check_hits(hits: &[rvdb_core::SearchHit], live: &HashSet<String>, accept: &dyn Fn(&str) -> bool) {
    let mut seen = HashSet::new();
    for h in hits {
        assert!(live.contains(&h.id), "hit {:?} is not a live id", h.id);
        assert!(seen.insert(&h.id), "hit {:?} twice", h.id);
        assert!(accept(&h.id), "hit {:?} refused by the filter", h.id);
    }
}

fn live_ids(graph: &HnswIndex) -> HashSet<String> {
    let live: HashSet<String> = graph.live().map(|(id, _)| id.to_string()).collect();
    assert_eq!(live.len(), graph.len(), "len() is not the number of live ids");
    live
}

fuzz_target!(|data: &[u8]| {
    let Some((dim, metric)) = rvdb_fuzz::snapshot_shape(data) else {
        assert!(HnswIndex::read_from(&mut &data[..], 4, Metric::Euclidean).is_err());
        return;
    };
    let Ok(mut graph) = HnswIndex::read_from(&mut &data[..], dim, metric) else { return };

    let mut written = Vec::new();
    graph.write_to(&mut written).expect("an accepted graph writes");
    let body = written.len() - 8; // the checksum, not compared in a fuzz build
    if let Some(at) = (0..body).find(|&i| data.get(i) != Some(&written[i])) {
        panic!(
            "the snapshot is not canonical: byte {at} of {body} reads {:?}, is written {}",
            data.get(at),
            written[at]
        );
    }
    HnswIndex::read_from(&mut &written[..], dim, metric).expect("a written snapshot reads back");

    let live = live_ids(&graph);
    let query: Vec<f32> = (0..dim).map(|i| data.get(i + 100).map_or(0.5, |&b| f32::from(b) / 64.0 - 2.0)).collect();
    let all = |_: &str| true;
    check_hits(&graph.search(&query, 10, Some(32), None), &live, &all);
    check_hits(&graph.search(&query, 3, None, None), &live, &all);
    let even = |id: &str| id.len().is_multiple_of(2);
    check_hits(&graph.search(&query, 10, Some(32), Some(&even)), &live, &even);
    if let Some((hits, _)) = graph.search_among(&query, 5, live.iter().map(String::as_str), &all) {
        check_hits(&hits, &live, &all);
    }

    graph.insert("fuzz-inserted", &query, 7);
    assert_eq!(graph.tag("fuzz-inserted"), Some(7));
    if let Some(gone) = live.iter().min() {
        assert!(graph.remove(gone));
        let live = live_ids(&graph);
        assert!(!live.contains(gone));
        check_hits(&graph.search(&query, 50, Some(64), None), &live, &all);
    }
    let mut rewritten = Vec::new();
    graph.write_to(&mut rewritten).expect("a changed graph writes");
    HnswIndex::read_from(&mut &rewritten[..], dim, metric).expect("a changed graph reads back");
});
