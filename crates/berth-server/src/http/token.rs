//! The token endpoint of Docker's token-auth flow (distribution `docs/spec/auth/`):
//!
//! - `GET /token?service=…&scope=…[&offline_token=true]`, with Basic credentials (a
//!   password or an access token), `Bearer <access token>`, or none (an anonymous
//!   token);
//! - `POST /token` with the OAuth2 `password` and `refresh_token` grants, which is how
//!   `docker login`'s identity token is traded for access tokens.
//!
//! What is granted is the intersection of what was asked and what the caller may do;
//! a partial grant is never an error. Errors are the registry API's envelope
//! ([`ApiError`]) with the OAuth2 `error` field added, which both kinds of client read.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_auth::credentials::{Presented, parse_authorization};
use berth_auth::token_request::{
    TokenGrant, TokenRequest, TokenRequestError, parse_token_form, parse_token_query,
};
use berth_auth::{Credential, Principal};
use berth_core::ErrorCode;
use serde_json::json;

use crate::accounts::{Accounts, Caller, IssuedTokens, SignInError};
use crate::http::auth::sign_in_refusal;
use crate::http::limits::{MAX_JSON_BODY, declared_length};
use crate::http::origin::RequestOrigin;
use crate::http::{ApiError, AppState, json_response};

fn bad_credentials() -> ApiError {
    ApiError::new(ErrorCode::Unauthorized, "incorrect username or password")
        .with_oauth_error("invalid_grant")
}

fn invalid_request(description: impl Into<String>) -> ApiError {
    ApiError::new(ErrorCode::Unsupported, description)
        .with_status(StatusCode::BAD_REQUEST)
        .with_oauth_error("invalid_request")
}

fn caller_parts(caller: Caller) -> (Principal, Option<Credential>) {
    (caller.principal, caller.credential)
}

fn refused(e: SignInError) -> ApiError {
    match e {
        SignInError::BadCredentials | SignInError::InvalidToken => bad_credentials(),
        other => sign_in_refusal(other),
    }
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

pub async fn token(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let result = async {
        let origin = parts
            .extensions
            .get::<RequestOrigin>()
            .ok_or_else(|| invalid_request("no request origin"))?;
        let parsed = match parts.method.as_str() {
            "GET" => parse_token_query(parts.uri.query().unwrap_or_default()),
            "POST" => {
                let declared = declared_length(&parts.headers);
                let form = app.body_budget.read(body, MAX_JSON_BODY, declared).await?;
                parse_token_form(&form.bytes)
            }
            _ => {
                return Err(ApiError::new(ErrorCode::Unsupported, "use GET or POST")
                    .with_status(StatusCode::METHOD_NOT_ALLOWED));
            }
        };
        let request = parsed.map_err(|e| match e {
            TokenRequestError::TooLarge => ApiError::new(ErrorCode::SizeInvalid, e.to_string())
                .with_status(StatusCode::PAYLOAD_TOO_LARGE),
            _ => invalid_request(e.to_string()),
        })?;
        grant(&app.accounts, &parts, origin, request).await
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

async fn grant(
    accounts: &Accounts,
    parts: &Parts,
    origin: &RequestOrigin,
    request: TokenRequest,
) -> Result<Response, ApiError> {
    if request
        .service
        .as_deref()
        .is_some_and(|s| !s.is_empty() && s != accounts.service())
    {
        return Err(invalid_request("unknown service"));
    }
    let signed_in: Option<(Principal, Option<Credential>)> = match &request.grant {
        TokenGrant::Header => match parts.headers.get(header::AUTHORIZATION) {
            None => None,
            Some(value) => match parse_authorization(value.as_bytes()) {
                // A token from this endpoint is not traded for another.
                Ok(Presented::Jwt(_)) | Err(_) => return Err(bad_credentials()),
                Ok(presented) => Some(caller_parts(
                    accounts
                        .authenticate(&presented, &origin.client)
                        .await
                        .map_err(refused)?,
                )),
            },
        },
        TokenGrant::Password { username, password } => Some(caller_parts(
            accounts
                .sign_in(username, password, &origin.client)
                .await
                .map_err(refused)?,
        )),
        TokenGrant::RefreshToken(refresh) => {
            let signer = accounts.signer().await.map_err(ApiError::internal)?;
            let claims = signer
                .verify_refresh(refresh)
                .map_err(|_| bad_credentials())?;
            let (principal, credential) = accounts
                .principal_for_refresh(&claims)
                .await
                .map_err(ApiError::internal)?
                .ok_or_else(bad_credentials)?;
            Some((principal, Some(credential)))
        }
    };
    // A user's credentials traded here (`docker login`, and each client session after
    // it) are a sign-in; a refresh token is the same sign-in continued.
    let signed_in_now = match (&request.grant, &signed_in) {
        (TokenGrant::RefreshToken(_), _) | (_, None) => None,
        (_, Some((principal, _))) => principal.user.clone(),
    };
    let (principal, credential) = signed_in.unwrap_or_else(|| (Principal::anonymous(), None));
    let tokens = accounts
        .issue(
            &principal,
            credential.as_ref(),
            &request.scopes,
            request.offline,
        )
        .await
        .map_err(ApiError::internal)?;
    let mut response = issued(tokens);
    if let Some(user) = signed_in_now {
        let detail = serde_json::json!({ "via": "/token", "offline": request.offline });
        let event = crate::ops::audit::event(&user, &origin.client, "sign-in", None, detail);
        crate::ops::audit::attach(&mut response, event);
    }
    Ok(response)
}
