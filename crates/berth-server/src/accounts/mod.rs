//! The accounts service: signing in, deciding access, issuing tokens, web sessions, and
//! the account administration shared by the CLI and the `/api/v1` JSON API.
//!
//! It joins the metadata store (facts) with `berth-auth` (rules and tokens), the way
//! [`crate::Registry`] joins the two stores. Every API authenticates through
//! [`Accounts::authenticate`] (an `Authorization` header) or
//! [`Accounts::authenticate_session`] (the web session cookie), and gets a [`Caller`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::SetOnce;

use berth_auth::credentials::Presented;
use berth_auth::jwt::credential_of;
use berth_auth::secret::{self, Cost, looks_like_token};
use berth_auth::{
    AccessClaims, Credential, Grant, Principal, RefreshClaims, Resource, Scope, TokenSigner,
    repository_rights,
};
use berth_core::{AccountName, Actions, RepoName, Role, TokenScope};
use berth_meta::{AccessToken, AccountRefusal, MetaError, MetaStore, User, Viewer, WebSession};

use crate::config::AuthConfig;

mod passwords;
mod sign_in_limits;

pub use passwords::PasswordChecker;
pub use sign_in_limits::SignInLimits;

/// The settings key of the JWT signing key, shared by every node through the store.
const SIGNING_KEY: &str = "jwt_hs256_key";
/// The settings key of the server's default visibility for new repositories.
pub const DEFAULT_PUBLIC: &str = "default_public";
/// The account created on first start.
pub const FIRST_ADMIN: &str = "admin";
/// The settings key that records that the first administrator was created.
pub const FIRST_ADMIN_CREATED: &str = "first_admin_created";
/// The longest lifetime an access token may be given.
const MAX_TOKEN_LIFETIME: i64 = 10 * 365 * 24 * 3600;
/// How long a password sign-in's refresh token (docker's identity token) lasts.
const PASSWORD_REFRESH_LIFETIME: i64 = 90 * 24 * 3600;
/// How long a token-based refresh token lasts when the access token never expires.
const TOKEN_REFRESH_LIFETIME: i64 = 365 * 24 * 3600;
/// A token's or session's last-used time is written at most this often.
const TOUCH_INTERVAL: i64 = 60;
/// How long a web session lasts.
pub const SESSION_SECONDS: i64 = 12 * 3600;
/// The part of a User-Agent kept with a session.
const MAX_USER_AGENT: usize = 200;

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    #[error("incorrect username or password")]
    BadCredentials,
    /// A bearer token (an access token or a JWT) that is not, or no longer, valid.
    #[error("the bearer token is invalid or has expired")]
    InvalidToken,
    #[error("too many failed sign-ins; retry in {} s", .0.as_secs().max(1))]
    Locked(Duration),
    /// Too many password checks are waiting already.
    #[error("too many sign-ins are being checked; retry shortly")]
    Busy,
    #[error(transparent)]
    Store(#[from] MetaError),
}

#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error(transparent)]
    Refused(#[from] AccountRefusal),
    #[error("{0}")]
    Invalid(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("hashing failed: {0}")]
    Hash(String),
}

impl From<berth_core::AccountError> for AccountError {
    fn from(e: berth_core::AccountError) -> Self {
        AccountError::Invalid(e.to_string())
    }
}

impl From<MetaError> for AccountError {
    fn from(e: MetaError) -> Self {
        AccountError::Refused(AccountRefusal::Store(e))
    }
}

/// A token just created: its record and the secret, which exists only here.
pub struct NewToken {
    pub token: AccessToken,
    pub secret: String,
}

/// A web session just created: its record and the cookie secret, which exists only here.
pub struct NewSession {
    pub session: WebSession,
    pub secret: String,
}

/// What the token endpoint hands back.
pub struct IssuedTokens {
    /// What the access token grants (the scopes asked for, intersected).
    pub granted: Vec<Grant>,
    pub access_token: String,
    pub expires_in: i64,
    pub issued_at: i64,
    pub refresh_token: Option<String>,
}

