//! The PostgreSQL side of [`AccountStore`], parallel to the SQLite one: reads on the
//! pool, each write one transaction.
//!
//! Safe with many writers: a name is claimed by inserting its `namespaces` row (`ON
//! CONFLICT DO NOTHING`, so of two claims one wins and the other then sees who holds
//! it); a write that needs a user locks the user's row (`FOR KEY SHARE`), and removing a
//! user locks it first (`FOR UPDATE`), so no token, session or membership is added to a
//! user being removed.

use async_trait::async_trait;
use berth_core::{AccountName, Relation, RepoName, RepositoryFacts, Role, TokenScope};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::{PgMetaStore, backend, corrupt, into_page, now};
use crate::accounts::{
    AccessToken, AccountRefusal, AccountStore, Member, Namespace, NamespaceKind, Org, SignInWindow,
    User, Viewer, WebSession,
};
use crate::{Page, Result};

async fn exists(conn: &mut PgConnection, sql: &'static str, args: &[&str]) -> Result<bool> {
    let mut query = sqlx::query_scalar::<_, i32>(sql);
    for arg in args {
        query = query.bind(*arg);
    }
    Ok(query
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?
        .is_some())
}

/// Whether user `name` exists, locking the row until the commit so that the user stays
/// while rows referring to them are written (their removal waits).
async fn lock_user(conn: &mut PgConnection, name: &str) -> Result<bool> {
    exists(
        conn,
        "SELECT 1 FROM users WHERE name = $1 FOR KEY SHARE",
        &[name],
    )
    .await
}

async fn init_setting(conn: &mut PgConnection, key: &str, value: &str) -> Result<String> {
    sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
        .bind(key)
        .bind(value)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
        .bind(key)
        .fetch_one(&mut *conn)
        .await
        .map_err(backend)
}

