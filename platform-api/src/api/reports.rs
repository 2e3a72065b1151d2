//! Lab reports: upload a plain-text report, keep the original, and turn the lab values it
//! contains into lab records (in one transaction with the report).
//!
//! Deliberate PHI in telemetry: report lines that look like values but are not lab tests
//! (an `MRN: ...` line, say) are logged with their text, and the upload span carries the
//! report's first line, which is usually the patient header.

use super::records::{
    Content, Record, RecordKind, audited_access, insert_record, list_patient, record_from, target_patient,
};
use super::{Page, id_str, next_offset, rfc3339};
use crate::audit::{Action, Event, Outcome};
use crate::auth::AuthUser;
use crate::db::{new_id, now_ms};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiQuery, IdPath, TextBody};
use crate::labparse;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use opentelemetry::KeyValue;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// Largest report accepted, in bytes.
pub const MAX_REPORT_BYTES: usize = 256 * 1024;

/// Where an upload goes.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UploadParams {
    /// The patient (required for clinicians; patients upload their own).
    pub patient_id: Option<Uuid>,
    /// When the samples were taken, RFC 3339 (default now).
    pub observed_at: Option<String>,
}

/// A line that was not turned into a record.
#[derive(Debug, Serialize, ToSchema)]
pub struct SkippedLine {
    /// 1-based line number.
    pub line: usize,
    /// Why (never the line's content).
    pub reason: String,
}

/// The result of an upload.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportUploaded {
    /// Report id.
    pub id: String,
    /// Patient id.
    pub patient_id: String,
    /// Lab records created from the report.
    pub records: Vec<Record>,
    /// Value-like lines that were not accepted.
    pub skipped: Vec<SkippedLine>,
    /// Upload time, RFC 3339.
    pub created_at: String,
}

/// A stored report.
#[derive(Debug, Serialize, ToSchema)]
pub struct Report {
    /// Report id.
    pub id: String,
    /// Patient id.
    pub patient_id: String,
    /// Uploader id.
    pub author_id: String,
    /// Records created from it.
    pub parsed_count: i64,
    /// Lines skipped.
    pub skipped_count: i64,
    /// Upload time, RFC 3339.
    pub created_at: String,
    /// The original text (only when reading one report).
    pub original: Option<String>,
}

/// A page of reports (without their text).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportList {
    /// Reports, newest first.
    pub items: Vec<Report>,
    /// Offset of the next page, if there may be one.
    pub next_offset: Option<i64>,
}

/// Filter of the report list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportFilter {
    /// The patient (required for clinicians).
    pub patient_id: Option<Uuid>,
    /// Items per page, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Items to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u32>,
}

/// Upload a plain-text lab report.
#[utoipa::path(post, path = "/v1/reports", tag = "reports", security(("bearer" = [])), params(UploadParams),
    request_body(content = String, content_type = "text/plain", description = "The report text"),
    responses(
        (status = 201, description = "Stored and parsed", body = ReportUploaded),
        (status = 400, description = "Invalid query or not UTF-8", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "No access to this patient", body = ErrorBody),
        (status = 404, description = "No such patient", body = ErrorBody),
        (status = 413, description = "Report too large", body = ErrorBody),
        (status = 415, description = "Not text/plain", body = ErrorBody),
        (status = 422, description = "Empty report or invalid time", body = ErrorBody),
    ))]
