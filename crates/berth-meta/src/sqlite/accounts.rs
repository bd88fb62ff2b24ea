//! The SQLite side of [`AccountStore`]: reads on the reader pool, writes through the
//! writer task like every other write (so account changes share its group commit).

use async_trait::async_trait;
use berth_core::{AccountName, Relation, RepoName, RepositoryFacts, Role, TokenScope};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, SqliteConnection};

use super::writes::{Outcome, Write};
use super::{SqliteMetaStore, backend, changed, corrupt, into_page, now};
use crate::accounts::{
    AccessToken, AccountRefusal, AccountStore, Member, Namespace, NamespaceKind, Org, SignInWindow,
    User, Viewer, WebSession,
};
use crate::{Page, Result};

/// One account change, owned, to run on the writer task.
pub(super) enum AccountWrite {
    InitSetting {
        key: String,
        value: String,
    },
    SetSetting {
        key: String,
        value: String,
    },
    CreateUser {
        name: String,
        hash: String,
        admin: bool,
    },
    CreateFirstAdmin {
        name: String,
        hash: String,
        marker: String,
    },
    SetPassword {
        name: String,
        hash: String,
    },
    DeleteUser {
        name: String,
    },
    CreateOrg {
        name: String,
        owner: String,
    },
    SetMember {
        org: String,
        user: String,
        role: Role,
    },
    RemoveMember {
        org: String,
        user: String,
    },
    SetNamespaceDefault {
        name: String,
        public: Option<bool>,
    },
    SetRepositoryVisibility {
        repository: RepoName,
        public: bool,
    },
    CreateToken(AccessToken),
    RevokeToken {
        id: String,
    },
    TouchToken {
        id: String,
        now: i64,
    },
    CreateWebSession(WebSession),
    DeleteWebSession {
        id: String,
    },
    DeleteWebSessions {
        user: String,
    },
    TouchWebSession {
        id: String,
        now: i64,
    },
    ExpireWebSessions {
        now: i64,
    },
    SignIn(SignInWrite),
}

/// A change to the failed-sign-in counts (committed without fsync when alone: see
/// `writes::needs_fsync`).
pub(super) enum SignInWrite {
    Count { key: String, cutoff: i64, now: i64 },
    Forgive { key: String, started_at: i64 },
    Sweep { cutoff: i64 },
}

fn refused(refusal: AccountRefusal) -> Result<Outcome> {
    Ok(Outcome::AccountRefused(refusal))
}

async fn exists(conn: &mut SqliteConnection, sql: &'static str, args: &[&str]) -> Result<bool> {
    let mut query = sqlx::query_scalar::<_, i64>(sql);
    for arg in args {
        query = query.bind(*arg);
    }
    Ok(query
        .fetch_optional(&mut *conn)
        .await
        .map_err(backend)?
        .is_some())
}

