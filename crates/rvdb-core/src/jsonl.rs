//! The lines of a JSON Lines export: a header object (format version, the store's config, the time of export),
//! then one point per line. Parsed here, without I/O, so that the fuzzer (`fuzz/`, target `jsonl`) drives exactly
//! what an import reads; the gateway (`rvdb-gateway/src/backup/export.rs`) streams the file and writes the points.
//!
//! `f32` components are written in their shortest form and read back bit for bit, so an export and an import
//! move vectors exactly.

use serde::{Deserialize, Serialize};

use crate::StoreConfig;

/// The version of the export format this rvdb writes and reads.
pub const EXPORT_VERSION: u32 = 1;

/// The header line of a JSON Lines export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExportHeader {
    pub rvdb_export: u32,
    pub store: StoreConfig,
    pub exported_at: String,
}

/// One point line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportPoint {
    pub id: String,
    pub vector: Vec<f32>,
    #[serde(default)]
    pub metadata: serde_json::Value,
}

/// Why a header line is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum HeaderError {
    /// Not an export header (serde's words).
    Invalid(String),
    /// A header of an export version this rvdb does not read.
    Unsupported(u32),
}

/// Parses the header (first) line and checks its version.
pub fn parse_header(line: &str) -> Result<ExportHeader, HeaderError> {
    let header: ExportHeader = serde_json::from_str(line).map_err(|e| HeaderError::Invalid(e.to_string()))?;
    if header.rvdb_export != EXPORT_VERSION {
        return Err(HeaderError::Unsupported(header.rvdb_export));
    }
    Ok(header)
}

/// Parses one point line (serde's words on error).
pub fn parse_point(line: &str) -> Result<ExportPoint, String> {
    serde_json::from_str(line).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_and_points_round_trip() {
        let header = ExportHeader {
            rvdb_export: EXPORT_VERSION,
            store: StoreConfig::new("s", 2, crate::Metric::Dot),
            exported_at: "2026-01-01T00:00:00.000Z".into(),
        };
        assert_eq!(parse_header(&serde_json::to_string(&header).unwrap()), Ok(header.clone()));
        let newer = serde_json::to_string(&ExportHeader { rvdb_export: 2, ..header }).unwrap();
        assert_eq!(parse_header(&newer), Err(HeaderError::Unsupported(2)));
        assert!(matches!(parse_header("{}"), Err(HeaderError::Invalid(_))));

        let p = parse_point(r#"{"id":"a","vector":[0.1,-3e-45]}"#).unwrap();
        assert_eq!(
            (p.id.as_str(), p.vector.as_slice(), &p.metadata),
            ("a", &[0.1f32, -3e-45][..], &serde_json::Value::Null)
        );
        let line = serde_json::to_string(&p).unwrap();
        assert_eq!(parse_point(&line).unwrap().vector, p.vector);
        assert!(parse_point(r#"{"id":"a"}"#).unwrap_err().contains("vector"));
    }

    /// Found by the `jsonl` fuzz target (fuzz/corpus/jsonl/regression-metadata-float-roundtrip): serde_json's
    /// default number parser is not correctly rounded, and read its own output `7.777777777777778e+121` back as
    /// `7.777777777777779e+121`, so a metadata number changed through an export and an import (and through every
    /// store-and-read). The workspace enables its `float_roundtrip` feature.
    #[test]
    fn metadata_numbers_survive_export_and_import_exactly() {
        let line = format!(r#"{{"id":"a","vector":[1.0],"metadata":{{"":{}0.1,"k":1}}}}"#, "7".repeat(121));
        let point = parse_point(&line).unwrap();
        let exported = serde_json::to_string(&point).unwrap();
        assert!(exported.contains("7.777777777777778e+121"), "{exported}");
        assert_eq!(parse_point(&exported).unwrap().metadata, point.metadata, "through {exported}");
        for text in
            ["7.777777777777778e+121", "0.30000000000000004", "2.2250738585072014e-308", "1.7976931348623157e308"]
        {
            let x: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(x.as_f64(), text.parse::<f64>().ok(), "{text} is not read correctly rounded");
        }
    }
}