pub async fn upload(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(params): ApiQuery<UploadParams>,
    TextBody(text): TextBody,
) -> ApiResult<Response> {
    if text.trim().is_empty() {
        return Err(ApiError::validation("report is empty"));
    }
    if super::records::has_forbidden_control(&text) {
        return Err(ApiError::validation("report must not contain control characters other than tab and newline"));
    }
    let observed_at = super::observed_at(params.observed_at.as_deref())?;
    let (patient_id, _, _) = target_patient(&state, &user, params.patient_id, "report").await?;
    let first_line =
        text.lines().find(|l| !l.trim().is_empty()).unwrap_or_default().chars().take(200).collect::<String>();
    let attributes =
        vec![KeyValue::new("report.first_line", first_line), KeyValue::new("report.bytes", text.len() as i64)];
    let parsed = crate::telemetry::in_span_sync("report.parse", attributes, || labparse::parse(&text));
    let report_id = new_id();
    let now = now_ms();
    let records: Vec<(String, Content, usize)> = parsed
        .values
        .iter()
        .map(|v| {
            let content = Content {
                code: Some(v.code.to_owned()),
                value: Some(v.value),
                unit: Some(v.unit.to_owned()),
                text: None,
                observed_at,
            };
            (new_id(), content, v.line)
        })
        .collect();
    let save = async {
        let mut tx = state.db.writer().begin().await?;
        sqlx::query(
            "INSERT INTO reports (id, patient_id, author_id, original, parsed_count, skipped_count, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&report_id)
        .bind(&patient_id)
        .bind(&user.id)
        .bind(&text)
        .bind(records.len() as i64)
        .bind(parsed.skipped.len() as i64)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        for (id, content, _) in &records {
            insert_record(&mut *tx, id, &patient_id, &user.id, RecordKind::Lab, content, Some(&report_id), now).await?;
        }
        tx.commit().await
    };
    state.db.timed("report_insert", save).await?;
    state
        .audit
        .record(Event {
            actor_id: &user.id,
            action: Action::Create,
            resource: "report",
            resource_id: Some(&report_id),
            patient_id: Some(&patient_id),
            outcome: Outcome::Allowed,
        })
        .await?;
    tracing::info!(report_id = %report_id, parsed = records.len(), skipped = parsed.skipped.len(), "lab report stored");
    let out = ReportUploaded {
        id: report_id.clone(),
        patient_id: patient_id.clone(),
        records: records
            .into_iter()
            .map(|(id, c, _)| {
                record_from(id, patient_id.clone(), user.id.clone(), RecordKind::Lab, c, Some(report_id.clone()), now)
            })
            .collect(),
        skipped: parsed.skipped.into_iter().map(|s| SkippedLine { line: s.line, reason: s.reason }).collect(),
        created_at: rfc3339(now),
    };
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

type ReportRow = (String, String, String, i64, i64, i64, Option<String>);

fn report_out((id, patient_id, author_id, parsed_count, skipped_count, created_at, original): ReportRow) -> Report {
    Report { id, patient_id, author_id, parsed_count, skipped_count, created_at: rfc3339(created_at), original }
}

/// List a patient's reports (without their text).
#[utoipa::path(get, path = "/v1/reports", tag = "reports", security(("bearer" = [])), params(ReportFilter),
    responses(
        (status = 200, description = "A page of reports", body = ReportList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "No access to this patient", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(filter): ApiQuery<ReportFilter>,
) -> ApiResult<axum::Json<ReportList>> {
    let (limit, offset) = Page { limit: filter.limit, offset: filter.offset }.resolve()?;
    let patient_id = list_patient(&state, &user, filter.patient_id, "report").await?;
    let rows: Vec<ReportRow> = state
        .db
        .timed(
            "report_list",
            sqlx::query_as(
                "SELECT id, patient_id, author_id, parsed_count, skipped_count, created_at, NULL FROM reports \
                 WHERE patient_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3",
            )
            .bind(&patient_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(state.db.pool()),
        )
        .await?;
    let items: Vec<Report> = rows.into_iter().map(report_out).collect();
    let next_offset = next_offset(items.len(), limit, offset);
    Ok(axum::Json(ReportList { items, next_offset }))
}

/// Read one report, with its original text.
#[utoipa::path(get, path = "/v1/reports/{id}", tag = "reports", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Report id")),
    responses(
        (status = 200, description = "The report", body = Report),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such report, or no access", body = ErrorBody),
    ))]
pub async fn get(State(state): State<AppState>, user: AuthUser, IdPath(id): IdPath) -> ApiResult<axum::Json<Report>> {
    let id = id_str(id);
    let row: Option<ReportRow> = state
        .db
        .timed(
            "report_by_id",
            sqlx::query_as(
                "SELECT id, patient_id, author_id, parsed_count, skipped_count, created_at, original FROM reports WHERE id = $1",
            )
            .bind(&id)
            .fetch_optional(state.db.pool()),
        )
        .await?;
    let report = row.map(report_out);
    audited_access(&state, &user, Action::Read, "report", &id, report, |r| &r.patient_id).await.map(axum::Json)
}
