//! The `/federate` endpoint: the latest sample of every (redacted) series Warden has
//! collected, for a Prometheus server to scrape with federation semantics.
//!
//! [`FederationSink`] is a [`Sink`] that never fails: it stores each point it receives
//! in a shared [`Federation`] (the latest sample per series, keyed by name and labels).
//! [`router`] serves that store at `GET /federate` (the agent mounts it on its HTTP port,
//! 127.0.0.1:9464 by default).
//!
//! # Semantics (those of Prometheus' own `/federate`)
//!
//! - One or more `match[]` parameters, each a series selector: `up`,
//!   `{job="platform-api"}`, `{__name__=~"http_.*", code!="200"}`. A series is served
//!   when any selector matches it (union). No `match[]`, or one that is not a plain
//!   series selector (an expression, an `offset`/`@` modifier, a selector whose matchers
//!   all match the empty string such as `{job=~".*"}`), is a `400 Bad Request` naming the
//!   parameter and the parse error.
//! - Matchers `=`, `!=`, `=~`, `!~`; regular expressions are anchored (`=~"http_.*"`
//!   matches the whole value); a label a series does not have has the empty value, so a
//!   matcher that matches `""` (`{code=""}`, `{code!~"2.."}`) also matches series without
//!   that label.
//! - The body is text format 0.0.4: a `# TYPE` line per family, then its samples, each
//!   with its timestamp (the time the sample was taken, not the time of the request).
//!   Series are sorted by name and labels. The response is gzip-compressed when the
//!   request's `Accept-Encoding` allows gzip (Prometheus always asks).
//! - Staleness: a series not updated for [`FederationConfig::staleness`] (default 5 min,
//!   Prometheus' lookback delta) is forgotten, and a Prometheus staleness marker
//!   ([`crate::exposition::STALE_NAN_BITS`]) removes its series at once. A point older
//!   than the sample already held for its series does not replace it.
//! - At most [`FederationConfig::max_series`] series are held (default 100,000); a new
//!   series beyond that is dropped and counted ([`Federation::dropped_series_total`], and
//!   `rejected` in the sink's [`Delivered`]) until expiry makes room.
//!
//! # Scraping it from Prometheus
//!
//! Warden's series carry their own `job` and `instance` labels, so the scrape job must
//! keep them with `honor_labels: true` (as for any federation job); otherwise Prometheus
//! renames them to `exported_job`/`exported_instance`:
//!
//! ```yaml
//! scrape_configs:
//!   - job_name: warden-federate
//!     honor_labels: true
//!     metrics_path: /federate
//!     params:
//!       'match[]': ['{job=~".+"}']
//!     static_configs:
//!       - targets: ['127.0.0.1:9464']
//! ```

use crate::exposition::{encode_text, is_stale_nan};
use crate::redact::Redacted;
use crate::signal::{Batch, MetricPoint};
use crate::sinks::{Delivered, DeliveryError, Sink};
use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use promql_parser::label::Matchers;
use promql_parser::parser::Expr;
use serde::Deserialize;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::io::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// Default [`FederationConfig::max_series`].
pub const DEFAULT_MAX_SERIES: usize = 100_000;
/// Default [`FederationConfig::staleness`]: Prometheus' lookback delta.
pub const DEFAULT_STALENESS: Duration = Duration::from_secs(300);
/// The most `match[]` parameters one request may carry.
pub const MAX_SELECTORS: usize = 256;
/// The `Content-Type` of a `/federate` response.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Settings of the federation store.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FederationConfig {
    /// The most series held; new series beyond it are dropped and counted.
    pub max_series: usize,
    /// A series not updated for this long is forgotten (humantime, default `5m`).
    #[serde(deserialize_with = "crate::pipeline::duration::deserialize")]
    pub staleness: Duration,
}

impl Default for FederationConfig {
    fn default() -> FederationConfig {
        FederationConfig { max_series: DEFAULT_MAX_SERIES, staleness: DEFAULT_STALENESS }
    }
}

impl FederationConfig {
    /// Every configuration error, each naming its field (`max_series: must be ...`).
    pub fn validate(&self) -> Result<(), Vec<String>> {
        let mut errors = Vec::new();
        if self.max_series == 0 {
            errors.push("max_series: must be greater than 0".to_owned());
        }
        if self.staleness.is_zero() {
            errors.push("staleness: must be greater than 0".to_owned());
        }
        if errors.is_empty() { Ok(()) } else { Err(errors) }
    }
}

