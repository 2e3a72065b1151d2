//! The time-series store the rules read and write.
//!
//! [`Queryable`] is what the PromQL evaluator reads through; [`Appendable`] is what
//! recording rules, the `ALERTS` series and the agent's collectors write through. [`Db`]
//! is the in-memory store implementing both.
//!
//! Timestamps are milliseconds since the Unix epoch (`i64`), as in Prometheus. A sample
//! whose value has the bit pattern [`STALE_NAN_BITS`] is a staleness marker: the series
//! ended there, and selectors must not look back past it.

use promql_parser::label::Matcher;

use crate::labels::Labels;

/// Bit pattern of Prometheus' staleness-marker NaN.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// The staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True if `v` is a staleness marker (and not just any NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One float sample.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub t: i64,
    /// The value; may be NaN, ±Inf, or a staleness marker.
    pub v: f64,
}

/// A series and some of its samples, in ascending time order.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// The series' labels, `__name__` included.
    pub labels: Labels,
    /// Samples in ascending time order.
    pub samples: Vec<Sample>,
}

/// Read access for the evaluator.
pub trait Queryable: Send + Sync {
    /// Every series matching all `matchers` (a label absent from a series matches as the
    /// empty string, as in Prometheus) that has at least one sample in `[mint, maxt]`
    /// (both ends inclusive), with only those samples, in ascending time order.
    /// Staleness markers are returned like other samples. Series come sorted by labels.
    fn select(&self, matchers: &[Matcher], mint: i64, maxt: i64) -> Vec<Series>;
}

/// Why a sample was not stored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AppendError {
    /// The sample is older than the newest one of its series.
    #[error("out-of-order sample for {labels}: {t} is before the last timestamp {last}")]
    OutOfOrder {
        /// The series.
        labels: Labels,
        /// The rejected timestamp.
        t: i64,
        /// The newest stored timestamp.
        last: i64,
    },
    /// Same timestamp as the newest sample, different value.
    #[error("duplicate sample for timestamp {t} with a different value for {labels}")]
    DuplicateTimestamp {
        /// The series.
        labels: Labels,
        /// The timestamp.
        t: i64,
    },
    /// The store holds its maximum number of series and this would be a new one.
    #[error("series limit of {limit} reached: new series {labels} not stored")]
    SeriesLimit {
        /// The configured limit.
        limit: usize,
        /// The refused series.
        labels: Labels,
    },
    /// The sample is older than the retention window allows.
    #[error("sample at {t} for {labels} is outside the retention window")]
    TooOld {
        /// The series.
        labels: Labels,
        /// The rejected timestamp.
        t: i64,
    },
}

/// Write access for recording rules, alert series and collectors.
pub trait Appendable: Send + Sync {
    /// Appends one sample to the series named by `labels` (created if new).
    fn append(&self, labels: &Labels, t: i64, v: f64) -> Result<(), AppendError>;

    /// As [`Appendable::append`], for a writer that appends to the same series again and
    /// again (a rule's output): `handle` is the writer's memory of the series, kept between
    /// calls with the same `labels` (start with [`SeriesHandle::default`]). A store may keep
    /// its series in it and then skip finding the series by its labels. The result is the
    /// same as `append`'s, whatever the handle holds: a stale, foreign or mismatched handle
    /// only costs the lookup. The default ignores the handle.
    fn append_with_handle(
        &self,
        labels: &Labels,
        t: i64,
        v: f64,
        handle: &mut SeriesHandle,
    ) -> Result<(), AppendError> {
        let _ = handle;
        self.append(labels, t, v)
    }
}

/// A store's handle on one series, held by a writer between appends (see
/// [`Appendable::append_with_handle`]). Opaque; cloning it shares the handle.
#[derive(Clone, Default)]
pub struct SeriesHandle(pub(crate) Option<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

impl std::fmt::Debug for SeriesHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "SeriesHandle(set)" } else { "SeriesHandle(empty)" })
    }
}

mod chunk;
mod db;
mod index;
pub use chunk::SEALED_CHUNK_OVERHEAD;
pub use db::{Db, DbConfig, DbStats};
