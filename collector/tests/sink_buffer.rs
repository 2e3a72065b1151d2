//! Sink buffers, the sink runner and fan-out, driven through their public API with a
//! small scriptable test sink (the real sinks are tested against real backends in their
//! own test files). Disk buffers are exercised on the real file system: restarts, a real
//! `kill -9` of a child process, torn tails, corrupt segments, `max_bytes` and a real
//! full file system (a 2 MiB tmpfs, when the test may mount one).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use warden_collector::ack::{AckOutcome, AckToken};
use warden_collector::redact::{Redacted, Redactor};
use warden_collector::signal::{AnyValue, Batch, KeyValue, Label, LogRecord, MetricKind, MetricPoint, Resource};
use warden_collector::sinks::buffer::{BufferConfig, BufferError, FsyncPolicy, WhenFull};
use warden_collector::sinks::fanout::Fanout;
use warden_collector::sinks::runner::{self, DropReason, SinkHandle};
use warden_collector::sinks::{Delivered, DeliveryError, RetryConfig, SignalSet, Sink};
use warden_testkit::TempDir;

// ---------------------------------------------------------------------------------------
// Test sink and helpers

#[derive(Default)]
struct Ctl {
    /// Sequence numbers of each delivered batch, in delivery order.
    delivered: Vec<Vec<u64>>,
    attempts: u64,
    /// Results for the next attempts, in order; then `fail_forever`, then success.
    script: VecDeque<Result<Delivered, DeliveryError>>,
    fail_forever: Option<DeliveryError>,
    /// Deliver this many more batches, then fail (retryable) forever.
    ok_budget: Option<u64>,
    closed: bool,
    attempt_times: Vec<Instant>,
}

/// A sink that records what it delivers and can be told to fail or to hold deliveries.
#[derive(Clone)]
struct TestSink {
    ctl: Arc<Mutex<Ctl>>,
    /// When set, each attempt takes one permit first (tests hand them out).
    gate: Option<Arc<Semaphore>>,
}

impl TestSink {
    fn new() -> TestSink {
        TestSink { ctl: Arc::default(), gate: None }
    }

    fn gated() -> (TestSink, Arc<Semaphore>) {
        let gate = Arc::new(Semaphore::new(0));
        (TestSink { ctl: Arc::default(), gate: Some(Arc::clone(&gate)) }, gate)
    }

    fn failing_forever() -> TestSink {
        let s = TestSink::new();
        s.ctl.lock().unwrap().fail_forever = Some(DeliveryError::retryable("backend down"));
        s
    }

    fn delivered(&self) -> Vec<Vec<u64>> {
        self.ctl.lock().unwrap().delivered.clone()
    }

    fn delivered_flat(&self) -> Vec<u64> {
        self.delivered().into_iter().flatten().collect()
    }

    fn attempts(&self) -> u64 {
        self.ctl.lock().unwrap().attempts
    }
}

fn seqs(batch: &Batch) -> Vec<u64> {
    let mut v: Vec<u64> = batch
        .logs
        .iter()
        .map(|l| match l.attributes.iter().find(|kv| kv.key == "seq").map(|kv| &kv.value) {
            Some(AnyValue::Int(n)) => *n as u64,
            _ => panic!("log without seq"),
        })
        .collect();
    v.extend(batch.metrics.iter().map(|m| m.value as u64));
    v
}

impl Sink for TestSink {
    async fn deliver(&mut self, batch: &Redacted<Batch>) -> Result<Delivered, DeliveryError> {
        if let Some(g) = &self.gate {
            g.acquire().await.expect("gate open").forget();
        }
        let mut c = self.ctl.lock().unwrap();
        c.attempts += 1;
        c.attempt_times.push(Instant::now());
        let result = if let Some(r) = c.script.pop_front() {
            r
        } else if let Some(e) = &c.fail_forever {
            Err(e.clone())
        } else if c.ok_budget == Some(0) {
            Err(DeliveryError::retryable("budget spent"))
        } else {
            if let Some(b) = c.ok_budget.as_mut() {
                *b -= 1;
            }
            Ok(Delivered { accepted: batch.get().len() as u64, rejected: 0 })
        };
        if result.is_ok() {
            c.delivered.push(seqs(batch.get()));
        }
        result
    }

    async fn close(&mut self) {
        self.ctl.lock().unwrap().closed = true;
    }
}

fn redactor() -> &'static Redactor {
    static R: std::sync::OnceLock<Redactor> = std::sync::OnceLock::new();
    R.get_or_init(Redactor::default_mask)
}

/// A log batch with one record per sequence number (attribute `seq`), ~200-byte bodies.
fn logs(range: std::ops::Range<u64>) -> Batch {
    let resource = Arc::new(Resource {
        attributes: vec![KeyValue::string("service.name", "platform-api"), KeyValue::string("host.name", "node-1")],
        schema_url: String::new(),
    });
    Batch::logs(
        range
            .map(|i| LogRecord {
                time_unix_nano: 1_700_000_000_000_000_000 + i,
                body: AnyValue::from(
                    "GET /v1/records completed status=200 duration_ms=12 request handled by worker pool after \
                     authentication and authorization checks passed; response body serialized and sent to client ok",
                ),
                attributes: vec![
                    KeyValue { key: "seq".into(), value: AnyValue::Int(i as i64) },
                    KeyValue::string("log.file.path", "/var/log/platform/api.log"),
                ],
                resource: Arc::clone(&resource),
                ..LogRecord::default()
            })
            .collect(),
    )
}

fn metrics(range: std::ops::Range<u64>) -> Batch {
    Batch::metrics(
        range
            .map(|i| MetricPoint::new("seq_value", vec![Label::new("job", "t")], MetricKind::Gauge, i as f64, 0))
            .collect(),
    )
}

type Outcomes = Arc<Mutex<Vec<(u64, AckOutcome)>>>;

