//! The one place that converts between the signal model ([`crate::signal`]) and OTLP
//! protobuf (`opentelemetry_proto::tonic::*`), in both directions, plus the decoding of
//! OTLP request bodies (binary protobuf and OTLP/JSON).
//!
//! - Spans ⇄ `ResourceSpans` ([`spans_from_proto`], [`spans_to_proto`]) and logs ⇄
//!   `ResourceLogs` ([`logs_from_proto`], [`logs_to_proto`]) are lossless apart from
//!   the `dropped_attributes_count` of resources, scopes and log records, which the model
//!   does not keep. Model → proto groups records by resource and scope (same `Arc`, or
//!   equal values).
//! - Metrics: OTLP → flat Prometheus-style points ([`metrics_from_proto`]) following the
//!   OpenTelemetry → Prometheus compatibility specification (see [`metrics`] for the exact
//!   rules and what is not supported); points → OTLP ([`metrics_to_proto`]) regroups
//!   families into Gauge / Sum / Histogram / Summary for the OTLP exporter.
//! - Items that cannot be represented (an id of the wrong length, a delta-temporality sum,
//!   an exponential histogram, ...) are skipped and counted in a [`ConversionReport`], from
//!   which the receiver builds the OTLP `partial_success` answer. Conversion never panics
//!   on any input.
//!
//! Invariant: no error or report message carries an attribute value, a log body or a
//! metric value (they may hold PHI); messages name fields, reasons, counts and positions.

mod common;
pub mod json;
mod logs;
pub mod metrics;
pub(crate) mod rpc;
mod traces;

pub use logs::{logs_from_proto, logs_to_proto};
pub use metrics::{metrics_from_proto, metrics_to_proto};
pub(crate) use traces::{kind_name, status_code_name};
pub use traces::{spans_from_proto, spans_to_proto};

use crate::signal::Batch;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The three OTLP signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    /// `/v1/traces`, `TraceService`.
    Traces,
    /// `/v1/logs`, `LogsService`.
    Logs,
    /// `/v1/metrics`, `MetricsService`.
    Metrics,
}

impl Signal {
    /// `traces`, `logs` or `metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::Traces => "traces",
            Signal::Logs => "logs",
            Signal::Metrics => "metrics",
        }
    }

    /// What one item of the signal is called in OTLP partial-success answers.
    pub fn item_name(self) -> &'static str {
        match self {
            Signal::Traces => "spans",
            Signal::Logs => "log records",
            Signal::Metrics => "data points",
        }
    }
}

/// How an OTLP request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Binary protobuf (`application/x-protobuf`, and gRPC).
    Protobuf,
    /// OTLP/JSON (`application/json`), see [`json`].
    Json,
}

/// A request body that could not be decoded at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Invalid binary protobuf (prost's description: field and wire type, no values).
    #[error("invalid protobuf {what}: {reason}")]
    Protobuf {
        /// The message type being decoded.
        what: &'static str,
        /// prost's reason.
        reason: String,
    },
    /// Invalid OTLP/JSON.
    #[error("invalid OTLP/JSON {what}: {error}")]
    Json {
        /// The message type being decoded.
        what: &'static str,
        /// Where and why.
        error: json::JsonError,
    },
}

/// What a conversion skipped: the number of rejected items (spans, log records or OTLP
/// data points) and a count per reason. Reasons are fixed strings, never data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConversionReport {
    /// Items not converted.
    pub rejected: u64,
    /// Count per reason, for rejected items and for parts dropped from accepted items
    /// (e.g. a span link with an invalid id).
    pub reasons: BTreeMap<&'static str, u64>,
}

impl ConversionReport {
    /// Counts one rejected item.
    pub fn reject(&mut self, reason: &'static str) {
        self.reject_n(reason, 1);
    }

    /// Counts `n` rejected items with the same reason.
    pub fn reject_n(&mut self, reason: &'static str, n: u64) {
        if n == 0 {
            return;
        }
        self.rejected += n;
        *self.reasons.entry(reason).or_default() += n;
    }

    /// Counts a part dropped from an item that was otherwise accepted.
    pub fn note(&mut self, reason: &'static str) {
        *self.reasons.entry(reason).or_default() += 1;
    }

    /// Whether nothing was rejected or dropped.
    pub fn is_clean(&self) -> bool {
        self.reasons.is_empty()
    }

    /// A one-line English summary for OTLP `partial_success.error_message`, e.g.
    /// `2 rejected: trace_id is not 16 bytes (1), delta temporality is not supported (1)`.
    pub fn message(&self) -> String {
        let mut out = format!("{} rejected", self.rejected);
        let mut sep = ": ";
        for (reason, n) in &self.reasons {
            let _ = write!(out, "{sep}{reason} ({n})");
            sep = ", ";
        }
        out
    }

    /// Adds another report's counts to this one.
    pub fn merge(&mut self, other: ConversionReport) {
        self.rejected += other.rejected;
        for (k, v) in other.reasons {
            *self.reasons.entry(k).or_default() += v;
        }
    }
}

/// Decodes an `ExportTraceServiceRequest` body.
pub fn decode_traces(body: &[u8], encoding: Encoding) -> Result<ExportTraceServiceRequest, DecodeError> {
    const WHAT: &str = "ExportTraceServiceRequest";
    match encoding {
        Encoding::Protobuf => decode_protobuf(body, WHAT),
        Encoding::Json => json::decode_traces(body).map_err(|error| DecodeError::Json { what: WHAT, error }),
    }
}

