//! The HTTP API: routes, their request and response types, and the OpenAPI document built
//! from the same handler annotations (so the document cannot drift from the routes).

pub mod admin;
pub mod assessments;
pub mod auth;
pub mod grants;
pub mod ops;
pub mod records;
pub mod reports;

use crate::error::{ApiError, ApiResult};
use serde::Deserialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use utoipa::{IntoParams, Modify, OpenApi};

/// The OpenAPI document's fixed parts; paths are added by the router.
#[derive(OpenApi)]
#[openapi(
    info(title = "platform-api", description = "The platform's health-records API."),
    modifiers(&BearerAuth),
    tags(
        (name = "auth", description = "Accounts and tokens"),
        (name = "records", description = "Vitals, lab results and notes"),
        (name = "grants", description = "A patient's grants of access to clinicians"),
        (name = "reports", description = "Plain-text lab reports"),
        (name = "assessments", description = "Risk assessments"),
        (name = "admin", description = "User management, audit log and fault injection"),
        (name = "ops", description = "Health, readiness, metrics"),
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// Paging of list endpoints.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items per page, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// Items to skip (default 0, at most 1000000).
    #[param(minimum = 0, maximum = 1000000)]
    pub offset: Option<u32>,
}

impl Page {
    /// Validated `(limit, offset)`.
    pub fn resolve(&self) -> ApiResult<(i64, i64)> {
        let limit = self.limit.unwrap_or(20);
        if !(1..=100).contains(&limit) {
            return Err(ApiError::bad_request("invalid_query", "`limit` must be between 1 and 100"));
        }
        let offset = self.offset.unwrap_or(0);
        if offset > 1_000_000 {
            return Err(ApiError::bad_request("invalid_query", "`offset` must be at most 1000000"));
        }
        Ok((i64::from(limit), i64::from(offset)))
    }
}

/// The next page's offset, if a full page came back.
pub fn next_offset(len: usize, limit: i64, offset: i64) -> Option<i64> {
    (len as i64 == limit).then_some(offset + limit)
}

/// Epoch milliseconds as RFC 3339.
pub fn rfc3339(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Parses an RFC 3339 time into epoch milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    OffsetDateTime::parse(s, &Rfc3339).ok().map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// Checks the time a measurement was taken: RFC 3339, after 1900, at most a day ahead.
pub fn observed_at(raw: Option<&str>) -> ApiResult<i64> {
    let now = crate::db::now_ms();
    let Some(raw) = raw else { return Ok(now) };
    let ms = parse_rfc3339(raw)
        .ok_or_else(|| ApiError::validation("`observed_at` must be an RFC 3339 time, e.g. 2026-01-31T08:00:00Z"))?;
    const YEAR_1900_MS: i64 = -2_208_988_800_000;
    if ms < YEAR_1900_MS || ms > now + 86_400_000 {
        return Err(ApiError::validation("`observed_at` must be after 1900 and not in the future"));
    }
    Ok(ms)
}

/// The path id as the stored string.
pub fn id_str(id: uuid::Uuid) -> String {
    id.hyphenated().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(parse_rfc3339("2026-01-31T08:00:00.250Z"), Some(1_769_846_400_250));
        assert_eq!(rfc3339(1_769_846_400_250), "2026-01-31T08:00:00.25Z");
        assert_eq!(parse_rfc3339("31/01/2026"), None);
        assert!(observed_at(Some("1899-12-31T23:59:59Z")).is_err());
        assert!(observed_at(Some("2999-01-01T00:00:00Z")).is_err());
        assert!(observed_at(Some("2020-01-01T00:00:00+02:00")).is_ok());
    }

    #[test]
    fn paging() {
        assert_eq!(Page { limit: None, offset: None }.resolve().unwrap(), (20, 0));
        assert!(Page { limit: Some(0), offset: None }.resolve().is_err());
        assert!(Page { limit: Some(101), offset: None }.resolve().is_err());
        assert_eq!(next_offset(20, 20, 40), Some(60));
        assert_eq!(next_offset(3, 20, 40), None);
    }
}
