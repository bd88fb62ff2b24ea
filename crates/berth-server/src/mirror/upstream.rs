//! One upstream registry, as a client sees it: requests under its `/v2/`, its token or
//! Basic authentication (Docker's Bearer flow: a 401 names a realm, which trades the
//! configured credentials, or none, for a token per repository scope), and failures
//! named after it. Every wait is bounded by the upstream's `timeout`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use berth_core::Digest;
use berth_core::manifest::{DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use bytes::Bytes;
use futures::StreamExt;
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::{Method, StatusCode};

use crate::config::UpstreamConfig;
use crate::registry::ByteStream;

/// Every manifest type berth stores, as the `Accept` of manifest requests.
const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
    application/vnd.oci.image.manifest.v1+json, \
    application/vnd.docker.distribution.manifest.list.v2+json, \
    application/vnd.docker.distribution.manifest.v2+json";

/// Bearer tokens kept (one per repository scope).
const MAX_TOKENS: usize = 1024;

/// Largest manifest taken from an upstream (as from a client).
const MAX_MANIFEST: usize = berth_core::manifest::MAX_MANIFEST_BYTES;

/// Why an upstream could not serve a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("upstream {upstream} is unreachable: {detail}")]
    Unreachable { upstream: String, detail: String },
    #[error("upstream {upstream} did not answer within {} s", timeout.as_secs())]
    Timeout { upstream: String, timeout: Duration },
    #[error("upstream {upstream} answered {status}{}", if detail.is_empty() { String::new() } else { format!(": {detail}") })]
    Refused {
        upstream: String,
        status: u16,
        detail: String,
    },
    #[error("upstream {upstream} sent content that does not hash to {digest}")]
    Corrupt { upstream: String, digest: String },
}

impl UpstreamError {
    /// A rate limit, as opposed to a fault.
    pub fn is_rate_limit(&self) -> bool {
        matches!(self, UpstreamError::Refused { status: 429, .. })
    }
}

/// Counters of one upstream, for `/api/v1/mirrors`.
#[derive(Debug, Default)]
pub struct Stats {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    /// Bytes served from the cache instead of fetched.
    pub bytes_saved: AtomicU64,
    pub upstream_errors: AtomicU64,
}

impl Stats {
    pub fn count(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A manifest as the upstream sent it, its digest verified.
pub struct FetchedManifest {
    pub digest: Digest,
    pub media_type: String,
    pub body: Bytes,
}

pub struct Upstream {
    pub config: UpstreamConfig,
    client: reqwest::Client,
    /// Bearer tokens by scope, with when they stop being used.
    tokens: Mutex<HashMap<String, (String, Instant)>>,
    /// The upstream asked for Basic credentials: send them from the first request.
    basic: std::sync::atomic::AtomicBool,
    pub stats: Stats,
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Result<Upstream, String> {
        let client = reqwest::Client::builder()
            .connect_timeout(config.timeout)
            .read_timeout(config.timeout)
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION"), " (mirror)"))
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Upstream {
            config,
            client,
            tokens: Mutex::new(HashMap::new()),
            basic: std::sync::atomic::AtomicBool::new(false),
            stats: Stats::default(),
        })
    }

    pub fn prefix(&self) -> &str {
        &self.config.prefix
    }

    fn name(&self) -> String {
        format!("{} ({})", self.config.prefix, self.config.url)
    }

    fn unreachable(&self, e: &reqwest::Error) -> UpstreamError {
        if e.is_timeout() {
            return UpstreamError::Timeout {
                upstream: self.name(),
                timeout: self.config.timeout,
            };
        }
        // The innermost cause says what happened (connection refused, DNS).
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            detail = cause.to_string();
            source = cause.source();
        }
        UpstreamError::Unreachable {
            upstream: self.name(),
            detail,
        }
    }

    fn refused(&self, status: StatusCode, detail: String) -> UpstreamError {
        UpstreamError::Refused {
            upstream: self.name(),
            status: status.as_u16(),
            detail,
        }
    }

    fn token(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        tokens
            .get(scope)
            .filter(|(_, until)| Instant::now() < *until)
            .map(|(token, _)| token.clone())
    }

    fn credentials(&self) -> Option<(&str, &str)> {
        match (&self.config.username, &self.config.password) {
            (Some(user), Some(password)) => Some((user, password)),
            _ => None,
        }
    }

