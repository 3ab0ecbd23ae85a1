//! Point metadata held in memory for filtered search, with an inverted index over its scalar values.
//!
//! Every string, integer-valued number and boolean in a point's metadata (at any depth of objects, and inside
//! arrays) is indexed under its dotted key path, so `{"key": "lang", "match": {"value": "en"}}` finds its points
//! without looking at the others. The search planner uses [`PayloadIndex::candidates`] to learn how selective a
//! filter is before it chooses between an exact scan of the candidates and a filtered graph traversal; the
//! candidates are always re-checked with the full filter, so the index only has to be a superset.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::filter::{Condition, Filter};

/// An indexed scalar. Numbers are keyed by their f64 bits (1 and 1.0 are the same key, as in filter matching).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Scalar {
    Str(Box<str>),
    Num(u64),
    Bool(bool),
}

fn scalar_key(v: &Value) -> Option<Scalar> {
    match v {
        Value::String(s) => Some(Scalar::Str(s.as_str().into())),
        Value::Bool(b) => Some(Scalar::Bool(*b)),
        Value::Number(n) => n.as_f64().map(|x| Scalar::Num(if x == 0.0 { 0 } else { x.to_bits() })),
        _ => None,
    }
}

/// Deepest key path that is indexed: every path metadata can hold, since metadata nests at most this deep
/// ([`crate::types::MAX_METADATA_DEPTH`]). A deeper filter key cannot match anything stored.
const MAX_DEPTH: usize = crate::types::MAX_METADATA_DEPTH;

/// Collects `(path, scalar)` for every scalar that [`crate::filter`]'s key lookup can reach: the path is the
/// object keys from the root joined by `.` (`parts` of them so far: an empty key is a part too, so
/// `{"": {"b": 1}}` is filed under `.b`, as the filter key `.b` looks it up), and an array's scalar items are
/// filed under the array's own path.
fn walk(prefix: &mut String, parts: usize, v: &Value, out: &mut Vec<(String, Scalar)>) {
    match v {
        Value::Object(m) if parts < MAX_DEPTH => {
            for (k, child) in m {
                let len = prefix.len();
                if parts > 0 {
                    prefix.push('.');
                }
                prefix.push_str(k);
                walk(prefix, parts + 1, child, out);
                prefix.truncate(len);
            }
        }
        Value::Array(items) if parts > 0 => {
            for item in items {
                if let Some(s) = scalar_key(item) {
                    out.push((prefix.clone(), s));
                }
            }
        }
        _ => {
            if parts > 0
                && let Some(s) = scalar_key(v)
            {
                out.push((prefix.clone(), s));
            }
        }
    }
}

fn entries(doc: &Value) -> Vec<(String, Scalar)> {
    let mut out = Vec::new();
    walk(&mut String::new(), 0, doc, &mut out);
    out.sort_unstable();
    out.dedup();
    out
}

#[derive(Debug, Default)]
pub struct PayloadIndex {
    /// Non-empty metadata only: a point without metadata filters as `{}`.
    docs: HashMap<Box<str>, Value>,
    postings: HashMap<String, HashMap<Scalar, HashSet<Box<str>>>>,
    /// Approximate bytes held, kept current by `set` / `remove` so that stats never walk the documents.
    bytes: usize,
}

/// Approximate heap bytes of a JSON value (serde_json's `Value` nodes, strings, maps).
fn value_bytes(v: &Value) -> usize {
    match v {
        Value::String(s) => 32 + s.len(),
        Value::Array(items) => 32 + items.iter().map(value_bytes).sum::<usize>(),
        Value::Object(m) => 48 + m.iter().map(|(k, v)| 24 + k.len() + value_bytes(v)).sum::<usize>(),
        _ => 32,
    }
}

/// Approximate bytes one point's metadata costs: its document, its map entry, and one posting per indexed value.
fn footprint(id: &str, doc: &Value, postings: usize) -> usize {
    48 + id.len() + value_bytes(doc) + postings * (24 + id.len())
}

