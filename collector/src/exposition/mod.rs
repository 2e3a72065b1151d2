//! The Prometheus text exposition formats: a parser for text format 0.0.4 and
//! OpenMetrics 1.0 text, and a writer for text 0.0.4 (what `/federate` serves).
//!
//! The parser is a hand-written, line-at-a-time byte scanner (`memchr` to find line ends
//! and quotes). It allocates only what the [`MetricPoint`]s it returns own: the name, the
//! label vector (exact capacity) and each label's name and value. Label positions are
//! collected in a scratch vector that a [`Parser`] reuses across calls.
//!
//! Semantics follow Prometheus 3.x:
//!
//! - Any error fails the whole exposition (a scrape is all or nothing). A [`ParseError`]
//!   names the line and column and what is wrong, never the content of the line: label
//!   values (and free text) can carry PHI. Metric and label *names* may appear in errors.
//! - Each point's [`MetricKind`] comes from the `# TYPE` line of its family, suffix-aware:
//!   `foo_bucket`, `foo_sum`, `foo_count` (and `foo_created`) belong to histogram `foo`;
//!   `foo_sum`, `foo_count` and `foo` itself to summary `foo`; `foo_total` and
//!   `foo_created` to an OpenMetrics counter `foo`. Samples without a family are
//!   [`MetricKind::Unknown`].
//! - OpenMetrics-only types have no [`MetricKind`] of their own and map to
//!   [`MetricKind::Gauge`], because their values may go down: `gaugehistogram` (samples
//!   `foo_bucket{le}`, `foo_gsum`, `foo_gcount`; treating them as a counter-like
//!   histogram would make `rate()` see resets), `info` (`foo_info`, always 1) and
//!   `stateset` (one 0/1 sample per state). Sample names are never rewritten.
//! - The `le` label of a histogram and the `quantile` label of a summary are normalised
//!   to Prometheus' float format (`le="1"` → `le="1.0"`, `le="+Inf"`), as Prometheus 3
//!   does, so the same series has the same labels whichever format it was scraped in.
//! - Label values unescape `\\`, `\"` and `\n`; any other backslash sequence is kept as
//!   written (as Prometheus does). Labels come out sorted by name; a repeated label name,
//!   `__name__` as a label, an invalid metric or label name, or a label value that is not
//!   UTF-8 is an error.
//! - Timestamps are optional: integer milliseconds in 0.0.4, float seconds in
//!   OpenMetrics (converted to milliseconds, rounded). Samples without one get the
//!   caller's default timestamp.
//! - Values may be `NaN`, `+Inf`, `-Inf` (and any float Rust and Go both accept).
//! - Exemplars (` # {trace_id="..."} 1.0 [ts]` after the value or timestamp) are
//!   ignored; in OpenMetrics their syntax is still checked.
//! - 0.0.4 is lenient where Prometheus is: blank lines, extra spaces and tabs between
//!   tokens, `#` comments that are not `HELP`/`TYPE`, a trailing comma in a label set, a
//!   repeated `# TYPE` (the last one wins). OpenMetrics is strict where the spec is: the
//!   exposition must end with `# EOF` (optionally followed by one newline) and nothing
//!   may follow it, blank lines and other comments are errors, a family has at most one
//!   `# TYPE`, and a `# UNIT` must be a suffix of its family name.
//! - Not supported: Prometheus 3's quoted UTF-8 metric names (`{"my.metric"}`), native
//!   histograms (they need the protobuf format, which Warden does not request).

mod encode;
mod parse;
#[cfg(test)]
mod tests;

pub use encode::{encode_text, write_float, write_openmetrics_float};
pub use parse::Parser;

#[cfg(doc)]
use crate::signal::MetricKind;
use crate::signal::MetricPoint;

/// The bit pattern of Prometheus' staleness marker: a NaN a source writes to say "this
/// series is gone" (it never comes from a scraped `NaN`, which has other bits).
pub const STALE_NAN_BITS: u64 = 0x7ff0000000000002;

/// The staleness marker as a value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// Whether `v` is the staleness marker (not merely some NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// The `Accept` header Prometheus sends when scraping: OpenMetrics preferred, then text
/// 0.0.4, then anything.
pub const SCRAPE_ACCEPT_HEADER: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// Which text format an exposition is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Format {
    /// Prometheus text format 0.0.4 (`text/plain; version=0.0.4`).
    #[default]
    PrometheusText,
    /// OpenMetrics 1.0 text (`application/openmetrics-text; version=1.0.0`).
    OpenMetrics,
}

impl Format {
    /// The format for a response `Content-Type`: OpenMetrics for
    /// `application/openmetrics-text` (any version), text 0.0.4 for anything else,
    /// including a missing or unknown type (the behaviour of Prometheus 2; the text
    /// parser then rejects what is not an exposition).
    pub fn from_content_type(content_type: Option<&str>) -> Format {
        let media = content_type.unwrap_or("").split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Format::OpenMetrics
        } else {
            Format::PrometheusText
        }
    }
}

