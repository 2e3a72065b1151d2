//! OTLP/JSON: decoding request bodies into the protobuf types, and encoding responses.
//!
//! The OTLP/JSON encoding is the proto3 JSON mapping with OTLP's deviations: `traceId` /
//! `spanId` are case-insensitive hex (not base64), keys are lowerCamelCase only (the
//! original snake_case names are not valid keys and, like every unknown field, are
//! ignored), and 64-bit integers are decimal strings while "either numbers or strings
//! are accepted when decoding".
//!
//! `opentelemetry-proto`'s `with-serde` derive (0.31, checked) falls short of that:
//! span/log/number-point/histogram-point timestamps accept only strings, while `count`,
//! `bucketCounts`, `asInt` and the summary, exponential-histogram and exemplar timestamps
//! accept only numbers; enum fields accept only integers; `droppedAttributesCount` and
//! other 32-bit fields reject strings; `null` for a field is an error; doubles as
//! `"NaN"`/`"Infinity"` are rejected; `{}` is refused (`Export*ServiceRequest` has no
//! `serde(default)`). Worse, `Metric.data` and `NumberDataPoint.value` are
//! `#[serde(flatten)]` options, so any error inside them (a string `count`, a
//! string `asInt`, a summary point missing a field) silently yields no data instead of
//! an error. And its error messages quote the offending value. So this module decodes
//! with its own schema-directed reader over a `serde_json::Value` instead, which follows
//! the proto3 mapping:
//!
//! - 64-bit and 32-bit integers: a JSON number (an integral float is accepted) or a
//!   decimal string; the value must fit the field's type.
//! - doubles: a number, a numeric string, or `"NaN"`, `"Infinity"`, `"-Infinity"`.
//! - enums: an integer (as OTLP requires) or, leniently, the enum value's name
//!   (`"SPAN_KIND_SERVER"`); an unknown integer is kept, as protobuf does.
//! - `bytesValue`: standard or URL-safe base64, padding optional.
//! - `null` or a missing field means the default; unknown fields are ignored.
//!
//! Errors name the path of the field at fault (`resourceSpans[0].scopeSpans[1].spans[3].traceId`)
//! and what was expected, never the value found.

use super::Signal;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::logs::v1 as pl;
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1 as pr;
use opentelemetry_proto::tonic::trace::v1 as pt;
use serde_json::{Map, Value};
use std::fmt;

/// One step of the path to a field.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(&'static str),
    Index(usize),
}

/// Why an OTLP/JSON body was refused: the path of the field at fault and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    /// Innermost segment first.
    path: Vec<Seg>,
    reason: String,
}

impl JsonError {
    fn new(reason: impl Into<String>) -> JsonError {
        JsonError { path: Vec::new(), reason: reason.into() }
    }

    /// The path of the field at fault, e.g. `resourceSpans[0].scopeSpans[0].spans[2].traceId`;
    /// empty for the document itself.
    pub fn path(&self) -> String {
        let mut out = String::new();
        for seg in self.path.iter().rev() {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path();
        if path.is_empty() { write!(f, "{}", self.reason) } else { write!(f, "{path}: {}", self.reason) }
    }
}

impl std::error::Error for JsonError {}

type R<T> = Result<T, JsonError>;

trait At<T> {
    fn at(self, seg: Seg) -> R<T>;
}

impl<T> At<T> for R<T> {
    fn at(self, seg: Seg) -> R<T> {
        self.map_err(|mut e| {
            e.path.push(seg);
            e
        })
    }
}

fn parse_document(body: &[u8]) -> R<Value> {
    serde_json::from_slice(body).map_err(|e| {
        // serde_json's own messages can quote input; report only the position and class.
        let class = match e.classify() {
            serde_json::error::Category::Eof => "unexpected end of input",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "invalid data",
            serde_json::error::Category::Io => "read error",
        };
        JsonError::new(format!("not valid JSON: {class} at line {} column {}", e.line(), e.column()))
    })
}

/// A JSON object read as a protobuf message: missing and `null` fields are defaults.
#[derive(Clone, Copy)]
struct Obj<'a>(&'a Map<String, Value>);

