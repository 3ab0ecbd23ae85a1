//! The pure part of the backup format: `manifest.json` and the binary point records of `points-<shard>.bin.zst`
//! (after decompression), parsed and written without touching a file system, so that the fuzzer (`fuzz/`, target
//! `backup`) can drive exactly what a restore reads. The gateway (`rvdb-gateway/src/backup`) adds the files, the
//! zstd streams, the SHA-256 checksums and the staging of restores around it.
//!
//! ```text
//! record: [u32 id_len][id UTF-8][u64 version][u32 dim][f32 × dim][u32 metadata_len][metadata JSON UTF-8]
//! ```
//! little-endian. Every length is checked against its limit before anything is allocated for it, so a damaged or
//! hostile file costs at most one record's worth of memory (about 0.8 MB) however large the lengths it claims.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::StoreConfig;
use crate::types::{MAX_DIMENSION, MAX_METADATA_BYTES, MAX_POINT_ID_BYTES};

pub const FORMAT: &str = "rvdb-backup";
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BackupFile {
    pub name: String,
    pub points: u64,
    pub bytes: u64,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: String,
    pub format_version: u32,
    pub rvdb_version: String,
    pub name: String,
    pub store: StoreConfig,
    pub point_count: u64,
    pub created_at: String,
    pub created_unix_ms: u64,
    pub compression: String,
    pub files: Vec<BackupFile>,
}

/// Why a manifest is refused.
#[derive(Debug, Clone, PartialEq)]
pub enum ManifestError {
    /// Not a manifest: not JSON, or a field missing or of the wrong type (serde's words).
    Invalid(String),
    /// A manifest of another format, or of a version this rvdb does not read.
    Unsupported { format: String, version: u32 },
}

/// Parses `manifest.json` and checks that this rvdb reads its format and version.
pub fn parse_manifest(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let m: Manifest = serde_json::from_slice(bytes).map_err(|e| ManifestError::Invalid(e.to_string()))?;
    if m.format != FORMAT || m.format_version != FORMAT_VERSION {
        return Err(ManifestError::Unsupported { format: m.format, version: m.format_version });
    }
    Ok(m)
}

/// Writes one record.
pub fn write_record(w: &mut impl Write, id: &str, version: u64, vector: &[f32], metadata: &str) -> std::io::Result<()> {
    w.write_all(&(id.len() as u32).to_le_bytes())?;
    w.write_all(id.as_bytes())?;
    w.write_all(&version.to_le_bytes())?;
    w.write_all(&(vector.len() as u32).to_le_bytes())?;
    for x in vector {
        w.write_all(&x.to_le_bytes())?;
    }
    w.write_all(&(metadata.len() as u32).to_le_bytes())?;
    w.write_all(metadata.as_bytes())
}

/// One decoded backup record.
#[derive(Debug, Clone)]
pub struct BackupRecord {
    pub id: String,
    pub version: u64,
    pub vector: Vec<f32>,
    pub metadata: String,
}

