//! A hybrid logical clock (HLC): versions that follow wall time but never go backwards and never repeat, so
//! replicas can apply last-write-wins without synchronised clocks. Layout: milliseconds since the Unix epoch in
//! the high 48 bits, a logical counter in the low 16.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const LOGICAL_BITS: u32 = 16;

#[derive(Debug, Default)]
pub struct HybridClock {
    last: AtomicU64,
}

impl HybridClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh version, strictly greater than every version this clock issued or observed.
    pub fn now(&self) -> u64 {
        let physical = physical_ms() << LOGICAL_BITS;
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
}
