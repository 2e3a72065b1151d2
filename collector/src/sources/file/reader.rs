//! Reading one file: big positioned reads, `memchr` line splitting, the line-length limit,
//! UTF-8 repair, multiline grouping and record building.
//!
//! A [`Reader`] owns the open descriptor and the bytes of the current incomplete line. It
//! reads with `pread` at its own position (no shared seek pointer), so a rewind after a
//! failed delivery is just a new position. Every record it produces carries the file
//! offset just past its last line; the tailer uses those to cut batches and to advance
//! checkpoints.
//!
//! Memory per file is bounded: the read buffer is shared by all files (one read at a
//! time), and an incomplete line is kept only up to `max_line_bytes`; the rest of an
//! over-long line is skipped as it streams past, so a 10 MB line costs `max_line_bytes`,
//! not 10 MB.

use super::checkpoint::Fingerprint;
use super::multiline::{Aggregator, Rules};
use super::parse::{Format, ParsedLine, parse_line, parse_line_string};
use crate::pipeline::Counter;
use crate::signal::{AnyValue, KeyValue, LogRecord, Resource, Scope};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// Size of the shared read buffer.
pub(crate) const READ_BUFFER_BYTES: usize = 256 << 10;
/// One [`Reader::step`] reads at most this much.
pub(crate) const MAX_STEP_BYTES: usize = 4 << 20;
/// An incomplete-line buffer larger than this is released once the line completes.
const PARTIAL_KEEP_BYTES: usize = 64 << 10;

/// What every reader of one source shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub format: Format,
    pub max_line_bytes: usize,
    pub multiline: Option<Rules>,
    pub resource: Arc<Resource>,
    pub scope: Arc<Scope>,
    pub lines_truncated: Arc<Counter>,
    pub invalid_utf8: Arc<Counter>,
    pub json_parse_errors: Arc<Counter>,
}

/// Records read but not yet sent, each with the offset just past its last line.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub records: Vec<LogRecord>,
    pub ends: Vec<u64>,
}

impl Pending {
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn clear(&mut self) {
        self.records.clear();
        self.ends.clear();
    }

    /// Removes the first `k` (≥ 1) records; returns them and the end offset of the last.
    pub fn take_front(&mut self, k: usize) -> (Vec<LogRecord>, u64) {
        let k = k.clamp(1, self.records.len());
        let end = self.ends[k - 1];
        let records = if k == self.records.len() {
            self.ends.clear();
            std::mem::take(&mut self.records)
        } else {
            self.ends.drain(..k);
            let rest = self.records.split_off(k);
            std::mem::replace(&mut self.records, rest)
        };
        (records, end)
    }
}

/// What one [`Reader::step`] found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// `bytes` were read, completing `lines` lines.
    Data { bytes: usize, lines: u64 },
    /// Nothing new.
    Eof,
    /// The file is shorter than the read position, or its first bytes changed: it was
    /// truncated (copytruncate, `> file`) or rewritten in place. `size` is its size now.
    Replaced { size: u64 },
}

/// One open file being read.
#[derive(Debug)]
pub(crate) struct Reader {
    file: File,
    attrs: Vec<KeyValue>,
    /// Offset of the next byte to read.
    pos: u64,
    /// The current incomplete line (at most `max_line_bytes`).
    partial: Vec<u8>,
    /// The current line exceeded `max_line_bytes`; its remaining bytes are dropped.
    skipping: bool,
    multiline: Option<Aggregator>,
    /// When a line was last added to a pending multiline record.
    multiline_touched: Instant,
    /// The file's fingerprint, kept current as it grows.
    pub fingerprint: Fingerprint,
}

