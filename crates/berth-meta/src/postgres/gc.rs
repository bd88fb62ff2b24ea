//! Garbage collection and storage accounting in the PostgreSQL store.
//!
//! Many nodes may collect at once while pushes go on. A collector never acts on what
//! one snapshot showed it: it locks the rows it means to take `FOR UPDATE SKIP LOCKED`
//! (rows another collector or a push holds are left for later), and then checks again,
//! in a new statement of the same transaction, whether they may still be taken. At READ
//! COMMITTED that statement has a fresh snapshot, so it sees every push that committed
//! before the locks were taken; a push that had not committed by then holds a lock
//! the collector would have skipped, or takes one after it and waits for the collection
//! to commit, and then finds what it needed gone.

use berth_core::{Digest, RepoName};
use sqlx::{PgConnection, Row};

use super::writes::delete_manifests;
use super::{backend, corrupt, now, parse_digest};
use crate::{GcBlob, GcCutoffs, RepositoryUsage, Result};

/// Manifests deleted (or links removed) per transaction.
pub(super) const BATCH: i64 = 200;

/// When blob `b` may be collected, `$1` to `$3` being `released_before`,
/// `linked_before` and `claimed_before` (see [`GcCutoffs`]).
macro_rules! collectable {
    () => {
        "(b.state IN ('pending', 'live')
          OR (b.state = 'deleting' AND COALESCE(b.claimed_at, 0) < $3))
         AND (b.released_at IS NULL OR b.released_at < $1)
         AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb WHERE mb.digest = b.digest)
         AND NOT EXISTS (SELECT 1 FROM repository_blobs rb
                         WHERE rb.digest = b.digest AND rb.linked_at >= $2)"
    };
}

/// When link `rb` of blob `b` may be removed, `$1` and `$2` being `released_before`
/// and `linked_before`.
macro_rules! stale_link {
    () => {
        "rb.linked_at < $2
         AND b.state = 'live' AND (b.released_at IS NULL OR b.released_at < $1)
         AND NOT EXISTS (SELECT 1 FROM manifest_blobs mb
                         WHERE mb.repository_id = rb.repository_id AND mb.digest = rb.digest)"
    };
}

/// When manifest `m` may be removed as untagged, `$1` and `$2` being `released_before`
/// and `linked_before`. A manifest never tagged counts as untagged since it was created.
macro_rules! untagged {
    () => {
        "m.created_at < $2 AND COALESCE(m.untagged_at, m.created_at) < $1
         AND NOT EXISTS (SELECT 1 FROM tags t
                         WHERE t.repository_id = m.repository_id AND t.digest = m.digest)
         AND NOT EXISTS (SELECT 1 FROM manifest_children c
                         WHERE c.repository_id = m.repository_id AND c.child = m.digest)
         AND (m.subject IS NULL
              OR NOT EXISTS (SELECT 1 FROM manifests s
                             WHERE s.repository_id = m.repository_id AND s.digest = m.subject))"
    };
}

/// Repository `r` is in namespace `$n` (its name, or a name under it).
macro_rules! in_namespace {
    ($n:literal) => {
        concat!(
            "(r.name = ",
            $n,
            " OR starts_with(r.name, ",
            $n,
            " || '/'))"
        )
    };
}

fn gc_blob(row: &sqlx::postgres::PgRow) -> Result<GcBlob> {
    let digest: String = row.try_get("digest").map_err(backend)?;
    let size: i64 = row.try_get("size").map_err(backend)?;
    Ok(GcBlob {
        digest: parse_digest(&digest)?,
        size: size as u64,
    })
}

pub(super) async fn candidates(
    conn: &mut PgConnection,
    cutoffs: &GcCutoffs,
    after: Option<&Digest>,
    limit: u32,
) -> Result<Vec<GcBlob>> {
    let rows = sqlx::query(concat!(
        "SELECT b.digest, b.size FROM blobs b WHERE b.digest > $4 AND ",
        collectable!(),
        " ORDER BY b.digest LIMIT $5"
    ))
    .bind(cutoffs.released_before)
    .bind(cutoffs.linked_before)
    .bind(cutoffs.claimed_before)
    .bind(after.map(Digest::to_string).unwrap_or_default())
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    rows.iter().map(gc_blob).collect()
}

