//! The email receiver against a real SMTP server: `aiosmtpd` (Python) on 127.0.0.1, run
//! by `tests/python/smtp_sink.py`, which saves every message with a parse by Python's
//! standard `email` package (an independent MIME parser). Covered: plain SMTP to a local
//! relay, STARTTLS with AUTH against a private CA (certificates made here with rcgen),
//! implicit TLS (SMTPS), and how SMTP replies map to errors.
//!
//! Needs a Python with `aiosmtpd` (`WARDEN_PYTHON`, else `python3` or
//! `$HOME/.cache/warden-venv/bin/python`); skipped with a reason otherwise, and failing
//! under `WARDEN_REQUIRE_SERVICES=1`.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden::notify::alert::{AlertStatus, NotifyAlert};
use warden::notify::message::Notification;
use warden::notify::receivers::{BuildContext, Receiver, ReceiverConfig, ReceiverMetrics, RetryPolicy};
use warden_collector::redact::Redactor;
use warden_rules::labels::Labels;
use warden_testkit::{TempDir, free_port, wait_for_port};

const SSN: &str = "123-45-6789";
const PATIENT_EMAIL: &str = "jane.doe@example.org";

/// A Python that can import aiosmtpd.
fn python() -> Option<PathBuf> {
    let importable = |py: &Path| {
        Command::new(py)
            .args(["-c", "import aiosmtpd"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let mut candidates = Vec::new();
    if let Some(p) = warden_testkit::find_program("WARDEN_PYTHON", &["python3"]) {
        candidates.push(p);
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".cache/warden-venv/bin/python"));
    }
    let found = candidates.into_iter().find(|p| importable(p));
    warden_testkit::require(
        "email receiver tests against aiosmtpd",
        found,
        "no python with aiosmtpd (set WARDEN_PYTHON; pip install aiosmtpd)",
    )
}

/// The running SMTP sink; killed on drop (and it exits when our stdin pipe closes).
struct Sink {
    child: std::process::Child,
    port: u16,
    out: PathBuf,
}

impl Sink {
    fn start(py: &Path, dir: &Path, extra: &[&str]) -> Sink {
        let port = free_port();
        let out = dir.join(format!("mail-{port}"));
        std::fs::create_dir_all(&out).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/smtp_sink.py");
        let child = Command::new(py)
            .arg(&script)
            .args(["--port", &port.to_string(), "--out", out.to_str().unwrap()])
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start smtp_sink.py");
        assert!(wait_for_port(port, Duration::from_secs(20)), "smtp sink did not listen on {port}");
        Sink { child, port, out }
    }

    /// The first `n` messages (envelope + parse), waiting up to 10 s for them.
    fn messages(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let mut emls: Vec<PathBuf> = std::fs::read_dir(&self.out)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "eml"))
                .collect();
            if emls.len() >= n || Instant::now() > deadline {
                emls.sort();
                return emls
                    .iter()
                    .map(|p| {
                        let mut v: Value =
                            serde_json::from_str(&std::fs::read_to_string(p.with_extension("json")).unwrap()).unwrap();
                        v["raw"] = Value::String(String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned());
                        v
                    })
                    .collect();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ctx(attempts: u32) -> BuildContext {
    BuildContext {
        metrics: Arc::new(ReceiverMetrics::default()),
        retry: RetryPolicy {
            max_attempts: attempts,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(1),
        },
        ..BuildContext::default()
    }
}

fn build(yaml: &str, attempts: u32) -> Arc<dyn Receiver> {
    let cfg: ReceiverConfig = serde_saphyr::from_str(yaml).unwrap();
    cfg.build_with(&ctx(attempts)).unwrap().remove(0).0
}

fn alert(instance: &str, status: AlertStatus) -> NotifyAlert {
    let labels = Labels::from_pairs(&[
        ("alertname", "HighLatency"),
        ("instance", instance),
        ("severity", "critical"),
        ("service", "api"),
    ]);
    let ann = Labels::from_pairs(&[
        ("summary", format!("p99 latency high for patient {SSN}").as_str()),
        ("description", format!("ask {PATIENT_EMAIL} about <script>x</script>").as_str()),
    ]);
    let end = (status == AlertStatus::Resolved).then_some(1_714_557_900_000);
    NotifyAlert::new(labels, ann, status, 1_714_557_600_000, end)
}

fn notification(alerts: &[NotifyAlert]) -> Notification {
    Notification::build(
        &Redactor::default_mask(),
        "oncall",
        "{}:{alertname=\"HighLatency\"}",
        &Labels::from_pairs(&[("alertname", "HighLatency")]),
        alerts,
        "http://127.0.0.1:9464",
    )
}

fn parts(m: &Value) -> Vec<(String, String)> {
    m["message"]["parts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["content_type"].as_str().unwrap().to_owned(), p["content"].as_str().unwrap().to_owned()))
        .collect()
}

fn assert_no_phi(text: &str) {
    assert!(!text.contains(SSN) && !text.contains("45-6789"), "SSN leaked");
    assert!(!text.contains(PATIENT_EMAIL) && !text.contains("jane.doe"), "patient email leaked");
}

#[tokio::test]
async fn plain_smtp_multipart_content_subject_and_no_phi() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("email-plain");
    let sink = Sink::start(&py, dir.path(), &[]);
    let r = build(
        &format!(
            "name: oncall\nemail_configs:\n  - to: 'oncall@example.org, SRE Team <sre@example.org>'\n    from: 'Warden <warden@example.org>'\n    smarthost: 127.0.0.1:{}\n    tls: none\n    send_resolved: true\n",
            sink.port
        ),
        1,
    );
    r.send(&notification(&[alert("api-1:8080", AlertStatus::Firing), alert("api-2:8080", AlertStatus::Firing)]))
        .await
        .unwrap();
    r.send(&notification(&[alert("api-1:8080", AlertStatus::Resolved), alert("api-2:8080", AlertStatus::Resolved)]))
        .await
        .unwrap();

    let msgs = sink.messages(2);
    assert_eq!(msgs.len(), 2);
    let m = &msgs[0];
    assert_eq!(m["mail_from"], "warden@example.org");
    assert_eq!(m["rcpt_tos"], serde_json::json!(["oncall@example.org", "sre@example.org"]));
    assert_eq!(m["tls"], false);
    let msg = &m["message"];
    assert_eq!(msg["subject"], "[FIRING:2] HighLatency (api critical)");
    assert_eq!(msg["from"], "Warden <warden@example.org>");
    assert_eq!(msg["to"], "oncall@example.org, SRE Team <sre@example.org>");
    assert_eq!(msg["mime_version"], "1.0");
    assert_ne!(msg["date"], "None");
    assert_ne!(msg["message_id"], "None");
    assert_eq!(msg["content_type"], "multipart/alternative");
    let p = parts(m);
    let types: Vec<&str> = p.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(types, ["text/plain", "text/html"]);
    let (text, html) = (&p[0].1, &p[1].1);
    for body in [text, html] {
        assert!(body.contains("HighLatency"));
        assert!(body.contains("api-1:8080") && body.contains("api-2:8080"));
        assert!(body.contains("2024-05-01T10:00:00Z"));
        assert!(body.contains("[REDACTED:SSN]"), "{body}");
        assert!(body.contains("[REDACTED:EMAIL]"), "{body}");
        assert!(body.contains("http://127.0.0.1:9464"));
    }
    assert!(text.contains("instance = api-1:8080") && text.contains("summary: p99 latency high"));
    assert!(text.contains("2 firing, 0 resolved"));
    // HTML-escaped: the annotation's markup is text, not markup.
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;") && !html.contains("<script>"), "{html}");
    assert!(html.contains("<td>instance</td><td><code>api-1:8080</code></td>"));
    assert_no_phi(m["raw"].as_str().unwrap());

    let resolved = &msgs[1]["message"];
    assert_eq!(resolved["subject"], "[RESOLVED] HighLatency (api critical)");
    let p = parts(&msgs[1]);
    assert!(p[0].1.contains("0 firing, 2 resolved") && p[0].1.contains("resolved 2024-05-01T10:05:00Z"));
    assert_no_phi(msgs[1]["raw"].as_str().unwrap());
}

#[tokio::test]
async fn send_resolved_false_sends_no_resolved_mail() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("email-noresolved");
    let sink = Sink::start(&py, dir.path(), &[]);
    let r = build(
        &format!(
            "name: oncall\nemail_configs:\n  - to: oncall@example.org\n    from: warden@example.org\n    smarthost: 127.0.0.1:{}\n    tls: none\n",
            sink.port
        ),
        1,
    );
    r.send(&notification(&[alert("api-1:8080", AlertStatus::Resolved)])).await.unwrap();
    r.send(&notification(&[alert("api-1:8080", AlertStatus::Firing), alert("api-2:8080", AlertStatus::Resolved)]))
        .await
        .unwrap();
    let msgs = sink.messages(2);
    // Only the second, and only its firing alert.
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["message"]["subject"], "[FIRING:1] HighLatency (api-1:8080 api critical)");
    assert!(!parts(&msgs[0])[0].1.contains("api-2:8080"));
}

