//! The audit log: sign-ins (and failed ones), token creation and revocation, pushes,
//! deletes, tag moves, settings and membership changes, each with who, from where and
//! when, kept in the metadata store for `--audit-retention`.
//!
//! Handlers say what they did by attaching [`Audited`] events to their response; the
//! [`record`] layer hands them to the [`AuditWriter`], so a handler never fails or waits
//! for its audit record and recording lives in one place. The writer keeps their order
//! and writes what has queued up in one store write (a push's events, many pushes' at
//! once under load): the log costs a push a fraction of a write, not two. What happens
//! without a response of its own (a failed sign-in, deep in the accounts service) is
//! written with [`record_now`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use berth_meta::{AuditEvent, MetaStore};
use serde_json::Value;

use crate::http::AppState;

/// Events a handler attaches to its response for [`record`] to write (and announce to
/// webhooks).
#[derive(Clone, Default)]
pub struct Audited(pub Vec<AuditEvent>);

/// Events for webhooks only, not the audit log (pulls).
#[derive(Clone, Default)]
pub struct Announced(pub Vec<AuditEvent>);

/// An event happening now.
pub fn event(
    actor: &str,
    client: &str,
    action: &str,
    target: Option<&str>,
    detail: Value,
) -> AuditEvent {
    AuditEvent {
        at: crate::accounts::now(),
        actor: if actor.is_empty() { "anonymous" } else { actor }.to_owned(),
        client: client.to_owned(),
        action: action.to_owned(),
        target: target.map(str::to_owned),
        detail: detail.to_string(),
    }
}

/// Attaches `event` to `response`.
pub fn attach(response: &mut Response, event: AuditEvent) {
    match response.extensions_mut().get_mut::<Audited>() {
        Some(Audited(events)) => events.push(event),
        None => {
            response.extensions_mut().insert(Audited(vec![event]));
        }
    }
}

/// Events queued for the store, in order; a batch written at a time.
pub struct AuditWriter {
    queue: tokio::sync::mpsc::Sender<Queued>,
}

enum Queued {
    Event(AuditEvent),
    /// Answered once everything queued before it is written.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Events queued before a sender waits (a bound on memory).
const QUEUE: usize = 8192;
/// Events written in one store write at most.
const BATCH: usize = 256;

impl AuditWriter {
    /// Starts the task that writes queued events to `meta`.
    pub fn start(meta: Arc<dyn MetaStore>) -> AuditWriter {
        let (queue, mut queued) = tokio::sync::mpsc::channel::<Queued>(QUEUE);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            let mut flushed = Vec::new();
            while let Some(first) = queued.recv().await {
                let mut next = Some(first);
                while let Some(item) = next.take() {
                    match item {
                        Queued::Event(event) => batch.push(event),
                        Queued::Flush(done) => flushed.push(done),
                    }
                    if batch.len() < BATCH {
                        next = queued.try_recv().ok();
                    }
                }
                if let Err(e) = meta.record_audit(&batch).await {
                    tracing::warn!(error = %e, events = batch.len(), "recording audit events failed");
                }
                batch.clear();
                for done in flushed.drain(..) {
                    let _ = done.send(());
                }
            }
        });
        AuditWriter { queue }
    }

    /// Queues `events` to be written, in order.
    pub async fn queue(&self, events: Vec<AuditEvent>) {
        for event in events {
            if self.queue.send(Queued::Event(event)).await.is_err() {
                tracing::warn!("the audit writer has stopped; an event is lost");
            }
        }
    }

    /// Waits until everything queued so far is written (at shutdown).
    pub async fn flush(&self) {
        let (done, written) = tokio::sync::oneshot::channel();
        if self.queue.send(Queued::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

/// Queues the events a response carries for the audit log and for webhooks (a layer
/// around every route).
pub async fn record(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    // How the client reached the registry, for links in webhook payloads.
    let host = request
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let mut response = next.run(request).await;
    if let Some(Audited(events)) = response.extensions_mut().remove::<Audited>() {
        for event in &events {
            app.webhooks.notify(event, &host).await;
        }
        app.audit.queue(events).await;
    }
    if let Some(Announced(events)) = response.extensions_mut().remove::<Announced>() {
        for event in &events {
            app.webhooks.notify(event, &host).await;
        }
    }
    response
}

/// Writes one event; a store that fails is logged (with the event), never passed on.
pub async fn record_now(meta: &dyn MetaStore, event: &AuditEvent) {
    if let Err(e) = meta.record_audit(std::slice::from_ref(event)).await {
        tracing::warn!(
            error = %e,
            actor = %event.actor,
            action = %event.action,
            target = ?event.target,
            "recording an audit event failed"
        );
    }
}

/// A JSON request body with every secret taken out, for the detail of a change.
pub fn without_secrets(body: &[u8]) -> Value {
    let mut value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    if let Value::Object(fields) = &mut value {
        fields.retain(|key, _| {
            let key = key.to_ascii_lowercase();
            !(key.contains("password") || key.contains("secret") || key.contains("token"))
        });
    }
    value
}

/// Unix seconds, an RFC 3339 time, or an age before `now` (`90m`, `24h`, `7d`).
pub fn parse_since(text: &str, now: i64) -> Result<i64, String> {
    if let Ok(seconds) = text.parse::<i64>() {
        return Ok(seconds);
    }
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return time
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .map_err(|e| e.to_string());
    }
    humantime::parse_duration(text)
        .map(|age| now - age.as_secs() as i64)
        .map_err(|_| format!("since={text:?}: unix seconds, an RFC 3339 time or an age like 24h"))
}
