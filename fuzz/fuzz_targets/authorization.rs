//! `Authorization` header values (`Basic`, `Bearer`, anything else), parsed one way for
//! `/v2/`, `/token` and `/api/v1`.
//!
//! Checks, besides "no panic":
//! - the input as a header value: a `Basic` result re-encodes to a value that parses back
//!   to the same user and secret, and the user has no `:`; a `Bearer` result is a
//!   non-empty token68 and parses back from `Bearer <token>`; nothing over
//!   `MAX_AUTHORIZATION_LEN` bytes is accepted;
//! - the input as credentials: `Basic base64(user:secret)`, the user being what comes
//!   before the first `:`, parses back to exactly that pair (if it fits the limit).
#![no_main]

use base64::Engine as _;
use berth_auth::credentials::{MAX_AUTHORIZATION_LEN, Presented, parse_authorization};
use libfuzzer_sys::fuzz_target;

fn basic(user: &str, secret: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
    format!("Basic {encoded}")
}

fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

fuzz_target!(|data: &[u8]| {
    if let Ok(presented) = parse_authorization(data) {
        assert!(data.len() <= MAX_AUTHORIZATION_LEN);
        match &presented {
            Presented::Basic { user, secret } => {
                assert!(!user.contains(':'));
                // The decoder takes only canonical base64, so this is the same length.
                let again = parse_authorization(basic(user, secret).as_bytes());
                assert_eq!(again, Ok(presented.clone()));
            }
            Presented::AccessToken(token) | Presented::Jwt(token) => {
                assert!(is_token68(token), "{token:?}");
                let again = parse_authorization(format!("Bearer {token}").as_bytes());
                assert_eq!(again, Ok(presented.clone()));
            }
        }
    }

    // The input as a (user, secret) pair sent with Basic.
    let text = String::from_utf8_lossy(data);
    let (user, secret) = text.split_once(':').unwrap_or((&text, ""));
    let value = basic(user, secret);
    let parsed = parse_authorization(value.as_bytes());
    if value.len() <= MAX_AUTHORIZATION_LEN {
        assert_eq!(
            parsed,
            Ok(Presented::Basic {
                user: user.to_owned(),
                secret: secret.to_owned(),
            }),
            "{value:?}"
        );
    } else {
        assert!(parsed.is_err());
    }

    // The input as a bearer token.
    if is_token68(&text) {
        let value = format!("bEaReR {text}");
        if value.len() <= MAX_AUTHORIZATION_LEN {
            match parse_authorization(value.as_bytes()) {
                Ok(Presented::AccessToken(t) | Presented::Jwt(t)) => assert_eq!(t, text),
                other => panic!("{value:?} gave {other:?}"),
            }
        }
    }
});
