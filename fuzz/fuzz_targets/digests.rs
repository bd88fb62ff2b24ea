//! Content digests (`algorithm:encoded`), as they come in paths, query strings
//! (`?digest=`, `?mount=`) and manifest descriptors.
//!
//! Checks, besides "no panic": an accepted digest is sha256 or sha512 with exactly
//! that many lowercase hex characters, displays as its input, re-parses to itself, and
//! round-trips through its serde form (a JSON string); a well-formed digest of another
//! algorithm is `Unsupported`, never accepted. The input is also hashed with both
//! algorithms, and those digests must parse.
#![no_main]

use berth_core::{Algorithm, Digest, DigestError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for algorithm in [Algorithm::Sha256, Algorithm::Sha512] {
        let computed = algorithm.digest_of(data);
        let reparsed: Digest = computed
            .to_string()
            .parse()
            .expect("a computed digest parses");
        assert_eq!(reparsed, computed);
    }

    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match text.parse::<Digest>() {
        Ok(digest) => {
            assert_eq!(digest.to_string(), text);
            assert!(matches!(
                digest.algorithm(),
                Algorithm::Sha256 | Algorithm::Sha512
            ));
            assert_eq!(digest.hex().len(), digest.algorithm().hex_len());
            assert!(
                digest
                    .hex()
                    .bytes()
                    .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
            );
            assert_eq!(
                text.split_once(':').map(|(a, _)| a),
                Some(digest.algorithm().as_str())
            );
            let again: Digest = text.parse().expect("parsed once");
            assert_eq!(again, digest);
            let json = serde_json::to_string(&digest).expect("a digest serializes");
            let back: Digest = serde_json::from_str(&json).expect("and deserializes");
            assert_eq!(back, digest);
        }
        Err(DigestError::Unsupported(algorithm)) => {
            assert!(algorithm != "sha256" && algorithm != "sha512", "{text:?}");
            assert!(serde_json::from_value::<Digest>(text.into()).is_err());
        }
        Err(DigestError::Invalid(_)) => {
            assert!(serde_json::from_value::<Digest>(text.into()).is_err());
        }
    }
});
