//! A shard's read path: k-NN search by the engine's plan, reads by id, counts and filtered scans, and the
//! streams replication reads (changes since a version, the digest).

use super::*;

impl Shard {
    /// Top-k by the plan the engine chooses (see `rvdb_core::engine`); vectors and metadata, when asked for, are
    /// read from RocksDB for the hits only.
    pub fn search(&self, query: &[f32], opts: &SearchOptions) -> Result<SearchOutcome, NodeError> {
        validate_vector(query, self.config.dimension, self.config.metric)?;
        validate_k(opts.k)?;
        let (result, versions) = {
            let state = self.read_state()?;
            let result = state.index.search(&SearchRequest {
                query,
                k: opts.k as usize,
                ef: opts.ef.map(|e| e.min(rvdb_core::types::MAX_EF) as usize),
                filter: opts.filter.as_ref(),
                exact: opts.exact,
            });
            let versions: Vec<u64> = result.hits.iter().map(|h| state.current_version(&h.id).unwrap_or(0)).collect();
            (result, versions)
        };
        let (scanned, plan) = (result.scanned, result.plan);
        let hits = result.hits.into_iter().map(|h| (h.id, h.distance)).collect();
        let points = self
            .fill(hits, versions, opts.with_vector, opts.with_metadata)?
            .into_iter()
            .map(|(id, distance, version, vector, metadata)| ScoredPoint { id, distance, version, vector, metadata })
            .collect();
        Ok(SearchOutcome { points, scanned, plan })
    }

    /// Hits with their versions, and their vectors and metadata when asked for: those are read from RocksDB for
    /// the hits only (a plain search reads nothing from disk). A point deleted between the search and the read
    /// is left out rather than returned half-filled.
    #[allow(clippy::type_complexity)]
    fn fill(
        &self,
        hits: Vec<(String, f32)>,
        versions: Vec<u64>,
        with_vector: bool,
        with_metadata: bool,
    ) -> Result<Vec<(String, f32, u64, Option<Vec<f32>>, Option<String>)>, NodeError> {
        if !with_vector && !with_metadata {
            return Ok(hits.into_iter().zip(versions).map(|((id, v), version)| (id, v, version, None, None)).collect());
        }
        let ids: Vec<String> = hits.iter().map(|h| h.0.clone()).collect();
        let records = self.read_records(&ids)?;
        Ok(hits
            .into_iter()
            .zip(records)
            .filter_map(|((id, v), record)| match record {
                Some(Record::Live { version, vector, metadata }) => {
                    Some((id, v, version, with_vector.then_some(vector), with_metadata.then_some(metadata)))
                }
                _ => None,
            })
            .collect())
    }

    /// This shard's BM25 statistics for a keyword query's distinct terms.
    pub fn text_stats(&self, terms: &[(String, u32)]) -> Result<CorpusStats, NodeError> {
        Ok(self.read_state()?.index.text_stats(terms))
    }

    /// The `k` documents that score highest by BM25 for `terms` (analysed, distinct, with their counts in the
    /// query) among those `filter` takes, best first, ties by id. `collection`: the statistics of the whole store
    /// (a sharded store's, added up by the caller), `None` for this shard's own.
    pub fn keyword_search(
        &self,
        terms: &[(String, u32)],
        collection: Option<&CorpusStats>,
        k: u32,
        filter: Option<&Filter>,
        with_vector: bool,
        with_metadata: bool,
    ) -> Result<Vec<KeywordPoint>, NodeError> {
        validate_k(k)?;
        if let Some(c) = collection
            && c.document_frequency.len() != terms.len()
        {
            return Err(NodeError::BadRequest(format!(
                "collection statistics have {} document frequencies for {} terms",
                c.document_frequency.len(),
                terms.len()
            )));
        }
        let (hits, versions) = {
            let state = self.read_state()?;
            let hits = state.index.keyword_search(terms, collection, k as usize, filter);
            let versions: Vec<u64> = hits.iter().map(|h| state.current_version(&h.id).unwrap_or(0)).collect();
            (hits, versions)
        };
        let hits = hits.into_iter().map(|h| (h.id, h.score)).collect();
        Ok(self
            .fill(hits, versions, with_vector, with_metadata)?
            .into_iter()
            .map(|(id, score, version, vector, metadata)| KeywordPoint { id, score, version, vector, metadata })
            .collect())
    }

    /// Live points by id, in request order; missing or deleted ids are left out.
    pub fn get(&self, ids: &[String]) -> Result<Vec<PointData>, NodeError> {
        let records = self.read_records(ids)?;
        Ok(ids
            .iter()
            .zip(records)
            .filter_map(|(id, r)| match r {
                Some(Record::Live { version, vector, metadata }) => {
                    Some(PointData { id: id.clone(), vector, metadata, version })
                }
                _ => None,
            })
            .collect())
    }

