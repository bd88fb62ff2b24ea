//! `/api/v1`: account administration over HTTP JSON, for the web site and scripts.
//! The same operations as the `berth user|org|token|repo` commands.
//!
//! Callers sign in with a session cookie (`POST /api/v1/session`), Basic credentials
//! (a password or an access token) or `Authorization: Bearer <access token>`. An access
//! token is a limited credential: it may read, and change repositories only with the
//! `read-write-delete` scope; creating tokens and changing passwords need a password.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use berth_auth::{Credential, Principal};
use berth_core::endpoint::{first_value, query_pairs};
use berth_core::{Actions, RepoName, Role, TokenScope};
use berth_meta::{AccessToken, AccountRefusal, MetaError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::accounts::{AccountError, Accounts, SignInError, now};
use crate::http::auth::{basic_credentials, client_address};
use crate::http::{AppState, json_response};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "berth_session";
/// Lifetime of a web session.
const SESSION_SECONDS: i64 = 12 * 3600;
/// Largest JSON body accepted.
const MAX_BODY: usize = 64 * 1024;

/// An `/api/v1` error: a status and `{"error": code, "message": …}`.
struct Failure(StatusCode, &'static str, String);

type ApiResult = Result<Response, Failure>;

impl Failure {
    fn unauthorized() -> Failure {
        Failure(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "sign in first".into(),
        )
    }
    fn forbidden(why: &str) -> Failure {
        Failure(StatusCode::FORBIDDEN, "forbidden", why.into())
    }
    fn not_found(what: String) -> Failure {
        Failure(StatusCode::NOT_FOUND, "not_found", what)
    }
    fn invalid(why: String) -> Failure {
        Failure(StatusCode::BAD_REQUEST, "invalid", why)
    }
    fn into_response(self) -> Response {
        let mut response = json_response(
            self.0,
            json!({ "error": self.1, "message": self.2 }).to_string(),
        );
        if self.0 == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"berth\""),
            );
        }
        response
    }
}

impl From<MetaError> for Failure {
    fn from(e: MetaError) -> Failure {
        let id = uuid::Uuid::new_v4();
        tracing::error!(error_id = %id, error = %e, "api request failed");
        Failure(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("internal server error (error id {id})"),
        )
    }
}

impl From<SignInError> for Failure {
    fn from(e: SignInError) -> Failure {
        match e {
            SignInError::BadCredentials => Failure(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "incorrect username or password".into(),
            ),
            SignInError::Locked(wait) => Failure(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!(
                    "too many failed sign-ins; retry in {} s",
                    wait.as_secs().max(1)
                ),
            ),
            SignInError::Store(e) => e.into(),
        }
    }
}

impl From<AccountError> for Failure {
    fn from(e: AccountError) -> Failure {
        let message = e.to_string();
        match e {
            AccountError::Refused(AccountRefusal::NameTaken(_)) => {
                Failure(StatusCode::CONFLICT, "conflict", message)
            }
            AccountError::Refused(
                AccountRefusal::UnknownUser(_) | AccountRefusal::UnknownOrg(_),
            )
            | AccountError::NotFound(_) => Failure::not_found(message),
            AccountError::Refused(AccountRefusal::Store(e)) => e.into(),
            AccountError::Invalid(_) => Failure::invalid(message),
            AccountError::Hash(_) => Failure(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal server error".into(),
            ),
        }
    }
}

/// A signed-in caller of the API.
struct Caller {
    principal: Principal,
    /// Signed in with an access token rather than a password or session.
    via_token: bool,
}

impl Caller {
    fn name(&self) -> &str {
        self.principal.user.as_deref().unwrap_or_default()
    }

    fn require_password(&self) -> Result<(), Failure> {
        if self.via_token {
            Err(Failure::forbidden(
                "this needs a password sign-in, not an access token",
            ))
        } else {
            Ok(())
        }
    }

    fn require_admin(&self) -> Result<(), Failure> {
        if self.principal.admin {
            Ok(())
        } else {
            Err(Failure::forbidden("only administrators may do this"))
        }
    }

