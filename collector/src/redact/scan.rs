//! The text scanner: one pass over a string finds every PHI span.
//!
//! Two cheap passes over the bytes, no per-detector regex:
//!
//! 1. One Aho-Corasick automaton (ASCII case-insensitive, leftmost-longest) finds the
//!    context words (`ssn`, `dob`, `patient`, `Dr.`, `mrn`, `member id`, `zip`, `://`,
//!    `version`...). Each hit, if it sits on word boundaries, runs the small validator
//!    its context calls for on the bytes right after it (bare nine-digit SSNs, bare
//!    phone numbers, dates, ages, MRN/plan/account/licence tokens, names, URLs).
//! 2. A byte-class loop walks the text token by token. Lower-case words are skipped
//!    whole; a token starting with a digit is tried against the shape validators (SSN,
//!    phone, card, IPv4, ZIP after a state code, street address, IPv6) and then skipped
//!    with its whole compound (`2024-01-15T10:00:00Z`, UUIDs, versions); `@` tries an
//!    email; `(` and `+` try a phone; `::` tries IPv6; a capitalised word tries a
//!    `First Last` dictionary name.
//!
//! Findings are merged (overlaps become one span) and handed back sorted. Clean text,
//! the common case, costs the two passes and no allocation.

use super::detect::{self, Cidr, digit_run, end_ok, is_alnum};
use super::detector::Detector;
use super::keys::{KeyMatcher, normalize_key};
use super::names::Names;
use aho_corasick::{AhoCorasick, AhoCorasickKind, MatchKind};
use regex::Regex;

/// A context a word establishes for what follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ctx {
    Ssn,
    Phone,
    Date,
    AgeBefore,
    AgeAfter,
    Id(Detector),
    Zip,
    /// `patient`: the capitalised words after `patient=` / `patient:` are a name.
    Patient,
    /// `name`, `guardian`: capitalised words after it are a name if one is in a dictionary.
    NameWord,
    /// `Dr.`, `Mr.`, `Mrs.`, `Ms.`, `Miss`, `Mx.`: the capitalised words after it.
    Title,
    /// `for`: a first name (and a following capitalised word) after it.
    For,
    /// `version`, `build`...: a dotted quad right after it is a version, not an IP.
    Version,
    /// `://`: a URL.
    Url,
}

