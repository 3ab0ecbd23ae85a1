//! A shard's search engine: the exact index, the optional HNSW graph, the metadata with its inverted index, and
//! the planner that picks how each search runs.
//!
//! The flat index always holds every vector at full precision: it answers exact searches, it serves every search
//! while the graph is being built, and it is what a build starts from. The graph is a navigation structure on top.
//! Builds run off the shard's locks ([`BuildJob`]): [`ShardIndex::begin_build`] snapshots the points, writes that
//! arrive meanwhile are queued, and [`ShardIndex::install`] replays the queue and switches searches to the graph.
//!
//! Plans (chosen per search, reported in [`SearchResult::plan`]):
//! - no filter: the graph if ready (and not `exact`), else the flat scan;
//! - with a filter, the cheapest of three by a cost model over the filter's selectivity (known exactly when a
//!   `must` match is answered by the inverted index, [`PayloadIndex::candidates`], else estimated on a sample):
//!   exact distances over the indexed candidates only (exact, and far cheaper than a traversal at 1%); the
//!   graph with the filter applied inside the traversal (which explores about `ef / selectivity` nodes); or the
//!   flat scan with the filter (exact; wins when the filter is selective and not indexed).

use serde_json::Value;

use crate::filter::Filter;
use crate::hnsw::HnswIndex;
use crate::options::IndexOptions;
use crate::payload::PayloadIndex;
use crate::sq8::Sq8;
use crate::text::{Analyzer, CorpusStats, KeywordHit, TextIndex, TextIndexSpec, text_of};
use crate::{FlatIndex, IndexKind, IndexSpec, Metric, Quantization, SearchHit};

/// Planner cost units, relative to one random-access distance: a blocked SIMD scan step (per point), a candidate
/// (hash lookup, sort, filter check), an expanded neighbour of a filtered traversal (distance and filter check).
/// Measured with `rvdb bench hnsw` on GloVe-50.
const FLAT_UNIT: f64 = 0.7;
/// A scan step of a flat index that keeps SQ8 codes ([`FlatIndex::is_coded`]): 3.5–4.5× cheaper per point on
/// GloVe-50 (`rvdb bench flat --plain`), filtered or not. Candidate plans still read f32 blocks ([`FLAT_UNIT`]).
const CODED_FLAT_UNIT: f64 = 0.2;
const CANDIDATE_UNIT: f64 = 4.0;
const FILTERED_GRAPH_UNIT: f64 = 4.0;
/// Points sampled to estimate a filter's selectivity when no inverted index answers it.
const SAMPLE: usize = 512;

#[derive(Debug, Clone, Copy)]
pub struct SearchRequest<'a> {
    pub query: &'a [f32],
    pub k: usize,
    /// Beam width of a graph search (`None` = the store's `ef_search`).
    pub ef: Option<usize>,
    pub filter: Option<&'a Filter>,
    /// Force an exact search even when a graph is ready.
    pub exact: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Flat,
    FilteredFlat,
    Candidates,
    Graph,
    FilteredGraph,
}

impl Plan {
    pub fn as_str(self) -> &'static str {
        match self {
            Plan::Flat => "flat",
            Plan::FilteredFlat => "filtered_flat",
            Plan::Candidates => "candidates",
            Plan::Graph => "hnsw",
            Plan::FilteredGraph => "filtered_hnsw",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SearchResult {
    pub hits: Vec<SearchHit>,
    /// Vectors compared exactly (0 for graph plans, whose work is not a count of the store).
    pub scanned: u64,
    pub plan: Plan,
}

/// Where the graph of an HNSW store stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphStatus {
    /// A flat store.
    None,
    /// Being built; searches use the flat index meanwhile.
    Building,
    Ready,
}

impl GraphStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            GraphStatus::None => "none",
            GraphStatus::Building => "building",
            GraphStatus::Ready => "ready",
        }
    }
}

/// A write the graph has yet to see.
#[derive(Debug, Clone)]
pub enum Op {
    Upsert { id: Box<str>, vector: Vec<f32>, tag: u64 },
    Remove(Box<str>),
}

