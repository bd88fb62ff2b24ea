//! Webhooks on a namespace or repository, for whoever manages its namespace:
//! `GET /api/v1/webhooks?scope=NS` (administrators may leave the scope out: all),
//! `POST /api/v1/webhooks` `{"scope", "url", "events": ["push", …], "secret",
//! "format": "docker-hub"|"cloudevents"}`, `DELETE /api/v1/webhooks/ID`, and
//! `GET /api/v1/webhooks/ID/deliveries` (the delivery history, newest first). A secret
//! is never shown again; answers say whether there is one.

use axum::http::{Method, StatusCode};
use berth_meta::{Delivery, Webhook};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiFailure, ApiResult, Ctx, no_content, ok, require_manage_scope};
use crate::ops::webhooks::{EVENTS, FORMATS};

#[derive(Deserialize)]
struct NewWebhook {
    scope: String,
    url: String,
    events: Vec<String>,
    secret: Option<String>,
    format: Option<String>,
}

pub async fn handle(
    ctx: &Ctx<'_>,
    method: &Method,
    rest: &[&str],
    webhooks: &crate::ops::webhooks::Webhooks,
) -> ApiResult {
    let caller = ctx.caller()?;
    let meta = ctx.accounts.meta();
    match (method.as_str(), rest) {
        ("GET", []) => {
            let scope = ctx.param("scope");
            match &scope {
                Some(scope) => may_manage(ctx, scope).await?,
                None => super::require_admin(caller)?,
            }
            let hooks: Vec<Value> = meta
                .webhooks()
                .await?
                .iter()
                .filter(|h| scope.as_ref().is_none_or(|s| in_scope(&h.scope, s)))
                .map(shown)
                .collect();
            ok(StatusCode::OK, json!({ "webhooks": hooks }))
        }
        ("POST", []) => {
            require_manage_scope(caller)?;
            let wanted: NewWebhook = ctx.json()?;
            may_manage(ctx, &wanted.scope).await?;
            let hook = checked(wanted, caller.name())?;
            meta.add_webhook(&hook).await?;
            webhooks.changed();
            ok(StatusCode::CREATED, shown(&hook))
        }
        ("DELETE", [id]) => {
            require_manage_scope(caller)?;
            let hook = find(ctx, id).await?;
            may_manage(ctx, &hook.scope).await?;
            meta.remove_webhook(id).await?;
            webhooks.changed();
            no_content()
        }
        ("GET", [id, "deliveries"]) => {
            let hook = find(ctx, id).await?;
            may_manage(ctx, &hook.scope).await?;
            let deliveries: Vec<Value> = meta
                .deliveries(id, 100)
                .await?
                .iter()
                .map(delivery_json)
                .collect();
            ok(StatusCode::OK, json!({ "deliveries": deliveries }))
        }
        ("GET" | "POST" | "DELETE", _) => Err(ApiFailure::not_found(format!(
            "no endpoint {method} /api/v1/webhooks/{}",
            rest.join("/")
        ))),
        _ => Err(ApiFailure::method_not_allowed()),
    }
}

/// Whether a webhook on `hook_scope` is within `scope` (a namespace takes its repositories').
fn in_scope(hook_scope: &str, scope: &str) -> bool {
    hook_scope == scope || hook_scope.split('/').next() == Some(scope)
}

async fn may_manage(ctx: &Ctx<'_>, scope: &str) -> Result<(), ApiFailure> {
    let caller = ctx.caller()?;
    crate::policy::check_scope(scope).map_err(|e| ApiFailure::invalid(e.to_string()))?;
    let namespace = scope.split('/').next().unwrap_or(scope);
    if ctx
        .accounts
        .may_manage(&caller.principal, namespace)
        .await?
    {
        Ok(())
    } else {
        Err(ApiFailure::forbidden("you may not manage this namespace"))
    }
}

async fn find(ctx: &Ctx<'_>, id: &str) -> Result<Webhook, ApiFailure> {
    ctx.accounts
        .meta()
        .webhooks()
        .await?
        .into_iter()
        .find(|h| h.id == id)
        .ok_or_else(|| ApiFailure::not_found(format!("webhook {id}")))
}

/// A new webhook from what was asked, checked.
pub fn checked_webhook(
    scope: &str,
    url: &str,
    events: &[String],
    secret: Option<String>,
    format: Option<&str>,
    actor: &str,
) -> Result<Webhook, String> {
    crate::policy::check_scope(scope).map_err(|e| e.to_string())?;
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("url {url:?}: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host().is_none() {
        return Err(format!("url {url:?}: use an http:// or https:// URL"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("url: no credentials in the URL; sign with a secret instead".into());
    }
    if events.is_empty() {
        return Err(format!("events: one or more of {}", EVENTS.join(", ")));
    }
    let mut wanted: Vec<String> = Vec::new();
    for event in events {
        let event = event.trim();
        if !EVENTS.contains(&event) {
            return Err(format!("event {event:?}: use {}", EVENTS.join(", ")));
        }
        if !wanted.iter().any(|e| e == event) {
            wanted.push(event.to_owned());
        }
    }
    let format = format.unwrap_or("docker-hub");
    if !FORMATS.contains(&format) {
        return Err(format!("format {format:?}: use {}", FORMATS.join(" or ")));
    }
    Ok(Webhook {
        id: uuid::Uuid::new_v4().simple().to_string(),
        scope: scope.to_owned(),
        url: url.to_owned(),
        events: wanted,
        secret: secret.filter(|s| !s.is_empty()),
        format: format.to_owned(),
        created_by: actor.to_owned(),
        created_at: crate::accounts::now(),
    })
}

fn checked(wanted: NewWebhook, actor: &str) -> Result<Webhook, ApiFailure> {
    checked_webhook(
        &wanted.scope,
        &wanted.url,
        &wanted.events,
        wanted.secret,
        wanted.format.as_deref(),
        actor,
    )
    .map_err(ApiFailure::invalid)
}

fn shown(hook: &Webhook) -> Value {
    json!({
        "id": hook.id,
        "scope": hook.scope,
        "url": hook.url,
        "events": hook.events,
        "format": hook.format,
        "secret": hook.secret.is_some(),
        "created_by": hook.created_by,
        "created_at": hook.created_at,
    })
}

pub fn delivery_json(d: &Delivery) -> Value {
    json!({
        "id": d.id,
        "event": d.event,
        "state": d.state,
        "attempts": d.attempts,
        "status": d.last_status,
        "error": d.last_error,
        "created_at": d.created_at,
        "finished_at": d.finished_at,
        "next_attempt_at": (d.state == "pending").then_some(d.next_attempt_at),
    })
}
