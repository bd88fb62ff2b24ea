//! The mirror cache's records on PostgreSQL.

use async_trait::async_trait;
use berth_core::{Digest, RepoName};

use super::{PgMetaStore, backend, now};
use crate::Result;
use crate::mirror::{EVICTION_SQL, MirrorPin, MirrorStore, USAGE_SQL};

#[async_trait]
impl MirrorStore for PgMetaStore {
    async fn record_pull(&self, repository: &RepoName, digest: &Digest, at: i64) -> Result<()> {
        // At most one write a minute per manifest, however often it is pulled.
        sqlx::query(
            "UPDATE manifests SET pulled_at = $3
             WHERE repository_id = (SELECT id FROM repositories WHERE name = $1)
               AND digest = $2 AND (pulled_at IS NULL OR pulled_at < $3 - 60)",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .bind(at)
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn mirror_usage(&self, prefix: &str) -> Result<u64> {
        let bytes: i64 = sqlx::query_scalar(USAGE_SQL)
            .bind(prefix)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(bytes.max(0) as u64)
    }

    async fn eviction_candidates(
        &self,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<(RepoName, Digest)>> {
        let rows: Vec<crate::rows::ManifestRefRow> = sqlx::query_as(EVICTION_SQL)
            .bind(prefix)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.into_iter().map(crate::rows::manifest_ref).collect()
    }

    async fn pin(&self, repository: &RepoName, reference: &str, actor: &str) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO mirror_pins (repository, reference, pinned_by, pinned_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(repository.as_str())
        .bind(reference)
        .bind(actor)
        .bind(now())
        .execute(&self.pool)
        .await
        .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn unpin(&self, repository: &RepoName, reference: &str) -> Result<bool> {
        let done = sqlx::query("DELETE FROM mirror_pins WHERE repository = $1 AND reference = $2")
            .bind(repository.as_str())
            .bind(reference)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn pins(&self) -> Result<Vec<MirrorPin>> {
        let rows: Vec<crate::rows::PinRow> = sqlx::query_as(
            "SELECT repository, reference, pinned_by, pinned_at FROM mirror_pins
             ORDER BY repository, reference",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        rows.into_iter().map(crate::rows::pin).collect()
    }
}
