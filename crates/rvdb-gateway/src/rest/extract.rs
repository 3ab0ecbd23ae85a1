//! Extractors for bodies, paths and queries. axum's own reject in plain text (and with 415 / 422); these answer
//! with [`ApiError`], naming the field at fault.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use rvdb_core::error::clip;
use serde::de::DeserializeOwned;

use super::MAX_BODY_BYTES;
use super::error::{ApiError, ApiResult, ErrorCode};

fn is_json(headers: &HeaderMap) -> bool {
    let Some(ct) = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else { return false };
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::PayloadTooLarge,
        format!("the request body is larger than the limit of {MAX_BODY_BYTES} bytes; send smaller batches"),
    )
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> ApiResult<(bool, Bytes)> {
    let json = is_json(req.headers());
    // A declared length over the limit is refused before a byte is read (the limit below catches chunked ones).
    let declared = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(too_large());
    }
    let bytes = Bytes::from_request(req, state).await.map_err(|r: BytesRejection| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::invalid(format!("cannot read the request body: {}", clip(&r.body_text())))
        }
    })?;
    Ok((json, bytes))
}

fn parse_json<T: DeserializeOwned>(json: bool, bytes: &[u8]) -> ApiResult<T> {
    if !json {
        return Err(ApiError::invalid("the request body must be JSON: send Content-Type: application/json"));
    }
    // axum's `Json` parser names the field at fault (`points[3].vector[1]: invalid type: …`).
    Json::<T>::from_bytes(bytes).map(|Json(v)| v).map_err(|rejection| {
        let text = rejection.body_text();
        let detail = text.split_once(": ").map_or(text.as_str(), |(_, detail)| detail);
        if detail.contains("number out of range") {
            // serde_json (float_roundtrip) refuses a number beyond f32 while parsing: say what the limit is
            return ApiError::invalid(format!(
                "invalid request body: {} (outside the range of a 32-bit float, about ±3.4e38: every vector \
                 component must be a finite f32)",
                clip(detail)
            ));
        }
        ApiError::invalid(format!("invalid request body: {}", clip(detail)))
    })
}

/// A required JSON body (`Content-Type: application/json`); unknown fields and wrong types are 400s.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let (json, bytes) = read_body(req, state).await?;
        parse_json(json, &bytes).map(Body)
    }
}

/// A JSON body that may be left out: no body or `null` = every field at its default.
pub struct OptionalBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> ApiResult<Self> {
        let (json, bytes) = read_body(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalBody(T::default()));
        }
        parse_json::<Option<T>>(json, &bytes).map(|v| OptionalBody(v.unwrap_or_default()))
    }
}

/// Path parameters (percent-decoded).
pub struct Param<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for Param<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Param(v))
            .map_err(|e| ApiError::invalid(format!("invalid path: {}", clip(&e.body_text()))))
    }
}

/// Query parameters.
pub struct QueryArgs<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryArgs<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> ApiResult<Self> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(v)| QueryArgs(v))
            .map_err(|e| ApiError::invalid(format!("invalid query: {}", clip(&e.body_text()))))
    }
}
