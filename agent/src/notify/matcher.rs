//! Alertmanager label matchers: `name="value"`, `name!="value"`, `name=~"regex"`,
//! `name!~"regex"`.
//!
//! Semantics (Alertmanager's and Prometheus'): a label the alert does not have has the
//! value `""`, so `team!="a"` and `team=""` match an alert without `team`; regular
//! expressions are RE2-style (the `regex` crate) and anchored at both ends
//! (`^(?:regex)$`), so `severity=~"crit"` does not match `critical`.
//!
//! Text form, as in Alertmanager's `matchers:` lists: one string holds one or more
//! comma-separated matchers, optionally wrapped in `{...}`; the value is a double-quoted
//! string with Go escapes (`\"`, `\\`, `\n`, `\t`) or, for compatibility, an unquoted word
//! running to the next comma. Names are `[A-Za-z_][A-Za-z0-9_]*` or double-quoted.
//!
//! Errors say which matcher of the string (1-based) and what is wrong, never the text:
//! matchers of silences come through the API and may carry label values.

use std::fmt;

use regex::{Regex, RegexBuilder};
use serde::de::{self, Deserializer};
use serde::ser::Serializer;
use serde::{Deserialize, Serialize};
use warden_rules::labels::Labels;

/// Compiled-size limit of one matcher's regular expression (bytes of program).
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Longest matcher string accepted (bytes).
pub const MAX_MATCHER_TEXT: usize = 16 * 1024;

/// How a matcher compares a label's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchOp {
    /// `=`: equal.
    #[serde(rename = "=")]
    Equal,
    /// `!=`: not equal.
    #[serde(rename = "!=")]
    NotEqual,
    /// `=~`: the anchored regular expression matches.
    #[serde(rename = "=~")]
    Regex,
    /// `!~`: the anchored regular expression does not match.
    #[serde(rename = "!~")]
    NotRegex,
}

impl MatchOp {
    /// The operator as written: `=`, `!=`, `=~` or `!~`.
    pub fn as_str(self) -> &'static str {
        match self {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        }
    }

    /// True for `=~` and `!~`.
    pub fn is_regex(self) -> bool {
        matches!(self, MatchOp::Regex | MatchOp::NotRegex)
    }

    /// True for `=` and `=~`.
    pub fn is_positive(self) -> bool {
        matches!(self, MatchOp::Equal | MatchOp::Regex)
    }

    /// The operator of Alertmanager's API form (`isRegex`, `isEqual`).
    pub fn from_flags(is_regex: bool, is_equal: bool) -> MatchOp {
        match (is_regex, is_equal) {
            (false, true) => MatchOp::Equal,
            (false, false) => MatchOp::NotEqual,
            (true, true) => MatchOp::Regex,
            (true, false) => MatchOp::NotRegex,
        }
    }
}

/// Why a matcher could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    /// The matcher string is longer than [`MAX_MATCHER_TEXT`].
    #[error("matcher text longer than {MAX_MATCHER_TEXT} bytes")]
    TooLong,
    /// The string holds no matcher.
    #[error("no matcher given")]
    Empty,
    /// Matcher `index` (1-based) is malformed.
    #[error("matcher {index}: {reason}")]
    Syntax {
        /// Which matcher of the string, from 1.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// The label name is not a valid name.
    #[error("matcher {index}: invalid label name")]
    Name {
        /// Which matcher of the string, from 1.
        index: usize,
    },
    /// The regular expression does not compile (or is too large).
    #[error("matcher {index}: invalid regular expression")]
    Regex {
        /// Which matcher of the string, from 1.
        index: usize,
    },
}

/// One label matcher.
#[derive(Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    /// The anchored expression, for `=~` and `!~`.
    re: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.op == other.op && self.value == other.value
    }
}

impl Eq for Matcher {}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Prints the text form: `name="value"` with the value quoted and escaped.
impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if is_valid_name(&self.name) {
            f.write_str(&self.name)?;
        } else {
            write_quoted(f, &self.name)?;
        }
        f.write_str(self.op.as_str())?;
        write_quoted(f, &self.value)
    }
}

