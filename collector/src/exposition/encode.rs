//! The text 0.0.4 writer and Prometheus' float formatting (Go's `%g`, shortest
//! round-trip digits), shared with the parser's `le`/`quantile` normalisation.

use crate::signal::{MetricKind, MetricPoint};
use std::collections::HashMap;
use std::fmt::Write as _;

/// Encodes points in text format 0.0.4: one `# TYPE` line per family, then its points
/// as `name{labels} value timestamp_ms`. Points are grouped by family (histogram
/// `foo_bucket`/`foo_sum`/`foo_count` under `# TYPE foo histogram`) in order of first
/// appearance, keeping their order within the family, so each family's samples are
/// contiguous as the format requires. Values are written as Prometheus writes them
/// (`1.5e+06`, `NaN`, `+Inf`); a staleness marker is written as `NaN` (the text format
/// cannot carry it — a `/federate` endpoint should leave stale points out). Names are
/// written as given; a point with an invalid name yields text that does not parse.
pub fn encode_text(points: &[MetricPoint]) -> String {
    let mut groups: Vec<(&str, MetricKind, Vec<usize>)> = Vec::new();
    let mut index: HashMap<(&str, MetricKind), usize> = HashMap::new();
    let mut last: Option<(&str, MetricKind, usize)> = None;
    for (i, p) in points.iter().enumerate() {
        let family = family_name(&p.name, p.kind);
        let g = match last {
            Some((f, k, g)) if f == family && k == p.kind => g,
            _ => *index.entry((family, p.kind)).or_insert_with(|| {
                groups.push((family, p.kind, Vec::new()));
                groups.len() - 1
            }),
        };
        last = Some((family, p.kind, g));
        groups[g].2.push(i);
    }
    let mut out = String::with_capacity(points.len() * 64 + groups.len() * 40);
    for (family, kind, members) in &groups {
        out.push_str("# TYPE ");
        out.push_str(family);
        out.push(' ');
        out.push_str(kind.as_str());
        out.push('\n');
        for &i in members {
            write_point(&mut out, &points[i]);
        }
    }
    out
}

/// The family a point's `# TYPE` line names: histogram and summary samples drop their
/// `_bucket`/`_sum`/`_count`/`_created` suffix; other kinds use the name as is (0.0.4
/// counters are typed under their full `_total` name).
fn family_name(name: &str, kind: MetricKind) -> &str {
    let suffixes: &[&str] = match kind {
        MetricKind::Histogram => &["_bucket", "_sum", "_count", "_created"],
        MetricKind::Summary => &["_sum", "_count", "_created"],
        _ => &[],
    };
    for s in suffixes {
        if let Some(base) = name.strip_suffix(s)
            && !base.is_empty()
        {
            return base;
        }
    }
    name
}

fn write_point(out: &mut String, p: &MetricPoint) {
    out.push_str(&p.name);
    if !p.labels.is_empty() {
        out.push('{');
        for (i, l) in p.labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push_str(&l.name);
            out.push_str("=\"");
            escape_label_value(out, &l.value);
            out.push('"');
        }
        out.push('}');
    }
    out.push(' ');
    write_float(out, p.value);
    let _ = writeln!(out, " {}", p.timestamp_ms);
}

fn escape_label_value(out: &mut String, v: &str) {
    if !v.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A fixed buffer for `{:e}` output (at most 24 bytes for an `f64`).
struct StackBuf {
    buf: [u8; 40],
    len: usize,
}

impl std::fmt::Write for StackBuf {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(std::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// Writes `f` as Prometheus' text format does (Go's `strconv.FormatFloat(f, 'g', -1,
/// 64)`): shortest round-trip digits, exponent form below 1e-4 and from 1e6 on
/// (`1.5e+06`, `1e-05`), and `NaN`, `+Inf`, `-Inf`.
pub fn write_float(out: &mut String, f: f64) {
    if f.is_nan() {
        out.push_str("NaN");
        return;
    }
    if f.is_infinite() {
        out.push_str(if f > 0.0 { "+Inf" } else { "-Inf" });
        return;
    }
    if f == 0.0 {
        out.push_str(if f.is_sign_negative() { "-0" } else { "0" });
        return;
    }
    if f.fract() == 0.0 && f.abs() < 1e6 {
        let _ = write!(out, "{}", f as i64);
        return;
    }
    let mut sci = StackBuf { buf: [0; 40], len: 0 };
    if write!(sci, "{f:e}").is_err() {
        // Unreachable for an f64; fall back to Rust's own round-trip form.
        let _ = write!(out, "{f:?}");
        return;
    }
    let s = &sci.buf[..sci.len];
    let (neg, s) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, s),
    };
    let e_pos = s.iter().position(|&b| b == b'e').unwrap_or(s.len());
    let mut digits = [0u8; 24];
    let mut nd = 0;
    for &b in &s[..e_pos] {
        if b.is_ascii_digit() && nd < digits.len() {
            digits[nd] = b;
            nd += 1;
        }
    }
    let exp: i32 =
        std::str::from_utf8(s.get(e_pos + 1..).unwrap_or(b"0")).ok().and_then(|e| e.parse().ok()).unwrap_or(0);
    let digits = &digits[..nd];
    if neg {
        out.push('-');
    }
    if !(-4..6).contains(&exp) {
        out.push(digits[0] as char);
        if nd > 1 {
            out.push('.');
            out.push_str(ascii(&digits[1..]));
        }
        out.push('e');
        out.push(if exp < 0 { '-' } else { '+' });
        let _ = write!(out, "{:02}", exp.unsigned_abs());
        return;
    }
    let dp = exp + 1;
    if dp <= 0 {
        out.push_str("0.");
        for _ in 0..-dp {
            out.push('0');
        }
        out.push_str(ascii(digits));
    } else if dp as usize >= nd {
        out.push_str(ascii(digits));
        for _ in 0..dp as usize - nd {
            out.push('0');
        }
    } else {
        out.push_str(ascii(&digits[..dp as usize]));
        out.push('.');
        out.push_str(ascii(&digits[dp as usize..]));
    }
}

/// Writes `f` in Prometheus' OpenMetrics float form (its `formatOpenMetricsFloat`), the
/// canonical form of `le` and `quantile` label values: like [`write_float`], with `.0`
/// appended to integers (`1` → `1.0`, `1e+06` stays).
pub fn write_openmetrics_float(out: &mut String, f: f64) {
    let start = out.len();
    write_float(out, f);
    if f.is_finite() && !out[start..].contains(['.', 'e']) {
        out.push_str(".0");
    }
}

/// Digits collected from `{:e}` output (ASCII by construction) as a `&str`.
fn ascii(b: &[u8]) -> &str {
    std::str::from_utf8(b).unwrap_or("")
}
