//! One target's scrape: fetch (bounded in time and size), parse, attach target labels,
//! track staleness, and add the synthetic series.

use super::config::TargetConfig;
use crate::exposition::{Format, ParseError, Parser, SCRAPE_ACCEPT_HEADER, stale_nan};
use crate::pipeline::ComponentStats;
use crate::signal::{Label, MetricKind, MetricPoint};
use reqwest::header::{ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_TYPE};
use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::io::Read as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Why a scrape failed. The message names the cause (an OS or HTTP error, a limit, a
/// line and column) and never contains the response body.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScrapeError {
    /// The TCP connection (or name resolution) failed.
    #[error("cannot connect: {0}")]
    Connect(String),
    /// The scrape did not finish within the target's timeout.
    #[error("timed out after {}", humantime::format_duration(*.0))]
    Timeout(Duration),
    /// The target answered with a status other than 200.
    #[error("server returned HTTP status {0}")]
    HttpStatus(u16),
    /// The body (after decompression) is larger than `body_size_limit`.
    #[error("response body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The connection broke or the body could not be decoded.
    #[error("cannot read the response: {0}")]
    Read(String),
    /// The body is not a valid exposition.
    #[error("invalid exposition: {0}")]
    Parse(#[from] ParseError),
    /// More samples than `sample_limit`.
    #[error("{samples} samples exceed the sample limit of {limit}")]
    SampleLimit {
        /// Samples in the scrape.
        samples: usize,
        /// The limit.
        limit: usize,
    },
    /// The parsing task died (a bug); the scrape is counted as failed.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ScrapeError {
    /// A short, fixed name of the failure class: `connect`, `timeout`, `http_status`,
    /// `body_too_large`, `read`, `parse`, `sample_limit`, `internal`.
    pub fn reason(&self) -> &'static str {
        match self {
            ScrapeError::Connect(_) => "connect",
            ScrapeError::Timeout(_) => "timeout",
            ScrapeError::HttpStatus(_) => "http_status",
            ScrapeError::BodyTooLarge { .. } => "body_too_large",
            ScrapeError::Read(_) => "read",
            ScrapeError::Parse(_) => "parse",
            ScrapeError::SampleLimit { .. } => "sample_limit",
            ScrapeError::Internal(_) => "internal",
        }
    }

    /// The component counter this failure increments: `scrape_failures_<reason>`.
    pub fn counter_name(&self) -> &'static str {
        match self {
            ScrapeError::Connect(_) => "scrape_failures_connect",
            ScrapeError::Timeout(_) => "scrape_failures_timeout",
            ScrapeError::HttpStatus(_) => "scrape_failures_http_status",
            ScrapeError::BodyTooLarge { .. } => "scrape_failures_body_too_large",
            ScrapeError::Read(_) => "scrape_failures_read",
            ScrapeError::Parse(_) => "scrape_failures_parse",
            ScrapeError::SampleLimit { .. } => "scrape_failures_sample_limit",
            ScrapeError::Internal(_) => "scrape_failures_internal",
        }
    }
}

/// The result of one scrape: everything to send downstream, and how it went.
#[derive(Debug)]
pub struct Scrape {
    /// The scraped samples (with target labels), staleness markers for series that
    /// disappeared, and the five synthetic series, all stamped at the scrape start unless
    /// the target gave (and the config honours) its own timestamp.
    pub points: Vec<MetricPoint>,
    /// Why the scrape failed (`up` is 0), or `None`.
    pub error: Option<ScrapeError>,
    /// Samples in the body (`scrape_samples_scraped`); 0 when fetching or parsing failed.
    pub samples: usize,
    /// The scrape start, ms since the epoch.
    pub timestamp_ms: i64,
    /// How long the scrape took (`scrape_duration_seconds`).
    pub duration: Duration,
}

impl Scrape {
    /// The scraped samples and staleness markers, without the synthetic series.
    pub fn samples_and_markers(&self) -> &[MetricPoint] {
        &self.points[..self.points.len().saturating_sub(SYNTHETIC.len())]
    }
}

/// The synthetic series every scrape writes, in this order.
pub const SYNTHETIC: [&str; 5] = [
    "up",
    "scrape_duration_seconds",
    "scrape_samples_scraped",
    "scrape_samples_post_metric_relabeling",
    "scrape_series_added",
];

