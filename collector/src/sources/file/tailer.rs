//! The tailer: one task that owns every tracked file, reads them in turn (each read on
//! the blocking pool, so a slow disk never stalls the runtime), cuts batches, follows
//! acknowledgements and saves checkpoints. See the parent module for the design.

use super::checkpoint::{CheckpointFile, Entry, FINGERPRINT_BYTES, Fingerprint, read_head};
use super::discover::{self, DirWatcher, EV_DIR, EV_STRUCT, Found, Patterns};
use super::reader::{Pending, READ_BUFFER_BYTES, Reader, Shared, Step};
use super::{Config, StartAt};
use crate::ack::{AckOutcome, AckToken};
use crate::pipeline::{Counter, SourceContext};
use crate::signal::Batch;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Checkpoints are written at most this often (and on shutdown).
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);
/// Event-triggered rescans are at least this far apart.
const RESCAN_MIN_INTERVAL: Duration = Duration::from_millis(20);
/// Retry delays after a read error or a failed batch: doubling from the first to the
/// second, reset by a delivered batch.
const RETRY_MIN: Duration = Duration::from_millis(10);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// On shutdown, how long to wait for outstanding acknowledgements before saving.
const SHUTDOWN_ACK_WAIT: Duration = Duration::from_secs(2);
/// At most this many paths are remembered as "open failed, already logged".
const MAX_OPEN_FAILED: usize = 4096;
/// `start_at: end` looks this far back from the end for the last newline.
const START_AT_END_LOOKBACK: u64 = 64 << 10;

/// Returned when the loop must stop (shutdown, or nobody reads the output).
struct Stop;

/// One batch sent and not yet settled.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    seq: u64,
    generation: u32,
    start: u64,
    end: u64,
    records: usize,
    delivered: bool,
}

/// Everything known about one file (one device + inode).
#[derive(Debug)]
struct Tracked {
    dev: u64,
    ino: u64,
    /// Where it was last seen (a rotated file keeps its old path here).
    path: PathBuf,
    /// The open file; `None` when closed to stay under `max_open_files` ("dormant").
    reader: Option<Box<Reader>>,
    /// The fingerprint as of the last read (the reader's copy is authoritative while open).
    fingerprint: Fingerprint,
    /// Bumped on every truncation: batches of an older generation cannot be re-read.
    generation: u32,
    /// Every line before this offset is acknowledged.
    committed: u64,
    inflight: VecDeque<InFlight>,
    next_seq: u64,
    /// Records read but not sent yet.
    pending: Pending,
    /// Offset where `pending` starts (the end of the last batch sent).
    pending_start: u64,
    pending_since: Option<Instant>,
    /// The file may have unread data (an event, a poll, or the last read was not at EOF).
    maybe_more: bool,
    eof_since: Option<Instant>,
    last_active: Instant,
    /// Its path no longer leads to it (renamed away or deleted).
    rotated: bool,
    /// The incomplete last line of a rotated file was emitted.
    finished: bool,
    retry_at: Option<Instant>,
    backoff: Duration,
}

impl Tracked {
    fn new(dev: u64, ino: u64, path: PathBuf, offset: u64, fingerprint: Fingerprint, reader: Reader) -> Tracked {
        Tracked {
            dev,
            ino,
            path,
            reader: Some(Box::new(reader)),
            fingerprint,
            generation: 0,
            committed: offset,
            inflight: VecDeque::new(),
            next_seq: 0,
            pending: Pending::default(),
            pending_start: offset,
            pending_since: None,
            maybe_more: true,
            eof_since: None,
            last_active: Instant::now(),
            rotated: false,
            finished: false,
            retry_at: None,
            backoff: Duration::ZERO,
        }
    }

    fn fingerprint(&self) -> Fingerprint {
        self.reader.as_ref().map_or(self.fingerprint, |r| r.fingerprint)
    }

    fn retry_later(&mut self, now: Instant) {
        self.backoff = (self.backoff * 2).clamp(RETRY_MIN, RETRY_MAX);
        self.retry_at = Some(now + self.backoff);
    }
}

struct AckEvent {
    file: u64,
    seq: u64,
    outcome: AckOutcome,
}

/// Outcomes reported by ack callbacks (on consumers' tasks). Holds at most one event per
/// batch in flight, which `max_unacked_batches` bounds per file.
#[derive(Default)]
struct AckQueue {
    events: Mutex<Vec<AckEvent>>,
    notify: Notify,
}

