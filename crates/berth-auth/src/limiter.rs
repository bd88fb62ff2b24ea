//! Failed-login limiting: after `max_failures` failures within `window` for one key (a
//! client address, a user name), every further attempt with that key is refused until
//! the window ends — including one that would have succeeded, or guessing would go on.
//!
//! An attempt counts as a failure from the moment it starts ([`FailureLimiter::begin`])
//! and is forgiven only when it succeeds: otherwise many attempts sent at once would all
//! pass the check before the first one failed. This check-and-count-first policy on
//! failures only is not what general rate limiters (which count every request) express;
//! it is a fixed window per key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys kept before windows that have ended are swept out.
const SWEEP_AT: usize = 10_000;

pub struct FailureLimiter {
    max_failures: u32,
    window: Duration,
    keys: Mutex<HashMap<String, (u32, Instant)>>,
}

impl FailureLimiter {
    pub fn new(max_failures: u32, window: Duration) -> FailureLimiter {
        FailureLimiter {
            max_failures: max_failures.max(1),
            window,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// Starts an attempt for `key`: `Err(wait)` if the key is locked out for `wait`
    /// more; otherwise the attempt is counted as a failure until [`Self::succeeded`].
    pub fn begin(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if keys.len() >= SWEEP_AT {
            let window = self.window;
            keys.retain(|_, (_, start)| *start + window > now);
        }
        let entry = keys.entry(key.to_owned()).or_insert((0, now));
        if entry.1 + self.window <= now {
            *entry = (0, now);
        }
        if entry.0 >= self.max_failures {
            return Err(entry.1 + self.window - now);
        }
        entry.0 += 1;
        Ok(())
    }

    /// `Err(wait)` if `key` is locked out for `wait` more; counts nothing.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        match keys.get(key) {
            Some((failures, start))
                if *failures >= self.max_failures && *start + self.window > now =>
            {
                Err(*start + self.window - now)
            }
            _ => Ok(()),
        }
    }

    /// Forgives the attempt `begin` counted: it succeeded.
    pub fn succeeded(&self, key: &str) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = keys.get_mut(key) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_a_key_after_too_many_failures_until_the_window_ends() {
        let limiter = FailureLimiter::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(limiter.begin("ip:1").is_ok());
        }
        let wait = limiter.begin("ip:1").unwrap_err();
        assert!(wait <= Duration::from_millis(200));
        assert!(limiter.check("ip:1").is_err(), "checking sees the lock");
        assert!(limiter.begin("ip:2").is_ok(), "other keys are not affected");
        assert!(limiter.check("ip:3").is_ok() && limiter.check("ip:3").is_ok());
        assert!(limiter.begin("ip:3").is_ok(), "checking counts nothing");
        std::thread::sleep(Duration::from_millis(250));
        assert!(
            limiter.begin("ip:1").is_ok(),
            "a new window starts from zero"
        );
    }

    #[test]
    fn attempts_count_until_they_succeed() {
        let limiter = FailureLimiter::new(2, Duration::from_secs(60));
        // Two attempts in flight at once use up the allowance...
        assert!(limiter.begin("u").is_ok());
        assert!(limiter.begin("u").is_ok());
        assert!(limiter.begin("u").is_err());
        // ...until one of them turns out to have succeeded.
        limiter.succeeded("u");
        assert!(limiter.begin("u").is_ok());
        for _ in 0..10 {
            limiter.succeeded("u");
            limiter.succeeded("u");
            assert!(
                limiter.begin("u").is_ok(),
                "successes never lock anyone out"
            );
        }
    }
}
