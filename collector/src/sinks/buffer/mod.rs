//! The buffer in front of each sink: bounded, in memory or on disk.
//!
//! Every sink gets its own buffer ([`BufferConfig`], config key `buffer:` of a sink). The
//! fan-out writes into it through [`crate::sinks::runner::SinkInput`]; the sink's runner
//! reads from it and delivers. Two kinds:
//!
//! | | `memory` (default) | `disk` |
//! | --- | --- | --- |
//! | bound | `max_events` items (default 10,000) | `max_bytes` of segment files (default 256 MiB) |
//! | source acknowledged | when the sink has delivered the batch | when the batch is written to a segment (and fsynced, see [`FsyncPolicy`]) |
//! | agent restart | undelivered batches are not acknowledged, so the source re-reads them | undelivered records stay on disk and are delivered after the restart |
//! | backend outage | backpressure after `max_events` | absorbs `max_bytes`, then backpressure |
//!
//! When the buffer is full, [`WhenFull`] decides: `block` makes the sender wait (the
//! backpressure reaches the sources: the file tailer stops reading, the OTLP receiver
//! answers `UNAVAILABLE`), `drop_newest` discards the incoming batch, counts its items in
//! `warden_sink_dropped_total{reason="buffer_full"}` and acknowledges it as deliberately
//! discarded.
//!
//! The on-disk format and the crash guarantees are described in [`disk`]; the in-memory
//! queue in [`memory`].
//!
//! ```yaml
//! sinks:
//!   otlp:
//!     buffer: { type: disk, max_bytes: 1073741824, when_full: block, fsync: always }
//!   file:
//!     buffer: { type: memory, max_events: 20000, when_full: drop_newest }
//! ```

mod codec;
pub mod disk;
pub mod memory;

use crate::redact::Redacted;
use crate::signal::Batch;
use serde::{Deserialize, Deserializer};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Default `max_events` of a memory buffer.
pub const DEFAULT_MAX_EVENTS: usize = 10_000;
/// Default `max_bytes` of a disk buffer: 256 MiB.
pub const DEFAULT_MAX_BYTES: u64 = 256 * 1024 * 1024;
/// The smallest `max_bytes` [`BufferConfig::validate`] accepts: 1 MiB.
pub const MIN_MAX_BYTES: u64 = 1024 * 1024;

fn default_max_events() -> usize {
    DEFAULT_MAX_EVENTS
}

fn default_max_bytes() -> u64 {
    DEFAULT_MAX_BYTES
}

/// A sink's buffer (config key `buffer`, tagged by `type`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum BufferConfig {
    /// A bounded in-memory queue. The source is acknowledged only once the sink has
    /// delivered, so nothing is lost on restart as long as the source can re-read (file
    /// tail); an OTLP client is answered only after delivery.
    Memory {
        /// Items (metric points + log records + spans) the queue holds at most
        /// (default 10,000). A single batch larger than this is still accepted, alone.
        #[serde(default = "default_max_events")]
        max_events: usize,
        /// What a sender meets when the queue is full (default `block`).
        #[serde(default)]
        when_full: WhenFull,
    },
    /// Append-only segment files under `<data_dir>/buffers/<sink>/`; see [`disk`].
    Disk {
        /// Bytes of segment files on disk at most (default 256 MiB, at least 1 MiB).
        #[serde(default = "default_max_bytes")]
        max_bytes: u64,
        /// What a sender meets when `max_bytes` is reached or the disk is full
        /// (default `block`).
        #[serde(default)]
        when_full: WhenFull,
        /// When written records are forced to stable storage (default `always`).
        #[serde(default)]
        fsync: FsyncPolicy,
    },
}

impl Default for BufferConfig {
    fn default() -> BufferConfig {
        BufferConfig::Memory { max_events: DEFAULT_MAX_EVENTS, when_full: WhenFull::Block }
    }
}

