//! Passwords and personal access tokens.
//!
//! Passwords are hashed with argon2id (slow on purpose: they may be guessable). Access
//! tokens are 192 random bits, so a fast SHA-256 of the secret is enough to store, and
//! it lets the store find a token by its hash in one indexed read.

use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use sha2::Digest as _;

/// Every access token starts with this, so a client (and a secret scanner) can tell a
/// token from a password.
pub const TOKEN_PREFIX: &str = "berth_pat_";

#[derive(Debug, thiserror::Error)]
#[error("hashing the password failed: {0}")]
pub struct HashError(String);

pub fn hash_password(password: &str) -> Result<String, HashError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Hashes a password berth generated itself (128 random bits). Nobody can guess it, so
/// it needs no work factor against guessing: a light argon2id keeps the first start in
/// milliseconds. Passwords people choose always get [`hash_password`]'s full cost.
pub fn hash_generated_password(password: &str) -> Result<String, HashError> {
    let params = argon2::Params::new(1024, 1, 1, None).map_err(|e| HashError(e.to_string()))?;
    Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
        .hash_password(password.as_bytes())
        .map(|hash| hash.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches a stored argon2 hash (with the parameters it was made
/// with); a malformed hash matches nothing.
pub fn verify_password(password: &str, stored: &str) -> bool {
    PasswordHash::new(stored)
        .map(|hash| {
            Argon2::default()
                .verify_password(password.as_bytes(), &hash)
                .is_ok()
        })
        .unwrap_or(false)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(buf.as_mut_slice());
    hex::encode(buf)
}

/// A new access token secret, shown to its owner once.
pub fn new_token_secret() -> String {
    format!("{TOKEN_PREFIX}{}", random_hex(24))
}

/// A short public id for a token (what `token ls` shows and `token revoke` takes).
pub fn new_token_id() -> String {
    random_hex(8)
}

/// A generated password (for the first admin when none is given).
pub fn new_password() -> String {
    random_hex(16)
}

/// A key for signing JWTs.
pub fn new_signing_key() -> String {
    random_hex(32)
}

/// What the store keeps of a token secret.
pub fn hash_token_secret(secret: &str) -> String {
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

pub fn looks_like_token(secret: &str) -> bool {
    secret.starts_with(TOKEN_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("correct horse!", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
        // A light hash of a generated password verifies the same way.
        let generated = new_password();
        let light = hash_generated_password(&generated).unwrap();
        assert!(light.starts_with("$argon2id$") && light.contains("m=1024,t=1"));
        assert!(verify_password(&generated, &light));
        assert!(!verify_password("guess", &light));
    }

    #[test]
    fn token_secrets_are_unique_and_stored_hashed() {
        let a = new_token_secret();
        let b = new_token_secret();
        assert_ne!(a, b);
        assert!(looks_like_token(&a) && !looks_like_token("hunter2"));
        assert_eq!(a.len(), TOKEN_PREFIX.len() + 48);
        assert_eq!(hash_token_secret(&a), hash_token_secret(&a));
        assert_ne!(hash_token_secret(&a), hash_token_secret(&b));
        assert!(!hash_token_secret(&a).contains(&a[TOKEN_PREFIX.len()..]));
    }
}
