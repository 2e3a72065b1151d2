//! Small hand-written validators, one per identifier shape. Each looks at a byte slice at
//! a given position (found by the scanner's cheap triggers) and returns where the match
//! ends; none allocates, none backtracks more than a few bytes.
//!
//! Shared boundary rule: a match must not continue into a longer token, so it may not be
//! followed by a letter or digit, nor by `.`/`-` and a digit (`1.2.3.4.5`, `555-123-4567-8`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[inline]
pub(crate) fn is_alnum(b: u8) -> bool {
    b.is_ascii_alphanumeric()
}

/// Number of ASCII digits starting at `i`.
#[inline]
pub(crate) fn digit_run(b: &[u8], i: usize) -> usize {
    b.get(i..).map_or(0, |s| s.iter().take_while(|c| c.is_ascii_digit()).count())
}

/// Whether a match ending at `j` ends a token.
#[inline]
pub(crate) fn end_ok(b: &[u8], j: usize) -> bool {
    match b.get(j) {
        None => true,
        Some(&c) if is_alnum(c) => false,
        Some(&c) if c == b'.' || c == b'-' => !b.get(j + 1).is_some_and(u8::is_ascii_digit),
        Some(_) => true,
    }
}

fn num(b: &[u8], i: usize, len: usize) -> u32 {
    b[i..i + len].iter().fold(0u32, |a, &d| a * 10 + u32::from(d - b'0'))
}

/// `ddd-dd-dddd` or `ddd dd dddd` at `i` with a valid area, group and serial.
pub(crate) fn ssn_formatted(b: &[u8], i: usize) -> Option<usize> {
    if digit_run(b, i) != 3 {
        return None;
    }
    let sep = *b.get(i + 3)?;
    if sep != b'-' && sep != b' ' {
        return None;
    }
    if digit_run(b, i + 4) != 2 || b.get(i + 6) != Some(&sep) || digit_run(b, i + 7) != 4 {
        return None;
    }
    let end = i + 11;
    (end_ok(b, end) && ssn_valid(num(b, i, 3), num(b, i + 4, 2), num(b, i + 7, 4))).then_some(end)
}

/// Nine bare digits at `i` forming a valid SSN (used only after an SSN context word).
pub(crate) fn ssn_bare(b: &[u8], i: usize) -> Option<usize> {
    (digit_run(b, i) == 9 && end_ok(b, i + 9) && ssn_valid(num(b, i, 3), num(b, i + 3, 2), num(b, i + 5, 4)))
        .then_some(i + 9)
}

/// SSA rules: area not 000, 666 or 900–999; group not 00; serial not 0000.
pub(crate) fn ssn_valid(area: u32, group: u32, serial: u32) -> bool {
    area != 0 && area != 666 && area < 900 && group != 0 && serial != 0
}

/// NANP: an area code starts with 2–9. (Exchanges do too, but `555-123-4567` is how
/// people write test and real numbers alike, so the exchange is not checked.)
fn nxx(b: &[u8], i: usize) -> bool {
    b[i] >= b'2'
}

fn is_phone_sep(c: u8) -> bool {
    c == b'-' || c == b'.' || c == b' '
}

/// `NXX<sep>NXX<sep>XXXX` at `i` (separators `-`, `.` or space), returning the end.
fn phone_body(b: &[u8], i: usize) -> Option<usize> {
    if digit_run(b, i) != 3 || !nxx(b, i) {
        return None;
    }
    let s1 = *b.get(i + 3)?;
    if !is_phone_sep(s1) || digit_run(b, i + 4) != 3 {
        return None;
    }
    let s2 = *b.get(i + 7)?;
    if !is_phone_sep(s2) || (s1 == b'.') != (s2 == b'.') || digit_run(b, i + 8) != 4 {
        return None;
    }
    let end = i + 12;
    end_ok(b, end).then_some(end)
}

/// `(NXX) NXX-XXXX` / `(NXX)NXX-XXXX` at `i` (`b[i] == '('`).
fn phone_paren(b: &[u8], i: usize) -> Option<usize> {
    if b.get(i) != Some(&b'(') || digit_run(b, i + 1) != 3 || !nxx(b, i + 1) || b.get(i + 4) != Some(&b')') {
        return None;
    }
    let mut p = i + 5;
    if b.get(p) == Some(&b' ') {
        p += 1;
    }
    if digit_run(b, p) != 3 {
        return None;
    }
    let s = *b.get(p + 3)?;
    if !is_phone_sep(s) || digit_run(b, p + 4) != 4 {
        return None;
    }
    let end = p + 8;
    end_ok(b, end).then_some(end)
}