impl BufferConfig {
    /// Checks the limits; every problem is pushed to `errors` prefixed with `path`
    /// (e.g. `sinks.otlp.buffer`).
    pub fn validate(&self, path: &str, errors: &mut Vec<String>) {
        match self {
            BufferConfig::Memory { max_events, .. } => {
                if *max_events == 0 {
                    errors.push(format!("{path}.max_events: must be at least 1"));
                }
            }
            BufferConfig::Disk { max_bytes, fsync, .. } => {
                if *max_bytes < MIN_MAX_BYTES {
                    errors.push(format!("{path}.max_bytes: must be at least {MIN_MAX_BYTES} (1 MiB)"));
                }
                if let FsyncPolicy::Interval(d) = fsync
                    && d.is_zero()
                {
                    errors.push(format!("{path}.fsync: interval must be longer than 0 (or use `always`)"));
                }
            }
        }
    }

    /// The policy when the buffer is full.
    pub fn when_full(&self) -> WhenFull {
        match self {
            BufferConfig::Memory { when_full, .. } | BufferConfig::Disk { when_full, .. } => *when_full,
        }
    }
}

/// What happens to a batch that arrives at a full buffer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// The sender waits until there is room: backpressure up to the sources. Nothing is
    /// lost, but a stalled backend eventually stalls ingestion for this pipeline.
    #[default]
    Block,
    /// The incoming batch is discarded, its items counted in
    /// `warden_sink_dropped_total{reason="buffer_full"}`, and its acknowledgement resolved
    /// as delivered (deliberately discarded), so the source moves on.
    DropNewest,
}

/// When the disk buffer forces written records to stable storage (`fdatasync`).
///
/// Config: `fsync: always` (default), `fsync: never`, or a duration such as
/// `fsync: 1s` (an interval).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// Records are fsynced before their batches are acknowledged, so an acknowledged
    /// batch survives a power loss. Group commit: the writer fsyncs once for every group
    /// of batches that arrived while it was writing, so the cost is one `fdatasync` per
    /// group, not per batch.
    #[default]
    Always,
    /// Batches are acknowledged once written (in the page cache: they survive a crash of
    /// the agent, `kill -9`, an OOM kill) and fsynced at most this often while there are
    /// unsynced writes. A power loss or kernel crash may lose up to one interval.
    Interval(Duration),
    /// Batches are acknowledged once written; the kernel writes them back when it likes.
    /// Survives a crash of the agent, not of the machine.
    Never,
}

impl<'de> Deserialize<'de> for FsyncPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<FsyncPolicy, D::Error> {
        let s = String::deserialize(d)?;
        match s.as_str() {
            "always" => Ok(FsyncPolicy::Always),
            "never" => Ok(FsyncPolicy::Never),
            other => humantime::parse_duration(other).map(FsyncPolicy::Interval).map_err(|_| {
                serde::de::Error::custom(format!(
                    "invalid fsync policy {other:?}: expected `always`, `never` or an interval such as `1s`"
                ))
            }),
        }
    }
}

