//! OTLP metrics ⇄ flat Prometheus-style [`MetricPoint`]s.
//!
//! OTLP → points follows the OpenTelemetry → Prometheus compatibility specification:
//!
//! - **Names**: the OTLP name is split on every character that is not an ASCII letter,
//!   digit or `:` and the pieces joined with `_` (so `http.server.duration` becomes
//!   `http_server_duration`, runs of invalid characters collapse to one `_`); a leading
//!   digit gets a `_` prefix. The unit is appended as a suffix unless the name already
//!   carries it (`s` → `_seconds`, `ms` → `_milliseconds`, `By` → `_bytes`, `KiBy` →
//!   `_kibibytes`, `m/s` → `_meters_per_second`, `{request}` annotations are dropped, an
//!   unknown unit is appended sanitized); unit `1` on a gauge gives `_ratio`.
//! - **Types**: a monotonic cumulative Sum is a counter named `<name>_total`; a
//!   non-monotonic cumulative Sum and a Gauge are gauges; an explicit-bucket cumulative
//!   Histogram becomes `<name>_bucket{le}` (cumulative counts, `le="+Inf"` last and equal
//!   to `count`), `<name>_sum` (when the point has a sum) and `<name>_count`; a Summary
//!   becomes `<name>{quantile}`, `<name>_sum` and `<name>_count`.
//! - **Labels**: data point attributes become labels. Names are sanitized (invalid
//!   characters → `_`, a leading digit gets `key_`, a single leading `_` gets `key`);
//!   attributes whose names collide after sanitizing are joined with `;` in the order of
//!   their original keys. Non-string values are rendered as text (arrays and maps as
//!   JSON, bytes as base64); empty values are left out. The resource's `service.name`
//!   (prefixed `<service.namespace>/` when present) becomes `job` and
//!   `service.instance.id` becomes `instance`; the scope's name and version become
//!   `otel_scope_name` / `otel_scope_version`. These override attributes of the same name.
//!   Other resource attributes go to one `target_info{job,instance,...} 1` point per
//!   resource.
//! - A data point flagged `NO_RECORDED_VALUE` becomes a Prometheus staleness marker
//!   (the NaN with bits `0x7ff0000000000002`).
//!
//! **Not supported** (the data points are rejected and counted in the
//! [`ConversionReport`], so the sender gets an OTLP partial success): delta (or
//! unspecified) aggregation temporality for Sum and Histogram — converting deltas to
//! cumulative needs per-series state across requests, which the receiver does not
//! keep; exponential histograms; histogram points whose `bucket_counts` do not match
//! `explicit_bounds` or do not add up to `count`; points without a value or a timestamp
//! (`time_unix_nano` under 1 ms counts as none).
//!
//! Points → OTLP ([`metrics_to_proto`]) regroups by `job`/`instance` (→ resource),
//! `otel_scope_*` (→ scope) and family: counters become monotonic cumulative Sums named
//! without `_total`, gauges and untyped points Gauges, `_bucket`/`_sum`/`_count` points a
//! Histogram (bucket counts de-accumulated), summaries a Summary; `target_info` points
//! become resource attributes. Start timestamps are unknown and left 0.

use super::ConversionReport;
use super::common::scope_to_proto;
use crate::signal::{AnyValue, Label, MetricKind, MetricPoint, Scope};
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::metrics::v1::metric::Data;
use opentelemetry_proto::tonic::resource::v1 as pr;
use std::collections::BTreeMap;

/// The bit pattern Prometheus uses for a staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Points carry milliseconds: a time under 1 ms is treated as missing (0 means unset in
/// OTLP, and such a point would come back from [`metrics_to_proto`] as unset).
const NANOS_PER_MS: u64 = 1_000_000;
const NO_TIME: &str = "time_unix_nano is missing or under 1 ms";

const FLAG_NO_RECORDED_VALUE: u32 = pm::DataPointFlags::NoRecordedValueMask as u32;

fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// A float as Prometheus writes it in `le` and `quantile` labels: shortest round-trip
/// decimal without exponent (Go's `FormatFloat(v, 'f', -1, 64)`), `+Inf`, `-Inf`, `NaN`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

/// `name` as a Prometheus metric name: split on every character that is not an ASCII
/// letter, digit or `:`, joined with `_`, a leading digit prefixed with `_`. Empty when
/// `name` has no valid character.
pub fn sanitize_metric_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for token in name.split(|c: char| !(c.is_ascii_alphanumeric() || c == ':')).filter(|t| !t.is_empty()) {
        if !out.is_empty() {
            out.push('_');
        }
        out.push_str(token);
    }
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `key` as a Prometheus label name: invalid characters → `_`, a leading digit gets a
/// `key_` prefix, a single leading `_` gets `key`. Empty for an empty key.
pub fn sanitize_label_name(key: &str) -> String {
    let mut out: String = key.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect();
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert_str(0, "key_");
    } else if out.starts_with('_') && !out.starts_with("__") {
        out.insert_str(0, "key");
    }
    out
}

fn main_unit(u: &str) -> Option<&'static str> {
    Some(match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_unit(u: &str) -> Option<&'static str> {
    Some(match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

fn unit_word(u: &str, table: fn(&str) -> Option<&'static str>) -> String {
    match table(u) {
        Some(w) => w.to_owned(),
        None => sanitize_metric_name(u),
    }
}

/// The name suffix for an OTLP unit (UCUM), e.g. `ms` → `milliseconds`, `By/s` →
/// `bytes_per_second`; `None` for no unit, `1` and pure `{annotations}`.
pub fn unit_suffix(unit: &str) -> Option<String> {
    // Curly-brace annotations carry no unit (`{request}`, `{packet}/s`).
    let mut cleaned = String::with_capacity(unit.len());
    let mut depth = 0u32;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            _ if depth == 0 => cleaned.push(c),
            _ => {}
        }
    }
    let cleaned = cleaned.trim();
    if cleaned.is_empty() || cleaned == "1" {
        return None;
    }
    let suffix = match cleaned.split_once('/') {
        Some((num, den)) => {
            let (num, den) = (num.trim(), den.trim());
            let den = unit_word(den, per_unit);
            let num = if num.is_empty() || num == "1" { String::new() } else { unit_word(num, main_unit) };
            match (num.is_empty(), den.is_empty()) {
                (_, true) => num,
                (true, false) => format!("per_{den}"),
                (false, false) => format!("{num}_per_{den}"),
            }
        }
        None => unit_word(cleaned, main_unit),
    };
    (!suffix.is_empty()).then_some(suffix)
}

fn has_suffix_token(name: &str, suffix: &str) -> bool {
    name == suffix || name.ends_with(&format!("_{suffix}")) || name.contains(&format!("_{suffix}_"))
}

