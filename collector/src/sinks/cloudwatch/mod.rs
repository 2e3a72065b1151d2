//! The CloudWatch Logs sink: log records to `PutLogEvents`, one event per record.
//!
//! The sink's own keys ([`CloudWatchConfig`]; buffer and retry settings belong to the
//! runner):
//!
//! ```yaml
//! region: eu-west-1                     # default: AWS_REGION / the profile
//! endpoint_url: http://127.0.0.1:5000   # default: the regional endpoint
//! log_group: /warden/{service.name}     # templates, see `template`
//! log_stream: "{host.name}-{date}"
//! create_missing: true                  # CreateLogGroup / CreateLogStream (default)
//! retention_days: 30                    # set on groups this sink creates
//! format: json                          # or text (see MessageFormat)
//! include_resource: false               # resource attributes in JSON messages
//! max_event_bytes: 1048550              # longer messages are truncated
//! batch_max_bytes: 1048576              # per request, 26 bytes per event included
//! batch_max_events: 10000
//! timeout: 30s                          # per request
//! ```
//!
//! # Credentials, region, transport
//!
//! Credentials come from the standard AWS chain (environment, shared config and
//! credentials files with `credential_process`, assume-role and web identity, ECS and
//! EC2 instance metadata); IAM Identity Center (SSO) profiles are not compiled in. The
//! region is `region` or else the chain's (`AWS_REGION`, the profile). `endpoint_url`
//! replaces the regional endpoint (tests use a local moto server). HTTPS is rustls with
//! the *ring* provider and the platform's root certificates.
//!
//! # Requests
//!
//! [`batch`] turns a batch into calls within every PutLogEvents limit: ≤ 1,048,576
//! bytes (message bytes + 26 per event), ≤ 10,000 events, < 24 h between the first and
//! last event, chronological order, one group/stream per call; a message longer than
//! `max_event_bytes` is truncated, and a record outside [now − 14 d, now + 2 h] is
//! dropped. Calls run one after another. The SDK's own retries are off: each call is
//! made once per [`Sink::deliver`] and the runner retries with its backoff.
//!
//! A retryable failure ends the attempt; the calls of the batch that already succeeded
//! are remembered (by a hash of their content and place in the batch), so when the
//! runner delivers the same batch again only the remaining calls are made. Duplicates
//! are possible only when the agent stops between a failed attempt and the retry that
//! succeeds (a disk buffer then replays the whole batch), or when CloudWatch took a call
//! whose response was lost (that call is sent again): at most one batch either way.
//!
//! Groups and streams are not created up front: the first PutLogEvents to a stream this
//! sink has not written to yet keeps a copy of its request, and if CloudWatch answers
//! `ResourceNotFoundException` the group and stream are created and the copy sent. This
//! works with an IAM policy that allows only `logs:PutLogEvents` on existing streams.
//! `retention_days` is set (PutRetentionPolicy) only on a group this sink created; a
//! failure to set it is logged and counted, and delivery goes on.
//!
//! # Errors
//!
//! | response | outcome |
//! | --- | --- |
//! | `ThrottlingException`, `ServiceUnavailableException`, other 5xx / 429, a timeout, a connection failure, an unreadable response, unresolvable credentials | retryable |
//! | `ResourceNotFoundException` | with `create_missing`, the group (with `retention_days`) and stream are created and the call is made again; otherwise permanent |
//! | `rejectedLogEventsInfo` in a success | those events are counted as rejected |
//! | `InvalidParameterException`, `AccessDeniedException` and any other 4xx | permanent for that call: its events are counted as rejected, the other calls of the batch still go |
//!
//! Error messages and log lines name the operation, group, stream, error code and HTTP
//! status; never an event or the service's message text (a validation message may
//! quote the value it refused).
//!
//! # Metrics
//!
//! Besides the runner's `warden_sink_*` families, [`CloudWatchStats::encode`] exports
//! `warden_sink_cloudwatch_events_truncated_total`, `..._events_too_old_total`,
//! `..._events_too_new_total`, `..._events_rejected_total` (by CloudWatch),
//! `..._requests_total`, `..._request_errors_total`, `..._groups_created_total` and
//! `..._streams_created_total`, each with a `sink` label.

pub mod batch;
pub mod template;

