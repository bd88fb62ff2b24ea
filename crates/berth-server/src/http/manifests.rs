//! Manifest endpoints, and the listings built from manifests: tags, referrers, catalog.

use axum::body::Body;
use axum::http::{StatusCode, header};
use berth_core::manifest::{MAX_MANIFEST_BYTES, OCI_INDEX};
use berth_core::{Digest, ErrorCode, Reference, RepoName, Tag};
use berth_meta::Page;
use futures::StreamExt;

use super::{
    ApiError, ApiResult, CONTENT_DIGEST, OCI_FILTERS_APPLIED, OCI_SUBJECT, OCI_TAG, Req, response,
};
use crate::error::RegistryError;
use crate::http::auth::Access;
use crate::registry::Registry;

/// Page size when a tag listing does not ask for one; clients follow `Link` for more.
const DEFAULT_TAG_PAGE: u32 = 10_000;
/// Page size when a catalog listing does not ask for one.
const DEFAULT_CATALOG_PAGE: u32 = 1_000;

pub async fn get(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
    head: bool,
) -> ApiResult {
    let manifest = registry.get_manifest(repo, reference).await?;
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

/// How much of an oversized manifest body is read and discarded before answering 413, so
/// that an ordinary client, still sending, reads the answer instead of a broken pipe.
const OVERSIZED_DRAIN_LIMIT: u64 = 64 * 1024 * 1024;

/// Reads a manifest body, refusing more than the limit without buffering it all
/// (bodies may come chunked, with no `Content-Length`).
async fn read_manifest_body(req: Req) -> Result<bytes::Bytes, ApiError> {
    let too_large = || {
        ApiError::from(RegistryError::ManifestTooLarge {
            limit: MAX_MANIFEST_BYTES,
        })
    };
    let declared = req
        .header(&header::CONTENT_LENGTH)
        .and_then(|l| l.parse::<u64>().ok());
    let mut stream = req.into_stream();
    if declared.is_some_and(|len| len > MAX_MANIFEST_BYTES as u64) {
        drain(stream, declared.unwrap_or(0)).await;
        return Err(too_large());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::new(
                ErrorCode::ManifestInvalid,
                format!("request body failed: {e}"),
            )
        })?;
        if body.len() + chunk.len() > MAX_MANIFEST_BYTES {
            drain(stream, 0).await;
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// Discards what is left of a body, unless it is (or turns out) larger than the drain limit.
async fn drain(mut stream: crate::registry::ByteStream, declared: u64) {
    if declared > OVERSIZED_DRAIN_LIMIT {
        return;
    }
    let mut seen = 0u64;
    while let Some(Ok(chunk)) = stream.next().await {
        seen += chunk.len() as u64;
        if seen > OVERSIZED_DRAIN_LIMIT {
            return;
        }
    }
}

pub async fn put(
    registry: &Registry,
    repo: &RepoName,
    reference: &Reference,
    req: Req,
) -> ApiResult {
    let content_type = req.header(&header::CONTENT_TYPE).map(str::to_owned);
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
    let body = read_manifest_body(req).await?;
    let (digest, subject) = registry
        .put_manifest(repo, reference, content_type.as_deref(), body, tags.clone())
        .await?;
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
    headers.extend(tags.iter().map(|t| (OCI_TAG, t.to_string())));
    Ok(response(StatusCode::CREATED, headers, Body::empty()))
}

pub async fn delete(registry: &Registry, repo: &RepoName, reference: &Reference) -> ApiResult {
    registry.delete_manifest(repo, reference).await?;
    Ok(response(
        StatusCode::ACCEPTED,
        vec![(header::CONTENT_LENGTH, "0".into())],
        Body::empty(),
    ))
}

/// `n` and `last` of a paginated listing.
fn page_params(req: &Req, default: u32) -> Result<(u32, Option<String>), ApiError> {
    let n = match req.param("n") {
        Some(n) => n.parse::<u32>().map_err(|_| {
            ApiError::new(
                ErrorCode::Unsupported,
                format!("n must be a non-negative integer, not {n:?}"),
            )
            .with_status(StatusCode::BAD_REQUEST)
        })?,
        None => default,
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
    let (n, last) = page_params(&req, DEFAULT_TAG_PAGE)?;
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
    let (n, last) = page_params(&req, DEFAULT_CATALOG_PAGE)?;
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
