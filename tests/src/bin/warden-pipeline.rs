//! `warden-pipeline`: a test and benchmark harness that runs one collector pipeline,
//! file tail → bounded channel → redactor → fan-out → buffered sink runners, from a small
//! config file. It stands in for `warden run` until the agent daemon wires pipelines
//! itself (issue 8); the crash test (`tests/tests/pipeline_crash.rs`) and
//! `bench/pipeline` drive it.
//!
//! ```text
//! warden-pipeline --config pipeline.yaml [--stats stats.json] [--exit-after-idle 2s]
//! ```
//!
//! The config (YAML; JSON is YAML too):
//!
//! ```yaml
//! data_dir: /var/lib/warden         # checkpoints and disk buffers (required)
//! source:                           # the file-tail source (sources::file::Config)
//!   include: [/var/log/app/*.log]
//! redact: true                      # false: a redactor with every detector off
//! redaction: {}                     # the redaction config (redact::Config), default all on
//! channel_capacity: 8               # batches between the source and the redactor
//! workers: 1                        # Tokio worker threads
//! shutdown_grace: 10s               # how long sinks get to drain at shutdown
//! sinks:
//!   - name: out
//!     signals: [logs]               # default: every signal
//!     buffer: { type: disk }        # sinks::buffer::BufferConfig, default memory
//!     retry: { initial: 100ms }     # sinks::RetryConfig
//!     file: { path: /tmp/out.jsonl }  # sinks::file::FileSinkConfig
//! ```
//!
//! Shutdown (SIGTERM, SIGINT, or `--exit-after-idle` once nothing has moved for that
//! long and every buffer is empty): the source is cancelled first (it waits up to 2 s
//! for outstanding acknowledgements and saves its checkpoints); the redactor stage
//! drains the channel into the fan-out; the sinks get `shutdown_grace` to empty their
//! buffers; then the runners are stopped and joined. Whatever is not delivered by then
//! is not lost: a memory-buffered batch was never acknowledged, so the source re-reads
//! it at the next start, and a disk buffer keeps it on disk.
//!
//! On exit the counters are written as one JSON object to `--stats` (atomically) or
//! stdout: `seconds` (start to the last progress seen, i.e. without the idle wait),
//! `wall_seconds`, `source` (the file source's counters), `sinks.<name>` (the runner's
//! metrics), `redactions` (items the redactor changed or dropped, by count only) and
//! `clean` (every sink drained within the grace). Nothing printed carries data: log
//! lines name components, paths and counts only. Exit codes: 0, 64 for an invalid
//! config or usage, 1 when the pipeline could not start.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use warden_collector::pipeline::{self, CancellationToken, ComponentStats, SourceContext};
use warden_collector::redact::{self, Detector, Redactor};
use warden_collector::sinks::buffer::BufferConfig;
use warden_collector::sinks::fanout::Fanout;
use warden_collector::sinks::file::{FileSink, FileSinkConfig};
use warden_collector::sinks::runner::{self, SinkHandle, SinkMetrics};
use warden_collector::sinks::{RetryConfig, SignalSet};
use warden_collector::sources::file;

const USAGE: &str = "usage: warden-pipeline --config FILE [--stats FILE] [--exit-after-idle DURATION]";
/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;
/// How often the idle check and progress tracking look at the counters.
const TICK: Duration = Duration::from_millis(50);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    data_dir: PathBuf,
    source: file::Config,
    #[serde(default = "yes")]
    redact: bool,
    #[serde(default)]
    redaction: redact::Config,
    #[serde(default = "default_channel_capacity")]
    channel_capacity: usize,
    #[serde(default = "default_workers")]
    workers: usize,
    #[serde(default = "default_grace", deserialize_with = "pipeline::duration::deserialize")]
    shutdown_grace: Duration,
    sinks: Vec<SinkEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SinkEntry {
    name: String,
    #[serde(default)]
    signals: Option<SignalSet>,
    #[serde(default)]
    buffer: BufferConfig,
    #[serde(default)]
    retry: RetryConfig,
    file: FileSinkConfig,
}

fn yes() -> bool {
    true
}

fn default_channel_capacity() -> usize {
    8
}

fn default_workers() -> usize {
    1
}

fn default_grace() -> Duration {
    Duration::from_secs(10)
}

