//! `/metrics` in the Prometheus text format: requests by route, method and status with
//! latency histograms, bytes in and out, open connections, uploads in flight, storage
//! held, failed sign-ins and rate-limit refusals.
//!
//! Each server has its own [`Metrics`] (tests run several in one process); the parts
//! that count elsewhere (the transport's connections, the accounts' failed sign-ins)
//! are handed their counters from here.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_core::Endpoint;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry as MetricRegistry, Unit};

use crate::http::AppState;

/// How long a storage figure is reused before the store is asked again: summing every
/// blob is cheap but not free, and scrapers come every few seconds.
const STORAGE_REFRESH: Duration = Duration::from_secs(15);
/// How long a scrape waits for the storage figure before answering with the last one.
const STORAGE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LimitLabels {
    route: &'static str,
}

/// What the transport counts, per connection.
#[derive(Clone, Default)]
pub struct ConnectionCounters {
    /// Bytes read from clients (request heads and bodies; TLS records under HTTPS).
    pub received: Counter,
    /// Bytes written to clients.
    pub sent: Counter,
    /// Connections open now.
    pub open: Gauge,
    /// Connections refused because their address held too many already.
    pub refused_per_address: Counter,
}

pub struct Metrics {
    registry: MetricRegistry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<RouteLabels, Histogram>,
    limited: Family<LimitLabels, Counter>,
    uploads_in_flight: Gauge,
    storage: Gauge,
    storage_read_at: Mutex<Option<Instant>>,
    connections: ConnectionCounters,
}

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

impl Metrics {
    /// Metrics for one server; `sign_in_failures` is the accounts' own counter.
    pub fn new(sign_in_failures: Counter) -> Metrics {
        let mut registry = MetricRegistry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        let durations = Family::<RouteLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its response's head",
            Unit::Seconds,
            durations.clone(),
        );
        let limited = Family::<LimitLabels, Counter>::default();
        registry.register(
            "rate_limited",
            "Requests refused by a limit (429), by route; connections refused for their \
             address count as route \"connection\"",
            limited.clone(),
        );
        let uploads_in_flight = Gauge::default();
        registry.register(
            "uploads_in_flight",
            "Blob upload requests (POST, PATCH, PUT) being received now",
            uploads_in_flight.clone(),
        );
        let storage = Gauge::default();
        registry.register_with_unit(
            "storage",
            "Bytes the registry holds: each live blob once, plus manifests",
            Unit::Bytes,
            storage.clone(),
        );
        registry.register(
            "sign_in_failures",
            "Sign-ins refused for a wrong password or token",
            sign_in_failures,
        );
        let connections = ConnectionCounters::default();
        registry.register_with_unit(
            "received",
            "Bytes read from clients",
            Unit::Bytes,
            connections.received.clone(),
        );
        registry.register_with_unit(
            "sent",
            "Bytes written to clients",
            Unit::Bytes,
            connections.sent.clone(),
        );
        registry.register(
            "connections_open",
            "Client connections open now",
            connections.open.clone(),
        );
        // Refusals of connections count with the other limits.
        let per_address = limited.get_or_create(&LimitLabels {
            route: "connection",
        });
        let connections = ConnectionCounters {
            refused_per_address: (*per_address).clone(),
            ..connections
        };
        drop(per_address);
        Metrics {
            registry,
            requests,
            durations,
            limited,
            uploads_in_flight,
            storage,
            storage_read_at: Mutex::new(None),
            connections,
        }
    }

    /// The transport's counters.
    pub fn connection_counters(&self) -> ConnectionCounters {
        self.connections.clone()
    }

    /// The text exposition.
    fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Counts every request the application answers (outermost layer).
pub async fn observe(State(app): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let route = route_of(request.method(), request.uri().path());
    let method = method_label(request.method());
    let metrics = &app.metrics;
    let _uploading = (route == "blob_uploads" && method != "GET" && method != "DELETE")
        .then(|| InFlight::start(&metrics.uploads_in_flight));
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status();
    metrics
        .durations
        .get_or_create(&RouteLabels { route, method })
        .observe(started.elapsed().as_secs_f64());
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: status.as_u16(),
        })
        .inc();
    if status == StatusCode::TOO_MANY_REQUESTS {
        metrics.limited.get_or_create(&LimitLabels { route }).inc();
    }
    response
}

/// A gauge counted up while this lives (also when its request is dropped midway).
struct InFlight(Gauge);

