//! The gateway's error type. Mapped once per surface: MCP tool results with `isError: true` (the message is what
//! an agent reads, so it names the field and what was expected; [`crate::mcp`]), HTTP statuses with the JSON
//! error body for REST ([`crate::rest`]'s `From<GatewayError> for ApiError`), and gRPC statuses for the gateway's
//! gRPC services ([`crate::grpc`]). The kind each surface reports is [`GatewayError::kind`].
//!
//! A failed call to a storage node is mapped here too, once ([`GatewayError::from_replica`]): the caller knows
//! nothing of the gateway's internal hops, so a transport failure (connection refused or reset, deadline) becomes
//! `Unavailable` naming the store, the shard and the node, and a node's refusal of an oversized request never
//! surfaces as tonic's "decoded message length" text.

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
    /// A storage node, the backup directory or an embedding provider failed; the message says which.
    #[error("{0}")]
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
            _ => GatewayError::Backend(format!("storage node error ({:?}): {msg}", status.code())),
        }
    }

    /// The error of one call to the replica of `shard` of `store` on the node at `node`.
    ///
    /// A transport failure is `Unavailable` naming all three, whatever tonic code it arrived with: a refused
    /// connection is `Unavailable: tcp connect error`, a connection that breaks mid-call `Unknown: transport error`,
    /// the gateway's deadline `Unknown: request timed out` or `Cancelled: Timeout expired`. tonic builds these
    /// statuses on the client from a local error, which it keeps as the status' source; a status the node sent has
    /// none, and keeps its meaning ([`GatewayError::from_status`]).
    pub fn from_replica(status: tonic::Status, store: &str, shard: u32, node: &str) -> Self {
        let local = std::error::Error::source(&status).is_some();
        let reason = match status.code() {
            Code::DeadlineExceeded => "did not answer before the deadline".to_string(),
            Code::Cancelled if local => "did not answer before the deadline".to_string(),
            Code::Unknown if local && status.message().contains("timed out") => {
                "did not answer before the deadline".to_string()
            }
            Code::Unavailable if local => format!("cannot be reached ({})", status.message()),
            Code::Unknown if local => format!("connection failed ({})", status.message()),
            Code::Unavailable => format!("answered: {}", status.message()),
            Code::OutOfRange | Code::ResourceExhausted if status.message().contains("message length too large") => {
                return GatewayError::Backend(format!(
                    "storage node {node} refused a write request to shard {shard} of store '{store}' as larger \
                     than its --max-request-bytes; set the gateway's --write-request-bytes below it"
                ));
            }
            _ => return GatewayError::from_status(status),
        };
        GatewayError::shard_unavailable(store, shard, node, &reason)
    }

    /// `Unavailable` for a shard that cannot be served by `node` (one address, or several joined by commas).
    pub fn shard_unavailable(store: &str, shard: u32, node: &str, reason: &str) -> Self {
        GatewayError::Unavailable(format!(
            "shard {shard} of store '{store}' is unavailable: storage node {node} {reason}"
        ))
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

/// The in-process manager's errors (`rvdb serve` starting up), by the codes its API gives them.
impl From<rvdb_manager::ManagerError> for GatewayError {
    fn from(e: rvdb_manager::ManagerError) -> Self {
        GatewayError::from_status(e.into())
    }
}

pub type Result<T> = std::result::Result<T, GatewayError>;

#[cfg(test)]
mod tests {
    use super::*;

    fn unavailable_message(e: GatewayError) -> String {
        match e {
            GatewayError::Unavailable(m) => m,
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }

    #[test]
    fn transport_failures_are_unavailable_and_name_store_shard_and_node() {
        let node = "http://127.0.0.1:7001";
        // what tonic builds on the client: a status with the local error as its source
        let broken = tonic::Status::from_error(Box::new(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "transport error",
        )));
        assert_eq!(broken.code(), Code::Unknown);
        let timed_out = tonic::Status::from_error(Box::new(tower::timeout::error::Elapsed::new()));
        let refused = tonic::Status::from_error(Box::new(tonic::ConnectError(Box::new(std::io::Error::other(
            "tcp connect error",
        )))));
        assert_eq!(refused.code(), Code::Unavailable);
        let expired = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(expired.code(), Code::Cancelled);
        for (status, says) in [
            (broken, "connection failed (transport error)"),
            (timed_out, "did not answer before the deadline"),
            (refused, "cannot be reached (tcp connect error)"),
            (expired, "did not answer before the deadline"),
            (tonic::Status::deadline_exceeded("deadline"), "did not answer before the deadline"),
            (tonic::Status::unavailable("store shard docs/1 is reloading; retry"), "is reloading"),
        ] {
            let msg = unavailable_message(GatewayError::from_replica(status, "docs", 1, node));
            assert!(msg.starts_with("shard 1 of store 'docs' is unavailable: storage node http://127.0.0.1:7001"));
            assert!(msg.contains(says), "{msg}");
        }
    }

    #[test]
    fn statuses_a_node_sent_keep_their_meaning_and_hide_internal_limits() {
        let e = GatewayError::from_replica(tonic::Status::unknown("boom"), "docs", 0, "http://n:1");
        assert!(matches!(e, GatewayError::Backend(_)), "an Unknown the node sent is not a transport failure");
        let e = GatewayError::from_replica(tonic::Status::invalid_argument("points[0]: bad"), "docs", 0, "http://n:1");
        assert!(matches!(e, GatewayError::InvalidArgument(_)));
        let too_large = tonic::Status::out_of_range(
            "Error, decoded message length too large: found 68001234 bytes, the limit is: 67108864 bytes",
        );
        let e = GatewayError::from_replica(too_large, "docs", 1, "http://n:1");
        let msg = e.to_string();
        assert!(matches!(e, GatewayError::Backend(_)) && !msg.contains("decoded message length"), "{msg}");
        assert!(msg.contains("shard 1 of store 'docs'") && msg.contains("http://n:1"), "{msg}");
    }
}
