//! The CloudWatch Logs sink against a real CloudWatch Logs API implementation: the `moto`
//! server (pip `moto[server]`), started per test on a free port. A small HTTP proxy
//! between the sink and moto counts every PutLogEvents request (events, bytes, order,
//! span) so the per-request limits are checked on the wire, answers chosen requests with
//! CloudWatch's throttling error or a recorded partial-success response, and can refuse
//! connections to simulate an outage.
//!
//! moto is found through `WARDEN_MOTO_SERVER`, the CI venv
//! (`$HOME/.cache/warden-venv/bin/moto_server`) or `PATH`; without it the tests skip
//! (and fail under `WARDEN_REQUIRE_SERVICES=1`).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use warden_collector::pipeline::CancellationToken;
use warden_collector::redact::{Redacted, Redactor};
use warden_collector::signal::{AnyValue, Batch, KeyValue, LogRecord, Resource};
use warden_collector::sinks::buffer::{BufferConfig, FsyncPolicy, WhenFull};
use warden_collector::sinks::cloudwatch::batch::{
    MAX_BATCH_BYTES, MAX_BATCH_EVENTS, MAX_EVENT_BYTES, MAX_SPAN_MS, TRUNCATION_MARKER,
};
use warden_collector::sinks::cloudwatch::{CloudWatchConfig, CloudWatchSink, Credentials};
use warden_collector::sinks::runner;
use warden_collector::sinks::{DeliveryError, RetryConfig, Sink};
use warden_testkit::{Child, TempDir, find_program, free_port, skip, wait_for_port};

const REGION: &str = "us-east-1";

// ---------------------------------------------------------------------------------
// moto

struct Moto {
    _child: Child,
    url: String,
}

fn start_moto(test: &str) -> Option<Moto> {
    let venv = std::env::var("HOME").map(|h| format!("{h}/.cache/warden-venv/bin/moto_server")).unwrap_or_default();
    let Some(program) = find_program("WARDEN_MOTO_SERVER", &[&venv, "moto_server"]) else {
        skip(test, "moto_server not found (pip install \"moto[server]\"; or set WARDEN_MOTO_SERVER)");
        return None;
    };
    let port = free_port();
    let child = Child::spawn(&program, &["-H", "127.0.0.1", "-p", &port.to_string()]).expect("start moto_server");
    assert!(wait_for_port(port, Duration::from_secs(30)), "moto_server did not listen on {port}");
    Some(Moto { _child: child, url: format!("http://127.0.0.1:{port}") })
}

fn credentials() -> Credentials {
    Credentials::new("AKIDWARDENTEST", "warden-test-secret", None, None, "test")
}

fn config(endpoint: &str, group: &str, stream: &str) -> CloudWatchConfig {
    let mut c = CloudWatchConfig::new(group, stream);
    c.region = Some(REGION.into());
    c.endpoint_url = Some(endpoint.into());
    c.timeout = Duration::from_secs(10);
    c
}

async fn sink(c: &CloudWatchConfig) -> CloudWatchSink {
    c.build_with_credentials("cloudwatch", credentials()).await.expect("build sink")
}

/// A client straight to moto (not through the proxy) to read back what arrived.
async fn reader(moto: &Moto) -> CloudWatchSink {
    sink(&config(&moto.url, "unused", "unused")).await
}

/// Every event of a stream, oldest first, through GetLogEvents pagination.
async fn read_all(reader: &CloudWatchSink, group: &str, stream: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..10_000 {
        let page = reader
            .client()
            .get_log_events()
            .log_group_name(group)
            .log_stream_name(stream)
            .start_from_head(true)
            .set_next_token(token.clone())
            .send()
            .await
            .expect("GetLogEvents");
        let events = page.events();
        if events.is_empty() {
            return out;
        }
        out.extend(events.iter().map(|e| (e.timestamp().unwrap_or(0), e.message().unwrap_or("").to_owned())));
        let next = page.next_forward_token().map(str::to_owned);
        if next.is_none() || next == token {
            return out;
        }
        token = next;
    }
    panic!("GetLogEvents pagination did not end");
}

