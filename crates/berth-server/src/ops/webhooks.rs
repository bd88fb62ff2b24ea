//! Webhooks: an HTTP POST to a URL when something happens in a namespace or
//! repository (`push`, `delete`, `tag-move`, `pull`), as Docker Hub's payload or a
//! CloudEvent, signed with HMAC-SHA256 (`X-Berth-Signature-256: sha256=<hex>`).
//!
//! Events are queued in the metadata store as they happen, so a delivery survives a
//! restart; a background worker on every node claims due deliveries (each attempt is
//! made by one node) and retries failures with exponential backoff (1 s, 2 s, 4 s, …
//! at most an hour apart) up to [`MAX_ATTEMPTS`], keeping each attempt's answer.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_meta::{AttemptOutcome, AuditEvent, Delivery, MetaStore, Webhook};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// The events a webhook may ask for.
pub const EVENTS: [&str; 5] = ["push", "delete", "tag-move", "pull", "vulnerabilities"];
/// The payload formats.
pub const FORMATS: [&str; 2] = ["docker-hub", "cloudevents"];
/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: u32 = 12;
/// How long a claimed attempt may take before another node may make it again.
const LEASE: i64 = 60;
/// How long a receiver has to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// How long the list of webhooks is reused before it is read again (other nodes and
/// the `berth webhook` command add and remove them too).
const REFRESH: Duration = Duration::from_secs(3);
/// Deliveries attempted at once per pass.
const BATCH: u32 = 16;

pub const SIGNATURE: &str = "x-berth-signature-256";
pub const EVENT: &str = "x-berth-event";
pub const DELIVERY: &str = "x-berth-delivery";

pub struct Webhooks {
    meta: Arc<dyn MetaStore>,
    /// Made on the first delivery: building it (loading the system's CA certificates)
    /// would otherwise cost every start several milliseconds.
    client: std::sync::OnceLock<reqwest::Client>,
    /// `http` or `https`: how links in payloads reach this registry.
    scheme: &'static str,
    known: Mutex<Option<(Instant, Arc<Vec<Webhook>>)>>,
}

impl Webhooks {
    pub fn new(meta: Arc<dyn MetaStore>, https: bool) -> Webhooks {
        Webhooks {
            meta,
            client: std::sync::OnceLock::new(),
            scheme: if https { "https" } else { "http" },
            known: Mutex::new(None),
        }
    }

    /// Forgets the list of webhooks (one was added or removed here).
    pub fn changed(&self) {
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    async fn all(&self) -> Arc<Vec<Webhook>> {
        if let Some((read_at, hooks)) = &*self.known.lock().unwrap_or_else(|e| e.into_inner())
            && read_at.elapsed() < REFRESH
        {
            return hooks.clone();
        }
        let hooks = match self.meta.webhooks().await {
            Ok(hooks) => Arc::new(hooks),
            Err(e) => {
                tracing::warn!(error = %e, "reading webhooks failed");
                Arc::new(Vec::new())
            }
        };
        *self.known.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((Instant::now(), hooks.clone()));
        hooks
    }

    /// Queues a delivery of `event` (an audited `push`, `delete` or `tag-move`, or a
    /// `pull`) to every webhook on its repository or the repository's namespace. `host`
    /// is how the client reached this registry, for links.
    pub async fn notify(&self, event: &AuditEvent, host: &str) {
        if !EVENTS.contains(&event.action.as_str()) {
            return;
        }
        let Some(repository) = event.target.as_deref() else {
            return;
        };
        let namespace = repository.split('/').next().unwrap_or(repository);
        let hooks = self.all().await;
        for hook in hooks.iter().filter(|h| {
            (h.scope == repository || h.scope == namespace) && h.events.contains(&event.action)
        }) {
            let payload = payload(hook, event, repository, self.scheme, host);
            if let Err(e) = self
                .meta
                .enqueue_delivery(&hook.id, &event.action, &payload.to_string(), event.at)
                .await
            {
                tracing::warn!(error = %e, webhook = %hook.id, "queueing a webhook delivery failed");
            }
        }
    }

    /// Whether any webhook wants `pull` events (so pulls cost nothing otherwise).
    pub async fn wants_pulls(&self) -> bool {
        self.all()
            .await
            .iter()
            .any(|h| h.events.iter().any(|e| e == "pull"))
    }

    /// Makes due deliveries, forever: a pass a second.
    pub async fn run(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_secs(1));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if let Err(e) = self.pass().await {
                tracing::warn!(error = %e, "delivering webhooks failed");
            }
        }
    }

    /// Claims the due deliveries and attempts each once; returns how many.
    pub async fn pass(&self) -> Result<usize, berth_meta::MetaError> {
        let now = crate::accounts::now();
        let due = self.meta.claim_deliveries(now, LEASE, BATCH).await?;
        if due.is_empty() {
            return Ok(0);
        }
        let hooks = self.all().await;
        let attempts = due.iter().map(|delivery| {
            let hook = hooks.iter().find(|h| h.id == delivery.webhook_id).cloned();
            self.attempt(delivery, hook)
        });
        futures::future::join_all(attempts).await;
        Ok(due.len())
    }

    async fn attempt(&self, delivery: &Delivery, hook: Option<Webhook>) {
        let answered = match &hook {
            None => Err("the webhook was removed".to_owned()),
            Some(hook) => self.post(hook, delivery).await,
        };
        let now = crate::accounts::now();
        let outcome = match answered {
            Ok(status) if (200..300).contains(&status) => AttemptOutcome {
                state: "delivered".into(),
                status: Some(status),
                error: None,
                next_attempt_at: now,
                now,
            },
            failed => {
                let (status, error) = match failed {
                    Ok(status) => (Some(status), format!("the receiver answered {status}")),
                    Err(why) => (None, why),
                };
                let give_up = hook.is_none() || delivery.attempts >= MAX_ATTEMPTS;
                AttemptOutcome {
                    state: if give_up { "failed" } else { "pending" }.into(),
                    status,
                    error: Some(error),
                    next_attempt_at: now + backoff(delivery.attempts),
                    now,
                }
            }
        };
        if let Err(e) = self.meta.finish_attempt(delivery.id, &outcome).await {
            tracing::warn!(error = %e, delivery = delivery.id, "recording a webhook attempt failed");
        }
    }

    async fn post(&self, hook: &Webhook, delivery: &Delivery) -> Result<u16, String> {
        let content_type = if hook.format == "cloudevents" {
            "application/cloudevents+json"
        } else {
            "application/json"
        };
        let client = self.client.get_or_init(|| {
            reqwest::Client::builder()
                .timeout(TIMEOUT)
                .user_agent(concat!("berth-webhooks/", env!("CARGO_PKG_VERSION")))
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default()
        });
        let mut request = client
            .post(&hook.url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(EVENT, &delivery.event)
            .header(DELIVERY, delivery.id.to_string())
            .body(delivery.payload.clone());
        if let Some(secret) = &hook.secret {
            request = request.header(SIGNATURE, signature(secret, delivery.payload.as_bytes()));
        }
        match request.send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(e) => Err(format!("{e}")),
        }
    }
}

