//! A bounded max-heap that keeps the `k` smallest distances seen so far. The scan loop only touches it when a
//! candidate beats the current worst, so for large scans its cost is close to zero.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// A slot (position in an index) with its raw distance.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub distance: f32,
    pub slot: u32,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance.total_cmp(&other.distance).then(self.slot.cmp(&other.slot))
    }
}

#[derive(Debug)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
    worst: f32,
}

impl TopK {
    pub fn new(k: usize) -> Self {
        Self { k, heap: BinaryHeap::with_capacity(k + 1), worst: f32::INFINITY }
    }

    /// The distance a candidate must beat to enter (infinity until `k` are held).
    #[inline]
    pub fn threshold(&self) -> f32 {
        self.worst
    }

    #[inline]
    pub fn push(&mut self, distance: f32, slot: u32) {
        if self.k == 0 {
            return;
        }
        let c = Candidate { distance, slot };
        if self.heap.len() < self.k {
            self.heap.push(c);
            if self.heap.len() == self.k {
                self.worst = self.heap.peek().map_or(f32::INFINITY, |w| w.distance);
            }
        } else {
            let replaced = match self.heap.peek_mut() {
                Some(mut top) if c < *top => {
                    *top = c;
                    true
                }
                _ => false,
            };
            if replaced {
                self.worst = self.heap.peek().map_or(f32::INFINITY, |w| w.distance);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// The kept candidates, nearest first.
    pub fn into_sorted(self) -> Vec<Candidate> {
        self.heap.into_sorted_vec()
    }

    /// The kept candidates as results, `id_of` naming each slot, distances finished by `metric`, in a stable,
    /// replica-independent order: by distance, then id.
    pub fn into_hits<'a>(self, metric: crate::Metric, id_of: impl Fn(u32) -> &'a str) -> Vec<crate::SearchHit> {
        let mut hits: Vec<crate::SearchHit> = self
            .into_sorted()
            .into_iter()
            .map(|c| crate::SearchHit { id: id_of(c.slot).to_string(), distance: metric.finish(c.distance) })
            .collect();
        hits.sort_by(|a, b| a.distance.total_cmp(&b.distance).then_with(|| a.id.cmp(&b.id)));
        hits
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_k_smallest() {
        let mut t = TopK::new(3);
        for (i, d) in [5.0, 1.0, 4.0, 2.0, 3.0, 0.5, 9.0].into_iter().enumerate() {
            t.push(d, i as u32);
        }
        let got: Vec<u32> = t.into_sorted().iter().map(|c| c.slot).collect();
        assert_eq!(got, vec![5, 1, 3]);
    }

    #[test]
    fn k_zero_keeps_nothing() {
        let mut t = TopK::new(0);
        t.push(1.0, 0);
        assert!(t.is_empty());
    }
}