// ---------------------------------------------------------------------------------
// records

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn resource(service: &str) -> Arc<Resource> {
    Arc::new(Resource {
        attributes: vec![KeyValue::string("service.name", service), KeyValue::string("host.name", "node-1")],
        schema_url: String::new(),
    })
}

/// A record whose sequence number travels as an integer attribute (the redactor leaves
/// integers alone), at `ts_ms`.
fn record(res: &Arc<Resource>, seq: u64, ts_ms: i64, body: String) -> LogRecord {
    LogRecord {
        time_unix_nano: ts_ms as u64 * 1_000_000,
        body: AnyValue::Str(body),
        attributes: vec![KeyValue { key: "seq".into(), value: AnyValue::Int(seq as i64) }],
        resource: Arc::clone(res),
        ..LogRecord::default()
    }
}

fn redacted(logs: Vec<LogRecord>) -> Redacted<Batch> {
    Redactor::default_mask().apply(Batch::logs(logs))
}

/// The `seq` attribute of a JSON message.
fn seq_of(message: &str) -> u64 {
    let v: serde_json::Value =
        serde_json::from_str(message).unwrap_or_else(|e| panic!("not JSON ({e}): {message:.80}"));
    v["attributes"]["seq"].as_u64().unwrap_or_else(|| panic!("no seq in {message:.200}"))
}

// ---------------------------------------------------------------------------------
// the proxy

/// One PutLogEvents request as the proxy saw it.
#[derive(Debug, Clone)]
struct Put {
    stream: String,
    events: usize,
    /// Message UTF-8 bytes + 26 per event, as CloudWatch counts.
    bytes: usize,
    chronological: bool,
    span_ms: i64,
    max_message: usize,
    /// Answered by the proxy itself (throttled / injected), not forwarded.
    answered: bool,
    /// The HTTP status the sink got (0 if the connection was cut first).
    status: u16,
    at: Instant,
}

#[derive(Default)]
struct ProxyState {
    puts: Vec<Put>,
    /// (stream, n): the n-th PutLogEvents on that stream (0-based, counting every
    /// attempt) is answered with ThrottlingException.
    throttle: HashSet<(String, usize)>,
    /// (stream, n) answered with this recorded (status, body) instead of being
    /// forwarded.
    inject: HashMap<(String, usize), (u16, String)>,
}

struct Proxy {
    url: String,
    state: Arc<Mutex<ProxyState>>,
    down: watch::Sender<bool>,
    _task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    async fn start(upstream: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(ProxyState::default()));
        let (down, down_rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, addr, upstream.to_owned(), Arc::clone(&state), down_rx));
        Proxy { url: format!("http://{addr}"), state, down, _task: task }
    }

    fn puts(&self) -> Vec<Put> {
        self.state.lock().unwrap().puts.clone()
    }

    /// (status, events) of every PutLogEvents on `stream`, in order.
    fn outcomes(&self, stream: &str) -> Vec<(u16, usize)> {
        self.puts().iter().filter(|p| p.stream == stream).map(|p| (p.status, p.events)).collect()
    }

    /// Events of the PutLogEvents on `stream` that CloudWatch took.
    fn accepted(&self, stream: &str) -> Vec<usize> {
        self.puts().iter().filter(|p| p.stream == stream && p.status == 200).map(|p| p.events).collect()
    }

    /// Down: the port refuses connections and open connections are cut.
    fn set_down(&self, down: bool) {
        self.down.send_replace(down);
    }
}

