//! Mirrors: repositories under `PREFIX/` are read-only copies of an upstream registry's
//! repositories (`hub/library/alpine` ← Docker Hub's `library/alpine`), fetched when
//! first pulled and kept.
//!
//! - A manifest by digest, once here, is served from here. A tag is checked with the
//!   upstream (a `HEAD`) once its last check is older than the upstream's `tag_ttl`, and
//!   fetched again only when it moved.
//! - A blob is fetched once however many clients ask at the same time: the first
//!   request streams it to its client while it is stored (and verified: nothing whose
//!   bytes do not hash to its digest is kept); the others wait for it and are served
//!   from here.
//! - When the upstream is unreachable, times out, or answers 429 or 5xx, what is cached
//!   is served with a `Warning` saying it may be stale; what is not fails at once with
//!   an error naming the upstream's failure.
//!
//! [`upstream`] is the client (authentication, requests, errors).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_core::{Digest, Reference, RepoName};
use berth_meta::ManifestRecord;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{mpsc, watch};

use crate::config::{ConfigError, UpstreamConfig};
use crate::error::{RegistryError, Result};
use crate::registry::{ByteStream, Registry};

pub mod upstream;

pub use upstream::{FetchedManifest, Stats, Upstream, UpstreamError};

/// Tags remembered as checked: at most this many (then the stale ones are forgotten).
const MAX_REMEMBERED: usize = 10_000;

/// Chunks buffered between a blob's upstream and the client of the request fetching it.
const TEE_CHUNKS: usize = 16;

/// The mirrored registries of this server.
#[derive(Default)]
pub struct Mirror {
    upstreams: Vec<Arc<Upstream>>,
    /// The upstream of registry-mirror mode (`--mirror-default`): it serves the
    /// repositories that exist nowhere here, cached under its prefix.
    default: Option<usize>,
    /// When a tag was last confirmed with its upstream, by `repository:tag`.
    checked: Mutex<HashMap<String, Instant>>,
    /// Blobs being fetched, each with what its fetch reports when done.
    fetching: Mutex<HashMap<Digest, watch::Receiver<bool>>>,
    /// Prefixes whose cache is being trimmed to its cap, each with whether something
    /// was stored meanwhile (then the trim runs again).
    evicting: Mutex<HashMap<String, bool>>,
}

impl Mirror {
    pub fn new(
        configs: &[UpstreamConfig],
        default: Option<&str>,
    ) -> std::result::Result<Mirror, ConfigError> {
        let mut upstreams = Vec::new();
        for config in configs {
            config.check()?;
            if upstreams
                .iter()
                .any(|u: &Arc<Upstream>| u.prefix() == config.prefix)
            {
                return Err(ConfigError::Upstream(format!(
                    "prefix {:?} is given twice",
                    config.prefix
                )));
            }
            let upstream =
                Upstream::new(config.clone()).map_err(|e| ConfigError::Upstream(e.to_string()))?;
            upstreams.push(Arc::new(upstream));
        }
        let default = match default {
            Some(prefix) => Some(
                upstreams
                    .iter()
                    .position(|u| u.prefix() == prefix)
                    .ok_or_else(|| {
                        ConfigError::Upstream(format!(
                            "mirror_default {prefix:?} names no upstream's prefix"
                        ))
                    })?,
            ),
            None => None,
        };
        Ok(Mirror {
            upstreams,
            default,
            ..Mirror::default()
        })
    }

    pub fn upstreams(&self) -> &[Arc<Upstream>] {
        &self.upstreams
    }

