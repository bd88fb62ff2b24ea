//! Passwords and personal access tokens.
//!
//! Passwords are hashed with argon2id (slow on purpose: they may be guessable). Access
//! tokens are 192 random bits, so a fast SHA-256 of the secret is enough to store, and
//! it lets the store find a token by its hash in one indexed read.

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use hmac::{KeyInit, Mac};
use sha2::Digest as _;

/// Every access token starts with this, so a client (and a secret scanner) can tell a
/// token from a password.
pub const TOKEN_PREFIX: &str = "berth_pat_";

/// The most memory a stored hash may ask for when it is verified (64 MiB): hashes are
/// berth's own, and one with a larger cost is refused rather than allowed to
/// allocate without bound.
const MAX_VERIFY_BLOCKS: u32 = 64 * 1024;

/// A hash with the full parameters and a salt no password can reach: verifying against
/// it costs what a real check costs, so an unknown user takes as long to refuse.
pub const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZGVjb3lkZWNveWRlY295$6w9l8f2S8Yh1k0cVhmXk7m8m3mRzC0r1qGvNqGzv7xE";

#[derive(Debug, thiserror::Error)]
#[error("hashing the password failed: {0}")]
pub struct HashError(pub String);

/// How much work a new password hash costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// argon2id's defaults (19 MiB, 2 passes): for passwords people choose.
    Full,
    /// 1 MiB, 1 pass: for passwords berth generated itself (128 random bits). Nobody
    /// can guess them, so they need no work factor, and the first start stays fast.
    Light,
}

impl Cost {
    fn params(self) -> Result<Params, HashError> {
        match self {
            Cost::Full => Ok(Params::DEFAULT),
            Cost::Light => Params::new(1024, 1, 1, None).map_err(|e| HashError(e.to_string())),
        }
    }
}

/// The memory one argon2 computation works in, kept and reused: hashing allocates
/// nothing, so a server that holds a fixed number of these holds a fixed amount of
/// memory however many sign-ins arrive. It grows to the largest cost it has served.
#[derive(Default)]
pub struct PasswordWork {
    blocks: Vec<Block>,
}

impl PasswordWork {
    pub fn new() -> PasswordWork {
        PasswordWork::default()
    }

    /// Bytes held.
    pub fn size(&self) -> usize {
        self.blocks.len() * Block::SIZE
    }

    fn blocks(&mut self, params: &Params) -> &mut [Block] {
        let count = params.block_count();
        if self.blocks.len() < count {
            self.blocks.resize(count, Block::new());
        }
        &mut self.blocks[..count]
    }

    /// A PHC string (`$argon2id$v=19$…`) for a new password.
    pub fn hash(&mut self, password: &str, cost: Cost) -> Result<String, HashError> {
        let failed = |e: &dyn std::fmt::Display| HashError(e.to_string());
        let params = cost.params()?;
        let mut salt = [0u8; 16];
        rand::fill(&mut salt);
        let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
        argon2
            .hash_password_into_with_memory(
                password.as_bytes(),
                &salt,
                &mut out,
                self.blocks(&params),
            )
            .map_err(|e| failed(&e))?;
        let hash = PasswordHash {
            algorithm: Algorithm::Argon2id.ident(),
            version: Some(Version::V0x13.into()),
            params: ParamsString::try_from(&params).map_err(|e| failed(&e))?,
            salt: Some(Salt::new(&salt).map_err(|e| failed(&e))?),
            hash: Some(Output::new(&out).map_err(|e| failed(&e))?),
        };
        Ok(hash.to_string())
    }

    /// Whether `password` matches a stored argon2 hash (with the parameters it was made
    /// with); a malformed hash, or one asking for more than 64 MiB, matches nothing.
    pub fn verify(&mut self, password: &str, stored: &str) -> bool {
        self.try_verify(password, stored).unwrap_or(false)
    }

    fn try_verify(&mut self, password: &str, stored: &str) -> Option<bool> {
        let hash = PasswordHash::new(stored).ok()?;
        let algorithm = Algorithm::try_from(hash.algorithm.as_str()).ok()?;
        let version = hash
            .version
            .map_or(Some(Version::V0x13), |v| Version::try_from(v).ok())?;
        let params = Params::try_from(&hash).ok()?;
        if params.m_cost() > MAX_VERIFY_BLOCKS {
            return None;
        }
        let (salt, expected) = (hash.salt?, hash.hash?);
        let mut out = vec![0u8; expected.len()];
        Argon2::new(algorithm, version, params.clone())
            .hash_password_into_with_memory(
                password.as_bytes(),
                salt.as_ref(),
                &mut out,
                self.blocks(&params),
            )
            .ok()?;
        // `Output`'s equality is constant-time.
        Some(Output::new(&out).ok()? == expected)
    }
}

