//! The signal model: metric points, log records and spans, and the [`Batch`] that carries
//! them from a source through the redactor to the consumers.
//!
//! The model is OTLP-shaped (attributes are [`AnyValue`] trees, spans and logs carry their
//! [`Resource`] and [`Scope`]) so OTLP in and out is lossless, while metrics are flat
//! Prometheus-style points (one `name{labels} value timestamp` per point; a histogram is
//! its `_bucket{le}`, `_sum` and `_count` points) because that is what scrape produces,
//! the rules store consumes and `/federate` serves. Conversion to and from OTLP protobuf
//! lives in [`crate::otlp`] and nowhere else.
//!
//! Resources and scopes are shared behind `Arc`: one OTLP request holds thousands of
//! records from a handful of resources, and a log tailer stamps one resource on every
//! line. Code that rewrites them (the redactor) uses `Arc::make_mut`.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// An attribute list: OTLP `repeated KeyValue`, in the order received.
pub type Attributes = Vec<KeyValue>;

/// One attribute: a key and its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeyValue {
    /// The attribute name.
    pub key: String,
    /// Its value.
    pub value: AnyValue,
}

impl KeyValue {
    /// A string-valued attribute.
    pub fn string(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
        KeyValue { key: key.into(), value: AnyValue::Str(value.into()) }
    }
}

/// An OTLP `AnyValue`: a string, number, bool, bytes, array or key/value list.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub enum AnyValue {
    /// No value (OTLP leaves `value` unset).
    #[default]
    Empty,
    /// A UTF-8 string.
    Str(String),
    /// A boolean.
    Bool(bool),
    /// A 64-bit signed integer.
    Int(i64),
    /// A 64-bit float.
    Double(f64),
    /// Raw bytes.
    Bytes(Vec<u8>),
    /// A list of values.
    Array(Vec<AnyValue>),
    /// A nested map, in the order received (keys may repeat, as in OTLP).
    KvList(Vec<KeyValue>),
}

impl AnyValue {
    /// The string if this is a `Str`.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            AnyValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

impl From<&str> for AnyValue {
    fn from(s: &str) -> AnyValue {
        AnyValue::Str(s.to_owned())
    }
}

impl From<String> for AnyValue {
    fn from(s: String) -> AnyValue {
        AnyValue::Str(s)
    }
}

/// The entity that produced a signal (OTLP `Resource`): `service.name`, `host.name`, ...
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Resource {
    /// Resource attributes.
    pub attributes: Attributes,
    /// OTLP `schema_url` of the resource, empty if none.
    pub schema_url: String,
}

impl Resource {
    /// The string value of attribute `key`, if present and a string.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_str())
    }
}

/// The instrumentation scope (library) that produced a signal.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Scope {
    /// Scope name, e.g. `platform_api`.
    pub name: String,
    /// Scope version, empty if none.
    pub version: String,
    /// Scope attributes.
    pub attributes: Attributes,
    /// OTLP `schema_url` of the scope, empty if none.
    pub schema_url: String,
}

/// A 16-byte W3C trace id. All zeros is invalid and means "none" in OTLP.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte span id. All zeros is invalid and means "none" in OTLP.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SpanId(pub [u8; 8]);

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({self})")
    }
}

impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({self})")
    }
}

impl TraceId {
    /// The id from a byte slice of exactly 16 bytes that are not all zero.
    pub fn from_slice(b: &[u8]) -> Option<TraceId> {
        let a: [u8; 16] = b.try_into().ok()?;
        (a != [0; 16]).then_some(TraceId(a))
    }
}

impl SpanId {
    /// The id from a byte slice of exactly 8 bytes that are not all zero.
    pub fn from_slice(b: &[u8]) -> Option<SpanId> {
        let a: [u8; 8] = b.try_into().ok()?;
        (a != [0; 8]).then_some(SpanId(a))
    }
}

/// The Prometheus metric type of the family a point belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum MetricKind {
    /// A monotonic counter (`_total`).
    Counter,
    /// A gauge.
    Gauge,
    /// A classic histogram: the point is one of `_bucket{le}`, `_sum`, `_count`.
    Histogram,
    /// A summary: the point is one of `{quantile}`, `_sum`, `_count`.
    Summary,
    /// Untyped / unknown.
    #[default]
    Unknown,
}

