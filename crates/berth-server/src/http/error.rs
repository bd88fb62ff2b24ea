//! The one place registry-API errors (`/v2/`, `/token`) become HTTP: status, OCI error
//! code, JSON envelope.

use axum::body::Body;
use axum::http::{HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::{DigestError, EndpointError, ErrorCode, NameError};

use crate::error::RegistryError;
use crate::http::upload_range;

/// An error as the client will see it.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: ErrorCode,
    pub message: String,
    /// The `detail` of the error body (`null` when absent).
    pub detail: Option<serde_json::Value>,
    pub headers: Vec<(HeaderName, String)>,
    /// The OAuth2 `error` code, for the token endpoint's OAuth2 clients.
    pub oauth_error: Option<&'static str>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        let status =
            StatusCode::from_u16(code.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        ApiError {
            status,
            code,
            message: message.into(),
            detail: None,
            headers: Vec::new(),
            oauth_error: None,
        }
    }

    /// A fault of the server: logged with an error id, sent as `UNKNOWN` without details.
    pub fn internal(cause: impl std::fmt::Display) -> ApiError {
        let id = uuid::Uuid::new_v4();
        tracing::error!(error_id = %id, error = %cause, "request failed");
        ApiError::new(
            ErrorCode::Unknown,
            format!("internal server error (error id {id})"),
        )
    }

    pub fn with_oauth_error(mut self, error: &'static str) -> ApiError {
        self.oauth_error = Some(error);
        self
    }

    pub fn with_detail(mut self, detail: serde_json::Value) -> ApiError {
        self.detail = Some(detail);
        self
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_message(mut self, message: impl Into<String>) -> ApiError {
        self.message = message.into();
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: String) -> ApiError {
        self.headers.push((name, value));
        self
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> ApiError {
        let message = e.to_string();
        match e {
            RegistryError::BlobUnknown(_) => ApiError::new(ErrorCode::BlobUnknown, message),
            RegistryError::UploadUnknown => ApiError::new(ErrorCode::BlobUploadUnknown, message),
            RegistryError::UploadOutOfOrder { offset, .. } => {
                ApiError::new(ErrorCode::BlobUploadInvalid, message)
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_header(header::RANGE, upload_range(offset))
            }
            RegistryError::UploadInvalid(_) => ApiError::new(ErrorCode::BlobUploadInvalid, message),
            RegistryError::DigestInvalid(_) => ApiError::new(ErrorCode::DigestInvalid, message),
            RegistryError::Unsupported(_) => {
                ApiError::new(ErrorCode::Unsupported, message).with_status(StatusCode::BAD_REQUEST)
            }
            RegistryError::SizeInvalid(_) => ApiError::new(ErrorCode::SizeInvalid, message),
            RegistryError::ManifestInvalid(_) => ApiError::new(ErrorCode::ManifestInvalid, message),
            RegistryError::ManifestUnknown => ApiError::new(ErrorCode::ManifestUnknown, message),
            RegistryError::ManifestBlobUnknown(_) => {
                ApiError::new(ErrorCode::ManifestBlobUnknown, message)
            }
            RegistryError::ManifestTooLarge { .. } => {
                ApiError::new(ErrorCode::SizeInvalid, message)
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
            }
            RegistryError::NameUnknown(_) => ApiError::new(ErrorCode::NameUnknown, message),
            RegistryError::TooManyUploads { .. } => {
                ApiError::new(ErrorCode::TooManyRequests, message)
            }
            RegistryError::Upstream(e) if e.is_rate_limit() => {
                ApiError::new(ErrorCode::TooManyRequests, message)
            }
            RegistryError::Upstream(_) => ApiError::new(ErrorCode::Unavailable, message),
            RegistryError::ReadOnlyMirror(..) => ApiError::new(ErrorCode::Denied, message),
            RegistryError::RangeNotSatisfiable { size } => {
                ApiError::new(ErrorCode::SizeInvalid, message)
                    .with_status(StatusCode::RANGE_NOT_SATISFIABLE)
                    .with_header(header::CONTENT_RANGE, format!("bytes */{size}"))
            }
            RegistryError::TagImmutable { .. }
            | RegistryError::NotGolden(_)
            | RegistryError::Vulnerable(_)
            | RegistryError::QuotaExceeded { .. } => ApiError::new(ErrorCode::Denied, message),
            RegistryError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<DigestError> for ApiError {
    fn from(e: DigestError) -> ApiError {
        match e {
            DigestError::Invalid(_) => ApiError::new(ErrorCode::DigestInvalid, e.to_string()),
            DigestError::Unsupported(_) => ApiError::new(ErrorCode::Unsupported, e.to_string())
                .with_status(StatusCode::BAD_REQUEST),
        }
    }
}

impl From<EndpointError> for ApiError {
    fn from(e: EndpointError) -> ApiError {
        let message = e.to_string();
        match e {
            EndpointError::NotFound => {
                ApiError::new(ErrorCode::Unsupported, message).with_status(StatusCode::NOT_FOUND)
            }
            EndpointError::MethodNotAllowed => ApiError::new(ErrorCode::Unsupported, message),
            EndpointError::UploadUnknown => ApiError::new(ErrorCode::BlobUploadUnknown, message),
            EndpointError::Name(NameError::InvalidName(..)) => {
                ApiError::new(ErrorCode::NameInvalid, message)
            }
            EndpointError::Name(NameError::InvalidTag(_)) => {
                ApiError::new(ErrorCode::ManifestInvalid, message)
            }
            EndpointError::Name(NameError::Digest(d)) => d.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = serde_json::json!({
            "errors": [{ "code": self.code.as_str(), "message": self.message, "detail": self.detail }]
        });
        if let Some(error) = self.oauth_error {
            body["error"] = error.into();
            body["error_description"] = self.message.into();
        }
        let mut response = Response::new(Body::from(body.to_string()));
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::try_from(value) {
                headers.append(name, value);
            }
        }
        response
    }
}