use self::batch::{Batcher, Call, MessageFormat};
use self::template::{NameKind, Template};
use super::{Delivered, DeliveryError, Sink};
use crate::pipeline::Counter;
use crate::redact::Redacted;
use crate::signal::Batch;
use aws_sdk_cloudwatchlogs::Client;
use aws_sdk_cloudwatchlogs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

pub use aws_sdk_cloudwatchlogs::config::Credentials;

/// Retention periods CloudWatch accepts, in days.
pub const RETENTION_DAYS: &[u32] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

/// Streams remembered as existing (to skip the copy kept for create-and-retry); the set
/// is cleared when it grows past this.
const MAX_KNOWN_STREAMS: usize = 10_000;

/// Configuration of a CloudWatch Logs sink; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudWatchConfig {
    /// AWS region; default: from the environment / profile.
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint URL replacing the regional one (`http://127.0.0.1:5000` for moto).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// Log group name template (see [`template`]).
    pub log_group: String,
    /// Log stream name template (see [`template`]).
    pub log_stream: String,
    /// Create a missing group or stream (default true; "already exists" is fine).
    #[serde(default = "default_true")]
    pub create_missing: bool,
    /// Retention set with PutRetentionPolicy on each group this sink creates; one of
    /// [`RETENTION_DAYS`]. Default: none (CloudWatch keeps events forever). A retention
    /// shorter than 14 days also narrows the accepted event age.
    #[serde(default)]
    pub retention_days: Option<u32>,
    /// Message format (default `json`).
    #[serde(default)]
    pub format: MessageFormat,
    /// JSON messages carry the record's resource attributes (default false: the
    /// group and stream names usually say where a record comes from).
    #[serde(default)]
    pub include_resource: bool,
    /// Longest event message in bytes; longer ones are truncated (default and maximum
    /// 1,048,550 = 1 MiB − 26; 262,118 for endpoints with the older 256 KiB limit).
    #[serde(default = "default_max_event_bytes")]
    pub max_event_bytes: usize,
    /// Largest request: message bytes + 26 per event (default and maximum 1,048,576).
    #[serde(default = "default_batch_max_bytes")]
    pub batch_max_bytes: usize,
    /// Most events per request (default and maximum 10,000).
    #[serde(default = "default_batch_max_events")]
    pub batch_max_events: usize,
    /// Limit for one request, connecting included (default `30s`).
    #[serde(default = "default_timeout", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub timeout: Duration,
}

fn default_true() -> bool {
    true
}
fn default_max_event_bytes() -> usize {
    batch::MAX_EVENT_BYTES
}
fn default_batch_max_bytes() -> usize {
    batch::MAX_BATCH_BYTES
}
fn default_batch_max_events() -> usize {
    batch::MAX_BATCH_EVENTS
}
fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

impl CloudWatchConfig {
    /// A config for `log_group` / `log_stream` with every other field at its default.
    pub fn new(log_group: impl Into<String>, log_stream: impl Into<String>) -> CloudWatchConfig {
        CloudWatchConfig {
            region: None,
            endpoint_url: None,
            log_group: log_group.into(),
            log_stream: log_stream.into(),
            create_missing: true,
            retention_days: None,
            format: MessageFormat::Json,
            include_resource: false,
            max_event_bytes: batch::MAX_EVENT_BYTES,
            batch_max_bytes: batch::MAX_BATCH_BYTES,
            batch_max_events: batch::MAX_BATCH_EVENTS,
            timeout: default_timeout(),
        }
    }

    /// Every problem with this config, each message starting with the field at fault.
    pub fn validate(&self) -> Result<(), Vec<String>> {
        self.compile().map(|_| ())
    }