/// How a caller proved who they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Proof {
    Password,
    AccessToken,
    /// The web session cookie; the session's id.
    Session(String),
    /// A bearer JWT from `/token`, with what it grants.
    Jwt(Box<AccessClaims>),
}

/// A caller whose credentials checked out (anonymous callers have none).
#[derive(Debug, Clone)]
pub struct Caller {
    pub principal: Principal,
    /// What the caller's rights stand on: a password generation or an access token
    /// (`None` for an anonymous JWT).
    pub credential: Option<Credential>,
    pub proof: Proof,
}

impl Caller {
    /// The user name; empty for an anonymous JWT.
    pub fn name(&self) -> &str {
        self.principal.user.as_deref().unwrap_or_default()
    }

    /// Whether the caller's rights come from an access token (directly, or through a
    /// session or JWT made with one), not a password.
    pub fn via_token(&self) -> bool {
        matches!(self.credential, Some(Credential::AccessToken { .. }))
    }

    /// The claims of the bearer JWT the request came with, if that is how.
    pub fn claims(&self) -> Option<&AccessClaims> {
        match &self.proof {
            Proof::Jwt(claims) => Some(claims),
            _ => None,
        }
    }
}

pub fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

pub struct Accounts {
    meta: Arc<dyn MetaStore>,
    /// Set by [`Accounts::bootstrap`]: the signer, or why it could not be made.
    signer: SetOnce<Result<TokenSigner, String>>,
    service: String,
    token_lifetime: i64,
    /// Failed sign-ins per client address and per user name, counted with every node.
    limits: SignInLimits,
    realm: Option<String>,
    /// Set once the first administrator exists (or creating it failed, or this process
    /// never creates it).
    first_admin: SetOnce<()>,
    /// argon2 in a fixed set of reusable work areas, and verified sign-ins remembered.
    passwords: PasswordChecker,
    /// Namespaces that mirror an upstream ([`AuthConfig::mirror_prefixes`]).
    mirror_prefixes: Vec<String>,
    /// Registry-mirror mode's prefix ([`AuthConfig::mirror_default`]).
    mirror_default: Option<String>,
    /// Sign-ins refused for a wrong password or token (served at `/metrics`).
    sign_in_failures: prometheus_client::metrics::counter::Counter,
}

impl Accounts {
    /// Accounts over `meta`, with no IO yet: [`Accounts::bootstrap`] loads the signing
    /// key and makes sure the first administrator exists.
    pub fn new(meta: Arc<dyn MetaStore>, config: &AuthConfig) -> Accounts {
        Accounts {
            signer: SetOnce::new(),
            service: config.service.clone(),
            token_lifetime: config.token_lifetime.as_secs() as i64,
            limits: SignInLimits::new(meta.clone(), config.login_failures, config.login_window),
            realm: config.realm.clone(),
            first_admin: SetOnce::new(),
            passwords: PasswordChecker::new(config.password_workers),
            mirror_prefixes: config.mirror_prefixes.clone(),
            mirror_default: config.mirror_default.clone(),
            sign_in_failures: Default::default(),
            meta,
        }
    }

    /// Accounts for the `berth user|org|token|…` commands: the signing key is loaded,
    /// but the first administrator is left to `berth serve`, which logs its password.
    pub async fn open_for_commands(meta: Arc<dyn MetaStore>) -> Result<Accounts, AccountError> {
        let accounts = Accounts::new(meta, &AuthConfig::default());
        let _ = accounts.first_admin.set(());
        let key = accounts.load_signing_key().await?;
        let signer = TokenSigner::new(key.as_bytes(), &accounts.service, accounts.token_lifetime);
        let _ = accounts.signer.set(Ok(signer));
        Ok(accounts)
    }

