//! Pull rate limits in Docker Hub's model: manifest GETs are counted (HEADs are not)
//! per anonymous client address and per signed-in account, in fixed windows kept in the
//! metadata store so that every node counts against the same allowance. Each manifest
//! answer says where the caller stands (`RateLimit-Limit: 100;w=21600`,
//! `RateLimit-Remaining: 76;w=21600`); past the limit the answer is `429
//! TOOMANYREQUESTS` with `Retry-After`, which Docker's client shows as
//! "toomanyrequests: …".

use std::sync::Arc;

use axum::http::HeaderName;
use berth_core::ErrorCode;
use berth_meta::MetaStore;

use crate::config::{Limits, PullLimit};
use crate::http::ApiError;

pub const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
pub const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");

/// Who a pull counts against.
pub enum Puller<'a> {
    /// A signed-in account, by name.
    Account(&'a str),
    /// An anonymous client, by address (an IPv6 client by its /64).
    Anonymous(&'a str),
}

pub struct PullLimits {
    meta: Arc<dyn MetaStore>,
    anonymous: Option<PullLimit>,
    account: Option<PullLimit>,
}

/// Where a caller stands after a manifest request: the headers to send.
pub struct Standing {
    limit: PullLimit,
    remaining: u32,
}

impl Standing {
    pub fn headers(&self) -> [(HeaderName, String); 2] {
        let window = self.limit.window.as_secs();
        [
            (RATELIMIT_LIMIT, format!("{};w={window}", self.limit.count)),
            (
                RATELIMIT_REMAINING,
                format!("{};w={window}", self.remaining),
            ),
        ]
    }
}

impl PullLimits {
    pub fn new(meta: Arc<dyn MetaStore>, limits: &Limits) -> PullLimits {
        PullLimits {
            meta,
            anonymous: limits.pull_limit_anonymous,
            account: limits.pull_limit_account,
        }
    }

    /// For a manifest request by `puller`: a GET is counted, a HEAD only looks. `None`
    /// when no limit applies; `Err` (429 with the headers) past the limit. A store that
    /// fails lets the pull through: the limit protects the registry, it must not be
    /// what takes it down.
    pub async fn check(
        &self,
        puller: &Puller<'_>,
        head: bool,
    ) -> Result<Option<Standing>, ApiError> {
        let limit = match puller {
            Puller::Account(_) => self.account,
            Puller::Anonymous(_) => self.anonymous,
        };
        // Without a limit, a manifest request costs nothing here.
        let Some(limit) = limit else {
            return Ok(None);
        };
        let (key, who) = match puller {
            Puller::Account(name) => (format!("pull:user:{name}"), format!("account {name}")),
            Puller::Anonymous(address) => (
                format!("pull:addr:{address}"),
                format!("anonymous client {address}"),
            ),
        };
        let now = crate::accounts::now();
        let window = limit.window.as_secs().max(1) as i64;
        let counted = if head {
            self.meta.request_window(&key, now).await.map(|w| {
                w.unwrap_or(berth_meta::RequestWindow {
                    count: 0,
                    ends_at: now + window,
                })
            })
        } else {
            self.meta.count_request(&key, window, now).await
        };
        let counted = match counted {
            Ok(counted) => counted,
            Err(e) => {
                tracing::warn!(error = %e, "counting a pull failed; it is let through");
                return Ok(None);
            }
        };
        let standing = Standing {
            limit,
            remaining: limit.count.saturating_sub(counted.count),
        };
        // A HEAD is never refused: it is how a client learns where it stands.
        if head || counted.count <= limit.count {
            return Ok(Some(standing));
        }
        let retry_after = (counted.ends_at - now).max(1) as u64;
        let mut refusal = ApiError::new(
            ErrorCode::TooManyRequests,
            format!(
                "pull rate limit reached: {} manifest pulls per {} for {who}; retry in {}{}",
                limit.count,
                humantime::format_duration(limit.window),
                humantime::format_duration(std::time::Duration::from_secs(retry_after)),
                if matches!(puller, Puller::Anonymous(_))
                    && self.account.is_some_and(|a| a.count > limit.count)
                {
                    " (signed-in accounts may pull more)"
                } else {
                    ""
                },
            ),
        )
        .with_header(axum::http::header::RETRY_AFTER, retry_after.to_string());
        for (name, value) in standing.headers() {
            refusal = refusal.with_header(name, value);
        }
        Err(refusal)
    }
}