    /// Sends a request about `remote`, authenticating as the upstream asks.
    async fn send(
        &self,
        method: Method,
        remote: &str,
        path: &str,
        accept: Option<&str>,
    ) -> Result<reqwest::Response, UpstreamError> {
        let url = format!("{}/v2/{remote}/{path}", self.config.url);
        let scope = format!("repository:{remote}:pull");
        for attempt in 0..2 {
            let mut request = self.client.request(method.clone(), &url);
            if let Some(accept) = accept {
                request = request.header(ACCEPT, accept);
            }
            if let Some(token) = self.token(&scope) {
                request = request.bearer_auth(token);
            } else if self.basic.load(Ordering::Relaxed)
                && let Some((user, password)) = self.credentials()
            {
                request = request.basic_auth(user, Some(password));
            }
            let response = self.bounded(request.send()).await?;
            if response.status() != StatusCode::UNAUTHORIZED || attempt == 1 {
                return Ok(response);
            }
            let challenge = response
                .headers()
                .get(WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            if challenge.len() >= 6 && challenge[..6].eq_ignore_ascii_case("basic ") {
                if self.credentials().is_none() {
                    return Ok(response);
                }
                self.basic.store(true, Ordering::Relaxed);
            } else if challenge.len() >= 7 && challenge[..7].eq_ignore_ascii_case("bearer ") {
                self.fetch_token(&challenge[7..], &scope).await?;
            } else {
                return Ok(response);
            }
        }
        Err(self.refused(StatusCode::UNAUTHORIZED, String::new()))
    }

    /// A future bounded by the upstream's timeout.
    async fn bounded(
        &self,
        sent: impl Future<Output = Result<reqwest::Response, reqwest::Error>>,
    ) -> Result<reqwest::Response, UpstreamError> {
        match tokio::time::timeout(self.config.timeout, sent).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(self.unreachable(&e)),
            Err(_) => Err(UpstreamError::Timeout {
                upstream: self.name(),
                timeout: self.config.timeout,
            }),
        }
    }

