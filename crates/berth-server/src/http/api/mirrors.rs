//! `GET /api/v1/mirrors`: each mirrored upstream with its counters (hits, misses,
//! bytes served from the cache instead of fetched, upstream errors), the bytes its
//! cache holds and its cap; `GET /api/v1/mirrors/pins`, `PUT /api/v1/mirrors/pins`
//! `{"reference": "hub/library/alpine:3"}` (a tag or `@digest`), `DELETE
//! /api/v1/mirrors/pins?reference=…`: images kept whatever the cap. Administrators.

use std::sync::atomic::Ordering;

use axum::http::{Method, StatusCode};
use serde_json::json;

use super::{ApiFailure, ApiResult, Ctx, ok, require_admin};
use crate::mirror::Mirror;

#[derive(serde::Deserialize)]
struct Pin {
    reference: String,
}

/// `REPO:TAG` or `REPO@DIGEST` as a repository and reference, the repository mirrored.
fn pin_target(ctx: &Ctx<'_>, text: &str) -> Result<(berth_core::RepoName, String), ApiFailure> {
    let (name, reference) = match text.split_once('@') {
        Some((name, digest)) => (name, digest.to_owned()),
        None => {
            let (name, tag) = berth_core::name::split_tag(text);
            (name, tag.unwrap_or("latest").to_owned())
        }
    };
    let repo: berth_core::RepoName = name
        .parse()
        .map_err(|e: berth_core::NameError| ApiFailure::invalid(e.to_string()))?;
    if ctx.mirror.route(&repo).is_none() {
        return Err(ApiFailure::invalid(format!(
            "{repo} is under no mirror's prefix"
        )));
    }
    Ok((repo, reference))
}

pub async fn pins(ctx: &Ctx<'_>, method: &Method) -> ApiResult {
    let caller = ctx.caller()?;
    require_admin(caller)?;
    let meta = ctx.accounts.meta();
    match *method {
        Method::GET => {}
        Method::PUT => {
            let wanted: Pin = ctx.json()?;
            let (repo, reference) = pin_target(ctx, &wanted.reference)?;
            meta.pin(&repo, &reference, caller.name()).await?;
        }
        Method::DELETE => {
            let text = ctx
                .param("reference")
                .ok_or_else(|| ApiFailure::invalid("?reference= is required".into()))?;
            let (repo, reference) = pin_target(ctx, &text)?;
            if !meta.unpin(&repo, &reference).await? {
                return Err(ApiFailure::not_found(format!("pin {text}")));
            }
        }
        _ => return Err(ApiFailure::method_not_allowed()),
    }
    let listed: Vec<serde_json::Value> = meta
        .pins()
        .await?
        .iter()
        .map(|p| {
            json!({
                "repository": p.repository.as_str(),
                "reference": p.reference,
                "pinned_by": p.pinned_by,
                "pinned_at": p.pinned_at,
            })
        })
        .collect();
    ok(StatusCode::OK, json!({ "pins": listed }))
}

pub async fn handle(ctx: &Ctx<'_>, method: &Method, mirror: &Mirror) -> ApiResult {
    if *method != Method::GET {
        return Err(ApiFailure::method_not_allowed());
    }
    require_admin(ctx.caller()?)?;
    let mut upstreams: Vec<serde_json::Value> = Vec::new();
    for u in mirror.upstreams() {
        let bytes = ctx.accounts.meta().mirror_usage(u.prefix()).await?;
        upstreams.push({
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
                "bytes": bytes,
                "max_size": u.config.max_size,
            })
        });
    }
    ok(StatusCode::OK, json!({ "mirrors": upstreams }))
}