#[derive(Debug)]
enum Graph {
    Off,
    /// `serving`: the previous graph during a rebuild, kept up to date and searched until the new one is ready.
    Building {
        generation: u64,
        pending: Vec<Op>,
        serving: Option<HnswIndex>,
    },
    Ready(HnswIndex),
}

/// A graph build running off the shard's locks: apply [`BuildJob::run`], then hand it to [`ShardIndex::install`].
#[derive(Debug)]
pub struct BuildJob {
    generation: u64,
    graph: HnswIndex,
    ops: Vec<Op>,
    info: BuildInfo,
    threads: usize,
    progress: std::sync::Arc<BuildProgress>,
}

/// How far a running build is, readable from other threads while it runs (for metrics): writes applied to the
/// graph of all the writes handed to it so far (the catch-up queue adds to both).
#[derive(Debug, Default)]
pub struct BuildProgress {
    pub done: std::sync::atomic::AtomicUsize,
    pub total: std::sync::atomic::AtomicUsize,
}

/// Inserts per progress step: small against a build, large against the batch-parallel chunks of `insert_many`.
const PROGRESS_STEP: usize = 8192;

/// What the last installed build did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BuildInfo {
    /// Started from a persisted graph rather than from scratch.
    pub resumed: bool,
    /// Writes the build applied to the graph (inserts and deletes), the catch-up queue included.
    pub ops: usize,
}

impl BuildJob {
    /// Applies the queued writes; returns false (and stops early) if `cancelled` turns true.
    pub fn run(&mut self, cancelled: &dyn Fn() -> bool) -> bool {
        use std::sync::atomic::Ordering::Relaxed;
        let ops = std::mem::take(&mut self.ops);
        self.info.ops += ops.len();
        self.progress.total.fetch_add(ops.len(), Relaxed);
        self.graph.reserve(ops.iter().filter(|o| matches!(o, Op::Upsert { .. })).count());
        let mut i = 0;
        while i < ops.len() {
            if let Op::Remove(id) = &ops[i] {
                self.graph.remove(id);
                self.progress.done.fetch_add(1, Relaxed);
                i += 1;
                continue;
            }
            let run_end = ops[i..].iter().position(|o| matches!(o, Op::Remove(_))).map_or(ops.len(), |p| i + p);
            let items: Vec<(&str, &[f32], u64)> = ops[i..run_end]
                .iter()
                .filter_map(|o| match o {
                    Op::Upsert { id, vector, tag } => Some((&**id, vector.as_slice(), *tag)),
                    Op::Remove(_) => None,
                })
                .collect();
            for step in items.chunks(PROGRESS_STEP) {
                if !self.graph.insert_many(step, self.threads, cancelled) {
                    return false;
                }
                self.progress.done.fetch_add(step.len(), Relaxed);
            }
            i = run_end;
        }
        true
    }

    /// Threads the job builds with (default: the machine's available parallelism).
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Writes that arrived while the job ran (from [`ShardIndex::take_pending`]).
    pub fn extend(&mut self, ops: Vec<Op>) {
        self.ops.extend(ops);
    }

    pub fn graph(&self) -> &HnswIndex {
        &self.graph
    }

    /// The job's progress counters, shared with whoever reports them.
    pub fn progress(&self) -> std::sync::Arc<BuildProgress> {
        self.progress.clone()
    }
}

/// Where a shard's memory goes, in bytes (allocated: vectors and links up to their next growth).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// The exact index's f32 vectors (normalised for cosine).
    pub vectors: usize,
    /// The exact index's SQ8 codes and error bounds (0 below their threshold size).
    pub codes: usize,
    /// Point ids and the maps that find them (a storage node adds its version map here).
    pub ids: usize,
    /// The HNSW graph: its own copy of each vector (f32 or SQ8 codes), its links, its ids.
    pub graph: usize,
    /// Metadata documents and their inverted index.
    pub metadata: usize,
    /// The keyword (BM25) index.
    pub text: usize,
}

