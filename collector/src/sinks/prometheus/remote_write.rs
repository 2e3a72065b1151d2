//! The Prometheus remote write 1.0 sink: pushes metric points to any remote-write
//! receiver (Prometheus with `--web.enable-remote-write-receiver`, Mimir, Thanos
//! Receive, VictoriaMetrics, ...).
//!
//! # Protocol (remote write spec 1.0)
//!
//! Each request is a `prometheus.WriteRequest` ([`super::proto`]) encoded with protobuf,
//! compressed with snappy's block format, and POSTed with `Content-Encoding: snappy`,
//! `Content-Type: application/x-protobuf`, `X-Prometheus-Remote-Write-Version: 0.1.0`
//! and `User-Agent: warden/<version>`. A series' labels include `__name__`, are sorted
//! by name, and leave out empty values (an empty label is an absent label). Only metric
//! points are sent; logs and spans in a batch are ignored.
//!
//! # Ordering, splitting and retries
//!
//! Receivers reject a sample older than the newest one they hold for its series (out of
//! order), so order per series matters:
//!
//! - The runner calls [`Sink::deliver`] sequentially, so one request is in flight per
//!   sink and batches arrive in order.
//! - Within a batch, points are grouped by series and each series' samples sorted by
//!   timestamp; two samples of one series with the same timestamp keep the last one
//!   received (the other is counted as rejected: a receiver would refuse the whole
//!   request for it).
//! - A batch with more than [`RemoteWriteConfig::max_samples_per_send`] samples is split
//!   into several requests; a series split across requests has its older samples in the
//!   earlier request. The sink remembers how many requests of the batch went through, so
//!   when the runner retries the batch after a retryable failure, requests that
//!   succeeded are not sent again.
//!
//! # Status handling
//!
//! | response | outcome |
//! | --- | --- |
//! | 2xx | the request's samples are accepted |
//! | 429, 5xx, network error, timeout | [`DeliveryError::Retryable`], honouring `Retry-After` (seconds or an HTTP date) |
//! | 400, 409, 422 | the receiver refused this request's data for good (Prometheus answers 400 to an out-of-order or duplicate sample and stores nothing of the request): its samples are counted as `rejected` and the batch goes on with its next request; never retried |
//! | any other 4xx (401, 403, 404, 413, ...) | [`DeliveryError::Permanent`]: a configuration problem; the rest of the batch is dropped |
//!
//! A request whose attempt failed after it may have reached the receiver (a timeout, a
//! connection reset) is ambiguous: the receiver may have stored it. When its retry is
//! refused with 400 (what Prometheus answers when the samples are already there and
//! older than its newest sample), its samples are counted as accepted and the request as
//! a duplicate ([`RemoteWriteStats::duplicate_requests`]) instead of looping or dropping
//! the rest of the batch. A retried request that the receiver accepts again (one sample
//! per series, same value) is harmless: Prometheus ignores identical duplicates.
//!
//! Nothing of the data (label values, response bodies, which can quote series) goes into
//! an error or a log line: they name the URL (without credentials or query), the status
//! and counts. A refused request is described by a fixed classification of the body
//! (`out of order sample`, `duplicate sample for timestamp`, `sample too old`).

