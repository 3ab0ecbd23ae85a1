//! Tests of the coded scan: equal to the plain scan bit for bit, bounds true on every instruction set.

use super::*;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};

/// Every kernel the CPU can run: (level, vnni).
fn variants() -> Vec<(Simd, bool)> {
    let mut v: Vec<(Simd, bool)> = Simd::available().into_iter().map(|l| (l, false)).collect();
    if v[0].0.has_vnni() {
        v.insert(0, (v[0].0, true));
    }
    v
}

fn plain(
    bv: &BlockedVectors,
    lvl: Simd,
    op: ScanOp,
    q: &[f32],
    k: usize,
    accept: &dyn Fn(u32) -> bool,
) -> Vec<(u32, u32)> {
    let mut top = TopK::new(k);
    bv.scan_at(lvl, op, q, None, &mut top, &mut |s| accept(s));
    top.into_sorted().iter().map(|c| (c.slot, c.distance.to_bits())).collect()
}

fn coded(
    cv: &CodedVectors,
    bv: &BlockedVectors,
    lvl: Simd,
    vnni: bool,
    q: &[f32],
    k: usize,
    accept: &dyn Fn(u32) -> bool,
) -> Vec<(u32, u32)> {
    let mut top = TopK::new(k);
    cv.scan(lvl, vnni, q, bv, &mut top, &mut |s| accept(s));
    top.into_sorted().iter().map(|c| (c.slot, c.distance.to_bits())).collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]
    /// Bit-identical to the plain scan (slots and distances, ties included) for every op and kernel, with
    /// vectors outside the fitted grid, replacements, swap-removes, duplicates and a filter.
    #[test]
    fn coded_scan_equals_the_plain_scan(
        dim in 1usize..70, n in 1usize..300, k in 1usize..40, removals in 0usize..60, seed in any::<u64>(),
        scale in prop_oneof![Just(1.0f32), Just(1e-3), Just(1e4)], filtered in any::<bool>(),
    ) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mk = |rng: &mut rand::rngs::StdRng, wide: f32| -> Vec<f32> {
            (0..dim).map(|_| rng.random_range(-scale..scale) * wide).collect()
        };
        for op in [ScanOp::NegDot, ScanOp::L2Squared, ScanOp::L1] {
            let mut bv = BlockedVectors::new(dim);
            let first = n.div_ceil(2);
            for _ in 0..first {
                bv.push(&mk(&mut rng, 1.0));
            }
            let mut cv = CodedVectors::build(op, &bv);
            // Later inserts: some far outside the grid, some exact duplicates (ties).
            for i in first..n {
                let v = match i % 5 {
                    0 => mk(&mut rng, 8.0),
                    1 if !bv.is_empty() => bv.get(rng.random_range(0..bv.len())),
                    _ => mk(&mut rng, 1.0),
                };
                bv.push(&v);
                cv.push(&v);
            }
            for _ in 0..removals.min(n - 1) {
                let s = rng.random_range(0..bv.len());
                bv.swap_remove(s);
                cv.swap_remove(s);
            }
            for _ in 0..bv.len() / 4 {
                let s = rng.random_range(0..bv.len());
                let v = mk(&mut rng, 3.0);
                bv.set(s, &v);
                cv.set(s, &v);
            }
            prop_assert_eq!(cv.len(), bv.len());
            let pass = |s: u32| !filtered || s % 3 != 1;
            for qi in 0..3 {
                let q = if qi == 2 { bv.get(0) } else { mk(&mut rng, if qi == 1 { 5.0 } else { 1.0 }) };
                for &(lvl, vnni) in &variants() {
                    let want = plain(&bv, lvl, op, &q, k, &pass);
                    let got = coded(&cv, &bv, lvl, vnni, &q, k, &pass);
                    prop_assert_eq!(&got, &want, "{:?} {:?} vnni {}", op, lvl, vnni);
                }
            }
        }
    }
}

#[test]
fn prunes_most_blocks_on_clustered_data() {
    // 20,000 vectors: the scan must re-score only a few blocks (checked through `accept` calls).
    let mut rng = rand::rngs::StdRng::seed_from_u64(3);
    let dim = 24;
    let mut bv = BlockedVectors::new(dim);
    for _ in 0..20_000 {
        let v: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
        bv.push(&v);
    }
    for op in [ScanOp::NegDot, ScanOp::L2Squared, ScanOp::L1] {
        let cv = CodedVectors::build(op, &bv);
        for &(lvl, vnni) in &variants() {
            let q = bv.get(123);
            let mut asked = 0;
            let mut top = TopK::new(10);
            cv.scan(lvl, vnni, &q, &bv, &mut top, &mut |_| {
                asked += 1;
                true
            });
            assert!(asked < 2_000, "{op:?} {lvl:?} vnni {vnni}: {asked} lanes re-scored");
            let want = plain(&bv, lvl, op, &q, 10, &|_| true);
            let got: Vec<(u32, u32)> = top.into_sorted().iter().map(|c| (c.slot, c.distance.to_bits())).collect();
            assert_eq!(got, want);
        }
    }
}

#[test]
fn memory_is_codes_plus_residuals() {
    let mut bv = BlockedVectors::new(50);
    bv.reserve(1600);
    for i in 0..1600 {
        bv.push(&[i as f32; 50]);
    }
    let cv = CodedVectors::build(ScanOp::NegDot, &bv);
    assert_eq!(cv.memory_bytes(), 1600 * (52 + 4) + 50 * 12);
    let cv = CodedVectors::build(ScanOp::L2Squared, &bv);
    assert_eq!(cv.memory_bytes(), 1600 * (52 + 8) + 50 * 12);
}
