//! Admin endpoints: users, the audit log, and fault injection. Admins manage accounts but
//! have no access to health records without a patient's grant.

use super::auth::{RegisterInput, USER_COLUMNS, UserOut, UserRow, create_user, fetch_user, user_out};
use super::{Page, id_str, next_offset};
use crate::audit::AuditEntry;
use crate::auth::{AuthUser, Role};
use crate::db::now_ms;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::faults::{FaultSettings, FaultStatus, Faults};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A new account of any role.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    /// Email address.
    pub email: String,
    /// 12 to 128 characters.
    pub password: String,
    /// Full name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Date of birth, `YYYY-MM-DD`.
    #[serde(default)]
    pub date_of_birth: Option<String>,
}

/// A change to an account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    /// Disable (revoking every token) or re-enable.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// New role.
    #[serde(default)]
    pub role: Option<Role>,
}

/// A page of users.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserList {
    /// Users, newest first.
    pub items: Vec<UserOut>,
    /// Offset of the next page, if there may be one.
    pub next_offset: Option<i64>,
}

/// A page of audit rows.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Rows, newest first.
    pub items: Vec<AuditEntry>,
    /// Offset of the next page, if there may be one.
    pub next_offset: Option<i64>,
}

/// Filter of the audit log.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditFilter {
    /// Only accesses to this patient's data.
    pub patient_id: Option<Uuid>,
    /// Only accesses by this user.
    pub actor_id: Option<Uuid>,
    /// Items per page, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Items to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u32>,
}

/// List users.
#[utoipa::path(get, path = "/admin/users", tag = "admin", security(("bearer" = [])), params(Page),
    responses(
        (status = 200, description = "A page of users", body = UserList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
pub async fn list_users(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<axum::Json<UserList>> {
    user.require_admin()?;
    let (limit, offset) = page.resolve()?;
    let rows: Vec<UserRow> = state
        .db
        .timed(
            "user_list",
            sqlx::query_as(&format!(
                "SELECT {USER_COLUMNS} FROM users ORDER BY created_at DESC, id DESC LIMIT $1 OFFSET $2"
            ))
            .bind(limit)
            .bind(offset)
            .fetch_all(state.db.pool()),
        )
        .await?;
    let items = rows.into_iter().map(user_out).collect::<ApiResult<Vec<_>>>()?;
    let next_offset = next_offset(items.len(), limit, offset);
    Ok(axum::Json(UserList { items, next_offset }))
}

/// Create an account of any role.
#[utoipa::path(post, path = "/admin/users", tag = "admin", request_body = NewUser, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = UserOut),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 409, description = "Email taken", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ))]
pub async fn create_user_admin(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<NewUser>,
) -> ApiResult<Response> {
    user.require_admin()?;
    let role = input.role;
    let input = RegisterInput {
        email: input.email,
        password: input.password,
        name: input.name,
        role: Some(role),
        date_of_birth: input.date_of_birth,
    };
    let created = create_user(&state, input, role).await?;
    Ok((StatusCode::CREATED, axum::Json(created)).into_response())
}

/// Disable, enable or change the role of an account.
#[utoipa::path(patch, path = "/admin/users/{id}", tag = "admin", request_body = UserPatch, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Updated", body = UserOut),
        (status = 400, description = "Invalid id or malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "No such user", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid change", body = ErrorBody),
    ))]