/// A formatted US phone number starting at `i`: `555-123-4567`, `555.123.4567`,
/// `555 123 4567`, `(555) 123-4567`, `1-555-123-4567`, `+1 555 123 4567`,
/// `+1 (555) 123-4567`, `+15551234567`.
pub(crate) fn phone_formatted(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'(' => phone_paren(b, i),
        b'+' => {
            if b.get(i + 1) != Some(&b'1') {
                return None;
            }
            let run = digit_run(b, i + 1);
            if run == 11 {
                return (nxx(b, i + 2) && end_ok(b, i + 12)).then_some(i + 12);
            }
            if run != 1 {
                return None;
            }
            let sep = *b.get(i + 2)?;
            let p = if is_phone_sep(sep) { i + 3 } else { i + 2 };
            phone_paren(b, p).or_else(|| phone_body(b, p))
        }
        b'1' if digit_run(b, i) == 1 => {
            let sep = *b.get(i + 1)?;
            if sep != b'-' && sep != b' ' && sep != b'.' {
                return None;
            }
            phone_body(b, i + 2).or_else(|| phone_paren(b, i + 2))
        }
        _ => phone_body(b, i),
    }
}

/// A phone number after a phone context word: the formatted ones, plus ten bare digits,
/// eleven starting with 1, and a seven-digit local `NXX-XXXX`.
pub(crate) fn phone_loose(b: &[u8], i: usize) -> Option<usize> {
    if let Some(e) = phone_formatted(b, i) {
        return Some(e);
    }
    let run = digit_run(b, i);
    match run {
        10 if nxx(b, i) && end_ok(b, i + 10) => Some(i + 10),
        11 if b[i] == b'1' && nxx(b, i + 1) && end_ok(b, i + 11) => Some(i + 11),
        3 if nxx(b, i)
            && b.get(i + 3).is_some_and(|&c| c == b'-' || c == b'.')
            && digit_run(b, i + 4) == 4
            && end_ok(b, i + 8) =>
        {
            Some(i + 8)
        }
        _ => None,
    }
}

/// Luhn checksum over the digits of `b` (non-digits skipped).
pub(crate) fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    let mut double = false;
    for &c in digits.iter().rev() {
        let mut d = u32::from(c - b'0');
        if double {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
        double = !double;
    }
    sum.is_multiple_of(10)
}

/// Issuer prefixes of the major card networks (Visa, Mastercard, Amex, Discover, JCB,
/// Diners, UnionPay) with their lengths.
fn card_iin(d: &[u8]) -> bool {
    let n = d.len();
    let p = |k: usize| num(d, 0, k);
    match d[0] {
        b'4' => n == 13 || n == 16 || n == 19,
        b'5' => (51..=55).contains(&p(2)) && n == 16,
        b'2' => (2221..=2720).contains(&p(4)) && n == 16,
        b'3' => match p(2) {
            34 | 37 => n == 15,
            35 => (3528..=3589).contains(&p(4)) && (16..=19).contains(&n),
            36 | 38 | 39 => (14..=19).contains(&n),
            30 => (14..=19).contains(&n),
            _ => false,
        },
        b'6' => (p(4) == 6011 || p(2) == 65 || (644..=649).contains(&p(3)) || p(2) == 62) && (16..=19).contains(&n),
        _ => false,
    }
}

/// A payment card number at `i`: 13–19 digits, bare or in groups separated by single
/// spaces or dashes (4-4-4-4, 4-4-4-4-3, 4-6-5, 4-6-4), Luhn-valid, with a known
/// issuer prefix.
pub(crate) fn card(b: &[u8], i: usize) -> Option<usize> {
    let mut digits = [0u8; 19];
    let mut n = 0;
    let mut groups = [0usize; 5];
    let mut ng = 0;
    let mut p = i;
    let mut sep = 0u8;
    loop {
        let run = digit_run(b, p);
        if run == 0 || n + run > 19 || ng == 5 {
            return None;
        }
        // Every grouped shape is 4-4-... or 4-6-...: give up early on anything else
        // (dates such as `2024-01-15` come through here).
        if ng == 1 && run != 4 && run != 6 {
            return None;
        }
        digits[n..n + run].copy_from_slice(&b[p..p + run]);
        n += run;
        groups[ng] = run;
        ng += 1;
        p += run;
        match b.get(p) {
            Some(&c)
                if (c == b' ' || c == b'-')
                    && (sep == 0 || sep == c)
                    && b.get(p + 1).is_some_and(u8::is_ascii_digit) =>
            {
                if ng == 1 && run != 4 {
                    break;
                }
                sep = c;
                p += 1;
            }
            _ => break,
        }
    }
    if ng > 1 && p > 0 && !b[p - 1].is_ascii_digit() {
        return None;
    }
    let shape_ok = match &groups[..ng] {
        [x] => (13..=19).contains(x),
        [4, 4, 4, 4] | [4, 4, 4, 4, 3] | [4, 6, 5] | [4, 6, 4] | [4, 4, 4, 1] | [4, 4, 4, 2] | [4, 4, 4, 3] => true,
        _ => false,
    };
    let d = &digits[..n];
    (shape_ok && (13..=19).contains(&n) && end_ok(b, p) && card_iin(d) && luhn(d)).then_some(p)
}

