//! Batch-level tests of the redactor: what is scanned, key rules at depth, actions,
//! shared resources, and the ack token.

use super::*;
use crate::ack::AckOutcome;
use crate::signal::{Label, MetricKind, SpanEvent, SpanId, SpanLink, Status, TraceId};
use std::sync::Mutex;

fn cfg(json: &str) -> Config {
    serde_json::from_str(json).unwrap()
}

fn log(body: AnyValue, attrs: Vec<KeyValue>, resource: Arc<Resource>) -> LogRecord {
    LogRecord { body, attributes: attrs, resource, ..LogRecord::default() }
}

fn span(name: &str) -> Span {
    Span {
        trace_id: TraceId([1; 16]),
        span_id: SpanId([2; 8]),
        parent_span_id: None,
        trace_state: String::new(),
        name: name.into(),
        kind: Default::default(),
        start_time_unix_nano: 1,
        end_time_unix_nano: 2,
        attributes: vec![],
        events: vec![],
        links: vec![],
        status: Status::default(),
        flags: 0,
        dropped: [0; 3],
        resource: Arc::new(Resource::default()),
        scope: Arc::new(Scope::default()),
    }
}

#[test]
fn logs_bodies_attributes_and_nested_keys() {
    let r = Redactor::default_mask();
    let res = Arc::new(Resource {
        attributes: vec![KeyValue::string("service.name", "platform-api")],
        schema_url: String::new(),
    });
    let body = AnyValue::KvList(vec![
        KeyValue::string("msg", "called 555-123-4567"),
        KeyValue {
            key: "patient".into(),
            value: AnyValue::KvList(vec![
                KeyValue::string("firstName", "Zed"),
                KeyValue { key: "age".into(), value: AnyValue::Int(93) },
                KeyValue { key: "visits".into(), value: AnyValue::Int(12) },
                KeyValue { key: "tags".into(), value: AnyValue::Array(vec!["ssn 123-45-6789".into(), "ok".into()]) },
            ]),
        },
    ]);
    let rec =
        log(body, vec![KeyValue::string("client.address", "203.0.113.9"), KeyValue::string("http.status", "200")], res);
    let out = r.apply(Batch::logs(vec![rec]));
    let rec = &out.get().logs[0];
    let AnyValue::KvList(kv) = &rec.body else { panic!() };
    assert_eq!(kv[0].value.as_str(), Some("called [REDACTED:PHONE]"));
    let AnyValue::KvList(p) = &kv[1].value else { panic!() };
    assert_eq!(p[0].value.as_str(), Some("[REDACTED:NAME]"));
    assert_eq!(p[1].value.as_str(), Some("[REDACTED:AGE]"));
    assert_eq!(p[2].value, AnyValue::Int(12));
    assert_eq!(p[3].value, AnyValue::Array(vec!["ssn [REDACTED:SSN]".into(), "ok".into()]));
    assert_eq!(rec.attributes[0].value.as_str(), Some("[REDACTED:IP]"));
    assert_eq!(rec.attributes[1].value.as_str(), Some("200"));
    assert_eq!(rec.resource.get_str("service.name"), Some("platform-api"));
    let m = r.encode_metrics();
    assert!(m.contains("warden_redactions_total{detector=\"phone\",action=\"mask\"} 1"), "{m}");
    assert!(m.contains("warden_redactions_total{detector=\"name\",action=\"mask\"} 1"), "{m}");
    assert!(m.contains("warden_redactions_total{detector=\"card\",action=\"mask\"} 0"), "{m}");
    assert!(!m.contains("555"), "values never reach metrics");
}

#[test]
fn shared_resource_is_scanned_once_and_stays_shared() {
    let r = Redactor::default_mask();
    let res = Arc::new(Resource {
        attributes: vec![KeyValue::string("owner.email", "ops.lead@example.org")],
        schema_url: String::new(),
    });
    let clean =
        Arc::new(Resource { attributes: vec![KeyValue::string("host.name", "node-1")], schema_url: String::new() });
    let logs = (0..50)
        .map(|i| {
            log(format!("line {i}").into(), vec![], if i % 2 == 0 { Arc::clone(&res) } else { Arc::clone(&clean) })
        })
        .collect();
    let out = r.apply(Batch::logs(logs));
    let logs = &out.get().logs;
    assert_eq!(logs[0].resource.get_str("owner.email"), Some("[REDACTED:EMAIL]"));
    assert!(logs.iter().step_by(2).all(|l| Arc::ptr_eq(&l.resource, &logs[0].resource)));
    assert!(
        logs.iter().skip(1).step_by(2).all(|l| Arc::ptr_eq(&l.resource, &clean)),
        "an untouched resource keeps its Arc"
    );
    assert_eq!(r.counters().get(Detector::Email, Action::Mask), 1, "scanned once per batch");
    assert_eq!(res.get_str("owner.email"), Some("ops.lead@example.org"), "the source's Arc is not mutated");
}

