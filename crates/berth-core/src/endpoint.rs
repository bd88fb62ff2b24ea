//! Routing as a pure function: `(method, path)` → [`Endpoint`].
//!
//! Repository names contain `/`, so the path after `/v2/` is matched from its end:
//! `…/tags/list`, `…/manifests/<ref>`, `…/blobs/uploads/[<id>]`, `…/blobs/<digest>`,
//! `…/referrers/<digest>`. Everything before the marker is the repository name.

use std::borrow::Cow;

use percent_encoding::percent_decode_str;

use crate::digest::Digest;
use crate::name::{NameError, Reference, RepoName};

/// An upload session id as handed out in `Location` (berth issues UUIDs; anything
/// outside this alphabet cannot be one of ours).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    pub fn new(s: String) -> Option<UploadId> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then_some(UploadId(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// One operation of the distribution-spec API, with its parsed path parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// end-1: `GET /v2/`
    ApiVersion,
    /// `GET /v2/_catalog`
    Catalog,
    /// end-8: `GET /v2/<name>/tags/list`
    ListTags { name: RepoName },
    /// end-3: `GET`/`HEAD /v2/<name>/manifests/<reference>`
    GetManifest {
        name: RepoName,
        reference: Reference,
        head: bool,
    },
    /// end-7: `PUT /v2/<name>/manifests/<reference>`
    PutManifest {
        name: RepoName,
        reference: Reference,
    },
    /// end-9: `DELETE /v2/<name>/manifests/<reference>`
    DeleteManifest {
        name: RepoName,
        reference: Reference,
    },
    /// end-2: `GET`/`HEAD /v2/<name>/blobs/<digest>`
    GetBlob {
        name: RepoName,
        digest: Digest,
        head: bool,
    },
    /// end-10: `DELETE /v2/<name>/blobs/<digest>`
    DeleteBlob { name: RepoName, digest: Digest },
    /// end-4a/4b/11: `POST /v2/<name>/blobs/uploads/`
    StartUpload { name: RepoName },
    /// end-13: `GET /v2/<name>/blobs/uploads/<id>`
    UploadStatus { name: RepoName, id: UploadId },
    /// end-5: `PATCH /v2/<name>/blobs/uploads/<id>`
    PatchUpload { name: RepoName, id: UploadId },
    /// end-6: `PUT /v2/<name>/blobs/uploads/<id>?digest=`
    FinishUpload { name: RepoName, id: UploadId },
    /// `DELETE /v2/<name>/blobs/uploads/<id>`
    CancelUpload { name: RepoName, id: UploadId },
    /// end-12: `GET /v2/<name>/referrers/<digest>`
    Referrers { name: RepoName, digest: Digest },
}

/// Why a request line maps to no endpoint.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("no such endpoint")]
    NotFound,
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    #[error("upload session unknown")]
    UploadUnknown,
    #[error(transparent)]
    Name(#[from] NameError),
}

