//! The Slack receiver: an incoming webhook (`https://hooks.slack.com/services/...`) with a
//! Block Kit message and a `text` fallback (what notifications and screen readers show).
//!
//! ```yaml
//! slack_configs:
//!   - api_url_file: /run/secrets/slack-webhook   # or api_url_env: SLACK_WEBHOOK_URL
//!     channel: "#oncall"                         # legacy webhooks only; optional
//!     send_resolved: true
//! ```
//!
//! The message: a `header` block (the Alertmanager-style title, ≤ 150 characters), one
//! `section` per alert (mrkdwn: name, status, summary/description, labels, start; ≤ 3000
//! characters; at most [`MAX_ALERT_SECTIONS`], then one section counting the rest) and a
//! `context` block (receiver, counts, link to the agent), within Slack's 50-block limit.
//! Text is escaped as Slack asks (`&`, `<`, `>`), so an annotation cannot inject links or
//! mentions. The webhook URL is a secret (it is the credential) and is never printed.
//! Slack answers `200 ok`; 429 carries `Retry-After`; other 4xx (`invalid_payload`,
//! `channel_not_found`, ...) are permanent.

use super::http::{check_status, post_json};
use super::{BuildContext, Receiver, SendFuture, Who, default_timeout};
use crate::notify::alert::AlertStatus;
use crate::notify::message::{Notification, NotificationAlert};
use serde::Deserialize;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warden_collector::pipeline::duration;

/// Alert sections per message (Slack allows 50 blocks: header, sections, "more", context).
pub const MAX_ALERT_SECTIONS: usize = 40;
/// Slack's limit on a header block's text.
const HEADER_MAX: usize = 150;
/// Slack's limit on a section's text.
const SECTION_MAX: usize = 3000;
/// Characters of the top-level `text` fallback sent at most.
const TEXT_MAX: usize = 3000;

/// One `slack_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// A file holding the incoming-webhook URL.
    #[serde(default)]
    pub api_url_file: Option<PathBuf>,
    /// An environment variable holding the incoming-webhook URL.
    #[serde(default)]
    pub api_url_env: Option<String>,
    /// Channel override (legacy webhooks; new app webhooks post to their own channel).
    #[serde(default)]
    pub channel: Option<String>,
    /// Username override (legacy webhooks).
    #[serde(default)]
    pub username: Option<String>,
    /// Emoji icon override (legacy webhooks), e.g. `:rotating_light:`.
    #[serde(default)]
    pub icon_emoji: Option<String>,
    /// Notify when alerts resolve (default false, as Alertmanager).
    #[serde(default)]
    pub send_resolved: bool,
    /// Time limit of one request (humantime, default `10s`).
    #[serde(default = "default_timeout", deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
}

impl SlackConfig {
    pub(crate) fn validate(&self, path: &str, errors: &mut Vec<String>) {
        match (&self.api_url_file, &self.api_url_env) {
            (None, None) => errors.push(format!("{path}: one of api_url_file, api_url_env is required")),
            (Some(_), Some(_)) => errors.push(format!("{path}: api_url_file and api_url_env are mutually exclusive")),
            _ => {}
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
        let url =
            ctx.secret(self.api_url_file.as_ref(), self.api_url_env.as_ref(), &format!("{path}.api_url"), errors)?;
        super::webhook::check_url(url.expose(), &format!("{path}.api_url"), errors);
        let r = SlackReceiver {
            who: Who::new(name, "slack"),
            url,
            channel: self.channel.clone(),
            username: self.username.clone(),
            icon_emoji: self.icon_emoji.clone(),
            timeout: self.timeout,
            client: ctx.http.clone(),
        };
        Some((Arc::new(r), self.send_resolved))
    }
}

/// Posts Block Kit messages to a Slack incoming webhook.
pub struct SlackReceiver {
    who: Who,
    url: super::Secret,
    channel: Option<String>,
    username: Option<String>,
    icon_emoji: Option<String>,
    timeout: Duration,
    client: reqwest::Client,
}

impl SlackReceiver {
    /// The JSON body for `n`.
    pub fn payload(&self, n: &Notification) -> Value {
        let mut v = message(n);
        if let Some(o) = v.as_object_mut() {
            for (k, val) in [("channel", &self.channel), ("username", &self.username), ("icon_emoji", &self.icon_emoji)]
            {
                if let Some(val) = val {
                    o.insert(k.to_owned(), Value::String(val.clone()));
                }
            }
        }
        v
    }

    async fn post(&self, n: &Notification) -> Result<(), super::ReceiverError> {
        let body = serde_json::to_vec(&self.payload(n)).unwrap_or_default();
        let r = post_json(&self.client, &self.who, self.url.expose(), body, self.timeout).await?;
        check_status(&self.who, &r)
    }
}

impl Receiver for SlackReceiver {
    fn name(&self) -> &str {
        &self.who.receiver
    }

    fn integration(&self) -> &'static str {
        "slack"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.post(n))
    }
}

/// The Block Kit message of `n` (`text` + `blocks`).
pub fn message(n: &Notification) -> Value {
    let subject = n.subject();
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": truncate(&subject, HEADER_MAX), "emoji": true},
    })];
    for a in n.alerts().iter().take(MAX_ALERT_SECTIONS) {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": truncate(&section(a), SECTION_MAX)},
        }));
    }
    let more = n.alerts().len().saturating_sub(MAX_ALERT_SECTIONS) + n.truncated_alerts();
    if more > 0 {
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": format!("_…and {more} more alert(s)_")},
        }));
    }
    let firing = n.firing().count();
    let resolved = n.resolved().count();
    let mut ctx = format!("Warden · receiver {} · {firing} firing, {resolved} resolved", escape(n.receiver()));
    if !n.external_url().is_empty() {
        ctx.push_str(&format!(" · <{}|open Warden>", escape(n.external_url())));
    }
    blocks.push(json!({
        "type": "context",
        "elements": [{"type": "mrkdwn", "text": truncate(&ctx, SECTION_MAX)}],
    }));
    json!({ "text": truncate(&subject, TEXT_MAX), "blocks": blocks })
}

/// One alert as mrkdwn.
fn section(a: &NotificationAlert) -> String {
    let (icon, state) = match a.status() {
        AlertStatus::Firing => (":red_circle:", "firing"),
        AlertStatus::Resolved => (":large_green_circle:", "resolved"),
    };
    let mut s = format!("{icon} *{}* ({state})", escape(a.alertname()));
    for key in ["summary", "description"] {
        if let Some(v) = a.annotations().get(key) {
            s.push('\n');
            s.push_str(&escape(v));
        }
    }
    let labels: Vec<String> =
        a.labels().iter().filter(|(k, _)| *k != "alertname").map(|(k, v)| format!("`{k}={}`", escape(v))).collect();
    if !labels.is_empty() {
        s.push_str("\n*Labels:* ");
        s.push_str(&labels.join(" "));
    }
    s.push_str(&format!("\n*Started:* {}", a.starts_at()));
    if a.status() == AlertStatus::Resolved {
        s.push_str(&format!(" · *Resolved:* {}", a.ends_at()));
    }
    s
}

/// Slack's escaping of `&`, `<` and `>` in message text.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}
