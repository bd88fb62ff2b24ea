//! berth's server: configuration, the registry service (the only code that touches both
//! the blob store and the metadata store), and the HTTP API over it.
//!
//! [`run`] is the one entry point, shared by `berth serve` and the tests: it takes a
//! bound listener and a shutdown signal, so tests bind port 0 and stop it at will.

use std::future::Future;
use std::sync::Arc;

use berth_blob::{BlobStore, FsBlobStore};
use berth_meta::{MetaStore, SqliteMetaStore};
use tokio::net::TcpListener;

pub mod accounts;
pub mod config;
pub mod error;
pub mod http;
pub mod registry;

pub use accounts::Accounts;
pub use config::{AuthConfig, Config, DatabaseConfig, StorageConfig};
pub use registry::Registry;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("opening blob storage: {0}")]
    Storage(#[source] std::io::Error),
    #[error("opening the metadata database: {0}")]
    Database(#[source] berth_meta::MetaError),
    #[error("opening accounts: {0}")]
    Accounts(String),
    #[error("serving HTTP: {0}")]
    Serve(#[source] std::io::Error),
}

/// Opens the metadata store a database config names (also used by the admin commands).
pub async fn open_meta(database: &DatabaseConfig) -> Result<Arc<dyn MetaStore>, ServerError> {
    Ok(match database {
        DatabaseConfig::Sqlite(url) => Arc::new(
            SqliteMetaStore::open(url)
                .await
                .map_err(ServerError::Database)?,
        ),
    })
}

/// Opens the stores a config names. Nothing is scanned: start-up cost does not grow
/// with the amount of data stored.
pub async fn open_registry(config: &Config) -> Result<Arc<http::AppState>, ServerError> {
    let blobs: Arc<dyn BlobStore> = match &config.storage {
        StorageConfig::Filesystem(root) => Arc::new(
            FsBlobStore::open(root)
                .await
                .map_err(ServerError::Storage)?,
        ),
    };
    let meta = open_meta(&config.database).await?;
    let accounts = Accounts::open_serving(meta.clone(), &config.auth)
        .await
        .map_err(|e| ServerError::Accounts(e.to_string()))?;
    Ok(Arc::new(http::AppState {
        registry: Arc::new(Registry::new(blobs, meta)),
        accounts,
        open: config.open,
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
    let expiry = tokio::spawn(expire_uploads(
        state.registry.clone(),
        config.upload_idle_timeout,
    ));
    let app = http::router(state).layer(tower_http::trace::TraceLayer::new_for_http());
    let served = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    expiry.abort();
    served.map_err(ServerError::Serve)
}

/// Removes idle upload sessions, checking a few times per timeout period.
async fn expire_uploads(registry: Arc<Registry>, idle: std::time::Duration) {
    let period = (idle / 4).clamp(
        std::time::Duration::from_millis(200),
        std::time::Duration::from_secs(600),
    );
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        match registry.expire_uploads(idle).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired idle upload sessions"),
            Err(e) => tracing::warn!(error = %e, "expiring upload sessions failed"),
        }
    }
}
