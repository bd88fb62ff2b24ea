//! Blob endpoints: GET/HEAD/DELETE, and the upload protocol (POST, PATCH, PUT, GET
//! status, DELETE cancel, cross-repository mount).

use axum::body::Body;
use axum::http::{StatusCode, header};
use berth_core::range::{ChunkRangeError, parse_chunk_range};
use berth_core::{Algorithm, Digest, RepoName};

use super::{
    ApiError, ApiResult, AppState, CONTENT_DIGEST, Req, UPLOAD_UUID, response, upload_range,
};
use crate::error::RegistryError;
use crate::http::auth::Access;
use crate::mirror::Stats;
use crate::registry::Registry;

/// A blob of a mirrored repository: from here when held (fetched before, or pushed
/// anywhere in the registry), else from the upstream, streamed while it is stored.
pub async fn get_mirrored(
    app: &AppState,
    route: &crate::mirror::Route<'_>,
    digest: &Digest,
    head: bool,
    req: Req,
) -> ApiResult {
    let (repo, stats) = (&route.cache, &route.upstream.stats);
    match app.registry.blob_size(repo, digest).await {
        Ok(size) => {
            Stats::count(&stats.hits, 1);
            Stats::count(&stats.bytes_saved, size);
            return get(&app.registry, repo, digest, head, req).await;
        }
        Err(RegistryError::BlobUnknown(_)) => {}
        Err(e) => return Err(e.into()),
    }
    if head {
        // Asking is enough: nothing is fetched or linked for a HEAD.
        let size = route
            .upstream
            .blob_size(&route.remote, digest)
            .await
            .map_err(RegistryError::from)?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        let headers = vec![
            (CONTENT_DIGEST, digest.to_string()),
            (header::CONTENT_TYPE, "application/octet-stream".into()),
            (header::CONTENT_LENGTH, size.to_string()),
        ];
        return Ok(response(StatusCode::OK, headers, Body::empty()));
    }
    match app.mirror.blob(&app.registry, route, digest).await? {
        None => get(&app.registry, repo, digest, head, req).await,
        Some((len, stream)) => {
            let mut headers = vec![
                (CONTENT_DIGEST, digest.to_string()),
                (header::CONTENT_TYPE, "application/octet-stream".into()),
            ];
            if let Some(len) = len {
                headers.push((header::CONTENT_LENGTH, len.to_string()));
            }
            Ok(response(StatusCode::OK, headers, Body::from_stream(stream)))
        }
    }
}

pub async fn get(
    registry: &Registry,
    repo: &RepoName,
    digest: &Digest,
    head: bool,
    req: Req,
) -> ApiResult {
    let size = registry.blob_size(repo, digest).await?;
    let mut headers = vec![
        (CONTENT_DIGEST, digest.to_string()),
        (header::ETAG, format!("\"{digest}\"")),
        (header::ACCEPT_RANGES, "bytes".into()),
        (header::CONTENT_TYPE, "application/octet-stream".into()),
    ];
    let range = match req.header(&header::RANGE) {
        Some(value) => berth_core::range::parse_range(value, size)
            .map_err(|_| RegistryError::RangeNotSatisfiable { size })?,
        None => None,
    };
    let (status, len) = match &range {
        Some(r) => {
            headers.push((
                header::CONTENT_RANGE,
                format!("bytes {}-{}/{size}", r.start, r.end - 1),
            ));
            (StatusCode::PARTIAL_CONTENT, r.end - r.start)
        }
        None => (StatusCode::OK, size),
    };
    headers.push((header::CONTENT_LENGTH, len.to_string()));
    if head {
        return Ok(response(status, headers, Body::empty()));
    }
    if let Some(url) = registry.blob_redirect(digest).await? {
        // The client fetches (and ranges) from the object store itself.
        let headers = vec![
            (CONTENT_DIGEST, digest.to_string()),
            (header::LOCATION, url),
            (header::CONTENT_LENGTH, "0".into()),
        ];
        return Ok(response(
            StatusCode::TEMPORARY_REDIRECT,
            headers,
            Body::empty(),
        ));
    }
    // The size is known from metadata: no second stat of the file.
    let blob = registry
        .open_blob(repo, digest, Some(range.unwrap_or(0..size)))
        .await?;
    Ok(response(status, headers, Body::from_stream(blob.stream)))
}

pub async fn delete(registry: &Registry, repo: &RepoName, digest: &Digest) -> ApiResult {
    registry.delete_blob(repo, digest).await?;
    Ok(response(
        StatusCode::ACCEPTED,
        vec![(header::CONTENT_LENGTH, "0".into())],
        Body::empty(),
    ))
}

