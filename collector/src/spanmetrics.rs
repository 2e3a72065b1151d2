//! Span metrics: RED metrics (rate, errors, duration) derived from received spans, for
//! services that only send traces. Modelled on the OpenTelemetry Collector's
//! `spanmetrics` connector, with Prometheus names:
//!
//! - `traces_span_metrics_calls_total{service_name,span_name,span_kind,status_code[,http_status_code]}`
//!   (counter): spans seen. `status_code` is the OTLP status name (`STATUS_CODE_UNSET`,
//!   `STATUS_CODE_OK`, `STATUS_CODE_ERROR`); `http_status_code` is the class of the
//!   span's `http.response.status_code` (or the older `http.status_code`): `2xx` ... `5xx`,
//!   absent when the span has none.
//! - `traces_span_metrics_errors_total{service_name,span_name,span_kind}` (counter):
//!   spans with status `ERROR`, or server spans answered with a 5xx; present (possibly 0)
//!   for every service/span name/kind seen, so `errors / calls` is always defined.
//! - `traces_span_metrics_duration_seconds_bucket{...,le}` / `_sum` / `_count`
//!   (histogram, same labels as calls): span durations, buckets from the config.
//!
//! `span_name` is `<method> <http.route>` when the span has an `http.route` (the route
//! template, e.g. `GET /v1/records/{id}`, never the raw path, so no ids or PHI from URLs;
//! the method is `http.request.method`, or `http.method`, reduced to the standard methods
//! and `_OTHER`), else the span's name. `service_name` is the resource's `service.name`
//! (`unknown_service` when missing).
//!
//! Cardinality is bounded: at most `max_series` label sets are tracked; spans of a new
//! label set beyond that are counted in one overflow series labelled
//! `otel_metric_overflow="true"` (and in [`SpanMetrics::overflowed_spans`]). Values are
//! cumulative from the creation of the [`SpanMetrics`]; series never expire.
//!
//! By default only `SERVER` and `CONSUMER` spans are counted (one per request handled),
//! so a request is not counted again for each of its internal or client spans.

use crate::otlp::{kind_name, status_code_name};
use crate::signal::{AnyValue, Label, MetricKind, MetricPoint, Span, SpanKind, StatusCode};
use serde::{Deserialize, Deserializer};
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// A span kind as written in the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KindName {
    /// `SPAN_KIND_SERVER`.
    Server,
    /// `SPAN_KIND_CLIENT`.
    Client,
    /// `SPAN_KIND_PRODUCER`.
    Producer,
    /// `SPAN_KIND_CONSUMER`.
    Consumer,
    /// `SPAN_KIND_INTERNAL`.
    Internal,
    /// `SPAN_KIND_UNSPECIFIED`.
    Unspecified,
}

impl KindName {
    fn kind(self) -> SpanKind {
        match self {
            KindName::Server => SpanKind::Server,
            KindName::Client => SpanKind::Client,
            KindName::Producer => SpanKind::Producer,
            KindName::Consumer => SpanKind::Consumer,
            KindName::Internal => SpanKind::Internal,
            KindName::Unspecified => SpanKind::Unspecified,
        }
    }
}

fn default_buckets() -> Vec<Duration> {
    // The OpenTelemetry Collector spanmetrics connector's defaults.
    [2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000]
        .into_iter()
        .map(Duration::from_millis)
        .collect()
}

fn default_max_series() -> usize {
    1000
}

fn default_kinds() -> Vec<KindName> {
    vec![KindName::Server, KindName::Consumer]
}

fn durations<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
    Vec::<String>::deserialize(d)?
        .iter()
        .map(|s| {
            humantime::parse_duration(s).map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
        })
        .collect()
}

/// Span metrics configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Upper bounds of the duration histogram buckets, strictly increasing
    /// (`["2ms", "4ms", ...]`); default 2ms, 4ms, 6ms, 8ms, 10ms, 50ms, 100ms, 200ms,
    /// 400ms, 800ms, 1s, 1.4s, 2s, 5s, 10s, 15s. At most 100.
    #[serde(default = "default_buckets", deserialize_with = "durations")]
    pub duration_buckets: Vec<Duration>,
    /// Label sets tracked before spans go to the overflow series. Default 1000.
    #[serde(default = "default_max_series")]
    pub max_series: usize,
    /// Span kinds counted (`server`, `consumer`, `client`, `producer`, `internal`,
    /// `unspecified`). Default `[server, consumer]`.
    #[serde(default = "default_kinds")]
    pub span_kinds: Vec<KindName>,
}

impl Default for Config {
    fn default() -> Config {
        Config { duration_buckets: default_buckets(), max_series: default_max_series(), span_kinds: default_kinds() }
    }
}

