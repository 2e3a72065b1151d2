//! The CloudWatch Logs sink's batching ([`Batcher::plan`]): log records to the
//! PutLogEvents calls that carry them (timestamps and time-window check, group/stream
//! names from templates, message encoding, stable sort per stream, cutting by count,
//! bytes and span, call identities). Records per second (criterion's elements/s) for
//! 10,000 records of two services with a ~120-byte body, severity, three attributes and
//! trace context, in both message formats. The network side is not measured here.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::sync::Arc;
use warden_collector::signal::{AnyValue, KeyValue, LogRecord, Resource, SeverityNumber, SpanId, TraceId};
use warden_collector::sinks::cloudwatch::CloudWatchConfig;
use warden_collector::sinks::cloudwatch::batch::MessageFormat;

const RECORDS: usize = 10_000;

fn records(now_ms: i64) -> Vec<LogRecord> {
    let res = |s: &str| {
        Arc::new(Resource {
            attributes: vec![KeyValue::string("service.name", s), KeyValue::string("host.name", "node-1")],
            schema_url: String::new(),
        })
    };
    let (api, worker) = (res("platform-api"), res("worker"));
    (0..RECORDS)
        .map(|i| LogRecord {
            // Mostly ascending, with some disorder inside each 100 ms.
            time_unix_nano: ((now_ms - 60_000 + (i as i64 / 10) * 10 - (i as i64 % 7)) as u64) * 1_000_000,
            severity_number: SeverityNumber::INFO,
            severity_text: "INFO".into(),
            body: AnyValue::Str(format!(
                "GET /v1/observations?page={} status=200 duration_ms={} request handled for tenant [REDACTED:MRN]",
                i % 50,
                i % 250
            )),
            attributes: vec![
                KeyValue::string("http.route", "/v1/observations"),
                KeyValue { key: "http.status_code".into(), value: AnyValue::Int(200) },
                KeyValue::string("log.file.path", "/var/log/platform/api.log"),
            ],
            resource: Arc::clone(if i % 4 == 0 { &worker } else { &api }),
            trace_id: Some(TraceId([(i % 251) as u8 + 1; 16])),
            span_id: Some(SpanId([(i % 241) as u8 + 1; 8])),
            ..LogRecord::default()
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let logs = records(now);
    let mut group = c.benchmark_group("cloudwatch_plan");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (name, format) in [("json", MessageFormat::Json), ("text", MessageFormat::Text)] {
        let mut config = CloudWatchConfig::new("/warden/{service.name}", "{host.name}-{date}");
        config.format = format;
        let batcher = config.batcher().unwrap();
        let plan = batcher.plan(&logs, now);
        assert_eq!(plan.events(), RECORDS);
        group.bench_function(name, |b| b.iter(|| black_box(batcher.plan(black_box(&logs), now))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
