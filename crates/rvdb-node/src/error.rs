//! The node's error type and its single mapping to gRPC status codes.

use rvdb_core::CoreError;
use tonic::{Code, Status};

use crate::ShardKey;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Invalid(#[from] CoreError),
    #[error("points[{index}]: {source}")]
    InvalidPoint { index: usize, source: CoreError },
    #[error("{0}")]
    BadRequest(String),
    #[error("store shard {0} does not exist on this node")]
    ShardNotFound(ShardKey),
    #[error("store shard {0} already exists on this node")]
    ShardExists(ShardKey),
    #[error("store shard {key} failed while serving this request ({message}); it was reloaded from disk, retry")]
    ShardPanicked { key: ShardKey, message: String },
    #[error("store shard {0} is reloading; retry")]
    Reloading(ShardKey),
    #[error("storage error: {0}")]
    Storage(#[from] rocksdb::Error),
    /// A storage failure reported outside a `rocksdb::Error` (the column-family pool's C API calls).
    #[error("storage error: {0}")]
    StorageCall(String),
    #[error("file error: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "the node's disk is full: {free} bytes free on {path}, below the {reserve} bytes kept for the storage \
         engine; writes are refused until space is freed (reads are served)"
    )]
    DiskFull { path: String, free: u64, reserve: u64 },
    #[error("corrupt data in store shard {key}: {message}")]
    Corrupt { key: ShardKey, message: String },
    #[error("cannot encode {what}: {message}")]
    Encode { what: &'static str, message: String },
    #[error(
        "store shard {key}: this write was routed by a table of placement epoch {sent}, but the shard's replicas \
         changed at epoch {held}: refresh the routing table and send it again"
    )]
    StaleEpoch { key: ShardKey, held: u64, sent: u64 },
    #[error(
        "store shard {0}: this replica is being filled by a shard transfer and serves no reads yet; read another \
         replica"
    )]
    Filling(ShardKey),
}

impl NodeError {
    /// A failed RocksDB write: out of space (the reserve of [`crate::disk`] was not enough) is
    /// [`NodeError::DiskFull`], anything else a storage error.
    pub fn from_write(e: rocksdb::Error, disk: Option<&crate::disk::DiskGuard>) -> NodeError {
        let message = e.to_string();
        if message.contains("No space left") || message.contains("NoSpace") {
            let free = disk.and_then(|d| d.free_bytes().ok()).unwrap_or(0);
            let path = disk.map(|d| d.path().display().to_string()).unwrap_or_default();
            return NodeError::DiskFull { path, free, reserve: 0 };
        }
        NodeError::Storage(e)
    }
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        let code = match &e {
            NodeError::Invalid(_) | NodeError::InvalidPoint { .. } | NodeError::BadRequest(_) => Code::InvalidArgument,
            NodeError::ShardNotFound(_) => Code::NotFound,
            NodeError::ShardExists(_) => Code::AlreadyExists,
            NodeError::ShardPanicked { .. }
            | NodeError::Storage(_)
            | NodeError::StorageCall(_)
            | NodeError::Io(_)
            | NodeError::Encode { .. } => Code::Internal,
            NodeError::Reloading(_) | NodeError::Filling(_) => Code::Unavailable,
            NodeError::DiskFull { .. } => Code::ResourceExhausted,
            NodeError::Corrupt { .. } => Code::DataLoss,
            NodeError::StaleEpoch { held, .. } => {
                let mut status = Status::new(Code::FailedPrecondition, e.to_string());
                if let Ok(v) = held.to_string().parse() {
                    status.metadata_mut().insert(rvdb_proto::PLACEMENT_EPOCH_HEADER, v);
                }
                return status;
            }
        };
        Status::new(code, e.to_string())
    }
}
