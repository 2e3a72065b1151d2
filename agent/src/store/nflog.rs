//! The notification log (table `notification_log`): Alertmanager's nflog.
//!
//! One entry per (aggregation group key, receiver, integration): the fingerprints of the
//! alerts last sent as firing and as resolved, and when. The notifier writes an entry after
//! every successful send and reads it before deciding whether to send: a group whose firing
//! alerts are a subset of the logged ones and whose resolved alerts were already sent is not
//! sent again until `repeat_interval` has passed since `sent_at`. Because the log lives in
//! the store, that holds across restarts, and across agents sharing a PostgreSQL store.
//!
//! An entry expires at `expires_at` (the notifier sets it to the send time plus a retention
//! that exceeds every `repeat_interval`); expired entries are ignored and pruned.

use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Store, StoreError, run};

const TABLE: &str = "notification_log";

/// Most entries [`Store::notification_log`] returns.
pub const MAX_ENTRIES: i64 = 100_000;

/// The last notification of one group to one receiver integration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NflogEntry {
    /// The aggregation group key (`{route key}:{group labels}`).
    pub group_key: String,
    /// The receiver name.
    pub receiver: String,
    /// The integration within the receiver (e.g. `webhook[0]`).
    pub integration: String,
    /// Fingerprints of the alerts sent as firing, sorted and unique.
    pub firing: Vec<u64>,
    /// Fingerprints of the alerts sent as resolved, sorted and unique.
    pub resolved: Vec<u64>,
    /// When it was sent (ms).
    pub sent_at: i64,
    /// When the entry stops counting (ms).
    pub expires_at: i64,
}

impl NflogEntry {
    /// An entry with `firing` and `resolved` sorted and deduplicated.
    pub fn new(
        group_key: &str,
        receiver: &str,
        integration: &str,
        mut firing: Vec<u64>,
        mut resolved: Vec<u64>,
        sent_at: i64,
        expires_at: i64,
    ) -> NflogEntry {
        firing.sort_unstable();
        firing.dedup();
        resolved.sort_unstable();
        resolved.dedup();
        NflogEntry {
            group_key: group_key.to_owned(),
            receiver: receiver.to_owned(),
            integration: integration.to_owned(),
            firing,
            resolved,
            sent_at,
            expires_at,
        }
    }

    /// True if the last notification had no firing alert.
    pub fn all_resolved(&self) -> bool {
        self.firing.is_empty()
    }

    /// Whether every fingerprint of `firing` (sorted) was sent as firing.
    pub fn is_firing_subset(&self, firing: &[u64]) -> bool {
        firing.iter().all(|f| self.firing.binary_search(f).is_ok())
    }

    /// Whether every fingerprint of `resolved` (sorted) was sent as resolved.
    pub fn is_resolved_subset(&self, resolved: &[u64]) -> bool {
        resolved.iter().all(|f| self.resolved.binary_search(f).is_ok())
    }

    /// SHA-256 (hex) of the firing and resolved lists: equal for equal notified states.
    pub fn state_hash(&self) -> String {
        hex(&Sha256::digest(format!("{}|{}", join(&self.firing), join(&self.resolved)).as_bytes()))
    }

    /// The primary key: SHA-256 (hex) of group key, receiver and integration.
    fn entry_key(&self) -> String {
        entry_key(&self.group_key, &self.receiver, &self.integration)
    }
}

fn entry_key(group_key: &str, receiver: &str, integration: &str) -> String {
    let mut h = Sha256::new();
    for part in [group_key, receiver, integration] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part.as_bytes());
    }
    hex(&h.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn join(fps: &[u64]) -> String {
    fps.iter().map(|f| format!("{f:016x}")).collect::<Vec<_>>().join(",")
}

fn split(text: &str) -> Option<Vec<u64>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(',').map(|s| u64::from_str_radix(s, 16).ok()).collect()
}

