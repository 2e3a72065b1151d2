//! The OTLP exporter sink against real receivers: Warden's own OTLP receiver (gRPC and
//! HTTP, gzip on and off; spans, logs and metrics arrive equal) and a Python receiver
//! built from the `opentelemetry-proto` package and grpcio (tests/python/otlp_receiver.py:
//! an implementation we did not write) for headers, TLS with client certificates,
//! failure classification, `RetryInfo` / `Retry-After` honoured by the runner, partial
//! success counted, partial failures not resent, and a 30 s outage with 100,000 log
//! records through disk buffers. Also timeouts, refused connections and bad configs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_collector::pipeline::{CancellationToken, SourceContext, channel};
use warden_collector::redact::{Redacted, Redactor};
use warden_collector::signal::{
    AnyValue, Batch, KeyValue, Label, LogRecord, MetricKind, MetricPoint, Resource, Scope, SeverityNumber, Span,
    SpanEvent, SpanId, SpanKind, SpanLink, Status, StatusCode, TraceId,
};
use warden_collector::sinks::buffer::{BufferConfig, FsyncPolicy, WhenFull};
use warden_collector::sinks::fanout::Fanout;
use warden_collector::sinks::otlp::{Compression, OtlpSink, OtlpSinkConfig, Protocol, TlsConfig};
use warden_collector::sinks::{Delivered, DeliveryError, RetryConfig, SignalSet, Sink, runner};
use warden_collector::sources::otlp::{Config as ReceiverConfig, LocalAddrs, bind};
use warden_testkit::TempDir;

// ---------------------------------------------------------------------------------------
// Data

fn redact(batch: Batch) -> Redacted<Batch> {
    Redactor::default_mask().apply(batch)
}

fn sample_spans() -> Vec<Span> {
    let res = Arc::new(Resource {
        attributes: vec![
            KeyValue::string("service.name", "checkout"),
            KeyValue::string("deployment.environment", "test"),
        ],
        schema_url: String::new(),
    });
    let scope = Arc::new(Scope { name: "warden.test".into(), version: "1.2".into(), ..Scope::default() });
    (1..=3u8)
        .map(|n| Span {
            trace_id: TraceId([n; 16]),
            span_id: SpanId([n; 8]),
            parent_span_id: (n > 1).then_some(SpanId([1; 8])),
            trace_state: String::new(),
            name: format!("GET /orders/{n}"),
            kind: if n == 1 { SpanKind::Server } else { SpanKind::Client },
            start_time_unix_nano: 1_700_000_000_000_000_000 + u64::from(n),
            end_time_unix_nano: 1_700_000_000_050_000_000 + u64::from(n),
            attributes: vec![
                KeyValue::string("http.route", "/orders/{id}"),
                KeyValue { key: "http.status_code".into(), value: AnyValue::Int(200 + i64::from(n)) },
                KeyValue { key: "ratio".into(), value: AnyValue::Double(0.25) },
                KeyValue { key: "cached".into(), value: AnyValue::Bool(n == 2) },
                KeyValue {
                    key: "tags".into(),
                    value: AnyValue::Array(vec![AnyValue::Str("a".into()), AnyValue::Str("b".into())]),
                },
            ],
            events: vec![SpanEvent {
                time_unix_nano: 1_700_000_000_010_000_000,
                name: "cache.miss".into(),
                attributes: vec![KeyValue::string("layer", "l2")],
                dropped_attributes_count: 0,
            }],
            links: if n == 3 {
                vec![SpanLink {
                    trace_id: TraceId([9; 16]),
                    span_id: SpanId([9; 8]),
                    trace_state: String::new(),
                    attributes: vec![],
                    dropped_attributes_count: 0,
                    flags: 0,
                }]
            } else {
                vec![]
            },
            status: if n == 3 {
                Status { code: StatusCode::Error, message: "timeout".into() }
            } else {
                Status::default()
            },
            flags: 0,
            dropped: [0, 0, 0],
            resource: Arc::clone(&res),
            scope: Arc::clone(&scope),
        })
        .collect()
}

fn sample_logs() -> Vec<LogRecord> {
    let res = Arc::new(Resource {
        attributes: vec![KeyValue::string("service.name", "checkout")],
        schema_url: String::new(),
    });
    let scope = Arc::new(Scope { name: "file".into(), ..Scope::default() });
    (0..4u8)
        .map(|i| LogRecord {
            time_unix_nano: 1_700_000_001_000_000_000 + u64::from(i),
            observed_time_unix_nano: 1_700_000_001_500_000_000,
            severity_number: SeverityNumber(9 + i * 4),
            severity_text: ["INFO", "WARN", "ERROR", "FATAL"][i as usize].into(),
            body: if i == 3 {
                AnyValue::KvList(vec![KeyValue::string("msg", "structured")])
            } else {
                AnyValue::Str(format!("order batch {i} processed"))
            },
            attributes: vec![
                KeyValue::string("log.file.path", "/var/log/checkout.log"),
                KeyValue { key: "attempt".into(), value: AnyValue::Int(i64::from(i)) },
            ],
            resource: Arc::clone(&res),
            scope: Arc::clone(&scope),
            trace_id: (i == 1).then_some(TraceId([1; 16])),
            span_id: (i == 1).then_some(SpanId([1; 8])),
            flags: u32::from(i == 1),
            event_name: String::new(),
        })
        .collect()
}

