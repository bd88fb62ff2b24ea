//! Every write of the SQLite store, run by one writer task with **group commit**.
//!
//! SQLite has a single writer and `synchronous=FULL` costs an fsync per commit. Writes
//! that arrive while a commit is in progress are queued and then applied together in one
//! transaction, each inside its own savepoint (so one that fails undoes only itself),
//! and acknowledged only after that transaction commits. Durability is unchanged: no
//! caller hears "done" before its change is on disk; the fsync is simply shared.

use berth_core::{Digest, RepoName, Tag};
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{mpsc, oneshot};

use super::accounts::AccountWrite;
use super::gc::GcWrite;
use super::{backend, now};
use crate::{
    AccountRefusal, GcBlob, ManifestRecord, MetaError, PutManifestError, Result, SignInWindow,
    TagMove, TagMoveReason, TagUpdate, UploadSession,
};

/// Most writes folded into one transaction.
const MAX_BATCH: usize = 128;

/// One write, with everything it needs owned (it runs on the writer task).
pub(super) enum Write {
    LinkBlob {
        repository: RepoName,
        digest: Digest,
        size: u64,
    },
    UnlinkBlob {
        repository: RepoName,
        digest: Digest,
    },
    PinBlob {
        repository: RepoName,
        digest: Digest,
        size: u64,
    },
    MountBlob {
        repository: RepoName,
        digest: Digest,
        from: Option<RepoName>,
    },
    CreateUpload {
        session: UploadSession,
        max_per_client: u32,
    },
    AdvanceUpload {
        progress: UploadSession,
        from: u64,
    },
    DeleteUpload {
        id: String,
    },
    CompleteUpload {
        id: String,
        repository: RepoName,
        digest: Digest,
        size: u64,
    },
    PutManifest {
        repository: RepoName,
        manifest: ManifestRecord,
        blobs: Vec<Digest>,
        children: Vec<Digest>,
        update: TagUpdate,
    },
    DeleteManifest {
        repository: RepoName,
        digest: Digest,
        actor: String,
    },
    DeleteTag {
        repository: RepoName,
        tag: Tag,
        actor: String,
    },
    SetPolicy {
        scope: String,
        key: String,
        value: Option<String>,
        actor: String,
    },
    Account(AccountWrite),
    Gc(GcWrite),
    Trust(TrustWrite),
    Describe {
        repository: String,
        description: String,
    },
    Mirror(super::mirror::MirrorWrite),
    Ops(super::ops::OpsWrite),
    Webhook(super::webhooks::WebhookWrite),
    Scan(super::scans::ScanWrite),
}

/// Golden images, namespace marks and push warnings.
pub(super) enum TrustWrite {
    AddGolden {
        repository: String,
        tags: String,
        actor: String,
    },
    RemoveGolden {
        repository: String,
        tags: String,
    },
    SetMark {
        namespace: String,
        mark: Option<String>,
    },
    Warn {
        repository: String,
        digest: String,
        message: String,
        actor: String,
    },
}

/// What a write reports back.
pub(super) enum Outcome {
    Done,
    /// A value the write read back in its transaction.
    Value(String),
    Changed(bool),
    /// A manifest the store refused (a missing reference); its savepoint was undone.
    Refused(PutManifestError),
    /// An account change the store refused (a name taken, a user unknown); undone.
    AccountRefused(AccountRefusal),
    /// A number the write counted or read (`None`: nothing there).
    Number(Option<i64>),
    /// Blobs a collector claimed.
    Blobs(Vec<GcBlob>),
    /// Manifests a collector removed.
    Manifests(Vec<(RepoName, Digest)>),
    /// A sign-in window after counting an attempt.
    Window(SignInWindow),
    /// The tags a manifest PUT moved.
    Moves(Vec<TagMove>),
    /// A request window after counting a request.
    Request(crate::RequestWindow),
    /// Webhook deliveries claimed for an attempt.
    Deliveries(Vec<crate::Delivery>),
    /// What an advisory import changed.
    Imported(crate::ImportCounts),
}

