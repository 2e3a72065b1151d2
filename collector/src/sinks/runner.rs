//! The delivery loop every sink runs in, its input handle and its metrics.
//!
//! [`spawn`] opens the sink's buffer ([`BufferConfig`]) and starts one task that takes a
//! batch from the buffer, calls [`Sink::deliver`], and on a [`DeliveryError::Retryable`]
//! sleeps [`RetryConfig::delay`] (the backend's `Retry-After` hint wins, capped) and tries
//! the same batch again, in order: a batch is never overtaken by a later one.
//!
//! Outcomes of one batch:
//!
//! | outcome | counted | source acknowledgement (memory buffer) | disk buffer |
//! | --- | --- | --- | --- |
//! | delivered | `sent` += accepted, `rejected` and `dropped{reason="rejected"}` += rejected, latency observed | `done` | read position moves past it |
//! | `Permanent` error | `failed`, `dropped{reason="permanent"}` | `done`: the backend refused it for good, retrying cannot help, and failing it would make a file source re-read it forever | moves past it |
//! | `max_attempts` reached | `failed` per attempt, `dropped{reason="retries_exhausted"}` | `done` (the operator chose to give up after N attempts) | moves past it |
//! | agent shut down before delivery | – | left undecided, so `Failed`: the source re-reads it after the restart | stays on disk, delivered after the restart |
//!
//! Shutdown: when the [`CancellationToken`] fires, a retry sleep ends at once and an
//! attempt in flight finishes (it is bounded by the sink's own timeout; it is not cut
//! off, so a sink never sees a half-done write). Then [`Sink::close`] runs and
//! [`SinkHandle::join`] resolves. [`SinkInput::send`] refuses from then on.
//!
//! Metrics ([`SinkMetrics::encode`]), each with a `sink` label:
//! `warden_sink_sent_total`, `warden_sink_failed_total` (attempts),
//! `warden_sink_retried_total`, `warden_sink_dropped_total{reason}` (items; reasons
//! `buffer_full`, `permanent`, `retries_exhausted`, `rejected`, `too_large`),
//! `warden_sink_rejected_total`, `warden_sink_buffer_events`, `warden_sink_buffer_bytes`,
//! `warden_sink_delivery_latency_seconds` (histogram, enqueue → delivered; for a disk
//! buffer measured across restarts), `warden_sink_buffer_corrupt_segments_total` and
//! `warden_sink_buffer_write_errors_total{reason="no_space"|"io"}`.

use crate::redact::Redacted;
use crate::signal::Batch;
use crate::sinks::buffer::disk::{self, DiskInput, DiskReader};
use crate::sinks::buffer::memory::MemoryQueue;
use crate::sinks::buffer::{BufferConfig, BufferError, Pending};
use crate::sinks::{Delivered, DeliveryError, RetryConfig, Sink};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// The sink has stopped (shutdown): the batch was not taken, and its acknowledgement
/// was dropped undecided (`Failed`), so a source that tracks delivery re-reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sink {sink} has stopped")]
pub struct SinkClosed {
    /// The sink's name.
    pub sink: String,
}

/// Why items were dropped (the `reason` label of `warden_sink_dropped_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The buffer was full (or the disk was) and the policy is `drop_newest`.
    BufferFull,
    /// The backend refused the batch with a permanent error.
    Permanent,
    /// `retry.max_attempts` attempts all failed.
    RetriesExhausted,
    /// The backend accepted the request but refused these items (partial success).
    Rejected,
    /// A single item was larger than the disk buffer's largest record.
    TooLarge,
}

