//! Silences (table `silences`): alerts matching every matcher of a silence between its
//! `starts_at` (inclusive) and `ends_at` (exclusive) are not notified.
//!
//! As in Alertmanager: a silence needs at least one matcher, and at least one matcher that
//! does not match the empty string (a silence must not match every alert); a start in the
//! past becomes "now"; the end must be after the start and in the future; expiring sets the
//! end to "now" (and the start too, for a silence not yet started), after which it no
//! longer mutes anything and is listed as expired until pruned. `created_by` and `comment`
//! are required. Matchers are stored in Alertmanager's API form (JSON).

use sqlx::Row;
use warden_rules::labels::Labels;

use super::{Store, StoreError, run};
use crate::notify::matcher::{ApiMatcher, Matcher};

const TABLE: &str = "silences";

/// Most silences not yet expired; creating more is refused.
pub const MAX_SILENCES: i64 = 10_000;

/// Most matchers of one silence.
pub const MAX_MATCHERS: usize = 64;

/// Longest `comment` (bytes).
pub const MAX_COMMENT: usize = 4096;

/// Longest `created_by` (bytes).
pub const MAX_CREATED_BY: usize = 256;

/// Where a silence is in its life at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SilenceState {
    /// Not started yet.
    Pending,
    /// Muting.
    Active,
    /// Ended or expired.
    Expired,
}

/// A stored silence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Silence {
    /// UUID.
    pub id: String,
    /// All must match for the silence to mute an alert.
    pub matchers: Vec<Matcher>,
    /// Start (ms, inclusive).
    pub starts_at: i64,
    /// End (ms, exclusive).
    pub ends_at: i64,
    /// Who created it.
    pub created_by: String,
    /// Why.
    pub comment: String,
    /// Last change (ms).
    pub updated_at: i64,
}

impl Silence {
    /// The state at `now_ms`.
    pub fn state(&self, now_ms: i64) -> SilenceState {
        if now_ms >= self.ends_at {
            SilenceState::Expired
        } else if now_ms < self.starts_at {
            SilenceState::Pending
        } else {
            SilenceState::Active
        }
    }

    /// Whether the silence mutes an alert with `labels` at `now_ms`.
    pub fn mutes(&self, labels: &Labels, now_ms: i64) -> bool {
        self.state(now_ms) == SilenceState::Active && self.matchers.iter().all(|m| m.matches(labels))
    }
}

/// What a new silence is made of.
#[derive(Clone, Debug)]
pub struct NewSilence {
    /// Matchers (see the module documentation for what is required).
    pub matchers: Vec<Matcher>,
    /// Start (ms); a time in the past means now.
    pub starts_at: i64,
    /// End (ms).
    pub ends_at: i64,
    /// Who creates it.
    pub created_by: String,
    /// Why.
    pub comment: String,
}

fn invalid(field: &'static str, reason: &str) -> StoreError {
    StoreError::Invalid { field, reason: reason.to_owned() }
}

impl NewSilence {
    /// Checks the silence as Alertmanager does (see the module documentation).
    pub fn validate(&self, now_ms: i64) -> Result<(), StoreError> {
        if self.matchers.is_empty() {
            return Err(invalid("matchers", "at least one matcher is required"));
        }
        if self.matchers.len() > MAX_MATCHERS {
            return Err(invalid("matchers", &format!("at most {MAX_MATCHERS} matchers")));
        }
        if self.matchers.iter().all(|m| m.matches_value("")) {
            return Err(invalid("matchers", "at least one matcher must not match the empty string"));
        }
        if self.ends_at <= self.starts_at.max(now_ms) {
            return Err(invalid("endsAt", "must be after the start and in the future"));
        }
        if self.created_by.trim().is_empty() {
            return Err(invalid("createdBy", "is required"));
        }
        if self.created_by.len() > MAX_CREATED_BY {
            return Err(invalid("createdBy", &format!("longer than {MAX_CREATED_BY} bytes")));
        }
        if self.comment.trim().is_empty() {
            return Err(invalid("comment", "is required"));
        }
        if self.comment.len() > MAX_COMMENT {
            return Err(invalid("comment", &format!("longer than {MAX_COMMENT} bytes")));
        }
        Ok(())
    }
}

fn matchers_to_json(ms: &[Matcher]) -> String {
    let api: Vec<ApiMatcher> = ms.iter().map(ApiMatcher::from_matcher).collect();
    serde_json::to_string(&api).unwrap_or_else(|_| "[]".to_owned())
}

fn matchers_from_json(text: &str) -> Option<Vec<Matcher>> {
    let api: Vec<ApiMatcher> = serde_json::from_str(text).ok()?;
    api.iter().enumerate().map(|(i, m)| m.to_matcher(i + 1).ok()).collect()
}

const COLUMNS: &str = "id, matchers, starts_at, ends_at, created_by, comment, updated_at";

