//! Disk buffer throughput through the public API (`runner::spawn` with a disk buffer).
//!
//! Workload: batches of 1,000 log records, each a ~200-byte text body, three attributes
//! and one shared resource (service, host, pod) — what the file tailer produces.
//!
//! - `disk_write/<policy>`: 40 batches sent through `SinkInput::send`, timed until every
//!   batch's acknowledgement has fired (written, and fsynced under `always`), while the
//!   sink holds its first batch so the reader does not compete. Throughput is in bytes of
//!   encoded records (record headers + postcard payload, i.e. the segment bytes written),
//!   and in log records.
//! - `disk_read_deliver`: 40 batches written beforehand (untimed), then timed from
//!   opening the buffer until a no-op sink has been handed every record (read, CRC
//!   check, decode, deliver, position update, segment deletion).
//!
//! The buffer lives under `$WARDEN_BENCH_DIR` (default: the system temp dir), so the
//! figures are those of that file system. Run with
//! `cargo bench -p warden-collector --bench buffer`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use warden_collector::ack::AckToken;
use warden_collector::redact::{Redacted, Redactor};
use warden_collector::signal::{AnyValue, Batch, KeyValue, LogRecord, Resource, SeverityNumber};
use warden_collector::sinks::buffer::{BufferConfig, FsyncPolicy, WhenFull};
use warden_collector::sinks::runner::{self, SinkHandle};
use warden_collector::sinks::{Delivered, DeliveryError, RetryConfig, Sink};

const RECORDS: usize = 1000;
const BATCHES: usize = 40;

fn batch(redactor: &Redactor, n: usize) -> Redacted<Batch> {
    let resource = Arc::new(Resource {
        attributes: vec![
            KeyValue::string("service.name", "platform-api"),
            KeyValue::string("host.name", "ip-10-0-3-17.ec2.internal"),
            KeyValue::string("k8s.pod.name", "platform-api-7d9f8c6b5d-x2x7q"),
        ],
        schema_url: String::new(),
    });
    let logs = (0..RECORDS)
        .map(|i| {
            let mut body = format!(
                "2024-05-01T10:{:02}:{:02}.{:03}Z INFO [req-{i:06}] GET /v1/records/{} status=200 duration_ms={} \
                 bytes={} worker=pool-{} cache=hit upstream=db-primary ",
                i / 60 % 60,
                i % 60,
                i % 1000,
                (n * RECORDS + i) % 99_991,
                i % 250,
                i * 31 % 9000,
                i % 8
            );
            while body.len() < 200 {
                body.push('.');
            }
            LogRecord {
                time_unix_nano: 1_714_557_600_000_000_000 + i as u64,
                observed_time_unix_nano: 1_714_557_600_000_000_000 + i as u64,
                severity_number: SeverityNumber::INFO,
                severity_text: "INFO".into(),
                body: AnyValue::Str(body),
                attributes: vec![
                    KeyValue::string("log.file.path", "/var/log/platform/api.log"),
                    KeyValue::string("log.file.name", "api.log"),
                    KeyValue { key: "log.iostream".into(), value: AnyValue::from("stdout") },
                ],
                resource: Arc::clone(&resource),
                ..LogRecord::default()
            }
        })
        .collect();
    redactor.apply(Batch::logs(logs))
}

/// Holds deliveries until released (so the reader stays out of the write benchmark), or
/// delivers at once.
struct BenchSink {
    gate: Option<Arc<Semaphore>>,
    items: Arc<AtomicU64>,
}

impl Sink for BenchSink {
    async fn deliver(&mut self, batch: &Redacted<Batch>) -> Result<Delivered, DeliveryError> {
        if let Some(g) = &self.gate
            && g.acquire().await.is_err()
        {
            // Closed at the end of a write run: leave the batch in the buffer.
            return Err(DeliveryError::retryable("closed"));
        }
        let n = batch.get().len() as u64;
        self.items.fetch_add(n, Ordering::Relaxed);
        Ok(Delivered { accepted: n, rejected: 0 })
    }
}

