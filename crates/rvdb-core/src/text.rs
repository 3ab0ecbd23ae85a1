//! Keyword search: a shard's full-text index over its documents' texts, scored by BM25.
//!
//! A document is the text a point keeps in its metadata under [`TEXT_KEY`] (what `insert_texts` writes, or any
//! point written with that key). The index is derived from those texts, which RocksDB stores in the point's own
//! record, in the same `WriteBatch` as its vector: so the WAL, replication and catch-up, backups, exports and
//! restores carry the index with no second record, format or storage engine, and it cannot disagree with the
//! points. A shard rebuilds it while it loads its records (as it rebuilds the payload index), so a kill -9 loses
//! nothing that was acknowledged. Keeping the postings themselves in RocksDB too would write every term of every
//! document a second time and make an update a read-modify-write of many keys, for a faster start only.
//!
//! Analysis ([`Analyzer`]): Unicode word segmentation (UAX #29), lowercasing, then optional stop words and an
//! optional Snowball stemmer, both fixed per store at creation ([`TextIndexSpec`]). Scoring is Lucene's BM25
//! (as Lucene ≥ 8, and `bm25s` method `lucene`): for each query term t occurring `w` times in the query,
//!
//! ```text
//! score(d) = Σ_t  w · idf(t) · tf / (tf + k1 · (1 − b + b · |d| / avgdl)),   idf(t) = ln(1 + (N − df + 0.5) / (df + 0.5))
//! ```
//!
//! where N, df and avgdl are the collection's ([`CorpusStats`]): a sharded store gathers them from every shard
//! before scoring, so a document scores the same, bit for bit, whatever the shard count (each contribution is
//! computed by one function, in query-term order). Ties rank by id.

use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use unicode_segmentation::UnicodeSegmentation;

use crate::CoreError;

/// The metadata key that holds a point's document text.
pub const TEXT_KEY: &str = "_text";

/// Longest token indexed, in bytes (as Lucene's `StandardTokenizer`'s 255 characters): a longer "word" is a
/// blob (base64, a hash run), not something a query names.
pub const MAX_TOKEN_BYTES: usize = 255;

/// Most stop words a store may list.
pub const MAX_STOP_WORDS: usize = 10_000;

/// Snowball stemmers a store may name.
pub const STEMMERS: &[&str] = &[
    "arabic",
    "danish",
    "dutch",
    "english",
    "finnish",
    "french",
    "german",
    "greek",
    "hungarian",
    "italian",
    "norwegian",
    "portuguese",
    "romanian",
    "russian",
    "spanish",
    "swedish",
    "tamil",
    "turkish",
];

/// Built-in stop-word lists by language.
pub const STOP_WORD_LANGUAGES: &[&str] = &["english"];

/// Lucene's English stop set (`EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`).
const ENGLISH_STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it", "no", "not", "of",
    "on", "or", "such", "that", "the", "their", "then", "there", "these", "they", "this", "to", "was", "will", "with",
];

fn default_k1() -> f32 {
    1.2
}

fn default_b() -> f32 {
    0.75
}

/// How a store's texts are analysed and scored, fixed at creation. The default: words lowercased, no stop words,
/// no stemming (Lucene's `StandardAnalyzer`), k1 1.2, b 0.75.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextIndexSpec {
    /// A Snowball stemmer's language (see [`STEMMERS`]): `running` and `runs` both index as `run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stemmer: Option<String>,
    /// A built-in stop-word list (see [`STOP_WORD_LANGUAGES`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_words_language: Option<String>,
    /// More words to leave out (compared lowercased, before stemming).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop_words: Vec<String>,
    /// Term-frequency saturation.
    #[serde(default = "default_k1")]
    pub k1: f32,
    /// Length normalisation: 0 = none, 1 = full.
    #[serde(default = "default_b")]
    pub b: f32,
}

/// A validated spec has finite k1 and b, so equality is reflexive (a store's config is compared whole).
impl Eq for TextIndexSpec {}

impl Default for TextIndexSpec {
    fn default() -> Self {
        Self { stemmer: None, stop_words_language: None, stop_words: Vec::new(), k1: default_k1(), b: default_b() }
    }
}

impl TextIndexSpec {
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    pub fn validate(&self) -> Result<(), CoreError> {
        let bad = |m: String| Err(CoreError::InvalidConfig(format!("text_index.{m}")));
        if let Some(s) = &self.stemmer
            && !STEMMERS.contains(&s.as_str())
        {
            return bad(format!(
                "stemmer {:?} is unknown: expected one of {}",
                crate::error::excerpt(s),
                STEMMERS.join(", ")
            ));
        }
        if let Some(l) = &self.stop_words_language
            && !STOP_WORD_LANGUAGES.contains(&l.as_str())
        {
            return bad(format!(
                "stop_words_language {:?} is unknown: expected one of {} (or list them in stop_words)",
                crate::error::excerpt(l),
                STOP_WORD_LANGUAGES.join(", ")
            ));
        }
        if self.stop_words.len() > MAX_STOP_WORDS {
            return bad(format!("stop_words has {} words: at most {MAX_STOP_WORDS}", self.stop_words.len()));
        }
        if let Some((i, _)) =
            self.stop_words.iter().enumerate().find(|(_, w)| w.is_empty() || w.len() > MAX_TOKEN_BYTES)
        {
            return bad(format!("stop_words[{i}] must have 1 to {MAX_TOKEN_BYTES} bytes"));
        }
        if !(self.k1.is_finite() && (0.0..=100.0).contains(&self.k1)) {
            return bad(format!("k1 is {}: must be between 0 and 100 (1.2 is usual)", self.k1));
        }
        if !(self.b.is_finite() && (0.0..=1.0).contains(&self.b)) {
            return bad(format!("b is {}: must be between 0 and 1 (0.75 is usual)", self.b));
        }
        Ok(())
    }
}