use super::proto::{Label, Sample, TimeSeries, WriteRequest};
use crate::redact::Redacted;
use crate::signal::{Batch, MetricPoint};
use crate::sinks::{Delivered, DeliveryError, Sink};
use prost::Message as _;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Default [`RemoteWriteConfig::timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`RemoteWriteConfig::max_samples_per_send`] (Prometheus' own default).
pub const DEFAULT_MAX_SAMPLES_PER_SEND: usize = 2000;
/// The largest accepted [`RemoteWriteConfig::max_samples_per_send`].
pub const MAX_SAMPLES_PER_SEND_LIMIT: usize = 100_000;
/// The `User-Agent` of every request.
pub const USER_AGENT: &str = concat!("warden/", env!("CARGO_PKG_VERSION"));
/// The remote write protocol version header value for 1.0.
pub const PROTOCOL_VERSION: &str = "0.1.0";

/// How many bytes of a refused response body are read to classify it.
const BODY_PEEK_LIMIT: usize = 4096;

/// Headers the sink sets itself, or that would break the protocol; not allowed in
/// [`RemoteWriteConfig::headers`] (the list Prometheus forbids, lower case).
const RESERVED_HEADERS: &[&str] = &[
    "authorization",
    "host",
    "content-encoding",
    "content-length",
    "content-type",
    "user-agent",
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "www-authenticate",
    "accept-encoding",
    "transfer-encoding",
    "x-prometheus-remote-write-version",
    "x-prometheus-remote-read-version",
];

/// HTTP basic authentication for [`RemoteWriteConfig`].
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    /// The user name.
    pub username: String,
    /// A file holding the password (read before every batch, so a rotated secret is
    /// picked up; surrounding whitespace is trimmed).
    pub password_file: PathBuf,
}

/// The remote write sink's configuration.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemoteWriteConfig {
    /// The receiver's endpoint, e.g. `http://127.0.0.1:9090/api/v1/write`.
    pub url: String,
    /// How long one request may take, connect to response (humantime, default `30s`).
    #[serde(default = "default_timeout", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub timeout: Duration,
    /// Extra request headers (e.g. `X-Scope-OrgID`). Values are never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// HTTP basic authentication.
    #[serde(default)]
    pub basic_auth: Option<BasicAuth>,
    /// A file holding a bearer token, sent as `Authorization: Bearer <token>` (read
    /// before every batch; surrounding whitespace is trimmed).
    #[serde(default)]
    pub bearer_token_file: Option<PathBuf>,
    /// The most samples in one request (default 2000); a larger batch is split.
    #[serde(default = "default_max_samples_per_send")]
    pub max_samples_per_send: usize,
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

fn default_max_samples_per_send() -> usize {
    DEFAULT_MAX_SAMPLES_PER_SEND
}

impl std::fmt::Debug for RemoteWriteConfig {
    /// Header values may be secrets: only their names are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriteConfig")
            .field("url", &display_url(&self.url))
            .field("timeout", &self.timeout)
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("basic_auth", &self.basic_auth)
            .field("bearer_token_file", &self.bearer_token_file)
            .field("max_samples_per_send", &self.max_samples_per_send)
            .finish()
    }
}

impl RemoteWriteConfig {
    /// A config with every default, pushing to `url`.
    pub fn new(url: impl Into<String>) -> RemoteWriteConfig {
        RemoteWriteConfig {
            url: url.into(),
            timeout: DEFAULT_TIMEOUT,
            headers: BTreeMap::new(),
            basic_auth: None,
            bearer_token_file: None,
            max_samples_per_send: DEFAULT_MAX_SAMPLES_PER_SEND,
        }
    }

