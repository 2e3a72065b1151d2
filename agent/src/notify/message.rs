//! The notification a receiver sends: Alertmanager's webhook payload (version 4), and the
//! PHI step every notification passes.
//!
//! Alerts are built from already-redacted data, but annotation templates can join text
//! (`{{ $labels.x }} and {{ $value }}`), so every label and annotation value is passed
//! through [`Redactor::redact_str`] once more when a [`Notification`] is built. That is
//! structural: [`Notification::build`] (and [`NotificationAlert::build`]) are the only
//! constructors, both take the [`Redactor`], the fields are private, and receivers take
//! `&Notification`. Nothing a receiver sends can carry a value that skipped the redactor.
//!
//! Invariant: a `Notification` / `NotificationAlert` is never built from unredacted
//! values (no `Deserialize`, no public fields, no constructor without a `Redactor`).
//!
//! The JSON form ([`serde::Serialize`]) is the Alertmanager webhook payload, field for
//! field: `version`, `groupKey`, `truncatedAlerts`, `status`, `receiver`, `groupLabels`,
//! `commonLabels`, `commonAnnotations`, `externalURL`, `alerts[]` (`status`, `labels`,
//! `annotations`, `startsAt`, `endsAt` (`0001-01-01T00:00:00Z` while firing),
//! `generatorURL`, `fingerprint`).

use super::alert::{AlertStatus, NotifyAlert, fingerprint_hex};
use serde::{Serialize, Serializer};
use std::borrow::{Borrow, Cow};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use warden_collector::redact::Redactor;
use warden_rules::labels::Labels;

/// Label or annotation pairs as sent: sorted by name (Go marshals maps sorted, too).
pub type Kv = BTreeMap<String, String>;

/// Go's zero `time.Time`, which Alertmanager sends as `endsAt` of a firing alert.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// One alert of a notification, redacted.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotificationAlert {
    status: AlertStatus,
    labels: Kv,
    annotations: Kv,
    #[serde(serialize_with = "ser_time")]
    starts_at: i64,
    #[serde(serialize_with = "ser_opt_time")]
    ends_at: Option<i64>,
    #[serde(rename = "generatorURL")]
    generator_url: String,
    fingerprint: String,
}

impl NotificationAlert {
    /// The redacted form of `a`: every label and annotation value passes the redactor.
    /// The fingerprint is the alert's own (of its label set as evaluated, which came from
    /// redacted data), so it matches what Alertmanager computes for the same labels.
    pub fn build(redactor: &Redactor, a: &NotifyAlert) -> NotificationAlert {
        NotificationAlert {
            status: a.status,
            labels: redact_labels(redactor, &a.labels),
            annotations: redact_labels(redactor, &a.annotations),
            starts_at: a.starts_at,
            ends_at: a.ends_at,
            generator_url: redactor.redact_str(&a.generator_url).into_owned(),
            fingerprint: fingerprint_hex(a.fingerprint),
        }
    }

    /// Firing or resolved.
    pub fn status(&self) -> AlertStatus {
        self.status
    }

    /// Labels (redacted), sorted by name.
    pub fn labels(&self) -> &Kv {
        &self.labels
    }

    /// Annotations (redacted), sorted by name.
    pub fn annotations(&self) -> &Kv {
        &self.annotations
    }