/// Turns a text into index terms, as a store's [`TextIndexSpec`] says.
pub struct Analyzer {
    stemmer: Option<rust_stemmers::Stemmer>,
    stop: HashSet<String>,
}

impl fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Analyzer").field("stemmer", &self.stemmer.is_some()).field("stop", &self.stop.len()).finish()
    }
}

fn algorithm(name: &str) -> Option<rust_stemmers::Algorithm> {
    use rust_stemmers::Algorithm::*;
    Some(match name {
        "arabic" => Arabic,
        "danish" => Danish,
        "dutch" => Dutch,
        "english" => English,
        "finnish" => Finnish,
        "french" => French,
        "german" => German,
        "greek" => Greek,
        "hungarian" => Hungarian,
        "italian" => Italian,
        "norwegian" => Norwegian,
        "portuguese" => Portuguese,
        "romanian" => Romanian,
        "russian" => Russian,
        "spanish" => Spanish,
        "swedish" => Swedish,
        "tamil" => Tamil,
        "turkish" => Turkish,
        _ => return None,
    })
}

impl Analyzer {
    /// The analyzer of `spec` (which must have been validated: an unknown stemmer or list is left out).
    pub fn new(spec: &TextIndexSpec) -> Self {
        let mut stop: HashSet<String> = spec.stop_words.iter().map(|w| w.to_lowercase()).collect();
        if spec.stop_words_language.as_deref() == Some("english") {
            stop.extend(ENGLISH_STOP_WORDS.iter().map(|w| w.to_string()));
        }
        Self { stemmer: spec.stemmer.as_deref().and_then(algorithm).map(rust_stemmers::Stemmer::create), stop }
    }

    /// The terms of `text`, in order, repeats kept.
    pub fn terms(&self, text: &str) -> Vec<String> {
        let mut out = Vec::new();
        for word in text.unicode_words() {
            if word.len() > MAX_TOKEN_BYTES {
                continue;
            }
            let lower = word.to_lowercase();
            if self.stop.contains(&lower) {
                continue;
            }
            match &self.stemmer {
                Some(s) => out.push(s.stem(&lower).into_owned()),
                None => out.push(lower),
            }
        }
        out
    }

    /// A query's distinct terms in order of first occurrence, each with how often the query has it.
    pub fn query(&self, text: &str) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = Vec::new();
        let mut at: HashMap<String, usize> = HashMap::new();
        for t in self.terms(text) {
            match at.get(&t) {
                Some(&i) => out[i].1 += 1,
                None => {
                    at.insert(t.clone(), out.len());
                    out.push((t, 1));
                }
            }
        }
        out
    }
}

/// Collection-wide statistics BM25 needs for one query: documents, their total length, and each query term's
/// document frequency (in the order of the query's terms). Shards' statistics add up.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorpusStats {
    pub documents: u64,
    pub total_length: u64,
    pub document_frequency: Vec<u64>,
}

impl CorpusStats {
    /// Adds another shard's statistics for the same terms.
    pub fn add(&mut self, other: &CorpusStats) {
        self.documents += other.documents;
        self.total_length += other.total_length;
        if self.document_frequency.len() < other.document_frequency.len() {
            self.document_frequency.resize(other.document_frequency.len(), 0);
        }
        for (a, b) in self.document_frequency.iter_mut().zip(&other.document_frequency) {
            *a += b;
        }
    }
}

/// BM25's parameters for one query: k1, b, the average document length, and each term's weight × idf.
#[derive(Debug, Clone)]
struct Scoring {
    k1: f32,
    b: f32,
    avgdl: f32,
    /// Per query term: occurrences in the query × idf (0 for a term no document has).
    weights: Vec<f32>,
}

impl Scoring {
    fn new(spec: &TextIndexSpec, query: &[(String, u32)], stats: &CorpusStats) -> Self {
        let n = stats.documents as f64;
        let avgdl = if stats.documents == 0 { 1.0 } else { (stats.total_length as f64 / n) as f32 };
        let weights = query
            .iter()
            .enumerate()
            .map(|(i, (_, w))| {
                let df = stats.document_frequency.get(i).copied().unwrap_or(0) as f64;
                if df == 0.0 { 0.0 } else { *w as f32 * (1.0 + (n - df + 0.5) / (df + 0.5)).ln() as f32 }
            })
            .collect();
        Self { k1: spec.k1, b: spec.b, avgdl: avgdl.max(f32::MIN_POSITIVE), weights }
    }

    /// One term's contribution to a document's score: the only place it is computed, so that every plan (and
    /// every shard count) sums the same numbers in the same order.
    #[inline]
    fn contribution(&self, term: usize, tf: u32, len: u32) -> f32 {
        let tf = tf as f32;
        self.weights[term] * tf / (tf + self.k1 * (1.0 - self.b + self.b * len as f32 / self.avgdl))
    }
}

