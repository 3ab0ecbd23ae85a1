//! The manager's error type. Mapped once to gRPC statuses for its API ([`crate::service`]); callers in the
//! same process (`rvdb serve`'s gateway) reach the manager through that API too, so they see the same codes.

#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// `max_vector_stores` reached.
    #[error("{0}")]
    LimitReached(String),
    /// Too few live storage nodes for what was asked (a replication factor).
    #[error("{0}")]
    NotEnoughNodes(String),
    /// A node (or gateway) of another cluster: this manager's catalog is not the one it joined.
    #[error("{0}")]
    WrongCluster(String),
    /// Work given up because the world changed under it (a node restarted during its catch-up), or cancelled.
    #[error("{0}")]
    Aborted(String),
    /// Refused in the state things are in (a reshard that has switched cannot be cancelled).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The catalog's RocksDB, or a record that cannot be encoded or decoded.
    #[error("manager storage error: {0}")]
    Storage(String),
    /// A storage node refused or failed a command; `context` says what the manager was doing. The node's
    /// status is kept whole: its code is what the manager's caller gets.
    #[error("{context}: {}", .status.message())]
    Node { context: String, status: tonic::Status },
}

impl From<tonic::Status> for ManagerError {
    fn from(status: tonic::Status) -> Self {
        ManagerError::Node { context: "a storage node answered".into(), status }
    }
}

impl From<ManagerError> for tonic::Status {
    fn from(e: ManagerError) -> Self {
        use tonic::Status;
        let message = e.to_string();
        match e {
            ManagerError::InvalidArgument(_) => Status::invalid_argument(message),
            ManagerError::NotFound(_) => Status::not_found(message),
            ManagerError::AlreadyExists(_) => Status::already_exists(message),
            ManagerError::LimitReached(_) => Status::resource_exhausted(message),
            ManagerError::NotEnoughNodes(_) | ManagerError::WrongCluster(_) | ManagerError::FailedPrecondition(_) => {
                Status::failed_precondition(message)
            }
            ManagerError::Aborted(_) => Status::aborted(message),
            ManagerError::Storage(_) => Status::internal(message),
            ManagerError::Node { status, .. } => Status::new(status.code(), message),
        }
    }
}

pub type Result<T> = std::result::Result<T, ManagerError>;