/// Why an exposition was rejected, and where: see [`ParseError`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A metric name is empty or has a character outside `[a-zA-Z0-9_:]` (or starts
    /// with a digit).
    #[error("invalid metric name")]
    InvalidMetricName,
    /// A label name is empty or has a character outside `[a-zA-Z0-9_]` (or starts with a
    /// digit).
    #[error("invalid label name in a sample of {metric}")]
    InvalidLabelName {
        /// The metric the sample belongs to.
        metric: String,
    },
    /// The same label name appears twice in one label set.
    #[error("duplicate label name {label} in a sample of {metric}")]
    DuplicateLabel {
        /// The metric.
        metric: String,
        /// The repeated label name.
        label: String,
    },
    /// `__name__` written as a label.
    #[error("reserved label name __name__ in a sample of {metric}")]
    ReservedLabel {
        /// The metric.
        metric: String,
    },
    /// A label name not followed by `=`.
    #[error("expected '=' after label name {label}")]
    ExpectedEquals {
        /// The label name.
        label: String,
    },
    /// A label value that does not start with `"`.
    #[error("expected '\"' to open the value of label {label}")]
    ExpectedQuote {
        /// The label name.
        label: String,
    },
    /// A label value whose closing quote is missing.
    #[error("unterminated value of label {label}")]
    UnterminatedLabelValue {
        /// The label name.
        label: String,
    },
    /// A label value (after unescaping) that is not valid UTF-8.
    #[error("value of label {label} is not valid UTF-8")]
    InvalidUtf8 {
        /// The label name.
        label: String,
    },
    /// Something other than `,` or `}` after a label value.
    #[error("expected ',' or '}}' after a label value")]
    ExpectedCommaOrBrace,
    /// The line ends inside a label set.
    #[error("unterminated label set")]
    UnterminatedLabels,
    /// A character that cannot follow the metric name or label set (e.g. `-` in a name).
    #[error("unexpected character after the metric name or labels")]
    UnexpectedCharacter,
    /// A sample line without a value.
    #[error("missing sample value")]
    MissingValue,
    /// A value that is not a float (nor `NaN`, `+Inf`, `-Inf`).
    #[error("invalid sample value")]
    InvalidValue,
    /// A timestamp that is not an integer (0.0.4: milliseconds) or a finite float
    /// (OpenMetrics: seconds) within range.
    #[error("invalid timestamp")]
    InvalidTimestamp,
    /// Text after the timestamp that is not an exemplar.
    #[error("unexpected text after the sample")]
    TrailingContent,
    /// An OpenMetrics exemplar that is not `# {labels} value [timestamp]`.
    #[error("invalid exemplar")]
    InvalidExemplar,
    /// A `# HELP`, `# TYPE` or `# UNIT` line without a metric name.
    #[error("missing metric name in a # {keyword} line")]
    MissingMetadataName {
        /// `HELP`, `TYPE` or `UNIT`.
        keyword: &'static str,
    },
    /// A `# TYPE` line without a type.
    #[error("missing type in the # TYPE line of {metric}")]
    MissingType {
        /// The family.
        metric: String,
    },
    /// A type word this format does not define.
    #[error("unknown type in the # TYPE line of {metric}")]
    UnknownType {
        /// The family.
        metric: String,
    },
    /// A second `# TYPE` line for one family (OpenMetrics).
    #[error("second # TYPE line for {metric}")]
    DuplicateType {
        /// The family.
        metric: String,
    },
    /// A `# UNIT` that is not a suffix of the family name (OpenMetrics).
    #[error("unit is not a suffix of the metric name {metric}")]
    UnitNotSuffix {
        /// The family.
        metric: String,
    },
    /// An OpenMetrics comment line other than `# HELP`, `# TYPE`, `# UNIT`, `# EOF`.
    #[error("invalid comment line (OpenMetrics allows only # HELP, # TYPE, # UNIT and # EOF)")]
    InvalidComment,
    /// A blank line in OpenMetrics.
    #[error("blank line (not allowed in OpenMetrics)")]
    BlankLine,
    /// An OpenMetrics exposition that does not end with `# EOF`.
    #[error("missing # EOF at the end of the OpenMetrics exposition")]
    MissingEof,
    /// Anything after `# EOF`.
    #[error("content after # EOF")]
    ContentAfterEof,
}

/// A rejected exposition: where (1-based line and byte column) and what is wrong.
/// The message never contains the line's text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based byte column within the line.
    pub column: usize,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// Parses a whole exposition; samples without a timestamp get `default_timestamp_ms`.
/// For repeated parsing (a scrape loop) keep a [`Parser`] to reuse its buffers.
pub fn parse(input: &[u8], format: Format, default_timestamp_ms: i64) -> Result<Vec<MetricPoint>, ParseError> {
    let mut out = Vec::new();
    Parser::new(format).parse_into(input, default_timestamp_ms, &mut out)?;
    Ok(out)
}