fn sample_points() -> Vec<MetricPoint> {
    let l = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| Label::new(*k, *v)).collect::<Vec<_>>();
    let t = 1_700_000_000_123;
    let mut v = vec![
        MetricPoint::new(
            "http_requests_total",
            l(&[("job", "shop/checkout"), ("instance", "i1"), ("code", "200")]),
            MetricKind::Counter,
            10.0,
            t,
        ),
        MetricPoint::new(
            "http_requests_total",
            l(&[("job", "shop/checkout"), ("instance", "i1"), ("code", "500")]),
            MetricKind::Counter,
            2.0,
            t,
        ),
        MetricPoint::new("queue_depth", l(&[("job", "shop/checkout"), ("instance", "i1")]), MetricKind::Gauge, 7.5, t),
    ];
    for (le, c) in [("0.1", 1.0), ("0.5", 4.0), ("+Inf", 6.0)] {
        v.push(MetricPoint::new(
            "latency_seconds_bucket",
            l(&[("job", "shop/checkout"), ("instance", "i1"), ("le", le)]),
            MetricKind::Histogram,
            c,
            t,
        ));
    }
    v.push(MetricPoint::new(
        "latency_seconds_sum",
        l(&[("job", "shop/checkout"), ("instance", "i1")]),
        MetricKind::Histogram,
        2.5,
        t,
    ));
    v.push(MetricPoint::new(
        "latency_seconds_count",
        l(&[("job", "shop/checkout"), ("instance", "i1")]),
        MetricKind::Histogram,
        6.0,
        t,
    ));
    v
}

fn sample_batch() -> Batch {
    Batch { metrics: sample_points(), logs: sample_logs(), spans: sample_spans(), ack: None }
}

type CanonicalPoint = (String, Vec<Label>, u64, i64, MetricKind);

fn canonical(points: &[MetricPoint]) -> Vec<CanonicalPoint> {
    let mut out: Vec<_> = points
        .iter()
        .map(|p| {
            let mut labels = p.labels.clone();
            labels.sort();
            (p.name.clone(), labels, p.value.to_bits(), p.timestamp_ms, p.kind)
        })
        .collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

fn grpc_config(addr: &str) -> OtlpSinkConfig {
    OtlpSinkConfig::new(format!("http://{addr}"), Protocol::Grpc)
}

fn http_config(addr: &str) -> OtlpSinkConfig {
    OtlpSinkConfig::new(format!("http://{addr}"), Protocol::HttpProtobuf)
}

async fn deliver(sink: &mut OtlpSink, batch: &Redacted<Batch>) -> Result<Delivered, DeliveryError> {
    tokio::time::timeout(Duration::from_secs(30), sink.deliver(batch)).await.expect("deliver is bounded by its timeout")
}

// ---------------------------------------------------------------------------------------
// Warden's own receiver

struct WardenReceiver {
    addrs: LocalAddrs,
    /// Batches the receiver emitted, already acknowledged as delivered (the receiver
    /// answers only then).
    rx: tokio::sync::mpsc::Receiver<Batch>,
    shutdown: CancellationToken,
}

impl Drop for WardenReceiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn warden_receiver() -> WardenReceiver {
    let config = ReceiverConfig {
        grpc_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..ReceiverConfig::default()
    };
    let bound = bind(config).await.unwrap();
    let addrs = bound.local_addrs();
    let (tx, mut pipeline) = channel(64);
    let ctx = SourceContext::new("otlp", tx, std::env::temp_dir());
    let shutdown = ctx.shutdown.clone();
    tokio::spawn(bound.run(ctx));
    // Stands in for the rest of the pipeline: takes each batch and acknowledges it.
    let (out, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        while let Some(mut batch) = pipeline.recv().await {
            if let Some(ack) = batch.ack.take() {
                ack.done();
            }
            if out.send(batch).await.is_err() {
                break;
            }
        }
    });
    WardenReceiver { addrs, rx, shutdown }
}

impl WardenReceiver {
    /// Everything received until `want` items arrived (or 10 s passed).
    async fn collect(&mut self, want: usize) -> Batch {
        let mut all = Batch::default();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while all.len() < want {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(b)) => {
                    all.spans.extend(b.spans);
                    all.logs.extend(b.logs);
                    all.metrics.extend(b.metrics);
                }
                _ => break,
            }
        }
        all
    }
}

#[tokio::test]
async fn into_wardens_receiver_over_grpc_and_http_with_and_without_gzip() {
    let mut rcv = warden_receiver().await;
    let red = redact(sample_batch());
    let want = red.get();
    let items = want.len();
    let grpc = rcv.addrs.grpc.unwrap().to_string();
    let http = rcv.addrs.http.unwrap().to_string();
    for (mut config, compression) in [
        (grpc_config(&grpc), Compression::Gzip),
        (grpc_config(&grpc), Compression::None),
        (http_config(&http), Compression::Gzip),
        (http_config(&http), Compression::None),
    ] {
        config.compression = compression;
        let what = format!("{:?} {compression:?}", config.protocol);
        let mut sink = OtlpSink::new(&config).unwrap();
        let d = deliver(&mut sink, &red).await.unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(d, Delivered { accepted: items as u64, rejected: 0 }, "{what}");
        let got = rcv.collect(items).await;
        assert_eq!(got.len(), items, "{what}: items arrived");

        let mut spans = got.spans.clone();
        spans.sort_by_key(|s| s.span_id);
        assert_eq!(spans, want.spans, "{what}: spans");
        let mut logs = got.logs.clone();
        logs.sort_by_key(|l| l.time_unix_nano);
        assert_eq!(logs, want.logs, "{what}: logs");
        assert_eq!(canonical(&got.metrics), canonical(&want.metrics), "{what}: metrics");
    }
}

