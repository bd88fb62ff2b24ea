//! The signed tokens of Docker's token-auth flow (distribution `docs/spec/auth/jwt.md`).
//!
//! berth is both the token server and the resource server, so one shared HS256 key
//! (kept in the metadata store, the same for every node) signs and verifies. Clients
//! treat the tokens as opaque.
//!
//! - An **access** token lists what it grants (`access`) and lives minutes.
//! - A **refresh** token is what `docker login` keeps as its identity token and trades
//!   for access tokens (the OAuth2 `refresh_token` grant). It grants nothing itself.
//!
//! Both name the credential they came from: `tid` (an access token, checked for
//! revocation on every use) or `epoch` (a password, ended by a password change).

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

const ISSUER: &str = "berth";
const ACCESS: &str = "access";
const REFRESH: &str = "refresh";
/// Clock skew tolerated between the nodes that issue and check a token.
const LEEWAY_SECONDS: u64 = 5;

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The user name; empty for anonymous tokens.
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub nbf: i64,
    pub iat: i64,
    pub jti: String,
    pub access: Vec<Grant>,
    pub typ: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
}

impl AccessClaims {
    /// Whether the token grants `action` on `(kind, name)`.
    pub fn allows(&self, kind: &str, name: &str, action: &str) -> bool {
        self.access.iter().any(|g| {
            g.kind == kind && g.name == name && g.actions.iter().any(|a| a == action || a == "*")
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
    pub jti: String,
    pub typ: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<i64>,
}

/// Where a signed-in principal's credential came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    Password { epoch: i64 },
    AccessToken { id: String },
}

impl Credential {
    fn split(&self) -> (Option<String>, Option<i64>) {
        match self {
            Credential::Password { epoch } => (None, Some(*epoch)),
            Credential::AccessToken { id } => (Some(id.clone()), None),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid here: {0}")]
    Invalid(String),
}

/// Issues and verifies berth's tokens for one service name (the JWT audience).
pub struct TokenSigner {
    encoding: EncodingKey,
    decoding: DecodingKey,
    service: String,
    /// Seconds an access token lives.
    pub access_lifetime: i64,
}

fn jti() -> String {
    let mut bytes = [0u8; 12];
    rand::fill(&mut bytes);
    hex::encode(bytes)
}

impl TokenSigner {
    pub fn new(key: &[u8], service: &str, access_lifetime: i64) -> TokenSigner {
        TokenSigner {
            encoding: EncodingKey::from_secret(key),
            decoding: DecodingKey::from_secret(key),
            service: service.to_owned(),
            access_lifetime: access_lifetime.max(60),
        }
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    fn sign<T: Serialize>(&self, claims: &T) -> Result<String, TokenError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.encoding)
            .map_err(|e| TokenError::Invalid(e.to_string()))
    }

    fn validation(&self) -> Validation {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[&self.service]);
        validation.set_issuer(&[ISSUER]);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_nbf = true;
        validation
    }

    fn verify<T: serde::de::DeserializeOwned>(&self, token: &str) -> Result<T, TokenError> {
        jsonwebtoken::decode::<T>(token.as_bytes(), &self.decoding, &self.validation())
            .map(|data| data.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }

    /// An access token for `user` (`None`: anonymous) granting `access`.
    pub fn issue_access(
        &self,
        user: Option<&str>,
        credential: Option<&Credential>,
        access: Vec<Grant>,
        now: i64,
    ) -> Result<String, TokenError> {
        let (tid, epoch) = credential.map(Credential::split).unwrap_or((None, None));
        self.sign(&AccessClaims {
            iss: ISSUER.to_owned(),
            sub: user.unwrap_or_default().to_owned(),
            aud: self.service.clone(),
            exp: now + self.access_lifetime,
            nbf: now - LEEWAY_SECONDS as i64,
            iat: now,
            jti: jti(),
            access,
            typ: ACCESS.to_owned(),
            tid,
            epoch,
        })
    }

    pub fn issue_refresh(
        &self,
        user: &str,
        credential: &Credential,
        now: i64,
        expires_at: i64,
    ) -> Result<String, TokenError> {
        let (tid, epoch) = credential.split();
        self.sign(&RefreshClaims {
            iss: ISSUER.to_owned(),
            sub: user.to_owned(),
            aud: self.service.clone(),
            exp: expires_at,
            iat: now,
            jti: jti(),
            typ: REFRESH.to_owned(),
            tid,
            epoch,
        })
    }

    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        let claims: AccessClaims = self.verify(token)?;
        if claims.typ != ACCESS {
            return Err(TokenError::Invalid("not an access token".into()));
        }
        Ok(claims)
    }

    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        let claims: RefreshClaims = self.verify(token)?;
        if claims.typ != REFRESH || claims.sub.is_empty() {
            return Err(TokenError::Invalid("not a refresh token".into()));
        }
        Ok(claims)
    }
}

/// The credential a verified token names.
pub fn credential_of(tid: &Option<String>, epoch: Option<i64>) -> Option<Credential> {
    match (tid, epoch) {
        (Some(id), _) => Some(Credential::AccessToken { id: id.clone() }),
        (None, Some(epoch)) => Some(Credential::Password { epoch }),
        (None, None) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn now() -> i64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64
    }

    fn grant(name: &str, actions: &[&str]) -> Grant {
        Grant {
            kind: "repository".into(),
            name: name.into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn access_tokens_round_trip_and_say_what_they_allow() {
        let signer = TokenSigner::new(b"k1", "berth.test", 300);
        let cred = Credential::AccessToken { id: "t1".into() };
        let token = signer
            .issue_access(
                Some("alice"),
                Some(&cred),
                vec![grant("a/b", &["pull"])],
                now(),
            )
            .unwrap();
        let claims = signer.verify_access(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(claims.tid.as_deref(), Some("t1"));
        assert!(claims.allows("repository", "a/b", "pull"));
        assert!(!claims.allows("repository", "a/b", "push"));
        assert!(!claims.allows("repository", "a/c", "pull"));
        // An access token is not a refresh token, nor the other way round.
        assert!(signer.verify_refresh(&token).is_err());
        let refresh = signer
            .issue_refresh("alice", &cred, now(), now() + 60)
            .unwrap();
        assert!(signer.verify_access(&refresh).is_err());
        assert_eq!(signer.verify_refresh(&refresh).unwrap().sub, "alice");
    }

    #[test]
    fn foreign_expired_and_tampered_tokens_are_refused() {
        let signer = TokenSigner::new(b"k1", "berth.test", 300);
        let other_key = TokenSigner::new(b"k2", "berth.test", 300);
        let other_service = TokenSigner::new(b"k1", "elsewhere", 300);
        let token = other_key.issue_access(None, None, vec![], now()).unwrap();
        assert!(matches!(
            signer.verify_access(&token),
            Err(TokenError::Invalid(_))
        ));
        let token = other_service
            .issue_access(None, None, vec![], now())
            .unwrap();
        assert!(matches!(
            signer.verify_access(&token),
            Err(TokenError::Invalid(_))
        ));
        let token = signer
            .issue_access(None, None, vec![], NOW - 10_000_000)
            .unwrap();
        assert_eq!(signer.verify_access(&token), Err(TokenError::Expired));
        // Changing one character of the payload breaks the signature.
        let token = signer
            .issue_access(Some("alice"), None, vec![grant("a/b", &["pull"])], now())
            .unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload = parts[1].to_owned().into_bytes();
        payload[10] = if payload[10] == b'A' { b'B' } else { b'A' };
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            String::from_utf8(payload).unwrap(),
            parts[2]
        );
        assert!(signer.verify_access(&tampered).is_err());
        // Lifetimes below a minute are raised to one (clients assume at least 60 s).
        assert_eq!(TokenSigner::new(b"k", "s", 5).access_lifetime, 60);
    }
}
