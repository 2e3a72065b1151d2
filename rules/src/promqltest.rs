//! A runner for Prometheus' PromQL test-script language (`promqltest`).
//!
//! A script is a sequence of commands separated by blank lines:
//!
//! - `load <step>` followed by series lines `metric{l="v"} <values>` in expanding notation
//!   (see [`parse_series_values`]); value *i* is stored at `i * step`.
//! - `clear` empties the store.
//! - `eval instant at <t> <expr>` or `eval range from <s> to <e> step <d> <expr>`, followed
//!   by `expect ...` lines and expected results: `{labels} value` lines for an instant
//!   vector, a bare number for a scalar, `{labels} <values>` in expanding notation for a
//!   range query (or after `expect range vector from <s> to <e> step <d>`). The older
//!   spellings `eval_fail`, `eval_warn`, `eval_info` and `eval_ordered` are accepted.
//!
//! Every eval command is one case with a [`CaseStatus`]: passed, failed (with a reason)
//! or unsupported. Native histograms are out of scope: series with `{{...}}` samples are
//! not loaded, and a case whose expected output holds one, whose expression selects such
//! a series, or that follows `load_with_nhcb`, is unsupported — never passed or failed.
//!
//! The engine runs with [`EngineOptions::delayed_name_removal`] on, as Prometheus' test
//! engine does. Floats compare as Prometheus' test does: NaN equals NaN, otherwise a relative
//! tolerance of 1e-6. Annotation positions (`(1:19)` at the end of an expected warning)
//! are not compared: the parser does not report positions.
//!
//! Invariant: no script text can make the runner panic; a malformed command is a failed
//! case naming its line.

use std::fmt;
use std::path::Path;

use promql_parser::parser::Expr;

use crate::labels::{Label, Labels};
use crate::promql::{Engine, EngineOptions, EvalError, QueryResult, Value};
use crate::storage::{Appendable, Db, DbConfig, Queryable, Series, stale_nan};

/// Relative tolerance of float comparisons.
pub const EPSILON: f64 = 1e-6;

/// The outcome of one eval case.
#[derive(Clone, Debug, PartialEq)]
pub enum CaseStatus {
    /// The result matched.
    Passed,
    /// The result did not match; the reason.
    Failed(String),
    /// The case needs a feature out of scope (native histograms); the reason.
    Unsupported(String),
}

/// One eval case of a script.
#[derive(Clone, Debug, PartialEq)]
pub struct CaseResult {
    /// 1-based line of the `eval` command (or of the malformed command).
    pub line: usize,
    /// The expression text.
    pub expr: String,
    /// The outcome.
    pub status: CaseStatus,
}

/// The outcome of one script.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FileReport {
    /// The script's name, as given to [`run_script`].
    pub name: String,
    /// Every case, in script order.
    pub cases: Vec<CaseResult>,
}

impl FileReport {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.cases.iter().filter(|c| c.status == CaseStatus::Passed).count()
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.cases.iter().filter(|c| matches!(c.status, CaseStatus::Failed(_))).count()
    }

    /// Cases that are unsupported.
    pub fn unsupported(&self) -> usize {
        self.cases.iter().filter(|c| matches!(c.status, CaseStatus::Unsupported(_))).count()
    }
}

impl fmt::Display for FileReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} passed, {} failed, {} unsupported",
            self.name,
            self.passed(),
            self.failed(),
            self.unsupported()
        )
    }
}

/// Reads and runs the script at `path` with [`default_options`].
pub fn run_file(path: &Path) -> std::io::Result<FileReport> {
    run_file_with(path, default_options())
}

/// Reads and runs the script at `path` with the given engine options.
pub fn run_file_with(path: &Path, opts: EngineOptions) -> std::io::Result<FileReport> {
    let text = std::fs::read_to_string(path)?;
    Ok(run_script_with(&path.display().to_string(), &text, opts))
}

/// Parses a duration as the test language writes it: `5m`, `1h30m`, `10s53ms`, `0`,
/// or a plain number of seconds (`-50`, `1.5`). Returns milliseconds.
pub fn parse_duration(s: &str) -> Result<i64, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<f64>() {
        if !secs.is_finite() || secs.abs() > 9.0e12 {
            return Err(format!("duration {s:?} out of range"));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    let (neg, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    if body.is_empty() {
        return Err(format!("empty duration {s:?}"));
    }
    let mut total: i64 = 0;
    let mut rest = body;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("bad duration {s:?}"));
        }
        let n: i64 = rest[..digits].parse().map_err(|_| format!("bad duration {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let mult: i64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 7 * 86_400_000,
            "y" => 365 * 86_400_000,
            u => return Err(format!("bad unit {u:?} in duration {s:?}")),
        };
        rest = &rest[unit_len..];
        total = n.checked_mul(mult).and_then(|v| total.checked_add(v)).ok_or(format!("duration {s:?} overflows"))?;
    }
    Ok(if neg { -total } else { total })
}

