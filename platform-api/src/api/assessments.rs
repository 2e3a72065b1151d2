//! Risk assessments: compute the documented score ([`crate::risk`]) from a patient's latest
//! vitals and labs, store it, and read it back.

use super::records::{audited_access, list_patient, target_patient};
use super::{Page, id_str, next_offset, rfc3339};
use crate::audit::{Action, Event, Outcome};
use crate::auth::AuthUser;
use crate::db::{new_id, now_ms};
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, IdPath};
use crate::risk::{self, Factor};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A request for an assessment.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AssessmentInput {
    /// The patient (required for clinicians; patients assess themselves).
    #[serde(default)]
    pub patient_id: Option<Uuid>,
}

/// A stored assessment.
#[derive(Debug, Serialize, ToSchema)]
pub struct Assessment {
    /// Assessment id.
    pub id: String,
    /// Patient id.
    pub patient_id: String,
    /// Who asked for it.
    pub author_id: String,
    /// Total points.
    pub score: i64,
    /// `low`, `moderate` or `high`.
    pub category: String,
    /// What contributed.
    pub factors: Vec<Factor>,
    /// Inputs with no data.
    pub missing: Vec<String>,
    /// Model name and version.
    pub model: String,
    /// When computed, RFC 3339.
    pub created_at: String,
}

/// A page of assessments.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssessmentList {
    /// Assessments, newest first.
    pub items: Vec<Assessment>,
    /// Offset of the next page, if there may be one.
    pub next_offset: Option<i64>,
}

/// Filter of the assessment list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AssessmentFilter {
    /// The patient (required for clinicians).
    pub patient_id: Option<Uuid>,
    /// Items per page, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Items to skip.
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u32>,
}

/// Stored form of factors and missing inputs.
#[derive(Serialize, Deserialize)]
struct Stored {
    factors: Vec<Factor>,
    missing: Vec<String>,
}

type AssessmentRow = (String, String, String, i64, String, String, String, i64);

fn assessment_out(
    (id, patient_id, author_id, score, category, factors, model, created_at): AssessmentRow,
) -> ApiResult<Assessment> {
    let stored: Stored = serde_json::from_str(&factors).map_err(|e| ApiError::internal("stored factors", &e))?;
    Ok(Assessment {
        id,
        patient_id,
        author_id,
        score,
        category,
        factors: stored.factors,
        missing: stored.missing,
        model,
        created_at: rfc3339(created_at),
    })
}

const COLUMNS: &str = "id, patient_id, author_id, score, category, factors, model_version, created_at";

/// Compute and store a risk assessment.
#[utoipa::path(post, path = "/v1/assessments", tag = "assessments", request_body = AssessmentInput, security(("bearer" = [])),
    responses(
        (status = 201, description = "Computed", body = Assessment),
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
    ApiJson(input): ApiJson<AssessmentInput>,
) -> ApiResult<Response> {
    let (patient_id, _, _) = target_patient(&state, &user, input.patient_id, "assessment").await?;
    // The latest value per code; 1000 newest measurements is far more than any code needs.
    let rows: Vec<(String, f64, String)> = state
        .db
        .timed(
            "latest_measurements",
            sqlx::query_as(
                "SELECT code, value, unit FROM records WHERE patient_id = $1 AND kind IN ('vital', 'lab') \
                 AND code IS NOT NULL AND value IS NOT NULL AND unit IS NOT NULL \
                 ORDER BY observed_at DESC, created_at DESC LIMIT 1000",
            )
            .bind(&patient_id)
            .fetch_all(state.db.pool()),
        )
        .await?;
    let mut latest = risk::Latest::new();
    for (code, value, unit) in rows {
        latest.entry(code).or_insert((value, unit));
    }
    let score = risk::assess(&latest);
    let stored = serde_json::to_string(&Stored { factors: score.factors.clone(), missing: score.missing.clone() })
        .map_err(|e| ApiError::internal("encode factors", &e))?;
    let id = new_id();
    let now = now_ms();
    state
        .db
        .timed(
            "assessment_insert",
            sqlx::query(&format!("INSERT INTO assessments ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"))
                .bind(&id)
                .bind(&patient_id)
                .bind(&user.id)
                .bind(score.score)
                .bind(score.category)
                .bind(&stored)
                .bind(risk::MODEL)
                .bind(now)
                .execute(state.db.writer()),
        )
        .await?;
    state
        .audit
        .record(Event {
            actor_id: &user.id,
            action: Action::Create,
            resource: "assessment",
            resource_id: Some(&id),
            patient_id: Some(&patient_id),
            outcome: Outcome::Allowed,
        })
        .await?;
    let out = Assessment {
        id,
        patient_id,
        author_id: user.id,
        score: score.score,
        category: score.category.to_owned(),
        factors: score.factors,
        missing: score.missing,
        model: risk::MODEL.to_owned(),
        created_at: rfc3339(now),
    };
    Ok((StatusCode::CREATED, axum::Json(out)).into_response())
}

/// List a patient's assessments.
#[utoipa::path(get, path = "/v1/assessments", tag = "assessments", security(("bearer" = [])), params(AssessmentFilter),
    responses(
        (status = 200, description = "A page of assessments", body = AssessmentList),
        (status = 400, description = "Invalid query", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 403, description = "No access to this patient", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    user: AuthUser,
    ApiQuery(filter): ApiQuery<AssessmentFilter>,
) -> ApiResult<axum::Json<AssessmentList>> {
    let (limit, offset) = Page { limit: filter.limit, offset: filter.offset }.resolve()?;
    let patient_id = list_patient(&state, &user, filter.patient_id, "assessment").await?;
    let rows: Vec<AssessmentRow> = state
        .db
        .timed(
            "assessment_list",
            sqlx::query_as(&format!(
                "SELECT {COLUMNS} FROM assessments WHERE patient_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
            ))
            .bind(&patient_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(state.db.pool()),
        )
        .await?;
    let items = rows.into_iter().map(assessment_out).collect::<ApiResult<Vec<_>>>()?;
    let next_offset = next_offset(items.len(), limit, offset);
    Ok(axum::Json(AssessmentList { items, next_offset }))
}

/// Read one assessment.
#[utoipa::path(get, path = "/v1/assessments/{id}", tag = "assessments", security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Assessment id")),
    responses(
        (status = 200, description = "The assessment", body = Assessment),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 401, description = "No valid token", body = ErrorBody),
        (status = 404, description = "No such assessment, or no access", body = ErrorBody),
    ))]
pub async fn get(
    State(state): State<AppState>,
    user: AuthUser,
    IdPath(id): IdPath,
) -> ApiResult<axum::Json<Assessment>> {
    let id = id_str(id);
    let row: Option<AssessmentRow> = state
        .db
        .timed(
            "assessment_by_id",
            sqlx::query_as(&format!("SELECT {COLUMNS} FROM assessments WHERE id = $1"))
                .bind(&id)
                .fetch_optional(state.db.pool()),
        )
        .await?;
    let assessment = row.map(assessment_out).transpose()?;
    audited_access(&state, &user, Action::Read, "assessment", &id, assessment, |a| &a.patient_id).await.map(axum::Json)
}
