//! `GET /api/v1/mirrors`: each mirrored upstream with its counters (hits, misses,
//! bytes served from the cache instead of fetched, upstream errors). Administrators.

use std::sync::atomic::Ordering;

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::{ApiFailure, ApiResult, Ctx, ok, require_admin};
use crate::mirror::Mirror;

pub async fn handle(ctx: &Ctx<'_>, method: &Method, mirror: &Mirror) -> ApiResult {
    if *method != Method::GET {
        return Err(ApiFailure::method_not_allowed());
    }
    require_admin(ctx.caller()?)?;
    let upstreams: Vec<serde_json::Value> = mirror
        .upstreams()
        .iter()
        .map(|u| {
            let stats = &u.stats;
            json!({
                "prefix": u.config.prefix,
                "url": u.config.url,
                "tag_ttl_seconds": u.config.tag_ttl.as_secs(),
                "timeout_seconds": u.config.timeout.as_secs(),
                "hits": stats.hits.load(Ordering::Relaxed),
                "misses": stats.misses.load(Ordering::Relaxed),
                "bytes_saved": stats.bytes_saved.load(Ordering::Relaxed),
                "upstream_errors": stats.upstream_errors.load(Ordering::Relaxed),
            })
        })
        .collect();
    ok(StatusCode::OK, json!({ "mirrors": upstreams }))
}
