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

use std::sync::Arc;

use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use berth_auth::Principal;
use berth_auth::credentials::parse_authorization;
use berth_core::{Actions, Endpoint, ErrorCode, RepoName};
use berth_meta::Viewer;

use crate::accounts::{Accounts, Caller, SignInError};
use crate::http::ApiError;
use crate::http::origin::RequestOrigin;
use crate::ops::pull_limits::Puller;

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

    /// Whether the caller may push to `repo` (by their rights, not the token in hand:
    /// a pull asks only for a pull scope).
    pub async fn may_push(&self, repo: &RepoName) -> Result<bool, ApiError> {
        match self {
            Access::Open => Ok(true),
            Access::Checked { accounts, caller } => {
                let anonymous = Principal::anonymous();
                let principal = caller.as_ref().map_or(&anonymous, |c| &c.principal);
                Ok(rights(accounts, principal, repo)
                    .await?
                    .contains(Actions::PUSH))
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

    /// Who a request counts against in per-client limits: the signed-in user, or the
    /// address of an anonymous client.
    pub fn client_key(&self, origin: &RequestOrigin) -> String {
        match self {
            Access::Checked {
                caller: Some(caller),
                ..
            } if !caller.name().is_empty() => format!("user:{}", caller.name()),
            _ => format!("addr:{}", origin.client),
        }
    }

    /// Who a change is recorded as done by (the tag history): the signed-in user, else
    /// `anonymous@ADDRESS`.
    pub fn actor(&self, origin: &RequestOrigin) -> String {
        match self {
            Access::Checked {
                caller: Some(caller),
                ..
            } if !caller.name().is_empty() => caller.name().to_owned(),
            _ => format!("anonymous@{}", origin.client),
        }
    }

    /// Whom a pull counts against: the signed-in account, else the client's address.
    pub fn puller<'a>(&'a self, origin: &'a RequestOrigin) -> Puller<'a> {
        match self {
            Access::Checked {
                caller: Some(caller),
                ..
            } if !caller.name().is_empty() => Puller::Account(caller.name()),
            _ => Puller::Anonymous(&origin.client),
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

/// The token realm: configured, or this server as the client reached it.
pub fn realm(accounts: &Accounts, origin: &RequestOrigin) -> String {
    match accounts.configured_realm() {
        Some(realm) => realm.to_owned(),
        None => format!("{}/token", origin.base_url()),
    }
}

/// A quoted-string of RFC 9110 §5.6.4, for values that go into a challenge.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars().filter(|c| !c.is_control()) {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
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
    origin: &RequestOrigin,
    scope: Option<String>,
    error: Option<&str>,
) -> ApiError {
    let mut value = format!(
        "Bearer realm={},service={}",
        quoted(&realm(accounts, origin)),
        quoted(accounts.service())
    );
    if let Some(scope) = &scope {
        value.push_str(&format!(",scope={}", quoted(scope)));
    }
    if let Some(error) = error {
        value.push_str(&format!(",error={}", quoted(error)));
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
fn denied(accounts: &Accounts, origin: &RequestOrigin, scope: String) -> ApiError {
    let challenge = challenge(accounts, origin, Some(scope), Some("insufficient_scope"));
    let mut error = ApiError::new(
        ErrorCode::Denied,
        "requested access to the resource is denied",
    );
    error.detail = challenge.detail;
    error.headers = challenge.headers;
    error
}

/// A sign-in refused for a reason other than the credentials themselves: locked out,
/// too many checks waiting (`429` with `Retry-After`), or a fault of the store.
pub fn sign_in_refusal(e: SignInError) -> ApiError {
    let message = e.to_string();
    let too_many = |wait: u64| {
        ApiError::new(ErrorCode::TooManyRequests, message.clone())
            .with_status(StatusCode::TOO_MANY_REQUESTS)
            .with_header(header::RETRY_AFTER, wait.max(1).to_string())
    };
    match e {
        SignInError::Locked(wait) => too_many(wait.as_secs()),
        SignInError::Busy => too_many(1),
        SignInError::Store(e) => ApiError::from(crate::error::RegistryError::from(e)),
        SignInError::BadCredentials | SignInError::InvalidToken => {
            ApiError::new(ErrorCode::Unauthorized, message)
        }
    }
}

/// Establishes the caller, if any credentials came. Bad credentials are refused here,
/// never treated as anonymous.
pub async fn authenticate(
    accounts: &Accounts,
    parts: &Parts,
    origin: &RequestOrigin,
) -> Result<Option<Caller>, ApiError> {
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let presented = match parse_authorization(value.as_bytes()) {
        Ok(presented) => presented,
        Err(_) => return Err(challenge(accounts, origin, None, None)),
    };
    match accounts.authenticate(&presented, &origin.client).await {
        Ok(caller) => Ok(Some(caller)),
        Err(SignInError::BadCredentials) => {
            Err(challenge(accounts, origin, None, None)
                .with_message("incorrect username or password"))
        }
        Err(SignInError::InvalidToken) => {
            Err(challenge(accounts, origin, None, Some("invalid_token")))
        }
        Err(other) => Err(sign_in_refusal(other)),
    }
}

/// Admits a request to `endpoint`, or says why not.
pub async fn admit(
    accounts: &Arc<Accounts>,
    endpoint: &Endpoint,
    parts: &Parts,
    origin: &RequestOrigin,
) -> Result<Access, ApiError> {
    let caller = authenticate(accounts, parts, origin).await?;
    match need(endpoint) {
        Need::SignedIn if caller.is_none() => {
            return Err(challenge(accounts, origin, None, None));
        }
        Need::SignedIn => {}
        Need::Catalog => {
            let scope = "registry:catalog:*";
            if let Some(claims) = caller.as_ref().and_then(Caller::claims)
                && !claims.allows("registry", "catalog", "*")
            {
                return Err(challenge(
                    accounts,
                    origin,
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
                .and_then(Caller::claims)
                .is_none_or(|claims| {
                    action
                        .names()
                        .iter()
                        .all(|a| claims.allows("repository", name.as_str(), a))
                });
            if !(could && in_token) {
                let token_in_hand = caller.as_ref().and_then(Caller::claims).is_some();
                let signed_in = principal.user.is_some();
                // A new token helps if the holder could get the scope, or if nobody has
                // signed in yet; otherwise the answer is no.
                let could = token_in_hand && could;
                return Err(if could || !signed_in {
                    challenge(
                        accounts,
                        origin,
                        Some(scope_text),
                        token_in_hand.then_some("insufficient_scope"),
                    )
                } else {
                    denied(accounts, origin, scope_text)
                });
            }
        }
    }
    Ok(Access::Checked {
        accounts: accounts.clone(),
        caller,
    })
}
