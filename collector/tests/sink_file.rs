//! The file sink against a real file system: the JSON shape of each signal (parsed back
//! with `serde_json`), size-based rotation and `max_files`, a directory that cannot be
//! written (a retryable error naming the path, then delivery once it is fixed), a file
//! moved away or left with a partial last line, and a reader following the file while
//! batches are written (every line it sees is one complete JSON object).
//!
//! Batches pass a real [`Redactor`] with every detector and key rule switched off, so the
//! values written are the values built here.

use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use warden_collector::redact::{Config as RedactConfig, Detector, Redacted, Redactor};
use warden_collector::signal::{
    AnyValue, Batch, KeyValue, Label, LogRecord, MetricKind, MetricPoint, Resource, Scope, SeverityNumber, Span,
    SpanEvent, SpanId, SpanKind, SpanLink, Status, StatusCode, TraceId,
};
use warden_collector::sinks::file::{FileSink, FileSinkConfig};
use warden_collector::sinks::{DeliveryError, Sink};
use warden_testkit::TempDir;

/// A redactor that changes nothing (all detectors and key rules off).
fn passthrough() -> Redactor {
    let mut c = RedactConfig::default();
    for d in Detector::ALL {
        c.detectors.get_mut(d).enabled = false;
    }
    c.keys.defaults = false;
    Redactor::new(&c).unwrap()
}

fn redacted(batch: Batch) -> Redacted<Batch> {
    passthrough().apply(batch)
}

fn read_lines(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    assert!(text.is_empty() || text.ends_with('\n'), "{} must end with a newline", path.display());
    text.lines()
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{}:{}: invalid JSON: {e}", path.display(), i + 1))
        })
        .collect()
}

fn log_line(i: u64, resource: &Arc<Resource>, scope: &Arc<Scope>) -> LogRecord {
    LogRecord {
        time_unix_nano: 1_714_557_600_000_000_000 + i,
        observed_time_unix_nano: 1_714_557_600_500_000_000,
        severity_number: SeverityNumber::INFO,
        severity_text: "INFO".into(),
        body: AnyValue::Str(format!("seq={i} GET /v1/records status=200 {}", "x".repeat(120))),
        attributes: vec![KeyValue::string("log.file.name", "app.log")],
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
        ..LogRecord::default()
    }
}

fn seqs(lines: &[Value]) -> Vec<u64> {
    lines
        .iter()
        .map(|l| {
            let body = l["body"].as_str().unwrap();
            body.strip_prefix("seq=").unwrap().split(' ').next().unwrap().parse().unwrap()
        })
        .collect()
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    PathBuf::from(format!("{}.{n}", path.display()))
}