/// The timestamp the parser gives samples that have none (never a real timestamp in
/// practice), so the scraper can tell them apart.
const NO_TIMESTAMP: i64 = i64::MIN;

/// The HTTP client scrapes share: no proxy from the environment (as Prometheus), the
/// per-request timeout is set on each request.
pub fn http_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .no_proxy()
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(2)
        .build()
}

/// One target: its settings, HTTP client, and the state carried between scrapes.
pub struct Scraper {
    url: reqwest::Url,
    display_url: String,
    job: String,
    target_labels: Arc<[Label]>,
    interval: Duration,
    timeout: Duration,
    body_size_limit: u64,
    hash: u64,
    client: reqwest::Client,
    /// Moved into the blocking parse task and back; `None` only while a scrape runs.
    state: Option<Box<State>>,
    settings: Settings,
    stats: Arc<ComponentStats>,
    last_failure: Option<&'static str>,
    /// The scheduled time of the latest scrape, for timestamp alignment.
    aligned_ms: Option<i64>,
}

/// Scrape times within this much of the schedule are snapped to it (Prometheus'
/// `--scrape.timestamp-tolerance`, also capped at 1 % of the interval): timer jitter of a
/// millisecond or two would otherwise cost each sample several bits of delta-of-delta
/// timestamp encoding in the rules store (about 1 byte per sample).
pub const TIMESTAMP_TOLERANCE: Duration = Duration::from_millis(2);

impl std::fmt::Debug for Scraper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scraper").field("url", &self.display_url).field("job", &self.job).finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
struct Settings {
    target_labels: Arc<[Label]>,
    honor_labels: bool,
    honor_timestamps: bool,
    sample_limit: usize,
}

impl Scraper {
    /// A scraper for `target` (which should have passed validation); counts go to
    /// `stats`. Fails only on a URL without a host.
    pub fn new(target: &TargetConfig, client: reqwest::Client, stats: Arc<ComponentStats>) -> Result<Scraper, String> {
        let url = reqwest::Url::parse(&target.url).map_err(|e| format!("invalid URL: {e}"))?;
        let host = url.host_str().filter(|h| !h.is_empty()).ok_or("URL has no host")?;
        let port = url.port_or_known_default().unwrap_or(80);
        // What logs show: no credentials, and no query or fragment (tokens and
        // parameters live there).
        let mut display = url.clone();
        let _ = display.set_username("");
        let _ = display.set_password(None);
        display.set_query(None);
        display.set_fragment(None);
        let mut labels = vec![Label::new("job", target.job.clone()), Label::new("instance", format!("{host}:{port}"))];
        for (name, value) in &target.labels {
            match labels.iter_mut().find(|l| l.name == *name) {
                Some(l) => l.value.clone_from(value),
                None => labels.push(Label::new(name.clone(), value.clone())),
            }
        }
        labels.retain(|l| !l.value.is_empty());
        labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        let target_labels: Arc<[Label]> = labels.into();
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        (&target.url, &target.job, &target.labels).hash(&mut hasher);
        let settings = Settings {
            target_labels: Arc::clone(&target_labels),
            honor_labels: target.honor_labels,
            honor_timestamps: target.honor_timestamps,
            sample_limit: target.sample_limit,
        };
        Ok(Scraper {
            url,
            display_url: display.to_string(),
            job: target.job.clone(),
            target_labels,
            interval: target.interval,
            timeout: target.effective_timeout(),
            body_size_limit: target.body_size_limit,
            hash: hasher.finish(),
            client,
            state: Some(Box::new(State::new(&settings))),
            settings,
            stats,
            last_failure: None,
            aligned_ms: None,
        })
    }

    /// The scrape interval.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The labels every series of this target gets (`job`, `instance`, static labels),
    /// sorted by name.
    pub fn target_labels(&self) -> &[Label] {
        &self.target_labels
    }