    /// Every configuration error, each naming its field (`url: ...`,
    /// `headers.Content-Type: ...`). Pure: credential files are read by
    /// [`RemoteWriteSink::new`].
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        match reqwest::Url::parse(&self.url) {
            Err(e) => errors.push(format!("url: invalid URL: {e}")),
            Ok(url) => {
                if url.scheme() != "http" && url.scheme() != "https" {
                    errors.push("url: scheme must be http or https".to_owned());
                }
                if url.host_str().is_none_or(str::is_empty) {
                    errors.push("url: must name a host".to_owned());
                }
                if !url.username().is_empty() || url.password().is_some() {
                    errors.push("url: must not hold credentials; use basic_auth".to_owned());
                }
            }
        }
        if self.timeout.is_zero() {
            errors.push("timeout: must be greater than 0".to_owned());
        }
        if self.max_samples_per_send == 0 || self.max_samples_per_send > MAX_SAMPLES_PER_SEND_LIMIT {
            errors.push(format!("max_samples_per_send: must be between 1 and {MAX_SAMPLES_PER_SEND_LIMIT}"));
        }
        for (name, value) in &self.headers {
            match HeaderName::from_bytes(name.as_bytes()) {
                Err(_) => errors.push(format!("headers.{name}: invalid header name")),
                Ok(h) if RESERVED_HEADERS.contains(&h.as_str()) => errors.push(format!(
                    "headers.{name}: set by the sink itself (use basic_auth or bearer_token_file for authorization)"
                )),
                Ok(_) => {}
            }
            if HeaderValue::from_str(value).is_err() {
                errors.push(format!("headers.{name}: invalid header value (control characters or non-ASCII)"));
            }
        }
        if let Some(b) = &self.basic_auth {
            if b.username.is_empty() {
                errors.push("basic_auth.username: must not be empty".to_owned());
            }
            if b.password_file.as_os_str().is_empty() {
                errors.push("basic_auth.password_file: must not be empty".to_owned());
            }
            if self.bearer_token_file.is_some() {
                errors.push("bearer_token_file: cannot be used together with basic_auth".to_owned());
            }
        }
        if self.bearer_token_file.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            errors.push("bearer_token_file: must not be empty".to_owned());
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// Why a [`RemoteWriteSink`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The config failed validation; every problem with its field path.
    #[error("invalid remote write config: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// A credential file could not be read (its contents are never shown).
    #[error("{0}")]
    Credentials(String),
    /// The HTTP client could not be built.
    #[error("building the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

/// Counters of a [`RemoteWriteSink`] (the runner counts batches, items and retries; these
/// are per HTTP request).
#[derive(Debug, Default)]
pub struct RemoteWriteStats {
    /// Requests sent (every attempt).
    pub requests: AtomicU64,
    /// Requests the receiver accepted (2xx).
    pub accepted_requests: AtomicU64,
    /// Requests refused for good (400/409/422); their samples count as rejected.
    pub rejected_requests: AtomicU64,
    /// Retries of an ambiguous request refused as already present (see the module doc).
    pub duplicate_requests: AtomicU64,
    /// Attempts that failed and will be retried (429, 5xx, network, timeout).
    pub failed_requests: AtomicU64,
}

enum Auth {
    None,
    Basic { username: String, password_file: PathBuf },
    Bearer { file: PathBuf },
}

impl Auth {
    /// The `Authorization` header, reading the credential file now.
    async fn header(&self) -> Result<Option<HeaderValue>, String> {
        let read = |path: PathBuf, what: &'static str| async move {
            match tokio::fs::read_to_string(&path).await {
                Ok(s) => Ok(s.trim().to_owned()),
                Err(e) => Err(format!("reading {what} {}: {e}", path.display())),
            }
        };
        let value = match self {
            Auth::None => return Ok(None),
            Auth::Basic { username, password_file } => {
                use base64::Engine as _;
                let password = read(password_file.clone(), "basic_auth.password_file").await?;
                let token = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                format!("Basic {token}")
            }
            Auth::Bearer { file } => format!("Bearer {}", read(file.clone(), "bearer_token_file").await?),
        };
        let mut v = HeaderValue::from_str(&value)
            .map_err(|_| "credential file holds characters not allowed in an HTTP header".to_owned())?;
        v.set_sensitive(true);
        Ok(Some(v))
    }
}

/// How far the sink got with the batch it is retrying.
struct Progress {
    fingerprint: u64,
    /// Requests of the batch's plan that are done (accepted or refused for good).
    done: usize,
    accepted: u64,
    rejected: u64,
    /// The last attempt of request `done` failed after it may have reached the receiver.
    ambiguous: bool,
}

/// The remote write sink (see the module doc).
pub struct RemoteWriteSink {
    client: reqwest::Client,
    url: reqwest::Url,
    /// The URL for messages: no credentials, no query.
    display: String,
    timeout: Duration,
    headers: HeaderMap,
    auth: Auth,
    max_samples: usize,
    progress: Option<Progress>,
    stats: Arc<RemoteWriteStats>,
}

impl std::fmt::Debug for RemoteWriteSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteWriteSink").field("url", &self.display).finish_non_exhaustive()
    }
}

/// `scheme://host[:port]/path` of `url`, without credentials or query.
fn display_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(u) => {
            let port = u.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!("{}://{}{port}{}", u.scheme(), u.host_str().unwrap_or(""), u.path())
        }
        Err(_) => "<invalid URL>".to_owned(),
    }
}

