//! The token endpoint of Docker's token-auth flow (distribution `docs/spec/auth/`):
//!
//! - `GET /token?service=…&scope=…[&offline_token=true]`, with Basic credentials (a
//!   password or an access token) or none (an anonymous token);
//! - `POST /token` with the OAuth2 `password` and `refresh_token` grants, which is how
//!   `docker login`'s identity token is traded for access tokens.
//!
//! What is granted is the intersection of what was asked and what the caller may do;
//! a partial grant is never an error.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_auth::{Credential, Principal, Scope};
use berth_core::ErrorCode;
use berth_core::endpoint::{all_values, first_value, query_pairs};
use serde_json::json;

use crate::accounts::{Accounts, IssuedTokens, SignInError};
use crate::http::auth::{basic_credentials, client_address, locked_out};
use crate::http::{ApiError, AppState, json_response};

/// Largest OAuth2 form accepted.
const MAX_FORM: usize = 64 * 1024;

fn oauth_error(status: StatusCode, code: ErrorCode, error: &str, description: &str) -> Response {
    // Both shapes: Docker's clients read the OCI envelope, OAuth2 clients `error`.
    let body = json!({
        "errors": [{ "code": code.as_str(), "message": description, "detail": null }],
        "error": error,
        "error_description": description,
    });
    let mut response = json_response(status, body.to_string());
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            axum::http::HeaderValue::from_static("Basic realm=\"berth\""),
        );
    }
    response
}

fn bad_credentials() -> Response {
    oauth_error(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "invalid_grant",
        "incorrect username or password",
    )
}

fn invalid_request(description: &str) -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        ErrorCode::Unsupported,
        "invalid_request",
        description,
    )
}

fn server_error(e: impl Into<crate::error::RegistryError>) -> Response {
    ApiError::from(e.into()).into_response()
}

/// The granted access as a space-separated scope list (OAuth2's `scope`).
fn granted_scope(tokens: &IssuedTokens) -> String {
    tokens
        .granted
        .iter()
        .map(|g| format!("{}:{}:{}", g.kind, g.name, g.actions.join(",")))
        .collect::<Vec<_>>()
        .join(" ")
}

fn issued(tokens: IssuedTokens) -> Response {
    let issued_at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(tokens.issued_at.max(0) as u64),
    );
    let mut body = json!({
        "token": tokens.access_token,
        "access_token": tokens.access_token,
        "expires_in": tokens.expires_in,
        "issued_at": issued_at.to_string(),
        "scope": granted_scope(&tokens),
    });
    if let Some(refresh) = tokens.refresh_token {
        body["refresh_token"] = refresh.into();
    }
    let mut response = json_response(StatusCode::OK, body.to_string());
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    response
}

fn service_matches(accounts: &Accounts, service: Option<&str>) -> bool {
    service.is_none_or(|s| s.is_empty() || s == accounts.service())
}

pub async fn token(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    match parts.method.as_str() {
        "GET" => get_token(&app.accounts, &parts).await,
        "POST" => match axum::body::to_bytes(body, MAX_FORM).await {
            Ok(form) => post_token(&app.accounts, &parts, &form).await,
            Err(_) => invalid_request("the form is too large or was cut off"),
        },
        _ => ApiError::new(ErrorCode::Unsupported, "use GET or POST")
            .with_status(StatusCode::METHOD_NOT_ALLOWED)
            .into_response(),
    }
}

async fn sign_in(
    accounts: &Accounts,
    parts: &Parts,
    user: &str,
    password: &str,
) -> Result<(Principal, Credential), Response> {
    match accounts
        .sign_in(user, password, &client_address(accounts, parts))
        .await
    {
        Ok(found) => Ok(found),
        Err(SignInError::BadCredentials) => Err(bad_credentials()),
        Err(SignInError::Locked(wait)) => Err(locked_out(wait).into_response()),
        Err(SignInError::Store(e)) => Err(server_error(e)),
    }
}

async fn get_token(accounts: &Accounts, parts: &Parts) -> Response {
    let query = query_pairs(parts.uri.query());
    let param = |key: &str| first_value(&query, key);
    if !service_matches(accounts, param("service")) {
        return invalid_request("unknown service");
    }
    let scopes = Scope::parse_all(all_values(&query, "scope"));
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let (principal, credential) = match authorization {
        None => (Principal::anonymous(), None),
        Some(value) => match basic_credentials(value) {
            Some((user, password)) => match sign_in(accounts, parts, &user, &password).await {
                Ok((principal, credential)) => (principal, Some(credential)),
                Err(refused) => return refused,
            },
            None => return bad_credentials(),
        },
    };
    let want_refresh = param("offline_token") == Some("true");
    match accounts
        .issue(&principal, credential.as_ref(), &scopes, want_refresh)
        .await
    {
        Ok(tokens) => issued(tokens),
        Err(e) => server_error(crate::error::RegistryError::internal(e)),
    }
}

async fn post_token(accounts: &Accounts, parts: &Parts, form: &[u8]) -> Response {
    let fields: Vec<(String, String)> = form_urlencoded::parse(form).into_owned().collect();
    let field = |key: &str| first_value(&fields, key);
    if !service_matches(accounts, field("service")) {
        return invalid_request("unknown service");
    }
    let scopes = Scope::parse_all(all_values(&fields, "scope"));
    let (principal, credential, want_refresh) = match field("grant_type") {
        Some("password") => {
            let (Some(user), Some(password)) = (field("username"), field("password")) else {
                return invalid_request("the password grant needs username and password");
            };
            match sign_in(accounts, parts, user, password).await {
                Ok((principal, credential)) => (
                    principal,
                    credential,
                    field("access_type") == Some("offline"),
                ),
                Err(refused) => return refused,
            }
        }
        Some("refresh_token") => {
            let Some(refresh) = field("refresh_token") else {
                return invalid_request("the refresh_token grant needs refresh_token");
            };
            let signer = match accounts.signer().await {
                Ok(signer) => signer,
                Err(e) => return server_error(e),
            };
            let Ok(claims) = signer.verify_refresh(refresh) else {
                return bad_credentials();
            };
            match accounts.principal_for_refresh(&claims).await {
                Ok(Some((principal, credential))) => (principal, credential, false),
                Ok(None) => return bad_credentials(),
                Err(e) => return server_error(e),
            }
        }
        _ => return invalid_request("grant_type must be password or refresh_token"),
    };
    match accounts
        .issue(&principal, Some(&credential), &scopes, want_refresh)
        .await
    {
        Ok(tokens) => issued(tokens),
        Err(e) => server_error(crate::error::RegistryError::internal(e)),
    }
}
