//! The exact (flat) index: every vector of a shard in one contiguous, blocked array ([`BlockedVectors`]), scanned
//! with SIMD into a bounded top-k. Deletes swap the last vector into the hole, so the array stays dense and the
//! scan never skips tombstones. Cosine vectors are stored normalised, so a cosine scan is a dot-product scan.
//!
//! Above [`CODED_MIN_FLOATS`] the index also keeps SQ8 codes with a per-vector error bound ([`CodedVectors`]):
//! searches then scan the codes (a quarter of the bytes) and re-score on the f32 vectors only the blocks whose
//! lower bound can still enter the top-k, with the same result as the full f32 scan, bit for bit. The grid is
//! fitted when the index crosses the threshold and refitted each time it doubles (up to [`REFIT_UNTIL_FLOATS`]).
//! The filtered scan (`search` with `accept`) runs on the codes too, with the same result as the filtered f32
//! scan; `search_among` (candidate blocks) reads the f32 blocks directly.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::Metric;
use crate::blocked::{BLOCK, BlockedVectors};
use crate::coded::CodedVectors;
use crate::kernels::{self, Simd};
use crate::metric::ScanOp;
use crate::options::IndexOptions;
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

/// Size (vectors × dimension) from which the flat index keeps SQ8 codes and scans them first: 2^18 floats, 1 MiB
/// of f32 (5,243 vectors of 50-d). Measured on GloVe-50 (cosine, L1; AVX-512 VNNI): at 2,000 vectors the plain
/// scan is as fast or faster (everything is in L1/L2), at 5,000 the coded scan is 1.2–1.4× faster, at 10,000
/// 1.75×, at 20,000 2.2×, at 390,000 4–5×. Below the threshold the codes would only cost memory.
pub const CODED_MIN_FLOATS: usize = 1 << 18;

/// Refits stop once the grid was fitted on this many floats (vectors × dimension: 2^24, 335,545 vectors of 50-d):
/// the last refit re-encodes at most twice that, about 0.3 s at 50-d.
pub const REFIT_UNTIL_FLOATS: usize = 1 << 24;

#[derive(Debug, Clone)]
pub struct FlatIndex {
    dim: usize,
    metric: Metric,
    vectors: BlockedVectors,
    /// SQ8 codes of `vectors`, slot for slot, once the index is large enough (see [`CODED_MIN_FLOATS`]).
    coded: Option<CodedVectors>,
    /// Size at which codes are built: [`CODED_MIN_FLOATS`] / dim, or `usize::MAX` when off.
    coded_min: usize,
    ids: Vec<Box<str>>,
    slots: HashMap<Box<str>, u32>,
    /// The kernels' instruction set, and whether the code scan uses VNNI (see [`IndexOptions`]).
    simd: Simd,
    vnni: bool,
    /// The largest |component| ever stored (deletes and updates never lower it: it only has to bound the data),
    /// for [`FlatIndex::may_overflow`].
    max_abs: f32,
}

/// Bound below which every partial sum of a distance between two vectors stays finite in `f32` (2^120, far below
/// `f32::MAX` ≈ 2^128, so that no summation order, SIMD or SQ8 bound can reach infinity).
const SAFE_F32_SUM: f64 = (1u128 << 120) as f64;

impl FlatIndex {
    /// A flat index with the default [`IndexOptions`] (the CPU's best).
    pub fn new(dim: usize, metric: Metric) -> Self {
        Self::with_options(dim, metric, IndexOptions::default())
    }

    pub fn with_options(dim: usize, metric: Metric, options: IndexOptions) -> Self {
        let coded_min = if options.flat_codes { CODED_MIN_FLOATS.div_ceil(dim.max(1)) } else { usize::MAX };
        Self::build(dim, metric, coded_min, options)
    }

    /// A flat index that builds its codes once it holds `coded_min` vectors (`usize::MAX`: never).
    pub fn with_coded_min(dim: usize, metric: Metric, coded_min: usize) -> Self {
        Self::build(dim, metric, coded_min, IndexOptions::default())
    }

    fn build(dim: usize, metric: Metric, coded_min: usize, options: IndexOptions) -> Self {
        Self {
            dim,
            metric,
            vectors: BlockedVectors::new(dim),
            coded: None,
            coded_min: coded_min.max(1),
            ids: Vec::new(),
            slots: HashMap::new(),
            simd: options.simd,
            vnni: options.uses_vnni(),
            max_abs: 0.0,
        }
    }

    /// Whether searches scan SQ8 codes first.
    pub fn is_coded(&self) -> bool {
        self.coded.is_some()
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
        if let Some(c) = &mut self.coded {
            c.reserve(additional);
        }
    }

