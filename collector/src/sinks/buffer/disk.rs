//! The disk buffer: append-only segment files that survive restarts and backend outages.
//!
//! # Layout
//!
//! ```text
//! <data_dir>/buffers/<sink>/
//!   lock                     flock(2)ed while a runner uses the directory
//!   00000000000000000007.seg segments, numbered; the highest is the one being written
//!   00000000000000000008.seg
//!   position                 where the reader is: first undelivered record
//!   quarantine/              corrupt segments (and torn-off segment tails), kept for a human
//! ```
//!
//! A segment is a 16-byte header (`WDNBUFSG`, format version `u32` LE, 4 reserved bytes)
//! followed by records:
//!
//! ```text
//! record := len: u32 LE | crc32: u32 LE | body[len]
//! body   := enqueued_unix_ms: u64 LE | items: u32 LE | payload (postcard, see `codec`)
//! ```
//!
//! The CRC32 (IEEE, `crc32fast`) covers the whole body. A segment is closed and a new one
//! started when the next record would take it past the segment size (`max_bytes / 8`,
//! between 16 KiB and 32 MiB), so space is freed in steps of at most an eighth of the
//! buffer. A batch whose record would be larger than a segment is split into several
//! records; a single item that large is dropped (`reason="too_large"`).
//!
//! The `position` file (`WDNBUFPS`, segment `u64`, offset `u64`, CRC32 of those 24 bytes)
//! is replaced atomically (write `position.tmp`, rename) after every delivered batch.
//! Segments wholly before it are deleted as soon as the reader leaves them.
//!
//! # Guarantees
//!
//! - A source is acknowledged once its batch is written ([`FsyncPolicy`]: and fsynced,
//!   by default). From then on the buffer owns it.
//! - Records are delivered in the order written, across restarts.
//! - After a crash of the agent (`kill -9`, OOM kill, panic) every acknowledged record
//!   not yet delivered is delivered after the restart, whatever the fsync policy; after a
//!   power loss or kernel crash too with `fsync: always` (with an interval: all but the
//!   last interval's). Records delivered but not yet recorded in `position` are delivered
//!   again: at most the one batch that was in flight (the position file is not fsynced,
//!   so after a power loss it may be older: more duplicates, never loss).
//! - The buffer never holds more than `max_bytes` of segments (plus one segment header).
//!   When full, `block` makes senders wait until the reader frees a segment,
//!   `drop_newest` drops the incoming batch (counted).
//!
//! # Failures
//!
//! - Torn tail (the last segment ends in a partial record after a crash): the segment is
//!   truncated to its last whole record when the buffer opens; normal, logged at `info`.
//!   If a whole bad record in the last segment is followed by more data, that rest is
//!   first copied to `quarantine/<segment>-tail-<offset>.seg` and counted as corrupt.
//! - A complete record with a bad checksum, an impossible length, or a payload that does
//!   not decode, anywhere else: the segment is moved to `quarantine/`, counted in
//!   `warden_sink_buffer_corrupt_segments_total`, logged at `warn` with the file name
//!   (never its content), and delivery continues with the next segment. Records of that
//!   segment that were not yet delivered stay in quarantine. No input makes the buffer
//!   panic or stop.
//! - Disk full (`ENOSPC`, `EDQUOT`) or another write error: the partial record is cut
//!   off again (the segment stays valid), the write is counted in
//!   `warden_sink_buffer_write_errors_total{reason}`, logged once per episode, and treated
//!   as a full buffer: `block` retries every second (or as soon as the reader frees
//!   space), `drop_newest` drops. If the open segment is by then wholly delivered, it is
//!   deleted and a new one started, so a disk that our own delivered data fills never
//!   stays stuck. A failed fsync fails the acknowledgements of the
//!   batches it covered, so their sources re-send them.
//! - A directory used by another runner (this process or another `warden`) is refused at
//!   open ([`BufferError::InUse`]).
//!
//! # Threads
//!
//! Senders encode their batches themselves (on their own task, once the writer's queue
//! has a place for them), so encoding runs in parallel with the I/O. One writer thread
//! per buffer does the blocking writes and fsyncs (group commit: it writes every batch
//! that queued up while it was busy, then fsyncs once). Its input queue holds at most
//! [`INPUT_QUEUE`] encoded batches. The runner reads records on Tokio's blocking pool,
//! one at a time.

use super::codec;
use super::{BufferError, FsyncPolicy, Pending, WhenFull};
use crate::redact::Redacted;
use crate::signal::Batch;
use crate::sinks::runner::{DropReason, SinkMetrics};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Batches the writer's input queue holds at most (the buffer's bound is `max_bytes`;
/// this only decouples senders from the writer's I/O).
pub const INPUT_QUEUE: usize = 16;
/// Segment header size in bytes.
pub const SEGMENT_HEADER: u64 = 16;
/// Record header size in bytes (`len`, `crc32`).
pub const RECORD_HEADER: u64 = 8;
/// Bytes of a record body before the payload (`enqueued_unix_ms`, `items`).
const BODY_PREFIX: usize = 12;
/// The largest record body a reader accepts; anything larger is corruption.
pub const MAX_RECORD_BODY: u64 = 64 * 1024 * 1024;
const SEGMENT_MAGIC: &[u8; 8] = b"WDNBUFSG";
const POSITION_MAGIC: &[u8; 8] = b"WDNBUFPS";
const POSITION_FILE: &str = "position";
const POSITION_TMP: &str = "position.tmp";
const QUARANTINE: &str = "quarantine";
/// How long a blocked writer waits before retrying after a write error.
const RETRY_WRITE: Duration = Duration::from_secs(1);

/// The segment size for a buffer of `max_bytes`.
pub fn segment_size(max_bytes: u64) -> u64 {
    (max_bytes / 8).clamp(16 * 1024, 32 * 1024 * 1024)
}

/// Where a record ends: the reader's position after delivering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    seg: u64,
    off: u64,
    items: u64,
}

/// The disk buffer's settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    pub max_bytes: u64,
    pub when_full: WhenFull,
    pub fsync: FsyncPolicy,
}

