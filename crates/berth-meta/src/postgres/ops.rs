//! Request windows (pull rate limits) on PostgreSQL.

use async_trait::async_trait;

use super::{PgMetaStore, backend};
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

#[async_trait]
impl OpsStore for PgMetaStore {
    async fn count_request(&self, key: &str, window: i64, now: i64) -> Result<RequestWindow> {
        let row: (i64, i64) = sqlx::query_as(COUNT_REQUEST_SQL)
            .bind(key)
            .bind(now)
            .bind(window.max(1))
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(request_window(row))
    }

    async fn request_window(&self, key: &str, now: i64) -> Result<Option<RequestWindow>> {
        let row: Option<(i64, i64)> = sqlx::query_as(REQUEST_WINDOW_SQL)
            .bind(key)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(row.map(request_window))
    }

    async fn sweep_request_windows(&self, now: i64) -> Result<u64> {
        let done = sqlx::query(SWEEP_REQUEST_WINDOWS_SQL)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn record_audit(&self, events: &[AuditEvent]) -> Result<()> {
        if events.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(backend)?;
        for event in events {
            sqlx::query(RECORD_AUDIT_SQL)
                .bind(event.at)
                .bind(&event.actor)
                .bind(&event.client)
                .bind(&event.action)
                .bind(&event.target)
                .bind(&event.detail)
                .execute(&mut *tx)
                .await
                .map_err(backend)?;
        }
        tx.commit().await.map_err(backend)
    }

    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = sqlx::query_as(AUDIT_EVENTS_SQL)
            .bind(query.since)
            .bind(&query.actor)
            .bind(&query.target)
            .bind(query.before_id)
            .bind(i64::from(query.limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(audit_entry).collect())
    }

    async fn prune_audit(&self, before: i64) -> Result<u64> {
        let done = sqlx::query(PRUNE_AUDIT_SQL)
            .bind(before)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(done.rows_affected())
    }

    async fn record_tag_pull(&self, repository: &RepoName, tag: &str, at: i64) -> Result<()> {
        sqlx::query(RECORD_TAG_PULL_SQL)
            .bind(repository.as_str())
            .bind(tag)
            .bind(at)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn tag_ages(&self, repository: &RepoName) -> Result<Vec<TagAge>> {
        let rows: Vec<(String, String, i64, Option<i64>, i64)> = sqlx::query_as(TAG_AGES_SQL)
            .bind(repository.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(tag_age).collect())
    }

    async fn policy_scopes(&self, key: &str) -> Result<Vec<(String, String)>> {
        sqlx::query_as(POLICY_SCOPES_SQL)
            .bind(key)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)
    }

    async fn repositories_in(&self, scope: &str) -> Result<Vec<RepoName>> {
        let names: Vec<String> = sqlx::query_scalar(REPOSITORIES_IN_SQL)
            .bind(scope)
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        repo_names(names)
    }
}
