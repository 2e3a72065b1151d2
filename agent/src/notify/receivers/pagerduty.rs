//! The PagerDuty receiver: Events API v2 (`POST https://events.pagerduty.com/v2/enqueue`).
//!
//! ```yaml
//! pagerduty_configs:
//!   - routing_key_file: /run/secrets/pd-routing-key   # or routing_key_env: PD_ROUTING_KEY
//!     source: warden-node-1                          # default "warden"
//! ```
//!
//! A firing group sends `event_action: trigger`, a resolved one `resolve`, both with the
//! same `dedup_key`: the SHA-256 (hex) of the group key, as Alertmanager does, so one
//! group is one PagerDuty incident, also across restarts. The trigger's `payload`:
//! `summary` (the Alertmanager-style title, ≤ 1024 characters), `source`, `severity`
//! (`critical|error|warning|info`, from the common `severity` label, default `error`),
//! `timestamp` (the earliest start), `component`/`group`/`class` (from common labels, when
//! present) and `custom_details` (the alert list as text, counts). PagerDuty answers 202;
//! 429 and 5xx are retried, 400 (an invalid event) is permanent. The routing key is a
//! secret and never printed.

use super::http::{check_status, post_json};
use super::{BuildContext, Receiver, SendFuture, Who, default_timeout, default_true};
use crate::notify::alert::AlertStatus;
use crate::notify::message::{Notification, NotificationAlert};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warden_collector::pipeline::duration;

/// The Events API v2 endpoint.
pub const DEFAULT_URL: &str = "https://events.pagerduty.com/v2/enqueue";
/// PagerDuty's limit on `payload.summary`.
pub const SUMMARY_MAX: usize = 1024;
/// Characters of each `custom_details` text at most (PagerDuty caps an event at 512 KB).
const DETAILS_MAX: usize = 16 * 1024;

/// One `pagerduty_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    /// A file holding the integration's routing key.
    #[serde(default)]
    pub routing_key_file: Option<PathBuf>,
    /// An environment variable holding the routing key.
    #[serde(default)]
    pub routing_key_env: Option<String>,
    /// The endpoint (default [`DEFAULT_URL`]).
    #[serde(default = "default_url")]
    pub url: String,
    /// `payload.source` (default `warden`).
    #[serde(default = "default_source")]
    pub source: String,
    /// `client` (default `Warden`); `client_url` is the agent's external URL.
    #[serde(default = "default_client")]
    pub client: String,
    /// The label `payload.component` comes from (default `service`).
    #[serde(default = "default_component_label")]
    pub component_label: String,
    /// The label `payload.group` comes from (default `namespace`).
    #[serde(default = "default_group_label")]
    pub group_label: String,
    /// The label `payload.class` comes from (default `alertname`).
    #[serde(default = "default_class_label")]
    pub class_label: String,
    /// Resolve the incident when the group resolves (default true).
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Time limit of one request (humantime, default `10s`).
    #[serde(default = "default_timeout", deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
}

fn default_url() -> String {
    DEFAULT_URL.to_owned()
}
fn default_source() -> String {
    "warden".to_owned()
}
fn default_client() -> String {
    "Warden".to_owned()
}
fn default_component_label() -> String {
    "service".to_owned()
}
fn default_group_label() -> String {
    "namespace".to_owned()
}
fn default_class_label() -> String {
    "alertname".to_owned()
}

impl PagerDutyConfig {
    pub(crate) fn validate(&self, path: &str, errors: &mut Vec<String>) {
        match (&self.routing_key_file, &self.routing_key_env) {
            (None, None) => errors.push(format!("{path}: one of routing_key_file, routing_key_env is required")),
            (Some(_), Some(_)) => {
                errors.push(format!("{path}: routing_key_file and routing_key_env are mutually exclusive"))
            }
            _ => {}
        }
        super::webhook::check_url(&self.url, &format!("{path}.url"), errors);
        if self.source.is_empty() {
            errors.push(format!("{path}.source: must not be empty"));
        }
        if self.timeout.is_zero() {
            errors.push(format!("{path}.timeout: must be > 0"));
        }
    }