/// A parsed `match[]` series selector.
#[derive(Debug, Clone)]
pub struct Selector {
    name: Option<String>,
    matchers: Matchers,
}

impl Selector {
    /// Parses a series selector (`up`, `{job="x"}`, `http_requests_total{code=~"5.."}`)
    /// with `promql-parser`. The error is the parser's message (it may quote the selector,
    /// which is the caller's own text, never collected data).
    pub fn parse(text: &str) -> Result<Selector, String> {
        match promql_parser::parser::parse(text)? {
            Expr::VectorSelector(vs) => {
                if vs.offset.is_some() || vs.at.is_some() {
                    return Err("offset and @ modifiers are not allowed in a series selector".to_owned());
                }
                Ok(Selector { name: vs.name, matchers: vs.matchers })
            }
            Expr::MatrixSelector(_) => Err("a range selector is not a series selector".to_owned()),
            _ => Err("not a series selector (expected e.g. up or {job=\"x\"})".to_owned()),
        }
    }

    /// Whether the selector matches the series of `point` (Prometheus semantics: an
    /// absent label has the empty value).
    pub fn matches(&self, point: &MetricPoint) -> bool {
        if let Some(name) = &self.name
            && *name != point.name
        {
            return false;
        }
        let all = |ms: &[promql_parser::label::Matcher]| ms.iter().all(|m| m.is_match(label_value(point, &m.name)));
        if !all(&self.matchers.matchers) {
            return false;
        }
        self.matchers.or_matchers.is_empty() || self.matchers.or_matchers.iter().any(|group| all(group))
    }
}

/// The value of label `name` of `point` (`__name__` is the metric name), `""` if absent.
fn label_value<'a>(point: &'a MetricPoint, name: &str) -> &'a str {
    if name == "__name__" {
        return &point.name;
    }
    match point.labels.binary_search_by(|l| l.name.as_str().cmp(name)) {
        Ok(i) => &point.labels[i].value,
        // Labels are documented sorted; fall back to a scan should a producer not sort.
        Err(_) => point.labels.iter().find(|l| l.name == name).map_or("", |l| l.value.as_str()),
    }
}

struct Entry {
    point: MetricPoint,
    updated: Instant,
}

struct Store {
    hasher: RandomState,
    /// Series by a hash of name and labels; a bucket holds the (rare) collisions.
    buckets: HashMap<u64, Vec<Entry>>,
    len: usize,
    last_sweep: Instant,
    /// Whether a dropped series has been logged since the last sweep (one line per sweep
    /// interval, not one per point).
    warned: bool,
}

impl Store {
    fn key(&self, p: &MetricPoint) -> u64 {
        let mut h = self.hasher.build_hasher();
        p.name.hash(&mut h);
        p.labels.hash(&mut h);
        h.finish()
    }

    /// Removes every series not updated since `cutoff`.
    fn sweep(&mut self, now: Instant, staleness: Duration) {
        self.last_sweep = now;
        self.warned = false;
        let Some(cutoff) = now.checked_sub(staleness) else { return };
        let mut removed = 0;
        self.buckets.retain(|_, bucket| {
            let before = bucket.len();
            bucket.retain(|e| e.updated >= cutoff);
            removed += before - bucket.len();
            !bucket.is_empty()
        });
        self.len -= removed;
    }
}

/// The federation store: the latest sample of every series, shared by the
/// [`FederationSink`]s that write it and the [`router`] that serves it.
pub struct Federation {
    config: FederationConfig,
    sweep_every: Duration,
    store: Mutex<Store>,
    dropped_series: AtomicU64,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation").field("config", &self.config).field("series", &self.series()).finish()
    }
}

impl Federation {
    /// An empty store. `config` should have passed [`FederationConfig::validate`]; a zero
    /// `max_series` holds nothing and a zero `staleness` forgets everything at once.
    pub fn new(config: FederationConfig) -> Arc<Federation> {
        let now = Instant::now();
        let sweep_every = (config.staleness / 4).clamp(Duration::from_millis(1), Duration::from_secs(30));
        Arc::new(Federation {
            config,
            sweep_every,
            store: Mutex::new(Store {
                hasher: RandomState::new(),
                buckets: HashMap::new(),
                len: 0,
                last_sweep: now,
                warned: false,
            }),
            dropped_series: AtomicU64::new(0),
        })
    }

    /// A sink writing into this store.
    pub fn sink(self: &Arc<Self>) -> FederationSink {
        FederationSink { state: Arc::clone(self) }
    }