fn obj(v: &Value) -> R<Obj<'_>> {
    v.as_object().map(Obj).ok_or_else(|| JsonError::new("expected an object"))
}

fn u64_of(v: &Value) -> R<u64> {
    match v {
        Value::Number(n) => n
            .as_u64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 18_446_744_073_709_551_616.0)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| JsonError::new("expected an unsigned 64-bit integer")),
        Value::String(s) => s.trim().parse().map_err(|_| JsonError::new("expected an unsigned 64-bit integer string")),
        _ => Err(JsonError::new("expected an unsigned 64-bit integer")),
    }
}

fn i64_of(v: &Value) -> R<i64> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .or_else(|| {
                n.as_f64()
                    .filter(|f| {
                        f.fract() == 0.0 && *f >= -9_223_372_036_854_775_808.0 && *f < 9_223_372_036_854_775_808.0
                    })
                    .map(|f| f as i64)
            })
            .ok_or_else(|| JsonError::new("expected a signed 64-bit integer")),
        Value::String(s) => s.trim().parse().map_err(|_| JsonError::new("expected a signed 64-bit integer string")),
        _ => Err(JsonError::new("expected a signed 64-bit integer")),
    }
}

fn u32_of(v: &Value) -> R<u32> {
    u64_of(v).and_then(|n| u32::try_from(n).map_err(|_| JsonError::new("expected an unsigned 32-bit integer")))
}

fn i32_of(v: &Value) -> R<i32> {
    i64_of(v).and_then(|n| i32::try_from(n).map_err(|_| JsonError::new("expected a signed 32-bit integer")))
}

fn f64_of(v: &Value) -> R<f64> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| JsonError::new("expected a number")),
        Value::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            other => other
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .ok_or_else(|| JsonError::new("expected a number or \"NaN\", \"Infinity\", \"-Infinity\"")),
        },
        _ => Err(JsonError::new("expected a number")),
    }
}

fn hex_of(v: &Value) -> R<Vec<u8>> {
    let s = v.as_str().ok_or_else(|| JsonError::new("expected a hex string"))?;
    if s.len() % 2 != 0 {
        return Err(JsonError::new("expected a hex string of even length"));
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    };
    s.as_bytes()
        .chunks(2)
        .map(|p| Some(nibble(p[0])? << 4 | nibble(p[1])?))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| JsonError::new("expected a hex string"))
}

/// Standard or URL-safe base64, with or without padding (the proto3 JSON mapping accepts
/// either for `bytes`).
pub(crate) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let s = s.trim_end_matches('=');
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let mut acc = 0u32;
    let mut bits = 0u32;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    // A single leftover sextet cannot come from whole bytes.
    (bits < 6).then_some(out)
}

impl<'a> Obj<'a> {
    fn get(self, k: &str) -> Option<&'a Value> {
        self.0.get(k).filter(|v| !v.is_null())
    }

    fn with<T: Default>(self, k: &'static str, f: impl FnOnce(&'a Value) -> R<T>) -> R<T> {
        match self.get(k) {
            Some(v) => f(v).at(Seg::Key(k)),
            None => Ok(T::default()),
        }
    }

    fn string(self, k: &'static str) -> R<String> {
        self.with(k, |v| v.as_str().map(str::to_owned).ok_or_else(|| JsonError::new("expected a string")))
    }

    fn boolean(self, k: &'static str) -> R<bool> {
        self.with(k, |v| v.as_bool().ok_or_else(|| JsonError::new("expected true or false")))
    }

    fn u64(self, k: &'static str) -> R<u64> {
        self.with(k, u64_of)
    }

    fn u32(self, k: &'static str) -> R<u32> {
        self.with(k, u32_of)
    }

    fn i32(self, k: &'static str) -> R<i32> {
        self.with(k, i32_of)
    }

    fn f64(self, k: &'static str) -> R<f64> {
        self.with(k, f64_of)
    }

    fn opt_f64(self, k: &'static str) -> R<Option<f64>> {
        self.with(k, |v| f64_of(v).map(Some))
    }

    fn hex(self, k: &'static str) -> R<Vec<u8>> {
        self.with(k, hex_of)
    }

    fn enumeration(self, k: &'static str, by_name: fn(&str) -> Option<i32>) -> R<i32> {
        self.with(k, |v| match v {
            Value::String(s) if !s.trim().starts_with(|c: char| c.is_ascii_digit() || c == '-') => {
                by_name(s).ok_or_else(|| JsonError::new("unknown enum value name"))
            }
            _ => i32_of(v),
        })
    }

    fn message<T>(self, k: &'static str, f: impl FnOnce(Obj<'a>) -> R<T>) -> R<Option<T>> {
        self.with(k, |v| f(obj(v)?).map(Some))
    }

    fn list<T>(self, k: &'static str, f: impl Fn(&'a Value) -> R<T>) -> R<Vec<T>> {
        let Some(v) = self.get(k) else { return Ok(Vec::new()) };
        let arr = v.as_array().ok_or_else(|| JsonError::new("expected an array")).at(Seg::Key(k))?;
        arr.iter().enumerate().map(|(i, item)| f(item).at(Seg::Index(i)).at(Seg::Key(k))).collect()
    }

    fn messages<T>(self, k: &'static str, f: impl Fn(Obj<'a>) -> R<T>) -> R<Vec<T>> {
        self.list(k, |v| f(obj(v)?))
    }
}

