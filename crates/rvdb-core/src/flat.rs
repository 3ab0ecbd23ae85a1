//! The exact (flat) index: every vector of a shard in one contiguous, blocked array ([`BlockedVectors`]), scanned
//! with SIMD into a bounded top-k. Deletes swap the last vector into the hole, so the array stays dense and the
//! scan never skips tombstones. Cosine vectors are stored normalised, so a cosine scan is a dot-product scan.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::Metric;
use crate::blocked::{BLOCK, BlockedVectors};
use crate::kernels;
use crate::topk::TopK;

/// One search result: a point id and its distance (lower is better, see [`Metric`]).
#[derive(Debug, Clone, PartialEq)]
pub struct SearchHit {
    pub id: String,
    pub distance: f32,
}

/// The vector as the index stores and scans it: normalised for cosine, untouched otherwise.
pub(crate) fn prepare(metric: Metric, v: &[f32]) -> Cow<'_, [f32]> {
    if metric.normalizes() {
        let mut owned = v.to_vec();
        kernels::normalize(&mut owned);
        Cow::Owned(owned)
    } else {
        Cow::Borrowed(v)
    }
}

#[derive(Debug, Clone)]
pub struct FlatIndex {
    dim: usize,
    metric: Metric,
    vectors: BlockedVectors,
    ids: Vec<Box<str>>,
    slots: HashMap<Box<str>, u32>,
}

impl FlatIndex {
    pub fn new(dim: usize, metric: Metric) -> Self {
        Self { dim, metric, vectors: BlockedVectors::new(dim), ids: Vec::new(), slots: HashMap::new() }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn metric(&self) -> Metric {
        self.metric
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.slots.contains_key(id)
    }

    pub fn reserve(&mut self, additional: usize) {
        self.vectors.reserve(additional);
        self.ids.reserve(additional);
        self.slots.reserve(additional);
    }

    /// Inserts or replaces `id`. The vector must have been validated (`types::validate_vector`).
    pub fn upsert(&mut self, id: &str, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        let vector = prepare(self.metric, vector);
        match self.slots.get(id) {
            Some(&slot) => self.vectors.set(slot as usize, &vector),
            None => {
                let slot = self.vectors.push(&vector);
                self.ids.push(id.into());
                self.slots.insert(id.into(), slot as u32);
            }
        }
    }

    /// Removes `id`; returns whether it was present.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.slots.remove(id) else { return false };
        let slot = slot as usize;
        self.vectors.swap_remove(slot);
        self.ids.swap_remove(slot);
        if slot < self.ids.len() {
            self.slots.insert(self.ids[slot].clone(), slot as u32);
        }
        true
    }

    /// Exact top-`k` of `query` (validated), nearest first; `accept(id)` can exclude points.
    pub fn search(&self, query: &[f32], k: usize, accept: Option<&dyn Fn(&str) -> bool>) -> Vec<SearchHit> {
        if query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        let query = prepare(self.metric, query);
        let query = &query[..];
        let mut top = TopK::new(k);
        match accept {
            Some(f) => self.vectors.scan(self.metric.scan_op(), query, &mut top, &mut |s| f(&self.ids[s as usize])),
            None => self.vectors.scan(self.metric.scan_op(), query, &mut top, &mut |_| true),
        }
        self.hits(top)
    }

