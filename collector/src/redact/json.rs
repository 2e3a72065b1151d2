//! Structural redaction of one JSON-object line, streaming: the line is parsed once and
//! written back compact as it is parsed, so key order and number spellings survive and
//! no `serde_json::Value` tree is built.
//!
//! Every string value is scanned with its key's contexts; integers are scanned when a
//! key context applies or they are long enough to be a card or phone number; a member
//! whose key matches a key rule is replaced whole (or removed with `drop_field`).
//! Anything that is not strict JSON (RFC 8259), or nests deeper than [`MAX_DEPTH`], is
//! reported as not-an-object and the caller treats the line as text.

use super::Redactor;
use super::action::Fate;
use super::detector::Detector;
use super::scan::KeyCtx;
use super::swar;
use std::borrow::Cow;

/// Deepest nesting accepted.
pub(crate) const MAX_DEPTH: usize = 128;

/// What became of the line.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Not a JSON object (or not strict JSON): treat as text.
    NotObject,
    /// Written to `out`.
    Kept,
    /// The record is dropped.
    Dropped,
}

struct P<'a> {
    b: &'a [u8],
    s: &'a str,
    i: usize,
    r: &'a Redactor,
    /// This thread's key memo (see [`key_info`]); `None` if it is in use already.
    memo: Option<&'a mut Memos>,
}

type R<T> = Result<T, ()>;

/// Rewrites `line` into `out`.
pub(crate) fn rewrite(r: &Redactor, line: &str, out: &mut String) -> Outcome {
    // The thread's memo is borrowed once per line rather than once per key.
    MEMO.with(|m| match m.try_borrow_mut() {
        Ok(mut memo) => rewrite_with(r, line, out, Some(&mut memo)),
        Err(_) => rewrite_with(r, line, out, None),
    })
}

fn rewrite_with(r: &Redactor, line: &str, out: &mut String, memo: Option<&mut Memos>) -> Outcome {
    let mut p = P { b: line.as_bytes(), s: line, i: 0, r, memo };
    p.ws();
    if p.peek() != Some(b'{') {
        return Outcome::NotObject;
    }
    let res = p.object(out, 0);
    p.ws();
    match res {
        Ok(_) if p.i != p.b.len() => Outcome::NotObject,
        Ok(Fate::DropRecord) => Outcome::Dropped,
        Ok(_) => Outcome::Kept,
        Err(()) => Outcome::NotObject,
    }
}

