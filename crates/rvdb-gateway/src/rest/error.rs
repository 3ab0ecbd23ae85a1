//! The REST API's one error shape, `{"error": {"code", "message"}}`, and the mapping of the gateway's errors to
//! it (status and code), done once.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::GatewayError;

/// The machine-readable kind of an error: the same words MCP tool errors use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidArgument,
    NotFound,
    MethodNotAllowed,
    AlreadyExists,
    PayloadTooLarge,
    LimitReached,
    InsufficientStorage,
    Cancelled,
    BackendError,
    Unavailable,
    Unauthenticated,
    PermissionDenied,
}

/// What went wrong: `code` for programs, `message` for people (it names the field and what was expected), and
/// for an unknown store or an unavailable shard what the message names as fields (`store`, `existing_stores`,
/// `more_stores`; `store`, `shard`, `node`, `reason`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"error": {"code": "not_found", "message": "store 'docs' does not exist; there are no stores yet: create one with create_store"}}))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// An error answer: a status and the JSON body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: ErrorCode,
    message: String,
    details: Option<serde_json::Value>,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: None }
    }

    pub(super) fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument, message)
    }

    pub(super) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorCode::NotFound, message)
    }
}

/// `429` for a full deployment (`max_vector_stores`): it is the HTTP status of gRPC's `RESOURCE_EXHAUSTED`, which
/// the nodes and the manager send for it, and a 4xx says the caller can fix it (delete a store); a 5xx such as
/// 507 would blame the server. A node whose disk is full is the server's condition, so that is `507`
/// (Insufficient Storage). `499` (client closed request) for cancelled operations, as gRPC gateways map it.
impl From<GatewayError> for ApiError {
    fn from(e: GatewayError) -> Self {
        let (status, code) = match &e {
            GatewayError::Invalid(_) | GatewayError::InvalidArgument(_) => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidArgument)
            }
            GatewayError::StoreNotFound { .. } | GatewayError::NotFound(_) => {
                (StatusCode::NOT_FOUND, ErrorCode::NotFound)
            }
            GatewayError::AlreadyExists(_) => (StatusCode::CONFLICT, ErrorCode::AlreadyExists),
            GatewayError::LimitReached(_) => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::LimitReached),
            GatewayError::InsufficientStorage(_) => (StatusCode::INSUFFICIENT_STORAGE, ErrorCode::InsufficientStorage),
            GatewayError::ShardUnavailable { .. } | GatewayError::Unavailable(_) => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
            GatewayError::Backend(_) => (StatusCode::BAD_GATEWAY, ErrorCode::BackendError),
            GatewayError::Cancelled => {
                (StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST), ErrorCode::Cancelled)
            }
        };
        ApiError { details: e.details(), ..ApiError::new(status, code, e.to_string()) }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "REST request failed");
        }
        let body = ErrorBody { error: ErrorDetail { code: self.code, message: self.message, details: self.details } };
        (self.status, Json(body)).into_response()
    }
}

pub(super) type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    #[test]
    fn error_codes_are_the_gateway_kinds() {
        let all = [
            GatewayError::InvalidArgument("x".into()),
            GatewayError::Invalid(rvdb_core::CoreError::InvalidK(0)),
            GatewayError::NotFound("x".into()),
            GatewayError::store_not_found("x", ["a"].into_iter()),
            GatewayError::shard_unavailable("x", 0, "http://n:1", "is down"),
            GatewayError::AlreadyExists("x".into()),
            GatewayError::LimitReached("x".into()),
            GatewayError::InsufficientStorage("x".into()),
            GatewayError::Unavailable("x".into()),
            GatewayError::Backend("x".into()),
            GatewayError::Cancelled,
        ];
        for e in all {
            let kind = e.kind();
            let api = ApiError::from(e);
            assert_eq!(serde_json::to_value(api.code).ok(), Some(Value::from(kind)));
            assert!(api.status.is_client_error() || api.status.is_server_error());
        }
    }
}
