//! A hybrid logical clock (HLC): versions that follow wall time but never go backwards and never repeat, so
//! replicas can apply last-write-wins without synchronised clocks. Layout: milliseconds since the Unix epoch in
//! the high 48 bits, a logical counter in the low 16.
//!
//! A clock must also learn the versions it did not issue: a writer whose wall clock is behind the versions already
//! stored (a restart after the clock was set back, another gateway's clock ahead) would otherwise stamp writes that
//! last-write-wins drops as stale. [`HybridClock::observe`] is the HLC receive rule: every version seen (from a
//! replica's reply, from disk) moves the clock past it, so the next [`HybridClock::now`] is newer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const LOGICAL_BITS: u32 = 16;

#[derive(Debug, Default)]
pub struct HybridClock {
    last: AtomicU64,
    /// Added to the wall clock (milliseconds): 0 but in tests and drills that run a writer "in the past".
    offset_ms: i64,
}

impl HybridClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// A clock whose physical part is the wall clock shifted by `offset_ms` (negative = behind): a test and
    /// operations knob that reproduces a host whose clock was set back.
    pub fn with_offset_ms(offset_ms: i64) -> Self {
        Self { last: AtomicU64::new(0), offset_ms }
    }

    /// A fresh version, strictly greater than every version this clock issued or observed.
    pub fn now(&self) -> u64 {
        let physical = physical_ms().saturating_add_signed(self.offset_ms) << LOGICAL_BITS;
        let mut last = self.last.load(Ordering::Relaxed);
        loop {
            let next = physical.max(last + 1);
            match self.last.compare_exchange_weak(last, next, Ordering::AcqRel, Ordering::Relaxed) {
                Ok(_) => return next,
                Err(actual) => last = actual,
            }
        }
    }

    /// Moves the clock past a version seen elsewhere (a replica, a restart from disk).
    pub fn observe(&self, version: u64) {
        self.last.fetch_max(version, Ordering::AcqRel);
    }
}

fn physical_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_strictly_increase_and_pass_observed() {
        let c = HybridClock::new();
        let a = c.now();
        let b = c.now();
        assert!(b > a);
        c.observe(b + 1_000_000);
        assert!(c.now() > b + 1_000_000);
        // close to wall time
        assert!(a >> LOGICAL_BITS >= physical_ms() - 10_000);
    }

    #[test]
    fn a_clock_behind_the_stored_versions_issues_newer_ones_once_it_observed_them() {
        let stored = HybridClock::new().now();
        let behind = HybridClock::with_offset_ms(-600_000);
        let before = behind.now();
        assert!(before < stored, "ten minutes behind: its versions lose against what is stored");
        assert!((stored >> LOGICAL_BITS) - (before >> LOGICAL_BITS) >= 599_000);
        behind.observe(stored);
        let after = behind.now();
        assert!(after > stored, "after observing a stored version every new version is newer");
        assert!(behind.now() > after);
        // observing an older version does not move it back
        behind.observe(before);
        assert!(behind.now() > after);
    }
}
