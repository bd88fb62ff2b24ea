//! `GET /api/v1/search?q=TEXT[&official=true][&verified=true][&golden=true][&page=P][&n=N]`:
//! repositories whose name (any part) or description matches, that the caller may read.

use axum::http::{Method, StatusCode};
use berth_auth::Principal;
use serde_json::json;

use super::{ApiFailure, ApiResult, Ctx, ok, visibility_word};
use crate::accounts::Accounts;
use crate::catalog::{self, Search};

pub async fn handle(ctx: &Ctx<'_>, method: &Method) -> ApiResult {
    if *method != Method::GET {
        return Err(ApiFailure::method_not_allowed());
    }
    let flag = |key: &str| ctx.param(key).is_some_and(|v| v == "true" || v == "1");
    let number = |key: &str, default: u32| -> Result<u32, ApiFailure> {
        match ctx.param(key) {
            Some(v) => v
                .parse()
                .map_err(|_| ApiFailure::invalid(format!("{key}={v}: not a number"))),
            None => Ok(default),
        }
    };
    let wanted = Search {
        text: ctx.param("q").unwrap_or_default(),
        official: flag("official"),
        verified: flag("verified"),
        golden: flag("golden"),
        page: number("page", 1)?,
        per_page: number("n", 25)?,
    };
    let anonymous = Principal::anonymous();
    let principal = ctx.caller.as_ref().map_or(&anonymous, |c| &c.principal);
    let found = catalog::search(ctx.accounts.meta(), Accounts::viewer(principal), &wanted).await?;
    let results: Vec<serde_json::Value> = found
        .items
        .iter()
        .map(|listed| {
            json!({
                "name": listed.card.name.as_str(),
                "description": listed.card.description,
                "visibility": visibility_word(listed.card.public),
                "mark": listed.mark.as_str(),
                "golden": listed.golden,
                "pushed_at": listed.card.pushed_at,
            })
        })
        .collect();
    ok(
        StatusCode::OK,
        json!({
            "query": wanted.text,
            "total": found.total,
            "capped": found.capped,
            "page": found.page,
            "per_page": found.per_page,
            "pages": found.pages(),
            "results": results,
        }),
    )
}
