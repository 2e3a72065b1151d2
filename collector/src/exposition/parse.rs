//! The byte-level parser behind [`super::parse`]: one pass over the input, one line at a
//! time, no regex and no per-line allocation beyond the points it returns.

use super::encode::write_openmetrics_float;
use super::{ErrorKind, Format, ParseError};
use crate::signal::{Label, MetricKind, MetricPoint};
use memchr::{memchr, memchr2};
use std::collections::HashMap;

/// A family's type as written in its `# TYPE` line (a superset of [`MetricKind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    Counter,
    Gauge,
    Histogram,
    GaugeHistogram,
    Summary,
    Info,
    StateSet,
    Unknown,
}

impl Family {
    fn from_word(word: &[u8], format: Format) -> Option<Family> {
        let om = format == Format::OpenMetrics;
        Some(match word {
            b"counter" => Family::Counter,
            b"gauge" => Family::Gauge,
            b"histogram" => Family::Histogram,
            b"summary" => Family::Summary,
            b"untyped" | b"unknown" => Family::Unknown,
            b"gaugehistogram" if om => Family::GaugeHistogram,
            b"info" if om => Family::Info,
            b"stateset" if om => Family::StateSet,
            _ => return None,
        })
    }

    /// The sample-name suffixes that belong to a family of this type (besides the bare
    /// family name).
    fn suffixes(self) -> &'static [&'static [u8]] {
        match self {
            Family::Counter => &[b"_total", b"_created"],
            Family::Histogram => &[b"_bucket", b"_sum", b"_count", b"_created"],
            Family::GaugeHistogram => &[b"_bucket", b"_gsum", b"_gcount"],
            Family::Summary => &[b"_sum", b"_count", b"_created"],
            Family::Info => &[b"_info"],
            Family::Gauge | Family::StateSet | Family::Unknown => &[],
        }
    }

    fn kind(self) -> MetricKind {
        match self {
            Family::Counter => MetricKind::Counter,
            Family::Histogram => MetricKind::Histogram,
            Family::Summary => MetricKind::Summary,
            Family::Gauge | Family::GaugeHistogram | Family::Info | Family::StateSet => MetricKind::Gauge,
            Family::Unknown => MetricKind::Unknown,
        }
    }

    /// Whether label `name` of this family's samples is a float to normalise.
    fn normalises(self, label: &[u8]) -> bool {
        (self == Family::Histogram && label == b"le") || (self == Family::Summary && label == b"quantile")
    }
}

/// Every suffix any family type claims, for looking up a sample's family by name.
const SUFFIXES: [&[u8]; 8] = [b"_bucket", b"_sum", b"_count", b"_total", b"_created", b"_gsum", b"_gcount", b"_info"];

const METRIC_START: u8 = 1;
const METRIC_CONT: u8 = 2;
const LABEL_START: u8 = 4;
const LABEL_CONT: u8 = 8;

/// Character classes of every byte: metric names are `[a-zA-Z_:][a-zA-Z0-9_:]*`, label
/// names `[a-zA-Z_][a-zA-Z0-9_]*`.
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let alpha = c.is_ascii_alphabetic() || c == b'_';
        let mut v = 0;
        if alpha || c == b':' {
            v |= METRIC_START | METRIC_CONT;
        }
        if c.is_ascii_digit() {
            v |= METRIC_CONT | LABEL_CONT;
        }
        if alpha {
            v |= LABEL_START | LABEL_CONT;
        }
        t[i] = v;
        i += 1;
    }
    t
};

fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn skip_ws(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && is_ws(line[i]) {
        i += 1;
    }
    i
}

/// The end of the token starting at `i` (the next space/tab or the line end).
fn token_end(line: &[u8], mut i: usize) -> usize {
    while i < line.len() && !is_ws(line[i]) {
        i += 1;
    }
    i
}

/// The end of a metric name starting at `i` (`i` itself when there is none).
fn metric_name_end(line: &[u8], i: usize) -> usize {
    if i >= line.len() || CLASS[line[i] as usize] & METRIC_START == 0 {
        return i;
    }
    let mut j = i + 1;
    while j < line.len() && CLASS[line[j] as usize] & METRIC_CONT != 0 {
        j += 1;
    }
    j
}

/// The end of a label name starting at `i` (`i` itself when there is none).
fn label_name_end(line: &[u8], i: usize) -> usize {
    if i >= line.len() || CLASS[line[i] as usize] & LABEL_START == 0 {
        return i;
    }
    let mut j = i + 1;
    while j < line.len() && CLASS[line[j] as usize] & LABEL_CONT != 0 {
        j += 1;
    }
    j
}