const CONTEXT_WORDS: &[(&str, Ctx)] = &[
    ("ssn", Ctx::Ssn),
    ("ss#", Ctx::Ssn),
    ("social security", Ctx::Ssn),
    ("social security number", Ctx::Ssn),
    ("soc sec", Ctx::Ssn),
    ("phone", Ctx::Phone),
    ("phone number", Ctx::Phone),
    ("tel", Ctx::Phone),
    ("telephone", Ctx::Phone),
    ("fax", Ctx::Phone),
    ("mobile", Ctx::Phone),
    ("cell", Ctx::Phone),
    ("ph", Ctx::Phone),
    ("call", Ctx::Phone),
    ("callback", Ctx::Phone),
    ("pager", Ctx::Phone),
    ("dob", Ctx::Date),
    ("d.o.b.", Ctx::Date),
    ("date of birth", Ctx::Date),
    ("birth", Ctx::Date),
    ("birthdate", Ctx::Date),
    ("birthday", Ctx::Date),
    ("born", Ctx::Date),
    ("admit", Ctx::Date),
    ("admitted", Ctx::Date),
    ("admission", Ctx::Date),
    ("discharge", Ctx::Date),
    ("discharged", Ctx::Date),
    ("death", Ctx::Date),
    ("died", Ctx::Date),
    ("deceased", Ctx::Date),
    ("date of death", Ctx::Date),
    ("date of service", Ctx::Date),
    ("age", Ctx::AgeBefore),
    ("aged", Ctx::AgeBefore),
    ("years old", Ctx::AgeAfter),
    ("year old", Ctx::AgeAfter),
    ("yrs old", Ctx::AgeAfter),
    ("year-old", Ctx::AgeAfter),
    ("-year-old", Ctx::AgeAfter),
    ("yo", Ctx::AgeAfter),
    ("y/o", Ctx::AgeAfter),
    ("mrn", Ctx::Id(Detector::Mrn)),
    ("mr#", Ctx::Id(Detector::Mrn)),
    ("medical record", Ctx::Id(Detector::Mrn)),
    ("medical record number", Ctx::Id(Detector::Mrn)),
    ("chart", Ctx::Id(Detector::Mrn)),
    ("member id", Ctx::Id(Detector::HealthPlan)),
    ("member", Ctx::Id(Detector::HealthPlan)),
    ("health plan", Ctx::Id(Detector::HealthPlan)),
    ("policy", Ctx::Id(Detector::HealthPlan)),
    ("policy number", Ctx::Id(Detector::HealthPlan)),
    ("insurance id", Ctx::Id(Detector::HealthPlan)),
    ("insurance", Ctx::Id(Detector::HealthPlan)),
    ("subscriber", Ctx::Id(Detector::HealthPlan)),
    ("subscriber id", Ctx::Id(Detector::HealthPlan)),
    ("beneficiary", Ctx::Id(Detector::HealthPlan)),
    ("medicare", Ctx::Id(Detector::HealthPlan)),
    ("medicaid", Ctx::Id(Detector::HealthPlan)),
    ("mbi", Ctx::Id(Detector::HealthPlan)),
    ("hicn", Ctx::Id(Detector::HealthPlan)),
    ("account", Ctx::Id(Detector::Account)),
    ("account number", Ctx::Id(Detector::Account)),
    ("acct", Ctx::Id(Detector::Account)),
    ("acct#", Ctx::Id(Detector::Account)),
    ("bank account", Ctx::Id(Detector::Account)),
    ("iban", Ctx::Id(Detector::Account)),
    ("license", Ctx::Id(Detector::License)),
    ("licence", Ctx::Id(Detector::License)),
    ("driver's license", Ctx::Id(Detector::License)),
    ("drivers license", Ctx::Id(Detector::License)),
    ("driver license", Ctx::Id(Detector::License)),
    ("dl", Ctx::Id(Detector::License)),
    ("dl#", Ctx::Id(Detector::License)),
    ("lic", Ctx::Id(Detector::License)),
    ("lic#", Ctx::Id(Detector::License)),
    ("passport", Ctx::Id(Detector::License)),
    ("zip", Ctx::Zip),
    ("zipcode", Ctx::Zip),
    ("zip code", Ctx::Zip),
    ("postal code", Ctx::Zip),
    ("postcode", Ctx::Zip),
    ("patient", Ctx::Patient),
    ("patient name", Ctx::Patient),
    ("pt", Ctx::Patient),
    ("name", Ctx::NameWord),
    ("named", Ctx::NameWord),
    ("guardian", Ctx::NameWord),
    ("contact", Ctx::NameWord),
    ("next of kin", Ctx::NameWord),
    ("spouse", Ctx::NameWord),
    ("dr", Ctx::Title),
    ("mr", Ctx::Title),
    ("mrs", Ctx::Title),
    ("ms", Ctx::Title),
    ("miss", Ctx::Title),
    ("mx", Ctx::Title),
    ("for", Ctx::For),
    ("version", Ctx::Version),
    ("ver", Ctx::Version),
    ("build", Ctx::Version),
    ("release", Ctx::Version),
    ("kernel", Ctx::Version),
    ("firmware", Ctx::Version),
    ("revision", Ctx::Version),
    ("://", Ctx::Url),
];

/// Capitalised words that end a context-introduced name (`patient Admitted ...`).
const NAME_STOP: &[&str] = &[
    "The",
    "A",
    "An",
    "Id",
    "ID",
    "Record",
    "Records",
    "Admitted",
    "Discharged",
    "Status",
    "Not",
    "None",
    "Null",
    "Unknown",
    "Is",
    "Was",
    "Has",
    "And",
    "Or",
    "Of",
    "In",
    "On",
    "At",
    "To",
    "From",
    "With",
    "By",
    "No",
    "Yes",
    "True",
    "False",
    "Error",
    "Failed",
    "Ok",
    "OK",
    "Info",
    "Warn",
    "Debug",
    "Record",
    "Portal",
    "Service",
    "Chart",
    "Name",
    "Number",
];

/// Query parameters that name a person besides the key rules.
const URL_PARAMS: &[&str] =
    &["patient", "fname", "lname", "first", "last", "given", "family", "fullname", "member", "subscriber"];

/// A PHI span: bytes `start..end` of the scanned text, found by `det`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// First byte.
    pub start: usize,
    /// One past the last byte.
    pub end: usize,
    /// The detector.
    pub det: Detector,
}

struct Extra {
    re: Regex,
    groups: Vec<(String, Detector)>,
}

/// The compiled scanner.
pub(crate) struct Engine {
    on: [bool; Detector::COUNT],
    ac: AhoCorasick,
    ctx_of: Vec<Ctx>,
    names: &'static Names,
    dictionary: bool,
    allow: Vec<Cidr>,
    restricted_zip: Vec<bool>,
    extra: Option<Extra>,
    pub(crate) keys: KeyMatcher,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("on", &self.on).field("allow", &self.allow.len()).finish_non_exhaustive()
    }
}

