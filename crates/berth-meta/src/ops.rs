//! What running berth in production records beyond content: request windows for the
//! pull rate limits, counted in the store so that every node shares them, and the audit
//! log (who did what, from where, when).

use async_trait::async_trait;
use berth_core::RepoName;

use crate::Result;

/// A fixed window of requests counted for one key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestWindow {
    /// Requests counted in the window, the one just counted included.
    pub count: u32,
    /// When the window ends (unix seconds, the callers' clock).
    pub ends_at: i64,
}

/// A tag with when it was pushed (moved here) and last pulled, for retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagAge {
    pub name: String,
    pub digest: String,
    /// Unix seconds.
    pub pushed_at: i64,
    /// Unix seconds, to the minute; `None` if never pulled.
    pub pulled_at: Option<i64>,
    /// Increasing with each move of any tag of the repository: orders tags pushed in the
    /// same second.
    pub order: i64,
}

/// One thing someone did, for the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// Unix seconds.
    pub at: i64,
    /// A user name, `anonymous`, or `cli` (a command on the server).
    pub actor: String,
    /// The client's address (`local` for a command on the server).
    pub client: String,
    /// What was done: `push`, `delete`, `tag-move`, `sign-in`, `token-create`, …
    pub action: String,
    /// The repository (or namespace) it was done to, if any.
    pub target: Option<String>,
    /// The particulars, a JSON object (never a secret).
    pub detail: String,
}

/// An audit event as stored, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Increasing in the order events were recorded.
    pub id: i64,
    pub event: AuditEvent,
}

/// Which audit events to list: newest first, at most `limit`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only events at or after this (unix seconds).
    pub since: Option<i64>,
    /// Only this actor's.
    pub actor: Option<String>,
    /// Only those about this repository, or about this namespace and its repositories.
    pub target: Option<String>,
    /// Only events older than this entry (paging).
    pub before_id: Option<i64>,
    pub limit: u32,
}

#[async_trait]
pub trait OpsStore: Send + Sync + 'static {
    /// Appends events to the audit log, in order, in one write.
    async fn record_audit(&self, events: &[AuditEvent]) -> Result<()>;
    /// Audit events matching `query`, newest first.
    async fn audit_events(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>>;
    /// Removes audit events older than `before` (unix seconds); returns how many.
    async fn prune_audit(&self, before: i64) -> Result<u64>;

    // ---- retention ----
    /// Records that `tag` was pulled at `at` (kept to the minute).
    async fn record_tag_pull(&self, repository: &RepoName, tag: &str, at: i64) -> Result<()>;
    /// Every tag of `repository` with when it was pushed and last pulled.
    async fn tag_ages(&self, repository: &RepoName) -> Result<Vec<TagAge>>;
    /// The scopes that set policy `key`, with its value, by scope.
    async fn policy_scopes(&self, key: &str) -> Result<Vec<(String, String)>>;
    /// The repositories `scope` names: itself, or a namespace's, by name.
    async fn repositories_in(&self, scope: &str) -> Result<Vec<RepoName>>;

    /// Counts one request for `key` (opaque, at most a few hundred bytes) and returns
    /// its window: the current one, or a new one of `window` seconds from `now` if the
    /// last has ended or there was none. Atomic: requests counted at once, from any
    /// number of store instances, each get a count of their own.
    async fn count_request(&self, key: &str, window: i64, now: i64) -> Result<RequestWindow>;
    /// `key`'s window if it has not ended at `now`; counts nothing.
    async fn request_window(&self, key: &str, now: i64) -> Result<Option<RequestWindow>>;
    /// Forgets the windows that ended by `now`; returns how many.
    async fn sweep_request_windows(&self, now: i64) -> Result<u64>;
}

/// Counts a request (`$1` key, `$2` now, `$3` window length): one statement, so
/// concurrent counts serialize on the key's row. One text for both backends (in `SET`,
/// columns are the row's values before the update).
pub(crate) const COUNT_REQUEST_SQL: &str = "INSERT INTO request_windows (key, ends_at, count)
    VALUES ($1, $2 + $3, 1)
    ON CONFLICT (key) DO UPDATE SET
        count = CASE WHEN request_windows.ends_at <= $2 THEN 1
                     ELSE request_windows.count + 1 END,
        ends_at = CASE WHEN request_windows.ends_at <= $2 THEN $2 + $3
                       ELSE request_windows.ends_at END
    RETURNING count, ends_at";