impl Store {
    /// Validates and stores a new silence (its start moved to `now_ms` if earlier), and
    /// returns it with its new id. Refused when [`MAX_SILENCES`] silences are not expired.
    pub async fn create_silence(&self, s: &NewSilence, now_ms: i64) -> Result<Silence, StoreError> {
        s.validate(now_ms)?;
        let q = sqlx::query("SELECT COUNT(*) FROM silences WHERE ends_at > $1").bind(now_ms).fetch_one(self.reader());
        let count: i64 = run("count", TABLE, q)
            .await?
            .try_get(0)
            .map_err(|_| StoreError::Corrupt { table: TABLE, column: "count" })?;
        if count >= MAX_SILENCES {
            return Err(invalid("silences", &format!("at most {MAX_SILENCES} silences may be pending or active")));
        }
        let silence = Silence {
            id: uuid::Uuid::new_v4().to_string(),
            matchers: s.matchers.clone(),
            starts_at: s.starts_at.max(now_ms),
            ends_at: s.ends_at,
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
            updated_at: now_ms,
        };
        let q = sqlx::query(
            "INSERT INTO silences (id, matchers, starts_at, ends_at, created_by, comment, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&silence.id)
        .bind(matchers_to_json(&silence.matchers))
        .bind(silence.starts_at)
        .bind(silence.ends_at)
        .bind(&silence.created_by)
        .bind(&silence.comment)
        .bind(silence.updated_at)
        .execute(self.writer());
        run("insert", TABLE, q).await?;
        Ok(silence)
    }

    /// Expires silence `id` at `now_ms`. Returns false if there is no such silence or it
    /// had already expired.
    pub async fn expire_silence(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let q = sqlx::query(
            "UPDATE silences SET ends_at = $2, starts_at = CASE WHEN starts_at > $2 THEN $2 ELSE starts_at END, \
             updated_at = $2 WHERE id = $1 AND ends_at > $2",
        )
        .bind(id)
        .bind(now_ms)
        .execute(self.writer());
        Ok(run("update", TABLE, q).await?.rows_affected() > 0)
    }

    /// The silence with `id`, if any.
    pub async fn silence(&self, id: &str) -> Result<Option<Silence>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM silences WHERE id = $1");
        let q = sqlx::query(&sql).bind(id).fetch_optional(self.reader());
        run("select", TABLE, q).await?.as_ref().map(decode).transpose()
    }

    /// Silences active at `now_ms` (they mute alerts now).
    pub async fn active_silences(&self, now_ms: i64) -> Result<Vec<Silence>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM silences WHERE starts_at <= $1 AND ends_at > $1 ORDER BY ends_at, id LIMIT $2"
        );
        let q = sqlx::query(&sql).bind(now_ms).bind(MAX_SILENCES).fetch_all(self.reader());
        run("select", TABLE, q).await?.iter().map(decode).collect()
    }

    /// Pending and active silences at `now_ms`, plus expired ones (newest first, at most
    /// `expired_limit`) if `expired_limit > 0`.
    pub async fn list_silences(&self, now_ms: i64, expired_limit: i64) -> Result<Vec<Silence>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM silences WHERE ends_at > $1 ORDER BY starts_at, id LIMIT $2");
        let q = sqlx::query(&sql).bind(now_ms).bind(MAX_SILENCES).fetch_all(self.reader());
        let mut out: Vec<Silence> = run("select", TABLE, q).await?.iter().map(decode).collect::<Result<_, _>>()?;
        if expired_limit > 0 {
            let sql = format!("SELECT {COLUMNS} FROM silences WHERE ends_at <= $1 ORDER BY ends_at DESC, id LIMIT $2");
            let q = sqlx::query(&sql).bind(now_ms).bind(expired_limit.min(MAX_SILENCES)).fetch_all(self.reader());
            for r in run("select", TABLE, q).await?.iter() {
                out.push(decode(r)?);
            }
        }
        Ok(out)
    }

    /// Deletes silences that ended before `ended_before_ms`; returns the number deleted.
    pub async fn prune_silences(&self, ended_before_ms: i64) -> Result<u64, StoreError> {
        let q = sqlx::query("DELETE FROM silences WHERE ends_at < $1").bind(ended_before_ms).execute(self.writer());
        Ok(run("delete", TABLE, q).await?.rows_affected())
    }
}

fn decode(r: &sqlx::any::AnyRow) -> Result<Silence, StoreError> {
    let corrupt = |column| StoreError::Corrupt { table: TABLE, column };
    let s = |c: &'static str| r.try_get::<String, _>(c).map_err(|_| corrupt(c));
    let i = |c: &'static str| r.try_get::<i64, _>(c).map_err(|_| corrupt(c));
    Ok(Silence {
        id: s("id")?,
        matchers: matchers_from_json(&s("matchers")?).ok_or(corrupt("matchers"))?,
        starts_at: i("starts_at")?,
        ends_at: i("ends_at")?,
        created_by: s("created_by")?,
        comment: s("comment")?,
        updated_at: i("updated_at")?,
    })
}