// ---------------------------------------------------------------------------------------
// common.v1 and resource.v1

fn any_value(o: Obj<'_>) -> R<pc::AnyValue> {
    use pc::any_value::Value as V;
    // A oneof: the first known member present wins; unknown keys are ignored.
    for (k, v) in o.0 {
        if v.is_null() {
            continue;
        }
        let value = match k.as_str() {
            "stringValue" => V::StringValue(o.string("stringValue")?),
            "boolValue" => V::BoolValue(o.boolean("boolValue")?),
            "intValue" => V::IntValue(o.with("intValue", i64_of)?),
            "doubleValue" => V::DoubleValue(o.f64("doubleValue")?),
            "bytesValue" => V::BytesValue(o.with("bytesValue", |v| {
                v.as_str().and_then(base64_decode).ok_or_else(|| JsonError::new("expected a base64 string"))
            })?),
            "arrayValue" => V::ArrayValue(
                o.message("arrayValue", |a| Ok(pc::ArrayValue { values: a.messages("values", any_value)? }))?
                    .unwrap_or_default(),
            ),
            "kvlistValue" => V::KvlistValue(
                o.message("kvlistValue", |a| Ok(pc::KeyValueList { values: a.messages("values", key_value)? }))?
                    .unwrap_or_default(),
            ),
            _ => continue,
        };
        return Ok(pc::AnyValue { value: Some(value) });
    }
    Ok(pc::AnyValue { value: None })
}

fn key_value(o: Obj<'_>) -> R<pc::KeyValue> {
    Ok(pc::KeyValue { key: o.string("key")?, value: o.message("value", any_value)? })
}

fn attributes(o: Obj<'_>, k: &'static str) -> R<Vec<pc::KeyValue>> {
    o.messages(k, key_value)
}