impl Config {
    /// Every problem with the configuration, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        let b = &self.duration_buckets;
        if b.is_empty() || b.len() > 100 {
            errors.push("duration_buckets: must hold 1 to 100 bounds".to_owned());
        }
        if b.first().is_some_and(|d| d.is_zero()) || b.windows(2).any(|w| w[0] >= w[1]) {
            errors.push("duration_buckets: must be positive and strictly increasing".to_owned());
        }
        if !(1..=100_000).contains(&self.max_series) {
            errors.push("max_series: must be between 1 and 100000".to_owned());
        }
        if self.span_kinds.is_empty() {
            errors.push("span_kinds: must name at least one kind".to_owned());
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// The identity of one series.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    service: String,
    span_name: String,
    kind: &'static str,
    status: &'static str,
    http_class: Option<&'static str>,
    /// Whether spans of this series count as errors (derived from the other fields).
    error: bool,
}

#[derive(Debug, Clone, Default)]
struct Series {
    calls: u64,
    errors: u64,
    /// Non-cumulative, one per bound plus `+Inf`.
    buckets: Vec<u64>,
    sum: f64,
}

impl Series {
    fn observe(&mut self, bucket: usize, seconds: f64, error: bool, n_buckets: usize) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; n_buckets];
        }
        self.calls += 1;
        self.errors += u64::from(error);
        self.buckets[bucket] += 1;
        self.sum += seconds;
    }
}

/// Aggregates spans into RED metrics; see the module docs.
#[derive(Debug)]
pub struct SpanMetrics {
    bounds: Vec<f64>,
    kinds: Vec<SpanKind>,
    max_series: usize,
    series: HashMap<Key, Series>,
    overflow: Series,
    overflowed: u64,
}

const CALLS: &str = "traces_span_metrics_calls_total";
const ERRORS: &str = "traces_span_metrics_errors_total";
const DURATION: &str = "traces_span_metrics_duration_seconds";

fn attr<'a>(span: &'a Span, key: &str) -> Option<&'a AnyValue> {
    span.attributes.iter().find(|kv| kv.key == key).map(|kv| &kv.value)
}

fn attr_str<'a>(span: &'a Span, key: &str) -> Option<&'a str> {
    attr(span, key).and_then(AnyValue::as_str).filter(|s| !s.is_empty())
}

fn method(m: &str) -> &'static str {
    const KNOWN: [&str; 9] = ["GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"];
    KNOWN.iter().find(|k| k.eq_ignore_ascii_case(m)).copied().unwrap_or("_OTHER")
}

/// `<method> <route>` or the route when the span has `http.route`, else its name.
fn span_name(span: &Span) -> String {
    match attr_str(span, "http.route") {
        Some(route) => match attr_str(span, "http.request.method").or_else(|| attr_str(span, "http.method")) {
            Some(m) => format!("{} {route}", method(m)),
            None => route.to_owned(),
        },
        None => span.name.clone(),
    }
}

fn http_class(span: &Span) -> Option<&'static str> {
    let v = attr(span, "http.response.status_code").or_else(|| attr(span, "http.status_code"))?;
    let code = match v {
        AnyValue::Int(i) => *i,
        AnyValue::Str(s) => s.trim().parse().ok()?,
        AnyValue::Double(d) if d.fract() == 0.0 => *d as i64,
        _ => return None,
    };
    Some(match code {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => return None,
    })
}

impl SpanMetrics {
    /// An empty aggregator for a validated `config`.
    pub fn new(config: &Config) -> SpanMetrics {
        SpanMetrics {
            bounds: config.duration_buckets.iter().map(Duration::as_secs_f64).collect(),
            kinds: config.span_kinds.iter().map(|k| k.kind()).collect(),
            max_series: config.max_series.max(1),
            series: HashMap::new(),
            overflow: Series::default(),
            overflowed: 0,
        }
    }

    /// Counts `spans` (those of the configured kinds).
    pub fn observe(&mut self, spans: &[Span]) {
        let n_buckets = self.bounds.len() + 1;
        for span in spans.iter().filter(|s| self.kinds.contains(&s.kind)) {
            let seconds = span.duration_seconds();
            let bucket = self.bounds.partition_point(|b| *b < seconds);
            let http_class = http_class(span);
            let error =
                span.status.code == StatusCode::Error || (span.kind == SpanKind::Server && http_class == Some("5xx"));
            let key = Key {
                service: span
                    .resource
                    .get_str("service.name")
                    .filter(|s| !s.is_empty())
                    .unwrap_or("unknown_service")
                    .to_owned(),
                span_name: span_name(span),
                kind: kind_name(span.kind),
                status: status_code_name(span.status.code),
                http_class,
                error,
            };
            if let Some(series) = self.series.get_mut(&key) {
                series.observe(bucket, seconds, error, n_buckets);
            } else if self.series.len() < self.max_series {
                self.series.entry(key).or_default().observe(bucket, seconds, error, n_buckets);
            } else {
                self.overflowed += 1;
                self.overflow.observe(bucket, seconds, error, n_buckets);
            }
        }
    }

