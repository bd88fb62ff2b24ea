//! Namespaces: `GET /api/v1/namespaces/NS` (its mark: official, verified or none), `PUT
//! /api/v1/namespaces/NS/mark` (administrators), `PUT
//! /api/v1/namespaces/NS/default-visibility`, `GET /api/v1/namespaces/NS/storage`
//! (what its repositories hold and its quota; for who manages it), and `PUT
//! /api/v1/namespaces/NS/quota` `{"quota": "20GiB"}` (or `null`; administrators).

use axum::http::Method;
use serde::Deserialize;

use super::{ApiFailure, ApiResult, Ctx, no_content, parse_visibility, require_manage_scope};
use crate::marks::{Marks, NamespaceMark};

#[derive(Deserialize)]
struct Visibility {
    visibility: Option<String>,
}

#[derive(Deserialize)]
struct Mark {
    mark: String,
}

#[derive(Deserialize)]
struct Quota {
    quota: Option<String>,
}

pub async fn handle(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    if let [namespace] = rest {
        if *method != Method::GET {
            return Err(ApiFailure::method_not_allowed());
        }
        let marks = Marks::load(ctx.accounts.meta()).await?;
        return super::ok(
            axum::http::StatusCode::OK,
            serde_json::json!({ "namespace": namespace, "mark": marks.of(namespace).as_str() }),
        );
    }
    if let [namespace, "mark"] = rest {
        if *method != Method::PUT {
            return Err(ApiFailure::method_not_allowed());
        }
        let caller = ctx.caller()?;
        super::require_admin(caller)?;
        require_manage_scope(caller)?;
        let wanted: Mark = ctx.json()?;
        let mark = NamespaceMark::parse(&wanted.mark).ok_or_else(|| {
            ApiFailure::invalid(format!(
                "mark {:?}: use official, verified or none",
                wanted.mark
            ))
        })?;
        crate::marks::set(ctx.accounts.meta(), namespace, mark).await?;
        return super::ok(
            axum::http::StatusCode::OK,
            serde_json::json!({ "namespace": namespace, "mark": mark.as_str() }),
        );
    }
    if let [namespace, "quota"] = rest {
        if *method != Method::PUT {
            return Err(ApiFailure::method_not_allowed());
        }
        let caller = ctx.caller()?;
        super::require_admin(caller)?;
        require_manage_scope(caller)?;
        crate::policy::check_scope(namespace).map_err(|e| ApiFailure::invalid(e.to_string()))?;
        let wanted: Quota = ctx.json()?;
        let bytes = wanted
            .quota
            .as_deref()
            .filter(|q| !matches!(*q, "none" | ""))
            .map(berth_core::size::parse)
            .transpose()
            .map_err(ApiFailure::invalid)?;
        crate::policy::set_quota(ctx.accounts.meta(), namespace, bytes, caller.name()).await?;
        return storage(ctx, namespace).await;
    }
    if let [namespace, "storage"] = rest {
        if *method != Method::GET {
            return Err(ApiFailure::method_not_allowed());
        }
        return storage(ctx, namespace).await;
    }
    let [namespace, "default-visibility"] = rest else {
        return Err(ApiFailure::not_found(format!(
            "no endpoint {method} /api/v1/namespaces/{}",
            rest.join("/")
        )));
    };
    if *method != Method::PUT {
        return Err(ApiFailure::method_not_allowed());
    }
    let caller = ctx.caller()?;
    require_manage_scope(caller)?;
    if !ctx
        .accounts
        .may_manage(&caller.principal, namespace)
        .await?
    {
        return Err(ApiFailure::forbidden("you may not manage this namespace"));
    }
    let wanted: Visibility = ctx.json()?;
    let public = wanted
        .visibility
        .as_deref()
        .map(parse_visibility)
        .transpose()?;
    if !ctx
        .accounts
        .meta()
        .set_namespace_default(namespace, public)
        .await?
    {
        return Err(ApiFailure::not_found(format!("namespace {namespace}")));
    }
    no_content()
}

/// Largest number of repositories listed with a namespace's storage.
const MAX_REPOSITORIES: u32 = 1000;

/// `{"namespace", "bytes", "repositories": [{"name", "bytes", …}], "more"}`: the
/// namespace's bytes count each blob once however many of its repositories hold it.
async fn storage(ctx: &Ctx<'_>, namespace: &str) -> ApiResult {
    let caller = ctx.caller()?;
    if !ctx
        .accounts
        .may_manage(&caller.principal, namespace)
        .await?
    {
        return Err(ApiFailure::forbidden("you may not manage this namespace"));
    }
    let meta = ctx.accounts.meta();
    let bytes = meta.namespace_usage(namespace).await?;
    let quota = crate::policy::quota_of(meta, namespace).await?;
    let last = ctx.param("last");
    let mut repositories = meta
        .repository_usage(Some(namespace), last.as_deref(), MAX_REPOSITORIES + 1)
        .await?;
    let more = repositories.len() > MAX_REPOSITORIES as usize;
    repositories.truncate(MAX_REPOSITORIES as usize);
    let listed: Vec<serde_json::Value> = repositories
        .iter()
        .map(|u| {
            let mut entry = super::repositories::usage_json(Some(u));
            entry["name"] = serde_json::Value::from(u.repository.as_str());
            entry
        })
        .collect();
    super::ok(
        axum::http::StatusCode::OK,
        serde_json::json!({
            "namespace": namespace,
            "bytes": bytes,
            "quota": quota,
            "repositories": listed,
            "more": more,
        }),
    )
}
