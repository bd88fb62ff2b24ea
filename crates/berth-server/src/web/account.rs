//! Signing in and out (`/signin`, `/signout`) and the account page (`/account`): access
//! tokens (created with a scope, an expiry and a name, the secret shown once with the
//! `docker login` command; listed and revoked) and the password.
//!
//! Sign-ins go through [`crate::accounts::Accounts::sign_in`], so the failed-sign-in
//! limits of `/token` and `/api/v1` apply here too; the session is the same as
//! `/api/v1`'s.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, Request, State};
use axum::http::StatusCode;
use axum::http::header::USER_AGENT;
use axum::response::Response;
use berth_core::TokenScope;
use berth_core::endpoint::{first_value, query_pairs};

use super::view::{Layout, ago, iso, now};
use super::{Form, Visitor, WebError, html, redirect, respond};
use crate::accounts::SignInError;
use crate::http::AppState;
use crate::ops::audit;

#[derive(Template)]
#[template(path = "signin.html")]
struct SignInPage {
    layout: Layout,
    next: String,
    username: String,
    error: String,
}

/// Where to go after signing in: a path on this site only. Never `//elsewhere` or
/// `/\\elsewhere`, and nothing but visible ASCII, since browsers drop tabs and line
/// breaks from URLs (`/<TAB>/evil.example` would become `//evil.example`).
fn local_path(next: Option<&str>) -> String {
    match next {
        Some(p)
            if p.starts_with('/')
                && !p.starts_with("//")
                && !p.contains('\\')
                && p.chars().all(|c| c.is_ascii_graphic()) =>
        {
            p.to_owned()
        }
        _ => "/".to_owned(),
    }
}

pub async fn sign_in_page(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let mut visitor = match Visitor::of(&app, &parts).await {
        Ok(v) => v,
        Err(e) => return e.bare(),
    };
    let query = query_pairs(parts.uri.query());
    let next = local_path(first_value(&query, "next"));
    let page = SignInPage {
        layout: Layout::new(&mut visitor, "Sign in"),
        next,
        username: String::new(),
        error: String::new(),
    };
    let outcome = Ok(html(&page));
    respond(visitor, outcome)
}

pub async fn sign_in(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, form) = match Form::read(&app, request).await {
        Ok(read) => read,
        Err(e) => return e.bare(),
    };
    let mut visitor = match Visitor::of(&app, &parts).await {
        Ok(v) => v,
        Err(e) => return e.bare(),
    };
    let outcome = async {
        visitor.check_form(&parts.headers, &form)?;
        let username = form.get("username").unwrap_or_default().trim().to_owned();
        let password = form.get("password").unwrap_or_default();
        let next = local_path(form.get("next"));
        let refused = |visitor: &mut Visitor, status: StatusCode, error: String| {
            let page = SignInPage {
                layout: Layout::new(visitor, "Sign in"),
                next: next.clone(),
                username: username.clone(),
                error,
            };
            let mut response = html(&page);
            *response.status_mut() = status;
            Ok(response)
        };
        let caller = match app
            .accounts
            .sign_in(&username, password, &visitor.origin.client)
            .await
        {
            Ok(caller) => caller,
            Err(e @ (SignInError::BadCredentials | SignInError::InvalidToken)) => {
                return refused(&mut visitor, StatusCode::UNAUTHORIZED, e.to_string());
            }
            Err(e @ (SignInError::Locked(_) | SignInError::Busy)) => {
                return refused(&mut visitor, StatusCode::TOO_MANY_REQUESTS, e.to_string());
            }
            Err(SignInError::Store(e)) => return Err(WebError::internal(e)),
        };
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let started = app
            .accounts
            .start_session(&caller, &visitor.origin.client, user_agent)
            .await?;
        let mut response = redirect(&next);
        visitor.set_session(&mut response, Some(&started.secret));
        let detail = serde_json::json!({ "via": "web" });
        let event = audit::event(
            caller.name(),
            &visitor.origin.client,
            "sign-in",
            None,
            detail,
        );
        audit::attach(&mut response, event);
        Ok::<_, WebError>(response)
    }
    .await;
    respond(visitor, outcome)
}

