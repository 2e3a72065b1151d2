//! The plumbing every component shares: the bounded batch channel, per-component
//! counters, and the context a source runs in (its output, its counters, the shutdown
//! signal, the data directory).
//!
//! Invariant: no queue in the collector is unbounded. A [`BatchSender`] holds at most
//! `capacity` batches; [`BatchSender::send`] waits (backpressure reaches the source,
//! which stops reading) and [`BatchSender::try_send`] refuses (the OTLP receiver answers
//! 503 / `UNAVAILABLE`), so a slow consumer never makes the agent grow without limit.

use crate::signal::Batch;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
pub use tokio_util::sync::CancellationToken;

/// Why a batch was not accepted.
#[derive(Debug)]
pub enum SendError {
    /// The channel is at capacity (only from `try_send`); the batch is handed back.
    Full(Batch),
    /// The consumer is gone (shutdown); the batch is handed back.
    Closed(Batch),
}

/// The sending half of a bounded batch channel; cheap to clone.
#[derive(Debug, Clone)]
pub struct BatchSender {
    tx: mpsc::Sender<Batch>,
}

/// The receiving half of a bounded batch channel.
#[derive(Debug)]
pub struct BatchReceiver {
    rx: mpsc::Receiver<Batch>,
}

/// A channel holding at most `capacity` batches (at least 1).
pub fn channel(capacity: usize) -> (BatchSender, BatchReceiver) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (BatchSender { tx }, BatchReceiver { rx })
}

impl BatchSender {
    /// Sends, waiting while the channel is full.
    pub async fn send(&self, batch: Batch) -> Result<(), SendError> {
        self.tx.send(batch).await.map_err(|e| SendError::Closed(e.0))
    }

    /// Sends without waiting; `Full` when at capacity.
    pub fn try_send(&self, batch: Batch) -> Result<(), SendError> {
        self.tx.try_send(batch).map_err(|e| match e {
            mpsc::error::TrySendError::Full(b) => SendError::Full(b),
            mpsc::error::TrySendError::Closed(b) => SendError::Closed(b),
        })
    }

    /// Free slots right now.
    pub fn capacity(&self) -> usize {
        self.tx.capacity()
    }

    /// Whether the receiver is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl BatchReceiver {
    /// The next batch; `None` once every sender is dropped and the channel is drained.
    pub async fn recv(&mut self) -> Option<Batch> {
        self.rx.recv().await
    }

    /// The next batch if one is ready.
    pub fn try_recv(&mut self) -> Option<Batch> {
        self.rx.try_recv().ok()
    }