impl RemoteWriteSink {
    /// Validates `config`, checks that its credential files can be read, and builds the
    /// HTTP client (no proxy from the environment, as Prometheus).
    pub fn new(config: &RemoteWriteConfig) -> Result<RemoteWriteSink, BuildError> {
        config.validate().map_err(BuildError::Invalid)?;
        let url = reqwest::Url::parse(&config.url).map_err(|e| BuildError::Invalid(vec![format!("url: {e}")]))?;
        let mut headers = HeaderMap::new();
        for (name, value) in &config.headers {
            // Validated above.
            if let (Ok(n), Ok(mut v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
                v.set_sensitive(true);
                headers.insert(n, v);
            }
        }
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("snappy"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        headers.insert("x-prometheus-remote-write-version", HeaderValue::from_static(PROTOCOL_VERSION));
        let auth = match (&config.basic_auth, &config.bearer_token_file) {
            (Some(b), _) => Auth::Basic { username: b.username.clone(), password_file: b.password_file.clone() },
            (None, Some(f)) => Auth::Bearer { file: f.clone() },
            (None, None) => Auth::None,
        };
        for file in [config.basic_auth.as_ref().map(|b| &b.password_file), config.bearer_token_file.as_ref()]
            .into_iter()
            .flatten()
        {
            std::fs::metadata(file).map_err(|e| BuildError::Credentials(format!("{}: {e}", file.display())))?;
        }
        let client = reqwest::Client::builder()
            .no_proxy()
            .user_agent(USER_AGENT)
            .connect_timeout(config.timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_max_idle_per_host(1)
            .build()
            .map_err(BuildError::Client)?;
        Ok(RemoteWriteSink {
            client,
            display: display_url(&config.url),
            url,
            timeout: config.timeout,
            headers,
            auth,
            max_samples: config.max_samples_per_send,
            progress: None,
            stats: Arc::new(RemoteWriteStats::default()),
        })
    }

    /// The sink's request counters (shared; they keep counting).
    pub fn stats(&self) -> Arc<RemoteWriteStats> {
        Arc::clone(&self.stats)
    }

    /// Sends one encoded request.
    async fn send(&self, body: Vec<u8>, auth: Option<&HeaderValue>) -> Outcome {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let mut req = self.client.post(self.url.clone()).timeout(self.timeout).headers(self.headers.clone()).body(body);
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a.clone());
        }
        let mut resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                self.stats.failed_requests.fetch_add(1, Ordering::Relaxed);
                return Outcome::Retry {
                    reason: format!("remote write to {}: {}", self.display, describe(&e)),
                    retry_after: None,
                    // A refused connection never reached the receiver; anything later may have.
                    ambiguous: !e.is_connect(),
                };
            }
        };
        let status = resp.status();
        if status.is_success() {
            self.stats.accepted_requests.fetch_add(1, Ordering::Relaxed);
            // Drain a little so the connection can be reused; the status is what counts.
            let _ = peek_body(&mut resp).await;
            return Outcome::Stored;
        }
        let retry_after = retry_after(resp.headers(), SystemTime::now());
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            self.stats.failed_requests.fetch_add(1, Ordering::Relaxed);
            let _ = peek_body(&mut resp).await;
            return Outcome::Retry {
                reason: format!("remote write to {}: HTTP {}", self.display, status.as_u16()),
                retry_after,
                ambiguous: false,
            };
        }
        let class = classify(&peek_body(&mut resp).await);
        if matches!(status.as_u16(), 400 | 409 | 422) {
            return Outcome::Refused { status: status.as_u16(), class };
        }
        let sep = if class.is_empty() { "" } else { ": " };
        Outcome::Fatal(format!("remote write to {}: HTTP {}{sep}{class}", self.display, status.as_u16()))
    }
}

/// What one request attempt came to.
enum Outcome {
    Stored,
    Refused { status: u16, class: &'static str },
    Retry { reason: String, retry_after: Option<Duration>, ambiguous: bool },
    Fatal(String),
}

/// A reqwest error with its causes (`timed out`, `connection refused`), without the URL.
fn describe(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "request timed out".to_owned()
    } else if e.is_connect() {
        "connect failed".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    let mut depth = 0;
    while let Some(s) = source
        && depth < 4
    {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
        depth += 1;
    }
    out
}

/// Up to [`BODY_PEEK_LIMIT`] bytes of the response body (errors end the read).
async fn peek_body(resp: &mut reqwest::Response) -> Vec<u8> {
    let mut out = Vec::new();
    while out.len() < BODY_PEEK_LIMIT {
        match resp.chunk().await {
            Ok(Some(chunk)) => out.extend_from_slice(&chunk[..chunk.len().min(BODY_PEEK_LIMIT - out.len())]),
            _ => break,
        }
    }
    out
}

/// A fixed description of why a receiver refused a request, from its body; the body
/// itself is never shown (receivers quote the series in it).
fn classify(body: &[u8]) -> &'static str {
    let text = String::from_utf8_lossy(body).to_ascii_lowercase();
    if text.contains("out of order") || text.contains("out-of-order") {
        "out of order sample"
    } else if text.contains("duplicate sample") {
        "duplicate sample for timestamp"
    } else if text.contains("out of bounds") || text.contains("too old") {
        "sample too old"
    } else {
        ""
    }
}

