//! OTLP/gRPC transport: tonic clients of the three OTLP collector services over one
//! lazily connected channel (it reconnects by itself after the receiver comes back),
//! gzip via tonic's `send_compressed`, and the OTLP "Failures" mapping of gRPC status
//! codes to [`DeliveryError`], honouring a `google.rpc.RetryInfo` status detail.

use super::config::{OtlpSinkConfig, Resolved};
use super::{Exported, error_chain};
use crate::otlp::rpc::{RetryInfo, RpcStatus};
use crate::otlp::{Signal, logs_to_proto, metrics_to_proto, spans_to_proto};
use crate::signal::Batch;
use crate::sinks::DeliveryError;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use std::time::Duration;
use tonic::codec::CompressionEncoding;
use tonic::metadata::{Ascii, MetadataKey, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Status};

/// Largest response accepted (responses are tiny: a partial-success count and text).
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// The gRPC side of an [`super::OtlpSink`].
pub(super) struct GrpcExporter {
    endpoint: Endpoint,
    /// Built on first use: `connect_lazy` needs a running Tokio runtime, `new` does not.
    channel: Option<Channel>,
    headers: Vec<(MetadataKey<Ascii>, MetadataValue<Ascii>)>,
    gzip: bool,
    timeout: Duration,
}

impl GrpcExporter {
    /// Builds the endpoint (and its TLS connector); connects on the first export.
    pub(super) fn new(cfg: &OtlpSinkConfig, resolved: &Resolved, https: bool) -> Result<GrpcExporter, Vec<String>> {
        let mut endpoint = Endpoint::from_shared(cfg.endpoint.clone())
            .map_err(|e| vec![format!("endpoint: not a valid gRPC URI ({})", error_chain(&e))])?
            .timeout(cfg.timeout)
            .connect_timeout(cfg.timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
            .map_err(|e| vec![format!("endpoint: {}", error_chain(&e))])?;
        if https {
            let mut tls = ClientTlsConfig::new();
            tls = match &resolved.tls.ca {
                Some(ca) => tls.ca_certificate(Certificate::from_pem(ca)),
                None => tls.with_native_roots(),
            };
            if let (Some(cert), Some(key)) = (&resolved.tls.cert, &resolved.tls.key) {
                tls = tls.identity(Identity::from_pem(cert, key));
            }
            endpoint = endpoint.tls_config(tls).map_err(|e| vec![format!("tls: {}", error_chain(&e))])?;
        }
        let mut headers = Vec::with_capacity(resolved.headers.len());
        let mut errors = Vec::new();
        for (name, value) in &resolved.headers {
            // Both were checked by validation; an error here names the header only.
            match (MetadataKey::from_bytes(name.as_bytes()), MetadataValue::try_from(value.as_str())) {
                (Ok(k), Ok(mut v)) => {
                    v.set_sensitive(true);
                    headers.push((k, v));
                }
                _ => errors.push(format!("headers: {name} cannot be sent as gRPC metadata")),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(GrpcExporter {
            endpoint,
            channel: None,
            headers,
            gzip: cfg.compression == super::Compression::Gzip,
            timeout: cfg.timeout,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        req.set_timeout(self.timeout);
        let md = req.metadata_mut();
        for (k, v) in &self.headers {
            md.insert(k.clone(), v.clone());
        }
        req
    }

    /// Sends the `signal` part of `batch` as one export request.
    ///
    /// The call runs in its own task: tonic panics on some malformed responses (a
    /// `grpc-status-details-bin` trailer that is not base64), and a backend must not be
    /// able to kill the sink's runner. The task is aborted when the call is dropped or
    /// times out.
    pub(super) async fn export(
        &mut self,
        signal: Signal,
        batch: &Batch,
        target: &str,
    ) -> Result<Exported, DeliveryError> {
        let channel = self.channel.get_or_insert_with(|| self.endpoint.connect_lazy()).clone();
        let gzip = self.gzip;
        macro_rules! spawn_call {
            ($client:ident, $req:expr, $field:ident) => {{
                let mut client = $client::new(channel).max_decoding_message_size(MAX_RESPONSE_BYTES);
                if gzip {
                    client =
                        client.send_compressed(CompressionEncoding::Gzip).accept_compressed(CompressionEncoding::Gzip);
                }
                let req = self.request($req);
                tokio::spawn(async move {
                    client.export(req).await.map(|r| {
                        let p = r.into_inner().partial_success.unwrap_or_default();
                        Exported { rejected: u64::try_from(p.$field).unwrap_or(0) }
                    })
                })
            }};
        }
        let task = match signal {
            Signal::Traces => spawn_call!(
                TraceServiceClient,
                ExportTraceServiceRequest { resource_spans: spans_to_proto(&batch.spans) },
                rejected_spans
            ),
            Signal::Logs => spawn_call!(
                LogsServiceClient,
                ExportLogsServiceRequest { resource_logs: logs_to_proto(&batch.logs) },
                rejected_log_records
            ),
            Signal::Metrics => spawn_call!(
                MetricsServiceClient,
                ExportMetricsServiceRequest { resource_metrics: metrics_to_proto(&batch.metrics) },
                rejected_data_points
            ),
        };
        let _abort = AbortOnDrop(task.abort_handle());
        let what = || format!("otlp {} export to {target}", signal.as_str());
        // tonic enforces the timeout itself; this is the backstop for anything it misses.
        match tokio::time::timeout(self.timeout + Duration::from_secs(1), task).await {
            Err(_) => Err(DeliveryError::retryable(format!("{}: timed out after {:?}", what(), self.timeout))),
            Ok(Err(join)) => {
                Err(DeliveryError::retryable(format!("{}: the gRPC client failed ({})", what(), error_chain(&join))))
            }
            Ok(Ok(Err(status))) => Err(status_error(&status, signal, target)),
            Ok(Ok(Ok(e))) => Ok(e),
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Maps a failed call to a [`DeliveryError`] following the OTLP specification: retryable
/// are `CANCELLED`, `DEADLINE_EXCEEDED`, `ABORTED`, `OUT_OF_RANGE`, `UNAVAILABLE`,
/// `DATA_LOSS`, and `RESOURCE_EXHAUSTED` when the server sent `RetryInfo`; everything
/// else is permanent. A status tonic made itself from a transport error (it has a
/// source) is retryable whatever its code. The server's message is not repeated (it is
/// the backend's text and could quote data); a local transport error's text is.
pub(super) fn status_error(status: &Status, signal: Signal, target: &str) -> DeliveryError {
    let code = status.code();
    let local = std::error::Error::source(status).is_some();
    let retry_after = retry_info(status.details());
    let retryable = match code {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => true,
        Code::ResourceExhausted => retry_after.is_some(),
        _ => local,
    };
    let mut reason = format!("otlp {} export to {target}: gRPC status {} ({code:?})", signal.as_str(), code as i32);
    if local {
        reason.push_str(": ");
        reason.push_str(status.message());
        if let Some(src) = std::error::Error::source(status) {
            reason.push_str(": ");
            reason.push_str(&error_chain(src));
        }
    }
    if retryable { DeliveryError::Retryable { reason, retry_after } } else { DeliveryError::Permanent { reason } }
}

/// The `RetryInfo.retry_delay` in encoded `google.rpc.Status` details, if any (a
/// negative or undecodable delay counts as none).
pub(super) fn retry_info(details: &[u8]) -> Option<Duration> {
    use prost::Message as _;
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    status.details.iter().filter(|d| d.type_url.ends_with("/google.rpc.RetryInfo")).find_map(|d| {
        let delay = RetryInfo::decode(d.value.as_slice()).ok()?.retry_delay?;
        let secs = u64::try_from(delay.seconds).ok()?;
        let nanos = u32::try_from(delay.nanos).ok().filter(|n| *n < 1_000_000_000)?;
        Some(Duration::new(secs, nanos))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::otlp::rpc::{ProtoAny, ProtoDuration};
    use prost::Message as _;

    fn details(type_url: &str, seconds: i64, nanos: i32) -> Vec<u8> {
        RpcStatus {
            code: 14,
            message: "m".into(),
            details: vec![
                ProtoAny { type_url: "type.googleapis.com/google.rpc.DebugInfo".into(), value: vec![1, 2] },
                ProtoAny {
                    type_url: type_url.into(),
                    value: RetryInfo { retry_delay: Some(ProtoDuration { seconds, nanos }) }.encode_to_vec(),
                },
            ],
        }
        .encode_to_vec()
    }

    #[test]
    fn retry_info_is_decoded_from_status_details() {
        let d = details("type.googleapis.com/google.rpc.RetryInfo", 3, 500_000_000);
        assert_eq!(retry_info(&d), Some(Duration::from_millis(3500)));
        assert_eq!(retry_info(&details("type.googleapis.com/google.rpc.Other", 3, 0)), None);
        assert_eq!(retry_info(&details("type.googleapis.com/google.rpc.RetryInfo", -1, 0)), None);
        assert_eq!(retry_info(b"\xff\xff garbage"), None);
        assert_eq!(retry_info(&[]), None);
    }

    #[test]
    fn status_codes_map_as_the_otlp_specification_says() {
        let retry = details("type.googleapis.com/google.rpc.RetryInfo", 2, 0);
        let cases = [
            (Code::Unavailable, vec![], true),
            (Code::Cancelled, vec![], true),
            (Code::DeadlineExceeded, vec![], true),
            (Code::Aborted, vec![], true),
            (Code::OutOfRange, vec![], true),
            (Code::DataLoss, vec![], true),
            (Code::ResourceExhausted, vec![], false),
            (Code::ResourceExhausted, retry.clone(), true),
            (Code::InvalidArgument, vec![], false),
            (Code::Unauthenticated, vec![], false),
            (Code::PermissionDenied, vec![], false),
            (Code::Unimplemented, vec![], false),
            (Code::Internal, vec![], false),
            (Code::Unknown, vec![], false),
        ];
        for (code, d, retryable) in cases {
            let st = Status::with_details(code, "jane doe was here", d.clone().into());
            let e = status_error(&st, Signal::Logs, "http://h:1");
            assert_eq!(matches!(e, DeliveryError::Retryable { .. }), retryable, "{code:?}");
            let text = e.to_string();
            assert!(text.contains("otlp logs export to http://h:1: gRPC status"), "{text}");
            assert!(text.contains(&(code as i32).to_string()), "{text}");
            assert!(!text.contains("jane"), "the server's message is echoed: {text}");
            if let DeliveryError::Retryable { retry_after, .. } = e {
                assert_eq!(retry_after, (!d.is_empty()).then_some(Duration::from_secs(2)));
            }
        }
    }
}