/// Decodes an `ExportLogsServiceRequest` body.
pub fn decode_logs(body: &[u8], encoding: Encoding) -> Result<ExportLogsServiceRequest, DecodeError> {
    const WHAT: &str = "ExportLogsServiceRequest";
    match encoding {
        Encoding::Protobuf => decode_protobuf(body, WHAT),
        Encoding::Json => json::decode_logs(body).map_err(|error| DecodeError::Json { what: WHAT, error }),
    }
}

/// Decodes an `ExportMetricsServiceRequest` body.
pub fn decode_metrics(body: &[u8], encoding: Encoding) -> Result<ExportMetricsServiceRequest, DecodeError> {
    const WHAT: &str = "ExportMetricsServiceRequest";
    match encoding {
        Encoding::Protobuf => decode_protobuf(body, WHAT),
        Encoding::Json => json::decode_metrics(body).map_err(|error| DecodeError::Json { what: WHAT, error }),
    }
}

fn decode_protobuf<M: prost::Message + Default>(body: &[u8], what: &'static str) -> Result<M, DecodeError> {
    M::decode(body).map_err(|e| DecodeError::Protobuf { what, reason: e.to_string() })
}

/// Number of OTLP items (spans, log records, data points) in a request: what the
/// receiver counts as received and what `rejected_*` counts are relative to.
pub fn count_items_traces(req: &ExportTraceServiceRequest) -> u64 {
    let n: usize = req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
    n as u64
}

/// Number of log records in a request.
pub fn count_items_logs(req: &ExportLogsServiceRequest) -> u64 {
    let n: usize = req.resource_logs.iter().flat_map(|r| &r.scope_logs).map(|s| s.log_records.len()).sum();
    n as u64
}

/// Number of data points in a request (all metric types).
pub fn count_items_metrics(req: &ExportMetricsServiceRequest) -> u64 {
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;
    let mut n = 0usize;
    for m in req.resource_metrics.iter().flat_map(|r| &r.scope_metrics).flat_map(|s| &s.metrics) {
        n += match &m.data {
            Some(Data::Gauge(g)) => g.data_points.len(),
            Some(Data::Sum(s)) => s.data_points.len(),
            Some(Data::Histogram(h)) => h.data_points.len(),
            Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
            Some(Data::Summary(s)) => s.data_points.len(),
            None => 0,
        };
    }
    n as u64
}

/// A decoded and converted request: the batch (without ack), how many OTLP items the
/// request held, and what was skipped.
#[derive(Debug)]
pub struct Converted {
    /// The signals, ready for the pipeline.
    pub batch: Batch,
    /// OTLP items in the request (spans, log records or data points).
    pub received: u64,
    /// What conversion skipped.
    pub report: ConversionReport,
}

/// Converts a decoded trace request.
pub fn convert_traces(req: ExportTraceServiceRequest) -> Converted {
    let received = count_items_traces(&req);
    let mut report = ConversionReport::default();
    let spans = spans_from_proto(req.resource_spans, &mut report);
    Converted { batch: Batch::spans(spans), received, report }
}

/// Converts a decoded logs request.
pub fn convert_logs(req: ExportLogsServiceRequest) -> Converted {
    let received = count_items_logs(&req);
    let mut report = ConversionReport::default();
    let logs = logs_from_proto(req.resource_logs, &mut report);
    Converted { batch: Batch::logs(logs), received, report }
}

/// Converts a decoded metrics request.
pub fn convert_metrics(req: ExportMetricsServiceRequest) -> Converted {
    let received = count_items_metrics(&req);
    let mut report = ConversionReport::default();
    let points = metrics_from_proto(req.resource_metrics, &mut report);
    Converted { batch: Batch::metrics(points), received, report }
}

/// Decodes a request body of `signal` in `encoding` and converts it: the whole receive
/// path short of the network, shared by the HTTP receiver and the fuzz targets.
pub fn decode_and_convert(signal: Signal, encoding: Encoding, body: &[u8]) -> Result<Converted, DecodeError> {
    Ok(match signal {
        Signal::Traces => convert_traces(decode_traces(body, encoding)?),
        Signal::Logs => convert_logs(decode_logs(body, encoding)?),
        Signal::Metrics => convert_metrics(decode_metrics(body, encoding)?),
    })
}

/// The binary protobuf `Export<Signal>ServiceRequest` for the items of `signal` in
/// `batch` (the OTLP exporter's request body).
pub fn encode_request(signal: Signal, batch: &Batch) -> Vec<u8> {
    use prost::Message as _;
    match signal {
        Signal::Traces => ExportTraceServiceRequest { resource_spans: spans_to_proto(&batch.spans) }.encode_to_vec(),
        Signal::Logs => ExportLogsServiceRequest { resource_logs: logs_to_proto(&batch.logs) }.encode_to_vec(),
        Signal::Metrics => {
            ExportMetricsServiceRequest { resource_metrics: metrics_to_proto(&batch.metrics) }.encode_to_vec()
        }
    }
}

/// Nanoseconds since the epoch → milliseconds (saturating).
pub(crate) fn nanos_to_millis(ns: u64) -> i64 {
    i64::try_from(ns / 1_000_000).unwrap_or(i64::MAX)
}
