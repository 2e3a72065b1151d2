//! The text scanner: one pass over a string finds every PHI span.
//!
//! A single byte-class walk goes through the text token by token (no per-detector regex,
//! no separate pass for context words):
//!
//! - A run of letters that starts on a word boundary (after a non-alphanumeric byte, at
//!   a camelCase hump, or a `y` right after a digit as in `95yo`) may be a context word
//!   (`CONTEXT_WORDS`: `ssn`, `dob`, `patient`, `Dr.`, `mrn`, `member id`, `zip`,
//!   `version`...). Its length and first two letters are first tested against a bitmap
//!   built from the context words (most words stop there); then it is packed into an
//!   integer (5 bits a letter, case-folded) and looked up in a small table. Multi-word
//!   contexts (`date of service`, `years old`) and suffixed ones (`mr#`, `d.o.b.`) are
//!   the table entry of their first word plus a tail compared in place. A hit on word
//!   boundaries runs the small validator its context calls for on the bytes right after
//!   it (bare nine-digit SSNs, bare phone numbers, dates, ages, MRN/plan/account/licence
//!   tokens, names, URLs after `://`). The semantics: at each boundary, the longest
//!   pattern that also ends on a boundary; hits do not overlap.
//! - A token starting with a digit is tried against the shape validators (SSN, phone,
//!   card, IPv4, ZIP after a state code, street address, IPv6), each behind a cheap test
//!   of the digit run's length and the byte after it, and then skipped with its whole
//!   compound (`2024-01-15T10:00:00Z`, UUIDs, versions); `@` tries an email; `(` and `+`
//!   try a phone; `::` tries IPv6; a capitalised word tries a `First Last` dictionary
//!   name; a short hex word before `:` tries IPv6.
//! - Bytes a validator consumed (an email's domain, a name, an address, a compound) are
//!   still checked for context words, so a context is found wherever it sits.
//! - Runs of bytes that start nothing (lower-case letters inside a word, digits and
//!   separators inside a compound) are skipped eight at a time with word-sized bit
//!   arithmetic (SWAR, see `swar`).
//!
//! Context words from the config that do not fit the table (not starting with a letter,
//! or a first word longer than 12 letters) fall back to an Aho-Corasick pass; the
//! built-in list always fits.
//!
//! Findings are merged (overlaps become one span) and handed back sorted. Clean text,
//! the common case, costs the one walk and no allocation.

use super::detect::{self, Cidr, digit_run, end_ok, is_alnum};
use super::detector::Detector;
use super::keys::{KeyMatcher, normalize_key};
use super::names::Names;
use super::swar::{skip_lower, skip_plain, skip_quiet};
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
    // `95-year-old`: `year-old` after the `-` (a non-alphanumeric byte) covers it.
    ("year-old", Ctx::AgeAfter),
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
    // `://` (a URL) is found by the walk at the `:`.
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

/// The context words compiled for the walk: an open-addressing table from a packed,
/// lower-cased first word (at most [`MAX_WORD`] letters, see [`pack_letters`]) to the
/// patterns starting with it, each a tail (bytes after the word, compared ASCII
/// case-insensitively; empty for the bare word) and its context, longest tail first.
struct WordTable {
    /// By word length and first letter (`c & 31`): a bit for each second letter some
    /// word has (all bits for one-letter words).
    first: Vec<[u32; 32]>,
    /// `(packed word, entry index + 1)`; 0 = empty slot.
    slots: Vec<(u64, u32)>,
    shift: u32,
    entries: Vec<Vec<(Box<[u8]>, Ctx)>>,
}

/// Longest first word (in letters) the table holds.
const MAX_WORD: usize = 12;

/// Packs up to [`MAX_WORD`] ASCII letters, case-folded, 5 bits each (`a` = 1), so words
/// of different lengths never collide.
#[inline]
fn pack_letters(w: &[u8]) -> u64 {
    w.iter().fold(0u64, |k, &c| (k << 5) | u64::from(c & 31))
}

