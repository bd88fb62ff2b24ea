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
//! - Checks of the same (user, secret, epoch) run one at a time: a crowd of clients
//!   arriving with the same password costs one argon2 run, and the others find it
//!   remembered.
//! - At most `MAX_WAITING` checks wait for an area; past that, sign-ins are refused at
//!   once (`429`), so a flood of guesses cannot grow an unbounded queue. Remembered
//!   sign-ins and access tokens never enter the queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
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
    /// Fingerprints being checked now, each with the lock its check holds.
    checking: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
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
            checking: Mutex::new(HashMap::new()),
            fingerprint_key: secret::new_fingerprint_key(),
            last_used: Mutex::new(Instant::now()),
        }
    }

    fn fingerprint(&self, user: &str, secret: &str, epoch: i64) -> [u8; 32] {
        secret::sign_in_fingerprint(&self.fingerprint_key, user, secret, epoch)
    }

    /// Whether this exact sign-in was verified in the last few minutes.
    pub fn remembered(&self, user: &str, secret: &str, epoch: i64) -> bool {
        self.is_remembered(&self.fingerprint(user, secret, epoch))
    }

    fn is_remembered(&self, fingerprint: &[u8; 32]) -> bool {
        let verified = self.verified.lock().unwrap_or_else(|e| e.into_inner());
        verified
            .get(fingerprint)
            .is_some_and(|at| at.elapsed() < REMEMBER_FOR)
    }

    fn remember(&self, fingerprint: [u8; 32]) {
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

    /// The lock that checks of `fingerprint` take turns on.
    fn check_lock(&self, fingerprint: [u8; 32]) -> Arc<tokio::sync::Mutex<()>> {
        let mut checking = self.checking.lock().unwrap_or_else(|e| e.into_inner());
        checking.entry(fingerprint).or_default().clone()
    }

    /// Forgets the lock of `fingerprint` once no check holds or awaits it.
    fn release_check_lock(&self, fingerprint: &[u8; 32]) {
        let mut checking = self.checking.lock().unwrap_or_else(|e| e.into_inner());
        // Only the map's reference left: nobody holds it or waits for it.
        if checking
            .get(fingerprint)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            checking.remove(fingerprint);
        }
    }

    /// Waits for this sign-in's turn: checks of the same (user, secret, epoch) run one
    /// at a time, so the ones that waited find the first one's result remembered.
    /// `epoch` is `None` for a decoy check of a user that does not exist (no turn to
    /// wait for, never remembered).
    pub async fn turn(&self, user: &str, secret: &str, epoch: Option<i64>) -> CheckTurn<'_> {
        let Some(epoch) = epoch else {
            return CheckTurn {
                checker: self,
                fingerprint: None,
                guard: None,
            };
        };
        let fingerprint = self.fingerprint(user, secret, epoch);
        let lock = self.check_lock(fingerprint);
        let guard = lock.lock_owned().await;
        CheckTurn {
            checker: self,
            fingerprint: Some(fingerprint),
            guard: Some(guard),
        }
    }

    /// Checks `password` against `stored` in its turn (see [`PasswordChecker::turn`]).
    pub async fn verify(
        &self,
        user: &str,
        password: &str,
        epoch: Option<i64>,
        stored: &str,
    ) -> Result<bool, Busy> {
        let turn = self.turn(user, password, epoch).await;
        if turn.remembered() {
            return Ok(true);
        }
        turn.check(password, stored).await
    }

    /// One argon2 check in a work area.
    async fn check(&self, password: &str, stored: &str) -> Result<bool, Busy> {
        let _slot = self.slot().await?;
        let (password, stored) = (password.to_owned(), stored.to_owned());
        Ok(self
            .with_area(move |area| area.verify(&password, &stored))
            .await
            .unwrap_or(false))
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

/// A sign-in's turn to be checked (see [`PasswordChecker::turn`]).
pub struct CheckTurn<'a> {
    checker: &'a PasswordChecker,
    fingerprint: Option<[u8; 32]>,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl CheckTurn<'_> {
    /// Whether this sign-in was verified a moment ago (by a check that held the turn
    /// before, or earlier).
    pub fn remembered(&self) -> bool {
        self.fingerprint
            .is_some_and(|f| self.checker.is_remembered(&f))
    }

    /// Runs the argon2 check, remembering the sign-in if it succeeds.
    pub async fn check(self, password: &str, stored: &str) -> Result<bool, Busy> {
        let ok = self.checker.check(password, stored).await?;
        if ok && let Some(fingerprint) = self.fingerprint {
            self.checker.remember(fingerprint);
        }
        Ok(ok)
    }
}

impl Drop for CheckTurn<'_> {
    fn drop(&mut self) {
        drop(self.guard.take());
        if let Some(fingerprint) = &self.fingerprint {
            self.checker.release_check_lock(fingerprint);
        }
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
        assert!(
            checker.checking.lock().unwrap().is_empty(),
            "no check locks are left behind"
        );
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
    async fn a_crowd_with_the_same_password_costs_one_check() {
        let checker = std::sync::Arc::new(PasswordChecker::new(2));
        let hash = checker.hash("same password", Cost::Full).await.unwrap();
        checker.release_idle(Duration::ZERO);
        let crowd: Vec<_> = (0..8)
            .map(|_| {
                let (checker, hash) = (checker.clone(), hash.clone());
                tokio::spawn(
                    async move { checker.verify("bob", "same password", Some(1), &hash).await },
                )
            })
            .collect();
        for check in crowd {
            assert_eq!(check.await.unwrap(), Ok(true));
        }
        assert_eq!(checker.held(), 19 * 1024 * 1024, "one work area was enough");
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
