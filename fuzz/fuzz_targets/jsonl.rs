//! The lines of a JSON Lines export as `import` reads them: the first line is the header, every other line a
//! point (lines split at `\n`, as `BufRead::lines` does, which also drops a trailing `\r`).
//!
//! Properties: no line makes a parser panic; a header that parses round-trips through its own JSON (store
//! config included); a point that parses round-trips through the JSON `export` writes for it, vector bit for bit
//! and metadata equal, unless a component is beyond the f32 range (read as infinity), which the write's
//! validation refuses; and any finite `f32` components (taken from the input's bytes) survive export → import
//! bit for bit, as the README promises.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvdb_core::jsonl::{ExportPoint, parse_header, parse_point};
use rvdb_core::types::validate_vector;
use rvdb_core::{CoreError, Metric};

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fuzz_target!(|data: &[u8]| {
    for (i, line) in data.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Ok(line) = std::str::from_utf8(line) else { continue };
        if i == 0 {
            if let Ok(header) = parse_header(line) {
                let json = serde_json::to_string(&header).expect("a header encodes");
                assert_eq!(parse_header(&json).as_ref(), Ok(&header), "the header does not round-trip: {json}");
            }
            continue;
        }
        if let Ok(point) = parse_point(line) {
            // A number beyond the f32 range reads as infinity; the import's write refuses it (and JSON has no
            // infinity to write it back as).
            if point.vector.iter().any(|x| !x.is_finite()) {
                let refused = validate_vector(&point.vector, point.vector.len() as u32, Metric::Euclidean);
                assert!(matches!(refused, Err(CoreError::NonFinite { .. })), "{refused:?}");
                continue;
            }
            let json = serde_json::to_string(&point).expect("a point encodes");
            let again = parse_point(&json).expect("an exported point imports");
            assert_eq!(again.id, point.id);
            assert_eq!(bits(&again.vector), bits(&point.vector), "vector changed through {json}");
            assert_eq!(again.metadata, point.metadata, "metadata changed through {json}");
        }
    }
    let vector: Vec<f32> =
        data.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).filter(|x| x.is_finite()).collect();
    let expected = bits(&vector);
    let json = serde_json::to_string(&ExportPoint { id: "p".into(), vector, metadata: serde_json::Value::Null })
        .expect("a point encodes");
    let imported = parse_point(&json).expect("an exported point imports");
    assert_eq!(bits(&imported.vector), expected, "f32 components changed through {json}");
});