impl Endpoint {
    /// Parses the method and the raw (still percent-encoded) path of a request.
    pub fn parse(method: &str, path: &str) -> Result<Endpoint, EndpointError> {
        let Some(rest) = path.strip_prefix("/v2/") else {
            return if path == "/v2" {
                only(method, &["GET", "HEAD"], Endpoint::ApiVersion)
            } else {
                Err(EndpointError::NotFound)
            };
        };
        if rest.is_empty() {
            return only(method, &["GET", "HEAD"], Endpoint::ApiVersion);
        }
        if rest == "_catalog" {
            return only(method, &["GET"], Endpoint::Catalog);
        }

        let segments: Vec<&str> = rest.split('/').collect();
        let n = segments.len();
        let name_of = |k: usize| -> Result<RepoName, EndpointError> {
            if k == 0 {
                return Err(EndpointError::NotFound);
            }
            Ok(segments[..k].join("/").parse()?)
        };

        // …/blobs/uploads/ and …/blobs/uploads/<id>
        if n >= 3 && segments[n - 3] == "blobs" && segments[n - 2] == "uploads" {
            let name = name_of(n - 3)?;
            let id = segments[n - 1];
            if id.is_empty() {
                return only(method, &["POST"], Endpoint::StartUpload { name });
            }
            let id = UploadId::new(decode(id).into_owned()).ok_or(EndpointError::UploadUnknown)?;
            return match method {
                "GET" | "HEAD" => Ok(Endpoint::UploadStatus { name, id }),
                "PATCH" => Ok(Endpoint::PatchUpload { name, id }),
                "PUT" => Ok(Endpoint::FinishUpload { name, id }),
                "DELETE" => Ok(Endpoint::CancelUpload { name, id }),
                _ => Err(EndpointError::MethodNotAllowed),
            };
        }
        if n < 2 {
            return Err(EndpointError::NotFound);
        }
        let (marker, last) = (segments[n - 2], decode(segments[n - 1]));
        match marker {
            "tags" if last == "list" => only(
                method,
                &["GET"],
                Endpoint::ListTags {
                    name: name_of(n - 2)?,
                },
            ),
            "blobs" if last == "uploads" => only(
                method,
                &["POST"],
                Endpoint::StartUpload {
                    name: name_of(n - 2)?,
                },
            ),
            "manifests" => {
                let name = name_of(n - 2)?;
                let reference: Reference = last.parse()?;
                match method {
                    "GET" => Ok(Endpoint::GetManifest {
                        name,
                        reference,
                        head: false,
                    }),
                    "HEAD" => Ok(Endpoint::GetManifest {
                        name,
                        reference,
                        head: true,
                    }),
                    "PUT" => Ok(Endpoint::PutManifest { name, reference }),
                    "DELETE" => Ok(Endpoint::DeleteManifest { name, reference }),
                    _ => Err(EndpointError::MethodNotAllowed),
                }
            }
            "blobs" => {
                let name = name_of(n - 2)?;
                let digest: Digest = last.parse().map_err(NameError::from)?;
                match method {
                    "GET" => Ok(Endpoint::GetBlob {
                        name,
                        digest,
                        head: false,
                    }),
                    "HEAD" => Ok(Endpoint::GetBlob {
                        name,
                        digest,
                        head: true,
                    }),
                    "DELETE" => Ok(Endpoint::DeleteBlob { name, digest }),
                    _ => Err(EndpointError::MethodNotAllowed),
                }
            }
            "referrers" => {
                let name = name_of(n - 2)?;
                let digest: Digest = last.parse().map_err(NameError::from)?;
                only(method, &["GET"], Endpoint::Referrers { name, digest })
            }
            _ => Err(EndpointError::NotFound),
        }
    }

    /// The repository the endpoint acts on, if any.
    pub fn repository(&self) -> Option<&RepoName> {
        match self {
            Endpoint::ApiVersion | Endpoint::Catalog => None,
            Endpoint::ListTags { name }
            | Endpoint::GetManifest { name, .. }
            | Endpoint::PutManifest { name, .. }
            | Endpoint::DeleteManifest { name, .. }
            | Endpoint::GetBlob { name, .. }
            | Endpoint::DeleteBlob { name, .. }
            | Endpoint::StartUpload { name }
            | Endpoint::UploadStatus { name, .. }
            | Endpoint::PatchUpload { name, .. }
            | Endpoint::FinishUpload { name, .. }
            | Endpoint::CancelUpload { name, .. }
            | Endpoint::Referrers { name, .. } => Some(name),
        }
    }
}

fn only(method: &str, allowed: &[&str], endpoint: Endpoint) -> Result<Endpoint, EndpointError> {
    if allowed.contains(&method) {
        Ok(endpoint)
    } else {
        Err(EndpointError::MethodNotAllowed)
    }
}

fn decode(segment: &str) -> Cow<'_, str> {
    percent_decode_str(segment).decode_utf8_lossy()
}