    /// The delay before the first scrape, as Prometheus spreads targets: a fixed offset
    /// within the interval derived from the target's identity, counted from the start
    /// of the current wall-clock interval, so scrapes of many targets do not bunch up
    /// and a restarted agent keeps each target's phase.
    pub fn first_delay(&self, since_epoch: Duration) -> Duration {
        let interval = self.interval.as_nanos().max(1);
        let now = since_epoch.as_nanos();
        let offset = u128::from(self.hash) % interval;
        let mut next = (interval - now % interval) + offset;
        if next > interval {
            next -= interval;
        }
        Duration::from_nanos(u64::try_from(next).unwrap_or(u64::MAX))
    }

    /// The timestamp for a scrape starting at `now_ms`, as Prometheus aligns them: the
    /// schedule advances by whole intervals from the first scrape, and a start within
    /// [`TIMESTAMP_TOLERANCE`] (at most 1 % of the interval) after the scheduled time gets
    /// exactly the scheduled time.
    fn align(&mut self, now_ms: i64) -> i64 {
        let interval = i64::try_from(self.interval.as_millis()).unwrap_or(i64::MAX).max(1);
        let tolerance = i64::try_from(TIMESTAMP_TOLERANCE.as_millis()).unwrap_or(0).min(interval / 100);
        let Some(mut aligned) = self.aligned_ms else {
            self.aligned_ms = Some(now_ms);
            return now_ms;
        };
        if now_ms < aligned {
            // The wall clock went back: start a new schedule.
            self.aligned_ms = Some(now_ms);
            return now_ms;
        }
        // Skipped ticks: move the schedule on by whole intervals (bounded: one division).
        aligned += (now_ms - aligned) / interval * interval;
        self.aligned_ms = Some(aligned);
        if now_ms - aligned <= tolerance { aligned } else { now_ms }
    }

    /// Scrapes once. Never fails: a failure is reported in [`Scrape::error`], with
    /// `up` 0, staleness markers for every series of the last successful scrape, the
    /// component's `errors` and `scrape_failures_<reason>` counters incremented, and a
    /// warning logged when the failure starts or changes reason.
    pub async fn scrape(&mut self) -> Scrape {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let timestamp_ms = self.align(now_ms);
        let started = Instant::now();
        let fetched = match tokio::time::timeout(self.timeout, self.fetch()).await {
            Ok(r) => r,
            Err(_) => Err(ScrapeError::Timeout(self.timeout)),
        };
        let state = self.state.take().unwrap_or_else(|| Box::new(State::new(&self.settings)));
        let (state, outcome) = match tokio::task::spawn_blocking(move || {
            let mut state = state;
            let outcome = state.process(fetched, timestamp_ms);
            (state, outcome)
        })
        .await
        {
            Ok(r) => r,
            Err(e) => (
                Box::new(State::new(&self.settings)),
                Outcome::failed(ScrapeError::Internal(format!("scrape task failed: {e}"))),
            ),
        };
        self.state = Some(state);
        let duration = started.elapsed();
        self.account(&outcome);
        let Outcome { mut points, samples, series_added, error, .. } = outcome;
        let up = if error.is_none() { 1.0 } else { 0.0 };
        let post_relabel = if matches!(error, None | Some(ScrapeError::SampleLimit { .. })) { samples } else { 0 };
        let values = [up, duration.as_secs_f64(), samples as f64, post_relabel as f64, series_added as f64];
        for (name, value) in SYNTHETIC.iter().zip(values) {
            points.push(MetricPoint {
                name: (*name).to_owned(),
                labels: self.target_labels.to_vec(),
                kind: MetricKind::Gauge,
                value,
                timestamp_ms,
            });
        }
        Scrape { points, error, samples, timestamp_ms, duration }
    }

    /// Counters and logs for one outcome.
    fn account(&mut self, outcome: &Outcome) {
        let stats = &self.stats;
        if outcome.duplicates > 0 {
            stats.dropped.add(outcome.duplicates as u64);
            stats.counter("scrape_duplicate_samples").add(outcome.duplicates as u64);
        }
        match &outcome.error {
            None => {
                stats.received.add(outcome.samples as u64);
                if let Some(previous) = self.last_failure.take() {
                    tracing::info!(url = %self.display_url, job = %self.job, previous_reason = previous, "scrape target is up again");
                }
            }
            Some(error) => {
                let reason = error.reason();
                stats.errors.inc();
                stats.counter(error.counter_name()).inc();
                if let ScrapeError::SampleLimit { samples, .. } = error {
                    stats.received.add(*samples as u64);
                    stats.dropped.add(*samples as u64);
                }
                if self.last_failure == Some(reason) {
                    tracing::debug!(url = %self.display_url, job = %self.job, reason, error = %error, "scrape failed again");
                } else {
                    tracing::warn!(url = %self.display_url, job = %self.job, reason, error = %error, "scrape failed");
                }
                self.last_failure = Some(reason);
            }
        }
    }

