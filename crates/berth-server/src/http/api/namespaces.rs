//! Namespaces: `PUT /api/v1/namespaces/NS/default-visibility`.

use axum::http::Method;
use serde::Deserialize;

use super::{ApiFailure, ApiResult, Ctx, no_content, parse_visibility, require_manage_scope};

#[derive(Deserialize)]
struct Visibility {
    visibility: Option<String>,
}

pub async fn handle(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
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
