//! Line parsing: one log line (already split, truncated and UTF-8 checked) into a body,
//! a severity and a timestamp.
//!
//! * JSON: a line holding one JSON object becomes a structured body (`AnyValue::KvList`,
//!   keys in file order, nested objects and arrays kept). Severity comes from the first
//!   of `level`, `severity`, `lvl` (ASCII case-insensitive) present at the top level: a
//!   level word, or a bunyan/pino number (10 trace … 60 fatal). The timestamp comes from
//!   the first of `timestamp`, `time`, `ts`, `@timestamp`: an RFC 3339 string, or a number
//!   (or numeric string) of epoch seconds, milliseconds, microseconds or nanoseconds,
//!   told apart by magnitude. The fields stay in the body.
//! * Text: the body is the whole line. A leading timestamp (optionally inside `[...]`) in
//!   RFC 3339 or `YYYY-MM-DD HH:MM:SS[.fff]` form (a comma before the fraction is
//!   accepted, as Python writes it; no zone means UTC) gives the time. The level is the
//!   first level word among the next few tokens, within the first 96 bytes: an
//!   upper-case word (`INFO`), a decorated one (`[warn]`, `error:`, `level=debug`), or
//!   any word that directly follows the timestamp (or starts the line).
//! * `auto`: lines whose first non-blank byte is `{` are tried as JSON, everything else
//!   (and a `{` line that is not a JSON object) is text.
//!
//! Nothing here allocates beyond the record's own strings; the parser is total (any input
//! gives a record) and never panics.

use crate::signal::{AnyValue, KeyValue, SeverityNumber};
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// How lines are interpreted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON for lines that start with `{`, text otherwise (the default).
    #[default]
    Auto,
    /// Every line is expected to be a JSON object; other lines fall back to text and are
    /// counted as `json_parse_errors`.
    Json,
    /// Every line is text.
    Text,
}

/// What the parser extracted from one line.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine {
    /// The body: `Str` for text lines, `KvList` for JSON objects.
    pub body: AnyValue,
    /// Event time in ns since the epoch; 0 if the line carries none.
    pub time_unix_nano: u64,
    /// Severity number; unspecified if none was found.
    pub severity_number: SeverityNumber,
    /// Severity as written (`INFO`, `warning`, `30`); empty if none.
    pub severity_text: String,
    /// The line was expected to be JSON (format `json`, or `auto` and it starts with `{`)
    /// but is not a JSON object; it was parsed as text instead.
    pub json_fallback: bool,
}

/// Parses one line (without its newline) according to `format`.
pub fn parse_line(format: Format, line: &str) -> ParsedLine {
    match parse_meta(format, line) {
        Meta::Json(p) => p,
        Meta::Text { time, sev, sev_text, fallback } => text_line(line.to_owned(), time, sev, sev_text, fallback),
    }
}

/// As [`parse_line`], taking the line as an owned `String` so a text body reuses it
/// instead of copying it.
pub fn parse_line_string(format: Format, line: String) -> ParsedLine {
    match parse_meta(format, &line) {
        Meta::Json(p) => p,
        Meta::Text { time, sev, sev_text, fallback } => text_line(line, time, sev, sev_text, fallback),
    }
}

fn text_line(body: String, time: u64, sev: SeverityNumber, sev_text: String, fallback: bool) -> ParsedLine {
    ParsedLine {
        body: AnyValue::Str(body),
        time_unix_nano: time,
        severity_number: sev,
        severity_text: sev_text,
        json_fallback: fallback,
    }
}

enum Meta {
    Json(ParsedLine),
    Text { time: u64, sev: SeverityNumber, sev_text: String, fallback: bool },
}

fn parse_meta(format: Format, line: &str) -> Meta {
    let try_json = match format {
        Format::Text => false,
        Format::Json => true,
        Format::Auto => line.trim_ascii_start().starts_with('{'),
    };
    if try_json && let Some(parsed) = parse_json(line) {
        return Meta::Json(parsed);
    }
    let (time, sev, sev_text) = parse_text_meta(line);
    Meta::Text { time, sev, sev_text, fallback: try_json }
}

// ---------------------------------------------------------------------------------------
// JSON

/// A JSON value deserialized straight into an [`AnyValue`], without a `serde_json::Value`
/// in between.
struct Json(AnyValue);

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Json, D::Error> {
        d.deserialize_any(JsonVisitor)
    }
}

struct JsonVisitor;

