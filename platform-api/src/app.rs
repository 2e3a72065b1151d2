//! The router: every route, its middleware, and the OpenAPI document generated from the
//! same handler list.

use crate::api::{self, ApiDoc, admin, assessments, auth, grants, ops, records, reports};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Largest JSON body accepted, in bytes.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// Builds the router and the OpenAPI document.
pub fn build(state: AppState) -> (Router, utoipa::openapi::OpenApi) {
    let v1 = OpenApiRouter::new()
        .routes(routes!(auth::register))
        .routes(routes!(auth::login))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::me))
        .routes(routes!(records::create, records::list))
        .routes(routes!(records::get, records::update, records::delete))
        .routes(routes!(grants::create, grants::list))
        .routes(routes!(grants::revoke))
        .routes(routes!(reports::upload, reports::list))
        .routes(routes!(reports::get))
        .routes(routes!(assessments::create, assessments::list))
        .routes(routes!(assessments::get))
        .layer(middleware::from_fn_with_state(state.clone(), crate::faults::inject));
    let admin = OpenApiRouter::new()
        .routes(routes!(admin::list_users, admin::create_user_admin))
        .routes(routes!(admin::patch_user))
        .routes(routes!(admin::audit))
        .routes(routes!(admin::get_faults, admin::put_faults, admin::clear_faults));
    let ops = OpenApiRouter::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .routes(routes!(ops::metrics))
        .routes(routes!(ops::openapi));
    let (router, openapi) =
        OpenApiRouter::with_openapi(ApiDoc::openapi()).merge(v1).merge(admin).merge(ops).split_for_parts();
    let doc = ops::OpenApiJson(Arc::new(openapi.to_json().unwrap_or_default()));
    let router = router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), crate::telemetry::track_request))
        .layer(DefaultBodyLimit::max(MAX_JSON_BYTES.max(api::reports::MAX_REPORT_BYTES)))
        .layer(Extension(doc))
        .layer(CatchPanicLayer::custom(panicked))
        .with_state(state);
    (router, openapi)
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route")
}

/// A panic in a handler is a bug: answer 500 without its message (it could hold data).
fn panicked(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error").into_response()
}
