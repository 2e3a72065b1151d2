//! OTLP/HTTP: `POST /v1/traces`, `/v1/logs`, `/v1/metrics` with a binary protobuf or
//! JSON body, optionally gzip-compressed; answers in the request's encoding.

use super::{Cause, Refused, RpcStatus, Shared, code};
use crate::otlp::{self, ConversionReport, Encoding, Signal};
use axum::Router;
use axum::body::{Body, HttpBody};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::{Bytes, BytesMut};
use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsPartialSuccess, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsPartialSuccess, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTracePartialSuccess, ExportTraceServiceResponse};
use prost::Message as _;
use std::future::Future as _;
use std::io::Read as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Serves OTLP/HTTP on `listener` until `shutdown`, then drains gracefully.
pub(super) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    // hyper has no header-read timeout without a timer, which `axum::serve` does not set:
    // bound every read instead, so a client that stops sending (a slow-loris, a dead
    // peer) loses its connection. Twice the request timeout leaves a handler waiting for
    // a decode slot its full time; an idle keep-alive connection is closed after it.
    let idle = shared.request_timeout.saturating_mul(2);
    let listener = IdleTimeoutListener { inner: listener, idle };
    let router = Router::new()
        .route("/v1/traces", post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| export(s, Signal::Traces, h, b)))
        .route("/v1/logs", post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| export(s, Signal::Logs, h, b)))
        .route("/v1/metrics", post(|s: State<Arc<Shared>>, h: HeaderMap, b: Body| export(s, Signal::Metrics, h, b)))
        .with_state(shared);
    axum::serve(listener, router).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

/// A TCP listener whose connections fail a read that waits longer than `idle`.
struct IdleTimeoutListener {
    inner: TcpListener,
    idle: Duration,
}

impl axum::serve::Listener for IdleTimeoutListener {
    type Io = IdleTimeoutStream;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (IdleTimeoutStream, std::net::SocketAddr) {
        let (io, addr) = axum::serve::Listener::accept(&mut self.inner).await;
        let _ = io.set_nodelay(true);
        (IdleTimeoutStream { inner: io, idle: self.idle, deadline: None }, addr)
    }

    fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.inner.local_addr()
    }
}

/// A TCP stream whose pending reads time out after `idle`.
struct IdleTimeoutStream {
    inner: TcpStream,
    idle: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl AsyncRead for IdleTimeoutStream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let idle = this.idle;
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.deadline = None;
                        Poll::Ready(Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "connection idle")))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for IdleTimeoutStream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// A failed request: status, OTLP `Status` code and a message without data in it.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    code: i32,
    message: String,
    cause: Cause,
    /// Already counted (refusals by the pipeline are counted where they happen).
    counted: bool,
}

impl Failure {
    fn new(status: StatusCode, code: i32, cause: Cause, message: impl Into<String>) -> Failure {
        Failure { status, code, message: message.into(), cause, counted: false }
    }
}

fn media_type(headers: &HeaderMap) -> Option<Encoding> {
    let ct = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-protobuf") || essence.eq_ignore_ascii_case("application/protobuf") {
        Some(Encoding::Protobuf)
    } else if essence.eq_ignore_ascii_case("application/json") {
        Some(Encoding::Json)
    } else {
        None
    }
}

/// `Ok(true)` for gzip, `Ok(false)` for none/identity, `Err` for anything else.
fn gzipped(headers: &HeaderMap) -> Result<bool, ()> {
    let Some(v) = headers.get(header::CONTENT_ENCODING) else { return Ok(false) };
    let v = v.to_str().map_err(|_| ())?.trim();
    if v.is_empty() || v.eq_ignore_ascii_case("identity") {
        Ok(false)
    } else if v.eq_ignore_ascii_case("gzip") || v.eq_ignore_ascii_case("x-gzip") {
        Ok(true)
    } else {
        Err(())
    }
}