/// A keyword hit: a point id and its BM25 score (higher is better).
#[derive(Debug, Clone, PartialEq)]
pub struct KeywordHit {
    pub id: String,
    pub score: f32,
}

/// Postings per block of [`BlockMax`] bounds: Lucene's and tantivy's block size.
const BLOCK: usize = 128;

/// What bounds every score a block of postings can give: its largest term frequency and its shortest document
/// (BM25 grows with tf and shrinks with length, so `contribution(max_tf, min_len)` is at least each posting's).
/// Dead slots stay in the bounds until compaction: a bound may be loose, never too low.
#[derive(Debug, Clone, Copy)]
struct BlockMax {
    /// The block's last document slot.
    last: u32,
    max_tf: u32,
    min_len: u32,
}

#[derive(Debug, Default)]
struct Postings {
    /// Document slots, ascending (dead slots stay until the next compaction).
    docs: Vec<u32>,
    tfs: Vec<u32>,
    /// One per [`BLOCK`] postings (the last one partial).
    blocks: Vec<BlockMax>,
    /// Live documents with the term.
    df: u32,
}

impl Postings {
    /// Appends a posting (slots only grow, so the list stays sorted) and keeps its block's bounds.
    fn push(&mut self, slot: u32, tf: u32, len: u32) {
        if self.docs.len().is_multiple_of(BLOCK) {
            self.blocks.push(BlockMax { last: slot, max_tf: tf, min_len: len });
        } else if let Some(b) = self.blocks.last_mut() {
            b.last = slot;
            b.max_tf = b.max_tf.max(tf);
            b.min_len = b.min_len.min(len);
        }
        self.docs.push(slot);
        self.tfs.push(tf);
        self.df += 1;
    }
}

#[derive(Debug)]
struct Doc {
    id: Box<str>,
    /// Distinct terms and their frequencies, by term number ascending (what removal and candidate scoring read).
    terms: Box<[(u32, u32)]>,
}

/// Marks a dead slot in `lens`.
const DEAD: u32 = u32::MAX;

/// One shard's inverted index over its documents.
#[derive(Debug)]
pub struct TextIndex {
    spec: TextIndexSpec,
    analyzer: Analyzer,
    terms: HashMap<Box<str>, u32>,
    postings: Vec<Postings>,
    slots: HashMap<Box<str>, u32>,
    docs: Vec<Doc>,
    /// Length (terms) of the document in each slot; [`DEAD`] for a removed one.
    lens: Vec<u32>,
    live: u64,
    total_length: u64,
    dead: usize,
    /// Postings held (live and dead), for memory accounting.
    entries: usize,
}

#[cfg(test)]
thread_local! {
    /// Per-thread score accumulator and the slots it touched, reused across queries.
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<u32>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// A hit ordered so that the best (highest score, then smallest id) is the greatest.
struct Ranked<'a>(f32, &'a str);

impl PartialEq for Ranked<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}
impl Eq for Ranked<'_> {}
impl PartialOrd for Ranked<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&other.0).then_with(|| other.1.cmp(self.1))
    }
}

/// The k best of `(score, id)` pairs that `accept` takes, best first; `accept` runs only on pairs that would
/// enter the current top k.
struct TopK<'a> {
    k: usize,
    /// Min-heap of the best so far (its top is the worst kept).
    heap: BinaryHeap<std::cmp::Reverse<Ranked<'a>>>,
}

impl<'a> TopK<'a> {
    fn new(k: usize) -> Self {
        Self { k, heap: BinaryHeap::with_capacity(k + 1) }
    }

    /// The k-th score once k hits are held: a document scoring below it cannot enter.
    fn threshold(&self) -> Option<f32> {
        (self.k > 0 && self.heap.len() == self.k).then(|| self.heap.peek().map_or(f32::INFINITY, |w| w.0.0))
    }

    fn offer(&mut self, score: f32, id: &'a str, accept: &dyn Fn(&str) -> bool) {
        if self.k == 0 {
            return;
        }
        let r = Ranked(score, id);
        if self.heap.len() == self.k && self.heap.peek().is_some_and(|w| r <= w.0) {
            return;
        }
        if !accept(id) {
            return;
        }
        self.heap.push(std::cmp::Reverse(r));
        if self.heap.len() > self.k {
            self.heap.pop();
        }
    }

    fn into_hits(self) -> Vec<KeywordHit> {
        let mut v: Vec<Ranked<'a>> = self.heap.into_iter().map(|r| r.0).collect();
        v.sort_unstable_by(|a, b| b.cmp(a));
        v.into_iter().map(|r| KeywordHit { id: r.1.to_string(), score: r.0 }).collect()
    }
}

/// A position in one query term's postings.
struct Cursor<'a> {
    /// The term's place in the query.
    term: usize,
    p: &'a Postings,
    pos: usize,
    /// The block that holds `pos`.
    block: usize,
    /// Bound of the term's contribution to any document.
    ub: f32,
}

