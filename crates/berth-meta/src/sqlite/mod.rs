//! SQLite backend (the embedded default): one file, WAL, `synchronous=FULL`.
//!
//! SQLite allows one writer at a time, so all writes go through one connection owned by
//! a writer task that commits them in groups ([`writes`]); reads use a pool of their own.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::{Digest, RepoName, Tag};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Row, SqlitePool};

use crate::{
    GcBlob, GcCutoffs, GoldenImage, ManifestRecord, MetaError, MetaStore, Page, PolicySetting,
    PushWarning, PutManifestError, Referrer, RepositoryUsage, Result, TagMove, TagUpdate,
    UploadSession,
};

mod accounts;
mod catalog;
mod gc;
mod mirror;
mod ops;
mod scans;
mod webhooks;
mod writes;

use gc::GcWrite;
use writes::{Outcome, TrustWrite, Write, Writer};

/// Schema changes in order; `PRAGMA user_version` records how many have been applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE repositories (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);
CREATE TABLE blobs (
    digest     TEXT PRIMARY KEY,
    size       INTEGER NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE repository_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    digest        TEXT NOT NULL REFERENCES blobs(digest),
    PRIMARY KEY (repository_id, digest)
) WITHOUT ROWID;
CREATE TABLE manifests (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    digest        TEXT NOT NULL,
    media_type    TEXT NOT NULL,
    body          BLOB NOT NULL,
    subject       TEXT,
    artifact_type TEXT,
    annotations   TEXT,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, digest)
);
CREATE INDEX manifests_by_subject ON manifests(repository_id, subject) WHERE subject IS NOT NULL;
CREATE TABLE tags (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    name          TEXT NOT NULL,
    digest        TEXT NOT NULL,
    updated_at    INTEGER NOT NULL,
    PRIMARY KEY (repository_id, name)
) WITHOUT ROWID;
CREATE INDEX tags_by_digest ON tags(repository_id, digest);
CREATE TABLE uploads (
    id         TEXT PRIMARY KEY,
    repository TEXT NOT NULL,
    algorithm  TEXT NOT NULL,
    "offset"   INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE INDEX uploads_by_age ON uploads(updated_at);
"#,
    r#"
CREATE TABLE settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE namespaces (
    name           TEXT PRIMARY KEY,
    kind           TEXT NOT NULL CHECK (kind IN ('user', 'org')),
    default_public INTEGER,
    created_at     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE users (
    name              TEXT PRIMARY KEY REFERENCES namespaces(name),
    password_hash     TEXT NOT NULL,
    admin             INTEGER NOT NULL DEFAULT 0,
    credentials_epoch INTEGER NOT NULL DEFAULT 0,
    created_at        INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE org_members (
    org  TEXT NOT NULL REFERENCES namespaces(name),
    user TEXT NOT NULL REFERENCES users(name),
    role TEXT NOT NULL CHECK (role IN ('read', 'write', 'admin')),
    PRIMARY KEY (org, user)
) WITHOUT ROWID;
CREATE INDEX org_members_by_user ON org_members(user);
CREATE TABLE access_tokens (
    id           TEXT PRIMARY KEY,
    user         TEXT NOT NULL REFERENCES users(name),
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL UNIQUE,
    scope        TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    last_used_at INTEGER,
    revoked_at   INTEGER
);
CREATE INDEX access_tokens_by_user ON access_tokens(user, created_at);
-- Repositories created before accounts existed were readable by anyone.
ALTER TABLE repositories ADD COLUMN public INTEGER NOT NULL DEFAULT 1;
CREATE INDEX public_repositories ON repositories(name) WHERE public = 1;
"#,
    r#"
CREATE TABLE web_sessions (
    id           TEXT PRIMARY KEY,
    username     TEXT NOT NULL REFERENCES users(name),
    secret_hash  TEXT NOT NULL UNIQUE,
    epoch        INTEGER,
    token_id     TEXT,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    client       TEXT NOT NULL,
    user_agent   TEXT NOT NULL
);
CREATE INDEX web_sessions_by_user ON web_sessions(username, created_at);
CREATE INDEX web_sessions_by_expiry ON web_sessions(expires_at);
ALTER TABLE uploads ADD COLUMN client TEXT NOT NULL DEFAULT '';
CREATE INDEX uploads_by_client ON uploads(client);
"#,
    r#"
ALTER TABLE uploads ADD COLUMN hash_state BLOB NOT NULL DEFAULT x'';
ALTER TABLE uploads ADD COLUMN store_state BLOB NOT NULL DEFAULT x'';
"#,
    // `user` is a reserved word in PostgreSQL, whose schema calls it `username`: one
    // concept, one name in both.
    r#"
ALTER TABLE org_members RENAME COLUMN user TO username;
ALTER TABLE access_tokens RENAME COLUMN user TO username;
"#,
    // Garbage collection: what each manifest references, the state of each blob, and
    // when links, releases and untaggings happened. Manifests stored before this
    // migration get their references from their bodies.
    r#"
ALTER TABLE blobs ADD COLUMN state TEXT NOT NULL DEFAULT 'live'
    CHECK (state IN ('pending', 'live', 'deleting'));
ALTER TABLE blobs ADD COLUMN released_at INTEGER;
ALTER TABLE blobs ADD COLUMN claimed_at INTEGER;
ALTER TABLE repository_blobs ADD COLUMN linked_at INTEGER NOT NULL DEFAULT 0;
CREATE INDEX repository_blobs_by_digest ON repository_blobs(digest, linked_at);
ALTER TABLE manifests ADD COLUMN untagged_at INTEGER;
CREATE TABLE manifest_blobs (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    manifest      TEXT NOT NULL,
    digest        TEXT NOT NULL,
    PRIMARY KEY (repository_id, manifest, digest)
) WITHOUT ROWID;
CREATE INDEX manifest_blobs_by_digest ON manifest_blobs(digest);
CREATE TABLE manifest_children (
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    manifest      TEXT NOT NULL,
    child         TEXT NOT NULL,
    PRIMARY KEY (repository_id, manifest, child)
) WITHOUT ROWID;
CREATE INDEX manifest_children_by_child ON manifest_children(repository_id, child);
INSERT OR IGNORE INTO manifest_blobs (repository_id, manifest, digest)
    SELECT m.repository_id, m.digest, json_extract(CAST(m.body AS TEXT), '$.config.digest')
    FROM manifests m
    WHERE json_valid(CAST(m.body AS TEXT))
      AND json_extract(CAST(m.body AS TEXT), '$.config.digest') IS NOT NULL;
INSERT OR IGNORE INTO manifest_blobs (repository_id, manifest, digest)
    SELECT m.repository_id, m.digest, json_extract(item.value, '$.digest')
    FROM manifests m, json_each(CAST(m.body AS TEXT), '$.layers') item
    WHERE json_valid(CAST(m.body AS TEXT)) AND json_extract(item.value, '$.digest') IS NOT NULL;
INSERT OR IGNORE INTO manifest_blobs (repository_id, manifest, digest)
    SELECT m.repository_id, m.digest, json_extract(item.value, '$.digest')
    FROM manifests m, json_each(CAST(m.body AS TEXT), '$.blobs') item
    WHERE json_valid(CAST(m.body AS TEXT)) AND json_extract(item.value, '$.digest') IS NOT NULL;
INSERT OR IGNORE INTO manifest_children (repository_id, manifest, child)
    SELECT m.repository_id, m.digest, json_extract(item.value, '$.digest')
    FROM manifests m, json_each(CAST(m.body AS TEXT), '$.manifests') item
    WHERE json_valid(CAST(m.body AS TEXT)) AND json_extract(item.value, '$.digest') IS NOT NULL;
"#,
    // Failed-sign-in limits that hold across processes: one fixed window per key.
    r#"
CREATE TABLE sign_in_attempts (
    key          TEXT PRIMARY KEY,
    window_start INTEGER NOT NULL,
    attempts     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX sign_in_attempts_by_start ON sign_in_attempts(window_start);
"#,
    // Tag policies, and the history of every tag move.
    r#"
CREATE TABLE policies (
    scope      TEXT NOT NULL,
    key        TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (scope, key)
) WITHOUT ROWID;
CREATE TABLE tag_history (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    repository_id INTEGER NOT NULL REFERENCES repositories(id),
    tag           TEXT NOT NULL,
    from_digest   TEXT,
    to_digest     TEXT,
    reason        TEXT NOT NULL,
    actor         TEXT NOT NULL,
    at            INTEGER NOT NULL
);
CREATE INDEX tag_history_by_tag ON tag_history(repository_id, tag, id);
"#,
    // Trust: golden images (tags '' = every tag), namespace marks, push warnings.
    r#"
CREATE TABLE golden_images (
    repository TEXT NOT NULL,
    tags       TEXT NOT NULL,
    added_by   TEXT NOT NULL,
    added_at   INTEGER NOT NULL,
    PRIMARY KEY (repository, tags)
) WITHOUT ROWID;
CREATE TABLE namespace_marks (
    namespace TEXT PRIMARY KEY,
    mark      TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE push_warnings (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    repository TEXT NOT NULL,
    digest     TEXT NOT NULL,
    message    TEXT NOT NULL,
    actor      TEXT NOT NULL,
    at         INTEGER NOT NULL
);
CREATE INDEX push_warnings_by_repository ON push_warnings(repository, id);
"#,
    // The catalog: a repository's namespace (derived), description and last push, and
    // two full-text indexes over names and descriptions for search, kept current by
    // triggers: trigrams (any part of a name matches, as on Docker Hub: three characters
    // or more) and words (shorter searches match the start of a word: `ui`, `go`).
    r#"
ALTER TABLE repositories ADD COLUMN namespace TEXT
    GENERATED ALWAYS AS (substr(name, 1, instr(name || '/', '/') - 1)) VIRTUAL;
ALTER TABLE repositories ADD COLUMN description TEXT NOT NULL DEFAULT '';
ALTER TABLE repositories ADD COLUMN pushed_at INTEGER;
UPDATE repositories SET pushed_at =
    (SELECT max(created_at) FROM manifests m WHERE m.repository_id = repositories.id);
CREATE INDEX repositories_by_namespace ON repositories(namespace, pushed_at);
CREATE INDEX repositories_by_push ON repositories(pushed_at);
CREATE VIRTUAL TABLE repository_search USING fts5(
    name, description, content = 'repositories', content_rowid = 'id', tokenize = 'trigram');
CREATE VIRTUAL TABLE repository_words USING fts5(
    name, description, content = 'repositories', content_rowid = 'id', tokenize = 'unicode61');
INSERT INTO repository_search(repository_search) VALUES ('rebuild');
INSERT INTO repository_words(repository_words) VALUES ('rebuild');
CREATE TRIGGER repository_search_insert AFTER INSERT ON repositories BEGIN
    INSERT INTO repository_search(rowid, name, description)
        VALUES (new.id, new.name, new.description);
    INSERT INTO repository_words(rowid, name, description)
        VALUES (new.id, new.name, new.description);
END;
CREATE TRIGGER repository_search_delete AFTER DELETE ON repositories BEGIN
    INSERT INTO repository_search(repository_search, rowid, name, description)
        VALUES ('delete', old.id, old.name, old.description);
    INSERT INTO repository_words(repository_words, rowid, name, description)
        VALUES ('delete', old.id, old.name, old.description);
END;
CREATE TRIGGER repository_search_update AFTER UPDATE OF name, description ON repositories BEGIN
    INSERT INTO repository_search(repository_search, rowid, name, description)
        VALUES ('delete', old.id, old.name, old.description);
    INSERT INTO repository_search(rowid, name, description)
        VALUES (new.id, new.name, new.description);
    INSERT INTO repository_words(repository_words, rowid, name, description)
        VALUES ('delete', old.id, old.name, old.description);
    INSERT INTO repository_words(rowid, name, description)
        VALUES (new.id, new.name, new.description);
END;
"#,
    // Mirrors: when each cached manifest was last pulled (eviction), and pins.
    r#"
ALTER TABLE manifests ADD COLUMN pulled_at INTEGER;
CREATE TABLE mirror_pins (
    repository TEXT NOT NULL,
    reference  TEXT NOT NULL,
    pinned_by  TEXT NOT NULL,
    pinned_at  INTEGER NOT NULL,
    PRIMARY KEY (repository, reference)
) WITHOUT ROWID;
"#,
    // Pull rate limits: a fixed window of requests per key.
    r#"
CREATE TABLE request_windows (
    key     TEXT PRIMARY KEY,
    ends_at INTEGER NOT NULL,
    count   INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX request_windows_by_end ON request_windows (ends_at);
"#,
    // The audit log.
    r#"
CREATE TABLE audit_events (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    at     INTEGER NOT NULL,
    actor  TEXT NOT NULL,
    client TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_events_by_time ON audit_events (at);
CREATE INDEX audit_events_by_actor ON audit_events (actor, id);
CREATE INDEX audit_events_by_target ON audit_events (target, id);
"#,
    // Webhooks and their delivery queue.
    r#"
CREATE TABLE webhooks (
    id         TEXT PRIMARY KEY,
    scope      TEXT NOT NULL,
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    secret     TEXT,
    format     TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook_id      TEXT NOT NULL,
    event           TEXT NOT NULL,
    payload         TEXT NOT NULL,
    state           TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    last_status     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    finished_at     INTEGER
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (state, next_attempt_at);
CREATE INDEX webhook_deliveries_by_hook ON webhook_deliveries (webhook_id, id);
"#,
    // Retention: when each tag was last pulled.
    r#"
ALTER TABLE tags ADD COLUMN pulled_at INTEGER;
"#,
    // Scanning: image inventories and findings, and the advisory database.
    r#"
CREATE TABLE image_scans (
    digest     TEXT PRIMARY KEY,
    scanned_at INTEGER NOT NULL,
    matched_at INTEGER NOT NULL,
    inventory  TEXT NOT NULL,
    findings   TEXT NOT NULL,
    worst      TEXT
) WITHOUT ROWID;
CREATE TABLE advisories (
    id       TEXT PRIMARY KEY,
    modified TEXT NOT NULL,
    body     TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE advisory_packages (
    ecosystem   TEXT NOT NULL,
    name        TEXT NOT NULL,
    advisory_id TEXT NOT NULL,
    PRIMARY KEY (ecosystem, name, advisory_id)
) WITHOUT ROWID;
CREATE INDEX advisory_packages_by_advisory ON advisory_packages (advisory_id);
CREATE TABLE vulndb_imports (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    source      TEXT NOT NULL,
    imported_at INTEGER NOT NULL,
    added       INTEGER NOT NULL,
    updated     INTEGER NOT NULL,
    removed     INTEGER NOT NULL,
    unchanged   INTEGER NOT NULL
);
"#,
];

pub struct SqliteMetaStore {
    writer: Writer,
    reader: SqlitePool,
    /// The database file and its identity (device, inode) when opened, for
    /// [`MetaStore::check`].
    file: Option<(std::path::PathBuf, (u64, u64))>,
}

/// The `Changed` answer of a write that reports whether it changed anything.
fn changed(outcome: Result<Outcome>) -> Result<bool> {
    match outcome? {
        Outcome::Changed(changed) => Ok(changed),
        Outcome::Done
        | Outcome::Value(_)
        | Outcome::Refused(_)
        | Outcome::AccountRefused(_)
        | Outcome::Number(_)
        | Outcome::Blobs(_)
        | Outcome::Manifests(_)
        | Outcome::Moves(_)
        | Outcome::Window(_)
        | Outcome::Request(_)
        | Outcome::Deliveries(_)
        | Outcome::Imported(_) => Ok(true),
    }
}

fn backend(e: impl std::error::Error + Send + Sync + 'static) -> MetaError {
    MetaError(Box::new(e))
}

fn corrupt(what: String) -> MetaError {
    MetaError(what.into())
}

fn parse_digest(s: &str) -> Result<Digest> {
    Digest::from_str(s).map_err(|e| corrupt(format!("stored digest {s:?}: {e}")))
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl SqliteMetaStore {
    /// Opens (creating if needed) the database at a `sqlite://PATH` URL and brings its
    /// schema up to date.
    pub async fn open(url: &str) -> Result<SqliteMetaStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(backend)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        // The writer connects without fsync so that creating a new database (its
        // header, the switch to WAL, the schema) costs none; `migrate` turns
        // synchronous=FULL on before any data is written.
        let mut writer =
            connect_writer(options.clone().synchronous(SqliteSynchronous::Off)).await?;
        migrate(&mut writer).await?;
        let path = options.get_filename().to_owned();
        let file = file_identity(&path).ok().map(|id| (path, id));
        // Readers connect on first use: start-up opens only the writer.
        let reader = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_lazy_with(options.read_only(true));
        Ok(SqliteMetaStore {
            writer: Writer::start(writer),
            reader,
            file,
        })
    }

    async fn write(&self, write: Write) -> Result<Outcome> {
        self.writer.submit(write).await
    }
}

/// A file's device and inode.
fn file_identity(path: &std::path::Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

/// Connects the writer. Two processes opening a new file at the same moment (`berth
/// serve` and a `berth user` command) both switch it to WAL, which needs an exclusive
/// lock that SQLite does not wait for (the busy timeout does not apply): the loser
/// tries again.
async fn connect_writer(options: SqliteConnectOptions) -> Result<sqlx::SqliteConnection> {
    let mut attempt = 0;
    loop {
        match options.connect().await {
            Err(e) if attempt < 50 && is_busy(&e) => attempt += 1,
            connected => return connected.map_err(backend),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    // SQLITE_BUSY, and its extended codes (the low byte).
    let code = e.as_database_error().and_then(|e| e.code());
    code.and_then(|code| code.parse::<i32>().ok())
        .is_some_and(|code| code & 0xff == 5)
}

/// Brings the schema up to date, in one transaction.
///
/// Runs without fsync: in WAL mode the first durable write after it syncs the log that
/// holds the schema too, and a schema lost before any data was written is simply
/// created again at the next start. This keeps a first start on an empty data dir fast.
async fn migrate(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    sqlx::raw_sql("PRAGMA synchronous = OFF")
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    let migrated = apply_migrations(conn).await;
    sqlx::raw_sql("PRAGMA synchronous = FULL")
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    migrated
}

async fn apply_migrations(conn: &mut sqlx::SqliteConnection) -> Result<()> {
    let mut tx = sqlx::Connection::begin_with(conn, "BEGIN IMMEDIATE")
        .await
        .map_err(backend)?;
    let version: i64 = sqlx::query_scalar("PRAGMA user_version")
        .fetch_one(&mut *tx)
        .await
        .map_err(backend)?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
        sqlx::raw_sql(*sql)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let bump = format!("PRAGMA user_version = {}", i + 1);
        sqlx::raw_sql(sqlx::AssertSqlSafe(bump))
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
    }
    tx.commit().await.map_err(backend)
}

fn manifest_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<ManifestRecord> {
    let digest: String = row.try_get("digest").map_err(backend)?;
    let subject: Option<String> = row.try_get("subject").map_err(backend)?;
    Ok(ManifestRecord {
        digest: parse_digest(&digest)?,
        media_type: row.try_get("media_type").map_err(backend)?,
        body: row.try_get::<Vec<u8>, _>("body").map_err(backend)?.into(),
        subject: subject.as_deref().map(parse_digest).transpose()?,
        artifact_type: row.try_get("artifact_type").map_err(backend)?,
        annotations: row.try_get("annotations").map_err(backend)?,
    })
}

/// Fetches `limit + 1` rows to learn whether another page follows.
fn into_page(mut items: Vec<String>, limit: u32) -> Page {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    Page { items, more }
}

#[async_trait]
impl MetaStore for SqliteMetaStore {
    async fn repository_blob(&self, repository: &RepoName, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> = sqlx::query_scalar(
            "SELECT b.size FROM repository_blobs rb
             JOIN repositories r ON r.id = rb.repository_id
             JOIN blobs b ON b.digest = rb.digest
             WHERE r.name = ? AND rb.digest = ? AND b.state = 'live'",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        Ok(size.map(|s| s as u64))
    }

    async fn blob(&self, digest: &Digest) -> Result<Option<u64>> {
        let size: Option<i64> =
            sqlx::query_scalar("SELECT size FROM blobs WHERE digest = ? AND state = 'live'")
                .bind(digest.to_string())
                .fetch_optional(&self.reader)
                .await
                .map_err(backend)?;
        Ok(size.map(|s| s as u64))
    }

    async fn link_blob(&self, repository: &RepoName, digest: &Digest, size: u64) -> Result<()> {
        self.write(Write::LinkBlob {
            repository: repository.clone(),
            digest: digest.clone(),
            size,
        })
        .await
        .map(drop)
    }

    async fn pin_blob(&self, repository: &RepoName, digest: &Digest, size: u64) -> Result<bool> {
        changed(
            self.write(Write::PinBlob {
                repository: repository.clone(),
                digest: digest.clone(),
                size,
            })
            .await,
        )
    }

    async fn mount_blob(
        &self,
        repository: &RepoName,
        digest: &Digest,
        from: Option<&RepoName>,
    ) -> Result<Option<u64>> {
        let write = Write::MountBlob {
            repository: repository.clone(),
            digest: digest.clone(),
            from: from.cloned(),
        };
        match self.write(write).await? {
            Outcome::Number(size) => Ok(size.map(|s| s as u64)),
            _ => Ok(None),
        }
    }

    async fn unlink_blob(&self, repository: &RepoName, digest: &Digest) -> Result<bool> {
        changed(
            self.write(Write::UnlinkBlob {
                repository: repository.clone(),
                digest: digest.clone(),
            })
            .await,
        )
    }

    async fn create_upload(&self, session: &UploadSession, max_per_client: u32) -> Result<bool> {
        changed(
            self.write(Write::CreateUpload {
                session: session.clone(),
                max_per_client,
            })
            .await,
        )
    }

    async fn upload(&self, id: &str) -> Result<Option<UploadSession>> {
        let row = sqlx::query(
            r#"SELECT id, repository, algorithm, "offset", hash_state, store_state, updated_at, client
               FROM uploads WHERE id = ?"#,
        )
        .bind(id)
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let repository: String = row.try_get("repository").map_err(backend)?;
        let algorithm: String = row.try_get("algorithm").map_err(backend)?;
        let offset: i64 = row.try_get("offset").map_err(backend)?;
        Ok(Some(UploadSession {
            id: row.try_get("id").map_err(backend)?,
            repository: repository
                .parse()
                .map_err(|e| corrupt(format!("upload repository: {e}")))?,
            algorithm: algorithm
                .parse()
                .map_err(|e| corrupt(format!("upload algorithm: {e}")))?,
            offset: offset as u64,
            hash_state: row.try_get("hash_state").map_err(backend)?,
            store_state: row.try_get("store_state").map_err(backend)?,
            updated_at: row.try_get("updated_at").map_err(backend)?,
            client: row.try_get("client").map_err(backend)?,
        }))
    }

    async fn advance_upload(&self, progress: &UploadSession, from: u64) -> Result<bool> {
        changed(
            self.write(Write::AdvanceUpload {
                progress: progress.clone(),
                from,
            })
            .await,
        )
    }

    async fn delete_upload(&self, id: &str) -> Result<bool> {
        changed(self.write(Write::DeleteUpload { id: id.to_owned() }).await)
    }

    async fn complete_upload(
        &self,
        id: &str,
        repository: &RepoName,
        digest: &Digest,
        size: u64,
    ) -> Result<()> {
        let write = Write::CompleteUpload {
            id: id.to_owned(),
            repository: repository.clone(),
            digest: digest.clone(),
            size,
        };
        self.write(write).await.map(drop)
    }

    async fn stale_uploads(&self, idle_since: i64) -> Result<Vec<String>> {
        sqlx::query_scalar("SELECT id FROM uploads WHERE updated_at < ?")
            .bind(idle_since)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)
    }

    async fn put_manifest_with(
        &self,
        repository: &RepoName,
        manifest: &ManifestRecord,
        blobs: &[Digest],
        children: &[Digest],
        update: &TagUpdate,
    ) -> std::result::Result<Vec<TagMove>, PutManifestError> {
        let write = Write::PutManifest {
            repository: repository.clone(),
            manifest: manifest.clone(),
            blobs: blobs.to_vec(),
            children: children.to_vec(),
            update: update.clone(),
        };
        match self.write(write).await? {
            Outcome::Refused(refused) => Err(refused),
            Outcome::Moves(moves) => Ok(moves),
            _ => Ok(Vec::new()),
        }
    }

    async fn manifest_by_digest(
        &self,
        repository: &RepoName,
        digest: &Digest,
    ) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.body, m.subject, m.artifact_type, m.annotations
             FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = ? AND m.digest = ?",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn manifest_by_tag(
        &self,
        repository: &RepoName,
        tag: &Tag,
    ) -> Result<Option<ManifestRecord>> {
        let row = sqlx::query(
            "SELECT m.digest, m.media_type, m.body, m.subject, m.artifact_type, m.annotations
             FROM tags t
             JOIN repositories r ON r.id = t.repository_id
             JOIN manifests m ON m.repository_id = t.repository_id AND m.digest = t.digest
             WHERE r.name = ? AND t.name = ?",
        )
        .bind(repository.as_str())
        .bind(tag.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(backend)?;
        row.as_ref().map(manifest_from_row).transpose()
    }

    async fn delete_manifest(
        &self,
        repository: &RepoName,
        digest: &Digest,
        actor: &str,
    ) -> Result<bool> {
        changed(
            self.write(Write::DeleteManifest {
                repository: repository.clone(),
                digest: digest.clone(),
                actor: actor.to_owned(),
            })
            .await,
        )
    }

    async fn delete_tag(&self, repository: &RepoName, tag: &Tag, actor: &str) -> Result<bool> {
        changed(
            self.write(Write::DeleteTag {
                repository: repository.clone(),
                tag: tag.clone(),
                actor: actor.to_owned(),
            })
            .await,
        )
    }

    async fn manifest_tags(&self, repository: &RepoName, digest: &Digest) -> Result<Vec<String>> {
        sqlx::query_scalar(
            "SELECT t.name FROM tags t JOIN repositories r ON r.id = t.repository_id
             WHERE r.name = ? AND t.digest = ? ORDER BY t.name",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .fetch_all(&self.reader)
        .await
        .map_err(backend)
    }

    async fn tag_history(
        &self,
        repository: &RepoName,
        tag: Option<&str>,
        before: Option<i64>,
        limit: u32,
    ) -> Result<Vec<TagMove>> {
        let rows: Vec<crate::rows::TagMoveRow> = sqlx::query_as(
            "SELECT h.id, h.tag, h.from_digest, h.to_digest, h.reason, h.actor, h.at
             FROM tag_history h JOIN repositories r ON r.id = h.repository_id
             WHERE r.name = ? AND (? IS NULL OR h.tag = ?) AND h.id < ?
             ORDER BY h.id DESC LIMIT ?",
        )
        .bind(repository.as_str())
        .bind(tag)
        .bind(tag)
        .bind(before.unwrap_or(i64::MAX))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|row| crate::rows::tag_move(repository, row))
            .collect()
    }

    async fn set_policy(
        &self,
        scope: &str,
        key: &str,
        value: Option<&str>,
        actor: &str,
    ) -> Result<()> {
        self.write(Write::SetPolicy {
            scope: scope.to_owned(),
            key: key.to_owned(),
            value: value.map(str::to_owned),
            actor: actor.to_owned(),
        })
        .await
        .map(drop)
    }

    async fn policies(&self, scopes: &[&str]) -> Result<Vec<PolicySetting>> {
        let mut found = Vec::new();
        for scope in scopes {
            let rows = sqlx::query(
                "SELECT scope, key, value, updated_by, updated_at FROM policies
                 WHERE scope = ? ORDER BY key",
            )
            .bind(*scope)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
            for row in rows {
                found.push(PolicySetting {
                    scope: row.get(0),
                    key: row.get(1),
                    value: row.get(2),
                    updated_by: row.get(3),
                    updated_at: row.get(4),
                });
            }
        }
        found.sort_by(|a, b| (&a.scope, &a.key).cmp(&(&b.scope, &b.key)));
        Ok(found)
    }

    async fn add_golden(
        &self,
        repository: &RepoName,
        tags: Option<&str>,
        actor: &str,
    ) -> Result<bool> {
        changed(
            self.write(Write::Trust(TrustWrite::AddGolden {
                repository: repository.as_str().to_owned(),
                tags: tags.unwrap_or_default().to_owned(),
                actor: actor.to_owned(),
            }))
            .await,
        )
    }

    async fn remove_golden(&self, repository: &RepoName, tags: Option<&str>) -> Result<bool> {
        changed(
            self.write(Write::Trust(TrustWrite::RemoveGolden {
                repository: repository.as_str().to_owned(),
                tags: tags.unwrap_or_default().to_owned(),
            }))
            .await,
        )
    }

    async fn golden_images(&self) -> Result<Vec<GoldenImage>> {
        let rows: Vec<crate::rows::GoldenRow> = sqlx::query_as(
            "SELECT repository, tags, added_by, added_at FROM golden_images
             ORDER BY repository, tags",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.into_iter().map(crate::rows::golden).collect()
    }

    async fn set_namespace_mark(&self, namespace: &str, mark: Option<&str>) -> Result<()> {
        self.write(Write::Trust(TrustWrite::SetMark {
            namespace: namespace.to_owned(),
            mark: mark.map(str::to_owned),
        }))
        .await
        .map(drop)
    }

    async fn namespace_marks(&self) -> Result<Vec<(String, String)>> {
        sqlx::query_as("SELECT namespace, mark FROM namespace_marks ORDER BY namespace")
            .fetch_all(&self.reader)
            .await
            .map_err(backend)
    }

    async fn record_push_warning(
        &self,
        repository: &RepoName,
        digest: &Digest,
        message: &str,
        actor: &str,
    ) -> Result<()> {
        self.write(Write::Trust(TrustWrite::Warn {
            repository: repository.as_str().to_owned(),
            digest: digest.to_string(),
            message: message.to_owned(),
            actor: actor.to_owned(),
        }))
        .await
        .map(drop)
    }

    async fn push_warnings(&self, repository: &RepoName, limit: u32) -> Result<Vec<PushWarning>> {
        let rows: Vec<crate::rows::WarningRow> = sqlx::query_as(
            "SELECT id, digest, message, actor, at FROM push_warnings
             WHERE repository = ? ORDER BY id DESC LIMIT ?",
        )
        .bind(repository.as_str())
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.into_iter()
            .map(|row| crate::rows::warning(repository, row))
            .collect()
    }

    async fn list_tags(
        &self,
        repository: &RepoName,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Option<Page>> {
        let repo_id: Option<i64> = sqlx::query_scalar("SELECT id FROM repositories WHERE name = ?")
            .bind(repository.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        let Some(repo_id) = repo_id else {
            return Ok(None);
        };
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM tags WHERE repository_id = ? AND name > ? ORDER BY name LIMIT ?",
        )
        .bind(repo_id)
        .bind(last.unwrap_or(""))
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(Some(into_page(names, limit)))
    }

    async fn referrers(
        &self,
        repository: &RepoName,
        digest: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Referrer>> {
        let rows = sqlx::query(
            "SELECT m.digest, m.media_type, length(m.body) AS size, m.artifact_type, m.annotations
             FROM manifests m JOIN repositories r ON r.id = m.repository_id
             WHERE r.name = ? AND m.subject = ? AND (? IS NULL OR m.artifact_type = ?)
             ORDER BY m.digest",
        )
        .bind(repository.as_str())
        .bind(digest.to_string())
        .bind(artifact_type)
        .bind(artifact_type)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        rows.iter()
            .map(|row| {
                let digest: String = row.try_get("digest").map_err(backend)?;
                let size: i64 = row.try_get("size").map_err(backend)?;
                Ok(Referrer {
                    digest: parse_digest(&digest)?,
                    media_type: row.try_get("media_type").map_err(backend)?,
                    size: size as u64,
                    artifact_type: row.try_get("artifact_type").map_err(backend)?,
                    annotations: row.try_get("annotations").map_err(backend)?,
                })
            })
            .collect()
    }

    async fn list_repositories(&self, last: Option<&str>, limit: u32) -> Result<Page> {
        self.list_repositories_page(last.unwrap_or(""), limit).await
    }

    async fn repository_usage(
        &self,
        namespace: Option<&str>,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Vec<RepositoryUsage>> {
        gc::repository_usage(&self.reader, namespace, last, limit).await
    }

    async fn namespace_usage(&self, namespace: &str) -> Result<u64> {
        gc::namespace_usage(&self.reader, namespace).await
    }

    async fn stored_bytes(&self) -> Result<u64> {
        gc::stored_bytes(&self.reader).await
    }

    async fn check(&self) -> Result<()> {
        if let Some((path, opened)) = &self.file {
            match file_identity(path) {
                Ok(now) if now == *opened => {}
                Ok(_) => {
                    return Err(backend(std::io::Error::other(format!(
                        "{} was replaced",
                        path.display()
                    ))));
                }
                Err(e) => {
                    return Err(backend(std::io::Error::other(format!(
                        "{}: {e}",
                        path.display()
                    ))));
                }
            }
        }
        sqlx::query("SELECT 1")
            .execute(&self.reader)
            .await
            .map(drop)
            .map_err(backend)
    }

    async fn gc_candidates(
        &self,
        cutoffs: &GcCutoffs,
        after: Option<&Digest>,
        limit: u32,
    ) -> Result<Vec<GcBlob>> {
        gc::candidates(&self.reader, cutoffs, after, limit).await
    }

    async fn gc_claim_blobs(&self, cutoffs: &GcCutoffs, limit: u32) -> Result<Vec<GcBlob>> {
        let write = Write::Gc(GcWrite::ClaimBlobs {
            cutoffs: *cutoffs,
            limit,
        });
        match self.write(write).await? {
            Outcome::Blobs(claimed) => Ok(claimed),
            _ => Ok(Vec::new()),
        }
    }

    async fn gc_forget_blobs(&self, digests: &[Digest]) -> Result<()> {
        let write = Write::Gc(GcWrite::Forget {
            digests: digests.to_vec(),
        });
        self.write(write).await.map(drop)
    }

    async fn gc_blob_known(&self, digest: &Digest) -> Result<bool> {
        gc::blob_known(&self.reader, digest).await
    }

    async fn gc_claim_orphan(&self, digest: &Digest, size: u64) -> Result<bool> {
        changed(
            self.write(Write::Gc(GcWrite::ClaimOrphan {
                digest: digest.clone(),
                size,
            }))
            .await,
        )
    }

    async fn gc_stale_links(&self, cutoffs: &GcCutoffs, dry_run: bool) -> Result<u64> {
        if dry_run {
            return gc::stale_links(&self.reader, cutoffs).await;
        }
        match self
            .write(Write::Gc(GcWrite::StaleLinks { cutoffs: *cutoffs }))
            .await?
        {
            Outcome::Number(n) => Ok(n.unwrap_or(0) as u64),
            _ => Ok(0),
        }
    }

    async fn gc_untagged_manifests(
        &self,
        scopes: &[String],
        cutoffs: &GcCutoffs,
        dry_run: bool,
    ) -> Result<Vec<(RepoName, Digest)>> {
        if dry_run {
            return gc::untagged(&self.reader, scopes, cutoffs).await;
        }
        let write = Write::Gc(GcWrite::Untagged {
            scopes: scopes.to_vec(),
            cutoffs: *cutoffs,
        });
        match self.write(write).await? {
            Outcome::Manifests(removed) => Ok(removed),
            _ => Ok(Vec::new()),
        }
    }
}

impl SqliteMetaStore {
    async fn list_repositories_page(&self, last: &str, limit: u32) -> Result<Page> {
        let names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM repositories WHERE name > ? ORDER BY name LIMIT ?",
        )
        .bind(last)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
        .await
        .map_err(backend)?;
        Ok(into_page(names, limit))
    }
}

#[cfg(test)]
mod contract {
    crate::testsuite::meta_store_contract!(super::tests::scratch());
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testsuite::Scratch;
    use crate::{AccountStore, Member};

    /// A database file in a temporary directory of its own.
    pub(crate) struct SqliteScratch {
        _dir: tempfile::TempDir,
        url: String,
    }

    pub(crate) async fn scratch() -> SqliteScratch {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("meta.db").display());
        SqliteScratch { _dir: dir, url }
    }

    #[async_trait]
    impl Scratch for SqliteScratch {
        async fn open(&self) -> Arc<dyn MetaStore> {
            Arc::new(SqliteMetaStore::open(&self.url).await.unwrap())
        }

        async fn remove(self) {}
    }

    #[tokio::test]
    async fn reopening_applies_no_migration_twice() {
        let scratch = scratch().await;
        let store = SqliteMetaStore::open(&scratch.url).await.unwrap();
        store
            .create_user(&"alice".parse().unwrap(), "h", false)
            .await
            .unwrap();
        drop(store);
        let store = SqliteMetaStore::open(&scratch.url).await.unwrap();
        assert!(store.user("alice").await.unwrap().is_some());
    }

    /// A database from before the `user` columns were renamed keeps its members and
    /// tokens.
    #[tokio::test]
    async fn renaming_the_user_columns_keeps_the_rows() {
        let scratch = scratch().await;
        let options = SqliteConnectOptions::from_str(&scratch.url)
            .unwrap()
            .create_if_missing(true);
        let mut conn = options.connect().await.unwrap();
        for sql in &MIGRATIONS[..4] {
            sqlx::raw_sql(*sql).execute(&mut conn).await.unwrap();
        }
        sqlx::raw_sql(
            "PRAGMA user_version = 4;
             INSERT INTO namespaces (name, kind, created_at) VALUES ('ann', 'user', 1), ('crew', 'org', 1);
             INSERT INTO users (name, password_hash, created_at) VALUES ('ann', 'h', 1);
             INSERT INTO org_members (org, user, role) VALUES ('crew', 'ann', 'write');
             INSERT INTO access_tokens (id, user, name, secret_hash, scope, created_at)
               VALUES ('t1', 'ann', 'laptop', 'sh', 'read', 1);",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        drop(conn);
        let store = SqliteMetaStore::open(&scratch.url).await.unwrap();
        assert_eq!(
            store.members("crew").await.unwrap().unwrap(),
            [Member {
                user: "ann".parse().unwrap(),
                role: berth_core::Role::Write
            }]
        );
        let token = store.token_by_secret_hash("sh").await.unwrap().unwrap();
        assert_eq!((token.id.as_str(), token.user.as_str()), ("t1", "ann"));
    }
}
