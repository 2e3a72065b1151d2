//! Alert state for restoring `for` after a restart (table `alert_state`).
//!
//! The rules crate saves every alerting rule's alerts after each evaluation and loads them
//! once before a group's first evaluation, through its synchronous `AlertStateStore` trait,
//! from inside the evaluation loop. [`AlertStateCache`] implements that trait without ever
//! blocking the loop on the database:
//! - [`AlertStateCache::open`] reads every saved row younger than a maximum age into memory
//!   (older state can no longer be restored: the rules crate's `outage_tolerance`);
//! - `load` answers from memory;
//! - `save` replaces the entry in memory and marks it dirty; a writer task
//!   ([`AlertStateCache::spawn_writer`]) writes dirty entries in one transaction, at most
//!   once per `min_interval`, retrying with backoff after a failure (an entry saved again
//!   meanwhile is written once, with its newest state); on shutdown it writes what is left.
//!
//! So the database lags memory by at most one write interval (plus the time of a failed
//! write): after a crash, restoration sees the state of that moment, and `saved_at` (the
//! time of the evaluation that saved it) tells the rules crate how long the outage was.
//! Saving an empty list where nothing is saved costs nothing.
//!
//! Two agents sharing one PostgreSQL store and evaluating the same rule files save under the
//! same keys; the last writer wins, which is harmless as both evaluate the same data.
//!
//! Rows: one per saved alert, keyed by (`rule_group`, `rule`); labels are a JSON object; a
//! NaN value is stored as NULL.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::Row;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use warden_rules::alerting::{AlertState, AlertStateStore, SavedAlert};
use warden_rules::labels::{Label, Labels};

use super::{Store, StoreError, run};

const TABLE: &str = "alert_state";

/// Rows per multi-row `INSERT` (10 parameters each; far below both backends' limits).
const INSERT_CHUNK: usize = 200;

/// Most rows [`AlertStateCache::open`] loads; saved state beyond it is not restored.
pub const MAX_LOADED_ROWS: i64 = 1_000_000;

/// Longest wait between retries of a failed write.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// How long the writer may take for its last write at shutdown.
const SHUTDOWN_FLUSH: Duration = Duration::from_secs(5);

/// A (rule group, rule) pair.
type Key = (String, String);

impl Store {
    /// Replaces the saved alerts of `rule` in `group`.
    pub async fn save_alert_state(&self, group: &str, rule: &str, alerts: &[SavedAlert]) -> Result<(), StoreError> {
        self.save_alert_states(&[((group.to_owned(), rule.to_owned()), alerts.to_vec())]).await
    }

    /// Replaces the saved alerts of several (group, rule) pairs in one transaction.
    pub async fn save_alert_states(&self, entries: &[(Key, Vec<SavedAlert>)]) -> Result<(), StoreError> {
        let mut tx = run("begin", TABLE, self.writer().begin()).await?;
        for ((group, rule), alerts) in entries {
            run(
                "delete",
                TABLE,
                sqlx::query("DELETE FROM alert_state WHERE rule_group = $1 AND rule = $2")
                    .bind(group)
                    .bind(rule)
                    .execute(&mut *tx),
            )
            .await?;
            for chunk in alerts.chunks(INSERT_CHUNK) {
                let mut sql = String::from(
                    "INSERT INTO alert_state (rule_group, rule, labels, state, active_at, fired_at, \
                     keep_firing_since, resolved_at, value, saved_at) VALUES ",
                );
                for i in 0..chunk.len() {
                    let b = i * 10;
                    if i > 0 {
                        sql.push_str(", ");
                    }
                    sql.push('(');
                    for j in 1..=10 {
                        if j > 1 {
                            sql.push_str(", ");
                        }
                        sql.push_str(&format!("${}", b + j));
                    }
                    sql.push(')');
                }
                let mut q = sqlx::query(&sql);
                for a in chunk {
                    q = q
                        .bind(group)
                        .bind(rule)
                        .bind(labels_to_json(&a.labels))
                        .bind(a.state.as_str())
                        .bind(a.active_at)
                        .bind(a.fired_at)
                        .bind(a.keep_firing_since)
                        .bind(a.resolved_at)
                        .bind(if a.value.is_nan() { None } else { Some(a.value) })
                        .bind(a.saved_at);
                }
                run("insert", TABLE, q.execute(&mut *tx)).await?;
            }
        }
        run("commit", TABLE, tx.commit()).await
    }