    /// The settings.
    pub fn config(&self) -> &FederationConfig {
        &self.config
    }

    fn lock(&self) -> MutexGuard<'_, Store> {
        // Nothing panics while holding the lock; should it ever, the store is still valid.
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Series held now, including any past their staleness that no sweep removed yet.
    pub fn series(&self) -> usize {
        self.lock().len
    }

    /// New series dropped because [`FederationConfig::max_series`] were held.
    pub fn dropped_series_total(&self) -> u64 {
        self.dropped_series.load(Ordering::Relaxed)
    }

    /// Stores the metric points of a batch (logs and spans are ignored). `accepted`
    /// counts points stored, superseded or staleness markers; `rejected` counts points of
    /// new series dropped because the store was full.
    pub fn ingest(&self, batch: &Redacted<Batch>) -> Delivered {
        self.ingest_at(&batch.get().metrics, Instant::now())
    }

    fn ingest_at(&self, points: &[MetricPoint], now: Instant) -> Delivered {
        let mut out = Delivered::default();
        if points.is_empty() {
            return out;
        }
        let mut store = self.lock();
        if now.saturating_duration_since(store.last_sweep) >= self.sweep_every {
            store.sweep(now, self.config.staleness);
        }
        for p in points {
            let key = store.key(p);
            if is_stale_nan(p.value) {
                // The source says the series is gone: forget it, unless the marker is
                // older than the sample held (a late marker of an earlier run).
                let mut removed = false;
                if let Some(bucket) = store.buckets.get_mut(&key)
                    && let Some(i) = bucket.iter().position(|e| e.point.name == p.name && e.point.labels == p.labels)
                    && bucket[i].point.timestamp_ms <= p.timestamp_ms
                {
                    bucket.swap_remove(i);
                    removed = true;
                    if bucket.is_empty() {
                        store.buckets.remove(&key);
                    }
                }
                if removed {
                    store.len -= 1;
                }
                out.accepted += 1;
                continue;
            }
            if let Some(bucket) = store.buckets.get_mut(&key)
                && let Some(e) = bucket.iter_mut().find(|e| e.point.name == p.name && e.point.labels == p.labels)
            {
                if p.timestamp_ms >= e.point.timestamp_ms {
                    e.point.value = p.value;
                    e.point.timestamp_ms = p.timestamp_ms;
                    e.point.kind = p.kind;
                    e.updated = now;
                }
                out.accepted += 1;
                continue;
            }
            if store.len >= self.config.max_series
                && now.saturating_duration_since(store.last_sweep) >= Duration::from_secs(1)
            {
                store.sweep(now, self.config.staleness);
            }
            if store.len >= self.config.max_series {
                self.dropped_series.fetch_add(1, Ordering::Relaxed);
                out.rejected += 1;
                if !store.warned {
                    store.warned = true;
                    tracing::warn!(
                        max_series = self.config.max_series,
                        dropped_total = self.dropped_series_total(),
                        "federation store is full: new series are dropped"
                    );
                }
                continue;
            }
            store.buckets.entry(key).or_default().push(Entry { point: p.clone(), updated: now });
            store.len += 1;
            out.accepted += 1;
        }
        out
    }

    /// The latest sample of every fresh series any of `selectors` matches, sorted by name
    /// and labels.
    pub fn select(&self, selectors: &[Selector]) -> Vec<MetricPoint> {
        self.select_at(selectors, Instant::now())
    }

    fn select_at(&self, selectors: &[Selector], now: Instant) -> Vec<MetricPoint> {
        let mut out = Vec::new();
        {
            let mut store = self.lock();
            if now.saturating_duration_since(store.last_sweep) >= self.sweep_every {
                store.sweep(now, self.config.staleness);
            }
            let cutoff = now.checked_sub(self.config.staleness);
            for e in store.buckets.values().flatten() {
                if cutoff.is_none_or(|c| e.updated >= c) && selectors.iter().any(|s| s.matches(&e.point)) {
                    out.push(e.point.clone());
                }
            }
        }
        out.sort_unstable_by(|a, b| a.name.cmp(&b.name).then_with(|| a.labels.cmp(&b.labels)));
        out
    }

    /// The `/federate` body for `selectors`: text format 0.0.4 with timestamps.
    pub fn render(&self, selectors: &[Selector]) -> String {
        encode_text(&self.select(selectors))
    }
}