    /// Batches waiting right now.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no batch is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

/// A monotonically increasing counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds 1.
    pub fn inc(&self) {
        self.add(1);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A component's own counters. The four standard ones are exported as
/// `warden_<kind>_<what>_total{component="<name>"}` (kind = `source`, `sink`, ...):
/// `received` (items read from outside: lines, samples, spans), `emitted` (items sent
/// downstream), `dropped` (items lost on purpose, e.g. over a limit), `errors` (failed
/// operations: a scrape, a read, a bad request). Component-specific counters are added
/// with [`ComponentStats::counter`].
#[derive(Debug)]
pub struct ComponentStats {
    kind: &'static str,
    name: String,
    /// Items read from outside.
    pub received: Counter,
    /// Items sent downstream.
    pub emitted: Counter,
    /// Items dropped.
    pub dropped: Counter,
    /// Failed operations.
    pub errors: Counter,
    extra: Mutex<Vec<(&'static str, Arc<Counter>)>>,
}

impl ComponentStats {
    /// Counters for component `name` of `kind` (`source`, `sink`, `redactor`, ...).
    pub fn new(kind: &'static str, name: impl Into<String>) -> Arc<ComponentStats> {
        Arc::new(ComponentStats {
            kind,
            name: name.into(),
            received: Counter::default(),
            emitted: Counter::default(),
            dropped: Counter::default(),
            errors: Counter::default(),
            extra: Mutex::new(Vec::new()),
        })
    }

    /// The component name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The component-specific counter `what` (exported as
    /// `warden_<kind>_<what>_total`), created on first use. `what` must be a valid
    /// metric-name fragment such as `lines_truncated`.
    pub fn counter(&self, what: &'static str) -> Arc<Counter> {
        let mut extra = self.extra.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, c)) = extra.iter().find(|(n, _)| *n == what) {
            return Arc::clone(c);
        }
        let c = Arc::new(Counter::default());
        extra.push((what, Arc::clone(&c)));
        c
    }

    /// Appends this component's counters in Prometheus text format (samples only; the
    /// caller writes `# TYPE` lines once per family via [`encode_stats`]).
    fn samples(&self, out: &mut Vec<(String, String, u64)>) {
        let fam = |what: &str| format!("warden_{}_{}_total", self.kind, what);
        for (what, c) in [
            ("received", &self.received),
            ("emitted", &self.emitted),
            ("dropped", &self.dropped),
            ("errors", &self.errors),
        ] {
            out.push((fam(what), self.name.clone(), c.get()));
        }
        let extra = self.extra.lock().unwrap_or_else(|e| e.into_inner());
        for (what, c) in extra.iter() {
            out.push((fam(what), self.name.clone(), c.get()));
        }
    }
}

/// Prometheus text exposition of many components' counters, one `# TYPE` per family.
pub fn encode_stats(stats: &[Arc<ComponentStats>]) -> String {
    let mut samples = Vec::new();
    for s in stats {
        s.samples(&mut samples);
    }
    samples.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = String::new();
    let mut last = "";
    for (family, component, value) in &samples {
        if family != last {
            let _ = writeln!(out, "# TYPE {family} counter");
            last = family;
        }
        let escaped = component.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = writeln!(out, "{family}{{component=\"{escaped}\"}} {value}");
    }
    out
}

/// Everything a running source needs from the agent.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// Where batches go.
    pub out: BatchSender,
    /// This source's counters.
    pub stats: Arc<ComponentStats>,
    /// Cancelled when the agent shuts down or the source is replaced by a reload; the
    /// source returns promptly after it fires.
    pub shutdown: CancellationToken,
    /// The agent's data directory (checkpoints live under it).
    pub data_dir: PathBuf,
}

impl SourceContext {
    /// A context for source `name` writing to `out`, for tests and simple wiring.
    pub fn new(name: &str, out: BatchSender, data_dir: PathBuf) -> SourceContext {
        SourceContext { out, stats: ComponentStats::new("source", name), shutdown: CancellationToken::new(), data_dir }
    }
}

/// Serde helpers for humantime durations in configs (`interval: 15s`).
pub mod duration {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    /// Deserializes `"15s"`, `"1m30s"`, `"250ms"`, `"1h"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| serde::de::Error::custom(format!("invalid duration {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn full_channel_refuses_and_backpressures() {
        let (tx, mut rx) = channel(2);
        tx.try_send(Batch::default()).unwrap();
        tx.try_send(Batch::default()).unwrap();
        assert!(matches!(tx.try_send(Batch::default()), Err(SendError::Full(_))));
        let blocked = tokio::time::timeout(std::time::Duration::from_millis(50), tx.send(Batch::default())).await;
        assert!(blocked.is_err(), "send must wait while the channel is full");
        rx.recv().await.unwrap();
        tx.send(Batch::default()).await.unwrap();
        assert_eq!(rx.len(), 2);
        drop(rx);
        assert!(matches!(tx.send(Batch::default()).await, Err(SendError::Closed(_))));
    }

    #[test]
    fn stats_encode_one_type_line_per_family() {
        let a = ComponentStats::new("source", "scrape/platform");
        let b = ComponentStats::new("source", "file\"x");
        a.received.add(3);
        b.counter("lines_truncated").inc();
        let text = encode_stats(&[a, b]);
        assert_eq!(text.matches("# TYPE warden_source_received_total counter").count(), 1);
        assert!(text.contains("warden_source_received_total{component=\"scrape/platform\"} 3"));
        assert!(text.contains("warden_source_lines_truncated_total{component=\"file\\\"x\"} 1"));
    }
}