    /// The upstream `repo` mirrors by its prefix, and its name there.
    pub fn route(&self, repo: &RepoName) -> Option<Route<'_>> {
        let (first, rest) = repo.as_str().split_once('/')?;
        let upstream = self.upstreams.iter().find(|u| u.prefix() == first)?;
        Some(Route {
            upstream,
            remote: remote_name(upstream, rest),
            cache: repo.clone(),
        })
    }

    /// Registry-mirror mode (`--mirror-default`): the upstream serving `repo`, which
    /// exists nowhere here and matches no prefix: the one whose host `namespace` names
    /// (containerd's `?ns=`), else the default one. Cached under its prefix.
    pub fn route_unknown(&self, repo: &RepoName, namespace: Option<&str>) -> Option<Route<'_>> {
        self.default?;
        let by_namespace = namespace.and_then(|ns| {
            self.upstreams
                .iter()
                .find(|u| serves_namespace(&u.config.url, ns))
        });
        let upstream = by_namespace.or_else(|| self.default.map(|i| &self.upstreams[i]))?;
        let cache = format!("{}/{repo}", upstream.prefix()).parse().ok()?;
        Some(Route {
            upstream,
            remote: remote_name(upstream, repo.as_str()),
            cache,
        })
    }

    /// Whether registry-mirror mode is on (`--mirror-default`).
    pub fn mirrors_unknown(&self) -> bool {
        self.default.is_some()
    }

    fn fresh(&self, key: &str, upstream: &Upstream) -> bool {
        let checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        checked
            .get(key)
            .is_some_and(|at| at.elapsed() < upstream.config.tag_ttl)
    }

    fn confirm(&self, key: String) {
        let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
        if checked.len() >= MAX_REMEMBERED {
            // Entries older than every TTL are worth nothing; if all are fresh, start over.
            let longest = self
                .upstreams
                .iter()
                .map(|u| u.config.tag_ttl)
                .max()
                .unwrap_or_default();
            checked.retain(|_, at| at.elapsed() < longest);
            if checked.len() >= MAX_REMEMBERED {
                checked.clear();
            }
        }
        checked.insert(key, Instant::now());
    }

    /// A mirrored manifest: from here while fresh, else from the upstream; the cached
    /// copy with a warning when the upstream fails.
    pub async fn manifest(
        self: &Arc<Self>,
        registry: &Arc<Registry>,
        route: &Route<'_>,
        reference: &Reference,
    ) -> Result<(ManifestRecord, Option<String>)> {
        let served = self.manifest_from(registry, route, reference).await;
        if let Ok((manifest, _)) = &served {
            // Recorded for eviction's order, off the request's path.
            let (registry, repo, digest) = (
                registry.clone(),
                route.cache.clone(),
                manifest.digest.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = registry.record_mirrored_pull(&repo, &digest).await {
                    tracing::warn!(%repo, %digest, error = %e, "mirror: recording a pull failed");
                }
            });
        }
        served
    }

    async fn manifest_from(
        self: &Arc<Self>,
        registry: &Arc<Registry>,
        route: &Route<'_>,
        reference: &Reference,
    ) -> Result<(ManifestRecord, Option<String>)> {
        let (upstream, remote, repo) = (route.upstream, &route.remote, &route.cache);
        let cached = match registry.get_manifest(repo, reference).await {
            Ok(m) => Some(m),
            Err(RegistryError::ManifestUnknown) => None,
            Err(e) => return Err(e),
        };
        let actor = format!("mirror:{}", upstream.prefix());
        let tag = match reference {
            Reference::Digest(_) => {
                // Content by digest never changes: once here, it is served from here.
                if let Some(m) = cached {
                    Stats::count(&upstream.stats.hits, 1);
                    return Ok((m, None));
                }
                None
            }
            Reference::Tag(tag) => Some(tag),
        };
        let remote = remote.as_str();
        let key = format!("{repo}:{reference}");
        if let (Some(m), Some(_)) = (&cached, tag)
            && self.fresh(&key, upstream)
        {
            Stats::count(&upstream.stats.hits, 1);
            return Ok((m.clone(), None));
        }
        let fetched = async {
            if let (Some(m), Some(tag)) = (&cached, tag) {
                // Revalidate with a HEAD; fetch only when the tag moved.
                match upstream.manifest_digest(remote, tag.as_str()).await? {
                    Some(Some(digest)) if digest == m.digest => return Ok(Some(None)),
                    None => return Ok(None),
                    Some(_) => {}
                }
            }
            Ok::<_, UpstreamError>(
                upstream
                    .manifest(remote, &reference.to_string())
                    .await?
                    .map(Some),
            )
        }
        .await;
        match fetched {
            Ok(Some(None)) => {
                self.confirm(key);
                Stats::count(&upstream.stats.hits, 1);
                cached
                    .map(|m| (m, None))
                    .ok_or(RegistryError::ManifestUnknown)
            }
            Ok(Some(Some(new))) => {
                let stored = registry
                    .put_mirrored_manifest(repo, &new, tag, &actor)
                    .await?;
                self.confirm(key);
                Stats::count(&upstream.stats.misses, 1);
                self.trim_soon(registry, upstream);
                Ok((stored, None))
            }
            Ok(None) => Err(RegistryError::ManifestUnknown),
            Err(e) => {
                Stats::count(&upstream.stats.upstream_errors, 1);
                tracing::warn!(%repo, %reference, error = %e, "mirror: upstream failed");
                match cached {
                    Some(m) => Ok((m, Some(stale_warning(&e)))),
                    None => Err(e.into()),
                }
            }
        }
    }

    /// A mirrored blob not stored here yet: fetched from the upstream once, streamed to
    /// this request's client while it is stored. `Ok(None)`: it is here now (another
    /// request fetched it, or the registry held it already), serve it from here.
    pub async fn blob(
        self: &Arc<Self>,
        registry: &Arc<Registry>,
        route: &Route<'_>,
        digest: &Digest,
    ) -> Result<Option<(Option<u64>, ByteStream)>> {
        let (upstream, remote, repo) = (route.upstream, &route.remote, &route.cache);
        // Held elsewhere in the registry: linked here instead of fetched, but only once
        // the upstream says it has it under this name (a HEAD), so that no blob of a
        // private repository is ever served through a mirror on the registry's word.
        if registry.stored_blob_size(digest).await?.is_some() {
            return self
                .link_confirmed(registry, route, digest)
                .await
                .map(|()| None);
        }
        enum Role {
            Fetcher(FetchGuard),
            Waiter(watch::Receiver<bool>),
        }
        let role = {
            let mut fetching = self.fetching.lock().unwrap_or_else(|p| p.into_inner());
            match fetching.get(digest) {
                Some(done) => Role::Waiter(done.clone()),
                None => {
                    let (tx, rx) = watch::channel(false);
                    fetching.insert(digest.clone(), rx);
                    Role::Fetcher(FetchGuard {
                        mirror: self.clone(),
                        digest: digest.clone(),
                        done: tx,
                    })
                }
            }
        };
        match role {
            Role::Fetcher(guard) => {
                self.fetch_blob(registry, upstream, repo, remote, digest, guard)
                    .await
            }
            Role::Waiter(mut done) => {
                // Another request is fetching it: served from here once stored.
                let _ = done.wait_for(|finished| *finished).await;
                match registry.blob_size(repo, digest).await {
                    Ok(size) => {
                        Stats::count(&upstream.stats.hits, 1);
                        Stats::count(&upstream.stats.bytes_saved, size);
                        Ok(None)
                    }
                    // Fetched for another cache of the registry: confirmed and linked.
                    Err(RegistryError::BlobUnknown(_))
                        if registry.stored_blob_size(digest).await?.is_some() =>
                    {
                        self.link_confirmed(registry, route, digest)
                            .await
                            .map(|()| None)
                    }
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Links a blob the registry holds into `route`'s cache once the upstream confirms
    /// it has it under the route's name.
    async fn link_confirmed(
        &self,
        registry: &Registry,
        route: &Route<'_>,
        digest: &Digest,
    ) -> Result<()> {
        let upstream = route.upstream;
        match upstream.blob_size(&route.remote, digest).await {
            Ok(Some(_)) => {}
            Ok(None) => return Err(RegistryError::BlobUnknown(digest.clone())),
            Err(e) => {
                Stats::count(&upstream.stats.upstream_errors, 1);
                return Err(e.into());
            }
        }
        let size = registry
            .link_mirrored_blob(&route.cache, digest)
            .await?
            .ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))?;
        Stats::count(&upstream.stats.hits, 1);
        Stats::count(&upstream.stats.bytes_saved, size);
        Ok(())
    }

    /// Starts fetching a blob: a task stores it (verifying its digest) while this
    /// request's client gets the same bytes, all but the last chunk as they arrive and
    /// the last one only once the digest matched (else an error ends the body, so no
    /// client ever holds wrong bytes that look whole). The task finishes even if the
    /// client leaves; a client that stops reading is dropped after the upstream's
    /// timeout rather than holding the store up.
    async fn fetch_blob(
        self: &Arc<Self>,
        registry: &Arc<Registry>,
        upstream: &Upstream,
        repo: &RepoName,
        remote: &str,
        digest: &Digest,
        guard: FetchGuard,
    ) -> Result<Option<(Option<u64>, ByteStream)>> {
        // Dropping `guard` (on every return below, or if this request is dropped while
        // the upstream answers) ends the fetch for those waiting on it.
        let (len, mut body) = match upstream.blob(remote, digest).await {
            Ok(Some(fetched)) => fetched,
            Ok(None) => return Err(RegistryError::BlobUnknown(digest.clone())),
            Err(e) => {
                Stats::count(&upstream.stats.upstream_errors, 1);
                return Err(e.into());
            }
        };
        Stats::count(&upstream.stats.misses, 1);
        let (to_client, from_upstream) = mpsc::channel::<std::io::Result<Bytes>>(TEE_CHUNKS);
        let (chunks_tx, chunks_rx) = mpsc::channel::<std::io::Result<Bytes>>(TEE_CHUNKS);
        let (mirror, registry) = (self.clone(), registry.clone());
        let (repo, digest) = (repo.clone(), digest.clone());
        let cap = upstream
            .config
            .max_size
            .map(|max| (upstream.config.prefix.clone(), max));
        let patience = upstream.config.timeout;
        tokio::spawn(async move {
            let _guard = guard;
            let store = {
                let (registry, repo, digest) = (registry.clone(), repo.clone(), digest.clone());
                tokio::spawn(async move {
                    registry
                        .upload_whole(&repo, &digest, stream_of(chunks_rx))
                        .await
                })
            };
            let mut client = Some(to_client);
            let mut held: Option<Bytes> = None;
            let mut whole = true;
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(bytes) => {
                        if chunks_tx.send(Ok(bytes.clone())).await.is_err() {
                            whole = false;
                            break;
                        }
                        if let Some(previous) = held.replace(bytes) {
                            forward(&mut client, Ok(previous), patience).await;
                        }
                    }
                    Err(e) => {
                        let _ = chunks_tx.send(Err(e)).await;
                        whole = false;
                        break;
                    }
                }
            }
            drop(chunks_tx);
            let stored = match store.await {
                Ok(stored) => stored,
                Err(e) => Err(RegistryError::internal(e)),
            };
            match (&stored, held) {
                (Ok(_), Some(last)) if whole => forward(&mut client, Ok(last), patience).await,
                (Ok(_), None) if whole => {}
                _ => {
                    tracing::warn!(repository = %repo, %digest, outcome = ?stored.as_ref().err(),
                        "mirror: a blob from the upstream was not stored");
                    let refused = std::io::Error::other("the upstream's bytes were not kept");
                    forward(&mut client, Err(refused), patience).await;
                }
            }
            drop(client);
            if stored.is_ok()
                && let Some((prefix, max)) = cap
            {
                mirror.trim(&registry, prefix, max);
            }
        });
        Ok(Some((len, stream_of(from_upstream))))
    }
}

