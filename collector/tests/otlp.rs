//! The OTLP receiver, conversion and span metrics against real peers: the OpenTelemetry
//! Python SDK's exporters (gRPC and HTTP, plain and gzip), platform-api's own exporter
//! (gRPC and HTTP/protobuf), hand-written OTLP/JSON in the specification's encoding, and
//! bad input over both protocols. Also round trips model → proto → model.

use bytes::{Buf as _, BufMut as _};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1 as pr;
use opentelemetry_proto::tonic::trace::v1 as pt;
use prost::Message as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use warden_collector::otlp::{self, Encoding};
use warden_collector::pipeline::{BatchReceiver, CancellationToken, ComponentStats, SourceContext, channel};
use warden_collector::signal::{
    AnyValue, Batch, KeyValue, Label, LogRecord, MetricKind, MetricPoint, Resource, Scope, SeverityNumber, Span,
    SpanEvent, SpanId, SpanKind, SpanLink, Status, StatusCode, TraceId,
};
use warden_collector::sources::otlp::{Config, LocalAddrs, bind};
use warden_collector::spanmetrics::{self, SpanMetrics};

// ---------------------------------------------------------------------------------------
// Harness

struct Receiver {
    addrs: LocalAddrs,
    rx: BatchReceiver,
    stats: Arc<ComponentStats>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start_with(capacity: usize, config: Config) -> Receiver {
    let config = Config {
        grpc_listen: Some("127.0.0.1:0".parse().unwrap()),
        http_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..config
    };
    config.validate().unwrap();
    let bound = bind(config).await.unwrap();
    let addrs = bound.local_addrs();
    let (tx, rx) = channel(capacity);
    let ctx = SourceContext::new("otlp", tx, std::env::temp_dir());
    let stats = Arc::clone(&ctx.stats);
    let shutdown = ctx.shutdown.clone();
    let task = Some(tokio::spawn(bound.run(ctx)));
    Receiver { addrs, rx, stats, shutdown, task }
}

/// The receiver's defaults, but answering without waiting for delivery: these tests read
/// batches from the pipeline after the answer (delivery acknowledgement has its own tests).
fn no_wait() -> Config {
    Config { wait_for_delivery: false, ..Config::default() }
}

async fn start() -> Receiver {
    start_with(64, no_wait()).await
}

impl Receiver {
    fn http(&self, path: &str) -> String {
        format!("http://{}{path}", self.addrs.http.unwrap())
    }

    fn grpc(&self) -> String {
        format!("http://{}", self.addrs.grpc.unwrap())
    }

    fn counter(&self, what: &'static str) -> u64 {
        self.stats.counter(what).get()
    }

    /// Batches until `done` says enough arrived, or `timeout`.
    async fn collect(&mut self, timeout: Duration, done: impl Fn(&Batch) -> bool) -> Batch {
        let mut all = Batch::default();
        let deadline = tokio::time::Instant::now() + timeout;
        while !done(&all) {
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

    async fn stop(mut self) {
        self.shutdown.cancel();
        let task = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(15), task).await.expect("receiver stops after shutdown").unwrap();
    }
}

fn trace_id(n: u8) -> TraceId {
    TraceId([n; 16])
}

fn span_id(n: u8) -> SpanId {
    SpanId([n; 8])
}

fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a AnyValue> {
    attrs.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

fn point<'a>(points: &'a [MetricPoint], name: &str, labels: &[(&str, &str)]) -> Option<&'a MetricPoint> {
    points.iter().find(|p| p.name == name && labels.iter().all(|(k, v)| p.label(k) == Some(v)))
}

/// `google.rpc.Status` as OTLP/HTTP error bodies and gRPC details carry it.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

fn string_kv(k: &str, v: &str) -> pc::KeyValue {
    pc::KeyValue {
        key: k.into(),
        value: Some(pc::AnyValue { value: Some(pc::any_value::Value::StringValue(v.into())) }),
    }
}

/// A proto trace request with `n` valid spans and `bad` spans with a 3-byte trace id.
fn trace_request(n: usize, bad: usize) -> ExportTraceServiceRequest {
    let mk = |i: usize, tid: Vec<u8>| pt::Span {
        trace_id: tid,
        span_id: vec![(i % 250) as u8 + 1; 8],
        name: format!("op{i}"),
        kind: pt::span::SpanKind::Server as i32,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_010_000_000,
        ..Default::default()
    };
    let spans = (0..n).map(|i| mk(i, vec![7; 16])).chain((0..bad).map(|i| mk(i, vec![1, 2, 3]))).collect();
    ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            resource: Some(pr::Resource { attributes: vec![string_kv("service.name", "svc")], ..Default::default() }),
            scope_spans: vec![pt::ScopeSpans { spans, ..Default::default() }],
            schema_url: String::new(),
        }],
    }
}