/// The Prometheus name for an OTLP metric `name` with `unit` converted to `kind`;
/// empty if `name` has no valid character.
pub fn prometheus_name(name: &str, unit: &str, kind: MetricKind) -> String {
    let mut out = sanitize_metric_name(name);
    if out.is_empty() {
        return out;
    }
    if kind == MetricKind::Counter
        && let Some(stripped) = out.strip_suffix("_total")
    {
        out.truncate(stripped.len());
    }
    if let Some(suffix) = unit_suffix(unit)
        && !has_suffix_token(&out, &suffix)
    {
        out.push('_');
        out.push_str(&suffix);
    }
    match kind {
        MetricKind::Counter => out.push_str("_total"),
        MetricKind::Gauge if unit.trim() == "1" && !out.ends_with("_ratio") => out.push_str("_ratio"),
        _ => {}
    }
    out
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(BASE64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn any_to_json(v: &AnyValue) -> serde_json::Value {
    use serde_json::Value as J;
    match v {
        AnyValue::Empty => J::Null,
        AnyValue::Str(s) => J::String(s.clone()),
        AnyValue::Bool(b) => J::Bool(*b),
        AnyValue::Int(i) => J::from(*i),
        AnyValue::Double(d) => serde_json::Number::from_f64(*d).map_or_else(|| J::String(format_float(*d)), J::Number),
        AnyValue::Bytes(b) => J::String(base64_encode(b)),
        AnyValue::Array(a) => J::Array(a.iter().map(any_to_json).collect()),
        AnyValue::KvList(kv) => J::Object(kv.iter().map(|kv| (kv.key.clone(), any_to_json(&kv.value))).collect()),
    }
}

/// An attribute value as a label value; `None` for an empty value.
fn label_value(v: &AnyValue) -> Option<String> {
    Some(match v {
        AnyValue::Empty => return None,
        AnyValue::Str(s) => s.clone(),
        AnyValue::Bool(b) => b.to_string(),
        AnyValue::Int(i) => i.to_string(),
        AnyValue::Double(d) => format_float(*d),
        AnyValue::Bytes(b) => base64_encode(b),
        AnyValue::Array(_) | AnyValue::KvList(_) => any_to_json(v).to_string(),
    })
}

fn proto_label_value(v: &pc::AnyValue) -> Option<String> {
    label_value(&super::common::any_from_proto(v.clone()))
}

/// Attributes → sorted, unique labels; colliding names joined with `;` in the order of
/// their original keys.
fn attributes_to_labels(attrs: &[pc::KeyValue]) -> Vec<Label> {
    let mut named: Vec<(String, &str, String)> = attrs
        .iter()
        .filter_map(|kv| {
            let name = sanitize_label_name(&kv.key);
            let value = kv.value.as_ref().and_then(proto_label_value)?;
            (!name.is_empty() && name != "__name__").then_some((name, kv.key.as_str(), value))
        })
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(b.1)));
    let mut out: Vec<Label> = Vec::with_capacity(named.len());
    for (name, _, value) in named {
        match out.last_mut() {
            Some(last) if last.name == name => {
                last.value.push(';');
                last.value.push_str(&value);
            }
            _ => out.push(Label { name, value }),
        }
    }
    out
}

/// Sets `name=value` in sorted unique `labels`, replacing an existing value.
fn set_label(labels: &mut Vec<Label>, name: &str, value: String) {
    match labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
        Ok(i) => labels[i].value = value,
        Err(i) => labels.insert(i, Label { name: name.to_owned(), value }),
    }
}

/// Labels every point of one resource and scope carries.
struct Common {
    labels: Vec<(&'static str, String)>,
}

impl Common {
    fn apply(&self, labels: &mut Vec<Label>) {
        for (n, v) in &self.labels {
            set_label(labels, n, v.clone());
        }
    }
}

fn resource_str<'a>(attrs: &'a [pc::KeyValue], key: &str) -> Option<&'a str> {
    attrs.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        pc::any_value::Value::StringValue(s) => Some(s.as_str()),
        _ => None,
    })
}

const RESOURCE_IDENTITY: [&str; 3] = ["service.name", "service.namespace", "service.instance.id"];

fn job_instance(attrs: &[pc::KeyValue]) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(name) = resource_str(attrs, "service.name").filter(|s| !s.is_empty()) {
        let job = match resource_str(attrs, "service.namespace").filter(|s| !s.is_empty()) {
            Some(ns) => format!("{ns}/{name}"),
            None => name.to_owned(),
        };
        out.push(("job", job));
    }
    if let Some(inst) = resource_str(attrs, "service.instance.id").filter(|s| !s.is_empty()) {
        out.push(("instance", inst.to_owned()));
    }
    out
}

/// Points of one metric, with what they share.
struct Emitter<'a> {
    out: &'a mut Vec<MetricPoint>,
    report: &'a mut ConversionReport,
    common: &'a Common,
}