    fn compile(&self) -> Result<(Template, Template), Vec<String>> {
        let mut errors = Vec::new();
        let group = Template::parse("log_group", &self.log_group, NameKind::Group).map_err(|e| errors.push(e)).ok();
        let stream = Template::parse("log_stream", &self.log_stream, NameKind::Stream).map_err(|e| errors.push(e)).ok();
        if let Some(r) = &self.region
            && (r.is_empty() || !r.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            errors.push("region: must be a region name such as us-east-1".to_owned());
        }
        if let Some(u) = &self.endpoint_url
            && !(u.starts_with("http://") || u.starts_with("https://"))
        {
            errors.push("endpoint_url: must be an http:// or https:// URL".to_owned());
        }
        if let Some(d) = self.retention_days
            && !RETENTION_DAYS.contains(&d)
        {
            errors.push(format!("retention_days: {d} is not one CloudWatch accepts ({RETENTION_DAYS:?})"));
        }
        if !(1024..=batch::MAX_EVENT_BYTES).contains(&self.max_event_bytes) {
            errors.push(format!("max_event_bytes: must be between 1024 and {}", batch::MAX_EVENT_BYTES));
        }
        if !(1024..=batch::MAX_BATCH_BYTES).contains(&self.batch_max_bytes) {
            errors.push(format!("batch_max_bytes: must be between 1024 and {}", batch::MAX_BATCH_BYTES));
        } else if self.max_event_bytes + batch::EVENT_OVERHEAD_BYTES > self.batch_max_bytes {
            errors.push("max_event_bytes: plus 26 must fit in batch_max_bytes".to_owned());
        }
        if !(1..=batch::MAX_BATCH_EVENTS).contains(&self.batch_max_events) {
            errors.push(format!("batch_max_events: must be between 1 and {}", batch::MAX_BATCH_EVENTS));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(600) {
            errors.push("timeout: must be between 1ms and 10m".to_owned());
        }
        match (group, stream) {
            (Some(g), Some(s)) if errors.is_empty() => Ok((g, s)),
            _ => Err(errors),
        }
    }

    /// The batching this config describes (for tests and benchmarks; `build` makes it
    /// too).
    pub fn batcher(&self) -> Result<Batcher, CloudWatchError> {
        let (group, stream) = self.compile().map_err(CloudWatchError::Invalid)?;
        let retention_ms = self.retention_days.map_or(i64::MAX, |d| i64::from(d) * 86_400_000);
        Ok(Batcher {
            group,
            stream,
            hostname: hostname(),
            format: self.format,
            include_resource: self.include_resource,
            max_event_bytes: self.max_event_bytes,
            max_batch_bytes: self.batch_max_bytes,
            max_batch_events: self.batch_max_events,
            max_age_ms: batch::MAX_AGE_MS.min(retention_ms),
        })
    }

    /// Validates, resolves the region and builds the client with the standard
    /// credential chain. No request is made (credentials are resolved at the first
    /// call).
    pub async fn build(&self, name: &str) -> Result<CloudWatchSink, CloudWatchError> {
        self.build_inner(name, None).await
    }

    /// As [`CloudWatchConfig::build`] with fixed credentials instead of the chain (tests,
    /// or an embedding program that resolved them itself).
    pub async fn build_with_credentials(
        &self,
        name: &str,
        credentials: Credentials,
    ) -> Result<CloudWatchSink, CloudWatchError> {
        self.build_inner(name, Some(credentials)).await
    }

    async fn build_inner(
        &self,
        name: &str,
        credentials: Option<Credentials>,
    ) -> Result<CloudWatchSink, CloudWatchError> {
        let batcher = self.batcher()?;
        let http = aws_smithy_http_client::Builder::new()
            .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
            ))
            .build_https();
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .connect_timeout(self.timeout.min(Duration::from_secs(10)))
            .operation_attempt_timeout(self.timeout)
            .operation_timeout(self.timeout)
            .build();
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .http_client(http)
            .timeout_config(timeouts)
            .retry_config(aws_config::retry::RetryConfig::disabled());
        if let Some(r) = &self.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        if let Some(u) = &self.endpoint_url {
            loader = loader.endpoint_url(u.clone());
        }
        if let Some(c) = credentials {
            loader = loader.credentials_provider(c);
        }
        let sdk = loader.load().await;
        if sdk.region().is_none() {
            return Err(CloudWatchError::NoRegion);
        }
        Ok(CloudWatchSink {
            name: name.to_owned(),
            client: Client::new(&sdk),
            batcher,
            create_missing: self.create_missing,
            retention_days: self.retention_days.map(|d| d as i32),
            stats: Arc::new(CloudWatchStats::new(name)),
            progress: None,
            known: HashSet::new(),
        })
    }
}

/// Why a [`CloudWatchSink`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudWatchError {
    /// The config failed validation; every problem with its field.
    #[error("invalid cloudwatch sink config: {}", .0.join("; "))]
    Invalid(Vec<String>),
    /// Neither `region` nor the environment / profile names a region.
    #[error("region: not set, and none found in AWS_REGION or the AWS profile")]
    NoRegion,
}

/// The host name for `{hostname}`: the kernel's, else `$HOSTNAME`, else `unknown`.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}

