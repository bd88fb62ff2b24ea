//! `berth serve`: settings from flags, the environment and a TOML file, resolved into
//! a typed [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use berth_server::{Config, DatabaseConfig, StorageConfig, UpstreamConfig};
use clap::Args;
use serde::Deserialize;

/// Each flag may also be set as `BERTH_<NAME>` in the environment or in the TOML file
/// given with `--config`; the command line wins, then the environment, then the file.
#[derive(Args)]
pub struct ServeArgs {
    /// TOML file with any of the settings below (snake_case keys).
    #[arg(long, env = "BERTH_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on [default: 0.0.0.0:5000]
    #[arg(long, env = "BERTH_ADDR")]
    addr: Option<SocketAddr>,
    /// Where embedded storage lives [default: ./berth-data]
    #[arg(long, env = "BERTH_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Blob storage URL: file://PATH, or s3://BUCKET[/PREFIX] with the endpoint, region
    /// and credentials from AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID and
    /// AWS_SECRET_ACCESS_KEY [default: file://<data-dir>]
    #[arg(long, env = "BERTH_STORAGE")]
    storage: Option<String>,
    /// With s3:// storage, answer blob downloads with a redirect to a presigned URL
    /// valid this long (clients fetch from the bucket directly) [default: stream them]
    #[arg(long, env = "BERTH_BLOB_REDIRECT", value_parser = humantime::parse_duration)]
    blob_redirect: Option<Duration>,
    /// Metadata database URL: sqlite://PATH, or postgres://USER:PASSWORD@HOST[:PORT]/DB
    /// (the password never appears in logs) [default: sqlite://<data-dir>/berth.db]
    #[arg(long, env = "BERTH_DATABASE")]
    database: Option<String>,
    /// No authentication: anyone may push and pull (trusted networks only).
    #[arg(long, env = "BERTH_OPEN")]
    open: bool,
    /// File holding the first `admin`'s password, read when that account is created
    /// (or set BERTH_ADMIN_PASSWORD) [default: generate one and log it once]
    #[arg(long, env = "BERTH_ADMIN_PASSWORD_FILE")]
    admin_password_file: Option<PathBuf>,
    /// Token realm URL sent in challenges, for a proxy that does not send
    /// X-Forwarded-Proto/-Host [default: from each request]
    #[arg(long, env = "BERTH_REALM")]
    realm: Option<String>,
    /// The service name in challenges and the audience of issued tokens [default: berth]
    #[arg(long, env = "BERTH_SERVICE")]
    service: Option<String>,
    /// Visibility of new repositories unless their namespace sets one [default: public]
    #[arg(long, env = "BERTH_DEFAULT_VISIBILITY", value_parser = ["public", "private"])]
    default_visibility: Option<String>,
    /// Lifetime of issued bearer tokens [default: 5m]
    #[arg(long, env = "BERTH_TOKEN_LIFETIME", value_parser = humantime::parse_duration)]
    token_lifetime: Option<Duration>,
    /// Failed sign-ins allowed per client address and per user each minute [default: 10]
    #[arg(long, env = "BERTH_LOGIN_FAILURES")]
    login_failures: Option<u32>,
    /// Take the client address for sign-in limits from the last X-Forwarded-For entry
    /// (only behind a proxy that appends it)
    #[arg(long, env = "BERTH_TRUST_FORWARDED_FOR")]
    trust_forwarded_for: bool,
    /// Take the scheme and host clients used from X-Forwarded-Proto and
    /// X-Forwarded-Host (only behind a proxy that sets them)
    #[arg(long, env = "BERTH_TRUST_FORWARDED_HOST")]
    trust_forwarded_host: bool,
    /// argon2 password checks that may run at once, 19 MiB each [default: one per core]
    #[arg(long, env = "BERTH_PASSWORD_WORKERS")]
    password_workers: Option<usize>,
    /// A request's headers must arrive within this [default: 60s]
    #[arg(long, env = "BERTH_HEADER_TIMEOUT", value_parser = humantime::parse_duration)]
    header_timeout: Option<Duration>,
    /// Close connections idle between requests for this long [default: 75s]
    #[arg(long, env = "BERTH_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Abandon a response the client takes no bytes of for this long [default: 60s]
    #[arg(long, env = "BERTH_SEND_TIMEOUT", value_parser = humantime::parse_duration)]
    send_timeout: Option<Duration>,
    /// Open connections at once [default: 4096]
    #[arg(long, env = "BERTH_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// Open connections at once from one client address [default: 512]
    #[arg(long, env = "BERTH_MAX_CONNECTIONS_PER_ADDRESS")]
    max_connections_per_address: Option<usize>,
    /// Bytes per second a request body must average while berth waits for it; 0 turns
    /// the floor off [default: 1024]
    #[arg(long, env = "BERTH_MIN_BODY_RATE")]
    min_body_rate: Option<u64>,
    /// Memory that request bodies held whole (manifests, JSON) may take together, such
    /// as 64MiB [default: 64MiB]
    #[arg(long, env = "BERTH_MAX_BODY_MEMORY", value_parser = parse_size)]
    max_body_memory: Option<usize>,
    /// Open upload sessions per client (a user, or an anonymous address) [default: 1024]
    #[arg(long, env = "BERTH_MAX_UPLOADS_PER_CLIENT")]
    max_uploads_per_client: Option<u32>,
    /// Manifest pulls (GETs; HEADs are free) allowed per anonymous client address in a
    /// fixed window, as COUNT/WINDOW such as 100/6h; past it, 429 TOOMANYREQUESTS
    /// [default: no limit]
    #[arg(long, env = "BERTH_PULL_LIMIT_ANONYMOUS", value_name = "COUNT/WINDOW")]
    pull_limit_anonymous: Option<String>,
    /// Manifest pulls allowed per signed-in account in a fixed window, such as 200/6h
    /// [default: no limit]
    #[arg(long, env = "BERTH_PULL_LIMIT_ACCOUNT", value_name = "COUNT/WINDOW")]
    pull_limit_account: Option<String>,
    /// Remove upload sessions idle for longer than this [default: 24h]
    #[arg(long, env = "BERTH_UPLOAD_TIMEOUT", value_parser = humantime::parse_duration)]
    upload_timeout: Option<Duration>,
    /// Run garbage collection this often in the background; 0 turns it off (then run
    /// `berth gc`) [default: 1h]
    #[arg(long, env = "BERTH_GC_INTERVAL", value_parser = humantime::parse_duration)]
    gc_interval: Option<Duration>,
    /// Keep a blob this long after the last manifest using it went [default: 24h]
    #[arg(long, env = "BERTH_GC_GRACE", value_parser = humantime::parse_duration)]
    gc_grace: Option<Duration>,
    /// Keep what a push uploaded or mounted this long while its manifest has not come
    /// (at least the grace) [default: 1h]
    #[arg(long, env = "BERTH_GC_PUSH_WINDOW", value_parser = humantime::parse_duration)]
    gc_push_window: Option<Duration>,
    /// Also remove untagged manifests in this namespace or repository (repeatable;
    /// in the environment, comma-separated) [default: none]
    #[arg(long = "gc-untagged", env = "BERTH_GC_UNTAGGED", value_delimiter = ',')]
    gc_untagged: Vec<String>,
    /// Mirror a registry: repositories under PREFIX/ are read-only copies of URL's,
    /// fetched when first pulled (repeatable: PREFIX=URL; credentials, tag_ttl and
    /// timeout in the config file's [[upstream]] tables) [default: none]
    #[arg(long = "upstream", value_name = "PREFIX=URL")]
    upstreams: Vec<String>,
    /// Registry-mirror mode: serve repositories that do not exist here and match no
    /// prefix through this upstream (what the Docker engine's registry-mirrors and
    /// containerd's hosts.toml send) [default: off]
    #[arg(long, value_name = "PREFIX")]
    mirror_default: Option<String>,
    /// Serve HTTPS with this certificate (PEM, the server's first, then its chain),
    /// read again whenever it changes on disk; needs --tls-key [default: plain HTTP]
    #[arg(long, env = "BERTH_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM)
    #[arg(long, env = "BERTH_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Serve /metrics only on this address, not on the main port [default: the main
    /// port]
    #[arg(long, env = "BERTH_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
    /// Log lines as text or as one JSON object each (for log shippers) [default: text]
    #[arg(long, env = "BERTH_LOG_FORMAT", value_parser = ["text", "json"])]
    log_format: Option<String>,
    /// Apply retention policies this often; 0 leaves them to `berth retention run`
    /// [default: 1h]
    #[arg(long, env = "BERTH_RETENTION_INTERVAL", value_parser = humantime::parse_duration)]
    retention_interval: Option<Duration>,
    /// Keep audit events this long; 0 keeps them for ever [default: 90d]
    #[arg(long, env = "BERTH_AUDIT_RETENTION", value_parser = humantime::parse_duration)]
    audit_retention: Option<Duration>,
    /// Images scanned at once after pushes (packages, SBOM, findings); 0 scans only
    /// when asked (`berth scan`, the API) [default: 1]
    #[arg(long, env = "BERTH_SCAN_WORKERS")]
    scan_workers: Option<usize>,
}

