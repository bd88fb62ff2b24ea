//! `/api/v1`: account administration over HTTP JSON, for the web site and scripts.
//! The same operations as the `berth user|org|token|repo` commands, one module per
//! resource: [`sessions`], [`users`], [`orgs`], [`tokens`], [`repositories`],
//! [`namespaces`], [`policies`], [`tags`] (tag history and the dry run of a push),
//! [`golden`] (golden images and push warnings), [`search`], [`mirrors`], [`audit`],
//! [`webhooks`].
//!
//! Callers sign in with a session cookie (`POST /api/v1/session`), Basic credentials
//! (a password or an access token) or `Authorization: Bearer <access token>`; bearer
//! JWTs from `/token` grant registry access only and are refused here. An access token
//! is a limited credential: it may read, and change repositories only with the
//! `read-write-delete` scope; creating tokens and changing passwords need a password.
//!
//! Every request, whatever its credential, must come from berth's own origin (a
//! browser says where it sends from in `Origin` and `Sec-Fetch-Site`), and every body
//! must be JSON: an HTML form on another site can send neither, and a browser will not
//! send a cross-site request with another content type without asking first (which
//! berth never allows).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_auth::credentials::{Presented, parse_authorization};
use berth_core::endpoint::{first_value, query_pairs};
use berth_core::{Actions, RepoName};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{Accounts, Caller};
use crate::http::limits::{MAX_JSON_BODY, declared_length};
use crate::http::origin::RequestOrigin;
use crate::http::{AppState, json_response};

mod audit;
mod error;
mod golden;
mod mirrors;
mod namespaces;
mod orgs;
mod policies;
mod repositories;
mod search;
mod sessions;
mod tags;
mod tokens;
mod users;
pub mod webhooks;

pub use error::{ApiFailure, ApiResult};
pub use sessions::SESSION_COOKIE;

/// What every `/api/v1` handler gets.
pub struct Ctx<'a> {
    pub accounts: &'a Accounts,
    /// For what reads images (scans).
    pub registry: &'a crate::registry::Registry,
    pub mirror: &'a crate::mirror::Mirror,
    pub webhooks: &'a crate::ops::webhooks::Webhooks,
    pub parts: &'a Parts,
    pub origin: &'a RequestOrigin,
    pub body: &'a [u8],
    /// The signed-in caller, if any.
    pub caller: Option<Caller>,
}

impl Ctx<'_> {
    /// The caller, or `401`.
    pub fn caller(&self) -> Result<&Caller, ApiFailure> {
        self.caller.as_ref().ok_or_else(ApiFailure::unauthorized)
    }

    pub fn json<T: for<'de> Deserialize<'de>>(&self) -> Result<T, ApiFailure> {
        serde_json::from_slice(self.body)
            .map_err(|e| ApiFailure::invalid(format!("request body: {e}")))
    }

    /// First value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<String> {
        let query = query_pairs(self.parts.uri.query());
        first_value(&query, key).map(str::to_owned)
    }

    /// Whether the caller may read `repo`: it exists and they may pull it (a repository
    /// they may not pull does not exist, as far as they can tell); with `or_manager`,
    /// managing its namespace is enough (settings made before the first push).
    pub async fn may_read(&self, repo: &RepoName, or_manager: bool) -> Result<bool, ApiFailure> {
        let anonymous = berth_auth::Principal::anonymous();
        let principal = self.caller.as_ref().map_or(&anonymous, |c| &c.principal);
        if or_manager
            && self
                .accounts
                .may_manage(principal, repo.namespace())
                .await?
        {
            return Ok(true);
        }
        let exists = self
            .accounts
            .meta()
            .repository_visibility(repo)
            .await?
            .is_some();
        Ok(exists
            && self
                .accounts
                .rights(principal, repo)
                .await?
                .contains(Actions::PULL))
    }

    /// The user a request is about: `?user=` or the caller; only administrators may
    /// name someone else.
    pub fn subject_user(&self) -> Result<String, ApiFailure> {
        let caller = self.caller()?;
        let user = self
            .param("user")
            .unwrap_or_else(|| caller.name().to_owned());
        if user != caller.name() {
            require_admin(caller)?;
        }
        Ok(user)
    }
}

pub fn require_password(caller: &Caller) -> Result<(), ApiFailure> {
    if caller.via_token() {
        Err(ApiFailure::forbidden(
            "this needs a password sign-in, not an access token",
        ))
    } else {
        Ok(())
    }
}