    /// GET the target with Prometheus' headers; the body is read up to the size limit.
    async fn fetch(&self) -> Result<Fetched, ScrapeError> {
        let timeout = self.timeout;
        let on_error = |e: reqwest::Error| {
            if e.is_timeout() {
                return ScrapeError::Timeout(timeout);
            }
            let connect = e.is_connect();
            let detail = error_chain(&e.without_url());
            if connect { ScrapeError::Connect(detail) } else { ScrapeError::Read(detail) }
        };
        let mut response = self
            .client
            .get(self.url.clone())
            .header(ACCEPT, SCRAPE_ACCEPT_HEADER)
            .header(ACCEPT_ENCODING, "gzip")
            .header("X-Prometheus-Scrape-Timeout-Seconds", format!("{}", timeout.as_secs_f64()))
            .timeout(timeout)
            .send()
            .await
            .map_err(on_error)?;
        if response.status() != reqwest::StatusCode::OK {
            return Err(ScrapeError::HttpStatus(response.status().as_u16()));
        }
        let limit = self.body_size_limit;
        if response.content_length().is_some_and(|n| n > limit) {
            return Err(ScrapeError::BodyTooLarge { limit });
        }
        let header = |name| response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let content_type = header(CONTENT_TYPE);
        let gzip = header(CONTENT_ENCODING).is_some_and(|e| e.trim().eq_ignore_ascii_case("gzip"));
        let capacity = response.content_length().unwrap_or(64 * 1024).min(limit);
        let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        while let Some(chunk) = response.chunk().await.map_err(on_error)? {
            if (body.len() + chunk.len()) as u64 > limit {
                return Err(ScrapeError::BodyTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Fetched { body, content_type, gzip, limit })
    }
}

/// `e` and its sources, `: `-joined (OS and HTTP errors; never a body).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        source = inner.source();
    }
    s
}

/// A fetched body and how to read it.
struct Fetched {
    body: Vec<u8>,
    content_type: Option<String>,
    gzip: bool,
    limit: u64,
}

/// What processing a body produced (before the synthetic series).
struct Outcome {
    points: Vec<MetricPoint>,
    samples: usize,
    series_added: usize,
    duplicates: usize,
    error: Option<ScrapeError>,
}

impl Outcome {
    fn failed(error: ScrapeError) -> Outcome {
        Outcome { points: Vec::new(), samples: 0, series_added: 0, duplicates: 0, error: Some(error) }
    }
}

/// The state kept between scrapes, owned by whichever task processes a body.
struct State {
    parser: Parser,
    /// Series of the last successful scrape whose samples had no explicit timestamp
    /// (those are the ones Prometheus marks stale), as [`series_key`]s.
    series: HashSet<Box<[u8]>>,
    key: Vec<u8>,
    settings: Settings,
}

impl State {
    fn new(settings: &Settings) -> State {
        let mut parser = Parser::new(Format::PrometheusText);
        parser.reserve_extra_labels(settings.target_labels.len());
        State { parser, series: HashSet::new(), key: Vec::new(), settings: settings.clone() }
    }

    fn process(&mut self, fetched: Result<Fetched, ScrapeError>, timestamp_ms: i64) -> Outcome {
        let mut points = Vec::new();
        let mut samples = 0;
        let parsed = fetched.and_then(|f| {
            let body = if f.gzip { gunzip(&f.body, f.limit)? } else { f.body };
            self.parser.set_format(Format::from_content_type(f.content_type.as_deref()));
            self.parser.parse_into(&body, NO_TIMESTAMP, &mut points)?;
            samples = points.len();
            let limit = self.settings.sample_limit;
            if limit > 0 && samples > limit {
                return Err(ScrapeError::SampleLimit { samples, limit });
            }
            Ok(())
        });
        if let Err(error) = parsed {
            points.clear();
            self.all_stale(&mut points, timestamp_ms);
            let samples = if matches!(error, ScrapeError::SampleLimit { .. }) { samples } else { 0 };
            return Outcome { points, samples, series_added: 0, duplicates: 0, error: Some(error) };
        }
        let (series_added, duplicates) = self.label_and_track(&mut points, timestamp_ms);
        Outcome { points, samples, series_added, duplicates, error: None }
    }

