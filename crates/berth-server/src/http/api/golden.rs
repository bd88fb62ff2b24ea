//! Golden images and what the golden check said: `GET /api/v1/golden` (the entries of
//! repositories the caller may pull, or whose namespace they manage), `POST
//! /api/v1/golden` with `{"repository", "tags"?}` and `DELETE
//! /api/v1/golden/REPO[?tags=GLOB]` (namespace managers), and `GET
//! /api/v1/push-warnings/REPO` (what `require-golden-base warn` let through).

use axum::http::{Method, StatusCode};
use berth_core::RepoName;
use berth_core::tag_policy::TagPattern;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiFailure, ApiResult, Ctx, no_content, ok, require_manage_scope};

#[derive(Deserialize)]
struct NewGolden {
    repository: String,
    tags: Option<String>,
}

fn repo_name(text: &str) -> Result<RepoName, ApiFailure> {
    text.parse()
        .map_err(|e: berth_core::NameError| ApiFailure::invalid(e.to_string()))
}

fn tag_glob(tags: Option<&str>) -> Result<Option<String>, ApiFailure> {
    tags.filter(|t| !t.is_empty())
        .map(|t| {
            TagPattern::parse(t)
                .map(|p| p.as_str().to_owned())
                .map_err(|e| ApiFailure::invalid(e.to_string()))
        })
        .transpose()
}

async fn require_manager(ctx: &Ctx<'_>, repo: &RepoName) -> Result<String, ApiFailure> {
    let caller = ctx.caller()?;
    require_manage_scope(caller)?;
    if !ctx
        .accounts
        .may_manage(&caller.principal, repo.namespace())
        .await?
    {
        return Err(ApiFailure::forbidden("you may not manage this namespace"));
    }
    Ok(caller.name().to_owned())
}

pub async fn handle(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    match (method.clone(), rest) {
        (Method::GET, []) => {
            let mut listed = Vec::new();
            for g in ctx.accounts.meta().golden_images().await? {
                if ctx.may_read(&g.repository, true).await? {
                    listed.push(json!({
                        "repository": g.repository.as_str(),
                        "tags": g.tags,
                        "added_by": g.added_by,
                        "added_at": g.added_at,
                    }));
                }
            }
            ok(StatusCode::OK, json!({ "golden": listed }))
        }
        (Method::POST, []) => {
            let wanted: NewGolden = ctx.json()?;
            let repo = repo_name(&wanted.repository)?;
            let tags = tag_glob(wanted.tags.as_deref())?;
            let actor = require_manager(ctx, &repo).await?;
            let added = ctx
                .accounts
                .meta()
                .add_golden(&repo, tags.as_deref(), &actor)
                .await?;
            ok(
                if added {
                    StatusCode::CREATED
                } else {
                    StatusCode::OK
                },
                json!({ "repository": repo.as_str(), "tags": tags }),
            )
        }
        (Method::DELETE, name) if !name.is_empty() => {
            let repo = repo_name(&name.join("/"))?;
            let tags = tag_glob(ctx.param("tags").as_deref())?;
            require_manager(ctx, &repo).await?;
            if ctx
                .accounts
                .meta()
                .remove_golden(&repo, tags.as_deref())
                .await?
            {
                no_content()
            } else {
                Err(ApiFailure::not_found(format!(
                    "golden image {repo}{}",
                    tags.map(|t| format!(":{t}")).unwrap_or_default()
                )))
            }
        }
        _ => Err(ApiFailure::method_not_allowed()),
    }
}

pub async fn warnings(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    if *method != Method::GET {
        return Err(ApiFailure::method_not_allowed());
    }
    let repo = repo_name(&rest.join("/"))?;
    if !ctx.may_read(&repo, true).await? {
        return Err(ApiFailure::not_found(format!("repository {repo}")));
    }
    let listed: Vec<Value> = ctx
        .accounts
        .meta()
        .push_warnings(&repo, 100)
        .await?
        .iter()
        .map(|w| {
            json!({
                "id": w.id,
                "digest": w.digest.to_string(),
                "message": w.message,
                "actor": w.actor,
                "at": w.at,
            })
        })
        .collect();
    ok(
        StatusCode::OK,
        json!({ "repository": repo.as_str(), "warnings": listed }),
    )
}