impl MetricKind {
    /// The name used in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Counter => "counter",
            MetricKind::Gauge => "gauge",
            MetricKind::Histogram => "histogram",
            MetricKind::Summary => "summary",
            MetricKind::Unknown => "untyped",
        }
    }
}

/// One label of a metric point.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    /// Label name.
    pub name: String,
    /// Label value.
    pub value: String,
}

impl Label {
    /// A label.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Label {
        Label { name: name.into(), value: value.into() }
    }
}

/// One sample of one series, Prometheus-style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    /// The metric name (`__name__`), e.g. `http_requests_total`.
    pub name: String,
    /// Labels other than `__name__`, sorted by name, names unique.
    pub labels: Vec<Label>,
    /// The type of the family this point belongs to.
    pub kind: MetricKind,
    /// The sample value (may be NaN or ±Inf).
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

impl MetricPoint {
    /// A point; `labels` are sorted here so callers may pass them in any order.
    pub fn new(
        name: impl Into<String>,
        mut labels: Vec<Label>,
        kind: MetricKind,
        value: f64,
        timestamp_ms: i64,
    ) -> MetricPoint {
        labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        MetricPoint { name: name.into(), labels, kind, value, timestamp_ms }
    }

    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels.iter().find(|l| l.name == name).map(|l| l.value.as_str())
    }
}

/// OTLP severity number (1–24; 0 = unspecified). Ranges: TRACE 1–4, DEBUG 5–8,
/// INFO 9–12, WARN 13–16, ERROR 17–20, FATAL 21–24.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize)]
pub struct SeverityNumber(pub u8);

impl SeverityNumber {
    /// Unspecified.
    pub const UNSPECIFIED: SeverityNumber = SeverityNumber(0);
    /// TRACE.
    pub const TRACE: SeverityNumber = SeverityNumber(1);
    /// DEBUG.
    pub const DEBUG: SeverityNumber = SeverityNumber(5);
    /// INFO.
    pub const INFO: SeverityNumber = SeverityNumber(9);
    /// WARN.
    pub const WARN: SeverityNumber = SeverityNumber(13);
    /// ERROR.
    pub const ERROR: SeverityNumber = SeverityNumber(17);
    /// FATAL.
    pub const FATAL: SeverityNumber = SeverityNumber(21);

    /// The severity for a level word as loggers write it (`info`, `WARNING`, `err`,
    /// `crit`, ...), case-insensitive; `None` for anything else.
    pub fn from_level(word: &str) -> Option<SeverityNumber> {
        let w = word.trim();
        let eq = |s: &str| w.eq_ignore_ascii_case(s);
        Some(if eq("trace") {
            Self::TRACE
        } else if eq("debug") || eq("dbg") {
            Self::DEBUG
        } else if eq("info") || eq("information") || eq("notice") {
            Self::INFO
        } else if eq("warn") || eq("warning") {
            Self::WARN
        } else if eq("error") || eq("err") {
            Self::ERROR
        } else if eq("fatal") || eq("crit") || eq("critical") || eq("alert") || eq("emerg") || eq("panic") {
            Self::FATAL
        } else {
            return None;
        })
    }
}

/// One log record, OTLP-shaped.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct LogRecord {
    /// When the event happened, ns since the epoch; 0 if unknown.
    pub time_unix_nano: u64,
    /// When Warden observed it, ns since the epoch.
    pub observed_time_unix_nano: u64,
    /// Severity number (0 = unspecified).
    pub severity_number: SeverityNumber,
    /// Severity as the source wrote it (`INFO`, `warning`), empty if none.
    pub severity_text: String,
    /// The body: text (`AnyValue::Str`) or a structured value (`KvList`).
    pub body: AnyValue,
    /// Record attributes (e.g. `log.file.path`).
    pub attributes: Attributes,
    /// The producing resource.
    pub resource: Arc<Resource>,
    /// The producing scope.
    pub scope: Arc<Scope>,
    /// Trace context, if the record was emitted inside a span.
    pub trace_id: Option<TraceId>,
    /// Span context, if the record was emitted inside a span.
    pub span_id: Option<SpanId>,
    /// W3C trace flags.
    pub flags: u32,
    /// OTLP `event_name`, empty if none.
    pub event_name: String,
}

