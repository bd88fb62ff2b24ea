//! JWTs presented as `Bearer` tokens and as OAuth2 refresh tokens, verified by
//! `TokenSigner` with a fixed key ([`KEY`], service [`SERVICE`]; the seeds were issued
//! with it).
//!
//! The input picks one of three modes:
//! - anything else: the input is a token, given to `verify_access` and `verify_refresh`.
//!   Whatever verifies is of the right kind (`typ`), audience and issuer, has not
//!   expired, and a refresh token names a user.
//! - `{…`: the input is the claims JSON of a token signed with the right key (an optional
//!   first line is the header JSON, by default `{"alg":"HS256","typ":"JWT"}`), so the
//!   claim checks and decoding behind a valid signature are fuzzed too. Same checks.
//! - `issue:USER\nCREDENTIAL\nKIND:NAME:ACTIONS…` (CREDENTIAL `pw:EPOCH`, `tid:ID` or
//!   empty): round trip. An access token issued for them verifies to exactly those
//!   claims and is not a refresh token; a refresh token for a named user verifies to
//!   that user and is not an access token.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use berth_auth::{AccessClaims, Credential, Grant, RefreshClaims, TokenError, TokenSigner};
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;

/// The key every seed token was signed with.
const KEY: &[u8] = b"berth-fuzz-signing-key";
const SERVICE: &str = "berth";
const DEFAULT_HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn signer() -> TokenSigner {
    TokenSigner::new(KEY, SERVICE, 300)
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let signer = signer();
    if let Some(spec) = text.strip_prefix("issue:") {
        round_trip(&signer, spec);
    } else if text.starts_with('{') {
        let (header, claims) = text.split_once('\n').unwrap_or((DEFAULT_HEADER, text));
        let token = sign(header.as_bytes(), claims.as_bytes());
        verify(&signer, &token);
    } else {
        verify(&signer, text);
    }
});

/// `base64url(header).base64url(claims).base64url(HMAC-SHA256)`.
fn sign(header: &[u8], claims: &[u8]) -> String {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims)
    );
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(KEY).expect("HMAC takes any key");
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

fn verify(signer: &TokenSigner, token: &str) {
    let now = now();
    match signer.verify_access(token) {
        Ok(claims) => check_common(
            &claims.typ,
            &claims.iss,
            &claims.aud,
            claims.exp,
            now,
            "access",
        ),
        Err(TokenError::Expired | TokenError::Invalid(_)) => {}
    }
    match signer.verify_refresh(token) {
        Ok(claims) => {
            check_common(
                &claims.typ,
                &claims.iss,
                &claims.aud,
                claims.exp,
                now,
                "refresh",
            );
            assert!(!claims.sub.is_empty());
        }
        Err(TokenError::Expired | TokenError::Invalid(_)) => {}
    }
}

fn check_common(typ: &str, iss: &str, aud: &str, exp: i64, now: i64, want: &str) {
    assert_eq!(typ, want);
    assert_eq!(iss, "berth");
    assert_eq!(aud, SERVICE);
    // jsonwebtoken's leeway (5 s) plus a little for the clock moving during the run.
    assert!(
        exp >= now - 10,
        "an expired token verified: exp {exp}, now {now}"
    );
}

fn round_trip(signer: &TokenSigner, spec: &str) {
    let mut lines = spec.split('\n');
    let user = lines.next().unwrap_or_default();
    let line = lines.next().unwrap_or_default();
    let credential = if let Some(epoch) = line.strip_prefix("pw:") {
        epoch
            .parse()
            .ok()
            .map(|epoch| Credential::Password { epoch })
    } else {
        line.strip_prefix("tid:")
            .map(|id| Credential::AccessToken { id: id.to_owned() })
    };
    let grants: Vec<Grant> = lines
        .filter_map(|line| {
            let (kind, rest) = line.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            Some(Grant {
                kind: kind.to_owned(),
                name: name.to_owned(),
                actions: actions.split(',').map(str::to_owned).collect(),
            })
        })
        .collect();
    let (tid, epoch) = match &credential {
        Some(Credential::AccessToken { id }) => (Some(id.clone()), None),
        Some(Credential::Password { epoch }) => (None, Some(*epoch)),
        None => (None, None),
    };

    let now = now();
    let user_opt = (!user.is_empty()).then_some(user);
    let access = signer
        .issue_access(user_opt, credential.as_ref(), grants.clone(), now)
        .expect("issuing an access token cannot fail");
    let claims: AccessClaims = signer
        .verify_access(&access)
        .unwrap_or_else(|e| panic!("an access token we issued does not verify: {e}"));
    assert_eq!(claims.sub, user);
    assert_eq!(claims.access, grants);
    assert_eq!((claims.tid, claims.epoch), (tid.clone(), epoch));
    assert_eq!(claims.exp, now + signer.access_lifetime);
    assert!(
        signer.verify_refresh(&access).is_err(),
        "an access token is not a refresh token"
    );

    if let Some(credential) = &credential {
        let refresh = signer
            .issue_refresh(user, credential, now, now + 3600)
            .expect("issuing a refresh token cannot fail");
        assert!(
            signer.verify_access(&refresh).is_err(),
            "a refresh token is not an access token"
        );
        match signer.verify_refresh(&refresh) {
            Ok(RefreshClaims {
                sub,
                tid: t,
                epoch: e,
                ..
            }) => {
                assert_eq!(sub, user);
                assert_eq!((t, e), (tid, epoch));
            }
            Err(e) => assert!(
                user.is_empty(),
                "a refresh token we issued does not verify: {e}"
            ),
        }
    }
}