impl Cursor<'_> {
    fn doc(&self) -> u32 {
        self.p.docs.get(self.pos).copied().unwrap_or(u32::MAX)
    }

    /// Moves to the next posting.
    fn next(&mut self) {
        self.pos += 1;
        if self.pos.is_multiple_of(BLOCK) && self.pos < self.p.docs.len() {
            self.block += 1;
        }
    }

    /// Moves to the first posting at or after slot `target` (blocks skipped by their last slot).
    fn advance_to(&mut self, target: u32) {
        if self.doc() >= target {
            return;
        }
        let blocks = &self.p.blocks;
        while self.block < blocks.len() && blocks[self.block].last < target {
            self.block += 1;
        }
        if self.block == blocks.len() {
            self.pos = self.p.docs.len();
            self.block = blocks.len().saturating_sub(1);
            return;
        }
        let start = self.pos.max(self.block * BLOCK);
        let end = ((self.block + 1) * BLOCK).min(self.p.docs.len());
        self.pos = start + self.p.docs[start..end].partition_point(|&d| d < target);
    }
}

impl TextIndex {
    pub fn new(spec: TextIndexSpec) -> Self {
        Self {
            analyzer: Analyzer::new(&spec),
            spec,
            terms: HashMap::new(),
            postings: Vec::new(),
            slots: HashMap::new(),
            docs: Vec::new(),
            lens: Vec::new(),
            live: 0,
            total_length: 0,
            dead: 0,
            entries: 0,
        }
    }

    pub fn spec(&self) -> &TextIndexSpec {
        &self.spec
    }

    pub fn analyzer(&self) -> &Analyzer {
        &self.analyzer
    }