    /// The `alertname` label, or `""`.
    pub fn alertname(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// When it started firing, Unix milliseconds.
    pub fn starts_at_ms(&self) -> i64 {
        self.starts_at
    }

    /// When it resolved, Unix milliseconds (`None` while firing).
    pub fn ends_at_ms(&self) -> Option<i64> {
        self.ends_at
    }

    /// `startsAt` as RFC 3339.
    pub fn starts_at(&self) -> String {
        format_ms(self.starts_at)
    }

    /// `endsAt` as RFC 3339 (Go's zero time while firing).
    pub fn ends_at(&self) -> String {
        self.ends_at.map_or_else(|| ZERO_TIME.to_owned(), format_ms)
    }

    /// Link to the rule's expression, may be empty.
    pub fn generator_url(&self) -> &str {
        &self.generator_url
    }

    /// Alertmanager's fingerprint of the labels, 16 hex digits.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// One notification for one group of alerts: the Alertmanager webhook v4 payload.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    version: &'static str,
    group_key: String,
    truncated_alerts: usize,
    status: AlertStatus,
    receiver: String,
    group_labels: Kv,
    common_labels: Kv,
    common_annotations: Kv,
    #[serde(rename = "externalURL")]
    external_url: String,
    alerts: Vec<NotificationAlert>,
}

impl Notification {
    /// Builds the notification of one group: every label and annotation value (of the
    /// alerts, the group labels and the group key) passes `redactor`. `receiver` is the
    /// receiver's configured name, `group_key` the route's group key (Alertmanager's
    /// `{}/{matchers}:{group labels}`), `external_url` the agent's own URL. The status is
    /// `firing` if any alert fires; the common labels and annotations are those all
    /// alerts share (computed after redaction, so they agree with the alerts).
    pub fn build<I, A>(
        redactor: &Redactor,
        receiver: &str,
        group_key: &str,
        group_labels: &Labels,
        alerts: I,
        external_url: &str,
    ) -> Notification
    where
        I: IntoIterator<Item = A>,
        A: Borrow<NotifyAlert>,
    {
        let alerts: Vec<NotificationAlert> =
            alerts.into_iter().map(|a| NotificationAlert::build(redactor, a.borrow())).collect();
        Notification::from_alerts(
            receiver.to_owned(),
            redactor.redact_str(group_key).into_owned(),
            redact_labels(redactor, group_labels),
            alerts,
            external_url.to_owned(),
        )
    }

    /// Assembles from already-redacted parts (the common labels are recomputed).
    fn from_alerts(
        receiver: String,
        group_key: String,
        group_labels: Kv,
        alerts: Vec<NotificationAlert>,
        external_url: String,
    ) -> Notification {
        let status = if alerts.iter().any(|a| a.status == AlertStatus::Firing) {
            AlertStatus::Firing
        } else {
            AlertStatus::Resolved
        };
        let common_labels = common(alerts.iter().map(|a| &a.labels));
        let common_annotations = common(alerts.iter().map(|a| &a.annotations));
        Notification {
            version: "4",
            group_key,
            truncated_alerts: 0,
            status,
            receiver,
            group_labels,
            common_labels,
            common_annotations,
            external_url,
            alerts,
        }
    }

    /// The same notification without its resolved alerts (for receivers with
    /// `send_resolved: false`); `None` if no alert fires.
    pub fn firing_only(&self) -> Option<Notification> {
        if self.alerts.iter().all(|a| a.status == AlertStatus::Firing) {
            return Some(self.clone());
        }
        let alerts: Vec<NotificationAlert> =
            self.alerts.iter().filter(|a| a.status == AlertStatus::Firing).cloned().collect();
        if alerts.is_empty() {
            return None;
        }
        Some(Notification::from_alerts(
            self.receiver.clone(),
            self.group_key.clone(),
            self.group_labels.clone(),
            alerts,
            self.external_url.clone(),
        ))
    }

    /// The notification with at most `max` alerts (0 = all), the number left out in
    /// `truncatedAlerts` (Alertmanager's webhook `max_alerts`). Common labels stay those
    /// of the whole group, as in Alertmanager.
    pub fn truncated(&self, max: usize) -> Cow<'_, Notification> {
        if max == 0 || self.alerts.len() <= max {
            return Cow::Borrowed(self);
        }
        let mut n = self.clone();
        n.truncated_alerts += n.alerts.len() - max;
        n.alerts.truncate(max);
        Cow::Owned(n)
    }

    /// Always `"4"`.
    pub fn version(&self) -> &str {
        self.version
    }

    /// The group key (redacted).
    pub fn group_key(&self) -> &str {
        &self.group_key
    }

    /// Alerts left out by [`Notification::truncated`].
    pub fn truncated_alerts(&self) -> usize {
        self.truncated_alerts
    }