pub(super) async fn apply(conn: &mut SqliteConnection, write: &AccountWrite) -> Result<Outcome> {
    let t = now();
    match write {
        AccountWrite::InitSetting { key, value } => {
            sqlx::query("INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT DO NOTHING")
                .bind(key)
                .bind(value)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            let stored: String = sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
                .bind(key)
                .fetch_one(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Value(stored))
        }
        AccountWrite::SetSetting { key, value } => {
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES (?, ?)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value
                 WHERE settings.value <> excluded.value",
            )
            .bind(key)
            .bind(value)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            Ok(Outcome::Done)
        }
        AccountWrite::CreateUser { name, hash, admin } => {
            let kind: Option<String> =
                sqlx::query_scalar("SELECT kind FROM namespaces WHERE name = ?")
                    .bind(name)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(backend)?;
            let user_exists =
                exists(conn, "SELECT 1 FROM users WHERE name = ?", &[name.as_str()]).await?;
            match kind.as_deref() {
                Some(_) if user_exists => return refused(AccountRefusal::NameTaken(name.clone())),
                Some("user") => return refused(AccountRefusal::NameRetired(name.clone())),
                Some(_) => return refused(AccountRefusal::NameTaken(name.clone())),
                None => {
                    sqlx::query(
                        "INSERT INTO namespaces (name, kind, created_at) VALUES (?, 'user', ?)",
                    )
                    .bind(name)
                    .bind(t)
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
                }
            }
            insert_user(conn, name, hash, *admin, t).await?;
            Ok(Outcome::Done)
        }
        AccountWrite::CreateFirstAdmin { name, hash, marker } => {
            let first = sqlx::query(
                "INSERT INTO settings (key, value) VALUES (?, '1') ON CONFLICT DO NOTHING",
            )
            .bind(marker)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            if first.rows_affected() == 0 {
                return Ok(Outcome::Changed(false));
            }
            // A name used before (a user, removed or not, or an organization) stays theirs.
            let claimed = sqlx::query(
                "INSERT INTO namespaces (name, kind, created_at) VALUES (?, 'user', ?)
                 ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(t)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            if claimed.rows_affected() == 0 {
                return Ok(Outcome::Changed(false));
            }
            insert_user(conn, name, hash, true, t).await?;
            Ok(Outcome::Changed(true))
        }
        AccountWrite::SetPassword { name, hash } => {
            let done = sqlx::query(
                "UPDATE users SET password_hash = ?, credentials_epoch = credentials_epoch + 1
                 WHERE name = ?",
            )
            .bind(hash)
            .bind(name)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            sqlx::query("DELETE FROM web_sessions WHERE username = ? AND epoch IS NOT NULL")
                .bind(name)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() > 0))
        }
        AccountWrite::DeleteUser { name } => {
            for sql in [
                "DELETE FROM web_sessions WHERE username = ?",
                "DELETE FROM access_tokens WHERE username = ?",
                "DELETE FROM org_members WHERE username = ?",
            ] {
                sqlx::query(sql)
                    .bind(name)
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
            }
            let done = sqlx::query("DELETE FROM users WHERE name = ?")
                .bind(name)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() > 0))
        }
        AccountWrite::CreateOrg { name, owner } => {
            if !exists(
                conn,
                "SELECT 1 FROM users WHERE name = ?",
                &[owner.as_str()],
            )
            .await?
            {
                return refused(AccountRefusal::UnknownUser(owner.clone()));
            }
            let done = sqlx::query(
                "INSERT INTO namespaces (name, kind, created_at) VALUES (?, 'org', ?)
                 ON CONFLICT DO NOTHING",
            )
            .bind(name)
            .bind(t)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            if done.rows_affected() == 0 {
                return refused(AccountRefusal::NameTaken(name.clone()));
            }
            sqlx::query("INSERT INTO org_members (org, username, role) VALUES (?, ?, 'admin')")
                .bind(name)
                .bind(owner)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Done)
        }
        AccountWrite::SetMember { org, user, role } => {
            let is_org = exists(
                conn,
                "SELECT 1 FROM namespaces WHERE name = ? AND kind = 'org'",
                &[org.as_str()],
            )
            .await?;
            if !is_org {
                return refused(AccountRefusal::UnknownOrg(org.clone()));
            }
            if !exists(conn, "SELECT 1 FROM users WHERE name = ?", &[user.as_str()]).await? {
                return refused(AccountRefusal::UnknownUser(user.clone()));
            }
            sqlx::query(
                "INSERT INTO org_members (org, username, role) VALUES (?, ?, ?)
                 ON CONFLICT (org, username) DO UPDATE SET role = excluded.role",
            )
            .bind(org)
            .bind(user)
            .bind(role.as_str())
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            Ok(Outcome::Done)
        }
        AccountWrite::RemoveMember { org, user } => {
            let done = sqlx::query("DELETE FROM org_members WHERE org = ? AND username = ?")
                .bind(org)
                .bind(user)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() > 0))
        }
        AccountWrite::SetNamespaceDefault { name, public } => {
            let done = sqlx::query("UPDATE namespaces SET default_public = ? WHERE name = ?")
                .bind(*public)
                .bind(name)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() > 0))
        }
        AccountWrite::SetRepositoryVisibility { repository, public } => {
            let id = super::writes::ensure_repository(conn, repository, t).await?;
            sqlx::query("UPDATE repositories SET public = ? WHERE id = ?")
                .bind(*public)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Done)
        }
        AccountWrite::CreateToken(token) => {
            let user = token.user.as_str();
            if !exists(conn, "SELECT 1 FROM users WHERE name = ?", &[user]).await? {
                return refused(AccountRefusal::UnknownUser(user.to_owned()));
            }
            sqlx::query(
                "INSERT INTO access_tokens
                   (id, username, name, secret_hash, scope, created_at, expires_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
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
            Ok(Outcome::Done)
        }
        AccountWrite::RevokeToken { id } => {
            let done = sqlx::query(
                "UPDATE access_tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            )
            .bind(t)
            .bind(id)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() > 0))
        }
        AccountWrite::TouchToken { id, now } => {
            sqlx::query("UPDATE access_tokens SET last_used_at = ? WHERE id = ?")
                .bind(*now)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Done)
        }
        AccountWrite::CreateWebSession(session) => {
            let user = session.user.as_str();
            if !exists(conn, "SELECT 1 FROM users WHERE name = ?", &[user]).await? {
                return refused(AccountRefusal::UnknownUser(user.to_owned()));
            }
            sqlx::query(
                "INSERT INTO web_sessions (id, username, secret_hash, epoch, token_id,
                   created_at, expires_at, last_seen_at, client, user_agent)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
            Ok(Outcome::Done)
        }
        AccountWrite::DeleteWebSession { id } => {
            let done = sqlx::query("DELETE FROM web_sessions WHERE id = ?")
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() > 0))
        }
        AccountWrite::DeleteWebSessions { user } => {
            let done = sqlx::query("DELETE FROM web_sessions WHERE username = ?")
                .bind(user)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() > 0))
        }
        AccountWrite::TouchWebSession { id, now } => {
            sqlx::query("UPDATE web_sessions SET last_seen_at = ? WHERE id = ?")
                .bind(*now)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Done)
        }
        AccountWrite::ExpireWebSessions { now } => {
            sqlx::query("DELETE FROM web_sessions WHERE expires_at <= ?")
                .bind(*now)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Done)
        }
        AccountWrite::SignIn(write) => apply_sign_in(conn, write).await,
    }
}