    /// How many live points match `filter` (all of them without one), from the in-memory index.
    pub fn count(&self, filter: Option<&Filter>) -> Result<u64, NodeError> {
        Ok(self.read_state()?.index.count(filter) as u64)
    }

    pub(super) fn read_records(&self, ids: &[String]) -> Result<Vec<Option<Record>>, NodeError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let cf = self.cf()?;
        let values = self.db.batched_multi_get_cf(&cf, ids.iter().map(|s| s.as_bytes()), false);
        ids.iter()
            .zip(values)
            .map(|(id, v)| match v? {
                None => Ok(None),
                Some(bytes) => Record::decode(&bytes)
                    .map(Some)
                    .map_err(|m| NodeError::Corrupt { key: self.key.clone(), message: format!("point {id:?}: {m}") }),
            })
            .collect()
    }

    /// Visits the live points with ids after `start_after` in id order, from one consistent RocksDB view (the
    /// iterator's implicit snapshot), until `visit` returns false.
    pub fn scan(&self, start_after: &str, mut visit: impl FnMut(PointData) -> bool) -> Result<(), NodeError> {
        let cf = self.cf()?;
        let mode = if start_after.is_empty() {
            IteratorMode::Start
        } else {
            IteratorMode::From(start_after.as_bytes(), Direction::Forward)
        };
        for item in self.db.iterator_cf(&cf, mode) {
            let (k, v) = item?;
            if !start_after.is_empty() && &*k == start_after.as_bytes() {
                continue;
            }
            let (id, record) = self.decode_entry(k, &v)?;
            if let Record::Live { version, vector, metadata } = record
                && !visit(PointData { id, vector, metadata, version })
            {
                break;
            }
        }
        Ok(())
    }

    /// [`Shard::scan`] of the points whose metadata matches `filter` (every point without one).
    pub fn scan_matching(
        &self,
        start_after: &str,
        filter: Option<&Filter>,
        mut visit: impl FnMut(PointData) -> bool,
    ) -> Result<(), NodeError> {
        let Some(filter) = filter else { return self.scan(start_after, visit) };
        let mut corrupt = None;
        self.scan(start_after, |p| match stored_metadata(&p.metadata) {
            Ok(doc) => !filter.matches_point(&p.id, &doc) || visit(p),
            Err(e) => {
                corrupt = Some(format!("point {:?}: stored metadata: {e}", p.id));
                false
            }
        })?;
        match corrupt {
            Some(message) => Err(NodeError::Corrupt { key: self.key.clone(), message }),
            None => Ok(()),
        }
    }

    /// A uniform random sample of at most `n` live points matching `filter` (all of them if fewer match), in id
    /// order: reservoir sampling (Vitter's algorithm R) over one consistent view of the whole shard, seeded.
    pub fn sample(&self, n: usize, filter: Option<&Filter>, seed: u64) -> Result<Vec<PointData>, NodeError> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut reservoir = Vec::with_capacity(n.min(1 << 16));
        let mut seen = 0u64;
        if n > 0 {
            self.scan_matching("", filter, |p| {
                if reservoir.len() < n {
                    reservoir.push(p);
                } else {
                    let j = rng.random_range(0..=seen);
                    if let Some(slot) = usize::try_from(j).ok().and_then(|j| reservoir.get_mut(j)) {
                        *slot = p;
                    }
                }
                seen += 1;
                true
            })?;
        }
        reservoir.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(reservoir)
    }

    /// One stored key and value as `(point id, record)`; a non-UTF-8 id or an undecodable value is `Corrupt`.
    pub(super) fn decode_entry(&self, key: Box<[u8]>, value: &[u8]) -> Result<(String, Record), NodeError> {
        let id = String::from_utf8(key.into_vec())
            .map_err(|_| NodeError::Corrupt { key: self.key.clone(), message: "a point id is not UTF-8".into() })?;
        let record = Record::decode(value)
            .map_err(|m| NodeError::Corrupt { key: self.key.clone(), message: format!("point {id:?}: {m}") })?;
        Ok((id, record))
    }

    /// Visits every record (live points and tombstones) with a version above `since`, in id order, from one
    /// consistent RocksDB view, until `visit` returns false.
    ///
    /// Design: this is a scan of the whole column family that skips old records by the version in their first 9
    /// bytes (no decoding), not a version-ordered index. Such an index would make a catch-up O(changes) instead
    /// of O(shard) reads on the peer, but would cost every write a second key and a read-modify-write of the old
    /// one; a catch-up is rare and a RocksDB scan runs at millions of keys per second, so the write path stays
    /// lean. Tombstones are kept forever for the same reason (a returning replica learns of deletes from them).
    ///
    /// With `buckets`, only the records whose ids fall in the chosen buckets of the id space (anti-entropy's
    /// repair of the buckets whose digests differ between replicas).
    pub fn changes(
        &self,
        since: u64,
        buckets: Option<&BucketFilter>,
        mut visit: impl FnMut(Change) -> bool,
    ) -> Result<(), NodeError> {
        let cf = self.cf()?;
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item?;
            // skip old records without decoding their vectors
            if Record::version_of(&v).is_some_and(|version| version <= since) {
                continue;
            }
            if buckets.is_some_and(|b| !b.contains(&k)) {
                continue;
            }
            let (id, record) = self.decode_entry(k, &v)?;
            let change = match record {
                Record::Live { version, vector, metadata } => {
                    Change::Point(PointData { id, vector, metadata, version })
                }
                Record::Tombstone { version } => Change::Tombstone { id, version },
            };
            if !visit(change) {
                break;
            }
        }
        Ok(())
    }

    /// Anti-entropy's summary of the replica: the id space cut into `buckets` by a hash of the id, and for each
    /// bucket the number of records (live points and tombstones) and the wrapping sum of a 64-bit SHA-256 prefix of
    /// each `(id, record)`. The sum does not depend on order, so replicas compare bucket by bucket without agreeing
    /// on split points, and a difference in one record changes its bucket's sum (a false match needs a 2^-64
    /// coincidence). From one consistent view.
    pub fn bucket_digests(&self, buckets: u32) -> Result<Vec<BucketDigest>, NodeError> {
        use sha2::Digest as _;
        let buckets = checked_buckets(buckets)?;
        let cf = self.cf()?;
        let mut out = vec![BucketDigest::default(); buckets as usize];
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item?;
            let mut hasher = sha2::Sha256::new();
            hasher.update((k.len() as u32).to_le_bytes());
            hasher.update(&k);
            hasher.update(&v);
            let h = hasher.finalize();
            let b = &mut out[bucket_of(&k, buckets) as usize];
            b.sum = b.sum.wrapping_add(u64::from_le_bytes(h[..8].try_into().expect("8 bytes")));
            b.records += 1;
        }
        Ok(out)
    }

    /// SHA-256 over `(len(id), id, len(record), record)` of every key in id order, from one consistent view: equal
    /// digests mean byte-for-byte equal replicas.
    pub fn digest(&self) -> Result<ShardDigest, NodeError> {
        use sha2::Digest as _;
        let cf = self.cf()?;
        let mut hasher = sha2::Sha256::new();
        let (mut records, mut max_version) = (0u64, 0u64);
        for item in self.db.iterator_cf(&cf, IteratorMode::Start) {
            let (k, v) = item?;
            hasher.update((k.len() as u32).to_le_bytes());
            hasher.update(&k);
            hasher.update((v.len() as u32).to_le_bytes());
            hasher.update(&v);
            records += 1;
            max_version = max_version.max(Record::version_of(&v).unwrap_or(0));
        }
        let sha256 = rvdb_core::types::hex(&hasher.finalize());
        Ok(ShardDigest { sha256, records, max_version })
    }
}