impl Emitter<'_> {
    fn labels(&self, attrs: &[pc::KeyValue]) -> Vec<Label> {
        let mut labels = attributes_to_labels(attrs);
        self.common.apply(&mut labels);
        labels
    }

    fn push(&mut self, name: String, labels: Vec<Label>, kind: MetricKind, value: f64, ts: i64) {
        // `labels` is already sorted and unique: build directly instead of re-sorting.
        self.out.push(MetricPoint { name, labels, kind, value, timestamp_ms: ts });
    }

    fn number(&mut self, name: &str, kind: MetricKind, p: &pm::NumberDataPoint) {
        if p.time_unix_nano < NANOS_PER_MS {
            return self.report.reject(NO_TIME);
        }
        let value = if p.flags & FLAG_NO_RECORDED_VALUE != 0 {
            stale_nan()
        } else {
            match p.value {
                Some(pm::number_data_point::Value::AsDouble(d)) => d,
                Some(pm::number_data_point::Value::AsInt(i)) => i as f64,
                None => return self.report.reject("data point has no value"),
            }
        };
        let labels = self.labels(&p.attributes);
        self.push(name.to_owned(), labels, kind, value, super::nanos_to_millis(p.time_unix_nano));
    }

    fn histogram(&mut self, name: &str, p: &pm::HistogramDataPoint) {
        if p.time_unix_nano < NANOS_PER_MS {
            return self.report.reject(NO_TIME);
        }
        let bounds = &p.explicit_bounds;
        if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
            return self.report.reject("explicit_bounds are not finite and strictly increasing");
        }
        if !p.bucket_counts.is_empty() {
            if p.bucket_counts.len() != bounds.len() + 1 {
                return self.report.reject("bucket_counts length does not match explicit_bounds");
            }
            let total = p.bucket_counts.iter().try_fold(0u64, |acc, c| acc.checked_add(*c));
            if total != Some(p.count) {
                return self.report.reject("bucket_counts do not add up to count");
            }
        } else if !bounds.is_empty() {
            return self.report.reject("bucket_counts length does not match explicit_bounds");
        }
        let stale = p.flags & FLAG_NO_RECORDED_VALUE != 0;
        let v = |x: f64| if stale { stale_nan() } else { x };
        let ts = super::nanos_to_millis(p.time_unix_nano);
        let labels = self.labels(&p.attributes);
        let bucket = format!("{name}_bucket");
        let mut cumulative = 0u64;
        for (bound, count) in bounds.iter().zip(&p.bucket_counts) {
            cumulative += count;
            let mut l = labels.clone();
            set_label(&mut l, "le", format_float(*bound));
            self.push(bucket.clone(), l, MetricKind::Histogram, v(cumulative as f64), ts);
        }
        let mut l = labels.clone();
        set_label(&mut l, "le", "+Inf".to_owned());
        self.push(bucket, l, MetricKind::Histogram, v(p.count as f64), ts);
        if let Some(sum) = p.sum {
            self.push(format!("{name}_sum"), labels.clone(), MetricKind::Histogram, v(sum), ts);
        }
        self.push(format!("{name}_count"), labels, MetricKind::Histogram, v(p.count as f64), ts);
    }

    fn summary(&mut self, name: &str, p: &pm::SummaryDataPoint) {
        if p.time_unix_nano < NANOS_PER_MS {
            return self.report.reject(NO_TIME);
        }
        let stale = p.flags & FLAG_NO_RECORDED_VALUE != 0;
        let v = |x: f64| if stale { stale_nan() } else { x };
        let ts = super::nanos_to_millis(p.time_unix_nano);
        let labels = self.labels(&p.attributes);
        for q in &p.quantile_values {
            let mut l = labels.clone();
            set_label(&mut l, "quantile", format_float(q.quantile));
            self.push(name.to_owned(), l, MetricKind::Summary, v(q.value), ts);
        }
        self.push(format!("{name}_sum"), labels.clone(), MetricKind::Summary, v(p.sum), ts);
        self.push(format!("{name}_count"), labels, MetricKind::Summary, v(p.count as f64), ts);
    }
}

fn points_of(data: &Data) -> u64 {
    (match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }) as u64
}

