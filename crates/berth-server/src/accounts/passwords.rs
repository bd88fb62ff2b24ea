//! Password checks with bounded memory and a bounded queue.
//!
//! - argon2 runs in a fixed number of reusable work areas (one per core), on the
//!   blocking pool: a crowd of sign-ins waits for an area instead of each allocating
//!   19 MiB on whatever thread is free. Areas idle for a while are handed back.
//! - A sign-in verified recently is remembered for a few minutes under an HMAC of
//!   (user, secret, credentials epoch) with a key that exists only in this process, so
//!   scripts that send a password on every request do not pay argon2 every time. A new
//!   password (a new epoch) or a removed user finds nothing; a wrong password is a
//!   different key and is always checked in full.
//! - At most `MAX_WAITING` checks wait for an area; past that, sign-ins are refused at
//!   once (`429`), so a flood of guesses cannot grow an unbounded queue. Remembered
//!   sign-ins and access tokens never enter the queue.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use berth_auth::secret::{self, Cost, HashError, PasswordWork};
use tokio::sync::Semaphore;

/// How long a verified sign-in is remembered.
const REMEMBER_FOR: Duration = Duration::from_secs(5 * 60);
/// Verified sign-ins remembered at most (32 bytes + an instant each).
const MAX_REMEMBERED: usize = 10_000;
/// Password checks that may wait for a work area before sign-ins are refused.
const MAX_WAITING: usize = 256;

/// Too many password checks are waiting already.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

pub struct PasswordChecker {
    /// Idle work areas; at most `slots` exist, created on first need.
    areas: Mutex<Vec<PasswordWork>>,
    /// One permit per work area.
    slots: Semaphore,
    waiting: AtomicUsize,
    /// Fingerprints of verified sign-ins and when each was verified.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    fingerprint_key: [u8; 32],
    /// When a work area was last handed back.
    last_used: Mutex<Instant>,
}

impl PasswordChecker {
    /// A checker with `areas` work areas (argon2 checks that may run at once).
    pub fn new(areas: usize) -> PasswordChecker {
        PasswordChecker {
            areas: Mutex::new(Vec::new()),
            slots: Semaphore::new(areas.max(1)),
            waiting: AtomicUsize::new(0),
            verified: Mutex::new(HashMap::new()),
            fingerprint_key: secret::new_fingerprint_key(),
            last_used: Mutex::new(Instant::now()),
        }
    }

    /// Whether this exact sign-in was verified in the last few minutes.
    pub fn remembered(&self, user: &str, secret: &str, epoch: i64) -> bool {
        let fingerprint = secret::sign_in_fingerprint(&self.fingerprint_key, user, secret, epoch);
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified
            .get(&fingerprint)
            .is_some_and(|at| at.elapsed() < REMEMBER_FOR)
    }

    fn remember(&self, user: &str, secret: &str, epoch: i64) {
        let fingerprint = secret::sign_in_fingerprint(&self.fingerprint_key, user, secret, epoch);
        let mut verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        if verified.len() >= MAX_REMEMBERED {
            verified.retain(|_, at| at.elapsed() < REMEMBER_FOR);
            if verified.len() >= MAX_REMEMBERED {
                // Full of live entries: start over rather than grow. Forgetting only
                // costs a full check next time.
                verified.clear();
            }
        }
        verified.insert(fingerprint, Instant::now());
    }

    /// Checks `password` against `stored` (for `user` at credentials `epoch`; `None` for
    /// a decoy check of a user that does not exist, never remembered).
    pub async fn verify(
        &self,
        user: &str,
        password: &str,
        epoch: Option<i64>,
        stored: &str,
    ) -> Result<bool, Busy> {
        let _slot = self.slot().await?;
        // Another request may have verified the same sign-in while this one waited.
        if let Some(epoch) = epoch
            && self.remembered(user, password, epoch)
        {
            return Ok(true);
        }
        let (password_owned, stored_owned) = (password.to_owned(), stored.to_owned());
        let ok = self
            .with_area(move |area| area.verify(&password_owned, &stored_owned))
            .await
            .unwrap_or(false);
        if ok && let Some(epoch) = epoch {
            self.remember(user, password, epoch);
        }
        Ok(ok)
    }

