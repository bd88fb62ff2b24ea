//! Probes for load balancers and orchestrators, answered without credentials:
//! `/healthz` (the process serves HTTP) and `/readyz` (the metadata store and the blob
//! store both answer within [`READY_TIMEOUT`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use crate::http::{AppState, json_response};

/// How long each store may take to answer a readiness check.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /healthz`: alive.
pub async fn healthz() -> Response {
    json_response(StatusCode::OK, json!({ "status": "ok" }).to_string())
}

/// `GET /readyz`: 200 when both stores answer, else 503 naming what failed.
pub async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    let (database, storage) = tokio::join!(
        within(app.registry.check_database()),
        within(app.registry.check_storage()),
    );
    let ready = database.is_ok() && storage.is_ok();
    let shown = |outcome: Result<(), String>| match outcome {
        Ok(()) => json!("ok"),
        Err(why) => json!(why),
    };
    let body = json!({
        "status": if ready { "ready" } else { "unready" },
        "checks": { "database": shown(database), "storage": shown(storage) },
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json_response(status, body.to_string())
}

async fn within<E: std::fmt::Display>(
    check: impl Future<Output = Result<(), E>>,
) -> Result<(), String> {
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!(
            "no answer within {} s",
            READY_TIMEOUT.as_secs_f32()
        )),
    }
}