fn too_large(limit: usize) -> Failure {
    Failure::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        code::RESOURCE_EXHAUSTED,
        Cause::TooLarge,
        format!("request body exceeds the limit of {limit} bytes"),
    )
}

/// Reads the body, refusing it as soon as it passes `limit` bytes.
async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, Failure> {
    let mut buf = BytesMut::new();
    while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
        let frame = frame.map_err(|_| {
            Failure::new(
                StatusCode::BAD_REQUEST,
                code::INVALID_ARGUMENT,
                Cause::Malformed,
                "cannot read the request body",
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large(limit));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

/// Inflates gzip (multi-member) data, stopping one byte past `limit` so a bomb costs at
/// most `limit` bytes of memory.
fn gunzip_limited(data: &[u8], limit: usize) -> Result<Vec<u8>, Failure> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(limit));
    let decoder = flate2::read::MultiGzDecoder::new(data);
    match decoder.take(limit as u64 + 1).read_to_end(&mut out) {
        Ok(_) if out.len() > limit => Err(Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            code::RESOURCE_EXHAUSTED,
            Cause::TooLarge,
            format!("decompressed request body exceeds the limit of {limit} bytes"),
        )),
        Ok(_) => Ok(out),
        Err(_) => Err(Failure::new(
            StatusCode::BAD_REQUEST,
            code::INVALID_ARGUMENT,
            Cause::Malformed,
            "request body is not valid gzip data",
        )),
    }
}

fn with_type(mut response: Response, encoding: Encoding) -> Response {
    let ct = match encoding {
        Encoding::Protobuf => "application/x-protobuf",
        Encoding::Json => "application/json",
    };
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    response
}

