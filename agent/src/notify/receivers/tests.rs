//! Unit tests of the receivers: configuration, secrets, the retry wrapper, and the pure
//! payload builders. Delivery to real peers is tested in `agent/tests/`.

use super::*;
use crate::notify::alert::{AlertStatus, NotifyAlert};
use crate::notify::message::Notification;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::time::Instant;
use warden_collector::redact::Redactor;
use warden_rules::labels::Labels;

fn parse(yaml: &str) -> Result<ReceiverConfig, String> {
    serde_saphyr::from_str(yaml).map_err(|e| e.to_string())
}

fn ctx_with_env(env: &[(&str, &str)]) -> BuildContext {
    let map: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    BuildContext {
        env: Box::new(move |k| map.get(k).cloned()),
        metrics: Arc::new(ReceiverMetrics::default()),
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(40),
            max_retry_after: Duration::from_secs(2),
        },
        shutdown: CancellationToken::new(),
        http: http::client(),
    }
}

fn notification(statuses: &[AlertStatus]) -> Notification {
    let alerts: Vec<NotifyAlert> = statuses
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let end = (*st == AlertStatus::Resolved).then_some(2_000);
            NotifyAlert::new(
                Labels::from_pairs(&[("alertname", "A"), ("i", &i.to_string())]),
                Labels::empty(),
                *st,
                1_000,
                end,
            )
        })
        .collect();
    Notification::build(&Redactor::default_mask(), "team", "{}:{}", &Labels::empty(), &alerts, "")
}

#[test]
fn config_parses_alertmanager_style_and_rejects_unknown_fields() {
    let c = parse(
        "name: oncall\n\
         webhook_configs:\n  - url: http://127.0.0.1:1/hook\n    max_alerts: 5\n\
         slack_configs:\n  - api_url_env: SLACK_URL\n    channel: '#ops'\n\
         pagerduty_configs:\n  - routing_key_env: PD_KEY\n    timeout: 3s\n\
         alertmanager_configs:\n  - urls: [http://127.0.0.1:9093]\n\
         file_configs:\n  - path: '-'\n\
         email_configs:\n  - to: a@example.org\n    from: w@example.org\n    smarthost: 127.0.0.1:25\n    tls: none\n",
    )
    .unwrap();
    assert_eq!(c.webhook_configs[0].max_alerts, 5);
    assert!(c.webhook_configs[0].send_resolved);
    assert!(!c.slack_configs[0].send_resolved);
    assert_eq!(c.pagerduty_configs[0].timeout, Duration::from_secs(3));
    assert_eq!(c.pagerduty_configs[0].url, pagerduty::DEFAULT_URL);
    assert_eq!(c.email_configs[0].tls, email::TlsMode::None);
    let ctx = ctx_with_env(&[("SLACK_URL", "http://127.0.0.1:1/services/T/B/X"), ("PD_KEY", "k")]);
    let built = c.build_with(&ctx).unwrap();
    let kinds: Vec<(&str, &str, bool)> = built.iter().map(|(r, sr)| (r.name(), r.integration(), *sr)).collect();
    assert_eq!(
        kinds,
        [
            ("oncall", "email", false),
            ("oncall", "webhook", true),
            ("oncall", "slack", false),
            ("oncall", "pagerduty", true),
            ("oncall", "alertmanager", true),
            ("oncall", "file", true),
        ]
    );

    let err = parse("name: x\nwebhook_configs:\n  - url: http://a\n    urll: http://b\n").unwrap_err();
    assert!(err.contains("urll"), "{err}");
    let err = parse("name: x\nsms_configs: []\n").unwrap_err();
    assert!(err.contains("sms_configs"), "{err}");
}

#[test]
fn validation_reports_every_problem_with_its_path() {
    let c = parse(
        "name: team\n\
         webhook_configs:\n  - max_alerts: 1\n  - url: ftp://x\n\
         slack_configs:\n  - channel: '#a'\n\
         pagerduty_configs:\n  - routing_key_env: A\n    routing_key_file: /b\n\
         alertmanager_configs:\n  - urls: []\n\
         file_configs:\n  - path: /tmp/x\n    max_bytes: 10\n\
         email_configs:\n  - to: 'not an address'\n    from: w@example.org\n    smarthost: smtp.example.org:25\n    tls: none\n    auth_username: u\n",
    )
    .unwrap();
    let errs = c.validate().unwrap_err().0;
    let want = [
        "receivers.team.email_configs[0].to: invalid address list",
        "receivers.team.email_configs[0].tls: `none` is only allowed for a loopback smarthost",
        "receivers.team.email_configs[0]: auth_username needs auth_password_file or auth_password_env",
        "receivers.team.webhook_configs[0]: one of url, url_file is required",
        "receivers.team.webhook_configs[1].url: must be an http or https URL",
        "receivers.team.slack_configs[0]: one of api_url_file, api_url_env is required",
        "receivers.team.pagerduty_configs[0]: routing_key_file and routing_key_env are mutually exclusive",
        "receivers.team.alertmanager_configs[0].urls: at least one URL is required",
        "receivers.team.file_configs[0].max_bytes: must be >= 4096",
    ];
    for w in want {
        assert!(errs.iter().any(|e| e.starts_with(w)), "missing {w:?} in {errs:#?}");
    }
    assert_eq!(errs.len(), want.len(), "{errs:#?}");
}

