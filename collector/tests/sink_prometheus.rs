//! The Prometheus sinks against real peers: a Prometheus server (apt `prometheus`, our
//! own instance on a free port with `--web.enable-remote-write-receiver`) that receives
//! remote write, scrapes `/federate`, and is stopped for 30 s in the middle of a
//! 100,000-sample stream; plus a small axum server answering a table of statuses
//! (503 + Retry-After, 429, 400, 401) for the status mapping and retry bookkeeping.
//!
//! `WARDEN_PROMETHEUS` names the prometheus binary (default: `prometheus` on `PATH`,
//! `/usr/bin/prometheus`); without one the Prometheus tests skip (fail under
//! `WARDEN_REQUIRE_SERVICES=1`).

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use prost::Message as _;
use std::collections::{BTreeMap, VecDeque};
use std::io::Read as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_util::sync::CancellationToken;
use warden_collector::exposition::stale_nan;
use warden_collector::redact::{Redacted, Redactor};
use warden_collector::signal::{Batch, Label, MetricKind, MetricPoint};
use warden_collector::sinks::buffer::{BufferConfig, FsyncPolicy, WhenFull};
use warden_collector::sinks::prometheus::proto::WriteRequest;
use warden_collector::sinks::prometheus::{Federation, FederationConfig, RemoteWriteConfig, RemoteWriteSink, router};
use warden_collector::sinks::{Delivered, DeliveryError, RetryConfig, Sink, runner};
use warden_testkit::{Child, TempDir, find_program, free_port, require, wait_for_port};

// ---------------------------------------------------------------------------------------
// Helpers

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_millis() as i64
}

fn point(name: &str, kind: MetricKind, labels: &[(&str, &str)], value: f64, ts: i64) -> MetricPoint {
    MetricPoint::new(name, labels.iter().map(|(n, v)| Label::new(*n, *v)).collect(), kind, value, ts)
}

/// The points through the default redactor, checked to come out unchanged (the test
/// data holds no PHI, so what the peer receives must be exactly what we wrote).
fn redacted(points: Vec<MetricPoint>) -> Redacted<Batch> {
    let r = Redactor::default_mask().apply(Batch::metrics(points.clone()));
    let same = r.get().metrics.len() == points.len()
        && r.get().metrics.iter().zip(&points).all(|(a, b)| {
            a.name == b.name
                && a.labels == b.labels
                && a.timestamp_ms == b.timestamp_ms
                && a.value.to_bits() == b.value.to_bits()
        });
    assert!(same, "the redactor changed test data: {:?}", r.get().metrics);
    r
}

fn prometheus_bin(what: &str) -> Option<PathBuf> {
    require(
        what,
        find_program("WARDEN_PROMETHEUS", &["prometheus", "/usr/bin/prometheus"]),
        "no prometheus binary (apt install prometheus, or set WARDEN_PROMETHEUS)",
    )
}

/// Our own Prometheus: a free port, its own data dir and config; stopped with SIGTERM
/// and restarted on the same data dir.
struct Prometheus {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    http: reqwest::Client,
}

impl Prometheus {
    fn start(bin: PathBuf, config_yaml: &str) -> Prometheus {
        let dir = TempDir::new("warden_prom");
        std::fs::write(dir.path().join("prometheus.yml"), config_yaml).unwrap();
        let mut p = Prometheus { bin, dir, port: free_port(), child: None, http: reqwest::Client::new() };
        p.spawn();
        p
    }