impl<'a> P<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> R<()> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(())
        }
    }

    /// Parses a string at `i`; returns its raw span (quotes included), its decoded text,
    /// and whether decoding replaced a lone surrogate (then the raw text must not be
    /// copied to the output: strict parsers reject it).
    fn string(&mut self) -> R<(usize, usize, Cow<'a, str>, bool)> {
        let start = self.i;
        self.expect(b'"')?;
        let body = self.i;
        let mut escaped = false;
        loop {
            // Plain bytes in a run, up to the next `"`, `\` or control byte.
            self.i = swar::skip_string(self.b, self.i);
            let c = self.peek().ok_or(())?;
            match c {
                b'"' => break,
                b'\\' => {
                    escaped = true;
                    self.i += 1;
                    match self.peek().ok_or(())? {
                        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.i += 1,
                        b'u' => {
                            let h = self.b.get(self.i + 1..self.i + 5).ok_or(())?;
                            if !h.iter().all(u8::is_ascii_hexdigit) {
                                return Err(());
                            }
                            self.i += 5;
                        }
                        _ => return Err(()),
                    }
                }
                0..=0x1f => return Err(()),
                _ => self.i += 1,
            }
        }
        let end_body = self.i;
        self.i += 1;
        let raw = &self.s[body..end_body];
        let (text, lossy) = if escaped {
            let (t, lossy) = unescape(raw);
            (Cow::Owned(t), lossy)
        } else {
            (Cow::Borrowed(raw), false)
        };
        Ok((start, self.i, text, lossy))
    }

    /// Skips a number, validating RFC 8259 grammar; returns its span.
    fn number(&mut self) -> R<(usize, usize)> {
        let s = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.i += 1;
                }
            }
            _ => return Err(()),
        }
        if self.peek() == Some(b'.') {
            self.i += 1;
            let d = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            if self.i == d {
                return Err(());
            }
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            let d = self.i;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.i += 1;
            }
            if self.i == d {
                return Err(());
            }
        }
        Ok((s, self.i))
    }

    fn literal(&mut self, word: &[u8]) -> R<()> {
        if self.b.get(self.i..self.i + word.len()) == Some(word) {
            self.i += word.len();
            Ok(())
        } else {
            Err(())
        }
    }

    /// Skips any value (validating it) and returns its span; used under key rules.
    fn skip_value(&mut self, depth: usize) -> R<(usize, usize)> {
        if depth > MAX_DEPTH {
            return Err(());
        }
        let s = self.i;
        match self.peek().ok_or(())? {
            b'"' => {
                self.string()?;
            }
            b'{' | b'[' => {
                let close = if self.peek() == Some(b'{') { b'}' } else { b']' };
                let obj = close == b'}';
                self.i += 1;
                self.ws();
                if self.peek() == Some(close) {
                    self.i += 1;
                    return Ok((s, self.i));
                }
                loop {
                    self.ws();
                    if obj {
                        self.string()?;
                        self.ws();
                        self.expect(b':')?;
                        self.ws();
                    }
                    self.skip_value(depth + 1)?;
                    self.ws();
                    match self.peek() {
                        Some(b',') => self.i += 1,
                        Some(c) if c == close => {
                            self.i += 1;
                            break;
                        }
                        _ => return Err(()),
                    }
                }
            }
            b't' => self.literal(b"true")?,
            b'f' => self.literal(b"false")?,
            b'n' => self.literal(b"null")?,
            _ => {
                self.number()?;
            }
        }
        Ok((s, self.i))
    }

    fn object(&mut self, out: &mut String, depth: usize) -> R<Fate> {
        if depth >= MAX_DEPTH {
            return Err(());
        }
        self.expect(b'{')?;
        out.push('{');
        let mut first = true;
        let mut rec = false;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            out.push('}');
            return Ok(Fate::Keep);
        }
        loop {
            self.ws();
            let mark = out.len();
            if !first {
                out.push(',');
            }
            let (ks, ke, key, lossy) = self.string()?;
            if lossy {
                push_json_str(out, &key);
            } else {
                out.push_str(&self.s[ks..ke]);
            }
            out.push(':');
            self.ws();
            self.expect(b':')?;
            self.ws();
            let (rule, ctx) = key_info(self.r, self.memo.as_deref_mut(), &key);
            let fate = if let Some(det) = rule {
                if self.peek() == Some(b'n') {
                    self.literal(b"null")?;
                    out.push_str("null");
                    Fate::Keep
                } else if let Some(fate) = self.r.key_rule_drop(det) {
                    self.skip_value(depth + 1)?;
                    fate
                } else {
                    self.forced(out, det, depth + 1)?;
                    Fate::Keep
                }
            } else {
                self.value(out, &ctx, depth + 1)?
            };
            match fate {
                Fate::Keep => first = false,
                Fate::DropField => out.truncate(mark),
                Fate::DropRecord => {
                    rec = true;
                    first = false;
                }
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(()),
            }
        }
        out.push('}');
        Ok(if rec { Fate::DropRecord } else { Fate::Keep })
    }

    /// A value under a key rule (mask/hash): every scalar becomes the rule's token;
    /// objects and arrays keep their keys and shape; `null` stays.
    fn forced(&mut self, out: &mut String, det: Detector, depth: usize) -> R<()> {
        if depth >= MAX_DEPTH {
            return Err(());
        }
        let c = self.peek().ok_or(())?;
        if c == b'{' || c == b'[' {
            let obj = c == b'{';
            let close = if obj { b'}' } else { b']' };
            self.i += 1;
            out.push(c as char);
            self.ws();
            if self.peek() == Some(close) {
                self.i += 1;
                out.push(close as char);
                return Ok(());
            }
            let mut first = true;
            loop {
                self.ws();
                if !first {
                    out.push(',');
                }
                first = false;
                if obj {
                    let (ks, ke, key, lossy) = self.string()?;
                    if lossy {
                        push_json_str(out, &key);
                    } else {
                        out.push_str(&self.s[ks..ke]);
                    }
                    self.ws();
                    self.expect(b':')?;
                    self.ws();
                    out.push(':');
                }
                self.forced(out, det, depth + 1)?;
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(x) if x == close => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(()),
                }
            }
            out.push(close as char);
            return Ok(());
        }
        let (vs, ve) = self.skip_value(depth)?;
        let raw = &self.s[vs..ve];
        if raw == "null" {
            out.push_str(raw);
            return Ok(());
        }
        let text: Cow<'_, str> =
            if raw.starts_with('"') { Cow::Owned(unescape(&raw[1..raw.len() - 1]).0) } else { Cow::Borrowed(raw) };
        match self.r.key_rule_token(det, &text) {
            Ok(tok) => push_json_str(out, &tok),
            Err(_) => out.push_str("null"),
        }
        Ok(())
    }

    fn array(&mut self, out: &mut String, ctx: &KeyCtx, depth: usize) -> R<Fate> {
        if depth >= MAX_DEPTH {
            return Err(());
        }
        self.expect(b'[')?;
        out.push('[');
        let mut first = true;
        let mut rec = false;
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            out.push(']');
            return Ok(Fate::Keep);
        }
        loop {
            self.ws();
            let mark = out.len();
            if !first {
                out.push(',');
            }
            match self.value(out, ctx, depth + 1)? {
                Fate::Keep => first = false,
                Fate::DropField => out.truncate(mark),
                Fate::DropRecord => {
                    rec = true;
                    first = false;
                }
            }
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {
                    self.i += 1;
                    break;
                }
                _ => return Err(()),
            }
        }
        out.push(']');
        Ok(if rec { Fate::DropRecord } else { Fate::Keep })
    }

    fn value(&mut self, out: &mut String, ctx: &KeyCtx, depth: usize) -> R<Fate> {
        match self.peek().ok_or(())? {
            b'{' => self.object(out, depth),
            b'[' => self.array(out, ctx, depth),
            b'"' => {
                let (s, e, text, lossy) = self.string()?;
                let (t, fate) = self.r.text(&text, ctx);
                match t {
                    Cow::Borrowed(_) if !lossy => out.push_str(&self.s[s..e]),
                    t => push_json_str(out, &t),
                }
                Ok(fate)
            }
            b't' => {
                self.literal(b"true")?;
                out.push_str("true");
                Ok(Fate::Keep)
            }
            b'f' => {
                self.literal(b"false")?;
                out.push_str("false");
                Ok(Fate::Keep)
            }
            b'n' => {
                self.literal(b"null")?;
                out.push_str("null");
                Ok(Fate::Keep)
            }
            _ => {
                let (s, e) = self.number()?;
                let raw = &self.s[s..e];
                let worth = !raw.contains(['.', 'e', 'E'])
                    && raw.parse::<i64>().is_ok_and(|n| Redactor::int_worth_scanning(ctx, n))
                    || (!ctx.is_empty() && raw.len() <= 24);
                if worth {
                    let (t, fate) = self.r.text(raw, ctx);
                    match t {
                        Cow::Borrowed(_) => out.push_str(raw),
                        Cow::Owned(o) => push_json_str(out, &o),
                    }
                    Ok(fate)
                } else {
                    out.push_str(raw);
                    Ok(Fate::Keep)
                }
            }
        }
    }
}