/// The fetch of one blob, as those waiting for it see it: when dropped (the fetch done,
/// failed, or abandoned), it is forgotten and its waiters wake.
struct FetchGuard {
    mirror: Arc<Mirror>,
    digest: Digest,
    done: watch::Sender<bool>,
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        self.mirror
            .fetching
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.digest);
        let _ = self.done.send(true);
    }
}

/// Hands a chunk to a client that keeps up; one that takes longer than `patience` to
/// take it is dropped.
async fn forward(
    client: &mut Option<mpsc::Sender<std::io::Result<Bytes>>>,
    item: std::io::Result<Bytes>,
    patience: std::time::Duration,
) {
    if let Some(tx) = client
        && !matches!(
            tokio::time::timeout(patience, tx.send(item)).await,
            Ok(Ok(()))
        )
    {
        *client = None;
    }
}

impl Mirror {
    /// Trims an upstream's cache to its cap, if it has one, in the background.
    fn trim_soon(self: &Arc<Self>, registry: &Arc<Registry>, upstream: &Upstream) {
        if let Some(max) = upstream.config.max_size {
            self.trim(registry, upstream.config.prefix.clone(), max);
        }
    }

    /// One trim per prefix at a time; a store meanwhile makes it run again.
    fn trim(self: &Arc<Self>, registry: &Arc<Registry>, prefix: String, max: u64) {
        {
            let mut evicting = self.evicting.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(again) = evicting.get_mut(&prefix) {
                *again = true;
                return;
            }
            evicting.insert(prefix.clone(), false);
        }
        let (mirror, registry) = (self.clone(), registry.clone());
        tokio::spawn(async move {
            loop {
                match registry.evict_mirrored(&prefix, max).await {
                    Ok(0) => {}
                    Ok(n) => {
                        tracing::info!(prefix, evicted = n, "mirror: cache trimmed to its cap")
                    }
                    Err(e) => {
                        tracing::warn!(prefix, error = %e, "mirror: trimming the cache failed")
                    }
                }
                let mut evicting = mirror.evicting.lock().unwrap_or_else(|p| p.into_inner());
                match evicting.get_mut(&prefix) {
                    Some(again) if *again => *again = false,
                    _ => {
                        evicting.remove(&prefix);
                        return;
                    }
                }
            }
        });
    }
}

