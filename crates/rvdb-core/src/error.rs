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

/// How much of a user-supplied value (a point id, a store, backup or file name, a filter key) an error message
/// quotes: enough to recognise it, while a megabyte-long id cannot make a megabyte-long message.
pub const EXCERPT_CHARS: usize = 80;

/// How long a message from a parser that quotes the input verbatim (`invalid type: string "…", expected u32 at
/// line 1 column 9`) may get: its beginning and its end (which says what was expected, and where) are kept.
pub const PARSER_MESSAGE_CHARS: usize = 400;

/// `value` as error messages quote it: at most [`EXCERPT_CHARS`] characters, `…` marking a cut. Every message
/// that echoes a caller's string goes through this (or [`clip`]), on every surface.
pub fn excerpt(value: &str) -> std::borrow::Cow<'_, str> {
    match value.char_indices().nth(EXCERPT_CHARS) {
        None => std::borrow::Cow::Borrowed(value),
        Some((at, _)) => std::borrow::Cow::Owned(format!("{}…", &value[..at])),
    }
}

/// A parser's message cut to at most [`PARSER_MESSAGE_CHARS`] characters: its first three quarters and its last
/// quarter, `…` marking the cut.
pub fn clip(message: &str) -> std::borrow::Cow<'_, str> {
    let chars = message.chars().count();
    if chars <= PARSER_MESSAGE_CHARS {
        return std::borrow::Cow::Borrowed(message);
    }
    let tail = PARSER_MESSAGE_CHARS / 4;
    let head_end = message.char_indices().nth(PARSER_MESSAGE_CHARS - tail).map_or(message.len(), |(at, _)| at);
    let tail_start = message.char_indices().nth(chars - tail).map_or(message.len(), |(at, _)| at);
    std::borrow::Cow::Owned(format!("{}…{}", &message[..head_end], &message[tail_start..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut_on_a_char_boundary() {
        assert_eq!(excerpt("short"), "short");
        let long = "é".repeat(1 << 20);
        let cut = excerpt(&long);
        assert_eq!(cut.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.starts_with("éé") && cut.ends_with('…'));
        let message = format!("invalid type: string \"{long}\", expected u32 at line 1 column 9");
        let cut = clip(&message);
        assert_eq!(cut.chars().count(), PARSER_MESSAGE_CHARS + 1);
        assert!(cut.starts_with("invalid type: string \"é") && cut.ends_with("expected u32 at line 1 column 9"));
        assert_eq!(clip("short"), "short");
    }
}
