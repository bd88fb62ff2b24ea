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
    /// `s3://BUCKET[/PREFIX]`: an S3-compatible bucket, reached with the standard
    /// `AWS_*` environment (endpoint, region, credentials). Several nodes may share it.
    S3 {
        url: String,
        /// Send blob GETs to a presigned URL valid this long instead of streaming.
        redirect: Option<Duration>,
    },
}

/// Where metadata lives.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// `sqlite://PATH`: an embedded SQLite file.
    Sqlite(String),
    /// `postgres://…` (or `postgresql://…`): a PostgreSQL database that several nodes
    /// may share.
    Postgres(String),
}

// Hand-written so that a password in a PostgreSQL URL never reaches a log line.
impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DatabaseConfig::Sqlite(url) => f.debug_tuple("Sqlite").field(url).finish(),
            DatabaseConfig::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&redact_password(url))
                .finish(),
        }
    }
}

/// `scheme://user:secret@host/…` → `scheme://user:***@host/…`.
fn redact_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((credentials, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match credentials.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_owned(),
    }
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
    /// Take the scheme and host the client used (token realms, cookies, same-origin
    /// checks) from `X-Forwarded-Proto`/`-Host`: only behind a proxy that sets them.
    pub trust_forwarded_host: bool,
    /// argon2 checks that may run at once, each in its own 19 MiB work area.
    pub password_workers: usize,
    /// Namespaces whose repositories mirror an upstream (its prefixes, from the
    /// config's upstreams): a repository there exists for access as soon as its
    /// upstream has it, with its namespace's visibility, before its first pull.
    pub mirror_prefixes: Vec<String>,
    /// Registry-mirror mode's upstream prefix: any repository that does not exist here
    /// may be pulled through it, as visible as that prefix's namespace says.
    pub mirror_default: Option<String>,
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
            trust_forwarded_host: false,
            password_workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            mirror_prefixes: Vec::new(),
            mirror_default: None,
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
            .field("trust_forwarded_host", &self.trust_forwarded_host)
            .field("password_workers", &self.password_workers)
            .field("mirror_prefixes", &self.mirror_prefixes)
            .field("mirror_default", &self.mirror_default)
            .finish()
    }
}

/// What connections and clients may hold and ask for. Each bound has a default that
/// one busy CI host (64 concurrent uploads, 256 connections) never reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A request's headers must arrive within this, counted from the connection's
    /// start or from the first byte after the previous response.
    pub header_timeout: Duration,
    /// A connection with no request in flight is closed after this.
    pub idle_timeout: Duration,
    /// A response the client takes no bytes of for this long is abandoned.
    pub send_timeout: Duration,
    /// Open connections at once.
    pub max_connections: usize,
    /// Open connections at once from one client address (an IPv6 client by its /64).
    pub max_connections_per_address: usize,
    /// Bytes per second a request body must average while the server waits for it
    /// (0: no floor).
    pub min_body_rate: u64,
    /// The stretch of waiting that rate is averaged over.
    pub body_rate_window: Duration,
    /// Memory all request bodies held whole (manifests, JSON, forms) may take together.
    pub max_body_memory: usize,
    /// Open upload sessions per client (a user, or the address of an anonymous one).
    pub max_uploads_per_client: u32,
    /// Manifest pulls per window for anonymous clients, by address (`None`: no limit).
    pub pull_limit_anonymous: Option<PullLimit>,
    /// Manifest pulls per window for each signed-in account (`None`: no limit).
    pub pull_limit_account: Option<PullLimit>,
}

/// A pull rate limit in Docker Hub's model: `count` manifest GETs per fixed `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PullLimit {
    pub count: u32,
    pub window: Duration,
}

impl PullLimit {
    /// `COUNT/WINDOW`, such as `100/6h`.
    pub fn parse(text: &str) -> Result<PullLimit, ConfigError> {
        let invalid =
            || ConfigError::PullLimit(format!("{text:?}: use COUNT/WINDOW, such as 100/6h"));
        let (count, window) = text.split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        let window = humantime::parse_duration(window.trim()).map_err(|_| invalid())?;
        if count == 0 || window < Duration::from_secs(1) {
            return Err(invalid());
        }
        Ok(PullLimit { count, window })
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(75),
            send_timeout: Duration::from_secs(60),
            max_connections: 4096,
            max_connections_per_address: 512,
            min_body_rate: 1024,
            body_rate_window: Duration::from_secs(30),
            max_body_memory: 64 * 1024 * 1024,
            max_uploads_per_client: 1024,
            pull_limit_anonymous: None,
            pull_limit_account: None,
        }
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
    pub limits: Limits,
    /// How garbage collection runs, here and in `berth gc`.
    pub gc: crate::gc::GcOptions,
    /// A garbage-collection pass runs this often in the background (`None`: never).
    pub gc_interval: Option<Duration>,
    /// Registries mirrored under a prefix (`--upstream hub=https://registry-1.docker.io`).
    pub upstreams: Vec<UpstreamConfig>,
    /// The prefix of the upstream that serves repositories that exist nowhere else
    /// (what the Docker engine's `registry-mirrors` asks for).
    pub mirror_default: Option<String>,
    /// Serve `/metrics` only on this address (not on the main port).
    pub metrics_addr: Option<SocketAddr>,
    /// Serve HTTPS with this certificate (`--tls-cert`, `--tls-key`).
    pub tls: Option<TlsFiles>,
    /// Audit events are kept this long (`None`: for ever).
    pub audit_retention: Option<Duration>,
    /// Retention policies are applied this often (`None`: only by `berth retention run`).
    pub retention_interval: Option<Duration>,
    /// Images scanned at once after pushes (0: only on demand).
    pub scan_workers: usize,
}

