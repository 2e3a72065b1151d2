//! The scrape source against real peers: the platform-api binary, a
//! `prometheus-node-exporter`, a closed port, an axum server serving good and bad
//! expositions, and a raw TCP server that misbehaves at the HTTP level.

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use warden_collector::exposition::{Format, SCRAPE_ACCEPT_HEADER, is_stale_nan, parse};
use warden_collector::pipeline::{ComponentStats, SourceContext, channel, encode_stats};
use warden_collector::signal::{Label, MetricKind, MetricPoint};
use warden_collector::sources::scrape::{self, Config, Scrape, Scraper, TargetConfig, http_client};
use warden_testkit::{Child, TempDir, find_program, free_port, require, wait_for_port, workspace_bin};

// ---------------------------------------------------------------------------------------
// Helpers

fn target(url: impl Into<String>) -> TargetConfig {
    TargetConfig {
        interval: Duration::from_secs(5),
        timeout: Some(Duration::from_secs(3)),
        ..TargetConfig::new(url, "test")
    }
}

fn scraper(t: &TargetConfig) -> (Scraper, Arc<ComponentStats>) {
    let stats = ComponentStats::new("source", "scrape/test");
    (Scraper::new(t, http_client().unwrap(), Arc::clone(&stats)).unwrap(), stats)
}

/// The value of synthetic series `name` (which must exist once, with the target labels).
fn synthetic(s: &Scrape, name: &str) -> f64 {
    let found: Vec<&MetricPoint> = s.points.iter().filter(|p| p.name == name).collect();
    assert_eq!(found.len(), 1, "exactly one {name} point in {:?}", s.points);
    assert_eq!(found[0].timestamp_ms, s.timestamp_ms, "{name} is stamped at the scrape start");
    assert_eq!(found[0].kind, MetricKind::Gauge);
    found[0].value
}

/// The scraped samples (not synthetic, not staleness markers).
fn samples(s: &Scrape) -> Vec<&MetricPoint> {
    s.samples_and_markers().iter().filter(|p| !is_stale_nan(p.value)).collect()
}

fn stale_markers(s: &Scrape) -> Vec<&MetricPoint> {
    s.samples_and_markers().iter().filter(|p| is_stale_nan(p.value)).collect()
}

fn find<'a>(points: &[&'a MetricPoint], name: &str, labels: &[(&str, &str)]) -> Option<&'a MetricPoint> {
    points.iter().copied().find(|p| p.name == name && labels.iter().all(|(n, v)| p.label(n) == Some(*v)))
}

#[track_caller]
fn assert_failed(s: &Scrape, stats: &Arc<ComponentStats>, reason: &str, failures_so_far: u64) {
    let error = s.error.as_ref().unwrap_or_else(|| panic!("scrape should fail with {reason}"));
    assert_eq!(error.reason(), reason, "{error}");
    assert_eq!(synthetic(s, "up"), 0.0);
    assert_eq!(synthetic(s, "scrape_samples_scraped"), if reason == "sample_limit" { s.samples as f64 } else { 0.0 });
    assert!(samples(s).is_empty(), "a failed scrape emits no samples");
    assert_eq!(stats.errors.get(), failures_so_far);
    assert!(stats.counter(error.counter_name()).get() >= 1);
    let exported = encode_stats(&[Arc::clone(stats)]);
    assert!(
        exported.contains(&format!("warden_source_scrape_failures_{reason}_total{{component=\"scrape/test\"}}")),
        "{exported}"
    );
}

// ---------------------------------------------------------------------------------------
// A tiny axum server: a mutable exposition at /metrics and fixed bad answers elsewhere.

#[derive(Clone)]
struct Exposition {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

type Shared = Arc<Mutex<Exposition>>;

struct TestServer {
    addr: SocketAddr,
    state: Shared,
}

impl TestServer {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn set(&self, content_type: &str, body: &str) {
        *self.state.lock().unwrap() =
            Exposition { status: 200, content_type: content_type.to_owned(), body: body.as_bytes().to_vec() };
    }