impl Config {
    /// Every problem, each with its field path.
    fn validate(&self) -> Vec<String> {
        let mut errors = Vec::new();
        if !self.data_dir.is_absolute() {
            errors.push("data_dir: must be an absolute path".to_string());
        }
        if let Err(e) = self.source.validate() {
            errors.extend(e.into_iter().map(|e| format!("source.{e}")));
        }
        if self.redact
            && let Err(e) = self.redaction.validate()
        {
            errors.extend(e.into_iter().map(|e| format!("redaction.{e}")));
        }
        if !(1..=1024).contains(&self.channel_capacity) {
            errors.push("channel_capacity: must be between 1 and 1024".to_string());
        }
        if !(1..=64).contains(&self.workers) {
            errors.push("workers: must be between 1 and 64".to_string());
        }
        if self.shutdown_grace > Duration::from_secs(600) {
            errors.push("shutdown_grace: must be at most 10m".to_string());
        }
        if self.sinks.is_empty() {
            errors.push("sinks: must list at least one sink".to_string());
        }
        for (i, s) in self.sinks.iter().enumerate() {
            if s.name.is_empty() {
                errors.push(format!("sinks[{i}].name: must not be empty"));
            }
            if self.sinks[..i].iter().any(|o| o.name == s.name) {
                errors.push(format!("sinks[{i}].name: {:?} is used by an earlier sink", s.name));
            }
            if let Err(e) = s.file.validate() {
                errors.extend(e.into_iter().map(|e| format!("sinks[{i}].file.{e}")));
            }
            s.buffer.validate(&format!("sinks[{i}].buffer"), &mut errors);
            if s.retry.multiplier < 1.0 || s.retry.initial.is_zero() || s.retry.max < s.retry.initial {
                errors.push(format!("sinks[{i}].retry: need initial > 0, max >= initial and multiplier >= 1"));
            }
        }
        errors
    }
}

struct Args {
    config: PathBuf,
    stats: Option<PathBuf>,
    exit_after_idle: Option<Duration>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut config, mut stats, mut idle) = (None, None, None);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--config" => config = Some(PathBuf::from(value()?)),
            "--stats" => stats = Some(PathBuf::from(value()?)),
            "--exit-after-idle" => {
                let v = value()?;
                idle = Some(humantime::parse_duration(&v).map_err(|e| format!("--exit-after-idle {v:?}: {e}"))?);
            }
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args { config: config.ok_or("--config is required")?, stats, exit_after_idle: idle })
}

fn load(path: &Path) -> Result<Config, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(format!("{}: config is larger than {MAX_CONFIG_BYTES} bytes", path.display()));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut o = serde_saphyr::Options::default();
    o.with_snippet = false;
    let config: Config = serde_saphyr::from_str_with_options(&text, o)
        .map_err(|e| format!("{}: {}", path.display(), e.without_snippet()))?;
    let errors = config.validate();
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(format!("{}: invalid config:\n  {}", path.display(), errors.join("\n  ")))
    }
}