impl MemoryUse {
    pub fn total(&self) -> usize {
        self.vectors + self.codes + self.ids + self.graph + self.metadata + self.text
    }
}

#[derive(Debug)]
pub struct ShardIndex {
    spec: IndexSpec,
    flat: FlatIndex,
    payload: PayloadIndex,
    /// The BM25 index over the points' texts (metadata key `_text`).
    text: TextIndex,
    graph: Graph,
    generation: u64,
    /// Graph changes since the last snapshot was taken (see [`ShardIndex::mark_persisted`]).
    dirty: u64,
    last_build: Option<BuildInfo>,
    options: IndexOptions,
}

impl ShardIndex {
    /// A shard index with the default [`IndexOptions`] (the CPU's best).
    pub fn new(dim: usize, metric: Metric, spec: IndexSpec) -> Self {
        Self::with_options(dim, metric, spec, IndexOptions::default())
    }

    pub fn with_options(dim: usize, metric: Metric, spec: IndexSpec, options: IndexOptions) -> Self {
        Self {
            options,
            spec,
            flat: FlatIndex::with_options(dim, metric, options),
            payload: PayloadIndex::new(),
            text: TextIndex::new(TextIndexSpec::default()),
            graph: Graph::Off,
            generation: 0,
            dirty: 0,
            last_build: None,
        }
    }

    /// The same index, its texts analysed and scored as `spec` says (the default: [`TextIndexSpec::default`]).
    pub fn with_text_index(mut self, spec: TextIndexSpec) -> Self {
        self.text = TextIndex::new(spec);
        self
    }

    pub fn len(&self) -> usize {
        self.flat.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flat.is_empty()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.flat.contains(id)
    }

    pub fn reserve(&mut self, n: usize) {
        self.flat.reserve(n);
    }

    pub fn spec(&self) -> &IndexSpec {
        &self.spec
    }

    pub fn graph_status(&self) -> GraphStatus {
        match self.graph {
            Graph::Off if self.spec.kind == IndexKind::Hnsw => GraphStatus::Building,
            Graph::Off => GraphStatus::None,
            Graph::Building { .. } => GraphStatus::Building,
            Graph::Ready(_) => GraphStatus::Ready,
        }
    }

    /// Inserts or replaces a point (the vector must have been validated); `tag` is kept with its graph node.
    pub fn upsert(&mut self, id: &str, vector: &[f32], metadata: Value, tag: u64) {
        self.flat.upsert(id, vector);
        self.text.set(id, text_of(&metadata));
        self.payload.set(id, metadata);
        match &mut self.graph {
            Graph::Off => {}
            Graph::Building { pending, serving, .. } => {
                if let Some(g) = serving {
                    g.insert(id, vector, tag);
                }
                pending.push(Op::Upsert { id: id.into(), vector: vector.to_vec(), tag })
            }
            Graph::Ready(g) => {
                g.insert(id, vector, tag);
                self.dirty += 1;
            }
        }
    }

    /// Replaces a point's metadata, keeping its vector (and its graph node); `false` if the point is absent.
    pub fn set_metadata(&mut self, id: &str, metadata: Value) -> bool {
        if !self.flat.contains(id) {
            return false;
        }
        if text_of(self.payload.get(id)) != text_of(&metadata) {
            self.text.set(id, text_of(&metadata));
        }
        self.payload.set(id, metadata);
        true
    }

    /// How many points match `filter` (all of them without one): from the inverted index's candidates when a
    /// `must` condition is indexed, else by checking every point's metadata in memory.
    pub fn count(&self, filter: Option<&Filter>) -> usize {
        let Some(filter) = filter else { return self.flat.len() };
        match self.payload.candidates(filter) {
            Some(cands) => cands.into_iter().filter(|id| self.payload.matches(id, filter)).count(),
            None => (0..self.flat.len()).filter(|&slot| self.payload.matches(self.flat.id_at(slot), filter)).count(),
        }
    }