    /// Hashes a new password in a work area (waiting for one however long it takes:
    /// this is an administrator's or a signed-in user's request, not a guess).
    pub async fn hash(&self, password: &str, cost: Cost) -> Result<String, HashError> {
        let _slot = self.slots.acquire().await;
        let password = password.to_owned();
        self.with_area(move |area| area.hash(&password, cost))
            .await
            .unwrap_or_else(|| Err(HashError("the hashing task failed".into())))
    }

    /// A work-area permit, unless too many checks are waiting already.
    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, Busy> {
        if let Ok(permit) = self.slots.try_acquire() {
            return Ok(permit);
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= MAX_WAITING {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(Busy);
        }
        let permit = self.slots.acquire().await;
        self.waiting.fetch_sub(1, Ordering::AcqRel);
        permit.map_err(|_| Busy)
    }

    /// Runs `work` with a work area on the blocking pool (the caller holds a slot, so an
    /// idle area exists or may be created). `None` if the task failed.
    async fn with_area<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut PasswordWork) -> T + Send + 'static,
    ) -> Option<T> {
        let mut area = self
            .areas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default();
        let (result, area) = tokio::task::spawn_blocking(move || {
            let result = work(&mut area);
            (result, area)
        })
        .await
        .ok()?;
        self.areas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(area);
        *self.last_used.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Some(result)
    }

    /// Hands back the work areas if none was used for `idle`, and forgets expired
    /// sign-ins. Returns the bytes released.
    pub fn release_idle(&self, idle: Duration) -> usize {
        self.verified
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|_, at| at.elapsed() < REMEMBER_FOR);
        if self
            .last_used
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
            < idle
        {
            return 0;
        }
        let released: Vec<PasswordWork> =
            std::mem::take(&mut *self.areas.lock().unwrap_or_else(|e| e.into_inner()));
        released.iter().map(PasswordWork::size).sum()
    }

    /// Bytes held in idle work areas (for tests and metrics).
    pub fn held(&self) -> usize {
        self.areas
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(PasswordWork::size)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn checks_share_a_fixed_number_of_areas_and_remember_only_successes() {
        let checker = std::sync::Arc::new(PasswordChecker::new(2));
        let hash = checker.hash("right password", Cost::Full).await.unwrap();
        let mut checks = Vec::new();
        for i in 0..8 {
            let (checker, hash) = (checker.clone(), hash.clone());
            checks.push(tokio::spawn(async move {
                let password = if i % 2 == 0 {
                    "right password"
                } else {
                    "wrong"
                };
                checker.verify("alice", password, Some(7), &hash).await
            }));
        }
        for (i, check) in checks.into_iter().enumerate() {
            assert_eq!(check.await.unwrap(), Ok(i % 2 == 0));
        }
        assert!(checker.held() <= 2 * 19 * 1024 * 1024, "at most two areas");
        assert!(checker.remembered("alice", "right password", 7));
        assert!(!checker.remembered("alice", "wrong", 7));
        assert!(
            !checker.remembered("alice", "right password", 8),
            "a new epoch"
        );
        assert!(!checker.remembered("bob", "right password", 7));
        assert_eq!(checker.release_idle(Duration::from_secs(60)), 0, "not idle");
        assert!(checker.release_idle(Duration::ZERO) > 0);
        assert_eq!(checker.held(), 0);
    }

    #[tokio::test]
    async fn a_decoy_check_is_never_remembered() {
        let checker = PasswordChecker::new(1);
        let ok = checker
            .verify("ghost", "anything", None, secret::DECOY_HASH)
            .await;
        assert_eq!(ok, Ok(false));
    }
}