fn failure_response(f: &Failure, encoding: Encoding, retry_after: Option<u64>) -> Response {
    let body = match encoding {
        Encoding::Protobuf => {
            RpcStatus { code: f.code, message: f.message.clone(), details: Vec::new() }.encode_to_vec()
        }
        Encoding::Json => otlp::json::encode_status(f.code, &f.message),
    };
    let mut response = with_type((f.status, body).into_response(), encoding);
    if let Some(secs) = retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn success_body(signal: Signal, encoding: Encoding, report: &ConversionReport) -> Vec<u8> {
    let (rejected, message) = if report.is_clean() { (0, String::new()) } else { (report.rejected, report.message()) };
    match encoding {
        Encoding::Json => otlp::json::encode_export_response(signal, rejected, &message),
        Encoding::Protobuf => {
            let partial = !report.is_clean();
            let rejected = i64::try_from(rejected).unwrap_or(i64::MAX);
            match signal {
                Signal::Traces => ExportTraceServiceResponse {
                    partial_success: partial
                        .then_some(ExportTracePartialSuccess { rejected_spans: rejected, error_message: message }),
                }
                .encode_to_vec(),
                Signal::Logs => ExportLogsServiceResponse {
                    partial_success: partial
                        .then_some(ExportLogsPartialSuccess { rejected_log_records: rejected, error_message: message }),
                }
                .encode_to_vec(),
                Signal::Metrics => ExportMetricsServiceResponse {
                    partial_success: partial.then_some(ExportMetricsPartialSuccess {
                        rejected_data_points: rejected,
                        error_message: message,
                    }),
                }
                .encode_to_vec(),
            }
        }
    }
}

async fn export(State(shared): State<Arc<Shared>>, signal: Signal, headers: HeaderMap, body: Body) -> Response {
    let encoding = media_type(&headers);
    // Failures before the encoding is known answer in binary protobuf, the OTLP default.
    let answer_in = encoding.unwrap_or(Encoding::Protobuf);
    match handle(&shared, signal, encoding, &headers, body).await {
        Ok(report) => with_type((StatusCode::OK, success_body(signal, answer_in, &report)).into_response(), answer_in),
        Err(f) => {
            let retry = (f.status == StatusCode::SERVICE_UNAVAILABLE).then(|| shared.retry_after_secs());
            if !f.counted {
                shared.failed(Some(signal), f.cause);
            }
            tracing::debug!(component = shared.ctx.stats.name(), signal = signal.as_str(), status = f.status.as_u16(), error = %f.message, "OTLP/HTTP request failed");
            failure_response(&f, answer_in, retry)
        }
    }
}

async fn handle(
    shared: &Shared,
    signal: Signal,
    encoding: Option<Encoding>,
    headers: &HeaderMap,
    body: Body,
) -> Result<ConversionReport, Failure> {
    let encoding = encoding.ok_or_else(|| {
        Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_ARGUMENT,
            Cause::Unsupported,
            "unsupported Content-Type: use application/x-protobuf or application/json",
        )
    })?;
    let gzip = gzipped(headers).map_err(|()| {
        Failure::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::INVALID_ARGUMENT,
            Cause::Unsupported,
            "unsupported Content-Encoding: use gzip or none",
        )
    })?;
    let limit = shared.max_msg;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(limit));
    }
    let unavailable = || {
        Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            code::UNAVAILABLE,
            Cause::Other,
            "too many concurrent requests, retry later",
        )
    };
    let _permit = tokio::time::timeout(shared.request_timeout, Arc::clone(&shared.permits).acquire_owned())
        .await
        .map_err(|_| unavailable())?
        .map_err(|_| unavailable())?;
    let raw = tokio::time::timeout(shared.request_timeout, read_limited(body, limit)).await.map_err(|_| {
        Failure::new(
            StatusCode::REQUEST_TIMEOUT,
            code::DEADLINE_EXCEEDED,
            Cause::Other,
            "timed out reading the request body",
        )
    })??;
    // Decompressing, decoding and converting are CPU work on up to `limit` bytes: run them
    // off the async workers. The permit above bounds how many run at once.
    let conv = tokio::task::spawn_blocking(move || {
        let inflated;
        let body: &[u8] = if gzip {
            inflated = gunzip_limited(&raw, limit)?;
            &inflated
        } else {
            &raw
        };
        otlp::decode_and_convert(signal, encoding, body)
            .map_err(|e| Failure::new(StatusCode::BAD_REQUEST, code::INVALID_ARGUMENT, Cause::Malformed, e.to_string()))
    })
    .await
    .map_err(|_| {
        Failure::new(StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL, Cause::Other, "request handling failed")
    })??;
    shared.ingest(signal, conv).await.map_err(|refused| {
        let (cause, message) = match refused {
            Refused::Full => (Cause::Full, "pipeline is full, retry later"),
            Refused::Closed => (Cause::Other, "receiver is shutting down"),
            Refused::Undelivered => (Cause::Other, "data not acknowledged by the pipeline, retry later"),
        };
        Failure { counted: true, ..Failure::new(StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE, cause, message) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn gzip_bomb_stops_at_the_limit() {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..16 {
            enc.write_all(&zeros).unwrap();
        }
        let bomb = enc.finish().unwrap();
        assert!(bomb.len() < 64 * 1024);
        let f = gunzip_limited(&bomb, 1 << 20).err().unwrap();
        assert_eq!(f.status, StatusCode::PAYLOAD_TOO_LARGE);
        let ok = gunzip_limited(&bomb, 16 << 20).unwrap();
        assert_eq!(ok.len(), 16 << 20);
        assert_eq!(gunzip_limited(b"not gzip", 100).err().unwrap().status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn content_types_and_encodings() {
        let mut h = HeaderMap::new();
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("Application/JSON; charset=utf-8"));
        assert_eq!(media_type(&h), Some(Encoding::Json));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert_eq!(media_type(&h), None);
        assert_eq!(gzipped(&h), Ok(false));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("GZIP"));
        assert_eq!(gzipped(&h), Ok(true));
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
        assert_eq!(gzipped(&h), Err(()));
    }
}