// ---------------------------------------------------------------------------------------
// The Python receiver

/// A Python that can import grpc and opentelemetry.proto: `WARDEN_PYTHON`, else
/// `python3` or the venv CI uses, whichever has them.
fn python() -> Option<PathBuf> {
    const WHAT: &str = "OTLP sink tests against the Python opentelemetry-proto receiver";
    let importable = |py: &Path| {
        Command::new(py)
            .args(["-c", "import grpc, google.rpc.error_details_pb2, opentelemetry.proto.collector.logs.v1.logs_service_pb2_grpc"])
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
        WHAT,
        found,
        "no python with grpc and opentelemetry-proto (set WARDEN_PYTHON; pip install -r .ci/requirements.txt)",
    )
}

struct PyReceiver {
    py: PathBuf,
    args: Vec<String>,
    child: Option<warden_testkit::Child>,
    out: PathBuf,
    stderr: PathBuf,
    grpc_port: u16,
    http_port: u16,
}

impl PyReceiver {
    /// Starts the receiver on two free ports with `extra` arguments.
    fn start(py: &Path, dir: &Path, extra: &[&str]) -> PyReceiver {
        let name = warden_testkit::unique("rcv");
        let mut r = PyReceiver {
            py: py.to_path_buf(),
            args: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
            out: dir.join(format!("{name}.jsonl")),
            stderr: dir.join(format!("{name}.stderr")),
            grpc_port: warden_testkit::free_port(),
            http_port: warden_testkit::free_port(),
        };
        r.restart();
        r
    }

    /// (Re)starts the process on the same ports, appending to the same output file.
    fn restart(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/otlp_receiver.py");
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(&self.stderr).unwrap();
        let child = Command::new(&self.py)
            .arg(script)
            .args(["--out", self.out.to_str().unwrap()])
            .args(["--grpc-port", &self.grpc_port.to_string(), "--http-port", &self.http_port.to_string()])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap();
        self.child = Some(warden_testkit::Child(child));
        for port in [self.grpc_port, self.http_port] {
            assert!(
                warden_testkit::wait_for_port(port, Duration::from_secs(20)),
                "python receiver did not listen on {port}: {}",
                std::fs::read_to_string(&self.stderr).unwrap_or_default()
            );
        }
    }

    /// SIGKILL, reaped.
    fn kill(&mut self) {
        self.child = None;
    }

    fn grpc(&self) -> String {
        format!("127.0.0.1:{}", self.grpc_port)
    }

    fn http(&self) -> String {
        format!("127.0.0.1:{}", self.http_port)
    }