pub fn require_admin(caller: &Caller) -> Result<(), ApiFailure> {
    if caller.principal.admin {
        Ok(())
    } else {
        Err(ApiFailure::forbidden("only administrators may do this"))
    }
}

/// Changing repositories, members or tokens with an access token needs its widest scope.
pub fn require_manage_scope(caller: &Caller) -> Result<(), ApiFailure> {
    if caller.principal.ceiling.contains(Actions::ALL) {
        Ok(())
    } else {
        Err(ApiFailure::forbidden(
            "this access token's scope does not allow changes",
        ))
    }
}

pub fn ok(status: StatusCode, body: Value) -> ApiResult {
    Ok(json_response(status, body.to_string()))
}

pub fn no_content() -> ApiResult {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

pub fn visibility_word(public: bool) -> &'static str {
    if public { "public" } else { "private" }
}

pub fn parse_visibility(word: &str) -> Result<bool, ApiFailure> {
    match word {
        "public" => Ok(true),
        "private" => Ok(false),
        other => Err(ApiFailure::invalid(format!(
            "visibility {other:?}: use public or private"
        ))),
    }
}

fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts.headers.get(name).and_then(|v| v.to_str().ok())
}

/// Refuses requests from other origins (a browser says where it sends from), and
/// bodies that are not JSON.
fn check_cross_site(parts: &Parts, origin: &RequestOrigin) -> Result<(), ApiFailure> {
    let cross_origin = header(parts, "origin").is_some_and(|o| !origin.matches(o))
        || header(parts, "sec-fetch-site").is_some_and(|s| {
            let s = s.trim().to_ascii_lowercase();
            s == "cross-site" || s == "same-site"
        });
    if cross_origin {
        return Err(ApiFailure::forbidden("cross-origin requests are refused"));
    }
    let json = header(parts, "content-type")
        .is_some_and(|t| berth_core::manifest::essence(t).eq_ignore_ascii_case("application/json"));
    let has_body = !matches!(
        parts.method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
    );
    if has_body && !json {
        return Err(ApiFailure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as application/json",
        ));
    }
    Ok(())
}

/// The caller, from `Authorization` or the session cookie.
async fn authenticate(
    accounts: &Accounts,
    parts: &Parts,
    origin: &RequestOrigin,
) -> Result<Option<Caller>, ApiFailure> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
        let presented = parse_authorization(value.as_bytes())
            .map_err(|e| ApiFailure::new(StatusCode::UNAUTHORIZED, e.to_string()))?;
        if matches!(presented, Presented::Jwt(_)) {
            return Err(ApiFailure::new(
                StatusCode::UNAUTHORIZED,
                "registry tokens from /token are not accepted here; use a password, an \
                 access token or a session",
            ));
        }
        return Ok(Some(
            accounts.authenticate(&presented, &origin.client).await?,
        ));
    }
    match sessions::cookie(parts) {
        Some(secret) => Ok(Some(accounts.authenticate_session(&secret).await?)),
        None => Ok(None),
    }
}

