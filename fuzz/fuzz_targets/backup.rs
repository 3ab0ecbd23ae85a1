//! A backup as a restore reads it: `manifest.json`, then a file's records (decompressed), read with the
//! manifest's dimension as the limit, as `verify` and `load_points` do. Input: see `rvdb_fuzz::split_backup_input`.
//!
//! Properties: neither the manifest parser nor the record reader panics, whatever the manifest claims; no
//! allocation exceeds what the input holds plus one record's limits (libFuzzer's `-malloc_limit_mb` catches a
//! length read from the input and allocated before it was checked); a parsed manifest round-trips through its
//! own JSON; every record read is within its limits and re-encodes to exactly the bytes it was read from.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvdb_core::backup_format::{parse_manifest, read_record, write_record};
use rvdb_core::types::{MAX_DIMENSION, MAX_METADATA_BYTES, MAX_POINT_ID_BYTES};

fuzz_target!(|data: &[u8]| {
    let (manifest, records) = rvdb_fuzz::split_backup_input(data);
    let max_dim = match parse_manifest(manifest) {
        Ok(m) => {
            let json = serde_json::to_vec_pretty(&m).expect("a manifest encodes");
            assert_eq!(parse_manifest(&json).as_ref(), Ok(&m), "the manifest does not round-trip");
            m.store.dimension
        }
        // A restore stops at a bad manifest; read the records anyway, as a valid store's would be.
        Err(_) => MAX_DIMENSION,
    };
    let mut reader = records;
    loop {
        let before = reader;
        match read_record(&mut reader, max_dim) {
            Ok(Some(r)) => {
                assert!(!r.id.is_empty() && r.id.len() <= MAX_POINT_ID_BYTES, "id of {} bytes", r.id.len());
                assert!(!r.vector.is_empty() && r.vector.len() <= max_dim as usize, "dimension {}", r.vector.len());
                assert!(r.metadata.len() <= MAX_METADATA_BYTES, "metadata of {} bytes", r.metadata.len());
                let consumed = &before[..before.len() - reader.len()];
                let mut again = Vec::new();
                write_record(&mut again, &r.id, r.version, &r.vector, &r.metadata).expect("writes to a Vec");
                assert_eq!(again, consumed, "a record does not re-encode to its bytes");
            }
            Ok(None) => {
                assert!(before.is_empty(), "end of stream reported with {} bytes left", before.len());
                break;
            }
            Err(_) => break,
        }
    }
});