/// Claims collectable blobs: locked (skipping those others hold), then checked again
/// with a fresh snapshot as they are marked `deleting`.
pub(super) async fn claim_blobs(
    conn: &mut PgConnection,
    cutoffs: &GcCutoffs,
    limit: u32,
) -> Result<Vec<GcBlob>> {
    let locked: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT b.digest FROM blobs b WHERE ",
        collectable!(),
        " ORDER BY b.digest LIMIT $4 FOR UPDATE OF b SKIP LOCKED"
    ))
    .bind(cutoffs.released_before)
    .bind(cutoffs.linked_before)
    .bind(cutoffs.claimed_before)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    if locked.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(concat!(
        "UPDATE blobs b SET state = 'deleting', claimed_at = $5 WHERE b.digest = ANY($4) AND ",
        collectable!(),
        " RETURNING b.digest, b.size"
    ))
    .bind(cutoffs.released_before)
    .bind(cutoffs.linked_before)
    .bind(cutoffs.claimed_before)
    .bind(&locked)
    .bind(now())
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut claimed = rows.iter().map(gc_blob).collect::<Result<Vec<_>>>()?;
    claimed.sort_by_key(|b| b.digest.to_string());
    Ok(claimed)
}

/// Forgets claimed blobs (those of `digests` still `deleting`): their links, then them.
pub(super) async fn forget_blobs(conn: &mut PgConnection, digests: &[Digest]) -> Result<()> {
    let wanted: Vec<String> = digests.iter().map(Digest::to_string).collect();
    let claimed: Vec<String> = sqlx::query_scalar(
        "SELECT digest FROM blobs WHERE digest = ANY($1) AND state = 'deleting'
         ORDER BY digest FOR UPDATE",
    )
    .bind(&wanted)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    if claimed.is_empty() {
        return Ok(());
    }
    sqlx::query("DELETE FROM repository_blobs WHERE digest = ANY($1)")
        .bind(&claimed)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    sqlx::query("DELETE FROM blobs WHERE digest = ANY($1)")
        .bind(&claimed)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

pub(super) async fn claim_orphan(
    conn: &mut PgConnection,
    digest: &Digest,
    size: u64,
) -> Result<bool> {
    let t = now();
    let done = sqlx::query(
        "INSERT INTO blobs (digest, size, created_at, state, claimed_at)
         VALUES ($1, $2, $3, 'deleting', $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(digest.to_string())
    .bind(size as i64)
    .bind(t)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn count_stale_links(conn: &mut PgConnection, cutoffs: &GcCutoffs) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(concat!(
        "SELECT count(*) FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest WHERE ",
        stale_link!()
    ))
    .bind(cutoffs.released_before)
    .bind(cutoffs.linked_before)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(n as u64)
}

/// Removes stale links after `after` (repository id, digest), at most [`BATCH`] looked
/// at: locked (skipping those a push holds), then checked again with a fresh snapshot as
/// they are deleted. Returns the last link looked at (`None`: none were left) and how
/// many were removed.
pub(super) async fn remove_stale_links(
    conn: &mut PgConnection,
    cutoffs: &GcCutoffs,
    after: &(i64, String),
) -> Result<(Option<(i64, String)>, u64)> {
    let rows = sqlx::query(concat!(
        "SELECT rb.repository_id, rb.digest
         FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
         WHERE (rb.repository_id, rb.digest) > ($3, $4) AND ",
        stale_link!(),
        " ORDER BY rb.repository_id, rb.digest LIMIT $5 FOR UPDATE OF rb SKIP LOCKED"
    ))
    .bind(cutoffs.released_before)
    .bind(cutoffs.linked_before)
    .bind(after.0)
    .bind(&after.1)
    .bind(BATCH)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut digests = Vec::with_capacity(rows.len());
    for row in &rows {
        ids.push(row.try_get::<i64, _>("repository_id").map_err(backend)?);
        digests.push(row.try_get::<String, _>("digest").map_err(backend)?);
    }
    let (Some(&last_id), Some(last_digest)) = (ids.last(), digests.last().cloned()) else {
        return Ok((None, 0));
    };
    let removed = sqlx::query(concat!(
        "DELETE FROM repository_blobs rb USING blobs b
         WHERE b.digest = rb.digest
         AND (rb.repository_id, rb.digest) IN (SELECT * FROM unnest($3::BIGINT[], $4::TEXT[]))
         AND ",
        stale_link!()
    ))
    .bind(cutoffs.released_before)
    .bind(cutoffs.linked_before)
    .bind(&ids)
    .bind(&digests)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok((Some((last_id, last_digest)), removed.rows_affected()))
}

/// An untagged manifest as the first look found it.
pub(super) struct Untagged {
    pub repository_id: i64,
    pub repository: RepoName,
    pub digest: String,
}

/// Untagged manifests of repositories in `scopes`, by repository name and digest (one
/// snapshot: a dry run's answer, and what [`remove_untagged`] then checks again).
pub(super) async fn untagged_manifests(
    conn: &mut PgConnection,
    scopes: &[String],
    cutoffs: &GcCutoffs,
) -> Result<Vec<Untagged>> {
    let rows = sqlx::query(concat!(
        "SELECT r.id, r.name, m.digest FROM manifests m
         JOIN repositories r ON r.id = m.repository_id
         WHERE EXISTS (SELECT 1 FROM unnest($3::TEXT[]) AS s(scope) WHERE ",
        in_namespace!("s.scope"),
        ") AND ",
        untagged!(),
        " ORDER BY r.name, m.digest"
    ))
    .bind(cutoffs.released_before)
    .bind(cutoffs.linked_before)
    .bind(scopes)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    rows.iter()
        .map(|row| {
            let name: String = row.try_get("name").map_err(backend)?;
            Ok(Untagged {
                repository_id: row.try_get("id").map_err(backend)?,
                repository: name
                    .parse()
                    .map_err(|e| corrupt(format!("repository name {name:?}: {e}")))?,
                digest: row.try_get("digest").map_err(backend)?,
            })
        })
        .collect()
}

/// Deletes those of manifests `digests` (of repository `repo_id`) that are still
/// untagged and unreferenced, as `delete_manifest` does; returns them, in digest order.
///
/// Rows are taken as every write takes them: first the blobs they reference (which a
/// push of one of them holds before its manifest row), then the manifests, skipping any
/// a push holds, then checked again with a fresh snapshot.
pub(super) async fn remove_untagged(
    conn: &mut PgConnection,
    repo_id: i64,
    digests: &[String],
    cutoffs: &GcCutoffs,
) -> Result<Vec<String>> {
    sqlx::query(
        "SELECT digest FROM blobs WHERE digest IN (
             SELECT digest FROM manifest_blobs WHERE repository_id = $1 AND manifest = ANY($2)
         )
         ORDER BY digest FOR NO KEY UPDATE",
    )
    .bind(repo_id)
    .bind(digests)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    let locked: Vec<String> = sqlx::query_scalar(
        "SELECT digest FROM manifests WHERE repository_id = $1 AND digest = ANY($2)
         ORDER BY digest FOR UPDATE SKIP LOCKED",
    )
    .bind(repo_id)
    .bind(digests)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    if locked.is_empty() {
        return Ok(Vec::new());
    }
    let confirmed: Vec<String> = sqlx::query_scalar(concat!(
        "SELECT m.digest FROM manifests m
         WHERE m.repository_id = $3 AND m.digest = ANY($4) AND ",
        untagged!(),
        " ORDER BY m.digest"
    ))
    .bind(cutoffs.released_before)
    .bind(cutoffs.linked_before)
    .bind(repo_id)
    .bind(&locked)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    if !confirmed.is_empty() {
        delete_manifests(conn, repo_id, &confirmed, now(), "gc").await?;
    }
    Ok(confirmed)
}

pub(super) async fn repository_usage(
    conn: &mut PgConnection,
    namespace: Option<&str>,
    last: Option<&str>,
    limit: u32,
) -> Result<Vec<RepositoryUsage>> {
    // sum() of BIGINT is NUMERIC, octet_length INT4: both widened or narrowed to BIGINT.
    let rows = sqlx::query(concat!(
        "SELECT r.name,
                COALESCE(lb.bytes, 0) + COALESCE(mf.bytes, 0) AS bytes,
                lb.n AS blobs, mf.n AS manifests,
                (SELECT count(*) FROM tags t WHERE t.repository_id = r.id) AS tags
         FROM repositories r
         CROSS JOIN LATERAL (
             SELECT sum(b.size)::BIGINT AS bytes, count(*) AS n
             FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
             WHERE rb.repository_id = r.id AND b.state = 'live'
         ) lb
         CROSS JOIN LATERAL (
             SELECT sum(octet_length(m.body))::BIGINT AS bytes, count(*) AS n
             FROM manifests m WHERE m.repository_id = r.id
         ) mf
         WHERE r.name > $1 AND ($2::TEXT IS NULL OR ",
        in_namespace!("$2"),
        ")
         ORDER BY r.name LIMIT $3"
    ))
    .bind(last.unwrap_or(""))
    .bind(namespace)
    .bind(i64::from(limit))
    .fetch_all(&mut *conn)
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
                    .map_err(|e| corrupt(format!("repository name {name:?}: {e}")))?,
                bytes: count("bytes")?,
                blobs: count("blobs")?,
                manifests: count("manifests")?,
                tags: count("tags")?,
            })
        })
        .collect()
}

pub(super) async fn namespace_usage(conn: &mut PgConnection, namespace: &str) -> Result<u64> {
    let bytes: i64 = sqlx::query_scalar(concat!(
        "SELECT (COALESCE((
             SELECT sum(b.size) FROM blobs b
             WHERE b.state = 'live' AND b.digest IN (
                 SELECT rb.digest FROM repository_blobs rb
                 JOIN repositories r ON r.id = rb.repository_id
                 WHERE ",
        in_namespace!("$1"),
        ")
         ), 0) + COALESCE((
             SELECT sum(octet_length(m.body)) FROM manifests m
             JOIN repositories r ON r.id = m.repository_id
             WHERE ",
        in_namespace!("$1"),
        "
         ), 0))::BIGINT"
    ))
    .bind(namespace)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(bytes as u64)
}