struct Job {
    write: Write,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// The handle the store uses to submit writes.
#[derive(Clone)]
pub(super) struct Writer {
    jobs: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on `conn`, the store's only writing connection.
    pub(super) fn start(conn: SqliteConnection) -> Writer {
        let (jobs, rx) = mpsc::channel(1024);
        tokio::spawn(run(conn, rx));
        Writer { jobs }
    }

    pub(super) async fn submit(&self, write: Write) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        let stopped = || MetaError("the metadata writer has stopped".into());
        self.jobs
            .send(Job { write, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

async fn run(mut conn: SqliteConnection, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcomes = apply_batch(&mut conn, &batch, needs_fsync(&batch)).await;
        match outcomes {
            Ok(outcomes) => {
                for (job, outcome) in batch.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                tracing::error!(error = %e, writes = batch.len(), "metadata transaction failed");
                let message = e.to_string();
                for job in batch {
                    let _ = job.reply.send(Err(MetaError(message.clone().into())));
                }
            }
        }
    }
}

/// Whether a batch must reach the disk before it is acknowledged. Everything does except
/// a batch of upload-progress records and sign-in counts only. The chunk bytes that
/// upload progress counts are not synced at that point either (the blob store flushes in
/// the background and verifies the digest at the end), so syncing the count alone would
/// promise nothing. Skipping it loses nothing on a process crash (the WAL is written,
/// just not synced); after a power loss a session may resume from an older offset, or
/// fail its digest check, and sign-in windows (a minute long) may lose some attempts.
fn needs_fsync(batch: &[Job]) -> bool {
    batch.iter().any(|job| {
        !matches!(
            job.write,
            Write::AdvanceUpload { .. } | Write::Account(AccountWrite::SignIn(_))
        )
    })
}

/// Applies a batch in one transaction. An error of one write (other than a refusal) is
/// that write's answer; an error of the transaction itself fails the whole batch.
async fn apply_batch(
    conn: &mut SqliteConnection,
    batch: &[Job],
    fsync: bool,
) -> Result<Vec<Result<Outcome>>> {
    if !fsync {
        sqlx::raw_sql("PRAGMA synchronous = NORMAL")
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    let outcomes = apply_in_transaction(conn, batch).await;
    if !fsync {
        sqlx::raw_sql("PRAGMA synchronous = FULL")
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    outcomes
}

async fn apply_in_transaction(
    conn: &mut SqliteConnection,
    batch: &[Job],
) -> Result<Vec<Result<Outcome>>> {
    // IMMEDIATE: take the write lock first. A deferred transaction that reads and then
    // writes fails at once (SQLITE_BUSY_SNAPSHOT) when another process, such as a
    // `berth user` command beside the server, committed in between.
    let mut tx = conn.begin_with("BEGIN IMMEDIATE").await.map_err(backend)?;
    let mut outcomes = Vec::with_capacity(batch.len());
    for job in batch {
        sqlx::query("SAVEPOINT write")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let outcome = apply(&mut tx, &job.write).await;
        // Only a refusal or a failure is undone; whatever else a write answers, it did.
        let keep = !matches!(
            outcome,
            Err(_) | Ok(Outcome::Refused(_) | Outcome::AccountRefused(_))
        );
        if !keep {
            sqlx::query("ROLLBACK TO write")
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        sqlx::query("RELEASE write")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        outcomes.push(outcome);
    }
    tx.commit().await.map_err(backend)?;
    Ok(outcomes)
}

async fn apply(conn: &mut SqliteConnection, write: &Write) -> Result<Outcome> {
    match write {
        Write::LinkBlob {
            repository,
            digest,
            size,
        } => link_blob(conn, repository, digest, *size)
            .await
            .map(|()| Outcome::Done),
        Write::UnlinkBlob { repository, digest } => {
            let done = sqlx::query(
                "DELETE FROM repository_blobs WHERE digest = ?
                 AND repository_id = (SELECT id FROM repositories WHERE name = ?)",
            )
            .bind(digest.to_string())
            .bind(repository.as_str())
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            if done.rows_affected() > 0 {
                // A release: the blob's grace period starts again.
                sqlx::query("UPDATE blobs SET released_at = ? WHERE digest = ?")
                    .bind(now())
                    .bind(digest.to_string())
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
            }
            Ok(Outcome::Changed(done.rows_affected() > 0))
        }
        Write::PinBlob {
            repository,
            digest,
            size,
        } => pin_blob(conn, repository, digest, *size)
            .await
            .map(Outcome::Changed),
        Write::MountBlob {
            repository,
            digest,
            from,
        } => mount_blob(conn, repository, digest, from.as_ref())
            .await
            .map(|size| Outcome::Number(size.map(|s| s as i64))),
        Write::CreateUpload {
            session,
            max_per_client,
        } => {
            let open: i64 = sqlx::query_scalar("SELECT count(*) FROM uploads WHERE client = ?")
                .bind(&session.client)
                .fetch_one(&mut *conn)
                .await
                .map_err(backend)?;
            if open >= i64::from(*max_per_client) {
                return Ok(Outcome::Changed(false));
            }
            sqlx::query(
                r#"INSERT INTO uploads (id, repository, algorithm, "offset", hash_state, store_state,
                                        created_at, updated_at, client)
                   VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"#,
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
            Ok(Outcome::Changed(true))
        }
        Write::AdvanceUpload { progress, from } => {
            let done = sqlx::query(
                r#"UPDATE uploads SET "offset" = ?, hash_state = ?, store_state = ?, updated_at = ?
                   WHERE id = ? AND "offset" = ?"#,
            )
            .bind(progress.offset as i64)
            .bind(&progress.hash_state)
            .bind(&progress.store_state)
            .bind(progress.updated_at)
            .bind(&progress.id)
            .bind(*from as i64)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() == 1))
        }
        Write::DeleteUpload { id } => delete_upload(conn, id).await.map(Outcome::Changed),
        Write::CompleteUpload {
            id,
            repository,
            digest,
            size,
        } => {
            link_blob(conn, repository, digest, *size).await?;
            delete_upload(conn, id).await?;
            Ok(Outcome::Done)
        }
        Write::PutManifest {
            repository,
            manifest,
            blobs,
            children,
            update,
        } => match put_manifest(conn, repository, manifest, blobs, children, update).await {
            Ok(moves) => Ok(Outcome::Moves(moves)),
            Err(PutManifestError::Store(e)) => Err(e),
            Err(refused) => Ok(Outcome::Refused(refused)),
        },
        Write::DeleteManifest {
            repository,
            digest,
            actor,
        } => delete_manifest(conn, repository, digest, actor)
            .await
            .map(Outcome::Changed),
        Write::DeleteTag {
            repository,
            tag,
            actor,
        } => {
            untag(conn, repository, tag).await?;
            let gone: Option<(i64, String)> = sqlx::query_as(
                "DELETE FROM tags WHERE name = ?
                 AND repository_id = (SELECT id FROM repositories WHERE name = ?)
                 RETURNING repository_id, digest",
            )
            .bind(tag.as_str())
            .bind(repository.as_str())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?;
            if let Some((repo_id, digest)) = &gone {
                let change = TagChange {
                    tag: tag.as_str(),
                    from: Some(digest),
                    to: None,
                    reason: TagMoveReason::Delete,
                };
                record_tag_move(conn, *repo_id, &change, actor, now()).await?;
            }
            Ok(Outcome::Changed(gone.is_some()))
        }
        Write::SetPolicy {
            scope,
            key,
            value,
            actor,
        } => {
            match value {
                Some(value) => sqlx::query(
                    "INSERT INTO policies (scope, key, value, updated_by, updated_at)
                     VALUES (?, ?, ?, ?, ?)
                     ON CONFLICT (scope, key) DO UPDATE SET value = excluded.value,
                       updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                )
                .bind(scope)
                .bind(key)
                .bind(value)
                .bind(actor)
                .bind(now()),
                None => sqlx::query("DELETE FROM policies WHERE scope = ? AND key = ?")
                    .bind(scope)
                    .bind(key),
            }
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            Ok(Outcome::Done)
        }
        Write::Trust(write) => apply_trust(conn, write).await,
        Write::Mirror(write) => super::mirror::apply(conn, write).await,
        Write::Ops(write) => super::ops::apply(conn, write).await,
        Write::Webhook(write) => super::webhooks::apply(conn, write).await,
        Write::Scan(write) => super::scans::apply(conn, write).await,
        Write::Describe {
            repository,
            description,
        } => {
            let done = sqlx::query("UPDATE repositories SET description = ? WHERE name = ?")
                .bind(description)
                .bind(repository)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() > 0))
        }
        Write::Account(write) => super::accounts::apply(conn, write).await,
        Write::Gc(write) => super::gc::apply(conn, write).await,
    }
}

async fn delete_upload(conn: &mut SqliteConnection, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM uploads WHERE id = ?")
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

/// Records blob `digest` registry-wide as live (its bytes are published) and links it
/// freshly into `repository`. A blob being collected stays so: callers pin first, so
/// that cannot happen to bytes they just published.
async fn link_blob(
    conn: &mut SqliteConnection,
    repository: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<()> {
    let t = now();
    let repo_id = ensure_repository(conn, repository, t).await?;
    sqlx::query(
        "INSERT INTO blobs (digest, size, created_at, state) VALUES (?, ?, ?, 'live')
         ON CONFLICT (digest) DO UPDATE SET state = 'live', size = excluded.size
         WHERE blobs.state != 'deleting'",
    )
    .bind(digest.to_string())
    .bind(size as i64)
    .bind(t)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    link_fresh(conn, repo_id, digest, t).await
}

/// Links `digest` into a repository as part of a push in progress (time `t`).
async fn link_fresh(
    conn: &mut SqliteConnection,
    repo_id: i64,
    digest: &Digest,
    t: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO repository_blobs (repository_id, digest, linked_at) VALUES (?, ?, ?)
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

/// Reserves `digest` before its bytes are published; `false` while it is being deleted.
async fn pin_blob(
    conn: &mut SqliteConnection,
    repository: &RepoName,
    digest: &Digest,
    size: u64,
) -> Result<bool> {
    let state: Option<String> = sqlx::query_scalar("SELECT state FROM blobs WHERE digest = ?")
        .bind(digest.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    let t = now();
    match state.as_deref() {
        Some("deleting") => return Ok(false),
        Some(_) => {}
        None => {
            sqlx::query(
                "INSERT INTO blobs (digest, size, created_at, state) VALUES (?, ?, ?, 'pending')",
            )
            .bind(digest.to_string())
            .bind(size as i64)
            .bind(t)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
    }
    let repo_id = ensure_repository(conn, repository, t).await?;
    link_fresh(conn, repo_id, digest, t).await?;
    Ok(true)
}

/// Links a live blob into `repository`; its size, or `None` if it cannot be mounted.
async fn mount_blob(
    conn: &mut SqliteConnection,
    repository: &RepoName,
    digest: &Digest,
    from: Option<&RepoName>,
) -> Result<Option<u64>> {
    let size: Option<i64> = match from {
        Some(source) => sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = ? AND rb.digest = ? AND b.state = 'live'",
        )
        .bind(source.as_str())
        .bind(digest.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?,
        None => sqlx::query_scalar("SELECT size FROM blobs WHERE digest = ? AND state = 'live'")
            .bind(digest.to_string())
            .fetch_optional(&mut *conn)
            .await
            .map_err(backend)?,
    };
    let Some(size) = size else { return Ok(None) };
    let t = now();
    let repo_id = ensure_repository(conn, repository, t).await?;
    link_fresh(conn, repo_id, digest, t).await?;
    Ok(Some(size as u64))
}

/// Marks the manifest `tag` points at (if any) as having lost a tag now.
async fn untag(conn: &mut SqliteConnection, repository: &RepoName, tag: &Tag) -> Result<()> {
    sqlx::query(
        "UPDATE manifests SET untagged_at = ?
         WHERE (repository_id, digest) IN (
             SELECT t.repository_id, t.digest FROM tags t
             JOIN repositories r ON r.id = t.repository_id
             WHERE r.name = ? AND t.name = ?)",
    )
    .bind(now())
    .bind(repository.as_str())
    .bind(tag.as_str())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

/// The repository's id, creating it if needed. A new repository takes its namespace's
/// default visibility, else the server's, else public.
pub(super) async fn ensure_repository(
    conn: &mut SqliteConnection,
    repository: &RepoName,
    now: i64,
) -> Result<i64> {
    sqlx::query(
        "INSERT INTO repositories (name, created_at, public) VALUES (?, ?, COALESCE(
            (SELECT default_public FROM namespaces WHERE name = ?),
            (SELECT CAST(value AS INTEGER) FROM settings WHERE key = 'default_public'),
            1))
         ON CONFLICT DO NOTHING",
    )
    .bind(repository.as_str())
    .bind(now)
    .bind(repository.namespace())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
        .bind(repository.as_str())
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)
}

async fn put_manifest(
    conn: &mut SqliteConnection,
    repository: &RepoName,
    manifest: &ManifestRecord,
    blobs: &[Digest],
    children: &[Digest],
    update: &TagUpdate,
) -> std::result::Result<Vec<TagMove>, PutManifestError> {
    let t = now();
    let repo_id = ensure_repository(conn, repository, t).await?;
    // A mirror's copy references what is fetched later. An index may be sparse (some
    // of its platforms' manifests not here, as the distribution-spec allows): its
    // children are recorded as references, present or not, and kept once they arrive.
    let required_blobs = if update.mirrored { &[][..] } else { blobs };
    for digest in required_blobs {
        let linked: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM repository_blobs rb JOIN blobs b ON b.digest = rb.digest
             WHERE rb.repository_id = ? AND rb.digest = ? AND b.state = 'live'",
        )
        .bind(repo_id)
        .bind(digest.to_string())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
        if linked.is_none() {
            return Err(PutManifestError::MissingBlob(digest.clone()));
        }
    }
    sqlx::query(
        "INSERT INTO manifests
           (repository_id, digest, media_type, body, subject, artifact_type, annotations, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
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
    record_references(conn, repo_id, &manifest.digest, blobs, children).await?;
    move_tags(conn, repository, repo_id, &manifest.digest, update, t).await
}

/// Points the update's tags (and, with semver floats, the floats its releases move) at
/// `digest`, refusing to move an immutable one; records each change. The single writer
/// makes the floats' decision and their move one step.
async fn move_tags(
    conn: &mut SqliteConnection,
    repository: &RepoName,
    repo_id: i64,
    digest: &Digest,
    update: &TagUpdate,
    t: i64,
) -> std::result::Result<Vec<TagMove>, PutManifestError> {
    let existing: Vec<String> = if crate::pushes_releases(update) {
        sqlx::query_scalar("SELECT name FROM tags WHERE repository_id = ?")
            .bind(repo_id)
            .fetch_all(&mut *conn)
            .await
            .map_err(backend)?
    } else {
        Vec::new()
    };
    let to = digest.to_string();
    let mut moves = Vec::new();
    for (name, reason) in crate::tags_to_move(update, &existing) {
        let from: Option<String> =
            sqlx::query_scalar("SELECT digest FROM tags WHERE repository_id = ? AND name = ?")
                .bind(repo_id)
                .bind(&name)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
        if from.as_deref() == Some(to.as_str()) {
            continue;
        }
        if from.is_some()
            && reason == TagMoveReason::Push
            && let Some(tag) = update.immutable.iter().find(|t| t.as_str() == name)
        {
            return Err(PutManifestError::TagImmutable(tag.clone()));
        }
        if let Some(left) = &from {
            // The manifest the tag leaves counts as untagged from now.
            sqlx::query(
                "UPDATE manifests SET untagged_at = ? WHERE repository_id = ? AND digest = ?",
            )
            .bind(t)
            .bind(repo_id)
            .bind(left)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
        }
        sqlx::query(
            "INSERT INTO tags (repository_id, name, digest, updated_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (repository_id, name) DO UPDATE
             SET digest = excluded.digest, updated_at = excluded.updated_at",
        )
        .bind(repo_id)
        .bind(&name)
        .bind(&to)
        .bind(t)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
        let change = TagChange {
            tag: &name,
            from: from.as_deref(),
            to: Some(&to),
            reason,
        };
        let id = record_tag_move(conn, repo_id, &change, &update.actor, t).await?;
        moves.push(change.into_move(id, repository, &update.actor, t)?);
    }
    Ok(moves)
}

/// A tag change on its way to the history.
pub(super) struct TagChange<'a> {
    pub tag: &'a str,
    pub from: Option<&'a str>,
    pub to: Option<&'a str>,
    pub reason: TagMoveReason,
}

impl TagChange<'_> {
    fn into_move(self, id: i64, repository: &RepoName, actor: &str, at: i64) -> Result<TagMove> {
        let digest = |d: Option<&str>| d.map(super::parse_digest).transpose();
        Ok(TagMove {
            id,
            repository: repository.clone(),
            tag: self.tag.to_owned(),
            from: digest(self.from)?,
            to: digest(self.to)?,
            reason: self.reason,
            actor: actor.to_owned(),
            at,
        })
    }
}

/// Appends one change to the tag history; returns its id.
pub(super) async fn record_tag_move(
    conn: &mut SqliteConnection,
    repo_id: i64,
    change: &TagChange<'_>,
    actor: &str,
    at: i64,
) -> Result<i64> {
    sqlx::query_scalar(
        "INSERT INTO tag_history (repository_id, tag, from_digest, to_digest, reason, actor, at)
         VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
    )
    .bind(repo_id)
    .bind(change.tag)
    .bind(change.from)
    .bind(change.to)
    .bind(change.reason.as_str())
    .bind(actor)
    .bind(at)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)
}

/// Records what a manifest references (replacing what an earlier PUT recorded).
async fn record_references(
    conn: &mut SqliteConnection,
    repo_id: i64,
    manifest: &Digest,
    blobs: &[Digest],
    children: &[Digest],
) -> Result<()> {
    forget_references(conn, repo_id, manifest).await?;
    for digest in blobs {
        sqlx::query(
            "INSERT OR IGNORE INTO manifest_blobs (repository_id, manifest, digest) VALUES (?, ?, ?)",
        )
        .bind(repo_id)
        .bind(manifest.to_string())
        .bind(digest.to_string())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    for child in children {
        sqlx::query(
            "INSERT OR IGNORE INTO manifest_children (repository_id, manifest, child) VALUES (?, ?, ?)",
        )
        .bind(repo_id)
        .bind(manifest.to_string())
        .bind(child.to_string())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    }
    Ok(())
}

async fn forget_references(
    conn: &mut SqliteConnection,
    repo_id: i64,
    manifest: &Digest,
) -> Result<()> {
    for table in ["manifest_blobs", "manifest_children"] {
        let sql = format!("DELETE FROM {table} WHERE repository_id = ? AND manifest = ?");
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(repo_id)
            .bind(manifest.to_string())
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    Ok(())
}

/// The blobs a manifest referenced are released (their grace period starts) and their
/// links in its repository stop counting as a push in progress.
async fn release_references(
    conn: &mut SqliteConnection,
    repo_id: i64,
    manifest: &Digest,
) -> Result<()> {
    sqlx::query(
        "UPDATE blobs SET released_at = ? WHERE digest IN (
             SELECT digest FROM manifest_blobs WHERE repository_id = ? AND manifest = ?)",
    )
    .bind(now())
    .bind(repo_id)
    .bind(manifest.to_string())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    sqlx::query(
        "UPDATE repository_blobs SET linked_at = 0 WHERE repository_id = ? AND digest IN (
             SELECT digest FROM manifest_blobs WHERE repository_id = ? AND manifest = ?)",
    )
    .bind(repo_id)
    .bind(repo_id)
    .bind(manifest.to_string())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    forget_references(conn, repo_id, manifest).await
}

pub(super) async fn delete_manifest(
    conn: &mut SqliteConnection,
    repository: &RepoName,
    digest: &Digest,
    actor: &str,
) -> Result<bool> {
    let repo_id: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
        .bind(repository.as_str())
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?;
    let Some(repo_id) = repo_id else {
        return Ok(false);
    };
    release_references(conn, repo_id, digest).await?;
    let done = sqlx::query("DELETE FROM manifests WHERE repository_id = ? AND digest = ?")
        .bind(repo_id)
        .bind(digest.to_string())
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    let from = digest.to_string();
    let gone: Vec<String> = sqlx::query_scalar(
        "DELETE FROM tags WHERE repository_id = ? AND digest = ? RETURNING name",
    )
    .bind(repo_id)
    .bind(&from)
    .fetch_all(&mut *conn)
    .await
    .map_err(backend)?;
    let t = now();
    for tag in &gone {
        let change = TagChange {
            tag,
            from: Some(&from),
            to: None,
            reason: TagMoveReason::Delete,
        };
        record_tag_move(conn, repo_id, &change, actor, t).await?;
    }
    Ok(done.rows_affected() > 0)
}

async fn apply_trust(conn: &mut SqliteConnection, write: &TrustWrite) -> Result<Outcome> {
    let done = match write {
        TrustWrite::AddGolden {
            repository,
            tags,
            actor,
        } => sqlx::query(
            "INSERT INTO golden_images (repository, tags, added_by, added_at) VALUES (?, ?, ?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(repository)
        .bind(tags)
        .bind(actor)
        .bind(now()),
        TrustWrite::RemoveGolden { repository, tags } => {
            sqlx::query("DELETE FROM golden_images WHERE repository = ? AND tags = ?")
                .bind(repository)
                .bind(tags)
        }
        TrustWrite::SetMark {
            namespace,
            mark: Some(mark),
        } => sqlx::query(
            "INSERT INTO namespace_marks (namespace, mark) VALUES (?, ?)
             ON CONFLICT (namespace) DO UPDATE SET mark = excluded.mark",
        )
        .bind(namespace)
        .bind(mark),
        TrustWrite::SetMark {
            namespace,
            mark: None,
        } => sqlx::query("DELETE FROM namespace_marks WHERE namespace = ?").bind(namespace),
        TrustWrite::Warn {
            repository,
            digest,
            message,
            actor,
        } => sqlx::query(
            "INSERT INTO push_warnings (repository, digest, message, actor, at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(repository)
        .bind(digest)
        .bind(message)
        .bind(actor)
        .bind(now()),
    }
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(Outcome::Changed(done.rows_affected() > 0))
}

/// Records a push's time on its repository (for "recently pushed"); at most one write a
/// second per repository.
async fn mark_pushed(conn: &mut SqliteConnection, repo_id: i64, t: i64) -> Result<()> {
    sqlx::query(
        "UPDATE repositories SET pushed_at = ?2
         WHERE id = ?1 AND (pushed_at IS NULL OR pushed_at < ?2)",
    )
    .bind(repo_id)
    .bind(t)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}