impl DropReason {
    /// Every reason, in label order.
    pub const ALL: [DropReason; 5] = [
        DropReason::BufferFull,
        DropReason::Permanent,
        DropReason::RetriesExhausted,
        DropReason::Rejected,
        DropReason::TooLarge,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DropReason::BufferFull => "buffer_full",
            DropReason::Permanent => "permanent",
            DropReason::RetriesExhausted => "retries_exhausted",
            DropReason::Rejected => "rejected",
            DropReason::TooLarge => "too_large",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Upper bounds (seconds) of the latency histogram's buckets (`+Inf` is implied).
pub const LATENCY_BUCKETS: [f64; 16] =
    [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 3600.0];

/// A fixed-bucket histogram of seconds, lock-free.
#[derive(Debug, Default)]
struct Histogram {
    /// Non-cumulative counts per bucket; the last is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let i = LATENCY_BUCKETS.iter().position(|b| s <= *b).unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(d.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
    }
}

/// One sink's delivery counters and buffer gauges; see the module docs for the families.
#[derive(Debug)]
pub struct SinkMetrics {
    name: String,
    sent: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    rejected: AtomicU64,
    dropped: [AtomicU64; DropReason::ALL.len()],
    buffer_events: AtomicI64,
    buffer_bytes: AtomicI64,
    corrupt_segments: AtomicU64,
    write_errors_no_space: AtomicU64,
    write_errors_io: AtomicU64,
    latency: Histogram,
}

impl SinkMetrics {
    /// Zeroed metrics for sink `name` ([`spawn`] makes them; public for tests and for a
    /// sink that is driven without a runner).
    pub fn new(name: &str) -> Arc<SinkMetrics> {
        Arc::new(SinkMetrics {
            name: name.to_owned(),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retried: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            dropped: Default::default(),
            buffer_events: AtomicI64::new(0),
            buffer_bytes: AtomicI64::new(0),
            corrupt_segments: AtomicU64::new(0),
            write_errors_no_space: AtomicU64::new(0),
            write_errors_io: AtomicU64::new(0),
            latency: Histogram::default(),
        })
    }

    /// The sink's name (the `sink` label).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Items the backend accepted.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Delivery attempts that failed (retryable or permanent).
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Attempts after the first for the same batch.
    pub fn retried(&self) -> u64 {
        self.retried.load(Ordering::Relaxed)
    }

