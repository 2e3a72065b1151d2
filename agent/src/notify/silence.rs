//! The notifier's view of the silences: the pending and active silences of the store, read
//! again before every flush (one query), so a silence created or expired through the API,
//! or by another agent sharing the store, takes effect at the next notification. If the
//! read fails the last list is kept (muting too much for a while is safer than paging with
//! silences forgotten, and the error is counted).
//!
//! A silence mutes an alert while `starts_at <= now < ends_at` and every matcher matches;
//! muted alerts are left out of notifications, firing and resolved alike (Alertmanager's
//! mute stage), and do not count for deduplication.

use warden_rules::labels::Labels;

use crate::store::{Silence, Store, StoreError};

/// The silences last read from the store.
#[derive(Clone, Debug, Default)]
pub struct Silencer {
    silences: Vec<Silence>,
}

impl Silencer {
    /// No silence.
    pub fn new() -> Silencer {
        Silencer::default()
    }

    /// Replaces the list with the pending and active silences of `store` at `now_ms`; on
    /// error the old list stays.
    pub async fn refresh(&mut self, store: &Store, now_ms: i64) -> Result<(), StoreError> {
        self.silences = store.list_silences(now_ms, 0).await?;
        Ok(())
    }

    /// Replaces the list.
    pub fn set(&mut self, silences: Vec<Silence>) {
        self.silences = silences;
    }

    /// The silences held.
    pub fn silences(&self) -> &[Silence] {
        &self.silences
    }

    /// Whether some silence mutes an alert with `labels` at `now_ms`.
    pub fn mutes(&self, labels: &Labels, now_ms: i64) -> bool {
        self.silences.iter().any(|s| s.mutes(labels, now_ms))
    }

    /// The ids of the silences muting an alert with `labels` at `now_ms`.
    pub fn silenced_by(&self, labels: &Labels, now_ms: i64) -> Vec<&str> {
        self.silences.iter().filter(|s| s.mutes(labels, now_ms)).map(|s| s.id.as_str()).collect()
    }
}
