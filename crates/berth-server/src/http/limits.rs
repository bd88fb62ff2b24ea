//! Limits on what a request may ask of the server, checked before any handler runs or
//! while a body is read:
//!
//! - the request target at most [`MAX_URI_BYTES`] (else `414`), the header section at
//!   most [`MAX_HEADER_BYTES`] (else `431`; hyper itself cuts off at twice that);
//! - a `Host` (and, behind a trusted proxy, `X-Forwarded-Host`/`-Proto`) that can be
//!   part of a URL (else `400`);
//! - bodies that must be held in memory (manifests, `/token` forms, `/api/v1` JSON)
//!   within their own limit (else `413`) and, together, within one [`BodyBudget`]:
//!   a crowd of large manifest pushes waits for room, or is told to retry (`429`).
//!
//! Refusals use the error shape of the API the request was for.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_core::ErrorCode;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::http::origin::RequestOrigin;
use crate::http::{ApiError, AppState, api};

/// Longest request target (path and query).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// Largest header section (names, values and their separators).
pub const MAX_HEADER_BYTES: usize = 32 * 1024;
/// Largest `/token` form or `/api/v1` JSON body.
pub const MAX_JSON_BODY: usize = 64 * 1024;
/// How long a body waits for room in the budget before the request is refused.
const BUDGET_WAIT: Duration = Duration::from_secs(10);
/// How much of an oversized body is read and discarded before answering `413`, so that
/// an ordinary client, still sending, reads the answer instead of a broken pipe.
const OVERSIZED_DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Which API a path belongs to, for the shape of a refusal.
fn is_account_api(path: &str) -> bool {
    path.starts_with("/api/")
}

fn refusal(path: &str, status: StatusCode, code: ErrorCode, message: String) -> Response {
    if is_account_api(path) {
        api::ApiFailure::new(status, message).into_response()
    } else {
        ApiError::new(code, message)
            .with_status(status)
            .into_response()
    }
}

/// The middleware in front of every route: size limits, then the request's origin.
pub async fn guard(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let target_len = parts.uri.path_and_query().map_or(0, |pq| pq.as_str().len());
    if target_len > MAX_URI_BYTES {
        return refusal(
            &path,
            StatusCode::URI_TOO_LONG,
            ErrorCode::SizeInvalid,
            format!("the request target is longer than {MAX_URI_BYTES} bytes"),
        );
    }
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if header_bytes > MAX_HEADER_BYTES {
        return refusal(
            &path,
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            ErrorCode::SizeInvalid,
            format!("the request headers are larger than {MAX_HEADER_BYTES} bytes"),
        );
    }
    match RequestOrigin::of(&parts, app.trusted_proxy) {
        Ok(origin) => {
            parts.extensions.insert(origin);
        }
        Err(e) => {
            return refusal(
                &path,
                StatusCode::BAD_REQUEST,
                ErrorCode::Unsupported,
                e.to_string(),
            );
        }
    }
    next.run(Request::from_parts(parts, body)).await
}

/// Why a body could not be read into memory.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the request body is larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("too many large requests are being read; retry shortly")]
    Busy,
    #[error("the request body failed: {0}")]
    Failed(String),
}

/// The memory all buffered request bodies may take together, in KiB permits.
pub struct BodyBudget {
    kib: Semaphore,
    total_kib: u32,
}

/// A body read into memory, holding its share of the budget until dropped.
pub struct BufferedBody<'a> {
    pub bytes: Bytes,
    _share: SemaphorePermit<'a>,
}

impl BodyBudget {
    pub fn new(total_bytes: usize) -> BodyBudget {
        let total_kib = u32::try_from(total_bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .max(1);
        BodyBudget {
            kib: Semaphore::new(total_kib as usize),
            total_kib,
        }
    }

    /// Reads a whole body of at most `limit` bytes (`declared`: its `Content-Length`),
    /// after reserving room for it (for a body of unknown length, room for `limit`).
    pub async fn read(
        &self,
        body: Body,
        limit: usize,
        declared: Option<u64>,
    ) -> Result<BufferedBody<'_>, BodyError> {
        let mut stream = body.into_data_stream();
        if declared.is_some_and(|len| len > limit as u64) {
            drain(stream, declared.unwrap_or(0)).await;
            return Err(BodyError::TooLarge { limit });
        }
        let reserve = declared.map_or(limit, |len| len as usize);
        let kib = u32::try_from(reserve.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .clamp(1, self.total_kib);
        let share = tokio::time::timeout(BUDGET_WAIT, self.kib.acquire_many(kib))
            .await
            .map_err(|_| BodyError::Busy)?
            .map_err(|_| BodyError::Busy)?;
        let mut bytes = BytesMut::with_capacity(reserve.min(limit));
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| BodyError::Failed(e.to_string()))?;
            if bytes.len() + chunk.len() > limit {
                drain(stream, 0).await;
                return Err(BodyError::TooLarge { limit });
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(BufferedBody {
            bytes: bytes.freeze(),
            _share: share,
        })
    }
}

/// Discards what is left of a body, unless it is (or turns out) larger than the drain
/// limit.
async fn drain(mut stream: axum::body::BodyDataStream, declared: u64) {
    if declared > OVERSIZED_DRAIN_LIMIT {
        return;
    }
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len() as u64;
        if seen > OVERSIZED_DRAIN_LIMIT {
            return;
        }
    }
}

/// The `Content-Length` a request declares.
pub fn declared_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

impl From<BodyError> for ApiError {
    fn from(e: BodyError) -> ApiError {
        let message = e.to_string();
        match e {
            BodyError::TooLarge { .. } => ApiError::new(ErrorCode::SizeInvalid, message)
                .with_status(StatusCode::PAYLOAD_TOO_LARGE),
            BodyError::Busy => ApiError::new(ErrorCode::TooManyRequests, message)
                .with_header(header::RETRY_AFTER, "1".into()),
            BodyError::Failed(_) => ApiError::new(ErrorCode::SizeInvalid, message),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn bodies_share_one_budget() {
        let budget = BodyBudget::new(8 * 1024);
        let first = budget
            .read(Body::from(vec![1u8; 6 * 1024]), 16 * 1024, Some(6 * 1024))
            .await
            .unwrap();
        assert_eq!(first.bytes.len(), 6 * 1024);
        // Room for 2 KiB more: a 4 KiB body waits, and gives up after BUDGET_WAIT.
        tokio::time::pause();
        let second = budget.read(Body::from(vec![2u8; 4096]), 16 * 1024, Some(4096));
        assert!(matches!(second.await, Err(BodyError::Busy)));
        drop(first);
        let third = budget.read(Body::from(vec![3u8; 4096]), 16 * 1024, Some(4096));
        assert_eq!(third.await.unwrap().bytes.len(), 4096);
    }

    #[tokio::test]
    async fn limits_hold_with_and_without_a_declared_length() {
        let budget = BodyBudget::new(1024 * 1024);
        let declared = budget.read(Body::from(vec![0u8; 10]), 5, Some(10)).await;
        assert!(matches!(declared, Err(BodyError::TooLarge { limit: 5 })));
        let undeclared = budget.read(Body::from(vec![0u8; 10]), 5, None).await;
        assert!(matches!(undeclared, Err(BodyError::TooLarge { limit: 5 })));
        let lying = budget.read(Body::from(vec![0u8; 10]), 100, Some(3)).await;
        assert_eq!(lying.unwrap().bytes.len(), 10, "hyper enforces lengths");
    }
}
