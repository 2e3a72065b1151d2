//! The file-tail source against real files in a temporary directory: rotation by rename
//! and create, copytruncate and truncation while a writer thread appends numbered lines,
//! restarts from checkpoints (all acknowledged, some failed, out-of-order), multi-line
//! records, JSON and text parsing, binary junk, a 32 MB line, invalid UTF-8, globs with
//! excludes, files created and deleted while tailed, and the open-file limit.
//!
//! A consumer task plays the pipeline: it receives batches and acknowledges them (or
//! fails them, by policy); only acknowledged records count as delivered.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use warden_collector::pipeline::{CancellationToken, ComponentStats, SourceContext, channel};
use warden_collector::signal::{AnyValue, LogRecord, SeverityNumber};
use warden_collector::sources::file::{Config, Format, MultilineConfig, StartAt};
use warden_testkit::TempDir;

/// Tests share the process; the memory test needs it to itself.
static SERIAL: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

const WAIT: Duration = Duration::from_secs(60);

/// What the consumer does with batch number `i` (0-based, in arrival order).
type Policy = Box<dyn FnMut(usize, &[LogRecord]) -> Verdict + Send>;

enum Verdict {
    Done,
    Fail,
    /// Keep the token undecided until the channel closes (then it counts as failed).
    Hold,
}

fn ack_all() -> Policy {
    Box::new(|_, _| Verdict::Done)
}

struct Harness {
    shutdown: CancellationToken,
    stats: Arc<ComponentStats>,
    delivered: Arc<Mutex<Vec<LogRecord>>>,
    failed_batches: Arc<AtomicU64>,
    received_batches: Arc<AtomicU64>,
    source: tokio::task::JoinHandle<()>,
    consumer: tokio::task::JoinHandle<()>,
}

fn config(include: &[&Path]) -> Config {
    let mut c = Config::new(include.iter().map(|p| p.to_string_lossy().into_owned()));
    c.poll_interval = Duration::from_millis(50);
    c.batch_timeout = Duration::from_millis(10);
    c.batch_max_records = 100;
    c.rotate_wait = Duration::from_millis(300);
    c
}

fn start(cfg: Config, data_dir: &Path, mut policy: Policy) -> Harness {
    cfg.validate().expect("valid test config");
    let (tx, mut rx) = channel(8);
    let ctx = SourceContext::new("file/test", tx, data_dir.to_path_buf());
    let shutdown = ctx.shutdown.clone();
    let stats = Arc::clone(&ctx.stats);
    let delivered = Arc::new(Mutex::new(Vec::new()));
    let failed_batches = Arc::new(AtomicU64::new(0));
    let received_batches = Arc::new(AtomicU64::new(0));
    let (d, f, rb) = (Arc::clone(&delivered), Arc::clone(&failed_batches), Arc::clone(&received_batches));
    let consumer = tokio::spawn(async move {
        let mut held = Vec::new();
        let mut i = 0;
        while let Some(mut batch) = rx.recv().await {
            rb.fetch_add(1, Ordering::Relaxed);
            let token = batch.ack.take().expect("file batches carry an ack token");
            match policy(i, &batch.logs) {
                Verdict::Done => {
                    d.lock().unwrap().extend(batch.logs);
                    token.done();
                }
                Verdict::Fail => {
                    f.fetch_add(1, Ordering::Relaxed);
                    token.fail();
                }
                Verdict::Hold => held.push(token),
            }
            i += 1;
        }
        drop(held);
    });
    let source = tokio::spawn(cfg.run(ctx));
    Harness { shutdown, stats, delivered, failed_batches, received_batches, source, consumer }
}

impl Harness {
    fn count(&self) -> usize {
        self.delivered.lock().unwrap().len()
    }

    fn records(&self) -> Vec<LogRecord> {
        self.delivered.lock().unwrap().clone()
    }