    /// Changing repositories with a token needs its widest scope.
    fn require_manage_scope(&self) -> Result<(), Failure> {
        if self.principal.ceiling.contains(Actions::ALL) {
            Ok(())
        } else {
            Err(Failure::forbidden(
                "this access token's scope does not allow changes",
            ))
        }
    }
}

fn cookie(parts: &Parts, name: &str) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

async fn authenticate(accounts: &Accounts, parts: &Parts) -> Result<Option<Caller>, Failure> {
    let authorization = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(value) = authorization {
        if let Some((user, password)) = basic_credentials(value) {
            return match accounts
                .sign_in(&user, &password, &client_address(accounts, parts))
                .await
            {
                Ok((principal, credential)) => Ok(Some(Caller {
                    principal,
                    via_token: matches!(credential, Credential::AccessToken { .. }),
                })),
                Err(refused) => Err(refused.into()),
            };
        }
        if let Some(token) = value.strip_prefix("Bearer ") {
            return match accounts.sign_in_with_token(token.trim()).await? {
                Some((principal, _)) => Ok(Some(Caller {
                    principal,
                    via_token: true,
                })),
                None => Err(Failure::unauthorized()),
            };
        }
        return Err(Failure::unauthorized());
    }
    let Some(session) = cookie(parts, SESSION_COOKIE) else {
        return Ok(None);
    };
    let Ok(claims) = accounts.signer().await?.verify_session(&session) else {
        return Err(Failure::unauthorized());
    };
    check_same_origin(parts)?;
    match accounts.principal_for_refresh(&claims).await? {
        Some((principal, credential)) => Ok(Some(Caller {
            principal,
            via_token: matches!(credential, Credential::AccessToken { .. }),
        })),
        None => Err(Failure::unauthorized()),
    }
}

/// Cookie-authenticated requests must come from berth's own pages: a browser sends
/// `Origin` on cross-site requests, and SameSite alone does not cover sibling sites.
/// Bodies must be JSON, which a cross-site form cannot send.
fn check_same_origin(parts: &Parts) -> Result<(), Failure> {
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let Some(origin) = header("origin") {
        let host = header("x-forwarded-host").or_else(|| header("host"));
        let origin_host = origin.split("://").nth(1).unwrap_or_default().to_owned();
        if host.as_deref() != Some(origin_host.as_str()) {
            return Err(Failure::forbidden("cross-origin requests are refused"));
        }
    }
    let writes = !matches!(parts.method, Method::GET | Method::HEAD);
    let json = header("content-type").is_some_and(|t| t.starts_with("application/json"));
    if writes && parts.method != Method::DELETE && !json {
        return Err(Failure::invalid("send the body as application/json".into()));
    }
    Ok(())
}

fn is_https(accounts: &Accounts, parts: &Parts) -> bool {
    crate::http::auth::realm(accounts, &parts.headers).starts_with("https://")
}

fn parse_json<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Failure> {
    serde_json::from_slice(body).map_err(|e| Failure::invalid(format!("request body: {e}")))
}

fn ok(status: StatusCode, body: Value) -> ApiResult {
    Ok(json_response(status, body.to_string()))
}

fn no_content() -> ApiResult {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

fn token_json(token: &AccessToken) -> Value {
    json!({
        "id": token.id,
        "user": token.user.as_str(),
        "name": token.name,
        "scope": token.scope.as_str(),
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "last_used_at": token.last_used_at,
        "revoked_at": token.revoked_at,
        "active": token.is_active(now()),
    })
}

fn visibility_word(public: bool) -> &'static str {
    if public { "public" } else { "private" }
}

fn parse_visibility(word: &str) -> Result<bool, Failure> {
    match word {
        "public" => Ok(true),
        "private" => Ok(false),
        other => Err(Failure::invalid(format!(
            "visibility {other:?}: use public or private"
        ))),
    }
}

pub async fn dispatch(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(_) => {
            return Failure(
                StatusCode::PAYLOAD_TOO_LARGE,
                "invalid",
                "request body too large".into(),
            )
            .into_response();
        }
    };
    match route(&app.accounts, &parts, &body).await {
        Ok(response) => response,
        Err(failure) => failure.into_response(),
    }
}

#[derive(Deserialize)]
struct SignIn {
    username: String,
    password: String,
}