/// The `Retry-After` header as a delay: delta-seconds or an HTTP date (a date in the
/// past is no delay).
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// One planned request and the number of samples in it.
struct Planned {
    request: WriteRequest,
    samples: u64,
}

/// Groups `points` into requests of at most `max_samples` samples: series in order of
/// first appearance, each series' samples sorted by timestamp, a same-timestamp repeat
/// replaced by the later point. Returns the requests and the number of samples dropped
/// as repeats.
fn plan(points: &[MetricPoint], max_samples: usize) -> (Vec<Planned>, u64) {
    struct Series {
        first: usize,
        samples: Vec<Sample>,
    }
    let hasher = std::hash::RandomState::new();
    let mut index: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut series: Vec<Series> = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let mut h = hasher.build_hasher();
        p.name.hash(&mut h);
        p.labels.hash(&mut h);
        let slot = index.entry(h.finish()).or_default();
        let found = slot.iter().copied().find(|&s| {
            let f = &points[series[s].first];
            f.name == p.name && f.labels == p.labels
        });
        let s = found.unwrap_or_else(|| {
            series.push(Series { first: i, samples: Vec::new() });
            slot.push(series.len() - 1);
            series.len() - 1
        });
        series[s].samples.push(Sample { value: p.value, timestamp: p.timestamp_ms });
    }
    let mut repeats = 0u64;
    let mut out = Vec::new();
    let mut cur = WriteRequest::default();
    let mut cur_n = 0usize;
    for s in &mut series {
        // Stable: among equal timestamps the later arrival stays last, and wins below.
        s.samples.sort_by_key(|x| x.timestamp);
        let before = s.samples.len();
        s.samples.dedup_by(|later, earlier| {
            let same = later.timestamp == earlier.timestamp;
            if same {
                *earlier = *later;
            }
            same
        });
        repeats += (before - s.samples.len()) as u64;
        let labels = series_labels(&points[s.first]);
        let mut rest = &s.samples[..];
        while !rest.is_empty() {
            let take = (max_samples - cur_n).min(rest.len());
            cur.timeseries.push(TimeSeries { labels: labels.clone(), samples: rest[..take].to_vec() });
            cur_n += take;
            rest = &rest[take..];
            if cur_n == max_samples {
                out.push(Planned { request: std::mem::take(&mut cur), samples: cur_n as u64 });
                cur_n = 0;
            }
        }
    }
    if cur_n > 0 {
        out.push(Planned { request: cur, samples: cur_n as u64 });
    }
    (out, repeats)
}

/// `__name__` and the point's labels, sorted by name, empty values left out.
fn series_labels(p: &MetricPoint) -> Vec<Label> {
    let mut labels = Vec::with_capacity(p.labels.len() + 1);
    labels.push(Label { name: "__name__".to_owned(), value: p.name.clone() });
    for l in &p.labels {
        if !l.value.is_empty() && l.name != "__name__" {
            labels.push(Label { name: l.name.clone(), value: l.value.clone() });
        }
    }
    labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    labels
}

/// A hash of the batch's points that is stable across calls (fixed keys), to recognise
/// the runner's retry of the same batch.
fn fingerprint(points: &[MetricPoint]) -> u64 {
    let mut h = std::hash::DefaultHasher::new();
    points.len().hash(&mut h);
    for p in points {
        p.name.hash(&mut h);
        p.labels.hash(&mut h);
        p.value.to_bits().hash(&mut h);
        p.timestamp_ms.hash(&mut h);
    }
    h.finish()
}

/// A request as it goes on the wire: protobuf, then snappy's block format.
fn encode(request: &WriteRequest) -> Result<Vec<u8>, snap::Error> {
    snap::raw::Encoder::new().compress_vec(&request.encode_to_vec())
}