/// OTLP span kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum SpanKind {
    /// Unspecified.
    #[default]
    Unspecified,
    /// Internal operation.
    Internal,
    /// Server side of a request.
    Server,
    /// Client side of a request.
    Client,
    /// Producer of a message.
    Producer,
    /// Consumer of a message.
    Consumer,
}

/// OTLP status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum StatusCode {
    /// Unset.
    #[default]
    Unset,
    /// Ok.
    Ok,
    /// Error.
    Error,
}

/// A span's status.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Status {
    /// The code.
    pub code: StatusCode,
    /// Developer-facing message, empty if none.
    pub message: String,
}

/// A timed event inside a span.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SpanEvent {
    /// When, ns since the epoch.
    pub time_unix_nano: u64,
    /// Event name (e.g. `exception`).
    pub name: String,
    /// Event attributes.
    pub attributes: Attributes,
    /// Attributes the sender dropped.
    pub dropped_attributes_count: u32,
}

/// A link from a span to another span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    /// Linked trace.
    pub trace_id: TraceId,
    /// Linked span.
    pub span_id: SpanId,
    /// W3C trace state of the link.
    pub trace_state: String,
    /// Link attributes.
    pub attributes: Attributes,
    /// Attributes the sender dropped.
    pub dropped_attributes_count: u32,
    /// W3C trace flags.
    pub flags: u32,
}

/// One span, OTLP-shaped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Trace id.
    pub trace_id: TraceId,
    /// Span id.
    pub span_id: SpanId,
    /// Parent span id; `None` for a root span.
    pub parent_span_id: Option<SpanId>,
    /// W3C trace state.
    pub trace_state: String,
    /// Span name, e.g. `GET /v1/patients/{id}`.
    pub name: String,
    /// Span kind.
    pub kind: SpanKind,
    /// Start, ns since the epoch.
    pub start_time_unix_nano: u64,
    /// End, ns since the epoch.
    pub end_time_unix_nano: u64,
    /// Span attributes.
    pub attributes: Attributes,
    /// Events.
    pub events: Vec<SpanEvent>,
    /// Links.
    pub links: Vec<SpanLink>,
    /// Status.
    pub status: Status,
    /// W3C trace flags.
    pub flags: u32,
    /// Counts the sender reported as dropped: attributes, events, links.
    pub dropped: [u32; 3],
    /// The producing resource.
    pub resource: Arc<Resource>,
    /// The producing scope.
    pub scope: Arc<Scope>,
}

impl Span {
    /// The duration in seconds (0 if the end precedes the start).
    pub fn duration_seconds(&self) -> f64 {
        self.end_time_unix_nano.saturating_sub(self.start_time_unix_nano) as f64 / 1e9
    }
}

/// What flows through the pipeline: signals of any kind from one source, plus the
/// acknowledgement the source waits for (file offsets advance only after it).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Batch {
    /// Metric points.
    pub metrics: Vec<MetricPoint>,
    /// Log records.
    pub logs: Vec<LogRecord>,
    /// Spans.
    pub spans: Vec<Span>,
    /// Completion token; `None` when the source does not track delivery. Never
    /// serialized: a batch read back from a disk buffer has no token.
    #[serde(skip)]
    pub ack: Option<crate::ack::AckToken>,
}

impl Batch {
    /// A batch of metric points.
    pub fn metrics(metrics: Vec<MetricPoint>) -> Batch {
        Batch { metrics, ..Batch::default() }
    }

    /// A batch of log records.
    pub fn logs(logs: Vec<LogRecord>) -> Batch {
        Batch { logs, ..Batch::default() }
    }

    /// A batch of spans.
    pub fn spans(spans: Vec<Span>) -> Batch {
        Batch { spans, ..Batch::default() }
    }

    /// Number of items (points + records + spans).
    pub fn len(&self) -> usize {
        self.metrics.len() + self.logs.len() + self.spans.len()
    }

    /// Whether the batch holds no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Attaches a completion token.
    pub fn with_ack(mut self, ack: crate::ack::AckToken) -> Batch {
        self.ack = Some(ack);
        self
    }
}