impl<'de> Visitor<'de> for JsonVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Json, E> {
        Ok(Json(AnyValue::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Json, E> {
        Ok(Json(AnyValue::Int(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Json, E> {
        Ok(Json(i64::try_from(v).map(AnyValue::Int).unwrap_or(AnyValue::Double(v as f64))))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Json, E> {
        Ok(Json(AnyValue::Double(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Json, E> {
        Ok(Json(AnyValue::Str(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Json, E> {
        Ok(Json(AnyValue::Str(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json(AnyValue::Empty))
    }

    fn visit_none<E: de::Error>(self) -> Result<Json, E> {
        Ok(Json(AnyValue::Empty))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(Json(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json(AnyValue::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut kvs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(key) = map.next_key::<String>()? {
            let Json(value) = map.next_value()?;
            kvs.push(KeyValue { key, value });
        }
        Ok(Json(AnyValue::KvList(kvs)))
    }
}

const LEVEL_KEYS: [&str; 3] = ["level", "severity", "lvl"];
const TIME_KEYS: [&str; 4] = ["timestamp", "time", "ts", "@timestamp"];

fn parse_json(line: &str) -> Option<ParsedLine> {
    let Json(body) = serde_json::from_str::<Json>(line).ok()?;
    let AnyValue::KvList(kvs) = &body else { return None };
    let mut level: Option<(usize, &AnyValue)> = None;
    let mut time: Option<(usize, &AnyValue)> = None;
    for kv in kvs {
        if let Some(rank) = LEVEL_KEYS.iter().position(|k| kv.key.eq_ignore_ascii_case(k))
            && level.is_none_or(|(r, _)| rank < r)
        {
            level = Some((rank, &kv.value));
        }
        if let Some(rank) = TIME_KEYS.iter().position(|k| kv.key.eq_ignore_ascii_case(k))
            && time.is_none_or(|(r, _)| rank < r)
        {
            time = Some((rank, &kv.value));
        }
    }
    let (severity_number, severity_text) = match level.map(|(_, v)| v) {
        Some(AnyValue::Str(s)) => (SeverityNumber::from_level(s).unwrap_or_default(), s.clone()),
        Some(AnyValue::Int(n)) => (bunyan_level(*n), n.to_string()),
        _ => (SeverityNumber::UNSPECIFIED, String::new()),
    };
    let time_unix_nano = match time.map(|(_, v)| v) {
        Some(AnyValue::Str(s)) => parse_timestamp_str(s),
        Some(AnyValue::Int(n)) => u64::try_from(*n).ok().map_or(0, |n| epoch_to_nanos(n as f64, Some(n))),
        Some(AnyValue::Double(f)) => epoch_to_nanos(*f, None),
        _ => 0,
    };
    Some(ParsedLine { body, time_unix_nano, severity_number, severity_text, json_fallback: false })
}

/// Bunyan/pino numeric levels: 10 trace, 20 debug, 30 info, 40 warn, 50 error, 60 fatal.
fn bunyan_level(n: i64) -> SeverityNumber {
    match n {
        10 => SeverityNumber::TRACE,
        20 => SeverityNumber::DEBUG,
        30 => SeverityNumber::INFO,
        40 => SeverityNumber::WARN,
        50 => SeverityNumber::ERROR,
        60 => SeverityNumber::FATAL,
        _ => SeverityNumber::UNSPECIFIED,
    }
}

/// A JSON timestamp string: RFC 3339 (or the space-separated form), else a number.
fn parse_timestamp_str(s: &str) -> u64 {
    let t = s.trim();
    if let Some((ns, len)) = parse_timestamp_prefix(t.as_bytes())
        && len == t.len()
    {
        return ns;
    }
    if let Ok(n) = t.parse::<u64>() {
        return epoch_to_nanos(n as f64, Some(n));
    }
    match t.parse::<f64>() {
        Ok(f) => epoch_to_nanos(f, None),
        Err(_) => 0,
    }
}

/// Epoch seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude
/// (seconds below 1e11 ≈ year 5138, milliseconds below 1e14, microseconds below 1e17).
/// `exact` carries the integer when there is one, so nanosecond values keep every digit.
fn epoch_to_nanos(f: f64, exact: Option<u64>) -> u64 {
    if !f.is_finite() || f <= 0.0 {
        return 0;
    }
    let (mult, exact_mult) = if f < 1e11 {
        (1e9, 1_000_000_000u64)
    } else if f < 1e14 {
        (1e6, 1_000_000)
    } else if f < 1e17 {
        (1e3, 1_000)
    } else {
        (1.0, 1)
    };
    if let Some(n) = exact {
        return n.saturating_mul(exact_mult);
    }
    let ns = f * mult;
    if ns >= u64::MAX as f64 { 0 } else { ns as u64 }
}

// ---------------------------------------------------------------------------------------
// Text

/// How far into a text line (after the timestamp) a level word is looked for.
const LEVEL_WINDOW: usize = 96;
/// How many tokens after the timestamp are looked at.
const LEVEL_TOKENS: usize = 6;

/// Time, severity number and severity text of a text line.
fn parse_text_meta(line: &str) -> (u64, SeverityNumber, String) {
    let bytes = line.as_bytes();
    let mut rest = 0usize;
    let mut time = 0u64;
    // An optional `[` before the timestamp, as in `[2024-05-01 10:00:00] ERROR ...`.
    let bracket = bytes.first() == Some(&b'[');
    if let Some((ns, len)) = parse_timestamp_prefix(&bytes[usize::from(bracket)..]) {
        time = ns;
        rest = usize::from(bracket) + len;
        if bracket && bytes.get(rest) == Some(&b']') {
            rest += 1;
        }
    }
    let (sev, sev_text) = find_level(&bytes[rest..]).unwrap_or_default();
    (time, sev, sev_text)
}

/// The first level word near the start of `s`; see the module docs for what counts.
fn find_level(s: &[u8]) -> Option<(SeverityNumber, String)> {
    let window = &s[..s.len().min(LEVEL_WINDOW)];
    let mut first = true;
    for token in window.split(|b| b.is_ascii_whitespace()).filter(|t| !t.is_empty()).take(LEVEL_TOKENS) {
        let (word, decorated) = strip_level_token(token);
        let candidate = (3..=11).contains(&word.len()) && word.iter().all(u8::is_ascii_alphabetic);
        if candidate {
            // The word is ASCII letters only, so this cannot fail.
            let text = std::str::from_utf8(word).unwrap_or_default();
            let upper = word.iter().all(u8::is_ascii_uppercase);
            if (upper || decorated || first)
                && let Some(sev) = SeverityNumber::from_level(text)
            {
                return Some((sev, text.to_owned()));
            }
        }
        // Pure punctuation (`-`, `|`) separates fields without counting as the first word.
        if token.iter().any(u8::is_ascii_alphanumeric) {
            first = false;
        }
    }
    None
}

/// Strips decoration (`[..]`, `<..>`, `(..)`, a trailing `:`/`,`/`|`/`;`, quotes and a
/// `level=`/`lvl=`/`severity=` prefix); says whether any was present.
fn strip_level_token(token: &[u8]) -> (&[u8], bool) {
    let mut t = token;
    let mut decorated = false;
    for prefix in [&b"level="[..], b"lvl=", b"severity="] {
        if t.len() > prefix.len() && t[..prefix.len()].eq_ignore_ascii_case(prefix) {
            t = &t[prefix.len()..];
            decorated = true;
            break;
        }
    }
    while let [b'[' | b'(' | b'<' | b'"' | b'\'', tail @ ..] = t {
        t = tail;
        decorated = true;
    }
    while let [head @ .., b']' | b')' | b'>' | b':' | b',' | b'|' | b';' | b'"' | b'\''] = t {
        t = head;
        decorated = true;
    }
    (t, decorated)
}

// ---------------------------------------------------------------------------------------
// Timestamps

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let s = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A timestamp at the start of `b`: `YYYY-MM-DD[T ]HH:MM:SS[(.|,)fraction][Z|±HH:MM|±HHMM]`
/// (`t`/`z` accepted in lower case; no zone means UTC). Returns ns since the epoch and the
/// number of bytes consumed; `None` if `b` does not start with one or it is before 1970.
pub fn parse_timestamp_prefix(b: &[u8]) -> Option<(u64, usize)> {
    let year = digits(b, 0, 4)?;
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let month = digits(b, 5, 2)?;
    let day = digits(b, 8, 2)?;
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) {
        return None;
    }
    let hour = digits(b, 11, 2)?;
    if b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let minute = digits(b, 14, 2)?;
    let second = digits(b, 17, 2)?;
    if !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(i64::from(year), month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut nanos = 0u64;
    if matches!(b.get(i), Some(b'.' | b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        let mut scale = 100_000_000u64;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            nanos += u64::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    let mut offset_secs = 0i64;
    match b.get(i) {
        Some(b'Z' | b'z') => i += 1,
        Some(&sign @ (b'+' | b'-')) => {
            let oh = digits(b, i + 1, 2);
            let (om, len) =
                if b.get(i + 3) == Some(&b':') { (digits(b, i + 4, 2), 6) } else { (digits(b, i + 3, 2), 5) };
            if let (Some(oh), Some(om)) = (oh, om)
                && oh <= 23
                && om <= 59
            {
                offset_secs = i64::from(oh * 3600 + om * 60);
                if sign == b'-' {
                    offset_secs = -offset_secs;
                }
                i += len;
            }
        }
        _ => {}
    }
    // A leap second (:60) is folded into :59; log ordering is what matters here.
    let second = second.min(59);
    let days = days_from_civil(i64::from(year), month, day);
    let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second) - offset_secs;
    let secs = u64::try_from(secs).ok()?;
    Some((secs.checked_mul(1_000_000_000)?.checked_add(nanos)?, i))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected: (time ns, severity number, severity text, body is structured).
    fn check(format: Format, line: &str, time: u64, sev: SeverityNumber, text: &str, structured: bool) {
        let p = parse_line(format, line);
        assert_eq!(p.time_unix_nano, time, "time of {line:?}");
        assert_eq!(p.severity_number, sev, "severity of {line:?}");
        assert_eq!(p.severity_text, text, "severity text of {line:?}");
        assert_eq!(matches!(p.body, AnyValue::KvList(_)), structured, "body kind of {line:?}");
        if !structured {
            assert_eq!(p.body.as_str(), Some(line), "text body is the whole line");
        }
    }

    const T0: u64 = 1_714_557_600_000_000_000; // 2024-05-01T10:00:00Z

    #[test]
    fn text_lines() {
        use SeverityNumber as S;
        let cases: &[(&str, u64, SeverityNumber, &str)] = &[
            ("2024-05-01T10:00:00Z INFO started", T0, S::INFO, "INFO"),
            ("2024-05-01T10:00:00.250Z WARN slow", T0 + 250_000_000, S::WARN, "WARN"),
            ("2024-05-01T12:00:00+02:00 error boom", T0, S::ERROR, "error"),
            ("2024-05-01T05:30:00-0430 debug x", T0, S::DEBUG, "debug"),
            ("2024-05-01 10:00:00,123 - app.db - ERROR - failed", T0 + 123_000_000, S::ERROR, "ERROR"),
            ("2024-05-01 10:00:00.123456789 [warning] disk", T0 + 123_456_789, S::WARN, "warning"),
            ("[2024-05-01 10:00:00] CRIT down", T0, S::FATAL, "CRIT"),
            ("2024-05-01t10:00:00z level=info msg=ok", T0, S::INFO, "info"),
            ("INFO no timestamp here", 0, S::INFO, "INFO"),
            ("info: lower case but decorated", 0, S::INFO, "info"),
            ("GET /x 200 the error count was low", 0, S::UNSPECIFIED, ""),
            ("2024-05-01 10:00:00 user reported an error later", T0, S::UNSPECIFIED, ""),
            ("2024-13-01 10:00:00 ERROR bad month", 0, S::ERROR, "ERROR"),
            ("2024-02-30T10:00:00Z no such day", 0, S::UNSPECIFIED, ""),
            ("1969-12-31T23:59:59Z before the epoch", 0, S::UNSPECIFIED, ""),
            ("", 0, S::UNSPECIFIED, ""),
            ("2024-05-01", 0, S::UNSPECIFIED, ""),
            ("{not json", 0, S::UNSPECIFIED, ""),
            ("ünïcödé WARN text", 0, S::WARN, "WARN"),
            ("a b c d e f g WARN too far", 0, S::UNSPECIFIED, ""),
        ];
        for &(line, time, sev, text) in cases {
            check(Format::Text, line, time, sev, text, false);
            if !line.starts_with('{') {
                check(Format::Auto, line, time, sev, text, false);
            }
        }
    }

    #[test]
    fn json_lines() {
        use SeverityNumber as S;
        let cases: &[(&str, u64, SeverityNumber, &str)] = &[
            (r#"{"level":"info","msg":"ok","timestamp":"2024-05-01T10:00:00Z"}"#, T0, S::INFO, "info"),
            (r#"{"severity":"WARNING","time":"2024-05-01T10:00:00.5Z"}"#, T0 + 500_000_000, S::WARN, "WARNING"),
            (r#"{"lvl":"err","ts":1714557600}"#, T0, S::ERROR, "err"),
            (r#"{"level":50,"time":1714557600123}"#, T0 + 123_000_000, S::ERROR, "50"),
            (r#"{"level":30,"ts":1714557600.5}"#, T0 + 500_000_000, S::INFO, "30"),
            (r#"{"@timestamp":"1714557600000000000","level":"fatal"}"#, T0, S::FATAL, "fatal"),
            (r#"{"ts":1714557600000000,"Level":"DEBUG"}"#, T0, S::DEBUG, "DEBUG"),
            (r#"{"time":"bad","level":"chatty"}"#, 0, S::UNSPECIFIED, "chatty"),
            (r#"{"level":{"nested":1},"time":null}"#, 0, S::UNSPECIFIED, ""),
            (r#"  {"msg":"leading blanks"}"#, 0, S::UNSPECIFIED, ""),
            (
                r#"{"ts":"2024-05-01T10:00:00Z","timestamp":"2024-05-01T10:00:01Z"}"#,
                T0 + 1_000_000_000,
                S::UNSPECIFIED,
                "",
            ),
        ];
        for &(line, time, sev, text) in cases {
            check(Format::Json, line, time, sev, text, true);
            check(Format::Auto, line, time, sev, text, true);
        }
    }

    #[test]
    fn json_body_keeps_structure_and_order() {
        let p = parse_line(Format::Auto, r#"{"b":1,"a":[true,null,2.5,"x"],"n":{"k":"v"},"big":18446744073709551615}"#);
        let AnyValue::KvList(kvs) = p.body else { panic!("not structured") };
        let keys: Vec<&str> = kvs.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(keys, ["b", "a", "n", "big"]);
        assert_eq!(kvs[0].value, AnyValue::Int(1));
        assert_eq!(
            kvs[1].value,
            AnyValue::Array(vec![
                AnyValue::Bool(true),
                AnyValue::Empty,
                AnyValue::Double(2.5),
                AnyValue::Str("x".into())
            ])
        );
        assert_eq!(kvs[2].value, AnyValue::KvList(vec![KeyValue::string("k", "v")]));
        assert_eq!(kvs[3].value, AnyValue::Double(u64::MAX as f64));
    }

    #[test]
    fn json_fallback_to_text() {
        for line in [r#"{"unterminated": "#, "[1,2,3]", r#""just a string""#, "{} trailing", "plain text"] {
            let p = parse_line(Format::Json, line);
            assert!(p.json_fallback, "{line:?} must fall back");
            assert_eq!(p.body.as_str(), Some(line));
        }
        // Auto only tries lines that look like objects, and only those count as fallbacks.
        assert!(parse_line(Format::Auto, "{oops").json_fallback);
        assert!(!parse_line(Format::Auto, "[1,2]").json_fallback);
        assert!(!parse_line(Format::Text, r#"{"level":"info"}"#).json_fallback);
    }

    #[test]
    fn deep_json_does_not_panic() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        let line = format!(r#"{{"a":{deep}}}"#);
        let p = parse_line(Format::Json, &line);
        assert!(p.json_fallback, "serde_json's recursion limit rejects it; it becomes text");
    }

    #[test]
    fn timestamp_prefix_lengths() {
        let cases: &[(&str, Option<usize>)] = &[
            ("2024-05-01T10:00:00Z rest", Some(20)),
            ("2024-05-01 10:00:00 rest", Some(19)),
            ("2024-05-01 10:00:00.5+01:00", Some(27)),
            ("2024-05-01 10:00:00+0100x", Some(24)),
            ("2024-05-01 10:00:00+1x", Some(19)),
            ("2024-05-01 10:00:00. x", Some(19)),
            ("2024-05-01_10:00:00", None),
            ("2024-05-01 24:00:00", None),
            ("2016-12-31T23:59:60Z", Some(20)),
            ("9999-12-31T23:59:59Z", None),
        ];
        for &(s, len) in cases {
            assert_eq!(parse_timestamp_prefix(s.as_bytes()).map(|(_, l)| l), len, "{s:?}");
        }
    }

    #[test]
    fn days_from_civil_matches_known_dates() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2024, 5, 1), 19_844);
    }
}
