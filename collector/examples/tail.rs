//! Runs the file-tail source over a glob with a counting consumer (which acknowledges
//! every batch) and exits once no new line has arrived for `--idle-ms`; prints lines,
//! bytes, seconds, lines/s and MB/s. Used by `bench/file-tail`.
//!
//! ```text
//! tail '<glob>' [--idle-ms 1000] [--format auto|json|text] [--workers 1]
//! tail --generate <path> --size-mb <N>     # N MiB of 200-byte log lines
//! ```
//!
//! Checkpoints go to a temporary data directory that is removed at exit, so every run
//! reads the files from the start. Seconds are measured from the start of the source to
//! the last line received (the idle wait is not counted).

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use warden_collector::pipeline::{SourceContext, channel};
use warden_collector::signal::AnyValue;
use warden_collector::sources::file::{Config, Format};

const USAGE: &str = "usage: tail '<glob>' [--idle-ms N] [--format auto|json|text] [--workers N]\n       \
                     tail --generate <path> --size-mb <N>";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result =
        if args.first().map(String::as_str) == Some("--generate") { generate(&args[1..]) } else { tail(&args) };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tail: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).map(String::as_str)
}

/// Writes `--size-mb` MiB of 200-byte lines (199 characters and a newline) to `path`.
fn generate(args: &[String]) -> Result<(), String> {
    let path = args.first().ok_or("--generate needs a path")?;
    let mb: u64 = flag(args, "--size-mb").ok_or("--size-mb is required")?.parse().map_err(|_| "bad --size-mb")?;
    let total = mb << 20;
    let file = std::fs::File::create(path).map_err(|e| format!("cannot create {path}: {e}"))?;
    let mut out = std::io::BufWriter::with_capacity(4 << 20, file);
    let levels = ["INFO", "WARN", "ERROR", "DEBUG"];
    let mut line = String::with_capacity(256);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < total {
        line.clear();
        use std::fmt::Write as _;
        let _ = write!(
            line,
            "2024-05-01T10:{:02}:{:02}.{:03}Z {} [req-{:08}] GET /v1/patients/{:06}/records status=200 duration_ms={} ",
            i / 60_000 % 60,
            i / 1000 % 60,
            i % 1000,
            levels[(i % 4) as usize],
            i,
            i * 7 % 1_000_000,
            i % 250
        );
        while line.len() < 199 {
            line.push('x');
        }
        line.truncate(199);
        line.push('\n');
        out.write_all(line.as_bytes()).map_err(|e| format!("write {path}: {e}"))?;
        written += line.len() as u64;
        i += 1;
    }
    out.flush().map_err(|e| format!("write {path}: {e}"))?;
    println!("generated {path}: {i} lines, {written} bytes");
    Ok(())
}

fn tail(args: &[String]) -> Result<(), String> {
    let glob = args.first().filter(|a| !a.starts_with("--")).ok_or("a glob is required")?.clone();
    let idle = Duration::from_millis(flag(args, "--idle-ms").unwrap_or("1000").parse().map_err(|_| "bad --idle-ms")?);
    let workers: usize = flag(args, "--workers").unwrap_or("1").parse().map_err(|_| "bad --workers")?;
    let format = match flag(args, "--format").unwrap_or("auto") {
        "auto" => Format::Auto,
        "json" => Format::Json,
        "text" => Format::Text,
        other => return Err(format!("unknown format {other:?}")),
    };
    let mut config = Config::new([glob]);
    config.format = format;
    config.validate().map_err(|e| e.join("; "))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))?;
    rt.block_on(run(config, idle))
}

async fn run(config: Config, idle: Duration) -> Result<(), String> {
    let data_dir = std::env::temp_dir().join(format!("warden-tail-example-{}", std::process::id()));
    let (tx, mut rx) = channel(64);
    let ctx = SourceContext::new("file/tail-example", tx, data_dir.clone());
    let shutdown = ctx.shutdown.clone();
    let stats = Arc::clone(&ctx.stats);
    let lines = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let last = Arc::new(std::sync::Mutex::new(start));
    let (l, b, t) = (Arc::clone(&lines), Arc::clone(&bytes), Arc::clone(&last));
    let consumer = tokio::spawn(async move {
        while let Some(mut batch) = rx.recv().await {
            let mut n = 0u64;
            for r in &batch.logs {
                n += match &r.body {
                    AnyValue::Str(s) => s.len() as u64 + 1,
                    _ => 1,
                };
            }
            l.fetch_add(batch.logs.len() as u64, Ordering::Relaxed);
            b.fetch_add(n, Ordering::Relaxed);
            *t.lock().unwrap() = Instant::now();
            if let Some(ack) = batch.ack.take() {
                ack.done();
            }
        }
    });
    let source = tokio::spawn(config.run(ctx));
    let mut seen = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now_lines = lines.load(Ordering::Relaxed);
        if now_lines != seen {
            seen = now_lines;
            continue;
        }
        let quiet_since = *last.lock().unwrap();
        if quiet_since.elapsed() >= idle {
            break;
        }
    }
    shutdown.cancel();
    let _ = source.await;
    let _ = consumer.await;
    let _ = std::fs::remove_dir_all(&data_dir);
    let secs = last.lock().unwrap().duration_since(start).as_secs_f64().max(1e-9);
    let (n, nb) = (lines.load(Ordering::Relaxed), bytes.load(Ordering::Relaxed));
    println!("lines: {n}");
    println!("bytes: {nb}");
    println!("seconds: {secs:.3}");
    println!("lines_per_sec: {:.0}", n as f64 / secs);
    println!("mb_per_sec: {:.1}", nb as f64 / secs / (1 << 20) as f64);
    println!("source_errors: {}", stats.errors.get());
    Ok(())
}