impl ServeArgs {
    /// How logs are written: the flag, else the config file's `log_format`. Read
    /// before anything is logged, so before the rest of the settings.
    pub fn log_format(&self) -> anyhow::Result<LogFormat> {
        let chosen = match (&self.log_format, &self.config) {
            (Some(flag), _) => Some(flag.clone()),
            (None, Some(path)) => read_file_config(path)?.log_format,
            (None, None) => None,
        };
        match chosen.as_deref() {
            None | Some("text") => Ok(LogFormat::Text),
            Some("json") => Ok(LogFormat::Json),
            Some(other) => anyhow::bail!("log_format {other:?}: use text or json"),
        }
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// The `--config` file: the same settings as the flags.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    storage: Option<String>,
    blob_redirect: Option<String>,
    database: Option<String>,
    open: Option<bool>,
    upload_timeout: Option<String>,
    admin_password_file: Option<PathBuf>,
    realm: Option<String>,
    service: Option<String>,
    default_visibility: Option<String>,
    token_lifetime: Option<String>,
    login_failures: Option<u32>,
    trust_forwarded_for: Option<bool>,
    trust_forwarded_host: Option<bool>,
    password_workers: Option<usize>,
    header_timeout: Option<String>,
    idle_timeout: Option<String>,
    send_timeout: Option<String>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
    min_body_rate: Option<u64>,
    max_body_memory: Option<String>,
    max_uploads_per_client: Option<u32>,
    pull_limit_anonymous: Option<String>,
    pull_limit_account: Option<String>,
    gc_interval: Option<String>,
    gc_grace: Option<String>,
    gc_push_window: Option<String>,
    gc_untagged: Option<Vec<String>>,
    upstream: Option<Vec<FileUpstream>>,
    mirror_default: Option<String>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    metrics_addr: Option<SocketAddr>,
    log_format: Option<String>,
    audit_retention: Option<String>,
    retention_interval: Option<String>,
    scan_workers: Option<usize>,
}

/// An `[[upstream]]` table of the config file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUpstream {
    prefix: String,
    url: String,
    username: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    tag_ttl: Option<String>,
    timeout: Option<String>,
    max_size: Option<String>,
}