    /// Timestamps, target labels, staleness tracking and duplicate removal; then a
    /// staleness marker for every series of the last scrape that is gone. Returns the
    /// number of new series and of duplicate samples dropped.
    fn label_and_track(&mut self, points: &mut Vec<MetricPoint>, timestamp_ms: i64) -> (usize, usize) {
        let mut current: HashSet<Box<[u8]>> = HashSet::with_capacity(self.series.len().max(points.len()));
        let mut added = 0;
        let mut duplicate: Vec<usize> = Vec::new();
        for (i, p) in points.iter_mut().enumerate() {
            let explicit = p.timestamp_ms != NO_TIMESTAMP && self.settings.honor_timestamps;
            if !explicit {
                p.timestamp_ms = timestamp_ms;
            }
            apply_target_labels(&mut p.labels, &self.settings.target_labels, self.settings.honor_labels);
            if explicit {
                continue;
            }
            series_key(&mut self.key, p);
            if current.contains(self.key.as_slice()) {
                duplicate.push(i);
            } else if let Some(known) = self.series.take(self.key.as_slice()) {
                current.insert(known);
            } else {
                added += 1;
                current.insert(self.key.as_slice().into());
            }
        }
        if !duplicate.is_empty() {
            let mut i = 0;
            let mut next = duplicate.iter().peekable();
            points.retain(|_| {
                let keep = next.peek() != Some(&&i);
                if !keep {
                    next.next();
                }
                i += 1;
                keep
            });
        }
        let gone = std::mem::replace(&mut self.series, current);
        points.extend(gone.iter().map(|k| stale_point(k, timestamp_ms)));
        (added, duplicate.len())
    }

    /// Staleness markers for every series of the last successful scrape, which are
    /// then forgotten (a failed scrape makes them all stale).
    fn all_stale(&mut self, points: &mut Vec<MetricPoint>, timestamp_ms: i64) {
        points.extend(self.series.drain().map(|k| stale_point(&k, timestamp_ms)));
    }
}

/// Adds the target labels to a sample's labels as Prometheus does, then drops
/// empty-valued labels and sorts. `honor_labels`: a label the sample has (even empty)
/// wins. Otherwise the target's wins and a clashing non-empty scraped value moves to
/// `exported_<name>` (`exported_exported_<name>` if that is taken, and so on; shorter
/// names first).
pub(crate) fn apply_target_labels(labels: &mut Vec<Label>, target: &[Label], honor_labels: bool) {
    if honor_labels {
        for t in target {
            if !labels.iter().any(|l| l.name == t.name) {
                labels.push(t.clone());
            }
        }
        labels.retain(|l| !l.value.is_empty());
    } else {
        labels.retain(|l| !l.value.is_empty());
        let mut conflicts: Vec<Label> = Vec::new();
        for t in target {
            match labels.iter_mut().find(|l| l.name == t.name) {
                Some(l) => {
                    let scraped = std::mem::replace(&mut l.value, t.value.clone());
                    conflicts.push(Label { name: t.name.clone(), value: scraped });
                }
                None => labels.push(t.clone()),
            }
        }
        conflicts.sort_by_key(|l| l.name.len());
        for c in conflicts {
            let mut name = c.name;
            loop {
                name = format!("exported_{name}");
                match labels.iter_mut().find(|l| l.name == name) {
                    Some(l) if !l.value.is_empty() => continue,
                    Some(l) => l.value = c.value,
                    None => labels.push(Label { name, value: c.value }),
                }
                break;
            }
        }
    }
    labels.sort_unstable_by(|a, b| a.name.cmp(&b.name));
}