    /// Spans counted in the overflow series because `max_series` was reached.
    pub fn overflowed_spans(&self) -> u64 {
        self.overflowed
    }

    /// Label sets tracked (not counting the overflow series).
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    fn histogram(&self, out: &mut Vec<MetricPoint>, labels: &[Label], s: &Series, now_ms: i64) {
        let mut cumulative = 0u64;
        for (i, bound) in self.bounds.iter().enumerate() {
            cumulative += s.buckets.get(i).copied().unwrap_or(0);
            let mut l = labels.to_vec();
            l.push(Label::new("le", crate::otlp::metrics::format_float(*bound)));
            out.push(MetricPoint::new(
                format!("{DURATION}_bucket"),
                l,
                MetricKind::Histogram,
                cumulative as f64,
                now_ms,
            ));
        }
        let mut l = labels.to_vec();
        l.push(Label::new("le", "+Inf"));
        out.push(MetricPoint::new(format!("{DURATION}_bucket"), l, MetricKind::Histogram, s.calls as f64, now_ms));
        out.push(MetricPoint::new(format!("{DURATION}_sum"), labels.to_vec(), MetricKind::Histogram, s.sum, now_ms));
        out.push(MetricPoint::new(
            format!("{DURATION}_count"),
            labels.to_vec(),
            MetricKind::Histogram,
            s.calls as f64,
            now_ms,
        ));
    }

