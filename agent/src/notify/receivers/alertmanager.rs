//! The Alertmanager receiver: hands alerts to an existing Alertmanager cluster through
//! `POST /api/v2/alerts`, as Prometheus does, so that cluster routes, groups, silences
//! and deduplicates them.
//!
//! ```yaml
//! alertmanager_configs:
//!   - urls: [http://am-0:9093, http://am-1:9093]   # every instance gets every alert
//!     timeout: 10s
//!     firing_ttl: 5h
//! ```
//!
//! Alertmanager wants individual alerts, not groups: the body is a list of
//! `{labels, annotations, startsAt, endsAt, generatorURL}`. A firing alert's `endsAt` is
//! now + `firing_ttl` (Alertmanager resolves it by itself if Warden stops re-sending; keep
//! it above the route's `repeat_interval`, or call [`AlertmanagerReceiver::send_alerts`]
//! more often); a resolved alert's `endsAt` is when it resolved. Each URL is posted to
//! (one after the other, each within `timeout`); a send succeeds if at least one instance
//! accepted it, as an Alertmanager cluster gossips what one member received.

use super::http::{check_status, post_json};
use super::{BuildContext, Receiver, ReceiverError, SendFuture, Who, default_timeout, default_true};
use crate::notify::alert::AlertStatus;
use crate::notify::message::{Kv, Notification, NotificationAlert, format_ms};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use warden_collector::pipeline::duration;

/// Instances per config at most.
const MAX_URLS: usize = 16;

/// One `alertmanager_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertmanagerConfig {
    /// Base URLs of the Alertmanager instances (`http://host:9093`, path prefix allowed).
    pub urls: Vec<String>,
    /// Also send resolved alerts (default true; without them Alertmanager resolves only
    /// when `endsAt` passes).
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Time limit of one request (humantime, default `10s`).
    #[serde(default = "default_timeout", deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
    /// How long a firing alert stays valid without being re-sent (humantime, default `5h`,
    /// above the default 4 h repeat interval).
    #[serde(default = "default_ttl", deserialize_with = "duration::deserialize")]
    pub firing_ttl: Duration,
}

fn default_ttl() -> Duration {
    Duration::from_secs(5 * 3600)
}

impl AlertmanagerConfig {
    pub(crate) fn validate(&self, path: &str, errors: &mut Vec<String>) {
        if self.urls.is_empty() {
            errors.push(format!("{path}.urls: at least one URL is required"));
        }
        if self.urls.len() > MAX_URLS {
            errors.push(format!("{path}.urls: at most {MAX_URLS} URLs"));
        }
        for (i, u) in self.urls.iter().enumerate() {
            super::webhook::check_url(u, &format!("{path}.urls[{i}]"), errors);
        }
        if self.timeout.is_zero() {
            errors.push(format!("{path}.timeout: must be > 0"));
        }
        if self.firing_ttl < Duration::from_secs(60) {
            errors.push(format!("{path}.firing_ttl: must be >= 1m"));
        }
    }

    pub(crate) fn build(
        &self,
        name: &str,
        ctx: &BuildContext,
        _path: &str,
        _errors: &mut Vec<String>,
    ) -> Option<(Arc<dyn Receiver>, bool)> {
        Some((Arc::new(AlertmanagerReceiver::new(name, self, ctx.http.clone())), self.send_resolved))
    }
}

/// One alert as `POST /api/v2/alerts` takes it (`postableAlert`).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PostableAlert<'a> {
    labels: &'a Kv,
    annotations: &'a Kv,
    starts_at: String,
    ends_at: String,
    #[serde(rename = "generatorURL", skip_serializing_if = "str::is_empty")]
    generator_url: &'a str,
}

/// Posts alerts to Alertmanager instances.
pub struct AlertmanagerReceiver {
    who: Who,
    /// `<base>/api/v2/alerts` of each instance.
    endpoints: Vec<String>,
    timeout: Duration,
    firing_ttl: Duration,
    client: reqwest::Client,
}

impl AlertmanagerReceiver {
    /// A receiver for `config`'s instances.
    pub fn new(name: &str, config: &AlertmanagerConfig, client: reqwest::Client) -> AlertmanagerReceiver {
        let endpoints = config.urls.iter().map(|u| format!("{}/api/v2/alerts", u.trim_end_matches('/'))).collect();
        AlertmanagerReceiver {
            who: Who::new(name, "alertmanager"),
            endpoints,
            timeout: config.timeout,
            firing_ttl: config.firing_ttl,
            client,
        }
    }

    /// The request body for `alerts` at `now_ms`.
    pub fn body(&self, alerts: &[NotificationAlert], now_ms: i64) -> Vec<u8> {
        let ttl_ms = i64::try_from(self.firing_ttl.as_millis()).unwrap_or(i64::MAX);
        let list: Vec<PostableAlert<'_>> = alerts
            .iter()
            .map(|a| PostableAlert {
                labels: a.labels(),
                annotations: a.annotations(),
                starts_at: a.starts_at(),
                ends_at: match (a.status(), a.ends_at_ms()) {
                    (AlertStatus::Resolved, Some(end)) => format_ms(end),
                    _ => format_ms(now_ms.saturating_add(ttl_ms)),
                },
                generator_url: a.generator_url(),
            })
            .collect();
        serde_json::to_vec(&list).unwrap_or_default()
    }

    /// Posts individual alerts to every instance (Prometheus' way of handing alerts to
    /// Alertmanager). Succeeds if at least one instance accepted them; otherwise the
    /// first error (retryable if any instance's failure was).
    pub async fn send_alerts(&self, alerts: &[NotificationAlert]) -> Result<(), ReceiverError> {
        if alerts.is_empty() {
            return Ok(());
        }
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let body = self.body(alerts, now_ms);
        let mut first_err: Option<ReceiverError> = None;
        let mut any_retryable = false;
        let mut ok = false;
        for url in &self.endpoints {
            let res = match post_json(&self.client, &self.who, url, body.clone(), self.timeout).await {
                Ok(r) => check_status(&self.who, &r),
                Err(e) => Err(e),
            };
            match res {
                Ok(()) => ok = true,
                Err(e) => {
                    any_retryable |= e.is_retryable();
                    tracing::warn!(error = %e, "alertmanager instance did not accept alerts");
                    first_err.get_or_insert(e);
                }
            }
        }
        match first_err {
            _ if ok => Ok(()),
            Some(e) if any_retryable && !e.is_retryable() => Err(ReceiverError::Retryable(e.to_string())),
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

impl Receiver for AlertmanagerReceiver {
    fn name(&self) -> &str {
        &self.who.receiver
    }

    fn integration(&self) -> &'static str {
        "alertmanager"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.send_alerts(n.alerts()))
    }
}