    /// Trades the configured credentials (or none) for a token at the challenge's realm.
    async fn fetch_token(&self, challenge: &str, scope: &str) -> Result<(), UpstreamError> {
        let params = parse_challenge(challenge);
        let realm = params.get("realm").ok_or_else(|| {
            self.refused(
                StatusCode::UNAUTHORIZED,
                "a challenge without a realm".into(),
            )
        })?;
        let mut request = self.client.get(realm.as_str()).query(&[("scope", scope)]);
        if let Some(service) = params.get("service") {
            request = request.query(&[("service", service.as_str())]);
        }
        // Credentials go only to a realm over https, or on the upstream's own host.
        let same_host = host_of(realm) == host_of(&self.config.url);
        if let Some((user, password)) = self.credentials()
            && (realm.starts_with("https://") || same_host)
        {
            request = request.basic_auth(user, Some(password));
        }
        let response = self.bounded(request.send()).await?;
        if !response.status().is_success() {
            return Err(self.refused(response.status(), "the token request was refused".into()));
        }
        #[derive(serde::Deserialize)]
        struct TokenAnswer {
            token: Option<String>,
            access_token: Option<String>,
            expires_in: Option<u64>,
        }
        let answer: TokenAnswer = match self.bounded_bytes(response, 64 * 1024).await {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| self.refused(StatusCode::OK, format!("token answer: {e}")))?,
            Err(e) => return Err(e),
        };
        let token = answer
            .token
            .or(answer.access_token)
            .ok_or_else(|| self.refused(StatusCode::OK, "a token answer without a token".into()))?;
        // Used until 30 s before it expires (60 s when the answer does not say).
        let lifetime =
            Duration::from_secs(answer.expires_in.unwrap_or(60).saturating_sub(30).max(10));
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if tokens.len() >= MAX_TOKENS {
            // One per repository asked for: expired ones go, and if none has, all.
            let now = Instant::now();
            tokens.retain(|_, (_, until)| *until > now);
            if tokens.len() >= MAX_TOKENS {
                tokens.clear();
            }
        }
        tokens.insert(scope.to_owned(), (token, Instant::now() + lifetime));
        Ok(())
    }

    /// A response body whole, refusing more than `max` bytes.
    async fn bounded_bytes(
        &self,
        response: reqwest::Response,
        max: usize,
    ) -> Result<Bytes, UpstreamError> {
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| self.unreachable(&e))?;
            if body.len() + chunk.len() > max {
                return Err(self.refused(StatusCode::OK, format!("an answer over {max} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.into())
    }

    /// Checks a status: `Ok(false)` when the upstream has no such thing for us: 404, or
    /// 401/403 after authenticating (registries answer so for a repository that does
    /// not exist as for one the credentials may not read: it is logged).
    fn found(&self, response: &reqwest::Response) -> Result<bool, UpstreamError> {
        match response.status() {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            s @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) => {
                tracing::info!(upstream = %self.name(), path = %response.url().path(), status = %s,
                    "mirror: the upstream refused; taken as not found");
                Ok(false)
            }
            s => Err(self.refused(s, String::new())),
        }
    }

    /// The digest a tag (or digest) names upstream, by `HEAD`; `None` if it has none.
    /// An upstream that sends no `Docker-Content-Digest` yields `Some(None)`.
    pub async fn manifest_digest(
        &self,
        remote: &str,
        reference: &str,
    ) -> Result<Option<Option<Digest>>, UpstreamError> {
        let response = self
            .send(
                Method::HEAD,
                remote,
                &format!("manifests/{reference}"),
                Some(MANIFEST_TYPES),
            )
            .await?;
        if !self.found(&response)? {
            return Ok(None);
        }
        Ok(Some(
            response
                .headers()
                .get("docker-content-digest")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse().ok()),
        ))
    }

    /// A manifest, verified against the digest asked for or announced.
    pub async fn manifest(
        &self,
        remote: &str,
        reference: &str,
    ) -> Result<Option<FetchedManifest>, UpstreamError> {
        let response = self
            .send(
                Method::GET,
                remote,
                &format!("manifests/{reference}"),
                Some(MANIFEST_TYPES),
            )
            .await?;
        if !self.found(&response)? {
            return Ok(None);
        }
        let announced: Option<Digest> = response
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        let media_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|t| berth_core::manifest::essence(t).to_owned())
            .unwrap_or_default();
        let body = self.bounded_bytes(response, MAX_MANIFEST).await?;
        let wanted: Option<Digest> = reference.parse().ok().or(announced);
        let digest = match wanted {
            Some(wanted) => {
                let mut hasher = wanted.algorithm().hasher();
                hasher.update(&body);
                if hasher.finish() != wanted {
                    Stats::count(&self.stats.upstream_errors, 1);
                    return Err(UpstreamError::Corrupt {
                        upstream: self.name(),
                        digest: wanted.to_string(),
                    });
                }
                wanted
            }
            None => berth_core::Algorithm::Sha256.digest_of(&body),
        };
        let media_type = if [
            OCI_MANIFEST,
            OCI_INDEX,
            DOCKER_MANIFEST,
            DOCKER_MANIFEST_LIST,
        ]
        .contains(&media_type.as_str())
        {
            media_type
        } else {
            // What the document says of itself, as for a push without a content type.
            serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("mediaType")
                        .and_then(|m| m.as_str())
                        .map(str::to_owned)
                })
                .unwrap_or_else(|| OCI_MANIFEST.to_owned())
        };
        Ok(Some(FetchedManifest {
            digest,
            media_type,
            body,
        }))
    }

    /// A blob's size, by `HEAD`; `None` if the upstream has none.
    pub async fn blob_size(
        &self,
        remote: &str,
        digest: &Digest,
    ) -> Result<Option<u64>, UpstreamError> {
        let response = self
            .send(Method::HEAD, remote, &format!("blobs/{digest}"), None)
            .await?;
        if !self.found(&response)? {
            return Ok(None);
        }
        Ok(response
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok()))
    }

    /// A blob's bytes as they arrive (unverified: the caller hashes them), with the
    /// length announced.
    pub async fn blob(
        &self,
        remote: &str,
        digest: &Digest,
    ) -> Result<Option<(Option<u64>, ByteStream)>, UpstreamError> {
        let response = self
            .send(Method::GET, remote, &format!("blobs/{digest}"), None)
            .await?;
        if !self.found(&response)? {
            return Ok(None);
        }
        let len = response.content_length();
        let stream = response
            .bytes_stream()
            .map(|chunk| chunk.map_err(std::io::Error::other))
            .boxed();
        Ok(Some((len, stream)))
    }
}

/// The `host[:port]` of a URL.
fn host_of(url: &str) -> &str {
    url.split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split(['/', '?'])
        .next()
        .unwrap_or_default()
}

/// The parameters of a `Bearer` challenge: `realm="…",service="…",scope="…"`.
pub fn parse_challenge(params: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut rest = params.trim();
    while !rest.is_empty() {
        let Some((key, after)) = rest.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let after = after.trim_start();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, escaped)) = chars.next() {
                            value.push(escaped);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => value.push(c),
                }
            }
            (value, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_owned(), &after[end..])
        };
        out.insert(key, value);
        rest = remaining.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_are_parsed_as_docker_sends_them() {
        let p = parse_challenge(
            r#"realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/alpine:pull");
        let p = parse_challenge(r#"realm="http://h/token", service=berth , error="a \"b\", c""#);
        assert_eq!(p["realm"], "http://h/token");
        assert_eq!(p["service"], "berth");
        assert_eq!(p["error"], "a \"b\", c");
        assert!(parse_challenge("").is_empty());
    }
}