impl Store {
    /// Records `e`, replacing the entry of its group, receiver and integration.
    pub async fn log_notification(&self, e: &NflogEntry) -> Result<(), StoreError> {
        let q = sqlx::query(
            "INSERT INTO notification_log (entry_key, group_key, receiver, integration, firing, resolved, \
             state_hash, sent_at, all_resolved, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (entry_key) DO UPDATE SET firing = excluded.firing, resolved = excluded.resolved, \
             state_hash = excluded.state_hash, sent_at = excluded.sent_at, all_resolved = excluded.all_resolved, \
             expires_at = excluded.expires_at",
        )
        .bind(e.entry_key())
        .bind(&e.group_key)
        .bind(&e.receiver)
        .bind(&e.integration)
        .bind(join(&e.firing))
        .bind(join(&e.resolved))
        .bind(e.state_hash())
        .bind(e.sent_at)
        .bind(i64::from(e.all_resolved()))
        .bind(e.expires_at)
        .execute(self.writer());
        run("upsert", TABLE, q).await.map(|_| ())
    }

    /// The entry of one group, receiver and integration, unless absent or expired at `now_ms`.
    pub async fn notification_entry(
        &self,
        group_key: &str,
        receiver: &str,
        integration: &str,
        now_ms: i64,
    ) -> Result<Option<NflogEntry>, StoreError> {
        let q = sqlx::query(
            "SELECT group_key, receiver, integration, firing, resolved, sent_at, expires_at \
             FROM notification_log WHERE entry_key = $1 AND expires_at > $2",
        )
        .bind(entry_key(group_key, receiver, integration))
        .bind(now_ms)
        .fetch_optional(self.reader());
        run("select", TABLE, q).await?.as_ref().map(decode).transpose()
    }

    /// Every entry not expired at `now_ms` (at most [`MAX_ENTRIES`], newest first).
    pub async fn notification_log(&self, now_ms: i64) -> Result<Vec<NflogEntry>, StoreError> {
        let q = sqlx::query(
            "SELECT group_key, receiver, integration, firing, resolved, sent_at, expires_at \
             FROM notification_log WHERE expires_at > $1 ORDER BY sent_at DESC LIMIT $2",
        )
        .bind(now_ms)
        .bind(MAX_ENTRIES)
        .fetch_all(self.reader());
        run("select", TABLE, q).await?.iter().map(decode).collect()
    }

    /// Deletes entries expired at `now_ms`; returns the number deleted.
    pub async fn prune_notification_log(&self, now_ms: i64) -> Result<u64, StoreError> {
        let q = sqlx::query("DELETE FROM notification_log WHERE expires_at <= $1").bind(now_ms).execute(self.writer());
        Ok(run("delete", TABLE, q).await?.rows_affected())
    }
}

fn decode(r: &sqlx::any::AnyRow) -> Result<NflogEntry, StoreError> {
    let corrupt = |column| StoreError::Corrupt { table: TABLE, column };
    let s = |c: &'static str| r.try_get::<String, _>(c).map_err(|_| corrupt(c));
    let i = |c: &'static str| r.try_get::<i64, _>(c).map_err(|_| corrupt(c));
    Ok(NflogEntry {
        group_key: s("group_key")?,
        receiver: s("receiver")?,
        integration: s("integration")?,
        firing: split(&s("firing")?).ok_or(corrupt("firing"))?,
        resolved: split(&s("resolved")?).ok_or(corrupt("resolved"))?,
        sent_at: i("sent_at")?,
        expires_at: i("expires_at")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_round_trip_and_subsets() {
        let e = NflogEntry::new("g", "r", "webhook[0]", vec![3, 1, 3, u64::MAX], vec![], 1, 2);
        assert_eq!(e.firing, [1, 3, u64::MAX]);
        assert_eq!(split(&join(&e.firing)).unwrap(), e.firing);
        assert_eq!(split("").unwrap(), Vec::<u64>::new());
        assert!(split("zz").is_none());
        assert!(e.is_firing_subset(&[1, 3]));
        assert!(!e.is_firing_subset(&[2]));
        assert!(e.is_resolved_subset(&[]));
        assert_ne!(e.state_hash(), NflogEntry::new("g", "r", "i", vec![1], vec![], 1, 2).state_hash());
        assert_ne!(entry_key("ab", "c", ""), entry_key("a", "bc", ""));
    }
}
