//! Metadata filters for search: `must` (all), `should` (at least one, when given), `must_not` (none), nestable,
//! over conditions on dotted key paths into the point's JSON metadata:
//!
//! ```json
//! {"must": [{"key": "lang", "match": {"value": "en"}},
//!           {"key": "year", "range": {"gte": 2020, "lt": 2025}}],
//!  "should": [{"key": "tags", "match": {"any": ["rust", "db"]}}],
//!  "must_not": [{"key": "draft", "match": {"value": true}}, {"key": "deleted_at", "exists": true}]}
//! ```
//!
//! A key whose value is an array matches when any element matches (as in Qdrant). Parsing is strict and every
//! error names the offending path (`filter.must[1].range`), because agents write these by hand.

use serde_json::Value;

use crate::CoreError;
use crate::error::excerpt;

#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// Equal to one value (string, number or bool).
    Match {
        key: String,
        value: Value,
    },
    /// Equal to any of the values.
    MatchAny {
        key: String,
        values: Vec<Value>,
    },
    /// A number within bounds (each optional).
    Range {
        key: String,
        gt: Option<f64>,
        gte: Option<f64>,
        lt: Option<f64>,
        lte: Option<f64>,
    },
    /// The key is present (and not null) when `true`, absent or null when `false`.
    Exists {
        key: String,
        present: bool,
    },
    Nested(Box<Filter>),
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Filter {
    pub must: Vec<Condition>,
    pub should: Vec<Condition>,
    pub must_not: Vec<Condition>,
    /// Only the points this shard owns under a layout (see [`crate::sharding`]): set by the storage node for
    /// reads of a store being resharded, never parsed from a user's filter. Checked on the point's id, before
    /// its metadata.
    pub owner: Option<crate::sharding::Owner>,
}

fn err(path: &str, msg: impl std::fmt::Display) -> CoreError {
    CoreError::InvalidFilter(format!("{path}: {msg}"))
}

impl Filter {
    /// Parses a filter object; `path` prefixes error messages (e.g. "filter").
    pub fn parse(v: &Value, path: &str) -> Result<Filter, CoreError> {
        let obj = v.as_object().ok_or_else(|| err(path, "must be an object with must / should / must_not"))?;
        let mut f = Filter::default();
        for (k, list) in obj {
            let target = match k.as_str() {
                "must" => &mut f.must,
                "should" => &mut f.should,
                "must_not" => &mut f.must_not,
                other => {
                    return Err(err(
                        path,
                        format!("unknown clause {:?}: use must, should or must_not", excerpt(other)),
                    ));
                }
            };
            let items = list.as_array().ok_or_else(|| err(&format!("{path}.{k}"), "must be an array of conditions"))?;
            for (i, c) in items.iter().enumerate() {
                target.push(Condition::parse(c, &format!("{path}.{k}[{i}]"))?);
            }
        }
        Ok(f)
    }

    /// This filter, restricted to the points `owner` owns (`None`: unchanged).
    pub fn owned_by(mut self, owner: Option<crate::sharding::Owner>) -> Filter {
        if owner.is_some() {
            self.owner = owner;
        }
        self
    }

    /// Whether the point `id` with `metadata` passes: its owner first (cheap), then its metadata.
    pub fn matches_point(&self, id: &str, metadata: &Value) -> bool {
        self.owner.is_none_or(|o| o.owns(id)) && self.matches(metadata)
    }

    /// Whether `metadata` passes the metadata conditions (the owner, an id check, is [`Filter::matches_point`]'s).
    pub fn matches(&self, metadata: &Value) -> bool {
        self.must.iter().all(|c| c.matches(metadata))
            && (self.should.is_empty() || self.should.iter().any(|c| c.matches(metadata)))
            && !self.must_not.iter().any(|c| c.matches(metadata))
    }
}

fn scalar(v: &Value, path: &str) -> Result<Value, CoreError> {
    match v {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(v.clone()),
        _ => Err(err(path, "must be a string, number or boolean")),
    }
}

fn bound(obj: &serde_json::Map<String, Value>, name: &str, path: &str) -> Result<Option<f64>, CoreError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| err(&format!("{path}.{name}"), "must be a number")),
    }
}

