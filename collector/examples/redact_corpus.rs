//! Generates the labelled PHI corpus (see `collector/tests/redact_support/corpus.rs`).
//!
//! ```text
//! cargo run -p warden-collector --example redact_corpus -- sample [--seed N] [--lines N]
//!     labelled JSONL, the format of collector/data/corpus/sample.jsonl
//! cargo run --release -p warden-collector --example redact_corpus -- log --bytes 1G [--phi 0.02] [--json 0.3]
//!     raw log lines (what `bench/redact` feeds to `warden redact`)
//! ```

#[path = "../tests/redact_support/corpus.rs"]
mod corpus;

use std::io::{BufWriter, Write};
use std::process::ExitCode;

fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.as_bytes().last()? {
        b'G' | b'g' => (&s[..s.len() - 1], 1 << 30),
        b'M' | b'm' => (&s[..s.len() - 1], 1 << 20),
        b'K' | b'k' => (&s[..s.len() - 1], 1 << 10),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mode = args.first().map(String::as_str).unwrap_or("");
    let opt = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let seed = opt("--seed").and_then(|s| s.parse().ok()).unwrap_or(7);
    let mut g = corpus::Gen::new(seed);
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    match mode {
        "sample" => {
            let n: usize = opt("--lines").and_then(|s| s.parse().ok()).unwrap_or(400);
            for i in 0..n {
                // Every detector in text and JSON, then clean lines.
                let d = corpus::DETECTORS[i % corpus::DETECTORS.len()];
                let l = match i % 4 {
                    0 | 1 => g.text_line(Some(d)),
                    2 => g.json_line(Some(d)),
                    _ => g.line(0.0, 0.3),
                };
                if writeln!(out, "{}", corpus::to_sample_json(&l)).is_err() {
                    return ExitCode::SUCCESS;
                }
            }
        }
        "log" => {
            let Some(bytes) = opt("--bytes").and_then(|s| parse_size(&s)) else {
                eprintln!("log: --bytes SIZE is required (e.g. 1G, 200M)");
                return ExitCode::from(64);
            };
            let phi: f64 = opt("--phi").and_then(|s| s.parse().ok()).unwrap_or(0.02);
            let json: f64 = opt("--json").and_then(|s| s.parse().ok()).unwrap_or(0.3);
            let mut written = 0u64;
            while written < bytes {
                let l = g.line(phi, json);
                if writeln!(out, "{}", l.line).is_err() {
                    return ExitCode::SUCCESS;
                }
                written += l.line.len() as u64 + 1;
            }
        }
        _ => {
            eprintln!(
                "usage: redact_corpus sample [--seed N] [--lines N] | log --bytes SIZE [--phi P] [--json P] [--seed N]"
            );
            return ExitCode::from(64);
        }
    }
    let _ = out.flush();
    ExitCode::SUCCESS
}
