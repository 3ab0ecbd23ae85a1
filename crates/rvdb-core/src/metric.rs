//! Distance metrics and their conventions. Every metric is turned into a *distance* (lower is better), so that
//! one top-k machinery serves all of them and results from different shards merge by plain comparison:
//! cosine → `1 - cos`, euclidean → L2, manhattan → L1, dot → `-(a·b)`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

use crate::CoreError;
use crate::error::excerpt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    Cosine,
    Euclidean,
    Manhattan,
    Dot,
}

/// The kernel a metric scans with, once vectors are prepared (cosine vectors are stored normalised, so cosine
/// scans with the dot kernel).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanOp {
    /// `-(a·b)`
    NegDot,
    /// `Σ (a-b)²`
    L2Squared,
    /// `Σ |a-b|`
    L1,
}

impl Metric {
    pub const ALL: [Metric; 4] = [Metric::Cosine, Metric::Euclidean, Metric::Manhattan, Metric::Dot];

    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Cosine => "cosine",
            Metric::Euclidean => "euclidean",
            Metric::Manhattan => "manhattan",
            Metric::Dot => "dot",
        }
    }

    pub fn scan_op(self) -> ScanOp {
        match self {
            Metric::Cosine | Metric::Dot => ScanOp::NegDot,
            Metric::Euclidean => ScanOp::L2Squared,
            Metric::Manhattan => ScanOp::L1,
        }
    }

    /// Whether stored and query vectors are normalised to unit length before scanning.
    pub fn normalizes(self) -> bool {
        self == Metric::Cosine
    }

    /// Turns the raw value of [`Self::scan_op`] into the user-facing distance, always a finite number: cosine in
    /// [0, 2] (rounding can leave `1 - cos` a hair outside), a raw value that overflowed `f32` as ±`f32::MAX`, and
    /// an undefined one (NaN, from `inf - inf`) as `f32::MAX`, the worst distance. Every index finishes its hits
    /// here, so no surface ever has to format an infinity or a NaN.
    #[inline]
    pub fn finish(self, raw: f32) -> f32 {
        self.finish_f64(raw as f64)
    }

    /// [`Self::finish`] of a raw value computed in `f64` (the exact path of [`crate::flat::FlatIndex`] for
    /// vectors whose distances overflow `f32`: a euclidean distance of 2e38 is representable, its square is not).
    #[inline]
    pub fn finish_f64(self, raw: f64) -> f32 {
        let (d, lo, hi) = match self {
            Metric::Cosine => (1.0 + raw, 0.0, 2.0),
            Metric::Euclidean => (raw.max(0.0).sqrt(), 0.0, f32::MAX as f64),
            Metric::Manhattan | Metric::Dot => (raw, -f32::MAX as f64, f32::MAX as f64),
        };
        (if d.is_nan() { hi } else { d.clamp(lo, hi) }) as f32
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Metric {
    type Err = CoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cosine" | "cos" => Ok(Metric::Cosine),
            "euclidean" | "l2" => Ok(Metric::Euclidean),
            "manhattan" | "l1" => Ok(Metric::Manhattan),
            "dot" | "ip" | "inner_product" => Ok(Metric::Dot),
            _ => Err(CoreError::UnknownMetric(excerpt(s).into_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finished_distances_are_finite_and_cosine_is_in_0_2() {
        assert_eq!(Metric::Cosine.finish(-1.000_001), 0.0);
        assert_eq!(Metric::Cosine.finish(1.000_001), 2.0);
        assert_eq!(Metric::Cosine.finish(f32::NAN), 2.0);
        assert_eq!(Metric::Euclidean.finish(f32::INFINITY), f32::MAX);
        assert_eq!(Metric::Dot.finish(f32::NEG_INFINITY), -f32::MAX);
        assert_eq!(Metric::Dot.finish(f32::NAN), f32::MAX);
        assert_eq!(Metric::Manhattan.finish(3.5), 3.5);
        assert_eq!(Metric::Euclidean.finish(9.0), 3.0);
    }
}