/// Parses one float as the test language writes it: decimal, `Inf`/`+Inf`/`-Inf` or `NaN`.
pub fn parse_float(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let v = if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        f64::INFINITY
    } else if body.eq_ignore_ascii_case("nan") {
        f64::NAN
    } else if body.starts_with(|c: char| c.is_ascii_digit() || c == '.') {
        body.parse::<f64>().map_err(|_| format!("bad number {s:?}"))?
    } else {
        return Err(format!("bad number {s:?}"));
    };
    Ok(if neg { -v } else { v })
}

/// Most values one expanding term (`1+2x<N>`) may produce.
pub const MAX_EXPANSION: u64 = 1_000_000;

/// Parses a series' values in expanding notation, space-separated:
///
/// - a number (`1`, `-2.5`, `Inf`, `NaN`): one value;
/// - `_`: one missing value (`None`); `_xN`: N missing values;
/// - `stale`: a staleness marker ([`crate::storage::stale_nan`]);
/// - `a+bxN` / `a-bxN`: N+1 values a, a±b, ..., a±N·b (computed by repeated addition,
///   as Prometheus does); `axN`: N+1 copies of a.
///
/// Native-histogram values (`{{...}}`) are rejected with an error saying so.
pub fn parse_series_values(text: &str) -> Result<Vec<Option<f64>>, String> {
    if text.contains("{{") {
        return Err("native histogram values are not supported".into());
    }
    let mut out = Vec::new();
    for tok in text.split_whitespace() {
        if tok == "_" {
            out.push(None);
            continue;
        }
        if tok == "stale" {
            out.push(Some(stale_nan()));
            continue;
        }
        let lower = tok.to_ascii_lowercase();
        // An expansion has an `x` that is not part of a hex prefix.
        let x_pos = lower.rfind('x');
        let Some(xi) = x_pos else {
            out.push(Some(parse_float(tok)?));
            continue;
        };
        let times: u64 = tok[xi + 1..].parse().map_err(|_| format!("bad repetition count in {tok:?}"))?;
        if times > MAX_EXPANSION || out.len() as u64 + times > MAX_EXPANSION {
            return Err(format!("expansion {tok:?} is too long"));
        }
        let head = &tok[..xi];
        if head == "_" {
            out.extend(std::iter::repeat_n(None, times as usize));
            continue;
        }
        // Split `a+b` / `a-b` at the first sign that is not leading and not an exponent's.
        let bytes = head.as_bytes();
        let split = (1..bytes.len())
            .find(|&i| (bytes[i] == b'+' || bytes[i] == b'-') && !matches!(bytes[i - 1], b'e' | b'E' | b'+' | b'-'));
        let (start, inc) = match split {
            Some(i) => {
                let a = parse_float(&head[..i])?;
                let b = parse_float(&head[i + 1..])?;
                (a, if bytes[i] == b'-' { -b } else { b })
            }
            None => (parse_float(head)?, 0.0),
        };
        let mut v = start;
        out.push(Some(v));
        for _ in 0..times {
            v += inc;
            out.push(Some(v));
        }
    }
    Ok(out)
}

fn parse_quoted(s: &str) -> Result<(String, &str), String> {
    let mut chars = s.char_indices();
    let Some((_, q)) = chars.next() else { return Err("expected a quoted string".into()) };
    if q != '"' && q != '\'' && q != '`' {
        return Err(format!("expected a quoted string at {s:?}"));
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        if c == q {
            return Ok((out, &s[i + c.len_utf8()..]));
        }
        if c == '\\' && q != '`' {
            let Some((_, e)) = chars.next() else { break };
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                '\\' => out.push('\\'),
                '"' => out.push('"'),
                '\'' => out.push('\''),
                'u' => {
                    let hex: String = (0..4).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                    let cp = u32::from_str_radix(&hex, 16).map_err(|_| format!("bad escape in {s:?}"))?;
                    out.push(char::from_u32(cp).ok_or(format!("bad escape in {s:?}"))?);
                }
                'x' => {
                    let hex: String = (0..2).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                    let b = u8::from_str_radix(&hex, 16).map_err(|_| format!("bad escape in {s:?}"))?;
                    out.push(char::from(b));
                }
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        } else {
            out.push(c);
        }
    }
    Err(format!("unterminated string in {s:?}"))
}