/// What the engine is built from (validated config, compiled).
pub(crate) struct EngineSpec {
    pub on: [bool; Detector::COUNT],
    pub dictionary: bool,
    pub allow: Vec<Cidr>,
    pub restricted_zip: Vec<String>,
    pub extra_patterns: Vec<(Detector, String)>,
    pub extra_context: Vec<(Detector, String)>,
    pub keys: KeyMatcher,
}

#[inline]
fn lower(c: u8) -> bool {
    c.is_ascii_lowercase()
}

/// Skips separators (` :=#"'-` and tabs) and the given filler words, at most `limit`
/// bytes from `p`; returns the new position and whether `=` or `:` was crossed.
fn skip_filler(b: &[u8], mut p: usize, limit: usize, words: &[&str]) -> (usize, bool) {
    let stop = (p + limit).min(b.len());
    let mut assign = false;
    'outer: while p < stop {
        let c = b[p];
        if matches!(c, b' ' | b'\t' | b':' | b'=' | b'#' | b'"' | b'\'' | b'-' | b'(') {
            assign |= c == b'=' || c == b':';
            p += 1;
            continue;
        }
        if c.is_ascii_alphabetic() {
            for w in words {
                let wb = w.as_bytes();
                if b.len() >= p + wb.len()
                    && b[p..p + wb.len()].eq_ignore_ascii_case(wb)
                    && !b.get(p + wb.len()).is_some_and(|&c| c.is_ascii_alphabetic())
                {
                    p += wb.len();
                    if b.get(p) == Some(&b'.') {
                        p += 1;
                    }
                    continue 'outer;
                }
            }
        }
        break;
    }
    (p, assign)
}

/// Whether a context hit at `s..e` sits on word boundaries (camelCase humps count).
fn hit_ok(b: &[u8], s: usize, e: usize, ctx: Ctx) -> bool {
    if ctx == Ctx::Url {
        return true;
    }
    let first = b[s];
    if is_alnum(first) && s > 0 {
        let p = b[s - 1];
        let boundary =
            !is_alnum(p) || (lower(p) && first.is_ascii_uppercase()) || (ctx == Ctx::AgeAfter && p.is_ascii_digit());
        // `[SSN:...]`, `[REDACTED:NAME]`: our own tokens are not contexts.
        if !boundary || p == b'[' || (p == b':' && s >= 9 && &b[s - 9..s - 1] == b"REDACTED") {
            return false;
        }
    }
    let last = b[e - 1];
    if is_alnum(last) && e < b.len() {
        let n = b[e];
        if is_alnum(n) && !(lower(last) && n.is_ascii_uppercase()) {
            return false;
        }
    }
    match ctx {
        Ctx::Title => {
            first.is_ascii_uppercase() && b[s + 1..e].iter().all(|c| lower(*c)) && matches!(b.get(e), Some(b'.' | b' '))
        }
        Ctx::For => b.get(e) == Some(&b' ') && (first == b'f' || first == b'F'),
        _ => true,
    }
}

/// A capitalised name word at `i`: `Smith`, `McDonald`, `O'Brien`, `Smith-Jones`, `SMITH`.
fn name_word(b: &[u8], i: usize) -> Option<usize> {
    if !b.get(i).is_some_and(u8::is_ascii_uppercase) {
        return None;
    }
    let mut j = i + 1;
    while j < b.len()
        && (b[j].is_ascii_alphabetic()
            || ((b[j] == b'\'' || b[j] == b'-') && b.get(j + 1).is_some_and(u8::is_ascii_alphabetic) && j > i))
    {
        j += 1;
    }
    if j - i < 2 || b.get(j).is_some_and(|&c| c.is_ascii_digit() || c == b'_') {
        return None;
    }
    Some(j)
}

/// `[A-Z][a-z]+` at `i`: its end.
fn title_word(b: &[u8], i: usize) -> Option<usize> {
    if !b.get(i).is_some_and(u8::is_ascii_uppercase) {
        return None;
    }
    let mut j = i + 1;
    while j < b.len() && lower(b[j]) {
        j += 1;
    }
    (j - i >= 2 && !b.get(j).is_some_and(|&c| is_alnum(c) || c == b'_')).then_some(j)
}

/// Whether the text right after `[` at `i` is one of our tokens (`[REDACTED:X]`, `[X:hex]`).
pub(crate) fn is_token(b: &[u8]) -> bool {
    b.first() == Some(&b'[')
        && b.last() == Some(&b']')
        && b.iter()
            .position(|&c| c == b':')
            .is_some_and(|k| k > 1 && b[1..k].iter().all(|c| c.is_ascii_uppercase() || *c == b'_'))
}