    fn records(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        // A line cut short by SIGKILL is not a record.
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn answered(&self, signal: &str, answer: &str) -> Vec<serde_json::Value> {
        self.records().into_iter().filter(|r| r["signal"] == signal && r["answer"] == answer).collect()
    }
}

fn configs(rcv: &PyReceiver) -> [OtlpSinkConfig; 2] {
    [grpc_config(&rcv.grpc()), http_config(&rcv.http())]
}

#[tokio::test]
async fn into_the_python_receiver_with_headers_from_env_and_file() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("sink-otlp-py");
    let rcv = PyReceiver::start(
        &py,
        dir.path(),
        &["--record-header", "x-api-key", "--record-header", "authorization", "--record-header", "x-tenant"],
    );
    let key_file = dir.path().join("authorization");
    std::fs::write(&key_file, "Bearer file-token-42\n").unwrap();
    let red = redact(sample_batch());
    for mut config in configs(&rcv) {
        config.headers.insert("X-Tenant".into(), "platform".into());
        config.headers_from_env.insert("x-api-key".into(), "WARDEN_TEST_OTLP_KEY".into());
        config.headers_from_file.insert("authorization".into(), key_file.clone());
        let env = |name: &str| (name == "WARDEN_TEST_OTLP_KEY").then(|| "env-key-7".to_owned());
        let mut sink = OtlpSink::with_env(&config, &env).unwrap();
        let d = deliver(&mut sink, &red).await.unwrap();
        assert_eq!(d.accepted, red.get().len() as u64);
    }
    let records = rcv.records();
    assert_eq!(records.len(), 6, "three signals over two protocols: {records:?}");
    for r in &records {
        assert_eq!(r["answer"], "ok");
        assert_eq!(r["headers"]["x-api-key"], "env-key-7", "{r}");
        assert_eq!(r["headers"]["authorization"], "Bearer file-token-42", "{r}");
        assert_eq!(r["headers"]["x-tenant"], "platform", "{r}");
        if r["protocol"] == "http" {
            assert_eq!(r["content_encoding"], "gzip", "gzip is the default");
        }
        let data = &r["data"];
        match r["signal"].as_str().unwrap() {
            "traces" => {
                assert_eq!(r["items"], 3);
                let s3 = data.as_array().unwrap().iter().find(|s| s["span_id"] == "0303030303030303").unwrap();
                assert_eq!(s3["name"], "GET /orders/3");
                assert_eq!(s3["trace_id"], "03".repeat(16));
                assert_eq!(s3["parent_span_id"], "0101010101010101");
                assert_eq!(s3["kind"], 3, "client");
                assert_eq!(s3["status"], 2, "error");
                assert_eq!(s3["links"][0], "0909090909090909");
                assert_eq!(s3["events"][0], "cache.miss");
                assert_eq!(s3["resource"]["service.name"], "checkout");
                let a = &s3["attributes"];
                assert_eq!(a["http.route"], "/orders/{id}");
                assert_eq!(a["http.status_code"], 203);
                assert_eq!(a["ratio"], 0.25);
                assert_eq!(a["cached"], false);
                assert_eq!(a["tags"], serde_json::json!(["a", "b"]));
            }
            "logs" => {
                assert_eq!(r["items"], 4);
                let logs = data.as_array().unwrap();
                let bodies: Vec<_> = logs.iter().map(|l| l["body"].clone()).collect();
                assert_eq!(
                    bodies,
                    [
                        serde_json::json!("order batch 0 processed"),
                        serde_json::json!("order batch 1 processed"),
                        serde_json::json!("order batch 2 processed"),
                        serde_json::json!({"msg": "structured"}),
                    ]
                );
                assert_eq!(logs[1]["severity_number"], 13);
                assert_eq!(logs[1]["severity_text"], "WARN");
                assert_eq!(logs[1]["trace_id"], "01".repeat(16));
                assert_eq!(logs[2]["attributes"]["attempt"], 2);
                assert_eq!(logs[0]["attributes"]["log.file.path"], "/var/log/checkout.log");
            }
            "metrics" => {
                assert_eq!(r["items"], 4, "2 counter points + 1 gauge + 1 histogram point");
                let metric = |name: &str| data.as_array().unwrap().iter().find(|m| m["name"] == name).unwrap().clone();
                let requests = metric("http_requests");
                assert_eq!((requests["type"].as_str(), requests["monotonic"].as_bool()), (Some("sum"), Some(true)));
                assert_eq!(requests["temporality"], 2, "cumulative");
                let p500 = requests["points"].as_array().unwrap().iter().find(|p| p["attributes"]["code"] == "500");
                assert_eq!(p500.unwrap()["value"], 2.0);
                assert_eq!(requests["resource"]["service.name"], "checkout");
                assert_eq!(requests["resource"]["service.namespace"], "shop");
                assert_eq!(requests["resource"]["service.instance.id"], "i1");
                assert_eq!(metric("queue_depth")["points"][0]["value"], 7.5);
                let h = &metric("latency_seconds")["points"][0];
                assert_eq!((h["count"].as_u64(), h["sum"].as_f64()), (Some(6), Some(2.5)));
                assert_eq!(h["bucket_counts"], serde_json::json!([1, 3, 2]));
                assert_eq!(h["bounds"], serde_json::json!([0.1, 0.5]));
            }
            other => panic!("unexpected signal {other}"),
        }
    }
}

#[tokio::test]
async fn python_receiver_without_gzip() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("sink-otlp-py");
    let rcv = PyReceiver::start(&py, dir.path(), &[]);
    let red = redact(sample_batch());
    for mut config in configs(&rcv) {
        config.compression = Compression::None;
        deliver(&mut OtlpSink::new(&config).unwrap(), &red).await.unwrap();
    }
    let records = rcv.records();
    assert_eq!(records.len(), 6);
    assert!(records.iter().filter(|r| r["protocol"] == "http").all(|r| r["content_encoding"].is_null()), "{records:?}");
}

#[tokio::test]
async fn failures_are_classified_with_the_servers_retry_hint() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("sink-otlp-py");
    let logs = redact(Batch::logs(sample_logs()));

    // UNAVAILABLE / 503 with RetryInfo / Retry-After: retryable with the hint.
    let rcv = PyReceiver::start(&py, dir.path(), &["--fail-first", "2", "--retry-after", "3"]);
    for config in configs(&rcv) {
        let mut sink = OtlpSink::new(&config).unwrap();
        match deliver(&mut sink, &logs).await {
            Err(DeliveryError::Retryable { reason, retry_after }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(3)), "{reason}");
                assert!(reason.contains("otlp logs export to http://127.0.0.1:"), "{reason}");
                let status = if config.protocol == Protocol::Grpc { "gRPC status 14" } else { "HTTP 503" };
                assert!(reason.contains(status), "{reason}");
                assert!(!reason.contains("failing as told"), "the server's text is not echoed: {reason}");
            }
            other => panic!("{:?}: {other:?}", config.protocol),
        }
    }
    drop(rcv);

    // RESOURCE_EXHAUSTED without RetryInfo and HTTP 400: permanent. With RetryInfo,
    // RESOURCE_EXHAUSTED is retryable; so is 429.
    for (args, retryable) in [
        (&["--fail-grpc-code", "RESOURCE_EXHAUSTED", "--fail-http-status", "400"][..], false),
        (&["--fail-grpc-code", "RESOURCE_EXHAUSTED", "--fail-http-status", "429", "--retry-after", "1"][..], true),
        (&["--fail-grpc-code", "INVALID_ARGUMENT", "--fail-http-status", "401"][..], false),
    ] {
        let rcv = PyReceiver::start(&py, dir.path(), &[&["--fail-first", "2"], args].concat());
        for config in configs(&rcv) {
            let e = deliver(&mut OtlpSink::new(&config).unwrap(), &logs).await.unwrap_err();
            assert_eq!(matches!(e, DeliveryError::Retryable { .. }), retryable, "{args:?}: {e}");
        }
    }
}

