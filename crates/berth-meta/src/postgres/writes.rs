//! Every registry write of the PostgreSQL store, each run inside the transaction of one
//! trait method (`transaction!` in the parent module), parallel to the SQLite writes.
//!
//! Many processes write at once here, at READ COMMITTED. What keeps that safe:
//! - inserts that may meet a concurrent twin use `ON CONFLICT` (which waits for the
//!   twin's transaction and then sees its row), never a read followed by an insert;
//! - a check that a write depends on locks what it read until the commit (`FOR KEY
//!   SHARE` on the rows a manifest refers to, an advisory lock per upload client);
//! - rows several writers may update are taken in one order (tags sorted by name), so
//!   that they do not deadlock each other.

use berth_core::{Digest, RepoName, Tag};
use sqlx::PgConnection;

use super::{UPLOAD_CLIENT_LOCKS, backend, now};
use crate::{ManifestRecord, PutManifestError, Result, UploadSession};

pub(super) async fn unlink_blob(
    conn: &mut PgConnection,
    repository: &RepoName,
    digest: &Digest,
) -> Result<bool> {
    let done = sqlx::query(
        "DELETE FROM repository_blobs WHERE digest = $1
         AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
    )
    .bind(digest.to_string())
    .bind(repository.as_str())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn create_upload(
    conn: &mut PgConnection,
    session: &UploadSession,
    max_per_client: u32,
) -> Result<bool> {
    // Count and insert under a lock of this client's: two nodes counting at once would
    // each see room for one more.
    sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
        .bind(UPLOAD_CLIENT_LOCKS)
        .bind(&session.client)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    let open: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads WHERE client = $1")
        .bind(&session.client)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
    if open >= i64::from(max_per_client) {
        return Ok(false);
    }
    sqlx::query(
        r#"INSERT INTO uploads (id, repository, algorithm, "offset", hash_state, store_state,
                                created_at, updated_at, client)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"#,
    )
    .bind(&session.id)
    .bind(session.repository.as_str())
    .bind(session.algorithm.as_str())
    .bind(session.offset as i64)
    .bind(&session.hash_state)
    .bind(&session.store_state)
    .bind(session.updated_at)
    .bind(session.updated_at)
    .bind(&session.client)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(true)
}

/// Compare-and-set: of updates racing from one offset, the first takes the row lock;
/// the others then re-read the row it committed, whose offset no longer matches.
pub(super) async fn advance_upload(
    conn: &mut PgConnection,
    progress: &UploadSession,
    from: u64,
) -> Result<bool> {
    let done = sqlx::query(
        r#"UPDATE uploads SET "offset" = $1, hash_state = $2, store_state = $3, updated_at = $4
           WHERE id = $5 AND "offset" = $6"#,
    )
    .bind(progress.offset as i64)
    .bind(&progress.hash_state)
    .bind(&progress.store_state)
    .bind(progress.updated_at)
    .bind(&progress.id)
    .bind(from as i64)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() == 1)
}

pub(super) async fn complete_upload(
    conn: &mut PgConnection,
    id: &str,
    repository: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    link_blob(conn, repository, digest, size).await?;
    delete_upload(conn, id).await?;
    Ok(())
}

pub(super) async fn delete_tag(
    conn: &mut PgConnection,
    repository: &RepoName,
    tag: &Tag,
) -> Result<bool> {
    let done = sqlx::query(
        "DELETE FROM tags WHERE name = $1
         AND repository_id = (SELECT id FROM repositories WHERE name = $2)",
    )
    .bind(tag.as_str())
    .bind(repository.as_str())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

pub(super) async fn delete_upload(conn: &mut PgConnection, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

/// Records blob `digest` registry-wide and links it into `repository`.
pub(super) async fn link_blob(
    conn: &mut PgConnection,
    repository: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let t = now();
    let repo_id = ensure_repository(conn, repository, t).await?;
    sqlx::query(
        "INSERT INTO blobs (digest, size, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
    )
    .bind(digest.to_string())
    .bind(size as i64)
    .bind(t)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(repo_id)
    .bind(digest.to_string())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// The repository's id, creating it if needed. A new repository takes its namespace's
/// default visibility, else the server's, else public.
///
/// Race-free: a concurrent creation of the same name makes the insert wait for it and
/// then do nothing, and the select that follows (a new snapshot) sees its row.
pub(super) async fn ensure_repository(
    conn: &mut PgConnection,
    repository: &RepoName,
    now: i64,
) -> Result<i64> {
    // The server's setting is text: "1" public, "0" private; as SQLite's CAST, any
    // leading integer other than zero counts as true.
    let created: Option<i64> = sqlx::query_scalar(
        r"INSERT INTO repositories (name, created_at, public) VALUES ($1, $2, COALESCE(
            (SELECT default_public FROM namespaces WHERE name = $3),
            (SELECT value ~ '^\s*[+-]?0*[1-9]' FROM settings WHERE key = 'default_public'),
            TRUE))
         ON CONFLICT DO NOTHING
         RETURNING id",
    )
    .bind(repository.as_str())
    .bind(now)
    .bind(repository.namespace())
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    if let Some(id) = created {
        return Ok(id);
    }
    sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
        .bind(repository.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)
}

/// The digests of `wanted` among the rows `sql` finds (bound: repository id, digest
/// array), which it locks until the commit.
async fn lock_present(
    conn: &mut PgConnection,
    sql: &'static str,
    repo_id: i64,
    wanted: &[Digest],
) -> Result<Vec<String>> {
    let wanted: Vec<String> = wanted.iter().map(Digest::to_string).collect();
    sqlx::query_scalar(sql)
        .bind(repo_id)
        .bind(&wanted)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)
}