    /// Loads (on first start: creates) the signing key, then the first administrator.
    /// Whatever needs either waits for it; nothing waits forever if it fails.
    pub async fn bootstrap(&self, admin_password: Option<&str>) -> Result<(), AccountError> {
        let key = self.load_signing_key().await;
        let signer = key
            .as_ref()
            .map(|key| TokenSigner::new(key.as_bytes(), &self.service, self.token_lifetime));
        let _ = self
            .signer
            .set(signer.map_err(|e| format!("loading the token signing key: {e}")));
        let admin = self.ensure_first_admin(admin_password).await;
        key.map_err(AccountError::from)?;
        admin
    }

    async fn load_signing_key(&self) -> Result<String, MetaError> {
        match self.meta.setting(SIGNING_KEY).await? {
            Some(key) => Ok(key),
            None => {
                self.meta
                    .init_setting(SIGNING_KEY, &secret::new_signing_key())
                    .await
            }
        }
    }

    /// Opens accounts for `berth serve`, bootstrapping in the background: a first start
    /// writes a key and hashes a password, and only sign-ins and tokens need to wait
    /// for that — the registry answers at once.
    pub async fn open_serving(
        meta: Arc<dyn MetaStore>,
        config: &AuthConfig,
    ) -> Result<Arc<Accounts>, AccountError> {
        let accounts = Arc::new(Accounts::new(meta, config));
        // Private by default must hold before the first push; public is the store's
        // fallback, so recording it can wait.
        if !config.default_public {
            accounts.set_default_public(false).await?;
        }
        let bootstrap = accounts.clone();
        let password = config.admin_password.clone();
        let default_public = config.default_public;
        tokio::spawn(async move {
            if default_public && let Err(e) = bootstrap.set_default_public(true).await {
                tracing::error!(error = %e, "recording the default visibility failed");
            }
            if let Err(e) = bootstrap.bootstrap(password.as_deref()).await {
                tracing::error!(error = %e, "setting up accounts failed");
            }
        });
        Ok(accounts)
    }

    /// Records the server's default visibility for new repositories (`berth serve` does
    /// this at start; it lives in the store so that every node and command agrees).
    pub async fn set_default_public(&self, public: bool) -> Result<(), MetaError> {
        let value = if public { "1" } else { "0" };
        // Written only on a change (no row reads as public, the store's fallback): a
        // write costs an fsync, a read does not.
        let stored = self.meta.setting(DEFAULT_PUBLIC).await?;
        if stored.as_deref().unwrap_or("1") != value {
            self.meta.set_setting(DEFAULT_PUBLIC, value).await?;
        }
        Ok(())
    }

    /// Creates the first administrator unless it exists. Sign-ins wait for this.
    pub async fn ensure_first_admin(&self, password: Option<&str>) -> Result<(), AccountError> {
        let created = self.create_first_admin(password).await;
        let _ = self.first_admin.set(());
        created
    }

    async fn create_first_admin(&self, password: Option<&str>) -> Result<(), AccountError> {
        // Once only: an administrator who removes `admin` does not want it back.
        if self.meta.setting(FIRST_ADMIN_CREATED).await?.is_some() {
            return Ok(());
        }
        let (password, generated) = match password {
            Some(p) => (p.to_owned(), false),
            None => (secret::new_password(), true),
        };
        let name: AccountName = FIRST_ADMIN.parse()?;
        let cost = if generated { Cost::Light } else { Cost::Full };
        let hash = self
            .passwords
            .hash(&password, cost)
            .await
            .map_err(|e| AccountError::Hash(e.to_string()))?;
        // One transaction: of several nodes starting together on an empty database, one
        // creates it (and only that one hands out the password).
        if !self
            .meta
            .create_first_admin(&name, &hash, FIRST_ADMIN_CREATED)
            .await?
        {
            return Ok(());
        }
        if generated {
            // The one deliberate secret in the log: there is no other way to hand it over.
            tracing::warn!(
                "created the first administrator: user \"{FIRST_ADMIN}\", password \"{password}\" \
                 (shown once; change it with `berth user passwd {FIRST_ADMIN}`)"
            );
        } else {
            tracing::info!("created the first administrator \"{FIRST_ADMIN}\"");
        }
        Ok(())
    }