fn temporality_problem(t: i32) -> Option<&'static str> {
    match pm::AggregationTemporality::try_from(t) {
        Ok(pm::AggregationTemporality::Cumulative) => None,
        Ok(pm::AggregationTemporality::Delta) => Some("delta temporality is not supported"),
        _ => Some("aggregation temporality is unspecified"),
    }
}

fn metric_to_points(m: &pm::Metric, e: &mut Emitter<'_>) {
    let Some(data) = &m.data else { return };
    let kind = match data {
        Data::Gauge(_) => MetricKind::Gauge,
        Data::Sum(s) if s.is_monotonic => MetricKind::Counter,
        Data::Sum(_) => MetricKind::Gauge,
        Data::Histogram(_) => MetricKind::Histogram,
        Data::Summary(_) => MetricKind::Summary,
        Data::ExponentialHistogram(h) => {
            return e.report.reject_n("exponential histograms are not supported", h.data_points.len() as u64);
        }
    };
    let name = prometheus_name(&m.name, &m.unit, kind);
    if name.is_empty() {
        return e.report.reject_n("metric name has no valid character", points_of(data));
    }
    match data {
        Data::Gauge(g) => g.data_points.iter().for_each(|p| e.number(&name, kind, p)),
        Data::Sum(s) => match temporality_problem(s.aggregation_temporality) {
            Some(reason) => e.report.reject_n(reason, s.data_points.len() as u64),
            None => s.data_points.iter().for_each(|p| e.number(&name, kind, p)),
        },
        Data::Histogram(h) => match temporality_problem(h.aggregation_temporality) {
            Some(reason) => e.report.reject_n(reason, h.data_points.len() as u64),
            None => h.data_points.iter().for_each(|p| e.histogram(&name, p)),
        },
        Data::Summary(s) => s.data_points.iter().for_each(|p| e.summary(&name, p)),
        Data::ExponentialHistogram(_) => {}
    }
}