#[tokio::test]
async fn each_signal_has_its_documented_shape() {
    let dir = TempDir::new("sink-file-shape");
    let path = dir.path().join("out.jsonl");
    let mut sink = FileSink::new(FileSinkConfig::new(&path)).unwrap();

    let resource = Arc::new(Resource {
        attributes: vec![KeyValue::string("service.name", "platform-api"), KeyValue::string("host.name", "node-1")],
        schema_url: String::new(),
    });
    let scope = Arc::new(Scope {
        name: "platform_api".into(),
        version: "1.2.0".into(),
        attributes: vec![KeyValue { key: "lib".into(), value: AnyValue::Bool(true) }],
        schema_url: String::new(),
    });
    let plain_scope = Arc::new(Scope { name: "warden.source.file".into(), ..Scope::default() });
    let metrics = vec![
        MetricPoint::new(
            "http_requests_total",
            vec![Label::new("route", "/v1/records"), Label::new("code", "200")],
            MetricKind::Counter,
            1027.0,
            1_714_557_600_000,
        ),
        MetricPoint::new("queue_depth", vec![], MetricKind::Gauge, f64::NAN, -5),
        MetricPoint::new("latency_bucket", vec![Label::new("le", "+Inf")], MetricKind::Histogram, f64::INFINITY, 0),
        MetricPoint::new("delta", vec![], MetricKind::Unknown, f64::NEG_INFINITY, 1),
        MetricPoint::new("ratio", vec![], MetricKind::Summary, 0.25, 2),
    ];
    let body = AnyValue::KvList(vec![
        KeyValue::string("msg", "line \"one\"\ttab\u{1}"),
        KeyValue { key: "n".into(), value: AnyValue::Int(-42) },
        KeyValue { key: "f".into(), value: AnyValue::Double(1.5) },
        KeyValue { key: "nan".into(), value: AnyValue::Double(f64::NAN) },
        KeyValue { key: "ok".into(), value: AnyValue::Bool(false) },
        KeyValue { key: "none".into(), value: AnyValue::Empty },
        KeyValue { key: "raw".into(), value: AnyValue::Bytes(vec![0, 1, 2, 250, 251, 252]) },
        KeyValue {
            key: "list".into(),
            value: AnyValue::Array(vec![
                AnyValue::Int(1),
                "two".into(),
                AnyValue::KvList(vec![KeyValue::string("k", "v")]),
            ]),
        },
    ]);
    let logs = vec![
        LogRecord {
            time_unix_nano: 1_714_557_600_123_456_789,
            observed_time_unix_nano: 1_714_557_600_223_456_789,
            severity_number: SeverityNumber::ERROR,
            severity_text: "error".into(),
            body,
            attributes: vec![KeyValue::string("log.file.path", "/var/log/app.log")],
            resource: Arc::clone(&resource),
            scope: Arc::clone(&scope),
            trace_id: Some(TraceId([0x4b; 16])),
            span_id: Some(SpanId([0, 1, 2, 3, 4, 5, 6, 7])),
            flags: 1,
            event_name: "db.query".into(),
        },
        LogRecord {
            observed_time_unix_nano: 7,
            body: AnyValue::Str("ünïcödé 🙂 \\ done".into()),
            resource: Arc::clone(&resource),
            scope: Arc::clone(&plain_scope),
            ..LogRecord::default()
        },
    ];
    let spans = vec![Span {
        trace_id: TraceId([0xab; 16]),
        span_id: SpanId([0xcd; 8]),
        parent_span_id: Some(SpanId([0xef; 8])),
        trace_state: "vendor=1".into(),
        name: "GET /v1/patients/{id}".into(),
        kind: SpanKind::Server,
        start_time_unix_nano: 100,
        end_time_unix_nano: 250,
        attributes: vec![KeyValue { key: "http.status_code".into(), value: AnyValue::Int(503) }],
        events: vec![SpanEvent {
            time_unix_nano: 200,
            name: "exception".into(),
            attributes: vec![KeyValue::string("exception.type", "Timeout")],
            dropped_attributes_count: 0,
        }],
        links: vec![SpanLink {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            trace_state: String::new(),
            attributes: vec![],
            dropped_attributes_count: 0,
            flags: 0,
        }],
        status: Status { code: StatusCode::Error, message: "upstream timeout".into() },
        flags: 0,
        dropped: [1, 0, 2],
        resource: Arc::clone(&resource),
        scope: Arc::clone(&plain_scope),
    }];
    let batch = redacted(Batch { metrics, logs, spans, ack: None });
    let d = sink.deliver(&batch).await.unwrap();
    assert_eq!((d.accepted, d.rejected), (8, 0));
    sink.close().await;

    let res = json!({"service.name": "platform-api", "host.name": "node-1"});
    let expected = vec![
        json!({"signal": "metric", "name": "http_requests_total", "labels": {"code": "200", "route": "/v1/records"},
               "kind": "counter", "value": 1027.0, "timestamp_ms": 1_714_557_600_000i64}),
        json!({"signal": "metric", "name": "queue_depth", "labels": {}, "kind": "gauge", "value": "NaN", "timestamp_ms": -5}),
        json!({"signal": "metric", "name": "latency_bucket", "labels": {"le": "+Inf"}, "kind": "histogram",
               "value": "+Inf", "timestamp_ms": 0}),
        json!({"signal": "metric", "name": "delta", "labels": {}, "kind": "untyped", "value": "-Inf", "timestamp_ms": 1}),
        json!({"signal": "metric", "name": "ratio", "labels": {}, "kind": "summary", "value": 0.25, "timestamp_ms": 2}),
        json!({"signal": "log", "time_unix_nano": 1_714_557_600_123_456_789u64,
               "observed_time_unix_nano": 1_714_557_600_223_456_789u64, "severity_number": 17, "severity_text": "error",
               "body": {"msg": "line \"one\"\ttab\u{1}", "n": -42, "f": 1.5, "nan": "NaN", "ok": false, "none": null,
                        "raw": "AAEC+vv8", "list": [1, "two", {"k": "v"}]},
               "attributes": {"log.file.path": "/var/log/app.log"}, "resource": res,
               "scope": {"name": "platform_api", "version": "1.2.0", "attributes": {"lib": true}},
               "trace_id": "4b".repeat(16), "span_id": "0001020304050607", "flags": 1, "event_name": "db.query"}),
        json!({"signal": "log", "time_unix_nano": 0, "observed_time_unix_nano": 7, "severity_number": 0,
               "severity_text": "", "body": "ünïcödé 🙂 \\ done", "attributes": {}, "resource": res,
               "scope": {"name": "warden.source.file"}}),
        json!({"signal": "span", "trace_id": "ab".repeat(16), "span_id": "cd".repeat(8), "parent_span_id": "ef".repeat(8),
               "trace_state": "vendor=1", "name": "GET /v1/patients/{id}", "kind": "server",
               "start_time_unix_nano": 100, "end_time_unix_nano": 250, "attributes": {"http.status_code": 503},
               "events": [{"time_unix_nano": 200, "name": "exception", "attributes": {"exception.type": "Timeout"}}],
               "links": [{"trace_id": "01".repeat(16), "span_id": "02".repeat(8), "attributes": {}}],
               "status": {"code": "error", "message": "upstream timeout"},
               "dropped": {"attributes": 1, "events": 0, "links": 2}, "resource": res,
               "scope": {"name": "warden.source.file"}}),
    ];
    let got = read_lines(&path);
    assert_eq!(got.len(), expected.len());
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "line {}", i + 1);
    }
    // Keys come in the documented order (serde_json's Value sorts them, so look at the text).
    let text = std::fs::read_to_string(&path).unwrap();
    let first_log = text.lines().nth(5).unwrap();
    let order = ["\"signal\"", "\"time_unix_nano\"", "\"severity_number\"", "\"body\"", "\"resource\"", "\"trace_id\""];
    let pos: Vec<usize> = order.iter().map(|k| first_log.find(k).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]), "key order in {first_log}");
    // An empty batch writes nothing and counts nothing.
    let mut sink = FileSink::new(FileSinkConfig::new(&path)).unwrap();
    assert_eq!(sink.deliver(&redacted(Batch::default())).await.unwrap().accepted, 0);
    assert_eq!(read_lines(&path).len(), expected.len());
}

