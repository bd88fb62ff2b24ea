//! Manifest endpoints, and the listings built from manifests: tags, referrers, catalog.

use super::limits::{BodyError, declared_length};
use super::{
    ApiError, ApiResult, AppState, CONTENT_DIGEST, OCI_FILTERS_APPLIED, OCI_SUBJECT, OCI_TAG, Req,
    response,
};
use crate::error::RegistryError;
use crate::http::auth::Access;
use crate::ops::audit;
use crate::registry::Registry;
use axum::body::Body;
use axum::http::{StatusCode, header};
use berth_core::manifest::{MAX_MANIFEST_BYTES, OCI_INDEX};
use berth_core::{Digest, ErrorCode, Reference, RepoName, Tag};
use berth_meta::Page;

/// Largest page of a tag listing, and its size when `n` is not given; clients follow
/// `Link` for more.
pub const MAX_TAG_PAGE: u32 = 10_000;
/// Largest page of a catalog listing, and its size when `n` is not given.
pub const MAX_CATALOG_PAGE: u32 = 1_000;

pub async fn get(
    app: &AppState,
    access: &Access,
    repo: &RepoName,
    reference: &Reference,
    head: bool,
) -> ApiResult {
    let manifest = app.registry.get_manifest(repo, reference).await?;
    // block-vulnerable: refused unless the caller may push (and so fix it).
    if let Some(why) = app.pull_gate.refusal(repo, &manifest.digest).await?
        && !access.may_push(repo).await?
    {
        return Err(RegistryError::Vulnerable(why).into());
    }
    let headers = vec![
        (header::CONTENT_TYPE, manifest.media_type.clone()),
        (header::CONTENT_LENGTH, manifest.body.len().to_string()),
        (CONTENT_DIGEST, manifest.digest.to_string()),
        (header::ETAG, format!("\"{}\"", manifest.digest)),
    ];
    let body = if head {
        Body::empty()
    } else {
        Body::from(manifest.body)
    };
    Ok(response(StatusCode::OK, headers, body))
}

/// A manifest of a mirrored repository: from the cache while fresh, else from the
/// upstream; a cached copy served while the upstream fails carries a `Warning`.
pub async fn get_mirrored(
    app: &AppState,
    route: &crate::mirror::Route<'_>,
    reference: &Reference,
    head: bool,
) -> ApiResult {
    let (manifest, warning) = app.mirror.manifest(&app.registry, route, reference).await?;
    let mut headers = vec![
        (header::CONTENT_TYPE, manifest.media_type.clone()),
        (header::CONTENT_LENGTH, manifest.body.len().to_string()),
        (CONTENT_DIGEST, manifest.digest.to_string()),
        (header::ETAG, format!("\"{}\"", manifest.digest)),
    ];
    if let Some(warning) = warning {
        headers.push((header::WARNING, warning));
    }
    let body = if head {
        Body::empty()
    } else {
        Body::from(manifest.body)
    };
    Ok(response(StatusCode::OK, headers, body))
}

pub async fn put(
    app: &AppState,
    repo: &RepoName,
    reference: &Reference,
    req: Req,
    actor: &str,
) -> ApiResult {
    let content_type = req.header(&header::CONTENT_TYPE).map(str::to_owned);
    let client = req.origin.client.clone();
    let mut tags = Vec::new();
    for (key, value) in &req.query {
        if key == "tag" {
            tags.push(
                value
                    .parse::<Tag>()
                    .map_err(|e| ApiError::new(ErrorCode::ManifestInvalid, e.to_string()))?,
            );
        }
    }
    let declared = declared_length(&req.headers);
    // Held in memory (and counted against the shared budget) until stored.
    let body = app
        .body_budget
        .read(req.body, MAX_MANIFEST_BYTES, declared)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge { .. } => ApiError::from(RegistryError::ManifestTooLarge {
                limit: MAX_MANIFEST_BYTES,
            }),
            BodyError::Failed(why) => ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("request body failed: {why}"),
            ),
            busy => busy.into(),
        })?;
    let stored = app
        .registry
        .put_manifest(
            repo,
            reference,
            content_type.as_deref(),
            body.bytes.clone(),
            tags.clone(),
            actor,
        )
        .await?;
    let (digest, subject, moves) = (stored.digest, stored.subject, stored.moves);
    app.scanner.pushed(repo, &digest);
    let mut headers = vec![
        (header::LOCATION, format!("/v2/{repo}/manifests/{digest}")),
        (CONTENT_DIGEST, digest.to_string()),
        (header::CONTENT_LENGTH, "0".into()),
    ];
    if let Some(subject) = subject {
        headers.push((OCI_SUBJECT, subject.to_string()));
    }
    if let Reference::Tag(tag) = reference {
        headers.push((OCI_TAG, tag.to_string()));
    }
    if let Some(why) = &stored.warning {
        // RFC 7234's form, which the distribution spec lets registries send.
        let quoted = why.replace(['"', '\\'], "'");
        headers.push((header::WARNING, format!("299 - \"{quoted}\"")));
    }
    headers.extend(tags.iter().map(|t| (OCI_TAG, t.to_string())));
    let mut answer = response(StatusCode::CREATED, headers, Body::empty());
    let target = Some(repo.as_str());
    let detail = serde_json::json!({
        "reference": reference.to_string(),
        "digest": digest.to_string(),
        "tags": tags.iter().map(Tag::to_string).collect::<Vec<_>>(),
    });
    audit::attach(
        &mut answer,
        audit::event(actor, &client, "push", target, detail),
    );
    for moved in moves {
        let detail = serde_json::json!({
            "tag": moved.tag,
            "from": moved.from.map(|d| d.to_string()),
            "to": moved.to.map(|d| d.to_string()),
            "reason": moved.reason.as_str(),
        });
        audit::attach(
            &mut answer,
            audit::event(actor, &client, "tag-move", target, detail),
        );
    }
    Ok(answer)
}

