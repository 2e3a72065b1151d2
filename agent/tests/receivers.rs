//! The HTTP receivers (webhook, Slack, PagerDuty) and the file receiver, end to end: each
//! sends to a local axum server that records the request (method, path, headers, body)
//! and answers from a script. Slack and PagerDuty cannot be reached from here, so their
//! bodies are checked against the documented examples in `tests/fixtures/` (shape: keys,
//! value types, required fields; see `fixtures/README.md` for the pages), and the answers
//! are the documented status codes. The webhook payload is checked against Alertmanager's
//! documented v4 payload.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use warden::notify::alert::{AlertStatus, NotifyAlert};
use warden::notify::message::Notification;
use warden::notify::receivers::{BuildContext, Receiver, ReceiverConfig, ReceiverError, ReceiverMetrics, RetryPolicy};
use warden_collector::redact::Redactor;
use warden_rules::labels::Labels;
use warden_testkit::TempDir;

// ---------------------------------------------------------------------------------------
// The recording peer

#[derive(Clone, Debug)]
struct Recorded {
    method: Method,
    path: String,
    headers: HeaderMap,
    body: Vec<u8>,
    at: Instant,
}

impl Recorded {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("request body is JSON")
    }

    fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

/// One scripted answer: status, extra headers, body.
type Answer = (u16, Vec<(&'static str, String)>, &'static str);

#[derive(Clone, Default)]
struct PeerState {
    log: Arc<Mutex<Vec<Recorded>>>,
    script: Arc<Mutex<Vec<Answer>>>,
    /// Answered once the script is used up.
    default: Arc<Mutex<Option<Answer>>>,
}

struct Peer {
    addr: SocketAddr,
    state: PeerState,
    stop: CancellationToken,
}

impl Peer {
    /// A server answering `script` in order, then `then` forever.
    async fn start(script: Vec<Answer>, then: Answer) -> Peer {
        let state = PeerState::default();
        *state.script.lock().unwrap() = script;
        *state.default.lock().unwrap() = Some(then);
        let app = axum::Router::new().fallback(record).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = CancellationToken::new();
        let s = stop.clone();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).with_graceful_shutdown(s.cancelled_owned()).await;
        });
        Peer { addr, state, stop }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requests(&self) -> Vec<Recorded> {
        self.state.log.lock().unwrap().clone()
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn record(State(s): State<PeerState>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    s.log.lock().unwrap().push(Recorded {
        method,
        path: uri.path().to_owned(),
        headers,
        body: body.to_vec(),
        at: Instant::now(),
    });
    let answer = {
        let mut script = s.script.lock().unwrap();
        if script.is_empty() { s.default.lock().unwrap().clone().unwrap() } else { script.remove(0) }
    };
    let (status, extra, body) = answer;
    let mut h = HeaderMap::new();
    for (k, v) in extra {
        h.insert(k, v.parse().unwrap());
    }
    (StatusCode::from_u16(status).unwrap(), h, body).into_response()
}

fn ok(status: u16, body: &'static str) -> Answer {
    (status, vec![], body)
}

// ---------------------------------------------------------------------------------------
// Building notifications and receivers

const SSN: &str = "123-45-6789";
const EMAIL: &str = "jane.doe@example.org";

fn alert(name: &str, instance: &str, status: AlertStatus, extra: &[(&str, &str)]) -> NotifyAlert {
    let mut labels = vec![("alertname", name), ("instance", instance), ("severity", "critical"), ("service", "api")];
    labels.extend_from_slice(extra);
    let ann = Labels::from_pairs(&[
        ("summary", format!("p99 latency high for patient {SSN}").as_str()),
        ("description", format!("contact {EMAIL} <b>now</b>").as_str()),
    ]);
    let end = (status == AlertStatus::Resolved).then_some(1_714_557_900_000);
    let mut a = NotifyAlert::new(Labels::from_pairs(&labels), ann, status, 1_714_557_600_123, end);
    a.generator_url = "http://127.0.0.1:9464/graph?g0.expr=latency".to_owned();
    a
}

fn group(receiver: &str, alerts: &[NotifyAlert]) -> Notification {
    Notification::build(
        &Redactor::default_mask(),
        receiver,
        "{}/{severity=\"critical\"}:{alertname=\"HighLatency\"}",
        &Labels::from_pairs(&[("alertname", "HighLatency")]),
        alerts,
        "http://127.0.0.1:9464",
    )
}

fn firing_group(receiver: &str) -> Notification {
    group(
        receiver,
        &[
            alert("HighLatency", "api-1:8080", AlertStatus::Firing, &[]),
            alert("HighLatency", "api-2:8080", AlertStatus::Firing, &[]),
        ],
    )
}

fn ctx(env: &[(&str, &str)]) -> (BuildContext, Arc<ReceiverMetrics>) {
    let map: HashMap<String, String> = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    let metrics = Arc::new(ReceiverMetrics::default());
    let ctx = BuildContext {
        env: Box::new(move |k| map.get(k).cloned()),
        metrics: Arc::clone(&metrics),
        retry: RetryPolicy {
            max_attempts: 4,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(5),
        },
        shutdown: CancellationToken::new(),
        ..BuildContext::default()
    };
    (ctx, metrics)
}

fn build_one(yaml: &str, ctx: &BuildContext) -> Arc<dyn Receiver> {
    let cfg: ReceiverConfig = serde_saphyr::from_str(yaml).unwrap();
    let mut v = cfg.build_with(ctx).unwrap();
    assert_eq!(v.len(), 1);
    v.remove(0).0
}

fn fixture(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

// ---------------------------------------------------------------------------------------
// Shape comparison

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Checks that `ours` has the shape of the documented `doc`: every key we send is a
/// documented key with the documented type, every key in `required` (dotted paths from
/// the root) is present, and the values of paths in `free_form` (maps of user data, such
/// as labels) are objects whose values are `free_value` (a JSON type name). Arrays are
/// compared element-wise against the documented first element.
fn check_shape(doc: &Value, ours: &Value, path: &str, free_form: &[(&str, &str)], errors: &mut Vec<String>) {
    if kind(doc) != kind(ours) {
        errors.push(format!("{path}: documented {}, sent {}", kind(doc), kind(ours)));
        return;
    }
    if let Some((_, value_kind)) = free_form.iter().find(|(p, _)| *p == path) {
        for (k, v) in ours.as_object().unwrap() {
            if *value_kind != "any" && kind(v) != *value_kind {
                errors.push(format!("{path}.{k}: sent {}, want {value_kind}", kind(v)));
            }
        }
        return;
    }
    match (doc, ours) {
        (Value::Object(d), Value::Object(o)) => {
            for (k, v) in o {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match d.get(k) {
                    Some(dv) => check_shape(dv, v, &p, free_form, errors),
                    None => errors.push(format!("{p}: not a documented field")),
                }
            }
        }
        (Value::Array(d), Value::Array(o)) => {
            if let Some(first) = d.first() {
                for v in o {
                    check_shape(first, v, &format!("{path}[]"), free_form, errors);
                }
            }
        }
        _ => {}
    }
}

fn has_path(v: &Value, dotted: &str) -> bool {
    dotted.split('.').try_fold(v, |v, k| v.get(k)).is_some()
}

fn assert_shape(doc: &Value, ours: &Value, required: &[&str], free_form: &[(&str, &str)]) {
    let mut errors = Vec::new();
    check_shape(doc, ours, "", free_form, &mut errors);
    for r in required {
        if !has_path(ours, r) {
            errors.push(format!("{r}: required but missing"));
        }
    }
    assert!(errors.is_empty(), "shape differs from the documented example:\n{}\nsent: {ours:#}", errors.join("\n"));
}

/// The keys of an object (for exact key-set comparisons).
fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

fn assert_no_phi(body: &[u8]) {
    let text = String::from_utf8_lossy(body);
    assert!(!text.contains(SSN) && !text.contains("45-6789"), "SSN leaked: {text}");
    assert!(!text.contains(EMAIL) && !text.contains("jane.doe"), "email leaked: {text}");
    assert!(text.contains("[REDACTED:"), "no redaction marker: {text}");
}

// ---------------------------------------------------------------------------------------
// Webhook

const V4_FREE_FORM: &[(&str, &str)] = &[
    ("groupLabels", "string"),
    ("commonLabels", "string"),
    ("commonAnnotations", "string"),
    ("alerts[].labels", "string"),
    ("alerts[].annotations", "string"),
];

#[tokio::test]
async fn webhook_posts_the_documented_v4_payload() {
    let peer = Peer::start(vec![], ok(200, "")).await;
    let (ctx, metrics) = ctx(&[]);
    let r = build_one(&format!("name: hooks\nwebhook_configs:\n  - url: {}\n", peer.url("/alerts/in")), &ctx);
    let n = firing_group("hooks");
    r.send(&n).await.unwrap();

    let reqs = peer.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!(req.method, Method::POST);
    assert_eq!(req.path, "/alerts/in");
    assert_eq!(req.header("content-type"), "application/json");
    assert!(req.header("user-agent").starts_with("Warden/"));
    let body = req.json();
    let doc = fixture("alertmanager_webhook_v4.json");
    // Exactly the documented keys, at the top and in each alert.
    assert_eq!(keys(&body), keys(&doc));
    assert_eq!(keys(&body["alerts"][0]), keys(&doc["alerts"][0]));
    assert_shape(&doc, &body, &[], V4_FREE_FORM);
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "hooks");
    assert_eq!(body["groupKey"], "{}/{severity=\"critical\"}:{alertname=\"HighLatency\"}");
    assert_eq!(body["alerts"].as_array().unwrap().len(), 2);
    assert_eq!(body["alerts"][0]["labels"]["instance"], "api-1:8080");
    assert_eq!(body["alerts"][0]["startsAt"], "2024-05-01T10:00:00.123Z");
    assert_eq!(body["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(body["commonLabels"]["service"], "api");
    assert_no_phi(&req.body);
    assert!(metrics.encode().contains("integration=\"webhook\",outcome=\"sent\"} 1\n"));
}

#[tokio::test]
async fn webhook_max_alerts_truncates_and_counts() {
    let peer = Peer::start(vec![], ok(204, "")).await;
    let (ctx, _) = ctx(&[]);
    let dir = TempDir::new("webhook-url");
    let url_file = dir.path().join("url");
    std::fs::write(&url_file, format!("{}\n", peer.url("/h"))).unwrap();
    let r = build_one(
        &format!("name: hooks\nwebhook_configs:\n  - url_file: {}\n    max_alerts: 1\n", url_file.display()),
        &ctx,
    );
    r.send(&firing_group("hooks")).await.unwrap();
    let body = peer.requests()[0].json();
    assert_eq!(body["alerts"].as_array().unwrap().len(), 1);
    assert_eq!(body["truncatedAlerts"], 1);
    // Common labels stay those of the whole group, as in Alertmanager.
    assert!(body["commonLabels"].get("instance").is_none());
}

#[tokio::test]
async fn webhook_resolved_group() {
    let peer = Peer::start(vec![], ok(200, "")).await;
    let (ctx, _) = ctx(&[]);
    let r = build_one(&format!("name: hooks\nwebhook_configs:\n  - url: {}\n", peer.url("/h")), &ctx);
    let n = group("hooks", &[alert("HighLatency", "api-1:8080", AlertStatus::Resolved, &[])]);
    r.send(&n).await.unwrap();
    let body = peer.requests()[0].json();
    assert_eq!(body["status"], "resolved");
    assert_eq!(body["alerts"][0]["status"], "resolved");
    assert_eq!(body["alerts"][0]["endsAt"], "2024-05-01T10:05:00Z");
}

#[tokio::test]
async fn retries_on_429_and_5xx_honouring_retry_after_and_stops_on_400() {
    let peer =
        Peer::start(vec![(429, vec![("retry-after", "1".to_owned())], "slow down"), ok(503, "busy")], ok(200, ""))
            .await;
    let (ctx, metrics) = ctx(&[]);
    let r = build_one(&format!("name: hooks\nwebhook_configs:\n  - url: {}\n", peer.url("/h")), &ctx);
    r.send(&firing_group("hooks")).await.unwrap();
    let reqs = peer.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs[1].at - reqs[0].at >= Duration::from_secs(1), "Retry-After: 1 not honoured");
    assert!(reqs[2].at - reqs[1].at >= Duration::from_millis(50));
    // The same payload each time.
    assert_eq!(reqs[0].body, reqs[2].body);
    let text = metrics.encode();
    assert!(text.contains("outcome=\"sent\"} 1\n") && text.contains("outcome=\"retried\"} 2\n"), "{text}");

    let peer = Peer::start(vec![], ok(400, "bad")).await;
    let r = build_one(&format!("name: hooks\nwebhook_configs:\n  - url: {}\n", peer.url("/h")), &ctx);
    let err = r.send(&firing_group("hooks")).await.unwrap_err();
    assert_eq!(err, ReceiverError::Permanent("webhook receiver \"hooks\": HTTP 400".to_owned()));
    assert_eq!(peer.requests().len(), 1);

    // Bounded: a peer that always fails gets max_attempts requests.
    let peer = Peer::start(vec![], ok(500, "")).await;
    let r = build_one(&format!("name: hooks\nwebhook_configs:\n  - url: {}\n", peer.url("/h")), &ctx);
    let err = r.send(&firing_group("hooks")).await.unwrap_err();
    assert!(err.is_retryable());
    assert_eq!(peer.requests().len(), 4);
}

#[tokio::test]
async fn timeouts_and_connection_failures_are_retryable_and_name_no_url() {
    // A peer that accepts and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let (mut ctx, _) = ctx(&[]);
    ctx.retry.max_attempts = 1;
    let r = build_one(
        &format!("name: hooks\nwebhook_configs:\n  - url: http://{addr}/token/SECRET123\n    timeout: 300ms\n"),
        &ctx,
    );
    let started = Instant::now();
    let err = r.send(&firing_group("hooks")).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(err, ReceiverError::Retryable("webhook receiver \"hooks\": timed out".to_owned()));
    hold.abort();

    // Nothing listens: connection failed.
    let port = warden_testkit::free_port();
    let r =
        build_one(&format!("name: hooks\nwebhook_configs:\n  - url: http://127.0.0.1:{port}/token/SECRET123\n"), &ctx);
    let err = r.send(&firing_group("hooks")).await.unwrap_err();
    assert!(err.is_retryable());
    assert!(!err.to_string().contains("SECRET123") && !err.to_string().contains("127.0.0.1"), "{err}");
}

// ---------------------------------------------------------------------------------------
// Slack

#[tokio::test]
async fn slack_blocks_match_block_kit_and_secret_url_stays_hidden() {
    let peer = Peer::start(vec![], ok(200, "ok")).await;
    let dir = TempDir::new("slack-url");
    let url_file = dir.path().join("slack");
    let secret_path = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX";
    std::fs::write(&url_file, peer.url(secret_path)).unwrap();
    let (ctx, _) = ctx(&[]);
    let r = build_one(
        &format!("name: chat\nslack_configs:\n  - api_url_file: {}\n    send_resolved: true\n", url_file.display()),
        &ctx,
    );
    let n = group(
        "chat",
        &[
            alert("HighLatency", "api-1:8080", AlertStatus::Firing, &[]),
            alert("HighLatency", "api-2:8080", AlertStatus::Resolved, &[]),
        ],
    );
    r.send(&n).await.unwrap();
    let reqs = peer.requests();
    assert_eq!(reqs.len(), 1);
    let req = &reqs[0];
    assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", secret_path));
    assert_eq!(req.header("content-type"), "application/json");
    let body = req.json();

    // Top level: `text` fallback and `blocks`, as the webhook page's example.
    let doc = fixture("slack_webhook_blocks.json");
    assert_eq!(keys(&body), keys(&doc));
    assert_eq!(body["text"], "[FIRING:1] HighLatency (api critical)");
    // Each block has the shape of the documented block of its type.
    let header = fixture("slack_block_header.json");
    let context = fixture("slack_block_context.json");
    let section = &doc["blocks"][0];
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50);
    assert_eq!(blocks.first().unwrap()["type"], "header");
    assert_eq!(blocks.last().unwrap()["type"], "context");
    for b in blocks {
        let (doc_block, required): (&Value, &[&str]) = match b["type"].as_str().unwrap() {
            "header" => (&header, &["type", "text.type", "text.text"]),
            "section" => (section, &["type", "text.type", "text.text"]),
            "context" => (&context, &["type", "elements"]),
            other => panic!("undocumented block type {other}"),
        };
        let mut doc_block = doc_block.clone();
        // `emoji` is a documented optional field of plain_text objects.
        if b["type"] == "header" {
            doc_block["text"]["emoji"] = Value::Bool(true);
        }
        if b["type"] == "context" {
            // Compare our mrkdwn element with the documented mrkdwn element.
            doc_block["elements"] = Value::Array(vec![context["elements"][1].clone()]);
        }
        assert_shape(&doc_block, b, required, &[]);
    }
    assert_eq!(blocks[0]["text"]["type"], "plain_text");
    assert!(blocks[0]["text"]["text"].as_str().unwrap().chars().count() <= 150);
    let sections: Vec<&str> =
        blocks.iter().filter(|b| b["type"] == "section").map(|b| b["text"]["text"].as_str().unwrap()).collect();
    assert_eq!(sections.len(), 2);
    assert!(sections[0].contains("*HighLatency* (firing)") && sections[0].contains("`instance=api-1:8080`"));
    assert!(sections[1].contains("(resolved)"));
    // Slack's escaping: annotation markup cannot inject links or mentions.
    assert!(sections[0].contains("&lt;b&gt;now&lt;/b&gt;"), "{}", sections[0]);
    assert_no_phi(&req.body);

    // Documented errors: 4xx permanent, 500 retryable; the secret URL never in errors.
    let (mut ctx, _) = self::ctx(&[]);
    ctx.retry.max_attempts = 1;
    let cases: Vec<Value> = fixture("slack_responses.json").as_array().unwrap().clone();
    for c in cases {
        let status = c["status"].as_u64().unwrap() as u16;
        let body: &'static str = Box::leak(c["body"].as_str().unwrap().to_owned().into_boxed_str());
        let peer = Peer::start(vec![], ok(status, body)).await;
        std::fs::write(&url_file, peer.url(secret_path)).unwrap();
        let r = build_one(&format!("name: chat\nslack_configs:\n  - api_url_file: {}\n", url_file.display()), &ctx);
        let res = r.send(&firing_group("chat")).await;
        assert_eq!(res.is_ok(), c["success"].as_bool().unwrap(), "{c}");
        if let Err(e) = res {
            assert_eq!(e.is_retryable(), c["retry"].as_bool().unwrap(), "{c}");
            let msg = e.to_string();
            assert_eq!(msg, format!("slack receiver \"chat\": HTTP {status}"));
            assert!(!msg.contains("XXXXXXXX") && !msg.contains("hooks") && !msg.contains(body), "{msg}");
        }
    }
}

#[tokio::test]
async fn slack_rate_limit_retry_after() {
    let peer = Peer::start(vec![(429, vec![("retry-after", "1".to_owned())], "rate_limited")], ok(200, "ok")).await;
    let (ctx, _) = ctx(&[("SLACK_URL", &peer.url("/services/T/B/X"))]);
    let r = build_one("name: chat\nslack_configs:\n  - api_url_env: SLACK_URL\n", &ctx);
    r.send(&firing_group("chat")).await.unwrap();
    let reqs = peer.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs[1].at - reqs[0].at >= Duration::from_secs(1));
}

