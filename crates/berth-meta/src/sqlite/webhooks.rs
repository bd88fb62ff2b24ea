//! Webhooks and their delivery queue on SQLite.

use async_trait::async_trait;
use sqlx::SqliteConnection;

use super::writes::{Outcome, Write};
use super::{SqliteMetaStore, backend, changed, corrupt};
use crate::Result;
use crate::ops::{
    ADD_WEBHOOK_SQL, AttemptOutcome, DELIVERIES_SQL, Delivery, DeliveryRow, ENQUEUE_DELIVERY_SQL,
    FINISH_ATTEMPT_SQL, REMOVE_DELIVERIES_SQL, REMOVE_WEBHOOK_SQL, WEBHOOKS_SQL, Webhook,
    WebhookRow, WebhookStore, delivery, webhook,
};

/// Due deliveries claimed for one attempt (the single writer makes the claim atomic).
const CLAIM_SQL: &str = "UPDATE webhook_deliveries
    SET attempts = attempts + 1, next_attempt_at = $1 + $2
    WHERE id IN (SELECT id FROM webhook_deliveries
                 WHERE state = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at, id LIMIT $3)
    RETURNING id, webhook_id, event, payload, state, attempts, next_attempt_at,
              last_status, last_error, created_at, finished_at";

/// Writes of webhooks and deliveries, applied by the writer task.
pub(super) enum WebhookWrite {
    Add(Webhook),
    Remove(String),
    Enqueue {
        webhook_id: String,
        event: String,
        payload: String,
        now: i64,
    },
    Claim {
        now: i64,
        lease: i64,
        limit: u32,
    },
    Finish {
        id: i64,
        outcome: AttemptOutcome,
    },
}

pub(super) async fn apply(conn: &mut SqliteConnection, write: &WebhookWrite) -> Result<Outcome> {
    match write {
        WebhookWrite::Add(hook) => {
            sqlx::query(ADD_WEBHOOK_SQL)
                .bind(&hook.id)
                .bind(&hook.scope)
                .bind(&hook.url)
                .bind(hook.events.join(","))
                .bind(&hook.secret)
                .bind(&hook.format)
                .bind(&hook.created_by)
                .bind(hook.created_at)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Done)
        }
        WebhookWrite::Remove(id) => {
            sqlx::query(REMOVE_DELIVERIES_SQL)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            let done = sqlx::query(REMOVE_WEBHOOK_SQL)
                .bind(id)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Changed(done.rows_affected() > 0))
        }
        WebhookWrite::Enqueue {
            webhook_id,
            event,
            payload,
            now,
        } => {
            let id: i64 = sqlx::query_scalar(ENQUEUE_DELIVERY_SQL)
                .bind(webhook_id)
                .bind(event)
                .bind(payload)
                .bind(now)
                .fetch_one(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Number(Some(id)))
        }
        WebhookWrite::Claim { now, lease, limit } => {
            let rows: Vec<DeliveryRow> = sqlx::query_as(CLAIM_SQL)
                .bind(now)
                .bind(lease)
                .bind(i64::from(*limit))
                .fetch_all(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Deliveries(
                rows.into_iter().map(delivery).collect(),
            ))
        }
        WebhookWrite::Finish { id, outcome } => {
            sqlx::query(FINISH_ATTEMPT_SQL)
                .bind(id)
                .bind(&outcome.state)
                .bind(outcome.status.map(i64::from))
                .bind(&outcome.error)
                .bind(outcome.next_attempt_at)
                .bind(outcome.now)
                .execute(&mut *conn)
                .await
                .map_err(backend)?;
            Ok(Outcome::Done)
        }
    }
}

#[async_trait]
impl WebhookStore for SqliteMetaStore {
    async fn add_webhook(&self, hook: &Webhook) -> Result<()> {
        self.write(Write::Webhook(WebhookWrite::Add(hook.clone())))
            .await
            .map(drop)
    }

    async fn remove_webhook(&self, id: &str) -> Result<bool> {
        changed(
            self.write(Write::Webhook(WebhookWrite::Remove(id.to_owned())))
                .await,
        )
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(WEBHOOKS_SQL)
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(webhook).collect())
    }

    async fn enqueue_delivery(
        &self,
        webhook_id: &str,
        event: &str,
        payload: &str,
        now: i64,
    ) -> Result<i64> {
        let write = WebhookWrite::Enqueue {
            webhook_id: webhook_id.to_owned(),
            event: event.to_owned(),
            payload: payload.to_owned(),
            now,
        };
        match self.write(Write::Webhook(write)).await? {
            Outcome::Number(Some(id)) => Ok(id),
            _ => Err(corrupt("queueing a delivery returned no id".into())),
        }
    }

    async fn claim_deliveries(&self, now: i64, lease: i64, limit: u32) -> Result<Vec<Delivery>> {
        match self
            .write(Write::Webhook(WebhookWrite::Claim { now, lease, limit }))
            .await?
        {
            Outcome::Deliveries(claimed) => Ok(claimed),
            _ => Ok(Vec::new()),
        }
    }

    async fn finish_attempt(&self, id: i64, outcome: &AttemptOutcome) -> Result<()> {
        let write = WebhookWrite::Finish {
            id,
            outcome: outcome.clone(),
        };
        self.write(Write::Webhook(write)).await.map(drop)
    }

    async fn deliveries(&self, webhook_id: &str, limit: u32) -> Result<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(DELIVERIES_SQL)
            .bind(webhook_id)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(delivery).collect())
    }
}