/// Where a mirrored repository's content comes from and goes.
pub struct Route<'a> {
    pub upstream: &'a Upstream,
    /// The repository's name upstream.
    pub remote: String,
    /// Where its copy is kept here (under the upstream's prefix).
    pub cache: RepoName,
}

/// Whether an upstream at `url` is the registry containerd names `namespace` (its
/// host, or `docker.io` for Docker Hub's registry hosts).
fn serves_namespace(url: &str, namespace: &str) -> bool {
    let host = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    host.eq_ignore_ascii_case(namespace) || (namespace == "docker.io" && is_docker_hub(url))
}

fn is_docker_hub(url: &str) -> bool {
    [
        "registry-1.docker.io",
        "index.docker.io",
        "registry.hub.docker.com",
    ]
    .iter()
    .any(|host| url.contains(host))
}

/// A channel's receiving end as a byte stream.
fn stream_of(mut rx: mpsc::Receiver<std::io::Result<bytes::Bytes>>) -> ByteStream {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx)).boxed()
}

/// Docker Hub keeps official images under `library/`; its clients leave that out.
fn remote_name(upstream: &Upstream, rest: &str) -> String {
    let hub = [
        "registry-1.docker.io",
        "index.docker.io",
        "registry.hub.docker.com",
    ]
    .iter()
    .any(|host| upstream.config.url.contains(host));
    if hub && !rest.contains('/') {
        format!("library/{rest}")
    } else {
        rest.to_owned()
    }
}

