//! Failed sign-in limits, counted in the metadata store so that they hold across every
//! node: after `max_failures` failures within `window` for one key (a client address, a
//! user name), every further attempt with that key is refused until the window ends —
//! including one that would have succeeded, or guessing would go on. N nodes behind a
//! load balancer give a guesser the same N tries as one, not N× as many.
//!
//! An attempt counts as a failure from the moment it starts ([`SignInLimits::begin`])
//! and is forgiven only when it succeeds: otherwise many attempts sent at once would all
//! pass the check before the first one failed. This check-and-count-first policy on
//! failures only is not what general rate limiters (which count every request) express;
//! it is a fixed window per key, one row per key in the store.

use std::sync::Arc;
use std::time::Duration;

use berth_meta::{MetaStore, SignInWindow};

use super::{SignInError, now};

pub struct SignInLimits {
    meta: Arc<dyn MetaStore>,
    max_failures: u32,
    /// Whole seconds: the store's windows are kept in unix seconds.
    window: i64,
}

/// An attempt [`SignInLimits::begin`] counted, to forgive if it succeeds.
#[must_use = "an attempt that succeeded must be forgiven"]
pub struct Attempt {
    key: String,
    started_at: i64,
}

impl SignInLimits {
    pub fn new(meta: Arc<dyn MetaStore>, max_failures: u32, window: Duration) -> SignInLimits {
        SignInLimits {
            meta,
            max_failures: max_failures.max(1),
            window: window.as_secs().max(1) as i64,
        }
    }

    /// `Err(Locked(wait))` if any of `keys` is locked out; counts nothing.
    pub async fn check(&self, keys: &[&str]) -> Result<(), SignInError> {
        let now = now();
        let windows = self.meta.sign_in_windows(keys, now - self.window).await?;
        match windows
            .iter()
            .flatten()
            .filter(|w| w.attempts >= self.max_failures)
            .map(|w| self.wait(w, now))
            .max()
        {
            Some(wait) => Err(SignInError::Locked(wait)),
            None => Ok(()),
        }
    }

    /// Starts an attempt for `key`, counted as a failure until it is forgiven;
    /// `Err(Locked(wait))` if the key was locked out already.
    pub async fn begin(&self, key: &str) -> Result<Attempt, SignInError> {
        let now = now();
        let window = self
            .meta
            .count_sign_in_attempt(key, now - self.window, now)
            .await?;
        if window.attempts > self.max_failures {
            // Counted past the limit: harmless, the key stays locked until the window
            // ends whatever its count.
            return Err(SignInError::Locked(self.wait(&window, now)));
        }
        Ok(Attempt {
            key: key.to_owned(),
            started_at: window.started_at,
        })
    }

    /// Forgives an attempt: it succeeded, or never got to check anything. A store that
    /// fails here leaves one failure counted too many, which only a guesser would notice.
    pub async fn forgive(&self, attempt: Attempt) {
        if let Err(e) = self
            .meta
            .forgive_sign_in(&attempt.key, attempt.started_at)
            .await
        {
            tracing::warn!(error = %e, "forgiving a sign-in attempt failed");
        }
    }

    /// Forgets the windows that have ended.
    pub async fn sweep(&self) -> Result<u64, berth_meta::MetaError> {
        self.meta.sweep_sign_in_windows(now() - self.window).await
    }

    fn wait(&self, window: &SignInWindow, now: i64) -> Duration {
        Duration::from_secs((window.started_at + self.window - now).max(1) as u64)
    }
}