#[tokio::test]
async fn rotation_by_size_keeps_max_files() {
    let dir = TempDir::new("sink-file-rotate");
    let path = dir.path().join("out.jsonl");
    let config = FileSinkConfig { max_bytes: 4096, max_files: 2, ..FileSinkConfig::new(&path) };
    let mut sink = FileSink::new(config).unwrap();
    let resource = Arc::new(Resource::default());
    let scope = Arc::new(Scope::default());
    let mut seq = 0;
    for _ in 0..20 {
        let logs = (0..7).map(|_| {
            seq += 1;
            log_line(seq - 1, &resource, &scope)
        });
        sink.deliver(&redacted(Batch::logs(logs.collect()))).await.unwrap();
    }
    assert!(!rotated(&path, 3).exists(), "only max_files rotated files are kept");
    let (old, mid, cur) = (read_lines(&rotated(&path, 2)), read_lines(&rotated(&path, 1)), read_lines(&path));
    for p in [rotated(&path, 2), rotated(&path, 1), path.clone()] {
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len <= 4096, "{} is {len} bytes, over max_bytes", p.display());
    }
    for full in [rotated(&path, 2), rotated(&path, 1)] {
        // A rotated file was full: one more line would not have fitted.
        let len = std::fs::metadata(&full).unwrap().len();
        assert!(len > 4096 - 400, "{} rotated at only {len} bytes", full.display());
    }
    // Oldest to newest, the kept lines are the last ones written, without gaps.
    let all: Vec<u64> = [old, mid, cur].iter().flat_map(|f| seqs(f)).collect();
    let first = all[0];
    assert_eq!(all, (first..seq).collect::<Vec<_>>());
    assert!(first > 0, "older files must have been deleted");

    // max_files 0: the full file is deleted; a line larger than max_bytes gets a file of its own.
    let path0 = dir.path().join("zero.jsonl");
    let mut sink =
        FileSink::new(FileSinkConfig { max_bytes: 4096, max_files: 0, ..FileSinkConfig::new(&path0) }).unwrap();
    for i in 0..40 {
        sink.deliver(&redacted(Batch::logs(vec![log_line(i, &resource, &scope)]))).await.unwrap();
    }
    assert!(!rotated(&path0, 1).exists());
    let kept = seqs(&read_lines(&path0));
    assert_eq!(kept.last(), Some(&39));
    assert!(kept.len() < 40);
    let mut big = log_line(1000, &resource, &scope);
    big.body = AnyValue::Str(format!("seq=1000 {}", "y".repeat(10_000)));
    sink.deliver(&redacted(Batch::logs(vec![big, log_line(1001, &resource, &scope)]))).await.unwrap();
    assert_eq!(seqs(&read_lines(&path0)), [1001], "the oversized line was rotated away on its own");
}

