//! Receivers: where notifications go (email, webhook, Slack, PagerDuty, Alertmanager,
//! file/console), configured Alertmanager-style.
//!
//! ```yaml
//! receivers:
//!   - name: oncall
//!     email_configs: [{ to: oncall@example.org, from: warden@example.org, smarthost: smtp.example.org:587 }]
//!     pagerduty_configs: [{ routing_key_file: /run/secrets/pd }]
//!   - name: local
//!     file_configs: [{ path: /var/lib/warden/notifications.jsonl }]
//! ```
//!
//! One [`ReceiverConfig`] (a `name` and lists of integrations) builds one [`Receiver`] per
//! integration entry ([`ReceiverConfig::build`]); each is wrapped in [`Retrying`], which
//! drops resolved alerts for `send_resolved: false`, retries retryable failures with
//! exponential backoff (honouring `Retry-After`, bounded attempts, stopping on shutdown)
//! and counts outcomes in [`ReceiverMetrics`] (`warden_notifications_total`).
//!
//! Invariants:
//! - Receivers take `&Notification`, which only [`Notification::build`] can make: nothing
//!   sent skipped the redactor.
//! - Secrets (SMTP password, webhook and Slack URLs, PagerDuty routing key) come from a
//!   `*_file` or an environment variable, are held in [`Secret`] (whose `Debug` prints
//!   nothing), and never appear in errors or logs; errors name the integration, the
//!   receiver and a status (HTTP code, SMTP code, "timed out"), never a URL, an address,
//!   a label or an annotation.
//! - Every network call has a timeout (`timeout`, default 10 s); HTTP redirects are not
//!   followed (a redirect would carry a secret URL's request elsewhere).

pub mod alertmanager;
pub mod email;
pub mod file;
mod http;
pub mod pagerduty;
pub mod slack;
pub mod webhook;

use super::message::Notification;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The future a [`Receiver`] returns (boxed, so receivers can live in `Arc<dyn Receiver>`).
pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ReceiverError>> + Send + 'a>>;

/// Something that delivers a [`Notification`].
pub trait Receiver: Send + Sync {
    /// The receiver's configured name (several integrations may share it).
    fn name(&self) -> &str;

    /// The integration: `email`, `webhook`, `slack`, `pagerduty`, `alertmanager`, `file`.
    fn integration(&self) -> &'static str;

    /// Delivers `n` (one attempt, unless the receiver is a [`Retrying`] wrapper).
    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a>;
}

/// Why a notification was not delivered. The message names the integration, the receiver
/// and a status only.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReceiverError {
    /// Worth retrying (timeout, connection failure, HTTP 429 / 5xx, SMTP 4xx).
    #[error("{0}")]
    Retryable(String),
    /// Retrying cannot help (HTTP 4xx, SMTP 5xx, a bad address).
    #[error("{0}")]
    Permanent(String),
    /// The peer asked to wait (`Retry-After`) before retrying.
    #[error("{message}")]
    Throttled {
        /// What happened.
        message: String,
        /// How long the peer asked to wait.
        retry_after: Duration,
    },
}

impl ReceiverError {
    /// True unless permanent.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, ReceiverError::Permanent(_))
    }

    /// The peer's `Retry-After`, if it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ReceiverError::Throttled { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

/// Names a receiver in errors and logs: `webhook receiver "team-a"`.
#[derive(Clone, Debug)]
pub(crate) struct Who {
    pub(crate) receiver: String,
    pub(crate) integration: &'static str,
}

impl Who {
    pub(crate) fn new(receiver: &str, integration: &'static str) -> Who {
        Who { receiver: receiver.to_owned(), integration }
    }

    pub(crate) fn retryable(&self, status: impl fmt::Display) -> ReceiverError {
        ReceiverError::Retryable(format!("{self}: {status}"))
    }

    pub(crate) fn permanent(&self, status: impl fmt::Display) -> ReceiverError {
        ReceiverError::Permanent(format!("{self}: {status}"))
    }
}

impl fmt::Display for Who {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} receiver {:?}", self.integration, self.receiver)
    }
}