/// A [`Sink`] that stores metric points in a [`Federation`] for `/federate`. It never
/// fails; points of new series beyond the limit come back as `rejected`.
#[derive(Debug, Clone)]
pub struct FederationSink {
    state: Arc<Federation>,
}

impl FederationSink {
    /// The store this sink writes.
    pub fn state(&self) -> &Arc<Federation> {
        &self.state
    }
}

impl Sink for FederationSink {
    async fn deliver(&mut self, batch: &Redacted<Batch>) -> Result<Delivered, DeliveryError> {
        Ok(self.state.ingest(batch))
    }
}

/// The `GET /federate` route over `state`, ready to merge into the agent's router.
pub fn router(state: Arc<Federation>) -> Router {
    Router::new().route("/federate", axum::routing::get(federate)).with_state(state)
}

/// Parses the `match[]` parameters of a query string.
pub fn parse_match_params(query: Option<&str>) -> Result<Vec<Selector>, String> {
    let mut selectors = Vec::new();
    for (key, value) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key != "match[]" {
            continue;
        }
        if selectors.len() == MAX_SELECTORS {
            return Err(format!("too many match[] parameters (at most {MAX_SELECTORS})"));
        }
        let n = selectors.len() + 1;
        selectors.push(Selector::parse(&value).map_err(|e| format!("match[] parameter {n}: {e}"))?);
    }
    if selectors.is_empty() {
        return Err(
            "missing match[] parameter: give at least one series selector, e.g. match[]={job=~\".+\"}".to_owned()
        );
    }
    Ok(selectors)
}

/// Whether an `Accept-Encoding` header allows gzip (`gzip` or `*` without `q=0`).
fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT_ENCODING).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(',')).any(
        |item| {
            let mut parts = item.split(';');
            let coding = parts.next().unwrap_or("").trim();
            if !(coding.eq_ignore_ascii_case("gzip") || coding == "*") {
                return false;
            }
            !parts.any(|p| {
                let p = p.trim();
                p.strip_prefix("q=").or_else(|| p.strip_prefix("Q=")).and_then(|q| q.trim().parse::<f32>().ok())
                    == Some(0.0)
            })
        },
    )
}