#[tokio::test]
async fn partial_success_is_counted_and_a_partial_failure_is_not_resent() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("sink-otlp-py");
    let batch = redact(Batch { spans: sample_spans(), logs: sample_logs(), ..Batch::default() });

    // partial_success.rejected_* → Delivered.rejected.
    let rcv = PyReceiver::start(&py, dir.path(), &["--reject", "2"]);
    for config in configs(&rcv) {
        let d = deliver(&mut OtlpSink::new(&config).unwrap(), &batch).await.unwrap();
        assert_eq!(d, Delivered { accepted: 3, rejected: 4 }, "{:?}: 2 of 3 spans and 2 of 4 logs", config.protocol);
    }
    drop(rcv);

    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        // The first request (traces) fails, logs go through; the retry sends only traces.
        let rcv = PyReceiver::start(&py, dir.path(), &["--fail-first", "1"]);
        let config = if protocol == Protocol::Grpc { grpc_config(&rcv.grpc()) } else { http_config(&rcv.http()) };
        let mut sink = OtlpSink::new(&config).unwrap();
        let e = deliver(&mut sink, &batch).await.unwrap_err();
        assert!(e.to_string().contains("otlp traces export"), "{e}");
        let d = deliver(&mut sink, &batch).await.unwrap();
        assert_eq!(d, Delivered { accepted: 7, rejected: 0 }, "{protocol:?}: counts include the part sent earlier");
        assert_eq!(rcv.answered("logs", "ok").len(), 1, "{protocol:?}: logs were sent once");
        assert_eq!(rcv.answered("traces", "ok").len(), 1);
        assert_eq!(rcv.answered("traces", "fail").len(), 1);
        // Once delivered, the same batch is sent in full again if asked to.
        deliver(&mut sink, &batch).await.unwrap();
        assert_eq!(rcv.answered("logs", "ok").len(), 2);

        // A different batch after a partial failure (the runner gave up on the first)
        // is sent in full.
        let rcv = PyReceiver::start(&py, dir.path(), &["--fail-first", "1"]);
        let config = if protocol == Protocol::Grpc { grpc_config(&rcv.grpc()) } else { http_config(&rcv.http()) };
        let mut sink = OtlpSink::new(&config).unwrap();
        deliver(&mut sink, &batch).await.unwrap_err();
        let mut other = sample_logs();
        other[0].body = AnyValue::Str("another batch".into());
        let other = redact(Batch { spans: sample_spans(), logs: other, ..Batch::default() });
        deliver(&mut sink, &other).await.unwrap();
        let logs = rcv.answered("logs", "ok");
        assert_eq!(logs.len(), 2, "{protocol:?}");
        assert_eq!(logs[1]["data"][0]["body"], "another batch");
    }
}

