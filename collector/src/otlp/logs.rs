//! Log records ⇄ `ResourceLogs`.

use super::ConversionReport;
use super::common::{
    any_from_proto, any_to_proto, attrs_from_proto, attrs_to_proto, group_by_resource, resource_from_proto,
    resource_to_proto, scope_from_proto, scope_to_proto,
};
use crate::signal::{AnyValue, LogRecord, Resource, Scope, SeverityNumber, SpanId, TraceId};
use opentelemetry_proto::tonic::logs::v1 as pl;
use std::sync::Arc;

fn record_from_proto(
    r: pl::LogRecord,
    resource: &Arc<Resource>,
    scope: &Arc<Scope>,
    report: &mut ConversionReport,
) -> Result<LogRecord, &'static str> {
    // Trace context is optional on a log record: empty (or all zeros) means none, any
    // other length is malformed.
    let trace_id = match r.trace_id.len() {
        0 => None,
        16 => TraceId::from_slice(&r.trace_id),
        _ => return Err("trace_id is not 16 bytes"),
    };
    let span_id = match r.span_id.len() {
        0 => None,
        8 => SpanId::from_slice(&r.span_id),
        _ => return Err("span_id is not 8 bytes"),
    };
    // An unknown severity keeps the record (with its severity_text) as unspecified.
    let severity_number = match u8::try_from(r.severity_number) {
        Ok(n) if n <= 24 => SeverityNumber(n),
        _ => {
            report.note("severity_number outside 0..=24 set to unspecified");
            SeverityNumber::UNSPECIFIED
        }
    };
    Ok(LogRecord {
        time_unix_nano: r.time_unix_nano,
        observed_time_unix_nano: r.observed_time_unix_nano,
        severity_number,
        severity_text: r.severity_text,
        body: r.body.map(any_from_proto).unwrap_or_default(),
        attributes: attrs_from_proto(r.attributes),
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
        trace_id,
        span_id,
        flags: r.flags,
        event_name: r.event_name,
    })
}

/// OTLP `ResourceLogs` → model log records. Records with a malformed `trace_id` /
/// `span_id` are rejected and counted in `report`; an out-of-range severity number
/// becomes unspecified (noted in `report`).
pub fn logs_from_proto(resource_logs: Vec<pl::ResourceLogs>, report: &mut ConversionReport) -> Vec<LogRecord> {
    let mut out = Vec::new();
    for rl in resource_logs {
        let resource = Arc::new(resource_from_proto(rl.resource, rl.schema_url));
        for sl in rl.scope_logs {
            let scope = Arc::new(scope_from_proto(sl.scope, sl.schema_url));
            out.reserve(sl.log_records.len());
            for r in sl.log_records {
                match record_from_proto(r, &resource, &scope, report) {
                    Ok(rec) => out.push(rec),
                    Err(reason) => report.reject(reason),
                }
            }
        }
    }
    out
}

fn record_to_proto(r: &LogRecord) -> pl::LogRecord {
    pl::LogRecord {
        time_unix_nano: r.time_unix_nano,
        observed_time_unix_nano: r.observed_time_unix_nano,
        severity_number: i32::from(r.severity_number.0),
        severity_text: r.severity_text.clone(),
        body: match r.body {
            AnyValue::Empty => None,
            ref b => Some(any_to_proto(b)),
        },
        attributes: attrs_to_proto(&r.attributes),
        dropped_attributes_count: 0,
        flags: r.flags,
        trace_id: r.trace_id.map(|t| t.0.to_vec()).unwrap_or_default(),
        span_id: r.span_id.map(|s| s.0.to_vec()).unwrap_or_default(),
        event_name: r.event_name.clone(),
    }
}

/// Model log records → OTLP `ResourceLogs`, grouped by resource and scope in order of
/// first appearance.
pub fn logs_to_proto(logs: &[LogRecord]) -> Vec<pl::ResourceLogs> {
    group_by_resource(logs, |r| (&r.resource, &r.scope))
        .into_iter()
        .map(|g| pl::ResourceLogs {
            resource: Some(resource_to_proto(g.resource)),
            schema_url: g.resource.schema_url.clone(),
            scope_logs: g
                .scopes
                .into_iter()
                .map(|(scope, recs)| pl::ScopeLogs {
                    scope: Some(scope_to_proto(scope)),
                    schema_url: scope.schema_url.clone(),
                    log_records: recs.into_iter().map(record_to_proto).collect(),
                })
                .collect(),
        })
        .collect()
}
