//! `GET /api/v1/audit?since=&user=&repo=&limit=&before=`: the audit log, newest first,
//! for administrators. `since` is unix seconds, an RFC 3339 time or an age (`24h`);
//! `repo` takes a repository, or a namespace and everything under it; `before` is the
//! `id` of the last event of the previous page (`next` in the answer).

use axum::http::{Method, StatusCode};
use berth_meta::AuditQuery;
use serde_json::{Value, json};

use super::{ApiFailure, ApiResult, Ctx, ok, require_admin};

/// The most events one page holds (also the default).
const MAX_PAGE: u32 = 1000;

pub async fn list(ctx: &Ctx<'_>, method: &Method) -> ApiResult {
    let caller = ctx.caller()?;
    require_admin(caller)?;
    if *method != Method::GET {
        return Err(ApiFailure::method_not_allowed());
    }
    let number = |key: &str| -> Result<Option<i64>, ApiFailure> {
        ctx.param(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiFailure::invalid(format!("{key}={v:?}: expected a number")))
            })
            .transpose()
    };
    let since = match ctx.param("since") {
        Some(text) => Some(
            crate::ops::audit::parse_since(&text, crate::accounts::now())
                .map_err(ApiFailure::invalid)?,
        ),
        None => None,
    };
    let limit = number("limit")?.map_or(MAX_PAGE, |n| n.clamp(1, i64::from(MAX_PAGE)) as u32);
    let query = AuditQuery {
        since,
        actor: ctx.param("user"),
        target: ctx.param("repo"),
        before_id: number("before")?,
        limit,
    };
    let entries = ctx.accounts.meta().audit_events(&query).await?;
    let next = (entries.len() == limit as usize)
        .then(|| entries.last().map(|e| e.id))
        .flatten();
    let events: Vec<Value> = entries
        .into_iter()
        .map(|e| {
            json!({
                "id": e.id,
                "at": e.event.at,
                "actor": e.event.actor,
                "client": e.event.client,
                "action": e.event.action,
                "target": e.event.target,
                "detail": serde_json::from_str::<Value>(&e.event.detail).unwrap_or(Value::Null),
            })
        })
        .collect();
    ok(StatusCode::OK, json!({ "events": events, "next": next }))
}
