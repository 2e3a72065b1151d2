//! Turning log records into PutLogEvents calls: one message per record, grouped by log
//! group and stream, sorted, and cut into calls that respect every PutLogEvents limit.
//! Pure and synchronous (no I/O), so it is tested and benchmarked on its own.
//!
//! For each record, in order:
//!
//! 1. The timestamp is `time_unix_nano`, else `observed_time_unix_nano`, else now, in
//!    milliseconds. A record older than now − 14 days (or than the group's retention,
//!    when `retention_days` is shorter) or newer than now + 2 hours is dropped and
//!    counted (`too_old` / `too_new`): CloudWatch would reject it.
//! 2. Group and stream names are rendered from the templates (see [`super::template`]).
//! 3. The message is encoded ([`MessageFormat`]); one longer than `max_event_bytes` is
//!    truncated (see [`TRUNCATION_MARKER`]) and counted. One record is always one event.
//!
//! Then the events of each (group, stream) are sorted by timestamp (a stable sort: equal
//! timestamps keep the order received) and cut, in that order, into calls holding at most
//! `batch_max_events` events and `batch_max_bytes` bytes (message UTF-8 bytes + 26 per
//! event) whose first and last timestamps are less than 24 hours apart. Different
//! streams never share a call; streams appear in the order of their first record.

use super::template::Template;
use crate::signal::{AnyValue, KeyValue, LogRecord, Resource};
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

/// Bytes CloudWatch counts per event on top of its message.
pub const EVENT_OVERHEAD_BYTES: usize = 26;
/// Largest PutLogEvents request: message bytes + 26 per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// Most events in one PutLogEvents request.
pub const MAX_BATCH_EVENTS: usize = 10_000;
/// Largest single event message: "1 MB" per event (the current API reference), which with
/// its 26 bytes of overhead must also fit in one request.
pub const MAX_EVENT_BYTES: usize = MAX_BATCH_BYTES - EVENT_OVERHEAD_BYTES;
/// The largest message under the older 256 KiB per-event limit, for endpoints that still
/// enforce it (set `max_event_bytes` to this).
pub const LEGACY_MAX_EVENT_BYTES: usize = 256 * 1024 - EVENT_OVERHEAD_BYTES;
/// Longest time span between the first and last event of one request (exclusive).
pub const MAX_SPAN_MS: i64 = 24 * 3_600_000;
/// Oldest accepted event: now − 14 days.
pub const MAX_AGE_MS: i64 = 14 * 86_400_000;
/// Newest accepted event: now + 2 hours.
pub const MAX_FUTURE_MS: i64 = 2 * 3_600_000;
/// Appended to a message cut to `max_event_bytes`; the cut falls on a UTF-8 character
/// boundary and the message with the marker fits the limit. A cut JSON message is no
/// longer valid JSON.
pub const TRUNCATION_MARKER: &str = "...[TRUNCATED]";

/// How a record becomes a CloudWatch event message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MessageFormat {
    /// One JSON object per record (the default):
    ///
    /// ```text
    /// {"severity":"INFO","severity_number":9,"body":<value>,"attributes":{..},
    ///  "trace_id":"<32 hex>","span_id":"<16 hex>","event_name":"..","resource":{..}}
    /// ```
    ///
    /// `body` is always present (`null` when empty); the other keys only when they hold
    /// something, and `resource` only with `include_resource: true`. Attribute lists
    /// are objects keyed by attribute name in the order received; values map naturally
    /// (bytes as base64, NaN/±Inf as the strings `"NaN"`, `"+Inf"`, `"-Inf"`). The event
    /// timestamp is CloudWatch's own field, so the record's time is not repeated.
    #[default]
    Json,
    /// The body itself when it is a non-empty string (a plain log line); any other
    /// record (a structured or empty body) is written as in `json`.
    Text,
}

/// One event of a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Milliseconds since the epoch.
    pub timestamp_ms: i64,
    /// The message.
    pub message: String,
}

