//! Accounts in the metadata store: users, organizations and their members, access
//! tokens and web sessions (only their hashes), namespace defaults, repository
//! visibility, and the few
//! server-wide settings that every node must share (such as the token signing key).
//!
//! The store records facts; deciding what they allow is `berth-auth`'s job.

use async_trait::async_trait;
use berth_core::{AccountName, RepoName, RepositoryFacts, Role, TokenScope};

use crate::{MetaError, Page, Result};

/// A user who can sign in. Their namespace is their name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: AccountName,
    /// An argon2 PHC string.
    pub password_hash: String,
    pub admin: bool,
    /// Bumped on every password change: sessions and refresh tokens from before end.
    pub credentials_epoch: i64,
    pub created_at: i64,
}

/// An organization and when it was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Org {
    pub name: AccountName,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub user: AccountName,
    pub role: Role,
}

/// A personal access token. The secret itself is never stored, only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    pub id: String,
    pub user: AccountName,
    /// The owner's label for it ("laptop", "ci").
    pub name: String,
    pub secret_hash: String,
    pub scope: TokenScope,
    pub created_at: i64,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

impl AccessToken {
    /// Whether the token may be used at `now` (unix seconds).
    pub fn is_active(&self, now: i64) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|t| now < t)
    }
}

/// A signed-in web session. The cookie holds its secret; the store only its hash, so a
/// session ends when its row goes (sign-out, sign out everywhere, a removed user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebSession {
    /// Public id, shown in session lists and used to end one session.
    pub id: String,
    pub user: AccountName,
    pub secret_hash: String,
    /// The password generation it was signed in with: a password change ends it.
    pub epoch: Option<i64>,
    /// The access token it was signed in with instead: revoking the token ends it.
    pub token_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    pub last_seen_at: i64,
    /// Where it was signed in from, and with what (for the owner's list).
    pub client: String,
    pub user_agent: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceKind {
    User,
    Org,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub kind: NamespaceKind,
    /// Visibility of new repositories here; `None` follows the server default.
    pub default_public: Option<bool>,
}

/// Whose view of the repository list to give.
#[derive(Debug, Clone, Copy)]
pub enum Viewer<'a> {
    /// Everything (server administrators, open mode).
    All,
    /// Public repositories and those in namespaces the user owns or belongs to.
    User(&'a str),
    /// Public repositories only.
    Anonymous,
}

/// A fixed window of sign-in attempts counted for one key (see
/// [`AccountStore::count_sign_in_attempt`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignInWindow {
    /// Attempts counted in the window (those forgiven taken off).
    pub attempts: u32,
    /// When the window started (unix seconds, the callers' clock).
    pub started_at: i64,
}

/// Why an account change was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountRefusal {
    #[error("the name {0:?} is already taken")]
    NameTaken(String),
    /// Names of removed users are never given out again: their repositories stay, and
    /// a newcomer with the name must not inherit them.
    #[error("the name {0:?} belonged to a removed user and is not given out again")]
    NameRetired(String),
    #[error("no user named {0:?}")]
    UnknownUser(String),
    #[error("no organization named {0:?}")]
    UnknownOrg(String),
    #[error(transparent)]
    Store(#[from] MetaError),
}