pub(crate) const REQUEST_WINDOW_SQL: &str =
    "SELECT count, ends_at FROM request_windows WHERE key = $1 AND ends_at > $2";

pub(crate) const SWEEP_REQUEST_WINDOWS_SQL: &str =
    "DELETE FROM request_windows WHERE ends_at <= $1";

/// A row of [`COUNT_REQUEST_SQL`] or [`REQUEST_WINDOW_SQL`].
pub(crate) fn request_window(row: (i64, i64)) -> RequestWindow {
    RequestWindow {
        count: u32::try_from(row.0).unwrap_or(u32::MAX),
        ends_at: row.1,
    }
}

pub(crate) const RECORD_AUDIT_SQL: &str = "INSERT INTO audit_events
    (at, actor, client, action, target, detail) VALUES ($1, $2, $3, $4, $5, $6)";

/// `$1` since, `$2` actor, `$3` target, `$4` before id, `$5` limit; a NULL filter
/// matches everything. A target matches itself and, as a namespace, what is under it.
pub(crate) const AUDIT_EVENTS_SQL: &str = "SELECT id, at, actor, client, action, target, detail
    FROM audit_events
    WHERE ($1 IS NULL OR at >= $1)
      AND ($2 IS NULL OR actor = $2)
      AND ($3 IS NULL OR target = $3 OR substr(target, 1, length($3) + 1) = $3 || '/')
      AND ($4 IS NULL OR id < $4)
    ORDER BY id DESC
    LIMIT $5";

pub(crate) const PRUNE_AUDIT_SQL: &str = "DELETE FROM audit_events WHERE at < $1";

/// A row of [`AUDIT_EVENTS_SQL`].
pub(crate) type AuditRow = (i64, i64, String, String, String, Option<String>, String);

pub(crate) fn audit_entry(row: AuditRow) -> AuditEntry {
    let (id, at, actor, client, action, target, detail) = row;
    AuditEntry {
        id,
        event: AuditEvent {
            at,
            actor,
            client,
            action,
            target,
            detail,
        },
    }
}

/// A webhook: where to tell about events on a namespace or repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    pub id: String,
    /// A namespace (`gallery`: every repository under it) or a repository.
    pub scope: String,
    pub url: String,
    /// `push`, `delete`, `tag-move`, `pull`.
    pub events: Vec<String>,
    /// The HMAC-SHA256 key deliveries are signed with, if any.
    pub secret: Option<String>,
    /// `docker-hub` or `cloudevents`.
    pub format: String,
    pub created_by: String,
    pub created_at: i64,
}

/// One event to deliver to one webhook, and how its delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: i64,
    pub webhook_id: String,
    pub event: String,
    /// The request body.
    pub payload: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub state: String,
    /// Attempts made (or, once claimed, being made).
    pub attempts: u32,
    pub next_attempt_at: i64,
    /// The receiver's last HTTP status, if it answered.
    pub last_status: Option<u16>,
    /// Why the last attempt failed, if it did.
    pub last_error: Option<String>,
    pub created_at: i64,
    pub finished_at: Option<i64>,
}

/// How a delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOutcome {
    /// `delivered`, `pending` (try again at `next_attempt_at`) or `failed`.
    pub state: String,
    pub status: Option<u16>,
    pub error: Option<String>,
    pub next_attempt_at: i64,
    pub now: i64,
}

/// Webhooks and their deliveries: a queue in the store, so deliveries survive a
/// restart and any node may make them.
#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    async fn add_webhook(&self, hook: &Webhook) -> Result<()>;
    /// Removes a webhook and its delivery history; `false` if there was none.
    async fn remove_webhook(&self, id: &str) -> Result<bool>;
    /// Every webhook, by scope then id.
    async fn webhooks(&self) -> Result<Vec<Webhook>>;
    /// Queues `payload` for `webhook_id`, due at once; returns the delivery's id.
    async fn enqueue_delivery(
        &self,
        webhook_id: &str,
        event: &str,
        payload: &str,
        now: i64,
    ) -> Result<i64>;
    /// Claims up to `limit` pending deliveries due at `now` for one attempt each: their
    /// attempt count goes up and they are not due again for `lease` seconds, so two
    /// nodes never make the same attempt.
    async fn claim_deliveries(&self, now: i64, lease: i64, limit: u32) -> Result<Vec<Delivery>>;
    /// Records how a claimed delivery's attempt ended.
    async fn finish_attempt(&self, id: i64, outcome: &AttemptOutcome) -> Result<()>;
    /// A webhook's deliveries, newest first.
    async fn deliveries(&self, webhook_id: &str, limit: u32) -> Result<Vec<Delivery>>;
}