    /// Items the backend refused in an otherwise successful request.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Items dropped, for every reason.
    pub fn dropped(&self) -> u64 {
        self.dropped.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Items dropped for `reason`.
    pub fn dropped_by(&self, reason: DropReason) -> u64 {
        self.dropped[reason.index()].load(Ordering::Relaxed)
    }

    /// Items waiting in the buffer (not counting the batch being delivered from a
    /// memory buffer; counting every undelivered record of a disk buffer).
    pub fn buffer_events(&self) -> u64 {
        self.buffer_events.load(Ordering::Relaxed).max(0) as u64
    }

    /// Bytes the buffer holds: segment files on disk, or an estimate of the queued
    /// batches' size in memory.
    pub fn buffer_bytes(&self) -> u64 {
        self.buffer_bytes.load(Ordering::Relaxed).max(0) as u64
    }

    /// Disk buffer segments (or torn-off segment tails) moved to `quarantine/`.
    pub fn corrupt_segments(&self) -> u64 {
        self.corrupt_segments.load(Ordering::Relaxed)
    }

    /// Disk buffer writes refused for lack of space (ENOSPC, EDQUOT).
    pub fn write_errors_no_space(&self) -> u64 {
        self.write_errors_no_space.load(Ordering::Relaxed)
    }

    /// Disk buffer writes that failed with another I/O error.
    pub fn write_errors_io(&self) -> u64 {
        self.write_errors_io.load(Ordering::Relaxed)
    }

    /// Batches whose delivery latency was observed (delivered batches).
    pub fn latency_count(&self) -> u64 {
        self.latency.count.load(Ordering::Relaxed)
    }

    pub(crate) fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_failed(&self) {
        self.failed.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_retried(&self) {
        self.retried.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_rejected(&self, n: u64) {
        self.rejected.fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_dropped(&self, reason: DropReason, n: u64) {
        self.dropped[reason.index()].fetch_add(n, Ordering::Relaxed);
    }
    pub(crate) fn add_buffer(&self, events: i64, bytes: i64) {
        self.buffer_events.fetch_add(events, Ordering::Relaxed);
        self.buffer_bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub(crate) fn set_buffer(&self, events: u64, bytes: u64) {
        self.buffer_events.store(events.min(i64::MAX as u64) as i64, Ordering::Relaxed);
        self.buffer_bytes.store(bytes.min(i64::MAX as u64) as i64, Ordering::Relaxed);
    }
    pub(crate) fn add_corrupt_segment(&self) {
        self.corrupt_segments.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn add_write_error(&self, no_space: bool) {
        let c = if no_space { &self.write_errors_no_space } else { &self.write_errors_io };
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn observe_latency(&self, d: Duration) {
        self.latency.observe(d);
    }

    /// Prometheus text exposition of every sink's metrics: one `# HELP` and `# TYPE` per
    /// family, then one sample per sink (label values escaped).
    pub fn encode(all: &[Arc<SinkMetrics>]) -> String {
        let mut out = String::with_capacity(512 + all.len() * 2048);
        type Get = fn(&SinkMetrics) -> u64;
        let simple: [(&str, &str, &str, Get); 7] = [
            ("warden_sink_sent_total", "counter", "Items the sink's backend accepted.", SinkMetrics::sent),
            ("warden_sink_failed_total", "counter", "Delivery attempts that failed.", SinkMetrics::failed),
            ("warden_sink_retried_total", "counter", "Delivery attempts that retried a batch.", SinkMetrics::retried),
            (
                "warden_sink_rejected_total",
                "counter",
                "Items the backend refused in an accepted request (partial success).",
                SinkMetrics::rejected,
            ),
            ("warden_sink_buffer_events", "gauge", "Items waiting in the sink's buffer.", SinkMetrics::buffer_events),
            (
                "warden_sink_buffer_bytes",
                "gauge",
                "Bytes held by the sink's buffer (disk: segment files; memory: estimate).",
                SinkMetrics::buffer_bytes,
            ),
            (
                "warden_sink_buffer_corrupt_segments_total",
                "counter",
                "Disk buffer segments or segment tails moved to quarantine as corrupt.",
                SinkMetrics::corrupt_segments,
            ),
        ];
        for (family, kind, help, get) in simple {
            let _ = write!(out, "# HELP {family} {help}\n# TYPE {family} {kind}\n");
            for m in all {
                let _ = writeln!(out, "{family}{{sink=\"{}\"}} {}", escape(&m.name), get(m));
            }
        }
        out.push_str("# HELP warden_sink_dropped_total Items dropped, by reason.\n");
        out.push_str("# TYPE warden_sink_dropped_total counter\n");
        for m in all {
            for r in DropReason::ALL {
                let _ = writeln!(
                    out,
                    "warden_sink_dropped_total{{sink=\"{}\",reason=\"{}\"}} {}",
                    escape(&m.name),
                    r.as_str(),
                    m.dropped_by(r)
                );
            }
        }
        out.push_str("# HELP warden_sink_buffer_write_errors_total Disk buffer writes that failed, by reason.\n");
        out.push_str("# TYPE warden_sink_buffer_write_errors_total counter\n");
        for m in all {
            let n = escape(&m.name);
            let _ = writeln!(
                out,
                "warden_sink_buffer_write_errors_total{{sink=\"{n}\",reason=\"no_space\"}} {}",
                m.write_errors_no_space()
            );
            let _ = writeln!(
                out,
                "warden_sink_buffer_write_errors_total{{sink=\"{n}\",reason=\"io\"}} {}",
                m.write_errors_io()
            );
        }
        out.push_str(
            "# HELP warden_sink_delivery_latency_seconds Time from a batch entering the buffer to its delivery.\n",
        );
        out.push_str("# TYPE warden_sink_delivery_latency_seconds histogram\n");
        for m in all {
            let n = escape(&m.name);
            let mut cumulative = 0u64;
            for (i, le) in LATENCY_BUCKETS.iter().enumerate() {
                cumulative += m.latency.buckets[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "warden_sink_delivery_latency_seconds_bucket{{sink=\"{n}\",le=\"{le}\"}} {cumulative}"
                );
            }
            cumulative += m.latency.buckets[LATENCY_BUCKETS.len()].load(Ordering::Relaxed);
            let _ =
                writeln!(out, "warden_sink_delivery_latency_seconds_bucket{{sink=\"{n}\",le=\"+Inf\"}} {cumulative}");
            let sum = m.latency.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "warden_sink_delivery_latency_seconds_sum{{sink=\"{n}\"}} {sum}");
            let _ = writeln!(
                out,
                "warden_sink_delivery_latency_seconds_count{{sink=\"{n}\"}} {}",
                m.latency.count.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// Escapes a label value for the text exposition format.
fn escape(v: &str) -> String {
    let mut s = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

#[derive(Clone)]
enum InputKind {
    Memory(Arc<MemoryQueue>),
    Disk(DiskInput),
}

/// Where the fan-out hands a sink its share: the front of the sink's buffer. Cheap to
/// clone.
#[derive(Clone)]
pub struct SinkInput {
    name: Arc<str>,
    kind: InputKind,
    metrics: Arc<SinkMetrics>,
    shutdown: CancellationToken,
}

impl fmt::Debug for SinkInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            InputKind::Memory(_) => "memory",
            InputKind::Disk(_) => "disk",
        };
        f.debug_struct("SinkInput").field("sink", &self.name).field("buffer", &kind).finish()
    }
}

impl SinkInput {
    /// Puts a batch into the sink's buffer, applying its [`WhenFull`] policy: `block`
    /// waits for room, `drop_newest` drops the batch (counted in
    /// `warden_sink_dropped_total{reason="buffer_full"}`, its acknowledgement resolved as
    /// done = deliberately discarded). An empty batch is acknowledged at once.
    ///
    /// `Err` only when the sink has stopped; the batch's acknowledgement is then dropped
    /// undecided (`Failed`), so the source re-reads it.
    ///
    /// [`WhenFull`]: crate::sinks::buffer::WhenFull
    pub async fn send(&self, mut batch: Redacted<Batch>) -> Result<(), SinkClosed> {
        if self.shutdown.is_cancelled() {
            return Err(self.closed());
        }
        if batch.get().is_empty() {
            if let Some(ack) = batch.take_ack() {
                ack.done();
            }
            return Ok(());
        }
        let refused = match &self.kind {
            InputKind::Memory(q) => q.push(batch, &self.shutdown).await,
            InputKind::Disk(d) => d.push(batch, &self.shutdown).await,
        };
        // A refused batch is dropped here with its token undecided: `Failed`.
        refused.map_err(|_| self.closed())
    }

    /// The sink's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sink's metrics.
    pub fn metrics(&self) -> &Arc<SinkMetrics> {
        &self.metrics
    }

    fn closed(&self) -> SinkClosed {
        SinkClosed { sink: self.name.to_string() }
    }
}

/// A running sink: its input, its metrics, and the task to wait for at shutdown.
#[derive(Debug)]
pub struct SinkHandle {
    /// Where the fan-out sends this sink's share.
    pub input: SinkInput,
    /// The sink's delivery metrics.
    pub metrics: Arc<SinkMetrics>,
    runner: tokio::task::JoinHandle<()>,
    writer: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl SinkHandle {
    /// Resolves once the runner has stopped (after the shutdown token fired), the sink
    /// is closed and a disk buffer's writer has finished its last write.
    pub async fn join(self) {
        if let Err(e) = self.runner.await {
            tracing::error!(sink = %self.input.name, error = %e, "sink runner ended abnormally");
        }
        if let Some(w) = self.writer {
            // The writer thread drops the sender when it ends (also on a panic).
            let _ = w.await;
        }
    }
}

/// The directory name for a sink's disk buffer: the name with every character outside
/// `[A-Za-z0-9._-]` replaced by `_`; a name that had to change gets a short checksum
/// suffix so two different names never share a directory.
pub fn buffer_dir_name(name: &str) -> String {
    let clean: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' }).collect();
    if clean == name && !clean.is_empty() && !clean.starts_with('.') {
        clean
    } else {
        format!("{}-{:08x}", clean.trim_start_matches('.'), crc32fast::hash(name.as_bytes()))
    }
}

/// The directory of sink `name`'s disk buffer under `data_dir`.
pub fn buffer_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("buffers").join(buffer_dir_name(name))
}

/// Starts sink `name`: opens its buffer (a disk buffer at
/// `<data_dir>/buffers/<name>/`, see [`buffer_dir_name`]) and spawns its delivery task on
/// the current Tokio runtime. The task stops when `shutdown` fires.
pub fn spawn<S: Sink>(
    name: &str,
    sink: S,
    buffer: &BufferConfig,
    retry: &RetryConfig,
    data_dir: &Path,
    shutdown: CancellationToken,
) -> Result<SinkHandle, BufferError> {
    let metrics = SinkMetrics::new(name);
    let (kind, output, writer) = match buffer {
        BufferConfig::Memory { max_events, when_full } => {
            let q = MemoryQueue::new(*max_events, *when_full, Arc::clone(&metrics));
            (InputKind::Memory(Arc::clone(&q)), Output::Memory(q), None)
        }
        BufferConfig::Disk { max_bytes, when_full, fsync } => {
            let opened = disk::open(
                buffer_dir(data_dir, name),
                name,
                disk::Options { max_bytes: *max_bytes, when_full: *when_full, fsync: *fsync },
                Arc::clone(&metrics),
                shutdown.clone(),
            )?;
            (InputKind::Disk(opened.input), Output::Disk(Box::new(opened.reader)), Some(opened.writer_done))
        }
    };
    let input = SinkInput { name: Arc::from(name), kind, metrics: Arc::clone(&metrics), shutdown: shutdown.clone() };
    let runner =
        tokio::spawn(run(Arc::clone(&input.name), sink, output, retry.clone(), Arc::clone(&metrics), shutdown));
    Ok(SinkHandle { input, metrics, runner, writer })
}

enum Output {
    Memory(Arc<MemoryQueue>),
    Disk(Box<DiskReader>),
}

impl Output {
    async fn next(&mut self, shutdown: &CancellationToken) -> Option<Pending> {
        match self {
            Output::Memory(q) => q.pop(shutdown).await,
            Output::Disk(r) => r.next(shutdown).await,
        }
    }

    fn commit(&mut self, pending: &Pending) {
        if let (Output::Disk(r), Some(pos)) = (self, pending.commit) {
            r.commit(pos);
        }
    }

    async fn close(&mut self) {
        match self {
            Output::Memory(q) => q.close(),
            Output::Disk(r) => r.close().await,
        }
    }
}

/// Closes a memory queue if the runner task ends any other way than its own return (a
/// panicking sink), so blocked senders are released instead of waiting forever.
struct CloseOnDrop(Option<Arc<MemoryQueue>>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if let Some(q) = &self.0 {
            q.close();
        }
    }
}

enum Outcome {
    Delivered(Delivered),
    Dropped(DropReason),
}

async fn run<S: Sink>(
    name: Arc<str>,
    mut sink: S,
    mut output: Output,
    retry: RetryConfig,
    metrics: Arc<SinkMetrics>,
    shutdown: CancellationToken,
) {
    let _close = CloseOnDrop(match &output {
        Output::Memory(q) => Some(Arc::clone(q)),
        Output::Disk(_) => None,
    });
    'batches: while let Some(mut pending) = output.next(&shutdown).await {
        let items = pending.batch.get().len() as u64;
        let mut attempt: u32 = 0;
        let outcome = loop {
            attempt += 1;
            match sink.deliver(&pending.batch).await {
                Ok(d) => {
                    if attempt > 1 {
                        tracing::info!(sink = %name, attempts = attempt, "delivery recovered");
                    }
                    break Outcome::Delivered(d);
                }
                Err(DeliveryError::Permanent { reason }) => {
                    metrics.add_failed();
                    tracing::error!(sink = %name, error = %reason, items, "batch dropped: the backend refused it permanently");
                    break Outcome::Dropped(DropReason::Permanent);
                }
                Err(DeliveryError::Retryable { reason, retry_after }) => {
                    metrics.add_failed();
                    if retry.max_attempts != 0 && attempt >= retry.max_attempts {
                        tracing::error!(sink = %name, error = %reason, items, attempts = attempt, "batch dropped: retries exhausted");
                        break Outcome::Dropped(DropReason::RetriesExhausted);
                    }
                    let delay = retry.delay(attempt, retry_after);
                    if attempt == 1 {
                        tracing::warn!(sink = %name, error = %reason, retry_in = ?delay, "delivery failed, will retry");
                    } else {
                        tracing::debug!(sink = %name, error = %reason, attempt, retry_in = ?delay, "delivery failed again");
                    }
                    tokio::select! {
                        biased;
                        _ = shutdown.cancelled() => break 'batches,
                        _ = tokio::time::sleep(delay) => {}
                    }
                    metrics.add_retried();
                }
            }
        };
        match outcome {
            Outcome::Delivered(d) => {
                metrics.add_sent(d.accepted);
                if d.rejected > 0 {
                    metrics.add_rejected(d.rejected);
                    metrics.add_dropped(DropReason::Rejected, d.rejected);
                }
                metrics.observe_latency(pending.enqueued.elapsed());
            }
            Outcome::Dropped(reason) => metrics.add_dropped(reason, items),
        }
        if let Some(ack) = pending.batch.take_ack() {
            ack.done();
        }
        output.commit(&pending);
        if shutdown.is_cancelled() {
            break;
        }
    }
    // Whatever is still buffered stays: a memory batch's token is dropped undecided
    // (the source re-reads), a disk record stays on disk.
    output.close().await;
    sink.close().await;
    tracing::debug!(sink = %name, "sink runner stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_dir_names_are_safe_and_distinct() {
        assert_eq!(buffer_dir_name("otlp-main_1.x"), "otlp-main_1.x");
        let a = buffer_dir_name("a/b");
        let b = buffer_dir_name("a_b");
        assert_ne!(a, b);
        assert!(a.starts_with("a_b-"), "{a}");
        for evil in ["..", ".", "", "../../etc", "x\0y", "é"] {
            let d = buffer_dir_name(evil);
            assert!(!d.is_empty() && !d.starts_with('.') && !d.contains('/'), "{evil:?} -> {d:?}");
        }
    }

    #[test]
    fn metrics_encode_one_family_header_and_escaped_labels() {
        let a = SinkMetrics::new("otlp");
        let b = SinkMetrics::new("we\"ird\\name\n");
        a.add_sent(5);
        b.add_dropped(DropReason::BufferFull, 3);
        a.observe_latency(Duration::from_millis(20));
        a.observe_latency(Duration::from_secs(7200));
        let text = SinkMetrics::encode(&[a, b]);
        for family in [
            "warden_sink_sent_total counter",
            "warden_sink_failed_total counter",
            "warden_sink_retried_total counter",
            "warden_sink_dropped_total counter",
            "warden_sink_rejected_total counter",
            "warden_sink_buffer_events gauge",
            "warden_sink_buffer_bytes gauge",
            "warden_sink_delivery_latency_seconds histogram",
            "warden_sink_buffer_corrupt_segments_total counter",
            "warden_sink_buffer_write_errors_total counter",
        ] {
            assert_eq!(text.matches(&format!("# TYPE {family}\n")).count(), 1, "{family}\n{text}");
        }
        assert!(text.contains("warden_sink_sent_total{sink=\"otlp\"} 5\n"), "{text}");
        assert!(
            text.contains("warden_sink_dropped_total{sink=\"we\\\"ird\\\\name\\n\",reason=\"buffer_full\"} 3\n"),
            "{text}"
        );
        assert!(text.contains("warden_sink_delivery_latency_seconds_bucket{sink=\"otlp\",le=\"0.01\"} 0\n"), "{text}");
        assert!(text.contains("warden_sink_delivery_latency_seconds_bucket{sink=\"otlp\",le=\"0.025\"} 1\n"), "{text}");
        assert!(text.contains("warden_sink_delivery_latency_seconds_bucket{sink=\"otlp\",le=\"3600\"} 1\n"), "{text}");
        assert!(text.contains("warden_sink_delivery_latency_seconds_bucket{sink=\"otlp\",le=\"+Inf\"} 2\n"), "{text}");
        assert!(text.contains("warden_sink_delivery_latency_seconds_count{sink=\"otlp\"} 2\n"), "{text}");
        assert!(text.contains("warden_sink_delivery_latency_seconds_sum{sink=\"otlp\"} 7200.02\n"), "{text}");
    }
}
