//! Accounts and tokens: register, login, logout, and who am I.
//!
//! Deliberate PHI in logs: registration logs the new user's email and name, and a
//! rejected date of birth is logged with its value. Real services do this; Warden must
//! catch it (see the README's "PHI in platform-api's telemetry").

use crate::auth::{self, AuthUser, Role};
use crate::db::{new_id, now_ms};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::sync::LazyLock;
use utoipa::ToSchema;

/// A new account.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    /// Email address, used to log in.
    #[schema(example = "jane@example.org")]
    pub email: String,
    /// 12 to 128 characters.
    #[schema(min_length = 12, max_length = 128)]
    pub password: String,
    /// Full name.
    pub name: String,
    /// `patient` (default) or `clinician`; admins are created by admins.
    #[serde(default)]
    pub role: Option<Role>,
    /// Date of birth, `YYYY-MM-DD`.
    #[serde(default)]
    pub date_of_birth: Option<String>,
}

/// An account as the API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct UserOut {
    /// User id.
    pub id: String,
    /// Email address.
    pub email: String,
    /// Full name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Date of birth, when given.
    pub date_of_birth: Option<String>,
    /// Whether the account is disabled.
    pub disabled: bool,
    /// Creation time, RFC 3339.
    pub created_at: String,
}

/// Credentials.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginInput {
    /// Email address.
    pub email: String,
    /// Password.
    pub password: String,
}

/// A bearer token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Expiry, RFC 3339.
    pub expires_at: String,
}

static EMAIL: LazyLock<regex::Regex> =
    LazyLock::new(|| regex::Regex::new(r"^[^@\s\x00]{1,64}@[^@\s\x00]+\.[^@\s\x00]+$").expect("static regex"));

/// Validates and normalises an email address.
fn normalise_email(raw: &str) -> ApiResult<String> {
    let email = raw.trim().to_lowercase();
    if email.len() > 254 || !EMAIL.is_match(&email) {
        return Err(ApiError::validation("`email` must be an email address"));
    }
    Ok(email)
}

/// Validates the fields of a new account and stores it. Shared with the admin API.
pub async fn create_user(state: &AppState, input: RegisterInput, role: Role) -> ApiResult<UserOut> {
    let email = normalise_email(&input.email)?;
    let name = input.name.trim().to_owned();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        return Err(ApiError::validation("`name` must be 1 to 200 printable characters"));
    }
    let pw_len = input.password.chars().count();
    if !(12..=128).contains(&pw_len) {
        return Err(ApiError::validation("`password` must be 12 to 128 characters"));
    }
    let dob = match input.date_of_birth.as_deref() {
        None => None,
        Some(raw) => match parse_dob(raw) {
            Some(d) => Some(d),
            None => {
                tracing::warn!(date_of_birth = raw, email = %email, "registration rejected: invalid date of birth");
                return Err(ApiError::validation("`date_of_birth` must be a past date as YYYY-MM-DD, after 1900"));
            }
        },
    };
    let hash = auth::hash_password(input.password).await?;
    let id = new_id();
    let created_at = now_ms();
    let inserted = state
        .db
        .timed(
            "user_insert",
            sqlx::query(
                "INSERT INTO users (id, email, name, role, date_of_birth, password_hash, disabled, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
            )
            .bind(&id)
            .bind(&email)
            .bind(&name)
            .bind(role.as_str())
            .bind(dob.as_deref())
            .bind(&hash)
            .bind(created_at)
            .execute(state.db.writer()),
        )
        .await;
    match inserted {
        Ok(_) => {}
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            return Err(ApiError::conflict("email_taken", "an account with this email already exists"));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(user_id = %id, email = %email, name = %name, role = role.as_str(), "user registered");
    Ok(UserOut { id, email, name, role, date_of_birth: dob, disabled: false, created_at: super::rfc3339(created_at) })
}

fn parse_dob(raw: &str) -> Option<String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(raw, &format).ok()?;
    let today = time::OffsetDateTime::now_utc().date();
    (date.year() >= 1900 && date <= today).then(|| raw.to_owned())
}

/// Register an account.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body = RegisterInput,
    responses(
        (status = 201, description = "Account created", body = UserOut),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 403, description = "Admin role requested", body = ErrorBody),
        (status = 409, description = "Email taken", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ))]
pub async fn register(State(state): State<AppState>, ApiJson(input): ApiJson<RegisterInput>) -> ApiResult<Response> {
    let role = input.role.unwrap_or(Role::Patient);
    if role == Role::Admin {
        return Err(ApiError::forbidden("admin accounts are created by an admin"));
    }
    let user = create_user(&state, input, role).await?;
    Ok((StatusCode::CREATED, axum::Json(user)).into_response())
}