    /// A top-k as results, in a stable, replica-independent order: by distance, then id.
    fn hits(&self, top: TopK) -> Vec<SearchHit> {
        let mut hits: Vec<SearchHit> = top
            .into_sorted()
            .into_iter()
            .map(|c| SearchHit { id: self.ids[c.slot as usize].to_string(), distance: self.metric.finish(c.distance) })
            .collect();
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then_with(|| a.id.cmp(&b.id)));
        hits
    }

    /// Exact top-`k` among the given ids only (unknown ids are skipped; `accept` re-checks each): the plan for a
    /// selective filter whose candidates an index already knows. Only the blocks holding candidates are scanned
    /// (a random-access gather from the component-major blocks would touch one cache line per component);
    /// returns the hits and the number of candidates.
    pub fn search_among<'a>(
        &self,
        query: &[f32],
        k: usize,
        ids: impl IntoIterator<Item = &'a str>,
        accept: &dyn Fn(&str) -> bool,
    ) -> (Vec<SearchHit>, u64) {
        if query.len() != self.dim || k == 0 {
            return (Vec::new(), 0);
        }
        let mut slots: Vec<u32> = ids.into_iter().filter_map(|id| self.slots.get(id).copied()).collect();
        slots.sort_unstable();
        slots.dedup();
        let mut blocks: Vec<u32> = slots.iter().map(|s| s / BLOCK as u32).collect();
        blocks.dedup();
        let query = prepare(self.metric, query);
        let mut top = TopK::new(k);
        self.vectors.scan_blocks(self.metric.scan_op(), &query, &blocks, &mut top, &mut |s| {
            // Asked only for lanes that would enter the top-k: a binary search there is cheaper than building a
            // bitmap of the whole index per query.
            slots.binary_search(&s).is_ok() && accept(&self.ids[s as usize])
        });
        (self.hits(top), slots.len() as u64)
    }

    /// The id in `slot` (< len).
    pub fn id_at(&self, slot: usize) -> &str {
        &self.ids[slot]
    }

    /// The vector in `slot` (< len) as stored (normalised for cosine); a strided gather, so callers that may not
    /// need it ask for it only then.
    pub fn vector_at(&self, slot: usize) -> Vec<f32> {
        self.vectors.get(slot)
    }

    /// Every point: its id and its vector as stored (normalised for cosine).
    pub fn iter(&self) -> impl Iterator<Item = (&str, Vec<f32>)> + '_ {
        (0..self.ids.len()).map(|slot| (self.id_at(slot), self.vector_at(slot)))
    }

    /// Bytes held: vectors, ids (twice: slot table and lookup map) and map overhead, approximately.
    pub fn memory_bytes(&self) -> usize {
        let ids: usize = self.ids.iter().map(|s| s.len()).sum();
        self.vectors.memory_bytes() + 2 * ids + self.ids.capacity() * 16 + self.slots.capacity() * (16 + 4 + 8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::reference;
    use rand::{Rng, SeedableRng};

    fn brute(points: &[(String, Vec<f32>)], q: &[f32], metric: Metric, k: usize) -> Vec<String> {
        let mut all: Vec<(f64, &String)> =
            points.iter().map(|(id, v)| (reference::distance(metric, q, v), id)).collect();
        all.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(b.1)));
        all.into_iter().take(k).map(|(_, id)| id.clone()).collect()
    }

    #[test]
    fn exact_for_every_metric_with_deletes_and_updates() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let dim = 37;
        for metric in Metric::ALL {
            let mut idx = FlatIndex::new(dim, metric);
            let mut points: Vec<(String, Vec<f32>)> = Vec::new();
            for i in 0..500 {
                let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
                idx.upsert(&format!("p{i}"), &v);
                points.push((format!("p{i}"), v));
            }
            // delete every third, update every fifth
            for i in (0..500).step_by(3) {
                assert!(idx.remove(&format!("p{i}")));
                assert!(!idx.remove(&format!("p{i}")));
            }
            points.retain(|(id, _)| id[1..].parse::<usize>().unwrap() % 3 != 0);
            for (id, v) in points.iter_mut().filter(|(id, _)| id[1..].parse::<usize>().unwrap() % 5 == 0) {
                *v = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
                idx.upsert(id, v);
            }
            assert_eq!(idx.len(), points.len());
            for _ in 0..20 {
                let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
                let got: Vec<String> = idx.search(&q, 10, None).into_iter().map(|h| h.id).collect();
                assert_eq!(got, brute(&points, &q, metric, 10), "{metric}");
            }
            let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let hits = idx.search(&q, 3, None);
            let want = reference::distance(metric, &q, &points.iter().find(|p| p.0 == hits[0].id).unwrap().1);
            assert!((hits[0].distance as f64 - want).abs() < 1e-4, "{metric}: {} vs {want}", hits[0].distance);
        }
    }

    #[test]
    fn search_among_equals_a_filtered_full_scan() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let mut idx = FlatIndex::new(9, Metric::Manhattan);
        for i in 0..1000 {
            let v: Vec<f32> = (0..9).map(|_| rng.random_range(-1.0..1.0)).collect();
            idx.upsert(&i.to_string(), &v);
        }
        let chosen: Vec<String> = (0..1000).filter(|i| i % 37 == 0 || i % 101 == 5).map(|i| i.to_string()).collect();
        let set: std::collections::HashSet<&str> = chosen.iter().map(String::as_str).collect();
        let not_7 = |id: &str| !id.ends_with('7');
        for _ in 0..10 {
            let q: Vec<f32> = (0..9).map(|_| rng.random_range(-1.0..1.0)).collect();
            let (got, n) = idx.search_among(&q, 5, chosen.iter().map(String::as_str).chain(["nope"]), &not_7);
            let want = idx.search(&q, 5, Some(&|id: &str| set.contains(id) && not_7(id)));
            assert_eq!((got, n), (want, chosen.len() as u64));
        }
    }

    #[test]
    fn accept_excludes_points() {
        let mut idx = FlatIndex::new(1, Metric::Euclidean);
        for i in 0..10 {
            idx.upsert(&i.to_string(), &[i as f32]);
        }
        let odd = |id: &str| id.parse::<u32>().unwrap() % 2 == 1;
        let got: Vec<String> = idx.search(&[0.0], 3, Some(&odd)).into_iter().map(|h| h.id).collect();
        assert_eq!(got, vec!["1", "3", "5"]);
        assert!(idx.search(&[0.0, 1.0], 3, None).is_empty());
    }
}
