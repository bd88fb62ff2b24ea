//! The web site: server-rendered pages (askama templates compiled into the binary,
//! `templates/`), one module per resource: [`browse`] (home, search), [`namespace`]
//! (`/u/NAME`), [`repository`] (`/r/NAME`, tags, settings), [`account`] (sign in and out,
//! access tokens, password). Every page works without JavaScript; `berth.js` only adds
//! copy buttons.
//!
//! Security: the session cookie is the one `/api/v1` sets (`HttpOnly`, `SameSite=Strict`,
//! `Secure` over https); every form carries a CSRF token ([`csrf`]) and a form from
//! another origin is refused; every page is sent with a strict Content-Security-Policy
//! (no inline script or style, nothing from elsewhere); templates escape everything,
//! and Markdown descriptions are sanitized ([`markdown`]).

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::accounts::{Caller, Proof};
use crate::http::AppState;
use crate::http::api::{SESSION_COOKIE, set_session_cookie};
use crate::http::limits::declared_length;
use crate::http::origin::RequestOrigin;

mod account;
mod browse;
pub mod csrf;
mod images;
pub mod markdown;
mod namespace;
mod repository;
mod settings;
mod view;

/// Largest form body (a repository description is the biggest field).
const MAX_FORM: usize = 64 * 1024;

const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; \
    script-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; \
    base-uri 'none'";

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/", get(browse::home))
        .route("/search", get(browse::search))
        .route("/u/{name}", get(namespace::page))
        .route(
            "/u/{name}/-/settings",
            get(namespace::settings).post(namespace::save_settings),
        )
        .route("/r/{*path}", get(repository::get).post(repository::post))
        .route("/_/{*path}", get(repository::official))
        .route("/signin", get(account::sign_in_page).post(account::sign_in))
        .route("/signout", post(account::sign_out))
        .route("/account", get(account::page))
        .route("/account/tokens", post(account::create_token))
        .route("/account/tokens/{id}/revoke", post(account::revoke_token))
        .route("/account/password", post(account::change_password))
        .route("/static/{file}", get(asset))
}

/// Who is looking at a page.
pub struct Visitor {
    pub caller: Option<Caller>,
    pub origin: RequestOrigin,
    /// The session cookie's secret, when signed in with one.
    session_secret: Option<String>,
    /// The pre-session CSRF cookie, if the browser has one.
    csrf_cookie: Option<String>,
    /// A CSRF cookie to set with this response (a first visit to a form).
    new_csrf_cookie: Option<String>,
    /// Whether `/v2/` is open to everyone (`--open`): everything is readable.
    pub open: bool,
}

impl Visitor {
    pub async fn of(app: &AppState, parts: &Parts) -> Result<Visitor, WebError> {
        let origin = parts
            .extensions
            .get::<RequestOrigin>()
            .cloned()
            .ok_or_else(|| WebError::internal("the request has no origin"))?;
        let session_secret = cookie(&parts.headers, SESSION_COOKIE);
        // A session that ended (signed out elsewhere, expired) is simply no session.
        let caller = match &session_secret {
            Some(secret) => app.accounts.authenticate_session(secret).await.ok(),
            None => None,
        };
        Ok(Visitor {
            session_secret: session_secret.filter(|_| caller.is_some()),
            caller,
            origin,
            csrf_cookie: cookie(&parts.headers, csrf::COOKIE),
            new_csrf_cookie: None,
            open: app.open,
        })
    }

    pub fn user(&self) -> Option<&str> {
        self.caller
            .as_ref()
            .map(Caller::name)
            .filter(|n| !n.is_empty())
    }

    pub fn principal(&self) -> berth_auth::Principal {
        self.caller
            .as_ref()
            .map_or_else(berth_auth::Principal::anonymous, |c| c.principal.clone())
    }

    /// The session id, when signed in through a session.
    pub fn session_id(&self) -> Option<&str> {
        match self.caller.as_ref().map(|c| &c.proof) {
            Some(Proof::Session(id)) => Some(id),
            _ => None,
        }
    }

