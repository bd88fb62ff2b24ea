//! Every registry write of the PostgreSQL store, each run inside the transaction of one
//! trait method (`transaction!` in the parent module), parallel to the SQLite writes.
//!
//! Many processes write at once here, at READ COMMITTED. What keeps that safe:
//! - inserts that may meet a concurrent twin use `ON CONFLICT` (which waits for the
//!   twin's transaction and then sees its row), never a read followed by an insert;
//! - a check that a write depends on locks what it read until the commit (`FOR KEY
//!   SHARE` on the rows a manifest refers to, an advisory lock per upload client);
//! - rows several writers may update are taken in one order (tags sorted by name, blobs
//!   by digest), so that they do not deadlock each other; and a write that takes rows of
//!   several tables takes them in one order too: blobs, then links, then tags, then
//!   manifests (`put_manifest` takes the manifests it lists and its own before the tags
//!   it moves, and the manifests those leave last).
//!
//! Blob rows carry garbage collection's state (`gc`): a collector claims a blob by
//! locking its row `FOR UPDATE`, so whatever makes a blob used (a manifest, a pin, a
//! mount, a link) locks that row too, `FOR SHARE` or stronger, and checks the state.

use berth_core::{Digest, RepoName, Tag};
use sqlx::PgConnection;

use super::{FLOAT_LOCKS, UPLOAD_CLIENT_LOCKS, backend, now};
use crate::{
    ManifestRecord, PutManifestError, Result, TagMove, TagMoveReason, TagUpdate, UploadSession,
};

/// Removes the link and releases the blob, in one statement: the blob row is locked
/// first (blobs before links, as everywhere).
pub(super) async fn unlink_blob(
    conn: &mut PgConnection,
    repository: &RepoName,
    digest: &Digest,
) -> Result<bool> {
    let unlinked: i64 = sqlx::query_scalar(
        "WITH blob AS MATERIALIZED (
             SELECT digest FROM blobs WHERE digest = $1 FOR NO KEY UPDATE
         ), gone AS (
             DELETE FROM repository_blobs WHERE digest IN (SELECT digest FROM blob)
             AND repository_id = (SELECT id FROM repositories WHERE name = $2)
             RETURNING digest
         ), released AS (
             UPDATE blobs SET released_at = $3 WHERE digest IN (SELECT digest FROM gone)
         )
         SELECT count(*) FROM gone",
    )
    .bind(digest.to_string())
    .bind(repository.as_str())
    .bind(now())
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(unlinked > 0)
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

/// Deletes the tag and marks its manifest untagged now, in one statement (the tag row,
/// then the manifest's).
/// Deletes the tag and marks its manifest untagged now, in one statement (the tag row,
/// then the manifest's), recording the deletion in the tag's history.
pub(super) async fn delete_tag(
    conn: &mut PgConnection,
    repository: &RepoName,
    tag: &Tag,
    actor: &str,
) -> Result<bool> {
    let deleted: i64 = sqlx::query_scalar(
        "WITH gone AS (
             DELETE FROM tags WHERE name = $1
             AND repository_id = (SELECT id FROM repositories WHERE name = $2)
             RETURNING repository_id, digest
         ), untagged AS (
             UPDATE manifests m SET untagged_at = $3 FROM gone
             WHERE m.repository_id = gone.repository_id AND m.digest = gone.digest
         ), recorded AS (
             INSERT INTO tag_history (repository_id, tag, from_digest, to_digest, reason, actor, at)
             SELECT repository_id, $1, digest, NULL, 'delete', $4, $3 FROM gone
         )
         SELECT count(*) FROM gone",
    )
    .bind(tag.as_str())
    .bind(repository.as_str())
    .bind(now())
    .bind(actor)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(deleted > 0)
}

