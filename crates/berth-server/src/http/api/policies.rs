//! Policies: `GET /api/v1/policies/SCOPE` (the settings on a namespace or repository
//! and, for a repository, the policy in force), `PUT /api/v1/policies/SCOPE/KEY` with
//! `{"value": …}` and `DELETE /api/v1/policies/SCOPE/KEY` (back to inheriting), for
//! whoever manages the namespace (an administrator, also on a namespace no one owns).

use axum::http::{Method, StatusCode};
use berth_core::RepoName;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiFailure, ApiResult, Ctx, ok, require_manage_scope};
use crate::policy::{self, EffectivePolicy, GoldenMode, PolicyError};

#[derive(Deserialize)]
struct NewValue {
    value: String,
}

impl From<PolicyError> for ApiFailure {
    fn from(e: PolicyError) -> Self {
        ApiFailure::invalid(e.to_string())
    }
}

pub async fn handle(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    match (method.clone(), rest) {
        (Method::PUT | Method::DELETE, [scope @ .., key]) if !scope.is_empty() => {
            let scope = scope.join("/");
            policy::check_scope(&scope)?;
            if !policy::KEYS.contains(key) {
                return Err(PolicyError::UnknownKey((*key).to_owned()).into());
            }
            let caller = ctx.caller()?;
            require_manage_scope(caller)?;
            let namespace = scope.split('/').next().unwrap_or_default();
            if !ctx
                .accounts
                .may_manage(&caller.principal, namespace)
                .await?
            {
                return Err(ApiFailure::forbidden("you may not manage this namespace"));
            }
            let value = if *method == Method::PUT {
                let wanted: NewValue = ctx.json()?;
                policy::normalize(key, &wanted.value)?
            } else {
                None
            };
            ctx.accounts
                .meta()
                .set_policy(&scope, key, value.as_deref(), caller.name())
                .await?;
            show(ctx, &scope).await
        }
        (Method::GET, scope) if !scope.is_empty() => {
            let scope = scope.join("/");
            policy::check_scope(&scope)?;
            show(ctx, &scope).await
        }
        (_, [_, ..]) => Err(ApiFailure::method_not_allowed()),
        _ => Err(ApiFailure::not_found(
            "name a namespace or repository".into(),
        )),
    }
}

/// `{"scope", "settings": [{"scope", "key", "value", "updated_by", "updated_at"}],
/// "effective": {KEY: VALUE}}`; a repository's settings include its namespace's.
async fn show(ctx: &Ctx<'_>, scope: &str) -> ApiResult {
    let meta = ctx.accounts.meta();
    let settings = match scope.parse::<RepoName>() {
        Ok(repo) if scope.contains('/') => {
            if !ctx.may_read(&repo, true).await? {
                return Err(ApiFailure::not_found(format!("repository {repo}")));
            }
            let settings = meta.policies(&[repo.namespace(), repo.as_str()]).await?;
            let effective = policy::effective(&repo, &settings);
            return ok(StatusCode::OK, body(scope, &settings, Some(&effective)));
        }
        _ => meta.policies(&[scope]).await?,
    };
    ok(StatusCode::OK, body(scope, &settings, None))
}

fn body(
    scope: &str,
    settings: &[berth_meta::PolicySetting],
    effective: Option<&EffectivePolicy>,
) -> Value {
    let listed: Vec<Value> = settings
        .iter()
        .map(|s| {
            json!({
                "scope": s.scope,
                "key": s.key,
                "value": s.value,
                "updated_by": s.updated_by,
                "updated_at": s.updated_at,
            })
        })
        .collect();
    let mut out = json!({ "scope": scope, "settings": listed });
    if let Some(p) = effective {
        out["effective"] = effective_json(p);
    }
    out
}

/// The policy in force, one value per key.
pub fn effective_json(p: &EffectivePolicy) -> Value {
    let immutable: Vec<&str> = p.immutable.iter().map(|t| t.as_str()).collect();
    json!({
        policy::FLOATING_TAGS: if p.semver_floats { "semver" } else { "off" },
        policy::IMMUTABLE_TAGS: if immutable.is_empty() { "off".to_owned() } else { immutable.join(",") },
        policy::REQUIRE_GOLDEN_BASE: match p.golden {
            GoldenMode::Off => "off",
            GoldenMode::Warn => "warn",
            GoldenMode::Enforce => "enforce",
        },
    })
}
