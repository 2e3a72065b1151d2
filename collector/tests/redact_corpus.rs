//! The labelled corpus test: 20,000 seeded lines plus the checked-in sample
//! (`collector/data/corpus/sample.jsonl`) through the default redactor, with recall and
//! precision per detector asserted against the thresholds of the redaction issue.
//!
//! Recall: a text-line label counts as found when the redactor's findings cover its whole
//! span; a JSON-line label when one occurrence of its value is gone from the output. Precision
//! (text lines): a finding is right when it overlaps a labelled span. Clean lines must
//! come out byte-for-byte unchanged. The table is printed; run with `--nocapture` to see
//! it on success.

#[path = "redact_support/corpus.rs"]
mod corpus;

use corpus::{DETECTORS, Gen, Labelled};
use std::collections::BTreeMap;
use warden_collector::redact::{Line, Redactor};

const SEED: u64 = 0x5eed_2024;
const LINES: usize = 20_000;

#[derive(Default)]
struct Score {
    labels: usize,
    found: usize,
    findings: usize,
    right: usize,
    missed: Vec<String>,
}

fn output(r: &Redactor, line: &str) -> String {
    match r.redact_line(line) {
        Line::Text(t) => t.into_owned(),
        Line::Json(j) => j,
        Line::Dropped => String::new(),
    }
}

#[test]
fn corpus_recall_precision_and_clean_lines() {
    let r = Redactor::default_mask();
    let mut g = Gen::new(SEED);
    let mut lines: Vec<Labelled> = (0..LINES).map(|i| g.line(if i % 2 == 0 { 1.0 } else { 0.0 }, 0.35)).collect();
    let sample = include_str!("../data/corpus/sample.jsonl");
    let n_sample = sample.lines().count();
    for (i, rec) in sample.lines().enumerate() {
        lines.push(corpus::from_sample_json(rec).unwrap_or_else(|| panic!("sample.jsonl line {}: malformed", i + 1)));
    }
    assert!(n_sample >= 200, "the checked-in sample has {n_sample} lines");

    let mut score: BTreeMap<&str, Score> = DETECTORS.iter().map(|d| (*d, Score::default())).collect();
    let (mut clean, mut clean_ok) = (0usize, 0usize);
    let mut clean_bad = Vec::new();
    for l in &lines {
        let out = output(&r, &l.line);
        if l.phi.is_empty() {
            clean += 1;
            if out == l.line {
                clean_ok += 1;
            } else if clean_bad.len() < 15 {
                clean_bad.push(format!("  in:  {}\n  out: {out}", l.line));
            }
        }
        if l.json {
            for p in &l.phi {
                let s = score.get_mut(p.det).unwrap();
                s.labels += 1;
                // Found when an occurrence of the value is gone (short values such as an
                // age may also occur inside other numbers on the line).
                if out.matches(p.value.as_str()).count() < l.line.matches(p.value.as_str()).count() {
                    s.found += 1;
                } else if s.missed.len() < 8 {
                    s.missed.push(format!("  [json] {}\n     out {out}", p.value));
                }
            }
            continue;
        }
        let found = r.findings(&l.line);
        for p in &l.phi {
            let (a, b) = p.span.expect("text labels have spans");
            let s = score.get_mut(p.det).unwrap();
            s.labels += 1;
            // Covered when the union of findings spans a..b.
            let mut at = a;
            for f in &found {
                if f.start <= at && f.end > at {
                    at = f.end;
                }
            }
            if at >= b {
                s.found += 1;
            } else if s.missed.len() < 8 {
                s.missed.push(format!("  {:?} in: {}\n     out: {out}", p.value, l.line));
            }
        }
        for f in &found {
            let s = score.get_mut(f.det.name()).unwrap();
            s.findings += 1;
            if l.phi.iter().any(|p| p.span.is_some_and(|(a, b)| f.start < b && a < f.end)) {
                s.right += 1;
            }
        }
    }

    let pct = |a: usize, b: usize| if b == 0 { 100.0 } else { 100.0 * a as f64 / b as f64 };
    let mut table = format!(
        "\nPHI corpus: {} lines ({} generated, seed {SEED:#x}, + {n_sample} sample)\n{:<12} {:>7} {:>9} {:>9} {:>10}\n",
        lines.len(),
        LINES,
        "detector",
        "labels",
        "recall%",
        "findings",
        "precision%"
    );
    for (d, s) in &score {
        table.push_str(&format!(
            "{d:<12} {:>7} {:>9.2} {:>9} {:>10.2}\n",
            s.labels,
            pct(s.found, s.labels),
            s.findings,
            pct(s.right, s.findings)
        ));
    }
    table.push_str(&format!("clean lines unchanged: {clean_ok}/{clean} = {:.2}%\n", pct(clean_ok, clean)));
    eprintln!("{table}");

    let mut failures = Vec::new();
    for (d, s) in &score {
        let need = match *d {
            "ssn" | "phone" | "email" | "mrn" | "card" | "ip" | "date" => 99.9,
            "name" | "address" => 95.0,
            _ => 99.0,
        };
        let got = pct(s.found, s.labels);
        if s.labels == 0 || got < need {
            failures.push(format!("{d}: recall {got:.2}% < {need}% ({} labels)\n{}", s.labels, s.missed.join("\n")));
        }
        let prec = pct(s.right, s.findings);
        if prec < 95.0 {
            failures.push(format!("{d}: precision {prec:.2}% < 95%"));
        }
    }
    if pct(clean_ok, clean) < 99.5 {
        failures.push(format!("clean lines unchanged {:.2}% < 99.5%:\n{}", pct(clean_ok, clean), clean_bad.join("\n")));
    }
    assert!(failures.is_empty(), "{table}\n{}", failures.join("\n\n"));
}
