//! Repositories: `GET /api/v1/repositories[?n=&last=]` (what the caller may read),
//! `GET /api/v1/repositories/NAME` (with the storage it uses),
//! `PUT /api/v1/repositories/NAME/visibility`, `PUT /api/v1/repositories/NAME/description`,
//! `GET /api/v1/repositories/NAME/scans/TAG|DIGEST` (packages and findings; scanned now
//! if not yet).

use axum::http::{Method, StatusCode};
use berth_auth::Principal;
use berth_core::{Actions, RepoName};
use serde::Deserialize;
use serde_json::json;

use super::{
    ApiFailure, ApiResult, Ctx, ok, parse_visibility, require_manage_scope, visibility_word,
};
use crate::accounts::Accounts;
use crate::marks::Marks;

/// Largest page of a repository listing.
pub const MAX_PAGE: u32 = 1000;

#[derive(Deserialize)]
struct Visibility {
    visibility: Option<String>,
}

#[derive(Deserialize)]
struct Description {
    description: String,
}

pub async fn handle(ctx: &Ctx<'_>, method: &Method, rest: &[&str]) -> ApiResult {
    let anonymous = Principal::anonymous();
    let principal = ctx.caller.as_ref().map_or(&anonymous, |c| &c.principal);
    if rest.is_empty() {
        return match *method {
            Method::GET => list(ctx, principal).await,
            _ => Err(ApiFailure::method_not_allowed()),
        };
    }
    match (method.clone(), rest) {
        (Method::GET, [name @ .., "scans", reference]) => {
            let repo = repo_name(name)?;
            if !ctx.may_read(&repo, false).await? {
                return Err(ApiFailure::not_found(format!("repository {repo}")));
            }
            let reference: berth_core::Reference = reference
                .parse()
                .map_err(|e| ApiFailure::invalid(format!("reference {reference:?}: {e}")))?;
            let images = crate::scanning::scan_reference(ctx.registry, &repo, &reference).await?;
            ok(
                StatusCode::OK,
                json!({
                    "repository": repo.as_str(),
                    "reference": reference.to_string(),
                    "images": images.iter().map(crate::scanning::ScannedImage::to_json).collect::<Vec<_>>(),
                }),
            )
        }
        (Method::PUT, [name @ .., "visibility"]) => {
            let repo = repo_name(name)?;
            let caller = ctx.caller()?;
            require_manage_scope(caller)?;
            if !ctx.accounts.may_manage(principal, repo.namespace()).await? {
                return Err(ApiFailure::forbidden("you may not manage this repository"));
            }
            let wanted: Visibility = ctx.json()?;
            let word = wanted
                .visibility
                .ok_or_else(|| ApiFailure::invalid("visibility is required".into()))?;
            let public = parse_visibility(&word)?;
            ctx.accounts
                .meta()
                .set_repository_visibility(&repo, public)
                .await?;
            ok(
                StatusCode::OK,
                json!({ "name": repo.as_str(), "visibility": visibility_word(public) }),
            )
        }
        (Method::PUT, [name @ .., "description"]) => {
            let repo = repo_name(name)?;
            let caller = ctx.caller()?;
            require_manage_scope(caller)?;
            if !ctx.accounts.may_manage(principal, repo.namespace()).await? {
                return Err(ApiFailure::forbidden("you may not manage this repository"));
            }
            let wanted: Description = ctx.json()?;
            let description = crate::catalog::checked_description(&wanted.description)
                .map_err(ApiFailure::invalid)?;
            if !ctx
                .accounts
                .meta()
                .set_repository_description(&repo, description)
                .await?
            {
                return Err(ApiFailure::not_found(format!("repository {repo}")));
            }
            ok(
                StatusCode::OK,
                json!({ "name": repo.as_str(), "description": description }),
            )
        }
        (Method::GET, name) => {
            let repo = repo_name(name)?;
            // A repository the caller may not pull does not exist, as far as they can tell.
            let rights = ctx.accounts.rights(principal, &repo).await?;
            let public = ctx.accounts.meta().repository_visibility(&repo).await?;
            match public {
                Some(public) if rights.contains(Actions::PULL) => {
                    let usage = repository_usage(ctx, &repo).await?;
                    let marks = Marks::load(ctx.accounts.meta()).await?;
                    let card = ctx.accounts.meta().repository_card(&repo).await?;
                    ok(
                        StatusCode::OK,
                        json!({
                            "name": repo.as_str(),
                            "mark": marks.of(repo.namespace()).as_str(),
                            "visibility": visibility_word(public),
                            "description": card.as_ref().map(|c| c.description.as_str()),
                            "pushed_at": card.as_ref().and_then(|c| c.pushed_at),
                            "storage": usage_json(usage.as_ref()),
                        }),
                    )
                }
                _ => Err(ApiFailure::not_found(format!("repository {repo}"))),
            }
        }
        _ => Err(ApiFailure::method_not_allowed()),
    }
}

/// What one repository holds (its name is the first at or under itself).
async fn repository_usage(
    ctx: &Ctx<'_>,
    repo: &RepoName,
) -> Result<Option<berth_meta::RepositoryUsage>, ApiFailure> {
    let usage = ctx
        .accounts
        .meta()
        .repository_usage(Some(repo.as_str()), None, 1)
        .await?;
    Ok(usage.into_iter().find(|u| &u.repository == repo))
}

/// `{"bytes", "blobs", "manifests", "tags"}`: a blob shared with other repositories
/// counts in each of them.
pub fn usage_json(usage: Option<&berth_meta::RepositoryUsage>) -> serde_json::Value {
    json!({
        "bytes": usage.map_or(0, |u| u.bytes),
        "blobs": usage.map_or(0, |u| u.blobs),
        "manifests": usage.map_or(0, |u| u.manifests),
        "tags": usage.map_or(0, |u| u.tags),
    })
}

fn repo_name(segments: &[&str]) -> Result<RepoName, ApiFailure> {
    segments
        .join("/")
        .parse()
        .map_err(|e: berth_core::NameError| ApiFailure::invalid(e.to_string()))
}

/// `GET /api/v1/repositories[?last=&n=]`: the repositories the caller may read.
async fn list(ctx: &Ctx<'_>, principal: &Principal) -> ApiResult {
    let n = match ctx.param("n") {
        Some(n) => n
            .parse::<u32>()
            .map_err(|_| ApiFailure::invalid(format!("n={n}: not a number")))?
            .clamp(1, MAX_PAGE),
        None => 100,
    };
    let last = ctx.param("last");
    let page = ctx
        .accounts
        .meta()
        .visible_repositories(Accounts::viewer(principal), last.as_deref(), n)
        .await?;
    // The mark of each namespace on the page (official, verified), for listings.
    let marks = Marks::load(ctx.accounts.meta()).await?;
    let mut namespaces: Vec<&str> = page
        .items
        .iter()
        .map(|name| name.split('/').next().unwrap_or(name))
        .collect();
    namespaces.dedup();
    let page_marks: serde_json::Map<String, serde_json::Value> = namespaces
        .into_iter()
        .map(|ns| (ns.to_owned(), marks.of(ns).as_str().into()))
        .filter(|(_, mark)| mark != "none")
        .collect();
    ok(
        StatusCode::OK,
        json!({ "repositories": page.items, "more": page.more, "marks": page_marks }),
    )
}