    /// Builds the codes when the index reaches the threshold, and refits the grid each time it doubles (amortised:
    /// about one more encoding per insert), so that it follows the data — until it was fitted on
    /// [`REFIT_UNTIL_FLOATS`]: a refit re-encodes every vector under the shard's write lock, and a grid fitted on
    /// that many points has seen the data (later outliers only cost their own re-scoring).
    fn maybe_fit(&mut self) {
        let n = self.ids.len();
        let due = match &self.coded {
            None => n >= self.coded_min,
            Some(c) => n >= 2 * c.trained_on() && c.trained_on().saturating_mul(self.dim) < REFIT_UNTIL_FLOATS,
        };
        if due {
            self.coded = Some(CodedVectors::build(self.metric.scan_op(), &self.vectors));
        }
    }

    /// Inserts or replaces `id`. The vector must have been validated (`types::validate_vector`).
    pub fn upsert(&mut self, id: &str, vector: &[f32]) {
        debug_assert_eq!(vector.len(), self.dim);
        let vector = prepare(self.metric, vector);
        self.max_abs = vector.iter().fold(self.max_abs, |m, x| m.max(x.abs()));
        match self.slots.get(id) {
            Some(&slot) => {
                self.vectors.set(slot as usize, &vector);
                if let Some(c) = &mut self.coded {
                    c.set(slot as usize, &vector);
                }
            }
            None => {
                let slot = self.vectors.push(&vector);
                if let Some(c) = &mut self.coded {
                    c.push(&vector);
                }
                self.ids.push(id.into());
                self.slots.insert(id.into(), slot as u32);
                self.maybe_fit();
            }
        }
    }

    /// Removes `id`; returns whether it was present.
    pub fn remove(&mut self, id: &str) -> bool {
        let Some(slot) = self.slots.remove(id) else { return false };
        let slot = slot as usize;
        self.vectors.swap_remove(slot);
        if let Some(c) = &mut self.coded {
            c.swap_remove(slot);
        }
        self.ids.swap_remove(slot);
        if slot < self.ids.len() {
            self.slots.insert(self.ids[slot].clone(), slot as u32);
        }
        true
    }

    /// Whether a distance between `query` and a stored vector could overflow `f32` (or be `inf - inf`): true only
    /// for components near the ends of the `f32` range (a 50-d dot product needs components above ~1e17). Such
    /// queries take [`FlatIndex::exact_f64`], since a SIMD scan would drop or misorder the hits whose distance
    /// is infinite or NaN, and a graph built on such distances cannot be navigated. Cosine vectors are unit
    /// length, so cosine never overflows.
    pub fn may_overflow(&self, query: &[f32]) -> bool {
        if self.metric.normalizes() || self.ids.is_empty() {
            return false;
        }
        let q = query.iter().fold(0.0f32, |m, x| m.max(x.abs())) as f64;
        let (a, d) = (self.max_abs as f64, self.dim as f64);
        let bound = match self.metric.scan_op() {
            ScanOp::NegDot => d * a * q,
            ScanOp::L2Squared => d * (a + q) * (a + q),
            ScanOp::L1 => d * (a + q),
        };
        bound >= SAFE_F32_SUM
    }