#[tokio::test]
async fn a_signal_refused_for_good_is_counted_while_the_rest_is_delivered() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("sink-otlp-py");
    let rcv = PyReceiver::start(&py, dir.path(), &[]);
    let mut config = http_config(&rcv.http());
    config.paths.traces = Some("/v1/not-here".into());
    let mut sink = OtlpSink::new(&config).unwrap();
    let batch = redact(Batch { spans: sample_spans(), logs: sample_logs(), ..Batch::default() });
    let d = deliver(&mut sink, &batch).await.unwrap();
    assert_eq!(d, Delivered { accepted: 4, rejected: 3 }, "404 on traces: dropped and counted");
    let e = deliver(&mut sink, &redact(Batch::spans(sample_spans()))).await.unwrap_err();
    match e {
        DeliveryError::Permanent { reason } => {
            assert!(reason.contains("/v1/not-here") && reason.contains("HTTP 404"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_runner_waits_as_the_server_asks_and_counts_rejections() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("sink-otlp-py");
    let rcv = PyReceiver::start(&py, dir.path(), &["--fail-first", "4", "--retry-after", "1", "--reject", "1"]);
    let shutdown = CancellationToken::new();
    let retry =
        RetryConfig { initial: Duration::from_millis(10), max: Duration::from_secs(5), ..RetryConfig::default() };
    let buffer = BufferConfig::Memory { max_events: 1000, when_full: WhenFull::Block };
    let mut handles = Vec::new();
    for (name, config) in ["grpc", "http"].into_iter().zip(configs(&rcv)) {
        let h = runner::spawn(name, OtlpSink::new(&config).unwrap(), &buffer, &retry, dir.path(), shutdown.clone())
            .unwrap();
        h.input.send(redact(Batch::logs(sample_logs()))).await.unwrap();
        handles.push(h);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while rcv.answered("logs", "ok").len() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for proto in ["grpc", "http"] {
        let mine: Vec<_> = rcv.records().into_iter().filter(|r| r["protocol"] == proto).collect();
        let answers: Vec<_> = mine.iter().map(|r| r["answer"].as_str().unwrap().to_owned()).collect();
        assert_eq!(answers.last().map(String::as_str), Some("ok"), "{proto}: {answers:?}");
        assert!(answers.len() >= 2, "{proto}: {answers:?}");
        // Every retry came at least the server's 1 s after the failure (the runner's own
        // backoff would have been 10–20 ms).
        for w in mine.windows(2) {
            let gap = w[1]["t"].as_f64().unwrap() - w[0]["t"].as_f64().unwrap();
            assert!(gap >= 0.95, "{proto}: retried after {gap:.3}s");
        }
    }
    for h in &handles {
        let m = &h.metrics;
        let deadline = Instant::now() + Duration::from_secs(5);
        while m.sent() < 3 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!((m.sent(), m.rejected()), (3, 1), "{}: 4 logs, 1 rejected by partial success", m.name());
        assert!(m.retried() >= 1, "{}", m.name());
    }
    shutdown.cancel();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(15), h.join()).await.unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// TLS

struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn pki(dir: &Path) -> Pki {
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

    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, cn: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    };
    let (server_pem, server_key_pem) =
        leaf(vec!["127.0.0.1".into(), "localhost".into()], ExtendedKeyUsagePurpose::ServerAuth, "receiver");
    let (client_pem, client_key_pem) = leaf(vec![], ExtendedKeyUsagePurpose::ClientAuth, "warden");
    let p = Pki {
        ca: dir.join("ca.pem"),
        server_cert: dir.join("server.pem"),
        server_key: dir.join("server.key"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    std::fs::write(&p.ca, ca_cert.pem()).unwrap();
    std::fs::write(&p.server_cert, server_pem).unwrap();
    std::fs::write(&p.server_key, server_key_pem).unwrap();
    std::fs::write(&p.client_cert, client_pem).unwrap();
    std::fs::write(&p.client_key, client_key_pem).unwrap();
    p
}

#[tokio::test]
async fn tls_with_a_private_ca_and_a_client_certificate() {
    let Some(py) = python() else { return };
    let dir = TempDir::new("sink-otlp-tls");
    let pki = pki(dir.path());
    let rcv = PyReceiver::start(
        &py,
        dir.path(),
        &[
            "--tls-cert",
            pki.server_cert.to_str().unwrap(),
            "--tls-key",
            pki.server_key.to_str().unwrap(),
            "--client-ca",
            pki.ca.to_str().unwrap(),
        ],
    );
    let logs = redact(Batch::logs(sample_logs()));
    let https = |p: Protocol| {
        let addr = if p == Protocol::Grpc { rcv.grpc() } else { rcv.http() };
        let mut c = OtlpSinkConfig::new(format!("https://{addr}"), p);
        c.timeout = Duration::from_secs(5);
        c
    };
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let mut config = https(protocol);
        config.tls = Some(TlsConfig {
            ca_file: Some(pki.ca.clone()),
            cert_file: Some(pki.client_cert.clone()),
            key_file: Some(pki.client_key.clone()),
        });
        let d = deliver(&mut OtlpSink::new(&config).unwrap(), &logs).await;
        assert_eq!(d, Ok(Delivered { accepted: 4, rejected: 0 }), "{protocol:?} over mutual TLS");

        // Without the client certificate the receiver refuses the handshake.
        config.tls = Some(TlsConfig { ca_file: Some(pki.ca.clone()), ..TlsConfig::default() });
        let e = deliver(&mut OtlpSink::new(&config).unwrap(), &logs).await.unwrap_err();
        assert!(
            e.to_string()
                .contains(&format!("https://{}", if protocol == Protocol::Grpc { rcv.grpc() } else { rcv.http() })),
            "{e}"
        );

        // Without the private CA (system roots only) the receiver is not trusted.
        let mut config = https(protocol);
        config.tls = None;
        let e = deliver(&mut OtlpSink::new(&config).unwrap(), &logs).await.unwrap_err();
        assert!(matches!(e, DeliveryError::Retryable { .. }), "{e}");
    }
    assert_eq!(rcv.answered("logs", "ok").len(), 2, "only the mutual-TLS deliveries arrived");

    // A CA file that is not PEM is a config error naming the field.
    std::fs::write(dir.path().join("bad.pem"), "not a certificate").unwrap();
    let mut config = https(Protocol::HttpProtobuf);
    config.tls = Some(TlsConfig { ca_file: Some(dir.path().join("bad.pem")), ..TlsConfig::default() });
    let e = OtlpSink::new(&config).unwrap_err().to_string();
    assert!(e.contains("tls.ca_file:") && e.contains("holds no PEM block"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Network failures and configuration errors

#[tokio::test]
async fn refused_connections_and_silent_peers_are_retryable_and_bounded() {
    let logs = redact(Batch::logs(sample_logs()));
    let closed = format!("127.0.0.1:{}", warden_testkit::free_port());
    // A peer that accepts connections and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let held = Arc::new(tokio::sync::Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    let acceptor = tokio::spawn(async move {
        while let Ok((s, _)) = silent.accept().await {
            keep.lock().await.push(s);
        }
    });
    for addr in [&closed, &silent_addr] {
        for mut config in [grpc_config(addr), http_config(addr)] {
            config.timeout = Duration::from_millis(500);
            config.headers.insert("x-api-key".into(), "hunter2-secret".into());
            let mut sink = OtlpSink::new(&config).unwrap();
            let started = Instant::now();
            let e = deliver(&mut sink, &logs).await.unwrap_err();
            assert!(started.elapsed() < Duration::from_secs(3), "{addr}: took {:?}", started.elapsed());
            let DeliveryError::Retryable { reason, retry_after: None } = &e else { panic!("{e:?}") };
            assert!(reason.contains(&format!("otlp logs export to http://{addr}")), "{reason}");
            assert!(!reason.contains("hunter2"), "{reason}");
            if addr == &silent_addr {
                assert!(
                    reason.contains("timed out") || reason.contains("Timeout") || reason.contains("status 1 "),
                    "{reason}"
                );
            }
        }
    }
    acceptor.abort();
}

#[test]
fn bad_configs_are_reported_with_their_field() {
    let parse = |yaml_like_json: &str| -> Result<OtlpSinkConfig, String> {
        let mut de = serde_json::Deserializer::from_str(yaml_like_json);
        serde_path_to_error::deserialize(&mut de).map_err(|e| e.to_string())
    };
    // Unknown protocol, unknown field, bad duration: serde names the path.
    let e = parse(r#"{"endpoint":"http://h:4318","protocol":"http_json"}"#).unwrap_err();
    assert!(e.starts_with("protocol:") && e.contains("http_protobuf"), "{e}");
    let e = parse(r#"{"endpoint":"http://h:4318","tls":{"ca":"/x"}}"#).unwrap_err();
    assert!(e.starts_with("tls.ca:") && e.contains("unknown field `ca`"), "{e}");
    let e = parse(r#"{"endpoint":"http://h:4318","timeout":"soon"}"#).unwrap_err();
    assert!(e.starts_with("timeout:"), "{e}");

    // An endpoint without a scheme.
    let c = parse(r#"{"endpoint":"collector:4318","protocol":"http_protobuf"}"#).unwrap();
    let e = OtlpSink::new(&c).unwrap_err().to_string();
    assert!(e.contains("endpoint: must start with http:// or https://"), "{e}");

    // A header file that does not exist, an unset variable; values never shown.
    let mut c = parse(r#"{"endpoint":"http://h:4317","headers":{"x-tenant":"tenant-secret"}}"#).unwrap();
    c.headers_from_file.insert("x-api-key".into(), "/nonexistent/warden/api-key".into());
    c.headers_from_env.insert("x-other".into(), "WARDEN_TEST_UNSET_VAR".into());
    let e = OtlpSink::with_env(&c, &|_| None).unwrap_err().to_string();
    assert!(e.contains("headers_from_file.x-api-key: cannot read /nonexistent/warden/api-key"), "{e}");
    assert!(e.contains("headers_from_env.x-other: environment variable WARDEN_TEST_UNSET_VAR is not set"), "{e}");
    assert!(!e.contains("tenant-secret"), "{e}");
    assert!(!format!("{c:?}").contains("tenant-secret"));

    // TLS settings with a plain-text endpoint; a client certificate without its key.
    let c = parse(r#"{"endpoint":"http://h:4317","tls":{"cert_file":"/c.pem"}}"#).unwrap();
    let e = OtlpSink::new(&c).unwrap_err().to_string();
    assert!(e.contains("tls: set, but the endpoint is http://"), "{e}");
    assert!(e.contains("tls: cert_file and key_file must be set together"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Outage

/// 100,000 log records flow through two OTLP sinks (gRPC and HTTP) with disk buffers
/// into one Python receiver process; it is killed for 30 s mid-stream and restarted on
/// the same ports. Every record arrives over each protocol; duplicates (requests the
/// receiver recorded but could not answer before it died) stay within a few batches.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_of_30s_loses_nothing() {
    const RECORDS: usize = 100_000;
    const PER_BATCH: usize = 500;
    const SEND_FOR: Duration = Duration::from_secs(40);
    const DOWN_AT: Duration = Duration::from_secs(5);
    const DOWN_FOR: Duration = Duration::from_secs(30);
    let Some(py) = python() else { return };
    let dir = TempDir::new("sink-otlp-outage");
    let mut rcv = PyReceiver::start(&py, dir.path(), &["--bodies-only"]);
    let shutdown = CancellationToken::new();
    let retry =
        RetryConfig { initial: Duration::from_millis(100), max: Duration::from_secs(2), ..RetryConfig::default() };
    let buffer =
        BufferConfig::Disk { max_bytes: 512 * 1024 * 1024, when_full: WhenFull::Block, fsync: FsyncPolicy::Never };
    let mut handles = Vec::new();
    for (name, mut config) in ["otlp-grpc", "otlp-http"].into_iter().zip(configs(&rcv)) {
        config.timeout = Duration::from_secs(3);
        let sink = OtlpSink::new(&config).unwrap();
        handles.push(runner::spawn(name, sink, &buffer, &retry, dir.path(), shutdown.clone()).unwrap());
    }
    let fanout = Fanout::new(handles.iter().map(|h| (SignalSet::LOGS, h.input.clone())).collect());

    let redactor = Redactor::default_mask();
    let body = |n: usize| format!("checkout event seq={n} done");
    let res =
        Arc::new(Resource { attributes: vec![KeyValue::string("service.name", "outage")], schema_url: String::new() });
    let scope = Arc::new(Scope::default());
    let started = Instant::now();
    let batches = RECORDS / PER_BATCH;
    let mut killed_at = None;
    let mut restarted = false;
    let mut sent_at_kill: Vec<u64> = Vec::new();
    let mut sent_before_restart: Vec<u64> = Vec::new();
    for b in 0..batches {
        let logs = (b * PER_BATCH..(b + 1) * PER_BATCH)
            .map(|n| LogRecord {
                time_unix_nano: 1_700_000_000_000_000_000 + n as u64,
                body: AnyValue::Str(body(n)),
                resource: Arc::clone(&res),
                scope: Arc::clone(&scope),
                ..LogRecord::default()
            })
            .collect();
        let red = redactor.apply(Batch::logs(logs));
        if b == 0 {
            assert_eq!(red.get().logs[0].body, AnyValue::Str(body(0)), "the redactor leaves the test bodies alone");
        }
        tokio::time::timeout(Duration::from_secs(10), fanout.send(red)).await.expect("the disk buffers take batches");
        let elapsed = started.elapsed();
        if killed_at.is_none() && elapsed >= DOWN_AT {
            rcv.kill();
            killed_at = Some(Instant::now());
            // Requests in flight when it died fail within the sink's timeout.
            sent_at_kill = handles.iter().map(|h| h.metrics.sent()).collect();
        }
        if let Some(k) = killed_at
            && !restarted
            && k.elapsed() >= DOWN_FOR
        {
            sent_before_restart = handles.iter().map(|h| h.metrics.sent()).collect();
            rcv.restart();
            restarted = true;
        }
        let next = SEND_FOR.mul_f64((b + 1) as f64 / batches as f64);
        if let Some(wait) = next.checked_sub(started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
    let killed_at = killed_at.expect("the receiver was killed");
    if !restarted {
        tokio::time::sleep(DOWN_FOR.saturating_sub(killed_at.elapsed())).await;
        sent_before_restart = handles.iter().map(|h| h.metrics.sent()).collect();
        rcv.restart();
    }
    let end_of_stream: Vec<u64> = handles.iter().map(|h| h.metrics.sent()).collect();

    // Wait until both sinks delivered everything.
    let deadline = Instant::now() + Duration::from_secs(60);
    while handles.iter().any(|h| h.metrics.sent() < RECORDS as u64) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut seen: HashMap<String, BTreeMap<usize, u32>> = HashMap::new();
    for r in rcv.records() {
        assert_eq!(r["answer"], "ok");
        let per = seen.entry(r["protocol"].as_str().unwrap().to_owned()).or_default();
        for b in r["data"].as_array().unwrap() {
            let text = b.as_str().unwrap();
            let n: usize = text
                .strip_prefix("checkout event seq=")
                .and_then(|t| t.strip_suffix(" done"))
                .unwrap()
                .parse()
                .unwrap();
            *per.entry(n).or_default() += 1;
        }
    }
    for (proto, h) in ["grpc", "http"].into_iter().zip(&handles) {
        let per = seen.get(proto).cloned().unwrap_or_default();
        let distinct = per.len();
        let duplicates: u32 = per.values().map(|c| c - 1).sum();
        eprintln!(
            "{proto}: {distinct} distinct, {duplicates} duplicates; sent at kill {sent_at_kill:?}, before restart \
             {sent_before_restart:?}, at end of stream {end_of_stream:?}, in the end {}; retried {}",
            h.metrics.sent(),
            h.metrics.retried()
        );
        assert_eq!(distinct, RECORDS, "{proto}: every record arrived");
        assert!(per.keys().all(|n| *n < RECORDS));
        assert!(duplicates as usize <= 2 * PER_BATCH, "{proto}: {duplicates} duplicates");
        assert_eq!(h.metrics.sent(), RECORDS as u64, "{proto}");
        assert_eq!(h.metrics.dropped(), 0, "{proto}");
        assert!(h.metrics.retried() > 0, "{proto}: the outage was noticed");
    }
    // Nothing went anywhere while the receiver was down (at most the requests in flight
    // at the kill, each a batch, may still have completed): the outage was real.
    for (at_kill, before_restart) in sent_at_kill.iter().zip(&sent_before_restart) {
        assert!(before_restart - at_kill <= PER_BATCH as u64, "sent while down: {at_kill} → {before_restart}");
        assert!(*at_kill > 0 && *before_restart < RECORDS as u64, "the outage was mid-stream");
    }
    shutdown.cancel();
    for h in handles {
        tokio::time::timeout(Duration::from_secs(15), h.join()).await.unwrap();
    }
}
