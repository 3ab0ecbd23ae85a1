//! The crate's error type.

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model directory is missing a file or holds one that cannot be read.
    #[error("embedding model at {dir}: {reason}")]
    Model { dir: String, reason: String },
    /// Inference failed (a tensor operation or the tokenizer).
    #[error("embedding failed: {0}")]
    Inference(String),
    /// The input cannot be embedded (e.g. an empty batch entry the caller should have refused).
    #[error("{0}")]
    InvalidInput(String),
}

impl From<candle_core::Error> for EmbedError {
    fn from(e: candle_core::Error) -> Self {
        EmbedError::Inference(e.to_string())
    }
}