/// A dotted-quad IPv4 address at `i` (octets 0–255, no leading zeros), not part of a
/// longer dotted number.
pub(crate) fn ipv4(b: &[u8], i: usize) -> Option<(usize, Ipv4Addr)> {
    let mut oct = [0u8; 4];
    let mut p = i;
    for (k, o) in oct.iter_mut().enumerate() {
        let run = digit_run(b, p);
        if run == 0 || run > 3 || (run > 1 && b[p] == b'0') {
            return None;
        }
        let v = num(b, p, run);
        if v > 255 {
            return None;
        }
        *o = v as u8;
        p += run;
        if k < 3 {
            if b.get(p) != Some(&b'.') {
                return None;
            }
            p += 1;
        }
    }
    end_ok(b, p).then_some((p, Ipv4Addr::from(oct)))
}

fn is_hex(c: u8) -> bool {
    c.is_ascii_hexdigit()
}

/// An IPv6 address starting at `i` (a hex digit or `:`), parsed by the standard
/// library; at least two colons. Timestamps (`10:00:00`) and MAC addresses fail to parse.
pub(crate) fn ipv6(b: &[u8], i: usize) -> Option<(usize, Ipv6Addr)> {
    // The first group is one to four hex digits and a colon (or the text starts with
    // `::`): hex ids and plain numbers stop here.
    let g = b.get(i..).map_or(0, |s| s.iter().take(5).take_while(|&&c| is_hex(c)).count());
    if g > 4 || b.get(i + g) != Some(&b':') {
        return None;
    }
    let mut j = i;
    let mut colons = 0;
    let mut double = false;
    while j < b.len() && j - i < 45 && (is_hex(b[j]) || b[j] == b':' || b[j] == b'.') {
        if b[j] == b':' {
            colons += 1;
            double |= j > i && b[j - 1] == b':';
        }
        j += 1;
    }
    // Without `::` an address has seven colons (six before an embedded IPv4): times
    // such as `10:00:00` stop here, before the parser.
    if colons < 2 || (!double && colons < 6) || (j < b.len() && (is_alnum(b[j]) || b[j] == b'_')) {
        return None;
    }
    let mut end = j;
    // A trailing `.` or a single `:` (`addr fe80::1:` / a sentence end) is not part of it.
    while end > i && (b[end - 1] == b'.' || (b[end - 1] == b':' && b.get(end.wrapping_sub(2)) != Some(&b':'))) {
        end -= 1;
    }
    let s = std::str::from_utf8(&b[i..end]).ok()?;
    if let Ok(a) = s.parse::<Ipv6Addr>() {
        return Some((end, a));
    }
    // `2001:db8::7:8080`: an unbracketed address with a port; try without the last group.
    let k = s.rfind(':')?;
    if k == 0 || s.as_bytes()[k - 1] == b':' || s[..k].bytes().filter(|&c| c == b':').count() < 2 {
        return None;
    }
    s[..k].parse::<Ipv6Addr>().ok().map(|a| (i + k, a))
}

fn is_local(c: u8) -> bool {
    is_alnum(c) || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-')
}

/// An email address around the `@` at `at`: returns its start and end.
pub(crate) fn email(b: &[u8], at: usize) -> Option<(usize, usize)> {
    let mut s = at;
    while s > 0 && at - s < 64 && is_local(b[s - 1]) {
        s -= 1;
    }
    while s < at && !is_alnum(b[s]) {
        s += 1;
    }
    if s == at {
        return None;
    }
    let mut e = at + 1;
    while e < b.len() && e - at < 255 && (is_alnum(b[e]) || b[e] == b'.' || b[e] == b'-') {
        e += 1;
    }
    while e > at + 1 && (b[e - 1] == b'.' || b[e - 1] == b'-') {
        e -= 1;
    }
    let domain = &b[at + 1..e];
    let dot = domain.iter().rposition(|&c| c == b'.')?;
    let tld = &domain[dot + 1..];
    let labels_ok = domain.split(|&c| c == b'.').all(|l| !l.is_empty());
    (tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) && labels_ok).then_some((s, e))
}

const MONTHS: [&str; 12] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
const MONTHS_FULL: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

/// A month name (full, three-letter, `Sept`, optionally followed by `.`) at `i`: its
/// number and end.
fn month_name(b: &[u8], i: usize) -> Option<(u32, usize)> {
    let mut j = i;
    while j < b.len() && b[j].is_ascii_alphabetic() && j - i < 10 {
        j += 1;
    }
    let w = &b[i..j];
    let m = MONTHS_FULL
        .iter()
        .position(|m| m.as_bytes().eq_ignore_ascii_case(w))
        .or_else(|| MONTHS.iter().position(|m| m.as_bytes().eq_ignore_ascii_case(w)))
        .or_else(|| w.eq_ignore_ascii_case(b"sept").then_some(8))?;
    let end = if b.get(j) == Some(&b'.') { j + 1 } else { j };
    Some((m as u32 + 1, end))
}

fn day_ok(d: u32) -> bool {
    (1..=31).contains(&d)
}

fn month_ok(m: u32) -> bool {
    (1..=12).contains(&m)
}

fn year_ok(b: &[u8], i: usize, len: usize) -> bool {
    len == 2 || (len == 4 && (1870..=2100).contains(&num(b, i, 4)))
}

