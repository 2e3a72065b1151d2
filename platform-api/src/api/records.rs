//! Health records: vitals, lab results and notes. Create, read, list, replace, delete.
//!
//! Every access, allowed or refused, is audited. A record the caller may not see answers
//! 404, the same as one that does not exist, so ids cannot be probed.
//!
//! Deliberate PHI in telemetry: record creation logs the patient's name and email, and its
//! span carries them as attributes (see the README).

use super::{Page, id_str, next_offset, observed_at, rfc3339};
use crate::audit::{Action, Event, Outcome};
use crate::auth::{AuthUser, Role, may_access_patient};
use crate::catalog::{self, Kind};
use crate::db::{new_id, now_ms};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opentelemetry::KeyValue;
use opentelemetry::trace::SpanKind;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Kind of a health record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// A vital sign (`code`, `value`, `unit`).
    Vital,
    /// A lab result (`code`, `value`, `unit`).
    Lab,
    /// A clinical note (`text`).
    Note,
}

impl RecordKind {
    fn as_str(self) -> &'static str {
        match self {
            RecordKind::Vital => "vital",
            RecordKind::Lab => "lab",
            RecordKind::Note => "note",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        match s {
            "vital" => Some(RecordKind::Vital),
            "lab" => Some(RecordKind::Lab),
            "note" => Some(RecordKind::Note),
            _ => None,
        }
    }
    fn catalog(self) -> Kind {
        match self {
            RecordKind::Vital => Kind::Vital,
            RecordKind::Lab => Kind::Lab,
            RecordKind::Note => Kind::Note,
        }
    }
}

/// A new record.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordInput {
    /// The patient; defaults to the caller when the caller is a patient.
    #[serde(default)]
    pub patient_id: Option<Uuid>,
    /// Record kind.
    pub kind: RecordKind,
    /// Measurement code for vitals and labs, e.g. `heart_rate`, `hba1c`.
    #[serde(default)]
    pub code: Option<String>,
    /// Measured value, within the code's plausible range.
    #[serde(default)]
    pub value: Option<f64>,
    /// Unit; defaults to the code's first unit.
    #[serde(default)]
    pub unit: Option<String>,
    /// Note text (notes), or a comment (vitals and labs).
    #[serde(default)]
    pub text: Option<String>,
    /// When it was observed, RFC 3339; defaults to now.
    #[serde(default)]
    pub observed_at: Option<String>,
}

/// A replacement of a record's content (kind and patient cannot change).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecordUpdate {
    /// Must equal the record's kind.
    pub kind: RecordKind,
    /// Measurement code.
    #[serde(default)]
    pub code: Option<String>,
    /// Measured value.
    #[serde(default)]
    pub value: Option<f64>,
    /// Unit.
    #[serde(default)]
    pub unit: Option<String>,
    /// Text.
    #[serde(default)]
    pub text: Option<String>,
    /// When it was observed, RFC 3339.
    #[serde(default)]
    pub observed_at: Option<String>,
}

/// A stored record.
#[derive(Debug, Serialize, ToSchema)]
pub struct Record {
    /// Record id.
    pub id: String,
    /// Patient id.
    pub patient_id: String,
    /// Who wrote it.
    pub author_id: String,
    /// Kind.
    pub kind: RecordKind,
    /// Measurement code.
    pub code: Option<String>,
    /// Value.
    pub value: Option<f64>,
    /// Unit.
    pub unit: Option<String>,
    /// Text.
    pub text: Option<String>,
    /// Observation time, RFC 3339.
    pub observed_at: String,
    /// The lab report it was parsed from.
    pub report_id: Option<String>,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// A page of records.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordList {
    /// The records, newest first.
    pub items: Vec<Record>,
    /// Offset of the next page, if there may be one.
    pub next_offset: Option<i64>,
}

/// Filters of the record list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RecordFilter {
    /// The patient (required for clinicians; patients see their own).
    pub patient_id: Option<Uuid>,
    /// Only this kind: `vital`, `lab` or `note`.
    pub kind: Option<RecordKind>,
    /// Items per page, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Items to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u32>,
}

/// Validated record content.
pub struct Content {
    /// Code.
    pub code: Option<String>,
    /// Value.
    pub value: Option<f64>,
    /// Unit.
    pub unit: Option<String>,
    /// Text.
    pub text: Option<String>,
    /// Observation time, epoch ms.
    pub observed_at: i64,
}