fn kind_byte(kind: MetricKind) -> u8 {
    match kind {
        MetricKind::Counter => 0,
        MetricKind::Gauge => 1,
        MetricKind::Histogram => 2,
        MetricKind::Summary => 3,
        MetricKind::Unknown => 4,
    }
}

fn byte_kind(b: u8) -> MetricKind {
    match b {
        0 => MetricKind::Counter,
        1 => MetricKind::Gauge,
        2 => MetricKind::Histogram,
        3 => MetricKind::Summary,
        _ => MetricKind::Unknown,
    }
}

/// A series' identity as bytes: kind, name, then `0xFF name 0xFE value` per label.
/// 0xFE and 0xFF never occur in UTF-8, so the key splits back unambiguously.
fn series_key(key: &mut Vec<u8>, p: &MetricPoint) {
    key.clear();
    key.push(kind_byte(p.kind));
    key.extend_from_slice(p.name.as_bytes());
    for l in &p.labels {
        key.push(0xFF);
        key.extend_from_slice(l.name.as_bytes());
        key.push(0xFE);
        key.extend_from_slice(l.value.as_bytes());
    }
}

/// The staleness marker for the series `key`.
fn stale_point(key: &[u8], timestamp_ms: i64) -> MetricPoint {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let kind = byte_kind(key.first().copied().unwrap_or(4));
    let mut parts = key.get(1..).unwrap_or_default().split(|&b| b == 0xFF);
    let name = text(parts.next().unwrap_or_default());
    let labels = parts
        .map(|part| {
            let mut kv = part.splitn(2, |&b| b == 0xFE);
            Label { name: text(kv.next().unwrap_or_default()), value: text(kv.next().unwrap_or_default()) }
        })
        .collect();
    MetricPoint { name, labels, kind, value: stale_nan(), timestamp_ms }
}