impl WordTable {
    fn build(patterns: &[(Vec<u8>, Vec<u8>, Ctx)]) -> WordTable {
        let mut keys: Vec<u64> = Vec::new();
        let mut entries: Vec<Vec<(Box<[u8]>, Ctx)>> = Vec::new();
        let mut first = vec![[0u32; 32]; MAX_WORD + 1];
        for (word, tail, ctx) in patterns {
            first[word.len()][usize::from(word[0] & 31)] |= match word.get(1) {
                Some(&c) => 1 << (c & 31),
                None => u32::MAX,
            };
            let k = pack_letters(word);
            let at = match keys.iter().position(|&x| x == k) {
                Some(at) => at,
                None => {
                    keys.push(k);
                    entries.push(Vec::new());
                    keys.len() - 1
                }
            };
            // The first spelling wins (built-in words before configured ones).
            if !entries[at].iter().any(|(t, _)| t[..] == tail[..]) {
                entries[at].push((tail.clone().into_boxed_slice(), *ctx));
            }
        }
        for e in &mut entries {
            e.sort_by_key(|(t, _)| std::cmp::Reverse(t.len()));
        }
        let size = (keys.len() * 4).next_power_of_two().max(256);
        let shift = 64 - size.trailing_zeros();
        let mut slots = vec![(0u64, 0u32); size];
        for (idx, &k) in keys.iter().enumerate() {
            let mut h = WordTable::hash(k, shift);
            while slots[h].1 != 0 {
                h = (h + 1) & (size - 1);
            }
            slots[h] = (k, idx as u32 + 1);
        }
        WordTable { first, slots, shift, entries }
    }

    /// Whether some word has the length and the first two letters of the letters `w`
    /// (a cheap pre-test).
    #[inline]
    fn may_have(&self, w: &[u8]) -> bool {
        w.len() <= MAX_WORD
            && self.first[w.len()][usize::from(w[0] & 31)] & (1 << (w.get(1).copied().unwrap_or(0) & 31)) != 0
    }

    #[inline]
    fn hash(k: u64, shift: u32) -> usize {
        (k.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> shift) as usize
    }

    /// The patterns whose first word packs to `k`.
    #[inline]
    fn get(&self, k: u64) -> Option<&[(Box<[u8]>, Ctx)]> {
        let mask = self.slots.len() - 1;
        let mut h = WordTable::hash(k, self.shift);
        loop {
            let (key, idx) = self.slots[h];
            if idx == 0 {
                return None;
            }
            if key == k {
                return Some(&self.entries[idx as usize - 1]);
            }
            h = (h + 1) & mask;
        }
    }
}

/// Context words that do not fit the [`WordTable`] (configured ones only).
struct Fallback {
    ac: AhoCorasick,
    ctx_of: Vec<Ctx>,
}