/// Skips an ISO time part after a date: `T10:00:00`, ` 10:00`, `.123`, `Z`, `+02:00`.
fn time_tail(b: &[u8], j: usize) -> usize {
    let Some(&c) = b.get(j) else { return j };
    if !(c == b'T' || c == b' ') || digit_run(b, j + 1) != 2 || b.get(j + 3) != Some(&b':') {
        return j;
    }
    let mut p = j + 1;
    while p < b.len() && (b[p].is_ascii_digit() || matches!(b[p], b':' | b'.' | b',')) {
        p += 1;
    }
    match b.get(p) {
        Some(b'Z') => p + 1,
        Some(b'+' | b'-') if digit_run(b, p + 1) == 2 => {
            let mut q = p + 3;
            if b.get(q) == Some(&b':') {
                q += 1;
            }
            q + digit_run(b, q).min(2)
        }
        _ => p,
    }
}

/// A calendar date at `i`: `1954-03-02` (with an optional time), `1954/03/02`,
/// `03/02/1954`, `3/2/54`, `03-02-1954`, `02.03.1954`, `19540302`, `March 2, 1954`,
/// `Mar 2 1954`, `2 March 1954`, `02-Mar-1954`.
pub(crate) fn date(b: &[u8], i: usize) -> Option<usize> {
    let c = *b.get(i)?;
    if c.is_ascii_alphabetic() {
        let (_, mut p) = month_name(b, i)?;
        if b.get(p) == Some(&b' ') {
            p += 1;
        }
        let dr = digit_run(b, p);
        if dr == 0 || dr > 2 || !day_ok(num(b, p, dr)) {
            return None;
        }
        p += dr;
        for suf in [b"st", b"nd", b"rd", b"th"] {
            if b.get(p..p + 2) == Some(&suf[..]) {
                p += 2;
            }
        }
        if b.get(p) == Some(&b',') {
            p += 1;
        }
        if b.get(p) == Some(&b' ') {
            p += 1;
        }
        let yr = digit_run(b, p);
        return (yr == 4 && year_ok(b, p, 4) && end_ok(b, p + 4)).then_some(p + 4);
    }
    if !c.is_ascii_digit() {
        return None;
    }
    let r1 = digit_run(b, i);
    if r1 == 8 {
        let (y, m, d) = (num(b, i, 4), num(b, i + 4, 2), num(b, i + 6, 2));
        return ((1870..=2100).contains(&y) && month_ok(m) && day_ok(d) && end_ok(b, i + 8)).then_some(i + 8);
    }
    let sep = *b.get(i + r1)?;
    if r1 == 4 && (sep == b'-' || sep == b'/' || sep == b'.') {
        let p = i + 5;
        let (rm, rd) = (digit_run(b, p), digit_run(b, p + 3));
        if rm == 2 && b.get(p + 2) == Some(&sep) && rd == 2 && year_ok(b, i, 4) {
            let (m, d) = (num(b, p, 2), num(b, p + 3, 2));
            let end = time_tail(b, p + 5);
            return (month_ok(m) && day_ok(d) && end_ok(b, end)).then_some(end);
        }
        return None;
    }
    if (1..=2).contains(&r1) && (sep == b'/' || sep == b'-' || sep == b'.' || sep == b' ') {
        let a = num(b, i, r1);
        let p = i + r1 + 1;
        // `2 March 1954`, `02-Mar-1954`
        if b.get(p).is_some_and(u8::is_ascii_alphabetic) && sep != b'.' {
            let (_, q) = month_name(b, p)?;
            if b.get(q) != Some(&sep) && !(sep == b' ' && b.get(q) == Some(&b',')) {
                return None;
            }
            let q = if b.get(q) == Some(&b',') { q + 2 } else { q + 1 };
            let yr = digit_run(b, q);
            return (day_ok(a) && (yr == 4 || (yr == 2 && sep == b'-')) && year_ok(b, q, yr) && end_ok(b, q + yr))
                .then_some(q + yr);
        }
        if sep == b' ' {
            return None;
        }
        let r2 = digit_run(b, p);
        if r2 == 0 || r2 > 2 || b.get(p + r2) != Some(&sep) {
            return None;
        }
        let bb = num(b, p, r2);
        let q = p + r2 + 1;
        let yr = digit_run(b, q);
        if !(yr == 4 || yr == 2) || !year_ok(b, q, yr) || !end_ok(b, q + yr) {
            return None;
        }
        // US month/day, or day.month with dots.
        let (m, d) = if sep == b'.' { (bb, a) } else { (a, bb) };
        let ok = (month_ok(m) && day_ok(d)) || (month_ok(d) && day_ok(m));
        return ok.then_some(q + yr);
    }
    None
}

