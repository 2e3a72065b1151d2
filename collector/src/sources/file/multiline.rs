//! Multi-line records: lines that do not match the start pattern continue the record
//! begun by the last line that did (a stack trace continues the line that logged it).
//!
//! A record is complete when the next start line arrives, when it reaches `max_lines` or
//! would exceed `max_bytes` (the line that would overflow it starts a new record, even if
//! it does not match: records are cut, never lines), or when no line has been added for
//! `timeout` while the file is at its end. Lines before the first start line of a file
//! form records of their own. Lines are joined with `\n`; the record's end offset is the
//! end of its last line, so a checkpoint never covers half a record.

use serde::Deserialize;
use std::time::Duration;

/// The `multiline` section of the file source config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MultilineConfig {
    /// Regex a line must match to start a new record (required), e.g.
    /// `^\d{4}-\d{2}-\d{2}` or `^[^\s]`.
    pub start_pattern: String,
    /// Most lines in one record (default 500).
    #[serde(default = "default_max_lines")]
    pub max_lines: usize,
    /// Most bytes in one record, joining newlines included (default 1 MiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: usize,
    /// A pending record is flushed after this long without a new line (default 1s).
    #[serde(default = "default_timeout", deserialize_with = "crate::pipeline::duration::deserialize")]
    pub timeout: Duration,
}

fn default_max_lines() -> usize {
    500
}

fn default_max_bytes() -> usize {
    1 << 20
}

fn default_timeout() -> Duration {
    Duration::from_secs(1)
}

impl MultilineConfig {
    /// A config with `start_pattern` and the documented defaults.
    pub fn new(start_pattern: impl Into<String>) -> MultilineConfig {
        MultilineConfig {
            start_pattern: start_pattern.into(),
            max_lines: default_max_lines(),
            max_bytes: default_max_bytes(),
            timeout: default_timeout(),
        }
    }

    /// Every problem with this section, each naming its field under `prefix`.
    pub(crate) fn validate(&self, prefix: &str, errors: &mut Vec<String>) {
        if let Err(e) = self.compile() {
            errors.push(format!("{prefix}.start_pattern: {e}"));
        }
        if !(1..=100_000).contains(&self.max_lines) {
            errors.push(format!("{prefix}.max_lines: must be between 1 and 100000"));
        }
        if !(1..=super::MAX_LINE_BYTES_LIMIT).contains(&self.max_bytes) {
            errors.push(format!("{prefix}.max_bytes: must be between 1 and {}", super::MAX_LINE_BYTES_LIMIT));
        }
        if self.timeout < Duration::from_millis(1) || self.timeout > Duration::from_secs(3600) {
            errors.push(format!("{prefix}.timeout: must be between 1ms and 1h"));
        }
    }

    pub(crate) fn compile(&self) -> Result<Rules, String> {
        let start = regex::bytes::RegexBuilder::new(&self.start_pattern)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| format!("invalid regex: {e}"))?;
        Ok(Rules { start, max_lines: self.max_lines, max_bytes: self.max_bytes, timeout: self.timeout })
    }
}

/// The compiled multiline rules.
#[derive(Debug)]
pub(crate) struct Rules {
    start: regex::bytes::Regex,
    max_lines: usize,
    max_bytes: usize,
    pub timeout: Duration,
}

/// The record being assembled for one file.
#[derive(Debug, Default)]
pub(crate) struct Aggregator {
    buf: Vec<u8>,
    lines: usize,
    end: u64,
}

impl Aggregator {
    /// Adds one complete line that ends at file offset `end`; `emit` receives every record
    /// this completes, with its end offset.
    pub fn push(&mut self, rules: &Rules, line: &[u8], end: u64, emit: &mut impl FnMut(Vec<u8>, u64)) {
        if self.lines > 0
            && (rules.start.is_match(line) || self.buf.len().saturating_add(1 + line.len()) > rules.max_bytes)
        {
            self.flush(emit);
        }
        if self.lines > 0 {
            self.buf.push(b'\n');
        }
        self.buf.extend_from_slice(line);
        self.lines += 1;
        self.end = end;
        if self.lines >= rules.max_lines {
            self.flush(emit);
        }
    }

    /// Emits the pending record, if any.
    pub fn flush(&mut self, emit: &mut impl FnMut(Vec<u8>, u64)) {
        if self.lines == 0 {
            return;
        }
        let record = std::mem::replace(&mut self.buf, Vec::with_capacity(256));
        self.lines = 0;
        emit(record, self.end);
    }

    /// Whether a record is pending.
    pub fn is_pending(&self) -> bool {
        self.lines > 0
    }

    /// Drops the pending record (the reader rewound to an earlier offset).
    pub fn reset(&mut self) {
        self.buf.clear();
        self.lines = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(cfg: MultilineConfig, lines: &[&str]) -> Vec<(String, u64)> {
        let rules = cfg.compile().unwrap();
        let mut agg = Aggregator::default();
        let mut out = Vec::new();
        let mut emit = |r: Vec<u8>, end| out.push((String::from_utf8(r).unwrap(), end));
        let mut off = 0;
        for l in lines {
            off += l.len() as u64 + 1;
            agg.push(&rules, l.as_bytes(), off, &mut emit);
        }
        agg.flush(&mut emit);
        out
    }

    #[test]
    fn stack_traces_join_their_first_line() {
        let lines = [
            "  orphan continuation",
            "2024-05-01 ERROR boom",
            "java.lang.IllegalStateException: x",
            "\tat a.b(C.java:1)",
            "2024-05-01 INFO next",
        ];
        let got = run(MultilineConfig::new(r"^\d{4}-"), &lines);
        assert_eq!(
            got,
            vec![
                ("  orphan continuation".to_string(), 22),
                (
                    "2024-05-01 ERROR boom\njava.lang.IllegalStateException: x\n\tat a.b(C.java:1)".to_string(),
                    22 + 22 + 35 + 18
                ),
                ("2024-05-01 INFO next".to_string(), 22 + 22 + 35 + 18 + 21),
            ]
        );
    }

    #[test]
    fn limits_cut_records_between_lines() {
        let mut cfg = MultilineConfig::new("^S");
        cfg.max_lines = 2;
        let got = run(cfg, &["S1", "c", "c", "c", "S2"]);
        let bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
        assert_eq!(bodies, ["S1\nc", "c\nc", "S2"]);
        let mut cfg = MultilineConfig::new("^S");
        cfg.max_bytes = 6;
        let got = run(cfg, &["S1", "ccc", "dd", "S2"]);
        let bodies: Vec<&str> = got.iter().map(|(b, _)| b.as_str()).collect();
        assert_eq!(bodies, ["S1\nccc", "dd", "S2"]);
    }

    #[test]
    fn bad_config_names_fields() {
        let mut cfg = MultilineConfig::new("(");
        cfg.max_lines = 0;
        cfg.timeout = Duration::ZERO;
        let mut errors = Vec::new();
        cfg.validate("multiline", &mut errors);
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].starts_with("multiline.start_pattern: invalid regex"));
        assert!(errors[1].starts_with("multiline.max_lines:"));
        assert!(errors[2].starts_with("multiline.timeout:"));
    }
}