async fn post(url: &str, content_type: &str, encoding: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = reqwest::Client::new().post(url).header("content-type", content_type).body(body);
    if let Some(e) = encoding {
        req = req.header("content-encoding", e);
    }
    tokio::time::timeout(Duration::from_secs(20), req.send()).await.expect("request timed out").expect("request failed")
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

// ---------------------------------------------------------------------------------------
// Python OpenTelemetry SDK

fn python_with_otel() -> Option<PathBuf> {
    let py = warden_testkit::find_program("WARDEN_PYTHON", &["python3"]);
    let py = warden_testkit::require("Python OpenTelemetry SDK tests", py, "no python3 (set WARDEN_PYTHON)")?;
    let ok = std::process::Command::new(&py)
        .args([
            "-c",
            "import opentelemetry.sdk, opentelemetry.exporter.otlp.proto.grpc, opentelemetry.exporter.otlp.proto.http",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    warden_testkit::require(
        "Python OpenTelemetry SDK tests",
        ok.then_some(py),
        "python cannot import opentelemetry.sdk and the OTLP exporters (pip install -r .ci/requirements.txt)",
    )
}

async fn run_python(py: &Path, protocol: &str, endpoint: &str, gzip: bool) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/send_otlp.py");
    let mut cmd = tokio::process::Command::new(py);
    cmd.arg(script).args(["--protocol", protocol, "--endpoint", endpoint]).kill_on_drop(true);
    if gzip {
        cmd.arg("--gzip");
    }
    let out = tokio::time::timeout(Duration::from_secs(90), cmd.output()).await.expect("python timed out").unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "python {protocol} exporter failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap()
}

fn check_python_signals(out: &serde_json::Value, got: &Batch) {
    let tid = out["trace_id"].as_str().unwrap();
    let server_id = out["server_span_id"].as_str().unwrap();
    let child_id = out["child_span_id"].as_str().unwrap();

    // Traces.
    assert_eq!(got.spans.len(), 2, "{:?}", got.spans.iter().map(|s| &s.name).collect::<Vec<_>>());
    let server = got.spans.iter().find(|s| s.kind == SpanKind::Server).expect("server span");
    let child = got.spans.iter().find(|s| s.kind == SpanKind::Client).expect("client span");
    assert_eq!(server.trace_id.to_string(), tid);
    assert_eq!(server.span_id.to_string(), server_id);
    assert_eq!(server.parent_span_id, None);
    assert_eq!(child.trace_id.to_string(), tid);
    assert_eq!(child.span_id.to_string(), child_id);
    assert_eq!(child.parent_span_id.map(|p| p.to_string()).as_deref(), Some(server_id));
    assert_eq!(server.name, "GET /v1/items/{id}");
    assert_eq!(server.resource.get_str("service.name"), Some("py-otlp-test"));
    assert_eq!(server.resource.get_str("service.instance.id"), Some("inst-1"));
    assert_eq!(server.resource.get_str("telemetry.sdk.language"), Some("python"));
    assert_eq!(server.scope.name, "warden.test");
    assert_eq!(server.scope.version, "1.2.3");
    assert!(Arc::ptr_eq(&server.resource, &child.resource), "spans of one resource share it");
    assert_eq!(attr(&server.attributes, "http.route"), Some(&AnyValue::Str("/v1/items/{id}".into())));
    assert_eq!(attr(&server.attributes, "http.response.status_code"), Some(&AnyValue::Int(200)));
    assert_eq!(attr(&server.attributes, "retry.ratio"), Some(&AnyValue::Double(0.25)));
    assert_eq!(attr(&server.attributes, "cache.hit"), Some(&AnyValue::Bool(true)));
    assert_eq!(
        attr(&server.attributes, "tags"),
        Some(&AnyValue::Array(vec![AnyValue::Str("a".into()), AnyValue::Str("b".into())]))
    );
    assert_eq!(server.events.len(), 1);
    assert_eq!(server.events[0].name, "cache.miss");
    assert_eq!(attr(&server.events[0].attributes, "cache.key.length"), Some(&AnyValue::Int(12)));
    assert!(
        server.end_time_unix_nano >= server.start_time_unix_nano
            && server.start_time_unix_nano > 1_600_000_000_000_000_000
    );
    assert_eq!(child.status, Status { code: StatusCode::Error, message: "timeout".into() });
    assert_eq!(child.links.len(), 1);
    assert_eq!(child.links[0].span_id.to_string(), server_id);
    assert_eq!(attr(&child.links[0].attributes, "link.kind"), Some(&AnyValue::Str("self".into())));

    // Logs.
    assert_eq!(got.logs.len(), 1);
    let log = &got.logs[0];
    assert_eq!(log.body, AnyValue::Str("lookup finished".into()));
    assert_eq!(log.severity_number, SeverityNumber::WARN);
    assert_eq!(log.severity_text, "WARN");
    assert_eq!(attr(&log.attributes, "request.kind"), Some(&AnyValue::Str("lookup".into())));
    assert_eq!(log.trace_id.map(|t| t.to_string()).as_deref(), Some(tid));
    assert_eq!(log.span_id.map(|t| t.to_string()).as_deref(), Some(server_id));
    assert_eq!(log.resource.get_str("service.name"), Some("py-otlp-test"));
    assert!(log.time_unix_nano > 0);

    // Metrics.
    let m = &got.metrics;
    let job = [("job", "warden/py-otlp-test"), ("instance", "inst-1")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        job.iter().chain(extra).copied().collect()
    };
    let p = point(m, "requests_total", &with(&[("route", "/a")])).expect("counter requests_total{route=/a}");
    assert_eq!((p.kind, p.value), (MetricKind::Counter, 3.0));
    assert_eq!(p.label("otel_scope_name"), Some("warden.test.metrics"));
    assert_eq!(point(m, "requests_total", &with(&[("route", "/b")])).unwrap().value, 5.0);
    let g = point(m, "queue_depth", &with(&[("queue", "ingest")])).expect("gauge queue_depth");
    assert_eq!((g.kind, g.value), (MetricKind::Gauge, 7.0));
    let bucket = |le: &'static str| {
        point(m, "request_duration_seconds_bucket", &with(&[("route", "/a"), ("le", le)])).map(|p| p.value)
    };
    assert_eq!(
        [bucket("0.1"), bucket("0.5"), bucket("1"), bucket("+Inf")],
        [Some(1.0), Some(3.0), Some(3.0), Some(4.0)]
    );
    let sum = point(m, "request_duration_seconds_sum", &with(&[("route", "/a")])).unwrap();
    assert!((sum.value - 2.65).abs() < 1e-9 && sum.kind == MetricKind::Histogram);
    assert_eq!(point(m, "request_duration_seconds_count", &with(&[("route", "/a")])).unwrap().value, 4.0);
    let ti = point(m, "target_info", &job).expect("target_info");
    assert_eq!(ti.label("deployment_environment"), Some("test"));
    assert_eq!(ti.label("telemetry_sdk_language"), Some("python"));
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    assert!(m.iter().all(|p| (now_ms - p.timestamp_ms).abs() < 600_000), "timestamps are recent");
    assert!(m.iter().all(|p| p.labels.windows(2).all(|w| w[0].name < w[1].name)), "labels sorted and unique");
}

fn all_three(b: &Batch) -> bool {
    b.spans.len() >= 2 && !b.logs.is_empty() && b.metrics.iter().any(|p| p.name == "request_duration_seconds_count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_over_grpc_and_http() {
    let Some(py) = python_with_otel() else { return };
    let mut r = start().await;
    for (protocol, gz) in [("grpc", false), ("grpc", true), ("http", false), ("http", true)] {
        let endpoint = if protocol == "grpc" { r.grpc() } else { r.http("") };
        let out = run_python(&py, protocol, &endpoint, gz).await;
        let got = r.collect(Duration::from_secs(20), all_three).await;
        check_python_signals(&out, &got);
        assert!(r.rx.try_recv().is_none(), "nothing more than what the SDK sent ({protocol}, gzip {gz})");
    }
    assert_eq!(r.counter("spans_received"), 8);
    assert_eq!(r.counter("spans_emitted"), 8);
    assert_eq!(r.counter("log_records_received"), 4);
    assert_eq!(r.stats.errors.get(), 0);
    assert_eq!(r.stats.dropped.get(), 0);
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// platform-api's exporter

async fn platform_api_spans(protocol: &str) {
    let what = "platform-api OTLP exporter test";
    let Some(bin) = warden_testkit::require(
        what,
        warden_testkit::workspace_bin("platform-api"),
        "the platform-api binary is not built (cargo build -p platform-api)",
    ) else {
        return;
    };
    let mut r = start().await;
    let endpoint = if protocol == "grpc" { r.grpc() } else { r.http("") };
    let data = warden_testkit::TempDir::new("warden-otlp-platform");
    let port = warden_testkit::free_port();
    let listen = format!("127.0.0.1:{port}");
    let _api = warden_testkit::Child::spawn_with_env(
        &bin,
        &["--listen", &listen, "--data-dir", data.path().to_str().unwrap()],
        &[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", protocol),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
        ],
    )
    .unwrap();
    let up = tokio::task::spawn_blocking(move || warden_testkit::wait_for_port(port, Duration::from_secs(30)))
        .await
        .unwrap();
    assert!(up, "platform-api did not start");
    let client = reqwest::Client::new();
    for path in ["/healthz", "/v1/records/12345", "/v1/records/67890", "/healthz"] {
        let resp = client.get(format!("http://{listen}{path}")).send().await.unwrap();
        assert!(resp.status().as_u16() < 500, "{path}: {}", resp.status());
    }
    let server_spans = |b: &Batch| {
        b.spans
            .iter()
            .filter(|s| s.kind == SpanKind::Server && s.resource.get_str("service.name") == Some("platform-api"))
            .count()
    };
    let got = r.collect(Duration::from_secs(30), |b| server_spans(b) >= 4).await;
    assert_eq!(server_spans(&got), 4, "server spans from platform-api over {protocol}");
    let servers: Vec<&Span> = got.spans.iter().filter(|s| s.kind == SpanKind::Server).collect();
    let route = |s: &Span| attr(&s.attributes, "http.route").and_then(AnyValue::as_str).unwrap_or("").to_owned();
    assert_eq!(servers.iter().filter(|s| route(s) == "/healthz").count(), 2);
    assert_eq!(servers.iter().filter(|s| route(s) == "/v1/records/{id}").count(), 2);
    for s in &servers {
        assert!(!s.name.contains("12345") && !s.name.contains("67890"), "raw path in span name {}", s.name);
        assert_eq!(attr(&s.attributes, "http.request.method"), Some(&AnyValue::Str("GET".into())));
        assert!(matches!(attr(&s.attributes, "http.response.status_code"), Some(AnyValue::Int(200 | 401))));
        assert!(s.trace_id != TraceId::default() && s.end_time_unix_nano >= s.start_time_unix_nano);
    }

    let mut sm = SpanMetrics::new(&spanmetrics::Config::default());
    sm.observe(&got.spans);
    let p = sm.collect(1);
    let calls = |span_name: &str, class: &str| {
        point(
            &p,
            "traces_span_metrics_calls_total",
            &[
                ("service_name", "platform-api"),
                ("span_name", span_name),
                ("span_kind", "SPAN_KIND_SERVER"),
                ("status_code", "STATUS_CODE_UNSET"),
                ("http_status_code", class),
            ],
        )
        .map(|p| p.value)
    };
    assert_eq!(calls("GET /healthz", "2xx"), Some(2.0));
    assert_eq!(calls("GET /v1/records/{id}", "4xx"), Some(2.0));
    let errors = point(&p, "traces_span_metrics_errors_total", &[("span_name", "GET /v1/records/{id}")]).unwrap();
    assert_eq!(errors.value, 0.0);
    let count = point(
        &p,
        "traces_span_metrics_duration_seconds_count",
        &[("span_name", "GET /healthz"), ("http_status_code", "2xx")],
    )
    .unwrap();
    assert_eq!(count.value, 2.0);
    assert!(
        p.iter().all(|p| p.label("span_kind").is_none_or(|k| k == "SPAN_KIND_SERVER")),
        "only server spans by default"
    );
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_api_exporter_over_grpc() {
    platform_api_spans("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn platform_api_exporter_over_http_protobuf() {
    platform_api_spans("http/protobuf").await;
}

// ---------------------------------------------------------------------------------------
// OTLP/JSON as the specification writes it

/// Hand-written in the OTLP/JSON encoding: 64-bit integers as strings *and* numbers,
/// upper-case hex ids, enum integers and (leniently) names, `null`s, unknown and
/// snake_case fields (ignored), special doubles as strings.
const SPEC_TRACES: &str = r#"{
  "resourceSpans": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}], "droppedAttributesCount": 0},
    "futureField": {"x": 1},
    "scopeSpans": [{
      "scope": {"name": "json-lib", "version": "0.1"},
      "spans": [
        {
          "traceId": "5B8EFFF798038103D269B633813FC60C",
          "spanId": "EEE19B7EC3C1B174",
          "parentSpanId": "EEE19B7EC3C1B173",
          "name": "GET /patients/{id}",
          "startTimeUnixNano": "1544712660000000000",
          "endTimeUnixNano": 1544712661000000000,
          "kind": 2,
          "droppedAttributesCount": "3",
          "attributes": [
            {"key": "http.route", "value": {"stringValue": "/patients/{id}"}},
            {"key": "attempt", "value": {"intValue": "3"}},
            {"key": "attempt.n", "value": {"intValue": 4}},
            {"key": "ratio", "value": {"doubleValue": "NaN"}},
            {"key": "big", "value": {"doubleValue": "-Infinity"}},
            {"key": "raw", "value": {"bytesValue": "AQID"}},
            {"key": "nested", "value": {"kvlistValue": {"values": [{"key": "a", "value": {"arrayValue": {"values": [{"boolValue": true}, {}]}}}]}}},
            {"key": "nothing", "value": null},
            {"key": "snake", "value": {"string_value": "ignored"}}
          ],
          "events": [{"timeUnixNano": "1544712660500000000", "name": "exception", "attributes": null}],
          "links": [{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "0000000000000001"}],
          "status": {"code": "STATUS_CODE_ERROR", "message": "boom"},
          "trace_id": "ignored: snake_case keys are unknown fields"
        },
        {
          "traceId": "5b8efff798038103d269b633813fc60c",
          "spanId": "eee19b7ec3c1b175",
          "name": "child",
          "kind": "SPAN_KIND_CLIENT",
          "status": null
        }
      ]
    }]
  }]
}"#;