    /// Firing if any alert fires, else resolved.
    pub fn status(&self) -> AlertStatus {
        self.status
    }

    /// The receiver's configured name.
    pub fn receiver(&self) -> &str {
        &self.receiver
    }

    /// The labels the group is formed by.
    pub fn group_labels(&self) -> &Kv {
        &self.group_labels
    }

    /// Labels all alerts share.
    pub fn common_labels(&self) -> &Kv {
        &self.common_labels
    }

    /// Annotations all alerts share.
    pub fn common_annotations(&self) -> &Kv {
        &self.common_annotations
    }

    /// The agent's URL (may be empty).
    pub fn external_url(&self) -> &str {
        &self.external_url
    }

    /// The alerts, in the order the notifier gave them.
    pub fn alerts(&self) -> &[NotificationAlert] {
        &self.alerts
    }

    /// Alerts that fire.
    pub fn firing(&self) -> impl Iterator<Item = &NotificationAlert> {
        self.alerts.iter().filter(|a| a.status == AlertStatus::Firing)
    }

    /// Alerts that resolved.
    pub fn resolved(&self) -> impl Iterator<Item = &NotificationAlert> {
        self.alerts.iter().filter(|a| a.status == AlertStatus::Resolved)
    }

    /// Alertmanager's default title (`__subject`): `[FIRING:2] <group label values>
    /// (<values of the other common labels>)`, or `[RESOLVED] ...`. Counts are of the
    /// whole notification, including truncated alerts, as far as they are known.
    pub fn subject(&self) -> String {
        let mut s = String::new();
        match self.status {
            AlertStatus::Firing => {
                let _ = write!(s, "[FIRING:{}]", self.firing().count());
            }
            AlertStatus::Resolved => s.push_str("[RESOLVED]"),
        }
        let values: Vec<&str> = self.group_labels.values().map(String::as_str).collect();
        s.push(' ');
        s.push_str(&values.join(" "));
        if self.common_labels.len() > self.group_labels.len() {
            let rest: Vec<&str> = self
                .common_labels
                .iter()
                .filter(|(k, _)| !self.group_labels.contains_key(*k))
                .map(|(_, v)| v.as_str())
                .collect();
            if !rest.is_empty() {
                let _ = write!(s, " ({})", rest.join(" "));
            }
        }
        s
    }

    /// The compact JSON payload (serialising plain strings and maps cannot fail).
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Redacts every value of a label set into a sorted map.
fn redact_labels(redactor: &Redactor, labels: &Labels) -> Kv {
    labels.iter().map(|l| (l.name.clone(), redactor.redact_str(&l.value).into_owned())).collect()
}

/// The pairs every map has (same name, same value); empty for no maps.
fn common<'a>(mut maps: impl Iterator<Item = &'a Kv>) -> Kv {
    let Some(first) = maps.next() else {
        return Kv::new();
    };
    let mut out = first.clone();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
        if out.is_empty() {
            break;
        }
    }
    out
}

/// Unix milliseconds as RFC 3339 in UTC (`2024-01-02T03:04:05.678Z`; whole seconds
/// without a fraction), as Go prints a `time.Time`.
pub fn format_ms(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let millis = ms.rem_euclid(1000);
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(secs) else {
        return ZERO_TIME.to_owned();
    };
    let d = t.date();
    let (h, m, s) = (t.hour(), t.minute(), t.second());
    let mut out = format!("{:04}-{:02}-{:02}T{h:02}:{m:02}:{s:02}", d.year(), u8::from(d.month()), d.day());
    if millis != 0 {
        let frac = format!("{millis:03}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push('Z');
    out
}

fn ser_time<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_ms(*ms))
}