impl Matcher {
    /// A matcher; `index` (1-based) is only used in the error. Compiles the regular
    /// expression of `=~` / `!~`, anchored.
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, MatcherError> {
        Self::build(name, op, value, 1)
    }

    fn build(name: &str, op: MatchOp, value: &str, index: usize) -> Result<Matcher, MatcherError> {
        if name.is_empty() {
            return Err(MatcherError::Name { index });
        }
        let re = if op.is_regex() {
            let re = RegexBuilder::new(&format!("^(?:{value})$"))
                .size_limit(REGEX_SIZE_LIMIT)
                .dfa_size_limit(REGEX_SIZE_LIMIT)
                .build()
                .map_err(|_| MatcherError::Regex { index })?;
            Some(re)
        } else {
            None
        };
        Ok(Matcher { name: name.to_owned(), op, value: value.to_owned(), re })
    }

    /// The label name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The operator.
    pub fn op(&self) -> MatchOp {
        self.op
    }

    /// The value (the regular expression as written, for `=~` / `!~`).
    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the label value `v` (`""` for an absent label) satisfies the matcher.
    pub fn matches_value(&self, v: &str) -> bool {
        match (self.op, &self.re) {
            (MatchOp::Equal, _) => v == self.value,
            (MatchOp::NotEqual, _) => v != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(v),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(v),
            // Unreachable: regex operators always carry their expression.
            (MatchOp::Regex | MatchOp::NotRegex, None) => false,
        }
    }

    /// Whether `labels` satisfy the matcher (an absent label counts as `""`).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matches_value(labels.get(&self.name).unwrap_or(""))
    }

    /// Parses one string of comma-separated matchers, optionally in braces (see the
    /// module documentation).
    pub fn parse_list(text: &str) -> Result<Vec<Matcher>, MatcherError> {
        if text.len() > MAX_MATCHER_TEXT {
            return Err(MatcherError::TooLong);
        }
        let mut s = text.trim();
        if let Some(inner) = s.strip_prefix('{') {
            s = inner.strip_suffix('}').ok_or(MatcherError::Syntax { index: 1, reason: "unclosed '{'" })?.trim();
        }
        let mut p = Parser { s: s.as_bytes(), text: s, pos: 0 };
        let mut out = Vec::new();
        p.skip_ws();
        while !p.at_end() {
            let index = out.len() + 1;
            out.push(p.matcher(index)?);
            p.skip_ws();
            if p.at_end() {
                break;
            }
            if !p.eat(b',') {
                return Err(MatcherError::Syntax { index, reason: "expected ',' between matchers" });
            }
            p.skip_ws();
        }
        if out.is_empty() {
            return Err(MatcherError::Empty);
        }
        Ok(out)
    }

    /// Parses a string holding exactly one matcher.
    pub fn parse(text: &str) -> Result<Matcher, MatcherError> {
        let mut v = Self::parse_list(text)?;
        if v.len() != 1 {
            return Err(MatcherError::Syntax { index: 2, reason: "expected exactly one matcher" });
        }
        Ok(v.remove(0))
    }
}

