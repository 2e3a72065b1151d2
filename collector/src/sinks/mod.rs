//! Sinks: where redacted signals leave the agent, and the buffers and delivery loop in
//! front of each of them.
//!
//! ```text
//!  Redacted<Batch> ──> Fanout ──(share per sink, only the signals it takes)──> SinkInput
//!      ──> buffer (memory | disk) ──> runner: Sink::deliver, retry with backoff ──> backend
//! ```
//!
//! - Every sink API takes [`Redacted`] data: nothing unredacted can reach a backend.
//! - A sink implements only [`Sink::deliver`] (one attempt at one batch, with its own
//!   timeout). Buffering, retries with exponential backoff (honouring the backend's
//!   `Retry-After` / `RetryInfo`), counting and shutdown are the runner's
//!   ([`runner::spawn`]), the same for every sink.
//! - Acknowledgement: a share's [`crate::ack::AckToken`] is resolved by the memory buffer
//!   when the sink has delivered it, and by the disk buffer as soon as it is written to a
//!   segment (the disk buffer then owns it and survives restarts). A file-tail checkpoint
//!   therefore moves only after every sink that received the lines has delivered or
//!   durably buffered them.
//! - Every queue is bounded ([`buffer::BufferConfig`]); when one is full the sink's
//!   [`buffer::WhenFull`] policy applies: `block` (backpressure up to the sources) or
//!   `drop_newest` (counted).
//!
//! Sinks: [`file`] (JSON lines, rotation; the local default), [`otlp`] (OTLP/gRPC and
//! OTLP/HTTP protobuf), [`prometheus`] (`/federate` and remote write 1.0),
//! [`cloudwatch`] (CloudWatch Logs).

pub mod buffer;
pub mod cloudwatch;
pub mod fanout;
pub mod file;
pub mod otlp;
pub mod prometheus;
pub mod runner;

use crate::redact::Redacted;
use crate::signal::Batch;
use serde::{Deserialize, Deserializer};
use std::future::Future;
use std::time::Duration;

/// Which signals a sink takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SignalSet {
    /// Metric points.
    pub metrics: bool,
    /// Log records.
    pub logs: bool,
    /// Spans.
    pub traces: bool,
}

impl SignalSet {
    /// Every signal.
    pub const ALL: SignalSet = SignalSet { metrics: true, logs: true, traces: true };
    /// Logs only.
    pub const LOGS: SignalSet = SignalSet { metrics: false, logs: true, traces: false };
    /// Metrics only.
    pub const METRICS: SignalSet = SignalSet { metrics: true, logs: false, traces: false };
    /// Traces only.
    pub const TRACES: SignalSet = SignalSet { metrics: false, logs: false, traces: true };

    /// The signals in both sets.
    pub fn intersect(self, other: SignalSet) -> SignalSet {
        SignalSet {
            metrics: self.metrics && other.metrics,
            logs: self.logs && other.logs,
            traces: self.traces && other.traces,
        }
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        !(self.metrics || self.logs || self.traces)
    }
}

impl<'de> Deserialize<'de> for SignalSet {
    /// A list of `metrics`, `logs`, `traces` (config: `signals: [logs, traces]`).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<SignalSet, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        let mut set = SignalSet { metrics: false, logs: false, traces: false };
        for n in &names {
            match n.as_str() {
                "metrics" => set.metrics = true,
                "logs" => set.logs = true,
                "traces" => set.traces = true,
                other => {
                    return Err(serde::de::Error::custom(format!(
                        "unknown signal {other:?}: expected metrics, logs or traces"
                    )));
                }
            }
        }
        if set.is_empty() {
            return Err(serde::de::Error::custom("signals must name at least one of metrics, logs, traces"));
        }
        Ok(set)
    }
}

/// The result of one successful delivery attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Delivered {
    /// Items the backend accepted.
    pub accepted: u64,
    /// Items the backend refused for good (OTLP partial success, CloudWatch
    /// rejected-event info, events outside the accepted time range). Counted as
    /// dropped; the batch is not retried for them.
    pub rejected: u64,
}