    /// The cumulative metrics, every point stamped `now_ms`; sorted by series so the
    /// output is deterministic.
    pub fn collect(&self, now_ms: i64) -> Vec<MetricPoint> {
        let mut out = Vec::new();
        let mut keys: Vec<(&Key, &Series)> = self.series.iter().collect();
        keys.sort_by(|a, b| a.0.cmp(b.0));
        let mut errors: BTreeMap<(&str, &str, &str), u64> = BTreeMap::new();
        for (key, series) in keys {
            *errors.entry((&key.service, &key.span_name, key.kind)).or_default() += series.errors;
            let mut labels = vec![
                Label::new("service_name", key.service.as_str()),
                Label::new("span_name", key.span_name.as_str()),
                Label::new("span_kind", key.kind),
                Label::new("status_code", key.status),
            ];
            if let Some(class) = key.http_class {
                labels.push(Label::new("http_status_code", class));
            }
            out.push(MetricPoint::new(CALLS, labels.clone(), MetricKind::Counter, series.calls as f64, now_ms));
            self.histogram(&mut out, &labels, series, now_ms);
        }
        for ((service, span_name, kind), n) in errors {
            let labels = vec![
                Label::new("service_name", service),
                Label::new("span_name", span_name),
                Label::new("span_kind", kind),
            ];
            out.push(MetricPoint::new(ERRORS, labels, MetricKind::Counter, n as f64, now_ms));
        }
        if self.overflow.calls > 0 {
            let labels = vec![Label::new("otel_metric_overflow", "true")];
            out.push(MetricPoint::new(CALLS, labels.clone(), MetricKind::Counter, self.overflow.calls as f64, now_ms));
            out.push(MetricPoint::new(
                ERRORS,
                labels.clone(),
                MetricKind::Counter,
                self.overflow.errors as f64,
                now_ms,
            ));
            self.histogram(&mut out, &labels, &self.overflow, now_ms);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{KeyValue, Resource, Scope, SpanId, Status, TraceId};
    use std::sync::Arc;

    fn span(
        service: &Arc<Resource>,
        name: &str,
        kind: SpanKind,
        ms: u64,
        attrs: Vec<KeyValue>,
        code: StatusCode,
    ) -> Span {
        Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            parent_span_id: None,
            trace_state: String::new(),
            name: name.to_owned(),
            kind,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_000_000_000 + ms * 1_000_000,
            attributes: attrs,
            events: Vec::new(),
            links: Vec::new(),
            status: Status { code, message: String::new() },
            flags: 0,
            dropped: [0; 3],
            resource: Arc::clone(service),
            scope: Arc::new(Scope::default()),
        }
    }

    fn value(points: &[MetricPoint], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        points.iter().find(|p| p.name == name && labels.iter().all(|(k, v)| p.label(k) == Some(v))).map(|p| p.value)
    }

    #[test]
    fn red_series_per_route_status_and_kind() {
        let svc =
            Arc::new(Resource { attributes: vec![KeyValue::string("service.name", "api")], schema_url: String::new() });
        let route = |m: &str, status: i64| {
            vec![
                KeyValue::string("http.route", "/v1/records/{id}"),
                KeyValue::string("http.request.method", m),
                KeyValue { key: "http.response.status_code".into(), value: AnyValue::Int(status) },
            ]
        };
        let spans = vec![
            span(&svc, "GET /v1/records/123", SpanKind::Server, 3, route("GET", 200), StatusCode::Unset),
            span(&svc, "GET /v1/records/456", SpanKind::Server, 30, route("get", 200), StatusCode::Unset),
            span(&svc, "GET /v1/records/789", SpanKind::Server, 3000, route("GET", 503), StatusCode::Error),
            span(&svc, "SELECT", SpanKind::Client, 1, vec![], StatusCode::Unset),
            span(&svc, "consume", SpanKind::Consumer, 1, vec![], StatusCode::Ok),
        ];
        let mut m = SpanMetrics::new(&Config::default());
        m.observe(&spans);
        let p = m.collect(42);
        assert!(p.iter().all(|p| p.timestamp_ms == 42));
        let ok =
            [("span_name", "GET /v1/records/{id}"), ("status_code", "STATUS_CODE_UNSET"), ("http_status_code", "2xx")];
        assert_eq!(value(&p, CALLS, &ok), Some(2.0));
        let err =
            [("span_name", "GET /v1/records/{id}"), ("status_code", "STATUS_CODE_ERROR"), ("http_status_code", "5xx")];
        assert_eq!(value(&p, CALLS, &err), Some(1.0));
        assert_eq!(
            value(&p, ERRORS, &[("span_name", "GET /v1/records/{id}"), ("span_kind", "SPAN_KIND_SERVER")]),
            Some(1.0)
        );
        assert_eq!(value(&p, ERRORS, &[("span_name", "consume")]), Some(0.0));
        assert!(value(&p, CALLS, &[("span_name", "SELECT")]).is_none(), "client spans are not counted by default");
        assert!(p.iter().all(|p| !p.label("span_name").unwrap_or("").contains("123")), "raw paths must not leak");
        let b = format!("{DURATION}_bucket");
        assert_eq!(value(&p, &b, &[("status_code", "STATUS_CODE_UNSET"), ("le", "0.004")]), Some(1.0));
        assert_eq!(value(&p, &b, &[("status_code", "STATUS_CODE_UNSET"), ("le", "0.05")]), Some(2.0));
        assert_eq!(value(&p, &b, &[("status_code", "STATUS_CODE_ERROR"), ("le", "2")]), Some(0.0));
        assert_eq!(value(&p, &b, &[("status_code", "STATUS_CODE_ERROR"), ("le", "5")]), Some(1.0));
        assert_eq!(value(&p, &b, &[("status_code", "STATUS_CODE_ERROR"), ("le", "+Inf")]), Some(1.0));
        let sum = value(&p, &format!("{DURATION}_sum"), &[("status_code", "STATUS_CODE_UNSET")]).unwrap();
        assert!((sum - 0.033).abs() < 1e-9);
        assert!(p.iter().all(|p| p.labels.windows(2).all(|w| w[0].name < w[1].name)), "labels sorted");
    }

    #[test]
    fn cardinality_is_bounded_by_an_overflow_series() {
        let svc = Arc::new(Resource::default());
        let cfg = Config { max_series: 3, ..Config::default() };
        let mut m = SpanMetrics::new(&cfg);
        let spans: Vec<Span> =
            (0..10).map(|i| span(&svc, &format!("op{i}"), SpanKind::Server, 1, vec![], StatusCode::Unset)).collect();
        m.observe(&spans);
        m.observe(&spans[..1]);
        assert_eq!(m.series_count(), 3);
        assert_eq!(m.overflowed_spans(), 7);
        let p = m.collect(0);
        assert_eq!(value(&p, CALLS, &[("otel_metric_overflow", "true")]), Some(7.0));
        assert_eq!(value(&p, CALLS, &[("span_name", "op0")]), Some(2.0));
        assert_eq!(value(&p, CALLS, &[("service_name", "unknown_service"), ("span_name", "op1")]), Some(1.0));
    }

    #[test]
    fn config_validation_names_fields() {
        let c: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(c, Config::default());
        assert!(c.validate().is_ok());
        let bad: Config =
            serde_json::from_str(r#"{"duration_buckets": ["10ms", "5ms"], "max_series": 0, "span_kinds": []}"#)
                .unwrap();
        let e = bad.validate().unwrap_err();
        assert!(e[0].starts_with("duration_buckets"));
        assert!(e[1].starts_with("max_series"));
        assert!(e[2].starts_with("span_kinds"));
        assert!(serde_json::from_str::<Config>(r#"{"span_kinds": ["server", "bogus"]}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"duration_buckets": ["ten"]}"#).is_err());
    }
}