async fn federate(State(state): State<Arc<Federation>>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    let selectors = match parse_match_params(query.as_deref()) {
        Ok(s) => s,
        Err(msg) => {
            return (StatusCode::BAD_REQUEST, [(header::CONTENT_TYPE, "text/plain; charset=utf-8")], msg + "\n")
                .into_response();
        }
    };
    let gzip = accepts_gzip(&headers);
    // Selecting, encoding and compressing 100k series is tens of milliseconds of CPU:
    // keep it off the async workers.
    let body = tokio::task::spawn_blocking(move || {
        let text = state.render(&selectors);
        if !gzip {
            return Ok::<_, std::io::Error>(text.into_bytes());
        }
        let mut enc = flate2::write::GzEncoder::new(Vec::with_capacity(text.len() / 8), flate2::Compression::fast());
        enc.write_all(text.as_bytes())?;
        enc.finish()
    })
    .await;
    match body {
        Ok(Ok(bytes)) => {
            let mut resp = bytes.into_response();
            let h = resp.headers_mut();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
            if gzip {
                h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
            resp
        }
        Ok(Err(error)) => {
            tracing::error!(%error, "federate: compressing the response failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "compressing the response failed\n").into_response()
        }
        Err(error) => {
            tracing::error!(%error, "federate: rendering the response failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "rendering the response failed\n").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exposition::stale_nan;
    use crate::signal::{Label, MetricKind};

    fn pt(name: &str, labels: &[(&str, &str)], v: f64, ts: i64) -> MetricPoint {
        let labels = labels.iter().map(|(n, v)| Label::new(*n, *v)).collect();
        MetricPoint::new(name, labels, MetricKind::Gauge, v, ts)
    }

    fn fed(max_series: usize) -> Arc<Federation> {
        Federation::new(FederationConfig { max_series, staleness: Duration::from_secs(300) })
    }

    /// The series (as `name{labels}`) each selector list selects from a fixed set.
    fn check(selectors: &[&str], expected: &[&str]) {
        let f = fed(100);
        let now = Instant::now();
        let points = [
            pt("up", &[("instance", "a:1"), ("job", "api")], 1.0, 1),
            pt("up", &[("instance", "b:1"), ("job", "db")], 0.0, 1),
            pt("http_requests_total", &[("code", "200"), ("job", "api")], 5.0, 1),
            pt("http_requests_total", &[("code", "500"), ("job", "api")], 1.0, 1),
            pt("http_request_duration_seconds_count", &[("job", "api")], 6.0, 1),
            pt("process_cpu_seconds_total", &[], 2.5, 1),
        ];
        f.ingest_at(&points, now);
        let sel: Vec<Selector> = selectors.iter().map(|s| Selector::parse(s).unwrap()).collect();
        let got: Vec<String> = f
            .select_at(&sel, now)
            .iter()
            .map(|p| {
                let l: Vec<String> = p.labels.iter().map(|l| format!("{}={}", l.name, l.value)).collect();
                format!("{}{{{}}}", p.name, l.join(","))
            })
            .collect();
        assert_eq!(got, expected, "selectors {selectors:?}");
    }

    #[test]
    fn matchers_follow_prometheus_semantics() {
        check(&["up"], &["up{instance=a:1,job=api}", "up{instance=b:1,job=db}"]);
        check(&[r#"{job="db"}"#], &["up{instance=b:1,job=db}"]);
        check(
            &[r#"{__name__=~"http_.*", code!="200"}"#],
            &["http_request_duration_seconds_count{job=api}", "http_requests_total{code=500,job=api}"],
        );
        // Anchored: "http" alone matches nothing.
        check(&[r#"{__name__=~"http"}"#], &[]);
        check(&[r#"http_requests_total{code!~"2.."}"#], &["http_requests_total{code=500,job=api}"]);
        // An empty-matching matcher also matches series without the label.
        check(&[r#"{__name__=~"process.*", job=""}"#], &["process_cpu_seconds_total{}"]);
        check(
            &[r#"{__name__=~".+", code=~"|200"}"#],
            &[
                "http_request_duration_seconds_count{job=api}",
                "http_requests_total{code=200,job=api}",
                "process_cpu_seconds_total{}",
                "up{instance=a:1,job=api}",
                "up{instance=b:1,job=db}",
            ],
        );
        // Union of several selectors, each series once.
        check(
            &["up", r#"{job="db"}"#, "process_cpu_seconds_total"],
            &["process_cpu_seconds_total{}", "up{instance=a:1,job=api}", "up{instance=b:1,job=db}"],
        );
        // `or` inside one selector (Prometheus 3 syntax the parser accepts).
        check(&[r#"{job="db" or code="500"}"#], &["http_requests_total{code=500,job=api}", "up{instance=b:1,job=db}"]);
    }

    #[test]
    fn bad_selectors_are_rejected_with_the_parameter_named() {
        for bad in ["rate(up[5m])", "up[5m]", r#"{job=~".*"}"#, "up offset 5m", "{", "1 + 1", r#"{job="x""#] {
            assert!(Selector::parse(bad).is_err(), "{bad} should not parse");
        }
        let e = parse_match_params(Some("match[]=up&match[]=%7Bjob%3D")).unwrap_err();
        assert!(e.starts_with("match[] parameter 2: "), "{e}");
        let e = parse_match_params(Some("foo=bar")).unwrap_err();
        assert!(e.contains("missing match[]"), "{e}");
        assert!(parse_match_params(None).is_err());
        assert_eq!(parse_match_params(Some("match%5B%5D=up&x=1&match[]=%7Bjob%3D%22a%22%7D")).unwrap().len(), 2);
        let many = vec!["match[]=up"; MAX_SELECTORS + 1].join("&");
        assert!(parse_match_params(Some(&many)).unwrap_err().contains("too many"));
    }

    #[test]
    fn keeps_the_latest_sample_and_honours_staleness() {
        let f = Federation::new(FederationConfig { max_series: 10, staleness: Duration::from_secs(300) });
        let t0 = Instant::now();
        let up = Selector::parse("up").unwrap();
        let all = Selector::parse(r#"{__name__=~".+"}"#).unwrap();
        f.ingest_at(&[pt("up", &[("job", "a")], 1.0, 1000), pt("up", &[("job", "b")], 1.0, 1000)], t0);
        // A newer sample replaces; an older one does not.
        f.ingest_at(&[pt("up", &[("job", "a")], 0.0, 2000)], t0);
        f.ingest_at(&[pt("up", &[("job", "a")], 7.0, 1500)], t0);
        let got = f.select_at(std::slice::from_ref(&up), t0);
        assert_eq!(got.iter().map(|p| (p.value, p.timestamp_ms)).collect::<Vec<_>>(), [(0.0, 2000), (1.0, 1000)]);
        // Only `job="a"` is refreshed; `job="b"` goes stale after 5 minutes.
        let t1 = t0 + Duration::from_secs(200);
        f.ingest_at(&[pt("up", &[("job", "a")], 1.0, 3000)], t1);
        let t2 = t0 + Duration::from_secs(301);
        let got = f.select_at(std::slice::from_ref(&all), t2);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].label("job"), Some("a"));
        assert_eq!(f.series(), 1, "the sweep removed the stale series");
        // A staleness marker removes the series at once; an older marker is ignored.
        f.ingest_at(&[pt("up", &[("job", "a")], stale_nan(), 2500)], t2);
        assert_eq!(f.select_at(std::slice::from_ref(&all), t2).len(), 1);
        f.ingest_at(&[pt("up", &[("job", "a")], stale_nan(), 4000)], t2);
        assert!(f.select_at(std::slice::from_ref(&all), t2).is_empty());
        assert_eq!(f.series(), 0);
        // A plain NaN is a value, not a marker.
        f.ingest_at(&[pt("up", &[("job", "a")], f64::NAN, 5000)], t2);
        assert!(f.select_at(std::slice::from_ref(&all), t2)[0].value.is_nan());
    }

    #[test]
    fn max_series_drops_and_counts_new_series_until_expiry_makes_room() {
        let f = fed(3);
        let t0 = Instant::now();
        let points: Vec<MetricPoint> = (0..5).map(|i| pt("g", &[("i", &i.to_string())], 1.0, 1)).collect();
        let d = f.ingest_at(&points, t0);
        assert_eq!(d, Delivered { accepted: 3, rejected: 2 });
        assert_eq!(f.dropped_series_total(), 2);
        assert_eq!(f.series(), 3);
        // Existing series still update while full.
        let d = f.ingest_at(&[pt("g", &[("i", "0")], 9.0, 2), pt("g", &[("i", "4")], 9.0, 2)], t0);
        assert_eq!(d, Delivered { accepted: 1, rejected: 1 });
        // After the old series expire, new ones fit again.
        let later = t0 + Duration::from_secs(400);
        let d = f.ingest_at(&[pt("g", &[("i", "4")], 9.0, 3)], later);
        assert_eq!(d, Delivered { accepted: 1, rejected: 0 });
        assert_eq!(f.series(), 1);
        assert_eq!(f.dropped_series_total(), 3);
    }

    #[test]
    fn renders_text_with_types_and_timestamps() {
        let f = fed(100);
        let now = Instant::now();
        let h = |name: &str, le: &str, v: f64| {
            MetricPoint::new(name, vec![Label::new("le", le)], MetricKind::Histogram, v, 1_700_000_000_000)
        };
        f.ingest_at(
            &[
                MetricPoint::new(
                    "reqs_total",
                    vec![Label::new("code", "200")],
                    MetricKind::Counter,
                    3.0,
                    1_700_000_000_000,
                ),
                h("lat_bucket", "0.5", 1.0),
                h("lat_bucket", "+Inf", 2.0),
                MetricPoint::new("lat_sum", vec![], MetricKind::Histogram, 0.75, 1_700_000_000_000),
                MetricPoint::new("lat_count", vec![], MetricKind::Histogram, 2.0, 1_700_000_000_000),
            ],
            now,
        );
        let text = encode_text(&f.select_at(&[Selector::parse(r#"{__name__=~".+"}"#).unwrap()], now));
        assert_eq!(
            text,
            "# TYPE lat histogram\n\
             lat_bucket{le=\"+Inf\"} 2 1700000000000\n\
             lat_bucket{le=\"0.5\"} 1 1700000000000\n\
             lat_count 2 1700000000000\n\
             lat_sum 0.75 1700000000000\n\
             # TYPE reqs_total counter\n\
             reqs_total{code=\"200\"} 3 1700000000000\n"
        );
        // What we serve parses back to the same points.
        let parsed = crate::exposition::parse(text.as_bytes(), crate::exposition::Format::PrometheusText, 0).unwrap();
        assert_eq!(parsed.len(), 5);
    }

    #[test]
    fn accept_encoding_negotiation() {
        let h = |v: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT_ENCODING, HeaderValue::from_str(v).unwrap());
            m
        };
        assert!(accepts_gzip(&h("gzip")));
        assert!(accepts_gzip(&h("deflate, GZIP;q=0.5")));
        assert!(accepts_gzip(&h("*")));
        assert!(!accepts_gzip(&h("gzip;q=0")));
        assert!(!accepts_gzip(&h("identity")));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}
