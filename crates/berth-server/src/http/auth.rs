//! The gate in front of `/v2/`: who is calling, and may they do what the endpoint does.
//!
//! Credentials come as a bearer JWT from `/token` (what docker, containerd, podman and
//! skopeo do after a `401` challenge), as Basic credentials sent straight to `/v2/`
//! (simple clients, the conformance suite), or as `Bearer <access token>`. Without any,
//! a request may still pull public repositories.
//!
//! Refusals follow Distribution and Docker Hub so clients say the right thing:
//! - `401` + `WWW-Authenticate: Bearer realm=…,service=…,scope=…` when a (new) token
//!   could help: no credentials, or a token that lacks a scope its holder could get;
//! - `403 DENIED` when a signed-in caller may not do it at all;
//! - a private repository answers exactly like a missing one.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use base64::Engine as _;
use berth_auth::{AccessClaims, Principal};
use berth_core::{Actions, Endpoint, ErrorCode, RepoName};
use berth_meta::Viewer;

use crate::accounts::{Accounts, SignInError};
use crate::http::ApiError;

/// A caller whose credentials checked out.
pub struct Caller {
    pub principal: Principal,
    /// The claims of the bearer JWT the request came with, if that is how.
    pub claims: Option<Box<AccessClaims>>,
}

/// What a handler may rely on about the caller.
pub enum Access {
    /// `--open`: no authentication at all.
    Open,
    Checked {
        accounts: Arc<Accounts>,
        caller: Option<Caller>,
    },
}

impl Access {
    /// Whether the caller may pull `repo` (a mount's source). The caller's rights
    /// decide, not the token in hand: Docker asks for the source's scope, but other
    /// clients (oci-client) ask only for the target's.
    pub async fn may_pull(&self, repo: &RepoName) -> Result<bool, ApiError> {
        match self {
            Access::Open => Ok(true),
            Access::Checked { accounts, caller } => {
                let anonymous = Principal::anonymous();
                let principal = caller.as_ref().map_or(&anonymous, |c| &c.principal);
                Ok(rights(accounts, principal, repo)
                    .await?
                    .contains(Actions::PULL))
            }
        }
    }

    /// Whether the caller may mount a blob without naming where it comes from, which
    /// would reveal blobs of repositories they cannot read: only with no auth, or as an
    /// administrator.
    pub fn may_mount_from_anywhere(&self) -> bool {
        match self {
            Access::Open => true,
            Access::Checked { caller, .. } => caller.as_ref().is_some_and(|c| c.principal.admin),
        }
    }

    pub fn viewer(&self) -> Viewer<'_> {
        match self {
            Access::Open => Viewer::All,
            Access::Checked { caller: None, .. } => Viewer::Anonymous,
            Access::Checked {
                caller: Some(caller),
                ..
            } => Accounts::viewer(&caller.principal),
        }
    }
}

async fn rights(
    accounts: &Accounts,
    principal: &Principal,
    repo: &RepoName,
) -> Result<Actions, ApiError> {
    accounts
        .rights(principal, repo)
        .await
        .map_err(|e| crate::error::RegistryError::from(e).into())
}

/// What an endpoint needs.
enum Need<'a> {
    /// `/v2/`: any valid credentials, even an anonymous token.
    SignedIn,
    Catalog,
    Repository {
        name: &'a RepoName,
        action: Actions,
        /// The actions to ask for in a challenge (push asks for pull too, as clients do).
        scope: &'static str,
    },
}

fn need(endpoint: &Endpoint) -> Need<'_> {
    let pull = |name| Need::Repository {
        name,
        action: Actions::PULL,
        scope: "pull",
    };
    let push = |name| Need::Repository {
        name,
        action: Actions::PUSH,
        scope: "pull,push",
    };
    let delete = |name| Need::Repository {
        name,
        action: Actions::DELETE,
        scope: "delete",
    };
    match endpoint {
        Endpoint::ApiVersion => Need::SignedIn,
        Endpoint::Catalog => Need::Catalog,
        Endpoint::ListTags { name }
        | Endpoint::GetManifest { name, .. }
        | Endpoint::GetBlob { name, .. }
        | Endpoint::Referrers { name, .. } => pull(name),
        Endpoint::PutManifest { name, .. }
        | Endpoint::StartUpload { name }
        | Endpoint::UploadStatus { name, .. }
        | Endpoint::PatchUpload { name, .. }
        | Endpoint::FinishUpload { name, .. }
        | Endpoint::CancelUpload { name, .. } => push(name),
        Endpoint::DeleteManifest { name, .. } | Endpoint::DeleteBlob { name, .. } => delete(name),
    }
}