/// This sink's own counters (the runner counts sent / failed / dropped).
#[derive(Debug)]
pub struct CloudWatchStats {
    sink: String,
    /// Messages cut to `max_event_bytes`.
    pub events_truncated: Counter,
    /// Records dropped as older than the accepted window.
    pub events_too_old: Counter,
    /// Records dropped as newer than the accepted window.
    pub events_too_new: Counter,
    /// Events CloudWatch refused (`rejectedLogEventsInfo`, or a call refused permanently).
    pub events_rejected: Counter,
    /// PutLogEvents calls that succeeded.
    pub requests: Counter,
    /// Calls (any operation) that failed.
    pub request_errors: Counter,
    /// Log groups created.
    pub groups_created: Counter,
    /// Log streams created.
    pub streams_created: Counter,
}

impl CloudWatchStats {
    fn new(sink: &str) -> CloudWatchStats {
        CloudWatchStats {
            sink: sink.to_owned(),
            events_truncated: Counter::default(),
            events_too_old: Counter::default(),
            events_too_new: Counter::default(),
            events_rejected: Counter::default(),
            requests: Counter::default(),
            request_errors: Counter::default(),
            groups_created: Counter::default(),
            streams_created: Counter::default(),
        }
    }

    fn counters(&self) -> [(&'static str, &Counter); 8] {
        [
            ("events_truncated", &self.events_truncated),
            ("events_too_old", &self.events_too_old),
            ("events_too_new", &self.events_too_new),
            ("events_rejected", &self.events_rejected),
            ("requests", &self.requests),
            ("request_errors", &self.request_errors),
            ("groups_created", &self.groups_created),
            ("streams_created", &self.streams_created),
        ]
    }

    /// Prometheus text exposition of these sinks' counters,
    /// `warden_sink_cloudwatch_<what>_total{sink="<name>"}`, one `# TYPE` per family.
    pub fn encode(all: &[Arc<CloudWatchStats>]) -> String {
        let mut out = String::new();
        let Some(first) = all.first() else { return out };
        for (i, (what, _)) in first.counters().iter().enumerate() {
            let _ = writeln!(out, "# TYPE warden_sink_cloudwatch_{what}_total counter");
            for s in all {
                let sink = s.sink.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                let _ =
                    writeln!(out, "warden_sink_cloudwatch_{what}_total{{sink=\"{sink}\"}} {}", s.counters()[i].1.get());
            }
        }
        out
    }
}

/// Progress through a batch whose delivery failed part-way.
#[derive(Debug)]
struct Progress {
    fingerprint: u64,
    /// Ids of the calls that succeeded.
    done: HashSet<u64>,
    accepted: u64,
    rejected: u64,
    /// Permanent refusals of single calls.
    refused: Vec<DeliveryError>,
}

/// The CloudWatch Logs sink; see the module docs.
pub struct CloudWatchSink {
    name: String,
    client: Client,
    batcher: Batcher,
    create_missing: bool,
    retention_days: Option<i32>,
    stats: Arc<CloudWatchStats>,
    progress: Option<Progress>,
    /// (group, stream) pairs a call succeeded on lately.
    known: HashSet<(Arc<str>, Arc<str>)>,
}

impl std::fmt::Debug for CloudWatchSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudWatchSink").field("name", &self.name).finish_non_exhaustive()
    }
}

/// What one PutLogEvents call came to.
enum CallOutcome {
    /// Made: events accepted and refused by CloudWatch.
    Done { accepted: u64, rejected: u64 },
    /// CloudWatch refused the call for good; its events are lost.
    Refused {
        /// Events in the call.
        events: u64,
        /// Why.
        error: DeliveryError,
    },
}

impl CloudWatchSink {
    /// This sink's counters.
    pub fn stats(&self) -> Arc<CloudWatchStats> {
        Arc::clone(&self.stats)
    }

    /// The SDK client (tests read back what arrived with it).
    pub fn client(&self) -> &Client {
        &self.client
    }