static EMPTY: Value = Value::Null;

impl PayloadIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `id`'s metadata (`Null` or `{}` = none).
    pub fn set(&mut self, id: &str, doc: Value) {
        self.remove(id);
        let empty = match &doc {
            Value::Null => true,
            Value::Object(m) => m.is_empty(),
            _ => false,
        };
        if empty {
            return;
        }
        let entries = entries(&doc);
        self.bytes += footprint(id, &doc, entries.len());
        for (key, s) in entries {
            self.postings.entry(key).or_default().entry(s).or_default().insert(id.into());
        }
        self.docs.insert(id.into(), doc);
    }

    pub fn remove(&mut self, id: &str) {
        let Some(old) = self.docs.remove(id) else { return };
        let entries = entries(&old);
        self.bytes -= footprint(id, &old, entries.len());
        for (key, s) in entries {
            if let Some(values) = self.postings.get_mut(&key) {
                if let Some(ids) = values.get_mut(&s) {
                    ids.remove(id);
                    if ids.is_empty() {
                        values.remove(&s);
                    }
                }
                if values.is_empty() {
                    self.postings.remove(&key);
                }
            }
        }
    }

    pub fn get(&self, id: &str) -> &Value {
        self.docs.get(id).unwrap_or(&EMPTY)
    }

    /// Whether `id`'s metadata satisfies `filter`.
    pub fn matches(&self, id: &str, filter: &Filter) -> bool {
        filter.matches_point(id, self.get(id))
    }

    /// A superset of the points that can match `filter`, when a `must` condition is an indexed match: the
    /// smallest such posting list (or union, for `match.any`). `None` when no condition narrows the search.
    pub fn candidates(&self, filter: &Filter) -> Option<Vec<&str>> {
        let mut best: Option<Vec<&str>> = None;
        for c in &filter.must {
            let key = match c {
                Condition::Match { key, .. } | Condition::MatchAny { key, .. } => key,
                _ => continue,
            };
            // Every path up to MAX_DEPTH is indexed, so an empty posting list there means "no point matches";
            // a deeper key is not indexed, and must not be read as "none".
            if key.split('.').count() > MAX_DEPTH {
                continue;
            }
            let set: Vec<&str> = match c {
                Condition::Match { key, value } => self.posting(key, value).map(|s| s.collect()).unwrap_or_default(),
                Condition::MatchAny { key, values } => {
                    let mut all: Vec<&str> = values.iter().filter_map(|v| self.posting(key, v)).flatten().collect();
                    all.sort_unstable();
                    all.dedup();
                    all
                }
                _ => continue,
            };
            if best.as_ref().is_none_or(|b| set.len() < b.len()) {
                best = Some(set);
            }
        }
        best
    }

    fn posting(&self, key: &str, value: &Value) -> Option<impl Iterator<Item = &str>> {
        let s = scalar_key(value)?;
        Some(self.postings.get(key)?.get(&s)?.iter().map(|id| &**id))
    }

    /// Approximate bytes held: documents, map entries, postings (kept as a running total).
    pub fn memory_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn filter(v: Value) -> Filter {
        Filter::parse(&v, "filter").unwrap()
    }

    /// Issue #15 (4): the candidates of a `must` match are exactly the points the filter matches, for deep
    /// paths and empty keys; so the planner never runs a candidates plan over a list that misses points.
    #[test]
    fn candidates_reach_every_path_a_filter_can_name() {
        let mut p = PayloadIndex::new();
        let docs = [
            ("deep5", json!({"a": {"b": {"c": {"d": {"e": "x"}}}}})),
            ("deep6", json!({"a": {"b": {"c": {"d": {"e": {"f": ["x", "y"]}}}}}})),
            ("empty", json!({"": {"b": "y"}, "k": {"": 3}})),
            ("dots", json!({"a.b": "z", "n": [1, 2.5, true]})),
            ("plain", json!({"lang": "en"})),
        ];
        for (id, d) in &docs {
            p.set(id, d.clone());
        }
        let deep: Value = (0..MAX_DEPTH - 1).fold(json!("leaf"), |v, i| json!({format!("k{i}"): v}));
        p.set("deepest", deep);
        let deepest_key = (0..MAX_DEPTH - 1).rev().map(|i| format!("k{i}")).collect::<Vec<_>>().join(".");
        let conditions = [
            json!({"key": "a.b.c.d.e", "match": {"value": "x"}}),
            json!({"key": "a.b.c.d.e", "match": {"any": ["x", "q"]}}),
            json!({"key": "a.b.c.d.e.f", "match": {"value": "y"}}),
            json!({"key": ".b", "match": {"value": "y"}}),
            json!({"key": "k.", "match": {"value": 3}}),
            json!({"key": "n", "match": {"value": true}}),
            json!({"key": "n", "match": {"value": 2.5}}),
            json!({"key": "lang", "match": {"any": ["en"]}}),
            json!({"key": deepest_key, "match": {"value": "leaf"}}),
            json!({"key": "a.b", "match": {"value": "z"}}),
        ];
        for c in conditions {
            let f = filter(json!({"must": [c]}));
            let mut matching: Vec<&str> =
                docs.iter().map(|d| d.0).chain(["deepest"]).filter(|id| p.matches(id, &f)).collect();
            matching.sort();
            let cands = p.candidates(&f).expect("a match condition is indexed");
            assert!(matching.iter().all(|id| cands.contains(id)), "{c}: candidates {cands:?} miss {matching:?}");
            if c["key"] != "a.b" {
                assert!(!matching.is_empty(), "{c} matches a point");
            }
        }
        let too_deep = (0..=MAX_DEPTH).map(|i| format!("k{i}")).collect::<Vec<_>>().join(".");
        assert!(p.candidates(&filter(json!({"must": [{"key": too_deep, "match": {"value": 1}}]}))).is_none());
    }

    #[test]
    fn candidates_are_a_superset_and_track_updates() {
        let mut p = PayloadIndex::new();
        p.set("a", json!({"lang": "en", "n": 1, "tags": ["x", "y"], "author": {"name": "ada"}}));
        p.set("b", json!({"lang": "de", "n": 1.0}));
        p.set("c", json!({}));
        fn ids_of(p: &PayloadIndex, f: Value) -> Vec<String> {
            let mut v: Vec<String> = p.candidates(&filter(f)).unwrap().into_iter().map(String::from).collect();
            v.sort();
            v
        }
        assert_eq!(ids_of(&p, json!({"must": [{"key": "lang", "match": {"value": "en"}}]})), ["a"]);
        assert_eq!(ids_of(&p, json!({"must": [{"key": "n", "match": {"value": 1}}]})), ["a", "b"]);
        assert_eq!(ids_of(&p, json!({"must": [{"key": "tags", "match": {"any": ["y", "z"]}}]})), ["a"]);
        assert_eq!(ids_of(&p, json!({"must": [{"key": "author.name", "match": {"value": "ada"}}]})), ["a"]);
        assert!(ids_of(&p, json!({"must": [{"key": "lang", "match": {"value": "fr"}}]})).is_empty());
        assert!(p.candidates(&filter(json!({"must": [{"key": "n", "range": {"gt": 0}}]}))).is_none());
        p.set("a", json!({"lang": "fr"}));
        assert!(ids_of(&p, json!({"must": [{"key": "lang", "match": {"value": "en"}}]})).is_empty());
        assert_eq!(ids_of(&p, json!({"must": [{"key": "lang", "match": {"value": "fr"}}]})), ["a"]);
        p.remove("a");
        p.remove("b");
        assert!(p.postings.is_empty() && p.docs.is_empty(), "removing every point leaves nothing behind");
        assert_eq!(p.memory_bytes(), 0, "the running byte count returns to zero");
        assert!(p.matches("c", &filter(json!({"must": [{"key": "lang", "exists": false}]}))));
    }
}