    fn set_status(&self, status: u16) {
        self.state.lock().unwrap().status = status;
    }
}

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

async fn dynamic(State(state): State<Shared>) -> (StatusCode, [(header::HeaderName, String); 1], Vec<u8>) {
    let e = state.lock().unwrap().clone();
    (StatusCode::from_u16(e.status).unwrap(), [(header::CONTENT_TYPE, e.content_type)], e.body)
}

async fn start_server() -> TestServer {
    let state: Shared =
        Arc::new(Mutex::new(Exposition { status: 200, content_type: TEXT.to_owned(), body: Vec::new() }));
    let garbage: Vec<u8> = {
        let mut rng = StdRng::seed_from_u64(1);
        (0..4096).map(|_| rng.random()).collect()
    };
    let app = Router::new()
        .route("/metrics", get(dynamic))
        .route("/garbage", get(move || async move { ([(header::CONTENT_TYPE, TEXT)], garbage) }))
        .route(
            "/html",
            get(|| async { ([(header::CONTENT_TYPE, "text/html")], "<html><body>PHI-SECRET</body></html>") }),
        )
        .route(
            "/truncated",
            get(|| async { ([(header::CONTENT_TYPE, TEXT)], "# TYPE a gauge\na{x=\"1\"} 1\na{x=\"PHI-SECRET") }),
        )
        .route(
            "/big",
            get(|| async {
                let line = b"big_metric{a=\"padding padding padding padding\"} 1\n";
                let body: Vec<u8> = line.iter().copied().cycle().take(64 << 20).collect();
                ([(header::CONTENT_TYPE, TEXT)], body)
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                ([(header::CONTENT_TYPE, TEXT)], "late 1\n")
            }),
        )
        .route("/om-no-eof", get(|| async { ([(header::CONTENT_TYPE, OPENMETRICS)], "# TYPE a gauge\na 1\n") }))
        .route(
            "/gzip",
            get(|| async {
                use std::io::Write as _;
                let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                enc.write_all(b"# TYPE zipped_total counter\nzipped_total{k=\"v\"} 42\n").unwrap();
                ([(header::CONTENT_TYPE, TEXT), (header::CONTENT_ENCODING, "gzip")], enc.finish().unwrap())
            }),
        )
        .route(
            "/headers",
            get(|headers: HeaderMap| async move {
                let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                let body = format!(
                    "scrape_request{{accept=\"{}\",timeout=\"{}\",encoding=\"{}\"}} 1\n",
                    h("accept"),
                    h("x-prometheus-scrape-timeout-seconds"),
                    h("accept-encoding")
                );
                ([(header::CONTENT_TYPE, TEXT)], body)
            }),
        )
        .with_state(Arc::clone(&state));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    TestServer { addr, state }
}

/// A raw TCP server that breaks HTTP in the given way on every connection.
#[derive(Clone, Copy)]
enum Misbehave {
    /// A chunked 64 MiB body (no Content-Length, so only the read loop can stop it).
    ChunkedHuge,
    /// Headers and a few body bytes, then silence.
    StallBody,
    /// Promises 1000 bytes, sends 8, closes.
    CloseMidBody,
}

async fn start_raw_server(how: Misbehave) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                match how {
                    Misbehave::ChunkedHuge => {
                        let head = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n";
                        if conn.write_all(head.as_bytes()).await.is_err() {
                            return;
                        }
                        let chunk: Vec<u8> = b"chunky_metric 1\n".iter().copied().cycle().take(64 << 10).collect();
                        let framed = [format!("{:x}\r\n", chunk.len()).into_bytes(), chunk, b"\r\n".to_vec()].concat();
                        for _ in 0..1024 {
                            if conn.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                        let _ = conn.write_all(b"0\r\n\r\n").await;
                    }
                    Misbehave::StallBody => {
                        let _ = conn
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nstall 1\n",
                            )
                            .await;
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    Misbehave::CloseMidBody => {
                        let _ = conn
                            .write_all(
                                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\nshort 1\n",
                            )
                            .await;
                    }
                }
            });
        }
    });
    addr
}