#[tokio::test]
async fn unwritable_directory_is_retryable_then_recovers() {
    let dir = TempDir::new("sink-file-unwritable");
    // A regular file where the sink's directory should be: fails for root too.
    let blocker = dir.path().join("out");
    std::fs::write(&blocker, b"not a directory").unwrap();
    let path = blocker.join("signals.jsonl");
    let mut sink = FileSink::new(FileSinkConfig::new(&path)).unwrap();
    let resource = Arc::new(Resource::default());
    let scope = Arc::new(Scope::default());
    let batch = redacted(Batch::logs((0..3).map(|i| log_line(i, &resource, &scope)).collect()));
    for _ in 0..2 {
        match sink.deliver(&batch).await {
            Err(DeliveryError::Retryable { reason, retry_after: None }) => {
                assert!(reason.contains(&blocker.display().to_string()), "{reason}");
                assert!(!reason.contains("seq="), "no data in errors: {reason}");
            }
            other => panic!("expected a retryable error, got {other:?}"),
        }
    }
    std::fs::remove_file(&blocker).unwrap();
    assert_eq!(sink.deliver(&batch).await.unwrap().accepted, 3);
    assert_eq!(seqs(&read_lines(&path)), [0, 1, 2]);

    // The directory replaced by a file while the sink has its file open (the output
    // volume gone): retryable, and delivery resumes in the restored directory without
    // writing into the file nobody can reach meanwhile.
    let moved = dir.path().join("moved-away");
    std::fs::rename(&blocker, &moved).unwrap();
    std::fs::write(&blocker, b"x").unwrap();
    let batch2 = redacted(Batch::logs(vec![log_line(3, &resource, &scope)]));
    assert!(matches!(sink.deliver(&batch2).await, Err(DeliveryError::Retryable { .. })));
    assert_eq!(seqs(&read_lines(&moved.join("signals.jsonl"))), [0, 1, 2], "nothing written while away");
    std::fs::remove_file(&blocker).unwrap();
    std::fs::rename(&moved, &blocker).unwrap();
    sink.deliver(&batch2).await.unwrap();
    assert_eq!(seqs(&read_lines(&path)), [0, 1, 2, 3]);

    // Permissions, where they apply (root ignores them).
    if is_root() {
        eprintln!("skip: permission variant (running as root, which ignores directory permissions)");
    } else {
        use std::os::unix::fs::PermissionsExt;
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
        let mut sink = FileSink::new(FileSinkConfig::new(ro.join("x.jsonl"))).unwrap();
        let e = sink.deliver(&batch).await.unwrap_err();
        assert!(matches!(&e, DeliveryError::Retryable { reason, .. } if reason.contains("ro/x.jsonl")), "{e}");
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
        sink.deliver(&batch).await.unwrap();
    }
}

fn is_root() -> bool {
    // The owner of a file we just created is our effective user.
    use std::os::unix::fs::MetadataExt;
    let dir = TempDir::new("sink-file-uid");
    let p = dir.path().join("probe");
    std::fs::write(&p, b"").unwrap();
    std::fs::metadata(&p).unwrap().uid() == 0
}

