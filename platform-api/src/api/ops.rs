//! Operational endpoints: liveness, readiness, metrics and the OpenAPI document.

use crate::state::AppState;
use axum::Extension;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Health or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct Status {
    /// `ok` or `unavailable`.
    pub status: &'static str,
    /// Why not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
}

/// The OpenAPI document, rendered once at start.
#[derive(Clone)]
pub struct OpenApiJson(pub Arc<String>);

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, description = "Alive", body = Status)))]
pub async fn healthz(State(state): State<AppState>) -> axum::Json<Status> {
    if let Some(faults) = &state.faults {
        faults.wait_health_hang().await;
    }
    axum::Json(Status { status: "ok", reason: None })
}

/// Readiness: the database answers (and no readiness fault is injected).
#[utoipa::path(get, path = "/readyz", tag = "ops", responses(
    (status = 200, description = "Ready", body = Status),
    (status = 503, description = "Not ready", body = Status),
))]
pub async fn readyz(State(state): State<AppState>) -> Response {
    let reason = if state.faults.as_ref().is_some_and(|f| f.readiness_failure()) {
        Some("injected readiness failure")
    } else if !state.db.ping().await {
        Some("database unreachable")
    } else {
        None
    };
    match reason {
        None => axum::Json(Status { status: "ok", reason: None }).into_response(),
        Some(reason) => {
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(Status { status: "unavailable", reason: Some(reason) }))
                .into_response()
        }
    }
}

/// Prometheus metrics, text format 0.0.4.
#[utoipa::path(get, path = "/metrics", tag = "ops", responses(
    (status = 200, description = "Metrics", body = String, content_type = "text/plain; version=0.0.4"),
))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], state.metrics.render()).into_response()
}

/// This API's OpenAPI 3 document.
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses(
    (status = 200, description = "OpenAPI document", body = Object, content_type = "application/json"),
))]
pub async fn openapi(Extension(doc): Extension<OpenApiJson>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], doc.0.as_str().to_owned()).into_response()
}