    async fn deliver_batch(&mut self, batch: &Batch) -> Result<Delivered, DeliveryError> {
        let other = (batch.metrics.len() + batch.spans.len()) as u64;
        let plan = self.batcher.plan(&batch.logs, now_ms());
        let fingerprint = plan.fingerprint();
        let mut progress = match self.progress.take() {
            Some(p) if p.fingerprint == fingerprint => p,
            _ => {
                // First attempt at this batch: count what planning left out once.
                self.stats.events_truncated.add(plan.truncated);
                self.stats.events_too_old.add(plan.too_old);
                self.stats.events_too_new.add(plan.too_new);
                if plan.too_old + plan.too_new > 0 {
                    tracing::warn!(
                        sink = %self.name,
                        too_old = plan.too_old,
                        too_new = plan.too_new,
                        "log records outside CloudWatch's accepted time range dropped"
                    );
                }
                Progress { fingerprint, done: HashSet::new(), accepted: 0, rejected: 0, refused: Vec::new() }
            }
        };
        let calls = plan.calls.len();
        for call in plan.calls {
            if progress.done.contains(&call.id) {
                continue;
            }
            let id = call.id;
            match self.put(call).await {
                Ok(CallOutcome::Done { accepted, rejected }) => {
                    progress.accepted += accepted;
                    progress.rejected += rejected;
                }
                Ok(CallOutcome::Refused { events, error }) => {
                    // Counted and logged in `put`; the other calls of the batch still go.
                    progress.rejected += events;
                    progress.refused.push(error);
                }
                Err(e) => {
                    self.progress = Some(progress);
                    return Err(e);
                }
            }
            progress.done.insert(id);
        }
        if calls > 0 && progress.refused.len() == calls {
            // CloudWatch refused every call: report it as the batch's permanent failure.
            if let Some(e) = progress.refused.pop() {
                return Err(e);
            }
        }
        let rejected = progress.rejected + plan.too_old + plan.too_new + other;
        Ok(Delivered { accepted: progress.accepted, rejected })
    }

    /// One PutLogEvents call, creating the group and stream first if CloudWatch says
    /// they are missing. `Err` = retryable; a permanent refusal is `Ok(Refused)`.
    async fn put(&mut self, call: Call) -> Result<CallOutcome, DeliveryError> {
        let n = call.events.len() as u64;
        let key = (Arc::clone(&call.group), Arc::clone(&call.stream));
        let events: Vec<InputLogEvent> = call
            .events
            .into_iter()
            .filter_map(|e| InputLogEvent::builder().timestamp(e.timestamp_ms).message(e.message).build().ok())
            .collect();
        let request = self
            .client
            .put_log_events()
            .log_group_name(&*call.group)
            .log_stream_name(&*call.stream)
            .set_log_events(Some(events));
        // Keep a copy for the retry after creating a missing stream, but only for a
        // stream not seen working yet.
        let again = (self.create_missing && !self.known.contains(&key)).then(|| request.clone());
        let first = request.send().await;
        let result = match first {
            Err(SdkError::ServiceError(ctx)) if ctx.err().is_resource_not_found_exception() => {
                self.known.remove(&key);
                if !self.create_missing {
                    let e = DeliveryError::permanent(format!(
                        "cloudwatch PutLogEvents group={:?} stream={:?}: ResourceNotFoundException (the group or \
                         stream does not exist and create_missing is false)",
                        call.group, call.stream
                    ));
                    return Ok(self.refused(n, e));
                }
                match self.create(&call.group, &call.stream).await {
                    Ok(()) => {}
                    // Not allowed to create (no logs:CreateLogGroup, an invalid name): this
                    // call cannot go; the batch's other calls still may.
                    Err(e @ DeliveryError::Permanent { .. }) => return Ok(self.refused(n, e)),
                    Err(e) => return Err(e),
                }
                match again {
                    Some(request) => request.send().await,
                    // Created now; the next attempt sends the call (no copy was kept).
                    None => {
                        return Err(DeliveryError::Retryable {
                            reason: format!(
                                "cloudwatch group={:?} stream={:?} was missing and has been created",
                                call.group, call.stream
                            ),
                            retry_after: Some(Duration::ZERO),
                        });
                    }
                }
            }
            other => other,
        };
        match result {
            Ok(out) => {
                self.stats.requests.inc();
                if self.known.len() >= MAX_KNOWN_STREAMS {
                    self.known.clear();
                }
                self.known.insert(key);
                let rejected = out.rejected_log_events_info().map_or(0, |r| {
                    rejected_count(
                        n,
                        r.too_new_log_event_start_index(),
                        r.too_old_log_event_end_index(),
                        r.expired_log_event_end_index(),
                    )
                });
                if rejected > 0 {
                    self.stats.events_rejected.add(rejected);
                    tracing::warn!(
                        sink = %self.name, group = %call.group, stream = %call.stream, rejected,
                        "CloudWatch rejected log events (too old, too new or past the retention)"
                    );
                }
                Ok(CallOutcome::Done { accepted: n - rejected, rejected })
            }
            Err(e) => {
                self.stats.request_errors.inc();
                match classify("PutLogEvents", &call.group, Some(&call.stream), &e) {
                    d @ DeliveryError::Retryable { .. } => Err(d),
                    d @ DeliveryError::Permanent { .. } => Ok(self.refused(n, d)),
                }
            }
        }
    }