/// Keys up to this long are memoised by [`key_info`].
const MEMO_KEY: usize = 32;
/// Slots of the per-thread memo (a power of two).
const MEMO_SLOTS: usize = 256;

/// One memoised key: the redactor it was computed for (0 = empty), the key's length and
/// bytes (as little-endian words, zero-padded), and its rule and contexts.
#[derive(Clone, Copy)]
struct Memo {
    owner: u64,
    len: usize,
    key: [u64; MEMO_KEY / 8],
    rule: Option<Detector>,
    ctx: KeyCtx,
}

impl Memo {
    const EMPTY: Memo = Memo { owner: 0, len: 0, key: [0; MEMO_KEY / 8], rule: None, ctx: KeyCtx::EMPTY };
}

type Memos = [Memo; MEMO_SLOTS];

thread_local! {
    /// What keys mean, per thread, direct-mapped by a hash of the key: JSON lines repeat
    /// the same few keys, and the rule lookup plus the context words cost more than the
    /// values behind most keys. Fixed size; a slot is simply overwritten.
    static MEMO: std::cell::RefCell<Memos> = const { std::cell::RefCell::new([Memo::EMPTY; MEMO_SLOTS]) };
}

/// The key rule matching `key` and the contexts it gives its value (both pure functions
/// of the redactor's config and the key), through `memo` when there is one.
fn key_info(r: &Redactor, memo: Option<&mut Memos>, key: &str) -> (Option<Detector>, KeyCtx) {
    let k = key.as_bytes();
    let Some(memo) = memo.filter(|_| !k.is_empty() && k.len() <= MEMO_KEY) else {
        return (r.key_rule(key), r.key_ctx(key));
    };
    let mut words = [0u64; MEMO_KEY / 8];
    let mut h = k.len() as u64;
    for (j, w) in words.iter_mut().enumerate().take(k.len().div_ceil(8)) {
        *w = swar::load8(k, j * 8);
        h = (h.rotate_left(5) ^ *w).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    let e = &mut memo[(h >> 56) as usize % MEMO_SLOTS];
    if e.owner == r.id() && e.len == k.len() && e.key == words {
        return (e.rule, e.ctx);
    }
    let (rule, ctx) = (r.key_rule(key), r.key_ctx(key));
    *e = Memo { owner: r.id(), len: k.len(), key: words, rule, ctx };
    (rule, ctx)
}

/// Decodes the body of a JSON string already validated by [`P::string`]. Lone
/// surrogates become U+FFFD (and the flag is set).
fn unescape(raw: &str) -> (String, bool) {
    let mut lossy = false;
    let b = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    let mut plain = 0;
    let hex4 = |i: usize| -> u32 { u32::from_str_radix(&raw[i..i + 4], 16).unwrap_or(0xfffd) };
    while i < b.len() {
        if b[i] != b'\\' {
            i += 1;
            continue;
        }
        out.push_str(&raw[plain..i]);
        let c = b[i + 1];
        i += 2;
        match c {
            b'n' => out.push('\n'),
            b't' => out.push('\t'),
            b'r' => out.push('\r'),
            b'b' => out.push('\u{8}'),
            b'f' => out.push('\u{c}'),
            b'u' => {
                let u = hex4(i);
                i += 4;
                let ch = if (0xd800..0xdc00).contains(&u) && b.get(i) == Some(&b'\\') && b.get(i + 1) == Some(&b'u') {
                    let lo = hex4(i + 2);
                    if (0xdc00..0xe000).contains(&lo) {
                        i += 6;
                        char::from_u32(0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00))
                    } else {
                        None
                    }
                } else {
                    char::from_u32(u)
                };
                lossy |= ch.is_none();
                out.push(ch.unwrap_or('\u{fffd}'));
            }
            other => out.push(other as char),
        }
        plain = i;
    }
    out.push_str(&raw[plain..]);
    (out, lossy)
}

