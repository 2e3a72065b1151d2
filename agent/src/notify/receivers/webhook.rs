//! The webhook receiver: POSTs the Alertmanager webhook payload (version 4) as JSON,
//! exactly what Alertmanager's `webhook_configs` send, so existing webhook consumers work
//! unchanged.
//!
//! ```yaml
//! webhook_configs:
//!   - url_file: /run/secrets/hook-url   # or `url:` inline
//!     max_alerts: 20                    # 0 = all; the rest counted in truncatedAlerts
//!     send_resolved: true
//!     timeout: 10s
//! ```
//!
//! The URL is treated as a secret (it often carries a token): it is never printed.
//! 2xx is success; 408, 429 and 5xx are retried (`Retry-After` honoured); any other
//! status is permanent.

use super::http::{check_status, post_json};
use super::{BuildContext, Receiver, SendFuture, Who, default_timeout, default_true};
use crate::notify::message::Notification;
use serde::Deserialize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warden_collector::pipeline::duration;

/// One `webhook_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The URL (prefer `url_file`; the URL is a secret once it carries a token).
    #[serde(default)]
    pub url: Option<String>,
    /// A file holding the URL.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Send at most this many alerts per notification (0 = all).
    #[serde(default)]
    pub max_alerts: usize,
    /// Notify when alerts resolve (default true).
    #[serde(default = "default_true")]
    pub send_resolved: bool,
    /// Time limit of one request (humantime, default `10s`).
    #[serde(default = "default_timeout", deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
}

impl WebhookConfig {
    pub(crate) fn validate(&self, path: &str, errors: &mut Vec<String>) {
        match (&self.url, &self.url_file) {
            (None, None) => errors.push(format!("{path}: one of url, url_file is required")),
            (Some(_), Some(_)) => errors.push(format!("{path}: url and url_file are mutually exclusive")),
            (Some(u), None) => check_url(u, &format!("{path}.url"), errors),
            (None, Some(_)) => {}
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
        let url = match &self.url {
            Some(u) => u.clone(),
            None => {
                let s = ctx.secret(self.url_file.as_ref(), None, &format!("{path}.url"), errors)?;
                check_url(s.expose(), &format!("{path}.url_file"), errors);
                s.expose().to_owned()
            }
        };
        let r = WebhookReceiver {
            who: Who::new(name, "webhook"),
            url: super::Secret::new(&url),
            max_alerts: self.max_alerts,
            timeout: self.timeout,
            client: ctx.http.clone(),
        };
        Some((Arc::new(r), self.send_resolved))
    }
}

/// Checks that `u` is an http(s) URL, without printing it.
pub(crate) fn check_url(u: &str, path: &str, errors: &mut Vec<String>) {
    match reqwest::Url::parse(u) {
        Ok(url) if matches!(url.scheme(), "http" | "https") => {}
        Ok(_) => errors.push(format!("{path}: must be an http or https URL")),
        Err(e) => errors.push(format!("{path}: invalid URL: {e}")),
    }
}

/// POSTs the v4 payload to one URL.
pub struct WebhookReceiver {
    who: Who,
    url: super::Secret,
    max_alerts: usize,
    timeout: Duration,
    client: reqwest::Client,
}

impl WebhookReceiver {
    async fn post(&self, n: &Notification) -> Result<(), super::ReceiverError> {
        let body = n.truncated(self.max_alerts).to_json();
        let r = post_json(&self.client, &self.who, self.url.expose(), body, self.timeout).await?;
        check_status(&self.who, &r)
    }
}

impl Receiver for WebhookReceiver {
    fn name(&self) -> &str {
        &self.who.receiver
    }

    fn integration(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.post(n))
    }
}