pub(crate) const ADD_WEBHOOK_SQL: &str = "INSERT INTO webhooks
    (id, scope, url, events, secret, format, created_by, created_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";

pub(crate) const REMOVE_DELIVERIES_SQL: &str =
    "DELETE FROM webhook_deliveries WHERE webhook_id = $1";
pub(crate) const REMOVE_WEBHOOK_SQL: &str = "DELETE FROM webhooks WHERE id = $1";

pub(crate) const WEBHOOKS_SQL: &str =
    "SELECT id, scope, url, events, secret, format, created_by, created_at
     FROM webhooks ORDER BY scope, id";

pub(crate) const ENQUEUE_DELIVERY_SQL: &str = "INSERT INTO webhook_deliveries
    (webhook_id, event, payload, state, attempts, next_attempt_at, created_at)
    VALUES ($1, $2, $3, 'pending', 0, $4, $4) RETURNING id";

pub(crate) const FINISH_ATTEMPT_SQL: &str = "UPDATE webhook_deliveries
    SET state = $2, last_status = $3, last_error = $4, next_attempt_at = $5,
        finished_at = CASE WHEN $2 = 'pending' THEN NULL ELSE $6 END
    WHERE id = $1";

pub(crate) const DELIVERIES_SQL: &str = "SELECT id, webhook_id, event, payload, state, attempts,
        next_attempt_at, last_status, last_error, created_at, finished_at
    FROM webhook_deliveries WHERE webhook_id = $1 ORDER BY id DESC LIMIT $2";

pub(crate) type WebhookRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    String,
    String,
    i64,
);

pub(crate) fn webhook(row: WebhookRow) -> Webhook {
    let (id, scope, url, events, secret, format, created_by, created_at) = row;
    Webhook {
        id,
        scope,
        url,
        events: events
            .split(',')
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect(),
        secret,
        format,
        created_by,
        created_at,
    }
}

pub(crate) type DeliveryRow = (
    i64,
    String,
    String,
    String,
    String,
    i64,
    i64,
    Option<i64>,
    Option<String>,
    i64,
    Option<i64>,
);

pub(crate) fn delivery(row: DeliveryRow) -> Delivery {
    let (
        id,
        webhook_id,
        event,
        payload,
        state,
        attempts,
        next_attempt_at,
        last_status,
        last_error,
        created_at,
        finished_at,
    ) = row;
    Delivery {
        id,
        webhook_id,
        event,
        payload,
        state,
        attempts: u32::try_from(attempts).unwrap_or(0),
        next_attempt_at,
        last_status: last_status.and_then(|s| u16::try_from(s).ok()),
        last_error,
        created_at,
        finished_at,
    }
}

pub(crate) const RECORD_TAG_PULL_SQL: &str = "UPDATE tags SET pulled_at = $3
    WHERE repository_id = (SELECT id FROM repositories WHERE name = $1)
      AND name = $2 AND (pulled_at IS NULL OR pulled_at < $3 - 60)";

pub(crate) const TAG_AGES_SQL: &str = "SELECT t.name, t.digest, t.updated_at, t.pulled_at,
        COALESCE((SELECT MAX(h.id) FROM tag_history h
                  WHERE h.repository_id = t.repository_id AND h.tag = t.name), 0)
    FROM tags t
    WHERE t.repository_id = (SELECT id FROM repositories WHERE name = $1)
    ORDER BY t.name";

pub(crate) const POLICY_SCOPES_SQL: &str =
    "SELECT scope, value FROM policies WHERE key = $1 ORDER BY scope";

pub(crate) const REPOSITORIES_IN_SQL: &str = "SELECT name FROM repositories
    WHERE name = $1 OR substr(name, 1, length($1) + 1) = $1 || '/' ORDER BY name";

pub(crate) fn tag_age(row: (String, String, i64, Option<i64>, i64)) -> TagAge {
    let (name, digest, pushed_at, pulled_at, order) = row;
    TagAge {
        name,
        digest,
        pushed_at,
        pulled_at,
        order,
    }
}

pub(crate) fn repo_names(names: Vec<String>) -> Result<Vec<RepoName>> {
    names
        .into_iter()
        .map(|n| {
            n.parse()
                .map_err(|e: berth_core::NameError| crate::MetaError(Box::new(e)))
        })
        .collect()
}
