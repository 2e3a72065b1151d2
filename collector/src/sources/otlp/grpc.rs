//! OTLP/gRPC: the three `Export` services on one tonic server.
//!
//! tonic enforces the message size limit itself (before our handler runs) and answers
//! `OUT_OF_RANGE` for an oversized uncompressed message but `RESOURCE_EXHAUSTED` for one
//! that inflates past the limit; a middleware layer maps the former to
//! `RESOURCE_EXHAUSTED` too, as OTLP/gRPC servers (grpc-go) answer, counts failed calls,
//! and holds a decode slot for the duration of each call.

use super::{Cause, Refused, Shared, code, retry_status_details};
use crate::otlp::{self, ConversionReport, Signal};
use axum::extract::{Request, State};
use axum::middleware::Next;
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request as GrpcRequest, Response as GrpcResponse, Status};

/// The handler for all three services.
struct Handler(Arc<Shared>);

impl Handler {
    fn refusal(&self, refused: Refused) -> Status {
        match refused {
            Refused::Full => {
                let msg = "pipeline is full, retry later";
                Status::with_details(Code::Unavailable, msg, retry_status_details(msg, self.0.retry_after).into())
            }
            Refused::Closed => Status::unavailable("receiver is shutting down"),
            Refused::Undelivered => {
                let msg = "data not acknowledged by the pipeline, retry";
                Status::with_details(Code::Unavailable, msg, retry_status_details(msg, self.0.retry_after).into())
            }
        }
    }
}

/// `(rejected, message)` for a partial-success answer, `None` when nothing was skipped.
fn partial(report: &ConversionReport) -> Option<(i64, String)> {
    (!report.is_clean()).then(|| (i64::try_from(report.rejected).unwrap_or(i64::MAX), report.message()))
}

#[tonic::async_trait]
impl TraceService for Handler {
    async fn export(
        &self,
        request: GrpcRequest<ExportTraceServiceRequest>,
    ) -> Result<GrpcResponse<ExportTraceServiceResponse>, Status> {
        let conv = otlp::convert_traces(request.into_inner());
        let report = self.0.ingest(Signal::Traces, conv).await.map_err(|r| self.refusal(r))?;
        Ok(GrpcResponse::new(ExportTraceServiceResponse {
            partial_success: partial(&report)
                .map(|(rejected_spans, error_message)| ExportTracePartialSuccess { rejected_spans, error_message }),
        }))
    }
}

#[tonic::async_trait]
impl LogsService for Handler {
    async fn export(
        &self,
        request: GrpcRequest<ExportLogsServiceRequest>,
    ) -> Result<GrpcResponse<ExportLogsServiceResponse>, Status> {
        let conv = otlp::convert_logs(request.into_inner());
        let report = self.0.ingest(Signal::Logs, conv).await.map_err(|r| self.refusal(r))?;
        Ok(GrpcResponse::new(ExportLogsServiceResponse {
            partial_success: partial(&report).map(|(rejected_log_records, error_message)| ExportLogsPartialSuccess {
                rejected_log_records,
                error_message,
            }),
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Handler {
    async fn export(
        &self,
        request: GrpcRequest<ExportMetricsServiceRequest>,
    ) -> Result<GrpcResponse<ExportMetricsServiceResponse>, Status> {
        let conv = otlp::convert_metrics(request.into_inner());
        let report = self.0.ingest(Signal::Metrics, conv).await.map_err(|r| self.refusal(r))?;
        Ok(GrpcResponse::new(ExportMetricsServiceResponse {
            partial_success: partial(&report).map(|(rejected_data_points, error_message)| {
                ExportMetricsPartialSuccess { rejected_data_points, error_message }
            }),
        }))
    }
}

fn signal_of(path: &str) -> Option<Signal> {
    match path {
        "/opentelemetry.proto.collector.trace.v1.TraceService/Export" => Some(Signal::Traces),
        "/opentelemetry.proto.collector.logs.v1.LogsService/Export" => Some(Signal::Logs),
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export" => Some(Signal::Metrics),
        _ => None,
    }
}

/// Holds a decode slot for the call, maps the size-limit `OUT_OF_RANGE` to
/// `RESOURCE_EXHAUSTED`, and counts failed calls. Errors decided before or during
/// decoding are "trailers-only" responses: the status is in the response headers.
async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> axum::response::Response {
    let signal = signal_of(req.uri().path());
    let permit = match tokio::time::timeout(shared.request_timeout, Arc::clone(&shared.permits).acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        _ => {
            shared.failed(signal, Cause::Other);
            let msg = "too many concurrent requests, retry later";
            return Status::with_details(Code::Unavailable, msg, retry_status_details(msg, shared.retry_after).into())
                .into_http();
        }
    };
    let mut response = next.run(req).await;
    drop(permit);
    let status =
        response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<i32>().ok());
    match status {
        None | Some(0) => {}
        // The handler counted its own refusals (pipeline full / closed).
        Some(code::UNAVAILABLE) => {}
        Some(c) => {
            let cause = match Code::from(c) {
                Code::OutOfRange | Code::ResourceExhausted => {
                    response.headers_mut().insert("grpc-status", axum::http::HeaderValue::from_static("8"));
                    Cause::TooLarge
                }
                Code::Internal | Code::InvalidArgument => Cause::Malformed,
                Code::Unimplemented => Cause::Unsupported,
                _ => Cause::Other,
            };
            shared.failed(signal, cause);
        }
    }
    response
}

/// Serves OTLP/gRPC on `listener` until `shutdown`, then drains gracefully.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let handler = Arc::new(Handler(Arc::clone(&shared)));
    let max = shared.max_msg;
    let routes = Routes::new(
        TraceServiceServer::from_arc(Arc::clone(&handler))
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max),
    )
    .add_service(
        LogsServiceServer::from_arc(Arc::clone(&handler))
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max),
    )
    .add_service(
        MetricsServiceServer::from_arc(handler)
            .accept_compressed(CompressionEncoding::Gzip)
            .send_compressed(CompressionEncoding::Gzip)
            .max_decoding_message_size(max),
    );
    let router = routes.into_axum_router().layer(axum::middleware::from_fn_with_state(Arc::clone(&shared), guard));
    // Keep-alive pings find dead peers; the per-call timeout bounds a slow sender.
    let mut server = tonic::transport::Server::builder()
        .timeout(shared.request_timeout)
        .http2_keepalive_interval(Some(Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)));
    server
        .add_routes(Routes::from(router))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener).with_nodelay(Some(true)), shutdown.cancelled_owned())
        .await
}