/// A private CA and a server certificate for 127.0.0.1 (PEM files in `dir`).
fn pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.distinguished_name.push(DnType::CommonName, "warden test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.distinguished_name.push(DnType::CommonName, "smtp sink");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let (ca, crt, k) = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"));
    std::fs::write(&ca, ca_cert.pem()).unwrap();
    std::fs::write(&crt, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (ca, crt, k)
}

#[tokio::test]
async fn starttls_with_auth_against_a_private_ca() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("email-starttls");
    let (ca, crt, key) = pki(dir.path());
    let sink = Sink::start(
        &py,
        dir.path(),
        &["--starttls", crt.to_str().unwrap(), key.to_str().unwrap(), "--auth", "warden:s3cr3t-pw"],
    );
    let pw = dir.path().join("smtp-password");
    std::fs::write(&pw, "s3cr3t-pw\n").unwrap();
    let yaml = |pw_file: &Path| {
        format!(
            "name: oncall\nemail_configs:\n  - to: oncall@example.org\n    from: warden@example.org\n    smarthost: 127.0.0.1:{}\n    tls: starttls\n    ca_file: {}\n    auth_username: warden\n    auth_password_file: {}\n",
            sink.port,
            ca.display(),
            pw_file.display()
        )
    };
    let r = build(&yaml(&pw), 1);
    r.send(&notification(&[alert("api-1:8080", AlertStatus::Firing)])).await.unwrap();
    let msgs = sink.messages(1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["tls"], true, "message was not sent over STARTTLS");
    assert_eq!(msgs[0]["login"], "warden");
    assert_eq!(msgs[0]["message"]["subject"], "[FIRING:1] HighLatency (api-1:8080 api critical)");

    // A wrong password: SMTP 535, permanent, and the password is not in the error.
    let bad = dir.path().join("bad-password");
    std::fs::write(&bad, "wrong-pw-XYZ").unwrap();
    let r = build(&yaml(&bad), 3);
    let err = r.send(&notification(&[alert("api-1:8080", AlertStatus::Firing)])).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().starts_with("email receiver \"oncall\": SMTP 535"), "{err}");
    assert!(!err.to_string().contains("wrong-pw-XYZ"));

    // Without the private CA the server is not trusted: no mail goes out in clear text.
    let r = build(
        &format!(
            "name: oncall\nemail_configs:\n  - to: oncall@example.org\n    from: warden@example.org\n    smarthost: 127.0.0.1:{}\n    auth_username: warden\n    auth_password_file: {}\n",
            sink.port,
            pw.display()
        ),
        1,
    );
    let err = r.send(&notification(&[alert("api-1:8080", AlertStatus::Firing)])).await.unwrap_err();
    assert_eq!(err.to_string(), "email receiver \"oncall\": TLS handshake failed");
    assert_eq!(sink.messages(1).len(), 1);
}