/// Appends `s` as a JSON string literal.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    let mut plain = 0;
    for (i, c) in s.char_indices() {
        let esc = match c {
            '"' => "\\\"",
            '\\' => "\\\\",
            '\n' => "\\n",
            '\r' => "\\r",
            '\t' => "\\t",
            c if (c as u32) < 0x20 => "",
            _ => continue,
        };
        out.push_str(&s[plain..i]);
        if esc.is_empty() {
            let _ = std::fmt::Write::write_fmt(out, format_args!("\\u{:04x}", c as u32));
        } else {
            out.push_str(esc);
        }
        plain = i + c.len_utf8();
    }
    out.push_str(&s[plain..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::Config;

    #[test]
    fn key_memo_keeps_redactors_apart() {
        let all = Redactor::default_mask();
        let cfg: Config = serde_json::from_str(r#"{"keys":{"extra":{"mrn":["secretCode"]}}}"#).unwrap();
        let other = Redactor::new(&cfg).unwrap();
        let none: Config = serde_json::from_str(r#"{"keys":{"defaults":false}}"#).unwrap();
        let none = Redactor::new(&none).unwrap();
        let line = r#"{"secret_code":"x1","name":"Zed","admittedAt":"2024-01-02","k\u0065y":"v"}"#;
        // Alternate on one thread: each redactor keeps its own answers.
        for _ in 0..3 {
            assert_eq!(
                all.redact_json_line(line).unwrap(),
                r#"{"secret_code":"x1","name":"[REDACTED:NAME]","admittedAt":"[REDACTED:DATE]","k\u0065y":"v"}"#
            );
            assert_eq!(
                other.redact_json_line(line).unwrap(),
                r#"{"secret_code":"[REDACTED:MRN]","name":"[REDACTED:NAME]","admittedAt":"[REDACTED:DATE]","k\u0065y":"v"}"#
            );
            assert_eq!(
                none.redact_json_line(line).unwrap(),
                r#"{"secret_code":"x1","name":"Zed","admittedAt":"[REDACTED:DATE]","k\u0065y":"v"}"#,
                "the key context (admitted → date) holds without key rules"
            );
        }
        // Keys longer than the memo's limit, and many distinct keys, still resolve.
        let long = format!(r#"{{"{}_patient_name":"Zed Q","{}":1}}"#, "x".repeat(40), "y".repeat(300));
        assert_eq!(none.redact_json_line(&long).unwrap(), long);
        for k in 0..2000 {
            let l = format!(r#"{{"f{k}":"a","ssn":"123-45-6789"}}"#);
            assert_eq!(all.redact_json_line(&l).unwrap(), format!(r#"{{"f{k}":"a","ssn":"[REDACTED:SSN]"}}"#));
        }
    }

    fn red(line: &str) -> Option<String> {
        Redactor::default_mask().redact_json_line(line)
    }

    #[test]
    fn keeps_order_spelling_and_compacts() {
        let line = r#" { "z" : 1.50e3 , "a": [true, false, null, "ok\u0021"], "m": {"k": -0} } "#;
        assert_eq!(red(line).unwrap(), r#"{"z":1.50e3,"a":[true,false,null,"ok\u0021"],"m":{"k":-0}}"#);
    }

    #[test]
    fn rejects_what_is_not_strict_json() {
        for bad in [
            "[1]",
            "\"s\"",
            "{",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":\"\t\"}",
            "{\"a\":1} x",
            "{a:1}",
            "{\"a\":tru}",
            "{\"a\":\"\\x\"}",
            "{\"a\":1,}",
        ] {
            assert_eq!(red(bad), None, "{bad}");
        }
        let deep = format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200));
        assert_eq!(red(&deep), None);
    }

    #[test]
    fn escapes_decode_for_scanning_and_encode_back() {
        let out = red(r#"{"msg":"mail jane\u0040example.com\n"}"#).unwrap();
        assert_eq!(out, r#"{"msg":"mail [REDACTED:EMAIL]\n"}"#);
        let mut s = String::new();
        push_json_str(&mut s, "a\"b\\c\u{1}é");
        assert_eq!(s, r#""a\"b\\c\u0001é""#);
        assert_eq!(unescape(r"\ud83d\ude00 \ud800x"), ("😀 \u{fffd}x".to_owned(), true));
        assert_eq!(red(r#"{"a\udc00":"\ud800"}"#).unwrap(), "{\"a\u{fffd}\":\"\u{fffd}\"}");
    }
}