/// Checks a record's content against its kind and the catalogue.
pub fn validate(
    kind: RecordKind,
    code: Option<String>,
    value: Option<f64>,
    unit: Option<String>,
    text: Option<String>,
    observed: Option<&str>,
) -> ApiResult<Content> {
    let observed_at = observed_at(observed)?;
    let text = text.map(|t| t.trim().to_owned());
    if text.as_ref().is_some_and(|t| has_forbidden_control(t)) {
        return Err(ApiError::validation("`text` must not contain control characters other than tab and newline"));
    }
    match kind {
        RecordKind::Note => {
            if code.is_some() || value.is_some() || unit.is_some() {
                return Err(ApiError::validation("`code`, `value` and `unit` are not allowed on a note"));
            }
            let text =
                text.filter(|t| !t.is_empty()).ok_or_else(|| ApiError::validation("`text` is required on a note"))?;
            if text.chars().count() > 10_000 {
                return Err(ApiError::validation("`text` must be at most 10000 characters"));
            }
            Ok(Content { code: None, value: None, unit: None, text: Some(text), observed_at })
        }
        RecordKind::Vital | RecordKind::Lab => {
            let code = code.ok_or_else(|| ApiError::validation("`code` is required"))?;
            let value = value.ok_or_else(|| ApiError::validation("`value` is required"))?;
            let entry = catalog::code(&code).filter(|c| c.kind == kind.catalog());
            let unit = match (unit, entry) {
                (Some(u), _) => u,
                (None, Some(c)) => c.units[0].0.to_owned(),
                (None, None) => String::new(),
            };
            catalog::check_measurement(kind.catalog(), &code, value, &unit).map_err(ApiError::validation)?;
            if text.as_ref().is_some_and(|t| t.chars().count() > 2_000) {
                return Err(ApiError::validation("`text` must be at most 2000 characters"));
            }
            Ok(Content {
                code: Some(code),
                value: Some(value),
                unit: Some(unit),
                text: text.filter(|t| !t.is_empty()),
                observed_at,
            })
        }
    }
}

/// Control characters other than tab, newline and carriage return (NUL among them, which
/// PostgreSQL text cannot store).
pub fn has_forbidden_control(s: &str) -> bool {
    s.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

/// Columns selected for a record.
pub const RECORD_COLUMNS: &str =
    "id, patient_id, author_id, kind, code, value, unit, text, observed_at, report_id, created_at, updated_at";

type RecordRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    Option<f64>,
    Option<String>,
    Option<String>,
    i64,
    Option<String>,
    i64,
    i64,
);

fn record_out(row: RecordRow) -> ApiResult<Record> {
    let (id, patient_id, author_id, kind, code, value, unit, text, observed_at, report_id, created_at, updated_at) =
        row;
    let kind = RecordKind::parse(&kind).ok_or_else(|| ApiError::internal("stored kind", &"unknown record kind"))?;
    Ok(Record {
        id,
        patient_id,
        author_id,
        kind,
        code,
        value,
        unit,
        text,
        observed_at: rfc3339(observed_at),
        report_id,
        created_at: rfc3339(created_at),
        updated_at: rfc3339(updated_at),
    })
}

/// Resolves which patient a write is for, and checks the caller may act for them.
/// Returns the patient's id, name and email.
pub async fn target_patient(
    state: &AppState,
    user: &AuthUser,
    requested: Option<Uuid>,
    resource: &'static str,
) -> ApiResult<(String, String, String)> {
    let patient_id = match (requested, user.role) {
        (Some(id), _) => id_str(id),
        (None, Role::Patient) => user.id.clone(),
        (None, _) => return Err(ApiError::validation("`patient_id` is required unless the caller is a patient")),
    };
    if patient_id == user.id && user.role == Role::Patient {
        return Ok((patient_id, user.name.clone(), user.email.clone()));
    }
    let allowed = may_access_patient(state, user, &patient_id).await?;
    if !allowed {
        state
            .audit
            .record(Event {
                actor_id: &user.id,
                action: Action::Create,
                resource,
                resource_id: None,
                patient_id: Some(&patient_id),
                outcome: Outcome::Denied,
            })
            .await?;
        return Err(ApiError::forbidden("no access to this patient's records"));
    }
    let row: Option<(String, String)> = state
        .db
        .timed(
            "patient_by_id",
            sqlx::query_as("SELECT name, email FROM users WHERE id = $1 AND role = 'patient'")
                .bind(&patient_id)
                .fetch_optional(state.db.pool()),
        )
        .await?;
    let (name, email) = row.ok_or_else(|| ApiError::not_found("patient"))?;
    Ok((patient_id, name, email))
}