impl Engine {
    pub(crate) fn new(spec: EngineSpec) -> Result<Engine, String> {
        let mut patterns: Vec<String> = Vec::new();
        let mut ctx_of = Vec::new();
        for (w, c) in CONTEXT_WORDS {
            patterns.push((*w).to_owned());
            ctx_of.push(*c);
        }
        for (d, w) in &spec.extra_context {
            patterns.push(w.trim().to_owned());
            ctx_of.push(Ctx::Id(*d));
        }
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::LeftmostLongest)
            .kind(Some(AhoCorasickKind::DFA))
            .build(&patterns)
            .map_err(|e| format!("context words: {e}"))?;
        let extra = if spec.extra_patterns.is_empty() {
            None
        } else {
            let mut src = String::new();
            let mut groups = Vec::new();
            for (k, (d, p)) in spec.extra_patterns.iter().enumerate() {
                if !src.is_empty() {
                    src.push('|');
                }
                let g = format!("warden_x{k}");
                src.push_str(&format!("(?P<{g}>{p})"));
                groups.push((g, *d));
            }
            let re = Regex::new(&src).map_err(|e| format!("patterns: {e}"))?;
            Some(Extra { re, groups })
        };
        let mut restricted_zip = vec![false; 1000];
        for p in &spec.restricted_zip {
            if let Ok(n) = p.parse::<usize>()
                && n < 1000
            {
                restricted_zip[n] = true;
            }
        }
        Ok(Engine {
            on: spec.on,
            ac,
            ctx_of,
            names: Names::get(),
            dictionary: spec.dictionary,
            allow: spec.allow,
            restricted_zip,
            extra,
            keys: spec.keys,
        })
    }

    #[inline]
    pub(crate) fn on(&self, d: Detector) -> bool {
        self.on[d.index()]
    }

    pub(crate) fn zip_restricted(&self, prefix: &[u8]) -> bool {
        prefix.len() == 3
            && prefix.iter().all(u8::is_ascii_digit)
            && self.restricted_zip[usize::from(prefix[0] - b'0') * 100
                + usize::from(prefix[1] - b'0') * 10
                + usize::from(prefix[2] - b'0')]
    }

    /// The contexts a structured key gives its value (`patient_age` → age, `admittedAt`
    /// → date). At most four.
    pub(crate) fn key_contexts(&self, key: &str) -> KeyCtx {
        let mut out = KeyCtx::default();
        let b = key.as_bytes();
        if b.len() > 128 {
            return out;
        }
        for m in self.ac.find_iter(b) {
            let ctx = self.ctx_of[m.pattern().as_usize()];
            if matches!(ctx, Ctx::Title | Ctx::For | Ctx::Url | Ctx::AgeAfter) || !hit_ok(b, m.start(), m.end(), ctx) {
                continue;
            }
            out.push(ctx);
        }
        out
    }

    /// Scans `text`; appends merged findings to `out` (which must be empty).
    pub(crate) fn scan(&self, text: &str, key: &KeyCtx, allow_url: bool, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        let mut version_ends: Vec<usize> = Vec::new();
        for m in self.ac.find_iter(b) {
            let (s, e) = (m.start(), m.end());
            let ctx = self.ctx_of[m.pattern().as_usize()];
            if hit_ok(b, s, e, ctx) {
                self.on_ctx(b, s, e, ctx, allow_url, &mut version_ends, out);
            }
        }
        for ctx in key.iter() {
            self.on_ctx(b, 0, 0, ctx, allow_url, &mut version_ends, out);
        }
        self.walk(b, &version_ends, out);
        if let Some(x) = &self.extra {
            for caps in x.re.captures_iter(text) {
                for (g, d) in &x.groups {
                    if let Some(m) = caps.name(g) {
                        if self.on(*d) && m.end() > m.start() {
                            out.push(Finding { start: m.start(), end: m.end(), det: *d });
                        }
                        break;
                    }
                }
            }
        }
        merge(out);
    }

    fn push(&self, out: &mut Vec<Finding>, start: usize, end: usize, det: Detector) {
        if self.on(det) && end > start {
            out.push(Finding { start, end, det });
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_ctx(
        &self,
        b: &[u8],
        s: usize,
        e: usize,
        ctx: Ctx,
        allow_url: bool,
        version_ends: &mut Vec<usize>,
        out: &mut Vec<Finding>,
    ) {
        let n = b.len();
        match ctx {
            Ctx::Ssn if self.on(Detector::Ssn) => {
                let (p, _) = skip_filler(b, e, 24, &["number", "no", "num", "is"]);
                if let Some(end) = detect::ssn_formatted(b, p).or_else(|| detect::ssn_bare(b, p)) {
                    self.push(out, p, end, Detector::Ssn);
                }
            }
            Ctx::Phone if self.on(Detector::Phone) => {
                let (p, _) = skip_filler(b, e, 24, &["number", "no", "num", "is", "at"]);
                if (p == 0 || !is_alnum(b[p - 1]))
                    && let Some(end) = detect::phone_loose(b, p)
                {
                    self.push(out, p, end, Detector::Phone);
                }
            }
            Ctx::Date if self.on(Detector::Date) => {
                let stop = (e + 32).min(n);
                let mut p = e;
                while p < stop {
                    if is_alnum(b[p])
                        && (p == 0 || !is_alnum(b[p - 1]))
                        && let Some(end) = detect::date(b, p)
                    {
                        self.push(out, p, end, Detector::Date);
                        break;
                    }
                    p += 1;
                }
            }
            Ctx::AgeBefore if self.on(Detector::Age) => {
                let (p, _) = skip_filler(b, e, 16, &["is", "of"]);
                let r = digit_run(b, p);
                if (2..=3).contains(&r) && end_ok(b, p + r) {
                    let v: u32 = b[p..p + r].iter().fold(0, |a, &d| a * 10 + u32::from(d - b'0'));
                    if (90..=150).contains(&v) {
                        self.push(out, p, p + r, Detector::Age);
                    }
                }
            }
            Ctx::AgeAfter if self.on(Detector::Age) => {
                let mut q = s;
                let mut k = 0;
                while q > 0 && k < 2 && (b[q - 1] == b' ' || b[q - 1] == b'-') {
                    q -= 1;
                    k += 1;
                }
                let mut st = q;
                while st > 0 && q - st < 4 && b[st - 1].is_ascii_digit() {
                    st -= 1;
                }
                if (2..=3).contains(&(q - st)) && (st == 0 || !is_alnum(b[st - 1])) {
                    let v: u32 = b[st..q].iter().fold(0, |a, &d| a * 10 + u32::from(d - b'0'));
                    if (90..=150).contains(&v) {
                        self.push(out, st, q, Detector::Age);
                    }
                }
            }
            Ctx::Id(d) if self.on(d) => {
                let (p, _) = skip_filler(b, e, 24, &["number", "no", "num", "nbr", "id", "is"]);
                let mut r = p;
                let mut digits = 0;
                while r < n && r - p <= 24 && (is_alnum(b[r]) || b[r] == b'-') {
                    digits += usize::from(b[r].is_ascii_digit());
                    r += 1;
                }
                while r > p && b[r - 1] == b'-' {
                    r -= 1;
                }
                if (4..=24).contains(&(r - p))
                    && digits >= 4
                    && (p == 0 || !is_alnum(b[p - 1]))
                    && !b.get(r).is_some_and(|&c| {
                        is_alnum(c) || c == b'_' || (c == b'.' && b.get(r + 1).is_some_and(u8::is_ascii_digit))
                    })
                {
                    self.push(out, p, r, d);
                }
            }
            Ctx::Zip if self.on(Detector::Zip) => {
                let (p, _) = skip_filler(b, e, 16, &["code", "is"]);
                if (p == 0 || !is_alnum(b[p - 1]))
                    && let Some(end) = detect::zip_shape(b, p)
                {
                    self.push(out, p, end, Detector::Zip);
                }
            }
            Ctx::Patient | Ctx::NameWord if self.on(Detector::Name) => {
                let (p, assign) = skip_filler(b, e, 4, &[]);
                let from_key = e == 0;
                let any = ctx == Ctx::Patient && (assign || from_key);
                if (p > e || from_key)
                    && let Some(end) = self.name_words(b, p, !any)
                {
                    self.push(out, p, end, Detector::Name);
                }
            }
            Ctx::Title if self.on(Detector::Name) => {
                let mut p = e;
                if b.get(p) == Some(&b'.') {
                    p += 1;
                }
                if b.get(p) == Some(&b' ') {
                    p += 1;
                    if let Some(end) = self.name_words(b, p, false) {
                        self.push(out, p, end, Detector::Name);
                    }
                }
            }
            Ctx::For if self.on(Detector::Name) => {
                let p = e + 1;
                if let Some(w1) = title_word(b, p)
                    && self.names.is_pair_first(&b[p..w1])
                {
                    let mut end = w1;
                    if b.get(w1) == Some(&b' ')
                        && let Some(w2) = name_word(b, w1 + 1)
                        && !NAME_STOP.iter().any(|s| s.as_bytes() == &b[w1 + 1..w2])
                    {
                        end = w2;
                    }
                    self.push(out, p, end, Detector::Name);
                }
            }
            Ctx::Version => version_ends.push(e),
            Ctx::Url if allow_url && self.on(Detector::Url) => self.url(b, s, e, out),
            _ => {}
        }
    }

    /// One to three capitalised words at `p` (`John Smith`, `Mary Ann Smith`, `J. Smith`,
    /// `Smith, John`); with `need_dict` one of them must be in a name list.
    fn name_words(&self, b: &[u8], p: usize, need_dict: bool) -> Option<usize> {
        let mut q = p;
        let mut end = None;
        let mut dict = false;
        let mut count = 0;
        while count < 3 {
            let we = if b.get(q).is_some_and(u8::is_ascii_uppercase) && b.get(q + 1) == Some(&b'.') {
                q + 2
            } else {
                let we = name_word(b, q)?;
                let w = &b[q..we];
                if NAME_STOP.iter().any(|s| s.as_bytes() == w) {
                    break;
                }
                let in_dict = self.is_name_any(w);
                if count == 2 && !in_dict {
                    break;
                }
                dict |= in_dict;
                we
            };
            end = Some(we);
            count += 1;
            if b.get(we) == Some(&b' ') && b.get(we + 1).is_some_and(u8::is_ascii_uppercase) {
                q = we + 1;
            } else if count == 1
                && b.get(we..we + 2) == Some(b", ")
                && b.get(we + 2).is_some_and(u8::is_ascii_uppercase)
            {
                // `Smith, John` only if the second word is a first name.
                let Some(w2) = name_word(b, we + 2) else { break };
                if !self.names.is_first(&b[we + 2..w2]) {
                    break;
                }
                q = we + 2;
            } else {
                break;
            }
        }
        let end = end?;
        (!need_dict || dict).then_some(end)
    }

    fn is_name_any(&self, w: &[u8]) -> bool {
        self.names.is_any(w) || self.is_surname(w)
    }

    /// Surname lookup that copes with `O'Brien` (OBRIEN) and `Smith-Jones` (either part).
    fn is_surname(&self, w: &[u8]) -> bool {
        if self.names.is_last(w) {
            return true;
        }
        if w.contains(&b'\'') {
            let mut buf = [0u8; 32];
            let mut k = 0;
            for &c in w.iter().filter(|&&c| c != b'\'').take(32) {
                buf[k] = c;
                k += 1;
            }
            return self.names.is_last(&buf[..k]);
        }
        if w.contains(&b'-') {
            return w.split(|&c| c == b'-').any(|part| self.names.is_last(part));
        }
        false
    }

    /// `First [M.] Last` at `i` by the dictionaries (see [`super::names`]).
    fn name_pair(&self, b: &[u8], i: usize) -> Option<usize> {
        let w1 = title_word(b, i)?;
        if !self.names.is_pair_first(&b[i..w1]) || b.get(w1) != Some(&b' ') {
            return None;
        }
        let mut p = w1 + 1;
        if b.get(p).is_some_and(u8::is_ascii_uppercase) && b.get(p + 1) == Some(&b'.') && b.get(p + 2) == Some(&b' ') {
            p += 3;
        }
        let w2 = name_word(b, p)?;
        if !self.is_surname(&b[p..w2]) {
            return None;
        }
        // `Mary Ann Smith`: the second word was a middle name.
        if b.get(w2) == Some(&b' ')
            && self.names.is_first(&b[p..w2])
            && let Some(w3) = name_word(b, w2 + 1)
            && self.is_surname(&b[w2 + 1..w3])
        {
            return Some(w3);
        }
        Some(w2)
    }

    /// The byte-class walk (pass 2 in the module docs).
    fn walk(&self, b: &[u8], version_ends: &[usize], out: &mut Vec<Finding>) {
        let n = b.len();
        let mut i = 0;
        while i < n {
            let c = b[i];
            match CLASS[usize::from(c)] {
                0 => i += 1,
                DIGIT => {
                    if i > 0
                        && (is_alnum(b[i - 1])
                            || (matches!(b[i - 1], b'.' | b'-' | b'_') && i > 1 && is_alnum(b[i - 2])))
                    {
                        i = skip_compound(b, i);
                        continue;
                    }
                    i = self.number(b, i, version_ends, out);
                }
                UPPER => {
                    let start_ok = i == 0
                        || matches!(
                            b[i - 1],
                            b' ' | b'\t' | b'"' | b'\'' | b'(' | b'=' | b':' | b',' | b';' | b'[' | b'{' | b'>' | b'\n'
                        );
                    if start_ok
                        && self.dictionary
                        && self.on(Detector::Name)
                        && let Some(end) = self.name_pair(b, i)
                    {
                        self.push(out, i, end, Detector::Name);
                        i = end;
                        continue;
                    }
                    i = self.word(b, i, out);
                }
                LOWER => i = self.word(b, i, out),
                AT => {
                    if self.on(Detector::Email)
                        && let Some((s, e)) = detect::email(b, i)
                    {
                        self.push(out, s, e, Detector::Email);
                        i = e;
                    } else {
                        i += 1;
                    }
                }
                COLON => {
                    if b.get(i + 1) == Some(&b':')
                        && (i == 0 || !(is_alnum(b[i - 1]) || b[i - 1] == b']'))
                        && self.on(Detector::Ip)
                        && let Some((e, a)) = detect::ipv6(b, i)
                    {
                        self.ip_found(out, i, e, a.into());
                        i = e;
                    } else {
                        i += 1;
                    }
                }
                PAREN_PLUS => {
                    if (i == 0 || !is_alnum(b[i - 1]))
                        && b.get(i + 1).is_some_and(u8::is_ascii_digit)
                        && self.on(Detector::Phone)
                        && let Some(e) = detect::phone_formatted(b, i)
                    {
                        self.push(out, i, e, Detector::Phone);
                        i = e;
                    } else {
                        i += 1;
                    }
                }
                _ => i += 1,
            }
        }
    }

    /// An alphabetic-start word at `i`: skipped, unless it is hex followed by `:` (IPv6).
    fn word(&self, b: &[u8], i: usize, out: &mut Vec<Finding>) -> usize {
        let mut j = i;
        let mut hex = true;
        while j < b.len() && is_alnum(b[j]) {
            hex &= b[j].is_ascii_hexdigit();
            j += 1;
        }
        if hex
            && j - i <= 4
            && b.get(j) == Some(&b':')
            && (i == 0 || !is_alnum(b[i - 1]) && b[i - 1] != b':')
            && self.on(Detector::Ip)
            && let Some((e, a)) = detect::ipv6(b, i)
        {
            self.ip_found(out, i, e, a.into());
            return e;
        }
        j
    }

    fn ip_found(&self, out: &mut Vec<Finding>, s: usize, e: usize, a: std::net::IpAddr) {
        if !self.allow.iter().any(|c| c.contains(a)) {
            self.push(out, s, e, Detector::Ip);
        }
    }

    /// A token starting with a digit at a word start: try every numeric shape, then skip
    /// the whole compound token.
    fn number(&self, b: &[u8], i: usize, version_ends: &[usize], out: &mut Vec<Finding>) -> usize {
        let run = digit_run(b, i);
        let next = b.get(i + run).copied().unwrap_or(0);
        if run == 3
            && self.on(Detector::Ssn)
            && let Some(e) = detect::ssn_formatted(b, i)
        {
            self.push(out, i, e, Detector::Ssn);
            return e;
        }
        if (run == 3 || (run == 1 && b[i] == b'1'))
            && self.on(Detector::Phone)
            && let Some(e) = detect::phone_formatted(b, i)
        {
            self.push(out, i, e, Detector::Phone);
            return e;
        }
        if run >= 4
            && self.on(Detector::Card)
            && let Some(e) = detect::card(b, i)
        {
            self.push(out, i, e, Detector::Card);
            return e;
        }
        if run <= 3
            && next == b'.'
            && self.on(Detector::Ip)
            && let Some((e, a)) = detect::ipv4(b, i)
        {
            let versioned = version_ends.iter().any(|&v| v <= i && i - v <= 12);
            if !versioned {
                self.ip_found(out, i, e, a.into());
            }
            return e;
        }
        if run == 5
            && self.on(Detector::Zip)
            && let Some(e) = detect::zip_after_state(b, i)
        {
            self.push(out, i, e, Detector::Zip);
            return e;
        }
        if run <= 6
            && next == b' '
            && self.on(Detector::Address)
            && let Some(e) = detect::address(b, i)
        {
            self.push(out, i, e, Detector::Address);
            return e;
        }
        if run <= 4
            && (next == b':' || next.is_ascii_hexdigit())
            && self.on(Detector::Ip)
            && let Some((e, a)) = detect::ipv6(b, i)
        {
            self.ip_found(out, i, e, a.into());
            return e;
        }
        skip_compound(b, i)
    }

    /// Query values and path segments of the URL whose `://` is at `s..e`.
    fn url(&self, b: &[u8], s: usize, e: usize, out: &mut Vec<Finding>) {
        let mut st = s;
        while st > 0 && s - st < 16 && (b[st - 1].is_ascii_alphanumeric() || matches!(b[st - 1], b'+' | b'.' | b'-')) {
            st -= 1;
        }
        if s - st < 2 {
            return;
        }
        let mut end = e;
        while end < b.len()
            && end - e < 8192
            && !matches!(
                b[end],
                b' ' | b'\t' | b'\r' | b'\n' | b'"' | b'\'' | b'<' | b'>' | b'`' | b'\\' | b'{' | b'}' | b'|' | b'^'
            )
        {
            end += 1;
        }
        while end > e && matches!(b[end - 1], b'.' | b',' | b';' | b':' | b'!' | b'?' | b')' | b']') {
            end -= 1;
        }
        let q = b[e..end].iter().position(|&c| c == b'?' || c == b'#').map_or(end, |x| e + x);
        // Path segments (after the authority) whose decoded text holds PHI.
        let mut p = e;
        while p < q {
            let seg_end = b[p..q].iter().position(|&c| c == b'/').map_or(q, |x| p + x);
            if b[p..seg_end].contains(&b'%') && self.decoded_has_phi(&b[p..seg_end]) {
                self.push(out, p, seg_end, Detector::Url);
            }
            p = seg_end + 1;
        }
        // Query and fragment parameters.
        let mut p = q + 1;
        while p < end {
            let pe = b[p..end].iter().position(|&c| c == b'&' || c == b';' || c == b'#').map_or(end, |x| p + x);
            if let Some(eq) = b[p..pe].iter().position(|&c| c == b'=') {
                let (k, v) = (&b[p..p + eq], (p + eq + 1, pe));
                // An earlier pass's token (its `]` may have been trimmed off the URL end).
                let token = b[v.0] == b'['
                    && b[v.0..].iter().position(|&c| c == b']').is_some_and(|k| is_token(&b[v.0..=v.0 + k]));
                if v.1 > v.0 && !token {
                    let key = String::from_utf8_lossy(k);
                    let by_key = self.keys.lookup(&key).is_some() || URL_PARAMS.contains(&normalize_key(&key).as_str());
                    if by_key
                        || (b[v.0..v.1].iter().any(|&c| c == b'%' || c == b'+') && self.decoded_has_phi(&b[v.0..v.1]))
                    {
                        self.push(out, v.0, v.1, Detector::Url);
                    }
                }
            }
            p = pe + 1;
        }
    }

    fn decoded_has_phi(&self, raw: &[u8]) -> bool {
        let mut dec = Vec::with_capacity(raw.len());
        let mut i = 0;
        while i < raw.len() {
            match raw[i] {
                b'%' if i + 2 < raw.len() => {
                    let h = std::str::from_utf8(&raw[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                    match h {
                        Some(v) => {
                            dec.push(v);
                            i += 3;
                        }
                        None => {
                            dec.push(b'%');
                            i += 1;
                        }
                    }
                }
                b'+' => {
                    dec.push(b' ');
                    i += 1;
                }
                c => {
                    dec.push(c);
                    i += 1;
                }
            }
        }
        let text = String::from_utf8_lossy(&dec);
        let mut found = Vec::new();
        self.scan(&text, &KeyCtx::default(), false, &mut found);
        !found.is_empty()
    }
}

/// Up to four contexts from a key.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct KeyCtx {
    items: [Option<Ctx>; 4],
    len: usize,
}

impl KeyCtx {
    fn push(&mut self, c: Ctx) {
        if self.len < 4 && !self.contains(&c) {
            self.items[self.len] = Some(c);
            self.len += 1;
        }
    }

    fn contains(&self, c: &Ctx) -> bool {
        self.items[..self.len].contains(&Some(*c))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn iter(&self) -> impl Iterator<Item = Ctx> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }
}

const DIGIT: u8 = 1;
const UPPER: u8 = 2;
const LOWER: u8 = 3;
const AT: u8 = 4;
const COLON: u8 = 5;
const PAREN_PLUS: u8 = 6;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_digit() {
            DIGIT
        } else if b.is_ascii_uppercase() {
            UPPER
        } else if b.is_ascii_lowercase() {
            LOWER
        } else if b == b'@' {
            AT
        } else if b == b':' {
            COLON
        } else if b == b'(' || b == b'+' {
            PAREN_PLUS
        } else {
            0
        };
        c += 1;
    }
    t
};

/// Skips a compound token (letters, digits, `.`, `-`, `_`, `:`) from `i`.
fn skip_compound(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && (is_alnum(b[i]) || matches!(b[i], b'.' | b'-' | b'_' | b':')) {
        i += 1;
    }
    i
}

/// Sorts findings and merges overlapping ones (the first keeps its detector).
pub(crate) fn merge(v: &mut Vec<Finding>) {
    if v.len() < 2 {
        return;
    }
    // On equal spans a shape detector (SSN, card...) wins over a context one (MRN,
    // account...), and anything over URL.
    let rank = |d: Detector| match d {
        Detector::Url => 2,
        Detector::Mrn | Detector::HealthPlan | Detector::Account | Detector::License => 1,
        _ => 0,
    };
    v.sort_unstable_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)).then(rank(a.det).cmp(&rank(b.det))));
    let mut w = 0;
    for r in 1..v.len() {
        if v[r].start < v[w].end {
            if v[r].end > v[w].end {
                v[w].end = v[r].end;
            }
        } else {
            w += 1;
            v[w] = v[r];
        }
    }
    v.truncate(w + 1);
}