// ---------------------------------------------------------------------------------------
// Real peers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_the_running_platform_api() {
    let Some(bin) =
        require("platform-api scrape", workspace_bin("platform-api"), "binary not built (cargo build -p platform-api)")
    else {
        return;
    };
    let dir = TempDir::new("scrape_platform_api");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _child = Child::spawn(&bin, &["--listen", &listen, "--data-dir", dir.path().to_str().unwrap()]).unwrap();
    assert!(wait_for_port(port, Duration::from_secs(60)), "platform-api did not start");
    // One answered request so the request metrics have a series.
    let health = reqwest::get(format!("http://{listen}/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);

    let (mut s, stats) =
        scraper(&TargetConfig { job: "platform-api".into(), ..target(format!("http://{listen}/metrics")) });
    let scrape = s.scrape().await;
    assert!(scrape.error.is_none(), "{:?}", scrape.error);
    assert_eq!(synthetic(&scrape, "up"), 1.0);
    let points = samples(&scrape);
    assert_eq!(synthetic(&scrape, "scrape_samples_scraped"), points.len() as f64);
    assert_eq!(synthetic(&scrape, "scrape_series_added"), points.len() as f64, "first scrape: every series is new");
    assert_eq!(stats.received.get(), points.len() as u64);
    for p in &points {
        assert_eq!(p.label("job"), Some("platform-api"));
        assert_eq!(p.label("instance"), Some(listen.as_str()));
        assert_eq!(p.timestamp_ms, scrape.timestamp_ms);
    }
    let requests = find(&points, "http_requests_total", &[("method", "GET"), ("route", "/healthz"), ("status", "200")])
        .expect("http_requests_total for GET /healthz");
    assert_eq!(requests.kind, MetricKind::Counter);
    assert!(requests.value >= 1.0);
    let route = [("method", "GET"), ("route", "/healthz")];
    for (le, kind) in
        [("0.005", MetricKind::Histogram), ("1.0", MetricKind::Histogram), ("+Inf", MetricKind::Histogram)]
    {
        let mut labels = route.to_vec();
        labels.push(("le", le));
        let bucket = find(&points, "http_request_duration_seconds_bucket", &labels)
            .unwrap_or_else(|| panic!("bucket le={le} (le=\"1\" normalised to \"1.0\")"));
        assert_eq!(bucket.kind, kind);
    }
    for name in ["http_request_duration_seconds_sum", "http_request_duration_seconds_count"] {
        assert_eq!(find(&points, name, &route).unwrap_or_else(|| panic!("{name}")).kind, MetricKind::Histogram);
    }
    assert_eq!(find(&points, "http_requests_in_flight", &[]).expect("in-flight gauge").kind, MetricKind::Gauge);
    assert_eq!(find(&points, "process_cpu_seconds_total", &[]).expect("process collector").kind, MetricKind::Counter);
    assert_eq!(find(&points, "process_resident_memory_bytes", &[]).expect("process collector").kind, MetricKind::Gauge);

    // A second scrape: nothing vanished, so no staleness markers and no new series
    // (the request counter for /metrics itself may have appeared).
    let again = s.scrape().await;
    assert!(again.error.is_none());
    assert!(stale_markers(&again).is_empty(), "{:?}", stale_markers(&again));
    assert!(synthetic(&again, "scrape_series_added") <= 20.0);
}

/// The families and `# TYPE`s of a raw text exposition, computed independently of the
/// parser: `name → kind` for every sample line.
fn expected_kinds(raw: &str) -> HashMap<String, MetricKind> {
    let mut types: HashMap<&str, &str> = HashMap::new();
    let mut out = HashMap::new();
    for line in raw.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            types.insert(it.next().unwrap(), it.next().unwrap());
        } else if !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap();
            let kind_of = |t: &str| match t {
                "counter" => MetricKind::Counter,
                "gauge" => MetricKind::Gauge,
                "histogram" => MetricKind::Histogram,
                "summary" => MetricKind::Summary,
                _ => MetricKind::Unknown,
            };
            let kind = types.get(name).map(|t| kind_of(t)).unwrap_or_else(|| {
                ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|suf| {
                        let t = types.get(name.strip_suffix(suf)?)?;
                        matches!(*t, "histogram" | "summary").then(|| kind_of(t))
                    })
                    .unwrap_or(MetricKind::Unknown)
            });
            out.insert(name.to_owned(), kind);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_a_real_node_exporter() {
    let Some(bin) = require(
        "node_exporter scrape",
        find_program("WARDEN_NODE_EXPORTER", &["prometheus-node-exporter", "/usr/bin/prometheus-node-exporter"]),
        "prometheus-node-exporter not installed (apt install prometheus-node-exporter)",
    ) else {
        return;
    };
    // The textfile collector re-exposes a histogram (node_exporter itself has none),
    // written back by node_exporter's own encoder.
    let dir = TempDir::new("scrape_node_exporter");
    let path_label = r#"/a \"quoted\" \\ back"#;
    std::fs::write(
        dir.path().join("warden.prom"),
        format!(
            "# HELP warden_test_latency_seconds Test histogram.\n# TYPE warden_test_latency_seconds histogram\n\
             warden_test_latency_seconds_bucket{{path=\"{path_label}\",le=\"0.1\"}} 1\n\
             warden_test_latency_seconds_bucket{{path=\"{path_label}\",le=\"1\"}} 3\n\
             warden_test_latency_seconds_bucket{{path=\"{path_label}\",le=\"+Inf\"}} 4\n\
             warden_test_latency_seconds_sum{{path=\"{path_label}\"}} 2.5\n\
             warden_test_latency_seconds_count{{path=\"{path_label}\"}} 4\n"
        ),
    )
    .unwrap();
    let port = free_port();
    let listen = format!("--web.listen-address=127.0.0.1:{port}");
    let textfile = format!("--collector.textfile.directory={}", dir.path().display());
    let _child = Child::spawn(&bin, &[&listen, "--no-collector.systemd", &textfile]).unwrap();
    assert!(wait_for_port(port, Duration::from_secs(20)), "node_exporter did not start");
    let url = format!("http://127.0.0.1:{port}/metrics");

    // The raw body, fetched separately: every sample line must become one point.
    let response = http_client().unwrap().get(&url).header("accept", SCRAPE_ACCEPT_HEADER).send().await.unwrap();
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let raw = response.text().await.unwrap();
    let format = Format::from_content_type(content_type.as_deref());
    let sample_lines = raw.lines().filter(|l| !l.is_empty() && !l.starts_with('#')).count();
    assert!(sample_lines > 300, "a real node_exporter exposes hundreds of samples, got {sample_lines}");
    let parsed = parse(raw.as_bytes(), format, 0).unwrap();
    assert_eq!(parsed.len(), sample_lines, "one point per sample line");
    let kinds = expected_kinds(&raw);
    for p in &parsed {
        assert_eq!(Some(&p.kind), kinds.get(&p.name), "TYPE of {}", p.name);
    }

    let (mut s, _stats) = scraper(&TargetConfig { job: "node".into(), ..target(url) });
    let scrape = s.scrape().await;
    assert!(scrape.error.is_none(), "{:?}", scrape.error);
    assert_eq!(synthetic(&scrape, "up"), 1.0);
    let points = samples(&scrape);
    assert_eq!(synthetic(&scrape, "scrape_samples_scraped"), points.len() as f64);
    // The scrape is a second, independent fetch: same metric names, about as many series.
    let raw_names: BTreeSet<&str> = parsed.iter().map(|p| p.name.as_str()).collect();
    let names: BTreeSet<&str> = points.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, raw_names);
    assert!(points.len().abs_diff(sample_lines) * 20 <= sample_lines, "{} vs {sample_lines}", points.len());

    let instance = format!("127.0.0.1:{port}");
    let cpu = find(
        &points,
        "node_cpu_seconds_total",
        &[("cpu", "0"), ("mode", "idle"), ("job", "node"), ("instance", &instance)],
    )
    .expect("node_cpu_seconds_total{cpu=0,mode=idle}");
    assert_eq!(cpu.kind, MetricKind::Counter);
    assert!(cpu.value > 0.0);
    for q in ["0.0", "0.5", "1.0"] {
        let p = find(&points, "go_gc_duration_seconds", &[("quantile", q)]).unwrap_or_else(|| panic!("quantile {q}"));
        assert_eq!(p.kind, MetricKind::Summary);
    }
    let unescaped = "/a \"quoted\" \\ back";
    for le in ["0.1", "1.0", "+Inf"] {
        let b = find(&points, "warden_test_latency_seconds_bucket", &[("le", le), ("path", unescaped)])
            .unwrap_or_else(|| panic!("histogram bucket le={le} from the textfile collector"));
        assert_eq!(b.kind, MetricKind::Histogram);
    }
    let count = find(&points, "warden_test_latency_seconds_count", &[("path", unescaped)]).unwrap();
    assert_eq!((count.kind, count.value), (MetricKind::Histogram, 4.0));
}

