//! Docker's search API, as the Docker engine calls it for `docker search HOST/TERM`:
//! `GET /v1/_ping` (which it asks first) and `GET /v1/search?q=TERM&n=LIMIT&page=P`.
//! The engine filters `--filter is-official=true` itself, from `is_official`.
//!
//! Credentials are optional (the engine sends Basic credentials only over HTTPS); the
//! results are what the caller may read, so an anonymous search never lists a private
//! repository.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_auth::Principal;
use berth_core::endpoint::{first_value, query_pairs};
use serde_json::json;

use super::error::ApiError;
use super::origin::RequestOrigin;
use super::{AppState, auth, json_response};
use crate::accounts::Accounts;
use crate::catalog::{self, Search};
use crate::marks::NamespaceMark;

/// Docker's default page size for `docker search`.
const DEFAULT_LIMIT: u32 = 25;

/// `GET /v1/_ping`: the engine asks it before searching; a standalone registry.
pub async fn ping() -> Response {
    let mut response = json_response(StatusCode::OK, r#"{"standalone":true}"#.into());
    response.headers_mut().insert(
        "x-docker-registry-standalone",
        HeaderValue::from_static("true"),
    );
    response
}

/// `GET /v1/search`.
pub async fn search(State(app): State<Arc<AppState>>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let result = async {
        let origin = parts
            .extensions
            .get::<RequestOrigin>()
            .cloned()
            .ok_or_else(|| ApiError::internal("the request has no origin"))?;
        let caller = auth::authenticate(&app.accounts, &parts, &origin).await?;
        let anonymous = Principal::anonymous();
        let principal = caller.as_ref().map_or(&anonymous, |c| &c.principal);
        let viewer = if app.open {
            berth_meta::Viewer::All
        } else {
            Accounts::viewer(principal)
        };
        let query = query_pairs(parts.uri.query());
        let number = |key: &str, default: u32| {
            first_value(&query, key)
                .and_then(|v| v.parse::<u32>().ok())
                .unwrap_or(default)
        };
        let wanted = Search {
            text: first_value(&query, "q").unwrap_or_default().to_owned(),
            page: number("page", 1),
            per_page: number("n", DEFAULT_LIMIT),
            ..Search::default()
        };
        let found = catalog::search(app.accounts.meta(), viewer, &wanted)
            .await
            .map_err(crate::error::RegistryError::from)?;
        let results: Vec<serde_json::Value> = found
            .items
            .iter()
            .map(|listed| {
                json!({
                    "name": listed.short_name(),
                    "description": listed.card.description,
                    "is_official": listed.mark == NamespaceMark::Official,
                    "is_automated": false,
                    "star_count": 0,
                })
            })
            .collect();
        let body = json!({
            "query": wanted.text,
            "num_results": found.total,
            "num_pages": found.pages(),
            "page": found.page,
            "page_size": found.per_page,
            "results": results,
        });
        Ok::<_, ApiError>(json_response(StatusCode::OK, body.to_string()))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