    /// Removes a point; returns whether it was present.
    pub fn remove(&mut self, id: &str) -> bool {
        if !self.flat.remove(id) {
            return false;
        }
        self.payload.remove(id);
        self.text.remove(id);
        match &mut self.graph {
            Graph::Off => {}
            Graph::Building { pending, serving, .. } => {
                if let Some(g) = serving {
                    g.remove(id);
                }
                pending.push(Op::Remove(id.into()))
            }
            Graph::Ready(g) => {
                g.remove(id);
                self.dirty += 1;
            }
        }
        true
    }

    /// The analyzer of this shard's texts.
    pub fn text_analyzer(&self) -> &Analyzer {
        self.text.analyzer()
    }

    /// This shard's BM25 statistics for a query's distinct terms (see [`TextIndex::stats`]).
    pub fn text_stats(&self, query: &[(String, u32)]) -> CorpusStats {
        self.text.stats(query)
    }

    /// The `k` best documents by BM25 for `query` (distinct analysed terms with their counts) among the points
    /// `filter` takes, best first, ties by id; `stats` are the collection's (`None`: this shard's own). A filter
    /// with an indexed `must` condition narrows the candidates first (see [`TextIndex::search`]).
    pub fn keyword_search(
        &self,
        query: &[(String, u32)],
        stats: Option<&CorpusStats>,
        k: usize,
        filter: Option<&Filter>,
    ) -> Vec<KeywordHit> {
        match filter {
            None => self.text.search(query, stats, k, None, &|_| true),
            Some(f) => {
                let cands = self.payload.candidates(f);
                self.text.search(query, stats, k, cands.as_deref(), &|id| self.payload.matches(id, f))
            }
        }
    }

    pub fn search(&self, req: &SearchRequest<'_>) -> SearchResult {
        let n = self.flat.len() as u64;
        let graph = match &self.graph {
            // A query whose distances could overflow `f32` is answered exactly (in `f64`): the graph would
            // compare infinities.
            Graph::Ready(g) | Graph::Building { serving: Some(g), .. }
                if !req.exact && !self.flat.may_overflow(req.query) =>
            {
                Some(g)
            }
            _ => None,
        };
        let Some(filter) = req.filter else {
            return match graph {
                Some(g) => SearchResult { hits: self.graph_search(g, req, None), scanned: 0, plan: Plan::Graph },
                None => SearchResult { hits: self.flat.search(req.query, req.k, None), scanned: n, plan: Plan::Flat },
            };
        };
        let accept = |id: &str| self.payload.matches(id, filter);
        // How many points pass: exactly, from the inverted index, or estimated from an even sample.
        let cands = self.payload.candidates(filter);
        let share = match &cands {
            Some(c) => c.len() as f64 / self.flat.len().max(1) as f64,
            None => self.estimate_share(filter),
        };
        // Costs in units of one random-access distance computation (calibrated on GloVe-50, see the README).
        let ef = self.ef(req) as f64;
        let flat_unit = if self.flat.is_coded() { CODED_FLAT_UNIT } else { FLAT_UNIT };
        let flat_cost = self.flat.len() as f64 * flat_unit;
        let block_cost = self.flat.len() as f64 * FLAT_UNIT;
        // The candidates' blocks of 16 are scanned: a block is read when any of its points is a candidate.
        let cand_cost = cands.as_ref().map_or(f64::INFINITY, |c| {
            c.len() as f64 * CANDIDATE_UNIT + block_cost * (1.0 - (1.0 - share.min(1.0)).powi(16))
        });
        let graph_cost =
            graph.map_or(f64::INFINITY, |_| ef / share.max(1e-6) * 2.0 * self.spec.hnsw.m as f64 * FILTERED_GRAPH_UNIT);
        if let Some(cands) = cands
            && cand_cost <= flat_cost
            && cand_cost <= graph_cost
        {
            // With an f32 graph ready, its nodes' contiguous vectors are read instead of the flat index's blocks
            // (the same prepared vectors: cosine normalised), one node's lines instead of a block's per candidate.
            let (hits, scanned) =
                match graph.and_then(|g| g.search_among(req.query, req.k, cands.iter().copied(), &accept)) {
                    Some(found) => found,
                    None => self.flat.search_among(req.query, req.k, cands, &accept),
                };
            return SearchResult { hits, scanned, plan: Plan::Candidates };
        }
        match graph {
            Some(g) if graph_cost < flat_cost => {
                SearchResult { hits: self.graph_search(g, req, Some(&accept)), scanned: 0, plan: Plan::FilteredGraph }
            }
            _ => SearchResult {
                hits: self.flat.search(req.query, req.k, Some(&accept)),
                scanned: n,
                plan: Plan::FilteredFlat,
            },
        }
    }