/// The compiled scanner.
pub(crate) struct Engine {
    on: [bool; Detector::COUNT],
    words: WordTable,
    fallback: Option<Fallback>,
    names: &'static Names,
    dictionary: bool,
    allow: Vec<Cidr>,
    /// The IPv4 networks of `allow` as `(network, mask)`.
    allow_v4: Vec<(u32, u32)>,
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
        // Split every pattern into its leading letters and the rest.
        let mut table: Vec<(Vec<u8>, Vec<u8>, Ctx)> = Vec::new();
        let mut rest: Vec<(String, Ctx)> = Vec::new();
        let builtin = CONTEXT_WORDS.iter().map(|(w, c)| ((*w).to_owned(), *c));
        let configured = spec.extra_context.iter().map(|(d, w)| (w.trim().to_owned(), Ctx::Id(*d)));
        for (w, c) in builtin.chain(configured) {
            let lw = w.to_ascii_lowercase().into_bytes();
            let n = lw.iter().take_while(|c| c.is_ascii_lowercase()).count();
            if (1..=MAX_WORD).contains(&n) {
                table.push((lw[..n].to_vec(), lw[n..].to_vec(), c));
            } else if !lw.is_empty() {
                rest.push((w, c));
            }
        }
        let fallback = if rest.is_empty() {
            None
        } else {
            let ac = AhoCorasick::builder()
                .ascii_case_insensitive(true)
                .match_kind(MatchKind::LeftmostLongest)
                .kind(Some(AhoCorasickKind::DFA))
                .build(rest.iter().map(|(w, _)| w))
                .map_err(|e| format!("context words: {e}"))?;
            Some(Fallback { ac, ctx_of: rest.iter().map(|(_, c)| *c).collect() })
        };
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
            words: WordTable::build(&table),
            fallback,
            names: Names::get(),
            dictionary: spec.dictionary,
            allow_v4: spec.allow.iter().filter_map(Cidr::v4_mask).collect(),
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
        let mut keep = |ctx: Ctx| {
            if !matches!(ctx, Ctx::Title | Ctx::For | Ctx::Url | Ctx::AgeAfter) {
                out.push(ctx);
            }
        };
        if let Some(f) = &self.fallback {
            for m in f.ac.find_iter(b) {
                let ctx = f.ctx_of[m.pattern().as_usize()];
                if hit_ok(b, m.start(), m.end(), ctx) {
                    keep(ctx);
                }
            }
        }
        let n = b.len();
        let mut p = 0;
        let mut ctx_end = 0;
        while p < n {
            if cls(b[p]) & LETTER == 0 {
                p += 1;
                continue;
            }
            // A run of letters: where it ends, and whether it has a camelCase hump.
            let s = p;
            let mut hump = false;
            p += 1;
            loop {
                p = skip_lower(b, p);
                if p < n && cls(b[p]) & UPPER != 0 {
                    hump |= cls(b[p - 1]) & LOWER != 0;
                    p += 1;
                    continue;
                }
                break;
            }
            let start = s >= ctx_end && may_start(if s > 0 { cls(b[s - 1]) } else { 0 }, cls(b[s]));
            if !hump {
                if start
                    && self.words.may_have(&b[s..p])
                    && let Some((e, ctx)) = self.ctx_packed(b, s, p, pack_letters(&b[s..p]))
                {
                    keep(ctx);
                    ctx_end = e;
                    p = p.max(e);
                }
                continue;
            }
            // `patientAge`, `admittedAt`: every hump may start a word too.
            let mut q = s;
            while q < p {
                let at = if q == s { start } else { q >= ctx_end && lower(b[q - 1]) && b[q].is_ascii_uppercase() };
                if at && let Some((e, ctx)) = self.ctx_at(b, q) {
                    keep(ctx);
                    ctx_end = e;
                    q = e;
                    continue;
                }
                q += 1;
            }
            p = p.max(q);
        }
        out
    }

    /// Scans `text`; appends merged findings to `out` (which must be empty).
    pub(crate) fn scan(&self, text: &str, key: &KeyCtx, allow_url: bool, out: &mut Vec<Finding>) {
        let b = text.as_bytes();
        let mut version = None;
        if let Some(f) = &self.fallback {
            for m in f.ac.find_iter(b) {
                let (s, e) = (m.start(), m.end());
                let ctx = f.ctx_of[m.pattern().as_usize()];
                if hit_ok(b, s, e, ctx) {
                    self.on_ctx(b, s, e, ctx, allow_url, &mut version, out);
                }
            }
        }
        if key.contains(&Ctx::Version) {
            // A `version` key: its value is a version (the context ends at byte 0).
            version = Some(0);
        }
        let mut w = Walk { allow_url, ctx_end: 0, version, ctx_out: out, shapes: Vec::new() };
        self.walk(b, &mut w);
        let Walk { mut version, mut shapes, .. } = w;
        // The order findings are pushed in decides ties in `merge`: context findings in
        // text order, then the key's, then the shapes.
        for ctx in key.iter().filter(|&c| c != Ctx::Version) {
            self.on_ctx(b, 0, 0, ctx, allow_url, &mut version, out);
        }
        out.append(&mut shapes);
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

    /// The longest context pattern starting at the letter at `s` that sits on word
    /// boundaries ([`hit_ok`]): its end and context. The first word may end where the
    /// letters end or at a camelCase hump inside them (`zipCode`, `birthDate`, `dobValue`).
    fn ctx_at(&self, b: &[u8], s: usize) -> Option<(usize, Ctx)> {
        let mut humps = [0usize; 8];
        let mut k = 0;
        let mut j = s + 1;
        while j < b.len() && b[j].is_ascii_alphabetic() {
            if k < humps.len() && lower(b[j - 1]) && b[j].is_ascii_uppercase() {
                humps[k] = j;
                k += 1;
            }
            j += 1;
        }
        let mut best = self.ctx_word(b, s, j);
        for &end in &humps[..k] {
            if let Some(h) = self.ctx_word(b, s, end)
                && best.is_none_or(|(e, _)| h.0 > e)
            {
                best = Some(h);
            }
        }
        best
    }

    /// The longest context pattern whose first word is `b[s..end]`, on word boundaries.
    #[inline]
    fn ctx_word(&self, b: &[u8], s: usize, end: usize) -> Option<(usize, Ctx)> {
        if !self.words.may_have(&b[s..end]) {
            return None;
        }
        self.ctx_packed(b, s, end, pack_letters(&b[s..end]))
    }

    /// As [`Engine::ctx_word`] with the word already packed.
    #[inline]
    fn ctx_packed(&self, b: &[u8], s: usize, end: usize, key: u64) -> Option<(usize, Ctx)> {
        for (tail, ctx) in self.words.get(key)? {
            let e = end + tail.len();
            if b.get(end..e).is_some_and(|t| t.eq_ignore_ascii_case(tail)) && hit_ok(b, s, e, *ctx) {
                return Some((e, *ctx));
            }
        }
        None
    }

    /// A context hit at `s..e`: runs its validator; later hits start at `e` or after.
    fn hit(&self, b: &[u8], s: usize, e: usize, ctx: Ctx, w: &mut Walk<'_>) {
        w.ctx_end = e;
        self.on_ctx(b, s, e, ctx, w.allow_url, &mut w.version, w.ctx_out);
    }

    /// `://` at `i`: a URL context.
    fn url_ctx(&self, b: &[u8], i: usize, w: &mut Walk<'_>) {
        if i >= w.ctx_end {
            self.hit(b, i, i + 3, Ctx::Url, w);
        }
    }

    /// Context words inside `b[from..to]`, bytes the walk skips as part of a token or a
    /// finding (an email's domain, a name, a camelCase word).
    fn ctx_region(&self, b: &[u8], from: usize, to: usize, w: &mut Walk<'_>) {
        let mut p = from.max(w.ctx_end);
        while p < to {
            let c = cls(b[p]);
            if c & LETTER != 0 {
                if p >= w.ctx_end
                    && may_start(if p > 0 { cls(b[p - 1]) } else { 0 }, c)
                    && let Some((e, ctx)) = self.ctx_at(b, p)
                {
                    self.hit(b, p, e, ctx, w);
                    p = e;
                    continue;
                }
            } else if b[p] == b':' && b.get(p + 1..p + 3) == Some(b"//") {
                self.url_ctx(b, p, w);
            }
            p += 1;
        }
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
        version: &mut Option<usize>,
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
            Ctx::Version => *version = Some(version.map_or(e, |v| v.max(e))),
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

    /// The byte-class walk (see the module docs).
    fn walk(&self, b: &[u8], w: &mut Walk<'_>) {
        let n = b.len();
        let mut i = 0;
        // Tested most frequent first, as branches (a jump table mispredicts more).
        while i < n {
            let k = KIND[usize::from(b[i])];
            if k == K_NONE {
                i += 1;
            } else if k == K_LETTER {
                i = self.letters(b, i, w);
            } else if k == K_DIGIT {
                i = if i > 0
                    && (is_alnum(b[i - 1]) || (matches!(b[i - 1], b'.' | b'-' | b'_') && i > 1 && is_alnum(b[i - 2])))
                {
                    self.compound(b, i, w)
                } else {
                    self.number(b, i, w)
                };
            } else {
                i = self.special(b, i, w);
            }
        }
    }

    /// `@`, `:`, `(` or `+` at `i`: an email, an IPv6 address after `::`, a URL at `://`,
    /// a phone number. Returns where the walk goes on.
    #[inline(never)]
    fn special(&self, b: &[u8], i: usize, w: &mut Walk<'_>) -> usize {
        match b[i] {
            b'@' => {
                if self.on(Detector::Email)
                    && let Some((s, e)) = detect::email(b, i)
                {
                    self.push(&mut w.shapes, s, e, Detector::Email);
                    self.ctx_region(b, i + 1, e, w);
                    return e;
                }
            }
            b':' => {
                if b.get(i + 1) == Some(&b':')
                    && (i == 0 || !(is_alnum(b[i - 1]) || b[i - 1] == b']'))
                    && self.on(Detector::Ip)
                    && let Some((e, a)) = detect::ipv6(b, i)
                {
                    self.ip_found(&mut w.shapes, i, e, a.into());
                    self.ctx_region(b, i, e, w);
                    return e;
                }
                if b.get(i + 1..i + 3) == Some(b"//") {
                    self.url_ctx(b, i, w);
                }
            }
            _ => {
                // `(` or `+`.
                if (i == 0 || !is_alnum(b[i - 1]))
                    && b.get(i + 1).is_some_and(u8::is_ascii_digit)
                    && self.on(Detector::Phone)
                    && let Some(e) = detect::phone_formatted(b, i)
                {
                    self.push(&mut w.shapes, i, e, Detector::Phone);
                    return e;
                }
            }
        }
        i + 1
    }

    /// A word starting with a letter at `i`: its context word, a `First Last` name, or a
    /// hex group starting an IPv6 address; else skipped whole. Returns where the walk
    /// goes on.
    fn letters(&self, b: &[u8], i: usize, w: &mut Walk<'_>) -> usize {
        let n = b.len();
        let first = cls(b[i]);
        if first & LOWER != 0 {
            // The common case first: a lower-case word ending the token. Only its
            // context word and a hex group before `:` (IPv6) matter.
            let j = skip_lower(b, i + 1);
            let next = if j < n { cls(b[j]) } else { 0 };
            if next & ALNUM == 0 {
                if i >= w.ctx_end
                    && (i == 0 || cls(b[i - 1]) & ALNUM == 0)
                    && self.words.may_have(&b[i..j])
                    && let Some((e, ctx)) = self.ctx_packed(b, i, j, pack_letters(&b[i..j]))
                {
                    self.hit(b, i, e, ctx, w);
                }
                if j - i <= 4 && j < n && b[j] == b':' {
                    return self.hex_ipv6(b, i, j, w);
                }
                return j;
            }
        }
        // The letters (`i..lend`): runs of lower case, a capital after a lower-case
        // letter is a camelCase hump where a context word may start (`inner`).
        let mut j = i + 1;
        let mut inner = false;
        loop {
            j = skip_lower(b, j);
            if j < n && cls(b[j]) & UPPER != 0 {
                inner |= cls(b[j - 1]) & LOWER != 0;
                j += 1;
                continue;
            }
            break;
        }
        let lend = j;
        // The rest of the alphanumeric run (`lend..j`): only a hump or a `y` after a
        // digit (`95yo`) may start a context word there.
        while j < n && cls(b[j]) & DIGIT != 0 {
            j = skip_quiet(b, j);
            // An upper-case letter or a `y` (or the end of the run).
            while j < n && cls(b[j]) & LETTER != 0 {
                inner |= may_start(cls(b[j - 1]), cls(b[j]));
                j = skip_quiet(b, j + 1);
            }
        }
        if i >= w.ctx_end && may_start(if i > 0 { cls(b[i - 1]) } else { 0 }, cls(b[i])) {
            let hit = if inner {
                self.ctx_at(b, i)
            } else if self.words.may_have(&b[i..lend]) {
                self.ctx_packed(b, i, lend, pack_letters(&b[i..lend]))
            } else {
                None
            };
            if let Some((e, ctx)) = hit {
                self.hit(b, i, e, ctx, w);
            }
        }
        if inner {
            self.ctx_region(b, i + 1, j, w);
        }
        if b[i].is_ascii_uppercase()
            && (i == 0
                || matches!(
                    b[i - 1],
                    b' ' | b'\t' | b'"' | b'\'' | b'(' | b'=' | b':' | b',' | b';' | b'[' | b'{' | b'>' | b'\n'
                ))
            && self.dictionary
            && self.on(Detector::Name)
            && let Some(end) = self.name_pair(b, i)
        {
            self.push(&mut w.shapes, i, end, Detector::Name);
            self.ctx_region(b, j, end, w);
            return end;
        }
        if j - i <= 4 && b.get(j) == Some(&b':') {
            return self.hex_ipv6(b, i, j, w);
        }
        j
    }

    /// The word `b[i..j]` (at most four bytes, `:` after it): an IPv6 address starting
    /// with it if it is hex. Returns where the walk goes on.
    fn hex_ipv6(&self, b: &[u8], i: usize, j: usize, w: &mut Walk<'_>) -> usize {
        if b[i..j].iter().all(u8::is_ascii_hexdigit)
            && (i == 0 || !is_alnum(b[i - 1]) && b[i - 1] != b':')
            && self.on(Detector::Ip)
            && let Some((e, a)) = detect::ipv6(b, i)
        {
            self.ip_found(&mut w.shapes, i, e, a.into());
            self.ctx_region(b, j, e, w);
            return e;
        }
        j
    }

    fn ip_found(&self, out: &mut Vec<Finding>, s: usize, e: usize, a: std::net::IpAddr) {
        let v4 = match a {
            std::net::IpAddr::V4(v4) => Some(v4),
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        };
        let allowed = match v4 {
            Some(v4) => self.allow_v4.iter().any(|&(net, mask)| u32::from(v4) & mask == net),
            None => self.allow.iter().any(|c| c.contains(a)),
        };
        if !allowed {
            self.push(out, s, e, Detector::Ip);
        }
    }

    /// A token starting with a digit at a word start: try every numeric shape, then skip
    /// the whole compound token.
    fn number(&self, b: &[u8], i: usize, w: &mut Walk<'_>) -> usize {
        let run = digit_run(b, i);
        let next = b.get(i + run).copied().unwrap_or(0);
        let out = &mut w.shapes;
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
        // A card is 13 to 19 digits, or groups of four then four or six digits (not a
        // date such as `2024-01-15`).
        if ((13..=19).contains(&run)
            || (run == 4
                && (next == b' ' || next == b'-')
                && b.get(i + 5..i + 9).is_some_and(|g| g.iter().all(u8::is_ascii_digit))))
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
            let versioned = w.version.is_some_and(|v| v <= i && i - v <= 12);
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
            self.ctx_region(b, i + run, e, w);
            return e;
        }
        if run <= 4
            && (next == b':' || next.is_ascii_hexdigit())
            && self.on(Detector::Ip)
            && let Some((e, a)) = detect::ipv6(b, i)
        {
            self.ip_found(out, i, e, a.into());
            self.ctx_region(b, i + run, e, w);
            return e;
        }
        self.compound(b, i, w)
    }

    /// Skips a compound token (letters, digits, `.`, `-`, `_`, `:`) from the digit at `i`,
    /// looking up the context words that start inside it (`build-1.2-patient...`).
    fn compound(&self, b: &[u8], i: usize, w: &mut Walk<'_>) -> usize {
        let n = b.len();
        let mut p = i;
        loop {
            // Digits, `.`, `-`, `_`, `:`: nothing starts here.
            p = skip_plain(b, p);
            if p >= n || cls(b[p]) & LETTER == 0 {
                break;
            }
            // A letter (`p > i`: the token starts with a digit): a context word may start
            // here after a separator, or at a `y` after a digit.
            if p >= w.ctx_end
                && may_start(cls(b[p - 1]), cls(b[p]))
                && let Some((e, ctx)) = self.ctx_at(b, p)
            {
                self.hit(b, p, e, ctx, w);
            }
            // The rest of its alphanumeric run: only a camelCase hump or a `y` after a
            // digit may start a word there.
            p = skip_quiet(b, p + 1);
            while p < n && cls(b[p]) & LETTER != 0 {
                if p >= w.ctx_end
                    && may_start(cls(b[p - 1]), cls(b[p]))
                    && let Some((e, ctx)) = self.ctx_at(b, p)
                {
                    self.hit(b, p, e, ctx, w);
                }
                p = skip_quiet(b, p + 1);
            }
        }
        // `1.2://`: the compound ends at the `/` of a URL context.
        if p < n && b[p] == b'/' && b[p - 1] == b':' && b.get(p + 1) == Some(&b'/') {
            self.url_ctx(b, p - 1, w);
        }
        p
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
    /// No context.
    pub(crate) const EMPTY: KeyCtx = KeyCtx { items: [None; 4], len: 0 };

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

/// The state of one scan: where the last context hit ended (hits do not overlap), the
/// end of the last version word, and the findings (context ones straight into the
/// caller's vector, shapes apart until the walk ends).
struct Walk<'o> {
    allow_url: bool,
    ctx_end: usize,
    version: Option<usize>,
    ctx_out: &'o mut Vec<Finding>,
    shapes: Vec<Finding>,
}

// Byte classes (bits). `Y` marks `y`/`Y`, which may start an age context right after a
// digit (`95yo`); `prev << 1 & cur & (UPPER | Y)` is then non-zero exactly for a
// camelCase hump (LOWER << 1 == UPPER) and for a digit before a `y` (DIGIT << 1 == Y).
const LOWER: u8 = 1;
const UPPER: u8 = 2;
const DIGIT: u8 = 4;
const Y: u8 = 8;
const LETTER: u8 = LOWER | UPPER;
const ALNUM: u8 = LETTER | DIGIT;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let mut v = 0;
        if b.is_ascii_lowercase() {
            v |= LOWER;
        }
        if b.is_ascii_uppercase() {
            v |= UPPER;
        }
        if b.is_ascii_digit() {
            v |= DIGIT;
        }
        if b == b'y' || b == b'Y' {
            v |= Y;
        }
        t[c] = v;
        c += 1;
    }
    t
};