/// One PutLogEvents request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// Log group name.
    pub group: Arc<str>,
    /// Log stream name.
    pub stream: Arc<str>,
    /// Events, in chronological order.
    pub events: Vec<Event>,
    /// Message bytes + 26 per event.
    pub bytes: usize,
    /// Identity of this call's content and position in its plan, to recognise it when
    /// the same batch is delivered again after a failure.
    pub id: u64,
}

/// The calls for one batch and what was left out of them.
#[derive(Debug, Default)]
pub struct Plan {
    /// The requests to make, in order.
    pub calls: Vec<Call>,
    /// Records dropped as older than the accepted window.
    pub too_old: u64,
    /// Records dropped as newer than the accepted window.
    pub too_new: u64,
    /// Messages cut to `max_event_bytes`.
    pub truncated: u64,
}

impl Plan {
    /// A hash of every call's identity: equal for two plans of the same batch.
    pub fn fingerprint(&self) -> u64 {
        let mut h = content_hasher();
        self.calls.len().hash(&mut h);
        for c in &self.calls {
            c.id.hash(&mut h);
        }
        (self.too_old, self.too_new).hash(&mut h);
        h.finish()
    }

    /// Events in all calls.
    pub fn events(&self) -> usize {
        self.calls.iter().map(|c| c.events.len()).sum()
    }
}

/// Limits and formatting for [`Batcher::plan`]. Built from a validated config.
#[derive(Debug, Clone)]
pub struct Batcher {
    /// Log group template.
    pub(super) group: Template,
    /// Log stream template.
    pub(super) stream: Template,
    /// Value of `{hostname}`.
    pub(super) hostname: String,
    /// Message format.
    pub(super) format: MessageFormat,
    /// Whether JSON messages carry the resource attributes.
    pub(super) include_resource: bool,
    /// Longest message, bytes.
    pub(super) max_event_bytes: usize,
    /// Largest call, bytes incl. 26 per event.
    pub(super) max_batch_bytes: usize,
    /// Most events per call.
    pub(super) max_batch_events: usize,
    /// Oldest accepted event, ms before now.
    pub(super) max_age_ms: i64,
}

/// The events of one (group, stream) while a plan is built.
struct StreamEvents {
    group: Arc<str>,
    stream: Arc<str>,
    events: Vec<Event>,
}

impl Batcher {
    /// Plans the PutLogEvents calls for `logs` at wall-clock time `now_ms` (see the
    /// module docs).
    pub fn plan(&self, logs: &[LogRecord], now_ms: i64) -> Plan {
        let mut plan = Plan::default();
        let oldest = now_ms.saturating_sub(self.max_age_ms);
        let newest = now_ms.saturating_add(MAX_FUTURE_MS);
        let by_day = self.group.uses_date() || self.stream.uses_date();
        // (resource address, day) → index in `streams`. The batch keeps every resource
        // alive while this runs, so an address cannot be reused for another resource.
        let mut index: foldhash::HashMap<(usize, i64), usize> = foldhash::HashMap::default();
        // Rendered (group, stream) → index, so two resources naming the same stream
        // share its events (and its order).
        let mut by_name: foldhash::HashMap<(Arc<str>, Arc<str>), usize> = foldhash::HashMap::default();
        let mut streams: Vec<StreamEvents> = Vec::new();
        let mut size_hint = 256;
        for rec in logs {
            let ts = timestamp_ms(rec, now_ms);
            if ts < oldest {
                plan.too_old += 1;
                continue;
            }
            if ts > newest {
                plan.too_new += 1;
                continue;
            }
            let day = if by_day { ts.div_euclid(86_400_000) } else { 0 };
            let key = (Arc::as_ptr(&rec.resource) as usize, day);
            let slot = match index.get(&key) {
                Some(i) => *i,
                None => {
                    let g: Arc<str> = self.group.render(&rec.resource, ts, &self.hostname).into();
                    let s: Arc<str> = self.stream.render(&rec.resource, ts, &self.hostname).into();
                    let i = *by_name.entry((Arc::clone(&g), Arc::clone(&s))).or_insert_with(|| {
                        streams.push(StreamEvents { group: g, stream: s, events: Vec::new() });
                        streams.len() - 1
                    });
                    index.insert(key, i);
                    i
                }
            };
            let mut message = self.encode(rec, &mut size_hint);
            if message.len() > self.max_event_bytes {
                truncate_message(&mut message, self.max_event_bytes);
                plan.truncated += 1;
            }
            streams[slot].events.push(Event { timestamp_ms: ts, message });
        }
        for mut s in streams {
            s.events.sort_by_key(|e| e.timestamp_ms);
            self.cut(&mut plan, s);
        }
        plan
    }