    /// The token signer, once the key is loaded.
    pub async fn signer(&self) -> Result<&TokenSigner, MetaError> {
        match self.signer.wait().await {
            Ok(signer) => Ok(signer),
            Err(why) => Err(MetaError(why.clone().into())),
        }
    }

    /// The service name of challenges and the audience of tokens.
    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn configured_realm(&self) -> Option<&str> {
        self.realm.as_deref()
    }

    pub fn meta(&self) -> &dyn MetaStore {
        &*self.meta
    }

    /// The store, shared (for work that outlives a borrow: webhooks, blocking tasks).
    pub fn shared_meta(&self) -> Arc<dyn MetaStore> {
        self.meta.clone()
    }

    pub fn passwords(&self) -> &PasswordChecker {
        &self.passwords
    }

    pub fn sign_in_limits(&self) -> &SignInLimits {
        &self.limits
    }

    // ---- signing in ----

    /// Checks what a request presented in `Authorization`, from `client` (an address,
    /// for the failed-login limits).
    pub async fn authenticate(
        &self,
        presented: &Presented,
        client: &str,
    ) -> Result<Caller, SignInError> {
        match presented {
            Presented::Basic { user, secret } => self.sign_in(user, secret, client).await,
            Presented::AccessToken(token) => self
                .access_token_caller(None, token)
                .await?
                .ok_or(SignInError::InvalidToken),
            Presented::Jwt(jwt) => {
                let claims = self
                    .signer()
                    .await?
                    .verify_access(jwt)
                    .map_err(|_| SignInError::InvalidToken)?;
                let principal = self
                    .principal_for_access(&claims)
                    .await?
                    .ok_or(SignInError::InvalidToken)?;
                Ok(Caller {
                    principal,
                    credential: credential_of(&claims.tid, claims.epoch),
                    proof: Proof::Jwt(Box::new(claims)),
                })
            }
        }
    }

    /// Checks a user name with a password or an access token.
    ///
    /// A valid access token signs in whatever the failed-login limits say (it cannot be
    /// guessed); a wrong one counts against the client address. A password is refused
    /// while the address or the user is locked out, even the right one, or guessing
    /// would go on; a sign-in verified a moment ago is then recognised without argon2,
    /// and clients that arrive together with the same password wait for one check.
    /// Any other password check counts as a failure from its start until it succeeds,
    /// so a burst of guesses cannot slip past the limit.
    pub async fn sign_in(
        &self,
        user: &str,
        secret: &str,
        client: &str,
    ) -> Result<Caller, SignInError> {
        let client_key = format!("addr:{client}");
        if looks_like_token(secret) {
            if let Some(caller) = self.access_token_caller(Some(user), secret).await? {
                return Ok(caller);
            }
            // Counted, never forgiven: it failed.
            let _failed = self.limits.begin(&client_key).await?;
            self.log_failure(user, client);
            return Err(SignInError::BadCredentials);
        }
        let user_key = format!("user:{user}");
        let keys = [client_key.as_str(), user_key.as_str()];
        self.limits.check(&keys).await?;
        // The first administrator may still be being created in the background.
        self.first_admin.wait().await;
        let record = self.meta.user(user).await?;
        let epoch = record.as_ref().map(|r| r.credentials_epoch);
        let turn = self.passwords.turn(user, secret, epoch).await;
        if turn.remembered()
            && let Some(record) = &record
        {
            return Ok(password_caller(record));
        }
        // Checked again: the lock may have come while this waited its turn.
        self.limits.check(&keys).await?;
        let by_address = self.limits.begin(&client_key).await?;
        let by_user = match self.limits.begin(&user_key).await {
            Ok(attempt) => attempt,
            Err(e) => {
                self.limits.forgive(by_address).await;
                return Err(e);
            }
        };
        // An unknown user is checked against a decoy, so it takes as long to refuse
        // (no user enumeration by timing).
        let stored = record
            .as_ref()
            .map_or(secret::DECOY_HASH, |r| r.password_hash.as_str());
        match (turn.check(secret, stored).await, &record) {
            (Ok(true), Some(record)) => {
                self.limits.forgive(by_address).await;
                self.limits.forgive(by_user).await;
                Ok(password_caller(record))
            }
            (Ok(_), _) => {
                self.log_failure(user, client);
                Err(SignInError::BadCredentials)
            }
            (Err(_), _) => {
                // Not a wrong guess: the check never ran.
                self.limits.forgive(by_address).await;
                self.limits.forgive(by_user).await;
                Err(SignInError::Busy)
            }
        }
    }