#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    // ---- settings shared by every node ----
    async fn setting(&self, key: &str) -> Result<Option<String>>;
    /// Stores `value` under `key` unless a value is there already; returns the stored one.
    async fn init_setting(&self, key: &str, value: &str) -> Result<String>;
    async fn set_setting(&self, key: &str, value: &str) -> Result<()>;

    // ---- users ----
    /// Creates a user and their namespace. A name that was ever used, by a user who has
    /// been removed since or by an organization, is refused.
    async fn create_user(
        &self,
        name: &AccountName,
        password_hash: &str,
        admin: bool,
    ) -> std::result::Result<(), AccountRefusal>;
    /// Creates `name` as the server's first administrator, once per store: unless the
    /// setting `marker` is present, records it and, if the name was never used, creates
    /// the user, in one transaction. `true` only for the call that created the user, so
    /// that of several nodes starting together on an empty store exactly one reports
    /// (and logs) the password it chose, and an administrator who removes the user does
    /// not get it back.
    async fn create_first_admin(
        &self,
        name: &AccountName,
        password_hash: &str,
        marker: &str,
    ) -> Result<bool>;
    async fn user(&self, name: &str) -> Result<Option<User>>;
    async fn list_users(&self) -> Result<Vec<User>>;
    /// Replaces the password hash, bumps the credentials epoch and ends the sessions
    /// signed in with a password.
    async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool>;
    /// Removes the user, their tokens, sessions and memberships. Their namespace and its
    /// repositories stay, and the name is never given out again.
    async fn delete_user(&self, name: &str) -> Result<bool>;

    // ---- organizations ----
    /// Creates an organization with `owner` as its first `admin` member.
    async fn create_org(
        &self,
        name: &AccountName,
        owner: &str,
    ) -> std::result::Result<(), AccountRefusal>;
    async fn list_orgs(&self) -> Result<Vec<Org>>;
    /// The members of `org`, or `None` if there is no such organization.
    async fn members(&self, org: &str) -> Result<Option<Vec<Member>>>;
    /// Adds a member or changes their role.
    async fn set_member(
        &self,
        org: &str,
        user: &str,
        role: Role,
    ) -> std::result::Result<(), AccountRefusal>;
    async fn remove_member(&self, org: &str, user: &str) -> Result<bool>;

    // ---- namespaces and visibility ----
    async fn namespace(&self, name: &str) -> Result<Option<Namespace>>;
    /// Sets the visibility of new repositories in a namespace (`None`: server default).
    async fn set_namespace_default(&self, name: &str, public: Option<bool>) -> Result<bool>;
    /// Whether `repository` is public, or `None` if it does not exist.
    async fn repository_visibility(&self, repository: &RepoName) -> Result<Option<bool>>;
    /// Sets a repository's visibility, creating it (empty) if it does not exist yet, so
    /// a repository can be made private before its first push.
    async fn set_repository_visibility(&self, repository: &RepoName, public: bool) -> Result<()>;
    /// Everything access to `repository` by `user` (or anonymous) depends on, in one read.
    async fn repository_facts(
        &self,
        repository: &RepoName,
        user: Option<&str>,
    ) -> Result<RepositoryFacts>;
    /// The repository names `viewer` may read, after `last`, at most `limit`.
    async fn visible_repositories(
        &self,
        viewer: Viewer<'_>,
        last: Option<&str>,
        limit: u32,
    ) -> Result<Page>;

    // ---- access tokens ----
    async fn create_token(&self, token: &AccessToken) -> std::result::Result<(), AccountRefusal>;
    async fn token_by_secret_hash(&self, secret_hash: &str) -> Result<Option<AccessToken>>;
    async fn token(&self, id: &str) -> Result<Option<AccessToken>>;
    /// A user's tokens, newest first, revoked ones included.
    async fn list_tokens(&self, user: &str) -> Result<Vec<AccessToken>>;
    /// Revokes a token; `false` if there was no such active token.
    async fn revoke_token(&self, id: &str) -> Result<bool>;
    /// Records that a token was used at `now`.
    async fn touch_token(&self, id: &str, now: i64) -> Result<()>;

    // ---- web sessions ----
    async fn create_web_session(
        &self,
        session: &WebSession,
    ) -> std::result::Result<(), AccountRefusal>;
    async fn web_session_by_secret_hash(&self, secret_hash: &str) -> Result<Option<WebSession>>;
    /// A user's sessions that have not expired, newest first.
    async fn web_sessions(&self, user: &str, now: i64) -> Result<Vec<WebSession>>;
    /// Ends one session; `false` if there was none with that id.
    async fn delete_web_session(&self, id: &str) -> Result<bool>;
    /// Ends every session of a user ("sign out everywhere"); `false` if there was none.
    async fn delete_web_sessions(&self, user: &str) -> Result<bool>;
    /// Records that a session was used at `now`.
    async fn touch_web_session(&self, id: &str, now: i64) -> Result<()>;
    /// Removes sessions that expired before `now`.
    async fn expire_web_sessions(&self, now: i64) -> Result<()>;

    // ---- failed sign-in limits, shared by every node ----
    //
    // Keys are opaque (the server's are `addr:…` and `user:…`, at most a few hundred
    // bytes). Times are unix seconds from the callers' clocks; a window that started at
    // or before `window_start_cutoff` (`now - window`) has ended.
    /// Counts one attempt for `key` and returns its window, this attempt included: the
    /// current one, or a new one starting at `now` (with this attempt alone) if the
    /// last has ended or there was none. Atomic: attempts counted at once, from any
    /// number of store instances, each get a count of their own.
    async fn count_sign_in_attempt(
        &self,
        key: &str,
        window_start_cutoff: i64,
        now: i64,
    ) -> Result<SignInWindow>;
    /// The windows of `keys` that have not ended, in the order of `keys` (`None`: no
    /// such window); counts nothing.
    async fn sign_in_windows(
        &self,
        keys: &[&str],
        window_start_cutoff: i64,
    ) -> Result<Vec<Option<SignInWindow>>>;
    /// Takes one attempt off `key`'s count (it succeeded), if its window is still the
    /// one that started at `started_at`; `false` if it is not, or nothing is left.
    async fn forgive_sign_in(&self, key: &str, started_at: i64) -> Result<bool>;
    /// Forgets windows that have ended; returns how many.
    async fn sweep_sign_in_windows(&self, window_start_cutoff: i64) -> Result<u64>;
}
