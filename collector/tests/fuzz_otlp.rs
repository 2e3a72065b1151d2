//! Seeded mutation fuzzing of the OTLP receive path (decode + convert, protobuf and
//! OTLP/JSON, all three signals; stable Rust, runs in every `cargo test`;
//! `collector/fuzz` has the libFuzzer target). What must hold for every input: no panic;
//! an error never echoes a value from the input (a PHI marker is planted in the corpus);
//! and anything accepted converts back to OTLP and through decode + convert again to the
//! same OTLP bytes (conversion reaches a fixed point after one round).
//!
//! `WARDEN_FUZZ_ITERS` sets the mutations per corpus entry (default 3000); the seed is
//! fixed, so a failure reproduces.

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::logs::v1 as pl;
use opentelemetry_proto::tonic::metrics::v1 as pm;
use opentelemetry_proto::tonic::resource::v1 as pr;
use opentelemetry_proto::tonic::trace::v1 as pt;
use prost::Message as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warden_collector::otlp::{self, Encoding, Signal};

const MARKER: &str = "PHI-SECRET-JANE";

fn s(v: &str) -> Option<pc::AnyValue> {
    Some(pc::AnyValue { value: Some(pc::any_value::Value::StringValue(v.into())) })
}

fn kv(k: &str, v: Option<pc::AnyValue>) -> pc::KeyValue {
    pc::KeyValue { key: k.into(), value: v }
}

fn attrs() -> Vec<pc::KeyValue> {
    use pc::any_value::Value as V;
    vec![
        kv("patient.name", s(MARKER)),
        kv("n", Some(pc::AnyValue { value: Some(V::IntValue(-42)) })),
        kv("d", Some(pc::AnyValue { value: Some(V::DoubleValue(2.5)) })),
        kv("b", Some(pc::AnyValue { value: Some(V::BoolValue(true)) })),
        kv("raw", Some(pc::AnyValue { value: Some(V::BytesValue(MARKER.as_bytes().to_vec())) })),
        kv(
            "list",
            Some(pc::AnyValue {
                value: Some(V::ArrayValue(pc::ArrayValue {
                    values: vec![
                        s(MARKER).unwrap(),
                        pc::AnyValue {
                            value: Some(V::KvlistValue(pc::KeyValueList { values: vec![kv("in", s("x"))] })),
                        },
                    ],
                })),
            }),
        ),
    ]
}

fn resource() -> Option<pr::Resource> {
    Some(pr::Resource {
        attributes: vec![kv("service.name", s("svc")), kv("service.instance.id", s("i")), kv("host.owner", s(MARKER))],
        ..Default::default()
    })
}

fn scope() -> Option<pc::InstrumentationScope> {
    Some(pc::InstrumentationScope {
        name: "lib".into(),
        version: "1".into(),
        attributes: attrs(),
        dropped_attributes_count: 0,
    })
}