    pub(crate) fn build(
        &self,
        name: &str,
        ctx: &BuildContext,
        path: &str,
        errors: &mut Vec<String>,
    ) -> Option<(Arc<dyn Receiver>, bool)> {
        let routing_key = ctx.secret(
            self.routing_key_file.as_ref(),
            self.routing_key_env.as_ref(),
            &format!("{path}.routing_key"),
            errors,
        )?;
        let r = PagerDutyReceiver {
            who: Who::new(name, "pagerduty"),
            routing_key,
            config: self.clone(),
            client: ctx.http.clone(),
        };
        Some((Arc::new(r), self.send_resolved))
    }
}

/// Sends Events API v2 events.
pub struct PagerDutyReceiver {
    who: Who,
    routing_key: super::Secret,
    config: PagerDutyConfig,
    client: reqwest::Client,
}

impl PagerDutyReceiver {
    /// The event for `n`.
    pub fn event(&self, n: &Notification) -> Value {
        let c = &self.config;
        let dedup_key = dedup_key(n.group_key());
        if n.status() == AlertStatus::Resolved {
            return json!({
                "routing_key": self.routing_key.expose(),
                "dedup_key": dedup_key,
                "event_action": "resolve",
            });
        }
        let common = n.common_labels();
        let mut payload = Map::new();
        payload.insert("summary".into(), Value::String(super::slack::truncate(&n.subject(), SUMMARY_MAX)));
        payload.insert("source".into(), Value::String(c.source.clone()));
        payload.insert("severity".into(), Value::String(severity(common.get("severity").map(String::as_str)).into()));
        if let Some(ts) = n.firing().map(NotificationAlert::starts_at_ms).min() {
            payload.insert("timestamp".into(), Value::String(crate::notify::message::format_ms(ts)));
        }
        for (field, label) in [("component", &c.component_label), ("group", &c.group_label), ("class", &c.class_label)]
        {
            if let Some(v) = common.get(label.as_str()) {
                payload.insert(field.into(), Value::String(v.clone()));
            }
        }
        payload.insert(
            "custom_details".into(),
            json!({
                "firing": details(n.firing()),
                "resolved": details(n.resolved()),
                "num_firing": n.firing().count(),
                "num_resolved": n.resolved().count(),
                "truncated_alerts": n.truncated_alerts(),
            }),
        );
        let mut event = json!({
            "routing_key": self.routing_key.expose(),
            "dedup_key": dedup_key,
            "event_action": "trigger",
            "payload": payload,
            "client": c.client,
        });
        if !n.external_url().is_empty() {
            event["client_url"] = Value::String(n.external_url().to_owned());
        }
        event
    }

    async fn post(&self, n: &Notification) -> Result<(), super::ReceiverError> {
        let body = serde_json::to_vec(&self.event(n)).unwrap_or_default();
        let r = post_json(&self.client, &self.who, &self.config.url, body, self.config.timeout).await?;
        check_status(&self.who, &r)
    }
}

impl Receiver for PagerDutyReceiver {
    fn name(&self) -> &str {
        &self.who.receiver
    }

    fn integration(&self) -> &'static str {
        "pagerduty"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.post(n))
    }
}

/// The `dedup_key` of a group: SHA-256 of the group key, 64 hex digits (Alertmanager's
/// `GroupKey.Hash`).
pub fn dedup_key(group_key: &str) -> String {
    let digest = Sha256::digest(group_key.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// PagerDuty's severity for a `severity` label value (`error` if absent or unknown).
pub fn severity(label: Option<&str>) -> &'static str {
    match label.map(str::to_ascii_lowercase).as_deref() {
        Some("critical" | "crit" | "page" | "fatal" | "emergency" | "alert" | "p1") => "critical",
        Some("error" | "err" | "high" | "major" | "p2") => "error",
        Some("warning" | "warn" | "medium" | "minor" | "p3") => "warning",
        Some("info" | "informational" | "low" | "notice" | "none" | "p4" | "p5") => "info",
        _ => "error",
    }
}

/// The alerts as text: one line per alert, then its labels and annotations.
fn details<'a>(alerts: impl Iterator<Item = &'a NotificationAlert>) -> String {
    let mut s = String::new();
    for a in alerts {
        let _ = writeln!(s, "{} (started {})", a.alertname(), a.starts_at());
        for (k, v) in a.labels() {
            let _ = writeln!(s, "  {k} = {v}");
        }
        for (k, v) in a.annotations() {
            let _ = writeln!(s, "  {k}: {v}");
        }
        if s.len() > DETAILS_MAX {
            break;
        }
    }
    super::slack::truncate(&s, DETAILS_MAX)
}