/// A name that passed [`metric_name_end`] or [`label_name_end`] (ASCII) as a `String`.
fn name_string(b: &[u8]) -> String {
    std::str::from_utf8(b).map_or_else(|_| String::from_utf8_lossy(b).into_owned(), str::to_owned)
}

/// A float value: a fast path for plain integers, else Rust's float parser, which
/// accepts what Go's `ParseFloat` does for decimal input (`NaN`, `+Inf`, `-Inf`, `1e3`,
/// `.5`, case-insensitive special values).
fn parse_value(tok: &[u8]) -> Option<f64> {
    let (neg, digits) = match tok.first() {
        Some(b'-') => (true, &tok[1..]),
        Some(b'+') => (false, &tok[1..]),
        _ => (false, tok),
    };
    if !digits.is_empty() && digits.len() <= 15 && digits.iter().all(u8::is_ascii_digit) {
        let n = digits.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
        let f = n as f64;
        return Some(if neg { -f } else { f });
    }
    std::str::from_utf8(tok).ok()?.parse::<f64>().ok()
}

/// A timestamp in milliseconds: an integer in 0.0.4, float seconds in OpenMetrics.
fn parse_timestamp(tok: &[u8], format: Format) -> Option<i64> {
    let s = std::str::from_utf8(tok).ok()?;
    match format {
        Format::PrometheusText => s.parse::<i64>().ok(),
        Format::OpenMetrics => {
            let secs = s.parse::<f64>().ok()?;
            let ms = (secs * 1000.0).round();
            (ms.is_finite() && ms.abs() < 9.2e18).then_some(ms as i64)
        }
    }
}

/// `\\` → `\`, `\"` → `"`, `\n` → newline; any other escape is kept as written.
fn unescape(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'\\' && i + 1 < raw.len() {
            match raw[i + 1] {
                b'\\' => out.push(b'\\'),
                b'"' => out.push(b'"'),
                b'n' => out.push(b'\n'),
                other => {
                    out.push(b'\\');
                    out.push(other);
                }
            }
            i += 2;
        } else {
            out.push(b);
            i += 1;
        }
    }
    out
}

/// Where one label sits in its line (byte ranges; the value without its quotes).
#[derive(Debug, Clone, Copy)]
struct LabelSpan {
    name: (usize, usize),
    value: (usize, usize),
    escaped: bool,
}

/// An error inside one line: a 0-based column and what is wrong.
struct LineError {
    at: usize,
    kind: ErrorKind,
}

type LineResult<T> = Result<T, LineError>;

fn fail<T>(at: usize, kind: ErrorKind) -> LineResult<T> {
    Err(LineError { at, kind })
}

