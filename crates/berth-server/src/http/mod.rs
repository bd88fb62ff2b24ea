//! The HTTP API: `/v2/…` routed by [`Endpoint::parse`] to one handler per operation.
//!
//! Handlers translate between HTTP and the [`Registry`] service; they hold no registry
//! logic of their own. Every error leaves through [`ApiError`] in the OCI envelope.
//! [`auth`] admits each `/v2/` request first; `/token` ([`token`]) and `/api/v1`
//! ([`api`]) sit beside it. [`limits::guard`] runs in front of all of them: size limits,
//! and the request's [`RequestOrigin`](origin::RequestOrigin).

use std::io;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_core::endpoint::query_pairs;
use berth_core::{Endpoint, ErrorCode};
use futures::{StreamExt, TryStreamExt};

use crate::accounts::Accounts;
use crate::error::RegistryError;
use crate::http::auth::Access;
use crate::http::origin::RequestOrigin;
use crate::ops;
use crate::registry::{ByteStream, Registry};

pub mod api;
pub mod auth;
mod blobs;
pub mod error;
pub mod limits;
mod manifests;
pub mod origin;
mod search;
pub mod token;

pub use error::ApiError;

pub const API_VERSION: HeaderName = HeaderName::from_static("docker-distribution-api-version");
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");
pub const UPLOAD_UUID: HeaderName = HeaderName::from_static("docker-upload-uuid");
pub const OCI_SUBJECT: HeaderName = HeaderName::from_static("oci-subject");
pub const OCI_TAG: HeaderName = HeaderName::from_static("oci-tag");
pub const OCI_FILTERS_APPLIED: HeaderName = HeaderName::from_static("oci-filters-applied");
pub const OCI_NAMESPACE: HeaderName = HeaderName::from_static("oci-namespace");

pub type ApiResult = Result<Response, ApiError>;

/// What every handler can reach.
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Pushed images waiting to be scanned.
    pub scanner: crate::scanning::Scanner,
    /// `block-vulnerable`: which pulls scans refuse.
    pub pull_gate: crate::scanning::PullGate,
    /// This server's counters, served at `/metrics`.
    pub metrics: Arc<crate::ops::Metrics>,
    /// `/metrics` on the main port (no `--metrics-addr`).
    pub metrics_on_main_port: bool,
    /// Manifest pulls allowed per window.
    pub pull_limits: crate::ops::pull_limits::PullLimits,
    /// Where events are announced.
    pub webhooks: Arc<crate::ops::webhooks::Webhooks>,
    /// When tags were last pulled, for retention.
    pub tag_pulls: crate::retention::TagPulls,
    /// Where audit events are queued for the store.
    pub audit: crate::ops::audit::AuditWriter,
    /// Mirrored upstream registries (none unless configured).
    pub mirror: Arc<crate::mirror::Mirror>,
    pub accounts: Arc<Accounts>,
    /// `--open`: `/v2/` without authentication.
    pub open: bool,
    /// Which forwarded headers to believe.
    pub trusted_proxy: origin::TrustedProxy,
    /// The memory all request bodies held in memory may take together.
    pub body_budget: limits::BodyBudget,
    /// Open upload sessions allowed per client (user, or address when anonymous).
    pub max_uploads_per_client: u32,
}

/// The whole HTTP application over a registry.
pub fn router(state: Arc<AppState>) -> Router {
    let mut router = Router::new()
        .route("/healthz", axum::routing::get(ops::health::healthz))
        .route("/readyz", axum::routing::get(ops::health::readyz));
    if state.metrics_on_main_port {
        router = router.route("/metrics", axum::routing::get(ops::metrics::metrics));
    }
    router
        .route("/v2", axum::routing::any(dispatch))
        .route("/v2/", axum::routing::any(dispatch))
        .route("/v2/{*rest}", axum::routing::any(dispatch))
        .route("/token", axum::routing::any(token::token))
        .route("/api/v1/{*rest}", axum::routing::any(api::dispatch))
        .route("/v1/_ping", axum::routing::get(search::ping))
        .route("/v1/search", axum::routing::get(search::search))
        .merge(crate::web::router())
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::guard,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::audit::record,
        ))
        // Outermost: every answer counts, the guard's refusals too.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::metrics::observe,
        ))
        .with_state(state)
}

async fn not_found() -> Response {
    ApiError::new(ErrorCode::Unsupported, "no such endpoint")
        .with_status(StatusCode::NOT_FOUND)
        .into_response()
}

/// What a handler needs from the request besides the endpoint.
pub struct Req {
    pub headers: HeaderMap,
    pub query: Vec<(String, String)>,
    pub body: Body,
    pub origin: RequestOrigin,
}

