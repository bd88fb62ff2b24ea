//! Garbage collection and storage accounting in SQLite. The single writer serializes
//! claims against pins, mounts and manifest PUTs, so a claim needs no row locks: the
//! collectable conditions it checks hold until its transaction commits.

use berth_core::{Digest, RepoName};
use sqlx::{Row, SqliteConnection, SqlitePool};

use super::writes::{Outcome, delete_manifest};
use super::{backend, corrupt, now, parse_digest};
use crate::{GcBlob, GcCutoffs, RepositoryUsage, Result};

/// A blob `b` that may be collected; binds `?1` released_before, `?2` linked_before,
/// `?3` claimed_before (see [`GcCutoffs`]).
const COLLECTABLE: &str = "
    (b.state IN ('pending', 'live') OR (b.state = 'deleting' AND b.claimed_at < ?3))
    AND COALESCE(b.released_at, 0) < ?1
    AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.digest = b.digest)
    AND NOT EXISTS (SELECT 1 FROM repository_blobs rb
                    WHERE rb.digest = b.digest AND rb.linked_at >= ?2)";

/// A link `rb` no manifest of its repository uses, of a live blob released long
/// enough ago (or never referenced); binds `?1` and `?2` as above.
const STALE_LINK: &str = "
    rb.linked_at < ?2
    AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb
                    WHERE mb.repository_id = rb.repository_id AND mb.digest = rb.digest)
    AND EXISTS (SELECT 1 FROM blobs b WHERE b.digest = rb.digest AND b.state = 'live'
                AND COALESCE(b.released_at, 0) < ?1)";

/// A manifest `m` with no tag, no parent index in its repository, no subject there, old
/// enough; binds `?1` and `?2` as above.
const UNTAGGED: &str = "
    NOT EXISTS (SELECT 1 FROM tags t WHERE t.repository_id = m.repository_id AND t.digest = m.digest)
    AND NOT EXISTS (SELECT 1 FROM manifest_children c
                    WHERE c.repository_id = m.repository_id AND c.child = m.digest)
    AND (m.subject IS NULL OR NOT EXISTS (SELECT 1 FROM manifests s
                    WHERE s.repository_id = m.repository_id AND s.digest = m.subject))
    AND m.created_at < ?2
    AND COALESCE(m.untagged_at, 0) < ?1";

/// The garbage-collection writes (run by the writer task, each in its savepoint).
pub(super) enum GcWrite {
    ClaimBlobs {
        cutoffs: GcCutoffs,
        limit: u32,
    },
    Forget {
        digests: Vec<Digest>,
    },
    ClaimOrphan {
        digest: Digest,
        size: u64,
    },
    StaleLinks {
        cutoffs: GcCutoffs,
    },
    Untagged {
        scopes: Vec<String>,
        cutoffs: GcCutoffs,
    },
}

fn blobs_from_rows(rows: &[sqlx::sqlite::SqliteRow]) -> Result<Vec<GcBlob>> {
    rows.iter()
        .map(|row| {
            let digest: String = row.try_get("digest").map_err(backend)?;
            let size: i64 = row.try_get("size").map_err(backend)?;
            Ok(GcBlob {
                digest: parse_digest(&digest)?,
                size: size as u64,
            })
        })
        .collect()
}

/// `(r.name = ?n OR r.name LIKE …)` for each scope, binding from `?first` on: a
/// namespace or repository name, and everything under it.
fn scope_clause(scopes: &[String], first: usize) -> String {
    let each: Vec<String> = (0..scopes.len())
        .map(|i| {
            let n = first + i;
            format!("(r.name = ?{n} OR substr(r.name, 1, length(?{n}) + 1) = ?{n} || '/')")
        })
        .collect();
    format!("({})", each.join(" OR "))
}

