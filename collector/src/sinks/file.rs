//! The file sink: every item it receives as one JSON object per line, appended to a local
//! file that is rotated by size. The agent's local default and a test aid (a test reads
//! the file back and knows exactly what arrived).
//!
//! # Format
//!
//! One line per metric point, log record or span, UTF-8, `\n`-terminated, no pretty
//! printing. Keys are written in the order below. Optional keys are left out when they
//! hold nothing (no trace context, an empty event name, flags of 0, ...); every other key
//! is always present.
//!
//! ```text
//! {"signal":"log","time_unix_nano":1714557600000000000,"observed_time_unix_nano":..,
//!  "severity_number":9,"severity_text":"INFO","body":<value>,"attributes":{..},
//!  "resource":{..},"scope":{"name":"warden.source.file"}
//!  [,"trace_id":"<32 hex>"][,"span_id":"<16 hex>"][,"flags":1][,"event_name":".."]}
//! {"signal":"metric","name":"http_requests_total","labels":{"code":"200"},"kind":"counter",
//!  "value":1027,"timestamp_ms":1714557600000}
//! {"signal":"span","trace_id":"..","span_id":"..",["parent_span_id":"..",]["trace_state":"..",]
//!  "name":"GET /v1/patients/{id}","kind":"server","start_time_unix_nano":..,
//!  "end_time_unix_nano":..,"attributes":{..},["events":[{"time_unix_nano":..,"name":"..",
//!  "attributes":{..}}],]["links":[{"trace_id":"..","span_id":"..",["trace_state":"..",]
//!  "attributes":{..}}],]"status":{"code":"unset|ok|error"[,"message":".."]},
//!  ["flags":..,]["dropped":{"attributes":..,"events":..,"links":..},]"resource":{..},"scope":{..}}
//! ```
//!
//! - Attribute lists (`attributes`, `resource`, scope attributes, `labels`) are JSON
//!   objects keyed by attribute name, in the order received; OTLP allows a key twice, and
//!   so does this output (most JSON readers keep the last).
//! - [`AnyValue`]s map naturally: string, bool, integer, float, `null` for an empty
//!   value, arrays, and objects for key/value lists; bytes as standard base64 strings.
//!   A float that is NaN or infinite (metric values included) is written as the string
//!   `"NaN"`, `"+Inf"` or `"-Inf"`, as Prometheus' JSON API writes them.
//! - Timestamps are integers (nanoseconds, or milliseconds for metrics). They exceed
//!   2^53: JavaScript-based readers lose precision in the last digits.
//! - `kind` is `counter`, `gauge`, `histogram`, `summary` or `untyped` for metrics, and
//!   `unspecified`, `internal`, `server`, `client`, `producer` or `consumer` for spans.
//! - `scope` holds `name`, and `version` and `attributes` when non-empty. Schema URLs
//!   are not written.
//!
//! # Delivery and rotation
//!
//! A batch is serialised into one reused buffer (no intermediate `serde_json::Value`),
//! then appended with `write` calls that each end on a line boundary, on the blocking
//! pool. "Delivered" means written to the operating system (the page cache); with
//! `fsync: true` the file's data is also synced to disk before `deliver` returns, so the
//! batch survives a power loss, at the cost of one `fdatasync` per batch.
//!
//! When the next line would take the file past `max_bytes`, the file is rotated: `path.N`
//! is deleted (`N = max_files`), `path.(N-1)` becomes `path.N`, ..., `path` becomes
//! `path.1`, and a new `path` is started (with `max_files: 0` the full file is deleted).
//! A single line larger than `max_bytes` still gets a file of its own. A path that is
//! not a regular file (`/dev/null`, a FIFO) is written as it is and never rotated,
//! truncated or repaired.
//!
//! Before each batch the sink checks that `path` still names the file it has open; when
//! it was moved or deleted (by an operator, or `logrotate`) a new one is created rather
//! than writing on into a file nobody reads. Errors (a full disk, a missing permission, a
//! parent that is not a directory) are [`DeliveryError::Retryable`] and name the path
//! and the operation, never data; the runner retries the whole batch. A write that
//! failed halfway is cut back to the last complete line, and a file found at start-up
//! (or on reopen) ending in a partial line (an agent killed mid-write) is cut back the
//! same way, so every line a reader sees is a complete JSON object. A batch that failed
//! after part of it reached the file (a rotation in the middle failed) is written again
//! in full: at most one batch is duplicated per failure. The file belongs to the sink:
//! nothing else should write to it.
//!
//! The file is opened lazily, at the first batch, so a path that is briefly unusable at
//! start-up (a volume not yet mounted) delays delivery rather than failing the agent.
//! Writes are not cancellable: a file system that hangs holds up this sink's runner
//! (and, through its buffer, backpressure) but no other sink.

