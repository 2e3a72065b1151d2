//! The OTLP receiver: traces, logs and metrics over OTLP/gRPC (tonic, default
//! `127.0.0.1:4317`) and OTLP/HTTP (axum, default `127.0.0.1:4318`, `/v1/traces`,
//! `/v1/logs`, `/v1/metrics`, binary protobuf or JSON, optionally gzip).
//!
//! Each request is decoded, converted by [`crate::otlp`] and handed to the pipeline with
//! `try_send`: when the pipeline is full the request is refused (HTTP 503 with
//! `Retry-After`, gRPC `UNAVAILABLE` with a `google.rpc.RetryInfo` detail) rather than
//! queued, so the agent never grows a queue; OTLP clients retry. Items conversion cannot
//! represent are answered with an OTLP partial success (rejected count and reasons).
//!
//! Limits: a request body (after decompression too) over `max_recv_msg_size_bytes` gets
//! HTTP 413 / gRPC `RESOURCE_EXHAUSTED` (a gzip bomb is cut off at the limit, never
//! inflated in full); at most `max_concurrent_requests` requests are decoded at once
//! (others wait up to `request_timeout`, then get 503 / `UNAVAILABLE`); reading a body
//! and handling a gRPC call are bounded by `request_timeout`. Bad input gets HTTP 400 /
//! 415 with an OTLP `Status` body naming the field at fault, never a value from it.
//!
//! Counters (`warden_source_<what>_total{component}`): the standard `received` (OTLP
//! items: spans, log records, data points), `emitted` (items sent on: spans, log records,
//! metric points), `dropped` (items rejected by conversion or refused because the
//! pipeline was full) and `errors` (failed requests); per signal `spans_*`,
//! `log_records_*`, `data_points_received` / `metric_points_emitted` /
//! `data_points_dropped` and `<signal>_request_errors`; and by cause
//! `requests_refused_full`, `requests_too_large`, `requests_malformed`,
//! `requests_unsupported`.
//!
//! Delivery acknowledgement (`wait_for_delivery`, default on): each request's batch
//! carries an [`crate::ack::AckToken`] and the answer waits for it, so a 200 / `OK` means
//! every sink that took the data delivered it or wrote it to its disk buffer. A batch
//! that fails (a sink gave up, the agent is stopping) or is not acknowledged within
//! `request_timeout` is answered 503 / `UNAVAILABLE` with a retry hint, and the client
//! resends: at-least-once, never a silent loss. With `wait_for_delivery: false` a 200 /
//! `OK` only means the batch entered the pipeline.

mod grpc;
mod http;

use crate::ack::{AckOutcome, AckToken};
use crate::otlp::rpc::{ProtoAny, ProtoDuration, RETRY_INFO_TYPE_URL, RetryInfo, RpcStatus};
use crate::otlp::{ConversionReport, Converted, Signal};
use crate::pipeline::{Counter, SendError, SourceContext};
use serde::Deserialize;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Default gRPC address.
pub const DEFAULT_GRPC_LISTEN: &str = "127.0.0.1:4317";
/// Default HTTP address.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:4318";
/// Default size limit of one request (4 MiB, as OTLP/gRPC servers use by default).
pub const DEFAULT_MAX_RECV_MSG_SIZE_BYTES: usize = 4 * 1024 * 1024;

const MIN_MSG_SIZE: usize = 1024;
const MAX_MSG_SIZE: usize = 256 * 1024 * 1024;

fn default_grpc() -> Option<SocketAddr> {
    DEFAULT_GRPC_LISTEN.parse().ok()
}

fn default_http() -> Option<SocketAddr> {
    DEFAULT_HTTP_LISTEN.parse().ok()
}

fn default_max_msg() -> usize {
    DEFAULT_MAX_RECV_MSG_SIZE_BYTES
}

fn default_retry_after() -> Duration {
    Duration::from_secs(1)
}

fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_max_concurrent() -> usize {
    16
}