impl Condition {
    fn parse(v: &Value, path: &str) -> Result<Condition, CoreError> {
        let obj = v.as_object().ok_or_else(|| err(path, "a condition must be an object"))?;
        if ["must", "should", "must_not"].iter().any(|k| obj.contains_key(*k)) {
            return Ok(Condition::Nested(Box::new(Filter::parse(v, path)?)));
        }
        let key = obj
            .get("key")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| err(path, "needs \"key\": the metadata field, e.g. \"lang\" or \"author.name\""))?
            .to_string();
        let kinds = ["match", "range", "exists"].iter().filter(|k| obj.contains_key(**k)).count();
        if kinds != 1 {
            return Err(err(path, "needs exactly one of \"match\", \"range\", \"exists\""));
        }
        if let Some(unknown) = obj.keys().find(|k| !["key", "match", "range", "exists"].contains(&k.as_str())) {
            return Err(err(path, format!("unknown field {:?}", excerpt(unknown))));
        }
        if let Some(m) = obj.get("match") {
            let m = m
                .as_object()
                .ok_or_else(|| err(&format!("{path}.match"), "must be {\"value\": …} or {\"any\": […]}"))?;
            return match (m.get("value"), m.get("any")) {
                (Some(v), None) => Ok(Condition::Match { key, value: scalar(v, &format!("{path}.match.value"))? }),
                (None, Some(Value::Array(vs))) => Ok(Condition::MatchAny {
                    key,
                    values: vs
                        .iter()
                        .enumerate()
                        .map(|(i, v)| scalar(v, &format!("{path}.match.any[{i}]")))
                        .collect::<Result<_, _>>()?,
                }),
                _ => Err(err(&format!("{path}.match"), "must be {\"value\": …} or {\"any\": […]}")),
            };
        }
        if let Some(r) = obj.get("range") {
            let p = format!("{path}.range");
            let r = r.as_object().ok_or_else(|| err(&p, "must be an object with gt / gte / lt / lte"))?;
            if let Some(unknown) = r.keys().find(|k| !["gt", "gte", "lt", "lte"].contains(&k.as_str())) {
                return Err(err(&p, format!("unknown bound {:?}: use gt, gte, lt, lte", excerpt(unknown))));
            }
            let (gt, gte, lt, lte) =
                (bound(r, "gt", &p)?, bound(r, "gte", &p)?, bound(r, "lt", &p)?, bound(r, "lte", &p)?);
            if [gt, gte, lt, lte].iter().all(Option::is_none) {
                return Err(err(&p, "needs at least one of gt, gte, lt, lte"));
            }
            return Ok(Condition::Range { key, gt, gte, lt, lte });
        }
        match obj.get("exists") {
            Some(Value::Bool(present)) => Ok(Condition::Exists { key, present: *present }),
            _ => Err(err(&format!("{path}.exists"), "must be true or false")),
        }
    }

    fn matches(&self, metadata: &Value) -> bool {
        match self {
            Condition::Nested(f) => f.matches(metadata),
            Condition::Exists { key, present } => lookup(metadata, key).is_some_and(|v| !v.is_null()) == *present,
            Condition::Match { key, value } => any_element(metadata, key, |v| same(v, value)),
            Condition::MatchAny { key, values } => any_element(metadata, key, |v| values.iter().any(|w| same(v, w))),
            Condition::Range { key, gt, gte, lt, lte } => any_element(metadata, key, |v| {
                v.as_f64().is_some_and(|x| {
                    gt.is_none_or(|b| x > b)
                        && gte.is_none_or(|b| x >= b)
                        && lt.is_none_or(|b| x < b)
                        && lte.is_none_or(|b| x <= b)
                })
            }),
        }
    }
}

/// Numbers compare by value (1 == 1.0); everything else by JSON equality.
fn same(a: &Value, b: &Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

fn lookup<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(v, |cur, part| cur.get(part))
}

fn any_element(metadata: &Value, key: &str, pred: impl Fn(&Value) -> bool) -> bool {
    match lookup(metadata, key) {
        Some(Value::Array(items)) => items.iter().any(&pred),
        Some(v) => pred(v),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(v: Value) -> Filter {
        Filter::parse(&v, "filter").unwrap()
    }

    #[test]
    fn clauses_and_conditions() {
        let doc =
            json!({"lang": "en", "year": 2021, "tags": ["rust", "db"], "author": {"name": "ada"}, "draft": false});
        assert!(f(json!({"must": [{"key": "lang", "match": {"value": "en"}}]})).matches(&doc));
        assert!(!f(json!({"must": [{"key": "lang", "match": {"value": "de"}}]})).matches(&doc));
        assert!(f(json!({"must": [{"key": "year", "range": {"gte": 2020, "lt": 2022}}]})).matches(&doc));
        assert!(!f(json!({"must": [{"key": "year", "range": {"gt": 2021}}]})).matches(&doc));
        assert!(f(json!({"must": [{"key": "year", "match": {"value": 2021.0}}]})).matches(&doc));
        assert!(f(json!({"must": [{"key": "tags", "match": {"value": "db"}}]})).matches(&doc), "arrays: any element");
        assert!(f(json!({"must": [{"key": "author.name", "match": {"any": ["bob", "ada"]}}]})).matches(&doc));
        assert!(f(json!({"should": [{"key": "lang", "match": {"value": "x"}}, {"key": "draft", "match": {"value": false}}]})).matches(&doc));
        assert!(!f(json!({"should": [{"key": "lang", "match": {"value": "x"}}]})).matches(&doc));
        assert!(!f(json!({"must_not": [{"key": "draft", "exists": true}]})).matches(&doc));
        assert!(f(json!({"must": [{"key": "missing", "exists": false}]})).matches(&doc));
        assert!(f(json!({"must": [{"should": [{"key": "year", "range": {"lt": 2000}}, {"key": "lang", "match": {"value": "en"}}]}]})).matches(&doc));
        assert!(f(json!({})).matches(&doc), "an empty filter matches everything");
    }

    #[test]
    fn errors_name_the_path() {
        let e = |v: Value| Filter::parse(&v, "filter").unwrap_err().to_string();
        assert!(e(json!([])).contains("filter: must be an object"));
        assert!(e(json!({"may": []})).contains("unknown clause \"may\""));
        assert!(e(json!({"must": [{"match": {"value": 1}}]})).contains("filter.must[0]: needs \"key\""));
        assert!(
            e(json!({"must": [{"key": "a", "range": {"gte": "x"}}]}))
                .contains("filter.must[0].range.gte: must be a number")
        );
        assert!(e(json!({"must": [{"key": "a", "range": {"from": 1}}]})).contains("unknown bound \"from\""));
        assert!(e(json!({"must": [{"key": "a", "match": {"value": [1]}}]})).contains("filter.must[0].match.value"));
        assert!(e(json!({"must": [{"key": "a", "match": {"value": 1}, "range": {"lt": 1}}]})).contains("exactly one"));
        assert!(e(json!({"should": [{"key": "a", "exists": "yes"}]})).contains("filter.should[0].exists"));
    }
}
