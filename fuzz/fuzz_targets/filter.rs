//! Metadata filter JSON (as agents write it by hand) → `Filter::parse`, then evaluation on fixed documents.
//!
//! Properties: parsing never panics and its errors stay short (they quote the input through `excerpt`); a parsed
//! filter evaluates on every document without panicking; the payload index's candidates for it are a superset of
//! the documents it matches (the planner's exact "candidates" plan relies on that); `must_not: [f]` matches
//! exactly the documents `f` does not.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use rvdb_core::filter::Filter;
use rvdb_core::payload::PayloadIndex;
use serde_json::{Value, json};

struct Fixture {
    docs: Vec<(&'static str, Value)>,
    index: PayloadIndex,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let docs = rvdb_fuzz::filter_documents();
        let mut index = PayloadIndex::new();
        for (id, doc) in &docs {
            index.set(id, doc.clone());
        }
        Fixture { docs, index }
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(value) = serde_json::from_str::<Value>(text) else { return };
    let filter = match Filter::parse(&value, "filter") {
        Ok(f) => f,
        Err(e) => {
            let message = e.to_string();
            assert!(message.len() <= 4096, "an error message of {} bytes: {message:.200}", message.len());
            return;
        }
    };
    let fx = fixture();
    let matching: Vec<&str> = fx.docs.iter().filter(|(_, doc)| filter.matches(doc)).map(|(id, _)| *id).collect();
    for (id, doc) in &fx.docs {
        assert_eq!(fx.index.matches(id, &filter), filter.matches(doc), "{id}: the index sees another document");
    }
    if let Some(candidates) = fx.index.candidates(&filter) {
        for id in &matching {
            assert!(candidates.contains(id), "candidates {candidates:?} miss {id}, which matches");
        }
    }
    // A non-empty filter (every key a clause, or it would not have parsed) nests as a condition; `{}` does not.
    if value.as_object().is_none_or(|o| o.is_empty()) {
        return;
    }
    let negated = Filter::parse(&json!({"must_not": [value]}), "filter").expect("a valid filter nests");
    for (id, doc) in &fx.docs {
        assert_eq!(negated.matches(doc), !matching.contains(id), "{id}: must_not [f] is not the negation of f");
    }
});
