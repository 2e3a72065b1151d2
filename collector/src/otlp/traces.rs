//! Spans ⇄ `ResourceSpans`.

use super::ConversionReport;
use super::common::{
    attrs_from_proto, attrs_to_proto, group_by_resource, resource_from_proto, resource_to_proto, scope_from_proto,
    scope_to_proto,
};
use crate::signal::{Span, SpanEvent, SpanId, SpanKind, SpanLink, Status, StatusCode, TraceId};
use opentelemetry_proto::tonic::trace::v1 as pt;
use std::sync::Arc;

fn kind_from_proto(k: i32) -> SpanKind {
    match pt::span::SpanKind::try_from(k) {
        Ok(pt::span::SpanKind::Internal) => SpanKind::Internal,
        Ok(pt::span::SpanKind::Server) => SpanKind::Server,
        Ok(pt::span::SpanKind::Client) => SpanKind::Client,
        Ok(pt::span::SpanKind::Producer) => SpanKind::Producer,
        Ok(pt::span::SpanKind::Consumer) => SpanKind::Consumer,
        Ok(pt::span::SpanKind::Unspecified) | Err(_) => SpanKind::Unspecified,
    }
}

fn kind_to_proto(k: SpanKind) -> pt::span::SpanKind {
    match k {
        SpanKind::Unspecified => pt::span::SpanKind::Unspecified,
        SpanKind::Internal => pt::span::SpanKind::Internal,
        SpanKind::Server => pt::span::SpanKind::Server,
        SpanKind::Client => pt::span::SpanKind::Client,
        SpanKind::Producer => pt::span::SpanKind::Producer,
        SpanKind::Consumer => pt::span::SpanKind::Consumer,
    }
}

/// The OTLP name of a span kind (`SPAN_KIND_SERVER`, ...).
pub(crate) fn kind_name(k: SpanKind) -> &'static str {
    kind_to_proto(k).as_str_name()
}

fn status_code_to_proto(c: StatusCode) -> pt::status::StatusCode {
    match c {
        StatusCode::Unset => pt::status::StatusCode::Unset,
        StatusCode::Ok => pt::status::StatusCode::Ok,
        StatusCode::Error => pt::status::StatusCode::Error,
    }
}

/// The OTLP name of a status code (`STATUS_CODE_ERROR`, ...).
pub(crate) fn status_code_name(c: StatusCode) -> &'static str {
    status_code_to_proto(c).as_str_name()
}

fn status_from_proto(s: Option<pt::Status>) -> Status {
    let Some(s) = s else { return Status::default() };
    let code = match pt::status::StatusCode::try_from(s.code) {
        Ok(pt::status::StatusCode::Ok) => StatusCode::Ok,
        Ok(pt::status::StatusCode::Error) => StatusCode::Error,
        Ok(pt::status::StatusCode::Unset) | Err(_) => StatusCode::Unset,
    };
    Status { code, message: s.message }
}

fn trace_id(b: &[u8]) -> Result<TraceId, &'static str> {
    match TraceId::from_slice(b) {
        Some(id) => Ok(id),
        None if b.len() == 16 => Err("trace_id is all zeros"),
        None => Err("trace_id is not 16 bytes"),
    }
}

fn span_id(b: &[u8]) -> Result<SpanId, &'static str> {
    match SpanId::from_slice(b) {
        Some(id) => Ok(id),
        None if b.len() == 8 => Err("span_id is all zeros"),
        None => Err("span_id is not 8 bytes"),
    }
}

