//! The email receiver: SMTP through `lettre` (tokio, rustls), one message per
//! notification, `multipart/alternative` with a text and an HTML part.
//!
//! ```yaml
//! email_configs:
//!   - to: "oncall@example.org, sre@example.org"
//!     from: "Warden <warden@example.org>"
//!     smarthost: smtp.example.org:587
//!     tls: starttls            # starttls (default, required) | implicit (SMTPS) | none (local relays only)
//!     ca_file: /etc/warden/smtp-ca.pem   # extra trusted root, optional
//!     auth_username: warden
//!     auth_password_file: /run/secrets/smtp   # or auth_password_env
//!     send_resolved: true
//!     timeout: 10s
//! ```
//!
//! The subject is Alertmanager's default (`[FIRING:2] <group label values> (<other
//! common label values>)`, `[RESOLVED] ...`); the bodies list each alert with its labels,
//! annotations and start (HTML-escaped in the HTML part). `tls: none` sends in clear text
//! and is only accepted for a loopback smarthost, and authentication only over TLS, so a
//! password never crosses the network unencrypted. SMTP 4xx replies, timeouts and
//! connection failures are retryable, 5xx replies permanent; errors carry the SMTP code,
//! never an address or the server's text.

use super::{BuildContext, Receiver, ReceiverError, SendFuture, Who, default_timeout};
use crate::notify::alert::AlertStatus;
use crate::notify::message::{Notification, NotificationAlert};
use lettre::message::header::{self, ContentType};
use lettre::message::{Mailbox, Mailboxes, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use warden_collector::pipeline::duration;

/// How the SMTP connection is secured.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain connection upgraded with STARTTLS; refuse to send if the server does not
    /// offer it (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
    /// No TLS (a local relay on a loopback address only).
    None,
}

/// One `email_configs` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// Recipients, comma-separated (`a@x.org, B <b@y.org>`).
    pub to: String,
    /// The sender (`Warden <warden@example.org>`).
    pub from: String,
    /// `host:port` of the SMTP server.
    pub smarthost: String,
    /// Transport security (default `starttls`).
    #[serde(default)]
    pub tls: TlsMode,
    /// A PEM file of extra trusted root certificates (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// The name sent in `EHLO` (default: this host's name).
    #[serde(default)]
    pub hello: Option<String>,
    /// SMTP AUTH user name.
    #[serde(default)]
    pub auth_username: Option<String>,
    /// A file holding the SMTP AUTH password.
    #[serde(default)]
    pub auth_password_file: Option<PathBuf>,
    /// An environment variable holding the SMTP AUTH password.
    #[serde(default)]
    pub auth_password_env: Option<String>,
    /// Notify when alerts resolve (default false, as Alertmanager).
    #[serde(default)]
    pub send_resolved: bool,
    /// Time limit of each SMTP command; the whole session gets four times this
    /// (humantime, default `10s`).
    #[serde(default = "default_timeout", deserialize_with = "duration::deserialize")]
    pub timeout: Duration,
}

impl EmailConfig {
    /// `(host, port)` of the smarthost.
    fn host_port(&self) -> Option<(&str, u16)> {
        let (host, port) = self.smarthost.rsplit_once(':')?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = port.parse().ok()?;
        (!host.is_empty()).then_some((host, port))
    }