/// The families seen so far in one exposition. Keys borrow the input.
#[derive(Default)]
struct Families<'a> {
    types: HashMap<&'a [u8], Family>,
    /// The family of the last `# TYPE` line or last lookup hit: samples of a family
    /// follow its metadata, so this answers almost every lookup without hashing.
    current: Option<(&'a [u8], Family)>,
    /// The last sample name looked up the slow way and its answer (runs of untyped
    /// samples of one metric).
    last: Option<(&'a [u8], Family)>,
}

impl<'a> Families<'a> {
    fn lookup(&mut self, name: &'a [u8]) -> Family {
        if let Some((fam, t)) = self.current
            && (name == fam
                || (name.len() > fam.len() && name.starts_with(fam) && t.suffixes().contains(&&name[fam.len()..])))
        {
            return t;
        }
        if let Some((n, t)) = self.last
            && n == name
        {
            return t;
        }
        let t = self.lookup_slow(name);
        self.last = Some((name, t));
        t
    }

    fn lookup_slow(&mut self, name: &'a [u8]) -> Family {
        if let Some(&t) = self.types.get(name) {
            self.current = Some((name, t));
            return t;
        }
        for suffix in SUFFIXES {
            if name.len() > suffix.len() && name.ends_with(suffix) {
                let base = &name[..name.len() - suffix.len()];
                if let Some(&t) = self.types.get(base)
                    && t.suffixes().contains(&suffix)
                {
                    self.current = Some((base, t));
                    return t;
                }
            }
        }
        Family::Unknown
    }
}

/// A reusable exposition parser: keeps its scratch buffers between calls, so a scrape
/// loop parses every body without re-allocating them.
#[derive(Debug, Clone)]
pub struct Parser {
    format: Format,
    spans: Vec<LabelSpan>,
    exemplar_spans: Vec<LabelSpan>,
    float_buf: String,
    extra_labels: usize,
}

impl Parser {
    /// A parser for `format`.
    pub fn new(format: Format) -> Parser {
        Parser { format, spans: Vec::new(), exemplar_spans: Vec::new(), float_buf: String::new(), extra_labels: 0 }
    }

    /// The format this parser reads.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Switches the format (a target may change it between scrapes).
    pub fn set_format(&mut self, format: Format) {
        self.format = format;
    }

    /// Leaves room for `n` more labels in every point's label vector, so a caller that
    /// adds labels (a scrape adds `job` and `instance`) does not re-allocate it.
    pub fn reserve_extra_labels(&mut self, n: usize) {
        self.extra_labels = n;
    }

    /// Parses `input`, appending one point per sample to `out`; samples without a
    /// timestamp get `default_timestamp_ms`. On error nothing is appended (`out` is
    /// truncated back to its length on entry).
    pub fn parse_into(
        &mut self,
        input: &[u8],
        default_timestamp_ms: i64,
        out: &mut Vec<MetricPoint>,
    ) -> Result<(), ParseError> {
        let start = out.len();
        let result = self.parse_lines(input, default_timestamp_ms, out);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }

    fn parse_lines(&mut self, input: &[u8], default_ts: i64, out: &mut Vec<MetricPoint>) -> Result<(), ParseError> {
        let om = self.format == Format::OpenMetrics;
        let mut families = Families::default();
        let mut pos = 0;
        let mut line_no = 0;
        let mut eof = false;
        while pos < input.len() {
            line_no += 1;
            let rest = &input[pos..];
            let (line, next) = match memchr(b'\n', rest) {
                Some(i) => (&rest[..i], pos + i + 1),
                None => (rest, input.len()),
            };
            pos = next;
            let at_line = |e: LineError| ParseError { line: line_no, column: e.at + 1, kind: e.kind };
            if eof {
                return Err(at_line(LineError { at: 0, kind: ErrorKind::ContentAfterEof }));
            }
            if om {
                if line.is_empty() {
                    return Err(at_line(LineError { at: 0, kind: ErrorKind::BlankLine }));
                }
                if line[0] == b'#' {
                    if line == b"# EOF" {
                        eof = true;
                    } else {
                        self.metadata(line, 0, &mut families).map_err(at_line)?;
                    }
                    continue;
                }
                let point = self.sample(line, 0, &mut families, default_ts).map_err(at_line)?;
                out.push(point);
            } else {
                let first = skip_ws(line, 0);
                if first == line.len() {
                    continue;
                }
                if line[first] == b'#' {
                    self.metadata(line, first, &mut families).map_err(at_line)?;
                    continue;
                }
                let point = self.sample(line, first, &mut families, default_ts).map_err(at_line)?;
                out.push(point);
            }
        }
        if om && !eof {
            return Err(ParseError { line: line_no + 1, column: 1, kind: ErrorKind::MissingEof });
        }
        Ok(())
    }

    /// A line starting with `#` at `hash`: `HELP`, `TYPE`, `UNIT` (OpenMetrics), or a
    /// comment (0.0.4 only).
    fn metadata<'a>(&self, line: &'a [u8], hash: usize, families: &mut Families<'a>) -> LineResult<()> {
        let om = self.format == Format::OpenMetrics;
        let kw_start = if om {
            if line.get(hash + 1) != Some(&b' ') {
                return fail(hash, ErrorKind::InvalidComment);
            }
            hash + 2
        } else {
            skip_ws(line, hash + 1)
        };
        let kw_end = token_end(line, kw_start);
        let keyword = match &line[kw_start..kw_end] {
            b"HELP" => "HELP",
            b"TYPE" => "TYPE",
            b"UNIT" if om => "UNIT",
            _ if om => return fail(kw_start, ErrorKind::InvalidComment),
            _ => return Ok(()),
        };
        let name_start = skip_ws(line, kw_end);
        let name_end = metric_name_end(line, name_start);
        if name_end == name_start {
            if name_start >= line.len() {
                return fail(name_start, ErrorKind::MissingMetadataName { keyword });
            }
            return fail(name_start, ErrorKind::InvalidMetricName);
        }
        if name_end < line.len() && !is_ws(line[name_end]) {
            return fail(name_end, ErrorKind::InvalidMetricName);
        }
        let name = &line[name_start..name_end];
        let word_start = skip_ws(line, name_end);
        let word_end = token_end(line, word_start);
        let word = &line[word_start..word_end];
        match keyword {
            "TYPE" => {
                if word.is_empty() {
                    return fail(word_start, ErrorKind::MissingType { metric: name_string(name) });
                }
                let Some(family) = Family::from_word(word, self.format) else {
                    return fail(word_start, ErrorKind::UnknownType { metric: name_string(name) });
                };
                let after = skip_ws(line, word_end);
                if after < line.len() {
                    return fail(after, ErrorKind::TrailingContent);
                }
                if families.types.insert(name, family).is_some() && om {
                    return fail(name_start, ErrorKind::DuplicateType { metric: name_string(name) });
                }
                families.current = Some((name, family));
                families.last = None;
            }
            "UNIT" => {
                let after = skip_ws(line, word_end);
                if after < line.len() {
                    return fail(after, ErrorKind::TrailingContent);
                }
                let n = name.len();
                let is_suffix = n > word.len() + 1 && name.ends_with(word) && name[n - word.len() - 1] == b'_';
                if !word.is_empty() && !is_suffix {
                    return fail(word_start, ErrorKind::UnitNotSuffix { metric: name_string(name) });
                }
            }
            // HELP text is free text; nothing here needs it.
            _ => {}
        }
        Ok(())
    }

    /// A sample line whose metric name starts at `start`.
    fn sample<'a>(
        &mut self,
        line: &'a [u8],
        start: usize,
        families: &mut Families<'a>,
        default_ts: i64,
    ) -> LineResult<MetricPoint> {
        let len = line.len();
        let name_end = metric_name_end(line, start);
        if name_end == start {
            return fail(start, ErrorKind::InvalidMetricName);
        }
        let name = &line[start..name_end];
        self.spans.clear();
        let mut i = name_end;
        let had_labels = i < len && line[i] == b'{';
        if had_labels {
            i = parse_labels(line, i + 1, &mut self.spans, name)?;
        }
        let value_start = skip_ws(line, i);
        if value_start == i {
            if i >= len {
                return fail(i, ErrorKind::MissingValue);
            }
            let kind = if had_labels { ErrorKind::UnexpectedCharacter } else { ErrorKind::InvalidMetricName };
            return fail(i, kind);
        }
        if value_start >= len {
            return fail(value_start, ErrorKind::MissingValue);
        }
        let value_end = token_end(line, value_start);
        let Some(value) = parse_value(&line[value_start..value_end]) else {
            return fail(value_start, ErrorKind::InvalidValue);
        };
        let mut i = skip_ws(line, value_end);
        let mut timestamp_ms = default_ts;
        if i < len && line[i] != b'#' {
            let ts_end = token_end(line, i);
            match parse_timestamp(&line[i..ts_end], self.format) {
                Some(ts) => timestamp_ms = ts,
                None => return fail(i, ErrorKind::InvalidTimestamp),
            }
            i = skip_ws(line, ts_end);
            if i < len && line[i] != b'#' {
                return fail(i, ErrorKind::TrailingContent);
            }
        }
        if i < len && self.format == Format::OpenMetrics {
            self.check_exemplar(line, i + 1)?;
        }
        let family = families.lookup(name);
        let labels = self.build_labels(line, name, family)?;
        Ok(MetricPoint { name: name_string(name), labels, kind: family.kind(), value, timestamp_ms })
    }

    /// Checks an OpenMetrics exemplar ` {labels} value [timestamp]` starting at `i`
    /// (just after its `#`); its content is discarded.
    fn check_exemplar(&mut self, line: &[u8], i: usize) -> LineResult<()> {
        let bad = |at| fail(at, ErrorKind::InvalidExemplar);
        let i = skip_ws(line, i);
        if i >= line.len() || line[i] != b'{' {
            return bad(i);
        }
        self.exemplar_spans.clear();
        let i = match parse_labels(line, i + 1, &mut self.exemplar_spans, b"exemplar") {
            Ok(end) => end,
            Err(e) => return bad(e.at),
        };
        let value_start = skip_ws(line, i);
        if value_start == i || value_start >= line.len() {
            return bad(value_start);
        }
        let value_end = token_end(line, value_start);
        if parse_value(&line[value_start..value_end]).is_none() {
            return bad(value_start);
        }
        let ts_start = skip_ws(line, value_end);
        if ts_start < line.len() {
            let ts_end = token_end(line, ts_start);
            if parse_timestamp(&line[ts_start..ts_end], Format::OpenMetrics).is_none() {
                return bad(ts_start);
            }
            let after = skip_ws(line, ts_end);
            if after < line.len() {
                return bad(after);
            }
        }
        Ok(())
    }

    /// The sorted, checked, unescaped labels of the spans in `self.spans`.
    fn build_labels(&mut self, line: &[u8], metric: &[u8], family: Family) -> LineResult<Vec<Label>> {
        let spans = &mut self.spans;
        let name_of = |s: &LabelSpan| &line[s.name.0..s.name.1];
        if spans.len() > 1 {
            let mut sorted = true;
            for w in spans.windows(2) {
                match name_of(&w[0]).cmp(name_of(&w[1])) {
                    std::cmp::Ordering::Less => {}
                    std::cmp::Ordering::Equal => return fail(w[1].name.0, duplicate(metric, name_of(&w[1]))),
                    std::cmp::Ordering::Greater => sorted = false,
                }
            }
            if !sorted {
                // Stable, so a duplicate is reported where it repeats, not where it first appears.
                spans.sort_by(|a, b| name_of(a).cmp(name_of(b)));
                for w in spans.windows(2) {
                    if name_of(&w[0]) == name_of(&w[1]) {
                        return fail(w[1].name.0, duplicate(metric, name_of(&w[1])));
                    }
                }
            }
        }
        let mut labels = Vec::with_capacity(spans.len() + self.extra_labels);
        for s in spans.iter() {
            let lname = name_of(s);
            if lname == b"__name__" {
                return fail(s.name.0, ErrorKind::ReservedLabel { metric: name_string(metric) });
            }
            let raw = &line[s.value.0..s.value.1];
            let not_utf8 = || LineError { at: s.value.0, kind: ErrorKind::InvalidUtf8 { label: name_string(lname) } };
            let mut value = if s.escaped {
                String::from_utf8(unescape(raw)).map_err(|_| not_utf8())?
            } else {
                std::str::from_utf8(raw).map_err(|_| not_utf8())?.to_owned()
            };
            if family.normalises(lname) {
                normalise_float(&mut value, &mut self.float_buf);
            }
            labels.push(Label { name: name_string(lname), value });
        }
        Ok(labels)
    }
}

