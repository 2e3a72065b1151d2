//! Stable seeded fuzzing of the redactor (runs in every `cargo test`; the open-ended
//! libFuzzer target is `collector/fuzz/fuzz_targets/redact.rs`). Mutates corpus lines
//! byte-wise (flips, inserts of interesting bytes, truncation, splicing), feeds the raw
//! bytes through lossy UTF-8 and checks: no panic, text output keeps every byte that no
//! finding covers, JSON output parses, and a second pass changes nothing.

#[path = "redact_support/corpus.rs"]
mod corpus;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use warden_collector::redact::{Config, Line, Redactor};

const INTERESTING: &[&[u8]] = &[
    b"@",
    b":",
    b"::",
    b"-",
    b".",
    b"(",
    b"+1",
    b"\"",
    b"\\",
    b"{",
    b"}",
    b"[",
    b"]",
    b"%",
    b"%4",
    b"://",
    b"?",
    b"=",
    b"&",
    b"ssn ",
    b"dob ",
    b"patient=",
    b"Dr. ",
    b"for ",
    b"age ",
    b"mrn ",
    b"zip ",
    b"version ",
    b"\xff",
    b"\xc3",
    b"\xe2\x82",
    b"\\u00",
    b"\\ud800",
    b"999",
    b"0",
    b" ",
    b"\t",
    b"\r",
    b"John Smith",
    b"123-45-6789",
    b"4111111111111111",
];

fn mutate(rng: &mut StdRng, base: &[u8], other: &[u8]) -> Vec<u8> {
    let mut v = base.to_vec();
    for _ in 0..rng.random_range(1..8) {
        let at = if v.is_empty() { 0 } else { rng.random_range(0..=v.len()) };
        match rng.random_range(0..6) {
            0 if at < v.len() => v[at] ^= 1 << rng.random_range(0..8),
            1 => {
                let ins = INTERESTING[rng.random_range(0..INTERESTING.len())];
                v.splice(at..at, ins.iter().copied());
            }
            2 => v.truncate(at),
            3 if !other.is_empty() => {
                let s = rng.random_range(0..other.len());
                v.splice(at..at, other[s..].iter().take(40).copied());
            }
            4 if at < v.len() => {
                v.remove(at);
            }
            _ => v.insert(at, rng.random()),
        }
    }
    v
}

fn fuzz(r: &Redactor, seed: u64, rounds: usize) {
    let mut g = corpus::Gen::new(seed);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut prev = g.line(0.5, 0.5).line;
    for _ in 0..rounds {
        let base = g.line(0.5, 0.5).line;
        let bytes = mutate(&mut rng, base.as_bytes(), prev.as_bytes());
        let text = String::from_utf8_lossy(&bytes);
        match r.redact_line(&text) {
            Line::Text(t) => {
                // Bytes outside findings are kept, in order.
                let found = r.findings(&text);
                let mut rebuilt = String::new();
                let mut last = 0;
                for f in &found {
                    assert!(f.start < f.end && f.end <= text.len() && f.start >= last, "bad finding {f:?} in {text:?}");
                    assert!(text.is_char_boundary(f.start) && text.is_char_boundary(f.end));
                    rebuilt.push_str(&text[last..f.start]);
                    last = f.end;
                }
                rebuilt.push_str(&text[last..]);
                let mut kept = String::new();
                let mut rest: &str = &t;
                // Every kept segment appears in the output in order.
                let mut last = 0;
                for f in &found {
                    let seg = &text[last..f.start];
                    let k = rest.find(seg).unwrap_or_else(|| panic!("segment {seg:?} lost: {text:?} -> {t:?}"));
                    kept.push_str(seg);
                    rest = &rest[k + seg.len()..];
                    last = f.end;
                }
                assert!(rest.ends_with(&text[last..]), "tail lost: {text:?} -> {t:?}");
                assert_eq!(r.redact_str(&t), t, "not idempotent: {text:?}");
            }
            Line::Json(j) => {
                serde_json::from_str::<serde_json::Value>(&j)
                    .unwrap_or_else(|e| panic!("invalid JSON ({e}) from {text:?}: {j}"));
                assert_eq!(r.redact_json_line(&j).as_deref(), Some(j.as_str()), "JSON not idempotent: {text:?}");
            }
            Line::Dropped => {}
        }
        prev = base;
    }
}

#[test]
fn fuzz_default_mask() {
    fuzz(&Redactor::default_mask(), 0xf022, 20_000);
}

#[test]
fn fuzz_hash_and_drop_actions() {
    let cfg: Config = serde_json::from_str(
        r#"{"action":"hash","hash_key_env":"K","detectors":{"email":{"action":"drop_field"},"card":{"action":"drop_record"},"mrn":{"patterns":["MRN-\\d+"]}}}"#,
    )
    .unwrap();
    let r = Redactor::with_env(&cfg, &|_| Some(b"fuzz-key-0123456789".to_vec())).unwrap();
    fuzz(&r, 0xf023, 10_000);
}