impl FileUpstream {
    fn resolve(self) -> anyhow::Result<UpstreamConfig> {
        let mut upstream = UpstreamConfig::parse(&format!("{}={}", self.prefix, self.url))?;
        upstream.username = self.username;
        upstream.password = match (self.password, self.password_file) {
            (Some(_), Some(_)) => {
                anyhow::bail!(
                    "upstream {}: password or password_file, not both",
                    upstream.prefix
                )
            }
            (Some(password), None) => Some(password),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_owned(),
            ),
            (None, None) => None,
        };
        let key = format!("upstream {}", upstream.prefix);
        if let Some(ttl) = duration(None, self.tag_ttl, &format!("{key} tag_ttl"))? {
            upstream.tag_ttl = ttl;
        }
        if let Some(text) = self.max_size {
            let bytes = parse_size(&text).map_err(|e| anyhow::anyhow!("{key} max_size {e}"))?;
            upstream.max_size = Some(bytes as u64);
        }
        if let Some(timeout) = duration(None, self.timeout, &format!("{key} timeout"))? {
            anyhow::ensure!(!timeout.is_zero(), "{key}: timeout must be more than 0");
            upstream.timeout = timeout;
        }
        Ok(upstream)
    }
}

/// A size such as `65536`, `64KiB`, `64MiB` or `1GiB` ([`berth_core::size::parse`]).
fn parse_size(text: &str) -> Result<usize, String> {
    let bytes = berth_core::size::parse(text)?;
    usize::try_from(bytes).map_err(|_| format!("{text:?}: too large"))
}