impl InFlight {
    fn start(gauge: &Gauge) -> InFlight {
        gauge.inc();
        InFlight(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `GET /metrics`.
pub async fn metrics(State(app): State<Arc<AppState>>) -> Response {
    refresh_storage(&app).await;
    match app.metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

async fn refresh_storage(app: &AppState) {
    let metrics = &app.metrics;
    {
        let mut read_at = metrics
            .storage_read_at
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if read_at.is_some_and(|t| t.elapsed() < STORAGE_REFRESH) {
            return;
        }
        // Claimed now, so concurrent scrapes do not all ask.
        *read_at = Some(Instant::now());
    }
    match tokio::time::timeout(STORAGE_TIMEOUT, app.registry.stored_bytes()).await {
        Ok(Ok(bytes)) => {
            metrics
                .storage
                .set(i64::try_from(bytes).unwrap_or(i64::MAX));
        }
        Ok(Err(e)) => tracing::warn!(error = %e, "reading the storage used failed"),
        Err(_) => tracing::warn!("reading the storage used timed out"),
    }
}

/// A low-cardinality name for what a request asks for: never a repository name or
/// digest. `/v2/` paths are named by the endpoint they parse to.
pub fn route_of(method: &Method, path: &str) -> &'static str {
    if path == "/v2" || path.starts_with("/v2/") {
        return match Endpoint::parse(method.as_str(), path) {
            Ok(Endpoint::ApiVersion) => "base",
            Ok(Endpoint::Catalog) => "catalog",
            Ok(Endpoint::ListTags { .. }) => "tags",
            Ok(
                Endpoint::GetManifest { .. }
                | Endpoint::PutManifest { .. }
                | Endpoint::DeleteManifest { .. },
            ) => "manifests",
            Ok(Endpoint::GetBlob { .. } | Endpoint::DeleteBlob { .. }) => "blobs",
            Ok(
                Endpoint::StartUpload { .. }
                | Endpoint::UploadStatus { .. }
                | Endpoint::PatchUpload { .. }
                | Endpoint::FinishUpload { .. }
                | Endpoint::CancelUpload { .. },
            ) => "blob_uploads",
            Ok(Endpoint::Referrers { .. }) => "referrers",
            Err(_) => "v2_other",
        };
    }
    match path {
        "/token" => "token",
        "/healthz" => "healthz",
        "/readyz" => "readyz",
        "/metrics" => "metrics",
        "/v1/_ping" | "/v1/search" => "docker_search",
        _ if path.starts_with("/api/v1/") => "api",
        _ if path.starts_with("/static/") => "web_static",
        _ => "web",
    }
}

fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// Serves `/metrics` alone on `listener` (`--metrics-addr`) until `stopped` turns true.
pub async fn serve_port(
    listener: tokio::net::TcpListener,
    app: Arc<AppState>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    let router = axum::Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(app);
    let stop = async move {
        let _ = stopped.wait_for(|stop| *stop).await;
    };
    if let Err(e) = axum::serve(listener, router)
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "serving metrics failed");
    }
}

#[cfg(test)]
mod tests {
    use super::route_of;
    use axum::http::Method;

    #[test]
    fn routes_never_carry_names_or_digests() {
        let digest = format!("sha256:{}", "0".repeat(64));
        let blob = format!("/v2/a/blobs/{digest}");
        let referrers = format!("/v2/a/referrers/{digest}");
        let blobs_repo = format!("/v2/x/blobs/manifests/{digest}");
        for (path, route) in [
            ("/v2/", "base"),
            ("/v2", "base"),
            ("/v2/_catalog", "catalog"),
            ("/v2/a/b/blobs/uploads/", "v2_other"),
            ("/v2/a/blobs/uploads/0f3c", "blob_uploads"),
            (blob.as_str(), "blobs"),
            (blobs_repo.as_str(), "manifests"),
            ("/v2/a/b/c/manifests/latest", "manifests"),
            ("/v2/a/tags/list", "tags"),
            (referrers.as_str(), "referrers"),
            ("/v2/a/unknown", "v2_other"),
            ("/api/v1/users/alice", "api"),
            ("/r/gallery/ui", "web"),
            ("/static/berth.css", "web_static"),
            ("/metrics", "metrics"),
        ] {
            assert_eq!(route_of(&Method::GET, path), route, "{path}");
        }
    }
}
