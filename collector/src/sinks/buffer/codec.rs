//! The payload of a disk buffer record: one [`Batch`] in `postcard` (compact, varint
//! integers, length-prefixed strings), with each distinct resource and scope stored once
//! per record and referenced by index from the log records and spans that share it.
//!
//! Layout (postcard, in this field order; format version [`FORMAT_VERSION`]):
//! `metrics: [MetricPoint]`, `logs: [LogWire]`, `spans: [SpanWire]`,
//! `resources: [Resource]`, `scopes: [Scope]`. `LogWire` / `SpanWire` are the
//! [`LogRecord`] / [`Span`] fields in declaration order with `resource` and `scope`
//! replaced by `u32` indices. The resources come last so the encoder assigns indices in
//! one pass; decoding restores shared `Arc`s, so a batch read back uses as little memory
//! as the one written.
//!
//! Invariant: adding a field to `LogRecord` or `Span` breaks the build here (the structs
//! are built and taken apart without `..`), so the format cannot silently lose data;
//! such a change must bump [`FORMAT_VERSION`].

use crate::signal::{
    AnyValue, Batch, KeyValue, LogRecord, MetricPoint, Resource, Scope, SeverityNumber, Span, SpanEvent, SpanId,
    SpanKind, SpanLink, Status, TraceId,
};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

/// The payload format version, stored in every segment header.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// Assigns indices to distinct `Arc`s (by pointer) in order of first use.
struct Index<'a, T> {
    items: Vec<&'a T>,
    by_ptr: HashMap<usize, u32>,
    last: Option<(usize, u32)>,
}

impl<'a, T> Index<'a, T> {
    fn new() -> Self {
        Index { items: Vec::new(), by_ptr: HashMap::new(), last: None }
    }

    fn get(&mut self, arc: &'a Arc<T>) -> u32 {
        let ptr = Arc::as_ptr(arc) as usize;
        if let Some((p, i)) = self.last
            && p == ptr
        {
            return i;
        }
        let next = self.items.len() as u32;
        let i = *self.by_ptr.entry(ptr).or_insert(next);
        if i == next {
            self.items.push(arc);
        }
        self.last = Some((ptr, i));
        i
    }
}

struct Ctx<'a> {
    resources: RefCell<Index<'a, Resource>>,
    scopes: RefCell<Index<'a, Scope>>,
}

#[derive(Serialize)]
struct LogRef<'a> {
    time_unix_nano: u64,
    observed_time_unix_nano: u64,
    severity_number: SeverityNumber,
    severity_text: &'a str,
    body: &'a AnyValue,
    attributes: &'a [KeyValue],
    resource: u32,
    scope: u32,
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    flags: u32,
    event_name: &'a str,
}

#[derive(Deserialize)]
struct LogWire {
    time_unix_nano: u64,
    observed_time_unix_nano: u64,
    severity_number: SeverityNumber,
    severity_text: String,
    body: AnyValue,
    attributes: Vec<KeyValue>,
    resource: u32,
    scope: u32,
    trace_id: Option<TraceId>,
    span_id: Option<SpanId>,
    flags: u32,
    event_name: String,
}

#[derive(Serialize)]
struct SpanRef<'a> {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    trace_state: &'a str,
    name: &'a str,
    kind: SpanKind,
    start_time_unix_nano: u64,
    end_time_unix_nano: u64,
    attributes: &'a [KeyValue],
    events: &'a [SpanEvent],
    links: &'a [SpanLink],
    status: &'a Status,
    flags: u32,
    dropped: [u32; 3],
    resource: u32,
    scope: u32,
}

#[derive(Deserialize)]
struct SpanWire {
    trace_id: TraceId,
    span_id: SpanId,
    parent_span_id: Option<SpanId>,
    trace_state: String,
    name: String,
    kind: SpanKind,
    start_time_unix_nano: u64,
    end_time_unix_nano: u64,
    attributes: Vec<KeyValue>,
    events: Vec<SpanEvent>,
    links: Vec<SpanLink>,
    status: Status,
    flags: u32,
    dropped: [u32; 3],
    resource: u32,
    scope: u32,
}

struct Logs<'a, 'c>(&'a [LogRecord], &'c Ctx<'a>);

impl Serialize for Logs<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for l in self.0 {
            let LogRecord {
                time_unix_nano,
                observed_time_unix_nano,
                severity_number,
                severity_text,
                body,
                attributes,
                resource,
                scope,
                trace_id,
                span_id,
                flags,
                event_name,
            } = l;
            seq.serialize_element(&LogRef {
                time_unix_nano: *time_unix_nano,
                observed_time_unix_nano: *observed_time_unix_nano,
                severity_number: *severity_number,
                severity_text,
                body,
                attributes,
                resource: self.1.resources.borrow_mut().get(resource),
                scope: self.1.scopes.borrow_mut().get(scope),
                trace_id: *trace_id,
                span_id: *span_id,
                flags: *flags,
                event_name,
            })?;
        }
        seq.end()
    }
}

