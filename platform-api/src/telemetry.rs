//! The service's own telemetry: Prometheus metrics, OpenTelemetry traces and JSON logs.
//!
//! - Metrics live in one [`Metrics`] registry served at `/metrics`.
//! - Traces: a span per request (parent taken from a W3C `traceparent` header) and per
//!   database query, exported over OTLP to the endpoint in the standard
//!   `OTEL_EXPORTER_OTLP_*` variables; with no endpoint set, spans still get ids (so logs
//!   carry them) but nothing is exported. Spans are made with the OpenTelemetry API
//!   directly and the context travels with each future (`FutureExt::with_context`): the
//!   `tracing-opentelemetry` bridge layer alone cost about 12 % of throughput (measured,
//!   see docs/PERFORMANCE.md).
//! - Logs: `tracing` events, one JSON object per line, with `trace_id` and `span_id` of the
//!   OpenTelemetry span current when the event was emitted.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _, TracerProvider as _};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};
use std::future::Future;
use std::io::Write;
use std::path::Path;
use std::sync::{Mutex, OnceLock};
use std::time::Instant;
use tracing::Subscriber;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Every metric the service exports.
pub struct Metrics {
    /// The registry `/metrics` serves.
    pub registry: Registry,
    /// `http_requests_total{method,route,status}`.
    pub http_requests: IntCounterVec,
    /// `http_request_duration_seconds{method,route}`.
    pub http_duration: HistogramVec,
    /// `http_requests_in_flight`.
    pub in_flight: IntGauge,
    /// `db_query_duration_seconds{query}`.
    pub db_query_duration: HistogramVec,
    /// `db_query_errors_total{query}`.
    pub db_query_errors: IntCounterVec,
    /// `platform_api_login_attempts_total{outcome}`.
    pub login_attempts: IntCounterVec,
    /// `platform_api_audit_events_total{outcome}`.
    pub audit_events: IntCounterVec,
    /// `platform_api_fault_injection_active{fault}`.
    pub faults_active: prometheus::IntGaugeVec,
}

impl Metrics {
    /// Creates and registers every metric, plus the process collector.
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new("http_requests_total", "HTTP requests answered, by method, route template and status."),
            &["method", "route", "status"],
        )
        .unwrap();
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to answer an HTTP request, by method and route template.",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["method", "route"],
        )
        .unwrap();
        let in_flight = IntGauge::new("http_requests_in_flight", "HTTP requests being answered now.").unwrap();
        let db_query_duration = HistogramVec::new(
            HistogramOpts::new("db_query_duration_seconds", "Time of a database operation, by query name.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]),
            &["query"],
        )
        .unwrap();
        let db_query_errors = IntCounterVec::new(
            Opts::new("db_query_errors_total", "Database operations that failed, by query name."),
            &["query"],
        )
        .unwrap();
        let login_attempts = IntCounterVec::new(
            Opts::new(
                "platform_api_login_attempts_total",
                "Login attempts by outcome (success, invalid, rate_limited).",
            ),
            &["outcome"],
        )
        .unwrap();
        let audit_events = IntCounterVec::new(
            Opts::new(
                "platform_api_audit_events_total",
                "Health-record accesses written to the audit log, by outcome.",
            ),
            &["outcome"],
        )
        .unwrap();
        let faults_active = prometheus::IntGaugeVec::new(
            Opts::new("platform_api_fault_injection_active", "1 while an injected fault of this kind is active."),
            &["fault"],
        )
        .unwrap();
        for c in [&http_requests, &db_query_errors, &login_attempts, &audit_events] {
            registry.register(Box::new(c.clone())).unwrap();
        }
        registry.register(Box::new(http_duration.clone())).unwrap();
        registry.register(Box::new(db_query_duration.clone())).unwrap();
        registry.register(Box::new(in_flight.clone())).unwrap();
        registry.register(Box::new(faults_active.clone())).unwrap();
        registry.register(Box::new(prometheus::process_collector::ProcessCollector::for_self())).unwrap();
        Self {
            registry,
            http_requests,
            http_duration,
            in_flight,
            db_query_duration,
            db_query_errors,
            login_attempts,
            audit_events,
            faults_active,
        }
    }

    /// The registry in Prometheus text format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(16 * 1024);
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Keeps the tracer provider alive; flushes spans when shut down.
pub struct TelemetryGuard {
    provider: SdkTracerProvider,
}