/// Checks read access to a patient for a list request, auditing a refusal.
pub async fn list_patient(
    state: &AppState,
    user: &AuthUser,
    requested: Option<Uuid>,
    resource: &'static str,
) -> ApiResult<String> {
    let patient_id = match (requested, user.role) {
        (Some(id), _) => id_str(id),
        (None, Role::Patient) => user.id.clone(),
        (None, _) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                "`patient_id` is required unless the caller is a patient",
            ));
        }
    };
    let allowed = may_access_patient(state, user, &patient_id).await?;
    let outcome = if allowed { Outcome::Allowed } else { Outcome::Denied };
    state
        .audit
        .record(Event {
            actor_id: &user.id,
            action: Action::List,
            resource,
            resource_id: None,
            patient_id: Some(&patient_id),
            outcome,
        })
        .await?;
    if !allowed {
        return Err(ApiError::forbidden("no access to this patient's records"));
    }
    Ok(patient_id)
}

/// Inserts a record (shared with lab report upload, which passes a transaction).
pub async fn insert_record<'c, E>(
    executor: E,
    id: &str,
    patient_id: &str,
    author_id: &str,
    kind: RecordKind,
    content: &Content,
    report_id: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    sqlx::query(
        "INSERT INTO records (id, patient_id, author_id, kind, code, value, unit, text, observed_at, report_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11)",
    )
    .bind(id)
    .bind(patient_id)
    .bind(author_id)
    .bind(kind.as_str())
    .bind(content.code.as_deref())
    .bind(content.value)
    .bind(content.unit.as_deref())
    .bind(content.text.as_deref())
    .bind(content.observed_at)
    .bind(report_id)
    .bind(now)
    .execute(executor)
    .await
    .map(|_| ())
}

/// The record as stored after an insert, without reading it back.
pub fn record_from(
    id: String,
    patient_id: String,
    author_id: String,
    kind: RecordKind,
    c: Content,
    report_id: Option<String>,
    now: i64,
) -> Record {
    Record {
        id,
        patient_id,
        author_id,
        kind,
        code: c.code,
        value: c.value,
        unit: c.unit,
        text: c.text,
        observed_at: rfc3339(c.observed_at),
        report_id,
        created_at: rfc3339(now),
        updated_at: rfc3339(now),
    }
}

/// Create a record.
#[utoipa::path(post, path = "/v1/records", tag = "records", request_body = RecordInput, security(("bearer" = [])),
    responses(
        (status = 201, description = "Created", body = Record),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "No access to this patient", body = ErrorBody),
        (status = 404, description = "No such patient", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    user: AuthUser,
    ApiJson(input): ApiJson<RecordInput>,
) -> ApiResult<Response> {
    let content = validate(input.kind, input.code, input.value, input.unit, input.text, input.observed_at.as_deref())?;
    let (patient_id, patient_name, patient_email) = target_patient(&state, &user, input.patient_id, "record").await?;
    let id = new_id();
    let now = now_ms();
    let attributes = vec![
        KeyValue::new("patient.name", patient_name.clone()),
        KeyValue::new("patient.email", patient_email.clone()),
    ];
    let insert = state.db.timed(
        "record_insert",
        insert_record(state.db.writer(), &id, &patient_id, &user.id, input.kind, &content, None, now),
    );
    crate::telemetry::in_span("record.create", SpanKind::Internal, attributes, insert).await?;
    state
        .audit
        .record(Event {
            actor_id: &user.id,
            action: Action::Create,
            resource: "record",
            resource_id: Some(&id),
            patient_id: Some(&patient_id),
            outcome: Outcome::Allowed,
        })
        .await?;
    tracing::info!(
        record_id = %id,
        kind = input.kind.as_str(),
        patient_name = %patient_name,
        patient_email = %patient_email,
        "health record created"
    );
    let record = record_from(id, patient_id, user.id, input.kind, content, None, now);
    Ok((StatusCode::CREATED, axum::Json(record)).into_response())
}

/// Loads a record the caller may access, auditing every outcome.
async fn load_checked(state: &AppState, user: &AuthUser, id: &str, action: Action) -> ApiResult<Record> {
    let row: Option<RecordRow> = state
        .db
        .timed(
            "record_by_id",
            sqlx::query_as(&format!("SELECT {RECORD_COLUMNS} FROM records WHERE id = $1"))
                .bind(id)
                .fetch_optional(state.db.pool()),
        )
        .await?;
    let record = row.map(record_out).transpose()?;
    audited_access(state, user, action, "record", id, record, |r| &r.patient_id).await
}