use super::{Delivered, DeliveryError, Sink};
use crate::redact::Redacted;
use crate::signal::{
    AnyValue, Batch, KeyValue, LogRecord, MetricKind, MetricPoint, Resource, Scope, Span, SpanId, SpanKind, StatusCode,
    TraceId,
};
use serde::Deserialize;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The default rotation size: 100 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 100 << 20;
/// The default number of rotated files kept.
pub const DEFAULT_MAX_FILES: u32 = 5;
/// Largest `max_files` accepted.
pub const MAX_FILES_LIMIT: u32 = 1000;
/// Smallest `max_bytes` accepted (4 KiB).
pub const MIN_MAX_BYTES: u64 = 4096;

/// Bytes of serialised lines handed to one `write` call (always whole lines).
const WRITE_CHUNK: usize = 1 << 20;
/// The serialisation buffer is shrunk back to this after a batch that grew it further.
const KEEP_BUF: usize = 8 << 20;

/// Configuration of a file sink.
///
/// ```yaml
/// path: /var/log/warden/signals.jsonl
/// max_bytes: 104857600   # rotate at 100 MiB (default)
/// max_files: 5           # rotated files kept (default)
/// fsync: false           # fdatasync after every batch (default false)
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSinkConfig {
    /// The file written (absolute path). Rotated files are `path.1` (newest) to
    /// `path.<max_files>`. Its directory is created if missing.
    pub path: PathBuf,
    /// Rotate when the next line would take the file past this many bytes (default
    /// 100 MiB, at least 4096).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// Rotated files kept beside the current one (default 5; 0 deletes a full file).
    #[serde(default = "default_max_files")]
    pub max_files: u32,
    /// Sync the file's data to disk after every batch (default false: a batch counts as
    /// delivered once it is written to the operating system).
    #[serde(default)]
    pub fsync: bool,
}

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}

fn default_max_files() -> u32 {
    DEFAULT_MAX_FILES
}

impl FileSinkConfig {
    /// A config writing `path` with every other field at its default.
    pub fn new(path: impl Into<PathBuf>) -> FileSinkConfig {
        FileSinkConfig { path: path.into(), max_bytes: DEFAULT_MAX_BYTES, max_files: DEFAULT_MAX_FILES, fsync: false }
    }

    /// Every problem with this config, each message starting with the field at fault.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if !self.path.is_absolute() {
            errors.push("path: must be an absolute path".to_string());
        } else if self.path.file_name().is_none() {
            errors.push("path: must name a file".to_string());
        }
        if self.max_bytes < MIN_MAX_BYTES {
            errors.push(format!("max_bytes: must be at least {MIN_MAX_BYTES}"));
        }
        if self.max_files > MAX_FILES_LIMIT {
            errors.push(format!("max_files: must be at most {MAX_FILES_LIMIT}"));
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// Why a [`FileSink`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileSinkError {
    /// The config failed validation; every problem with its field.
    #[error("invalid file sink config: {}", .0.join("; "))]
    Invalid(Vec<String>),
}

/// The file sink; see the module docs.
#[derive(Debug)]
pub struct FileSink {
    /// Serialised lines of the batch being delivered (reused across batches).
    buf: Vec<u8>,
    /// Offset in `buf` just past each line's `\n`.
    ends: Vec<usize>,
    /// The file side, moved to the blocking pool for each write. `None` only while a
    /// write is in flight (or after a panic in one, which then reopens).
    state: Option<FileState>,
    /// Serialised resource and scope of the previous item, reused while the next item
    /// shares the same `Arc` (a file tail stamps one resource on every line).
    resource_cache: Option<(Arc<Resource>, Vec<u8>)>,
    scope_cache: Option<(Arc<Scope>, Vec<u8>)>,
    config: FileSinkConfig,
}