    /// Cuts one stream's sorted events into calls.
    fn cut(&self, plan: &mut Plan, s: StreamEvents) {
        let mut current: Vec<Event> = Vec::new();
        let mut bytes = 0usize;
        let mut first_ts = 0i64;
        for e in s.events {
            let size = e.message.len() + EVENT_OVERHEAD_BYTES;
            if !current.is_empty()
                && (current.len() >= self.max_batch_events
                    || bytes + size > self.max_batch_bytes
                    || e.timestamp_ms - first_ts >= MAX_SPAN_MS)
            {
                push_call(plan, &s.group, &s.stream, std::mem::take(&mut current), bytes);
                bytes = 0;
            }
            if current.is_empty() {
                first_ts = e.timestamp_ms;
            }
            bytes += size;
            current.push(e);
        }
        if !current.is_empty() {
            push_call(plan, &s.group, &s.stream, current, bytes);
        }
    }

    /// `rec`'s message. `size_hint` carries the previous JSON message's length, so the
    /// buffer is usually allocated once.
    fn encode(&self, rec: &LogRecord, size_hint: &mut usize) -> String {
        if self.format == MessageFormat::Text
            && let AnyValue::Str(s) = &rec.body
            && !s.is_empty()
        {
            return s.clone();
        }
        let mut out = Vec::with_capacity(*size_hint + 64);
        // Serialising into a Vec cannot fail: every map key is a string.
        let _ = serde_json::to_writer(&mut out, &JsonEvent { rec, include_resource: self.include_resource });
        *size_hint = out.len();
        // serde_json writes only UTF-8; the fallback is never taken.
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
    }
}

fn push_call(plan: &mut Plan, group: &Arc<str>, stream: &Arc<str>, events: Vec<Event>, bytes: usize) {
    let mut h = content_hasher();
    plan.calls.len().hash(&mut h);
    group.hash(&mut h);
    stream.hash(&mut h);
    for e in &events {
        e.timestamp_ms.hash(&mut h);
        e.message.hash(&mut h);
    }
    plan.calls.push(Call { group: Arc::clone(group), stream: Arc::clone(stream), events, bytes, id: h.finish() });
}

/// The hasher for call identities: a fixed-seed 64-bit quality hash, so the same batch
/// hashes the same across attempts.
fn content_hasher() -> impl Hasher {
    foldhash::quality::FixedState::default().build_hasher()
}

/// The event timestamp of `rec` in ms (see the module docs).
pub(super) fn timestamp_ms(rec: &LogRecord, now_ms: i64) -> i64 {
    let ns = if rec.time_unix_nano != 0 { rec.time_unix_nano } else { rec.observed_time_unix_nano };
    if ns == 0 { now_ms } else { i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX) }
}

/// Cuts `message` to at most `max` bytes including [`TRUNCATION_MARKER`], on a character
/// boundary.
pub(super) fn truncate_message(message: &mut String, max: usize) {
    let mut cut = max.saturating_sub(TRUNCATION_MARKER.len());
    while cut > 0 && !message.is_char_boundary(cut) {
        cut -= 1;
    }
    message.truncate(cut);
    message.push_str(TRUNCATION_MARKER);
}

