//! Tag history and the dry run of a push, for anyone who may pull the repository:
//! `GET /api/v1/tag-history/NAME[?tag=&before=&n=]` (newest first; `before` is the
//! `id` of the last move of the previous page) and `GET /api/v1/tag-plan/NAME?tag=TAG`
//! (what pushing TAG would move under the repository's policy now).

use axum::http::{Method, StatusCode};
use berth_core::{RepoName, Tag};
use serde_json::{Value, json};

use super::{ApiFailure, ApiResult, Ctx, ok};
use crate::policy;

/// Largest page of a tag history.
const MAX_PAGE: u32 = 1000;

/// The repository named by the path, if the caller may pull it (else 404, as for a
/// repository that does not exist).
async fn readable(ctx: &Ctx<'_>, segments: &[&str]) -> Result<RepoName, ApiFailure> {
    let repo: RepoName = segments
        .join("/")
        .parse()
        .map_err(|e: berth_core::NameError| ApiFailure::invalid(e.to_string()))?;
    if ctx.may_read(&repo, false).await? {
        Ok(repo)
    } else {
        Err(ApiFailure::not_found(format!("repository {repo}")))
    }
}

pub async fn history(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    if *method != Method::GET {
        return Err(ApiFailure::method_not_allowed());
    }
    let repo = readable(ctx, rest).await?;
    let number = |key: &str| -> Result<Option<i64>, ApiFailure> {
        ctx.param(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| ApiFailure::invalid(format!("{key}={v}: not a number")))
            })
            .transpose()
    };
    let n = number("n")?.map_or(100, |n| n.clamp(1, i64::from(MAX_PAGE)) as u32);
    let before = number("before")?;
    let tag = ctx.param("tag");
    let mut moves = ctx
        .accounts
        .meta()
        .tag_history(&repo, tag.as_deref(), before, n + 1)
        .await?;
    let more = moves.len() > n as usize;
    moves.truncate(n as usize);
    let listed: Vec<Value> = moves
        .iter()
        .map(|m| {
            json!({
                "id": m.id,
                "tag": m.tag,
                "from": m.from.as_ref().map(ToString::to_string),
                "to": m.to.as_ref().map(ToString::to_string),
                "reason": m.reason.as_str(),
                "actor": m.actor,
                "at": m.at,
            })
        })
        .collect();
    ok(
        StatusCode::OK,
        json!({ "repository": repo.as_str(), "moves": listed, "more": more }),
    )
}

pub async fn plan(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    if *method != Method::GET {
        return Err(ApiFailure::method_not_allowed());
    }
    let repo = readable(ctx, rest).await?;
    let tag: Tag = ctx
        .param("tag")
        .ok_or_else(|| ApiFailure::invalid("name the tag to push: ?tag=".into()))?
        .parse()
        .map_err(|e: berth_core::NameError| ApiFailure::invalid(e.to_string()))?;
    let plan = policy::plan_tag_push(ctx.accounts.meta(), &repo, &tag).await?;
    let moves: Vec<Value> = plan
        .moves
        .iter()
        .map(|m| {
            json!({
                "tag": m.tag,
                "current": m.current.as_ref().map(ToString::to_string),
                "immutable": m.immutable,
            })
        })
        .collect();
    ok(
        StatusCode::OK,
        json!({
            "repository": repo.as_str(),
            "tag": tag.as_str(),
            "policy": super::policies::effective_json(&plan.policy),
            "moves": moves,
        }),
    )
}