struct Spans<'a, 'c>(&'a [Span], &'c Ctx<'a>);

impl Serialize for Spans<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.0.len()))?;
        for sp in self.0 {
            let Span {
                trace_id,
                span_id,
                parent_span_id,
                trace_state,
                name,
                kind,
                start_time_unix_nano,
                end_time_unix_nano,
                attributes,
                events,
                links,
                status,
                flags,
                dropped,
                resource,
                scope,
            } = sp;
            seq.serialize_element(&SpanRef {
                trace_id: *trace_id,
                span_id: *span_id,
                parent_span_id: *parent_span_id,
                trace_state,
                name,
                kind: *kind,
                start_time_unix_nano: *start_time_unix_nano,
                end_time_unix_nano: *end_time_unix_nano,
                attributes,
                events,
                links,
                status,
                flags: *flags,
                dropped: *dropped,
                resource: self.1.resources.borrow_mut().get(resource),
                scope: self.1.scopes.borrow_mut().get(scope),
            })?;
        }
        seq.end()
    }
}

struct Resources<'a, 'c>(&'c Ctx<'a>);

impl Serialize for Resources<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.resources.borrow().items.iter())
    }
}

struct Scopes<'a, 'c>(&'c Ctx<'a>);

impl Serialize for Scopes<'_, '_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.scopes.borrow().items.iter())
    }
}

#[derive(Serialize)]
struct WireRef<'a, 'c> {
    metrics: &'a [MetricPoint],
    logs: Logs<'a, 'c>,
    spans: Spans<'a, 'c>,
    resources: Resources<'a, 'c>,
    scopes: Scopes<'a, 'c>,
}

#[derive(Deserialize)]
struct Wire {
    metrics: Vec<MetricPoint>,
    logs: Vec<LogWire>,
    spans: Vec<SpanWire>,
    resources: Vec<Resource>,
    scopes: Vec<Scope>,
}

/// A postcard output that appends to a borrowed `Vec` with `push` / `extend_from_slice`
/// (postcard's own `Extend` flavour goes through iterator adapters).
struct VecFlavor<'a>(&'a mut Vec<u8>);

impl postcard::ser_flavors::Flavor for VecFlavor<'_> {
    type Output = ();

    #[inline(always)]
    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    #[inline(always)]
    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<()> {
        Ok(())
    }
}

/// Appends the encoding of `batch` to `out` (its token is not encoded).
pub(crate) fn encode(batch: &Batch, out: &mut Vec<u8>) -> Result<(), postcard::Error> {
    let ctx = Ctx { resources: RefCell::new(Index::new()), scopes: RefCell::new(Index::new()) };
    let wire = WireRef {
        metrics: &batch.metrics,
        logs: Logs(&batch.logs, &ctx),
        spans: Spans(&batch.spans, &ctx),
        resources: Resources(&ctx),
        scopes: Scopes(&ctx),
    };
    postcard::serialize_with_flavor(&wire, VecFlavor(out))
}