async fn apply_sign_in(conn: &mut SqliteConnection, write: &SignInWrite) -> Result<Outcome> {
    match write {
        SignInWrite::Count { key, cutoff, now } => {
            // A window that has ended starts over with this attempt, in the same statement.
            let row = sqlx::query(
                "INSERT INTO sign_in_attempts (key, window_start, attempts) VALUES (?, ?, 1)
                 ON CONFLICT (key) DO UPDATE SET
                   attempts = CASE WHEN sign_in_attempts.window_start <= ? THEN 1
                                   ELSE sign_in_attempts.attempts + 1 END,
                   window_start = CASE WHEN sign_in_attempts.window_start <= ?
                                       THEN excluded.window_start
                                       ELSE sign_in_attempts.window_start END
                 RETURNING attempts, window_start",
            )
            .bind(key)
            .bind(*now)
            .bind(*cutoff)
            .bind(*cutoff)
            .fetch_one(&mut *conn)
            .await
            .map_err(backend)?;
            Ok(Outcome::Window(sign_in_window(&row)?))
        }
        SignInWrite::Forgive { key, started_at } => {
            let done = sqlx::query(
                "UPDATE sign_in_attempts SET attempts = attempts - 1
                 WHERE key = ? AND window_start = ? AND attempts > 0",
            )
            .bind(key)
            .bind(*started_at)
            .execute(&mut *conn)
            .await
            .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() > 0))
        }
        SignInWrite::Sweep { cutoff } => {
            let done = sqlx::query("DELETE FROM sign_in_attempts WHERE window_start <= ?")
                .bind(*cutoff)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Number(Some(done.rows_affected() as i64)))
        }
    }
}