/// `batch` with a token that records `(id, outcome)` in `outcomes`.
fn acked(batch: Batch, id: u64, outcomes: &Outcomes) -> Redacted<Batch> {
    let o = Arc::clone(outcomes);
    redactor().apply(batch.with_ack(AckToken::new(move |out| o.lock().unwrap().push((id, out)))))
}

fn plain(batch: Batch) -> Redacted<Batch> {
    redactor().apply(batch)
}

fn outcome(outcomes: &Outcomes, id: u64) -> Option<AckOutcome> {
    outcomes.lock().unwrap().iter().find(|(i, _)| *i == id).map(|(_, o)| *o)
}

fn fast_retry() -> RetryConfig {
    RetryConfig {
        initial: Duration::from_millis(10),
        max: Duration::from_millis(200),
        multiplier: 2.0,
        max_attempts: 0,
    }
}

fn memory(max_events: usize, when_full: WhenFull) -> BufferConfig {
    BufferConfig::Memory { max_events, when_full }
}

fn disk(max_bytes: u64, when_full: WhenFull, fsync: FsyncPolicy) -> BufferConfig {
    BufferConfig::Disk { max_bytes, when_full, fsync }
}

struct Running {
    handle: SinkHandle,
    shutdown: CancellationToken,
}

impl Running {
    async fn stop(self) {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.handle.join()).await.expect("runner stops within 10 s");
    }
}

fn start(name: &str, sink: TestSink, buffer: &BufferConfig, retry: &RetryConfig, data_dir: &Path) -> Running {
    let shutdown = CancellationToken::new();
    let handle = runner::spawn(name, sink, buffer, retry, data_dir, shutdown.clone()).expect("sink starts");
    Running { handle, shutdown }
}

/// Polls `cond` every 5 ms until it holds or `timeout` passes.
async fn eventually(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    cond()
}