    pub(crate) fn validate(&self, path: &str, errors: &mut Vec<String>) {
        if let Err(e) = self.to.parse::<Mailboxes>() {
            errors.push(format!("{path}.to: invalid address list: {e}"));
        } else if self.to.trim().is_empty() {
            errors.push(format!("{path}.to: must not be empty"));
        }
        if let Err(e) = self.from.parse::<Mailbox>() {
            errors.push(format!("{path}.from: invalid address: {e}"));
        }
        let loopback = match self.host_port() {
            None => {
                errors.push(format!("{path}.smarthost: must be host:port"));
                false
            }
            Some((host, _)) => host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        };
        if self.tls == TlsMode::None && !loopback {
            errors.push(format!("{path}.tls: `none` is only allowed for a loopback smarthost"));
        }
        let has_password = self.auth_password_file.is_some() || self.auth_password_env.is_some();
        if self.auth_password_file.is_some() && self.auth_password_env.is_some() {
            errors.push(format!("{path}: auth_password_file and auth_password_env are mutually exclusive"));
        }
        match (&self.auth_username, has_password) {
            (Some(_), false) => {
                errors.push(format!("{path}: auth_username needs auth_password_file or auth_password_env"))
            }
            (None, true) => errors.push(format!("{path}: a password needs auth_username")),
            (Some(_), true) if self.tls == TlsMode::None => {
                errors.push(format!("{path}.tls: authentication needs starttls or implicit"))
            }
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
        let (host, port) = self.host_port()?;
        let to: Mailboxes = self.to.parse().ok()?;
        let from: Mailbox = self.from.parse().ok()?;
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host).port(port).timeout(Some(self.timeout));
        if let Some(h) = &self.hello {
            builder = builder.hello_name(ClientId::Domain(h.clone()));
        }
        if self.tls != TlsMode::None {
            let mut params = TlsParameters::builder(host.to_owned());
            if let Some(ca) = &self.ca_file {
                let pem = match std::fs::read(ca) {
                    Ok(p) => p,
                    Err(e) => {
                        errors.push(format!("{path}.ca_file: cannot read {}: {e}", ca.display()));
                        return None;
                    }
                };
                match Certificate::from_pem(&pem) {
                    Ok(c) => params = params.add_root_certificate(c),
                    Err(_) => {
                        errors.push(format!("{path}.ca_file: {} is not a PEM certificate", ca.display()));
                        return None;
                    }
                }
            }
            let params = match params.build() {
                Ok(p) => p,
                Err(_) => {
                    errors.push(format!("{path}.tls: cannot set up TLS for the smarthost"));
                    return None;
                }
            };
            builder = builder.tls(match self.tls {
                TlsMode::Implicit => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        }
        if let Some(user) = &self.auth_username {
            let password = ctx.secret(
                self.auth_password_file.as_ref(),
                self.auth_password_env.as_ref(),
                &format!("{path}.auth_password"),
                errors,
            )?;
            builder = builder.credentials(Credentials::new(user.clone(), password.expose().to_owned()));
        }
        let r = EmailReceiver {
            who: Who::new(name, "email"),
            transport: builder.build(),
            to,
            from,
            session_timeout: self.timeout * 4,
        };
        Some((Arc::new(r), self.send_resolved))
    }
}

/// Sends one email per notification.
pub struct EmailReceiver {
    who: Who,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    to: Mailboxes,
    from: Mailbox,
    session_timeout: Duration,
}

impl EmailReceiver {
    /// The message for `n`.
    pub fn message(&self, n: &Notification) -> Result<Message, ReceiverError> {
        Message::builder()
            .from(self.from.clone())
            .mailbox(header::To::from(self.to.clone()))
            .subject(n.subject())
            .message_id(None)
            .multipart(
                MultiPart::alternative()
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text_body(n)))
                    .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html_body(n))),
            )
            .map_err(|_| self.who.permanent("cannot build the message"))
    }

    async fn deliver(&self, n: &Notification) -> Result<(), ReceiverError> {
        let msg = self.message(n)?;
        match tokio::time::timeout(self.session_timeout, self.transport.send(msg)).await {
            Err(_) => Err(self.who.retryable("timed out")),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.smtp_error(&e)),
        }
    }

    /// Describes an SMTP error by its code or kind; the server's text may echo addresses.
    fn smtp_error(&self, e: &lettre::transport::smtp::Error) -> ReceiverError {
        if let Some(code) = e.status() {
            let status = format!("SMTP {code}");
            return if e.is_permanent() { self.who.permanent(status) } else { self.who.retryable(status) };
        }
        // The TLS stream reports a failed handshake (an untrusted certificate, a name
        // mismatch) as an I/O error of kind `InvalidData` under a connection error.
        let io_kind = std::iter::successors(std::error::Error::source(e), |s| s.source())
            .find_map(|s| s.downcast_ref::<std::io::Error>())
            .map(std::io::Error::kind);
        if e.is_timeout() {
            self.who.retryable("timed out")
        } else if e.is_tls() || io_kind == Some(std::io::ErrorKind::InvalidData) {
            self.who.retryable("TLS handshake failed")
        } else if e.is_client() {
            self.who.permanent("SMTP client error (server lacks a required extension such as STARTTLS or AUTH)")
        } else if e.is_response() {
            self.who.retryable("invalid SMTP response")
        } else {
            self.who.retryable("connection failed")
        }
    }
}

impl Receiver for EmailReceiver {
    fn name(&self) -> &str {
        &self.who.receiver
    }