pub async fn dispatch(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let origin = match parts.extensions.get::<RequestOrigin>() {
        Some(origin) => origin.clone(),
        None => return ApiFailure::invalid("no request origin".into()).into_response(),
    };
    if let Err(refused) = check_cross_site(&parts, &origin) {
        return refused.into_response();
    }
    let declared = declared_length(&parts.headers);
    let body = match app.body_budget.read(body, MAX_JSON_BODY, declared).await {
        Ok(body) => body,
        Err(e) => return ApiFailure::from(e).into_response(),
    };
    let result = async {
        let caller = authenticate(&app.accounts, &parts, &origin).await?;
        let ctx = Ctx {
            accounts: &app.accounts,
            registry: &app.registry,
            mirror: &app.mirror,
            webhooks: &app.webhooks,
            parts: &parts,
            origin: &origin,
            body: &body.bytes,
            caller,
        };
        let mut response = route(&ctx).await?;
        if let Some(event) = change_event(&ctx, response.status()) {
            crate::ops::audit::attach(&mut response, event);
        }
        Ok::<_, ApiFailure>(response)
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// The audit event of a request that changed something: every successful `/api/v1`
/// request but reads and dry runs, named `RESOURCE:create|set|remove` (sign-in and
/// sign-out by their names), with the request's body (its secrets taken out).
fn change_event(ctx: &Ctx<'_>, status: StatusCode) -> Option<berth_meta::AuditEvent> {
    let method = &ctx.parts.method;
    if !status.is_success() || matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return None;
    }
    let path = ctx.parts.uri.path();
    let segments: Vec<&str> = path
        .strip_prefix("/api/v1/")
        .unwrap_or_default()
        .trim_end_matches('/')
        .split('/')
        .collect();
    let resource = *segments.first()?;
    if matches!(resource, "tag-plan" | "search" | "audit") {
        return None;
    }
    let body = crate::ops::audit::without_secrets(ctx.body);
    let signed_in = || {
        body.get("username")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (action, actor) = match (resource, method.as_str()) {
        ("session", "POST") => ("sign-in".to_owned(), signed_in()),
        ("session", "DELETE") => ("sign-out".to_owned(), String::new()),
        (resource, method) => {
            let verb = match method {
                "POST" => "create",
                "DELETE" => "remove",
                _ => "set",
            };
            (format!("{resource}:{verb}"), String::new())
        }
    };
    let actor = if actor.is_empty() {
        ctx.caller
            .as_ref()
            .map(|c| c.name().to_owned())
            .unwrap_or_default()
    } else {
        actor
    };
    let target = match (resource, &segments[1..]) {
        ("repositories" | "policies" | "golden" | "push-warnings", [.., _setting])
            if segments.len() > 3 =>
        {
            Some(segments[1..segments.len() - 1].join("/"))
        }
        ("repositories" | "policies" | "golden" | "push-warnings", rest) if !rest.is_empty() => {
            Some(rest.join("/"))
        }
        ("namespaces" | "orgs", [name, ..]) => Some((*name).to_owned()),
        _ => None,
    };
    let detail = json!({ "method": method.as_str(), "path": path, "body": body });
    Some(crate::ops::audit::event(
        &actor,
        &ctx.origin.client,
        &action,
        target.as_deref(),
        detail,
    ))
}

async fn route(ctx: &Ctx<'_>) -> ApiResult {
    let path = ctx
        .parts
        .uri
        .path()
        .strip_prefix("/api/v1/")
        .unwrap_or_default()
        .trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').collect();
    let method = &ctx.parts.method;
    match segments.as_slice() {
        ["session"] => sessions::current(ctx, method).await,
        ["sessions", rest @ ..] => sessions::handle(ctx, method, rest).await,
        ["me"] if *method == Method::GET => me(ctx),
        ["users", rest @ ..] => users::handle(ctx, method, rest).await,
        ["orgs", rest @ ..] => orgs::handle(ctx, method, rest).await,
        ["tokens", rest @ ..] => tokens::handle(ctx, method, rest).await,
        ["repositories", rest @ ..] => repositories::handle(ctx, method, rest).await,
        ["search"] => search::handle(ctx, method).await,
        ["audit"] => audit::list(ctx, method).await,
        ["webhooks", rest @ ..] => webhooks::handle(ctx, method, rest, ctx.webhooks).await,
        ["mirrors"] => mirrors::handle(ctx, method, ctx.mirror).await,
        ["mirrors", "pins"] => mirrors::pins(ctx, method).await,
        ["namespaces", rest @ ..] => namespaces::handle(ctx, method, rest).await,
        ["policies", rest @ ..] => policies::handle(ctx, method, rest).await,
        ["tag-history", rest @ ..] => tags::history(ctx, method, rest).await,
        ["tag-plan", rest @ ..] => tags::plan(ctx, method, rest).await,
        ["golden", rest @ ..] => golden::handle(ctx, method, rest).await,
        ["push-warnings", rest @ ..] => golden::warnings(ctx, method, rest).await,
        _ => Err(ApiFailure::not_found(format!(
            "no endpoint {method} /api/v1/{path}"
        ))),
    }
}

/// `GET /api/v1/me`.
fn me(ctx: &Ctx<'_>) -> ApiResult {
    let caller = ctx.caller()?;
    let session = match &caller.proof {
        crate::accounts::Proof::Session(id) => Some(id.as_str()),
        _ => None,
    };
    ok(
        StatusCode::OK,
        json!({
            "name": caller.name(),
            "admin": caller.principal.admin,
            "via_token": caller.via_token(),
            "session": session,
        }),
    )
}

/// Sets (or with `None`, clears) the session cookie on a response.
pub fn set_session_cookie(response: &mut Response, origin: &RequestOrigin, secret: Option<&str>) {
    // Secure whenever the client reached berth over https (through a trusted proxy).
    let secure = if origin.is_https() { "; Secure" } else { "" };
    let cookie = match secret {
        Some(secret) => format!(
            "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
            crate::accounts::SESSION_SECONDS
        ),
        None => format!("{SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    if let Ok(value) = HeaderValue::try_from(cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}