    /// The saved alerts of `rule` in `group` (empty if none).
    pub async fn load_alert_state(&self, group: &str, rule: &str) -> Result<Vec<SavedAlert>, StoreError> {
        let rows = run(
            "select",
            TABLE,
            sqlx::query(
                "SELECT rule_group, rule, labels, state, active_at, fired_at, keep_firing_since, resolved_at, \
                 value, saved_at FROM alert_state WHERE rule_group = $1 AND rule = $2 LIMIT $3",
            )
            .bind(group)
            .bind(rule)
            .bind(MAX_LOADED_ROWS)
            .fetch_all(self.reader()),
        )
        .await?;
        rows.iter().map(|r| decode(r).map(|(_, a)| a)).collect()
    }

    /// Every saved alert with `saved_at >= saved_since_ms`, by (group, rule); at most
    /// [`MAX_LOADED_ROWS`] rows.
    pub async fn load_all_alert_state(&self, saved_since_ms: i64) -> Result<HashMap<Key, Vec<SavedAlert>>, StoreError> {
        let rows = run(
            "select",
            TABLE,
            sqlx::query(
                "SELECT rule_group, rule, labels, state, active_at, fired_at, keep_firing_since, resolved_at, \
                 value, saved_at FROM alert_state WHERE saved_at >= $1 LIMIT $2",
            )
            .bind(saved_since_ms)
            .bind(MAX_LOADED_ROWS)
            .fetch_all(self.reader()),
        )
        .await?;
        let mut out: HashMap<Key, Vec<SavedAlert>> = HashMap::new();
        for r in &rows {
            let (key, alert) = decode(r)?;
            out.entry(key).or_default().push(alert);
        }
        Ok(out)
    }

    /// Deletes alert state saved before `saved_before_ms`; returns the number of rows.
    pub async fn prune_alert_state(&self, saved_before_ms: i64) -> Result<u64, StoreError> {
        let q = sqlx::query("DELETE FROM alert_state WHERE saved_at < $1").bind(saved_before_ms).execute(self.writer());
        Ok(run("delete", TABLE, q).await?.rows_affected())
    }
}

/// Labels as a JSON object (sorted by name, as `Labels` is).
pub(crate) fn labels_to_json(labels: &Labels) -> String {
    let map: serde_json::Map<String, serde_json::Value> =
        labels.iter().map(|l| (l.name.clone(), serde_json::Value::String(l.value.clone()))).collect();
    serde_json::Value::Object(map).to_string()
}

/// Labels from a JSON object of strings.
pub(crate) fn labels_from_json(text: &str) -> Option<Labels> {
    let map: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text).ok()?;
    let mut out = Vec::with_capacity(map.len());
    for (name, value) in map {
        let serde_json::Value::String(value) = value else { return None };
        out.push(Label { name, value });
    }
    Some(Labels::new(out))
}

fn decode(r: &sqlx::any::AnyRow) -> Result<(Key, SavedAlert), StoreError> {
    let corrupt = |column| StoreError::Corrupt { table: TABLE, column };
    let get_str = |c: &'static str| r.try_get::<String, _>(c).map_err(|_| corrupt(c));
    let get_i64 = |c: &'static str| r.try_get::<i64, _>(c).map_err(|_| corrupt(c));
    let get_opt = |c: &'static str| r.try_get::<Option<i64>, _>(c).map_err(|_| corrupt(c));
    let labels = labels_from_json(&get_str("labels")?).ok_or(corrupt("labels"))?;
    let state = AlertState::parse(&get_str("state")?).ok_or(corrupt("state"))?;
    let value = r.try_get::<Option<f64>, _>("value").map_err(|_| corrupt("value"))?.unwrap_or(f64::NAN);
    let alert = SavedAlert {
        labels,
        state,
        active_at: get_i64("active_at")?,
        fired_at: get_opt("fired_at")?,
        keep_firing_since: get_opt("keep_firing_since")?,
        resolved_at: get_opt("resolved_at")?,
        value,
        saved_at: get_i64("saved_at")?,
    };
    Ok(((get_str("rule_group")?, get_str("rule")?), alert))
}