#[tokio::test]
async fn starttls_required_but_not_offered_fails_without_sending() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("email-nostarttls");
    let sink = Sink::start(&py, dir.path(), &[]);
    let r = build(
        &format!(
            "name: oncall\nemail_configs:\n  - to: oncall@example.org\n    from: warden@example.org\n    smarthost: 127.0.0.1:{}\n",
            sink.port
        ),
        1,
    );
    let err = r.send(&notification(&[alert("api-1:8080", AlertStatus::Firing)])).await.unwrap_err();
    assert!(!err.is_retryable(), "{err}");
    assert!(err.to_string().starts_with("email receiver \"oncall\": SMTP client error"), "{err}");
    assert!(sink.messages(0).is_empty());
}

#[tokio::test]
async fn implicit_tls() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("email-smtps");
    let (ca, crt, key) = pki(dir.path());
    let sink = Sink::start(&py, dir.path(), &["--implicit-tls", crt.to_str().unwrap(), key.to_str().unwrap()]);
    let r = build(
        &format!(
            "name: oncall\nemail_configs:\n  - to: oncall@example.org\n    from: warden@example.org\n    smarthost: 127.0.0.1:{}\n    tls: implicit\n    ca_file: {}\n",
            sink.port,
            ca.display()
        ),
        1,
    );
    r.send(&notification(&[alert("api-1:8080", AlertStatus::Firing)])).await.unwrap();
    let msgs = sink.messages(1);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0]["tls"], true);
}

#[tokio::test]
async fn smtp_replies_map_to_permanent_and_retryable_without_addresses() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("email-replies");
    let sink = Sink::start(&py, dir.path(), &[]);
    let cfg = |to: &str| {
        format!(
            "name: oncall\nemail_configs:\n  - to: {to}\n    from: warden@example.org\n    smarthost: 127.0.0.1:{}\n    tls: none\n",
            sink.port
        )
    };
    let n = notification(&[alert("api-1:8080", AlertStatus::Firing)]);

    let err = build(&cfg("reject-me@example.org"), 3).send(&n).await.unwrap_err();
    assert_eq!(err.to_string(), "email receiver \"oncall\": SMTP 550");
    assert!(!err.is_retryable());

    let started = Instant::now();
    let err = build(&cfg("tempfail@example.org"), 3).send(&n).await.unwrap_err();
    assert_eq!(err.to_string(), "email receiver \"oncall\": SMTP 451");
    assert!(err.is_retryable());
    // Retried with backoff (50 ms + 100 ms) before giving up.
    assert!(started.elapsed() >= Duration::from_millis(150));

    // Nothing listening: connection failed, retryable.
    let port = free_port();
    let r = build(
        &format!(
            "name: oncall\nemail_configs:\n  - to: a@example.org\n    from: warden@example.org\n    smarthost: 127.0.0.1:{port}\n    tls: none\n"
        ),
        1,
    );
    let err = r.send(&n).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(sink.messages(0).is_empty());
}