    /// Documents indexed (texts with at least one term).
    pub fn len(&self) -> u64 {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Indexes `text` as `id`'s document, replacing any it had; `None` (or a text without terms) leaves it none.
    pub fn set(&mut self, id: &str, text: Option<&str>) {
        self.remove(id);
        let Some(text) = text else { return };
        let terms = self.analyzer.terms(text);
        if terms.is_empty() {
            return;
        }
        let len = u32::try_from(terms.len()).unwrap_or(u32::MAX - 1);
        let mut counts: HashMap<u32, u32> = HashMap::new();
        for t in terms {
            let next = self.postings.len() as u32;
            let number = *self.terms.entry(t.into_boxed_str()).or_insert(next);
            if number == next {
                self.postings.push(Postings::default());
            }
            *counts.entry(number).or_default() += 1;
        }
        let mut forward: Vec<(u32, u32)> = counts.into_iter().collect();
        forward.sort_unstable();
        let slot = self.docs.len() as u32;
        for &(t, tf) in &forward {
            self.postings[t as usize].push(slot, tf, len);
        }
        self.entries += forward.len();
        self.docs.push(Doc { id: id.into(), terms: forward.into_boxed_slice() });
        self.lens.push(len);
        self.slots.insert(id.into(), slot);
        self.live += 1;
        self.total_length += u64::from(len);
    }

    /// Removes `id`'s document, if it has one.
    pub fn remove(&mut self, id: &str) {
        let Some(slot) = self.slots.remove(id) else { return };
        let len = std::mem::replace(&mut self.lens[slot as usize], DEAD);
        for &(t, _) in self.docs[slot as usize].terms.iter() {
            self.postings[t as usize].df -= 1;
        }
        self.live -= 1;
        self.total_length -= u64::from(len);
        self.dead += 1;
        if self.dead > 1024 && self.dead as u64 > self.live {
            self.compact();
        }
    }

    /// Drops dead slots and unused terms, renumbering both (order kept, so postings stay sorted).
    fn compact(&mut self) {
        let mut term_map = vec![u32::MAX; self.postings.len()];
        let mut terms: Vec<(Box<str>, u32)> = std::mem::take(&mut self.terms).into_iter().collect();
        terms.sort_unstable_by_key(|(_, n)| *n);
        let mut kept_terms = HashMap::with_capacity(terms.len());
        let mut postings = Vec::new();
        for (name, old) in terms {
            if self.postings[old as usize].df > 0 {
                term_map[old as usize] = postings.len() as u32;
                kept_terms.insert(name, postings.len() as u32);
                postings.push(Postings::default());
            }
        }
        let docs = std::mem::take(&mut self.docs);
        let lens = std::mem::take(&mut self.lens);
        self.slots.clear();
        self.entries = 0;
        for (doc, len) in docs.into_iter().zip(lens) {
            if len == DEAD {
                continue;
            }
            let slot = self.docs.len() as u32;
            let terms: Box<[(u32, u32)]> = doc.terms.iter().map(|&(t, tf)| (term_map[t as usize], tf)).collect();
            for &(t, tf) in terms.iter() {
                postings[t as usize].push(slot, tf, len);
            }
            self.entries += terms.len();
            self.slots.insert(doc.id.clone(), slot);
            self.docs.push(Doc { id: doc.id, terms });
            self.lens.push(len);
        }
        self.terms = kept_terms;
        self.postings = postings;
        self.dead = 0;
    }

    /// This shard's statistics for a query's terms.
    pub fn stats(&self, query: &[(String, u32)]) -> CorpusStats {
        CorpusStats {
            documents: self.live,
            total_length: self.total_length,
            document_frequency: query
                .iter()
                .map(|(t, _)| self.terms.get(t.as_str()).map_or(0, |&n| u64::from(self.postings[n as usize].df)))
                .collect(),
        }
    }

    /// The `k` documents that score highest for `query` (distinct terms with their counts, as
    /// [`Analyzer::query`] gives), best first, ties by id; only documents that `accept` takes and that contain at
    /// least one query term. `stats` are the collection's (`None`: this shard's own). `candidates`, when given,
    /// is a superset of the ids `accept` takes (from the payload index): with few of them, each is scored from
    /// its own term list instead of walking the postings.
    pub fn search(
        &self,
        query: &[(String, u32)],
        stats: Option<&CorpusStats>,
        k: usize,
        candidates: Option<&[&str]>,
        accept: &dyn Fn(&str) -> bool,
    ) -> Vec<KeywordHit> {
        let own;
        let stats = match stats {
            Some(s) => s,
            None => {
                own = self.stats(query);
                &own
            }
        };
        if k == 0 {
            return Vec::new();
        }
        let scoring = Scoring::new(&self.spec, query, stats);
        // Each query term's postings (absent terms and terms of weight 0 contribute nothing).
        let lists: Vec<(usize, &Postings)> = query
            .iter()
            .enumerate()
            .filter(|&(i, _)| scoring.weights[i] > 0.0)
            .filter_map(|(i, (t, _))| self.terms.get(t.as_str()).map(|&n| (i, &self.postings[n as usize])))
            .collect();
        let walk: usize = lists.iter().map(|(_, p)| p.docs.len()).sum();
        let mut top = TopK::new(k);
        if let Some(cands) = candidates
            && cands.len() * lists.len().max(1) * 4 < walk
        {
            // Few candidates: score each from its own terms (binary search per query term).
            let numbers: Vec<(usize, u32)> = lists.iter().map(|&(i, _)| (i, self.terms[query[i].0.as_str()])).collect();
            for &id in cands {
                let Some(&slot) = self.slots.get(id) else { continue };
                let (doc, len) = (&self.docs[slot as usize], self.lens[slot as usize]);
                let mut score = 0.0f32;
                let mut hit = false;
                for &(i, number) in &numbers {
                    if let Ok(at) = doc.terms.binary_search_by_key(&number, |&(t, _)| t) {
                        score += scoring.contribution(i, doc.terms[at].1, len);
                        hit = true;
                    }
                }
                if hit {
                    top.offer(score, &doc.id, accept);
                }
            }
            return top.into_hits();
        }
        self.max_score(&scoring, &lists, &mut top, accept);
        top.into_hits()
    }

    /// Document-at-a-time over the query's postings with MaxScore and block-max pruning (as Lucene's
    /// `MaxScoreBulkScorer`): once the top k is full with a k-th score θ, the terms whose bounds sum below θ
    /// cannot make a document enter alone, so only the others ("essential" terms) propose documents, and the
    /// rest are looked up for those; a window of postings whose block bounds sum below θ is skipped whole.
    /// Exact: a document is pruned only when its bound is below θ (a tie could still enter by its id), and the
    /// score of a document kept is summed in query-term order by [`Scoring::contribution`], the same numbers as
    /// the exhaustive walk.
    fn max_score<'a>(
        &'a self,
        scoring: &Scoring,
        lists: &[(usize, &'a Postings)],
        top: &mut TopK<'a>,
        accept: &dyn Fn(&str) -> bool,
    ) {
        // A bound is summed in another order than the score, and f32 rounding could put the score a few ulps
        // above it: bounds are widened by far more than that before they prune.
        let slack = 1.0 + 1e-5 * (lists.len() as f32 + 1.0);
        let bound = |i: usize, b: &BlockMax| scoring.contribution(i, b.max_tf, b.min_len);
        let mut cursors: Vec<Cursor<'a>> = lists
            .iter()
            .map(|&(term, p)| Cursor {
                term,
                p,
                pos: 0,
                block: 0,
                ub: p.blocks.iter().map(|b| bound(term, b)).fold(0.0, f32::max),
            })
            .collect();
        // Ascending bounds: the non-essential terms are a prefix, `below[j]` the sum of the first j bounds.
        cursors.sort_by(|a, b| a.ub.total_cmp(&b.ub).then(a.term.cmp(&b.term)));
        let below: Vec<f32> = std::iter::once(0.0)
            .chain(cursors.iter().scan(0.0f32, |sum, c| {
                *sum += c.ub;
                Some(*sum)
            }))
            .collect();
        let mut contributions = vec![0.0f32; lists.iter().map(|&(i, _)| i + 1).max().unwrap_or(0)];
        let mut threshold = f32::NEG_INFINITY;
        // cursors[..essential] are non-essential.
        let mut essential = 0;
        loop {
            let mut doc = u32::MAX;
            let mut window = u32::MAX;
            for c in &cursors[essential..] {
                let d = c.doc();
                if d < doc {
                    doc = d;
                }
                if d != u32::MAX {
                    window = window.min(c.p.blocks[c.block].last);
                }
            }
            if doc == u32::MAX {
                break;
            }
            if threshold > 0.0 {
                // Every document of [doc, window] is bounded by the blocks there plus the non-essential bounds.
                let mut ub = below[essential];
                for c in &cursors[essential..] {
                    if c.doc() <= window {
                        ub += bound(c.term, &c.p.blocks[c.block]);
                    }
                }
                if ub * slack < threshold {
                    for c in &mut cursors[essential..] {
                        c.advance_to(window.saturating_add(1));
                    }
                    continue;
                }
            }
            let len = self.lens[doc as usize];
            let mut partial = 0.0f32;
            for c in &mut cursors[essential..] {
                if c.doc() == doc {
                    if len != DEAD {
                        let v = scoring.contribution(c.term, c.p.tfs[c.pos], len);
                        contributions[c.term] = v;
                        partial += v;
                    }
                    c.next();
                }
            }
            if len == DEAD {
                continue;
            }
            // The non-essential terms, largest bound first, while they can still lift the document past θ.
            let mut pruned = false;
            for j in (0..essential).rev() {
                if (partial + below[j + 1]) * slack < threshold {
                    pruned = true;
                    break;
                }
                let c = &mut cursors[j];
                c.advance_to(doc);
                if c.doc() == doc {
                    let v = scoring.contribution(c.term, c.p.tfs[c.pos], len);
                    contributions[c.term] = v;
                    partial += v;
                }
            }
            if !pruned {
                let mut score = 0.0f32;
                for c in contributions.iter() {
                    score += *c;
                }
                top.offer(score, &self.docs[doc as usize].id, accept);
                if let Some(t) = top.threshold()
                    && t > threshold
                {
                    threshold = t;
                    while essential < cursors.len() && below[essential + 1] * slack < threshold {
                        essential += 1;
                    }
                }
            }
            contributions.iter_mut().for_each(|c| *c = 0.0);
        }
    }

    /// Term at a time over every posting into a score per document: the reference [`Self::max_score`] is held
    /// to in tests.
    #[cfg(test)]
    fn search_exhaustive(
        &self,
        query: &[(String, u32)],
        stats: Option<&CorpusStats>,
        k: usize,
        accept: &dyn Fn(&str) -> bool,
    ) -> Vec<KeywordHit> {
        let own = self.stats(query);
        let scoring = Scoring::new(&self.spec, query, stats.unwrap_or(&own));
        let mut top = TopK::new(k);
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let (acc, touched) = &mut *scratch;
            if acc.len() < self.docs.len() {
                acc.resize(self.docs.len(), 0.0);
            }
            touched.clear();
            for (i, (t, _)) in query.iter().enumerate() {
                let Some(&n) = self.terms.get(t.as_str()) else { continue };
                if scoring.weights[i] <= 0.0 {
                    continue;
                }
                let p = &self.postings[n as usize];
                for (&slot, &tf) in p.docs.iter().zip(&p.tfs) {
                    let len = self.lens[slot as usize];
                    if len == DEAD {
                        continue;
                    }
                    let a = &mut acc[slot as usize];
                    if *a == 0.0 {
                        touched.push(slot);
                    }
                    *a += scoring.contribution(i, tf, len);
                }
            }
            for &slot in touched.iter() {
                let score = std::mem::replace(&mut acc[slot as usize], 0.0);
                top.offer(score, &self.docs[slot as usize].id, accept);
            }
        });
        top.into_hits()
    }

