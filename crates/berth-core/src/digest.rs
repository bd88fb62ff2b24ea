//! Content digests (`algorithm:hex`) and the streaming hasher that produces them.
//!
//! Only sha256 and sha512 are supported. A string that is not a digest at all is
//! [`DigestError::Invalid`]; a well-formed digest of another algorithm is
//! [`DigestError::Unsupported`], so callers can answer `DIGEST_INVALID` or `UNSUPPORTED`.

use std::fmt;
use std::str::FromStr;

use sha2::Digest as _;

/// A digest algorithm berth can compute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex encoding of a digest of this algorithm.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }

    /// Digest of a complete in-memory value (manifests; never blobs).
    pub fn digest_of(self, bytes: &[u8]) -> Digest {
        let mut hasher = self.hasher();
        hasher.update(bytes);
        hasher.finish()
    }
}

impl FromStr for Algorithm {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "sha256" => Ok(Algorithm::Sha256),
            "sha512" => Ok(Algorithm::Sha512),
            other if is_algorithm_syntax(other) => Err(DigestError::Unsupported(other.to_owned())),
            other => Err(DigestError::Invalid(format!(
                "{other:?} is not a digest algorithm"
            ))),
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    #[error("invalid digest: {0}")]
    Invalid(String),
    #[error("unsupported digest algorithm {0:?}")]
    Unsupported(String),
}

/// A validated content digest. Fields are private: build one with `parse`/`FromStr`
/// or from a [`Hasher`], so every `Digest` in the program is well formed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The lowercase hex part (used as a file name by the blob store).
    pub fn hex(&self) -> &str {
        &self.hex
    }
}

/// `algorithm ::= component ([+._-] component)*`, `component ::= [a-z0-9]+` (image-spec).
fn is_algorithm_syntax(s: &str) -> bool {
    !s.is_empty()
        && s.split(['+', '.', '_', '-']).all(|c| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

impl FromStr for Digest {
    type Err = DigestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err(DigestError::Invalid(format!(
                "{s:?} has no algorithm prefix"
            )));
        };
        let encoded_ok = !hex.is_empty()
            && hex
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'=' | b'_' | b'-'));
        if !encoded_ok {
            return Err(DigestError::Invalid(format!(
                "{s:?} has a malformed encoded part"
            )));
        }
        let algorithm: Algorithm = alg.parse()?;
        let lower_hex = hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if hex.len() != algorithm.hex_len() || !lower_hex {
            return Err(DigestError::Invalid(format!(
                "{algorithm} digests are {} lowercase hex characters",
                algorithm.hex_len()
            )));
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_owned(),
        })
    }
}

impl TryFrom<String> for Digest {
    type Error = DigestError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.to_string()
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm, self.hex)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Incremental hasher for one of the supported algorithms, fed while bytes stream in.
#[derive(Clone)]
pub enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Sha512(_) => Algorithm::Sha512,
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// The digest of everything fed so far (the hasher itself is left untouched).
    pub fn finish(&self) -> Digest {
        let (algorithm, hex) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, hex::encode(h.clone().finalize())),
            Hasher::Sha512(h) => (Algorithm::Sha512, hex::encode(h.clone().finalize())),
        };
        Digest { algorithm, hex }
    }
}

/// A saved hash state that cannot be restored (corrupt, or of another algorithm).
#[derive(Debug, thiserror::Error)]
#[error("saved {0} hash state is not valid")]
pub struct HashStateError(Algorithm);

impl Hasher {
    /// The state after everything fed so far, as bytes, so that another process can
    /// continue the hash ([`Hasher::restore`]) without the bytes themselves.
    pub fn save(&self) -> Vec<u8> {
        use sha2::digest::common::hazmat::SerializableState;
        match self {
            Hasher::Sha256(h) => h.serialize().to_vec(),
            Hasher::Sha512(h) => h.serialize().to_vec(),
        }
    }

    /// Continues a hash from [`Hasher::save`]'s bytes; empty bytes start a new one.
    pub fn restore(algorithm: Algorithm, saved: &[u8]) -> Result<Hasher, HashStateError> {
        use sha2::digest::common::hazmat::SerializableState;
        if saved.is_empty() {
            return Ok(algorithm.hasher());
        }
        let invalid = |_| HashStateError(algorithm);
        Ok(match algorithm {
            Algorithm::Sha256 => Hasher::Sha256(
                sha2::Sha256::deserialize(saved.try_into().map_err(invalid)?)
                    .map_err(|_| HashStateError(algorithm))?,
            ),
            Algorithm::Sha512 => Hasher::Sha512(
                sha2::Sha512::deserialize(saved.try_into().map_err(invalid)?)
                    .map_err(|_| HashStateError(algorithm))?,
            ),
        })
    }
}

impl fmt::Debug for Hasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hasher({})", self.algorithm())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_SHA256: &str =
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn parses_and_displays_sha256() {
        let d: Digest = EMPTY_SHA256.parse().unwrap();
        assert_eq!(d.algorithm(), Algorithm::Sha256);
        assert_eq!(d.to_string(), EMPTY_SHA256);
    }

    #[test]
    fn hasher_matches_known_vectors() {
        assert_eq!(Algorithm::Sha256.digest_of(b"").to_string(), EMPTY_SHA256);
        let d = Algorithm::Sha512.digest_of(b"");
        assert!(d.hex().starts_with("cf83e1357eefb8bd"));
        assert_eq!(d.hex().len(), 128);
    }

    #[test]
    fn a_saved_hash_continues_where_it_stopped() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
            // Cut at a block boundary, inside a block, and at the very start.
            for cut in [0, 64, 128, 1_001, 9_999] {
                let mut first = algorithm.hasher();
                first.update(&data[..cut]);
                let saved = first.save();
                let mut second = Hasher::restore(algorithm, &saved).unwrap();
                second.update(&data[cut..]);
                assert_eq!(
                    second.finish(),
                    algorithm.digest_of(&data),
                    "{algorithm} at {cut}"
                );
            }
        }
        assert_eq!(
            Hasher::restore(Algorithm::Sha256, &[]).unwrap().finish(),
            Algorithm::Sha256.digest_of(b"")
        );
        let sha512 = Algorithm::Sha512.hasher().save();
        assert!(Hasher::restore(Algorithm::Sha256, &sha512).is_err());
        assert!(Hasher::restore(Algorithm::Sha256, b"short").is_err());
    }

    #[test]
    fn rejects_malformed_digests_as_invalid() {
        for bad in [
            "",
            "sha256",
            "sha256:",
            "sha256:abc",
            "sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
            ":abc",
            "SHA256:e3b0",
            "sha256:../../etc/passwd",
            "sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
        ] {
            assert!(
                matches!(bad.parse::<Digest>(), Err(DigestError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn well_formed_other_algorithms_are_unsupported() {
        for other in [
            "md5:d41d8cd98f00b204e9800998ecf8427e",
            "blake3:abcd",
            "sha384:ab",
        ] {
            assert!(
                matches!(other.parse::<Digest>(), Err(DigestError::Unsupported(_))),
                "{other}"
            );
        }
    }
}