#[derive(Debug, Clone, Copy)]
struct SegMeta {
    /// Bytes of the file that hold whole records (what the reader may read).
    len: u64,
    /// Items in records not yet delivered.
    events: u64,
}

#[derive(Debug)]
struct State {
    segments: BTreeMap<u64, SegMeta>,
    /// The segment the writer appends to (it may not exist yet).
    write_seg: u64,
    total_bytes: u64,
    total_events: u64,
    /// The reader found corruption in the segment being written: start a new one.
    rotate_requested: bool,
}

struct Shared {
    dir: PathBuf,
    name: String,
    state: Mutex<State>,
    /// Reader → writer: space was freed. Also rung at shutdown.
    space: Condvar,
    /// Writer → reader: a record was written or a segment was closed.
    data: Notify,
    metrics: Arc<SinkMetrics>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn seg_path(&self, id: u64) -> PathBuf {
        seg_path(&self.dir, id)
    }

    fn publish(&self, st: &State) {
        self.metrics.set_buffer(st.total_events, st.total_bytes);
    }
}

fn seg_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn now_unix_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

fn is_no_space(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded)
}

/// A batch encoded into one or more records, ready to append.
struct Encoded {
    /// The records, back to back.
    buf: Vec<u8>,
    /// Each record's (start, end, items) in `buf`.
    recs: Vec<(usize, usize, u32)>,
    ack: Option<crate::ack::AckToken>,
}

enum Msg {
    Records(Encoded),
    Tick,
    Stop,
}

/// What senders need to encode: the record size limit, counters, and a few reusable
/// buffers handed back by the writer.
struct Encoder {
    name: String,
    max_body: u64,
    metrics: Arc<SinkMetrics>,
    pool: Mutex<Vec<Vec<u8>>>,
}

/// Encode buffers kept for reuse at most.
const POOL: usize = 4;
/// An encode buffer larger than this is not kept for reuse.
const POOL_MAX_CAPACITY: usize = 16 * 1024 * 1024;

impl Encoder {
    fn take_buf(&self) -> Vec<u8> {
        self.pool.lock().unwrap_or_else(|e| e.into_inner()).pop().unwrap_or_default()
    }

    fn give_back(&self, mut buf: Vec<u8>) {
        if buf.capacity() > POOL_MAX_CAPACITY {
            return;
        }
        buf.clear();
        let mut pool = self.pool.lock().unwrap_or_else(|e| e.into_inner());
        if pool.len() < POOL {
            pool.push(buf);
        }
    }