    /// The beam width a graph search of `req` uses: its `ef`, else the store's `ef_search`, never below `k`.
    fn ef(&self, req: &SearchRequest<'_>) -> usize {
        req.ef.unwrap_or(self.spec.hnsw.ef_search as usize).max(req.k)
    }

    /// The share of points that pass `filter`, estimated on up to [`SAMPLE`] evenly spaced points (never 0, so
    /// that an unlucky sample does not make a traversal look free).
    fn estimate_share(&self, filter: &Filter) -> f64 {
        let n = self.flat.len();
        if n == 0 {
            return 1.0;
        }
        let take = n.min(SAMPLE);
        let hits = (0..take).filter(|i| self.payload.matches(self.flat.id_at(i * n / take), filter)).count();
        (hits as f64 + 0.5) / (take as f64 + 1.0)
    }

    /// A graph search; on an SQ8 graph every candidate found (`ef` of them) is re-scored on its full vector, so
    /// the order and distances returned are exact among the candidates.
    fn graph_search(
        &self,
        g: &HnswIndex,
        req: &SearchRequest<'_>,
        accept: Option<&dyn Fn(&str) -> bool>,
    ) -> Vec<SearchHit> {
        if g.quantizer().is_none() {
            return g.search(req.query, req.k, req.ef, accept);
        }
        let ef = self.ef(req);
        let found = g.search(req.query, ef, Some(ef), accept);
        self.flat.search_among(req.query, req.k, found.iter().map(|h| h.id.as_str()), &|_| true).0
    }

    /// Whether the graph should be rebuilt: tombstones outnumber live nodes, or an SQ8 grid was fitted on far
    /// fewer points than the store now holds.
    pub fn needs_rebuild(&self) -> bool {
        let Graph::Ready(g) = &self.graph else { return false };
        g.slots_used() > 2 * g.len() + 1024
            || g.quantizer().is_some_and(|q| g.len() >= 1024 && q.trained_on() * 4 < g.len())
    }

    /// Starts a graph build if this is an HNSW store: from `base` (a persisted graph, reconciled here with the
    /// points by their tags: `tag_of(id)` is the tag each live point must carry) or from scratch. Searches keep
    /// using the current graph, or the flat index, until [`ShardIndex::install`].
    pub fn begin_build(&mut self, base: Option<HnswIndex>, tag_of: &dyn Fn(&str) -> u64) -> Option<BuildJob> {
        if self.spec.kind != IndexKind::Hnsw {
            return None;
        }
        self.generation += 1;
        let mut ops = Vec::new();
        let resumed = base.is_some();
        let mut graph = match base {
            Some(g) => {
                for (id, tag) in g.live() {
                    if !self.flat.contains(id) || tag_of(id) != tag {
                        ops.push(Op::Remove(id.into()));
                    }
                }
                // Only the points the snapshot lacks or holds at another version are read out of the flat index.
                for slot in 0..self.flat.len() {
                    let id = self.flat.id_at(slot);
                    let tag = tag_of(id);
                    if g.tag(id) != Some(tag) {
                        ops.push(Op::Upsert { id: id.into(), vector: self.flat.vector_at(slot), tag });
                    }
                }
                g
            }
            None => {
                ops = self
                    .flat
                    .iter()
                    .map(|(id, vector)| Op::Upsert { id: id.into(), tag: tag_of(id), vector })
                    .collect();
                let sq8 = (self.spec.quantization == Quantization::Sq8).then(|| {
                    Sq8::train(
                        self.flat.dim(),
                        ops.iter().filter_map(|o| match o {
                            Op::Upsert { vector, .. } => Some(vector.as_slice()),
                            Op::Remove(_) => None,
                        }),
                    )
                });
                HnswIndex::with_quantizer(self.flat.dim(), self.flat.metric(), self.spec.hnsw, sq8)
            }
        };
        graph.set_simd(self.options.simd);
        // A graph already serving keeps serving (kept current) until the new one replaces it.
        let serving = match std::mem::replace(&mut self.graph, Graph::Off) {
            Graph::Ready(g) => Some(g),
            Graph::Building { serving, .. } => serving,
            Graph::Off => None,
        };
        self.graph = Graph::Building { generation: self.generation, pending: Vec::new(), serving };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Some(BuildJob {
            generation: self.generation,
            graph,
            ops,
            info: BuildInfo { resumed, ops: 0 },
            threads,
            progress: Default::default(),
        })
    }

