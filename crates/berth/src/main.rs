//! `berth`: the one binary. Parses the command line, reads the config file and the
//! environment (the only place that does), and hands a typed config to berth-server.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use berth_server::{Config, DatabaseConfig, StorageConfig};
use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A container image registry (OCI Distribution)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry.
    Serve(ServeArgs),
}

/// Each flag may also be set as `BERTH_<NAME>` in the environment or in the TOML file
/// given with `--config`; the command line wins, then the environment, then the file.
#[derive(Args)]
struct ServeArgs {
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
    /// Accept anonymous pushes (trusted networks). Until accounts exist this is the only mode.
    #[arg(long, env = "BERTH_OPEN")]
    open: bool,
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
}

fn read_file_config(path: &Path) -> anyhow::Result<FileConfig> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
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
    config.open = args.open || file.open.unwrap_or(true);
    if let Some(timeout) = args.upload_timeout {
        config.upload_idle_timeout = timeout;
    } else if let Some(text) = file.upload_timeout {
        config.upload_idle_timeout =
            humantime::parse_duration(&text).with_context(|| format!("upload_timeout {text:?}"))?;
    }
    Ok(config)
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

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = resolve(args)?;
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    tracing::info!(addr = %listener.local_addr()?, storage = ?config.storage, database = ?config.database, "berth is serving");
    berth_server::run(config, listener, shutdown_signal()).await?;
    Ok(())
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("berth: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(argv: &[&str]) -> ServeArgs {
        let cli = Cli::try_parse_from([&["berth", "serve"], argv].concat()).unwrap();
        match cli.command {
            Command::Serve(args) => args,
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
        assert!(config.open);
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