    /// The counter of failed sign-ins (shared: counting through it counts here).
    pub fn sign_in_failures(&self) -> prometheus_client::metrics::counter::Counter {
        self.sign_in_failures.clone()
    }

    fn log_failure(&self, user: &str, client: &str) {
        self.sign_in_failures.inc();
        // A token pasted as the user name must not reach the log either.
        let shown = if looks_like_token(user) {
            "<a token>"
        } else {
            user
        };
        tracing::info!(user = shown, client, "failed sign-in");
        // No response of its own carries it (the refusal may be any of four), so it is
        // written here, beside the request.
        let event = crate::ops::audit::event(
            shown,
            client,
            "sign-in-failed",
            None,
            serde_json::Value::Object(Default::default()),
        );
        let meta = self.meta.clone();
        tokio::spawn(async move { crate::ops::audit::record_now(&*meta, &event).await });
    }

    /// The caller an access token speaks for, if it is active (and, when `user` is
    /// given, belongs to that user). Found by its hash first: an unknown user and a
    /// wrong token cost the same.
    async fn access_token_caller(
        &self,
        user: Option<&str>,
        token_secret: &str,
    ) -> Result<Option<Caller>, MetaError> {
        let hash = secret::hash_token_secret(token_secret);
        let Some(token) = self.meta.token_by_secret_hash(&hash).await? else {
            return Ok(None);
        };
        if user.is_some_and(|u| u != token.user.as_str()) || !token.is_active(now()) {
            return Ok(None);
        }
        let Some(record) = self.meta.user(token.user.as_str()).await? else {
            return Ok(None);
        };
        self.touch(&token).await;
        Ok(Some(Caller {
            principal: token_principal(&record, &token),
            credential: Some(Credential::AccessToken {
                id: token.id.clone(),
            }),
            proof: Proof::AccessToken,
        }))
    }

    async fn touch(&self, token: &AccessToken) {
        let t = now();
        if token
            .last_used_at
            .is_none_or(|last| t - last >= TOUCH_INTERVAL)
            && let Err(e) = self.meta.touch_token(&token.id, t).await
        {
            tracing::warn!(error = %e, "recording a token's last use failed");
        }
    }

    /// The principal behind a credential, if it is still good: the user exists, the
    /// access token is not revoked or expired, the password has not changed since.
    pub async fn resolve(
        &self,
        user: &str,
        credential: &Credential,
    ) -> Result<Option<Principal>, MetaError> {
        let Some(record) = self.meta.user(user).await? else {
            return Ok(None);
        };
        match credential {
            Credential::Password { epoch } => Ok((*epoch == record.credentials_epoch)
                .then(|| Principal::user(record.name.as_str(), record.admin))),
            Credential::AccessToken { id } => {
                let Some(token) = self.meta.token(id).await? else {
                    return Ok(None);
                };
                let good = token.user == record.name && token.is_active(now());
                Ok(good.then(|| token_principal(&record, &token)))
            }
        }
    }

    /// The principal an access JWT speaks for, checked against the store (so revoking
    /// an access token or changing a password takes effect at the next request).
    pub async fn principal_for_access(
        &self,
        claims: &AccessClaims,
    ) -> Result<Option<Principal>, MetaError> {
        if claims.sub.is_empty() {
            return Ok(Some(Principal::anonymous()));
        }
        match credential_of(&claims.tid, claims.epoch) {
            Some(credential) => self.resolve(&claims.sub, &credential).await,
            None => Ok(None),
        }
    }