    /// The token forms on this page carry; makes a pre-session cookie if needed.
    pub fn csrf_token(&mut self) -> String {
        if let Some(secret) = &self.session_secret {
            return csrf::for_session(secret);
        }
        if let Some(cookie) = self.csrf_cookie.as_ref().or(self.new_csrf_cookie.as_ref()) {
            return csrf::for_visitor(cookie);
        }
        let fresh = csrf::new_cookie();
        let token = csrf::for_visitor(&fresh);
        self.new_csrf_cookie = Some(fresh);
        token
    }

    /// Refuses a form that came from another origin or without the right token.
    pub fn check_form(&self, headers: &HeaderMap, form: &Form) -> Result<(), WebError> {
        let from_elsewhere = headers
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|o| !self.origin.matches(o))
            || headers
                .get("sec-fetch-site")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|s| matches!(s.trim(), "cross-site" | "same-site"));
        if from_elsewhere {
            return Err(WebError::forbidden("forms from other sites are refused"));
        }
        let expected = match (&self.session_secret, &self.csrf_cookie) {
            (Some(secret), _) => Some(csrf::for_session(secret)),
            (None, Some(cookie)) => Some(csrf::for_visitor(cookie)),
            (None, None) => None,
        };
        let sent = form.get("csrf").unwrap_or_default();
        match expected {
            Some(expected) if csrf::same(sent, &expected) => Ok(()),
            _ => Err(WebError::forbidden(
                "this form has expired or did not come from this site; reload the page and try again",
            )),
        }
    }

    /// Adds the cookies this visit needs to a response.
    fn finish(&self, response: &mut Response) {
        if let Some(fresh) = &self.new_csrf_cookie {
            let secure = if self.origin.is_https() {
                "; Secure"
            } else {
                ""
            };
            let value = format!(
                "{}={fresh}; Path=/; HttpOnly; SameSite=Strict{secure}",
                csrf::COOKIE
            );
            if let Ok(value) = HeaderValue::try_from(value) {
                response.headers_mut().append(header::SET_COOKIE, value);
            }
        }
    }

    /// Signs the browser in or out (sets or clears the session cookie).
    pub fn set_session(&self, response: &mut Response, secret: Option<&str>) {
        set_session_cookie(response, &self.origin, secret);
    }

    /// The signed-in caller, or a redirect to the sign-in page that comes back to `here`.
    pub fn require_user(&self, here: &str) -> Result<&Caller, WebError> {
        match &self.caller {
            Some(caller) if !caller.name().is_empty() => Ok(caller),
            _ => Err(WebError::SignInFirst(here.to_owned())),
        }
    }

    /// Which repositories this visitor may list.
    pub fn viewer(&self) -> berth_meta::Viewer<'_> {
        if self.open {
            return berth_meta::Viewer::All;
        }
        match &self.caller {
            Some(caller) => crate::accounts::Accounts::viewer(&caller.principal),
            None => berth_meta::Viewer::Anonymous,
        }
    }
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// A posted form's fields.
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Reads an `application/x-www-form-urlencoded` body.
    pub async fn read(app: &AppState, request: Request) -> Result<(Parts, Form), WebError> {
        let (parts, body) = request.into_parts();
        let urlencoded = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| {
                berth_core::manifest::essence(t)
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            });
        if !urlencoded {
            return Err(WebError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the form as application/x-www-form-urlencoded",
            ));
        }
        let declared = declared_length(&parts.headers);
        let body = app
            .body_budget
            .read(body, MAX_FORM, declared)
            .await
            .map_err(|e| WebError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()))?;
        let fields = form_urlencoded::parse(&body.bytes).into_owned().collect();
        Ok((parts, Form(fields)))
    }

    /// The audit event of a settings form saved on `target`: its fields but the CSRF
    /// token (a description by its length).
    pub fn settings_event(&self, visitor: &Visitor, target: &str) -> berth_meta::AuditEvent {
        let mut fields = serde_json::Map::new();
        for (key, value) in &self.0 {
            let value = match key.as_str() {
                k if k.contains("csrf") => continue,
                "description" => serde_json::json!(format!("{} characters", value.chars().count())),
                _ => serde_json::json!(value),
            };
            fields.insert(key.clone(), value);
        }
        crate::ops::audit::event(
            visitor.user().unwrap_or_default(),
            &visitor.origin.client,
            "settings",
            Some(target),
            serde_json::Value::Object(fields),
        )
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Why a page could not be shown; rendered as an HTML page with its status.
#[derive(Debug)]
pub enum WebError {
    Status(StatusCode, String),
    /// Signing in is needed; come back to this path afterwards.
    SignInFirst(String),
}

impl WebError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> WebError {
        WebError::Status(status, message.into())
    }

    /// The same page for a repository that does not exist and one the visitor may not
    /// see.
    pub fn not_found() -> WebError {
        WebError::new(StatusCode::NOT_FOUND, "There is nothing here.")
    }

    pub fn forbidden(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::FORBIDDEN, message)
    }

    pub fn invalid(message: impl Into<String>) -> WebError {
        WebError::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn internal(cause: impl std::fmt::Display) -> WebError {
        let id = uuid::Uuid::new_v4();
        tracing::error!(error_id = %id, "web page failed: {cause}");
        WebError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("Something went wrong on our side (error {id})."),
        )
    }
}