/// Decides access to one item of a patient's data that was looked up by id, and audits the
/// outcome. An item the caller may not see answers 404, like a missing one, so ids cannot
/// be probed; the audit row still says which it was.
pub async fn audited_access<T>(
    state: &AppState,
    user: &AuthUser,
    action: Action,
    resource: &'static str,
    id: &str,
    found: Option<T>,
    patient_of: impl Fn(&T) -> &str,
) -> ApiResult<T> {
    let outcome = match &found {
        None => Outcome::NotFound,
        Some(item) if may_access_patient(state, user, patient_of(item)).await? => Outcome::Allowed,
        Some(_) => Outcome::Denied,
    };
    let patient_id = found.as_ref().map(&patient_of);
    state
        .audit
        .record(Event { actor_id: &user.id, action, resource, resource_id: Some(id), patient_id, outcome })
        .await?;
    match (outcome, found) {
        (Outcome::Allowed, Some(item)) => Ok(item),
        _ => Err(ApiError::not_found(resource)),
    }
}

/// Read one record.
#[utoipa::path(get, path = "/v1/records/{id}", tag = "records", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Record id")),
    responses(
        (status = 200, description = "The record", body = Record),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such record, or no access", body = ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, user: AuthUser, IdPath(id): IdPath) -> ApiResult<axum::Json<Record>> {
    load_checked(&state, &user, &id_str(id), Action::Read).await.map(axum::Json)
}

/// List a patient's records, newest first.
#[utoipa::path(get, path = "/v1/records", tag = "records", security(("bearer" = [])),
    params(RecordFilter),
    responses(
        (status = 200, description = "A page of records", body = RecordList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "No access to this patient", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(filter): ApiQuery<RecordFilter>,
) -> ApiResult<axum::Json<RecordList>> {
    let (limit, offset) = Page { limit: filter.limit, offset: filter.offset }.resolve()?;
    let patient_id = list_patient(&state, &user, filter.patient_id, "record").await?;
    let kind = filter.kind.map(RecordKind::as_str);
    let rows: Vec<RecordRow> = state
        .db
        .timed(
            "record_list",
            sqlx::query_as(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE patient_id = $1 AND ($2 IS NULL OR kind = $2) \
                 ORDER BY created_at DESC, id DESC LIMIT $3 OFFSET $4"
            ))
            .bind(&patient_id)
            .bind(kind)
            .bind(limit)
            .bind(offset)
            .fetch_all(state.db.pool()),
        )
        .await?;
    let items = rows.into_iter().map(record_out).collect::<ApiResult<Vec<_>>>()?;
    let next_offset = next_offset(items.len(), limit, offset);
    Ok(axum::Json(RecordList { items, next_offset }))
}

/// Replace a record's content.
#[utoipa::path(put, path = "/v1/records/{id}", tag = "records", request_body = RecordUpdate, security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Record id")),
    responses(
        (status = 200, description = "The updated record", body = Record),
        (status = 400, description = "Invalid id or malformed JSON", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such record, or no access", body = ErrorBody),
        (status = 413, description = "Body too large", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "Invalid field", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
    ApiJson(input): ApiJson<RecordUpdate>,
) -> ApiResult<axum::Json<Record>> {
    let content = validate(input.kind, input.code, input.value, input.unit, input.text, input.observed_at.as_deref())?;
    let current = load_checked(&state, &user, &id_str(id), Action::Update).await?;
    if current.kind != input.kind {
        return Err(ApiError::validation("`kind` cannot change"));
    }
    let now = now_ms();
    state
        .db
        .timed(
            "record_update",
            sqlx::query("UPDATE records SET code = $1, value = $2, unit = $3, text = $4, observed_at = $5, updated_at = $6 WHERE id = $7")
                .bind(content.code.as_deref())
                .bind(content.value)
                .bind(content.unit.as_deref())
                .bind(content.text.as_deref())
                .bind(content.observed_at)
                .bind(now)
                .bind(&current.id)
                .execute(state.db.writer()),
        )
        .await?;
    let mut record =
        record_from(current.id, current.patient_id, current.author_id, current.kind, content, current.report_id, now);
    record.created_at = current.created_at;
    Ok(axum::Json(record))
}

/// Delete a record.
#[utoipa::path(delete, path = "/v1/records/{id}", tag = "records", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Record id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such record, or no access", body = ErrorBody),
    ))]
pub async fn delete(State(state): State<AppState>, user: AuthUser, IdPath(id): IdPath) -> ApiResult<StatusCode> {
    let current = load_checked(&state, &user, &id_str(id), Action::Delete).await?;
    state
        .db
        .timed(
            "record_delete",
            sqlx::query("DELETE FROM records WHERE id = $1").bind(&current.id).execute(state.db.writer()),
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