/// A secret read from a file or the environment. `Debug` and `Display` never print it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    /// A secret from its value (tests, or a value already read).
    pub fn new(value: &str) -> Secret {
        Secret(Arc::from(value))
    }

    /// The value; only to put it on the wire.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<hidden>)")
    }
}

/// The configuration could not be built; every problem is listed, each with its path
/// (`receivers.oncall.email_configs[0].to: ...`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", .0.join("; "))]
pub struct ConfigError(pub Vec<String>);

/// Bounds of the retry loop of [`Retrying`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all (at least 1).
    pub max_attempts: u32,
    /// The first backoff; doubled after each failure.
    pub initial_backoff: Duration,
    /// The largest backoff.
    pub max_backoff: Duration,
    /// The longest `Retry-After` honoured; a peer asking for more fails the send (the
    /// notifier tries again at its next flush).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 1 s → 2 s → 4 s (at most 30 s), `Retry-After` up to 60 s: a send
    /// gives up well within the 5 m group interval.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Outcome counters of one (receiver, integration).
#[derive(Debug, Default)]
pub struct Counters {
    sent: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
}

impl Counters {
    /// Notifications delivered.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Notifications given up on.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Attempts retried.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }
}

/// The counters of every (receiver, integration), exported as
/// `warden_notifications_total{receiver,integration,outcome}`. Bounded by the configured
/// receivers; a reload re-registers the same names and keeps their counts.
#[derive(Debug, Default)]
pub struct ReceiverMetrics {
    entries: Mutex<BTreeMap<(String, &'static str), Arc<Counters>>>,
}

/// The process-wide metrics [`BuildContext::default`] uses.
static GLOBAL_METRICS: LazyLock<Arc<ReceiverMetrics>> = LazyLock::new(Arc::default);

impl ReceiverMetrics {
    /// The process-wide instance.
    pub fn global() -> Arc<ReceiverMetrics> {
        Arc::clone(&GLOBAL_METRICS)
    }

    /// The counters of `receiver`'s `integration` (created at zero on first use).
    pub fn counters(&self, receiver: &str, integration: &'static str) -> Arc<Counters> {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(m.entry((receiver.to_owned(), integration)).or_default())
    }

    /// Prometheus text format.
    pub fn encode(&self) -> String {
        let m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::from(
            "# HELP warden_notifications_total Notifications by receiver, integration and outcome \
             (sent, failed; retried counts retried attempts).\n# TYPE warden_notifications_total counter\n",
        );
        for ((receiver, integration), c) in m.iter() {
            for (outcome, v) in [("sent", c.sent()), ("failed", c.failed()), ("retried", c.retried())] {
                out.push_str(&format!(
                    "warden_notifications_total{{receiver=\"{}\",integration=\"{integration}\",outcome=\"{outcome}\"}} {v}\n",
                    escape_label(receiver)
                ));
            }
        }
        out
    }
}

/// Escapes a label value for the text exposition format.
fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A receiver with retries, `send_resolved` and counters: what [`ReceiverConfig::build`]
/// returns for every integration.
pub struct Retrying {
    inner: Arc<dyn Receiver>,
    policy: RetryPolicy,
    send_resolved: bool,
    counters: Arc<Counters>,
    shutdown: CancellationToken,
}

impl Retrying {
    /// Wraps `inner`; its counters are registered in `metrics`.
    pub fn new(
        inner: Arc<dyn Receiver>,
        policy: RetryPolicy,
        send_resolved: bool,
        metrics: &ReceiverMetrics,
        shutdown: CancellationToken,
    ) -> Retrying {
        let counters = metrics.counters(inner.name(), inner.integration());
        Retrying { inner, policy, send_resolved, counters, shutdown }
    }

    /// This integration's counters.
    pub fn counters(&self) -> &Arc<Counters> {
        &self.counters
    }