/// The client's address, for failed-login limits: the peer, or behind a trusted proxy
/// the last `X-Forwarded-For` entry (the one the proxy appended; earlier ones are the
/// client's to invent). An IPv6 client is keyed by its /64, which it can vary freely.
pub fn client_address(accounts: &Accounts, parts: &Parts) -> String {
    let forwarded = accounts
        .trusts_forwarded_for()
        .then(|| {
            parts
                .headers
                .get_all("x-forwarded-for")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(','))
                .next_back()
                .and_then(|last| last.trim().parse::<IpAddr>().ok())
        })
        .flatten();
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    match forwarded.or(peer) {
        Some(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Some(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map_or_else(String::new, |v4| v4.to_string()),
        Some(ip) => ip.to_string(),
        None => "unknown".to_owned(),
    }
}

/// The token realm: configured, or this server as the client reached it (through a
/// TLS-terminating proxy, as the proxy's `X-Forwarded-*` headers say).
pub fn realm(accounts: &Accounts, headers: &HeaderMap) -> String {
    if let Some(realm) = accounts.configured_realm() {
        return realm.to_owned();
    }
    let first = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    let proto = first("x-forwarded-proto").unwrap_or("http");
    let host = first("x-forwarded-host")
        .or_else(|| first(header::HOST.as_str()))
        .unwrap_or("localhost");
    format!("{proto}://{host}/token")
}

/// The `detail` Distribution gives with refusals: the access asked for, one entry per
/// action. Docker's client needs a detail: an error without one (and with the code's
/// stock message) it reads as a bare code, and retries a refused layer for a minute.
fn access_detail(scope: &str) -> serde_json::Value {
    let mut parts = scope.splitn(2, ':');
    let kind = parts.next().unwrap_or_default();
    let rest = parts.next().unwrap_or_default();
    let (name, actions) = rest.rsplit_once(':').unwrap_or((rest, ""));
    actions
        .split(',')
        .map(|action| {
            serde_json::json!({ "Type": kind, "Class": "", "Name": name, "Action": action })
        })
        .collect::<Vec<_>>()
        .into()
}

fn challenge(
    accounts: &Accounts,
    headers: &HeaderMap,
    scope: Option<String>,
    error: Option<&str>,
) -> ApiError {
    let mut value = format!(
        "Bearer realm=\"{}\",service=\"{}\"",
        realm(accounts, headers),
        accounts.service()
    );
    if let Some(scope) = &scope {
        value.push_str(&format!(",scope=\"{scope}\""));
    }
    if let Some(error) = error {
        value.push_str(&format!(",error=\"{error}\""));
    }
    let message = match error {
        Some("invalid_token") => "the bearer token is invalid or has expired",
        _ => "authentication required",
    };
    let mut refusal = ApiError::new(ErrorCode::Unauthorized, message)
        .with_header(header::WWW_AUTHENTICATE, value);
    if let Some(scope) = &scope {
        refusal = refusal.with_detail(access_detail(scope));
    }
    refusal
}

/// `403 DENIED`, with the RFC 6750 `insufficient_scope` challenge: a `HEAD` answer has
/// no body, and the header is how Docker's client then knows the refusal is final.
fn denied(accounts: &Accounts, headers: &HeaderMap, scope: String) -> ApiError {
    let challenge = challenge(accounts, headers, Some(scope), Some("insufficient_scope"));
    let mut error = ApiError::new(
        ErrorCode::Denied,
        "requested access to the resource is denied",
    );
    error.detail = challenge.detail;
    error.headers = challenge.headers;
    error
}

pub fn locked_out(wait: std::time::Duration) -> ApiError {
    ApiError::new(
        ErrorCode::TooManyRequests,
        "too many failed sign-ins; try again later",
    )
    .with_status(StatusCode::TOO_MANY_REQUESTS)
    .with_header(header::RETRY_AFTER, wait.as_secs().max(1).to_string())
}

/// Basic credentials from an `Authorization` value.
pub fn basic_credentials(value: &str) -> Option<(String, String)> {
    let encoded = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Establishes the caller, if any credentials came. Bad credentials are refused here,
/// never treated as anonymous.
pub async fn authenticate(accounts: &Accounts, parts: &Parts) -> Result<Option<Caller>, ApiError> {
    let Some(value) = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return Ok(None);
    };
    let store_error =
        |e: berth_meta::MetaError| ApiError::from(crate::error::RegistryError::from(e));
    if let Some((user, password)) = basic_credentials(value) {
        return match accounts
            .sign_in(&user, &password, &client_address(accounts, parts))
            .await
        {
            Ok((principal, _)) => Ok(Some(Caller {
                principal,
                claims: None,
            })),
            Err(SignInError::BadCredentials) => {
                Err(challenge(accounts, &parts.headers, None, None)
                    .with_message("incorrect username or password"))
            }
            Err(SignInError::Locked(wait)) => Err(locked_out(wait)),
            Err(SignInError::Store(e)) => Err(store_error(e)),
        };
    }
    let bearer = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .map(str::trim);
    let Some(bearer) = bearer else {
        return Err(challenge(accounts, &parts.headers, None, None));
    };
    if berth_auth::secret::looks_like_token(bearer) {
        return match accounts
            .sign_in_with_token(bearer)
            .await
            .map_err(store_error)?
        {
            Some((principal, _)) => Ok(Some(Caller {
                principal,
                claims: None,
            })),
            None => Err(challenge(
                accounts,
                &parts.headers,
                None,
                Some("invalid_token"),
            )),
        };
    }
    let invalid = || challenge(accounts, &parts.headers, None, Some("invalid_token"));
    let claims = accounts
        .signer()
        .await
        .map_err(store_error)?
        .verify_access(bearer)
        .map_err(|_| invalid())?;
    match accounts
        .principal_for_access(&claims)
        .await
        .map_err(store_error)?
    {
        Some(principal) => Ok(Some(Caller {
            principal,
            claims: Some(Box::new(claims)),
        })),
        None => Err(invalid()),
    }
}

/// Admits a request to `endpoint`, or says why not.
pub async fn admit(
    accounts: &Arc<Accounts>,
    endpoint: &Endpoint,
    parts: &Parts,
) -> Result<Access, ApiError> {
    let caller = authenticate(accounts, parts).await?;
    match need(endpoint) {
        Need::SignedIn if caller.is_none() => {
            return Err(challenge(accounts, &parts.headers, None, None));
        }
        Need::SignedIn => {}
        Need::Catalog => {
            let scope = "registry:catalog:*";
            if let Some(Caller {
                claims: Some(claims),
                ..
            }) = &caller
                && !claims.allows("registry", "catalog", "*")
            {
                return Err(challenge(
                    accounts,
                    &parts.headers,
                    Some(scope.to_owned()),
                    Some("insufficient_scope"),
                ));
            }
        }
        Need::Repository {
            name,
            action,
            scope,
        } => {
            let scope_text = format!("repository:{name}:{scope}");
            let anonymous = Principal::anonymous();
            let principal = caller.as_ref().map_or(&anonymous, |c| &c.principal);
            // The rights of now decide, also for a bearer token (which must grant the
            // action too): a role removed or a repository made private takes effect
            // at once, not when the token expires.
            let could = rights(accounts, principal, name).await?.contains(action);
            let in_token = caller
                .as_ref()
                .and_then(|c| c.claims.as_ref())
                .is_none_or(|claims| {
                    action
                        .names()
                        .iter()
                        .all(|a| claims.allows("repository", name.as_str(), a))
                });
            if !(could && in_token) {
                let token_in_hand = caller.as_ref().is_some_and(|c| c.claims.is_some());
                let signed_in = principal.user.is_some();
                // A new token helps if the holder could get the scope, or if nobody has
                // signed in yet; otherwise the answer is no.
                let could = token_in_hand && could;
                return Err(if could || !signed_in {
                    challenge(
                        accounts,
                        &parts.headers,
                        Some(scope_text),
                        token_in_hand.then_some("insufficient_scope"),
                    )
                } else {
                    denied(accounts, &parts.headers, scope_text)
                });
            }
        }
    }
    Ok(Access::Checked {
        accounts: accounts.clone(),
        caller,
    })
}