fn span_from_proto(
    s: pt::Span,
    resource: &Arc<crate::signal::Resource>,
    scope: &Arc<crate::signal::Scope>,
    report: &mut ConversionReport,
) -> Result<Span, &'static str> {
    let trace_id = trace_id(&s.trace_id)?;
    let span_id = span_id(&s.span_id)?;
    // Empty (or all-zero) parent means a root span.
    let parent_span_id = match s.parent_span_id.len() {
        0 => None,
        8 => SpanId::from_slice(&s.parent_span_id),
        _ => return Err("parent_span_id is not 8 bytes"),
    };
    let mut links = Vec::with_capacity(s.links.len());
    for l in s.links {
        match (TraceId::from_slice(&l.trace_id), SpanId::from_slice(&l.span_id)) {
            (Some(trace_id), Some(span_id)) => links.push(SpanLink {
                trace_id,
                span_id,
                trace_state: l.trace_state,
                attributes: attrs_from_proto(l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.flags,
            }),
            _ => report.note("span link with an invalid id dropped"),
        }
    }
    let events = s
        .events
        .into_iter()
        .map(|e| SpanEvent {
            time_unix_nano: e.time_unix_nano,
            name: e.name,
            attributes: attrs_from_proto(e.attributes),
            dropped_attributes_count: e.dropped_attributes_count,
        })
        .collect();
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        trace_state: s.trace_state,
        name: s.name,
        kind: kind_from_proto(s.kind),
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        attributes: attrs_from_proto(s.attributes),
        events,
        links,
        status: status_from_proto(s.status),
        flags: s.flags,
        dropped: [s.dropped_attributes_count, s.dropped_events_count, s.dropped_links_count],
        resource: Arc::clone(resource),
        scope: Arc::clone(scope),
    })
}

/// OTLP `ResourceSpans` → model spans. Spans with a missing or malformed `trace_id` /
/// `span_id` / `parent_span_id` are rejected and counted in `report`; links with invalid
/// ids are dropped from their span and noted.
pub fn spans_from_proto(resource_spans: Vec<pt::ResourceSpans>, report: &mut ConversionReport) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in resource_spans {
        let resource = Arc::new(resource_from_proto(rs.resource, rs.schema_url));
        for ss in rs.scope_spans {
            let scope = Arc::new(scope_from_proto(ss.scope, ss.schema_url));
            out.reserve(ss.spans.len());
            for s in ss.spans {
                match span_from_proto(s, &resource, &scope, report) {
                    Ok(span) => out.push(span),
                    Err(reason) => report.reject(reason),
                }
            }
        }
    }
    out
}

fn span_to_proto(s: &Span) -> pt::Span {
    pt::Span {
        trace_id: s.trace_id.0.to_vec(),
        span_id: s.span_id.0.to_vec(),
        trace_state: s.trace_state.clone(),
        parent_span_id: s.parent_span_id.map(|p| p.0.to_vec()).unwrap_or_default(),
        flags: s.flags,
        name: s.name.clone(),
        kind: kind_to_proto(s.kind) as i32,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        attributes: attrs_to_proto(&s.attributes),
        dropped_attributes_count: s.dropped[0],
        events: s
            .events
            .iter()
            .map(|e| pt::span::Event {
                time_unix_nano: e.time_unix_nano,
                name: e.name.clone(),
                attributes: attrs_to_proto(&e.attributes),
                dropped_attributes_count: e.dropped_attributes_count,
            })
            .collect(),
        dropped_events_count: s.dropped[1],
        links: s
            .links
            .iter()
            .map(|l| pt::span::Link {
                trace_id: l.trace_id.0.to_vec(),
                span_id: l.span_id.0.to_vec(),
                trace_state: l.trace_state.clone(),
                attributes: attrs_to_proto(&l.attributes),
                dropped_attributes_count: l.dropped_attributes_count,
                flags: l.flags,
            })
            .collect(),
        dropped_links_count: s.dropped[2],
        status: match s.status {
            Status { code: StatusCode::Unset, ref message } if message.is_empty() => None,
            ref st => Some(pt::Status { message: st.message.clone(), code: status_code_to_proto(st.code) as i32 }),
        },
    }
}

/// Model spans → OTLP `ResourceSpans`, one per distinct resource, one `ScopeSpans` per
/// distinct scope within it, in order of first appearance.
pub fn spans_to_proto(spans: &[Span]) -> Vec<pt::ResourceSpans> {
    group_by_resource(spans, |s| (&s.resource, &s.scope))
        .into_iter()
        .map(|g| pt::ResourceSpans {
            resource: Some(resource_to_proto(g.resource)),
            schema_url: g.resource.schema_url.clone(),
            scope_spans: g
                .scopes
                .into_iter()
                .map(|(scope, spans)| pt::ScopeSpans {
                    scope: Some(scope_to_proto(scope)),
                    schema_url: scope.schema_url.clone(),
                    spans: spans.into_iter().map(span_to_proto).collect(),
                })
                .collect(),
        })
        .collect()
}
