//! The audit trail: every read or write of a health record (records, lab reports, risk
//! assessments), allowed or refused, is one row in `audit_log`: who, what, when, outcome.
//!
//! Rows hold ids only, never record contents, so the trail itself carries no PHI beyond the
//! fact of access. A request whose access cannot be audited fails: unaudited access to
//! health data is worse than an error.

use crate::db::{Db, new_id, now_ms};
use crate::error::ApiResult;
use crate::telemetry::Metrics;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// What was done.
#[derive(Debug, Clone, Copy)]
pub enum Action {
    /// One item read.
    Read,
    /// A list read.
    List,
    /// Created.
    Create,
    /// Changed.
    Update,
    /// Deleted.
    Delete,
}

/// How the attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Access was allowed and done.
    Allowed,
    /// Access was refused.
    Denied,
    /// The item did not exist.
    NotFound,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Allowed => "allowed",
            Outcome::Denied => "denied",
            Outcome::NotFound => "not_found",
        }
    }
}

/// One audited access.
pub struct Event<'a> {
    /// The acting user.
    pub actor_id: &'a str,
    /// What was done.
    pub action: Action,
    /// Resource kind: `record`, `report`, `assessment`.
    pub resource: &'static str,
    /// Resource id, when one item.
    pub resource_id: Option<&'a str>,
    /// The patient whose data it is, when known.
    pub patient_id: Option<&'a str>,
    /// How it ended.
    pub outcome: Outcome,
}

/// Writes audit rows.
#[derive(Clone)]
pub struct AuditLog {
    db: Db,
    metrics: Arc<Metrics>,
}

impl AuditLog {
    /// An audit log writing to `db`.
    pub fn new(db: Db, metrics: Arc<Metrics>) -> Self {
        Self { db, metrics }
    }

    /// Records one access.
    pub async fn record(&self, e: Event<'_>) -> ApiResult<()> {
        let action = match e.action {
            Action::Read => "read",
            Action::List => "list",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        };
        self.db
            .timed(
                "audit_insert",
                sqlx::query(
                    "INSERT INTO audit_log (id, at, actor_id, action, resource, resource_id, patient_id, outcome) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(new_id())
                .bind(now_ms())
                .bind(e.actor_id)
                .bind(action)
                .bind(e.resource)
                .bind(e.resource_id)
                .bind(e.patient_id)
                .bind(e.outcome.as_str())
                .execute(self.db.pool()),
            )
            .await?;
        self.metrics.audit_events.with_label_values(&[e.outcome.as_str()]).inc();
        Ok(())
    }
}

/// An audit row as the admin API shows it.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEntry {
    /// Row id.
    pub id: String,
    /// When, epoch milliseconds.
    pub at: i64,
    /// Acting user id.
    pub actor_id: Option<String>,
    /// `read`, `list`, `create`, `update` or `delete`.
    pub action: String,
    /// `record`, `report` or `assessment`.
    pub resource: String,
    /// Resource id.
    pub resource_id: Option<String>,
    /// Patient id.
    pub patient_id: Option<String>,
    /// `allowed`, `denied` or `not_found`.
    pub outcome: String,
}