async fn set_setting(conn: &mut PgConnection, key: &str, value: &str) -> Result<()> {
    sqlx::query(
        "INSERT INTO settings (key, value) VALUES ($1, $2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value
         WHERE settings.value <> excluded.value",
    )
    .bind(key)
    .bind(value)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

async fn create_user(
    conn: &mut PgConnection,
    name: &str,
    hash: &str,
    admin: bool,
) -> std::result::Result<(), AccountRefusal> {
    let t = now();
    // Claim the name first (SQLite checks first: it has one writer); a claim racing
    // this one makes it wait, and then it sees whose the name is.
    let claimed = sqlx::query(
        "INSERT INTO namespaces (name, kind, created_at) VALUES ($1, 'user', $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(t)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if claimed.rows_affected() == 0 {
        let kind: Option<String> =
            sqlx::query_scalar("SELECT kind FROM namespaces WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *conn)
                .await
                .map_err(backend)?;
        let user_exists = exists(conn, "SELECT 1 FROM users WHERE name = $1", &[name]).await?;
        return Err(match kind.as_deref() {
            Some("user") if !user_exists => AccountRefusal::NameRetired(name.to_owned()),
            _ => AccountRefusal::NameTaken(name.to_owned()),
        });
    }
    insert_user(conn, name, hash, admin, t).await?;
    Ok(())
}

async fn create_first_admin(
    conn: &mut PgConnection,
    name: &str,
    hash: &str,
    marker: &str,
) -> Result<bool> {
    let t = now();
    // The marker's row is the lock: a node racing this one waits for it here, and then
    // finds it set.
    let first =
        sqlx::query("INSERT INTO settings (key, value) VALUES ($1, '1') ON CONFLICT DO NOTHING")
            .bind(marker)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    if first.rows_affected() == 0 {
        return Ok(false);
    }
    // A name used before (a user, removed or not, or an organization) stays theirs.
    let claimed = sqlx::query(
        "INSERT INTO namespaces (name, kind, created_at) VALUES ($1, 'user', $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(t)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if claimed.rows_affected() == 0 {
        return Ok(false);
    }
    insert_user(conn, name, hash, true, t).await?;
    Ok(true)
}

/// The `users` row of a user whose namespace row is written already.
async fn insert_user(
    conn: &mut PgConnection,
    name: &str,
    hash: &str,
    admin: bool,
    t: i64,
) -> Result<()> {
    // A random first epoch: sign-ins of an earlier user of the same name never match a
    // new one.
    sqlx::query(
        "INSERT INTO users (name, password_hash, admin, credentials_epoch, created_at)
         VALUES ($1, $2, $3, floor(random() * 1000000000000)::BIGINT, $4)",
    )
    .bind(name)
    .bind(hash)
    .bind(admin)
    .bind(t)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

async fn set_password(conn: &mut PgConnection, name: &str, hash: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE users SET password_hash = $1, credentials_epoch = credentials_epoch + 1
         WHERE name = $2",
    )
    .bind(hash)
    .bind(name)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    sqlx::query("DELETE FROM web_sessions WHERE username = $1 AND epoch IS NOT NULL")
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

async fn delete_user(conn: &mut PgConnection, name: &str) -> Result<bool> {
    // Locked first: a token, session or membership being added for this user is waited
    // for (and then deleted below), and one that comes later finds no user.
    exists(
        conn,
        "SELECT 1 FROM users WHERE name = $1 FOR UPDATE",
        &[name],
    )
    .await?;
    for sql in [
        "DELETE FROM web_sessions WHERE username = $1",
        "DELETE FROM access_tokens WHERE username = $1",
        "DELETE FROM org_members WHERE username = $1",
    ] {
        sqlx::query(sql)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
    }
    let done = sqlx::query("DELETE FROM users WHERE name = $1")
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

async fn create_org(
    conn: &mut PgConnection,
    name: &str,
    owner: &str,
) -> std::result::Result<(), AccountRefusal> {
    if !lock_user(conn, owner).await? {
        return Err(AccountRefusal::UnknownUser(owner.to_owned()));
    }
    let done = sqlx::query(
        "INSERT INTO namespaces (name, kind, created_at) VALUES ($1, 'org', $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(now())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    if done.rows_affected() == 0 {
        return Err(AccountRefusal::NameTaken(name.to_owned()));
    }
    sqlx::query("INSERT INTO org_members (org, username, role) VALUES ($1, $2, 'admin')")
        .bind(name)
        .bind(owner)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

async fn set_member(
    conn: &mut PgConnection,
    org: &str,
    user: &str,
    role: Role,
) -> std::result::Result<(), AccountRefusal> {
    // Namespaces are never removed: no lock needed to keep the organization.
    let is_org = exists(
        conn,
        "SELECT 1 FROM namespaces WHERE name = $1 AND kind = 'org'",
        &[org],
    )
    .await?;
    if !is_org {
        return Err(AccountRefusal::UnknownOrg(org.to_owned()));
    }
    if !lock_user(conn, user).await? {
        return Err(AccountRefusal::UnknownUser(user.to_owned()));
    }
    sqlx::query(
        "INSERT INTO org_members (org, username, role) VALUES ($1, $2, $3)
         ON CONFLICT (org, username) DO UPDATE SET role = excluded.role",
    )
    .bind(org)
    .bind(user)
    .bind(role.as_str())
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

async fn remove_member(conn: &mut PgConnection, org: &str, user: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM org_members WHERE org = $1 AND username = $2")
        .bind(org)
        .bind(user)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

async fn set_namespace_default(
    conn: &mut PgConnection,
    name: &str,
    public: Option<bool>,
) -> Result<bool> {
    let done = sqlx::query("UPDATE namespaces SET default_public = $1 WHERE name = $2")
        .bind(public)
        .bind(name)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

async fn set_repository_visibility(
    conn: &mut PgConnection,
    repository: &RepoName,
    public: bool,
) -> Result<()> {
    let id = super::writes::ensure_repository(conn, repository, now()).await?;
    sqlx::query("UPDATE repositories SET public = $1 WHERE id = $2")
        .bind(public)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

async fn create_token(
    conn: &mut PgConnection,
    token: &AccessToken,
) -> std::result::Result<(), AccountRefusal> {
    let user = token.user.as_str();
    if !lock_user(conn, user).await? {
        return Err(AccountRefusal::UnknownUser(user.to_owned()));
    }
    sqlx::query(
        "INSERT INTO access_tokens
           (id, username, name, secret_hash, scope, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&token.id)
    .bind(user)
    .bind(&token.name)
    .bind(&token.secret_hash)
    .bind(token.scope.as_str())
    .bind(token.created_at)
    .bind(token.expires_at)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

async fn revoke_token(conn: &mut PgConnection, id: &str) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE access_tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
    )
    .bind(now())
    .bind(id)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

async fn touch_token(conn: &mut PgConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE access_tokens SET last_used_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

async fn create_web_session(
    conn: &mut PgConnection,
    session: &WebSession,
) -> std::result::Result<(), AccountRefusal> {
    let user = session.user.as_str();
    if !lock_user(conn, user).await? {
        return Err(AccountRefusal::UnknownUser(user.to_owned()));
    }
    sqlx::query(
        "INSERT INTO web_sessions (id, username, secret_hash, epoch, token_id,
           created_at, expires_at, last_seen_at, client, user_agent)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&session.id)
    .bind(user)
    .bind(&session.secret_hash)
    .bind(session.epoch)
    .bind(&session.token_id)
    .bind(session.created_at)
    .bind(session.expires_at)
    .bind(session.last_seen_at)
    .bind(&session.client)
    .bind(&session.user_agent)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(())
}

async fn delete_web_session(conn: &mut PgConnection, id: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM web_sessions WHERE id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

async fn delete_web_sessions(conn: &mut PgConnection, user: &str) -> Result<bool> {
    let done = sqlx::query("DELETE FROM web_sessions WHERE username = $1")
        .bind(user)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

async fn touch_web_session(conn: &mut PgConnection, id: &str, now: i64) -> Result<()> {
    sqlx::query("UPDATE web_sessions SET last_seen_at = $1 WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

async fn expire_web_sessions(conn: &mut PgConnection, now: i64) -> Result<()> {
    sqlx::query("DELETE FROM web_sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(())
}

/// Counts an attempt in one statement: `ON CONFLICT DO UPDATE` locks the key's row (or
/// waits for the twin that is inserting it), and the window starts over in the same
/// statement if it has ended, so attempts counted at once each get a count of their own.
async fn count_sign_in_attempt(
    conn: &mut PgConnection,
    key: &str,
    cutoff: i64,
    now: i64,
) -> Result<SignInWindow> {
    let row = sqlx::query(
        "INSERT INTO sign_in_attempts AS a (key, window_start, attempts) VALUES ($1, $2, 1)
         ON CONFLICT (key) DO UPDATE SET
           attempts = CASE WHEN a.window_start <= $3 THEN 1 ELSE a.attempts + 1 END,
           window_start = CASE WHEN a.window_start <= $3 THEN excluded.window_start
                               ELSE a.window_start END
         RETURNING attempts, window_start",
    )
    .bind(key)
    .bind(now)
    .bind(cutoff)
    .fetch_one(&mut *conn)
    .await
    .map_err(backend)?;
    sign_in_window(&row)
}

async fn forgive_sign_in(conn: &mut PgConnection, key: &str, started_at: i64) -> Result<bool> {
    let done = sqlx::query(
        "UPDATE sign_in_attempts SET attempts = attempts - 1
         WHERE key = $1 AND window_start = $2 AND attempts > 0",
    )
    .bind(key)
    .bind(started_at)
    .execute(&mut *conn)
    .await
    .map_err(backend)?;
    Ok(done.rows_affected() > 0)
}

async fn sweep_sign_in_windows(conn: &mut PgConnection, cutoff: i64) -> Result<u64> {
    let done = sqlx::query("DELETE FROM sign_in_attempts WHERE window_start <= $1")
        .bind(cutoff)
        .execute(&mut *conn)
        .await
        .map_err(backend)?;
    Ok(done.rows_affected())
}

fn sign_in_window(row: &PgRow) -> Result<SignInWindow> {
    let attempts: i64 = row.try_get("attempts").map_err(backend)?;
    Ok(SignInWindow {
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        started_at: row.try_get("window_start").map_err(backend)?,
    })
}

fn account_name(s: String) -> Result<AccountName> {
    s.parse()
        .map_err(|e| corrupt(format!("stored account name: {e}")))
}

fn user_from_row(row: &PgRow) -> Result<User> {
    Ok(User {
        name: account_name(row.try_get("name").map_err(backend)?)?,
        password_hash: row.try_get("password_hash").map_err(backend)?,
        admin: row.try_get("admin").map_err(backend)?,
        credentials_epoch: row.try_get("credentials_epoch").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
    })
}

fn token_from_row(row: &PgRow) -> Result<AccessToken> {
    let scope: String = row.try_get("scope").map_err(backend)?;
    Ok(AccessToken {
        id: row.try_get("id").map_err(backend)?,
        user: account_name(row.try_get("username").map_err(backend)?)?,
        name: row.try_get("name").map_err(backend)?,
        secret_hash: row.try_get("secret_hash").map_err(backend)?,
        scope: scope
            .parse::<TokenScope>()
            .map_err(|e| corrupt(format!("stored token scope: {e}")))?,
        created_at: row.try_get("created_at").map_err(backend)?,
        expires_at: row.try_get("expires_at").map_err(backend)?,
        last_used_at: row.try_get("last_used_at").map_err(backend)?,
        revoked_at: row.try_get("revoked_at").map_err(backend)?,
    })
}

const USER_COLUMNS: &str = "name, password_hash, admin, credentials_epoch, created_at";
fn web_session_from_row(row: &PgRow) -> Result<WebSession> {
    Ok(WebSession {
        id: row.try_get("id").map_err(backend)?,
        user: account_name(row.try_get("username").map_err(backend)?)?,
        secret_hash: row.try_get("secret_hash").map_err(backend)?,
        epoch: row.try_get("epoch").map_err(backend)?,
        token_id: row.try_get("token_id").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
        expires_at: row.try_get("expires_at").map_err(backend)?,
        last_seen_at: row.try_get("last_seen_at").map_err(backend)?,
        client: row.try_get("client").map_err(backend)?,
        user_agent: row.try_get("user_agent").map_err(backend)?,
    })
}

const WEB_SESSION_COLUMNS: &str = "id, username, secret_hash, epoch, token_id, created_at, \
     expires_at, last_seen_at, client, user_agent";

const TOKEN_COLUMNS: &str =
    "id, username, name, secret_hash, scope, created_at, expires_at, last_used_at, revoked_at";

#[async_trait]
impl AccountStore for PgMetaStore {
    async fn setting(&self, key: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        transaction!(self, |conn| init_setting(conn, key, value).await)
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        statement!(self, |conn| set_setting(conn, key, value).await)
    }

    async fn create_user(
        &self,
        name: &AccountName,
        password_hash: &str,
        admin: bool,
    ) -> std::result::Result<(), AccountRefusal> {
        transaction!(self, |conn| {
            create_user(conn, name.as_str(), password_hash, admin).await
        })
    }

    async fn create_first_admin(
        &self,
        name: &AccountName,
        password_hash: &str,
        marker: &str,
    ) -> Result<bool> {
        transaction!(self, |conn| {
            create_first_admin(conn, name.as_str(), password_hash, marker).await
        })
    }

    async fn user(&self, name: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        transaction!(self, |conn| set_password(conn, name, password_hash).await)
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        transaction!(self, |conn| delete_user(conn, name).await)
    }

    async fn create_org(
        &self,
        name: &AccountName,
        owner: &str,
    ) -> std::result::Result<(), AccountRefusal> {
        transaction!(self, |conn| create_org(conn, name.as_str(), owner).await)
    }

    async fn list_orgs(&self) -> Result<Vec<Org>> {
        let rows =
            sqlx::query("SELECT name, created_at FROM namespaces WHERE kind = 'org' ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        rows.iter()
            .map(|row| {
                Ok(Org {
                    name: account_name(row.try_get("name").map_err(backend)?)?,
                    created_at: row.try_get("created_at").map_err(backend)?,
                })
            })
            .collect()
    }

    async fn members(&self, org: &str) -> Result<Option<Vec<Member>>> {
        let is_org: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM namespaces WHERE name = $1 AND kind = 'org'")
                .bind(org)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        if is_org.is_none() {
            return Ok(None);
        }
        let rows =
            sqlx::query("SELECT username, role FROM org_members WHERE org = $1 ORDER BY username")
                .bind(org)
                .fetch_all(&self.pool)
                .await
                .map_err(backend)?;
        let members = rows
            .iter()
            .map(|row| {
                let role: String = row.try_get("role").map_err(backend)?;
                Ok(Member {
                    user: account_name(row.try_get("username").map_err(backend)?)?,
                    role: role
                        .parse()
                        .map_err(|e| corrupt(format!("stored role: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Some(members))
    }

    async fn set_member(
        &self,
        org: &str,
        user: &str,
        role: Role,
    ) -> std::result::Result<(), AccountRefusal> {
        transaction!(self, |conn| set_member(conn, org, user, role).await)
    }

    async fn remove_member(&self, org: &str, user: &str) -> Result<bool> {
        statement!(self, |conn| remove_member(conn, org, user).await)
    }

    async fn namespace(&self, name: &str) -> Result<Option<Namespace>> {
        let row = sqlx::query("SELECT name, kind, default_public FROM namespaces WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        let Some(row) = row else { return Ok(None) };
        let kind: String = row.try_get("kind").map_err(backend)?;
        Ok(Some(Namespace {
            name: row.try_get("name").map_err(backend)?,
            kind: if kind == "org" {
                NamespaceKind::Org
            } else {
                NamespaceKind::User
            },
            default_public: row.try_get("default_public").map_err(backend)?,
        }))
    }

    async fn set_namespace_default(&self, name: &str, public: Option<bool>) -> Result<bool> {
        statement!(self, |conn| {
            set_namespace_default(conn, name, public).await
        })
    }

    async fn repository_visibility(&self, repository: &RepoName) -> Result<Option<bool>> {
        sqlx::query_scalar("SELECT public FROM repositories WHERE name = $1")
            .bind(repository.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)
    }

    async fn set_repository_visibility(&self, repository: &RepoName, public: bool) -> Result<()> {
        transaction!(self, |conn| {
            set_repository_visibility(conn, repository, public).await
        })
    }

    async fn repository_facts(
        &self,
        repository: &RepoName,
        user: Option<&str>,
    ) -> Result<RepositoryFacts> {
        let namespace = repository.namespace();
        let row = sqlx::query(
            "SELECT
               (SELECT public FROM repositories WHERE name = $1) AS public,
               (SELECT 1 FROM users WHERE name = $2 AND name = $3) AS owner,
               (SELECT role FROM org_members WHERE org = $2 AND username = $3) AS role",
        )
        .bind(repository.as_str())
        .bind(namespace)
        .bind(user)
        .fetch_one(&self.pool)
        .await
        .map_err(backend)?;
        let public: Option<bool> = row.try_get("public").map_err(backend)?;
        let owner: Option<i32> = row.try_get("owner").map_err(backend)?;
        let role: Option<String> = row.try_get("role").map_err(backend)?;
        let relation = match (owner, role) {
            (Some(_), _) => Relation::Owner,
            (None, Some(role)) => Relation::Member(
                role.parse()
                    .map_err(|e| corrupt(format!("stored role: {e}")))?,
            ),
            (None, None) => Relation::None,
        };
        Ok(RepositoryFacts {
            exists: public.is_some(),
            public: public.unwrap_or(false),
            relation,
        })
    }

    async fn visible_repositories(
        &self,
        viewer: Viewer<'_>,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Page> {
        let last = last.unwrap_or("");
        let fetch = i64::from(limit) + 1;
        let query = match viewer {
            Viewer::All => return self.list_repositories_page(last, limit).await,
            Viewer::Anonymous => sqlx::query_scalar(
                "SELECT name FROM repositories WHERE public AND name > $1 ORDER BY name LIMIT $2",
            )
            .bind(last)
            .bind(fetch),
            // The namespace is the text before the first '/' (or the whole name).
            Viewer::User(user) => sqlx::query_scalar(
                "SELECT name FROM repositories
                 WHERE name > $1 AND (public OR
                   split_part(name, '/', 1) IN (
                     SELECT name FROM users WHERE name = $2
                     UNION SELECT org FROM org_members WHERE username = $2))
                 ORDER BY name LIMIT $3",
            )
            .bind(last)
            .bind(user)
            .bind(fetch),
        };
        let names: Vec<String> = query.fetch_all(&self.pool).await.map_err(backend)?;
        Ok(into_page(names, limit))
    }

    async fn create_token(&self, token: &AccessToken) -> std::result::Result<(), AccountRefusal> {
        transaction!(self, |conn| create_token(conn, token).await)
    }

    async fn token_by_secret_hash(&self, secret_hash: &str) -> Result<Option<AccessToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE secret_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn token(&self, id: &str) -> Result<Option<AccessToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self, user: &str) -> Result<Vec<AccessToken>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE username = $1
             ORDER BY created_at DESC, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str) -> Result<bool> {
        statement!(self, |conn| revoke_token(conn, id).await)
    }

    async fn touch_token(&self, id: &str, now: i64) -> Result<()> {
        statement!(self, |conn| touch_token(conn, id, now).await)
    }

    async fn create_web_session(
        &self,
        session: &WebSession,
    ) -> std::result::Result<(), AccountRefusal> {
        transaction!(self, |conn| create_web_session(conn, session).await)
    }

    async fn web_session_by_secret_hash(&self, secret_hash: &str) -> Result<Option<WebSession>> {
        let sql = format!("SELECT {WEB_SESSION_COLUMNS} FROM web_sessions WHERE secret_hash = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(secret_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        row.as_ref().map(web_session_from_row).transpose()
    }

    async fn web_sessions(&self, user: &str, now: i64) -> Result<Vec<WebSession>> {
        let sql = format!(
            "SELECT {WEB_SESSION_COLUMNS} FROM web_sessions WHERE username = $1 AND expires_at > $2
             ORDER BY created_at DESC, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user)
            .bind(now)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        rows.iter().map(web_session_from_row).collect()
    }

    async fn delete_web_session(&self, id: &str) -> Result<bool> {
        statement!(self, |conn| delete_web_session(conn, id).await)
    }

    async fn delete_web_sessions(&self, user: &str) -> Result<bool> {
        statement!(self, |conn| delete_web_sessions(conn, user).await)
    }

    async fn touch_web_session(&self, id: &str, now: i64) -> Result<()> {
        statement!(self, |conn| touch_web_session(conn, id, now).await)
    }

    async fn expire_web_sessions(&self, now: i64) -> Result<()> {
        statement!(self, |conn| expire_web_sessions(conn, now).await)
    }

    async fn count_sign_in_attempt(
        &self,
        key: &str,
        window_start_cutoff: i64,
        now: i64,
    ) -> Result<SignInWindow> {
        statement!(self, |conn| count_sign_in_attempt(
            conn,
            key,
            window_start_cutoff,
            now
        )
        .await)
    }

    async fn sign_in_windows(
        &self,
        keys: &[&str],
        window_start_cutoff: i64,
    ) -> Result<Vec<Option<SignInWindow>>> {
        let rows = sqlx::query(
            "SELECT key, attempts, window_start FROM sign_in_attempts
             WHERE key = ANY($1) AND window_start > $2",
        )
        .bind(keys)
        .bind(window_start_cutoff)
        .fetch_all(&self.pool)
        .await
        .map_err(backend)?;
        let mut windows = vec![None; keys.len()];
        for row in &rows {
            let key: String = row.try_get("key").map_err(backend)?;
            let window = sign_in_window(row)?;
            for (slot, wanted) in windows.iter_mut().zip(keys) {
                if *wanted == key {
                    *slot = Some(window);
                }
            }
        }
        Ok(windows)
    }

    async fn forgive_sign_in(&self, key: &str, started_at: i64) -> Result<bool> {
        statement!(self, |conn| forgive_sign_in(conn, key, started_at).await)
    }

    async fn sweep_sign_in_windows(&self, window_start_cutoff: i64) -> Result<u64> {
        statement!(self, |conn| sweep_sign_in_windows(
            conn,
            window_start_cutoff
        )
        .await)
    }
}