/// OTLP `ResourceMetrics` → Prometheus-style points (see the module docs for the rules).
/// Rejected data points are counted in `report`.
pub fn metrics_from_proto(
    resource_metrics: Vec<pm::ResourceMetrics>,
    report: &mut ConversionReport,
) -> Vec<MetricPoint> {
    let mut out = Vec::new();
    for rm in resource_metrics {
        let res_attrs = rm.resource.map(|r| r.attributes).unwrap_or_default();
        let identity = job_instance(&res_attrs);
        let first = out.len();
        for sm in rm.scope_metrics {
            let mut labels = identity.clone();
            if let Some(scope) = &sm.scope {
                if !scope.name.is_empty() {
                    labels.push(("otel_scope_name", scope.name.clone()));
                }
                if !scope.version.is_empty() {
                    labels.push(("otel_scope_version", scope.version.clone()));
                }
            }
            let common = Common { labels };
            let mut e = Emitter { out: &mut out, report, common: &common };
            for m in &sm.metrics {
                metric_to_points(m, &mut e);
            }
        }
        // Resource attributes other than the identity go to `target_info`, once per
        // resource that produced points.
        let others: Vec<pc::KeyValue> =
            res_attrs.into_iter().filter(|kv| !RESOURCE_IDENTITY.contains(&kv.key.as_str())).collect();
        if out.len() > first && !others.is_empty() {
            let ts = out[first..].iter().map(|p| p.timestamp_ms).max().unwrap_or(0);
            let mut labels = attributes_to_labels(&others);
            Common { labels: identity }.apply(&mut labels);
            out.push(MetricPoint {
                name: "target_info".to_owned(),
                labels,
                kind: MetricKind::Gauge,
                value: 1.0,
                timestamp_ms: ts,
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------
// Points → OTLP.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    Gauge,
    Counter,
    Histogram,
    Summary,
}

#[derive(Debug, Default)]
struct Acc {
    ts: i64,
    value: f64,
    stale: bool,
    /// `(le or quantile, value)`.
    parts: Vec<(f64, f64)>,
    sum: Option<f64>,
    count: Option<f64>,
}

type ResKey = (Option<String>, Option<String>);
type ScopeKey = (String, String);
type SeriesMap = BTreeMap<Vec<Label>, Acc>;

#[derive(Default)]
struct ResAcc {
    target_info: Vec<Label>,
    scopes: BTreeMap<ScopeKey, BTreeMap<(String, Class), SeriesMap>>,
}

fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// Where a point goes: its family name, class, and which part of the family it is.
enum Part {
    Value,
    Bucket,
    Quantile,
    Sum,
    Count,
}

fn classify(p: &MetricPoint) -> (String, Class, Part) {
    let strip = |suffix: &str| p.name.strip_suffix(suffix).filter(|s| !s.is_empty()).map(str::to_owned);
    match p.kind {
        MetricKind::Counter => (strip("_total").unwrap_or_else(|| p.name.clone()), Class::Counter, Part::Value),
        MetricKind::Histogram => {
            if let Some(n) = strip("_bucket").filter(|_| p.label("le").is_some()) {
                (n, Class::Histogram, Part::Bucket)
            } else if let Some(n) = strip("_sum") {
                (n, Class::Histogram, Part::Sum)
            } else if let Some(n) = strip("_count") {
                (n, Class::Histogram, Part::Count)
            } else {
                (p.name.clone(), Class::Gauge, Part::Value)
            }
        }
        MetricKind::Summary => {
            if p.label("quantile").is_some() {
                (p.name.clone(), Class::Summary, Part::Quantile)
            } else if let Some(n) = strip("_sum") {
                (n, Class::Summary, Part::Sum)
            } else if let Some(n) = strip("_count") {
                (n, Class::Summary, Part::Count)
            } else {
                (p.name.clone(), Class::Gauge, Part::Value)
            }
        }
        MetricKind::Gauge | MetricKind::Unknown => (p.name.clone(), Class::Gauge, Part::Value),
    }
}

fn parse_float(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" | "inf" | "+inf" => Some(f64::INFINITY),
        "-Inf" | "-inf" => Some(f64::NEG_INFINITY),
        _ => s.parse().ok(),
    }
}

const RESERVED: [&str; 4] = ["job", "instance", "otel_scope_name", "otel_scope_version"];

fn string_kv(key: &str, value: &str) -> pc::KeyValue {
    pc::KeyValue {
        key: key.to_owned(),
        value: Some(pc::AnyValue { value: Some(pc::any_value::Value::StringValue(value.to_owned())) }),
    }
}

fn labels_to_attrs(labels: &[Label]) -> Vec<pc::KeyValue> {
    labels.iter().map(|l| string_kv(&l.name, &l.value)).collect()
}

fn resource_of(key: &ResKey, target_info: &[Label]) -> pr::Resource {
    let mut attrs = Vec::new();
    if let Some(job) = &key.0 {
        match job.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                attrs.push(string_kv("service.name", name));
                attrs.push(string_kv("service.namespace", ns));
            }
            _ => attrs.push(string_kv("service.name", job)),
        }
    }
    if let Some(inst) = &key.1 {
        attrs.push(string_kv("service.instance.id", inst));
    }
    attrs.extend(labels_to_attrs(target_info));
    pr::Resource { attributes: attrs, dropped_attributes_count: 0, entity_refs: Vec::new() }
}

fn nanos(ts_ms: i64) -> u64 {
    u64::try_from(ts_ms).unwrap_or(0).saturating_mul(1_000_000)
}

fn flags(stale: bool) -> u32 {
    if stale { FLAG_NO_RECORDED_VALUE } else { 0 }
}

fn to_count(v: f64) -> u64 {
    // Saturating float → int: NaN and negatives become 0.
    if v.is_nan() || v <= 0.0 { 0 } else { v as u64 }
}

fn histogram_point(attrs: Vec<pc::KeyValue>, mut acc: Acc) -> pm::HistogramDataPoint {
    acc.parts.sort_by(|a, b| a.0.total_cmp(&b.0));
    acc.parts.dedup_by(|a, b| a.0 == b.0);
    let inf = acc.parts.iter().find(|(le, _)| *le == f64::INFINITY).map(|(_, v)| *v);
    let finite: Vec<(f64, f64)> = acc.parts.iter().copied().filter(|(le, _)| le.is_finite()).collect();
    let total = to_count(inf.or(acc.count).unwrap_or_else(|| finite.last().map_or(0.0, |b| b.1)));
    let mut bucket_counts = Vec::with_capacity(finite.len() + 1);
    let mut prev = 0u64;
    for (_, cum) in &finite {
        let cum = to_count(*cum);
        bucket_counts.push(cum.saturating_sub(prev));
        prev = prev.max(cum);
    }
    bucket_counts.push(total.saturating_sub(prev));
    // Keep the OTLP invariant count == Σ bucket_counts even for inconsistent input.
    let count = bucket_counts.iter().sum();
    pm::HistogramDataPoint {
        attributes: attrs,
        start_time_unix_nano: 0,
        time_unix_nano: nanos(acc.ts),
        count,
        sum: acc.sum,
        bucket_counts,
        explicit_bounds: finite.iter().map(|b| b.0).collect(),
        exemplars: Vec::new(),
        flags: flags(acc.stale),
        min: None,
        max: None,
    }
}

fn family_to_metric(name: String, class: Class, series: SeriesMap) -> pm::Metric {
    let number = |labels: Vec<Label>, acc: Acc| pm::NumberDataPoint {
        attributes: labels_to_attrs(&labels),
        start_time_unix_nano: 0,
        time_unix_nano: nanos(acc.ts),
        exemplars: Vec::new(),
        flags: flags(acc.stale),
        value: Some(pm::number_data_point::Value::AsDouble(if acc.stale { 0.0 } else { acc.value })),
    };
    let data = match class {
        Class::Gauge => Data::Gauge(pm::Gauge { data_points: series.into_iter().map(|(l, a)| number(l, a)).collect() }),
        Class::Counter => Data::Sum(pm::Sum {
            data_points: series.into_iter().map(|(l, a)| number(l, a)).collect(),
            aggregation_temporality: pm::AggregationTemporality::Cumulative as i32,
            is_monotonic: true,
        }),
        Class::Histogram => Data::Histogram(pm::Histogram {
            data_points: series.into_iter().map(|(l, a)| histogram_point(labels_to_attrs(&l), a)).collect(),
            aggregation_temporality: pm::AggregationTemporality::Cumulative as i32,
        }),
        Class::Summary => Data::Summary(pm::Summary {
            data_points: series
                .into_iter()
                .map(|(l, mut a)| {
                    a.parts.sort_by(|x, y| x.0.total_cmp(&y.0));
                    pm::SummaryDataPoint {
                        attributes: labels_to_attrs(&l),
                        start_time_unix_nano: 0,
                        time_unix_nano: nanos(a.ts),
                        count: to_count(a.count.unwrap_or(0.0)),
                        sum: a.sum.unwrap_or(0.0),
                        quantile_values: a
                            .parts
                            .iter()
                            .map(|&(quantile, value)| pm::summary_data_point::ValueAtQuantile { quantile, value })
                            .collect(),
                        flags: flags(a.stale),
                    }
                })
                .collect(),
        }),
    };
    pm::Metric { name, description: String::new(), unit: String::new(), metadata: Vec::new(), data: Some(data) }
}

/// Prometheus-style points → OTLP `ResourceMetrics` (see the module docs). Output order
/// is deterministic: resources, scopes, families and series sorted.
pub fn metrics_to_proto(points: &[MetricPoint]) -> Vec<pm::ResourceMetrics> {
    let mut resources: BTreeMap<ResKey, ResAcc> = BTreeMap::new();
    for p in points {
        let res_key = (p.label("job").map(str::to_owned), p.label("instance").map(str::to_owned));
        let res = resources.entry(res_key).or_default();
        if p.name == "target_info" {
            res.target_info = p.labels.iter().filter(|l| l.name != "job" && l.name != "instance").cloned().collect();
            continue;
        }
        let scope_key = (
            p.label("otel_scope_name").unwrap_or_default().to_owned(),
            p.label("otel_scope_version").unwrap_or_default().to_owned(),
        );
        let (family, class, part) = classify(p);
        let series_labels: Vec<Label> = p
            .labels
            .iter()
            .filter(|l| {
                let part_label = match part {
                    Part::Bucket => l.name == "le",
                    Part::Quantile => l.name == "quantile",
                    _ => false,
                };
                !part_label && !RESERVED.contains(&l.name.as_str())
            })
            .cloned()
            .collect();
        let acc = res
            .scopes
            .entry(scope_key)
            .or_default()
            .entry((family, class))
            .or_default()
            .entry(series_labels)
            .or_default();
        acc.ts = acc.ts.max(p.timestamp_ms);
        acc.stale |= is_stale(p.value);
        match part {
            Part::Value => acc.value = p.value,
            Part::Bucket => {
                if let Some(le) = p.label("le").and_then(parse_float) {
                    acc.parts.push((le, p.value));
                }
            }
            Part::Quantile => {
                if let Some(q) = p.label("quantile").and_then(parse_float) {
                    acc.parts.push((q, p.value));
                }
            }
            Part::Sum => acc.sum = Some(p.value),
            Part::Count => acc.count = Some(p.value),
        }
    }
    resources
        .into_iter()
        .filter(|(_, r)| !r.scopes.is_empty())
        .map(|(key, r)| pm::ResourceMetrics {
            resource: Some(resource_of(&key, &r.target_info)),
            schema_url: String::new(),
            scope_metrics: r
                .scopes
                .into_iter()
                .map(|((name, version), families)| pm::ScopeMetrics {
                    scope: Some(scope_to_proto(&Scope { name, version, ..Scope::default() })),
                    schema_url: String::new(),
                    metrics: families.into_iter().map(|((n, c), s)| family_to_metric(n, c, s)).collect(),
                })
                .collect(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_compatibility_spec() {
        let cases = [
            ("http.server.duration", "ms", MetricKind::Histogram, "http_server_duration_milliseconds"),
            ("http.server.requests", "{request}", MetricKind::Counter, "http_server_requests_total"),
            ("requests_total", "1", MetricKind::Counter, "requests_total"),
            ("system.memory.usage", "By", MetricKind::Gauge, "system_memory_usage_bytes"),
            ("cpu.utilization", "1", MetricKind::Gauge, "cpu_utilization_ratio"),
            ("net.io", "By/s", MetricKind::Gauge, "net_io_bytes_per_second"),
            ("packets", "{packet}/s", MetricKind::Counter, "packets_per_second_total"),
            ("process.cpu.time_seconds", "s", MetricKind::Counter, "process_cpu_time_seconds_total"),
            ("9lives..x--y", "", MetricKind::Gauge, "_9lives_x_y"),
            ("a:b", "widgets", MetricKind::Gauge, "a:b_widgets"),
            ("...", "s", MetricKind::Gauge, ""),
        ];
        for (name, unit, kind, want) in cases {
            assert_eq!(prometheus_name(name, unit, kind), want, "{name} [{unit}] {kind:?}");
        }
    }

    #[test]
    fn label_names_are_sanitized() {
        assert_eq!(sanitize_label_name("http.request.method"), "http_request_method");
        assert_eq!(sanitize_label_name("1abc"), "key_1abc");
        assert_eq!(sanitize_label_name("_x"), "key_x");
        assert_eq!(sanitize_label_name("__x"), "__x");
        assert_eq!(sanitize_label_name("ü"), "key_");
    }

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64_encode(i.as_bytes()), o);
        }
    }

    #[test]
    fn floats_format_like_prometheus() {
        assert_eq!(format_float(1.0), "1");
        assert_eq!(format_float(0.005), "0.005");
        assert_eq!(format_float(2.5e-7), "0.00000025");
        assert_eq!(format_float(f64::INFINITY), "+Inf");
    }
}
