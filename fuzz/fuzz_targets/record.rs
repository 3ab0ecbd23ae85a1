//! Bytes → `Record::decode`, the codec of every value in a shard's column family (points and tombstones).
//!
//! Properties: decoding never panics and allocates no more than the input's size; `version_of` (read without
//! decoding, by catch-up and digests) agrees with the decoded version; the encoding is canonical — a value that
//! decodes is exactly the encoding of what it decodes to (`encode(decode(b)) == b`, so replicas that break
//! version ties on record bytes compare meanings), and decoding that encoding again gives the same bytes back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rvdb_core::record::{Record, encode_live};

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        assert_eq!(Record::version_of(data), Some(record.version()), "version_of disagrees with decode");
        let encoded = record.encode();
        assert_eq!(encoded, data, "a decodable value is not the encoding of what it decodes to: {record:?}");
        let again = Record::decode(&encoded).expect("an encoded record decodes");
        assert_eq!(again.encode(), encoded, "decode(encode(r)) differs from r");
    }
    // The other direction: any vector and metadata text encode to a value that decodes to them, bit for bit.
    let (head, tail) = data.split_at(data.len() / 2 / 4 * 4);
    let vector: Vec<f32> = head.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let metadata = String::from_utf8_lossy(tail);
    let bytes = encode_live(data.len() as u64, &vector, &metadata);
    match Record::decode(&bytes) {
        Ok(Record::Live { version, vector: v, metadata: m }) => {
            assert_eq!(version, data.len() as u64);
            assert!(v.iter().map(|x| x.to_bits()).eq(vector.iter().map(|x| x.to_bits())), "vector bits changed");
            assert_eq!(m, metadata);
        }
        other => panic!("an encoded live record decodes as {other:?}"),
    }
});
