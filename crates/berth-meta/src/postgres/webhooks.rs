//! Webhooks and their delivery queue on PostgreSQL.

use async_trait::async_trait;

use super::{PgMetaStore, backend};
use crate::Result;
use crate::ops::{
    ADD_WEBHOOK_SQL, AttemptOutcome, DELIVERIES_SQL, Delivery, DeliveryRow, ENQUEUE_DELIVERY_SQL,
    FINISH_ATTEMPT_SQL, REMOVE_DELIVERIES_SQL, REMOVE_WEBHOOK_SQL, WEBHOOKS_SQL, Webhook,
    WebhookRow, WebhookStore, delivery, webhook,
};

/// Due deliveries claimed for one attempt: rows another node is claiming are skipped,
/// so no attempt is made twice.
const CLAIM_SQL: &str = "UPDATE webhook_deliveries
    SET attempts = attempts + 1, next_attempt_at = $1 + $2
    WHERE id IN (SELECT id FROM webhook_deliveries
                 WHERE state = 'pending' AND next_attempt_at <= $1
                 ORDER BY next_attempt_at, id LIMIT $3
                 FOR UPDATE SKIP LOCKED)
    RETURNING id, webhook_id, event, payload, state, attempts, next_attempt_at,
              last_status, last_error, created_at, finished_at";

#[async_trait]
impl WebhookStore for PgMetaStore {
    async fn add_webhook(&self, hook: &Webhook) -> Result<()> {
        sqlx::query(ADD_WEBHOOK_SQL)
            .bind(&hook.id)
            .bind(&hook.scope)
            .bind(&hook.url)
            .bind(hook.events.join(","))
            .bind(&hook.secret)
            .bind(&hook.format)
            .bind(&hook.created_by)
            .bind(hook.created_at)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn remove_webhook(&self, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query(REMOVE_DELIVERIES_SQL)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        let done = sqlx::query(REMOVE_WEBHOOK_SQL)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        tx.commit().await.map_err(backend)?;
        Ok(done.rows_affected() > 0)
    }

    async fn webhooks(&self) -> Result<Vec<Webhook>> {
        let rows: Vec<WebhookRow> = sqlx::query_as(WEBHOOKS_SQL)
            .fetch_all(&self.pool)
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
        sqlx::query_scalar(ENQUEUE_DELIVERY_SQL)
            .bind(webhook_id)
            .bind(event)
            .bind(payload)
            .bind(now)
            .fetch_one(&self.pool)
            .await
            .map_err(backend)
    }

    async fn claim_deliveries(&self, now: i64, lease: i64, limit: u32) -> Result<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(CLAIM_SQL)
            .bind(now)
            .bind(lease)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(delivery).collect())
    }

    async fn finish_attempt(&self, id: i64, outcome: &AttemptOutcome) -> Result<()> {
        sqlx::query(FINISH_ATTEMPT_SQL)
            .bind(id)
            .bind(&outcome.state)
            .bind(outcome.status.map(i64::from))
            .bind(&outcome.error)
            .bind(outcome.next_attempt_at)
            .bind(outcome.now)
            .execute(&self.pool)
            .await
            .map_err(backend)?;
        Ok(())
    }

    async fn deliveries(&self, webhook_id: &str, limit: u32) -> Result<Vec<Delivery>> {
        let rows: Vec<DeliveryRow> = sqlx::query_as(DELIVERIES_SQL)
            .bind(webhook_id)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows.into_iter().map(delivery).collect())
    }
}