#[test]
fn spec_json_decodes_with_strings_numbers_enums_and_nulls() {
    let req = otlp::decode_traces(SPEC_TRACES.as_bytes(), Encoding::Json).unwrap();
    let conv = otlp::convert_traces(req);
    assert!(conv.report.is_clean(), "{}", conv.report.message());
    let spans = &conv.batch.spans;
    assert_eq!(spans.len(), 2);
    let s = &spans[0];
    assert_eq!(s.trace_id.to_string(), "5b8efff798038103d269b633813fc60c");
    assert_eq!(s.span_id.to_string(), "eee19b7ec3c1b174");
    assert_eq!(s.parent_span_id.unwrap().to_string(), "eee19b7ec3c1b173");
    assert_eq!((s.start_time_unix_nano, s.end_time_unix_nano), (1_544_712_660_000_000_000, 1_544_712_661_000_000_000));
    assert_eq!(s.kind, SpanKind::Server);
    assert_eq!(s.dropped[0], 3);
    assert_eq!(attr(&s.attributes, "attempt"), Some(&AnyValue::Int(3)));
    assert_eq!(attr(&s.attributes, "attempt.n"), Some(&AnyValue::Int(4)));
    assert!(matches!(attr(&s.attributes, "ratio"), Some(AnyValue::Double(d)) if d.is_nan()));
    assert_eq!(attr(&s.attributes, "big"), Some(&AnyValue::Double(f64::NEG_INFINITY)));
    assert_eq!(attr(&s.attributes, "raw"), Some(&AnyValue::Bytes(vec![1, 2, 3])));
    assert_eq!(
        attr(&s.attributes, "nested"),
        Some(&AnyValue::KvList(vec![KeyValue {
            key: "a".into(),
            value: AnyValue::Array(vec![AnyValue::Bool(true), AnyValue::Empty])
        }]))
    );
    assert_eq!(attr(&s.attributes, "nothing"), Some(&AnyValue::Empty));
    assert_eq!(attr(&s.attributes, "snake"), Some(&AnyValue::Empty), "snake_case oneof keys are unknown fields");
    assert_eq!(s.events[0].time_unix_nano, 1_544_712_660_500_000_000);
    assert_eq!(s.links[0].span_id, SpanId([0, 0, 0, 0, 0, 0, 0, 1]));
    assert_eq!(s.status, Status { code: StatusCode::Error, message: "boom".into() });
    assert_eq!(s.resource.get_str("service.name"), Some("json-svc"));
    assert_eq!(s.scope.name, "json-lib");
    assert_eq!(spans[1].kind, SpanKind::Client);
    assert_eq!(spans[1].status, Status::default());
}

