//! Web sessions: sign in (`POST /api/v1/session`), sign out (`DELETE /api/v1/session`),
//! the caller's active sessions (`GET /api/v1/sessions`), ending one
//! (`DELETE /api/v1/sessions/ID`) or all of them, "sign out everywhere"
//! (`DELETE /api/v1/sessions`). Sessions live in the store: ending one takes effect at
//! the next request, wherever its cookie is.

use axum::http::request::Parts;
use axum::http::{Method, StatusCode, header};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiFailure, ApiResult, Ctx, no_content, ok, require_manage_scope, set_session_cookie};
use crate::accounts::{Proof, now};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "berth_session";

#[derive(Deserialize)]
struct SignIn {
    username: String,
    password: String,
}

/// The session cookie's value, if the request has one.
pub fn cookie(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// `/api/v1/session`: sign in and out.
pub async fn current(ctx: &Ctx<'_>, method: &Method) -> ApiResult {
    match *method {
        Method::POST => sign_in(ctx).await,
        Method::DELETE => {
            if let Some(caller) = &ctx.caller
                && let Proof::Session(id) = &caller.proof
            {
                ctx.accounts.meta().delete_web_session(id).await?;
            }
            let mut response = no_content()?;
            set_session_cookie(&mut response, ctx.origin, None);
            Ok(response)
        }
        _ => Err(ApiFailure::method_not_allowed()),
    }
}

async fn sign_in(ctx: &Ctx<'_>) -> ApiResult {
    let form: SignIn = ctx.json()?;
    let caller = ctx
        .accounts
        .sign_in(&form.username, &form.password, &ctx.origin.client)
        .await?;
    let user_agent = ctx
        .parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let started = ctx
        .accounts
        .start_session(&caller, &ctx.origin.client, user_agent)
        .await?;
    let mut response = ok(
        StatusCode::OK,
        json!({
            "name": caller.name(),
            "admin": caller.principal.admin,
            "session": started.session.id,
        }),
    )?;
    set_session_cookie(&mut response, ctx.origin, Some(&started.secret));
    Ok(response)
}

/// `/api/v1/sessions[/ID]`.
pub async fn handle(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    let caller = ctx.caller()?;
    let current = match &caller.proof {
        Proof::Session(id) => Some(id.as_str()),
        _ => None,
    };
    let meta = ctx.accounts.meta();
    match (method.clone(), rest) {
        (Method::GET, []) => {
            let user = ctx.subject_user()?;
            let sessions: Vec<Value> = meta
                .web_sessions(&user, now())
                .await?
                .iter()
                .map(|s| {
                    json!({
                        "id": s.id,
                        "user": s.user.as_str(),
                        "created_at": s.created_at,
                        "expires_at": s.expires_at,
                        "last_seen_at": s.last_seen_at,
                        "client": s.client,
                        "user_agent": s.user_agent,
                        "current": current == Some(s.id.as_str()),
                    })
                })
                .collect();
            ok(StatusCode::OK, json!({ "sessions": sessions }))
        }
        (Method::DELETE, []) => {
            require_manage_scope(caller)?;
            let user = ctx.subject_user()?;
            meta.delete_web_sessions(&user).await?;
            let mut response = no_content()?;
            if user == caller.name() {
                set_session_cookie(&mut response, ctx.origin, None);
            }
            Ok(response)
        }
        (Method::DELETE, [id]) => {
            require_manage_scope(caller)?;
            let mine = meta
                .web_sessions(caller.name(), now())
                .await?
                .iter()
                .any(|s| s.id == *id);
            // Administrators may end anyone's session; it is found by id alone.
            if !(mine || caller.principal.admin) || !meta.delete_web_session(id).await? {
                return Err(ApiFailure::not_found(format!("session {id}")));
            }
            no_content()
        }
        _ => Err(ApiFailure::not_found(format!(
            "no endpoint {method} /api/v1/sessions/{}",
            rest.join("/")
        ))),
    }
}