    /// Waits until `pred` holds for the delivered records.
    async fn wait_until(&self, what: &str, pred: impl Fn(&[LogRecord]) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            if pred(&self.delivered.lock().unwrap()) {
                return;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; delivered {}", self.count());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn wait_count(&self, n: usize) {
        self.wait_until(&format!("{n} records"), |r| r.len() >= n).await;
    }

    /// Shuts the source down and returns everything delivered.
    async fn stop(self) -> Vec<LogRecord> {
        self.shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), self.source).await.expect("source stops on shutdown").unwrap();
        tokio::time::timeout(Duration::from_secs(10), self.consumer).await.expect("consumer ends").unwrap();
        self.delivered.lock().unwrap().clone()
    }

    fn counter(&self, what: &'static str) -> u64 {
        self.stats.counter(what).get()
    }
}

fn body(r: &LogRecord) -> &str {
    r.body.as_str().unwrap_or("")
}

fn attr<'a>(r: &'a LogRecord, key: &str) -> Option<&'a str> {
    r.attributes.iter().find(|kv| kv.key == key).and_then(|kv| kv.value.as_str())
}

/// A numbered line; the number is what the checks read back.
fn line(i: u64) -> String {
    format!("L{i:08} 2024-05-01T10:00:00Z INFO request handled {}", "x".repeat((i % 41) as usize))
}

fn num(r: &LogRecord) -> u64 {
    body(r).get(1..9).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a numbered line: {:?}", body(r)))
}

/// Every number in `0..n` exactly once.
fn assert_exactly_once(nums: &[u64], n: u64) {
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for &x in nums {
        *seen.entry(x).or_default() += 1;
    }
    let dups: Vec<u64> = seen.iter().filter(|(_, c)| **c > 1).map(|(x, _)| *x).take(10).collect();
    let missing: Vec<u64> = (0..n).filter(|x| !seen.contains_key(x)).take(10).collect();
    assert!(dups.is_empty(), "duplicated lines (first 10): {dups:?}");
    assert!(missing.is_empty(), "missing lines (first 10): {missing:?}");
    assert_eq!(nums.len() as u64, n);
}

/// Within each writer range (one file generation), numbers arrive in increasing order.
fn assert_ordered_within(nums: &[u64], ranges: &[std::ops::Range<u64>]) {
    for r in ranges {
        let in_range: Vec<u64> = nums.iter().copied().filter(|x| r.contains(x)).collect();
        assert!(in_range.windows(2).all(|w| w[0] < w[1]), "lines of range {r:?} out of order");
    }
}

fn append(path: &Path) -> File {
    OpenOptions::new().create(true).append(true).open(path).unwrap()
}

/// A writer thread appending numbered lines to `path` until `total`, pausable.
struct Writer {
    pause: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    written: Arc<AtomicU64>,
    handle: std::thread::JoinHandle<()>,
}

