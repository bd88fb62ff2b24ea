//! Blob endpoints: GET/HEAD/DELETE, and the upload protocol (POST, PATCH, PUT, GET
//! status, DELETE cancel, cross-repository mount).

use std::ops::Range;

use axum::body::Body;
use axum::http::{StatusCode, header};
use berth_core::{Algorithm, Digest, RepoName};

use super::{ApiError, ApiResult, CONTENT_DIGEST, Req, UPLOAD_UUID, response, upload_range};
use crate::error::RegistryError;
use crate::http::auth::Access;
use crate::registry::Registry;

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
        Some(value) => parse_range(value, size)?,
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
    // The size is known from metadata: no second stat of the file.
    let blob = registry
        .open_blob(repo, digest, Some(range.unwrap_or(0..size)))
        .await?;
    Ok(response(status, headers, Body::from_stream(blob.stream)))
}

/// Parses a `Range: bytes=…` header against a blob of `size` bytes. Other units and
/// multi-range requests are ignored (the whole blob is served), as RFC 9110 allows.
fn parse_range(value: &str, size: u64) -> Result<Option<Range<u64>>, RegistryError> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let unsatisfiable = RegistryError::RangeNotSatisfiable { size };
    let Some((first, last)) = spec.trim().split_once('-') else {
        return Err(unsatisfiable);
    };
    let number = |s: &str| s.trim().parse::<u64>().ok();
    match (first.trim().is_empty(), last.trim().is_empty()) {
        // bytes=-N: the last N bytes
        (true, false) => match number(last) {
            Some(n) if n > 0 && size > 0 => Ok(Some(size.saturating_sub(n)..size)),
            _ => Err(unsatisfiable),
        },
        // bytes=A-
        (false, true) => match number(first) {
            Some(a) if a < size => Ok(Some(a..size)),
            _ => Err(unsatisfiable),
        },
        // bytes=A-B (B past the end is clamped)
        (false, false) => match (number(first), number(last)) {
            (Some(a), Some(b)) if a <= b && a < size => Ok(Some(a..b.min(size - 1) + 1)),
            _ => Err(unsatisfiable),
        },
        (true, true) => Err(unsatisfiable),
    }
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

pub async fn start_upload(
    registry: &Registry,
    repo: &RepoName,
    req: Req,
    access: &Access,
) -> ApiResult {
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
    let session = registry.start_upload(repo, algorithm).await?;
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

/// Reads `Content-Range: <start>-<end>` (inclusive; a `bytes ` prefix and `/total` are
/// tolerated) and checks it against `Content-Length`. Returns where the chunk starts.
fn chunk_start(req: &Req) -> Result<Option<u64>, ApiError> {
    let Some(value) = req.header(&header::CONTENT_RANGE) else {
        return Ok(None);
    };
    let invalid = || {
        ApiError::new(
            berth_core::ErrorCode::BlobUploadInvalid,
            format!("malformed Content-Range {value:?}: expected <start>-<end>"),
        )
    };
    let spec = value.trim();
    let spec = spec
        .strip_prefix("bytes")
        .map(|s| s.trim_start_matches([' ', '=']))
        .unwrap_or(spec);
    let spec = spec.split('/').next().unwrap_or(spec);
    let (start, end) = spec.split_once('-').ok_or_else(invalid)?;
    let start: u64 = start.trim().parse().map_err(|_| invalid())?;
    let end: u64 = end.trim().parse().map_err(|_| invalid())?;
    if end < start {
        return Err(ApiError::new(
            berth_core::ErrorCode::BlobUploadInvalid,
            "Content-Range ends before it starts",
        )
        .with_status(StatusCode::RANGE_NOT_SATISFIABLE));
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_rfc_9110() {
        let r = |v: &str| parse_range(v, 2048).map_err(|_| ());
        assert_eq!(r("bytes=500-1499"), Ok(Some(500..1500)));
        assert_eq!(r("bytes=500-"), Ok(Some(500..2048)));
        assert_eq!(r("bytes=-500"), Ok(Some(1548..2048)));
        assert_eq!(r("bytes=2000-5000"), Ok(Some(2000..2048)));
        assert_eq!(r("bytes=-5000"), Ok(Some(0..2048)));
        assert_eq!(r("bytes=0-1,5-6"), Ok(None));
        assert_eq!(r("items=0-1"), Ok(None));
        for bad in [
            "bytes=500-0",
            "bytes=5000-10000",
            "bytes=2048-",
            "bytes=-0",
            "bytes=x-y",
            "bytes=-",
            "bytes=5",
        ] {
            assert_eq!(r(bad), Err(()), "{bad}");
        }
        assert!(
            parse_range("bytes=0-", 0).is_err(),
            "nothing to serve of an empty blob"
        );
    }
}
