//! Person-name dictionaries: the 1990 US Census first-name and surname lists shipped in
//! `collector/data/names/` (public domain; see the README there).
//!
//! Names are packed into a `u128` (5 bits per letter, up to 25 letters) so a lookup is a
//! hash of one integer with no allocation; the sets are built once per process.
//!
//! The rule for using them (the caller in `scan.rs` applies it): a dictionary word alone
//! is never a name, because many surnames are common words (BROWN, WHITE, YOUNG, KING,
//! LONG, POST, CHECK...). A name is `First Last` (both capitalised, `First` in a
//! first-name list and not in [`COMMON_FIRST`], `Last` in the surname list, an optional
//! middle initial between), or a capitalised word after a context (`patient=`, `Dr.`,
//! `Mr./Mrs./Ms.`, `for`) that is in either list.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;

const MALE_FIRST: &str = include_str!("../../data/names/dist.male.first");
const FEMALE_FIRST: &str = include_str!("../../data/names/dist.female.first");
const ALL_LAST: &str = include_str!("../../data/names/dist.all.last");

/// First names that are everyday words (or months and days) and would turn phrases such
/// as `Will Check` or `May Post` into names; they count only with a context.
pub const COMMON_FIRST: &[&str] = &[
    "WILL",
    "MAY",
    "MARK",
    "LONG",
    "OK",
    "PAGE",
    "MAJOR",
    "GRANT",
    "BILL",
    "ROSE",
    "SUMMER",
    "JUNE",
    "APRIL",
    "AUGUST",
    "JANUARY",
    "SUNDAY",
    "CHANCE",
    "HOPE",
    "JOY",
    "FAITH",
    "DAWN",
    "ROBIN",
    "FOREST",
    "LANE",
    "NORMAL",
    "CHRISTIAN",
    "KING",
    "YOUNG",
    "MAX",
    "MIN",
    "SON",
    "DEAN",
    "LOYD",
    "GUY",
    "SEE",
    "SO",
    "AL",
    "ED",
    "TO",
    "IN",
    "AN",
    "ON",
    "AS",
    "AT",
    "GALE",
    "STORM",
    "SKY",
    "STAR",
    "MAJOR",
    "PRINCE",
    "AUTUMN",
    "WINTER",
    "SPRING",
    "RAY",
    "JACK",
    "PAT",
    "SOL",
    "ERROR",
    "SAGE",
    "SHARON",
    "LOUIS",
    "CLIFF",
    "ROCK",
    "HUNTER",
    "WALKER",
    "TERRY",
    "SHIRLEY",
    "CARROL",
    "DAISY",
    "HEATHER",
    "HOLLY",
    "IVY",
    "LILY",
    "VIOLET",
    "GINGER",
    "PEARL",
    "RUBY",
    "CRYSTAL",
    "AMBER",
    "JADE",
    "ANGEL",
];

#[derive(Default)]
struct MixHasher(u64);

impl Hasher for MixHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u128(&mut self, v: u128) {
        let x = (v as u64) ^ ((v >> 64) as u64).rotate_left(29);
        self.0 = (x ^ (x >> 31)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

type Set = HashSet<u128, BuildHasherDefault<MixHasher>>;

/// Packs an ASCII word (letters only, either case, 1..=25 letters) into a key; `None`
/// for anything else.
pub fn pack(word: &[u8]) -> Option<u128> {
    if word.is_empty() || word.len() > 25 {
        return None;
    }
    let mut k: u128 = 0;
    for &b in word {
        if !b.is_ascii_alphabetic() {
            return None;
        }
        k = (k << 5) | u128::from((b | 0x20) - b'a' + 1);
    }
    Some(k)
}

/// The dictionaries.
pub struct Names {
    first: Set,
    last: Set,
    common_first: Set,
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Names").field("first", &self.first.len()).field("last", &self.last.len()).finish()
    }
}

fn load(set: &mut Set, text: &str) {
    for line in text.lines() {
        if let Some(k) = pack(line.trim().as_bytes()) {
            set.insert(k);
        }
    }
}

impl Names {
    /// The shared dictionaries (built on first use, about 95,000 names).
    pub fn get() -> &'static Names {
        static NAMES: OnceLock<Names> = OnceLock::new();
        NAMES.get_or_init(|| {
            let mut first = Set::default();
            load(&mut first, MALE_FIRST);
            load(&mut first, FEMALE_FIRST);
            let mut last = Set::default();
            load(&mut last, ALL_LAST);
            let mut common_first = Set::default();
            for w in COMMON_FIRST {
                common_first.extend(pack(w.as_bytes()));
            }
            Names { first, last, common_first }
        })
    }

    /// Whether `word` is a Census first name.
    pub fn is_first(&self, word: &[u8]) -> bool {
        pack(word).is_some_and(|k| self.first.contains(&k))
    }

    /// Whether `word` is a first name that can start a `First Last` pair without context.
    pub fn is_pair_first(&self, word: &[u8]) -> bool {
        pack(word).is_some_and(|k| self.first.contains(&k) && !self.common_first.contains(&k))
    }

    /// Whether `word` is a Census surname.
    pub fn is_last(&self, word: &[u8]) -> bool {
        pack(word).is_some_and(|k| self.last.contains(&k))
    }

    /// Whether `word` is in either list.
    pub fn is_any(&self, word: &[u8]) -> bool {
        pack(word).is_some_and(|k| self.first.contains(&k) || self.last.contains(&k))
    }

    /// Number of first names and surnames loaded.
    pub fn sizes(&self) -> (usize, usize) {
        (self.first.len(), self.last.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionaries_load_and_look_up_case_insensitively() {
        let n = Names::get();
        let (f, l) = n.sizes();
        assert!(f > 5000 && l > 88000, "{f} {l}");
        assert!(n.is_first(b"John") && n.is_first(b"MARY") && n.is_last(b"Smith") && n.is_last(b"brown"));
        assert!(!n.is_first(b"Kubernetes") && !n.is_last(b"Started") && !n.is_any(b"a1"));
        assert!(n.is_first(b"Will") && !n.is_pair_first(b"Will") && n.is_pair_first(b"Robert"));
        assert_eq!(pack(b""), None);
        assert_eq!(pack(&[b'a'; 26]), None);
        assert_ne!(pack(b"ab"), pack(b"ba"));
    }
}