/// Why a buffer could not be opened. Messages name the path at fault and carry no data.
#[derive(Debug, thiserror::Error)]
pub enum BufferError {
    /// The buffer directory could not be created.
    #[error("disk buffer {path}: cannot create directory: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The buffer directory could not be listed.
    #[error("disk buffer {path}: cannot read directory: {source}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A segment or position file could not be opened, read or repaired.
    #[error("disk buffer {path}: {what}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What was being done (`open`, `truncate torn tail`, ...).
        what: &'static str,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Another runner in this process already uses the directory.
    #[error("disk buffer {path}: already in use by another sink in this process")]
    InUse {
        /// The directory.
        path: PathBuf,
    },
    /// The writer thread could not be started.
    #[error("disk buffer {path}: cannot start writer thread: {source}")]
    Thread {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}

/// A batch taken out of a buffer, waiting for delivery.
#[derive(Debug)]
pub(crate) struct Pending {
    /// The batch. A memory-buffered batch still carries its source's token, which the
    /// runner resolves after delivery; a disk-buffered one has none (the disk buffer
    /// acknowledged the source when it wrote the record).
    pub batch: Redacted<Batch>,
    /// When the batch entered the buffer (for the latency histogram).
    pub enqueued: Instant,
    /// Where to move the read position once the batch is delivered (disk only).
    pub commit: Option<disk::Position>,
}

/// A cheap estimate of a batch's size in memory, for the `buffer_bytes` gauge of a memory
/// buffer: string and byte lengths plus a fixed overhead per item and attribute.
pub(crate) fn approx_size(batch: &Batch) -> u64 {
    use crate::signal::{AnyValue, KeyValue};
    fn value(v: &AnyValue) -> usize {
        match v {
            AnyValue::Str(s) => s.len(),
            AnyValue::Bytes(b) => b.len(),
            AnyValue::Array(a) => a.iter().map(|v| 16 + value(v)).sum(),
            AnyValue::KvList(kv) => attrs(kv),
            _ => 8,
        }
    }
    fn attrs(kv: &[KeyValue]) -> usize {
        kv.iter().map(|kv| 32 + kv.key.len() + value(&kv.value)).sum()
    }
    let metrics: usize = batch
        .metrics
        .iter()
        .map(|m| 64 + m.name.len() + m.labels.iter().map(|l| 48 + l.value.len()).sum::<usize>())
        .sum();
    let logs: usize = batch
        .logs
        .iter()
        .map(|l| 160 + l.severity_text.len() + l.event_name.len() + value(&l.body) + attrs(&l.attributes))
        .sum();
    let spans: usize = batch
        .spans
        .iter()
        .map(|s| {
            240 + s.name.len()
                + s.trace_state.len()
                + s.status.message.len()
                + attrs(&s.attributes)
                + s.events.iter().map(|e| 48 + e.name.len() + attrs(&e.attributes)).sum::<usize>()
                + s.links.iter().map(|l| 64 + l.trace_state.len() + attrs(&l.attributes)).sum::<usize>()
        })
        .sum();
    (metrics + logs + spans) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Result<BufferConfig, String> {
        serde_json::from_str(json).map_err(|e| e.to_string())
    }

    #[test]
    fn configs_parse_with_defaults() {
        assert_eq!(
            parse(r#"{"type":"memory"}"#).unwrap(),
            BufferConfig::Memory { max_events: 10_000, when_full: WhenFull::Block }
        );
        assert_eq!(
            parse(r#"{"type":"disk","when_full":"drop_newest","fsync":"250ms"}"#).unwrap(),
            BufferConfig::Disk {
                max_bytes: DEFAULT_MAX_BYTES,
                when_full: WhenFull::DropNewest,
                fsync: FsyncPolicy::Interval(Duration::from_millis(250))
            }
        );
        assert_eq!(
            parse(r#"{"type":"disk","max_bytes":2000000,"fsync":"never"}"#).unwrap(),
            BufferConfig::Disk { max_bytes: 2_000_000, when_full: WhenFull::Block, fsync: FsyncPolicy::Never }
        );
        assert_eq!(BufferConfig::default(), parse(r#"{"type":"memory"}"#).unwrap());
    }

    #[test]
    fn bad_configs_are_refused_with_the_field() {
        let e = parse(r#"{"type":"memory","max_event":5}"#).unwrap_err();
        assert!(e.contains("max_event"), "{e}");
        let e = parse(r#"{"type":"disk","fsync":"sometimes"}"#).unwrap_err();
        assert!(e.contains("invalid fsync policy \"sometimes\""), "{e}");
        let e = parse(r#"{"type":"tape"}"#).unwrap_err();
        assert!(e.contains("tape"), "{e}");
        let e = parse(r#"{"type":"memory","when_full":"drop_oldest"}"#).unwrap_err();
        assert!(e.contains("drop_oldest"), "{e}");

        let mut errors = Vec::new();
        BufferConfig::Disk {
            max_bytes: 1000,
            when_full: WhenFull::Block,
            fsync: FsyncPolicy::Interval(Duration::ZERO),
        }
        .validate("sinks.otlp.buffer", &mut errors);
        BufferConfig::Memory { max_events: 0, when_full: WhenFull::Block }.validate("sinks.file.buffer", &mut errors);
        assert_eq!(
            errors,
            vec![
                "sinks.otlp.buffer.max_bytes: must be at least 1048576 (1 MiB)".to_string(),
                "sinks.otlp.buffer.fsync: interval must be longer than 0 (or use `always`)".to_string(),
                "sinks.file.buffer.max_events: must be at least 1".to_string(),
            ]
        );
    }
}