fn session_headers(
    repo: &RepoName,
    id: &str,
    offset: u64,
) -> Vec<(axum::http::HeaderName, String)> {
    vec![
        (header::LOCATION, format!("/v2/{repo}/blobs/uploads/{id}")),
        (header::RANGE, upload_range(offset)),
        (UPLOAD_UUID, id.to_owned()),
        (header::CONTENT_LENGTH, "0".into()),
    ]
}

fn created(repo: &RepoName, digest: &Digest) -> axum::response::Response {
    response(
        StatusCode::CREATED,
        vec![
            (header::LOCATION, format!("/v2/{repo}/blobs/{digest}")),
            (CONTENT_DIGEST, digest.to_string()),
            (header::CONTENT_LENGTH, "0".into()),
        ],
        Body::empty(),
    )
}

pub async fn start_upload(app: &AppState, repo: &RepoName, req: Req, access: &Access) -> ApiResult {
    let registry = &*app.registry;
    if let Some(mount) = req.param("mount") {
        let digest: Digest = mount.parse().map_err(ApiError::from)?;
        let from = match req.param("from") {
            Some(from) => Some(from.parse::<RepoName>().map_err(|e| {
                ApiError::new(berth_core::ErrorCode::NameInvalid, format!("from: {e}"))
            })?),
            None => None,
        };
        // Mounting from a repository the caller cannot pull would leak its blobs.
        let allowed = match &from {
            Some(source) => access.may_pull(source).await?,
            None => access.may_mount_from_anywhere(),
        };
        if allowed
            && registry
                .mount_blob(repo, &digest, from.as_ref())
                .await?
                .is_some()
        {
            return Ok(created(repo, &digest));
        }
        // Not mountable: clients expect an ordinary session to upload into instead.
    } else if let Some(digest) = req.param("digest") {
        let digest: Digest = digest.parse().map_err(ApiError::from)?;
        registry
            .upload_whole(repo, &digest, req.into_stream())
            .await?;
        return Ok(created(repo, &digest));
    }
    let algorithm = match req.param("digest-algorithm") {
        Some(a) => a.parse::<Algorithm>().map_err(ApiError::from)?,
        None => Algorithm::Sha256,
    };
    let client = access.client_key(&req.origin);
    let session = registry
        .start_upload(repo, algorithm, client, app.max_uploads_per_client)
        .await?;
    Ok(response(
        StatusCode::ACCEPTED,
        session_headers(repo, &session.id, 0),
        Body::empty(),
    ))
}

pub async fn upload_status(registry: &Registry, repo: &RepoName, id: &str) -> ApiResult {
    let session = registry.upload_status(repo, id).await?;
    Ok(response(
        StatusCode::NO_CONTENT,
        session_headers(repo, id, session.offset),
        Body::empty(),
    ))
}

/// Where a chunk starts, from its `Content-Range` (checked against `Content-Length`).
fn chunk_start(req: &Req) -> Result<Option<u64>, ApiError> {
    let Some(value) = req.header(&header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let (start, end) = parse_chunk_range(value).map_err(|e| {
        let error = ApiError::new(berth_core::ErrorCode::BlobUploadInvalid, e.to_string());
        match e {
            ChunkRangeError::Backwards => error.with_status(StatusCode::RANGE_NOT_SATISFIABLE),
            ChunkRangeError::Malformed(_) => error,
        }
    })?;
    if let Some(len) = req
        .header(&header::CONTENT_LENGTH)
        .and_then(|l| l.parse::<u64>().ok())
        && len != end - start + 1
    {
        return Err(ApiError::new(
            berth_core::ErrorCode::SizeInvalid,
            format!("Content-Length {len} does not match Content-Range {value:?}"),
        ));
    }
    Ok(Some(start))
}

pub async fn patch_upload(registry: &Registry, repo: &RepoName, id: &str, req: Req) -> ApiResult {
    let start = chunk_start(&req)?;
    let session = registry
        .append_upload(repo, id, start, req.into_stream())
        .await?;
    Ok(response(
        StatusCode::ACCEPTED,
        session_headers(repo, id, session.offset),
        Body::empty(),
    ))
}

pub async fn finish_upload(registry: &Registry, repo: &RepoName, id: &str, req: Req) -> ApiResult {
    let digest: Digest = req
        .param("digest")
        .ok_or_else(|| {
            ApiError::new(
                berth_core::ErrorCode::DigestInvalid,
                "the digest parameter is required",
            )
        })?
        .parse()
        .map_err(ApiError::from)?;
    let start = chunk_start(&req)?;
    let has_body = req.header(&header::CONTENT_LENGTH) != Some("0");
    let body = has_body.then(|| req.into_stream());
    registry
        .finish_upload(repo, id, &digest, start, body)
        .await?;
    Ok(created(repo, &digest))
}

pub async fn cancel_upload(registry: &Registry, repo: &RepoName, id: &str) -> ApiResult {
    registry.cancel_upload(repo, id).await?;
    Ok(response(StatusCode::NO_CONTENT, vec![], Body::empty()))
}