/// US states, DC and territories (USPS codes).
const STATES: [&[u8; 2]; 56] = [
    b"AL", b"AK", b"AZ", b"AR", b"CA", b"CO", b"CT", b"DE", b"FL", b"GA", b"HI", b"ID", b"IL", b"IN", b"IA", b"KS",
    b"KY", b"LA", b"ME", b"MD", b"MA", b"MI", b"MN", b"MS", b"MO", b"MT", b"NE", b"NV", b"NH", b"NJ", b"NM", b"NY",
    b"NC", b"ND", b"OH", b"OK", b"OR", b"PA", b"RI", b"SC", b"SD", b"TN", b"TX", b"UT", b"VT", b"VA", b"WA", b"WV",
    b"WI", b"WY", b"DC", b"PR", b"VI", b"GU", b"AS", b"MP",
];

/// State codes that are also common words or abbreviations in logs (`ID 12345`,
/// `OK 20000`); they introduce a ZIP only after a comma (`Boise, ID 83702`).
const AMBIGUOUS_STATES: [&[u8; 2]; 10] = [b"ID", b"OK", b"OR", b"IN", b"ME", b"HI", b"DE", b"AS", b"MS", b"PA"];

pub(crate) fn is_state(w: &[u8]) -> bool {
    STATES.iter().any(|s| &s[..] == w)
}

/// Five digits (optionally `-dddd`) at `i` ending a token: the ZIP shape.
pub(crate) fn zip_shape(b: &[u8], i: usize) -> Option<usize> {
    if digit_run(b, i) != 5 {
        return None;
    }
    let mut end = i + 5;
    if b.get(end) == Some(&b'-') && digit_run(b, end + 1) == 4 {
        end += 5;
    }
    (end_ok(b, end) && !b.get(end).is_some_and(|&c| c == b'.' || c == b':')).then_some(end)
}

/// A ZIP at `i` preceded by a state code: `MA 02139`, `Boise, ID 83702-1234`.
pub(crate) fn zip_after_state(b: &[u8], i: usize) -> Option<usize> {
    if i < 3 || b[i - 1] != b' ' {
        return None;
    }
    let st = &b[i - 3..i - 1];
    if !st.iter().all(u8::is_ascii_uppercase) || !is_state(st) {
        return None;
    }
    let before = if i >= 4 { Some(b[i - 4]) } else { None };
    if before.is_some_and(is_alnum) {
        return None;
    }
    if AMBIGUOUS_STATES.iter().any(|s| &s[..] == st) && !(before == Some(b' ') && i >= 5 && b[i - 5] == b',') {
        return None;
    }
    zip_shape(b, i)
}

/// The Safe Harbor restricted ZIP prefixes: three-digit areas with 20,000 people or
/// fewer (HHS guidance on de-identification, from Census 2000 data).
pub const DEFAULT_RESTRICTED_ZIP: [&str; 17] = [
    "036", "059", "063", "102", "203", "556", "692", "790", "821", "823", "830", "831", "878", "879", "884", "890",
    "893",
];

const STREET_SUFFIXES: &[&str] = &[
    "Street",
    "St",
    "Avenue",
    "Ave",
    "Av",
    "Road",
    "Rd",
    "Boulevard",
    "Blvd",
    "Drive",
    "Dr",
    "Lane",
    "Ln",
    "Way",
    "Court",
    "Ct",
    "Place",
    "Pl",
    "Terrace",
    "Ter",
    "Parkway",
    "Pkwy",
    "Highway",
    "Hwy",
    "Circle",
    "Cir",
    "Square",
    "Sq",
    "Trail",
    "Trl",
    "Alley",
    "Plaza",
    "Crescent",
    "Pike",
    "Route",
    "Rte",
];

const UNIT_WORDS: &[&str] = &["Apt", "Apartment", "Suite", "Ste", "Unit", "Fl", "Floor", "Rm", "Room", "Bldg"];

const DIRECTIONS: &[&str] = &["N", "S", "E", "W", "NE", "NW", "SE", "SW", "North", "South", "East", "West"];

/// A capitalised word at `i` (`Main`, `McArthur`, `O'Neil`, `MLK`): its end.
fn cap_word(b: &[u8], i: usize) -> Option<usize> {
    if !b.get(i).is_some_and(u8::is_ascii_uppercase) {
        return None;
    }
    let mut j = i + 1;
    while j < b.len()
        && (b[j].is_ascii_alphabetic() || (b[j] == b'\'' && b.get(j + 1).is_some_and(u8::is_ascii_alphabetic)))
    {
        j += 1;
    }
    Some(j)
}

fn word_in(w: &[u8], list: &[&str]) -> bool {
    list.iter().any(|s| {
        s.as_bytes() == w
            || (w.len() == s.len() && w.iter().all(u8::is_ascii_uppercase) && s.as_bytes().eq_ignore_ascii_case(w))
    })
}