pub async fn delete(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
    actor: &str,
) -> ApiResult {
    registry.delete_manifest(repo, reference, actor).await?;
    Ok(response(
        StatusCode::ACCEPTED,
        vec![(header::CONTENT_LENGTH, "0".into())],
        Body::empty(),
    ))
}

/// `n` (at most `max`, which is also the default) and `last` of a paginated listing.
fn page_params(req: &Req, max: u32) -> Result<(u32, Option<String>), ApiError> {
    let n = match req.param("n") {
        Some(n) => n
            .parse::<u32>()
            .map_err(|_| {
                ApiError::new(
                    ErrorCode::Unsupported,
                    format!("n must be a non-negative integer, not {n:?}"),
                )
                .with_status(StatusCode::BAD_REQUEST)
            })?
            .min(max),
        None => max,
    };
    Ok((n, req.param("last").map(str::to_owned)))
}

/// `Link: <path?n=N&last=LAST>; rel="next"` when another page follows.
fn next_link(path: &str, n: u32, page: &Page) -> Vec<(axum::http::HeaderName, String)> {
    match (page.more, page.items.last()) {
        (true, Some(last)) => {
            let query: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("n", &n.to_string())
                .append_pair("last", last)
                .finish();
            vec![(header::LINK, format!("<{path}?{query}>; rel=\"next\""))]
        }
        _ => vec![],
    }
}

pub async fn list_tags(registry: &Registry, repo: &RepoName, req: Req) -> ApiResult {
    let (n, last) = page_params(&req, MAX_TAG_PAGE)?;
    let page = registry.list_tags(repo, last.as_deref(), n).await?;
    let body = serde_json::json!({ "name": repo.as_str(), "tags": page.items });
    let mut headers = next_link(&format!("/v2/{repo}/tags/list"), n, &page);
    headers.push((header::CONTENT_TYPE, "application/json".into()));
    Ok(response(
        StatusCode::OK,
        headers,
        Body::from(body.to_string()),
    ))
}

pub async fn catalog(registry: &Registry, req: Req, access: &Access) -> ApiResult {
    let (n, last) = page_params(&req, MAX_CATALOG_PAGE)?;
    let page = registry
        .catalog(access.viewer(), last.as_deref(), n)
        .await?;
    let body = serde_json::json!({ "repositories": page.items });
    let mut headers = next_link("/v2/_catalog", n, &page);
    headers.push((header::CONTENT_TYPE, "application/json".into()));
    Ok(response(
        StatusCode::OK,
        headers,
        Body::from(body.to_string()),
    ))
}

pub async fn referrers(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    req: Req,
) -> ApiResult {
    let filter = req.param("artifactType").filter(|t| !t.is_empty());
    let found = registry.referrers(repo, digest, filter).await?;
    let manifests: Vec<serde_json::Value> = found
        .into_iter()
        .map(|r| {
            let mut d = serde_json::json!({
                "mediaType": r.media_type,
                "digest": r.digest.to_string(),
                "size": r.size,
            });
            if let Some(t) = r.artifact_type {
                d["artifactType"] = t.into();
            }
            if let Some(a) = r
                .annotations
                .and_then(|a| serde_json::from_str::<serde_json::Value>(&a).ok())
            {
                d["annotations"] = a;
            }
            d
        })
        .collect();
    let body =
        serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests });
    let mut headers = vec![(header::CONTENT_TYPE, OCI_INDEX.to_string())];
    if filter.is_some() {
        headers.push((OCI_FILTERS_APPLIED, "artifactType".into()));
    }
    Ok(response(
        StatusCode::OK,
        headers,
        Body::from(body.to_string()),
    ))
}