/// A log record as the JSON message object.
struct JsonEvent<'a> {
    rec: &'a LogRecord,
    include_resource: bool,
}

impl Serialize for JsonEvent<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let r = self.rec;
        let mut m = s.serialize_map(None)?;
        if !r.severity_text.is_empty() {
            m.serialize_entry("severity", &r.severity_text)?;
        }
        if r.severity_number.0 != 0 {
            m.serialize_entry("severity_number", &r.severity_number.0)?;
        }
        m.serialize_entry("body", &Json(&r.body))?;
        if !r.attributes.is_empty() {
            m.serialize_entry("attributes", &JsonAttrs(&r.attributes))?;
        }
        if let Some(t) = &r.trace_id {
            let mut buf = [0u8; 32];
            m.serialize_entry("trace_id", hex(&t.0, &mut buf))?;
        }
        if let Some(sp) = &r.span_id {
            let mut buf = [0u8; 16];
            m.serialize_entry("span_id", hex(&sp.0, &mut buf))?;
        }
        if !r.event_name.is_empty() {
            m.serialize_entry("event_name", &r.event_name)?;
        }
        if self.include_resource {
            let res: &Resource = &r.resource;
            m.serialize_entry("resource", &JsonAttrs(&res.attributes))?;
        }
        m.end()
    }
}

/// `bytes` as lowercase hex in `out` (twice as long).
fn hex<'a>(bytes: &[u8], out: &'a mut [u8]) -> &'a str {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 15)];
    }
    std::str::from_utf8(out).unwrap_or("")
}

/// An [`AnyValue`] as JSON.
struct Json<'a>(&'a AnyValue);

impl Serialize for Json<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            AnyValue::Empty => s.serialize_unit(),
            AnyValue::Str(v) => s.serialize_str(v),
            AnyValue::Bool(v) => s.serialize_bool(*v),
            AnyValue::Int(v) => s.serialize_i64(*v),
            AnyValue::Double(v) if v.is_nan() => s.serialize_str("NaN"),
            AnyValue::Double(v) if v.is_infinite() => s.serialize_str(if *v > 0.0 { "+Inf" } else { "-Inf" }),
            AnyValue::Double(v) => s.serialize_f64(*v),
            AnyValue::Bytes(b) => {
                use base64::Engine as _;
                s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(b))
            }
            AnyValue::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for i in items {
                    seq.serialize_element(&Json(i))?;
                }
                seq.end()
            }
            AnyValue::KvList(kvs) => JsonAttrs(kvs).serialize(s),
        }
    }
}

/// An attribute list as a JSON object (a repeated key is written twice, as received).
struct JsonAttrs<'a>(&'a [KeyValue]);