impl Sink for RemoteWriteSink {
    async fn deliver(&mut self, batch: &Redacted<Batch>) -> Result<Delivered, DeliveryError> {
        let points = &batch.get().metrics;
        if points.is_empty() {
            return Ok(Delivered::default());
        }
        let fp = fingerprint(points);
        let mut progress = match self.progress.take() {
            Some(p) if p.fingerprint == fp => p,
            _ => Progress { fingerprint: fp, done: 0, accepted: 0, rejected: 0, ambiguous: false },
        };
        let (requests, repeats) = plan(points, self.max_samples);
        let auth = match self.auth.header().await {
            Ok(a) => a,
            Err(reason) => {
                self.progress = Some(progress);
                return Err(DeliveryError::retryable(format!("remote write to {}: {reason}", self.display)));
            }
        };
        let total = requests.len();
        for (i, planned) in requests.iter().enumerate().skip(progress.done) {
            let body = match encode(&planned.request) {
                Ok(b) => b,
                Err(e) => {
                    // Snappy fails only on inputs over ~4 GiB, which max_samples_per_send rules out.
                    return Err(DeliveryError::permanent(format!("remote write: snappy encoding failed: {e}")));
                }
            };
            match self.send(body, auth.as_ref()).await {
                Outcome::Stored => {
                    progress.accepted += planned.samples;
                }
                Outcome::Refused { status, class } if progress.ambiguous => {
                    self.stats.duplicate_requests.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        url = %self.display,
                        status,
                        reason = class,
                        samples = planned.samples,
                        "remote write: retry of a request whose earlier attempt may have been stored was refused; \
                         counting its samples as delivered by that attempt"
                    );
                    progress.accepted += planned.samples;
                }
                Outcome::Refused { status, class } => {
                    self.stats.rejected_requests.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        url = %self.display,
                        status,
                        reason = class,
                        samples = planned.samples,
                        request = i + 1,
                        requests = total,
                        "remote write: receiver refused a request; its samples are dropped"
                    );
                    progress.rejected += planned.samples;
                }
                Outcome::Retry { reason, retry_after, ambiguous } => {
                    progress.ambiguous |= ambiguous;
                    self.progress = Some(progress);
                    return Err(DeliveryError::Retryable { reason, retry_after });
                }
                Outcome::Fatal(reason) => {
                    return Err(DeliveryError::permanent(format!(
                        "{reason} (after {} of {total} requests of the batch)",
                        progress.done
                    )));
                }
            }
            progress.done = i + 1;
            progress.ambiguous = false;
        }
        Ok(Delivered { accepted: progress.accepted, rejected: progress.rejected + repeats })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::{Label as PLabel, MetricKind};

    fn pt(name: &str, labels: &[(&str, &str)], v: f64, ts: i64) -> MetricPoint {
        let labels = labels.iter().map(|(n, v)| PLabel::new(*n, *v)).collect();
        MetricPoint::new(name, labels, MetricKind::Counter, v, ts)
    }

    /// `(series name/labels, timestamps)` per request of a plan.
    fn shape(reqs: &[Planned]) -> Vec<Vec<(String, Vec<i64>)>> {
        reqs.iter()
            .map(|r| {
                r.request
                    .timeseries
                    .iter()
                    .map(|ts| {
                        let l: Vec<String> = ts.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect();
                        (l.join(","), ts.samples.iter().map(|s| s.timestamp).collect())
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn plan_groups_sorts_and_splits_by_series() {
        let points = [
            pt("b", &[("x", "1")], 1.0, 30),
            pt("a", &[("Z", "up"), ("x", "")], 1.0, 20),
            pt("b", &[("x", "1")], 1.0, 10),
            pt("b", &[("x", "1")], 1.0, 20),
            pt("a", &[("Z", "up"), ("x", "")], 1.0, 10),
        ];
        let (reqs, repeats) = plan(&points, 2);
        assert_eq!(repeats, 0);
        // Labels sorted by name (upper case sorts before `__name__`), empty values dropped;
        // a series split across requests keeps its older samples first.
        assert_eq!(
            shape(&reqs),
            vec![
                vec![("__name__=b,x=1".to_owned(), vec![10, 20])],
                vec![("__name__=b,x=1".to_owned(), vec![30]), ("Z=up,__name__=a".to_owned(), vec![10])],
                vec![("Z=up,__name__=a".to_owned(), vec![20])],
            ]
        );
        assert_eq!(reqs.iter().map(|r| r.samples).collect::<Vec<_>>(), [2, 2, 1]);
        let (reqs, _) = plan(&points, 2000);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].samples, 5);
    }

    #[test]
    fn plan_keeps_the_last_of_repeated_timestamps() {
        let points = [pt("a", &[], 1.0, 10), pt("a", &[], 2.0, 10), pt("a", &[], 3.0, 5), pt("a", &[], 4.0, 10)];
        let (reqs, repeats) = plan(&points, 100);
        assert_eq!(repeats, 2);
        let s = &reqs[0].request.timeseries[0].samples;
        assert_eq!(s.iter().map(|s| (s.timestamp, s.value)).collect::<Vec<_>>(), [(5, 3.0), (10, 4.0)]);
    }

    #[test]
    fn wire_encoding_round_trips() {
        let (reqs, _) = plan(&[pt("up", &[("job", "api")], 1.5, 1_700_000_000_000)], 10);
        let wire = encode(&reqs[0].request).unwrap();
        let raw = snap::raw::Decoder::new().decompress_vec(&wire).unwrap();
        let back = WriteRequest::decode(raw.as_slice()).unwrap();
        assert_eq!(back, reqs[0].request);
        assert_eq!(back.timeseries[0].samples[0], Sample { value: 1.5, timestamp: 1_700_000_000_000 });
    }

    #[test]
    fn retry_after_parses_seconds_and_dates() {
        let mut h = HeaderMap::new();
        assert_eq!(retry_after(&h, SystemTime::now()), None);
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(retry_after(&h, SystemTime::now()), Some(Duration::from_secs(7)));
        let now = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:30 GMT").unwrap();
        h.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"));
        assert_eq!(retry_after(&h, now), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, HeaderValue::from_static("Sun, 06 Nov 1994 08:49:00 GMT"));
        assert_eq!(retry_after(&h, now), Some(Duration::ZERO));
        h.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(retry_after(&h, now), None);
    }

    #[test]
    fn config_validation_names_every_bad_field() {
        let mut c = RemoteWriteConfig::new("ftp://user:pw@example.com/write");
        c.timeout = Duration::ZERO;
        c.max_samples_per_send = 0;
        c.headers.insert("Content-Type".into(), "text/plain".into());
        c.headers.insert("Authorization".into(), "Bearer x".into());
        c.headers.insert("bad header".into(), "v".into());
        c.headers.insert("X-Scope-OrgID".into(), "tenant\n".into());
        c.basic_auth = Some(BasicAuth { username: String::new(), password_file: "/p".into() });
        c.bearer_token_file = Some("/t".into());
        let errors = c.validate().unwrap_err();
        for want in [
            "url: scheme must be http or https",
            "url: must not hold credentials",
            "timeout: must be greater than 0",
            "max_samples_per_send: must be between 1 and",
            "headers.Content-Type: set by the sink itself",
            "headers.Authorization: set by the sink itself",
            "headers.bad header: invalid header name",
            "headers.X-Scope-OrgID: invalid header value",
            "basic_auth.username: must not be empty",
            "bearer_token_file: cannot be used together with basic_auth",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(want)), "missing {want:?} in {errors:#?}");
        }
        // Secrets in header values never show in Debug.
        assert!(!format!("{c:?}").contains("Bearer x"));
        let ok: RemoteWriteConfig = serde_json::from_str(
            r#"{"url":"http://127.0.0.1:9090/api/v1/write","timeout":"5s","headers":{"X-Scope-OrgID":"t1"}}"#,
        )
        .unwrap();
        assert_eq!(ok.timeout, Duration::from_secs(5));
        assert_eq!(ok.max_samples_per_send, DEFAULT_MAX_SAMPLES_PER_SEND);
        ok.validate().unwrap();
        let e = serde_json::from_str::<RemoteWriteConfig>(r#"{"url":"http://x/","max_samples":5}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `max_samples`"), "{e}");
    }

    #[test]
    fn refusals_are_classified_without_quoting_the_body() {
        assert_eq!(classify(b"out of order sample"), "out of order sample");
        assert_eq!(
            classify(b"err: duplicate sample for timestamp; series {patient=\"x\"}"),
            "duplicate sample for timestamp"
        );
        assert_eq!(classify(b"something else {name=\"x\"}"), "");
    }
}
