//! The gateway's error type. Mapped once per surface: MCP tool results with `isError: true` (the message is what
//! an agent reads, so it names the field and what was expected), and later HTTP status codes for REST.

use rvdb_core::CoreError;
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Invalid(#[from] CoreError),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    LimitReached(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("storage node error: {0}")]
    Backend(String),
    #[error("cancelled by the client")]
    Cancelled,
}

impl GatewayError {
    /// A node's gRPC status, keeping its message (nodes already phrase them for users).
    pub fn from_status(status: tonic::Status) -> Self {
        let msg = status.message().to_string();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => GatewayError::InvalidArgument(msg),
            Code::NotFound => GatewayError::NotFound(msg),
            Code::AlreadyExists => GatewayError::AlreadyExists(msg),
            Code::Unavailable | Code::DeadlineExceeded => GatewayError::Unavailable(msg),
            Code::ResourceExhausted => GatewayError::LimitReached(msg),
            _ => GatewayError::Backend(format!("{:?}: {msg}", status.code())),
        }
    }

    /// A short machine-readable kind for structured error results.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::Invalid(_) | GatewayError::InvalidArgument(_) => "invalid_argument",
            GatewayError::NotFound(_) => "not_found",
            GatewayError::AlreadyExists(_) => "already_exists",
            GatewayError::LimitReached(_) => "limit_reached",
            GatewayError::Unavailable(_) => "unavailable",
            GatewayError::Backend(_) => "backend_error",
            GatewayError::Cancelled => "cancelled",
        }
    }
}

impl From<tonic::Status> for GatewayError {
    fn from(s: tonic::Status) -> Self {
        GatewayError::from_status(s)
    }
}

pub type Result<T> = std::result::Result<T, GatewayError>;
