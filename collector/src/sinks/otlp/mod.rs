//! The OTLP exporter sink: traces, logs and metrics to any OTLP receiver (an
//! OpenTelemetry Collector, a vendor, another Warden) over OTLP/gRPC ([`grpc`], tonic)
//! or OTLP/HTTP with protobuf bodies ([`http`], reqwest); gzip, static and secret headers
//! (API keys from the environment or a file), TLS (custom CA, client certificates) and a
//! per-request timeout. Configuration and its validation: [`config`].
//!
//! One [`Sink::deliver`] call sends up to three export requests, one per signal present
//! in the batch, converted by [`crate::otlp`] (the crate's only model ⇄ OTLP code).
//! Retries are the runner's ([`crate::sinks::runner`]); the sink only classifies
//! failures as the OTLP specification says and passes the server's `Retry-After` /
//! `RetryInfo` on. When one signal's request fails with a retryable error after another
//! succeeded, the sink remembers which parts went (keyed by a SHA-256 fingerprint of the
//! batch), so the runner's retry with the same batch sends only the rest — no
//! duplicates from partial failures.
//!
//! Counting: `Delivered.accepted` is the number of model items (spans, log records,
//! metric points) sent minus those the receiver rejected; `Delivered.rejected` is the
//! receiver's `partial_success` count (capped at the items sent) plus the items of a
//! signal refused for good while another signal of the same batch went through. When
//! every part is refused for good the call returns [`DeliveryError::Permanent`].
//!
//! Invariant: nothing from the batch, no header value and no text from the server
//! (`partial_success.error_message`, gRPC status messages, HTTP error bodies — a
//! backend may quote the data it refused) appears in an error, a log line or `Debug`
//! output. Messages name the endpoint (without credentials), the signal and the status.

pub mod config;
mod grpc;
mod http;

pub use config::{Compression, DEFAULT_TIMEOUT, HttpPaths, OtlpSinkConfig, Protocol, TlsConfig};

use crate::otlp::Signal;
use crate::redact::Redacted;
use crate::signal::Batch;
use crate::sinks::{Delivered, DeliveryError, Sink};
use std::fmt;
use std::time::Duration;

/// The result of one successful export request.
pub(super) struct Exported {
    /// `partial_success.rejected_*` as the receiver reported it.
    rejected: u64,
}

/// Why an [`OtlpSink`] could not be built: every problem, each naming its field. No
/// message carries a header value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid otlp sink configuration: {}", .0.join("; "))]
pub struct BuildError(pub Vec<String>);

enum Transport {
    Grpc(Box<grpc::GrpcExporter>),
    Http(Box<http::HttpExporter>),
}

/// What happened to one signal's part of a batch.
#[derive(Debug, Clone)]
enum Outcome {
    /// The receiver took it (`rejected` of the items refused by partial success).
    Sent { accepted: u64, rejected: u64 },
    /// Refused for good.
    Refused { items: u64, reason: String },
}

/// Parts of a batch already settled when a retryable error cut a delivery short.
struct Pending {
    fingerprint: [u8; 32],
    done: Vec<(Signal, Outcome)>,
}

/// An OTLP exporter; implements [`Sink`].
pub struct OtlpSink {
    transport: Transport,
    /// The endpoint without credentials, for messages.
    endpoint: String,
    protocol: Protocol,
    compression: Compression,
    header_names: Vec<String>,
    timeout: Duration,
    pending: Option<Pending>,
}