/// The most buckets a replica is cut into for anti-entropy.
pub const MAX_BUCKETS: u32 = 65_536;

fn checked_buckets(buckets: u32) -> Result<u32, NodeError> {
    if buckets == 0 || buckets > MAX_BUCKETS {
        return Err(NodeError::BadRequest(format!("buckets is {buckets}: must be between 1 and {MAX_BUCKETS}")));
    }
    Ok(buckets)
}

/// The bucket of a point id among `buckets`: FNV-1a 64 of the id, mixed (splitmix64's finaliser) so that it is
/// independent of the shard routing, which uses FNV-1a with a jump hash.
pub fn bucket_of(id: &[u8], buckets: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = (h ^ (h >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    h ^= h >> 31;
    ((h as u128 * buckets as u128) >> 64) as u32
}

/// One bucket of [`Shard::bucket_digests`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BucketDigest {
    pub sum: u64,
    pub records: u64,
}

/// The buckets a [`Shard::changes`] keeps.
#[derive(Debug, Clone)]
pub struct BucketFilter {
    buckets: u32,
    wanted: Vec<bool>,
}

impl BucketFilter {
    /// Records in `only` of `buckets` buckets.
    pub fn new(buckets: u32, only: &[u32]) -> Result<BucketFilter, NodeError> {
        let buckets = checked_buckets(buckets)?;
        let mut wanted = vec![false; buckets as usize];
        for &b in only {
            *wanted
                .get_mut(b as usize)
                .ok_or_else(|| NodeError::BadRequest(format!("bucket {b} is out of range for {buckets} buckets")))? =
                true;
        }
        Ok(BucketFilter { buckets, wanted })
    }

    pub fn contains(&self, id: &[u8]) -> bool {
        self.wanted[bucket_of(id, self.buckets) as usize]
    }
}
