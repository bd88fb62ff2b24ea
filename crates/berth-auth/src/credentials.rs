//! What a request presents in its `Authorization` header, parsed one way for every
//! API (`/v2/`, `/token`, `/api/v1`): `Basic` with a user name and a password or access
//! token, or `Bearer` with an access token or a JWT from `/token`. Scheme names are
//! case-insensitive (RFC 9110 §11.1). What each kind may do is decided elsewhere; this
//! only says what came.

use base64::Engine as _;

use crate::secret::looks_like_token;

/// Longest `Authorization` value considered: a JWT granting many scopes is a few KiB.
pub const MAX_AUTHORIZATION_LEN: usize = 16 * 1024;

/// Credentials as presented, not yet checked.
#[derive(Clone, PartialEq, Eq)]
pub enum Presented {
    /// `Basic base64(user:secret)`; the secret is a password or an access token.
    Basic { user: String, secret: String },
    /// `Bearer berth_pat_…`: an access token on its own.
    AccessToken(String),
    /// `Bearer <JWT>`: a token issued by `/token`.
    Jwt(String),
}

// Hand-written so no secret reaches a log line through `{:?}`.
impl std::fmt::Debug for Presented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Presented::Basic { .. } => f.write_str("Basic(<hidden>)"),
            Presented::AccessToken(_) => f.write_str("AccessToken(<hidden>)"),
            Presented::Jwt(_) => f.write_str("Jwt(<hidden>)"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizationError {
    #[error("the Authorization header uses a scheme other than Basic or Bearer")]
    UnknownScheme,
    #[error("the Authorization header is malformed")]
    Malformed,
}

impl Presented {
    /// Whether the secret is an access token (which cannot be guessed), not a password.
    pub fn is_access_token(&self) -> bool {
        match self {
            Presented::Basic { secret, .. } => looks_like_token(secret),
            Presented::AccessToken(_) => true,
            Presented::Jwt(_) => false,
        }
    }
}

/// Parses an `Authorization` header value.
pub fn parse_authorization(value: &[u8]) -> Result<Presented, AuthorizationError> {
    if value.len() > MAX_AUTHORIZATION_LEN {
        return Err(AuthorizationError::Malformed);
    }
    let value = std::str::from_utf8(value).map_err(|_| AuthorizationError::Malformed)?;
    let (scheme, rest) = value
        .trim()
        .split_once(' ')
        .ok_or(AuthorizationError::Malformed)?;
    let rest = rest.trim_start_matches(' ');
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .map_err(|_| AuthorizationError::Malformed)?;
        let text = String::from_utf8(decoded).map_err(|_| AuthorizationError::Malformed)?;
        let (user, secret) = text.split_once(':').ok_or(AuthorizationError::Malformed)?;
        return Ok(Presented::Basic {
            user: user.to_owned(),
            secret: secret.to_owned(),
        });
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        if !is_token68(rest) {
            return Err(AuthorizationError::Malformed);
        }
        return Ok(if looks_like_token(rest) {
            Presented::AccessToken(rest.to_owned())
        } else {
            Presented::Jwt(rest.to_owned())
        });
    }
    Err(AuthorizationError::UnknownScheme)
}

/// RFC 9110 `token68`: what a bearer token may be made of.
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(text: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(text)
        )
    }

    #[test]
    fn schemes_are_case_insensitive() {
        for scheme in ["Basic", "basic", "BASIC", "bAsIc"] {
            let value = basic("alice:pw").replacen("Basic", scheme, 1);
            assert_eq!(
                parse_authorization(value.as_bytes()),
                Ok(Presented::Basic {
                    user: "alice".into(),
                    secret: "pw".into()
                }),
                "{scheme}"
            );
        }
        for scheme in ["Bearer", "bearer", "BEARER"] {
            let value = format!("{scheme}  eyJ0.eyJ1.sig");
            assert_eq!(
                parse_authorization(value.as_bytes()),
                Ok(Presented::Jwt("eyJ0.eyJ1.sig".into()))
            );
        }
    }

    #[test]
    fn access_tokens_are_told_from_jwts_and_passwords() {
        let token = "berth_pat_0123456789abcdef";
        assert_eq!(
            parse_authorization(format!("Bearer {token}").as_bytes()),
            Ok(Presented::AccessToken(token.into()))
        );
        let presented = parse_authorization(basic(&format!("alice:{token}")).as_bytes()).unwrap();
        assert!(presented.is_access_token());
        let presented = parse_authorization(basic("alice:hunter2:with:colons").as_bytes()).unwrap();
        assert!(!presented.is_access_token());
        assert_eq!(
            presented,
            Presented::Basic {
                user: "alice".into(),
                secret: "hunter2:with:colons".into()
            }
        );
    }

    #[test]
    fn malformed_values_are_refused() {
        assert_eq!(
            parse_authorization(b"Digest username=x"),
            Err(AuthorizationError::UnknownScheme)
        );
        for bad in [
            &b"Basic"[..],
            b"Basic !!!",
            b"Basic bm9jb2xvbg==", // "nocolon"
            b"Bearer ",
            b"Bearer a b",
            b"Bearer \"quoted\"",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(
                parse_authorization(bad),
                Err(AuthorizationError::Malformed),
                "{bad:?}"
            );
        }
        let huge = format!("Bearer {}", "a".repeat(MAX_AUTHORIZATION_LEN));
        assert!(parse_authorization(huge.as_bytes()).is_err());
        assert!(!format!("{:?}", Presented::Jwt("secret".into())).contains("secret"));
    }
}