/// Reads the next record; `Ok(None)` at a clean end of stream, an error on a truncated or malformed one (an id
/// of 0 or more than 512 bytes, a dimension of 0 or above `max_dim` or [`MAX_DIMENSION`], metadata above
/// [`MAX_METADATA_BYTES`], text that is not UTF-8).
pub fn read_record(r: &mut impl Read, max_dim: u32) -> Result<Option<BackupRecord>, String> {
    let mut len = [0u8; 4];
    match r.read(&mut len[..1]) {
        Ok(0) => return Ok(None),
        Ok(_) => {}
        Err(e) => return Err(e.to_string()),
    }
    let mut exact = |buf: &mut [u8]| r.read_exact(buf).map_err(|e| format!("truncated record: {e}"));
    exact(&mut len[1..])?;
    let id_len = u32::from_le_bytes(len) as usize;
    if id_len == 0 || id_len > MAX_POINT_ID_BYTES {
        return Err(format!("bad id length {id_len}"));
    }
    let mut id = vec![0u8; id_len];
    exact(&mut id)?;
    let mut v8 = [0u8; 8];
    exact(&mut v8)?;
    let mut d4 = [0u8; 4];
    exact(&mut d4)?;
    let dim = u32::from_le_bytes(d4);
    // `max_dim` is the manifest's, which is input too: a store never has more than MAX_DIMENSION.
    if dim == 0 || dim > max_dim.min(MAX_DIMENSION) {
        return Err(format!("bad dimension {dim}"));
    }
    let mut raw = vec![0u8; dim as usize * 4];
    exact(&mut raw)?;
    exact(&mut d4)?;
    let meta_len = u32::from_le_bytes(d4) as usize;
    if meta_len > MAX_METADATA_BYTES {
        return Err(format!("bad metadata length {meta_len}"));
    }
    let mut meta = vec![0u8; meta_len];
    exact(&mut meta)?;
    Ok(Some(BackupRecord {
        id: String::from_utf8(id).map_err(|_| "id is not UTF-8".to_string())?,
        version: u64::from_le_bytes(v8),
        vector: raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        metadata: String::from_utf8(meta).map_err(|_| "metadata is not UTF-8".to_string())?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncation_is_detected() {
        let mut buf = Vec::new();
        write_record(&mut buf, "a", 7, &[1.5, -2.25, f32::MIN_POSITIVE], r#"{"k":1}"#).unwrap();
        write_record(&mut buf, "b", 8, &[0.0, 1.0, 2.0], "").unwrap();
        let mut r = &buf[..];
        let a = read_record(&mut r, 3).unwrap().unwrap();
        assert_eq!(
            (a.id.as_str(), a.version, a.vector.as_slice(), a.metadata.as_str()),
            ("a", 7, &[1.5, -2.25, f32::MIN_POSITIVE][..], r#"{"k":1}"#)
        );
        assert_eq!(read_record(&mut r, 3).unwrap().unwrap().id, "b");
        assert!(read_record(&mut r, 3).unwrap().is_none());
        for cut in 1..buf.len() / 2 {
            let mut r = &buf[..cut];
            assert!(read_record(&mut r, 3).is_err(), "cut at {cut}");
        }
        let mut r = &buf[..];
        assert!(read_record(&mut r, 2).is_err(), "dimension above the store's is refused");
    }

    /// A manifest is input too: one claiming a dimension of 4 billion (fuzz/corpus/backup/
    /// regression-dimension-from-manifest) made the reader allocate 16 GB for a record claiming as much, before
    /// finding that the data was not there. Lengths are now checked against the store limits first.
    #[test]
    fn lengths_are_checked_before_anything_is_allocated() {
        let mut record = Vec::new();
        record.extend_from_slice(&1u32.to_le_bytes());
        record.push(b'a');
        record.extend_from_slice(&7u64.to_le_bytes());
        record.extend_from_slice(&4_000_000_000u32.to_le_bytes());
        record.extend_from_slice(&[0; 64]);
        let (read, largest) =
            crate::alloc_probe::largest_allocation(|| read_record(&mut record.as_slice(), u32::MAX).map(|_| ()));
        assert!(read.unwrap_err().contains("bad dimension"));
        assert!(largest < 1 << 20, "an allocation of {largest} bytes");

        let found = include_bytes!("../../../fuzz/corpus/backup/regression-dimension-from-manifest");
        let manifest_len = u16::from_le_bytes([found[0], found[1]]) as usize;
        let (manifest, mut records) = found[2..].split_at(manifest_len);
        let max_dim = parse_manifest(manifest).unwrap().store.dimension;
        assert_eq!(max_dim, 4_000_000_000);
        let (read, largest) = crate::alloc_probe::largest_allocation(|| read_record(&mut records, max_dim).map(|_| ()));
        assert!(read.is_err());
        assert!(largest < 1 << 20, "an allocation of {largest} bytes");
    }

    #[test]
    fn manifests_round_trip_and_other_formats_are_refused() {
        let m = Manifest {
            format: FORMAT.into(),
            format_version: FORMAT_VERSION,
            rvdb_version: "0.1.0".into(),
            name: "b".into(),
            store: StoreConfig::new("s", 3, crate::Metric::Cosine),
            point_count: 2,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            created_unix_ms: 1,
            compression: "zstd".into(),
            files: vec![BackupFile { name: "points-00000.bin.zst".into(), points: 2, bytes: 9, sha256: "ab".into() }],
        };
        let bytes = serde_json::to_vec_pretty(&m).unwrap();
        assert_eq!(parse_manifest(&bytes), Ok(m.clone()));
        let other = serde_json::to_vec(&Manifest { format_version: 2, ..m }).unwrap();
        assert_eq!(parse_manifest(&other), Err(ManifestError::Unsupported { format: FORMAT.into(), version: 2 }));
        assert!(matches!(parse_manifest(b"{\"format\": 1}"), Err(ManifestError::Invalid(_))));
    }
}
