//! The validated, typed configuration `berth serve` runs with. Reading files and the
//! environment is the binary's job; this module only says what a valid config is.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Where blob bytes live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// `file://PATH`: a directory on the local filesystem.
    Filesystem(PathBuf),
}

/// Where metadata lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// `sqlite://PATH`: an embedded SQLite file.
    Sqlite(String),
}

/// Accounts and the Docker token-auth flow.
#[derive(Clone)]
pub struct AuthConfig {
    /// The token realm clients are sent to (`https://registry.example.com/token`).
    /// `None`: built from each request's `Host` and `X-Forwarded-Proto`/`-Host`.
    pub realm: Option<String>,
    /// The `service` of challenges and the audience of issued tokens.
    pub service: String,
    /// How long an issued bearer token lives (at least a minute).
    pub token_lifetime: Duration,
    /// Whether new repositories are public unless their namespace says otherwise.
    pub default_public: bool,
    /// The first `admin`'s password, used only when that account is created.
    pub admin_password: Option<String>,
    /// Failed sign-ins allowed per client address and per user name in `login_window`.
    pub login_failures: u32,
    pub login_window: Duration,
    /// Take the client address (for failed-login limits) from the last
    /// `X-Forwarded-For` entry: set this only behind a proxy that appends it.
    pub trust_forwarded_for: bool,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            realm: None,
            service: "berth".to_owned(),
            token_lifetime: Duration::from_secs(300),
            default_public: true,
            admin_password: None,
            login_failures: 10,
            login_window: Duration::from_secs(60),
            trust_forwarded_for: false,
        }
    }
}

// Hand-written so the admin password can never reach a log line through `{:?}`.
impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("realm", &self.realm)
            .field("service", &self.service)
            .field("token_lifetime", &self.token_lifetime)
            .field("default_public", &self.default_public)
            .field(
                "admin_password",
                &self.admin_password.as_ref().map(|_| "<set>"),
            )
            .field("login_failures", &self.login_failures)
            .field("login_window", &self.login_window)
            .field("trust_forwarded_for", &self.trust_forwarded_for)
            .finish()
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub addr: SocketAddr,
    pub storage: StorageConfig,
    pub database: DatabaseConfig,
    /// No authentication at all: anyone may push and pull (a trusted network).
    pub open: bool,
    pub auth: AuthConfig,
    /// Upload sessions idle longer than this are removed with their bytes.
    pub upload_idle_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unsupported storage URL {0:?}: use file://PATH (s3:// is not available yet)")]
    Storage(String),
    #[error("unsupported database URL {0:?}: use sqlite://PATH (postgres:// is not available yet)")]
    Database(String),
}

impl StorageConfig {
    pub fn parse(url: &str) -> Result<StorageConfig, ConfigError> {
        match url.strip_prefix("file://") {
            Some(path) if !path.is_empty() => Ok(StorageConfig::Filesystem(PathBuf::from(path))),
            _ => Err(ConfigError::Storage(url.to_owned())),
        }
    }
}

impl DatabaseConfig {
    pub fn parse(url: &str) -> Result<DatabaseConfig, ConfigError> {
        match url.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => Ok(DatabaseConfig::Sqlite(url.to_owned())),
            _ => Err(ConfigError::Database(url.to_owned())),
        }
    }
}

impl Config {
    /// The embedded default: everything under `data_dir`.
    pub fn embedded(addr: SocketAddr, data_dir: impl Into<PathBuf>) -> Config {
        let data_dir = data_dir.into();
        Config {
            addr,
            storage: StorageConfig::Filesystem(data_dir.clone()),
            database: DatabaseConfig::Sqlite(format!(
                "sqlite://{}",
                data_dir.join("berth.db").display()
            )),
            open: false,
            auth: AuthConfig::default(),
            upload_idle_timeout: Duration::from_secs(24 * 60 * 60),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_supported_urls_and_names_the_rest() {
        assert_eq!(
            StorageConfig::parse("file:///var/lib/berth").unwrap(),
            StorageConfig::Filesystem("/var/lib/berth".into())
        );
        assert!(StorageConfig::parse("s3://bucket").is_err());
        assert!(DatabaseConfig::parse("sqlite://x.db").is_ok());
        assert!(DatabaseConfig::parse("postgres://h/db").is_err());
    }
}
