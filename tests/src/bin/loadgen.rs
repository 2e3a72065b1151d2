//! `loadgen`: an HTTP/1.1 load generator for the benchmarks under `bench/`.
//!
//! Closed loop (`--rate 0`): each connection sends its next request as soon as the last
//! answer arrives, measuring the most the server can do. Open loop (`--rate R`): requests
//! are scheduled at R per second across the connections and latency is measured from each
//! request's scheduled start, so a stalled server is charged for the requests it delayed
//! (no coordinated omission, as wrk2 does it).
//!
//! Prints one JSON object: requests, non-2xx responses, transport errors, achieved rate and
//! latency percentiles in milliseconds.

use clap::Parser;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// HTTP/1.1 load generator.
#[derive(Debug, Parser)]
struct Args {
    /// Base URL, e.g. http://127.0.0.1:8080 (plain HTTP only).
    #[arg(long)]
    url: String,
    /// Paths to request, taken in turn; a file with one path per line via `@FILE`.
    #[arg(long, required = true)]
    path: Vec<String>,
    /// HTTP method.
    #[arg(long, default_value = "GET")]
    method: String,
    /// Request body (sent with content-type application/json).
    #[arg(long)]
    body: Option<String>,
    /// Extra header `Name: value` (repeatable).
    #[arg(long)]
    header: Vec<String>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Measured duration in seconds.
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Warm-up seconds before measuring.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Requests per second in total (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Label copied into the output.
    #[arg(long, default_value = "")]
    label: String,
}

struct Shared {
    host: String,
    paths: Vec<String>,
    method: hyper::Method,
    body: Option<Bytes>,
    headers: Vec<(hyper::header::HeaderName, hyper::header::HeaderValue)>,
}

#[derive(Default)]
struct Tally {
    hist: Option<Histogram<u64>>,
    ok: u64,
    non_2xx: u64,
    errors: u64,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> anyhow::Result<()> {
    let authority = args
        .url
        .strip_prefix("http://")
        .ok_or_else(|| anyhow::anyhow!("--url must start with http://"))?
        .trim_end_matches('/')
        .to_owned();
    let mut paths = Vec::new();
    for p in &args.path {
        match p.strip_prefix('@') {
            Some(file) => {
                paths.extend(std::fs::read_to_string(file)?.lines().filter(|l| !l.is_empty()).map(String::from))
            }
            None => paths.push(p.clone()),
        }
    }
    anyhow::ensure!(!paths.is_empty(), "no paths to request");
    let mut headers = Vec::new();
    for h in &args.header {
        let (name, value) = h.split_once(':').ok_or_else(|| anyhow::anyhow!("header `{h}` must be `Name: value`"))?;
        headers.push((name.trim().parse()?, value.trim().parse()?));
    }
    let shared = Arc::new(Shared {
        host: authority.clone(),
        paths,
        method: args.method.parse()?,
        body: args.body.clone().map(Bytes::from),
        headers,
    });
    let warmup = Duration::from_secs_f64(args.warmup);
    let measure = Duration::from_secs_f64(args.duration);
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + warmup;
    let end = measure_from + measure;
    let interval = (args.rate > 0.0).then(|| Duration::from_secs_f64(args.connections as f64 / args.rate));
    let mut tasks = Vec::new();
    for conn in 0..args.connections {
        let shared = shared.clone();
        let authority = authority.clone();
        // Stagger open-loop connections so their schedules interleave evenly.
        let offset = interval.map(|i| i.mul_f64(conn as f64 / args.connections as f64)).unwrap_or_default();
        tasks.push(tokio::spawn(async move {
            connection(shared, authority, conn, start + offset, measure_from, end, interval).await
        }));
    }
    let mut total = Tally { hist: Some(Histogram::new(3)?), ..Default::default() };
    for t in tasks {
        let t = t.await?;
        total.ok += t.ok;
        total.non_2xx += t.non_2xx;
        total.errors += t.errors;
        if let (Some(h), Some(th)) = (total.hist.as_mut(), t.hist.as_ref()) {
            h.add(th)?;
        }
    }
    let h = total.hist.unwrap();
    let ms = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
    let requests = total.ok + total.non_2xx;
    let out = serde_json::json!({
        "label": args.label,
        "connections": args.connections,
        "target_rate": args.rate,
        "duration_s": args.duration,
        "requests": requests,
        "non_2xx": total.non_2xx,
        "errors": total.errors,
        "rps": requests as f64 / measure.as_secs_f64(),
        "p50_ms": ms(0.50),
        "p90_ms": ms(0.90),
        "p99_ms": ms(0.99),
        "p999_ms": ms(0.999),
        "max_ms": h.max() as f64 / 1000.0,
    });
    use std::io::Write as _;
    writeln!(std::io::stdout(), "{out}")?;
    Ok(())
}

async fn connection(
    shared: Arc<Shared>,
    authority: String,
    index: usize,
    start: Instant,
    measure_from: Instant,
    end: Instant,
    interval: Option<Duration>,
) -> Tally {
    let mut tally =
        Tally { hist: Some(Histogram::new(3).expect("3 significant figures is valid")), ..Default::default() };
    let mut sender = None;
    let mut next = start;
    let mut i = index;
    tokio::time::sleep_until(start.into()).await;
    loop {
        let scheduled = match interval {
            Some(iv) => {
                let at = next;
                next += iv;
                if at > Instant::now() {
                    tokio::time::sleep_until(at.into()).await;
                }
                at
            }
            None => Instant::now(),
        };
        if scheduled >= end {
            break;
        }
        if sender.is_none() {
            match connect(&authority).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let path = &shared.paths[i % shared.paths.len()];
        i += 1;
        let mut req =
            hyper::Request::builder().method(shared.method.clone()).uri(path.as_str()).header("host", &shared.host);
        for (k, v) in &shared.headers {
            req = req.header(k, v);
        }
        let body = match &shared.body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Full::new(b.clone())
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).expect("request parts are valid");
        let s = sender.as_mut().expect("connected above");
        let result = tokio::time::timeout(Duration::from_secs(30), async {
            let resp = s.send_request(req).await?;
            let status = resp.status();
            resp.into_body().collect().await?;
            Ok::<_, hyper::Error>(status)
        })
        .await;
        let done = Instant::now();
        let measured = scheduled >= measure_from;
        match result {
            Ok(Ok(status)) => {
                if measured {
                    if status.is_success() {
                        tally.ok += 1;
                    } else {
                        tally.non_2xx += 1;
                    }
                    let us = done.duration_since(scheduled).as_micros() as u64;
                    let _ = tally.hist.as_mut().expect("set above").record(us.max(1));
                }
            }
            _ => {
                if measured {
                    tally.errors += 1;
                }
                sender = None;
            }
        }
    }
    tally
}

async fn connect(authority: &str) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(authority).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}