    fn refused(&self, n: u64, e: DeliveryError) -> CallOutcome {
        self.stats.events_rejected.add(n);
        tracing::error!(sink = %self.name, events = n, error = %e, "CloudWatch refused a PutLogEvents call; its events are dropped");
        CallOutcome::Refused { events: n, error: e }
    }

    /// Creates `group` (setting the retention when it is new) and `stream`; "already
    /// exists" is success.
    async fn create(&self, group: &str, stream: &str) -> Result<(), DeliveryError> {
        match self.client.create_log_group().log_group_name(group).send().await {
            Ok(_) => {
                self.stats.groups_created.inc();
                tracing::info!(sink = %self.name, group, "created CloudWatch log group");
                if let Some(days) = self.retention_days
                    && let Err(e) =
                        self.client.put_retention_policy().log_group_name(group).retention_in_days(days).send().await
                {
                    // Delivery goes on; the group keeps CloudWatch's default retention
                    // until an operator sets it (this sink sets it only on creation).
                    self.stats.request_errors.inc();
                    let error = classify("PutRetentionPolicy", group, None, &e);
                    tracing::error!(sink = %self.name, group, retention_days = days, %error, "could not set the retention of a new log group");
                }
            }
            Err(SdkError::ServiceError(ctx)) if ctx.err().is_resource_already_exists_exception() => {}
            Err(e) => {
                self.stats.request_errors.inc();
                return Err(classify("CreateLogGroup", group, None, &e));
            }
        }
        match self.client.create_log_stream().log_group_name(group).log_stream_name(stream).send().await {
            Ok(_) => {
                self.stats.streams_created.inc();
                tracing::info!(sink = %self.name, group, stream, "created CloudWatch log stream");
                Ok(())
            }
            Err(SdkError::ServiceError(ctx)) if ctx.err().is_resource_already_exists_exception() => Ok(()),
            Err(e) => {
                self.stats.request_errors.inc();
                Err(classify("CreateLogStream", group, Some(stream), &e))
            }
        }
    }
}