#[test]
fn spans_names_events_links_status() {
    let r = Redactor::default_mask();
    let mut s = span("lookup jane@example.com");
    s.attributes.push(KeyValue::string("db.statement", "SELECT * FROM p WHERE ssn='123-45-6789'"));
    s.events.push(SpanEvent {
        name: "called 555-123-4567".into(),
        attributes: vec![KeyValue::string("dob", "1950-01-01")],
        ..Default::default()
    });
    s.links.push(SpanLink {
        trace_id: TraceId([3; 16]),
        span_id: SpanId([4; 8]),
        trace_state: String::new(),
        attributes: vec![KeyValue::string("peer", "2001:db8:1::7")],
        dropped_attributes_count: 0,
        flags: 0,
    });
    s.status.message = "no record for John Smith".into();
    let out = r.apply(Batch::spans(vec![s]));
    let s = &out.get().spans[0];
    assert_eq!(s.name, "lookup [REDACTED:EMAIL]");
    assert_eq!(s.attributes[0].value.as_str(), Some("SELECT * FROM p WHERE ssn='[REDACTED:SSN]'"));
    assert_eq!(s.events[0].name, "called [REDACTED:PHONE]");
    assert_eq!(s.events[0].attributes[0].value.as_str(), Some("[REDACTED:DATE]"));
    assert_eq!(s.links[0].attributes[0].value.as_str(), Some("[REDACTED:IP]"));
    assert_eq!(s.status.message, "no record for [REDACTED:NAME]");
}

#[test]
fn metric_labels_and_drop_actions() {
    let r = Redactor::new(&cfg(r#"{"detectors":{"email":{"action":"drop_field"},"ssn":{"action":"drop_record"}}}"#))
        .unwrap();
    let p1 = MetricPoint::new(
        "x",
        vec![Label::new("user", "a@example.com"), Label::new("route", "/v1")],
        MetricKind::Counter,
        1.0,
        0,
    );
    let p2 = MetricPoint::new("x", vec![Label::new("q", "ssn 123-45-6789")], MetricKind::Counter, 1.0, 0);
    let p3 = MetricPoint::new("x", vec![Label::new("zip", "02139")], MetricKind::Counter, 1.0, 0);
    let logs = vec![
        log("ssn 123-45-6789".into(), vec![], Arc::default()),
        log("fine".into(), vec![KeyValue::string("mail", "b@example.com"), KeyValue::string("k", "v")], Arc::default()),
        log("mail c@example.com".into(), vec![], Arc::default()),
    ];
    let out = r.apply(Batch { metrics: vec![p1, p2, p3], logs, spans: vec![], ack: None });
    let b = out.get();
    assert_eq!(b.metrics.len(), 2);
    assert_eq!(b.metrics[0].labels, vec![Label::new("route", "/v1")]);
    assert_eq!(b.metrics[1].label("zip"), Some("[REDACTED:ZIP:021]"));
    assert_eq!(b.logs.len(), 2);
    assert_eq!(b.logs[0].attributes, vec![KeyValue::string("k", "v")]);
    assert_eq!(b.logs[1].body, AnyValue::Empty, "a body cannot be dropped, so it is emptied");
}

#[test]
fn ack_passes_through_and_parts_stay_redacted() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    let tok = AckToken::new(move |o| s2.lock().unwrap().push(o));
    let r = Redactor::default_mask();
    let batch = Batch::logs(vec![log("ssn 123-45-6789".into(), vec![], Arc::default())]).with_ack(tok);
    let mut red = r.apply(batch);
    let shared = red.share();
    let ack = red.take_ack().unwrap();
    assert!(red.get().ack.is_none());
    let parts = shared.into_parts();
    assert_eq!(parts.logs.get()[0].body.as_str(), Some("ssn [REDACTED:SSN]"));
    let items: Vec<Redacted<LogRecord>> = parts.logs.into_items().collect();
    assert_eq!(items.len(), 1);
    parts.ack.unwrap().done();
    assert!(seen.lock().unwrap().is_empty());
    ack.done();
    assert_eq!(*seen.lock().unwrap(), vec![AckOutcome::Delivered]);
}

#[test]
fn hash_mode_needs_a_key_and_correlates() {
    let c = cfg(r#"{"action":"hash","hash_key_env":"WARDEN_TEST_KEY"}"#);
    let err = Redactor::with_env(&c, &|_| None).unwrap_err();
    assert!(matches!(err, BuildError::KeyEnvMissing { .. }), "{err}");
    let err = Redactor::with_env(&c, &|_| Some(b"short".to_vec())).unwrap_err();
    assert!(matches!(err, BuildError::KeyTooShort { .. }));
    assert!(!err.to_string().contains("short\""));
    let a = Redactor::with_env(&c, &|_| Some(b"0123456789abcdef0123".to_vec())).unwrap();
    let b = Redactor::with_env(&c, &|_| Some(b"another-key-0123456789".to_vec())).unwrap();
    assert!(!format!("{a:?}").contains("0123456789abcdef"), "the key never appears in Debug");
    let t1 = a.redact_str("ssn 123-45-6789");
    assert!(t1.starts_with("ssn [SSN:") && t1.len() == "ssn [SSN:".len() + 13, "{t1}");
    assert_eq!(t1, a.redact_str("ssn 123 45 6789"));
    assert_ne!(t1, b.redact_str("ssn 123-45-6789"));
    // A hashed key-rule value equals the same value found in text.
    let j = a.redact_json_line(r#"{"ssn":"123-45-6789"}"#).unwrap();
    assert!(j.contains(&t1["ssn ".len()..]), "{j} vs {t1}");
    let missing = cfg(r#"{"action":"hash","hash_key_file":"/nonexistent/warden.key"}"#);
    assert!(matches!(Redactor::new(&missing), Err(BuildError::KeyFile { .. })));
}