/// A server certificate (with its chain) and its private key, PEM files, read again
/// when they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// One mirrored registry: repositories under `PREFIX/` are read-only copies of its
/// repositories, fetched when first pulled.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// The first component of the mirrored repositories' names (`hub`).
    pub prefix: String,
    /// `https://registry-1.docker.io`.
    pub url: String,
    pub username: Option<String>,
    pub password: Option<String>,
    /// A cached tag is checked with the upstream (a HEAD) once this old.
    pub tag_ttl: Duration,
    /// How long the upstream may take to answer (to connect, to start a response, and
    /// between the bytes of a body) before it counts as unreachable.
    pub timeout: Duration,
    /// Bytes the cache of this upstream may hold; past it, the least recently pulled
    /// images that are not pinned are evicted (garbage collection then frees their
    /// blobs that nothing else uses). `None`: no cap.
    pub max_size: Option<u64>,
}

impl UpstreamConfig {
    pub const DEFAULT_TAG_TTL: Duration = Duration::from_secs(5 * 60);
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

    /// `PREFIX=URL`, with the default TTL and timeout.
    pub fn parse(text: &str) -> Result<UpstreamConfig, ConfigError> {
        let (prefix, url) = text
            .split_once('=')
            .ok_or_else(|| ConfigError::Upstream(format!("{text:?}: use PREFIX=URL")))?;
        let upstream = UpstreamConfig {
            prefix: prefix.trim().to_owned(),
            url: url.trim().trim_end_matches('/').to_owned(),
            username: None,
            password: None,
            tag_ttl: Self::DEFAULT_TAG_TTL,
            timeout: Self::DEFAULT_TIMEOUT,
            max_size: None,
        };
        upstream.check()?;
        Ok(upstream)
    }

    /// A prefix that is one valid name component, and an http(s) URL.
    pub fn check(&self) -> Result<(), ConfigError> {
        let valid_prefix = !self.prefix.is_empty()
            && format!("{}/x", self.prefix)
                .parse::<berth_core::RepoName>()
                .is_ok()
            && !self.prefix.contains('/');
        if !valid_prefix {
            return Err(ConfigError::Upstream(format!(
                "prefix {:?}: one name component, such as hub or ghcr",
                self.prefix
            )));
        }
        let authority = self
            .url
            .split_once("://")
            .map_or("", |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default();
        if authority.contains('@') {
            return Err(ConfigError::Upstream(format!(
                "url of {:?}: give credentials as username and password, not in the URL",
                self.prefix
            )));
        }
        if !(self.url.starts_with("http://") || self.url.starts_with("https://")) {
            return Err(ConfigError::Upstream(format!(
                "url {:?}: use https://HOST[:PORT] (or http://)",
                self.url
            )));
        }
        Ok(())
    }
}

// Hand-written so an upstream's password never reaches a log line through `{:?}`.
impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("prefix", &self.prefix)
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<set>"))
            .field("tag_ttl", &self.tag_ttl)
            .field("timeout", &self.timeout)
            .field("max_size", &self.max_size)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unsupported storage URL {0:?}: use file://PATH or s3://BUCKET[/PREFIX]")]
    Storage(String),
    #[error(
        "unsupported database URL {0:?}: use sqlite://PATH or postgres://USER:PASSWORD@HOST/DB"
    )]
    Database(String),
    #[error("upstream {0}")]
    Upstream(String),
    #[error("pull limit {0}")]
    PullLimit(String),
}

impl StorageConfig {
    pub fn parse(url: &str) -> Result<StorageConfig, ConfigError> {
        if let Some(path) = url.strip_prefix("file://")
            && !path.is_empty()
        {
            return Ok(StorageConfig::Filesystem(PathBuf::from(path)));
        }
        if berth_blob::s3::parse_s3_url(url).is_ok() {
            return Ok(StorageConfig::S3 {
                url: url.to_owned(),
                redirect: None,
            });
        }
        Err(ConfigError::Storage(url.to_owned()))
    }
}

impl DatabaseConfig {
    pub fn parse(url: &str) -> Result<DatabaseConfig, ConfigError> {
        match url.strip_prefix("sqlite://") {
            Some(path) if !path.is_empty() => Ok(DatabaseConfig::Sqlite(url.to_owned())),
            _ if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(DatabaseConfig::Postgres(url.to_owned()))
            }
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
            limits: Limits::default(),
            gc: crate::gc::GcOptions::default(),
            gc_interval: Some(Duration::from_secs(60 * 60)),
            upstreams: Vec::new(),
            mirror_default: None,
            metrics_addr: None,
            tls: None,
            audit_retention: Some(Duration::from_secs(90 * 24 * 60 * 60)),
            retention_interval: Some(Duration::from_secs(60 * 60)),
            scan_workers: 1,
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
        assert_eq!(
            StorageConfig::parse("s3://bucket/berth").unwrap(),
            StorageConfig::S3 {
                url: "s3://bucket/berth".into(),
                redirect: None
            }
        );
        assert!(StorageConfig::parse("s3://B").is_err());
        assert!(StorageConfig::parse("gs://bucket").is_err());
        assert!(DatabaseConfig::parse("sqlite://x.db").is_ok());
        assert_eq!(
            DatabaseConfig::parse("postgres://h/db").unwrap(),
            DatabaseConfig::Postgres("postgres://h/db".into())
        );
        assert!(DatabaseConfig::parse("mysql://h/db").is_err());
        let shown = format!(
            "{:?}",
            DatabaseConfig::parse("postgres://berth:s3cret@db:5432/berth").unwrap()
        );
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(
            shown.contains("postgres://berth:***@db:5432/berth"),
            "{shown}"
        );
    }
}
