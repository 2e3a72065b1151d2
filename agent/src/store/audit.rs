//! The remediation audit log (table `remediation_audit`): every remediation decision —
//! taken, skipped and why, failed, dry run — one row each.
//!
//! Ids are assigned by the store as `MAX(id) + 1` inside the insert, which is portable across
//! SQLite and PostgreSQL. SQLite runs one write at a time; on PostgreSQL the insert's
//! transaction first takes the advisory lock [`AUDIT_LOCK`] (two-key form, so it cannot
//! collide with single-key locks such as leader election's), so agents sharing the
//! database never pick the same id (a unique violation would still be retried). Ids
//! therefore increase with insertion order. Text fields are cut to
//! fixed lengths (at a character boundary) so one entry stays small: the caller puts only
//! redacted, summarised data in them.

use sqlx::Row;

use super::{Backend, Store, StoreError, run, truncate};

const TABLE: &str = "remediation_audit";

/// Longest `target`, `action` and `decision` (bytes).
pub const MAX_NAME: usize = 256;
/// Longest `reason` (bytes).
pub const MAX_REASON: usize = 1024;
/// Longest `alert` and `detail` (bytes).
pub const MAX_TEXT: usize = 4096;
/// Most records one [`Store::audit_log`] call returns.
pub const MAX_LIMIT: i64 = 10_000;

/// Attempts at an insert that lost an id race.
const INSERT_ATTEMPTS: usize = 8;

/// The PostgreSQL advisory lock (two-key form) held while an id is assigned.
pub const AUDIT_LOCK: (i32, i32) = (0x5744, 1);

/// One remediation decision.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditEntry {
    /// When (ms).
    pub at_ms: i64,
    /// The target's name.
    pub target: String,
    /// `scale_up`, `scale_down`, `scale_to`, `restart`, `exec` or `escalate`.
    pub action: String,
    /// `taken`, `skipped`, `failed` or `dry_run`.
    pub decision: String,
    /// Why.
    pub reason: String,
    /// The alert (`alertname{labels}` or its fingerprint), redacted data only.
    pub alert: String,
    /// Replicas before, for scaling.
    pub from_replicas: Option<i64>,
    /// Replicas after (or asked for), for scaling.
    pub to_replicas: Option<i64>,
    /// More (e.g. a summary of an exec's output), truncated.
    pub detail: Option<String>,
}

/// A stored [`AuditEntry`] with its id.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AuditRecord {
    /// Increasing id.
    pub id: i64,
    /// The entry.
    pub entry: AuditEntry,
}

impl Store {
    /// Appends `e` to the audit log (text fields truncated, see the module documentation)
    /// and returns its id.
    pub async fn record_action(&self, e: &AuditEntry) -> Result<i64, StoreError> {
        for (field, v) in [("target", &e.target), ("action", &e.action), ("decision", &e.decision)] {
            if v.is_empty() {
                return Err(StoreError::Invalid { field, reason: "is required".to_owned() });
            }
        }
        let target = truncate(&e.target, MAX_NAME);
        let action = truncate(&e.action, MAX_NAME);
        let decision = truncate(&e.decision, MAX_NAME);
        let reason = truncate(&e.reason, MAX_REASON);
        let alert = truncate(&e.alert, MAX_TEXT);
        let detail = e.detail.as_deref().map(|d| truncate(d, MAX_TEXT));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = async {
                let mut tx = run("begin", TABLE, self.writer().begin()).await?;
                if self.backend() == Backend::Postgres {
                    // Serialises id assignment among agents sharing the database; released at
                    // commit. The two-key form does not overlap single-key advisory locks.
                    let lock = sqlx::query("SELECT pg_advisory_xact_lock($1, $2)")
                        .bind(AUDIT_LOCK.0)
                        .bind(AUDIT_LOCK.1)
                        .execute(&mut *tx);
                    run("lock", TABLE, lock).await?;
                }
                let q = sqlx::query(
                    "INSERT INTO remediation_audit (id, at_ms, target, action, decision, reason, alert, \
                     from_replicas, to_replicas, detail) SELECT COALESCE(MAX(id), 0) + 1, $1, $2, $3, $4, $5, $6, \
                     $7, $8, $9 FROM remediation_audit RETURNING id",
                )
                .bind(e.at_ms)
                .bind(&target)
                .bind(&action)
                .bind(&decision)
                .bind(&reason)
                .bind(&alert)
                .bind(e.from_replicas)
                .bind(e.to_replicas)
                .bind(&detail)
                .fetch_one(&mut *tx);
                let row = run("insert", TABLE, q).await?;
                run("commit", TABLE, tx.commit()).await?;
                row.try_get::<i64, _>(0).map_err(|_| StoreError::Corrupt { table: TABLE, column: "id" })
            }
            .await;
            match result {
                Err(StoreError::Query { source: sqlx::Error::Database(db), .. })
                    if db.is_unique_violation() && attempt < INSERT_ATTEMPTS => {}
                other => return other,
            }
        }
    }

    /// Audit records, newest first: of `target` only if given, at or after `since_ms` if
    /// given, at most `limit` (clamped to 1..=[`MAX_LIMIT`]).
    pub async fn audit_log(
        &self,
        target: Option<&str>,
        since_ms: Option<i64>,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut sql = String::from(
            "SELECT id, at_ms, target, action, decision, reason, alert, from_replicas, to_replicas, detail \
             FROM remediation_audit",
        );
        let mut conds = Vec::new();
        let mut n = 0;
        if target.is_some() {
            n += 1;
            conds.push(format!("target = ${n}"));
        }
        if since_ms.is_some() {
            n += 1;
            conds.push(format!("at_ms >= ${n}"));
        }
        if !conds.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conds.join(" AND "));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", n + 1));
        let mut q = sqlx::query(&sql);
        if let Some(t) = target {
            q = q.bind(t);
        }
        if let Some(s) = since_ms {
            q = q.bind(s);
        }
        q = q.bind(limit.clamp(1, MAX_LIMIT));
        let rows = run("select", TABLE, q.fetch_all(self.reader())).await?;
        rows.iter().map(decode).collect()
    }

    /// Deletes audit records written before `before_ms`; returns the number deleted.
    pub async fn prune_audit_log(&self, before_ms: i64) -> Result<u64, StoreError> {
        let q = sqlx::query("DELETE FROM remediation_audit WHERE at_ms < $1").bind(before_ms).execute(self.writer());
        Ok(run("delete", TABLE, q).await?.rows_affected())
    }
}

fn decode(r: &sqlx::any::AnyRow) -> Result<AuditRecord, StoreError> {
    let corrupt = |column| StoreError::Corrupt { table: TABLE, column };
    let s = |c: &'static str| r.try_get::<String, _>(c).map_err(|_| corrupt(c));
    let i = |c: &'static str| r.try_get::<i64, _>(c).map_err(|_| corrupt(c));
    let oi = |c: &'static str| r.try_get::<Option<i64>, _>(c).map_err(|_| corrupt(c));
    Ok(AuditRecord {
        id: i("id")?,
        entry: AuditEntry {
            at_ms: i("at_ms")?,
            target: s("target")?,
            action: s("action")?,
            decision: s("decision")?,
            reason: s("reason")?,
            alert: s("alert")?,
            from_replicas: oi("from_replicas")?,
            to_replicas: oi("to_replicas")?,
            detail: r.try_get::<Option<String>, _>("detail").map_err(|_| corrupt("detail"))?,
        },
    })
}