fn is_name_char(c: char, first: bool) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':' || (!first && (c.is_ascii_digit() || c == '.'))
}

/// Parses a series descriptor (`metric{a="1", "b.c"="2"}`, `{a="1"}` or `metric`) at the
/// start of `text`; returns its labels and the rest of the text.
pub fn parse_series_labels(text: &str) -> Result<(Labels, &str), String> {
    let s = text.trim_start();
    let mut labels: Vec<Label> = Vec::new();
    let name_len = s.char_indices().find(|&(i, c)| !is_name_char(c, i == 0)).map_or(s.len(), |(i, _)| i);
    if name_len > 0 {
        labels.push(Label { name: "__name__".into(), value: s[..name_len].to_owned() });
    }
    let mut rest = &s[name_len..];
    if let Some(mut r) = rest.strip_prefix('{') {
        loop {
            r = r.trim_start();
            if let Some(after) = r.strip_prefix('}') {
                rest = after;
                break;
            }
            let (name, after) = if r.starts_with(['"', '\'', '`']) {
                parse_quoted(r)?
            } else {
                let n = r.char_indices().find(|&(i, c)| !is_name_char(c, i == 0)).map_or(r.len(), |(i, _)| i);
                if n == 0 {
                    return Err(format!("bad label name in {text:?}"));
                }
                (r[..n].to_owned(), &r[n..])
            };
            let after = after.trim_start();
            if let Some(v) = after.strip_prefix('=') {
                let (value, after) = parse_quoted(v.trim_start())?;
                labels.push(Label { name, value });
                r = after;
            } else {
                // A quoted name alone is the metric name.
                labels.push(Label { name: "__name__".into(), value: name });
                r = after;
            }
            r = r.trim_start();
            if let Some(after) = r.strip_prefix(',') {
                r = after;
            } else if !r.starts_with('}') {
                return Err(format!("expected ',' or '}}' in {text:?}"));
            }
        }
    } else if name_len == 0 {
        return Err(format!("expected a series descriptor in {text:?}"));
    }
    Ok((Labels::new(labels), rest))
}

/// Prometheus' almost-equal: NaN equals NaN, else a relative difference below `EPSILON`.
pub fn almost_equal(a: f64, b: f64) -> bool {
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let diff = (a - b).abs();
    let sum = a.abs() + b.abs();
    if a == 0.0 || b == 0.0 || sum < f64::MIN_POSITIVE {
        return diff < EPSILON * f64::MIN_POSITIVE;
    }
    diff / sum.min(f64::MAX) < EPSILON
}

/// What a message expectation compares against.
#[derive(Clone, Debug)]
enum MsgMatch {
    Any,
    Exact(String),
    Regex(String),
}

impl MsgMatch {
    fn parse(rest: &str) -> MsgMatch {
        let rest = rest.trim();
        if let Some(m) = rest.strip_prefix("msg:") {
            MsgMatch::Exact(m.trim().to_owned())
        } else if let Some(r) = rest.strip_prefix("regex:") {
            MsgMatch::Regex(r.trim().to_owned())
        } else {
            MsgMatch::Any
        }
    }

    fn matches(&self, msg: &str) -> bool {
        match self {
            MsgMatch::Any => true,
            MsgMatch::Exact(m) => m == msg || strip_position(m) == msg.trim(),
            MsgMatch::Regex(r) => {
                regex::Regex::new(r).map(|re| re.is_match(msg) || re.is_match(&format!("{msg} (1:1)"))).unwrap_or(false)
            }
        }
    }
}

/// Drops a trailing ` (line:col)` annotation position.
fn strip_position(m: &str) -> &str {
    let t = m.trim_end();
    if let Some(open) = t.rfind(" (")
        && t.ends_with(')')
    {
        let inner = &t[open + 2..t.len() - 1];
        if let Some((a, b)) = inner.split_once(':')
            && !a.is_empty()
            && !b.is_empty()
            && a.chars().all(|c| c.is_ascii_digit())
            && b.chars().all(|c| c.is_ascii_digit())
        {
            return &t[..open];
        }
    }
    t
}

/// An expected result line.
enum Expected {
    Scalar(f64),
    Series(Labels, Vec<Option<f64>>),
}