/// Seconds before attempt `attempts + 1`: 1, 2, 4, … at most an hour.
fn backoff(attempts: u32) -> i64 {
    1i64 << attempts.saturating_sub(1).min(12).min(62)
}

/// `sha256=<hex HMAC-SHA256 of body with secret>`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The body of a delivery of `event` to `hook`.
fn payload(
    hook: &Webhook,
    event: &AuditEvent,
    repository: &str,
    scheme: &str,
    host: &str,
) -> Value {
    let detail: Value = serde_json::from_str(&event.detail).unwrap_or(Value::Null);
    let (namespace, name) = repository.split_once('/').unwrap_or(("", repository));
    let repo_url = format!("{scheme}://{host}/r/{repository}");
    let time = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_secs(event.at.max(0) as u64),
    )
    .to_string();
    if hook.format == "cloudevents" {
        let subject = match detail.get("reference").and_then(Value::as_str) {
            Some(reference) if reference.starts_with("sha256:") => {
                format!("{repository}@{reference}")
            }
            Some(reference) => format!("{repository}:{reference}"),
            None => repository.to_owned(),
        };
        return json!({
            "specversion": "1.0",
            "id": uuid::Uuid::new_v4().to_string(),
            "source": repo_url,
            "type": format!("io.berth.image.{}", event.action),
            "time": time,
            "subject": subject,
            "datacontenttype": "application/json",
            "data": {
                "repository": repository,
                "actor": event.actor,
                "detail": detail,
            },
        });
    }
    // Docker Hub's push payload, with `event` (and the details of other events) added.
    let reference = detail.get("reference").and_then(Value::as_str);
    let tag = detail
        .get("tag")
        .and_then(Value::as_str)
        .or(reference.filter(|r| !r.contains(':')));
    json!({
        "callback_url": null,
        "event": event.action,
        "push_data": {
            "pushed_at": event.at,
            "pusher": event.actor,
            "tag": tag,
            "digest": detail.get("digest").or_else(|| detail.get("to")),
        },
        "repository": {
            "repo_name": repository,
            "name": name,
            "namespace": namespace,
            "repo_url": repo_url,
            "status": "Active",
        },
        "detail": detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_to_an_hour_at_most() {
        let waits: Vec<i64> = (1..=14).map(backoff).collect();
        assert_eq!(&waits[..5], [1, 2, 4, 8, 16]);
        assert!(waits.iter().all(|w| *w <= 4096));
    }

    #[test]
    fn signatures_are_github_style_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
