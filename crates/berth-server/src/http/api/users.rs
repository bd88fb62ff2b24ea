//! Users: `GET`/`POST /api/v1/users`, `DELETE /api/v1/users/NAME` (administrators),
//! `PUT /api/v1/users/NAME/password` (the user, with their current password, or an
//! administrator).

use axum::http::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiFailure, ApiResult, Ctx, no_content, ok, require_admin, require_password};

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

pub async fn handle(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    let caller = ctx.caller()?;
    let accounts = ctx.accounts;
    match (method.clone(), rest) {
        (Method::GET, []) => {
            require_admin(caller)?;
            let users: Vec<Value> = accounts
                .meta()
                .list_users()
                .await?
                .iter()
                .map(|u| json!({ "name": u.name.as_str(), "admin": u.admin, "created_at": u.created_at }))
                .collect();
            ok(StatusCode::OK, json!({ "users": users }))
        }
        (Method::POST, []) => {
            require_admin(caller)?;
            require_password(caller)?;
            let new: NewUser = ctx.json()?;
            let user = accounts
                .create_user(&new.name, &new.password, new.admin)
                .await?;
            ok(
                StatusCode::CREATED,
                json!({ "name": user.name.as_str(), "admin": user.admin }),
            )
        }
        (Method::DELETE, [name]) => {
            require_admin(caller)?;
            require_password(caller)?;
            accounts.delete_user(name).await?;
            no_content()
        }
        (Method::PUT, [name, "password"]) => {
            require_password(caller)?;
            let new: NewPassword = ctx.json()?;
            if caller.name() != *name {
                require_admin(caller)?;
            } else {
                // One's own password needs the current one: a stolen session is not
                // enough to take the account over.
                let current = new.current_password.as_deref().unwrap_or_default();
                if berth_auth::secret::looks_like_token(current)
                    || accounts
                        .sign_in(name, current, &ctx.origin.client)
                        .await
                        .is_err()
                {
                    return Err(ApiFailure::forbidden("current_password is not right"));
                }
            }
            accounts.set_password(name, &new.password).await?;
            no_content()
        }
        _ => Err(ApiFailure::not_found(format!(
            "no endpoint {method} /api/v1/users/{}",
            rest.join("/")
        ))),
    }
}