pub(super) async fn delete_upload(conn: &mut PgConnection, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

/// Records blob `digest` as live registry-wide and links it freshly into `repository`.
/// A blob a collector has claimed stays as it is, unlinked: its bytes are going, and
/// the push that brought them fails at its manifest (a push pins first, which waits for
/// the collector and then tells it to try again, so this does not happen).
pub(super) async fn link_blob(
    conn: &mut PgConnection,
    repository: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let t = now();
    let live: Option<String> = sqlx::query_scalar(
        "INSERT INTO blobs (digest, size, created_at, state) VALUES ($1, $2, $3, 'live')
         ON CONFLICT (digest) DO UPDATE SET state = 'live', size = excluded.size
         WHERE blobs.state <> 'deleting'
         RETURNING state",
    )
    .bind(digest.to_string())
    .bind(size as i64)
    .bind(t)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    if live.is_none() {
        return Ok(());
    }
    let repo_id = ensure_repository(conn, repository, t).await?;
    link(conn, repo_id, digest, t).await
}

/// Reserves `digest` for `repository`: a pending record if none exists, and a fresh
/// link; `false`, changing nothing, if a collector has claimed it. The blob row stays
/// locked until the commit, so a claim either came first or waits and then sees the
/// fresh link.
pub(super) async fn pin_blob(
    conn: &mut PgConnection,
    repository: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<bool> {
    let t = now();
    let usable: Option<String> = sqlx::query_scalar(
        "INSERT INTO blobs (digest, size, created_at, state) VALUES ($1, $2, $3, 'pending')
         ON CONFLICT (digest) DO UPDATE SET state = blobs.state
         WHERE blobs.state <> 'deleting'
         RETURNING state",
    )
    .bind(digest.to_string())
    .bind(size as i64)
    .bind(t)
    .fetch_optional(&mut *conn)
    .await
    .map_err(backend)?;
    if usable.is_none() {
        return Ok(false);
    }
    let repo_id = ensure_repository(conn, repository, t).await?;
    link(conn, repo_id, digest, t).await?;
    Ok(true)
}

/// Links live blob `digest` into `repository` (with `from`, only if that repository
/// holds it) and returns its size. The blob row is locked `FOR SHARE` until the commit,
/// so a claim cannot slip in between the check and the link.
pub(super) async fn mount_blob(
    conn: &mut PgConnection,
    repository: &RepoName,
    digest: &Digest,
    from: Option<&RepoName>,
) -> Result<Option<u64>> {
    let size: Option<i64> =
        sqlx::query_scalar("SELECT size FROM blobs WHERE digest = $1 AND state = 'live' FOR SHARE")
            .bind(digest.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
    let Some(size) = size else {
        return Ok(None);
    };
    if let Some(from) = from {
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM repository_blobs rb
                            JOIN repositories r ON r.id = rb.repository_id
                            WHERE r.name = $1 AND rb.digest = $2)",
        )
        .bind(from.as_str())
        .bind(digest.to_string())
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        if !held {
            return Ok(None);
        }
    }
    let t = now();
    let repo_id = ensure_repository(conn, repository, t).await?;
    link(conn, repo_id, digest, t).await?;
    Ok(Some(size as u64))
}

/// Links `digest` into repository `repo_id` as of `t` (a fresh link protects the blob
/// from collection while a push goes on).
async fn link(conn: &mut PgConnection, repo_id: i64, digest: &Digest, t: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES ($1, $2, $3)
         ON CONFLICT (repository_id, digest) DO UPDATE SET linked_at = excluded.linked_at",
    )
    .bind(repo_id)
    .bind(digest.to_string())
    .bind(t)
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
    update: &TagUpdate,
) -> std::result::Result<Vec<TagMove>, PutManifestError> {
    let t = now();
    let repo_id = ensure_repository(conn, repository, t).await?;
    // What was found is locked until the commit, so no committed state has this
    // manifest without its references: the blob rows `FOR SHARE` (a collector's claim
    // waits, or came first and then the blob is not live), the links and the children
    // `FOR KEY SHARE` (an unlink or a delete waits, or came first and then the row is
    // not found).
    if !blobs.is_empty() && !update.mirrored {
        let wanted: Vec<String> = blobs.iter().map(Digest::to_string).collect();
        let live: Vec<String> = sqlx::query_scalar(
            "SELECT digest FROM blobs WHERE digest = ANY($1) AND state = 'live'
             ORDER BY digest FOR SHARE",
        )
        .bind(&wanted)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        let linked = lock_present(
            conn,
            "SELECT digest FROM repository_blobs WHERE repository_id = $1 AND digest = ANY($2)
             ORDER BY digest FOR KEY SHARE",
            repo_id,
            blobs,
        )
        .await?;
        if let Some(missing) = blobs.iter().find(|d| {
            let d = d.to_string();
            !(live.contains(&d) && linked.contains(&d))
        }) {
            return Err(PutManifestError::MissingBlob(missing.clone()));
        }
    }
    // An index may be sparse (some of its platforms' manifests not here, as the
    // distribution-spec allows): the children that are here are locked so that none of
    // them is deleted while its reference is being recorded; absent ones are recorded
    // as references all the same and are kept once they arrive.
    if !children.is_empty() {
        lock_present(
            conn,
            "SELECT digest FROM manifests WHERE repository_id = $1 AND digest = ANY($2)
             ORDER BY digest FOR KEY SHARE",
            repo_id,
            children,
        )
        .await?;
    }
    // Pushed again, a manifest counts as untagged from now (if it has no tag): a push by
    // digest of one that an index about to be pushed lists gets the same grace as a
    // new one.
    sqlx::query(
        "INSERT INTO manifests
           (repository_id, digest, media_type, body, subject, artifact_type, annotations, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (repository_id, digest) DO UPDATE
         SET media_type = excluded.media_type, untagged_at = excluded.created_at",
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
    mark_pushed(conn, repo_id, t).await?;
    // What it references, replacing what a previous PUT of it recorded. The manifest's
    // row, just written, keeps a concurrent PUT of it waiting until this commits.
    let blob_list: Vec<String> = blobs.iter().map(Digest::to_string).collect();
    let child_list: Vec<String> = children.iter().map(Digest::to_string).collect();
    sqlx::query(
        "WITH old_blobs AS (
             DELETE FROM manifest_blobs
             WHERE repository_id = $1 AND manifest = $2 AND digest <> ALL($3)
         ), old_children AS (
             DELETE FROM manifest_children
             WHERE repository_id = $1 AND manifest = $2 AND child <> ALL($4)
         ), new_blobs AS (
             INSERT INTO manifest_blobs (repository_id, manifest, digest)
             SELECT DISTINCT $1::BIGINT, $2::TEXT, d FROM unnest($3::TEXT[]) AS d
             ON CONFLICT DO NOTHING
         )
         INSERT INTO manifest_children (repository_id, manifest, child)
         SELECT DISTINCT $1::BIGINT, $2::TEXT, c FROM unnest($4::TEXT[]) AS c
         ON CONFLICT DO NOTHING",
    )
    .bind(repo_id)
    .bind(manifest.digest.to_string())
    .bind(&blob_list)
    .bind(&child_list)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    move_tags(conn, repository, repo_id, &manifest.digest, update, t).await
}

/// Points the update's tags (and, with semver floats, the floats its releases move) at
/// `digest`, refusing to move an immutable one, and records each change.
///
/// Tags are taken in name order, each once: two pushes moving the same tags lock them
/// in the same order (no deadlock). A tag that did not exist is inserted `ON CONFLICT
/// DO NOTHING`: if a concurrent push created it first, it is locked and treated as
/// existing, so an immutable tag is never overwritten by a racing twin. Pushes that may
/// move floats take turns per repository (an advisory lock), and read the tags after
/// taking it: each sees the releases pushed before it, so floats end at the highest.
async fn move_tags(
    conn: &mut PgConnection,
    repository: &RepoName,
    repo_id: i64,
    digest: &Digest,
    update: &TagUpdate,
    t: i64,
) -> std::result::Result<Vec<TagMove>, PutManifestError> {
    let existing: Vec<String> = if crate::pushes_releases(update) {
        sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2))")
            .bind(FLOAT_LOCKS)
            .bind(repository.as_str())
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        sqlx::query_scalar("SELECT name FROM tags WHERE repository_id = $1")
            .bind(repo_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?
    } else {
        Vec::new()
    };
    let wanted = crate::tags_to_move(update, &existing);
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let names: Vec<&str> = wanted.iter().map(|(name, _)| name.as_str()).collect();
    let to = digest.to_string();
    let mut held = lock_tags(conn, repo_id, &names).await?;
    let absent: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !held.iter().any(|(name, _)| name == n))
        .collect();
    let mut created: Vec<String> = Vec::new();
    if !absent.is_empty() {
        created = sqlx::query_scalar(
            "INSERT INTO tags (repository_id, name, digest, updated_at)
             SELECT $1, name, $3, $4 FROM unnest($2::TEXT[]) WITH ORDINALITY AS t(name, n)
             ORDER BY n
             ON CONFLICT (repository_id, name) DO NOTHING
             RETURNING name",
        )
        .bind(repo_id)
        .bind(&absent)
        .bind(&to)
        .bind(t)
        .fetch_all(&mut *conn)
        .await
        .map_err(backend)?;
        let raced: Vec<&str> = absent
            .iter()
            .copied()
            .filter(|n| !created.iter().any(|c| c == n))
            .collect();
        if !raced.is_empty() {
            held.extend(lock_tags(conn, repo_id, &raced).await?);
        }
    }
    let mut changes: Vec<(&str, Option<String>, TagMoveReason)> = Vec::new();
    for (name, reason) in &wanted {
        if created.iter().any(|c| c == name) {
            changes.push((name, None, *reason));
            continue;
        }
        let Some((_, from)) = held.iter().find(|(held_name, _)| held_name == name) else {
            continue;
        };
        if *from == to {
            continue;
        }
        if *reason == TagMoveReason::Push
            && let Some(tag) = update.immutable.iter().find(|t| t.as_str() == name)
        {
            return Err(PutManifestError::TagImmutable(tag.clone()));
        }
        changes.push((name, Some(from.clone()), *reason));
    }
    let moved: Vec<&str> = changes
        .iter()
        .filter(|(_, from, _)| from.is_some())
        .map(|(name, _, _)| *name)
        .collect();
    if !moved.is_empty() {
        sqlx::query(
            "UPDATE tags SET digest = $3, updated_at = $4
             WHERE repository_id = $1 AND name = ANY($2)",
        )
        .bind(repo_id)
        .bind(&moved)
        .bind(&to)
        .bind(t)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        // The manifests the tags leave count as untagged from now.
        let mut left: Vec<&str> = changes
            .iter()
            .filter_map(|(_, from, _)| from.as_deref())
            .collect();
        left.sort_unstable();
        left.dedup();
        sqlx::query(
            "UPDATE manifests SET untagged_at = $3 WHERE repository_id = $1 AND digest = ANY($2)",
        )
        .bind(repo_id)
        .bind(&left)
        .bind(t)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    let mut moves = Vec::with_capacity(changes.len());
    for (name, from, reason) in changes {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO tag_history (repository_id, tag, from_digest, to_digest, reason, actor, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(repo_id)
        .bind(name)
        .bind(&from)
        .bind(&to)
        .bind(reason.as_str())
        .bind(&update.actor)
        .bind(t)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)?;
        moves.push(TagMove {
            id,
            repository: repository.clone(),
            tag: name.to_owned(),
            from: from.as_deref().map(super::parse_digest).transpose()?,
            to: Some(digest.clone()),
            reason,
            actor: update.actor.clone(),
            at: t,
        });
    }
    Ok(moves)
}