pub(super) async fn put_manifest(
    conn: &mut PgConnection,
    repository: &RepoName,
    manifest: &ManifestRecord,
    blobs: &[Digest],
    children: &[Digest],
    tags: &[Tag],
) -> std::result::Result<(), PutManifestError> {
    let t = now();
    let repo_id = ensure_repository(conn, repository, t).await?;
    // FOR KEY SHARE keeps what was found there until the commit: an unlink or a delete
    // of it waits, so no committed state has this manifest without its references. An
    // unlink that got there first is waited for, and its row then is not found.
    if !blobs.is_empty() {
        let linked = lock_present(
            conn,
            "SELECT digest FROM repository_blobs WHERE repository_id = $1 AND digest = ANY($2)
             ORDER BY digest FOR KEY SHARE",
            repo_id,
            blobs,
        )
        .await?;
        if let Some(missing) = blobs.iter().find(|d| !linked.contains(&d.to_string())) {
            return Err(PutManifestError::MissingBlob(missing.clone()));
        }
    }
    if !children.is_empty() {
        let present = lock_present(
            conn,
            "SELECT digest FROM manifests WHERE repository_id = $1 AND digest = ANY($2)
             ORDER BY digest FOR KEY SHARE",
            repo_id,
            children,
        )
        .await?;
        if let Some(missing) = children.iter().find(|d| !present.contains(&d.to_string())) {
            return Err(PutManifestError::MissingManifest(missing.clone()));
        }
    }
    sqlx::query(
        "INSERT INTO manifests
           (repository_id, digest, media_type, body, subject, artifact_type, annotations, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (repository_id, digest) DO UPDATE SET media_type = excluded.media_type",
    )
    .bind(repo_id)
    .bind(manifest.digest.to_string())
    .bind(&manifest.media_type)
    .bind(manifest.body.as_ref())
    .bind(manifest.subject.as_ref().map(Digest::to_string))
    .bind(&manifest.artifact_type)
    .bind(&manifest.annotations)
    .bind(t)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    // In name order, each once: two pushes moving the same tags lock them in the same
    // order (no deadlock), and one statement may not update a row twice.
    let mut names: Vec<&str> = tags.iter().map(Tag::as_str).collect();
    names.sort_unstable();
    names.dedup();
    if !names.is_empty() {
        sqlx::query(
            "INSERT INTO tags (repository_id, name, digest, updated_at)
             SELECT $1, name, $3, $4 FROM unnest($2::TEXT[]) WITH ORDINALITY AS t(name, n)
             ORDER BY n
             ON CONFLICT (repository_id, name) DO UPDATE
             SET digest = excluded.digest, updated_at = excluded.updated_at",
        )
        .bind(repo_id)
        .bind(&names)
        .bind(manifest.digest.to_string())
        .bind(t)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

pub(super) async fn delete_manifest(
    conn: &mut PgConnection,
    repository: &RepoName,
    digest: &Digest,
) -> Result<bool> {
    let repo_id: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
        .bind(repository.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    let Some(repo_id) = repo_id else {
        return Ok(false);
    };
    let done = sqlx::query("DELETE FROM manifests WHERE repository_id = $1 AND digest = $2")
        .bind(repo_id)
        .bind(digest.to_string())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    sqlx::query("DELETE FROM tags WHERE repository_id = $1 AND digest = $2")
        .bind(repo_id)
        .bind(digest.to_string())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}