/// A street address at `i`: a house number, an optional direction, one to four
/// capitalised words or ordinals (`5th`), a street suffix (`St`, `Avenue`...), then an
/// optional unit (`Apt 4B`, `Suite 200`, `#12`) and an optional city before a state code
/// (`, Springfield, IL`); the city is part of the match, the state is not.
pub(crate) fn address(b: &[u8], i: usize) -> Option<usize> {
    let run = digit_run(b, i);
    if run == 0 || run > 6 || b.get(i + run) != Some(&b' ') {
        return None;
    }
    let mut p = i + run + 1;
    if let Some(e) = cap_word(b, p)
        && word_in(&b[p..e], DIRECTIONS)
    {
        let e = if b.get(e) == Some(&b'.') { e + 1 } else { e };
        if b.get(e) == Some(&b' ') {
            p = e + 1;
        }
    }
    let mut words = 0;
    let mut end = None;
    for _ in 0..6 {
        let w_end = if b.get(p).is_some_and(u8::is_ascii_digit) {
            // An ordinal street name: 5th, 21st, 2nd, 3rd.
            let r = digit_run(b, p);
            let s = b.get(p + r..p + r + 2)?;
            if r > 3 || !matches!(s, b"st" | b"nd" | b"rd" | b"th") {
                return None;
            }
            p + r + 2
        } else {
            cap_word(b, p)?
        };
        let w = &b[p..w_end];
        if words > 0 && word_in(w, STREET_SUFFIXES) {
            let mut e = w_end;
            if b.get(e) == Some(&b'.') {
                e += 1;
            }
            if !end_ok(b, e) {
                return None;
            }
            end = Some(e);
            break;
        }
        words += 1;
        if words > 4 || b.get(w_end) != Some(&b' ') {
            return None;
        }
        p = w_end + 1;
    }
    let mut e = end?;
    // Unit.
    let q = match b.get(e..e + 2) {
        Some(b", ") => e + 2,
        _ if b.get(e) == Some(&b' ') => e + 1,
        _ => e,
    };
    if q > e {
        if b.get(q) == Some(&b'#') && b.get(q + 1).is_some_and(u8::is_ascii_alphanumeric) {
            let mut r = q + 1;
            while r < b.len() && is_alnum(b[r]) {
                r += 1;
            }
            e = r;
        } else if let Some(we) = cap_word(b, q)
            && word_in(&b[q..we], UNIT_WORDS)
        {
            let mut r = we;
            if b.get(r) == Some(&b'.') {
                r += 1;
            }
            if b.get(r) == Some(&b' ') {
                r += 1;
            }
            if b.get(r) == Some(&b'#') {
                r += 1;
            }
            let s = r;
            while r < b.len() && (is_alnum(b[r]) || b[r] == b'-') {
                r += 1;
            }
            if r > s && b[s..r].iter().any(u8::is_ascii_digit) || (r - s == 1) {
                e = r;
            }
        }
    }
    // City before a state code: `, Springfield, IL` (the state and ZIP are left to the
    // ZIP rule).
    if b.get(e..e + 2) == Some(b", ") {
        let mut p = e + 2;
        let mut last = None;
        for _ in 0..3 {
            let Some(we) = cap_word(b, p) else { break };
            if we - p == 2 && b[p..we].iter().all(u8::is_ascii_uppercase) {
                break;
            }
            last = Some(we);
            if b.get(we) == Some(&b' ') {
                p = we + 1;
            } else {
                break;
            }
        }
        if let Some(we) = last
            && b.get(we..we + 2) == Some(b", ")
            && b.get(we + 2..we + 4).is_some_and(is_state)
            && !b.get(we + 4).is_some_and(|&c| is_alnum(c))
        {
            e = we;
        }
    }
    Some(e)
}

/// An IPv4 or IPv6 network in CIDR notation (a bare address is a /32 or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `10.0.0.0/8`, `fd00::/8`, `192.0.2.1`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (a, p) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = a.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match p {
            Some(p) => p.trim().parse::<u8>().ok().filter(|&p| p <= max)?,
            None => max,
        };
        Some(Cidr { addr, prefix })
    }

    /// An IPv4 network as `(network, mask)`: `a` is inside when `a & mask == network`.
    pub(crate) fn v4_mask(&self) -> Option<(u32, u32)> {
        match self.addr {
            IpAddr::V4(n) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                Some((u32::from(n) & mask, mask))
            }
            IpAddr::V6(_) => None,
        }
    }

    /// Whether `ip` is inside the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - self.prefix) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Infrastructure networks never redacted by default: loopback, unspecified, RFC 1918,