#[test]
fn spec_json_logs_and_metrics() {
    let logs = r#"{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"l"}}]},
      "scopeLogs":[{"scope":{"name":"s"},"logRecords":[
        {"timeUnixNano":"1544712660300000000","observedTimeUnixNano":1544712660300000001,"severityNumber":10,
         "severityText":"Information","traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
         "body":{"stringValue":"Example log record"},"attributes":[{"key":"int.attribute","value":{"intValue":"10"}}],
         "eventName":"e","flags":1},
        {"severityNumber":"SEVERITY_NUMBER_ERROR","body":{"kvlistValue":{"values":[{"key":"k","value":{"doubleValue":1.5}}]}}}
      ]}]}]}"#;
    let conv = otlp::convert_logs(otlp::decode_logs(logs.as_bytes(), Encoding::Json).unwrap());
    assert!(conv.report.is_clean());
    let l = &conv.batch.logs;
    assert_eq!(l[0].time_unix_nano, 1_544_712_660_300_000_000);
    assert_eq!(l[0].observed_time_unix_nano, 1_544_712_660_300_000_001);
    assert_eq!(l[0].severity_number, SeverityNumber(10));
    assert_eq!(l[0].trace_id.unwrap().to_string(), "5b8efff798038103d269b633813fc60c");
    assert_eq!((l[0].event_name.as_str(), l[0].flags), ("e", 1));
    assert_eq!(attr(&l[0].attributes, "int.attribute"), Some(&AnyValue::Int(10)));
    assert_eq!(l[1].severity_number, SeverityNumber::ERROR);
    assert_eq!(l[1].trace_id, None);

    let metrics = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"m"}}]},
      "scopeMetrics":[{"scope":{"name":"lib"},"metrics":[
        {"name":"my.counter","unit":"1","sum":{"aggregationTemporality":2,"isMonotonic":true,
          "dataPoints":[{"asInt":"5","timeUnixNano":"1544712660300000000","attributes":[{"key":"my.label","value":{"stringValue":"x"}}]}]}},
        {"name":"my.gauge","unit":"1","gauge":{"dataPoints":[{"asDouble":"0.5","timeUnixNano":1544712660300000000}]}},
        {"name":"my.histogram","unit":"ms","histogram":{"aggregationTemporality":"AGGREGATION_TEMPORALITY_CUMULATIVE",
          "dataPoints":[{"timeUnixNano":"1544712660300000000","count":"3","sum":7,"bucketCounts":["1",1,"1"],
                         "explicitBounds":[1,5],"min":null}]}},
        {"name":"my.summary","summary":{"dataPoints":[{"timeUnixNano":"1544712660300000000","count":2,"sum":"3",
          "quantileValues":[{"quantile":0.5,"value":1},{"quantile":1,"value":2}]}]}},
        {"name":"my.delta","sum":{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[{"asInt":1,"timeUnixNano":"1"}]}},
        {"name":"my.exp","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"timeUnixNano":"1","count":"1","scale":2,
          "positive":{"offset":-1,"bucketCounts":["1"]}}]}}
      ]}]}]}"#;
    let conv = otlp::convert_metrics(otlp::decode_metrics(metrics.as_bytes(), Encoding::Json).unwrap());
    assert_eq!(conv.received, 6);
    assert_eq!(conv.report.rejected, 2);
    let msg = conv.report.message();
    assert!(
        msg.contains("delta temporality is not supported (1)")
            && msg.contains("exponential histograms are not supported (1)"),
        "{msg}"
    );
    let m = &conv.batch.metrics;
    let c = point(m, "my_counter_total", &[("job", "m"), ("my_label", "x"), ("otel_scope_name", "lib")]).unwrap();
    assert_eq!((c.value, c.timestamp_ms, c.kind), (5.0, 1_544_712_660_300, MetricKind::Counter));
    assert_eq!(point(m, "my_gauge_ratio", &[]).unwrap().value, 0.5);
    let b = |le| point(m, "my_histogram_milliseconds_bucket", &[("le", le)]).unwrap().value;
    assert_eq!([b("1"), b("5"), b("+Inf")], [1.0, 2.0, 3.0]);
    assert_eq!(point(m, "my_histogram_milliseconds_sum", &[]).unwrap().value, 7.0);
    assert_eq!(point(m, "my_summary", &[("quantile", "0.5")]).unwrap().value, 1.0);
    assert_eq!(point(m, "my_summary_count", &[]).unwrap().value, 2.0);
    assert_eq!(point(m, "my_summary_sum", &[]).unwrap().kind, MetricKind::Summary);
}

