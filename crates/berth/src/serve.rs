//! `berth serve`: settings from flags, the environment and a TOML file, resolved into
//! a typed [`Config`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use berth_server::{Config, DatabaseConfig, StorageConfig};
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
    /// Blob storage URL [default: file://<data-dir>]
    #[arg(long, env = "BERTH_STORAGE")]
    storage: Option<String>,
    /// Metadata database URL [default: sqlite://<data-dir>/berth.db]
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
    /// Remove upload sessions idle for longer than this [default: 24h]
    #[arg(long, env = "BERTH_UPLOAD_TIMEOUT", value_parser = humantime::parse_duration)]
    upload_timeout: Option<Duration>,
}

/// The `--config` file: the same settings as the flags.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    addr: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    storage: Option<String>,
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
    if let Some(timeout) = args.upload_timeout {
        config.upload_idle_timeout = timeout;
    } else if let Some(text) = file.upload_timeout {
        config.upload_idle_timeout =
            humantime::parse_duration(&text).with_context(|| format!("upload_timeout {text:?}"))?;
    }
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
        storage = ?config.storage,
        database = ?config.database,
        auth = if config.open { "off (--open)" } else { "on" },
        "berth is serving"
    );
    berth_server::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cli, Command};
    use clap::Parser;

    fn serve_args(argv: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from([&["berth", "serve"], argv].concat()).unwrap();
        match cli.command {
            Command::Serve(args) => args,
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
    fn bad_settings_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("berth.toml");
        std::fs::write(&file, "adress = \"typo\"\n").unwrap();
        let err = resolve(serve_args(&["--config", file.to_str().unwrap()])).unwrap_err();
        assert!(format!("{err:#}").contains("adress"), "{err:#}");
        let err = resolve(serve_args(&["--storage", "s3://bucket"])).unwrap_err();
        assert!(err.to_string().contains("s3://bucket"));
    }
}
