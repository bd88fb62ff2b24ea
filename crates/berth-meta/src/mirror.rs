//! What a mirror's cache needs beyond pushed content: when each cached manifest was last
//! pulled, how many bytes a prefix's cache holds, which manifests to evict first, and
//! pins (images that must stay).

use async_trait::async_trait;
use berth_core::{Digest, RepoName};

use crate::Result;

/// An image kept in a mirror's cache whatever its size cap says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPin {
    pub repository: RepoName,
    /// A tag, or a digest (`sha256:…`).
    pub reference: String,
    pub pinned_by: String,
    /// Unix seconds.
    pub pinned_at: i64,
}

#[async_trait]
pub trait MirrorStore: Send + Sync + 'static {
    /// Records that a manifest was pulled at `at` (unix seconds); kept to the minute.
    async fn record_pull(&self, repository: &RepoName, digest: &Digest, at: i64) -> Result<()>;
    /// Bytes the repositories under `prefix/` hold through their manifests: each live
    /// blob their manifests reference, once, plus the manifests.
    async fn mirror_usage(&self, prefix: &str) -> Result<u64>;
    /// Manifests under `prefix/` in the order to evict them: least recently pulled (or,
    /// never pulled, stored) first; never a pinned one or a child of a pinned index.
    async fn eviction_candidates(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<(RepoName, Digest)>>;
    /// Pins a tag or digest of a repository; `false` if it was pinned already.
    async fn pin(&self, repository: &RepoName, reference: &str, actor: &str) -> Result<bool>;
    async fn unpin(&self, repository: &RepoName, reference: &str) -> Result<bool>;
    /// Every pin, by repository and reference.
    async fn pins(&self) -> Result<Vec<MirrorPin>>;
}

/// Bytes the repositories under `$1/` hold through their manifests. One text for both
/// backends (the functions and casts are common to SQLite and PostgreSQL).
pub(crate) const USAGE_SQL: &str = "SELECT CAST(
        COALESCE((SELECT SUM(b.size) FROM blobs b
                  WHERE b.state = 'live' AND b.digest IN (
                      SELECT mb.digest FROM manifest_blobs mb
                      JOIN repositories r ON r.id = mb.repository_id
                      WHERE substr(r.name, 1, length($1) + 1) = $1 || '/')), 0)
      + COALESCE((SELECT SUM(length(m.body)) FROM manifests m
                  JOIN repositories r ON r.id = m.repository_id
                  WHERE substr(r.name, 1, length($1) + 1) = $1 || '/'), 0)
    AS BIGINT)";

/// The manifests under `$1/` to evict first, at most `$2`: least recently pulled (or
/// stored), never a pinned one (a pin names a digest, with its `:`, or a tag) or a child
/// of a pinned index.
pub(crate) const EVICTION_SQL: &str = "WITH pinned AS (
        SELECT r.id AS repository_id, p.reference AS digest
        FROM mirror_pins p JOIN repositories r ON r.name = p.repository
        WHERE p.reference LIKE '%:%'
        UNION
        SELECT t.repository_id, t.digest
        FROM mirror_pins p JOIN repositories r ON r.name = p.repository
        JOIN tags t ON t.repository_id = r.id AND t.name = p.reference
    ), kept AS (
        SELECT repository_id, digest FROM pinned
        UNION
        SELECT c.repository_id, c.child FROM manifest_children c
        JOIN pinned p ON p.repository_id = c.repository_id AND p.digest = c.manifest
    )
    SELECT r.name, m.digest FROM manifests m
    JOIN repositories r ON r.id = m.repository_id
    WHERE substr(r.name, 1, length($1) + 1) = $1 || '/'
      AND NOT EXISTS (SELECT 1 FROM kept k
                      WHERE k.repository_id = m.repository_id AND k.digest = m.digest)
    ORDER BY COALESCE(m.pulled_at, m.created_at), m.digest
    LIMIT $2";