#[tokio::test]
async fn moved_file_and_partial_tail_are_handled() {
    let dir = TempDir::new("sink-file-move");
    let path = dir.path().join("out.jsonl");
    let resource = Arc::new(Resource::default());
    let scope = Arc::new(Scope::default());
    // A previous run was killed mid-write: the file ends in half a line.
    std::fs::write(&path, b"{\"signal\":\"log\",\"body\":\"seq=0 \"}\n{\"signal\":\"lo").unwrap();
    let mut sink = FileSink::new(FileSinkConfig::new(&path)).unwrap();
    sink.deliver(&redacted(Batch::logs(vec![log_line(1, &resource, &scope)]))).await.unwrap();
    assert_eq!(seqs(&read_lines(&path)), [0, 1], "the partial line is cut, the rest kept");

    // Moved away (logrotate without copytruncate): a new file is started at the path.
    let old = dir.path().join("out.jsonl.old");
    std::fs::rename(&path, &old).unwrap();
    sink.deliver(&redacted(Batch::logs(vec![log_line(2, &resource, &scope)]))).await.unwrap();
    assert_eq!(seqs(&read_lines(&old)), [0, 1]);
    assert_eq!(seqs(&read_lines(&path)), [2]);
    // Deleted: likewise.
    std::fs::remove_file(&path).unwrap();
    sink.deliver(&redacted(Batch::logs(vec![log_line(3, &resource, &scope)]))).await.unwrap();
    assert_eq!(seqs(&read_lines(&path)), [3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_that_is_not_a_regular_file_is_never_rotated() {
    let dir = TempDir::new("sink-file-fifo");
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success());
    let reader_path = fifo.clone();
    // Opening for reading waits for the sink to open the FIFO; reads until it closes.
    let reader = std::thread::spawn(move || std::fs::read_to_string(&reader_path).unwrap());
    let resource = Arc::new(Resource::default());
    let scope = Arc::new(Scope::default());
    let config = FileSinkConfig { max_bytes: 4096, max_files: 2, fsync: true, ..FileSinkConfig::new(&fifo) };
    let mut sink = FileSink::new(config).unwrap();
    for b in 0..20 {
        let logs = (0..10).map(|i| log_line(b * 10 + i, &resource, &scope)).collect();
        sink.deliver(&redacted(Batch::logs(logs))).await.unwrap();
    }
    sink.close().await;
    drop(sink);
    let text = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(seqs(&lines), (0..200).collect::<Vec<_>>(), "every line through the FIFO, in order");
    assert!(!rotated(&fifo, 1).exists(), "a FIFO must never be renamed");
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::metadata(&fifo).unwrap().file_type().is_fifo());
}

/// Strings with every kind of character JSON escapes, multi-byte UTF-8 and plain runs.
fn nasty(i: u64) -> String {
    let pieces =
        ["plain text ", "\"", "\\", "\n", "\r\n", "\t", "\u{0}", "\u{1b}[31m", "é", "日本", "🙂", "\u{7f}", "/"];
    let mut s = format!("seq={i} ");
    let mut x = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for _ in 0..(i % 40) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push_str(pieces[(x % pieces.len() as u64) as usize]);
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_following_the_file_sees_one_valid_object_per_line() {
    let dir = TempDir::new("sink-file-reader");
    let path = dir.path().join("out.jsonl");
    let mut sink = FileSink::new(FileSinkConfig::new(&path)).unwrap();
    let (batches, per_batch) = (200u64, 50u64);
    let reader_path = path.clone();
    let reader = std::thread::spawn(move || {
        // Follows the file like `tail -f`: complete lines only, each parsed.
        let mut seen = Vec::new();
        let mut pos = 0usize;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while (seen.len() as u64) < batches * per_batch && std::time::Instant::now() < deadline {
            let data = std::fs::read(&reader_path).unwrap_or_default();
            while let Some(nl) = data[pos..].iter().position(|&b| b == b'\n') {
                let line = &data[pos..pos + nl];
                let v: Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                    panic!("line {} is not one JSON object ({e}): {:?}", seen.len() + 1, String::from_utf8_lossy(line))
                });
                seen.push(v["body"].as_str().unwrap().to_string());
                pos += nl + 1;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        seen
    });
    let resource = Arc::new(Resource::default());
    let scope = Arc::new(Scope::default());
    for b in 0..batches {
        let logs = (0..per_batch)
            .map(|j| {
                let i = b * per_batch + j;
                LogRecord { body: AnyValue::Str(nasty(i)), ..log_line(i, &resource, &scope) }
            })
            .collect();
        sink.deliver(&redacted(Batch::logs(logs))).await.unwrap();
    }
    let seen = tokio::task::spawn_blocking(move || reader.join().unwrap()).await.unwrap();
    assert_eq!(seen.len() as u64, batches * per_batch);
    for (i, body) in seen.iter().enumerate() {
        assert_eq!(body, &nasty(i as u64), "line {}", i + 1);
    }
}
