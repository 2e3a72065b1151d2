//! Grants: a patient lets a clinician (or an admin) read and write their health data, and
//! can revoke that at any time; revocation takes effect on the next request.

use super::{id_str, rfc3339};
use crate::auth::{AuthUser, Role};
use crate::db::{new_id, now_ms};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A new grant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantInput {
    /// The clinician to grant access to.
    pub clinician_id: Uuid,
}

/// A grant.
#[derive(Debug, Serialize, ToSchema)]
pub struct Grant {
    /// Grant id.
    pub id: String,
    /// The granting patient.
    pub patient_id: String,
    /// The clinician given access.
    pub clinician_id: String,
    /// When granted, RFC 3339.
    pub created_at: String,
    /// When revoked, RFC 3339; absent while active.
    pub revoked_at: Option<String>,
}

/// The caller's grants.
#[derive(Debug, Serialize, ToSchema)]
pub struct GrantList {
    /// Grants given (patients) or held (clinicians), newest first.
    pub items: Vec<Grant>,
}

/// Filter of the grant list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GrantFilter {
    /// Include revoked grants (default false).
    pub include_revoked: Option<bool>,
}

type GrantRow = (String, String, String, i64, Option<i64>);

fn grant_out((id, patient_id, clinician_id, created_at, revoked_at): GrantRow) -> Grant {
    Grant { id, patient_id, clinician_id, created_at: rfc3339(created_at), revoked_at: revoked_at.map(rfc3339) }
}

/// Grant a clinician access to the caller's data (patients only).
#[utoipa::path(post, path = "/v1/grants", tag = "grants", request_body = GrantInput, security(("bearer" = [])),
    responses(
        (status = 201, description = "Granted", body = Grant),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Caller is not a patient", body = ErrorBody),
        (status = 409, description = "An active grant exists", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Not a clinician", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<GrantInput>,
) -> ApiResult<Response> {
    if user.role != Role::Patient {
        return Err(ApiError::forbidden("only patients grant access to their records"));
    }
    let clinician_id = id_str(input.clinician_id);
    let grantee: Option<(String, i64)> = state
        .db
        .timed(
            "user_role",
            sqlx::query_as("SELECT role, disabled FROM users WHERE id = $1")
                .bind(&clinician_id)
                .fetch_optional(state.db.pool()),
        )
        .await?;
    match grantee {
        Some((role, 0)) if role == "clinician" || role == "admin" => {}
        _ => return Err(ApiError::validation("`clinician_id` does not name an active clinician")),
    }
    let existing: Option<(String,)> = state
        .db
        .timed(
            "grant_check",
            sqlx::query_as("SELECT id FROM grants WHERE patient_id = $1 AND clinician_id = $2 AND revoked_at IS NULL")
                .bind(&user.id)
                .bind(&clinician_id)
                .fetch_optional(state.db.pool()),
        )
        .await?;
    if existing.is_some() {
        return Err(ApiError::conflict("grant_exists", "an active grant to this clinician exists"));
    }
    let id = new_id();
    let now = now_ms();
    state
        .db
        .timed(
            "grant_insert",
            sqlx::query("INSERT INTO grants (id, patient_id, clinician_id, created_at) VALUES ($1, $2, $3, $4)")
                .bind(&id)
                .bind(&user.id)
                .bind(&clinician_id)
                .bind(now)
                .execute(state.db.writer()),
        )
        .await?;
    tracing::info!(grant_id = %id, patient_id = %user.id, clinician_id = %clinician_id, "access granted");
    let grant = grant_out((id, user.id, clinician_id, now, None));
    Ok((StatusCode::CREATED, axum::Json(grant)).into_response())
}

/// Grants given by the caller (patients) or held by the caller (clinicians, admins).
#[utoipa::path(get, path = "/v1/grants", tag = "grants", security(("bearer" = [])), params(GrantFilter),
    responses(
        (status = 200, description = "Grants", body = GrantList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(filter): ApiQuery<GrantFilter>,
) -> ApiResult<axum::Json<GrantList>> {
    let column = if user.role == Role::Patient { "patient_id" } else { "clinician_id" };
    let active_only = if filter.include_revoked.unwrap_or(false) { "" } else { " AND revoked_at IS NULL" };
    let rows: Vec<GrantRow> = state
        .db
        .timed(
            "grant_list",
            sqlx::query_as(&format!(
                "SELECT id, patient_id, clinician_id, created_at, revoked_at FROM grants WHERE {column} = $1{active_only} \
                 ORDER BY created_at DESC LIMIT 1000"
            ))
            .bind(&user.id)
            .fetch_all(state.db.pool()),
        )
        .await?;
    Ok(axum::Json(GrantList { items: rows.into_iter().map(grant_out).collect() }))
}

/// Revoke a grant (the granting patient only). Revoking twice is not an error.
#[utoipa::path(delete, path = "/v1/grants/{id}", tag = "grants", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Grant id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such grant of the caller's", body = ErrorBody),
    ))]
pub async fn revoke(State(state): State<AppState>, user: AuthUser, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    let id = id_str(id);
    let found: Option<(String,)> = state
        .db
        .timed(
            "grant_owner",
            sqlx::query_as("SELECT id FROM grants WHERE id = $1 AND patient_id = $2")
                .bind(&id)
                .bind(&user.id)
                .fetch_optional(state.db.pool()),
        )
        .await?;
    if found.is_none() {
        return Err(ApiError::not_found("grant"));
    }
    state
        .db
        .timed(
            "grant_revoke",
            sqlx::query("UPDATE grants SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(&id)
                .execute(state.db.writer()),
        )
        .await?;
    tracing::info!(grant_id = %id, "access revoked");
    Ok(StatusCode::NO_CONTENT)
}