pub async fn sign_out(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, form) = match Form::read(&app, request).await {
        Ok(read) => read,
        Err(e) => return e.bare(),
    };
    let visitor = match Visitor::of(&app, &parts).await {
        Ok(v) => v,
        Err(e) => return e.bare(),
    };
    let outcome = async {
        visitor.check_form(&parts.headers, &form)?;
        if let Some(id) = visitor.session_id() {
            app.accounts.meta().delete_web_session(id).await?;
        }
        let mut response = redirect("/");
        visitor.set_session(&mut response, None);
        Ok::<_, WebError>(response)
    }
    .await;
    respond(visitor, outcome)
}

pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub scope: String,
    pub created: String,
    pub created_iso: String,
    pub expires: String,
    pub last_used: String,
    pub active: bool,
    pub status: &'static str,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    user: String,
    tokens: Vec<TokenRow>,
    /// A token just created: its secret, shown this once.
    created: Option<CreatedToken>,
    message: String,
    error: String,
    host: String,
    /// Token management needs a password sign-in, not a session made with a token.
    via_token: bool,
}

pub struct CreatedToken {
    pub name: String,
    pub scope: String,
    pub secret: String,
    pub login: String,
}

async fn account_page(
    app: &AppState,
    visitor: &mut Visitor,
    created: Option<CreatedToken>,
    message: &str,
    error: &str,
) -> Result<Response, WebError> {
    let caller = visitor.require_user("/account")?;
    let user = caller.name().to_owned();
    let via_token = caller.via_token();
    let t = now();
    let tokens = app
        .accounts
        .meta()
        .list_tokens(&user)
        .await?
        .iter()
        .map(|token| {
            let active = token.is_active(t);
            TokenRow {
                id: token.id.clone(),
                name: token.name.clone(),
                scope: token.scope.as_str().to_owned(),
                created: ago(token.created_at, t),
                created_iso: iso(token.created_at),
                expires: token.expires_at.map_or_else(|| "never".into(), iso),
                last_used: token
                    .last_used_at
                    .map_or_else(|| "never".into(), |u| ago(u, t)),
                active,
                status: if token.revoked_at.is_some() {
                    "revoked"
                } else if active {
                    "active"
                } else {
                    "expired"
                },
            }
        })
        .collect();
    let page = AccountPage {
        layout: Layout::new(visitor, "Your account"),
        user,
        tokens,
        created,
        message: message.to_owned(),
        error: error.to_owned(),
        host: visitor.origin.host.clone(),
        via_token,
    };
    Ok(html(&page))
}

pub async fn page(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let mut visitor = match Visitor::of(&app, &parts).await {
        Ok(v) => v,
        Err(e) => return e.bare(),
    };
    let message = match parts.uri.query() {
        Some("revoked") => "The token was revoked.",
        Some("password") => "Your password was changed.",
        _ => "",
    };
    let outcome = account_page(&app, &mut visitor, None, message, "").await;
    respond(visitor, outcome)
}

/// A signed-in form post from `/account`: the caller must have signed in with a password.
async fn account_form(app: &AppState, request: Request) -> Result<(Visitor, Form), Response> {
    let (parts, form) = Form::read(app, request).await.map_err(WebError::bare)?;
    let visitor = Visitor::of(app, &parts).await.map_err(WebError::bare)?;
    if let Err(e) = visitor.check_form(&parts.headers, &form) {
        return Err(respond(visitor, Err(e)));
    }
    Ok((visitor, form))
}

fn require_password_session(visitor: &Visitor) -> Result<String, WebError> {
    let caller = visitor.require_user("/account")?;
    if caller.via_token() {
        return Err(WebError::forbidden(
            "managing tokens and passwords needs a password sign-in",
        ));
    }
    Ok(caller.name().to_owned())
}

