//! The one error shape of `/api/v1`: a status and `{"error": code, "message": …}`, the
//! code following from the status. No `WWW-Authenticate` on a `401`: that header would
//! make a browser prompt for Basic credentials and then send them with every request,
//! cross-site ones included.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_meta::{AccountRefusal, MetaError};
use serde_json::json;

use crate::accounts::{AccountError, SignInError};
use crate::http::json_response;
use crate::http::limits::BodyError;

#[derive(Debug)]
pub struct ApiFailure {
    pub status: StatusCode,
    pub message: String,
    /// Seconds to wait, for `429`.
    pub retry_after: Option<u64>,
}

pub type ApiResult = Result<Response, ApiFailure>;

impl ApiFailure {
    pub fn new(status: StatusCode, message: impl Into<String>) -> ApiFailure {
        ApiFailure {
            status,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn unauthorized() -> ApiFailure {
        ApiFailure::new(StatusCode::UNAUTHORIZED, "sign in first")
    }

    pub fn forbidden(why: &str) -> ApiFailure {
        ApiFailure::new(StatusCode::FORBIDDEN, why)
    }

    pub fn not_found(what: String) -> ApiFailure {
        ApiFailure::new(StatusCode::NOT_FOUND, what)
    }

    pub fn invalid(why: String) -> ApiFailure {
        ApiFailure::new(StatusCode::BAD_REQUEST, why)
    }

    pub fn method_not_allowed() -> ApiFailure {
        ApiFailure::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    }

    fn too_many(message: String, wait_seconds: u64) -> ApiFailure {
        ApiFailure {
            retry_after: Some(wait_seconds.max(1)),
            ..ApiFailure::new(StatusCode::TOO_MANY_REQUESTS, message)
        }
    }

    /// The machine-readable code of a status.
    fn code(&self) -> &'static str {
        match self.status {
            StatusCode::UNAUTHORIZED => "unauthorized",
            StatusCode::FORBIDDEN => "forbidden",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::CONFLICT => "conflict",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::TOO_MANY_REQUESTS => "too_many_requests",
            s if s.is_server_error() => "internal",
            _ => "invalid",
        }
    }

    fn internal(e: impl std::fmt::Display) -> ApiFailure {
        let id = uuid::Uuid::new_v4();
        tracing::error!(error_id = %id, error = %e, "api request failed");
        ApiFailure::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("internal server error (error id {id})"),
        )
    }
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.code(), "message": self.message });
        let mut response = json_response(self.status, body.to_string());
        if let Some(wait) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, wait.into());
        }
        response
    }
}

impl From<crate::error::RegistryError> for ApiFailure {
    fn from(e: crate::error::RegistryError) -> ApiFailure {
        match e {
            crate::error::RegistryError::ManifestUnknown => {
                ApiFailure::not_found("manifest unknown".into())
            }
            other => ApiFailure::internal(other),
        }
    }
}

impl From<MetaError> for ApiFailure {
    fn from(e: MetaError) -> ApiFailure {
        ApiFailure::internal(e)
    }
}

impl From<SignInError> for ApiFailure {
    fn from(e: SignInError) -> ApiFailure {
        let message = e.to_string();
        match e {
            SignInError::BadCredentials | SignInError::InvalidToken => {
                ApiFailure::new(StatusCode::UNAUTHORIZED, message)
            }
            SignInError::Locked(wait) => ApiFailure::too_many(message, wait.as_secs()),
            SignInError::Busy => ApiFailure::too_many(message, 1),
            SignInError::Store(e) => e.into(),
        }
    }
}

impl From<AccountError> for ApiFailure {
    fn from(e: AccountError) -> ApiFailure {
        let message = e.to_string();
        match e {
            AccountError::Refused(
                AccountRefusal::NameTaken(_) | AccountRefusal::NameRetired(_),
            ) => ApiFailure::new(StatusCode::CONFLICT, message),
            AccountError::Refused(
                AccountRefusal::UnknownUser(_) | AccountRefusal::UnknownOrg(_),
            )
            | AccountError::NotFound(_) => ApiFailure::not_found(message),
            AccountError::Refused(AccountRefusal::Store(e)) => e.into(),
            AccountError::Invalid(_) => ApiFailure::invalid(message),
            AccountError::Hash(_) => ApiFailure::internal(message),
        }
    }
}

impl From<BodyError> for ApiFailure {
    fn from(e: BodyError) -> ApiFailure {
        let message = e.to_string();
        match e {
            BodyError::TooLarge { .. } => ApiFailure::new(StatusCode::PAYLOAD_TOO_LARGE, message),
            BodyError::Busy => ApiFailure::too_many(message, 1),
            BodyError::Failed(_) => ApiFailure::invalid(message),
        }
    }
}