/// Everything an eval command expects.
#[derive(Default)]
struct Expectations {
    fail: Option<MsgMatch>,
    warn: Option<MsgMatch>,
    no_warn: bool,
    info: Option<MsgMatch>,
    no_info: bool,
    ordered: bool,
    string: Option<String>,
    range_vector: Option<(i64, i64, i64)>,
    results: Vec<Expected>,
    unsupported: Option<String>,
}

enum Query {
    Instant(i64),
    Range(i64, i64, i64),
}

fn is_command(line: &str) -> bool {
    let first = line.split_whitespace().next().unwrap_or("");
    !line.starts_with([' ', '\t'])
        && matches!(
            first,
            "eval" | "eval_fail" | "eval_warn" | "eval_info" | "eval_ordered" | "load" | "load_with_nhcb" | "clear"
        )
}

/// The engine options scripts run with by default: Prometheus' defaults plus delayed
/// name removal, as Prometheus' test engine uses.
pub fn default_options() -> EngineOptions {
    EngineOptions { delayed_name_removal: true, ..EngineOptions::default() }
}

/// Runs one script with [`default_options`]; `name` labels the report.
pub fn run_script(name: &str, text: &str) -> FileReport {
    run_script_with(name, text, default_options())
}

/// Runs one script with the given engine options.
pub fn run_script_with(name: &str, text: &str, opts: EngineOptions) -> FileReport {
    let mut report = FileReport { name: name.to_owned(), cases: Vec::new() };
    let db = Db::new(DbConfig { retention_ms: i64::MAX / 4, ..DbConfig::default() });
    let engine = Engine::new(opts);
    let lines: Vec<&str> = text.lines().collect();
    let mut histogram_series: Vec<Labels> = Vec::new();
    let mut nhcb = false;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim();
        let lineno = i + 1;
        i += 1;
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        // The command's block: following lines up to a blank line or the next command.
        let start = i;
        while i < lines.len() && !lines[i].trim().is_empty() && !is_command(lines[i]) {
            i += 1;
        }
        let block: Vec<(usize, &str)> =
            (start..i).map(|j| (j + 1, lines[j].trim())).filter(|(_, l)| !l.starts_with('#')).collect();
        let mut words = trimmed.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let fail_case = |report: &mut FileReport, msg: String| {
            report.cases.push(CaseResult { line: lineno, expr: trimmed.to_owned(), status: CaseStatus::Failed(msg) });
        };
        match cmd {
            "clear" => {
                db.clear();
                histogram_series.clear();
                nhcb = false;
            }
            "load" | "load_with_nhcb" => {
                if cmd == "load_with_nhcb" {
                    nhcb = true;
                }
                let step = match words.next().map(parse_duration) {
                    Some(Ok(s)) => s,
                    _ => {
                        fail_case(&mut report, format!("line {lineno}: bad load step"));
                        continue;
                    }
                };
                // A later line for the same series replaces an earlier one, as in Prometheus.
                let mut series: Vec<(Labels, Vec<Option<f64>>)> = Vec::new();
                for (ln, l) in &block {
                    match parse_load_line(l, &mut histogram_series) {
                        Ok(Some((labels, values))) => match series.iter_mut().find(|(l, _)| *l == labels) {
                            Some(existing) => existing.1 = values,
                            None => series.push((labels, values)),
                        },
                        Ok(None) => {}
                        Err(e) => fail_case(&mut report, format!("line {ln}: {e}")),
                    }
                }
                for (labels, values) in series {
                    if let Err(e) = load_series(&db, &labels, values, step) {
                        fail_case(&mut report, format!("line {lineno}: {e}"));
                    }
                }
            }
            c if c.starts_with("eval") => {
                let rest = trimmed[cmd.len()..].trim_start();
                let (query, expr) = match parse_eval_header(rest) {
                    Ok(q) => q,
                    Err(e) => {
                        fail_case(&mut report, format!("line {lineno}: {e}"));
                        continue;
                    }
                };
                let mut exp = Expectations::default();
                match cmd {
                    "eval_fail" => exp.fail = Some(MsgMatch::Any),
                    "eval_warn" => exp.warn = Some(MsgMatch::Any),
                    "eval_info" => exp.info = Some(MsgMatch::Any),
                    "eval_ordered" => exp.ordered = true,
                    _ => {}
                }
                let status = match parse_expectations(&block, matches!(query, Query::Range(..)), &mut exp) {
                    Err(e) => CaseStatus::Failed(e),
                    Ok(()) => run_case(&engine, &db, &query, expr, &exp, &histogram_series, nhcb),
                };
                let status = match status {
                    CaseStatus::Failed(r) => CaseStatus::Failed(format!("{name}:{lineno}: {r}")),
                    s => s,
                };
                report.cases.push(CaseResult { line: lineno, expr: expr.to_owned(), status });
            }
            other => fail_case(&mut report, format!("{name}:{lineno}: unknown command {other:?}")),
        }
    }
    report
}