// ---------------------------------------------------------------------------------------
// Failures: each gives up 0, a counted reason, and no samples.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_down_target_is_up_0_and_counted() {
    let port = free_port();
    let (mut s, stats) = scraper(&target(format!("http://127.0.0.1:{port}/metrics")));
    let scrape = s.scrape().await;
    assert_failed(&scrape, &stats, "connect", 1);
    assert_eq!(stats.counter("scrape_failures_connect").get(), 1);
    let error = scrape.error.unwrap().to_string();
    assert!(error.contains("onnect"), "{error}");
    // Labels of the synthetic series.
    let up = scrape.points.iter().find(|p| p.name == "up").unwrap();
    assert_eq!(up.labels, vec![Label::new("instance", format!("127.0.0.1:{port}")), Label::new("job", "test")]);
    // Still failing: counted again, no panic, same labels.
    let again = s.scrape().await;
    assert_failed(&again, &stats, "connect", 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_and_bad_servers_give_up_0() {
    let server = start_server().await;
    let chunked = start_raw_server(Misbehave::ChunkedHuge).await;
    let stall = start_raw_server(Misbehave::StallBody).await;
    let close = start_raw_server(Misbehave::CloseMidBody).await;
    server.set(TEXT, "a 1\nb 2\n");
    let quick = |url: String| TargetConfig { timeout: Some(Duration::from_millis(500)), ..target(url) };
    let cases: Vec<(TargetConfig, &str)> = vec![
        (target(server.url("/garbage")), "parse"),
        (target(server.url("/html")), "parse"),
        (target(server.url("/truncated")), "parse"),
        (target(server.url("/om-no-eof")), "parse"),
        (target(server.url("/big")), "body_too_large"),
        (target(format!("http://{chunked}/metrics")), "body_too_large"),
        (quick(server.url("/slow")), "timeout"),
        (quick(format!("http://{stall}/metrics")), "timeout"),
        (target(format!("http://{close}/metrics")), "read"),
        (target(server.url("/no-such-path")), "http_status"),
        (TargetConfig { sample_limit: 1, ..target(server.url("/metrics")) }, "sample_limit"),
    ];
    for (t, reason) in cases {
        let (mut s, stats) = scraper(&t);
        let started = std::time::Instant::now();
        let scrape = s.scrape().await;
        assert_failed(&scrape, &stats, reason, 1);
        let message = scrape.error.as_ref().unwrap().to_string();
        assert!(!message.contains("PHI-SECRET") && !message.contains("padding"), "error echoes the body: {message}");
        assert!(started.elapsed() < Duration::from_secs(4), "{} took {:?}", t.url, started.elapsed());
        if reason == "timeout" {
            assert!(scrape.duration >= Duration::from_millis(450) && scrape.duration < Duration::from_secs(2));
        }
        if reason == "sample_limit" {
            assert_eq!((scrape.samples, stats.dropped.get()), (2, 2));
        }
    }
    // A parse error names the line, not the content.
    let (mut s, _) = scraper(&target(server.url("/truncated")));
    let e = s.scrape().await.error.unwrap().to_string();
    assert!(e.contains("line 3, column 5: unterminated value of label x"), "{e}");
}

// ---------------------------------------------------------------------------------------
// Semantics

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_carry_prometheus_headers_and_gzip_is_decoded() {
    let server = start_server().await;
    let (mut s, _) = scraper(&target(server.url("/headers")));
    let scrape = s.scrape().await;
    let points = samples(&scrape);
    let p = find(&points, "scrape_request", &[]).unwrap();
    assert_eq!(p.label("accept"), Some(SCRAPE_ACCEPT_HEADER));
    assert_eq!(p.label("timeout"), Some("3"));
    assert_eq!(p.label("encoding"), Some("gzip"));

    let (mut s, _) = scraper(&target(server.url("/gzip")));
    let scrape = s.scrape().await;
    assert!(scrape.error.is_none(), "{:?}", scrape.error);
    let p = find(&samples(&scrape), "zipped_total", &[("k", "v")]).cloned().unwrap();
    assert_eq!((p.kind, p.value), (MetricKind::Counter, 42.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vanished_series_get_staleness_markers() {
    let server = start_server().await;
    let (mut s, _) = scraper(&target(server.url("/metrics")));
    let body = "# TYPE a gauge\na 1\n# TYPE b counter\nb_total{x=\"1\"} 2\nwith_ts 3 1700000000000\n";
    server.set(TEXT, body);
    let first = s.scrape().await;
    assert_eq!(samples(&first).len(), 3);
    assert_eq!(synthetic(&first, "scrape_series_added"), 2.0, "samples with their own timestamp are not tracked");
    assert_eq!(find(&samples(&first), "with_ts", &[]).unwrap().timestamp_ms, 1_700_000_000_000, "honor_timestamps");

    server.set(TEXT, "# TYPE a gauge\na 1\n");
    let second = s.scrape().await;
    assert!(second.error.is_none());
    let stale = stale_markers(&second);
    assert_eq!(stale.len(), 1, "only b vanished (with_ts is not tracked): {stale:?}");
    assert_eq!(
        (stale[0].name.as_str(), stale[0].label("x"), stale[0].kind),
        ("b_total", Some("1"), MetricKind::Counter)
    );
    assert_eq!(stale[0].label("job"), Some("test"));
    assert_eq!(stale[0].value.to_bits(), warden_collector::exposition::STALE_NAN_BITS);
    assert_eq!(stale[0].timestamp_ms, second.timestamp_ms);
    assert_eq!(synthetic(&second, "scrape_series_added"), 0.0);

    // A failed scrape makes every remaining series stale.
    server.set_status(500);
    let third = s.scrape().await;
    assert_eq!(third.error.as_ref().map(|e| e.reason()), Some("http_status"));
    let stale: Vec<&str> = stale_markers(&third).iter().map(|p| p.name.as_str()).collect();
    assert_eq!(stale, vec!["a"]);

    // Back: everything is new again, nothing is stale.
    server.set(TEXT, body);
    let fourth = s.scrape().await;
    assert!(fourth.error.is_none());
    assert!(stale_markers(&fourth).is_empty());
    assert_eq!(synthetic(&fourth, "scrape_series_added"), 2.0);

    // Duplicate series: the first sample wins, the rest are dropped and counted.
    server.set(TEXT, "d 1\nd 2\n");
    let (mut s, stats) = scraper(&target(server.url("/metrics")));
    let dup = s.scrape().await;
    assert_eq!(samples(&dup).iter().map(|p| p.value).collect::<Vec<_>>(), vec![1.0]);
    assert_eq!(stats.counter("scrape_duplicate_samples").get(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn honor_labels_both_ways() {
    let server = start_server().await;
    server.set(TEXT, "m{job=\"scraped\",instance=\"inst\",exported_job=\"y\",env=\"s\",other=\"o\"} 1\n");
    let instance = server.addr.to_string();
    let static_labels = [("env".to_owned(), "prod".to_owned())].into_iter().collect();
    let t = TargetConfig { labels: static_labels, ..target(server.url("/metrics")) };

    let (mut s, _) = scraper(&t);
    let scrape = s.scrape().await;
    let p = samples(&scrape)[0].clone();
    let expect = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| Label::new(*n, *v)).collect::<Vec<_>>();
    assert_eq!(
        p.labels,
        expect(&[
            ("env", "prod"),
            ("exported_env", "s"),
            ("exported_exported_job", "scraped"),
            ("exported_instance", "inst"),
            ("exported_job", "y"),
            ("instance", &instance),
            ("job", "test"),
            ("other", "o"),
        ])
    );

    let (mut s, _) = scraper(&TargetConfig { honor_labels: true, ..t.clone() });
    let scrape = s.scrape().await;
    let p = samples(&scrape)[0].clone();
    assert_eq!(
        p.labels,
        expect(&[("env", "s"), ("exported_job", "y"), ("instance", "inst"), ("job", "scraped"), ("other", "o")])
    );
    // The synthetic series always carry the target's own labels.
    let up = scrape.points.iter().find(|p| p.name == "up").unwrap();
    assert_eq!(up.labels, expect(&[("env", "prod"), ("instance", &instance), ("job", "test")]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openmetrics_with_eof_and_second_timestamps() {
    let server = start_server().await;
    server.set(
        OPENMETRICS,
        "# TYPE jobs counter\n# HELP jobs Jobs run.\njobs_total{queue=\"a\"} 5 1700000000.5 # {trace_id=\"abc\"} 1 1700000000.4\n\
         jobs_created{queue=\"a\"} 1699999000\n# TYPE build info\nbuild_info{version=\"1.0\"} 1\n\
         # TYPE lat histogram\nlat_bucket{le=\"1\"} 2\nlat_bucket{le=\"+Inf\"} 3\nlat_sum 2.5\nlat_count 3\n# EOF\n",
    );
    let (mut s, _) = scraper(&target(server.url("/metrics")));
    let scrape = s.scrape().await;
    assert!(scrape.error.is_none(), "{:?}", scrape.error);
    let points = samples(&scrape);
    assert_eq!(points.len(), 7);
    let jobs = find(&points, "jobs_total", &[("queue", "a")]).unwrap();
    assert_eq!((jobs.kind, jobs.value, jobs.timestamp_ms), (MetricKind::Counter, 5.0, 1_700_000_000_500));
    let created = find(&points, "jobs_created", &[]).unwrap();
    assert_eq!((created.kind, created.timestamp_ms), (MetricKind::Counter, scrape.timestamp_ms));
    assert_eq!(find(&points, "build_info", &[]).unwrap().kind, MetricKind::Gauge);
    assert_eq!(find(&points, "lat_bucket", &[("le", "1.0")]).unwrap().kind, MetricKind::Histogram);

    // honor_timestamps: false stamps everything with the scrape time.
    let (mut s, _) = scraper(&TargetConfig { honor_timestamps: false, ..target(server.url("/metrics")) });
    let scrape = s.scrape().await;
    assert!(samples(&scrape).iter().all(|p| p.timestamp_ms == scrape.timestamp_ms));
}

// ---------------------------------------------------------------------------------------
// The source as the agent runs it.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_scrapes_every_target_on_its_interval_and_stops_on_shutdown() {
    let server = start_server().await;
    server.set(TEXT, "# TYPE g gauge\ng 1\n");
    let down = free_port();
    let every = Duration::from_millis(200);
    let config: Config = serde_json::from_value(serde_json::json!({"targets": [
        {"url": server.url("/metrics"), "job": "up-one", "interval": "200ms", "timeout": "150ms"},
        {"url": format!("http://127.0.0.1:{down}/metrics"), "job": "down-one", "interval": "200ms", "timeout": "150ms"},
    ]}))
    .unwrap();
    config.validate().unwrap();
    let (tx, mut rx) = channel(4);
    let dir = TempDir::new("scrape_run");
    let ctx = SourceContext::new("scrape/run", tx, dir.path().to_path_buf());
    let shutdown = ctx.shutdown.clone();
    let stats = Arc::clone(&ctx.stats);
    let handle = tokio::spawn(scrape::run(config, ctx));

    let mut ups: HashMap<String, Vec<(i64, f64)>> = HashMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while ups.values().filter(|v| v.len() >= 3).count() < 2 {
        let batch = tokio::time::timeout_at(deadline, rx.recv()).await.expect("batches within 5 s").unwrap();
        for p in batch.metrics.iter().filter(|p| p.name == "up") {
            ups.entry(p.label("job").unwrap().to_owned()).or_default().push((p.timestamp_ms, p.value));
        }
    }
    assert!(ups["up-one"].iter().all(|&(_, v)| v == 1.0));
    assert!(ups["down-one"].iter().all(|&(_, v)| v == 0.0));
    for series in ups.values() {
        for w in series.windows(2) {
            let gap = Duration::from_millis((w[1].0 - w[0].0) as u64);
            assert!(gap >= every / 2 && gap <= every * 3, "scrapes {gap:?} apart, interval {every:?}");
        }
    }
    assert!(stats.emitted.get() > 0 && stats.errors.get() >= 3);

    // Stop reading: the loops block on the full channel (backpressure), and shutdown
    // still ends them promptly.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(2), handle).await.expect("run returns promptly after shutdown").unwrap();
}

#[tokio::test]
async fn run_with_nothing_valid_still_waits_for_shutdown() {
    let (tx, _rx) = channel(1);
    let dir = TempDir::new("scrape_run_invalid");
    let ctx = SourceContext::new("scrape/invalid", tx, dir.path().to_path_buf());
    let shutdown = ctx.shutdown.clone();
    let stats = Arc::clone(&ctx.stats);
    let handle = tokio::spawn(scrape::run(Config { targets: vec![TargetConfig::new("not a url", "x")] }, ctx));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!handle.is_finished(), "run returns only on shutdown");
    assert_eq!(stats.errors.get(), 1, "the unusable target is counted");
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(1), handle).await.unwrap().unwrap();
}