    fn integration(&self) -> &'static str {
        "email"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        Box::pin(self.deliver(n))
    }
}

/// The plain-text body.
pub fn text_body(n: &Notification) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "{}\n", n.subject());
    let firing = n.firing().count();
    let resolved = n.resolved().count();
    let _ = writeln!(s, "{firing} firing, {resolved} resolved (receiver {})", n.receiver());
    if n.truncated_alerts() > 0 {
        let _ = writeln!(s, "{} more alert(s) not shown", n.truncated_alerts());
    }
    for (title, status) in [("Firing", AlertStatus::Firing), ("Resolved", AlertStatus::Resolved)] {
        let alerts: Vec<&NotificationAlert> = n.alerts().iter().filter(|a| a.status() == status).collect();
        if alerts.is_empty() {
            continue;
        }
        let _ = writeln!(s, "\n{title}:");
        for a in alerts {
            let _ = writeln!(s, "\n- {} (started {})", a.alertname(), a.starts_at());
            if status == AlertStatus::Resolved {
                let _ = writeln!(s, "  resolved {}", a.ends_at());
            }
            let _ = writeln!(s, "  Labels:");
            for (k, v) in a.labels() {
                let _ = writeln!(s, "    {k} = {v}");
            }
            if !a.annotations().is_empty() {
                let _ = writeln!(s, "  Annotations:");
                for (k, v) in a.annotations() {
                    let _ = writeln!(s, "    {k}: {v}");
                }
            }
            if !a.generator_url().is_empty() {
                let _ = writeln!(s, "  Source: {}", a.generator_url());
            }
        }
    }
    if !n.external_url().is_empty() {
        let _ = writeln!(s, "\nSent by Warden: {}", n.external_url());
    }
    s
}

/// The HTML body; every value is escaped.
pub fn html_body(n: &Notification) -> String {
    let e = escape_html;
    let mut s = String::from("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>");
    s.push_str(&e(&n.subject()));
    s.push_str("</title></head>\n<body style=\"font-family: sans-serif\">\n");
    let _ = writeln!(s, "<h2>{}</h2>", e(&n.subject()));
    let _ = writeln!(
        s,
        "<p>{} firing, {} resolved (receiver {})</p>",
        n.firing().count(),
        n.resolved().count(),
        e(n.receiver())
    );
    if n.truncated_alerts() > 0 {
        let _ = writeln!(s, "<p>{} more alert(s) not shown</p>", n.truncated_alerts());
    }
    for (title, status, colour) in
        [("Firing", AlertStatus::Firing, "#c62828"), ("Resolved", AlertStatus::Resolved, "#2e7d32")]
    {
        let alerts: Vec<&NotificationAlert> = n.alerts().iter().filter(|a| a.status() == status).collect();
        if alerts.is_empty() {
            continue;
        }
        let _ = writeln!(s, "<h3 style=\"color: {colour}\">{title}</h3>\n<ul>");
        for a in alerts {
            let _ = write!(s, "<li><strong>{}</strong> started {}", e(a.alertname()), e(&a.starts_at()));
            if status == AlertStatus::Resolved {
                let _ = write!(s, ", resolved {}", e(&a.ends_at()));
            }
            s.push_str("\n<table>\n");
            for (k, v) in a.labels() {
                let _ = writeln!(s, "<tr><td>{}</td><td><code>{}</code></td></tr>", e(k), e(v));
            }
            s.push_str("</table>\n");
            if !a.annotations().is_empty() {
                s.push_str("<dl>\n");
                for (k, v) in a.annotations() {
                    let _ = writeln!(s, "<dt>{}</dt><dd>{}</dd>", e(k), e(v));
                }
                s.push_str("</dl>\n");
            }
            // Only http(s) links: a `javascript:` URL must not become a link.
            if is_http(a.generator_url()) {
                let _ = writeln!(s, "<a href=\"{}\">Source</a>", e(a.generator_url()));
            }
            s.push_str("</li>\n");
        }
        s.push_str("</ul>\n");
    }
    if is_http(n.external_url()) {
        let _ = writeln!(s, "<p>Sent by <a href=\"{0}\">Warden</a></p>", e(n.external_url()));
    }
    s.push_str("</body></html>\n");
    s
}

/// True for an `http://` or `https://` URL (case-insensitive scheme).
fn is_http(url: &str) -> bool {
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    lower.starts_with("http://") || lower.starts_with("https://")
}

/// Escapes `& < > " '` for HTML text and attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