    /// Encodes `batch` into records appended to `out`, splitting it when a record would
    /// exceed the largest record body; a single item that large is dropped (counted).
    fn encode(&self, batch: Batch, enqueued: u64, out: &mut Encoded) {
        let start = out.buf.len();
        let items = batch.len().min(u32::MAX as usize) as u32;
        out.buf.extend_from_slice(&[0u8; RECORD_HEADER as usize]);
        out.buf.extend_from_slice(&enqueued.to_le_bytes());
        out.buf.extend_from_slice(&items.to_le_bytes());
        if let Err(e) = codec::encode(&batch, &mut out.buf) {
            // Serializing into a Vec fails only on types postcard cannot express; ours
            // have none. Drop the batch (counted) rather than crash.
            tracing::error!(sink = %self.name, error = %e, "disk buffer: batch could not be encoded; dropped");
            self.metrics.add_dropped(DropReason::TooLarge, batch.len() as u64);
            out.buf.truncate(start);
            return;
        }
        let body_len = (out.buf.len() - start - RECORD_HEADER as usize) as u64;
        if body_len > self.max_body {
            out.buf.truncate(start);
            if batch.len() > 1 {
                let (a, b) = split(batch);
                self.encode(a, enqueued, out);
                self.encode(b, enqueued, out);
            } else {
                tracing::warn!(
                    sink = %self.name,
                    bytes = body_len,
                    max = self.max_body,
                    "disk buffer: one item is larger than a segment; dropped"
                );
                self.metrics.add_dropped(DropReason::TooLarge, batch.len() as u64);
            }
            return;
        }
        let crc = crc32fast::hash(&out.buf[start + RECORD_HEADER as usize..]);
        out.buf[start..start + 4].copy_from_slice(&(body_len as u32).to_le_bytes());
        out.buf[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
        out.recs.push((start, out.buf.len(), items));
    }
}

/// The sending side: encodes batches and hands the records to the writer thread. Cheap
/// to clone.
#[derive(Clone)]
pub(crate) struct DiskInput {
    tx: mpsc::Sender<Msg>,
    encoder: Arc<Encoder>,
}

impl DiskInput {
    /// Queues `batch` for the writer (waiting while its queue is full); `Err` hands it
    /// back when the buffer has stopped. The writer applies `when_full`.
    ///
    /// The batch is encoded here, on the sender's task, once it has a place in the
    /// queue: encoding (the CPU-heavy part) then runs in parallel with the writer's
    /// `write` and `fdatasync` calls, and the queue holds compact records instead of
    /// batches.
    pub(crate) async fn push(
        &self,
        mut batch: Redacted<Batch>,
        shutdown: &CancellationToken,
    ) -> Result<(), Redacted<Batch>> {
        let enqueued = now_unix_ms();
        let permit = tokio::select! {
            p = self.tx.reserve() => p,
            _ = shutdown.cancelled() => return Err(batch),
        };
        let Ok(permit) = permit else { return Err(batch) };
        let ack = batch.take_ack();
        let mut out = Encoded { buf: self.encoder.take_buf(), recs: Vec::new(), ack: None };
        self.encoder.encode(batch.into_inner(), enqueued, &mut out);
        if out.recs.is_empty() {
            // Nothing storable (every item too large, counted): deliberately discarded.
            if let Some(a) = ack {
                a.done();
            }
            self.encoder.give_back(out.buf);
            return Ok(());
        }
        out.ack = ack;
        permit.send(Msg::Records(out));
        Ok(())
    }
}

/// An opened disk buffer.
pub(crate) struct Opened {
    pub input: DiskInput,
    pub reader: DiskReader,
    /// Resolves (with an error: the sender is dropped) when the writer thread has ended.
    pub writer_done: oneshot::Receiver<()>,
}

/// Opens (and repairs) the buffer in `dir` and starts its writer thread. Must be called
/// inside a Tokio runtime.
pub(crate) fn open(
    dir: PathBuf,
    name: &str,
    opts: Options,
    metrics: Arc<SinkMetrics>,
    shutdown: CancellationToken,
) -> Result<Opened, BufferError> {
    fs::create_dir_all(&dir).map_err(|source| BufferError::CreateDir { path: dir.clone(), source })?;
    let lock_path = dir.join("lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| BufferError::File { path: lock_path.clone(), what: "open lock file", source })?;
    if let Err(e) = rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive) {
        if e == rustix::io::Errno::WOULDBLOCK {
            return Err(BufferError::InUse { path: dir });
        }
        return Err(BufferError::File { path: lock_path, what: "lock", source: e.into() });
    }
    let recovered = recover(&dir, name, &metrics)?;
    let state = State {
        segments: recovered.segments,
        write_seg: recovered.next_seg,
        total_bytes: 0,
        total_events: 0,
        rotate_requested: false,
    };
    let shared = Arc::new(Shared {
        dir: dir.clone(),
        name: name.to_owned(),
        state: Mutex::new(state),
        space: Condvar::new(),
        data: Notify::new(),
        metrics,
    });
    // The directory's flock, held by the writer thread and the reader (not by `Shared`,
    // which the shutdown watcher may hold a moment longer), so it is released once both
    // are done: when `SinkHandle::join` returns.
    let lock = Arc::new(lock);
    {
        let mut st = shared.lock();
        st.total_bytes = st.segments.values().map(|m| m.len).sum();
        st.total_events = st.segments.values().map(|m| m.events).sum();
        shared.publish(&st);
    }

    let (tx, rx) = mpsc::channel(INPUT_QUEUE);
    let (done_tx, done_rx) = oneshot::channel();
    let encoder = Arc::new(Encoder {
        name: name.to_owned(),
        max_body: segment_size(opts.max_bytes).min(MAX_RECORD_BODY) - RECORD_HEADER,
        metrics: Arc::clone(&shared.metrics),
        pool: Mutex::new(Vec::new()),
    });
    let writer = Writer {
        shared: Arc::clone(&shared),
        opts,
        seg_size: segment_size(opts.max_bytes),
        file: None,
        seg: 0,
        len: 0,
        next_seg: recovered.next_seg,
        encoder: Arc::clone(&encoder),
        _lock: Arc::clone(&lock),
        unsynced: false,
        last_sync: Instant::now(),
        error_episode: false,
        shutdown: shutdown.clone(),
    };
    std::thread::Builder::new()
        .name(format!("warden-buffer-{}", super::super::runner::buffer_dir_name(name)))
        .spawn(move || {
            writer.run(rx);
            drop(done_tx);
        })
        .map_err(|source| BufferError::Thread { path: dir.clone(), source })?;

    // Wakes the writer at shutdown and, with an fsync interval, ticks it.
    let watch_tx = tx.clone();
    let watch_shared = Arc::clone(&shared);
    let interval = match opts.fsync {
        FsyncPolicy::Interval(d) => Some(d.max(Duration::from_millis(1))),
        _ => None,
    };
    tokio::spawn(async move {
        let mut tick = interval.map(tokio::time::interval);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = async {
                    match tick.as_mut() {
                        Some(t) => { t.tick().await; }
                        None => std::future::pending::<()>().await,
                    }
                } => {
                    let _ = watch_tx.try_send(Msg::Tick);
                }
            }
        }
        // Ring under the lock so a writer between its check and its wait cannot miss it.
        drop(watch_shared.lock());
        watch_shared.space.notify_all();
        let _ = watch_tx.send(Msg::Stop).await;
    });

    let reader = DiskReader {
        lock: Some(lock),
        shared: Arc::clone(&shared),
        core: Some(Box::new(ReadCore {
            shared,
            seg: recovered.read.0,
            off: recovered.read.1,
            file: None,
            buf: Vec::new(),
            commit: None,
        })),
    };
    Ok(Opened { input: DiskInput { tx, encoder }, reader, writer_done: done_rx })
}

struct Recovered {
    segments: BTreeMap<u64, SegMeta>,
    next_seg: u64,
    read: (u64, u64),
}

fn file_err<'a>(path: &'a Path, what: &'static str) -> impl FnOnce(io::Error) -> BufferError + 'a {
    move |source| BufferError::File { path: path.to_path_buf(), what, source }
}

/// Reads the directory back after a restart: deletes delivered segments, repairs the
/// last segment's torn tail, counts what is left.
fn recover(dir: &Path, name: &str, metrics: &SinkMetrics) -> Result<Recovered, BufferError> {
    let _ = fs::remove_file(dir.join(POSITION_TMP));
    let mut ids = Vec::new();
    let entries = fs::read_dir(dir).map_err(|source| BufferError::ReadDir { path: dir.to_path_buf(), source })?;
    for e in entries {
        let e = e.map_err(|source| BufferError::ReadDir { path: dir.to_path_buf(), source })?;
        let file_name = e.file_name();
        let Some(n) = file_name.to_str() else { continue };
        if let Some(stem) = n.strip_suffix(".seg")
            && stem.len() == 20
            && let Ok(id) = stem.parse::<u64>()
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    let position = read_position(dir, name);
    let (start_seg, start_off) = match position {
        Some((s, o)) => (s, o.max(SEGMENT_HEADER)),
        None => (ids.first().copied().unwrap_or(0), SEGMENT_HEADER),
    };
    // Everything before the position was delivered.
    ids.retain(|&id| {
        if id < start_seg {
            let p = seg_path(dir, id);
            if let Err(e) = fs::remove_file(&p)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(sink = name, segment = %p.display(), error = %e, "disk buffer: cannot delete delivered segment");
            }
            false
        } else {
            true
        }
    });
    let mut segments = BTreeMap::new();
    if let Some(&last) = ids.last() {
        let path = seg_path(dir, last);
        match repair_last(dir, &path, last, name, metrics)? {
            Some(len) => {
                segments.insert(last, SegMeta { len, events: 0 });
            }
            None => {
                ids.pop();
            }
        }
    }
    for &id in &ids {
        let path = seg_path(dir, id);
        let len = match segments.get(&id) {
            Some(m) => m.len,
            None => match fs::metadata(&path) {
                Ok(m) => m.len(),
                Err(e) => {
                    tracing::error!(sink = name, segment = %path.display(), error = %e, "disk buffer: segment cannot be read; skipped");
                    continue;
                }
            },
        };
        let from = if id == start_seg { start_off } else { SEGMENT_HEADER };
        let events = count_events(&path, from, len);
        segments.insert(id, SegMeta { len, events });
    }
    let max_id = ids.last().copied().unwrap_or(0);
    Ok(Recovered { segments, next_seg: max_id.max(start_seg) + 1, read: (start_seg, start_off) })
}