fn default_shutdown_grace() -> Duration {
    Duration::from_secs(5)
}

/// Receiver configuration.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// OTLP/gRPC address; `null` disables gRPC. Default `127.0.0.1:4317`.
    #[serde(default = "default_grpc")]
    pub grpc_listen: Option<SocketAddr>,
    /// OTLP/HTTP address; `null` disables HTTP. Default `127.0.0.1:4318`.
    #[serde(default = "default_http")]
    pub http_listen: Option<SocketAddr>,
    /// Largest accepted request in bytes, compressed and after decompression: gRPC
    /// message or HTTP body. Default 4 MiB (4194304); 1 KiB to 256 MiB.
    #[serde(default = "default_max_msg")]
    pub max_recv_msg_size_bytes: usize,
    /// Delay suggested to clients refused because the pipeline is full (HTTP
    /// `Retry-After`, rounded up to whole seconds; gRPC `RetryInfo`). Default `1s`.
    #[serde(default = "default_retry_after", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub retry_after: Duration,
    /// Limit for reading an HTTP body, waiting for a decode slot, and a whole gRPC call.
    /// Default `30s`.
    #[serde(default = "default_request_timeout", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub request_timeout: Duration,
    /// Requests decoded at the same time, both protocols together; bounds memory to
    /// about this many times the size limit (times the decoded expansion). Default 16.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_requests: usize,
    /// After shutdown, how long in-flight requests may finish before connections are
    /// closed. Default `5s`.
    #[serde(default = "default_shutdown_grace", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub shutdown_grace: Duration,
    /// Answer only after the pipeline acknowledged the request's data (delivered or
    /// durably buffered by every sink that took it), within `request_timeout`; see the
    /// module docs. Default `true`.
    #[serde(default = "default_true")]
    pub wait_for_delivery: bool,
}

fn default_true() -> bool {
    true
}

impl Default for Config {
    fn default() -> Config {
        Config {
            grpc_listen: default_grpc(),
            http_listen: default_http(),
            max_recv_msg_size_bytes: default_max_msg(),
            retry_after: default_retry_after(),
            request_timeout: default_request_timeout(),
            max_concurrent_requests: default_max_concurrent(),
            shutdown_grace: default_shutdown_grace(),
            wait_for_delivery: true,
        }
    }
}

impl Config {
    /// Every problem with the configuration, each naming its field.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.grpc_listen.is_none() && self.http_listen.is_none() {
            errors.push("grpc_listen, http_listen: at least one must be set".to_owned());
        }
        if let (Some(g), Some(h)) = (self.grpc_listen, self.http_listen)
            && g == h
            && g.port() != 0
        {
            errors.push(format!("http_listen: must differ from grpc_listen ({g})"));
        }
        if !(MIN_MSG_SIZE..=MAX_MSG_SIZE).contains(&self.max_recv_msg_size_bytes) {
            errors.push(format!("max_recv_msg_size_bytes: must be between {MIN_MSG_SIZE} and {MAX_MSG_SIZE}"));
        }
        if self.retry_after.is_zero() || self.retry_after > Duration::from_secs(3600) {
            errors.push("retry_after: must be between 1ms and 1h".to_owned());
        }
        if self.request_timeout.is_zero() || self.request_timeout > Duration::from_secs(3600) {
            errors.push("request_timeout: must be between 1ms and 1h".to_owned());
        }
        if !(1..=4096).contains(&self.max_concurrent_requests) {
            errors.push("max_concurrent_requests: must be between 1 and 4096".to_owned());
        }
        if self.shutdown_grace > Duration::from_secs(300) {
            errors.push("shutdown_grace: must be at most 5m".to_owned());
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }

    /// Binds and runs until `ctx.shutdown` fires; see [`bind`] and [`Bound::run`].
    pub async fn run(self, ctx: SourceContext) -> Result<(), BindError> {
        bind(self).await?.run(ctx).await;
        Ok(())
    }
}