pub async fn create_token(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (mut visitor, form) = match account_form(&app, request).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let outcome = async {
        let user = require_password_session(&visitor)?;
        let scope: TokenScope = match form.get("scope").unwrap_or_default().parse() {
            Ok(scope) => scope,
            Err(e) => return account_page(&app, &mut visitor, None, "", &format!("{e}")).await,
        };
        let expires_in = match form.get("expires").unwrap_or_default() {
            "" | "never" => None,
            days => match days.parse::<u64>() {
                Ok(days) if (1..=3650).contains(&days) => {
                    Some(std::time::Duration::from_secs(days * 86_400))
                }
                _ => {
                    let error = format!("expiry {days:?}: a number of days from 1 to 3650");
                    return account_page(&app, &mut visitor, None, "", &error).await;
                }
            },
        };
        let name = form.get("name").map(str::trim).filter(|n| !n.is_empty());
        let created = app
            .accounts
            .create_token(&user, scope, expires_in, name)
            .await?;
        let host = visitor.origin.host.clone();
        let shown = CreatedToken {
            name: created.token.name.clone(),
            scope: created.token.scope.as_str().to_owned(),
            login: format!("docker login {host} -u {user}"),
            secret: created.secret,
        };
        let mut response = account_page(&app, &mut visitor, Some(shown), "", "").await?;
        *response.status_mut() = StatusCode::CREATED;
        let detail = serde_json::json!({
            "id": created.token.id,
            "name": created.token.name,
            "scope": created.token.scope.as_str(),
        });
        let event = audit::event(&user, &visitor.origin.client, "token-create", None, detail);
        audit::attach(&mut response, event);
        Ok(response)
    }
    .await;
    respond(visitor, outcome)
}

pub async fn revoke_token(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
    request: Request,
) -> Response {
    let (visitor, _) = match account_form(&app, request).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let outcome = async {
        let user = require_password_session(&visitor)?;
        let token = app.accounts.meta().token(&id).await?;
        if token.is_none_or(|t| t.user.as_str() != user) {
            return Err(WebError::not_found());
        }
        app.accounts.revoke_token(&id).await?;
        let mut response = redirect("/account?revoked");
        let detail = serde_json::json!({ "id": id });
        let event = audit::event(&user, &visitor.origin.client, "token-revoke", None, detail);
        audit::attach(&mut response, event);
        Ok(response)
    }
    .await;
    respond(visitor, outcome)
}

pub async fn change_password(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (mut visitor, form) = match account_form(&app, request).await {
        Ok(ok) => ok,
        Err(response) => return response,
    };
    let outcome = async {
        let user = require_password_session(&visitor)?;
        let current = form.get("current").unwrap_or_default();
        let new = form.get("new").unwrap_or_default();
        if new != form.get("confirm").unwrap_or_default() {
            return account_page(&app, &mut visitor, None, "", "The new passwords differ.").await;
        }
        // The current password, checked (and limited) like any sign-in: a stolen
        // session is not enough to take the account over.
        if berth_auth::secret::looks_like_token(current)
            || app
                .accounts
                .sign_in(&user, current, &visitor.origin.client)
                .await
                .is_err()
        {
            return account_page(
                &app,
                &mut visitor,
                None,
                "",
                "The current password is not right.",
            )
            .await;
        }
        if let Err(e) = app.accounts.set_password(&user, new).await {
            return account_page(&app, &mut visitor, None, "", &e.to_string()).await;
        }
        let mut response = redirect("/account?password");
        let event = audit::event(
            &user,
            &visitor.origin.client,
            "password-change",
            None,
            serde_json::json!({}),
        );
        audit::attach(&mut response, event);
        Ok(response)
    }
    .await;
    respond(visitor, outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_on_this_site_are_followed_after_sign_in() {
        for ok in ["/", "/account", "/r/gallery/ui?x=1"] {
            assert_eq!(local_path(Some(ok)), ok);
        }
        for bad in [
            "//evil.example",
            "/\\evil.example",
            "/\t/evil.example",
            "/\n/evil.example",
            "/ /x",
            "https://evil.example",
            "evil",
            "/r/é",
        ] {
            assert_eq!(local_path(Some(bad)), "/", "{bad:?}");
        }
        assert_eq!(local_path(None), "/");
    }
}