impl FileSink {
    /// A sink writing `config.path`. Validates the config only: the file is opened at
    /// the first batch (see the module docs).
    pub fn new(config: FileSinkConfig) -> Result<FileSink, FileSinkError> {
        config.validate().map_err(FileSinkError::Invalid)?;
        Ok(FileSink {
            buf: Vec::with_capacity(WRITE_CHUNK),
            ends: Vec::new(),
            state: Some(FileState::new(&config)),
            resource_cache: None,
            scope_cache: None,
            config,
        })
    }

    /// The path written.
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// Serialises every item of `batch` into `self.buf`, one line each.
    fn encode(&mut self, batch: &Batch) {
        self.buf.clear();
        self.ends.clear();
        for m in &batch.metrics {
            encode_metric(&mut self.buf, m);
            self.end_line();
        }
        for r in &batch.logs {
            encode_log(&mut self.buf, r, &mut self.resource_cache, &mut self.scope_cache);
            self.end_line();
        }
        for s in &batch.spans {
            encode_span(&mut self.buf, s, &mut self.resource_cache, &mut self.scope_cache);
            self.end_line();
        }
    }

    fn end_line(&mut self) {
        self.buf.push(b'\n');
        self.ends.push(self.buf.len());
    }
}

impl Sink for FileSink {
    async fn deliver(&mut self, batch: &Redacted<Batch>) -> Result<Delivered, DeliveryError> {
        let batch = batch.get();
        if batch.is_empty() {
            return Ok(Delivered::default());
        }
        self.encode(batch);
        let items = self.ends.len() as u64;
        let mut state = self.state.take().unwrap_or_else(|| FileState::new(&self.config));
        let buf = std::mem::take(&mut self.buf);
        let ends = std::mem::take(&mut self.ends);
        let joined = tokio::task::spawn_blocking(move || {
            let result = state.write_lines(&buf, &ends);
            (state, buf, ends, result)
        })
        .await;
        let (state, mut buf, ends, result) = match joined {
            Ok(parts) => parts,
            Err(e) => {
                // The write panicked (or the runtime is shutting down): the state is
                // gone, a fresh one reopens the file and repairs its tail.
                return Err(DeliveryError::retryable(format!(
                    "file sink {}: write task failed: {e}",
                    self.config.path.display()
                )));
            }
        };
        self.state = Some(state);
        if buf.capacity() > KEEP_BUF {
            buf = Vec::with_capacity(WRITE_CHUNK);
        }
        self.buf = buf;
        self.ends = ends;
        // Drop cached encodings so an Arc is not kept alive (and its memory held) by
        // the sink between batches.
        self.resource_cache = None;
        self.scope_cache = None;
        result.map(|()| Delivered { accepted: items, rejected: 0 })
    }

    async fn close(&mut self) {
        if let Some(mut state) = self.state.take() {
            // Nothing is buffered between batches; only the optional sync is left.
            let _ = tokio::task::spawn_blocking(move || state.close()).await;
        }
    }
}

/// The open file and how to rotate it; lives on the blocking pool during a write.
#[derive(Debug)]
struct FileState {
    path: PathBuf,
    max_bytes: u64,
    max_files: u32,
    fsync: bool,
    open: Option<OpenFile>,
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    /// Bytes in the file (all complete lines).
    size: u64,
    /// A regular file. Anything else (`/dev/null`, a FIFO, a terminal) is written as it
    /// is: never rotated, truncated or repaired.
    regular: bool,
}

impl FileState {
    fn new(config: &FileSinkConfig) -> FileState {
        FileState {
            path: config.path.clone(),
            max_bytes: config.max_bytes,
            max_files: config.max_files,
            fsync: config.fsync,
            open: None,
        }
    }

    fn err(&self, what: &str, e: &io::Error) -> DeliveryError {
        DeliveryError::retryable(format!("file sink {}: {what}: {e}", self.path.display()))
    }