impl TelemetryGuard {
    /// Exports what is buffered and stops the exporter (bounded by the SDK's own timeout).
    pub fn shutdown(&self) {
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "trace exporter shutdown failed");
        }
    }
}

/// The tracer spans are made with; unset when tracing is off (or `init` never ran).
static TRACER: OnceLock<SdkTracer> = OnceLock::new();

/// Runs `fut` inside a new span that is a child of the current one, and ends the span when
/// `fut` completes (or is dropped). Without a tracer it just runs `fut`.
pub async fn in_span<F, T, E>(name: &'static str, kind: SpanKind, attributes: Vec<KeyValue>, fut: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let Some(tracer) = TRACER.get() else {
        return fut.await;
    };
    let parent = OtelContext::current();
    let span =
        tracer.span_builder(name).with_kind(kind).with_attributes(attributes).start_with_context(tracer, &parent);
    let cx = parent.with_span(span);
    let result = fut.with_context(cx.clone()).await;
    let span = cx.span();
    if result.is_err() {
        span.set_status(Status::error(""));
    }
    span.end();
    result
}

/// Runs the synchronous `f` inside a new internal span, child of the current one.
pub fn in_span_sync<T>(name: &'static str, attributes: Vec<KeyValue>, f: impl FnOnce() -> T) -> T {
    let Some(tracer) = TRACER.get() else {
        return f();
    };
    let parent = OtelContext::current();
    let span = tracer.span_builder(name).with_attributes(attributes).start_with_context(tracer, &parent);
    let cx = parent.with_span(span);
    let out = {
        let _attached = cx.clone().attach();
        f()
    };
    cx.span().end();
    out
}

/// Installs the global tracing subscriber (filter and JSON log layer) and, unless tracing
/// is off, the tracer and OTLP exporter. Must run inside the tokio runtime.
pub fn init(log_filter: &str, log_file: Option<&Path>, tracing_on: bool) -> anyhow::Result<TelemetryGuard> {
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("platform-api");
    }
    let mut provider = SdkTracerProvider::builder().with_resource(resource.build());
    let exporting = tracing_on && otlp_endpoint_configured();
    if exporting {
        let exporter = build_exporter()?;
        let processor = opentelemetry_sdk::trace::span_processor_with_async_runtime::BatchSpanProcessor::builder(
            exporter,
            opentelemetry_sdk::runtime::Tokio,
        )
        .build();
        provider = provider.with_span_processor(processor);
    }
    let provider = provider.build();
    if tracing_on {
        // Set once per process; a second `init` (tests) keeps the first tracer.
        let _ = TRACER.set(provider.tracer("platform-api"));
    }
    let writer = match log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
            LogWriter::File(Mutex::new(file))
        }
        None => LogWriter::Stdout,
    };
    let filter = EnvFilter::try_new(log_filter).map_err(|e| anyhow::anyhow!("invalid log filter: {e}"))?;
    tracing_subscriber::registry()
        .with(filter)
        .with(JsonLogLayer { writer })
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    tracing::info!(exporting, "telemetry initialised");
    Ok(TelemetryGuard { provider })
}

fn otlp_endpoint_configured() -> bool {
    ["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"]
        .iter()
        .any(|v| std::env::var(v).is_ok_and(|s| !s.is_empty()))
}

/// Builds the span exporter for `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL` (`grpc` or
/// `http/protobuf`, the specification's default).
fn build_exporter() -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
    use opentelemetry_otlp::WithExportConfig as _;
    let protocol = std::env::var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
        .or_else(|_| std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL"))
        .unwrap_or_else(|_| "http/protobuf".to_owned());
    let exporter = match protocol.as_str() {
        "grpc" => opentelemetry_otlp::SpanExporter::builder().with_tonic().build()?,
        "http/protobuf" => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder().with_http();
            // The exporter reads the per-signal variable itself; the generic endpoint is a
            // base URL to which the signal path is appended, per the specification.
            if std::env::var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_err()
                && let Ok(base) = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
            {
                builder = builder.with_endpoint(format!("{}/v1/traces", base.trim_end_matches('/')));
            }
            builder.build()?
        }
        other => {
            anyhow::bail!("OTEL_EXPORTER_OTLP_PROTOCOL: unsupported protocol `{other}` (use grpc or http/protobuf)")
        }
    };
    Ok(exporter)
}