/// A listen address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} ({protocol}): {source}")]
pub struct BindError {
    /// `grpc` or `http`.
    pub protocol: &'static str,
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

/// The receiver with its sockets bound, not yet serving.
#[derive(Debug)]
pub struct Bound {
    config: Config,
    grpc: Option<TcpListener>,
    http: Option<TcpListener>,
}

/// The addresses a [`Bound`] receiver listens on (useful with port 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalAddrs {
    /// The gRPC address, if gRPC is enabled.
    pub grpc: Option<SocketAddr>,
    /// The HTTP address, if HTTP is enabled.
    pub http: Option<SocketAddr>,
}

/// Binds the configured addresses (port 0 picks a free port).
pub async fn bind(config: Config) -> Result<Bound, BindError> {
    async fn listen(protocol: &'static str, addr: Option<SocketAddr>) -> Result<Option<TcpListener>, BindError> {
        match addr {
            Some(addr) => {
                TcpListener::bind(addr).await.map(Some).map_err(|source| BindError { protocol, addr, source })
            }
            None => Ok(None),
        }
    }
    let grpc = listen("grpc", config.grpc_listen).await?;
    let http = listen("http", config.http_listen).await?;
    Ok(Bound { config, grpc, http })
}

impl Bound {
    /// The bound addresses.
    pub fn local_addrs(&self) -> LocalAddrs {
        LocalAddrs {
            grpc: self.grpc.as_ref().and_then(|l| l.local_addr().ok()),
            http: self.http.as_ref().and_then(|l| l.local_addr().ok()),
        }
    }

    /// Serves until `ctx.shutdown` fires, then lets in-flight requests finish for up to
    /// `shutdown_grace` and returns.
    pub async fn run(self, ctx: SourceContext) {
        let shared = Arc::new(Shared::new(&self.config, ctx.clone()));
        let token = ctx.shutdown.clone();
        let mut tasks = JoinSet::new();
        if let Some(listener) = self.grpc {
            tracing::info!(component = ctx.stats.name(), addr = ?listener.local_addr().ok(), "OTLP/gRPC receiver listening");
            let serve = grpc::serve(listener, Arc::clone(&shared), token.clone());
            tasks.spawn(async move { serve.await.map_err(|e| format!("gRPC server: {e}")) });
        }
        if let Some(listener) = self.http {
            tracing::info!(component = ctx.stats.name(), addr = ?listener.local_addr().ok(), "OTLP/HTTP receiver listening");
            let serve = http::serve(listener, Arc::clone(&shared), token.clone());
            tasks.spawn(async move { serve.await.map_err(|e| format!("HTTP server: {e}")) });
        }
        let grace = self.config.shutdown_grace;
        let deadline = async {
            token.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                done = tasks.join_next() => match done {
                    None => break,
                    Some(Ok(Ok(()))) => {}
                    Some(Ok(Err(error))) => {
                        ctx.stats.errors.inc();
                        tracing::error!(component = ctx.stats.name(), %error, "OTLP receiver server failed");
                    }
                    Some(Err(error)) => {
                        ctx.stats.errors.inc();
                        tracing::error!(component = ctx.stats.name(), %error, "OTLP receiver task failed");
                    }
                },
                () = &mut deadline => {
                    tracing::warn!(component = ctx.stats.name(), "OTLP receiver: shutdown grace elapsed, closing connections");
                    tasks.abort_all();
                    while tasks.join_next().await.is_some() {}
                    break;
                }
            }
        }
    }
}

/// Per-signal counters.
struct SignalCounters {
    received: Arc<Counter>,
    emitted: Arc<Counter>,
    dropped: Arc<Counter>,
    errors: Arc<Counter>,
}

/// Why a converted request was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// The pipeline is at capacity.
    Full,
    /// The pipeline is gone (shutting down).
    Closed,
    /// The batch entered the pipeline but was not acknowledged as delivered (a sink
    /// failed, or `request_timeout` passed): the client should resend.
    Undelivered,
}