/// The rules crate's `AlertStateStore` over the [`Store`]: answers from memory, writes
/// behind (see the module documentation).
pub struct AlertStateCache {
    store: Store,
    inner: Mutex<CacheInner>,
    wake: Notify,
}

#[derive(Default)]
struct CacheInner {
    map: HashMap<Key, Vec<SavedAlert>>,
    dirty: BTreeSet<Key>,
}

impl std::fmt::Debug for AlertStateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertStateCache").finish_non_exhaustive()
    }
}

impl AlertStateCache {
    /// Loads every alert state saved at or after `now_ms - max_age_ms` (pass the rules'
    /// `outage_tolerance`: older state would not be restored).
    pub async fn open(store: Store, now_ms: i64, max_age_ms: i64) -> Result<Arc<AlertStateCache>, StoreError> {
        let map = store.load_all_alert_state(now_ms.saturating_sub(max_age_ms)).await?;
        Ok(Arc::new(AlertStateCache {
            store,
            inner: Mutex::new(CacheInner { map, dirty: BTreeSet::new() }),
            wake: Notify::new(),
        }))
    }

    /// Number of (group, rule) entries saved but not yet written.
    pub fn pending(&self) -> usize {
        self.lock().dirty.len()
    }

    /// Writes every dirty entry now, in one transaction. Returns how many were written; on
    /// failure they stay dirty.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let batch: Vec<(Key, Vec<SavedAlert>)> = {
            let mut inner = self.lock();
            let keys = std::mem::take(&mut inner.dirty);
            keys.into_iter()
                .map(|k| {
                    let v = inner.map.get(&k).cloned().unwrap_or_default();
                    (k, v)
                })
                .collect()
        };
        if batch.is_empty() {
            return Ok(0);
        }
        match self.store.save_alert_states(&batch).await {
            Ok(()) => Ok(batch.len()),
            Err(e) => {
                let mut inner = self.lock();
                inner.dirty.extend(batch.into_iter().map(|(k, _)| k));
                Err(e)
            }
        }
    }

    /// Starts the writer: it writes dirty entries when woken by a save, at most once per
    /// `min_interval`, backs off after failures (up to 30 s), and on `cancel` writes what is
    /// left (for at most 5 s) and ends.
    pub fn spawn_writer(self: &Arc<Self>, cancel: CancellationToken, min_interval: Duration) -> JoinHandle<()> {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            let mut backoff = min_interval.max(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = this.wake.notified() => {}
                }
                let delay = match this.flush().await {
                    Ok(_) => {
                        backoff = min_interval.max(Duration::from_millis(100));
                        min_interval
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, pending = this.pending(), "writing alert state failed, will retry");
                        // Retry even if no new save wakes the writer.
                        this.wake.notify_one();
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                        backoff
                    }
                };
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
            match tokio::time::timeout(SHUTDOWN_FLUSH, this.flush()).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "writing alert state at shutdown failed"),
                Err(_) => tracing::warn!("writing alert state at shutdown timed out"),
            }
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CacheInner> {
        // A panic while holding the lock cannot leave the map half-updated (each operation
        // is one insert or take), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl AlertStateStore for AlertStateCache {
    fn save(&self, group: &str, rule: &str, alerts: &[SavedAlert]) -> Result<(), String> {
        let key = (group.to_owned(), rule.to_owned());
        {
            let mut inner = self.lock();
            let unchanged_empty = alerts.is_empty() && inner.map.get(&key).is_none_or(|v| v.is_empty());
            if unchanged_empty {
                return Ok(());
            }
            inner.map.insert(key.clone(), alerts.to_vec());
            inner.dirty.insert(key);
        }
        self.wake.notify_one();
        Ok(())
    }

    fn load(&self, group: &str, rule: &str) -> Result<Vec<SavedAlert>, String> {
        let inner = self.lock();
        Ok(inner.map.get(&(group.to_owned(), rule.to_owned())).cloned().unwrap_or_default())
    }
}