fn sign_in_window(row: &SqliteRow) -> Result<SignInWindow> {
    let attempts: i64 = row.try_get("attempts").map_err(backend)?;
    Ok(SignInWindow {
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        started_at: row.try_get("window_start").map_err(backend)?,
    })
}

/// The `users` row of a user whose namespace row is written already.
async fn insert_user(
    conn: &mut SqliteConnection,
    name: &str,
    hash: &str,
    admin: bool,
    t: i64,
) -> Result<()> {
    // A random first epoch: sign-ins of an earlier user of the same name never match a
    // new one.
    sqlx::query(
        "INSERT INTO users (name, password_hash, admin, credentials_epoch, created_at)
         VALUES (?, ?, ?, abs(random() % 1000000000000), ?)",
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

fn account_name(s: String) -> Result<AccountName> {
    s.parse()
        .map_err(|e| corrupt(format!("stored account name: {e}")))
}

fn user_from_row(row: &SqliteRow) -> Result<User> {
    Ok(User {
        name: account_name(row.try_get("name").map_err(backend)?)?,
        password_hash: row.try_get("password_hash").map_err(backend)?,
        admin: row.try_get("admin").map_err(backend)?,
        credentials_epoch: row.try_get("credentials_epoch").map_err(backend)?,
        created_at: row.try_get("created_at").map_err(backend)?,
    })
}

fn token_from_row(row: &SqliteRow) -> Result<AccessToken> {
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
fn web_session_from_row(row: &SqliteRow) -> Result<WebSession> {
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

impl SqliteMetaStore {
    async fn account_write(&self, write: AccountWrite) -> std::result::Result<(), AccountRefusal> {
        match self.write(Write::Account(write)).await? {
            Outcome::AccountRefused(refusal) => Err(refusal),
            _ => Ok(()),
        }
    }

    async fn account_change(&self, write: AccountWrite) -> Result<bool> {
        changed(self.write(Write::Account(write)).await)
    }
}

#[async_trait]
impl AccountStore for SqliteMetaStore {
    async fn setting(&self, key: &str) -> Result<Option<String>> {
        sqlx::query_scalar("SELECT value FROM settings WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)
    }

    async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
        let write = AccountWrite::InitSetting {
            key: key.to_owned(),
            value: value.to_owned(),
        };
        match self.write(Write::Account(write)).await? {
            Outcome::Value(stored) => Ok(stored),
            _ => Err(corrupt("init_setting returned no value".into())),
        }
    }

    async fn set_setting(&self, key: &str, value: &str) -> Result<()> {
        self.account_change(AccountWrite::SetSetting {
            key: key.to_owned(),
            value: value.to_owned(),
        })
        .await
        .map(drop)
    }

    async fn create_user(
        &self,
        name: &AccountName,
        password_hash: &str,
        admin: bool,
    ) -> std::result::Result<(), AccountRefusal> {
        self.account_write(AccountWrite::CreateUser {
            name: name.to_string(),
            hash: password_hash.to_owned(),
            admin,
        })
        .await
    }

    async fn create_first_admin(
        &self,
        name: &AccountName,
        password_hash: &str,
        marker: &str,
    ) -> Result<bool> {
        self.account_change(AccountWrite::CreateFirstAdmin {
            name: name.to_string(),
            hash: password_hash.to_owned(),
            marker: marker.to_owned(),
        })
        .await
    }

    async fn user(&self, name: &str) -> Result<Option<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        row.as_ref().map(user_from_row).transpose()
    }

    async fn list_users(&self) -> Result<Vec<User>> {
        let sql = format!("SELECT {USER_COLUMNS} FROM users ORDER BY name");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(user_from_row).collect()
    }

    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool> {
        self.account_change(AccountWrite::SetPassword {
            name: name.to_owned(),
            hash: password_hash.to_owned(),
        })
        .await
    }

    async fn delete_user(&self, name: &str) -> Result<bool> {
        self.account_change(AccountWrite::DeleteUser {
            name: name.to_owned(),
        })
        .await
    }

    async fn create_org(
        &self,
        name: &AccountName,
        owner: &str,
    ) -> std::result::Result<(), AccountRefusal> {
        self.account_write(AccountWrite::CreateOrg {
            name: name.to_string(),
            owner: owner.to_owned(),
        })
        .await
    }

    async fn list_orgs(&self) -> Result<Vec<Org>> {
        let rows =
            sqlx::query("SELECT name, created_at FROM namespaces WHERE kind = 'org' ORDER BY name")
                .fetch_all(&self.reader)
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
        let is_org: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM namespaces WHERE name = ? AND kind = 'org'")
                .bind(org)
                .fetch_optional(&self.reader)
                .await
                .map_err(backend)?;
        if is_org.is_none() {
            return Ok(None);
        }
        let rows =
            sqlx::query("SELECT username, role FROM org_members WHERE org = ? ORDER BY username")
                .bind(org)
                .fetch_all(&self.reader)
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
        self.account_write(AccountWrite::SetMember {
            org: org.to_owned(),
            user: user.to_owned(),
            role,
        })
        .await
    }

    async fn remove_member(&self, org: &str, user: &str) -> Result<bool> {
        self.account_change(AccountWrite::RemoveMember {
            org: org.to_owned(),
            user: user.to_owned(),
        })
        .await
    }

    async fn namespace(&self, name: &str) -> Result<Option<Namespace>> {
        let row = sqlx::query("SELECT name, kind, default_public FROM namespaces WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.reader)
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
        self.account_change(AccountWrite::SetNamespaceDefault {
            name: name.to_owned(),
            public,
        })
        .await
    }

    async fn repository_visibility(&self, repository: &RepoName) -> Result<Option<bool>> {
        sqlx::query_scalar("SELECT public FROM repositories WHERE name = ?")
            .bind(repository.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)
    }

    async fn set_repository_visibility(&self, repository: &RepoName, public: bool) -> Result<()> {
        self.account_change(AccountWrite::SetRepositoryVisibility {
            repository: repository.clone(),
            public,
        })
        .await
        .map(drop)
    }

    async fn repository_facts(
        &self,
        repository: &RepoName,
        user: Option<&str>,
    ) -> Result<RepositoryFacts> {
        let namespace = repository.namespace();
        let row = sqlx::query(
            "SELECT
               (SELECT public FROM repositories WHERE name = ?) AS public,
               (SELECT 1 FROM users WHERE name = ? AND name = ?) AS owner,
               (SELECT role FROM org_members WHERE org = ? AND username = ?) AS role",
        )
        .bind(repository.as_str())
        .bind(namespace)
        .bind(user)
        .bind(namespace)
        .bind(user)
        .fetch_one(&self.reader)
        .await
        .map_err(backend)?;
        let public: Option<bool> = row.try_get("public").map_err(backend)?;
        let owner: Option<i64> = row.try_get("owner").map_err(backend)?;
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
                "SELECT name FROM repositories WHERE public = 1 AND name > ? ORDER BY name LIMIT ?",
            )
            .bind(last)
            .bind(fetch),
            // The namespace is the text before the first '/' (or the whole name).
            Viewer::User(user) => sqlx::query_scalar(
                "SELECT name FROM repositories
                 WHERE name > ? AND (public = 1 OR
                   substr(name, 1, instr(name || '/', '/') - 1) IN (
                     SELECT name FROM users WHERE name = ?
                     UNION SELECT org FROM org_members WHERE username = ?))
                 ORDER BY name LIMIT ?",
            )
            .bind(last)
            .bind(user)
            .bind(user)
            .bind(fetch),
        };
        let names: Vec<String> = query.fetch_all(&self.reader).await.map_err(backend)?;
        Ok(into_page(names, limit))
    }

    async fn create_token(&self, token: &AccessToken) -> std::result::Result<(), AccountRefusal> {
        self.account_write(AccountWrite::CreateToken(token.clone()))
            .await
    }

    async fn token_by_secret_hash(&self, secret_hash: &str) -> Result<Option<AccessToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE secret_hash = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(secret_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn token(&self, id: &str) -> Result<Option<AccessToken>> {
        let sql = format!("SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        row.as_ref().map(token_from_row).transpose()
    }

    async fn list_tokens(&self, user: &str) -> Result<Vec<AccessToken>> {
        let sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM access_tokens WHERE username = ? ORDER BY created_at DESC, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(token_from_row).collect()
    }

    async fn revoke_token(&self, id: &str) -> Result<bool> {
        self.account_change(AccountWrite::RevokeToken { id: id.to_owned() })
            .await
    }

    async fn touch_token(&self, id: &str, now: i64) -> Result<()> {
        self.account_change(AccountWrite::TouchToken {
            id: id.to_owned(),
            now,
        })
        .await
        .map(drop)
    }

    async fn create_web_session(
        &self,
        session: &WebSession,
    ) -> std::result::Result<(), AccountRefusal> {
        self.account_write(AccountWrite::CreateWebSession(session.clone()))
            .await
    }

    async fn web_session_by_secret_hash(&self, secret_hash: &str) -> Result<Option<WebSession>> {
        let sql = format!("SELECT {WEB_SESSION_COLUMNS} FROM web_sessions WHERE secret_hash = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(secret_hash)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        row.as_ref().map(web_session_from_row).transpose()
    }

    async fn web_sessions(&self, user: &str, now: i64) -> Result<Vec<WebSession>> {
        let sql = format!(
            "SELECT {WEB_SESSION_COLUMNS} FROM web_sessions WHERE username = ? AND expires_at > ?
             ORDER BY created_at DESC, id"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user)
            .bind(now)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        rows.iter().map(web_session_from_row).collect()
    }

    async fn delete_web_session(&self, id: &str) -> Result<bool> {
        self.account_change(AccountWrite::DeleteWebSession { id: id.to_owned() })
            .await
    }

    async fn delete_web_sessions(&self, user: &str) -> Result<bool> {
        self.account_change(AccountWrite::DeleteWebSessions {
            user: user.to_owned(),
        })
        .await
    }

    async fn touch_web_session(&self, id: &str, now: i64) -> Result<()> {
        self.account_change(AccountWrite::TouchWebSession {
            id: id.to_owned(),
            now,
        })
        .await
        .map(drop)
    }

    async fn expire_web_sessions(&self, now: i64) -> Result<()> {
        self.account_change(AccountWrite::ExpireWebSessions { now })
            .await
            .map(drop)
    }

    async fn count_sign_in_attempt(
        &self,
        key: &str,
        window_start_cutoff: i64,
        now: i64,
    ) -> Result<SignInWindow> {
        let write = SignInWrite::Count {
            key: key.to_owned(),
            cutoff: window_start_cutoff,
            now,
        };
        match self
            .write(Write::Account(AccountWrite::SignIn(write)))
            .await?
        {
            Outcome::Window(window) => Ok(window),
            _ => Err(corrupt("counting a sign-in returned no window".into())),
        }
    }

    async fn sign_in_windows(
        &self,
        keys: &[&str],
        window_start_cutoff: i64,
    ) -> Result<Vec<Option<SignInWindow>>> {
        let mut windows = Vec::with_capacity(keys.len());
        for key in keys {
            let row = sqlx::query(
                "SELECT attempts, window_start FROM sign_in_attempts
                 WHERE key = ? AND window_start > ?",
            )
            .bind(*key)
            .bind(window_start_cutoff)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
            windows.push(row.as_ref().map(sign_in_window).transpose()?);
        }
        Ok(windows)
    }

    async fn forgive_sign_in(&self, key: &str, started_at: i64) -> Result<bool> {
        self.account_change(AccountWrite::SignIn(SignInWrite::Forgive {
            key: key.to_owned(),
            started_at,
        }))
        .await
    }

    async fn sweep_sign_in_windows(&self, window_start_cutoff: i64) -> Result<u64> {
        let write = SignInWrite::Sweep {
            cutoff: window_start_cutoff,
        };
        match self
            .write(Write::Account(AccountWrite::SignIn(write)))
            .await?
        {
            Outcome::Number(n) => Ok(n.unwrap_or(0) as u64),
            _ => Err(corrupt("sweeping sign-in windows returned no count".into())),
        }
    }
}