    async fn run(&self, n: &Notification) -> Result<(), ReceiverError> {
        let filtered;
        let n = if self.send_resolved {
            n
        } else {
            match n.firing_only() {
                Some(f) => {
                    filtered = f;
                    &filtered
                }
                // Nothing fires and resolved alerts are not wanted: nothing to send.
                None => return Ok(()),
            }
        };
        let mut backoff = self.policy.initial_backoff;
        let mut attempt = 1u32;
        loop {
            let err = match self.inner.send(n).await {
                Ok(()) => {
                    self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    return Ok(());
                }
                Err(e) => e,
            };
            let wait = match err.retry_after() {
                Some(after) if after > self.policy.max_retry_after => None,
                Some(after) => Some(after),
                None => Some(backoff),
            };
            let Some(wait) = wait.filter(|_| err.is_retryable() && attempt < self.policy.max_attempts) else {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, attempt, "notification failed");
                return Err(err);
            };
            self.counters.retried.fetch_add(1, Ordering::Relaxed);
            tracing::info!(error = %err, attempt, wait_ms = wait.as_millis() as u64, "notification failed; retrying");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.shutdown.cancelled() => {
                    self.counters.failed.fetch_add(1, Ordering::Relaxed);
                    return Err(err);
                }
            }
            backoff = (backoff * 2).min(self.policy.max_backoff);
            attempt += 1;
        }
    }
}

impl Receiver for Retrying {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn integration(&self) -> &'static str {
        self.inner.integration()
    }

    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.run(n))
    }
}

/// What building receivers needs besides their config: the environment (read through a
/// function so tests pass a map), the metrics, the retry policy, the shutdown signal and
/// one shared HTTP client.
pub struct BuildContext {
    /// Looks up an environment variable.
    pub env: Box<dyn Fn(&str) -> Option<String> + Send + Sync>,
    /// Where the counters go.
    pub metrics: Arc<ReceiverMetrics>,
    /// Retries of every integration.
    pub retry: RetryPolicy,
    /// Cancelled on shutdown: retry waits stop.
    pub shutdown: CancellationToken,
    /// The HTTP client of the HTTP receivers (no redirects; timeouts are per request).
    pub http: reqwest::Client,
}

impl Default for BuildContext {
    /// The process environment, [`ReceiverMetrics::global`], the default retry policy.
    fn default() -> Self {
        BuildContext {
            env: Box::new(|k| std::env::var(k).ok()),
            metrics: ReceiverMetrics::global(),
            retry: RetryPolicy::default(),
            shutdown: CancellationToken::new(),
            http: http::client(),
        }
    }
}

impl BuildContext {
    /// Reads a secret from `file` (trailing newline removed) or the variable `env`;
    /// `path` names the field in errors.
    pub(crate) fn secret(
        &self,
        file: Option<&PathBuf>,
        env: Option<&String>,
        path: &str,
        errors: &mut Vec<String>,
    ) -> Option<Secret> {
        if let Some(f) = file {
            return match std::fs::read_to_string(f) {
                Ok(s) => {
                    let s = s.trim_end_matches(['\n', '\r']);
                    if s.is_empty() {
                        errors.push(format!("{path}_file: {} is empty", f.display()));
                        None
                    } else {
                        Some(Secret::new(s))
                    }
                }
                Err(e) => {
                    errors.push(format!("{path}_file: cannot read {}: {e}", f.display()));
                    None
                }
            };
        }
        if let Some(var) = env {
            return match (self.env)(var) {
                Some(v) if !v.is_empty() => Some(Secret::new(v.trim_end_matches(['\n', '\r']))),
                _ => {
                    errors.push(format!("{path}_env: environment variable {var} is not set"));
                    None
                }
            };
        }
        None
    }
}

/// Default `timeout` of a network call.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

pub(crate) fn default_true() -> bool {
    true
}

/// One receiver: a name and its integrations (Alertmanager's `receivers[]`). A receiver
/// with no integration discards what is routed to it (Alertmanager's "null" receiver).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    /// Unique name, referenced by routes.
    pub name: String,
    /// SMTP.
    #[serde(default)]
    pub email_configs: Vec<email::EmailConfig>,
    /// HTTP POST of the Alertmanager v4 JSON payload.
    #[serde(default)]
    pub webhook_configs: Vec<webhook::WebhookConfig>,
    /// Slack incoming webhooks.
    #[serde(default)]
    pub slack_configs: Vec<slack::SlackConfig>,
    /// PagerDuty Events API v2.
    #[serde(default)]
    pub pagerduty_configs: Vec<pagerduty::PagerDutyConfig>,
    /// Hand-off to Alertmanager (`POST /api/v2/alerts`).
    #[serde(default)]
    pub alertmanager_configs: Vec<alertmanager::AlertmanagerConfig>,
    /// JSON lines to a file or stdout.
    #[serde(default)]
    pub file_configs: Vec<file::FileConfig>,
}