impl AckQueue {
    fn push(&self, ev: AckEvent) {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(ev);
        self.notify.notify_one();
    }

    fn take(&self) -> Vec<AckEvent> {
        std::mem::take(&mut *self.events.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// A file opened by the blocking pool, not yet tracked.
struct Opened {
    path: PathBuf,
    file: File,
    dev: u64,
    ino: u64,
    size: u64,
    head: Vec<u8>,
    /// For `start_at: end`: the offset after the last complete line.
    tail_start: u64,
}

fn open_file(path: &Path, want_tail: bool) -> io::Result<Opened> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let size = meta.len();
    let mut buf = [0u8; FINGERPRINT_BYTES];
    let n = read_head(&file, &mut buf, size)?;
    let tail_start = if want_tail { last_line_end(&file, size)? } else { 0 };
    Ok(Opened {
        path: path.to_path_buf(),
        dev: meta.dev(),
        ino: meta.ino(),
        size,
        head: buf[..n].to_vec(),
        file,
        tail_start,
    })
}

/// The offset after the last newline in the final [`START_AT_END_LOOKBACK`] bytes, or
/// `size` if there is none.
fn last_line_end(file: &File, size: u64) -> io::Result<u64> {
    let from = size.saturating_sub(START_AT_END_LOOKBACK);
    let mut buf = vec![0u8; (size - from) as usize];
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], from + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(memchr::memrchr(b'\n', &buf[..got]).map_or(size, |i| from + i as u64 + 1))
}

/// Source-specific counters.
struct Counters {
    files_rotated: Arc<Counter>,
    files_deleted: Arc<Counter>,
    files_truncated: Arc<Counter>,
    files_deferred: Arc<Counter>,
    batches_failed: Arc<Counter>,
}

pub(crate) struct Tailer {
    cfg: Config,
    patterns: Arc<Patterns>,
    shared: Arc<Shared>,
    ctx: SourceContext,
    files: BTreeMap<u64, Tracked>,
    by_ident: HashMap<(u64, u64), u64>,
    by_path: HashMap<PathBuf, u64>,
    next_id: u64,
    /// Checkpoints not matched to a tracked file yet.
    saved: HashMap<(u64, u64), Entry>,
    checkpoint: CheckpointFile,
    dirty: bool,
    last_save: Instant,
    acks: Arc<AckQueue>,
    watcher: DirWatcher,
    /// The shared read buffer (lent to one blocking read at a time).
    buf: Vec<u8>,
    first_scan_done: bool,
    next_poll: Instant,
    rescan: bool,
    last_scan: Instant,
    counters: Counters,
    out_closed: bool,
    /// Paths whose open failed and was logged (bounded; cleared on success).
    open_failed: HashSet<PathBuf>,
}

impl Tailer {
    pub fn new(cfg: Config, ctx: SourceContext) -> Result<Tailer, String> {
        let patterns = Patterns::compile(&cfg.include, &cfg.exclude)?;
        let multiline = match &cfg.multiline {
            Some(m) => Some(m.compile().map_err(|e| format!("multiline.start_pattern: {e}"))?),
            None => None,
        };
        let stats = &ctx.stats;
        let shared = Shared {
            format: cfg.format,
            max_line_bytes: cfg.max_line_bytes,
            multiline,
            resource: cfg.build_resource(),
            scope: super::scope(),
            lines_truncated: stats.counter("lines_truncated"),
            invalid_utf8: stats.counter("invalid_utf8"),
            json_parse_errors: stats.counter("json_parse_errors"),
        };
        let counters = Counters {
            files_rotated: stats.counter("files_rotated"),
            files_deleted: stats.counter("files_deleted"),
            files_truncated: stats.counter("files_truncated"),
            files_deferred: stats.counter("files_deferred"),
            batches_failed: stats.counter("batches_failed"),
        };
        let now = Instant::now();
        Ok(Tailer {
            checkpoint: CheckpointFile::new(&ctx.data_dir, stats.name()),
            watcher: DirWatcher::new(stats.name()),
            cfg,
            patterns: Arc::new(patterns),
            shared: Arc::new(shared),
            ctx,
            files: BTreeMap::new(),
            by_ident: HashMap::new(),
            by_path: HashMap::new(),
            next_id: 0,
            saved: HashMap::new(),
            dirty: false,
            last_save: now,
            acks: Arc::default(),
            buf: vec![0u8; READ_BUFFER_BYTES],
            first_scan_done: false,
            next_poll: now,
            rescan: true,
            last_scan: now,
            counters,
            out_closed: false,
            open_failed: HashSet::new(),
        })
    }