    /// Appends the lines of `buf` (`ends` marks each line's end), rotating as needed.
    fn write_lines(&mut self, buf: &[u8], ends: &[usize]) -> Result<(), DeliveryError> {
        self.ensure_open()?;
        let mut start = 0; // first byte not yet written
        let mut i = 0;
        while i < ends.len() {
            let (size, regular) = self.open.as_ref().map_or((0, true), |o| (o.size, o.regular));
            // Take as many whole lines as fit in the file and in one write chunk.
            let room = if regular { self.max_bytes.saturating_sub(size) } else { u64::MAX };
            let mut end = start;
            while i < ends.len() {
                let next = ends[i];
                let len = (next - start) as u64;
                if len > room || (next - start > WRITE_CHUNK && end > start) {
                    break;
                }
                end = next;
                i += 1;
            }
            if end == start {
                // The next line does not fit: rotate, unless the file is empty (a line
                // larger than max_bytes gets a file of its own).
                if size > 0 {
                    self.rotate()?;
                    continue;
                }
                end = ends[i];
                i += 1;
            }
            self.append(&buf[start..end])?;
            start = end;
        }
        if self.fsync
            && let Some(o) = &self.open
            && o.regular
        {
            o.file.sync_data().map_err(|e| self.err("fdatasync", &e))?;
        }
        Ok(())
    }

