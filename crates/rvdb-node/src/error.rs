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
    #[error("file error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt data in store shard {key}: {message}")]
    Corrupt { key: ShardKey, message: String },
    #[error("cannot encode {what}: {message}")]
    Encode { what: &'static str, message: String },
}

impl From<NodeError> for Status {
    fn from(e: NodeError) -> Status {
        let code = match &e {
            NodeError::Invalid(_) | NodeError::InvalidPoint { .. } | NodeError::BadRequest(_) => Code::InvalidArgument,
            NodeError::ShardNotFound(_) => Code::NotFound,
            NodeError::ShardExists(_) => Code::AlreadyExists,
            NodeError::ShardPanicked { .. } | NodeError::Storage(_) | NodeError::Io(_) | NodeError::Encode { .. } => {
                Code::Internal
            }
            NodeError::Reloading(_) => Code::Unavailable,
            NodeError::Corrupt { .. } => Code::DataLoss,
        };
        Status::new(code, e.to_string())
    }
}