fn seg_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "seg"))
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------------------
// Memory buffer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_buffer_delivers_in_order_and_acks_only_after_delivery() {
    let tmp = TempDir::new("sinkbuf");
    let (sink, gate) = TestSink::gated();
    let r = start("mem", sink.clone(), &memory(1000, WhenFull::Block), &fast_retry(), tmp.path());
    let outcomes: Outcomes = Arc::default();
    for i in 0..5 {
        r.handle.input.send(acked(logs(i * 10..i * 10 + 10), i, &outcomes)).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(outcomes.lock().unwrap().is_empty(), "nothing may be acknowledged before delivery");
    assert_eq!(r.handle.metrics.buffer_events(), 40, "one batch in delivery, four queued");
    assert!(r.handle.metrics.buffer_bytes() > 40 * 200);

    gate.add_permits(2);
    assert!(eventually(Duration::from_secs(5), || outcomes.lock().unwrap().len() == 2).await);
    assert_eq!(*outcomes.lock().unwrap(), vec![(0, AckOutcome::Delivered), (1, AckOutcome::Delivered)]);

    gate.add_permits(3);
    assert!(eventually(Duration::from_secs(5), || outcomes.lock().unwrap().len() == 5).await);
    assert_eq!(sink.delivered_flat(), (0..50).collect::<Vec<_>>(), "in order");
    let m = &r.handle.metrics;
    assert_eq!((m.sent(), m.failed(), m.retried(), m.dropped()), (50, 0, 0, 0));
    assert_eq!(m.buffer_events(), 0);
    assert_eq!(m.buffer_bytes(), 0);
    assert_eq!(m.latency_count(), 5);
    let text = runner::SinkMetrics::encode(&[Arc::clone(m)]);
    assert!(text.contains("warden_sink_sent_total{sink=\"mem\"} 50\n"), "{text}");
    assert!(text.contains("warden_sink_delivery_latency_seconds_count{sink=\"mem\"} 5\n"), "{text}");
    r.stop().await;
    assert!(sink.ctl.lock().unwrap().closed, "close() runs at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_block_backpressures_the_sender() {
    let tmp = TempDir::new("sinkbuf");
    let (sink, gate) = TestSink::gated();
    let r = start("mem", sink.clone(), &memory(10, WhenFull::Block), &fast_retry(), tmp.path());
    let outcomes: Outcomes = Arc::default();
    // The first batch is taken out by the runner (held in delivery), the second fills
    // the queue, the third must wait.
    r.handle.input.send(acked(logs(0..10), 0, &outcomes)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || r.handle.metrics.buffer_events() == 0).await);
    r.handle.input.send(acked(logs(10..20), 1, &outcomes)).await.unwrap();
    let input = r.handle.input.clone();
    let o2 = Arc::clone(&outcomes);
    let third = tokio::spawn(async move { input.send(acked(logs(20..30), 2, &o2)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!third.is_finished(), "send must wait while the buffer is full");
    assert_eq!(r.handle.metrics.buffer_events(), 10, "never more than max_events queued");

    gate.add_permits(1);
    tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("send proceeds once there is room")
        .unwrap()
        .unwrap();
    gate.add_permits(10);
    assert!(eventually(Duration::from_secs(5), || outcomes.lock().unwrap().len() == 3).await);
    assert_eq!(sink.delivered_flat(), (0..30).collect::<Vec<_>>());
    assert_eq!(r.handle.metrics.dropped(), 0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_drop_newest_drops_counts_and_acks() {
    let tmp = TempDir::new("sinkbuf");
    let (sink, gate) = TestSink::gated();
    let r = start("mem", sink.clone(), &memory(10, WhenFull::DropNewest), &fast_retry(), tmp.path());
    let outcomes: Outcomes = Arc::default();
    r.handle.input.send(acked(logs(0..10), 0, &outcomes)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || r.handle.metrics.buffer_events() == 0).await);
    r.handle.input.send(acked(logs(10..20), 1, &outcomes)).await.unwrap();
    // Full: dropped at once, without waiting.
    tokio::time::timeout(Duration::from_millis(500), r.handle.input.send(acked(logs(20..27), 2, &outcomes)))
        .await
        .expect("drop_newest never waits")
        .unwrap();
    assert_eq!(outcome(&outcomes, 2), Some(AckOutcome::Delivered), "a deliberately dropped batch is acknowledged");
    assert_eq!(r.handle.metrics.dropped_by(DropReason::BufferFull), 7);
    gate.add_permits(10);
    assert!(eventually(Duration::from_secs(5), || outcomes.lock().unwrap().len() == 3).await);
    assert_eq!(sink.delivered_flat(), (0..20).collect::<Vec<_>>(), "the dropped batch never reaches the sink");
    let text = runner::SinkMetrics::encode(&[Arc::clone(&r.handle.metrics)]);
    assert!(text.contains("warden_sink_dropped_total{sink=\"mem\",reason=\"buffer_full\"} 7\n"), "{text}");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_batch_is_accepted_alone_not_deadlocked() {
    let tmp = TempDir::new("sinkbuf");
    let sink = TestSink::new();
    let r = start("mem", sink.clone(), &memory(5, WhenFull::Block), &fast_retry(), tmp.path());
    tokio::time::timeout(Duration::from_secs(5), r.handle.input.send(plain(logs(0..50)))).await.unwrap().unwrap();
    assert!(eventually(Duration::from_secs(5), || r.handle.metrics.sent() == 50).await);
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// Runner: retries, permanent errors, partial success, shutdown

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_with_backoff_then_succeeds() {
    let tmp = TempDir::new("sinkbuf");
    let sink = TestSink::new();
    {
        let mut c = sink.ctl.lock().unwrap();
        c.script.push_back(Err(DeliveryError::retryable("503")));
        c.script.push_back(Err(DeliveryError::retryable("503")));
        c.script.push_back(Err(DeliveryError::Retryable {
            reason: "429".into(),
            retry_after: Some(Duration::from_millis(150)),
        }));
    }
    let retry = RetryConfig { initial: Duration::from_millis(20), ..fast_retry() };
    let r = start("retry", sink.clone(), &memory(100, WhenFull::Block), &retry, tmp.path());
    let outcomes: Outcomes = Arc::default();
    r.handle.input.send(acked(logs(0..3), 0, &outcomes)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || outcome(&outcomes, 0).is_some()).await);
    assert_eq!(outcome(&outcomes, 0), Some(AckOutcome::Delivered));
    assert_eq!(sink.attempts(), 4);
    let times = sink.ctl.lock().unwrap().attempt_times.clone();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // 20 ms ±20 %, 40 ms ±20 %, then the server's 150 ms hint.
    assert!(gaps[0] >= Duration::from_millis(16), "{gaps:?}");
    assert!(gaps[1] >= Duration::from_millis(32) && gaps[1] > gaps[0] / 2, "{gaps:?}");
    assert!(gaps[2] >= Duration::from_millis(150), "the Retry-After hint is honoured: {gaps:?}");
    let m = &r.handle.metrics;
    assert_eq!((m.sent(), m.failed(), m.retried(), m.dropped()), (3, 3, 3, 0));
    assert_eq!(sink.delivered(), vec![vec![0, 1, 2]]);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_error_drops_counts_and_moves_on() {
    let tmp = TempDir::new("sinkbuf");
    let sink = TestSink::new();
    sink.ctl.lock().unwrap().script.push_back(Err(DeliveryError::permanent("400 bad request")));
    let r = start("perm", sink.clone(), &memory(100, WhenFull::Block), &fast_retry(), tmp.path());
    let outcomes: Outcomes = Arc::default();
    r.handle.input.send(acked(logs(0..4), 0, &outcomes)).await.unwrap();
    r.handle.input.send(acked(logs(4..6), 1, &outcomes)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || outcomes.lock().unwrap().len() == 2).await);
    assert_eq!(outcome(&outcomes, 0), Some(AckOutcome::Delivered), "refused for good = done, not re-read forever");
    let m = &r.handle.metrics;
    assert_eq!(m.dropped_by(DropReason::Permanent), 4);
    assert_eq!((m.failed(), m.retried(), m.sent()), (1, 0, 2));
    assert_eq!(sink.delivered(), vec![vec![4, 5]]);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_attempts_and_partial_rejections_are_counted() {
    let tmp = TempDir::new("sinkbuf");
    let sink = TestSink::new();
    {
        let mut c = sink.ctl.lock().unwrap();
        for _ in 0..3 {
            c.script.push_back(Err(DeliveryError::retryable("timeout")));
        }
        c.script.push_back(Ok(Delivered { accepted: 3, rejected: 2 }));
    }
    let retry = RetryConfig { max_attempts: 3, ..fast_retry() };
    let r = start("limits", sink.clone(), &memory(100, WhenFull::Block), &retry, tmp.path());
    r.handle.input.send(plain(logs(0..7))).await.unwrap();
    r.handle.input.send(plain(logs(7..12))).await.unwrap();
    let m = Arc::clone(&r.handle.metrics);
    assert!(eventually(Duration::from_secs(5), || m.sent() == 3).await);
    assert_eq!(m.dropped_by(DropReason::RetriesExhausted), 7);
    assert_eq!((m.failed(), m.retried()), (3, 2));
    assert_eq!(m.rejected(), 2);
    assert_eq!(m.dropped_by(DropReason::Rejected), 2);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_while_the_sink_fails_forever() {
    let tmp = TempDir::new("sinkbuf");
    let sink = TestSink::failing_forever();
    let retry = RetryConfig { initial: Duration::from_secs(20), max: Duration::from_secs(60), ..fast_retry() };
    let r = start("down", sink.clone(), &memory(100, WhenFull::Block), &retry, tmp.path());
    let outcomes: Outcomes = Arc::default();
    r.handle.input.send(acked(logs(0..3), 0, &outcomes)).await.unwrap();
    r.handle.input.send(acked(logs(3..6), 1, &outcomes)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || sink.attempts() >= 1).await);
    let input = r.handle.input.clone();
    let started = Instant::now();
    r.stop().await;
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());
    assert!(sink.ctl.lock().unwrap().closed);
    // Undelivered memory batches are not acknowledged as delivered: the source re-reads.
    assert_eq!(outcome(&outcomes, 0), Some(AckOutcome::Failed));
    assert_eq!(outcome(&outcomes, 1), Some(AckOutcome::Failed));
    // After shutdown the input refuses, and the refused batch's token fails.
    let e = input.send(acked(logs(6..7), 2, &outcomes)).await.unwrap_err();
    assert_eq!(e.sink, "down");
    assert_eq!(outcome(&outcomes, 2), Some(AckOutcome::Failed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_sender_is_released_at_shutdown() {
    let tmp = TempDir::new("sinkbuf");
    let (sink, _gate) = TestSink::gated();
    let r = start("blocked", sink, &memory(5, WhenFull::Block), &fast_retry(), tmp.path());
    let outcomes: Outcomes = Arc::default();
    r.handle.input.send(acked(logs(0..5), 0, &outcomes)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || r.handle.metrics.buffer_events() == 0).await);
    r.handle.input.send(acked(logs(5..10), 1, &outcomes)).await.unwrap();
    let input = r.handle.input.clone();
    let o = Arc::clone(&outcomes);
    let waiting = tokio::spawn(async move { input.send(acked(logs(10..15), 2, &o)).await });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!waiting.is_finished());
    r.shutdown.cancel();
    let res = tokio::time::timeout(Duration::from_secs(2), waiting).await.expect("released").unwrap();
    assert!(res.is_err());
    assert_eq!(outcome(&outcomes, 2), Some(AckOutcome::Failed));
    // The runner is stuck in a delivery that never ends (the gate stays shut): join would
    // wait for the sink's own timeout, which this test sink does not have.
}

// ---------------------------------------------------------------------------------------
// Disk buffer

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_buffer_acks_on_write_and_survives_restart() {
    let tmp = TempDir::new("sinkbuf");
    let cfg = disk(64 * 1024 * 1024, WhenFull::Block, FsyncPolicy::Always);
    let outcomes: Outcomes = Arc::default();

    // Run 1: the backend takes 20 batches, then is down.
    let sink1 = TestSink::new();
    sink1.ctl.lock().unwrap().ok_budget = Some(20);
    let r = start("otlp/main", sink1.clone(), &cfg, &fast_retry(), tmp.path());
    for i in 0..50 {
        r.handle.input.send(acked(logs(i * 10..i * 10 + 10), i, &outcomes)).await.unwrap();
    }
    assert!(eventually(Duration::from_secs(10), || outcomes.lock().unwrap().len() == 50).await);
    assert!(outcomes.lock().unwrap().iter().all(|(_, o)| *o == AckOutcome::Delivered), "acknowledged once written");
    assert!(eventually(Duration::from_secs(10), || sink1.attempts() > 21).await);
    assert_eq!(sink1.delivered_flat(), (0..200).collect::<Vec<_>>());
    assert_eq!(r.handle.metrics.buffer_events(), 300);
    assert!(r.handle.metrics.buffer_bytes() > 300 * 100);
    r.stop().await;

    let dir = runner::buffer_dir(tmp.path(), "otlp/main");
    assert!(dir.starts_with(tmp.path().join("buffers")) && dir.is_dir(), "{}", dir.display());
    assert!(!seg_files(&dir).is_empty());

    // Run 2: the backend is back; everything undelivered arrives, in order, once.
    let (sink2, gate2) = TestSink::gated();
    let r = start("otlp/main", sink2.clone(), &cfg, &fast_retry(), tmp.path());
    assert_eq!(r.handle.metrics.buffer_events(), 300, "recovered count");
    gate2.add_permits(1000);
    assert!(eventually(Duration::from_secs(10), || sink2.delivered_flat().len() >= 300).await);
    assert_eq!(sink2.delivered_flat(), (200..500).collect::<Vec<_>>());
    assert!(eventually(Duration::from_secs(5), || r.handle.metrics.buffer_events() == 0).await);
    r.stop().await;

    // Run 3: nothing is delivered again; the fully delivered segments are gone.
    let sink3 = TestSink::new();
    let r = start("otlp/main", sink3.clone(), &cfg, &fast_retry(), tmp.path());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(sink3.delivered().is_empty());
    assert!(seg_files(&dir).len() <= 1, "{:?}", seg_files(&dir));
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_buffer_in_use_is_refused() {
    let tmp = TempDir::new("sinkbuf");
    let cfg = disk(4 * 1024 * 1024, WhenFull::Block, FsyncPolicy::Never);
    let r = start("twice", TestSink::new(), &cfg, &fast_retry(), tmp.path());
    let err =
        runner::spawn("twice", TestSink::new(), &cfg, &fast_retry(), tmp.path(), CancellationToken::new()).unwrap_err();
    assert!(matches!(err, BufferError::InUse { .. }), "{err}");
    assert!(err.to_string().contains("twice"), "{err}");
    r.stop().await;
    // Released after shutdown.
    let r = start("twice", TestSink::new(), &cfg, &fast_retry(), tmp.path());
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_data_dir_is_an_error_naming_the_path() {
    let tmp = TempDir::new("sinkbuf");
    let file = tmp.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let cfg = disk(4 * 1024 * 1024, WhenFull::Block, FsyncPolicy::Never);
    let err = runner::spawn("s", TestSink::new(), &cfg, &fast_retry(), &file, CancellationToken::new()).unwrap_err();
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}

/// Writes `n` batches of 10 through a buffer whose sink is down, then stops it.
async fn fill_offline(data_dir: &Path, name: &str, cfg: &BufferConfig, n: u64) {
    let sink = TestSink::failing_forever();
    let retry = RetryConfig { initial: Duration::from_secs(10), ..fast_retry() };
    let r = start(name, sink, cfg, &retry, data_dir);
    let outcomes: Outcomes = Arc::default();
    for i in 0..n {
        r.handle.input.send(acked(logs(i * 10..i * 10 + 10), i, &outcomes)).await.unwrap();
    }
    assert!(eventually(Duration::from_secs(10), || outcomes.lock().unwrap().len() == n as usize).await);
    r.stop().await;
}

async fn drain(data_dir: &Path, name: &str, cfg: &BufferConfig, expect_items: usize) -> (Vec<u64>, Running, TestSink) {
    let sink = TestSink::new();
    let r = start(name, sink.clone(), cfg, &fast_retry(), data_dir);
    eventually(Duration::from_secs(10), || sink.delivered_flat().len() >= expect_items).await;
    // Give a wrong implementation the chance to deliver more than it should.
    tokio::time::sleep(Duration::from_millis(100)).await;
    (sink.delivered_flat(), r, sink)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_tail_after_a_crash_is_cut_off() {
    let tmp = TempDir::new("sinkbuf");
    let cfg = disk(64 * 1024 * 1024, WhenFull::Block, FsyncPolicy::Never);
    fill_offline(tmp.path(), "torn", &cfg, 20).await;
    let dir = runner::buffer_dir(tmp.path(), "torn");
    let last = seg_files(&dir).pop().unwrap();
    let len = std::fs::metadata(&last).unwrap().len();

    // A half-written record at the end: a header promising 5000 bytes and 100 of them.
    let mut torn = std::fs::read(&last).unwrap();
    torn.extend_from_slice(&5000u32.to_le_bytes());
    torn.extend_from_slice(&[0xab; 104]);
    std::fs::write(&last, &torn).unwrap();
    let (got, r, _) = drain(tmp.path(), "torn", &cfg, 200).await;
    assert_eq!(got, (0..200).collect::<Vec<_>>());
    assert_eq!(r.handle.metrics.corrupt_segments(), 0, "a torn tail is normal, not corruption");
    r.stop().await;
    assert!(!dir.join("quarantine").exists());

    // Power-loss style: the last record cut in the middle (that batch is lost, the rest not).
    fill_offline(tmp.path(), "torn2", &cfg, 20).await;
    let dir2 = runner::buffer_dir(tmp.path(), "torn2");
    let last = seg_files(&dir2).pop().unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(std::fs::metadata(&last).unwrap().len() - 300).unwrap();
    drop(f);
    let (got, r, _) = drain(tmp.path(), "torn2", &cfg, 190).await;
    assert_eq!(got, (0..190).collect::<Vec<_>>());
    assert_eq!(r.handle.metrics.corrupt_segments(), 0);
    // The repaired buffer keeps working.
    let outcomes: Outcomes = Arc::default();
    r.handle.input.send(acked(logs(1000..1005), 0, &outcomes)).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || r.handle.metrics.sent() == 195).await);
    r.stop().await;
    assert!(len > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_middle_segment_is_quarantined_and_later_segments_delivered() {
    let tmp = TempDir::new("sinkbuf");
    // 256 KiB buffer → 32 KiB segments; a 10-record batch is ~2.4 KB → ~13 per segment.
    let cfg = disk(256 * 1024, WhenFull::Block, FsyncPolicy::Never);
    fill_offline(tmp.path(), "corrupt", &cfg, 60).await;
    let dir = runner::buffer_dir(tmp.path(), "corrupt");
    let segs = seg_files(&dir);
    assert!(segs.len() >= 4, "{segs:?}");
    // Flip a byte in the middle of the second segment (inside some record's payload).
    let victim = &segs[1];
    let mut bytes = std::fs::read(victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x5a;
    std::fs::write(victim, &bytes).unwrap();

    let (got, r, _) = drain(tmp.path(), "corrupt", &cfg, 300).await;
    let m = Arc::clone(&r.handle.metrics);
    r.stop().await;
    assert_eq!(m.corrupt_segments(), 1);
    let quarantined: Vec<_> =
        std::fs::read_dir(dir.join("quarantine")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(quarantined, vec![victim.file_name().unwrap().to_owned()]);
    // Everything before the bad record and every later segment arrive, in order, once.
    let mut sorted = got.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted, got, "in order, no duplicates");
    assert!(got.contains(&0) && got.contains(&599), "first and last segments delivered");
    let missing: Vec<u64> = (0..600).filter(|s| !got.contains(s)).collect();
    assert!(!missing.is_empty() && missing.len() <= 200, "only part of one segment is lost: {}", missing.len());
    assert_eq!(
        missing.last().unwrap() - missing[0] + 1,
        missing.len() as u64,
        "one contiguous gap (the rest of the corrupt segment); the segments after it are delivered"
    );
    assert_eq!(std::fs::read(dir.join("quarantine").join(victim.file_name().unwrap())).unwrap(), bytes);
    assert_eq!(m.buffer_events(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_segments_and_position_never_crash() {
    let tmp = TempDir::new("sinkbuf");
    let cfg = disk(1024 * 1024, WhenFull::Block, FsyncPolicy::Never);
    fill_offline(tmp.path(), "junk", &cfg, 5).await;
    let dir = runner::buffer_dir(tmp.path(), "junk");
    let first = seg_files(&dir)[0].clone();
    // A segment of pure garbage before the real one, a garbage position file, a stray file.
    let garbage = dir.join(format!("{:020}.seg", 0));
    std::fs::write(&garbage, vec![0x42u8; 5000]).unwrap();
    std::fs::write(dir.join("position"), b"nonsense").unwrap();
    std::fs::write(dir.join("notes.txt"), b"hello").unwrap();
    let (got, r, _) = drain(tmp.path(), "junk", &cfg, 50).await;
    assert_eq!(got, (0..50).collect::<Vec<_>>());
    assert_eq!(r.handle.metrics.corrupt_segments(), 1);
    r.stop().await;
    assert!(dir.join("quarantine").join(garbage.file_name().unwrap()).exists());
    assert!(!first.exists(), "delivered segment deleted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_max_bytes_blocks_then_resumes() {
    let tmp = TempDir::new("sinkbuf");
    let max = 128 * 1024;
    let (sink, gate) = TestSink::gated();
    let r = start("full", sink.clone(), &disk(max, WhenFull::Block, FsyncPolicy::Never), &fast_retry(), tmp.path());
    let input = r.handle.input.clone();
    let sent = Arc::new(AtomicU64::new(0));
    let s2 = Arc::clone(&sent);
    let producer = tokio::spawn(async move {
        for i in 0..400u64 {
            input.send(plain(logs(i * 10..i * 10 + 10))).await.unwrap();
            s2.store(i + 1, Ordering::SeqCst);
        }
    });
    // It stalls well before 400 batches (~1 MB) because the sink holds everything.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stalled_at = sent.load(Ordering::SeqCst);
    assert!(stalled_at < 400, "the producer must be blocked");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(sent.load(Ordering::SeqCst), stalled_at, "still blocked");
    assert!(r.handle.metrics.buffer_bytes() <= max, "{} > {max}", r.handle.metrics.buffer_bytes());
    assert!(r.handle.metrics.buffer_bytes() > max / 2);
    gate.add_permits(100_000);
    tokio::time::timeout(Duration::from_secs(20), producer).await.expect("producer resumes").unwrap();
    assert!(eventually(Duration::from_secs(20), || sink.delivered_flat().len() == 4000).await);
    assert_eq!(sink.delivered_flat(), (0..4000).collect::<Vec<_>>());
    assert_eq!(r.handle.metrics.dropped(), 0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_max_bytes_drop_newest_drops_and_counts() {
    let tmp = TempDir::new("sinkbuf");
    let max = 128 * 1024;
    let (sink, gate) = TestSink::gated();
    let r =
        start("dropper", sink.clone(), &disk(max, WhenFull::DropNewest, FsyncPolicy::Never), &fast_retry(), tmp.path());
    let outcomes: Outcomes = Arc::default();
    let started = Instant::now();
    for i in 0..200u64 {
        r.handle.input.send(acked(logs(i * 10..i * 10 + 10), i, &outcomes)).await.unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(5), "drop_newest never blocks");
    assert!(eventually(Duration::from_secs(5), || outcomes.lock().unwrap().len() == 200).await);
    assert!(outcomes.lock().unwrap().iter().all(|(_, o)| *o == AckOutcome::Delivered));
    let dropped = r.handle.metrics.dropped_by(DropReason::BufferFull);
    assert!(dropped >= 1000, "{dropped}");
    assert!(r.handle.metrics.buffer_bytes() <= max);
    gate.add_permits(100_000);
    let kept = 2000 - dropped as usize;
    assert!(eventually(Duration::from_secs(10), || sink.delivered_flat().len() == kept).await);
    let got = sink.delivered_flat();
    assert_eq!(&got[..10], &(0..10).collect::<Vec<_>>()[..], "the oldest are kept");
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_larger_than_a_segment_is_split_not_lost() {
    let tmp = TempDir::new("sinkbuf");
    // 1 MiB buffer → 128 KiB segments; 2,000 records (~400 KB) need several records.
    let sink = TestSink::new();
    let r = start(
        "split",
        sink.clone(),
        &disk(1024 * 1024, WhenFull::Block, FsyncPolicy::Always),
        &fast_retry(),
        tmp.path(),
    );
    let outcomes: Outcomes = Arc::default();
    r.handle.input.send(acked(logs(0..2000), 0, &outcomes)).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || sink.delivered_flat().len() == 2000).await);
    assert_eq!(sink.delivered_flat(), (0..2000).collect::<Vec<_>>());
    assert!(sink.delivered().len() > 2, "split into several records");
    // Acknowledged after the group's fsync, which may come after the reader's delivery.
    assert!(eventually(Duration::from_secs(5), || outcome(&outcomes, 0).is_some()).await);
    assert_eq!(outcome(&outcomes, 0), Some(AckOutcome::Delivered));
    // One item larger than a segment cannot be stored: dropped and counted, not a crash.
    let mut huge = logs(5000..5001);
    huge.logs[0].body = AnyValue::from("x".repeat(300 * 1024));
    r.handle.input.send(acked(huge, 1, &outcomes)).await.unwrap();
    r.handle.input.send(plain(logs(6000..6001))).await.unwrap();
    assert!(eventually(Duration::from_secs(5), || sink.delivered_flat().len() == 2001).await);
    assert_eq!(r.handle.metrics.dropped_by(DropReason::TooLarge), 1);
    r.stop().await;
}

/// A real full file system: a 2 MiB tmpfs (needs root and mount(2); skipped otherwise,
/// where `disk_max_bytes_*` cover the same policy through `max_bytes`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_filesystem_is_survived() {
    let tmp = TempDir::new("sinkbuf");
    let mnt = tmp.path().join("small");
    std::fs::create_dir_all(&mnt).unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=2m", "tmpfs"])
        .arg(&mnt)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        warden_testkit::skip("disk_full_filesystem_is_survived", "cannot mount a tmpfs (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let _unmount = Unmount(mnt.clone());

    // drop_newest: the file system fills long before max_bytes (64 MiB).
    let cfg = disk(64 * 1024 * 1024, WhenFull::DropNewest, FsyncPolicy::Always);
    let (sink, gate) = TestSink::gated();
    let r = start("enospc", sink.clone(), &cfg, &fast_retry(), &mnt);
    let outcomes: Outcomes = Arc::default();
    for i in 0..1500u64 {
        r.handle.input.send(acked(logs(i * 10..i * 10 + 10), i, &outcomes)).await.unwrap();
    }
    assert!(eventually(Duration::from_secs(20), || outcomes.lock().unwrap().len() == 1500).await);
    let m = Arc::clone(&r.handle.metrics);
    assert!(m.write_errors_no_space() > 0, "the file system must have filled up");
    assert!(m.dropped_by(DropReason::BufferFull) > 0);
    assert!(outcomes.lock().unwrap().iter().all(|(_, o)| *o == AckOutcome::Delivered));
    gate.add_permits(1_000_000);
    let kept = 15_000 - m.dropped_by(DropReason::BufferFull) as usize;
    assert!(eventually(Duration::from_secs(20), || sink.delivered_flat().len() == kept).await);
    let got = sink.delivered_flat();
    let mut sorted = got.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, got, "in order");
    // Space is back: new batches are written and delivered again.
    r.handle.input.send(plain(logs(90_000..90_010))).await.unwrap();
    assert!(eventually(Duration::from_secs(10), || sink.delivered_flat().len() == kept + 10).await);
    r.stop().await;

    // block: the sender waits while the disk is full and resumes when the reader frees it.
    let cfg = disk(64 * 1024 * 1024, WhenFull::Block, FsyncPolicy::Always);
    let (sink, gate) = TestSink::gated();
    let r = start("enospc-block", sink.clone(), &cfg, &fast_retry(), &mnt);
    let input = r.handle.input.clone();
    let sent = Arc::new(AtomicU64::new(0));
    let s2 = Arc::clone(&sent);
    let producer = tokio::spawn(async move {
        for i in 0..1500u64 {
            input.send(plain(logs(i * 10..i * 10 + 10))).await.unwrap();
            s2.store(i + 1, Ordering::SeqCst);
        }
    });
    assert!(eventually(Duration::from_secs(20), || r.handle.metrics.write_errors_no_space() > 0).await);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(sent.load(Ordering::SeqCst) < 1500, "blocked while the disk is full");
    gate.add_permits(1_000_000);
    tokio::time::timeout(Duration::from_secs(30), producer).await.expect("resumes after space is freed").unwrap();
    assert!(eventually(Duration::from_secs(20), || sink.delivered_flat().len() == 15_000).await);
    assert_eq!(sink.delivered_flat(), (0..15_000).collect::<Vec<_>>(), "nothing lost under block");
    assert_eq!(r.handle.metrics.dropped(), 0);
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// A real kill -9

/// Not a test on its own: the child process of `kill_9_loses_nothing_acknowledged`. It
/// writes batches into a disk buffer (recording acknowledged sequence numbers) while a
/// slow sink delivers (recording delivered ones), until it is killed.
#[test]
fn kill_9_child_process() {
    let Ok(dir) = std::env::var("WARDEN_SINK_BUFFER_CHILD") else { return };
    let dir = std::path::PathBuf::from(dir);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async move {
        struct FileSink(std::fs::File);
        impl Sink for FileSink {
            async fn deliver(&mut self, batch: &Redacted<Batch>) -> Result<Delivered, DeliveryError> {
                use std::io::Write as _;
                tokio::time::sleep(Duration::from_millis(2)).await;
                let line: Vec<String> = seqs(batch.get()).iter().map(|s| s.to_string()).collect();
                self.0.write_all(format!("{}\n", line.join(",")).as_bytes()).unwrap();
                Ok(Delivered { accepted: batch.get().len() as u64, rejected: 0 })
            }
        }
        let open = |name: &str| std::fs::OpenOptions::new().create(true).append(true).open(dir.join(name)).unwrap();
        let sink = FileSink(open("delivered.txt"));
        let acked = Arc::new(Mutex::new(open("acked.txt")));
        let cfg = disk(64 * 1024 * 1024, WhenFull::Block, FsyncPolicy::Never);
        let h = runner::spawn("crash", sink, &cfg, &fast_retry(), &dir, CancellationToken::new()).unwrap();
        for i in 0u64.. {
            let a = Arc::clone(&acked);
            let token = AckToken::new(move |o| {
                use std::io::Write as _;
                if o == AckOutcome::Delivered {
                    let _ = a.lock().unwrap().write_all(format!("{i}\n").as_bytes());
                }
            });
            h.input.send(redactor().apply(logs(i * 10..i * 10 + 10).with_ack(token))).await.unwrap();
        }
    });
}

fn read_numbers(path: &Path) -> Vec<Vec<u64>> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').filter_map(|n| n.parse().ok()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_acknowledged() {
    let tmp = TempDir::new("sinkbuf");
    let exe = std::env::current_exe().unwrap();
    let dir = tmp.path().to_str().unwrap().to_owned();
    let mut child = warden_testkit::Child::spawn_with_env(
        &exe,
        &["--exact", "kill_9_child_process", "--nocapture", "--test-threads=1"],
        &[("WARDEN_SINK_BUFFER_CHILD", &dir)],
    )
    .expect("spawn the child");
    // Let it write and deliver for a while: the sink is slower than the producer, so
    // the buffer holds a backlog when the kill comes.
    let acked_path = tmp.path().join("acked.txt");
    let deadline = Instant::now() + Duration::from_secs(30);
    while read_numbers(&acked_path).len() < 2000 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    let acked: Vec<u64> = read_numbers(&acked_path).into_iter().flatten().collect();
    assert!(acked.len() >= 2000, "the child acknowledged only {} batches", acked.len());
    let before: Vec<Vec<u64>> = read_numbers(&tmp.path().join("delivered.txt"));
    assert!(!before.is_empty(), "the child delivered something before the kill");

    // Restart on the same directory.
    let cfg = disk(64 * 1024 * 1024, WhenFull::Block, FsyncPolicy::Never);
    let sink = TestSink::new();
    let r = start("crash", sink.clone(), &cfg, &fast_retry(), tmp.path());
    let m = Arc::clone(&r.handle.metrics);
    assert!(eventually(Duration::from_secs(30), || m.buffer_events() == 0).await, "backlog drains");
    r.stop().await;
    let after = sink.delivered();
    assert_eq!(m.corrupt_segments(), 0, "a kill -9 is not corruption");

    let before_flat: Vec<u64> = before.iter().flatten().copied().collect();
    let after_flat: Vec<u64> = after.iter().flatten().copied().collect();
    let mut sorted = after_flat.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, after_flat, "delivered in order after the restart");
    let delivered: std::collections::HashSet<u64> = before_flat.iter().chain(after_flat.iter()).copied().collect();
    for batch in &acked {
        for s in batch * 10..batch * 10 + 10 {
            assert!(delivered.contains(&s), "acknowledged item {s} was lost");
        }
    }
    let before_set: std::collections::HashSet<u64> = before_flat.iter().copied().collect();
    let dups = after_flat.iter().filter(|s| before_set.contains(s)).count();
    assert!(dups <= 10, "duplicates bounded by the one batch in flight: {dups}");
    eprintln!(
        "kill -9: {} batches acknowledged, {} items delivered before, {} after, {dups} duplicates",
        acked.len(),
        before_flat.len(),
        after_flat.len()
    );
}

// ---------------------------------------------------------------------------------------
// Fan-out

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_acks_once_after_every_receiving_sink() {
    let tmp = TempDir::new("sinkbuf");
    let (logs_sink, logs_gate) = TestSink::gated();
    let (all_sink, all_gate) = TestSink::gated();
    let metrics_sink = TestSink::new();
    let a = start("logs", logs_sink.clone(), &memory(100, WhenFull::Block), &fast_retry(), tmp.path());
    let b = start("all", all_sink.clone(), &memory(100, WhenFull::Block), &fast_retry(), tmp.path());
    let c = start("metrics", metrics_sink.clone(), &memory(100, WhenFull::Block), &fast_retry(), tmp.path());
    let fanout = Fanout::new(vec![
        (SignalSet::LOGS, a.handle.input.clone()),
        (SignalSet::ALL, b.handle.input.clone()),
        (SignalSet::METRICS, c.handle.input.clone()),
    ]);
    let outcomes: Outcomes = Arc::default();

    // Logs + metrics: each sink gets only what it takes.
    let mut mixed = logs(0..3);
    mixed.metrics = metrics(100..102).metrics;
    fanout.send(acked(mixed, 0, &outcomes)).await;
    assert!(eventually(Duration::from_secs(5), || metrics_sink.delivered_flat() == vec![100, 101]).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(outcome(&outcomes, 0), None, "two sinks have not delivered yet");
    logs_gate.add_permits(1);
    assert!(eventually(Duration::from_secs(5), || logs_sink.delivered_flat() == vec![0, 1, 2]).await);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(outcome(&outcomes, 0), None, "the `all` sink has not delivered yet");
    all_gate.add_permits(1);
    assert!(eventually(Duration::from_secs(5), || outcome(&outcomes, 0).is_some()).await);
    assert_eq!(outcome(&outcomes, 0), Some(AckOutcome::Delivered));
    assert_eq!(all_sink.delivered_flat(), vec![0, 1, 2, 100, 101]);

    // Metrics only: the logs sink never sees it and so never holds its acknowledgement.
    fanout.send(acked(metrics(200..201), 1, &outcomes)).await;
    all_gate.add_permits(1);
    assert!(eventually(Duration::from_secs(5), || outcome(&outcomes, 1).is_some()).await);
    assert_eq!(outcome(&outcomes, 1), Some(AckOutcome::Delivered));
    assert_eq!(logs_sink.attempts(), 1);

    // A batch nobody takes is acknowledged at once.
    let none = Fanout::new(vec![(SignalSet::TRACES, a.handle.input.clone())]);
    none.send(acked(logs(300..301), 2, &outcomes)).await;
    assert_eq!(outcome(&outcomes, 2), Some(AckOutcome::Delivered));

    // Exactly one callback per batch.
    assert_eq!(outcomes.lock().unwrap().len(), 3);
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_fails_the_ack_when_one_sink_cannot_deliver() {
    let tmp = TempDir::new("sinkbuf");
    let good = TestSink::new();
    let down = TestSink::failing_forever();
    let a = start("good", good.clone(), &memory(100, WhenFull::Block), &fast_retry(), tmp.path());
    let b = start("down", down.clone(), &memory(100, WhenFull::Block), &fast_retry(), tmp.path());
    let fanout = Fanout::new(vec![(SignalSet::ALL, a.handle.input.clone()), (SignalSet::LOGS, b.handle.input.clone())]);
    let outcomes: Outcomes = Arc::default();
    fanout.send(acked(logs(0..2), 0, &outcomes)).await;
    assert!(eventually(Duration::from_secs(5), || good.delivered_flat().len() == 2).await);
    assert_eq!(outcome(&outcomes, 0), None);
    b.stop().await;
    assert_eq!(outcome(&outcomes, 0), Some(AckOutcome::Failed), "the source re-reads");
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_blocked_sink_backpressures_without_starving_the_other() {
    let tmp = TempDir::new("sinkbuf");
    let (slow, slow_gate) = TestSink::gated();
    let fast = TestSink::new();
    let a = start("slow", slow.clone(), &memory(10, WhenFull::Block), &fast_retry(), tmp.path());
    let b = start("fast", fast.clone(), &memory(10, WhenFull::Block), &fast_retry(), tmp.path());
    let fanout =
        Arc::new(Fanout::new(vec![(SignalSet::ALL, a.handle.input.clone()), (SignalSet::ALL, b.handle.input.clone())]));
    let f = Arc::clone(&fanout);
    let sent = Arc::new(AtomicU64::new(0));
    let s2 = Arc::clone(&sent);
    let producer = tokio::spawn(async move {
        for i in 0..10u64 {
            f.send(plain(logs(i * 10..i * 10 + 10))).await;
            s2.store(i + 1, Ordering::SeqCst);
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    // slow: one batch in delivery + one queued, the third send waits.
    assert_eq!(sent.load(Ordering::SeqCst), 2, "the blocked sink holds the caller back");
    assert_eq!(fast.delivered_flat(), (0..30).collect::<Vec<_>>(), "the other sink got its share concurrently");
    slow_gate.add_permits(100);
    tokio::time::timeout(Duration::from_secs(5), producer).await.unwrap().unwrap();
    assert!(eventually(Duration::from_secs(5), || slow.delivered_flat().len() == 100).await);
    assert!(eventually(Duration::from_secs(5), || fast.delivered_flat().len() == 100).await);
    a.stop().await;
    b.stop().await;
}