    pub async fn principal_for_refresh(
        &self,
        claims: &RefreshClaims,
    ) -> Result<Option<(Principal, Credential)>, MetaError> {
        let Some(credential) = credential_of(&claims.tid, claims.epoch) else {
            return Ok(None);
        };
        Ok(self
            .resolve(&claims.sub, &credential)
            .await?
            .map(|p| (p, credential)))
    }

    // ---- web sessions ----

    /// Starts a web session for a caller who just signed in with a password or token.
    pub async fn start_session(
        &self,
        caller: &Caller,
        client: &str,
        user_agent: &str,
    ) -> Result<NewSession, AccountError> {
        let user: AccountName = caller.name().parse()?;
        let secret = secret::new_session_secret();
        let t = now();
        let (epoch, token_id) = match &caller.credential {
            Some(Credential::Password { epoch }) => (Some(*epoch), None),
            Some(Credential::AccessToken { id }) => (None, Some(id.clone())),
            None => return Err(AccountError::Invalid("sign in first".into())),
        };
        let session = WebSession {
            id: secret::new_token_id(),
            user,
            secret_hash: secret::hash_token_secret(&secret),
            epoch,
            token_id,
            created_at: t,
            expires_at: t + SESSION_SECONDS,
            last_seen_at: t,
            client: client.to_owned(),
            user_agent: user_agent.chars().take(MAX_USER_AGENT).collect(),
        };
        self.meta.create_web_session(&session).await?;
        Ok(NewSession { session, secret })
    }

    /// The caller a session cookie speaks for, if the session exists, has not expired,
    /// and the password or token it was made with still holds.
    pub async fn authenticate_session(&self, cookie: &str) -> Result<Caller, SignInError> {
        let hash = secret::hash_token_secret(cookie);
        let Some(session) = self.meta.web_session_by_secret_hash(&hash).await? else {
            return Err(SignInError::InvalidToken);
        };
        let t = now();
        if session.expires_at <= t {
            return Err(SignInError::InvalidToken);
        }
        let credential =
            credential_of(&session.token_id, session.epoch).ok_or(SignInError::InvalidToken)?;
        let principal = self
            .resolve(session.user.as_str(), &credential)
            .await?
            .ok_or(SignInError::InvalidToken)?;
        if t - session.last_seen_at >= TOUCH_INTERVAL
            && let Err(e) = self.meta.touch_web_session(&session.id, t).await
        {
            tracing::warn!(error = %e, "recording a session's last use failed");
        }
        Ok(Caller {
            principal,
            credential: Some(credential),
            proof: Proof::Session(session.id),
        })
    }

    // ---- access ----

    pub async fn rights(
        &self,
        principal: &Principal,
        repo: &RepoName,
    ) -> Result<Actions, MetaError> {
        let mut facts = self
            .meta
            .repository_facts(repo, principal.user.as_deref())
            .await?;
        // A mirrored repository is there before its first pull, as visible as new
        // repositories of its prefix's namespace are; in registry-mirror mode, so is any
        // repository that does not exist here (the default upstream may have it).
        let mirrored_namespace = if self.mirror_prefixes.iter().any(|p| p == repo.namespace()) {
            Some(repo.namespace())
        } else {
            self.mirror_default.as_deref()
        };
        if !facts.exists
            && let Some(namespace) = mirrored_namespace
        {
            facts.exists = true;
            facts.public = match self.meta.namespace(namespace).await? {
                Some(ns) if ns.default_public.is_some() => ns.default_public == Some(true),
                _ => self
                    .meta
                    .setting("default_public")
                    .await?
                    .is_none_or(|v| v.trim() != "0"),
            };
        }
        Ok(repository_rights(principal, &facts))
    }

