//! Request windows (pull rate limits) on SQLite.

use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::writes::{Outcome, Write};
use super::{SqliteMetaStore, backend, corrupt};
use crate::Result;
use berth_core::RepoName;

use crate::ops::{
    AUDIT_EVENTS_SQL, AuditEntry, AuditEvent, AuditQuery, AuditRow, COUNT_REQUEST_SQL, OpsStore,
    PRUNE_AUDIT_SQL, RECORD_AUDIT_SQL, REQUEST_WINDOW_SQL, RequestWindow,
    SWEEP_REQUEST_WINDOWS_SQL, audit_entry, request_window,
};
use crate::ops::{
    POLICY_SCOPES_SQL, RECORD_TAG_PULL_SQL, REPOSITORIES_IN_SQL, TAG_AGES_SQL, TagAge, repo_names,
    tag_age,
};

/// Writes of the operations records, applied by the writer task.
pub(super) enum OpsWrite {
    CountRequest {
        key: String,
        window: i64,
        now: i64,
    },
    SweepRequestWindows {
        now: i64,
    },
    RecordAudit(Vec<AuditEvent>),
    PruneAudit {
        before: i64,
    },
    RecordTagPull {
        repository: String,
        tag: String,
        at: i64,
    },
}

pub(super) async fn apply(conn: &mut SqliteConnection, write: &OpsWrite) -> Result<Outcome> {
    match write {
        OpsWrite::CountRequest { key, window, now } => {
            let row: (i64, i64) = sqlx::query_as(COUNT_REQUEST_SQL)
                .bind(key)
                .bind(now)
                .bind(window)
                .fetch_one(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Request(request_window(row)))
        }
        OpsWrite::RecordAudit(events) => {
            for event in events {
                sqlx::query(RECORD_AUDIT_SQL)
                    .bind(event.at)
                    .bind(&event.actor)
                    .bind(&event.client)
                    .bind(&event.action)
                    .bind(&event.target)
                    .bind(&event.detail)
                    .execute(&mut *conn)
                    .await
                    .map_err(backend)?;
            }
            Ok(Outcome::Done)
        }
        OpsWrite::RecordTagPull {
            repository,
            tag,
            at,
        } => {
            sqlx::query(RECORD_TAG_PULL_SQL)
                .bind(repository)
                .bind(tag)
                .bind(at)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Done)
        }
        OpsWrite::PruneAudit { before } => {
            let done = sqlx::query(PRUNE_AUDIT_SQL)
                .bind(before)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Number(Some(done.rows_affected() as i64)))
        }
        OpsWrite::SweepRequestWindows { now } => {
            let done = sqlx::query(SWEEP_REQUEST_WINDOWS_SQL)
                .bind(now)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Number(Some(done.rows_affected() as i64)))
        }
    }
}

#[async_trait]
impl OpsStore for SqliteMetaStore {
    async fn count_request(&self, key: &str, window: i64, now: i64) -> Result<RequestWindow> {
        let write = OpsWrite::CountRequest {
            key: key.to_owned(),
            window: window.max(1),
            now,
        };
        match self.write(Write::Ops(write)).await? {
            Outcome::Request(window) => Ok(window),
            _ => Err(corrupt("counting a request returned no window".into())),
        }
    }

    async fn request_window(&self, key: &str, now: i64) -> Result<Option<RequestWindow>> {
        let row: Option<(i64, i64)> = sqlx::query_as(REQUEST_WINDOW_SQL)
            .bind(key)
            .bind(now)
            .fetch_optional(&self.reader)
            .await
            .map_err(backend)?;
        Ok(row.map(request_window))
    }

    async fn sweep_request_windows(&self, now: i64) -> Result<u64> {
        match self
            .write(Write::Ops(OpsWrite::SweepRequestWindows { now }))
            .await?
        {
            Outcome::Number(n) => Ok(n.unwrap_or(0).max(0) as u64),
            _ => Ok(0),
        }
    }

    async fn record_audit(&self, events: &[AuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        self.write(Write::Ops(OpsWrite::RecordAudit(events.to_vec())))
            .await
            .map(drop)
    }

    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as(AUDIT_EVENTS_SQL)
            .bind(query.since)
            .bind(&query.actor)
            .bind(&query.target)
            .bind(query.before_id)
            .bind(i64::from(query.limit))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(audit_entry).collect())
    }

    async fn prune_audit(&self, before: i64) -> Result<u64> {
        match self
            .write(Write::Ops(OpsWrite::PruneAudit { before }))
            .await?
        {
            Outcome::Number(n) => Ok(n.unwrap_or(0).max(0) as u64),
            _ => Ok(0),
        }
    }

    async fn record_tag_pull(&self, repository: &RepoName, tag: &str, at: i64) -> Result<()> {
        let write = OpsWrite::RecordTagPull {
            repository: repository.as_str().to_owned(),
            tag: tag.to_owned(),
            at,
        };
        self.write(Write::Ops(write)).await.map(drop)
    }

    async fn tag_ages(&self, repository: &RepoName) -> Result<Vec<TagAge>> {
        let rows: Vec<(String, String, i64, Option<i64>, i64)> = sqlx::query_as(TAG_AGES_SQL)
            .bind(repository.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(tag_age).collect())
    }

    async fn policy_scopes(&self, key: &str) -> Result<Vec<(String, String)>> {
        sqlx::query_as(POLICY_SCOPES_SQL)
            .bind(key)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)
    }

    async fn repositories_in(&self, scope: &str) -> Result<Vec<RepoName>> {
        let names: Vec<String> = sqlx::query_scalar(REPOSITORIES_IN_SQL)
            .bind(scope)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        repo_names(names)
    }
}