#[inline]
fn cls(c: u8) -> u8 {
    CLASS[usize::from(c)]
}

/// Whether a letter of class `cur` after a byte of class `prev` (0 at the start) may
/// start a context word; [`hit_ok`] has the last word.
#[inline]
fn may_start(prev: u8, cur: u8) -> bool {
    prev & ALNUM == 0 || (prev << 1) & cur & (UPPER | Y) != 0
}

// What the walk does at a byte.
const K_NONE: u8 = 0;
const K_DIGIT: u8 = 1;
const K_LETTER: u8 = 2;
/// `@`, `:`, `(`, `+`.
const K_SPECIAL: u8 = 3;

static KIND: [u8; 256] = {
    let mut t = [K_NONE; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = if b.is_ascii_digit() {
            K_DIGIT
        } else if b.is_ascii_alphabetic() {
            K_LETTER
        } else if b == b'@' || b == b':' || b == b'(' || b == b'+' {
            K_SPECIAL
        } else {
            K_NONE
        };
        c += 1;
    }
    t
};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::redact::{Config, Redactor};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// The context-word semantics spelled out by brute force: at `s`, the longest pattern
    /// of [`CONTEXT_WORDS`] matching ASCII case-insensitively that sits on word boundaries.
    fn reference(b: &[u8], s: usize) -> Option<(usize, Ctx)> {
        let mut best: Option<(usize, Ctx)> = None;
        for (w, c) in CONTEXT_WORDS {
            let e = s + w.len();
            if b.get(s..e).is_some_and(|t| t.eq_ignore_ascii_case(w.as_bytes()))
                && hit_ok(b, s, e, *c)
                && best.is_none_or(|(be, _)| e > be)
            {
                best = Some((e, *c));
            }
        }
        best
    }

    /// Random text made of context words (and their prefixes) in random case, glued or
    /// separated, with digits, our own tokens and punctuation around them.
    fn noisy_text(rng: &mut StdRng) -> String {
        let mut s = String::new();
        for _ in 0..rng.random_range(1..10) {
            match rng.random_range(0..10) {
                0..=4 => {
                    let w = CONTEXT_WORDS[rng.random_range(0..CONTEXT_WORDS.len())].0;
                    let w = if rng.random_bool(0.2) { &w[..rng.random_range(1..=w.len())] } else { w };
                    let w: String = match rng.random_range(0..4) {
                        0 => w.to_owned(),
                        1 => w.to_ascii_uppercase(),
                        2 => w[..1].to_ascii_uppercase() + &w[1..],
                        _ => w.chars().map(|c| if rng.random_bool(0.5) { c.to_ascii_uppercase() } else { c }).collect(),
                    };
                    s.push_str(&w);
                }
                5 => s.push_str(&rng.random_range(0..1000).to_string()),
                6 => s.push_str(["x", "ok", "Id", "foo", "REDACTED:", "[", "nt", "s"][rng.random_range(0..8)]),
                _ => {}
            }
            if rng.random_bool(0.7) {
                s.push_str([" ", "-", ".", "#", "/", "'", ":", "_", "=", "  ", ", "][rng.random_range(0..11)]);
            }
        }
        s
    }

    #[test]
    fn word_table_agrees_with_brute_force() {
        let r = Redactor::default_mask();
        let e = &r.engine;
        assert!(e.fallback.is_none(), "every built-in context word fits the word table");
        let mut rng = StdRng::seed_from_u64(7);
        let mut checked = 0;
        for _ in 0..20_000 {
            let t = noisy_text(&mut rng);
            let b = t.as_bytes();
            for s in 0..b.len() {
                let c = cls(b[s]);
                if c & LETTER == 0 || !may_start(if s > 0 { cls(b[s - 1]) } else { 0 }, c) {
                    // Where the walk never looks, no pattern can sit on boundaries.
                    assert!(c & LETTER == 0 || reference(b, s).is_none(), "{t:?} at {s}");
                    continue;
                }
                assert_eq!(e.ctx_at(b, s), reference(b, s), "{t:?} at {s}");
                checked += 1;
            }
        }
        assert!(checked > 50_000, "{checked}");
    }

    #[test]
    fn contexts_are_found_inside_tokens_the_walk_skips() {
        let r = Redactor::default_mask();
        for (input, want) in [
            // Inside a compound token, after a separator.
            ("2024-01-15T10:00:00Z-ssn 123456789", "2024-01-15T10:00:00Z-ssn [REDACTED:SSN]"),
            ("build-1.2-dob 1954-03-02", "build-1.2-dob [REDACTED:DATE]"),
            // `y` right after a digit, camelCase humps.
            ("patient is 95yo today", "patient is [REDACTED:AGE]yo today"),
            ("userDob=1950-01-01 userSsn=123456789", "userDob=[REDACTED:DATE] userSsn=[REDACTED:SSN]"),
            // Suffixed and multi-word contexts.
            ("acct# 12345678 mr# 7654321", "acct# [REDACTED:ACCOUNT] mr# [REDACTED:MRN]"),
            ("Date of Service 03/04/2021", "Date of Service [REDACTED:DATE]"),
            // A longer pattern that does not end on a boundary no longer hides a shorter one.
            ("date of birthday 03/04/1950", "date of birthday [REDACTED:DATE]"),
            // A URL at `://` ending a compound.
            ("1.2://host/x?first=Ann ok", "1.2://host/x?first=[REDACTED:URL] ok"),
            // Not contexts: glued to a longer word, or our own tokens.
            ("SSNumber 123456789", "SSNumber 123456789"),
            ("[REDACTED:SSN] 123456789", "[REDACTED:SSN] 123456789"),
        ] {
            assert_eq!(r.redact_str(input), want, "{input}");
        }
    }

    #[test]
    fn allow_list_covers_ipv4_and_mapped_addresses() {
        let r = Redactor::default_mask();
        assert_eq!(
            r.redact_str("a ::ffff:10.1.1.1 b ::ffff:203.0.113.9 c fe80::1 d 2001:db8::1 e 10.0.0.1 f 203.0.113.9"),
            "a ::ffff:10.1.1.1 b [REDACTED:IP] c fe80::1 d [REDACTED:IP] e 10.0.0.1 f [REDACTED:IP]"
        );
        assert_eq!(r.redact_str("g 172.31.255.255 h 172.32.0.1"), "g 172.31.255.255 h [REDACTED:IP]");
    }

    #[test]
    fn context_words_that_do_not_fit_the_table_still_work() {
        let cfg: Config = serde_json::from_str(
            r##"{"detectors":{"account":{"context_words":["#billing", "identificationnumber", "Billing Ref"]}}}"##,
        )
        .unwrap();
        let r = Redactor::new(&cfg).unwrap();
        assert!(r.engine.fallback.is_some());
        for (input, want) in [
            ("#billing 99887766", "#billing [REDACTED:ACCOUNT]"),
            ("identificationnumber: 99887766", "identificationnumber: [REDACTED:ACCOUNT]"),
            ("billing ref 99887766", "billing ref [REDACTED:ACCOUNT]"),
            ("rebilling 99887766", "rebilling 99887766"),
        ] {
            assert_eq!(r.redact_str(input), want, "{input}");
        }
        let r = Redactor::default_mask();
        assert_eq!(r.redact_str("billing ref 99887766"), "billing ref 99887766");
    }
}