    /// What to grant of `requested`: the intersection with what `principal` may do.
    /// Nothing requested is an error; what cannot be granted is left out.
    pub async fn grants(
        &self,
        principal: &Principal,
        requested: &[Scope],
    ) -> Result<Vec<Grant>, MetaError> {
        let mut grants: Vec<Grant> = Vec::new();
        for scope in requested {
            let (kind, name, allowed) = match &scope.resource {
                Resource::Catalog => ("registry", "catalog".to_owned(), vec!["*".to_owned()]),
                Resource::Repository(repo) => {
                    let allowed = scope.actions.intersect(self.rights(principal, repo).await?);
                    let names = allowed.names().into_iter().map(str::to_owned).collect();
                    ("repository", repo.to_string(), names)
                }
            };
            if allowed.is_empty() {
                continue;
            }
            match grants.iter_mut().find(|g| g.kind == kind && g.name == name) {
                Some(existing) => {
                    for action in allowed {
                        if !existing.actions.contains(&action) {
                            existing.actions.push(action);
                        }
                    }
                }
                None => grants.push(Grant {
                    kind: kind.to_owned(),
                    name,
                    actions: allowed,
                }),
            }
        }
        Ok(grants)
    }

    /// Issues an access token for `requested` (and a refresh token if asked for and the
    /// principal signed in).
    pub async fn issue(
        &self,
        principal: &Principal,
        credential: Option<&Credential>,
        requested: &[Scope],
        want_refresh: bool,
    ) -> Result<IssuedTokens, AccountError> {
        let t = now();
        let grants = self.grants(principal, requested).await?;
        let user = principal.user.as_deref();
        let signer = self.signer().await?;
        let access_token = signer
            .issue_access(user, credential, grants.clone(), t)
            .map_err(|e| AccountError::Invalid(e.to_string()))?;
        let refresh_token = match (want_refresh, user, credential) {
            (true, Some(user), Some(credential)) => {
                Some(self.refresh_token(user, credential, t).await?)
            }
            _ => None,
        };
        Ok(IssuedTokens {
            granted: grants,
            access_token,
            expires_in: signer.access_lifetime,
            issued_at: t,
            refresh_token,
        })
    }

    /// A long-lived sign-in (docker's identity token, the web session).
    pub async fn refresh_token(
        &self,
        user: &str,
        credential: &Credential,
        t: i64,
    ) -> Result<String, AccountError> {
        let expires_at = match credential {
            Credential::Password { .. } => t + PASSWORD_REFRESH_LIFETIME,
            Credential::AccessToken { id } => self
                .meta
                .token(id)
                .await?
                .and_then(|token| token.expires_at)
                .unwrap_or(t + TOKEN_REFRESH_LIFETIME),
        };
        self.signer()
            .await?
            .issue_refresh(user, credential, t, expires_at)
            .map_err(|e| AccountError::Invalid(e.to_string()))
    }