pub async fn patch_user(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiJson(patch): ApiJson<UserPatch>,
) -> ApiResult<axum::Json<UserOut>> {
    user.require_admin()?;
    let id = id_str(id);
    if id == user.id && (patch.disabled == Some(true) || patch.role.is_some_and(|r| r != Role::Admin)) {
        return Err(ApiError::validation("admins cannot disable or demote themselves"));
    }
    if fetch_user(&state, &id).await?.is_none() {
        return Err(ApiError::not_found("user"));
    }
    if let Some(role) = patch.role {
        state
            .db
            .timed(
                "user_set_role",
                sqlx::query("UPDATE users SET role = $1 WHERE id = $2")
                    .bind(role.as_str())
                    .bind(&id)
                    .execute(state.db.writer()),
            )
            .await?;
    }
    if let Some(disabled) = patch.disabled {
        state
            .db
            .timed(
                "user_set_disabled",
                sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                    .bind(i64::from(disabled))
                    .bind(&id)
                    .execute(state.db.writer()),
            )
            .await?;
        if disabled {
            state
                .db
                .timed(
                    "token_revoke_all",
                    sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL")
                        .bind(now_ms())
                        .bind(&id)
                        .execute(state.db.writer()),
                )
                .await?;
        }
    }
    state.token_cache.remove_user(&id);
    tracing::info!(user_id = %id, admin_id = %user.id, disabled = ?patch.disabled, role = ?patch.role, "user changed by admin");
    let updated = fetch_user(&state, &id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    Ok(axum::Json(updated))
}

/// Read the audit log of health-record access.
#[utoipa::path(get, path = "/admin/audit", tag = "admin", security(("bearer" = [])), params(AuditFilter),
    responses(
        (status = 200, description = "A page of audit rows", body = AuditList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
    ))]
pub async fn audit(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(filter): ApiQuery<AuditFilter>,
) -> ApiResult<axum::Json<AuditList>> {
    user.require_admin()?;
    let (limit, offset) = Page { limit: filter.limit, offset: filter.offset }.resolve()?;
    type Row = (String, i64, Option<String>, String, String, Option<String>, Option<String>, String);
    let rows: Vec<Row> = state
        .db
        .timed(
            "audit_list",
            sqlx::query_as(
                "SELECT id, at, actor_id, action, resource, resource_id, patient_id, outcome FROM audit_log \
                 WHERE ($1 IS NULL OR patient_id = $1) AND ($2 IS NULL OR actor_id = $2) \
                 ORDER BY at DESC, id DESC LIMIT $3 OFFSET $4",
            )
            .bind(filter.patient_id.map(id_str))
            .bind(filter.actor_id.map(id_str))
            .bind(limit)
            .bind(offset)
            .fetch_all(state.db.pool()),
        )
        .await?;
    let items: Vec<AuditEntry> = rows
        .into_iter()
        .map(|(id, at, actor_id, action, resource, resource_id, patient_id, outcome)| AuditEntry {
            id,
            at,
            actor_id,
            action,
            resource,
            resource_id,
            patient_id,
            outcome,
        })
        .collect();
    let next_offset = next_offset(items.len(), limit, offset);
    Ok(axum::Json(AuditList { items, next_offset }))
}

fn faults_of(state: &AppState, user: &AuthUser) -> ApiResult<Arc<Faults>> {
    user.require_admin()?;
    state.faults.clone().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "fault injection is disabled (start with --enable-fault-injection)",
        )
    })
}

/// The faults in force.
#[utoipa::path(get, path = "/admin/faults", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 200, description = "Faults in force", body = FaultStatus),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Fault injection disabled", body = ErrorBody),
    ))]
pub async fn get_faults(State(state): State<AppState>, user: AuthUser) -> ApiResult<axum::Json<FaultStatus>> {
    Ok(axum::Json(faults_of(&state, &user)?.status()))
}

/// Set faults (fields given replace their values; others are kept).
#[utoipa::path(put, path = "/admin/faults", tag = "admin", request_body = FaultSettings, security(("bearer" = [])),
    responses(
        (status = 200, description = "Faults in force", body = FaultStatus),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Fault injection disabled", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid setting", body = ErrorBody),
    ))]
pub async fn put_faults(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(settings): ApiJson<FaultSettings>,
) -> ApiResult<axum::Json<FaultStatus>> {
    let faults = faults_of(&state, &user)?;
    let now = faults.update(settings)?;
    tracing::warn!(settings = ?now, "fault injection changed");
    Ok(axum::Json(faults.status()))
}

/// Clear every fault.
#[utoipa::path(delete, path = "/admin/faults", tag = "admin", security(("bearer" = [])),
    responses(
        (status = 204, description = "Cleared"),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "Not an admin", body = ErrorBody),
        (status = 404, description = "Fault injection disabled", body = ErrorBody),
    ))]
pub async fn clear_faults(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    faults_of(&state, &user)?.clear();
    tracing::warn!("fault injection cleared");
    Ok(StatusCode::NO_CONTENT)
}
