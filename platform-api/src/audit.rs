//! The audit trail: every read or write of a health record (records, lab reports, risk
//! assessments), allowed or refused, is one row in `audit_log`: who, what, when, outcome.
//!
//! Rows hold ids only, never record contents, so the trail itself carries no PHI beyond the
//! fact of access. A request whose access cannot be audited fails: unaudited access to
//! health data is worse than an error.
//!
//! Writes are group-committed: requests hand their row to one writer task over a bounded
//! channel (a full channel makes requests wait, it never grows), the writer inserts every
//! row waiting at that moment in one statement, and each request continues only once its
//! row is committed. Under load this turns thousands of commits a second into a few
//! hundred, which is what lets SQLite's single writer keep up.

use crate::db::{Db, new_id, now_ms};
use crate::error::{ApiError, ApiResult};
use crate::telemetry::Metrics;
use axum::http::StatusCode;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch};
use utoipa::ToSchema;

/// Rows waiting for the writer, at most.
const QUEUE: usize = 4096;
/// Rows per statement, at most (8 parameters each, within both backends' limits).
const BATCH: usize = 256;

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

/// A row waiting to be written, and who to tell when it is.
struct Pending {
    row: [Option<String>; 6],
    at: i64,
    outcome: Outcome,
    done: oneshot::Sender<bool>,
}

/// Hands audit rows to the writer task.
#[derive(Clone)]
pub struct AuditLog {
    queue: mpsc::Sender<Pending>,
    metrics: Arc<Metrics>,
}

impl AuditLog {
    /// Starts the writer task; it stops, after writing what is queued, when `stop` is set.
    pub fn spawn(db: Db, metrics: Arc<Metrics>, stop: watch::Receiver<bool>) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(writer(db, rx, stop));
        (Self { queue, metrics }, task)
    }

    /// Records one access; returns once the row is committed.
    pub async fn record(&self, e: Event<'_>) -> ApiResult<()> {
        let action = match e.action {
            Action::Read => "read",
            Action::List => "list",
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        };
        let (done, committed) = oneshot::channel();
        let pending = Pending {
            row: [
                Some(new_id()),
                Some(e.actor_id.to_owned()),
                Some(action.to_owned()),
                Some(e.resource.to_owned()),
                e.resource_id.map(str::to_owned),
                e.patient_id.map(str::to_owned),
            ],
            at: now_ms(),
            outcome: e.outcome,
            done,
        };
        let unavailable =
            || ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "audit log unavailable, retry later");
        self.queue.send(pending).await.map_err(|_| unavailable())?;
        if committed.await != Ok(true) {
            return Err(unavailable());
        }
        self.metrics.audit_events.with_label_values(&[e.outcome.as_str()]).inc();
        Ok(())
    }
}

async fn writer(db: Db, mut rx: mpsc::Receiver<Pending>, mut stop: watch::Receiver<bool>) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => {
                if n == 0 {
                    return;
                }
                write(&db, &mut batch).await;
            }
            () = async { let _ = stop.wait_for(|s| *s).await; } => {
                // Refuse new rows, then write every row already queued.
                rx.close();
                while rx.recv_many(&mut batch, BATCH).await > 0 {
                    write(&db, &mut batch).await;
                }
                return;
            }
        }
    }
}

/// Inserts `batch` in one statement and tells each waiter whether its row is stored.
async fn write(db: &Db, batch: &mut Vec<Pending>) {
    let mut sql = String::from(
        "INSERT INTO audit_log (id, actor_id, action, resource, resource_id, patient_id, at, outcome) VALUES ",
    );
    for i in 0..batch.len() {
        let p = i * 8;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6,
            p + 7,
            p + 8
        ));
    }
    let mut query = sqlx::query(&sql);
    for p in batch.iter_mut() {
        // The values are not needed after binding; only `done` is.
        for v in &mut p.row {
            query = query.bind(v.take());
        }
        query = query.bind(p.at).bind(p.outcome.as_str());
    }
    let result = db.timed("audit_insert", query.execute(db.writer())).await;
    if let Err(e) = &result {
        tracing::error!(error = %e, rows = batch.len(), "cannot write audit rows; the requests fail");
    }
    for p in batch.drain(..) {
        let _ = p.done.send(result.is_ok());
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