    /// Opens `path` unless the open file is still the one at `path`.
    fn ensure_open(&mut self) -> Result<(), DeliveryError> {
        if let Some(o) = &self.open {
            match std::fs::metadata(&self.path) {
                Ok(m) if m.dev() == o.dev && m.ino() == o.ino => return Ok(()),
                // Moved away, deleted or replaced: start a new file at the path. The
                // old one is complete (every write ends on a line).
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    self.open = None;
                    return Err(self.err("stat", &e));
                }
            }
            self.open = None;
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| self.err("create directory", &e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(|e| self.err("open", &e))?;
        let m = file.metadata().map_err(|e| self.err("stat", &e))?;
        let regular = m.file_type().is_file();
        let size = if regular {
            let size = complete_lines_len(&mut file, m.len()).map_err(|e| self.err("read tail", &e))?;
            if size < m.len() {
                // A partial last line (killed mid-write, or a failed write that could
                // not be cut back): cut it off; its batch was never acknowledged.
                file.set_len(size).map_err(|e| self.err("truncate partial line", &e))?;
            }
            size
        } else {
            0
        };
        self.open = Some(OpenFile { file, dev: m.dev(), ino: m.ino(), size, regular });
        Ok(())
    }

    fn append(&mut self, bytes: &[u8]) -> Result<(), DeliveryError> {
        let Some(o) = self.open.as_mut() else {
            return Err(DeliveryError::retryable(format!("file sink {}: file not open", self.path.display())));
        };
        match o.file.write_all(bytes) {
            Ok(()) => {
                o.size += bytes.len() as u64;
                Ok(())
            }
            Err(e) => {
                // Cut a partly written chunk back to the last complete line; if even
                // that fails, reopen next time (which repairs the tail).
                if !o.regular || o.file.set_len(o.size).is_err() {
                    self.open = None;
                }
                Err(self.err("write", &e))
            }
        }
    }

    fn rotate(&mut self) -> Result<(), DeliveryError> {
        if let Some(o) = self.open.take()
            && self.fsync
            && o.regular
        {
            o.file.sync_data().map_err(|e| self.err("fdatasync", &e))?;
        }
        let numbered = |n: u32| {
            let mut p = self.path.clone().into_os_string();
            p.push(format!(".{n}"));
            PathBuf::from(p)
        };
        let ignore_missing = |r: io::Result<()>| match r {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
        if self.max_files == 0 {
            ignore_missing(std::fs::remove_file(&self.path)).map_err(|e| self.err("remove full file", &e))?;
        } else {
            let oldest = numbered(self.max_files);
            ignore_missing(std::fs::remove_file(&oldest)).map_err(|e| self.err("remove oldest rotated file", &e))?;
            for n in (1..self.max_files).rev() {
                ignore_missing(std::fs::rename(numbered(n), numbered(n + 1)))
                    .map_err(|e| self.err("rename rotated file", &e))?;
            }
            ignore_missing(std::fs::rename(&self.path, numbered(1))).map_err(|e| self.err("rotate", &e))?;
        }
        self.ensure_open()
    }

    fn close(&mut self) {
        if let Some(o) = self.open.take()
            && self.fsync
            && o.regular
            && let Err(error) = o.file.sync_data()
        {
            tracing::warn!(path = %self.path.display(), %error, "file sink: fdatasync at close failed");
        }
    }
}

/// The length of the file up to and including its last `\n` (0 if it has none), reading
/// backwards in 64 KiB steps.
fn complete_lines_len(file: &mut File, len: u64) -> io::Result<u64> {
    let mut chunk = vec![0u8; 64 << 10];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let n = (end - start) as usize;
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk[..n])?;
        if let Some(p) = memchr::memrchr(b'\n', &chunk[..n]) {
            return Ok(start + p as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

// ---------------------------------------------------------------------------------------
// JSON encoding, straight into the output buffer.

fn encode_metric(out: &mut Vec<u8>, m: &MetricPoint) {
    out.extend_from_slice(br#"{"signal":"metric","name":"#);
    json_str(out, &m.name);
    out.extend_from_slice(br#","labels":{"#);
    for (i, l) in m.labels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, &l.name);
        out.push(b':');
        json_str(out, &l.value);
    }
    out.extend_from_slice(br#"},"kind":""#);
    out.extend_from_slice(metric_kind(m.kind).as_bytes());
    out.extend_from_slice(br#"","value":"#);
    json_f64(out, m.value);
    out.extend_from_slice(br#","timestamp_ms":"#);
    json_i64(out, m.timestamp_ms);
    out.push(b'}');
}

fn metric_kind(k: MetricKind) -> &'static str {
    k.as_str()
}

fn encode_log(
    out: &mut Vec<u8>,
    r: &LogRecord,
    resource_cache: &mut Option<(Arc<Resource>, Vec<u8>)>,
    scope_cache: &mut Option<(Arc<Scope>, Vec<u8>)>,
) {
    out.extend_from_slice(br#"{"signal":"log","time_unix_nano":"#);
    json_u64(out, r.time_unix_nano);
    out.extend_from_slice(br#","observed_time_unix_nano":"#);
    json_u64(out, r.observed_time_unix_nano);
    out.extend_from_slice(br#","severity_number":"#);
    json_u64(out, u64::from(r.severity_number.0));
    out.extend_from_slice(br#","severity_text":"#);
    json_str(out, &r.severity_text);
    out.extend_from_slice(br#","body":"#);
    json_any(out, &r.body);
    out.extend_from_slice(br#","attributes":"#);
    json_attrs(out, &r.attributes);
    out.extend_from_slice(br#","resource":"#);
    json_resource(out, &r.resource, resource_cache);
    out.extend_from_slice(br#","scope":"#);
    json_scope(out, &r.scope, scope_cache);
    if let Some(t) = &r.trace_id {
        out.extend_from_slice(br#","trace_id":"#);
        json_trace_id(out, t);
    }
    if let Some(s) = &r.span_id {
        out.extend_from_slice(br#","span_id":"#);
        json_span_id(out, s);
    }
    if r.flags != 0 {
        out.extend_from_slice(br#","flags":"#);
        json_u64(out, u64::from(r.flags));
    }
    if !r.event_name.is_empty() {
        out.extend_from_slice(br#","event_name":"#);
        json_str(out, &r.event_name);
    }
    out.push(b'}');
}

fn encode_span(
    out: &mut Vec<u8>,
    s: &Span,
    resource_cache: &mut Option<(Arc<Resource>, Vec<u8>)>,
    scope_cache: &mut Option<(Arc<Scope>, Vec<u8>)>,
) {
    out.extend_from_slice(br#"{"signal":"span","trace_id":"#);
    json_trace_id(out, &s.trace_id);
    out.extend_from_slice(br#","span_id":"#);
    json_span_id(out, &s.span_id);
    if let Some(p) = &s.parent_span_id {
        out.extend_from_slice(br#","parent_span_id":"#);
        json_span_id(out, p);
    }
    if !s.trace_state.is_empty() {
        out.extend_from_slice(br#","trace_state":"#);
        json_str(out, &s.trace_state);
    }
    out.extend_from_slice(br#","name":"#);
    json_str(out, &s.name);
    out.extend_from_slice(br#","kind":""#);
    out.extend_from_slice(span_kind(s.kind).as_bytes());
    out.extend_from_slice(br#"","start_time_unix_nano":"#);
    json_u64(out, s.start_time_unix_nano);
    out.extend_from_slice(br#","end_time_unix_nano":"#);
    json_u64(out, s.end_time_unix_nano);
    out.extend_from_slice(br#","attributes":"#);
    json_attrs(out, &s.attributes);
    if !s.events.is_empty() {
        out.extend_from_slice(br#","events":["#);
        for (i, e) in s.events.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"time_unix_nano":"#);
            json_u64(out, e.time_unix_nano);
            out.extend_from_slice(br#","name":"#);
            json_str(out, &e.name);
            out.extend_from_slice(br#","attributes":"#);
            json_attrs(out, &e.attributes);
            out.push(b'}');
        }
        out.push(b']');
    }
    if !s.links.is_empty() {
        out.extend_from_slice(br#","links":["#);
        for (i, l) in s.links.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(br#"{"trace_id":"#);
            json_trace_id(out, &l.trace_id);
            out.extend_from_slice(br#","span_id":"#);
            json_span_id(out, &l.span_id);
            if !l.trace_state.is_empty() {
                out.extend_from_slice(br#","trace_state":"#);
                json_str(out, &l.trace_state);
            }
            out.extend_from_slice(br#","attributes":"#);
            json_attrs(out, &l.attributes);
            out.push(b'}');
        }
        out.push(b']');
    }
    out.extend_from_slice(br#","status":{"code":""#);
    out.extend_from_slice(match s.status.code {
        StatusCode::Unset => b"unset",
        StatusCode::Ok => b"ok",
        StatusCode::Error => b"error",
    });
    out.push(b'"');
    if !s.status.message.is_empty() {
        out.extend_from_slice(br#","message":"#);
        json_str(out, &s.status.message);
    }
    out.push(b'}');
    if s.flags != 0 {
        out.extend_from_slice(br#","flags":"#);
        json_u64(out, u64::from(s.flags));
    }
    if s.dropped != [0; 3] {
        out.extend_from_slice(br#","dropped":{"attributes":"#);
        json_u64(out, u64::from(s.dropped[0]));
        out.extend_from_slice(br#","events":"#);
        json_u64(out, u64::from(s.dropped[1]));
        out.extend_from_slice(br#","links":"#);
        json_u64(out, u64::from(s.dropped[2]));
        out.push(b'}');
    }
    out.extend_from_slice(br#","resource":"#);
    json_resource(out, &s.resource, resource_cache);
    out.extend_from_slice(br#","scope":"#);
    json_scope(out, &s.scope, scope_cache);
    out.push(b'}');
}

fn span_kind(k: SpanKind) -> &'static str {
    match k {
        SpanKind::Unspecified => "unspecified",
        SpanKind::Internal => "internal",
        SpanKind::Server => "server",
        SpanKind::Client => "client",
        SpanKind::Producer => "producer",
        SpanKind::Consumer => "consumer",
    }
}

/// The resource's attributes as an object, serialised once per distinct `Arc`.
fn json_resource(out: &mut Vec<u8>, r: &Arc<Resource>, cache: &mut Option<(Arc<Resource>, Vec<u8>)>) {
    match cache {
        Some((cached, bytes)) if Arc::ptr_eq(cached, r) => out.extend_from_slice(bytes),
        _ => {
            let mut bytes = Vec::new();
            json_attrs(&mut bytes, &r.attributes);
            out.extend_from_slice(&bytes);
            *cache = Some((Arc::clone(r), bytes));
        }
    }
}

/// The scope as `{"name":..[,"version":..][,"attributes":{..}]}`, serialised once per
/// distinct `Arc`.
fn json_scope(out: &mut Vec<u8>, s: &Arc<Scope>, cache: &mut Option<(Arc<Scope>, Vec<u8>)>) {
    match cache {
        Some((cached, bytes)) if Arc::ptr_eq(cached, s) => out.extend_from_slice(bytes),
        _ => {
            let mut bytes = Vec::new();
            bytes.extend_from_slice(br#"{"name":"#);
            json_str(&mut bytes, &s.name);
            if !s.version.is_empty() {
                bytes.extend_from_slice(br#","version":"#);
                json_str(&mut bytes, &s.version);
            }
            if !s.attributes.is_empty() {
                bytes.extend_from_slice(br#","attributes":"#);
                json_attrs(&mut bytes, &s.attributes);
            }
            bytes.push(b'}');
            out.extend_from_slice(&bytes);
            *cache = Some((Arc::clone(s), bytes));
        }
    }
}

fn json_attrs(out: &mut Vec<u8>, attrs: &[KeyValue]) {
    out.push(b'{');
    for (i, kv) in attrs.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(out, &kv.key);
        out.push(b':');
        json_any(out, &kv.value);
    }
    out.push(b'}');
}

/// An [`AnyValue`]; nesting is bounded by the value itself (built by our own parsers
/// and decoders, which limit depth), and recursion here mirrors it.
fn json_any(out: &mut Vec<u8>, v: &AnyValue) {
    match v {
        AnyValue::Empty => out.extend_from_slice(b"null"),
        AnyValue::Str(s) => json_str(out, s),
        AnyValue::Bool(b) => out.extend_from_slice(if *b { b"true" } else { b"false" }),
        AnyValue::Int(n) => json_i64(out, *n),
        AnyValue::Double(f) => json_f64(out, *f),
        AnyValue::Bytes(b) => {
            use base64::Engine as _;
            out.push(b'"');
            let start = out.len();
            out.resize(start + base64::encoded_len(b.len(), true).unwrap_or(0), 0);
            let n = base64::engine::general_purpose::STANDARD.encode_slice(b, &mut out[start..]).unwrap_or(0);
            out.truncate(start + n);
            out.push(b'"');
        }
        AnyValue::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                json_any(out, item);
            }
            out.push(b']');
        }
        AnyValue::KvList(kvs) => json_attrs(out, kvs),
    }
}

// Numbers go through serde_json's serializer (itoa and ryu inside): writing into a
// `Vec` cannot fail.
fn json_u64(out: &mut Vec<u8>, n: u64) {
    use serde::Serializer as _;
    let _ = serde_json::Serializer::new(out).serialize_u64(n);
}

fn json_i64(out: &mut Vec<u8>, n: i64) {
    use serde::Serializer as _;
    let _ = serde_json::Serializer::new(out).serialize_i64(n);
}

/// A finite float as a JSON number (shortest round-trip form), NaN and ±Inf as the
/// strings Prometheus' JSON uses.
fn json_f64(out: &mut Vec<u8>, f: f64) {
    if f.is_nan() {
        out.extend_from_slice(br#""NaN""#);
    } else if f.is_infinite() {
        out.extend_from_slice(if f > 0.0 { br#""+Inf""# } else { br#""-Inf""# });
    } else {
        use serde::Serializer as _;
        let _ = serde_json::Serializer::new(out).serialize_f64(f);
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn json_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(b'"');
    for b in bytes {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    out.push(b'"');
}

fn json_trace_id(out: &mut Vec<u8>, t: &TraceId) {
    json_hex(out, &t.0);
}

fn json_span_id(out: &mut Vec<u8>, s: &SpanId) {
    json_hex(out, &s.0);
}

const SPLAT_01: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// High bits set in the bytes of `w` that JSON requires escaping (`"`, `\`, below
/// 0x20). Exact for the lowest flagged byte (a borrow only affects bytes above it).
#[inline(always)]
fn escape_mask(w: u64) -> u64 {
    let quote = w ^ (SPLAT_01 * u64::from(b'"'));
    let backslash = w ^ (SPLAT_01 * u64::from(b'\\'));
    let zero_in = |x: u64| x.wrapping_sub(SPLAT_01) & !x;
    (w.wrapping_sub(SPLAT_01 * 0x20) & !w | zero_in(quote) | zero_in(backslash)) & HIGH
}

/// `s` as a JSON string: runs of plain bytes are copied whole, found eight bytes at a
/// time; only `"`, `\` and control characters are escaped (the input is UTF-8 already).
fn json_str(out: &mut Vec<u8>, s: &str) {
    let b = s.as_bytes();
    out.reserve(b.len() + 2);
    out.push(b'"');
    let mut run = 0; // start of the plain run not yet copied
    let mut p = 0;
    while p < b.len() {
        if let Some(chunk) = b.get(p..p + 8) {
            let mut w = [0u8; 8];
            w.copy_from_slice(chunk);
            let m = escape_mask(u64::from_le_bytes(w));
            if m == 0 {
                p += 8;
                continue;
            }
            p += (m.trailing_zeros() / 8) as usize;
        } else if !needs_escape(b[p]) {
            p += 1;
            continue;
        }
        out.extend_from_slice(&b[run..p]);
        escape_byte(out, b[p]);
        p += 1;
        run = p;
    }
    out.extend_from_slice(&b[run..]);
    out.push(b'"');
}

#[inline(always)]
fn needs_escape(c: u8) -> bool {
    c < 0x20 || c == b'"' || c == b'\\'
}

fn escape_byte(out: &mut Vec<u8>, c: u8) {
    match c {
        b'"' => out.extend_from_slice(br#"\""#),
        b'\\' => out.extend_from_slice(br"\\"),
        b'\n' => out.extend_from_slice(br"\n"),
        b'\r' => out.extend_from_slice(br"\r"),
        b'\t' => out.extend_from_slice(br"\t"),
        0x08 => out.extend_from_slice(br"\b"),
        0x0c => out.extend_from_slice(br"\f"),
        _ => {
            out.extend_from_slice(br"\u00");
            out.push(HEX[usize::from(c >> 4)]);
            out.push(HEX[usize::from(c & 15)]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> String {
        let mut out = Vec::new();
        json_str(&mut out, x);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn strings_escape_like_serde_json() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "exactly8".into(),
            "a\"b\\c\nd\re\tf\u{8}g\u{c}h\u{1}i\u{1f}j\u{7f}".into(),
            "ünïcödé — 日本語 🙂 \"quoted\"".into(),
            "\"\"\"\"\"\"\"\"\"\"".into(),
            "\\".repeat(17),
        ];
        // Every byte class at every position of a word.
        for c in ['"', '\\', '\n', '\u{0}', '\u{1f}', ' ', '~', 'é'] {
            for pos in 0..17 {
                let mut t = "x".repeat(17);
                t.replace_range(pos..pos + 1, &c.to_string());
                cases.push(t);
            }
        }
        for c in &cases {
            assert_eq!(s(c), serde_json::to_string(c).unwrap(), "{c:?}");
        }
    }

    #[test]
    fn numbers_and_ids() {
        let mut out = Vec::new();
        for f in [0.0, -1.5, 1e300, f64::NAN, f64::INFINITY, f64::NEG_INFINITY, 0.1] {
            json_f64(&mut out, f);
            out.push(b' ');
        }
        assert_eq!(String::from_utf8(out).unwrap(), r#"0.0 -1.5 1e+300 "NaN" "+Inf" "-Inf" 0.1 "#);
        let mut out = Vec::new();
        json_trace_id(&mut out, &TraceId([0xab; 16]));
        json_span_id(&mut out, &SpanId([1, 2, 3, 4, 5, 6, 7, 0xff]));
        assert_eq!(String::from_utf8(out).unwrap(), format!("\"{}\"\"01020304050607ff\"", "ab".repeat(16)));
    }

    #[test]
    fn config_defaults_and_validation() {
        let c: FileSinkConfig = serde_json::from_str(r#"{"path":"/tmp/x.jsonl"}"#).unwrap();
        assert_eq!(c, FileSinkConfig::new("/tmp/x.jsonl"));
        assert_eq!((c.max_bytes, c.max_files, c.fsync), (100 << 20, 5, false));
        let e = serde_json::from_str::<FileSinkConfig>(r#"{"path":"/x","rotate":1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `rotate`"), "{e}");
        let bad = FileSinkConfig { path: "rel.jsonl".into(), max_bytes: 10, max_files: 5000, fsync: false };
        let errors = bad.validate().unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.split(':').next().unwrap()).collect();
        assert_eq!(fields, ["path", "max_bytes", "max_files"]);
        assert!(matches!(FileSink::new(bad), Err(FileSinkError::Invalid(v)) if v.len() == 3));
    }
}
