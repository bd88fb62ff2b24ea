//! Failed-login limiting: after `max_failures` failures within `window` for one key (a
//! client address, a user name), every further attempt with that key is refused until
//! the window ends — including one that would have succeeded, or guessing would go on.
//!
//! This is a check-then-count policy on failures only, which general rate limiters
//! (that count every request) do not express; it is a fixed window per key.

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

    /// `Err(wait)` if `key` is locked out for `wait` more.
    pub fn check(&self, key: &str) -> Result<(), Duration> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        match keys.get(key) {
            Some(&(failures, start)) if failures >= self.max_failures => {
                let end = start + self.window;
                let now = Instant::now();
                if end > now { Err(end - now) } else { Ok(()) }
            }
            _ => Ok(()),
        }
    }

    pub fn record_failure(&self, key: &str) {
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
        entry.0 += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_a_key_after_too_many_failures_until_the_window_ends() {
        let limiter = FailureLimiter::new(3, Duration::from_millis(200));
        for _ in 0..3 {
            assert!(limiter.check("ip:1").is_ok());
            limiter.record_failure("ip:1");
        }
        let wait = limiter.check("ip:1").unwrap_err();
        assert!(wait <= Duration::from_millis(200));
        assert!(limiter.check("ip:2").is_ok(), "other keys are not affected");
        std::thread::sleep(Duration::from_millis(250));
        assert!(limiter.check("ip:1").is_ok());
        limiter.record_failure("ip:1");
        assert!(
            limiter.check("ip:1").is_ok(),
            "a new window starts from zero"
        );
    }
}