#[test]
fn secrets_come_from_files_or_env_and_never_show() {
    let dir = std::env::temp_dir().join(format!("warden-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("url");
    std::fs::write(&file, "http://127.0.0.1:1/services/T0/B0/SUPERSECRET\n").unwrap();
    let yaml = format!("name: s\nslack_configs:\n  - api_url_file: {}\n", file.display());
    let c = parse(&yaml).unwrap();
    assert_eq!(c.build_with(&ctx_with_env(&[])).unwrap().len(), 1);

    // A file that does not hold a URL: the error names the field, not the content.
    std::fs::write(&file, "SUPERSECRET is not a url").unwrap();
    let err = parse(&yaml).unwrap().build_with(&ctx_with_env(&[])).err().unwrap().to_string();
    assert!(err.contains("receivers.s.slack_configs[0].api_url: invalid URL"), "{err}");
    assert!(!err.contains("SUPERSECRET"), "{err}");

    // A missing variable is named; an empty file is refused.
    let c = parse("name: p\npagerduty_configs:\n  - routing_key_env: PD_KEY\n").unwrap();
    let err = c.build_with(&ctx_with_env(&[])).err().unwrap().to_string();
    assert_eq!(err, "receivers.p.pagerduty_configs[0].routing_key_env: environment variable PD_KEY is not set");
    std::fs::write(&file, "\n").unwrap();
    let c = parse(&format!("name: p\npagerduty_configs:\n  - routing_key_file: {}\n", file.display())).unwrap();
    assert!(c.build_with(&ctx_with_env(&[])).err().unwrap().to_string().ends_with("is empty"));

    let s = Secret::new("SUPERSECRET");
    assert_eq!(format!("{s:?}"), "Secret(<hidden>)");
    assert_eq!(s.expose(), "SUPERSECRET");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A receiver that answers from a script (then succeeds), recording when it was called.
struct Scripted {
    answers: Mutex<Vec<Result<(), ReceiverError>>>,
    calls: AtomicUsize,
    seen_alerts: Mutex<Vec<usize>>,
    times: Mutex<Vec<Instant>>,
}

impl Scripted {
    fn new(answers: Vec<Result<(), ReceiverError>>) -> Arc<Scripted> {
        Arc::new(Scripted {
            answers: Mutex::new(answers),
            calls: AtomicUsize::new(0),
            seen_alerts: Mutex::default(),
            times: Mutex::default(),
        })
    }
}

impl Receiver for Scripted {
    fn name(&self) -> &str {
        "team"
    }

    fn integration(&self) -> &'static str {
        "webhook"
    }

    fn send<'a>(&'a self, n: &'a Notification) -> SendFuture<'a> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.seen_alerts.lock().unwrap().push(n.alerts().len());
        self.times.lock().unwrap().push(Instant::now());
        let mut a = self.answers.lock().unwrap();
        let r = if a.is_empty() { Ok(()) } else { a.remove(0) };
        Box::pin(async move { r })
    }
}

fn retrying(inner: Arc<Scripted>, send_resolved: bool, metrics: &ReceiverMetrics) -> Retrying {
    let policy = RetryPolicy {
        max_attempts: 4,
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(50),
        max_retry_after: Duration::from_millis(300),
    };
    Retrying::new(inner, policy, send_resolved, metrics, CancellationToken::new())
}

#[tokio::test]
async fn retries_retryable_with_backoff_and_counts() {
    let metrics = ReceiverMetrics::default();
    let inner = Scripted::new(vec![
        Err(ReceiverError::Retryable("webhook receiver \"team\": HTTP 503".into())),
        Err(ReceiverError::Throttled { message: "HTTP 429".into(), retry_after: Duration::from_millis(200) }),
        Err(ReceiverError::Retryable("timed out".into())),
    ]);
    let r = retrying(inner.clone(), true, &metrics);
    let n = notification(&[AlertStatus::Firing]);
    r.send(&n).await.unwrap();
    assert_eq!(inner.calls.load(Ordering::SeqCst), 4);
    let t = inner.times.lock().unwrap().clone();
    // Backoff 20 ms, then the peer's 200 ms, then 40 ms (doubled).
    assert!(t[1] - t[0] >= Duration::from_millis(20));
    assert!(t[2] - t[1] >= Duration::from_millis(200), "Retry-After not honoured: {:?}", t[2] - t[1]);
    assert!(t[3] - t[2] >= Duration::from_millis(40));
    assert_eq!((r.counters().sent(), r.counters().retried(), r.counters().failed()), (1, 3, 0));

    // Bounded attempts: four failures → the last error, counted failed.
    let inner = Scripted::new((0..4).map(|i| Err(ReceiverError::Retryable(format!("e{i}")))).collect());
    let r = retrying(inner.clone(), true, &metrics);
    assert_eq!(r.send(&n).await, Err(ReceiverError::Retryable("e3".into())));
    assert_eq!(inner.calls.load(Ordering::SeqCst), 4);

    // Permanent: no retry.
    let inner = Scripted::new(vec![Err(ReceiverError::Permanent("HTTP 400".into()))]);
    let r = retrying(inner.clone(), true, &metrics);
    assert!(r.send(&n).await.is_err());
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);

    // A Retry-After beyond the limit: give up now, the notifier tries again later.
    let inner = Scripted::new(vec![Err(ReceiverError::Throttled {
        message: "HTTP 429".into(),
        retry_after: Duration::from_secs(3600),
    })]);
    let r = retrying(inner.clone(), true, &metrics);
    assert!(r.send(&n).await.is_err());
    assert_eq!(inner.calls.load(Ordering::SeqCst), 1);

    let text = metrics.encode();
    assert!(text.contains("# TYPE warden_notifications_total counter\n"), "{text}");
    assert!(
        text.contains("warden_notifications_total{receiver=\"team\",integration=\"webhook\",outcome=\"sent\"} 1\n")
    );
    assert!(
        text.contains("warden_notifications_total{receiver=\"team\",integration=\"webhook\",outcome=\"failed\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("warden_notifications_total{receiver=\"team\",integration=\"webhook\",outcome=\"retried\"} 6\n")
    );
}

#[tokio::test]
async fn shutdown_stops_a_retry_wait() {
    let metrics = ReceiverMetrics::default();
    let inner = Scripted::new(vec![Err(ReceiverError::Retryable("x".into()))]);
    let policy = RetryPolicy { initial_backoff: Duration::from_secs(30), ..RetryPolicy::default() };
    let token = CancellationToken::new();
    let r = Retrying::new(inner.clone(), policy, true, &metrics, token.clone());
    let n = notification(&[AlertStatus::Firing]);
    let started = Instant::now();
    let (res, ()) = tokio::join!(r.send(&n), async {
        tokio::time::sleep(Duration::from_millis(50)).await;
        token.cancel();
    });
    assert!(res.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(r.counters().failed(), 1);
}

#[tokio::test]
async fn send_resolved_false_drops_resolved_alerts() {
    let metrics = ReceiverMetrics::default();
    let inner = Scripted::new(vec![]);
    let r = retrying(inner.clone(), false, &metrics);
    r.send(&notification(&[AlertStatus::Firing, AlertStatus::Resolved, AlertStatus::Firing])).await.unwrap();
    r.send(&notification(&[AlertStatus::Resolved])).await.unwrap();
    // Only firing alerts went out; the all-resolved notification was not sent at all.
    assert_eq!(*inner.seen_alerts.lock().unwrap(), [2]);
    let r = retrying(inner.clone(), true, &metrics);
    r.send(&notification(&[AlertStatus::Resolved])).await.unwrap();
    assert_eq!(*inner.seen_alerts.lock().unwrap(), [2, 1]);
}

#[test]
fn pagerduty_severity_and_dedup_key() {
    for (label, want) in [
        (Some("critical"), "critical"),
        (Some("CRITICAL"), "critical"),
        (Some("page"), "critical"),
        (Some("error"), "error"),
        (Some("warning"), "warning"),
        (Some("warn"), "warning"),
        (Some("info"), "info"),
        (Some("low"), "info"),
        (Some("whatever"), "error"),
        (None, "error"),
    ] {
        assert_eq!(pagerduty::severity(label), want, "{label:?}");
    }
    // SHA-256 of the group key, as Alertmanager's GroupKey.Hash (known vector: "abc").
    assert_eq!(pagerduty::dedup_key("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn escaping() {
    assert_eq!(slack::escape("a <@U123> & <!channel> >"), "a &lt;@U123&gt; &amp; &lt;!channel&gt; &gt;");
    assert_eq!(
        email::escape_html("<script>\"x\" & 'y'</script>"),
        "&lt;script&gt;&quot;x&quot; &amp; &#39;y&#39;&lt;/script&gt;"
    );
    assert_eq!(slack::truncate("abcdef", 4), "abc…");
    assert_eq!(slack::truncate("abc", 4), "abc");
}