/// Decompresses a gzip body, refusing to produce more than `limit` bytes.
fn gunzip(body: &[u8], limit: u64) -> Result<Vec<u8>, ScrapeError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(usize::try_from(limit).unwrap_or(usize::MAX)));
    flate2::read::GzDecoder::new(body)
        .take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| ScrapeError::Read(format!("invalid gzip body: {e}")))?;
    if out.len() as u64 > limit {
        return Err(ScrapeError::BodyTooLarge { limit });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect()
    }

    #[test]
    fn target_labels_like_prometheus() {
        let target = labels(&[("instance", "h:1"), ("job", "j")]);
        let check = |scraped: &[(&str, &str)], honor, expected: &[(&str, &str)]| {
            let mut l = labels(scraped);
            apply_target_labels(&mut l, &target, honor);
            assert_eq!(l, labels(expected), "scraped {scraped:?} honor_labels={honor}");
        };
        check(&[("a", "1")], false, &[("a", "1"), ("instance", "h:1"), ("job", "j")]);
        check(&[("job", "x")], false, &[("exported_job", "x"), ("instance", "h:1"), ("job", "j")]);
        check(
            &[("job", "x"), ("exported_job", "y")],
            false,
            &[("exported_exported_job", "x"), ("exported_job", "y"), ("instance", "h:1"), ("job", "j")],
        );
        check(
            &[("job", "x"), ("instance", "z")],
            false,
            &[("exported_instance", "z"), ("exported_job", "x"), ("instance", "h:1"), ("job", "j")],
        );
        check(&[("job", ""), ("b", "")], false, &[("instance", "h:1"), ("job", "j")]);
        check(&[("job", "x")], true, &[("instance", "h:1"), ("job", "x")]);
        check(&[("job", ""), ("a", "1")], true, &[("a", "1"), ("instance", "h:1")]);
    }

    #[test]
    fn series_keys_round_trip_to_stale_points() {
        let p = MetricPoint::new("m_total", labels(&[("a", "ü\n\"x"), ("b", "")]), MetricKind::Counter, 1.0, 5);
        let mut key = Vec::new();
        series_key(&mut key, &p);
        let s = stale_point(&key, 9);
        assert_eq!(
            (s.name.as_str(), &s.labels, s.kind, s.timestamp_ms),
            ("m_total", &p.labels, MetricKind::Counter, 9)
        );
        assert!(crate::exposition::is_stale_nan(s.value));
    }

    #[test]
    fn first_delay_is_within_one_interval_and_stable() {
        let stats = ComponentStats::new("source", "scrape");
        let t = TargetConfig { interval: Duration::from_secs(10), ..TargetConfig::new("http://h:1/m", "j") };
        let s = Scraper::new(&t, http_client().unwrap(), stats).unwrap();
        let a = s.first_delay(Duration::from_secs(1_000_003));
        let b = s.first_delay(Duration::from_secs(1_000_013));
        assert!(a <= Duration::from_secs(10));
        assert_eq!(a, b, "same phase one interval later");
        assert_eq!(s.target_labels(), labels(&[("instance", "h:1"), ("job", "j")]).as_slice());
        // The default port fills in `instance`; a static label may override it.
        let t = TargetConfig {
            labels: [("instance".to_owned(), "api-1".to_owned()), ("env".to_owned(), "prod".to_owned())].into(),
            ..TargetConfig::new("http://[::1]/m", "j")
        };
        let s = Scraper::new(&t, http_client().unwrap(), ComponentStats::new("source", "scrape")).unwrap();
        assert_eq!(s.target_labels(), labels(&[("env", "prod"), ("instance", "api-1"), ("job", "j")]).as_slice());
        let s = Scraper::new(
            &TargetConfig::new("http://[::1]/m", "j"),
            http_client().unwrap(),
            ComponentStats::new("source", "s"),
        )
        .unwrap();
        assert_eq!(s.target_labels()[0], Label::new("instance", "[::1]:80"));
    }

    #[test]
    fn scrape_timestamps_snap_to_the_schedule_within_tolerance() {
        let t = TargetConfig { interval: Duration::from_secs(15), ..TargetConfig::new("http://h:1/m", "j") };
        let mut s = Scraper::new(&t, http_client().unwrap(), ComponentStats::new("source", "scrape")).unwrap();
        let t0 = 1_700_000_000_000;
        assert_eq!(s.align(t0), t0, "the first scrape sets the schedule");
        assert_eq!(s.align(t0 + 15_001), t0 + 15_000, "1 ms late: snapped");
        assert_eq!(s.align(t0 + 30_002), t0 + 30_000, "2 ms late: snapped");
        assert_eq!(s.align(t0 + 45_003), t0 + 45_003, "3 ms late: kept");
        assert_eq!(s.align(t0 + 60_000), t0 + 60_000, "the schedule itself did not drift");
        assert_eq!(s.align(t0 + 105_001), t0 + 105_000, "skipped ticks keep the phase");
        assert_eq!(s.align(t0 - 1), t0 - 1, "a clock stepped back starts a new schedule");
        assert_eq!(s.align(t0 + 14_999), t0 + 14_999);
        // A 100 ms interval allows at most 1 ms (1 %).
        let t = TargetConfig { interval: Duration::from_millis(100), ..TargetConfig::new("http://h:1/m", "j") };
        let mut s = Scraper::new(&t, http_client().unwrap(), ComponentStats::new("source", "scrape")).unwrap();
        s.align(t0);
        assert_eq!(s.align(t0 + 101), t0 + 100);
        assert_eq!(s.align(t0 + 202), t0 + 202);
    }

    #[test]
    fn logged_url_has_no_credentials_query_or_fragment() {
        let t = TargetConfig::new("http://user:secret@h:9/metrics?token=abc&name[]=x#frag", "j");
        let s = Scraper::new(&t, http_client().unwrap(), ComponentStats::new("source", "scrape")).unwrap();
        assert_eq!(s.display_url, "http://h:9/metrics");
        let debug = format!("{s:?}");
        for secret in ["user", "secret", "token", "abc", "frag"] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        // The request itself still uses the full URL.
        assert_eq!(s.url.query(), Some("token=abc&name[]=x"));
    }

    #[test]
    fn gunzip_is_bounded() {
        use std::io::Write as _;
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&vec![b'a'; 10_000]).unwrap();
        let gz = enc.finish().unwrap();
        assert_eq!(gunzip(&gz, 10_000).unwrap().len(), 10_000);
        assert!(matches!(gunzip(&gz, 9_999), Err(ScrapeError::BodyTooLarge { limit: 9_999 })));
        assert!(matches!(gunzip(b"not gzip", 100), Err(ScrapeError::Read(_))));
    }
}