/// A redactor that changes nothing: every detector and key rule off (`redact: false`).
/// Batches still pass through it, since only the redactor can mark them `Redacted`.
fn passthrough() -> Result<Redactor, redact::BuildError> {
    let mut c = redact::Config::default();
    for d in Detector::ALL {
        c.detectors.get_mut(d).enabled = false;
    }
    c.keys.defaults = false;
    Redactor::new(&c)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("warden-pipeline: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(64);
        }
    };
    let config = match load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("warden-pipeline: {e}");
            return ExitCode::from(64);
        }
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(false).init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(config.workers).enable_all().build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warden-pipeline: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(config, args.exit_after_idle)) {
        Ok(stats) => {
            let text = stats.to_string();
            let written = match &args.stats {
                Some(p) => write_atomically(p, text.as_bytes()),
                None => {
                    println!("{text}");
                    Ok(())
                }
            };
            if let Err(e) = written {
                eprintln!("warden-pipeline: cannot write stats: {e}");
                return ExitCode::from(1);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warden-pipeline: {e}");
            ExitCode::from(1)
        }
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}

/// Builds and runs the pipeline until a signal (or idleness), then shuts it down in
/// order; returns the counters.
async fn run(config: Config, exit_after_idle: Option<Duration>) -> Result<serde_json::Value, String> {
    let start = Instant::now();
    let redactor = if config.redact { Redactor::new(&config.redaction) } else { passthrough() }
        .map_err(|e| format!("redaction: {e}"))?;
    let redactions = redactor.counters();

    // Sinks first, so nothing is read before there is somewhere to put it.
    let sinks_shutdown = CancellationToken::new();
    let mut handles: Vec<SinkHandle> = Vec::new();
    let mut routes = Vec::new();
    for s in &config.sinks {
        let sink = FileSink::new(s.file.clone()).map_err(|e| format!("sink {}: {e}", s.name))?;
        let handle = runner::spawn(&s.name, sink, &s.buffer, &s.retry, &config.data_dir, sinks_shutdown.child_token())
            .map_err(|e| format!("sink {}: {e}", s.name))?;
        routes.push((s.signals.unwrap_or(SignalSet::ALL), handle.input.clone()));
        handles.push(handle);
    }
    let metrics: Vec<Arc<SinkMetrics>> = handles.iter().map(|h| Arc::clone(&h.metrics)).collect();
    let fanout = Fanout::new(routes);

    let (tx, mut rx) = pipeline::channel(config.channel_capacity);
    let source_stats = ComponentStats::new("source", "file");
    let source_shutdown = CancellationToken::new();
    let ctx = SourceContext {
        out: tx,
        stats: Arc::clone(&source_stats),
        shutdown: source_shutdown.clone(),
        data_dir: config.data_dir.clone(),
    };
    let source = tokio::spawn(config.source.run(ctx));
    let stage = tokio::spawn(async move {
        // Ends when the source has returned and dropped its sender and the channel is
        // drained; the fan-out (and with it every SinkInput clone) is dropped then.
        while let Some(batch) = rx.recv().await {
            fanout.send(redactor.apply(batch)).await;
        }
    });

    // Wait for a signal or idleness, tracking the last time anything moved.
    let progress = || {
        let mut sig = vec![source_stats.received.get(), source_stats.emitted.get()];
        for m in &metrics {
            sig.extend([m.sent(), m.dropped(), m.failed(), m.buffer_events()]);
        }
        sig
    };
    let idle_ok = || metrics.iter().all(|m| m.buffer_events() == 0);
    let mut last = progress();
    let mut last_progress = start;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("cannot listen for SIGTERM: {e}"))?;
    let mut tick = tokio::time::interval(TICK);
    let reason = loop {
        tokio::select! {
            _ = term.recv() => break "SIGTERM",
            _ = tokio::signal::ctrl_c() => break "SIGINT",
            _ = tick.tick() => {
                let now = progress();
                if now != last {
                    last = now;
                    last_progress = Instant::now();
                } else if let Some(idle) = exit_after_idle
                    && last_progress.elapsed() >= idle
                    && idle_ok()
                {
                    break "idle";
                }
            }
        }
    };
    tracing::info!(reason, "shutting down");

    // 1. The source stops reading, waits briefly for acknowledgements, saves checkpoints.
    source_shutdown.cancel();
    let deadline = Instant::now() + config.shutdown_grace;
    if tokio::time::timeout_at(deadline.into(), source).await.is_err() {
        tracing::warn!("source did not stop within the grace period");
    }
    // 2. The stage drains the channel into the fan-out.
    let _ = tokio::time::timeout_at(deadline.into(), stage).await;
    // 3. The sinks empty their buffers (a disk buffer keeps what it cannot deliver).
    let mut clean = false;
    while Instant::now() < deadline {
        if idle_ok() {
            clean = true;
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    if !clean {
        tracing::warn!("sinks did not drain within the grace period; undelivered batches are re-read or stay buffered");
    }
    // 4. The runners stop and close their sinks.
    sinks_shutdown.cancel();
    for h in handles {
        h.join().await;
    }

    let seconds = last_progress.duration_since(start).as_secs_f64();
    let extra = ["batches_failed", "lines_truncated", "invalid_utf8", "json_parse_errors", "files_rotated"];
    let mut source_json = serde_json::json!({
        "received": source_stats.received.get(),
        "emitted": source_stats.emitted.get(),
        "dropped": source_stats.dropped.get(),
        "errors": source_stats.errors.get(),
    });
    for name in extra {
        source_json[name] = source_stats.counter(name).get().into();
    }
    let mut sinks_json = serde_json::Map::new();
    for m in &metrics {
        sinks_json.insert(
            m.name().to_string(),
            serde_json::json!({
                "sent": m.sent(),
                "failed": m.failed(),
                "retried": m.retried(),
                "rejected": m.rejected(),
                "dropped": m.dropped(),
                "buffer_events": m.buffer_events(),
                "buffer_bytes": m.buffer_bytes(),
                "corrupt_segments": m.corrupt_segments(),
            }),
        );
    }
    let redacted_items: u64 = Detector::ALL
        .iter()
        .flat_map(|&d| redact::Action::ALL.iter().map(move |&a| (d, a)))
        .map(|(d, a)| redactions.get(d, a))
        .sum();
    Ok(serde_json::json!({
        "seconds": seconds,
        "wall_seconds": start.elapsed().as_secs_f64(),
        "reason": reason,
        "clean": clean,
        "source": source_json,
        "sinks": sinks_json,
        "redactions": redacted_items,
    }))
}