    pub fn viewer(principal: &Principal) -> Viewer<'_> {
        match (&principal.user, principal.admin) {
            (_, true) => Viewer::All,
            (Some(user), false) => Viewer::User(user),
            (None, false) => Viewer::Anonymous,
        }
    }

    // ---- administration (CLI and API) ----

    pub async fn create_user(
        &self,
        name: &str,
        password: &str,
        admin: bool,
    ) -> Result<User, AccountError> {
        let name: AccountName = name.parse()?;
        let hash = self.hash_chosen_password(password).await?;
        self.meta.create_user(&name, &hash, admin).await?;
        self.meta
            .user(name.as_str())
            .await?
            .ok_or_else(|| AccountError::NotFound(format!("user {name}")))
    }

    pub async fn set_password(&self, name: &str, password: &str) -> Result<(), AccountError> {
        let hash = self.hash_chosen_password(password).await?;
        found(self.meta.set_password(name, &hash).await?, || {
            format!("user {name}")
        })
    }

    pub async fn delete_user(&self, name: &str) -> Result<(), AccountError> {
        found(self.meta.delete_user(name).await?, || {
            format!("user {name}")
        })
    }

    pub async fn create_org(&self, name: &str, owner: &str) -> Result<(), AccountError> {
        let name: AccountName = name.parse()?;
        Ok(self.meta.create_org(&name, owner).await?)
    }

    pub async fn set_member(&self, org: &str, user: &str, role: Role) -> Result<(), AccountError> {
        Ok(self.meta.set_member(org, user, role).await?)
    }

    pub async fn remove_member(&self, org: &str, user: &str) -> Result<(), AccountError> {
        found(self.meta.remove_member(org, user).await?, || {
            format!("member {user} of {org}")
        })
    }

    pub async fn create_token(
        &self,
        user: &str,
        scope: TokenScope,
        expires_in: Option<Duration>,
        label: Option<&str>,
    ) -> Result<NewToken, AccountError> {
        let user: AccountName = user.parse()?;
        let secret = secret::new_token_secret();
        let t = now();
        let expires_at = match expires_in {
            None => None,
            Some(d) => match i64::try_from(d.as_secs()) {
                Ok(secs) if secs <= MAX_TOKEN_LIFETIME => Some(t + secs),
                _ => {
                    return Err(AccountError::Invalid(
                        "an access token may live ten years at most".into(),
                    ));
                }
            },
        };
        let token = AccessToken {
            id: secret::new_token_id(),
            user,
            name: label.unwrap_or("token").to_owned(),
            secret_hash: secret::hash_token_secret(&secret),
            scope,
            created_at: t,
            expires_at,
            last_used_at: None,
            revoked_at: None,
        };
        self.meta.create_token(&token).await?;
        Ok(NewToken { token, secret })
    }

    pub async fn revoke_token(&self, id: &str) -> Result<(), AccountError> {
        found(self.meta.revoke_token(id).await?, || {
            format!("active token {id}")
        })
    }

    /// Checks a password a person chose and hashes it at full cost, in a work area.
    async fn hash_chosen_password(&self, password: &str) -> Result<String, AccountError> {
        check_chosen_password(password)?;
        self.passwords
            .hash(password, Cost::Full)
            .await
            .map_err(|e| AccountError::Hash(e.to_string()))
    }

    /// Whether `principal` may manage `namespace` (its visibility, its members): the
    /// owner, an organization admin, or a server administrator.
    pub async fn may_manage(
        &self,
        principal: &Principal,
        namespace: &str,
    ) -> Result<bool, MetaError> {
        if principal.admin {
            return Ok(true);
        }
        let Some(user) = &principal.user else {
            return Ok(false);
        };
        if user == namespace {
            return Ok(true);
        }
        let members = self.meta.members(namespace).await?.unwrap_or_default();
        Ok(members
            .iter()
            .any(|m| m.user.as_str() == user && m.role == Role::Admin))
    }
}

fn token_principal(user: &User, token: &AccessToken) -> Principal {
    Principal {
        user: Some(user.name.to_string()),
        admin: user.admin,
        ceiling: token.scope.actions(),
        token_id: Some(token.id.clone()),
    }
}

/// `Ok` if a change found its target, else `NotFound(what)`.
fn found(changed: bool, what: impl FnOnce() -> String) -> Result<(), AccountError> {
    if changed {
        Ok(())
    } else {
        Err(AccountError::NotFound(what()))
    }
}

/// A user signed in with their password.
fn password_caller(record: &User) -> Caller {
    Caller {
        principal: Principal::user(record.name.as_str(), record.admin),
        credential: Some(Credential::Password {
            epoch: record.credentials_epoch,
        }),
        proof: Proof::Password,
    }
}

fn check_chosen_password(password: &str) -> Result<(), AccountError> {
    if password.chars().count() < 8 {
        return Err(AccountError::Invalid(
            "passwords need at least 8 characters".into(),
        ));
    }
    if looks_like_token(password) {
        return Err(AccountError::Invalid(format!(
            "passwords may not start with {}",
            secret::TOKEN_PREFIX
        )));
    }
    Ok(())
}