impl Writer {
    fn spawn(path: PathBuf, first: u64, total: u64) -> Writer {
        let pause = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(first));
        let (p, pd, w) = (Arc::clone(&pause), Arc::clone(&paused), Arc::clone(&written));
        let handle = std::thread::spawn(move || {
            let mut f = append(&path);
            for i in first..total {
                while p.load(Ordering::Acquire) {
                    pd.store(true, Ordering::Release);
                    std::thread::sleep(Duration::from_millis(1));
                }
                pd.store(false, Ordering::Release);
                writeln!(f, "{}", line(i)).unwrap();
                w.store(i + 1, Ordering::Release);
                if i % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        Writer { pause, paused, written, handle }
    }

    /// Pauses the writer between two lines; returns how many lines exist.
    async fn pause(&self) -> u64 {
        self.pause.store(true, Ordering::Release);
        while !self.paused.load(Ordering::Acquire) && !self.handle.is_finished() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        self.written.load(Ordering::Acquire)
    }

    fn resume(&self) {
        self.pause.store(false, Ordering::Release);
    }

    fn join(self) {
        self.handle.join().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rename_and_create_rotation_under_continuous_writing() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_rename");
    let data = TempDir::new("ft_rename_data");
    let log = dir.path().join("app.log");
    File::create(&log).unwrap();
    let h = start(config(&[&log]), data.path(), ack_all());
    const TOTAL: u64 = 20_000;
    const EVERY: u64 = 4_000;
    // The writer renames the file every EVERY lines, keeps writing a few hundred lines to
    // the renamed file (as an application does until it reopens), then creates a new one.
    let path = log.clone();
    let writer = std::thread::spawn(move || {
        let mut ranges = Vec::new();
        let mut f = append(&path);
        let mut start = 0;
        let mut rotation = 0;
        let mut i = 0;
        while i < TOTAL {
            writeln!(f, "{}", line(i)).unwrap();
            i += 1;
            if i % 20 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
            if i % EVERY == 0 && i < TOTAL {
                rotation += 1;
                std::fs::rename(&path, path.with_extension(format!("log.{rotation}"))).unwrap();
                for _ in 0..300 {
                    writeln!(f, "{}", line(i)).unwrap();
                    i += 1;
                }
                ranges.push(start..i);
                start = i;
                f = append(&path);
            }
        }
        ranges.push(start..TOTAL);
        ranges
    });
    let ranges = tokio::task::spawn_blocking(move || writer.join().unwrap()).await.unwrap();
    h.wait_count(TOTAL as usize).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(h.counter("files_rotated") >= 4, "rotations seen: {}", h.counter("files_rotated"));
    let got = h.stop().await;
    let nums: Vec<u64> = got.iter().map(num).collect();
    assert_exactly_once(&nums, TOTAL);
    assert_ordered_within(&nums, &ranges);
    assert!(got.iter().all(|r| attr(r, "log.file.name") == Some("app.log")));
}

/// Copytruncate (and plain truncation when `copy` is false), three times while a writer
/// appends. The writer is paused and the tailer allowed to catch up before each
/// truncation: lines written after the tailer's last read and before the truncation
/// survive only in the copy, the inherent copytruncate window, which no tailer of the
/// original file can close.
async fn truncation_under_continuous_writing(copy: bool, tag: &str) {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new(tag);
    let data = TempDir::new(&format!("{tag}_data"));
    let log = dir.path().join("app.log");
    File::create(&log).unwrap();
    let h = start(config(&[&log]), data.path(), ack_all());
    const TOTAL: u64 = 15_000;
    let writer = Writer::spawn(log.clone(), 0, TOTAL);
    let mut ranges = Vec::new();
    let mut start_n = 0;
    for round in 1..=3u64 {
        h.wait_count((round * TOTAL / 4) as usize).await;
        let n = writer.pause().await;
        h.wait_count(n as usize).await;
        if copy {
            std::fs::copy(&log, dir.path().join(format!("app.log.{round}"))).unwrap();
        }
        OpenOptions::new().write(true).open(&log).unwrap().set_len(0).unwrap();
        ranges.push(start_n..n);
        start_n = n;
        writer.resume();
    }
    writer.join();
    ranges.push(start_n..TOTAL);
    h.wait_count(TOTAL as usize).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.counter("files_truncated"), 3);
    assert_eq!(h.counter("files_rotated"), 0);
    let got = h.stop().await;
    let nums: Vec<u64> = got.iter().map(num).collect();
    assert_exactly_once(&nums, TOTAL);
    assert_ordered_within(&nums, &ranges);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copytruncate_under_continuous_writing() {
    truncation_under_continuous_writing(true, "ft_copytrunc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_truncation_under_continuous_writing() {
    truncation_under_continuous_writing(false, "ft_trunc").await;
}

/// Truncation followed at once by more content than the old read position: only the
/// fingerprint of the first bytes shows the file was replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncate_and_regrow_past_the_old_offset() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_regrow");
    let data = TempDir::new("ft_regrow_data");
    let log = dir.path().join("app.log");
    let mut f = append(&log);
    for i in 0..100 {
        writeln!(f, "{}", line(i)).unwrap();
    }
    let h = start(config(&[&log]), data.path(), ack_all());
    h.wait_count(100).await;
    // One write of 300 lines right after the truncation (same inode).
    let mut text = String::new();
    for i in 100..400 {
        text.push_str(&line(i));
        text.push('\n');
    }
    let mut t = OpenOptions::new().write(true).truncate(true).open(&log).unwrap();
    t.write_all(text.as_bytes()).unwrap();
    h.wait_count(400).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(h.counter("files_truncated"), 1);
    let nums: Vec<u64> = h.stop().await.iter().map(num).collect();
    assert_exactly_once(&nums, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_from_checkpoints_loses_and_repeats_nothing() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_restart");
    let data = TempDir::new("ft_restart_data");
    let log = dir.path().join("app.log");
    File::create(&log).unwrap();
    const TOTAL: u64 = 30_000;
    let writer = Writer::spawn(log.clone(), 0, TOTAL);
    let mut all = Vec::new();
    // Three runs, each stopped mid-stream while the writer keeps going.
    for (run, stop_at) in [(1, 6_000usize), (2, 6_000)] {
        let h = start(config(&[&log]), data.path(), ack_all());
        h.wait_count(stop_at).await;
        let got = h.stop().await;
        assert!(!got.is_empty(), "run {run} delivered nothing");
        all.extend(got);
        assert!(data.path().join("checkpoints/file_test.json").is_file(), "checkpoint written on shutdown (run {run})");
    }
    let h = start(config(&[&log]), data.path(), ack_all());
    writer.join();
    let before = all.len();
    h.wait_count(TOTAL as usize - before).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    all.extend(h.stop().await);
    let nums: Vec<u64> = all.iter().map(num).collect();
    assert_exactly_once(&nums, TOTAL);
    assert!(nums.windows(2).all(|w| w[0] < w[1]), "one file: lines in order across restarts");
}

/// Every third batch fails downstream: the source reads those lines again, so every line
/// is delivered (at least once), and the run-time counters say so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_batches_are_read_again() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_fail");
    let data = TempDir::new("ft_fail_data");
    let log = dir.path().join("app.log");
    let mut f = append(&log);
    const TOTAL: u64 = 5_000;
    for i in 0..TOTAL {
        writeln!(f, "{}", line(i)).unwrap();
    }
    let h =
        start(config(&[&log]), data.path(), Box::new(|i, _| if i % 3 == 2 { Verdict::Fail } else { Verdict::Done }));
    h.wait_until("every line at least once", |r| {
        let mut seen = vec![false; TOTAL as usize];
        for rec in r {
            seen[num(rec) as usize] = true;
        }
        seen.iter().all(|s| *s)
    })
    .await;
    assert!(h.stats.received.get() > TOTAL, "failed lines were read again");
    let (stats, failed) = (Arc::clone(&h.stats), Arc::clone(&h.failed_batches));
    let got = h.stop().await;
    assert!(got.len() as u64 >= TOTAL);
    let failed = failed.load(Ordering::Relaxed);
    assert!(failed > 0);
    // Batches dropped unread at shutdown also count as failed at the source.
    assert!(stats.counter("batches_failed").get() >= failed);
}

/// Run 1 acknowledges its first three batches and fails everything after; run 2 (same
/// data_dir) starts exactly after the acknowledged lines: the failed ones come again,
/// the acknowledged ones do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_redelivers_failed_batches_only() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_refail");
    let data = TempDir::new("ft_refail_data");
    let log = dir.path().join("app.log");
    let mut f = append(&log);
    const TOTAL: u64 = 2_000;
    for i in 0..TOTAL {
        writeln!(f, "{}", line(i)).unwrap();
    }
    let h = start(config(&[&log]), data.path(), Box::new(|i, _| if i < 3 { Verdict::Done } else { Verdict::Fail }));
    h.wait_count(300).await;
    while h.failed_batches.load(Ordering::Relaxed) < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let first = h.stop().await;
    let first_nums: Vec<u64> = first.iter().map(num).collect();
    assert_eq!(first_nums, (0..300).collect::<Vec<_>>(), "three batches of 100 acknowledged");
    let h = start(config(&[&log]), data.path(), ack_all());
    h.wait_count((TOTAL - 300) as usize).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second: Vec<u64> = h.stop().await.iter().map(num).collect();
    assert_eq!(second, (300..TOTAL).collect::<Vec<_>>());
}

/// A later batch acknowledged before an earlier one must not move the checkpoint past
/// the earlier one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkpoint_never_passes_an_unacknowledged_batch() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_order");
    let data = TempDir::new("ft_order_data");
    let log = dir.path().join("app.log");
    let mut f = append(&log);
    for i in 0..500 {
        writeln!(f, "{}", line(i)).unwrap();
    }
    let h = start(config(&[&log]), data.path(), Box::new(|i, _| if i == 0 { Verdict::Hold } else { Verdict::Done }));
    h.wait_count(400).await;
    let got = h.stop().await;
    assert_eq!(got.iter().map(num).min(), Some(100), "batch 0 held, the rest acknowledged");
    let h = start(config(&[&log]), data.path(), ack_all());
    h.wait_count(500).await;
    let again: Vec<u64> = h.stop().await.iter().map(num).collect();
    assert_eq!(again, (0..500).collect::<Vec<_>>(), "everything again from the unacknowledged batch");
}

/// A consumer that never acknowledges gets `max_unacked_batches` batches, then nothing
/// more: the reader waits instead of buffering the file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacknowledged_batches_are_bounded_per_file() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_bound");
    let data = TempDir::new("ft_bound_data");
    let log = dir.path().join("app.log");
    let mut f = append(&log);
    for i in 0..10_000 {
        writeln!(f, "{}", line(i)).unwrap();
    }
    let mut cfg = config(&[&log]);
    cfg.max_unacked_batches = 3;
    let h = start(cfg, data.path(), Box::new(|_, _| Verdict::Hold));
    let deadline = Instant::now() + WAIT;
    while h.received_batches.load(Ordering::Relaxed) < 3 {
        assert!(Instant::now() < deadline, "first batches never arrived");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(h.received_batches.load(Ordering::Relaxed), 3, "no fourth batch while three are unacknowledged");
    assert!(h.stats.received.get() < 10_000, "reading paused too, not only sending");
    h.stop().await;
}

/// The checkpoint belongs to an inode whose content was replaced while the source was
/// down (same inode, different first bytes): the fingerprint says it is a new file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_inode_is_read_from_the_start() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_reuse");
    let data = TempDir::new("ft_reuse_data");
    let log = dir.path().join("app.log");
    let mut f = append(&log);
    for i in 0..100 {
        writeln!(f, "{}", line(i)).unwrap();
    }
    let h = start(config(&[&log]), data.path(), ack_all());
    h.wait_count(100).await;
    h.stop().await;
    let mut text = String::new();
    for i in 1000..1300 {
        text.push_str(&line(i));
        text.push('\n');
    }
    std::fs::write(&log, text).unwrap();
    let h = start(config(&[&log]), data.path(), ack_all());
    h.wait_count(300).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let nums: Vec<u64> = h.stop().await.iter().map(num).collect();
    assert_eq!(nums, (1000..1300).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiline_stack_traces() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_multi");
    let data = TempDir::new("ft_multi_data");
    let log = dir.path().join("app.log");
    std::fs::write(
        &log,
        "2024-05-01 10:00:00 ERROR request failed\n\
         java.lang.RuntimeException: boom\n\
         \tat com.example.A.b(A.java:10)\n\
         \tat com.example.C.d(C.java:20)\n\
         2024-05-01 10:00:01 INFO next request\n",
    )
    .unwrap();
    let mut cfg = config(&[&log]);
    let mut ml = MultilineConfig::new(r"^\d{4}-\d{2}-\d{2} ");
    ml.timeout = Duration::from_millis(300);
    cfg.multiline = Some(ml);
    let h = start(cfg, data.path(), ack_all());
    h.wait_count(2).await;
    let got = h.records();
    assert_eq!(
        body(&got[0]),
        "2024-05-01 10:00:00 ERROR request failed\njava.lang.RuntimeException: boom\n\tat com.example.A.b(A.java:10)\n\tat com.example.C.d(C.java:20)"
    );
    assert_eq!(got[0].severity_number, SeverityNumber::ERROR);
    assert_eq!(got[0].time_unix_nano, 1_714_557_600_000_000_000);
    assert_eq!(body(&got[1]), "2024-05-01 10:00:01 INFO next request", "flushed by the timeout");
    // A trace written in two parts, slower than nothing but faster than the timeout.
    let mut f = append(&log);
    write!(f, "2024-05-01 10:00:02 ERROR again\nCaused by: x\n").unwrap();
    f.flush().unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    write!(f, "\tat z.Z(Z.java:1)\n2024-05-01 10:00:03 INFO done\n").unwrap();
    h.wait_count(4).await;
    let got = h.stop().await;
    assert_eq!(body(&got[2]), "2024-05-01 10:00:02 ERROR again\nCaused by: x\n\tat z.Z(Z.java:1)");
    assert_eq!(body(&got[3]), "2024-05-01 10:00:03 INFO done");
    assert_eq!(got.len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_with_level_and_timestamp() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_json");
    let data = TempDir::new("ft_json_data");
    let log = dir.path().join("api.json");
    std::fs::write(
        &log,
        concat!(
            r#"{"level":"warn","timestamp":"2024-05-01T10:00:00.5Z","msg":"slow","route":"/v1/x","ms":812}"#,
            "\n",
            r#"{"lvl":"error","ts":1714557600123,"err":{"kind":"db"}}"#,
            "\n",
            r#"{"severity":30,"@timestamp":1714557600}"#,
            "\n",
            r#"{"broken":"#,
            "\n",
        ),
    )
    .unwrap();
    let mut cfg = config(&[&log]);
    cfg.format = Format::Json;
    let h = start(cfg, data.path(), ack_all());
    h.wait_count(4).await;
    let got = h.stop().await;
    let AnyValue::KvList(kvs) = &got[0].body else { panic!("structured body expected") };
    assert_eq!(kvs.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(), ["level", "timestamp", "msg", "route", "ms"]);
    assert_eq!(kvs[4].value, AnyValue::Int(812));
    assert_eq!((got[0].severity_number, got[0].severity_text.as_str()), (SeverityNumber::WARN, "warn"));
    assert_eq!(got[0].time_unix_nano, 1_714_557_600_500_000_000);
    assert_eq!(got[1].severity_number, SeverityNumber::ERROR);
    assert_eq!(got[1].time_unix_nano, 1_714_557_600_123_000_000);
    assert_eq!(got[2].severity_number, SeverityNumber::INFO);
    assert_eq!(got[2].time_unix_nano, 1_714_557_600_000_000_000);
    assert_eq!(body(&got[3]), r#"{"broken":"#, "not JSON: kept as text");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_lines_attributes_and_resource() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_text");
    let data = TempDir::new("ft_text_data");
    let log = dir.path().join("worker.log");
    std::fs::write(
        &log,
        "2024-05-01 10:00:00,250 - jobs - WARNING - queue deep\r\n[2024-05-01T10:00:00Z] DEBUG tick\nno level here\n",
    )
    .unwrap();
    let mut cfg = config(&[&log]);
    cfg.resource.insert("service.name".into(), "worker".into());
    let h = start(cfg, data.path(), ack_all());
    h.wait_count(3).await;
    let got = h.stop().await;
    assert_eq!(body(&got[0]), "2024-05-01 10:00:00,250 - jobs - WARNING - queue deep", "CR stripped");
    assert_eq!(got[0].severity_number, SeverityNumber::WARN);
    assert_eq!(got[0].time_unix_nano, 1_714_557_600_250_000_000);
    assert_eq!(got[1].severity_number, SeverityNumber::DEBUG);
    assert_eq!((got[2].severity_number, got[2].time_unix_nano), (SeverityNumber::UNSPECIFIED, 0));
    assert!(got[2].observed_time_unix_nano > 1_714_557_600_000_000_000);
    for r in &got {
        assert_eq!(attr(r, "log.file.path"), Some(log.to_str().unwrap()));
        assert_eq!(attr(r, "log.file.name"), Some("worker.log"));
        assert_eq!(r.resource.get_str("service.name"), Some("worker"));
        assert!(Arc::ptr_eq(&r.resource, &got[0].resource), "one shared resource");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_junk_and_invalid_utf8() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_junk");
    let data = TempDir::new("ft_junk_data");
    let junk = dir.path().join("junk.log");
    let bytes: Vec<u8> = (0..1_000_000).map(|_| rand::random::<u8>()).collect();
    let mut content = bytes.clone();
    content.extend_from_slice(b"\nEND\n");
    std::fs::write(&junk, &content).unwrap();
    let lines = memchr_count(&content);
    let utf = dir.path().join("utf.log");
    std::fs::write(&utf, b"abc \xff def\nok \xc3\xa9\n").unwrap();
    let h = start(config(&[&junk, &utf]), data.path(), ack_all());
    h.wait_count(lines + 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.stats.received.get(), (lines + 2) as u64);
    assert!(h.counter("invalid_utf8") > 1);
    let got = h.stop().await;
    assert_eq!(got.len(), lines + 2);
    let from_utf: Vec<&str> = got.iter().filter(|r| attr(r, "log.file.name") == Some("utf.log")).map(body).collect();
    assert_eq!(from_utf, ["abc \u{fffd} def", "ok é"]);
    let last_junk = got.iter().rev().find(|r| attr(r, "log.file.name") == Some("junk.log")).unwrap();
    assert_eq!(body(last_junk), "END");
}

fn memchr_count(b: &[u8]) -> usize {
    b.iter().filter(|&&c| c == b'\n').count()
}

fn status_kb(field: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// A 32 MB line is cut to `max_line_bytes`, counted, and never held whole: the peak
/// resident memory of the test process grows by far less than the line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_line_is_truncated_with_bounded_memory() {
    let _serial = SERIAL.write().await;
    let dir = TempDir::new("ft_huge");
    let data = TempDir::new("ft_huge_data");
    let log = dir.path().join("huge.log");
    {
        let mut f = append(&log);
        f.write_all(b"before\n").unwrap();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..32 {
            f.write_all(&chunk).unwrap();
        }
        f.write_all(b"\nafter\n").unwrap();
    }
    // Resets the peak RSS (VmHWM) of this process, so the peak below is the tailer's.
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status_kb("VmRSS:").unwrap_or(0);
    let h = start(config(&[&log]), data.path(), ack_all());
    h.wait_count(3).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(h.counter("lines_truncated"), 1);
    let got = h.stop().await;
    assert_eq!(body(&got[0]), "before");
    assert_eq!(body(&got[1]).len(), 256 << 10);
    assert!(body(&got[1]).bytes().all(|b| b == b'x'));
    assert_eq!(body(&got[2]), "after");
    match (reset, status_kb("VmHWM:")) {
        (true, Some(hwm)) => {
            let growth_mb = hwm.saturating_sub(rss_before) / 1024;
            assert!(growth_mb < 16, "peak memory grew by {growth_mb} MB for a 32 MB line");
        }
        _ => eprintln!("peak-memory check skipped: /proc/self/clear_refs or VmHWM unavailable"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn glob_with_exclude() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_glob");
    let data = TempDir::new("ft_glob_data");
    let d = dir.path();
    std::fs::create_dir(d.join("sub")).unwrap();
    for (name, text) in [
        ("a.log", "from a\n"),
        ("b.log", "from b\n"),
        ("c.log.gz", "from c\n"),
        ("sub/d.log", "from d\n"),
        ("e.txt", "from e\n"),
    ] {
        std::fs::write(d.join(name), text).unwrap();
    }
    let mut cfg = config(&[]);
    cfg.include =
        vec![format!("{}/*.log", d.display()), format!("{}/*.gz", d.display()), format!("{}/**/*.log", d.display())];
    cfg.exclude = vec!["*.gz".into(), format!("{}/b.log", d.display())];
    let h = start(cfg, data.path(), ack_all());
    h.wait_count(2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut bodies: Vec<String> = h.stop().await.iter().map(|r| body(r).to_string()).collect();
    bodies.sort();
    assert_eq!(bodies, ["from a", "from d"], "a.log once (two patterns match it), d.log via **");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_at_end_and_files_created_later() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_new");
    let data = TempDir::new("ft_new_data");
    let old = dir.path().join("old.log");
    std::fs::write(&old, "old 1\nold 2\n").unwrap();
    let mut cfg = config(&[]);
    cfg.include = vec![format!("{}/*.log", dir.path().display())];
    cfg.start_at = StartAt::End;
    let h = start(cfg, data.path(), ack_all());
    tokio::time::sleep(Duration::from_millis(300)).await;
    writeln!(append(&old), "old 3").unwrap();
    h.wait_count(1).await;
    // Created after startup: read from its first line despite start_at: end.
    std::fs::write(dir.path().join("new.log"), "new 1\nnew 2\n").unwrap();
    h.wait_count(3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut bodies: Vec<String> = h.stop().await.iter().map(|r| body(r).to_string()).collect();
    bodies.sort();
    assert_eq!(bodies, ["new 1", "new 2", "old 3"]);
}

fn open_fds_to(path: &Path) -> usize {
    let target = path.to_string_lossy().into_owned();
    std::fs::read_dir("/proc/self/fd")
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| std::fs::read_link(e.path()).ok())
                .filter(|l| l.to_string_lossy().starts_with(&target))
                .count()
        })
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_deleted_while_tailed() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_del");
    let data = TempDir::new("ft_del_data");
    let log = dir.path().join("gone.log");
    let mut f = append(&log);
    for i in 0..100 {
        writeln!(f, "{}", line(i)).unwrap();
    }
    let h = start(config(&[&log]), data.path(), ack_all());
    h.wait_count(100).await;
    std::fs::remove_file(&log).unwrap();
    // The writer still holds it and writes on: those lines are read too.
    for i in 100..150 {
        writeln!(f, "{}", line(i)).unwrap();
    }
    drop(f);
    h.wait_count(150).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds_to(&log) > 0 {
        assert!(Instant::now() < deadline, "deleted file still open after rotate_wait");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.counter("files_deleted"), 1);
    let nums: Vec<u64> = h.stop().await.iter().map(num).collect();
    assert_eq!(nums, (0..150).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_file_limit_still_reads_everything() {
    let _serial = SERIAL.read().await;
    let dir = TempDir::new("ft_limit");
    let data = TempDir::new("ft_limit_data");
    for k in 0..6u64 {
        let mut f = append(&dir.path().join(format!("f{k}.log")));
        for i in 0..100 {
            writeln!(f, "{}", line(k * 1000 + i)).unwrap();
        }
    }
    let mut cfg = config(&[]);
    cfg.include = vec![format!("{}/*.log", dir.path().display())];
    cfg.max_open_files = 2;
    let h = start(cfg, data.path(), ack_all());
    h.wait_count(600).await;
    assert!(open_fds_to(dir.path()) <= 2, "at most max_open_files descriptors");
    for k in 0..6u64 {
        let mut f = append(&dir.path().join(format!("f{k}.log")));
        for i in 100..110 {
            writeln!(f, "{}", line(k * 1000 + i)).unwrap();
        }
    }
    h.wait_count(660).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = h.stop().await;
    let nums: Vec<u64> = got.iter().map(num).collect();
    let mut want: Vec<u64> = (0..6).flat_map(|k| (0..110).map(move |i| k * 1000 + i)).collect();
    let mut sorted = nums.clone();
    sorted.sort();
    want.sort();
    assert_eq!(sorted, want, "every line of every file exactly once");
}