    /// The writes queued for `job` so far, or `None` if a newer build replaced it.
    pub fn take_pending(&mut self, job: &BuildJob) -> Option<Vec<Op>> {
        match &mut self.graph {
            Graph::Building { generation, pending, .. } if *generation == job.generation => {
                Some(std::mem::take(pending))
            }
            _ => None,
        }
    }

    /// Applies the last queued writes to the job's graph and makes it serve; false if a newer build replaced it.
    pub fn install(&mut self, mut job: BuildJob) -> bool {
        let Some(pending) = self.take_pending(&job) else { return false };
        job.extend(pending);
        job.run(&|| false);
        self.last_build = Some(job.info);
        self.graph = Graph::Ready(job.graph);
        self.dirty = 1;
        true
    }

    pub fn last_build(&self) -> Option<BuildInfo> {
        self.last_build
    }

    /// The graph when it is ready and has changed since the last [`ShardIndex::mark_persisted`].
    pub fn graph_to_persist(&self) -> Option<&HnswIndex> {
        match &self.graph {
            Graph::Ready(g) if self.dirty > 0 => Some(g),
            _ => None,
        }
    }

    pub fn mark_persisted(&mut self) {
        self.dirty = 0;
    }

    /// Bytes held by vectors, graph links and metadata, approximately.
    pub fn memory_bytes(&self) -> usize {
        self.memory_use().total()
    }

    /// [`Self::memory_bytes`] by component.
    pub fn memory_use(&self) -> MemoryUse {
        let graph = match &self.graph {
            Graph::Ready(g) => g.memory_bytes(),
            Graph::Building { pending, serving, .. } => {
                pending.len() * (self.flat.dim() * 4 + 48) + serving.as_ref().map_or(0, HnswIndex::memory_bytes)
            }
            Graph::Off => 0,
        };
        MemoryUse {
            vectors: self.flat.vectors_bytes(),
            codes: self.flat.coded_bytes(),
            ids: self.flat.ids_bytes(),
            graph,
            metadata: self.payload.memory_bytes(),
            text: self.text.memory_bytes(),
        }
    }