    fn spawn(&mut self) {
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(self.dir.path().join("prometheus.log")).unwrap();
        let child = Command::new(&self.bin)
            .arg(format!("--config.file={}", self.dir.path().join("prometheus.yml").display()))
            .arg(format!("--storage.tsdb.path={}", self.dir.path().join("data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start prometheus");
        self.child = Some(Child(child));
        if !wait_for_port(self.port, Duration::from_secs(30)) {
            panic!("prometheus did not listen on {}: {}", self.port, self.log_tail());
        }
    }

    /// Stops the server with SIGTERM (a clean shutdown that keeps its data) and waits.
    fn stop(&mut self) {
        let mut child = self.child.take().expect("prometheus is running");
        let status = Command::new("kill").arg("-TERM").arg(child.0.id().to_string()).status().unwrap();
        assert!(status.success(), "kill -TERM prometheus");
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "prometheus did not stop on SIGTERM: {}", self.log_tail());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default();
        log.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n")
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.base())
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self
                .http
                .get(format!("{}/-/ready", self.base()))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "prometheus not ready: {}", self.log_tail());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An instant query: `(labels, value)` per series of the result vector.
    async fn query(&self, expr: &str, at_ms: Option<i64>) -> Vec<(BTreeMap<String, String>, f64)> {
        let mut params = vec![("query", expr.to_owned())];
        if let Some(t) = at_ms {
            params.push(("time", format!("{}.{:03}", t / 1000, t % 1000)));
        }
        let resp = self
            .http
            .get(format!("{}/api/v1/query", self.base()))
            .query(&params)
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .unwrap_or_else(|e| panic!("query {expr}: {e}"));
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap();
        assert!(status.is_success(), "query {expr}: {status} {body}");
        assert_eq!(body["data"]["resultType"], "vector", "{body}");
        body["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let labels = r["metric"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                let v: f64 = r["value"][1].as_str().unwrap().parse().unwrap();
                (labels, v)
            })
            .collect()
    }

    /// The single value of `expr`, or `None` for an empty result.
    async fn scalar(&self, expr: &str, at_ms: Option<i64>) -> Option<f64> {
        let r = self.query(expr, at_ms).await;
        assert!(r.len() <= 1, "{expr}: more than one series: {r:?}");
        r.first().map(|(_, v)| *v)
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

async fn serve(app: Router) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

// ---------------------------------------------------------------------------------------
// Remote write into a real Prometheus

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_arrives_in_prometheus_with_exact_values_and_labels() {
    let Some(bin) = prometheus_bin("remote write into prometheus") else { return };
    let prom = Prometheus::start(bin, "global: {}\n");
    prom.wait_ready().await;
    let mut config = RemoteWriteConfig::new(prom.write_url());
    config.max_samples_per_send = 3; // several requests per batch
    let mut sink = RemoteWriteSink::new(&config).unwrap();

    let t = now_ms() - 60_000;
    let job = ("job", "platform-api");
    let h = |le: &str, v: f64| point("rw_latency_seconds_bucket", MetricKind::Histogram, &[job, ("le", le)], v, t);
    let mut points = vec![
        point("rw_requests_total", MetricKind::Counter, &[job, ("code", "200"), ("method", "GET")], 1027.0, t),
        point("rw_requests_total", MetricKind::Counter, &[job, ("code", "500"), ("method", "GET")], 3.0, t),
        point("rw_temperature", MetricKind::Gauge, &[job, ("room", "a \"quoted\" \\ naïve")], -12.25, t),
        point("rw_tiny", MetricKind::Gauge, &[job], 1e-05, t),
        point("rw_huge", MetricKind::Gauge, &[job], 1.5e300, t),
        // An empty label value is an absent label.
        point("rw_empty_label", MetricKind::Gauge, &[job, ("shard", "")], 7.0, t),
        h("0.1", 1.0),
        h("0.5", 3.0),
        h("+Inf", 4.0),
        point("rw_latency_seconds_sum", MetricKind::Histogram, &[job], 1.1, t),
        point("rw_latency_seconds_count", MetricKind::Histogram, &[job], 4.0, t),
    ];
    // A series with ten samples, sent newest first: the sink sorts them.
    for i in (0..10).rev() {
        points.push(point("rw_series", MetricKind::Counter, &[job], i as f64, t - 10_000 + i * 1000));
    }
    // A gauge that ends with a staleness marker.
    points.push(point("rw_gone", MetricKind::Gauge, &[job], 5.0, t - 2000));
    points.push(point("rw_gone", MetricKind::Gauge, &[job], stale_nan(), t - 1000));
    let n = points.len() as u64;
    let d = sink.deliver(&redacted(points)).await.unwrap();
    assert_eq!(d, Delivered { accepted: n, rejected: 0 });
    let stats = sink.stats();
    assert_eq!(stats.requests.load(std::sync::atomic::Ordering::Relaxed), n.div_ceil(3));

    let mut got = prom.query(r#"rw_requests_total{job="platform-api"}"#, Some(t)).await;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (
                labels(&[
                    ("__name__", "rw_requests_total"),
                    ("code", "200"),
                    ("job", "platform-api"),
                    ("method", "GET")
                ]),
                1027.0
            ),
            (
                labels(&[
                    ("__name__", "rw_requests_total"),
                    ("code", "500"),
                    ("job", "platform-api"),
                    ("method", "GET")
                ]),
                3.0
            ),
        ]
    );
    let got = prom.query("rw_temperature", Some(t)).await;
    assert_eq!(
        got,
        vec![(
            labels(&[("__name__", "rw_temperature"), ("job", "platform-api"), ("room", "a \"quoted\" \\ naïve")]),
            -12.25
        )]
    );
    assert_eq!(prom.scalar("rw_tiny", Some(t)).await, Some(1e-05));
    assert_eq!(prom.scalar("rw_huge", Some(t)).await, Some(1.5e300));
    let got = prom.query("rw_empty_label", Some(t)).await;
    assert_eq!(got, vec![(labels(&[("__name__", "rw_empty_label"), ("job", "platform-api")]), 7.0)]);
    let buckets = prom.query("rw_latency_seconds_bucket", Some(t)).await;
    let by_le: BTreeMap<String, f64> = buckets.iter().map(|(l, v)| (l["le"].clone(), *v)).collect();
    assert_eq!(by_le, [("+Inf".to_owned(), 4.0), ("0.1".to_owned(), 1.0), ("0.5".to_owned(), 3.0)].into());
    let q = prom.scalar("histogram_quantile(0.5, rw_latency_seconds_bucket)", Some(t)).await.unwrap();
    assert!((q - 0.3).abs() < 1e-9, "median {q}");
    assert_eq!(prom.scalar("rw_latency_seconds_sum", Some(t)).await, Some(1.1));
    assert_eq!(prom.scalar("rw_latency_seconds_count", Some(t)).await, Some(4.0));
    // All ten samples, stored in order (no counter resets).
    assert_eq!(prom.scalar("count_over_time(rw_series[1m])", Some(t)).await, Some(10.0));
    assert_eq!(prom.scalar("sum_over_time(rw_series[1m])", Some(t)).await, Some(45.0));
    assert_eq!(prom.scalar("resets(rw_series[1m])", Some(t)).await, Some(0.0));
    // The staleness marker ends the series: nothing at t, the value just before it.
    assert_eq!(prom.scalar("rw_gone", Some(t)).await, None);
    assert_eq!(prom.scalar("rw_gone", Some(t - 1500)).await, Some(5.0));
}

