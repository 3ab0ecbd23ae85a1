//! The gateway's error type. Mapped once per surface: MCP tool results with `isError: true` (the message is what
//! an agent reads, so it names the field and what was expected; [`crate::mcp`]), HTTP statuses with the JSON
//! error body for REST ([`crate::rest`]'s `From<GatewayError> for ApiError`), and gRPC statuses for the gateway's
//! gRPC services ([`crate::grpc`]). The kind each surface reports is [`GatewayError::kind`].
//!
//! A failed call to a storage node is mapped here too, once ([`GatewayError::from_replica`]): the caller knows
//! nothing of the gateway's internal hops, so a transport failure (connection refused or reset, deadline) becomes
//! `Unavailable` naming the store, the shard and the node, and a node's refusal of an oversized request never
//! surfaces as tonic's "decoded message length" text.
//!
//! The errors a program reacts to by what they name carry it as fields, not only in their message: an unknown
//! store ([`GatewayError::StoreNotFound`]: the store and the ones that exist) and a shard that cannot be served
//! ([`GatewayError::ShardUnavailable`]: store, shard, node and why). [`GatewayError::details`] gives those fields
//! as JSON, which REST puts in its error body next to the message.

use rvdb_core::CoreError;
use tonic::Code;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Invalid(#[from] CoreError),
    #[error("{0}")]
    InvalidArgument(String),
    /// A store that does not exist; `existing` lists the first [`LISTED_STORES`] of those that do (sorted) and
    /// `more` how many others there are.
    #[error("{}", store_not_found(store, existing, *more))]
    StoreNotFound { store: String, existing: Vec<String>, more: usize },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    LimitReached(String),
    /// A storage node's disk is full: it refuses writes (and serves reads) until space is freed.
    #[error("{0}")]
    InsufficientStorage(String),
    /// No replica of a shard could serve a call: `node` is the address tried (or several, comma-separated) and
    /// `reason` what happened there ("cannot be reached (…)", "did not answer before the deadline", …).
    #[error("shard {shard} of store '{store}' is unavailable: storage node {node} {reason}")]
    ShardUnavailable { store: String, shard: u32, node: String, reason: String },
    #[error("{0}")]
    Unavailable(String),
    /// A storage node, the backup directory or an embedding provider failed; the message says which.
    #[error("{0}")]
    Backend(String),
    #[error("cancelled by the client")]
    Cancelled,
}

/// How a storage node's disk-full refusal begins (`rvdb_node::NodeError::DiskFull`).
const DISK_FULL: &str = "the node's disk is full";

/// Stores an unknown-store error lists at most (an agent reads the list; a deployment may hold thousands).
pub const LISTED_STORES: usize = 20;

fn store_not_found(store: &str, existing: &[String], more: usize) -> String {
    if existing.is_empty() {
        format!("store '{store}' does not exist; there are no stores yet: create one with create_store")
    } else if more > 0 {
        format!(
            "store '{store}' does not exist; existing stores: {} and {more} more (list_stores)",
            existing.join(", ")
        )
    } else {
        format!("store '{store}' does not exist; existing stores: {}", existing.join(", "))
    }
}