#[tokio::test]
async fn slack_caps_sections_within_the_block_limit() {
    let peer = Peer::start(vec![], ok(200, "ok")).await;
    let (ctx, _) = ctx(&[("SLACK_URL", &peer.url("/s"))]);
    let r = build_one("name: chat\nslack_configs:\n  - api_url_env: SLACK_URL\n", &ctx);
    let alerts: Vec<NotifyAlert> =
        (0..120).map(|i| alert("HighLatency", &format!("api-{i}:8080"), AlertStatus::Firing, &[])).collect();
    r.send(&group("chat", &alerts)).await.unwrap();
    let body = peer.requests()[0].json();
    let blocks = body["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50, "{}", blocks.len());
    let more = blocks.iter().rev().nth(1).unwrap()["text"]["text"].as_str().unwrap();
    assert!(more.contains("80 more"), "{more}");
}

// ---------------------------------------------------------------------------------------
// PagerDuty

const ROUTING_KEY: &str = "R0123456789abcdef0123456789abcde";

#[tokio::test]
async fn pagerduty_trigger_and_resolve_match_events_v2() {
    let peer = Peer::start(
        vec![],
        (
            202,
            vec![("content-type", "application/json".into())],
            "{\"status\":\"success\",\"message\":\"Event processed\"}",
        ),
    )
    .await;
    let (ctx, _) = ctx(&[("PD_KEY", ROUTING_KEY)]);
    let r = build_one(
        &format!(
            "name: pager\npagerduty_configs:\n  - routing_key_env: PD_KEY\n    url: {}\n    source: node-7\n",
            peer.url("/v2/enqueue")
        ),
        &ctx,
    );
    r.send(&firing_group("pager")).await.unwrap();
    let resolved = group(
        "pager",
        &[
            alert("HighLatency", "api-1:8080", AlertStatus::Resolved, &[]),
            alert("HighLatency", "api-2:8080", AlertStatus::Resolved, &[]),
        ],
    );
    r.send(&resolved).await.unwrap();

    let reqs = peer.requests();
    assert_eq!(reqs.len(), 2);
    for req in &reqs {
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v2/enqueue"));
        assert_eq!(req.header("content-type"), "application/json");
    }
    let trigger = reqs[0].json();
    let doc = fixture("pagerduty_trigger.json");
    assert_shape(
        &doc,
        &trigger,
        &["routing_key", "event_action", "dedup_key", "payload.summary", "payload.source", "payload.severity"],
        &[("payload.custom_details", "any")],
    );
    assert_eq!(trigger["event_action"], "trigger");
    assert_eq!(trigger["routing_key"], ROUTING_KEY);
    assert_eq!(trigger["payload"]["severity"], "critical");
    assert_eq!(trigger["payload"]["source"], "node-7");
    assert_eq!(trigger["payload"]["summary"], "[FIRING:2] HighLatency (api critical)");
    assert_eq!(trigger["payload"]["component"], "api");
    assert_eq!(trigger["payload"]["class"], "HighLatency");
    assert_eq!(trigger["payload"]["timestamp"], "2024-05-01T10:00:00.123Z");
    assert_eq!(trigger["payload"]["custom_details"]["num_firing"], 2);
    assert_eq!(trigger["client_url"], "http://127.0.0.1:9464");
    assert_no_phi(&reqs[0].body);

    let resolve = reqs[1].json();
    // The resolve event is exactly the documented one: three keys.
    assert_eq!(keys(&resolve), keys(&fixture("pagerduty_resolve.json")));
    assert_eq!(resolve["event_action"], "resolve");
    // One group, one incident: the same dedup_key, the SHA-256 of the group key.
    assert_eq!(resolve["dedup_key"], trigger["dedup_key"]);
    assert_eq!(
        trigger["dedup_key"],
        warden::notify::receivers::pagerduty::dedup_key("{}/{severity=\"critical\"}:{alertname=\"HighLatency\"}")
    );
    assert_eq!(trigger["dedup_key"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn pagerduty_summary_limit_and_default_severity() {
    let peer = Peer::start(vec![], ok(202, "")).await;
    let (ctx, _) = ctx(&[("PD_KEY", ROUTING_KEY)]);
    let r = build_one(
        &format!(
            "name: pager\npagerduty_configs:\n  - routing_key_env: PD_KEY\n    url: {}\n",
            peer.url("/v2/enqueue")
        ),
        &ctx,
    );
    let long = "x".repeat(5000);
    let mut a = NotifyAlert::new(
        Labels::from_pairs(&[("alertname", "Long"), ("detail", long.as_str())]),
        Labels::empty(),
        AlertStatus::Firing,
        0,
        None,
    );
    a.generator_url = String::new();
    let n = Notification::build(&Redactor::default_mask(), "pager", "k", &Labels::empty(), [&a], "");
    r.send(&n).await.unwrap();
    let ev = peer.requests()[0].json();
    assert_eq!(ev["payload"]["summary"].as_str().unwrap().chars().count(), 1024);
    assert_eq!(ev["payload"]["severity"], "error");
    assert_eq!(ev["payload"]["source"], "warden");
    assert!(ev.get("client_url").is_none());
}

#[tokio::test]
async fn pagerduty_documented_responses_and_no_key_in_errors() {
    let (mut ctx, _) = ctx(&[("PD_KEY", ROUTING_KEY)]);
    ctx.retry.max_attempts = 1;
    for c in fixture("pagerduty_responses.json").as_array().unwrap() {
        let status = c["status"].as_u64().unwrap() as u16;
        let peer =
            Peer::start(vec![], ok(status, "{\"status\":\"invalid event\",\"message\":\"Event object is invalid\"}"))
                .await;
        let r = build_one(
            &format!(
                "name: pager\npagerduty_configs:\n  - routing_key_env: PD_KEY\n    url: {}\n",
                peer.url("/v2/enqueue")
            ),
            &ctx,
        );
        let res = r.send(&firing_group("pager")).await;
        assert_eq!(res.is_ok(), c["success"].as_bool().unwrap(), "{c}");
        if let Err(e) = res {
            assert_eq!(e.is_retryable(), c["retry"].as_bool().unwrap(), "{c}");
            assert_eq!(e.to_string(), format!("pagerduty receiver \"pager\": HTTP {status}"));
            assert!(!e.to_string().contains(ROUTING_KEY));
        }
    }
}

// ---------------------------------------------------------------------------------------
// File

#[tokio::test]
async fn file_receiver_appends_json_lines_and_rotates() {
    let dir = TempDir::new("file-receiver");
    let path: PathBuf = dir.path().join("notifications.jsonl");
    let (ctx, _) = ctx(&[]);
    let r =
        build_one(&format!("name: local\nfile_configs:\n  - path: {}\n    max_bytes: 4096\n", path.display()), &ctx);
    let n = firing_group("local");
    let line_len = n.to_json().len() + 1;
    r.send(&n).await.unwrap();
    r.send(&n).await.unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    for l in &lines {
        let v: Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["version"], "4");
        assert_eq!(v["receiver"], "local");
    }
    assert_no_phi(text.as_bytes());
    // Past max_bytes the file moves to <path>.1 and a new one begins: bounded on disk.
    let per_file = 4096 / line_len;
    for _ in 0..(per_file * 2) {
        r.send(&n).await.unwrap();
    }
    let rotated = dir.path().join("notifications.jsonl.1");
    assert!(rotated.exists());
    for p in [&path, &rotated] {
        let len = std::fs::metadata(p).unwrap().len();
        assert!(len <= 4096, "{} is {len} bytes", p.display());
        for l in std::fs::read_to_string(p).unwrap().lines() {
            serde_json::from_str::<Value>(l).unwrap();
        }
    }
}

#[tokio::test]
async fn file_receiver_error_names_kind_not_path_content() {
    let dir = TempDir::new("file-receiver-err");
    let (mut ctx, _) = ctx(&[]);
    ctx.retry.max_attempts = 1;
    // A directory where the file should be: opening it for append fails.
    let path = dir.path().join("is-a-dir");
    std::fs::create_dir(&path).unwrap();
    let r = build_one(&format!("name: local\nfile_configs:\n  - path: {}\n", path.display()), &ctx);
    let err = r.send(&firing_group("local")).await.unwrap_err();
    assert!(err.to_string().starts_with("file receiver \"local\": open:"), "{err}");
}