/// Failure causes, for the cause counters.
#[derive(Debug, Clone, Copy)]
enum Cause {
    TooLarge,
    Malformed,
    Unsupported,
    Full,
    Other,
}

/// What both servers share.
struct Shared {
    ctx: SourceContext,
    max_msg: usize,
    retry_after: Duration,
    request_timeout: Duration,
    wait_for_delivery: bool,
    permits: Arc<Semaphore>,
    traces: SignalCounters,
    logs: SignalCounters,
    metrics: SignalCounters,
    refused_full: Arc<Counter>,
    too_large: Arc<Counter>,
    malformed: Arc<Counter>,
    unsupported: Arc<Counter>,
    undelivered: Arc<Counter>,
}

impl Shared {
    fn new(config: &Config, ctx: SourceContext) -> Shared {
        let s = &ctx.stats;
        let counters = |r, e, d, x| SignalCounters {
            received: s.counter(r),
            emitted: s.counter(e),
            dropped: s.counter(d),
            errors: s.counter(x),
        };
        Shared {
            max_msg: config.max_recv_msg_size_bytes,
            retry_after: config.retry_after,
            request_timeout: config.request_timeout,
            wait_for_delivery: config.wait_for_delivery,
            undelivered: s.counter("requests_undelivered"),
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests.max(1))),
            traces: counters("spans_received", "spans_emitted", "spans_dropped", "traces_request_errors"),
            logs: counters("log_records_received", "log_records_emitted", "log_records_dropped", "logs_request_errors"),
            metrics: counters(
                "data_points_received",
                "metric_points_emitted",
                "data_points_dropped",
                "metrics_request_errors",
            ),
            refused_full: s.counter("requests_refused_full"),
            too_large: s.counter("requests_too_large"),
            malformed: s.counter("requests_malformed"),
            unsupported: s.counter("requests_unsupported"),
            ctx,
        }
    }

    fn counters(&self, signal: Signal) -> &SignalCounters {
        match signal {
            Signal::Traces => &self.traces,
            Signal::Logs => &self.logs,
            Signal::Metrics => &self.metrics,
        }
    }

    /// Counts a failed request.
    fn failed(&self, signal: Option<Signal>, cause: Cause) {
        self.ctx.stats.errors.inc();
        if let Some(signal) = signal {
            self.counters(signal).errors.inc();
        }
        match cause {
            Cause::TooLarge => self.too_large.inc(),
            Cause::Malformed => self.malformed.inc(),
            Cause::Unsupported => self.unsupported.inc(),
            Cause::Full => self.refused_full.inc(),
            Cause::Other => {}
        }
    }

    /// Counts a converted request, sends its batch on without waiting for room, and
    /// (with `wait_for_delivery`) waits for its acknowledgement.
    async fn ingest(&self, signal: Signal, conv: Converted) -> Result<ConversionReport, Refused> {
        let c = self.counters(signal);
        let stats = &self.ctx.stats;
        c.received.add(conv.received);
        stats.received.add(conv.received);
        let rejected = conv.report.rejected;
        c.dropped.add(rejected);
        stats.dropped.add(rejected);
        if !conv.report.is_clean() {
            // Reasons are fixed strings and counts: safe to log.
            tracing::debug!(component = stats.name(), signal = signal.as_str(), report = %conv.report.message(), "OTLP items rejected");
        }
        if conv.batch.is_empty() {
            return Ok(conv.report);
        }
        let n = conv.batch.len() as u64;
        let (batch, outcome) = if self.wait_for_delivery {
            let (tx, rx) = tokio::sync::oneshot::channel();
            (
                conv.batch.with_ack(AckToken::new(move |o| {
                    let _ = tx.send(o);
                })),
                Some(rx),
            )
        } else {
            (conv.batch, None)
        };
        let refused = match self.ctx.out.try_send(batch) {
            Ok(()) => {
                c.emitted.add(n);
                stats.emitted.add(n);
                let Some(outcome) = outcome else { return Ok(conv.report) };
                // A little under the whole call's limit, so the answer is ours (503 with a
                // retry hint), not the server's own call timeout.
                match tokio::time::timeout(self.request_timeout.mul_f32(0.9), outcome).await {
                    Ok(Ok(AckOutcome::Delivered)) => return Ok(conv.report),
                    // Failed, the token vanished with its callback, or the time ran out:
                    // the items are in the pipeline and may still arrive, so they are not
                    // counted as dropped; the client resends (at-least-once).
                    _ => {
                        self.undelivered.inc();
                        self.failed(Some(signal), Cause::Other);
                        return Err(Refused::Undelivered);
                    }
                }
            }
            Err(SendError::Full(_)) => Refused::Full,
            Err(SendError::Closed(_)) => Refused::Closed,
        };
        let lost = conv.received.saturating_sub(rejected);
        c.dropped.add(lost);
        stats.dropped.add(lost);
        self.failed(Some(signal), if refused == Refused::Full { Cause::Full } else { Cause::Other });
        Err(refused)
    }

    /// `Retry-After` in whole seconds (at least 1).
    fn retry_after_secs(&self) -> u64 {
        self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)
    }
}