fn resource(o: Obj<'_>) -> R<pr::Resource> {
    Ok(pr::Resource {
        attributes: attributes(o, "attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
        entity_refs: Vec::new(),
    })
}

fn scope(o: Obj<'_>) -> R<pc::InstrumentationScope> {
    Ok(pc::InstrumentationScope {
        name: o.string("name")?,
        version: o.string("version")?,
        attributes: attributes(o, "attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
    })
}

// ---------------------------------------------------------------------------------------
// traces

fn span_kind_by_name(s: &str) -> Option<i32> {
    pt::span::SpanKind::from_str_name(s).map(|k| k as i32)
}

fn status_code_by_name(s: &str) -> Option<i32> {
    pt::status::StatusCode::from_str_name(s).map(|k| k as i32)
}

fn span(o: Obj<'_>) -> R<pt::Span> {
    Ok(pt::Span {
        trace_id: o.hex("traceId")?,
        span_id: o.hex("spanId")?,
        trace_state: o.string("traceState")?,
        parent_span_id: o.hex("parentSpanId")?,
        flags: o.u32("flags")?,
        name: o.string("name")?,
        kind: o.enumeration("kind", span_kind_by_name)?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        end_time_unix_nano: o.u64("endTimeUnixNano")?,
        attributes: attributes(o, "attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
        events: o.messages("events", |e| {
            Ok(pt::span::Event {
                time_unix_nano: e.u64("timeUnixNano")?,
                name: e.string("name")?,
                attributes: attributes(e, "attributes")?,
                dropped_attributes_count: e.u32("droppedAttributesCount")?,
            })
        })?,
        dropped_events_count: o.u32("droppedEventsCount")?,
        links: o.messages("links", |l| {
            Ok(pt::span::Link {
                trace_id: l.hex("traceId")?,
                span_id: l.hex("spanId")?,
                trace_state: l.string("traceState")?,
                attributes: attributes(l, "attributes")?,
                dropped_attributes_count: l.u32("droppedAttributesCount")?,
                flags: l.u32("flags")?,
            })
        })?,
        dropped_links_count: o.u32("droppedLinksCount")?,
        status: o.message("status", |s| {
            Ok(pt::Status { message: s.string("message")?, code: s.enumeration("code", status_code_by_name)? })
        })?,
    })
}

/// Decodes an OTLP/JSON `ExportTraceServiceRequest`.
pub fn decode_traces(body: &[u8]) -> Result<ExportTraceServiceRequest, JsonError> {
    let doc = parse_document(body)?;
    let o = obj(&doc)?;
    Ok(ExportTraceServiceRequest {
        resource_spans: o.messages("resourceSpans", |rs| {
            Ok(pt::ResourceSpans {
                resource: rs.message("resource", resource)?,
                schema_url: rs.string("schemaUrl")?,
                scope_spans: rs.messages("scopeSpans", |ss| {
                    Ok(pt::ScopeSpans {
                        scope: ss.message("scope", scope)?,
                        schema_url: ss.string("schemaUrl")?,
                        spans: ss.messages("spans", span)?,
                    })
                })?,
            })
        })?,
    })
}

// ---------------------------------------------------------------------------------------
// logs

fn severity_by_name(s: &str) -> Option<i32> {
    pl::SeverityNumber::from_str_name(s).map(|k| k as i32)
}

fn log_record(o: Obj<'_>) -> R<pl::LogRecord> {
    Ok(pl::LogRecord {
        time_unix_nano: o.u64("timeUnixNano")?,
        observed_time_unix_nano: o.u64("observedTimeUnixNano")?,
        severity_number: o.enumeration("severityNumber", severity_by_name)?,
        severity_text: o.string("severityText")?,
        body: o.message("body", any_value)?,
        attributes: attributes(o, "attributes")?,
        dropped_attributes_count: o.u32("droppedAttributesCount")?,
        flags: o.u32("flags")?,
        trace_id: o.hex("traceId")?,
        span_id: o.hex("spanId")?,
        event_name: o.string("eventName")?,
    })
}

/// Decodes an OTLP/JSON `ExportLogsServiceRequest`.
pub fn decode_logs(body: &[u8]) -> Result<ExportLogsServiceRequest, JsonError> {
    let doc = parse_document(body)?;
    let o = obj(&doc)?;
    Ok(ExportLogsServiceRequest {
        resource_logs: o.messages("resourceLogs", |rl| {
            Ok(pl::ResourceLogs {
                resource: rl.message("resource", resource)?,
                schema_url: rl.string("schemaUrl")?,
                scope_logs: rl.messages("scopeLogs", |sl| {
                    Ok(pl::ScopeLogs {
                        scope: sl.message("scope", scope)?,
                        schema_url: sl.string("schemaUrl")?,
                        log_records: sl.messages("logRecords", log_record)?,
                    })
                })?,
            })
        })?,
    })
}

// ---------------------------------------------------------------------------------------
// metrics

fn temporality_by_name(s: &str) -> Option<i32> {
    pm::AggregationTemporality::from_str_name(s).map(|k| k as i32)
}

fn exemplar(o: Obj<'_>) -> R<pm::Exemplar> {
    Ok(pm::Exemplar {
        filtered_attributes: attributes(o, "filteredAttributes")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        span_id: o.hex("spanId")?,
        trace_id: o.hex("traceId")?,
        value: if o.get("asInt").is_some() {
            Some(pm::exemplar::Value::AsInt(o.with("asInt", i64_of)?))
        } else if o.get("asDouble").is_some() {
            Some(pm::exemplar::Value::AsDouble(o.f64("asDouble")?))
        } else {
            None
        },
    })
}

fn number_point(o: Obj<'_>) -> R<pm::NumberDataPoint> {
    Ok(pm::NumberDataPoint {
        attributes: attributes(o, "attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        exemplars: o.messages("exemplars", exemplar)?,
        flags: o.u32("flags")?,
        value: if o.get("asInt").is_some() {
            Some(pm::number_data_point::Value::AsInt(o.with("asInt", i64_of)?))
        } else if o.get("asDouble").is_some() {
            Some(pm::number_data_point::Value::AsDouble(o.f64("asDouble")?))
        } else {
            None
        },
    })
}

fn histogram_point(o: Obj<'_>) -> R<pm::HistogramDataPoint> {
    Ok(pm::HistogramDataPoint {
        attributes: attributes(o, "attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.opt_f64("sum")?,
        bucket_counts: o.list("bucketCounts", u64_of)?,
        explicit_bounds: o.list("explicitBounds", f64_of)?,
        exemplars: o.messages("exemplars", exemplar)?,
        flags: o.u32("flags")?,
        min: o.opt_f64("min")?,
        max: o.opt_f64("max")?,
    })
}

fn exp_buckets(o: Obj<'_>) -> R<pm::exponential_histogram_data_point::Buckets> {
    Ok(pm::exponential_histogram_data_point::Buckets {
        offset: o.i32("offset")?,
        bucket_counts: o.list("bucketCounts", u64_of)?,
    })
}

fn exp_histogram_point(o: Obj<'_>) -> R<pm::ExponentialHistogramDataPoint> {
    Ok(pm::ExponentialHistogramDataPoint {
        attributes: attributes(o, "attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.opt_f64("sum")?,
        scale: o.i32("scale")?,
        zero_count: o.u64("zeroCount")?,
        positive: o.message("positive", exp_buckets)?,
        negative: o.message("negative", exp_buckets)?,
        flags: o.u32("flags")?,
        exemplars: o.messages("exemplars", exemplar)?,
        min: o.opt_f64("min")?,
        max: o.opt_f64("max")?,
        zero_threshold: o.f64("zeroThreshold")?,
    })
}

fn summary_point(o: Obj<'_>) -> R<pm::SummaryDataPoint> {
    Ok(pm::SummaryDataPoint {
        attributes: attributes(o, "attributes")?,
        start_time_unix_nano: o.u64("startTimeUnixNano")?,
        time_unix_nano: o.u64("timeUnixNano")?,
        count: o.u64("count")?,
        sum: o.f64("sum")?,
        quantile_values: o.messages("quantileValues", |q| {
            Ok(pm::summary_data_point::ValueAtQuantile { quantile: q.f64("quantile")?, value: q.f64("value")? })
        })?,
        flags: o.u32("flags")?,
    })
}

fn metric(o: Obj<'_>) -> R<pm::Metric> {
    use pm::metric::Data;
    // `data` is a oneof: the first member present wins.
    let data = if let Some(g) =
        o.message("gauge", |g| Ok(pm::Gauge { data_points: g.messages("dataPoints", number_point)? }))?
    {
        Some(Data::Gauge(g))
    } else if let Some(s) = o.message("sum", |s| {
        Ok(pm::Sum {
            data_points: s.messages("dataPoints", number_point)?,
            aggregation_temporality: s.enumeration("aggregationTemporality", temporality_by_name)?,
            is_monotonic: s.boolean("isMonotonic")?,
        })
    })? {
        Some(Data::Sum(s))
    } else if let Some(h) = o.message("histogram", |h| {
        Ok(pm::Histogram {
            data_points: h.messages("dataPoints", histogram_point)?,
            aggregation_temporality: h.enumeration("aggregationTemporality", temporality_by_name)?,
        })
    })? {
        Some(Data::Histogram(h))
    } else if let Some(h) = o.message("exponentialHistogram", |h| {
        Ok(pm::ExponentialHistogram {
            data_points: h.messages("dataPoints", exp_histogram_point)?,
            aggregation_temporality: h.enumeration("aggregationTemporality", temporality_by_name)?,
        })
    })? {
        Some(Data::ExponentialHistogram(h))
    } else {
        o.message("summary", |s| Ok(pm::Summary { data_points: s.messages("dataPoints", summary_point)? }))?
            .map(Data::Summary)
    };
    Ok(pm::Metric {
        name: o.string("name")?,
        description: o.string("description")?,
        unit: o.string("unit")?,
        metadata: attributes(o, "metadata")?,
        data,
    })
}

/// Decodes an OTLP/JSON `ExportMetricsServiceRequest`.
pub fn decode_metrics(body: &[u8]) -> Result<ExportMetricsServiceRequest, JsonError> {
    let doc = parse_document(body)?;
    let o = obj(&doc)?;
    Ok(ExportMetricsServiceRequest {
        resource_metrics: o.messages("resourceMetrics", |rm| {
            Ok(pm::ResourceMetrics {
                resource: rm.message("resource", resource)?,
                schema_url: rm.string("schemaUrl")?,
                scope_metrics: rm.messages("scopeMetrics", |sm| {
                    Ok(pm::ScopeMetrics {
                        scope: sm.message("scope", scope)?,
                        schema_url: sm.string("schemaUrl")?,
                        metrics: sm.messages("metrics", metric)?,
                    })
                })?,
            })
        })?,
    })
}

// ---------------------------------------------------------------------------------------
// responses

/// The OTLP/JSON `Export<Signal>ServiceResponse`: `{}` on full success, else
/// `partialSuccess` with the rejected count (an int64, so a string) and the message.
pub fn encode_export_response(signal: Signal, rejected: u64, message: &str) -> Vec<u8> {
    if rejected == 0 && message.is_empty() {
        return b"{}".to_vec();
    }
    let field = match signal {
        Signal::Traces => "rejectedSpans",
        Signal::Logs => "rejectedLogRecords",
        Signal::Metrics => "rejectedDataPoints",
    };
    let mut partial = Map::new();
    partial.insert(field.to_owned(), Value::String(rejected.to_string()));
    partial.insert("errorMessage".to_owned(), Value::String(message.to_owned()));
    let mut doc = Map::new();
    doc.insert("partialSuccess".to_owned(), Value::Object(partial));
    serde_json::to_vec(&Value::Object(doc)).unwrap_or_default()
}

/// An OTLP/JSON `google.rpc.Status` body for a failed request.
pub fn encode_status(code: i32, message: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "code": code, "message": message })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_accepts_both_alphabets_and_optional_padding() {
        assert_eq!(base64_decode("Zm9vYg==").unwrap(), b"foob");
        assert_eq!(base64_decode("Zm9vYg").unwrap(), b"foob");
        assert_eq!(base64_decode("-_8=").unwrap(), [0xfb, 0xff]);
        assert_eq!(base64_decode("+/8").unwrap(), [0xfb, 0xff]);
        assert!(base64_decode("Z").is_none());
        assert!(base64_decode("Zm9v!").is_none());
    }

    #[test]
    fn errors_name_the_path_not_the_value() {
        let body =
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8e"},{"traceId":"secret-patient-name"}]}]}]}"#;
        let e = decode_traces(body).unwrap_err();
        assert_eq!(e.path(), "resourceSpans[0].scopeSpans[0].spans[1].traceId");
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = decode_traces(br#"{"resourceSpans": [ "patient-x" ]}"#).unwrap_err();
        assert!(!e.to_string().contains("patient"), "{e}");
        let e = decode_traces(br#"{"resourceSpans": [ patient ]}"#).unwrap_err();
        assert!(!e.to_string().contains("patient"), "{e}");
        assert!(e.to_string().contains("line 1"), "{e}");
    }
}