/// Checks every record of the newest segment and cuts a torn tail off. Returns the
/// segment's length, or `None` if the file held nothing and was removed (or was
/// quarantined for a bad header).
fn repair_last(
    dir: &Path,
    path: &Path,
    id: u64,
    name: &str,
    metrics: &SinkMetrics,
) -> Result<Option<u64>, BufferError> {
    let file = OpenOptions::new().read(true).write(true).open(path).map_err(file_err(path, "open"))?;
    let file_len = file.metadata().map_err(file_err(path, "stat"))?.len();
    let mut header = [0u8; SEGMENT_HEADER as usize];
    if file_len < SEGMENT_HEADER {
        // Created, but the crash came before its header was written: nothing in it.
        drop(file);
        fs::remove_file(path).map_err(file_err(path, "remove empty segment"))?;
        return Ok(None);
    }
    let header_ok = match file.read_exact_at(&mut header, 0) {
        Ok(()) => check_header(&header),
        Err(_) => Err("segment header unreadable"),
    };
    if let Err(why) = header_ok {
        drop(file);
        quarantine_file(dir, path, &format!("{id:020}.seg"), name, why, 0, metrics);
        return Ok(None);
    }
    let mut off = SEGMENT_HEADER;
    let mut buf = Vec::new();
    let mut bad: Option<(&'static str, bool)> = None;
    while off < file_len {
        match read_record_at(&file, off, file_len, &mut buf) {
            Ok(end) => off = end,
            Err(RecordError::Torn) => {
                bad = Some(("torn record", true));
                break;
            }
            Err(RecordError::Corrupt(why)) => {
                // A whole record that is bad: if it is the very last one it is a torn
                // write (a crash between extending the file and writing its bytes);
                // otherwise real corruption, and what follows is kept in quarantine.
                let end = record_end(&file, off).unwrap_or(file_len);
                bad = Some((why, end >= file_len));
                break;
            }
        }
    }
    if let Some((why, torn)) = bad {
        if !torn {
            let tail_name = format!("{id:020}-tail-{off}.seg");
            copy_tail_to_quarantine(dir, &file, off, file_len, &tail_name, name, why, metrics);
        } else {
            tracing::info!(
                sink = name,
                segment = %path.display(),
                offset = off,
                bytes = file_len - off,
                "disk buffer: cut off the torn tail of the last segment (expected after a crash)"
            );
        }
        file.set_len(off).map_err(file_err(path, "truncate torn tail"))?;
        file.sync_all().map_err(file_err(path, "sync after truncation"))?;
    }
    Ok(Some(off))
}

/// Where the record at `off` claims to end (`None` if its header cannot be read).
fn record_end(file: &File, off: u64) -> Option<u64> {
    let mut h = [0u8; RECORD_HEADER as usize];
    file.read_exact_at(&mut h, off).ok()?;
    Some(off + RECORD_HEADER + u32::from_le_bytes(h[0..4].try_into().ok()?) as u64)
}

fn check_header(h: &[u8]) -> Result<(), &'static str> {
    if &h[0..8] != SEGMENT_MAGIC {
        return Err("not a segment file (bad magic)");
    }
    if u32::from_le_bytes(h[8..12].try_into().expect("4 bytes")) != codec::FORMAT_VERSION {
        return Err("unknown segment format version");
    }
    Ok(())
}