/// Where log lines go.
enum LogWriter {
    Stdout,
    File(Mutex<std::fs::File>),
}

impl LogWriter {
    /// Writes one whole line in one call, so concurrent writers never interleave.
    fn write_line(&self, line: &[u8]) {
        // A failed log write has nowhere better to be reported; it must not take the
        // service down.
        let _ = match self {
            LogWriter::Stdout => std::io::stdout().lock().write_all(line),
            LogWriter::File(file) => match file.lock() {
                Ok(mut f) => f.write_all(line),
                Err(poisoned) => poisoned.into_inner().write_all(line),
            },
        };
    }
}

/// Formats each event as one JSON object: `timestamp`, `level`, `target`, `message`, the
/// event's fields, and `trace_id`/`span_id` of the innermost traced span.
struct JsonLogLayer {
    writer: LogWriter,
}

impl<S> Layer<S> for JsonLogLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &tracing::Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut fields = serde_json::Map::new();
        let now = time::OffsetDateTime::now_utc();
        fields.insert(
            "timestamp".into(),
            now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default().into(),
        );
        fields.insert("level".into(), meta.level().as_str().into());
        fields.insert("target".into(), meta.target().into());
        event.record(&mut JsonVisitor(&mut fields));
        let cx = OtelContext::current();
        let span = cx.span();
        let sc = span.span_context();
        if sc.is_valid() {
            fields.insert("trace_id".into(), sc.trace_id().to_string().into());
            fields.insert("span_id".into(), sc.span_id().to_string().into());
        }
        let mut line = serde_json::to_vec(&serde_json::Value::Object(fields)).unwrap_or_default();
        line.push(b'\n');
        self.writer.write_line(&line);
    }
}

struct JsonVisitor<'a>(&'a mut serde_json::Map<String, serde_json::Value>);

impl Visit for JsonVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}").into());
    }
}

/// Reads W3C trace context from request headers.
struct HeaderExtractor<'a>(&'a HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }
    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Bounded `method` label values.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

/// Decrements the in-flight gauge even when the request future is dropped.
struct InFlight<'a>(&'a IntGauge);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn access_log(method: &str, route: &str, status: u16, start: Instant) {
    tracing::info!(method, route, status, duration_ms = start.elapsed().as_secs_f64() * 1e3, "request completed");
}

/// Middleware on every route: a server span (child of any incoming `traceparent`), request
/// metrics labelled by the route template (never the raw path), and one access log line.
pub async fn track_request(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = method_label(req.method());
    let route = req.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_owned();
    let start = Instant::now();
    if !state.telemetry {
        let response = next.run(req).await;
        access_log(method, &route, response.status().as_u16(), start);
        return response;
    }
    let metrics = &state.metrics;
    metrics.in_flight.inc();
    let guard = InFlight(&metrics.in_flight);
    let response = match TRACER.get() {
        Some(tracer) => {
            let parent = TraceContextPropagator::new().extract(&HeaderExtractor(req.headers()));
            let span = tracer
                .span_builder(format!("{method} {route}"))
                .with_kind(SpanKind::Server)
                .with_attributes([
                    KeyValue::new("http.request.method", method),
                    KeyValue::new("http.route", route.clone()),
                ])
                .start_with_context(tracer, &parent);
            let cx = parent.with_span(span);
            let response = next.run(req).with_context(cx.clone()).await;
            let status = response.status();
            let span = cx.span();
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(status.as_u16())));
            if status.is_server_error() {
                span.set_status(Status::error(""));
            }
            let _attached = cx.clone().attach();
            access_log(method, &route, status.as_u16(), start);
            span.end();
            response
        }
        None => {
            let response = next.run(req).await;
            access_log(method, &route, response.status().as_u16(), start);
            response
        }
    };
    drop(guard);
    let status = response.status();
    metrics.http_requests.with_label_values(&[method, &route, status.as_str()]).inc();
    metrics.http_duration.with_label_values(&[method, &route]).observe(start.elapsed().as_secs_f64());
    response
}
