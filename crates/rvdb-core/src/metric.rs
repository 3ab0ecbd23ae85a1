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

    /// Turns the raw value of [`Self::scan_op`] into the user-facing distance.
    #[inline]
    pub fn finish(self, raw: f32) -> f32 {
        match self {
            Metric::Cosine => 1.0 + raw,
            Metric::Euclidean => raw.max(0.0).sqrt(),
            Metric::Manhattan | Metric::Dot => raw,
        }
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