enum RecordError {
    /// The record runs past the end of the data (a torn write).
    Torn,
    /// The record is complete but wrong.
    Corrupt(&'static str),
}

/// Reads and checks (length, CRC) the record at `off` into `buf` (the body); returns
/// where it ends.
fn read_record_at(file: &File, off: u64, limit: u64, buf: &mut Vec<u8>) -> Result<u64, RecordError> {
    if off + RECORD_HEADER > limit {
        return Err(RecordError::Torn);
    }
    let mut h = [0u8; RECORD_HEADER as usize];
    file.read_exact_at(&mut h, off).map_err(|_| RecordError::Corrupt("unreadable record header"))?;
    let len = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as u64;
    let crc = u32::from_le_bytes(h[4..8].try_into().expect("4 bytes"));
    if len < BODY_PREFIX as u64 || len > MAX_RECORD_BODY {
        return Err(RecordError::Corrupt("impossible record length"));
    }
    if off + RECORD_HEADER + len > limit {
        return Err(RecordError::Torn);
    }
    buf.clear();
    buf.resize(len as usize, 0);
    file.read_exact_at(buf, off + RECORD_HEADER).map_err(|_| RecordError::Corrupt("unreadable record"))?;
    if crc32fast::hash(buf) != crc {
        return Err(RecordError::Corrupt("checksum mismatch"));
    }
    Ok(off + RECORD_HEADER + len)
}

/// Items in the records of a segment from `from` on, reading only record headers. Stops
/// at the first implausible header (the reader will find and handle it).
fn count_events(path: &Path, from: u64, len: u64) -> u64 {
    let Ok(file) = File::open(path) else { return 0 };
    let mut off = SEGMENT_HEADER;
    let mut events = 0;
    let mut h = [0u8; RECORD_HEADER as usize + BODY_PREFIX];
    while off + h.len() as u64 <= len {
        if file.read_exact_at(&mut h, off).is_err() {
            break;
        }
        let body = u32::from_le_bytes(h[0..4].try_into().expect("4 bytes")) as u64;
        if !(BODY_PREFIX as u64..=MAX_RECORD_BODY).contains(&body) || off + RECORD_HEADER + body > len {
            break;
        }
        if off >= from {
            events += u32::from_le_bytes(h[16..20].try_into().expect("4 bytes")) as u64;
        }
        off += RECORD_HEADER + body;
    }
    events
}

fn quarantine_dir(dir: &Path) -> PathBuf {
    dir.join(QUARANTINE)
}

/// A free name in the quarantine directory for `file_name`.
fn quarantine_target(dir: &Path, file_name: &str) -> PathBuf {
    let q = quarantine_dir(dir);
    let mut target = q.join(file_name);
    let mut n = 1;
    while target.exists() && n < 1000 {
        target = q.join(format!("{file_name}.{n}"));
        n += 1;
    }
    target
}

/// Moves a corrupt segment to `quarantine/`, counts and reports it. Never fails: when the
/// move itself fails the file is left where it is (and skipped by this run).
fn quarantine_file(dir: &Path, path: &Path, file_name: &str, name: &str, why: &str, offset: u64, m: &SinkMetrics) {
    m.add_corrupt_segment();
    let target = quarantine_target(dir, file_name);
    let moved = fs::create_dir_all(quarantine_dir(dir)).and_then(|()| fs::rename(path, &target));
    match moved {
        Ok(()) => tracing::warn!(
            sink = name,
            segment = %path.display(),
            quarantined = %target.display(),
            offset,
            reason = why,
            "disk buffer: corrupt segment moved to quarantine; delivery continues with the next segment"
        ),
        Err(e) => tracing::error!(
            sink = name,
            segment = %path.display(),
            offset,
            reason = why,
            error = %e,
            "disk buffer: corrupt segment could not be moved to quarantine; skipped"
        ),
    }
}

/// Copies the bytes of a segment from `off` on into `quarantine/` (before the caller
/// truncates them), counts and reports it.
#[allow(clippy::too_many_arguments)]
fn copy_tail_to_quarantine(
    dir: &Path,
    file: &File,
    off: u64,
    end: u64,
    file_name: &str,
    name: &str,
    why: &str,
    m: &SinkMetrics,
) {
    m.add_corrupt_segment();
    let target = quarantine_target(dir, file_name);
    let copied = (|| -> io::Result<()> {
        fs::create_dir_all(quarantine_dir(dir))?;
        let mut out = File::create(&target)?;
        let mut buf = vec![0u8; 1 << 20];
        let mut pos = off;
        while pos < end {
            let n = ((end - pos) as usize).min(buf.len());
            file.read_exact_at(&mut buf[..n], pos)?;
            out.write_all(&buf[..n])?;
            pos += n as u64;
        }
        out.sync_all()
    })();
    match copied {
        Ok(()) => tracing::warn!(
            sink = name,
            quarantined = %target.display(),
            offset = off,
            reason = why,
            "disk buffer: corrupt records at the end of the last segment moved to quarantine"
        ),
        Err(e) => tracing::error!(
            sink = name,
            offset = off,
            reason = why,
            error = %e,
            "disk buffer: corrupt records at the end of the last segment could not be saved to quarantine; cut off"
        ),
    }
}

fn read_position(dir: &Path, name: &str) -> Option<(u64, u64)> {
    let path = dir.join(POSITION_FILE);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(sink = name, file = %path.display(), error = %e, "disk buffer: position unreadable; delivering every buffered record again");
            return None;
        }
    };
    let valid = bytes.len() == 28
        && &bytes[0..8] == POSITION_MAGIC
        && crc32fast::hash(&bytes[0..24]) == u32::from_le_bytes(bytes[24..28].try_into().expect("4 bytes"));
    if !valid {
        tracing::warn!(sink = name, file = %path.display(), "disk buffer: position file is corrupt; delivering every buffered record again");
        return None;
    }
    let seg = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes"));
    let off = u64::from_le_bytes(bytes[16..24].try_into().expect("8 bytes"));
    Some((seg, off))
}

fn write_position(dir: &Path, seg: u64, off: u64) -> io::Result<()> {
    let mut b = [0u8; 28];
    b[0..8].copy_from_slice(POSITION_MAGIC);
    b[8..16].copy_from_slice(&seg.to_le_bytes());
    b[16..24].copy_from_slice(&off.to_le_bytes());
    let crc = crc32fast::hash(&b[0..24]);
    b[24..28].copy_from_slice(&crc.to_le_bytes());
    let tmp = dir.join(POSITION_TMP);
    fs::write(&tmp, b)?;
    fs::rename(&tmp, dir.join(POSITION_FILE))
}

// ---------------------------------------------------------------------------------------
// Writer

enum AppendError {
    /// `max_bytes` reached.
    Full,
    /// The file system refused the write.
    Io(io::Error),
}

enum Written {
    /// Every record of the batch is written.
    Done,
    /// Dropped under `drop_newest` (counted).
    Dropped,
    /// Not written: shutting down.
    Abandoned,
}

struct Writer {
    shared: Arc<Shared>,
    opts: Options,
    seg_size: u64,
    file: Option<File>,
    /// The open segment's id and length.
    seg: u64,
    len: u64,
    next_seg: u64,
    /// Takes the encode buffers back for reuse.
    encoder: Arc<Encoder>,
    _lock: Arc<File>,
    unsynced: bool,
    last_sync: Instant,
    /// Inside a run of failed writes (logged once at its start and once at its end).
    error_episode: bool,
    shutdown: CancellationToken,
}

