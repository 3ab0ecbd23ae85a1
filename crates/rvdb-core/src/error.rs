//! The one error type of `rvdb-core`. Every variant describes bad input in words an API user (or an LLM agent) can
//! act on: which field, what was expected, what was received. Services map it to INVALID_ARGUMENT / HTTP 400.

/// A validation failure of a store config, point, query or metadata document.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CoreError {
    #[error("invalid store name {name:?}: {reason}")]
    InvalidStoreName { name: String, reason: &'static str },
    #[error("invalid point id {id:?}: {reason}")]
    InvalidPointId { id: String, reason: &'static str },
    #[error("vector has {got} dimensions, but the store expects {expected}")]
    DimensionMismatch { expected: usize, got: usize },
    #[error("vector[{index}] {}", non_finite(*value))]
    NonFinite { index: usize, value: f32 },
    #[error("vector has zero length: the cosine metric needs a non-zero vector")]
    ZeroVector,
    #[error("invalid dimension {0}: must be between 1 and {max}", max = crate::types::MAX_DIMENSION)]
    InvalidDimension(u32),
    #[error("invalid k {0}: must be between 1 and {max}", max = crate::types::MAX_K)]
    InvalidK(u32),
    #[error("invalid metadata: {0}")]
    InvalidMetadata(String),
    #[error("invalid store config: {0}")]
    InvalidConfig(String),
    #[error("invalid filter at {0}")]
    InvalidFilter(String),
    #[error("unknown metric {0:?}: expected one of cosine, euclidean, manhattan, dot")]
    UnknownMetric(String),
}

/// Why a component is refused. A JSON number beyond the `f32` range (`1e39`) arrives as infinity, so an infinite
/// component is reported as out of range, which is what the caller sent.
fn non_finite(value: f32) -> &'static str {
    if value.is_nan() {
        "is NaN: every component must be a finite number"
    } else {
        "is outside the range of a 32-bit float (about ±3.4e38): every component must be a finite f32"
    }
}