#[test]
fn json_errors_name_the_field_and_not_the_value() {
    for (body, path) in [
        (
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz-patient-jane"}]}]}]}"#,
            "resourceSpans[0].scopeSpans[0].spans[0].traceId",
        ),
        (
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":"jane doe"}]}]}]}"#,
            "resourceSpans[0].scopeSpans[0].spans[0].startTimeUnixNano",
        ),
        (
            r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":{"intValue":"jane"}}]}}]}"#,
            "resourceSpans[0].resource.attributes[0].value.intValue",
        ),
        (
            r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_JANE"}]}]}]}"#,
            "resourceSpans[0].scopeSpans[0].spans[0].kind",
        ),
        (r#"{"resourceSpans":{"jane":1}}"#, "resourceSpans"),
    ] {
        let e = otlp::decode_traces(body.as_bytes(), Encoding::Json).unwrap_err().to_string();
        assert!(e.contains(path), "{e} should name {path}");
        assert!(!e.to_lowercase().contains("jane"), "{e} echoes the value");
    }
    let e =
        otlp::decode_traces(br#"{"resourceSpans": [{"scopeSpans": [jane]}]}"#, Encoding::Json).unwrap_err().to_string();
    assert!(e.contains("line 1") && !e.contains("jane"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Round trips

fn sample_spans() -> Vec<Span> {
    let r1 = Arc::new(Resource {
        attributes: vec![KeyValue::string("service.name", "a"), KeyValue { key: "n".into(), value: AnyValue::Int(1) }],
        schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
    });
    let r2 = Arc::new(Resource { attributes: vec![KeyValue::string("service.name", "b")], schema_url: String::new() });
    let s1 = Arc::new(Scope {
        name: "lib".into(),
        version: "1".into(),
        attributes: vec![KeyValue::string("x", "y")],
        schema_url: "u".into(),
    });
    let s2 = Arc::new(Scope::default());
    let mk = |n: u8, r: &Arc<Resource>, s: &Arc<Scope>| Span {
        trace_id: trace_id(n),
        span_id: span_id(n),
        parent_span_id: n.is_multiple_of(2).then(|| span_id(n + 100)),
        trace_state: if n == 1 { "k=v".into() } else { String::new() },
        name: format!("span {n}"),
        kind: [SpanKind::Server, SpanKind::Client, SpanKind::Internal, SpanKind::Consumer][n as usize % 4],
        start_time_unix_nano: 1_000 + u64::from(n),
        end_time_unix_nano: 2_000 + u64::from(n),
        attributes: vec![
            KeyValue { key: "d".into(), value: AnyValue::Double(-0.5) },
            KeyValue { key: "b".into(), value: AnyValue::Bytes(vec![0, 1, 255]) },
            KeyValue { key: "e".into(), value: AnyValue::Empty },
            KeyValue { key: "l".into(), value: AnyValue::KvList(vec![KeyValue::string("in", "side")]) },
        ],
        events: vec![SpanEvent {
            time_unix_nano: 1_500,
            name: "ev".into(),
            attributes: vec![],
            dropped_attributes_count: 2,
        }],
        links: vec![SpanLink {
            trace_id: trace_id(9),
            span_id: span_id(9),
            trace_state: "a=b".into(),
            attributes: vec![KeyValue::string("k", "v")],
            dropped_attributes_count: 1,
            flags: 1,
        }],
        status: if n == 3 { Status { code: StatusCode::Error, message: "bad".into() } } else { Status::default() },
        flags: 0x101,
        dropped: [1, 2, 3],
        resource: Arc::clone(r),
        scope: Arc::clone(s),
    };
    // Resources interleaved, one resource as an equal copy: grouping must merge them.
    let r1_copy = Arc::new((*r1).clone());
    vec![mk(1, &r1, &s1), mk(2, &r2, &s2), mk(3, &r1_copy, &s1), mk(4, &r1, &s2), mk(5, &r2, &s2)]
}

#[test]
fn spans_round_trip_model_proto_model() {
    let spans = sample_spans();
    let proto = otlp::spans_to_proto(&spans);
    assert_eq!(proto.len(), 2, "grouped by resource");
    assert_eq!(proto[0].scope_spans.len(), 2, "grouped by scope");
    let bytes = ExportTraceServiceRequest { resource_spans: proto }.encode_to_vec();
    let conv = otlp::convert_traces(otlp::decode_traces(&bytes, Encoding::Protobuf).unwrap());
    assert!(conv.report.is_clean());
    let mut back = conv.batch.spans;
    back.sort_by_key(|s| s.span_id);
    assert_eq!(back, spans);
    // And through OTLP/JSON as opentelemetry-proto's serde writes it.
    let req = ExportTraceServiceRequest { resource_spans: otlp::spans_to_proto(&spans) };
    let json = serde_json::to_vec(&req).unwrap();
    assert_eq!(otlp::decode_traces(&json, Encoding::Json).unwrap(), req);
}

#[test]
fn logs_round_trip_model_proto_model() {
    let res = Arc::new(Resource { attributes: vec![KeyValue::string("service.name", "l")], schema_url: String::new() });
    let scope = Arc::new(Scope { name: "file".into(), ..Scope::default() });
    let logs: Vec<LogRecord> = (0..4u8)
        .map(|i| LogRecord {
            time_unix_nano: u64::from(i) * 7,
            observed_time_unix_nano: 99,
            severity_number: SeverityNumber(i * 5),
            severity_text: ["", "DEBUG", "INFO", "WARN"][i as usize].into(),
            body: if i == 2 {
                AnyValue::KvList(vec![KeyValue::string("msg", "m")])
            } else {
                AnyValue::Str(format!("line {i}"))
            },
            attributes: vec![KeyValue::string("log.file.path", "/var/log/x")],
            resource: Arc::clone(&res),
            scope: Arc::clone(&scope),
            trace_id: (i == 1).then(|| trace_id(4)),
            span_id: (i == 1).then(|| span_id(4)),
            flags: u32::from(i == 1),
            event_name: if i == 3 { "evt".into() } else { String::new() },
        })
        .collect();
    let bytes = ExportLogsServiceRequest { resource_logs: otlp::logs_to_proto(&logs) }.encode_to_vec();
    let conv = otlp::convert_logs(otlp::decode_logs(&bytes, Encoding::Protobuf).unwrap());
    assert!(conv.report.is_clean());
    assert_eq!(conv.batch.logs, logs);
    assert!(conv.batch.logs.iter().all(|l| Arc::ptr_eq(&l.resource, &conv.batch.logs[0].resource)));
    let req = ExportLogsServiceRequest { resource_logs: otlp::logs_to_proto(&logs) };
    assert_eq!(otlp::decode_logs(&serde_json::to_vec(&req).unwrap(), Encoding::Json).unwrap(), req);
}

fn sample_points() -> Vec<MetricPoint> {
    let l = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| Label::new(*k, *v)).collect::<Vec<_>>();
    let t = 1_700_000_000_123;
    let mut v = vec![
        MetricPoint::new(
            "http_requests_total",
            l(&[("job", "ns/api"), ("instance", "i1"), ("code", "200")]),
            MetricKind::Counter,
            10.0,
            t,
        ),
        MetricPoint::new(
            "http_requests_total",
            l(&[("job", "ns/api"), ("instance", "i1"), ("code", "500")]),
            MetricKind::Counter,
            2.0,
            t,
        ),
        MetricPoint::new(
            "temperature_celsius",
            l(&[("job", "ns/api"), ("instance", "i1")]),
            MetricKind::Gauge,
            -3.5,
            t,
        ),
        MetricPoint::new(
            "target_info",
            l(&[("job", "ns/api"), ("instance", "i1"), ("region", "eu")]),
            MetricKind::Gauge,
            1.0,
            t,
        ),
        MetricPoint::new("rpc_seconds", l(&[("job", "other"), ("quantile", "0.5")]), MetricKind::Summary, 0.2, t),
        MetricPoint::new("rpc_seconds", l(&[("job", "other"), ("quantile", "0.99")]), MetricKind::Summary, 0.9, t),
        MetricPoint::new("rpc_seconds_sum", l(&[("job", "other")]), MetricKind::Summary, 12.5, t),
        MetricPoint::new("rpc_seconds_count", l(&[("job", "other")]), MetricKind::Summary, 40.0, t),
        MetricPoint::new(
            "stale_gauge",
            l(&[("job", "other"), ("otel_scope_name", "s"), ("otel_scope_version", "2")]),
            MetricKind::Gauge,
            f64::from_bits(otlp::metrics::STALE_NAN_BITS),
            t,
        ),
    ];
    for (le, c) in [("0.1", 1.0), ("0.5", 4.0), ("1", 4.0), ("+Inf", 6.0)] {
        v.push(MetricPoint::new(
            "latency_seconds_bucket",
            l(&[("job", "ns/api"), ("instance", "i1"), ("le", le)]),
            MetricKind::Histogram,
            c,
            t,
        ));
    }
    v.push(MetricPoint::new(
        "latency_seconds_sum",
        l(&[("job", "ns/api"), ("instance", "i1")]),
        MetricKind::Histogram,
        3.25,
        t,
    ));
    v.push(MetricPoint::new(
        "latency_seconds_count",
        l(&[("job", "ns/api"), ("instance", "i1")]),
        MetricKind::Histogram,
        6.0,
        t,
    ));
    v
}

fn canonical(mut v: Vec<MetricPoint>) -> Vec<(String, Vec<Label>, u64, i64, MetricKind)> {
    let mut out: Vec<_> = v.drain(..).map(|p| (p.name, p.labels, p.value.to_bits(), p.timestamp_ms, p.kind)).collect();
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    out
}

#[test]
fn metrics_round_trip_points_proto_points() {
    let points = sample_points();
    let proto = otlp::metrics_to_proto(&points);
    let bytes = ExportMetricsServiceRequest { resource_metrics: proto.clone() }.encode_to_vec();
    let conv = otlp::convert_metrics(otlp::decode_metrics(&bytes, Encoding::Protobuf).unwrap());
    assert!(conv.report.is_clean(), "{}", conv.report.message());
    assert_eq!(canonical(conv.batch.metrics), canonical(points));
    // The OTLP side: a monotonic cumulative Sum without `_total`, a histogram with
    // de-accumulated buckets, resource attributes from job/instance and target_info.
    let api = proto
        .iter()
        .find(|r| r.resource.as_ref().unwrap().attributes.contains(&string_kv("service.name", "api")))
        .unwrap();
    let attrs = &api.resource.as_ref().unwrap().attributes;
    for kv in [string_kv("service.namespace", "ns"), string_kv("service.instance.id", "i1"), string_kv("region", "eu")]
    {
        assert!(attrs.contains(&kv), "{kv:?}");
    }
    let metrics = &api.scope_metrics[0].metrics;
    let sum = metrics.iter().find(|m| m.name == "http_requests").unwrap();
    assert!(matches!(&sum.data, Some(pm::metric::Data::Sum(s)) if s.is_monotonic && s.data_points.len() == 2));
    let Some(pm::metric::Data::Histogram(h)) = &metrics.iter().find(|m| m.name == "latency_seconds").unwrap().data
    else {
        panic!("latency_seconds is not a histogram")
    };
    assert_eq!(h.data_points[0].bucket_counts, [1, 3, 0, 2]);
    assert_eq!(h.data_points[0].explicit_bounds, [0.1, 0.5, 1.0]);
    assert_eq!((h.data_points[0].count, h.data_points[0].sum), (6, Some(3.25)));
    let req = ExportMetricsServiceRequest { resource_metrics: proto };
    assert_eq!(otlp::decode_metrics(&serde_json::to_vec(&req).unwrap(), Encoding::Json).unwrap(), req);
}

#[test]
fn invalid_ids_are_rejected_and_counted_not_panics() {
    let mut req = trace_request(2, 1);
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    spans.push(pt::Span { trace_id: vec![7; 16], span_id: vec![0; 8], ..Default::default() });
    spans.push(pt::Span {
        trace_id: vec![7; 16],
        span_id: vec![1; 8],
        parent_span_id: vec![1; 9],
        ..Default::default()
    });
    spans.push(pt::Span {
        trace_id: vec![7; 16],
        span_id: vec![2; 8],
        links: vec![pt::span::Link { trace_id: vec![1; 3], span_id: vec![1; 8], ..Default::default() }],
        ..Default::default()
    });
    let conv = otlp::convert_traces(req);
    assert_eq!((conv.received, conv.batch.spans.len(), conv.report.rejected), (6, 3, 3));
    assert_eq!(conv.batch.spans[2].links.len(), 0);
    let msg = conv.report.message();
    for reason in [
        "trace_id is not 16 bytes (1)",
        "span_id is all zeros (1)",
        "parent_span_id is not 8 bytes (1)",
        "span link with an invalid id dropped (1)",
    ] {
        assert!(msg.contains(reason), "{msg} lacks {reason}");
    }
    let logs = ExportLogsServiceRequest {
        resource_logs: vec![opentelemetry_proto::tonic::logs::v1::ResourceLogs {
            scope_logs: vec![opentelemetry_proto::tonic::logs::v1::ScopeLogs {
                log_records: vec![
                    opentelemetry_proto::tonic::logs::v1::LogRecord { trace_id: vec![1; 5], ..Default::default() },
                    opentelemetry_proto::tonic::logs::v1::LogRecord { severity_number: 99, ..Default::default() },
                    opentelemetry_proto::tonic::logs::v1::LogRecord { trace_id: vec![0; 16], ..Default::default() },
                ],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let conv = otlp::convert_logs(logs);
    assert_eq!((conv.batch.logs.len(), conv.report.rejected), (2, 1));
    assert_eq!(conv.batch.logs[0].severity_number, SeverityNumber::UNSPECIFIED);
    assert!(conv.report.message().contains("severity_number outside 0..=24 set to unspecified (1)"));
    assert_eq!(conv.batch.logs[1].trace_id, None, "all-zero trace id means none");
}

// ---------------------------------------------------------------------------------------
// The receiver: partial success, bad input, full pipeline, shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_success_over_http_and_grpc() {
    let mut r = start().await;
    // HTTP protobuf.
    let resp = post(&r.http("/v1/traces"), "application/x-protobuf", None, trace_request(3, 2).encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-protobuf");
    let body = ExportTraceServiceResponse::decode(resp.bytes().await.unwrap()).unwrap();
    let ps = body.partial_success.unwrap();
    assert_eq!(ps.rejected_spans, 2);
    assert!(ps.error_message.contains("trace_id is not 16 bytes (2)"), "{}", ps.error_message);
    assert_eq!(r.rx.recv().await.unwrap().spans.len(), 3);
    // HTTP JSON, answered in JSON.
    let json = serde_json::to_vec(&trace_request(1, 1)).unwrap();
    let resp = post(&r.http("/v1/traces"), "application/json", None, json).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1");
    assert_eq!(r.rx.recv().await.unwrap().spans.len(), 1);
    // Full success: no partial_success at all.
    let resp =
        post(&r.http("/v1/traces"), "application/json", None, serde_json::to_vec(&trace_request(1, 0)).unwrap()).await;
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap(), serde_json::json!({}));
    r.rx.recv().await.unwrap();
    // gRPC.
    let mut client = TraceServiceClient::connect(r.grpc()).await.unwrap();
    let resp = client.export(trace_request(4, 1)).await.unwrap().into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 1);
    assert_eq!(r.rx.recv().await.unwrap().spans.len(), 4);
    let resp = client.export(trace_request(1, 0)).await.unwrap().into_inner();
    assert_eq!(resp.partial_success, None);
    r.rx.recv().await.unwrap();
    // All rejected: nothing reaches the pipeline.
    let resp = client.export(trace_request(0, 2)).await.unwrap().into_inner();
    assert_eq!(resp.partial_success.unwrap().rejected_spans, 2);
    assert!(tokio::time::timeout(Duration::from_millis(200), r.rx.recv()).await.is_err());
    assert_eq!(r.counter("spans_received"), 3 + 2 + 2 + 1 + 5 + 1 + 2);
    assert_eq!(r.counter("spans_emitted"), 3 + 1 + 1 + 4 + 1);
    assert_eq!(r.counter("spans_dropped"), 2 + 1 + 1 + 2);
    assert_eq!(r.stats.errors.get(), 0);
    r.stop().await;
}

/// A gRPC codec that sends and receives raw bytes, to put malformed protobuf on the wire.
#[derive(Clone, Copy, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

async fn grpc_raw(url: &str, body: Vec<u8>, gzip: bool) -> Result<Vec<u8>, tonic::Status> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned()).unwrap().connect().await.unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    if gzip {
        grpc = grpc.send_compressed(tonic::codec::CompressionEncoding::Gzip);
    }
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    );
    grpc.unary(tonic::Request::new(body), path, RawCodec).await.map(tonic::Response::into_inner)
}

/// An HTTP/1.1 chunked upload of `total` bytes without Content-Length; the status line.
async fn chunked_upload(addr: std::net::SocketAddr, total: usize) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = "POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n";
    s.write_all(head.as_bytes()).await.unwrap();
    let chunk = vec![b'x'; 16 * 1024];
    let mut sent = 0;
    while sent < total {
        // The server may answer and close early: stop writing then.
        if s.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await.is_err()
            || s.write_all(&chunk).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
        sent += chunk.len();
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.unwrap().unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_clear_errors_and_counters_and_the_server_keeps_serving() {
    let limit = 64 * 1024;
    let mut r = start_with(64, Config { max_recv_msg_size_bytes: limit, ..no_wait() }).await;
    let url = r.http("/v1/traces");

    // Malformed protobuf → 400 with a protobuf Status body.
    let resp = post(&url, "application/x-protobuf", None, vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1, 2]).await;
    assert_eq!(resp.status(), 400);
    let st = RpcStatus::decode(resp.bytes().await.unwrap()).unwrap();
    assert!(st.message.starts_with("invalid protobuf ExportTraceServiceRequest"), "{}", st.message);
    assert_eq!(st.code, 3);

    // Malformed JSON → 400 with a JSON Status naming the field, not the value.
    let resp = post(
        &url,
        "application/json",
        None,
        br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"spanId":"patient-jane"}]}]}]}"#.to_vec(),
    )
    .await;
    assert_eq!(resp.status(), 400);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: serde_json::Value = resp.json().await.unwrap();
    let msg = v["message"].as_str().unwrap();
    assert!(msg.contains("resourceSpans[0].scopeSpans[0].spans[0].spanId") && !msg.contains("jane"), "{msg}");
    let resp = post(&url, "application/json", None, b"{\"resourceSpans\": [".to_vec()).await;
    assert_eq!(resp.status(), 400);

    // Wrong content type, unknown content encoding → 415.
    assert_eq!(post(&url, "text/plain", None, b"hello".to_vec()).await.status(), 415);
    assert_eq!(post(&url, "application/x-protobuf", Some("br"), vec![]).await.status(), 415);
    // Garbage "gzip" → 400.
    assert_eq!(post(&url, "application/x-protobuf", Some("gzip"), b"not gzip".to_vec()).await.status(), 400);
    // Wrong method / path.
    let get = reqwest::get(&url).await.unwrap();
    assert_eq!(get.status(), 405);
    assert_eq!(post(&r.http("/v1/nothing"), "application/json", None, b"{}".to_vec()).await.status(), 404);

    // Oversized: declared length, chunked, and a gzip bomb.
    let resp = post(&url, "application/x-protobuf", None, vec![0u8; limit + 1]).await;
    assert_eq!(resp.status(), 413);
    let st = RpcStatus::decode(resp.bytes().await.unwrap()).unwrap();
    assert!(st.message.contains("65536"), "{}", st.message);
    let status_line = chunked_upload(r.addrs.http.unwrap(), 4 * limit).await;
    assert!(status_line.starts_with("HTTP/1.1 413"), "{status_line}");
    let bomb = gzip(&vec![0u8; 32 * 1024 * 1024]);
    assert!(bomb.len() < limit);
    assert_eq!(post(&url, "application/x-protobuf", Some("gzip"), bomb.clone()).await.status(), 413);

    // gRPC: malformed protobuf, oversized, and a compressed bomb.
    let e = grpc_raw(&r.grpc(), vec![0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 1], false).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Internal, "{e:?}");
    let huge = ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans { schema_url: "x".repeat(limit + 10), ..Default::default() }],
    };
    let e = grpc_raw(&r.grpc(), huge.encode_to_vec(), false).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    let huge = ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans { schema_url: "\0".repeat(16 * 1024 * 1024), ..Default::default() }],
    };
    let e = grpc_raw(&r.grpc(), huge.encode_to_vec(), true).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");

    // Counters.
    // Malformed: HTTP protobuf, 2 × JSON, bad gzip, gRPC protobuf. Too large: declared
    // length, chunked, HTTP bomb, gRPC message, gRPC bomb. (405 and 404 are axum's.)
    assert_eq!(r.counter("requests_malformed"), 5);
    assert_eq!(r.counter("requests_unsupported"), 2);
    assert_eq!(r.counter("requests_too_large"), 5);
    assert_eq!(r.counter("traces_request_errors"), 12);
    assert_eq!(r.stats.errors.get(), 12);
    assert_eq!(r.stats.received.get(), 0);

    // Still serving, both protocols.
    let resp = post(&url, "application/x-protobuf", None, trace_request(2, 0).encode_to_vec()).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(r.rx.recv().await.unwrap().spans.len(), 2);
    let mut client = TraceServiceClient::connect(r.grpc()).await.unwrap();
    client.export(trace_request(1, 0)).await.unwrap();
    assert_eq!(r.rx.recv().await.unwrap().spans.len(), 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_pipeline_refuses_with_retry_advice_and_recovers() {
    let mut r = start_with(1, Config { retry_after: Duration::from_millis(1500), ..no_wait() }).await;
    let url = r.http("/v1/traces");
    let body = trace_request(2, 0).encode_to_vec();
    assert_eq!(post(&url, "application/x-protobuf", None, body.clone()).await.status(), 200);
    // The channel holds one batch and nobody reads it: the next request is refused.
    let resp = post(&url, "application/x-protobuf", None, body.clone()).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.headers()["retry-after"], "2");
    let st = RpcStatus::decode(resp.bytes().await.unwrap()).unwrap();
    assert!(st.message.contains("pipeline is full"));
    let resp = post(&url, "application/json", None, serde_json::to_vec(&trace_request(1, 0)).unwrap()).await;
    assert_eq!(resp.status(), 503);
    assert_eq!(resp.json::<serde_json::Value>().await.unwrap()["code"], 14);
    let mut client = TraceServiceClient::connect(r.grpc()).await.unwrap();
    let e = client.export(trace_request(3, 0)).await.unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    let details = RpcStatus::decode(e.details()).unwrap();
    assert_eq!(details.details[0].type_url, "type.googleapis.com/google.rpc.RetryInfo");
    let info = RetryInfo::decode(details.details[0].value.as_slice()).unwrap();
    assert_eq!(info.retry_delay, Some(ProtoDuration { seconds: 1, nanos: 500_000_000 }));
    assert_eq!(r.counter("requests_refused_full"), 3);
    assert_eq!(r.counter("spans_dropped"), 2 + 1 + 3);
    assert_eq!(r.rx.len(), 1, "the queue never grows past its capacity");
    // Drained: accepted again.
    assert_eq!(r.rx.recv().await.unwrap().spans.len(), 2);
    client.export(trace_request(3, 0)).await.unwrap();
    assert_eq!(r.rx.recv().await.unwrap().spans.len(), 3);
    assert_eq!(post(&url, "application/x-protobuf", None, body).await.status(), 200);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_and_metrics_endpoints_and_gzip_json() {
    let mut r = start().await;
    let logs =
        r#"{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"hi"},"severityNumber":9}]}]}]}"#;
    let resp = post(&r.http("/v1/logs"), "application/json", Some("gzip"), gzip(logs.as_bytes())).await;
    assert_eq!(resp.status(), 200);
    let b = r.rx.recv().await.unwrap();
    assert_eq!(b.logs[0].body, AnyValue::Str("hi".into()));
    let metrics = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
        {"name":"g","gauge":{"dataPoints":[{"asDouble":1,"timeUnixNano":"1000000"}]}},
        {"name":"d","sum":{"aggregationTemporality":1,"dataPoints":[{"asInt":"1","timeUnixNano":"1000000"}]}}]}]}]}"#;
    let resp = post(&r.http("/v1/metrics"), "application/json; charset=utf-8", None, metrics.as_bytes().to_vec()).await;
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["partialSuccess"]["rejectedDataPoints"], "1");
    assert!(v["partialSuccess"]["errorMessage"].as_str().unwrap().contains("delta"));
    let b = r.rx.recv().await.unwrap();
    assert_eq!(b.metrics.len(), 1);
    assert_eq!((b.metrics[0].name.as_str(), b.metrics[0].timestamp_ms), ("g", 1));
    assert_eq!(r.counter("data_points_received"), 2);
    assert_eq!(r.counter("data_points_dropped"), 1);
    assert_eq!(r.counter("metric_points_emitted"), 1);
    assert_eq!(r.counter("log_records_emitted"), 1);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_both_servers_with_open_connections() {
    let r = start_with(4, Config { shutdown_grace: Duration::from_secs(2), ..no_wait() }).await;
    let addrs = r.addrs;
    // Keep a gRPC channel and a keep-alive HTTP connection open across the shutdown.
    let mut client = TraceServiceClient::connect(r.grpc()).await.unwrap();
    client.export(trace_request(1, 0)).await.unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .post(r.http("/v1/traces"))
        .header("content-type", "application/x-protobuf")
        .body(trace_request(1, 0).encode_to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let started = std::time::Instant::now();
    r.stop().await;
    assert!(started.elapsed() < Duration::from_secs(10));
    for addr in [addrs.grpc.unwrap(), addrs.http.unwrap()] {
        assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "{addr} still accepts connections");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_http_client_loses_its_connection() {
    let r = start_with(4, Config { request_timeout: Duration::from_millis(500), ..no_wait() }).await;
    let mut s = tokio::net::TcpStream::connect(r.addrs.http.unwrap()).await.unwrap();
    s.write_all(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-").await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 256];
    // The server closes the connection (EOF or reset) once the read has idled for twice
    // the request timeout.
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("connection still open");
    assert!(matches!(n, Ok(0) | Err(_)), "{n:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    r.stop().await;
}

#[tokio::test]
async fn bind_reports_the_address_in_use() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = bind(Config { grpc_listen: Some(addr), http_listen: None, ..Config::default() }).await.unwrap_err();
    assert!(e.to_string().contains(&addr.to_string()) && e.to_string().contains("grpc"), "{e}");
}

/// With `wait_for_delivery` (the default) a request is answered only once its batch is
/// acknowledged: 200 / OK after `done`, 503 / UNAVAILABLE with a retry hint after a
/// failure or when the acknowledgement does not come within `request_timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_only_after_the_pipeline_acknowledges() {
    let mut r = start_with(4, Config { request_timeout: Duration::from_secs(3), ..Config::default() }).await;
    let url = r.http("/v1/traces");
    let body = trace_request(2, 0).encode_to_vec();

    // Delivered: the answer waits for `done`.
    let pending = tokio::spawn(post_owned(url.clone(), body.clone()));
    let mut batch = r.rx.recv().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished(), "answered before the batch was acknowledged");
    batch.ack.take().expect("the receiver attaches a token").done();
    assert_eq!(pending.await.unwrap(), 200);

    // Failed (a sink gave up): 503 with Retry-After, so the client resends.
    let pending = tokio::spawn(post_owned(url.clone(), body.clone()));
    let mut batch = r.rx.recv().await.unwrap();
    batch.ack.take().unwrap().fail();
    assert_eq!(pending.await.unwrap(), 503);

    // Never acknowledged within request_timeout: 503 too; the same over gRPC.
    let mut client = TraceServiceClient::connect(r.grpc()).await.unwrap();
    let grpc = tokio::spawn(async move { client.export(trace_request(1, 0)).await.map(|_| ()) });
    let held = r.rx.recv().await.unwrap();
    let e = grpc.await.unwrap().unwrap_err();
    assert_eq!(e.code(), tonic::Code::Unavailable);
    let details = RpcStatus::decode(e.details()).unwrap();
    assert_eq!(details.details[0].type_url, "type.googleapis.com/google.rpc.RetryInfo");
    drop(held);
    assert_eq!(r.counter("requests_undelivered"), 2);
    r.stop().await;
}

async fn post_owned(url: String, body: Vec<u8>) -> u16 {
    post(&url, "application/x-protobuf", None, body).await.status().as_u16()
}