/// Whether all `matchers` match `labels` (true for an empty list).
pub fn matches_all(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Prints a list as `{a="1",b=~"x"}` (Alertmanager's `Matchers.String()`).
pub fn format_list(matchers: &[Matcher]) -> String {
    let parts: Vec<String> = matchers.iter().map(|m| m.to_string()).collect();
    format!("{{{}}}", parts.join(","))
}

/// Sorts matchers as Alertmanager sorts a route's: by name, then value, then operator.
pub fn sort_matchers(matchers: &mut [Matcher]) {
    matchers.sort_by(|a, b| (&a.name, &a.value, a.op as u8).cmp(&(&b.name, &b.value, b.op as u8)));
}

/// True for a classic Prometheus label name.
fn is_valid_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn write_quoted(f: &mut fmt::Formatter<'_>, s: &str) -> fmt::Result {
    f.write_str("\"")?;
    for c in s.chars() {
        match c {
            '\\' => f.write_str("\\\\")?,
            '"' => f.write_str("\\\"")?,
            '\n' => f.write_str("\\n")?,
            '\t' => f.write_str("\\t")?,
            c => write!(f, "{c}")?,
        }
    }
    f.write_str("\"")
}

/// A cursor over one matcher string.
struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    pos: usize,
}

impl Parser<'_> {
    fn at_end(&self) -> bool {
        self.pos >= self.s.len()
    }

    fn peek(&self) -> Option<u8> {
        self.s.get(self.pos).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    fn matcher(&mut self, index: usize) -> Result<Matcher, MatcherError> {
        let name = if self.peek() == Some(b'"') {
            self.quoted(index)?
        } else {
            let start = self.pos;
            while matches!(self.peek(), Some(b) if b.is_ascii_alphanumeric() || b == b'_') {
                self.pos += 1;
            }
            let name = &self.text[start..self.pos];
            if !is_valid_name(name) {
                return Err(MatcherError::Name { index });
            }
            name.to_owned()
        };
        self.skip_ws();
        let op = if self.eat(b'=') {
            if self.eat(b'~') { MatchOp::Regex } else { MatchOp::Equal }
        } else if self.eat(b'!') {
            if self.eat(b'=') {
                MatchOp::NotEqual
            } else if self.eat(b'~') {
                MatchOp::NotRegex
            } else {
                return Err(MatcherError::Syntax { index, reason: "expected an operator (=, !=, =~, !~)" });
            }
        } else {
            return Err(MatcherError::Syntax { index, reason: "expected an operator (=, !=, =~, !~)" });
        };
        self.skip_ws();
        let value = if self.peek() == Some(b'"') {
            self.quoted(index)?
        } else {
            // Unquoted (classic Alertmanager): everything up to the next comma.
            let start = self.pos;
            while matches!(self.peek(), Some(b) if b != b',') {
                self.pos += 1;
            }
            let v = self.text[start..self.pos].trim();
            if v.contains('"') {
                return Err(MatcherError::Syntax { index, reason: "unexpected '\"' in an unquoted value" });
            }
            v.to_owned()
        };
        Matcher::build(&name, op, &value, index)
    }

    /// A double-quoted string with Go escapes; the cursor is on the opening quote.
    fn quoted(&mut self, index: usize) -> Result<String, MatcherError> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let rest = &self.text[self.pos..];
            let Some(c) = rest.chars().next() else {
                return Err(MatcherError::Syntax { index, reason: "unterminated quoted string" });
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(e) = self.text[self.pos..].chars().next() else {
                        return Err(MatcherError::Syntax { index, reason: "unterminated quoted string" });
                    };
                    self.pos += e.len_utf8();
                    out.push(match e {
                        'n' => '\n',
                        't' => '\t',
                        'r' => '\r',
                        '\\' => '\\',
                        '"' => '"',
                        '\'' => '\'',
                        _ => return Err(MatcherError::Syntax { index, reason: "unknown escape in quoted string" }),
                    });
                }
                c => out.push(c),
            }
        }
    }
}

/// A list of matchers as written in the configuration: a YAML list of strings, each
/// holding one or more matchers (Alertmanager's `matchers:`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Matchers(pub Vec<Matcher>);

impl Matchers {
    /// Whether every matcher matches `labels` (true for an empty list).
    pub fn matches(&self, labels: &Labels) -> bool {
        matches_all(&self.0, labels)
    }

    /// The matchers.
    pub fn as_slice(&self) -> &[Matcher] {
        &self.0
    }

    /// True if there is no matcher.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> Deserialize<'de> for Matchers {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let lines = Vec::<String>::deserialize(d)?;
        let mut out = Vec::new();
        for (i, line) in lines.iter().enumerate() {
            let ms = Matcher::parse_list(line).map_err(|e| de::Error::custom(format!("[{i}]: {e}")))?;
            out.extend(ms);
        }
        Ok(Matchers(out))
    }
}

impl Serialize for Matchers {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(|m| m.to_string()))
    }
}