impl GatewayError {
    /// `StoreNotFound` for `store`, given every store that exists (in order).
    pub fn store_not_found<'a>(store: &str, all: impl ExactSizeIterator<Item = &'a str>) -> Self {
        let total = all.len();
        let existing: Vec<String> = all.take(LISTED_STORES).map(str::to_string).collect();
        GatewayError::StoreNotFound { store: store.to_string(), more: total - existing.len(), existing }
    }

    /// Whether this says that something (a store, a backup, a file) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, GatewayError::StoreNotFound { .. } | GatewayError::NotFound(_))
    }

    /// The fields an error names, as JSON (`None` for errors that name nothing beyond their message).
    pub fn details(&self) -> Option<serde_json::Value> {
        match self {
            GatewayError::StoreNotFound { store, existing, more } => {
                Some(serde_json::json!({"store": store, "existing_stores": existing, "more_stores": more}))
            }
            GatewayError::ShardUnavailable { store, shard, node, reason } => {
                Some(serde_json::json!({"store": store, "shard": shard, "node": node, "reason": reason}))
            }
            _ => None,
        }
    }

    /// A node's gRPC status, keeping its message (nodes already phrase them for users).
    pub fn from_status(status: tonic::Status) -> Self {
        let msg = status.message().to_string();
        match status.code() {
            Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => GatewayError::InvalidArgument(msg),
            Code::NotFound => GatewayError::NotFound(msg),
            Code::AlreadyExists => GatewayError::AlreadyExists(msg),
            Code::Unavailable | Code::DeadlineExceeded => GatewayError::Unavailable(msg),
            Code::ResourceExhausted if msg.contains(DISK_FULL) => GatewayError::InsufficientStorage(msg),
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
            // tonic reports a broken connection as Unknown, or as Internal when HTTP/2 gave a reason (a reset
            // stream, GOAWAY with INTERNAL_ERROR); either way it happened on the way, not in the node.
            Code::Unknown | Code::Internal if local => format!("connection failed ({})", status.message()),
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

    /// `ShardUnavailable` for a shard that cannot be served by `node` (one address, or several joined by commas).
    pub fn shard_unavailable(store: &str, shard: u32, node: &str, reason: &str) -> Self {
        GatewayError::ShardUnavailable {
            store: store.to_string(),
            shard,
            node: node.to_string(),
            reason: reason.to_string(),
        }
    }

    /// A short machine-readable kind for structured error results.
    pub fn kind(&self) -> &'static str {
        match self {
            GatewayError::Invalid(_) | GatewayError::InvalidArgument(_) => "invalid_argument",
            GatewayError::StoreNotFound { .. } | GatewayError::NotFound(_) => "not_found",
            GatewayError::AlreadyExists(_) => "already_exists",
            GatewayError::LimitReached(_) => "limit_reached",
            GatewayError::InsufficientStorage(_) => "insufficient_storage",
            GatewayError::ShardUnavailable { .. } | GatewayError::Unavailable(_) => "unavailable",
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
        match &e {
            GatewayError::ShardUnavailable { store, shard, node, .. } => {
                assert_eq!((store.as_str(), *shard, node.as_str()), ("docs", 1, "http://127.0.0.1:7001"));
                let details = e.details().expect("details");
                assert_eq!(details["shard"], 1);
                assert_eq!(details["node"], "http://127.0.0.1:7001");
                e.to_string()
            }
            other => panic!("expected ShardUnavailable, got {other:?}"),
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
        // a local error tonic files as Internal (as it does HTTP/2 resets with a reason)
        let mut reset = tonic::Status::internal("h2 protocol error: stream no longer needed");
        reset.set_source(std::sync::Arc::new(std::io::Error::other("stream reset")));
        assert_eq!(expired.code(), Code::Cancelled);
        for (status, says) in [
            (broken, "connection failed (transport error)"),
            (timed_out, "did not answer before the deadline"),
            (refused, "cannot be reached (tcp connect error)"),
            (expired, "did not answer before the deadline"),
            (reset, "connection failed (h2 protocol error"),
            (tonic::Status::deadline_exceeded("deadline"), "did not answer before the deadline"),
            (tonic::Status::unavailable("store shard docs/1 is reloading; retry"), "is reloading"),
        ] {
            let msg = unavailable_message(GatewayError::from_replica(status, "docs", 1, node));
            assert!(msg.starts_with("shard 1 of store 'docs' is unavailable: storage node http://127.0.0.1:7001"));
            assert!(msg.contains(says), "{msg}");
        }
    }

    #[test]
    fn unknown_stores_name_the_store_and_at_most_twenty_others() {
        let none = GatewayError::store_not_found("docs", std::iter::empty());
        assert_eq!(
            none.to_string(),
            "store 'docs' does not exist; there are no stores yet: create one with create_store"
        );
        let names: Vec<String> = (0..25).map(|i| format!("s{i:02}")).collect();
        let many = GatewayError::store_not_found("docs", names.iter().map(String::as_str));
        let msg = many.to_string();
        assert!(msg.contains("s19 and 5 more (list_stores)") && !msg.contains("s20"), "{msg}");
        let d = many.details().expect("details");
        assert_eq!(
            (d["store"].as_str(), d["existing_stores"].as_array().map(Vec::len), d["more_stores"].as_u64()),
            (Some("docs"), Some(20), Some(5))
        );
        let few = GatewayError::store_not_found("docs", ["a", "b"].into_iter());
        assert_eq!(few.to_string(), "store 'docs' does not exist; existing stores: a, b");
        assert!(few.is_not_found() && few.kind() == "not_found");
    }

    #[test]
    fn statuses_a_node_sent_keep_their_meaning_and_hide_internal_limits() {
        let e = GatewayError::from_replica(tonic::Status::internal("disk"), "docs", 0, "http://n:1");
        assert!(matches!(e, GatewayError::Backend(_)), "an Internal the node sent is its own failure");
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