impl Req {
    /// First value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        berth_core::endpoint::first_value(&self.query, key)
    }

    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn into_stream(self) -> ByteStream {
        self.body
            .into_data_stream()
            .map_err(io::Error::other)
            .boxed()
    }
}

async fn dispatch(State(app): State<Arc<AppState>>, request: Request) -> Response {
    app.scanner.note_request();
    let (parts, body) = request.into_parts();
    let result = async {
        let endpoint = Endpoint::parse(parts.method.as_str(), parts.uri.path())
            .map_err(|e| manifest_lookup_error(parts.method.as_str(), parts.uri.path(), e))?;
        let origin = parts
            .extensions
            .get::<RequestOrigin>()
            .cloned()
            .ok_or_else(|| ApiError::internal("the request has no origin"))?;
        let access = if app.open {
            Access::Open
        } else {
            auth::admit(&app.accounts, &endpoint, &parts, &origin).await?
        };
        // Manifest requests count against the pull limits and say where the caller stands.
        let standing = match &endpoint {
            Endpoint::GetManifest { head, .. } => {
                app.pull_limits
                    .check(&access.puller(&origin), *head)
                    .await?
            }
            _ => None,
        };
        let req = Req {
            headers: parts.headers,
            query: query_pairs(parts.uri.query()),
            body,
            origin,
        };
        let pull = match &endpoint {
            Endpoint::GetManifest {
                name,
                reference,
                head: false,
            } if app.webhooks.wants_pulls().await => Some(ops::audit::event(
                &access.actor(&req.origin),
                &req.origin.client,
                "pull",
                Some(name.as_str()),
                serde_json::json!({ "reference": reference.to_string() }),
            )),
            _ => None,
        };
        let pulled_tag = match &endpoint {
            Endpoint::GetManifest {
                name,
                reference: berth_core::Reference::Tag(tag),
                head: false,
            } => Some((name.clone(), tag.as_str().to_owned())),
            _ => None,
        };
        let mut answer = handle(&app, endpoint, req, &access).await;
        if let (Some((name, tag)), Ok(response)) = (pulled_tag, &answer)
            && response.status().is_success()
        {
            app.tag_pulls.note(&app.registry.meta, &name, &tag);
        }
        if let (Some(event), Ok(response)) = (pull, answer.as_mut())
            && response.status().is_success()
        {
            response
                .extensions_mut()
                .insert(ops::audit::Announced(vec![event]));
        }
        if let Some(standing) = standing {
            for (name, value) in standing.headers() {
                answer = match answer {
                    Ok(mut response) => {
                        if let Ok(value) = HeaderValue::try_from(value) {
                            response.headers_mut().insert(name, value);
                        }
                        Ok(response)
                    }
                    Err(e) => Err(e.with_header(name, value)),
                };
            }
        }
        answer
    }
    .await;
    let mut response = result.unwrap_or_else(IntoResponse::into_response);
    response
        .headers_mut()
        .insert(API_VERSION, HeaderValue::from_static("registry/2.0"));
    response
}

/// A reference that cannot exist (an invalid tag) is simply not found when read.
fn manifest_lookup_error(method: &str, path: &str, e: berth_core::EndpointError) -> ApiError {
    let reading = matches!(method, "GET" | "HEAD" | "DELETE");
    let is_tag = matches!(
        e,
        berth_core::EndpointError::Name(berth_core::NameError::InvalidTag(_))
    );
    if reading && is_tag && path.contains("/manifests/") {
        return ApiError::new(ErrorCode::ManifestUnknown, e.to_string());
    }
    e.into()
}