    /// Metadata of a point as held in memory (`Null` when it has none).
    pub fn metadata(&self, id: &str) -> &Value {
        self.payload.get(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HnswParams;
    use rand::{Rng, SeedableRng};
    use serde_json::json;

    fn hnsw() -> IndexSpec {
        IndexSpec {
            kind: IndexKind::Hnsw,
            hnsw: HnswParams { m: 8, ef_construction: 64, ef_search: 64 },
            ..IndexSpec::default()
        }
    }

    fn ids(r: &SearchResult) -> Vec<String> {
        r.hits.iter().map(|h| h.id.clone()).collect()
    }

    #[test]
    fn builds_in_the_background_without_losing_writes_and_plans_filters() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut idx = ShardIndex::new(4, Metric::Euclidean, hnsw());
        let vec = |rng: &mut rand::rngs::StdRng| -> Vec<f32> { (0..4).map(|_| rng.random_range(-1.0..1.0)).collect() };
        for i in 0..3000 {
            idx.upsert(&format!("p{i}"), &vec(&mut rng), json!({"bucket": i % 100, "even": i % 2 == 0}), i);
        }
        assert_eq!(idx.graph_status(), GraphStatus::Building, "an HNSW store without a graph is waiting for one");
        let q = vec(&mut rng);
        let req = SearchRequest { query: &q, k: 10, ef: None, filter: None, exact: false };
        assert_eq!(idx.search(&req).plan, Plan::Flat);

        let mut job = idx.begin_build(None, &|id| id[1..].parse().unwrap()).unwrap();
        assert!(job.run(&|| false));
        // Writes while the job ran: a delete, a replacement, a new point.
        idx.remove("p0");
        idx.upsert("p1", &[9.0, 9.0, 9.0, 9.0], json!({}), 5000);
        idx.upsert("new", &q, json!({"bucket": 7}), 5001);
        let mut pending = idx.take_pending(&job).unwrap();
        job.extend(std::mem::take(&mut pending));
        assert!(job.run(&|| false));
        assert!(idx.install(job));
        assert_eq!(idx.graph_status(), GraphStatus::Ready);

        let graph = idx.search(&req);
        assert_eq!(graph.plan, Plan::Graph);
        assert_eq!(graph.hits[0].id, "new");
        let exact = idx.search(&SearchRequest { exact: true, ..req });
        assert_eq!((exact.plan, ids(&exact)), (Plan::Flat, ids(&graph)));
        assert!(!ids(&graph).contains(&"p0".to_string()));

        // 1%: candidates from the payload index, exact.
        let one = Filter::parse(&json!({"must": [{"key": "bucket", "match": {"value": 7}}]}), "f").unwrap();
        let r = idx.search(&SearchRequest { filter: Some(&one), ..req });
        assert_eq!(r.plan, Plan::Candidates);
        let flat = idx.flat.search(&q, 10, Some(&|id: &str| idx.payload.matches(id, &one)));
        assert_eq!(ids(&r), flat.iter().map(|h| h.id.clone()).collect::<Vec<_>>());
        // 50%, not indexable by match: inside the traversal when that is cheaper than a scan (small ef) ...
        let half = Filter::parse(&json!({"must": [{"key": "bucket", "range": {"lt": 50}}]}), "f").unwrap();
        let r = idx.search(&SearchRequest { filter: Some(&half), ef: Some(10), ..req });
        assert_eq!(r.plan, Plan::FilteredGraph);
        assert!(r.hits.iter().all(|h| idx.metadata(&h.id)["bucket"].as_u64().unwrap() < 50));
        // ... and a scan when a 1% filter would make the traversal explore most of these 3,000 points.
        let rare = Filter::parse(&json!({"must": [{"key": "bucket", "range": {"gte": 10, "lt": 11}}]}), "f").unwrap();
        let r = idx.search(&SearchRequest { filter: Some(&rare), ..req });
        assert_eq!(r.plan, Plan::FilteredFlat);
        assert_eq!(
            ids(&r),
            idx.flat
                .search(&q, 10, Some(&|id: &str| idx.payload.matches(id, &rare)))
                .iter()
                .map(|h| h.id.clone())
                .collect::<Vec<_>>()
        );
    }

    /// Issue #15 (3): an HNSW store answers queries whose distances overflow f32 exactly, with every hit.
    #[test]
    fn graphs_leave_overflowing_queries_to_the_exact_path() {
        for metric in [Metric::Euclidean, Metric::Dot, Metric::Manhattan] {
            let mut idx = ShardIndex::new(2, metric, hnsw());
            for (i, v) in [[1e38f32, 0.0], [-1e38, 0.0], [0.0, 0.0]].iter().enumerate() {
                idx.upsert(&i.to_string(), v, Value::Null, 0);
            }
            let mut job = idx.begin_build(None, &|_| 0).unwrap();
            assert!(job.run(&|| false));
            assert!(idx.install(job));
            let r = idx.search(&SearchRequest { query: &[-1e38, 0.0], k: 3, ef: None, filter: None, exact: false });
            assert_eq!((r.plan, ids(&r)), (Plan::Flat, vec!["1".to_string(), "2".into(), "0".into()]), "{metric}");
            assert!(r.hits.iter().all(|h| h.distance.is_finite()));
            let r = idx.search(&SearchRequest { query: &[0.5, 0.0], k: 3, ef: None, filter: None, exact: false });
            assert_eq!(r.hits.len(), 3, "{metric}");
        }
    }

    #[test]
    fn sq8_graphs_rescore_on_full_vectors() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        for metric in Metric::ALL {
            let spec = IndexSpec { quantization: Quantization::Sq8, ..hnsw() };
            let mut idx = ShardIndex::new(16, metric, spec);
            for i in 0..3000 {
                let v: Vec<f32> = (0..16).map(|_| rng.random_range(-2.0..2.0)).collect();
                idx.upsert(&i.to_string(), &v, Value::Null, 0);
            }
            let mut job = idx.begin_build(None, &|_| 0).unwrap();
            job.run(&|| false);
            assert!(job.graph().quantizer().is_some());
            assert!(idx.install(job));
            let mut hits = 0;
            for _ in 0..30 {
                let q: Vec<f32> = (0..16).map(|_| rng.random_range(-2.0..2.0)).collect();
                let req = SearchRequest { query: &q, k: 10, ef: Some(64), filter: None, exact: false };
                let approx = idx.search(&req);
                let exact = idx.search(&SearchRequest { exact: true, ..req });
                assert_eq!(approx.plan, Plan::Graph);
                // Re-scored: a hit's distance is its exact distance.
                for h in &approx.hits {
                    if let Some(e) = exact.hits.iter().find(|e| e.id == h.id) {
                        assert!((e.distance - h.distance).abs() < 1e-4, "{metric}");
                    }
                }
                hits += approx.hits.iter().filter(|h| exact.hits.iter().any(|e| e.id == h.id)).count();
            }
            assert!(hits >= 270, "{metric}: SQ8 recall@10 {hits}/300");
        }
    }