/// Alertmanager's API form of a matcher (`{"name", "value", "isRegex", "isEqual"}`),
/// used to store silences and by the HTTP API.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ApiMatcher {
    /// Label name.
    pub name: String,
    /// Value or regular expression.
    pub value: String,
    /// `=~` / `!~`.
    pub is_regex: bool,
    /// `=` / `=~` (default true, as Alertmanager).
    #[serde(default = "default_true")]
    pub is_equal: bool,
}

fn default_true() -> bool {
    true
}

impl ApiMatcher {
    /// The API form of `m`.
    pub fn from_matcher(m: &Matcher) -> ApiMatcher {
        ApiMatcher {
            name: m.name.clone(),
            value: m.value.clone(),
            is_regex: m.op.is_regex(),
            is_equal: m.op.is_positive(),
        }
    }

    /// The compiled matcher; `index` (1-based) names it in the error.
    pub fn to_matcher(&self, index: usize) -> Result<Matcher, MatcherError> {
        Matcher::build(&self.name, MatchOp::from_flags(self.is_regex, self.is_equal), &self.value, index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs)
    }

    #[test]
    fn parses_and_prints() {
        let ms = Matcher::parse_list(r#"{severity="critical", team=~"a|b" , env!=prod,x!~"y\"z"}"#).unwrap();
        let printed: Vec<String> = ms.iter().map(|m| m.to_string()).collect();
        assert_eq!(printed, [r#"severity="critical""#, r#"team=~"a|b""#, r#"env!="prod""#, r#"x!~"y\"z""#]);
        assert_eq!(format_list(&ms[..2]), r#"{severity="critical",team=~"a|b"}"#);
        // Round trip through the printed form.
        for m in &ms {
            assert_eq!(&Matcher::parse(&m.to_string()).unwrap(), m);
        }
    }

    #[test]
    fn errors_name_position_not_content() {
        let cases: &[(&str, MatcherError)] = &[
            ("", MatcherError::Empty),
            ("{}", MatcherError::Empty),
            ("{a=\"b\"", MatcherError::Syntax { index: 1, reason: "unclosed '{'" }),
            ("a=\"b\", secret", MatcherError::Syntax { index: 2, reason: "expected an operator (=, !=, =~, !~)" }),
            ("a=\"b\" c=\"d\"", MatcherError::Syntax { index: 1, reason: "expected ',' between matchers" }),
            ("a=~\"(\"", MatcherError::Regex { index: 1 }),
            ("1a=\"b\"", MatcherError::Name { index: 1 }),
            ("a=\"unterminated", MatcherError::Syntax { index: 1, reason: "unterminated quoted string" }),
        ];
        for (text, want) in cases {
            let got = Matcher::parse_list(text).unwrap_err();
            assert_eq!(&got, want, "{text}");
            assert!(!got.to_string().contains("secret"));
        }
        assert_eq!(Matcher::parse_list(&"a".repeat(MAX_MATCHER_TEXT + 1)).unwrap_err(), MatcherError::TooLong);
    }

    #[test]
    fn semantics_anchored_and_absent_is_empty() {
        let alert = l(&[("alertname", "HighLatency"), ("severity", "critical")]);
        let check = |text: &str, want: bool| {
            let m = Matcher::parse(text).unwrap();
            assert_eq!(m.matches(&alert), want, "{text}");
        };
        check(r#"severity="critical""#, true);
        check(r#"severity=~"crit""#, false);
        check(r#"severity=~"crit.*""#, true);
        check(r#"severity!~"crit.*""#, false);
        check(r#"severity=~"warning|critical""#, true);
        check(r#"team="""#, true);
        check(r#"team!="a""#, true);
        check(r#"team=~".*""#, true);
        check(r#"team=~".+""#, false);
        check(r#"alertname!="HighLatency""#, false);
    }

    #[test]
    fn api_form_round_trips() {
        for text in [r#"a="1""#, r#"a!="1""#, r#"a=~"1""#, r#"a!~"1""#] {
            let m = Matcher::parse(text).unwrap();
            assert_eq!(ApiMatcher::from_matcher(&m).to_matcher(1).unwrap(), m);
        }
    }
}
