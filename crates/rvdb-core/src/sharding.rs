//! Which shard a point belongs to, and which points a shard owns while a store is being resharded.
//!
//! A point's shard is `jump_consistent_hash(fnv1a_64(id), shards)`: stable across processes, Rust versions and
//! machines (unlike `std`'s hasher). Jump hashing is also what makes resharding cheap: growing a store from `n` to
//! `m > n` shards moves an id only from an old shard to a new one (never between old shards), and shrinking from
//! `m` to `n` keeps every id of shards `0..n` where it is. So a shard `i` that exists in both layouts keeps
//! `{id : shard_of(id, max) == i}` and only the ids that move are copied.
//!
//! While a reshard runs, a shard may hold records that belong to another shard under the layout reads route by
//! (a copy not yet pruned, or one that arrived early): [`Owner`] is the read-side check that leaves them out, so
//! a point is never counted or returned twice.

/// FNV-1a, 64 bit.
pub fn fnv1a_64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Lamping & Veach's jump consistent hash: a bucket in `0..buckets` for `key`.
pub fn jump_consistent_hash(mut key: u64, buckets: u32) -> u32 {
    let buckets = buckets.max(1) as i64;
    let (mut b, mut j): (i64, i64) = (-1, 0);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1i64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b as u32
}

/// The shard of `id` in a store of `shards` shards.
pub fn shard_of(id: &str, shards: u32) -> u32 {
    jump_consistent_hash(fnv1a_64(id.as_bytes()), shards)
}

/// "Shard `shard` of a layout of `shards` shards": the ids it owns are those with `shard_of(id, shards) == shard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub shard: u32,
    pub shards: u32,
}

impl Owner {
    pub fn owns(&self, id: &str) -> bool {
        shard_of(id, self.shards) == self.shard
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashing_is_stable_and_balanced() {
        // fixed values: a change here would silently re-route every stored point
        assert_eq!(fnv1a_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a_64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(jump_consistent_hash(0, 1), 0);
        let mut counts = [0u32; 4];
        for i in 0..40_000 {
            counts[shard_of(&format!("doc-{i}"), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (9_000..11_000).contains(c)), "{counts:?}");
    }

    #[test]
    fn growing_shards_moves_few_ids() {
        let moved = (0..10_000).filter(|i| shard_of(&i.to_string(), 4) != shard_of(&i.to_string(), 5)).count();
        assert!((1_500..2_500).contains(&moved), "{moved} of 10000 moved; expected about 1/5");
    }

    /// What resharding relies on: between any two layouts, an id of a shard that exists in both stays put unless
    /// its shard under the larger layout is beyond the smaller one.
    #[test]
    fn ids_move_only_to_or_from_shards_one_layout_lacks() {
        for (a, b) in [(1u32, 2u32), (2, 8), (4, 8), (3, 7), (8, 2), (5, 1)] {
            let (small, large) = (a.min(b), a.max(b));
            for i in 0..20_000 {
                let id = format!("p{i}");
                let (s, l) = (shard_of(&id, small), shard_of(&id, large));
                if l < small {
                    assert_eq!(s, l, "{id}: {small} -> {large}");
                }
                assert!(Owner { shard: s, shards: small }.owns(&id));
            }
        }
    }
}