/// gRPC status codes used in OTLP `Status` bodies.
mod code {
    pub const INVALID_ARGUMENT: i32 = 3;
    pub const DEADLINE_EXCEEDED: i32 = 4;
    pub const RESOURCE_EXHAUSTED: i32 = 8;
    pub const INTERNAL: i32 = 13;
    pub const UNAVAILABLE: i32 = 14;
}

/// The `google.rpc.Status` (encoded) for UNAVAILABLE with a RetryInfo detail.
fn retry_status_details(message: &str, delay: Duration) -> Vec<u8> {
    use prost::Message as _;
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    RpcStatus {
        code: code::UNAVAILABLE,
        message: message.to_owned(),
        details: vec![ProtoAny { type_url: RETRY_INFO_TYPE_URL.to_owned(), value: info.encode_to_vec() }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_validation() {
        let c: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.grpc_listen, Some("127.0.0.1:4317".parse().unwrap()));
        assert!(c.validate().is_ok());
        let bad: Config = serde_json::from_str(
            r#"{"grpc_listen": null, "http_listen": null, "max_recv_msg_size_bytes": 10, "retry_after": "0s",
                "max_concurrent_requests": 0, "shutdown_grace": "1h"}"#,
        )
        .unwrap();
        let errors = bad.validate().unwrap_err();
        for field in
            ["grpc_listen", "max_recv_msg_size_bytes", "retry_after", "max_concurrent_requests", "shutdown_grace"]
        {
            assert!(errors.iter().any(|e| e.starts_with(field)), "{field} missing from {errors:?}");
        }
        assert!(serde_json::from_str::<Config>(r#"{"grpc_listen": "x"}"#).is_err());
        assert!(serde_json::from_str::<Config>(r#"{"grpc": "127.0.0.1:1"}"#).is_err());
        let same: Config =
            serde_json::from_str(r#"{"grpc_listen": "127.0.0.1:5000", "http_listen": "127.0.0.1:5000"}"#).unwrap();
        assert!(same.validate().unwrap_err()[0].starts_with("http_listen"));
    }

    #[test]
    fn retry_details_decode_as_google_rpc_status() {
        use prost::Message as _;
        let bytes = retry_status_details("full", Duration::from_millis(1500));
        let st = RpcStatus::decode(bytes.as_slice()).unwrap();
        assert_eq!(st.code, code::UNAVAILABLE);
        assert_eq!(st.details[0].type_url, "type.googleapis.com/google.rpc.RetryInfo");
        let info = RetryInfo::decode(st.details[0].value.as_slice()).unwrap();
        assert_eq!(info.retry_delay, Some(ProtoDuration { seconds: 1, nanos: 500_000_000 }));
    }
}
