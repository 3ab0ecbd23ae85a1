//! The crate's error type.

#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The model directory is missing a file or holds one that cannot be read.
    #[error("embedding model at {dir}: {reason}")]
    Model { dir: String, reason: String },
    /// Inference failed (a tensor operation or the tokenizer).
    #[error("embedding failed: {0}")]
    Inference(String),
    /// The input cannot be embedded (e.g. an empty batch entry the caller should have refused), or a provider's
    /// settings are wrong.
    #[error("{0}")]
    InvalidInput(String),
    /// A remote provider cannot be reached, did not answer in time, or answered 429 / 5xx (after the retries).
    #[error("{0}")]
    Unavailable(String),
    /// A remote provider refused the request (4xx other than 429), with its own message.
    #[error("embedding provider at {url} answered {status}: {message}")]
    Provider { url: String, status: u16, message: String },
    /// A remote provider's answer is not what its API promises.
    #[error("embedding provider at {url} gave an invalid answer: {reason}")]
    BadAnswer { url: String, reason: String },
}

impl From<candle_core::Error> for EmbedError {
    fn from(e: candle_core::Error) -> Self {
        EmbedError::Inference(e.to_string())
    }
}