    fn component(&self) -> &str {
        self.ctx.stats.name()
    }

    pub async fn run(mut self) {
        self.load_checkpoints().await;
        let shutdown = self.ctx.shutdown.clone();
        while !shutdown.is_cancelled() && !self.out_closed {
            self.drain_acks(false);
            self.drain_events();
            let now = Instant::now();
            if now >= self.next_poll || (self.rescan && now >= self.last_scan + RESCAN_MIN_INTERVAL) {
                self.scan(now >= self.next_poll).await;
            }
            let Ok(progressed) = self.read_round().await else { break };
            if self.timers().await.is_err() {
                break;
            }
            self.save(false).await;
            if !progressed {
                self.wait().await;
            }
        }
        if self.out_closed && !shutdown.is_cancelled() {
            tracing::warn!(component = self.component(), "file source: output closed; idle until shutdown");
            shutdown.cancelled().await;
        }
        self.shutdown().await;
    }

    // -----------------------------------------------------------------------------------
    // Checkpoints

    async fn load_checkpoints(&mut self) {
        let cp = self.checkpoint.clone();
        match tokio::task::spawn_blocking(move || cp.load()).await {
            Ok(Ok(entries)) => {
                self.saved = entries.into_iter().map(|e| ((e.dev, e.inode), e)).collect();
            }
            Ok(Err(error)) => {
                self.ctx.stats.errors.inc();
                tracing::warn!(component = self.component(), %error, "file source: ignoring checkpoint file; files start as if new");
            }
            Err(error) => {
                tracing::error!(component = self.component(), %error, "file source: checkpoint load task failed")
            }
        }
    }

    fn entries(&self) -> Vec<Entry> {
        let mut out: Vec<Entry> = self
            .files
            .values()
            .map(|t| Entry {
                dev: t.dev,
                inode: t.ino,
                fingerprint: t.fingerprint(),
                offset: t.committed,
                path: t.path.clone(),
            })
            .collect();
        out.extend(self.saved.values().cloned());
        out
    }

    async fn save(&mut self, force: bool) {
        let now = Instant::now();
        if !self.dirty || (!force && now < self.last_save + CHECKPOINT_INTERVAL) {
            return;
        }
        let entries = self.entries();
        let cp = self.checkpoint.clone();
        self.last_save = now;
        match tokio::task::spawn_blocking(move || cp.save(&entries)).await {
            Ok(Ok(())) => self.dirty = false,
            Ok(Err(error)) => {
                self.ctx.stats.errors.inc();
                tracing::warn!(component = self.component(), %error, "file source: cannot save checkpoints; will retry");
            }
            Err(error) => {
                tracing::error!(component = self.component(), %error, "file source: checkpoint save task failed")
            }
        }
    }

    async fn shutdown(&mut self) {
        let deadline = Instant::now() + SHUTDOWN_ACK_WAIT;
        loop {
            self.drain_acks(true);
            if self.files.values().all(|t| t.inflight.is_empty()) || Instant::now() >= deadline {
                break;
            }
            tokio::select! {
                _ = self.acks.notify.notified() => {}
                _ = tokio::time::sleep_until(deadline.into()) => {}
            }
        }
        self.save(true).await;
    }

    // -----------------------------------------------------------------------------------
    // Acknowledgements

