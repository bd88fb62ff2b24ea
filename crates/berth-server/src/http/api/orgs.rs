//! Organizations: `GET`/`POST /api/v1/orgs`, `GET /api/v1/orgs/ORG/members`,
//! `PUT`/`DELETE /api/v1/orgs/ORG/members/USER`.

use axum::http::{Method, StatusCode};
use berth_core::Role;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ApiFailure, ApiResult, Ctx, no_content, ok, require_admin, require_manage_scope,
    require_password,
};

#[derive(Deserialize)]
struct NewOrg {
    name: String,
    owner: Option<String>,
}

#[derive(Deserialize)]
struct Membership {
    role: String,
}

pub async fn handle(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    let caller = ctx.caller()?;
    let accounts = ctx.accounts;
    let meta = accounts.meta();
    match (method.clone(), rest) {
        (Method::GET, []) => {
            let orgs: Vec<Value> = meta
                .list_orgs()
                .await?
                .iter()
                .map(|o| json!({ "name": o.name.as_str(), "created_at": o.created_at }))
                .collect();
            ok(StatusCode::OK, json!({ "orgs": orgs }))
        }
        (Method::POST, []) => {
            require_password(caller)?;
            let new: NewOrg = ctx.json()?;
            let owner = new.owner.as_deref().unwrap_or(caller.name());
            if owner != caller.name() {
                require_admin(caller)?;
            }
            accounts.create_org(&new.name, owner).await?;
            ok(
                StatusCode::CREATED,
                json!({ "name": new.name, "owner": owner }),
            )
        }
        (Method::GET, [org, "members"]) => {
            let members = meta
                .members(org)
                .await?
                .ok_or_else(|| ApiFailure::not_found(format!("organization {org}")))?;
            let is_member = members.iter().any(|m| m.user.as_str() == caller.name());
            if !is_member && !caller.principal.admin {
                return Err(ApiFailure::not_found(format!("organization {org}")));
            }
            let members: Vec<Value> = members
                .iter()
                .map(|m| json!({ "user": m.user.as_str(), "role": m.role.as_str() }))
                .collect();
            ok(StatusCode::OK, json!({ "members": members }))
        }
        (Method::PUT | Method::DELETE, [org, "members", user]) => {
            require_manage_scope(caller)?;
            if !accounts.may_manage(&caller.principal, org).await? {
                return Err(ApiFailure::forbidden(
                    "only the organization's admins may do this",
                ));
            }
            if *method == Method::PUT {
                let membership: Membership = ctx.json()?;
                let role: Role = membership
                    .role
                    .parse()
                    .map_err(|e: berth_core::AccountError| ApiFailure::invalid(e.to_string()))?;
                accounts.set_member(org, user, role).await?;
            } else {
                accounts.remove_member(org, user).await?;
            }
            no_content()
        }
        _ => Err(ApiFailure::not_found(format!(
            "no endpoint {method} /api/v1/orgs/{}",
            rest.join("/")
        ))),
    }
}