/// The key under which a verified sign-in is remembered: an HMAC of the user, the
/// secret and the user's credentials epoch, under a key that exists only in this
/// process. Neither the secret nor anything that could be checked against it offline
/// is kept, and a password change (a new epoch) finds nothing.
pub fn sign_in_fingerprint(key: &[u8; 32], user: &str, secret: &str, epoch: i64) -> [u8; 32] {
    let mut mac = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    for part in [user.as_bytes(), secret.as_bytes()] {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.update(&epoch.to_be_bytes());
    mac.finalize().into_bytes().into()
}

/// A random key for [`sign_in_fingerprint`].
pub fn new_fingerprint_key() -> [u8; 32] {
    let mut key = [0u8; 32];
    rand::fill(&mut key);
    key
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

/// A new web session secret (the cookie's value). Like access tokens, 192 random bits,
/// stored only as a SHA-256 hash.
pub fn new_session_secret() -> String {
    format!("berth_ses_{}", random_hex(24))
}

/// A short public id for a token or session (what `token ls` shows and `token revoke` takes).
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

/// A new random value for the web site's pre-session CSRF cookie.
pub fn new_csrf_cookie() -> String {
    random_hex(16)
}

/// The CSRF token a web form carries, derived from a cookie the browser holds (the
/// session secret, or the pre-session CSRF cookie), which another site can neither read
/// nor set. Labelled, so it never equals what the store keeps of a secret.
pub fn csrf_token(cookie_secret: &str) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(b"berth web form\0");
    hash.update(cookie_secret.as_bytes());
    hex::encode(hash.finalize())
}

/// Compares two tokens in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |differ, (x, y)| differ | (x ^ y))
            == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csrf_tokens_follow_their_cookie() {
        let a = csrf_token("berth_ses_a");
        assert_eq!(a, csrf_token("berth_ses_a"));
        assert_ne!(a, csrf_token("berth_ses_b"));
        assert_ne!(a, hash_token_secret("berth_ses_a"));
        assert!(same_secret(&a, &csrf_token("berth_ses_a")));
        assert!(!same_secret(&a, &csrf_token("berth_ses_b")));
        assert!(!same_secret(&a, &a[1..]));
        assert!(!same_secret("", &a));
    }

    #[test]
    fn passwords_verify_only_against_their_hash() {
        let mut work = PasswordWork::new();
        let hash = work.hash("correct horse", Cost::Full).unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(!hash.contains("correct horse"));
        assert!(work.verify("correct horse", &hash));
        assert!(!work.verify("correct horse!", &hash));
        assert!(!work.verify("correct horse", "not a hash"));
        assert_eq!(
            work.size(),
            19 * 1024 * 1024,
            "the area is reused, not grown"
        );
        // A light hash of a generated password verifies the same way, in the same area.
        let generated = new_password();
        let light = work.hash(&generated, Cost::Light).unwrap();
        assert!(light.starts_with("$argon2id$") && light.contains("m=1024,t=1"));
        assert!(work.verify(&generated, &light));
        assert!(!work.verify("guess", &light));
        assert_eq!(work.size(), 19 * 1024 * 1024);
    }

    #[test]
    fn hashes_made_by_the_argon2_crate_itself_verify() {
        use argon2::PasswordHasher as _;
        let hash = Argon2::default()
            .hash_password(b"made elsewhere")
            .unwrap()
            .to_string();
        let mut work = PasswordWork::new();
        assert!(work.verify("made elsewhere", &hash));
        assert!(!work.verify("made elsewher", &hash));
    }

    #[test]
    fn the_decoy_costs_a_full_check_and_matches_nothing() {
        let mut work = PasswordWork::new();
        assert!(!work.verify("", DECOY_HASH));
        assert!(!work.verify("decoy", DECOY_HASH));
        assert_eq!(work.size(), 19 * 1024 * 1024, "it was really computed");
    }

    #[test]
    fn costs_beyond_the_bound_are_refused_without_allocating() {
        let greedy = DECOY_HASH.replace("m=19456", "m=4194304");
        let mut work = PasswordWork::new();
        assert!(!work.verify("x", &greedy));
        assert_eq!(work.size(), 0);
    }

    #[test]
    fn fingerprints_depend_on_every_part_and_the_key() {
        let key = new_fingerprint_key();
        let base = sign_in_fingerprint(&key, "alice", "pw", 7);
        assert_eq!(base, sign_in_fingerprint(&key, "alice", "pw", 7));
        assert_ne!(base, sign_in_fingerprint(&key, "alice", "pw", 8));
        assert_ne!(base, sign_in_fingerprint(&key, "alice", "pw2", 7));
        assert_ne!(base, sign_in_fingerprint(&key, "alicep", "w", 7));
        assert_ne!(
            base,
            sign_in_fingerprint(&new_fingerprint_key(), "alice", "pw", 7)
        );
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