    #[test]
    fn a_persisted_graph_is_reconciled_by_tags() {
        let mut a = ShardIndex::new(2, Metric::Euclidean, hnsw());
        for i in 0..200u64 {
            a.upsert(&i.to_string(), &[i as f32, 0.0], Value::Null, i);
        }
        let mut job = a.begin_build(None, &|id| id.parse().unwrap()).unwrap();
        job.run(&|| false);
        assert!(a.install(job));
        let mut snapshot = Vec::new();
        a.graph_to_persist().unwrap().write_to(&mut snapshot).unwrap();
        a.mark_persisted();
        assert!(a.graph_to_persist().is_none());

        // After the snapshot: "5" moved (new tag), "6" deleted, "900" added.
        let mut b = ShardIndex::new(2, Metric::Euclidean, hnsw());
        for i in 0..200u64 {
            match i {
                5 => b.upsert("5", &[1000.0, 0.0], Value::Null, 777),
                6 => {}
                _ => b.upsert(&i.to_string(), &[i as f32, 0.0], Value::Null, i),
            }
        }
        b.upsert("900", &[6.2, 0.0], Value::Null, 900);
        let tags = |id: &str| if id == "5" { 777 } else { id.parse().unwrap() };
        let base = HnswIndex::read_from(&mut snapshot.as_slice(), 2, Metric::Euclidean).unwrap();
        let mut job = b.begin_build(Some(base), &tags).unwrap();
        assert_eq!(job.ops.len(), 3 + 1, "remove 5 and 6, insert 5 and 900");
        job.run(&|| false);
        assert!(b.install(job));
        let q = [6.0, 0.0];
        let r = b.search(&SearchRequest { query: &q, k: 3, ef: Some(50), filter: None, exact: false });
        assert_eq!(ids(&r), ["900", "7", "4"].map(String::from));
    }
}