// ---------------------------------------------------------------------------------------
// /federate scraped by a real Prometheus

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_federate_with_honor_labels() {
    let Some(bin) = prometheus_bin("prometheus scraping /federate") else { return };
    let fed = Federation::new(FederationConfig::default());
    let addr = serve(router(Arc::clone(&fed))).await;
    let t = now_ms();
    let api = [("job", "platform-api"), ("instance", "api-0:8080")];
    let mut sink = fed.sink();
    let points = vec![
        point("fed_requests_total", MetricKind::Counter, &[api[0], api[1], ("code", "200")], 1027.0, t),
        point("fed_requests_total", MetricKind::Counter, &[api[0], api[1], ("code", "503")], 2.0, t),
        point("fed_queue_depth", MetricKind::Gauge, &[("job", "worker")], -3.5, t),
        point("fed_latency_seconds_bucket", MetricKind::Histogram, &[api[0], ("le", "0.25")], 10.0, t),
        point("fed_latency_seconds_bucket", MetricKind::Histogram, &[api[0], ("le", "+Inf")], 12.0, t),
        point("fed_latency_seconds_sum", MetricKind::Histogram, &[api[0]], 2.75, t),
        point("fed_latency_seconds_count", MetricKind::Histogram, &[api[0]], 12.0, t),
        // No job label: `{job=~".+"}` does not select it.
        point("fed_orphan", MetricKind::Gauge, &[], 1.0, t),
    ];
    assert_eq!(sink.deliver(&redacted(points)).await.unwrap(), Delivered { accepted: 8, rejected: 0 });

    let config = format!(
        r#"global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: warden-federate
    honor_labels: true
    metrics_path: /federate
    params:
      'match[]': ['{{job=~".+"}}']
    static_configs:
      - targets: ['{addr}']
"#
    );
    let prom = Prometheus::start(bin, &config);
    prom.wait_ready().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while prom.scalar(r#"up{job="warden-federate"}"#, None).await != Some(1.0) {
        assert!(Instant::now() < deadline, "prometheus never scraped /federate successfully: {}", prom.log_tail());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Samples keep the timestamps we served; honor_labels keeps our job and instance.
    let mut got = prom.query("fed_requests_total", Some(t)).await;
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (
                labels(&[
                    ("__name__", "fed_requests_total"),
                    ("code", "200"),
                    ("instance", "api-0:8080"),
                    ("job", "platform-api")
                ]),
                1027.0
            ),
            (
                labels(&[
                    ("__name__", "fed_requests_total"),
                    ("code", "503"),
                    ("instance", "api-0:8080"),
                    ("job", "platform-api")
                ]),
                2.0
            ),
        ]
    );
    // A series without an instance label gets the scrape target's.
    let target = addr.to_string();
    assert_eq!(
        prom.query("fed_queue_depth", Some(t)).await,
        vec![(labels(&[("__name__", "fed_queue_depth"), ("instance", &target), ("job", "worker")]), -3.5)]
    );
    let q = prom.scalar("histogram_quantile(0.5, fed_latency_seconds_bucket)", Some(t)).await.unwrap();
    assert!((q - 0.15).abs() < 1e-9, "median {q}");
    assert_eq!(prom.scalar("fed_latency_seconds_sum", Some(t)).await, Some(2.75));
    assert_eq!(prom.query("fed_orphan", Some(t)).await, vec![]);
    // The types reached Prometheus' metadata.
    let meta: serde_json::Value = prom
        .http
        .get(format!("{}/api/v1/targets/metadata", prom.base()))
        .query(&[("metric", "fed_latency_seconds")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(meta["data"][0]["type"], "histogram", "{meta}");
}

// ---------------------------------------------------------------------------------------
// /federate over HTTP: parameters, errors, gzip

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn federate_endpoint_semantics_over_http() {
    let fed = Federation::new(FederationConfig { max_series: 4, ..FederationConfig::default() });
    let addr = serve(router(Arc::clone(&fed))).await;
    let t = 1_700_000_000_000;
    let points = vec![
        point("up", MetricKind::Gauge, &[("job", "api")], 1.0, t),
        point("up", MetricKind::Gauge, &[("job", "db")], 0.0, t),
        point("http_requests_total", MetricKind::Counter, &[("job", "api"), ("code", "500")], 4.0, t),
        point("http_requests_total", MetricKind::Counter, &[("job", "api"), ("code", "200")], 9.0, t),
        point("over_the_limit", MetricKind::Gauge, &[("job", "api")], 1.0, t),
    ];
    assert_eq!(fed.sink().deliver(&redacted(points)).await.unwrap(), Delivered { accepted: 4, rejected: 1 });
    assert_eq!(fed.dropped_series_total(), 1);
    let http = reqwest::Client::new();
    let get = |q: &str| {
        let url = format!("http://{addr}/federate{q}");
        let http = http.clone();
        async move { http.get(url).header(header::ACCEPT_ENCODING, "identity").send().await.unwrap() }
    };

    let r = get("?match[]=up&match[]=%7Bcode%3D%22500%22%7D").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_TYPE], "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(
        r.text().await.unwrap(),
        "# TYPE http_requests_total counter\n\
         http_requests_total{code=\"500\",job=\"api\"} 4 1700000000000\n\
         # TYPE up gauge\n\
         up{job=\"api\"} 1 1700000000000\n\
         up{job=\"db\"} 0 1700000000000\n"
    );
    let r = get("?match[]=%7Bjob%3D%22nope%22%7D").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");

    let r = get("").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("missing match[] parameter"));
    let r = get("?match[]=up&match[]=rate(up%5B5m%5D)").await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().starts_with("match[] parameter 2: "));
    let r = get("?match[]=%7Bjob%3D~%22.*%22%7D").await;
    assert_eq!(r.status(), 400, "a selector matching everything is refused, as Prometheus does");

    // gzip when asked, and the same text inside.
    let r = http
        .get(format!("http://{addr}/federate?match[]=up"))
        .header(header::ACCEPT_ENCODING, "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()[header::CONTENT_ENCODING], "gzip");
    let body = r.bytes().await.unwrap();
    let mut text = String::new();
    flate2::read::GzDecoder::new(&body[..]).read_to_string(&mut text).unwrap();
    assert_eq!(text, "# TYPE up gauge\nup{job=\"api\"} 1 1700000000000\nup{job=\"db\"} 0 1700000000000\n");

    // A staleness marker removes the series from the endpoint.
    let marker = vec![point("up", MetricKind::Gauge, &[("job", "db")], stale_nan(), t + 1000)];
    fed.sink().deliver(&redacted(marker)).await.unwrap();
    assert_eq!(get("?match[]=up").await.text().await.unwrap(), "# TYPE up gauge\nup{job=\"api\"} 1 1700000000000\n");
}