fn traces() -> ExportTraceServiceRequest {
    let span = |i: u8| pt::Span {
        trace_id: vec![i; 16],
        span_id: vec![i; 8],
        parent_span_id: if i > 1 { vec![1; 8] } else { vec![] },
        trace_state: "k=v".into(),
        name: format!("GET /patients/{MARKER}"),
        kind: i32::from(i % 6),
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_500_000_000,
        attributes: attrs(),
        events: vec![pt::span::Event {
            time_unix_nano: 5,
            name: "exception".into(),
            attributes: attrs(),
            dropped_attributes_count: 1,
        }],
        links: vec![pt::span::Link {
            trace_id: vec![9; 16],
            span_id: vec![9; 8],
            attributes: attrs(),
            flags: 1,
            ..Default::default()
        }],
        status: Some(pt::Status { message: MARKER.into(), code: 2 }),
        flags: 1,
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            resource: resource(),
            scope_spans: vec![pt::ScopeSpans {
                scope: scope(),
                spans: vec![span(1), span(2), span(3)],
                schema_url: "u".into(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn logs() -> ExportLogsServiceRequest {
    let rec = |i: u8| pl::LogRecord {
        time_unix_nano: 1_700_000_000_000_000_000 + u64::from(i),
        observed_time_unix_nano: 1_700_000_000_000_000_001,
        severity_number: i32::from(i) * 4,
        severity_text: "WARN".into(),
        body: s(&format!("patient {MARKER} admitted")),
        attributes: attrs(),
        trace_id: if i == 1 { vec![3; 16] } else { vec![] },
        span_id: if i == 1 { vec![3; 8] } else { vec![] },
        event_name: "e".into(),
        ..Default::default()
    };
    ExportLogsServiceRequest {
        resource_logs: vec![pl::ResourceLogs {
            resource: resource(),
            scope_logs: vec![pl::ScopeLogs {
                scope: scope(),
                log_records: vec![rec(1), rec(2)],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

fn metrics() -> ExportMetricsServiceRequest {
    use pm::metric::Data;
    let t = 1_700_000_000_000_000_000;
    let num = |v: f64| pm::NumberDataPoint {
        attributes: vec![kv("route", s("/a")), kv("who", s(MARKER))],
        time_unix_nano: t,
        value: Some(pm::number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let metric = |name: &str, unit: &str, data: Data| pm::Metric {
        name: name.into(),
        unit: unit.into(),
        data: Some(data),
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![pm::ResourceMetrics {
            resource: resource(),
            scope_metrics: vec![pm::ScopeMetrics {
                scope: scope(),
                metrics: vec![
                    metric(
                        "requests",
                        "{request}",
                        Data::Sum(pm::Sum {
                            data_points: vec![num(3.0)],
                            aggregation_temporality: 2,
                            is_monotonic: true,
                        }),
                    ),
                    metric("queue.depth", "1", Data::Gauge(pm::Gauge { data_points: vec![num(0.5), num(1.5)] })),
                    metric(
                        "latency",
                        "ms",
                        Data::Histogram(pm::Histogram {
                            data_points: vec![pm::HistogramDataPoint {
                                attributes: vec![kv("route", s("/a"))],
                                time_unix_nano: t,
                                count: 6,
                                sum: Some(12.0),
                                bucket_counts: vec![1, 2, 3],
                                explicit_bounds: vec![1.0, 10.0],
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        }),
                    ),
                    metric(
                        "rpc",
                        "s",
                        Data::Summary(pm::Summary {
                            data_points: vec![pm::SummaryDataPoint {
                                time_unix_nano: t,
                                count: 4,
                                sum: 2.0,
                                quantile_values: vec![pm::summary_data_point::ValueAtQuantile {
                                    quantile: 0.5,
                                    value: 0.4,
                                }],
                                ..Default::default()
                            }],
                        }),
                    ),
                    metric(
                        "exp",
                        "",
                        Data::ExponentialHistogram(pm::ExponentialHistogram {
                            data_points: vec![pm::ExponentialHistogramDataPoint {
                                time_unix_nano: t,
                                count: 1,
                                ..Default::default()
                            }],
                            aggregation_temporality: 2,
                        }),
                    ),
                ],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Hand-written OTLP/JSON in the specification's style (strings for 64-bit integers).
const SPEC_JSON_TRACES: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"PHI-SECRET-JANE"}}]},
 "scopeSpans":[{"scope":{"name":"s"},"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174",
 "name":"n","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
 "attributes":[{"key":"k","value":{"intValue":"123"}},{"key":"d","value":{"doubleValue":"NaN"}}],"status":{"code":1}}]}]}]}"#;

fn corpus() -> Vec<(Signal, Encoding, Vec<u8>)> {
    vec![
        (Signal::Traces, Encoding::Protobuf, traces().encode_to_vec()),
        (Signal::Traces, Encoding::Json, serde_json::to_vec(&traces()).unwrap()),
        (Signal::Traces, Encoding::Json, SPEC_JSON_TRACES.as_bytes().to_vec()),
        (Signal::Logs, Encoding::Protobuf, logs().encode_to_vec()),
        (Signal::Logs, Encoding::Json, serde_json::to_vec(&logs()).unwrap()),
        (Signal::Metrics, Encoding::Protobuf, metrics().encode_to_vec()),
        (Signal::Metrics, Encoding::Json, serde_json::to_vec(&metrics()).unwrap()),
    ]
}

/// Bytes that are interesting to splice into JSON or protobuf.
const TOKENS: &[&[u8]] = &[
    b"null",
    b"{}",
    b"[]",
    b"\"\"",
    b"\"NaN\"",
    b"\"Infinity\"",
    b"-1",
    b"1e400",
    b"18446744073709551616",
    b"\"-5\"",
    b"9223372036854775808",
    b"1.5",
    b"true",
    b"\"SPAN_KIND_SERVER\"",
    b"\"zz\"",
    b"\"0x\"",
    b"[[[[[[",
    b"\"\\u0000\"",
    b"\xff\xff\xff\xff\x0f",
    b"\x0a\x80\x80\x80\x80\x10",
    b"\x08\x96\x01",
    b"\x12\x00",
];

fn mutate(rng: &mut StdRng, input: &[u8]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..rng.random_range(1..=2) {
        if v.is_empty() {
            v.push(rng.random());
            continue;
        }
        let i = rng.random_range(0..v.len());
        match rng.random_range(0..8) {
            0 => v[i] = rng.random(),
            1 => v[i] ^= 1 << rng.random_range(0..8),
            2 => {
                let end = (i + rng.random_range(1..=16)).min(v.len());
                v.drain(i..end);
            }
            3 => {
                let end = (i + rng.random_range(1..=32)).min(v.len());
                let chunk = v[i..end].to_vec();
                let at = rng.random_range(0..=v.len());
                v.splice(at..at, chunk);
            }
            4 if rng.random_range(0..4) == 0 => v.truncate(i),
            4 => v[i] = b'0' + rng.random_range(0..10),
            5 => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                v.splice(i..i, t.iter().copied());
            }
            6 => {
                // Replace a JSON scalar-ish run (digits, a quoted string) with a token.
                let end = v[i..].iter().position(|c| matches!(c, b',' | b'}' | b']')).map_or(v.len(), |p| i + p);
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                v.splice(i..end, t.iter().copied());
            }
            _ => {
                let b: u8 = rng.random();
                v.insert(i, b);
            }
        }
    }
    v
}

/// Decodes and converts; on success converts back and checks the fixed point.
fn check(signal: Signal, encoding: Encoding, input: &[u8]) -> bool {
    let conv = match otlp::decode_and_convert(signal, encoding, input) {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            assert!(!msg.contains(MARKER) && !msg.contains("JANE"), "error echoes input: {msg}");
            return false;
        }
    };
    assert!(conv.report.rejected <= conv.received, "rejected more than received");
    assert!(!conv.report.message().contains(MARKER));
    let first = otlp::encode_request(signal, &conv.batch);
    let again = otlp::decode_and_convert(signal, Encoding::Protobuf, &first).expect("our own encoding decodes");
    assert_eq!(again.report.rejected, 0, "our own encoding converts without rejects: {}", again.report.message());
    let second = otlp::encode_request(signal, &again.batch);
    if signal == Signal::Metrics {
        // Points → OTLP → points reaches its fixed point one round later (names gain
        // `_total` and unit suffixes once).
        let third = otlp::decode_and_convert(signal, Encoding::Protobuf, &second).unwrap();
        assert_eq!(otlp::encode_request(signal, &third.batch), second, "metrics conversion is not stable");
        return true;
    }
    assert_eq!(first, second, "conversion is not stable for {signal:?}");
    true
}

fn iterations() -> usize {
    std::env::var("WARDEN_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(3000)
}

#[test]
fn corpus_is_accepted() {
    for (signal, encoding, input) in corpus() {
        assert!(check(signal, encoding, &input), "{signal:?} {encoding:?} corpus entry rejected");
    }
}

#[test]
fn mutated_payloads_never_panic_or_leak() {
    let mut rng = StdRng::seed_from_u64(0x07_1e_u64);
    let n = iterations();
    for (signal, encoding, input) in corpus() {
        let mut accepted = 0;
        for _ in 0..n {
            let m = mutate(&mut rng, &input);
            accepted += usize::from(check(signal, encoding, &m));
            // The same bytes as the other encoding and as the other signals.
            let other = if encoding == Encoding::Json { Encoding::Protobuf } else { Encoding::Json };
            check(signal, other, &m);
            for sig in [Signal::Traces, Signal::Logs, Signal::Metrics] {
                if sig != signal {
                    check(sig, encoding, &m);
                }
            }
        }
        // The mutations must not be so destructive that nothing gets through.
        eprintln!("{signal:?} {encoding:?}: {accepted}/{n} mutants accepted");
        assert!(accepted > n / 20, "{signal:?} {encoding:?}: only {accepted}/{n} mutants accepted");
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..iterations() {
        let len = rng.random_range(0..256);
        let bytes: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        for sig in [Signal::Traces, Signal::Logs, Signal::Metrics] {
            check(sig, Encoding::Protobuf, &bytes);
            check(sig, Encoding::Json, &bytes);
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    // JSON: serde_json stops at depth 128.
    let depth = 100_000;
    let mut json = String::from(r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"k","value":"#);
    for _ in 0..depth {
        json.push_str(r#"{"arrayValue":{"values":["#);
    }
    for _ in 0..depth {
        json.push_str("]}}");
    }
    json.push_str("}]}}]}");
    assert!(otlp::decode_traces(json.as_bytes(), Encoding::Json).is_err());
    // Protobuf: prost stops at depth 100. Build nested AnyValue arrays by hand.
    let mut v = pc::AnyValue { value: Some(pc::any_value::Value::StringValue("x".into())) };
    for _ in 0..200 {
        v = pc::AnyValue { value: Some(pc::any_value::Value::ArrayValue(pc::ArrayValue { values: vec![v] })) };
    }
    let req = ExportTraceServiceRequest {
        resource_spans: vec![pt::ResourceSpans {
            resource: Some(pr::Resource { attributes: vec![kv("k", Some(v))], ..Default::default() }),
            ..Default::default()
        }],
    };
    assert!(otlp::decode_traces(&req.encode_to_vec(), Encoding::Protobuf).is_err());
}