impl ReceiverConfig {
    /// Checks what can be checked without I/O; every problem is reported with its path
    /// (`receivers.<name>.<kind>_configs[i].<field>`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut errors = Vec::new();
        self.validate_into(&mut errors);
        if errors.is_empty() { Ok(()) } else { Err(ConfigError(errors)) }
    }

    fn validate_into(&self, errors: &mut Vec<String>) {
        let base = format!("receivers.{}", self.name);
        if self.name.is_empty() {
            errors.push("receivers: name: must not be empty".to_owned());
        }
        for (i, c) in self.email_configs.iter().enumerate() {
            c.validate(&format!("{base}.email_configs[{i}]"), errors);
        }
        for (i, c) in self.webhook_configs.iter().enumerate() {
            c.validate(&format!("{base}.webhook_configs[{i}]"), errors);
        }
        for (i, c) in self.slack_configs.iter().enumerate() {
            c.validate(&format!("{base}.slack_configs[{i}]"), errors);
        }
        for (i, c) in self.pagerduty_configs.iter().enumerate() {
            c.validate(&format!("{base}.pagerduty_configs[{i}]"), errors);
        }
        for (i, c) in self.alertmanager_configs.iter().enumerate() {
            c.validate(&format!("{base}.alertmanager_configs[{i}]"), errors);
        }
        for (i, c) in self.file_configs.iter().enumerate() {
            c.validate(&format!("{base}.file_configs[{i}]"), errors);
        }
    }

    /// Builds every integration with the process environment and the global metrics
    /// (see [`ReceiverConfig::build_with`], which also says which send resolved alerts).
    pub fn build(&self) -> Result<Vec<Arc<dyn Receiver>>, ConfigError> {
        Ok(self.build_with(&BuildContext::default())?.into_iter().map(|(r, _)| r).collect())
    }

    /// Validates, reads the secrets and builds one [`Retrying`] receiver per integration,
    /// in configuration order (email, webhook, Slack, PagerDuty, Alertmanager, file), each
    /// with its `send_resolved` (what the notifier's deduplication needs).
    pub fn build_with(&self, ctx: &BuildContext) -> Result<Vec<(Arc<dyn Receiver>, bool)>, ConfigError> {
        let mut errors = Vec::new();
        self.validate_into(&mut errors);
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        let base = format!("receivers.{}", self.name);
        let mut built: Vec<(Arc<dyn Receiver>, bool)> = Vec::new();
        let mut push = |r: Option<(Arc<dyn Receiver>, bool)>| built.extend(r);
        for (i, c) in self.email_configs.iter().enumerate() {
            push(c.build(&self.name, ctx, &format!("{base}.email_configs[{i}]"), &mut errors));
        }
        for (i, c) in self.webhook_configs.iter().enumerate() {
            push(c.build(&self.name, ctx, &format!("{base}.webhook_configs[{i}]"), &mut errors));
        }
        for (i, c) in self.slack_configs.iter().enumerate() {
            push(c.build(&self.name, ctx, &format!("{base}.slack_configs[{i}]"), &mut errors));
        }
        for (i, c) in self.pagerduty_configs.iter().enumerate() {
            push(c.build(&self.name, ctx, &format!("{base}.pagerduty_configs[{i}]"), &mut errors));
        }
        for (i, c) in self.alertmanager_configs.iter().enumerate() {
            push(c.build(&self.name, ctx, &format!("{base}.alertmanager_configs[{i}]"), &mut errors));
        }
        for (i, c) in self.file_configs.iter().enumerate() {
            push(c.build(&self.name, ctx, &format!("{base}.file_configs[{i}]"), &mut errors));
        }
        if !errors.is_empty() {
            return Err(ConfigError(errors));
        }
        Ok(built
            .into_iter()
            .map(|(r, send_resolved)| {
                let r: Arc<dyn Receiver> =
                    Arc::new(Retrying::new(r, ctx.retry, send_resolved, &ctx.metrics, ctx.shutdown.clone()));
                (r, send_resolved)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests;