fn ser_opt_time<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&format_ms(*ms)),
        None => s.serialize_str(ZERO_TIME),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn alert(pairs: &[(&str, &str)], ann: &[(&str, &str)], status: AlertStatus, start: i64) -> NotifyAlert {
        let ends = (status == AlertStatus::Resolved).then_some(start + 60_000);
        NotifyAlert::new(Labels::from_pairs(pairs), Labels::from_pairs(ann), status, start, ends)
    }

    #[test]
    fn payload_is_alertmanager_v4_and_redacted() {
        let r = Redactor::default_mask();
        let a = alert(
            &[("alertname", "HighLatency"), ("service", "api"), ("severity", "critical")],
            &[("summary", "slow for patient 123-45-6789")],
            AlertStatus::Firing,
            1_700_000_000_123,
        );
        let b = alert(
            &[("alertname", "HighLatency"), ("service", "db"), ("severity", "critical")],
            &[("summary", "contact jane.doe@example.org")],
            AlertStatus::Resolved,
            1_700_000_000_000,
        );
        let group = Labels::from_pairs(&[("alertname", "HighLatency")]);
        let n = Notification::build(&r, "team", "{}:{alertname=\"HighLatency\"}", &group, [&a, &b], "http://w:9464");
        let v: serde_json::Value = serde_json::from_slice(&n.to_json()).unwrap();
        assert_eq!(v["version"], "4");
        assert_eq!(v["status"], "firing");
        assert_eq!(v["receiver"], "team");
        assert_eq!(v["truncatedAlerts"], 0);
        assert_eq!(v["groupKey"], "{}:{alertname=\"HighLatency\"}");
        assert_eq!(v["externalURL"], "http://w:9464");
        assert_eq!(v["groupLabels"], json!({"alertname": "HighLatency"}));
        assert_eq!(v["commonLabels"], json!({"alertname": "HighLatency", "severity": "critical"}));
        assert_eq!(v["commonAnnotations"], json!({}));
        let a0 = &v["alerts"][0];
        assert_eq!(a0["startsAt"], "2023-11-14T22:13:20.123Z");
        assert_eq!(a0["endsAt"], ZERO_TIME);
        assert_eq!(a0["fingerprint"].as_str().unwrap().len(), 16);
        assert_eq!(a0["generatorURL"], "");
        let s0 = a0["annotations"]["summary"].as_str().unwrap();
        assert!(s0.contains("[REDACTED:") && !s0.contains("6789"), "{s0}");
        let s1 = v["alerts"][1]["annotations"]["summary"].as_str().unwrap();
        assert!(s1.contains("[REDACTED:") && !s1.contains("jane"), "{s1}");
        assert_eq!(v["alerts"][1]["endsAt"], "2023-11-14T22:14:20Z");
        assert_eq!(n.subject(), "[FIRING:1] HighLatency (critical)");
    }

    #[test]
    fn truncation_and_firing_only() {
        let r = Redactor::default_mask();
        let alerts: Vec<NotifyAlert> = (0..5)
            .map(|i| {
                let st = if i < 2 { AlertStatus::Resolved } else { AlertStatus::Firing };
                alert(&[("alertname", "A"), ("i", &i.to_string())], &[], st, 1000 * i)
            })
            .collect();
        let n = Notification::build(&r, "x", "k", &Labels::empty(), &alerts, "");
        assert!(matches!(n.truncated(0), Cow::Borrowed(_)));
        assert!(matches!(n.truncated(5), Cow::Borrowed(_)));
        let t = n.truncated(2);
        assert_eq!((t.alerts().len(), t.truncated_alerts()), (2, 3));
        let f = n.firing_only().unwrap();
        assert_eq!(f.alerts().len(), 3);
        assert!(f.alerts().iter().all(|a| a.status() == AlertStatus::Firing));
        let resolved_only = Notification::build(&r, "x", "k", &Labels::empty(), &alerts[..2], "");
        assert_eq!(resolved_only.status(), AlertStatus::Resolved);
        assert_eq!(resolved_only.subject(), "[RESOLVED]  (A)");
        assert!(resolved_only.firing_only().is_none());
    }

    #[test]
    fn time_format_matches_go() {
        assert_eq!(format_ms(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_ms(1_500), "1970-01-01T00:00:01.5Z");
        assert_eq!(format_ms(-1), "1969-12-31T23:59:59.999Z");
    }
}