/// Locks the existing ones of `names` (in name order); returns them with their digests.
async fn lock_tags(
    conn: &mut PgConnection,
    repo_id: i64,
    names: &[&str],
) -> Result<Vec<(String, String)>> {
    sqlx::query_as(
        "SELECT name, digest FROM tags WHERE repository_id = $1 AND name = ANY($2)
         ORDER BY name FOR NO KEY UPDATE",
    )
    .bind(repo_id)
    .bind(names)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)
}

pub(super) async fn delete_manifest(
    conn: &mut PgConnection,
    repository: &RepoName,
    digest: &Digest,
    actor: &str,
) -> Result<bool> {
    let repo_id: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = $1")
        .bind(repository.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    let Some(repo_id) = repo_id else {
        return Ok(false);
    };
    let deleted = delete_manifests(conn, repo_id, &[digest.to_string()], now(), actor).await?;
    Ok(deleted > 0)
}

/// Deletes manifests `digests` of repository `repo_id` with their tags, releasing
/// what they reference (as of `t`); returns how many there were. Rows are taken in the
/// order of every write: blobs, links, tags, manifests.
pub(super) async fn delete_manifests(
    conn: &mut PgConnection,
    repo_id: i64,
    digests: &[String],
    t: i64,
    actor: &str,
) -> Result<u64> {
    // Released: the blobs' time of release is now, and this repository's links of them
    // stop protecting them (a push that links them again protects them again).
    let released: Vec<String> = sqlx::query_scalar(
        "UPDATE blobs SET released_at = $3
         WHERE digest IN (
             SELECT digest FROM blobs WHERE digest IN (
                 SELECT digest FROM manifest_blobs WHERE repository_id = $1 AND manifest = ANY($2)
             )
             ORDER BY digest FOR NO KEY UPDATE
         )
         RETURNING digest",
    )
    .bind(repo_id)
    .bind(digests)
    .bind(t)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    if !released.is_empty() {
        sqlx::query(
            "UPDATE repository_blobs SET linked_at = 0
             WHERE repository_id = $1 AND digest = ANY($2)",
        )
        .bind(repo_id)
        .bind(&released)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    sqlx::query(
        "WITH gone AS (
             DELETE FROM tags WHERE repository_id = $1 AND digest = ANY($2)
             RETURNING name, digest
         )
         INSERT INTO tag_history (repository_id, tag, from_digest, to_digest, reason, actor, at)
         SELECT $1, name, digest, NULL, 'delete', $3, $4 FROM gone ORDER BY name",
    )
    .bind(repo_id)
    .bind(digests)
    .bind(actor)
    .bind(t)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    let deleted: i64 = sqlx::query_scalar(
        "WITH refs AS (
             DELETE FROM manifest_blobs WHERE repository_id = $1 AND manifest = ANY($2)
         ), children AS (
             DELETE FROM manifest_children WHERE repository_id = $1 AND manifest = ANY($2)
         ), gone AS (
             DELETE FROM manifests WHERE repository_id = $1 AND digest = ANY($2) RETURNING 1
         )
         SELECT count(*) FROM gone",
    )
    .bind(repo_id)
    .bind(digests)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(deleted as u64)
}

/// Records a push's time on its repository (for "recently pushed"); at most one write a
/// second per repository, so concurrent pushes rarely wait for each other's row lock.
async fn mark_pushed(conn: &mut PgConnection, repo_id: i64, t: i64) -> Result<()> {
    sqlx::query(
        "UPDATE repositories SET pushed_at = $2
         WHERE id = $1 AND (pushed_at IS NULL OR pushed_at < $2)",
    )
    .bind(repo_id)
    .bind(t)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}