/// Why a delivery attempt failed. Messages name the sink, endpoint and status; never a
/// log body, attribute or label value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying: a network error, a timeout, 429/502/503/504, gRPC `UNAVAILABLE` /
    /// `RESOURCE_EXHAUSTED`, CloudWatch throttling. `retry_after` is the backend's hint.
    #[error("{reason} (will retry)")]
    Retryable {
        /// What happened.
        reason: String,
        /// The delay the backend asked for, if it named one.
        retry_after: Option<Duration>,
    },
    /// Not worth retrying (a 400, an authentication failure, a payload the backend will
    /// never take): the batch is dropped and counted.
    #[error("{reason} (not retryable; batch dropped)")]
    Permanent {
        /// What happened.
        reason: String,
    },
}

impl DeliveryError {
    /// A retryable error without a server hint.
    pub fn retryable(reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Retryable { reason: reason.into(), retry_after: None }
    }

    /// A permanent error.
    pub fn permanent(reason: impl Into<String>) -> DeliveryError {
        DeliveryError::Permanent { reason: reason.into() }
    }
}

/// A destination for redacted signals. Implementations make one attempt per call and
/// bound it with their own timeout; the runner retries, buffers and counts.
pub trait Sink: Send + 'static {
    /// Delivers one batch (the sink may split it into several requests). After a
    /// `Retryable` error the runner calls again with the same batch, so a sink that
    /// splits should remember which parts already went (or accept duplicates of at most
    /// one batch).
    fn deliver(&mut self, batch: &Redacted<Batch>) -> impl Future<Output = Result<Delivered, DeliveryError>> + Send;

    /// Called once after the last delivery at shutdown (flush and close files, ...).
    fn close(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// Exponential backoff between delivery attempts.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First delay (default 500 ms).
    #[serde(deserialize_with = "crate::pipeline::duration::deserialize")]
    pub initial: Duration,
    /// Largest delay, also the cap on a server's `Retry-After` (default 30 s).
    #[serde(deserialize_with = "crate::pipeline::duration::deserialize")]
    pub max: Duration,
    /// Factor per attempt (default 2).
    pub multiplier: f64,
    /// Give up after this many attempts and drop the batch, counted; 0 = retry forever
    /// (the default: with a disk buffer nothing is lost while the backend is down).
    pub max_attempts: u32,
}

impl Default for RetryConfig {
    fn default() -> RetryConfig {
        RetryConfig {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
            multiplier: 2.0,
            max_attempts: 0,
        }
    }
}

impl RetryConfig {
    /// The delay before retry number `attempt` (1 = the first retry): exponential with
    /// ±20 % jitter, capped at `max`; a backend hint wins but is capped at `max` too.
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        if let Some(h) = hint {
            return h.min(self.max);
        }
        let exp = self.multiplier.max(1.0).powi(attempt.saturating_sub(1).min(64) as i32);
        let base = self.initial.as_secs_f64() * exp;
        let jitter = 0.8 + 0.4 * jitter_unit();
        Duration::from_secs_f64((base * jitter).min(self.max.as_secs_f64()))
    }
}

/// A cheap pseudo-random number in [0, 1) for jitter (not for anything secret).
fn jitter_unit() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    (h.finish() >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_honours_hints() {
        let r = RetryConfig::default();
        let d1 = r.delay(1, None);
        assert!(d1 >= Duration::from_millis(400) && d1 <= Duration::from_millis(600), "{d1:?}");
        let d4 = r.delay(4, None);
        assert!(d4 >= Duration::from_millis(3200) && d4 <= Duration::from_millis(4800), "{d4:?}");
        assert_eq!(r.delay(50, None), Duration::from_secs(30));
        assert_eq!(r.delay(1, Some(Duration::from_secs(7))), Duration::from_secs(7));
        assert_eq!(r.delay(1, Some(Duration::from_secs(700))), Duration::from_secs(30));
    }

    #[test]
    fn signal_sets_parse_and_reject_unknown_names() {
        let s: SignalSet = serde_json::from_str(r#"["logs","traces"]"#).unwrap();
        assert_eq!(s, SignalSet { metrics: false, logs: true, traces: true });
        let e = serde_json::from_str::<SignalSet>(r#"["log"]"#).unwrap_err().to_string();
        assert!(e.contains("unknown signal \"log\""), "{e}");
        assert!(serde_json::from_str::<SignalSet>("[]").is_err());
    }
}