/// The `Warning` of a copy served while its upstream fails (RFC 7234's 110, "Response
/// is Stale").
pub fn stale_warning(e: &UpstreamError) -> String {
    let text = e.to_string().replace(['"', '\\'], "'");
    format!("110 berth \"may be stale: {text}\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mirror() -> Mirror {
        let configs: Vec<UpstreamConfig> =
            ["hub=https://registry-1.docker.io", "ghcr=https://ghcr.io"]
                .iter()
                .map(|t| UpstreamConfig::parse(t).unwrap())
                .collect();
        Mirror::new(&configs, Some("hub")).unwrap()
    }

    #[test]
    fn prefixes_route_and_docker_hub_names_get_library() {
        let m = mirror();
        let route = m.route(&"hub/alpine".parse().unwrap()).unwrap();
        assert_eq!(
            (route.upstream.prefix(), route.remote.as_str()),
            ("hub", "library/alpine")
        );
        let route = m.route(&"ghcr/org/tool".parse().unwrap()).unwrap();
        assert_eq!(route.remote, "org/tool");
        assert!(m.route(&"gallery/ui".parse().unwrap()).is_none());
    }

    #[test]
    fn unknown_repositories_go_to_the_default_or_their_namespace() {
        let m = mirror();
        let repo: RepoName = "library/alpine".parse().unwrap();
        let route = m.route_unknown(&repo, None).unwrap();
        assert_eq!(route.cache.as_str(), "hub/library/alpine");
        assert_eq!(route.remote, "library/alpine");
        let route = m.route_unknown(&repo, Some("ghcr.io")).unwrap();
        assert_eq!(route.cache.as_str(), "ghcr/library/alpine");
        let route = m.route_unknown(&repo, Some("docker.io")).unwrap();
        assert_eq!(route.upstream.prefix(), "hub");
        assert!(
            Mirror::new(&[], None)
                .unwrap()
                .route_unknown(&repo, None)
                .is_none()
        );
        let configs = [UpstreamConfig::parse("hub=https://registry-1.docker.io").unwrap()];
        let no_default = Mirror::new(&configs, None).unwrap();
        assert!(
            no_default.route_unknown(&repo, Some("docker.io")).is_none(),
            "only in registry-mirror mode"
        );
        assert!(Mirror::new(&[], Some("x")).is_err());
    }
}