    /// Applies ack outcomes: delivered batches commit in order; a failed batch rewinds its
    /// file to the batch's start (unless `draining`, when nothing is read any more).
    fn drain_acks(&mut self, draining: bool) {
        let now = Instant::now();
        for ev in self.acks.take() {
            if ev.outcome == AckOutcome::Failed {
                self.counters.batches_failed.inc();
            }
            let Some(t) = self.files.get_mut(&ev.file) else { continue };
            let Some(idx) = t.inflight.iter().position(|f| f.seq == ev.seq) else { continue };
            match ev.outcome {
                AckOutcome::Delivered => {
                    t.inflight[idx].delivered = true;
                    t.backoff = Duration::ZERO;
                }
                AckOutcome::Failed => {
                    let f = t.inflight[idx];
                    if f.generation != t.generation {
                        self.ctx.stats.dropped.add(f.records as u64);
                        tracing::warn!(
                            component = self.ctx.stats.name(),
                            path = %t.path.display(),
                            start = f.start,
                            end = f.end,
                            "file source: a batch failed after its file was truncated; its lines cannot be read again"
                        );
                        t.inflight.remove(idx);
                    } else if draining {
                        t.inflight.truncate(idx);
                    } else {
                        // This batch and every later one are read again; later ones already
                        // delivered may arrive twice (at least once).
                        tracing::debug!(path = %t.path.display(), offset = f.start, "file source: batch failed downstream; reading again");
                        t.inflight.truncate(idx);
                        t.pending.clear();
                        t.pending_since = None;
                        t.pending_start = f.start;
                        if let Some(r) = &mut t.reader {
                            r.rewind(f.start);
                        }
                        t.maybe_more = true;
                        t.eof_since = None;
                        t.finished = false;
                        t.retry_later(now);
                    }
                }
            }
            while let Some(front) = t.inflight.front()
                && front.delivered
            {
                if front.generation == t.generation && front.end > t.committed {
                    t.committed = front.end;
                    self.dirty = true;
                }
                t.inflight.pop_front();
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Discovery

    fn drain_events(&mut self) {
        let ev = self.watcher.events.take();
        if ev.overflow {
            self.rescan = true;
            for t in self.files.values_mut() {
                t.maybe_more = true;
            }
        }
        let any = ev.overflow || !ev.paths.is_empty();
        for (path, flags) in ev.paths {
            if let Some(id) = self.by_path.get(&path) {
                if let Some(t) = self.files.get_mut(id) {
                    t.maybe_more = true;
                    if t.reader.is_none() {
                        // Closed to stay under max_open_files: the scan reopens it.
                        self.rescan = true;
                    }
                }
                if flags & EV_STRUCT != 0 {
                    self.rescan = true;
                }
            } else if flags & EV_DIR != 0 || self.patterns.wanted(&path) {
                self.rescan = true;
            }
        }
        if any {
            // A rotated file is no longer at a path we know; any activity may be its writer.
            for t in self.files.values_mut().filter(|t| t.rotated) {
                t.maybe_more = true;
            }
        }
    }

    async fn scan(&mut self, poll: bool) {
        let now = Instant::now();
        self.last_scan = now;
        self.rescan = false;
        if poll {
            self.next_poll = now + self.cfg.poll_interval;
            for t in self.files.values_mut() {
                t.maybe_more = true;
            }
        }
        let patterns = Arc::clone(&self.patterns);
        let scan = match tokio::task::spawn_blocking(move || discover::scan(&patterns)).await {
            Ok(s) => s,
            Err(error) => {
                tracing::error!(component = self.component(), %error, "file source: scan task failed");
                return;
            }
        };
        if scan.errors > 0 {
            tracing::debug!(
                component = self.component(),
                errors = scan.errors,
                "file source: some directories could not be read"
            );
        }
        let found_idents: HashSet<(u64, u64)> = scan.found.iter().map(|f| (f.dev, f.ino)).collect();
        let mut seen = HashSet::new();
        let mut to_open = Vec::new();
        let mut to_reopen = Vec::new();
        for f in scan.found {
            let Some(&id) = self.by_ident.get(&(f.dev, f.ino)) else {
                to_open.push(f);
                continue;
            };
            seen.insert(id);
            let Some(t) = self.files.get_mut(&id) else { continue };
            if t.rotated {
                // Matched again (renamed to a name the globs also cover).
                t.rotated = false;
                t.finished = false;
            }
            if t.path != f.path {
                if let Some(r) = &mut t.reader {
                    r.set_path(&f.path);
                }
                t.path = f.path.clone();
                self.dirty = true;
            }
            if t.reader.is_none() && f.size != t.committed {
                to_reopen.push((id, f));
            }
        }
        // Files whose path no longer leads to them.
        let mut gone = Vec::new();
        for (&id, t) in self.files.iter_mut() {
            if seen.contains(&id) || t.rotated {
                continue;
            }
            let Some(reader) = &t.reader else {
                // Closed at its end with everything acknowledged; nothing left to read.
                gone.push(id);
                continue;
            };
            let deleted = reader.file().metadata().map(|m| m.nlink() == 0).unwrap_or(false);
            t.rotated = true;
            t.maybe_more = true;
            t.eof_since = None;
            let component = self.ctx.stats.name();
            if deleted {
                self.counters.files_deleted.inc();
                tracing::info!(component, path = %t.path.display(), offset = reader.pos(), "file source: file deleted; reading what is left");
            } else {
                self.counters.files_rotated.inc();
                tracing::info!(component, path = %t.path.display(), offset = reader.pos(), "file source: file rotated; reading it to the end");
            }
        }
        for id in gone {
            self.remove(id);
        }
        self.by_path = self.files.iter().filter(|(_, t)| !t.rotated).map(|(&id, t)| (t.path.clone(), id)).collect();
        if !self.first_scan_done {
            // Checkpoints of files that no longer exist are forgotten.
            self.saved.retain(|k, _| found_idents.contains(k));
            self.dirty = true;
        }
        self.open_files(to_reopen, to_open).await;
        self.first_scan_done = true;
        let mut dirs: Vec<PathBuf> = self.patterns.roots().to_vec();
        dirs.extend(self.files.values().filter_map(|t| t.path.parent().map(Path::to_path_buf)));
        dirs.sort();
        dirs.dedup();
        self.watcher.watch(dirs.iter().map(PathBuf::as_path));
        let keep: HashSet<&Path> = dirs.iter().map(PathBuf::as_path).collect();
        self.watcher.retain(&keep);
    }

    fn remove(&mut self, id: u64) {
        if let Some(t) = self.files.remove(&id) {
            self.by_ident.remove(&(t.dev, t.ino));
            if self.by_path.get(&t.path) == Some(&id) {
                self.by_path.remove(&t.path);
            }
            self.dirty = true;
        }
    }

    /// Opens new files and reopens dormant ones, within `max_open_files`.
    async fn open_files(&mut self, mut to_reopen: Vec<(u64, Found)>, mut to_open: Vec<Found>) {
        if to_reopen.is_empty() && to_open.is_empty() {
            return;
        }
        let open_now = self.files.values().filter(|t| t.reader.is_some()).count();
        let need = to_reopen.len() + to_open.len();
        let mut slots = self.cfg.max_open_files.saturating_sub(open_now);
        if slots < need {
            slots += self.evict(need - slots, &to_reopen.iter().map(|(id, _)| *id).collect());
        }
        if slots < need {
            let deferred = need - slots;
            self.counters.files_deferred.add(deferred as u64);
            tracing::debug!(component = self.component(), deferred, "file source: max_open_files reached; files wait");
            to_reopen.truncate(slots);
            to_open.truncate(slots - to_reopen.len());
        }
        let want_tail = !self.first_scan_done && self.cfg.start_at == StartAt::End;
        let reopen_paths: Vec<(u64, PathBuf)> = to_reopen.into_iter().map(|(id, f)| (id, f.path)).collect();
        let open_paths: Vec<PathBuf> = to_open.into_iter().map(|f| f.path).collect();
        let opened = tokio::task::spawn_blocking(move || {
            let re: Vec<(u64, PathBuf, io::Result<Opened>)> =
                reopen_paths.into_iter().map(|(id, p)| (id, p.clone(), open_file(&p, false))).collect();
            let new: Vec<(PathBuf, io::Result<Opened>)> =
                open_paths.into_iter().map(|p| (p.clone(), open_file(&p, want_tail))).collect();
            (re, new)
        })
        .await;
        let Ok((reopened, opened)) = opened else {
            tracing::error!(component = self.component(), "file source: open task failed");
            return;
        };
        for (id, path, res) in reopened {
            let o = match res {
                Ok(o) => o,
                Err(error) => {
                    self.open_error(&path, &error);
                    continue;
                }
            };
            self.reopen(id, o);
        }
        for (path, res) in opened {
            match res {
                Ok(o) => {
                    self.open_failed.remove(&path);
                    self.track(o);
                }
                Err(error) => self.open_error(&path, &error),
            }
        }
    }

    fn open_error(&mut self, path: &Path, error: &io::Error) {
        // A file that vanished between the glob and the open is not an error.
        if error.kind() == io::ErrorKind::NotFound {
            return;
        }
        self.ctx.stats.errors.inc();
        // Logged once per path (the scan retries every poll_interval).
        if self.open_failed.len() < MAX_OPEN_FAILED && self.open_failed.insert(path.to_path_buf()) {
            tracing::warn!(component = self.component(), path = %path.display(), %error, "file source: cannot open file");
        }
    }

    /// Starts tracking a newly opened file.
    fn track(&mut self, o: Opened) {
        let Opened { path, file, dev, ino, size, head, tail_start } = o;
        if self.by_ident.contains_key(&(dev, ino)) {
            return; // The path was replaced by a file we already track.
        }
        let fingerprint = Fingerprint::of(&head);
        let offset = match self.saved.remove(&(dev, ino)) {
            Some(e) if e.fingerprint.matches_head(&head) && e.offset <= size => e.offset,
            Some(e) => {
                tracing::info!(
                    component = self.component(),
                    path = %path.display(),
                    offset = e.offset,
                    size,
                    "file source: checkpointed file was truncated or its inode reused; reading from the start"
                );
                0
            }
            None if !self.first_scan_done && self.cfg.start_at == StartAt::End => tail_start,
            None => 0,
        };
        let id = self.next_id;
        self.next_id += 1;
        let reader = Reader::new(file, &path, offset, fingerprint, &self.shared);
        self.by_ident.insert((dev, ino), id);
        self.by_path.entry(path.clone()).or_insert(id);
        self.files.insert(id, Tracked::new(dev, ino, path, offset, fingerprint, reader));
        self.dirty = true;
    }

    /// Reopens a dormant file at its committed offset (or at 0 if it was truncated).
    fn reopen(&mut self, id: u64, o: Opened) {
        let Some(t) = self.files.get_mut(&id) else { return };
        if (o.dev, o.ino) != (t.dev, t.ino) {
            return; // Replaced since the scan; the next scan sorts it out.
        }
        let mut offset = t.committed;
        if !(t.fingerprint.matches_head(&o.head) && o.size >= t.committed) {
            self.counters.files_truncated.inc();
            tracing::info!(component = self.ctx.stats.name(), path = %t.path.display(), offset, size = o.size, "file source: file truncated while closed; reading from the start");
            offset = 0;
            t.generation += 1;
            t.committed = 0;
            t.pending_start = 0;
            self.dirty = true;
        }
        t.fingerprint = Fingerprint::of(&o.head);
        t.reader = Some(Box::new(Reader::new(o.file, &o.path, offset, t.fingerprint, &self.shared)));
        t.maybe_more = true;
        t.eof_since = None;
        t.last_active = Instant::now();
    }

    /// Closes up to `n` idle files (at their end, nothing pending or unacknowledged),
    /// least recently active first; returns how many.
    fn evict(&mut self, n: usize, keep: &HashSet<u64>) -> usize {
        let mut idle: Vec<(Instant, u64)> = self
            .files
            .iter()
            .filter(|(id, t)| {
                !keep.contains(id)
                    && !t.rotated
                    && t.eof_since.is_some()
                    && t.inflight.is_empty()
                    && t.pending.is_empty()
                    && t.reader.as_ref().is_some_and(|r| !r.holds_data() && r.pos() == t.committed)
            })
            .map(|(&id, t)| (t.last_active, id))
            .collect();
        idle.sort();
        let mut closed = 0;
        for (_, id) in idle.into_iter().take(n) {
            if let Some(t) = self.files.get_mut(&id)
                && let Some(r) = t.reader.take()
            {
                t.fingerprint = r.fingerprint;
                closed += 1;
            }
        }
        closed
    }

    // -----------------------------------------------------------------------------------
    // Reading and sending

    fn readable(&self, t: &Tracked, now: Instant) -> bool {
        t.reader.is_some()
            && t.maybe_more
            && t.retry_at.is_none_or(|r| r <= now)
            && t.inflight.len() < self.cfg.max_unacked_batches
            && t.pending.len() < self.cfg.batch_max_records
    }

    /// Sends what acknowledgements made room for, then reads once from every file that
    /// may have data; `Ok(true)` if any produced bytes.
    async fn read_round(&mut self) -> Result<bool, Stop> {
        let ids: Vec<u64> = self.files.keys().copied().collect();
        let mut progressed = false;
        for id in ids {
            if self.ctx.shutdown.is_cancelled() {
                return Err(Stop);
            }
            self.send_ready(id, false, false).await?;
            let readable = self.files.get(&id).is_some_and(|t| self.readable(t, Instant::now()));
            if readable {
                progressed |= self.step(id).await?;
                self.send_ready(id, false, false).await?;
            }
        }
        Ok(progressed)
    }

    /// Reads once from file `id` on the blocking pool; `Ok(true)` if bytes were read.
    async fn step(&mut self, id: u64) -> Result<bool, Stop> {
        let Some(t) = self.files.get_mut(&id) else { return Ok(false) };
        let Some(mut reader) = t.reader.take() else { return Ok(false) };
        let mut pending = std::mem::take(&mut t.pending);
        let mut buf = std::mem::take(&mut self.buf);
        let shared = Arc::clone(&self.shared);
        // Up to four batches per blocking call (fewer hand-offs), within the slots left
        // for unacknowledged batches.
        let slots = self.cfg.max_unacked_batches.saturating_sub(t.inflight.len()).clamp(1, 4);
        let want = self.cfg.batch_max_records * slots;
        let joined = tokio::task::spawn_blocking(move || {
            let r = reader.step(&mut buf, &shared, &mut pending, want);
            (reader, pending, buf, r)
        })
        .await;
        let now = Instant::now();
        let Ok((reader, pending, buf, result)) = joined else {
            // Only a panic gets here. Forget the file; the next scan finds it again and
            // resumes at its committed offset.
            self.ctx.stats.errors.inc();
            self.buf = vec![0u8; READ_BUFFER_BYTES];
            if let Some(t) = self.files.get(&id) {
                tracing::error!(component = self.component(), path = %t.path.display(), "file source: reader failed; file will be picked up again");
                let entry = Entry {
                    dev: t.dev,
                    inode: t.ino,
                    fingerprint: t.fingerprint,
                    offset: t.committed,
                    path: t.path.clone(),
                };
                self.saved.insert((t.dev, t.ino), entry);
            }
            self.remove(id);
            return Ok(false);
        };
        self.buf = buf;
        let Some(t) = self.files.get_mut(&id) else { return Ok(false) };
        t.fingerprint = reader.fingerprint;
        t.reader = Some(reader);
        t.pending = pending;
        match result {
            Ok(Step::Data { lines, .. }) => {
                self.ctx.stats.received.add(lines);
                t.eof_since = None;
                t.last_active = now;
                t.finished = false;
                t.retry_at = None;
                if !t.pending.is_empty() && t.pending_since.is_none() {
                    t.pending_since = Some(now);
                }
                Ok(true)
            }
            Ok(Step::Eof) => {
                t.maybe_more = false;
                t.eof_since.get_or_insert(now);
                Ok(false)
            }
            Ok(Step::Replaced { size }) => {
                self.truncated(id, size).await?;
                Ok(true)
            }
            Err(error) => {
                self.ctx.stats.errors.inc();
                let offset = t.reader.as_ref().map_or(0, |r| r.pos());
                tracing::warn!(component = self.ctx.stats.name(), path = %t.path.display(), offset, %error, "file source: read failed; will retry");
                t.retry_later(now);
                Ok(false)
            }
        }
    }

    /// File `id` was truncated (or rewritten): send what was read of the old content,
    /// then start over at offset 0 in a new generation.
    async fn truncated(&mut self, id: u64, size: u64) -> Result<(), Stop> {
        let shared = Arc::clone(&self.shared);
        let Some(t) = self.files.get_mut(&id) else { return Ok(()) };
        let Some(reader) = &mut t.reader else { return Ok(()) };
        self.counters.files_truncated.inc();
        tracing::info!(component = self.ctx.stats.name(), path = %t.path.display(), offset = reader.pos(), size, "file source: file truncated; reading it from the start");
        reader.finish(&shared, &mut t.pending);
        if !t.pending.is_empty() && t.pending_since.is_none() {
            t.pending_since = Some(Instant::now());
        }
        // Old-generation records go out now, even past the unacknowledged-batch limit
        // (a few batches at most), so the new generation starts clean.
        self.send_ready(id, true, true).await?;
        let Some(t) = self.files.get_mut(&id) else { return Ok(()) };
        let Some(reader) = &mut t.reader else { return Ok(()) };
        reader.rewind(0);
        let fp = Fingerprint::read(reader.file(), size).unwrap_or(Fingerprint::of(&[]));
        reader.fingerprint = fp;
        t.fingerprint = fp;
        t.generation += 1;
        t.committed = 0;
        t.pending_start = 0;
        t.maybe_more = true;
        t.eof_since = None;
        t.finished = false;
        self.dirty = true;
        Ok(())
    }

    /// Sends file `id`'s pending records: full batches, or (with `force`) whatever is
    /// pending; within `max_unacked_batches` unless `ignore_limit`.
    async fn send_ready(&mut self, id: u64, force: bool, ignore_limit: bool) -> Result<(), Stop> {
        loop {
            let Some(t) = self.files.get_mut(&id) else { return Ok(()) };
            if t.pending.is_empty() {
                t.pending_since = None;
                return Ok(());
            }
            if !ignore_limit && t.inflight.len() >= self.cfg.max_unacked_batches {
                return Ok(());
            }
            if !force && t.pending.len() < self.cfg.batch_max_records {
                return Ok(());
            }
            let (records, end) = t.pending.take_front(self.cfg.batch_max_records);
            let n = records.len();
            let start = std::mem::replace(&mut t.pending_start, end);
            let seq = t.next_seq;
            t.next_seq += 1;
            t.inflight.push_back(InFlight { seq, generation: t.generation, start, end, records: n, delivered: false });
            if t.pending.is_empty() {
                t.pending_since = None;
            }
            let acks = Arc::clone(&self.acks);
            let token = AckToken::new(move |outcome| acks.push(AckEvent { file: id, seq, outcome }));
            let batch = Batch::logs(records).with_ack(token);
            tokio::select! {
                biased;
                _ = self.ctx.shutdown.cancelled() => return Err(Stop),
                r = self.ctx.out.send(batch) => match r {
                    Ok(()) => self.ctx.stats.emitted.add(n as u64),
                    Err(_) => {
                        self.out_closed = true;
                        return Err(Stop);
                    }
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Timers

    /// Retries, multiline and batch timeouts, and closing finished rotated files.
    async fn timers(&mut self) -> Result<(), Stop> {
        let now = Instant::now();
        let ids: Vec<u64> = self.files.keys().copied().collect();
        let shared = Arc::clone(&self.shared);
        for id in ids {
            let Some(t) = self.files.get_mut(&id) else { continue };
            if t.retry_at.is_some_and(|r| r <= now) {
                t.retry_at = None;
                t.maybe_more = true;
            }
            if !t.maybe_more
                && let Some(reader) = &mut t.reader
                && reader.multiline_deadline(&shared).is_some_and(|d| d <= now)
            {
                reader.flush_multiline(&shared, &mut t.pending);
                if !t.pending.is_empty() && t.pending_since.is_none() {
                    t.pending_since = Some(now);
                }
            }
            if t.pending_since.is_some_and(|s| now >= s + self.cfg.batch_timeout) {
                self.send_ready(id, true, false).await?;
            }
            let Some(t) = self.files.get_mut(&id) else { continue };
            if t.rotated && !t.maybe_more && t.eof_since.is_some_and(|s| now >= s + self.cfg.rotate_wait) {
                if !t.finished {
                    t.finished = true;
                    if let Some(reader) = &mut t.reader {
                        reader.finish(&shared, &mut t.pending);
                    }
                    if !t.pending.is_empty() {
                        t.pending_since.get_or_insert(now);
                        self.send_ready(id, true, false).await?;
                    }
                }
                let Some(t) = self.files.get(&id) else { continue };
                if t.pending.is_empty() && t.inflight.is_empty() {
                    tracing::debug!(component = self.component(), path = %t.path.display(), "file source: closed rotated file");
                    self.remove(id);
                }
            }
        }
        Ok(())
    }

    /// Sleeps until something may need doing.
    async fn wait(&mut self) {
        let now = Instant::now();
        let mut deadline = self.next_poll;
        if self.rescan {
            deadline = deadline.min(self.last_scan + RESCAN_MIN_INTERVAL);
        }
        if self.dirty {
            deadline = deadline.min(self.last_save + CHECKPOINT_INTERVAL);
        }
        for t in self.files.values() {
            let can_send = t.inflight.len() < self.cfg.max_unacked_batches;
            if self.readable(t, now) || (can_send && t.pending.len() >= self.cfg.batch_max_records) {
                return;
            }
            if let Some(s) = t.pending_since
                && can_send
            {
                deadline = deadline.min(s + self.cfg.batch_timeout);
            }
            if let Some(r) = t.retry_at {
                deadline = deadline.min(r);
            }
            if !t.maybe_more
                && let Some(d) = t.reader.as_ref().and_then(|r| r.multiline_deadline(&self.shared))
            {
                deadline = deadline.min(d);
            }
            if t.rotated
                && let Some(s) = t.eof_since
            {
                deadline = deadline.min(s + self.cfg.rotate_wait);
            }
        }
        if deadline <= now {
            return;
        }
        tokio::select! {
            _ = self.ctx.shutdown.cancelled() => {}
            _ = self.watcher.events.notify.notified() => {}
            _ = self.acks.notify.notified() => {}
            _ = tokio::time::sleep_until(deadline.into()) => {}
        }
    }
}