#[derive(Deserialize)]
struct NewUser {
    name: String,
    password: String,
    #[serde(default)]
    admin: bool,
}

#[derive(Deserialize)]
struct NewPassword {
    password: String,
    /// Required to change one's own password.
    current_password: Option<String>,
}

#[derive(Deserialize)]
struct NewOrg {
    name: String,
    owner: Option<String>,
}

#[derive(Deserialize)]
struct Membership {
    role: String,
}

#[derive(Deserialize)]
struct NewToken {
    name: Option<String>,
    scope: String,
    /// A duration such as `30d` or `12h`.
    expires_in: Option<String>,
    /// Administrators may create tokens for other users.
    user: Option<String>,
}

#[derive(Deserialize)]
struct Visibility {
    visibility: Option<String>,
}

async fn route(accounts: &Accounts, parts: &Parts, body: &[u8]) -> ApiResult {
    let path = parts
        .uri
        .path()
        .strip_prefix("/api/v1/")
        .unwrap_or_default()
        .trim_end_matches('/');
    let segments: Vec<&str> = path.split('/').collect();
    let method = &parts.method;

    // Signing in and out need no caller.
    if segments == ["session"] {
        return match *method {
            Method::POST => sign_in_session(accounts, parts, body).await,
            Method::DELETE => {
                let mut response = no_content()?;
                response.headers_mut().insert(
                    header::SET_COOKIE,
                    HeaderValue::from_static(
                        "berth_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0",
                    ),
                );
                Ok(response)
            }
            _ => Err(method_not_allowed()),
        };
    }

    let caller = authenticate(accounts, parts).await?;
    // Repository reads are open to anyone who may pull; everything else needs a caller.
    if segments == ["repositories"] {
        return repositories(
            accounts,
            method,
            &[],
            caller.as_ref(),
            body,
            parts.uri.query(),
        )
        .await;
    }
    if let ["repositories", rest @ ..] = segments.as_slice() {
        return repositories(
            accounts,
            method,
            rest,
            caller.as_ref(),
            body,
            parts.uri.query(),
        )
        .await;
    }
    let caller = caller.ok_or_else(Failure::unauthorized)?;
    let meta = accounts.meta();
    match (method.clone(), segments.as_slice()) {
        (Method::GET, ["me"]) => ok(
            StatusCode::OK,
            json!({
                "name": caller.name(),
                "admin": caller.principal.admin,
                "via_token": caller.via_token,
            }),
        ),
        (Method::GET, ["users"]) => {
            caller.require_admin()?;
            let users: Vec<Value> = meta
                .list_users()
                .await?
                .iter()
                .map(|u| json!({ "name": u.name.as_str(), "admin": u.admin, "created_at": u.created_at }))
                .collect();
            ok(StatusCode::OK, json!({ "users": users }))
        }
        (Method::POST, ["users"]) => {
            caller.require_admin()?;
            caller.require_password()?;
            let new: NewUser = parse_json(body)?;
            let user = accounts
                .create_user(&new.name, &new.password, new.admin)
                .await?;
            ok(
                StatusCode::CREATED,
                json!({ "name": user.name.as_str(), "admin": user.admin }),
            )
        }
        (Method::DELETE, ["users", name]) => {
            caller.require_admin()?;
            caller.require_password()?;
            accounts.delete_user(name).await?;
            no_content()
        }
        (Method::PUT, ["users", name, "password"]) => {
            caller.require_password()?;
            let new: NewPassword = parse_json(body)?;
            if caller.name() != *name {
                caller.require_admin()?;
            } else {
                // One's own password needs the current one: a stolen session is not
                // enough to take the account over.
                let current = new.current_password.as_deref().unwrap_or_default();
                let client = client_address(accounts, parts);
                if accounts.sign_in(name, current, &client).await.is_err()
                    || berth_auth::secret::looks_like_token(current)
                {
                    return Err(Failure::forbidden("current_password is not right"));
                }
            }
            accounts.set_password(name, &new.password).await?;
            no_content()
        }
        (Method::GET, ["orgs"]) => {
            let orgs: Vec<Value> = meta
                .list_orgs()
                .await?
                .iter()
                .map(|o| json!({ "name": o.name.as_str(), "created_at": o.created_at }))
                .collect();
            ok(StatusCode::OK, json!({ "orgs": orgs }))
        }
        (Method::POST, ["orgs"]) => {
            caller.require_password()?;
            let new: NewOrg = parse_json(body)?;
            let owner = new.owner.as_deref().unwrap_or(caller.name());
            if owner != caller.name() {
                caller.require_admin()?;
            }
            accounts.create_org(&new.name, owner).await?;
            ok(
                StatusCode::CREATED,
                json!({ "name": new.name, "owner": owner }),
            )
        }
        (Method::GET, ["orgs", org, "members"]) => {
            let members = meta
                .members(org)
                .await?
                .ok_or_else(|| Failure::not_found(format!("organization {org}")))?;
            let is_member = members.iter().any(|m| m.user.as_str() == caller.name());
            if !is_member && !caller.principal.admin {
                return Err(Failure::not_found(format!("organization {org}")));
            }
            let members: Vec<Value> = members
                .iter()
                .map(|m| json!({ "user": m.user.as_str(), "role": m.role.as_str() }))
                .collect();
            ok(StatusCode::OK, json!({ "members": members }))
        }
        (Method::PUT, ["orgs", org, "members", user]) => {
            caller.require_manage_scope()?;
            if !accounts.may_manage(&caller.principal, org).await? {
                return Err(Failure::forbidden(
                    "only the organization's admins may do this",
                ));
            }
            let membership: Membership = parse_json(body)?;
            let role: Role = membership
                .role
                .parse()
                .map_err(|e: berth_core::AccountError| Failure::invalid(e.to_string()))?;
            accounts.set_member(org, user, role).await?;
            no_content()
        }
        (Method::DELETE, ["orgs", org, "members", user]) => {
            caller.require_manage_scope()?;
            if !accounts.may_manage(&caller.principal, org).await? {
                return Err(Failure::forbidden(
                    "only the organization's admins may do this",
                ));
            }
            accounts.remove_member(org, user).await?;
            no_content()
        }
        (Method::GET, ["tokens"]) => {
            let query = query_pairs(parts.uri.query());
            let user = first_value(&query, "user").unwrap_or(caller.name());
            if user != caller.name() {
                caller.require_admin()?;
            }
            let tokens: Vec<Value> = meta
                .list_tokens(user)
                .await?
                .iter()
                .map(token_json)
                .collect();
            ok(StatusCode::OK, json!({ "tokens": tokens }))
        }
        (Method::POST, ["tokens"]) => {
            caller.require_password()?;
            let new: NewToken = parse_json(body)?;
            let user = new.user.as_deref().unwrap_or(caller.name());
            if user != caller.name() {
                caller.require_admin()?;
            }
            let scope: TokenScope = new
                .scope
                .parse()
                .map_err(|e: berth_core::AccountError| Failure::invalid(e.to_string()))?;
            let expires_in = new
                .expires_in
                .as_deref()
                .map(humantime::parse_duration)
                .transpose()
                .map_err(|e| Failure::invalid(format!("expires_in: {e}")))?;
            let created = accounts
                .create_token(user, scope, expires_in, new.name.as_deref())
                .await?;
            let mut body = token_json(&created.token);
            body["token"] = created.secret.into();
            ok(StatusCode::CREATED, body)
        }
        (Method::DELETE, ["tokens", id]) => {
            caller.require_manage_scope()?;
            let token = meta.token(id).await?;
            let owned = token
                .as_ref()
                .is_some_and(|t| t.user.as_str() == caller.name());
            if token.is_none() || (!owned && !caller.principal.admin) {
                return Err(Failure::not_found(format!("token {id}")));
            }
            accounts.revoke_token(id).await?;
            no_content()
        }
        (Method::PUT, ["namespaces", namespace, "default-visibility"]) => {
            caller.require_manage_scope()?;
            if !accounts.may_manage(&caller.principal, namespace).await? {
                return Err(Failure::forbidden("you may not manage this namespace"));
            }
            let wanted: Visibility = parse_json(body)?;
            let public = wanted
                .visibility
                .as_deref()
                .map(parse_visibility)
                .transpose()?;
            if !meta.set_namespace_default(namespace, public).await? {
                return Err(Failure::not_found(format!("namespace {namespace}")));
            }
            no_content()
        }
        _ => Err(Failure::not_found(format!(
            "no endpoint {method} /api/v1/{path}"
        ))),
    }
}

