//! The alert as the notifier sees it, and its fingerprint.
//!
//! The rules manager hands the notifier its firing and resolved alerts
//! ([`NotifyAlert::from_rule_alert`]; pending alerts are never notified). An alert is
//! identified by its label set; its [`fingerprint`] is Alertmanager's (FNV-1a 64 over the
//! sorted names and values, each followed by the byte `0xff`, printed as 16 hex digits), so
//! the `fingerprint` field of a webhook payload is the one Alertmanager would send, and it is
//! stable across restarts (unlike [`Labels`]' in-memory hash, which is seeded per process).

use serde::Serialize;
use warden_rules::alerting::{Alert, AlertState};
use warden_rules::labels::Labels;

/// FNV-1a 64 offset basis (also the fingerprint of the empty set).
const FNV_OFFSET: u64 = 14_695_981_039_346_656_037;
/// FNV-1a 64 prime.
const FNV_PRIME: u64 = 1_099_511_628_211;
/// Separator between names and values (Prometheus' `model.SeparatorByte`).
const SEPARATOR: u8 = 0xff;

/// Alertmanager's fingerprint of a label set.
pub fn fingerprint(labels: &Labels) -> u64 {
    let mut h = FNV_OFFSET;
    let mut add = |bytes: &[u8]| {
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
    };
    // `Labels` is sorted by name, as the fingerprint requires.
    for l in labels.iter() {
        add(l.name.as_bytes());
        add(&[SEPARATOR]);
        add(l.value.as_bytes());
        add(&[SEPARATOR]);
    }
    h
}

/// A fingerprint as printed by Alertmanager: 16 lowercase hex digits.
pub fn fingerprint_hex(fp: u64) -> String {
    format!("{fp:016x}")
}

/// Whether an alert is firing or resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertStatus {
    /// Firing.
    Firing,
    /// Resolved.
    Resolved,
}

impl AlertStatus {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertStatus::Firing => "firing",
            AlertStatus::Resolved => "resolved",
        }
    }
}

/// One alert handed to the notifier.
#[derive(Clone, Debug, PartialEq)]
pub struct NotifyAlert {
    /// Identifying labels (`alertname` included).
    pub labels: Labels,
    /// Annotations.
    pub annotations: Labels,
    /// Firing or resolved.
    pub status: AlertStatus,
    /// When it started firing (ms; Prometheus sends `fired_at` as `startsAt`).
    pub starts_at: i64,
    /// When it was resolved (ms), for a resolved alert.
    pub ends_at: Option<i64>,
    /// Link to the rule's expression (`generatorURL`), may be empty.
    pub generator_url: String,
    /// The sample value that made it fire (not sent in the webhook payload).
    pub value: f64,
    /// [`fingerprint`] of `labels`.
    pub fingerprint: u64,
}

impl NotifyAlert {
    /// An alert with its fingerprint computed.
    pub fn new(labels: Labels, annotations: Labels, status: AlertStatus, starts_at: i64, ends_at: Option<i64>) -> Self {
        let fingerprint = fingerprint(&labels);
        NotifyAlert {
            labels,
            annotations,
            status,
            starts_at,
            ends_at,
            generator_url: String::new(),
            value: f64::NAN,
            fingerprint,
        }
    }

    /// The notifier's view of a rule's alert: `None` while pending (never notified);
    /// firing and resolved alerts as Prometheus sends them (`startsAt` = when it fired,
    /// `endsAt` = when it resolved).
    pub fn from_rule_alert(a: &Alert, generator_url: &str) -> Option<NotifyAlert> {
        let status = match a.state {
            AlertState::Pending => return None,
            AlertState::Firing => AlertStatus::Firing,
            // A resolved alert that had never fired is not reported by the rules crate.
            AlertState::Inactive => AlertStatus::Resolved,
        };
        let starts_at = a.fired_at.unwrap_or(a.active_at);
        let ends_at = if status == AlertStatus::Resolved { Some(a.resolved_at.unwrap_or(starts_at)) } else { None };
        let mut out = NotifyAlert::new(a.labels.clone(), a.annotations.clone(), status, starts_at, ends_at);
        out.generator_url = generator_url.to_owned();
        out.value = a.value;
        Some(out)
    }

    /// True if resolved.
    pub fn is_resolved(&self) -> bool {
        self.status == AlertStatus::Resolved
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_match_alertmanager() {
        // prometheus/common model/signature_test.go, TestMetricToFingerprint.
        assert_eq!(fingerprint(&Labels::empty()), 14_695_981_039_346_656_037);
        let fp = fingerprint(&Labels::from_pairs(&[("name", "garland, briggs"), ("fear", "love is not enough")]));
        assert_eq!(fp, 5_799_056_148_416_392_346);
        assert_eq!(fingerprint_hex(fp), "507a62d79ee76c9a");
        // Order of construction does not matter; values do.
        let a = Labels::from_pairs(&[("b", "2"), ("a", "1")]);
        let b = Labels::from_pairs(&[("a", "1"), ("b", "2")]);
        assert_eq!(fingerprint(&a), fingerprint(&b));
        assert_ne!(fingerprint(&a), fingerprint(&a.with("b", "3")));
        // The separator keeps name/value boundaries apart.
        assert_ne!(fingerprint(&Labels::from_pairs(&[("ab", "c")])), fingerprint(&Labels::from_pairs(&[("a", "bc")])));
    }
}