/// A duration from the command line, or else from the config file (`key` names it).
fn duration(
    flag: Option<Duration>,
    file: Option<String>,
    key: &str,
) -> anyhow::Result<Option<Duration>> {
    match (flag, file) {
        (Some(d), _) => Ok(Some(d)),
        (None, Some(text)) => Ok(Some(
            humantime::parse_duration(&text).with_context(|| format!("{key} {text:?}"))?,
        )),
        (None, None) => Ok(None),
    }
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
    let file = match &args.config {
        Some(path) => read_file_config(path)?,
        None => FileConfig::default(),
    };
    let addr = args
        .addr
        .or(file.addr)
        .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 5000)));
    let data_dir = args
        .data_dir
        .or(file.data_dir)
        .unwrap_or_else(|| PathBuf::from("berth-data"));
    let mut config = Config::embedded(addr, &data_dir);
    if let Some(url) = args.storage.or(file.storage) {
        config.storage = StorageConfig::parse(&url)?;
    }
    if let Some(valid_for) = duration(args.blob_redirect, file.blob_redirect, "blob_redirect")? {
        match &mut config.storage {
            StorageConfig::S3 { redirect, .. } => *redirect = Some(valid_for),
            StorageConfig::Filesystem(_) => {
                anyhow::bail!("--blob-redirect needs s3:// storage (a filesystem has no URLs)")
            }
        }
    }
    if let Some(url) = args.database.or(file.database) {
        config.database = DatabaseConfig::parse(&url)?;
    }
    config.open = args.open || file.open.unwrap_or(false);
    let auth = &mut config.auth;
    auth.admin_password = match args.admin_password_file.or(file.admin_password_file) {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        ),
        None => std::env::var("BERTH_ADMIN_PASSWORD").ok(),
    };
    auth.realm = args.realm.or(file.realm);
    if let Some(service) = args.service.or(file.service) {
        auth.service = service;
    }
    match args
        .default_visibility
        .or(file.default_visibility)
        .as_deref()
    {
        None | Some("public") => auth.default_public = true,
        Some("private") => auth.default_public = false,
        Some(other) => anyhow::bail!("default_visibility {other:?}: use public or private"),
    }
    if let Some(lifetime) = args.token_lifetime {
        auth.token_lifetime = lifetime;
    } else if let Some(text) = file.token_lifetime {
        auth.token_lifetime =
            humantime::parse_duration(&text).with_context(|| format!("token_lifetime {text:?}"))?;
    }
    if let Some(n) = args.login_failures.or(file.login_failures) {
        auth.login_failures = n;
    }
    auth.trust_forwarded_for =
        args.trust_forwarded_for || file.trust_forwarded_for.unwrap_or(false);
    auth.trust_forwarded_host =
        args.trust_forwarded_host || file.trust_forwarded_host.unwrap_or(false);
    if let Some(n) = args.password_workers.or(file.password_workers) {
        anyhow::ensure!(n > 0, "password_workers must be at least 1");
        auth.password_workers = n;
    }
    if let Some(timeout) = duration(args.upload_timeout, file.upload_timeout, "upload_timeout")? {
        config.upload_idle_timeout = timeout;
    }
    let limits = &mut config.limits;
    if let Some(t) = duration(args.header_timeout, file.header_timeout, "header_timeout")? {
        limits.header_timeout = t;
    }
    if let Some(t) = duration(args.idle_timeout, file.idle_timeout, "idle_timeout")? {
        limits.idle_timeout = t;
    }
    if let Some(t) = duration(args.send_timeout, file.send_timeout, "send_timeout")? {
        limits.send_timeout = t;
    }
    if let Some(n) = args.max_connections.or(file.max_connections) {
        limits.max_connections = n;
    }
    if let Some(n) = args
        .max_connections_per_address
        .or(file.max_connections_per_address)
    {
        limits.max_connections_per_address = n;
    }
    if let Some(rate) = args.min_body_rate.or(file.min_body_rate) {
        limits.min_body_rate = rate;
    }
    if let Some(size) = args.max_body_memory {
        limits.max_body_memory = size;
    } else if let Some(text) = file.max_body_memory {
        limits.max_body_memory =
            parse_size(&text).map_err(|e| anyhow::anyhow!("max_body_memory {e}"))?;
    }
    if let Some(n) = args.max_uploads_per_client.or(file.max_uploads_per_client) {
        limits.max_uploads_per_client = n;
    }
    if let Some(text) = args.pull_limit_anonymous.or(file.pull_limit_anonymous) {
        limits.pull_limit_anonymous = Some(berth_server::config::PullLimit::parse(&text)?);
    }
    if let Some(text) = args.pull_limit_account.or(file.pull_limit_account) {
        limits.pull_limit_account = Some(berth_server::config::PullLimit::parse(&text)?);
    }
    if let Some(interval) = duration(args.gc_interval, file.gc_interval, "gc_interval")? {
        config.gc_interval = (!interval.is_zero()).then_some(interval);
    }
    if let Some(grace) = duration(args.gc_grace, file.gc_grace, "gc_grace")? {
        config.gc.grace = grace;
    }
    if let Some(window) = duration(args.gc_push_window, file.gc_push_window, "gc_push_window")? {
        config.gc.push_window = window;
    }
    config.gc.untagged = if args.gc_untagged.is_empty() {
        file.gc_untagged.unwrap_or_default()
    } else {
        args.gc_untagged
    };
    for scope in &config.gc.untagged {
        anyhow::ensure!(
            scope.parse::<berth_core::RepoName>().is_ok()
                || scope.parse::<berth_core::AccountName>().is_ok(),
            "gc_untagged {scope:?} is neither a namespace nor a repository name"
        );
    }
    for flag in &args.upstreams {
        config.upstreams.push(UpstreamConfig::parse(flag)?);
    }
    for table in file.upstream.unwrap_or_default() {
        let upstream = table.resolve()?;
        // The command line wins for a prefix it names.
        if !config.upstreams.iter().any(|u| u.prefix == upstream.prefix) {
            config.upstreams.push(upstream);
        }
    }
    config.mirror_default = args.mirror_default.or(file.mirror_default);
    if let Some(prefix) = &config.mirror_default {
        anyhow::ensure!(
            config.upstreams.iter().any(|u| &u.prefix == prefix),
            "mirror_default {prefix:?} names no upstream (add --upstream {prefix}=URL)"
        );
    }
    config.tls = match (
        args.tls_cert.or(file.tls_cert),
        args.tls_key.or(file.tls_key),
    ) {
        (Some(cert), Some(key)) => Some(berth_server::config::TlsFiles { cert, key }),
        (None, None) => None,
        _ => anyhow::bail!("tls_cert and tls_key go together"),
    };
    config.metrics_addr = args.metrics_addr.or(file.metrics_addr);
    if let Some(workers) = args.scan_workers.or(file.scan_workers) {
        config.scan_workers = workers;
    }
    if let Some(every) = duration(
        args.retention_interval,
        file.retention_interval,
        "retention_interval",
    )? {
        config.retention_interval = (!every.is_zero()).then_some(every);
    }
    if let Some(kept) = duration(
        args.audit_retention,
        file.audit_retention,
        "audit_retention",
    )? {
        config.audit_retention = (!kept.is_zero()).then_some(kept);
    }
    let limits = &mut config.limits;
    anyhow::ensure!(
        limits.max_connections > 0 && limits.max_connections_per_address > 0,
        "max_connections and max_connections_per_address must be at least 1"
    );
    anyhow::ensure!(
        limits.max_body_memory >= berth_core::manifest::MAX_MANIFEST_BYTES,
        "max_body_memory must hold at least one manifest (4MiB)"
    );
    Ok(config)
}