/// Query parameters in any order, percent-encoded or not; repeated keys kept in order.
pub fn query_pairs(query: Option<&str>) -> Vec<(String, String)> {
    form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The first value of `key` among parsed query (or form) pairs.
pub fn first_value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Every value of `key` among parsed query (or form) pairs, in order.
pub fn all_values<'a>(
    pairs: &'a [(String, String)],
    key: &'a str,
) -> impl Iterator<Item = &'a str> + 'a {
    pairs
        .iter()
        .filter(move |(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn name(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn routes_every_endpoint() {
        let d: Digest = D.parse().unwrap();
        let cases = [
            ("GET", "/v2/".to_string(), Endpoint::ApiVersion),
            ("GET", "/v2/_catalog".into(), Endpoint::Catalog),
            (
                "GET",
                "/v2/a/b/tags/list".into(),
                Endpoint::ListTags { name: name("a/b") },
            ),
            (
                "HEAD",
                "/v2/a/manifests/v1".into(),
                Endpoint::GetManifest {
                    name: name("a"),
                    reference: "v1".parse().unwrap(),
                    head: true,
                },
            ),
            (
                "PUT",
                format!("/v2/x/y/z/manifests/{D}"),
                Endpoint::PutManifest {
                    name: name("x/y/z"),
                    reference: Reference::Digest(d.clone()),
                },
            ),
            (
                "GET",
                format!("/v2/a/blobs/{}", D.replace(':', "%3A")),
                Endpoint::GetBlob {
                    name: name("a"),
                    digest: d.clone(),
                    head: false,
                },
            ),
            (
                "POST",
                "/v2/a/blobs/uploads/".into(),
                Endpoint::StartUpload { name: name("a") },
            ),
            (
                "POST",
                "/v2/a/blobs/uploads".into(),
                Endpoint::StartUpload { name: name("a") },
            ),
            (
                "PATCH",
                "/v2/a/blobs/uploads/abc-123".into(),
                Endpoint::PatchUpload {
                    name: name("a"),
                    id: UploadId("abc-123".into()),
                },
            ),
            (
                "GET",
                format!("/v2/a/referrers/{D}"),
                Endpoint::Referrers {
                    name: name("a"),
                    digest: d.clone(),
                },
            ),
            // A repository may itself be called "blobs" or "manifests".
            (
                "GET",
                "/v2/blobs/manifests/tags/list".into(),
                Endpoint::ListTags {
                    name: name("blobs/manifests"),
                },
            ),
        ];
        for (method, path, want) in cases {
            assert_eq!(Endpoint::parse(method, &path), Ok(want), "{method} {path}");
        }
    }

    #[test]
    fn rejects_bad_requests_precisely() {
        assert!(matches!(
            Endpoint::parse("GET", "/v2/UPPER/tags/list"),
            Err(EndpointError::Name(NameError::InvalidName(..)))
        ));
        assert!(matches!(
            Endpoint::parse("GET", "/v2/a/../b/tags/list"),
            Err(EndpointError::Name(NameError::InvalidName(..)))
        ));
        assert!(matches!(
            Endpoint::parse("GET", "/v2/a/blobs/sha256:123"),
            Err(EndpointError::Name(NameError::Digest(_)))
        ));
        assert_eq!(
            Endpoint::parse("POST", "/v2/a/tags/list"),
            Err(EndpointError::MethodNotAllowed)
        );
        assert_eq!(
            Endpoint::parse("GET", "/v2/a"),
            Err(EndpointError::NotFound)
        );
        assert_eq!(Endpoint::parse("GET", "/v3/"), Err(EndpointError::NotFound));
        assert_eq!(
            Endpoint::parse("GET", "/v2/a/blobs/uploads/a%2Fb"),
            Err(EndpointError::UploadUnknown)
        );
    }

    #[test]
    fn query_pairs_decode_and_keep_repeats() {
        let q = query_pairs(Some("tag=a&tag=b&from=x%2Fy&mount=sha256%3Aab"));
        assert_eq!(q[1], ("tag".into(), "b".into()));
        assert_eq!(q[2], ("from".into(), "x/y".into()));
        assert_eq!(q[3], ("mount".into(), "sha256:ab".into()));
    }
}