/// Parses one series line of a load block; `None` for a native-histogram series (its
/// labels are recorded in `hist`).
fn parse_load_line(line: &str, hist: &mut Vec<Labels>) -> Result<Option<(Labels, Vec<Option<f64>>)>, String> {
    let (labels, rest) = parse_series_labels(line)?;
    if rest.contains("{{") {
        hist.push(labels);
        return Ok(None);
    }
    Ok(Some((labels, parse_series_values(rest)?)))
}

fn load_series(db: &Db, labels: &Labels, values: Vec<Option<f64>>, step: i64) -> Result<(), String> {
    for (k, v) in values.into_iter().enumerate() {
        if let Some(v) = v {
            let t = (k as i64).checked_mul(step).ok_or("timestamp overflow")?;
            db.append(labels, t, v).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn parse_eval_header(rest: &str) -> Result<(Query, &str), String> {
    let mut parts = rest.splitn(2, char::is_whitespace);
    let kind = parts.next().unwrap_or("");
    let mut after = parts.next().unwrap_or("").trim_start();
    let mut take = |kw: &str| -> Result<i64, String> {
        let s = after.strip_prefix(kw).ok_or(format!("expected {kw:?} in eval command"))?.trim_start();
        let end = s.find(char::is_whitespace).unwrap_or(s.len());
        let v = parse_duration(&s[..end])?;
        after = s[end..].trim_start();
        Ok(v)
    };
    let q = match kind {
        "instant" => Query::Instant(take("at")?),
        "range" => {
            let s = take("from")?;
            let e = take("to")?;
            let st = take("step")?;
            Query::Range(s, e, st)
        }
        other => return Err(format!("unknown eval kind {other:?}")),
    };
    if after.is_empty() {
        return Err("missing expression".into());
    }
    Ok((q, after))
}

fn parse_expectations(block: &[(usize, &str)], range: bool, exp: &mut Expectations) -> Result<(), String> {
    for &(ln, l) in block {
        if let Some(e) = l.strip_prefix("expect ") {
            let e = e.trim();
            let (kw, rest) = e.split_once(char::is_whitespace).unwrap_or((e, ""));
            match kw {
                "fail" => exp.fail = Some(MsgMatch::parse(rest)),
                "warn" => exp.warn = Some(MsgMatch::parse(rest)),
                "no_warn" => exp.no_warn = true,
                "info" => exp.info = Some(MsgMatch::parse(rest)),
                "no_info" => exp.no_info = true,
                "ordered" => exp.ordered = true,
                "string" => {
                    let (s, _) = parse_quoted(rest.trim()).map_err(|e| format!("line {ln}: {e}"))?;
                    exp.string = Some(s);
                }
                "range" => {
                    let r = rest.trim().strip_prefix("vector").ok_or(format!("line {ln}: bad expect range"))?;
                    let (q, _) = parse_eval_header(&format!("range {} x", r.trim()))
                        .map(|(q, e)| (q, e.len()))
                        .map_err(|e| format!("line {ln}: {e}"))?;
                    if let Query::Range(s, e, st) = q {
                        exp.range_vector = Some((s, e, st));
                    }
                }
                other => return Err(format!("line {ln}: unknown expectation {other:?}")),
            }
            continue;
        }
        if l.contains("{{") {
            exp.unsupported = Some("expected output holds native histograms".into());
            continue;
        }
        if !range
            && exp.range_vector.is_none()
            && let Ok(v) = parse_float(l)
        {
            exp.results.push(Expected::Scalar(v));
            continue;
        }
        let (labels, rest) = parse_series_labels(l).map_err(|e| format!("line {ln}: {e}"))?;
        let values = parse_series_values(rest).map_err(|e| format!("line {ln}: {e}"))?;
        exp.results.push(Expected::Series(labels, values));
    }
    Ok(())
}

/// True if any selector of `expr` matches one of `series`.
fn selects_any(expr: &Expr, series: &[Labels]) -> bool {
    use promql_parser::parser::Expr as E;
    let vs_matches = |vs: &promql_parser::parser::VectorSelector| {
        crate::promql::selector_matcher_groups(vs)
            .iter()
            .any(|g| series.iter().any(|l| g.iter().all(|m| m.is_match(l.get(&m.name).unwrap_or("")))))
    };
    match expr {
        E::VectorSelector(vs) => vs_matches(vs),
        E::MatrixSelector(ms) => vs_matches(&ms.vs),
        E::Aggregate(a) => selects_any(&a.expr, series) || a.param.as_ref().is_some_and(|p| selects_any(p, series)),
        E::Unary(u) => selects_any(&u.expr, series),
        E::Binary(b) => selects_any(&b.lhs, series) || selects_any(&b.rhs, series),
        E::Paren(p) => selects_any(&p.expr, series),
        E::Subquery(s) => selects_any(&s.expr, series),
        E::Call(c) => c.args.args.iter().any(|a| selects_any(a, series)),
        _ => false,
    }
}

fn error_text(e: &EvalError) -> String {
    match e {
        EvalError::Execution(m) | EvalError::Parse(m) => m.clone(),
        other => other.to_string(),
    }
}

fn run_case(
    engine: &Engine,
    db: &Db,
    query: &Query,
    text: &str,
    exp: &Expectations,
    hist: &[Labels],
    nhcb: bool,
) -> CaseStatus {
    if let Some(r) = &exp.unsupported {
        return CaseStatus::Unsupported(r.clone());
    }
    if nhcb {
        return CaseStatus::Unsupported("load_with_nhcb (native histograms with custom buckets)".into());
    }
    let parsed = crate::promql::parse(text);
    if let Ok(e) = &parsed
        && !hist.is_empty()
        && selects_any(e, hist)
    {
        return CaseStatus::Unsupported("expression selects native-histogram series".into());
    }
    let store: &dyn Queryable = db;
    let res = parsed.and_then(|e| match query {
        Query::Instant(t) => engine.instant(store, &e, *t),
        Query::Range(s, en, st) => engine.range(store, &e, *s, *en, *st),
    });
    let res = match (res, &exp.fail) {
        (Err(e), Some(m)) => {
            let msg = error_text(&e);
            return if m.matches(&msg) {
                CaseStatus::Passed
            } else {
                CaseStatus::Failed(format!("error {msg:?} does not match expected {m:?}"))
            };
        }
        (Err(e), None) => return CaseStatus::Failed(format!("unexpected error: {e}")),
        (Ok(_), Some(_)) => return CaseStatus::Failed("expected an error, query succeeded".into()),
        (Ok(r), None) => r,
    };
    match check_annotations(&res, exp).and_then(|()| check_value(&res.value, query, exp)) {
        Ok(()) => CaseStatus::Passed,
        Err(e) => CaseStatus::Failed(e),
    }
}

fn check_annotations(res: &QueryResult, exp: &Expectations) -> Result<(), String> {
    for (kind, want, none, got) in
        [("warning", &exp.warn, exp.no_warn, &res.warnings), ("info", &exp.info, exp.no_info, &res.infos)]
    {
        if let Some(m) = want {
            if got.is_empty() {
                return Err(format!("expected a {kind}, got none"));
            }
            if !got.iter().any(|g| m.matches(g)) {
                return Err(format!("no {kind} matches {m:?}; got {got:?}"));
            }
        }
        if none && !got.is_empty() {
            return Err(format!("expected no {kind}, got {got:?}"));
        }
    }
    Ok(())
}

fn fmt_series(l: &Labels) -> String {
    l.to_string()
}

fn check_value(value: &Value, query: &Query, exp: &Expectations) -> Result<(), String> {
    if let Some(want) = &exp.string {
        return match value {
            Value::String { s, .. } if s == want => Ok(()),
            other => Err(format!("expected string {want:?}, got {other:?}")),
        };
    }
    match (value, query) {
        (Value::Scalar { v, .. }, Query::Instant(_)) => match exp.results.as_slice() {
            [Expected::Scalar(w)] if almost_equal(*v, *w) => Ok(()),
            [Expected::Scalar(w)] => Err(format!("expected scalar {w}, got {v}")),
            _ => Err(format!("got scalar {v}, expected {} series", exp.results.len())),
        },
        (Value::Vector(vec), Query::Instant(_)) => {
            if exp.range_vector.is_some() {
                return Err("expected a range vector, got an instant vector".into());
            }
            let mut want: Vec<(&Labels, f64)> = Vec::new();
            for e in &exp.results {
                match e {
                    Expected::Series(l, vals) if vals.len() == 1 && vals[0].is_some() => {
                        want.push((l, vals[0].unwrap_or(f64::NAN)))
                    }
                    Expected::Series(l, _) => return Err(format!("expected line for {l} needs exactly one value")),
                    Expected::Scalar(s) => return Err(format!("expected scalar {s}, got a vector")),
                }
            }
            if want.len() != vec.len() {
                let got: Vec<String> = vec.iter().map(|s| format!("{} {}", fmt_series(&s.labels), s.v)).collect();
                return Err(format!("expected {} samples, got {}: {}", want.len(), vec.len(), got.join("; ")));
            }
            for (idx, (l, w)) in want.iter().enumerate() {
                let found = if exp.ordered {
                    vec.get(idx).filter(|s| s.labels == **l)
                } else {
                    vec.iter().find(|s| s.labels == **l)
                };
                match found {
                    None if exp.ordered => return Err(format!("expected {l} at position {idx}")),
                    None => {
                        let got: Vec<String> = vec.iter().map(|s| fmt_series(&s.labels)).collect();
                        return Err(format!("expected series {l} not in result [{}]", got.join(", ")));
                    }
                    Some(s) if !almost_equal(s.v, *w) => return Err(format!("{l}: expected {w}, got {}", s.v)),
                    Some(_) => {}
                }
            }
            Ok(())
        }
        (Value::Matrix(m), Query::Range(s, _, st)) => compare_matrix(m, *s, *st, exp),
        (Value::Matrix(m), Query::Instant(_)) => match exp.range_vector {
            Some((s, _, st)) => compare_matrix(m, s, st, exp),
            None => Err("got a range vector for an instant query without `expect range vector`".into()),
        },
        (other, _) => Err(format!("unexpected result type: {other:?}")),
    }
}

fn compare_matrix(m: &[Series], start: i64, step: i64, exp: &Expectations) -> Result<(), String> {
    if exp.results.len() != m.len() {
        let got: Vec<String> = m.iter().map(|s| fmt_series(&s.labels)).collect();
        return Err(format!("expected {} series, got {}: [{}]", exp.results.len(), m.len(), got.join(", ")));
    }
    for e in &exp.results {
        let Expected::Series(l, vals) = e else { return Err("expected a series line, got a bare scalar".into()) };
        let Some(s) = m.iter().find(|s| s.labels == *l) else {
            let got: Vec<String> = m.iter().map(|s| fmt_series(&s.labels)).collect();
            return Err(format!("expected series {l} not in result [{}]", got.join(", ")));
        };
        let want: Vec<(i64, f64)> = vals
            .iter()
            .enumerate()
            // Results never hold staleness markers: an expected `stale` means "no point".
            .filter_map(|(k, v)| {
                v.filter(|v| !crate::storage::is_stale_nan(*v))
                    .map(|v| (start.saturating_add((k as i64).saturating_mul(step)), v))
            })
            .collect();
        let same = want.len() == s.samples.len()
            && want.iter().zip(&s.samples).all(|((t, v), x)| *t == x.t && almost_equal(*v, x.v));
        if !same {
            let fmt = |p: &mut dyn Iterator<Item = (i64, f64)>| {
                p.map(|(t, v)| format!("{v}@{}", t as f64 / 1000.0)).collect::<Vec<_>>().join(" ")
            };
            return Err(format!(
                "{l}: expected [{}], got [{}]",
                fmt(&mut want.iter().copied()),
                fmt(&mut s.samples.iter().map(|x| (x.t, x.v)))
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expanding_notation() {
        assert_eq!(parse_series_values("1+2x3").unwrap(), vec![Some(1.0), Some(3.0), Some(5.0), Some(7.0)]);
        assert_eq!(parse_series_values("10-5x2").unwrap(), vec![Some(10.0), Some(5.0), Some(0.0)]);
        assert_eq!(parse_series_values("-1-1x1").unwrap(), vec![Some(-1.0), Some(-2.0)]);
        assert_eq!(parse_series_values("_ _x2 3").unwrap(), vec![None, None, None, Some(3.0)]);
        assert_eq!(parse_series_values("1x2").unwrap(), vec![Some(1.0); 3]);
        assert_eq!(parse_series_values("1e3+1e-1x1").unwrap(), vec![Some(1000.0), Some(1000.1)]);
        assert_eq!(parse_series_values("0x2").unwrap(), vec![Some(0.0); 3]);
        let v = parse_series_values("stale NaN Inf -Inf").unwrap();
        assert!(crate::storage::is_stale_nan(v[0].unwrap()));
        assert!(v[1].unwrap().is_nan() && !crate::storage::is_stale_nan(v[1].unwrap()));
        assert_eq!(v[2], Some(f64::INFINITY));
        assert_eq!(v[3], Some(f64::NEG_INFINITY));
        assert!(parse_series_values("{{schema:1}}").is_err());
        assert!(parse_series_values("1+1x99999999999").is_err());
        assert!(parse_series_values("abc").is_err());
    }

    #[test]
    fn series_descriptor() {
        let (l, rest) = parse_series_labels(r#"http{job="a b", "x.y"="1"} 1 2"#).unwrap();
        assert_eq!(l.metric_name(), Some("http"));
        assert_eq!(l.get("job"), Some("a b"));
        assert_eq!(l.get("x.y"), Some("1"));
        assert_eq!(rest.trim(), "1 2");
        let (l, _) = parse_series_labels(r#"{"metric.name", a="\"q\""}"#).unwrap();
        assert_eq!(l.metric_name(), Some("metric.name"));
        assert_eq!(l.get("a"), Some("\"q\""));
        assert!(parse_series_labels(r#"{a="1""#).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5m").unwrap(), 300_000);
        assert_eq!(parse_duration("10s53ms").unwrap(), 10_053);
        assert_eq!(parse_duration("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration("0").unwrap(), 0);
        assert_eq!(parse_duration("-50").unwrap(), -50_000);
        assert!(parse_duration("5q").is_err());
    }

    #[test]
    fn float_comparison() {
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(almost_equal(1.0, 1.0 + 1e-9));
        assert!(!almost_equal(1.0, 1.001));
        assert!(!almost_equal(0.0, 1e-9));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY));
        assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY));
    }

    #[test]
    fn hostile_scripts_do_not_panic() {
        for script in [
            "load 0s\n  m 1 2\n\neval instant at 0 m\n  m 1\n",
            "load 1y\n  m 1+1x999999\n\neval instant at 9e18 m\n",
            "eval range from 0 to 1000000000 step 0 vector(1)\n",
            "eval range from 10 to 0 step 1 vector(1)\n",
            "eval instant at 0 \"unterminated\n  expect string \"x\n",
            "eval instant at 0 1\n  expect range vector\n",
            "eval instant at 0 1\n  expect bogus\n",
            "eval instant\n",
            "eval instant at\n",
            "load\n  m{a=\"1} 1\n",
            "load 1m\n  m{\"a\"=} 1\n  {} 1\n  m 1e400x3 _x99999999999\n",
            "eval instant at 0 m\n  m{a=\"1\"} 1 2 3\n  {} {{schema:0}}\n",
            "\u{0}\u{ffff}\n\n\teval instant at 0 1\n",
            "frobnicate\n",
        ] {
            let r = run_script("hostile", script);
            for c in &r.cases {
                assert!(c.line >= 1, "{script:?}");
            }
        }
        // A malformed command is a failed case, not a silent pass.
        assert_eq!(run_script("h", "frobnicate\n").failed(), 1);
        assert_eq!(run_script("h", "eval instant at 0 1\n  expect bogus\n").failed(), 1);
    }

    #[test]
    fn a_small_script_passes_and_a_wrong_one_fails() {
        let script = "load 1m\n  m{a=\"1\"} 0+1x10\n  m{a=\"2\"} 5 stale\n\neval instant at 5m m\n  m{a=\"1\"} 5\n\n\
                      eval instant at 5m sum(m)\n  {} 5\n\neval range from 0 to 2m step 1m m\n  m{a=\"1\"} 0 1 2\n  \
                      m{a=\"2\"} 5 _ _\n\neval instant at 0 m * 2\n  {a=\"1\"} 1\n  {a=\"2\"} 10\n\n\
                      load 1m\n  h {{schema:1 sum:1 count:1}}\n\neval instant at 0 h\n  h 1\n";
        let r = run_script("t", script);
        let st: Vec<&CaseStatus> = r.cases.iter().map(|c| &c.status).collect();
        assert_eq!(st[0], &CaseStatus::Passed);
        assert_eq!(st[1], &CaseStatus::Passed);
        assert_eq!(st[2], &CaseStatus::Passed, "{:?}", st[2]);
        assert!(matches!(st[3], CaseStatus::Failed(_)));
        assert!(matches!(st[4], CaseStatus::Unsupported(_)));
        assert_eq!((r.passed(), r.failed(), r.unsupported()), (3, 1, 1));
    }
}