async fn serve(
    listener: TcpListener,
    addr: SocketAddr,
    upstream: String,
    state: Arc<Mutex<ProxyState>>,
    mut down: watch::Receiver<bool>,
) {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let mut listener = Some(listener);
    let mut conns = JoinSet::new();
    loop {
        let Some(l) = &listener else {
            // Down: wait to come back up, then listen on the same port again.
            if down.changed().await.is_err() {
                return;
            }
            if !*down.borrow() {
                let mut bound = None;
                for _ in 0..100 {
                    match TcpListener::bind(addr).await {
                        Ok(l) => {
                            bound = Some(l);
                            break;
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
                listener = Some(bound.expect("re-bind the proxy port"));
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (client, upstream, state) = (client.clone(), upstream.clone(), Arc::clone(&state));
                conns.spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(req, client.clone(), upstream.clone(), Arc::clone(&state))
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
            changed = down.changed() => {
                if changed.is_err() {
                    return;
                }
                if *down.borrow() {
                    listener = None;
                    conns.abort_all();
                }
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}

fn json_response(status: u16, headers: &[(&str, &str)], body: String) -> Response<Full<Bytes>> {
    let mut r = Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "6a3bd3b6-0000-4000-8000-000000000000");
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(Full::new(Bytes::from(body))).unwrap()
}

async fn handle(
    req: Request<Incoming>,
    client: reqwest::Client,
    upstream: String,
    state: Arc<Mutex<ProxyState>>,
) -> Result<Response<Full<Bytes>>, std::convert::Infallible> {
    let (parts, body) = req.into_parts();
    let Ok(body) = body.collect().await.map(|b| b.to_bytes()) else {
        return Ok(json_response(400, &[], "{}".into()));
    };
    let target = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut put_index = None;
    if target.ends_with(".PutLogEvents") {
        let v: serde_json::Value = serde_json::from_slice(&body).expect("PutLogEvents body is JSON");
        let events = v["logEvents"].as_array().cloned().unwrap_or_default();
        let ts: Vec<i64> = events.iter().map(|e| e["timestamp"].as_i64().unwrap()).collect();
        let sizes: Vec<usize> = events.iter().map(|e| e["message"].as_str().unwrap().len()).collect();
        let stream = v["logStreamName"].as_str().unwrap_or("").to_owned();
        let mut st = state.lock().unwrap();
        let nth = (stream.clone(), st.puts.iter().filter(|p| p.stream == stream).count());
        let throttled = st.throttle.contains(&nth);
        let injected = st.inject.remove(&nth);
        put_index = Some(st.puts.len());
        st.puts.push(Put {
            stream,
            events: events.len(),
            bytes: sizes.iter().map(|s| s + 26).sum(),
            chronological: ts.windows(2).all(|w| w[0] <= w[1]),
            span_ms: ts.last().copied().unwrap_or(0) - ts.first().copied().unwrap_or(0),
            max_message: sizes.iter().copied().max().unwrap_or(0),
            answered: throttled || injected.is_some(),
            status: if throttled { 400 } else { injected.as_ref().map_or(0, |(status, _)| *status) },
            at: Instant::now(),
        });
        drop(st);
        if throttled {
            // CloudWatch's throttling error, as the service sends it (awsJson1.1).
            return Ok(json_response(
                400,
                &[(
                    "x-amzn-errortype",
                    "ThrottlingException:http://internal.amazon.com/coral/com.amazon.coral.availability/",
                )],
                r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
            ));
        }
        if let Some((status, body)) = injected {
            let error_type = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["__type"].as_str().map(str::to_owned));
            let headers: Vec<(&str, &str)> = error_type.iter().map(|t| ("x-amzn-errortype", t.as_str())).collect();
            return Ok(json_response(status, &headers, body));
        }
    }
    let mut fwd = client.request(parts.method.clone(), format!("{upstream}{}", parts.uri));
    for (k, v) in &parts.headers {
        if !matches!(k.as_str(), "host" | "content-length" | "connection" | "transfer-encoding") {
            fwd = fwd.header(k, v);
        }
    }
    match fwd.body(body).send().await {
        Ok(resp) => {
            let mut out = Response::builder().status(resp.status().as_u16());
            for (k, v) in resp.headers() {
                if !matches!(k.as_str(), "content-length" | "connection" | "transfer-encoding") {
                    out = out.header(k, v);
                }
            }
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.unwrap_or_default();
            if let Some(i) = put_index {
                state.lock().unwrap().puts[i].status = status;
            }
            Ok(out.body(Full::new(bytes)).unwrap())
        }
        Err(_) => Ok(json_response(502, &[], "{}".into())),
    }
}

fn assert_within_limits(puts: &[Put]) {
    for (i, p) in puts.iter().enumerate() {
        assert!(p.events >= 1 && p.events <= MAX_BATCH_EVENTS, "request {i}: {} events", p.events);
        assert!(p.bytes <= MAX_BATCH_BYTES, "request {i}: {} bytes", p.bytes);
        assert!(p.chronological, "request {i}: events out of order");
        assert!(p.span_ms < MAX_SPAN_MS, "request {i}: spans {} ms", p.span_ms);
        assert!(p.max_message <= MAX_EVENT_BYTES, "request {i}: a {} byte event", p.max_message);
    }
}

// ---------------------------------------------------------------------------------
// tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_in_templated_groups_and_streams_with_retention() {
    let Some(moto) = start_moto("cloudwatch in-order delivery") else { return };
    let mut c = config(&moto.url, "/warden/{service.name}", "{host.name}-{date}");
    c.retention_days = Some(7);
    let mut sink = sink(&c).await;
    let (api, worker) = (resource("platform-api"), resource("worker"));
    let now = now_ms();
    // Three batches; inside each, timestamps go backwards and repeat, and two services
    // interleave. Equal timestamps must keep the order received.
    let mut next_seq = 0u64;
    // (group, stream) → (timestamp, seq) in the order sent. The stream is named after
    // each event's UTC day, so a run across midnight writes two streams per group.
    let mut sent: HashMap<(String, String), Vec<(i64, u64)>> = HashMap::new();
    let mut calls = HashSet::new();
    for b in 0..3i64 {
        let mut logs = Vec::new();
        for i in 0..1000i64 {
            let (res, name) = if i % 3 == 0 { (&worker, "worker") } else { (&api, "platform-api") };
            let ts = now - 60_000 + b * 10_000 + (999 - i) / 10; // descending, ten per ms
            logs.push(record(res, next_seq, ts, format!("request {i} handled")));
            let (y, m, d) = civil(ts);
            let key = (format!("/warden/{name}"), format!("node-1-{y:04}-{m:02}-{d:02}"));
            calls.insert((b, key.clone()));
            sent.entry(key).or_default().push((ts, next_seq));
            next_seq += 1;
        }
        let d = sink.deliver(&redacted(logs)).await.expect("deliver");
        assert_eq!((d.accepted, d.rejected), (1000, 0));
    }
    let stats = sink.stats();
    assert_eq!((stats.groups_created.get(), stats.streams_created.get()), (2, sent.len() as u64));
    assert_eq!(stats.requests.get(), calls.len() as u64, "one request per stream per batch");

    let reader = reader(&moto).await;
    for ((group, stream), events) in &sent {
        let got: Vec<(i64, u64)> =
            read_all(&reader, group, stream).await.iter().map(|(ts, m)| (*ts, seq_of(m))).collect();
        let mut want = events.clone();
        want.sort_by_key(|(ts, _)| *ts); // stable: equal timestamps keep the order sent
        assert_eq!(got.len(), want.len(), "{group} {stream}");
        assert!(got == want, "{group} {stream}: events not in chronological, then received, order");
    }
    let groups = reader.client().describe_log_groups().log_group_name_prefix("/warden/").send().await.unwrap();
    let mut retention: Vec<(String, Option<i32>)> = groups
        .log_groups()
        .iter()
        .map(|g| (g.log_group_name().unwrap_or("").to_owned(), g.retention_in_days()))
        .collect();
    retention.sort();
    assert_eq!(
        retention,
        vec![("/warden/platform-api".to_owned(), Some(7)), ("/warden/worker".to_owned(), Some(7))],
        "groups created with their retention"
    );
}

/// (year, month, day) of a UTC timestamp in ms.
fn civil(ms: i64) -> (i64, u32, u32) {
    let z = ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_stay_within_put_log_events_limits() {
    let Some(moto) = start_moto("cloudwatch batch limits") else { return };
    let proxy = Proxy::start(&moto.url).await;
    let mut c = config(&proxy.url, "/warden/limits", "{resource.case}");
    c.format = warden_collector::sinks::cloudwatch::batch::MessageFormat::Json;
    let mut sink = sink(&c).await;
    let reader = reader(&moto).await;
    let now = now_ms();
    let case =
        |name: &str| Arc::new(Resource { attributes: vec![KeyValue::string("case", name)], schema_url: String::new() });

    // 20,000 small events in one batch: at least two requests by count.
    let res = case("count");
    let logs = (0..20_000u64).map(|i| record(&res, i, now - 20_000 + i as i64, "small event".into())).collect();
    let d = sink.deliver(&redacted(logs)).await.expect("deliver 20,000");
    assert_eq!((d.accepted, d.rejected), (20_000, 0));
    let count_puts = proxy.accepted("count");
    assert!(count_puts.len() >= 2, "{count_puts:?}");
    assert_eq!(count_puts.iter().sum::<usize>(), 20_000);

    // 2 MB of events (200 × 10 KB): at least two requests by bytes.
    let res = case("bytes");
    let filler = "b".repeat(10_000);
    let logs = (0..200u64).map(|i| record(&res, i, now - 1000 + i as i64, filler.clone())).collect();
    let d = sink.deliver(&redacted(logs)).await.expect("deliver 2 MB");
    assert_eq!((d.accepted, d.rejected), (200, 0));
    let byte_puts = proxy.accepted("bytes");
    assert!(byte_puts.len() >= 2, "{byte_puts:?}");
    assert_eq!(byte_puts.iter().sum::<usize>(), 200, "cut by bytes, not by count");

    // Single events larger than the per-event maximum: truncated, counted, delivered.
    let res = case("huge");
    let huge = "h".repeat(1_500_000);
    let logs = (0..3u64).map(|i| record(&res, i, now - 10 + i as i64, huge.clone())).collect();
    let d = sink.deliver(&redacted(logs)).await.expect("deliver oversized");
    assert_eq!((d.accepted, d.rejected), (3, 0));
    assert_eq!(sink.stats().events_truncated.get(), 3);
    assert_eq!(proxy.accepted("huge"), vec![1, 1, 1], "a maximal event fills a request by itself");

    let puts = proxy.puts();
    assert_within_limits(&puts);
    assert!(puts.iter().all(|p| !p.answered));

    for (stream, n) in [("count", 20_000usize), ("bytes", 200), ("huge", 3)] {
        let got = read_all(&reader, "/warden/limits", stream).await;
        assert_eq!(got.len(), n, "{stream}");
        if stream == "huge" {
            for (_, m) in &got {
                assert!(m.len() <= MAX_EVENT_BYTES && m.len() > 1_000_000, "{}", m.len());
                assert!(m.ends_with(TRUNCATION_MARKER));
            }
        } else {
            let seqs: Vec<u64> = got.iter().map(|(_, m)| seq_of(m)).collect();
            assert!(seqs.iter().enumerate().all(|(i, s)| *s == i as u64), "{stream}: order");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_outside_the_time_window_are_dropped_and_counted() {
    let Some(moto) = start_moto("cloudwatch time window") else { return };
    let proxy = Proxy::start(&moto.url).await;
    let mut sink = sink(&config(&proxy.url, "/warden/window", "s")).await;
    let res = resource("api");
    let now = now_ms();
    let day = 86_400_000;
    let logs = vec![
        record(&res, 0, now - 15 * day, "too old".into()),
        record(&res, 1, now - 13 * day, "old but fine".into()),
        record(&res, 2, now, "now".into()),
        record(&res, 3, now + 3_600_000, "an hour ahead".into()),
        record(&res, 4, now + 3 * 3_600_000, "too new".into()),
    ];
    let d = sink.deliver(&redacted(logs)).await.expect("deliver");
    assert_eq!((d.accepted, d.rejected), (3, 2));
    let st = sink.stats();
    assert_eq!((st.events_too_old.get(), st.events_too_new.get()), (1, 1));
    // 13 days back and now are more than 24 h apart: two requests.
    assert_eq!(proxy.accepted("s"), vec![1, 2]);
    assert_within_limits(&proxy.puts());
    let got: Vec<u64> =
        read_all(&reader(&moto).await, "/warden/window", "s").await.iter().map(|(_, m)| seq_of(m)).collect();
    assert_eq!(got, vec![1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_log_events_info_is_counted() {
    let Some(moto) = start_moto("cloudwatch rejected events") else { return };
    let proxy = Proxy::start(&moto.url).await;
    let mut sink = sink(&config(&proxy.url, "/warden/rejected", "s")).await;
    let res = resource("api");
    let now = now_ms();
    // The first call goes through (attempt 0 finds no stream, attempt 1 follows its
    // creation); the next is answered with a recorded partial success: events 0–1 too
    // old, 4.. too new.
    proxy.state.lock().unwrap().inject.insert(
        ("s".into(), 2),
        (200, r#"{"nextSequenceToken":"49590000000000000000000000000000000000000000000000000002","rejectedLogEventsInfo":{"tooOldLogEventEndIndex":1,"tooNewLogEventStartIndex":4}}"#.into()),
    );
    let d = sink.deliver(&redacted(vec![record(&res, 0, now, "first".into())])).await.expect("deliver");
    assert_eq!((d.accepted, d.rejected), (1, 0));
    let logs = (1..=5).map(|i| record(&res, i, now + i as i64, format!("event {i}"))).collect();
    let d = sink.deliver(&redacted(logs)).await.expect("deliver");
    assert_eq!((d.accepted, d.rejected), (2, 3));
    assert_eq!(sink.stats().events_rejected.get(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_errors_drop_only_the_refused_calls_and_never_quote_the_service() {
    let Some(moto) = start_moto("cloudwatch permanent errors") else { return };
    let proxy = Proxy::start(&moto.url).await;
    let now = now_ms();
    let (api, worker) = (resource("api"), resource("worker"));
    let mut sink = sink(&config(&proxy.url, "/warden/perm", "{service.name}")).await;
    // Recorded error responses (awsJson1.1); the validation message quotes an event,
    // as CloudWatch's do.
    let invalid = r#"{"__type":"InvalidParameterException","message":"1 validation error detected: Value 'jane.doe@example.com' at 'logEvents.1.member.message' failed to satisfy constraint"}"#;
    let denied = r#"{"__type":"AccessDeniedException","message":"User: arn:aws:iam::123456789012:user/x is not authorized to perform: logs:PutLogEvents"}"#;
    {
        let mut st = proxy.state.lock().unwrap();
        st.inject.insert(("worker".into(), 2), (400, invalid.into()));
        st.inject.insert(("api".into(), 3), (400, denied.into()));
        st.inject.insert(("worker".into(), 3), (400, invalid.into()));
    }
    // First batch creates both streams.
    let both = |n: u64| {
        redacted((0..n).map(|i| record(if i % 2 == 0 { &api } else { &worker }, i, now, "e".into())).collect())
    };
    assert_eq!(sink.deliver(&both(4)).await.unwrap().accepted, 4);
    // Second: the worker call is refused for good, the api call still goes.
    let d = sink.deliver(&both(6)).await.expect("partly delivered");
    assert_eq!((d.accepted, d.rejected), (3, 3));
    assert_eq!(sink.stats().events_rejected.get(), 3);
    // Third: only api records, refused (access denied): the batch fails permanently.
    let only_api = redacted((0..2).map(|i| record(&api, i, now, "e".into())).collect());
    let err = sink.deliver(&only_api).await.unwrap_err();
    let DeliveryError::Permanent { reason } = &err else { panic!("not permanent: {err}") };
    assert!(reason.contains("AccessDeniedException") && reason.contains("HTTP 400"), "{reason}");
    assert!(reason.contains("/warden/perm") && reason.contains("\"api\""), "{reason}");
    assert!(!reason.contains("arn:aws") && !reason.contains("not authorized"), "{reason}");
    // Fourth: only worker records, refused as invalid; the reason quotes nothing.
    let only_worker = redacted((0..2).map(|i| record(&worker, i, now, "e".into())).collect());
    let err = sink.deliver(&only_worker).await.unwrap_err();
    let DeliveryError::Permanent { reason } = &err else { panic!("not permanent: {err}") };
    assert!(reason.contains("InvalidParameterException") && !reason.contains("jane.doe"), "{reason}");
    assert_eq!(proxy.outcomes("worker").iter().map(|o| o.0).collect::<Vec<_>>(), vec![400, 200, 400, 400]);
    assert_eq!(proxy.outcomes("api").iter().map(|o| o.0).collect::<Vec<_>>(), vec![400, 200, 200, 400]);

    // Without create_missing, a missing stream is a permanent error naming it.
    let mut c = config(&proxy.url, "/warden/perm", "absent");
    c.create_missing = false;
    let mut sink = self::sink(&c).await;
    let err = sink.deliver(&both(1)).await.unwrap_err();
    let DeliveryError::Permanent { reason } = &err else { panic!("not permanent: {err}") };
    assert!(reason.contains("ResourceNotFoundException") && reason.contains("\"absent\""), "{reason}");
    assert_eq!(sink.stats().streams_created.get(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_is_retried_with_backoff_without_resending_what_went() {
    let Some(moto) = start_moto("cloudwatch throttling") else { return };
    let proxy = Proxy::start(&moto.url).await;
    let reader = reader(&moto).await;
    let now = now_ms();
    let res = resource("api");

    // A batch cut into two requests whose second is throttled: the error is retryable,
    // names the code and status, and the retry sends only the second request.
    let mut sink = sink(&config(&proxy.url, "/warden/throttle", "direct")).await;
    // Attempt 0 finds no stream, 1 (after creating it) carries events 0–9,999, 2 the rest.
    proxy.state.lock().unwrap().throttle.insert(("direct".into(), 2));
    let batch = redacted((0..15_000u64).map(|i| record(&res, i, now - 15_000 + i as i64, "x".into())).collect());
    let err = sink.deliver(&batch).await.unwrap_err();
    let DeliveryError::Retryable { reason, .. } = &err else { panic!("not retryable: {err}") };
    assert!(reason.contains("ThrottlingException") && reason.contains("HTTP 400"), "{reason}");
    assert!(reason.contains("/warden/throttle") && !reason.contains("Rate exceeded"), "{reason}");
    let d = sink.deliver(&batch).await.expect("retry");
    assert_eq!((d.accepted, d.rejected), (15_000, 0));
    assert_eq!(proxy.outcomes("direct"), vec![(400, 10_000), (200, 10_000), (400, 5_000), (200, 5_000)]);
    let got = read_all(&reader, "/warden/throttle", "direct").await;
    assert_eq!(got.len(), 15_000, "no event sent twice");

    // Through the runner: the first three requests of the stream are throttled; the
    // runner backs off and everything arrives, in order.
    let sink = self::sink(&config(&proxy.url, "/warden/throttle", "runner")).await;
    // Attempt 0 finds no stream; 1–3 (the first batch, after creating the stream) are
    // throttled.
    proxy.state.lock().unwrap().throttle = (1..4).map(|i| ("runner".to_owned(), i)).collect();
    let dir = TempDir::new("cw_throttle");
    let shutdown = CancellationToken::new();
    let retry =
        RetryConfig { initial: Duration::from_millis(200), max: Duration::from_secs(2), ..RetryConfig::default() };
    let handle = runner::spawn(
        "cloudwatch",
        sink,
        &BufferConfig::Memory { max_events: 10_000, when_full: WhenFull::Block },
        &retry,
        dir.path(),
        shutdown.clone(),
    )
    .unwrap();
    for b in 0..3u64 {
        let logs =
            (0..1000u64).map(|i| record(&res, b * 1000 + i, now - 3000 + (b * 1000 + i) as i64, "y".into())).collect();
        handle.input.send(redacted(logs)).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.metrics.sent() < 3000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(handle.metrics.sent(), 3000);
    assert_eq!((handle.metrics.failed(), handle.metrics.retried(), handle.metrics.dropped()), (3, 3, 0));
    let puts: Vec<Put> = proxy.puts().into_iter().filter(|p| p.stream == "runner").collect();
    let statuses: Vec<(u16, bool)> = puts.iter().map(|p| (p.status, p.answered)).collect();
    assert_eq!(
        statuses,
        [(400, false), (400, true), (400, true), (400, true), (200, false), (200, false), (200, false)]
    );
    // Backoff: 200 ms ± 20 %, then 400 ms ± 20 %, then 800 ms ± 20 %.
    for (i, min_ms) in [(2, 160), (3, 320), (4, 640)] {
        let gap = puts[i].at - puts[i - 1].at;
        assert!(gap >= Duration::from_millis(min_ms), "retry {i} after {gap:?}");
    }
    shutdown.cancel();
    handle.join().await;
    let got: Vec<u64> = read_all(&reader, "/warden/throttle", "runner").await.iter().map(|(_, m)| seq_of(m)).collect();
    assert_eq!(got, (0..3000).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30s_outage_loses_nothing_through_the_disk_buffer() {
    const TOTAL: u64 = 100_000;
    const PER_BATCH: u64 = 500;
    let Some(moto) = start_moto("cloudwatch outage") else { return };
    let proxy = Proxy::start(&moto.url).await;
    let sink = sink(&config(&proxy.url, "/warden/outage", "{host.name}")).await;
    let stats = sink.stats();
    let dir = TempDir::new("cw_outage");
    let shutdown = CancellationToken::new();
    let retry =
        RetryConfig { initial: Duration::from_millis(200), max: Duration::from_secs(2), ..RetryConfig::default() };
    let handle = runner::spawn(
        "cloudwatch",
        sink,
        &BufferConfig::Disk { max_bytes: 256 << 20, when_full: WhenFull::Block, fsync: FsyncPolicy::Never },
        &retry,
        dir.path(),
        shutdown.clone(),
    )
    .unwrap();
    let res = resource("api");
    let start = now_ms();
    let began = Instant::now();
    let metrics = Arc::clone(&handle.metrics);
    let mut outage: Option<Instant> = None;
    // 200 batches at a steady ~13 batches/s; the backend goes away after a third of
    // them, for 30 s, while the rest keep coming.
    for b in 0..TOTAL / PER_BATCH {
        if b == TOTAL / PER_BATCH / 3 {
            assert!(metrics.sent() > 0, "records flowed before the outage");
            proxy.set_down(true);
            outage = Some(Instant::now());
        }
        let logs = (0..PER_BATCH)
            .map(|i| {
                let seq = b * PER_BATCH + i;
                record(&res, seq, start + (seq / 100) as i64, "GET /v1/observations 200".into())
            })
            .collect();
        handle.input.send(redacted(logs)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(75)).await;
    }
    let outage = outage.unwrap();
    tokio::time::sleep(Duration::from_secs(30).saturating_sub(outage.elapsed())).await;
    assert!(metrics.failed() > 0, "the outage was noticed");
    assert!(metrics.sent() < TOTAL, "records were held back by the outage");
    proxy.set_down(false);
    let up = Instant::now();
    let deadline = Instant::now() + Duration::from_secs(120);
    while metrics.sent() < TOTAL && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained = up.elapsed();
    assert_eq!(metrics.dropped(), 0);
    assert_eq!(metrics.sent(), TOTAL);
    shutdown.cancel();
    handle.join().await;

    let got = read_all(&reader(&moto).await, "/warden/outage", "node-1").await;
    let mut seen = HashSet::new();
    let mut duplicates = 0u64;
    for (_, m) in &got {
        if !seen.insert(seq_of(m)) {
            duplicates += 1;
        }
    }
    assert_eq!(seen.len() as u64, TOTAL, "distinct records delivered");
    assert!((0..TOTAL).all(|s| seen.contains(&s)));
    // A request cut off after moto took it is sent again: at most one request per
    // connection cut (the proxy cut them once).
    assert!(duplicates <= PER_BATCH, "{duplicates} duplicates");
    assert_within_limits(&proxy.puts());
    eprintln!(
        "outage test: {TOTAL} records, {duplicates} duplicates, {} failed attempts ({} request errors), {} \
         requests, drained {drained:.1?} after the outage, {:.1?} in all",
        metrics.failed(),
        stats.request_errors.get(),
        proxy.puts().len(),
        began.elapsed()
    );
}