pub(super) async fn apply(conn: &mut SqliteConnection, write: &GcWrite) -> Result<Outcome> {
    match write {
        GcWrite::ClaimBlobs { cutoffs, limit } => {
            let sql = format!(
                "SELECT b.digest, b.size FROM blobs b WHERE {COLLECTABLE}
                 ORDER BY b.digest LIMIT ?4"
            );
            let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(cutoffs.released_before)
                .bind(cutoffs.linked_before)
                .bind(cutoffs.claimed_before)
                .bind(i64::from(*limit))
                .fetch_all(&mut *conn)
                .await
                .map_err(backend)?;
            let claimed = blobs_from_rows(&rows)?;
            let t = now();
            for blob in &claimed {
                sqlx::query("UPDATE blobs SET state = 'deleting', claimed_at = ? WHERE digest = ?")
                    .bind(t)
                    .bind(blob.digest.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
            }
            Ok(Outcome::Blobs(claimed))
        }
        GcWrite::Forget { digests } => {
            for digest in digests {
                sqlx::query(
                    "DELETE FROM repository_blobs WHERE digest = ?1
                     AND EXISTS (SELECT 1 FROM blobs WHERE digest = ?1 AND state = 'deleting')",
                )
                .bind(digest.to_string())
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
                sqlx::query("DELETE FROM blobs WHERE digest = ? AND state = 'deleting'")
                    .bind(digest.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
            }
            Ok(Outcome::Done)
        }
        GcWrite::ClaimOrphan { digest, size } => {
            let t = now();
            let done = sqlx::query(
                "INSERT INTO blobs (digest, size, created_at, state, claimed_at)
                 VALUES (?, ?, ?, 'deleting', ?) ON CONFLICT (digest) DO NOTHING",
            )
            .bind(digest.to_string())
            .bind(*size as i64)
            .bind(t)
            .bind(t)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() == 1))
        }
        GcWrite::StaleLinks { cutoffs } => {
            let sql = format!("DELETE FROM repository_blobs AS rb WHERE {STALE_LINK}");
            let done = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(cutoffs.released_before)
                .bind(cutoffs.linked_before)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Number(Some(done.rows_affected() as i64)))
        }
        GcWrite::Untagged { scopes, cutoffs } => {
            let found = untagged(&mut *conn, scopes, cutoffs).await?;
            for (repository, digest) in &found {
                delete_manifest(conn, repository, digest, "gc").await?;
            }
            Ok(Outcome::Manifests(found))
        }
    }
}

/// Untagged manifests in `scopes` that may go (read inside the writer's transaction,
/// or from the pool for a dry run).
pub(super) async fn untagged<'c, E>(
    executor: E,
    scopes: &[String],
    cutoffs: &GcCutoffs,
) -> Result<Vec<(RepoName, Digest)>>
where
    E: sqlx::Executor<'c, Database = sqlx::Sqlite>,
{
    if scopes.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT r.name, m.digest FROM manifests m JOIN repositories r ON r.id = m.repository_id
         WHERE {UNTAGGED} AND {} ORDER BY r.name, m.digest",
        scope_clause(scopes, 3)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(cutoffs.released_before)
        .bind(cutoffs.linked_before);
    for scope in scopes {
        query = query.bind(scope.clone());
    }
    let rows = query.fetch_all(executor).await.map_err(backend)?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get(0).map_err(backend)?;
            let digest: String = row.try_get(1).map_err(backend)?;
            let repository = name
                .parse()
                .map_err(|e| corrupt(format!("stored repository name {name:?}: {e}")))?;
            Ok((repository, parse_digest(&digest)?))
        })
        .collect()
}

