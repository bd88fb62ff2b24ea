//! What a client asks the token endpoint for (distribution `docs/spec/auth/token.md`
//! and `oauth.md`), parsed from the `GET` query or the OAuth2 `POST` form.
//!
//! Unknown fields are ignored and scopes that can never be granted are dropped, as
//! Docker's clients expect; a form without a usable grant is an error.

use crate::scope::Scope;

/// The largest form or query considered.
pub const MAX_FORM_LEN: usize = 64 * 1024;

/// How the client proves who it is.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenGrant {
    /// `GET /token`: the `Authorization` header (or nothing, for an anonymous token).
    Header,
    /// The OAuth2 `password` grant.
    Password { username: String, password: String },
    /// The OAuth2 `refresh_token` grant (docker's identity token).
    RefreshToken(String),
}

// Hand-written so no secret reaches a log line through `{:?}`.
impl std::fmt::Debug for TokenGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenGrant::Header => f.write_str("Header"),
            TokenGrant::Password { username, .. } => {
                write!(f, "Password {{ username: {username:?}, .. }}")
            }
            TokenGrant::RefreshToken(_) => f.write_str("RefreshToken(<hidden>)"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// The `service` asked for; `None` or empty means this one.
    pub service: Option<String>,
    pub scopes: Vec<Scope>,
    pub grant: TokenGrant,
    /// Whether a refresh token is wanted too (`offline_token=true`, `access_type=offline`).
    pub offline: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenRequestError {
    #[error("the request is too large")]
    TooLarge,
    #[error("grant_type must be password or refresh_token")]
    UnknownGrant,
    #[error("the password grant needs username and password")]
    MissingPassword,
    #[error("the refresh_token grant needs refresh_token")]
    MissingRefreshToken,
}

fn pairs(bytes: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(bytes).into_owned().collect()
}

fn first<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn scopes(pairs: &[(String, String)]) -> Vec<Scope> {
    Scope::parse_all(
        pairs
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    )
}

/// Parses the query of `GET /token?service=…&scope=…[&offline_token=true]`.
pub fn parse_token_query(query: &str) -> Result<TokenRequest, TokenRequestError> {
    if query.len() > MAX_FORM_LEN {
        return Err(TokenRequestError::TooLarge);
    }
    let pairs = pairs(query.as_bytes());
    Ok(TokenRequest {
        service: first(&pairs, "service").map(str::to_owned),
        scopes: scopes(&pairs),
        grant: TokenGrant::Header,
        offline: first(&pairs, "offline_token") == Some("true"),
    })
}

/// Parses the `application/x-www-form-urlencoded` body of `POST /token`.
pub fn parse_token_form(form: &[u8]) -> Result<TokenRequest, TokenRequestError> {
    if form.len() > MAX_FORM_LEN {
        return Err(TokenRequestError::TooLarge);
    }
    let pairs = pairs(form);
    let grant = match first(&pairs, "grant_type") {
        Some("password") => match (first(&pairs, "username"), first(&pairs, "password")) {
            (Some(username), Some(password)) => TokenGrant::Password {
                username: username.to_owned(),
                password: password.to_owned(),
            },
            _ => return Err(TokenRequestError::MissingPassword),
        },
        Some("refresh_token") => match first(&pairs, "refresh_token") {
            Some(token) => TokenGrant::RefreshToken(token.to_owned()),
            None => return Err(TokenRequestError::MissingRefreshToken),
        },
        _ => return Err(TokenRequestError::UnknownGrant),
    };
    // Only the password grant can start a new sign-in worth a refresh token.
    let offline = matches!(grant, TokenGrant::Password { .. })
        && first(&pairs, "access_type") == Some("offline");
    Ok(TokenRequest {
        service: first(&pairs, "service").map(str::to_owned),
        scopes: scopes(&pairs),
        grant,
        offline,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_queries() {
        let r = parse_token_query(
            "service=berth&scope=repository%3Aa%2Fb%3Apull&scope=registry:catalog:*&offline_token=true&x=1",
        )
        .unwrap();
        assert_eq!(r.service.as_deref(), Some("berth"));
        assert_eq!(r.scopes.len(), 2);
        assert_eq!(r.grant, TokenGrant::Header);
        assert!(r.offline);
        assert!(!parse_token_query("").unwrap().offline);
    }

    #[test]
    fn oauth_forms() {
        let r = parse_token_form(
            b"grant_type=password&username=alice&password=p%26w&access_type=offline&scope=repository:a/b:pull%20repository:a/c:push",
        )
        .unwrap();
        assert_eq!(
            r.grant,
            TokenGrant::Password {
                username: "alice".into(),
                password: "p&w".into()
            }
        );
        assert!(r.offline);
        assert_eq!(r.scopes.len(), 2, "space-separated scopes");
        let r = parse_token_form(b"grant_type=refresh_token&refresh_token=abc&access_type=offline")
            .unwrap();
        assert_eq!(r.grant, TokenGrant::RefreshToken("abc".into()));
        assert!(!r.offline, "a refresh does not start a new sign-in");
        for (form, error) in [
            (
                &b"grant_type=client_credentials"[..],
                TokenRequestError::UnknownGrant,
            ),
            (b"", TokenRequestError::UnknownGrant),
            (
                b"grant_type=password&username=a",
                TokenRequestError::MissingPassword,
            ),
            (
                b"grant_type=refresh_token",
                TokenRequestError::MissingRefreshToken,
            ),
        ] {
            assert_eq!(parse_token_form(form), Err(error));
        }
        assert_eq!(
            parse_token_form(&vec![b'a'; MAX_FORM_LEN + 1]),
            Err(TokenRequestError::TooLarge)
        );
        let shown = format!(
            "{:?}",
            parse_token_form(b"grant_type=password&username=a&password=sekrit").unwrap()
        );
        assert!(!shown.contains("sekrit"), "{shown}");
    }
}