/// The database the admin commands work on: the same resolution as `berth serve`.
pub fn database_of(
    config: Option<&Path>,
    data_dir: Option<PathBuf>,
    database: Option<String>,
) -> anyhow::Result<DatabaseConfig> {
    let file = match config {
        Some(path) => read_file_config(path)?,
        None => FileConfig::default(),
    };
    match database.or(file.database) {
        Some(url) => Ok(DatabaseConfig::parse(&url)?),
        None => {
            let data_dir = data_dir
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from("berth-data"));
            Ok(Config::embedded(SocketAddr::from(([0, 0, 0, 0], 0)), data_dir).database)
        }
    }
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutting down: finishing in-flight requests");
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = resolve(args)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    tracing::info!(
        addr = %listener.local_addr()?,
        https = config.tls.is_some(),
        storage = ?config.storage,
        database = ?config.database,
        auth = if config.open { "off (--open)" } else { "on" },
        "berth is serving"
    );
    berth_server::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

/// The configuration reference (`docs/configuration.md`), generated from the flags
/// above so that it cannot drift from them: each flag with its variable, its key in the
/// `--config` file and its help. (Only the test that keeps the file current calls it.)
#[cfg(test)]
fn reference() -> String {
    use clap::CommandFactory as _;
    let cli = crate::Cli::command();
    let serve = cli
        .find_subcommand("serve")
        .cloned()
        .unwrap_or_else(|| clap::Command::new("serve"));
    let mut text = String::from(
        "# Configuration reference\n\n\
         <!-- Generated from `berth serve`'s flags (crates/berth/src/serve.rs) by\n     \
         `BERTH_BLESS=1 cargo test -p berth --bin berth configuration_reference`;\n     \
         a test fails when this file and the flags differ. Do not edit by hand. -->\n\n\
         Every setting of `berth serve` can be given three ways: a flag, a `BERTH_<NAME>`\n\
         environment variable, or a key in the TOML file named by `--config`. The command\n\
         line wins, then the environment, then the file. Durations are written like `30s`,\n\
         `5m`, `24h`; sizes like `64MiB`, `20GiB`.\n\n\
         | flag | environment | file key | meaning |\n|---|---|---|---|\n",
    );
    for arg in serve.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if long == "help" {
            continue;
        }
        let env = arg
            .get_env()
            .map(|e| format!("`{}`", e.to_string_lossy()))
            .unwrap_or_else(|| "–".into());
        let key = match long {
            "config" => "–".to_owned(),
            "upstream" => "`[[upstream]]` tables".to_owned(),
            _ => format!("`{}`", long.replace('-', "_")),
        };
        let help = arg
            .get_long_help()
            .or_else(|| arg.get_help())
            .map(|h| h.to_string())
            .unwrap_or_default()
            .replace('\n', " ")
            .replace('|', "\\|");
        let flag = match arg.get_value_names() {
            Some(names) if arg.get_action().takes_values() => {
                format!("`--{long} {}`", names.join(" "))
            }
            _ if arg.get_action().takes_values() => {
                format!("`--{long} {}`", long.to_uppercase().replace('-', "_"))
            }
            _ => format!("`--{long}`"),
        };
        text.push_str(&format!("| {flag} | {env} | {key} | {help} |\n"));
    }
    text.push_str(
        "\n## `[[upstream]]` tables\n\n\
         One table per mirrored registry (see the README's \"Mirror and backup\"):\n\n\
         | key | meaning |\n|---|---|\n",
    );
    for (key, meaning) in UPSTREAM_KEYS {
        text.push_str(&format!("| `{key}` | {meaning} |\n"));
    }
    text
}