// ---------------------------------------------------------------------------------------
// Remote write status handling, against a table of answers

/// One scripted answer of the status server.
#[derive(Clone)]
struct Reply {
    status: u16,
    retry_after: Option<&'static str>,
    body: &'static str,
    delay: Duration,
}

fn reply(status: u16) -> Reply {
    Reply { status, retry_after: None, body: "", delay: Duration::ZERO }
}

#[derive(Default)]
struct Script {
    replies: VecDeque<Reply>,
    /// Every request received: its headers and decoded body.
    seen: Vec<(HeaderMap, WriteRequest)>,
}

type Shared = Arc<Mutex<Script>>;

async fn scripted(State(script): State<Shared>, headers: HeaderMap, body: Bytes) -> (StatusCode, HeaderMap, String) {
    let raw = snap::raw::Decoder::new().decompress_vec(&body).expect("snappy block format");
    let req = WriteRequest::decode(raw.as_slice()).expect("a prometheus.WriteRequest");
    let r = {
        let mut s = script.lock().unwrap();
        s.seen.push((headers, req));
        s.replies.pop_front().unwrap_or_else(|| reply(204))
    };
    tokio::time::sleep(r.delay).await;
    let mut h = HeaderMap::new();
    if let Some(ra) = r.retry_after {
        h.insert(header::RETRY_AFTER, ra.parse().unwrap());
    }
    (StatusCode::from_u16(r.status).unwrap(), h, r.body.to_owned())
}