impl Reader {
    /// A reader of `file` (found at `path`) from offset `pos`.
    pub fn new(file: File, path: &Path, pos: u64, fingerprint: Fingerprint, shared: &Shared) -> Reader {
        Reader {
            file,
            attrs: file_attributes(path),
            pos,
            partial: Vec::new(),
            skipping: false,
            multiline: shared.multiline.as_ref().map(|_| Aggregator::default()),
            multiline_touched: Instant::now(),
            fingerprint,
        }
    }

    /// The file was renamed to `path` (and still matches): later records carry the new name.
    pub fn set_path(&mut self, path: &Path) {
        self.attrs = file_attributes(path);
    }

    /// Offset of the next byte to read.
    pub fn pos(&self) -> u64 {
        self.pos
    }

    /// The open file (for `fstat`).
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Whether bytes past the last emitted record are buffered (an incomplete line or a
    /// pending multiline record).
    pub fn holds_data(&self) -> bool {
        !self.partial.is_empty() || self.skipping || self.multiline.as_ref().is_some_and(Aggregator::is_pending)
    }

    /// When the pending multiline record should be flushed, if one is pending.
    pub fn multiline_deadline(&self, shared: &Shared) -> Option<Instant> {
        let rules = shared.multiline.as_ref()?;
        self.multiline.as_ref().filter(|a| a.is_pending()).map(|_| self.multiline_touched + rules.timeout)
    }

    /// Forgets everything buffered and continues at `offset`.
    pub fn rewind(&mut self, offset: u64) {
        self.pos = offset;
        self.partial.clear();
        self.skipping = false;
        if let Some(m) = &mut self.multiline {
            m.reset();
        }
    }

    /// Reads (`buf.len()` bytes at a time) and turns every completed line into a record
    /// appended to `out`, until `out` holds at least `want` records, the file's end, or
    /// [`MAX_STEP_BYTES`]. Checks for truncation and replacement first.
    pub fn step(&mut self, buf: &mut [u8], shared: &Shared, out: &mut Pending, want: usize) -> io::Result<Step> {
        let size = self.file.metadata()?.len();
        if size < self.pos || !self.fingerprint.check(&self.file, size)? {
            return Ok(Step::Replaced { size });
        }
        if size == self.pos {
            return Ok(Step::Eof);
        }
        let (mut bytes, mut lines) = (0usize, 0u64);
        loop {
            let n = loop {
                match self.file.read_at(buf, self.pos) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // Lines already consumed stay consumed; the error surfaces next time.
                    Err(_) if bytes > 0 => break 0,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                break;
            }
            let (l, consumed) = self.consume(&buf[..n], shared, out, want);
            lines += l;
            bytes += consumed;
            if n < buf.len() || out.len() >= want || bytes >= MAX_STEP_BYTES {
                break;
            }
        }
        Ok(if bytes == 0 { Step::Eof } else { Step::Data { bytes, lines } })
    }

    /// Splits `chunk` (the bytes at `self.pos`) into lines, stopping after the line that
    /// brings `out` to `cap` records (so a chunk of empty lines cannot make a quarter of a
    /// million records at once); returns the lines completed and the bytes consumed.
    fn consume(&mut self, chunk: &[u8], shared: &Shared, out: &mut Pending, cap: usize) -> (u64, usize) {
        let mut emitter = Emitter::new(shared, &self.attrs, out);
        let chunk_start = self.pos;
        let max = shared.max_line_bytes;
        let mut lines = 0u64;
        let mut i = 0usize;
        let ml_before = self.multiline.as_ref().is_some_and(Aggregator::is_pending);
        let mut stopped = false;
        for nl in memchr::memchr_iter(b'\n', chunk) {
            let end = chunk_start + nl as u64 + 1;
            let piece = &chunk[i..nl];
            if self.partial.is_empty() && !self.skipping {
                let (line, truncated) = cut_line(piece, max);
                emitter.line(&mut self.multiline, line, truncated, end);
            } else {
                append_bounded(&mut self.partial, &mut self.skipping, piece, max);
                let mut line = std::mem::take(&mut self.partial);
                let truncated = std::mem::take(&mut self.skipping);
                let len = if truncated { line.len() } else { strip_cr(&line).len() };
                emitter.line(&mut self.multiline, &line[..len], truncated, end);
                if line.capacity() <= PARTIAL_KEEP_BYTES {
                    line.clear();
                    self.partial = line;
                }
            }
            lines += 1;
            i = nl + 1;
            if emitter.len() >= cap {
                stopped = true;
                break;
            }
        }
        let consumed = if stopped {
            // Stopped at a line boundary: the rest of the chunk is read again next time.
            i
        } else {
            if i < chunk.len() {
                append_bounded(&mut self.partial, &mut self.skipping, &chunk[i..], max);
            }
            chunk.len()
        };
        self.pos += consumed as u64;
        if lines > 0 && (ml_before || self.multiline.as_ref().is_some_and(Aggregator::is_pending)) {
            self.multiline_touched = Instant::now();
        }
        (lines, consumed)
    }

    /// Emits what is buffered as if the file ended here: the incomplete line (as a line
    /// ending at the current position) and the pending multiline record. Used when a
    /// rotated or deleted file is closed, and before reading a truncated file again.
    /// Returns whether an incomplete line was emitted.
    pub fn finish(&mut self, shared: &Shared, out: &mut Pending) -> bool {
        let mut emitter = Emitter::new(shared, &self.attrs, out);
        let had_partial = !self.partial.is_empty() || self.skipping;
        if had_partial {
            let line = std::mem::take(&mut self.partial);
            let truncated = std::mem::take(&mut self.skipping);
            let len = if truncated { line.len() } else { strip_cr(&line).len() };
            emitter.line(&mut self.multiline, &line[..len], truncated, self.pos);
        }
        if let Some(agg) = &mut self.multiline {
            agg.flush(&mut |rec, end| emitter.record_owned(rec, end));
        }
        had_partial
    }

    /// Emits the pending multiline record (its timeout passed).
    pub fn flush_multiline(&mut self, shared: &Shared, out: &mut Pending) {
        let mut emitter = Emitter::new(shared, &self.attrs, out);
        if let Some(agg) = &mut self.multiline {
            agg.flush(&mut |rec, end| emitter.record_owned(rec, end));
        }
    }
}

/// Builds records for one chunk: the observation time is taken once per chunk.
struct Emitter<'a> {
    shared: &'a Shared,
    attrs: &'a [KeyValue],
    out: &'a mut Pending,
    observed: u64,
}