    /// Approximate heap bytes: postings (8 bytes each, and again in the documents' term lists), ids, terms.
    pub fn memory_bytes(&self) -> usize {
        self.entries * 16
            + self.docs.len() * 48
            + self.slots.keys().map(|k| 2 * k.len() + 32).sum::<usize>()
            + self.terms.keys().map(|k| k.len() + 64).sum::<usize>()
    }
}

/// A metadata document's text, if it has one.
pub fn text_of(metadata: &serde_json::Value) -> Option<&str> {
    metadata.get(TEXT_KEY)?.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(spec: TextIndexSpec, docs: &[(&str, &str)]) -> TextIndex {
        let mut idx = TextIndex::new(spec);
        for (id, text) in docs {
            idx.set(id, Some(text));
        }
        idx
    }

    /// BM25 exactly as written in the module docs, from the texts alone, in f64.
    fn naive(analyzer: &Analyzer, spec: &TextIndexSpec, docs: &[(&str, &str)], query: &str) -> Vec<(String, f64)> {
        let analysed: Vec<(String, Vec<String>)> =
            docs.iter().map(|(id, t)| (id.to_string(), analyzer.terms(t))).filter(|(_, t)| !t.is_empty()).collect();
        let n = analysed.len() as f64;
        let avgdl = analysed.iter().map(|(_, t)| t.len()).sum::<usize>() as f64 / n;
        let q = analyzer.terms(query);
        let mut out = Vec::new();
        for (id, terms) in &analysed {
            let mut score = 0.0;
            let mut any = false;
            for qt in &q {
                let tf = terms.iter().filter(|t| *t == qt).count() as f64;
                if tf == 0.0 {
                    continue;
                }
                any = true;
                let df = analysed.iter().filter(|(_, t)| t.contains(qt)).count() as f64;
                let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
                let (k1, b) = (spec.k1 as f64, spec.b as f64);
                score += idf * tf / (tf + k1 * (1.0 - b + b * terms.len() as f64 / avgdl));
            }
            if any {
                out.push((id.clone(), score));
            }
        }
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        out
    }

    const DOCS: &[(&str, &str)] = &[
        ("a", "The quick brown fox jumps over the lazy dog"),
        ("b", "A quick brown dog outpaces a quick red fox"),
        ("c", "Error E1234: the connection was refused by the server"),
        ("d", "Servers refuse connections when the backlog is full; error E1234 again"),
        ("e", "Running runners run; the runner ran a running race"),
        ("f", "the the the"),
        ("g", "Ünïcödé wörds, naïve café: straße"),
    ];

    #[test]
    fn scores_equal_the_formula() {
        for spec in [
            TextIndexSpec::default(),
            TextIndexSpec {
                stemmer: Some("english".into()),
                stop_words_language: Some("english".into()),
                k1: 0.9,
                b: 0.4,
                ..Default::default()
            },
        ] {
            let idx = index(spec.clone(), DOCS);
            for query in ["quick fox", "error E1234 refused", "run running", "the", "café straße", "fox fox dog"] {
                let q = idx.analyzer().query(query);
                let got = idx.search(&q, None, 10, None, &|_| true);
                let want = naive(idx.analyzer(), &spec, DOCS, query);
                assert_eq!(got.len(), want.len(), "{query}: {got:?} vs {want:?}");
                for (g, w) in got.iter().zip(&want) {
                    assert_eq!(g.id, w.0, "{query}");
                    assert!((g.score as f64 - w.1).abs() < 1e-5 * w.1.max(1.0), "{query}: {} vs {}", g.score, w.1);
                }
            }
        }
    }

    #[test]
    fn analysis_segments_lowercases_stems_and_stops() {
        let plain = Analyzer::new(&TextIndexSpec::default());
        assert_eq!(plain.terms("Hello, World! can't 3.14 ÜBER"), ["hello", "world", "can't", "3.14", "über"]);
        let english = Analyzer::new(&TextIndexSpec {
            stemmer: Some("english".into()),
            stop_words_language: Some("english".into()),
            stop_words: vec!["Fox".into()],
            ..Default::default()
        });
        assert_eq!(english.terms("The runners were running with the fox"), ["runner", "were", "run"]);
        assert_eq!(english.query("run running ran"), [("run".to_string(), 2), ("ran".to_string(), 1)]);
    }

    #[test]
    fn deletes_and_updates_keep_it_exact() {
        let mut idx = index(TextIndexSpec::default(), DOCS);
        idx.set("c", Some("nothing about errors here"));
        idx.remove("d");
        idx.set("h", None);
        let reference: Vec<(&str, &str)> = DOCS
            .iter()
            .filter(|(id, _)| *id != "c" && *id != "d")
            .copied()
            .chain([("c", "nothing about errors here")])
            .collect();
        let fresh = index(TextIndexSpec::default(), &reference);
        for query in ["error E1234", "errors", "quick", "the"] {
            let q = idx.analyzer().query(query);
            assert_eq!(idx.search(&q, None, 10, None, &|_| true), fresh.search(&q, None, 10, None, &|_| true));
            assert_eq!(idx.stats(&q), fresh.stats(&q));
        }
        assert!(idx.search(&idx.analyzer().query("E1234"), None, 10, None, &|_| true).is_empty());
    }

    #[test]
    fn compaction_keeps_results() {
        let mut idx = TextIndex::new(TextIndexSpec::default());
        for i in 0..5000 {
            idx.set(&format!("p{i}"), Some(&format!("word{} common term{}", i % 7, i % 13)));
        }
        for i in 0..4000 {
            idx.remove(&format!("p{i}"));
        }
        assert!(idx.dead < 1024, "compacted");
        let mut fresh = TextIndex::new(TextIndexSpec::default());
        for i in 4000..5000 {
            fresh.set(&format!("p{i}"), Some(&format!("word{} common term{}", i % 7, i % 13)));
        }
        let q = idx.analyzer().query("word3 term5 common");
        assert_eq!(idx.search(&q, None, 50, None, &|_| true), fresh.search(&q, None, 50, None, &|_| true));
    }

    #[test]
    fn shards_with_collection_stats_score_as_one() {
        let docs: Vec<(String, String)> = (0..400)
            .map(|i| (format!("id{i:03}"), format!("alpha{} beta{} gamma {}", i % 5, i % 11, "delta ".repeat(i % 4))))
            .collect();
        let refs: Vec<(&str, &str)> = docs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let one = index(TextIndexSpec::default(), &refs);
        let shards: Vec<TextIndex> =
            (0..8).map(|s| index(TextIndexSpec::default(), &refs[s * 50..(s + 1) * 50])).collect();
        for query in ["alpha1 beta3", "gamma", "delta alpha4 delta", "beta10 nothing"] {
            let q = one.analyzer().query(query);
            let mut stats = CorpusStats::default();
            for s in &shards {
                stats.add(&s.stats(&q));
            }
            assert_eq!(stats, one.stats(&q));
            let mut merged: Vec<KeywordHit> =
                shards.iter().flat_map(|s| s.search(&q, Some(&stats), 20, None, &|_| true)).collect();
            merged.sort_by(|a, b| b.score.total_cmp(&a.score).then_with(|| a.id.cmp(&b.id)));
            merged.truncate(20);
            assert_eq!(merged, one.search(&q, None, 20, None, &|_| true), "{query}");
        }
    }

    #[test]
    fn filters_and_candidates_are_exact() {
        let docs: Vec<(String, String)> =
            (0..3000).map(|i| (format!("{i:04}"), format!("common w{} x{}", i % 10, i % 3))).collect();
        let refs: Vec<(&str, &str)> = docs.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        let idx = index(TextIndexSpec::default(), &refs);
        let q = idx.analyzer().query("common w3 x1");
        let accept = |id: &str| id.ends_with('7');
        let cands: Vec<&str> = refs.iter().map(|(id, _)| *id).filter(|id| accept(id)).collect();
        let walked = idx.search(&q, None, 15, None, &accept);
        let by_cands = idx.search(&q, None, 15, Some(&cands[..20]), &accept);
        assert!(walked.iter().all(|h| accept(&h.id)));
        assert_eq!(walked.len(), 15);
        // 20 candidates of 3000 documents: scored one by one, the same numbers as the walk.
        let all_cands = idx.search(&q, None, 15, Some(&cands), &accept);
        assert_eq!(walked, all_cands);
        let restricted: Vec<KeywordHit> = {
            let set: HashSet<&str> = cands[..20].iter().copied().collect();
            idx.search(&q, None, 15, None, &|id| set.contains(id))
        };
        assert_eq!(by_cands, restricted);
    }

    /// MaxScore with block-max skipping returns exactly what scoring every posting returns (ids, order and
    /// bit-equal scores), on Zipf-distributed words with repeats, long and short documents, many ties, deletes
    /// and updates, queries of one to six terms (some absent, some repeated) and k from 1 past the corpus.
    #[test]
    fn max_score_equals_the_exhaustive_walk() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let zipf = |rng: &mut rand::rngs::StdRng, n: usize| -> usize {
            // Inverse-CDF draw from 1/r over n ranks.
            let h: f64 = (1..=n).map(|r| 1.0 / r as f64).sum();
            let mut u = rng.random::<f64>() * h;
            for r in 1..=n {
                u -= 1.0 / r as f64;
                if u <= 0.0 {
                    return r - 1;
                }
            }
            n - 1
        };
        for (round, spec) in
            [TextIndexSpec::default(), TextIndexSpec { k1: 2.0, b: 0.0, ..Default::default() }].into_iter().enumerate()
        {
            let mut idx = TextIndex::new(spec);
            let text = |rng: &mut rand::rngs::StdRng| -> String {
                let len = if rng.random_bool(0.1) { rng.random_range(30..200) } else { rng.random_range(1..12) };
                (0..len).map(|_| format!("w{}", zipf(rng, 300))).collect::<Vec<_>>().join(" ")
            };
            for i in 0..6000 {
                // Every 7th document is the same short text: ties broken by id.
                let t = if i % 7 == 0 { "w0 w5 w9".to_string() } else { text(&mut rng) };
                idx.set(&format!("d{i:05}"), Some(&t));
            }
            // Enough deletes and updates that dead slots outnumber live ones: compaction rebuilds the block bounds.
            let mut sets = 0;
            for _ in 0..9000 {
                let i = rng.random_range(0..6000);
                if rng.random_bool(0.5) {
                    idx.remove(&format!("d{i:05}"));
                } else {
                    let t = text(&mut rng);
                    idx.set(&format!("d{i:05}"), Some(&t));
                    sets += 1;
                }
            }
            assert!(idx.docs.len() < 6000 + sets, "compacted at least once");
            for q in 0..400 {
                let terms = rng.random_range(1..=6);
                let query: String =
                    (0..terms)
                        .map(|_| {
                            if rng.random_bool(0.05) {
                                "absent".to_string()
                            } else {
                                format!("w{}", zipf(&mut rng, 320))
                            }
                        })
                        .collect::<Vec<_>>()
                        .join(" ");
                let q_terms = idx.analyzer().query(&query);
                // Another shard's statistics added in (so locally rare or absent terms still weigh), and a filter.
                let mut stats = idx.stats(&q_terms);
                stats.add(&CorpusStats {
                    documents: 9000,
                    total_length: 90_000,
                    document_frequency: (0..q_terms.len() as u64).map(|i| i * 40).collect(),
                });
                let odd = |id: &str| id.ends_with(['1', '3', '5', '7', '9']);
                for k in [0, 1, 3, 10, 50, 10_000] {
                    let got = idx.search(&q_terms, None, k, None, &|_| true);
                    let want = idx.search_exhaustive(&q_terms, None, k, &|_| true);
                    assert_eq!(got, want, "round {round} query {q} {query:?} k {k}");
                    let got = idx.search(&q_terms, Some(&stats), k, None, &odd);
                    let want = idx.search_exhaustive(&q_terms, Some(&stats), k, &odd);
                    assert_eq!(got, want, "round {round} query {q} {query:?} k {k}, collection statistics, filter");
                }
            }
        }
    }

    #[test]
    fn specs_are_checked() {
        assert!(TextIndexSpec::default().validate().is_ok());
        let bad = |s: TextIndexSpec| s.validate().unwrap_err().to_string();
        assert!(bad(TextIndexSpec { stemmer: Some("klingon".into()), ..Default::default() }).contains("stemmer"));
        assert!(bad(TextIndexSpec { b: 1.5, ..Default::default() }).contains("b is 1.5"));
        assert!(bad(TextIndexSpec { k1: f32::NAN, ..Default::default() }).contains("k1"));
        assert!(bad(TextIndexSpec { stop_words: vec![String::new()], ..Default::default() }).contains("stop_words[0]"));
        let parsed: TextIndexSpec = serde_json::from_str(r#"{"stemmer": "english"}"#).unwrap();
        assert_eq!((parsed.k1, parsed.b), (1.2, 0.75));
        assert!(serde_json::from_str::<TextIndexSpec>(r#"{"stemer": "english"}"#).is_err());
    }
}