impl Serialize for JsonAttrs<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for kv in self.0 {
            m.serialize_entry(&kv.key, &Json(&kv.value))?;
        }
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::super::template::NameKind;
    use super::*;
    use crate::signal::{SeverityNumber, SpanId, TraceId};

    const NOW: i64 = 1_714_557_600_000; // 2024-05-01T10:00:00Z

    fn batcher() -> Batcher {
        Batcher {
            group: Template::parse("g", "/w/{service.name}", NameKind::Group).unwrap(),
            stream: Template::parse("s", "{host.name}-{date}", NameKind::Stream).unwrap(),
            hostname: "h".into(),
            format: MessageFormat::Json,
            include_resource: false,
            max_event_bytes: MAX_EVENT_BYTES,
            max_batch_bytes: MAX_BATCH_BYTES,
            max_batch_events: MAX_BATCH_EVENTS,
            max_age_ms: MAX_AGE_MS,
        }
    }

    fn resource(service: &str) -> Arc<Resource> {
        Arc::new(Resource {
            attributes: vec![KeyValue::string("service.name", service), KeyValue::string("host.name", "n1")],
            schema_url: String::new(),
        })
    }

    fn rec(res: &Arc<Resource>, ts_ms: i64, body: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: (ts_ms as u64) * 1_000_000,
            body: AnyValue::Str(body.into()),
            resource: Arc::clone(res),
            ..LogRecord::default()
        }
    }

    #[test]
    fn json_message_shape() {
        let mut r = rec(&resource("api"), NOW, "hello \"x\"");
        r.severity_text = "INFO".into();
        r.severity_number = SeverityNumber::INFO;
        r.attributes = vec![
            KeyValue::string("k", "v"),
            KeyValue { key: "n".into(), value: AnyValue::Int(-3) },
            KeyValue { key: "f".into(), value: AnyValue::Double(f64::NAN) },
            KeyValue { key: "b".into(), value: AnyValue::Bytes(vec![1, 2, 3]) },
            KeyValue { key: "l".into(), value: AnyValue::Array(vec![AnyValue::Bool(true), AnyValue::Empty]) },
        ];
        r.trace_id = Some(TraceId([0xab; 16]));
        r.span_id = Some(SpanId([0x01; 8]));
        let mut b = batcher();
        let msg = |b: &Batcher, r: &LogRecord| b.plan(std::slice::from_ref(r), NOW).calls[0].events[0].message.clone();
        assert_eq!(
            msg(&b, &r),
            r#"{"severity":"INFO","severity_number":9,"body":"hello \"x\"","attributes":{"k":"v","n":-3,"f":"NaN","b":"AQID","l":[true,null]},"trace_id":"abababababababababababababababab","span_id":"0101010101010101"}"#
        );
        b.include_resource = true;
        let plain = rec(&resource("api"), NOW, "x");
        assert_eq!(msg(&b, &plain), r#"{"body":"x","resource":{"service.name":"api","host.name":"n1"}}"#);
        b.format = MessageFormat::Text;
        assert_eq!(msg(&b, &r), "hello \"x\"");
        let empty = rec(&resource("api"), NOW, "");
        assert!(msg(&b, &empty).starts_with(r#"{"body":"""#));
        let mut structured = rec(&resource("api"), NOW, "");
        structured.body = AnyValue::KvList(vec![KeyValue::string("a", "b")]);
        b.include_resource = false;
        assert_eq!(msg(&b, &structured), r#"{"body":{"a":"b"}}"#);
    }

    #[test]
    fn groups_by_stream_sorts_and_drops_out_of_window() {
        let (a, b) = (resource("a"), resource("b"));
        let logs = vec![
            rec(&a, NOW - 10, "a2"),
            rec(&b, NOW, "b1"),
            rec(&a, NOW - 20, "a1"),
            rec(&a, NOW - 10, "a3"),
            rec(&a, NOW - MAX_AGE_MS - 1, "old"),
            rec(&a, NOW + MAX_FUTURE_MS + 1, "new"),
            rec(&a, NOW + MAX_FUTURE_MS, "edge-new"),
            rec(&a, NOW - MAX_AGE_MS, "edge-old"),
        ];
        let mut bt = batcher();
        bt.format = MessageFormat::Text;
        let p = bt.plan(&logs, NOW);
        assert_eq!((p.too_old, p.too_new, p.truncated), (1, 1, 0));
        let got: Vec<(&str, &str, Vec<&str>)> = p
            .calls
            .iter()
            .map(|c| (&*c.group, &*c.stream, c.events.iter().map(|e| e.message.as_str()).collect()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("/w/a", "n1-2024-05-01", vec!["a1", "a2", "a3", "edge-new"]),
                ("/w/b", "n1-2024-05-01", vec!["b1"]),
                ("/w/a", "n1-2024-04-17", vec!["edge-old"]),
            ]
        );
        // The same batch plans identically; a different one does not.
        assert_eq!(bt.plan(&logs, NOW).fingerprint(), p.fingerprint());
        assert_ne!(bt.plan(&logs[..3], NOW).fingerprint(), p.fingerprint());
    }

    #[test]
    fn two_resources_naming_one_stream_share_it() {
        let (a1, a2) = (resource("a"), resource("a"));
        let logs = vec![rec(&a1, NOW, "1"), rec(&a2, NOW - 1, "0")];
        let p = batcher().plan(&logs, NOW);
        assert_eq!(p.calls.len(), 1);
        assert_eq!(p.calls[0].events[0].timestamp_ms, NOW - 1);
    }

    #[test]
    fn calls_respect_count_bytes_and_span() {
        let a = resource("a");
        let mut bt = batcher();
        bt.format = MessageFormat::Text;
        bt.stream = Template::parse("s", "{host.name}", NameKind::Stream).unwrap();
        // Count.
        let logs: Vec<_> = (0..25_001).map(|i| rec(&a, NOW - 25_001 + i, "x")).collect();
        let p = bt.plan(&logs, NOW);
        assert_eq!(p.calls.iter().map(|c| c.events.len()).collect::<Vec<_>>(), vec![10_000, 10_000, 5_001]);
        // Bytes: 100 events of 100,000 bytes → 10 per call (10 × 100,026 ≤ 1 MiB < 11 ×).
        let big = "y".repeat(100_000);
        let logs: Vec<_> = (0..100).map(|i| rec(&a, NOW - 100 + i, &big)).collect();
        let p = bt.plan(&logs, NOW);
        assert!(p.calls.iter().all(|c| c.bytes <= MAX_BATCH_BYTES && c.events.len() == 10), "{:?}", p.calls.len());
        assert_eq!(p.calls.len(), 10);
        // Span: events 0, 23h59m59.999s and 24h later.
        let logs = vec![
            rec(&a, NOW - MAX_SPAN_MS - 1000, "1"),
            rec(&a, NOW - 1001, "2"),
            rec(&a, NOW - 1000, "3"),
            rec(&a, NOW, "4"),
        ];
        let p = bt.plan(&logs, NOW);
        assert_eq!(p.calls.iter().map(|c| c.events.len()).collect::<Vec<_>>(), vec![2, 2]);
        for c in &p.calls {
            let span = c.events.last().unwrap().timestamp_ms - c.events[0].timestamp_ms;
            assert!(span < MAX_SPAN_MS);
            assert_eq!(c.bytes, c.events.iter().map(|e| e.message.len() + 26).sum::<usize>());
        }
    }

    #[test]
    fn oversized_messages_are_truncated_on_a_char_boundary() {
        let a = resource("a");
        let mut bt = batcher();
        bt.format = MessageFormat::Text;
        bt.max_event_bytes = 1000;
        let body = "é".repeat(700); // 1400 bytes
        let p = bt.plan(&[rec(&a, NOW, &body), rec(&a, NOW, "short")], NOW);
        assert_eq!(p.truncated, 1);
        let m = &p.calls[0].events[0].message;
        assert!(m.len() <= 1000 && m.len() >= 998, "{}", m.len());
        assert!(m.ends_with(TRUNCATION_MARKER));
        assert_eq!(p.calls[0].events[1].message, "short");
        // At the full limit, a truncated event still fits one request by itself.
        bt.max_event_bytes = MAX_EVENT_BYTES;
        let huge = "z".repeat(3 * MAX_BATCH_BYTES);
        let p = bt.plan(&[rec(&a, NOW, &huge), rec(&a, NOW, &huge)], NOW);
        assert_eq!((p.truncated, p.calls.len()), (2, 2));
        assert!(p.calls.iter().all(|c| c.bytes == MAX_BATCH_BYTES));
    }

    #[test]
    fn missing_timestamps_fall_back_to_observed_then_now() {
        let a = resource("a");
        let mut r = rec(&a, 0, "x");
        assert_eq!(timestamp_ms(&r, NOW), NOW);
        r.observed_time_unix_nano = 5_000_000;
        assert_eq!(timestamp_ms(&r, NOW), 5);
        r.time_unix_nano = 7_000_000;
        assert_eq!(timestamp_ms(&r, NOW), 7);
    }
}