impl<'a> Emitter<'a> {
    fn len(&self) -> usize {
        self.out.len()
    }

    fn new(shared: &'a Shared, attrs: &'a [KeyValue], out: &'a mut Pending) -> Emitter<'a> {
        let observed = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Emitter { shared, attrs, out, observed }
    }

    /// One complete line (already cut to `max_line_bytes`), ending at offset `end`.
    fn line(&mut self, multiline: &mut Option<Aggregator>, line: &[u8], truncated: bool, end: u64) {
        if truncated {
            self.shared.lines_truncated.inc();
        }
        let shared: &'a Shared = self.shared;
        match (multiline, &shared.multiline) {
            (Some(agg), Some(rules)) => agg.push(rules, line, end, &mut |rec, end| self.record_owned(rec, end)),
            _ => self.record_borrowed(line, end),
        }
    }

    fn record_borrowed(&mut self, line: &[u8], end: u64) {
        let parsed = match std::str::from_utf8(line) {
            Ok(s) => parse_line(self.shared.format, s),
            Err(_) => {
                self.shared.invalid_utf8.inc();
                parse_line_string(self.shared.format, String::from_utf8_lossy(line).into_owned())
            }
        };
        self.push(parsed, end);
    }

    fn record_owned(&mut self, rec: Vec<u8>, end: u64) {
        let text = match String::from_utf8(rec) {
            Ok(s) => s,
            Err(e) => {
                self.shared.invalid_utf8.inc();
                String::from_utf8_lossy(e.as_bytes()).into_owned()
            }
        };
        let parsed = parse_line_string(self.shared.format, text);
        self.push(parsed, end);
    }

    fn push(&mut self, p: ParsedLine, end: u64) {
        if p.json_fallback {
            self.shared.json_parse_errors.inc();
        }
        self.out.records.push(LogRecord {
            time_unix_nano: p.time_unix_nano,
            observed_time_unix_nano: self.observed,
            severity_number: p.severity_number,
            severity_text: p.severity_text,
            body: p.body,
            attributes: self.attrs.to_vec(),
            resource: Arc::clone(&self.shared.resource),
            scope: Arc::clone(&self.shared.scope),
            trace_id: None,
            span_id: None,
            flags: 0,
            event_name: String::new(),
        });
        self.out.ends.push(end);
    }
}

/// `log.file.path` and `log.file.name` (OpenTelemetry semantic conventions).
fn file_attributes(path: &Path) -> Vec<KeyValue> {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    vec![
        KeyValue { key: "log.file.path".into(), value: AnyValue::Str(path.to_string_lossy().into_owned()) },
        KeyValue { key: "log.file.name".into(), value: AnyValue::Str(name) },
    ]
}

fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The largest cut ≤ `at` that does not split a UTF-8 sequence (looking back at most 3
/// bytes, so invalid input cannot make it scan far).
fn char_floor(bytes: &[u8], at: usize) -> usize {
    let mut c = at.min(bytes.len());
    while c > 0 && at - c < 3 && c < bytes.len() && bytes[c] & 0xC0 == 0x80 {
        c -= 1;
    }
    if c < bytes.len() && bytes[c] & 0xC0 == 0x80 { at.min(bytes.len()) } else { c }
}

/// A complete line from the read buffer, cut to `max` bytes (`true` if it was cut).
fn cut_line(piece: &[u8], max: usize) -> (&[u8], bool) {
    if piece.len() > max { (&piece[..char_floor(piece, max)], true) } else { (strip_cr(piece), false) }
}

/// Appends to an incomplete line, keeping at most `max` bytes; once over, sets `skipping`
/// and drops the rest of the line.
fn append_bounded(partial: &mut Vec<u8>, skipping: &mut bool, bytes: &[u8], max: usize) {
    if *skipping {
        return;
    }
    let room = max.saturating_sub(partial.len());
    if bytes.len() <= room {
        partial.extend_from_slice(bytes);
    } else {
        partial.extend_from_slice(&bytes[..char_floor(bytes, room)]);
        trim_incomplete_char(partial);
        *skipping = true;
    }
}

/// Drops a UTF-8 sequence left incomplete at the end of `v` by a cut, so a truncated
/// line does not end in a replacement character.
fn trim_incomplete_char(v: &mut Vec<u8>) {
    let len = v.len();
    for back in 1..=len.min(4) {
        let b = v[len - back];
        if b & 0xC0 == 0x80 {
            continue;
        }
        let need = match b {
            0xF0.. => 4,
            0xE0.. => 3,
            0xC0.. => 2,
            _ => 1,
        };
        if need > back {
            v.truncate(len - back);
        }
        return;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signal::SeverityNumber;

    fn shared(max: usize, multiline: Option<&str>) -> Shared {
        Shared {
            format: Format::Auto,
            max_line_bytes: max,
            multiline: multiline.map(|p| super::super::multiline::MultilineConfig::new(p).compile().unwrap()),
            resource: Arc::new(Resource::default()),
            scope: Arc::new(Scope::default()),
            lines_truncated: Arc::default(),
            invalid_utf8: Arc::default(),
            json_parse_errors: Arc::default(),
        }
    }

    /// Reads `content` through a reader with a `chunk`-byte buffer; returns (body, end).
    fn read_all(content: &[u8], chunk: usize, sh: &Shared) -> (Vec<(String, u64)>, Reader) {
        let dir = std::env::temp_dir().join(format!("warden_reader_{}_{}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.log");
        std::fs::write(&path, content).unwrap();
        let file = File::open(&path).unwrap();
        let fp = Fingerprint::read(&file, content.len() as u64).unwrap();
        let mut r = Reader::new(file, &path, 0, fp, sh);
        let mut buf = vec![0u8; chunk];
        let mut out = Pending::default();
        let mut guard = 0;
        while r.step(&mut buf, sh, &mut out, 1).unwrap() != Step::Eof {
            guard += 1;
            assert!(guard < 100_000);
        }
        let _ = std::fs::remove_dir_all(&dir);
        let got = out
            .records
            .iter()
            .zip(&out.ends)
            .map(|(r, e)| {
                let body = match &r.body {
                    AnyValue::Str(s) => s.clone(),
                    other => format!("{other:?}"),
                };
                (body, *e)
            })
            .collect();
        (got, r)
    }

    #[test]
    fn lines_split_across_chunk_sizes() {
        let content = b"alpha\r\nbeta\n\ngamma delta\npartial";
        for chunk in [1, 2, 3, 5, 7, 64] {
            let sh = shared(1024, None);
            let (got, r) = read_all(content, chunk, &sh);
            let want = vec![("alpha".to_string(), 7), ("beta".into(), 12), ("".into(), 13), ("gamma delta".into(), 25)];
            assert_eq!(got, want, "chunk {chunk}");
            assert!(r.holds_data(), "the partial line waits for its newline");
            assert_eq!(r.pos(), content.len() as u64);
        }
    }

    #[test]
    fn long_lines_truncated_at_char_boundaries() {
        // 'é' is two bytes; a cut at 5 would split the third one.
        let content = "ééééé\nok\nxxxxxxxxxx\n".as_bytes();
        for chunk in [1, 3, 4, 64] {
            let sh = shared(5, None);
            let (got, _) = read_all(content, chunk, &sh);
            let bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
            assert_eq!(bodies, ["éé", "ok", "xxxxx"], "chunk {chunk}");
            assert_eq!(got[2].1, content.len() as u64, "end offset is past the whole line");
            assert_eq!(sh.lines_truncated.get(), 2);
            assert_eq!(sh.invalid_utf8.get(), 0, "no split characters");
        }
    }

    #[test]
    fn invalid_utf8_is_replaced_and_counted() {
        let sh = shared(1024, None);
        let (got, _) = read_all(b"ok\nbad \xff\xfe byte\n\x00\x01 nul\n", 4, &sh);
        assert_eq!(got[1].0, "bad \u{fffd}\u{fffd} byte");
        assert_eq!(got[2].0, "\u{0}\u{1} nul");
        assert_eq!(sh.invalid_utf8.get(), 1);
    }

    #[test]
    fn multiline_records_end_at_their_last_line() {
        let sh = shared(1024, Some(r"^\S"));
        let content = b"ERROR x\n  at a\n  at b\nINFO y\n";
        let (got, mut r) = read_all(content, 3, &sh);
        assert_eq!(got, vec![("ERROR x\n  at a\n  at b".to_string(), 22)]);
        assert!(r.holds_data(), "INFO y waits for the next start line or the timeout");
        let mut out = Pending::default();
        r.flush_multiline(&sh, &mut out);
        assert_eq!(out.ends, vec![29]);
        assert_eq!(out.records[0].severity_number, SeverityNumber::INFO);
    }

    #[test]
    fn finish_emits_the_incomplete_line() {
        let sh = shared(1024, None);
        let (_, mut r) = read_all(b"a\nb", 64, &sh);
        let mut out = Pending::default();
        assert!(r.finish(&sh, &mut out));
        assert_eq!(out.ends, vec![3]);
        assert_eq!(out.records[0].body.as_str(), Some("b"));
        assert!(!r.holds_data());
    }

    #[test]
    fn truncation_and_in_place_rewrite_are_detected() {
        let dir = std::env::temp_dir().join(format!("warden_reader_trunc_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.log");
        std::fs::write(&path, b"aaaa\nbbbb\n").unwrap();
        let sh = shared(1024, None);
        let file = File::open(&path).unwrap();
        let fp = Fingerprint::read(&file, 10).unwrap();
        let mut r = Reader::new(file, &path, 0, fp, &sh);
        let mut buf = vec![0u8; 64];
        let mut out = Pending::default();
        assert_eq!(r.step(&mut buf, &sh, &mut out, 1000).unwrap(), Step::Data { bytes: 10, lines: 2 });
        assert_eq!(r.step(&mut buf, &sh, &mut out, 1000).unwrap(), Step::Eof);
        // Same inode, new content longer than the old position: only the head tells.
        std::fs::write(&path, b"cccc\ndddd\neeee\n").unwrap();
        assert_eq!(r.step(&mut buf, &sh, &mut out, 1000).unwrap(), Step::Replaced { size: 15 });
        r.rewind(0);
        r.fingerprint = Fingerprint::read(r.file(), 15).unwrap();
        assert_eq!(r.step(&mut buf, &sh, &mut out, 1000).unwrap(), Step::Data { bytes: 15, lines: 3 });
        // Shorter than the position.
        std::fs::write(&path, b"x\n").unwrap();
        assert_eq!(r.step(&mut buf, &sh, &mut out, 1000).unwrap(), Step::Replaced { size: 2 });
        let bodies: Vec<&str> = out.records.iter().filter_map(|r| r.body.as_str()).collect();
        assert_eq!(bodies, ["aaaa", "bbbb", "cccc", "dddd", "eeee"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_step_stops_at_the_record_cap_on_a_line_boundary() {
        let sh = shared(1024, None);
        let dir = std::env::temp_dir().join(format!("warden_reader_cap_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.log");
        std::fs::write(&path, "\n".repeat(10) + "a\nb").unwrap();
        let file = File::open(&path).unwrap();
        let mut r = Reader::new(file, &path, 0, Fingerprint::of(b"\n"), &sh);
        let (mut buf, mut out) = (vec![0u8; 64], Pending::default());
        assert_eq!(r.step(&mut buf, &sh, &mut out, 3).unwrap(), Step::Data { bytes: 3, lines: 3 });
        assert_eq!((r.pos(), out.ends.clone()), (3, vec![1, 2, 3]));
        assert_eq!(r.step(&mut buf, &sh, &mut out, 100).unwrap(), Step::Data { bytes: 10, lines: 8 });
        assert_eq!(out.len(), 11);
        assert_eq!(out.records[10].body.as_str(), Some("a"));
        assert!(r.holds_data(), "b waits for its newline");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn take_front_splits_batches() {
        let mut p = Pending::default();
        for i in 0..5u64 {
            p.records.push(LogRecord::default());
            p.ends.push(i * 10);
        }
        let (a, end) = p.take_front(2);
        assert_eq!((a.len(), end, p.len()), (2, 10, 3));
        let (b, end) = p.take_front(10);
        assert_eq!((b.len(), end, p.len()), (3, 40, 0));
    }

    #[test]
    fn char_floor_never_splits_or_overruns() {
        let s = "aé€😀".as_bytes(); // 1 + 2 + 3 + 4 bytes
        let cuts: Vec<usize> = (0..=s.len()).map(|at| char_floor(s, at)).collect();
        assert_eq!(cuts, [0, 1, 1, 3, 3, 3, 6, 6, 6, 6, 10]);
        // Garbage continuation bytes: give up after 3 and cut where asked.
        let junk = [0x80u8; 10];
        assert_eq!(char_floor(&junk, 5), 5);
    }
}