/// Batches written between two fsyncs at most, under `always`.
const GROUP_MAX: usize = 64;

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Msg>) {
        let mut group: Vec<Encoded> = Vec::with_capacity(GROUP_MAX);
        let mut acks = Vec::with_capacity(GROUP_MAX);
        let mut stop = false;
        while !stop {
            match rx.blocking_recv() {
                None | Some(Msg::Stop) => break,
                Some(Msg::Tick) => {
                    self.tick();
                    continue;
                }
                Some(Msg::Records(e)) => group.push(e),
            }
            while group.len() < GROUP_MAX {
                match rx.try_recv() {
                    Ok(Msg::Records(e)) => group.push(e),
                    Ok(Msg::Tick) => {}
                    Ok(Msg::Stop) => {
                        stop = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            for mut enc in group.drain(..) {
                let ack = enc.ack.take();
                match self.write_records(&enc, true) {
                    Written::Done => acks.push(ack),
                    Written::Dropped => {
                        if let Some(a) = ack {
                            a.done();
                        }
                    }
                    // Dropped undecided: the source re-reads.
                    Written::Abandoned => drop(ack),
                }
                self.encoder.give_back(enc.buf);
            }
            self.commit_group(&mut acks);
            if self.shutdown.is_cancelled() {
                break;
            }
        }
        // Shutting down: write what was already accepted if there is room, without
        // waiting; the rest fails its acknowledgement.
        while let Ok(msg) = rx.try_recv() {
            if let Msg::Records(mut enc) = msg {
                let ack = enc.ack.take();
                if let Written::Done = self.write_records(&enc, false) {
                    acks.push(ack);
                }
            }
        }
        self.commit_group(&mut acks);
        if let Some(f) = &self.file
            && self.unsynced
            && self.opts.fsync != FsyncPolicy::Never
        {
            let _ = f.sync_data();
        }
        tracing::debug!(sink = %self.shared.name, "disk buffer writer stopped");
    }

    /// Makes the group durable as the policy says and resolves its acknowledgements.
    fn commit_group(&mut self, acks: &mut Vec<Option<crate::ack::AckToken>>) {
        let ok = match self.opts.fsync {
            FsyncPolicy::Always => self.sync(),
            FsyncPolicy::Interval(d) => {
                if self.last_sync.elapsed() >= d {
                    // An interval fsync failing does not fail these batches: they were
                    // never promised to be synced.
                    let _ = self.sync();
                }
                true
            }
            FsyncPolicy::Never => true,
        };
        for ack in acks.drain(..).flatten() {
            if ok { ack.done() } else { ack.fail() }
        }
    }

    fn tick(&mut self) {
        if let FsyncPolicy::Interval(d) = self.opts.fsync
            && self.unsynced
            && self.last_sync.elapsed() >= d
        {
            let _ = self.sync();
        }
    }

    fn sync(&mut self) -> bool {
        if !self.unsynced {
            return true;
        }
        let Some(f) = &self.file else { return true };
        match f.sync_data() {
            Ok(()) => {
                self.unsynced = false;
                self.last_sync = Instant::now();
                true
            }
            Err(e) => {
                self.shared.metrics.add_write_error(is_no_space(&e));
                tracing::error!(
                    sink = %self.shared.name,
                    segment = %self.shared.seg_path(self.seg).display(),
                    error = %e,
                    "disk buffer: fsync failed; the batches it covered will be re-sent by their sources"
                );
                false
            }
        }
    }

    /// Appends the records of one batch; see [`Written`].
    fn write_records(&mut self, enc: &Encoded, wait: bool) -> Written {
        let mut outcome = Written::Done;
        for (i, &(start, end, items)) in enc.recs.iter().enumerate() {
            loop {
                let err = match self.append(&enc.buf[start..end], items) {
                    Ok(()) => {
                        if self.error_episode {
                            self.error_episode = false;
                            tracing::info!(sink = %self.shared.name, "disk buffer: writes succeed again");
                        }
                        break;
                    }
                    Err(e) => e,
                };
                let io_error = match &err {
                    AppendError::Full => None,
                    AppendError::Io(e) => {
                        let no_space = is_no_space(e);
                        self.shared.metrics.add_write_error(no_space);
                        if !self.error_episode {
                            self.error_episode = true;
                            tracing::error!(
                                sink = %self.shared.name,
                                dir = %self.shared.dir.display(),
                                error = %e,
                                policy = ?self.opts.when_full,
                                "disk buffer: write failed; treating the buffer as full until a write succeeds"
                            );
                        }
                        Some(no_space)
                    }
                };
                if self.recycle_delivered_segment() {
                    // The open segment was wholly delivered and is gone: try again at once.
                    continue;
                }
                if !wait {
                    return Written::Abandoned;
                }
                if self.opts.when_full == WhenFull::DropNewest {
                    let rest: u64 = enc.recs[i..].iter().map(|r| r.2 as u64).sum();
                    self.shared.metrics.add_dropped(DropReason::BufferFull, rest);
                    outcome = Written::Dropped;
                    break;
                }
                if !self.wait_for_space(end - start, io_error.is_some()) {
                    return Written::Abandoned;
                }
            }
            if let Written::Dropped = outcome {
                break;
            }
        }
        outcome
    }

    /// When a write failed (full buffer, full disk) while the open segment is wholly
    /// delivered, deletes that segment so a new one can take its place. Without this a
    /// full disk holding nothing but one delivered, still-open segment would never free
    /// up: the reader deletes only closed segments, and closing needs a new file.
    fn recycle_delivered_segment(&mut self) -> bool {
        if self.file.is_none() || self.len <= SEGMENT_HEADER {
            return false;
        }
        let mut st = self.shared.lock();
        let delivered = st.segments.get(&self.seg).is_some_and(|m| m.events == 0 && m.len == self.len);
        if !delivered {
            return false;
        }
        self.file = None;
        let path = self.shared.seg_path(self.seg);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(sink = %self.shared.name, segment = %path.display(), error = %e, "disk buffer: cannot delete delivered segment");
            return false;
        }
        if let Some(m) = st.segments.remove(&self.seg) {
            st.total_bytes = st.total_bytes.saturating_sub(m.len);
        }
        // Until the next segment exists, the reader waits for it.
        st.write_seg = self.next_seg;
        self.shared.publish(&st);
        drop(st);
        self.unsynced = false;
        self.shared.data.notify_one();
        true
    }

    /// Waits until a record of `need` bytes fits (or, after a write error, a second).
    /// `false` when shutting down.
    fn wait_for_space(&self, need: usize, after_error: bool) -> bool {
        let deadline = Instant::now() + RETRY_WRITE;
        let mut st = self.shared.lock();
        loop {
            if self.shutdown.is_cancelled() {
                return false;
            }
            let now = Instant::now();
            if after_error && now >= deadline {
                return true;
            }
            if !after_error && st.total_bytes + need as u64 + SEGMENT_HEADER <= self.opts.max_bytes {
                return true;
            }
            let wait = if after_error { deadline - now } else { RETRY_WRITE };
            st = self.shared.space.wait_timeout(st, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    fn append(&mut self, record: &[u8], items: u32) -> Result<(), AppendError> {
        let need = record.len() as u64;
        let rotate = {
            let st = self.shared.lock();
            let rotate = self.file.is_none()
                || st.rotate_requested
                || (self.len + need > self.seg_size && self.len > SEGMENT_HEADER);
            let extra = if rotate { SEGMENT_HEADER } else { 0 };
            if st.total_bytes + need + extra > self.opts.max_bytes {
                return Err(AppendError::Full);
            }
            rotate
        };
        if rotate {
            self.rotate().map_err(AppendError::Io)?;
        }
        let file = self.file.as_mut().expect("a segment is open after rotate");
        if let Err(e) = file.write_all(record) {
            // Cut the partial record off so the segment stays valid.
            let _ = file.set_len(self.len);
            return Err(AppendError::Io(e));
        }
        self.len += need;
        self.unsynced = true;
        {
            let mut st = self.shared.lock();
            if let Some(m) = st.segments.get_mut(&self.seg) {
                m.len = self.len;
                m.events += items as u64;
            }
            st.total_bytes += need;
            st.total_events += items as u64;
            self.shared.publish(&st);
        }
        self.shared.data.notify_one();
        Ok(())
    }

    /// Closes the current segment (fsynced unless the policy is `never`) and starts the
    /// next one.
    fn rotate(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.take()
            && self.unsynced
            && self.opts.fsync != FsyncPolicy::Never
        {
            // The group's final fsync covers only the open segment, so the one being
            // closed is synced now.
            if let Err(e) = f.sync_data() {
                self.file = Some(f);
                return Err(e);
            }
            self.unsynced = false;
            self.last_sync = Instant::now();
        }
        let id = self.next_seg;
        let path = self.shared.seg_path(id);
        let mut f = OpenOptions::new().create_new(true).append(true).open(&path)?;
        // The id is used up even if what follows fails (ids may have gaps).
        self.next_seg += 1;
        let mut header = [0u8; SEGMENT_HEADER as usize];
        header[0..8].copy_from_slice(SEGMENT_MAGIC);
        header[8..12].copy_from_slice(&codec::FORMAT_VERSION.to_le_bytes());
        let mut ready = f.write_all(&header);
        if ready.is_ok() && self.opts.fsync == FsyncPolicy::Always {
            // The new file's directory entry must survive a power loss too.
            ready = File::open(&self.shared.dir).and_then(|d| d.sync_all());
        }
        if let Err(e) = ready {
            drop(f);
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        self.seg = id;
        self.len = SEGMENT_HEADER;
        self.file = Some(f);
        self.unsynced = true;
        {
            let mut st = self.shared.lock();
            st.write_seg = id;
            st.rotate_requested = false;
            st.segments.insert(id, SegMeta { len: SEGMENT_HEADER, events: 0 });
            st.total_bytes += SEGMENT_HEADER;
            self.shared.publish(&st);
        }
        // The previous segment is closed: the reader may now finish and delete it.
        self.shared.data.notify_one();
        Ok(())
    }
}

/// Splits a batch into two halves by item count (order kept within each signal).
fn split(mut b: Batch) -> (Batch, Batch) {
    let n = b.len();
    let mut need = n - n / 2;
    let mut second = Batch::default();
    let take = need.min(b.spans.len());
    second.spans = b.spans.split_off(b.spans.len() - take);
    need -= take;
    let take = need.min(b.logs.len());
    second.logs = b.logs.split_off(b.logs.len() - take);
    need -= take;
    let take = need.min(b.metrics.len());
    second.metrics = b.metrics.split_off(b.metrics.len() - take);
    (b, second)
}

// ---------------------------------------------------------------------------------------
// Reader

/// The reading side, owned by the sink's runner.
pub(crate) struct DiskReader {
    shared: Arc<Shared>,
    core: Option<Box<ReadCore>>,
    lock: Option<Arc<File>>,
}

struct ReadCore {
    shared: Arc<Shared>,
    /// The next record to read.
    seg: u64,
    off: u64,
    file: Option<(u64, File)>,
    buf: Vec<u8>,
    /// A delivered position not yet written to the position file.
    commit: Option<(u64, u64)>,
}

impl DiskReader {
    /// The next record, waiting for one; `None` once `shutdown` fires.
    pub(crate) async fn next(&mut self, shutdown: &CancellationToken) -> Option<Pending> {
        loop {
            if shutdown.is_cancelled() {
                return None;
            }
            let mut core = self.core.take()?;
            let (core, found) = match tokio::task::spawn_blocking(move || {
                let found = core.step();
                (core, found)
            })
            .await
            {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(sink = %self.shared.name, error = %e, "disk buffer reader failed; delivery from this buffer stops until restart");
                    return None;
                }
            };
            self.core = Some(core);
            if let Some(p) = found {
                return Some(p);
            }
            tokio::select! {
                _ = self.shared.data.notified() => {}
                _ = shutdown.cancelled() => return None,
            }
        }
    }

    /// The batch read last was delivered (or dropped): move past it.
    pub(crate) fn commit(&mut self, pos: Position) {
        {
            let mut st = self.shared.lock();
            if let Some(m) = st.segments.get_mut(&pos.seg) {
                m.events = m.events.saturating_sub(pos.items);
            }
            st.total_events = st.total_events.saturating_sub(pos.items);
            self.shared.publish(&st);
        }
        if let Some(core) = self.core.as_mut() {
            core.commit = Some((pos.seg, pos.off));
        }
    }

    /// Writes the last delivered position to disk.
    pub(crate) async fn close(&mut self) {
        if let Some(mut core) = self.core.take() {
            let _ = tokio::task::spawn_blocking(move || core.flush_commit()).await;
        }
        self.lock = None;
    }
}

impl ReadCore {
    fn flush_commit(&mut self) {
        if let Some((seg, off)) = self.commit.take()
            && let Err(e) = write_position(&self.shared.dir, seg, off)
        {
            // Not fatal: after a restart the batches since the last good position are
            // delivered again.
            tracing::warn!(sink = %self.shared.name, dir = %self.shared.dir.display(), error = %e, "disk buffer: cannot save read position");
        }
    }

    /// Reads the next record if there is one now. Deletes segments left behind and
    /// quarantines corrupt ones on the way.
    fn step(&mut self) -> Option<Pending> {
        self.flush_commit();
        loop {
            let (limit, sealed) = {
                let st = self.shared.lock();
                match st.segments.get(&self.seg) {
                    Some(m) => (m.len, self.seg != st.write_seg),
                    None => {
                        // Deleted or quarantined: go on with the next one, or wait for
                        // the segment the writer will create next.
                        let next = st.segments.range(self.seg..).next().map(|(id, _)| *id);
                        self.seg = next.unwrap_or(st.write_seg.max(self.seg));
                        self.off = SEGMENT_HEADER;
                        self.file = None;
                        if next.is_some() {
                            continue;
                        }
                        return None;
                    }
                }
            };
            if self.off < limit {
                match self.read(limit) {
                    Ok(p) => return Some(p),
                    Err(why) => {
                        if !sealed {
                            // Being written: have the writer move on, then quarantine.
                            self.shared.lock().rotate_requested = true;
                            return None;
                        }
                        self.quarantine(why);
                        continue;
                    }
                }
            }
            if !sealed {
                // Caught up with the writer. Close the file while waiting: the writer may
                // delete this segment (see `recycle_delivered_segment`), and an open
                // handle would keep its space from being freed.
                self.file = None;
                return None;
            }
            self.delete_segment();
        }
    }

    fn open_segment(&mut self) -> Result<(), &'static str> {
        if matches!(&self.file, Some((id, _)) if *id == self.seg) {
            return Ok(());
        }
        self.file = None;
        let path = self.shared.seg_path(self.seg);
        let file = File::open(&path).map_err(|_| "segment cannot be opened")?;
        let mut h = [0u8; SEGMENT_HEADER as usize];
        file.read_exact_at(&mut h, 0).map_err(|_| "segment header unreadable")?;
        check_header(&h)?;
        self.file = Some((self.seg, file));
        Ok(())
    }

    fn read(&mut self, limit: u64) -> Result<Pending, &'static str> {
        self.open_segment()?;
        let (_, file) = self.file.as_ref().expect("opened");
        let end = match read_record_at(file, self.off, limit, &mut self.buf) {
            Ok(end) => end,
            Err(RecordError::Torn) => return Err("record runs past the end of the segment"),
            Err(RecordError::Corrupt(why)) => return Err(why),
        };
        let enqueued = u64::from_le_bytes(self.buf[0..8].try_into().expect("8 bytes"));
        let items = u32::from_le_bytes(self.buf[8..12].try_into().expect("4 bytes")) as u64;
        let batch = codec::decode(&self.buf[BODY_PREFIX..]).map_err(|_| "undecodable payload")?;
        if batch.len() as u64 != items {
            return Err("item count does not match the payload");
        }
        self.off = end;
        if self.buf.capacity() > 16 * 1024 * 1024 {
            self.buf = Vec::new();
        }
        let age = Duration::from_millis(now_unix_ms().saturating_sub(enqueued));
        let now = Instant::now();
        Ok(Pending {
            batch: Redacted::from_own_storage(batch),
            enqueued: now.checked_sub(age).unwrap_or(now),
            commit: Some(Position { seg: self.seg, off: end, items }),
        })
    }

    fn forget_segment(&mut self) {
        self.file = None;
        let mut st = self.shared.lock();
        if let Some(m) = st.segments.remove(&self.seg) {
            st.total_bytes = st.total_bytes.saturating_sub(m.len);
            st.total_events = st.total_events.saturating_sub(m.events);
        }
        self.shared.publish(&st);
        drop(st);
        self.shared.space.notify_all();
    }

    fn delete_segment(&mut self) {
        let path = self.shared.seg_path(self.seg);
        if let Err(e) = fs::remove_file(&path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(sink = %self.shared.name, segment = %path.display(), error = %e, "disk buffer: cannot delete delivered segment");
        }
        self.forget_segment();
    }

    fn quarantine(&mut self, why: &'static str) {
        let path = self.shared.seg_path(self.seg);
        self.file = None;
        quarantine_file(
            &self.shared.dir,
            &path,
            &format!("{:020}.seg", self.seg),
            &self.shared.name,
            why,
            self.off,
            &self.shared.metrics,
        );
        self.forget_segment();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_halves_keep_order_and_items() {
        use crate::signal::LogRecord;
        let logs: Vec<LogRecord> = (0..5).map(|i| LogRecord { time_unix_nano: i, ..LogRecord::default() }).collect();
        let (a, b) = split(Batch::logs(logs));
        assert_eq!(a.logs.iter().map(|l| l.time_unix_nano).collect::<Vec<_>>(), vec![0, 1]);
        assert_eq!(b.logs.iter().map(|l| l.time_unix_nano).collect::<Vec<_>>(), vec![2, 3, 4]);
    }

    #[test]
    fn position_file_round_trips_and_rejects_damage() {
        let dir = std::env::temp_dir().join(format!("warden-pos-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        write_position(&dir, 7, 1234).unwrap();
        assert_eq!(read_position(&dir, "t"), Some((7, 1234)));
        let mut b = fs::read(dir.join(POSITION_FILE)).unwrap();
        b[10] ^= 1;
        fs::write(dir.join(POSITION_FILE), &b).unwrap();
        assert_eq!(read_position(&dir, "t"), None);
        fs::write(dir.join(POSITION_FILE), b"short").unwrap();
        assert_eq!(read_position(&dir, "t"), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn segment_sizes_scale_with_the_buffer() {
        assert_eq!(segment_size(256 * 1024 * 1024), 32 * 1024 * 1024);
        assert_eq!(segment_size(1024 * 1024), 128 * 1024);
        assert_eq!(segment_size(1000), 16 * 1024);
        assert_eq!(segment_size(u64::MAX), 32 * 1024 * 1024);
    }
}