fn bench_dir() -> PathBuf {
    let base = std::env::var_os("WARDEN_BENCH_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    base.join(format!("warden-buffer-bench-{}", std::process::id()))
}

fn cfg(fsync: FsyncPolicy) -> BufferConfig {
    BufferConfig::Disk { max_bytes: 4 * 1024 * 1024 * 1024, when_full: WhenFull::Block, fsync }
}

fn start(
    dir: &Path,
    fsync: FsyncPolicy,
    gate: Option<Arc<Semaphore>>,
) -> (SinkHandle, CancellationToken, Arc<AtomicU64>) {
    let shutdown = CancellationToken::new();
    let items = Arc::new(AtomicU64::new(0));
    let sink = BenchSink { gate, items: Arc::clone(&items) };
    let h = runner::spawn("bench", sink, &cfg(fsync), &RetryConfig::default(), dir, shutdown.clone()).unwrap();
    (h, shutdown, items)
}

/// Writes `batches` and waits for every acknowledgement; returns the time taken and the
/// bytes the buffer holds afterwards.
async fn write_all(dir: &Path, fsync: FsyncPolicy, batches: Vec<Redacted<Batch>>) -> (Duration, u64) {
    let gate = Arc::new(Semaphore::new(0));
    let (h, shutdown, _) = start(dir, fsync, Some(Arc::clone(&gate)));
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(BATCHES);
    let n = batches.len();
    let started = Instant::now();
    for mut b in batches {
        let tx = tx.clone();
        b.set_ack(Some(AckToken::new(move |_| {
            let _ = tx.try_send(());
        })));
        h.input.send(b).await.unwrap();
    }
    for _ in 0..n {
        rx.recv().await.unwrap();
    }
    let elapsed = started.elapsed();
    let bytes = h.metrics.buffer_bytes();
    shutdown.cancel();
    gate.close();
    h.join().await;
    (elapsed, bytes)
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let redactor = Redactor::default_mask();
    let originals: Vec<Redacted<Batch>> = (0..BATCHES).map(|n| batch(&redactor, n)).collect();
    let copies = || originals.iter().map(Redacted::share).collect::<Vec<_>>();
    let root = bench_dir();
    let _ = std::fs::remove_dir_all(&root);

    // Bytes of encoded records per iteration (segment bytes minus segment headers).
    let probe = root.join("probe");
    let (_, bytes) = rt.block_on(write_all(&probe, FsyncPolicy::Never, copies()));
    let segments = bytes.div_ceil(32 * 1024 * 1024);
    let record_bytes = bytes - segments * 16;
    let _ = std::fs::remove_dir_all(&probe);
    eprintln!(
        "buffer bench: {BATCHES} batches x {RECORDS} records = {record_bytes} bytes of encoded records ({} B/record)",
        record_bytes / (BATCHES * RECORDS) as u64
    );

    let mut g = c.benchmark_group("disk_write");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Bytes(record_bytes));
    for (label, policy) in [("never", FsyncPolicy::Never), ("always_default", FsyncPolicy::Always)] {
        let mut run = 0u64;
        g.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    run += 1;
                    let dir = root.join(format!("w-{label}-{run}"));
                    let input = copies();
                    total += rt.block_on(write_all(&dir, policy, input)).0;
                    let _ = std::fs::remove_dir_all(&dir);
                }
                total
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("disk_read_deliver");
    g.sample_size(10).measurement_time(Duration::from_secs(10));
    g.throughput(Throughput::Elements((BATCHES * RECORDS) as u64));
    let mut run = 0u64;
    g.bench_function("noop_sink", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                run += 1;
                let dir = root.join(format!("r-{run}"));
                rt.block_on(write_all(&dir, FsyncPolicy::Never, copies()));
                total += rt.block_on(async {
                    let started = Instant::now();
                    let (h, shutdown, items) = start(&dir, FsyncPolicy::Never, None);
                    while items.load(Ordering::Relaxed) < (BATCHES * RECORDS) as u64 {
                        tokio::time::sleep(Duration::from_micros(200)).await;
                    }
                    let elapsed = started.elapsed();
                    shutdown.cancel();
                    h.join().await;
                    elapsed
                });
                let _ = std::fs::remove_dir_all(&dir);
            }
            total
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&root);
}

criterion_group!(buffer, benches);
criterion_main!(buffer);