/// The keys of an `[[upstream]]` table, for the reference (a test checks that the file
/// takes each of them).
#[cfg(test)]
const UPSTREAM_KEYS: [(&str, &str); 8] = [
    (
        "prefix",
        "the first name component of the mirrored repositories (`hub`)",
    ),
    (
        "url",
        "the upstream registry (`https://registry-1.docker.io`)",
    ),
    ("username", "user name for the upstream"),
    ("password", "its password or token (or `password_file`)"),
    ("password_file", "a file holding it"),
    (
        "tag_ttl",
        "how old a cached tag may get before it is checked with a HEAD [default: 5m]",
    ),
    (
        "timeout",
        "connect, first byte and between bytes before the upstream counts as down [default: 10s]",
    ),
    (
        "max_size",
        "bytes the cache of this upstream may hold, such as `20GiB` [default: no cap]",
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    fn serve_args(argv: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from([&["berth", "serve"], argv].concat()).unwrap();
        match cli.command {
            Command::Serve(args) => *args,
            _ => panic!("not serve"),
        }
    }

    #[test]
    fn defaults_are_the_embedded_registry_on_port_5000() {
        let config = resolve(serve_args(&[])).unwrap();
        assert_eq!(config.addr, "0.0.0.0:5000".parse().unwrap());
        assert_eq!(
            config.storage,
            StorageConfig::Filesystem("berth-data".into())
        );
        assert_eq!(
            config.database,
            DatabaseConfig::Sqlite("sqlite://berth-data/berth.db".into())
        );
        assert!(!config.open, "auth is on unless --open");
        assert!(config.auth.default_public);
        assert_eq!(config.upload_idle_timeout, Duration::from_secs(24 * 3600));
    }

    #[test]
    fn the_command_line_wins_over_the_config_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            "addr = \"127.0.0.1:6000\"\ndata_dir = \"/srv/berth\"\nupload_timeout = \"2h\"\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let config = resolve(serve_args(&["--config", path])).unwrap();
        assert_eq!(config.addr, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(
            config.storage,
            StorageConfig::Filesystem("/srv/berth".into())
        );
        assert_eq!(config.upload_idle_timeout, Duration::from_secs(7200));
        let config = resolve(serve_args(&[
            "--config",
            path,
            "--addr",
            "127.0.0.1:7000",
            "--upload-timeout",
            "5m",
        ]))
        .unwrap();
        assert_eq!(config.addr, "127.0.0.1:7000".parse().unwrap());
        assert_eq!(config.upload_idle_timeout, Duration::from_secs(300));
    }

    #[test]
    fn auth_settings_come_from_flags_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("admin-password");
        std::fs::write(&secret, "from-a-file\n").unwrap();
        let config = resolve(serve_args(&[
            "--admin-password-file",
            secret.to_str().unwrap(),
            "--default-visibility",
            "private",
            "--realm",
            "https://r.example.com/token",
            "--token-lifetime",
            "10m",
        ]))
        .unwrap();
        assert_eq!(config.auth.admin_password.as_deref(), Some("from-a-file"));
        assert!(!config.auth.default_public);
        assert_eq!(
            config.auth.realm.as_deref(),
            Some("https://r.example.com/token")
        );
        assert_eq!(config.auth.token_lifetime, Duration::from_secs(600));
        assert!(!format!("{:?}", config.auth).contains("from-a-file"));
        assert!(resolve(serve_args(&["--open"])).unwrap().open);
    }

    #[test]
    fn upstreams_come_from_flags_and_tables() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("ghcr-password");
        std::fs::write(&secret, "s3cret\n").unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            format!(
                "[[upstream]]\nprefix = \"hub\"\nurl = \"https://registry-1.docker.io\"\n\
                 tag_ttl = \"30s\"\n\n[[upstream]]\nprefix = \"ghcr\"\nurl = \"https://ghcr.io/\"\n\
                 username = \"bot\"\npassword_file = \"{}\"\ntimeout = \"2s\"\nmax_size = \"20GiB\"\n",
                secret.display()
            ),
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let config = resolve(serve_args(&[
            "--config",
            path,
            "--upstream",
            "quay=https://quay.io",
            "--upstream",
            "hub=http://127.0.0.1:5001",
        ]))
        .unwrap();
        let by = |prefix: &str| {
            config
                .upstreams
                .iter()
                .find(|u| u.prefix == prefix)
                .unwrap_or_else(|| panic!("no {prefix}: {:?}", config.upstreams))
        };
        assert_eq!(config.upstreams.len(), 3);
        assert_eq!(by("hub").url, "http://127.0.0.1:5001", "the flag wins");
        assert_eq!(by("quay").tag_ttl, Duration::from_secs(300));
        let ghcr = by("ghcr");
        assert_eq!(ghcr.url, "https://ghcr.io");
        assert_eq!(ghcr.password.as_deref(), Some("s3cret"));
        assert_eq!(ghcr.timeout, Duration::from_secs(2));
        assert_eq!(ghcr.max_size, Some(20 << 30));
        assert_eq!(by("hub").max_size, None);
        assert!(
            !format!("{ghcr:?}").contains("s3cret"),
            "passwords stay out of logs"
        );
        for bad in [
            "hub",
            "Hub=https://x",
            "a/b=https://x",
            "hub=ftp://x",
            "hub=https://me:secret@x",
        ] {
            assert!(resolve(serve_args(&["--upstream", bad])).is_err(), "{bad}");
        }
        let mirror = resolve(serve_args(&[
            "--upstream",
            "hub=https://registry-1.docker.io",
            "--mirror-default",
            "hub",
        ]))
        .unwrap();
        assert_eq!(mirror.mirror_default.as_deref(), Some("hub"));
        assert!(
            resolve(serve_args(&["--mirror-default", "hub"])).is_err(),
            "no such upstream"
        );
    }

    #[test]
    fn limits_come_from_flags_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(
            &file,
            "header_timeout = \"30s\"\nmax_connections = 100\nmax_body_memory = \"16MiB\"\n\
             trust_forwarded_host = true\n",
        )
        .unwrap();
        let path = file.to_str().unwrap();
        let config = resolve(serve_args(&["--config", path, "--idle-timeout", "5s"])).unwrap();
        assert_eq!(config.limits.header_timeout, Duration::from_secs(30));
        assert_eq!(config.limits.idle_timeout, Duration::from_secs(5));
        assert_eq!(config.limits.max_connections, 100);
        assert_eq!(config.limits.max_body_memory, 16 << 20);
        assert!(config.auth.trust_forwarded_host);
        let defaults = resolve(serve_args(&[])).unwrap();
        assert_eq!(defaults.limits, berth_server::Limits::default());
        assert!(!defaults.auth.trust_forwarded_host);
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("10 parsecs").is_err());
        assert!(resolve(serve_args(&["--max-body-memory", "1MiB"])).is_err());
    }

    #[test]
    fn bad_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "adress = \"typo\"\n").unwrap();
        let err = resolve(serve_args(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(format!("{err:#}").contains("adress"), "{err:#}");
        let err = resolve(serve_args(&["--storage", "gs://bucket"])).unwrap_err();
        assert!(err.to_string().contains("gs://bucket"));
        let err = resolve(serve_args(&["--blob-redirect", "5m"])).unwrap_err();
        assert!(err.to_string().contains("s3://"), "{err}");
        let s3 = resolve(serve_args(&[
            "--storage",
            "s3://bucket/p",
            "--blob-redirect",
            "5m",
        ]))
        .unwrap();
        assert_eq!(
            s3.storage,
            StorageConfig::S3 {
                url: "s3://bucket/p".into(),
                redirect: Some(Duration::from_secs(300))
            }
        );
    }

    /// The committed reference is what the flags say now (`BERTH_BLESS=1` rewrites it).
    #[test]
    fn configuration_reference_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/configuration.md");
        let generated = reference();
        if std::env::var_os("BERTH_BLESS").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "docs/configuration.md differs from the flags: run \
             BERTH_BLESS=1 cargo test -p berth --bin berth configuration_reference"
        );
    }

    /// Every flag has its key in the `--config` file, and every `[[upstream]]` key the
    /// reference names is taken.
    #[test]
    fn every_flag_is_a_file_key() {
        use clap::CommandFactory as _;
        let cli = Cli::command();
        let serve = cli.find_subcommand("serve").unwrap();
        for arg in serve.get_arguments() {
            let Some(long) = arg.get_long() else { continue };
            if matches!(long, "help" | "config" | "upstream") {
                continue;
            }
            let key = long.replace('-', "_");
            // A value of the wrong type is fine: only an unknown key is a drift.
            let said = match toml::from_str::<FileConfig>(&format!("{key} = 1")) {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            };
            assert!(!said.contains("unknown field"), "{key}: {said}");
        }
        for (key, _) in UPSTREAM_KEYS {
            let table = format!("[[upstream]]\nprefix = \"p\"\nurl = \"http://x\"\n{key} = 1");
            let said = match toml::from_str::<FileConfig>(&table) {
                Ok(_) => String::new(),
                Err(e) => e.to_string(),
            };
            assert!(!said.contains("unknown field"), "upstream {key}: {said}");
        }
        let said = toml::from_str::<FileConfig>("no_such_setting = 1")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(said.contains("unknown field"), "{said}");
    }
}