impl fmt::Debug for OtlpSink {
    /// Header values are secrets: only names are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtlpSink")
            .field("endpoint", &self.endpoint)
            .field("protocol", &self.protocol)
            .field("compression", &self.compression)
            .field("headers", &self.header_names)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl OtlpSink {
    /// Validates `config`, reads header values (environment variables through
    /// `std::env`, files) and TLS files, and builds the client. Connects on the first
    /// delivery. Needs no Tokio runtime.
    pub fn new(config: &OtlpSinkConfig) -> Result<OtlpSink, BuildError> {
        OtlpSink::with_env(config, &|name| std::env::var(name).ok())
    }

    /// [`OtlpSink::new`] with environment variables read through `env`.
    pub fn with_env(config: &OtlpSinkConfig, env: &dyn Fn(&str) -> Option<String>) -> Result<OtlpSink, BuildError> {
        config.validate().map_err(BuildError)?;
        let url = config::parse_endpoint(&config.endpoint).map_err(|e| BuildError(vec![format!("endpoint: {e}")]))?;
        let resolved = config.resolve(env).map_err(BuildError)?;
        let transport = match config.protocol {
            Protocol::Grpc => Transport::Grpc(Box::new(
                grpc::GrpcExporter::new(config, &resolved, url.scheme() == "https").map_err(BuildError)?,
            )),
            Protocol::HttpProtobuf => {
                Transport::Http(Box::new(http::HttpExporter::new(config, &resolved, &url).map_err(BuildError)?))
            }
        };
        Ok(OtlpSink {
            transport,
            endpoint: config::safe_endpoint(&config.endpoint),
            protocol: config.protocol,
            compression: config.compression,
            header_names: resolved.headers.into_iter().map(|(k, _)| k).collect(),
            timeout: config.timeout,
            pending: None,
        })
    }

    async fn export(&mut self, signal: Signal, batch: &Batch) -> Result<Exported, DeliveryError> {
        match &mut self.transport {
            Transport::Grpc(g) => g.export(signal, batch, &self.endpoint).await,
            Transport::Http(h) => h.export(signal, batch).await,
        }
    }

    async fn deliver_batch(&mut self, batch: &Batch) -> Result<Delivered, DeliveryError> {
        let parts: Vec<(Signal, u64)> = [
            (Signal::Traces, batch.spans.len()),
            (Signal::Logs, batch.logs.len()),
            (Signal::Metrics, batch.metrics.len()),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(s, n)| (s, n as u64))
        .collect();
        if parts.is_empty() {
            return Ok(Delivered::default());
        }
        // A retry of the batch that failed half-way skips what already went.
        let mut done = match self.pending.take() {
            Some(p) if p.fingerprint == fingerprint(batch) => p.done,
            _ => Vec::new(),
        };
        let mut failure: Option<DeliveryError> = None;
        for (signal, items) in parts {
            if done.iter().any(|(s, _)| *s == signal) {
                continue;
            }
            match self.export(signal, batch).await {
                Ok(e) => {
                    let rejected = e.rejected.min(items);
                    if rejected > 0 {
                        tracing::debug!(endpoint = %self.endpoint, signal = signal.as_str(), rejected, "OTLP receiver rejected part of an export (partial success)");
                    }
                    done.push((signal, Outcome::Sent { accepted: items - rejected, rejected }));
                }
                Err(DeliveryError::Permanent { reason }) => done.push((signal, Outcome::Refused { items, reason })),
                Err(DeliveryError::Retryable { reason, retry_after }) => {
                    failure = Some(match failure {
                        None => DeliveryError::Retryable { reason, retry_after },
                        Some(DeliveryError::Retryable { reason: r0, retry_after: a0 }) => DeliveryError::Retryable {
                            reason: format!("{r0}; {reason}"),
                            retry_after: a0.max(retry_after),
                        },
                        Some(other) => other,
                    });
                }
            }
        }
        if let Some(err) = failure {
            if !done.is_empty() {
                self.pending = Some(Pending { fingerprint: fingerprint(batch), done });
            }
            return Err(err);
        }
        let mut delivered = Delivered::default();
        let mut refused = Vec::new();
        let mut any_sent = false;
        for (signal, outcome) in done {
            match outcome {
                Outcome::Sent { accepted, rejected } => {
                    any_sent = true;
                    delivered.accepted += accepted;
                    delivered.rejected += rejected;
                }
                Outcome::Refused { items, reason } => {
                    delivered.rejected += items;
                    refused.push((signal, items, reason));
                }
            }
        }
        if !any_sent {
            let reason = refused.into_iter().map(|(_, _, r)| r).collect::<Vec<_>>().join("; ");
            return Err(DeliveryError::Permanent { reason });
        }
        for (signal, items, reason) in refused {
            tracing::warn!(endpoint = %self.endpoint, signal = signal.as_str(), items, %reason, "OTLP export refused for good; these items are dropped");
        }
        Ok(delivered)
    }
}

impl Sink for OtlpSink {
    async fn deliver(&mut self, batch: &Redacted<Batch>) -> Result<Delivered, DeliveryError> {
        self.deliver_batch(batch.get()).await
    }
}

/// A SHA-256 over the batch's items (serde JSON, deterministic), to recognise the
/// runner's retry of the same batch. Computed only after a partial failure.
fn fingerprint(batch: &Batch) -> [u8; 32] {
    use sha2::Digest as _;
    struct W(sha2::Sha256);
    impl std::io::Write for W {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.update(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut w = W(sha2::Sha256::new());
    // Serializing the model into a hasher cannot fail (no map keys that are not strings).
    let _ = serde_json::to_writer(&mut w, &(&batch.spans, &batch.logs, &batch.metrics));
    w.0.finalize().into()
}

/// An error and its sources, joined with `: ` (library errors only: no data in them).
pub(super) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    let mut depth = 0;
    while let Some(s) = src {
        let text = s.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
        depth += 1;
        if depth == 8 {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{LogRecord, MetricKind, MetricPoint};

    #[test]
    fn fingerprints_tell_batches_apart() {
        let mut a = Batch::logs(vec![LogRecord { body: "x".into(), ..LogRecord::default() }]);
        let f = fingerprint(&a);
        assert_eq!(f, fingerprint(&a));
        a.logs[0].body = "y".into();
        assert_ne!(f, fingerprint(&a));
        let stale = f64::from_bits(crate::otlp::metrics::STALE_NAN_BITS);
        let m = Batch::metrics(vec![MetricPoint::new("m", vec![], MetricKind::Gauge, stale, 1)]);
        assert_eq!(fingerprint(&m), fingerprint(&m));
    }

    #[test]
    fn debug_shows_header_names_not_values() {
        let mut c = OtlpSinkConfig::new("http://127.0.0.1:4318", Protocol::HttpProtobuf);
        c.headers.insert("x-api-key".into(), "s3cr3t-value".into());
        let sink = OtlpSink::new(&c).unwrap();
        let d = format!("{sink:?} {c:?}");
        assert!(d.contains("x-api-key") && !d.contains("s3cr3t"), "{d}");
    }
}