async fn handle(app: &AppState, endpoint: Endpoint, req: Req, access: &Access) -> ApiResult {
    let registry = &*app.registry;
    let namespace = req.param("ns").map(str::to_owned);
    if let Some(route) = mirror_route(app, &endpoint, namespace.as_deref()).await? {
        // Mirrored repositories: reads go through the mirror; nothing is written.
        let mut response = match endpoint {
            Endpoint::GetManifest {
                reference, head, ..
            } => manifests::get_mirrored(app, &route, &reference, head).await?,
            Endpoint::GetBlob { digest, head, .. } => {
                blobs::get_mirrored(app, &route, &digest, head, req).await?
            }
            Endpoint::ListTags { name } => manifests::list_tags(registry, &name, req).await?,
            Endpoint::Referrers { name, digest } => {
                manifests::referrers(registry, &name, &digest, req).await?
            }
            _ => {
                return Err(RegistryError::ReadOnlyMirror(
                    route.cache.clone(),
                    route.upstream.config.url.clone(),
                )
                .into());
            }
        };
        // containerd's `?ns=` is echoed, as the distribution-spec allows.
        if let Some(ns) = namespace
            && let Ok(value) = HeaderValue::try_from(ns)
        {
            response.headers_mut().insert(OCI_NAMESPACE, value);
        }
        return Ok(response);
    }
    match endpoint {
        Endpoint::ApiVersion => Ok(json_response(StatusCode::OK, "{}".to_string())),
        Endpoint::Catalog => manifests::catalog(registry, req, access).await,
        Endpoint::ListTags { name } => manifests::list_tags(registry, &name, req).await,
        Endpoint::GetManifest {
            name,
            reference,
            head,
        } => manifests::get(app, access, &name, &reference, head).await,
        Endpoint::PutManifest { name, reference } => {
            let actor = access.actor(&req.origin);
            manifests::put(app, &name, &reference, req, &actor).await
        }
        Endpoint::DeleteManifest { name, reference } => {
            let actor = access.actor(&req.origin);
            let mut response = manifests::delete(registry, &name, &reference, &actor).await?;
            let detail = serde_json::json!({ "reference": reference.to_string() });
            let event = ops::audit::event(
                &actor,
                &req.origin.client,
                "delete",
                Some(name.as_str()),
                detail,
            );
            ops::audit::attach(&mut response, event);
            Ok(response)
        }
        Endpoint::Referrers { name, digest } => {
            manifests::referrers(registry, &name, &digest, req).await
        }
        Endpoint::GetBlob { name, digest, head } => {
            blobs::get(registry, &name, &digest, head, req).await
        }
        Endpoint::DeleteBlob { name, digest } => {
            let mut response = blobs::delete(registry, &name, &digest).await?;
            let detail = serde_json::json!({ "digest": digest.to_string() });
            let actor = access.actor(&req.origin);
            let event = ops::audit::event(
                &actor,
                &req.origin.client,
                "blob-delete",
                Some(name.as_str()),
                detail,
            );
            ops::audit::attach(&mut response, event);
            Ok(response)
        }
        Endpoint::StartUpload { name } => blobs::start_upload(app, &name, req, access).await,
        Endpoint::UploadStatus { name, id } => {
            blobs::upload_status(registry, &name, id.as_str()).await
        }
        Endpoint::PatchUpload { name, id } => {
            blobs::patch_upload(registry, &name, id.as_str(), req).await
        }
        Endpoint::FinishUpload { name, id } => {
            blobs::finish_upload(registry, &name, id.as_str(), req).await
        }
        Endpoint::CancelUpload { name, id } => {
            blobs::cancel_upload(registry, &name, id.as_str()).await
        }
    }
}

/// Whether `endpoint` is about a mirrored repository, and where it is mirrored from:
/// by its prefix, or (registry-mirror mode) a manifest or blob read of a repository
/// that does not exist here.
async fn mirror_route<'a>(
    app: &'a AppState,
    endpoint: &Endpoint,
    namespace: Option<&str>,
) -> Result<Option<crate::mirror::Route<'a>>, ApiError> {
    let Some(name) = endpoint.repository() else {
        return Ok(None);
    };
    if let Some(route) = app.mirror.route(name) {
        return Ok(Some(route));
    }
    let read = matches!(
        endpoint,
        Endpoint::GetManifest { .. } | Endpoint::GetBlob { .. }
    );
    if !read || !app.mirror.mirrors_unknown() || app.registry.repository_exists(name).await? {
        return Ok(None);
    }
    Ok(app.mirror.route_unknown(name, namespace))
}

/// The `Range` header of an upload holding `offset` bytes (`0-0` when empty, as
/// Distribution and the conformance suites expect).
pub fn upload_range(offset: u64) -> String {
    format!("0-{}", offset.saturating_sub(1))
}

/// A response with a body and headers. Header values that are not valid HTTP (which
/// berth never produces) are dropped rather than failing the request.
pub fn response(status: StatusCode, headers: Vec<(HeaderName, String)>, body: Body) -> Response {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let map = response.headers_mut();
    for (name, value) in headers {
        match HeaderValue::try_from(value) {
            Ok(value) => {
                map.append(name, value);
            }
            Err(_) => tracing::warn!(header = %name, "dropped an invalid header value"),
        }
    }
    response
}

pub fn json_response(status: StatusCode, body: String) -> Response {
    response(
        status,
        vec![(header::CONTENT_TYPE, "application/json".into())],
        Body::from(body),
    )
}