/// Why a payload could not be decoded (the record is then treated as corrupt).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    /// Not valid postcard for this layout.
    #[error("undecodable payload: {0}")]
    Postcard(#[from] postcard::Error),
    /// Bytes left after the batch.
    #[error("undecodable payload: {0} trailing bytes")]
    Trailing(usize),
    /// A resource or scope index out of range.
    #[error("undecodable payload: {0} index out of range")]
    Index(&'static str),
}

/// Decodes a payload written by [`encode`].
pub(crate) fn decode(bytes: &[u8]) -> Result<Batch, DecodeError> {
    let (w, rest): (Wire, &[u8]) = postcard::take_from_bytes(bytes)?;
    if !rest.is_empty() {
        return Err(DecodeError::Trailing(rest.len()));
    }
    let resources: Vec<Arc<Resource>> = w.resources.into_iter().map(Arc::new).collect();
    let scopes: Vec<Arc<Scope>> = w.scopes.into_iter().map(Arc::new).collect();
    let res = |i: u32| resources.get(i as usize).map(Arc::clone).ok_or(DecodeError::Index("resource"));
    let sco = |i: u32| scopes.get(i as usize).map(Arc::clone).ok_or(DecodeError::Index("scope"));
    let mut logs = Vec::with_capacity(w.logs.len());
    for l in w.logs {
        let LogWire {
            time_unix_nano,
            observed_time_unix_nano,
            severity_number,
            severity_text,
            body,
            attributes,
            resource,
            scope,
            trace_id,
            span_id,
            flags,
            event_name,
        } = l;
        logs.push(LogRecord {
            time_unix_nano,
            observed_time_unix_nano,
            severity_number,
            severity_text,
            body,
            attributes,
            resource: res(resource)?,
            scope: sco(scope)?,
            trace_id,
            span_id,
            flags,
            event_name,
        });
    }
    let mut spans = Vec::with_capacity(w.spans.len());
    for s in w.spans {
        let SpanWire {
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            name,
            kind,
            start_time_unix_nano,
            end_time_unix_nano,
            attributes,
            events,
            links,
            status,
            flags,
            dropped,
            resource,
            scope,
        } = s;
        spans.push(Span {
            trace_id,
            span_id,
            parent_span_id,
            trace_state,
            name,
            kind,
            start_time_unix_nano,
            end_time_unix_nano,
            attributes,
            events,
            links,
            status,
            flags,
            dropped,
            resource: res(resource)?,
            scope: sco(scope)?,
        });
    }
    Ok(Batch { metrics: w.metrics, logs, spans, ack: None })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Label, MetricKind, StatusCode};

    fn sample() -> Batch {
        let r1 =
            Arc::new(Resource { attributes: vec![KeyValue::string("service.name", "api")], schema_url: "s1".into() });
        let r2 =
            Arc::new(Resource { attributes: vec![KeyValue::string("service.name", "db")], schema_url: String::new() });
        let sc = Arc::new(Scope {
            name: "lib".into(),
            version: "1.2".into(),
            attributes: vec![KeyValue { key: "k".into(), value: AnyValue::Int(-3) }],
            schema_url: "u".into(),
        });
        let log = |r: &Arc<Resource>, body: &str| LogRecord {
            time_unix_nano: 1,
            observed_time_unix_nano: 2,
            severity_number: SeverityNumber::WARN,
            severity_text: "warn".into(),
            body: AnyValue::KvList(vec![
                KeyValue { key: "msg".into(), value: AnyValue::from(body) },
                KeyValue {
                    key: "arr".into(),
                    value: AnyValue::Array(vec![AnyValue::Bool(true), AnyValue::Double(1.5)]),
                },
                KeyValue { key: "raw".into(), value: AnyValue::Bytes(vec![0, 255]) },
                KeyValue { key: "none".into(), value: AnyValue::Empty },
            ]),
            attributes: vec![KeyValue::string("log.file.path", "/var/log/a.log")],
            resource: Arc::clone(r),
            scope: Arc::clone(&sc),
            trace_id: TraceId::from_slice(&[7; 16]),
            span_id: SpanId::from_slice(&[8; 8]),
            flags: 1,
            event_name: "ev".into(),
        };
        let span = Span {
            trace_id: TraceId([1; 16]),
            span_id: SpanId([2; 8]),
            parent_span_id: Some(SpanId([3; 8])),
            trace_state: "a=b".into(),
            name: "GET /x".into(),
            kind: SpanKind::Server,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            attributes: vec![KeyValue::string("http.method", "GET")],
            events: vec![SpanEvent {
                time_unix_nano: 15,
                name: "exception".into(),
                attributes: vec![],
                dropped_attributes_count: 1,
            }],
            links: vec![SpanLink {
                trace_id: TraceId([4; 16]),
                span_id: SpanId([5; 8]),
                trace_state: String::new(),
                attributes: vec![],
                dropped_attributes_count: 2,
                flags: 3,
            }],
            status: Status { code: StatusCode::Error, message: "boom".into() },
            flags: 1,
            dropped: [1, 2, 3],
            resource: Arc::clone(&r2),
            scope: Arc::clone(&sc),
        };
        Batch {
            metrics: vec![MetricPoint::new(
                "up",
                vec![Label::new("job", "x")],
                MetricKind::Gauge,
                f64::INFINITY,
                1_700_000_000_000,
            )],
            logs: vec![log(&r1, "one"), log(&r2, "two"), log(&r1, "three")],
            spans: vec![span],
            ack: None,
        }
    }

    #[test]
    fn round_trip_keeps_every_field_and_shares_resources() {
        let b = sample();
        let mut bytes = Vec::new();
        encode(&b, &mut bytes).unwrap();
        let back = decode(&bytes).unwrap();
        assert_eq!(back.metrics, b.metrics);
        assert_eq!(back.logs, b.logs);
        assert_eq!(back.spans, b.spans);
        assert!(Arc::ptr_eq(&back.logs[0].resource, &back.logs[2].resource));
        assert!(Arc::ptr_eq(&back.logs[1].resource, &back.spans[0].resource));
        assert!(Arc::ptr_eq(&back.logs[0].scope, &back.spans[0].scope));
        // Appends to what is already in the buffer.
        let mut again = vec![9, 9];
        encode(&b, &mut again).unwrap();
        assert_eq!(&again[..2], &[9, 9]);
        assert_eq!(&again[2..], &bytes[..]);
    }

    #[test]
    fn garbage_and_truncation_are_errors_not_panics() {
        let mut bytes = Vec::new();
        encode(&sample(), &mut bytes).unwrap();
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "truncated at {cut} decoded");
        }
        let mut extra = bytes.clone();
        extra.push(0);
        assert!(matches!(decode(&extra), Err(DecodeError::Trailing(1))));
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut b = bytes.clone();
            for _ in 0..4 {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let i = (state as usize) % b.len();
                b[i] = (state >> 32) as u8;
            }
            let _ = decode(&b);
        }
    }
}
