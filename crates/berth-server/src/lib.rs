//! berth's server: configuration, the registry service (the only code that touches both
//! the blob store and the metadata store), and the HTTP API over it.
//!
//! [`run`] is the one entry point, shared by `berth serve` and the tests: it takes a
//! bound listener and a shutdown signal, so tests bind port 0 and stop it at will.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use berth_blob::{BlobStore, FsBlobStore, S3BlobStore};
use berth_meta::{MetaStore, PgMetaStore, SqliteMetaStore};
use tokio::net::TcpListener;

pub mod accounts;
pub mod catalog;
pub mod config;
pub mod error;
pub mod gc;
pub mod golden;
pub mod http;
pub mod marks;
pub mod mirror;
pub mod ops;
pub mod policy;
pub mod registry;
pub mod retention;
pub mod scanning;
pub mod tls;
pub mod transport;
pub mod web;

pub use accounts::Accounts;
pub use config::{AuthConfig, Config, DatabaseConfig, Limits, StorageConfig, UpstreamConfig};
pub use gc::{GcOptions, GcReport};
pub use registry::Registry;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening blob storage: {0}")]
    Storage(#[source] std::io::Error),
    #[error("opening the metadata database: {0}")]
    Database(#[source] berth_meta::MetaError),
    #[error("opening accounts: {0}")]
    Accounts(String),
    #[error("configuration: {0}")]
    Config(#[source] config::ConfigError),
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
    #[error("loading the TLS certificate: {0}")]
    Tls(#[source] std::io::Error),
}

/// Opens the metadata store a database config names (also used by the admin commands).
pub async fn open_meta(database: &DatabaseConfig) -> Result<Arc<dyn MetaStore>, ServerError> {
    Ok(match database {
        DatabaseConfig::Sqlite(url) => Arc::new({
            // The data dir may hold nothing else (blobs in S3): create it for the file.
            let path = std::path::Path::new(url.trim_start_matches("sqlite://"));
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .map_err(|e| ServerError::Database(berth_meta::MetaError(Box::new(e))))?;
            }
            SqliteMetaStore::open(url)
                .await
                .map_err(ServerError::Database)?
        }),
        DatabaseConfig::Postgres(url) => Arc::new(
            PgMetaStore::open(url)
                .await
                .map_err(ServerError::Database)?,
        ),
    })
}

/// Opens the blob store a storage config names (also used by `berth gc`).
pub async fn open_blobs(storage: &StorageConfig) -> Result<Arc<dyn BlobStore>, ServerError> {
    Ok(match storage {
        StorageConfig::Filesystem(root) => Arc::new(
            FsBlobStore::open(root)
                .await
                .map_err(ServerError::Storage)?,
        ),
        StorageConfig::S3 { url, redirect } => {
            Arc::new(S3BlobStore::from_env(url, *redirect).map_err(ServerError::Storage)?)
        }
    })
}

/// Opens the stores a config names. Nothing is scanned: start-up cost does not grow
/// with the amount of data stored.
pub async fn open_registry(config: &Config) -> Result<Arc<http::AppState>, ServerError> {
    let blobs = open_blobs(&config.storage).await?;
    let meta = open_meta(&config.database).await?;
    let mirror = mirror::Mirror::new(&config.upstreams, config.mirror_default.as_deref())
        .map_err(ServerError::Config)?;
    let mut auth = config.auth.clone();
    auth.mirror_prefixes = config.upstreams.iter().map(|u| u.prefix.clone()).collect();
    auth.mirror_default = config.mirror_default.clone();
    let accounts = Accounts::open_serving(meta.clone(), &auth)
        .await
        .map_err(|e| ServerError::Accounts(e.to_string()))?;
    let metrics = Arc::new(ops::Metrics::new(accounts.sign_in_failures()));
    let registry = Arc::new(Registry::new(blobs, meta.clone()));
    Ok(Arc::new(http::AppState {
        pull_limits: ops::pull_limits::PullLimits::new(meta.clone(), &config.limits),
        tag_pulls: retention::TagPulls::default(),
        audit: ops::audit::AuditWriter::start(meta.clone()),
        webhooks: Arc::new(ops::webhooks::Webhooks::new(
            meta.clone(),
            config.tls.is_some(),
        )),
        registry: registry.clone(),
        scanner: scanning::Scanner::start(registry, config.scan_workers),
        pull_gate: scanning::PullGate::new(meta.clone()),
        metrics,
        metrics_on_main_port: config.metrics_addr.is_none(),
        mirror: Arc::new(mirror),
        accounts,
        open: config.open,
        trusted_proxy: http::origin::TrustedProxy {
            forwarded_for: config.auth.trust_forwarded_for,
            forwarded_host: config.auth.trust_forwarded_host,
        },
        body_budget: http::limits::BodyBudget::new(config.limits.max_body_memory),
        max_uploads_per_client: config.limits.max_uploads_per_client,
    }))
}

/// Serves the registry on `listener` until `shutdown` resolves, then finishes in-flight
/// requests and returns.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let registry = open_registry(&config).await?;
    serve(registry, &config, listener, shutdown).await
}

/// Serves an opened registry (see [`run`]).
pub async fn serve(
    state: Arc<http::AppState>,
    config: &Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let housekeeping = tokio::spawn(housekeeping(
        state.clone(),
        config.upload_idle_timeout,
        config.audit_retention,
    ));
    let collector = config.gc_interval.map(|interval| {
        tokio::spawn(gc::run_periodically(
            state.registry.clone(),
            config.gc.clone(),
            interval,
        ))
    });
    let deliveries = tokio::spawn(state.webhooks.clone().run());
    let retention = config.retention_interval.map(|interval| {
        tokio::spawn(retention::run_periodically(
            state.registry.meta.clone(),
            interval,
        ))
    });
    let app = http::router(state.clone()).layer(tower_http::trace::TraceLayer::new_for_http());
    let mut limits = config.limits.clone();
    if config.auth.trust_forwarded_for {
        // Every connection comes from the proxy: limiting its address would limit all.
        limits.max_connections_per_address = limits.max_connections;
    }
    let counters = state.metrics.connection_counters();
    let (shutdown, metrics_port) = match config.metrics_addr {
        Some(addr) => {
            let listener = TcpListener::bind(addr).await.map_err(ServerError::Serve)?;
            tracing::info!(addr = %addr, "metrics are served at /metrics");
            // The main server's shutdown also stops the metrics port.
            let (stop, stopped) = tokio::sync::watch::channel(false);
            let metrics_port =
                tokio::spawn(ops::metrics::serve_port(listener, state.clone(), stopped));
            let shutdown = async move {
                shutdown.await;
                let _ = stop.send(true);
            };
            (futures::future::Either::Left(shutdown), Some(metrics_port))
        }
        None => (futures::future::Either::Right(shutdown), None),
    };
    let tls = match &config.tls {
        Some(files) => Some(
            tls::CertificateFiles::open(&files.cert, &files.key)
                .and_then(|files| files.acceptor())
                .map_err(ServerError::Tls)?,
        ),
        None => None,
    };
    let options = transport::Options {
        limits,
        counters,
        tls,
    };
    let served = transport::serve(listener, app, options, shutdown).await;
    // What the last requests did reaches the audit log before the process ends.
    state.audit.flush().await;
    if let Some(port) = metrics_port {
        let _ = port.await;
    }
    housekeeping.abort();
    deliveries.abort();
    if let Some(retention) = retention {
        retention.abort();
    }
    if let Some(collector) = collector {
        collector.abort();
    }
    served.map_err(ServerError::Serve)
}

/// Memory held for reuse is handed back after this long unused.
const IDLE_MEMORY: Duration = Duration::from_secs(2);

/// Background upkeep: removes idle upload sessions, expired web sessions, ended
/// sign-in and pull-limit windows and audit events past their retention, and hands back memory kept for reuse that has been idle (password
/// work areas, transfer buffers). Memory is checked every second; the store a few times per upload timeout,
/// and at least every minute.
async fn housekeeping(
    state: Arc<http::AppState>,
    upload_idle: Duration,
    audit_retention: Option<Duration>,
) {
    let period = (upload_idle / 4).clamp(Duration::from_millis(200), Duration::from_secs(1));
    let mut ticker = tokio::time::interval(period);
    let mut last_sweep = std::time::Instant::now();
    loop {
        ticker.tick().await;
        state.accounts.passwords().release_idle(IDLE_MEMORY);
        state.registry.release_idle_memory(IDLE_MEMORY);
        // The store is swept less often than memory is checked.
        if last_sweep.elapsed() < (upload_idle / 4).min(Duration::from_secs(60)) {
            continue;
        }
        last_sweep = std::time::Instant::now();
        match state.registry.expire_uploads(upload_idle).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired idle upload sessions"),
            Err(e) => tracing::warn!(error = %e, "expiring upload sessions failed"),
        }
        if let Err(e) = state
            .accounts
            .meta()
            .expire_web_sessions(accounts::now())
            .await
        {
            tracing::warn!(error = %e, "expiring web sessions failed");
        }
        if let Err(e) = state.accounts.sign_in_limits().sweep().await {
            tracing::warn!(error = %e, "forgetting ended sign-in windows failed");
        }
        if let Err(e) = state
            .registry
            .meta
            .sweep_request_windows(accounts::now())
            .await
        {
            tracing::warn!(error = %e, "forgetting ended pull-limit windows failed");
        }
        if let Some(kept) = audit_retention {
            let before = accounts::now() - kept.as_secs() as i64;
            if let Err(e) = state.registry.meta.prune_audit(before).await {
                tracing::warn!(error = %e, "removing old audit events failed");
            }
        }
    }
}