fn method_not_allowed() -> Failure {
    Failure(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid",
        "method not allowed".into(),
    )
}

async fn sign_in_session(accounts: &Accounts, parts: &Parts, body: &[u8]) -> ApiResult {
    let form: SignIn = parse_json(body)?;
    let (principal, credential) = accounts
        .sign_in(
            &form.username,
            &form.password,
            &client_address(accounts, parts),
        )
        .await?;
    let t = now();
    let session = accounts
        .signer()
        .await?
        .issue_session(&form.username, &credential, t, t + SESSION_SECONDS)
        .map_err(|e| Failure::invalid(e.to_string()))?;
    let mut response = json_response(
        StatusCode::OK,
        json!({ "name": form.username, "admin": principal.admin }).to_string(),
    );
    // Secure whenever the client reached berth over https (through a proxy).
    let secure = if is_https(accounts, parts) {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!(
        "{SESSION_COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}"
    );
    if let Ok(value) = HeaderValue::try_from(cookie) {
        response.headers_mut().insert(header::SET_COOKIE, value);
    }
    Ok(response)
}

/// `GET /api/v1/repositories[?last=&n=]`: the repositories the caller may read.
async fn list_repositories(
    accounts: &Accounts,
    principal: &Principal,
    query: Option<&str>,
) -> ApiResult {
    let query = query_pairs(query);
    let param = |key: &str| first_value(&query, key);
    let n = match param("n") {
        Some(n) => n
            .parse::<u32>()
            .map_err(|_| Failure::invalid(format!("n={n}: not a number")))?
            .clamp(1, 1000),
        None => 100,
    };
    let page = accounts
        .meta()
        .visible_repositories(Accounts::viewer(principal), param("last"), n)
        .await?;
    ok(
        StatusCode::OK,
        json!({ "repositories": page.items, "more": page.more }),
    )
}

/// `GET /api/v1/repositories/NAME` and `PUT /api/v1/repositories/NAME/visibility`.
async fn repositories(
    accounts: &Accounts,
    method: &Method,
    rest: &[&str],
    caller: Option<&Caller>,
    body: &[u8],
    query: Option<&str>,
) -> ApiResult {
    let anonymous = Principal::anonymous();
    let principal = caller.map_or(&anonymous, |c| &c.principal);
    if rest.is_empty() && *method == Method::GET {
        return list_repositories(accounts, principal, query).await;
    }
    let (name, setting) = match rest {
        [name @ .., "visibility"] if *method == Method::PUT => (name.join("/"), true),
        name => (name.join("/"), false),
    };
    let repo: RepoName = name
        .parse()
        .map_err(|e: berth_core::NameError| Failure::invalid(e.to_string()))?;
    if setting {
        let caller = caller.ok_or_else(Failure::unauthorized)?;
        caller.require_manage_scope()?;
        if !accounts.may_manage(principal, repo.namespace()).await? {
            return Err(Failure::forbidden("you may not manage this repository"));
        }
        let wanted: Visibility = parse_json(body)?;
        let word = wanted
            .visibility
            .ok_or_else(|| Failure::invalid("visibility is required".into()))?;
        let public = parse_visibility(&word)?;
        accounts
            .meta()
            .set_repository_visibility(&repo, public)
            .await?;
        return ok(
            StatusCode::OK,
            json!({ "name": repo.as_str(), "visibility": visibility_word(public) }),
        );
    }
    if *method != Method::GET {
        return Err(method_not_allowed());
    }
    // A repository the caller may not pull does not exist, as far as they can tell.
    let rights = accounts.rights(principal, &repo).await?;
    let public = accounts.meta().repository_visibility(&repo).await?;
    match public {
        Some(public) if rights.contains(Actions::PULL) => ok(
            StatusCode::OK,
            json!({ "name": repo.as_str(), "visibility": visibility_word(public) }),
        ),
        _ => Err(Failure::not_found(format!("repository {repo}"))),
    }
}