impl WebError {
    /// A plain response, for failures before there is a visitor to render a page for.
    pub fn bare(self) -> Response {
        match self {
            WebError::Status(status, message) => (status, message).into_response(),
            WebError::SignInFirst(_) => redirect("/signin"),
        }
    }
}

impl From<berth_meta::MetaError> for WebError {
    fn from(e: berth_meta::MetaError) -> Self {
        WebError::internal(e)
    }
}

impl From<crate::error::RegistryError> for WebError {
    fn from(e: crate::error::RegistryError) -> Self {
        WebError::internal(e)
    }
}

impl From<crate::accounts::AccountError> for WebError {
    fn from(e: crate::accounts::AccountError) -> Self {
        use crate::accounts::AccountError;
        match e {
            AccountError::Invalid(m) => WebError::invalid(m),
            AccountError::NotFound(m) => {
                WebError::new(StatusCode::NOT_FOUND, format!("{m} not found"))
            }
            AccountError::Refused(berth_meta::AccountRefusal::Store(e)) => WebError::internal(e),
            AccountError::Refused(refusal) => WebError::invalid(refusal.to_string()),
            AccountError::Hash(m) => WebError::internal(m),
        }
    }
}

/// The error page.
#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    layout: view::Layout,
    status: u16,
    reason: String,
    message: String,
}

/// Renders a page's outcome: the page, or its error as a page.
pub fn respond(mut visitor: Visitor, outcome: Result<Response, WebError>) -> Response {
    let mut response = match outcome {
        Ok(response) => response,
        Err(WebError::SignInFirst(here)) => {
            let target = format!("/signin?next={}", view::url_encode(&here));
            redirect(&target)
        }
        Err(WebError::Status(status, message)) => {
            let layout =
                view::Layout::new(&mut visitor, status.canonical_reason().unwrap_or("Error"));
            let page = ErrorPage {
                layout,
                status: status.as_u16(),
                reason: status.canonical_reason().unwrap_or("Error").to_owned(),
                message,
            };
            let mut response = html(&page);
            *response.status_mut() = status;
            response
        }
    };
    visitor.finish(&mut response);
    secure_headers(response.headers_mut());
    response
}

/// A rendered template as a response.
pub fn html(page: &impl Template) -> Response {
    match page.render() {
        Ok(body) => {
            let mut response = Response::new(Body::from(body));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            response
        }
        Err(e) => {
            let id = uuid::Uuid::new_v4();
            tracing::error!(error_id = %id, "template failed: {e}");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the page could not be rendered (error {id})"),
            )
                .into_response()
        }
    }
}

/// `303 See Other` to a path on this site.
pub fn redirect(path: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::try_from(path) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

fn secure_headers(headers: &mut HeaderMap) {
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    // Pages differ per visitor and may show what only they may see (a token shown
    // once): never stored by any cache.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

/// `/static/FILE`: the style sheet, the script and the icon, compiled in.
async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, content_type): (&'static [u8], &'static str) = match file.as_str() {
        "berth.css" => (
            include_bytes!("../../static/berth.css"),
            "text/css; charset=utf-8",
        ),
        "berth.js" => (
            include_bytes!("../../static/berth.js"),
            "text/javascript; charset=utf-8",
        ),
        "berth.svg" => (include_bytes!("../../static/berth.svg"), "image/svg+xml"),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Pages link assets with the build's version in the query, so a new build is
    // fetched again; a day is plenty for the same build.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}
