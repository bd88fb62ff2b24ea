//! Access tokens: `GET`/`POST /api/v1/tokens[?user=]`, `DELETE /api/v1/tokens/ID`.

use axum::http::{Method, StatusCode};
use berth_core::TokenScope;
use berth_meta::AccessToken;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiFailure, ApiResult, Ctx, no_content, ok, require_admin, require_manage_scope,
    require_password,
};
use crate::accounts::now;

#[derive(Deserialize)]
struct NewToken {
    name: Option<String>,
    scope: String,
    /// A duration such as `30d` or `12h`.
    expires_in: Option<String>,
    /// Administrators may create tokens for other users.
    user: Option<String>,
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

pub async fn handle(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    let caller = ctx.caller()?;
    let accounts = ctx.accounts;
    let meta = accounts.meta();
    match (method.clone(), rest) {
        (Method::GET, []) => {
            let user = ctx.subject_user()?;
            let tokens: Vec<Value> = meta
                .list_tokens(&user)
                .await?
                .iter()
                .map(token_json)
                .collect();
            ok(StatusCode::OK, json!({ "tokens": tokens }))
        }
        (Method::POST, []) => {
            require_password(caller)?;
            let new: NewToken = ctx.json()?;
            let user = new.user.as_deref().unwrap_or(caller.name());
            if user != caller.name() {
                require_admin(caller)?;
            }
            let scope: TokenScope = new
                .scope
                .parse()
                .map_err(|e: berth_core::AccountError| ApiFailure::invalid(e.to_string()))?;
            let expires_in = new
                .expires_in
                .as_deref()
                .map(humantime::parse_duration)
                .transpose()
                .map_err(|e| ApiFailure::invalid(format!("expires_in: {e}")))?;
            let created = accounts
                .create_token(user, scope, expires_in, new.name.as_deref())
                .await?;
            let mut body = token_json(&created.token);
            body["token"] = created.secret.into();
            ok(StatusCode::CREATED, body)
        }
        (Method::DELETE, [id]) => {
            require_manage_scope(caller)?;
            let token = meta.token(id).await?;
            let owned = token
                .as_ref()
                .is_some_and(|t| t.user.as_str() == caller.name());
            if token.is_none() || (!owned && !caller.principal.admin) {
                return Err(ApiFailure::not_found(format!("token {id}")));
            }
            accounts.revoke_token(id).await?;
            no_content()
        }
        _ => Err(ApiFailure::not_found(format!(
            "no endpoint {method} /api/v1/tokens/{}",
            rest.join("/")
        ))),
    }
}