async fn status_server(replies: Vec<Reply>) -> (String, Shared) {
    let script: Shared = Arc::new(Mutex::new(Script { replies: replies.into(), seen: Vec::new() }));
    let app = Router::new().route("/api/v1/write", axum::routing::post(scripted)).with_state(Arc::clone(&script));
    let addr = serve(app).await;
    (format!("http://{addr}/api/v1/write"), script)
}

/// `n` samples of one series at timestamps 1000, 2000, ...
fn series(n: i64) -> Redacted<Batch> {
    redacted((1..=n).map(|i| point("s", MetricKind::Counter, &[("job", "t")], i as f64, i * 1000)).collect())
}

/// The first sample timestamp of every request the server saw.
fn first_timestamps(script: &Shared) -> Vec<i64> {
    script.lock().unwrap().seen.iter().map(|(_, r)| r.timeseries[0].samples[0].timestamp).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_status_mapping_and_headers() {
    let dir = TempDir::new("warden_rw_auth");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let (url, script) = status_server(vec![
        Reply { retry_after: Some("7"), ..reply(503) },
        Reply { retry_after: Some("2"), ..reply(429) },
        reply(500),
        Reply { body: "out of order sample for series {patient=\"Jane Doe\"}", ..reply(400) },
        Reply { body: "unauthorized {patient=\"Jane Doe\"}", ..reply(401) },
        reply(404),
        reply(204),
    ])
    .await;
    let mut config = RemoteWriteConfig::new(&url);
    config.bearer_token_file = Some(token.clone());
    config.headers.insert("X-Scope-OrgID".into(), "tenant-1".into());
    let mut sink = RemoteWriteSink::new(&config).unwrap();
    let batch = series(3);

    let e = sink.deliver(&batch).await.unwrap_err();
    assert_eq!(
        e,
        DeliveryError::Retryable {
            reason: format!("remote write to {url}: HTTP 503"),
            retry_after: Some(Duration::from_secs(7))
        }
    );
    let e = sink.deliver(&batch).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Retryable { retry_after: Some(d), .. } if d == Duration::from_secs(2)), "{e:?}");
    let e = sink.deliver(&batch).await.unwrap_err();
    assert!(matches!(e, DeliveryError::Retryable { retry_after: None, .. }), "{e:?}");
    // 400: the data is refused for good; counted, not retried, body never quoted.
    assert_eq!(sink.deliver(&batch).await.unwrap(), Delivered { accepted: 0, rejected: 3 });
    let e = sink.deliver(&batch).await.unwrap_err();
    let DeliveryError::Permanent { reason } = &e else { panic!("401 is permanent: {e:?}") };
    assert!(reason.contains("HTTP 401") && !reason.contains("Jane"), "{reason}");
    assert!(matches!(sink.deliver(&batch).await.unwrap_err(), DeliveryError::Permanent { .. }));
    assert_eq!(sink.deliver(&batch).await.unwrap(), Delivered { accepted: 3, rejected: 0 });

    let (h, req) = {
        let s = script.lock().unwrap();
        assert_eq!(s.seen.len(), 7);
        s.seen[6].clone()
    };
    assert_eq!(h[header::CONTENT_ENCODING], "snappy");
    assert_eq!(h[header::CONTENT_TYPE], "application/x-protobuf");
    assert_eq!(h["x-prometheus-remote-write-version"], "0.1.0");
    assert_eq!(h[header::USER_AGENT], concat!("warden/", env!("CARGO_PKG_VERSION")));
    assert_eq!(h[header::AUTHORIZATION], "Bearer s3cret-token");
    assert_eq!(h["x-scope-orgid"], "tenant-1");
    let names: Vec<&str> = req.timeseries[0].labels.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["__name__", "job"]);
    assert_eq!(req.timeseries[0].samples.iter().map(|s| s.timestamp).collect::<Vec<_>>(), [1000, 2000, 3000]);

    // A rotated token is read on the next batch; a missing one is retryable and named.
    std::fs::write(&token, "rotated").unwrap();
    sink.deliver(&batch).await.unwrap();
    assert_eq!(script.lock().unwrap().seen[7].0[header::AUTHORIZATION], "Bearer rotated");
    std::fs::remove_file(&token).unwrap();
    let e = sink.deliver(&batch).await.unwrap_err();
    assert!(matches!(&e, DeliveryError::Retryable { reason, .. } if reason.contains("bearer_token_file")), "{e:?}");
    // Building with a missing credential file fails up front.
    assert!(RemoteWriteSink::new(&config).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_retry_resumes_after_the_last_accepted_request() {
    // Three requests of two samples; the second fails once.
    let (url, script) = status_server(vec![reply(204), reply(503), reply(204), reply(204)]).await;
    let mut config = RemoteWriteConfig::new(&url);
    config.max_samples_per_send = 2;
    let mut sink = RemoteWriteSink::new(&config).unwrap();
    let batch = series(6);
    assert!(matches!(sink.deliver(&batch).await, Err(DeliveryError::Retryable { .. })));
    assert_eq!(sink.deliver(&batch).await.unwrap(), Delivered { accepted: 6, rejected: 0 });
    // Request 1 was not sent again.
    assert_eq!(first_timestamps(&script), [1000, 3000, 3000, 5000]);

    // A different batch after a failure starts from its own beginning.
    let (url, script) = status_server(vec![reply(204), reply(503)]).await;
    config.url = url;
    let mut sink = RemoteWriteSink::new(&config).unwrap();
    assert!(sink.deliver(&series(6)).await.is_err());
    assert_eq!(sink.deliver(&series(4)).await.unwrap(), Delivered { accepted: 4, rejected: 0 });
    assert_eq!(first_timestamps(&script), [1000, 3000, 1000, 3000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_ambiguous_retry_refused_as_out_of_order_is_not_a_loop_or_a_loss() {
    // Request 2 is stored but answered after the client's timeout; its retry then gets
    // what Prometheus answers for samples it already has (400 out of order). The batch
    // must complete with request 3 sent, nothing counted as lost, and no endless retry.
    let slow = Reply { delay: Duration::from_millis(1500), ..reply(204) };
    let ooo = Reply { body: "out of order sample", ..reply(400) };
    let (url, script) = status_server(vec![reply(204), slow, ooo, reply(204)]).await;
    let mut config = RemoteWriteConfig::new(&url);
    config.max_samples_per_send = 2;
    config.timeout = Duration::from_millis(500);
    let mut sink = RemoteWriteSink::new(&config).unwrap();
    let batch = series(6);
    let e = sink.deliver(&batch).await.unwrap_err();
    assert!(matches!(&e, DeliveryError::Retryable { reason, .. } if reason.contains("timed out")), "{e:?}");
    assert_eq!(sink.deliver(&batch).await.unwrap(), Delivered { accepted: 6, rejected: 0 });
    assert_eq!(sink.stats().duplicate_requests.load(std::sync::atomic::Ordering::Relaxed), 1);
    assert_eq!(sink.stats().rejected_requests.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_eq!(first_timestamps(&script), [1000, 3000, 3000, 5000]);

    // The same 400 without an ambiguous attempt before it is a rejection of that request
    // only; the rest of the batch still goes.
    let (url, script) = status_server(vec![reply(204), Reply { body: "out of order sample", ..reply(400) }]).await;
    config.url = url;
    let mut sink = RemoteWriteSink::new(&config).unwrap();
    assert_eq!(sink.deliver(&batch).await.unwrap(), Delivered { accepted: 4, rejected: 2 });
    assert_eq!(first_timestamps(&script), [1000, 3000, 5000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_to_a_closed_port_is_retryable() {
    let port = free_port();
    let mut sink =
        RemoteWriteSink::new(&RemoteWriteConfig::new(format!("http://127.0.0.1:{port}/api/v1/write"))).unwrap();
    let e = sink.deliver(&series(1)).await.unwrap_err();
    assert!(matches!(&e, DeliveryError::Retryable { reason, .. } if reason.contains("connect")), "{e:?}");
    // An empty batch (or one without metrics) sends nothing.
    assert_eq!(sink.deliver(&redacted(vec![])).await.unwrap(), Delivered::default());
}

// ---------------------------------------------------------------------------------------
// Outage: Prometheus stopped for 30 s while 100,000 samples flow through a disk buffer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_through_a_disk_buffer_survives_a_30s_prometheus_outage() {
    const SERIES: i64 = 100;
    const STEPS: i64 = 1000;
    const STEPS_PER_BATCH: i64 = 10;
    const BATCHES: i64 = STEPS / STEPS_PER_BATCH;
    const PACE: Duration = Duration::from_millis(350);
    const OUTAGE: Duration = Duration::from_secs(30);
    let Some(bin) = prometheus_bin("remote write outage test") else { return };
    let mut prom = Prometheus::start(bin, "global: {}\n");
    prom.wait_ready().await;
    let data_dir = TempDir::new("warden_rw_outage");
    let mut config = RemoteWriteConfig::new(prom.write_url());
    config.timeout = Duration::from_secs(5);
    config.max_samples_per_send = 500; // two requests per batch: progress is tracked across the outage
    let sink = RemoteWriteSink::new(&config).unwrap();
    let stats = sink.stats();
    let retry =
        RetryConfig { initial: Duration::from_millis(100), max: Duration::from_secs(1), ..RetryConfig::default() };
    let buffer = BufferConfig::Disk { max_bytes: 64 << 20, when_full: WhenFull::Block, fsync: FsyncPolicy::Always };
    let shutdown = CancellationToken::new();
    let handle = runner::spawn("prometheus-outage", sink, &buffer, &retry, data_dir.path(), shutdown.clone()).unwrap();

    // Samples 1 s apart, ending ~3 minutes ago: recent enough for the head block, and
    // every series strictly in order (Prometheus' out-of-order window is 0).
    let base = now_ms() - 1_200_000;
    let value = |s: i64, i: i64| (s * 1000 + i) as f64;
    let start = Instant::now();
    let mut stopped_at: Option<Instant> = None;
    let mut restarted = false;
    for b in 0..BATCHES {
        if b == 10 {
            // Mid-stream: the first batches have arrived; now stop the backend.
            let arrived = prom.scalar("count(count_over_time(outage_samples[1h]))", None).await;
            assert_eq!(arrived, Some(SERIES as f64), "samples flow before the outage");
            tokio::task::block_in_place(|| prom.stop());
            stopped_at = Some(Instant::now());
        }
        if !restarted && stopped_at.is_some_and(|t| t.elapsed() >= OUTAGE) {
            tokio::task::block_in_place(|| prom.spawn());
            restarted = true;
        }
        let mut points = Vec::with_capacity((SERIES * STEPS_PER_BATCH) as usize);
        for i in b * STEPS_PER_BATCH..(b + 1) * STEPS_PER_BATCH {
            for s in 0..SERIES {
                let series = format!("series{s}");
                points.push(point(
                    "outage_samples",
                    MetricKind::Counter,
                    &[("job", "outage"), ("s", &series)],
                    value(s, i),
                    base + i * 1000,
                ));
            }
        }
        handle.input.send(redacted(points)).await.unwrap();
        tokio::time::sleep_until((start + PACE * (b as u32 + 1)).into()).await;
    }
    if !restarted {
        let since = stopped_at.unwrap().elapsed();
        tokio::time::sleep(OUTAGE.saturating_sub(since)).await;
        tokio::task::block_in_place(|| prom.spawn());
    }
    assert!(handle.metrics.failed() > 0, "the sink saw the outage");
    prom.wait_ready().await;

    // Every sample arrives: count per series and an exact sum of all values.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let total = prom.scalar("sum(count_over_time(outage_samples[1h]))", None).await.unwrap_or(0.0);
        if total == (SERIES * STEPS) as f64 && handle.metrics.buffer_events() == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{total} of {} samples in prometheus; sink: sent {} failed {} dropped {} buffered {}; {}",
            SERIES * STEPS,
            handle.metrics.sent(),
            handle.metrics.failed(),
            handle.metrics.dropped(),
            handle.metrics.buffer_events(),
            prom.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let full = prom.scalar(&format!("count(count_over_time(outage_samples[1h]) == {STEPS})"), None).await;
    assert_eq!(full, Some(SERIES as f64), "every series has all its samples");
    let expected_sum: i64 = (0..SERIES).flat_map(|s| (0..STEPS).map(move |i| s * 1000 + i)).sum();
    let sum = prom.scalar("sum(sum_over_time(outage_samples[1h]))", None).await;
    assert_eq!(sum, Some(expected_sum as f64));
    assert_eq!(prom.scalar("sum(resets(outage_samples[1h]))", None).await, Some(0.0), "per-series order kept");

    assert_eq!(handle.metrics.dropped(), 0);
    assert_eq!(handle.metrics.rejected(), 0);
    assert_eq!(stats.rejected_requests.load(std::sync::atomic::Ordering::Relaxed), 0);
    // Duplicates are bounded: at most the request in flight when Prometheus stopped.
    let dup = stats.duplicate_requests.load(std::sync::atomic::Ordering::Relaxed);
    assert!(dup <= 1, "{dup} duplicate requests");
    assert_eq!(handle.metrics.sent(), (SERIES * STEPS) as u64);
    let handle_failed = handle.metrics.failed();
    shutdown.cancel();
    handle.join().await;
    eprintln!(
        "outage test: {:?}; {} failed attempts, {} requests, {dup} duplicate",
        start.elapsed(),
        handle_failed,
        stats.requests.load(std::sync::atomic::Ordering::Relaxed)
    );
}