pub(super) async fn candidates(
    pool: &SqlitePool,
    cutoffs: &GcCutoffs,
    after: Option<&Digest>,
    limit: u32,
) -> Result<Vec<GcBlob>> {
    let sql = format!(
        "SELECT b.digest, b.size FROM blobs b WHERE {COLLECTABLE} AND b.digest > ?4
         ORDER BY b.digest LIMIT ?5"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(cutoffs.released_before)
        .bind(cutoffs.linked_before)
        .bind(cutoffs.claimed_before)
        .bind(after.map(Digest::to_string).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await
        .map_err(backend)?;
    blobs_from_rows(&rows)
}

pub(super) async fn stale_links(pool: &SqlitePool, cutoffs: &GcCutoffs) -> Result<u64> {
    let sql = format!("SELECT count(*) FROM repository_blobs rb WHERE {STALE_LINK}");
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .bind(cutoffs.released_before)
        .bind(cutoffs.linked_before)
        .fetch_one(pool)
        .await
        .map_err(backend)?;
    Ok(n as u64)
}

pub(super) async fn blob_known(pool: &SqlitePool, digest: &Digest) -> Result<bool> {
    let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM blobs WHERE digest = ?")
        .bind(digest.to_string())
        .fetch_optional(pool)
        .await
        .map_err(backend)?;
    Ok(found.is_some())
}

pub(super) async fn repository_usage(
    pool: &SqlitePool,
    namespace: Option<&str>,
    last: Option<&str>,
    limit: u32,
) -> Result<Vec<RepositoryUsage>> {
    let rows = sqlx::query(
        "SELECT r.name,
            (SELECT COALESCE(SUM(b.size), 0) FROM repository_blobs rb
             JOIN blobs b ON b.digest = rb.digest
             WHERE rb.repository_id = r.id AND b.state = 'live') AS blob_bytes,
            (SELECT count(*) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
             WHERE rb.repository_id = r.id AND b.state = 'live') AS blobs,
            (SELECT COALESCE(SUM(length(m.body)), 0) FROM manifests m
             WHERE m.repository_id = r.id) AS manifest_bytes,
            (SELECT count(*) FROM manifests m WHERE m.repository_id = r.id) AS manifests,
            (SELECT count(*) FROM tags t WHERE t.repository_id = r.id) AS tags
         FROM repositories r
         WHERE r.name > ?1
           AND (?2 IS NULL OR r.name = ?2 OR substr(r.name, 1, length(?2) + 1) = ?2 || '/')
         ORDER BY r.name LIMIT ?3",
    )
    .bind(last.unwrap_or(""))
    .bind(namespace)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get("name").map_err(backend)?;
            let count = |column: &str| -> Result<u64> {
                Ok(row.try_get::<i64, _>(column).map_err(backend)? as u64)
            };
            Ok(RepositoryUsage {
                repository: name
                    .parse()
                    .map_err(|e| corrupt(format!("stored repository name {name:?}: {e}")))?,
                bytes: count("blob_bytes")? + count("manifest_bytes")?,
                blobs: count("blobs")?,
                manifests: count("manifests")?,
                tags: count("tags")?,
            })
        })
        .collect()
}

pub(super) async fn stored_bytes(pool: &SqlitePool) -> Result<u64> {
    let bytes: i64 = sqlx::query_scalar(
        "SELECT (SELECT COALESCE(SUM(size), 0) FROM blobs WHERE state = 'live')
              + (SELECT COALESCE(SUM(length(body)), 0) FROM manifests)",
    )
    .fetch_one(pool)
    .await
    .map_err(backend)?;
    Ok(bytes as u64)
}

pub(super) async fn namespace_usage(pool: &SqlitePool, namespace: &str) -> Result<u64> {
    let bytes: i64 = sqlx::query_scalar(
        "SELECT
            (SELECT COALESCE(SUM(b.size), 0) FROM blobs b
             WHERE b.state = 'live' AND b.digest IN (
                 SELECT rb.digest FROM repository_blobs rb
                 JOIN repositories r ON r.id = rb.repository_id
                 WHERE r.name = ?1 OR substr(r.name, 1, length(?1) + 1) = ?1 || '/'))
          + (SELECT COALESCE(SUM(length(m.body)), 0) FROM manifests m
             JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = ?1 OR substr(r.name, 1, length(?1) + 1) = ?1 || '/')",
    )
    .bind(namespace)
    .fetch_one(pool)
    .await
    .map_err(backend)?;
    Ok(bytes as u64)
}
