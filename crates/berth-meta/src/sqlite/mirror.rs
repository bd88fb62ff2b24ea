//! The mirror cache's records on SQLite.

use async_trait::async_trait;
use berth_core::{Digest, RepoName};
use sqlx::SqliteConnection;

use super::writes::{Outcome, Write};
use super::{SqliteMetaStore, backend, changed};
use crate::Result;
use crate::mirror::{EVICTION_SQL, MirrorPin, MirrorStore, USAGE_SQL};

/// Writes of the mirror cache, applied by the writer task.
pub(super) enum MirrorWrite {
    RecordPull {
        repository: String,
        digest: String,
        at: i64,
    },
    Pin {
        repository: String,
        reference: String,
        actor: String,
        at: i64,
    },
    Unpin {
        repository: String,
        reference: String,
    },
}

pub(super) async fn apply(conn: &mut SqliteConnection, write: &MirrorWrite) -> Result<Outcome> {
    let done = match write {
        // At most one write a minute per manifest, however often it is pulled.
        MirrorWrite::RecordPull {
            repository,
            digest,
            at,
        } => sqlx::query(
            "UPDATE manifests SET pulled_at = ?3
             WHERE repository_id = (SELECT id FROM repositories WHERE name = ?1)
               AND digest = ?2 AND (pulled_at IS NULL OR pulled_at < ?3 - 60)",
        )
        .bind(repository)
        .bind(digest)
        .bind(at),
        MirrorWrite::Pin {
            repository,
            reference,
            actor,
            at,
        } => sqlx::query(
            "INSERT INTO mirror_pins (repository, reference, pinned_by, pinned_at)
             VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
        )
        .bind(repository)
        .bind(reference)
        .bind(actor)
        .bind(at),
        MirrorWrite::Unpin {
            repository,
            reference,
        } => sqlx::query("DELETE FROM mirror_pins WHERE repository = ? AND reference = ?")
            .bind(repository)
            .bind(reference),
    }
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(Outcome::Changed(done.rows_affected() > 0))
}

#[async_trait]
impl MirrorStore for SqliteMetaStore {
    async fn record_pull(&self, repository: &RepoName, digest: &Digest, at: i64) -> Result<()> {
        self.write(Write::Mirror(MirrorWrite::RecordPull {
            repository: repository.as_str().to_owned(),
            digest: digest.to_string(),
            at,
        }))
        .await
        .map(drop)
    }

    async fn mirror_usage(&self, prefix: &str) -> Result<u64> {
        let bytes: i64 = sqlx::query_scalar(USAGE_SQL)
            .bind(prefix)
            .fetch_one(&self.reader)
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
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.into_iter().map(crate::rows::manifest_ref).collect()
    }

    async fn pin(&self, repository: &RepoName, reference: &str, actor: &str) -> Result<bool> {
        changed(
            self.write(Write::Mirror(MirrorWrite::Pin {
                repository: repository.as_str().to_owned(),
                reference: reference.to_owned(),
                actor: actor.to_owned(),
                at: super::now(),
            }))
            .await,
        )
    }

    async fn unpin(&self, repository: &RepoName, reference: &str) -> Result<bool> {
        changed(
            self.write(Write::Mirror(MirrorWrite::Unpin {
                repository: repository.as_str().to_owned(),
                reference: reference.to_owned(),
            }))
            .await,
        )
    }

    async fn pins(&self) -> Result<Vec<MirrorPin>> {
        let rows: Vec<crate::rows::PinRow> = sqlx::query_as(
            "SELECT repository, reference, pinned_by, pinned_at FROM mirror_pins
             ORDER BY repository, reference",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.into_iter().map(crate::rows::pin).collect()
    }
}