/// Log in and get a bearer token.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginInput,
    responses(
        (status = 200, description = "Logged in", body = TokenOut),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "Wrong email or password", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
        (status = 429, description = "Too many attempts", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    ApiJson(input): ApiJson<LoginInput>,
) -> ApiResult<Response> {
    let email = input.email.trim().to_lowercase();
    // PostgreSQL text cannot hold NUL; such an email cannot exist, so it cannot log in.
    if email.contains('\0') {
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "invalid email or password"));
    }
    if !state.login_limiter.allow(&email, peer.ip()) {
        state.metrics.login_attempts.with_label_values(&["rate_limited"]).inc();
        let mut response =
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "too many login attempts, retry later")
                .into_response();
        response.headers_mut().insert("retry-after", HeaderValue::from_static("60"));
        return Ok(response);
    }
    let row: Option<(String, String, i64)> = state
        .db
        .timed(
            "user_by_email",
            sqlx::query_as("SELECT id, password_hash, disabled FROM users WHERE email = $1")
                .bind(&email)
                .fetch_optional(state.db.pool()),
        )
        .await?;
    let (user_id, hash) = match row {
        Some((id, hash, 0)) => (Some(id), Some(hash)),
        _ => (None, None),
    };
    let ok = auth::verify_password(hash, input.password).await?;
    let Some(user_id) = user_id.filter(|_| ok) else {
        state.metrics.login_attempts.with_label_values(&["invalid"]).inc();
        return Err(ApiError::new(StatusCode::UNAUTHORIZED, "invalid_credentials", "invalid email or password"));
    };
    let token = auth::new_token();
    let now = now_ms();
    let expires_at = now + state.token_ttl.as_millis() as i64;
    state
        .db
        .timed(
            "token_insert",
            sqlx::query("INSERT INTO tokens (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(auth::token_hash(&token))
                .bind(&user_id)
                .bind(now)
                .bind(expires_at)
                .execute(state.db.writer()),
        )
        .await?;
    state.metrics.login_attempts.with_label_values(&["success"]).inc();
    tracing::info!(user_id = %user_id, "login succeeded");
    let out = TokenOut { token, token_type: "Bearer", expires_at: super::rfc3339(expires_at) };
    Ok(axum::Json(out).into_response())
}

/// Revoke the token used for this request.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 204, description = "Token revoked"),
        (status = 401, description = "No valid token", body = ErrorBody),
    ))]
pub async fn logout(State(state): State<AppState>, user: AuthUser) -> ApiResult<StatusCode> {
    state.token_cache.remove(&user.token_hash);
    state
        .db
        .timed(
            "token_revoke",
            sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE token_hash = $2 AND revoked_at IS NULL")
                .bind(now_ms())
                .bind(&user.token_hash)
                .execute(state.db.writer()),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's own account.
#[utoipa::path(get, path = "/v1/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = UserOut),
        (status = 401, description = "No valid token", body = ErrorBody),
    ))]
pub async fn me(State(state): State<AppState>, user: AuthUser) -> ApiResult<axum::Json<UserOut>> {
    let found = fetch_user(&state, &user.id).await?.ok_or_else(|| ApiError::not_found("user"))?;
    Ok(axum::Json(found))
}

/// Columns of a user row as selected by [`fetch_user`] and the admin list.
pub const USER_COLUMNS: &str = "id, email, name, role, date_of_birth, disabled, created_at";

/// A user row.
pub type UserRow = (String, String, String, String, Option<String>, i64, i64);

/// Turns a user row into its API form.
pub fn user_out(row: UserRow) -> ApiResult<UserOut> {
    let (id, email, name, role, date_of_birth, disabled, created_at) = row;
    let role = Role::parse(&role).ok_or_else(|| ApiError::internal("stored role", &"unknown role in users table"))?;
    Ok(UserOut {
        id,
        email,
        name,
        role,
        date_of_birth,
        disabled: disabled != 0,
        created_at: super::rfc3339(created_at),
    })
}

/// Loads one user.
pub async fn fetch_user(state: &AppState, id: &str) -> ApiResult<Option<UserOut>> {
    let row: Option<UserRow> = state
        .db
        .timed(
            "user_by_id",
            sqlx::query_as(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
                .bind(id)
                .fetch_optional(state.db.pool()),
        )
        .await?;
    row.map(user_out).transpose()
}