    /// Exact top-`k` of `query` (prepared) among `slots`, every distance computed in `f64`, where no finite `f32`
    /// vector can overflow: the path for [`FlatIndex::may_overflow`]. Slow (scalar, one gather per vector) and
    /// only ever taken for data at the ends of the `f32` range.
    fn exact_f64(
        &self,
        query: &[f32],
        k: usize,
        slots: impl Iterator<Item = u32>,
        accept: &mut dyn FnMut(u32) -> bool,
    ) -> Vec<SearchHit> {
        let op = self.metric.scan_op();
        let mut all: Vec<(f64, u32)> = slots
            .filter(|s| accept(*s))
            .map(|s| {
                let v = self.vectors.get(s as usize);
                let raw = match op {
                    ScanOp::NegDot => -kernels::reference::dot(query, &v),
                    ScanOp::L2Squared => kernels::reference::l2_squared(query, &v),
                    ScanOp::L1 => kernels::reference::l1(query, &v),
                };
                (raw, s)
            })
            .collect();
        let by = |a: &(f64, u32), b: &(f64, u32)| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1));
        if all.len() > k {
            all.select_nth_unstable_by(k - 1, by);
            all.truncate(k);
        }
        let mut hits: Vec<SearchHit> = all
            .into_iter()
            .map(|(raw, s)| SearchHit { id: self.ids[s as usize].to_string(), distance: self.metric.finish_f64(raw) })
            .collect();
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then_with(|| a.id.cmp(&b.id)));
        hits
    }

    /// Exact top-`k` of `query` (validated), nearest first; `accept(id)` can exclude points.
    pub fn search(&self, query: &[f32], k: usize, accept: Option<&dyn Fn(&str) -> bool>) -> Vec<SearchHit> {
        if query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        let query = prepare(self.metric, query);
        let query = &query[..];
        let mut pass = |s: u32| accept.is_none_or(|f| f(&self.ids[s as usize]));
        if self.may_overflow(query) {
            return self.exact_f64(query, k, 0..self.ids.len() as u32, &mut pass);
        }
        let mut top = TopK::new(k);
        let op = self.metric.scan_op();
        match &self.coded {
            Some(c) => c.scan(self.simd, self.vnni, query, &self.vectors, &mut top, &mut pass),
            None => self.vectors.scan(self.simd, op, query, &mut top, &mut pass),
        }
        self.hits(top)
    }

    /// A top-k as results, in a stable, replica-independent order: by distance, then id.
    fn hits(&self, top: TopK) -> Vec<SearchHit> {
        top.into_hits(self.metric, |s| &self.ids[s as usize])
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
        if self.may_overflow(&query) {
            let hits = self.exact_f64(&query, k, slots.iter().copied(), &mut |s| accept(&self.ids[s as usize]));
            return (hits, slots.len() as u64);
        }
        let mut top = TopK::new(k);
        self.vectors.scan_blocks(self.simd, self.metric.scan_op(), &query, &blocks, &mut top, &mut |s| {
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

    /// Bytes held: vectors, codes, ids (twice: slot table and lookup map) and map overhead, approximately.
    pub fn memory_bytes(&self) -> usize {
        self.vectors_bytes() + self.coded_bytes() + self.ids_bytes()
    }

    /// Bytes held by the f32 vectors (allocated, so up to the next growth).
    pub fn vectors_bytes(&self) -> usize {
        self.vectors.memory_bytes()
    }

    /// Bytes held by the ids: the slot table and the lookup map, with their overhead.
    pub fn ids_bytes(&self) -> usize {
        let ids: usize = self.ids.iter().map(|s| s.len()).sum();
        2 * ids + self.ids.capacity() * 16 + self.slots.capacity() * (16 + 4 + 8)
    }

    /// Bytes held by the SQ8 codes and their error bounds (0 without codes).
    pub fn coded_bytes(&self) -> usize {
        self.coded.as_ref().map_or(0, CodedVectors::memory_bytes)
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

    /// The coded scan through the index: the same hits as the plain f32 scan (ids and distances, bit for bit), as
    /// the grid is fitted (at 64 points), refitted (128, 256, …), outgrown by later inserts far outside it, and as
    /// points are replaced and deleted (swap-remove); with and without a filter, k above and below len.
    #[test]
    fn coded_search_equals_the_plain_scan() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let dim = 37;
        for metric in Metric::ALL {
            let mut coded = FlatIndex::with_coded_min(dim, metric, 64);
            let mut plain = FlatIndex::with_coded_min(dim, metric, usize::MAX);
            let check = |coded: &FlatIndex, plain: &FlatIndex, rng: &mut rand::rngs::StdRng| {
                assert!(coded.is_coded() || coded.len() < 64);
                for k in [1, 10, 1000] {
                    let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-3.0..3.0)).collect();
                    assert_eq!(coded.search(&q, k, None), plain.search(&q, k, None), "{metric} k={k}");
                    let odd = |id: &str| id.len() % 2 == 1;
                    assert_eq!(coded.search(&q, k, Some(&odd)), plain.search(&q, k, Some(&odd)), "{metric} k={k}");
                }
            };
            for i in 0..1500 {
                // After 300 points the data drifts far outside the first grids.
                let spread = if i < 300 { 1.0 } else { 6.0 };
                let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-spread..spread)).collect();
                coded.upsert(&format!("p{i}"), &v);
                plain.upsert(&format!("p{i}"), &v);
                if i % 250 == 0 {
                    check(&coded, &plain, &mut rng);
                }
            }
            assert!(coded.is_coded() && coded.coded_bytes() > 0 && !plain.is_coded());
            for i in (0..1500).step_by(3) {
                assert!(coded.remove(&format!("p{i}")) && plain.remove(&format!("p{i}")));
            }
            for i in (1..1500).step_by(7) {
                let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-20.0..20.0)).collect();
                coded.upsert(&format!("p{i}"), &v);
                plain.upsert(&format!("p{i}"), &v);
            }
            assert_eq!(coded.len(), plain.len());
            check(&coded, &plain, &mut rng);
            // Exact duplicates of a stored vector: ties resolved the same way.
            let dup = coded.vector_at(5);
            let raw = plain.vector_at(5);
            assert_eq!(dup, raw);
            for i in 0..20 {
                coded.upsert(&format!("d{i}"), &dup);
                plain.upsert(&format!("d{i}"), &raw);
            }
            assert_eq!(coded.search(&dup, 15, None), plain.search(&raw, 15, None), "{metric}");
        }
    }

    fn distances(hits: &[SearchHit]) -> Vec<(&str, f32)> {
        hits.iter().map(|h| (h.id.as_str(), h.distance)).collect()
    }

    /// Issue #15 (1): cosine distances stay in [0, 2] and are right for components whose f32 squared norm
    /// overflows or underflows; on the plain and the coded index.
    #[test]
    fn cosine_of_extreme_vectors_is_right() {
        for coded_min in [usize::MAX, 1] {
            let mut idx = FlatIndex::with_coded_min(2, Metric::Cosine, coded_min);
            idx.upsert("big", &[2e19, 0.0]);
            idx.upsert("huge", &[3e38, 3e38]);
            idx.upsert("tiny", &[1e-23, 0.0]);
            idx.upsert("opposite", &[-1.0, 0.0]);
            for q in [[1.0f32, 0.0], [1e-23, 0.0], [3e38, 0.0]] {
                let hits = idx.search(&q, 10, None);
                assert_eq!(hits.len(), 4);
                let d: HashMap<&str, f32> = distances(&hits).into_iter().collect();
                assert!(d["big"].abs() < 1e-6 && d["tiny"].abs() < 1e-6, "{q:?}: {d:?}");
                assert!((d["huge"] - (1.0 - std::f32::consts::FRAC_1_SQRT_2)).abs() < 1e-6, "{q:?}: {d:?}");
                assert_eq!(d["opposite"], 2.0, "{q:?}: {d:?}");
                assert!(hits.iter().all(|h| (0.0..=2.0).contains(&h.distance)));
            }
        }
    }

    /// Issue #15 (3): hits whose distance overflows f32 are neither dropped nor misordered: a search returns
    /// min(k, matching points), with finite distances, on every metric, filtered or not, among candidates or not.
    #[test]
    fn distances_that_overflow_f32_keep_every_hit() {
        let points = [("pos", [1e38f32, 0.0]), ("neg", [-1e38, 0.0]), ("zero", [0.0, 0.0])];
        let q = [-1e38f32, 0.0];
        let m = f32::MAX;
        let want: [(Metric, [(&str, f32); 3]); 3] = [
            (Metric::Euclidean, [("neg", 0.0), ("zero", 1e38), ("pos", 2e38)]),
            (Metric::Manhattan, [("neg", 0.0), ("zero", 1e38), ("pos", 2e38)]),
            (Metric::Dot, [("neg", -m), ("zero", 0.0), ("pos", m)]),
        ];
        for (metric, want) in want {
            for coded_min in [usize::MAX, 1] {
                let mut idx = FlatIndex::with_coded_min(2, metric, coded_min);
                for (id, v) in &points {
                    idx.upsert(id, v);
                }
                assert!(idx.may_overflow(&q));
                let hits = idx.search(&q, 3, None);
                assert_eq!(distances(&hits), want.to_vec(), "{metric}");
                let not_zero = |id: &str| id != "zero";
                let hits = idx.search(&q, 3, Some(&not_zero));
                assert_eq!(distances(&hits), vec![want[0], want[2]], "{metric} filtered");
                let (hits, n) = idx.search_among(&q, 2, ["pos", "zero"], &|_| true);
                assert_eq!((distances(&hits), n), (vec![want[1], want[2]], 2), "{metric} among");
                // An ordinary query on ordinary data never takes the slow path.
                let mut small = FlatIndex::with_coded_min(2, metric, coded_min);
                small.upsert("a", &[1e6, -1e6]);
                assert!(!small.may_overflow(&[1e6, 1e6]));
            }
        }
        // inf - inf: dot products that are NaN in f32 are exact in f64.
        let mut idx = FlatIndex::new(2, Metric::Dot);
        idx.upsert("cancel", &[1e38, 1e38]);
        idx.upsert("one", &[1.0, 0.0]);
        let hits = idx.search(&[1e38, -1e38], 2, None);
        assert_eq!(distances(&hits), vec![("one", -1e38), ("cancel", 0.0)]);
    }

    /// The options the binary passes in choose the kernels and the codes, and every choice gives the same hits.
    #[test]
    fn options_choose_kernels_and_codes_with_the_same_results() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let dim = 4;
        let n = CODED_MIN_FLOATS / dim + 10;
        let data: Vec<Vec<f32>> = (0..n).map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect()).collect();
        let q: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        let mut results = Vec::new();
        for simd in Simd::available() {
            for flat_codes in [false, true] {
                let options = IndexOptions { simd, flat_codes, vnni: true };
                let mut idx = FlatIndex::with_options(dim, Metric::Manhattan, options);
                for (i, v) in data.iter().enumerate() {
                    idx.upsert(&i.to_string(), v);
                }
                assert_eq!(idx.is_coded(), flat_codes, "{simd:?}");
                let ids: Vec<String> = idx.search(&q, 10, None).into_iter().map(|h| h.id).collect();
                results.push(ids);
            }
        }
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
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