impl Sink for CloudWatchSink {
    async fn deliver(&mut self, batch: &Redacted<Batch>) -> Result<Delivered, DeliveryError> {
        let result = self.deliver_batch(batch.get()).await;
        if !matches!(result, Err(DeliveryError::Retryable { .. })) {
            self.progress = None;
        }
        result
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Events of a call of `n` that `rejectedLogEventsInfo` names: a suffix from
/// `too_new_start`, and a prefix up to the larger of the two end indexes.
fn rejected_count(n: u64, too_new_start: Option<i32>, too_old_end: Option<i32>, expired_end: Option<i32>) -> u64 {
    let prefix = too_old_end.max(expired_end).map_or(0, |i| (i64::from(i) + 1).clamp(0, n as i64) as u64);
    let suffix = too_new_start.map_or(0, |i| (n as i64 - i64::from(i)).clamp(0, n as i64) as u64);
    (prefix + suffix).min(n)
}

/// Error codes worth retrying whatever their HTTP status.
const RETRYABLE_CODES: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "TooManyRequestsException",
    "ServiceUnavailableException",
    "ServiceUnavailable",
    "InternalFailure",
    "InternalServerError",
    "RequestTimeout",
    "RequestTimeoutException",
    "OperationAbortedException",
    "ExpiredTokenException",
    "ExpiredToken",
    "RequestExpired",
    "IDPCommunicationError",
    "InvalidSequenceTokenException",
];

/// A failed request as a [`DeliveryError`]: names the operation, group, stream, error
/// code and status, never the service's message (it may quote a refused value).
fn classify<E>(op: &str, group: &str, stream: Option<&str>, err: &SdkError<E>) -> DeliveryError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let mut what = format!("cloudwatch {op} group={group:?}");
    if let Some(s) = stream {
        let _ = write!(what, " stream={s:?}");
    }
    match err {
        SdkError::ServiceError(ctx) => {
            let code = ctx.err().code().unwrap_or("unknown error");
            let status = ctx.raw().status().as_u16();
            let reason = format!("{what}: {code} (HTTP {status})");
            if RETRYABLE_CODES.contains(&code) || status >= 500 || status == 429 {
                DeliveryError::retryable(reason)
            } else {
                DeliveryError::permanent(reason)
            }
        }
        SdkError::TimeoutError(_) => DeliveryError::retryable(format!("{what}: timed out")),
        // Connection errors, an unreadable response, and request construction (which
        // includes resolving credentials: an instance-metadata hiccup must not drop data).
        SdkError::DispatchFailure(_) | SdkError::ResponseError(_) | SdkError::ConstructionFailure(_) => {
            DeliveryError::retryable(format!("{what}: {}", DisplayErrorContext(err)))
        }
        _ => DeliveryError::retryable(format!("{what}: {}", DisplayErrorContext(err))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml_json: &str) -> Result<CloudWatchConfig, String> {
        serde_json::from_str(yaml_json).map_err(|e| e.to_string())
    }

    #[test]
    fn config_defaults_and_validation() {
        let c = parse(r#"{"log_group":"/w/{service.name}","log_stream":"{host.name}-{date}"}"#).unwrap();
        assert_eq!(c, CloudWatchConfig::new("/w/{service.name}", "{host.name}-{date}"));
        assert!(c.validate().is_ok());
        assert!(parse(r#"{"log_group":"a","log_stream":"b","retention":3}"#).unwrap_err().contains("unknown field"));
        let c = parse(
            r#"{"log_group":"/w/{servce.name}","log_stream":"a:b","retention_days":2,"timeout":"0s",
                "max_event_bytes":2000000,"batch_max_events":10001,"region":"eu west","endpoint_url":"localhost:1",
                "format":"text"}"#,
        )
        .unwrap();
        let errors = c.validate().unwrap_err();
        for want in [
            "log_group: unknown placeholder {servce.name}",
            "log_stream: character ':'",
            "retention_days: 2 is not one CloudWatch accepts",
            "timeout:",
            "max_event_bytes:",
            "batch_max_events:",
            "region:",
            "endpoint_url:",
        ] {
            assert!(errors.iter().any(|e| e.starts_with(want)), "{want} in {errors:?}");
        }
        assert!(parse(r#"{"log_group":"a","log_stream":"b","format":"xml"}"#).is_err());
        let mut c = CloudWatchConfig::new("a", "b");
        c.batch_max_bytes = 4096;
        c.max_event_bytes = 4096;
        assert!(c.validate().unwrap_err()[0].starts_with("max_event_bytes: plus 26"));
    }

    #[test]
    fn retention_narrows_the_accepted_age() {
        let mut c = CloudWatchConfig::new("a", "b");
        assert_eq!(c.batcher().unwrap().max_age_ms, batch::MAX_AGE_MS);
        c.retention_days = Some(3);
        assert_eq!(c.batcher().unwrap().max_age_ms, 3 * 86_400_000);
        c.retention_days = Some(30);
        assert_eq!(c.batcher().unwrap().max_age_ms, batch::MAX_AGE_MS);
    }

    #[test]
    fn rejected_event_info_counts() {
        assert_eq!(rejected_count(10, None, None, None), 0);
        assert_eq!(rejected_count(10, Some(7), None, None), 3);
        assert_eq!(rejected_count(10, None, Some(2), None), 3);
        assert_eq!(rejected_count(10, None, Some(2), Some(4)), 5);
        assert_eq!(rejected_count(10, Some(8), Some(1), None), 4);
        assert_eq!(rejected_count(10, Some(0), Some(9), None), 10);
        assert_eq!(rejected_count(10, Some(-5), Some(99), None), 10);
    }

    #[test]
    fn stats_encode() {
        let a = Arc::new(CloudWatchStats::new("cw"));
        let b = Arc::new(CloudWatchStats::new("c\"w"));
        a.events_truncated.add(2);
        let text = CloudWatchStats::encode(&[a, b]);
        assert_eq!(text.matches("# TYPE warden_sink_cloudwatch_events_truncated_total counter\n").count(), 1);
        assert!(text.contains("warden_sink_cloudwatch_events_truncated_total{sink=\"cw\"} 2\n"), "{text}");
        assert!(text.contains("warden_sink_cloudwatch_requests_total{sink=\"c\\\"w\"} 0\n"), "{text}");
    }
}