/// link-local, multicast and reserved IPv4 (netmasks such as `255.255.255.0` live there),
/// IPv6 loopback, unspecified, unique-local and link-local.
pub const DEFAULT_ALLOW_CIDRS: [&str; 12] = [
    "127.0.0.0/8",
    "0.0.0.0/32",
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "224.0.0.0/3",
    "::1/128",
    "::/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// [`ipv6`] without its pre-tests (the parser decides everything).
    fn ipv6_parser_only(b: &[u8], i: usize) -> Option<(usize, Ipv6Addr)> {
        let mut j = i;
        let mut colons = 0;
        while j < b.len() && j - i < 45 && (is_hex(b[j]) || b[j] == b':' || b[j] == b'.') {
            colons += usize::from(b[j] == b':');
            j += 1;
        }
        if colons < 2 || (j < b.len() && (is_alnum(b[j]) || b[j] == b'_')) {
            return None;
        }
        let mut end = j;
        while end > i && (b[end - 1] == b'.' || (b[end - 1] == b':' && b.get(end.wrapping_sub(2)) != Some(&b':'))) {
            end -= 1;
        }
        let s = std::str::from_utf8(&b[i..end]).ok()?;
        if let Ok(a) = s.parse::<Ipv6Addr>() {
            return Some((end, a));
        }
        let k = s.rfind(':')?;
        if k == 0 || s.as_bytes()[k - 1] == b':' || s[..k].bytes().filter(|&c| c == b':').count() < 2 {
            return None;
        }
        s[..k].parse::<Ipv6Addr>().ok().map(|a| (i + k, a))
    }

    #[test]
    fn ipv6_pre_tests_only_turn_away_what_the_parser_rejects() {
        let mut rng = StdRng::seed_from_u64(9);
        let pieces = ["1", "12", "abcd", "fe80", "ffff", "12345", "0", ":", ":", "::", ".", "203.0.113.9", "z", " "];
        let mut accepted = 0;
        for _ in 0..50_000 {
            let s: String = (0..rng.random_range(1..14)).map(|_| pieces[rng.random_range(0..pieces.len())]).collect();
            let got = ipv6(s.as_bytes(), 0);
            assert_eq!(got, ipv6_parser_only(s.as_bytes(), 0), "{s:?}");
            accepted += usize::from(got.is_some());
        }
        assert!(accepted > 1000, "{accepted}");
        for s in ["1:2:3:4:5:6:7:8", "1:2:3:4:5:6:1.2.3.4", "1::", "abcd::ef01:1"] {
            assert_eq!(ipv6(s.as_bytes(), 0).map(|x| x.0), Some(s.len()), "{s}");
        }
    }

    /// [`card`] without its early exit on the second group.
    fn card_without_early_exit(b: &[u8], i: usize) -> Option<usize> {
        let mut digits = [0u8; 19];
        let mut n = 0;
        let mut groups = [0usize; 5];
        let mut ng = 0;
        let mut p = i;
        let mut sep = 0u8;
        loop {
            let run = digit_run(b, p);
            if run == 0 || n + run > 19 || ng == 5 {
                return None;
            }
            digits[n..n + run].copy_from_slice(&b[p..p + run]);
            n += run;
            groups[ng] = run;
            ng += 1;
            p += run;
            match b.get(p) {
                Some(&c)
                    if (c == b' ' || c == b'-')
                        && (sep == 0 || sep == c)
                        && b.get(p + 1).is_some_and(u8::is_ascii_digit) =>
                {
                    if ng == 1 && run != 4 {
                        break;
                    }
                    sep = c;
                    p += 1;
                }
                _ => break,
            }
        }
        if ng > 1 && p > 0 && !b[p - 1].is_ascii_digit() {
            return None;
        }
        let shape_ok = match &groups[..ng] {
            [x] => (13..=19).contains(x),
            [4, 4, 4, 4] | [4, 4, 4, 4, 3] | [4, 6, 5] | [4, 6, 4] | [4, 4, 4, 1] | [4, 4, 4, 2] | [4, 4, 4, 3] => true,
            _ => false,
        };
        let d = &digits[..n];
        (shape_ok && (13..=19).contains(&n) && end_ok(b, p) && card_iin(d) && luhn(d)).then_some(p)
    }

    #[test]
    fn card_early_exit_keeps_every_shape() {
        let mut rng = StdRng::seed_from_u64(4);
        let valid = ["4111111111111111", "378282246310005", "5555555555554444", "6011111111111117", "4222222222222"];
        let mut found = 0;
        for _ in 0..50_000 {
            // A valid number cut into random groups, or random digit groups.
            let digits: String = if rng.random_bool(0.5) {
                valid[rng.random_range(0..valid.len())].to_owned()
            } else {
                (0..rng.random_range(4..20)).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect()
            };
            let sep = [" ", "-"][rng.random_range(0..2)];
            let mut s = String::new();
            for (k, c) in digits.chars().enumerate() {
                if k > 0 && rng.random_bool(0.2) {
                    s.push_str(sep);
                }
                s.push(c);
            }
            s.push_str([" x", "", "-1", ".5"][rng.random_range(0..4)]);
            let got = card(s.as_bytes(), 0);
            assert_eq!(got, card_without_early_exit(s.as_bytes(), 0), "{s}");
            found += usize::from(got.is_some());
        }
        assert!(found > 100, "{found}");
        assert!(card(b"2024-01-15", 0).is_none());
        assert_eq!(card(b"3782-822463-10005 x", 0), Some(17));
    }

    fn full(f: impl Fn(&[u8], usize) -> Option<usize>, s: &str) -> bool {
        f(s.as_bytes(), 0) == Some(s.len())
    }

    #[test]
    fn ssn_rules() {
        for s in ["123-45-6789", "123 45 6789", "899-01-0001"] {
            assert!(full(ssn_formatted, s), "{s}");
        }
        for s in [
            "000-12-3456",
            "666-12-3456",
            "900-12-3456",
            "123-00-4567",
            "123-45-0000",
            "123-45-67890",
            "123-45-6789-1",
            "123-45 6789",
        ] {
            assert!(!full(ssn_formatted, s) && ssn_formatted(s.as_bytes(), 0).is_none(), "{s}");
        }
        assert!(full(ssn_bare, "123456789"));
        assert!(ssn_bare(b"1234567890", 0).is_none());
    }

    #[test]
    fn phone_formats() {
        for s in [
            "555-123-4567",
            "555.123.4567",
            "555 123 4567",
            "(555) 123-4567",
            "(555)123-4567",
            "1-555-123-4567",
            "+1 555 123 4567",
            "+1-555-123-4567",
            "+1 (555) 123-4567",
            "+15551234567",
            "+1.555.123.4567",
        ] {
            assert!(full(phone_formatted, s), "{s}");
        }
        for s in
            ["155-123-4567", "055-123-4567", "555-123-45678", "555.123-4567", "1700000000", "2024-01-15", "12:34:56"]
        {
            assert!(!full(phone_formatted, s), "{s}");
        }
        assert!(full(phone_loose, "5551234567") && full(phone_loose, "15551234567") && full(phone_loose, "555-1234"));
        assert!(!full(phone_loose, "1234567890"));
    }

    #[test]
    fn cards_need_luhn_and_an_issuer() {
        for s in [
            "4111111111111111",
            "4111 1111 1111 1111",
            "4111-1111-1111-1111",
            "378282246310005",
            "3782 822463 10005",
            "5555555555554444",
            "6011111111111117",
        ] {
            assert!(full(card, s), "{s}");
        }
        for s in ["4111111111111112", "1700000000123", "1234567812345670", "4111 1111-1111 1111", "41111 111 1111 1111"]
        {
            assert!(!full(card, s), "{s}");
        }
    }

    #[test]
    fn ip_addresses() {
        assert_eq!(ipv4(b"203.0.113.9", 0).map(|x| x.0), Some(11));
        assert!(ipv4(b"203.0.113.9:443", 0).is_some());
        for s in ["1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3", "10.0.0.1a"] {
            assert!(ipv4(s.as_bytes(), 0).is_none(), "{s}");
        }
        for s in ["2001:db8::1", "2607:f8b0:4005:80a::200e", "::ffff:203.0.113.9", "fe80::1"] {
            assert_eq!(ipv6(s.as_bytes(), 0).map(|x| x.0), Some(s.len()), "{s}");
        }
        for s in ["10:00:00", "00:1a:2b:3c:4d:5e", "12:30:45.123"] {
            assert!(ipv6(s.as_bytes(), 0).is_none(), "{s}");
        }
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains("10.9.8.7".parse().unwrap()) && !c.contains("11.0.0.1".parse().unwrap()));
        assert!(c.contains("::ffff:10.1.1.1".parse().unwrap()));
        assert!(Cidr::parse("fd00::/8").unwrap().contains("fd12::1".parse().unwrap()));
        assert!(Cidr::parse("10.0.0.0/33").is_none() && Cidr::parse("x").is_none());
        assert!(Cidr::parse("0.0.0.0/0").unwrap().contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn emails() {
        let s = b"mail jane.doe+x@mail.example.org.";
        assert_eq!(email(s, 15), Some((5, 32)));
        assert!(email(b"image@sha256:abc", 5).is_none());
        assert!(email(b"root@host", 4).is_none());
        assert!(email(b"@example.com", 0).is_none());
    }

    #[test]
    fn dates() {
        for s in [
            "1954-03-02",
            "1954-03-02T10:11:12Z",
            "1954-03-02T10:11:12.5+02:00",
            "1954/03/02",
            "03/02/1954",
            "3/2/54",
            "03-02-1954",
            "02.03.1954",
            "19540302",
            "March 2, 1954",
            "Mar 2 1954",
            "Sept. 2, 1954",
            "2 March 1954",
            "02-Mar-1954",
            "March 3rd, 1954",
        ] {
            assert!(full(date, s), "{s}");
        }
        for s in ["1954-13-02", "13/13/1954", "March 32, 1954", "2024", "1.2.3", "12345678"] {
            assert!(!full(date, s), "{s}");
        }
    }

    #[test]
    fn zips_and_addresses() {
        let s = b"Boston, MA 02139-4307 ok";
        assert_eq!(zip_after_state(s, 11), Some(21));
        assert!(zip_after_state(b"record ID 48213", 10).is_none());
        assert_eq!(zip_after_state(b"Boise, ID 83702", 10), Some(15));
        for s in [
            "123 Main St",
            "42 N. Oak Avenue",
            "1600 Pennsylvania Ave",
            "77 W 5th St",
            "9 Elm Street Apt 4B",
            "500 Market Street, Suite 200",
        ] {
            assert!(full(address, s), "{s}");
        }
        let s = "12 Oak Dr, Springfield, IL 62704";
        assert_eq!(address(s.as_bytes(), 0), Some("12 Oak Dr, Springfield".len()));
        for s in ["3 Way handshake", "200 ms", "5 retries Street", "12 Main"] {
            assert!(address(s.as_bytes(), 0).is_none(), "{s}");
        }
    }
}