fn duplicate(metric: &[u8], label: &[u8]) -> ErrorKind {
    ErrorKind::DuplicateLabel { metric: name_string(metric), label: name_string(label) }
}

/// Rewrites a float label value (`le`, `quantile`) in Prometheus' canonical form; a
/// value that is not a float is left alone (as Prometheus does).
fn normalise_float(value: &mut String, buf: &mut String) {
    if let Ok(f) = value.parse::<f64>() {
        buf.clear();
        write_openmetrics_float(buf, f);
        if *buf != *value {
            value.clear();
            value.push_str(buf);
        }
    }
}

/// Parses a label set from just after its `{`; returns the index after the `}`.
fn parse_labels(line: &[u8], mut i: usize, spans: &mut Vec<LabelSpan>, metric: &[u8]) -> LineResult<usize> {
    let len = line.len();
    loop {
        i = skip_ws(line, i);
        if i >= len {
            return fail(i, ErrorKind::UnterminatedLabels);
        }
        if line[i] == b'}' {
            return Ok(i + 1);
        }
        let name_start = i;
        let name_end = label_name_end(line, i);
        if name_end == name_start {
            return fail(name_start, ErrorKind::InvalidLabelName { metric: name_string(metric) });
        }
        let label = || name_string(&line[name_start..name_end]);
        i = skip_ws(line, name_end);
        if i >= len || line[i] != b'=' {
            if i == name_end && i < len {
                return fail(i, ErrorKind::InvalidLabelName { metric: name_string(metric) });
            }
            return fail(i, ErrorKind::ExpectedEquals { label: label() });
        }
        i = skip_ws(line, i + 1);
        if i >= len || line[i] != b'"' {
            return fail(i, ErrorKind::ExpectedQuote { label: label() });
        }
        let value_start = i + 1;
        let mut j = value_start;
        let mut escaped = false;
        let value_end = loop {
            let Some(k) = memchr2(b'"', b'\\', &line[j..]) else {
                return fail(i, ErrorKind::UnterminatedLabelValue { label: label() });
            };
            let at = j + k;
            if line[at] == b'"' {
                break at;
            }
            escaped = true;
            j = at + 2;
            if j > len {
                return fail(i, ErrorKind::UnterminatedLabelValue { label: label() });
            }
        };
        spans.push(LabelSpan { name: (name_start, name_end), value: (value_start, value_end), escaped });
        i = skip_ws(line, value_end + 1);
        if i >= len {
            return fail(i, ErrorKind::UnterminatedLabels);
        }
        match line[i] {
            b',' => i += 1,
            b'}' => return Ok(i + 1),
            _ => return fail(i, ErrorKind::ExpectedCommaOrBrace),
        }
    }
}
